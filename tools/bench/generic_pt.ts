/**
 * Throughput of the generic page-table engine on the silicon's memory: 262,144 separate 4 KiB
 * maps then unmaps (the target is ≥ 2 M pages/s each way through the IOMMU core, so the raw
 * engine should do ≥ 4 M/s), and one 1 GiB map with superpages (target < 1 ms).
 *
 * Prints one JSON line per figure, the best of a few rounds so the JIT has warmed up.
 * Usage: `deno run -A tools/bench/generic_pt.ts`.
 *
 * @module
 */
import { PhysicalMemory } from "@iommu-lab/hw";
import { PtIommu } from "@iommu-lab/generic-pt";
import { IOMMU_READ, IOMMU_WRITE, IommuIotlbGather } from "@iommu-lab/iommu";
import { TestTableAllocator } from "@iommu-lab/generic-pt/testing";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

const PAGES = 262_144;
const ROUNDS = 5;
const RW = IOMMU_READ | IOMMU_WRITE;
const DRAM = 0x8000_0000;
const GIB = 2 ** 30;

function _domain(vaBits: number): { pt: PtIommu; alloc: TestTableAllocator } {
  const mem = new PhysicalMemory();
  mem.addRam(DRAM, 64 * GIB);
  const alloc = new TestTableAllocator(mem, DRAM, 256 * 2 ** 20);
  const pt = new PtIommu({ mem, alloc, vaBits, features: { svnapot: true, signExtend: true } });
  return { pt, alloc };
}

function _best(fn: () => number): number {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) best = Math.min(best, fn());
  return best;
}

/** Runs the benchmarks, yielding their figures. */
export function* run(): Generator<BenchLine> {
  for (const vaBits of [39, 48, 57]) {
    const { pt } = _domain(vaBits);
    const gather = new IommuIotlbGather();
    const base = 0x1_0000_0000;
    const pa = DRAM + GIB;
    let mapMs = Infinity;
    let unmapMs = Infinity;
    let coldMs = 0;
    for (let r = 0; r < ROUNDS; r++) {
      let t = performance.now();
      for (let i = 0; i < PAGES; i++) pt.map_pages(base + i * 4096, pa + i * 4096, 4096, 1, RW);
      const ms = performance.now() - t;
      // The first round also allocates the 513 tables; later ones reuse them.
      if (r === 0) coldMs = ms;
      mapMs = Math.min(mapMs, ms);
      t = performance.now();
      for (let i = 0; i < PAGES; i++) {
        pt.unmap_pages(base + i * 4096, 4096, 1, gather);
        gather.reset();
      }
      unmapMs = Math.min(unmapMs, performance.now() - t);
    }
    const rate = (figure: string, ms: number) =>
      benchLine("generic_pt", figure, Math.round(PAGES / ms * 1000), "pages/s", {
        vaBits,
        pages: PAGES,
      });
    yield rate("map_4k_cold", coldMs);
    yield rate("map_4k", mapMs);
    yield rate("unmap_4k", unmapMs);

    const helperMs = _best(() => {
      const t = performance.now();
      for (let i = 0; i < PAGES; i++) pt.map(base + i * 4096, pa + i * 4096, 4096, RW);
      const ms = performance.now() - t;
      pt.unmap(base, PAGES * 4096, gather);
      gather.putPages();
      gather.reset();
      return ms;
    });
    yield rate("map_helper_4k", helperMs);

    for (
      const [name, iova] of [["map_1g_aligned", GIB], ["map_1g_2m_aligned", GIB + 2 ** 21]] as const
    ) {
      const ms = _best(() => {
        const t = performance.now();
        pt.map(iova, pa, GIB, RW);
        const ms = performance.now() - t;
        pt.unmap(iova, GIB, gather);
        gather.putPages();
        gather.reset();
        return ms;
      });
      yield benchLine("generic_pt", name, Number(ms.toFixed(4)), "ms", { vaBits, bytes: GIB });
    }
    pt.deinit();
  }
}

/** The command line. */
export const cli = benchCli(
  "generic_pt",
  "The generic page-table engine on the silicon's memory.",
  run,
);

if (import.meta.main) await runTool("generic_pt", Deno.args, cli);
