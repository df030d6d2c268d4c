import assert from "node:assert/strict";
import { isErrno } from "@iommu-lab/kernel";
import {
  iommu_dirty_bitmap_init,
  iommu_dirty_bitmap_record,
  IommuDirtyBitmap,
  iova_bitmap_alloc,
  iova_bitmap_for_each,
  iova_bitmap_set,
} from "./iova_bitmap.ts";
import { IommuIotlbGather } from "./iommu.ts";

/** The set bits of `bytes`, read as the uapi's little-endian u64 bitmap, bit by bit. */
function setBits(bytes: Uint8Array, nbits: number): number[] {
  const out = [];
  for (let i = 0; i < nbits; i++) if ((bytes[i >> 3] >> (i & 7)) & 1) out.push(i);
  return out;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

Deno.test("iova_bitmap_set: every page the range touches, partial pages at both ends", () => {
  for (const ps of [4096, 8192, 2 ** 21]) {
    const base = 16 * ps;
    const data = new Uint8Array(16);
    const bm = iova_bitmap_alloc(base, 128 * ps, ps, data);
    // Starts one byte before page 5 ends, ends one byte into page 9.
    iova_bitmap_set(bm, base + 6 * ps - 1, 3 * ps + 2);
    assert.deepEqual(setBits(data, 128), range(5, 9), `page size ${ps}`);
    // One byte is one page; a page-aligned page is exactly one bit.
    iova_bitmap_set(bm, base + 20 * ps + 17, 1);
    iova_bitmap_set(bm, base + 30 * ps, ps);
    assert.deepEqual(setBits(data, 128), [...range(5, 9), 20, 30]);
  }
});

Deno.test("iova_bitmap_set: ranges spanning u64 words and whole bytes set exactly their bits", () => {
  const data = new BigUint64Array(3);
  const bm = iova_bitmap_alloc(0, 192 * 4096, 4096, data);
  iova_bitmap_set(bm, 60 * 4096, 10 * 4096); // bits 60..69: crosses words 0 and 1
  assert.equal(data[0], 0xfn << 60n);
  assert.equal(data[1], 0x3fn);
  iova_bitmap_set(bm, 100 * 4096, 90 * 4096); // bits 100..189: whole bytes in between
  assert.equal(data[1], 0x3fn | (((1n << 28n) - 1n) << 36n));
  assert.equal(data[2], (1n << 62n) - 1n);
  const bytes = new Uint8Array(data.buffer);
  assert.deepEqual(setBits(bytes, 192), [...range(60, 69), ...range(100, 189)]);
});

Deno.test("iova_bitmap_set: u64-unaligned buffers and Uint32Array views get the uapi layout", () => {
  const backing = new ArrayBuffer(64);
  const view = new Uint8Array(backing, 3, 24); // byte 3: not u64 aligned
  const bm = iova_bitmap_alloc(0x4000_0000, 130 * 4096, 4096, view);
  iova_bitmap_set(bm, 0x4000_0000 + 7 * 4096, 3 * 4096);
  iova_bitmap_set(bm, 0x4000_0000 + 129 * 4096, 4096);
  const all = new Uint8Array(backing);
  assert.equal(all[2], 0, "nothing before the buffer");
  assert.deepEqual(setBits(all.subarray(3), 130), [7, 8, 9, 129]);
  assert.ok(all.subarray(3 + 17).every((b) => b === 0), "nothing past bit 129");

  const words = new Uint32Array(4);
  const bm32 = iova_bitmap_alloc(0, 128 * 8192, 8192, words);
  iova_bitmap_set(bm32, 31 * 8192, 2 * 8192);
  assert.deepEqual([...words], [2 ** 31, 1, 0, 0], "bit 31 of word 0, bit 0 of word 1");
});

Deno.test("iova_bitmap_set: a range partly outside the bitmap sets only the bits inside", () => {
  const data = new Uint8Array(8);
  const bm = iova_bitmap_alloc(0x20_0000, 64 * 4096, 4096, data);
  iova_bitmap_set(bm, 0x10_0000, 0x10_0000 + 2 * 4096); // ends in page 1
  iova_bitmap_set(bm, 0x20_0000 + 62 * 4096, 0x20_0000); // runs far past the end
  iova_bitmap_set(bm, 0x40_0000, 4096); // wholly after
  iova_bitmap_set(bm, 0, 4096); // wholly before
  assert.deepEqual(setBits(data, 64), [0, 1, 62, 63]);
  assert.deepEqual([...data], [3, 0, 0, 0, 0, 0, 0, 0xc0]);
});

Deno.test("iova_bitmap_set: a range that is not a page multiple ends on the page of its last byte", () => {
  const data = new Uint8Array(8);
  // 10 pages and one byte: 11 bits, and the 11th is reachable.
  const bm = iova_bitmap_alloc(0, 10 * 4096 + 1, 4096, data);
  assert.equal(bm.nbits, 11);
  iova_bitmap_set(bm, 9 * 4096, 3 * 4096);
  assert.deepEqual(setBits(data, 64), [9, 10]);
});

Deno.test("iova_bitmap_alloc: bad lengths, page sizes and short buffers fail with Linux's errno", () => {
  const data = new BigUint64Array(2);
  for (const len of [0, -4096, 1.5]) {
    assert.throws(() => iova_bitmap_alloc(0, len, 4096, data), (e) => isErrno(e, "EINVAL"));
  }
  for (const ps of [0, 3, 4095, 6144, 0.5]) {
    assert.throws(() => iova_bitmap_alloc(0, 4096, ps, data), (e) => isErrno(e, "EINVAL"));
  }
  assert.throws(() => iova_bitmap_alloc(-4096, 4096, 4096, data), (e) => isErrno(e, "EINVAL"));
  assert.throws(
    () => iova_bitmap_alloc(2 ** 64 - 4096, 8192, 4096, data),
    (e) => isErrno(e, "EOVERFLOW"),
  );
  // 129 pages need three u64 words; two are too few.
  assert.throws(
    () => iova_bitmap_alloc(0, 129 * 4096, 4096, data),
    (e) => isErrno(e, "EFAULT"),
  );
  assert.equal(iova_bitmap_alloc(0, 128 * 4096, 4096, data).nbits, 128);
  // The last page of the 64-bit space is addressable.
  const top = iova_bitmap_alloc(2 ** 64 - 128 * 4096, 128 * 4096, 4096, data);
  iova_bitmap_set(top, 2 ** 64 - 4096, 4096);
  assert.equal(data[0], 0n);
  assert.equal(data[1], 1n << 63n);
  // Near 2^64 a number has no room for `end - 1`: the last bit must still be right.
  data.fill(0n);
  iova_bitmap_set(top, 2 ** 64 - 3 * 4096, 2 * 4096);
  assert.equal(data[1], 3n << 61n);
});

Deno.test("iova_bitmap_for_each: one window, the whole range", () => {
  const bm = iova_bitmap_alloc(0x1000, 0x8000, 4096, new Uint8Array(8));
  const seen: [number, number, string][] = [];
  iova_bitmap_for_each(bm, "arg", (b, iova, length, opaque) => {
    assert.equal(b, bm);
    seen.push([iova, length, opaque]);
  });
  assert.deepEqual(seen, [[0x1000, 0x8000, "arg"]]);
});

Deno.test("iommu_dirty_bitmap_record: sets the bits and widens the gather", () => {
  const data = new Uint8Array(8);
  const bm = iova_bitmap_alloc(0x10_0000, 64 * 4096, 4096, data);
  const gather = new IommuIotlbGather();
  gather.addRange(7, 1); // stale: init empties it
  const dirty = new IommuDirtyBitmap();
  iommu_dirty_bitmap_init(dirty, bm, gather);
  assert.ok(gather.isEmpty);
  iommu_dirty_bitmap_record(dirty, 0x10_2000, 0x2000);
  iommu_dirty_bitmap_record(dirty, 0x10_8000, 0x1000);
  assert.deepEqual(setBits(data, 64), [2, 3, 8]);
  assert.deepEqual([gather.startPfn, gather.endPfn], [0x102, 0x109]);

  // No bitmap: only the gather (iommufd clearing the dirty state when tracking starts).
  const only = new IommuDirtyBitmap();
  const g2 = new IommuIotlbGather();
  iommu_dirty_bitmap_init(only, null, g2);
  iommu_dirty_bitmap_record(only, 0x4000, 0x1000);
  assert.deepEqual([g2.startPfn, g2.endPfn], [4, 5]);
});
