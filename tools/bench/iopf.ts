/**
 * Page requests served through the whole page-request path: a PCIe DMA engine bound with SVA
 * fills 64 MiB of a process that never touched it, so every page goes device → PQ → interrupt →
 * IOPF → handler (`handle_mm_fault()`) → ATS.PRGR → the device's retry, in groups of 8.
 *
 * Figures (one JSON line each):
 * - `page_requests_per_s`: page requests served per second of real time (target ≥ 100 000), over
 *   five fills once three have warmed the JIT; `first_fill_requests_per_s` is the first, cold one;
 * - `fault_round_trip_sim_ns`: simulated ns of one fault round trip, from the ATS translation
 *   that granted no write to the retried one that did (`examples/sva_page_faults.ts` prints the
 *   steps in between).
 *
 * Run: `deno run -A tools/bench/iopf.ts`.
 *
 * @module
 */
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  pci_dev_id,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import {
  iommu_sva_bind_device,
  iommu_sva_get_pasid,
  iommu_sva_unbind_device,
} from "@iommu-lab/iommu";
import { iopfPart } from "@iommu-lab/riscv-iommu-iopf";
import { Machine } from "@iommu-lab/machine";
import { faultRoundTripNs, probeFaults } from "../../examples/sva_page_faults.ts";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

const PAGE = 4096;

/** A machine with the series and an engine with ATS, PRI and PASID. */
export function iopfMachine(): Machine {
  return Machine.boot({ parts: [iopfPart()], dmaAts: true, dmaPri: true, dmaPasid: true });
}

/**
 * Binds a fresh process to the engine of `m` and has it fill `pages` the process never touched;
 * returns the real seconds of the fill and (with `probe`) the first fault's round trip.
 */
export function fill(m: Machine, pages: number, probe = false): { s: number; rtNs: number } {
  const chan = m.dmaChannel(0);
  const pdev = m.dmaDevices[0];
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const h = iommu_sva_bind_device(pdev, mm);
  const p = probe ? probeFaults(m, h.domain!, pci_dev_id(pdev)) : null;
  const t0 = performance.now();
  const tx = chan.memset(va, 0x5a5a_5a5a, pages * PAGE, { pasid: iommu_sva_get_pasid(h) });
  const s = (performance.now() - t0) / 1000;
  // Each page was asked for once: the engine asks only for what its ATC does not grant.
  if (tx.status !== "complete" || mm.rss !== pages) {
    throw new Error(`the fill failed: ${tx.status}, error ${tx.error}, ${mm.rss} pages resident`);
  }
  iommu_sva_unbind_device(h);
  mmput(mm);
  return { s, rtNs: p === null ? 0 : faultRoundTripNs(p) };
}

/** Runs the benchmark, yielding its figures. */
export function* run(): Generator<BenchLine> {
  const pages = 16384;
  const rounds = 5;
  // One long-running machine: its first fills warm the JIT and leave the memory the later
  // processes get back from the page allocator, as on a system that has run for a while.
  const m = iopfMachine();
  const cold = fill(m, pages).s;
  for (let i = 0; i < 2; i++) fill(m, pages);
  let s = 0;
  for (let i = 0; i < rounds; i++) s += fill(m, pages).s;
  yield benchLine("iopf", "page_requests_per_s", Math.round(rounds * pages / s), "requests/s", {
    target: ">= 100000",
    pages,
    rounds,
    group_pages: 8,
    first_fill_requests_per_s: Math.round(pages / cold),
  });
  yield benchLine("iopf", "fault_round_trip_sim_ns", fill(iopfMachine(), 8, true).rtNs, "ns", {
    target: "",
    group_pages: 8,
  });
}

/** The command line. */
export const cli = benchCli(
  "iopf",
  "Page requests served through the whole page-request path, and one fault's round trip.",
  run,
);

if (import.meta.main) await runTool("iopf", Deno.args, cli);
