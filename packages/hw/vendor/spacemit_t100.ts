/**
 * The SpacemiT T100: a distributed RISC-V IOMMU. Its main unit, the IOATS, is a RISC-V IOMMU (an
 * {@linkcode Iommu} with a T100-flavoured HPM); up to 64 IOATC units sit beside groups of DMA
 * masters, each an IOTLB in front of its masters' requests with its own HPM register block and its
 * own wired PMIV interrupt. Software finds the IOATCs through the DTISR registers in the custom
 * range of the IOATS page and reaches IOATC `i` at the page `(i + 1) · 4 KiB` above the IOATS.
 *
 * The register layout follows the SpacemiT patches "iommu/riscv: Add SpacemiT T100 IOATC HPM
 * support" and "spacemit/t100: Add global filter awareness for RISC-V IOMMU HPM" (v5, February
 * 2026): DTISR0-3 at 0x2B0 with 2 bits per interface (1 = an IOATC); an IOATC page repeats the
 * IOMMU's `ipsr` (for `pmip`) and HPM block (`iocountovf` at 0x58 through `iohpmevt31`). The HPMs
 * share one filter across their counters (the "global filter", `iohpmevt1`'s).
 *
 * DIVERGENCE: the vendor event IDs (0x40–0x43 at the IOATS, 0x40–0x42 at an IOATC) are this
 * model's, chosen below 128 as the T100's own are (the spec sets 16384–32767 aside for custom
 * events; the T100 and the v5 driver use small IDs instead).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { hi32, join64, lo32 } from "../_u64.ts";
import type { MmioHandler } from "../memory.ts";
import { ddtDeviceIdFits } from "../iommu/context.ts";
import {
  type HpmEvent,
  type HpmOptions,
  HpmUnit,
  inHpmBlock,
  STANDARD_HPM_EVENTS,
} from "../iommu/hpm.ts";
import { HPMEVENT_PDT_CACHE_HIT, type HpmEventSink } from "../iommu/hpm_event.ts";
import type { Iommu, IrqSink } from "../iommu/iommu.ts";
import { type AddressSpace, INFO_PBMT_SHIFT, Iotlb } from "../iommu/iotlb.ts";
import {
  type InboundRequest,
  REQ_TRANSLATED,
  REQ_UNTRANSLATED,
  type TranslationPort,
  type TranslationResult,
  XLATE_OK,
} from "../iommu/request.ts";
import {
  RISCV_IOMMU_IPSR_PMIP,
  RISCV_IOMMU_REG_IPSR,
  RISCV_IOMMU_REG_SIZE,
} from "../iommu/regs.ts";
import {
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_HPMEVENT_ATS_RQ,
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_PD_WALK,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_HPMEVENT_TRQ,
  RISCV_IOMMU_HPMEVENT_URQ,
} from "../iommu/structs.ts";
import { vpnLow } from "../iommu/walk.ts";

/** `dtisr0` (4 B, RO): distributed translation interfaces 0–15, 2 status bits each. */
export const RISCV_IOMMU_REG_DTISR_BASE = 0x2b0;
/** Offset of `dtisrN` (N 0..3): interfaces 16N..16N+15. */
export function RISCV_IOMMU_REG_DTISR(n: number): number {
  return RISCV_IOMMU_REG_DTISR_BASE + n * 4;
}
/** Bit position of interface `n`'s status in its `dtisr`. */
export function RISCV_IOMMU_DTI_STS_SHIFT(n: number): number {
  return (n % 16) * 2;
}
/** Interface status: nothing there. */
export const RISCV_IOMMU_DTI_STS_NONE = 0;
/** Interface status: an IOATC. */
export const RISCV_IOMMU_DTI_STS_IOATC = 1;
/** IOATCs a T100 can have. */
export const MAX_RISCV_IOMMU_IOATC = 64;
/** Offset of IOATC `i`'s register page from the IOATS page. */
export function RISCV_IOMMU_IOATC_BASE(i: number): number {
  return (i + 1) * RISCV_IOMMU_REG_SIZE;
}

/** IOATS event: a device context found in the DDT cache. */
export const SPACEMIT_T100_IOATS_DDTC_HIT = 0x40;
/** IOATS event: a device context not in the DDT cache (a DDT walk). */
export const SPACEMIT_T100_IOATS_DDTC_MISS = 0x41;
/** IOATS event: a process context found in the PDT cache. */
export const SPACEMIT_T100_IOATS_PDTC_HIT = 0x42;
/** IOATS event: a process context not in the PDT cache (a PDT walk). */
export const SPACEMIT_T100_IOATS_PDTC_MISS = 0x43;
/** IOATC event: an Untranslated request answered from the IOATC's IOTLB. */
export const SPACEMIT_T100_IOATC_TLB_HIT = 0x40;
/** IOATC event: an Untranslated request the IOATC's IOTLB could not answer (sent to the IOATS). */
export const SPACEMIT_T100_IOATC_TLB_MISS = 0x41;
/** IOATC event: a translation the IOATS returned, cached in the IOATC's IOTLB. */
export const SPACEMIT_T100_IOATC_TLB_FILL = 0x42;

const _idt0 = (id: number): HpmEvent => ({ id, idt1: false });

/**
 * The IOATS's HPM: the standard events, the DDT/PDT-cache events (device_id/process_id filters
 * only) and one filter for all counters. Pass it as the IOATS's `hpm` option.
 */
export const SPACEMIT_T100_IOATS_HPM: HpmOptions = Object.freeze({
  events: Object.freeze([
    ...STANDARD_HPM_EVENTS,
    ...[
      SPACEMIT_T100_IOATS_DDTC_HIT,
      SPACEMIT_T100_IOATS_DDTC_MISS,
      SPACEMIT_T100_IOATS_PDTC_HIT,
      SPACEMIT_T100_IOATS_PDTC_MISS,
    ].map(_idt0),
  ]),
  globalFilter: true,
});

/**
 * An IOATC's events: Untranslated and Translated requests, TLB misses and the vendor TLB events.
 * It sees device_id and process_id, not the GSCID/PSCID a translation is made under, so none
 * supports IDT=1 (a selector with IDT=1 counts nothing).
 */
export const SPACEMIT_T100_IOATC_EVENTS: readonly HpmEvent[] = Object.freeze([
  RISCV_IOMMU_HPMEVENT_URQ,
  RISCV_IOMMU_HPMEVENT_TRQ,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  SPACEMIT_T100_IOATC_TLB_HIT,
  SPACEMIT_T100_IOATC_TLB_MISS,
  SPACEMIT_T100_IOATC_TLB_FILL,
].map(_idt0));

/** One IOATC: the masters it fronts and its hardware variant. */
export interface IoatcOptions {
  /** The device_ids (requester IDs) of its DMA masters: `[first, last]`, inclusive. */
  readonly devices: readonly [number, number];
  /** Entries of its IOTLB. Default 64. */
  readonly iotlbEntries?: number;
  /** Its HPM's counters and widths (the events and the global filter are the IOATC's). */
  readonly hpm?: Pick<HpmOptions, "counters" | "counterBits" | "cycleBits" | "cyclesPerNs">;
}

/** How a {@linkcode SpacemitT100} is put around its IOATS. */
export interface SpacemitT100Options {
  /** The IOATCs, index order (0..64 of them). */
  readonly ioatcs: readonly IoatcOptions[];
  /** The clock the IOATCs' `iohpmcycles` count. */
  readonly clock?: Clock;
  /** The IOATCs' PMIV wires: line `i` is IOATC `i`'s. */
  readonly irq?: IrqSink;
  /** Where requests go past the IOATCs (a trace's wrapper, say). Default the IOATS. */
  readonly upstream?: TranslationPort;
}

/**
 * A T100 around its IOATS: an MMIO window of `(1 + IOATCs) · 4 KiB` (the IOATS page, then one page
 * per IOATC) and the translation port of every DMA master.
 *
 * Model choices:
 * - Requests from a master no IOATC fronts go straight to the IOATS.
 * - An IOATC answers an Untranslated request from its IOTLB when the cached translation allows
 *   the access; otherwise the request goes to the IOATS and a successful answer is cached (the
 *   IOATS caches it in its own IOTLB too). Translated and ATS requests, and privileged ones (a
 *   PASID with Privileged Mode), pass through uncached.
 * - An IOATC tags its entries by requester (device_id and process_id): it never sees the
 *   GSCID/PSCID behind a translation, so it cannot scope an invalidation and drops everything on
 *   each one the IOATS's caches receive (IODIR.INVAL_DDT/PDT, IOTINVAL.VMA/GVMA, reset).
 * - IOATS DDT-cache events: a request in 1LVL–3LVL mode whose device_id fits the directory looks
 *   its device context up once; without a DDT walk that is a hit.
 */
export class SpacemitT100 implements MmioHandler, TranslationPort {
  /** The main unit: a RISC-V IOMMU. */
  readonly ioats: Iommu;
  /** The IOATCs, by index. */
  readonly ioatcs: readonly Ioatc[];
  /** Bytes of the register window. */
  readonly size: number;

  readonly #upstream: TranslationPort;
  readonly #events: _IoatsEvents | null;
  readonly #dtisr = new Uint32Array(4);
  #lastDid = -1;
  #lastIoatc: Ioatc | null = null;

  /**
   * Puts IOATCs around `ioats` (built with `hpm: SPACEMIT_T100_IOATS_HPM` when it has an HPM).
   * Throws RangeError on impossible options.
   */
  constructor(ioats: Iommu, opts: SpacemitT100Options) {
    const n = opts.ioatcs.length;
    if (n > MAX_RISCV_IOMMU_IOATC) {
      throw new RangeError(`Cannot build the T100: ${n} IOATCs (at most ${MAX_RISCV_IOMMU_IOATC})`);
    }
    const hpm = ioats.hpm;
    if (hpm !== null && !hpm.supports(SPACEMIT_T100_IOATS_DDTC_HIT)) {
      throw new RangeError("Cannot build the T100: its IOATS needs hpm: SPACEMIT_T100_IOATS_HPM");
    }
    this.ioats = ioats;
    this.#upstream = opts.upstream ?? ioats;
    this.size = (n + 1) * RISCV_IOMMU_REG_SIZE;
    this.ioatcs = opts.ioatcs.map((o, i) =>
      new Ioatc(i, o, opts.clock, (level) => opts.irq?.setWire(i, level))
    );
    for (let i = 0; i < n; i++) {
      this.#dtisr[i >> 4] |= RISCV_IOMMU_DTI_STS_IOATC << RISCV_IOMMU_DTI_STS_SHIFT(i);
    }
    this.#events = hpm === null ? null : new _IoatsEvents(ioats, hpm);
    if (this.#events !== null) ioats.translator.addEventObserver(this.#events);
    ioats.translator.addInvalidationListener(() => {
      for (const c of this.ioatcs) c.flush();
    });
  }

  // -- TranslationPort --

  /** Translates a master's request: through its IOATC, if one fronts it, else at the IOATS. */
  translate(req: InboundRequest, res: TranslationResult): void {
    const c = this.#ioatcOf(req.deviceId);
    if (c === null) this.#upstream.translate(req, res);
    else c.translate(req, res, this.#upstream);
    this.#events?.commit();
  }

  #ioatcOf(did: number): Ioatc | null {
    if (did === this.#lastDid) return this.#lastIoatc;
    let found: Ioatc | null = null;
    for (const c of this.ioatcs) {
      if (did >= c.first && did <= c.last) {
        found = c;
        break;
      }
    }
    this.#lastDid = did;
    this.#lastIoatc = found;
    return found;
  }

  // -- MmioHandler: the IOATS page, then the IOATC pages --

  /** Reads 4 bytes of the window; outside it, 0. */
  read32(offset: number): number {
    if (!_inWindow(offset, 4, this.size)) return 0;
    if (offset >= RISCV_IOMMU_REG_SIZE) return this.#ioatcAt(offset)?.read32(offset & 0xfff) ?? 0;
    this.#events?.commit();
    if (_isDtisr(offset)) return this.#dtisr[(offset - RISCV_IOMMU_REG_DTISR_BASE) >> 2];
    return this.ioats.read32(offset);
  }

  /** Reads 8 bytes of the window; outside it, 0. */
  read64(offset: number): bigint {
    if (!_inWindow(offset, 8, this.size)) return 0n;
    if (offset >= RISCV_IOMMU_REG_SIZE) return this.#ioatcAt(offset)?.read64(offset & 0xfff) ?? 0n;
    if (_isDtisr(offset)) return join64(this.read32(offset), this.read32(offset + 4));
    this.#events?.commit();
    return this.ioats.read64(offset);
  }

  /** Writes 4 bytes of the window (DTISR is read-only); outside it, ignored. */
  write32(offset: number, value: number): void {
    if (!_inWindow(offset, 4, this.size)) return;
    if (offset >= RISCV_IOMMU_REG_SIZE) {
      return this.#ioatcAt(offset)?.write32(offset & 0xfff, value);
    }
    if (_isDtisr(offset)) return;
    this.ioats.write32(offset, value);
    this.#events?.commit();
  }

  /** Writes 8 bytes of the window; outside it, ignored. */
  write64(offset: number, value: bigint): void {
    if (!_inWindow(offset, 8, this.size)) return;
    if (offset >= RISCV_IOMMU_REG_SIZE) {
      return this.#ioatcAt(offset)?.write64(offset & 0xfff, value);
    }
    if (_isDtisr(offset)) return;
    this.ioats.write64(offset, value);
    this.#events?.commit();
  }

  #ioatcAt(offset: number): Ioatc | undefined {
    return this.ioatcs[(offset >> 12) - 1];
  }
}

/**
 * One IOATC: an IOTLB in front of a group of masters, with an HPM register block and `ipsr.pmip`
 * driving its PMIV wire (level: high while `pmip` is set).
 */
export class Ioatc {
  /** Its index (its page is `RISCV_IOMMU_IOATC_BASE(index)` above the IOATS). */
  readonly index: number;
  /** First device_id it fronts. */
  readonly first: number;
  /** Last device_id it fronts. */
  readonly last: number;
  /** Its performance monitor. */
  readonly hpm: HpmUnit;

  readonly #tlb: Iotlb;
  readonly #spaces = new Map<number, AddressSpace>();
  readonly #setWire: (level: boolean) => void;
  #nextSpace = 1;
  #lastKey = -1;
  #lastSpace: AddressSpace | null = null;
  #ipsr = 0;

  /** Builds IOATC `index`; its PMIV wire is `setWire`. Throws RangeError on impossible options. */
  constructor(
    index: number,
    opts: IoatcOptions,
    clock: Clock | undefined,
    setWire: (level: boolean) => void,
  ) {
    const [first, last] = opts.devices;
    if (
      !(Number.isInteger(first) && Number.isInteger(last) && first >= 0 && first <= last &&
        last < 2 ** 24)
    ) {
      throw new RangeError(`Cannot build IOATC ${index}: devices ${first}..${last}`);
    }
    this.index = index;
    this.first = first;
    this.last = last;
    // Direct-mapped: one way per set, the entries rounded up to a power of two.
    const sets = 2 ** Math.max(0, Math.ceil(Math.log2(Math.max(1, opts.iotlbEntries ?? 64))));
    this.#tlb = new Iotlb({ sets, ways: 1 });
    this.#setWire = setWire;
    this.hpm = new HpmUnit(
      { ...opts.hpm, events: SPACEMIT_T100_IOATC_EVENTS, globalFilter: true },
      { clock, overflow: () => this.#raisePmip() },
    );
  }

  /** Number of valid IOTLB entries. */
  get iotlbSize(): number {
    return this.#tlb.size;
  }

  /** Drops every cached translation. */
  flush(): void {
    this.#tlb.flush();
  }

  /** Answers `req` from the IOTLB or through `upstream`, counting what happened. */
  translate(req: InboundRequest, res: TranslationResult, upstream: TranslationPort): void {
    const hpm = this.hpm;
    const count = hpm.armed;
    const did = req.deviceId, pv = req.pidValid, pid = req.pid;
    if (req.kind !== REQ_UNTRANSLATED) {
      if (count && req.kind === REQ_TRANSLATED) {
        hpm.count(RISCV_IOMMU_HPMEVENT_TRQ, did, pv, pid, false, 0, false, 0);
      }
      return upstream.translate(req, res);
    }
    if (count) hpm.count(RISCV_IOMMU_HPMEVENT_URQ, did, pv, pid, false, 0, false, 0);
    if (pv && req.priv) return upstream.translate(req, res);
    const as = this.#space(did, pv, pid);
    const lo = req.iovaLo, hi = req.iovaHi;
    const vlo = (lo >>> 12) | (hi << 20);
    const vhi = hi >>> 12;
    const tlb = this.#tlb;
    const e = tlb.lookup(vlo, vhi, as);
    if (e >= 0 && tlb.answer(e, vlo, vhi, lo & 0xfff, 1 << req.access, res)) {
      if (count) hpm.count(SPACEMIT_T100_IOATC_TLB_HIT, did, pv, pid, false, 0, false, 0);
      return;
    }
    if (count) {
      hpm.count(RISCV_IOMMU_HPMEVENT_TLB_MISS, did, pv, pid, false, 0, false, 0);
      hpm.count(SPACEMIT_T100_IOATC_TLB_MISS, did, pv, pid, false, 0, false, 0);
    }
    upstream.translate(req, res);
    if (res.status !== XLATE_OK) return;
    const shift = Math.log2(res.size / 4096);
    if (!Number.isInteger(shift) || shift < 0) return;
    const pn = Math.floor(res.pa / 4096);
    tlb.insert(
      vlo,
      vhi,
      shift,
      as,
      pn - vpnLow(vlo, vhi, shift),
      (res.perm & 7) | (res.pbmt << INFO_PBMT_SHIFT),
      shift,
      shift,
      0,
    );
    if (count) hpm.count(SPACEMIT_T100_IOATC_TLB_FILL, did, pv, pid, false, 0, false, 0);
  }

  /** The address space of a requester: its own tag, numbered as requesters show up. */
  #space(did: number, pv: boolean, pid: number): AddressSpace {
    const key = did * 2097152 + (pv ? 1048576 + pid : 0);
    if (key === this.#lastKey) return this.#lastSpace!;
    let as = this.#spaces.get(key);
    if (as === undefined) {
      if (this.#nextSpace > 0xf_ffff) {
        // Out of tags: start over with an empty IOTLB.
        this.#tlb.flush();
        this.#spaces.clear();
        this.#nextSpace = 1;
      }
      as = this.#tlb.space(true, false, 0, this.#nextSpace++);
      this.#spaces.set(key, as);
    }
    this.#lastKey = key;
    this.#lastSpace = as;
    return as;
  }

  // -- Its register page: ipsr and the HPM block; everything else reads 0 --

  /** Reads 4 bytes at `off` of the page. */
  read32(off: number): number {
    if (inHpmBlock(off)) return this.hpm.read32(off);
    return off === RISCV_IOMMU_REG_IPSR ? this.#ipsr : 0;
  }

  /** Reads 8 bytes at `off` of the page. */
  read64(off: number): bigint {
    if (inHpmBlock(off)) return this.hpm.read64(off);
    return join64(this.read32(off), this.read32(off + 4));
  }

  /** Writes 4 bytes: `ipsr.pmip` is RW1C; the HPM registers as the spec's. */
  write32(off: number, v: number): void {
    if (inHpmBlock(off)) return this.hpm.write32(off, v);
    if (off !== RISCV_IOMMU_REG_IPSR || !(v & this.#ipsr & RISCV_IOMMU_IPSR_PMIP)) return;
    this.#ipsr = 0;
    this.#setWire(false);
  }

  /** Writes 8 bytes. */
  write64(off: number, v: bigint): void {
    if (inHpmBlock(off)) return this.hpm.write64(off, v);
    this.write32(off, lo32(v));
    this.write32(off + 4, hi32(v));
  }

  #raisePmip(): void {
    if (this.#ipsr & RISCV_IOMMU_IPSR_PMIP) return;
    this.#ipsr = RISCV_IOMMU_IPSR_PMIP;
    this.#setWire(true);
  }
}

/**
 * The IOATS's vendor events, derived from what its translator reports: DDT/PDT walks are cache
 * misses, `HPMEVENT_PDT_CACHE_HIT` a PDT-cache hit, and a request that needed a device context
 * but no DDT walk a DDT-cache hit, counted once the request is done ({@linkcode commit}).
 */
class _IoatsEvents implements HpmEventSink {
  readonly #ioats: Iommu;
  readonly #hpm: HpmUnit;
  #pending = false;
  #did = 0;
  #pv = false;
  #pid = 0;

  constructor(ioats: Iommu, hpm: HpmUnit) {
    this.#ioats = ioats;
    this.#hpm = hpm;
  }

  count(eventId: number, did: number, pv: boolean, pid: number): void {
    const hpm = this.#hpm;
    if (!hpm.armed) return;
    switch (eventId) {
      case RISCV_IOMMU_HPMEVENT_URQ:
      case RISCV_IOMMU_HPMEVENT_TRQ:
      case RISCV_IOMMU_HPMEVENT_ATS_RQ: {
        this.commit();
        const mode = this.#ioats.translator.ddtpMode;
        const xlvl = mode >= RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL &&
          mode <= RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL;
        if (!xlvl || !ddtDeviceIdFits(mode, did, this.#ioats.caps.msiFlat)) return;
        this.#pending = true;
        this.#did = did;
        this.#pv = pv;
        this.#pid = pid;
        return;
      }
      case RISCV_IOMMU_HPMEVENT_DD_WALK:
        this.#pending = false;
        return hpm.count(SPACEMIT_T100_IOATS_DDTC_MISS, did, pv, pid, false, 0, false, 0);
      case RISCV_IOMMU_HPMEVENT_PD_WALK:
        return hpm.count(SPACEMIT_T100_IOATS_PDTC_MISS, did, pv, pid, false, 0, false, 0);
      case HPMEVENT_PDT_CACHE_HIT:
        return hpm.count(SPACEMIT_T100_IOATS_PDTC_HIT, did, pv, pid, false, 0, false, 0);
    }
  }

  /** Counts the DDT-cache hit of the last request, if it was one. */
  commit(): void {
    if (!this.#pending) return;
    this.#pending = false;
    this.#hpm.count(
      SPACEMIT_T100_IOATS_DDTC_HIT,
      this.#did,
      this.#pv,
      this.#pid,
      false,
      0,
      false,
      0,
    );
  }
}

function _inWindow(offset: number, size: number, window: number): boolean {
  return Number.isInteger(offset) && offset >= 0 && offset <= window - size && offset % size === 0;
}

function _isDtisr(offset: number): boolean {
  return offset >= RISCV_IOMMU_REG_DTISR_BASE && offset < RISCV_IOMMU_REG_DTISR(4);
}
