// The generic_pt format suite (kunit_generic_pt.h), run for every format configuration.
import assert from "node:assert/strict";
import { isErrno } from "@iommu-lab/kernel";
import { ptComputeBestPgsize } from "./iommu_pt.ts";
import { ffs, fls } from "./log2.ts";
import { PT_ENTRY_EMPTY, PT_ENTRY_OA, PT_ENTRY_TABLE, type PtAttrs } from "./pt_defs.ts";
import { PtState } from "./pt_state.ts";
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/iommu";
import { forEachConfig, PT_TEST_CONFIGS, type PtFixture, rng32, testSeed } from "./test_fixture.ts";

const MAX_OA_PPN = 2 ** 44;

/** Bit `lg2` of a bitmap held in a number. */
function bit(bitmap: number, lg2: number): boolean {
  return Math.floor(bitmap / 2 ** lg2) % 2 === 1;
}

/**
 * KUnit's check_all_levels(): maps the highest page of the lower region so a table exists at
 * every level, checks the walk used the last index everywhere, then hands `fn` a cursor on the
 * unused index 0 of each table, lowest level first.
 */
function checkAllLevels(fx: PtFixture, fn: (pts: PtState) => void): void {
  const pfn = fx.lowEnd - 1;
  fx.doMap(pfn, 0, 1);
  const path = fx.walkPath(pfn);
  const top = fx.pt.topLevel;
  assert.equal(path.length, top + 1, "the walk reaches level 0");
  for (const step of path.reverse()) {
    const last = step.level === top ? fx.lowEnd / 512 ** top - 1 : 511;
    assert.equal(step.index, last, `level ${step.level} uses its last index`);
    const pts = new PtState(fx.ram);
    pts.table = step.table;
    pts.level = step.level;
    pts.index = 0;
    fn(pts);
  }
}

function readAttrs(fx: PtFixture, prot: number): PtAttrs {
  const attrs = { lo: 0, hi: 0 };
  fx.pt.format.setProt(prot, fx.pt.features, attrs);
  return attrs;
}

Deno.test("test_init: a domain starts with page sizes and a context MODE", async (t) => {
  await forEachConfig(t, (fx) => {
    assert.notEqual(fx.pt.pgsize_bitmap, 0);
    const info = fx.pt.hwInfo();
    assert.equal(info.mode, fx.pt.topLevel + 6);
    assert.equal(info.rootPa % (4096 << fx.cfg.format.topOrder), 0);
    assert.equal(info.ppn * 4096, info.rootPa);
    assert.equal(fx.countValids(), 0);
  });
});

Deno.test("test_bitops: fls and ffs hold at the integer limits", () => {
  assert.equal(fls(0), 0);
  assert.equal(fls(1), 1);
  assert.equal(fls(4), 3);
  assert.equal(fls(0xffff_ffff), 32);
  assert.equal(fls(2 ** 32), 33);
  assert.equal(fls(2 ** 53 - 1), 53);
  assert.equal(ffs(1), 0);
  assert.equal(ffs(4), 2);
  assert.equal(ffs(2 ** 31), 31);
  assert.equal(ffs(2 ** 32), 32);
  assert.equal(ffs(2 ** 52), 52);
  assert.equal(ffs(0), 64);
  for (let i = 0; i < 53; i++) {
    assert.equal(ffs(2 ** i), i);
    assert.equal(fls(2 ** i), i + 1);
    assert.equal(fls(2 ** i - 1), i);
  }
  const rnd = rng32(testSeed());
  for (let i = 0; i < 64; i++) {
    const val = (rnd() % 2 ** 21) * 2 ** 32 + rnd();
    if (val === 0) continue;
    assert.equal(val % 2 ** ffs(val), 0, "no bit below ffs");
    assert.equal(Math.floor(val / 2 ** ffs(val)) % 2, 1, "ffs is set");
    assert.equal(Math.floor(val / 2 ** fls(val)), 0, "no bit at or above fls");
  }
});

Deno.test("test_best_pgsize: the bit logic matches a brute-force search", () => {
  const rnd = rng32(testSeed());
  const r52 = () => (rnd() % 2 ** 20) * 2 ** 32 + rnd();
  const bitmap = () => {
    const b = (rnd() % 2 ** 21) * 2 ** 32 + rnd();
    return b - b % 4096;
  };
  const ref = (pgsz: number, va: number, last: number, oa: number) => {
    for (let lg2 = 52; lg2 >= 12; lg2--) {
      const pages = 2 ** (lg2 - 12);
      if (bit(pgsz, lg2) && va % pages === 0 && oa % pages === 0 && va + pages - 1 <= last) {
        return lg2;
      }
    }
    return 0;
  };
  const check = (pgsz: number, va: number, last: number, oa: number) => {
    if (va > last) [va, last] = [last, va];
    assert.equal(ptComputeBestPgsize(pgsz, va, last, oa), ref(pgsz, va, last, oa));
  };
  const setLow = (x: number, lg2: number) => x - x % 2 ** lg2 + 2 ** lg2 - 1;
  // Random prefixes with every suffix combination (frames, so 2^a pages = 2^(a+12) bytes).
  for (let a = 1; a < 10; a++) {
    for (let b = 1; b < 10; b++) {
      for (let c = 1; c < 10; c++) {
        check(bitmap(), r52() * 2 ** a % 2 ** 52, setLow(r52(), c), r52() * 2 ** b % 2 ** 52);
        // The page size bitmap empty: nothing fits.
        const va = r52() * 2 ** a % 2 ** 52;
        const last = setLow(r52(), c);
        assert.equal(ptComputeBestPgsize(0, Math.min(va, last), Math.max(va, last), 0), 0);
        // All-ones prefix up to the end of the space.
        check(bitmap(), 2 ** 52 - 2 ** a, 2 ** 52 - 1, 2 ** 52 - 2 ** b);
      }
    }
  }
  // Zero prefix, every suffix.
  for (let c = 1; c < 52; c++) check(bitmap(), 0, 2 ** c - 1, 0);
  // Sizes above 32 bits.
  for (let a = 20; a < 30; a++) {
    for (let b = 20; b < 30; b++) {
      for (let c = 20; c < 30; c++) {
        check(bitmap(), r52() * 2 ** a % 2 ** 52, setLow(r52(), c), r52() * 2 ** b % 2 ** 52);
      }
    }
  }
});

Deno.test("test_table_ptr: an installed table pointer reads back (non-leaf PTE)", async (t) => {
  await forEachConfig(t, (fx) => {
    checkAllLevels(fx, (pts) => {
      if (pts.level === 0) return; // level 0 can only hold leaves
      const pa = fx.testOaPpn * 4096;
      assert.equal(pts.load(), PT_ENTRY_EMPTY);
      pts.installTable(pa);
      assert.equal(pts.load(), PT_ENTRY_TABLE);
      assert.equal(pts.tablePa(), pa);
      pts.clear(0);
      assert.equal(pts.load(), PT_ENTRY_EMPTY);
    });
  });
});

Deno.test("test_max_va: the IOVA space ends where the format's width says", async (t) => {
  await forEachConfig(t, (fx) => {
    const rw = IOMMU_READ | IOMMU_WRITE;
    fx.doMap(fx.lowEnd - 1, 1, 1);
    assert.throws(
      () => fx.pt.map(fx.iova(fx.lowEnd), 0, 4096, rw),
      (e) => isErrno(e, "ERANGE"),
    );
    if (fx.highStart !== undefined) {
      fx.doMap(fx.highStart, 2, 1);
      assert.throws(
        () => fx.pt.map(BigInt(fx.highStart! - 1) << 12n, 0, 4096, rw),
        (e) => isErrno(e, "ERANGE"),
      );
      assert.equal(fx.pt.iova_to_phys(fx.iova(fx.highStart)), 2 * 4096);
    }
    assert.equal(fx.pt.iova_to_phys(fx.iova(fx.lowEnd - 1)), 4096);
  });
});

Deno.test("test_table_radix: the levels decode every IOVA bit, 9 per level", async (t) => {
  await forEachConfig(t, (fx) => {
    const pt = fx.pt;
    // Every bit below a level's item is decoded by the levels below it, up to the width.
    let vbits = 2 ** 12 - 1;
    checkAllLevels(fx, (pts) => {
      const isz = pt.itemLg2(pts.level);
      assert.equal(2 ** isz - 1, vbits);
      vbits = 2 ** (isz + pt.numItemsLg2(pts.level)) - 1;
    });
    assert.equal(vbits, 2 ** fx.cfg.vaBits - 1);
    // The engine puts each single-bit IOVA where a spec walk looks for it.
    const lastBit = fx.cfg.format.canSignExtend ? fx.cfg.vaBits - 1 : fx.cfg.vaBits;
    for (let b = 12; b < lastBit; b++) {
      const pfns = [2 ** (b - 12)];
      if (fx.highStart !== undefined) pfns.push(2 ** 52 - 2 ** (b - 12));
      for (const pfn of pfns) {
        fx.doMap(pfn, 0x1234, 1);
        const path = fx.walkPath(pfn);
        const leaf = path[path.length - 1];
        assert.equal(leaf.level, 0, `bit ${b}: the spec walk reaches level 0`);
        const pts = new PtState(fx.ram);
        Object.assign(pts, { table: leaf.table, level: 0, index: leaf.index });
        assert.equal(pts.load(), PT_ENTRY_OA);
        assert.equal(pts.entryOaPpn(), 0x1234);
        fx.doUnmap(pfn, 1);
      }
    }
  });
});

Deno.test("test_entry_possible_sizes: leaf sizes fit their level's table", async (t) => {
  await forEachConfig(t, (fx) => {
    const pt = fx.pt;
    checkAllLevels(fx, (pts) => {
      const sizes = pt.possibleSizes(pts.level);
      const isz = pt.itemLg2(pts.level);
      // The top table of a sign-extended space has half its entries below the sign bit.
      const items = pts.level === pt.topLevel
        ? Math.log2(fx.lowEnd / 2 ** (isz - 12))
        : pt.numItemsLg2(pts.level);
      assert.equal(sizes % 2 ** isz, 0, "no size below the item");
      assert.equal(Math.floor(sizes / 2 ** (items + isz)), 0, "no size past the table");
      assert.ok(bit(sizes, isz), "the item size itself is a leaf size");
      assert.ok(!bit(sizes, items + isz), "a contiguous leaf never spans the whole table");
    });
  });
});

Deno.test("test_entry_oa: leaves of every size store their OA, boundary OAs included", async (t) => {
  await forEachConfig(t, (fx) => {
    const pt = fx.pt;
    const attrs = readAttrs(fx, IOMMU_READ);
    const sweep = (pts: PtState, oa: number) => {
      const sizes = pt.possibleSizes(pts.level);
      const isz = pt.itemLg2(pts.level);
      for (let lg2 = isz; lg2 < 64; lg2++) {
        if (!bit(sizes, lg2)) continue;
        const pages = 2 ** (lg2 - 12);
        const oaPpn = oa - oa % pages;
        pts.installLeaf(oaPpn, lg2, attrs);
        const sub = new PtState(fx.ram);
        Object.assign(sub, { table: pts.table, level: pts.level });
        for (sub.index = 0; sub.index < 2 ** (lg2 - isz); sub.index++) {
          assert.equal(sub.load(), PT_ENTRY_OA);
          assert.equal(sub.itemOaPpn(), oaPpn + sub.index * 2 ** (isz - 12));
          assert.equal(sub.entryOaPpn(), oaPpn);
          assert.equal(sub.numContigLg2(), lg2 - isz);
        }
        pts.clear(lg2 - isz);
        assert.equal(pts.load(), PT_ENTRY_EMPTY);
      }
    };
    checkAllLevels(fx, (pts) => {
      sweep(pts, fx.testOaPpn);
      sweep(pts, 0);
      sweep(pts, MAX_OA_PPN - 1);
    });
  });
});

Deno.test("test_attr_from_entry: attributes read back re-create the same PTE", async (t) => {
  await forEachConfig(t, (fx) => {
    const pt = fx.pt;
    const all = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE | IOMMU_NOEXEC | IOMMU_MMIO;
    checkAllLevels(fx, (pts) => {
      const sizes = pt.possibleSizes(pts.level);
      const isz = pt.itemLg2(pts.level);
      for (let lg2 = isz; lg2 < 64; lg2++) {
        if (!bit(sizes, lg2)) continue;
        for (let prot = 0; prot <= all; prot++) {
          let attrs: PtAttrs;
          try {
            attrs = readAttrs(fx, prot);
          } catch (e) {
            assert.ok(isErrno(e, "EOPNOTSUPP"));
            assert.notEqual(prot & (IOMMU_READ | IOMMU_WRITE), IOMMU_READ | IOMMU_WRITE);
            continue;
          }
          const oaPpn = fx.testOaPpn - fx.testOaPpn % 2 ** (lg2 - 12);
          pts.installLeaf(oaPpn, lg2, attrs);
          assert.equal(pts.load(), PT_ENTRY_OA);
          const good = [pts.lo, pts.hi];
          const derived = { lo: 0, hi: 0 };
          pts.attrFromEntry(derived);
          pts.clear(lg2 - isz);
          assert.equal(pts.load(), PT_ENTRY_EMPTY);
          pts.installLeaf(oaPpn, lg2, derived);
          assert.equal(pts.load(), PT_ENTRY_OA);
          assert.deepEqual([pts.lo, pts.hi], good);
          pts.clear(lg2 - isz);
        }
      }
    });
  });
});

Deno.test("test_dirty: clean is not dirty, dirtying any contiguous item dirties the leaf", async (t) => {
  await forEachConfig(
    t,
    (fx) => {
      const pt = fx.pt;
      const fmt = pt.format;
      const attrs = readAttrs(fx, IOMMU_READ | IOMMU_WRITE);
      checkAllLevels(fx, (pts) => {
        const sizes = pt.possibleSizes(pts.level);
        const isz = pt.itemLg2(pts.level);
        const start = pts.index;
        for (let lg2 = isz; lg2 < 64; lg2++) {
          if (!bit(sizes, lg2)) continue;
          pts.installLeaf(fx.testOaPpn - fx.testOaPpn % 2 ** (lg2 - 12), lg2, attrs);
          assert.equal(pts.load(), PT_ENTRY_OA);
          fmt.make_write_clean!(pts);
          pts.load();
          assert.equal(fmt.is_write_dirty!(pts), false);
          for (let i = 0; i < 2 ** (lg2 - isz); i++) {
            pts.index = start + i;
            pts.load();
            assert.ok(fmt.make_write_dirty!(pts), `item ${i} of a 2^${lg2} leaf`);
            pts.index = start;
            pts.load();
            assert.ok(fmt.is_write_dirty!(pts), `item ${i} dirties the 2^${lg2} leaf`);
            fmt.make_write_clean!(pts);
            pts.load();
            assert.equal(fmt.is_write_dirty!(pts), false, `all copies clean again (item ${i})`);
          }
          pts.clear(lg2 - isz);
        }
      });
    },
    PT_TEST_CONFIGS.filter((c) => c.format.is_write_dirty !== undefined),
  );
});
