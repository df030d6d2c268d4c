import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysicalMemory } from "../memory.ts";
import {
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  PageTableBuilder,
  testIommuEnv,
  testRequest,
  testTranslate,
} from "../testing.ts";
import { resolveWalkCache } from "./cache.ts";
import { resolveCaps } from "./caps.ts";
import { ACC_EXEC, ACC_READ, ACC_WRITE, XLATE_OK } from "./request.ts";
import { PTE_G, RISCV_IOMMU_DC_TC_SADE, RISCV_IOMMU_DC_TC_SBE } from "./structs.ts";
import { Translator } from "./translator.ts";
import { WalkCache } from "./walk_cache.ts";

/** A and C share a last-level table (the first 2 MiB); D has another one. */
const A = 0x1000, C = 0x5000, D = 0x40_0000;
const OLD = 0xa000_0000, NEW = 0xb000_0000;
const OLD_C = OLD + C, NEW_C = NEW + C;

/**
 * Device 1 in host address space PSCID 1 (Sv39), A, C and D mapped; A and D translated, so the
 * walk cache holds both tables. `globalRoot` makes the root's PTE above A and C global.
 * `redirect()` points the non-leaf PTE above A and C at a new table that maps C to NEW_C, without
 * invalidating anything; `c()` translates C.
 */
function world(opts: { globalRoot?: boolean; caching?: boolean; walkCache?: number } = {}) {
  const env = testIommuEnv({ nl: true, s: true }, 4, { walkCache: opts.walkCache });
  const { mem, alloc, ddt, tr } = env;
  const pt = new PageTableBuilder(mem, alloc, "sv39");
  for (const va of [A, C, D]) pt.map(va, OLD + va);
  if (opts.globalRoot) {
    const root = pt.pteAddr(A, 2);
    pt.write(root, pt.read(root) | BigInt(PTE_G));
  }
  ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  tr.iotlbEnabled = opts.caching ?? true;
  for (const va of [A, D]) assert.equal(testTranslate(tr, testRequest(1, va)).pa, OLD + va);
  const c = () => {
    const r = testTranslate(tr, testRequest(1, C));
    assert.equal(r.status, XLATE_OK);
    return r.pa;
  };
  const redirect = () => {
    const table = alloc.page();
    mem.write64(table + ((C >> 12) & 511) * 8, BigInt(NEW_C) >> 12n << 10n | 0xd7n);
    const above = pt.pteAddr(C, 1);
    pt.write(above, BigInt(table) >> 12n << 10n | 1n | (pt.read(above) & BigInt(PTE_G)));
  };
  return { env, pt, c, redirect };
}

Deno.test("walk cache: a walk reads the leaf PTE of a cached last-level table; a non-leaf PTE changed without invalidation is not seen (spec §2.8, caching non-leaf PTEs)", async (t) => {
  await t.step("A's walk cached the table: C's walk goes through it", () => {
    const { c, redirect, env } = world();
    assert.equal(env.tr.walkCacheSize, 2);
    redirect();
    assert.equal(c(), OLD_C);
  });
  await t.step("with the IOTLB off nothing is cached: C's walk reads every level", () => {
    const { c, redirect, env } = world({ caching: false });
    assert.equal(env.tr.walkCacheSize, 0);
    redirect();
    assert.equal(c(), NEW_C);
  });
  await t.step("flushAll empties it", () => {
    const { c, redirect, env } = world();
    redirect();
    env.tr.flushAll();
    assert.equal(env.tr.walkCacheSize, 0);
    assert.equal(c(), NEW_C);
  });
});

Deno.test("walk cache: IOTINVAL.VMA drops its entries with AV=0, and with AV=1 only when NL=1 (spec §3.1.1; Non-leaf PTE Invalidation extension)", async (t) => {
  // [case, gv, av, pscv, pscid, address, nl, s, what C then translates to]
  const cases: [string, boolean, boolean, boolean, number, number, boolean, boolean, number][] = [
    [
      "AV=1 NL=0 at C: leaves only, the table stays cached",
      false,
      true,
      true,
      1,
      C,
      false,
      false,
      OLD_C,
    ],
    ["AV=1 NL=1 at C: its table's entry goes", false, true, true, 1, C, true, false, NEW_C],
    ["AV=1 NL=1 at D: only D's table's entry goes", false, true, true, 1, D, true, false, OLD_C],
    ["AV=1 NL=1 S=1, a 4 MiB range holding C", false, true, false, 0, 0x1f_f000, true, true, NEW_C],
    ["AV=0 PSCV=0: every host entry", false, false, false, 0, 0, false, false, NEW_C],
    ["AV=0 PSCV=1 PSCID 1", false, false, true, 1, 0, false, false, NEW_C],
    ["AV=0 PSCV=1 PSCID 2: another address space", false, false, true, 2, 0, false, false, OLD_C],
    ["GV=1: a VM's entries, never the host's", true, false, false, 0, 0, false, false, OLD_C],
  ];
  for (const [name, gv, av, pscv, pscid, addr, nl, s, want] of cases) {
    await t.step(name, () => {
      const { c, redirect, env } = world();
      redirect();
      env.tr.iotinvalVma(gv, av, pscv, 0, pscid, addr, 0, nl, s);
      assert.equal(c(), want);
    });
  }
  await t.step("IOTINVAL.GVMA of all VMs leaves the host's entries", () => {
    const { c, redirect, env } = world();
    redirect();
    env.tr.iotinvalGvma(false, false, 0, 0, 0, true, false);
    assert.equal(c(), OLD_C);
  });
  await t.step(
    "AV=0 PSCV=1 keeps an entry below a global non-leaf PTE, AV=0 PSCV=0 does not",
    () => {
      const kept = world({ globalRoot: true });
      kept.redirect();
      kept.env.tr.iotinvalVma(false, false, true, 0, 1, 0, 0, false, false);
      assert.equal(kept.c(), OLD_C);
      const gone = world({ globalRoot: true });
      gone.redirect();
      gone.env.tr.iotinvalVma(false, false, false, 0, 0, 0, 0, false, false);
      assert.equal(gone.c(), NEW_C);
    },
  );
});

Deno.test("walk cache: a leaf read through a cached table answers, updates A/D and counts events as the walk from the root does, whatever the leaf PTE and the access", () => {
  // The walker takes a plain 4 KiB leaf found through the walk cache in a few tests and leaves
  // every other PTE to the whole walk: both must agree with a walker that has no walk cache.
  const N = 1 << 31, PBMT_NC = 1 << 29, PBMT_IO = 2 << 29, PBMT_RSVD = 3 << 29, RSVD_54 = 1 << 22;
  // PTE bits 9:0 of a leaf with every one set, each one then cleared with probability 1/4, so
  // that most leaves are nearly valid and each check is met alone.
  const flags = fc.tuple(fc.nat(0x3ff), fc.nat(0x3ff)).map(([a, b]) => 0x3ff & ~(a & b));
  const hiBits = fc.oneof(fc.constant(0), fc.constantFrom(N, PBMT_NC, PBMT_IO, PBMT_RSVD, RSVD_54));
  fc.assert(
    fc.property(
      flags,
      hiBits,
      fc.constantFrom(ACC_READ, ACC_WRITE, ACC_EXEC),
      fc.boolean(),
      fc.boolean(),
      (flags, hiBits, access, sade, be) => {
        const run = (walkCache: number) => {
          const env = testIommuEnv({ svpbmt: true, end: true }, 4, { walkCache });
          const pt = new PageTableBuilder(env.mem, env.alloc, "sv39", be);
          pt.map(A, OLD + A);
          const leaf = pt.pteAddr(C, 0);
          pt.write(leaf, BigInt(hiBits >>> 0) << 32n | BigInt(OLD_C) >> 12n << 10n | BigInt(flags));
          const tc = (sade ? RISCV_IOMMU_DC_TC_SADE : 0) | (be ? RISCV_IOMMU_DC_TC_SBE : 0);
          env.ddt.set(1, { tc, fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
          testTranslate(env.tr, testRequest(1, A));
          const events: string[] = [];
          env.tr.addEventObserver({ count: (...ids) => events.push(ids.join(":")) });
          const res = testTranslate(env.tr, testRequest(1, C, { access }));
          return { res, events, pte: pt.read(leaf), cached: env.tr.iotlbSize };
        };
        assert.deepEqual(run(resolveWalkCache()), run(0));
      },
    ),
    {
      numRuns: 400,
      // Bytes that read little-endian make a valid leaf: the short path must not take a
      // big-endian table.
      examples: [[0, 0xd700_0000, ACC_READ, false, true]],
    },
  );
});

Deno.test("walk cache: a walk through a cached table keeps the effective G of the PTEs above it, so PSCV=1 spares the leaf it caches", () => {
  const { c, pt, env } = world({ globalRoot: true });
  assert.equal(c(), OLD_C, "C walked through the cached table");
  pt.map(C, NEW_C);
  env.tr.iotinvalVma(false, false, true, 0, 1, 0, 0, false, false);
  assert.equal(c(), OLD_C, "C's IOTLB entry is global");
});

Deno.test("walk cache: two-stage walks do not use it (it holds host address spaces only)", () => {
  const { mem, alloc, ddt, tr } = testIommuEnv();
  const g = new PageTableBuilder(mem, alloc, "sv39x4");
  const fs = new PageTableBuilder(mem, alloc, "sv39");
  fs.map(A, 0x1000_0000);
  for (const pn of fs.pages) g.map(pn * 4096, pn * 4096);
  g.map(0x1000_0000, OLD);
  ddt.set(1, {
    fsc: encodeAtp(8, fs.root),
    ta: encodeDcTa(1),
    iohgatp: encodeIohgatp(8, 7, g.root),
  });
  assert.equal(testTranslate(tr, testRequest(1, A)).pa, OLD);
  assert.equal(tr.walkCacheSize, 0);
});

Deno.test("walk cache: a table above 2^31 pages keeps its page number; direct-mapped, a table takes its entry from another", () => {
  const wc = new WalkCache(2);
  wc.insert(0x200, 0, 1, 2 ** 40 + 5, 32);
  assert.equal(wc.lookup(0x3ff, 0, 1), 2 ** 40 + 5, "same table");
  assert.equal(wc.global, 32);
  assert.equal(wc.lookup(0x3ff, 0, 3), -1, "another PSCID, the same entry");
  wc.insert(0x400, 0, 1, 7, 0);
  assert.equal(wc.lookup(0x400, 0, 1), 7);
  assert.equal(wc.global, 0);
  assert.equal(wc.lookup(0x200, 0, 1), 2 ** 40 + 5, "the other entry");
  wc.insert(0x600, 0, 1, 8, 0);
  assert.equal(wc.lookup(0x200, 0, 1), -1, "its entry taken");
  assert.equal(wc.lookup(0x600, 0, 1), 8);
  assert.equal(wc.size, 2);
});

Deno.test("walk cache geometry: 1024 entries by default, 0 for none, else a power of two up to 2^20 or a one-line RangeError", () => {
  assert.equal(resolveWalkCache(), 1024);
  const none = world({ walkCache: 0 });
  assert.equal(none.env.tr.walkCacheSize, 0);
  none.redirect();
  assert.equal(none.c(), NEW_C, "every walk reads every level");
  for (const bad of [3, 2 ** 21, -1, 0.5]) {
    assert.throws(
      () => new Translator(new PhysicalMemory(), resolveCaps(), { walkCache: bad }),
      new RangeError(
        `Cannot build the IOMMU: the walk cache's ${bad} entries are not 0 or a power of two up to 1048576`,
      ),
    );
  }
});
