/**
 * A trace of what happened on a machine's simulated timeline, exported in the Chrome / Perfetto
 * JSON trace-event format (`{"traceEvents": [...]}`, timestamps in microseconds of simulated
 * time), so `ui.perfetto.dev` or `chrome://tracing` can show it.
 *
 * The machine records into it from the hooks it wraps around the hardware (MMIO windows, the
 * IOMMU's translation port, interrupt lines and MSIs) and from its DMA engine driver. Each kind
 * of actor has its own track (a `tid`): the CPU's register accesses, the IOMMU, the interrupt
 * controllers, one per DMA channel; kernel log lines are added as instants on the CPU track when
 * the trace is exported.
 *
 * @module
 */
import type { LogRecord } from "@iommu-lab/kernel";

/** One event of the trace-event format. */
export interface TraceEvent {
  /** What happened, e.g. `"IOTINVAL.VMA"` or `"write cqt"`. */
  name: string;
  /** Category: `mmio`, `command`, `walk`, `fault`, `irq`, `msi`, `dma`, `printk`. */
  cat: string;
  /** Phase: `X` complete (with `dur`), `i` instant, `M` metadata. */
  ph: "X" | "i" | "M";
  /** Start, in microseconds of simulated time. */
  ts: number;
  /** Duration in microseconds (`X` events). */
  dur?: number;
  /** Process id: one per machine. */
  pid: number;
  /** Track (thread) id; see {@linkcode TRACK_CPU} and the others. */
  tid: number;
  /** Instant scope (`t`: the track). */
  s?: "t";
  /** Details shown when the event is selected. */
  args?: Record<string, unknown>;
}

/** Track of the CPU side: register accesses and kernel log lines. */
export const TRACK_CPU = 1;
/** Track of the IOMMU: commands, page walks, faults. */
export const TRACK_IOMMU = 2;
/** Track of the interrupt controllers: wires, MSIs and handlers. */
export const TRACK_IRQ = 3;
/** Track of DMA channel `n` of engine `e` is `TRACK_DMA + 32 * e + n`. */
export const TRACK_DMA = 16;

/** Options of a {@linkcode Trace}. */
export interface TraceOptions {
  /** Record MMIO reads as well as writes (polling loops make many). Default false. */
  mmioReads?: boolean;
  /** Keep at most this many events; later ones are counted in `dropped`. Default 1_000_000. */
  limit?: number;
}

/** What the trace reads simulated time from. */
export interface TraceClock {
  /** Current simulated time in nanoseconds. */
  now(): number;
}

/**
 * The event buffer of one machine's trace.
 *
 * @example Recording and exporting
 * ```ts
 * import assert from "node:assert/strict";
 * import { Trace, TRACK_IOMMU } from "@iommu-lab/machine";
 *
 * let now = 0;
 * const trace = new Trace({ now: () => now }, true);
 * now = 1_500;
 * trace.instant("fault", "fault 13", TRACK_IOMMU, { devid: 16 });
 * const json = trace.toJSON();
 * assert.equal(json.traceEvents.at(-1)?.ts, 1.5); // µs
 * ```
 */
export class Trace {
  /** Whether hooks record; false for a machine booted without tracing. */
  readonly enabled: boolean;
  /** Whether MMIO reads are recorded too. */
  readonly mmioReads: boolean;
  /** The events so far, oldest first (without the metadata and log lines added on export). */
  readonly events: TraceEvent[] = [];
  /** Events not kept because the buffer was full. */
  dropped = 0;
  /** Track names by tid, emitted as `thread_name` metadata. */
  readonly tracks: Map<number, string> = new Map([
    [TRACK_CPU, "cpu"],
    [TRACK_IOMMU, "iommu"],
    [TRACK_IRQ, "intc"],
  ]);

  readonly #clock: TraceClock;
  readonly #limit: number;
  readonly #pid: number;
  #log: () => readonly LogRecord[] = () => [];

  /** A trace reading time from `clock`; `enabled` false makes every hook a no-op. */
  constructor(clock: TraceClock, enabled: boolean, opts: TraceOptions = {}, pid = 1) {
    this.#clock = clock;
    this.enabled = enabled;
    this.mmioReads = opts.mmioReads ?? false;
    this.#limit = opts.limit ?? 1_000_000;
    this.#pid = pid;
  }

  /** Where the kernel log comes from at export time (the machine sets it). */
  set log(source: () => readonly LogRecord[]) {
    this.#log = source;
  }

  /** Records an instant at the current time. */
  instant(cat: string, name: string, tid: number, args?: Record<string, unknown>): void {
    this.#push({
      name,
      cat,
      ph: "i",
      ts: this.#clock.now() / 1000,
      s: "t",
      pid: this.#pid,
      tid,
      args,
    });
  }

  /** Records a span from `startNs` to the current time. */
  complete(
    cat: string,
    name: string,
    tid: number,
    startNs: number,
    args?: Record<string, unknown>,
  ): void {
    const now = this.#clock.now();
    this.#push({
      name,
      cat,
      ph: "X",
      ts: startNs / 1000,
      dur: Math.max(0, now - startNs) / 1000,
      pid: this.#pid,
      tid,
      args,
    });
  }

  /** The whole trace: track names, the events and the kernel log, in the trace-event format. */
  toJSON(): { traceEvents: TraceEvent[]; displayTimeUnit: "ns" } {
    const meta: TraceEvent[] = [
      {
        name: "process_name",
        cat: "__metadata",
        ph: "M",
        ts: 0,
        pid: this.#pid,
        tid: 0,
        args: { name: "machine" },
      },
      ...[...this.tracks].map(([tid, name]): TraceEvent => ({
        name: "thread_name",
        cat: "__metadata",
        ph: "M",
        ts: 0,
        pid: this.#pid,
        tid,
        args: { name },
      })),
    ];
    const log = this.enabled
      ? this.#log().map((r): TraceEvent => ({
        name: r.text,
        cat: "printk",
        ph: "i",
        ts: r.ns / 1000,
        s: "t",
        pid: this.#pid,
        tid: TRACK_CPU,
        args: { level: r.level },
      }))
      : [];
    const traceEvents = [...meta, ...this.events, ...log].sort((a, b) => a.ts - b.ts);
    return { traceEvents, displayTimeUnit: "ns" };
  }

  /** Writes {@linkcode toJSON} to `path` as JSON. */
  write(path: string): void {
    Deno.writeTextFileSync(path, JSON.stringify(this.toJSON(), _bigints));
  }

  #push(e: TraceEvent): void {
    if (!this.enabled) return;
    if (this.events.length >= this.#limit) {
      this.dropped++;
      return;
    }
    if (e.args === undefined) delete e.args;
    this.events.push(e);
  }
}

/** JSON has no bigint: 64-bit register values are written as hex strings. */
function _bigints(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? `0x${value.toString(16)}` : value;
}
