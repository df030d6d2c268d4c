/**
 * The hardware performance monitor of spec §5.19–§5.23 (`iocountovf`, `iocountinh`,
 * `iohpmcycles`, `iohpmctr1-31`, `iohpmevt1-31`) as a counting unit: the cycle counter follows
 * the simulated clock, the event counters count what the translation path reports to them (an
 * {@linkcode HpmEventSink}), through each counter's filter, and an overflow sets the counter's OF
 * bit and, when OF was clear, calls the unit's overflow line (`ipsr.pmip` on the IOMMU).
 *
 * The register block sits at `iocountovf` (0x58) of its 4 KiB page, in the IOMMU's page and in
 * any vendor unit that repeats the layout (a SpacemiT T100 IOATC), so offsets here are those of
 * the page.
 *
 * Counting allocates nothing and uses no `bigint`: each counter keeps its register value as of
 * its last update and a countdown of the events it may take before it must be brought up to date
 * (at its overflow, or after 2^52), so an event is one decrement and one compare; software reading
 * or writing the counter brings it up to date. Each event ID has a precomputed set of the counters
 * that may count it (and the one counter, when a single unfiltered one does), rebuilt on register
 * writes. An event that one unfiltered counter alone counts need not even reach the unit one by
 * one: as an {@linkcode HpmBulkSink} the unit lets the translation path's countdown take it up to
 * the event before the counter's overflow, and counts what passed in bulk before any register
 * access.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { hi32, join64, lo32 } from "../_u64.ts";
import type { HpmBulkSink, HpmEventPort } from "./hpm_event.ts";
import {
  RISCV_IOMMU_IOHPMCYCLES_OF,
  RISCV_IOMMU_IOHPMEVT_CNT,
  RISCV_IOMMU_IOHPMEVT_DID_GSCID,
  RISCV_IOMMU_IOHPMEVT_DMASK,
  RISCV_IOMMU_IOHPMEVT_DV_GSCV,
  RISCV_IOMMU_IOHPMEVT_EVENT_ID,
  RISCV_IOMMU_IOHPMEVT_IDT,
  RISCV_IOMMU_IOHPMEVT_OF,
  RISCV_IOMMU_IOHPMEVT_PID_PSCID,
  RISCV_IOMMU_IOHPMEVT_PV_PSCV,
  RISCV_IOMMU_REG_IOCOUNTINH,
  RISCV_IOMMU_REG_IOCOUNTOVF,
  RISCV_IOMMU_REG_IOHPMCTR_BASE,
  RISCV_IOMMU_REG_IOHPMCYCLES,
  RISCV_IOMMU_REG_IOHPMEVT_BASE,
} from "./regs.ts";
import {
  RISCV_IOMMU_HPMEVENT_ATS_RQ,
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_G_WALKS,
  RISCV_IOMMU_HPMEVENT_PD_WALK,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_HPMEVENT_TRQ,
  RISCV_IOMMU_HPMEVENT_URQ,
} from "./structs.ts";

/** First offset past the HPM block (`iohpmevt31` ends at 0x258). */
const HPM_BLOCK_END = RISCV_IOMMU_REG_IOHPMEVT_BASE + RISCV_IOMMU_IOHPMEVT_CNT * 8;

/** Whether page offset `offset` is in the HPM block (`iocountovf` through `iohpmevt31`). */
export function inHpmBlock(offset: number): boolean {
  return offset >= RISCV_IOMMU_REG_IOCOUNTOVF && offset < HPM_BLOCK_END;
}

/** An event a unit counts, and whether it supports filtering by GSCID/PSCID (IDT=1). */
export interface HpmEvent {
  /** The `eventID` that selects it. */
  readonly id: number;
  /** IDT=1 is supported (IDT=0, device_id/process_id filtering, always is). */
  readonly idt1: boolean;
}

/** The standard events of spec §5.23 Table "Standard Events list", with their IDT settings. */
export const STANDARD_HPM_EVENTS: readonly HpmEvent[] = Object.freeze([
  { id: RISCV_IOMMU_HPMEVENT_URQ, idt1: false },
  { id: RISCV_IOMMU_HPMEVENT_TRQ, idt1: false },
  { id: RISCV_IOMMU_HPMEVENT_ATS_RQ, idt1: false },
  { id: RISCV_IOMMU_HPMEVENT_TLB_MISS, idt1: true },
  { id: RISCV_IOMMU_HPMEVENT_DD_WALK, idt1: false },
  { id: RISCV_IOMMU_HPMEVENT_PD_WALK, idt1: false },
  { id: RISCV_IOMMU_HPMEVENT_S_VS_WALKS, idt1: true },
  { id: RISCV_IOMMU_HPMEVENT_G_WALKS, idt1: true },
]);

/** The hardware variant of an HPM unit. Every field has a default. */
export interface HpmOptions {
  /** Programmable counters `iohpmctr1..N`, 1..31. Default 31. */
  counters?: number;
  /** Width of each `iohpmctrN` in bits, 1..64 (higher bits read 0). Default 64. */
  counterBits?: number;
  /** Width of `iohpmcycles.counter` in bits, 1..63. Default 63. */
  cycleBits?: number;
  /** `iohpmcycles` increments per nanosecond of simulated time (the IOMMU's clock in GHz). Default 1. */
  cyclesPerNs?: number;
  /** The events `eventID` accepts (WARL: any other ID reads back 0). Default the standard ones. */
  events?: readonly HpmEvent[];
  /**
   * One filter for every counter, `iohpmevt1`'s (the SpacemiT T100's "global filter"): the filter
   * fields of `iohpmevt2..31` keep what is written but filter nothing. Default false.
   */
  globalFilter?: boolean;
}

/** What an {@linkcode HpmUnit} is wired to. */
export interface HpmWiring {
  /** The clock `iohpmcycles` counts; without one it holds what was written. */
  clock?: Clock;
  /** Called when a counter overflows with its OF bit clear (raise `pmip`). */
  overflow: () => void;
  /** Called when the unit starts or stops having a counter that can count an event. */
  armed?: (armed: boolean) => void;
}

const PV = 1, DV = 2, IDT = 4;
const DID_SHIFT = 36n, PID_SHIFT = 16n;

/**
 * One HPM register block and its counting.
 *
 * Behaviour where the spec leaves room:
 * - Reset: every counter inhibited (`iocountinh` reads all implemented bits set), counters,
 *   selectors and OF bits zero. The spec leaves the reset value UNSPECIFIED and recommends
 *   inhibiting an unused cycle counter.
 * - IDT=0 with PV_PSCV=1: a transaction without a process_id does not count (the reference
 *   model's reading of the filtering table; IDT=1 with PV_PSCV=1 likewise needs a PSCID).
 * - Unimplemented counters (above `counters`) read 0 and ignore writes, as do their
 *   `iocountinh` bits; `eventID` reads back 0 for an event the unit does not count, keeping the
 *   other fields of the write.
 * - Writing OF=1 sets it without an interrupt; writing a counter does not touch its OF bit.
 */
export class HpmUnit implements HpmBulkSink {
  /** Number of programmable counters. */
  readonly counters: number;
  /** The translation path's event port while the unit observes it (set by the port). */
  port: HpmEventPort | null = null;

  readonly #clock: Clock | null;
  readonly #overflowLine: () => void;
  readonly #armedLine: ((armed: boolean) => void) | null;
  readonly #globalFilter: boolean;
  readonly #ctrMod: bigint;
  readonly #cyMod: bigint;
  readonly #rate: number;
  /** Per event ID: 1 IDT=0 only, 2 IDT=0/1; 0 not counted. */
  readonly #support: Uint8Array;
  /** Per event ID: the counters (bit N = `iohpmctrN`) that count it now. */
  readonly #armedBy: Int32Array;
  /**
   * Per event ID: N when `iohpmctrN` alone counts it, unfiltered (the common case, one decrement);
   * -1 when several counters or a filter do; 0 when none does.
   */
  readonly #solo: number[];
  /** `iohpmctrN` as last brought up to date. */
  readonly #ctr = new BigUint64Array(32);
  /** Events it could take then before an update: to its overflow, at most 2^52. */
  readonly #budget = new Float64Array(32);
  /** Of those, the ones not counted yet. */
  readonly #left = new Float64Array(32);
  /** `iohpmevtN` without OF. */
  readonly #evt = new BigUint64Array(32);
  readonly #flags = new Uint8Array(32);
  readonly #fPid = new Int32Array(32);
  readonly #fDid = new Int32Array(32);
  readonly #fMask = new Int32Array(32);
  readonly #implemented: number;
  #inh = 0;
  /** OF bits as `iocountovf` shows them. */
  #of = 0;
  #armed = false;
  #cyBase = 0n;
  #cyT0 = 0;
  #cyEvent = -1;

  /** Builds a unit in its reset state. Throws RangeError on impossible options. */
  constructor(opts: HpmOptions, wiring: HpmWiring) {
    const counters = opts.counters ?? RISCV_IOMMU_IOHPMEVT_CNT;
    const counterBits = opts.counterBits ?? 64;
    const cycleBits = opts.cycleBits ?? 63;
    const rate = opts.cyclesPerNs ?? 1;
    const bad = (what: string) => new RangeError(`Cannot build the HPM: ${what}`);
    if (!Number.isInteger(counters) || counters < 1 || counters > RISCV_IOMMU_IOHPMEVT_CNT) {
      throw bad(`${counters} counters (1..31)`);
    }
    if (!Number.isInteger(counterBits) || counterBits < 1 || counterBits > 64) {
      throw bad(`counterBits ${counterBits} (1..64)`);
    }
    if (!Number.isInteger(cycleBits) || cycleBits < 1 || cycleBits > 63) {
      throw bad(`cycleBits ${cycleBits} (1..63)`);
    }
    if (!(rate > 0) || !Number.isFinite(rate)) throw bad(`cyclesPerNs ${rate}`);
    const events = opts.events ?? STANDARD_HPM_EVENTS;
    let maxId = 0;
    for (const e of events) {
      if (!Number.isInteger(e.id) || e.id < 1 || e.id > 0x7fff) throw bad(`event ID ${e.id}`);
      maxId = Math.max(maxId, e.id);
    }
    this.#support = new Uint8Array(maxId + 1);
    for (const e of events) this.#support[e.id] = e.idt1 ? 2 : 1;
    this.#armedBy = new Int32Array(maxId + 1);
    this.#solo = Array.from({ length: maxId + 1 }, () => 0);
    this.counters = counters;
    this.#implemented = (counters === 31 ? 0xffff_ffff : (2 ** (counters + 1)) - 1) | 0;
    this.#ctrMod = 1n << BigInt(counterBits);
    this.#cyMod = 1n << BigInt(cycleBits);
    this.#rate = rate;
    this.#globalFilter = opts.globalFilter ?? false;
    this.#clock = wiring.clock ?? null;
    this.#overflowLine = wiring.overflow;
    this.#armedLine = wiring.armed ?? null;
    this.reset();
  }

  /** Whether some counter can count an event now (not inhibited, with an event it supports). */
  get armed(): boolean {
    return this.#armed;
  }

  /** Whether `eventID` accepts `eventId` (the unit counts it). */
  supports(eventId: number): boolean {
    return eventId > 0 && eventId < this.#support.length && this.#support[eventId] !== 0;
  }

  /** Puts the block in its reset state (see the class). */
  reset(): void {
    this.port?.settle();
    for (let n = 0; n < 32; n++) this.#setCounter(n, 0n);
    this.#evt.fill(0n);
    this.#of = 0;
    this.#inh = this.#implemented;
    this.#cyBase = 0n;
    this.#cyT0 = this.#now();
    this.#decodeAll();
    this.#scheduleCycles();
    this.port?.regrant();
  }

  // -- Counting --

  /**
   * Occurrences of `eventId` the unit may be told of in bulk: up to the one before the overflow
   * of the unfiltered counter that alone counts it; none (-1) while filters or several counters
   * look at it; any number when no counter counts it.
   */
  credit(eventId: number): number {
    const n = eventId < this.#solo.length ? this.#solo[eventId] : 0;
    if (n === 0) return 0x7fff_ffff;
    return n < 0 ? -1 : Math.min(this.#left[n] - 1, 0x7fff_ffff);
  }

  /** Counts `n` occurrences of `eventId` within the {@linkcode credit} it gave. */
  countBulk(eventId: number, n: number): void {
    this.#left[this.#solo[eventId]] -= n;
  }

  /** Counts one occurrence of `eventId` in every counter selecting it whose filter passes. */
  count(
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void {
    const solo = this.#solo;
    if (eventId >= solo.length) return;
    const n = solo[eventId];
    if (n > 0) {
      if (--this.#left[n] <= 0) this.#fold(n);
    } else if (n < 0) {
      this.#countFiltered(eventId, deviceId, pidValid, pid, gscidValid, gscid, pscidValid, pscid);
    }
  }

  /** {@linkcode count} for an event that several counters, or filtered ones, count. */
  #countFiltered(
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void {
    let m = this.#armedBy[eventId];
    while (m !== 0) {
      const n = 31 - Math.clz32(m);
      m ^= 1 << n;
      if (
        this.#flags[n] !== 0 &&
        !this.#passes(n, deviceId, pidValid, pid, gscidValid, gscid, pscidValid, pscid)
      ) continue;
      if (--this.#left[n] <= 0) this.#fold(n);
    }
  }

  /** Whether counter `n`'s filter (spec §5.23 Table "filtering options") passes the event. */
  #passes(
    n: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): boolean {
    const f = this.#flags[n];
    if (f & IDT) {
      if (f & PV && (!pscidValid || pscid !== this.#fPid[n])) return false;
      return !(f & DV) || (gscidValid && (gscid & this.#fMask[n]) === this.#fDid[n]);
    }
    if (f & PV && (!pidValid || pid !== this.#fPid[n])) return false;
    return !(f & DV) || (deviceId & this.#fMask[n]) === this.#fDid[n];
  }

  /** Adds counter `n`'s events since its last update to its value; a wrap is an overflow. */
  #fold(n: number): void {
    const used = this.#budget[n] - this.#left[n];
    if (used === 0) return;
    const v = this.#ctr[n] + BigInt(used);
    const wrapped = v >= this.#ctrMod;
    this.#setCounter(n, wrapped ? v % this.#ctrMod : v);
    if (wrapped) this.#overflow(1 << n);
  }

  #setCounter(n: number, v: bigint): void {
    this.#ctr[n] = v;
    const budget = Math.min(Number(this.#ctrMod - v), 2 ** 52);
    this.#budget[n] = budget;
    this.#left[n] = budget;
  }

  /** Sets the OF bit(s) `bit` of `iocountovf`; a 0→1 change raises the overflow line. */
  #overflow(bit: number): void {
    if ((this.#of & bit) !== 0) return;
    this.#of |= bit;
    this.#overflowLine();
  }

  // -- Registers (offsets in the 4 KiB page) --

  /** Reads 4 bytes of the block at page offset `off` (0x58..0x257, 4-byte aligned). */
  read32(off: number): number {
    this.port?.settle();
    if (off === RISCV_IOMMU_REG_IOCOUNTOVF) return this.#of >>> 0;
    if (off === RISCV_IOMMU_REG_IOCOUNTINH) return this.#inh >>> 0;
    const v = this.#read64(off & ~7);
    return off & 4 ? hi32(v) : lo32(v);
  }

  /** Reads 8 bytes at page offset `off` (8-byte aligned). */
  read64(off: number): bigint {
    this.port?.settle();
    if (off === RISCV_IOMMU_REG_IOCOUNTOVF) return join64(this.#of, this.#inh);
    return this.#read64(off);
  }

  /** Writes 4 bytes; half of a 64-bit register merges with the other half. */
  write32(off: number, v: number): void {
    if (off === RISCV_IOMMU_REG_IOCOUNTOVF) return;
    this.port?.settle();
    if (off === RISCV_IOMMU_REG_IOCOUNTINH) this.#writeInh(v);
    else {
      const base = off & ~7;
      const cur = this.#read64(base);
      const x = BigInt(v >>> 0);
      this.#write64(base, off & 4 ? cur & 0xffff_ffffn | x << 32n : cur & ~0xffff_ffffn | x);
    }
    this.port?.regrant();
  }

  /** Writes 8 bytes (at 0x58: `iocountovf`, read-only, and `iocountinh`). */
  write64(off: number, v: bigint): void {
    this.port?.settle();
    if (off === RISCV_IOMMU_REG_IOCOUNTOVF) this.#writeInh(hi32(v));
    else this.#write64(off, v);
    this.port?.regrant();
  }

  #read64(off: number): bigint {
    if (off === RISCV_IOMMU_REG_IOHPMCYCLES) {
      this.#syncCycles();
      return this.#cyBase | (this.#of & 1 ? RISCV_IOMMU_IOHPMCYCLES_OF : 0n);
    }
    const n = this.#counterAt(off);
    if (n === 0) return 0n;
    if (off < RISCV_IOMMU_REG_IOHPMEVT_BASE) {
      this.#fold(n);
      return this.#ctr[n];
    }
    return this.#evt[n] | ((this.#of & (1 << n)) !== 0 ? RISCV_IOMMU_IOHPMEVT_OF : 0n);
  }

  #write64(off: number, v: bigint): void {
    if (off === RISCV_IOMMU_REG_IOHPMCYCLES) {
      this.#syncCycles();
      this.#cyBase = v & (this.#cyMod - 1n);
      this.#cyT0 = this.#now();
      this.#setOf(1, (v & RISCV_IOMMU_IOHPMCYCLES_OF) !== 0n);
      return this.#scheduleCycles();
    }
    const n = this.#counterAt(off);
    if (n === 0) return;
    if (off < RISCV_IOMMU_REG_IOHPMEVT_BASE) {
      this.#setCounter(n, v & (this.#ctrMod - 1n));
      return;
    }
    this.#setOf(1 << n, (v & RISCV_IOMMU_IOHPMEVT_OF) !== 0n);
    const id = Number(v & RISCV_IOMMU_IOHPMEVT_EVENT_ID);
    const keep = v & ~RISCV_IOMMU_IOHPMEVT_OF;
    this.#evt[n] = id < this.#support.length && this.#support[id] !== 0
      ? keep
      : keep & ~RISCV_IOMMU_IOHPMEVT_EVENT_ID;
    if (this.#globalFilter && n === 1) this.#decodeAll();
    else this.#decode(n);
    this.#rearm();
  }

  /** The counter N of an `iohpmctrN`/`iohpmevtN` offset, or 0 when not implemented. */
  #counterAt(off: number): number {
    const base = off < RISCV_IOMMU_REG_IOHPMEVT_BASE
      ? RISCV_IOMMU_REG_IOHPMCTR_BASE
      : RISCV_IOMMU_REG_IOHPMEVT_BASE;
    const n = ((off - base) >> 3) + 1;
    return n <= this.counters ? n : 0;
  }

  #setOf(bit: number, on: boolean): void {
    this.#of = on ? this.#of | bit : this.#of & ~bit;
  }

  #writeInh(v: number): void {
    this.#syncCycles();
    this.#inh = v & this.#implemented;
    this.#cyT0 = this.#now();
    this.#scheduleCycles();
    this.#rearm();
  }

  // -- Filters and arming --

  #decodeAll(): void {
    for (let n = 1; n <= this.counters; n++) this.#decode(n);
    this.#rearm();
  }

  /** Precomputes counter `n`'s filter from its own `iohpmevtN` or, with a global filter, `iohpmevt1`. */
  #decode(n: number): void {
    const f = this.#evt[this.#globalFilter ? 1 : n];
    this.#flags[n] = (f & RISCV_IOMMU_IOHPMEVT_PV_PSCV ? PV : 0) |
      (f & RISCV_IOMMU_IOHPMEVT_DV_GSCV ? DV : 0) | (f & RISCV_IOMMU_IOHPMEVT_IDT ? IDT : 0);
    const did = Number((f & RISCV_IOMMU_IOHPMEVT_DID_GSCID) >> DID_SHIFT);
    // DMASK ignores the low bits up to and including the lowest 0 bit of DID_GSCID.
    const mask = f & RISCV_IOMMU_IOHPMEVT_DMASK ? ~((did + 1) ^ did) & 0xff_ffff : 0xff_ffff;
    this.#fMask[n] = mask;
    this.#fDid[n] = did & mask;
    this.#fPid[n] = Number((f & RISCV_IOMMU_IOHPMEVT_PID_PSCID) >> PID_SHIFT);
  }

  /** Rebuilds which counters count which event: not inhibited, and an IDT the event supports. */
  #rearm(): void {
    const armedBy = this.#armedBy, solo = this.#solo;
    armedBy.fill(0);
    solo.fill(0);
    let any = false;
    for (let n = 1; n <= this.counters; n++) {
      if (this.#inh & (1 << n)) continue;
      const id = Number(this.#evt[n] & RISCV_IOMMU_IOHPMEVT_EVENT_ID);
      const support = this.#support[id];
      if (id === 0 || support === 0 || (this.#flags[n] & IDT && support !== 2)) continue;
      solo[id] = armedBy[id] === 0 && (this.#flags[n] & (PV | DV)) === 0 ? n : -1;
      armedBy[id] |= 1 << n;
      any = true;
    }
    if (any === this.#armed) return;
    this.#armed = any;
    this.#armedLine?.(any);
  }

  // -- iohpmcycles --

  #now(): number {
    return this.#clock?.now() ?? 0;
  }

  #cyclesRunning(): boolean {
    return this.#clock !== null && (this.#inh & 1) === 0;
  }

  /** Brings `iohpmcycles` up to now; crossing its width sets OF (and raises the line once). */
  #syncCycles(): void {
    if (!this.#cyclesRunning()) return;
    const ticks = Math.floor((this.#now() - this.#cyT0) * this.#rate);
    if (ticks <= 0) return;
    this.#cyT0 += ticks / this.#rate;
    const v = this.#cyBase + BigInt(ticks);
    this.#cyBase = v % this.#cyMod;
    if (v >= this.#cyMod) this.#overflow(1);
  }

  /** Arms a clock event at the cycle counter's next overflow (or disarms it when inhibited). */
  #scheduleCycles(): void {
    const clock = this.#clock;
    if (clock === null) return;
    if (this.#cyEvent >= 0) clock.cancel(this.#cyEvent);
    this.#cyEvent = -1;
    if (!this.#cyclesRunning()) return;
    const at = this.#cyT0 + Number(this.#cyMod - this.#cyBase) / this.#rate;
    this.#cyEvent = clock.schedule(Math.max(Math.ceil(at), clock.now() + 1), () => {
      this.#cyEvent = -1;
      this.#syncCycles();
      this.#scheduleCycles();
    });
  }
}
