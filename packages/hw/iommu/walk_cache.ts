/**
 * The walk cache: valid non-leaf first-stage PTEs of host address spaces (G stage Bare) that
 * point at a last-level table, tagged by PSCID and the IOVA's page number above the last level's
 * index, each with the G bit of the walk down to it. A first-stage walk of an IOVA whose table is
 * cached reads its leaf PTE straight away instead of one PTE per level, which is what a real
 * IOMMU's walk cache saves. It is direct-mapped (the tag's page number XOR the PSCID picks the
 * entry), so that a lookup is one compare: a walk pays for it whether it hits or not.
 *
 * Spec §2.8 "Caching in-memory data structures" lets an IOMMU cache non-leaf PTEs (never invalid
 * ones), and §3.1.1 "IOMMU Page-Table cache invalidation commands" says which IOTINVAL.VMA drops
 * them: with AV=0 every entry of the address spaces it selects (with PSCV=1 all but global ones,
 * as for leaves); with AV=1 only leaf entries, unless NL=1 (the Non-leaf PTE Invalidation
 * extension, capabilities.NL), which also drops the non-leaf entries for ADDR. So a driver that
 * frees a table page but invalidates only the leaves under it keeps walking through the freed
 * page, as it would on hardware. IOTINVAL.GVMA never concerns it: it holds no entry of a VM.
 *
 * @module
 */

/**
 * An entry's tag words, as a const enum so that its members are literals in the code (a module
 * constant costs a load and a temporal-dead-zone check at every use).
 */
const enum W {
  /** log2 of the words per slot. */
  SHIFT = 2,
  /** Words per slot. */
  WORDS = 4,
  /** Key (page number >> 9) bits 31:0. */
  KEY_LO = 0,
  /** Key bits 42:32 | VALID | G | table page number bits 43:32 << PN_HI_SHIFT. */
  KEY_HI = 1,
  /** PSCID. */
  PSCID = 2,
  /** Table page number bits 31:0. */
  PN_LO = 3,
  /** KEY_HI bits that hold the key. */
  KEY_MASK = 0x7ff,
  /** KEY_HI bit: the entry is valid. */
  VALID = 1 << 11,
  /** KEY_HI bit: a non-leaf PTE on the way down was global. */
  G = 1 << 12,
  /** Bit position of the table page number's bits 43:32 in KEY_HI. */
  PN_HI_SHIFT = 16,
}

/** The walk cache of one IOMMU. */
export class WalkCache {
  /**
   * The G bit (PTE bit 5) of the entry the last {@linkcode lookup} found: whether a non-leaf
   * PTE above the table was global.
   */
  global = 0;
  readonly #t: Int32Array;
  /** Entries − 1. */
  readonly #mask: number;
  #n = 0;

  /** Creates a walk cache of `entries` (a power of two) entries. */
  constructor(entries: number) {
    this.#t = new Int32Array(entries << W.SHIFT);
    this.#mask = entries - 1;
  }

  /** Number of valid entries. */
  get size(): number {
    return this.#n;
  }

  /**
   * The last-level table page of the walk of page number `vhi:vlo` (bits 51:32 and 31:0) in host
   * address space `pscid`, with {@linkcode global} set; -1 when it is not cached.
   */
  lookup(vlo: number, vhi: number, pscid: number): number {
    const klo = (vlo >>> 9) | (vhi << 23);
    const t = this.#t;
    const k = ((klo ^ pscid) & this.#mask) << W.SHIFT;
    const h = t[k + W.KEY_HI];
    if (
      t[k] !== klo || (h & (W.KEY_MASK | W.VALID)) !== ((vhi >>> 9) | W.VALID) ||
      t[k + W.PSCID] !== pscid
    ) return -1;
    this.global = (h & W.G) === 0 ? 0 : 32;
    // A small integer while it is one, as the walker's page numbers are: a double would make
    // every frame lookup of the walk convert and compare as doubles.
    const lo = t[k + W.PN_LO];
    return h >>> W.PN_HI_SHIFT === 0 && lo >= 0
      ? lo
      : (h >>> W.PN_HI_SHIFT) * 4294967296 + (lo >>> 0);
  }

  /**
   * Caches `tablePn`, the last-level table of page number `vhi:vlo` in host address space
   * `pscid`, reached through a global non-leaf PTE when `global` (PTE bit 5) is set, in place of
   * whatever its entry held.
   */
  insert(vlo: number, vhi: number, pscid: number, tablePn: number, global: number): void {
    const klo = (vlo >>> 9) | (vhi << 23);
    const t = this.#t;
    const k = ((klo ^ pscid) & this.#mask) << W.SHIFT;
    if ((t[k + W.KEY_HI] & W.VALID) === 0) this.#n++;
    const pnHi = tablePn < 4294967296 ? 0 : Math.floor(tablePn / 4294967296);
    t[k] = klo;
    t[k + W.KEY_HI] = (vhi >>> 9) | W.VALID | (global === 0 ? 0 : W.G) | (pnHi << W.PN_HI_SHIFT);
    t[k + W.PSCID] = pscid;
    t[k + W.PN_LO] = tablePn % 4294967296;
  }

  /**
   * IOTINVAL.VMA: for host address spaces (`gv` false), with AV=0 (`av` false) drops every entry,
   * or with `pscv` every entry of `pscid` but global ones; with AV=1 only when `nl` (NL=1), the
   * entries whose table maps part of pages [`startPn`, `endPn`) (of `pscid` but global ones with
   * `pscv`).
   */
  invalVma(
    gv: boolean,
    pscv: boolean,
    pscid: number,
    av: boolean,
    nl: boolean,
    startPn: number,
    endPn: number,
  ): void {
    if (gv || this.#n === 0 || (av && !nl)) return;
    // A table maps 512 pages: the keys of the range are its page numbers >> 9.
    const first = Math.floor(startPn / 512), last = Math.floor((endPn - 1) / 512);
    const t = this.#t;
    for (let k = 0; k < t.length; k += W.WORDS) {
      const h = t[k + W.KEY_HI];
      if ((h & W.VALID) === 0) continue;
      if (pscv && (t[k + W.PSCID] !== pscid || (h & W.G) !== 0)) continue;
      if (av) {
        const key = (h & W.KEY_MASK) * 4294967296 + (t[k] >>> 0);
        if (key < first || key > last) continue;
      }
      t[k + W.KEY_HI] = 0;
      this.#n--;
    }
  }

  /** Drops every entry. */
  flush(): void {
    this.#t.fill(0);
    this.#n = 0;
  }
}
