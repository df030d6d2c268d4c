// The generic_pt iommu suite (kunit_iommu_pt.h), run for every format configuration; each case
// ends with the KUnit exit check that deinit gives every table page back.
import assert from "node:assert/strict";
import { isErrno } from "@iommu-lab/kernel";
import { IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/iommu";
import { forEachConfig, type PtFixture, rng32, testSeed } from "./test_fixture.ts";

const RW = IOMMU_READ | IOMMU_WRITE;
const SZ_2G_PAGES = 2 ** 19;

/** log2_set_mod(test_oa, 0, lg2): the test OA aligned down to 2^lg2 bytes, as a frame. */
function testOa(fx: PtFixture, lg2: number): number {
  const pages = 2 ** (lg2 - 12);
  return fx.testOaPpn - fx.testOaPpn % pages;
}

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

Deno.test("test_map_simple: every page size maps, translates and unmaps", async (t) => {
  await forEachConfig(t, (fx) => {
    let cur = 256;
    for (const lg2 of fx.safeSizesLg2) {
      const pages = 2 ** (lg2 - 12);
      cur = alignUp(cur, pages);
      fx.doMap(cur, testOa(fx, lg2), pages);
      if (pages <= SZ_2G_PAGES) fx.checkIova(cur, testOa(fx, lg2), pages);
      cur += pages;
    }
    // The read interface reports that exactly one leaf of every size was created.
    const counts = fx.leafCounts();
    for (let lg2 = 12; lg2 < 64; lg2++) {
      assert.equal(counts.get(lg2) ?? 0, fx.safeSizesLg2.includes(lg2) ? 1 : 0, `size 2^${lg2}`);
    }
    cur = 256;
    for (const lg2 of fx.safeSizesLg2) {
      const pages = 2 ** (lg2 - 12);
      cur = alignUp(cur, pages);
      fx.doUnmap(cur, pages);
      cur += pages;
    }
    assert.equal(fx.countValids(), 0);
  });
});

Deno.test("test_map_table_to_oa: a large map replaces tables emptied by unmaps", async (t) => {
  await forEachConfig(t, (fx) => {
    // Sizes below 16G: the largest is the 1G item of level 2.
    const sizes = fx.safeSizesLg2.filter((lg2) => lg2 < 34);
    const maxLg2 = sizes[sizes.length - 1];
    const maxPages = 2 ** (maxLg2 - 12);
    const cur = alignUp(256, maxPages);
    for (const lg2 of sizes) {
      const pages = 2 ** (lg2 - 12);
      const oa = testOa(fx, lg2);
      for (let off = 0; off < maxPages; off += pages) fx.doMap(cur + off, oa + off, pages);
      fx.checkIova(cur, oa, maxPages);
      const counts = fx.leafCounts();
      assert.equal(counts.size, 1, "only one leaf size present");
      assert.equal(counts.get(lg2), maxPages / pages);
      if (pages === maxPages) {
        fx.doUnmap(cur, maxPages);
      } else {
        fx.doUnmap(cur, maxPages / 2);
        for (let off = maxPages / 2; off < maxPages; off += pages) fx.doUnmap(cur + off, pages);
      }
      assert.equal(fx.countValids(), 0);
    }
  });
});

Deno.test("test_unmap_split: unmapping the start of a large page unmaps all of it", async (t) => {
  await forEachConfig(t, (fx) => {
    let count = 0;
    for (const base of fx.safeSizesLg2) {
      for (const next of fx.safeSizesLg2.filter((lg2) => lg2 > base)) {
        const basePages = 2 ** (base - 12);
        const nextPages = 2 ** (next - 12);
        const unmap = (pfn: number, pages: number) => {
          const n = fx.pt.unmap(fx.iova(pfn), pages * 4096, fx.gather);
          fx.sync();
          return n;
        };
        fx.doMap(0, 0, nextPages);
        assert.equal(unmap(0, basePages), nextPages * 4096);
        // The unmap does not run on into the next large page.
        fx.doMap(0, 0, nextPages);
        fx.doMap(nextPages, 0, nextPages);
        assert.equal(unmap(0, basePages), nextPages * 4096);
        assert.equal(fx.leafCounts().get(next), 1);
        assert.equal(unmap(nextPages, nextPages), nextPages * 4096);
        assert.equal(fx.countValids(), 0);
        count++;
      }
    }
    assert.ok(count > 0, "the format has two page sizes");
  });
});

/** Iterations of test_random_map per configuration (the KUnit test's 1000 with `=1000`). */
const RANDOM_MAP_ITERS = Number(Deno.env.get("GENERIC_PT_RANDOM_MAP_ITERS") ?? 250);

Deno.test("test_random_map: random maps and unmaps with EADDRINUSE collisions, both halves", async (t) => {
  await forEachConfig(t, (fx) => {
    const rnd = rng32(testSeed());
    const gib = 2 ** 18; // 1 GiB in frames
    const ranges = [{ start: 1, last: 1 + gib }];
    if (fx.highStart !== undefined) ranges.push({ start: fx.highStart, last: fx.highStart + gib });
    const live: { start: number; end: number }[] = [];
    let collisions = 0;
    // The maple tree of the C test: what is mapped, to find collisions.
    const unmapCollisions = (start: number, end: number) => {
      for (let i = live.length - 1; i >= 0; i--) {
        const r = live[i];
        if (r.start >= end || r.end <= start) continue;
        live.splice(i, 1);
        fx.checkIova(r.start, r.start % 2 ** 44, r.end - r.start, 512);
        fx.doUnmap(r.start, r.end - r.start);
      }
    };
    for (let iter = 0; iter < RANDOM_MAP_ITERS; iter++) {
      const range = ranges[rnd() % ranges.length];
      // Offsets below 4 GiB, page aligned: frames below 2^20.
      const start = range.start + rnd() % Math.min(2 ** 20, range.last - range.start);
      const end = start + 1 + rnd() % Math.min(2 ** 20, range.last - start);
      if (end > range.last + 1) continue;
      const ppn = start % 2 ** 44;
      const pages = end - start;
      try {
        fx.pt.map(fx.iova(start), ppn * 4096, pages * 4096, RW);
      } catch (e) {
        assert.ok(isErrno(e, "EADDRINUSE"), String(e));
        collisions++;
        unmapCollisions(start, end);
        fx.doMap(start, ppn, pages);
      }
      live.push({ start, end });
      fx.checkIova(start, ppn, pages, 512);
    }
    unmapCollisions(0, 2 ** 52);
    assert.equal(fx.countValids(), 0);
    assert.ok(collisions > 0, "some maps collided");
  });
});

Deno.test("test_pgsize_boundary: a 128 KiB map just below 4 GiB succeeds", async (t) => {
  await forEachConfig(t, (fx) => {
    fx.doMap(0xfef80000 / 4096, 0x208b95d000 / 4096, 0x20000 / 4096);
    fx.checkIova(0xfef80000 / 4096, 0x208b95d000 / 4096, 0x20000 / 4096);
  });
});

Deno.test("test_mixed: a range across 1G boundaries is 14×2M + 3×1G + 3×2M leaves", async (t) => {
  await forEachConfig(t, (fx) => {
    const start = 0x3fe400;
    const end = 0x4c0600;
    fx.doMap(start, start, end - start);
    assert.equal(fx.countValids(), 20);
    assert.deepEqual([fx.leafCounts().get(21), fx.leafCounts().get(30)], [17, 3]);
    fx.checkIova(start, start, end - start, 4096);
  });
});
