/**
 * The perf_event core: mirrors `kernel/events/core.c` (Linux 6.15) for counting events —
 * perf_pmu_register()/perf_pmu_unregister() with dynamic type ids and the PMU's device on the
 * `event_source` bus (sysfs `type`, `perf_event_mux_interval_ms` and the driver's groups),
 * sys_perf_event_open() and perf_event_create_kernel_counter() with the errno Linux returns,
 * groups scheduled all-or-nothing through the PMU transaction, enable/disable/read with time
 * enabled and time running, and multiplexing: flexible groups that do not fit are rotated every
 * `perf_event_mux_interval_ms` (default 4) by the CPU's mux hrtimer.
 *
 * The machine has one hart and one task: `nr_cpu_ids` is 1, an event is either CPU-wide
 * (`pid` -1, `cpu` 0) or follows the current task (`pid` 0). DIVERGENCE: there are no task
 * contexts; the one task never leaves CPU 0, so its events are scheduled in CPU 0's context. Per-kernel state hangs off the {@linkcode Kernel} in a
 * `WeakMap` (perf sits above the kernel package, which does not know it).
 *
 * @module
 */
import {
  type AttributeGroup,
  type Bus,
  bus_register,
  type Clock,
  Device,
  device_add,
  device_add_groups,
  device_del,
  device_remove_groups,
  Errno,
  isErrno,
  type Kernel,
  NSEC_PER_MSEC,
  pr_warn,
} from "@iommu-lab/kernel";
import {
  is_sampling_event,
  is_software_event,
  PERF_CPU_HRTIMER,
  PERF_EF_START,
  PERF_EVENT_STATE_ACTIVE,
  PERF_EVENT_STATE_DEAD,
  PERF_EVENT_STATE_ERROR,
  PERF_EVENT_STATE_INACTIVE,
  PERF_EVENT_STATE_OFF,
  PERF_EVENT_STATE_REVOKED,
  perf_invalid_context,
  PERF_PMU_CAP_NO_EXCLUDE,
  PERF_PMU_TXN_ADD,
  perf_sw_context,
  PERF_TYPE_MAX,
  PerfEvent,
  type PerfEventAttr,
  type PerfEventAttrFull,
  PerfEventPmuContext,
  type Pmu,
} from "./perf_event.ts";

/** nr_cpu_ids: the machine has one hart, CPU 0. */
export const nr_cpu_ids = 1;

/**
 * A clock that can run a callback later: what the mux hrtimer needs (the machine's clock has
 * `after`/`cancel`). DIVERGENCE: the kernel has no hrtimers of its own; on a kernel whose clock
 * cannot run callbacks, flexible groups that do not fit wait until others are closed or
 * disabled: nothing rotates them.
 */
export interface TimerClock extends Clock {
  /** Runs `fn` once `delayNs` of simulated time has passed; returns an id for `cancel`. */
  after(delayNs: number, fn: () => void): number;
  /** Cancels a callback that has not run. */
  cancel(id: number): boolean;
}

/** What sys_perf_event_open()'s read(2) returns with TOTAL_TIME_ENABLED|TOTAL_TIME_RUNNING. */
export interface PerfEventValue {
  /** What the event counted. */
  readonly count: bigint;
  /** ns the event was enabled. */
  readonly enabled: number;
  /** ns the event was on the PMU (less than `enabled` when multiplexed). */
  readonly running: number;
}

/** The `event_source` bus (pmu_bus): every PMU's device sits on it. */
const pmu_bus_type = { name: "event_source", match: () => false };

/** One kernel's perf state: pmu_idr, the pmus list, CPU 0's PMU contexts. */
interface _PerfState {
  readonly bus: Bus;
  readonly idr: Map<number, Pmu>;
  readonly pmus: Pmu[];
  readonly ctxs: Map<Pmu, PerfEventPmuContext>;
  lastId: number;
  /** The time a scheduling operation froze the context's clock at (ctx_time_freeze()), or -1. */
  frozen: number;
}

const _states = new WeakMap<Kernel, _PerfState>();

function _perf(kernel: Kernel): _PerfState {
  let st = _states.get(kernel);
  if (st === undefined) {
    st = {
      bus: kernel.buses.get(pmu_bus_type.name) ?? bus_register(kernel, pmu_bus_type),
      idr: new Map(),
      pmus: [],
      ctxs: new Map(),
      lastId: 0,
      frozen: -1,
    };
    _states.set(kernel, st);
  }
  return st;
}

function _pmuOf(dev: Device): Pmu {
  return dev.driverData as Pmu;
}

/** pmu_dev_groups: the files the core adds to every PMU's directory. */
const pmu_dev_group: AttributeGroup = {
  attrs: [
    { name: "type", mode: 0o444, show: (dev) => `${_pmuOf(dev).type}\n` },
    {
      name: "perf_event_mux_interval_ms",
      mode: 0o644,
      show: (dev) => `${_pmuOf(dev).hrtimer_interval_ms}\n`,
      store: (dev, _attr, buf) => {
        const text = buf.trim();
        const ms = /^[0-9]+$/.test(text) ? Number(text) : NaN;
        if (!(ms >= 1) || ms > 0x7fff_ffff) {
          throw new Errno("EINVAL", `perf_event_mux_interval_ms: ${text}`);
        }
        _pmuOf(dev).hrtimer_interval_ms = ms;
      },
    },
  ],
};

/**
 * Mirrors perf_pmu_register(): gives `pmu` a type id (`type`, or with -1 the lowest free one
 * from {@linkcode PERF_TYPE_MAX}), and a device `name` on the `event_source` bus whose sysfs
 * directory holds `type`, `perf_event_mux_interval_ms` and `pmu.attr_groups`. `EINVAL` for an
 * empty name, `EEXIST` for a name another PMU has.
 */
export function perf_pmu_register(kernel: Kernel, pmu: Pmu, name: string, type: number): void {
  if (name === "") throw new Errno("EINVAL", "Can not register anonymous pmu.");
  const st = _perf(kernel);
  if (st.pmus.includes(pmu)) throw new Errno("EINVAL", `pmu ${name} is already registered`);
  let id = type >= 0 ? type : PERF_TYPE_MAX;
  while (st.idr.has(id)) id++;
  // Linux WARNs and carries on with the id it got, as here.
  if (type >= 0 && id !== type) pr_warn(kernel, `perf_pmu_register: ${name}: type ${type} taken`);
  const dev = new Device(kernel, { name, bus: st.bus, parent: pmu.parent ?? null });
  device_add(dev);
  dev.driverData = pmu;
  pmu.name = name;
  pmu.type = id;
  if (!(pmu.hrtimer_interval_ms! >= 1)) pmu.hrtimer_interval_ms = PERF_CPU_HRTIMER;
  try {
    device_add_groups(dev, [pmu_dev_group, ...(pmu.attr_groups ?? [])]);
  } catch (e) {
    device_del(dev);
    pmu.type = -1;
    throw e;
  }
  pmu.dev = dev;
  st.idr.set(id, pmu);
  st.pmus.push(pmu);
}

/**
 * Mirrors perf_pmu_unregister(): the PMU disappears (sysfs directory, type id); its events are
 * revoked as Linux 6.15 does: taken off the PMU with their count folded in, they keep their
 * last values and no longer count. `EINVAL` when `pmu` is not registered.
 */
export function perf_pmu_unregister(pmu: Pmu): void {
  const dev = pmu.dev;
  if (dev === null) throw new Errno("EINVAL", `pmu ${pmu.name} is not registered`);
  const st = _perf(dev.kernel);
  _time_frozen(dev.kernel, () => {
    for (const ctx of [...st.ctxs.values()]) {
      for (const leader of [...ctx.pinned_groups, ...ctx.flexible_groups]) {
        for (const ev of [leader, ...leader.siblings]) {
          if (ev.pmu !== pmu) continue;
          _remove_from_context(ev);
          _set_state(ev, PERF_EVENT_STATE_REVOKED);
        }
      }
    }
    // Software events left in the PMU's context (siblings of revoked leaders) go on in their own.
    const left = st.ctxs.get(pmu);
    for (const leader of left ? [...left.pinned_groups, ...left.flexible_groups] : []) {
      ctx_resched(_move_group(st, leader, _ctx(st, leader.pmu)), leader.attr.pinned);
    }
  });
  st.idr.delete(pmu.type);
  st.pmus.splice(st.pmus.indexOf(pmu), 1);
  device_remove_groups(dev, [pmu_dev_group, ...(pmu.attr_groups ?? [])]);
  device_del(dev);
  pmu.dev = null;
}

function _attr(attr: PerfEventAttr): PerfEventAttrFull {
  const u64 = (v: bigint | undefined, what: string): bigint => {
    if (v === undefined) return 0n;
    if (typeof v !== "bigint" || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
      throw new Errno("EINVAL", `attr.${what} is not a u64`);
    }
    return v;
  };
  if (!Number.isInteger(attr.type) || attr.type < 0 || attr.type > 0xffff_ffff) {
    throw new Errno("EINVAL", `attr.type ${attr.type} is not a u32`);
  }
  const full: PerfEventAttrFull = {
    type: attr.type,
    config: u64(attr.config, "config"),
    config1: u64(attr.config1, "config1"),
    config2: u64(attr.config2, "config2"),
    config3: u64(attr.config3, "config3"),
    sample_period: u64(attr.sample_period, "sample_period"),
    freq: attr.freq ?? false,
    disabled: attr.disabled ?? false,
    inherit: attr.inherit ?? false,
    pinned: attr.pinned ?? false,
    exclusive: attr.exclusive ?? false,
    exclude_user: attr.exclude_user ?? false,
    exclude_kernel: attr.exclude_kernel ?? false,
    exclude_hv: attr.exclude_hv ?? false,
    exclude_idle: attr.exclude_idle ?? false,
    exclude_host: attr.exclude_host ?? false,
    exclude_guest: attr.exclude_guest ?? false,
  };
  // sys_perf_event_open(): a period must fit in 63 bits.
  if (!full.freq && full.sample_period >> 63n !== 0n) {
    throw new Errno("EINVAL", "attr.sample_period has bit 63 set");
  }
  return full;
}

function _has_exclude(attr: PerfEventAttrFull): boolean {
  return attr.exclude_user || attr.exclude_kernel || attr.exclude_hv || attr.exclude_idle ||
    attr.exclude_host || attr.exclude_guest;
}

/** Mirrors perf_try_init_event(): `pmu` inits the event, then the core checks its caps. */
function perf_try_init_event(pmu: Pmu, event: PerfEvent): void {
  event.pmu = pmu;
  pmu.event_init(event);
  if ((pmu.capabilities ?? 0) & PERF_PMU_CAP_NO_EXCLUDE && _has_exclude(event.attr)) {
    throw new Errno("EINVAL", `${pmu.name} cannot exclude`);
  }
}

/**
 * Mirrors perf_init_event(): the PMU whose type is `attr.type` inits the event; a type no PMU
 * has is offered to every PMU in turn until one does not answer `ENOENT`. `ENOENT` when none
 * takes it.
 */
function perf_init_event(st: _PerfState, event: PerfEvent): void {
  const pmu = st.idr.get(event.attr.type);
  if (pmu !== undefined) return perf_try_init_event(pmu, event);
  for (const p of st.pmus) {
    try {
      return perf_try_init_event(p, event);
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
    }
  }
  throw new Errno("ENOENT", `no PMU takes type ${event.attr.type}`);
}

/**
 * Mirrors sys_perf_event_open(): a counting event on the current task (`pid` 0) or CPU-wide
 * (`pid` -1, `cpu` 0), alone or joining `group_leader`'s group. Errno as Linux returns it:
 *
 * - `ESRCH`: `pid` other than 0 or -1 (no such task);
 * - `EINVAL`: `cpu` not a CPU (or -1 without a task), a bad attr, a task event on an uncore PMU
 *   (`perf_invalid_context`), `exclude_*` on a `PERF_PMU_CAP_NO_EXCLUDE` PMU, a sibling that is
 *   `pinned` or `exclusive`, a group leader that is not a leader, on another CPU or task, or of
 *   another hardware PMU; whatever the PMU's event_init() refuses;
 * - `ENOENT`: no PMU takes `attr.type`;
 * - `EOPNOTSUPP`: a sampling event on a `PERF_PMU_CAP_NO_INTERRUPT` PMU;
 * - `EBADF`: `group_leader` was released; `ENODEV`: its PMU is gone.
 *
 * DIVERGENCE: there is no ring buffer, so a sampling event is `EOPNOTSUPP` on every PMU, not
 * only `PERF_PMU_CAP_NO_INTERRUPT` ones (after event_init(), which may refuse it first).
 */
export function perf_event_open(
  kernel: Kernel,
  attr: PerfEventAttr,
  pid: number,
  cpu: number,
  group_leader: PerfEvent | null = null,
): PerfEvent {
  const st = _perf(kernel);
  const full = _attr(attr);
  if (
    group_leader !== null && (group_leader.state === PERF_EVENT_STATE_DEAD ||
      group_leader.kernel !== kernel)
  ) {
    throw new Errno("EBADF", "group_fd is not an open event");
  }
  if (pid !== 0 && pid !== -1) throw new Errno("ESRCH", `no task ${pid}`);
  const task = pid === 0;
  // perf_event_alloc()
  if (!Number.isInteger(cpu) || cpu < -1 || cpu >= nr_cpu_ids || (cpu === -1 && !task)) {
    throw new Errno("EINVAL", `cpu ${cpu}`);
  }
  if (st.pmus.length === 0) throw new Errno("ENOENT", `no PMU takes type ${full.type}`);
  const event = new PerfEvent(kernel, st.lastId + 1, full, st.pmus[0], cpu, task);
  event.group_leader = group_leader ?? event;
  perf_init_event(st, event);
  const pmu = event.pmu;
  if (pmu.task_ctx_nr === perf_invalid_context && task) {
    throw new Errno("EINVAL", `${pmu.name} has no per-task events`);
  }
  if (is_sampling_event(event)) throw new Errno("EOPNOTSUPP", `${pmu.name} cannot sample`);

  let ctx: PerfEventPmuContext;
  if (group_leader === null) {
    ctx = _ctx(st, pmu);
  } else {
    if (group_leader.group_leader !== group_leader) {
      throw new Errno("EINVAL", "group_fd is not a group leader");
    }
    if (group_leader.pmu_ctx === null) throw new Errno("ENODEV", "group leader's PMU is gone");
    if (group_leader.cpu !== event.cpu || group_leader.task !== event.task) {
      throw new Errno("EINVAL", "group leader counts on another CPU or task");
    }
    if (full.exclusive || full.pinned) {
      throw new Errno("EINVAL", "only a group leader can be exclusive or pinned");
    }
    ctx = group_leader.pmu_ctx;
    if (!is_software_event(event) && ctx.pmu !== pmu) {
      // A software-only group moves to the hardware PMU that joins it (move_group).
      if (ctx.pmu.task_ctx_nr !== perf_sw_context) {
        throw new Errno("EINVAL", "a group cannot span two hardware PMUs");
      }
      ctx = _time_frozen(kernel, () => _move_group(st, group_leader, _ctx(st, pmu)));
    }
  }
  st.lastId = event.id;
  _time_frozen(kernel, () => perf_install_in_context(ctx, event));
  return event;
}

/**
 * Mirrors perf_event_create_kernel_counter(): a CPU-wide event for in-kernel use, without a
 * group. Errno as {@linkcode perf_event_open}.
 */
export function perf_event_create_kernel_counter(
  kernel: Kernel,
  attr: PerfEventAttr,
  cpu: number,
): PerfEvent {
  return perf_event_open(kernel, attr, -1, cpu);
}

/**
 * Mirrors perf_event_release_kernel() (close(2) of the event): takes it off the PMU; a leader's
 * siblings go on as groups of their own. `EBADF` when already released.
 */
export function perf_event_release_kernel(event: PerfEvent): void {
  if (event.state === PERF_EVENT_STATE_DEAD) throw new Errno("EBADF", "event already released");
  _time_frozen(event.kernel, () => {
    if (event.state !== PERF_EVENT_STATE_REVOKED) _remove_from_context(event);
    _set_state(event, PERF_EVENT_STATE_DEAD);
  });
}

/**
 * Mirrors perf_event_enable() (PERF_EVENT_IOC_ENABLE): an OFF or ERROR event becomes
 * schedulable and, unless it is a sibling of a group that is not on, goes on now (flexible
 * groups are rescheduled around it). No effect on an enabled, revoked or released event.
 */
export function perf_event_enable(event: PerfEvent): void {
  if (event.state >= PERF_EVENT_STATE_INACTIVE || event.state < PERF_EVENT_STATE_ERROR) return;
  _time_frozen(event.kernel, () => {
    _set_state(event, PERF_EVENT_STATE_INACTIVE);
    const leader = event.group_leader;
    if (leader !== event && leader.state !== PERF_EVENT_STATE_ACTIVE) return;
    ctx_resched(leader.pmu_ctx!, leader.attr.pinned);
  });
}

/**
 * Mirrors perf_event_disable() (PERF_EVENT_IOC_DISABLE): takes the event (a leader: its whole
 * group) off the PMU with its count folded in, and stops its time enabled.
 */
export function perf_event_disable(event: PerfEvent): void {
  if (event.state <= PERF_EVENT_STATE_OFF) return;
  _time_frozen(event.kernel, () => {
    if (event.group_leader === event) group_sched_out(event);
    else event_sched_out(event);
    _set_state(event, PERF_EVENT_STATE_OFF);
  });
}

/**
 * Mirrors perf_event_read_value(): the count (read from the PMU when the event is on) and the
 * times, brought up to date. `EBADF` for a released event.
 */
export function perf_event_read_value(event: PerfEvent): PerfEventValue {
  if (event.state === PERF_EVENT_STATE_DEAD) throw new Errno("EBADF", "event released");
  if (event.state === PERF_EVENT_STATE_ACTIVE) event.pmu.read(event);
  _update_time(event);
  return {
    count: event.count,
    enabled: event.total_time_enabled,
    running: event.total_time_running,
  };
}

function _ctx(st: _PerfState, pmu: Pmu): PerfEventPmuContext {
  let ctx = st.ctxs.get(pmu);
  if (ctx === undefined) {
    ctx = new PerfEventPmuContext(pmu);
    st.ctxs.set(pmu, ctx);
  }
  return ctx;
}

/**
 * Runs a scheduling operation with the context's time frozen at its start, as Linux's
 * ctx_time_freeze() does: the PMU callbacks' register accesses take simulated time, which must
 * not show as an event being enabled without running.
 */
function _time_frozen<T>(kernel: Kernel, fn: () => T): T {
  const st = _perf(kernel);
  if (st.frozen >= 0) return fn();
  st.frozen = kernel.clock.now();
  try {
    return fn();
  } finally {
    st.frozen = -1;
  }
}

/** Mirrors __perf_update_times(): time enabled and running up to now (or the frozen time). */
function _update_time(event: PerfEvent): void {
  const frozen = _perf(event.kernel).frozen;
  const now = frozen >= 0 ? frozen : event.kernel.clock.now();
  const delta = now - event.tstamp;
  if (event.state >= PERF_EVENT_STATE_INACTIVE) event.total_time_enabled += delta;
  if (event.state === PERF_EVENT_STATE_ACTIVE) event.total_time_running += delta;
  event.tstamp = now;
}

/** Mirrors perf_event_set_state(): times up to now, then the new state. */
function _set_state(event: PerfEvent, state: number): void {
  _update_time(event);
  event.state = state;
}

function _groupList(ctx: PerfEventPmuContext, leader: PerfEvent): PerfEvent[] {
  return leader.attr.pinned ? ctx.pinned_groups : ctx.flexible_groups;
}

/** Mirrors perf_install_in_context(): adds the event to its group or context, then reschedules. */
function perf_install_in_context(ctx: PerfEventPmuContext, event: PerfEvent): void {
  const leader = event.group_leader;
  if (leader === event) {
    event.pmu_ctx = ctx;
    _groupList(ctx, event).push(event);
  } else {
    leader.siblings.push(event);
  }
  if (
    event.state === PERF_EVENT_STATE_INACTIVE &&
    (leader === event || leader.state === PERF_EVENT_STATE_ACTIVE)
  ) {
    ctx_resched(ctx, leader.attr.pinned);
  }
}

/** The move_group step of sys_perf_event_open(): a software group goes to `to`. */
function _move_group(
  st: _PerfState,
  leader: PerfEvent,
  to: PerfEventPmuContext,
): PerfEventPmuContext {
  const from = leader.pmu_ctx!;
  group_sched_out(leader);
  const list = _groupList(from, leader);
  list.splice(list.indexOf(leader), 1);
  _cancel_hrtimer_if_idle(st, from);
  leader.pmu_ctx = to;
  _groupList(to, leader).push(leader);
  return to;
}

/**
 * Mirrors perf_remove_from_context() with DETACH_GROUP: off the PMU, out of its group (a
 * leader's siblings become leaders in its place, keeping their state) and context.
 */
function _remove_from_context(event: PerfEvent): void {
  const leader = event.group_leader;
  const ctx = leader.pmu_ctx!;
  event_sched_out(event);
  if (leader !== event) {
    leader.siblings.splice(leader.siblings.indexOf(event), 1);
    return;
  }
  const list = _groupList(ctx, event);
  const at = list.indexOf(event);
  list.splice(at, 1, ...event.siblings);
  for (const sib of event.siblings) {
    sib.group_leader = sib;
    sib.pmu_ctx = ctx;
  }
  event.siblings.length = 0;
  event.pmu_ctx = null;
  _cancel_hrtimer_if_idle(_perf(event.kernel), ctx);
}

function _cancel_hrtimer_if_idle(st: _PerfState, ctx: PerfEventPmuContext): void {
  if (ctx.pinned_groups.length !== 0 || ctx.flexible_groups.length !== 0) return;
  if (ctx.hrtimer_active) (ctx.pmu.dev?.kernel.clock as TimerClock).cancel(ctx.hrtimer);
  ctx.hrtimer_active = false;
  ctx.rotate_necessary = false;
  st.ctxs.delete(ctx.pmu);
}

/** Mirrors event_sched_in(): ACTIVE, then pmu->add(PERF_EF_START); EAGAIN puts it back. */
function event_sched_in(ctx: PerfEventPmuContext, event: PerfEvent): void {
  if (event.state <= PERF_EVENT_STATE_OFF) return;
  _set_state(event, PERF_EVENT_STATE_ACTIVE);
  try {
    event.pmu.add(event, PERF_EF_START);
  } catch (e) {
    _set_state(event, PERF_EVENT_STATE_INACTIVE);
    throw e;
  }
  if (event.attr.exclusive) ctx.exclusive = true;
}

/** Mirrors event_sched_out(): pmu->del() folds the count in; INACTIVE. */
function event_sched_out(event: PerfEvent): void {
  if (event.state !== PERF_EVENT_STATE_ACTIVE) return;
  event.pmu.del(event, 0);
  _set_state(event, PERF_EVENT_STATE_INACTIVE);
  if (event.attr.exclusive) event.group_leader.pmu_ctx!.exclusive = false;
}

/** Mirrors group_sched_out(). */
function group_sched_out(leader: PerfEvent): void {
  event_sched_out(leader);
  for (const sib of leader.siblings) event_sched_out(sib);
}

/**
 * Mirrors group_sched_in(): the leader and its enabled siblings go on together inside a PMU
 * transaction, or none does (what went on is taken off again). False when the group does not
 * fit.
 */
function group_sched_in(ctx: PerfEventPmuContext, leader: PerfEvent): boolean {
  const pmu = ctx.pmu;
  if (leader.state === PERF_EVENT_STATE_OFF) return true;
  pmu.start_txn?.(pmu, PERF_PMU_TXN_ADD);
  const added: PerfEvent[] = [];
  try {
    event_sched_in(ctx, leader);
    added.push(leader);
    for (const sib of leader.siblings) {
      event_sched_in(ctx, sib);
      added.push(sib);
    }
    pmu.commit_txn?.(pmu);
    return true;
  } catch (e) {
    if (!(e instanceof Errno)) throw e;
    for (const ev of added.reverse()) event_sched_out(ev);
    pmu.cancel_txn?.(pmu);
    return false;
  }
}

/** Mirrors group_can_go_on(). */
function group_can_go_on(ctx: PerfEventPmuContext, leader: PerfEvent, can_add_hw: boolean) {
  // Groups of software events only can always go on.
  if ([leader, ...leader.siblings].every(is_software_event)) return true;
  // With an exclusive group on, nothing else goes on.
  if (ctx.exclusive) return false;
  // An exclusive group does not go on beside active groups of its kind (pinned or flexible).
  if (
    leader.attr.exclusive &&
    _groupList(ctx, leader).some((g) => g.state === PERF_EVENT_STATE_ACTIVE)
  ) {
    return false;
  }
  return can_add_hw;
}

/**
 * Mirrors ctx_sched_in() over merge_sched_in(): pinned groups first, then flexible ones in
 * rotation order; after a group that does not fit no other goes on in that pass. A pinned group
 * that does not fit goes to ERROR; a flexible one asks for rotation.
 */
function ctx_sched_in(ctx: PerfEventPmuContext): void {
  for (const pinned of [true, false]) {
    let can_add_hw = true;
    for (const leader of [...(pinned ? ctx.pinned_groups : ctx.flexible_groups)]) {
      if (leader.state <= PERF_EVENT_STATE_OFF || leader.state === PERF_EVENT_STATE_ACTIVE) {
        continue;
      }
      if (group_can_go_on(ctx, leader, can_add_hw)) group_sched_in(ctx, leader);
      if (leader.state !== PERF_EVENT_STATE_INACTIVE) continue;
      can_add_hw = false;
      if (pinned) {
        _set_state(leader, PERF_EVENT_STATE_ERROR);
      } else {
        ctx.rotate_necessary = true;
        perf_mux_hrtimer_restart(ctx);
      }
    }
  }
}

/** Mirrors ctx_resched(): flexible groups (all, for a pinned event) off, then everything on. */
function ctx_resched(ctx: PerfEventPmuContext, pinned: boolean): void {
  if (pinned) { for (const g of ctx.pinned_groups) group_sched_out(g); }
  for (const g of ctx.flexible_groups) group_sched_out(g);
  ctx_sched_in(ctx);
}

/**
 * Mirrors perf_rotate_context(): the first flexible group that is on (or, with none on, the
 * first) goes to the tail, and the flexible groups are scheduled again from the head. False
 * when nothing asked for rotation.
 */
function perf_rotate_context(ctx: PerfEventPmuContext): boolean {
  if (!ctx.rotate_necessary) return false;
  const list = ctx.flexible_groups;
  const event = list.find((g) => g.state === PERF_EVENT_STATE_ACTIVE) ?? list[0];
  ctx.rotate_necessary = false;
  for (const g of list) group_sched_out(g);
  if (event !== undefined) list.push(...list.splice(list.indexOf(event), 1));
  ctx_sched_in(ctx);
  return true;
}

function _timerClock(clock: Clock): TimerClock | null {
  const c = clock as Partial<TimerClock>;
  return typeof c.after === "function" && typeof c.cancel === "function"
    ? clock as TimerClock
    : null;
}

/**
 * Mirrors perf_mux_hrtimer_restart() and perf_mux_hrtimer_handler(): while a flexible group is
 * left out, rotate every `hrtimer_interval_ms`. Software PMUs never need it.
 */
function perf_mux_hrtimer_restart(ctx: PerfEventPmuContext): void {
  const pmu = ctx.pmu;
  if (ctx.hrtimer_active || pmu.task_ctx_nr === perf_sw_context) return;
  const clock = _timerClock(pmu.dev!.kernel.clock);
  if (clock === null) return;
  const tick = () => {
    if (_time_frozen(pmu.dev!.kernel, () => perf_rotate_context(ctx))) {
      ctx.hrtimer = clock.after(pmu.hrtimer_interval_ms! * NSEC_PER_MSEC, tick);
    } else {
      ctx.hrtimer_active = false;
    }
  };
  ctx.hrtimer_active = true;
  ctx.hrtimer = clock.after(pmu.hrtimer_interval_ms! * NSEC_PER_MSEC, tick);
}
