/**
 * What the kernel sees of physical memory: the accessors a CPU has on RAM.
 *
 * The machine hands the kernel its bus; tests hand it any object of this shape. Reads of
 * addresses outside RAM return 0 and set {@linkcode PhysMem.fault} to non-zero, as the
 * silicon's bus does.
 *
 * @module
 */

/** CPU-side access to physical memory (little-endian, as RV64 Linux runs). */
export interface PhysMem {
  /** Non-zero when the last access failed (1 access fault, 2 poison). */
  readonly fault: number;
  /** Low unsigned 32 bits of the last {@linkcode PhysMem.load64}. */
  readonly lo: number;
  /** High unsigned 32 bits of the last {@linkcode PhysMem.load64}. */
  readonly hi: number;
  /** Reads 4 bytes. */
  read32(pa: number): number;
  /** Writes 4 bytes. */
  write32(pa: number, value: number): void;
  /** Reads 8 bytes into `lo`/`hi` without allocating. */
  load64(pa: number): void;
  /** Writes 8 bytes given as unsigned 32-bit halves. */
  store64(pa: number, lo: number, hi: number): void;
  /**
   * Atomic 64-bit compare-and-swap (Linux's cmpxchg64; the IOMMU updates PTE A/D bits the same
   * way): stores `newLo`/`newHi` when the value at `pa` equals `expLo`/`expHi`. Returns true on
   * success; the value found is left in `lo`/`hi` either way.
   */
  cas64(pa: number, expLo: number, expHi: number, newLo: number, newHi: number): boolean;
  /** Reads 8 bytes as a `bigint`. */
  read64(pa: number): bigint;
  /** Writes 8 bytes from a `bigint`. */
  write64(pa: number, value: bigint): void;
  /** Copies bytes out of RAM. */
  readBytes(pa: number, len: number): Uint8Array;
  /** Copies `out.length` bytes of RAM at `pa` into `out` without allocating (a memcpy). */
  copyOut(pa: number, out: Uint8Array): void;
  /** Copies bytes into RAM. */
  writeBytes(pa: number, data: Uint8Array): void;
  /** Fills RAM with a byte value. */
  fill(pa: number, len: number, byte?: number): void;
}
