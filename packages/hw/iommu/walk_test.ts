import assert from "node:assert/strict";
import { MEM_POISON } from "../memory.ts";
import type { IommuCaps } from "./caps.ts";
import {
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  PageTableBuilder,
  type PageTableScheme,
  TEST_PTE_RW_USER,
  type TestIommuEnv,
  testIommuEnv,
  testRequest,
  testTranslate,
} from "../testing.ts";
import { ACC_EXEC, ACC_WRITE, REQ_ATS, REQ_TRANSLATED, XLATE_FAULT, XLATE_OK } from "./request.ts";
import {
  PTE_A,
  PTE_D,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_GADE,
  RISCV_IOMMU_DC_TC_SADE,
  RISCV_IOMMU_DC_TC_SBE,
  RISCV_IOMMU_DC_TC_SXL,
  RISCV_IOMMU_DC_TC_T2GPA,
} from "./structs.ts";

const DATA = 0x9000_0000;
const MODE: Record<PageTableScheme, number> = {
  sv32: 8,
  sv39: 8,
  sv48: 9,
  sv57: 10,
  sv32x4: 8,
  sv39x4: 8,
  sv48x4: 9,
  sv57x4: 10,
};
/** Caps that make Sv32 legal: Sv32x4 plus a wider G-stage scheme makes fctl.GXL writable. */
const SV32_CAPS = { sv32: true, sv32x4: true };

/** An env whose device 1 has a first stage of `scheme` (SXL=1 for Sv32). */
function fsEnv(scheme: PageTableScheme, caps: Partial<IommuCaps> = {}, tc = 0, be = false) {
  const env = testIommuEnv(scheme === "sv32" ? { ...SV32_CAPS, ...caps } : caps);
  const pt = new PageTableBuilder(env.mem, env.alloc, scheme, be);
  env.ddt.set(1, {
    tc: tc | (scheme === "sv32" ? RISCV_IOMMU_DC_TC_SXL : 0),
    fsc: encodeAtp(MODE[scheme], pt.root),
    ta: encodeDcTa(1),
  });
  return { ...env, pt };
}

/** An env whose device 1 has only a G stage of `scheme` (GPA = IOVA). */
function gEnv(scheme: PageTableScheme, caps: Partial<IommuCaps> = {}, tc = 0) {
  const env = testIommuEnv(scheme === "sv32x4" ? { ...SV32_CAPS, ...caps } : caps);
  if (scheme === "sv32x4") env.tr.fctlGXL = true;
  const g = new PageTableBuilder(env.mem, env.alloc, scheme);
  env.ddt.set(1, {
    tc: tc | (scheme === "sv32x4" ? RISCV_IOMMU_DC_TC_SXL : 0),
    iohgatp: encodeIohgatp(MODE[scheme], 5, g.root),
  });
  return { ...env, g };
}

const rd = (env: TestIommuEnv, iova: number | bigint, init = {}) =>
  testTranslate(env.tr, testRequest(1, iova, init));
const wr = (env: TestIommuEnv, iova: number | bigint) => rd(env, iova, { access: ACC_WRITE });
const ex = (env: TestIommuEnv, iova: number | bigint) => rd(env, iova, { access: ACC_EXEC });

Deno.test("first stage Sv32/Sv39/Sv48/Sv57: 4 KiB pages translate with their offset", async (t) => {
  for (const scheme of ["sv32", "sv39", "sv48", "sv57"] as const) {
    await t.step(scheme, () => {
      const env = fsEnv(scheme);
      const va = scheme === "sv32"
        ? 0xc012_3000
        : scheme === "sv39"
        ? 0x3f_8012_3000
        : 0x7f_8012_3000;
      env.pt.map(va, DATA);
      const r = rd(env, va + 0xabc);
      assert.equal(r.status, XLATE_OK);
      assert.equal(r.pa, DATA + 0xabc);
      assert.equal(r.size, 4096);
      assert.equal(r.perm, 3);
      assert.equal(rd(env, va + 0x1000).cause, 13, "the next page is unmapped");
    });
  }
});

Deno.test("superpages at every level of every scheme translate with their size; misaligned ones fault", async (t) => {
  const schemes: [PageTableScheme, number, number][] = [
    // [scheme, levels, index bits per level]
    ["sv32", 2, 10],
    ["sv39", 3, 9],
    ["sv48", 4, 9],
    ["sv57", 5, 9],
    ["sv32x4", 2, 10],
    ["sv39x4", 3, 9],
    ["sv48x4", 4, 9],
    ["sv57x4", 5, 9],
  ];
  for (const [scheme, levels, w] of schemes) {
    const g = scheme.endsWith("x4");
    for (let level = 1; level < levels; level++) {
      await t.step(`${scheme} level ${level}`, () => {
        const size = 2 ** (12 + level * w);
        const va = size * 3, pa = size * 2, off = size / 2 + 0x123;
        const env = g ? gEnv(scheme) : fsEnv(scheme);
        const pt = g ? (env as ReturnType<typeof gEnv>).g : (env as ReturnType<typeof fsEnv>).pt;
        pt.map(va, pa, { level });
        const r = rd(env, va + off);
        assert.equal(r.status, XLATE_OK);
        assert.equal(r.pa, pa + off);
        assert.equal(r.size, size);
        pt.map(va + size, pa + size + 4096, { level }); // PPN[0] != 0
        const f = rd(env, va + size + off);
        assert.equal(f.cause, g ? 21 : 13, "a misaligned superpage is a (guest-)page fault");
      });
    }
  }
});

Deno.test("Svnapot: a 64 KiB NAPOT leaf (level 0, PPN[3:0]=1000b) maps 16 pages", async (t) => {
  await t.step("valid encoding", () => {
    const env = fsEnv("sv39");
    for (let i = 0; i < 16; i++) env.pt.map(0x5_0000 + i * 4096, 0xd000_0000, { napot: true });
    for (const i of [0, 5, 15]) {
      const r = rd(env, 0x5_0000 + i * 4096 + 0x10);
      assert.equal(r.pa, 0xd000_0000 + i * 4096 + 0x10);
      assert.equal(r.size, 65536);
    }
  });
  await t.step("N with PPN[3:0] != 1000b is reserved", () => {
    const env = fsEnv("sv39");
    const a = env.pt.map(0x5_0000, 0xd000_4000);
    env.pt.write(a, env.pt.read(a) | 1n << 63n);
    assert.equal(rd(env, 0x5_0000).cause, 13);
  });
  await t.step("N on a level-1 leaf is reserved", () => {
    const env = fsEnv("sv39");
    const a = env.pt.map(0x20_0000, 0xd000_0000, { level: 1 });
    env.pt.write(a, env.pt.read(a) | 1n << 63n | 8n << 10n);
    assert.equal(rd(env, 0x20_0000).cause, 13);
  });
  await t.step("N on a non-leaf PTE is reserved", () => {
    const env = fsEnv("sv39");
    env.pt.map(0x5_0000, 0xd000_0000);
    const a = env.pt.pteAddr(0x5_0000, 1);
    env.pt.write(a, env.pt.read(a) | 1n << 63n);
    assert.equal(rd(env, 0x5_0000).cause, 13);
  });
  await t.step("G stage honours Svnapot too", () => {
    const env = gEnv("sv39x4");
    for (let i = 0; i < 16; i++) env.g.map(0x9_0000 + i * 4096, 0xd000_0000, { napot: true });
    const r = rd(env, 0x9_3008);
    assert.equal(r.pa, 0xd000_3008);
    assert.equal(r.size, 65536);
  });
});

Deno.test("Svpbmt: PBMT is reported; reserved uses fault", async (t) => {
  await t.step("leaf PBMT NC and IO are resolved", () => {
    const env = fsEnv("sv39");
    env.pt.map(0x1000, DATA, { pbmt: 1 });
    env.pt.map(0x2000, DATA, { pbmt: 2 });
    assert.equal(rd(env, 0x1000).pbmt, 1);
    assert.equal(rd(env, 0x2000).pbmt, 2);
  });
  await t.step("PBMT=3 is reserved", () => {
    const env = fsEnv("sv39");
    env.pt.map(0x1000, DATA, { pbmt: 3 });
    assert.equal(rd(env, 0x1000).cause, 13);
  });
  await t.step("PBMT != 0 without capabilities.Svpbmt", () => {
    const env = fsEnv("sv39", { svpbmt: false });
    env.pt.map(0x1000, DATA, { pbmt: 1 });
    env.pt.map(0x2000, DATA);
    assert.equal(rd(env, 0x1000).cause, 13);
    assert.equal(rd(env, 0x2000).status, XLATE_OK);
  });
  await t.step("PBMT on a non-leaf PTE", () => {
    const env = fsEnv("sv39");
    env.pt.map(0x1000, DATA);
    const a = env.pt.pteAddr(0x1000, 2);
    env.pt.write(a, env.pt.read(a) | 1n << 61n);
    assert.equal(rd(env, 0x1000).cause, 13);
  });
  await t.step("first-stage PBMT overrides G-stage PBMT unless PMA", () => {
    const env = testIommuEnv();
    const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
    env.ddt.set(1, { iohgatp: encodeIohgatp(8, 1, g.root), fsc: encodeAtp(8, pt.root) });
    pt.map(0x1000, 0xa000_0000, { pbmt: 0 });
    pt.map(0x2000, 0xa000_1000, { pbmt: 1 });
    g.map(0xa000_0000, DATA, { pbmt: 2 });
    g.map(0xa000_1000, DATA, { pbmt: 2 });
    for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
    assert.equal(rd(env, 0x1000).pbmt, 2);
    assert.equal(rd(env, 0x2000).pbmt, 1);
  });
});

Deno.test("reserved PTE bits 60:54 fault (60:59 free with Svrsw60t59b)", async (t) => {
  for (const bit of [54, 58, 59, 60]) {
    await t.step(`bit ${bit}`, () => {
      const env = fsEnv("sv39");
      env.pt.map(0x1000, DATA, { hi: 1 << (bit - 32) });
      assert.equal(rd(env, 0x1000).cause, 13);
      const env2 = fsEnv("sv39", { svrsw60t59b: true });
      env2.pt.map(0x1000, DATA, { hi: 1 << (bit - 32) });
      assert.equal(rd(env2, 0x1000).status, bit >= 59 ? XLATE_OK : XLATE_FAULT);
    });
  }
  await t.step("G stage: reserved bit 57", () => {
    const env = gEnv("sv48x4");
    env.g.map(0x1000, DATA, { hi: 1 << 25 });
    assert.equal(rd(env, 0x1000).cause, 21);
  });
});

Deno.test("reserved R/W/X encodings: W=1 with R=0 (xwr=010 and 110) faults", async (t) => {
  for (const xwr of [PTE_W, PTE_W | PTE_X]) {
    await t.step(`xwr=${(xwr >> 1).toString(2)}`, () => {
      const env = fsEnv("sv39");
      env.pt.map(0x1000, DATA, { flags: PTE_V | PTE_U | PTE_A | PTE_D | xwr });
      assert.equal(rd(env, 0x1000).cause, 13);
      assert.equal(wr(env, 0x1000).cause, 15);
    });
  }
});

Deno.test("non-leaf PTEs with A, D or U set, and non-leaf level-0 PTEs, fault", async (t) => {
  for (const bit of [PTE_A, PTE_D, PTE_U]) {
    await t.step(`bit ${bit}`, () => {
      const env = fsEnv("sv48");
      env.pt.map(0x1000, DATA);
      const a = env.pt.pteAddr(0x1000, 1);
      env.pt.write(a, env.pt.read(a) | BigInt(bit));
      assert.equal(rd(env, 0x1000).cause, 13);
    });
  }
  await t.step("pointer at level 0", () => {
    const env = fsEnv("sv39");
    env.pt.map(0x1000, DATA, { flags: PTE_V });
    assert.equal(rd(env, 0x1000).cause, 13);
  });
});

Deno.test("IOVA sign extension: bits above the VA width must equal its top bit", async (t) => {
  const cases: [PageTableScheme, bigint, bigint][] = [
    ["sv39", 0xffff_ffc0_1234_5000n, 0x0000_0040_0000_0000n],
    ["sv48", 0xffff_8000_1234_5000n, 0x0000_8000_0000_0000n],
    ["sv57", 0xff00_0000_1234_5000n, 0x0100_0000_0000_0000n],
  ];
  for (const [scheme, good, bad] of cases) {
    await t.step(scheme, () => {
      const env = fsEnv(scheme);
      env.pt.map(good, DATA);
      assert.equal(rd(env, good + 0x10n).pa, DATA + 0x10);
      env.pt.map(bad, DATA);
      const r = rd(env, bad);
      assert.equal(r.cause, 13);
      assert.equal(r.iotval, bad);
    });
  }
  await t.step("Sv32 (SXL=1): IOVA bits above 31 fault", () => {
    const env = fsEnv("sv32");
    env.pt.map(0x1000, DATA);
    assert.equal(rd(env, 0x1000).pa, DATA);
    assert.equal(rd(env, 0x1_0000_1000).cause, 13);
  });
});

Deno.test("SXL=1: GPA bits above 33 are a guest-page fault", () => {
  const env = testIommuEnv(SV32_CAPS);
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  g.map(0x3_0000_0000, DATA);
  g.map(0x4_0000_0000, DATA);
  env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_SXL, iohgatp: encodeIohgatp(8, 1, g.root) });
  assert.equal(rd(env, 0x3_0000_0000).pa, DATA);
  const r = rd(env, 0x4_0000_0004);
  assert.equal(r.cause, 21);
  assert.equal(r.iotval2, 0x4_0000_0004n);
});

Deno.test("privilege: requests without a process_id are user accesses (U must be 1)", async (t) => {
  await t.step("first stage U=0 → page fault", () => {
    const env = fsEnv("sv39");
    env.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~PTE_U });
    assert.equal(rd(env, 0x1000).cause, 13);
  });
  await t.step("G-stage leaves need U=1 → guest-page fault", () => {
    const env = gEnv("sv39x4");
    env.g.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~PTE_U });
    const r = rd(env, 0x1000);
    assert.equal(r.cause, 21);
    assert.equal(r.iotval2, 0x1000n);
  });
});

Deno.test("permissions: R for reads, W for writes, X only for execute requests", async (t) => {
  const env = fsEnv("sv39");
  env.pt.map(0x1000, DATA, { flags: PTE_V | PTE_U | PTE_A | PTE_R });
  env.pt.map(0x2000, DATA, { flags: PTE_V | PTE_U | PTE_A | PTE_X });
  await t.step("write to a read-only page → 15, TTYP 3", () => {
    const r = wr(env, 0x1000);
    assert.equal(r.cause, 15);
    assert.equal(r.ttyp, 3);
  });
  await t.step("execute of a non-executable page → 12, TTYP 1", () => {
    const r = ex(env, 0x1000);
    assert.equal(r.cause, 12);
    assert.equal(r.ttyp, 1);
  });
  await t.step("read of an execute-only page → 13, TTYP 2", () => {
    const r = rd(env, 0x2000);
    assert.equal(r.cause, 13);
    assert.equal(r.ttyp, 2);
  });
  await t.step("execute of an execute-only page succeeds", () => {
    const r = ex(env, 0x2000);
    assert.equal(r.status, XLATE_OK);
    assert.equal(r.perm, 4);
  });
  await t.step("G stage: write to a read-only G leaf → 23", () => {
    const g = gEnv("sv39x4");
    g.g.map(0x1000, DATA, { flags: PTE_V | PTE_U | PTE_A | PTE_R });
    assert.equal(wr(g, 0x1000).cause, 23);
    assert.equal(ex(g, 0x1000).cause, 20);
  });
});

Deno.test("A/D without hardware update: A=0, or D=0 on a write, is a page fault", () => {
  const env = fsEnv("sv39");
  env.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~PTE_A });
  env.pt.map(0x2000, DATA, { flags: TEST_PTE_RW_USER & ~PTE_D });
  assert.equal(rd(env, 0x1000).cause, 13);
  assert.equal(rd(env, 0x2000).status, XLATE_OK);
  assert.equal(wr(env, 0x2000).cause, 15);
  const g = gEnv("sv39x4");
  g.g.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~PTE_A });
  assert.equal(rd(g, 0x1000).cause, 21);
});

Deno.test("A/D with SADE/GADE: the IOMMU sets A (and D on writes) atomically", async (t) => {
  await t.step("first stage", () => {
    const env = fsEnv("sv39", {}, RISCV_IOMMU_DC_TC_SADE);
    const a = env.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~(PTE_A | PTE_D) });
    env.tr.iotlbEnabled = false;
    assert.equal(rd(env, 0x1000).pa, DATA);
    assert.equal(env.pt.read(a) & BigInt(PTE_A | PTE_D), BigInt(PTE_A));
    assert.equal(wr(env, 0x1000).pa, DATA);
    assert.equal(env.pt.read(a) & BigInt(PTE_A | PTE_D), BigInt(PTE_A | PTE_D));
  });
  await t.step("Sv32 first stage (32-bit PTEs)", () => {
    const env = fsEnv("sv32", {}, RISCV_IOMMU_DC_TC_SADE);
    const a = env.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~(PTE_A | PTE_D) });
    assert.equal(wr(env, 0x1000).pa, DATA);
    assert.equal(env.pt.read(a) & BigInt(PTE_A | PTE_D), BigInt(PTE_A | PTE_D));
  });
  await t.step("G stage", () => {
    const env = gEnv("sv48x4", {}, RISCV_IOMMU_DC_TC_GADE);
    const a = env.g.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~(PTE_A | PTE_D) });
    assert.equal(wr(env, 0x1000).pa, DATA);
    assert.equal(env.g.read(a) & BigInt(PTE_A | PTE_D), BigInt(PTE_A | PTE_D));
  });
  await t.step("a read-only page gets A but never D, and the write still faults", () => {
    const env = fsEnv("sv39", {}, RISCV_IOMMU_DC_TC_SADE);
    const a = env.pt.map(0x1000, DATA, { flags: PTE_V | PTE_R | PTE_U });
    assert.equal(wr(env, 0x1000).cause, 15);
    assert.equal(env.pt.read(a) & BigInt(PTE_A | PTE_D), 0n);
    assert.equal(rd(env, 0x1000).status, XLATE_OK);
    assert.equal(env.pt.read(a) & BigInt(PTE_A | PTE_D), BigInt(PTE_A));
  });
});

Deno.test("PTE load access fault is cause 1/5/7 by access; poisoned PTE is 274", async (t) => {
  const mk = () => {
    const env = fsEnv("sv39");
    env.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER | PTE_X });
    return env;
  };
  for (const [access, cause] of [[0, 5], [1, 7], [2, 1]] as const) {
    await t.step(`access ${access} → ${cause}`, () => {
      const env = mk();
      env.mem.injectFault(env.pt.pteAddr(0x1000, 1), 8);
      assert.equal(rd(env, 0x1000, { access }).cause, cause);
    });
  }
  await t.step("poison → 274", () => {
    const env = mk();
    env.mem.injectFault(env.pt.pteAddr(0x1000, 0), 8, MEM_POISON);
    assert.equal(rd(env, 0x1000).cause, 274);
  });
  await t.step("G-stage PTE load fault → 5; poison → 274", () => {
    const env = gEnv("sv39x4");
    env.g.map(0x1000, DATA);
    env.mem.injectFault(env.g.pteAddr(0x1000, 0), 8);
    assert.equal(rd(env, 0x1000).cause, 5);
    env.mem.clearFaults();
    env.mem.injectFault(env.g.pteAddr(0x1000, 2), 8, MEM_POISON);
    assert.equal(rd(env, 0x1000).cause, 274);
  });
  await t.step("A/D update store fault → 7", () => {
    const env = fsEnv("sv39", {}, RISCV_IOMMU_DC_TC_SADE);
    const a = env.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~PTE_D });
    env.mem.injectFault(a, 8, 1, "write");
    assert.equal(wr(env, 0x1000).cause, 7);
  });
});

Deno.test("page-table addresses beyond capabilities.PAS are access faults", () => {
  const env = fsEnv("sv39", { pas: 40 });
  env.pt.map(0x1000, DATA);
  const a = env.pt.pteAddr(0x1000, 1);
  env.pt.write(a, 1n << 38n | BigInt(PTE_V)); // next table at 2^40
  assert.equal(rd(env, 0x1000).cause, 5);
});

Deno.test("endianness: first-stage tables follow DC.tc.SBE, G-stage tables fctl.BE", async (t) => {
  await t.step("SBE=1 (capabilities.END)", () => {
    const env = fsEnv("sv39", { end: true }, RISCV_IOMMU_DC_TC_SBE, true);
    env.pt.map(0x1000, DATA);
    assert.equal(rd(env, 0x1000).pa, DATA);
  });
  await t.step("little-endian tables read with SBE=1 fault", () => {
    const env = fsEnv("sv39", { end: true }, RISCV_IOMMU_DC_TC_SBE, false);
    env.pt.map(0x1000, DATA);
    assert.equal(rd(env, 0x1000).status, XLATE_FAULT);
  });
  await t.step("G stage with fctl.BE=1", () => {
    const env = testIommuEnv({ end: true });
    env.tr.fctlBE = true;
    const ddt = new DdtBuilder(env.mem, env.alloc, 4, true, true);
    env.tr.ddtpPpn = ddt.rootPn;
    const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4", true);
    g.map(0x1000, DATA);
    ddt.set(1, { iohgatp: encodeIohgatp(8, 1, g.root) });
    assert.equal(rd(env, 0x1000).pa, DATA);
  });
  await t.step(
    "hardware A/D updates store in the table's endianness (SADE with SBE, GADE with BE)",
    () => {
      const fs = fsEnv("sv39", { end: true }, RISCV_IOMMU_DC_TC_SBE | RISCV_IOMMU_DC_TC_SADE, true);
      const a = fs.pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~(PTE_A | PTE_D) });
      assert.equal(wr(fs, 0x1000).pa, DATA);
      assert.equal(fs.pt.read(a) & BigInt(PTE_A | PTE_D), BigInt(PTE_A | PTE_D));
      const env = testIommuEnv({ end: true });
      env.tr.fctlBE = true;
      const ddt = new DdtBuilder(env.mem, env.alloc, 4, true, true);
      env.tr.ddtpPpn = ddt.rootPn;
      const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4", true);
      const ga = g.map(0x1000, DATA, { flags: TEST_PTE_RW_USER & ~(PTE_A | PTE_D) });
      ddt.set(1, {
        tc: RISCV_IOMMU_DC_TC_GADE | RISCV_IOMMU_DC_TC_SBE,
        iohgatp: encodeIohgatp(8, 1, g.root),
      });
      assert.equal(wr(env, 0x1000).pa, DATA);
      assert.equal(g.read(ga) & BigInt(PTE_A | PTE_D), BigInt(PTE_A | PTE_D));
    },
  );
});

Deno.test("G stage Sv32x4/Sv39x4/Sv48x4/Sv57x4: 16 KiB root with 2 extra index bits, GPA width", async (t) => {
  const cases: [PageTableScheme, number][] = [["sv32x4", 34], ["sv39x4", 41], ["sv48x4", 50], [
    "sv57x4",
    59,
  ]];
  for (const [scheme, bits] of cases) {
    await t.step(scheme, () => {
      const env = gEnv(scheme);
      const top = 2n ** BigInt(bits - 1) + 0x5000n; // uses the top index's extra bits
      env.g.map(top, DATA);
      // An entry in the root's first 4 KiB too: the walk must still find the top index's entry
      // in a later page of the root, not past the end of the first.
      env.g.map(0x7000, DATA + 0x1000);
      assert.equal(rd(env, 0x7010).pa, DATA + 0x1010);
      const rootLevel = { sv32x4: 1, sv39x4: 2, sv48x4: 3, sv57x4: 4 }[scheme as string]!;
      assert.ok(env.g.index(top, rootLevel) >= (scheme === "sv32x4" ? 1024 : 512));
      const r = rd(env, top + 8n);
      assert.equal(r.status, XLATE_OK);
      assert.equal(r.pa, DATA + 8);
      const over = 2n ** BigInt(bits) + 0x5004n;
      const f = rd(env, over, { access: ACC_WRITE });
      assert.equal(f.cause, 23);
      assert.equal(f.iotval2, over, "iotval2 = GPA[63:2] << 2");
    });
  }
  await t.step("Sv32x4 4 MiB superpage", () => {
    const env = gEnv("sv32x4");
    env.g.map(0x2_0040_0000, 0xc000_0000, { level: 1 });
    const r = rd(env, 0x2_0050_0010);
    assert.equal(r.pa, 0xc010_0010);
    assert.equal(r.size, 4 * 2 ** 20);
  });
});

/** Two stages: first-stage tables live at GPA = SPA + GOFF, mapped back by the G stage. */
function nested(tc = 0) {
  const GOFF = 0x4000_0000;
  const env = testIommuEnv();
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39", false, (pn) => pn + GOFF / 4096);
  env.ddt.set(1, {
    tc,
    iohgatp: encodeIohgatp(8, 2, g.root),
    fsc: encodeAtp(8, pt.root),
    ta: encodeDcTa(9),
  });
  const mapTables = () => {
    for (const pn of pt.pages) g.map(pn * 4096 + GOFF, pn * 4096);
  };
  return { ...env, g, pt, GOFF, mapTables };
}

Deno.test("two-stage translation: first-stage PTE addresses go through the G stage", async (t) => {
  await t.step("IOVA → GPA → SPA", () => {
    const env = nested();
    env.pt.map(0x1000, 0x7000_0000);
    env.mapTables();
    env.g.map(0x7000_0000, DATA);
    const r = rd(env, 0x1234);
    assert.equal(r.pa, DATA + 0x234);
  });
  await t.step("implicit read guest-page fault: iotval2 = PTE GPA | 1, cause by access", () => {
    const env = nested();
    env.pt.map(0x1000, 0x7000_0000);
    env.mapTables();
    env.g.map(0x7000_0000, DATA);
    const leafTable = env.pt.pages[2];
    env.g.write(env.g.pteAddr(leafTable * 4096 + env.GOFF, 0), 0n);
    const r = wr(env, 0x1000);
    assert.equal(r.cause, 23);
    assert.equal(r.iotval2, BigInt(leafTable * 4096 + env.GOFF + 1 * 8) | 1n);
    assert.equal(rd(env, 0x1000).cause, 21);
  });
  await t.step(
    "implicit write (A/D update) to a read-only table page: iotval2 bits 1:0 = 11",
    () => {
      const env = nested(RISCV_IOMMU_DC_TC_SADE);
      env.pt.map(0x1000, 0x7000_0000, { flags: TEST_PTE_RW_USER & ~PTE_A });
      env.mapTables();
      env.g.map(0x7000_0000, DATA);
      const leafTable = env.pt.pages[2];
      env.g.map(leafTable * 4096 + env.GOFF, leafTable * 4096, {
        flags: PTE_V | PTE_R | PTE_U | PTE_A,
      });
      const r = rd(env, 0x1000);
      assert.equal(r.cause, 21);
      assert.equal(r.iotval2, BigInt(leafTable * 4096 + env.GOFF + 8) | 3n);
    },
  );
  await t.step("guest-page fault on the final GPA: iotval2 = GPA, bit 0 clear", () => {
    const env = nested();
    env.pt.map(0x1000, 0x7000_0000);
    env.mapTables();
    const r = rd(env, 0x1abe);
    assert.equal(r.cause, 21);
    assert.equal(r.iotval2, 0x7000_0abcn);
    assert.equal(r.iotval, 0x1aben);
  });
  await t.step("the range is the smaller of the two leaves", () => {
    const env = nested();
    env.pt.map(0x20_0000, 0x8020_0000, { level: 1 }); // 2 MiB leaf
    env.pt.map(0x40_0000, 0x6000_0000); // 4 KiB leaf
    env.pt.map(0x60_0000, 0x5000_0000, { level: 1 }); // 2 MiB leaf
    env.mapTables();
    env.g.map(0x8000_0000, 0x1_0000_0000, { level: 2 }); // 1 GiB leaf
    env.g.map(0x6000_0000, 0xc000_0000, { level: 1 }); // 2 MiB leaf
    env.g.map(0x5000_1000, DATA); // 4 KiB leaf
    const a = rd(env, 0x21_2345);
    assert.equal(a.pa, 0x1_0021_2345);
    assert.equal(a.size, 2 * 2 ** 20);
    const b = rd(env, 0x40_0010);
    assert.equal(b.pa, 0xc000_0010);
    assert.equal(b.size, 4096);
    const c = rd(env, 0x60_1008);
    assert.equal(c.pa, DATA + 8);
    assert.equal(c.size, 4096);
  });
});

Deno.test("Translated requests: SPA as is (T2GPA=0) or G-stage translated (T2GPA=1)", async (t) => {
  await t.step("T2GPA=0", () => {
    const env = fsEnv("sv39", {}, RISCV_IOMMU_DC_TC_EN_ATS);
    const r = rd(env, 0xa000_1234, { kind: REQ_TRANSLATED, access: ACC_WRITE });
    assert.equal(r.pa, 0xa000_1234);
  });
  await t.step("T2GPA=1: G stage only, faults with TTYP 5/6/7", () => {
    const env = gEnv("sv39x4", { t2gpa: true }, RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_T2GPA);
    env.g.map(0x1000, DATA, { flags: PTE_V | PTE_R | PTE_U | PTE_A });
    assert.equal(rd(env, 0x1010, { kind: REQ_TRANSLATED }).pa, DATA + 0x10);
    const w = rd(env, 0x1010, { kind: REQ_TRANSLATED, access: ACC_WRITE });
    assert.equal(w.cause, 23);
    assert.equal(w.ttyp, 7);
    const x = rd(env, 0x1010, { kind: REQ_TRANSLATED, access: ACC_EXEC });
    assert.equal(x.ttyp, 5);
  });
  await t.step("ATS with T2GPA=1 returns the GPA", () => {
    const env = testIommuEnv({ t2gpa: true });
    const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
    env.ddt.set(1, {
      tc: RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_T2GPA,
      iohgatp: encodeIohgatp(8, 1, g.root),
      fsc: encodeAtp(8, pt.root),
    });
    pt.map(0x1000, 0x7000_0000);
    for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
    g.map(0x7000_0000, DATA);
    const r = rd(env, 0x1000, { kind: REQ_ATS });
    assert.equal(r.status, XLATE_OK);
    assert.equal(r.pa, 0x7000_0000);
    assert.equal(r.perm, 3);
  });
});
