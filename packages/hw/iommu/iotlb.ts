/**
 * The IOTLB: cached leaf translations tagged as spec §2.8 "Caching in-memory data structures" says
 * — by GSCID, PSCID and IOVA when the first stage is active (GSCID only counting when the G stage
 * is), by GSCID and GPA for G-stage-only translations — with the exact IOTINVAL.VMA / IOTINVAL.GVMA
 * semantics.
 *
 * It is set-associative, with the geometry and replacement policy of the `iotlb` cache option
 * (`cache.ts`): an entry lives in the set its page number (XOR a hash of its address space, so
 * that devices using the same IOVAs do not crowd one set) selects, in any of the set's ways. A hit
 * compares the ways' 16-byte tags in an Int32Array (page-number key, size class, address-space
 * id, info) and reads the output address from a Float64Array; it allocates nothing and updates
 * the replacement state with one store. A superpage (or Svnapot 64 KiB page) is one entry of its
 * size, in the set of its own key: a lookup probes the 4 KiB set first and the other sizes only
 * while entries of those sizes exist. Each entry also remembers the sizes of its first-stage and
 * G-stage leaves and the G-stage leaf's GPA, so an invalidation by address drops every entry
 * derived from the leaf it names (including combined IOVA→SPA entries whose GPA matches an
 * IOTINVAL.GVMA). Identity (both stages Bare) and MSI translations are never cached.
 *
 * In front of the sets sits a micro-TLB, as real IOMMUs have: a few entries, direct-mapped by page
 * number XOR requester (device_id), each holding a recent hit of a requester's page with the slot
 * it came from, so that a requester using the same pages again skips its address space, the set
 * search and the entry's decoding. An entry takes the page of an IOTLB hit when it is free, or
 * when the same IOTLB slot hit it last too (a page used once does not displace one in use, and
 * a stream of pages that each hit once costs the micro-TLB nothing). It is part of the IOTLB, not
 * a cache of its own: it only holds what a slot holds (inclusive), each entry goes when its slot
 * is refilled or invalidated, and the translator empties it whenever what a device_id names may
 * change (see `translator.ts`). A micro-TLB hit is no use of the slot for the replacement policy:
 * the sets see only the requests the micro-TLB misses, as in hardware.
 *
 * @module
 */

import { TWO32 } from "../_u64.ts";
import { type CacheGeometry, resolveGeometry, SetAssociative } from "./cache.ts";
import type { TranslationResult, XLATE_OK } from "./request.ts";
import { vpnLow } from "./walk.ts";

/** log2 of the entry size in pages, per size class: 4 KiB, 64 KiB, 2 MiB, 4 MiB, 1 GiB, 512
 * GiB, 256 TiB. */
const CLASS_SHIFT = [0, 4, 9, 10, 18, 27, 36];
const SHIFT_CLASS: number[] = Array.from({ length: 37 }, (_, s) => CLASS_SHIFT.indexOf(s));
const CLASS_BYTES = CLASS_SHIFT.map((s) => 4096 * 2 ** s);
const CLASS_SALT = [0, 0x27d4eb2f, 0x165667b1, 0x61c88647, 0x3243f6a9, 0x7f4a7c15, 0x2545f491];
/**
 * An entry's tag words: 4 per slot (16 bytes, so that a 4-way set is one host cache line when it
 * is aligned: the output addresses live apart, where a lookup that misses does not load them).
 * A const enum, so that its members are literals in the code: a module constant costs a load and
 * a temporal-dead-zone check at every use.
 */
const enum E {
  /** log2 of the words per slot. */
  SHIFT = 2,
  /** Words per slot. */
  WORDS = 4,
  /** Page-number key (page number >> size), bits 31:0. */
  KEY_LO = 0,
  /** Key bits 51:32 | size class << 20 | VALID. */
  KEY_HI = 1,
  /** Address-space id. */
  ID = 2,
  /** Info bits 7:0 | first-stage leaf log2 pages << 8 | G-stage leaf's << 16 | MICRO. */
  INFO = 3,
  /** KEY_HI bit: the entry is valid. */
  VALID = 1 << 23,
  /** Address-space ids are 20 bits; id 0 is never used. */
  MAX_ID = (1 << 20) - 1,
  /** Info bit: the entry has no first stage. */
  FS_BARE = 1 << 5,
  /** Bit position of the resolved PBMT in an entry's info. */
  PBMT_SHIFT = 6,
  /** INFO bit: a micro-TLB entry may name the slot. */
  MICRO = 1 << 24,
}

/** Info bits of an entry: R, W (only once D is set), X, U, G as 1, 2, 4, 8, 16. */
export const INFO_PERM = 0x1f;
/** Info bit: the entry has no first stage, so no U/SUM check applies on a hit. */
export const INFO_FS_BARE: number = E.FS_BARE;
/** Bit position of the resolved PBMT in an entry's info. */
export const INFO_PBMT_SHIFT: number = E.PBMT_SHIFT;

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
  /**
   * Id in the IOTLB's tags, from 1; 0 until the IOTLB numbers the space, and again after it
   * recycled its ids: no valid entry has id 0, so a lookup with it misses.
   */
  id = 0;

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

/** What {@linkcode Iotlb.hit} returns when it answered the request. */
export const IOTLB_ANSWERED = -2;

/** Addresses from this one up are not put in the micro-TLB (see `_MicroEntry.paHalf`). */
const MICRO_PA_LIMIT = 2 ** 52;

/** A micro-TLB entry: a page of a requester, the slot caching it, and its answer. */
class _MicroEntry {
  /** The device_id; -1 when the entry is empty. */
  requester = -1;
  /** Page number bits 31:0. */
  vlo = 0;
  /** Page number bits 51:32. */
  vhi = 0;
  /** The IOTLB slot the answer comes from. */
  slot = -1;
  /** The slot that hit the entry last without taking it. */
  candidate = -1;
  /** R, W, X as a result reports them: the accesses allowed. */
  perm = 0;
  /** The resolved PBMT. */
  pbmt = 0;
  /**
   * The page's address plus one half (exact below {@linkcode MICRO_PA_LIMIT}). A hit adds the
   * offset minus one half: adding numbers that are not integers, the engine adds doubles, where
   * for integers it would check and convert both to 64-bit integers first — a third of a hit.
   */
  paHalf = 0.5;
  /** The size of the slot's entry in bytes (a double from the start, as `paHalf`). */
  size = Number.NaN;
}

/** The IOTLB of one IOMMU. Slots are numbered set × ways + way. */
export class Iotlb extends SetAssociative {
  /** The slots' tag words (see {@linkcode E}). */
  readonly #t: Int32Array;
  /** Per slot: the output address of the entry's first page. */
  readonly #pa: Float64Array;
  /** Per slot of an entry made through a G stage: the GPA page where its leaf starts. */
  readonly #gpn: Float64Array;
  readonly #live: Int32Array;
  readonly #perClass = new Int32Array(CLASS_SHIFT.length);
  readonly #spaces = new Map<number, AddressSpace>();
  #byId: (AddressSpace | undefined)[] = [undefined];
  #n = 0;
  #supers = 0;
  /** {@linkcode #place}'s key, bits 31:0. */
  #placedKey = 0;
  /** {@linkcode #place}'s KEY_HI word. */
  #placedKeyHi = 0;
  /** The micro-TLB's entries (one that never hits when it has none). */
  readonly #micro: _MicroEntry[];
  /** Entries − 1. */
  readonly #microMask: number;
  /** 0 with a micro-TLB, -1 (no requester) without. */
  readonly #microOff: number;

  /**
   * Creates an IOTLB of `geometry` (unset fields from the `iotlb` default) with a micro-TLB of
   * `microEntries` (0, or a power of two) in front.
   */
  constructor(geometry: CacheGeometry = {}, microEntries = 0) {
    const g = resolveGeometry("iotlb", geometry);
    super(g);
    const slots = g.sets * g.ways;
    this.#t = new Int32Array(slots << E.SHIFT);
    this.#pa = new Float64Array(slots);
    this.#gpn = new Float64Array(slots);
    this.#live = new Int32Array(slots);
    this.#micro = Array.from({ length: Math.max(microEntries, 1) }, () => new _MicroEntry());
    this.#microMask = this.#micro.length - 1;
    this.#microOff = microEntries !== 0 ? 0 : -1;
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

  /**
   * The slot caching page `vhi:vlo` (bits 51:32 and 31:0) of address space `as`, or -1. A hit
   * counts as a use for the replacement policy.
   */
  lookup(vlo: number, vhi: number, as: AddressSpace): number {
    // Small enough for the engine to inline into the translator's fast path.
    if (as.id === 0) this.#number(as);
    const t = this.#t;
    const set = (vlo ^ as.hash) & this.setMask;
    const hi = vhi | E.VALID;
    for (let way = 0, k = set << this.waysLog2 << E.SHIFT; way < this.ways; way++, k += E.WORDS) {
      if (t[k] === vlo && t[k + E.KEY_HI] === hi && t[k + E.ID] === as.id) {
        this.touch(set, way);
        return k >> E.SHIFT;
      }
    }
    return this.#supers === 0 ? -1 : this.#lookupSuper(vlo, vhi, as);
  }

  /**
   * Answers offset `off` of page `vhi:vlo` for requester `requester` (a non-negative number, the
   * device_id) into `res` from the micro-TLB, when it holds the page and allows `access`;
   * returns whether it did.
   */
  microAnswer(
    requester: number,
    vlo: number,
    vhi: number,
    access: number,
    off: number,
    res: TranslationResult,
  ): boolean {
    // Small enough for the engine to inline into the translator's fast path.
    const m = this.#micro[(vlo ^ requester) & this.#microMask];
    if (m.vlo !== vlo || m.requester !== requester || m.vhi !== vhi) return false;
    if (((m.perm >> access) & 1) === 0) return false;
    res.status = 0 satisfies typeof XLATE_OK;
    res.pa = m.paHalf + (off - 0.5);
    res.size = m.size;
    res.perm = m.perm;
    res.pbmt = m.pbmt;
    res.global = false;
    res.untranslatedOnly = false;
    return true;
  }

  /** Empties the micro-TLB (what a requester names changed). */
  microFlush(): void {
    for (const m of this.#micro) m.requester = -1;
  }

  /** Number of valid micro-TLB entries (for tests and statistics). */
  get microSize(): number {
    return this.#micro.filter((m) => m.requester >= 0).length;
  }

  /** Info of slot `e`: {@linkcode INFO_PERM} bits, {@linkcode INFO_FS_BARE}, PBMT. */
  info(e: number): number {
    return this.#t[(e << E.SHIFT) + E.INFO] & 0xff;
  }

  /**
   * Answers offset `off` of page `vhi:vlo` into `res` from the entry in slot `e` when its info
   * has every bit of `need`; returns whether it did.
   */
  answer(
    e: number,
    vlo: number,
    vhi: number,
    off: number,
    need: number,
    res: TranslationResult,
  ): boolean {
    const info = this.#t[(e << E.SHIFT) + E.INFO];
    if ((info & need) !== need) return false;
    this.#answer(e, info, vlo, vhi, off, res);
    return true;
  }

  /**
   * The translator's fast path after a micro-TLB miss, {@linkcode lookup} and
   * {@linkcode answer} in one: finds page `vhi:vlo` of address space `as` and, when its entry
   * has every bit of `need` (user accesses: U is one of them), answers offset `off` into `res`
   * and fills the page's micro-TLB entry for `requester` (the device_id); returns
   * {@linkcode IOTLB_ANSWERED}, else the slot that lacked a permission, else -1.
   */
  hit(
    vlo: number,
    vhi: number,
    as: AddressSpace,
    off: number,
    need: number,
    res: TranslationResult,
    requester: number,
  ): number {
    // lookup() apart from the rest, small enough for the engine to inline into the translator's
    // translate() (see its #microMiss): an IOTLB probe then makes no call.
    const e = this.lookup(vlo, vhi, as);
    return e < 0 ? -1 : this.#hitAnswer(e, requester, vlo, vhi, off, need, res);
  }

  /**
   * The rest of {@linkcode hit} once lookup() found the page in slot `e`: answer(), and the page's
   * micro-TLB entry for `requester`.
   */
  #hitAnswer(
    e: number,
    requester: number,
    vlo: number,
    vhi: number,
    off: number,
    need: number,
    res: TranslationResult,
  ): number {
    if (!this.answer(e, vlo, vhi, off, need, res)) return e;
    const page = res.pa - off;
    // The page's micro-TLB entry takes it when free, or when this slot hit the entry last too:
    // a page used once does not displace one in use. Without a micro-TLB, its one entry is
    // filled for no requester: it never hits.
    const m = this.#micro[(vlo ^ requester) & this.#microMask];
    if (m.requester !== -1 && m.candidate !== e) m.candidate = e;
    else if (page < MICRO_PA_LIMIT) {
      this.#t[(e << E.SHIFT) + E.INFO] |= E.MICRO;
      m.requester = requester | this.#microOff;
      m.vlo = vlo;
      m.vhi = vhi;
      m.slot = e;
      m.perm = res.perm;
      m.pbmt = res.pbmt;
      m.paHalf = page + 0.5;
      m.size = res.size;
    }
    return IOTLB_ANSWERED;
  }

  /** Answers offset `off` of page `vhi:vlo` into `res` from slot `e`, whose info is `info`. */
  #answer(
    e: number,
    info: number,
    vlo: number,
    vhi: number,
    off: number,
    res: TranslationResult,
  ): void {
    res.status = 0 satisfies typeof XLATE_OK;
    res.perm = info & 7;
    res.pbmt = (info >>> E.PBMT_SHIFT) & 3;
    res.global = false;
    res.untranslatedOnly = false;
    const c = (this.#t[(e << E.SHIFT) + E.KEY_HI] >>> 20) & 7;
    if (c !== 0) this.#answerSuper(e, c, vlo, vhi, off, res);
    else {
      res.pa = this.#pa[e] + off;
      res.size = 4096;
    }
  }

  /** {@linkcode answer}'s address and size for an entry of size class `c` above 4 KiB. */
  #answerSuper(
    e: number,
    c: number,
    vlo: number,
    vhi: number,
    off: number,
    res: TranslationResult,
  ): void {
    res.pa = this.#pa[e] + vpnLow(vlo, vhi, CLASS_SHIFT[c]) * 4096 + off;
    res.size = CLASS_BYTES[c];
  }

  /**
   * Caches the translation of page `vhi:vlo` in address space `as`: an entry of `2^shift`
   * pages whose first page maps to `basePn`, with `info` bits; its first-stage and G-stage
   * leaves span `2^fsShift` and `2^gShift` pages, the latter from GPA page `gLeafPn`. `hint` is
   * the slot a lookup of this page found with permissions the request could not use (the walk
   * that follows may have set D), or -1: the entry replaces it if it is the same page and size;
   * else the entry takes an invalid way of its set, else the way the replacement policy picks.
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
    hint = -1,
  ): void {
    // Small enough for the engine to inline into the translator's walk: the rare cases are
    // calls.
    if (as.id === 0) this.#number(as);
    let klo = vlo, hi = vhi | E.VALID, e: number;
    if (shift === 0 && hint < 0) {
      const set = (vlo ^ as.hash) & this.setMask;
      e = (set << this.waysLog2) + this.fill(set);
    } else {
      e = this.#place(vlo, vhi, shift, as, hint);
      klo = this.#placedKey;
      hi = this.#placedKeyHi;
    }
    const t = this.#t;
    const k = e << E.SHIFT;
    const old = t[k + E.KEY_HI];
    if (old === 0 || (old & (7 << 20)) !== 0 || (t[k + E.INFO] & E.MICRO) !== 0) {
      this.#replace(e, old, t[k + E.INFO]);
    }
    t[k] = klo;
    t[k + E.KEY_HI] = hi;
    t[k + E.ID] = as.id;
    t[k + E.INFO] = info | (fsShift << 8) | (gShift << 16);
    this.#pa[e] = basePn * 4096;
    if (as.gv) this.#gpn[e] = gLeafPn;
  }

  /**
   * {@linkcode insert}'s slot for an entry of `2^shift` pages with page `vhi:vlo`, or for one
   * that may refill slot `hint`: leaves the entry's key in {@linkcode #placedKey} and
   * {@linkcode #placedKeyHi} (its KEY_HI word), and counts a superpage entry.
   */
  #place(vlo: number, vhi: number, shift: number, as: AddressSpace, hint: number): number {
    let c = 0, klo = vlo, khi = vhi;
    if (shift !== 0) {
      c = SHIFT_CLASS[shift];
      if (shift >= 32) {
        klo = vhi >>> (shift - 32);
        khi = 0;
      } else {
        klo = (vlo >>> shift) | (vhi << (32 - shift));
        khi = vhi >>> shift;
      }
      klo |= 0;
      this.#perClass[c]++;
      this.#supers++;
    }
    const hi = khi | (c << 20) | E.VALID;
    this.#placedKey = klo;
    this.#placedKeyHi = hi;
    const t = this.#t;
    const set = (klo ^ as.hash ^ CLASS_SALT[c]) & this.setMask;
    const first = set << this.waysLog2;
    if (
      hint >= 0 && t[(hint << E.SHIFT) + E.KEY_HI] === hi && t[hint << E.SHIFT] === klo &&
      t[(hint << E.SHIFT) + E.ID] === as.id
    ) {
      this.touch(set, hint - first);
      return hint;
    }
    return first + this.fill(set);
  }

  /**
   * Slot `e`, whose KEY_HI word was `old` and INFO word `info`, takes a new entry: an invalid
   * one joins the live list; a valid one leaves the micro-TLB and the superpage counts.
   */
  #replace(e: number, old: number, info: number): void {
    if (old === 0) {
      this.#live[this.#n++] = e;
      return;
    }
    if ((info & E.MICRO) !== 0) this.#microDrop(e);
    if ((old & (7 << 20)) !== 0) this.#uncount((old >>> 20) & 7);
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
    for (let j = this.#n - 1; j >= 0; j--) {
      const k = this.#live[j] << E.SHIFT;
      const as = this.#byId[t[k + E.ID]]!;
      if (!as.fs || as.gv !== gv || (gv && as.gscid !== gscid)) continue;
      if (pscv && (as.pscid !== pscid || (t[k + E.INFO] & 16) !== 0)) continue;
      if (av) {
        const size = 2 ** ((t[k + E.INFO] >>> 8) & 0xff);
        const vpn = this.#vpnOf(k);
        const base = vpn - vpn % size;
        if (base >= endPn || base + size <= startPn) continue;
      }
      this.#remove(j, k);
    }
  }

  /**
   * IOTINVAL.GVMA: drops entries made through a G stage — all of them (`gv` false), those of VM
   * `gscid`, or with `av` those whose G-stage leaf overlaps GPA pages [`startPn`, `endPn`).
   */
  invalGvma(gv: boolean, gscid: number, av: boolean, startPn: number, endPn: number): void {
    const t = this.#t;
    for (let j = this.#n - 1; j >= 0; j--) {
      const k = this.#live[j] << E.SHIFT;
      const as = this.#byId[t[k + E.ID]]!;
      if (!as.gv) continue;
      if (gv) {
        if (as.gscid !== gscid) continue;
        if (av) {
          const base = this.#gpn[k >> E.SHIFT];
          const size = 2 ** ((t[k + E.INFO] >>> 16) & 0xff);
          if (base >= endPn || base + size <= startPn) continue;
        }
      }
      this.#remove(j, k);
    }
  }

  /** Drops every entry and forgets the replacement state. */
  flush(): void {
    this.microFlush();
    for (let j = 0; j < this.#n; j++) this.#t[(this.#live[j] << E.SHIFT) + E.KEY_HI] = 0;
    this.#perClass.fill(0);
    this.releaseAll();
    this.#n = 0;
    this.#supers = 0;
  }

  /**
   * Gives `as` the next id; when ids run out, flushes and starts anew, every space that had one
   * back to 0 (the caches of contexts keep their spaces: they are numbered again when used).
   */
  #number(as: AddressSpace): void {
    if (this.#byId.length > E.MAX_ID) {
      this.flush();
      for (const old of this.#byId) if (old !== undefined) old.id = 0;
      this.#spaces.clear();
      this.#byId = [undefined];
    }
    as.id = this.#byId.length;
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
      const set = (klo ^ as.hash ^ CLASS_SALT[c]) & this.setMask;
      const first = set << this.waysLog2;
      const hi = khi | (c << 20) | E.VALID;
      for (let e = first; e < first + this.ways; e++) {
        const k = e << E.SHIFT;
        if (t[k + E.KEY_LO] === (klo | 0) && t[k + E.KEY_HI] === hi && t[k + E.ID] === as.id) {
          this.touch(set, e - first);
          return e;
        }
      }
    }
    return -1;
  }

  /** First page number (IOVA or GPA) the entry at word `k` covers. */
  #vpnOf(k: number): number {
    const t = this.#t;
    const key = (t[k + E.KEY_HI] & 0xfffff) * TWO32 + (t[k + E.KEY_LO] >>> 0);
    return key * 2 ** CLASS_SHIFT[(t[k + E.KEY_HI] >>> 20) & 7];
  }

  #remove(j: number, k: number): void {
    const c = (this.#t[k + E.KEY_HI] >>> 20) & 7;
    if (c !== 0) this.#uncount(c);
    this.#t[k + E.KEY_HI] = 0;
    if ((this.#t[k + E.INFO] & E.MICRO) !== 0) this.#microDrop(k >> E.SHIFT);
    this.release(k >> E.SHIFT);
    this.#live[j] = this.#live[--this.#n];
  }

  /** The micro-TLB entries of slot `e` go: the slot is refilled or invalidated. */
  #microDrop(e: number): void {
    const micro = this.#micro;
    for (let i = 0; i < micro.length; i++) if (micro[i].slot === e) micro[i].requester = -1;
  }

  /** A superpage entry of class `c` went. */
  #uncount(c: number): void {
    this.#perClass[c]--;
    this.#supers--;
  }
}
