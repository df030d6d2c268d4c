/**
 * Simulated time: the kernel reads the machine's clock and never the wall clock.
 *
 * @module
 */
import { Errno } from "./errno.ts";

/**
 * A source of simulated time in nanoseconds, supplied by whoever builds the {@linkcode Kernel}.
 *
 * The machine's clock may run scheduled device events inside {@linkcode Clock.advance}, so a
 * driver that polls a register while advancing time sees the device make progress.
 */
export interface Clock {
  /** Current simulated time in nanoseconds. */
  now(): number;
  /** Moves time forward by `ns` nanoseconds (never backwards). */
  advance(ns: number): void;
}

/**
 * A plain simulated clock that only moves when told to; the default for tests.
 *
 * @example Advancing time
 * ```ts
 * import assert from "node:assert/strict";
 * import { SimClock } from "@iommu-lab/kernel";
 *
 * const clock = new SimClock();
 * clock.advance(1_500);
 * assert.equal(clock.now(), 1_500);
 * ```
 */
export class SimClock implements Clock {
  #ns: number;

  /** Starts the clock at `startNs` nanoseconds. */
  constructor(startNs = 0) {
    this.#ns = startNs;
  }

  /** Current time in nanoseconds. */
  now(): number {
    return this.#ns;
  }

  /** Moves time forward; a negative or non-finite step is a caller bug. */
  advance(ns: number): void {
    if (!(ns >= 0) || !Number.isFinite(ns)) {
      throw new Errno("EINVAL", `Cannot advance time by ${ns} ns`);
    }
    this.#ns += ns;
  }
}

/** Nanoseconds per microsecond (NSEC_PER_USEC). */
export const NSEC_PER_USEC = 1_000;
/** Nanoseconds per millisecond (NSEC_PER_MSEC). */
export const NSEC_PER_MSEC = 1_000_000;
/** Nanoseconds per second (NSEC_PER_SEC). */
export const NSEC_PER_SEC = 1_000_000_000;

/** Anything that carries the kernel clock (a `Kernel`, an `IoMem`). */
export interface HasClock {
  /** The simulated clock. */
  readonly clock: Clock;
}

/** Mirrors ktime_get(): the simulated time in nanoseconds. */
export function ktime_get(k: HasClock): number {
  return k.clock.now();
}

/** Mirrors ndelay(): lets `ns` nanoseconds of simulated time pass. */
export function ndelay(k: HasClock, ns: number): void {
  k.clock.advance(ns);
}

/** Mirrors udelay(): lets `us` microseconds of simulated time pass. */
export function udelay(k: HasClock, us: number): void {
  k.clock.advance(us * NSEC_PER_USEC);
}

/** Mirrors msleep(): lets `ms` milliseconds of simulated time pass. */
export function msleep(k: HasClock, ms: number): void {
  k.clock.advance(ms * NSEC_PER_MSEC);
}
