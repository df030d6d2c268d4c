/**
 * Translation throughput of the IOMMU model: Untranslated reads by one device (device_id 0x2a)
 * through a 1LVL or 3LVL device directory and a first-stage Sv39 (IOVA base 0x4000_0000) or
 * Sv48 (IOVA base 0x4000_0000_0000) table mapping N contiguous 4 KiB pages onto contiguous
 * physical pages (N = 4096 and 262144). Tables and DCs are written with plain stores; the IOMMU
 * is programmed through its `ddtp` register.
 *
 * Scenarios, 2,000,000 requests each, starting from an empty IOTLB (best of 3 rounds after a
 * warm-up round):
 * - `hot2`: two pages alternately (target ≥ 30 M/s);
 * - `rand`: pages uniformly at random from a seeded PRNG (target at N=262144 ≥ 6 M/s);
 * - `seq`: pages in order;
 * - `walk`: `rand` with the IOTLB disabled, so every request walks (target ≥ 5 M/s).
 *
 * Prints one JSON line per scenario in the benchmarks' shape, with the scenario's fields, e.g.
 * `{"bench":"translate","figure":"rand_ddt3_sv39_262144","value":6100000,"unit":"translations/s",
 * "scenario":"rand","ddt":3,"mode":"sv39","pages":262144,"requests":2000000,
 * "translations_per_s":6100000}`.
 *
 * Run: `deno run -A tools/bench/translate.ts`.
 *
 * @module
 */
import { Iommu, newRequest, newResult, PhysicalMemory, XLATE_OK } from "@iommu-lab/hw";
import {
  RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39,
  RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48,
  RISCV_IOMMU_DC_TC_V,
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_REG_DDTP,
} from "@iommu-lab/hw/regs";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

/** One benchmark figure: the common shape plus the fields this benchmark always printed. */
export interface TranslateFigure extends BenchLine {
  /** `hot2`, `rand`, `seq` or `walk`. */
  scenario: string;
  /** Device-directory levels (1 or 3). */
  ddt: number;
  /** First-stage scheme. */
  mode: "sv39" | "sv48";
  /** Pages mapped. */
  pages: number;
  /** Requests per round. */
  requests: number;
  /** Best rate over the timed rounds. */
  translations_per_s: number;
}

const DID = 0x2a;
const RAM = 0x8000_0000;
const DATA = 0x1_0000_0000;
const REQUESTS = 2_000_000;
const ROUNDS = 3;

/** A bench machine: memory, an IOMMU with a DC for device 0x2a, and its page table. */
function _machine(ddt: 1 | 3, mode: "sv39" | "sv48", pages: number): Iommu {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 34);
  let next = RAM / 4096;
  const page = () => next++;
  const ptr = (pn: number) => ({ lo: (pn * 1024) >>> 0, hi: Math.floor(pn / 4194304) });
  const nonLeaf = (a: number, pn: number) => {
    const { lo, hi } = ptr(pn);
    mem.store64(a, lo | 1, hi);
  };
  // First-stage table: N contiguous 4 KiB user pages (V R W U A D) at DATA.
  const levels = mode === "sv39" ? 3 : 4;
  const base = mode === "sv39" ? 0x4000_0000 : 0x4000_0000_0000;
  const root = page();
  const tables = new Map<string, number>();
  for (let i = 0; i < pages; i++) {
    const vpn = base / 4096 + i;
    let pn = root;
    for (let l = levels - 1; l > 0; l--) {
      const idx = Math.floor(vpn / 2 ** (9 * l)) % 512;
      const key = `${pn}:${idx}`;
      let child = tables.get(key);
      if (child === undefined) {
        child = page();
        tables.set(key, child);
        nonLeaf(pn * 4096 + idx * 8, child);
      }
      pn = child;
    }
    const { lo, hi } = ptr(DATA / 4096 + i);
    mem.store64(pn * 4096 + (vpn % 512) * 8, (lo | 0xd7) >>> 0, hi);
  }
  // Device directory (extended DCs: 64 B, DDI[0] = device_id[5:0]).
  const ddtRoot = page();
  let leaf = ddtRoot;
  for (let l = ddt - 1; l > 0; l--) {
    const child = page();
    nonLeaf(leaf * 4096, child); // DDI[l] of 0x2a is 0
    leaf = child;
  }
  const dc = leaf * 4096 + (DID & 63) * 64;
  mem.store64(dc, RISCV_IOMMU_DC_TC_V, 0);
  mem.store64(dc + 0x10, 1 << 12, 0); // ta.PSCID = 1
  const satp = mode === "sv39"
    ? RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39
    : RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48;
  const { lo, hi } = { lo: root >>> 0, hi: Math.floor(root / 2 ** 32) };
  mem.store64(dc + 0x18, lo, (hi | satp << 28) >>> 0);
  const iommu = new Iommu({ mem });
  const ddtpMode = ddt === 1 ? RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL : RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL;
  iommu.write64(RISCV_IOMMU_REG_DDTP, BigInt(ddtRoot) << 10n | BigInt(ddtpMode));
  return iommu;
}

/** The page index of each request of a scenario. */
function _pattern(scenario: string, pages: number): Int32Array {
  const out = new Int32Array(REQUESTS);
  const rng = xoroshiro128plus(0x2545f491);
  for (let i = 0; i < REQUESTS; i++) {
    if (scenario === "hot2") out[i] = i & 1;
    else if (scenario === "seq") out[i] = i % pages;
    else out[i] = uniformInt(rng, 0, pages - 1);
  }
  return out;
}

/** Runs one scenario and returns its figure. */
export function runScenario(
  scenario: "hot2" | "rand" | "seq" | "walk",
  ddt: 1 | 3,
  mode: "sv39" | "sv48",
  pages: number,
): TranslateFigure {
  const iommu = _machine(ddt, mode, pages);
  iommu.translator.iotlbEnabled = scenario !== "walk";
  const pattern = _pattern(scenario, pages);
  const base = mode === "sv39" ? 0x4000_0000 : 0x4000_0000_0000;
  const baseLo = base % 2 ** 32, baseHi = Math.floor(base / 2 ** 32);
  const req = newRequest({ deviceId: DID });
  const res = newResult();
  let best = 0;
  for (let round = 0; round <= ROUNDS; round++) {
    iommu.translator.flushAll();
    let bad = 0;
    const t0 = performance.now();
    for (let i = 0; i < REQUESTS; i++) {
      const p = pattern[i];
      req.iovaLo = baseLo + p * 4096;
      req.iovaHi = baseHi;
      iommu.translate(req, res);
      if (res.status !== XLATE_OK || res.pa !== DATA + p * 4096) bad++;
    }
    const rate = REQUESTS / ((performance.now() - t0) / 1000);
    if (bad !== 0) throw new Error(`${scenario}: ${bad} wrong translations`);
    if (round > 0) best = Math.max(best, rate);
  }
  const rate = Math.round(best);
  return {
    ...benchLine("translate", `${scenario}_ddt${ddt}_${mode}_${pages}`, rate, "translations/s"),
    scenario,
    ddt,
    mode,
    pages,
    requests: REQUESTS,
    translations_per_s: rate,
  };
}

/** Runs every scenario, yielding one figure each. */
export function* run(): Generator<TranslateFigure> {
  for (const ddt of [1, 3] as const) {
    for (const mode of ["sv39", "sv48"] as const) {
      for (const pages of [4096, 262144]) {
        for (const scenario of ["hot2", "rand", "seq", "walk"] as const) {
          yield runScenario(scenario, ddt, mode, pages);
        }
      }
    }
  }
}

/** The command line. */
export const cli = benchCli("translate", "Translation throughput of the IOMMU model.", run);

if (import.meta.main) await runTool("translate", Deno.args, cli);
