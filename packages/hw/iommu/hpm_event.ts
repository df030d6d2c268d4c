/**
 * Where the translation path reports the standard HPM events (spec §5.23, "Performance-monitoring
 * event selectors") and the model's own cache events. A leaf module: the page walker, the
 * directory and the translator all count into one {@linkcode HpmEventPort}, so it must live below
 * them.
 *
 * @module
 */

/**
 * A process context found in the PDT cache (no PDT walk). Not a standard event: its ID lies above
 * the 15-bit `eventID` field, so no selector can pick it; a vendor HPM maps it to its own event
 * (the SpacemiT T100's PDTC hits).
 */
export const HPMEVENT_PDT_CACHE_HIT = 0x8000;

/** Receives the HPM events as they happen. */
export interface HpmEventSink {
  /** Counts one occurrence of `eventId` with the IDs the counter filters look at. */
  count(
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void;
}

/**
 * A sink that may be told of most occurrences in bulk, later: an HPM unit whose counters need
 * no filter and are far from overflowing learns nothing from each one but that its count grew.
 */
export interface HpmBulkSink extends HpmEventSink {
  /**
   * How many more occurrences of standard event `eventId` (1–8) it may be told of only through
   * {@linkcode countBulk}, at most 2^31 − 1; 0 when the next one must come through `count`; -1
   * when each one must until its registers change (a filter looks at the IDs).
   */
  credit(eventId: number): number;
  /** Counts `n` occurrences of `eventId` (within the credit it last gave), IDs unknown. */
  countBulk(eventId: number, n: number): void;
  /**
   * The port it is attached to (set by the port): the sink settles it before it reads or
   * changes its counters, and regrants it after.
   */
  port: HpmEventPort | null;
}

/** Most occurrences a countdown can hold. */
const MAX_CREDIT = 0x7fff_ffff;

/**
 * The translation path's side of event counting, shared by the translator, the directory and the
 * walker: per event a countdown ({@linkcode left}) of the occurrences that may pass without a
 * call. An event site decrements its countdown and calls {@linkcode report} only when it goes
 * negative, so counting costs a decrement per event while no sink needs to see each one: with
 * no sink at all, or with an HPM unit whose armed counters count without filters (it takes them
 * in bulk up to its next overflow). An observer that sees every event (a trace) or a filtering
 * counter makes every occurrence a call.
 */
export class HpmEventPort {
  /**
   * Per event, occurrences that may still pass without {@linkcode report}: index N for
   * standard event N (1–8), index 0 for {@linkcode HPMEVENT_PDT_CACHE_HIT}.
   */
  readonly left: Int32Array = new Int32Array(9).fill(MAX_CREDIT);
  /** Whether there are sinks, which may look at the IDs of an event: the path keeps them current. */
  ids = false;
  /** Per event: the countdown's value when it was last granted. */
  readonly #granted = new Int32Array(9).fill(MAX_CREDIT);
  /** Bit per event: the sinks want each occurrence until the next {@linkcode regrant}. */
  #each = 0;
  #sinks: HpmEventSink[] = [];
  /** The only sink, if there is exactly one. */
  #one: HpmEventSink | null = null;
  #bulk: HpmBulkSink[] = [];

  /** The sinks, in the order they were added. */
  get sinks(): readonly HpmEventSink[] {
    return this.#sinks;
  }

  /** Makes `sinks` the port's sinks (those that count in bulk attach to it). */
  setSinks(sinks: readonly HpmEventSink[]): void {
    this.settle();
    for (const b of this.#bulk) b.port = null;
    this.#sinks = [...sinks];
    this.#bulk = this.#sinks.filter(_isBulk);
    for (const b of this.#bulk) b.port = this;
    this.ids = this.#sinks.length !== 0;
    this.#one = this.#sinks.length === 1 ? this.#sinks[0] : null;
    for (let slot = 0; slot < 9; slot++) this.#grant(slot);
  }

  /**
   * One occurrence of `eventId` (slot `slot` of {@linkcode left}) whose countdown went
   * negative: hands the bulk sinks what passed before it, tells every sink of this one, and
   * grants the countdown anew.
   */
  report(
    slot: number,
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void {
    // Small enough for the engine to inline into the event sites: one sink that sees each
    // occurrence is called directly.
    const one = this.#one;
    if (one !== null && (this.#each & (1 << slot)) !== 0) {
      this.left[slot] = 0;
      return one.count(eventId, deviceId, pidValid, pid, gscidValid, gscid, pscidValid, pscid);
    }
    this.#reportAny(slot, eventId, deviceId, pidValid, pid, gscidValid, gscid, pscidValid, pscid);
  }

  /** {@linkcode report} with several sinks, or of a granted countdown that ran out. */
  #reportAny(
    slot: number,
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void {
    const each = (this.#each & (1 << slot)) !== 0;
    // An occurrence that took a granted countdown from 0 to -1: the bulk sinks are told of the
    // ones before it first, and the countdown is granted anew after.
    if (!each) this.#countBulk(slot, this.#granted[slot]);
    const sinks = this.#sinks;
    for (let i = 0; i < sinks.length; i++) {
      sinks[i].count(eventId, deviceId, pidValid, pid, gscidValid, gscid, pscidValid, pscid);
    }
    if (each) this.left[slot] = 0;
    else this.#grant(slot);
  }

  /** Hands the bulk sinks every occurrence that passed since the countdowns were granted. */
  settle(): void {
    const left = this.left, granted = this.#granted;
    for (let slot = 1; slot < 9; slot++) {
      const n = granted[slot] - left[slot];
      if (n <= 0) continue;
      granted[slot] = left[slot];
      this.#countBulk(slot, n);
    }
  }

  /** Settles, then sets every countdown from what the sinks now allow. */
  regrant(): void {
    this.settle();
    for (let slot = 0; slot < 9; slot++) this.#grant(slot);
  }

  #countBulk(slot: number, n: number): void {
    if (n === 0 || slot === 0) return;
    for (const b of this.#bulk) b.countBulk(slot, n);
  }

  #grant(slot: number): void {
    // Sinks that see every event give no credit; only they look at the model's own events
    // (slot 0).
    let credit = MAX_CREDIT;
    if (this.#sinks.length !== this.#bulk.length) credit = -1;
    else if (slot !== 0) { for (const b of this.#bulk) credit = Math.min(credit, b.credit(slot)); }
    this.#each = credit < 0 ? this.#each | (1 << slot) : this.#each & ~(1 << slot);
    credit = Math.max(credit, 0);
    this.left[slot] = credit;
    this.#granted[slot] = credit;
  }
}

function _isBulk(s: HpmEventSink): s is HpmBulkSink {
  return "credit" in s && "countBulk" in s;
}
