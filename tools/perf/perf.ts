/**
 * `perf` on the simulated machine: `perf list` and `perf stat`, as `tools/perf/perf.c`
 * dispatches them. The tool boots a machine (the machine flags of `tools/dma`), reads the PMUs
 * the booted kernel registered from its sysfs, parses the events as perf does and counts them
 * through the kernel's perf_event interface while a workload runs.
 *
 * Any PMU a driver registers during boot (the RISC-V IOMMU HPM driver, once a machine has one)
 * is there without a change here: perf only knows PMUs by `/sys/bus/event_source/devices`.
 *
 * Bad arguments end with one line `perf: <what is wrong>` and status 2; an event string perf
 * cannot parse ends with perf's "event syntax error" block and `Run 'perf list' for a list of
 * valid events`, also status 2. perf stat writes its counts to stderr and the workload's output
 * to stdout, as perf does.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Machine } from "@iommu-lab/machine";
import { bootFromFlags, MACHINE_FLAGS, MACHINE_HELP } from "../dma/_cli.ts";
import { cmd_list } from "./builtin-list.ts";
import { run_perf_stat } from "./builtin-stat.ts";
import {
  type Evsel,
  parse_events,
  parse_events_error__print,
  ParseEventsError,
} from "./util/parse-events.ts";
import { perf_pmus, type PerfPmu } from "./util/pmu.ts";
import { pmu_sys_events } from "./util/pmu-events.ts";
import { parse_workload, type Workload, WorkloadUsageError } from "./workloads.ts";

/** The machine flags, as parsed. */
export type MachineFlags = Parameters<typeof bootFromFlags>[0];

/** What perf talks to: its two output streams and the machine it boots. */
export interface PerfEnv {
  /** A line on stdout. */
  out(line: string): void;
  /** A line on stderr. */
  err(line: string): void;
  /** Boots the machine the flags describe (throws RangeError on a bad flag value). */
  boot(flags: MachineFlags): Machine;
}

/** The process's streams and {@linkcode bootFromFlags}. */
export const defaultEnv: PerfEnv = {
  out: (l) => console.log(l),
  err: (l) => console.error(l),
  boot: bootFromFlags,
};

/** A bad argument: perf prints `perf: <message>` and exits with 2. */
class UsageError extends Error {}

const HELP = `Usage: deno run -A tools/perf/perf.ts <command> [<options>]

 perf list [--details] [-v|--long-desc] [pmu|<event glob>]
     the PMUs' events (sysfs aliases, pmu-events JSON) and raw descriptors

 perf stat [-a] -e <events> [-I <ms> [--interval-count <n>]] [-x <sep>] [--timeout <ms>]
           [--no-big-num] [--] [<workload> [<args>]]
    -a, --all-cpus            system-wide collection (uncore PMUs need it)
    -e, --event <event>       event selector, repeatable: pmu/terms/, alias, rNNN, {a,b}
    -I, --interval-print <n>  print counts every n ms of simulated time (>= 10)
        --interval-count <n>  stop after n intervals
    -x, --field-separator <s> CSV output with separator s
        --timeout <n>         stop counting after n ms of simulated time
    -B, --big-num             thousands separators (the default); --no-big-num turns them off

 workloads: dmatest [param=value ...] (defaults iterations=1 max_channels=1), sleep <seconds>

`;

type OptSpec = { type: "string" | "boolean"; short?: string; multiple?: boolean };

const STAT_OPTIONS: Record<string, OptSpec> = {
  "all-cpus": { type: "boolean", short: "a" },
  "event": { type: "string", short: "e", multiple: true },
  "interval-print": { type: "string", short: "I" },
  "interval-count": { type: "string" },
  "field-separator": { type: "string", short: "x" },
  "timeout": { type: "string" },
  "big-num": { type: "boolean", short: "B" },
  "no-big-num": { type: "boolean" },
  "help": { type: "boolean", short: "h" },
};

const LIST_OPTIONS: Record<string, OptSpec> = {
  "details": { type: "boolean" },
  "long-desc": { type: "boolean", short: "v" },
  "desc": { type: "boolean", short: "d" },
  "help": { type: "boolean", short: "h" },
};

/**
 * Splits a command line where perf stops parsing options (PARSE_OPT_STOP_AT_NON_OPTION): at
 * `--` or at the first argument that is not an option or an option's value.
 */
function splitAtWorkload(args: readonly string[], options: Record<string, OptSpec>) {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== "string") continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(o.short);
  }
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i];
    if (a === "--") return { opts: args.slice(0, i), rest: args.slice(i + 1) };
    if (!a.startsWith("-") || a === "-") break;
    if (a.startsWith("--")) {
      if (!a.includes("=") && takesValue.has(a)) i++;
      continue;
    }
    // A cluster of short options: the first that takes a value takes the rest, or the next arg.
    for (let k = 1; k < a.length; k++) {
      if (!takesValue.has(a[k])) continue;
      if (k === a.length - 1) i++;
      break;
    }
  }
  return { opts: args.slice(0, i), rest: args.slice(i) };
}

/** What {@linkcode parseOptions} returns. */
interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  tokens: { kind: string; name?: string; rawName?: string }[];
}

/** parseArgs with its errors turned into one-line usage errors. */
function parseOptions(
  args: readonly string[],
  options: Record<string, OptSpec>,
  positionals: boolean,
): Parsed {
  try {
    return parseArgs({
      args: [...args],
      options: { ...options, ...MACHINE_FLAGS },
      strict: true,
      allowPositionals: positionals,
      tokens: true,
    }) as Parsed;
  } catch (e) {
    // parseArgs explains at length; the first sentence says what is wrong.
    const msg = (e as Error).message.split(/\.(?:\s|$)/)[0];
    throw new UsageError(msg[0].toLowerCase() + msg.slice(1));
  }
}

/** The value of a numeric option, in perf's words when it is not a number. */
function uint(
  tokens: readonly { kind: string; name?: string; rawName?: string }[],
  name: string,
  value: string | undefined,
): number {
  if (value === undefined) return 0;
  if (!/^[0-9]+$/.test(value)) {
    const raw = tokens.findLast((t) => t.kind === "option" && t.name === name)?.rawName ?? name;
    const what = raw.startsWith("--") ? `option \`${name}'` : `switch \`${raw.slice(1)}'`;
    throw new UsageError(`${what} expects a numerical value`);
  }
  return Number(value);
}

function bootAndScan(env: PerfEnv, values: Record<string, unknown>) {
  let machine: Machine;
  try {
    machine = env.boot(values as MachineFlags);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  return { machine, pmus: perf_pmus(machine.kernel, pmu_sys_events()) };
}

/** Parses every -e string; prints perf's error block and returns null when one is bad. */
function parseAllEvents(env: PerfEnv, strings: readonly string[], pmus: readonly PerfPmu[]) {
  const evsels: Evsel[] = [];
  let counters = 0;
  for (const str of strings) {
    let parsed;
    try {
      parsed = parse_events(str, pmus);
    } catch (e) {
      if (!(e instanceof ParseEventsError)) throw e;
      for (const l of parse_events_error__print(e, str)) env.err(l);
      env.err("Run 'perf list' for a list of valid events");
      return null;
    }
    if (parsed.regrouped) env.err("WARNING: events were regrouped to match PMUs");
    const base = evsels.length;
    for (const ev of parsed.evsels) {
      evsels.push({ ...ev, leader: ev.leader + base, counter: ev.counter + counters });
    }
    counters += Math.max(0, ...parsed.evsels.map((e) => e.counter + 1));
  }
  return evsels;
}

function cmdStat(args: readonly string[], env: PerfEnv): number {
  const { opts, rest } = splitAtWorkload(args, { ...STAT_OPTIONS, ...MACHINE_FLAGS });
  const { values, tokens } = parseOptions(opts, STAT_OPTIONS, false);
  if (values.help) {
    env.out(HELP + MACHINE_HELP);
    return 0;
  }
  const interval = uint(tokens, "interval-print", values["interval-print"] as string | undefined);
  const intervalCount = uint(
    tokens,
    "interval-count",
    values["interval-count"] as string | undefined,
  );
  const timeout = uint(tokens, "timeout", values.timeout as string | undefined);
  let sep = (values["field-separator"] as string | undefined) ?? null;
  if (sep === "\\t") sep = "\t";
  if (values["interval-print"] !== undefined && interval < 10) {
    throw new UsageError("print interval must be >= 10ms");
  }
  if (values.timeout !== undefined && timeout < 10) {
    throw new UsageError("timeout must be >= 10ms.");
  }
  if (timeout && interval) {
    throw new UsageError("timeout option is not supported with interval-print.");
  }
  if (intervalCount && !interval) {
    throw new UsageError("interval-count option should be used together with interval-print.");
  }
  if (sep !== null && values["big-num"]) throw new UsageError("-B option not supported with -x");
  const events = (values.event as string[] | undefined) ?? [];
  if (events.length === 0) {
    throw new UsageError("no event given (-e): this kernel has no default events to count");
  }
  const systemWide = values["all-cpus"] === true;
  let workload: Workload | null = null;
  if (rest.length !== 0) {
    try {
      workload = parse_workload(rest);
    } catch (e) {
      if (e instanceof WorkloadUsageError) throw new UsageError(e.message);
      throw e;
    }
  } else if (!systemWide) {
    throw new UsageError("nothing to count: give a workload, or -a");
  } else if (!timeout && !intervalCount) {
    throw new UsageError(
      "-a without a workload needs --timeout or --interval-count (nothing interrupts a simulated run)",
    );
  }
  const { machine, pmus } = bootAndScan(env, values);
  const evsels = parseAllEvents(env, events, pmus);
  if (evsels === null) return 2;
  return run_perf_stat(
    machine,
    evsels,
    {
      csv_sep: sep,
      big_num: sep === null && values["no-big-num"] !== true,
      interval,
      interval_count: intervalCount,
      timeout,
      system_wide: systemWide,
      argv: workload?.argv ?? [],
    },
    workload,
    { out: env.out, err: env.err },
  );
}

function cmdList(args: readonly string[], env: PerfEnv): number {
  const { values, positionals } = parseOptions(args, LIST_OPTIONS, true);
  if (values.help) {
    env.out(HELP + MACHINE_HELP);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError("list takes at most one of: pmu, <event glob>");
  const { pmus } = bootAndScan(env, values);
  const lines = cmd_list(pmus, {
    details: values.details === true,
    long_desc: values["long-desc"] === true,
    what: positionals[0] ?? null,
  });
  for (const l of lines) env.out(l);
  return 0;
}

/**
 * The command line: `perf list ...` or `perf stat ...`; returns the exit status (the
 * workload's for perf stat, 2 for a bad argument or event).
 */
export function perfMain(args: readonly string[], env: PerfEnv = defaultEnv): number {
  const [cmd, ...rest] = args;
  try {
    if (cmd === "-h" || cmd === "--help" || cmd === "help") {
      env.out(HELP + MACHINE_HELP);
      return 0;
    }
    if (cmd === undefined) {
      throw new UsageError("no command given: perf list, perf stat (see 'perf --help')");
    }
    if (cmd === "stat") return cmdStat(rest, env);
    if (cmd === "list") return cmdList(rest, env);
    throw new UsageError(`'${cmd}' is not a perf-command. See 'perf --help'.`);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    env.err(`perf: ${e.message}`);
    return 2;
  }
}

if (import.meta.main) Deno.exit(perfMain(Deno.args));
