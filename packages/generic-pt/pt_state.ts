/**
 * A cursor on one entry of one table in simulated memory: the format-level API (load, install
 * a leaf or a table, clear, decode) that the engine's slow paths and the format conformance
 * tests use. Mirrors struct pt_state and the pt_* entry helpers of pt_common.h.
 *
 * @module
 */
import type { PhysMem } from "@iommu-lab/kernel";
import { PT_ENTRY_EMPTY, PT_GRANULE_LG2SZ, type PtAttrs, type PtEntryType } from "./pt_defs.ts";
import {
  RISCVPT_N_HI,
  RISCVPT_NAPOT_64K_LG2,
  RISCVPT_PPN64_64K_SZ,
  riscvptAttrFromEntry,
  riscvptEntryNumContigLg2,
  riscvptEntryOaPpn,
  riscvptEntryType,
  riscvptLeafHi,
  riscvptLeafLo,
  riscvptPpn,
  riscvptTableLo,
} from "./riscv.ts";

/**
 * The state of a walk at one entry: which table, level and index, and the entry last loaded.
 *
 * @example Installing and reading back a table pointer
 * ```ts
 * import assert from "node:assert/strict";
 * import { PT_ENTRY_TABLE, PtState } from "@iommu-lab/generic-pt";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 20);
 * const pts = new PtState(ram);
 * pts.table = 0x8000_0000;
 * pts.level = 1;
 * pts.index = 3;
 * pts.installTable(0x8000_1000);
 * assert.equal(pts.load(), PT_ENTRY_TABLE);
 * assert.equal(pts.tablePa(), 0x8000_1000);
 * ```
 */
export class PtState {
  /** Physical address of the table. */
  table = 0;
  /** Level of the table (0 holds 4 KiB leaves). */
  level = 0;
  /** Index of the entry within the table. */
  index = 0;
  /** Low word of the entry last loaded or written. */
  lo = 0;
  /** High word of the entry last loaded or written. */
  hi = 0;
  /** Type of the entry last loaded or written. */
  type: PtEntryType = PT_ENTRY_EMPTY;

  /** Creates a cursor on tables in `mem`. */
  constructor(readonly mem: PhysMem) {}

  /** Physical address of the entry. */
  get entryPa(): number {
    return this.table + this.index * 8;
  }

  /** Reads the entry and classifies it. Mirrors pt_load_entry(). */
  load(): PtEntryType {
    const mem = this.mem;
    mem.load64(this.entryPa);
    this.lo = mem.lo;
    this.hi = mem.hi;
    return this.type = riscvptEntryType(this.lo, this.level);
  }

  /**
   * Writes a leaf mapping `2^oaLg2sz` bytes at page frame `oaPpn` with `attrs`: one entry, or
   * the 16 identical entries of an Svnapot 64 KiB leaf at level 0. Mirrors
   * riscvpt_install_leaf_entry().
   */
  installLeaf(oaPpn: number, oaLg2sz: number, attrs: PtAttrs): void {
    const napot = this.level === 0 && oaLg2sz !== PT_GRANULE_LG2SZ;
    const ppn = napot ? oaPpn + RISCVPT_PPN64_64K_SZ : oaPpn;
    const lo = riscvptLeafLo(ppn, attrs.lo);
    const hi = riscvptLeafHi(ppn, napot ? attrs.hi | RISCVPT_N_HI : attrs.hi);
    const n = napot ? 1 << RISCVPT_NAPOT_64K_LG2 : 1;
    const ea = this.entryPa;
    for (let i = 0; i < n; i++) this.mem.store64(ea + i * 8, lo, hi);
    this.lo = lo;
    this.hi = hi;
    this.type = riscvptEntryType(lo, this.level);
  }

  /** Points the entry at the table at `tablePa`. Mirrors riscvpt_install_table(). */
  installTable(tablePa: number): void {
    const ppn = tablePa / 4096;
    this.lo = riscvptTableLo(ppn);
    this.hi = riscvptLeafHi(ppn, 0);
    this.mem.store64(this.entryPa, this.lo, this.hi);
    this.type = riscvptEntryType(this.lo, this.level);
  }

  /** Zeroes `2^numContigLg2` entries from the current index. Mirrors pt_clear_entries(). */
  clear(numContigLg2: number): void {
    const ea = this.entryPa;
    for (let i = 0; i < 1 << numContigLg2; i++) this.mem.store64(ea + i * 8, 0, 0);
    this.lo = 0;
    this.hi = 0;
    this.type = PT_ENTRY_EMPTY;
  }

  /** Physical address of the table a table entry points to. Mirrors pt_table_pa(). */
  tablePa(): number {
    return riscvptPpn(this.lo, this.hi) * 4096;
  }

  /** Page frame where the leaf's output range starts. Mirrors pt_entry_oa(). */
  entryOaPpn(): number {
    return riscvptEntryOaPpn(this.lo, this.hi);
  }

  /** Page frame this entry (one item of a contiguous leaf) translates to. Mirrors pt_item_oa(). */
  itemOaPpn(): number {
    const contig = 1 << this.numContigLg2();
    return this.entryOaPpn() + (this.index % contig) * 512 ** this.level;
  }

  /** log2 of the number of entries the leaf spans. Mirrors pt_entry_num_contig_lg2(). */
  numContigLg2(): number {
    return riscvptEntryNumContigLg2(this.hi);
  }

  /** The leaf's attribute bits. Mirrors pt_attr_from_entry(). */
  attrFromEntry(out: PtAttrs): void {
    riscvptAttrFromEntry(this.lo, this.hi, out);
  }
}
