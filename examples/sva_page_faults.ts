/**
 * SVA demand faults end to end: a PCIe DMA engine writes into pages of a process that were never
 * touched, and each page is faulted in for it through the page-request series.
 *
 * The scenario (the machine test's first case, `packages/machine/riscv_iommu_iopf_test.ts`):
 *
 * 1. Boot a virt machine with the page-request series (`iopfPart()`: an IOMMU with ATS, the
 *    driver's `iopf()` feature) and a DMA engine with ATS, PRI and PASID; print the kernel log.
 * 2. A process maps 64 pages and binds them to the engine (`iommu_sva_bind_device`): a PASID, a
 *    process context in the engine's PD directory, the process's own page table as first stage.
 * 3. The engine fills the 64 pages. Each ATS translation comes back without write permission; the
 *    engine sends page request groups; the IOMMU writes them to its page-request queue and
 *    interrupts; the driver's PQ thread reports them to the IOMMU core, which queues each group on
 *    the IOPF workqueue; the SVA handler runs `handle_mm_fault()` for every page and answers with
 *    ATS.PRGR Success; the engine retries and writes.
 * 4. Print the per-step timeline of the first group (simulated time of each step: DMA start, ATS
 *    miss, page request, PQ record, interrupt, PQ thread, IOPF work queued, handle_mm_fault,
 *    PRGR, the device's retry, completion), the simulated latency of one fault round trip, a
 *    summary, and write the Chrome/Perfetto trace (`--trace PATH`, default
 *    `out/sva-page-faults-trace.json`) with the steps on a track of their own.
 *
 * Run: `deno run -A examples/sva_page_faults.ts` (`--help` for the options).
 *
 * @module
 */
import { dirname } from "node:path";
import { styleText } from "node:util";
import { type PageRequest, PRQ_QUEUED, REQ_ATS, XLATE_OK } from "@iommu-lab/hw";
import {
  follow_pte,
  formatTimestamp,
  hex,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  pci_dev_id,
  PROT_READ,
  PROT_WRITE,
  pte_pfn,
  vm_mmap,
} from "@iommu-lab/kernel";
import {
  iommu_sva_bind_device,
  iommu_sva_get_pasid,
  iommu_sva_unbind_device,
  type IommuDomain,
} from "@iommu-lab/iommu";
import { iopfPart } from "@iommu-lab/riscv-iommu-iopf";
import { Machine, TRACK_CPU, TRACK_IRQ } from "@iommu-lab/machine";
import { runTool, type Tool } from "../tools/cli.ts";

/** One step of a fault's path, with the simulated time it happened at. */
export interface TimelineStep {
  /** Simulated time, ns. */
  readonly ns: number;
  /** What happened. */
  readonly what: string;
}

/** What {@linkcode runSvaPageFaults} did, for the caller (and the example's test). */
export interface SvaPageFaultsResult {
  /** Pages the engine filled. */
  readonly pages: number;
  /** Page request groups the engine sent. */
  readonly groups: number;
  /** Page requests in those groups. */
  readonly requests: number;
  /** The transfer completed and every page holds the pattern, in the process's own pages. */
  readonly dataOk: boolean;
  /** Every group reached the SVA handler and was answered exactly once, with Success. */
  readonly answeredOnce: boolean;
  /** The steps of the first group, in order. */
  readonly timeline: readonly TimelineStep[];
  /** Simulated ns from the first ATS miss to the retried translation that got the page. */
  readonly roundTripNs: number;
  /** Simulated time of the whole fill, ns. */
  readonly fillNs: number;
  /** Wall-clock time of the run, ms. */
  readonly realMs: number;
  /** Where the trace was written. */
  readonly tracePath: string;
  /** True when the data is right and every group was answered once. */
  readonly ok: boolean;
}

/** Options of {@linkcode runSvaPageFaults}. */
export interface SvaPageFaultsOptions {
  /** Pages the engine fills (never touched by the process). Default 64. */
  pages?: number;
  /** Trace file to write. Default `out/sva-page-faults-trace.json`. */
  tracePath?: string;
  /** Where output lines go. Default `console.log`. */
  print?: (line: string) => void;
}

/** The trace track the example's steps go on. */
const TRACK_STEPS = 8;
const PAGE = 4096;
const PATTERN = 0x5aa5_5aa5;

/** Runs the scenario of the module doc; returns what happened. */
export function runSvaPageFaults(opts: SvaPageFaultsOptions = {}): SvaPageFaultsResult {
  const print = opts.print ?? console.log;
  const pages = opts.pages ?? 64;
  const tracePath = opts.tracePath ?? "out/sva-page-faults-trace.json";
  const head = (s: string) => print(`\n${styleText("bold", `== ${s}`)}`);
  // The example's own lines: a label column, so they never pass for kernel log lines.
  const say = (label: string, text: string) => print(`${label.padEnd(14)} ${text}`);
  const real0 = performance.now();

  head("boot: virt machine, RISC-V IOMMU with ATS and the page-request series, a DMA engine");
  const m = Machine.boot({
    parts: [iopfPart()],
    dmaAts: true,
    dmaPri: true,
    dmaPasid: true,
    trace: true,
  });
  let logged = 0;
  const dmesg = () => {
    const recs = m.kernel.dmesg.records();
    if (recs.length === logged) say("dmesg", "(no new kernel messages)");
    for (const r of recs.slice(logged)) print(`${formatTimestamp(r.ns)} ${r.text}`);
    logged = recs.length;
  };
  dmesg();
  const chan = m.dmaChannel(0);
  const pdev = m.dmaDevices[0];

  head(`SVA: a process maps ${pages} pages it never touches and binds them to ${pdev.name}`);
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  const handle = iommu_sva_bind_device(pdev, mm);
  const pasid = iommu_sva_get_pasid(handle);
  say("process", `${pages} pages at ${hex(va)}, ${mm.rss} resident`);
  say("bind", `PASID ${pasid}: the process's own page table is the first stage`);
  dmesg();

  const p = probeFaults(m, handle.domain!, pci_dev_id(pdev));
  head(`fill: ${chan.name} writes ${hex(PATTERN)} over the ${pages} pages, PASID ${pasid}`);
  const tx = chan.memset(va, PATTERN, pages * PAGE, { pasid });
  dmesg();
  let dataOk = tx.status === "complete" && mm.rss === pages;
  for (let i = 0; dataOk && i < pages; i++) {
    const pa = pte_pfn(follow_pte(mm, va + i * PAGE)) * PAGE;
    dataOk = m.kernel.mem.read32(pa) === PATTERN && m.kernel.mem.read32(pa + PAGE - 4) === PATTERN;
  }
  say("memset", `${tx.status}: ${tx.xferred} bytes, ${mm.rss} pages resident now`);
  const answeredOnce = p.sent.length === p.reported.length &&
    p.responses.length === p.sent.length && p.responses.every((r) => r.code === 0) &&
    new Set(p.responses.map((r) => r.prgi)).size === p.responses.length;

  const steps = _timeline(m, p, tx.startNs, tx.doneNs);
  const roundTripNs = faultRoundTripNs(p);
  head("timeline of the first page request group (simulated time)");
  m.trace.tracks.set(TRACK_STEPS, "sva steps");
  for (const s of steps) {
    const at = `${(s.ns / 1000).toFixed(3)} us`.padStart(12);
    say(`+${((s.ns - steps[0].ns) / 1000).toFixed(3)} us`, `${at}  ${s.what}`);
    m.trace.events.push({
      name: s.what,
      cat: "step",
      ph: "i",
      ts: s.ns / 1000,
      s: "t",
      pid: 1,
      tid: TRACK_STEPS,
    });
  }

  head("summary");
  const verdict = (pass: boolean) => pass ? styleText("green", "PASS") : styleText("red", "FAIL");
  say(
    "data",
    `${verdict(dataOk)}  ${pages} pages filled, each in the process's own page ` +
      `(${p.sent.length} groups, ${p.requests} page requests)`,
  );
  say("answers", `${verdict(answeredOnce)}  each group handled and answered once, with Success`);
  say("round trip", `${(roundTripNs / 1000).toFixed(3)} us simulated: ATS miss to granted retry`);
  const fillNs = tx.doneNs - tx.startNs;
  iommu_sva_unbind_device(handle);
  mmput(mm);
  Deno.mkdirSync(dirname(tracePath), { recursive: true });
  m.trace.write(tracePath);
  const realMs = performance.now() - real0;
  say("time", `fill ${(fillNs / 1000).toFixed(1)} us simulated; ${realMs.toFixed(0)} ms real`);
  say(
    "trace",
    `${tracePath} (${m.trace.events.length} events): open https://ui.perfetto.dev ` +
      `and drop the file on it (or chrome://tracing)`,
  );
  return {
    pages,
    groups: p.sent.length,
    requests: p.requests,
    dataOk,
    answeredOnce,
    timeline: steps,
    roundTripNs,
    fillNs,
    realMs,
    tracePath,
    ok: dataOk && answeredOnce,
  };
}

/** What {@linkcode probeFaults} saw, in simulated time. */
export interface FaultProbes {
  /** The engine's ATS translation requests: the page, whether write was granted. */
  readonly ats: { ns: number; iova: number; granted: boolean }[];
  /** Page requests sent. */
  requests: number;
  /** Groups sent: the first and last request's times, whether the last was queued. */
  readonly sent: { first: number; last: number; prgi: number; pages: number; queued: boolean }[];
  /** Groups the SVA handler got (queued on the IOPF workqueue). */
  readonly reported: { ns: number; prgi: number }[];
  /** IOPF work items starting (iommu_sva_handle_iopf: handle_mm_fault for each page). */
  readonly work: { ns: number; prgi: number }[];
  /** PRG responses sent to the engine. */
  readonly responses: { ns: number; prgi: number; code: number }[];
}

/**
 * Watches the fault path of requester `devid` at its edges, without touching the models: the
 * root complex's translation port (ATS requests) and page-request port, the IOMMU's ATS port (PRG
 * responses), and the SVA domain's fault handler with the work item it queues.
 */
export function probeFaults(m: Machine, domain: IommuDomain, devid: number): FaultProbes {
  const clock = m.silicon.clock;
  const rc = m.silicon.rc;
  const iommu = m.silicon.iommu!;
  const p: FaultProbes = { ats: [], requests: 0, sent: [], reported: [], work: [], responses: [] };
  const xlate = rc.translator;
  rc.translator = {
    translate(req, res) {
      xlate.translate(req, res);
      if (req.kind !== REQ_ATS || req.deviceId !== devid) return;
      p.ats.push({
        ns: clock.now(),
        iova: req.iovaHi * 2 ** 32 + req.iovaLo,
        granted: res.status === XLATE_OK && (res.perm & 2) !== 0,
      });
    },
  };
  const port = rc.pageRequestPort!;
  let first = -1;
  let n = 0;
  rc.pageRequestPort = {
    pageRequest(pr: PageRequest): number {
      const now = clock.now();
      const r = port.pageRequest(pr);
      if (pr.pidValid && pr.last && !pr.read && !pr.write) return r;
      p.requests++;
      if (first < 0) first = now;
      n++;
      if (pr.last) {
        p.sent.push({ first, last: now, prgi: pr.prgIndex, pages: n, queued: r === PRQ_QUEUED });
        first = -1;
        n = 0;
      }
      return r;
    },
  };
  const ats = iommu.atsPort!;
  iommu.atsPort = {
    invalidate: (inv, done) => ats.invalidate(inv, done),
    pageResponse(rsp) {
      p.responses.push({ ns: clock.now(), prgi: rsp.prgIndex, code: rsp.responseCode });
      ats.pageResponse(rsp);
    },
  };
  const handler = domain.iopf_handler!;
  domain.iopf_handler = (group) => {
    const prgi = group.last_fault.fault.prm.grpid;
    p.reported.push({ ns: clock.now(), prgi });
    handler(group);
    const work = group.work.func;
    group.work.func = (w) => {
      p.work.push({ ns: clock.now(), prgi });
      work(w);
    };
  };
  return p;
}

/**
 * Simulated ns of the first fault's round trip: from the engine's first ATS translation that
 * granted no write to the retried translation of that page that did, after its group's answer.
 */
export function faultRoundTripNs(p: FaultProbes): number {
  const miss = p.ats.find((a) => !a.granted)!;
  const group = p.sent.find((g) => g.first >= miss.ns)!;
  const rsp = p.responses.find((r) => r.prgi === group.prgi && r.ns >= group.last)!;
  const retry = p.ats.find((a) => a.granted && a.iova === miss.iova && a.ns >= rsp.ns)!;
  return retry.ns - miss.ns;
}

/**
 * The steps of the first group, from the probes and the machine's trace (the IOMMU's MSI for
 * `pip`, the PQ thread's write of `ipsr`).
 */
function _timeline(
  m: Machine,
  p: FaultProbes,
  startNs: number,
  doneNs: number,
): TimelineStep[] {
  const g = p.sent[0];
  const miss = p.ats.find((a) => !a.granted)!;
  const rsp = p.responses.find((r) => r.prgi === g.prgi)!;
  const retry = p.ats.find((a) => a.granted && a.iova === miss.iova && a.ns >= rsp.ns)!;
  const after = (ns: number, pick: (e: { cat: string; name: string; tid: number }) => boolean) =>
    m.trace.events.find((e) => e.ts * 1000 >= ns && pick(e))!.ts * 1000;
  const msi = after(g.last, (e) => e.tid === TRACK_IRQ && e.cat === "msi");
  const thread = after(msi, (e) => e.tid === TRACK_CPU && e.name === "write iommu ipsr");
  const reported = p.reported.find((r) => r.prgi === g.prgi)!;
  const work = p.work.find((w) => w.prgi === g.prgi)!;
  const steps: TimelineStep[] = [
    { ns: startNs, what: "DMA start: the driver writes CMD.GO" },
    { ns: miss.ns, what: `ATS miss: the translation of ${hex(miss.iova)} grants no write` },
    { ns: g.first, what: `page request group ${g.prgi}: ${g.pages} pages asked, W` },
    { ns: g.last, what: `PQ records written (${g.pages}), ipsr.PIP set` },
    { ns: msi, what: "interrupt: the IOMMU's MSI for the PQ reaches the IMSIC" },
    { ns: thread, what: "PQ thread: riscv_iommu_priq_process() clears PIP, reads records" },
    { ns: reported.ns, what: "IOPF: the group is reported and queued on the IOPF workqueue" },
    { ns: work.ns, what: `IOPF work: handle_mm_fault() for the ${g.pages} pages` },
    { ns: rsp.ns, what: "ATS.PRGR Success reaches the engine" },
    { ns: retry.ns, what: `device retry: the translation of ${hex(retry.iova)} grants write` },
    { ns: doneNs, what: "completion: the last page written, MSI-X handled" },
  ];
  return steps;
}

/** The example's options. */
const OPTIONS = {
  pages: {
    type: "int",
    default: 64,
    min: 1,
    max: 4096,
    help: "pages the engine fills (the process never touched them)",
  },
  trace: {
    type: "string",
    default: "out/sva-page-faults-trace.json",
    arg: "PATH",
    help: "where to write the trace",
  },
} as const;

/** The example's command line. */
export const cli: Tool<typeof OPTIONS> = {
  usage: "deno run -A examples/sva_page_faults.ts [options]",
  summary: "A DMA engine bound with SVA fills pages its process never touched: each is " +
    "faulted in through the page-request queue, the IOPF workqueue and ATS.PRGR; prints the " +
    "dmesg, the timeline of the first fault and its round trip, and writes a Perfetto trace.",
  options: OPTIONS,
  main(v, io) {
    const r = runSvaPageFaults({ pages: v.pages, tracePath: v.trace, print: (l) => io.out(l) });
    return r.ok ? 0 : 1;
  },
};

if (import.meta.main) await runTool("sva_page_faults", Deno.args, cli);
