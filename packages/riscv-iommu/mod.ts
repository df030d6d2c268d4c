/**
 * The RISC-V IOMMU driver (Linux `drivers/iommu/riscv/`, base series v10 and the upstream
 * driver's later state): bus-agnostic core, device directory, command and fault queues,
 * paging domains.
 *
 * The register map lives in `@iommu-lab/riscv-iommu/bits` (the port of `iommu-bits.h`).
 *
 * @module
 */
export {};
