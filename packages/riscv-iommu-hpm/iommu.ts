/**
 * What the series adds to drivers/iommu/riscv/iommu.c: the auxiliary bus framework (one
 * auxiliary subdevice per HPM register block, for a perf driver to bind), the PMIP helpers that
 * driver uses, the SpacemiT T100's IOATC enumeration through DTISR0-3, and the PMU identifier
 * from the device tree's `compatible`. Tracks the v5 series ("[PATCH v5 0/8] iommu/riscv: Add
 * HPM support for RISC-V IOMMU", Lv Zheng and Jingyu Li, 28 Feb 2026): 2/8 "Add auxiliary bus
 * framework and HPM device support", 5/8 "Add global filter awareness", 6/8 "Add SpacemiT T100
 * IOATC HPM support", 7/8 "Add vendor event support".
 *
 * The series calls `riscv_iommu_subdev_setup()` from riscv_iommu_init() and
 * `riscv_iommu_subdev_cleanup()` from riscv_iommu_remove(); here the feature object of
 * `feature.ts` runs them from the base driver's feature hooks.
 *
 * @module
 */
import {
  auxiliary_device_add,
  auxiliary_device_delete,
  dev_err,
  dev_info,
  dev_of_node,
  dev_warn,
  Errno,
  Ida,
  ida_alloc,
  ida_free,
  IoMem,
  isErrno,
  of_device_is_compatible,
  of_property_match_string,
  platform_get_irq_optional,
  PlatformDevice,
} from "@iommu-lab/kernel";
import {
  riscv_iommu_readl,
  riscv_iommu_writel,
  type RiscvIommuDevice,
  type RiscvIommuDriver,
} from "@iommu-lab/riscv-iommu";
import { riscv_iommu_irq } from "@iommu-lab/riscv-iommu/internal";
import {
  RISCV_IOMMU_CAPABILITIES_HPM,
  RISCV_IOMMU_INTR_COUNT,
  RISCV_IOMMU_INTR_PM,
  RISCV_IOMMU_IPSR_PMIP,
  RISCV_IOMMU_REG_IOCOUNTOVF,
  RISCV_IOMMU_REG_IPSR,
} from "@iommu-lab/riscv-iommu/bits";
import {
  MAX_RISCV_IOMMU_IOATC,
  RISCV_IOMMU_DTI_STS_IOATC,
  RISCV_IOMMU_DTI_STS_MASK,
  RISCV_IOMMU_DTI_STS_SHIFT,
  RISCV_IOMMU_IOATC_BASE,
  RISCV_IOMMU_REG_DTISR,
} from "./bits.ts";
import { riscv_iommu_subdev_list, type RiscvIommuSubdevParams } from "./iommu_h.ts";
import { type RiscvIommuHpmInfo, RiscvIommuSubdev } from "./riscv_iommu.ts";

/** Bytes of an HPM register block: `iocountovf` through `iohpmevt31`. */
export const RISCV_IOMMU_HPM_SIZE = 0x200;

/**
 * The subdevice IDs of a driver instance (`riscv_iommu_subdev_ida`). DIVERGENCE: one IDA per
 * `RiscvIommuDriver` instead of a file-scope static, as the base driver keeps its PSCIDs; every
 * IOMMU of the instance draws from it, so the IDs are unique across them as in Linux.
 */
const _idas = new WeakMap<RiscvIommuDriver, Ida>();

function _subdev_ida(iommu: RiscvIommuDevice): Ida {
  let ida = _idas.get(iommu.driver);
  if (ida === undefined) {
    ida = new Ida();
    _idas.set(iommu.driver, ida);
  }
  return ida;
}

/** Mirrors riscv_iommu_reg_ipsr(): the `ipsr` of the subdevice's block (an IOATC has its own). */
function riscv_iommu_reg_ipsr(subdev: RiscvIommuSubdev): number {
  const info = subdev.info;
  const offset = info.is_ioatc ? RISCV_IOMMU_IOATC_BASE(info.index) : 0;
  return offset + RISCV_IOMMU_REG_IPSR;
}

/** Mirrors riscv_iommu_pmip_status(): whether the block's performance-monitor interrupt is pending. */
export function riscv_iommu_pmip_status(subdev: RiscvIommuSubdev): boolean {
  return (riscv_iommu_readl(subdev.iommu, riscv_iommu_reg_ipsr(subdev)) & RISCV_IOMMU_IPSR_PMIP) !==
    0;
}

/** Mirrors riscv_iommu_clear_pmip(): acknowledges the block's performance-monitor interrupt. */
export function riscv_iommu_clear_pmip(subdev: RiscvIommuSubdev): void {
  riscv_iommu_writel(subdev.iommu, riscv_iommu_reg_ipsr(subdev), RISCV_IOMMU_IPSR_PMIP);
}

/** Mirrors riscv_iommu_subdev_release(): gives the subdevice's ID back. */
function riscv_iommu_subdev_release(subdev: RiscvIommuSubdev): void {
  ida_free(_subdev_ida(subdev.iommu), subdev.auxdev.id);
}

/**
 * Mirrors riscv_iommu_subdev_add(): an auxiliary device `iommu.<name>.<id>` under the IOMMU,
 * its ID from the driver instance's IDA, added to the bus (its driver binds now if registered)
 * and to the IOMMU's list. EINVAL without `info`; ENOSPC when the IDs run out; whatever adding
 * the device throws (EEXIST).
 */
export function riscv_iommu_subdev_add(
  iommu: RiscvIommuDevice,
  params: RiscvIommuSubdevParams,
): RiscvIommuSubdev {
  if (params.info === null) throw new Errno("EINVAL", "subdevice without info");
  const ida = _subdev_ida(iommu);
  const id = ida_alloc(ida);
  const subdev = new RiscvIommuSubdev(
    iommu,
    params.name,
    id,
    params.base,
    params.info,
    params.identifier,
  );
  try {
    auxiliary_device_add(subdev.auxdev);
  } catch (e) {
    if (isErrno(e)) {
      dev_err(iommu.dev, `Failed to add ${params.name} auxiliary device: ${-e.errno}`);
    }
    ida_free(ida, id);
    throw e;
  }
  riscv_iommu_subdev_list(iommu).push(subdev);
  dev_info(iommu.dev, `${params.name} auxiliary device created`);
  return subdev;
}

/** The compatibles that name a PMU for perf's JSON events, most specific first. */
const riscv_iommu_hpm_identifiers: readonly string[] = ["spacemit,t100", "riscv,iommu"];

/**
 * Mirrors riscv_iommu_get_hpm_identifier(): the first of `spacemit,t100`, `riscv,iommu` the
 * IOMMU's node is compatible with; null without a node (a PCI IOMMU) or a match.
 */
export function riscv_iommu_get_hpm_identifier(iommu: RiscvIommuDevice): string | null {
  const np = dev_of_node(iommu.dev);
  if (np === null) return null;
  return riscv_iommu_hpm_identifiers.find((id) =>
    of_property_match_string(np, "compatible", id) >= 0
  ) ??
    null;
}

/** The registers of the HPM block at `offset` of the IOMMU's window (`iommu->reg + offset`). */
function _hpm_base(iommu: RiscvIommuDevice, offset: number): IoMem {
  const reg = iommu.reg;
  return new IoMem(
    reg.backend,
    RISCV_IOMMU_HPM_SIZE,
    reg.clock,
    reg.base + offset,
    reg.phys + offset,
  );
}

function _is_t100(iommu: RiscvIommuDevice): boolean {
  const np = dev_of_node(iommu.dev);
  return np !== null && of_device_is_compatible(np, "spacemit,t100");
}

/**
 * Mirrors riscv_iommu_enumerate_hpm(): with capabilities.HPM, the IOMMU's own HPM block becomes
 * `iommu.riscv_iommu_hpm.<id>` (on a SpacemiT T100 `iommu.spacemit_ioats_hpm.<id>`, with the
 * global filter), its interrupt the vector `icvec.pmiv` selects. A failure is logged, not fatal.
 */
function riscv_iommu_enumerate_hpm(iommu: RiscvIommuDevice): void {
  if ((iommu.caps & RISCV_IOMMU_CAPABILITIES_HPM) === 0n) return;
  const irq = riscv_iommu_irq(iommu, RISCV_IOMMU_INTR_PM);
  if (irq <= 0) {
    dev_err(iommu.dev, "HPM: No IRQ available");
    return;
  }
  const t100 = _is_t100(iommu);
  const info: RiscvIommuHpmInfo = { irq, global_filter: t100, is_ioatc: false, index: 0 };
  try {
    riscv_iommu_subdev_add(iommu, {
      name: t100 ? "spacemit_ioats_hpm" : "riscv_iommu_hpm",
      info,
      base: _hpm_base(iommu, RISCV_IOMMU_REG_IOCOUNTOVF),
      identifier: riscv_iommu_get_hpm_identifier(iommu),
    });
  } catch (e) {
    if (!isErrno(e)) throw e;
    dev_warn(iommu.dev, `Failed to enumerate HPM auxiliary device: ${-e.errno}`);
  }
}

/** struct riscv_iommu_ioatc_desc: an IOATC DTISR reports, and its PMIV interrupt (0: none). */
interface RiscvIommuIoatcDesc {
  readonly irq: number;
  readonly index: number;
}

/**
 * Mirrors riscv_iommu_collect_ioatcs(): on a SpacemiT T100, the interfaces DTISR0-3 report as
 * IOATCs, in interface order, each with the next IOATC interrupt of the device tree.
 *
 * DIVERGENCE: the IOATC interrupts are the node's `interrupts` from index 4 on, as the v5
 * binding orders them (IOATS CIV, FIV, PIV, PMIV, then IOATC0..n PMIV), read with
 * platform_get_irq_optional(), and the platform glue keeps its clamp of `irqs_count` to 4. v5
 * raises the clamp and takes them from `iommu->irqs` past the IOATS vectors (one with WSI, four
 * with MSIs); but with MSIs its platform glue fills every entry with one of the IOMMU's own MSI
 * vectors (`msi_cfg_tbl` entries `icvec` never selects), so an IOATC's overflow, signalled on its
 * wire, would never reach the handler.
 */
function riscv_iommu_collect_ioatcs(iommu: RiscvIommuDevice): RiscvIommuIoatcDesc[] {
  if (!_is_t100(iommu) || !(iommu.dev instanceof PlatformDevice)) return [];
  const pdev = iommu.dev;
  const descs: RiscvIommuIoatcDesc[] = [];
  for (let i = 0; i < 4 && descs.length < MAX_RISCV_IOMMU_IOATC; i++) {
    const dtisr = riscv_iommu_readl(iommu, RISCV_IOMMU_REG_DTISR(i));
    for (let j = 0; j < 16 && descs.length < MAX_RISCV_IOMMU_IOATC; j++) {
      const index = i * 16 + j;
      const state = (dtisr & RISCV_IOMMU_DTI_STS_MASK(index)) >>> RISCV_IOMMU_DTI_STS_SHIFT(index);
      if (state !== RISCV_IOMMU_DTI_STS_IOATC) continue;
      let irq = 0;
      try {
        irq = platform_get_irq_optional(pdev, RISCV_IOMMU_INTR_COUNT + descs.length);
      } catch (e) {
        if (!isErrno(e)) throw e;
      }
      descs.push({ irq, index });
    }
  }
  return descs;
}

/**
 * Mirrors riscv_iommu_enumerate_ioatc(): each IOATC with an interrupt becomes
 * `iommu.spacemit_ioatc_hpm.<id>` (global filter), its block at `(index + 1) · 4 KiB + 0x58` of
 * the IOMMU's window. A failure is logged and the next IOATC tried.
 */
function riscv_iommu_enumerate_ioatc(iommu: RiscvIommuDevice): void {
  for (const desc of riscv_iommu_collect_ioatcs(iommu)) {
    if (desc.irq <= 0) continue;
    const base = RISCV_IOMMU_IOATC_BASE(desc.index);
    try {
      riscv_iommu_subdev_add(iommu, {
        name: "spacemit_ioatc_hpm",
        info: { irq: desc.irq, global_filter: true, is_ioatc: true, index: desc.index },
        base: _hpm_base(iommu, base + RISCV_IOMMU_REG_IOCOUNTOVF),
        identifier: riscv_iommu_get_hpm_identifier(iommu),
      });
    } catch (e) {
      if (!isErrno(e)) throw e;
      dev_warn(iommu.dev, `Failed to add IOATC${desc.index}: ${-e.errno}`);
    }
  }
}

/**
 * Mirrors riscv_iommu_subdev_setup(): the IOMMU's auxiliary subdevices, its HPM block then (on a
 * SpacemiT T100) each IOATC's. Not critical to translation: failures are only logged.
 */
export function riscv_iommu_subdev_setup(iommu: RiscvIommuDevice): void {
  riscv_iommu_enumerate_hpm(iommu);
  riscv_iommu_enumerate_ioatc(iommu);
}

/**
 * Mirrors riscv_iommu_subdev_cleanup(): deletes the IOMMU's subdevices, last added first (their
 * drivers unbind), and gives their IDs back.
 */
export function riscv_iommu_subdev_cleanup(iommu: RiscvIommuDevice): void {
  const list = riscv_iommu_subdev_list(iommu);
  while (list.length > 0) {
    const subdev = list.pop()!;
    auxiliary_device_delete(subdev.auxdev);
    riscv_iommu_subdev_release(subdev);
  }
}
