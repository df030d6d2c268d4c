/**
 * The RISC-V IOMMU as a PCIe function (QEMU's `riscv-iommu-pci`, 1b36:0014, class 0x0806):
 * BAR0 is the IOMMU's 4 KiB register page, and the MSI-X capability's table is the IOMMU's own
 * `msi_cfg_tbl` at BAR0 + 0x300 (same 16-byte entry layout, as the spec's hardware guidelines
 * ask), with the PBA at BAR0 + 0x400.
 *
 * The IOMMU keeps sending its MSIs itself (its own DMA is not translated). What the function
 * adds is the MSI-X gating the IOMMU register file does not know about: while MSI-X is disabled,
 * the function is masked, or bus mastering is off, every vector is presented to the IOMMU as
 * masked, so its messages are held pending and go out when the gate opens. The vector control
 * word software reads back is its own Mask bit, not the gated one.
 *
 * Limitation: the PBA reads 0, because the IOMMU does not expose which held messages it has.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { MmioHandler } from "../memory.ts";
import { read64Split, write64Split } from "../_u64.ts";
import { IGS_WSI } from "../iommu/caps.ts";
import type { Iommu } from "../iommu/iommu.ts";
import {
  RISCV_IOMMU_MSI_CFG_TBL_CTRL_M,
  RISCV_IOMMU_MSI_CFG_TBL_ENTRIES,
  RISCV_IOMMU_REG_MSI_CFG_TBL,
  RISCV_IOMMU_REG_SIZE,
} from "../iommu/regs.ts";
import {
  PCI_CAP_ID_MSIX,
  PCI_CAP_MSIX_SIZEOF,
  PCI_COMMAND,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_MSIX_PBA,
  PCI_MSIX_TABLE,
} from "./config.ts";
import { PciFunction } from "./function.ts";

/** Red Hat / QEMU PCI vendor ID. */
export const PCI_VENDOR_ID_REDHAT = 0x1b36;
/** Device ID of QEMU's RISC-V IOMMU function. */
export const PCI_DEVICE_ID_REDHAT_RISCV_IOMMU = 0x0014;
/** Class code of an IOMMU: base class 0x08 (system peripheral), sub-class 0x06, interface 0. */
export const PCI_CLASS_SYSTEM_IOMMU = 0x080600;
/** Offset of the MSI-X PBA in BAR0 (the table is `msi_cfg_tbl` at 0x300). */
export const RISCV_IOMMU_PCI_PBA = 0x400;

/** Options of {@linkcode IommuPciFunction}. */
export interface IommuPciOptions {
  /** The machine's clock (BAR0 register accesses are charged to it). */
  clock: Clock;
  /** PCI revision ID. Default 1 (QEMU's). */
  revision?: number;
}

/**
 * The IOMMU's PCI function. Attach {@linkcode IommuPciFunction.fn} to the root complex.
 *
 * @example Enumerated as QEMU's riscv-iommu-pci
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock, Iommu, IommuPciFunction, PhysicalMemory, RootComplex } from "@iommu-lab/hw";
 *
 * const clock = new Clock();
 * const mem = new PhysicalMemory();
 * const iommu = new Iommu({ mem, caps: { igs: 0 } });
 * const rc = new RootComplex({ mem, clock, translator: iommu });
 * const pci = new IommuPciFunction(iommu, { clock });
 * rc.attach(pci.fn, 1);
 * assert.equal(pci.fn.configRead32(0x00), 0x0014_1b36);
 * assert.equal(pci.fn.configRead32(0x08) >>> 8, 0x080600);
 * ```
 */
export class IommuPciFunction {
  /** The PCI function. */
  readonly fn: PciFunction;
  /** The IOMMU behind BAR0. */
  readonly iommu: Iommu;
  /** Offset of the MSI-X capability (0 when the IOMMU is WSI-only and has no MSI table). */
  readonly msixCap: number;

  readonly #clock: Clock;
  readonly #swMask = new Uint8Array(RISCV_IOMMU_MSI_CFG_TBL_ENTRIES).fill(1);

  /** Wraps `iommu`; its MSI-X table has one vector per `msi_cfg_tbl` entry. */
  constructor(iommu: Iommu, opts: IommuPciOptions) {
    this.iommu = iommu;
    this.#clock = opts.clock;
    this.fn = new PciFunction({
      clock: opts.clock,
      vendorId: PCI_VENDOR_ID_REDHAT,
      deviceId: PCI_DEVICE_ID_REDHAT_RISCV_IOMMU,
      classCode: PCI_CLASS_SYSTEM_IOMMU,
      revision: opts.revision ?? 1,
      bars: [{ index: 0, size: RISCV_IOMMU_REG_SIZE, is64: true, handler: this.#bar0() }],
      dmaBypass: true,
      name: "riscv-iommu-pci",
      onConfigWrite: (dw) => {
        if (dw === PCI_COMMAND || dw === this.msixCap) this.#gateAll();
      },
    });
    if (iommu.caps.igs === IGS_WSI) {
      this.msixCap = 0;
      return;
    }
    const cfg = this.fn.config;
    const cap = cfg.addCap(PCI_CAP_ID_MSIX, PCI_CAP_MSIX_SIZEOF);
    cfg.set16(cap + PCI_MSIX_FLAGS, RISCV_IOMMU_MSI_CFG_TBL_ENTRIES - 1);
    cfg.setWritable(cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    cfg.set32(cap + PCI_MSIX_TABLE, RISCV_IOMMU_REG_MSI_CFG_TBL);
    cfg.set32(cap + PCI_MSIX_PBA, RISCV_IOMMU_PCI_PBA);
    this.msixCap = cap;
    this.#gateAll();
  }

  /** MSI-X can send: enabled, function not masked, bus master on. */
  get #open(): boolean {
    if (this.msixCap === 0 || !this.fn.busMaster) return false;
    const flags = this.fn.config.get16(this.msixCap + PCI_MSIX_FLAGS);
    return (flags & PCI_MSIX_FLAGS_ENABLE) !== 0 && (flags & PCI_MSIX_FLAGS_MASKALL) === 0;
  }

  /** Presents vector `v`'s effective mask to the IOMMU (unmasking sends a held message). */
  #gate(v: number): void {
    const m = this.#swMask[v] !== 0 || !this.#open ? RISCV_IOMMU_MSI_CFG_TBL_CTRL_M : 0;
    this.iommu.write32(RISCV_IOMMU_REG_MSI_CFG_TBL + 16 * v + 12, m);
  }

  #gateAll(): void {
    if (this.msixCap === 0) return;
    for (let v = 0; v < RISCV_IOMMU_MSI_CFG_TBL_ENTRIES; v++) this.#gate(v);
  }

  /** BAR0: the IOMMU's registers, with the vector-control words and the PBA intercepted. */
  #bar0(): MmioHandler {
    const tblEnd = RISCV_IOMMU_REG_MSI_CFG_TBL + 16 * RISCV_IOMMU_MSI_CFG_TBL_ENTRIES;
    const isCtl = (off: number) =>
      this.msixCap !== 0 && off >= RISCV_IOMMU_REG_MSI_CFG_TBL && off < tblEnd &&
      (off & 0xf) === 0xc;
    const isPba = (off: number) =>
      this.msixCap !== 0 && off >= RISCV_IOMMU_PCI_PBA && off < RISCV_IOMMU_PCI_PBA + 8;
    const read32 = (off: number): number => {
      this.#clock.charge(this.#clock.costs.mmio);
      if (isCtl(off)) return this.#swMask[(off - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4];
      if (isPba(off)) return 0;
      return this.iommu.read32(off);
    };
    const write32 = (off: number, v: number): void => {
      this.#clock.charge(this.#clock.costs.mmio);
      if (isCtl(off)) {
        const n = (off - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4;
        this.#swMask[n] = v & RISCV_IOMMU_MSI_CFG_TBL_CTRL_M;
        this.#gate(n);
      } else if (!isPba(off)) {
        this.iommu.write32(off, v);
      }
    };
    return {
      read32,
      write32,
      read64: (off: number): bigint => {
        if (!isCtl(off + 4) && !isPba(off)) {
          this.#clock.charge(this.#clock.costs.mmio);
          return this.iommu.read64(off);
        }
        return read64Split({ read32 }, off);
      },
      write64: (off: number, v: bigint): void => {
        if (!isCtl(off + 4) && !isPba(off)) {
          this.#clock.charge(this.#clock.costs.mmio);
          return this.iommu.write64(off, v);
        }
        write64Split({ write32 }, off, v);
      },
    };
  }
}
