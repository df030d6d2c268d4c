/**
 * The IOMMU's translation core (spec §2.3 "Process to translate an IOVA"): answers every inbound
 * transaction — Untranslated, Translated and PCIe ATS translation requests, with or without a
 * process_id — from the device directory, process directory, page tables and MSI page tables in
 * memory, through DDT/PDT caches and an IOTLB that the IODIR and IOTINVAL commands invalidate
 * exactly as the spec says.
 *
 * The register file owns the registers and the fault queue: it sets {@linkcode Translator.ddtpMode}
 * and friends on register writes, forwards commands to the invalidation methods, and writes a fault
 * record from a {@linkcode TranslationResult} whose `reported` is true.
 *
 * @module
 */

import type { PhysicalMemory } from "../memory.ts";
import { toNumber64 } from "../_u64.ts";
import type { IommuCaps } from "./caps.ts";
import { type CacheOptions, resolveGeometry, resolveMicroTlb, resolveWalkCache } from "./cache.ts";
import { type DeviceContext, Directory } from "./context.ts";
import { HpmEventPort, type HpmEventSink } from "./hpm_event.ts";
import {
  type AddressSpace,
  INFO_FS_BARE,
  INFO_PBMT_SHIFT,
  Iotlb,
  IOTLB_ANSWERED,
} from "./iotlb.ts";
import { msiAddressMatch, MsiPageTable } from "./msi.ts";
import {
  completionStatus,
  type InboundRequest,
  iovaOf,
  type TranslationPort,
  type TranslationResult,
  XLATE_ABSORBED,
  XLATE_FAULT,
  XLATE_OK,
} from "./request.ts";
import {
  reportedDespiteDtf,
  RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT,
  RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED,
  RISCV_IOMMU_MSI_PTE_M_BASIC,
} from "./structs.ts";
import { PageWalker, vpnLow } from "./walk.ts";
import { WalkCache } from "./walk_cache.ts";

const TWO20 = 1048576;
/**
 * The encodings the translation process tests, as a const enum so that they are literals in the
 * code (a module constant costs a load and a temporal-dead-zone check at every use: several
 * nanoseconds of a walk here): request kinds and access types as `REQ_*` and `ACC_*` in `request.ts`,
 * `ddtp` modes and PTE bits as in `structs.ts`.
 */
const enum C {
  UNTRANSLATED = 0,
  TRANSLATED = 1,
  ATS = 2,
  READ = 0,
  WRITE = 1,
  EXEC = 2,
  MODE_BARE = 1,
  MODE_1LVL = 2,
  MODE_3LVL = 4,
  R = 2,
  W = 4,
  X = 8,
  U = 16,
  G = 32,
  /** log2 pages of a stage that is Bare: larger than any leaf, so the other stage decides. */
  BARE_SHIFT = 63,
  /** HPM event 4, IOTLB miss (`RISCV_IOMMU_HPMEVENT_TLB_MISS`). */
  EV_TLB_MISS = 4,
}
/** Bytes in 2^shift pages, by shift. */
const PAGE_BYTES = Array.from({ length: C.BARE_SHIFT + 1 }, (_, s) => 4096 * 2 ** s);

/** TTYP by request kind (untranslated, translated, ATS) and access (read, write, exec). */
const TTYP = [[2, 3, 1], [6, 7, 5], [8, 8, 8]];
/**
 * Causes an ATS request answers with Success and R=W=0, unlogged (spec §2.6 "PCIe ATS translation
 * request handling"): page and guest-page faults, MSI PTE not valid (262), PDT entry not valid
 * (266).
 */
const ATS_NO_ACCESS = new Set([12, 13, 15, 20, 21, 23, 262, 266]);

/**
 * The translation core of one IOMMU.
 *
 * Caching: device contexts by device_id, process contexts by (device_id, process_id), and the
 * IOTLB by address space (see `iotlb.ts`), one entry per leaf page of any size, in
 * set-associative caches of the geometries the `cache` option gives (`cache.ts`), the IOTLB with
 * its micro-TLB in front. Only Untranslated requests (including debug-interface requests) use and
 * fill the IOTLB; Translated and ATS requests always walk. Translations with both stages Bare and
 * MSI translations are not cached. Every first-stage Sv39/48/57 walk of a host address space
 * (G stage Bare), whatever the request, uses and fills the walk cache (`walk_cache.ts`) of the
 * last-level tables. The micro-TLB serves Untranslated requests without a
 * process_id, by device_id: it is emptied whenever what a device_id names may change (the mode,
 * the IOTLB switch, IODIR.INVAL_DDT, reset), besides losing each entry whose slot goes.
 *
 * HPM events: 1/2/3 per request by kind (debug-interface requests count as Untranslated), 4 per
 * translation that needs a page walk (whether or not the IOTLB is enabled), 5 per DDT walk, 6
 * per PDT walk, 7 per first-stage walk, 8 per G-stage walk (one per implicit access too). They
 * reach the observers through an {@linkcode HpmEventPort}: each event site decrements a
 * countdown, so that while nothing observes, or only HPM units whose counters need no filter,
 * an event costs no call.
 *
 * Causes it never reports: 4 and 6 (requests have no alignment rule here, except MRIF-mapped
 * pages, whose odd accesses are access faults 5/7 as the AIA says), 272 (the model has no
 * internal data path to fail). TTYP 9 (PCIe Message Request) belongs to the page-request path,
 * which is not a translation. Cause 273 comes from the register file's own MSIs.
 *
 * @example Translating through a 1LVL device directory and an Sv39 page table
 * ```ts
 * import assert from "node:assert/strict";
 * import { newRequest, newResult, PhysicalMemory, resolveCaps, Translator } from "@iommu-lab/hw";
 *
 * const mem = new PhysicalMemory();
 * mem.addRam(0x8000_0000, 2 ** 30);
 * // Sv39 tables at 0x8000_1000 → 0x8000_2000 → 0x8000_3000; IOVA 0x1000 maps to 0x8010_0000
 * // with V R W U A D.
 * mem.write64(0x8000_1000, 0x8000_2n << 10n | 1n);
 * mem.write64(0x8000_2000, 0x8000_3n << 10n | 1n);
 * mem.write64(0x8000_3008, 0x8010_0n << 10n | 0xd7n);
 * // A 1LVL directory at 0x8000_0000: the 64-byte DC of device 5 is valid, fsc = Sv39 + root.
 * mem.write64(0x8000_0000 + 5 * 64, 1n);
 * mem.write64(0x8000_0000 + 5 * 64 + 0x18, 8n << 60n | 0x8000_1n);
 *
 * const tr = new Translator(mem, resolveCaps(), { iotlb: { sets: 64, ways: 4 } });
 * tr.ddtpMode = 2; // 1LVL
 * tr.ddtpPpn = 0x8000_0;
 * const res = newResult();
 * tr.translate(newRequest({ deviceId: 5, iovaLo: 0x1234 }), res);
 * assert.equal(res.pa, 0x8010_0234);
 * assert.equal(res.perm, 3); // R W
 * ```
 */
export class Translator implements TranslationPort {
  /** `ddtp.PPN`: the root device-directory page. */
  ddtpPpn = 0;
  /** Why the last {@linkcode deviceContext} found no DC (0 when it found one). */
  dcCause = 0;

  readonly #caps: IommuCaps;
  readonly #walker: PageWalker;
  readonly #dir: Directory;
  readonly #tlb: Iotlb;
  readonly #pwc: WalkCache | null;
  readonly #msi: MsiPageTable;
  /** Where the translation path reports events; {@linkcode #left} is its countdowns. */
  readonly #port = new HpmEventPort();
  readonly #left = this.#port.left;
  readonly #invalidationListeners: (() => void)[] = [];
  #mode = 0;
  #iotlbOn = true;
  // The DC of the device translated last, and apart from it the last device the fast path
  // looked at with its DC if fast (null if the IOTLB cannot answer for it alone): one compare
  // each instead of a DDT cache lookup per request. Both go when the mode, the IOTLB switch or
  // the DDT cache changes.
  #lastDid = -1;
  #lastDc: DeviceContext | null = null;
  #fastDid = -1;
  #fastDc: DeviceContext | null = null;
  /** The DC whose fields the walker holds (a DC never changes once decoded). */
  #walkerDc: DeviceContext | null = null;
  /** The fast DC whose own first stage the walker holds too, with no privilege and no ATS. */
  #walkerFs: DeviceContext | null = null;
  #rangeStart = 0;
  #rangeEnd = 0;

  /**
   * Creates the translation core of an IOMMU with `caps` reading structures from `mem`, its
   * caches of the geometries `cache` gives (the defaults otherwise); throws `RangeError` on a
   * geometry no hardware could have.
   */
  constructor(mem: PhysicalMemory, caps: IommuCaps, cache: CacheOptions = {}) {
    this.#caps = caps;
    this.#walker = new PageWalker(mem, caps, this.#port);
    this.#tlb = new Iotlb(cache.iotlb, resolveMicroTlb(cache.microTlb));
    const walkCache = resolveWalkCache(cache.walkCache);
    this.#pwc = walkCache === 0 ? null : new WalkCache(walkCache);
    this.#walker.pwc = this.#pwc;
    this.#dir = new Directory(
      mem,
      caps,
      this.#walker,
      this.#tlb,
      resolveGeometry("ddt", cache.ddt),
      resolveGeometry("pdt", cache.pdt),
    );
    this.#msi = new MsiPageTable(mem, caps);
  }

  /** `ddtp.iommu_mode`: 0 Off, 1 Bare, 2 1LVL, 3 2LVL, 4 3LVL. */
  get ddtpMode(): number {
    return this.#mode;
  }
  set ddtpMode(mode: number) {
    this.#mode = mode;
    this.#forgetDc();
  }

  /**
   * When false every translation walks the whole way (the IOTLB and the walk cache are neither
   * looked up nor filled; invalidations still reach them).
   */
  get iotlbEnabled(): boolean {
    return this.#iotlbOn;
  }
  set iotlbEnabled(on: boolean) {
    this.#iotlbOn = on;
    this.#walker.pwc = on ? this.#pwc : null;
    this.#forgetDc();
  }

  /** `fctl.BE`: endianness of the DDT, G-stage page tables and MSI page tables. */
  get fctlBE(): boolean {
    return this.#walker.be;
  }
  set fctlBE(v: boolean) {
    this.#walker.be = v;
  }

  /** `fctl.GXL`: iohgatp mode 8 selects Sv32x4 instead of Sv39x4. */
  get fctlGXL(): boolean {
    return this.#walker.gxl;
  }
  set fctlGXL(v: boolean) {
    this.#walker.gxl = v;
  }

  /**
   * The observers of translation events (the standard HPM events 1–8 and the model's own, see
   * `hpm_event.ts`): HPM units while they count, traces. Each receives every event, in the order
   * they were added.
   */
  get eventObservers(): readonly HpmEventSink[] {
    return this.#port.sinks;
  }

  /** Adds `o` to the {@linkcode eventObservers} (once). */
  addEventObserver(o: HpmEventSink): void {
    const sinks = this.#port.sinks;
    if (!sinks.includes(o)) this.#port.setSinks([...sinks, o]);
  }

  /** Removes `o` from the {@linkcode eventObservers}, if it is one. */
  removeEventObserver(o: HpmEventSink): void {
    const sinks = this.#port.sinks;
    if (sinks.includes(o)) this.#port.setSinks(sinks.filter((s) => s !== o));
  }

  /**
   * Calls `fn` after each invalidation of the translator's caches (IODIR.INVAL_DDT/PDT,
   * IOTINVAL.VMA/GVMA, the reset's flush): for caches of translations kept beside it, such as a
   * distributed IOMMU's IOTLBs near the devices.
   */
  addInvalidationListener(fn: () => void): void {
    this.#invalidationListeners.push(fn);
  }

  #invalidated(): void {
    for (const fn of this.#invalidationListeners) fn();
  }

  /** Number of valid IOTLB entries (for tests and statistics). */
  get iotlbSize(): number {
    return this.#tlb.size;
  }

  /** Number of valid entries of the walk cache (for tests and statistics). */
  get walkCacheSize(): number {
    return this.#pwc?.size ?? 0;
  }

  /** Number of valid entries of the IOTLB's micro-TLB (for tests and statistics). */
  get microTlbSize(): number {
    return this.#tlb.microSize;
  }

  /** Translates `req` into `res` (every field of `res` that its status defines); never throws. */
  translate(req: InboundRequest, res: TranslationResult): void {
    // Kept small enough for the engine to inline into its callers: the fast path of an
    // Untranslated request without a process_id that hits the micro-TLB.
    const kind = req.kind;
    if (--this.#left[kind + 1] < 0) this.#countRequest(req);
    if (kind !== C.UNTRANSLATED || req.pidValid) return this.#translate(req, res);
    const did = req.deviceId, lo = req.iovaLo, hi = req.iovaHi;
    const vlo = (lo >>> 12) | (hi << 20);
    const vhi = hi >>> 12;
    if (!this.#tlb.microAnswer(did, vlo, vhi, req.access, lo & 0xfff, res)) {
      this.#microMiss(req, res, did, vlo, vhi);
    }
  }

  /**
   * The fast path after a micro-TLB miss, for a device whose DC alone decides (no process
   * context, a stage active): answers from the IOTLB if it can, else walks the DC's stages
   * (and fills the IOTLB); any other device goes the whole way at once.
   *
   * Its bytecode is budgeted, with translate()'s and the IOTLB's hit(): the engine (V8, as in
   * Deno 2.9) inlines a callee of at most 460 bytecodes while the caller's inlined total,
   * counting the candidate's at 120%, stays within 920. translate(), compiled on its own,
   * inlines microAnswer() (142), this (~310), the IOTLB's hit() and its lookup() (~280
   * together), so that an IOTLB probe makes no call; hit() was 576 bytecodes, always a call, and
   * processes ran `rand` at N=262144 (tools/bench/translate.ts) at 9-11.5 M/s rather than ~12.
   */
  #microMiss(
    req: InboundRequest,
    res: TranslationResult,
    did: number,
    vlo: number,
    vhi: number,
  ): void {
    const dc = did === this.#fastDid ? this.#fastDc : this.#fastDcOf(did);
    if (dc === null) return this.#translate(req, res);
    let probe = -1;
    const access = req.access, useTlb = this.#iotlbOn;
    if (useTlb) {
      // R, W or X as the access needs, and U: the DC's first stage (if any) is a user one.
      probe = this.#tlb.hit(
        vlo,
        vhi,
        dc.as,
        req.iovaLo & 0xfff,
        (1 << access) | (C.U >>> 1),
        res,
        did,
      );
      if (probe === IOTLB_ANSWERED) return;
    }
    // What the whole process does past the IOTLB (`probe`: the slot it found with permissions
    // the request could not use, or -1), without the checks that made `dc` fast.
    const w = this.#walker;
    if (this.#port.ids) {
      w.did = did;
      w.pidValid = false;
      w.pid = req.pid;
    }
    w.access = access;
    w.dirty = access === C.WRITE;
    if (dc !== this.#walkerFs) this.#loadWalker(dc);
    // Most walks of a host first stage end in a plain leaf under a table the walk cache holds:
    // the walker's cachedLeaf() takes them. It is called here, where the inlining budget is
    // spent, so it stays a call, and #stages makes the IOTLB entry: with both in #stages the
    // engine inlined one or the other as it happened, and four in six of the processes that had
    // inlined cachedLeaf() ran `rand` at N=262144 at 6.4-8.7 M/s instead of 9.7-11.5.
    const leaf = useTlb && dc.hostLeaf ? w.cachedLeaf(req.iovaLo, req.iovaHi) : -1;
    this.#stages(req, res, dc, dc.as, vlo, vhi, useTlb, probe, leaf);
  }

  /**
   * Locates the device context of `did` for a PCIe message (a Page Request) through the DDT cache,
   * as step 2 of spec §2.3 does for a translation, `ddtp.iommu_mode` being 1LVL–3LVL (the caller
   * handles Off and Bare); null with {@linkcode dcCause} set (260 `did` too wide, 257/268, 258,
   * 259). `pidValid`/`pid` are the message's PASID, for the HPM's DDT-walk event filter.
   * @ignore package-private: the page-request path's
   */
  deviceContext(did: number, pidValid: boolean, pid: number): DeviceContext | null {
    const w = this.#walker;
    w.did = did;
    w.pidValid = pidValid;
    w.pid = pid;
    const dc = this.#dir.locateDc(this.ddtpMode, this.ddtpPpn, did);
    this.dcCause = dc === null ? this.#dir.cause : 0;
    return dc;
  }

  /** IODIR.INVAL_DDT: DV=0 drops every cached DC and PC; DV=1 the DC of `did` and its PCs. */
  invalDdt(dv: boolean, did: number): void {
    this.#dir.invalDdt(dv, did);
    this.#forgetDc();
    this.#invalidated();
  }

  /** IODIR.INVAL_PDT: drops the cached PC of (`did`, `pid`). */
  invalPdt(did: number, pid: number): void {
    this.#dir.invalPdt(did, pid);
    this.#invalidated();
  }

  /**
   * IOTINVAL.VMA: invalidates first-stage translations of the host (`gv` false) or of VM
   * `gscid`; with `pscv` only address space `pscid`, keeping global entries; with `av` only the
   * leaf at ADDR (`addrHi:addrLo` is the 64-bit address; bits 11:0 are ignored), or with `s`
   * (when capabilities.S) the NAPOT range ADDR encodes. The walk cache's entries go with AV=0,
   * and with AV=1 only when `nl` (capabilities.NL): those whose table maps part of the range.
   */
  iotinvalVma(
    gv: boolean,
    av: boolean,
    pscv: boolean,
    gscid: number,
    pscid: number,
    addrLo: number,
    addrHi: number,
    nl: boolean,
    s: boolean,
  ): void {
    this.#range(av, addrLo, addrHi, s);
    this.#tlb.invalVma(gv, gscid, pscv, pscid, av, this.#rangeStart, this.#rangeEnd);
    this.#pwc?.invalVma(gv, pscv, pscid, av, nl, this.#rangeStart, this.#rangeEnd);
    this.#invalidated();
  }

  /**
   * IOTINVAL.GVMA: invalidates G-stage translations (and every combined translation made
   * through them) of all VMs (`gv` false), of VM `gscid`, or with `av` those whose G-stage leaf
   * maps GPA ADDR (or the NAPOT range with `s`). `nl` changes nothing: G-stage translations
   * are cached only as leaves, and the walk cache holds no VM's PTEs.
   */
  iotinvalGvma(
    gv: boolean,
    av: boolean,
    gscid: number,
    addrLo: number,
    addrHi: number,
    _nl: boolean,
    s: boolean,
  ): void {
    this.#range(av, addrLo, addrHi, s);
    this.#tlb.invalGvma(gv, gscid, av, this.#rangeStart, this.#rangeEnd);
    this.#invalidated();
  }

  /** Empties every cache (reset). */
  flushAll(): void {
    this.#dir.flush();
    this.#tlb.flush();
    this.#pwc?.flush();
    this.#forgetDc();
    this.#invalidated();
  }

  /**
   * Sets `#rangeStart`/`#rangeEnd` to the page range [start, end) an IOTINVAL's ADDR selects
   * (NAPOT-encoded when `s`): fields rather than a returned pair, so that the driver's per-page
   * invalidations allocate nothing.
   */
  #range(av: boolean, addrLo: number, addrHi: number, s: boolean): void {
    this.#rangeStart = 0;
    this.#rangeEnd = 0;
    if (!av) return;
    const pn = (addrHi >>> 0) * TWO20 + (addrLo >>> 12);
    this.#rangeStart = pn;
    this.#rangeEnd = pn + 1;
    if (!s || !this.#caps.s) return;
    // The first 0 bit at position X makes a range of 2^(X+1) pages; all ones is the whole
    // space (UNSPECIFIED by the spec).
    let x = 0;
    while (x < 52 && Math.floor(pn / 2 ** x) % 2 === 1) x++;
    if (x >= 51) {
      this.#rangeStart = 0;
      this.#rangeEnd = 2 ** 52;
      return;
    }
    const size = 2 ** (x + 1);
    this.#rangeStart = pn - pn % size;
    this.#rangeEnd = this.#rangeStart + size;
  }

  /** HPM events 1–3: one request of its kind, when its countdown says the port must hear of it. */
  #countRequest(req: InboundRequest): void {
    const ev = req.kind + 1;
    this.#port.report(ev, ev, req.deviceId, req.pidValid, req.pid, false, 0, false, 0);
  }

  /**
   * The DC of `did` if it alone decides its Untranslated requests without a process_id (the DC
   * cached, with no process context and a stage active), else null; remembered for `did` once
   * known.
   */
  #fastDcOf(did: number): DeviceContext | null {
    const mode = this.#mode;
    let dc: DeviceContext | null = null;
    if (mode >= C.MODE_1LVL && mode <= C.MODE_3LVL) {
      const cached = this.#dir.cachedDc(mode, did);
      // Not cached yet: the walk that follows caches it, and the next request looks again.
      if (cached === undefined) return null;
      if (cached.fast) dc = cached;
    }
    this.#fastDid = did;
    this.#fastDc = dc;
    return dc;
  }

  #forgetDc(): void {
    this.#tlb.microFlush();
    this.#lastDid = -1;
    this.#lastDc = null;
    this.#fastDid = -1;
    this.#fastDc = null;
  }

  /** The whole process. */
  #translate(req: InboundRequest, res: TranslationResult): void {
    const mode = this.#mode;
    const kind = req.kind;
    if (mode === C.MODE_BARE) {
      if (kind !== C.UNTRANSLATED) {
        return this.#fault(req, res, RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED, false);
      }
      return this.#passThrough(req, res);
    }
    if (mode < C.MODE_1LVL || mode > C.MODE_3LVL) {
      return this.#fault(req, res, RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED, false);
    }
    const w = this.#walker;
    const did = req.deviceId;
    if (this.#port.ids) {
      w.did = did;
      w.pidValid = req.pidValid;
      w.pid = req.pid;
    }
    let dc = this.#lastDc;
    if (did !== this.#lastDid || dc === null) {
      dc = this.#dir.locateDc(mode, this.ddtpPpn, did);
      if (dc === null) return this.#fault(req, res, this.#dir.cause, false);
      this.#lastDid = did;
      this.#lastDc = dc;
    }
    const dtf = dc.dtf;
    // Spec §2.3 step 7: transaction types the DC does not allow.
    if (
      (kind !== C.UNTRANSLATED && !dc.enAts) ||
      (req.pidValid &&
        (!dc.pdtv || req.pid >>> (dc.pdtLevels === 1 ? 8 : dc.pdtLevels === 2 ? 17 : 20) !== 0))
    ) {
      return this.#fault(req, res, RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED, dtf);
    }
    // Step 8: a Translated request already carries an SPA unless T2GPA.
    if (kind === C.TRANSLATED && !dc.t2gpa) return this.#passThrough(req, res);

    // An ATS translation request reads page tables and writes no data: its faults are reported
    // as reads (TTYP 8, cause 5 for an implicit-access fault) whatever NW and ER say; only the
    // D bit it may set depends on NW.
    const ats = kind === C.ATS;
    // The walker is about to hold this request's state, not the fast DC's.
    this.#walkerFs = null;
    w.access = ats ? C.READ : req.access;
    w.dirty = ats ? !req.noWrite : req.access === C.WRITE;
    w.ats = ats;
    if (dc !== this.#walkerDc) this.#loadWalkerDc(dc);
    // Steps 9–16: the first stage. A Translated request (T2GPA) carries a GPA, so it has none;
    // a DC with PDTV=1 whose request ends up with no process context has none either, and its
    // address space is then the DC's (G stage only).
    let as = dc.as;
    let fsLevels = 0, fsRoot = 0, pscid = 0, priv = false, sum = false;
    if (kind !== C.TRANSLATED && !dc.pdtv) {
      fsLevels = dc.fsLevels;
      fsRoot = dc.fscPpn;
      pscid = dc.pscid;
    } else if (kind !== C.TRANSLATED) {
      const pv = req.pidValid || dc.dpe;
      if (pv && dc.pdtLevels !== 0) {
        // No first stage yet: the PDT's G-stage walks count without a PSCID.
        w.fsLevels = 0;
        const pc = this.#dir.locatePc(dc, did, req.pidValid ? req.pid : 0);
        if (pc === null) return this.#fault(req, res, this.#dir.cause, dtf, this.#dir.iotval2);
        priv = req.pidValid && req.priv;
        if (priv && !pc.ens) return this.#fault(req, res, RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED, dtf);
        fsLevels = pc.fsLevels;
        fsRoot = pc.fsRoot;
        pscid = pc.pscid;
        sum = pc.sum;
        as = pc.as;
      }
    }
    w.fsLevels = fsLevels;
    w.fsRoot = fsRoot;
    w.pscid = pscid;
    w.priv = priv;
    w.sum = sum;
    const useTlb = this.#iotlbOn && kind === C.UNTRANSLATED && (fsLevels !== 0 || dc.gLevels !== 0);
    const lo = req.iovaLo, hi = req.iovaHi;
    const vlo = (lo >>> 12) | (hi << 20);
    const vhi = hi >>> 12;
    let probe = -1;
    if (useTlb) {
      const tlb = this.#tlb;
      probe = tlb.lookup(vlo, vhi, as);
      if (probe >= 0 && this.#allowed(tlb.info(probe), req.access, priv, sum)) {
        tlb.answer(probe, vlo, vhi, lo & 0xfff, 0, res);
        return;
      }
    }
    this.#stages(req, res, dc, as, vlo, vhi, useTlb, probe, -1);
  }

  /** Gives the walker the fields of `dc` that do not depend on a process context. */
  #loadWalkerDc(dc: DeviceContext): void {
    const w = this.#walker;
    w.sxl = dc.sxl;
    w.sbe = dc.sbe;
    w.sade = dc.sade;
    w.gade = dc.gade;
    w.gLevels = dc.gLevels;
    w.gRoot = dc.gRoot;
    w.gscid = dc.gscid;
    this.#walkerDc = dc;
  }

  /**
   * Gives the walker everything of the fast DC `dc` but the request's access: its own first
   * stage, no privilege, no ATS.
   */
  #loadWalker(dc: DeviceContext): void {
    if (dc !== this.#walkerDc) this.#loadWalkerDc(dc);
    const w = this.#walker;
    w.fsLevels = dc.fsLevels;
    w.fsRoot = dc.fscPpn;
    w.pscid = dc.pscid;
    w.priv = false;
    w.sum = false;
    w.ats = false;
    this.#walkerFs = dc;
  }

  /**
   * Steps 17–19 for `req` of address space `as` under `dc`, the walker set up for it: the
   * first stage, MSI translation, the G stage; then the answer, and an IOTLB entry when
   * `useTlb` (replacing slot `probe`, found with permissions the request could not use, if it
   * holds the same page). `leaf`, unless -1, is the first stage's 4 KiB leaf PPN that the
   * walker's cachedLeaf() found (with its permissions in `fsPerm`, the walk counted; no G
   * stage, no MSI page table), which is then the whole translation.
   */
  #stages(
    req: InboundRequest,
    res: TranslationResult,
    dc: DeviceContext,
    as: AddressSpace,
    vlo: number,
    vhi: number,
    useTlb: boolean,
    probe: number,
    leaf: number,
  ): void {
    const w = this.#walker;
    if (leaf >= 0) {
      // cachedLeaf() serves only with the IOTLB on, and counted the IOTLB miss.
      const perm = w.fsPerm;
      this.#tlb.insert(vlo, vhi, 0, as, leaf, perm >>> 1, 0, C.BARE_SHIFT, 0, probe);
      this.#ok(res, leaf * 4096 + (req.iovaLo & 0xfff), (perm >>> 1) & 7, 0, 4096);
      return;
    }
    const fsOn = w.fsLevels !== 0;
    const gOn = dc.gLevels !== 0;
    if ((fsOn || gOn) && --this.#left[C.EV_TLB_MISS] < 0) {
      this.#port.report(
        C.EV_TLB_MISS,
        C.EV_TLB_MISS,
        req.deviceId,
        req.pidValid,
        req.pid,
        gOn,
        dc.gscid,
        fsOn,
        w.pscid,
      );
    }
    const lo = req.iovaLo, hi = req.iovaHi;
    const off = lo & 0xfff;
    // Step 17: first stage, giving the GPA page.
    let gpn: number, fsShift = C.BARE_SHIFT, fsPerm = C.R | C.W | C.X | C.U, fsPbmt = 0;
    if (fsOn) {
      const cause = w.firstStage(lo, hi);
      if (cause !== 0) return this.#fault(req, res, cause, dc.dtf, w.iotval2);
      gpn = w.fsPn;
      fsShift = w.fsShift;
      fsPerm = w.fsPerm;
      fsPbmt = w.fsPbmt;
    } else {
      gpn = (hi >>> 0) * 1048576 + (lo >>> 12);
    }
    // Step 18: an access to a virtual interrupt file goes through the MSI page table.
    if (dc.msi && msiAddressMatch(dc, gpn)) return this.#msiTranslate(req, res, dc, gpn, fsPerm);
    // Step 19: G stage.
    let spn = gpn, gShift = C.BARE_SHIFT, gPerm = C.R | C.W | C.X, gPbmt = 0;
    if (gOn) {
      const cause = w.gStage(gpn, off);
      if (cause !== 0) return this.#fault(req, res, cause, dc.dtf, w.iotval2);
      spn = w.gPn;
      gShift = w.gShift;
      gPerm = w.gPerm;
      gPbmt = w.gPbmt;
    }
    const shift = !fsOn && !gOn ? 0 : fsShift < gShift ? fsShift : gShift;
    const pbmt = fsPbmt !== 0 ? fsPbmt : gPbmt;
    const perm = fsPerm & (gPerm | C.U | C.G);
    if (req.kind === C.ATS) {
      const rw = perm & (req.noWrite ? C.R : C.R | C.W);
      // X only with R (PCIe), only when ER came with a PASID, and never on a U page for a
      // privileged request (S mode never executes user pages).
      const x = req.execReq && req.pidValid && (rw & C.R) !== 0 &&
          !(w.priv && (perm & C.U) !== 0)
        ? perm & C.X
        : 0;
      const pn = dc.t2gpa ? gpn : spn;
      this.#ok(res, pn * 4096 + off, (rw | x) >>> 1, pbmt, PAGE_BYTES[shift]);
      res.global = req.pidValid && (perm & C.G) !== 0;
      return;
    }
    if (useTlb) {
      this.#tlb.insert(
        vlo,
        vhi,
        shift,
        as,
        shift === 0 ? spn : spn - vpnLow(vlo, vhi, shift),
        (perm >>> 1) | (fsOn ? 0 : INFO_FS_BARE) | (pbmt << INFO_PBMT_SHIFT),
        fsShift,
        gShift,
        gOn ? gpn - gpn % (PAGE_BYTES[gShift] / 4096) : 0,
        probe,
      );
    }
    this.#ok(res, spn * 4096 + off, (perm >>> 1) & 7, pbmt, shift === 0 ? 4096 : PAGE_BYTES[shift]);
  }

  /** An IOTLB entry's info allows `access` at the request's privilege. */
  #allowed(info: number, access: number, priv: boolean, sum: boolean): boolean {
    if ((info & (1 << access)) === 0) return false;
    if ((info & INFO_FS_BARE) !== 0) return true;
    const user = (info & (C.U >>> 1)) !== 0;
    return priv ? !user || (access !== C.EXEC && sum) : user;
  }

  /** Spec §2.3 step 18: MSI translation of GPA page `gpn` (first-stage permissions `fsPerm`). */
  #msiTranslate(
    req: InboundRequest,
    res: TranslationResult,
    dc: DeviceContext,
    gpn: number,
    fsPerm: number,
  ): void {
    const msi = this.#msi;
    const off = req.iovaLo & 0xfff;
    const cause = msi.fetch(dc, gpn, this.#walker.be);
    if (cause !== 0) return this.#fault(req, res, cause, dc.dtf);
    const ats = req.kind === C.ATS;
    // Permissions are those of a G-stage leaf with R=W=U=1, X=0.
    if (req.access === C.EXEC && !ats) {
      return this.#fault(req, res, RISCV_IOMMU_FQ_CAUSE_INST_FAULT, dc.dtf);
    }
    const perm = fsPerm & (C.R | C.W);
    if (msi.mode === RISCV_IOMMU_MSI_PTE_M_BASIC) {
      const pn = ats && dc.t2gpa ? gpn : msi.pn;
      const rw = ats && req.noWrite ? perm & C.R : perm;
      return this.#ok(res, pn * 4096 + off, rw >>> 1, 0, 4096);
    }
    if (ats) {
      // The device must use Untranslated requests for an MRIF-mapped page.
      this.#ok(res, 0, 3, 0, 4096);
      res.untranslatedOnly = true;
      return;
    }
    if (req.debug) return this.#fault(req, res, RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED, dc.dtf);
    const c = msi.mrifAccess(req.access === C.WRITE, off, req.len, req.data);
    if (c !== 0) return this.#fault(req, res, c, dc.dtf);
    res.status = XLATE_ABSORBED;
  }

  /** Answers `req` with its own address (Bare mode, or a Translated request without T2GPA). */
  #passThrough(req: InboundRequest, res: TranslationResult): void {
    this.#ok(res, toNumber64(req.iovaLo, req.iovaHi), 7, 0, 4096);
  }

  #ok(res: TranslationResult, pa: number, perm: number, pbmt: number, size: number): void {
    res.status = XLATE_OK;
    res.pa = pa;
    res.perm = perm;
    res.pbmt = pbmt;
    res.size = size;
    res.global = false;
    res.untranslatedOnly = false;
  }

  /**
   * Ends `req` with fault `cause`: the record fields, whether it is reported (DTF suppresses
   * all but 256–259, 268, 272, 273) and the PCIe completion status (UR or CA). ATS requests whose cause means "no access" get a Success
   * completion with no permissions instead, and no record (spec §2.6 "PCIe ATS translation request
   * handling").
   */
  #fault(
    req: InboundRequest,
    res: TranslationResult,
    cause: number,
    dtf: boolean,
    iotval2 = 0n,
  ): void {
    if (req.kind === C.ATS && ATS_NO_ACCESS.has(cause)) {
      this.#ok(res, 0, 0, 0, 4096);
      res.cause = cause;
      res.reported = false;
      return;
    }
    res.status = XLATE_FAULT;
    res.cause = cause;
    res.ttyp = TTYP[req.kind][req.access];
    res.iotval = iovaOf(req);
    res.iotval2 = cause === 20 || cause === 21 || cause === 23 ? iotval2 : 0n;
    res.reported = !dtf || reportedDespiteDtf(cause);
    res.completion = completionStatus(cause);
  }
}
