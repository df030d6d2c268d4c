/**
 * The page allocator: a buddy allocator over the RAM ranges of a {@linkcode PhysMem}, with page
 * counting (so tests can check teardown returned everything) and fail-nth injection.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import type { PhysMem } from "./phys.ts";
import { hex } from "./vsprintf.ts";

/** log2 of the page size. */
export const PAGE_SHIFT = 12;
/** The page size in bytes. */
export const PAGE_SIZE = 4096;
/** Largest order {@linkcode PageAllocator.alloc} serves (4 MiB blocks). */
export const MAX_PAGE_ORDER = 10;

/** A physical address range. */
export interface MemRange {
  /** First byte. */
  readonly base: number;
  /** Length in bytes. */
  readonly size: number;
}

/** Mirrors get_order(): the smallest order whose block holds `size` bytes. */
export function get_order(size: number): number {
  if (!(size > 0)) throw new Errno("EINVAL", `Cannot take the order of size ${size}`);
  let order = 0;
  while (PAGE_SIZE * 2 ** order < size) order++;
  return order;
}

/**
 * A buddy allocator of physical pages. Blocks of order `n` are `2^n` pages, naturally aligned to
 * their size; allocated memory is zeroed.
 *
 * @example Allocating, counting and freeing
 * ```ts
 * import assert from "node:assert/strict";
 * import { PageAllocator } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 24);
 * const pages = new PageAllocator(ram, [{ base: 0x8000_0000, size: 1 << 24 }]);
 * const pa = pages.alloc(2);
 * assert.equal(pa % (4 * 4096), 0);
 * assert.equal(pages.allocatedPages, 4);
 * pages.free(pa, 2);
 * assert.equal(pages.allocatedPages, 0);
 * ```
 */
export class PageAllocator {
  readonly #mem: PhysMem;
  /** Per order: a stack of free block pfns, possibly with stale entries (see `#free`). */
  readonly #stacks: number[][] = [];
  /** Per order: the pfns that really are free blocks of that order. */
  readonly #free: Set<number>[] = [];
  readonly #allocated = new Map<number, number>();
  #allocatedPages = 0;
  #totalPages = 0;
  #failIn = 0;

  /** Manages the pages of `ranges` minus `reserved`, reached through `mem` for zeroing. */
  constructor(mem: PhysMem, ranges: readonly MemRange[], reserved: readonly MemRange[] = []) {
    this.#mem = mem;
    for (let o = 0; o <= MAX_PAGE_ORDER; o++) {
      this.#stacks.push([]);
      this.#free.push(new Set());
    }
    for (const r of _subtract(ranges, reserved)) {
      let pfn = Math.ceil(r.base / PAGE_SIZE);
      const end = Math.floor((r.base + r.size) / PAGE_SIZE);
      while (pfn < end) {
        let order = MAX_PAGE_ORDER;
        while (order > 0 && (pfn % 2 ** order !== 0 || pfn + 2 ** order > end)) order--;
        this.#push(pfn, order);
        this.#totalPages += 2 ** order;
        pfn += 2 ** order;
      }
    }
  }

  /** Pages currently allocated. */
  get allocatedPages(): number {
    return this.#allocatedPages;
  }

  /** Pages managed in total. */
  get totalPages(): number {
    return this.#totalPages;
  }

  /** The blocks still allocated (for leak reports), lowest address first. */
  allocations(): { phys: number; order: number }[] {
    return [...this.#allocated].sort((a, b) => a[0] - b[0]).map(([pfn, order]) => ({
      phys: pfn * PAGE_SIZE,
      order,
    }));
  }

  /**
   * Makes the `n`th allocation from now fail with `ENOMEM` (1 = the next one); 0 cancels.
   * Fires once.
   */
  failNth(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new Errno("EINVAL", `Cannot fail allocation ${n}`);
    this.#failIn = n;
  }

  /** Allocates `2^order` zeroed, contiguous, size-aligned pages; returns the physical address. */
  alloc(order: number): number {
    if (!Number.isInteger(order) || order < 0 || order > MAX_PAGE_ORDER) {
      throw new Errno("EINVAL", `Cannot allocate pages of order ${order}`);
    }
    if (this.#failIn > 0 && --this.#failIn === 0) {
      throw new Errno("ENOMEM", `Injected failure of an order-${order} page allocation`);
    }
    let o = order;
    let pfn = -1;
    for (; o <= MAX_PAGE_ORDER; o++) {
      pfn = this.#pop(o);
      if (pfn >= 0) break;
    }
    if (pfn < 0) throw new Errno("ENOMEM", `Out of memory for an order-${order} page allocation`);
    while (o > order) {
      o--;
      this.#push(pfn + 2 ** o, o);
    }
    this.#allocated.set(pfn, order);
    this.#allocatedPages += 2 ** order;
    const pa = pfn * PAGE_SIZE;
    this.#mem.fill(pa, PAGE_SIZE * 2 ** order, 0);
    return pa;
  }

  /** Frees a block {@linkcode PageAllocator.alloc} returned, with the same order. */
  free(phys: number, order: number): void {
    let pfn = phys / PAGE_SIZE;
    if (this.#allocated.get(pfn) !== order) {
      throw new Errno(
        "EINVAL",
        `Cannot free ${hex(phys)} order ${order}: not an allocated block of that order`,
      );
    }
    this.#allocated.delete(pfn);
    this.#allocatedPages -= 2 ** order;
    let o = order;
    while (o < MAX_PAGE_ORDER) {
      const size = 2 ** o;
      const buddy = (pfn / size) % 2 === 0 ? pfn + size : pfn - size;
      if (!this.#free[o].delete(buddy)) break;
      pfn = Math.min(pfn, buddy);
      o++;
    }
    this.#push(pfn, o);
  }

  #push(pfn: number, order: number): void {
    this.#free[order].add(pfn);
    this.#stacks[order].push(pfn);
  }

  /** Pops a free block; entries whose block was merged away meanwhile are skipped. */
  #pop(order: number): number {
    const stack = this.#stacks[order];
    const free = this.#free[order];
    while (stack.length > 0) {
      const pfn = stack.pop()!;
      if (free.delete(pfn)) return pfn;
    }
    return -1;
  }
}

function _subtract(ranges: readonly MemRange[], holes: readonly MemRange[]): MemRange[] {
  let out = ranges.map((r) => ({ base: r.base, size: r.size }));
  for (const h of holes) {
    const next: MemRange[] = [];
    for (const r of out) {
      const end = r.base + r.size;
      const hend = h.base + h.size;
      if (hend <= r.base || h.base >= end) {
        next.push(r);
        continue;
      }
      if (h.base > r.base) next.push({ base: r.base, size: h.base - r.base });
      if (hend < end) next.push({ base: hend, size: end - hend });
    }
    out = next;
  }
  return out;
}
