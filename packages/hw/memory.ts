/**
 * The system bus: sparse physical memory made of 4 KiB frames, RAM and MMIO regions, and
 * injectable access faults and poison.
 *
 * Accesses never throw. A read of an address that no region claims, or that an injected fault
 * covers, returns 0 and leaves the reason in {@linkcode PhysicalMemory.fault}; a write there is
 * dropped the same way. The IOMMU model turns those reasons into the spec's access-fault and
 * data-corruption causes; a test can read them directly.
 *
 * Hot paths use the number-only accessors ({@linkcode PhysicalMemory.read32},
 * {@linkcode PhysicalMemory.load64}); the `bigint` accessors are for API edges. Page walks read
 * page-table entries straight from a frame's words ({@linkcode PhysicalMemory.frameWords}), by
 * page number, and fall back to the accessors only where a frame is not plain touched RAM.
 *
 * Frames live in slabs of 16 frames, one buffer per 64 KiB-aligned block of physical addresses
 * with a touched frame: a walk then reads its PTEs through a few slab views that stay in the host's
 * caches, rather than through a view object per table page.
 *
 * @module
 */

import { byteSwap32, byteSwap64, hi32, join64, lo32 } from "./_u64.ts";

/** Size of a frame, the unit in which RAM is allocated on first touch. */
export const PAGE_SIZE = 4096;
/** log2 of {@linkcode PAGE_SIZE}. */
export const PAGE_SHIFT = 12;
/** Frames in a slab: the frames of each 64 KiB-aligned block share one buffer. */
export const SLAB_FRAMES = 16;

/** Outcome of the last access: {@linkcode MEM_OK}, {@linkcode MEM_ACCESS_FAULT} or {@linkcode MEM_POISON}. */
export type MemFault = 0 | 1 | 2;
/** The access completed. */
export const MEM_OK = 0;
/** No region claims the address, or an injected access fault covers it. */
export const MEM_ACCESS_FAULT = 1;
/** The data read is poisoned (an injected uncorrectable error). */
export const MEM_POISON = 2;

/** A device's register window on the bus: 4- and 8-byte accesses at an offset. */
export interface MmioHandler {
  /** Reads 4 bytes at `offset`. */
  read32(offset: number): number;
  /** Writes 4 bytes at `offset`. */
  write32(offset: number, value: number): void;
  /** Reads 8 bytes at `offset`. */
  read64(offset: number): bigint;
  /** Writes 8 bytes at `offset`. */
  write64(offset: number, value: bigint): void;
}

/** A region of the physical address map. */
export interface Region {
  /** First address of the region. */
  readonly base: number;
  /** Size in bytes. */
  readonly size: number;
  /** A name for logs and device trees. */
  readonly name: string;
  /** The device behind an MMIO region; absent for RAM. */
  readonly mmio?: MmioHandler;
}

/** Which accesses an injected fault affects. */
export type FaultOn = "read" | "write" | "both";

interface Injected {
  base: number;
  end: number;
  kind: MemFault;
  on: FaultOn;
}

/**
 * The frame cache's geometry, as a const enum so that its members are literals in the code (a
 * module constant costs a load and a temporal-dead-zone check at every use).
 */
const enum Cache {
  /** Entries (a power of two). */
  SIZE = 1024,
  /** log2 of the frames in a slab. */
  SLAB_SHIFT = 4,
  /** Frames in a slab. */
  SLAB_FRAMES = 16,
  /** Frames from this page number up are not cached (the tags are 32-bit). */
  UNCACHED_PFN = 2 ** 31,
}
/** A Uint32Array reads words in the host's byte order: little-endian on every host Deno runs on. */
const HOST_LE = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * Sparse physical memory and the MMIO routing of a machine.
 *
 * @example Reading back what was written
 * ```ts
 * import assert from "node:assert/strict";
 * import { PhysicalMemory } from "@iommu-lab/hw";
 *
 * const mem = new PhysicalMemory();
 * mem.addRam(0x8000_0000, 64 * 2 ** 30);
 * mem.write64(0x8000_1000, 0x1122_3344_5566_7788n);
 * assert.equal(mem.read32(0x8000_1000), 0x5566_7788);
 * assert.equal(mem.touchedFrames, 1);
 * ```
 */
export class PhysicalMemory {
  /** Why the last access failed, or {@linkcode MEM_OK}. Set by every access. */
  fault: MemFault = MEM_OK;
  /** Low 32 bits (unsigned) of the last {@linkcode load64}. */
  lo = 0;
  /** High 32 bits (unsigned) of the last {@linkcode load64}. */
  hi = 0;

  readonly #frames = new Map<number, DataView>();
  /** The slabs holding the frames, by page number / 16, each as its words. */
  readonly #slabs = new Map<number, Uint32Array>();
  readonly #ram: Region[] = [];
  readonly #mmio: Region[] = [];
  #injected: Injected[] = [];
  // A direct-mapped cache of touched frames in front of the Map: page walks hop between a few
  // table pages, and a Map lookup per PTE was a fifth of the walk's time. A slot's word view is
  // made when a walk first asks for it.
  readonly #cachePfn = new Int32Array(Cache.SIZE).fill(-1);
  readonly #cacheFrame: (DataView | undefined)[] = new Array(Cache.SIZE).fill(undefined);
  readonly #cacheWords: (Uint32Array | undefined)[] = new Array(Cache.SIZE).fill(undefined);

  #lastRam: Region | undefined = undefined;

  /** Number of frames that have been written at least once (RAM actually paid for). */
  get touchedFrames(): number {
    return this.#frames.size;
  }

  /** The RAM regions, lowest first. */
  get ram(): readonly Region[] {
    return this.#ram;
  }

  /** The MMIO regions, lowest first. */
  get mmio(): readonly Region[] {
    return this.#mmio;
  }

  /** Declares `size` bytes of RAM at `base`; frames cost memory only once touched. */
  addRam(base: number, size: number, name = "memory"): Region {
    const r: Region = { base, size, name };
    this.#checkOverlap(r);
    this.#ram.push(r);
    this.#ram.sort((a, b) => a.base - b.base);
    return r;
  }

  /** Routes `[base, base + size)` to `handler`. */
  addMmio(base: number, size: number, handler: MmioHandler, name = "mmio"): Region {
    const r: Region = { base, size, name, mmio: handler };
    this.#checkOverlap(r);
    this.#mmio.push(r);
    this.#mmio.sort((a, b) => a.base - b.base);
    return r;
  }

  /** Removes an MMIO region added by {@linkcode addMmio} (a BAR being moved, say). */
  removeMmio(region: Region): void {
    const i = this.#mmio.indexOf(region);
    if (i >= 0) this.#mmio.splice(i, 1);
  }

  /**
   * Makes accesses to `[base, base + size)` fail: `kind` {@linkcode MEM_ACCESS_FAULT} as a bus
   * error, {@linkcode MEM_POISON} as poisoned data (reads only; writes then succeed).
   */
  injectFault(
    base: number,
    size: number,
    kind: 1 | 2 = MEM_ACCESS_FAULT,
    on: FaultOn = "both",
  ): void {
    this.#injected.push({ base, end: base + size, kind, on });
  }

  /** Removes every injected fault. */
  clearFaults(): void {
    this.#injected = [];
  }

  /** True when `pa` lies in RAM. */
  isRam(pa: number): boolean {
    return this.#ramAt(pa) !== undefined;
  }

  /** The MMIO region claiming `pa`, if any. */
  mmioAt(pa: number): Region | undefined {
    for (const r of this.#mmio) if (pa >= r.base && pa < r.base + r.size) return r;
    return undefined;
  }

  /**
   * The words of the slab holding RAM frame `pfn`: the frame's word `i` (bytes `4i` to `4i + 3`,
   * little-endian) is word `(pfn % SLAB_FRAMES) * 1024 + i`, for a direct read by page number
   * with no address arithmetic; undefined when the general accessors must answer instead: the
   * frame is untouched (it reads as zeros), not RAM, at or above page 2^31, or any fault is
   * injected anywhere.
   */
  frameWords(pfn: number): Uint32Array | undefined {
    if (this.#injected.length !== 0) return undefined;
    const slot = pfn & (Cache.SIZE - 1);
    if (this.#cachePfn[slot] === pfn) {
      const w = this.#cacheWords[slot];
      if (w !== undefined) return w;
    }
    return this.#fillWords(pfn);
  }

  /** Reads a 32-bit value (unsigned), little-endian unless `be`. */
  read32(pa: number, be = false): number {
    this.fault = MEM_OK;
    if (this.#injected.length !== 0 && this.#faulted(pa, 4, false)) return 0;
    const off = pa & 0xfff;
    if (off > 0xffc) return this.#slowRead(pa, 4, be);
    const f = this.#frameFor(pa, false);
    if (f === undefined) {
      if (this.fault !== MEM_OK) return this.#mmioRead32(pa, be);
      return 0;
    }
    return f.getUint32(off, !be);
  }

  /** Writes a 32-bit value, little-endian unless `be`. */
  write32(pa: number, value: number, be = false): void {
    this.fault = MEM_OK;
    if (this.#injected.length !== 0 && this.#faulted(pa, 4, true)) return;
    const off = pa & 0xfff;
    if (off > 0xffc) return this.#slowWrite(pa, 4, value, be);
    const f = this.#frameFor(pa, true);
    if (f === undefined) {
      if (this.fault !== MEM_OK) this.#mmioWrite32(pa, value, be);
      return;
    }
    f.setUint32(off, value >>> 0, !be);
  }

  /**
   * Reads a 64-bit value into {@linkcode lo}/{@linkcode hi} without allocating.
   * Little-endian unless `be` (then the byte at `pa` is the most significant).
   */
  load64(pa: number, be = false): void {
    this.fault = MEM_OK;
    this.lo = 0;
    this.hi = 0;
    if (this.#injected.length !== 0 && this.#faulted(pa, 8, false)) return;
    const off = pa & 0xfff;
    if (off > 0xff8) {
      // Two halves across a frame boundary: a fault on either half is the access's fault.
      const lo = this.#slowRead(pa, 4, false);
      const fault = this.fault;
      const hi = this.#slowRead(pa + 4, 4, false);
      if (fault !== MEM_OK) this.fault = fault;
      if (this.fault !== MEM_OK) return;
      this.lo = lo;
      this.hi = hi;
      if (be) this.#swapLoHi();
      return;
    }
    const f = this.#frameFor(pa, false);
    if (f === undefined) {
      if (this.fault !== MEM_OK) {
        const r = this.mmioAt(pa);
        if (r === undefined) return;
        this.fault = MEM_OK;
        const v = r.mmio!.read64(pa - r.base);
        this.#split(be ? byteSwap64(v) : v);
      }
      return;
    }
    if (be) {
      this.hi = f.getUint32(off, false);
      this.lo = f.getUint32(off + 4, false);
    } else {
      this.lo = f.getUint32(off, true);
      this.hi = f.getUint32(off + 4, true);
    }
  }

  /** Writes a 64-bit value given as two unsigned 32-bit halves. */
  store64(pa: number, lo: number, hi: number, be = false): void {
    this.fault = MEM_OK;
    if (this.#injected.length !== 0 && this.#faulted(pa, 8, true)) return;
    const off = pa & 0xfff;
    if (off > 0xff8) {
      if (this.#ramAt(pa + 7) === undefined) {
        this.fault = MEM_ACCESS_FAULT;
        return;
      }
      this.#slowWrite(pa, 4, be ? hi : lo, be);
      if (this.fault !== MEM_OK) return;
      this.#slowWrite(pa + 4, 4, be ? lo : hi, be);
      return;
    }
    const f = this.#frameFor(pa, true);
    if (f === undefined) {
      const r = this.mmioAt(pa);
      if (r === undefined) return;
      this.fault = MEM_OK;
      const v = join64(lo, hi);
      r.mmio!.write64(pa - r.base, be ? byteSwap64(v) : v);
      return;
    }
    if (be) {
      f.setUint32(off, hi >>> 0, false);
      f.setUint32(off + 4, lo >>> 0, false);
    } else {
      f.setUint32(off, lo >>> 0, true);
      f.setUint32(off + 4, hi >>> 0, true);
    }
  }

  /** Reads a 64-bit value as a `bigint` (API edges; hot paths use {@linkcode load64}). */
  read64(pa: number, be = false): bigint {
    this.load64(pa, be);
    return join64(this.lo, this.hi);
  }

  /** Writes a 64-bit `bigint` value. */
  write64(pa: number, value: bigint, be = false): void {
    this.store64(pa, lo32(value), hi32(value), be);
  }

  /** Reads one byte. */
  read8(pa: number): number {
    return this.#slowRead(pa, 1, false);
  }

  /** Writes one byte. */
  write8(pa: number, value: number): void {
    this.#slowWrite(pa, 1, value, false);
  }

  /** Reads a 16-bit value, little-endian unless `be`. */
  read16(pa: number, be = false): number {
    return this.#slowRead(pa, 2, be);
  }

  /** Writes a 16-bit value, little-endian unless `be`. */
  write16(pa: number, value: number, be = false): void {
    this.#slowWrite(pa, 2, value, be);
  }

  /**
   * Atomic 64-bit compare-and-swap on RAM: when the value at `pa` equals `expLo`/`expHi`,
   * stores `newLo`/`newHi`. Returns true on success; the value found is left in
   * {@linkcode lo}/{@linkcode hi} either way.
   */
  cas64(
    pa: number,
    expLo: number,
    expHi: number,
    newLo: number,
    newHi: number,
    be = false,
  ): boolean {
    this.load64(pa, be);
    if (this.fault !== MEM_OK) return false;
    if (this.lo !== expLo >>> 0 || this.hi !== expHi >>> 0) return false;
    this.store64(pa, newLo, newHi, be);
    return this.fault === MEM_OK;
  }

  /** `bigint` form of {@linkcode cas64}: returns the value found before the swap. */
  cmpxchg64(pa: number, expected: bigint, value: bigint, be = false): bigint {
    this.cas64(
      pa,
      lo32(expected),
      hi32(expected),
      lo32(value),
      hi32(value),
      be,
    );
    return join64(this.lo, this.hi);
  }

  /** Atomic 32-bit OR; returns the old value. */
  or32(pa: number, mask: number, be = false): number {
    const old = this.read32(pa, be);
    if (this.fault !== MEM_OK) return 0;
    this.write32(pa, (old | mask) >>> 0, be);
    return old;
  }

  /** Atomic 64-bit OR of `maskLo`/`maskHi`; the old value is left in {@linkcode lo}/{@linkcode hi}. */
  or64(pa: number, maskLo: number, maskHi: number, be = false): void {
    this.load64(pa, be);
    if (this.fault !== MEM_OK) return;
    const lo = this.lo, hi = this.hi;
    this.store64(pa, (lo | maskLo) >>> 0, (hi | maskHi) >>> 0, be);
    this.lo = lo;
    this.hi = hi;
  }

  /** Copies `len` bytes out of RAM (zeros where a fault was hit; see {@linkcode fault}). */
  readBytes(pa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.copyOut(pa, out);
    return out;
  }

  /**
   * Copies RAM at `pa` into `out[off, off + len)`; stops at the first fault (see
   * {@linkcode fault}). The window arguments let a DMA engine move a page of a larger buffer
   * without making a view of it.
   */
  copyOut(pa: number, out: Uint8Array, off = 0, len: number = out.length - off): void {
    this.fault = MEM_OK;
    let done = 0;
    while (done < len) {
      const a = pa + done;
      const n = Math.min(len - done, PAGE_SIZE - (a & 0xfff));
      if (this.#injected.length !== 0 && this.#faulted(a, n, false)) return;
      if (this.#ramAt(a) === undefined) {
        this.fault = MEM_ACCESS_FAULT;
        return;
      }
      const f = this.#frames.get(Math.floor(a / PAGE_SIZE));
      if (f === undefined) out.fill(0, off + done, off + done + n);
      else out.set(new Uint8Array(f.buffer, f.byteOffset + (a & 0xfff), n), off + done);
      done += n;
    }
  }

  /**
   * Copies `data[off, off + len)` into RAM at `pa`; stops at the first fault (see
   * {@linkcode fault}).
   */
  writeBytes(pa: number, data: Uint8Array, off = 0, len: number = data.length - off): void {
    this.fault = MEM_OK;
    let done = 0;
    while (done < len) {
      const a = pa + done;
      const n = Math.min(len - done, PAGE_SIZE - (a & 0xfff));
      if (this.#injected.length !== 0 && this.#faulted(a, n, true)) return;
      const f = this.#frameFor(a, true);
      if (f === undefined) {
        this.fault = MEM_ACCESS_FAULT;
        return;
      }
      const from = off + done;
      const dst = new Uint8Array(f.buffer, f.byteOffset + (a & 0xfff), n);
      dst.set(from === 0 && n === data.length ? data : data.subarray(from, from + n));
      done += n;
    }
  }

  /** Fills `len` bytes of RAM at `pa` with `byte`; zero-filling an untouched frame is free. */
  fill(pa: number, len: number, byte = 0): void {
    this.fault = MEM_OK;
    let done = 0;
    while (done < len) {
      const a = pa + done;
      const n = Math.min(len - done, PAGE_SIZE - (a & 0xfff));
      if (this.#injected.length !== 0 && this.#faulted(a, n, true)) return;
      if (this.#ramAt(a) === undefined) {
        this.fault = MEM_ACCESS_FAULT;
        return;
      }
      const pfn = Math.floor(a / PAGE_SIZE);
      if (byte === 0 && n === PAGE_SIZE) {
        // The frame goes back to untouched; its part of the slab is zero for the next one.
        const f = this.#frames.get(pfn);
        if (f !== undefined) {
          new Uint8Array(f.buffer, f.byteOffset, PAGE_SIZE).fill(0);
          this.#frames.delete(pfn);
          this.#cachePfn[pfn & (Cache.SIZE - 1)] = -1;
        }
      } else {
        const f = this.#frameFor(a, true)!;
        new Uint8Array(f.buffer, f.byteOffset + (a & 0xfff), n).fill(byte);
      }
      done += n;
    }
  }

  /** Copies `len` bytes from `src` to `dst` inside RAM (a DMA engine's memcpy). */
  copy(dst: number, src: number, len: number): void {
    const tmp = this.readBytes(src, len);
    if (this.fault !== MEM_OK) return;
    this.writeBytes(dst, tmp);
  }

  #checkOverlap(r: Region): void {
    for (const o of [...this.#ram, ...this.#mmio]) {
      if (r.base < o.base + o.size && o.base < r.base + r.size) {
        throw new RangeError(
          `Cannot add region "${r.name}": it overlaps "${o.name}" at 0x${o.base.toString(16)}`,
        );
      }
    }
  }

  #ramAt(pa: number): Region | undefined {
    const last = this.#lastRam;
    if (last !== undefined && pa >= last.base && pa < last.base + last.size) return last;
    for (const r of this.#ram) {
      if (pa >= r.base && pa < r.base + r.size) {
        this.#lastRam = r;
        return r;
      }
    }
    return undefined;
  }

  /**
   * The frame holding `pa`. Returns undefined with `fault` set when `pa` is not RAM (the caller
   * may then try MMIO), or with `fault` clear when the frame is untouched and `alloc` is false
   * (it reads as zeros).
   */
  #frameFor(pa: number, alloc: boolean): DataView | undefined {
    const pfn = Math.floor(pa / PAGE_SIZE);
    const slot = pfn & (Cache.SIZE - 1);
    if (this.#cachePfn[slot] === pfn) return this.#cacheFrame[slot];
    if (this.#ramAt(pa) === undefined) {
      this.fault = MEM_ACCESS_FAULT;
      return undefined;
    }
    let f = this.#frames.get(pfn);
    if (f === undefined) {
      if (!alloc) return undefined;
      const sn = Math.floor(pfn / Cache.SLAB_FRAMES);
      let slab = this.#slabs.get(sn);
      if (slab === undefined) {
        slab = new Uint32Array(Cache.SLAB_FRAMES * PAGE_SIZE / 4);
        this.#slabs.set(sn, slab);
      }
      f = new DataView(slab.buffer, (pfn - sn * Cache.SLAB_FRAMES) * PAGE_SIZE, PAGE_SIZE);
      this.#frames.set(pfn, f);
    }
    if (pfn < Cache.UNCACHED_PFN) {
      this.#cachePfn[slot] = pfn;
      this.#cacheFrame[slot] = f;
      this.#cacheWords[slot] = undefined;
    }
    return f;
  }

  /** {@linkcode frameWords} past a cache miss: caches the frame with its word view. */
  #fillWords(pfn: number): Uint32Array | undefined {
    if (!HOST_LE || !(pfn >= 0 && pfn < Cache.UNCACHED_PFN)) return undefined;
    // Only a frame that is RAM from its first byte to its last: a region may end inside one.
    const base = pfn * PAGE_SIZE;
    const r = this.#ramAt(base);
    if (r === undefined || base + PAGE_SIZE > r.base + r.size) return undefined;
    if (this.#frameFor(base, false) === undefined) return undefined;
    const w = this.#slabs.get(pfn >>> Cache.SLAB_SHIFT)!;
    this.#cacheWords[pfn & (Cache.SIZE - 1)] = w;
    return w;
  }

  #faulted(pa: number, len: number, write: boolean): boolean {
    for (const inj of this.#injected) {
      if (pa < inj.end && inj.base < pa + len) {
        if (inj.on === "both" || (inj.on === "write") === write) {
          if (inj.kind === MEM_POISON && write) continue;
          this.fault = inj.kind;
          return true;
        }
      }
    }
    return false;
  }

  #mmioRead32(pa: number, be: boolean): number {
    const r = this.mmioAt(pa);
    if (r === undefined) return 0;
    this.fault = MEM_OK;
    const v = r.mmio!.read32(pa - r.base) >>> 0;
    return be ? byteSwap32(v) : v;
  }

  #mmioWrite32(pa: number, value: number, be: boolean): void {
    const r = this.mmioAt(pa);
    if (r === undefined) return;
    this.fault = MEM_OK;
    r.mmio!.write32(pa - r.base, be ? byteSwap32(value >>> 0) : value >>> 0);
  }

  /** Byte-wise access for sizes other than 4/8 and for accesses that cross a frame. */
  #slowRead(pa: number, size: number, be: boolean): number {
    this.fault = MEM_OK;
    if (this.#injected.length !== 0 && this.#faulted(pa, size, false)) return 0;
    let v = 0;
    for (let i = 0; i < size; i++) {
      const a = pa + i;
      const f = this.#frameFor(a, false);
      if (f === undefined && this.fault !== MEM_OK) return 0;
      const b = f === undefined ? 0 : f.getUint8(a & 0xfff);
      v += be ? b * 2 ** (8 * (size - 1 - i)) : b * 2 ** (8 * i);
    }
    return v;
  }

  #slowWrite(pa: number, size: number, value: number, be: boolean): void {
    this.fault = MEM_OK;
    if (this.#injected.length !== 0 && this.#faulted(pa, size, true)) return;
    // Nothing is stored unless every byte is RAM.
    if (this.#ramAt(pa) === undefined || this.#ramAt(pa + size - 1) === undefined) {
      this.fault = MEM_ACCESS_FAULT;
      return;
    }
    for (let i = 0; i < size; i++) {
      const a = pa + i;
      const f = this.#frameFor(a, true);
      if (f === undefined) return;
      const shift = be ? 8 * (size - 1 - i) : 8 * i;
      f.setUint8(a & 0xfff, Math.floor(value / 2 ** shift) & 0xff);
    }
  }

  #split(v: bigint): void {
    this.lo = lo32(v);
    this.hi = hi32(v);
  }

  #swapLoHi(): void {
    const lo = this.lo;
    this.lo = byteSwap32(this.hi);
    this.hi = byteSwap32(lo);
  }
}

/** Splits a physical address held in a number into its frame number and offset. */
export function pfnOf(pa: number): number {
  return Math.floor(pa / PAGE_SIZE);
}
