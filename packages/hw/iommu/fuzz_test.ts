/**
 * Property test of the whole IOMMU device: random register writes (4/8 bytes, any offset),
 * random commands in the command queue, random DDT/PDT/page-table memory, random DMA and debug
 * requests, injected memory faults, and the IOMMU's own register page mapped on the bus so queues
 * and MSIs can aim at it. After every step: nothing threw, read-only state held, indices are in
 * range, a running queue drained, and every failed translation has a fault record or a reason for
 * none.
 *
 * `IOMMU_FUZZ_STEPS` sets the number of steps (default 100 000), `IOMMU_FUZZ_SEED` the seed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { MEM_ACCESS_FAULT, MEM_OK, MEM_POISON, PhysicalMemory } from "../memory.ts";
import { encodeCaps, type IommuCaps, resolveCaps } from "./caps.ts";
import { Iommu } from "./iommu.ts";
import type { PageRequest } from "./queues.ts";
import { PRQ_QUEUED } from "./page_request.ts";
import { ATS_INVAL_SENT } from "./command_queue.ts";
import * as R from "./regs.ts";
import { newRequest, newResult, setIova, XLATE_FAULT } from "./request.ts";
import { reportedDespiteDtf } from "./structs.ts";

const STEPS = Number(Deno.env.get("IOMMU_FUZZ_STEPS") ?? 100_000);
const SEED = Number(Deno.env.get("IOMMU_FUZZ_SEED") ?? 0x10bb_2026);
const STEPS_PER_RUN = 250;

const RAM = 0x8000_0000;
/** Where every structure and queue lives: 64 pages that random writes keep rewriting. */
const WIN = RAM + 0x10_0000;
const WIN_PAGES = 64;
const MSI_TARGET = RAM + 0x80_0000;
const SELF = 0x0301_0000;

const REGS = [
  0x000,
  0x008,
  0x010,
  0x018,
  0x020,
  0x024,
  0x028,
  0x030,
  0x034,
  0x038,
  0x040,
  0x044,
  0x048,
  0x04c,
  0x050,
  0x054,
  0x058,
  0x05c,
  0x060,
  0x068,
  0x160,
  0x250,
  0x258,
  0x260,
  0x268,
  0x270,
  0x2f8,
  0x300,
  0x308,
  0x30c,
  0x310,
  0x3f0,
  0x3f8,
  0x3fc,
];
/** Registers software cannot change by writing them. */
const RO = [
  R.RISCV_IOMMU_REG_CAPABILITIES,
  R.RISCV_IOMMU_REG_CAPABILITIES + 4,
  R.RISCV_IOMMU_REG_CQH,
  R.RISCV_IOMMU_REG_FQT,
  R.RISCV_IOMMU_REG_PQT,
  R.RISCV_IOMMU_REG_IOCOUNTOVF,
  R.RISCV_IOMMU_REG_TR_RESPONSE,
  R.RISCV_IOMMU_REG_TR_RESPONSE + 4,
];

// -- Generators --

const u32 = fc.oneof(
  fc.nat({ max: 0xffff_ffff }),
  fc.constantFrom(0, 1, 2, 3, 0x1f, 0xf, 0x3, 0xffff_ffff, 0x8000_0000, 0x10003, 0x0b03, 0x300),
);
const page = fc.nat({ max: WIN_PAGES - 1 });
/**
 * Where structure writes go: mostly the live DDT, DCs and page tables {@linkcode Rig.setup} built.
 */
const hotPage = fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 10 }) }, {
  weight: 1,
  arbitrary: page,
});
const hotSlot = fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 15 }) }, {
  weight: 1,
  arbitrary: fc.nat({ max: 511 }),
});
/** A PPN: usually a window page, sometimes the IOMMU itself, nowhere, or random. */
const ppn = fc.oneof(
  { weight: 8, arbitrary: page.map((p) => (WIN >>> 12) + p) },
  { weight: 1, arbitrary: fc.constantFrom(SELF >>> 12, 0, MSI_TARGET >>> 12) },
  { weight: 1, arbitrary: fc.nat({ max: 2 ** 44 - 1 }) },
);
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** A doubleword for an in-memory structure: pointer-like, mode-and-PPN-like, or random. */
const structWord = fc.oneof(
  fc.tuple(ppn, fc.nat({ max: 0x3ff }), fc.nat({ max: 3 })).map(([p, low, hi]) =>
    BigInt(p) << 10n | BigInt(low) | (hi === 3 ? 1n << 62n : 0n)
  ),
  fc.tuple(ppn, fc.nat({ max: 15 }), fc.nat({ max: 0xffff })).map(([p, mode, id]) =>
    BigInt(mode) << 60n | BigInt(id) << 44n | BigInt(p)
  ),
  fc.nat({ max: 0xfff }).map((tc) => BigInt(tc | 1)),
  u64,
);
// The operand bits each legal command defines (spec §3.1 "Command-Queue"): [opcode, func3, dword0,
// dword1].
const TEMPLATES: [number, number, bigint, bigint][] = [
  [1, 0, 1n << 10n | 0xfffffn << 12n | 3n << 32n | 0xffffn << 44n, 0x3fff_ffff_ffff_fc00n],
  [1, 1, 1n << 10n | 0xfffffn << 12n | 2n << 32n | 0xffffn << 44n, 0x3fff_ffff_ffff_fc00n],
  [2, 0, 1n << 10n | 3n << 12n | 0xffff_ffffn << 32n, 0n],
  [3, 0, 1n << 33n | 0xff_ffffn << 40n, 0n],
  [3, 1, 0xfffffn << 12n | 0xff_ffffn << 40n, 0n],
  [4, 0, 0xfffffn << 12n | 3n << 32n | 0xff_ffffn << 40n, (1n << 64n) - 1n],
  [4, 1, 0xfffffn << 12n | 3n << 32n | 0xff_ffffn << 40n, (1n << 64n) - 1n],
];
/** A command: mostly a legal one with random operands, sometimes random bits. */
const command = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(fc.nat({ max: TEMPLATES.length - 1 }), u64, u64, page).map(
      ([i, r0, r1, p]) => {
        const [op, f, m0, m1] = TEMPLATES[i];
        const d0 = BigInt(op) | BigInt(f) << 7n | r0 & m0 | (op === 3 && f === 1 ? 1n << 33n : 0n);
        // IOFENCE.C stores into the window; small IOVAs for IOTINVAL.
        const d1 = op === 2 ? BigInt(WIN + p * 4096) >> 2n : op === 1 ? r1 & 0xffc00n : r1 & m1;
        return [d0, d1] as [bigint, bigint];
      },
    ),
  },
  { weight: 1, arbitrary: fc.tuple(u64, fc.oneof(u64, fc.constant(BigInt(SELF + 0x24) >> 2n))) },
);

const did = fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 3 }) }, {
  weight: 1,
  arbitrary: fc.nat({ max: 0xff_ffff }),
});
/** IOVAs the page tables map (pages 0–7, the 1 GiB superpage), or anything. */
const iova = fc.oneof(
  { weight: 3, arbitrary: fc.nat({ max: 9 }).map((p) => BigInt(p) << 12n) },
  { weight: 1, arbitrary: fc.nat({ max: 0x3fff_ffff }).map((o) => 0x4000_0000n + BigInt(o)) },
  { weight: 1, arbitrary: u64 },
);

const action = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(
      fc.constant("w32" as const),
      fc.oneof(fc.constantFrom(...REGS), fc.nat({ max: 0x1003 }), fc.constantFrom(...RO)),
      u32,
    ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constant("w64" as const),
      fc.oneof(fc.constantFrom(...REGS), fc.nat({ max: 0x1007 })),
      u64,
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constant("read" as const),
      fc.oneof(fc.constantFrom(...REGS), fc.nat({ max: 0x1007 })),
    ),
  },
  { weight: 6, arbitrary: fc.tuple(fc.constant("cmd" as const), command) },
  { weight: 8, arbitrary: fc.tuple(fc.constant("mem" as const), hotPage, hotSlot, structWord) },
  {
    weight: 10,
    arbitrary: fc.tuple(
      fc.constant("dma" as const),
      did,
      fc.oneof(fc.constant(0), fc.nat({ max: 0xfffff })),
      fc.nat({ max: 7 }),
      fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.nat({ max: 2 })),
      iova,
    ),
  },
  { weight: 3, arbitrary: fc.tuple(fc.constant("clear" as const)) },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constant("debug" as const),
      iova,
      fc.tuple(did, fc.nat({ max: 15 })).map(([d, f]) =>
        BigInt(d) << 40n | BigInt(f & 14) | BigInt(f & 1) << 32n
      ),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constant("setup" as const),
      fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 2, max: 4 }) }, fc.nat({ max: 4 })),
      fc.nat({ max: 0xffff }),
      fc.nat({ max: 3 }),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constant("fault" as const), page, fc.nat({ max: 3 })) },
  { weight: 2, arbitrary: fc.tuple(fc.constant("consume" as const)) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant("pri" as const),
      fc.nat({ max: 0xff_ffff }),
      fc.nat({ max: 0x1ff }),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constant("hpm" as const), fc.nat({ max: 32 })) },
);
type Action = typeof action extends fc.Arbitrary<infer T> ? T : never;

const variant = fc.record({
  caps: fc.record({
    ats: fc.boolean(),
    hpm: fc.boolean(),
    dbg: fc.boolean(),
    end: fc.boolean(),
    igs: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
    msiFlat: fc.boolean(),
    sv32x4: fc.boolean(),
    nl: fc.boolean(),
    s: fc.boolean(),
    qosid: fc.boolean(),
    pas: fc.constantFrom(40, 46, 56),
  }),
  levels: fc.subarray([1, 2, 3] as (1 | 2 | 3)[], { minLength: 1 }),
  maxLog2Sz: fc.integer({ min: 1, max: 32 }),
  vectors: fc.constantFrom(1, 2, 4, 16),
  busy: fc.nat({ max: 2 }),
  atsTimeouts: fc.boolean(),
});
type Variant = typeof variant extends fc.Arbitrary<infer T> ? T : never;

// -- The model under test --

class Rig {
  readonly mem = new PhysicalMemory();
  readonly iommu: Iommu;
  readonly caps: IommuCaps;
  readonly capsReg: bigint;
  /** What the translator itself said about reporting its last fault. */
  translatorReported = false;
  #atsAnswer = false;

  constructor(v: Variant) {
    this.caps = resolveCaps(v.caps);
    this.capsReg = encodeCaps(this.caps);
    this.mem.addRam(RAM, 2 ** 30);
    this.iommu = new Iommu({
      mem: this.mem,
      caps: v.caps,
      irq: { setWire: () => {} },
      ddtLevels: v.levels,
      maxLog2Sz: { cq: v.maxLog2Sz, fq: v.maxLog2Sz, pq: v.maxLog2Sz },
      icvecVectors: v.vectors,
      ddtpBusyPolls: v.busy,
      csrBusyPolls: v.busy,
      trBusyPolls: v.busy,
      ats: {
        // No clock: an invalidation not completed within the call counts as timed out.
        invalidate: (_inv, done) => {
          if ((this.#atsAnswer = !this.#atsAnswer) || !v.atsTimeouts) done();
          return ATS_INVAL_SENT;
        },
        pageResponse: () => {},
      },
    });
    this.mem.addMmio(SELF, 0x1000, this.iommu, "iommu");
    const t = this.iommu.translator;
    const translate = t.translate.bind(t);
    t.translate = (req, res) => {
      translate(req, res);
      this.translatorReported = res.reported;
    };
  }

  reg(off: number): number {
    return this.iommu.read32(off);
  }

  size(baseOff: number): number {
    return 2 ** (Number(this.iommu.read64(baseOff) & 0x1fn) + 1);
  }

  /** Register values with busy bits (which reads consume) masked out. */
  snapshot(): number[] {
    return REGS.flatMap((o) => [this.reg(o), this.reg(o + 4)]).map((v, i) => {
      const off = REGS[i >> 1] + (i & 1) * 4;
      if (off === R.RISCV_IOMMU_REG_DDTP) return v & ~0x10;
      if (off === R.RISCV_IOMMU_REG_TR_REQ_CTL) return v & ~1;
      if (off >= R.RISCV_IOMMU_REG_CQCSR && off <= R.RISCV_IOMMU_REG_PQCSR) {
        return v & ~(R.RISCV_IOMMU_QUEUE_BUSY | R.RISCV_IOMMU_QUEUE_ACTIVE);
      }
      return v;
    });
  }

  run(a: Action): void {
    const { iommu, mem } = this;
    switch (a[0]) {
      case "w32": {
        const ro = RO.includes(a[1]) && (a[1] !== R.RISCV_IOMMU_REG_PQT || this.caps.ats);
        const before = ro ? this.snapshot() : [];
        iommu.write32(a[1], a[2]);
        if (ro) assert.deepEqual(this.snapshot(), before, `write to RO 0x${a[1].toString(16)}`);
        return;
      }
      case "w64":
        return iommu.write64(a[1], a[2]);
      case "read":
        iommu.read32(a[1]);
        iommu.read64(a[1]);
        return;
      case "cmd": {
        const t = this.reg(R.RISCV_IOMMU_REG_CQT);
        const base = Number(iommu.read64(R.RISCV_IOMMU_REG_CQB) >> 10n) * 4096;
        mem.write64(base + t * 16, a[1][0]);
        mem.write64(base + t * 16 + 8, a[1][1]);
        iommu.write32(R.RISCV_IOMMU_REG_CQT, t + 1);
        return this.#checkCqDrained();
      }
      case "mem":
        return mem.write64(WIN + a[1] * 4096 + a[2] * 8, a[3]);
      case "dma":
        return this.#dma(a[1], a[2], a[3], a[4], a[5]);
      case "clear":
        // A driver's interrupt threads: write the error bits back, then clear ipsr.
        for (const off of [R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_REG_FQCSR]) {
          iommu.write32(off, this.reg(off) & 0xf03);
        }
        iommu.write32(R.RISCV_IOMMU_REG_IPSR, 0xf);
        return this.#checkCqDrained();
      case "debug":
        iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_IOVA, a[1]);
        iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_CTL, a[2] | 1n);
        return;
      case "setup":
        return this.setup(a[1], a[2], a[3]);
      case "fault": {
        const kind = a[2];
        if (kind === 0) return mem.clearFaults();
        mem.injectFault(WIN + a[1] * 4096, 4096, kind === 3 ? MEM_POISON : MEM_ACCESS_FAULT);
        return;
      }
      case "consume":
        iommu.write32(R.RISCV_IOMMU_REG_FQH, this.reg(R.RISCV_IOMMU_REG_FQT));
        iommu.write32(R.RISCV_IOMMU_REG_PQH, this.reg(R.RISCV_IOMMU_REG_PQT));
        return;
      case "pri": {
        const pr: PageRequest = {
          deviceId: a[1],
          pidValid: (a[2] & 1) !== 0,
          pid: a[2],
          priv: (a[2] & 2) !== 0,
          exec: (a[2] & 8) !== 0,
          read: (a[2] & 16) === 0,
          write: (a[2] & 4) !== 0,
          last: (a[2] & 32) === 0,
          prgIndex: a[2],
          addrLo: a[1] << 12,
          addrHi: 0,
        };
        const pqt = this.reg(R.RISCV_IOMMU_REG_PQT);
        const r = iommu.pageRequest(pr);
        const moved = this.reg(R.RISCV_IOMMU_REG_PQT) !== pqt;
        assert.equal(moved, r === PRQ_QUEUED, "pqt moves exactly when a page request is queued");
        return;
      }
      case "hpm":
        // Counter a[1] (0: none) one short of wrapping, counting Untranslated requests.
        iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(Math.max(1, a[1])), ~0n);
        iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(Math.max(1, a[1])), 1n);
        iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0);
        return;
    }
  }

  /**
   * Programs the IOMMU as a driver would: queues at the top of the window, a DDT of `mode` at
   * page 0 whose DCs for devices 0–3 translate through Sv39/Sv48 tables at pages 8–10 (pages
   * 0–7 and a 1 GiB superpage mapped), and MSI vectors aimed at RAM, nowhere and the IOMMU.
   */
  setup(mode: number, icvec: number, log2: number) {
    const { iommu, mem } = this;
    const at = (p: number, slot: number, v: bigint) => mem.write64(WIN + p * 4096 + slot * 8, v);
    const ptr = (p: number) => BigInt((WIN >>> 12) + p) << 10n | 1n;
    const q = (b: number, idx: number, csr: number, p: number) => {
      iommu.write32(csr, 0);
      iommu.write64(b, BigInt((WIN >>> 12) + p) << 10n | BigInt(log2));
      iommu.write32(idx, 0);
      iommu.write32(csr, R.RISCV_IOMMU_QUEUE_ENABLE | R.RISCV_IOMMU_QUEUE_INTR_ENABLE);
    };
    q(R.RISCV_IOMMU_REG_CQB, R.RISCV_IOMMU_REG_CQT, R.RISCV_IOMMU_REG_CQCSR, WIN_PAGES - 3);
    q(R.RISCV_IOMMU_REG_FQB, R.RISCV_IOMMU_REG_FQH, R.RISCV_IOMMU_REG_FQCSR, WIN_PAGES - 2);
    q(R.RISCV_IOMMU_REG_PQB, R.RISCV_IOMMU_REG_PQH, R.RISCV_IOMMU_REG_PQCSR, WIN_PAGES - 1);
    mem.fill(WIN, 11 * 4096);
    if (mode === 3) at(0, 0, ptr(2));
    if (mode === 4) (at(0, 0, ptr(1)), at(1, 0, ptr(2)));
    const leaf = mode === 2 ? 0 : 2, dcSlots = this.caps.msiFlat ? 8 : 4;
    for (let d = 0; d < 4; d++) {
      const dc = d * dcSlots;
      at(leaf, dc, d === 1 ? 0x11n : 1n); // V; device 1 with DTF
      at(leaf, dc + 2, BigInt(d) << 12n); // ta.PSCID
      if (d !== 2) at(leaf, dc + 3, BigInt(d === 3 ? 9 : 8) << 60n | BigInt((WIN >>> 12) + 8));
    }
    at(8, 0, ptr(9));
    at(8, 1, 0x80000n << 10n | 0xd7n); // 1 GiB leaf → RAM: V R W U A D
    at(9, 0, ptr(10));
    for (let i = 0; i < 8; i++) at(10, i, BigInt((RAM >>> 12) + 0x400 + i) << 10n | 0xdfn);
    iommu.write64(R.RISCV_IOMMU_REG_DDTP, 0n);
    iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(WIN >>> 12) << 10n | BigInt(mode));
    iommu.write64(R.RISCV_IOMMU_REG_ICVEC, BigInt(icvec));
    for (let n = 0; n < 16; n++) {
      const addr = n === 15 ? SELF + R.RISCV_IOMMU_REG_IPSR : n === 14 ? 0 : MSI_TARGET + n * 4;
      iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(n), BigInt(addr));
      iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(n), n);
      iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(n), 0);
    }
  }

  #dma(did: number, pid: number, flags: number, kind: number, iova: bigint) {
    const { iommu } = this;
    const req = newRequest({
      deviceId: did,
      pidValid: (flags & 1) !== 0,
      pid,
      priv: (flags & 2) !== 0,
      access: (flags >> 1 & 3) % 3 as 0 | 1 | 2,
      kind: kind % 3 as 0 | 1 | 2,
    });
    setIova(req, iova);
    const res = newResult();
    const fqt = this.reg(R.RISCV_IOMMU_REG_FQT);
    const fqb = iommu.read64(R.RISCV_IOMMU_REG_FQB);
    this.translatorReported = false;
    const pmipBefore = this.reg(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_PMIP;
    iommu.translate(req, res);
    const after = this.reg(R.RISCV_IOMMU_REG_FQT);
    // An HPM counter this request overflowed raised pmip, whose MSI may itself have faulted
    // (cause 273) ahead of the request's own record: the records are checked by other requests.
    if (!pmipBefore && this.reg(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_PMIP) return;
    if (res.status !== XLATE_FAULT) {
      assert.equal(after, fqt, "no record for a translation that did not fault");
      return;
    }
    if (res.reported) {
      assert.notEqual(after, fqt, "a reported fault moved fqt");
      const rec = this.mem.read64(Number(fqb >> 10n) * 4096 + fqt * 32, this.#be());
      if (this.mem.fault === MEM_OK) { // a test-injected poison hides what was written
        assert.equal(Number(rec & 0xfffn), res.cause, "the record at the old fqt is this fault");
      }
      return;
    }
    // No record: the translator suppressed it (DTF), or the queue dropped it.
    if (!this.translatorReported) {
      assert.ok(!reportedDespiteDtf(res.cause), `cause ${res.cause} suppressed`);
    } else {
      const csr = this.reg(R.RISCV_IOMMU_REG_FQCSR);
      // While busy shows, fqon still reads its value from before the last fqen change.
      const reason = (csr & (R.RISCV_IOMMU_FQCSR_FQON | R.RISCV_IOMMU_FQCSR_BUSY)) !==
          R.RISCV_IOMMU_FQCSR_FQON ||
        (csr & (R.RISCV_IOMMU_FQCSR_FQMF | R.RISCV_IOMMU_FQCSR_FQOF)) !== 0;
      assert.ok(reason, "a dropped record leaves fqon=0 (or busy), fqmf or fqof");
    }
    assert.equal(after, fqt, "a dropped record does not move fqt");
  }

  #be(): boolean {
    return (this.reg(R.RISCV_IOMMU_REG_FCTL) & R.RISCV_IOMMU_FCTL_BE) !== 0;
  }

  #checkCqDrained() {
    const csr = this.reg(R.RISCV_IOMMU_REG_CQCSR);
    const stopped = R.RISCV_IOMMU_CQCSR_CQMF | R.RISCV_IOMMU_CQCSR_CMD_TO |
      R.RISCV_IOMMU_CQCSR_CMD_ILL;
    const on = R.RISCV_IOMMU_CQCSR_CQON | R.RISCV_IOMMU_CQCSR_BUSY;
    if (
      (csr & on) === R.RISCV_IOMMU_CQCSR_CQON && !(csr & stopped) && !this.iommu.stallCommandQueue
    ) {
      assert.equal(this.reg(R.RISCV_IOMMU_REG_CQH), this.reg(R.RISCV_IOMMU_REG_CQT), "CQ drained");
    }
  }

  /** Invariants that hold after every step. */
  check(): void {
    const { iommu, caps } = this;
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CAPABILITIES), this.capsReg);
    const queues: [number, number, number, boolean][] = [
      [R.RISCV_IOMMU_REG_CQB, R.RISCV_IOMMU_REG_CQH, R.RISCV_IOMMU_REG_CQT, true],
      [R.RISCV_IOMMU_REG_FQB, R.RISCV_IOMMU_REG_FQH, R.RISCV_IOMMU_REG_FQT, true],
      [R.RISCV_IOMMU_REG_PQB, R.RISCV_IOMMU_REG_PQH, R.RISCV_IOMMU_REG_PQT, caps.ats],
    ];
    for (const [b, h, t, present] of queues) {
      if (!present) continue;
      const size = this.size(b);
      assert.ok(this.reg(h) < size && this.reg(t) < size, `indices of 0x${b.toString(16)}`);
    }
    for (const off of [R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_REG_PQCSR]) {
      const csr = this.reg(off);
      if (csr & R.RISCV_IOMMU_QUEUE_BUSY) continue;
      assert.equal(!!(csr & R.RISCV_IOMMU_QUEUE_ACTIVE), !!(csr & 1), "on follows enable");
    }
    const ipsr = this.reg(R.RISCV_IOMMU_REG_IPSR);
    assert.equal(ipsr & ~0xf, 0);
    if (!caps.ats) assert.equal(ipsr & R.RISCV_IOMMU_IPSR_PIP, 0);
    if (!caps.hpm) assert.equal(ipsr & R.RISCV_IOMMU_IPSR_PMIP, 0);
    const mode = Number(iommu.read64(R.RISCV_IOMMU_REG_DDTP) & 0xfn);
    assert.ok(mode <= 4, "ddtp.iommu_mode is a defined mode");
  }
}

Deno.test("fuzz: random registers, commands and structures never throw and keep the IOMMU's invariants", () => {
  fc.assert(
    fc.property(
      variant,
      fc.array(action, { minLength: STEPS_PER_RUN, maxLength: STEPS_PER_RUN }),
      (v, actions) => {
        const rig = new Rig(v);
        rig.setup(4, 0x3210, 3);
        for (const a of actions) {
          rig.run(a);
          rig.check();
        }
      },
    ),
    { seed: SEED, numRuns: Math.max(1, Math.ceil(STEPS / STEPS_PER_RUN)) },
  );
});
