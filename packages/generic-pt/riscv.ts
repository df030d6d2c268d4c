/**
 * The RISC-V page-table formats: the first stage (Sv39/Sv48/Sv57, what iosatp points to) and
 * the second stage (Sv39x4/Sv48x4/Sv57x4, what iohgatp points to). Mirrors
 * drivers/iommu/generic_pt/fmt/riscv.h (privileged spec Sv39–Sv57, Svnapot, Svpbmt; the
 * second stage as the dirty-tracking RFC adds it).
 *
 * Both stages share one PTE layout, so the PTE codec lives here as plain functions the engine
 * calls on 32-bit halves; the formats differ only in the data of their {@linkcode PtFormat}.
 * A level is the spec's `i` counted from the leaves: level 0 maps 4 KiB, level 1 2 MiB, level 2
 * 1 GiB, level 3 512 GiB, level 4 256 TiB. Every level can hold leaves.
 *
 * Both formats have the dirty hooks of the dirty-tracking RFC: D (bit 7) is the hardware dirty
 * bit, which the IOMMU sets with an atomic update when DC.tc.GADE (second stage) or SADE (first
 * stage) is on; an Svnapot leaf is dirty when any of its 16 copies is.
 *
 * @module
 */
import { Errno } from "@iommu-lab/kernel";
import {
  PT_ENTRY_EMPTY,
  PT_ENTRY_OA,
  PT_ENTRY_TABLE,
  type PtAttrs,
  type PtEntryType,
  type PtFeatures,
  type PtFormat,
} from "./pt_defs.ts";
import type { PtState } from "./pt_state.ts";
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/iommu";

/** PTE bit 0: valid. */
export const RISCVPT_V = 1 << 0;
/** PTE bit 1: readable. */
export const RISCVPT_R = 1 << 1;
/** PTE bit 2: writable. */
export const RISCVPT_W = 1 << 2;
/** PTE bit 3: executable. */
export const RISCVPT_X = 1 << 3;
/** PTE bit 4: user (IOMMU requests are user-mode unless privileged). */
export const RISCVPT_U = 1 << 4;
/** PTE bit 5: global. */
export const RISCVPT_G = 1 << 5;
/** PTE bit 6: accessed. */
export const RISCVPT_A = 1 << 6;
/** PTE bit 7: dirty. */
export const RISCVPT_D = 1 << 7;
/** PTE bits 9:8: reserved for software. */
export const RISCVPT_RSW = 3 << 8;
/** Shift of PPN (bits 53:10) in the PTE. */
export const RISCVPT_PPN_SHIFT = 10;
/** PTE bit 61 (PBMT = 1, NC) as a bit of the high word: non-cacheable memory. */
export const RISCVPT_NC_HI = 1 << 29;
/** PTE bit 62 (PBMT = 2, IO) as a bit of the high word: I/O (strongly ordered). */
export const RISCVPT_IO_HI = 1 << 30;
/** PTE bit 63 (N) as a bit of the high word: Svnapot contiguous entry. */
export const RISCVPT_N_HI = 2 ** 31;
/** PPN bits 43:22 as they sit in bits 21:0 of the high word. */
export const RISCVPT_PPN_HI_MASK = 0x3f_ffff;
/** Svnapot 64 KiB: PPN[3:0] = 1000b marks the size. */
export const RISCVPT_PPN64_64K_SZ = 8;
/** log2 of the number of level-0 entries in an Svnapot 64 KiB leaf (16). */
export const RISCVPT_NAPOT_64K_LG2 = 4;

const RWX = RISCVPT_R | RISCVPT_W | RISCVPT_X;
const PPN_LO_MASK = 0x3f_ffff;
const TWO22 = 0x40_0000;

/** Low word of a leaf PTE for page frame `ppn` with attribute bits `attrLo`. */
export function riscvptLeafLo(ppn: number, attrLo: number): number {
  return ((ppn & PPN_LO_MASK) << RISCVPT_PPN_SHIFT | attrLo | RISCVPT_V) >>> 0;
}

/** High word of a leaf PTE for page frame `ppn` with attribute bits `attrHi`. */
export function riscvptLeafHi(ppn: number, attrHi: number): number {
  return (Math.floor(ppn / TWO22) | attrHi) >>> 0;
}

/** Low word of a non-leaf PTE pointing to the table at frame `ppn` (A, D, U stay 0). */
export function riscvptTableLo(ppn: number): number {
  return ((ppn & PPN_LO_MASK) << RISCVPT_PPN_SHIFT | RISCVPT_V) >>> 0;
}

/** The PPN field of a PTE given as halves. */
export function riscvptPpn(lo: number, hi: number): number {
  return (lo >>> RISCVPT_PPN_SHIFT) + (hi & RISCVPT_PPN_HI_MASK) * TWO22;
}

/** Classifies a PTE at `level`: a valid entry is a leaf at level 0 or when any of R/W/X is set. */
export function riscvptEntryType(lo: number, level: number): PtEntryType {
  if ((lo & RISCVPT_V) === 0) return PT_ENTRY_EMPTY;
  if (level === 0 || (lo & RWX) !== 0) return PT_ENTRY_OA;
  return PT_ENTRY_TABLE;
}

/** Page frame where a leaf's output starts: Svnapot entries drop the PPN[3:0] size marker. */
export function riscvptEntryOaPpn(lo: number, hi: number): number {
  const ppn = riscvptPpn(lo, hi);
  return hi >= RISCVPT_N_HI ? ppn - ppn % 16 : ppn;
}

/** log2 of the number of entries a leaf PTE spans (4 for Svnapot 64 KiB, else 0). */
export function riscvptEntryNumContigLg2(hi: number): number {
  return hi >= RISCVPT_N_HI ? RISCVPT_NAPOT_64K_LG2 : 0;
}

/**
 * Leaf attributes for IOMMU `prot` like Linux: always A|U, with D pre-set for writable pages so
 * the IOMMU never needs to update A/D, unless dirty tracking is active (then the IOMMU sets D on
 * the first write); WRITE gives W|R, READ gives R, X unless NOEXEC; with Svpbmt, MMIO gives
 * PBMT=IO and non-CACHE gives PBMT=NC. Mirrors riscvpt_iommu_set_prot().
 */
function _riscvptSetProt(
  prot: number,
  features: Readonly<Required<PtFeatures>>,
  out: PtAttrs,
): void {
  let lo = RISCVPT_A | RISCVPT_U;
  let hi = 0;
  if (prot & IOMMU_WRITE) {
    lo |= RISCVPT_W | RISCVPT_R;
    if (!features.dirtyTrackingActive) lo |= RISCVPT_D;
  }
  if (prot & IOMMU_READ) lo |= RISCVPT_R;
  if (!(prot & IOMMU_NOEXEC)) lo |= RISCVPT_X;
  if (features.svpbmt) {
    if (prot & IOMMU_MMIO) hi |= RISCVPT_IO_HI;
    else if (!(prot & IOMMU_CACHE)) hi |= RISCVPT_NC_HI;
  }
  if ((lo & RWX) === 0) {
    throw new Errno("EOPNOTSUPP", `Cannot map with prot 0x${prot.toString(16)}: no R, W or X`);
  }
  out.lo = lo;
  out.hi = hi;
}

/**
 * Leaf attributes of an installed PTE, such that re-installing them gives the same PTE.
 * Mirrors riscvpt_attr_from_entry().
 */
export function riscvptAttrFromEntry(lo: number, hi: number, out: PtAttrs): void {
  out.lo = lo & (RWX | RISCVPT_U | RISCVPT_G | RISCVPT_A | RISCVPT_D);
  out.hi = hi & (RISCVPT_NC_HI | RISCVPT_IO_HI);
}

/** Physical address of the first entry of the leaf `pts` is on (its first Svnapot copy). */
function _leafEntries(pts: PtState): number {
  const n = 1 << riscvptEntryNumContigLg2(pts.hi);
  return pts.table + (pts.index - pts.index % n) * 8;
}

/**
 * True when D is set in the leaf `pts` is on (the entry loaded into it), in any of the 16
 * copies of an Svnapot leaf: the IOMMU sets D in the copy it walked. Mirrors
 * riscvpt_entry_is_write_dirty().
 */
export function riscvpt_entry_is_write_dirty(pts: PtState): boolean {
  const mem = pts.mem;
  const first = _leafEntries(pts);
  const n = 1 << riscvptEntryNumContigLg2(pts.hi);
  for (let k = 0; k < n; k++) {
    if ((mem.read32(first + k * 8) & RISCVPT_D) !== 0) return true;
  }
  return false;
}

/**
 * Clears D in the leaf `pts` is on, in every copy of an Svnapot leaf. Each copy is cleared with
 * a compare-and-swap loop on the PTE as it is in memory, so an A/D update the IOMMU makes
 * between the read and the write is never overwritten. Mirrors riscvpt_entry_make_write_clean().
 *
 * DIVERGENCE: the RFC writes `READ_ONCE(*p) & ~D` back with a plain store.
 */
export function riscvpt_entry_make_write_clean(pts: PtState): void {
  const mem = pts.mem;
  const first = _leafEntries(pts);
  const n = 1 << riscvptEntryNumContigLg2(pts.hi);
  for (let k = 0; k < n; k++) {
    const ea = first + k * 8;
    for (;;) {
      mem.load64(ea);
      const lo = mem.lo;
      const hi = mem.hi;
      if ((lo & RISCVPT_D) === 0 || mem.cas64(ea, lo, hi, (lo & ~RISCVPT_D) >>> 0, hi)) break;
    }
  }
}

/**
 * Sets D in the one entry `pts` is on if it still holds the value `pts` loaded (what the IOMMU
 * does on a write); otherwise leaves the value found in `pts` and returns false. Mirrors
 * riscvpt_entry_make_write_dirty().
 */
export function riscvpt_entry_make_write_dirty(pts: PtState): boolean {
  const mem = pts.mem;
  if (mem.cas64(pts.entryPa, pts.lo, pts.hi, (pts.lo | RISCVPT_D) >>> 0, pts.hi)) return true;
  pts.lo = mem.lo;
  pts.hi = mem.hi;
  return false;
}

/**
 * The RISC-V first-stage format (iosatp): Sv39, Sv48, Sv57 with top levels 2, 3, 4 and
 * iosatp MODE 8, 9, 10; 56-bit output addresses; sign-extended IOVAs.
 *
 * @example Which table a 48-bit domain builds
 * ```ts
 * import assert from "node:assert/strict";
 * import { riscv64 } from "@iommu-lab/generic-pt";
 *
 * assert.equal(riscv64.topLevels[48], 3);
 * assert.equal(riscv64.hwMode(3), 9); // Sv48
 * ```
 */
export const riscv64: PtFormat = Object.freeze({
  name: "riscv64",
  topLevels: Object.freeze({ 39: 2, 48: 3, 57: 4 }),
  topOrder: 0,
  canSignExtend: true,
  maxOaLg2: 56,
  setProt: _riscvptSetProt,
  hwMode: (topLevel: number) => topLevel + 6,
  is_write_dirty: riscvpt_entry_is_write_dirty,
  make_write_clean: riscvpt_entry_make_write_clean,
  make_write_dirty: riscvpt_entry_make_write_dirty,
});

/**
 * The RISC-V second-stage format (iohgatp): Sv39x4, Sv48x4, Sv57x4 (41/50/59-bit guest
 * physical addresses, zero-extended) with a 16 KiB, 2048-entry root table; iohgatp MODE 8, 9, 10
 * as iosatp's.
 */
export const riscv64x4: PtFormat = Object.freeze({
  name: "riscv64x4",
  topLevels: Object.freeze({ 41: 2, 50: 3, 59: 4 }),
  topOrder: 2,
  canSignExtend: false,
  maxOaLg2: 56,
  setProt: _riscvptSetProt,
  hwMode: (topLevel: number) => topLevel + 6,
  is_write_dirty: riscvpt_entry_is_write_dirty,
  make_write_clean: riscvpt_entry_make_write_clean,
  make_write_dirty: riscvpt_entry_make_write_dirty,
});
