/**
 * What `perf stat -- <workload>` can run on the simulated machine (perf forks a command; here
 * the command is a scenario of `tools/`):
 *
 * - `dmatest [options]`: the dmatest analog of `tools/dma` with its module parameters as
 *   options (`--iterations 10 --test_buf_size 4096 --dmatest 1`, see `dmatest.ts --help`);
 *   defaults `--iterations 1 --max_channels 1`, one test on `dma0chan0` as in the series' cover
 *   letter. Prints dmatest's kernel log lines as the console shows them; exits 1 when a test
 *   failed.
 * - `sleep <seconds>`: the machine idles that long (simulated; fractions allowed).
 *
 * @module
 */
import { formatTimestamp } from "@iommu-lab/kernel";
import type { Machine } from "@iommu-lab/machine";
import { parseCli, parseDecimal, refusedAsUsage, UsageError } from "../cli.ts";
import { DMATEST_PARAMS, dmatestOptions, runDmatest } from "../dma/dmatest.ts";

/** A workload ready to run. */
export interface Workload {
  /** Its command line, as the stat header shows it. */
  readonly argv: readonly string[];
  /** Runs it to the end; the lines it printed and its exit status. */
  run(machine: Machine): { readonly lines: string[]; readonly status: number };
}

/** dmatest's parameters with the workload's defaults. */
const DMATEST_WORKLOAD_PARAMS = {
  ...DMATEST_PARAMS,
  iterations: { ...DMATEST_PARAMS.iterations, default: 1 },
  max_channels: { ...DMATEST_PARAMS.max_channels, default: 1 },
} as const;

/** Runs `fn`, naming `cmd` in the usage errors it throws. */
function named<T>(cmd: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    const msg = e.message.startsWith(`${cmd}: `) ? e.message : `${cmd}: ${e.message}`;
    throw new UsageError(msg);
  }
}

/**
 * Parses a workload's command line; a {@linkcode UsageError} naming the workload when it cannot
 * run (`dmatest: --iterations: ten is not an integer (decimal or 0x)`).
 */
export function parse_workload(argv: readonly string[]): Workload {
  const [cmd, ...args] = argv;
  if (cmd === "dmatest") {
    const opts = named(cmd, () => {
      const spec = { usage: "dmatest [options]", summary: "", options: DMATEST_WORKLOAD_PARAMS };
      const v = parseCli(args, spec);
      if (v === null) throw new UsageError("see deno run -A tools/dma/dmatest.ts --help");
      return dmatestOptions(v);
    });
    return {
      argv,
      run(machine) {
        const dmesg = machine.kernel.dmesg;
        const start = dmesg.records().length;
        // What the module's parameter checks refuse is a bad argument, as for dmatest.ts.
        const r = named(
          cmd,
          () => refusedAsUsage(["EINVAL", "ENODEV"], () => runDmatest(machine, opts)),
        );
        const lines = dmesg.records().slice(start).filter((rec) => rec.text.startsWith("dmatest: "))
          .map((rec) => `${formatTimestamp(rec.ns)} ${rec.text}`);
        return { lines, status: r.failures === 0 ? 0 : 1 };
      },
    };
  }
  if (cmd === "sleep") {
    if (args.length !== 1) throw new UsageError("sleep: wants one number of seconds");
    const sec = named(cmd, () => parseDecimal(args[0], "seconds"));
    return {
      argv,
      run(machine) {
        machine.run(Math.round(sec * 1e9));
        return { lines: [], status: 0 };
      },
    };
  }
  throw new UsageError(`unknown workload '${cmd}' (workloads: dmatest, sleep)`);
}
