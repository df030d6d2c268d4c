/**
 * What HPM counting costs translation: the translate benchmark's workload (Untranslated reads by
 * device 0x2a through a 3LVL directory and an Sv39 table of N contiguous pages) on IOMMUs built
 * alike but for their HPM: one without HPM (capabilities.HPM clear), one with 8 counters armed
 * (events 1–8, no filter) and one with the 8 counters armed behind a device_id filter that passes
 * the device (as `perf stat -e pmu/ev,config1=.../` programs them: every event goes through the
 * filter). Rounds alternate between them in one process, so a busy machine slows all alike: the
 * throughputs are the best round of each, and `armed_over_nohpm` (`filtered_over_nohpm`) is the
 * median over the rounds of armed (filtered) over without. Target: `armed_over_nohpm` ≥ 0.9
 * (counting within 10%). Each armed IOMMU's Untranslated-request counter must equal the requests
 * it got, or the benchmark fails.
 *
 * Scenarios (N = 4096): `hot2` (two pages alternately: the IOTLB-hit fast path, one event per
 * request), `rand` (pages at random, each round from an empty IOTLB) and `walk` (`rand` with the
 * IOTLB off: every request walks, three events each).
 *
 * Prints per scenario the three throughputs and the two ratios, e.g.
 * `{"bench":"hpm","figure":"hot2_armed_over_nohpm","value":0.95,"unit":"ratio","target":">= 0.9",
 * "scenario":"hot2","pages":4096,"requests":250000,"rounds":40}`.
 *
 * Run: `deno run -A tools/bench/hpm.ts`.
 *
 * @module
 */
import { Iommu, newRequest, newResult, PhysicalMemory, XLATE_OK } from "@iommu-lab/hw";
import {
  RISCV_IOMMU_IOHPMEVT_DV_GSCV,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_IOCOUNTINH,
  RISCV_IOMMU_REG_IOHPMCTR,
  RISCV_IOMMU_REG_IOHPMEVT,
} from "@iommu-lab/hw/regs";
import {
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  PageTableBuilder,
  TEST_RAM_BASE,
  TestPageAllocator,
} from "@iommu-lab/hw/testing";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

const DID = 0x2a;
const IOVA = 0x4000_0000;
const DATA = 0x1_0000_0000;
const PAGES = 4096;
const REQUESTS = 250_000;
const ROUNDS = 40;

/** The HPM of a benchmarked IOMMU: none, 8 counters armed, or armed behind a filter. */
type _Hpm = "nohpm" | "armed" | "filtered";

/** An IOMMU translating device 0x2a's Sv39 table of PAGES pages, with its HPM as `hpm` says. */
function _iommu(hpm: _Hpm): Iommu {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 2 ** 34);
  const alloc = new TestPageAllocator();
  const pt = new PageTableBuilder(mem, alloc, "sv39");
  for (let p = 0; p < PAGES; p++) pt.map(IOVA + p * 4096, DATA + p * 4096);
  const ddt = new DdtBuilder(mem, alloc, 4, true);
  ddt.set(DID, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  const iommu = new Iommu({ mem, caps: { hpm: hpm !== "nohpm" } });
  iommu.write64(RISCV_IOMMU_REG_DDTP, BigInt(ddt.rootPn) << 10n | 4n);
  if (hpm !== "nohpm") {
    const filter = hpm === "filtered" ? RISCV_IOMMU_IOHPMEVT_DV_GSCV | BigInt(DID) << 36n : 0n;
    for (let n = 1; n <= 8; n++) iommu.write64(RISCV_IOMMU_REG_IOHPMEVT(n), BigInt(n) | filter);
    iommu.write32(RISCV_IOMMU_REG_IOCOUNTINH, 1); // the cycle counter stays inhibited
  }
  return iommu;
}

/** The page of each request of a scenario. */
function _pattern(scenario: string): Int32Array {
  const out = new Int32Array(REQUESTS);
  const rng = xoroshiro128plus(0x2545f491);
  for (let i = 0; i < REQUESTS; i++) {
    out[i] = scenario === "hot2" ? i & 1 : uniformInt(rng, 0, PAGES - 1);
  }
  return out;
}

/** Times one round of `pattern` on `iommu`; returns requests per second. */
function _round(iommu: Iommu, pattern: Int32Array): number {
  iommu.translator.flushAll();
  const req = newRequest({ deviceId: DID });
  const res = newResult();
  let bad = 0;
  const t0 = performance.now();
  for (let i = 0; i < REQUESTS; i++) {
    const p = pattern[i];
    req.iovaLo = IOVA + p * 4096;
    iommu.translate(req, res);
    if (res.status !== XLATE_OK || res.pa !== DATA + p * 4096) bad++;
  }
  const rate = REQUESTS / ((performance.now() - t0) / 1000);
  if (bad !== 0) throw new Error(`${bad} wrong translations`);
  return rate;
}

/** Runs each scenario on the three IOMMUs, rounds alternating, and yields the figures and ratios. */
export function* run(): Generator<BenchLine> {
  const kinds: readonly _Hpm[] = ["nohpm", "armed", "filtered"];
  for (const scenario of ["hot2", "rand", "walk"] as const) {
    const iommus = kinds.map(_iommu);
    for (const iommu of iommus) iommu.translator.iotlbEnabled = scenario !== "walk";
    const pattern = _pattern(scenario);
    const best = [0, 0, 0];
    const ratios: number[][] = [[], []];
    // Warm-up rounds, then rounds of all three, each round starting with another of them.
    for (let r = 0; r < 6; r++) _round(iommus[r % 3], pattern);
    for (let r = 0; r < ROUNDS; r++) {
      const rate = [0, 0, 0];
      for (let i = 0; i < 3; i++) {
        const k = (r + i) % 3;
        rate[k] = _round(iommus[k], pattern);
      }
      for (let k = 0; k < 3; k++) best[k] = Math.max(best[k], rate[k]);
      ratios[0].push(rate[1] / rate[0]);
      ratios[1].push(rate[2] / rate[0]);
    }
    for (const k of [1, 2]) {
      const counted = iommus[k].read64(RISCV_IOMMU_REG_IOHPMCTR(1));
      if (counted !== BigInt((ROUNDS + 2) * REQUESTS)) {
        throw new Error(`${scenario}: ${kinds[k]} iohpmctr1 counted ${counted} requests`);
      }
    }
    const fields = { scenario, pages: PAGES, requests: REQUESTS, rounds: ROUNDS };
    for (let k = 0; k < 3; k++) {
      yield benchLine("hpm", `${scenario}_${kinds[k]}`, Math.round(best[k]), "translations/s", {
        ...fields,
        counters: k === 0 ? 0 : 8,
      });
    }
    for (const [i, k] of [[0, 1], [1, 2]]) {
      const sorted = ratios[i].sort((p, q) => p - q);
      yield benchLine(
        "hpm",
        `${scenario}_${kinds[k]}_over_nohpm`,
        Math.round(sorted[ROUNDS >> 1] * 1000) / 1000,
        "ratio",
        { ...fields, target: k === 1 ? ">= 0.9" : "none" },
      );
    }
  }
}

/** The command line. */
export const cli = benchCli(
  "hpm",
  "What HPM counting costs translation (8 counters armed, unfiltered and filtered, vs no HPM).",
  run,
);

if (import.meta.main) await runTool("hpm", Deno.args, cli);
