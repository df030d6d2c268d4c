/**
 * What HPM counting costs translation: the translate benchmark's workload (Untranslated reads by
 * device 0x2a through a 3LVL directory and an Sv39 table of N contiguous pages) on two IOMMUs built
 * alike, one with its HPM idle (every counter inhibited, as after reset) and one with 8 counters
 * armed (events 1–8, no filter). Rounds alternate between the two in one process, pair by pair, so
 * a busy machine slows both alike: the throughputs are the best round of each, and
 * `armed_over_off` is the median over the pairs of armed/idle. Target: `armed_over_off` ≥ 0.9
 * (counting within 10%). The armed IOMMU's Untranslated-request counter must equal the requests it
 * got, or the benchmark fails.
 *
 * Scenarios (N = 4096): `hot2` (two pages alternately: the IOTLB-hit fast path, one event per
 * request), `rand` (pages at random, each round from an empty IOTLB) and `walk` (`rand` with the
 * IOTLB off: every request walks, three events each).
 *
 * Prints per scenario the two throughputs and their ratio, e.g.
 * `{"bench":"hpm","figure":"hot2_armed_over_off","value":0.95,"unit":"ratio","target":">= 0.9",
 * "scenario":"hot2","pages":4096,"requests":250000,"rounds":40}`.
 *
 * Run: `deno run -A tools/bench/hpm.ts`.
 *
 * @module
 */
import { Iommu, newRequest, newResult, PhysicalMemory, XLATE_OK } from "@iommu-lab/hw";
import {
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

/** An IOMMU translating device 0x2a's Sv39 table of PAGES pages; `armed` arms 8 counters. */
function _iommu(armed: boolean): Iommu {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 2 ** 34);
  const alloc = new TestPageAllocator();
  const pt = new PageTableBuilder(mem, alloc, "sv39");
  for (let p = 0; p < PAGES; p++) pt.map(IOVA + p * 4096, DATA + p * 4096);
  const ddt = new DdtBuilder(mem, alloc, 4, true);
  ddt.set(DID, { fsc: encodeAtp(8, pt.root), ta: encodeDcTa(1) });
  const iommu = new Iommu({ mem });
  iommu.write64(RISCV_IOMMU_REG_DDTP, BigInt(ddt.rootPn) << 10n | 4n);
  if (armed) {
    for (let n = 1; n <= 8; n++) iommu.write64(RISCV_IOMMU_REG_IOHPMEVT(n), BigInt(n));
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

/** Runs each scenario on both IOMMUs, rounds alternating, and yields both figures and the ratio. */
export function* run(): Generator<BenchLine> {
  for (const scenario of ["hot2", "rand", "walk"] as const) {
    const off = _iommu(false), armed = _iommu(true);
    for (const iommu of [off, armed]) iommu.translator.iotlbEnabled = scenario !== "walk";
    const pattern = _pattern(scenario);
    let bestOff = 0, bestArmed = 0;
    const ratios: number[] = [];
    // Warm-up rounds, then pairs, alternating which goes first.
    for (let r = 0; r < 4; r++) _round(r % 2 ? off : armed, pattern);
    for (let r = 0; r < ROUNDS; r++) {
      const first = r % 2 === 0 ? off : armed;
      const a = _round(first, pattern);
      const b = _round(first === off ? armed : off, pattern);
      const [o, x] = first === off ? [a, b] : [b, a];
      bestOff = Math.max(bestOff, o);
      bestArmed = Math.max(bestArmed, x);
      ratios.push(x / o);
    }
    ratios.sort((p, q) => p - q);
    const counted = armed.read64(RISCV_IOMMU_REG_IOHPMCTR(1));
    if (counted !== BigInt((ROUNDS + 2) * REQUESTS)) {
      throw new Error(`${scenario}: iohpmctr1 counted ${counted} Untranslated requests`);
    }
    const fields = { scenario, pages: PAGES, requests: REQUESTS, rounds: ROUNDS };
    const rate = (v: number) => Math.round(v);
    yield benchLine("hpm", `${scenario}_off`, rate(bestOff), "translations/s", {
      ...fields,
      counters: 0,
    });
    yield benchLine("hpm", `${scenario}_armed`, rate(bestArmed), "translations/s", {
      ...fields,
      counters: 8,
    });
    yield benchLine(
      "hpm",
      `${scenario}_armed_over_off`,
      Math.round(ratios[ROUNDS >> 1] * 1000) / 1000,
      "ratio",
      { ...fields, target: ">= 0.9" },
    );
  }
}

/** The command line. */
export const cli = benchCli(
  "hpm",
  "What HPM counting costs translation (8 counters armed vs idle).",
  run,
);

if (import.meta.main) await runTool("hpm", Deno.args, cli);
