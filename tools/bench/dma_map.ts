/**
 * dma-iommu throughput: `dma_map_page` + `dma_unmap_page` pairs through the mock IOMMU driver
 * (generic-pt riscv64 Sv39 DMA domain, strict invalidation, counting iotlb_sync).
 *
 * Figures (one JSON line each):
 * - `map_unmap_4k_pairs`: pairs/s of one 4 KiB buffer mapped and unmapped (target ≥ 1 M);
 * - `map_unmap_4k_batch64`: pairs/s when 64 mappings are outstanding at a time.
 *
 * Run: `deno run -A tools/bench/dma_map.ts`.
 *
 * @module
 */
import { dma_map_page, DMA_TO_DEVICE, dma_unmap_page } from "@iommu-lab/kernel";
import { mockSystem } from "@iommu-lab/iommu/testing";
import { ptMockTable } from "@iommu-lab/generic-pt/testing";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

function _line(figure: string, value: number, unit: string, target: string): BenchLine {
  return benchLine("dma_map", figure, Math.round(value), unit, { target });
}

/** Runs the benchmark, yielding its figures. */
export function* run(): Generator<BenchLine> {
  const sys = mockSystem({ iommu: { pageTable: ptMockTable } });
  const dev = sys.addDevice("bench0", 1);
  const page = sys.kernel.pages.alloc(0);
  const N = 1_000_000;

  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const t = performance.now();
    for (let i = 0; i < N; i++) {
      const addr = dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE);
      dma_unmap_page(dev, addr, 4096, DMA_TO_DEVICE);
    }
    best = Math.min(best, performance.now() - t);
  }
  yield _line("map_unmap_4k_pairs", N / (best / 1000), "pairs/s", ">= 1000000");

  const addrs = new Float64Array(64);
  best = Infinity;
  for (let round = 0; round < 3; round++) {
    const t = performance.now();
    for (let i = 0; i < N; i += 64) {
      for (let j = 0; j < 64; j++) addrs[j] = dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE);
      for (let j = 0; j < 64; j++) dma_unmap_page(dev, addrs[j], 4096, DMA_TO_DEVICE);
    }
    best = Math.min(best, performance.now() - t);
  }
  yield _line("map_unmap_4k_batch64", N / (best / 1000), "pairs/s", "");
}

/** The command line. */
export const cli = benchCli("dma_map", "dma_map_page/dma_unmap_page pairs on the mock IOMMU.", run);

if (import.meta.main) await runTool("dma_map", Deno.args, cli);
