/**
 * The IOTLB: cached leaf translations tagged as spec §2.8 "Caching in-memory data structures" says
 * — by GSCID, PSCID and IOVA when the first stage is active (GSCID only counting when the G stage
 * is), by GSCID and GPA for G-stage-only translations — with the exact IOTINVAL.VMA / IOTINVAL.GVMA
 * semantics.
 *
 * A hit reads one 16-byte entry of an Int32Array (tag, address-space id, output page, permissions),
 * direct-mapped by a hash of the page number and the address space, and allocates nothing; what
 * only invalidations need lives in a second array. A superpage (or Svnapot 64 KiB page) is one
 * entry of its size: a lookup probes the 4 KiB slot first and tries the other sizes only while
 * entries of those sizes exist. Each entry also remembers the sizes of its first-stage and G-stage
 * leaves and the G-stage leaf's GPA, so an invalidation by address drops every entry derived from
 * the leaf it names (including combined IOVA→SPA entries whose GPA matches an IOTINVAL.GVMA).
 * Identity (both stages Bare) and MSI translations are never cached.
 *
 * @module
 */

import { TWO32 } from "../_u64.ts";
import { vpnLow } from "./walk.ts";

/** log2 of the entry size in pages, per size class: 4 KiB, 64 KiB, 2 MiB, 4 MiB, 1 GiB, 512
 * GiB, 256 TiB. */
const CLASS_SHIFT = [0, 4, 9, 10, 18, 27, 36];
const SHIFT_CLASS: number[] = Array.from({ length: 37 }, (_, s) => CLASS_SHIFT.indexOf(s));
const CLASS_BYTES = CLASS_SHIFT.map((s) => 4096 * 2 ** s);
const CLASS_SALT = [0, 0x27d4eb2f, 0x165667b1, 0x61c88647, 0x3243f6a9, 0x7f4a7c15, 0x2545f491];
const VALID = 1 << 23;
/** Address-space ids are 20 bits; id 0 is never used. */
const MAX_ID = (1 << 20) - 1;

// Words of a hot entry (4 per slot).
const TAG_LO = 0; // page-number key (page number >> size), bits 31:0
const TAG_HI = 1; // key bits 51:32 | size class << 20 | VALID | info << 24
const ID_PN = 2; // address-space id | output page number bits 43:32 << 20
const PN_LO = 3; // output page number of the entry's first page, bits 31:0
// Words of a cold entry (4 per slot): leaf sizes, GPA page where the G-stage leaf starts.
const SHIFTS = 0; // first-stage leaf log2 pages | G-stage leaf log2 pages << 8
const GPN_LO = 1;
const GPN_HI = 2;

/** Info bits of an entry: R, W (only once D is set), X, U, G as 1, 2, 4, 8, 16. */
export const INFO_PERM = 0x1f;
/** Info bit: the entry has no first stage, so no U/SUM check applies on a hit. */
export const INFO_FS_BARE = 1 << 5;
/** Bit position of the resolved PBMT in an entry's info. */
export const INFO_PBMT_SHIFT = 6;

/** An IOTLB address space: whether the first and G stages are active, GSCID and PSCID. */
export class AddressSpace {
  /** First stage active. */
  readonly fs: boolean;
  /** G stage active. */
  readonly gv: boolean;
  /** GSCID (0 when the G stage is Bare). */
  readonly gscid: number;
  /** PSCID (0 when the first stage is Bare). */
  readonly pscid: number;
  /** Hash mixed into the slot index. */
  readonly hash: number;
  /** Id in the IOTLB's tags (renumbered when the IOTLB recycles ids). */
  id = 0;
  /** Id generation {@linkcode id} belongs to. */
  gen = -1;

  /** The address space of translations through these stages and IDs. */
  constructor(fs: boolean, gv: boolean, gscid: number, pscid: number) {
    this.fs = fs;
    this.gv = gv;
    this.gscid = gscid;
    this.pscid = pscid;
    // murmur3's finaliser over all the IDs, so GSCID bits reach the slot index too.
    let h = pscid ^ Math.imul(gscid + (fs ? 0x10000 : 0) + (gv ? 0x20000 : 0), 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    this.hash = h ^ (h >>> 16);
  }
}

/** The IOTLB of one IOMMU. Slots are addressed by the index of their first hot word. */
export class Iotlb {
  readonly #t: Int32Array;
  readonly #cold: Int32Array;
  readonly #live: Int32Array;
  readonly #perClass = new Int32Array(CLASS_SHIFT.length);
  readonly #mask: number;
  readonly #spaces = new Map<number, AddressSpace>();
  #byId: (AddressSpace | undefined)[] = [undefined];
  #gen = 0;
  #n = 0;
  #supers = 0;

  /** Creates an IOTLB of `entries` slots (rounded up to a power of two). */
  constructor(entries: number) {
    const size = 2 ** Math.max(0, Math.ceil(Math.log2(Math.max(1, entries))));
    this.#mask = size - 1;
    this.#t = new Int32Array(size * 4);
    this.#cold = new Int32Array(size * 4);
    this.#live = new Int32Array(size);
  }

  /** Number of valid entries. */
  get size(): number {
    return this.#n;
  }

  /** The address space with these stages and IDs: one object per distinct space. */
  space(fs: boolean, gv: boolean, gscid: number, pscid: number): AddressSpace {
    const key = ((fs ? 2 : 0) + (gv ? 1 : 0)) * 2 ** 36 + gscid * 2 ** 20 + pscid;
    let as = this.#spaces.get(key);
    if (as === undefined) {
      as = new AddressSpace(fs, gv, gscid, pscid);
      this.#spaces.set(key, as);
    }
    return as;
  }

  /** The slot caching page `vhi:vlo` (bits 51:32 and 31:0) of address space `as`, or -1. */
  lookup(vlo: number, vhi: number, as: AddressSpace): number {
    if (as.gen !== this.#gen) this.#number(as);
    const t = this.#t;
    const e = ((vlo ^ as.hash) & this.#mask) << 2;
    if (
      t[e + TAG_LO] === vlo && (t[e + TAG_HI] & 0xffffff) === (vhi | VALID) &&
      (t[e + ID_PN] & MAX_ID) === as.id
    ) {
      return e;
    }
    return this.#supers === 0 ? -1 : this.#lookupSuper(vlo, vhi, as);
  }

  /** Info of slot `e`: {@linkcode INFO_PERM} bits, {@linkcode INFO_FS_BARE}, PBMT. */
  info(e: number): number {
    return this.#t[e + TAG_HI] >>> 24;
  }

  /** Physical address of offset `off` of page `vhi:vlo` through the entry in slot `e`. */
  paOf(e: number, vlo: number, vhi: number, off: number): number {
    const t = this.#t;
    const pn = (t[e + ID_PN] >>> 20) * TWO32 + (t[e + PN_LO] >>> 0);
    const c = (t[e + TAG_HI] >>> 20) & 7;
    if (c === 0) return pn * 4096 + off;
    return (pn + vpnLow(vlo, vhi, CLASS_SHIFT[c])) * 4096 + off;
  }

  /** Size in bytes of the range the entry in slot `e` maps. */
  sizeOf(e: number): number {
    return CLASS_BYTES[(this.#t[e + TAG_HI] >>> 20) & 7];
  }

  /**
   * Caches the translation of page `vhi:vlo` in address space `as`: an entry of `2^shift`
   * pages whose first page maps to `basePn`, with `info` bits; its first-stage and G-stage
   * leaves span `2^fsShift` and `2^gShift` pages, the latter from GPA page `gLeafPn`.
   */
  insert(
    vlo: number,
    vhi: number,
    shift: number,
    as: AddressSpace,
    basePn: number,
    info: number,
    fsShift: number,
    gShift: number,
    gLeafPn: number,
  ): void {
    if (as.gen !== this.#gen) this.#number(as);
    const c = SHIFT_CLASS[shift];
    let klo = vlo, khi = vhi;
    if (shift >= 32) {
      klo = vhi >>> (shift - 32);
      khi = 0;
    } else if (shift !== 0) {
      klo = (vlo >>> shift) | (vhi << (32 - shift));
      khi = vhi >>> shift;
    }
    const t = this.#t;
    const e = ((klo ^ as.hash ^ CLASS_SALT[c]) & this.#mask) << 2;
    const old = t[e + TAG_HI];
    if ((old & VALID) !== 0) this.#uncount((old >>> 20) & 7);
    else this.#live[this.#n++] = e;
    t[e + TAG_LO] = klo;
    t[e + TAG_HI] = khi | (c << 20) | VALID | (info << 24);
    t[e + ID_PN] = as.id | (((basePn - (basePn >>> 0)) / TWO32) << 20);
    t[e + PN_LO] = basePn >>> 0;
    const cold = this.#cold;
    const gLo = gLeafPn >>> 0;
    cold[e + SHIFTS] = fsShift | (gShift << 8);
    cold[e + GPN_LO] = gLo;
    cold[e + GPN_HI] = (gLeafPn - gLo) / TWO32;
    this.#perClass[c]++;
    if (c !== 0) this.#supers++;
  }

  /**
   * IOTINVAL.VMA: drops first-stage entries of the host (`gv` false, G stage Bare) or of VM
   * `gscid`; with `pscv` only those of `pscid` that are not global; with `av` only those whose
   * first-stage leaf overlaps pages [`startPn`, `endPn`).
   */
  invalVma(
    gv: boolean,
    gscid: number,
    pscv: boolean,
    pscid: number,
    av: boolean,
    startPn: number,
    endPn: number,
  ): void {
    const t = this.#t;
    for (let k = this.#n - 1; k >= 0; k--) {
      const e = this.#live[k];
      const as = this.#byId[t[e + ID_PN] & MAX_ID]!;
      if (!as.fs || as.gv !== gv || (gv && as.gscid !== gscid)) continue;
      if (pscv && (as.pscid !== pscid || (this.info(e) & 16) !== 0)) continue;
      if (av) {
        const size = 2 ** (this.#cold[e + SHIFTS] & 0xff);
        const vpn = this.#vpnOf(e);
        const base = vpn - vpn % size;
        if (base >= endPn || base + size <= startPn) continue;
      }
      this.#remove(k, e);
    }
  }

  /**
   * IOTINVAL.GVMA: drops entries made through a G stage — all of them (`gv` false), those of VM
   * `gscid`, or with `av` those whose G-stage leaf overlaps GPA pages [`startPn`, `endPn`).
   */
  invalGvma(gv: boolean, gscid: number, av: boolean, startPn: number, endPn: number): void {
    const cold = this.#cold;
    for (let k = this.#n - 1; k >= 0; k--) {
      const e = this.#live[k];
      const as = this.#byId[this.#t[e + ID_PN] & MAX_ID]!;
      if (!as.gv) continue;
      if (gv) {
        if (as.gscid !== gscid) continue;
        if (av) {
          const base = cold[e + GPN_HI] * TWO32 + (cold[e + GPN_LO] >>> 0);
          const size = 2 ** (cold[e + SHIFTS] >>> 8);
          if (base >= endPn || base + size <= startPn) continue;
        }
      }
      this.#remove(k, e);
    }
  }

  /** Drops every entry. */
  flush(): void {
    for (let k = 0; k < this.#n; k++) this.#t[this.#live[k] + TAG_HI] = 0;
    this.#perClass.fill(0);
    this.#n = 0;
    this.#supers = 0;
  }

  /** Gives `as` an id of the current generation; when ids run out, flushes and starts anew. */
  #number(as: AddressSpace): void {
    if (this.#byId.length > MAX_ID) {
      this.flush();
      this.#spaces.clear();
      this.#byId = [undefined];
      this.#gen++;
    }
    as.id = this.#byId.length;
    as.gen = this.#gen;
    this.#byId.push(as);
  }

  #lookupSuper(vlo: number, vhi: number, as: AddressSpace): number {
    const t = this.#t;
    const perClass = this.#perClass;
    for (let c = 1; c < CLASS_SHIFT.length; c++) {
      if (perClass[c] === 0) continue;
      const s = CLASS_SHIFT[c];
      const klo = s >= 32 ? vhi >>> (s - 32) : (vlo >>> s) | (vhi << (32 - s));
      const khi = s >= 32 ? 0 : vhi >>> s;
      const e = ((klo ^ as.hash ^ CLASS_SALT[c]) & this.#mask) << 2;
      if (
        t[e + TAG_LO] === (klo | 0) && (t[e + TAG_HI] & 0xffffff) === (khi | (c << 20) | VALID) &&
        (t[e + ID_PN] & MAX_ID) === as.id
      ) {
        return e;
      }
    }
    return -1;
  }

  /** First page number (IOVA or GPA) the entry in slot `e` covers. */
  #vpnOf(e: number): number {
    const t = this.#t;
    const key = (t[e + TAG_HI] & 0xfffff) * TWO32 + (t[e + TAG_LO] >>> 0);
    return key * 2 ** CLASS_SHIFT[(t[e + TAG_HI] >>> 20) & 7];
  }

  #remove(k: number, e: number): void {
    this.#uncount((this.#t[e + TAG_HI] >>> 20) & 7);
    this.#t[e + TAG_HI] = 0;
    this.#live[k] = this.#live[--this.#n];
  }

  #uncount(c: number): void {
    this.#perClass[c]--;
    if (c !== 0) this.#supers--;
  }
}
