/**
 * What the series adds to drivers/iommu/riscv/iommu.h: the parameters of a new auxiliary
 * subdevice, and the list of an IOMMU's subdevices (`subdev_list` of struct riscv_iommu_device).
 * From the v5 series' patches 2/8 ("iommu/riscv: Add auxiliary bus framework and HPM device
 * support") and 7/8 (the identifier).
 *
 * DIVERGENCE: the list hangs off the IOMMU's `feature_data` (the base driver's slot for a
 * series' per-IOMMU state) instead of a new member of struct riscv_iommu_device; the irqs array
 * keeps its four vectors (6/8 grows it by 64 for the IOATCs' wires, which `iommu.ts` takes from
 * the device tree instead).
 *
 * @module
 */
import type { IoMem } from "@iommu-lab/kernel";
import type { RiscvIommuDevice } from "@iommu-lab/riscv-iommu";
import type { RiscvIommuHpmInfo, RiscvIommuSubdev } from "./riscv_iommu.ts";

/** The key of the series' state in `RiscvIommuDevice.feature_data` (the feature's name). */
export const RISCV_IOMMU_HPM_FEATURE = "hpm";

/** struct riscv_iommu_subdev_params: what `riscv_iommu_subdev_add()` makes a subdevice of. */
export interface RiscvIommuSubdevParams {
  /** The auxiliary device name (`riscv_iommu_hpm`, `spacemit_ioats_hpm`...). */
  readonly name: string;
  /** What kind of block it is; required. */
  readonly info: RiscvIommuHpmInfo | null;
  /** The block's registers. */
  readonly base: IoMem;
  /** The PMU identifier for perf's JSON `Compat` matching, or null. */
  readonly identifier: string | null;
}

/** The subdevices of `iommu`, in the order they were added (`iommu->subdev_list`). */
export function riscv_iommu_subdev_list(iommu: RiscvIommuDevice): RiscvIommuSubdev[] {
  let list = iommu.feature_data.get(RISCV_IOMMU_HPM_FEATURE) as RiscvIommuSubdev[] | undefined;
  if (list === undefined) {
    list = [];
    iommu.feature_data.set(RISCV_IOMMU_HPM_FEATURE, list);
  }
  return list;
}
