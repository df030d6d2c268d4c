/**
 * Page-table walks: the first stage (Sv32/Sv39/Sv48/Sv57) and the G stage
 * (Sv32x4/Sv39x4/Sv48x4/Sv57x4), with superpages, Svnapot, Svpbmt, hardware A/D updates and the
 * G-stage translation of the first stage's implicit accesses (the Privileged spec's Sv39/48/57 and
 * Sv39x4/48x4/57x4, spec §2.3 "Process to translate an IOVA" steps 17 and 19).
 *
 * Addresses are handled as page numbers held in numbers (exact: below 2^52) plus a PTE index, so
 * a walk allocates nothing and never needs `bigint` until it reports a fault. A PTE is read by
 * its table's page number straight from the frame's words ({@linkcode PhysicalMemory.frameWords}):
 * no byte address, no division, no frame lookup beyond one tag compare. Only a table page the
 * words cannot serve (untouched, MMIO, not RAM, under an injected fault) and hardware A/D updates
 * go through the memory's byte-addressed accessors, which report the access faults and poison.
 * A first-stage walk of a host address space starts at its last level when the walk cache
 * (`walk_cache.ts`) holds the table; a plain 4 KiB leaf found there needs only a few tests
 * ({@linkcode PageWalker.cachedLeaf}), which is most of an IOTLB miss's walk.
 *
 * @module
 */

import { MEM_POISON, type PhysicalMemory } from "../memory.ts";
import { byteSwap32, TWO32 } from "../_u64.ts";
import type { IommuCaps } from "./caps.ts";
import {
  PTE_G,
  PTE_R,
  PTE_RESERVED_HI,
  PTE_RESERVED_HI_SVRSW60T59B,
  PTE_U,
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
} from "./structs.ts";
import type { HpmEventPort } from "./hpm_event.ts";
import type { WalkCache } from "./walk_cache.ts";

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

/**
 * The PTE bits the walk loops test (the Privileged spec's, as `PTE_*` in `structs.ts`; the walk
 * tests exercise every one) and the access types (as `ACC_*` in `request.ts`), as a const enum:
 * the transpiler writes its members into the code as literals, whereas a module constant,
 * imported or not, costs a load and a temporal-dead-zone check at every use even in optimized
 * code — a third of the walk's time.
 */
const enum B {
  V = 1,
  R = 2,
  W = 4,
  X = 8,
  U = 16,
  G = 32,
  A = 64,
  D = 128,
  READ = 0,
  WRITE = 1,
  EXEC = 2,
  /** HPM event 4, IOTLB miss (`RISCV_IOMMU_HPMEVENT_TLB_MISS`): cachedLeaf() counts it. */
  EV_TLB_MISS = 4,
  /** HPM event 7, first-stage walk (`RISCV_IOMMU_HPMEVENT_S_VS_WALKS`). */
  EV_S_WALK = 7,
  /** HPM event 8, G-stage walk (`RISCV_IOMMU_HPMEVENT_G_WALKS`). */
  EV_G_WALK = 8,
  /** `SLAB_FRAMES` − 1 (`memory.ts`): a frame's place in the words frameWords() returns. */
  SLAB_MASK = 15,
}

/** Outcome of one G-stage translation, before it is turned into a cause. */
const enum G {
  OK = 0,
  PAGE_FAULT = 1,
  ACCESS_FAULT = 2,
  POISON = 3,
}

/** What a G-stage translation is for: the transaction's own access or an implicit one. */
const enum GFor {
  FINAL = 0,
  IMPLICIT_READ = 1,
  IMPLICIT_WRITE = 2,
}

/** GPA page-number width (GPA bits − 12) of Sv32x4, Sv39x4, Sv48x4, Sv57x4 by level count. */
const GPA_PN_BITS = [0, 0, 22, 29, 38, 47];

/** Superpage size in pages per log2, for `%` on page numbers above 2^32. */
const POW2: number[] = Array.from({ length: 54 }, (_, i) => 2 ** i);

/**
 * Permission bits kept for a translation, in PTE bit positions: R, W (only when D is set, so a
 * cached entry never lets a write skip the D update), X, U and G.
 */
export const PERM_BITS = PTE_R | PTE_W | PTE_X | PTE_U | PTE_G;

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
  /** Where walks report HPM events (7 and 8); the directory's too. */
  readonly port: HpmEventPort;

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
  /** PSCID: the walk cache's tag, and for HPM filters. */
  pscid = 0;
  /**
   * The walk cache Sv39/48/57 walks of host address spaces (G stage Bare) use, or null (caching
   * off).
   */
  pwc: WalkCache | null = null;

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
  /** The port's countdowns. */
  readonly #left: Int32Array;
  /** A PTE read by the byte-addressed accessors, as the frame's words would hold it. */
  readonly #slow = new Uint32Array(2);
  readonly #pasPages: number;
  /**
   * The smaller of {@linkcode #pasPages} and 2^31 − 1: page numbers below it pass the PAS check
   * with one integer compare.
   */
  readonly #pasCap: number;
  /** High-word bits a PTE must have clear: the reserved ones, and PBMT without Svpbmt. */
  readonly #zeroHi: number;

  /** Creates a walker over `mem` for an IOMMU with `caps`, reporting events to `port`. */
  constructor(mem: PhysicalMemory, caps: IommuCaps, port: HpmEventPort) {
    this.#mem = mem;
    this.port = port;
    this.#left = port.left;
    this.#pasPages = 2 ** Math.max(caps.pas - 12, 0);
    this.#pasCap = Math.min(this.#pasPages, 0x7fff_ffff);
    this.#zeroHi = (caps.svrsw60t59b ? PTE_RESERVED_HI_SVRSW60T59B : PTE_RESERVED_HI) |
      (caps.svpbmt ? 0 : 0x6000_0000);
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
    if (--this.#left[B.EV_S_WALK] < 0) this.#report(B.EV_S_WALK);
    const vlo = (lo >>> 12) | (hi << 20);
    const vhi = hi >>> 12;
    // VPN bits 58:27, the indices of Sv48's and Sv57's upper levels: no bit juggling per level.
    const v27 = (vlo >>> 27) | (vhi << 5);
    const mem = this.#mem;
    const pteSize = sv32 ? 4 : 8;
    const gOn = this.gLevels !== 0;
    const sbe = this.sbe;
    const pasPages = this.#pasPages, pasCap = this.#pasCap;
    const nonLeafHi = this.#zeroHi | 0xe000_0000;
    const pwc = gOn || sv32 ? null : this.pwc;
    walk: for (;;) {
      let pn = this.fsRoot;
      // The effective G is the OR along the walk: a global non-leaf PTE makes every mapping
      // below it global (Privileged spec, Sv32 "Addressing and Memory Protection", which
      // Sv39/48/57 and the IOMMU's first stage follow).
      let global = 0;
      let top = levels - 1;
      if (pwc !== null) {
        const table = pwc.lookup(vlo, vhi, this.pscid);
        if (table >= 0) {
          pn = table;
          global = pwc.global;
          top = 0;
        }
      }
      for (let level = top;; level--) {
        // Sv32's indices and the lower three levels' are bits of the low word, the upper ones v27's.
        const idx = sv32
          ? (vlo >>> (level * 10)) & 1023
          : level < 3
          ? (vlo >>> (level * 9)) & 511
          : (v27 >>> (level * 9 - 27)) & 511;
        let spn = pn;
        if (gOn) {
          const g = this.#g(pn, GFor.IMPLICIT_READ);
          if (g !== G.OK) return this.#implicitFault(g, pn, idx * pteSize, false);
          spn = this.gPn;
        }
        if (spn >= pasCap && spn >= pasPages) return ACCESS_FAULT[acc];
        let f = mem.frameWords(spn);
        let i = ((spn & B.SLAB_MASK) << 10) + (sv32 ? idx : idx << 1);
        if (f === undefined) {
          const fault = this.#slowRead(spn, idx, pteSize);
          if (fault !== 0) {
            return fault === MEM_POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[acc];
          }
          f = this.#slow;
          i = 0;
        }
        let pte: number, pteHi: number;
        if (sv32) {
          pte = sbe ? byteSwap32(f[i]) : f[i];
          pteHi = 0;
        } else if (sbe) {
          pte = byteSwap32(f[i + 1]);
          pteHi = byteSwap32(f[i]);
        } else {
          pte = f[i];
          pteHi = f[i + 1];
        }
        // A well-formed non-leaf PTE above level 0, in one test: V, and R W X U A D clear, and
        // (Sv39/48/57) N, PBMT and the reserved bits clear. Anything else takes the checks below.
        if ((pte & 0xdf) === B.V && (pteHi & nonLeafHi) === 0 && level !== 0) {
          global |= pte & B.G;
          pn = sv32 ? pte >>> 10 : ppnOf(pte, pteHi);
          if (level === 1 && pwc !== null) pwc.insert(vlo, vhi, this.pscid, pn, global);
          continue;
        }
        if ((pte & B.V) === 0 || (pte & (B.R | B.W)) === B.W) return PAGE_FAULT[acc];
        if (!sv32 && !this.#pbmtOk(pteHi)) return PAGE_FAULT[acc];
        // Non-leaf: D, A, U, PBMT and N are reserved; running out of levels faults.
        if ((pte & (B.R | B.X)) === 0) return PAGE_FAULT[acc];
        const ppn = sv32 ? pte >>> 10 : ppnOf(pte, pteHi);
        // R, W, X are PTE bits 1, 2, 3: the access type's is 2 << access.
        if (!this.ats && (pte & (B.R << acc)) === 0) return PAGE_FAULT[acc];
        if (this.priv) {
          // S-mode: never execute U pages; read/write them only with SUM.
          if ((pte & B.U) !== 0 && (acc === B.EXEC || !this.sum)) return PAGE_FAULT[acc];
        } else if ((pte & B.U) === 0) return PAGE_FAULT[acc];
        const napot = pteHi >>> 31 !== 0;
        let shift = level * (sv32 ? 10 : 9);
        if (napot) {
          // Svnapot: only 64 KiB (level-0 leaf with PPN[3:0] = 1000b).
          if (level !== 0 || (ppn & 15) !== 8) return PAGE_FAULT[acc];
          shift = 4;
        } else if (shift !== 0 && ppn % POW2[shift] !== 0) return PAGE_FAULT[acc];
        const wantD = this.dirty && (pte & B.W) !== 0;
        if ((pte & B.A) === 0 || (wantD && (pte & B.D) === 0)) {
          if (!this.sade) return PAGE_FAULT[acc];
          const upd = pte | B.A | (wantD ? B.D : 0);
          const off = idx * pteSize;
          let wa = spn * 4096 + off;
          if (gOn) {
            const g = this.#g(pn, GFor.IMPLICIT_WRITE);
            if (g !== G.OK) return this.#implicitFault(g, pn, off, true);
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
        this.fsPn = napot
          ? ppn - 8 + (vlo & 15)
          : shift === 0
          ? ppn
          : ppn + vpnLow(vlo, vhi, shift);
        this.fsPerm = (pte & (B.R | B.X | B.U)) | ((pte | global) & B.G) |
          ((pte & (B.W | B.D)) === (B.W | B.D) ? B.W : 0);
        this.fsPbmt = sv32 ? 0 : (pteHi >>> 29) & 3;
        return 0;
      }
    }
  }

  /**
   * The common case of {@linkcode firstStage} in a few tests, for a host walk (Sv39/48/57, G
   * stage Bare, little-endian tables, no privilege, no ATS): when the walk cache holds the IOVA's
   * last-level table and its leaf is a 4 KiB page that allows the access with A (and for a write
   * D) already set, and N, PBMT and the reserved bits clear, counts the IOTLB miss that asked for
   * the walk (HPM event 4, which the translator counts itself otherwise) and the walk, sets
   * {@linkcode fsPerm} and returns the leaf's PPN. Anything else returns -1, counts nothing and
   * leaves the walk to firstStage, which decides it.
   */
  cachedLeaf(lo: number, hi: number): number {
    const pwc = this.pwc;
    if (pwc === null) return -1;
    const levels = this.fsLevels;
    const s = hi >> (levels === 3 ? 6 : levels === 4 ? 15 : 24);
    if (s !== 0 && s !== -1) return -1;
    const vlo = (lo >>> 12) | (hi << 20);
    const pn = pwc.lookup(vlo, hi >>> 12, this.pscid);
    if (pn < 0 || pn >= this.#pasCap) return -1;
    const f = this.#mem.frameWords(pn);
    if (f === undefined) return -1;
    const i = ((pn & B.SLAB_MASK) << 10) + ((vlo & 511) << 1);
    const pte = f[i], pteHi = f[i + 1];
    const acc = this.access;
    const need = B.V | B.R | B.U | B.A | (acc === B.WRITE ? B.W | B.D : acc === B.EXEC ? B.X : 0);
    if ((pte & need) !== need || (pteHi & (this.#zeroHi | 0xe000_0000)) !== 0) return -1;
    if (--this.#left[B.EV_TLB_MISS] < 0) this.#report(B.EV_TLB_MISS);
    if (--this.#left[B.EV_S_WALK] < 0) this.#report(B.EV_S_WALK);
    this.fsPerm = (pte & (B.R | B.X | B.U)) | ((pte | pwc.global) & B.G) |
      ((pte & (B.W | B.D)) === (B.W | B.D) ? B.W : 0);
    return ppnOf(pte, pteHi);
  }

  /**
   * G-stage translation of the transaction's GPA page `gpn` (page offset `off`): returns 0 with
   * {@linkcode gPn} etc. set, or the fault cause (guest-page faults set {@linkcode iotval2}).
   */
  gStage(gpn: number, off: number): number {
    const g = this.#g(gpn, GFor.FINAL);
    if (g === G.OK) return 0;
    if (g === G.PAGE_FAULT) {
      this.iotval2 = BigInt(gpn) << 12n | BigInt(off & 0xffc);
      return GUEST_PAGE_FAULT[this.access];
    }
    return g === G.POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[this.access];
  }

  /**
   * G-stage translation of an implicit read of GPA page `gpn` (a PDT access): returns 0 with
   * {@linkcode gPn} set, or the fault cause of the transaction's access type.
   */
  implicitRead(gpn: number, off: number): number {
    const g = this.#g(gpn, GFor.IMPLICIT_READ);
    return g === G.OK ? 0 : this.#implicitFault(g, gpn, off, false);
  }

  #implicitFault(g: number, gpn: number, off: number, write: boolean): number {
    if (g === G.PAGE_FAULT) {
      this.iotval2 = BigInt(gpn) << 12n | BigInt(off & 0xffc) | (write ? 3n : 1n);
      return GUEST_PAGE_FAULT[this.access];
    }
    return g === G.POISON ? RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED : ACCESS_FAULT[this.access];
  }

  /** PBMT (62:61) and reserved bits (60:54) of a PTE's high word are acceptable. */
  #pbmtOk(hi: number): boolean {
    // PBMT 3 is reserved even with Svpbmt.
    return (hi & this.#zeroHi) === 0 && (hi & 0x6000_0000) !== 0x6000_0000;
  }

  /** Walks the G stage for GPA page `gpn`; returns a G_* outcome. */
  #g(gpn: number, kind: number): number {
    const levels = this.gLevels;
    const sv32x4 = levels === 2;
    // GPA bits above the scheme's width (above 33 when SXL=1) must be zero; only a GPA page
    // number past 2^22 (16 GiB) needs the table.
    if (gpn >= 4194304 && gpn >= POW2[this.sxl ? 22 : GPA_PN_BITS[levels]]) return G.PAGE_FAULT;
    if (--this.#left[B.EV_G_WALK] < 0) this.#report(B.EV_G_WALK);
    const glo = gpn >>> 0;
    const ghi = gpn < 4294967296 ? 0 : (gpn - glo) / TWO32;
    // GPA page-number bits 58:27, the indices of Sv48x4's and Sv57x4's upper levels.
    const g27 = (glo >>> 27) | (ghi << 5);
    const mem = this.#mem;
    const be = this.be;
    const pteSize = sv32x4 ? 4 : 8;
    // Implicit accesses need R (W to update A/D); the transaction's own access needs what it
    // asks for (2 << access: R, W, X are PTE bits 1, 2, 3), except ATS requests, whose missing
    // permissions are reported. G-stage leaves are checked as user accesses: U must be set too.
    const need = B.U |
      (kind === GFor.IMPLICIT_READ
        ? B.R
        : kind === GFor.IMPLICIT_WRITE
        ? B.W
        : this.ats
        ? 0
        : B.R << this.access);
    const pasPages = this.#pasPages, pasCap = this.#pasCap;
    const nonLeafHi = this.#zeroHi | 0xe000_0000;
    walk: for (;;) {
      let pn = this.gRoot;
      for (let level = levels - 1;; level--) {
        // The root level indexes 2 extra bits (16 KiB root table); Sv32x4's indices and the lower
        // three levels' are bits of the low word, the upper ones g27's.
        const idx = sv32x4
          ? (glo >>> (level * 10)) & (level === 1 ? 4095 : 1023)
          : level < 3
          ? (glo >>> (level * 9)) & (level === levels - 1 ? 2047 : 511)
          : (g27 >>> (level * 9 - 27)) & (level === levels - 1 ? 2047 : 511);
        // The root's extra index bits pick one of its four pages (the word reads are per page).
        const tp = pn + (sv32x4 ? idx >>> 10 : idx >>> 9);
        if (tp >= pasCap && tp >= pasPages) return G.ACCESS_FAULT;
        let f = mem.frameWords(tp);
        let i = ((tp & B.SLAB_MASK) << 10) + (sv32x4 ? idx & 1023 : (idx & 511) << 1);
        if (f === undefined) {
          const fault = this.#slowRead(pn, idx, pteSize);
          if (fault !== 0) return fault === MEM_POISON ? G.POISON : G.ACCESS_FAULT;
          f = this.#slow;
          i = 0;
        }
        let pte: number, pteHi: number;
        if (sv32x4) {
          pte = be ? byteSwap32(f[i]) : f[i];
          pteHi = 0;
        } else if (be) {
          pte = byteSwap32(f[i + 1]);
          pteHi = byteSwap32(f[i]);
        } else {
          pte = f[i];
          pteHi = f[i + 1];
        }
        // A well-formed non-leaf PTE above level 0 in one test, as in the first stage.
        if ((pte & 0xdf) === B.V && (pteHi & nonLeafHi) === 0 && level !== 0) {
          pn = sv32x4 ? pte >>> 10 : ppnOf(pte, pteHi);
          continue;
        }
        if ((pte & B.V) === 0 || (pte & (B.R | B.W)) === B.W) return G.PAGE_FAULT;
        if (!sv32x4 && !this.#pbmtOk(pteHi)) return G.PAGE_FAULT;
        if ((pte & (B.R | B.X)) === 0) return G.PAGE_FAULT;
        const ppn = sv32x4 ? pte >>> 10 : ppnOf(pte, pteHi);
        if ((pte & need) !== need) return G.PAGE_FAULT;
        const napot = pteHi >>> 31 !== 0;
        let shift = level * (sv32x4 ? 10 : 9);
        if (napot) {
          if (level !== 0 || (ppn & 15) !== 8) return G.PAGE_FAULT;
          shift = 4;
        } else if (shift !== 0 && ppn % POW2[shift] !== 0) return G.PAGE_FAULT;
        const wantD = kind === GFor.IMPLICIT_WRITE ||
          (kind === GFor.FINAL && this.dirty && (pte & B.W) !== 0);
        if ((pte & B.A) === 0 || (wantD && (pte & B.D) === 0)) {
          if (!this.gade) return G.PAGE_FAULT;
          const upd = pte | B.A | (wantD ? B.D : 0);
          const a = pn * 4096 + idx * pteSize;
          let swapped: boolean;
          if (sv32x4) {
            const cur = mem.read32(a, be);
            swapped = mem.fault === 0 && cur === pte >>> 0;
            if (swapped) mem.write32(a, upd >>> 0, be);
          } else {
            swapped = mem.cas64(a, pte >>> 0, pteHi >>> 0, upd >>> 0, pteHi >>> 0, be);
          }
          if (mem.fault !== 0) return mem.fault === MEM_POISON ? G.POISON : G.ACCESS_FAULT;
          if (!swapped) continue walk;
          pte = upd;
        }
        this.gShift = shift;
        this.gPn = napot ? ppn - 8 + (glo & 15) : shift === 0 ? ppn : ppn + vpnLow(glo, ghi, shift);
        this.gPerm = (pte & (B.R | B.X)) |
          ((pte & (B.W | B.D)) === (B.W | B.D) ? B.W : 0);
        this.gPbmt = sv32x4 ? 0 : (pteHi >>> 29) & 3;
        return G.OK;
      }
    }
  }

  /**
   * Reads the `size`-byte PTE at index `idx` of table page `pn` through the byte-addressed
   * accessors into `#slow`, little-endian as a frame holds it; returns the MEM_* fault.
   */
  #slowRead(pn: number, idx: number, size: number): number {
    const mem = this.#mem;
    const a = pn * 4096 + idx * size;
    if (size === 4) {
      this.#slow[0] = mem.read32(a);
    } else {
      mem.load64(a);
      this.#slow[0] = mem.lo;
      this.#slow[1] = mem.hi;
    }
    return mem.fault;
  }

  #report(event: number): void {
    this.port.report(
      event,
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
