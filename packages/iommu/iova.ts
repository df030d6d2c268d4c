/**
 * The IOVA allocator: disjoint page-frame ranges allocated top-down below a limit, with
 * per-size caches ("rcaches") so DMA map/unmap pairs cost O(1) amortised.
 *
 * Mirrors drivers/iommu/iova.c: ranges live in a search tree; `allocIova()` scans gaps
 * downwards from a cached position (the last allocation), and `allocIovaFast()` /
 * `freeIovaFast()` go through magazines of recently freed pfns for sizes up to
 * 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) pages. Cached pfns stay allocated in the tree until a
 * magazine overflows the depot or {@linkcode IovaDomain.put} runs.
 *
 * Everything here counts in pfns of the domain's granule, kept as plain numbers.
 *
 * @module
 */
import { Errno, hex } from "@iommu-lab/kernel";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/** Sizes of 2^0 .. 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) pages are cached. Mirrors iova.c. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** Pfns per magazine. Mirrors IOVA_MAG_SIZE. */
export const IOVA_MAG_SIZE = 127;
/** Full magazines kept in a size's depot before they are returned to the tree. */
export const MAX_GLOBAL_MAGS = 32;

/** An allocated range of pfns, inclusive at both ends. Mirrors struct iova. */
export interface Iova {
  /** First pfn. */
  readonly pfnLo: number;
  /** Last pfn. */
  readonly pfnHi: number;
}

class _Node implements Iova {
  left: _Node | null = null;
  right: _Node | null = null;
  constructor(readonly pfnLo: number, readonly pfnHi: number, readonly prio: number) {}
}

class _Magazine {
  size = 0;
  readonly pfns = new Float64Array(IOVA_MAG_SIZE);

  get full(): boolean {
    return this.size === IOVA_MAG_SIZE;
  }

  /** Pops a pfn whose range ends below `limitPfn`, or returns 0. Mirrors iova_magazine_pop(). */
  pop(limitPfn: number): number {
    for (let i = this.size - 1; i >= 0; i--) {
      const pfn = this.pfns[i];
      if (pfn <= limitPfn) {
        this.pfns[i] = this.pfns[--this.size];
        return pfn;
      }
    }
    return 0;
  }
}

class _Rcache {
  loaded = new _Magazine();
  prev = new _Magazine();
  readonly depot: _Magazine[] = [];
}

/**
 * One IOVA space. Mirrors struct iova_domain with its rcaches.
 *
 * @example Allocating top-down and freeing through the cache
 * ```ts
 * import assert from "node:assert/strict";
 * import { IovaDomain } from "@iommu-lab/iommu";
 *
 * const iovad = new IovaDomain(4096, 1);
 * const pfn = iovad.allocIovaFast(1, 0xfffff, true);
 * assert.equal(pfn, 0xfffff);
 * iovad.freeIovaFast(pfn, 1);
 * assert.equal(iovad.allocIovaFast(1, 0xfffff, true), pfn);
 * ```
 */
export class IovaDomain {
  /** Bytes per pfn (the smallest IOMMU page size). */
  readonly granule: number;
  /** log2 of {@linkcode IovaDomain.granule}. */
  readonly shift: number;
  /** Lowest pfn handed out (pfn 0 never is: 0 means failure). */
  readonly startPfn: number;
  #root: _Node | null = null;
  #count = 0;
  /**
   * Exclusive upper bounds of the first scan: below the last allocation with a limit above
   * 4 GiB, and below the last one with a 32-bit limit. Mirror cached_node and cached32_node.
   */
  #cachedHigh = Infinity;
  #cached32High = Infinity;
  /** Pfn of the 4 GiB boundary. Mirrors dma_32bit_pfn. */
  readonly #dma32Pfn: number;
  /** Treap priorities, seeded per instance so runs replay. */
  readonly #prio = xoroshiro128plus(0x2545f491);
  readonly #rcaches: _Rcache[] = [];

  /** Creates an empty space of `granule`-byte pfns from `startPfn`. Mirrors init_iova_domain(). */
  constructor(granule: number, startPfn: number) {
    if (!Number.isInteger(granule) || granule < 1 || (granule & (granule - 1)) !== 0) {
      throw new Errno("EINVAL", `IOVA granule ${granule} is not a power of two`);
    }
    if (!Number.isSafeInteger(startPfn) || startPfn < 1) {
      throw new Errno("EINVAL", `IOVA start pfn ${startPfn} must be at least 1`);
    }
    this.granule = granule;
    this.shift = Math.log2(granule);
    this.startPfn = startPfn;
    this.#dma32Pfn = 2 ** 32 / granule;
    for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) this.#rcaches.push(new _Rcache());
  }

  /** Number of ranges in the tree, cached ones included. */
  get rangeCount(): number {
    return this.#count;
  }

  /**
   * Allocates `size` pfns ending at or below `limitPfn`, as high as a gap allows.
   *
   * With `sizeAligned` the start is aligned to the size rounded up to a power of two.
   * Returns null when no gap fits. Mirrors alloc_iova().
   */
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): Iova | null {
    if (!Number.isSafeInteger(size) || size < 1) return null;
    const align = sizeAligned ? roundup_pow_of_two(size) : 1;
    const is32 = limitPfn <= this.#dma32Pfn;
    const end = Math.min(limitPfn + 1, is32 ? this.#cached32High : this.#cachedHigh);
    let lo = this.#scanDown(end, size, align);
    if (lo < 0 && end <= limitPfn) lo = this.#scanDown(limitPfn + 1, size, align);
    if (lo < 0) return null;
    const node = new _Node(lo, lo + size - 1, this.#prio.next());
    this.#root = _insert(this.#root, node);
    this.#count++;
    if (is32) this.#cached32High = lo;
    else this.#cachedHigh = lo;
    return node;
  }

  /** Finds the range containing `pfn`. Mirrors find_iova(). */
  findIova(pfn: number): Iova | null {
    let n = this.#root;
    while (n !== null) {
      if (pfn < n.pfnLo) n = n.left;
      else if (pfn > n.pfnHi) n = n.right;
      else return n;
    }
    return null;
  }

  /** Frees the range that starts at `pfn`; false if none does. Mirrors free_iova(). */
  freeIova(pfn: number): boolean {
    const n = this.findIova(pfn);
    if (n === null || n.pfnLo !== pfn) return false;
    this.#root = _remove(this.#root, n.pfnLo);
    this.#count--;
    // Let the next scan start just above the hole, as Linux moves cached_node to rb_next().
    if (n.pfnLo >= this.#cachedHigh || n.pfnLo >= this.#cached32High) {
      const next = this.#firstFrom(n.pfnHi + 1)?.pfnLo ?? Infinity;
      if (n.pfnLo >= this.#cachedHigh) this.#cachedHigh = next;
      if (n.pfnLo >= this.#cached32High) this.#cached32High = next;
    }
    return true;
  }

  /**
   * Allocates `size` pfns below `limitPfn`, from the rcache when the size is cached.
   *
   * Sizes below 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) are rounded up to a power of two so they can
   * be cached. With `flushRcache`, a failed tree allocation returns every cached pfn to the
   * tree and retries once. Returns the first pfn, or 0 on failure. Mirrors alloc_iova_fast().
   */
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean): number {
    size = this.fastSize(size);
    const pfn = this.#rcacheGet(size, limitPfn);
    if (pfn !== 0) return pfn;
    let iova = this.allocIova(size, limitPfn, true);
    if (iova === null && flushRcache) {
      this.#flushRcaches();
      iova = this.allocIova(size, limitPfn, true);
    }
    return iova === null ? 0 : iova.pfnLo;
  }

  /** The pfns {@linkcode allocIovaFast} really allocates for a request of `size`. */
  fastSize(size: number): number {
    return size < 1 << (IOVA_RANGE_CACHE_MAX_SIZE - 1) ? roundup_pow_of_two(size) : size;
  }

  /** Frees what {@linkcode allocIovaFast} returned, into the rcache if it fits. Mirrors free_iova_fast(). */
  freeIovaFast(pfn: number, size: number): void {
    if (this.#rcacheInsert(pfn, size)) return;
    if (!this.freeIova(pfn)) {
      throw new Errno("EINVAL", `Freeing IOVA pfn ${hex(pfn)} that is not allocated`);
    }
  }

  /** Releases every cached pfn and every range. Mirrors put_iova_domain(). */
  put(): void {
    this.#flushRcaches();
    this.#root = null;
    this.#count = 0;
    this.#cachedHigh = Infinity;
    this.#cached32High = Infinity;
  }

  /** Highest free `size`-pfn block below `end` (exclusive) at `align`, or -1. */
  #scanDown(end: number, size: number, align: number): number {
    for (;;) {
      const n = this.#lastBelow(end);
      if (n !== null && n.pfnHi >= end) {
        end = n.pfnLo;
        continue;
      }
      const floor = Math.max(this.startPfn, n === null ? 0 : n.pfnHi + 1);
      const lo = Math.floor((end - size) / align) * align;
      if (lo >= floor) return lo;
      if (n === null || n.pfnLo <= this.startPfn) return -1;
      end = n.pfnLo;
    }
  }

  /** The range with the greatest start below `end`. */
  #lastBelow(end: number): _Node | null {
    let best: _Node | null = null;
    let n = this.#root;
    while (n !== null) {
      if (n.pfnLo < end) {
        best = n;
        n = n.right;
      } else {
        n = n.left;
      }
    }
    return best;
  }

  /** The range with the least start at or above `pfn`. */
  #firstFrom(pfn: number): _Node | null {
    let best: _Node | null = null;
    let n = this.#root;
    while (n !== null) {
      if (n.pfnLo >= pfn) {
        best = n;
        n = n.left;
      } else {
        n = n.right;
      }
    }
    return best;
  }

  #rcacheGet(size: number, limitPfn: number): number {
    const log = order_base_2(size);
    if (log >= IOVA_RANGE_CACHE_MAX_SIZE) return 0;
    const rc = this.#rcaches[log];
    // A cached pfn must end at or below the limit: pop() compares the start.
    const lim = limitPfn - size + 1;
    let pfn = rc.loaded.pop(lim);
    if (pfn !== 0) return pfn;
    if (rc.prev.size !== 0) {
      pfn = rc.prev.pop(lim);
      if (pfn !== 0) {
        [rc.loaded, rc.prev] = [rc.prev, rc.loaded];
        return pfn;
      }
    }
    for (let i = rc.depot.length - 1; i >= 0; i--) {
      pfn = rc.depot[i].pop(lim);
      if (pfn !== 0) {
        const mag = rc.depot[i];
        rc.depot[i] = rc.loaded;
        rc.loaded = mag;
        if (rc.depot[i].size === 0) rc.depot.splice(i, 1);
        return pfn;
      }
    }
    return 0;
  }

  #rcacheInsert(pfn: number, size: number): boolean {
    const log = order_base_2(size);
    if (log >= IOVA_RANGE_CACHE_MAX_SIZE) return false;
    const rc = this.#rcaches[log];
    if (rc.loaded.full) {
      if (!rc.prev.full) {
        [rc.loaded, rc.prev] = [rc.prev, rc.loaded];
      } else if (rc.depot.length < MAX_GLOBAL_MAGS) {
        rc.depot.push(rc.loaded);
        rc.loaded = new _Magazine();
      } else {
        this.#magazineFree(rc.loaded);
      }
    }
    rc.loaded.pfns[rc.loaded.size++] = pfn;
    return true;
  }

  #magazineFree(mag: _Magazine): void {
    for (let i = 0; i < mag.size; i++) this.freeIova(mag.pfns[i]);
    mag.size = 0;
  }

  #flushRcaches(): void {
    for (const rc of this.#rcaches) {
      this.#magazineFree(rc.loaded);
      this.#magazineFree(rc.prev);
      for (const mag of rc.depot) this.#magazineFree(mag);
      rc.depot.length = 0;
    }
  }
}

/** The power of two at or above n. Mirrors roundup_pow_of_two(). */
function roundup_pow_of_two(n: number): number {
  return 2 ** order_base_2(n);
}

/** ceil(log2(n)). Mirrors order_base_2(). */
function order_base_2(n: number): number {
  if (n <= 1) return 0;
  return n <= 0x8000_0000 ? 32 - Math.clz32(n - 1) : Math.ceil(Math.log2(n));
}

/** Treap insert keyed by pfnLo (ranges never overlap). */
function _insert(root: _Node | null, node: _Node): _Node {
  if (root === null) return node;
  if (node.pfnLo < root.pfnLo) {
    root.left = _insert(root.left, node);
    if (root.left.prio > root.prio) return _rotateRight(root);
  } else {
    root.right = _insert(root.right, node);
    if (root.right.prio > root.prio) return _rotateLeft(root);
  }
  return root;
}

function _remove(root: _Node | null, pfnLo: number): _Node | null {
  if (root === null) return null;
  if (pfnLo < root.pfnLo) {
    root.left = _remove(root.left, pfnLo);
  } else if (pfnLo > root.pfnLo) {
    root.right = _remove(root.right, pfnLo);
  } else {
    return _merge(root.left, root.right);
  }
  return root;
}

function _merge(a: _Node | null, b: _Node | null): _Node | null {
  if (a === null) return b;
  if (b === null) return a;
  if (a.prio > b.prio) {
    a.right = _merge(a.right, b);
    return a;
  }
  b.left = _merge(a, b.left);
  return b;
}

function _rotateRight(n: _Node): _Node {
  const l = n.left!;
  n.left = l.right;
  l.right = n;
  return l;
}

function _rotateLeft(n: _Node): _Node {
  const r = n.right!;
  n.right = r.left;
  r.left = n;
  return r;
}
