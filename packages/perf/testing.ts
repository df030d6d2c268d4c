/**
 * Test fixtures for perf users (`@iommu-lab/perf/testing`): a PMU with a fixed number of
 * counters over free-running sources the test supplies. (The kernel's `SimClock` runs timer
 * callbacks, the mux hrtimer's, as the machine's clock does.)
 *
 * @module
 */
import { type AttributeGroup, Errno } from "@iommu-lab/kernel";
import {
  is_software_event,
  PERF_EF_START,
  PERF_EF_UPDATE,
  PERF_HES_STOPPED,
  PERF_HES_UPTODATE,
  perf_invalid_context,
  PERF_PMU_CAP_NO_EXCLUDE,
  PERF_PMU_CAP_NO_INTERRUPT,
  PERF_PMU_TXN_ADD,
  type PerfEvent,
  type Pmu,
  PMU_EVENT_ATTR_STRING,
  PMU_FORMAT_ATTR,
} from "./perf_event.ts";

/** Options of a {@linkcode TestPmu}. */
export interface TestPmuOptions {
  /** Hardware counters (default 2). */
  counters?: number;
  /**
   * The free-running count of what event id `id` (the `event` format field, config:0-15)
   * counts; the PMU counts its increments while an event is on a counter.
   */
  source(id: number): bigint;
  /** task_ctx_nr (default `perf_invalid_context`, an uncore PMU). */
  task_ctx_nr?: number;
  /** capabilities (default `PERF_PMU_CAP_NO_INTERRUPT | PERF_PMU_CAP_NO_EXCLUDE`). */
  capabilities?: number;
  /** `format/` files beyond `event` (config:0-15): name → `config1:0-3,8-11`-style. */
  formats?: Readonly<Record<string, string>>;
  /** `events/` aliases: name → terms (`event=0x4`). */
  events?: Readonly<Record<string, string>>;
  /** Content of the `identifier` file, if the PMU has one. */
  identifier?: string;
  /** Check the counter budget at commit_txn instead of in add(). */
  txn?: boolean;
}

/**
 * A PMU with `counters` counters over free-running sources: the shape of an uncore PMU (a
 * `cpumask` file, per-CPU events only) without any silicon. event_init refuses events of
 * another type (`ENOENT`) and groups with more hardware events than counters (`EINVAL`); add() refuses
 * when the counters are taken (`EAGAIN`). `calls` records every callback, for tests of the
 * order the core calls them in.
 */
export class TestPmu implements Pmu {
  /** pmu->name. */
  name = "";
  /** pmu->type. */
  type: number = -1;
  /** pmu->dev. */
  dev: Pmu["dev"] = null;
  /** pmu->task_ctx_nr. */
  readonly task_ctx_nr: number;
  /** pmu->capabilities. */
  readonly capabilities: number;
  /** pmu->hrtimer_interval_ms. */
  hrtimer_interval_ms?: number;
  /** pmu->attr_groups. */
  readonly attr_groups: readonly AttributeGroup[];
  /** The event on each counter. */
  readonly used: (PerfEvent | null)[];
  /** Callbacks the core made, as `add:<id>`, `del:<id>`, `start_txn`, `commit_txn`... */
  readonly calls: string[] = [];
  readonly #opts: TestPmuOptions;
  #txn = false;
  #txnFull = false;

  /** A PMU to perf_pmu_register(). */
  constructor(opts: TestPmuOptions) {
    this.#opts = opts;
    this.used = new Array(opts.counters ?? 2).fill(null);
    this.task_ctx_nr = opts.task_ctx_nr ?? perf_invalid_context;
    this.capabilities = opts.capabilities ?? (PERF_PMU_CAP_NO_INTERRUPT | PERF_PMU_CAP_NO_EXCLUDE);
    const formats = { event: "config:0-15", ...opts.formats };
    const groups: AttributeGroup[] = [
      { attrs: [{ name: "cpumask", mode: 0o444, show: () => "0\n" }] },
      {
        name: "format",
        attrs: Object.entries(formats).map(([n, f]) => PMU_FORMAT_ATTR(n, f)),
      },
      {
        name: "events",
        attrs: Object.entries(opts.events ?? {}).map(([n, t]) => PMU_EVENT_ATTR_STRING(n, t)),
      },
    ];
    if (opts.identifier !== undefined) {
      const id = opts.identifier;
      groups.push({ attrs: [{ name: "identifier", mode: 0o444, show: () => `${id}\n` }] });
    }
    this.attr_groups = groups;
  }

  /** The event id an event counts: config:0-15. */
  static eventId(event: PerfEvent): number {
    return Number(event.attr.config & 0xffffn);
  }

  /** Refuses other types (ENOENT) and groups larger than the counters (EINVAL). */
  event_init(event: PerfEvent): void {
    if (event.attr.type !== this.type) throw new Errno("ENOENT", "not a test PMU event");
    const leader = event.group_leader;
    const others = leader === event ? [] : [leader, ...leader.siblings];
    const members = 1 + others.filter((e) => !is_software_event(e)).length;
    if (members > this.used.length) throw new Errno("EINVAL", "group larger than the PMU");
  }

  /** Takes a free counter (EAGAIN when none, or at commit_txn in a transaction). */
  add(event: PerfEvent, flags: number): void {
    this.calls.push(`add:${event.id}`);
    const idx = this.used.indexOf(null);
    if (idx < 0) {
      if (!this.#txn) throw new Errno("EAGAIN", "no free counter");
      this.#txnFull = true;
      event.hw.idx = -1;
    } else {
      this.used[idx] = event;
      event.hw.idx = idx;
    }
    event.hw.state = PERF_HES_STOPPED | PERF_HES_UPTODATE;
    if (flags & PERF_EF_START) this.start(event, flags);
  }

  /** Stops the counter, folding its count in, and frees it. */
  del(event: PerfEvent, flags: number): void {
    this.calls.push(`del:${event.id}`);
    this.stop(event, flags | PERF_EF_UPDATE);
    if (event.hw.idx >= 0) this.used[event.hw.idx] = null;
    event.hw.idx = -1;
  }

  /** Starts counting from the source's current value. */
  start(event: PerfEvent, _flags: number): void {
    event.hw.state = 0;
    event.hw.prev_count = this.#opts.source(TestPmu.eventId(event));
  }

  /** Stops counting (folding the count in with PERF_EF_UPDATE). */
  stop(event: PerfEvent, flags: number): void {
    if (event.hw.state & PERF_HES_STOPPED) return;
    if (flags & PERF_EF_UPDATE) this.read(event);
    event.hw.state |= PERF_HES_STOPPED | PERF_HES_UPTODATE;
  }

  /** Adds what the source counted since the last read. */
  read(event: PerfEvent): void {
    if (event.hw.state & PERF_HES_STOPPED) return;
    const now = this.#opts.source(TestPmu.eventId(event));
    event.count += now - event.hw.prev_count;
    event.hw.prev_count = now;
  }

  /** Begins a transaction when `txn` is on. */
  start_txn(_pmu: Pmu, flags: number): void {
    this.calls.push("start_txn");
    this.#txn = this.#opts.txn === true && flags === PERF_PMU_TXN_ADD;
    this.#txnFull = false;
  }

  /** Ends the transaction: EAGAIN when an add found no counter. */
  commit_txn(_pmu: Pmu): void {
    this.calls.push("commit_txn");
    const full = this.#txnFull;
    this.#txn = this.#txnFull = false;
    if (full) throw new Errno("EAGAIN", "group does not fit");
  }

  /** Abandons the transaction. */
  cancel_txn(_pmu: Pmu): void {
    this.calls.push("cancel_txn");
    this.#txn = this.#txnFull = false;
  }
}
