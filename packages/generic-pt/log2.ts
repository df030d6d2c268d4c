/**
 * Bit helpers on page numbers kept as JS numbers (integers below 2^53), the unit the engine
 * computes in so that no hot path needs `bigint`.
 *
 * @module
 */

const TWO32 = 4294967296;

/**
 * Find last set: 1 + the index of the highest set bit, 0 for 0. Mirrors the kernel's fls64().
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fls } from "@iommu-lab/generic-pt";
 *
 * assert.equal(fls(0), 0);
 * assert.equal(fls(0x1000), 13);
 * assert.equal(fls(2 ** 52), 53);
 * ```
 */
export function fls(x: number): number {
  if (x >= TWO32) return 64 - Math.clz32(Math.floor(x / TWO32));
  return 32 - Math.clz32(x);
}

/**
 * Find first set: the index of the lowest set bit; 64 for 0, which every power of two divides.
 * Mirrors the kernel's __ffs64().
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ffs } from "@iommu-lab/generic-pt";
 *
 * assert.equal(ffs(1), 0);
 * assert.equal(ffs(0x3000), 12);
 * assert.equal(ffs(2 ** 52), 52);
 * ```
 */
export function ffs(x: number): number {
  const lo = x % TWO32;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  if (x === 0) return 64;
  const hi = Math.floor(x / TWO32);
  return 63 - Math.clz32(hi & -hi);
}
