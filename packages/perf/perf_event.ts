/**
 * The perf_event types a PMU driver and a perf_event user share: what
 * `include/uapi/linux/perf_event.h` (event types, `struct perf_event_attr`) and
 * `include/linux/perf_event.h` (`struct pmu`, `struct perf_event`, `struct hw_perf_event`, the
 * `PERF_PMU_CAP_*`, `PERF_EF_*`, `PERF_HES_*` flags and the sysfs attribute helpers) define,
 * as of Linux 6.15 (the event states with `PERF_EVENT_STATE_REVOKED`).
 *
 * Counts are `bigint` (the kernel's `local64_t`/`u64`), so a driver adds the 64-bit deltas it
 * reads with `readq()` without losing bits; times are nanoseconds of the kernel's simulated
 * clock, as `number`.
 *
 * @module
 */
import type { AttributeGroup, Device, DeviceAttribute, Kernel } from "@iommu-lab/kernel";

/** PERF_TYPE_HARDWARE: generalized hardware events (the core PMU). */
export const PERF_TYPE_HARDWARE = 0;
/** PERF_TYPE_SOFTWARE: the software PMU's events. */
export const PERF_TYPE_SOFTWARE = 1;
/** PERF_TYPE_TRACEPOINT. */
export const PERF_TYPE_TRACEPOINT = 2;
/** PERF_TYPE_HW_CACHE. */
export const PERF_TYPE_HW_CACHE = 3;
/** PERF_TYPE_RAW: a raw event of the core PMU (`rNNN` in the perf tool). */
export const PERF_TYPE_RAW = 4;
/** PERF_TYPE_BREAKPOINT. */
export const PERF_TYPE_BREAKPOINT = 5;
/** PERF_TYPE_MAX: the first type id perf_pmu_register() hands out dynamically. */
export const PERF_TYPE_MAX = 6;

/**
 * struct perf_event_attr, the fields this kernel acts on; an absent field is 0 (the caller's
 * memset). `sample_period` is the uapi's union: a period, or the frequency when `freq` is set.
 */
export interface PerfEventAttr {
  /** PMU type id: a fixed `PERF_TYPE_*` or the `type` a PMU's sysfs directory shows. */
  type: number;
  /** PMU-specific configuration (the `format` fields in `config`). */
  config?: bigint;
  /** Extension of `config` (`config1` format fields: filters, for the RISC-V IOMMU HPM). */
  config1?: bigint;
  /** Second extension of `config`. */
  config2?: bigint;
  /** Third extension of `config`. */
  config3?: bigint;
  /** Sampling period (or frequency with `freq`); 0 for a counting event. */
  sample_period?: bigint;
  /** `sample_period` holds a frequency. */
  freq?: boolean;
  /** Created off: counts nothing until perf_event_enable(). */
  disabled?: boolean;
  /** Children inherit the counter (no task here ever forks). */
  inherit?: boolean;
  /** Must always be on the PMU; a group that cannot go on goes to ERROR. */
  pinned?: boolean;
  /** Must be the only group on the PMU while on. */
  exclusive?: boolean;
  /** Do not count user mode. */
  exclude_user?: boolean;
  /** Do not count kernel mode. */
  exclude_kernel?: boolean;
  /** Do not count the hypervisor. */
  exclude_hv?: boolean;
  /** Do not count when idle. */
  exclude_idle?: boolean;
  /** Do not count the host (guest only). */
  exclude_host?: boolean;
  /** Do not count guests. */
  exclude_guest?: boolean;
}

/** PERF_EVENT_STATE_DEAD: released. */
export const PERF_EVENT_STATE_DEAD: number = -5;
/** PERF_EVENT_STATE_REVOKED: its PMU is gone; the event keeps its last values. */
export const PERF_EVENT_STATE_REVOKED: number = -4;
/** PERF_EVENT_STATE_EXIT: its task died (no task ever does here). */
export const PERF_EVENT_STATE_EXIT: number = -3;
/** PERF_EVENT_STATE_ERROR: a pinned group could not go on; perf_event_enable() retries. */
export const PERF_EVENT_STATE_ERROR: number = -2;
/** PERF_EVENT_STATE_OFF: disabled. */
export const PERF_EVENT_STATE_OFF: number = -1;
/** PERF_EVENT_STATE_INACTIVE: enabled, not on the PMU right now (time enabled runs). */
export const PERF_EVENT_STATE_INACTIVE = 0;
/** PERF_EVENT_STATE_ACTIVE: on the PMU (time enabled and time running run). */
export const PERF_EVENT_STATE_ACTIVE = 1;

/** perf_invalid_context: task_ctx_nr of a PMU without per-task events (uncore). */
export const perf_invalid_context: number = -1;
/** perf_hw_context: task_ctx_nr of a hardware PMU. */
export const perf_hw_context = 0;
/** perf_sw_context: task_ctx_nr of a software PMU (its events always go on). */
export const perf_sw_context = 1;

/** PERF_PMU_CAP_NO_INTERRUPT: cannot interrupt on overflow, so cannot sample (EOPNOTSUPP). */
export const PERF_PMU_CAP_NO_INTERRUPT = 0x0001;
/** PERF_PMU_CAP_NO_NMI: overflow interrupts are not NMIs. */
export const PERF_PMU_CAP_NO_NMI = 0x0002;
/** PERF_PMU_CAP_EXCLUSIVE: one event at a time. */
export const PERF_PMU_CAP_EXCLUSIVE = 0x0010;
/** PERF_PMU_CAP_NO_EXCLUDE: cannot honour `exclude_*` (EINVAL when one is set). */
export const PERF_PMU_CAP_NO_EXCLUDE = 0x0040;

/** PERF_EF_START: add() starts the counter too. */
export const PERF_EF_START = 0x01;
/** PERF_EF_RELOAD: start() reloads the counter. */
export const PERF_EF_RELOAD = 0x02;
/** PERF_EF_UPDATE: stop() folds the hardware count into the event. */
export const PERF_EF_UPDATE = 0x04;

/** PERF_HES_STOPPED: the counter is stopped. */
export const PERF_HES_STOPPED = 0x01;
/** PERF_HES_UPTODATE: event->count holds what the hardware counted. */
export const PERF_HES_UPTODATE = 0x02;

/** PERF_PMU_TXN_ADD: the transaction adds a group (start_txn/commit_txn/cancel_txn). */
export const PERF_PMU_TXN_ADD = 0x1;

/** PERF_CPU_HRTIMER: default multiplexing interval in ms (1000 / HZ, HZ=250 on riscv). */
export const PERF_CPU_HRTIMER = 4;

/**
 * struct pmu: what a PMU driver registers with perf_pmu_register(). The callbacks throw an
 * errno where the kernel's return one: `event_init` `ENOENT` for an event that is not this
 * PMU's (the core then tries others), `add` `EAGAIN` when no counter is free.
 */
export interface Pmu {
  /** pmu->name: also the sysfs directory name; perf_pmu_register() sets it. */
  name: string;
  /** pmu->type: the type id perf_pmu_register() allocates. */
  type: number;
  /** pmu->dev: the PMU's device on the `event_source` bus, made by perf_pmu_register(). */
  dev: Device | null;
  /** pmu->parent: the device the PMU belongs to (its sysfs directory sits under it). */
  readonly parent?: Device | null;
  /** pmu->attr_groups: sysfs groups (`format`, `events`, `cpumask`, `identifier`...). */
  readonly attr_groups?: readonly AttributeGroup[];
  /** pmu->capabilities: `PERF_PMU_CAP_*`. */
  readonly capabilities?: number;
  /** pmu->task_ctx_nr: `perf_invalid_context` for uncore PMUs. */
  readonly task_ctx_nr: number;
  /** pmu->hrtimer_interval_ms: multiplexing interval (default {@linkcode PERF_CPU_HRTIMER}). */
  hrtimer_interval_ms?: number;
  /** Checks and claims a new event (sets `event.hw`); throws `ENOENT` if not this PMU's. */
  event_init(event: PerfEvent): void;
  /** Puts the event on a counter (and starts it with `PERF_EF_START`); `EAGAIN` when full. */
  add(event: PerfEvent, flags: number): void;
  /** Takes the event off its counter (stops it, folding its count in). */
  del(event: PerfEvent, flags: number): void;
  /** Starts counting. */
  start(event: PerfEvent, flags: number): void;
  /** Stops counting (`PERF_EF_UPDATE`: fold the count in). */
  stop(event: PerfEvent, flags: number): void;
  /** Folds what the hardware counted since the last read into `event.count`. */
  read(event: PerfEvent): void;
  /** Begins a group transaction: `add`s may defer their checks to commit_txn. */
  start_txn?(pmu: Pmu, txn_flags: number): void;
  /** Ends a group transaction; throws (EAGAIN) when the group does not fit. */
  commit_txn?(pmu: Pmu): void;
  /** Abandons a group transaction (after the core has del()ed what it added). */
  cancel_txn?(pmu: Pmu): void;
}

/** struct hw_perf_event: the driver's per-event hardware state. */
export class HwPerfEvent {
  /** The counter the event sits on, -1 when none. */
  idx: number = -1;
  /** `PERF_HES_*` flags. */
  state = 0;
  /** Counter value at the last update (local64_t prev_count). */
  prev_count = 0n;
  /** attr.sample_period as perf_event_alloc() copies it (1 for a frequency). */
  sample_period = 0n;
  /** Driver-private encoding of the event (what a driver programs). */
  config = 0n;
}

/**
 * struct perf_event_pmu_context: one PMU's groups on the CPU, in scheduling order, and its
 * multiplexing state. perf_event_open() makes it; drivers do not touch it.
 */
export class PerfEventPmuContext {
  /** The PMU the groups go on. */
  readonly pmu: Pmu;
  /** Leaders of the pinned groups, in open order. */
  readonly pinned_groups: PerfEvent[] = [];
  /** Leaders of the flexible groups, in rotation order (the head goes on first). */
  readonly flexible_groups: PerfEvent[] = [];
  /** A flexible group did not fit: rotate at the next hrtimer tick. */
  rotate_necessary = false;
  /** An exclusive group is on. */
  exclusive = false;
  /** The multiplexing hrtimer is armed (cpc->hrtimer_active). */
  hrtimer_active = false;
  /** The armed hrtimer's id on the clock. */
  hrtimer = 0;

  /** Made by the core for a PMU's first group. */
  constructor(pmu: Pmu) {
    this.pmu = pmu;
  }
}

/** The attr an event keeps, every field present. */
export type PerfEventAttrFull = Readonly<Required<PerfEventAttr>>;

/**
 * struct perf_event: one counter, created by perf_event_open(). The core owns every field but
 * `count`, `hw` and `cpu`, which the PMU driver updates.
 */
export class PerfEvent {
  /** The kernel the event lives in. */
  readonly kernel: Kernel;
  /** event->id: unique per kernel, from 1. */
  readonly id: number;
  /** event->attr, every field filled in. */
  readonly attr: PerfEventAttrFull;
  /** event->pmu: the PMU whose event_init() accepted the event. */
  pmu: Pmu;
  /** event->hw. */
  readonly hw: HwPerfEvent = new HwPerfEvent();
  /** event->count: what the event counted (drivers add to it). */
  count = 0n;
  /** `PERF_EVENT_STATE_*`. */
  state: number;
  /** event->cpu: -1 for a task event that follows its task; event_init may move it. */
  cpu: number;
  /** A task event (pid 0, the current task) rather than a CPU-wide one. */
  readonly task: boolean;
  /** event->group_leader: itself for a leader. */
  group_leader: PerfEvent = this;
  /** event->sibling_list (on a leader): the group's other members, in order. */
  readonly siblings: PerfEvent[] = [];
  /** event->pmu_ctx (on a leader): where the group is scheduled; null before install. */
  pmu_ctx: PerfEventPmuContext | null = null;
  /** Time the event was enabled, ns (PERF_FORMAT_TOTAL_TIME_ENABLED). */
  total_time_enabled = 0;
  /** Time the event was on the PMU, ns (PERF_FORMAT_TOTAL_TIME_RUNNING). */
  total_time_running = 0;
  /** event->tstamp: when the times were last brought up to date. */
  tstamp: number;

  /** Made by perf_event_open() only. */
  constructor(
    kernel: Kernel,
    id: number,
    attr: PerfEventAttrFull,
    pmu: Pmu,
    cpu: number,
    task: boolean,
  ) {
    this.kernel = kernel;
    this.id = id;
    this.attr = attr;
    this.pmu = pmu;
    this.cpu = cpu;
    this.task = task;
    this.state = attr.disabled ? PERF_EVENT_STATE_OFF : PERF_EVENT_STATE_INACTIVE;
    this.tstamp = kernel.clock.now();
    this.hw.sample_period = attr.freq && attr.sample_period !== 0n ? 1n : attr.sample_period;
  }
}

/** Mirrors is_sampling_event(): the event samples rather than counts. */
export function is_sampling_event(event: PerfEvent): boolean {
  return event.attr.sample_period !== 0n;
}

/** Mirrors is_software_event(): the event's PMU is a software one. */
export function is_software_event(event: PerfEvent): boolean {
  return event.pmu.task_ctx_nr === perf_sw_context;
}

/** Mirrors for_each_sibling_event(): the members of `leader`'s group other than the leader. */
export function for_each_sibling_event(leader: PerfEvent): readonly PerfEvent[] {
  return leader.siblings;
}

/** struct perf_pmu_events_attr: an `events/` file with the event id its show() prints. */
export interface PerfPmuEventsAttr extends DeviceAttribute {
  /** The event id. */
  readonly id: number;
}

/**
 * Mirrors PMU_FORMAT_ATTR(): a `format/` file, e.g. `event` reading `config:0-14`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PMU_FORMAT_ATTR } from "@iommu-lab/perf";
 *
 * const attr = PMU_FORMAT_ATTR("filter_did_gscid", "config1:36-59");
 * assert.equal(attr.show!(null!, attr), "config1:36-59\n");
 * ```
 */
export function PMU_FORMAT_ATTR(name: string, format: string): DeviceAttribute {
  return { name, mode: 0o444, show: () => `${format}\n` };
}

/** Mirrors PMU_EVENT_ATTR_ID(): an `events/` file whose `show` prints from its `id`. */
export function PMU_EVENT_ATTR_ID(
  name: string,
  show: (dev: Device, attr: DeviceAttribute) => string,
  id: number,
): PerfPmuEventsAttr {
  return { name, mode: 0o444, show, id };
}

/** Mirrors PMU_EVENT_ATTR_STRING(): an `events/` file with fixed terms, e.g. `event=0x04`. */
export function PMU_EVENT_ATTR_STRING(name: string, str: string): DeviceAttribute {
  return { name, mode: 0o444, show: () => `${str}\n` };
}
