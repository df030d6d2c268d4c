/**
 * Simulated time for one machine: a nanosecond counter, events scheduled at a simulated time,
 * and the cost table the models charge to it.
 *
 * Two ways move time, on purpose:
 *
 * - {@linkcode Clock.charge} is what models call from inside an access (an MMIO write, a page
 *   walk, a DMA chunk). It only adds time and never runs events, so no device is re-entered
 *   from the middle of another device's access.
 * - {@linkcode Clock.advance} is what the CPU side calls (the kernel's `udelay`, a poll loop's
 *   relax, an idle `wfi`). It adds time and then runs, in time order, every event that is due,
 *   including ones that fell due during earlier charges. Interrupt delivery to the kernel is
 *   such an event, so a handler only ever runs at an "instruction boundary" of the CPU side.
 *
 * Everything is deterministic: there is no wall clock, and events due at the same time run in
 * the order they were scheduled.
 *
 * @module
 */

/**
 * What each modelled operation costs, in nanoseconds of simulated time.
 *
 * The defaults are round figures of the order real systems show (a PCIe-attached device on an
 * RV64 SoC with DDR4/5); they make scenario latencies comparable with each other, not with any
 * one chip. Pass overrides to {@linkcode Clock} to model a slower or faster platform.
 */
export interface CostTable {
  /** One uncached 4- or 8-byte register access by the CPU (MMIO or ECAM), round trip. */
  mmio: number;
  /** One memory access made by a device or the IOMMU (a DDT/PDT entry, a queue record). */
  memAccess: number;
  /** One step of a page walk (one PTE read, first stage or G-stage). */
  walkStep: number;
  /** A translation answered from the IOTLB. */
  iotlbHit: number;
  /** Executing one command-queue entry (fetch and process). */
  command: number;
  /** From an interrupt being signalled (wire raised, MSI written) to the hart taking it. */
  irqDelivery: number;
  /** A guest exiting to the hypervisor and being resumed. */
  vmExit: number;
  /** A DMA engine decoding a command before moving data. */
  dmaSetup: number;
  /** Moving one 4 KiB page across the link (about 8 GB/s). */
  dmaPage: number;
  /** A PCIe ATS translation request and its completion, round trip. */
  atsRequest: number;
  /** A function's ATC invalidation: from an Invalidate Request to its Invalidation Completion. */
  atsInvalidate: number;
}

/** The default {@linkcode CostTable}. */
export const DEFAULT_COSTS: Readonly<CostTable> = Object.freeze({
  mmio: 100,
  memAccess: 60,
  walkStep: 60,
  iotlbHit: 2,
  command: 100,
  irqDelivery: 400,
  vmExit: 1500,
  dmaSetup: 200,
  dmaPage: 512,
  atsRequest: 800,
  atsInvalidate: 2000,
});

interface Event {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * The simulated clock of one machine.
 *
 * Structurally a kernel `Clock` (`now()`, `advance(ns)`), so the machine can hand it to the
 * kernel as its time source.
 *
 * @example Charging costs and running a scheduled event
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock } from "@iommu-lab/hw";
 *
 * const clock = new Clock();
 * const seen: number[] = [];
 * clock.after(1_000, () => seen.push(clock.now()));
 * clock.charge(clock.costs.mmio * 20); // 2 µs of register accesses: nothing runs yet
 * assert.deepEqual(seen, []);
 * clock.advance(0); // the CPU side reaches an instruction boundary
 * assert.deepEqual(seen, [2_000]);
 * ```
 */
export class Clock {
  /** The costs models charge; fixed at construction. */
  readonly costs: Readonly<CostTable>;

  #now = 0;
  #seq = 0;
  #events: Event[] = [];
  #running = false;

  /** Creates a clock at time 0 with the default costs, or `costs` overriding some of them. */
  constructor(costs: Partial<CostTable> = {}) {
    this.costs = Object.freeze({ ...DEFAULT_COSTS, ...costs });
  }

  /** Current simulated time in nanoseconds. */
  now(): number {
    return this.#now;
  }

  /** Number of scheduled events not yet run. */
  get pending(): number {
    return this.#events.length;
  }

  /** Time of the earliest scheduled event, or `undefined` when none is scheduled. */
  nextEventAt(): number | undefined {
    return this.#events.length === 0 ? undefined : this.#events[0].at;
  }

  /**
   * Adds `ns` to the time without running events (what models call on their hot paths).
   * Negative or non-finite charges are ignored: time never runs backwards.
   */
  charge(ns: number): void {
    if (ns > 0) this.#now += ns;
  }

  /**
   * Moves time forward by `ns` and runs every event due by then, in time order. Time steps to
   * each event's scheduled time before it runs (or stays later, when charges already passed it). Called from inside an event (a handler that
   * delays), it only adds time, as a hart with interrupts disabled would not take another one.
   *
   * @throws {RangeError} if `ns` is negative or not finite (a caller bug, not guest input).
   */
  advance(ns: number): void {
    if (!(ns >= 0) || !Number.isFinite(ns)) {
      throw new RangeError(`Cannot advance the clock by ${ns} ns`);
    }
    if (this.#running) {
      this.#now += ns;
      return;
    }
    const target = this.#now + ns;
    this.#running = true;
    try {
      // Time charged or advanced by an event counts too: those events are due once it returns.
      while (this.#events.length !== 0 && this.#events[0].at <= Math.max(target, this.#now)) {
        const ev = this.#events.shift()!;
        if (ev.at > this.#now) this.#now = ev.at;
        ev.fn();
      }
    } finally {
      this.#running = false;
    }
    if (target > this.#now) this.#now = target;
  }

  /**
   * Advances to the earliest scheduled event and runs everything due then (a hart idling in
   * `wfi` until something happens). Returns false when nothing is scheduled.
   */
  advanceToNextEvent(): boolean {
    const at = this.nextEventAt();
    if (at === undefined) return false;
    this.advance(Math.max(0, at - this.#now));
    return true;
  }

  /**
   * Schedules `fn` to run at simulated time `at` (or at the next {@linkcode advance} when `at`
   * is already past). Returns an id for {@linkcode cancel}.
   */
  schedule(at: number, fn: () => void): number {
    const ev: Event = { at, seq: ++this.#seq, fn };
    const evs = this.#events;
    let lo = 0, hi = evs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (evs[mid].at <= at) lo = mid + 1;
      else hi = mid;
    }
    evs.splice(lo, 0, ev);
    return ev.seq;
  }

  /** Schedules `fn` to run `delay` ns from now; returns an id for {@linkcode cancel}. */
  after(delay: number, fn: () => void): number {
    return this.schedule(this.#now + Math.max(0, delay), fn);
  }

  /** Cancels a scheduled event; returns false when it already ran or was cancelled. */
  cancel(id: number): boolean {
    const i = this.#events.findIndex((e) => e.seq === id);
    if (i < 0) return false;
    this.#events.splice(i, 1);
    return true;
  }
}
