/**
 * A sparse RAM that implements {@linkcode PhysMem} for software-side tests, which may not
 * import the silicon. Addresses outside `[base, base + size)` fault as the real bus does.
 *
 * @module
 */
import type { PhysMem } from "./phys.ts";

/**
 * Sparse test RAM: 4 KiB frames allocated on first write.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 30);
 * ram.write64(0x8000_0008, 0x1_0000_0002n);
 * ram.load64(0x8000_0008);
 * assert.deepEqual([ram.lo, ram.hi], [2, 1]);
 * ```
 */
export class TestRam implements PhysMem {
  /** Non-zero when the last access fell outside the RAM. */
  fault = 0;
  /** Low half of the last {@linkcode load64}. */
  lo = 0;
  /** High half of the last {@linkcode load64}. */
  hi = 0;
  readonly #frames = new Map<number, DataView>();

  /** Declares `size` bytes of RAM at `base`. */
  constructor(readonly base: number, readonly size: number) {}

  /** Number of frames written so far. */
  get touchedFrames(): number {
    return this.#frames.size;
  }

  #frame(pa: number, alloc: boolean): DataView | undefined {
    this.fault = pa >= this.base && pa < this.base + this.size ? 0 : 1;
    if (this.fault !== 0) return undefined;
    const pfn = Math.floor(pa / 4096);
    let f = this.#frames.get(pfn);
    if (f === undefined && alloc) {
      f = new DataView(new ArrayBuffer(4096));
      this.#frames.set(pfn, f);
    }
    return f;
  }

  /** Reads 4 bytes (little-endian). */
  read32(pa: number): number {
    return this.#frame(pa, false)?.getUint32(pa & 0xfff, true) ?? 0;
  }

  /** Writes 4 bytes (little-endian). */
  write32(pa: number, value: number): void {
    this.#frame(pa, true)?.setUint32(pa & 0xfff, value >>> 0, true);
  }

  /** Reads 8 bytes into `lo`/`hi`. */
  load64(pa: number): void {
    const f = this.#frame(pa, false);
    this.lo = f?.getUint32(pa & 0xfff, true) ?? 0;
    this.hi = f?.getUint32((pa & 0xfff) + 4, true) ?? 0;
  }

  /** Writes 8 bytes given as halves. */
  store64(pa: number, lo: number, hi: number): void {
    const f = this.#frame(pa, true);
    f?.setUint32(pa & 0xfff, lo >>> 0, true);
    f?.setUint32((pa & 0xfff) + 4, hi >>> 0, true);
  }

  /** Atomic 64-bit compare-and-swap; the value found is left in `lo`/`hi`. */
  cas64(pa: number, expLo: number, expHi: number, newLo: number, newHi: number): boolean {
    this.load64(pa);
    if (this.fault !== 0 || this.lo !== expLo >>> 0 || this.hi !== expHi >>> 0) return false;
    this.store64(pa, newLo, newHi);
    return true;
  }

  /** Reads 8 bytes as a bigint. */
  read64(pa: number): bigint {
    this.load64(pa);
    return BigInt(this.hi) << 32n | BigInt(this.lo);
  }

  /** Writes 8 bytes from a bigint. */
  write64(pa: number, value: bigint): void {
    this.store64(pa, Number(value & 0xffff_ffffn), Number(value >> 32n & 0xffff_ffffn));
  }

  /** Copies bytes out. */
  readBytes(pa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const f = this.#frame(pa + i, false);
      if (this.fault !== 0) break;
      out[i] = f?.getUint8((pa + i) & 0xfff) ?? 0;
    }
    return out;
  }

  /** Copies bytes out into `out`, a frame at a time; stops at the first fault. */
  copyOut(pa: number, out: Uint8Array): void {
    let done = 0;
    while (done < out.length) {
      const a = pa + done;
      const n = Math.min(out.length - done, 4096 - (a & 0xfff));
      const f = this.#frame(a, false);
      if (this.fault !== 0) return;
      if (f === undefined) out.fill(0, done, done + n);
      else out.set(new Uint8Array(f.buffer, a & 0xfff, n), done);
      done += n;
    }
  }

  /** Copies bytes in, a frame at a time. */
  writeBytes(pa: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const a = pa + done;
      const n = Math.min(data.length - done, 4096 - (a & 0xfff));
      const f = this.#frame(a, true);
      if (f === undefined) return;
      new Uint8Array(f.buffer, a & 0xfff, n).set(data.subarray(done, done + n));
      done += n;
    }
  }

  /** Fills bytes, a frame at a time; zeroing a frame never written allocates nothing. */
  fill(pa: number, len: number, byte = 0): void {
    let done = 0;
    while (done < len) {
      const a = pa + done;
      const n = Math.min(len - done, 4096 - (a & 0xfff));
      const f = this.#frame(a, byte !== 0);
      if (this.fault !== 0) return;
      if (f !== undefined) new Uint8Array(f.buffer, a & 0xfff, n).fill(byte);
      done += n;
    }
  }
}
