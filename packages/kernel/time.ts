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
  /**
   * Runs `fn` once `ns` more nanoseconds have passed, from the first {@linkcode Clock.advance}
   * that reaches that time (the machine's event queue, or {@linkcode SimClock}'s own), and
   * returns an id for {@linkcode Clock.cancel}. Deferred kernel work and timers need it; a clock
   * without it cannot run any.
   */
  after?(ns: number, fn: () => void): unknown;
  /** Cancels what {@linkcode Clock.after} scheduled (by the id it returned) before it runs. */
  cancel?(id: number): boolean;
}

/**
 * A simulated clock that only moves when told to; the default for tests. Work scheduled with
 * {@linkcode SimClock.after} runs inside {@linkcode SimClock.advance}, in time order, as the
 * machine's clock runs its events: an advance made from inside such work only adds time.
 *
 * @example Advancing time and running what falls due
 * ```ts
 * import assert from "node:assert/strict";
 * import { SimClock } from "@iommu-lab/kernel";
 *
 * const clock = new SimClock();
 * const seen: number[] = [];
 * clock.after(1_000, () => seen.push(clock.now()));
 * clock.advance(500);
 * assert.deepEqual(seen, []);
 * clock.advance(1_000);
 * assert.deepEqual([seen, clock.now()], [[1_000], 1_500]);
 * ```
 */
export class SimClock implements Clock {
  #ns: number;
  readonly #events: { at: number; id: number; fn: () => void }[] = [];
  #id = 0;
  #running = false;

  /** Starts the clock at `startNs` nanoseconds. */
  constructor(startNs = 0) {
    this.#ns = startNs;
  }

  /** Current time in nanoseconds. */
  now(): number {
    return this.#ns;
  }

  /**
   * Moves time forward and runs what fell due, each at its own time; a negative or non-finite
   * step is a caller bug.
   */
  advance(ns: number): void {
    if (!(ns >= 0) || !Number.isFinite(ns)) {
      throw new Errno("EINVAL", `Cannot advance time by ${ns} ns`);
    }
    if (this.#running) {
      this.#ns += ns;
      return;
    }
    const target = this.#ns + ns;
    const evs = this.#events;
    this.#running = true;
    try {
      while (evs.length !== 0 && evs[0].at <= Math.max(target, this.#ns)) {
        const ev = evs.shift()!;
        if (ev.at > this.#ns) this.#ns = ev.at;
        ev.fn();
      }
    } finally {
      this.#running = false;
    }
    if (target > this.#ns) this.#ns = target;
  }

  /**
   * Runs `fn` at the first advance reaching `ns` from now; same-time work runs in call order.
   * Returns an id for {@linkcode SimClock.cancel}.
   */
  after(ns: number, fn: () => void): number {
    const at = this.#ns + Math.max(0, ns);
    const evs = this.#events;
    let i = evs.length;
    while (i > 0 && evs[i - 1].at > at) i--;
    const id = ++this.#id;
    evs.splice(i, 0, { at, id, fn });
    return id;
  }

  /** Cancels what {@linkcode SimClock.after} scheduled; false when it ran already or never was. */
  cancel(id: number): boolean {
    const i = this.#events.findIndex((e) => e.id === id);
    if (i >= 0) this.#events.splice(i, 1);
    return i >= 0;
  }

  /** Callbacks scheduled and not run yet. */
  get pending(): number {
    return this.#events.length;
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
