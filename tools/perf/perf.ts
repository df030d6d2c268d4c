/**
 * `perf` on the simulated machine: `perf list` and `perf stat`, as `tools/perf/perf.c`
 * dispatches them. The tool boots a machine (the machine options of `tools/dma`: `--iommu t100`
 * for a SpacemiT T100, `--pci-domain`, `--features` for more series...) with the RISC-V IOMMU HPM
 * series in its kernel whatever `--features` says, reads
 * the PMUs the booted kernel registered from its sysfs, parses the events as perf does and
 * counts them through the kernel's perf_event interface while a workload runs.
 *
 * Perf only knows PMUs by `/sys/bus/event_source/devices`: the HPM driver's
 * (`riscv_iommu_hpm_0`, or `spacemit_ioats_hpm_0` and `spacemit_ioatc_hpm_<id>` on a T100), and
 * any other a driver registers during boot.
 *
 * Options go through `tools/cli.ts`; as perf's own parser, `perf stat` stops at `--` or at the
 * first argument that is not an option (the workload), and takes `-e` more than once. Bad
 * arguments end with one line `perf: <what is wrong>` and status 2; an event string perf cannot
 * parse ends with perf's "event syntax error" block and `Run 'perf list' for a list of valid
 * events`, also status 2. perf stat writes its counts to stderr and the workload's output to
 * stdout, as perf does.
 *
 * @module
 */
import type { Machine } from "@iommu-lab/machine";
import { hpmPart } from "@iommu-lab/riscv-iommu-hpm";
import {
  type CliIo,
  type CliValues,
  consoleIo,
  type OptionSpecs,
  runCli,
  runTool,
  type Tool,
  UsageError,
} from "../cli.ts";
import { bootMachine, MACHINE_OPTIONS } from "../dma/_machine.ts";
import { cmd_list } from "./builtin_list.ts";
import { run_perf_stat } from "./builtin_stat.ts";
import {
  type Evsel,
  parse_events,
  parse_events_error__print,
  ParseEventsError,
} from "./util/parse_events.ts";
import { perf_pmus, type PerfPmu } from "./util/pmu.ts";
import { pmu_sys_events } from "./util/pmu_events.ts";
import { parse_workload } from "./workloads.ts";

/** What perf talks to: its two output streams and the machine it boots. */
export interface PerfEnv extends CliIo {
  /** Boots the machine the machine options describe. */
  boot(v: CliValues<typeof MACHINE_OPTIONS>): Machine;
}

/**
 * Boots the machine of the tools' options with the HPM series, named in `--features` or not: its
 * PMUs are perf's.
 */
export function bootPerfMachine(v: CliValues<typeof MACHINE_OPTIONS>): Machine {
  return bootMachine(v, [hpmPart()]);
}

/** The process's streams and the tools' machine with the HPM series. */
export const defaultEnv: PerfEnv = { ...consoleIo, boot: bootPerfMachine };

/** perf stat's options (`-e` is taken out before the others are parsed: it repeats). */
export const STAT_OPTIONS = {
  "all-cpus": { type: "boolean", short: "a", help: "system-wide collection (uncore PMUs need it)" },
  "event": {
    type: "string",
    short: "e",
    arg: "EVENT",
    help: "event selector, repeatable: pmu/terms/, alias, rNNN, type:config, {a,b}",
  },
  "interval-print": {
    type: "int",
    short: "I",
    arg: "MS",
    help: "print the counts every MS of simulated time (>= 10)",
  },
  "interval-count": { type: "int", help: "stop after N intervals" },
  "field-separator": { type: "string", short: "x", arg: "SEP", help: "CSV output (\\t: a tab)" },
  "timeout": { type: "int", arg: "MS", help: "stop counting after MS of simulated time (>= 10)" },
  "big-num": { type: "boolean", short: "B", help: "thousands separators (the default)" },
  "no-big-num": { type: "boolean", help: "no thousands separators" },
  ...MACHINE_OPTIONS,
} as const;

/** perf list's options. */
export const LIST_OPTIONS = {
  "details": { type: "boolean", help: "each event's encoding and every PMU's whole format" },
  "long-desc": { type: "boolean", short: "v", help: "long descriptions" },
  ...MACHINE_OPTIONS,
} as const;

const SUMMARY = `perf for the simulated machine: the PMUs its kernel registered, counted while a
workload runs. Commands:
  list [options] [pmu|<event glob>]   the PMUs' events and raw descriptors
  stat [options] -e <events> [--] [<workload> [<args>]]
                                      count the events; workloads: dmatest [dmatest options],
                                      sleep <seconds>
'perf list --help' and 'perf stat --help' list their options.`;

/**
 * Splits `args` where perf stops parsing options (PARSE_OPT_STOP_AT_NON_OPTION): at `--` or at
 * the first argument that is neither an option nor an option's value; every `-e`/`--event` is
 * taken out into `events` (perf takes it more than once).
 */
function split_args(args: readonly string[], options: OptionSpecs, events: string[]) {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type === "boolean") continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  const opts: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") return { opts, rest: args.slice(i + 1) };
    if (!a.startsWith("-") || a === "-") return { opts, rest: args.slice(i) };
    if (a === "-e" || a === "--event") {
      const v = args[++i];
      if (v === undefined || /^-[^0-9]/.test(v)) throw new UsageError(`${a} needs a value`);
      events.push(v);
    } else if (a.startsWith("--event=") || /^-e./.test(a)) {
      events.push(a.slice(a.startsWith("--") ? 8 : 2));
    } else {
      opts.push(a);
      if (takesValue.has(a) && i + 1 < args.length) opts.push(args[++i]);
    }
  }
  return { opts, rest: [] };
}

function scan(machine: Machine): PerfPmu[] {
  return perf_pmus(machine.kernel, pmu_sys_events());
}

/** Parses every -e string; prints perf's error block and returns null when one is bad. */
function parse_all_events(io: CliIo, strings: readonly string[], pmus: readonly PerfPmu[]) {
  const evsels: Evsel[] = [];
  let counters = 0;
  for (const str of strings) {
    let parsed;
    try {
      parsed = parse_events(str, pmus);
    } catch (e) {
      if (!(e instanceof ParseEventsError)) throw e;
      for (const l of parse_events_error__print(e, str)) io.err(l);
      io.err("Run 'perf list' for a list of valid events");
      return null;
    }
    if (parsed.regrouped) io.err("WARNING: events were regrouped to match PMUs");
    const base = evsels.length;
    for (const ev of parsed.evsels) {
      evsels.push({ ...ev, leader: ev.leader + base, counter: ev.counter + counters });
    }
    counters += Math.max(0, ...parsed.evsels.map((e) => e.counter + 1));
  }
  return evsels;
}

function stat_tool(
  events: readonly string[],
  workloadArgs: readonly string[],
  env: PerfEnv,
): Tool<typeof STAT_OPTIONS> {
  return {
    usage: "deno run -A tools/perf/perf.ts stat [options] -e <events> [--] [<workload> [<args>]]",
    summary: "Counts the events while the workload (dmatest [options], sleep <seconds>) runs.",
    options: STAT_OPTIONS,
    main(v, io) {
      const interval = v["interval-print"] ?? 0;
      const intervalCount = v["interval-count"] ?? 0;
      const timeout = v.timeout ?? 0;
      const raw = v["field-separator"] ?? null;
      const sep = raw === "\\t" ? "\t" : raw;
      // builtin-stat.c's checks, in its words.
      if (v["interval-print"] !== undefined && interval < 10) {
        throw new UsageError("print interval must be >= 10ms");
      }
      if (v.timeout !== undefined && timeout < 10) throw new UsageError("timeout must be >= 10ms.");
      if (timeout && interval) {
        throw new UsageError("timeout option is not supported with interval-print.");
      }
      if (intervalCount && !interval) {
        throw new UsageError("interval-count option should be used together with interval-print.");
      }
      if (sep !== null && v["big-num"]) throw new UsageError("-B option not supported with -x");
      if (events.length === 0) {
        throw new UsageError("no event given (-e): this kernel has no default events to count");
      }
      const systemWide = v["all-cpus"];
      const workload = workloadArgs.length !== 0 ? parse_workload(workloadArgs) : null;
      if (workload === null && !systemWide) {
        throw new UsageError("nothing to count: give a workload, or -a");
      }
      if (workload === null && !timeout && !intervalCount) {
        throw new UsageError(
          "-a without a workload needs --timeout or --interval-count (nothing interrupts a simulated run)",
        );
      }
      const machine = env.boot(v);
      const evsels = parse_all_events(io, events, scan(machine));
      if (evsels === null) return 2;
      return run_perf_stat(
        machine,
        evsels,
        {
          csv_sep: sep,
          big_num: sep === null && !v["no-big-num"],
          interval,
          interval_count: intervalCount,
          timeout,
          system_wide: systemWide,
          argv: workload?.argv ?? [],
        },
        workload,
        io,
      );
    },
  };
}

function list_tool(env: PerfEnv): Tool<typeof LIST_OPTIONS> {
  return {
    usage: "deno run -A tools/perf/perf.ts list [options] [pmu|<event glob>]",
    summary: "Lists the PMUs' events (sysfs, pmu-events JSON) and raw event descriptors.",
    options: LIST_OPTIONS,
    operands: "[pmu|<event glob>]",
    main(v, io, operands) {
      if (operands.length > 1) {
        throw new UsageError("list takes at most one of: pmu, <event glob>");
      }
      const lines = cmd_list(scan(env.boot(v)), {
        details: v.details,
        long_desc: v["long-desc"],
        what: operands[0] ?? null,
      });
      for (const l of lines) io.out(l);
    },
  };
}

/** `perf <command>`: dispatches to `perf stat` or `perf list`, each parsing its own options. */
export function perf_tool(env: PerfEnv): Tool<Record<string, never>> {
  return {
    usage: "deno run -A tools/perf/perf.ts <command> [<options>]",
    summary: SUMMARY,
    options: {},
    operands: "<command> [<args>]",
    main(_v, _io, operands) {
      const [cmd, ...rest] = operands;
      if (cmd === undefined) {
        throw new UsageError("no command given: perf list, perf stat (see 'perf --help')");
      }
      if (cmd === "stat") {
        const events: string[] = [];
        const { opts, rest: workload } = split_args(rest, STAT_OPTIONS, events);
        return runCli("perf", opts, stat_tool(events, workload, env), env);
      }
      if (cmd === "list") return runCli("perf", rest, list_tool(env), env);
      throw new UsageError(`'${cmd}' is not a perf-command. See 'perf --help'.`);
    },
  };
}

/**
 * The command line: `perf list ...` or `perf stat ...`; resolves to the exit status (the
 * workload's for perf stat, 2 for a bad argument or event).
 */
export function perfMain(args: readonly string[], env: PerfEnv = defaultEnv): Promise<number> {
  return runCli("perf", args, perf_tool(env), env);
}

/** `perf` on the process's streams and the tools' machine. */
export const cli: Tool<Record<string, never>> = perf_tool(defaultEnv);

if (import.meta.main) await runTool("perf", Deno.args, cli);
