/**
 * The page-table engine behind an IOMMU paging domain: map, unmap and translate on tables that
 * live in simulated physical memory, where the IOMMU walks them. Mirrors
 * drivers/iommu/generic_pt/iommu_pt.h (the pt_iommu_* domain ops).
 *
 * Addresses are page frame numbers internally, kept as JS numbers: an IOVA becomes its frame
 * number in the 64-bit IOVA space (below 2^52), so the sign-extended upper half needs no
 * `bigint` either. Hot paths (a 4 KiB map or unmap) allocate nothing; a cache of the tables the
 * last walk went through makes sequential maps touch one PTE each.
 *
 * @module
 */
import { Errno, hex, type PhysMem } from "@iommu-lab/kernel";
import { ffs, fls } from "./log2.ts";
import {
  PT_ENTRY_OA,
  PT_ENTRY_TABLE,
  PT_GRANULE_LG2SZ,
  PT_GRANULE_SIZE,
  PT_PFN_SPACE,
  type PtAllocator,
  type PtAttrs,
  type PtFeatures,
  type PtFormat,
} from "./pt_defs.ts";
import { PtState } from "./pt_state.ts";
import {
  iommu_dirty_bitmap_record,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDirtyBitmap,
  IommuIotlbGather,
  iova_bitmap_set,
} from "@iommu-lab/iommu";
import {
  riscv64,
  RISCVPT_D,
  RISCVPT_N_HI,
  RISCVPT_NAPOT_64K_LG2,
  RISCVPT_R,
  RISCVPT_V,
  RISCVPT_W,
  RISCVPT_X,
  riscvptEntryOaPpn,
  riscvptLeafHi,
  riscvptLeafLo,
  riscvptPpn,
  riscvptTableLo,
} from "./riscv.ts";

/**
 * An I/O virtual address: a number for the lower half (a negative number names the
 * sign-extended upper half, -4096 being the last page), or a `bigint` either as the 64-bit
 * unsigned value or negative.
 */
export type Iova = number | bigint;

/** How to build a {@linkcode PtIommu}. */
export interface PtIommuConfig {
  /** Memory the tables live in (and the IOMMU walks). */
  mem: PhysMem;
  /** Where table pages come from and go back to. */
  alloc: PtAllocator;
  /** IOVA width: 39, 48 or 57 for the first stage; 41, 50 or 59 for the second. */
  vaBits: number;
  /** Optional format features; all off by default. */
  features?: PtFeatures;
  /** The table format; {@linkcode riscv64} (first stage) by default. */
  format?: PtFormat;
  /**
   * Invalidates the IOTLB for what a map without a caller gather changed (it replaced empty
   * tables by a large leaf, or rolled back after an error). The engine frees the gathered
   * table pages once it returns. Mirrors the domain's `iotlb_sync`; a no-op by default.
   */
  iotlbSync?: (gather: IommuIotlbGather) => void;
}

/** What the IOMMU context needs to point at the table. Mirrors pt_iommu_riscv_64_hw_info. */
export interface PtIommuHwInfo {
  /** Physical address of the top table. */
  rootPa: number;
  /** Its page frame number, for iosatp/iohgatp.PPN. */
  ppn: number;
  /** iosatp/iohgatp.MODE: 8 (Sv39), 9 (Sv48), 10 (Sv57), the x4 modes alike. */
  mode: number;
}

/**
 * The domain operations the IOMMU core calls on a paging domain's table. Mirrors
 * IOMMU_PT_DOMAIN_OPS (map_pages, unmap_pages, iova_to_phys).
 */
export interface PtIommuDomainOps {
  /** Page sizes the table can map, as a bitmap of sizes in bytes. */
  readonly pgsize_bitmap: number;
  /** Maps `pgcount` pages of `pgsize` bytes; returns the bytes mapped. */
  map_pages(
    iova: Iova,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: number,
    gather?: IommuIotlbGather,
  ): number;
  /** Unmaps `pgcount` pages of `pgsize` bytes; returns the bytes unmapped. */
  unmap_pages(iova: Iova, pgsize: number, pgcount: number, gather: IommuIotlbGather): number;
  /** Returns the physical address `iova` translates to, or 0. */
  iova_to_phys(iova: Iova): number;
}

/** Pages per item at each level: 4 KiB · 512^level. */
const ITEM_PAGES = [1, 2 ** 9, 2 ** 18, 2 ** 27, 2 ** 36, 2 ** 45];
const RWX = RISCVPT_R | RISCVPT_W | RISCVPT_X;

/**
 * Computes the largest page size in `pgsizeBitmap` (sizes in bytes) that maps frame `pfn` to
 * frame `ppn` without passing `lastPfn`: both addresses aligned to it and the range at least
 * that long. Returns its log2 in bytes, or 0 when none fits. Mirrors pt_compute_best_pgsize().
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ptComputeBestPgsize } from "@iommu-lab/generic-pt";
 *
 * const bitmap = 0x1000 | 0x20_0000 | 0x4000_0000; // 4K | 2M | 1G
 * assert.equal(ptComputeBestPgsize(bitmap, 0x200, 0x5ff, 0x400), 21); // 2 MiB fits
 * assert.equal(ptComputeBestPgsize(bitmap, 0x200, 0x5ff, 0x401), 12); // OA not 2 MiB aligned
 * ```
 */
export function ptComputeBestPgsize(
  pgsizeBitmap: number,
  pfn: number,
  lastPfn: number,
  ppn: number,
): number {
  let lg2 = Math.min(ffs(pfn), ffs(ppn), fls(lastPfn - pfn + 1) - 1) + PT_GRANULE_LG2SZ;
  if (lg2 > 52) lg2 = 52;
  for (; lg2 >= PT_GRANULE_LG2SZ; lg2--) {
    if (Math.floor(pgsizeBitmap / 2 ** lg2) % 2 === 1) return lg2;
  }
  return 0;
}

/**
 * A page table for one IOMMU paging domain, with Linux's map_pages/unmap_pages semantics.
 * Mirrors struct pt_iommu and the pt_iommu_riscv_64_* functions.
 *
 * - Mapping over anything mapped fails with `EADDRINUSE` and leaves nothing of the call
 *   mapped; tables that only held empty tables are replaced by a larger leaf (and freed through
 *   the gather).
 * - Unmapping stops at the first hole and never splits a leaf: a range that starts at a leaf
 *   unmaps the whole leaf (the return value says how much), one that starts inside a leaf
 *   unmaps nothing. A table is freed when the range covers it entirely.
 * - On `ENOMEM` (or any error) mid-way, the leaves installed by the call are removed again;
 *   tables already built stay linked and empty, as Linux keeps them, and are reused or freed by
 *   a later unmap covering them or by {@linkcode deinit}.
 *
 * @example Mapping, translating, unmapping
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_READ, IOMMU_WRITE, IommuIotlbGather } from "@iommu-lab/iommu";
 * import { PtIommu } from "@iommu-lab/generic-pt";
 * import { TestTableAllocator } from "@iommu-lab/generic-pt/testing";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 24);
 * const alloc = new TestTableAllocator(ram, 0x8000_0000, 1 << 24);
 * const pt = new PtIommu({ mem: ram, alloc, vaBits: 39, features: { signExtend: true } });
 * assert.deepEqual(pt.hwInfo().mode, 8); // Sv39
 *
 * pt.map(0x10_0000, 0x9000_0000, 0x4000, IOMMU_READ | IOMMU_WRITE);
 * assert.equal(pt.iova_to_phys(0x10_2010), 0x9000_2010);
 * pt.map(-4096, 0x9100_0000, 4096, IOMMU_READ); // the last page of the upper half
 * assert.equal(pt.iova_to_phys(0xffff_ffff_ffff_f000n), 0x9100_0000);
 *
 * const gather = new IommuIotlbGather();
 * assert.equal(pt.unmap(0x10_0000, 0x4000, gather), 0x4000);
 * assert.equal(pt.iova_to_phys(0x10_0000), 0);
 * gather.putPages();
 * pt.deinit();
 * assert.equal(alloc.allocatedPages, 0);
 * ```
 */
export class PtIommu implements PtIommuDomainOps {
  /** The table format. */
  readonly format: PtFormat;
  /** IOVA width in bits. */
  readonly vaBits: number;
  /** Level of the top table. */
  readonly topLevel: number;
  /** The features in force. */
  get features(): Readonly<Required<PtFeatures>> {
    return this.#features;
  }
  /** Page sizes this table maps, as a bitmap of sizes in bytes (4K, 64K with Svnapot, 2M, ...). */
  readonly pgsize_bitmap: number;

  #features: Readonly<Required<PtFeatures>>;
  readonly #mem: PhysMem;
  readonly #alloc: PtAllocator;
  readonly #iotlbSync: (gather: IommuIotlbGather) => void;
  #root: number;
  readonly #topMask: number;
  /** Frames below this are the lower region of the IOVA space. */
  readonly #lowEnd: number;
  /** Frames from here up to 2^52 are the sign-extended upper region (Infinity without one). */
  readonly #highStart: number;
  readonly #ppnEnd: number;
  /** Leaf sizes, ascending: pages per leaf, level, log2 of the entries a leaf spans. */
  readonly #szPages: number[] = [];
  readonly #szLevel: number[] = [];
  readonly #szContigLg2: number[] = [];
  /** Walk cache: per level, which table (by frame / pages covered) was last used, and where. */
  readonly #ckey = [-1, -1, -1, -1, -1];
  readonly #ctab = [0, 0, 0, 0, 0];
  #protKey = -1;
  readonly #attrs: PtAttrs = { lo: 0, hi: 0 };
  readonly #pts: PtState;
  readonly #ownGather = new IommuIotlbGather();
  /** Byte offset within the page of the IOVA {@linkcode #toPfn} converted last. */
  #off = 0;
  /** Leaves installed so far by the running map, for the rollback. */
  #done = 0;
  /** Pages cleared so far by the running unmap. */
  #unmapped = 0;
  /** Per level, a copy of the table the dirty scan is reading there (allocated on first use). */
  readonly #dirtyBytes: Uint8Array[] = [];
  readonly #dirtyView: DataView[] = [];

  /**
   * Allocates the top table. Throws `EINVAL` for a width or feature the format lacks or a top
   * table the IOMMU cannot address, `ENOMEM` from the allocator. Mirrors pt_iommu_riscv_64_init().
   */
  constructor(config: PtIommuConfig) {
    const format = config.format ?? riscv64;
    const top = format.topLevels[config.vaBits];
    if (top === undefined) {
      throw new Errno("EINVAL", `Format ${format.name} has no ${config.vaBits}-bit IOVA space`);
    }
    const f = config.features ?? {};
    const features = Object.freeze({
      svnapot: f.svnapot === true,
      svpbmt: f.svpbmt === true,
      signExtend: f.signExtend === true,
      dirtyTrackingActive: f.dirtyTrackingActive === true,
    });
    if (features.signExtend && !format.canSignExtend) {
      throw new Errno("EINVAL", `Format ${format.name} cannot sign-extend IOVAs`);
    }
    if (features.dirtyTrackingActive && format.make_write_clean === undefined) {
      throw new Errno("EINVAL", `Format ${format.name} has no dirty tracking`);
    }
    this.format = format;
    this.vaBits = config.vaBits;
    this.topLevel = top;
    this.#features = features;
    this.#mem = config.mem;
    this.#alloc = config.alloc;
    this.#iotlbSync = config.iotlbSync ?? (() => {});
    this.#pts = new PtState(config.mem);
    this.#topMask = (512 << format.topOrder) - 1;
    const vpnBits = config.vaBits - PT_GRANULE_LG2SZ;
    // A first-stage IOVA is sign-extended from its top bit, so only half of it is "lower".
    this.#lowEnd = format.canSignExtend ? 2 ** (vpnBits - 1) : 2 ** vpnBits;
    this.#highStart = features.signExtend ? PT_PFN_SPACE - this.#lowEnd : Infinity;
    this.#ppnEnd = 2 ** (format.maxOaLg2 - PT_GRANULE_LG2SZ);

    for (let level = 0; level <= top; level++) {
      this.#addSize(level, 0);
      if (level === 0 && features.svnapot) this.#addSize(0, RISCVPT_NAPOT_64K_LG2);
    }
    let bitmap = 0;
    for (let level = 0; level <= top; level++) bitmap += this.possibleSizes(level);
    this.pgsize_bitmap = bitmap;

    const root = config.alloc.allocTable(format.topOrder);
    if (
      root % (PT_GRANULE_SIZE << format.topOrder) !== 0 || root / PT_GRANULE_SIZE >= this.#ppnEnd
    ) {
      config.alloc.freeTable(root, format.topOrder);
      throw new Errno("EINVAL", `Top table at 0x${root.toString(16)} cannot be addressed`);
    }
    this.#root = root;
  }

  /** log2 of the bytes one entry at `level` maps. Mirrors pt_table_item_lg2sz(). */
  itemLg2(level: number): number {
    return PT_GRANULE_LG2SZ + 9 * level;
  }

  /** log2 of the number of entries of a table at `level`. Mirrors pt_num_items_lg2(). */
  numItemsLg2(level: number): number {
    return level === this.topLevel ? 9 + this.format.topOrder : 9;
  }

  /**
   * The leaf sizes an entry at `level` can map, as a bitmap of sizes in bytes: the entry's own
   * size, and at level 0 the Svnapot 64 KiB. Mirrors pt_possible_sizes().
   */
  possibleSizes(level: number): number {
    let bitmap = 0;
    for (let i = 0; i < this.#szPages.length; i++) {
      if (this.#szLevel[i] === level) bitmap += this.#szPages[i] * PT_GRANULE_SIZE;
    }
    return bitmap;
  }

  /**
   * The top table's address and the context MODE. Mirrors pt_iommu_riscv_64_hw_info().
   * EINVAL after {@linkcode deinit}.
   */
  hwInfo(): PtIommuHwInfo {
    this.#checkLive();
    return {
      rootPa: this.#root,
      ppn: this.#root / PT_GRANULE_SIZE,
      mode: this.format.hwMode(this.topLevel),
    };
  }

  /**
   * Maps `pgcount` leaves of `pgsize` bytes from `iova` to `paddr` with `prot`
   * (IOMMU_READ/WRITE/CACHE/NOEXEC/MMIO); returns the bytes mapped. Mirrors
   * pt_iommu_riscv_64_map_pages() with the argument checks of __iommu_map().
   *
   * Throws `EINVAL` for a page size not in {@linkcode pgsize_bitmap}, a zero count, an
   * unaligned `iova` or `paddr`, or `prot` without READ or WRITE; `EOVERFLOW` when the range
   * wraps the 64-bit space; `ERANGE` when it leaves the IOVA space or the output address does
   * not fit 56 bits; `EADDRINUSE` over an existing mapping; `ENOMEM` from the allocator. Tables
   * this frees go on `gather` (or through the `iotlbSync` hook when there is none).
   */
  map_pages(
    iova: Iova,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: number,
    gather?: IommuIotlbGather,
  ): number {
    if (
      pgsize === PT_GRANULE_SIZE && pgcount === 1 && prot === this.#protKey &&
      typeof iova === "number" && iova >= 0 && typeof paddr === "number"
    ) {
      // The common case: one 4 KiB page of the lower half, usually next to the last one.
      const pfn = iova / PT_GRANULE_SIZE;
      const ppn = paddr / PT_GRANULE_SIZE;
      if (
        pfn < this.#lowEnd && Number.isInteger(pfn) && Number.isInteger(ppn) && ppn >= 0 &&
        ppn < this.#ppnEnd
      ) {
        const table = this.#ckey[0] === Math.floor(pfn / 512)
          ? this.#ctab[0]
          : this.#tableFor(pfn, 0, true);
        const mem = this.#mem;
        const ea = table + (pfn & 511) * 8;
        mem.load64(ea);
        if ((mem.lo & RISCVPT_V) !== 0) throw _inUse(pfn);
        mem.store64(ea, riscvptLeafLo(ppn, this.#attrs.lo), riscvptLeafHi(ppn, this.#attrs.hi));
        return PT_GRANULE_SIZE;
      }
    }
    const si = this.#sizeIndex(pgsize);
    if (!Number.isInteger(pgcount) || pgcount < 1) {
      throw new Errno("EINVAL", `Cannot map ${pgcount} pages`);
    }
    this.#setProt(prot);
    const pfn = this.#toPfn(iova);
    const ppn = this.#toPpn(paddr);
    const leafPages = this.#szPages[si];
    if (this.#off !== 0 || pfn % leafPages !== 0 || ppn % leafPages !== 0) {
      throw new Errno(
        "EINVAL",
        `Cannot map ${_hex(pfn, paddr)}: not aligned to ${hex(pgsize)}`,
      );
    }
    this.#checkRange(pfn, pgcount * leafPages);
    this.#checkOutput(ppn, pgcount * leafPages);
    this.#mapRange(pfn, ppn, si, pgcount, gather);
    return pgcount * pgsize;
  }

  /**
   * Maps `size` bytes from `iova` to `paddr`, choosing the largest leaves the alignment of
   * both allows; returns `size`. On an error nothing of the range stays mapped. Mirrors
   * iommu_map() (its iommu_pgsize() split) on this table; the errors are those of
   * {@linkcode map_pages}, with `EINVAL` for a size that is not a multiple of 4 KiB.
   */
  map(iova: Iova, paddr: number, size: number, prot: number, gather?: IommuIotlbGather): number {
    if (size === PT_GRANULE_SIZE) return this.map_pages(iova, paddr, size, 1, prot, gather);
    if (!Number.isInteger(size) || size <= 0 || size % PT_GRANULE_SIZE !== 0) {
      throw new Errno("EINVAL", `Cannot map 0x${size.toString(16)} bytes`);
    }
    this.#setProt(prot);
    const pfn = this.#toPfn(iova);
    const ppn = this.#toPpn(paddr);
    if (this.#off !== 0 || !Number.isInteger(ppn)) {
      throw new Errno("EINVAL", `Cannot map ${_hex(pfn, paddr)}: not 4 KiB aligned`);
    }
    const pages = size / PT_GRANULE_SIZE;
    this.#checkRange(pfn, pages);
    this.#checkOutput(ppn, pages);
    const g = gather ?? this.#ownGather;
    let done = 0;
    try {
      while (done < pages) {
        const cur = pfn + done;
        const oa = ppn + done;
        const left = pages - done;
        const si = this.#sizeIndex(
          2 ** ptComputeBestPgsize(this.pgsize_bitmap, cur, cur + left - 1, oa),
        );
        const leafPages = this.#szPages[si];
        let span = left;
        // Stop where the next larger size becomes usable, as iommu_pgsize() does.
        const next = this.#szPages[si + 1];
        if (next !== undefined && (cur - oa) % next === 0) {
          const toBoundary = next - cur % next;
          if (toBoundary + next <= left) span = toBoundary;
        }
        const count = Math.floor(span / leafPages);
        this.#mapRange(cur, oa, si, count, g);
        done += count * leafPages;
      }
    } catch (e) {
      if (done > 0) this.#unmapRange(pfn, pfn + done - 1, g);
      throw e;
    } finally {
      if (gather === undefined) this.#syncOwnGather();
    }
    return size;
  }

  /**
   * Unmaps `pgcount` pages of `pgsize` bytes from `iova`; returns the bytes unmapped, which
   * is 0 over a hole or inside a leaf, and more than asked when the range ends inside a leaf.
   * Records the range, the levels changed and the freed tables in `gather`. Mirrors
   * pt_iommu_riscv_64_unmap_pages(); bad arguments throw as for {@linkcode map_pages}.
   */
  unmap_pages(iova: Iova, pgsize: number, pgcount: number, gather: IommuIotlbGather): number {
    if (pgsize === PT_GRANULE_SIZE && pgcount === 1 && typeof iova === "number" && iova >= 0) {
      const pfn = iova / PT_GRANULE_SIZE;
      if (pfn < this.#lowEnd && Number.isInteger(pfn)) {
        const table = this.#ckey[0] === Math.floor(pfn / 512)
          ? this.#ctab[0]
          : this.#tableFor(pfn, 0, false);
        if (table >= 0) {
          const mem = this.#mem;
          const ea = table + (pfn & 511) * 8;
          mem.load64(ea);
          if ((mem.lo & RISCVPT_V) !== 0 && mem.hi < RISCVPT_N_HI) {
            mem.store64(ea, 0, 0);
            gather.addRange(pfn, 1);
            gather.leafLevels |= 1;
            return PT_GRANULE_SIZE;
          }
        }
      }
    }
    const si = this.#sizeIndex(pgsize);
    if (!Number.isInteger(pgcount) || pgcount < 1) {
      throw new Errno("EINVAL", `Cannot unmap ${pgcount} pages`);
    }
    const pfn = this.#toPfn(iova);
    const leafPages = this.#szPages[si];
    if (this.#off !== 0 || pfn % leafPages !== 0) {
      throw new Errno(
        "EINVAL",
        `Cannot unmap ${_hex(pfn)}: not aligned to ${hex(pgsize)}`,
      );
    }
    this.#checkRange(pfn, pgcount * leafPages);
    return this.#unmapRange(pfn, pfn + pgcount * leafPages - 1, gather) * PT_GRANULE_SIZE;
  }

  /**
   * Unmaps `size` bytes from `iova`; returns the bytes unmapped as {@linkcode unmap_pages}
   * does. Mirrors iommu_unmap() on this table.
   */
  unmap(iova: Iova, size: number, gather: IommuIotlbGather): number {
    if (!Number.isInteger(size) || size <= 0 || size % PT_GRANULE_SIZE !== 0) {
      throw new Errno("EINVAL", `Cannot unmap 0x${size.toString(16)} bytes`);
    }
    return this.unmap_pages(iova, PT_GRANULE_SIZE, size / PT_GRANULE_SIZE, gather);
  }

  /**
   * The physical address `iova` (any alignment) translates to, or 0 when nothing maps it or
   * it lies outside the IOVA space. Mirrors pt_iommu_riscv_64_iova_to_phys().
   */
  iova_to_phys(iova: Iova): number {
    const pfn = this.#toPfn(iova);
    if (!this.#inRange(pfn, pfn) || this.#root < 0) return 0;
    const mem = this.#mem;
    let table = this.#root;
    for (let level = this.topLevel; level >= 0; level--) {
      mem.load64(table + this.#index(pfn, level) * 8);
      const lo = mem.lo;
      const hi = mem.hi;
      if ((lo & RISCVPT_V) === 0) return 0;
      if (level === 0 || (lo & RWX) !== 0) {
        const leafPages = hi >= RISCVPT_N_HI ? 16 : ITEM_PAGES[level];
        return (riscvptEntryOaPpn(lo, hi) + pfn % leafPages) * PT_GRANULE_SIZE + this.#off;
      }
      table = riscvptPpn(lo, hi) * PT_GRANULE_SIZE;
    }
    return 0;
  }

  /**
   * Calls `fn` for every leaf, in IOVA order, with its first frame (in the 64-bit IOVA space),
   * its length in pages, its first output frame and its level; an Svnapot leaf counts once.
   */
  forEachLeaf(fn: (pfn: number, pages: number, ppn: number, level: number) => void): void {
    if (this.#root >= 0) this.#visit(this.#root, this.topLevel, 0, fn);
  }

  /**
   * Reports the leaves of `[iova, iova + size)` the IOMMU wrote through (D set) into
   * `dirty.bitmap`, and unless `flags` has IOMMU_DIRTY_NO_CLEAR makes them clean again and adds
   * what it cleaned to `dirty.gather`, which the caller must flush from the IOTLB before relying
   * on new writes being seen (the IOMMU may hold a leaf's D in its IOTLB). A leaf counts whole:
   * a dirty 2 MiB leaf sets the bit of every page of it the range covers, a dirty copy of an
   * Svnapot leaf reports and cleans all 16. Mirrors pt_iommu_riscv_64_read_and_clear_dirty().
   *
   * `iova` and `size` need no alignment. Throws `EOPNOTSUPP` when the format has no dirty
   * hooks, `EINVAL` for a size that is not a positive integer or unknown flags, and for the
   * range `EOVERFLOW`/`ERANGE` as {@linkcode mapPages} does.
   *
   * The scan reads each table with one bulk copy and tests D in the low word of each PTE; it
   * allocates nothing after the first call and skips what empty upper-level entries cover.
   * DIVERGENCE: a leaf the range only partly covers reports (and flushes) only the covered part;
   * Linux records the whole item size from the range start.
   */
  read_and_clear_dirty(iova: Iova, size: number, flags: number, dirty: IommuDirtyBitmap): void {
    if (this.format.make_write_clean === undefined) {
      throw new Errno("EOPNOTSUPP", `Format ${this.format.name} has no dirty tracking`);
    }
    if (!Number.isInteger(size) || size <= 0) {
      throw new Errno("EINVAL", `Cannot read the dirty state of 0x${size.toString(16)} bytes`);
    }
    if ((flags & ~IOMMU_DIRTY_NO_CLEAR) !== 0) {
      throw new Errno("EINVAL", `Unknown dirty flags 0x${flags.toString(16)}`);
    }
    this.#checkLive();
    const pfn = this.#toPfn(iova);
    const pages = Math.floor((this.#off + size - 1) / PT_GRANULE_SIZE) + 1;
    this.#checkRange(pfn, pages);
    if (this.#dirtyBytes.length === 0) {
      for (let level = 0; level <= this.topLevel; level++) {
        const bytes = new Uint8Array(8 << this.numItemsLg2(level));
        this.#dirtyBytes.push(bytes);
        this.#dirtyView.push(new DataView(bytes.buffer));
      }
    }
    const noClear = (flags & IOMMU_DIRTY_NO_CLEAR) !== 0;
    this.#dirtyLevel(this.#root, this.topLevel, pfn, pfn + pages - 1, dirty, noClear);
  }

  /**
   * Turns PT_FEAT_RISCV_DIRTY_TRACKING_ACTIVE on or off on the live table: while it is on,
   * writable leaves are made without D, so the IOMMU (DC.tc.GADE/SADE set) marks the first write.
   * Throws `EOPNOTSUPP` when the format has no dirty hooks.
   *
   * How the driver uses it (its set_dirty_tracking):
   * - enable: set GADE in the device contexts (with IODIR.INVAL_DDT) first, then turn the feature
   *   on; leaves mapped before still have D, which iommufd's clearing read (a
   *   {@linkcode read_and_clear_dirty} without a bitmap) takes away;
   * - disable: turn the feature off first, which gives D back to every writable leaf (an IOMMU
   *   without GADE faults on a write to a leaf without D), flush the IOTLB (it may hold leaves
   *   with D clear), then clear GADE.
   *
   * A writable leaf without D must never meet a context without GADE. DIVERGENCE: Linux's RFC
   * only flips the feature bit; giving D back on disable is ours.
   */
  set_dirty_tracking_active(active: boolean): void {
    if (this.format.make_write_dirty === undefined) {
      throw new Errno("EOPNOTSUPP", `Format ${this.format.name} has no dirty tracking`);
    }
    this.#checkLive();
    if (this.#features.dirtyTrackingActive === active) return;
    this.#features = Object.freeze({ ...this.#features, dirtyTrackingActive: active });
    this.#protKey = -1;
    if (!active) this.#makeWritableDirty(this.#root, this.topLevel);
  }

  /**
   * Frees every table, the top one included. The IOMMU must no longer walk them and its
   * caches must have been invalidated. Mirrors pt_iommu_deinit(). Idempotent; afterwards map,
   * unmap and {@linkcode hwInfo} are EINVAL (a use after free), `iova_to_phys` is 0.
   */
  deinit(): void {
    if (this.#root < 0) return;
    this.#freeTables(this.#root, this.topLevel);
    this.#alloc.freeTable(this.#root, this.format.topOrder);
    this.#root = -1;
    this.#ckey.fill(-1);
  }

  #addSize(level: number, contigLg2: number): void {
    this.#szPages.push(ITEM_PAGES[level] * 2 ** contigLg2);
    this.#szLevel.push(level);
    this.#szContigLg2.push(contigLg2);
  }

  #sizeIndex(pgsize: number): number {
    const pages = pgsize / PT_GRANULE_SIZE;
    const i = this.#szPages.indexOf(pages);
    if (i < 0) throw new Errno("EINVAL", `Page size ${pgsize} is not supported`);
    return i;
  }

  #setProt(prot: number): void {
    if (prot === this.#protKey) return;
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) {
      throw new Errno(
        "EINVAL",
        `Cannot map with prot 0x${prot.toString(16)}: neither READ nor WRITE`,
      );
    }
    this.format.setProt(prot, this.features, this.#attrs);
    this.#protKey = prot;
  }

  /** Frame of `iova` in the 64-bit IOVA space; leaves the byte offset in `#off`. */
  #toPfn(iova: Iova): number {
    if (typeof iova === "number") {
      if (!Number.isInteger(iova)) throw new Errno("EINVAL", `IOVA ${iova} is not an integer`);
      const p = Math.floor(iova / PT_GRANULE_SIZE);
      this.#off = iova - p * PT_GRANULE_SIZE;
      if (p >= PT_PFN_SPACE || p < -PT_PFN_SPACE / 2) {
        throw new Errno("ERANGE", `IOVA ${iova} is not a 64-bit address`);
      }
      return p < 0 ? PT_PFN_SPACE + p : p;
    }
    if (typeof iova !== "bigint" || iova >= 1n << 64n || iova < -(1n << 63n)) {
      throw new Errno("ERANGE", `IOVA ${iova} is not a 64-bit address`);
    }
    const u = BigInt.asUintN(64, iova);
    this.#off = Number(u & 0xfffn);
    return Number(u >> 12n);
  }

  #toPpn(paddr: number): number {
    if (typeof paddr !== "number" || !Number.isInteger(paddr) || paddr < 0) {
      throw new Errno("EINVAL", `Physical address ${paddr} is not valid`);
    }
    return paddr / PT_GRANULE_SIZE;
  }

  /** True when frames `pfn..last` lie in one region (lower or upper) of the IOVA space. */
  #inRange(pfn: number, last: number): boolean {
    return last < this.#lowEnd || (pfn >= this.#highStart && last < PT_PFN_SPACE);
  }

  #checkRange(pfn: number, pages: number): void {
    if (pfn + pages > PT_PFN_SPACE) {
      throw new Errno("EOVERFLOW", `Range at ${_hex(pfn)} of ${pages} pages wraps`);
    }
    if (!this.#inRange(pfn, pfn + pages - 1)) {
      throw new Errno(
        "ERANGE",
        `Range at ${_hex(pfn)} of ${pages} pages is outside the IOVA space`,
      );
    }
  }

  #checkOutput(ppn: number, pages: number): void {
    if (ppn + pages > this.#ppnEnd) {
      throw new Errno("ERANGE", `Output address 0x${(ppn * 4096).toString(16)} exceeds 56 bits`);
    }
  }

  #index(pfn: number, level: number): number {
    if (level === this.topLevel) return Math.floor(pfn / ITEM_PAGES[level]) & this.#topMask;
    return Math.floor(pfn / ITEM_PAGES[level]) & 511;
  }

  /**
   * The table at `level` covering frame `pfn`: from the walk cache, else walked from the
   * deepest cached table, building missing tables when `create`. Returns -1 (or throws
   * `EADDRINUSE` when creating) where a leaf or, without `create`, a hole is in the way.
   */
  #tableFor(pfn: number, level: number, create: boolean): number {
    this.#checkLive();
    const top = this.topLevel;
    if (level === top) return this.#root;
    const ckey = this.#ckey;
    const ctab = this.#ctab;
    let l = level;
    let table = this.#root;
    for (; l < top; l++) {
      if (ckey[l] === Math.floor(pfn / ITEM_PAGES[l + 1])) {
        table = ctab[l];
        break;
      }
    }
    const mem = this.#mem;
    for (; l > level; l--) {
      const ea = table + this.#index(pfn, l) * 8;
      mem.load64(ea);
      const lo = mem.lo;
      if ((lo & RISCVPT_V) === 0) {
        if (!create) return -1;
        table = this.#alloc.allocTable(0);
        const ppn = table / PT_GRANULE_SIZE;
        mem.store64(ea, riscvptTableLo(ppn), riscvptLeafHi(ppn, 0));
      } else if ((lo & RWX) !== 0) {
        if (!create) return -1;
        throw _inUse(pfn);
      } else {
        table = riscvptPpn(lo, mem.hi) * PT_GRANULE_SIZE;
      }
      ckey[l - 1] = Math.floor(pfn / ITEM_PAGES[l]);
      ctab[l - 1] = table;
    }
    return table;
  }

  /** Installs `count` leaves of size `si`; on an error removes those it installed. */
  #mapRange(pfn: number, ppn: number, si: number, count: number, gather?: IommuIotlbGather): void {
    const g = gather ?? this.#ownGather;
    const level = this.#szLevel[si];
    const contigLg2 = this.#szContigLg2[si];
    const leafPages = this.#szPages[si];
    const n = 1 << contigLg2;
    const lastIdx = level === this.topLevel ? this.#topMask : 511;
    const oaLg2 = PT_GRANULE_LG2SZ + 9 * level + contigLg2;
    const pts = this.#pts;
    const mem = this.#mem;
    this.#done = 0;
    try {
      let cur = pfn;
      let oa = ppn;
      while (this.#done < count) {
        const table = this.#tableFor(cur, level, true);
        for (let idx = this.#index(cur, level); idx <= lastIdx && this.#done < count; idx += n) {
          for (let k = 0; k < n; k++) {
            mem.load64(table + (idx + k) * 8);
            if ((mem.lo & RISCVPT_V) !== 0) {
              this.#clearForLeaf(table, idx + k, level, cur + k * ITEM_PAGES[level], g);
            }
          }
          pts.table = table;
          pts.level = level;
          pts.index = idx;
          pts.installLeaf(oa, oaLg2, this.#attrs);
          cur += leafPages;
          oa += leafPages;
          this.#done++;
        }
      }
    } catch (e) {
      if (this.#done > 0) this.#unmapRange(pfn, pfn + this.#done * leafPages - 1, g);
      throw e;
    } finally {
      if (gather === undefined) this.#syncOwnGather();
    }
  }

  /**
   * Makes room for a leaf over the valid entry just loaded: a table that maps nothing is
   * unlinked and its pages go on the gather; anything mapped is `EADDRINUSE`.
   * Mirrors clear_contig().
   */
  #clearForLeaf(
    table: number,
    idx: number,
    level: number,
    pfn: number,
    gather: IommuIotlbGather,
  ): void {
    const mem = this.#mem;
    const lo = mem.lo;
    if (level === 0 || (lo & RWX) !== 0) throw _inUse(pfn);
    const child = riscvptPpn(lo, mem.hi) * PT_GRANULE_SIZE;
    if (!this.#holdsNoLeaf(child, level - 1)) throw _inUse(pfn);
    mem.store64(table + idx * 8, 0, 0);
    this.#ckey.fill(-1);
    this.#gatherTables(child, level - 1, gather);
    gather.addRange(pfn, ITEM_PAGES[level]);
    gather.tableLevels |= 1 << level;
  }

  #holdsNoLeaf(table: number, level: number): boolean {
    const mem = this.#mem;
    for (let i = 0; i < 512; i++) {
      mem.load64(table + i * 8);
      const lo = mem.lo;
      if ((lo & RISCVPT_V) === 0) continue;
      if (level === 0 || (lo & RWX) !== 0) return false;
      if (!this.#holdsNoLeaf(riscvptPpn(lo, mem.hi) * PT_GRANULE_SIZE, level - 1)) return false;
    }
    return true;
  }

  /** Puts `table` and every table below it on the gather's freelist. */
  #gatherTables(table: number, level: number, gather: IommuIotlbGather): void {
    const mem = this.#mem;
    for (let i = 0; level > 0 && i < 512; i++) {
      mem.load64(table + i * 8);
      if ((mem.lo & RISCVPT_V) !== 0) {
        this.#gatherTables(riscvptPpn(mem.lo, mem.hi) * PT_GRANULE_SIZE, level - 1, gather);
      }
    }
    gather.addFreedTable(table, this.#alloc);
  }

  /** Unmaps frames `pfn..last` with Linux's rules; returns the pages unmapped. */
  #unmapRange(pfn: number, last: number, gather: IommuIotlbGather): number {
    this.#checkLive();
    this.#unmapped = 0;
    this.#unmapLevel(this.#root, this.topLevel, pfn, last, gather);
    if (this.#unmapped > 0) gather.addRange(pfn, this.#unmapped);
    return this.#unmapped;
  }

  /** Unmaps `pfn..last` within `table`; false when it stopped at a hole or inside a leaf. */
  #unmapLevel(
    table: number,
    level: number,
    pfn: number,
    last: number,
    gather: IommuIotlbGather,
  ): boolean {
    const mem = this.#mem;
    const itemPages = ITEM_PAGES[level];
    let idx = this.#index(pfn, level);
    let cur = pfn;
    while (cur <= last) {
      const ea = table + idx * 8;
      mem.load64(ea);
      const lo = mem.lo;
      const hi = mem.hi;
      if ((lo & RISCVPT_V) === 0) return false;
      if (level === 0 || (lo & RWX) !== 0) {
        const n = hi >= RISCVPT_N_HI ? 16 : 1;
        const leafPages = itemPages * n;
        // Only the first entry can start before `cur`; a leaf is never split.
        if (cur % leafPages !== 0) return false;
        for (let k = 0; k < n; k++) mem.store64(ea + k * 8, 0, 0);
        this.#unmapped += leafPages;
        gather.leafLevels |= 1 << level;
        idx += n;
        cur += leafPages;
      } else {
        const entryStart = cur - cur % itemPages;
        const entryLast = entryStart + itemPages - 1;
        const child = riscvptPpn(lo, hi) * PT_GRANULE_SIZE;
        if (!this.#unmapLevel(child, level - 1, cur, Math.min(last, entryLast), gather)) {
          return false;
        }
        if (cur === entryStart && last >= entryLast) {
          mem.store64(ea, 0, 0);
          this.#ckey.fill(-1);
          gather.addFreedTable(child, this.#alloc);
          gather.tableLevels |= 1 << level;
        }
        idx++;
        cur = entryLast + 1;
      }
    }
    return true;
  }

  #visit(
    table: number,
    level: number,
    base: number,
    fn: (pfn: number, pages: number, ppn: number, level: number) => void,
  ): void {
    const mem = this.#mem;
    const itemPages = ITEM_PAGES[level];
    const entries = 2 ** this.numItemsLg2(level);
    for (let i = 0; i < entries; i++) {
      mem.load64(table + i * 8);
      const lo = mem.lo;
      const hi = mem.hi;
      if ((lo & RISCVPT_V) === 0) continue;
      let pfn = base + i * itemPages;
      // Top entries of the upper half map sign-extended IOVAs.
      if (level === this.topLevel && pfn >= this.#lowEnd) pfn += PT_PFN_SPACE - 2 * this.#lowEnd;
      if (level === 0 || (lo & RWX) !== 0) {
        const n = hi >= RISCVPT_N_HI ? 16 : 1;
        if (i % n === 0) fn(pfn, itemPages * n, riscvptEntryOaPpn(lo, hi), level);
      } else {
        this.#visit(riscvptPpn(lo, hi) * PT_GRANULE_SIZE, level - 1, pfn, fn);
      }
    }
  }

  #freeTables(table: number, level: number): void {
    const mem = this.#mem;
    const entries = 2 ** this.numItemsLg2(level);
    for (let i = 0; level > 0 && i < entries; i++) {
      mem.load64(table + i * 8);
      const lo = mem.lo;
      if ((lo & RISCVPT_V) === 0 || (lo & RWX) !== 0) continue;
      const child = riscvptPpn(lo, mem.hi) * PT_GRANULE_SIZE;
      this.#freeTables(child, level - 1);
      this.#alloc.freeTable(child, 0);
    }
  }

  /**
   * The dirty scan of frames `pfn..last` within `table` at `level`, from a copy of the table:
   * each copy is only a guide to which entries to look at, the cleaning itself works on the PTEs
   * in memory, so what the IOMMU sets meanwhile is never lost.
   */
  #dirtyLevel(
    table: number,
    level: number,
    pfn: number,
    last: number,
    dirty: IommuDirtyBitmap,
    noClear: boolean,
  ): void {
    const view = this.#dirtyView[level];
    this.#mem.copyOut(table, this.#dirtyBytes[level]);
    const itemPages = ITEM_PAGES[level];
    const first = this.#index(pfn, level);
    const lastIdx = this.#index(last, level);
    if (level === 0) {
      // Svnapot leaves the range only partly covers count whole: look at all their copies.
      const napot = this.#features.svnapot;
      const scanFirst = napot ? first & ~15 : first;
      const scanLast = napot ? lastIdx | 15 : lastIdx;
      for (let i = scanFirst; (i = _nextDirty(view, i, scanLast)) <= scanLast; i++) {
        const hi = view.getUint32(i * 8 + 4, true);
        if (hi >= RISCVPT_N_HI) {
          // Any dirty copy makes the 64 KiB leaf dirty; record and clean it once.
          const groupFrame = pfn + ((i & ~15) - first);
          const from = groupFrame > pfn ? groupFrame : pfn;
          const to = Math.min(last, groupFrame + 15);
          this.#recordDirty(table, 0, i, hi, from, to, dirty, noClear);
          i |= 15;
        } else if (i >= first && i <= lastIdx) {
          const frame = pfn + (i - first);
          this.#recordDirty(table, 0, i, hi, frame, frame, dirty, noClear);
        }
      }
      return;
    }
    const base = pfn - pfn % itemPages - first * itemPages;
    for (let i = first; (i = _nextTableOrDirty(view, i, lastIdx)) <= lastIdx; i++) {
      const lo = view.getUint32(i * 8, true);
      const isTable = (lo & RWX) === 0;
      const start = base + i * itemPages;
      const from = start > pfn ? start : pfn;
      const to = Math.min(last, start + itemPages - 1);
      const hi = view.getUint32(i * 8 + 4, true);
      if (isTable) {
        this.#dirtyLevel(riscvptPpn(lo, hi) * PT_GRANULE_SIZE, level - 1, from, to, dirty, noClear);
      } else {
        this.#recordDirty(table, level, i, hi, from, to, dirty, noClear);
      }
    }
  }

  /** Mirrors record_dirty(): reports frames `from..to` of a dirty leaf and cleans the leaf. */
  #recordDirty(
    table: number,
    level: number,
    index: number,
    hi: number,
    from: number,
    to: number,
    dirty: IommuDirtyBitmap,
    noClear: boolean,
  ): void {
    const iova = from * PT_GRANULE_SIZE;
    const len = (to - from + 1) * PT_GRANULE_SIZE;
    if (noClear) {
      if (dirty.bitmap !== null) iova_bitmap_set(dirty.bitmap, iova, len);
      return;
    }
    const pts = this.#pts;
    pts.table = table;
    pts.level = level;
    pts.index = index;
    pts.hi = hi;
    this.format.make_write_clean!(pts);
    iommu_dirty_bitmap_record(dirty, iova, len);
    // The leaf changed: the flush must reach what the IOTLB caches at its level.
    if (dirty.gather !== null) dirty.gather.leafLevels |= 1 << level;
  }

  /** Sets D on every writable leaf below `table` that lacks it (dirty tracking turned off). */
  #makeWritableDirty(table: number, level: number): void {
    const pts = this.#pts;
    const makeDirty = this.format.make_write_dirty!;
    const entries = 2 ** this.numItemsLg2(level);
    for (let i = 0; i < entries; i++) {
      pts.table = table;
      pts.level = level;
      pts.index = i;
      const type = pts.load();
      if (type === PT_ENTRY_TABLE) {
        this.#makeWritableDirty(pts.tablePa(), level - 1);
        continue;
      }
      // Each Svnapot copy is an entry of its own here; a failed CAS reloads and retries.
      while (type === PT_ENTRY_OA && (pts.lo & (RISCVPT_W | RISCVPT_D)) === RISCVPT_W) {
        if (makeDirty(pts)) break;
      }
    }
  }

  /** Refuses to touch the tables once {@linkcode deinit} freed them. */
  #checkLive(): void {
    if (this.#root < 0) throw new Errno("EINVAL", "The page table was freed (pt_iommu_deinit)");
  }

  #syncOwnGather(): void {
    const g = this.#ownGather;
    if (!g.isEmpty) {
      this.#iotlbSync(g);
      g.putPages();
    }
    g.reset();
  }
}

/**
 * The dirty scan's hot loop, kept apart so it stays small whatever the recording does: the
 * index of the first valid entry with D from `i` to `last` of the table copy, else `last + 1`.
 * 99% of leaves are clean: one load and one test each.
 */
function _nextDirty(view: DataView, i: number, last: number): number {
  for (; i <= last; i++) {
    if ((view.getUint32(i * 8, true) & (RISCVPT_V | RISCVPT_D)) === (RISCVPT_V | RISCVPT_D)) break;
  }
  return i;
}

/** Like {@linkcode _nextDirty} above level 0, where an entry may also point to a table. */
function _nextTableOrDirty(view: DataView, i: number, last: number): number {
  for (; i <= last; i++) {
    const lo = view.getUint32(i * 8, true);
    if ((lo & RISCVPT_V) !== 0 && ((lo & RWX) === 0 || (lo & RISCVPT_D) !== 0)) break;
  }
  return i;
}

function _inUse(pfn: number): Errno {
  return new Errno("EADDRINUSE", `IOVA ${_hex(pfn)} is already mapped`);
}

function _hex(pfn: number, paddr?: number): string {
  const iova = hex(BigInt(pfn) << 12n);
  return paddr === undefined ? iova : `${iova} -> ${hex(paddr)}`;
}
