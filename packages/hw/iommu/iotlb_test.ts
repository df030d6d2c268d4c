import assert from "node:assert/strict";
import type { CacheOptions } from "./cache.ts";
import type { IommuCaps } from "./caps.ts";
import {
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  PageTableBuilder,
  TEST_PTE_RW_USER,
  type TestIommuEnv,
  testIommuEnv,
  testRequest,
  testTranslate,
} from "../testing.ts";
import { Iotlb } from "./iotlb.ts";
import { ACC_WRITE, XLATE_OK } from "./request.ts";
import {
  PTE_D,
  PTE_G,
  RISCV_IOMMU_DC_TC_SADE,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
} from "./structs.ts";

const A = 0x1000, B = 0x2000;
const OLD = 0xa000_0000, NEW = 0xb000_0000;

type Name = "h1A" | "h1B" | "h2A" | "v7_1A" | "v7_1B" | "v7_2A" | "v8_1A" | "g7";
const ALL: Name[] = ["h1A", "h1B", "h2A", "v7_1A", "v7_1B", "v7_2A", "v8_1A", "g7"];

/** A small IOTLB for `world(caps, true)`: one set of 16 ways, where every entry competes. */
const CHURNED = { iotlb: { sets: 1, ways: 16 } };

/**
 * Fills the IOTLB past its capacity with another host space's pages (device 50, PSCID 9), so
 * that `world()` then primes an IOTLB whose ways have been evicted and refilled.
 */
function churn(env: TestIommuEnv): void {
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  for (let p = 0; p < 40; p++) pt.map(0x100_0000 + p * 4096, OLD + 0x10_0000 + p * 4096);
  env.ddt.set(50, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(9) });
  for (let p = 0; p < 40; p++) testTranslate(env.tr, testRequest(50, 0x100_0000 + p * 4096));
  assert.equal(env.tr.iotlbSize, 16, "full, after 24 evictions");
}

/**
 * Cached translations in every kind of address space, then every mapping changed in memory so
 * that a re-walk gives a NEW address while a cached entry still gives the OLD one:
 * - h1A, h1B (global), h2A: host first stage (G stage Bare), PSCID 1 and 2;
 * - v7_1A, v7_1B (global), v7_2A: VM GSCID 7, PSCID 1 and 2; v8_1A: VM GSCID 8, PSCID 1;
 * - g7: VM GSCID 7 with the first stage Bare (a G-stage-only entry).
 * VM first stages map IOVA A/B to distinct GPAs; the G-stage leaves of those GPAs change.
 * With `churned`, the IOTLB is {@linkcode CHURNED} and full of evicted and refilled ways first.
 */
function world(caps: Partial<IommuCaps> = {}, churned = false, cache: CacheOptions = {}) {
  const env = testIommuEnv(caps, 4, churned ? { ...CHURNED, ...cache } : cache);
  const { mem, alloc, ddt } = env;
  if (churned) churn(env);
  const where = new Map<Name, { did: number; iova: number; old: number }>();
  const rewrite: (() => void)[] = [];
  let did = 1, slot = 0;
  const fsDevice = (pscid: number, gscid: number | null, names: [Name, Name?], gpaBase: number) => {
    const g = gscid === null ? null : gStages.get(gscid)!;
    const pt = new PageTableBuilder(mem, alloc, "sv39");
    for (const [i, name] of names.entries()) {
      if (name === undefined) continue;
      const iova = i === 0 ? A : B;
      const global = i === 1;
      const old = OLD + slot * 4096, neu = NEW + slot * 4096;
      slot++;
      const target = g === null ? old : gpaBase + iova;
      // A and B share their non-leaf PTEs, so only B's leaf may say G.
      const leaf = pt.map(iova, target, { flags: TEST_PTE_RW_USER | (global ? PTE_G : 0) });
      if (g === null) {
        rewrite.push(() => pt.write(leaf, BigInt(neu) >> 12n << 10n | BigInt(TEST_PTE_RW_USER)));
      } else {
        const gl = g.map(target, old);
        rewrite.push(() => g.write(gl, BigInt(neu) >> 12n << 10n | BigInt(TEST_PTE_RW_USER)));
      }
      where.set(name, { did, iova, old });
    }
    if (g !== null) { for (const pn of pt.pages) g.map(pn * 4096, pn * 4096); }
    ddt.set(did, {
      fsc: encodeAtp(8, pt.root),
      ta: encodeDcTa(pscid),
      iohgatp: g === null ? 0n : encodeIohgatp(8, gscid!, g.root),
    });
    did++;
  };
  const gStages = new Map<number, PageTableBuilder>();
  for (const gscid of [7, 8]) gStages.set(gscid, new PageTableBuilder(mem, alloc, "sv39x4"));
  fsDevice(1, null, ["h1A", "h1B"], 0);
  fsDevice(2, null, ["h2A"], 0);
  fsDevice(1, 7, ["v7_1A", "v7_1B"], 0x7000_0000);
  fsDevice(2, 7, ["v7_2A"], 0x7100_0000);
  fsDevice(1, 8, ["v8_1A"], 0x7000_0000);
  // g7: G stage only; IOVA = GPA 0x7200_0000.
  const g7 = gStages.get(7)!;
  const gl = g7.map(0x7200_0000, OLD + slot * 4096);
  const neu = NEW + slot * 4096;
  rewrite.push(() => g7.write(gl, BigInt(neu) >> 12n << 10n | BigInt(TEST_PTE_RW_USER)));
  where.set("g7", { did, iova: 0x7200_0000, old: OLD + slot * 4096 });
  ddt.set(did, { iohgatp: encodeIohgatp(8, 7, g7.root) });

  const pa = (name: Name) => {
    const w = where.get(name)!;
    return testTranslate(env.tr, testRequest(w.did, w.iova)).pa;
  };
  for (const name of ALL) assert.equal(pa(name), where.get(name)!.old, `${name} primes`);
  for (const f of rewrite) f();
  for (const name of ALL) assert.equal(pa(name), where.get(name)!.old, `${name} is cached`);
  /** The entries (of `names`) whose cached translation is gone. */
  const dropped = (names = ALL) => names.filter((n) => pa(n) !== where.get(n)!.old);
  return { ...env, dropped };
}

/** IOTINVAL.VMA's cases: a name, the command's operands, the entries of `world()` it drops. */
const VMA_CASES: [string, Parameters<TestIommuEnv["tr"]["iotinvalVma"]>, Name[]][] = [
  ["GV=0 AV=0 PSCV=0: every host entry, global included", [
    false,
    false,
    false,
    0,
    0,
    0,
    0,
    false,
    false,
  ], ["h1A", "h1B", "h2A"]],
  ["GV=0 AV=0 PSCV=1 keeps global entries", [false, false, true, 0, 1, 0, 0, false, false], [
    "h1A",
  ]],
  ["GV=0 AV=1 PSCV=0: ADDR in every host space", [false, true, false, 0, 0, A, 0, false, false], [
    "h1A",
    "h2A",
  ]],
  ["GV=0 AV=1 PSCV=0 includes global entries", [false, true, false, 0, 0, B, 0, false, false], [
    "h1B",
  ]],
  ["GV=0 AV=1 PSCV=1: ADDR in one host space", [false, true, true, 0, 1, A, 0, false, false], [
    "h1A",
  ]],
  ["GV=0 AV=1 PSCV=1 keeps global entries", [false, true, true, 0, 1, B, 0, false, false], []],
  ["GV=1 AV=0 PSCV=0: every entry of the VM, global included", [
    true,
    false,
    false,
    7,
    0,
    0,
    0,
    false,
    false,
  ], ["v7_1A", "v7_1B", "v7_2A"]],
  ["GV=1 AV=0 PSCV=1 keeps global entries", [true, false, true, 7, 1, 0, 0, false, false], [
    "v7_1A",
  ]],
  ["GV=1 AV=1 PSCV=0: ADDR in every space of the VM", [
    true,
    true,
    false,
    7,
    0,
    A,
    0,
    false,
    false,
  ], ["v7_1A", "v7_2A"]],
  ["GV=1 AV=1 PSCV=0 includes global entries", [true, true, false, 7, 0, B, 0, false, false], [
    "v7_1B",
  ]],
  [
    "GV=1 AV=1 PSCV=1: ADDR in one space of the VM",
    [true, true, true, 7, 1, A, 0, false, false],
    [
      "v7_1A",
    ],
  ],
  ["GV=1 AV=1 PSCV=1 keeps global entries", [true, true, true, 7, 1, B, 0, false, false], []],
];

Deno.test("IOTINVAL.VMA: all 8 GV/AV/PSCV cases, with the global-entry exceptions", async (t) => {
  for (const [name, args, expected] of VMA_CASES) {
    await t.step(name, () => {
      const w = world();
      w.tr.iotinvalVma(...args);
      assert.deepEqual(w.dropped(), expected);
    });
  }
});

Deno.test("IOTINVAL.VMA with PSCV spares a mapping made global by a G=1 non-leaf PTE alone (effective G is the OR along the walk)", () => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  // Two 2 MiB regions under different level-1 PTEs: only the second's level-1 PTE says G.
  const plain = 0x20_0000, under = 0x4000_0000;
  const leaves = [plain, under].map((iova, i) => pt.map(iova, OLD + i * 4096));
  const l1 = pt.pteAddr(under, 1);
  pt.write(l1, pt.read(l1) | BigInt(PTE_G));
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  const pa = (iova: number) => testTranslate(env.tr, testRequest(1, iova)).pa;
  assert.deepEqual([pa(plain), pa(under)], [OLD, OLD + 4096]);
  leaves.forEach((leaf, i) =>
    pt.write(leaf, BigInt(NEW + i * 4096) >> 12n << 10n | BigInt(TEST_PTE_RW_USER))
  );
  env.tr.iotinvalVma(false, false, true, 0, 1, 0, 0, false, false);
  assert.deepEqual([pa(plain), pa(under)], [NEW, OLD + 4096], "only the non-global entry went");
  env.tr.iotinvalVma(false, false, false, 0, 0, 0, 0, false, false);
  assert.equal(pa(under), NEW + 4096, "PSCV=0 drops global entries too");
});

Deno.test("IOTINVAL.VMA with an address inside a first-stage superpage backed by 4 KiB G-stage pages drops every cached page of the superpage (spec 3.1.1: entries that contain the first-stage leaf)", () => {
  const env = testIommuEnv();
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const IOVA = 0x4000_0000, GPA_OLD = 0x1000_0000, GPA_NEW = 0x1020_0000;
  const leaf = pt.map(IOVA, GPA_OLD, { level: 1 });
  for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
  // The G stage maps both 2 MiB GPA windows page by page, so IOTLB entries are 4 KiB.
  for (let i = 0; i < 512; i++) {
    g.map(GPA_OLD + i * 4096, OLD + i * 4096);
    g.map(GPA_NEW + i * 4096, NEW + i * 4096);
  }
  env.ddt.set(1, {
    fsc: encodeAtp(8, pt.root),
    ta: encodeDcTa(1),
    iohgatp: encodeIohgatp(8, 7, g.root),
  });
  const pa = (off: number) => testTranslate(env.tr, testRequest(1, IOVA + off)).pa;
  const cached = [0x1000, 0x5000, 0x1f_f000];
  for (const off of cached) assert.equal(pa(off), OLD + off);
  pt.write(leaf, BigInt(GPA_NEW) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
  for (const off of cached) assert.equal(pa(off), OLD + off, "still cached");
  env.tr.iotinvalVma(true, true, true, 7, 1, IOVA + 0x20_0000, 0, false, false);
  for (const off of cached) assert.equal(pa(off), OLD + off, "ADDR outside the superpage");
  env.tr.iotinvalVma(true, true, true, 7, 1, IOVA + 0x3000, 0, false, false);
  for (const off of cached) assert.equal(pa(off), NEW + off, `page ${off.toString(16)} dropped`);
});

Deno.test("IOTINVAL.GVMA with an address inside a G-stage superpage under 4 KiB first-stage pages drops every cached page of the superpage (spec 3.1.1: leaf second-stage entries for the GPA)", () => {
  const env = testIommuEnv();
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const IOVA = 0x4000_0000, GPA = 0x1000_0000;
  for (let i = 0; i < 512; i++) pt.map(IOVA + i * 4096, GPA + i * 4096);
  for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
  const gLeaf = g.map(GPA, OLD, { level: 1 });
  env.ddt.set(1, {
    fsc: encodeAtp(8, pt.root),
    ta: encodeDcTa(1),
    iohgatp: encodeIohgatp(8, 7, g.root),
  });
  const pa = (off: number) => testTranslate(env.tr, testRequest(1, IOVA + off)).pa;
  const cached = [0x1000, 0x5000, 0x1f_f000];
  for (const off of cached) assert.equal(pa(off), OLD + off);
  g.write(gLeaf, BigInt(NEW) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
  env.tr.iotinvalGvma(true, true, 7, GPA + 0x20_0000, 0, false, false);
  for (const off of cached) assert.equal(pa(off), OLD + off, "ADDR outside the superpage");
  env.tr.iotinvalGvma(true, true, 7, GPA + 0x3000, 0, false, false);
  for (const off of cached) assert.equal(pa(off), NEW + off, `page ${off.toString(16)} dropped`);
});

/** IOTINVAL.GVMA's cases: a name, the command's operands, the entries of `world()` it drops. */
const GVMA_CASES: [string, Parameters<TestIommuEnv["tr"]["iotinvalGvma"]>, Name[]][] = [
  ["GV=0: every VM", [false, true, 0, 0x7000_1000, 0, false, false], [
    "v7_1A",
    "v7_1B",
    "v7_2A",
    "v8_1A",
    "g7",
  ]],
  ["GV=1 AV=0: one VM", [true, false, 7, 0, 0, false, false], ["v7_1A", "v7_1B", "v7_2A", "g7"]],
  [
    "GV=1 AV=1: combined entries whose GPA matches, not their IOVA (QEMU misses these)",
    [true, true, 7, 0x7000_1000, 0, false, false],
    ["v7_1A"],
  ],
  ["GV=1 AV=1 on a G-stage-only entry", [true, true, 7, 0x7200_0000, 0, false, false], ["g7"]],
];

Deno.test("IOTINVAL.GVMA drops G-stage and combined entries, never host entries", async (t) => {
  for (const [name, args, expected] of GVMA_CASES) {
    await t.step(name, () => {
      const w = world();
      w.tr.iotinvalGvma(...args);
      assert.deepEqual(w.dropped(), expected);
    });
  }
  await t.step("IOTINVAL.VMA never drops G-stage-only entries", () => {
    const w = world();
    w.tr.iotinvalVma(true, false, false, 7, 0, 0, 0, false, false);
    assert.ok(!w.dropped().includes("g7"));
  });
});

Deno.test("IOTINVAL.GVMA by address drops entries made through the G-stage superpage mapping it", () => {
  const env = testIommuEnv();
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, 0x7005_3000);
  for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
  const leaf = g.map(0x7000_0000, OLD, { level: 1 });
  env.ddt.set(1, {
    fsc: encodeAtp(8, pt.root),
    ta: encodeDcTa(1),
    iohgatp: encodeIohgatp(8, 3, g.root),
  });
  assert.equal(testTranslate(env.tr, testRequest(1, 0x1000)).pa, OLD + 0x5_3000);
  g.write(leaf, BigInt(NEW) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
  env.tr.iotinvalGvma(true, true, 3, 0x7010_0000, 0, false, false);
  assert.equal(testTranslate(env.tr, testRequest(1, 0x1000)).pa, NEW + 0x5_3000);
});

Deno.test("IOTINVAL S=1 invalidates the NAPOT range ADDR encodes (capabilities.S)", async (t) => {
  const mk = (caps: Partial<IommuCaps>) => {
    const env = testIommuEnv(caps);
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    const leaves = new Map<number, number>();
    for (let p = 0xe; p <= 0x18; p++) leaves.set(p, pt.map(p * 4096, OLD + p * 4096));
    env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
    for (let p = 0xe; p <= 0x18; p++) testTranslate(env.tr, testRequest(1, p * 4096));
    for (const [p, a] of leaves) {
      pt.write(a, BigInt(NEW + p * 4096) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
    }
    const fresh = () => {
      const out: number[] = [];
      for (let p = 0xe; p <= 0x18; p++) {
        if (testTranslate(env.tr, testRequest(1, p * 4096)).pa === NEW + p * 4096) out.push(p);
      }
      return out;
    };
    return { env, fresh };
  };
  await t.step("S=1: pages 0x10..0x17 (ADDR page 0x13: first 0 bit at 2 → 8 pages)", () => {
    const { env, fresh } = mk({ s: true });
    env.tr.iotinvalVma(false, true, true, 0, 1, 0x13 * 4096, 0, false, true);
    assert.deepEqual(fresh(), [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);
  });
  await t.step("without capabilities.S the range bit is ignored: one page", () => {
    const { env, fresh } = mk({ s: false });
    env.tr.iotinvalVma(false, true, true, 0, 1, 0x13 * 4096, 0, false, true);
    assert.deepEqual(fresh(), [0x13]);
  });
  await t.step("NL=1 with AV=1 still drops the leaf at ADDR", () => {
    const { env, fresh } = mk({ nl: true });
    env.tr.iotinvalVma(false, true, true, 0, 1, 0x11 * 4096, 0, true, false);
    assert.deepEqual(fresh(), [0x11]);
  });
  await t.step("GVMA with S=1", () => {
    const env = testIommuEnv({ s: true });
    const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
    const leaves = [0x3f, 0x40, 0x7f, 0x80].map((p) => [p, g.map(p * 4096, OLD + p * 4096)]);
    env.ddt.set(1, { iohgatp: encodeIohgatp(8, 2, g.root) });
    for (const [p] of leaves) testTranslate(env.tr, testRequest(1, p * 4096));
    for (const [p, a] of leaves) {
      g.write(a, BigInt(NEW + p * 4096) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
    }
    env.tr.iotinvalGvma(true, true, 2, 0x5f * 4096, 0, false, true); // 0x40..0x7f
    const fresh = leaves.filter(([p]) =>
      testTranslate(env.tr, testRequest(1, p * 4096)).pa === NEW + p * 4096
    );
    assert.deepEqual(fresh.map(([p]) => p), [0x40, 0x7f]);
  });
});

Deno.test("a superpage is one IOTLB entry; any address in it invalidates it", () => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const leaf = pt.map(0x20_0000, OLD, { level: 1 });
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  for (const off of [0, 0x1000, 0x1f_f000, 0x12_3456]) {
    assert.equal(testTranslate(env.tr, testRequest(1, 0x20_0000 + off)).pa, OLD + off);
  }
  assert.equal(env.tr.iotlbSize, 1);
  pt.write(leaf, BigInt(NEW) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
  assert.equal(
    testTranslate(env.tr, testRequest(1, 0x20_5000)).pa,
    OLD + 0x5000,
    "stale until invalidated",
  );
  env.tr.iotinvalVma(false, true, true, 0, 1, 0x21_7000, 0, false, false);
  assert.equal(testTranslate(env.tr, testRequest(1, 0x20_5000)).pa, NEW + 0x5000);
});

Deno.test("IOTLB entries are tagged by PSCID and IOVA, not by device", () => {
  const env = testIommuEnv();
  const pt1 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const pt2 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt1.map(A, OLD);
  pt2.map(A, NEW);
  env.ddt.set(1, { fsc: encodeAtp(8, pt1.root), ta: encodeDcTa(5) });
  env.ddt.set(2, { fsc: encodeAtp(8, pt2.root), ta: encodeDcTa(5) });
  env.ddt.set(3, { fsc: encodeAtp(8, pt2.root), ta: encodeDcTa(6) });
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, OLD);
  assert.equal(testTranslate(env.tr, testRequest(2, A)).pa, OLD, "same PSCID shares the entry");
  assert.equal(testTranslate(env.tr, testRequest(3, A)).pa, NEW);
});

Deno.test("IODIR does not touch the IOTLB and IOTINVAL does not touch the DDT cache", () => {
  const env = testIommuEnv();
  const pt1 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const pt2 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt1.map(A, OLD);
  pt2.map(A, NEW);
  env.ddt.set(1, { fsc: encodeAtp(8, pt1.root), ta: encodeDcTa(5) });
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, OLD);
  env.ddt.set(1, { fsc: encodeAtp(8, pt2.root), ta: encodeDcTa(5) });
  env.tr.iotinvalVma(false, false, false, 0, 0, 0, 0, false, false);
  assert.equal(
    testTranslate(env.tr, testRequest(1, A)).pa,
    OLD,
    "the cached DC still points at table 1",
  );
  env.tr.invalDdt(true, 1);
  assert.equal(
    testTranslate(env.tr, testRequest(1, A)).pa,
    OLD,
    "IOTLB entry of PSCID 5 still there",
  );
  env.tr.iotinvalVma(false, false, true, 0, 5, 0, 0, false, false);
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, NEW);
});

Deno.test("the IOTLB never holds a faulting translation", () => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  assert.equal(testTranslate(env.tr, testRequest(1, A)).cause, 13);
  assert.equal(env.tr.iotlbSize, 0);
  pt.map(A, OLD);
  assert.equal(
    testTranslate(env.tr, testRequest(1, A)).pa,
    OLD,
    "no invalidation needed after V 0→1",
  );
});

Deno.test("a cached clean page still walks on a write so D gets set (SADE)", () => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const leaf = pt.map(A, OLD, { flags: TEST_PTE_RW_USER & ~PTE_D });
  env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_SADE, fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  assert.equal(testTranslate(env.tr, testRequest(1, A)).perm, 1, "cached without W: D is clear");
  assert.equal(pt.read(leaf) & BigInt(PTE_D), 0n);
  const w = testTranslate(env.tr, testRequest(1, A, { access: ACC_WRITE }));
  assert.equal(w.status, XLATE_OK);
  assert.equal(pt.read(leaf) & BigInt(PTE_D), BigInt(PTE_D));
  assert.equal(w.perm, 3);
});

Deno.test("iotlbEnabled=false: every translation walks; flushAll empties the caches", () => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const leaf = pt.map(A, OLD);
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  env.tr.iotlbEnabled = false;
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, OLD);
  assert.equal(env.tr.iotlbSize, 0);
  pt.write(leaf, BigInt(NEW) >> 12n << 10n | BigInt(TEST_PTE_RW_USER));
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, NEW);
  env.tr.iotlbEnabled = true;
  testTranslate(env.tr, testRequest(1, A));
  assert.equal(env.tr.iotlbSize, 1);
  env.tr.flushAll();
  assert.equal(env.tr.iotlbSize, 0);
});

Deno.test("IOTLB conflicts and capacity: a small IOTLB still translates every page right", () => {
  const env = testIommuEnv({}, 4, { iotlb: { sets: 2, ways: 4 } });
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  for (let p = 0; p < 64; p++) pt.map(p * 4096 * 3, OLD + p * 4096);
  pt.map(0x4000_0000, 0x1_0000_0000, { level: 2 });
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  for (let round = 0; round < 3; round++) {
    for (let p = 0; p < 64; p++) {
      assert.equal(testTranslate(env.tr, testRequest(1, p * 4096 * 3 + 8)).pa, OLD + p * 4096 + 8);
      const r = testTranslate(env.tr, testRequest(1, 0x4000_0000 + p * 0x10_0000));
      assert.equal(r.pa, 0x1_0000_0000 + p * 0x10_0000);
    }
  }
  assert.ok(env.tr.iotlbSize <= 8);
});

Deno.test("IOTLB address-space ids: when 2^20 ids run out the IOTLB flushes and renumbers", () => {
  const tlb = new Iotlb({ sets: 16, ways: 4 });
  const first = tlb.space(true, false, 0, 1);
  assert.equal(tlb.space(true, false, 0, 1), first, "one object per distinct space");
  tlb.insert(5, 0, 0, first, 0x1234, 1, 0, 63, 0);
  assert.notEqual(tlb.lookup(5, 0, first), -1);
  // Number 2^20 - 1 more spaces: ids 1..2^20-1 are then taken and the next one recycles.
  let last = first;
  for (let i = 0; i < 2 ** 20 - 1; i++) {
    last = tlb.space(i % 2 === 0, true, i >>> 12, i & 0xfff);
    tlb.lookup(5, 0, last);
  }
  assert.equal(tlb.size, 0, "recycling ids flushed every entry");
  assert.equal(tlb.lookup(5, 0, first), -1, "the old entry is gone");
  tlb.insert(5, 0, 0, last, 0x9999, 1, 0, 63, 0);
  assert.equal(tlb.lookup(5, 0, first), -1, "a renumbered space never hits another's entry");
  assert.notEqual(tlb.lookup(5, 0, last), -1);
});

Deno.test("IOTINVAL.VMA and IOTINVAL.GVMA keep every case's semantics in a set-associative IOTLB whose ways were evicted and refilled", async (t) => {
  // One world per case and entry: checking an entry that was dropped walks it again, and that
  // fill may evict another entry of the one set.
  const check = (invalidate: (w: ReturnType<typeof world>) => void, expected: Name[]) => {
    for (const name of ALL) {
      const w = world({}, true);
      invalidate(w);
      assert.equal(w.dropped([name]).length === 1, expected.includes(name), name);
    }
  };
  for (const [name, args, expected] of VMA_CASES) {
    await t.step(`IOTINVAL.VMA ${name}`, () => check((w) => w.tr.iotinvalVma(...args), expected));
  }
  for (const [name, args, expected] of GVMA_CASES) {
    await t.step(`IOTINVAL.GVMA ${name}`, () => check((w) => w.tr.iotinvalGvma(...args), expected));
  }
});

Deno.test("IOTLB geometry: pages `sets` apart share a set and evict each other; consecutive pages fill every set", () => {
  const tlb = new Iotlb({ sets: 4, ways: 2 });
  assert.deepEqual([tlb.sets, tlb.ways], [4, 2]);
  const as = tlb.space(true, false, 0, 1);
  const insert = (p: number) => tlb.insert(p, 0, 0, as, 0x9_0000 + p, 0x1b, 0, 63, 0);
  const cached = (p: number) => tlb.lookup(p, 0, as) >= 0;
  for (let p = 0; p < 8; p++) insert(p);
  assert.equal(tlb.size, 8);
  // Looked up in order, so in each set the lower page is the one used longer ago.
  for (let p = 0; p < 8; p++) assert.ok(cached(p), `page ${p} in its own way`);
  insert(8); // the set of pages 0 and 4
  assert.equal(tlb.size, 8, "a full set evicts rather than grows");
  assert.deepEqual([cached(0), cached(4), cached(8)], [false, true, true]);
  for (const p of [1, 2, 3, 5, 6, 7]) assert.ok(cached(p), `page ${p} of another set stays`);
  const other = tlb.space(true, false, 0, 2);
  assert.equal(tlb.lookup(4, 0, other), -1, "a set's ways are tagged by address space");
});

Deno.test("IOTLB default geometry: 1024 sets of 4 ways", () => {
  const tlb = new Iotlb();
  assert.deepEqual([tlb.sets, tlb.ways], [1024, 4]);
});

Deno.test("an entry the IOTLB evicted is walked again: the HPM sink counts the IOTLB miss and the walk", async (t) => {
  const run = (replacement: "plru" | "round-robin") => {
    const env = testIommuEnv({}, 4, { iotlb: { sets: 1, ways: 2, replacement } });
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    for (const p of [1, 2, 3]) pt.map(p * 4096, OLD + p * 4096);
    env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
    const counts = new Map<number, number>();
    env.tr.addEventObserver({
      count: (id: number) => void counts.set(id, (counts.get(id) ?? 0) + 1),
    });
    /** Translates page `p`; returns [IOTLB misses, first-stage walks] counted since the start. */
    return (p: number) => {
      assert.equal(testTranslate(env.tr, testRequest(1, p * 4096 + 8)).pa, OLD + p * 4096 + 8);
      return [
        counts.get(RISCV_IOMMU_HPMEVENT_TLB_MISS) ?? 0,
        counts.get(RISCV_IOMMU_HPMEVENT_S_VS_WALKS) ?? 0,
      ];
    };
  };
  await t.step("pseudo-LRU: page 1, used last, stays; page 2 is evicted and walked again", () => {
    const xlate = run("plru");
    assert.deepEqual(xlate(1), [1, 1]);
    assert.deepEqual(xlate(2), [2, 2]);
    assert.deepEqual(xlate(1), [2, 2], "a hit");
    assert.deepEqual(xlate(3), [3, 3], "fills the way of page 2");
    assert.deepEqual(xlate(1), [3, 3], "still cached");
    assert.deepEqual(xlate(2), [4, 4], "evicted: a miss and a walk");
  });
  await t.step("round-robin: page 1 goes first although it was used last", () => {
    const xlate = run("round-robin");
    xlate(1);
    xlate(2);
    assert.deepEqual(xlate(1), [2, 2], "a hit");
    assert.deepEqual(xlate(3), [3, 3], "fills way 0, page 1's");
    assert.deepEqual(xlate(2), [3, 3], "still cached");
    assert.deepEqual(xlate(1), [4, 4], "evicted: a miss and a walk");
  });
});

Deno.test("micro-TLB: every IOTINVAL.VMA and IOTINVAL.GVMA case takes effect in it at once, whatever its size", async (t) => {
  for (const microTlb of [0, 1, 64]) {
    const check = (invalidate: (w: ReturnType<typeof world>) => void, expected: Name[]) => {
      const w = world({}, false, { microTlb });
      // world() translated each name twice: the second time hit the IOTLB and filled the
      // micro-TLB (h1B and h2A share an entry: page 2 XOR device 1 = page 1 XOR device 2).
      assert.equal(w.tr.microTlbSize, Math.min(microTlb, 7));
      invalidate(w);
      assert.deepEqual(w.dropped(), expected);
    };
    for (const [name, args, expected] of VMA_CASES) {
      await t.step(`${microTlb} entries, IOTINVAL.VMA ${name}`, () => {
        check((w) => w.tr.iotinvalVma(...args), expected);
      });
    }
    for (const [name, args, expected] of GVMA_CASES) {
      await t.step(`${microTlb} entries, IOTINVAL.GVMA ${name}`, () => {
        check((w) => w.tr.iotinvalGvma(...args), expected);
      });
    }
  }
});

Deno.test("micro-TLB: IODIR.INVAL_DDT empties it, so a device's next request uses its new DC", () => {
  const env = testIommuEnv();
  const pt1 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const pt2 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt1.map(A, OLD);
  pt2.map(A, NEW);
  env.ddt.set(1, { fsc: encodeAtp(8, pt1.root), ta: encodeDcTa(5) });
  for (let i = 0; i < 3; i++) assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, OLD);
  assert.equal(env.tr.microTlbSize, 1);
  env.ddt.set(1, { fsc: encodeAtp(8, pt2.root), ta: encodeDcTa(6) });
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, OLD, "the cached DC still applies");
  env.tr.invalDdt(true, 1);
  assert.equal(env.tr.microTlbSize, 0);
  assert.equal(testTranslate(env.tr, testRequest(1, A)).pa, NEW, "PSCID 6's table");
});

/**
 * Pages 1–3 of device 1 through a 1-set, 2-way IOTLB with a micro-TLB of `microTlb` entries;
 * returns a function that translates page `p` and answers the IOTLB misses it took.
 */
function microTlbPages(microTlb: number): (p: number) => number {
  const env = testIommuEnv({}, 4, { iotlb: { sets: 1, ways: 2 }, microTlb });
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  for (const p of [1, 2, 3]) pt.map(p * 4096, OLD + p * 4096);
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  let misses = 0;
  env.tr.addEventObserver({
    count: (id: number) => void (misses += +(id === RISCV_IOMMU_HPMEVENT_TLB_MISS)),
  });
  return (p: number) => {
    const before = misses;
    assert.equal(testTranslate(env.tr, testRequest(1, p * 4096)).pa, OLD + p * 4096);
    return misses - before;
  };
}

Deno.test("micro-TLB: a hit in it is no use of the IOTLB entry for pseudo-LRU (the sets see only its misses)", async (t) => {
  /** Translates pages 1, 2, 1, 2, 1, 3, 2, 1; returns the IOTLB misses of the last two. */
  const run = (microTlb: number) => {
    const xlate = microTlbPages(microTlb);
    for (const p of [1, 2, 1, 2, 1, 3]) xlate(p);
    return [xlate(2), xlate(1)];
  };
  await t.step("with the micro-TLB, page 1's last hit is its own: page 3 evicts page 1", () => {
    assert.deepEqual(run(8), [0, 1]);
  });
  await t.step(
    "without it, the IOTLB sees that hit: page 3 evicts page 2, whose refill evicts page 1",
    () => assert.deepEqual(run(0), [1, 1]),
  );
});

Deno.test("micro-TLB: an entry in use takes another page on that page's second IOTLB hit in a row, not its first", async (t) => {
  /** Translates `pages` through a 1-entry micro-TLB; returns the IOTLB misses of `then`. */
  const run = (pages: number[], then: number[]) => {
    const xlate = microTlbPages(1);
    for (const p of pages) xlate(p);
    return then.map(xlate);
  };
  await t.step(
    "page 2 hit once: page 1 keeps the entry, its hit is no use, page 3 evicts it",
    () => {
      assert.deepEqual(run([1, 1, 2, 2, 1, 3], [2, 1]), [0, 1]);
    },
  );
  await t.step(
    "page 2 hit twice: it takes the entry, page 1's hit is a use, page 3 evicts 2",
    () => {
      assert.deepEqual(run([1, 1, 2, 2, 2, 1, 3], [1, 2]), [0, 1]);
    },
  );
});
