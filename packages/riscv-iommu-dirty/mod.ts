/**
 * Hardware dirty tracking for second-stage domains of the RISC-V IOMMU driver: a port of "[RFC
 * PATCH 00/11] iommu/riscv: Add hardware dirty tracking for second-stage domains" (Fangyu Yu, 28
 * Apr 2026) as a series feature of `@iommu-lab/riscv-iommu`. With capabilities.AMO_HWAD the IOMMU
 * sets D in second-stage PTEs on the first write when DC.tc.GADE is set; the feature reports
 * IOMMU_CAP_DIRTY_TRACKING, allocates IOMMU_HWPT_ALLOC_DIRTY_TRACKING domains and gives them
 * `dirty_ops` (set_dirty_tracking, read_and_clear_dirty) for iommufd.
 *
 * @example A machine with the series: a DMA engine's write shows in the dirty bitmap
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   iommu_attach_device,
 *   IOMMU_CAP_DIRTY_TRACKING,
 *   device_iommu_capable,
 *   iommu_dirty_bitmap_init,
 *   IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
 *   iommu_iotlb_sync,
 *   iommu_map,
 *   iommu_paging_domain_alloc_flags,
 *   IOMMU_READ,
 *   IOMMU_WRITE,
 *   IommuDirtyBitmap,
 *   IommuIotlbGather,
 *   iova_bitmap_alloc,
 * } from "@iommu-lab/iommu";
 * import { Machine } from "@iommu-lab/machine";
 * import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
 *
 * const m = Machine.boot({ parts: [dirtyPart()], msiThroughIommu: false });
 * const chan = m.dmaChannel(0);
 * assert.ok(device_iommu_capable(chan.dev, IOMMU_CAP_DIRTY_TRACKING));
 * const d = iommu_paging_domain_alloc_flags(chan.dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
 * iommu_attach_device(d, chan.dev);
 * iommu_map(d, 0x1000_0000, m.kernel.pages.alloc(2), 0x4000, IOMMU_READ | IOMMU_WRITE);
 * d.dirty_ops!.set_dirty_tracking(d, true);
 * chan.memcpy(0x1000_2000, 0x1000_0000, 64); // the engine writes page 2
 *
 * const data = new BigUint64Array(1);
 * const dirty = new IommuDirtyBitmap();
 * const gather = new IommuIotlbGather();
 * iommu_dirty_bitmap_init(dirty, iova_bitmap_alloc(0x1000_0000, 0x4000, 4096, data), gather);
 * d.dirty_ops!.read_and_clear_dirty(d, 0x1000_0000, 0x4000, 0, dirty);
 * iommu_iotlb_sync(d, gather); // as iommufd does after a clearing read
 * assert.equal(data[0], 0b100n);
 * ```
 *
 * @module
 */
export { dirty, type DirtyMachinePart, dirtyPart } from "./feature.ts";
export {
  riscv_iommu_capable,
  riscv_iommu_dirty_ops,
  riscv_iommu_domain_alloc_paging_flags,
  riscv_iommu_read_and_clear_dirty,
  riscv_iommu_set_dirty_tracking,
} from "./iommu.ts";
