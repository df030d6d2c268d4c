/**
 * The page-request, ATS/PRI and SVA series of the RISC-V IOMMU driver, as a feature of the base
 * driver (`@iommu-lab/riscv-iommu`): the page-request queue and its thread reporting I/O page
 * faults to the IOMMU core, ATS.PRGR responses, ATS/PRI/PASID on PCI functions with ATS.INVAL,
 * process directories and SVA domains over a process's page table.
 *
 * @example A driver instance running the series
 * ```ts
 * import assert from "node:assert/strict";
 * import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
 * import { iopf } from "@iommu-lab/riscv-iommu-iopf";
 *
 * const drv = new RiscvIommuDriver({ features: [iopf({ pqCount: 256 })] });
 * assert.equal(typeof drv.ops.page_response, "function");
 * assert.equal(typeof drv.ops.domain_alloc_sva, "function");
 * assert.equal(typeof drv.blocked_domain.ops.set_dev_pasid, "function");
 * ```
 *
 * @module
 */
export {
  type IopfMachinePart,
  iopfPart,
  RISCV_IOMMU_DEF_PQ_COUNT,
  riscv_iommu_iopf_feature as iopf,
  RISCV_IOMMU_PRI_REQUESTS,
  type RiscvIommuIopfOptions,
  RiscvIommuSvaDomain,
} from "./iommu.ts";
export { RISCV_IOMMU_IOPF, RiscvIommuEndpoint, RiscvIommuIopfDevice } from "./iommu_h.ts";
