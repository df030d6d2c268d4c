/**
 * `deno task demo`: dmatest through the platform RISC-V IOMMU, one DMA fault, and a Perfetto trace.
 *
 * The scenario, as a kernel developer would run it on QEMU `-M virt,iommu-sys=on` with a PCIe
 * DMA engine:
 *
 * 1. Boot a virt machine whose IOMMU is the platform device at 0x3010000 (`riscv,iommu`, MSIs
 *    through the IMSIC) and print the kernel log of the boot: the driver's probe, the IOMMU
 *    core's default domain, the DMA engine joining its IOMMU group.
 * 2. Run dmatest on every channel of the engine. Buffers come from the page allocator and are
 *    mapped per test with `dma_map_page`, so every byte moves through the engine's default DMA
 *    domain (IOVA → generic-pt page table → IOTLB); every unmap is a strict invalidation
 *    (IOTINVAL.VMA + IOFENCE.C through the command queue). Sources and destinations are checked
 *    byte by byte.
 * 3. Provoke one fault: a copy to an IOVA nothing maps. The IOMMU aborts the write, records it in
 *    the fault queue and interrupts; the driver's fault handler logs it in dmesg.
 * 4. Print a summary (what ran, pass/fail, simulated and real time, what the IOMMU did) and write
 *    the simulated timeline as a Chrome/Perfetto trace (`--trace PATH`, default
 *    `out/demo-trace.json`).
 *
 * With `--features iopf,dirty,hpm` (any of them) the machine is built with those series of the
 * driver, as the tools' `--features` builds it: with `iopf` the engine translates through its
 * ATC, each unmap sends ATS.INVAL, and the provoked fault becomes a page request the core refuses
 * (`page request fault report failed: -22`, then Invalid Request) instead of a fault record.
 *
 * Run: `deno task demo` (or `deno run -A examples/demo.ts --trace /tmp/t.json`).
 *
 * @module
 */
import { styleText } from "node:util";
import { dirname } from "node:path";
import {
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
  formatTimestamp,
  hex,
  type LogRecord,
  string_get_size,
} from "@iommu-lab/kernel";
import { IOMMU_DOMAIN_DMA, iommu_get_domain_for_dev, iommu_iova_to_phys } from "@iommu-lab/iommu";
import { Machine, riscvIommu } from "@iommu-lab/machine";
import { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { runDmatest } from "../tools/dma/dmatest.ts";
import { runTool, type Tool } from "../tools/cli.ts";
import { featureOptions, MACHINE_OPTIONS, parseFeatures } from "../tools/dma/_machine.ts";

/** What {@linkcode runDemo} did, for the caller (and the demo's test). */
export interface DemoResult {
  /** dmatest tests run and failed. */
  readonly tests: number;
  /** Failed dmatest tests (0 when all passed). */
  readonly failures: number;
  /**
   * The line the driver logged for the provoked fault (a fault record's, or with `iopf` the page
   * request's failed report), or null if none appeared.
   */
  readonly faultLine: string | null;
  /** The IOVA the provoked fault targeted. */
  readonly faultIova: number;
  /** IOMMU commands processed, by name (from the trace). */
  readonly commands: Readonly<Record<string, number>>;
  /** Simulated time of the whole run, ns. */
  readonly simNs: number;
  /** Wall-clock time, ms. */
  readonly realMs: number;
  /** Where the trace was written. */
  readonly tracePath: string;
  /** True when dmatest passed and the fault was reported as expected. */
  readonly ok: boolean;
}

/** Options of {@linkcode runDemo}. */
export interface DemoOptions {
  /** Trace file to write. Default `out/demo-trace.json`. */
  tracePath?: string;
  /** dmatest iterations per channel. Default 64. */
  iterations?: number;
  /** Where output lines go. Default `console.log`. */
  print?: (line: string) => void;
  /** The driver's series to build in, by `--features` name (`iopf`, `dirty`, `hpm`). Default none. */
  features?: readonly string[];
}

const _CAUSES: Record<number, string> = {
  13: "read page fault",
  15: "write/AMO page fault",
};

/** Runs the scenario of the module doc; returns what happened. */
export function runDemo(opts: DemoOptions = {}): DemoResult {
  const print = opts.print ?? console.log;
  const tracePath = opts.tracePath ?? "out/demo-trace.json";
  const head = (s: string) => print(`\n${styleText("bold", `== ${s}`)}`);
  // The demo's own lines: a label column, so they never pass for kernel log lines.
  const say = (label: string, text: string) => print(`${label.padEnd(14)} ${text}`);
  const dmesgSince = (from: number, filter?: RegExp) => {
    const recs: readonly LogRecord[] = m.kernel.dmesg.records().slice(from);
    for (const r of recs) {
      if (filter && !filter.test(r.text)) continue;
      print(`${formatTimestamp(r.ns)} ${r.text}`);
    }
    return recs.length + from;
  };
  const real0 = performance.now();

  const features = opts.features ?? [];
  head(
    "boot: virt machine, RISC-V IOMMU at 0x3010000 (platform), DMA engine at 00:02.0" +
      (features.length ? `; series ${features.join(", ")}` : ""),
  );
  const m = Machine.boot({
    ...featureOptions(features),
    iommu: riscvIommu({ features: [] }),
    iommuBus: "platform",
    trace: true,
  });
  let mark = dmesgSince(0);
  const chan0 = m.dmaChannel(0);
  const domain = iommu_get_domain_for_dev(chan0.dev);
  if (domain instanceof RiscvIommuDomain && domain.type === IOMMU_DOMAIN_DMA) {
    print("");
    say(
      "domain",
      `${chan0.dev.name}: default domain DMA (translated), PSCID ${domain.pscid}, ` +
        `Sv${domain.pt.vaBits} page table (generic-pt)`,
    );
  }

  const channels = m.dmaChannels().length;
  const iterations = opts.iterations ?? 64;
  head(
    `dmatest: ${channels} channels x ${iterations} copies, 16 KiB buffers, dma_map_page per test`,
  );
  const r = runDmatest(m, { iterations, test_buf_size: 16384 });
  mark = dmesgSince(mark, /dmatest: .*(summary|result|buf\[)/);

  head("fault: dma0chan0 copies to an IOVA nothing maps");
  const page = m.kernel.pages.alloc(0);
  const src = dma_map_page(chan0.dev, page, 0, 4096, DMA_BIDIRECTIONAL);
  let faultIova = 0xdead_0000;
  while (domain !== null && iommu_iova_to_phys(domain, faultIova) !== 0) faultIova += 0x10_0000;
  say("src", `IOVA ${hex(src)} = dma_map_page(phys ${hex(page)})`);
  say("dst", `IOVA ${hex(faultIova)}, unmapped (iommu_iova_to_phys: 0)`);
  const tx = chan0.memcpy(faultIova, src, 4096);
  dma_unmap_page(chan0.dev, src, 4096, DMA_BIDIRECTIONAL);
  m.kernel.pages.free(page, 0);
  say(
    "memcpy",
    `${tx.status}: engine error ${tx.error}, ${tx.xferred} bytes moved, failing address ` +
      `${hex(tx.errAddr)}, IOMMU cause ${tx.errCause}` +
      (_CAUSES[tx.errCause] ? ` (${_CAUSES[tx.errCause]})` : ""),
  );
  const before = mark;
  mark = dmesgSince(mark);
  const faultLine =
    m.kernel.dmesg.records().slice(before).map((l) => l.text).find((l) =>
      / Fault \d+ devid: | page request fault report failed: /.test(l)
    ) ?? null;

  const commands: Record<string, number> = {};
  let walks = 0;
  let misses = 0;
  let faults = 0;
  let recorded = 0;
  let msis = 0;
  for (const e of m.trace.events) {
    if (e.cat === "command") commands[e.name] = (commands[e.name] ?? 0) + 1;
    else if (e.cat === "walk" && e.name === "IOTLB miss") misses++;
    else if (e.cat === "walk" && e.name.endsWith("stage walk")) walks++;
    else if (e.cat === "fault") {
      faults++;
      if (e.args?.reported) recorded++;
    } else if (e.cat === "msi") msis++;
  }
  Deno.mkdirSync(dirname(tracePath), { recursive: true });
  m.trace.write(tracePath);
  const simNs = m.silicon.clock.now();
  const realMs = performance.now() - real0;

  const ok = r.failures === 0 && r.tests === channels * iterations && tx.status === "error" &&
    faultLine !== null;
  head("summary");
  const verdict = (pass: boolean) => pass ? styleText("green", "PASS") : styleText("red", "FAIL");
  say(
    "dmatest",
    `${verdict(r.failures === 0)}  ${r.tests} tests, ${r.failures} failures, ` +
      `${string_get_size(r.bytes)} copied, ${(r.simNs / 1000).toFixed(1)} us simulated`,
  );
  say("fault", `${verdict(faultLine !== null)}  ${faultLine ?? "no fault line in dmesg"}`);
  const cmdList = Object.entries(commands).map(([k, v]) => `${k} ${v}`).join(", ");
  say("IOMMU", `commands processed: ${cmdList || "none"}`);
  say(
    "",
    `IOTLB misses ${misses}, page walks ${walks}, faults ${faults} ` +
      `(${recorded} recorded in the fault queue), MSIs ${msis}`,
  );
  say("time", `${(simNs / 1e6).toFixed(3)} ms simulated, ${realMs.toFixed(0)} ms real`);
  say(
    "trace",
    `${tracePath} (${m.trace.events.length} events): open https://ui.perfetto.dev ` +
      `and drop the file on it (or chrome://tracing)`,
  );
  return {
    tests: r.tests,
    failures: r.failures,
    faultLine,
    faultIova,
    commands,
    simNs,
    realMs,
    tracePath,
    ok,
  };
}

/** The demo's options. */
const DEMO_OPTIONS = {
  trace: {
    type: "string",
    default: "out/demo-trace.json",
    arg: "PATH",
    help: "where to write the trace",
  },
  iterations: { type: "int", default: 64, min: 1, help: "dmatest copies per channel" },
  features: MACHINE_OPTIONS.features,
} as const;

/** The demo's command line. */
export const cli: Tool<typeof DEMO_OPTIONS> = {
  usage: "deno task demo [options]  (deno run -A examples/demo.ts [options])",
  summary: "Boots a virt machine, runs dmatest through the RISC-V IOMMU, provokes one DMA " +
    "fault and writes a Perfetto trace of the simulated timeline.",
  options: DEMO_OPTIONS,
  main(v, io) {
    const r = runDemo({
      tracePath: v.trace,
      iterations: v.iterations,
      features: parseFeatures(v.features),
      print: (l) => io.out(l),
    });
    return r.ok ? 0 : 1;
  },
};

if (import.meta.main) await runTool("demo", Deno.args, cli);
