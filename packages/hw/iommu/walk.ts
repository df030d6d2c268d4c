/**
 * Page-table walks: the first stage (Sv32/Sv39/Sv48/Sv57) and the G stage
 * (Sv32x4/Sv39x4/Sv48x4/Sv57x4), with superpages, Svnapot, Svpbmt, hardware A/D updates and the
 * G-stage translation of the first stage's implicit accesses (the Privileged spec's Sv39/48/57 and
 * Sv39x4/48x4/57x4, spec §2.3 "Process to translate an IOVA" steps 17 and 19).
 *
 * Addresses are handled as page numbers held in numbers (exact: below 2^52) plus a 12-bit offset,
 * so a walk allocates nothing and never needs `bigint` until it reports a fault.
 *
 * @module
 */

import { MEM_POISON, type PhysicalMemory } from "../memory.ts";
import { TWO32 } from "../_u64.ts";
import type { IommuCaps } from "./caps.ts";
import { ACC_EXEC, ACC_WRITE } from "./request.ts";
import {
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_R,
  PTE_RESERVED_HI,
  PTE_RESERVED_HI_SVRSW60T59B,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT_S,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT_VS,
  RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED,
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT,
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT_S,
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT_VS,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT_S,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT_VS,
  RISCV_IOMMU_HPMEVENT_G_WALKS,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
} from "./structs.ts";
import type { HpmEventSink } from "./hpm_event.ts";

/** Page-fault cause by access type (read, write, exec). */
const PAGE_FAULT = [
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT_S,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT_S,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT_S,
];
/** Guest-page-fault cause by access type. */
const GUEST_PAGE_FAULT = [
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT_VS,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT_VS,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT_VS,
];
/** Access-fault cause by access type. */
const ACCESS_FAULT = [
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT,
  RISCV_IOMMU_FQ_CAUSE_INST_FAULT,
];

/** Outcome of one G-stage translation, before it is turned into a cause. */
const G_OK = 0;
const G_PAGE_FAULT = 1;
const G_ACCESS_FAULT = 2;
const G_POISON = 3;

/** What a G-stage translation is for: the transaction's own access or an implicit one. */
const G_FINAL = 0;
const G_IMPLICIT_READ = 1;
const G_IMPLICIT_WRITE = 2;

/** GPA page-number width (GPA bits − 12) of Sv32x4, Sv39x4, Sv48x4, Sv57x4 by level count. */
const GPA_PN_BITS = [0, 0, 22, 29, 38, 47];

/** Superpage size in pages per log2, for `%` on page numbers above 2^32. */
const POW2: number[] = Array.from({ length: 54 }, (_, i) => 2 ** i);

/**
 * Permission bits kept for a translation, in PTE bit positions: R, W (only when D is set, so a
 * cached entry never lets a write skip the D update), X, U and G.
 */
export const PERM_BITS = PTE_R | PTE_W | PTE_X | PTE_U | PTE_G;

/** `bits [pos, pos + width)` of the 52-bit value `hi:lo` (hi holds bits 51:32). */
function _bits(lo: number, hi: number, pos: number, width: number): number {
  const m = (1 << width) - 1;
  if (pos >= 32) return (hi >>> (pos - 32)) & m;
  if (pos + width <= 32) return (lo >>> pos) & m;
  return ((lo >>> pos) | (hi << (32 - pos))) & m;
}

/** The low `k` bits (k ≤ 52) of the page number `hi:lo` (hi holds bits 51:32), as a number. */
export function vpnLow(lo: number, hi: number, k: number): number {
  if (k < 32) return (lo & (POW2[k] - 1)) >>> 0;
  return (hi & (POW2[k - 32] - 1)) * TWO32 + (lo >>> 0);
}

/**
 * The PPN in bits 53:10 of the doubleword `hi:lo`, as a number: the format of 64-bit PTEs,
 * non-leaf DDTEs and PDTEs, and MSI PTEs.
 */
export function ppnOf(lo: number, hi: number): number {
  return (hi & 0x3fffff) * 4194304 + (lo >>> 10);
}

/**
 * Walks first-stage and G-stage page tables for one IOMMU.
 *
 * The translator sets the request and context fields before each walk; results come back in
 * the output fields, and the methods return 0 or a fault CAUSE (with {@linkcode iotval2} set
 * for guest-page faults).
 */
export class PageWalker {
  /** `fctl.BE`: endianness of G-stage page tables (and, for others, the DDT and MSI tables). */
  be = false;
  /** `fctl.GXL`: iohgatp mode 8 means Sv32x4 instead of Sv39x4. */
  gxl = false;
  /** HPM event sink (events 7 and 8). */
  hpm: HpmEventSink | null = null;

  // Request, set by the translator.
  /** ACC_READ, ACC_WRITE or ACC_EXEC: the access type faults are reported with. */
  access = 0;
  /** The access may set D on a writable leaf: a write, or an ATS request asking for write. */
  dirty = false;
  /** ATS translation request: permissions are reported, not checked. */
  ats = false;
  /** Supervisor-privilege request (only with a process_id and PC.ta.ENS = 1). */
  priv = false;
  /** PC.ta.SUM. */
  sum = false;
  /** device_id, for HPM filters. */
  did = 0;
  /** Whether the request carries a process_id, for HPM filters. */
  pidValid = false;
  /** process_id, for HPM filters. */
  pid = 0;

  // First stage, set by the translator.
  /** Levels of the first-stage scheme: 0 Bare, 2 Sv32, 3 Sv39, 4 Sv48, 5 Sv57. */
  fsLevels = 0;
  /** Root page number of the first-stage table (a GPA page when the G stage is active). */
  fsRoot = 0;
  /** DC.tc.SBE: first-stage tables are big-endian. */
  sbe = false;
  /** DC.tc.SADE: update first-stage A/D bits instead of faulting. */
  sade = false;
  /** DC.tc.SXL: 32-bit schemes (also bounds GPAs to 34 bits). */
  sxl = false;
  /** PSCID, for HPM filters. */
  pscid = 0;

  // G stage, set by the translator.
  /** Levels of the G-stage scheme: 0 Bare, 2 Sv32x4, 3 Sv39x4, 4 Sv48x4, 5 Sv57x4. */
  gLevels = 0;
  /** Root page number of the G-stage table (16 KiB). */
  gRoot = 0;
  /** DC.tc.GADE: update G-stage A/D bits instead of faulting. */
  gade = false;
  /** GSCID, for HPM filters. */
  gscid = 0;

  // Outputs.
  /** First stage: the GPA page number the IOVA page maps to. */
  fsPn = 0;
  /** First stage: leaf permissions ({@linkcode PERM_BITS}; G is the AND along the walk). */
  fsPerm = 0;
  /** First stage: log2 of the leaf size in pages (0, 4 for Svnapot, 9/10, 18, 27, 36). */
  fsShift = 0;
  /** First stage: leaf PBMT. */
  fsPbmt = 0;
  /** G stage: the SPA page number the GPA page maps to. */
  gPn = 0;
  /** G stage: leaf permissions (R, W when D, X). */
  gPerm = 0;
  /** G stage: log2 of the leaf size in pages. */
  gShift = 0;
  /** G stage: leaf PBMT. */
  gPbmt = 0;
  /** iotval2 of the last guest-page fault (GPA[63:2], bit 0 implicit, bit 1 implicit write). */
  iotval2 = 0n;

  readonly #mem: PhysicalMemory;
  readonly #pasPages: number;
  readonly #reservedHi: number;
  readonly #svpbmt: boolean;

  /** Creates a walker over `mem` for an IOMMU with `caps`. */
  constructor(mem: PhysicalMemory, caps: IommuCaps) {
    this.#mem = mem;
    this.#pasPages = 2 ** Math.max(caps.pas - 12, 0);
    this.#reservedHi = caps.svrsw60t59b ? PTE_RESERVED_HI_SVRSW60T59B : PTE_RESERVED_HI;
    this.#svpbmt = caps.svpbmt;
  }

  /**
   * First-stage translation of the IOVA `hi:lo`: returns 0 with {@linkcode fsPn} etc. set, or
   * the fault cause. PTE addresses are G-stage translated (as implicit reads, and writes for
   * A/D updates) when {@linkcode gLevels} is not 0.
   */
  firstStage(lo: number, hi: number): number {
    const levels = this.fsLevels;
    const acc = this.access;
    const sv32 = levels === 2;
    if (sv32) {
      // SXL=1: IOVA bits above 31 must be zero.
      if (hi !== 0) return PAGE_FAULT[acc];
    } else {
      // Bits 63:VA-1 must all equal bit VA-1 (VA = 39, 48, 57).
      const s = hi >> (levels === 3 ? 6 : levels === 4 ? 15 : 24);
      if (s !== 0 && s !== -1) return PAGE_FAULT[acc];
    }
    if (this.hpm !== null) this.#count(RISCV_IOMMU_HPMEVENT_S_VS_WALKS);
    const vlo = (lo >>> 12) | (hi << 20);
    const vhi = hi >>> 12;
    const mem = this.#mem;
    const w = sv32 ? 10 : 9;
    const pteSize = sv32 ? 4 : 8;
    const gOn = this.gLevels !== 0;
    const sbe = this.sbe;
    const pasPages = this.#pasPages;
    walk: for (;;) {
      let pn = this.fsRoot;
      // The effective G is the OR along the walk: a global non-leaf PTE makes every mapping
      // below it global (Privileged spec, Sv32 "Addressing and Memory Protection", which
      // Sv39/48/57 and the IOMMU's first stage follow).
      let global = 0;
      for (let level = levels - 1;; level--) {
        const off = _bits(vlo, vhi, level * w, w) * pteSize;
        let spn = pn;
        if (gOn) {
          const g = this.#g(pn, G_IMPLICIT_READ);
          if (g !== G_OK) return this.#implicitFault(g, pn, off, false);
          spn = this.gPn;
        }
        if (spn >= pasPages) return ACCESS_FAULT[acc];
        const a = spn * 4096 + off;
        let pte: number, pteHi: number;
        if (sv32) {
          pte = mem.read32(a, sbe);
          pteHi = 0;
        } else {
          mem.load64(a, sbe);
          pte = mem.lo;
          pteHi = mem.hi;
        }
        if (mem.fault !== 0) {
          return mem.fault === MEM_POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[acc];
        }
        if ((pte & PTE_V) === 0 || (pte & (PTE_R | PTE_W)) === PTE_W) return PAGE_FAULT[acc];
        if (!sv32 && !this.#pbmtOk(pteHi)) return PAGE_FAULT[acc];
        if ((pte & (PTE_R | PTE_X)) === 0) {
          // Non-leaf: D, A, U, PBMT and N are reserved; running out of levels faults.
          if (level === 0 || (pte & (PTE_D | PTE_A | PTE_U)) !== 0 || pteHi >>> 29 !== 0) {
            return PAGE_FAULT[acc];
          }
          global |= pte & PTE_G;
          pn = sv32 ? pte >>> 10 : ppnOf(pte, pteHi);
          continue;
        }
        const ppn = sv32 ? pte >>> 10 : ppnOf(pte, pteHi);
        if (!this.ats) {
          const need = acc === ACC_EXEC ? PTE_X : acc === ACC_WRITE ? PTE_W : PTE_R;
          if ((pte & need) === 0) return PAGE_FAULT[acc];
        }
        if (this.priv) {
          // S-mode: never execute U pages; read/write them only with SUM.
          if ((pte & PTE_U) !== 0 && (acc === ACC_EXEC || !this.sum)) return PAGE_FAULT[acc];
        } else if ((pte & PTE_U) === 0) return PAGE_FAULT[acc];
        const napot = pteHi >>> 31 !== 0;
        let shift = level * w;
        if (napot) {
          // Svnapot: only 64 KiB (level-0 leaf with PPN[3:0] = 1000b).
          if (level !== 0 || (ppn & 15) !== 8) return PAGE_FAULT[acc];
          shift = 4;
        } else if (shift !== 0 && ppn % POW2[shift] !== 0) return PAGE_FAULT[acc];
        const wantD = this.dirty && (pte & PTE_W) !== 0;
        if ((pte & PTE_A) === 0 || (wantD && (pte & PTE_D) === 0)) {
          if (!this.sade) return PAGE_FAULT[acc];
          const upd = pte | PTE_A | (wantD ? PTE_D : 0);
          let wa = a;
          if (gOn) {
            const g = this.#g(pn, G_IMPLICIT_WRITE);
            if (g !== G_OK) return this.#implicitFault(g, pn, off, true);
            wa = this.gPn * 4096 + off;
          }
          let swapped: boolean;
          if (sv32) {
            const cur = mem.read32(wa, this.sbe);
            swapped = mem.fault === 0 && cur === pte >>> 0;
            if (swapped) mem.write32(wa, upd >>> 0, this.sbe);
          } else {
            swapped = mem.cas64(wa, pte >>> 0, pteHi >>> 0, upd >>> 0, pteHi >>> 0, this.sbe);
          }
          if (mem.fault !== 0) {
            return mem.fault === MEM_POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[acc];
          }
          // The PTE changed under us: walk again from the root.
          if (!swapped) continue walk;
          pte = upd;
        }
        this.fsShift = shift;
        this.fsPn = napot ? ppn - 8 + (vlo & 15) : ppn + vpnLow(vlo, vhi, shift);
        this.fsPerm = (pte & (PTE_R | PTE_X | PTE_U)) | ((pte | global) & PTE_G) |
          ((pte & (PTE_W | PTE_D)) === (PTE_W | PTE_D) ? PTE_W : 0);
        this.fsPbmt = sv32 ? 0 : (pteHi >>> 29) & 3;
        return 0;
      }
    }
  }

  /**
   * G-stage translation of the transaction's GPA page `gpn` (page offset `off`): returns 0 with
   * {@linkcode gPn} etc. set, or the fault cause (guest-page faults set {@linkcode iotval2}).
   */
  gStage(gpn: number, off: number): number {
    const g = this.#g(gpn, G_FINAL);
    if (g === G_OK) return 0;
    if (g === G_PAGE_FAULT) {
      this.iotval2 = BigInt(gpn) << 12n | BigInt(off & 0xffc);
      return GUEST_PAGE_FAULT[this.access];
    }
    return g === G_POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[this.access];
  }

  /**
   * G-stage translation of an implicit read of GPA page `gpn` (a PDT access): returns 0 with
   * {@linkcode gPn} set, or the fault cause of the transaction's access type.
   */
  implicitRead(gpn: number, off: number): number {
    const g = this.#g(gpn, G_IMPLICIT_READ);
    return g === G_OK ? 0 : this.#implicitFault(g, gpn, off, false);
  }

  #implicitFault(g: number, gpn: number, off: number, write: boolean): number {
    if (g === G_PAGE_FAULT) {
      this.iotval2 = BigInt(gpn) << 12n | BigInt(off & 0xffc) | (write ? 3n : 1n);
      return GUEST_PAGE_FAULT[this.access];
    }
    return g === G_POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[this.access];
  }

  /** PBMT (62:61) and reserved bits (60:54) of a PTE's high word are acceptable. */
  #pbmtOk(hi: number): boolean {
    if ((hi & this.#reservedHi) !== 0) return false;
    const pbmt = (hi >>> 29) & 3;
    return pbmt === 0 || (this.#svpbmt && pbmt !== 3);
  }

  /** Walks the G stage for GPA page `gpn`; returns a G_* outcome. */
  #g(gpn: number, kind: number): number {
    const levels = this.gLevels;
    const sv32x4 = levels === 2;
    // GPA bits above the scheme's width (above 33 when SXL=1) must be zero.
    if (gpn >= POW2[this.sxl ? 22 : GPA_PN_BITS[levels]]) return G_PAGE_FAULT;
    if (this.hpm !== null) this.#count(RISCV_IOMMU_HPMEVENT_G_WALKS);
    const glo = gpn >>> 0;
    const ghi = (gpn - glo) / TWO32;
    const mem = this.#mem;
    const w = sv32x4 ? 10 : 9;
    const pteSize = sv32x4 ? 4 : 8;
    const acc = this.access;
    walk: for (;;) {
      let pn = this.gRoot;
      for (let level = levels - 1;; level--) {
        // The root level indexes 2 extra bits (16 KiB root table).
        const idx = _bits(glo, ghi, level * w, level === levels - 1 ? w + 2 : w);
        if (pn >= this.#pasPages) return G_ACCESS_FAULT;
        const a = pn * 4096 + idx * pteSize;
        let pte: number, pteHi: number;
        if (sv32x4) {
          pte = mem.read32(a, this.be);
          pteHi = 0;
        } else {
          mem.load64(a, this.be);
          pte = mem.lo;
          pteHi = mem.hi;
        }
        if (mem.fault !== 0) return mem.fault === MEM_POISON ? G_POISON : G_ACCESS_FAULT;
        if ((pte & PTE_V) === 0 || (pte & (PTE_R | PTE_W)) === PTE_W) return G_PAGE_FAULT;
        if (!sv32x4 && !this.#pbmtOk(pteHi)) return G_PAGE_FAULT;
        if ((pte & (PTE_R | PTE_X)) === 0) {
          if (level === 0 || (pte & (PTE_D | PTE_A | PTE_U)) !== 0 || pteHi >>> 29 !== 0) {
            return G_PAGE_FAULT;
          }
          pn = sv32x4 ? pte >>> 10 : ppnOf(pte, pteHi);
          continue;
        }
        const ppn = sv32x4 ? pte >>> 10 : ppnOf(pte, pteHi);
        // Implicit accesses need R (W to update A/D); the transaction's own access needs what
        // it asks for, except ATS requests, whose missing permissions are reported.
        const need = kind === G_IMPLICIT_READ
          ? PTE_R
          : kind === G_IMPLICIT_WRITE
          ? PTE_W
          : this.ats
          ? 0
          : acc === ACC_EXEC
          ? PTE_X
          : acc === ACC_WRITE
          ? PTE_W
          : PTE_R;
        // G-stage leaves are checked as user accesses: U must be set.
        if ((pte & need) !== need || (pte & PTE_U) === 0) return G_PAGE_FAULT;
        const napot = pteHi >>> 31 !== 0;
        let shift = level * w;
        if (napot) {
          if (level !== 0 || (ppn & 15) !== 8) return G_PAGE_FAULT;
          shift = 4;
        } else if (shift !== 0 && ppn % POW2[shift] !== 0) return G_PAGE_FAULT;
        const wantD = kind === G_IMPLICIT_WRITE ||
          (kind === G_FINAL && this.dirty && (pte & PTE_W) !== 0);
        if ((pte & PTE_A) === 0 || (wantD && (pte & PTE_D) === 0)) {
          if (!this.gade) return G_PAGE_FAULT;
          const upd = pte | PTE_A | (wantD ? PTE_D : 0);
          let swapped: boolean;
          if (sv32x4) {
            const cur = mem.read32(a, this.be);
            swapped = mem.fault === 0 && cur === pte >>> 0;
            if (swapped) mem.write32(a, upd >>> 0, this.be);
          } else {
            swapped = mem.cas64(a, pte >>> 0, pteHi >>> 0, upd >>> 0, pteHi >>> 0, this.be);
          }
          if (mem.fault !== 0) return mem.fault === MEM_POISON ? G_POISON : G_ACCESS_FAULT;
          if (!swapped) continue walk;
          pte = upd;
        }
        this.gShift = shift;
        this.gPn = napot ? ppn - 8 + (glo & 15) : ppn + vpnLow(glo, ghi, shift);
        this.gPerm = (pte & (PTE_R | PTE_X)) |
          ((pte & (PTE_W | PTE_D)) === (PTE_W | PTE_D) ? PTE_W : 0);
        this.gPbmt = sv32x4 ? 0 : (pteHi >>> 29) & 3;
        return G_OK;
      }
    }
  }

  #count(event: number): void {
    this.hpm!.count(
      event,
      this.did,
      this.pidValid,
      this.pid,
      this.gLevels !== 0,
      this.gscid,
      this.fsLevels !== 0,
      this.pscid,
    );
  }
}
