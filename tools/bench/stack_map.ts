/**
 * The whole DMA-mapping stack on the machine: `dma_map_page` + `dma_unmap_page` pairs of one
 * 4 KiB page on the DMA engine behind the RISC-V IOMMU — dma-iommu (IOVA allocator) →
 * `iommu_map` / `iommu_unmap` → generic-pt → the driver's strict invalidation (IOTINVAL.VMA +
 * IOFENCE.C on the command queue) → the silicon processing the queue, polled in simulated time.
 *
 * Figures (one JSON line each), pairs per second of REAL time:
 * - `map_unmap_4k_pairs_platform`: the platform IOMMU (target ≥ 300 k);
 * - `map_unmap_4k_pairs_pci`: the PCI IOMMU (same path, another front end).
 *
 * Run: `deno run -A tools/bench/stack_map.ts`.
 *
 * @module
 */
import { DMA_BIDIRECTIONAL, dma_map_page, dma_unmap_page } from "@iommu-lab/kernel";
import { Machine, riscvIommu } from "@iommu-lab/machine";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

function _line(figure: string, value: number, unit: string, target: string): BenchLine {
  return benchLine("stack_map", figure, Math.round(value), unit, { target });
}

/** Runs the benchmark, yielding its figures. */
export function* run(): Generator<BenchLine> {
  for (const bus of ["platform", "pci"] as const) {
    const m = Machine.boot({ iommu: riscvIommu({ features: [] }), iommuBus: bus, dmaChannels: 1 });
    const dev = m.dmaDevices[0];
    const page = m.kernel.pages.alloc(0);
    const N = 200_000;
    let best = Infinity;
    for (let round = 0; round < 3; round++) {
      const t = performance.now();
      for (let i = 0; i < N; i++) {
        const addr = dma_map_page(dev, page, 0, 4096, DMA_BIDIRECTIONAL);
        dma_unmap_page(dev, addr, 4096, DMA_BIDIRECTIONAL);
      }
      best = Math.min(best, performance.now() - t);
    }
    yield _line(
      `map_unmap_4k_pairs_${bus}`,
      N / (best / 1000),
      "pairs/s",
      bus === "platform" ? ">= 300000" : "",
    );
  }
}

/** The command line. */
export const cli = benchCli("stack_map", "The whole DMA-mapping stack on the machine.", run);

if (import.meta.main) await runTool("stack_map", Deno.args, cli);
