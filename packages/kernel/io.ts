/**
 * MMIO: `IoMem` regions a bus hands to drivers, the `readl`/`writel`/`readq`/`writeq`
 * accessors, poll-with-timeout helpers on simulated time, and a recorder that logs every access.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import type { Kernel } from "./kernel.ts";
import { type Clock, NSEC_PER_USEC } from "./time.ts";
import { hex } from "./vsprintf.ts";

/**
 * A device's register window: the same shape as the silicon's `MmioHandler`, so the machine
 * can pass a device model directly. Offsets are bytes from the window's start.
 */
export interface MmioBackend {
  /** Reads 4 bytes at `offset`. */
  read32(offset: number): number;
  /** Writes 4 bytes at `offset`. */
  write32(offset: number, value: number): void;
  /** Reads 8 bytes at `offset`. */
  read64(offset: number): bigint;
  /** Writes 8 bytes at `offset`. */
  write64(offset: number, value: bigint): void;
}

/**
 * Finds the registers behind physical range `[phys, phys + size)`: the backend and the offset
 * of `phys` inside it, or null when nothing decodes there. Supplied by the machine.
 */
export type IoremapFn = (
  phys: number,
  size: number,
) => { backend: MmioBackend; offset: number } | null;

/**
 * A mapped MMIO region (`void __iomem *`): accesses at offsets within `size` go to the backend.
 *
 * @example Accessing registers through an IoMem
 * ```ts
 * import assert from "node:assert/strict";
 * import { IoMem, MmioRecorder, readl, SimClock, writel } from "@iommu-lab/kernel";
 *
 * const regs = new Map<number, number>();
 * const rec = new MmioRecorder({
 *   read32: (o) => regs.get(o) ?? 0,
 *   write32: (o, v) => void regs.set(o, v),
 *   read64: () => 0n,
 *   write64: () => {},
 * });
 * const io = new IoMem(rec, 0x1000, new SimClock());
 * writel(io, 0x48, 1);
 * assert.equal(readl(io, 0x48), 1);
 * assert.deepEqual(rec.accesses, [
 *   { op: "w", size: 4, offset: 0x48, value: 1 },
 *   { op: "r", size: 4, offset: 0x48, value: 1 },
 * ]);
 * ```
 */
export class IoMem {
  /** Creates a window of `size` bytes on `backend` starting at backend offset `base`. */
  constructor(
    readonly backend: MmioBackend,
    readonly size: number,
    readonly clock: Clock,
    readonly base = 0,
    readonly phys = 0,
  ) {}

  /**
   * The backend offset of `offset`; EINVAL outside the window (a driver bug).
   * @ignore package-private
   */
  _at(offset: number, len: number): number {
    if (!(offset >= 0 && offset + len <= this.size)) {
      throw new Errno("EINVAL", `MMIO access at ${hex(offset)} outside the region`);
    }
    return this.base + offset;
  }
}

/**
 * Mirrors ioremap(): maps the registers at `[phys, phys + size)` through the kernel's
 * {@linkcode IoremapFn}; `ENOMEM` when nothing decodes there (C returns NULL).
 */
export function ioremap(kernel: Kernel, phys: number, size: number): IoMem {
  const hit = kernel.ioremapFn?.(phys, size) ?? null;
  if (hit === null) {
    throw new Errno("ENOMEM", `Cannot ioremap ${hex(phys)}+${hex(size)}`);
  }
  return new IoMem(hit.backend, size, kernel.clock, hit.offset, phys);
}

/** Mirrors readl(). */
export function readl(io: IoMem, offset: number): number {
  return io.backend.read32(io._at(offset, 4)) >>> 0;
}

/** Mirrors writel(). */
export function writel(io: IoMem, offset: number, value: number): void {
  io.backend.write32(io._at(offset, 4), value >>> 0);
}

/** Mirrors readq(). */
export function readq(io: IoMem, offset: number): bigint {
  return BigInt.asUintN(64, io.backend.read64(io._at(offset, 8)));
}

/** Mirrors writeq(). */
export function writeq(io: IoMem, offset: number, value: bigint): void {
  io.backend.write64(io._at(offset, 8), BigInt.asUintN(64, value));
}

/** Mirrors readl_relaxed() (ordering is always strict in this model). */
export const readl_relaxed = readl;
/** Mirrors writel_relaxed(). */
export const writel_relaxed = writel;
/** Mirrors readq_relaxed(). */
export const readq_relaxed = readq;
/** Mirrors writeq_relaxed(). */
export const writeq_relaxed = writeq;

/** The `-ETIMEDOUT` of a poll helper, carrying the last value read (the C macro's `val`). */
export class PollTimeout<T> extends Errno {
  /** The value read last, after the deadline. */
  readonly value: T;

  /** Creates the timeout error for a poll that last read `value`. */
  constructor(value: T, message: string) {
    super("ETIMEDOUT", message);
    this.value = value;
  }
}

/**
 * Mirrors read_poll_timeout(): calls `op` until `cond` holds, letting `delayUs` of simulated time
 * pass between reads (at least 1 µs, so a device scheduled on the clock can progress). After
 * `timeoutUs` it reads once more and throws {@linkcode PollTimeout} unless `cond` then holds.
 * Returns the value that satisfied `cond`.
 *
 * @example Waiting for a BUSY bit to clear
 * ```ts
 * import assert from "node:assert/strict";
 * import { read_poll_timeout, SimClock } from "@iommu-lab/kernel";
 *
 * const clock = new SimClock();
 * const busyUntil = 25_000; // ns
 * const v = read_poll_timeout(clock, () => (clock.now() < busyUntil ? 1 : 0), (x) => x === 0, 10, 1000);
 * assert.equal(v, 0);
 * assert.equal(clock.now(), 30_000);
 * ```
 */
export function read_poll_timeout<T>(
  clock: Clock,
  op: () => T,
  cond: (v: T) => boolean,
  delayUs: number,
  timeoutUs: number,
): T {
  return _poll(clock, op, cond, delayUs, timeoutUs, false);
}

/**
 * read_poll_timeout() with exponential backoff: the delay between reads starts at `delayUs` (at
 * least 1 µs) and doubles up to 1/1024 of `timeoutUs`. Linux has no twin: a real CPU spins
 * cheaply, while here each read costs real time, so a device that never answers is given up on
 * after about a thousand reads instead of millions, and a quick one is still seen within twice its
 * latency. Same contract as {@linkcode read_poll_timeout} (a last read after the deadline, then
 * {@linkcode PollTimeout}).
 *
 * @example A 90 s timeout against a stuck bit costs about a thousand reads
 * ```ts
 * import assert from "node:assert/strict";
 * import { PollTimeout, read_poll_timeout_backoff, SimClock } from "@iommu-lab/kernel";
 *
 * const clock = new SimClock();
 * let reads = 0;
 * const stuck = () => (reads++, 1);
 * assert.throws(() => read_poll_timeout_backoff(clock, stuck, (v) => v === 0, 0, 90e6), PollTimeout);
 * assert.ok(clock.now() >= 90e9 && reads < 1100, `${reads} reads`);
 * ```
 */
export function read_poll_timeout_backoff<T>(
  clock: Clock,
  op: () => T,
  cond: (v: T) => boolean,
  delayUs: number,
  timeoutUs: number,
): T {
  return _poll(clock, op, cond, delayUs, timeoutUs, true);
}

function _poll<T>(
  clock: Clock,
  op: () => T,
  cond: (v: T) => boolean,
  delayUs: number,
  timeoutUs: number,
  backoff: boolean,
): T {
  if (!(timeoutUs > 0) || !(delayUs >= 0)) {
    throw new Errno("EINVAL", `Cannot poll with delay ${delayUs} us and timeout ${timeoutUs} us`);
  }
  const deadline = clock.now() + timeoutUs * NSEC_PER_USEC;
  let stepUs = Math.max(delayUs, 1);
  const capUs = backoff ? Math.max(stepUs, timeoutUs / 1024) : stepUs;
  for (;;) {
    let v = op();
    if (cond(v)) return v;
    if (clock.now() > deadline) {
      v = op();
      if (cond(v)) return v;
      throw new PollTimeout(v, `Poll timed out after ${timeoutUs} us`);
    }
    clock.advance(stepUs * NSEC_PER_USEC);
    stepUs = Math.min(stepUs * 2, capUs);
  }
}

/** Mirrors readl_poll_timeout(): polls a 32-bit register until `cond` holds. */
export function readl_poll_timeout(
  io: IoMem,
  offset: number,
  cond: (v: number) => boolean,
  delayUs: number,
  timeoutUs: number,
): number {
  return read_poll_timeout(io.clock, () => readl(io, offset), cond, delayUs, timeoutUs);
}

/** Mirrors readq_poll_timeout(): polls a 64-bit register until `cond` holds. */
export function readq_poll_timeout(
  io: IoMem,
  offset: number,
  cond: (v: bigint) => boolean,
  delayUs: number,
  timeoutUs: number,
): bigint {
  return read_poll_timeout(io.clock, () => readq(io, offset), cond, delayUs, timeoutUs);
}

/** One recorded MMIO access. 64-bit values are `bigint`, 32-bit ones numbers. */
export interface MmioAccess {
  /** `"r"` for a read, `"w"` for a write. */
  readonly op: "r" | "w";
  /** Access width in bytes. */
  readonly size: 4 | 8;
  /** Offset in the backend. */
  readonly offset: number;
  /** Value read or written. */
  readonly value: number | bigint;
}

/**
 * An {@linkcode MmioBackend} that forwards to another and records every access, so a driver test
 * can assert the exact register sequence.
 */
export class MmioRecorder implements MmioBackend {
  /** Accesses so far, oldest first. */
  readonly accesses: MmioAccess[] = [];

  /** Records accesses on their way to `inner`. */
  constructor(readonly inner: MmioBackend) {}

  /** Reads and records 4 bytes. */
  read32(offset: number): number {
    const value = this.inner.read32(offset) >>> 0;
    this.accesses.push({ op: "r", size: 4, offset, value });
    return value;
  }

  /** Records and writes 4 bytes. */
  write32(offset: number, value: number): void {
    this.accesses.push({ op: "w", size: 4, offset, value: value >>> 0 });
    this.inner.write32(offset, value);
  }

  /** Reads and records 8 bytes. */
  read64(offset: number): bigint {
    const value = BigInt.asUintN(64, this.inner.read64(offset));
    this.accesses.push({ op: "r", size: 8, offset, value });
    return value;
  }

  /** Records and writes 8 bytes. */
  write64(offset: number, value: bigint): void {
    this.accesses.push({ op: "w", size: 8, offset, value: BigInt.asUintN(64, value) });
    this.inner.write64(offset, value);
  }

  /** Forgets the accesses recorded so far. */
  clear(): void {
    this.accesses.length = 0;
  }

  /** The writes only, as `[offset, value]` pairs: the usual thing a driver test asserts. */
  writes(): [number, number | bigint][] {
    return this.accesses.filter((a) => a.op === "w").map((a) => [a.offset, a.value]);
  }
}
