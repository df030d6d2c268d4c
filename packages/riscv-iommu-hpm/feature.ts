/**
 * The HPM series as the driver and the machine load it: the feature object that runs the
 * series' iommu.c hunks (`iommu.ts`) from the base driver's hooks, and the machine part that
 * also registers the perf driver (`riscv_iommu_hpm.ts`) on the auxiliary bus. No kernel file: in
 * Linux the series patches riscv_iommu_init()/riscv_iommu_remove() and builds the perf driver
 * as its own module.
 *
 * @module
 */
import { auxiliary_driver_register, type Kernel } from "@iommu-lab/kernel";
import type { RiscvIommuFeature } from "@iommu-lab/riscv-iommu/internal";
import { RISCV_IOMMU_CAPABILITIES_HPM } from "@iommu-lab/riscv-iommu/bits";
import { RISCV_IOMMU_HPM_FEATURE } from "./iommu_h.ts";
import { riscv_iommu_subdev_cleanup, riscv_iommu_subdev_setup } from "./iommu.ts";
import { riscv_iommu_hpm_driver } from "./riscv_iommu_hpm.ts";

/**
 * The HPM feature of the RISC-V IOMMU driver: on an IOMMU with capabilities.HPM it creates an
 * auxiliary device per HPM register block (`iommu.riscv_iommu_hpm.<id>`, or on a SpacemiT T100
 * `iommu.spacemit_ioats_hpm.<id>` and `iommu.spacemit_ioatc_hpm.<id>` per IOATC) and deletes them
 * at remove; elsewhere one line, `hpm disabled: no capabilities.HPM`.
 *
 * DIVERGENCE: the series creates its subdevices at the end of riscv_iommu_init(), once the
 * IOMMU is registered, and looks for IOATCs on a T100 even without capabilities.HPM; here the
 * base driver's feature hooks run them, before the directory is switched on, and only with
 * capabilities.HPM.
 *
 * @example A driver instance with the feature
 * ```ts
 * import assert from "node:assert/strict";
 * import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
 * import { hpm } from "@iommu-lab/riscv-iommu-hpm";
 *
 * const drv = new RiscvIommuDriver({ features: [hpm()] });
 * assert.deepEqual(drv.features.map((f) => f.name), ["hpm"]);
 * ```
 */
export function hpm(): RiscvIommuFeature {
  return {
    name: RISCV_IOMMU_HPM_FEATURE,
    missingCapability: (iommu) =>
      (iommu.caps & RISCV_IOMMU_CAPABILITIES_HPM) !== 0n ? null : "capabilities.HPM",
    probe: riscv_iommu_subdev_setup,
    remove: riscv_iommu_subdev_cleanup,
  };
}

/** What {@linkcode hpmPart} fills of `@iommu-lab/machine`'s `MachinePart`. */
export interface HpmMachinePart {
  /** The part's name. */
  readonly name: string;
  /** The driver feature. */
  readonly feature: RiscvIommuFeature;
  /** Registers the perf driver of the HPM subdevices. */
  drivers(kernel: Kernel): void;
}

/**
 * The series as a machine part (`Machine.boot({ parts: [hpmPart()] })`): the {@linkcode hpm}
 * feature in the IOMMU driver and the perf driver `riscv_iommu_hpm` on the auxiliary bus, so the
 * kernel registers a PMU per HPM block at boot. The silicon's IOMMU has its HPM by default; a
 * machine booted with `caps: { hpm: false }` has none. (A series package does not import the
 * machine; the object has the `MachinePart` shape.)
 */
export function hpmPart(): HpmMachinePart {
  return {
    name: RISCV_IOMMU_HPM_FEATURE,
    feature: hpm(),
    drivers: (kernel) => auxiliary_driver_register(kernel, riscv_iommu_hpm_driver),
  };
}
