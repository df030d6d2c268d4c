/**
 * The geometry of the IOMMU's translation caches — the IOTLB, the walk cache and the DDT and PDT
 * caches (spec §2.8 "Caching in-memory data structures") — as a hardware variant: sets, ways and
 * the policy that picks the way a fill evicts (entries, for the direct-mapped micro-TLB and walk
 * cache). The spec leaves all of it to the implementation; the defaults are sizes a real IOMMU
 * could have, so that the standard HPM events (IOTLB misses, DDT and PDT walks) count what they
 * would on hardware.
 *
 * @module
 */

/**
 * Which way of a full set a fill evicts:
 * - `"plru"`: bit pseudo-LRU (an MRU bit per way) — every hit and fill sets its way's bit, and
 *   when that would set them all, clears the others; the victim is the lowest way whose bit is
 *   clear, so never the way used last, and with 2 ways exactly the least recently used one;
 * - `"round-robin"`: the ways of a set in turn (FIFO): hits change nothing.
 *
 * Either way an invalid way is filled before a valid one is evicted.
 */
export type CacheReplacement = "plru" | "round-robin";

/** Geometry of one set-associative cache. Unset fields come from the cache's default. */
export interface CacheGeometry {
  /** Number of sets: a power of two. */
  sets?: number;
  /** Ways per set: a power of two from 1 to 16. */
  ways?: number;
  /** The replacement policy. */
  replacement?: CacheReplacement;
}

/** The geometries of an IOMMU's caches (the `cache` option of `Iommu`). */
export interface CacheOptions {
  /**
   * Entries of the IOTLB's micro-TLB: recent IOTLB hits by device_id and page, direct-mapped, in
   * front of its sets (see `iotlb.ts`); 0 (none) or a power of two up to 64. Default 8. It is part
   * of the IOTLB: it holds only what the sets hold, every invalidation takes effect in it at once,
   * and its hits are IOTLB hits (HPM event 4 counts neither); they are no use of an entry for the
   * sets' replacement policy.
   */
  microTlb?: number;
  /** The IOTLB: leaf translations. Default 1024 sets × 4 ways (4096 entries), pseudo-LRU. */
  iotlb?: CacheGeometry;
  /**
   * Entries of the walk cache: non-leaf first-stage PTEs that point at a last-level table, of
   * host address spaces, direct-mapped (see `walk_cache.ts`); 0 (none) or a power of two up to
   * 2^20. Default 1024 (the tables of 2 GiB of 4 KiB pages). It is off with the IOTLB
   * (`Translator.iotlbEnabled`).
   */
  walkCache?: number;
  /** The DDT cache: device contexts by device_id. Default 16 sets × 4 ways, pseudo-LRU. */
  ddt?: CacheGeometry;
  /**
   * The PDT cache: process contexts by device_id and process_id. Default 32 sets × 4 ways,
   * pseudo-LRU.
   */
  pdt?: CacheGeometry;
}

/** A cache geometry with every field set. */
export type ResolvedGeometry = Readonly<Required<CacheGeometry>>;

/** The set-associative caches of an IOMMU. */
export type CacheName = "iotlb" | "ddt" | "pdt";

/** Entries of the micro-TLB unless the `microTlb` option says otherwise. */
export const DEFAULT_MICRO_TLB_ENTRIES = 8;

/** Entries of the walk cache unless the `walkCache` option says otherwise. */
export const DEFAULT_WALK_CACHE_ENTRIES = 1024;

/**
 * The default geometries, sizes a real IOMMU could have: an IOTLB of thousands of entries, 4-way,
 * and context caches of a few dozen devices and a hundred-odd processes.
 */
export const DEFAULT_CACHE_GEOMETRY: Readonly<Record<CacheName, ResolvedGeometry>> = Object
  .freeze({
    iotlb: Object.freeze({ sets: 1024, ways: 4, replacement: "plru" }),
    ddt: Object.freeze({ sets: 16, ways: 4, replacement: "plru" }),
    pdt: Object.freeze({ sets: 32, ways: 4, replacement: "plru" }),
  });

/** Most sets a cache may have (2^22: 4 Mi entries at one way). */
const MAX_SETS = 1 << 22;

function _pow2(n: number, max: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= max && (n & (n - 1)) === 0;
}

/**
 * Fills `opts` from the default of cache `which`; throws `RangeError` on a geometry no hardware
 * could have or the model does not (sets or ways not a power of two, more than 16 ways, an
 * unknown policy).
 */
export function resolveGeometry(which: CacheName, opts: CacheGeometry = {}): ResolvedGeometry {
  const g = { ...DEFAULT_CACHE_GEOMETRY[which], ...opts };
  const what = `Cannot build the IOMMU: the ${which} cache's`;
  if (!_pow2(g.sets, MAX_SETS)) {
    throw new RangeError(`${what} sets ${g.sets} is not a power of two up to ${MAX_SETS}`);
  }
  if (!_pow2(g.ways, 16)) {
    throw new RangeError(`${what} ways ${g.ways} is not a power of two up to 16`);
  }
  if (g.replacement !== "plru" && g.replacement !== "round-robin") {
    throw new RangeError(`${what} replacement "${g.replacement}" is not plru or round-robin`);
  }
  return g;
}

function _entries(what: string, entries: number, max: number): number {
  if (entries !== 0 && !_pow2(entries, max)) {
    throw new RangeError(
      `Cannot build the IOMMU: the ${what}'s ${entries} entries are not 0 or a power of two up to ${max}`,
    );
  }
  return entries;
}

/**
 * The micro-TLB's entries from the `microTlb` option (the default when unset); throws `RangeError`
 * unless it is 0 or a power of two up to 64.
 */
export function resolveMicroTlb(entries: number = DEFAULT_MICRO_TLB_ENTRIES): number {
  return _entries("micro-TLB", entries, 64);
}

/**
 * The walk cache's entries from the `walkCache` option (the default when unset); throws
 * `RangeError` unless it is 0 or a power of two up to 2^20.
 */
export function resolveWalkCache(entries: number = DEFAULT_WALK_CACHE_ENTRIES): number {
  return _entries("walk cache", entries, 1 << 20);
}

/**
 * The bookkeeping every set-associative cache of the IOMMU shares, as the base class of the
 * IOTLB and the DDT/PDT caches (so that a hit reaches it without another object): the geometry,
 * which ways of each set hold entries, and which way a fill takes — an invalid one if any, else
 * the replacement policy's victim. A set's bookkeeping is one word; a hit costs one load and one
 * store ({@linkcode touch}); nothing allocates.
 */
export class SetAssociative {
  /** Number of sets. */
  readonly sets: number;
  /** Ways per set. */
  readonly ways: number;
  /** log2 of {@linkcode ways}. */
  readonly waysLog2: number;
  /** `sets - 1`: the set of an index `i` is `i & setMask`. */
  readonly setMask: number;
  /**
   * Per set one word: bits 15:0 a bit per valid way, bits 31:16 the MRU bits (which
   * round-robin updates too, and never reads: no branch on a hit).
   */
  readonly #s: Int32Array;
  /** Per set: the next way in turn (round-robin). */
  readonly #next: Int32Array;
  /** A word with a bit for each way. */
  readonly #full: number;
  readonly #plru: boolean;

  /** The bookkeeping of a cache of geometry `g`, every way invalid. */
  constructor(g: ResolvedGeometry) {
    this.sets = g.sets;
    this.ways = g.ways;
    this.waysLog2 = Math.log2(g.ways);
    this.setMask = g.sets - 1;
    this.#plru = g.replacement === "plru";
    this.#s = new Int32Array(g.sets);
    this.#next = new Int32Array(this.#plru ? 0 : g.sets);
    this.#full = (1 << g.ways) - 1;
  }

  /** Way `way` of `set` was just used. */
  touch(set: number, way: number): void {
    const s = this.#s;
    const w = s[set];
    const bit = 1 << way;
    const mru = (w >>> 16) | bit;
    // All MRU bits set: only `bit` stays. Arithmetic, not a branch: which way a hit uses is as
    // good as random, and a mispredicted branch costs more than the whole update.
    const all = (mru + 1) >> this.ways;
    s[set] = (w & 0xffff) | ((mru ^ ((mru ^ bit) & -all)) << 16);
  }

  /**
   * The way of `set` a new entry takes — the lowest invalid one, else the policy's victim —
   * now valid and used last.
   */
  fill(set: number): number {
    const s = this.#s;
    const w = s[set];
    const valid = w & 0xffff;
    const full = this.#full;
    let way: number;
    if (valid !== full) way = 31 - Math.clz32(~valid & (valid + 1));
    else if (this.#plru) {
      // The lowest clear MRU bit; a set of one way has none.
      const clear = ~(w >>> 16) & full;
      way = clear === 0 ? 0 : 31 - Math.clz32(clear & -clear);
    } else {
      way = this.#next[set];
      this.#next[set] = (way + 1) & (this.ways - 1);
    }
    const bit = 1 << way;
    const mru = (w >>> 16) | bit;
    const all = (mru + 1) >> this.ways;
    s[set] = valid | bit | ((mru ^ ((mru ^ bit) & -all)) << 16);
    return way;
  }

  /** The way of slot `slot` (set × ways + way) no longer holds an entry. */
  release(slot: number): void {
    this.#s[slot >> this.waysLog2] &= ~(1 << (slot & (this.ways - 1)));
  }

  /** Every way of every set is invalid, and no use is remembered (reset). */
  releaseAll(): void {
    this.#s.fill(0);
    this.#next.fill(0);
  }
}
