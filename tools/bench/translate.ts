/**
 * Translation throughput of the IOMMU model: Untranslated reads by one device (device_id 0x2a)
 * through a 1LVL or 3LVL device directory and a first-stage Sv39 (IOVA base 0x4000_0000) or
 * Sv48 (IOVA base 0x4000_0000_0000) table mapping N contiguous 4 KiB pages onto contiguous
 * physical pages (N = 4096 and 262144); and, for the two-stage walk, Sv39 over an Sv39x4 G stage
 * of 4 KiB pages (the first stage maps the IOVAs to GPAs 0x2_0000_0000 up, its own table pages at
 * GPA = SPA). Tables and DCs are written with plain stores; the IOMMU, with the default cache
 * geometry, is programmed through its `ddtp` register.
 *
 * Scenarios, 2,000,000 requests each, starting from an empty IOTLB (best of 3 rounds after a
 * warm-up round; a round calls the timed loop per chunk of 8192 requests, as a machine's callers
 * do, so that the engine optimizes it as a function rather than one long loop replaced on the
 * stack; the IOVAs and expected addresses are computed beforehand):
 * - `hot2`: two pages alternately (target ≥ 70 M/s);
 * - `rand`: pages uniformly at random from a seeded PRNG (target at N=262144 ≥ 10 M/s: with a
 *   4096-entry IOTLB it mostly walks, as hardware would, each walk starting at the last level
 *   when the walk cache holds the table);
 * - `seq`: pages in order;
 * - `walk`: `rand` with the IOTLB (and so the walk cache) disabled, so every request walks every
 *   level (target ≥ 14 M/s at N=4096, ≥ 10 M/s at N=262144); also for the two-stage
 *   configuration.
 *
 * Each figure also says what the IOMMU did, counted by its own HPM counters in one more round:
 * `iotlb_hit_rate` (1 − IOTLB misses per request) and `walks_per_request` (first-stage and G-stage
 * walks, implicit ones included), so a reader can tell cache effects from code speed. A `setup`
 * figure per configuration gives the best time to build it (memory, page tables, device
 * directory, IOMMU; target for N=262144 ≤ 15 ms).
 *
 * Prints one JSON line per figure in the benchmarks' shape, with the scenario's fields, e.g.
 * `{"bench":"translate","figure":"rand_ddt3_sv39_262144","value":12300000,"unit":"translations/s",
 * "target":">= 10000000","scenario":"rand","ddt":3,"mode":"sv39","gstage":"bare","pages":262144,
 * "requests":2000000,"translations_per_s":12300000,"iotlb_hit_rate":0.0155,
 * "walks_per_request":0.9845,"processes":3,"median":12200000,"worst":10400000}`.
 *
 * Each figure is measured in three fresh processes of its own and is the best of them, with the
 * median and the worst beside it ({@linkcode runEachInItsOwnProcess} says why); `--processes N`
 * takes N processes instead, for a steadier median; `--figure NAME` measures one figure, in the
 * calling process unless `--processes` is given too.
 *
 * Run: `deno run -A tools/bench/translate.ts [--figure NAME] [--processes N]`.
 *
 * @module
 */
import {
  type InboundRequest,
  Iommu,
  newRequest,
  newResult,
  PhysicalMemory,
  type TranslationResult,
  XLATE_OK,
} from "@iommu-lab/hw";
import {
  RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39,
  RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48,
  RISCV_IOMMU_DC_TC_V,
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_HPMEVENT_G_WALKS,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_IOCOUNTINH,
  RISCV_IOMMU_REG_IOHPMCTR,
  RISCV_IOMMU_REG_IOHPMEVT,
} from "@iommu-lab/hw/regs";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { fileURLToPath } from "node:url";
import { type CliIo, runTool, type Tool } from "../cli.ts";
import { type BenchLine, benchLine } from "./_report.ts";

/** A scenario: which pages the requests touch, and whether the IOTLB is on. */
export type Scenario = "hot2" | "rand" | "seq" | "walk";

/** One throughput figure: the common shape plus the scenario's fields. */
export interface TranslateFigure extends BenchLine {
  /** The scenario. */
  scenario: Scenario;
  /** Device-directory levels (1 or 3). */
  ddt: number;
  /** First-stage scheme. */
  mode: "sv39" | "sv48";
  /** G-stage scheme. */
  gstage: "bare" | "sv39x4";
  /** Pages mapped. */
  pages: number;
  /** Requests per round. */
  requests: number;
  /** Best rate over the timed rounds. */
  translations_per_s: number;
  /** Share of the requests the IOTLB answered. */
  iotlb_hit_rate: number;
  /** First-stage and G-stage walks per request. */
  walks_per_request: number;
}

const DID = 0x2a;
const RAM = 0x8000_0000;
const DATA = 0x1_0000_0000;
/** GPA of the first data page in the two-stage configuration. */
const GPA_DATA = 0x2_0000_0000;
const REQUESTS = 2_000_000;
const ROUNDS = 3;
/** PTE flags of every leaf: V R W U A D. */
const LEAF = 0xd7;
const IOVA_BASE = { sv39: 0x4000_0000, sv48: 0x4000_0000_0000 } as const;

/**
 * Maps `count` contiguous pages from `vpn0` to `ppn0` in the table rooted at page `root` of a
 * `levels`-level scheme (the root indexes 2 more bits when `x4`), taking table pages from `page`.
 * Non-leaf entries already present are followed, so ranges can share tables.
 */
function _mapRange(
  mem: PhysicalMemory,
  root: number,
  levels: number,
  x4: boolean,
  vpn0: number,
  ppn0: number,
  count: number,
  page: () => number,
): void {
  const table = new Array<number>(levels).fill(-1);
  for (let i = 0; i < count; i++) {
    const vpn = vpn0 + i;
    if (i === 0 || vpn % 512 === 0) {
      // A new leaf table; walk down from the root, reusing or making each level's table.
      let parent = root;
      for (let l = levels - 1; l > 0; l--) {
        const idx = Math.floor(vpn / 2 ** (9 * l)) % (l === levels - 1 && x4 ? 2048 : 512);
        const a = parent * 4096 + idx * 8;
        mem.load64(a);
        let child: number;
        if ((mem.lo & 1) !== 0) child = (mem.hi & 0x3fffff) * 4194304 + (mem.lo >>> 10);
        else {
          child = page();
          mem.store64(a, ((child * 1024) | 1) >>> 0, Math.floor(child / 4194304));
        }
        parent = child;
      }
      table[0] = parent;
    }
    const ppn = ppn0 + i;
    mem.store64(
      table[0] * 4096 + (vpn % 512) * 8,
      ((ppn * 1024) | LEAF) >>> 0,
      Math.floor(ppn / 4194304),
    );
  }
}

/**
 * A bench machine: memory, an IOMMU with a DC for device 0x2a, and its page tables (a G stage of
 * `gstage` under them).
 */
function _machine(
  ddt: 1 | 3,
  mode: "sv39" | "sv48",
  pages: number,
  gstage: "bare" | "sv39x4",
): Iommu {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 34);
  let next = RAM / 4096;
  const page = () => next++;
  const levels = mode === "sv39" ? 3 : 4;
  const two = gstage === "sv39x4";
  // First stage: N pages at IOVA_BASE onto DATA (or GPA_DATA under a G stage).
  const root = page();
  _mapRange(
    mem,
    root,
    levels,
    false,
    IOVA_BASE[mode] / 4096,
    (two ? GPA_DATA : DATA) / 4096,
    pages,
    page,
  );
  let iohgatp = { lo: 0, hi: 0 };
  if (two) {
    // G stage: its 16 KiB root, the first stage's table pages at GPA = SPA, the data pages.
    const tablesEnd = next;
    next = Math.ceil(next / 4) * 4;
    const gRoot = next;
    next += 4;
    _mapRange(mem, gRoot, 3, true, root, root, tablesEnd - root, page);
    _mapRange(mem, gRoot, 3, true, GPA_DATA / 4096, DATA / 4096, pages, page);
    // iohgatp: MODE Sv39x4 (8), GSCID 1, PPN.
    iohgatp = { lo: gRoot >>> 0, hi: (8 << 28 | 1 << 12 | Math.floor(gRoot / 2 ** 32)) >>> 0 };
  }
  // Device directory (extended DCs: 64 B, DDI[0] = device_id[5:0]).
  const ddtRoot = page();
  let leaf = ddtRoot;
  for (let l = ddt - 1; l > 0; l--) {
    const child = page();
    mem.store64(leaf * 4096, ((child * 1024) | 1) >>> 0, Math.floor(child / 4194304));
    leaf = child; // DDI[l] of 0x2a is 0
  }
  const dc = leaf * 4096 + (DID & 63) * 64;
  mem.store64(dc, RISCV_IOMMU_DC_TC_V, 0);
  mem.store64(dc + 0x08, iohgatp.lo, iohgatp.hi);
  mem.store64(dc + 0x10, 1 << 12, 0); // ta.PSCID = 1
  const satp = mode === "sv39"
    ? RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39
    : RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48;
  mem.store64(dc + 0x18, root >>> 0, (Math.floor(root / 2 ** 32) | satp << 28) >>> 0);
  const iommu = new Iommu({ mem });
  const ddtpMode = ddt === 1 ? RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL : RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL;
  iommu.write64(RISCV_IOMMU_REG_DDTP, BigInt(ddtRoot) << 10n | BigInt(ddtpMode));
  return iommu;
}

/** The page index of each request of a scenario. */
function _pattern(scenario: Scenario, pages: number, requests: number): Int32Array {
  const out = new Int32Array(requests);
  const rng = xoroshiro128plus(0x2545f491);
  for (let i = 0; i < requests; i++) {
    if (scenario === "hot2") out[i] = i & 1;
    else if (scenario === "seq") out[i] = i % pages;
    else out[i] = uniformInt(rng, 0, pages - 1);
  }
  return out;
}

/** The HPM events the figures report, on counters 1, 2, 3. */
const COUNTED = [
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  RISCV_IOMMU_HPMEVENT_G_WALKS,
];

/**
 * Runs one round of `w` with the IOMMU's own HPM counting {@linkcode COUNTED} (as `perf stat`
 * would program it); returns their counts.
 */
function _countedRound(iommu: Iommu, w: _Workload): number[] {
  COUNTED.forEach((ev, i) => {
    iommu.write64(RISCV_IOMMU_REG_IOHPMEVT(i + 1), BigInt(ev));
    iommu.write64(RISCV_IOMMU_REG_IOHPMCTR(i + 1), 0n);
  });
  iommu.write32(RISCV_IOMMU_REG_IOCOUNTINH, ~0b1110);
  _round(iommu, w);
  iommu.write32(RISCV_IOMMU_REG_IOCOUNTINH, ~0);
  return COUNTED.map((_, i) => Number(iommu.read64(RISCV_IOMMU_REG_IOHPMCTR(i + 1))));
}

/**
 * The requests of a scenario as the IOMMU sees them — the low word of each IOVA (the high word
 * is the same for all) — and the physical address each must translate to, computed before the
 * timed loop so that it measures translation and not the benchmark's address arithmetic.
 */
interface _Workload {
  iovaLo: Uint32Array;
  iovaHi: number;
  pa: Float64Array;
}

function _workload(pattern: Int32Array, base: number): _Workload {
  const iovaLo = new Uint32Array(pattern.length);
  const pa = new Float64Array(pattern.length);
  const iovaHi = Math.floor(base / 2 ** 32);
  for (let i = 0; i < pattern.length; i++) {
    const iova = base + pattern[i] * 4096;
    if (Math.floor(iova / 2 ** 32) !== iovaHi) throw new RangeError("the IOVAs cross 4 GiB");
    iovaLo[i] = iova % 2 ** 32;
    pa[i] = DATA + pattern[i] * 4096;
  }
  return { iovaLo, iovaHi, pa };
}

/** Requests per call of {@linkcode _chunk}. */
const CHUNK = 8192;

/**
 * Translates requests `from` to `to` of `w`; returns how many went wrong. The timed loop calls it
 * per chunk, so that the engine optimizes it as the function it is rather than only by
 * on-stack replacement of one long loop, as callers of the IOMMU in a machine are.
 */
function _chunk(
  iommu: Iommu,
  w: _Workload,
  req: InboundRequest,
  res: TranslationResult,
  from: number,
  to: number,
): number {
  const { iovaLo, pa } = w;
  let bad = 0;
  for (let i = from; i < to; i++) {
    req.iovaLo = iovaLo[i];
    iommu.translate(req, res);
    if (res.pa !== pa[i] || res.status !== XLATE_OK) bad++;
  }
  return bad;
}

/** One round of `w` through `iommu`; returns the seconds it took. */
function _round(iommu: Iommu, w: _Workload): number {
  const n = w.iovaLo.length;
  const req = newRequest({ deviceId: DID, iovaHi: w.iovaHi });
  const res = newResult();
  iommu.translator.flushAll();
  let bad = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i += CHUNK) bad += _chunk(iommu, w, req, res, i, Math.min(i + CHUNK, n));
  const s = (performance.now() - t0) / 1000;
  if (bad !== 0) throw new Error(`${bad} wrong translations`);
  return s;
}

const TARGETS: Record<string, string> = {
  hot2: ">= 70000000",
  rand_262144: ">= 10000000",
  walk_4096: ">= 14000000",
  walk_262144: ">= 10000000",
};

/** The best time (ms) of 3 builds of a configuration's machine. */
export function setupMs(
  ddt: 1 | 3,
  mode: "sv39" | "sv48",
  pages: number,
  gstage: "bare" | "sv39x4",
): number {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    _machine(ddt, mode, pages, gstage);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Runs one scenario (`requests` per round) and returns its figure. */
export function runScenario(
  scenario: Scenario,
  ddt: 1 | 3,
  mode: "sv39" | "sv48",
  pages: number,
  gstage: "bare" | "sv39x4" = "bare",
  requests: number = REQUESTS,
): TranslateFigure {
  const iommu = _machine(ddt, mode, pages, gstage);
  iommu.translator.iotlbEnabled = scenario !== "walk";
  const w = _workload(_pattern(scenario, pages, requests), IOVA_BASE[mode]);
  let best = Infinity;
  for (let round = 0; round <= ROUNDS; round++) {
    const s = _round(iommu, w);
    if (round > 0) best = Math.min(best, s);
  }
  const [misses, sWalks, gWalks] = _countedRound(iommu, w);
  const rate = Math.round(requests / best);
  const stages = gstage === "bare" ? mode : `${mode}_over_${gstage}`;
  const target = gstage === "bare"
    ? TARGETS[scenario] ?? TARGETS[`${scenario}_${pages}`]
    : undefined;
  const line = benchLine(
    "translate",
    `${scenario}_ddt${ddt}_${stages}_${pages}`,
    rate,
    "translations/s",
    target === undefined ? {} : { target },
  );
  return {
    ...line,
    scenario,
    ddt,
    mode,
    gstage,
    pages,
    requests,
    translations_per_s: rate,
    iotlb_hit_rate: Number((1 - misses / requests).toFixed(4)),
    walks_per_request: Number(((sWalks + gWalks) / requests).toFixed(4)),
  };
}

/** What one figure measures: a scenario's throughput, or the time to build a configuration. */
interface _Figure {
  name: string;
  scenario: Scenario | "setup";
  ddt: 1 | 3;
  mode: "sv39" | "sv48";
  gstage: "bare" | "sv39x4";
  pages: number;
}

function _allFigures(): _Figure[] {
  const configs: [1 | 3, "sv39" | "sv48", "bare" | "sv39x4", readonly Scenario[]][] = [];
  for (const ddt of [1, 3] as const) {
    for (const mode of ["sv39", "sv48"] as const) {
      configs.push([ddt, mode, "bare", ["hot2", "rand", "seq", "walk"]]);
    }
  }
  for (const ddt of [1, 3] as const) configs.push([ddt, "sv39", "sv39x4", ["walk"]]);
  const out: _Figure[] = [];
  for (const [ddt, mode, gstage, scenarios] of configs) {
    const stages = gstage === "bare" ? mode : `${mode}_over_${gstage}`;
    for (const pages of [4096, 262144]) {
      for (const scenario of [...scenarios, "setup" as const]) {
        out.push({
          name: `${scenario}_ddt${ddt}_${stages}_${pages}`,
          scenario,
          ddt,
          mode,
          gstage,
          pages,
        });
      }
    }
  }
  return out;
}

const _FIGURES = _allFigures();

/** The names of the figures, in the order the benchmark prints them. */
export const FIGURES: readonly string[] = _FIGURES.map((f) => f.name);

/** Measures the figure named `name` (one of {@linkcode FIGURES}) in this process. */
export function runFigure(name: string): BenchLine {
  const f = _FIGURES.find((x) => x.name === name);
  if (f === undefined) throw new RangeError(`no figure ${name}`);
  const { scenario, ddt, mode, gstage, pages } = f;
  if (scenario !== "setup") return runScenario(scenario, ddt, mode, pages, gstage);
  return benchLine("translate", name, Number(setupMs(ddt, mode, pages, gstage).toFixed(2)), "ms", {
    ...(pages === 262144 && gstage === "bare" ? { target: "<= 15" } : {}),
    scenario: "setup",
    ddt,
    mode,
    gstage,
    pages,
  });
}

/** Fresh processes that measure each figure: the figure is the best of them. */
export const PROCESSES = 3;

/**
 * Measures each figure of `names` in `processes` fresh processes of its own, in turn, writing to
 * `io` one line per figure: the best process's (highest rate, or lowest time), with `processes`,
 * `median` and `worst` beside it; returns 1 if a process failed, else 0.
 *
 * A figure shares its processes with no other, as JMH forks a JVM per benchmark: the engine
 * optimizes the translation path for the requests it has seen, so in one process a scenario's
 * figure depended on which scenarios ran before it (a `walk` row after `hot2`, `rand` and `seq` of
 * the same configuration measured 8-11 M/s against 14-16 alone). And one process is not enough
 * either, for two reasons. What the engine inlines can depend on when it compiles (concurrently,
 * with the feedback of that moment): with the walker's cachedLeaf() and the IOTLB's insert() both
 * called from one function, 6 of 15 processes inlined the first, and 4 of those ran `rand` at
 * N=262144 at 6.4-8.7 M/s, the others at 9.7-11.5; the translation path is now arranged so
 * that the choice does not arise (see the translator's `#microMiss`). And where the engine puts
 * the code it compiles matters: a process keeps the speed it got — its rounds agree to 1% — but
 * two can differ by a quarter with instruction for instruction the same code for the walker, the
 * IOTLB and the translator. Deoptimizing the walker's and the IOTLB's functions and letting the
 * engine compile them again, in one process on one machine with the same memory, moved a `rand`
 * figure between 7 and 10.3 M/s, and back to the same figure whenever the new code landed at the
 * same offsets within a 4 KiB page — how the path's hot code falls on the host core's
 * instruction-side caches, it seems; this VM has no performance counters to say which. Under
 * `--single-threaded` V8 the engine compiles at the same points, so places the code the same way,
 * every run, and the figures repeat to 1%. Measured at the commit that wrote this, about one
 * process in six ran `rand` at N=262144 at 9.7-11 M/s against 11.6-12.5 for the rest, and one in
 * ten `walk_ddt1_sv48_4096` at ~11.8 against ~14.5. The best process is the speed the model
 * reaches; `median` and `worst` say how often it does, and more processes (`--processes`) say it
 * more steadily.
 */
export async function runEachInItsOwnProcess(
  names: readonly string[],
  io: CliIo,
  processes: number = PROCESSES,
): Promise<number> {
  let status = 0;
  for (const name of names) {
    const lines: BenchLine[] = [];
    for (let p = 0; p < processes; p++) {
      const { success, stdout } = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", fileURLToPath(import.meta.url), "--figure", name],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (!success) break;
      lines.push(JSON.parse(new TextDecoder().decode(stdout)));
    }
    if (lines.length < processes) {
      io.err(`translate: ${name} failed`);
      status = 1;
      continue;
    }
    // Best first: the highest rate, or the shortest time.
    const sign = lines[0].unit === "ms" ? 1 : -1;
    lines.sort((a, b) => sign * (a.value - b.value));
    io.out(JSON.stringify({
      ...lines[0],
      processes,
      median: lines[processes >> 1].value,
      worst: lines[processes - 1].value,
    }));
  }
  return status;
}

/**
 * The command line: every figure, each in fresh processes of its own, or `--figure NAME` here;
 * with `--processes N`, each figure (`--figure`'s too) in N fresh processes.
 */
export const cli: Tool<{
  figure: { type: "string"; choices: readonly string[]; arg: string; help: string };
  processes: { type: "int"; min: number; max: number; help: string };
}> = {
  usage: "deno run -A tools/bench/translate.ts [--figure NAME] [--processes N]",
  summary: "Translation throughput of the IOMMU model, each figure the best of fresh processes " +
    "(three unless --processes says). Prints one JSON line per figure (bench, figure, value, ...).",
  options: {
    figure: {
      type: "string",
      choices: FIGURES,
      arg: "NAME",
      help: "measure only this figure (e.g. walk_ddt1_sv39_4096), in this process unless " +
        "--processes is given",
    },
    processes: {
      type: "int",
      min: 1,
      max: 99,
      help: "measure each figure in N fresh processes of its own (default 3; --figure alone " +
        "measures in this process): the best is the figure, the median and the worst beside it",
    },
  },
  main(v, io) {
    if (v.figure !== undefined && v.processes === undefined) {
      io.out(JSON.stringify(runFigure(v.figure)));
      return 0;
    }
    return runEachInItsOwnProcess(v.figure === undefined ? FIGURES : [v.figure], io, v.processes);
  },
};

if (import.meta.main) await runTool("translate", Deno.args, cli);
