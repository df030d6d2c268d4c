/**
 * perf stat's output: mirrors `tools/perf/util/stat-display.c` for global aggregation (one
 * line per event, counts summed over CPUs and over the PMUs a wildcard named): the standard
 * layout (header, 18-wide counts with thousands separators, the 32-wide name, the empty metric
 * column, `(xx.xx%)` when multiplexed, the elapsed-time footer), interval mode (a timestamp
 * column and its `#  time  counts unit events` header every 26 prints), and CSV (`-x`).
 *
 * Times are nanoseconds of the simulated clock; elapsed time prints in simulated seconds.
 * DIVERGENCE: there is no rusage here, so no `seconds user`/`seconds sys` lines.
 * Thousands separators are `,`, as under an en_US locale.
 *
 * @module
 */

/** CNTR_NOT_COUNTED: the counter never ran. */
export const CNTR_NOT_COUNTED = "<not counted>";
/** CNTR_NOT_SUPPORTED: the kernel refused to open it. */
export const CNTR_NOT_SUPPORTED = "<not supported>";

const METRIC_LEN = 38;
const EVNAME_LEN = 32;
const COUNTS_LEN = 18;
const INTERVAL_LEN = 16;
/** strlen("unit"), perf stat's default unit_width. */
const UNIT_WIDTH = 4;

/** The parts of struct perf_stat_config the output depends on. */
export interface StatDisplayConfig {
  /** `-x` separator: CSV output when set. */
  readonly csv_sep: string | null;
  /** Thousands separators (`-B`, on by default, off in CSV). */
  readonly big_num: boolean;
  /** `-I` interval in ms, 0 when off. */
  readonly interval: number;
  /** `-a`: the header says 'system wide'. */
  readonly system_wide: boolean;
  /** The workload's argv, for the header otherwise. */
  readonly argv: readonly string[];
}

/** One line's worth: an event's counts summed over its counters (struct perf_counts_values). */
export interface CounterValues {
  /** The event's name. */
  readonly name: string;
  /** False when opening it failed with an errno perf stat skips (EINVAL, ENOENT...). */
  readonly supported: boolean;
  /** The (scaled) count. */
  readonly val: number;
  /** ns enabled. */
  readonly ena: number;
  /** ns running. */
  readonly run: number;
}

/** `%'.0f` with `,` thousands separators (perf under an en_US locale) or without. */
function fmtCount(v: number, bigNum: boolean): string {
  const s = Math.round(v).toString();
  return bigNum ? s.replace(/\B(?=(\d{3})+(?!\d))/g, ",") : s;
}

/** Mirrors print_header_std(): the block above the counts. */
export function print_header(config: StatDisplayConfig): string[] {
  if (config.csv_sep !== null) return [];
  if (config.interval) {
    const time = "time".padStart(INTERVAL_LEN - 1);
    return [`#${time} ${"counts".padStart(COUNTS_LEN)} ${"unit".padStart(UNIT_WIDTH)} events`];
  }
  const what = config.system_wide ? "system wide" : config.argv.join(" ");
  return ["", ` Performance counter stats for '${what}':`, ""];
}

/** Seconds and nanoseconds of a simulated time, as struct timespec holds them. */
function timespec(ns: number): [string, string] {
  const whole = Math.round(ns);
  const sec = Math.floor(whole / 1e9);
  return [String(sec), String(whole - sec * 1e9).padStart(9, "0")];
}

/** Mirrors prepare_interval(): the timestamp prefix of an interval's lines. */
export function prepare_interval(config: StatDisplayConfig, ns: number): string {
  const [sec, frac] = timespec(ns);
  return config.csv_sep !== null
    ? `${sec}.${frac}${config.csv_sep}`
    : `${sec.padStart(6)}.${frac} `;
}

/**
 * Mirrors printout() for one event: the count (or `<not counted>` / `<not supported>`), the
 * unit, the name, the metric column, and how much of the time it ran.
 */
export function print_counter(config: StatDisplayConfig, c: CounterValues, prefix = ""): string {
  const ok = c.run !== 0 && c.ena !== 0;
  const bad = c.supported ? CNTR_NOT_COUNTED : CNTR_NOT_SUPPORTED;
  const sep = config.csv_sep;
  if (sep !== null) {
    // print_running_csv(): u64 arithmetic, so the percentage is whole.
    const pct = c.run !== c.ena ? Math.floor(100 * c.run / c.ena) : 100;
    const count = ok ? fmtCount(c.val, false) : bad;
    return `${prefix}${count}${sep}${sep}${c.name}${sep}${c.run}${sep}${
      pct.toFixed(2)
    }${sep}${sep}`;
  }
  const count = (ok ? fmtCount(c.val, config.big_num) : bad).padStart(COUNTS_LEN);
  let line = `${prefix}${count} ${"".padEnd(UNIT_WIDTH)} ${c.name.padEnd(EVNAME_LEN)}`;
  line += "".padEnd(METRIC_LEN);
  if (c.run !== c.ena) line += `  (${(100 * c.run / c.ena).toFixed(2)}%)`;
  return line;
}

/** Mirrors print_footer(): the elapsed time, in the standard layout only. */
export function print_footer(config: StatDisplayConfig, elapsedNs: number): string[] {
  if (config.interval || config.csv_sep !== null) return [];
  const [sec, frac] = timespec(elapsedNs);
  return ["", ` ${`${sec}.${frac}`.padStart(17)} seconds time elapsed`, ""];
}

/** perf stat prints the interval header at the first print and every 26th after it. */
export const INTERVAL_HEADER_EVERY = 26;
