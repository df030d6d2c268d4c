/**
 * The IOVA bitmap dirty tracking reports into: one bit per `page_size` bytes of an IOVA range,
 * written into a caller's buffer laid out as the uapi's `__u64 *data` (little-endian u64 words,
 * as RV64 Linux stores them: bit `i` is bit `i % 8` of byte `i / 8`). Mirrors
 * include/linux/iova_bitmap.h and drivers/iommu/iommufd/iova_bitmap.c, and the core's
 * struct iommu_dirty_bitmap with iommu_dirty_bitmap_init()/_record() of include/linux/iommu.h.
 *
 * DIVERGENCE: Linux pins the user's bitmap pages a window at a time (2 MiB of bitmap, 64 GiB of
 * IOVA at 4 KiB) and iova_bitmap_for_each() calls back once per window, carrying bits that fall
 * past a window into the next ("set ahead"). Here the buffer is ordinary memory, so there is one
 * window covering the whole range, nothing to pin and no iova_bitmap_free().
 *
 * IOVAs and lengths are numbers: exact for page-aligned values across the whole 64-bit space.
 *
 * @example Two dirty pages of a 1 MiB range at 4 KiB granularity
 * ```ts
 * import assert from "node:assert/strict";
 * import { iova_bitmap_alloc, iova_bitmap_set } from "@iommu-lab/iommu";
 *
 * const data = new BigUint64Array(4); // 256 pages
 * const bitmap = iova_bitmap_alloc(0x10_0000, 0x10_0000, 4096, data);
 * iova_bitmap_set(bitmap, 0x10_3000, 0x1001); // touches pages 3 and 4
 * assert.equal(data[0], 0b11000n);
 * ```
 *
 * @module
 */
import { Errno } from "@iommu-lab/kernel";
import type { IommuIotlbGather } from "./iommu.ts";

const TWO64 = 2 ** 64;

/**
 * A bitmap over `[iova, iova + length)` at `page_size` granularity, backed by the caller's
 * buffer. Mirrors struct iova_bitmap; make one with {@linkcode iova_bitmap_alloc}.
 */
export class IovaBitmap {
  /** Use {@linkcode iova_bitmap_alloc}. */
  constructor(
    /** First IOVA of the range (bit 0). */
    readonly iova: number,
    /** Bytes of IOVA the bitmap covers. */
    readonly length: number,
    /** Bytes of IOVA per bit, a power of two. */
    readonly page_size: number,
    /** The number of bits the range needs. */
    readonly nbits: number,
    /** The caller's buffer as bytes: bit `i` is bit `i % 8` of byte `i / 8`. */
    readonly data: Uint8Array,
  ) {}
}

/**
 * Makes a bitmap over `[iova, iova + length)` with one bit per `page_size` bytes in `data` (any
 * typed array or DataView; its bytes are used whatever its element type or alignment). Mirrors
 * iova_bitmap_alloc().
 *
 * Throws `EINVAL` for a length that is not a positive integer or a page size that is not a power
 * of two, `EOVERFLOW` when the range passes 2^64, and `EFAULT` when `data` is shorter than the
 * u64 words the range needs (where Linux would fault on the user's memory).
 */
export function iova_bitmap_alloc(
  iova: number,
  length: number,
  page_size: number,
  data: ArrayBufferView,
): IovaBitmap {
  if (!Number.isInteger(length) || length <= 0) {
    throw new Errno("EINVAL", `An IOVA bitmap cannot cover ${length} bytes`);
  }
  if (!Number.isInteger(page_size) || page_size < 1 || !Number.isInteger(Math.log2(page_size))) {
    throw new Errno("EINVAL", `IOVA bitmap page size ${page_size} is not a power of two`);
  }
  if (!Number.isInteger(iova) || iova < 0) {
    throw new Errno("EINVAL", `IOVA ${iova} is not a 64-bit address`);
  }
  if (iova + length > TWO64) {
    throw new Errno("EOVERFLOW", `IOVA range 0x${iova.toString(16)}+0x${length.toString(16)}`);
  }
  const nbits = Math.ceil(length / page_size);
  const need = Math.ceil(nbits / 64) * 8;
  if (data.byteLength < need) {
    throw new Errno("EFAULT", `IOVA bitmap of ${nbits} bits needs ${need} bytes`);
  }
  return new IovaBitmap(
    iova,
    length,
    page_size,
    nbits,
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
}

/**
 * Calls `fn` with each IOVA window of the bitmap; here one window, the whole range (see the
 * module's DIVERGENCE). Mirrors iova_bitmap_for_each(); an error `fn` throws ends the walk.
 */
export function iova_bitmap_for_each<T>(
  bitmap: IovaBitmap,
  opaque: T,
  fn: (bitmap: IovaBitmap, iova: number, length: number, opaque: T) => void,
): void {
  fn(bitmap, bitmap.iova, bitmap.length, opaque);
}

/**
 * Sets the bit of every page `[iova, iova + length)` touches, partial pages at both ends
 * included. Mirrors iova_bitmap_set().
 *
 * DIVERGENCE: the range is clipped to the bitmap's; Linux trusts its callers to stay inside and
 * carries what passes a window into the next one.
 */
export function iova_bitmap_set(bitmap: IovaBitmap, iova: number, length: number): void {
  const base = bitmap.iova;
  const start = iova > base ? iova : base;
  const end = Math.min(iova + length, base + bitmap.length);
  if (end <= start) return;
  const ps = bitmap.page_size;
  // Offsets from the base stay exact where `end - 1` near 2^64 would round back to `end`.
  _bitmap_set(bitmap.data, Math.floor((start - base) / ps), Math.ceil((end - base) / ps) - 1);
}

/** Sets bits `first..last` (inclusive) of `b`, whole bytes at once. Mirrors bitmap_set(). */
function _bitmap_set(b: Uint8Array, first: number, last: number): void {
  const fb = Math.floor(first / 8);
  const lb = Math.floor(last / 8);
  const lowMask = (0xff << first % 8) & 0xff;
  const highMask = 0xff >>> (7 - last % 8);
  if (fb === lb) {
    b[fb] |= lowMask & highMask;
    return;
  }
  b[fb] |= lowMask;
  if (lb > fb + 1) b.fill(0xff, fb + 1, lb);
  b[lb] |= highMask;
}

/** Never clear the dirty state read (iommufd's GET_DIRTY_BITMAP NO_CLEAR). Mirrors IOMMU_DIRTY_NO_CLEAR. */
export const IOMMU_DIRTY_NO_CLEAR = 1;

/**
 * Where a driver's read_and_clear_dirty reports: the bitmap (none when the caller only clears)
 * and the gather of the IOTLB ranges a clearing read must flush. Mirrors struct
 * iommu_dirty_bitmap; set it up with {@linkcode iommu_dirty_bitmap_init}.
 */
export class IommuDirtyBitmap {
  /** The bitmap dirty ranges are recorded in, or null. */
  bitmap: IovaBitmap | null = null;
  /** The gather cleared ranges are added to, or null. */
  gather: IommuIotlbGather | null = null;
}

/** Points `dirty` at `bitmap` and `gather`, emptying the gather. Mirrors iommu_dirty_bitmap_init(). */
export function iommu_dirty_bitmap_init(
  dirty: IommuDirtyBitmap,
  bitmap: IovaBitmap | null,
  gather: IommuIotlbGather | null,
): void {
  gather?.reset();
  dirty.bitmap = bitmap;
  dirty.gather = gather;
}

/**
 * Records `[iova, iova + length)` as dirty: its bits in the bitmap, its 4 KiB frames in the
 * gather. Mirrors iommu_dirty_bitmap_record().
 */
export function iommu_dirty_bitmap_record(
  dirty: IommuDirtyBitmap,
  iova: number,
  length: number,
): void {
  if (dirty.bitmap !== null) iova_bitmap_set(dirty.bitmap, iova, length);
  if (dirty.gather !== null) {
    const pfn = Math.floor(iova / 4096);
    dirty.gather.addRange(pfn, Math.ceil((iova + length) / 4096) - pfn);
  }
}
