/**
 * A function's Address Translation Cache (PCIe ATS §10): translations the function obtained with
 * ATS Translation Requests, used to issue Translated requests, dropped by ATS Invalidate
 * Requests.
 *
 * @module
 */

/** Entry flag: the completion said "untranslated access only" (U=1). */
const F_UNTRANSLATED = 1;
/** Entry flag: Global mapping (valid for every PASID of the function). */
const F_GLOBAL = 2;
/** `pasid` of a free slot. */
const FREE = -2;
/** `pasid` of a translation obtained without a PASID. */
export const ATC_NO_PASID: number = -1;

/**
 * A small fully associative ATC with round-robin replacement.
 *
 * Entries cover naturally aligned power-of-two ranges. Lookups leave the hit in the public
 * fields ({@linkcode pa}, {@linkcode perm}, {@linkcode untranslatedOnly}) so the DMA path
 * allocates nothing.
 *
 * @example Fill, hit, invalidate
 * ```ts
 * import assert from "node:assert/strict";
 * import { Atc, ATC_NO_PASID } from "@iommu-lab/hw";
 *
 * const atc = new Atc(8);
 * atc.insert(ATC_NO_PASID, 0x20_0123, 0x20_0000, 0x8020_0123, 3, false, false); // a 2 MiB page
 * assert.equal(atc.lookup(ATC_NO_PASID, 0x3f_fff0), true);
 * assert.equal(atc.pa, 0x803f_fff0);
 * atc.invalidate(undefined, 0x21_0000, 0x1000, false);
 * assert.equal(atc.lookup(ATC_NO_PASID, 0x20_0000), false);
 * ```
 */
export class Atc {
  /** Number of entries. */
  readonly capacity: number;
  /** Physical (translated) address of the last hit. */
  pa = 0;
  /** Permissions of the last hit: bit 0 R, bit 1 W, bit 2 X. */
  perm = 0;
  /** The last hit must be accessed with untranslated requests (U=1). */
  untranslatedOnly = false;

  readonly #pasid: Int32Array;
  readonly #base: Float64Array;
  readonly #size: Float64Array;
  readonly #paBase: Float64Array;
  readonly #perm: Uint8Array;
  readonly #flags: Uint8Array;
  #next = 0;
  #last = 0;

  /** Creates an empty ATC of `capacity` entries. */
  constructor(capacity = 64) {
    this.capacity = Math.max(1, capacity | 0);
    this.#pasid = new Int32Array(this.capacity).fill(FREE);
    this.#base = new Float64Array(this.capacity);
    this.#size = new Float64Array(this.capacity);
    this.#paBase = new Float64Array(this.capacity);
    this.#perm = new Uint8Array(this.capacity);
    this.#flags = new Uint8Array(this.capacity);
  }

  /** Number of valid entries. */
  get entries(): number {
    let n = 0;
    for (let i = 0; i < this.capacity; i++) if (this.#pasid[i] !== FREE) n++;
    return n;
  }

  /**
   * Looks up `addr` for `pasid` ({@linkcode ATC_NO_PASID} for none). On a hit fills
   * {@linkcode pa}, {@linkcode perm} and {@linkcode untranslatedOnly} and returns true.
   */
  lookup(pasid: number, addr: number): boolean {
    if (this.#matches(this.#last, pasid, addr)) return this.#hit(this.#last, addr);
    for (let i = 0; i < this.capacity; i++) {
      if (this.#matches(i, pasid, addr)) {
        this.#last = i;
        return this.#hit(i, addr);
      }
    }
    return false;
  }

  /**
   * Caches an ATS completion for `addr`: a `size`-byte naturally aligned range translated to
   * the range containing `pa`, with permissions `perm` (bit 0 R, bit 1 W, bit 2 X).
   */
  insert(
    pasid: number,
    addr: number,
    size: number,
    pa: number,
    perm: number,
    untranslatedOnly: boolean,
    global: boolean,
  ): void {
    const sz = size >= 4096 ? size : 4096;
    const base = addr - (addr % sz);
    let i = this.#find(pasid, base, sz);
    if (i < 0) {
      i = this.#next;
      this.#next = (this.#next + 1) % this.capacity;
    }
    this.#pasid[i] = pasid;
    this.#base[i] = base;
    this.#size[i] = sz;
    this.#paBase[i] = pa - (pa % sz);
    this.#perm[i] = perm & 7;
    this.#flags[i] = (untranslatedOnly ? F_UNTRANSLATED : 0) | (global ? F_GLOBAL : 0);
  }

  /**
   * An ATS Invalidate Request for `[addr, addr + size)`: without a PASID it drops every
   * overlapping entry, PASID or not (PCIe gives no way to target only PASID-less entries); with
   * one it drops that PASID's entries, and with `global` also the Global entries of every
   * PASID. Returns the number of entries dropped.
   */
  invalidate(pasid: number | undefined, addr: number, size: number, global: boolean): number {
    let n = 0;
    const end = addr + size;
    for (let i = 0; i < this.capacity; i++) {
      const p = this.#pasid[i];
      if (p === FREE) continue;
      if (this.#base[i] >= end || addr >= this.#base[i] + this.#size[i]) continue;
      const hit = pasid === undefined || p === pasid ||
        (global && p >= 0 && (this.#flags[i] & F_GLOBAL) !== 0);
      if (hit) {
        this.#pasid[i] = FREE;
        n++;
      }
    }
    return n;
  }

  /** Drops every entry (ATS disabled, function reset). */
  flush(): void {
    this.#pasid.fill(FREE);
  }

  #find(pasid: number, base: number, size: number): number {
    for (let i = 0; i < this.capacity; i++) {
      if (this.#pasid[i] === pasid && this.#base[i] === base && this.#size[i] === size) return i;
    }
    return -1;
  }

  #matches(i: number, pasid: number, addr: number): boolean {
    const p = this.#pasid[i];
    if (p === FREE || addr < this.#base[i] || addr >= this.#base[i] + this.#size[i]) return false;
    return p === pasid || (pasid >= 0 && p >= 0 && (this.#flags[i] & F_GLOBAL) !== 0);
  }

  #hit(i: number, addr: number): boolean {
    this.pa = this.#paBase[i] + (addr - this.#base[i]);
    this.perm = this.#perm[i];
    this.untranslatedOnly = (this.#flags[i] & F_UNTRANSLATED) !== 0;
    return true;
  }
}
