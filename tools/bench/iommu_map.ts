/**
 * `iommu_map` / `iommu_unmap` throughput on a mock-driver paging domain (generic-pt riscv64
 * Sv39, tables from the kernel page allocator over test RAM, counting iotlb_sync).
 *
 * Figures (one JSON line each):
 * - `map_4k`: 1 GiB as 262,144 separate 4 KiB `iommu_map` calls, pages/s (target ≥ 2 M);
 * - `unmap_4k`: the same as 262,144 `iommu_unmap` calls, pages/s (target ≥ 2 M);
 * - `map_1g_superpage`: one `iommu_map` of 1 GiB with superpages allowed, ms (target < 1);
 *
 * Run: `deno run -A tools/bench/iommu_map.ts`.
 *
 * @module
 */
import {
  iommu_domain_free,
  iommu_iova_to_phys,
  iommu_map,
  iommu_paging_domain_alloc,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
} from "@iommu-lab/iommu";
import { mockSystem } from "@iommu-lab/iommu/testing";
import { ptMockTable } from "@iommu-lab/generic-pt/testing";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

const SZ_4K = 4096;
const SZ_1G = 2 ** 30;
const PAGES = SZ_1G / SZ_4K;
const PROT = IOMMU_READ | IOMMU_WRITE;

function _line(figure: string, value: number, unit: string, target: string): BenchLine {
  return benchLine("iommu_map", figure, Math.round(value * 1000) / 1000, unit, { target });
}

/** Runs the benchmark, yielding its figures. */
export function* run(): Generator<BenchLine> {
  const sys = mockSystem({ ramSize: 256 * 2 ** 20, iommu: { pageTable: ptMockTable } });
  const dev = sys.addDevice("bench0", 1);
  const iova = SZ_1G;
  const pa = 4 * SZ_1G;

  // A fresh domain per round, so every round also builds its page tables.
  let best4kMap = Infinity;
  let best4kUnmap = Infinity;
  for (let round = 0; round < 3; round++) {
    const domain = iommu_paging_domain_alloc(dev);
    let t = performance.now();
    for (let i = 0; i < PAGES; i++) {
      iommu_map(domain, iova + i * SZ_4K, pa + i * SZ_4K, SZ_4K, PROT);
    }
    best4kMap = Math.min(best4kMap, performance.now() - t);
    if (iommu_iova_to_phys(domain, iova + SZ_1G - 1) !== pa + SZ_1G - 1) throw new Error("bad map");
    t = performance.now();
    for (let i = 0; i < PAGES; i++) {
      if (iommu_unmap(domain, iova + i * SZ_4K, SZ_4K) !== SZ_4K) throw new Error("bad unmap");
    }
    best4kUnmap = Math.min(best4kUnmap, performance.now() - t);
    iommu_domain_free(domain);
  }
  yield _line("map_4k", PAGES / (best4kMap / 1000), "pages/s", ">= 2000000");
  yield _line("unmap_4k", PAGES / (best4kUnmap / 1000), "pages/s", ">= 2000000");

  const domain = iommu_paging_domain_alloc(dev);
  const times: number[] = [];
  for (let round = 0; round < 50; round++) {
    const t = performance.now();
    iommu_map(domain, iova, pa, SZ_1G, PROT);
    times.push(performance.now() - t);
    iommu_unmap(domain, iova, SZ_1G);
  }
  times.sort((a, b) => a - b);
  yield _line("map_1g_superpage", times[times.length >> 1], "ms", "< 1");
  iommu_domain_free(domain);
}

/** The command line. */
export const cli = benchCli("iommu_map", "iommu_map/iommu_unmap on the mock IOMMU.", run);

if (import.meta.main) await runTool("iommu_map", Deno.args, cli);
