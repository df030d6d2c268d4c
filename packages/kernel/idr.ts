/**
 * ID allocation: the IDA of lib/idr.c, which hands out the lowest free integer of a range (PSCIDs,
 * group numbers, instance numbers). One `Ida` per user instance; nothing here is global.
 *
 * @module
 */
import { Errno } from "./errno.ts";

/**
 * Mirrors struct ida: a set of allocated IDs.
 *
 * @example Lowest free ID first, freed IDs reused
 * ```ts
 * import assert from "node:assert/strict";
 * import { Ida, ida_alloc_range, ida_free } from "@iommu-lab/kernel";
 *
 * const pscids = new Ida();
 * assert.equal(ida_alloc_range(pscids, 1, 3), 1);
 * assert.equal(ida_alloc_range(pscids, 1, 3), 2);
 * ida_free(pscids, 1);
 * assert.equal(ida_alloc_range(pscids, 1, 3), 1);
 * assert.equal(ida_alloc_range(pscids, 1, 3), 3);
 * assert.throws(() => ida_alloc_range(pscids, 1, 3), { code: "ENOSPC" });
 * ```
 */
export class Ida {
  /**
   * The allocated IDs.
   * @ignore package-private
   */
  readonly _used: Set<number> = new Set();
}

/** Mirrors ida_is_empty(): no ID is allocated. */
export function ida_is_empty(ida: Ida): boolean {
  return ida._used.size === 0;
}

/**
 * Mirrors ida_alloc_range(): the lowest free ID in `[min, max]`, now allocated. ENOSPC when the
 * range is used up, EINVAL for a range that is not one of non-negative integers.
 */
export function ida_alloc_range(ida: Ida, min: number, max: number): number {
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0 || max < min) {
    throw new Errno("EINVAL", `Cannot allocate an ID in [${min}, ${max}]`);
  }
  const used = ida._used;
  for (let id = min; id <= max; id++) {
    if (!used.has(id)) {
      used.add(id);
      return id;
    }
  }
  throw new Errno("ENOSPC", `No free ID in [${min}, ${max}]`);
}

/** Mirrors ida_alloc(): the lowest free non-negative ID (up to INT_MAX). */
export function ida_alloc(ida: Ida): number {
  return ida_alloc_range(ida, 0, 0x7fff_ffff);
}

/**
 * Mirrors ida_free(): returns `id` to `ida`. EINVAL when it is not allocated (Linux warns
 * "ida_free called for id=N which is not allocated").
 */
export function ida_free(ida: Ida, id: number): void {
  if (!ida._used.delete(id)) {
    throw new Errno("EINVAL", `ida_free called for id=${id} which is not allocated`);
  }
}
