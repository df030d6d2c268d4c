// PtIommu beyond the KUnit suites: Linux's errnos for bad arguments, map/unmap edge semantics,
// the gather contract, fail-nth allocation unwinding and sign-extended IOVA forms.
import assert from "node:assert/strict";
import { type ErrnoName, isErrno } from "@iommu-lab/kernel";
import { type Iova, PtIommu } from "./iommu_pt.ts";
import type { PtFeatures } from "./pt_defs.ts";
import { IOMMU_READ, IOMMU_WRITE, IommuIotlbGather } from "@iommu-lab/iommu";
import { riscv64, riscv64x4 } from "./riscv.ts";
import { forEachConfig, PtFixture } from "./test_fixture.ts";

const RW = IOMMU_READ | IOMMU_WRITE;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;

function fixture(vaBits = 39, features: PtFeatures = { svnapot: true, signExtend: true }) {
  return new PtFixture({ name: "t", format: riscv64, vaBits, features });
}

function throwsErrno(fn: () => unknown, code: ErrnoName): void {
  assert.throws(fn, (e) => {
    assert.ok(isErrno(e, code), `expected -${code}, got ${e}`);
    return true;
  });
}

Deno.test("map_pages() rejects bad arguments with Linux's errnos and changes nothing", async (t) => {
  const fx = fixture();
  const pt = fx.pt;
  const cases: [string, () => unknown, ErrnoName][] = [
    ["unaligned iova", () => pt.map_pages(0x1001, 0x1000, 4096, 1, RW), "EINVAL"],
    ["non-integer iova", () => pt.map_pages(4096.5, 0x1000, 4096, 1, RW), "EINVAL"],
    ["iova not aligned to pgsize", () => pt.map_pages(0x1000, 0, M2, 1, RW), "EINVAL"],
    ["unaligned paddr", () => pt.map_pages(0x1000, 0x1800, 4096, 1, RW), "EINVAL"],
    ["paddr not aligned to pgsize", () => pt.map_pages(M2, 0x1000, M2, 1, RW), "EINVAL"],
    ["negative paddr", () => pt.map_pages(0x1000, -4096, 4096, 1, RW), "EINVAL"],
    ["pgsize 8K not in the bitmap", () => pt.map_pages(0, 0, 8192, 1, RW), "EINVAL"],
    ["pgsize 512G not in an Sv39 bitmap", () => pt.map_pages(0, 0, 2 ** 39, 1, RW), "EINVAL"],
    ["zero pgcount", () => pt.map_pages(0x1000, 0, 4096, 0, RW), "EINVAL"],
    ["fractional pgcount", () => pt.map_pages(0x1000, 0, 4096, 1.5, RW), "EINVAL"],
    ["zero size", () => pt.map(0x1000, 0, 0, RW), "EINVAL"],
    ["size not a page multiple", () => pt.map(0x1000, 0, 100, RW), "EINVAL"],
    ["prot without READ or WRITE", () => pt.map_pages(0x1000, 0, 4096, 1, 0), "EINVAL"],
    ["past the lower half", () => pt.map_pages(2 ** 38, 0, 4096, 1, RW), "ERANGE"],
    ["across the end of the lower half", () => pt.map(2 ** 38 - 4096, 0, 8192, RW), "ERANGE"],
    ["a non-canonical bigint", () => pt.map(2n ** 63n, 0, 4096, RW), "ERANGE"],
    ["a bigint above 64 bits", () => pt.map(2n ** 64n, 0, 4096, RW), "ERANGE"],
    ["wrapping past 2^64", () => pt.map_pages(-4096, 0, 4096, 2, RW), "EOVERFLOW"],
    ["output past 56 bits", () => pt.map(0x1000, 2 ** 56 - 4096, 8192, RW), "ERANGE"],
  ];
  for (const [name, fn, code] of cases) {
    await t.step(`${name}: -${code}`, () => {
      throwsErrno(fn, code);
      assert.equal(fx.countValids(), 0);
      assert.equal(fx.alloc.allocatedPages, 1, "only the root is allocated");
    });
  }
  await t.step("64K without Svnapot: -EINVAL", () => {
    const plain = fixture(39, { signExtend: true });
    throwsErrno(() => plain.pt.map_pages(0, 0, 0x1_0000, 1, RW), "EINVAL");
    plain.finish();
  });
  await t.step("the upper half without sign extension: -ERANGE", () => {
    const plain = fixture(48, {});
    throwsErrno(() => plain.pt.map(-4096, 0, 4096, RW), "ERANGE");
    assert.equal(plain.pt.iova_to_phys(-4096), 0);
    plain.finish();
  });
  fx.finish();
});

Deno.test("unmap_pages() rejects bad arguments with Linux's errnos", () => {
  const fx = fixture();
  const { pt, gather } = fx;
  throwsErrno(() => pt.unmap_pages(0x1001, 4096, 1, gather), "EINVAL");
  throwsErrno(() => pt.unmap_pages(0x1000, M2, 1, gather), "EINVAL");
  throwsErrno(() => pt.unmap_pages(0, 8192, 1, gather), "EINVAL");
  throwsErrno(() => pt.unmap_pages(0, 4096, 0, gather), "EINVAL");
  throwsErrno(() => pt.unmap(0, 0, gather), "EINVAL");
  throwsErrno(() => pt.unmap_pages(-4096, 4096, 2, gather), "EOVERFLOW");
  throwsErrno(() => pt.unmap_pages(2 ** 38, 4096, 1, gather), "ERANGE");
  assert.ok(gather.isEmpty);
  fx.finish();
});

Deno.test("mapping over a mapping is -EADDRINUSE and leaves nothing of the call mapped", async (t) => {
  await t.step("4K pages over one mapped page", () => {
    const fx = fixture();
    fx.doMap(10, 0x100, 1);
    throwsErrno(() => fx.pt.map_pages(0, 0x8000_0000, 4096, 16, RW), "EADDRINUSE");
    for (let i = 0; i < 16; i++) {
      assert.equal(fx.pt.iova_to_phys(i * 4096), i === 10 ? 0x100 * 4096 : 0, `page ${i}`);
    }
    fx.doUnmap(10, 1);
    fx.finish();
  });
  await t.step("a 2M leaf over a 4K page, a 4K page inside a 2M leaf", () => {
    const fx = fixture();
    fx.doMap(0x201, 1, 1);
    throwsErrno(() => fx.pt.map(M2, 0, M2, RW), "EADDRINUSE");
    fx.doMap(0x400, 0x400, 512);
    throwsErrno(() => fx.pt.map_pages(0x401 * 4096, 0, 4096, 1, RW), "EADDRINUSE");
    throwsErrno(() => fx.pt.map_pages(0x410 * 4096, 0, 0x1_0000, 1, RW), "EADDRINUSE");
    assert.equal(fx.countValids(), 2);
    fx.doUnmap(0x201, 1);
    fx.doUnmap(0x400, 512);
    fx.finish();
  });
  await t.step("a 64K Svnapot leaf over a 4K page and the reverse", () => {
    const fx = fixture();
    fx.doMap(0x13, 0x13, 1);
    throwsErrno(() => fx.pt.map_pages(0x1_0000, 0, 0x1_0000, 1, RW), "EADDRINUSE");
    fx.doMap(0x20, 0x20, 16);
    throwsErrno(() => fx.pt.map_pages(0x2f * 4096, 0, 4096, 1, RW), "EADDRINUSE");
    fx.doUnmap(0x13, 1);
    fx.doUnmap(0x20, 16);
    fx.finish();
  });
  await t.step("map() undoes its earlier chunks when a later one collides", () => {
    const fx = fixture();
    fx.doMap(0x400, 7, 1); // inside the last chunk of the range below
    // 4K chunks up to 2M, a 2M leaf, then 4K chunks from 4M.
    throwsErrno(() => fx.pt.map(0x1ff * 4096, 0x1ff * 4096, M2 + 2 * 4096, RW), "EADDRINUSE");
    assert.equal(fx.countValids(), 1);
    fx.doUnmap(0x400, 1);
    fx.finish();
  });
});

Deno.test("unmap_pages(): a hole or the inside of a leaf unmaps nothing; a leaf is never split", async (t) => {
  await t.step("double unmap returns 0", () => {
    const fx = fixture();
    fx.doMap(5, 5, 1);
    fx.doUnmap(5, 1);
    assert.equal(fx.pt.unmap(5 * 4096, 4096, fx.gather), 0);
    assert.equal(fx.pt.unmap(G1, G1, fx.gather), 0);
    fx.finish();
  });
  await t.step("starting inside a 2M leaf or a 64K leaf returns 0 and keeps the leaf", () => {
    const fx = fixture();
    fx.doMap(0x200, 0x200, 512);
    fx.doMap(0x10, 0x10, 16);
    assert.equal(fx.pt.unmap(M2 + 4096, 4096, fx.gather), 0);
    assert.equal(fx.pt.unmap(0x11 * 4096, 4096, fx.gather), 0);
    assert.equal(fx.countValids(), 2);
    assert.equal(fx.pt.unmap(0x10 * 4096, 4096, fx.gather), 0x1_0000);
    assert.equal(fx.pt.unmap(M2, 4096, fx.gather), M2);
    assert.equal(fx.countValids(), 0);
    fx.finish();
  });
  await t.step("unmapping stops at the first hole", () => {
    const fx = fixture();
    fx.doMap(0, 0, 4);
    fx.doMap(5, 5, 3);
    assert.equal(fx.pt.unmap(0, 8 * 4096, fx.gather), 4 * 4096);
    assert.equal(fx.pt.iova_to_phys(6 * 4096), 6 * 4096);
    fx.doUnmap(5, 3);
    fx.finish();
  });
});

Deno.test("the gather records range and levels; table pages come back only on putPages()", async (t) => {
  await t.step("a 4K unmap is a level-0 leaf change", () => {
    const fx = fixture();
    fx.doMap(0x123, 0, 1);
    const g = new IommuIotlbGather();
    fx.pt.unmap(0x123 * 4096, 4096, g);
    assert.deepEqual([g.startPfn, g.endPfn, g.leafLevels, g.tableLevels], [0x123, 0x124, 1, 0]);
    assert.equal(g.freelist.length, 0);
    fx.finish();
  });
  await t.step("unmapping all of a level-0 table frees it through the gather", () => {
    const fx = fixture();
    for (let i = 0; i < 512; i++) fx.pt.map_pages((0x200 + i) * 4096, i * 4096, 4096, 1, RW);
    const before = fx.alloc.allocatedPages;
    const g = new IommuIotlbGather();
    assert.equal(fx.pt.unmap(M2, M2, g), M2);
    assert.deepEqual([g.startPfn, g.endPfn, g.leafLevels, g.tableLevels], [0x200, 0x400, 1, 2]);
    assert.equal(g.freelist.length, 1);
    assert.equal(fx.alloc.allocatedPages, before, "not freed before the flush");
    g.putPages();
    assert.equal(fx.alloc.allocatedPages, before - 1);
    fx.finish();
  });
  await t.step("a large leaf over an emptied table frees it through the map's gather", () => {
    const fx = fixture();
    fx.doMap(0x200, 0, 1);
    fx.doUnmap(0x200, 1); // leaves an empty level-0 table behind
    const before = fx.alloc.allocatedPages;
    const g = new IommuIotlbGather();
    fx.pt.map_pages(M2, 0, M2, 1, RW, g);
    assert.deepEqual([g.startPfn, g.endPfn, g.leafLevels, g.tableLevels], [0x200, 0x400, 0, 2]);
    assert.equal(g.freelist.length, 1);
    g.putPages();
    assert.equal(fx.alloc.allocatedPages, before - 1);
    fx.doUnmap(0x200, 512);
    fx.finish();
  });
  await t.step("without a gather, the iotlbSync hook flushes before the pages are freed", () => {
    const fx = fixture();
    const seen: number[] = [];
    const pt = new PtIommu({
      mem: fx.ram,
      alloc: fx.alloc,
      vaBits: 39,
      iotlbSync: (g) => seen.push(g.tableLevels, g.freelist.length, fx.alloc.allocatedPages),
    });
    pt.map(M2, 0, 4096, RW);
    pt.unmap(M2, 4096, fx.gather);
    const before = fx.alloc.allocatedPages;
    pt.map(M2, 0, M2, RW);
    assert.deepEqual(seen, [2, 1, before]);
    assert.equal(fx.alloc.allocatedPages, before - 1);
    pt.deinit();
    fx.finish();
  });
  await t.step("a gather refuses pages of a second allocator", () => {
    const a = fixture();
    const b = fixture();
    const g = new IommuIotlbGather();
    g.addFreedTable(0x1000, a.alloc);
    throwsErrno(() => g.addFreedTable(0x2000, b.alloc), "EINVAL");
    g.freelist.length = 0;
    a.finish();
    b.finish();
  });
});

Deno.test("fail-nth: a table allocation failure is -ENOMEM, maps nothing and leaks nothing", async (t) => {
  // 4K, 2M, 2M and 4K chunks across a 1 GiB boundary: several tables at several levels.
  const start = (G1 - M2 - 4096) / 4096;
  const pages = (2 * M2 + 2 * 4096) / 4096;
  await forEachConfig(t, (base) => {
    let n = 1;
    for (;; n++) {
      const fx = new PtFixture(base.cfg);
      fx.alloc.failNth(n);
      try {
        fx.doMap(start, start, pages);
        fx.alloc.failNth(0);
        fx.doUnmap(start, pages);
        fx.finish();
        break;
      } catch (e) {
        assert.ok(isErrno(e, "ENOMEM"), String(e));
      }
      assert.equal(fx.countValids(), 0, `after failing allocation ${n}`);
      // As Linux, the tables built before the failure stay linked (and empty).
      assert.equal(fx.alloc.allocatedPages, (1 << base.cfg.format.topOrder) + n - 1);
      fx.doMap(start, start, pages);
      fx.checkIova(start, start, pages);
      fx.doUnmap(start, pages);
      fx.finish();
    }
    // Levels below the top: two 4K tables, two 2M tables, and one table per level above.
    assert.equal(n - 1, 4 + base.pt.topLevel - 2, "every table allocation was failed once");
  });
  await t.step("the root allocation", () => {
    const fx = fixture();
    fx.alloc.failNth(1);
    throwsErrno(() => new PtIommu({ mem: fx.ram, alloc: fx.alloc, vaBits: 48 }), "ENOMEM");
    fx.finish();
  });
});

Deno.test("sign-extended IOVAs: negative numbers, u64 and negative bigints name the same page", () => {
  const fx = fixture(57);
  const forms: Iova[] = [-4096, 2n ** 64n - 4096n, -4096n];
  fx.pt.map(forms[0], 0x9000_0000, 4096, RW);
  for (const iova of forms) assert.equal(fx.pt.iova_to_phys(iova), 0x9000_0000);
  assert.equal(fx.pt.iova_to_phys(-1), 0x9000_0fff);
  assert.equal(fx.pt.iova_to_phys(-1n), 0x9000_0fff);
  throwsErrno(() => fx.pt.map(forms[1], 0, 4096, RW), "EADDRINUSE");
  assert.equal(fx.pt.unmap(forms[2], 4096, fx.gather), 4096);
  // The first upper-half page and lower-half IOVAs above 2^53 as plain numbers.
  fx.pt.map(-(2 ** 56), 0x9000_1000, 4096, RW);
  assert.equal(fx.pt.iova_to_phys(2n ** 64n - 2n ** 56n + 0x10n), 0x9000_1010);
  fx.pt.map(2 ** 55, 0x9000_2000, 4096, RW);
  assert.equal(fx.pt.iova_to_phys(2n ** 55n + 8n), 0x9000_2008);
  fx.pt.unmap(-(2 ** 56), 4096, fx.gather);
  fx.pt.unmap(2n ** 55n, 4096, fx.gather);
  fx.finish();
});

Deno.test("iova_to_phys() keeps the page offset and is 0 where nothing maps", () => {
  const fx = fixture();
  fx.doMap(0x400, 0x9_0000, 512);
  assert.equal(fx.pt.iova_to_phys(0x400 * 4096 + 0x12_3456), 0x9_0000 * 4096 + 0x12_3456);
  assert.equal(fx.pt.iova_to_phys(0x3ff * 4096), 0);
  assert.equal(fx.pt.iova_to_phys(2 ** 40), 0, "outside the IOVA space");
  throwsErrno(() => fx.pt.iova_to_phys(0.5), "EINVAL");
  fx.doUnmap(0x400, 512);
  fx.finish();
});

Deno.test("deinit() frees every table without unmapping first, once; the table is then unusable (EINVAL)", () => {
  const fx = fixture(48);
  for (let i = 0; i < 64; i++) fx.doMap(i * 0x4_0123, i, 1);
  assert.ok(fx.alloc.allocatedPages > 64);
  fx.pt.deinit();
  fx.pt.deinit();
  assert.equal(fx.alloc.allocatedPages, 0);
  throwsErrno(() => fx.pt.map_pages(0x1000, 0x1000, 4096, 1, RW), "EINVAL");
  throwsErrno(() => fx.pt.map(M2, 0, 2 * M2, RW), "EINVAL");
  throwsErrno(() => fx.pt.unmap_pages(0, 4096, 1, fx.gather), "EINVAL");
  throwsErrno(() => fx.pt.unmap(0, M2, fx.gather), "EINVAL");
  throwsErrno(() => fx.pt.hwInfo(), "EINVAL");
  assert.equal(fx.pt.iova_to_phys(0), 0);
  assert.equal(fx.countValids(), 0);
  assert.equal(fx.alloc.allocatedPages, 0, "nothing allocated after the free");
});

Deno.test("pt_iommu_init(): a width or feature the format lacks, or a root the IOMMU cannot address, is EINVAL", async (t) => {
  const fx = fixture();
  const make = (config: Partial<ConstructorParameters<typeof PtIommu>[0]>) => () =>
    new PtIommu({ mem: fx.ram, alloc: fx.alloc, vaBits: 39, ...config });
  await t.step("riscv64 has no 41-bit space, riscv64x4 no 39-bit one", () => {
    throwsErrno(make({ vaBits: 41 }), "EINVAL");
    throwsErrno(make({ vaBits: 39, format: riscv64x4 }), "EINVAL");
    throwsErrno(make({ vaBits: 32 }), "EINVAL");
  });
  await t.step("the second stage cannot sign-extend", () => {
    throwsErrno(make({ vaBits: 41, format: riscv64x4, features: { signExtend: true } }), "EINVAL");
  });
  await t.step("a root above 56 bits of output address is freed again", () => {
    const high = { allocTable: () => 2 ** 56, freeTable: (pa: number) => freed.push(pa) };
    const freed: number[] = [];
    throwsErrno(make({ alloc: high }), "EINVAL");
    assert.deepEqual(freed, [2 ** 56]);
  });
  await t.step("a misaligned second-stage root is freed again", () => {
    const odd = { allocTable: () => 0x8000_1000, freeTable: (pa: number) => freed.push(pa) };
    const freed: number[] = [];
    throwsErrno(make({ alloc: odd, vaBits: 41, format: riscv64x4 }), "EINVAL");
    assert.deepEqual(freed, [0x8000_1000]);
  });
  assert.equal(fx.alloc.allocatedPages, 1, "only the fixture's own root");
  fx.finish();
});
