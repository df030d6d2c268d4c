/**
 * dma_map_benchmark: an analog of Linux's `kernel/dma/map_benchmark.c` and its user tool
 * (`tools/dma/dma_map_benchmark`): threads repeatedly `dma_map_page` + `dma_unmap_page` a buffer
 * of `granule` pages on a device, and the average latency of each call, with its standard
 * deviation, is reported in µs of simulated time.
 *
 * Options as the tool's: `-t` threads, `-s` seconds (of SIMULATED time; fractions allowed),
 * `-g` granule in pages, `-d` direction (0 BIDIRECTIONAL, 1 TO_DEVICE, 2 FROM_DEVICE), `-x`
 * `dma_trans_ns` (time a mapping stays up between map and unmap, emulating the transfer), `-b`
 * `dma_bits` (the device's DMA mask during the run), `-n` node (printed only: one NUMA node).
 *
 * Threads are simulated, interleaved on the one CPU: in each round every thread maps its buffer
 * (one after another, each call timed on its own), then `dma_trans_ns` passes for all of them at
 * once, then every thread unmaps. So `t` mappings are live at a time, as with `t` real threads,
 * but calls never overlap in time: the latencies have no lock contention in them. As the kernel's
 * thread does, each buffer is dirtied with `memset()` before its map, outside the timed call.
 *
 * Latencies are kept exact (the kernel truncates each sample to 100 ns), so the tool's lines carry
 * two decimals where the kernel's carry one: a map that only writes PTEs takes a few tens of ns.
 *
 * ```text
 * dma mapping benchmark: threads:1 seconds:1 node:-1 dir:BIDIRECTIONAL granule: 1
 * average map latency(us):0.02 standard deviation:0.00
 * average unmap latency(us):0.68 standard deviation:0.00
 * ```
 *
 * CLI: `deno run -A tools/dma/dma_map_benchmark.ts -t 4 -s 0.5 -g 1` on the default machine (the
 * DMA engine behind the platform IOMMU; `--iommu-bus pci` or `--iommu none` to compare).
 *
 * @module
 */
import {
  type Device,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  dma_map_page,
  dma_set_mask,
  DMA_TO_DEVICE,
  dma_unmap_page,
  type DmaDirection,
  Errno,
  get_order,
  type Kernel,
} from "@iommu-lab/kernel";
import { bootMachine, MACHINE_OPTIONS } from "./_machine.ts";
import { refusedAsUsage, runTool, type Tool } from "../cli.ts";

/** DMA_MAP_MAX_THREADS. */
export const DMA_MAP_MAX_THREADS = 1024;
/** DMA_MAP_MAX_SECONDS. */
export const DMA_MAP_MAX_SECONDS = 300;
/** DMA_MAP_MAX_TRANS_DELAY, in ns. */
export const DMA_MAP_MAX_TRANS_DELAY = 10_000_000;

const _DIRECTIONS = ["BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE"] as const;

/** struct map_benchmark's inputs. */
export interface MapBenchmarkOptions {
  /** Threads (`-t`). Default 1. */
  threads?: number;
  /** Seconds of simulated time to run (`-s`). Default 1. */
  seconds?: number;
  /** Pages per mapping (`-g`). Default 1. */
  granule?: number;
  /** `dma_dir` (`-d`): 0 bidirectional, 1 to device, 2 from device. Default 0. */
  dir?: number;
  /** `dma_trans_ns` (`-x`): simulated transfer time between map and unmap. Default 0. */
  dma_trans_ns?: number;
  /** `dma_bits` (`-b`): the device's DMA mask while it runs. Default 32. */
  dma_bits?: number;
  /** NUMA node (`-n`), printed only. Default -1. */
  node?: number;
}

/** struct map_benchmark's outputs (in 100 ns units, as the kernel reports them) plus totals. */
export interface MapBenchmarkResult {
  /** Average map latency, 100 ns units. */
  readonly avg_map_100ns: number;
  /** Standard deviation of the map latency, 100 ns units. */
  readonly map_stddev: number;
  /** Average unmap latency, 100 ns units. */
  readonly avg_unmap_100ns: number;
  /** Standard deviation of the unmap latency, 100 ns units. */
  readonly unmap_stddev: number;
  /** Map + unmap pairs done by all threads. */
  readonly loops: number;
  /** Simulated time the run took, ns. */
  readonly simNs: number;
  /** Wall-clock time of the run, ms. */
  readonly realMs: number;
  /** The inputs, defaults filled in. */
  readonly params: Required<MapBenchmarkOptions>;
}

/**
 * Runs the benchmark on `dev` (a device whose DMA goes through the IOMMU, or not).
 *
 * Throws `EINVAL` for parameters the kernel rejects (its limits), `ENOMEM` when mapping fails,
 * and `EINVAL` when a round takes no simulated time (nothing would end the run: direct mapping
 * `FROM_DEVICE`, which dirties no buffer, without `dma_trans_ns`).
 *
 * @example 100 µs of one thread on the DMA engine behind the IOMMU
 * ```ts
 * import assert from "node:assert/strict";
 * import { Machine } from "@iommu-lab/machine";
 * import { formatMapBenchmark, runMapBenchmark } from "./dma_map_benchmark.ts";
 *
 * const machine = Machine.boot({ iommuBus: "platform" });
 * const r = runMapBenchmark(machine.dmaDevices[0], { seconds: 100e-6 });
 * assert.ok(r.loops > 0 && r.avg_unmap_100ns > 0);
 * assert.match(formatMapBenchmark(r), /^average unmap latency\(us\):\d+\.\d\d /m);
 * ```
 */
export function runMapBenchmark(dev: Device, opts: MapBenchmarkOptions = {}): MapBenchmarkResult {
  const p: Required<MapBenchmarkOptions> = {
    threads: opts.threads ?? 1,
    seconds: opts.seconds ?? 1,
    granule: opts.granule ?? 1,
    dir: opts.dir ?? DMA_BIDIRECTIONAL,
    dma_trans_ns: opts.dma_trans_ns ?? 0,
    dma_bits: opts.dma_bits ?? 32,
    node: opts.node ?? -1,
  };
  _check(
    Number.isInteger(p.threads) && p.threads >= 1 && p.threads <= DMA_MAP_MAX_THREADS,
    "invalid thread number",
  );
  _check(p.seconds > 0 && p.seconds <= DMA_MAP_MAX_SECONDS, "invalid duration seconds");
  _check(
    Number.isInteger(p.granule) && p.granule >= 1 && p.granule <= 1024,
    "invalid granule size",
  );
  _check(
    p.dir === DMA_BIDIRECTIONAL || p.dir === DMA_TO_DEVICE || p.dir === DMA_FROM_DEVICE,
    "invalid dma direction",
  );
  _check(
    Number.isInteger(p.dma_trans_ns) && p.dma_trans_ns >= 0 &&
      p.dma_trans_ns <= DMA_MAP_MAX_TRANS_DELAY,
    "invalid transmit delay",
  );
  _check(Number.isInteger(p.dma_bits) && p.dma_bits >= 20 && p.dma_bits <= 64, "invalid dma bits");

  const kernel: Kernel = dev.kernel;
  const clock = kernel.clock;
  const size = p.granule * 4096;
  const order = get_order(size);
  const dir = p.dir as DmaDirection;
  const oldMask = dev.dmaMask;
  const bufs: number[] = [];
  const addrs = new Float64Array(p.threads);
  let loops = 0;
  let sumMap = 0;
  let sqMap = 0;
  let sumUnmap = 0;
  let sqUnmap = 0;
  let realStart = 0;
  let start = 0;
  try {
    dma_set_mask(dev, p.dma_bits);
    for (let i = 0; i < p.threads; i++) bufs.push(kernel.pages.alloc(order));
    realStart = performance.now();
    start = clock.now();
    const end = start + p.seconds * 1e9;
    while (clock.now() < end) {
      const roundStart = clock.now();
      for (let i = 0; i < p.threads; i++) {
        // As the kernel's thread does, dirty the buffer first (untimed: it costs the run time).
        if (dir !== DMA_FROM_DEVICE) kernel.mem.fill(bufs[i], size, 0x66);
        const t0 = clock.now();
        addrs[i] = dma_map_page(dev, bufs[i], 0, size, dir);
        const d = (clock.now() - t0) / 100;
        sumMap += d;
        sqMap += d * d;
      }
      if (p.dma_trans_ns) clock.advance(p.dma_trans_ns);
      for (let i = 0; i < p.threads; i++) {
        const t0 = clock.now();
        dma_unmap_page(dev, addrs[i], size, dir);
        const d = (clock.now() - t0) / 100;
        sumUnmap += d;
        sqUnmap += d * d;
      }
      loops += p.threads;
      if (clock.now() === roundStart) {
        throw new Errno(
          "EINVAL",
          "dma_map_benchmark: map and unmap take no simulated time (use -x)",
        );
      }
    }
  } finally {
    for (const pa of bufs) kernel.pages.free(pa, order);
    dev.dmaMask = oldMask;
  }
  const avgMap = sumMap / loops;
  const avgUnmap = sumUnmap / loops;
  return {
    avg_map_100ns: avgMap,
    map_stddev: Math.sqrt(Math.max(0, sqMap / loops - avgMap * avgMap)),
    avg_unmap_100ns: avgUnmap,
    unmap_stddev: Math.sqrt(Math.max(0, sqUnmap / loops - avgUnmap * avgUnmap)),
    loops,
    simNs: clock.now() - start,
    realMs: performance.now() - realStart,
    params: p,
  };
}

/** The user tool's output: the parameter line and the two latency lines (µs, two decimals). */
export function formatMapBenchmark(r: MapBenchmarkResult): string {
  const p = r.params;
  const us = (v: number) => (v / 10).toFixed(2);
  return [
    `dma mapping benchmark: threads:${p.threads} seconds:${p.seconds} node:${p.node} dir:${
      _DIRECTIONS[p.dir]
    } granule: ${p.granule}`,
    `average map latency(us):${us(r.avg_map_100ns)} standard deviation:${us(r.map_stddev)}`,
    `average unmap latency(us):${us(r.avg_unmap_100ns)} standard deviation:${us(r.unmap_stddev)}`,
  ].join("\n");
}

function _check(ok: boolean, msg: string): void {
  if (!ok) throw new Errno("EINVAL", msg);
}

/** The tool's options (as the kernel tool's, plus the machine's). */
export const MAP_BENCHMARK_OPTIONS = {
  "threads": {
    type: "int",
    short: "t",
    default: 1,
    min: 1,
    max: DMA_MAP_MAX_THREADS,
    help: "threads, simulated and interleaved",
  },
  "seconds": {
    type: "number",
    short: "s",
    default: 1,
    max: DMA_MAP_MAX_SECONDS,
    arg: "S",
    help: "seconds of simulated time, fractions allowed",
  },
  "granule": { type: "int", short: "g", default: 1, min: 1, max: 1024, help: "pages per mapping" },
  "dma_dir": {
    type: "int",
    short: "d",
    default: 0,
    max: 2,
    help: "direction: 0 BIDIRECTIONAL, 1 TO_DEVICE, 2 FROM_DEVICE",
  },
  "dma_trans_ns": {
    type: "int",
    short: "x",
    default: 0,
    max: DMA_MAP_MAX_TRANS_DELAY,
    arg: "NS",
    help: "time a mapping stays up before its unmap",
  },
  "dma_bits": {
    type: "int",
    short: "b",
    default: 32,
    min: 20,
    max: 64,
    help: "the device's DMA mask during the run",
  },
  "node": { type: "int", short: "n", default: -1, min: -1, help: "NUMA node, printed only" },
  ...MACHINE_OPTIONS,
} as const;

/**
 * The command line: boots a machine from the options, runs the benchmark on the first DMA
 * engine and prints the tool's three lines plus the loop count and real time.
 */
export const cli: Tool<typeof MAP_BENCHMARK_OPTIONS> = {
  usage: "deno run -A tools/dma/dma_map_benchmark.ts [options]",
  summary:
    "Maps and unmaps a buffer on the DMA test engine in a loop and prints the average latencies.",
  options: MAP_BENCHMARK_OPTIONS,
  main(v, io) {
    const dev = bootMachine(v).dmaDevices[0];
    // What the kernel's ioctl refuses is a bad argument here.
    const r = refusedAsUsage(["EINVAL"], () =>
      runMapBenchmark(dev, {
        threads: v.threads,
        seconds: v.seconds,
        granule: v.granule,
        dir: v.dma_dir,
        dma_trans_ns: v.dma_trans_ns,
        dma_bits: v.dma_bits,
        node: v.node,
      }));
    for (const line of formatMapBenchmark(r).split("\n")) io.out(line);
    io.out(`(${r.loops} map/unmap pairs in ${r.realMs.toFixed(0)} ms real)`);
  },
};

if (import.meta.main) await runTool("dma_map_benchmark", Deno.args, cli);
