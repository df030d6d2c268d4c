import assert from "node:assert/strict";
import { Machine, riscvIommu } from "@iommu-lab/machine";
import {
  cli,
  DMA_MAP_MAX_TRANS_DELAY,
  formatMapBenchmark,
  type MapBenchmarkResult,
  runMapBenchmark,
} from "./dma_map_benchmark.ts";
import { checkBadArguments, runCaptured } from "../cli_testing.ts";

const LINES = [
  /^dma mapping benchmark: threads:\d+ seconds:[\d.]+ node:-?\d+ dir:(BIDIRECTIONAL|TO_DEVICE|FROM_DEVICE) granule: \d+$/,
  /^average map latency\(us\):\d+\.\d\d standard deviation:\d+\.\d\d$/,
  /^average unmap latency\(us\):\d+\.\d\d standard deviation:\d+\.\d\d$/,
];

Deno.test("formatMapBenchmark prints the tool's lines, latencies in µs (two decimals) from 100 ns units", () => {
  const r: MapBenchmarkResult = {
    avg_map_100ns: 7.04,
    map_stddev: 2,
    avg_unmap_100ns: 14.96,
    unmap_stddev: 0.3,
    loops: 10,
    simNs: 1e9,
    realMs: 1,
    params: { threads: 4, seconds: 1, granule: 2, dir: 1, dma_trans_ns: 0, dma_bits: 32, node: -1 },
  };
  assert.deepEqual(formatMapBenchmark(r).split("\n"), [
    "dma mapping benchmark: threads:4 seconds:1 node:-1 dir:TO_DEVICE granule: 2",
    "average map latency(us):0.70 standard deviation:0.20",
    "average unmap latency(us):1.50 standard deviation:0.03",
  ]);
});

Deno.test("dma_map_benchmark maps and unmaps through the IOMMU for the simulated seconds asked", async (t) => {
  const m = Machine.boot({ iommu: riscvIommu({ features: [] }), dmaChannels: 1 });
  const dev = m.dmaDevices[0];
  const mask = dev.dmaMask;
  await t.step("one thread, 50 µs", () => {
    const t0 = m.silicon.clock.now();
    const r = runMapBenchmark(dev, { seconds: 50e-6 });
    // The run is timed once its buffer is allocated (zeroing the page costs CPU time too).
    const alloc = m.silicon.clock.now() - t0 - r.simNs;
    assert.ok(r.simNs >= 50_000 && alloc >= 0 && alloc < 1_000, `${r.simNs} ns, ${alloc} ns`);
    assert.ok(r.loops > 10);
    // A map writes PTEs (CPU memory accesses); an unmap also waits for IOTINVAL.VMA +
    // IOFENCE.C to run on the command queue, so it takes longer.
    assert.ok(r.avg_map_100ns > 0);
    assert.ok(r.avg_unmap_100ns > r.avg_map_100ns, `${r.avg_unmap_100ns} <= ${r.avg_map_100ns}`);
    assert.ok(r.map_stddev >= 0 && r.unmap_stddev >= 0);
    // The average covers the run: loops × (map + unmap) cannot exceed the time it took.
    assert.ok(r.loops * (r.avg_map_100ns + r.avg_unmap_100ns) * 100 <= r.simNs + 1e-6);
    formatMapBenchmark(r).split("\n").forEach((l, i) => assert.match(l, LINES[i]));
  });
  await t.step("four threads, 8-page granule, a 2 µs transfer, to the device", () => {
    const r = runMapBenchmark(dev, {
      threads: 4,
      granule: 8,
      dma_trans_ns: 2000,
      dir: 1,
      seconds: 50e-6,
    });
    assert.equal(r.loops % 4, 0);
    // Each round of four pairs spends 2 µs transferring, so at most 25 rounds fit in 50 µs.
    assert.ok(r.loops <= 4 * 26);
    assert.match(
      formatMapBenchmark(r),
      /threads:4 seconds:0.00005 node:-1 dir:TO_DEVICE granule: 8/,
    );
  });
  await t.step("nothing left behind: buffers freed, mask restored", () => {
    // The first run grows the domain's page table below 2^40; tables stay, as in Linux.
    runMapBenchmark(dev, { seconds: 10e-6, dma_bits: 40, granule: 4 });
    const before = m.kernel.pages.allocatedPages;
    runMapBenchmark(dev, { seconds: 10e-6, dma_bits: 40, granule: 4 });
    assert.equal(m.kernel.pages.allocatedPages, before);
    assert.equal(dev.dmaMask, mask);
  });
});

Deno.test("dma_map_benchmark rejects what the kernel's ioctl rejects (EINVAL)", async (t) => {
  const m = Machine.boot({ iommu: riscvIommu({ features: [] }), dmaChannels: 1 });
  const dev = m.dmaDevices[0];
  for (
    const [name, opts] of [
      ["0 threads", { threads: 0 }],
      ["1025 threads", { threads: 1025 }],
      ["0 seconds", { seconds: 0 }],
      ["301 seconds", { seconds: 301 }],
      ["granule 0", { granule: 0 }],
      ["granule 1025", { granule: 1025 }],
      ["direction 3 (DMA_NONE)", { dir: 3 }],
      ["dma_trans_ns above 10 ms", { dma_trans_ns: DMA_MAP_MAX_TRANS_DELAY + 1 }],
      ["dma_bits 19", { dma_bits: 19 }],
      ["dma_bits 65", { dma_bits: 65 }],
    ] as const
  ) {
    await t.step(name, () => assert.throws(() => runMapBenchmark(dev, opts), { code: "EINVAL" }));
  }
  await t.step("direct FROM_DEVICE mapping without a transfer time never ends: refused", () => {
    const direct = Machine.boot({ iommu: "none", dmaChannels: 1 });
    const dev = direct.dmaDevices[0];
    assert.throws(() => runMapBenchmark(dev, { seconds: 1e-6, dir: 2 }), { code: "EINVAL" });
    const r = runMapBenchmark(dev, { seconds: 1e-6, dir: 2, dma_trans_ns: 100 });
    assert.equal(r.avg_map_100ns, 0);
    assert.equal(r.loops, 10);
    // Other directions dirty the buffer before each map: that time ends the run.
    const touched = runMapBenchmark(dev, { seconds: 1e-6 });
    assert.equal(touched.avg_map_100ns, 0);
    assert.ok(touched.loops > 0 && touched.simNs >= 1000);
  });
});

Deno.test("dma_map_benchmark.ts command line prints the tool's three lines", async () => {
  const r = await runCaptured("dma_map_benchmark", cli, [
    "-t",
    "2",
    "-s",
    "0.00002",
    "--iommu-bus",
    "pci",
  ]);
  assert.equal(r.status, 0, r.err.join("\n"));
  r.out.slice(0, 3).forEach((l, i) => assert.match(l, LINES[i]));
  assert.match(r.out[3], /^\(\d+ map\/unmap pairs in \d+ ms real\)$/);
});

Deno.test("dma_map_benchmark.ts: bad arguments are one line and status 2, never a stack trace", async (t) => {
  await checkBadArguments(t, "dma_map_benchmark", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["-q"], "unknown option -q"],
    [["5"], 'unexpected argument "5"'],
    [["-t"], "-t needs a value"],
    [["-t", "-s", "1"], "-t needs a value"],
    [["-t", "0"], "-t: 0 is out of range (1 to 1024)"],
    [["-t", "2000"], "-t: 2000 is out of range (1 to 1024)"],
    [["--threads", "1e3"], "--threads: 1e3 is not an integer (decimal or 0x)"],
    [["-s", "1e-3"], "-s: 1e-3 is not a decimal number"],
    [["-s", "-1"], "-s: -1 is out of range (0 to 300)"],
    [["-s", "400"], "-s: 400 is out of range (0 to 300)"],
    [["-s", "0"], "invalid duration seconds (-EINVAL)"],
    [["-g", "0"], "-g: 0 is out of range (1 to 1024)"],
    [["-d", "3"], "-d: 3 is out of range (0 to 2)"],
    [["-x", "-1"], "-x: -1 is out of range (0 to 10000000)"],
    [["-b", "16"], "-b: 16 is out of range (20 to 64)"],
    [["-n", "-2"], "-n: -2 is out of range (at least -1)"],
    [["--channels", "40"], "--channels: 40 is out of range (1 to 32)"],
    [["--iommu", "amd"], "--iommu: amd is not one of riscv, t100, none"],
    [["--features", "iopf,ats"], "--features: ats is not one of iopf, dirty, hpm, none"],
    [["--features", "iopf", "--iommu", "none"], "--features iopf: not with --iommu none"],
  ]);
});
