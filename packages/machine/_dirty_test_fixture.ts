// What the dirty-tracking machine tests share: a guest-physical layout with a region per leaf
// size (4 KiB, 64 KiB Svnapot, 2 MiB) and a DMA source, a DIRTY_TRACKING domain with it mapped,
// the bitmap of the leaves a set of writes touches, and iommufd's two dirty reads at the core.
import assert from "node:assert/strict";
import {
  iommu_attach_device,
  iommu_detach_device,
  iommu_dirty_bitmap_init,
  iommu_domain_free,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  iommu_iotlb_sync,
  iommu_map,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
  IommuDirtyBitmap,
  type IommuDomain,
  IommuIotlbGather,
  iova_bitmap_alloc,
  iova_bitmap_set,
} from "@iommu-lab/iommu";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import type { DmaChan, DmaTx, Machine } from "@iommu-lab/machine";

export const RW = IOMMU_READ | IOMMU_WRITE;
export const K4 = 0x1000;
export const K64 = 0x1_0000;
export const M2 = 0x20_0000;

/** Guest-physical layout of the tracked domain: one region per leaf size, and a DMA source. */
export const GPA_4K = 0x1000_1000; // 8 leaves of 4 KiB (not 64 KiB aligned: no Svnapot)
export const GPA_64K = 0x2000_0000; // 4 Svnapot leaves of 64 KiB
export const GPA_2M = 0x4000_0000; // 2 leaves of 2 MiB
export const GPA_SRC = 0x5000_0000; // what the engine copies from, writable too
/** The bitmap covers all of it, one bit per 4 KiB. */
export const BASE = 0x1000_0000;
export const LENGTH = GPA_SRC + K64 - BASE;

/** The leaf size the layout gives `gpa`: the unit in which the IOMMU's D bits count. */
function leafSize(gpa: number): number {
  if (gpa >= GPA_2M && gpa < GPA_2M + 2 * M2) return M2;
  if (gpa >= GPA_64K && gpa < GPA_64K + 4 * K64) return K64;
  return K4;
}

/** The bitmap of the leaves `[gpa, gpa + len)` ranges touch: what a write must report. */
export function footprint(...ranges: [number, number][]): Uint8Array {
  const data = new Uint8Array(Math.ceil(LENGTH / K4 / 64) * 8);
  const bitmap = iova_bitmap_alloc(BASE, LENGTH, K4, data);
  for (const [gpa, len] of ranges) {
    for (let a = gpa; a < gpa + len;) {
      const size = leafSize(a);
      const leaf = a - a % size;
      iova_bitmap_set(bitmap, leaf, size);
      a = leaf + size;
    }
  }
  return data;
}

/** Page indexes (from BASE) set in a bitmap, for readable failures. */
export function pages(data: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < data.length * 8; i++) if (data[i >> 3] >> (i & 7) & 1) out.push(i);
  return out;
}

/**
 * What iommufd's IOMMU_HWPT_GET_DIRTY_BITMAP does at the core (iopt_read_and_clear_dirty_data()):
 * the domain's read_and_clear_dirty into a bitmap of the whole layout, then iommu_iotlb_sync() on
 * the gather.
 */
export function getDirtyBitmap(d: IommuDomain, flags = 0): Uint8Array {
  const data = new Uint8Array(Math.ceil(LENGTH / K4 / 64) * 8);
  const dirty = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirty, iova_bitmap_alloc(BASE, LENGTH, K4, data), gather);
  d.dirty_ops!.read_and_clear_dirty(d, BASE, LENGTH, flags, dirty);
  iommu_iotlb_sync(d, gather);
  return data;
}

/** iommufd's iopt_clear_dirty_data(): a clearing read without a bitmap, then the sync. */
export function clearDirtyData(d: IommuDomain): void {
  const dirty = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirty, null, gather);
  d.dirty_ops!.read_and_clear_dirty(d, BASE, LENGTH, 0, dirty);
  iommu_iotlb_sync(d, gather);
}

/** The regions of the layout and the buddy order of the RAM behind each. */
const _REGIONS = [[GPA_4K, 3], [GPA_64K, 6], [GPA_2M, 10], [GPA_SRC, 4]] as const;

/** A DIRTY_TRACKING domain on the engine, the layout mapped (tracking still off). */
export function trackedDomain(m: Machine, chan: DmaChan): RiscvIommuDomain {
  const d = iommu_paging_domain_alloc_flags(
    chan.dev,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  ) as RiscvIommuDomain;
  iommu_attach_device(d, chan.dev);
  for (const [gpa, order] of _REGIONS) {
    const pa = m.kernel.pages.alloc(order);
    assert.equal(pa % (K4 << order), 0, "buddy blocks are naturally aligned");
    iommu_map(d, gpa, pa, K4 << order, RW);
  }
  return d;
}

/** The transfer completed. */
export function ok(tx: DmaTx): void {
  assert.equal(
    tx.status,
    "complete",
    `DMA ${tx.status}: engine error ${tx.error} at 0x${
      tx.errAddr.toString(16)
    }, IOMMU cause ${tx.errCause}`,
  );
}

/**
 * Undoes {@linkcode trackedDomain}: detaches the engine (back to its default domain), unmaps
 * every region, frees the RAM behind it and the domain.
 */
export function freeTrackedDomain(m: Machine, chan: DmaChan, d: RiscvIommuDomain): void {
  iommu_detach_device(d, chan.dev);
  for (const [gpa, order] of _REGIONS) {
    const pa = d.pt.iova_to_phys(gpa);
    assert.equal(iommu_unmap(d, gpa, K4 << order), K4 << order);
    m.kernel.pages.free(pa, order);
  }
  iommu_domain_free(d);
}
