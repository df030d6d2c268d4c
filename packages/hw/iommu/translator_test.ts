import assert from "node:assert/strict";
import fc from "fast-check";
import { HPMEVENT_PDT_CACHE_HIT } from "./hpm_event.ts";
import {
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  encodePcTa,
  PageTableBuilder,
  PdtBuilder,
  TEST_PTE_RW_USER,
  TEST_RAM_BASE,
  type TestIommuEnv,
  testIommuEnv,
  testRequest,
  testTranslate,
  testWrite64,
} from "../testing.ts";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_WRITE,
  completionStatus,
  CPL_CA,
  CPL_UR,
  type InboundRequest,
  REQ_ATS,
  REQ_TRANSLATED,
  REQ_UNTRANSLATED,
  XLATE_FAULT,
  XLATE_OK,
} from "./request.ts";
import {
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_X,
  RISCV_IOMMU_DC_TC_DTF,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_DC_TC_SADE,
} from "./structs.ts";
import type { HpmEventSink } from "./hpm_event.ts";
import { Translator } from "./translator.ts";

const DATA = 0x9000_0000;

/** An HPM sink that records "event:did:pv/pid:gscv/gscid:pscv/pscid" strings. */
class Recorder implements HpmEventSink {
  events: string[] = [];
  count(
    id: number,
    did: number,
    pv: boolean,
    pid: number,
    gv: boolean,
    gscid: number,
    sv: boolean,
    pscid: number,
  ): void {
    this.events.push(
      `${id}:${did}:${pv ? pid : "-"}:${gv ? gscid : "-"}:${sv ? pscid : "-"}`,
    );
  }
}

Deno.test("HPM: the translator signals standard events 1–8 with their IDs", async (t) => {
  await t.step(
    "Untranslated miss: 1, DDT walk 5, TLB miss 4, first-stage walk 7; hit: 1 only",
    () => {
      const env = testIommuEnv();
      const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
      pt.map(0x1000, DATA);
      env.ddt.set(9, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(33) });
      const hpm = new Recorder();
      env.tr.addEventObserver(hpm);
      testTranslate(env.tr, testRequest(9, 0x1000));
      assert.deepEqual(hpm.events, ["1:9:-:-:-", "5:9:-:-:-", "4:9:-:-:33", "7:9:-:-:33"]);
      hpm.events = [];
      testTranslate(env.tr, testRequest(9, 0x1000));
      assert.deepEqual(hpm.events, ["1:9:-:-:-"]);
      env.tr.removeEventObserver(hpm);
      testTranslate(env.tr, testRequest(9, 0x2000));
      assert.deepEqual(hpm.events, ["1:9:-:-:-"]);
    },
  );
  await t.step("PDT walk 6 and G-stage walks 8 (one per G-stage translation)", () => {
    const env = testIommuEnv({});
    const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
    const pdt = new PdtBuilder(env.mem, env.alloc, 1);
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    pt.map(0x1000, DATA);
    pdt.set(4, encodePcTa(77), encodeAtp(8, pt.root));
    for (const pn of [...pdt.pages, ...pt.pages]) g.map(pn * 4096, pn * 4096);
    g.map(DATA, DATA);
    env.ddt.set(2, {
      tc: RISCV_IOMMU_DC_TC_PDTV,
      fsc: encodeAtp(1, pdt.root),
      iohgatp: encodeIohgatp(8, 12, g.root),
    });
    const hpm = new Recorder();
    env.tr.addEventObserver(hpm);
    testTranslate(env.tr, testRequest(2, 0x1000, { pidValid: true, pid: 4 }));
    assert.deepEqual(hpm.events, [
      "1:2:4:-:-",
      "5:2:4:-:-",
      "6:2:4:-:-",
      "8:2:4:12:-", // the PC's G-stage translation, before a PSCID is known

      "4:2:4:12:77",
      "7:2:4:12:77",
      "8:2:4:12:77", // three first-stage PTE reads
      "8:2:4:12:77",
      "8:2:4:12:77",
      "8:2:4:12:77", // the GPA
    ]);
    hpm.events = [];
    testTranslate(env.tr, testRequest(2, 0x1000, { pidValid: true, pid: 4 }));
    assert.deepEqual(
      hpm.events,
      ["1:2:4:-:-", `${HPMEVENT_PDT_CACHE_HIT}:2:4:-:-`],
      "PDT-cache hit",
    );
  });
  await t.step("Translated requests count 2, ATS translation requests 3", () => {
    const env = testIommuEnv();
    env.ddt.set(3, { tc: RISCV_IOMMU_DC_TC_EN_ATS });
    const hpm = new Recorder();
    env.tr.addEventObserver(hpm);
    testTranslate(env.tr, testRequest(3, 0x1000, { kind: REQ_TRANSLATED }));
    testTranslate(env.tr, testRequest(3, 0x1000, { kind: REQ_ATS }));
    assert.deepEqual(hpm.events.filter((e) => !e.startsWith("5:")), ["2:3:-:-:-", "3:3:-:-:-"]);
  });
});

/** Device 1 with EN_ATS and an Sv39 table; `flags` of the leaf at 0x1000. */
function atsEnv(flags: number, tc = 0, caps = {}) {
  const env = testIommuEnv(caps);
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  const leaf = pt.map(0x1000, DATA, { flags });
  env.ddt.set(1, {
    tc: RISCV_IOMMU_DC_TC_EN_ATS | tc,
    fsc: encodeAtp(8, pt.root),
    ta: encodeDcTa(1),
  });
  /** An ATS translation request for 0x1000; NW=1 (read only) unless `init` says otherwise. */
  const ats = (init: Partial<InboundRequest> = {}) =>
    testTranslate(env.tr, testRequest(1, 0x1000, { kind: REQ_ATS, noWrite: true, ...init }));
  return { ...env, pt, leaf, ats };
}

/** `env` with its table moved behind process_id 5 (PDTV, PD8; PC.ta.ENS and SUM as given). */
function withPasid<E extends ReturnType<typeof atsEnv>>(
  env: E,
  pc: { ens?: boolean; sum?: boolean } = {},
): E {
  const pdt = new PdtBuilder(env.mem, env.alloc, 1);
  pdt.set(5, encodePcTa(3, pc), encodeAtp(8, env.pt.root));
  env.ddt.set(1, {
    tc: RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_PDTV,
    fsc: encodeAtp(1, pdt.root),
  });
  env.tr.invalDdt(true, 1);
  return env;
}

Deno.test("ATS translation requests: completion outcomes of spec §2.6, PCIe ATS translation request handling", async (t) => {
  await t.step("Success with the permissions the tables grant", () => {
    const env = atsEnv(TEST_PTE_RW_USER);
    const r = env.ats({ noWrite: false });
    assert.equal(r.status, XLATE_OK);
    assert.equal(r.pa, DATA);
    assert.equal(r.perm, 3);
    assert.equal(r.reported, false);
  });
  await t.step("read-only page asked for write: W=0 in the completion, no fault", () => {
    const env = atsEnv(PTE_V | PTE_R | PTE_U | PTE_A);
    const r = env.ats({ noWrite: false });
    assert.equal(r.status, XLATE_OK);
    assert.equal(r.perm, 1);
    assert.equal(r.reported, false);
  });
  await t.step("NW=1 (read asked): W not granted even on a writable page", () => {
    assert.equal(atsEnv(TEST_PTE_RW_USER).ats().perm, 1);
  });
  await t.step("X only when execute is requested (with a PASID) and only with R", () => {
    const er = { execReq: true, pidValid: true, pid: 5 };
    assert.equal(
      withPasid(atsEnv(TEST_PTE_RW_USER | PTE_X)).ats({ pidValid: true, pid: 5 }).perm,
      1,
    );
    assert.equal(withPasid(atsEnv(TEST_PTE_RW_USER | PTE_X)).ats(er).perm, 5);
    assert.equal(withPasid(atsEnv(PTE_V | PTE_X | PTE_U | PTE_A)).ats(er).perm, 0);
  });
  await t.step("page faults (V=0, U mismatch, A=0 without SADE): Success R=W=0, not logged", () => {
    for (const flags of [0, TEST_PTE_RW_USER & ~PTE_U, TEST_PTE_RW_USER & ~PTE_A]) {
      const r = atsEnv(flags).ats({ noWrite: false });
      assert.equal(r.status, XLATE_OK, `flags ${flags}`);
      assert.equal(r.perm, 0);
      assert.equal(r.reported, false);
    }
  });
  await t.step("write asked on a clean page: SADE sets D and grants W", () => {
    const env = atsEnv(TEST_PTE_RW_USER & ~PTE_D, RISCV_IOMMU_DC_TC_SADE);
    assert.equal(env.ats({ noWrite: false }).perm, 3);
    assert.equal(env.pt.read(env.leaf) & BigInt(PTE_D), BigInt(PTE_D));
  });
  await t.step("PTE access fault: Completer Abort (fault, logged)", () => {
    const env = atsEnv(TEST_PTE_RW_USER);
    env.mem.injectFault(env.leaf, 8);
    const r = env.ats();
    assert.equal(r.status, XLATE_FAULT);
    assert.equal(r.cause, 5);
    assert.equal(r.ttyp, 8);
    assert.equal(r.reported, true);
    assert.equal(r.completion, CPL_CA);
  });
  await t.step("DDT faults: Unsupported Request (fault, logged)", () => {
    const env = atsEnv(TEST_PTE_RW_USER);
    const r = testTranslate(env.tr, testRequest(2, 0x1000, { kind: REQ_ATS }));
    assert.equal(r.status, XLATE_FAULT);
    assert.equal(r.cause, 258);
    assert.equal(r.reported, true);
    assert.equal(r.completion, CPL_UR);
  });
  await t.step("ATS requests do not fill the IOTLB", () => {
    const env = atsEnv(TEST_PTE_RW_USER);
    env.ats();
    assert.equal(env.tr.iotlbSize, 0);
  });
  await t.step("Global only with a PASID and a global first-stage leaf", () => {
    const env = atsEnv(TEST_PTE_RW_USER | PTE_G);
    for (const l of [1, 2]) {
      const a = env.pt.pteAddr(0x1000, l);
      env.pt.write(a, env.pt.read(a) | BigInt(PTE_G));
    }
    assert.equal(env.ats().global, false, "no PASID");
    assert.equal(withPasid(env).ats({ pidValid: true, pid: 5 }).global, true);
  });
});

Deno.test("an ATS translation request between Untranslated requests of a device leaves them checked as Untranslated", () => {
  // Read-only page; with the IOTLB off every request walks, the Untranslated ones through the
  // fast path's walker state, the ATS one through the whole process (which reports, not checks).
  const env = atsEnv(PTE_V | PTE_R | PTE_U | PTE_A);
  env.tr.iotlbEnabled = false;
  const untranslated = (access: typeof ACC_READ | typeof ACC_WRITE) =>
    testTranslate(env.tr, testRequest(1, 0x1000, { access }));
  assert.equal(untranslated(ACC_READ).status, XLATE_OK);
  assert.equal(untranslated(ACC_READ).status, XLATE_OK);
  assert.equal(env.ats({ noWrite: false }).perm, 1);
  const w = untranslated(ACC_WRITE);
  assert.equal(w.status, XLATE_FAULT);
  assert.equal(w.cause, 15, "store page fault");
});

Deno.test("completion status: configuration errors and access faults are Completer Abort, 256–260 Unsupported Request (spec §2.6, PCIe ATS translation request handling; chapter 6, Aborting transactions)", async (t) => {
  await t.step(
    "the table: CA for 1/5/7/261/263/265/267 and the data corruptions, UR for 256–260",
    () => {
      for (const c of [1, 5, 7, 261, 263, 265, 267, 268, 269, 270, 271, 272, 274]) {
        assert.equal(completionStatus(c), CPL_CA, `cause ${c}`);
      }
      for (const c of [256, 257, 258, 259, 260, 12, 13, 15, 20, 21, 23, 262, 266]) {
        assert.equal(completionStatus(c), CPL_UR, `cause ${c}`);
      }
    },
  );
  await t.step("translations carry it: Off 256, Bare ATS 260, EN_ATS=0 260 are UR", () => {
    const env = atsEnv(TEST_PTE_RW_USER);
    env.ddt.set(2, { fsc: encodeAtp(8, env.pt.root) });
    const ur = (r: ReturnType<typeof testTranslate>, cause: number) => {
      assert.deepEqual([r.status, r.cause, r.completion], [XLATE_FAULT, cause, CPL_UR]);
    };
    ur(testTranslate(env.tr, testRequest(2, 0x1000, { kind: REQ_ATS })), 260);
    ur(testTranslate(env.tr, testRequest(2, 0x1000, { kind: REQ_TRANSLATED })), 260);
    env.tr.ddtpMode = 1;
    ur(testTranslate(env.tr, testRequest(1, 0x1000, { kind: REQ_ATS })), 260);
    env.tr.ddtpMode = 0;
    ur(testTranslate(env.tr, testRequest(1, 0x1000)), 256);
  });
  await t.step(
    "an Untranslated read of an unmapped page is UR, of a PTE that faults on load CA",
    () => {
      const env = atsEnv(TEST_PTE_RW_USER);
      const miss = testTranslate(env.tr, testRequest(1, 0x5000));
      assert.deepEqual([miss.cause, miss.completion], [13, CPL_UR]);
      env.mem.injectFault(env.leaf, 8);
      const bad = testTranslate(env.tr, testRequest(1, 0x1000));
      assert.deepEqual([bad.cause, bad.completion], [5, CPL_CA]);
    },
  );
});

Deno.test("ATS translation requests carry No-Write and Execute-Requested independently (PCIe ATS; spec 2.6)", async (t) => {
  const rwx = TEST_PTE_RW_USER | PTE_X;
  const pasid = { pidValid: true, pid: 5 };
  for (
    const [what, init, perm] of [
      ["NW=1, ER=0: R", { noWrite: true }, 1],
      ["NW=0, ER=0: R W", { noWrite: false }, 3],
      ["NW=1, ER=1: R X", { noWrite: true, execReq: true }, 5],
      [
        "NW=0, ER=1: R W X, which one access type could not say",
        { noWrite: false, execReq: true },
        7,
      ],
    ] as const
  ) {
    await t.step(what, () => {
      assert.equal(withPasid(atsEnv(rwx)).ats({ ...pasid, ...init }).perm, perm);
    });
  }
  await t.step("ER without a PASID asks for nothing (PCIe carries ER in the PASID prefix)", () => {
    assert.equal(atsEnv(rwx).ats({ noWrite: false, execReq: true }).perm, 3);
  });
  await t.step(
    "a privileged request with SUM gets R W of a U page, never X (S mode never executes user pages)",
    () => {
      const env = withPasid(atsEnv(rwx), { ens: true, sum: true });
      assert.equal(env.ats({ ...pasid, priv: true, noWrite: false, execReq: true }).perm, 3);
    },
  );
  await t.step("NW=0 on a clean writable page with SADE sets D; NW=1 leaves it clean", () => {
    const env = atsEnv(TEST_PTE_RW_USER & ~PTE_D, RISCV_IOMMU_DC_TC_SADE);
    assert.equal(env.ats({ noWrite: true }).perm, 1);
    assert.equal(env.pt.read(env.leaf) & BigInt(PTE_D), 0n);
    assert.equal(env.ats({ noWrite: false }).perm, 3);
    assert.equal(env.pt.read(env.leaf) & BigInt(PTE_D), BigInt(PTE_D));
  });
});

Deno.test("ATS translation request faults: TTYP 8, and implicit-access faults are read access faults (cause 5) whatever NW and ER say", async (t) => {
  const pasid = { pidValid: true, pid: 5 };
  for (
    const [what, init] of [
      ["NW=1", { noWrite: true }],
      ["NW=0", { noWrite: false }],
      ["NW=0, ER=1", { noWrite: false, execReq: true, ...pasid }],
    ] as const
  ) {
    await t.step(`a first-stage PTE load access fault, ${what}`, () => {
      const env = withPasid(atsEnv(TEST_PTE_RW_USER | PTE_X));
      env.mem.injectFault(env.leaf, 8);
      const r = env.ats({ ...pasid, ...init });
      assert.deepEqual([r.status, r.cause, r.ttyp, r.reported], [XLATE_FAULT, 5, 8, true]);
    });
  }
  await t.step(
    "a G-stage PTE load access fault on the implicit read of a first-stage table, NW=0",
    () => {
      const env = testIommuEnv();
      const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
      const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
      pt.map(0x1000, 0x7000_0000);
      for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
      g.map(0x7000_0000, DATA);
      env.ddt.set(1, {
        tc: RISCV_IOMMU_DC_TC_EN_ATS,
        iohgatp: encodeIohgatp(8, 1, g.root),
        fsc: encodeAtp(8, pt.root),
        ta: encodeDcTa(1),
      });
      env.mem.injectFault(g.pteAddr(pt.root * 4096, 0), 8);
      const r = testTranslate(env.tr, testRequest(1, 0x1000, { kind: REQ_ATS, noWrite: false }));
      assert.deepEqual([r.status, r.cause, r.ttyp, r.reported], [XLATE_FAULT, 5, 8, true]);
    },
  );
});

Deno.test("ATS Global bit: the effective G is the OR along the first-stage walk, a G=1 non-leaf PTE makes every mapping below it global", async (t) => {
  for (
    const [what, leafG, nonLeafLevels, global] of [
      ["no PTE says G", false, [], false],
      ["the leaf alone says G", true, [], true],
      ["the root (level 2) alone says G", false, [2], true],
      ["a level-1 PTE alone says G", false, [1], true],
    ] as const
  ) {
    await t.step(what, () => {
      const env = atsEnv(TEST_PTE_RW_USER | (leafG ? PTE_G : 0));
      for (const l of nonLeafLevels) {
        const a = env.pt.pteAddr(0x1000, l);
        env.pt.write(a, env.pt.read(a) | BigInt(PTE_G));
      }
      assert.equal(withPasid(env).ats({ pidValid: true, pid: 5 }).global, global);
    });
  }
});

Deno.test("fault records: TTYP, iotval, iotval2 and DTF suppression", async (t) => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  env.ddt.set(2, { tc: RISCV_IOMMU_DC_TC_DTF, fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  env.ddt.set(3, { tc: RISCV_IOMMU_DC_TC_DTF | 1 << 13, fsc: encodeAtp(8, pt.root) });
  await t.step("page fault record: TTYP 2/3/1 by access, iotval = IOVA, iotval2 = 0", () => {
    const iova = 0xffff_ffff_8000_1234n;
    for (
      const [access, ttyp, cause] of [[ACC_READ, 2, 13], [ACC_WRITE, 3, 15], [ACC_EXEC, 1, 12]]
    ) {
      const r = testTranslate(env.tr, testRequest(1, iova, { access: access as 0 | 1 | 2 }));
      assert.equal(r.cause, cause);
      assert.equal(r.ttyp, ttyp);
      assert.equal(r.iotval, iova);
      assert.equal(r.iotval2, 0n);
      assert.equal(r.reported, true);
    }
  });
  await t.step("DTF=1 suppresses translation faults", () => {
    const r = testTranslate(env.tr, testRequest(2, 0x1000));
    assert.equal(r.cause, 13);
    assert.equal(r.reported, false);
  });
  await t.step("a misconfigured DC is reported even with DTF set (DTF taken as 0)", () => {
    const r = testTranslate(env.tr, testRequest(3, 0x1000));
    assert.equal(r.cause, 259);
    assert.equal(r.reported, true);
  });
});

/** Translates `requests` in order with `env.tr` and with a twin that never uses an IOTLB:
 * every answer must be the same. */
function agree(env: TestIommuEnv, requests: InboundRequest[]): void {
  const walker = new Translator(env.mem, env.caps);
  walker.ddtpMode = env.tr.ddtpMode;
  walker.ddtpPpn = env.tr.ddtpPpn;
  walker.iotlbEnabled = false;
  for (const r of requests) {
    const a = testTranslate(env.tr, r), b = testTranslate(walker, r);
    assert.deepEqual(
      [a.status, a.pa, a.perm, a.size, a.cause],
      [b.status, b.pa, b.perm, b.size, b.cause],
    );
  }
}

Deno.test("the fast (IOTLB hit) path and the walk agree on every translation (property)", () => {
  const runs = Number(Deno.env.get("IOMMU_XLATE_PROP_RUNS") ?? 30);
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          page: fc.integer({ min: 0, max: 4095 }),
          level: fc.constantFrom(0, 0, 0, 1),
          flags: fc.constantFrom(
            TEST_PTE_RW_USER,
            PTE_V | PTE_R | PTE_U | PTE_A,
            TEST_PTE_RW_USER | PTE_X,
            0,
          ),
        }),
        { minLength: 4, maxLength: 40 },
      ),
      fc.array(
        fc.record({
          page: fc.integer({ min: 0, max: 4095 }),
          off: fc.integer({ min: 0, max: 4095 }),
          access: fc.constantFrom(ACC_READ, ACC_WRITE, ACC_EXEC),
        }),
        { minLength: 100, maxLength: 200 },
      ),
      (maps, reqs) => {
        const env = testIommuEnv({}, 4, { iotlb: { sets: 16, ways: 4 } });
        const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
        for (const m of maps) {
          const va = m.level === 1 ? (m.page & ~511) * 4096 : m.page * 4096;
          pt.map(va, DATA + (m.level === 1 ? 0 : m.page * 4096), {
            level: m.level,
            flags: m.flags,
          });
        }
        env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
        agree(
          env,
          reqs.map((q) => testRequest(1, q.page * 4096 + q.off, { access: q.access as 0 | 1 | 2 })),
        );
      },
    ),
    { numRuns: runs },
  );
});

Deno.test("IOTLB hits and walks agree with process contexts, privilege, SUM and a G stage (property)", () => {
  const runs = Number(Deno.env.get("IOMMU_XLATE_PROP_RUNS") ?? 30);
  const GPA = 0x1_0000_0000;
  const leaf = fc.constantFrom(
    TEST_PTE_RW_USER,
    TEST_PTE_RW_USER & ~PTE_U,
    PTE_V | PTE_R | PTE_U | PTE_A,
    TEST_PTE_RW_USER | PTE_X,
    (TEST_PTE_RW_USER | PTE_X) & ~PTE_U,
    0,
  );
  const gLeaf = fc.constantFrom(
    TEST_PTE_RW_USER,
    PTE_V | PTE_R | PTE_U | PTE_A,
    TEST_PTE_RW_USER | PTE_X,
    0,
  );
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.record({ page: fc.nat(7), flags: leaf, gFlags: gLeaf }), {
        minLength: 4,
        maxLength: 16,
      }),
      fc.array(
        fc.record({
          page: fc.nat(7),
          off: fc.nat(4095),
          access: fc.constantFrom(ACC_READ, ACC_WRITE, ACC_EXEC),
          pid: fc.constantFrom(null, 1, 2, 3),
          priv: fc.boolean(),
        }),
        { minLength: 100, maxLength: 200 },
      ),
      (gOn, maps, reqs) => {
        const env = testIommuEnv({}, 4, { iotlb: { sets: 16, ways: 4 } });
        const g = gOn ? new PageTableBuilder(env.mem, env.alloc, "sv39x4") : null;
        const pdt = new PdtBuilder(env.mem, env.alloc, 1);
        const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
        for (const m of maps) {
          pt.map(m.page * 4096, GPA + m.page * 4096, { flags: m.flags });
          g?.map(GPA + m.page * 4096, DATA + m.page * 4096, { flags: m.gFlags });
          g?.map(m.page * 4096, DATA + m.page * 4096, { flags: m.gFlags }); // no process_id
        }
        // PCs 1 and 2 share PSCID 5 (and so IOTLB entries), only 2 with SUM; 3 lacks ENS.
        pdt.set(1, encodePcTa(5, { ens: true }), encodeAtp(8, pt.root));
        pdt.set(2, encodePcTa(5, { ens: true, sum: true }), encodeAtp(8, pt.root));
        pdt.set(3, encodePcTa(6), encodeAtp(8, pt.root));
        for (const pn of [...pdt.pages, ...pt.pages]) g?.map(pn * 4096, pn * 4096);
        env.ddt.set(1, {
          tc: RISCV_IOMMU_DC_TC_PDTV,
          fsc: encodeAtp(1, pdt.root),
          iohgatp: g === null ? 0n : encodeIohgatp(8, 2, g.root),
        });
        agree(
          env,
          reqs.map((q) =>
            testRequest(1, q.page * 4096 + q.off, {
              access: q.access as 0 | 1 | 2,
              pidValid: q.pid !== null,
              pid: q.pid ?? 0,
              priv: q.priv,
            })
          ),
        );
      },
    ),
    { numRuns: runs },
  );
});

Deno.test("IOTLB hits agree with walks, deterministically: the cases the two properties above draw only sometimes", async (t) => {
  await t.step("a superpage leaf, a read-only page, an execute-only request, a hole", () => {
    const env = testIommuEnv({}, 4, { iotlb: { sets: 16, ways: 4 } });
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    pt.map(0x20_0000, DATA, { level: 1 });
    pt.map(0x1000, DATA + 0x1000, { flags: PTE_V | PTE_R | PTE_U | PTE_A });
    pt.map(0x2000, DATA + 0x2000, { flags: TEST_PTE_RW_USER | PTE_X });
    env.ddt.set(1, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
    const req = (va: number, access: 0 | 1 | 2) => testRequest(1, va, { access });
    agree(env, [
      req(0x20_1234, ACC_READ), // fills the 2 MiB entry
      req(0x3f_f000, ACC_WRITE), // another page of it, from the same entry
      req(0x1000, ACC_READ),
      req(0x1000, ACC_WRITE), // cached read-only: the hit must fault as the walk does
      req(0x2000, ACC_EXEC),
      req(0x20_0000, ACC_EXEC), // no X on the superpage
      req(0x3000, ACC_READ), // a hole
    ]);
  });
  await t.step(
    "privilege and SUM: a user read cached for PSCID 5 serves no supervisor read without SUM",
    () => {
      const env = testIommuEnv({}, 4, { iotlb: { sets: 16, ways: 4 } });
      const pdt = new PdtBuilder(env.mem, env.alloc, 1);
      const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
      pt.map(0x1000, DATA, { flags: TEST_PTE_RW_USER | PTE_X });
      pt.map(0x2000, DATA + 0x1000, { flags: (TEST_PTE_RW_USER | PTE_X) & ~PTE_U });
      pdt.set(1, encodePcTa(5, { ens: true }), encodeAtp(8, pt.root));
      pdt.set(2, encodePcTa(5, { ens: true, sum: true }), encodeAtp(8, pt.root));
      env.ddt.set(1, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: encodeAtp(1, pdt.root) });
      const req = (va: number, pid: number, priv: boolean, access: 0 | 1 | 2 = ACC_READ) =>
        testRequest(1, va, { pidValid: true, pid, priv, access });
      agree(env, [
        req(0x1000, 1, false), // user read: fills the entry of PSCID 5
        req(0x1000, 1, true), // supervisor, no SUM: faults
        req(0x1000, 2, true), // supervisor with SUM: allowed
        req(0x1000, 2, true, ACC_EXEC), // never executes a U page
        req(0x2000, 1, true, ACC_EXEC), // a supervisor page
        req(0x2000, 1, false), // the user may not touch it
      ]);
    },
  );
  await t.step(
    "4 KiB first-stage pages over a G-stage superpage, and a G-stage read-only page",
    () => {
      const env = testIommuEnv({}, 4, { iotlb: { sets: 16, ways: 4 } });
      const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
      const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
      const GPA = 0x1000_0000;
      pt.map(0x1000, GPA + 0x5000);
      pt.map(0x2000, GPA + 0x1000);
      pt.map(0x3000, GPA + 0x20_0000);
      for (const pn of pt.pages) g.map(pn * 4096, pn * 4096);
      g.map(GPA, DATA, { level: 1 });
      g.map(GPA + 0x20_0000, DATA + 0x20_0000, { flags: PTE_V | PTE_R | PTE_U | PTE_A });
      env.ddt.set(1, {
        fsc: encodeAtp(8, pt.root),
        ta: encodeDcTa(1),
        iohgatp: encodeIohgatp(8, 2, g.root),
      });
      const req = (va: number, access: 0 | 1 | 2) => testRequest(1, va, { access });
      agree(env, [
        req(0x1010, ACC_READ),
        req(0x2010, ACC_READ), // the same G-stage leaf, another first-stage page
        req(0x1010, ACC_WRITE),
        req(0x3000, ACC_READ),
        req(0x3000, ACC_WRITE), // read-only in the G stage
      ]);
    },
  );
});

Deno.test("garbage in every in-memory structure never throws (property)", () => {
  const runs = Number(Deno.env.get("IOMMU_XLATE_FUZZ_RUNS") ?? 60);
  const word = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  fc.assert(
    fc.property(
      fc.array(word, { minLength: 64, maxLength: 64 }),
      fc.array(
        fc.record({
          did: fc.integer({ min: 0, max: 3 }),
          iova: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
          kind: fc.constantFrom(REQ_UNTRANSLATED, REQ_TRANSLATED, REQ_ATS),
          access: fc.constantFrom(ACC_READ, ACC_WRITE, ACC_EXEC),
          pidValid: fc.boolean(),
          pid: fc.integer({ min: 0, max: 0xfffff }),
          priv: fc.boolean(),
          debug: fc.boolean(),
        }),
        { minLength: 1, maxLength: 20 },
      ),
      fc.boolean(),
      (words, reqs, small) => {
        const env = testIommuEnv({ t2gpa: true, end: true, sv32: true, sv32x4: true, s: true }, 2);
        // Page 0 of RAM holds the DDT; pages 1.. hold the random words, which also point at
        // each other (PPNs of RAM pages) often enough to reach deep into every structure.
        const base = TEST_RAM_BASE / 4096;
        env.tr.ddtpPpn = base;
        words.forEach((w, i) => {
          const ptrish = (w & 0xf_0000_0000_03ffn) | BigInt(base + (i % 8)) << 10n;
          const v = small ? ptrish : w;
          testWrite64(env.mem, TEST_RAM_BASE + i * 8, v);
          testWrite64(env.mem, TEST_RAM_BASE + 4096 * (1 + (i % 7)) + 8 * i, v);
        });
        for (const q of reqs) {
          const r = testRequest(q.did, q.iova, { ...q, kind: q.kind as 0 | 1 | 2 });
          const res = testTranslate(env.tr, r);
          assert.ok([0, 1, 2].includes(res.status));
          if (res.status === XLATE_FAULT) assert.ok(res.cause > 0 && res.cause < 275);
        }
        env.tr.iotinvalVma(true, true, false, 1, 0, 0x1000, 0, true, true);
        env.tr.iotinvalGvma(false, false, 0, 0, 0, false, false);
      },
    ),
    { numRuns: runs },
  );
});

Deno.test("fctlBE and fctlGXL read back what was set", () => {
  const env = testIommuEnv({ end: true, sv32x4: true });
  env.tr.fctlBE = true;
  env.tr.fctlGXL = true;
  assert.equal(env.tr.fctlBE, true);
  assert.equal(env.tr.fctlGXL, true);
});

Deno.test("event observers: each one receives every event, in order, until removed", () => {
  const env = testIommuEnv();
  const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
  pt.map(0x1000, DATA);
  env.ddt.set(9, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(33) });
  const a = new Recorder(), b = new Recorder(), seen: string[] = [];
  env.tr.addEventObserver(a);
  env.tr.addEventObserver(b);
  env.tr.addEventObserver(a); // once only
  env.tr.addEventObserver({
    count: (id) => void seen.push(`a${a.events.length}b${b.events.length}:${id}`),
  });
  assert.equal(env.tr.eventObservers.length, 3);
  testTranslate(env.tr, testRequest(9, 0x1000));
  const all = ["1:9:-:-:-", "5:9:-:-:-", "4:9:-:-:33", "7:9:-:-:33"];
  assert.deepEqual([a.events, b.events], [all, all]);
  assert.deepEqual(seen, ["a1b1:1", "a2b2:5", "a3b3:4", "a4b4:7"], "in the order added");
  env.tr.removeEventObserver(a);
  env.tr.removeEventObserver(a); // no-op
  testTranslate(env.tr, testRequest(9, 0x1000));
  assert.deepEqual([a.events.length, b.events.length], [4, 5]);
});

Deno.test("invalidation listeners hear every IODIR and IOTINVAL the translator's caches get", () => {
  const env = testIommuEnv();
  let heard = 0;
  env.tr.addInvalidationListener(() => heard++);
  env.tr.invalDdt(true, 1);
  env.tr.invalPdt(1, 2);
  env.tr.iotinvalVma(false, true, false, 0, 0, 0x1000, 0, false, false);
  env.tr.iotinvalGvma(true, false, 3, 0, 0, false, false);
  env.tr.flushAll();
  assert.equal(heard, 5);
});
