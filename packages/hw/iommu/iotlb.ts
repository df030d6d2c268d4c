/**
 * The IOTLB: cached leaf translations tagged as digest §7 says — by GSCID, PSCID and IOVA when
 * the first stage is active (GSCID only counting when the G stage is), by GSCID and GPA for
 * G-stage-only translations — with the exact IOTINVAL.VMA / IOTINVAL.GVMA semantics.
 *
 * Entries live in typed arrays, direct-mapped by a hash of the page number and the address
 * space, so a hit allocates nothing. A superpage (or Svnapot 64 KiB page) is one entry of its
 * size: a lookup probes the 4 KiB slot first and tries the other sizes only while entries of
 * those sizes exist. Each entry also remembers the sizes of its first-stage and G-stage leaves
 * and the G-stage leaf's GPA, so an invalidation by address drops every entry derived from the
 * leaf it names (including combined IOVA→SPA entries whose GPA matches an IOTINVAL.GVMA).
 * Identity (both stages Bare) and MSI translations are never cached.
 *
 * @module
 */

import { PTE_G } from "./structs.ts";
import { vpnLow } from "./walk.ts";

const TWO32 = 4294967296;
const TWO20 = 1048576;
const TWO36 = 68719476736;

/** log2 of the entry size in pages, per size class: 4 KiB, 64 KiB, 2 MiB, 4 MiB, 1 GiB, 512
 * GiB, 256 TiB. */
const CLASS_SHIFT = [0, 4, 9, 10, 18, 27, 36];
const SHIFT_CLASS: number[] = Array.from({ length: 37 }, (_, s) => CLASS_SHIFT.indexOf(s));
const CLASS_BYTES = CLASS_SHIFT.map((s) => 4096 * 2 ** s);
const CLASS_SALT = [0, 0x27d4eb2f, 0x165667b1, 0x61c88647, 0x3243f6a9, 0x7f4a7c15, 0x2545f491];
const VALID = 1 << 23;

/** Info bit: the entry has no first stage, so no U/SUM check applies on a hit. */
export const INFO_FS_BARE = 1 << 6;
/** Bit position of the resolved PBMT in an entry's info word. */
export const INFO_PBMT_SHIFT = 7;
/** Bit position of the first-stage leaf size (log2 pages) in an entry's info word. */
export const INFO_FS_SHIFT_SHIFT = 9;
/** Bit position of the G-stage leaf size (log2 pages) in an entry's info word. */
export const INFO_G_SHIFT_SHIFT = 15;

/**
 * Key of an IOTLB address space: whether the first and G stages are active, GSCID, PSCID.
 * Exact as a number (below 2^38).
 */
export function addressSpaceKey(fs: boolean, gv: boolean, gscid: number, pscid: number): number {
  return ((fs ? 2 : 0) + (gv ? 1 : 0)) * TWO36 + gscid * TWO20 + pscid;
}

/** Hash of an address-space key, mixed into the slot index. */
export function addressSpaceHash(key: number): number {
  const lo = key >>> 0;
  // murmur3's finaliser, so GSCID bits (20 and up) reach the low bits of the slot index.
  let h = lo ^ Math.imul((key - lo) / TWO32 + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The IOTLB of one IOMMU. */
export class Iotlb {
  /** Per slot: low 32 bits of the page number key (the page number shifted by the size). */
  readonly tagLo: Int32Array;
  /** Per slot: bits 51:32 of the key, size class at 22:20, valid at 23. */
  readonly tagHi: Int32Array;
  /** Per slot: the address-space key ({@linkcode addressSpaceKey}). */
  readonly as: Float64Array;
  /** Per slot: output page number of the entry's first page. */
  readonly pn: Float64Array;
  /** Per slot: permissions (PTE bit positions), {@linkcode INFO_FS_BARE}, PBMT, leaf sizes. */
  readonly info: Int32Array;
  readonly #gpn: Float64Array;
  readonly #live: Int32Array;
  readonly #perClass = new Int32Array(CLASS_SHIFT.length);
  readonly #mask: number;
  #n = 0;
  #supers = 0;

  /** Creates an IOTLB of `entries` slots (rounded up to a power of two). */
  constructor(entries: number) {
    const size = 2 ** Math.max(0, Math.ceil(Math.log2(Math.max(1, entries))));
    this.#mask = size - 1;
    this.tagLo = new Int32Array(size);
    this.tagHi = new Int32Array(size);
    this.as = new Float64Array(size);
    this.pn = new Float64Array(size);
    this.info = new Int32Array(size);
    this.#gpn = new Float64Array(size);
    this.#live = new Int32Array(size);
  }

  /** Number of valid entries. */
  get size(): number {
    return this.#n;
  }

  /** The slot caching page `vhi:vlo` (bits 51:32 and 31:0) of address space `asKey`, or -1. */
  lookup(vlo: number, vhi: number, asKey: number, asHash: number): number {
    const i = (vlo ^ asHash) & this.#mask;
    if (this.tagLo[i] === vlo && this.tagHi[i] === (vhi | VALID) && this.as[i] === asKey) return i;
    return this.#supers === 0 ? -1 : this.#lookupSuper(vlo, vhi, asKey, asHash);
  }

  /** Physical address of offset `off` of page `vhi:vlo` through the entry in slot `i`. */
  paOf(i: number, vlo: number, vhi: number, off: number): number {
    const c = (this.tagHi[i] >>> 20) & 7;
    if (c === 0) return this.pn[i] * 4096 + off;
    return (this.pn[i] + vpnLow(vlo, vhi, CLASS_SHIFT[c])) * 4096 + off;
  }

  /** Size in bytes of the range the entry in slot `i` maps. */
  sizeOf(i: number): number {
    return CLASS_BYTES[(this.tagHi[i] >>> 20) & 7];
  }

  /**
   * Caches the translation of page `vhi:vlo` in address space `asKey`: an entry of
   * `2^shift` pages whose first page maps to `basePn`, with `info` bits and the GPA page
   * `gLeafPn` where its G-stage leaf starts.
   */
  insert(
    vlo: number,
    vhi: number,
    shift: number,
    asKey: number,
    asHash: number,
    basePn: number,
    info: number,
    gLeafPn: number,
  ): void {
    const c = SHIFT_CLASS[shift];
    let klo = vlo, khi = vhi;
    if (shift >= 32) {
      klo = vhi >>> (shift - 32);
      khi = 0;
    } else if (shift !== 0) {
      klo = (vlo >>> shift) | (vhi << (32 - shift));
      khi = vhi >>> shift;
    }
    const i = (klo ^ asHash ^ CLASS_SALT[c]) & this.#mask;
    const old = this.tagHi[i];
    if ((old & VALID) !== 0) this.#uncount((old >>> 20) & 7);
    else {
      this.#live[this.#n++] = i;
    }
    this.tagLo[i] = klo;
    this.tagHi[i] = khi | (c << 20) | VALID;
    this.as[i] = asKey;
    this.pn[i] = basePn;
    this.info[i] = info;
    this.#gpn[i] = gLeafPn;
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
    for (let k = this.#n - 1; k >= 0; k--) {
      const i = this.#live[k];
      const as = this.as[i];
      const flags = Math.floor(as / TWO36);
      if ((flags & 2) === 0 || ((flags & 1) !== 0) !== gv) continue;
      if (gv && Math.floor(as / TWO20) % 65536 !== gscid) continue;
      if (pscv && (as % TWO20 !== pscid || (this.info[i] & PTE_G) !== 0)) continue;
      if (av) {
        const size = 2 ** ((this.info[i] >>> INFO_FS_SHIFT_SHIFT) & 63);
        const vpn = this.#vpnOf(i);
        const base = vpn - vpn % size;
        if (base >= endPn || base + size <= startPn) continue;
      }
      this.#remove(k, i);
    }
  }

  /**
   * IOTINVAL.GVMA: drops entries made through a G stage — all of them (`gv` false), those of VM
   * `gscid`, or with `av` those whose G-stage leaf overlaps GPA pages [`startPn`, `endPn`).
   */
  invalGvma(gv: boolean, gscid: number, av: boolean, startPn: number, endPn: number): void {
    for (let k = this.#n - 1; k >= 0; k--) {
      const i = this.#live[k];
      const as = this.as[i];
      if ((Math.floor(as / TWO36) & 1) === 0) continue;
      if (gv) {
        if (Math.floor(as / TWO20) % 65536 !== gscid) continue;
        if (av) {
          const base = this.#gpn[i];
          const size = 2 ** ((this.info[i] >>> INFO_G_SHIFT_SHIFT) & 63);
          if (base >= endPn || base + size <= startPn) continue;
        }
      }
      this.#remove(k, i);
    }
  }

  /** Drops every entry. */
  flush(): void {
    this.tagHi.fill(0);
    this.#perClass.fill(0);
    this.#n = 0;
    this.#supers = 0;
  }

  #lookupSuper(vlo: number, vhi: number, asKey: number, asHash: number): number {
    const perClass = this.#perClass;
    for (let c = 1; c < CLASS_SHIFT.length; c++) {
      if (perClass[c] === 0) continue;
      const s = CLASS_SHIFT[c];
      const klo = s >= 32 ? vhi >>> (s - 32) : (vlo >>> s) | (vhi << (32 - s));
      const khi = s >= 32 ? 0 : vhi >>> s;
      const i = (klo ^ asHash ^ CLASS_SALT[c]) & this.#mask;
      if (
        this.tagLo[i] === (klo | 0) && this.tagHi[i] === (khi | (c << 20) | VALID) &&
        this.as[i] === asKey
      ) {
        return i;
      }
    }
    return -1;
  }

  /** First page number (IOVA or GPA) the entry in slot `i` covers. */
  #vpnOf(i: number): number {
    const key = (this.tagHi[i] & 0xfffff) * TWO32 + (this.tagLo[i] >>> 0);
    return key * 2 ** CLASS_SHIFT[(this.tagHi[i] >>> 20) & 7];
  }

  #remove(k: number, i: number): void {
    this.#uncount((this.tagHi[i] >>> 20) & 7);
    this.tagHi[i] = 0;
    this.#live[k] = this.#live[--this.#n];
  }

  #uncount(c: number): void {
    this.#perClass[c]--;
    if (c !== 0) this.#supers--;
  }
}
