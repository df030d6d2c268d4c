/**
 * An IMSIC-like MSI target (RISC-V AIA §3): one interrupt file of one hart (supervisor level, or
 * a guest file when a machine maps more instances).
 *
 * The file's MMIO page has `seteipnum_le` at offset 0 and `seteipnum_be` at offset 4: a 32-bit
 * write of an identity sets that identity's pending bit (identities 0 and above the file's
 * count are ignored); reads return 0. Everything else is hart CSR state (`eidelivery`,
 * `eithreshold`, `eip*`, `eie*`, `stopei`), which the CPU side reaches through this class's
 * methods rather than MMIO, as a kernel reaches it through `csr_*`.
 *
 * MSIs are edge events: a pending identity stays pending until claimed (`stopei`), however many
 * times it is written. The hart's external interrupt is asserted while `eidelivery` is 1 and
 * `topei` is non-zero; when {@linkcode Imsic.onMsi} is set, the hart takes it after
 * `costs.irqDelivery` ns at the next {@linkcode Clock.advance}: the model claims
 * `topei` (as Linux's IMSIC handler swaps `stopei`) and calls `onMsi(identity)`.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { MmioHandler } from "../memory.ts";
import { byteSwap32, write64Split } from "../_u64.ts";
import { _HartInput } from "./hart.ts";

/** Physical base of hart 0's supervisor-level interrupt file on the `virt` memory map. */
export const IMSIC_S_BASE = 0x2800_0000;
/** Size of one interrupt file's MMIO page. */
export const IMSIC_MMIO_PAGE_SZ = 0x1000;
/** `seteipnum_le`: little-endian identity write. */
export const IMSIC_MMIO_PAGE_LE = 0x00;
/** `seteipnum_be`: big-endian identity write. */
export const IMSIC_MMIO_PAGE_BE = 0x04;
/** `topei` identity shift (bits 26:16; bits 10:0 repeat it as the priority). */
export const IMSIC_TOPEI_ID_SHIFT = 16;

/** Options of {@linkcode Imsic}. */
export interface ImsicOptions {
  /** The machine's clock: deliveries are scheduled on it. */
  clock: Clock;
  /** Number of identities (1..ids); the AIA allows 63..2047, one less than a multiple of 64.
   * Other values are rounded to the nearest legal one. Default 255. */
  ids?: number;
}

/**
 * One IMSIC interrupt file: an MMIO page devices write MSIs to, and the hart's CSR state.
 *
 * @example An MSI to the page becomes an interrupt the CPU side takes once
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock, Imsic, PhysicalMemory } from "@iommu-lab/hw";
 * import { IMSIC_MMIO_PAGE_SZ, IMSIC_S_BASE } from "@iommu-lab/hw/regs";
 *
 * const clock = new Clock();
 * const mem = new PhysicalMemory();
 * const imsic = new Imsic({ clock });
 * mem.addMmio(IMSIC_S_BASE, IMSIC_MMIO_PAGE_SZ, imsic, "imsic");
 * imsic.eidelivery = 1;
 * imsic.enable(42);
 * const got: number[] = [];
 * imsic.onMsi = (id) => got.push(id);
 * mem.write32(IMSIC_S_BASE, 42); // a device's MSI write
 * mem.write32(IMSIC_S_BASE, 42); // a second one before it is taken merges
 * clock.advance(10_000);
 * assert.deepEqual(got, [42]);
 * ```
 */
export class Imsic implements MmioHandler {
  /** Number of identities (1..ids). */
  readonly ids: number;

  readonly #hart: _HartInput;
  readonly #pending: Uint32Array;
  readonly #enabled: Uint32Array;
  #eidelivery = 0;
  #eithreshold = 0;
  #onMsi: ((identity: number) => void) | undefined;

  /** Creates a file with nothing pending or enabled and delivery off, as after reset. */
  constructor(opts: ImsicOptions) {
    const want = Math.max(63, Math.min(2047, opts.ids ?? 255));
    this.ids = Math.round((want + 1) / 64) * 64 - 1;
    const words = (this.ids + 1) >>> 5;
    this.#pending = new Uint32Array(words);
    this.#enabled = new Uint32Array(words);
    this.#hart = new _HartInput(opts.clock, () => this.#take());
  }

  /** The CPU side's handler: called with the claimed identity when the hart takes an MSI. */
  get onMsi(): ((identity: number) => void) | undefined {
    return this.#onMsi;
  }

  set onMsi(fn: ((identity: number) => void) | undefined) {
    this.#onMsi = fn;
    this.#update();
  }

  /** `eidelivery`: 1 delivers interrupts to the hart, 0 holds them (other values read 0). */
  get eidelivery(): number {
    return this.#eidelivery;
  }

  set eidelivery(v: number) {
    this.#eidelivery = v === 1 ? 1 : 0;
    this.#update();
  }

  /** `eithreshold`: only identities below it are delivered (0: all). */
  get eithreshold(): number {
    return this.#eithreshold;
  }

  set eithreshold(v: number) {
    this.#eithreshold = Number.isInteger(v) && v >= 0 && v <= this.ids ? v : 0;
    this.#update();
  }

  /** Sets `eie` for `identity` (out-of-range identities are ignored). */
  enable(identity: number): void {
    this.#set(this.#enabled, identity, true);
  }

  /** Clears `eie` for `identity`. */
  disable(identity: number): void {
    this.#set(this.#enabled, identity, false);
  }

  /** True when `identity` is enabled. */
  isEnabled(identity: number): boolean {
    return this.#get(this.#enabled, identity);
  }

  /** True when `identity` is pending. */
  isPending(identity: number): boolean {
    return this.#get(this.#pending, identity);
  }

  /** Sets `eip` for `identity`: what a `seteipnum` write does. */
  setPending(identity: number): void {
    this.#set(this.#pending, identity, true);
  }

  /** Clears `eip` for `identity` (a CSR write; an MSI cannot do this). */
  clearPending(identity: number): void {
    this.#set(this.#pending, identity, false);
  }

  /** `topei`: the lowest pending-and-enabled identity below the threshold, encoded, or 0. */
  topei(): number {
    for (let w = 0; w < this.#pending.length; w++) {
      const bits = this.#pending[w] & this.#enabled[w];
      if (bits === 0) continue;
      const id = w * 32 + 31 - Math.clz32(bits & -bits);
      if (this.#eithreshold !== 0 && id >= this.#eithreshold) return 0;
      return ((id << IMSIC_TOPEI_ID_SHIFT) | id) >>> 0;
    }
    return 0;
  }

  /** A write to `stopei`: clears the pending bit of `topei`'s identity and returns it (0: none). */
  claim(): number {
    const id = this.topei() >>> IMSIC_TOPEI_ID_SHIFT;
    if (id !== 0) this.#set(this.#pending, id, false);
    return id;
  }

  /** The page reads as zeros. */
  read32(_offset: number): number {
    return 0;
  }

  /** `seteipnum_le` at 0 and `seteipnum_be` at 4; other offsets ignore writes. */
  write32(offset: number, value: number): void {
    if (offset === IMSIC_MMIO_PAGE_LE) this.setPending(value >>> 0);
    else if (offset === IMSIC_MMIO_PAGE_BE) this.setPending(byteSwap32(value >>> 0));
  }

  /** The page reads as zeros. */
  read64(_offset: number): bigint {
    return 0n;
  }

  /** Two 4-byte writes, low word first. */
  write64(offset: number, value: bigint): void {
    write64Split(this, offset, value);
  }

  #get(arr: Uint32Array, id: number): boolean {
    return Number.isInteger(id) && id >= 1 && id <= this.ids &&
      (arr[id >>> 5] & (1 << (id & 31))) !== 0;
  }

  #set(arr: Uint32Array, id: number, on: boolean): void {
    if (!Number.isInteger(id) || id < 1 || id > this.ids) return;
    if (on) arr[id >>> 5] |= 1 << (id & 31);
    else arr[id >>> 5] &= ~(1 << (id & 31));
    this.#update();
  }

  #update(): void {
    if (this.#onMsi !== undefined && this.#eidelivery === 1 && this.topei() !== 0) {
      this.#hart.kick();
    }
  }

  #take(): void {
    if (this.#eidelivery !== 1) return;
    const id = this.claim();
    if (id !== 0) this.#onMsi?.(id);
    this.#update();
  }
}
