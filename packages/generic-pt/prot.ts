/**
 * The `prot` flags of `iommu_map()` (include/linux/iommu.h), which page-table formats turn into
 * PTE bits.
 *
 * @module
 */

/** The device may read the page. */
export const IOMMU_READ = 1 << 0;
/** The device may write the page. */
export const IOMMU_WRITE = 1 << 1;
/** DMA is cache coherent. */
export const IOMMU_CACHE = 1 << 2;
/** The device may not fetch instructions from the page. */
export const IOMMU_NOEXEC = 1 << 3;
/** The page is MMIO (a device's registers), not RAM. */
export const IOMMU_MMIO = 1 << 4;
/** Privileged (supervisor) access only. */
export const IOMMU_PRIV = 1 << 5;
