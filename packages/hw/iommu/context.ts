/**
 * The device directory (DDT) and process directory (PDT) walks, the device- and process-context
 * misconfiguration checks, and the DDT/PDT caches (spec §2.1 "Device-Directory- Table" to §2.2
 * "Process-Directory-Table", §2.8 "Caching in-memory data structures").
 *
 * The caches are set-associative with the `ddt` and `pdt` geometries of the cache option
 * (`cache.ts`): a device context lives in the set its device_id's low bits select, a process
 * context in the set of its process_id XOR device_id; a hit allocates nothing.
 *
 * @module
 */

import { MEM_POISON, type PhysicalMemory } from "../memory.ts";
import { toNumber64 } from "../_u64.ts";
import type { IommuCaps } from "./caps.ts";
import { HPMEVENT_PDT_CACHE_HIT, type HpmEventPort } from "./hpm_event.ts";
import { type ResolvedGeometry, SetAssociative } from "./cache.ts";
import type { AddressSpace, Iotlb } from "./iotlb.ts";
import {
  RISCV_IOMMU_DC_EXT_SIZE,
  RISCV_IOMMU_DC_TC_DPE,
  RISCV_IOMMU_DC_TC_DTF,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_EN_PRI,
  RISCV_IOMMU_DC_TC_GADE,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_DC_TC_PRPR,
  RISCV_IOMMU_DC_TC_RESERVED_LO,
  RISCV_IOMMU_DC_TC_SADE,
  RISCV_IOMMU_DC_TC_SBE,
  RISCV_IOMMU_DC_TC_SXL,
  RISCV_IOMMU_DC_TC_T2GPA,
  RISCV_IOMMU_DC_TC_V,
  RISCV_IOMMU_DDTE_V,
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL,
  RISCV_IOMMU_FQ_CAUSE_DDT_CORRUPTED,
  RISCV_IOMMU_FQ_CAUSE_DDT_INVALID,
  RISCV_IOMMU_FQ_CAUSE_DDT_LOAD_FAULT,
  RISCV_IOMMU_FQ_CAUSE_DDT_MISCONFIGURED,
  RISCV_IOMMU_FQ_CAUSE_PDT_CORRUPTED,
  RISCV_IOMMU_FQ_CAUSE_PDT_INVALID,
  RISCV_IOMMU_FQ_CAUSE_PDT_LOAD_FAULT,
  RISCV_IOMMU_FQ_CAUSE_PDT_MISCONFIGURED,
  RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED,
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_PD_WALK,
  RISCV_IOMMU_PC_TA_ENS,
  RISCV_IOMMU_PC_TA_SUM,
  RISCV_IOMMU_PC_TA_V,
  RISCV_IOMMU_PDTE_V,
} from "./structs.ts";
import { type PageWalker, ppnOf } from "./walk.ts";

/**
 * The legal value of `fctl.GXL` after software writes `requested` (WARL): writable when the
 * IOMMU has Sv32x4 and a wider G-stage scheme; hard-wired to 1 when Sv32x4 is its only G-stage
 * scheme, else to 0.
 */
export function legalGxl(caps: IommuCaps, requested: boolean): boolean {
  const wide = caps.sv39x4 || caps.sv48x4 || caps.sv57x4;
  return caps.sv32x4 && wide ? requested : caps.sv32x4;
}

/** Levels of the first-stage scheme iosatp/PC.fsc MODE selects: 0 Bare, 2–5, or -1 invalid. */
function _fsLevels(caps: IommuCaps, mode: number, sxl: boolean): number {
  if (mode === 0) return 0;
  if (sxl) return mode === 8 && caps.sv32 ? 2 : -1;
  if (mode === 8) return caps.sv39 ? 3 : -1;
  if (mode === 9) return caps.sv48 ? 4 : -1;
  if (mode === 10) return caps.sv57 ? 5 : -1;
  return -1;
}

/** Levels of the G-stage scheme iohgatp.MODE selects: 0 Bare, 2–5, or -1 invalid. */
function _gLevels(caps: IommuCaps, mode: number, gxl: boolean): number {
  if (mode === 0) return 0;
  if (gxl) return mode === 8 && caps.sv32x4 ? 2 : -1;
  if (mode === 8) return caps.sv39x4 ? 3 : -1;
  if (mode === 9) return caps.sv48x4 ? 4 : -1;
  if (mode === 10) return caps.sv57x4 ? 5 : -1;
  return -1;
}

/** The doubleword `hi:lo` is below 2^bits. */
function _fits(lo: number, hi: number, bits: number): boolean {
  return bits >= 32 ? hi >>> (bits - 32) === 0 : hi === 0 && lo >>> bits === 0;
}

/**
 * A 44-bit PPN field (43:0) of a doubleword as a number: a small integer whenever it fits one,
 * so that the walks starting from it stay in integer arithmetic.
 */
function _ppn44(lo: number, hi: number): number {
  const h = hi & 0xfff;
  return h === 0 && lo <= 0x7fff_ffff ? lo : toNumber64(lo, h);
}

/** A non-leaf DDTE or PDTE (they share a format) has a reserved bit set: 9:1 or 63:54. */
function _nonLeafReserved(lo: number, hi: number): boolean {
  return (lo & 0x3fe) !== 0 || (hi & 0xffc00000) !== 0;
}

/** A located, checked device context, decoded for the translator. */
export class DeviceContext {
  /** DC.tc.DTF. */
  readonly dtf: boolean;
  /** DC.tc.EN_ATS. */
  readonly enAts: boolean;
  /** DC.tc.EN_PRI: Page Request messages are queued. */
  readonly enPri: boolean;
  /** DC.tc.PRPR: the IOMMU's own PRG responses carry the request's PASID. */
  readonly prpr: boolean;
  /** DC.tc.T2GPA. */
  readonly t2gpa: boolean;
  /** DC.tc.PDTV. */
  readonly pdtv: boolean;
  /** DC.tc.DPE. */
  readonly dpe: boolean;
  /** DC.tc.SXL. */
  readonly sxl: boolean;
  /** DC.tc.SBE. */
  readonly sbe: boolean;
  /** DC.tc.SADE. */
  readonly sade: boolean;
  /** DC.tc.GADE. */
  readonly gade: boolean;
  /** G-stage levels (0 Bare). */
  readonly gLevels: number;
  /** G-stage root page number. */
  readonly gRoot: number;
  /** iohgatp.GSCID. */
  readonly gscid: number;
  /** First-stage levels from iosatp when PDTV = 0 (0 Bare). */
  readonly fsLevels: number;
  /** iosatp.PPN (PDTV = 0) or pdtp.PPN (PDTV = 1). */
  readonly fscPpn: number;
  /** pdtp levels when PDTV = 1 (0 Bare, 1 PD8, 2 PD17, 3 PD20). */
  readonly pdtLevels: number;
  /** DC.ta.PSCID. */
  readonly pscid: number;
  /** msiptp.MODE is Flat. */
  readonly msi: boolean;
  /** msiptp.PPN. */
  readonly msiPpn: number;
  /** msi_addr_mask, low 32 bits. */
  readonly maskLo: number;
  /** msi_addr_mask, bits 51:32. */
  readonly maskHi: number;
  /** msi_addr_pattern & ~mask, low 32 bits. */
  readonly patLo: number;
  /** msi_addr_pattern & ~mask, bits 51:32. */
  readonly patHi: number;
  /** IOTLB address space of translations made with this DC alone (no process context). */
  readonly as: AddressSpace;
  /**
   * Untranslated requests without a process_id take their translation from this DC alone (no
   * process context, a stage active): the IOTLB may answer them.
   */
  readonly fast: boolean;
  /**
   * Its own first stage is a host Sv39/48/57 one (G stage Bare) with little-endian tables and no
   * MSI page table: the walker's cachedLeaf() may take its walks.
   */
  readonly hostLeaf: boolean;

  /**
   * Decodes the doublewords of a DC (`w[2k]` low, `w[2k+1]` high half of doubleword k); `tlb`
   * supplies its address space.
   */
  constructor(
    w: Uint32Array,
    fsLevels: number,
    gLevels: number,
    pdtLevels: number,
    tlb: Iotlb,
  ) {
    const tc = w[0];
    this.dtf = (tc & RISCV_IOMMU_DC_TC_DTF) !== 0;
    this.enAts = (tc & RISCV_IOMMU_DC_TC_EN_ATS) !== 0;
    this.enPri = (tc & RISCV_IOMMU_DC_TC_EN_PRI) !== 0;
    this.prpr = (tc & RISCV_IOMMU_DC_TC_PRPR) !== 0;
    this.t2gpa = (tc & RISCV_IOMMU_DC_TC_T2GPA) !== 0;
    this.pdtv = (tc & RISCV_IOMMU_DC_TC_PDTV) !== 0;
    this.dpe = (tc & RISCV_IOMMU_DC_TC_DPE) !== 0;
    this.sxl = (tc & RISCV_IOMMU_DC_TC_SXL) !== 0;
    this.sbe = (tc & RISCV_IOMMU_DC_TC_SBE) !== 0;
    this.sade = (tc & RISCV_IOMMU_DC_TC_SADE) !== 0;
    this.gade = (tc & RISCV_IOMMU_DC_TC_GADE) !== 0;
    this.gLevels = gLevels;
    this.gRoot = _ppn44(w[2], w[3]);
    this.gscid = (w[3] >>> 12) & 0xffff;
    this.pscid = w[4] >>> 12;
    this.fsLevels = fsLevels;
    this.fscPpn = _ppn44(w[6], w[7]);
    this.pdtLevels = pdtLevels;
    this.msi = w[9] >>> 28 === 1;
    this.msiPpn = _ppn44(w[8], w[9]);
    this.maskLo = w[10];
    this.maskHi = w[11];
    this.patLo = (w[12] & ~w[10]) >>> 0;
    this.patHi = (w[13] & ~w[11]) >>> 0;
    const fsOn = fsLevels !== 0;
    this.as = tlb.space(fsOn, gLevels !== 0, this.gscid, fsOn ? this.pscid : 0);
    this.fast = !this.pdtv && (fsOn || gLevels !== 0);
    this.hostLeaf = fsLevels >= 3 && gLevels === 0 && !this.msi && !this.sbe;
  }
}

/** A located, checked process context. */
export class ProcessContext {
  /** PC.ta.ENS. */
  readonly ens: boolean;
  /** PC.ta.SUM. */
  readonly sum: boolean;
  /** PC.ta.PSCID. */
  readonly pscid: number;
  /** First-stage levels from PC.fsc (0 Bare). */
  readonly fsLevels: number;
  /** PC.fsc.PPN. */
  readonly fsRoot: number;
  /** IOTLB address space of translations made with this PC. */
  readonly as: AddressSpace;

  /** Decodes a PC given its ta and fsc doublewords and the DC it hangs off. */
  constructor(
    ta: number,
    fscLo: number,
    fscHi: number,
    fsLevels: number,
    dc: DeviceContext,
    tlb: Iotlb,
  ) {
    this.ens = (ta & RISCV_IOMMU_PC_TA_ENS) !== 0;
    this.sum = (ta & RISCV_IOMMU_PC_TA_SUM) !== 0;
    this.pscid = ta >>> 12;
    this.fsLevels = fsLevels;
    this.fsRoot = _ppn44(fscLo, fscHi);
    const fsOn = fsLevels !== 0;
    this.as = tlb.space(fsOn, dc.gLevels !== 0, dc.gscid, fsOn ? this.pscid : 0);
  }
}

/**
 * Whether `did` fits a device directory of `ddtp.iommu_mode` `mode` (1LVL/2LVL/3LVL) with base
 * (`msiFlat` false) or extended DCs: a wider device_id is a transaction type the IOMMU disallows
 * (cause 260) before any lookup.
 */
export function ddtDeviceIdFits(mode: number, did: number, msiFlat: boolean): boolean {
  const b0 = msiFlat ? 6 : 7;
  return did >>> 24 === 0 &&
    (mode !== RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL || did >>> b0 === 0) &&
    (mode !== RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL || did >>> (b0 + 9) === 0);
}

/**
 * A set-associative cache of contexts tagged by two non-negative 32-bit numbers (device_id, and
 * process_id or 0); the set is their XOR's low bits.
 */
class _ContextCache<T> extends SetAssociative {
  readonly #a: Int32Array;
  readonly #b: Int32Array;
  readonly #items: (T | undefined)[];

  constructor(g: ResolvedGeometry) {
    super(g);
    const slots = g.sets * g.ways;
    // An empty slot's tag is -1, which no device_id matches.
    this.#a = new Int32Array(slots).fill(-1);
    this.#b = new Int32Array(slots);
    this.#items = new Array(slots).fill(undefined);
  }

  get(a: number, b: number): T | undefined {
    const set = (a ^ b) & this.setMask;
    const first = set << this.waysLog2;
    for (let e = first; e < first + this.ways; e++) {
      if (this.#a[e] === a && this.#b[e] === b) {
        this.touch(set, e - first);
        return this.#items[e];
      }
    }
    return undefined;
  }

  /** Caches `item` (the caller has just missed): an invalid way, else the policy's victim. */
  set(a: number, b: number, item: T): void {
    const set = (a ^ b) & this.setMask;
    const e = (set << this.waysLog2) + this.fill(set);
    this.#a[e] = a;
    this.#b[e] = b;
    this.#items[e] = item;
  }

  /** Drops the entry tagged (`a`, `b`), or with `b` null every entry tagged `a`. */
  drop(a: number, b: number | null): void {
    for (let e = 0; e < this.#a.length; e++) {
      if (this.#a[e] === a && (b === null || this.#b[e] === b)) {
        this.#a[e] = -1;
        this.#items[e] = undefined;
        this.release(e);
      }
    }
  }

  clear(): void {
    this.#a.fill(-1);
    this.#items.fill(undefined);
    this.releaseAll();
  }
}

/**
 * Locates device and process contexts through the DDT and PDT, checks them, and caches the
 * ones that are valid and well formed (tagged by device_id, and by device_id + process_id).
 */
export class Directory {
  /** Cause of the last failed lookup. */
  cause = 0;
  /** iotval2 of the last failed lookup (a guest-page fault on a PDT access). */
  iotval2 = 0n;

  readonly #mem: PhysicalMemory;
  readonly #caps: IommuCaps;
  readonly #walker: PageWalker;
  readonly #port: HpmEventPort;
  readonly #tlb: Iotlb;
  readonly #dcs: _ContextCache<DeviceContext>;
  readonly #pcs: _ContextCache<ProcessContext>;
  readonly #w = new Uint32Array(16);

  /**
   * Creates a directory reader with DDT and PDT caches of geometries `ddt` and `pdt`; `walker`
   * supplies fctl and the G stage for PDT accesses, `tlb` the address spaces of the contexts.
   */
  constructor(
    mem: PhysicalMemory,
    caps: IommuCaps,
    walker: PageWalker,
    tlb: Iotlb,
    ddt: ResolvedGeometry,
    pdt: ResolvedGeometry,
  ) {
    this.#mem = mem;
    this.#caps = caps;
    this.#walker = walker;
    this.#port = walker.port;
    this.#tlb = tlb;
    this.#dcs = new _ContextCache(ddt);
    this.#pcs = new _ContextCache(pdt);
  }

  /** The cached DC of `did`, if any (and if `did` fits `ddtp.iommu_mode` `mode`). */
  cachedDc(mode: number, did: number): DeviceContext | undefined {
    return this.#fits(mode, did) ? this.#dcs.get(did, 0) : undefined;
  }

  /**
   * Locates the DC of `did` under `ddtp` = (`mode`, `ppn`), from the cache or by walking the
   * DDT; returns null with {@linkcode cause} set (260 device_id too wide, 257/268 load fault or
   * corruption, 258 not valid, 259 misconfigured).
   */
  locateDc(mode: number, ppn: number, did: number): DeviceContext | null {
    if (!this.#fits(mode, did)) return this.#fail(RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED);
    const ext = this.#caps.msiFlat;
    const b0 = ext ? 6 : 7;
    const hit = this.#dcs.get(did, 0);
    if (hit !== undefined) return hit;
    const walker = this.#walker;
    const port = this.#port;
    if (--port.left[RISCV_IOMMU_HPMEVENT_DD_WALK] < 0) {
      port.report(
        RISCV_IOMMU_HPMEVENT_DD_WALK,
        RISCV_IOMMU_HPMEVENT_DD_WALK,
        did,
        walker.pidValid,
        walker.pid,
        false,
        0,
        false,
        0,
      );
    }
    const mem = this.#mem;
    const be = walker.be;
    let pn = ppn;
    for (let level = mode - 2; level > 0; level--) {
      const ddi = level === 1 ? (did >>> b0) & 0x1ff : did >>> (b0 + 9);
      mem.load64(pn * 4096 + ddi * 8, be);
      if (mem.fault !== 0) return this.#fail(this.#ddtLoadCause());
      const lo = mem.lo, hi = mem.hi;
      if ((lo & RISCV_IOMMU_DDTE_V) === 0) return this.#fail(RISCV_IOMMU_FQ_CAUSE_DDT_INVALID);
      if (_nonLeafReserved(lo, hi)) return this.#fail(RISCV_IOMMU_FQ_CAUSE_DDT_MISCONFIGURED);
      pn = ppnOf(lo, hi);
    }
    const w = this.#w;
    const n = ext ? 8 : 4;
    const base = pn * 4096 + (did & ((1 << b0) - 1)) * (ext ? RISCV_IOMMU_DC_EXT_SIZE : 32);
    w.fill(0);
    for (let i = 0; i < n; i++) {
      mem.load64(base + i * 8, be);
      if (mem.fault !== 0) return this.#fail(this.#ddtLoadCause());
      w[2 * i] = mem.lo;
      w[2 * i + 1] = mem.hi;
    }
    if ((w[0] & RISCV_IOMMU_DC_TC_V) === 0) return this.#fail(RISCV_IOMMU_FQ_CAUSE_DDT_INVALID);
    const dc = this.#check(w, ext);
    if (dc === null) return this.#fail(RISCV_IOMMU_FQ_CAUSE_DDT_MISCONFIGURED);
    this.#dcs.set(did, 0, dc);
    return dc;
  }

  /**
   * Locates the PC of (`did`, `pid`) under `dc`, from the cache or by walking the PDT (its
   * pointers are GPAs translated by the walker's G stage, which the caller has set up); returns
   * null with {@linkcode cause} set (265/269 load fault or corruption, 266 not valid, 267
   * misconfigured, or the G-stage fault of an implicit access with {@linkcode iotval2}).
   */
  locatePc(dc: DeviceContext, did: number, pid: number): ProcessContext | null {
    const hit = this.#pcs.get(did, pid);
    const port = this.#port;
    if (hit !== undefined) {
      // Slot 0 of the countdowns is the model's own PDT-cache-hit event.
      if (--port.left[0] < 0) {
        port.report(0, HPMEVENT_PDT_CACHE_HIT, did, true, pid, false, 0, false, 0);
      }
      return hit;
    }
    if (--port.left[RISCV_IOMMU_HPMEVENT_PD_WALK] < 0) {
      port.report(
        RISCV_IOMMU_HPMEVENT_PD_WALK,
        RISCV_IOMMU_HPMEVENT_PD_WALK,
        did,
        true,
        pid,
        false,
        0,
        false,
        0,
      );
    }
    const mem = this.#mem;
    const sbe = dc.sbe;
    let pn = dc.fscPpn;
    for (let level = dc.pdtLevels - 1; level > 0; level--) {
      const off = (level === 1 ? (pid >>> 8) & 0x1ff : (pid >>> 17) & 7) * 8;
      const spn = this.#pdtSpn(dc, pn, off);
      if (spn < 0) return null;
      mem.load64(spn * 4096 + off, sbe);
      if (mem.fault !== 0) return this.#fail(this.#pdtLoadCause());
      const lo = mem.lo, hi = mem.hi;
      if ((lo & RISCV_IOMMU_PDTE_V) === 0) return this.#fail(RISCV_IOMMU_FQ_CAUSE_PDT_INVALID);
      if (_nonLeafReserved(lo, hi)) return this.#fail(RISCV_IOMMU_FQ_CAUSE_PDT_MISCONFIGURED);
      pn = ppnOf(lo, hi);
    }
    const off = (pid & 0xff) * 16;
    const spn = this.#pdtSpn(dc, pn, off);
    if (spn < 0) return null;
    mem.load64(spn * 4096 + off, sbe);
    if (mem.fault !== 0) return this.#fail(this.#pdtLoadCause());
    const ta = mem.lo, taHi = mem.hi;
    mem.load64(spn * 4096 + off + 8, sbe);
    if (mem.fault !== 0) return this.#fail(this.#pdtLoadCause());
    const fscLo = mem.lo, fscHi = mem.hi;
    if ((ta & RISCV_IOMMU_PC_TA_V) === 0) return this.#fail(RISCV_IOMMU_FQ_CAUSE_PDT_INVALID);
    const fsLevels = _fsLevels(this.#caps, fscHi >>> 28, dc.sxl);
    // Reserved: ta 11:3 and 63:32, fsc 59:44; MODE must be a supported encoding.
    if ((ta & 0xff8) !== 0 || taHi !== 0 || (fscHi & 0x0ffff000) !== 0 || fsLevels < 0) {
      return this.#fail(RISCV_IOMMU_FQ_CAUSE_PDT_MISCONFIGURED);
    }
    const pc = new ProcessContext(ta, fscLo, fscHi, fsLevels, dc, this.#tlb);
    this.#pcs.set(did, pid, pc);
    return pc;
  }

  /** IODIR.INVAL_DDT: DV=0 drops every DC and PC; DV=1 the DC of `did` and all its PCs. */
  invalDdt(dv: boolean, did: number): void {
    if (!dv) {
      this.flush();
      return;
    }
    this.#dcs.drop(did, 0);
    this.#pcs.drop(did, null);
  }

  /** IODIR.INVAL_PDT: drops the PC of (`did`, `pid`). */
  invalPdt(did: number, pid: number): void {
    this.#pcs.drop(did, pid);
  }

  /** Drops every cached DC and PC. */
  flush(): void {
    this.#dcs.clear();
    this.#pcs.clear();
  }

  /** `did` is no wider than `mode` allows: DDI[2] (and for 1LVL DDI[1]) zero when unused. */
  #fits(mode: number, did: number): boolean {
    return ddtDeviceIdFits(mode, did, this.#caps.msiFlat);
  }

  #fail(cause: number): null {
    this.cause = cause;
    return null;
  }

  #ddtLoadCause(): number {
    return this.#mem.fault === MEM_POISON
      ? RISCV_IOMMU_FQ_CAUSE_DDT_CORRUPTED
      : RISCV_IOMMU_FQ_CAUSE_DDT_LOAD_FAULT;
  }

  #pdtLoadCause(): number {
    return this.#mem.fault === MEM_POISON
      ? RISCV_IOMMU_FQ_CAUSE_PDT_CORRUPTED
      : RISCV_IOMMU_FQ_CAUSE_PDT_LOAD_FAULT;
  }

  /** The SPA page of PDT page `pn` (a GPA page when the G stage is active), or -1 on a fault. */
  #pdtSpn(dc: DeviceContext, pn: number, off: number): number {
    if (dc.gLevels === 0) return pn;
    const cause = this.#walker.implicitRead(pn, off);
    if (cause === 0) return this.#walker.gPn;
    this.cause = cause;
    this.iotval2 = this.#walker.iotval2;
    return -1;
  }

  /**
   * Applies the DC checks of spec §2.1.4 "Device-context configuration checks"; returns the decoded
   * DC or null if misconfigured.
   */
  #check(w: Uint32Array, ext: boolean): DeviceContext | null {
    const caps = this.#caps;
    const walker = this.#walker;
    const tc = w[0];
    const has = (bit: number) => (tc & bit) !== 0;
    const sxl = has(RISCV_IOMMU_DC_TC_SXL);
    const pdtv = has(RISCV_IOMMU_DC_TC_PDTV);
    // 1. Reserved bits: tc 23:12 and 63:32; ta 11:0 and 63:32 (39:32 with QOSID); fsc 59:44;
    // msiptp 59:44; mask/pattern 63:52 and above the widest GPA; the last doubleword.
    if (w[1] !== 0 || (tc & RISCV_IOMMU_DC_TC_RESERVED_LO) !== 0) return null;
    if ((w[4] & 0xfff) !== 0 || (caps.qosid ? w[5] & 0xff : w[5]) !== 0) return null;
    if ((w[7] & 0x0ffff000) !== 0) return null;
    if (ext) {
      const bits = this.#msiAddrBits();
      if ((w[9] & 0x0ffff000) !== 0 || w[14] !== 0 || w[15] !== 0) return null;
      if (!_fits(w[10], w[11], bits) || !_fits(w[12], w[13], bits)) return null;
    }
    // 2–7. ATS, PRI, PRPR and T2GPA combinations.
    const enAts = has(RISCV_IOMMU_DC_TC_EN_ATS);
    const enPri = has(RISCV_IOMMU_DC_TC_EN_PRI);
    const prpr = has(RISCV_IOMMU_DC_TC_PRPR);
    const t2gpa = has(RISCV_IOMMU_DC_TC_T2GPA);
    if (!caps.ats && (enAts || enPri || prpr)) return null;
    if (!enAts && (t2gpa || enPri)) return null;
    if (!enPri && prpr) return null;
    if (t2gpa && !caps.t2gpa) return null;
    const gLevels = _gLevels(caps, w[3] >>> 28, walker.gxl);
    if (t2gpa && gLevels === 0) return null;
    // 8–10. pdtp / iosatp modes, DPE.
    const fscMode = w[7] >>> 28;
    let fsLevels = 0, pdtLevels = 0;
    if (pdtv) {
      const supported = [true, caps.pd8, caps.pd17, caps.pd20];
      if (fscMode > 3 || !supported[fscMode]) return null;
      pdtLevels = fscMode;
    } else {
      fsLevels = _fsLevels(caps, fscMode, sxl);
      if (fsLevels < 0 || has(RISCV_IOMMU_DC_TC_DPE)) return null;
    }
    // 11, 13. iohgatp mode, 16 KiB root alignment.
    if (gLevels < 0 || (gLevels !== 0 && (w[2] & 3) !== 0)) return null;
    // 12. msiptp mode ([post-1.0] and not without a G stage).
    if (ext) {
      const msiMode = w[9] >>> 28;
      if (msiMode > 1 || (msiMode === 1 && gLevels === 0)) return null;
    }
    // 14. Hardware A/D updates need AMO_HWAD.
    if (!caps.amoHwad && has(RISCV_IOMMU_DC_TC_SADE | RISCV_IOMMU_DC_TC_GADE)) return null;
    // 15, 17. Without END, SBE must match fctl.BE.
    if (!caps.end && has(RISCV_IOMMU_DC_TC_SBE) !== walker.be) return null;
    // 16. SXL: must be 1 when GXL=1; must be 0 when GXL=0 is not writable.
    if (walker.gxl ? !sxl : sxl && !legalGxl(caps, true)) return null;
    return new DeviceContext(w, fsLevels, gLevels, pdtLevels, this.#tlb);
  }

  /** MGPAW − 12: width of msi_addr_mask/pattern allowed by the widest G-stage scheme or PAS. */
  #msiAddrBits(): number {
    const caps = this.#caps;
    const mgpaw = caps.sv57x4
      ? 59
      : caps.sv48x4
      ? 50
      : caps.sv39x4
      ? 41
      : caps.sv32x4
      ? 34
      : caps.pas;
    return Math.min(mgpaw - 12, 52);
  }
}
