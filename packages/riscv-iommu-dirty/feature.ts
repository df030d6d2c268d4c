/**
 * The dirty-tracking series as the driver and the machine load it: the feature object
 * (`RiscvIommuFeature`) wiring the iommu.c hunks of `iommu.ts` into a `RiscvIommuDriver`, and the
 * machine part that asks the silicon for what the feature needs. No kernel file: in Linux the
 * series patches iommu.c, here it plugs into the base driver's extension points.
 *
 * @module
 */
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "@iommu-lab/iommu";
import type { RiscvIommuFeature } from "@iommu-lab/riscv-iommu/internal";
import {
  _amo_hwad,
  _attach_dirty_check,
  riscv_iommu_capable,
  riscv_iommu_domain_alloc_paging_flags,
} from "./iommu.ts";

/** The feature's name, as its dmesg lines say it. */
const DIRTY_FEATURE_NAME = "dirty-tracking";

/**
 * The dirty-tracking feature of the RISC-V IOMMU driver: runs on IOMMUs with
 * capabilities.AMO_HWAD (elsewhere one line, `dirty-tracking disabled: no capabilities.AMO_HWAD`),
 * answers `capable(IOMMU_CAP_DIRTY_TRACKING)`, owns IOMMU_HWPT_ALLOC_DIRTY_TRACKING (its domains
 * are second-stage ones with `dirty_ops`), and refuses its domains to devices whose IOMMU cannot
 * track (EINVAL).
 *
 * @example A driver instance tracking dirty pages
 * ```ts
 * import assert from "node:assert/strict";
 * import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
 * import { dirty } from "@iommu-lab/riscv-iommu-dirty";
 *
 * const drv = new RiscvIommuDriver({ features: [dirty()] });
 * assert.deepEqual(drv.features.map((f) => f.name), ["dirty-tracking"]);
 * ```
 */
export function dirty(): RiscvIommuFeature {
  return {
    name: DIRTY_FEATURE_NAME,
    missingCapability: (iommu) => _amo_hwad(iommu) ? null : "capabilities.AMO_HWAD",
    allocFlags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    ops: {
      capable: riscv_iommu_capable,
      domain_alloc_paging_flags: riscv_iommu_domain_alloc_paging_flags,
    },
    attachDev: _attach_dirty_check,
  };
}

/** What {@linkcode dirtyPart} fills of `@iommu-lab/machine`'s `MachinePart`. */
export interface DirtyMachinePart {
  /** The part's name. */
  readonly name: string;
  /** The IOMMU capabilities the feature needs. */
  readonly caps: { readonly amoHwad: true };
  /** The driver feature. */
  readonly feature: RiscvIommuFeature;
}

/**
 * The series as a machine part (`Machine.boot({ parts: [dirtyPart()] })`): the silicon's IOMMU
 * with AMO_HWAD, and the {@linkcode dirty} feature in its driver. (A series package does not
 * import the machine; the object has the `MachinePart` shape.)
 */
export function dirtyPart(): DirtyMachinePart {
  return { name: DIRTY_FEATURE_NAME, caps: { amoHwad: true }, feature: dirty() };
}
