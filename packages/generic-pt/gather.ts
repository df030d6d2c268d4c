/**
 * What a map or unmap changed, for the IOTLB invalidation that must follow, and the table pages
 * that may only be freed after it. Mirrors the page-table side of struct iommu_iotlb_gather with
 * PT_FEAT_DETAILED_GATHER.
 *
 * @module
 */
import { Errno } from "@iommu-lab/kernel";
import type { PtAllocator } from "./pt_defs.ts";

/**
 * The invalidation an update needs: the IOVA range touched (as page frame numbers of the
 * sign-extended 64-bit IOVA space), which levels had leaf PTEs removed and which had table
 * PTEs removed, and the freed table pages, which stay allocated until {@linkcode putPages}.
 *
 * The driver's `iotlb_sync` invalidates (a stride of 4 KiB·512^level fits the lowest level in
 * {@linkcode leafLevels}; any bit in {@linkcode tableLevels} needs a non-leaf invalidation),
 * then calls {@linkcode putPages} and {@linkcode reset}, as Linux calls
 * iommu_put_pages_list() after the flush. The IOMMU core's gather extends this class.
 *
 * @example Unmapping collects the range and levels to flush
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_READ, PtGather, PtIommu } from "@iommu-lab/generic-pt";
 * import { TestTableAllocator } from "@iommu-lab/generic-pt/testing";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 24);
 * const alloc = new TestTableAllocator(ram, 0x8000_0000, 1 << 24);
 * const pt = new PtIommu({ mem: ram, alloc, vaBits: 39 });
 * pt.mapPages(0x20_0000, 0x9000_0000, 0x20_0000, 1, IOMMU_READ);
 * const gather = new PtGather();
 * assert.equal(pt.unmapPages(0x20_0000, 0x20_0000, 1, gather), 0x20_0000);
 * assert.deepEqual([gather.startPfn, gather.endPfn, gather.leafLevels], [0x200, 0x400, 0b10]);
 * gather.putPages();
 * gather.reset();
 * pt.deinit();
 * assert.equal(alloc.allocatedPages, 0);
 * ```
 */
export class PtGather {
  /** First page frame of the range to invalidate (`Infinity` when nothing was added). */
  startPfn = Infinity;
  /** Page frame after the range to invalidate. */
  endPfn = 0;
  /** Bit `L` set: a leaf PTE at level `L` was removed or replaced. */
  leafLevels = 0;
  /** Bit `L` set: a table PTE at level `L` was removed (its table is on the freelist). */
  tableLevels = 0;
  /** Physical addresses of freed 4 KiB table pages awaiting the flush. */
  readonly freelist: number[] = [];
  #alloc: PtAllocator | undefined = undefined;

  /** True when there is nothing to invalidate or free. */
  get isEmpty(): boolean {
    return this.startPfn >= this.endPfn && this.freelist.length === 0;
  }

  /** Widens the range to cover `pages` frames from `pfn`. Mirrors iommu_iotlb_gather_add_range(). */
  addRange(pfn: number, pages: number): void {
    if (pfn < this.startPfn) this.startPfn = pfn;
    if (pfn + pages > this.endPfn) this.endPfn = pfn + pages;
  }

  /** Queues a table page that `alloc` must get back after the flush. */
  addFreedTable(pa: number, alloc: PtAllocator): void {
    if (this.#alloc !== undefined && this.#alloc !== alloc) {
      throw new Errno("EINVAL", "Cannot gather table pages of two allocators");
    }
    this.#alloc = alloc;
    this.freelist.push(pa);
  }

  /** Frees the queued table pages; call only once the IOTLB flush completed. */
  putPages(): void {
    const alloc = this.#alloc;
    if (alloc !== undefined) { for (const pa of this.freelist) alloc.freeTable(pa, 0); }
    this.freelist.length = 0;
    this.#alloc = undefined;
  }

  /** Empties the range and level bits for the next update. Mirrors iommu_iotlb_gather_init(). */
  reset(): void {
    this.startPfn = Infinity;
    this.endPfn = 0;
    this.leafLevels = 0;
    this.tableLevels = 0;
  }
}
