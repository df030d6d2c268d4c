import assert from "node:assert/strict";
import { MEM_POISON } from "../memory.ts";
import type { IommuCaps } from "./caps.ts";
import {
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  PageTableBuilder,
  testIommuEnv,
  testRequest,
  testTranslate,
  testWrite64,
} from "../testing.ts";
import { extractBits } from "./msi.ts";
import { ACC_EXEC, ACC_WRITE, REQ_ATS, XLATE_ABSORBED, XLATE_FAULT, XLATE_OK } from "./request.ts";
import {
  RISCV_IOMMU_DC_TC_DTF,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_SBE,
} from "./structs.ts";

/** Guest interrupt files: GPA pages 0x2800_0 + n (n = 0..7, mask bits 0..2) and 0x2801_0 + n. */
const MASK = 0x17n; // bits 0, 1, 2 and 4 → 16 files, non-contiguous
const PATTERN = 0x28000n;
const IMSIC = 0x2800_0000;
const DATA = 0x9000_0000;

function basicPte(ppn: number): [bigint, bigint] {
  return [BigInt(ppn) << 10n | 3n << 1n | 1n, 0n];
}

function mrifPte(mrif: number, nppn: number, nid: number): [bigint, bigint] {
  return [
    BigInt(mrif / 512) << 7n | 1n << 1n | 1n,
    BigInt(nppn) << 10n | BigInt(nid & 0x3ff) | BigInt(nid >> 10) << 60n,
  ];
}

/**
 * Device 1 with an identity G stage over [0, 4 GiB) in 1 GiB leaves and an MSI page table;
 * `fs` adds a first stage mapping IOVA 0x5000 to the MSI GPA 0x2800_3000.
 */
function msiEnv(caps: Partial<IommuCaps> = {}, opts: { fs?: boolean; tc?: number } = {}) {
  const env = testIommuEnv(caps);
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  for (let gb = 0; gb < 4; gb++) g.map(gb * 2 ** 30, gb * 2 ** 30, { level: 2 });
  const msiPt = env.alloc.pages();
  let fsc = 0n;
  if (opts.fs) {
    const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
    pt.map(0x5000, IMSIC + 0x3000);
    pt.map(0x6000, DATA);
    fsc = encodeAtp(8, pt.root);
  }
  env.ddt.set(1, {
    tc: opts.tc ?? 0,
    iohgatp: encodeIohgatp(8, 4, g.root),
    fsc,
    ta: encodeDcTa(3),
    msiptp: encodeAtp(1, msiPt),
    msiMask: MASK,
    msiPattern: PATTERN,
  });
  const setPte = (file: number, [w0, w1]: [bigint, bigint]) => {
    testWrite64(env.mem, msiPt * 4096 + file * 16, w0);
    testWrite64(env.mem, msiPt * 4096 + file * 16 + 8, w1);
    return msiPt * 4096 + file * 16;
  };
  return { ...env, g, msiPt, setPte };
}

const msiWrite = (gpa: number, data: number, init = {}) =>
  testRequest(1, gpa, { access: ACC_WRITE, data, len: 4, ...init });

Deno.test("extractBits packs the masked bits towards bit 0 (the spec's example)", () => {
  // x = a b c d e f g h, y = 1 0 1 0 0 1 1 0 → 0 0 0 0 a c f g.
  const x = 0b1011_0101, y = 0b1010_0110;
  assert.equal(extractBits(x, y, 0), 0b1110);
  assert.equal(extractBits(0xffff_ffff, 0, 0), 0);
  assert.equal(extractBits(2 ** 51 + 1, 1, 1 << 19), 3);
  assert.equal(extractBits(0x12345 * 2 ** 20 + 0xabcde, 0xfffff, 0), 0xabcde);
});

Deno.test("basic-translate MSI PTE (M=3): the interrupt file number selects the PTE", async (t) => {
  const env = msiEnv();
  // GPA page 0x28013: bits 4 and 1,0 of the page number set → file 0b1011 = 11.
  env.setPte(11, basicPte(0x2f00_0));
  env.setPte(3, basicPte(0x2e00_0));
  await t.step("file 11", () => {
    const r = testTranslate(env.tr, msiWrite(0x2801_3004, 5));
    assert.equal(r.status, XLATE_OK);
    assert.equal(r.pa, 0x2f00_0004);
    assert.equal(r.size, 4096);
  });
  await t.step("file 3", () => {
    assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 5)).pa, 0x2e00_0000);
  });
  await t.step("reads are translated too (R=W=1)", () => {
    assert.equal(testTranslate(env.tr, testRequest(1, 0x2800_3000)).pa, 0x2e00_0000);
  });
  await t.step("read-for-execute → instruction access fault (cause 1)", () => {
    const r = testTranslate(env.tr, testRequest(1, 0x2800_3000, { access: ACC_EXEC }));
    assert.equal(r.cause, 1);
    assert.equal(r.ttyp, 1);
  });
  await t.step("addresses outside the pattern use the G stage", () => {
    assert.equal(testTranslate(env.tr, msiWrite(0x2802_3000, 5)).pa, 0x2802_3000);
    assert.equal(testTranslate(env.tr, msiWrite(0x2808_3000, 5)).pa, 0x2808_3000);
  });
});

Deno.test("MSI recognition applies to the GPA after the first stage", () => {
  const env = msiEnv({}, { fs: true });
  env.setPte(3, basicPte(0x2e00_0));
  assert.equal(testTranslate(env.tr, msiWrite(0x5010, 1)).pa, 0x2e00_0010);
  assert.equal(testTranslate(env.tr, msiWrite(0x6010, 1)).pa, DATA + 0x10);
});

Deno.test("msiptp.MODE Off: no MSI translation even when the pattern matches", () => {
  const env = msiEnv();
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4");
  g.map(0x2800_3000, DATA);
  env.ddt.set(1, { iohgatp: encodeIohgatp(8, 4, g.root), msiMask: MASK, msiPattern: PATTERN });
  env.tr.invalDdt(true, 1);
  assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 1)).pa, DATA);
});

Deno.test("MSI address recognition ignores the pattern's bits under the mask: (A >> 12) & ~mask == pattern & ~mask (spec 2.1.3.6)", () => {
  const env = msiEnv();
  env.setPte(3, basicPte(0x2e00_0));
  // A pattern with every masked bit set still names the same interrupt files.
  env.ddt.set(1, {
    iohgatp: encodeIohgatp(8, 4, env.g.root),
    ta: encodeDcTa(3),
    msiptp: encodeAtp(1, env.msiPt),
    msiMask: MASK,
    msiPattern: PATTERN | MASK,
  });
  env.tr.invalDdt(true, 1);
  assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 5)).pa, 0x2e00_0000, "file 3");
  assert.equal(testTranslate(env.tr, msiWrite(0x2800_8000, 5)).pa, 0x2800_8000, "bit 3 unmasked");
});

Deno.test("MSI address recognition: the same rule in the upper half of the page number (mask and pattern bit 32)", () => {
  const env = msiEnv();
  env.setPte(3, basicPte(0x2e00_0));
  env.setPte(19, basicPte(0x2f00_0));
  env.ddt.set(1, {
    iohgatp: encodeIohgatp(8, 4, env.g.root),
    ta: encodeDcTa(3),
    msiptp: encodeAtp(1, env.msiPt),
    msiMask: MASK | 1n << 32n,
    msiPattern: PATTERN | 1n << 32n,
  });
  env.tr.invalDdt(true, 1);
  assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 5)).pa, 0x2e00_0000, "file 3");
  const high = testTranslate(env.tr, msiWrite(2 ** 44 + 0x2800_3000, 5));
  assert.equal(high.pa, 0x2f00_0000, "bit 32 of the page number is file bit 4: file 19");
});

Deno.test("DTF with an MSI page table: an MSI PTE fault is not recorded, and the request still fails with its cause (spec 3.2, causes 261-263 and 270)", async (t) => {
  const dtfEnv = () => {
    const env = msiEnv({}, { tc: RISCV_IOMMU_DC_TC_DTF });
    return env;
  };
  for (
    const [name, cause, setup] of [
      ["load access fault", 261, (env: ReturnType<typeof msiEnv>) => {
        env.mem.injectFault(env.setPte(3, basicPte(1)), 16);
      }],
      ["data corruption", 270, (env: ReturnType<typeof msiEnv>) => {
        env.mem.injectFault(env.setPte(3, basicPte(1)), 8, MEM_POISON);
      }],
      ["V=0", 262, (env: ReturnType<typeof msiEnv>) => void env.setPte(3, [0n, 0n])],
      ["M=2", 263, (env: ReturnType<typeof msiEnv>) => void env.setPte(3, [2n << 1n | 1n, 0n])],
    ] as const
  ) {
    await t.step(`${name} → ${cause}, not reported`, () => {
      const env = dtfEnv();
      setup(env);
      const r = testTranslate(env.tr, msiWrite(0x2800_3000, 1));
      assert.deepEqual([r.status, r.cause, r.reported], [XLATE_FAULT, cause, false]);
    });
  }
  await t.step("an MRIF access fault (264) is not reported either", () => {
    const env = dtfEnv();
    env.setPte(3, mrifPte(0x9000_0000, 0xa0000, 9));
    env.mem.injectFault(0x9000_0000, 512);
    const r = testTranslate(env.tr, msiWrite(0x2800_3000, 1));
    assert.deepEqual([r.status, r.cause, r.reported], [XLATE_FAULT, 264, false]);
  });
});

Deno.test("MSI PTE faults: 261 load, 270 poison, 262 V=0, 263 misconfigured", async (t) => {
  const run = (env: ReturnType<typeof msiEnv>) => testTranslate(env.tr, msiWrite(0x2800_3000, 1));
  await t.step("load access fault → 261", () => {
    const env = msiEnv();
    env.mem.injectFault(env.setPte(3, basicPte(1)) + 8, 8);
    assert.equal(run(env).cause, 261);
  });
  await t.step("poison → 270", () => {
    const env = msiEnv();
    env.mem.injectFault(env.setPte(3, basicPte(1)), 8, MEM_POISON);
    assert.equal(run(env).cause, 270);
  });
  await t.step("V=0 → 262", () => {
    const env = msiEnv();
    env.setPte(3, [0n, 0n]);
    const r = run(env);
    assert.equal(r.cause, 262);
    assert.equal(r.reported, true);
  });
  const bad: [string, [bigint, bigint], Partial<IommuCaps>?][] = [
    ["M=0", [1n, 0n]],
    ["M=2", [2n << 1n | 1n, 0n]],
    ["C=1", [basicPte(1)[0] | 1n << 63n, 0n]],
    ["basic mode reserved bit 3", [basicPte(1)[0] | 8n, 0n]],
    ["basic mode reserved bit 54", [basicPte(1)[0] | 1n << 54n, 0n]],
    ["MRIF mode reserved bit 3", [mrifPte(0x9000_0000, 1, 1)[0] | 8n, 0n]],
    ["MRIF mode second doubleword bit 61", [
      mrifPte(0x9000_0000, 1, 1)[0],
      mrifPte(0x9000_0000, 1, 1)[1] | 1n << 61n,
    ]],
    ["MRIF mode second doubleword bit 55", [
      mrifPte(0x9000_0000, 1, 1)[0],
      mrifPte(0x9000_0000, 1, 1)[1] | 1n << 55n,
    ]],
    ["MRIF mode without capabilities.MSI_MRIF", mrifPte(0x9000_0000, 1, 1), { msiMrif: false }],
  ];
  for (const [name, pte, caps] of bad) {
    await t.step(`${name} → 263`, () => {
      const env = msiEnv(caps);
      env.setPte(3, pte);
      assert.equal(run(env).cause, 263);
    });
  }
  await t.step("the basic-mode second doubleword is ignored", () => {
    const env = msiEnv();
    env.setPte(3, [basicPte(0x2e00_0)[0], 0xffff_ffff_ffff_ffffn]);
    assert.equal(run(env).pa, 0x2e00_0000);
  });
});

Deno.test("MRIF MSI PTE (M=1): set the pending bit at 16·(id/64), then send the notice MSI", async (t) => {
  for (const amoMrif of [true, false]) {
    await t.step(`AMO_MRIF=${amoMrif}`, () => {
      const env = msiEnv({ amoMrif });
      const mrif = 0x9100_0200, nppn = 0xa0123, nid = 0x5a5;
      env.setPte(3, mrifPte(mrif, nppn, nid));
      env.mem.write64(mrif + 16, 1n << 63n); // an earlier pending id 127
      env.mem.write64(mrif + 24, 0xffn); // enable bits of ids 64..71
      const r = testTranslate(env.tr, msiWrite(0x2800_3000, 70));
      assert.equal(r.status, XLATE_ABSORBED);
      assert.equal(env.mem.read64(mrif + 16), 1n << 63n | 1n << 6n);
      assert.equal(env.mem.read64(mrif + 24), 0xffn, "enable bits untouched");
      assert.equal(env.mem.read64(mrif + 8), 0n, "not at 8·(id/64) (QEMU's layout)");
      assert.equal(env.mem.read32(nppn * 4096), nid);
      testTranslate(env.tr, msiWrite(0x2800_3000, 2047));
      assert.equal(env.mem.read64(mrif + 16 * 31) >> 63n, 1n);
      testTranslate(env.tr, msiWrite(0x2800_3000, 33));
      assert.equal(env.mem.read64(mrif), 1n << 33n);
    });
  }
  await t.step("NID[10] comes from bit 60 of the second doubleword", () => {
    const env = msiEnv();
    env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 0x7ff));
    testTranslate(env.tr, msiWrite(0x2800_3000, 1));
    assert.equal(env.mem.read32(0xa000_0000), 0x7ff);
  });
});

Deno.test("MRIF writes the spec discards are absorbed without effect", async (t) => {
  const cases: [string, number, number][] = [
    ["A[11:3] != 0", 0x2800_3008, 5],
    ["data ≥ 2048", 0x2800_3000, 2048],
    ["big-endian data (A[2] = 1)", 0x2800_3004, 5],
  ];
  for (const [name, gpa, data] of cases) {
    await t.step(name, () => {
      const env = msiEnv();
      env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
      const r = testTranslate(env.tr, msiWrite(gpa, data));
      assert.equal(r.status, XLATE_ABSORBED);
      assert.equal(env.mem.read64(0x9100_0000), 0n);
      assert.equal(env.mem.read32(0xa000_0000), 0, "no notice MSI");
    });
  }
});

Deno.test("MRIF pages: aligned 32-bit reads read zero, other accesses abort", () => {
  const env = msiEnv();
  env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
  assert.equal(testTranslate(env.tr, testRequest(1, 0x2800_3000)).status, XLATE_ABSORBED);
  const r = testTranslate(env.tr, msiWrite(0x2800_3002, 1));
  assert.equal(r.cause, 7);
  const r8 = testTranslate(env.tr, msiWrite(0x2800_3000, 1, { len: 8 }));
  assert.equal(r8.cause, 7);
  assert.equal(testTranslate(env.tr, testRequest(1, 0x2800_3000, { len: 2 })).cause, 5);
  assert.equal(env.mem.read64(0x9100_0000), 0n);
});

Deno.test("MRIF access faults: 264 for a faulting MRIF or notice write, 271 for poison", async (t) => {
  await t.step("MRIF access fault", () => {
    const env = msiEnv();
    env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
    env.mem.injectFault(0x9100_0000, 16);
    assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 5)).cause, 264);
  });
  await t.step("MRIF poison", () => {
    const env = msiEnv();
    env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
    env.mem.injectFault(0x9100_0000, 16, MEM_POISON);
    assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 5)).cause, 271);
  });
  await t.step("notice MSI write fault", () => {
    const env = msiEnv();
    env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
    env.mem.injectFault(0xa000_0000, 4);
    assert.equal(testTranslate(env.tr, msiWrite(0x2800_3000, 5)).cause, 264);
  });
});

Deno.test("debug-interface requests to an MRIF-mapped address are disallowed (cause 260)", () => {
  const env = msiEnv();
  env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
  env.setPte(4, basicPte(0x2e00_0));
  const r = testTranslate(env.tr, testRequest(1, 0x2800_3000, { debug: true }));
  assert.equal(r.status, XLATE_FAULT);
  assert.equal(r.cause, 260);
  assert.equal(env.mem.read64(0x9100_0000), 0n);
  assert.equal(testTranslate(env.tr, testRequest(1, 0x2800_4000, { debug: true })).pa, 0x2e00_0000);
});

Deno.test("ATS translation of MSI addresses: basic → SPA; MRIF → Success with U=1", () => {
  const env = msiEnv({}, { tc: RISCV_IOMMU_DC_TC_EN_ATS });
  env.setPte(3, mrifPte(0x9100_0000, 0xa0000, 9));
  env.setPte(4, basicPte(0x2e00_0));
  const m = testTranslate(
    env.tr,
    testRequest(1, 0x2800_3000, { kind: REQ_ATS }),
  );
  assert.equal(m.status, XLATE_OK);
  assert.equal(m.untranslatedOnly, true);
  assert.equal(m.perm, 3);
  const b = testTranslate(
    env.tr,
    testRequest(1, 0x2800_4000, { kind: REQ_ATS }),
  );
  assert.equal(b.untranslatedOnly, false);
  assert.equal(b.pa, 0x2e00_0000);
  assert.equal(b.perm, 3);
  assert.equal(b.global, false);
  const bro = testTranslate(
    env.tr,
    testRequest(1, 0x2800_4000, { kind: REQ_ATS, noWrite: true }),
  );
  assert.equal(bro.perm, 1, "no write asked (NW=1): read only");
  env.setPte(5, [0n, 0n]);
  const v = testTranslate(env.tr, testRequest(1, 0x2800_5000, { kind: REQ_ATS }));
  assert.equal(v.status, XLATE_OK, "262 answers Success with R=W=0");
  assert.equal(v.perm, 0);
  assert.equal(v.reported, false);
  env.setPte(6, [1n, 0n]);
  const c = testTranslate(env.tr, testRequest(1, 0x2800_6000, { kind: REQ_ATS }));
  assert.equal(c.status, XLATE_FAULT, "263 is a Completer Abort");
  assert.equal(c.reported, true);
});

Deno.test("endianness: the MSI page table follows fctl.BE; MRIFs and notice MSIs stay little-endian (spec §2.10, Endianness of in-memory data structures)", () => {
  const env = testIommuEnv({ end: true });
  env.tr.fctlBE = true;
  const ddt = new DdtBuilder(env.mem, env.alloc, 4, true, true);
  env.tr.ddtpPpn = ddt.rootPn;
  const g = new PageTableBuilder(env.mem, env.alloc, "sv39x4", true);
  for (let gb = 0; gb < 4; gb++) g.map(gb * 2 ** 30, gb * 2 ** 30, { level: 2 });
  const msiPt = env.alloc.pages();
  ddt.set(1, {
    tc: RISCV_IOMMU_DC_TC_SBE,
    iohgatp: encodeIohgatp(8, 4, g.root),
    msiptp: encodeAtp(1, msiPt),
    msiMask: MASK,
    msiPattern: PATTERN,
  });
  const setPte = (file: number, [w0, w1]: [bigint, bigint], be: boolean) => {
    testWrite64(env.mem, msiPt * 4096 + file * 16, w0, be);
    testWrite64(env.mem, msiPt * 4096 + file * 16 + 8, w1, be);
  };
  setPte(3, basicPte(0x2e00_0), true);
  assert.equal(testTranslate(env.tr, msiWrite(0x2800_3010, 1)).pa, 0x2e00_0010);
  setPte(5, basicPte(0x2e00_0), false);
  assert.equal(
    testTranslate(env.tr, msiWrite(0x2800_5010, 1)).status,
    XLATE_FAULT,
    "LE PTE misread",
  );
  const mrif = 0x9100_0200, nppn = 0xa0123;
  setPte(4, mrifPte(mrif, nppn, 0x5a5), true);
  assert.equal(testTranslate(env.tr, msiWrite(0x2800_4000, 70)).status, XLATE_ABSORBED);
  assert.equal(env.mem.read64(mrif + 16), 1n << 6n, "pending bit 70, little-endian");
  assert.equal(env.mem.read32(nppn * 4096), 0x5a5, "notice MSI data, little-endian");
});
