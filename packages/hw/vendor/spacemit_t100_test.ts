import assert from "node:assert/strict";
import fc from "fast-check";
import { Clock } from "../clock.ts";
import { PhysicalMemory } from "../memory.ts";
import { Iommu } from "../iommu/iommu.ts";
import { HPMEVENT_PDT_CACHE_HIT } from "../iommu/hpm_event.ts";
import * as R from "../iommu/regs.ts";
import {
  type InboundRequest,
  newRequest,
  newResult,
  REQ_TRANSLATED,
  setIova,
  type TranslationResult,
  XLATE_OK,
} from "../iommu/request.ts";
import {
  PTE_A,
  PTE_R,
  PTE_U,
  PTE_V,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_HPMEVENT_TRQ,
  RISCV_IOMMU_HPMEVENT_URQ,
} from "../iommu/structs.ts";
import {
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  encodePcTa,
  PageTableBuilder,
  PdtBuilder,
  TEST_RAM_BASE,
  TestPageAllocator,
} from "../iommu/testing.ts";
import {
  type IoatcOptions,
  MAX_RISCV_IOMMU_IOATC,
  RISCV_IOMMU_DTI_STS_IOATC,
  RISCV_IOMMU_DTI_STS_SHIFT,
  RISCV_IOMMU_IOATC_BASE,
  RISCV_IOMMU_REG_DTISR,
  SPACEMIT_T100_IOATC_TLB_FILL,
  SPACEMIT_T100_IOATC_TLB_HIT,
  SPACEMIT_T100_IOATC_TLB_MISS,
  SPACEMIT_T100_IOATS_DDTC_HIT,
  SPACEMIT_T100_IOATS_DDTC_MISS,
  SPACEMIT_T100_IOATS_HPM,
  SPACEMIT_T100_IOATS_PDTC_HIT,
  SPACEMIT_T100_IOATS_PDTC_MISS,
  SpacemitT100,
} from "./spacemit_t100.ts";

const BASE = 0x0301_0000;
const DATA = 0x9000_0000;
const CQ = 0x8800_0000;

/**
 * A T100 on the bus at BASE with three IOATCs (0: devices 0x10–0x17; 1: 0x20–0x27; 2: 0x30–0x3f,
 * 4 counters of 16 bits) and devices 0x10, 0x11, 0x21 (Sv39, pages 0..15), 0x30 (PDTV, process
 * 1), 0x50 (no IOATC, EN_ATS), in a 3LVL directory; a command queue at CQ.
 */
function rig(ioatcs?: IoatcOptions[]) {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 2 ** 32);
  const alloc = new TestPageAllocator();
  const clock = new Clock();
  const ioats = new Iommu({ mem, clock, hpm: SPACEMIT_T100_IOATS_HPM });
  const wires = new Map<number, boolean>();
  // What reaches the IOATS, counted by the test.
  const atIoats = { untranslated: 0, filled: 0 };
  const upstream = {
    translate(req: InboundRequest, res: TranslationResult) {
      ioats.translate(req, res);
      if (req.kind !== 0) return;
      atIoats.untranslated++;
      if (res.status === XLATE_OK) atIoats.filled++;
    },
  };
  const t100 = new SpacemitT100(ioats, {
    ioatcs: ioatcs ?? [
      { devices: [0x10, 0x17] },
      { devices: [0x20, 0x27] },
      { devices: [0x30, 0x3f], hpm: { counters: 4, counterBits: 16 } },
    ],
    clock,
    irq: { setWire: (l, v) => wires.set(l, v) },
    upstream,
  });
  mem.addMmio(BASE, t100.size, t100, "t100");
  const ddt = new DdtBuilder(mem, alloc, 4, true);
  const tables = new Map<number, PageTableBuilder>();
  const sv39 = () => {
    const pt = new PageTableBuilder(mem, alloc, "sv39");
    for (let p = 0; p < 16; p++) pt.map(p * 4096, DATA + p * 4096);
    return pt;
  };
  for (const did of [0x10, 0x11, 0x21]) {
    const pt = sv39();
    tables.set(did, pt);
    ddt.set(did, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(did) });
  }
  const pdt = new PdtBuilder(mem, alloc, 1);
  pdt.set(1, encodePcTa(0x301), encodeAtp(8, sv39().root));
  ddt.set(0x30, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: encodeAtp(1, pdt.root) });
  ddt.set(0x50, { tc: RISCV_IOMMU_DC_TC_EN_ATS, fsc: encodeAtp(8, sv39().root) });
  mem.write64(BASE + R.RISCV_IOMMU_REG_DDTP, BigInt(ddt.rootPn) << 10n | 4n);
  mem.write64(BASE + R.RISCV_IOMMU_REG_CQB, BigInt(CQ / 4096) << 10n | 5n);
  mem.write32(BASE + R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN);

  const res = newResult();
  const dma = (did: number, page: number, init: Partial<InboundRequest> = {}) => {
    const req = newRequest({ deviceId: did, ...init });
    setIova(req, page * 4096 + 0x10);
    t100.translate(req, res);
    return res.status === XLATE_OK ? res.pa : -1;
  };
  const command = (d0: bigint, d1 = 0n) => {
    const t = mem.read32(BASE + R.RISCV_IOMMU_REG_CQT);
    mem.write64(CQ + t * 16, d0);
    mem.write64(CQ + t * 16 + 8, d1);
    mem.write32(BASE + R.RISCV_IOMMU_REG_CQT, (t + 1) % 64);
  };
  /** Page `page` (0 for the IOATS) register `off`. */
  const reg = (page: number, off: number) => BASE + page * 4096 + off;
  const program = (page: number, n: number, id: number, filter = 0n) => {
    mem.write64(reg(page, R.RISCV_IOMMU_REG_IOHPMEVT(n)), BigInt(id) | filter);
  };
  const ctr = (page: number, n: number) => mem.read64(reg(page, R.RISCV_IOMMU_REG_IOHPMCTR(n)));
  const run = (page: number) => mem.write32(reg(page, R.RISCV_IOMMU_REG_IOCOUNTINH), 1);
  return { mem, clock, ioats, t100, wires, atIoats, tables, dma, command, reg, program, ctr, run };
}

const DV = (did: number) => R.RISCV_IOMMU_IOHPMEVT_DV_GSCV | BigInt(did) << 36n;
const IOTINVAL_VMA_ALL = BigInt(R.RISCV_IOMMU_CMD_IOTINVAL_OPCODE);
const IODIR_INVAL_DDT_ALL = BigInt(R.RISCV_IOMMU_CMD_IODIR_OPCODE);

Deno.test("T100 discovery: DTISR0-3 at 0x2B0 give each interface 2 bits, 1 for an IOATC; IOATC i's page is at (i+1)·4 KiB", () => {
  const { mem, reg, t100 } = rig();
  assert.equal(t100.size, 4 * 4096);
  const dtisr = (n: number) => mem.read32(BASE + RISCV_IOMMU_REG_DTISR(n));
  assert.deepEqual([dtisr(0), dtisr(1), dtisr(2), dtisr(3)], [0b01_01_01, 0, 0, 0]);
  mem.write32(BASE + RISCV_IOMMU_REG_DTISR(0), 0);
  assert.equal(dtisr(0), 0b01_01_01, "read-only");
  assert.equal(mem.read64(BASE + RISCV_IOMMU_REG_DTISR(0)), 0b01_01_01n, "8-byte read of dtisr0/1");
  assert.notEqual(mem.read64(BASE + R.RISCV_IOMMU_REG_CAPABILITIES), 0n, "the IOATS page");
  // Linux's probe of each IOATC's HPM: ones into iocountinh, count the counters.
  for (const [i, want] of [[0, 0xffff_ffff], [1, 0xffff_ffff], [2, 0x1f]]) {
    assert.equal(RISCV_IOMMU_IOATC_BASE(i), (i + 1) * 4096);
    mem.write32(reg(i + 1, R.RISCV_IOMMU_REG_IOCOUNTINH), 0xffff_ffff);
    assert.equal(mem.read32(reg(i + 1, R.RISCV_IOMMU_REG_IOCOUNTINH)), want, `IOATC ${i}`);
  }
  assert.equal(mem.read32(reg(1, R.RISCV_IOMMU_REG_CAPABILITIES)), 0, "an IOATC page has no IOMMU");

  const many = rig(Array.from({ length: 17 }, (_, i) => ({ devices: [0x100 + i, 0x100 + i] })));
  const d = (n: number) => many.mem.read32(BASE + RISCV_IOMMU_REG_DTISR(n));
  assert.deepEqual([d(0), d(1), d(2)], [0x5555_5555, RISCV_IOMMU_DTI_STS_IOATC, 0]);
  assert.equal(RISCV_IOMMU_DTI_STS_SHIFT(17), 2);
  const full = rig(Array.from({ length: MAX_RISCV_IOMMU_IOATC }, () => ({ devices: [0, 0] })));
  assert.equal(full.mem.read32(BASE + RISCV_IOMMU_REG_DTISR(3)), 0x5555_5555);
  assert.equal(full.t100.size, 65 * 4096);
});

Deno.test("IOATC: Untranslated requests hit its IOTLB or go to the IOATS; hits, misses and fills match what reached the IOATS", () => {
  const r = rig();
  const ids = [
    RISCV_IOMMU_HPMEVENT_URQ,
    RISCV_IOMMU_HPMEVENT_TLB_MISS,
    SPACEMIT_T100_IOATC_TLB_HIT,
    SPACEMIT_T100_IOATC_TLB_MISS,
    SPACEMIT_T100_IOATC_TLB_FILL,
    RISCV_IOMMU_HPMEVENT_TRQ,
  ];
  ids.forEach((id, i) => r.program(1, i + 1, id));
  r.run(1);
  r.program(0, 1, RISCV_IOMMU_HPMEVENT_URQ);
  r.run(0);
  let issued = 0;
  const rng = fc.sample(fc.tuple(fc.constantFrom(0x10, 0x11), fc.nat({ max: 15 })), {
    numRuns: 400,
    seed: 12,
  });
  for (const [did, page] of rng) {
    assert.equal(r.dma(did, page), DATA + page * 4096 + 0x10);
    issued++;
    if (issued % 100 === 0) r.command(IOTINVAL_VMA_ALL);
  }
  r.dma(0x10, 0, { kind: REQ_TRANSLATED });
  const [urq, miss, hit, vmiss, fill, trq] = ids.map((_, i) => Number(r.ctr(1, i + 1)));
  assert.equal(urq, issued);
  assert.equal(vmiss, r.atIoats.untranslated, "a miss is a request sent to the IOATS");
  assert.equal(miss, vmiss);
  assert.equal(hit, issued - r.atIoats.untranslated);
  assert.equal(fill, r.atIoats.filled);
  assert.equal(trq, 1);
  assert.ok(hit > 100 && vmiss > 16, `${hit} hits, ${vmiss} misses`);
  assert.equal(Number(r.ctr(0, 1)), r.atIoats.untranslated, "the IOATS sees only the misses");
  assert.equal(r.ctr(2, 1), 0n, "IOATC 1 fronts other devices");
});

Deno.test("IOATC: a cached translation needs the access allowed, else the IOATS decides (and may refill)", () => {
  const r = rig();
  const pt = r.tables.get(0x10)!;
  pt.map(0x5000, DATA + 0x5000, { flags: PTE_V | PTE_R | PTE_U | PTE_A }); // read-only
  assert.equal(r.dma(0x10, 5), DATA + 0x5010);
  assert.equal(r.t100.ioatcs[0].iotlbSize, 1);
  assert.equal(
    r.dma(0x10, 5, { access: 1 }),
    -1,
    "a write to a read-only page faults at the IOATS",
  );
  assert.equal(r.atIoats.untranslated, 2);
});

Deno.test("IOATC: every IOTINVAL and IODIR the IOATS runs reaches every IOATC (stale translations never used)", () => {
  const r = rig();
  r.dma(0x10, 3);
  r.dma(0x21, 3);
  assert.deepEqual(r.t100.ioatcs.map((c) => c.iotlbSize), [1, 1, 0]);
  // Remap page 3 of device 0x10 and invalidate one unrelated address: conservative, both empty.
  r.tables.get(0x10)!.map(0x3000, DATA + 0x8000);
  r.command(IOTINVAL_VMA_ALL | R.RISCV_IOMMU_CMD_IOTINVAL_AV, 0x7_0000n >> 2n);
  assert.deepEqual(r.t100.ioatcs.map((c) => c.iotlbSize), [0, 0, 0]);
  r.command(IOTINVAL_VMA_ALL); // the IOATS's own IOTLB too
  assert.equal(r.dma(0x10, 3), DATA + 0x8010, "the new mapping");
  r.dma(0x21, 4);
  r.command(IODIR_INVAL_DDT_ALL);
  assert.deepEqual(r.t100.ioatcs.map((c) => c.iotlbSize), [0, 0, 0]);
});

Deno.test("IOATC HPM: a 16-bit overflow raises its own PMIV wire; ipsr.pmip is RW1C; OF already set raises nothing", () => {
  const r = rig();
  const c = 3; // IOATC 2's page
  r.program(c, 2, RISCV_IOMMU_HPMEVENT_URQ);
  r.run(c);
  let total = 0;
  for (let i = 0; i < 70_000; i++) {
    r.dma(0x30, i & 3, { pidValid: true, pid: 1 });
    if (!r.wires.get(2)) continue;
    assert.equal(r.mem.read32(r.reg(c, R.RISCV_IOMMU_REG_IPSR)), R.RISCV_IOMMU_IPSR_PMIP);
    assert.equal(r.mem.read32(r.reg(c, R.RISCV_IOMMU_REG_IOCOUNTOVF)), 1 << 2);
    total += 2 ** 16;
    r.program(c, 2, RISCV_IOMMU_HPMEVENT_URQ); // clears OF
    r.mem.write32(r.reg(c, R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_PMIP);
    assert.equal(r.wires.get(2), false);
  }
  assert.equal(total + Number(r.ctr(c, 2)), 70_000);
  assert.equal(r.wires.get(0), undefined, "the other IOATCs' wires stay put");
  r.mem.write64(r.reg(c, R.RISCV_IOMMU_REG_IOHPMCTR(2)), 0xffffn);
  r.mem.write64(r.reg(c, R.RISCV_IOMMU_REG_IOHPMEVT(2)), 1n | R.RISCV_IOMMU_IOHPMEVT_OF);
  r.dma(0x30, 0, { pidValid: true, pid: 1 });
  assert.equal(r.wires.get(2), false);
  assert.equal(r.mem.read32(r.reg(c, R.RISCV_IOMMU_REG_IPSR)), 0);
});

Deno.test("IOATC HPM: device filters through the global filter; IDT=1 counts nothing (no GSCID/PSCID at the IOATC)", () => {
  const r = rig();
  r.program(1, 1, RISCV_IOMMU_HPMEVENT_URQ, DV(0x11));
  r.program(1, 2, SPACEMIT_T100_IOATC_TLB_MISS); // shares iohpmevt1's filter
  r.run(1);
  for (const did of [0x10, 0x11, 0x11, 0x10]) r.dma(did, 0);
  assert.deepEqual([r.ctr(1, 1), r.ctr(1, 2)], [2n, 1n]);
  r.program(1, 1, RISCV_IOMMU_HPMEVENT_URQ, R.RISCV_IOMMU_IOHPMEVT_IDT);
  r.dma(0x11, 1);
  assert.deepEqual([r.ctr(1, 1), r.ctr(1, 2)], [2n, 1n]);
  r.program(1, 3, 3); // ATS translation requests: not an IOATC event
  assert.equal(r.mem.read64(r.reg(1, R.RISCV_IOMMU_REG_IOHPMEVT(3))) & 0x7fffn, 0n);
});

Deno.test("IOATS vendor events: DDT/PDT-cache hits and misses, as the IOATS's lookups went", () => {
  const r = rig();
  const ids = [
    SPACEMIT_T100_IOATS_DDTC_HIT,
    SPACEMIT_T100_IOATS_DDTC_MISS,
    SPACEMIT_T100_IOATS_PDTC_HIT,
    SPACEMIT_T100_IOATS_PDTC_MISS,
  ];
  ids.forEach((id, i) => r.program(0, i + 1, id));
  r.run(0);
  const walks = { dd: 0, pdHit: 0, requests: 0 };
  r.ioats.translator.addEventObserver({
    count(id) {
      if (id <= 3) walks.requests++;
      if (id === RISCV_IOMMU_HPMEVENT_DD_WALK) walks.dd++;
      if (id === HPMEVENT_PDT_CACHE_HIT) walks.pdHit++;
    },
  });
  for (let i = 0; i < 10; i++) r.dma(0x50, i);
  r.dma(0x50, 0, { kind: REQ_TRANSLATED });
  for (let i = 0; i < 4; i++) r.dma(0x30, i, { pidValid: true, pid: 1 });
  r.dma(0x30, 0, { pidValid: true, pid: 1 }); // an IOATC hit: the IOATS does nothing
  r.command(IODIR_INVAL_DDT_ALL);
  r.dma(0x50, 0);
  r.dma(0x100_0000, 0); // wider than any directory: no lookup
  const [hit, miss, pHit, pMiss] = ids.map((_, i) => Number(r.ctr(0, i + 1)));
  assert.deepEqual(
    [miss, pMiss],
    [3, 1],
    "0x50 twice (the IODIR dropped it), 0x30; the PC of 0x30",
  );
  assert.equal(miss, walks.dd);
  assert.equal(pHit, walks.pdHit);
  assert.equal(hit + miss, walks.requests - 1, "one lookup per request but the unfit one");
  assert.deepEqual([hit, pHit], [13, 3]);
});

Deno.test("T100: impossible builds are errors; the IOATS needs the T100 HPM", () => {
  const mem = new PhysicalMemory();
  const ioats = new Iommu({ mem, hpm: SPACEMIT_T100_IOATS_HPM });
  const many = Array.from({ length: 65 }, () => ({ devices: [0, 0] as [number, number] }));
  assert.throws(() => new SpacemitT100(ioats, { ioatcs: many }), RangeError);
  assert.throws(() => new SpacemitT100(ioats, { ioatcs: [{ devices: [5, 4] }] }), RangeError);
  assert.throws(() => new SpacemitT100(new Iommu({ mem }), { ioatcs: [] }), RangeError);
  assert.doesNotThrow(() =>
    new SpacemitT100(new Iommu({ mem, caps: { hpm: false } }), { ioatcs: [] })
  );
});

Deno.test("T100: any access to the window, in or out of it, never throws (guest input)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.integer({ min: -8, max: 5 * 4096 }),
          fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          fc.nat(3),
        ),
      ),
      (ops) => {
        const { t100, dma } = rig();
        for (const [off, v, kind] of ops) {
          if (kind === 0) t100.read32(off);
          else if (kind === 1) t100.read64(off);
          else if (kind === 2) t100.write32(off, Number(v & 0xffff_ffffn));
          else t100.write64(off, v);
          dma(0x10, off & 15);
        }
      },
    ),
    { numRuns: Number(Deno.env.get("T100_FUZZ_RUNS") ?? 20) },
  );
});
