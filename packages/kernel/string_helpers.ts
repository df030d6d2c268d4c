/**
 * Mirrors lib/string_helpers.c: sizes for humans.
 *
 * @module
 */

const UNITS_2 = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/**
 * Mirrors string_get_size() with STRING_UNITS_2 and a block size of 1: `size` bytes with three
 * significant digits and a binary unit (`"512 B"`, `"4.00 KiB"`, `"16.0 MiB"`, `"1.50 GiB"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { string_get_size } from "@iommu-lab/kernel";
 *
 * assert.equal(string_get_size(512), "512 B");
 * assert.equal(string_get_size(4096), "4.00 KiB");
 * assert.equal(string_get_size(64 << 20), "64.0 MiB");
 * assert.equal(string_get_size(1536 << 20), "1.50 GiB");
 * ```
 */
export function string_get_size(size: number): string {
  let i = 0;
  let v = size;
  while (v >= 1024 && i < UNITS_2.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${size} B`;
  return `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${UNITS_2[i]}`;
}
