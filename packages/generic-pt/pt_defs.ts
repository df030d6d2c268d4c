/**
 * Definitions every page-table format shares: entry types, features, the attribute bits a
 * format derives from `prot`, and the {@linkcode PtFormat} description the engine runs on.
 * Mirrors drivers/iommu/generic_pt/pt_defs.h.
 *
 * @module
 */
import type { PtState } from "./pt_state.ts";

/** Size of the smallest page and of every table page. */
export const PT_GRANULE_SIZE = 4096;
/** log2 of {@linkcode PT_GRANULE_SIZE}. */
export const PT_GRANULE_LG2SZ = 12;
/** Page frame numbers of the sign-extended 64-bit IOVA space are below this (2^52). */
export const PT_PFN_SPACE = 2 ** 52;

/** The entry is not valid. */
export const PT_ENTRY_EMPTY = 0;
/** The entry points to a lower table. */
export const PT_ENTRY_TABLE = 1;
/** The entry is a leaf: it holds an output address. */
export const PT_ENTRY_OA = 2;
/** What a loaded entry is: {@linkcode PT_ENTRY_EMPTY}, {@linkcode PT_ENTRY_TABLE} or {@linkcode PT_ENTRY_OA}. */
export type PtEntryType = 0 | 1 | 2;

/**
 * Optional format features, as the IOMMU advertises them. Mirrors the PT_FEAT_* bits.
 *
 * - `svnapot`: 64 KiB leaves as 16 identical level-0 PTEs (PT_FEAT_RISCV_SVNAPOT_64K).
 * - `svpbmt`: page-based memory types in PTE bits 62:61 (PT_FEAT_RISCV_SVPBMT).
 * - `signExtend`: the upper half of the IOVA space, sign-extended, is mapped too
 *   (PT_FEAT_SIGN_EXTEND; first stage only).
 * - `dirtyTrackingActive`: the IOMMU sets D on the first write, so writable leaves are made
 *   without it (PT_FEAT_RISCV_DIRTY_TRACKING_ACTIVE); toggled on a live table with
 *   `PtIommu.set_dirty_tracking_active()`.
 */
export interface PtFeatures {
  /** Svnapot 64 KiB contiguous leaves. */
  svnapot?: boolean;
  /** Svpbmt memory types. */
  svpbmt?: boolean;
  /** Sign-extended upper half of the IOVA space. */
  signExtend?: boolean;
  /** Hardware dirty tracking is on: writable leaves start clean. */
  dirtyTrackingActive?: boolean;
}

/** Attribute bits of a leaf PTE as 32-bit halves (struct pt_write_attrs' descriptor_bits). */
export interface PtAttrs {
  /** Bits 31:0. */
  lo: number;
  /** Bits 63:32. */
  hi: number;
}

/** Where freed table pages go back to: a page allocator seen as pages of `2^order` frames. */
export interface PtAllocator {
  /**
   * Returns the physical address of `2^order` zeroed, contiguous, size-aligned 4 KiB pages.
   * Order is 0 for every table except a second-stage root (2). Throws `ENOMEM` when out of
   * memory.
   */
  allocTable(order: number): number;
  /** Frees pages {@linkcode PtAllocator.allocTable} returned, with the same order. */
  freeTable(pa: number, order: number): void;
}

/**
 * A page-table format as data plus hooks: geometry, limits and the few functions that differ.
 * The engine ({@linkcode PtIommu}) walks any format described this way.
 */
export interface PtFormat {
  /** Name for messages, e.g. `"riscv64"`. */
  readonly name: string;
  /** IOVA width in bits → top level; the keys are the widths the format supports. */
  readonly topLevels: Readonly<Record<number, number>>;
  /** log2 of the number of 4 KiB pages of the top table (its extra index bits). */
  readonly topOrder: number;
  /** True when the upper half of the IOVA space may be sign-extended (first stage). */
  readonly canSignExtend: boolean;
  /** Widest output address in bits. */
  readonly maxOaLg2: number;
  /**
   * Computes the leaf attribute bits for IOMMU `prot` flags into `out`.
   * Throws `EOPNOTSUPP` for combinations the format cannot express.
   */
  setProt(prot: number, features: Readonly<Required<PtFeatures>>, out: PtAttrs): void;
  /** The MODE value the IOMMU's context takes for a table of `topLevel`. */
  hwMode(topLevel: number): number;
  /**
   * True when the IOMMU wrote through the leaf `pts` is on (any item of a contiguous leaf).
   * Mirrors pt_entry_is_write_dirty(); formats without hardware dirty tracking leave the three
   * dirty hooks out.
   */
  is_write_dirty?(pts: PtState): boolean;
  /**
   * Makes the leaf `pts` is on (every item of it) not dirty, without losing a concurrent update
   * by the IOMMU. Mirrors pt_entry_make_write_clean().
   */
  make_write_clean?(pts: PtState): void;
  /**
   * Marks the one entry `pts` is on dirty if it still holds the value `pts` loaded; otherwise
   * leaves the value found in `pts` and returns false. Mirrors pt_entry_make_write_dirty().
   */
  make_write_dirty?(pts: PtState): boolean;
}
