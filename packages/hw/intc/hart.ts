/**
 * The hart's external-interrupt input, shared by the interrupt controllers: a controller
 * "kicks" it when its output may be asserted, and the hart takes the interrupt after the
 * delivery latency, at the next {@linkcode Clock.advance} (an instruction boundary), never in
 * the middle of a device access.
 *
 * @module
 */
import type { Clock } from "../clock.ts";

/** One pending take of an external interrupt; internal to the interrupt controllers. */
export class _HartInput {
  readonly #clock: Clock;
  readonly #take: () => void;
  #scheduled = false;

  /** `take` runs when the hart takes the interrupt; it re-checks the controller's output. */
  constructor(clock: Clock, take: () => void) {
    this.#clock = clock;
    this.#take = take;
  }

  /** Schedules a take unless one is already on its way. */
  kick(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // At least 1 ns, so a line held asserted by a handler that never clears it is an interrupt
    // storm the clock can still step through, not an endless loop at one instant.
    this.#clock.after(Math.max(1, this.#clock.costs.irqDelivery), () => {
      this.#scheduled = false;
      this.#take();
    });
  }
}
