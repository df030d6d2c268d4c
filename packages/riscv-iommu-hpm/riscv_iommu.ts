/**
 * The interface between the RISC-V IOMMU driver and the drivers of its auxiliary devices: the
 * subdevice an HPM block becomes, what the IOMMU tells its driver about it, and the PMIP helpers.
 * Mirrors include/linux/riscv_iommu.h of the v5 series ("iommu/riscv: Add auxiliary bus framework
 * and HPM device support", Jingyu Li, with the global filter, IOATC and identifier fields of
 * patches 5/8, 6/8 and 7/8; 28 Feb 2026).
 *
 * `riscv_iommu_pmip_status()` and `riscv_iommu_clear_pmip()`, which the header declares, are
 * defined with the rest of the IOMMU side in `iommu.ts`.
 *
 * @module
 */
import { AuxiliaryDevice, type Device, type IoMem } from "@iommu-lab/kernel";
import type { RiscvIommuDevice } from "@iommu-lab/riscv-iommu";

/** struct riscv_iommu_hpm_info: what the IOMMU knows of one HPM block (IOATS or IOATC). */
export interface RiscvIommuHpmInfo {
  /** The block's PMIV interrupt. */
  readonly irq: number;
  /** One filter for every counter (the SpacemiT T100's HPMs). */
  readonly global_filter: boolean;
  /** An IOATC's block rather than the IOMMU's (IOATS) own. */
  readonly is_ioatc: boolean;
  /** The IOATC's DTISR interface index (0-63); 0 for the IOATS. */
  readonly index: number;
}

/**
 * struct riscv_iommu_subdev: an auxiliary device of a RISC-V IOMMU, with the register base of
 * its block, its IOMMU and its info. The IOMMU driver creates it (`riscv_iommu_subdev_add()`);
 * its driver finds it from the auxiliary device with {@linkcode riscv_iommu_get_subdev} (the
 * device's platform data stands for C's container_of()).
 */
export class RiscvIommuSubdev {
  /** The auxiliary device, `iommu.<name>.<id>`. */
  readonly auxdev: AuxiliaryDevice;
  /** The block's registers (the HPM's `iocountovf` at offset 0). */
  readonly base: IoMem;
  /** The parent IOMMU. */
  readonly iommu: RiscvIommuDevice;
  /** What kind of block it is. */
  readonly info: RiscvIommuHpmInfo;
  /** The PMU identifier perf matches JSON events' `Compat` against, or null. */
  readonly identifier: string | null;

  /** A subdevice `iommu.<name>.<id>` of `iommu`, not yet added to the bus. */
  constructor(
    iommu: RiscvIommuDevice,
    name: string,
    id: number,
    base: IoMem,
    info: RiscvIommuHpmInfo,
    identifier: string | null,
  ) {
    // KBUILD_MODNAME of drivers/iommu/riscv/iommu.c.
    this.auxdev = new AuxiliaryDevice(iommu.dev, "iommu", name, id, this);
    this.base = base;
    this.iommu = iommu;
    this.info = info;
    this.identifier = identifier;
  }
}

/** Mirrors riscv_iommu_get_subdev(): the subdevice `dev` is the auxiliary device of, or null. */
export function riscv_iommu_get_subdev(dev: Device | null): RiscvIommuSubdev | null {
  const data = dev instanceof AuxiliaryDevice ? dev.platformData : null;
  return data instanceof RiscvIommuSubdev ? data : null;
}
