/**
 * The IOMMU core: IOMMU registration and ops, groups and default domains, attach/detach,
 * `iommu_map`/`iommu_unmap` with the IOTLB gather, and dma-iommu with its IOVA allocator.
 * Mirrors Linux's drivers/iommu/iommu.c, dma-iommu.c and iova.c.
 *
 * @example Map, translate and unmap in a paging domain
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_READ, IOMMU_WRITE, iommu_iova_to_phys, iommu_map, iommu_unmap } from "@iommu-lab/iommu";
 * import { mockPagingDomain } from "@iommu-lab/iommu/testing";
 *
 * const domain = mockPagingDomain();
 * iommu_map(domain, 0x4000_0000, 0xc000_0000, 0x4000_0000, IOMMU_READ | IOMMU_WRITE); // one 1 GiB page
 * assert.equal(iommu_iova_to_phys(domain, 0x4123_4567), 0xc123_4567);
 * assert.equal(iommu_unmap(domain, 0x4000_0000, 0x4000_0000), 0x4000_0000);
 * assert.equal(iommu_unmap(domain, 0x4000_0000, 0x4000_0000), 0); // nothing left to unmap
 * ```
 *
 * @module
 */
export {
  iommu_dma_init_domain,
  iommu_dma_sw_msi,
  iommu_get_dma_cookie,
  iommu_put_dma_cookie,
  IommuDmaCookie,
  IommuDmaMsiPage,
  iommuDmaOps,
} from "./dma_iommu.ts";
export {
  __IOMMU_DOMAIN_DMA_API,
  __IOMMU_DOMAIN_DMA_FQ,
  __IOMMU_DOMAIN_NESTED,
  __IOMMU_DOMAIN_PAGING,
  __IOMMU_DOMAIN_PLATFORM,
  __IOMMU_DOMAIN_PT,
  __IOMMU_DOMAIN_SVA,
  dev_iommu_ops,
  dev_iommu_priv_get,
  dev_iommu_priv_set,
  device_iommu_capable,
  DevIommu,
  generic_device_group,
  iommu_attach_device,
  iommu_attach_group,
  IOMMU_CACHE,
  IOMMU_CAP_CACHE_COHERENCY,
  IOMMU_CAP_DEFERRED_FLUSH,
  IOMMU_CAP_DIRTY_TRACKING,
  IOMMU_CAP_ENFORCE_CACHE_COHERENCY,
  IOMMU_CAP_NOEXEC,
  IOMMU_CAP_PRE_BOOT_PROTECTION,
  iommu_detach_device,
  iommu_detach_group,
  iommu_device_claim_dma_owner,
  iommu_device_register,
  iommu_device_release_dma_owner,
  iommu_device_unregister,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  iommu_domain_free,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_NESTED,
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
  iommu_flush_iotlb_all,
  iommu_get_dma_domain,
  iommu_get_domain_for_dev,
  iommu_group_alloc,
  iommu_group_get,
  iommu_group_replace_domain,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_FAULT_ID_VALID,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_iotlb_gather_init,
  iommu_iotlb_sync,
  iommu_iova_to_phys,
  iommu_map,
  iommu_map_nosync,
  IOMMU_MMIO,
  IOMMU_NO_PASID,
  IOMMU_NOEXEC,
  iommu_paging_domain_alloc,
  iommu_paging_domain_alloc_flags,
  IOMMU_PRIV,
  IOMMU_READ,
  iommu_subsys_init,
  iommu_sync_map,
  iommu_unmap,
  iommu_unmap_fast,
  IOMMU_WRITE,
  IommuCore,
  type IommuCoreOptions,
  IommuDevice,
  type IommuDirtyOps,
  IommuDomain,
  type IommuDomainGeometry,
  type IommuDomainOps,
  type IommuFaultPageRequest,
  IommuGroup,
  type IommuHwInfo,
  IommuIotlbGather,
  type IommuMapped,
  type IommuOps,
  type IommuPageResponse,
  type IommuPagesAllocator,
  type IommuUserData,
  pci_device_group,
} from "./iommu.ts";
export {
  iommu_dirty_bitmap_init,
  iommu_dirty_bitmap_record,
  IOMMU_DIRTY_NO_CLEAR,
  IommuDirtyBitmap,
  iova_bitmap_alloc,
  iova_bitmap_for_each,
  iova_bitmap_set,
  IovaBitmap,
} from "./iova_bitmap.ts";
export {
  type Iova,
  IOVA_MAG_SIZE,
  IOVA_RANGE_CACHE_MAX_SIZE,
  IovaDomain,
  MAX_GLOBAL_MAGS,
} from "./iova.ts";
