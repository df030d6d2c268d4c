/**
 * The RISC-V IOMMU driver (Linux `drivers/iommu/riscv/`: the v10 base series and the upstream
 * driver's later state): the bus-agnostic core that the PCI and platform glue call, with the
 * device directory, command and fault queues, identity/blocking/paging domains, and the
 * feature hooks series packages extend it through.
 *
 * The register map is `@iommu-lab/riscv-iommu/bits` (the port of `iommu-bits.h`); what series
 * packages reach into is `@iommu-lab/riscv-iommu/internal` (the port of `iommu.h` plus the
 * core's queue and directory helpers).
 *
 * @example A driver instance for the bus glue, with one feature
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_CAP_DIRTY_TRACKING } from "@iommu-lab/iommu";
 * import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
 *
 * const drv = new RiscvIommuDriver({
 *   features: [{ name: "dirty", ops: { capable: (_dev, cap) => cap === IOMMU_CAP_DIRTY_TRACKING } }],
 * });
 * assert.equal(drv.ops.identity_domain, drv.identity_domain);
 * assert.deepEqual(drv.features.map((f) => f.name), ["dirty"]);
 * ```
 *
 * @module
 */
export type { RiscvIommuFeature, RiscvIommuFeatureQueue } from "./feature.ts";
export { RiscvIommuDriver, type RiscvIommuDriverOptions } from "./driver.ts";
export {
  riscv_iommu_disable,
  riscv_iommu_init,
  riscv_iommu_remove,
  RiscvIommuDomain,
} from "./iommu.ts";
export {
  riscv_iommu_readl,
  riscv_iommu_readq,
  riscv_iommu_writel,
  riscv_iommu_writeq,
  RiscvIommuDevice,
  RiscvIommuQueue,
} from "./iommu_h.ts";
