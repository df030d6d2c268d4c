/**
 * The silicon's private home for 64-bit values held as two 32-bit halves: registers and
 * in-memory structures are 64-bit, JavaScript numbers are exact only below 2^53, and hot paths
 * keep halves as numbers (no `bigint`). Not exported by `@iommu-lab/hw`.
 *
 * @module
 */

/** 2^32: the weight of a high half. */
export const TWO32 = 4294967296;

/** Low 32 bits (unsigned) of a non-negative integer below 2^53. */
export function loOf(n: number): number {
  return n % TWO32 >>> 0;
}

/** High 32 bits (unsigned) of a non-negative integer below 2^53. */
export function hiOf(n: number): number {
  return Math.floor(n / TWO32) >>> 0;
}

/** `hi * 2^32 + lo` as a number (exact below 2^53). */
export function toNumber64(lo: number, hi: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0);
}

/** Number form of a 64-bit value's low half. */
export function lo32(v: bigint): number {
  return Number(v & 0xffff_ffffn);
}

/** Number form of a 64-bit value's high half. */
export function hi32(v: bigint): number {
  return Number(v >> 32n & 0xffff_ffffn);
}

/** Joins two unsigned 32-bit halves into a `bigint` (API edges only). */
export function join64(lo: number, hi: number): bigint {
  return BigInt(hi >>> 0) << 32n | BigInt(lo >>> 0);
}

/** Reverses the bytes of a 32-bit value. */
export function byteSwap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

/** Reverses the bytes of a 64-bit value. */
export function byteSwap64(v: bigint): bigint {
  return join64(byteSwap32(hi32(v)), byteSwap32(lo32(v)));
}

/** An 8-byte read of a device whose registers are 32-bit: two 4-byte reads, low word first. */
export function read64Split(dev: { read32(offset: number): number }, offset: number): bigint {
  const lo = dev.read32(offset);
  return join64(lo, dev.read32(offset + 4));
}

/** An 8-byte write to a device whose registers are 32-bit: two 4-byte writes, low word first. */
export function write64Split(
  dev: { write32(offset: number, value: number): void },
  offset: number,
  value: bigint,
): void {
  dev.write32(offset, lo32(value));
  dev.write32(offset + 4, hi32(value));
}
