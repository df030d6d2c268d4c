import assert from "node:assert/strict";
import fc from "fast-check";
import { Clock } from "../clock.ts";
import { PhysicalMemory } from "../memory.ts";
import { IGS_MSI, type IommuCaps, resolveCaps } from "./caps.ts";
import { type HpmOptions, HpmUnit } from "./hpm.ts";
import { Iommu } from "./iommu.ts";
import * as R from "./regs.ts";
import { newRequest, newResult, REQ_ATS, REQ_TRANSLATED, setIova } from "./request.ts";
import {
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_HPMEVENT_ATS_RQ,
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_G_WALKS,
  RISCV_IOMMU_HPMEVENT_PD_WALK,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_HPMEVENT_TRQ,
  RISCV_IOMMU_HPMEVENT_URQ,
} from "./structs.ts";
import {
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  encodePcTa,
  PageTableBuilder,
  PdtBuilder,
  TEST_RAM_BASE,
  TestPageAllocator,
} from "./testing.ts";

const DATA = 0x9000_0000;
const PMIV_WIRE = 2;
const { URQ, TRQ, ATS, MISS, DDW, PDW, SW, GW } = {
  URQ: RISCV_IOMMU_HPMEVENT_URQ,
  TRQ: RISCV_IOMMU_HPMEVENT_TRQ,
  ATS: RISCV_IOMMU_HPMEVENT_ATS_RQ,
  MISS: RISCV_IOMMU_HPMEVENT_TLB_MISS,
  DDW: RISCV_IOMMU_HPMEVENT_DD_WALK,
  PDW: RISCV_IOMMU_HPMEVENT_PD_WALK,
  SW: RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  GW: RISCV_IOMMU_HPMEVENT_G_WALKS,
};

/** An iohpmevt value. */
interface Selector {
  id: number;
  dmask?: boolean;
  pidPscid?: number;
  didGscid?: number;
  pv?: boolean;
  dv?: boolean;
  idt?: boolean;
}

function evt(s: Selector): bigint {
  return BigInt(s.id) | (s.dmask ? R.RISCV_IOMMU_IOHPMEVT_DMASK : 0n) |
    BigInt(s.pidPscid ?? 0) << 16n | BigInt(s.didGscid ?? 0) << 36n |
    (s.pv ? R.RISCV_IOMMU_IOHPMEVT_PV_PSCV : 0n) | (s.dv ? R.RISCV_IOMMU_IOHPMEVT_DV_GSCV : 0n) |
    (s.idt ? R.RISCV_IOMMU_IOHPMEVT_IDT : 0n);
}

/** One event as the translation path reported it, kept by the test. */
interface Seen {
  id: number;
  did: number;
  pv: boolean;
  pid: number;
  gv: boolean;
  gscid: number;
  sv: boolean;
  pscid: number;
}

/**
 * Spec §5.23 "Performance-monitoring event selectors (iohpmevt1-31)", Table "filtering options",
 * written out row by row: an independent statement of which events a selector counts.
 */
function specCounts(s: Selector, e: Seen): boolean {
  if (s.id !== e.id) return false;
  const idt1Events = [MISS, SW, GW];
  if (s.idt && !idt1Events.includes(e.id)) return false; // "does not increment"
  const did = s.didGscid ?? 0;
  let low = 0; // DMASK: the low bits through the lowest 0 bit are ignored
  if (s.dmask) { while ((did >> low) & 1) low++; }
  const ignored = s.dmask ? (2 ** (low + 1)) - 1 : 0;
  const idMatch = (x: number) => (x | ignored) === (did | ignored);
  if (!s.idt) {
    if (s.pv && !(e.pv && e.pid === (s.pidPscid ?? 0))) return false;
    if (s.dv && !idMatch(e.did)) return false;
  } else {
    if (s.pv && !(e.sv && e.pscid === (s.pidPscid ?? 0))) return false;
    if (s.dv && !(e.gv && idMatch(e.gscid))) return false;
  }
  return true;
}

/**
 * An IOMMU with a clock and a 3LVL directory, pmip on wire 2 (WSI), and devices (with `observe`,
 * a test observer beside the HPM keeps every event in `seen`, so each one reaches the unit):
 * - 0x10..0x17 (one PCI device's functions) and 0x21: Sv39, PSCID 0x100 + did, pages 0..15;
 * - 0x30: PDTV with processes 1 and 2 (PSCID 0x201, 0x202), each Sv39 over pages 0..15;
 * - 0x40: G stage only (GSCID 7), and 0x41: two stages (GSCID 9, PSCID 0x141);
 * - 0x50: EN_ATS, Bare stages (Translated and ATS requests).
 */
function rig(hpm: HpmOptions = {}, capsOpt: Partial<IommuCaps> = {}, observe = true) {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 2 ** 32);
  const alloc = new TestPageAllocator();
  const clock = new Clock();
  const caps = resolveCaps(capsOpt);
  const wires = new Map<number, boolean>();
  const iommu = new Iommu({
    mem,
    caps: capsOpt,
    clock,
    hpm,
    irq: { setWire: (l, v) => wires.set(l, v) },
  });
  const ddt = new DdtBuilder(mem, alloc, 4, caps.msiFlat);
  const sv39 = () => {
    const pt = new PageTableBuilder(mem, alloc, "sv39");
    for (let p = 0; p < 16; p++) pt.map(p * 4096, DATA + p * 4096);
    return pt;
  };
  for (const did of [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x21]) {
    ddt.set(did, { fsc: encodeAtp(8, sv39().root), ta: encodeDcTa(0x100 + did) });
  }
  const pdt = new PdtBuilder(mem, alloc, 1);
  pdt.set(1, encodePcTa(0x201), encodeAtp(8, sv39().root));
  pdt.set(2, encodePcTa(0x202), encodeAtp(8, sv39().root));
  ddt.set(0x30, { tc: RISCV_IOMMU_DC_TC_PDTV, fsc: encodeAtp(1, pdt.root) });
  const g = new PageTableBuilder(mem, alloc, "sv39x4");
  const fs = sv39();
  for (const pn of fs.pages) g.map(pn * 4096, pn * 4096);
  for (let p = 0; p < 16; p++) g.map(p * 4096, DATA + p * 4096);
  for (let p = 0; p < 16; p++) g.map(DATA + p * 4096, DATA + p * 4096);
  ddt.set(0x40, { iohgatp: encodeIohgatp(8, 7, g.root) });
  ddt.set(0x41, {
    iohgatp: encodeIohgatp(8, 9, g.root),
    fsc: encodeAtp(8, fs.root),
    ta: encodeDcTa(0x141),
  });
  ddt.set(0x50, { tc: RISCV_IOMMU_DC_TC_EN_ATS });
  iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(ddt.rootPn) << 10n | 4n);
  iommu.write32(R.RISCV_IOMMU_REG_FCTL, R.RISCV_IOMMU_FCTL_WSI);
  iommu.write64(R.RISCV_IOMMU_REG_ICVEC, BigInt(PMIV_WIRE) << 8n);

  const seen: Seen[] = [];
  if (observe) {
    iommu.translator.addEventObserver({
      count: (id, did, pv, pid, gv, gscid, sv, pscid) =>
        void seen.push({ id, did, pv, pid, gv, gscid, sv, pscid }),
    });
  }
  const res = newResult();
  /** Sends one request; returns its status. */
  const dma = (did: number, page: number, init: { pid?: number; kind?: 0 | 1 | 2 } = {}) => {
    const req = newRequest({
      deviceId: did,
      pidValid: init.pid !== undefined,
      pid: init.pid ?? 0,
      kind: init.kind ?? 0,
    });
    setIova(req, (init.kind === REQ_TRANSLATED ? DATA : 0) + page * 4096);
    iommu.translate(req, res);
    return res.status;
  };
  const program = (n: number, s: Selector) => iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(n), evt(s));
  const ctr = (n: number) => iommu.read64(R.RISCV_IOMMU_REG_IOHPMCTR(n));
  const ipsr = () => iommu.read32(R.RISCV_IOMMU_REG_IPSR);
  return { mem, clock, iommu, wires, seen, dma, program, ctr, ipsr };
}

/** Every kind of traffic the rig's devices make, `rounds` times over pages 0..`pages`-1. */
function traffic(r: ReturnType<typeof rig>, rounds = 2, pages = 4) {
  for (let k = 0; k < rounds; k++) {
    for (let p = 0; p < pages; p++) {
      for (const did of [0x10, 0x11, 0x13, 0x17, 0x21, 0x40, 0x41]) r.dma(did, p);
      r.dma(0x30, p, { pid: 1 });
      r.dma(0x30, p, { pid: 2 });
      r.dma(0x50, p, { kind: REQ_TRANSLATED });
      r.dma(0x50, p, { kind: REQ_ATS });
    }
    r.iommu.translator.flushAll(); // so walks happen again
  }
}

const UNINHIBIT_ALL = 0;

Deno.test("HPM §5.23: counters 1–8 count the standard events 1–8 exactly as the translation path reports them", () => {
  const r = rig();
  for (let n = 1; n <= 8; n++) r.program(n, { id: n });
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, UNINHIBIT_ALL);
  traffic(r, 3, 5);
  const tally = (id: number) => r.seen.filter((e) => e.id === id).length;
  for (let n = 1; n <= 8; n++) assert.equal(r.ctr(n), BigInt(tally(n)), `event ${n}`);
  // Issued by the test: 3 rounds × 5 pages × (7 devices + 2 processes) Untranslated, 15 each of
  // Translated and ATS; every round starts cold, so each Untranslated request misses once per page.
  assert.deepEqual([r.ctr(1), r.ctr(2), r.ctr(3)], [135n, 15n, 15n]);
  assert.equal(r.ctr(4), 135n, "no request repeats a page in a round: each one misses");
  assert.ok(r.ctr(5) > 0n && r.ctr(6) > 0n && r.ctr(7) > 0n && r.ctr(8) > 0n);
  assert.equal(r.ipsr(), 0, "no overflow, no pmip");
});

Deno.test("HPM §5.23, filtering options: any selector counts the events the spec's table selects (property)", () => {
  const runs = Number(Deno.env.get("HPM_PROP_RUNS") ?? 25);
  const selector = fc.record({
    id: fc.integer({ min: 1, max: 8 }),
    dmask: fc.boolean(),
    pidPscid: fc.constantFrom(0, 1, 2, 0x111, 0x141, 0x201, 0x202),
    didGscid: fc.constantFrom(0x10, 0x11, 0x13, 0x17, 0x1f, 0x21, 0x30, 0x40, 0x41, 7, 9, 0x7, 0xf),
    pv: fc.boolean(),
    dv: fc.boolean(),
    idt: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(selector, { minLength: 8, maxLength: 8 }), (sels) => {
      const r = rig();
      sels.forEach((s, i) => r.program(i + 1, s));
      r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, UNINHIBIT_ALL);
      traffic(r, 1, 3);
      sels.forEach((s, i) => {
        const want = r.seen.filter((e) => specCounts(s, e)).length;
        assert.equal(r.ctr(i + 1), BigInt(want), JSON.stringify(s));
      });
    }),
    { numRuns: runs },
  );
});

Deno.test("HPM §5.23, filtering options: each filter, one case each", async (t) => {
  const count = (sel: Selector, run: (r: ReturnType<typeof rig>) => void) => {
    const r = rig();
    r.program(1, sel);
    r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, UNINHIBIT_ALL);
    run(r);
    return Number(r.ctr(1));
  };
  const each = (r: ReturnType<typeof rig>, dids: number[]) => dids.forEach((d) => r.dma(d, 0));
  await t.step("no filter: every Untranslated request", () => {
    assert.equal(count({ id: URQ }, (r) => each(r, [0x10, 0x11, 0x21])), 3);
  });
  await t.step("DV_GSCV, IDT=0: only device_id 0x11", () => {
    assert.equal(
      count({ id: URQ, dv: true, didGscid: 0x11 }, (r) => each(r, [0x10, 0x11, 0x11, 0x21])),
      2,
    );
  });
  await t.step("DMASK: DID_GSCID ...011 is seg:bus:dev, any function (0x10–0x17)", () => {
    const sel = { id: URQ, dv: true, dmask: true, didGscid: 0x13 };
    assert.equal(count(sel, (r) => each(r, [0x10, 0x13, 0x17, 0x21])), 3);
    const bus = { id: URQ, dv: true, dmask: true, didGscid: 0x7f }; // ..0111_1111: bus 0
    assert.equal(count(bus, (r) => each(r, [0x10, 0x21, 0x41])), 3);
  });
  await t.step(
    "PV_PSCV, IDT=0: process_id 2 only; requests without a process_id do not count",
    () => {
      const sel = { id: URQ, pv: true, pidPscid: 2 };
      assert.equal(
        count(sel, (r) => {
          r.dma(0x30, 0, { pid: 1 });
          r.dma(0x30, 0, { pid: 2 });
          r.dma(0x10, 0);
        }),
        1,
      );
      const zero = { id: URQ, pv: true, pidPscid: 0 };
      assert.equal(count(zero, (r) => each(r, [0x10, 0x21])), 0, "no process_id is not process 0");
    },
  );
  await t.step("DV and PV, IDT=0: device 0x30 and process 1", () => {
    const sel = { id: URQ, pv: true, pidPscid: 1, dv: true, didGscid: 0x30 };
    assert.equal(
      count(sel, (r) => {
        r.dma(0x30, 0, { pid: 1 });
        r.dma(0x30, 1, { pid: 2 });
      }),
      1,
    );
  });
  await t.step(
    "IDT=1, DV_GSCV: TLB misses with a valid GSCID 9 (device 0x41, not the G-less ones)",
    () => {
      const sel = { id: MISS, idt: true, dv: true, didGscid: 9 };
      assert.equal(count(sel, (r) => each(r, [0x41, 0x40, 0x10, 0x41])), 1, "the second 0x41 hits");
    },
  );
  await t.step("IDT=1, PV_PSCV: first-stage walks of PSCID 0x202 (process 2)", () => {
    const sel = { id: SW, idt: true, pv: true, pidPscid: 0x202 };
    assert.equal(
      count(sel, (r) => {
        r.dma(0x30, 0, { pid: 1 });
        r.dma(0x30, 0, { pid: 2 });
        r.dma(0x30, 1, { pid: 2 });
      }),
      2,
    );
  });
  await t.step("IDT=1, DV and PV: G-stage walks of GSCID 7 need a PSCID too: none", () => {
    const sel = { id: GW, idt: true, dv: true, didGscid: 7, pv: true, pidPscid: 0 };
    assert.equal(count(sel, (r) => each(r, [0x40, 0x41])), 0);
    assert.equal(count({ id: GW, idt: true, dv: true, didGscid: 7 }, (r) => each(r, [0x40])), 1);
  });
});

Deno.test("HPM §5.23, Standard Events list: an event whose IDT setting is unsupported does not count", () => {
  for (
    const [id, idt1] of [
      [URQ, false],
      [TRQ, false],
      [ATS, false],
      [MISS, true],
      [DDW, false],
      [PDW, false],
      [SW, true],
      [GW, true],
    ] as const
  ) {
    const r = rig();
    r.program(1, { id, idt: true }); // IDT=1, no ID filter
    r.program(2, { id }); // IDT=0
    r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, UNINHIBIT_ALL);
    traffic(r, 1, 2);
    assert.ok(r.ctr(2) > 0n, `event ${id} happened`);
    assert.equal(r.ctr(1), idt1 ? r.ctr(2) : 0n, `event ${id} with IDT=1`);
  }
});

Deno.test("HPM §5.20 iocountinh: inhibited counters hold their value; clearing the bit resumes counting", () => {
  const r = rig();
  r.program(1, { id: URQ });
  r.program(2, { id: URQ });
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1 << 2 | 1); // counter 2 and cycles inhibited
  r.dma(0x10, 0);
  r.dma(0x10, 1);
  assert.deepEqual([r.ctr(1), r.ctr(2)], [2n, 0n]);
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1 << 1 | 1);
  r.dma(0x10, 2);
  assert.deepEqual([r.ctr(1), r.ctr(2)], [2n, 1n]);
  r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(2), 0n);
  r.dma(0x10, 3);
  assert.equal(r.ctr(2), 1n, "eventID 0 counts nothing; the counter keeps its value");
  r.clock.advance(1000);
  assert.equal(r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMCYCLES), 0n, "CY inhibits iohpmcycles");
});

Deno.test("HPM §5.22–§5.23 overflow at a 16-bit width: OF, iocountovf and pmip on icvec.pmiv; a handler gets the exact total", () => {
  const r = rig({ counterBits: 16 });
  r.program(3, { id: URQ });
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1); // all but cycles count
  // A perf-like handler, run when the pmip wire goes high: inhibit, fold the wrapped counter
  // into the total, clear OF and pmip, resume (drivers re-arm this way).
  let total = 0, interrupts = 0;
  const handle = () => {
    interrupts++;
    const iommu = r.iommu;
    iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0xffff_ffff);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IOCOUNTOVF), 1 << 3, "iocountovf shadows OF");
    const e = iommu.read64(R.RISCV_IOMMU_REG_IOHPMEVT(3));
    assert.ok(e & R.RISCV_IOMMU_IOHPMEVT_OF);
    total += 2 ** 16;
    iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(3), e & ~R.RISCV_IOMMU_IOHPMEVT_OF);
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_PMIP);
    iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1);
  };
  const N = 150_000;
  for (let i = 0; i < N; i++) {
    r.dma(0x10, i & 7);
    if (r.wires.get(PMIV_WIRE)) handle();
  }
  total += Number(r.ctr(3));
  assert.equal(total, N);
  assert.equal(interrupts, 2);
  assert.equal(r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMCTR(3)), BigInt(N % 2 ** 16));

  // OF already set: the next overflow raises no interrupt (OF doubles as interrupt disable).
  r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(3), 0xffffn);
  r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(3), evt({ id: URQ }) | R.RISCV_IOMMU_IOHPMEVT_OF);
  r.dma(0x10, 0);
  assert.equal(r.ctr(3), 0n, "wrapped");
  assert.equal(r.ipsr(), 0);
  assert.equal(r.wires.get(PMIV_WIRE), false);
});

Deno.test("HPM: pmip by MSI, one message per overflow once software cleared pmip and OF", () => {
  const r = rig({}, { igs: IGS_MSI });
  const IMSIC = DATA + 0x100_0000;
  r.iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 0x0500n); // pmiv 5
  r.iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(5), BigInt(IMSIC));
  r.iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(5), 0x77);
  r.iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(5), 0);
  r.program(3, { id: URQ });
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1);
  let sent = 0;
  const overflow = () => {
    r.mem.write32(IMSIC, 0);
    r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(3), ~0n);
    r.dma(0x10, 0);
    if (r.mem.read32(IMSIC) === 0x77) sent++;
  };
  overflow();
  assert.equal(sent, 1);
  r.iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_PMIP);
  r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(3), evt({ id: URQ })); // the handler clears OF
  overflow();
  assert.equal(sent, 2, "the second overflow interrupts again");
  r.iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_PMIP);
  overflow();
  assert.equal(sent, 2, "OF still 1: no interrupt");
});

Deno.test("HPM §5.21 iohpmcycles: counts simulated time; wrapping its width sets OF and raises pmip when it happens", () => {
  const r = rig({ cycleBits: 16, cyclesPerNs: 2 });
  r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMCYCLES, 0xff00n);
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0xffff_fffe); // cycles only
  r.clock.advance(100);
  assert.equal(r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMCYCLES), 0xff00n + 200n);
  r.clock.advance(27); // 254 cycles in: 2 short of 2^16
  assert.equal(r.ipsr(), 0);
  r.clock.advance(1);
  assert.equal(r.ipsr(), R.RISCV_IOMMU_IPSR_PMIP, "the overflow interrupt comes on time");
  assert.equal(r.wires.get(PMIV_WIRE), true);
  assert.equal(
    r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMCYCLES),
    R.RISCV_IOMMU_IOHPMCYCLES_OF | 0n,
    "wrapped to 0 with OF",
  );
  assert.equal(r.iommu.read32(R.RISCV_IOMMU_REG_IOCOUNTOVF), R.RISCV_IOMMU_IOCOUNTOVF_CY);
  r.iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_PMIP);
  r.clock.advance(2 ** 15 + 5); // wraps again with OF still set: no interrupt
  assert.equal(r.ipsr(), 0);
  assert.equal(r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMCYCLES), R.RISCV_IOMMU_IOHPMCYCLES_OF | 10n);
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0xffff_ffff);
  r.clock.advance(10_000_000);
  assert.equal(r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMCYCLES), R.RISCV_IOMMU_IOHPMCYCLES_OF | 10n);
  assert.equal(r.clock.pending, 0, "an inhibited cycle counter schedules nothing");
});

Deno.test("HPM WARL: eventID, counter widths, implemented counters (Linux probes iocountinh with ones)", () => {
  const r = rig({ counters: 7, counterBits: 40, cycleBits: 48 });
  const io = r.iommu;
  io.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0xffff_ffff);
  assert.equal(io.read32(R.RISCV_IOMMU_REG_IOCOUNTINH), 0xff, "CY and 7 counters");
  io.write64(R.RISCV_IOMMU_REG_IOHPMCYCLES, ~0n);
  assert.equal(
    io.read64(R.RISCV_IOMMU_REG_IOHPMCYCLES),
    R.RISCV_IOMMU_IOHPMCYCLES_OF | (2n ** 48n - 1n),
  );
  io.write64(R.RISCV_IOMMU_REG_IOHPMCTR(7), ~0n);
  assert.equal(io.read64(R.RISCV_IOMMU_REG_IOHPMCTR(7)), 2n ** 40n - 1n);
  io.write32(R.RISCV_IOMMU_REG_IOHPMCTR(6) + 4, 0xffff_ffff);
  assert.equal(io.read64(R.RISCV_IOMMU_REG_IOHPMCTR(6)), 0xff_0000_0000n, "32-bit halves too");
  io.write64(R.RISCV_IOMMU_REG_IOHPMCTR(8), ~0n);
  io.write64(R.RISCV_IOMMU_REG_IOHPMEVT(8), 1n);
  assert.deepEqual([
    io.read64(R.RISCV_IOMMU_REG_IOHPMCTR(8)),
    io.read64(R.RISCV_IOMMU_REG_IOHPMEVT(8)),
  ], [0n, 0n]);
  for (const bad of [0x7fffn, 9n, 0x40n, 0x4000n]) {
    io.write64(R.RISCV_IOMMU_REG_IOHPMEVT(1), bad | R.RISCV_IOMMU_IOHPMEVT_DMASK);
    assert.equal(
      io.read64(R.RISCV_IOMMU_REG_IOHPMEVT(1)),
      R.RISCV_IOMMU_IOHPMEVT_DMASK,
      `eventID ${bad} reads 0`,
    );
  }
  io.write64(R.RISCV_IOMMU_REG_IOHPMEVT(1), ~0n & ~0x7fffn | 8n);
  assert.equal(
    io.read64(R.RISCV_IOMMU_REG_IOHPMEVT(1)),
    ~0n & ~0x7ff7n & (2n ** 64n - 1n),
    "every other field is RW",
  );
  io.write32(R.RISCV_IOMMU_REG_IOCOUNTOVF, 0);
  assert.equal(
    io.read32(R.RISCV_IOMMU_REG_IOCOUNTOVF),
    0b11,
    "RO: OF of cycles and counter 1 as written",
  );
  assert.equal(r.ipsr(), 0, "software setting OF is no overflow");
});

Deno.test("HPM global filter (SpacemiT T100): iohpmevt1's filter applies to every counter; the others' are storage", () => {
  const r = rig({ globalFilter: true });
  r.program(1, { id: URQ, dv: true, didGscid: 0x21 });
  r.program(2, { id: MISS, dv: true, didGscid: 0x10 }); // its own filter is ignored
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1);
  for (const did of [0x10, 0x21, 0x21]) r.dma(did, 0);
  assert.deepEqual([r.ctr(1), r.ctr(2)], [2n, 1n], "both filter on device 0x21");
  assert.equal(
    r.iommu.read64(R.RISCV_IOMMU_REG_IOHPMEVT(2)),
    evt({ id: MISS, dv: true, didGscid: 0x10 }),
  );
  r.program(1, { id: URQ, idt: true }); // IDT=1 globally: URQ no longer counts, TLB misses do
  for (const did of [0x10, 0x21]) r.dma(did, 1);
  assert.deepEqual([r.ctr(1), r.ctr(2)], [2n, 3n]);
});

Deno.test("HpmUnit: impossible hardware variants are build errors", () => {
  const wiring = { overflow: () => {} };
  for (
    const opts of [{ counters: 0 }, { counters: 32 }, { counterBits: 65 }, { cycleBits: 64 }, {
      cyclesPerNs: 0,
    }, { events: [{ id: 0x8000, idt1: false }] }]
  ) {
    assert.throws(() => new HpmUnit(opts, wiring), RangeError, JSON.stringify(opts));
  }
});

Deno.test("HPM arming: the unit observes the translator only while a counter can count", () => {
  const r = rig();
  const hpm = r.iommu.hpm!;
  const observing = () => r.iommu.translator.eventObservers.includes(hpm);
  assert.equal(observing(), false, "reset: everything inhibited");
  r.program(1, { id: URQ });
  assert.equal(observing(), false, "still inhibited");
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0);
  assert.equal(observing(), true);
  r.program(1, { id: URQ, idt: true }); // unsupported IDT: cannot count
  assert.equal(observing(), false);
  assert.equal(rig({}, { hpm: false }).iommu.hpm, null, "no HPM without capabilities.HPM");
});

/** What software sees of an HPM: every counter, selector and interrupt register. */
function hpmState(r: ReturnType<typeof rig>): bigint[] {
  const regs = [R.RISCV_IOMMU_REG_IOCOUNTOVF, R.RISCV_IOMMU_REG_IPSR];
  for (let n = 1; n <= 8; n++) {
    regs.push(R.RISCV_IOMMU_REG_IOHPMCTR(n), R.RISCV_IOMMU_REG_IOHPMEVT(n));
  }
  return regs.map((off) => r.iommu.read64(off));
}

Deno.test("HPM bulk counting: an unfiltered counter counts what it would count one by one, through overflows, register accesses and inhibits (property)", () => {
  const runs = Number(Deno.env.get("HPM_PROP_RUNS") ?? 25);
  const selector = fc.record({
    id: fc.integer({ min: 1, max: 8 }),
    pidPscid: fc.constantFrom(0, 1, 0x111),
    didGscid: fc.constantFrom(0x10, 0x11, 0x21, 9),
    dv: fc.boolean(),
    idt: fc.boolean(),
  });
  const step = fc.oneof(
    fc.record({ dma: fc.constantFrom(0x10, 0x11, 0x21, 0x30, 0x40, 0x41, 0x50), page: fc.nat(7) }),
    fc.record({ read: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ write: fc.integer({ min: 1, max: 8 }), value: fc.bigInt(0n, 0xffn) }),
    fc.record({ inhibit: fc.nat(0x1ff) }),
    fc.record({ flush: fc.constant(true) }),
  );
  fc.assert(
    fc.property(
      fc.array(selector, { minLength: 8, maxLength: 8 }),
      fc.array(step, { maxLength: 80 }),
      (sels, steps) => {
        // One IOMMU whose events also reach an observer, so each one reaches the unit, and one
        // where nothing else observes, so the unit takes what no filter looks at in bulk.
        const each = rig({ counterBits: 8 }), bulk = rig({ counterBits: 8 }, {}, false);
        for (const r of [each, bulk]) {
          sels.forEach((s, i) => r.program(i + 1, s));
          r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, UNINHIBIT_ALL);
        }
        for (const st of steps) {
          for (const r of [each, bulk]) {
            if ("dma" in st) {
              const kind = st.dma === 0x50 ? REQ_TRANSLATED : 0;
              r.dma(st.dma, st.page, st.dma === 0x30 ? { pid: 1 } : { kind });
            } else if ("read" in st) r.ctr(st.read);
            else if ("write" in st) r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(st.write), st.value);
            else if ("inhibit" in st) r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, st.inhibit);
            else r.iommu.translator.flushAll();
          }
          assert.deepEqual(hpmState(bulk), hpmState(each));
          assert.equal(bulk.wires.get(PMIV_WIRE), each.wires.get(PMIV_WIRE));
        }
      },
    ),
    { numRuns: runs },
  );
});

/** Counts the calls the rig's HPM unit gets, one per event it is told of one by one. */
function countCalls(r: ReturnType<typeof rig>): () => number {
  const hpm = r.iommu.hpm!;
  const count = hpm.count.bind(hpm);
  let calls = 0;
  hpm.count = (...a) => {
    calls++;
    count(...a);
  };
  return () => calls;
}

Deno.test("HPM bulk counting: an unfiltered counter overflows at the exact request, and the unit hears of no other one", () => {
  const r = rig({ counterBits: 8 }, {}, false);
  const calls = countCalls(r);
  r.program(1, { id: URQ });
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1);
  r.iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(1), 250n);
  for (let i = 1; i <= 5; i++) {
    r.dma(0x10, 0);
    assert.equal(r.ipsr(), 0, `request ${i}: 250 + ${i} < 256`);
  }
  r.dma(0x10, 0);
  assert.equal(r.ipsr(), R.RISCV_IOMMU_IPSR_PMIP, "the sixth request wraps the counter");
  assert.equal(r.wires.get(PMIV_WIRE), true);
  assert.equal(r.ctr(1), 0n);
  assert.equal(calls(), 1, "only the overflowing request reached the unit one by one");
  for (let i = 0; i < 1000; i++) r.dma(0x10, i & 7);
  assert.equal(r.ctr(1), 1000n % 256n);
  assert.equal(calls(), 4, "one call per overflow");
});

Deno.test("HPM counting: a filtered counter looks at every event, with its IDs", () => {
  const r = rig({}, {}, false);
  const calls = countCalls(r);
  r.program(1, { id: URQ, dv: true, didGscid: 0x11 });
  r.iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 1);
  for (const did of [0x10, 0x11, 0x21, 0x11]) r.dma(did, 0);
  assert.equal(calls(), 4);
  assert.equal(r.ctr(1), 2n);
});
