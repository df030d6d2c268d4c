/**
 * Fixtures for tests and benchmarks of page tables (`@iommu-lab/generic-pt/testing`).
 *
 * @module
 */
import { Errno, type PhysMem } from "@iommu-lab/kernel";
import type { PtAllocator } from "./pt_defs.ts";

/**
 * A table-page allocator over a window of RAM: a bump pointer plus a free list per order,
 * page accounting for leak checks and fail-nth injection. Pages are zeroed on allocation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TestTableAllocator } from "@iommu-lab/generic-pt/testing";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 20);
 * const alloc = new TestTableAllocator(ram, 0x8000_0000, 1 << 20);
 * const pa = alloc.allocTable(0);
 * assert.equal(alloc.allocatedPages, 1);
 * alloc.freeTable(pa, 0);
 * assert.equal(alloc.allocatedPages, 0);
 * ```
 */
export class TestTableAllocator implements PtAllocator {
  /** Pages currently allocated. */
  allocatedPages = 0;
  /** Allocations that succeeded so far. */
  allocations = 0;
  #next: number;
  readonly #end: number;
  readonly #free: number[][] = [[], [], []];
  readonly #live = new Map<number, number>();
  #failIn = 0;

  /** Hands out pages of `mem` in `[base, base + size)`. */
  constructor(readonly mem: PhysMem, base: number, size: number) {
    this.#next = base;
    this.#end = base + size;
  }

  /** Makes the `n`th allocation from now throw `ENOMEM` (1 = the next one); 0 cancels. */
  failNth(n: number): void {
    this.#failIn = n;
  }

  /** Returns `2^order` zeroed pages aligned to their size. */
  allocTable(order: number): number {
    if (this.#failIn > 0 && --this.#failIn === 0) {
      throw new Errno("ENOMEM", "Injected table allocation failure");
    }
    const size = 4096 << order;
    let pa = this.#free[order].pop();
    if (pa === undefined) {
      const aligned = Math.ceil(this.#next / size) * size;
      if (aligned + size > this.#end) throw new Errno("ENOMEM", "Out of table pages");
      pa = aligned;
      this.#next = aligned + size;
    }
    for (let off = 0; off < size; off += 8) this.mem.store64(pa + off, 0, 0);
    this.#live.set(pa, order);
    this.allocatedPages += 1 << order;
    this.allocations++;
    return pa;
  }

  /** Takes back pages; throws `EINVAL` on a double free or a wrong order. */
  freeTable(pa: number, order: number): void {
    if (this.#live.get(pa) !== order) {
      throw new Errno("EINVAL", `Cannot free 0x${pa.toString(16)} order ${order}`);
    }
    this.#live.delete(pa);
    this.allocatedPages -= 1 << order;
    this.#free[order].push(pa);
  }
}

export { ptMockTable } from "./mock_iommu.ts";
