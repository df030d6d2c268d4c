/**
 * What `perf stat -- <workload>` can run on the simulated machine (perf forks a command; here
 * the command is a scenario of `tools/`):
 *
 * - `dmatest [param=value ...]`: the dmatest analog of `tools/dma` with the module's parameter
 *   syntax (`iterations=10 test_buf_size=4096 dmatest=1`); defaults `iterations=1
 *   max_channels=1`, one test on `dma0chan0` as in the series' cover letter. Prints dmatest's
 *   kernel log lines as the console shows them; exits 1 when a test failed.
 * - `sleep <seconds>`: the machine idles that long (simulated; fractions allowed).
 *
 * @module
 */
import { formatTimestamp, isErrno } from "@iommu-lab/kernel";
import type { Machine } from "@iommu-lab/machine";
import { type DmatestOptions, runDmatest } from "../dma/dmatest.ts";

/** A workload ready to run. */
export interface Workload {
  /** Its command line, as the stat header shows it. */
  readonly argv: readonly string[];
  /** Runs it to the end; the lines it printed and its exit status. */
  run(machine: Machine): { readonly lines: string[]; readonly status: number };
}

/** A workload's arguments are wrong: perf says so in one line and exits 2. */
export class WorkloadUsageError extends Error {
  /** `message` says what is wrong, without the tool name. */
  constructor(message: string) {
    super(message);
    this.name = "WorkloadUsageError";
  }
}

type ParamKind = "int" | "bool" | "string";

/** dmatest's module parameters this workload takes, by kind. */
const DMATEST_PARAMS: Readonly<Record<string, ParamKind>> = {
  iterations: "int",
  test_buf_size: "int",
  threads_per_chan: "int",
  max_channels: "int",
  channel: "string",
  noverify: "bool",
  norandom: "bool",
  transfer_size: "int",
  alignment: "int",
  dmatest: "int",
  timeout: "int",
  seed: "int",
  verbose: "bool",
};

function dmatestOptions(args: readonly string[]): DmatestOptions {
  const opts: Record<string, unknown> = { iterations: 1, max_channels: 1 };
  for (const arg of args) {
    const eq = arg.indexOf("=");
    const key = eq < 0 ? arg : arg.slice(0, eq);
    const kind = DMATEST_PARAMS[key];
    if (kind === undefined) throw new WorkloadUsageError(`dmatest: unknown parameter '${key}'`);
    const value = eq < 0 ? null : arg.slice(eq + 1);
    if (kind === "bool") {
      // param_set_bool(): y/Y/1 or n/N/0; a bare name means true.
      if (value !== null && !/^[yYnN01]$/.test(value)) {
        throw new WorkloadUsageError(`dmatest: ${key} wants y/n/1/0, not '${value}'`);
      }
      opts[key] = value === null || /^[yY1]$/.test(value);
    } else if (value === null || value === "") {
      throw new WorkloadUsageError(`dmatest: ${key} needs a value`);
    } else if (kind === "int") {
      if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) {
        throw new WorkloadUsageError(`dmatest: ${key} wants an integer, not '${value}'`);
      }
      opts[key] = Number(value);
    } else {
      opts[key] = value;
    }
  }
  if ("dmatest" in opts) {
    if (opts.dmatest !== 0 && opts.dmatest !== 1) {
      throw new WorkloadUsageError("dmatest: dmatest wants 0 (memcpy) or 1 (memset)");
    }
    opts.mode = opts.dmatest === 1 ? "fill" : "copy";
    delete opts.dmatest;
  }
  return opts as DmatestOptions;
}

/** Parses a workload's command line; {@linkcode WorkloadUsageError} when it cannot run. */
export function parse_workload(argv: readonly string[]): Workload {
  const [cmd, ...args] = argv;
  if (cmd === "dmatest") {
    const opts = dmatestOptions(args);
    return {
      argv,
      run(machine) {
        const dmesg = machine.kernel.dmesg;
        const start = dmesg.records().length;
        let status = 0;
        try {
          status = runDmatest(machine, opts).failures === 0 ? 0 : 1;
        } catch (e) {
          if (!isErrno(e)) throw e;
          return { lines: [e.message], status: 1 };
        }
        const lines = dmesg.records().slice(start).filter((r) => r.text.startsWith("dmatest: "))
          .map((r) => `${formatTimestamp(r.ns)} ${r.text}`);
        return { lines, status };
      },
    };
  }
  if (cmd === "sleep") {
    const sec = args.length === 1 && /^[0-9]+(\.[0-9]+)?$/.test(args[0]) ? Number(args[0]) : NaN;
    if (Number.isNaN(sec)) throw new WorkloadUsageError("sleep: wants one number of seconds");
    return {
      argv,
      run(machine) {
        machine.run(Math.round(sec * 1e9));
        return { lines: [], status: 0 };
      },
    };
  }
  throw new WorkloadUsageError(`unknown workload '${cmd}' (workloads: dmatest, sleep)`);
}
