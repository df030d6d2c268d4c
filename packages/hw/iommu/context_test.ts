import assert from "node:assert/strict";
import { MEM_POISON } from "../memory.ts";
import {
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  encodePcTa,
  PageTableBuilder,
  PdtBuilder,
  TEST_PTE_RW_USER,
  type TestIommuEnv,
  testIommuEnv,
  testRequest,
  testTranslate,
  testWrite64,
} from "../testing.ts";
import { legalGxl } from "./context.ts";
import { resolveCaps } from "./caps.ts";
import { REQ_ATS, REQ_TRANSLATED, XLATE_FAULT, XLATE_OK } from "./request.ts";
import {
  RISCV_IOMMU_DC_TC_DPE,
  RISCV_IOMMU_DC_TC_DTF,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_EN_PRI,
  RISCV_IOMMU_DC_TC_GADE,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_DC_TC_PRPR,
  RISCV_IOMMU_DC_TC_SADE,
  RISCV_IOMMU_DC_TC_SBE,
  RISCV_IOMMU_DC_TC_SXL,
  RISCV_IOMMU_DC_TC_T2GPA,
  RISCV_IOMMU_DC_TC_V,
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_PD_WALK,
} from "./structs.ts";

const SV39 = 8, SV48 = 9, SV57 = 10;
const PD8 = 1, PD17 = 2, PD20 = 3;
const DATA = 0x9000_0000;

/** An env whose device `did` translates IOVA 0x1000 to DATA through an Sv39 table. */
function sv39Env(caps = {}, mode = 4, did = 0x2a) {
  const env = testIommuEnv(caps, mode);
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  env.ddt.set(did, { fsc: encodeAtp(SV39, pt.root), ta: encodeDcTa(1) });
  return { ...env, pt };
}

Deno.test("ddtp.iommu_mode Off blocks every transaction (cause 256, reported)", () => {
  const env = sv39Env();
  env.tr.ddtpMode = 0;
  const r = testTranslate(env.tr, testRequest(0x2a, 0x1234, { access: 1 }));
  assert.equal(r.status, XLATE_FAULT);
  assert.equal(r.cause, 256);
  assert.equal(r.ttyp, 3);
  assert.equal(r.iotval, 0x1234n);
  assert.equal(r.reported, true);
});

Deno.test("ddtp.iommu_mode Bare passes Untranslated requests only (Translated/ATS: 260)", async (t) => {
  const env = testIommuEnv({}, 1);
  await t.step("Untranslated: SPA = IOVA", () => {
    const r = testTranslate(env.tr, testRequest(5, 0x8123_4567));
    assert.equal(r.status, XLATE_OK);
    assert.equal(r.pa, 0x8123_4567);
  });
  for (const kind of [REQ_TRANSLATED, REQ_ATS] as const) {
    await t.step(`kind ${kind} is disallowed`, () => {
      const r = testTranslate(env.tr, testRequest(5, 0x8123_4000, { kind }));
      assert.equal(r.status, XLATE_FAULT);
      assert.equal(r.cause, 260);
      assert.equal(r.ttyp, kind === REQ_ATS ? 8 : 6);
      assert.equal(r.reported, true);
    });
  }
});

Deno.test("3LVL extended DC: device_id 0x12345a resolves through DDI[2]/DDI[1]/DDI[0]", () => {
  const env = testIommuEnv({}, 4);
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  // Hand-built: DDI[2] = did[23:15], DDI[1] = did[14:6], DDI[0] = did[5:0], 64-byte DCs.
  const did = 0x12345a;
  const l1 = env.alloc.pages(), l0 = env.alloc.pages();
  testWrite64(env.mem, env.ddt.rootPn * 4096 + (did >>> 15) * 8, BigInt(l1) << 10n | 1n);
  testWrite64(env.mem, l1 * 4096 + ((did >>> 6) & 0x1ff) * 8, BigInt(l0) << 10n | 1n);
  const dc = l0 * 4096 + (did & 0x3f) * 64;
  testWrite64(env.mem, dc, BigInt(RISCV_IOMMU_DC_TC_V));
  testWrite64(env.mem, dc + 0x18, encodeAtp(SV39, pt.root));
  const r = testTranslate(env.tr, testRequest(did, 0x1008));
  assert.equal(r.status, XLATE_OK);
  assert.equal(r.pa, DATA + 8);
});

Deno.test("3LVL base DC (MSI_FLAT=0): device_id resolves through 8/9/7-bit DDIs and 32-byte DCs", () => {
  const env = testIommuEnv({ msiFlat: false, msiMrif: false }, 4);
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  const did = 0xab_cdef;
  const l1 = env.alloc.pages(), l0 = env.alloc.pages();
  testWrite64(env.mem, env.ddt.rootPn * 4096 + (did >>> 16) * 8, BigInt(l1) << 10n | 1n);
  testWrite64(env.mem, l1 * 4096 + ((did >>> 7) & 0x1ff) * 8, BigInt(l0) << 10n | 1n);
  const dc = l0 * 4096 + (did & 0x7f) * 32;
  testWrite64(env.mem, dc, BigInt(RISCV_IOMMU_DC_TC_V));
  testWrite64(env.mem, dc + 0x18, encodeAtp(SV39, pt.root));
  assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).pa, DATA);
});

Deno.test("2LVL and 1LVL directories locate DCs with the builder's layout", async (t) => {
  for (const [mode, did] of [[3, 0x7fff], [2, 0x3f]] as const) {
    await t.step(`mode ${mode}, device ${did.toString(16)}`, () => {
      const env = sv39Env({}, mode, did);
      assert.equal(testTranslate(env.tr, testRequest(did, 0x1010)).pa, DATA + 0x10);
    });
  }
});

Deno.test("device_id wider than the DDT mode allows is disallowed (cause 260)", async (t) => {
  const cases: [string, object, number, number][] = [
    ["1LVL extended: 6 bits", {}, 2, 64],
    ["2LVL extended: 15 bits", {}, 3, 1 << 15],
    ["1LVL base: 7 bits", { msiFlat: false, msiMrif: false }, 2, 128],
    ["2LVL base: 16 bits", { msiFlat: false, msiMrif: false }, 3, 1 << 16],
    ["3LVL: 24 bits", {}, 4, 1 << 24],
  ];
  for (const [name, caps, mode, did] of cases) {
    await t.step(name, () => {
      const env = testIommuEnv(caps, mode);
      env.ddt.set(did - 1, {});
      assert.equal(testTranslate(env.tr, testRequest(did - 1, 0)).status, XLATE_OK);
      const r = testTranslate(env.tr, testRequest(did, 0));
      assert.equal(r.cause, 260);
      assert.equal(r.reported, true);
    });
  }
  await t.step("1LVL base: device_id 127 fits", () => {
    const env = testIommuEnv({ msiFlat: false, msiMrif: false }, 2);
    env.ddt.set(127, {});
    assert.equal(testTranslate(env.tr, testRequest(127, 0)).status, XLATE_OK);
  });
});

Deno.test("non-leaf DDTE faults: load access 257, poison 268, V=0 258, reserved bits 259", async (t) => {
  const did = 0x1234;
  const mk = () => {
    const env = sv39Env({}, 4, did);
    return { ...env, a: env.ddt.ddteAddr(did, 1) };
  };
  await t.step("load access fault → 257", () => {
    const env = mk();
    env.mem.injectFault(env.a, 8);
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).cause, 257);
  });
  await t.step("poison → 268", () => {
    const env = mk();
    env.mem.injectFault(env.a, 8, MEM_POISON);
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).cause, 268);
  });
  await t.step("V=0 → 258", () => {
    const env = mk();
    testWrite64(env.mem, env.a, env.mem.read64(env.a) & ~1n);
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).cause, 258);
  });
  for (const bit of [1n, 9n, 54n, 63n]) {
    await t.step(`reserved bit ${bit} → 259`, () => {
      const env = mk();
      testWrite64(env.mem, env.a, env.mem.read64(env.a) | 1n << bit);
      const r = testTranslate(env.tr, testRequest(did, 0x1000));
      assert.equal(r.cause, 259);
      assert.equal(r.reported, true);
    });
  }
});

Deno.test("DC faults: load access 257, poison 268, V=0 258", async (t) => {
  const did = 7;
  await t.step("DC load access fault → 257", () => {
    const env = sv39Env({}, 4, did);
    env.mem.injectFault(env.ddt.dcAddr(did) + 0x18, 8);
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).cause, 257);
  });
  await t.step("DC poison → 268", () => {
    const env = sv39Env({}, 4, did);
    env.mem.injectFault(env.ddt.dcAddr(did) + 0x30, 8, MEM_POISON);
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).cause, 268);
  });
  await t.step("DC.tc.V=0 → 258", () => {
    const env = sv39Env({}, 4, did);
    env.ddt.set(did, { invalid: true, tc: RISCV_IOMMU_DC_TC_DTF });
    const r = testTranslate(env.tr, testRequest(did, 0x1000));
    assert.equal(r.cause, 258);
    assert.equal(r.reported, true, "DTF of an invalid DC is taken as 0");
  });
});

/** Expects the DC built from `fields` to be misconfigured (or fine when `ok`). */
function expectDc(
  caps: object,
  fields: Parameters<DdtBuilder["set"]>[1],
  ok = false,
  setup?: (env: TestIommuEnv) => void,
) {
  const env = testIommuEnv(caps);
  setup?.(env);
  env.ddt.set(1, fields);
  const r = testTranslate(env.tr, testRequest(1, 0x1000));
  if (ok) {
    assert.notEqual(r.cause, 259, "a well-formed DC must not be misconfigured");
  } else {
    assert.equal(r.status, XLATE_FAULT);
    assert.equal(r.cause, 259);
    assert.equal(r.reported, true);
  }
}

Deno.test("DC misconfiguration checks of spec §2.1.4, Device-context configuration checks (cause 259), one step per check, numbered as the spec lists them", async (t) => {
  const G39 = (ppn = 0x80000) => encodeIohgatp(8, 1, ppn);
  const tc = (v: number) => v;
  const cases: [string, object, Parameters<DdtBuilder["set"]>[1]][] = [
    // 1. Reserved bits and encodings.
    ["#1 tc reserved bit 12", {}, { tc: tc(1 << 12) }],
    ["#1 tc reserved bit 23", {}, { tc: tc(1 << 23) }],
    ["#1 tc reserved bit 40", {}, { tc: 1n << 40n }],
    ["#1 ta reserved bit 0", {}, { ta: 1n }],
    ["#1 ta reserved bit 32", {}, { ta: 1n << 32n }],
    ["#1 ta bit 35 with QOSID", { qosid: true }, { ta: 1n << 35n }],
    ["#1 fsc reserved bit 44", {}, { fsc: 1n << 44n }],
    ["#1 iosatp reserved MODE 1", {}, { fsc: encodeAtp(1, 0) }],
    ["#1 iosatp reserved MODE 11", {}, { fsc: encodeAtp(11, 0) }],
    ["#1 iosatp custom MODE 14", {}, { fsc: encodeAtp(14, 0) }],
    ["#1 pdtp reserved MODE 4", {}, { tc: tc(RISCV_IOMMU_DC_TC_PDTV), fsc: encodeAtp(4, 0) }],
    ["#1 iohgatp reserved MODE 1", {}, { iohgatp: encodeIohgatp(1, 0, 0) }],
    ["#1 iohgatp reserved MODE 11", {}, { iohgatp: encodeIohgatp(11, 0, 0) }],
    ["#1 msiptp reserved bit 50", {}, { msiptp: 1n << 50n }],
    ["#1 msi_addr_mask bit 52", {}, { msiMask: 1n << 52n }],
    ["#1 msi_addr_pattern bit 63", {}, { msiPattern: 1n << 63n }],
    ["#1 msi_addr_mask above MGPAW-12 (Sv57x4: bit 47)", {}, { msiMask: 1n << 47n }],
    ["#1 reserved doubleword 7", {}, { reserved: 1n }],
    // 2–7. ATS/PRI/PRPR/T2GPA.
    ["#2 capabilities.ATS=0 and EN_ATS", { ats: false }, { tc: tc(RISCV_IOMMU_DC_TC_EN_ATS) }],
    [
      "#2 capabilities.ATS=0 and EN_PRI",
      { ats: false },
      { tc: tc(RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_EN_PRI) },
    ],
    ["#2 capabilities.ATS=0 and PRPR", { ats: false }, { tc: tc(RISCV_IOMMU_DC_TC_PRPR) }],
    [
      "#3 EN_ATS=0 and T2GPA=1",
      { t2gpa: true },
      { tc: tc(RISCV_IOMMU_DC_TC_T2GPA), iohgatp: G39() },
    ],
    ["#4 DC with EN_PRI=1 and EN_ATS=0", {}, { tc: tc(RISCV_IOMMU_DC_TC_EN_PRI) }],
    [
      "#5 EN_PRI=0 and PRPR=1",
      {},
      { tc: tc(RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_PRPR) },
    ],
    [
      "#6 capabilities.T2GPA=0 and T2GPA=1",
      {},
      { tc: tc(RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_T2GPA), iohgatp: G39() },
    ],
    [
      "#7 T2GPA=1 with iohgatp Bare",
      { t2gpa: true },
      { tc: tc(RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_T2GPA) },
    ],
    // 8. pdtp modes without their capability.
    ["#8 PD20 without capabilities.PD20", { pd20: false }, {
      tc: tc(RISCV_IOMMU_DC_TC_PDTV),
      fsc: encodeAtp(PD20, 0),
    }],
    ["#8 PD17 without capabilities.PD17", { pd17: false }, {
      tc: tc(RISCV_IOMMU_DC_TC_PDTV),
      fsc: encodeAtp(PD17, 0),
    }],
    ["#8 PD8 without capabilities.PD8", { pd8: false }, {
      tc: tc(RISCV_IOMMU_DC_TC_PDTV),
      fsc: encodeAtp(PD8, 0),
    }],
    // 9. iosatp modes without their capability.
    ["#9 Sv39 without capabilities.Sv39", { sv39: false }, { fsc: encodeAtp(SV39, 0) }],
    ["#9 Sv48 without capabilities.Sv48", { sv48: false }, { fsc: encodeAtp(SV48, 0) }],
    ["#9 Sv57 without capabilities.Sv57", { sv57: false }, { fsc: encodeAtp(SV57, 0) }],
    [
      "#9 SXL=1: Sv32 without capabilities.Sv32",
      { sv32x4: true },
      { tc: tc(RISCV_IOMMU_DC_TC_SXL), fsc: encodeAtp(8, 0) },
    ],
    ["#9 SXL=1: MODE 9 is reserved", { sv32: true, sv32x4: true }, {
      tc: tc(RISCV_IOMMU_DC_TC_SXL),
      fsc: encodeAtp(9, 0),
    }],
    // 10. DPE without PDTV.
    ["#10 PDTV=0 and DPE=1", {}, { tc: tc(RISCV_IOMMU_DC_TC_DPE) }],
    // 11. iohgatp modes without their capability.
    ["#11 Sv57x4 without capabilities.Sv57x4", { sv57x4: false }, {
      iohgatp: encodeIohgatp(10, 0, 0),
    }],
    ["#11 Sv48x4 without capabilities.Sv48x4", { sv48x4: false }, {
      iohgatp: encodeIohgatp(9, 0, 0),
    }],
    ["#11 Sv39x4 without capabilities.Sv39x4", { sv39x4: false }, {
      iohgatp: encodeIohgatp(8, 0, 0),
    }],
    // 12. msiptp modes.
    ["#12 msiptp MODE 2", {}, { msiptp: encodeAtp(2, 0), iohgatp: G39() }],
    ["#12 msiptp custom MODE 15", {}, { msiptp: encodeAtp(15, 0), iohgatp: G39() }],
    ["#18 [post-1.0] msiptp Flat with iohgatp Bare", {}, { msiptp: encodeAtp(1, 0) }],
    // 13. G-stage root alignment.
    ["#13 iohgatp root not 16 KiB aligned", {}, { iohgatp: G39(0x80001) }],
    ["#13 iohgatp root 8 KiB aligned", {}, { iohgatp: G39(0x80002) }],
    // 14. A/D without AMO_HWAD.
    ["#14 SADE without capabilities.AMO_HWAD", { amoHwad: false }, {
      tc: tc(RISCV_IOMMU_DC_TC_SADE),
    }],
    ["#14 GADE without capabilities.AMO_HWAD", { amoHwad: false }, {
      tc: tc(RISCV_IOMMU_DC_TC_GADE),
    }],
    // 15/17. SBE vs fctl.BE without END.
    ["#15/#17 capabilities.END=0 and SBE != fctl.BE", {}, { tc: tc(RISCV_IOMMU_DC_TC_SBE) }],
    // 16. SXL legality.
    ["#16 SXL=1 when fctl.GXL is hard-wired 0", { sv32: true }, { tc: tc(RISCV_IOMMU_DC_TC_SXL) }],
  ];
  for (const [name, caps, fields] of cases) {
    await t.step(`${name} is misconfigured`, () => expectDc(caps, fields));
  }
  await t.step("#16 fctl.GXL=1 requires SXL=1", () => {
    const caps = { sv32: true, sv32x4: true };
    expectDc(caps, {}, false, (env) => env.tr.fctlGXL = true);
    expectDc(caps, { tc: RISCV_IOMMU_DC_TC_SXL }, true, (env) => env.tr.fctlGXL = true);
  });
  await t.step("#11 fctl.GXL=1: only Sv32x4 is a valid iohgatp mode", () => {
    const caps = { sv32: true, sv32x4: true };
    const gxl = (env: TestIommuEnv) => env.tr.fctlGXL = true;
    expectDc(caps, { tc: RISCV_IOMMU_DC_TC_SXL, iohgatp: encodeIohgatp(9, 0, 0) }, false, gxl);
    expectDc(
      { sv32: true, sv32x4: false },
      { tc: RISCV_IOMMU_DC_TC_SXL, iohgatp: G39() },
      false,
      gxl,
    );
    expectDc(caps, { tc: RISCV_IOMMU_DC_TC_SXL, iohgatp: G39() }, true, gxl);
  });
  await t.step("well-formed DCs of each kind pass", () => {
    expectDc({}, {}, true);
    expectDc({}, { fsc: encodeAtp(SV57, 0x80000), ta: encodeDcTa(0xfffff) }, true);
    expectDc(
      {},
      { tc: RISCV_IOMMU_DC_TC_PDTV | RISCV_IOMMU_DC_TC_DPE, fsc: encodeAtp(PD20, 0) },
      true,
    );
    expectDc({}, {
      tc: RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_EN_PRI | RISCV_IOMMU_DC_TC_PRPR |
        RISCV_IOMMU_DC_TC_SADE | RISCV_IOMMU_DC_TC_GADE,
      iohgatp: G39(),
      msiptp: encodeAtp(1, 0x90000),
      msiMask: 0xffn,
      msiPattern: 0x28000n,
    }, true);
    expectDc({ end: true }, { tc: RISCV_IOMMU_DC_TC_SBE }, true);
    expectDc(
      { sv32: true, sv32x4: true },
      { tc: RISCV_IOMMU_DC_TC_SXL, fsc: encodeAtp(8, 0) },
      true,
    );
    expectDc({ qosid: true }, { ta: 0xfff_fffn << 40n }, true);
    expectDc({ t2gpa: true }, {
      tc: RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_T2GPA,
      iohgatp: G39(),
    }, true);
  });
});

Deno.test("legalGxl: fctl.GXL is writable only with Sv32x4 and a wider G-stage scheme", () => {
  assert.equal(legalGxl(resolveCaps(), true), false);
  assert.equal(legalGxl(resolveCaps({ sv32: true }), true), false);
  assert.equal(legalGxl(resolveCaps({ sv32x4: true }), true), true);
  assert.equal(legalGxl(resolveCaps({ sv32x4: true }), false), false);
  const only32x4 = resolveCaps({ sv32x4: true, sv39x4: false, sv48x4: false, sv57x4: false });
  assert.equal(legalGxl(only32x4, false), true);
});

Deno.test("step 5: transaction types the DC disallows (cause 260)", async (t) => {
  await t.step("Translated request with EN_ATS=0", () => {
    const env = sv39Env();
    const r = testTranslate(env.tr, testRequest(0x2a, 0x1000, { kind: REQ_TRANSLATED }));
    assert.equal(r.cause, 260);
    assert.equal(r.ttyp, 6);
  });
  await t.step("ATS request with EN_ATS=0 (Unsupported Request, logged)", () => {
    const env = sv39Env();
    const r = testTranslate(env.tr, testRequest(0x2a, 0x1000, { kind: REQ_ATS }));
    assert.equal(r.status, XLATE_FAULT);
    assert.equal(r.cause, 260);
    assert.equal(r.ttyp, 8);
    assert.equal(r.reported, true);
  });
  await t.step("process_id with PDTV=0", () => {
    const env = sv39Env();
    assert.equal(
      testTranslate(env.tr, testRequest(0x2a, 0x1000, { pidValid: true, pid: 1 })).cause,
      260,
    );
  });
  for (const [mode, pid] of [[PD8, 256], [PD17, 1 << 17]]) {
    await t.step(`process_id ${pid} wider than pdtp mode ${mode}`, () => {
      const env = testIommuEnv();
      const pdt = new PdtBuilder(env.mem, env.alloc, mode);
      env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: encodeAtp(mode, pdt.root) });
      pdt.set(pid - 1, encodePcTa(1), 0n);
      assert.equal(
        testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: pid - 1 })).status,
        XLATE_OK,
      );
      assert.equal(
        testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid })).cause,
        260,
      );
    });
  }
  await t.step("DTF=1 suppresses the 260 record", () => {
    const env = testIommuEnv();
    env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_DTF });
    const r = testTranslate(env.tr, testRequest(1, 0x1000, { kind: REQ_TRANSLATED }));
    assert.equal(r.cause, 260);
    assert.equal(r.reported, false);
  });
});

Deno.test("DDT cache: a DC change is seen only after IODIR.INVAL_DDT for its device", () => {
  const env = sv39Env();
  const pt2 = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt2.map(0x1000, DATA + 0x10000);
  assert.equal(testTranslate(env.tr, testRequest(0x2a, 0x1000)).pa, DATA);
  env.ddt.set(0x2a, { fsc: encodeAtp(SV39, pt2.root), ta: encodeDcTa(2) });
  assert.equal(testTranslate(env.tr, testRequest(0x2a, 0x1000)).pa, DATA, "stale DC still used");
  env.tr.invalDdt(true, 0x2b);
  assert.equal(
    testTranslate(env.tr, testRequest(0x2a, 0x1000)).pa,
    DATA,
    "another device's INVAL_DDT",
  );
  env.tr.invalDdt(true, 0x2a);
  assert.equal(testTranslate(env.tr, testRequest(0x2a, 0x1000)).pa, DATA + 0x10000);
  env.ddt.set(0x2a, { fsc: encodeAtp(SV39, env.pt.root), ta: encodeDcTa(1) });
  env.tr.invalDdt(false, 0);
  assert.equal(
    testTranslate(env.tr, testRequest(0x2a, 0x1000)).pa,
    DATA,
    "INVAL_DDT DV=0 drops all",
  );
});

Deno.test("DDT cache never holds an invalid or misconfigured DC", () => {
  const env = sv39Env();
  env.ddt.set(3, { invalid: true });
  assert.equal(testTranslate(env.tr, testRequest(3, 0x1000)).cause, 258);
  env.ddt.set(3, { tc: 1 << 12 });
  assert.equal(testTranslate(env.tr, testRequest(3, 0x1000)).cause, 259);
  env.ddt.set(3, { fsc: encodeAtp(SV39, env.pt.root) });
  assert.equal(testTranslate(env.tr, testRequest(3, 0x1000)).pa, DATA);
});

Deno.test("DDT cache evicts to its capacity and still translates every device", () => {
  const env = testIommuEnv({}, 4, { ddt: { sets: 1, ways: 1 }, iotlb: { sets: 16, ways: 4 } });
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  for (const did of [1, 2, 3]) {
    env.ddt.set(did, { fsc: encodeAtp(SV39, pt.root), ta: encodeDcTa(did) });
  }
  for (let i = 0; i < 6; i++) {
    assert.equal(testTranslate(env.tr, testRequest(1 + i % 3, 0x1000)).pa, DATA);
  }
});

/** Counts the HPM events the translator of `env` signals, by event ID. */
function hpmCounts(env: TestIommuEnv): Map<number, number> {
  const counts = new Map<number, number>();
  env.tr.addEventObserver({
    count: (id: number) => void counts.set(id, (counts.get(id) ?? 0) + 1),
  });
  return counts;
}

Deno.test("DDT cache geometry: in one set of two ways a third device evicts the DC used longest ago, whose next request walks the DDT again (HPM event 5)", () => {
  const env = testIommuEnv({}, 4, { ddt: { sets: 1, ways: 2 } });
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  for (const did of [1, 2, 3]) {
    env.ddt.set(did, { fsc: encodeAtp(SV39, pt.root), ta: encodeDcTa(did) });
  }
  const counts = hpmCounts(env);
  const walks = (did: number) => {
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).pa, DATA);
    return counts.get(RISCV_IOMMU_HPMEVENT_DD_WALK) ?? 0;
  };
  assert.deepEqual([walks(1), walks(2), walks(1)], [1, 2, 2]);
  assert.equal(walks(3), 3, "evicts the DC of device 2");
  assert.equal(walks(1), 3, "device 1's DC, used last, stayed");
  assert.equal(walks(2), 4, "device 2's DC is walked again");
});

Deno.test("DDT cache geometry: a DC lives in the set its device_id's low bits select", () => {
  const env = testIommuEnv({}, 4, { ddt: { sets: 2, ways: 1 } });
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  for (const did of [1, 2, 3]) {
    env.ddt.set(did, { fsc: encodeAtp(SV39, pt.root), ta: encodeDcTa(did) });
  }
  const counts = hpmCounts(env);
  const walks = (did: number) => {
    assert.equal(testTranslate(env.tr, testRequest(did, 0x1000)).pa, DATA);
    return counts.get(RISCV_IOMMU_HPMEVENT_DD_WALK) ?? 0;
  };
  assert.deepEqual([walks(1), walks(2), walks(3)], [1, 2, 3]);
  assert.equal(walks(2), 3, "device 2 (set 0) kept its DC");
  assert.equal(walks(1), 4, "device 3 took set 1 from device 1");
});

Deno.test("PDT cache geometry: in one set of two ways a third process evicts the PC used longest ago, whose next request walks the PDT again (HPM event 6)", () => {
  const env = testIommuEnv({}, 4, { pdt: { sets: 1, ways: 2 } });
  const pdt = new PdtBuilder(env.mem, env.alloc, PD8);
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  for (const pid of [1, 2, 3]) pdt.set(pid, encodePcTa(pid), encodeAtp(SV39, pt.root));
  env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: encodeAtp(PD8, pdt.root) });
  const counts = hpmCounts(env);
  const walks = (pid: number) => {
    const r = testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid }));
    assert.equal(r.pa, DATA);
    return counts.get(RISCV_IOMMU_HPMEVENT_PD_WALK) ?? 0;
  };
  assert.deepEqual([walks(1), walks(2), walks(1)], [1, 2, 2]);
  assert.equal(walks(3), 3, "evicts the PC of process 2");
  assert.equal(walks(1), 3, "process 1's PC, used last, stayed");
  assert.equal(walks(2), 4, "process 2's PC is walked again");
});

Deno.test("endianness: the DDT follows fctl.BE", () => {
  const env = testIommuEnv({ end: true });
  env.tr.fctlBE = true;
  const ddt = new DdtBuilder(env.mem, env.alloc, 4, true, true);
  env.tr.ddtpPpn = ddt.rootPn;
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39", true);
  pt.map(0x1000, DATA);
  ddt.set(0x4321, { tc: RISCV_IOMMU_DC_TC_SBE, fsc: encodeAtp(SV39, pt.root) });
  assert.equal(testTranslate(env.tr, testRequest(0x4321, 0x1000)).pa, DATA);
  env.tr.fctlBE = false;
  env.tr.invalDdt(false, 0);
  assert.equal(testTranslate(env.tr, testRequest(0x4321, 0x1000)).status, XLATE_FAULT);
});

// ---- Process directory ----

/** An env whose device 1 has a PDT of `mode`; PCs map IOVA 0x1000 through their own table. */
function pdtEnv(mode: number, tcExtra = 0, caps = {}) {
  const env = testIommuEnv(caps);
  const pdt = new PdtBuilder(env.mem, env.alloc, mode);
  env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_PDTV | tcExtra, fsc: encodeAtp(mode, pdt.root) });
  const pc = (pid: number, pa: number, ta = encodePcTa(pid + 1), flags = TEST_PTE_RW_USER) => {
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    pt.map(0x1000, pa, { flags });
    return pdt.set(pid, ta, encodeAtp(SV39, pt.root));
  };
  return { ...env, pdt, pc };
}

Deno.test("PD8/PD17/PD20: process_id resolves through PDI[2]/PDI[1]/PDI[0]", async (t) => {
  for (const [mode, pid] of [[PD8, 0xab], [PD17, 0x1_2345], [PD20, 0xf_edcb]]) {
    await t.step(`mode ${mode} pid ${pid.toString(16)}`, () => {
      const env = testIommuEnv();
      const root = env.alloc.pages();
      env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: encodeAtp(mode, root) });
      // Hand-built: PDI[2] = pid[19:17], PDI[1] = pid[16:8], PDI[0] = pid[7:0]; 16-byte PCs.
      let pn = root;
      if (mode === PD20) {
        const l1 = env.alloc.pages();
        testWrite64(env.mem, pn * 4096 + (pid >>> 17) * 8, BigInt(l1) << 10n | 1n);
        pn = l1;
      }
      if (mode >= PD17) {
        const l0 = env.alloc.pages();
        testWrite64(env.mem, pn * 4096 + ((pid >>> 8) & 0x1ff) * 8, BigInt(l0) << 10n | 1n);
        pn = l0;
      }
      const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
      pt.map(0x1000, DATA);
      testWrite64(env.mem, pn * 4096 + (pid & 0xff) * 16, encodePcTa(9));
      testWrite64(env.mem, pn * 4096 + (pid & 0xff) * 16 + 8, encodeAtp(SV39, pt.root));
      const r = testTranslate(env.tr, testRequest(1, 0x1004, { pidValid: true, pid }));
      assert.equal(r.status, XLATE_OK);
      assert.equal(r.pa, DATA + 4);
    });
  }
});

Deno.test("PDT faults: PDTE 265/269/266/267 and PC 266/267", async (t) => {
  const pid = 0x1_2345;
  const mk = () => {
    const env = pdtEnv(PD20);
    env.pc(pid, DATA);
    return env;
  };
  const run = (env: ReturnType<typeof mk>) =>
    testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid }));
  await t.step("PDTE load access fault → 265", () => {
    const env = mk();
    env.mem.injectFault(env.pdt.pdteAddr(pid, 2), 8);
    assert.equal(run(env).cause, 265);
  });
  await t.step("PDTE poison → 269", () => {
    const env = mk();
    env.mem.injectFault(env.pdt.pdteAddr(pid, 1), 8, MEM_POISON);
    assert.equal(run(env).cause, 269);
  });
  await t.step("PDTE V=0 → 266", () => {
    const env = mk();
    const a = env.pdt.pdteAddr(pid, 1);
    testWrite64(env.mem, a, env.mem.read64(a) & ~1n);
    assert.equal(run(env).cause, 266);
  });
  for (const bit of [3n, 60n]) {
    await t.step(`PDTE reserved bit ${bit} → 267`, () => {
      const env = mk();
      const a = env.pdt.pdteAddr(pid, 2);
      testWrite64(env.mem, a, env.mem.read64(a) | 1n << bit);
      assert.equal(run(env).cause, 267);
    });
  }
  await t.step("PC load access fault → 265", () => {
    const env = mk();
    env.mem.injectFault(env.pdt.pcAddr(pid) + 8, 8);
    assert.equal(run(env).cause, 265);
  });
  await t.step("PC poison → 269", () => {
    const env = mk();
    env.mem.injectFault(env.pdt.pcAddr(pid), 8, MEM_POISON);
    assert.equal(run(env).cause, 269);
  });
  await t.step("PC.ta.V=0 → 266", () => {
    const env = mk();
    const a = env.pdt.pcAddr(pid);
    testWrite64(env.mem, a, env.mem.read64(a) & ~1n);
    const r = run(env);
    assert.equal(r.cause, 266);
    assert.equal(r.reported, true);
  });
  const pcCases: [string, bigint, bigint][] = [
    ["PC.ta reserved bit 3", 1n << 3n, 0n],
    ["PC.ta reserved bit 40", 1n << 40n, 0n],
    ["PC.fsc reserved bit 50", 0n, 1n << 50n],
    ["PC.fsc MODE 1", 0n, (1n << 60n) ^ (8n << 60n)],
  ];
  for (const [name, taX, fscX] of pcCases) {
    await t.step(`${name} → 267`, () => {
      const env = mk();
      const a = env.pdt.pcAddr(pid);
      testWrite64(env.mem, a, env.mem.read64(a) | taX);
      testWrite64(env.mem, a + 8, env.mem.read64(a + 8) ^ fscX);
      assert.equal(run(env).cause, 267);
    });
  }
  await t.step("PC.fsc Sv48 without capabilities.Sv48 → 267", () => {
    const env = pdtEnv(PD8, 0, { sv48: false });
    env.pdt.set(5, encodePcTa(1), encodeAtp(SV48, 0x80000));
    assert.equal(
      testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 5 })).cause,
      267,
    );
  });
  await t.step("DTF=1 suppresses PDT fault records", () => {
    const env = pdtEnv(PD8, RISCV_IOMMU_DC_TC_DTF);
    const r = testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 5 }));
    assert.equal(r.cause, 266);
    assert.equal(r.reported, false);
  });
});

Deno.test("DPE: requests without a process_id use process_id 0 only when DPE=1", async (t) => {
  await t.step("DPE=1 → PC of process_id 0", () => {
    const env = pdtEnv(PD8, RISCV_IOMMU_DC_TC_DPE);
    env.pc(0, DATA);
    assert.equal(testTranslate(env.tr, testRequest(1, 0x1000)).pa, DATA);
  });
  await t.step("DPE=0 → first stage Bare (IOVA is the address)", () => {
    const env = pdtEnv(PD8);
    env.pc(0, DATA);
    assert.equal(testTranslate(env.tr, testRequest(1, 0x1000)).pa, 0x1000);
  });
  await t.step("pdtp.MODE Bare → first stage Bare", () => {
    const env = testIommuEnv();
    env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: 0n });
    assert.equal(
      testTranslate(env.tr, testRequest(1, 0x5000, { pidValid: true, pid: 3 })).pa,
      0x5000,
    );
  });
});

Deno.test("process_id 0 is a process_id, not the absence of one (QEMU conflates them)", async (t) => {
  await t.step("PDTV=0: a request with process_id 0 is disallowed (260)", () => {
    const env = sv39Env();
    assert.equal(testTranslate(env.tr, testRequest(0x2a, 0x1000)).pa, DATA);
    assert.equal(
      testTranslate(env.tr, testRequest(0x2a, 0x1000, { pidValid: true, pid: 0 })).cause,
      260,
    );
  });
  await t.step("PDTV=1, DPE=0: without a process_id the first stage is Bare; with 0, PC 0", () => {
    const env = pdtEnv(PD8);
    env.pc(0, DATA);
    assert.equal(testTranslate(env.tr, testRequest(1, 0x1000)).pa, 0x1000);
    assert.equal(
      testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 0 })).pa,
      DATA,
    );
  });
});

Deno.test("ENS and SUM: supervisor requests (PC.ta)", async (t) => {
  const mk = (ta: bigint, flags = TEST_PTE_RW_USER) => {
    const env = pdtEnv(PD8);
    env.pc(4, DATA, ta, flags);
    return env;
  };
  const sreq = (access: 0 | 1 | 2 = 0) =>
    testRequest(1, 0x1000, { pidValid: true, pid: 4, priv: true, access });
  await t.step("supervisor request with ENS=0 → 260", () => {
    const env = mk(encodePcTa(1));
    assert.equal(testTranslate(env.tr, sreq()).cause, 260);
  });
  await t.step("supervisor read of a U page with SUM=0 → 13", () => {
    const env = mk(encodePcTa(1, { ens: true }));
    assert.equal(testTranslate(env.tr, sreq()).cause, 13);
  });
  await t.step("supervisor read of a U page with SUM=1 succeeds", () => {
    const env = mk(encodePcTa(1, { ens: true, sum: true }));
    assert.equal(testTranslate(env.tr, sreq()).pa, DATA);
  });
  await t.step("supervisor exec of a U page faults even with SUM=1 (12)", () => {
    const env = mk(encodePcTa(1, { ens: true, sum: true }), TEST_PTE_RW_USER | 8);
    assert.equal(testTranslate(env.tr, sreq(2)).cause, 12);
  });
  await t.step("supervisor read of a non-U page succeeds; user read of it faults", () => {
    const env = mk(encodePcTa(1, { ens: true }), TEST_PTE_RW_USER & ~0x10);
    assert.equal(testTranslate(env.tr, sreq()).pa, DATA);
    const r = testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 4 }));
    assert.equal(r.cause, 13);
  });
});

Deno.test("PDT pointers are GPAs translated by the G stage; faults are guest-page faults", async (t) => {
  // G stage maps GPA page g + OFF → SPA page g for the PDT pages; the rest is identity.
  const OFF = 0x100000;
  const mk = () => {
    const env = testIommuEnv({});
    const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
    const pdt = new PdtBuilder(env.mem, env.alloc, PD17, false, (pn) => pn + OFF);
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    pt.map(0x1000, DATA);
    pdt.set(0x123, encodePcTa(1), encodeAtp(SV39, pt.root));
    for (const pn of pdt.pages) g.map((pn + OFF) * 4096, pn * 4096);
    for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
    g.map(DATA, DATA);
    env.ddt.set(1, {
      tc: RISCV_IOMMU_DC_TC_PDTV,
      fsc: encodeAtp(PD17, pdt.root),
      iohgatp: encodeIohgatp(8, 3, g.root),
    });
    return { ...env, g, pdt };
  };
  await t.step("translation succeeds through the G-stage-translated PDT", () => {
    const env = mk();
    assert.equal(
      testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 0x123 })).pa,
      DATA,
    );
  });
  await t.step("unmapped PDT page → guest-page fault, iotval2 = GPA with bit 0 (implicit)", () => {
    const env = mk();
    const leafPn = env.pdt.pages[1];
    const gpte = env.g.pteAddr((leafPn + OFF) * 4096, 0);
    env.g.write(gpte, 0n);
    const r = testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 0x123 }));
    assert.equal(r.cause, 21);
    assert.equal(r.iotval2, BigInt((leafPn + OFF) * 4096 + 0x23 * 16) | 1n);
  });
});

Deno.test("endianness: the PDT and PCs follow DC.tc.SBE, not fctl.BE (spec §2.10, Endianness of in-memory data structures)", async (t) => {
  // Device 1: a PD17 directory and a first-stage table of endianness `sbe`, DDT of `fctlBe`.
  const mk = (fctlBe: boolean, sbe: boolean, pdtBe = sbe) => {
    const env = testIommuEnv({ end: true });
    env.tr.fctlBE = fctlBe;
    const ddt = new DdtBuilder(env.mem, env.alloc, 4, true, fctlBe);
    env.tr.ddtpPpn = ddt.rootPn;
    const pdt = new PdtBuilder(env.mem, env.alloc, PD17, pdtBe);
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39", sbe);
    pt.map(0x1000, DATA);
    pdt.set(0x1_0203, encodePcTa(7), encodeAtp(SV39, pt.root));
    ddt.set(1, {
      tc: RISCV_IOMMU_DC_TC_PDTV | (sbe ? RISCV_IOMMU_DC_TC_SBE : 0),
      fsc: encodeAtp(PD17, pdt.root),
    });
    return testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 0x1_0203 }));
  };
  await t.step("SBE=1 under fctl.BE=0: big-endian PDT, PC and page table", () => {
    assert.equal(mk(false, true).pa, DATA);
  });
  await t.step("SBE=0 under fctl.BE=1: little-endian PDT, PC and page table", () => {
    assert.equal(mk(true, false).pa, DATA);
  });
  await t.step("a little-endian PDT read with SBE=1 is misread", () => {
    assert.equal(mk(false, true, false).status, XLATE_FAULT);
  });
});

Deno.test("PDT cache: INVAL_PDT drops one PC; INVAL_DDT(DV=1) drops the device's PCs", () => {
  const env = pdtEnv(PD8);
  env.tr.iotlbEnabled = false; // PCs keep their PSCIDs: only the PDT cache can be stale
  env.pc(1, DATA);
  env.pc(2, DATA);
  const r1 = () => testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 1 }));
  const r2 = () => testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 2 }));
  assert.equal(r1().pa, DATA);
  assert.equal(r2().pa, DATA);
  env.pc(1, DATA + 0x4000);
  env.pc(2, DATA + 0x4000);
  assert.equal(r1().pa, DATA, "stale PC");
  env.tr.invalPdt(1, 1);
  assert.equal(r1().pa, DATA + 0x4000);
  assert.equal(r2().pa, DATA, "PC of another process_id untouched");
  env.tr.invalPdt(2, 2);
  assert.equal(r2().pa, DATA, "INVAL_PDT of another device");
  env.tr.invalDdt(true, 1);
  assert.equal(r2().pa, DATA + 0x4000);
});

Deno.test("PDT cache never holds an invalid PC", () => {
  const env = pdtEnv(PD8);
  const a = env.pdt.set(9, 0n, 0n);
  assert.equal(
    testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 9 })).cause,
    266,
  );
  env.pc(9, DATA);
  assert.equal(env.mem.read64(a) & 1n, 1n);
  assert.equal(testTranslate(env.tr, testRequest(1, 0x1000, { pidValid: true, pid: 9 })).pa, DATA);
});

Deno.test("ATS requests: PDT not valid answers Success R=W=0; PDT load fault is logged", () => {
  const env = pdtEnv(PD8, RISCV_IOMMU_DC_TC_EN_ATS);
  const r = testTranslate(
    env.tr,
    testRequest(1, 0x1000, { pidValid: true, pid: 7, kind: REQ_ATS }),
  );
  assert.equal(r.status, XLATE_OK);
  assert.equal(r.perm, 0);
  assert.equal(r.reported, false);
  env.mem.injectFault(env.pdt.pcAddr(8), 16);
  const r2 = testTranslate(
    env.tr,
    testRequest(1, 0x1000, { pidValid: true, pid: 8, kind: REQ_ATS }),
  );
  assert.equal(r2.status, XLATE_FAULT);
  assert.equal(r2.cause, 265);
  assert.equal(r2.reported, true);
});

Deno.test("a cached DC is never used for a device_id too wide for the current ddtp mode", () => {
  const env = sv39Env({}, 4, 0x1000);
  assert.equal(testTranslate(env.tr, testRequest(0x1000, 0x1000)).pa, DATA);
  assert.equal(testTranslate(env.tr, testRequest(0x1000, 0x1000)).pa, DATA, "IOTLB hit");
  env.tr.ddtpMode = 2; // 1LVL: device_id must fit in 6 bits
  assert.equal(testTranslate(env.tr, testRequest(0x1000, 0x1000)).cause, 260);
});
