/**
 * `perf stat`: mirrors `tools/perf/builtin-stat.c` on the simulated machine. It opens one
 * counter per event and CPU (system-wide with `-a`, else on the workload's task; an uncore PMU's
 * events on the CPUs of its `cpumask`), group leaders disabled and then enabled when the
 * workload starts, runs the workload, and prints the counts scaled by time enabled over time
 * running, as perf does.
 *
 * An event the kernel refuses with EINVAL, ENOENT, ENOSYS, ENXIO or EOPNOTSUPP prints as
 * `<not supported>` (so does a group member whose leader was refused); any other errno ends the
 * run with perf's `Error:` message. `-I` prints the counts of each interval as it ends; the
 * interval cut short by the workload's end is not printed, as in perf.
 *
 * DIVERGENCE: a workload is a function of the simulated machine and cannot be killed, so
 * `--timeout` stops the counters (and the elapsed time) when it expires and lets the workload
 * finish.
 *
 * @module
 */
import { type ErrnoName, isErrno } from "@iommu-lab/kernel";
import type { Machine } from "@iommu-lab/machine";
import {
  perf_event_disable,
  perf_event_enable,
  perf_event_open,
  perf_event_read_value,
  perf_event_release_kernel,
  type PerfEvent,
  type PerfEventValue,
} from "@iommu-lab/perf";
import type { Evsel } from "./util/parse_events.ts";
import {
  type CounterValues,
  INTERVAL_HEADER_EVERY,
  prepare_interval,
  print_counter,
  print_footer,
  print_header,
  type StatDisplayConfig,
} from "./util/stat_display.ts";
import type { Workload } from "./workloads.ts";

/** perf stat's options that shape the run (the display ones are in the config). */
export interface StatOptions extends StatDisplayConfig {
  /** `--interval-count`: stop after this many intervals (0: no limit). */
  readonly interval_count: number;
  /** `--timeout` in ms (0: none). */
  readonly timeout: number;
}

/** Where perf stat writes: the workload's output and perf's own (stderr, as perf). */
export interface StatIo {
  /** A line of the workload's output. */
  out(line: string): void;
  /** A line of perf's output. */
  err(line: string): void;
}

/** The errno perf stat reports as `<not supported>` and goes on (stat_handle_error()). */
const SKIPPED: readonly ErrnoName[] = ["EINVAL", "ENOSYS", "ENOENT", "ENXIO", "EOPNOTSUPP"];

/** strerror() for the errno perf_event_open() can return here. */
const STRERROR: Partial<Record<ErrnoName, string>> = {
  EPERM: "Operation not permitted",
  ESRCH: "No such process",
  EBADF: "Bad file descriptor",
  EAGAIN: "Resource temporarily unavailable",
  ENOMEM: "Cannot allocate memory",
  EACCES: "Permission denied",
  EBUSY: "Device or resource busy",
  ENODEV: "No such device",
  E2BIG: "Argument list too long",
};

interface Counter {
  readonly evsel: Evsel;
  /** One event per CPU the evsel is opened on. */
  readonly events: PerfEvent[];
  supported: boolean;
  /** The raw values at the last interval. */
  prev: PerfEventValue[];
}

/** The CPUs (or -1: any, following the task) an evsel is opened on. */
function evsel_cpus(evsel: Evsel, systemWide: boolean): readonly number[] {
  if (evsel.pmu?.is_uncore && evsel.pmu.cpus !== null) return evsel.pmu.cpus;
  return systemWide ? [0] : [-1];
}

/** Opens every counter; null after a fatal errno (its message printed). */
function open_counters(
  machine: Machine,
  evsels: readonly Evsel[],
  opts: StatOptions,
  io: StatIo,
): Counter[] | null {
  const counters: Counter[] = [];
  for (const [i, evsel] of evsels.entries()) {
    const leader = evsel.leader === i ? null : counters[evsel.leader];
    const c: Counter = { evsel, events: [], supported: true, prev: [] };
    counters.push(c);
    if (leader !== null && !leader.supported) {
      c.supported = false;
      continue;
    }
    for (const [k, cpu] of evsel_cpus(evsel, opts.system_wide).entries()) {
      const attr = { ...evsel.attr, disabled: leader === null };
      try {
        c.events.push(perf_event_open(
          machine.kernel,
          attr,
          opts.system_wide ? -1 : 0,
          cpu,
          leader?.events[k] ?? null,
        ));
      } catch (e) {
        if (!isErrno(e)) throw e;
        if (SKIPPED.includes(e.code)) {
          c.supported = false;
          break;
        }
        io.err("Error:");
        io.err(
          `The sys_perf_event_open() syscall returned with ${e.errno} (${
            STRERROR[e.code] ?? e.code
          }) for event (${evsel.name}).`,
        );
        io.err('"dmesg | grep -i perf" may provide additional information.');
        close_counters(counters);
        return null;
      }
    }
    if (!c.supported) {
      for (const ev of c.events) perf_event_release_kernel(ev);
      c.events.length = 0;
    }
  }
  return counters;
}

function close_counters(counters: readonly Counter[]): void {
  for (const c of [...counters].reverse()) for (const ev of c.events) perf_event_release_kernel(ev);
}

/**
 * One line per event of the string: its counters read, deltas since the last interval when
 * `delta`, each scaled as perf_counts_values__scale() does, then summed.
 */
function read_counters(counters: readonly Counter[], delta: boolean): CounterValues[] {
  const lines = new Map<
    number,
    { name: string; supported: boolean; val: number; ena: number; run: number }
  >();
  for (const c of counters) {
    let line = lines.get(c.evsel.counter);
    if (line === undefined) {
      line = { name: c.evsel.name, supported: false, val: 0, ena: 0, run: 0 };
      lines.set(c.evsel.counter, line);
    }
    if (!c.supported) continue;
    line.supported = true;
    c.events.forEach((ev, k) => {
      const now = perf_event_read_value(ev);
      const prev = delta ? c.prev[k] : undefined;
      c.prev[k] = now;
      const val = Number(now.count - (prev?.count ?? 0n));
      const ena = now.enabled - (prev?.enabled ?? 0);
      const run = now.running - (prev?.running ?? 0);
      line.val += run === 0 ? 0 : run < ena ? Math.floor(val * ena / run) : val;
      line.ena += ena;
      line.run += run;
    });
  }
  return [...lines.values()];
}

/**
 * Runs perf stat over `evsels`: opens, enables, runs `workload` (or idles until `--timeout` or
 * the `--interval-count`th interval), prints. Returns the exit status: the workload's, or 1
 * when a counter could not be opened.
 */
export function run_perf_stat(
  machine: Machine,
  evsels: readonly Evsel[],
  opts: StatOptions,
  workload: Workload | null,
  io: StatIo,
): number {
  const counters = open_counters(machine, evsels, opts, io);
  if (counters === null) return 1;
  const clock = machine.silicon.clock;
  for (const c of counters) for (const ev of c.events) perf_event_enable(ev);
  const t0 = clock.now();
  // In an object: the closures below set it, which the compiler's narrowing cannot see.
  const span = { end: null as number | null };
  let intervals = 0;
  let intervalTimer = -1;
  let timeoutTimer = -1;
  const stop = () => {
    if (span.end !== null) return;
    for (const c of counters) for (const ev of c.events) perf_event_disable(ev);
    span.end = clock.now();
    clock.cancel(intervalTimer);
    clock.cancel(timeoutTimer);
  };
  const tick = () => {
    const prefix = prepare_interval(opts, clock.now() - t0);
    if (intervals % INTERVAL_HEADER_EVERY === 0) print_header(opts).forEach((l) => io.err(l));
    for (const v of read_counters(counters, true)) io.err(print_counter(opts, v, prefix));
    intervals++;
    if (opts.interval_count && intervals >= opts.interval_count) stop();
    else intervalTimer = clock.after(opts.interval * 1e6, tick);
  };
  if (opts.interval) intervalTimer = clock.after(opts.interval * 1e6, tick);
  if (opts.timeout) timeoutTimer = clock.after(opts.timeout * 1e6, stop);
  let status = 0;
  try {
    if (workload !== null) {
      const res = workload.run(machine);
      status = res.status;
      stop();
      for (const l of res.lines) io.out(l);
    } else {
      while (span.end === null && clock.advanceToNextEvent());
    }
    if (!opts.interval) {
      const lines = [
        ...print_header(opts),
        ...read_counters(counters, false).map((v) => print_counter(opts, v)),
        ...print_footer(opts, span.end! - t0),
      ];
      for (const l of lines) io.err(l);
    }
  } finally {
    stop();
    close_counters(counters);
  }
  return status;
}
