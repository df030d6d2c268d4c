/**
 * dmatest through the whole machine: 64 MiB copied by the DMA engine's four channels in 4 KiB
 * tests, each buffer mapped and unmapped with `dma_map_page` per test (so 32 Ki map/unmap pairs
 * with strict invalidation, 16 Ki IOTLB-missing copies, 16 Ki completion MSIs), every byte
 * filled and verified by the CPU.
 *
 * Figures (one JSON line each):
 * - `copy_64mib_4k_real_s`: wall-clock seconds of the run (target < 5);
 * - `copy_64mib_4k_sim_us`: simulated µs the same run took on the machine (for reference).
 *
 * Run: `deno run -A tools/bench/dmatest.ts`.
 *
 * @module
 */
import { Machine, riscvIommu } from "@iommu-lab/machine";
import { runDmatest } from "../dma/dmatest.ts";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

/** Runs the benchmark, yielding its figures. */
export function* run(): Generator<BenchLine> {
  const m = Machine.boot({ iommu: riscvIommu({ features: [] }), iommuBus: "platform" });
  const chans = m.dmaChannels().length;
  const total = 64 << 20;
  const r = runDmatest(m, {
    iterations: total / 4096 / chans,
    test_buf_size: 4096,
    norandom: true,
  });
  if (r.failures !== 0 || r.bytes !== total) {
    throw new Error(`dmatest failed: ${r.failures} failures, ${r.bytes} bytes`);
  }
  const line = (figure: string, value: number, unit: string, target: string) =>
    benchLine("dmatest", figure, value, unit, { target });
  yield line("copy_64mib_4k_real_s", Number((r.realMs / 1000).toFixed(3)), "s", "< 5");
  yield line("copy_64mib_4k_sim_us", Math.round(r.simNs / 1000), "us", "");
}

/** The command line. */
export const cli = benchCli("dmatest", "dmatest copying 64 MiB through the whole machine.", run);

if (import.meta.main) await runTool("dmatest", Deno.args, cli);
