// perf on the RISC-V IOMMU HPM driver's PMUs, on machines booted as `perf` boots them (the HPM
// series in the kernel): perf list, the seed's two perf stat commands on a T100 and the counts
// against the test's own count of what the silicon did, JSON vendor events, groups and
// multiplexing on a global filter.
import assert from "node:assert/strict";
import { type InboundRequest, REQ_UNTRANSLATED, type TranslationResult } from "@iommu-lab/hw";
import type { Machine } from "@iommu-lab/machine";
import { bootPerfMachine, perfMain } from "./perf.ts";

const URQ = 1, ATS_RQ = 3, DD_WALK = 5;
const DMA0 = 0x0c_0010; // 000c:00:02.0, dma0chan0's engine, with --pci-domain 0xc

/** What the test saw: the IOMMU (IOATS) translator's events, and requests into the T100. */
interface Seen {
  /** Translator events by device: [event ID, device_id]. */
  events: [number, number][];
  /** Untranslated requests of each device_id as they entered the IOMMU (a T100's IOATCs). */
  into: Map<number, number>;
}

interface Run {
  status: number;
  out: string[];
  err: string[];
  seen: Seen;
  machine: Machine | null;
}

/** Runs perf on `args` (a command line split at spaces, or the words). */
async function perf(args: string | string[]): Promise<Run> {
  const seen: Seen = { events: [], into: new Map() };
  const r: Run = { status: -1, out: [], err: [], seen, machine: null };
  r.status = await perfMain(typeof args === "string" ? args.split(" ") : args, {
    out: (l) => r.out.push(...l.split("\n")),
    err: (l) => r.err.push(l),
    boot: (v) => {
      const m = bootPerfMachine(v);
      m.silicon.iommu?.translator.addEventObserver({
        count: (id, did) => void seen.events.push([id, did]),
      });
      const rc = m.silicon.rc;
      const port = rc.translator;
      rc.translator = {
        translate(req: InboundRequest, res: TranslationResult) {
          if (req.kind === REQ_UNTRANSLATED) {
            seen.into.set(req.deviceId, (seen.into.get(req.deviceId) ?? 0) + 1);
          }
          port.translate(req, res);
        },
      };
      r.machine = m;
      return m;
    },
  });
  return r;
}

const events = (r: Run, id: number, did?: number) =>
  r.seen.events.filter(([e, d]) => e === id && (did === undefined || d === did)).length;

const big = (n: number) => n.toLocaleString("en-US");
const pad = (count: string, name: string) => `${count.padStart(18)}      ${name.padEnd(32)}`;

Deno.test("perf list: the HPM driver's PMUs with their events; on a T100 the JSON vendor events matched by identifier", async () => {
  const plain = await perf("list");
  assert.equal(plain.status, 0);
  const names = ["ats_rq", "cycles", "dd_walk", "g_walk", "pd_walk", "s_walk", "tlb_mis"]
    .concat(["trans_rq", "untrans_rq"]);
  assert.deepEqual(
    plain.out.filter((l) => l.includes("[Kernel PMU event]")).map((l) => l.trim().split(/\s+/)[0]),
    names.map((n) => `riscv_iommu_hpm/${n}/`),
  );
  assert.ok(!plain.out.some((l) => l.includes("ioatc_")), "identifier riscv,iommu: no T100 events");
  assert.match(
    plain.out.at(-1)!,
    /^ {2}riscv_iommu_hpm\/event=0\.\.0x7fff,filter_pid_pscid=0\.\.0xfffff,filter_did_gscid=0\.\.0xffffff,/,
  );
  const t100 = await perf("list --iommu t100");
  const kernel = t100.out.filter((l) => l.includes("[Kernel PMU event]"));
  assert.deepEqual(
    kernel.filter((l) => l.includes("spacemit_ioatc_hpm/")).map((l) => l.trim().split(/\s+/)[0]),
    ["cycles", "tlb_mis", "trans_rq", "untrans_rq"].map((n) => `spacemit_ioatc_hpm/${n}/`),
  );
  assert.equal(kernel.filter((l) => l.includes("spacemit_ioats_hpm/")).length, 9);
  for (const ev of ["ioatc_tlb_hit", "ioatc_tlb_miss", "ioatc_tlb_fill", "ioats_ddtc_miss"]) {
    assert.ok(t100.out.includes(`  ${ev}`), ev);
  }
  const details = await perf("list --details --iommu t100 spacemit_ioats_hpm");
  assert.ok(details.out.includes("        spacemit_ioats_hpm/event=0x5/"), details.out.join("\n"));
});

Deno.test("perf stat: the seed's two commands on a T100 (PCI segment 0xc) count what the silicon did", async () => {
  const t100 = "--iommu t100 --pci-domain 0xc --timeout 5000 -a";
  const walks = await perf(
    `stat ${t100} -e spacemit_ioats_hpm_0/dd_walk,config1=0x20c0010000000000/ dmatest`,
  );
  assert.equal(walks.status, 0);
  assert.match(walks.out.at(-1)!, /dmatest: dma0chan0-copy0: summary 1 tests, 0 failures/);
  const n = events(walks, DD_WALK, DMA0);
  assert.ok(n > 0);
  assert.equal(walks.err[1], " Performance counter stats for 'system wide':");
  assert.equal(
    walks.err[3],
    `${pad(big(n), "spacemit_ioats_hpm_0/dd_walk,config1=0x20c0010000000000/")}${" ".repeat(38)}`,
  );
  assert.match(walks.err[5], /^ +0\.0000\d+ seconds time elapsed$/);

  const misses = await perf(
    `stat ${t100} -e spacemit_ioatc_hpm_1/tlb_mis,config1=0x20c0010000000000/ dmatest`,
  );
  // An IOATC miss is a request the IOATC passes on: the IOATS sees it as an untranslated one.
  const m = events(misses, URQ, DMA0);
  assert.ok(m > 0 && m < misses.seen.into.get(DMA0)!, "some of dmatest's requests hit IOATC 0");
  assert.equal(misses.err[3].trim().split(/\s+/)[0], big(m));
});

Deno.test("perf stat: generic events on a riscv,iommu and the T100's JSON vendor events count the silicon's events", async () => {
  const plain = await perf(
    "stat -a -x , -e riscv_iommu_hpm_0/untrans_rq/,riscv_iommu_hpm_0/dd_walk/ -- dmatest --iterations 10",
  );
  assert.deepEqual(plain.err.map((l) => l.split(",").slice(0, 3).join(",")), [
    `${events(plain, URQ)},,riscv_iommu_hpm_0/untrans_rq/`,
    `${events(plain, DD_WALK)},,riscv_iommu_hpm_0/dd_walk/`,
  ]);

  const t100 = await perf(
    "stat --iommu t100 -a -x , -e spacemit_ioatc_hpm_1/ioatc_tlb_miss/,spacemit_ioatc_hpm_1/ioatc_tlb_hit/,ioats_ddtc_miss dmatest --iterations 10",
  );
  const dev = 0x10; // segment 0
  const miss = events(t100, URQ, dev);
  assert.deepEqual(t100.err.map((l) => l.split(",").slice(0, 3).join(",")), [
    `${miss},,spacemit_ioatc_hpm_1/ioatc_tlb_miss/`,
    `${t100.seen.into.get(dev)! - miss},,spacemit_ioatc_hpm_1/ioatc_tlb_hit/`,
    `${events(t100, DD_WALK)},,ioats_ddtc_miss`,
  ]);
});

Deno.test("perf stat --features iopf,dirty: perf keeps its HPM series; ats_rq counts the ATS translation requests of the engine the page-request series enabled ATS on", async () => {
  const r = await perf(
    "stat --features iopf,dirty -a -x , -e riscv_iommu_hpm_0/ats_rq/,riscv_iommu_hpm_0/untrans_rq/ -- dmatest --iterations 10",
  );
  assert.equal(r.status, 0, r.err.join("\n"));
  assert.deepEqual(r.machine!.driver!.features.map((f) => f.name), [
    "iopf",
    "dirty-tracking",
    "hpm",
  ]);
  const ats = events(r, ATS_RQ);
  assert.ok(ats > 0, "the engine asked the IOMMU for translations");
  assert.deepEqual(r.err.map((l) => l.split(",").slice(0, 3).join(",")), [
    `${ats},,riscv_iommu_hpm_0/ats_rq/`,
    `${events(r, URQ)},,riscv_iommu_hpm_0/untrans_rq/`,
  ]);
});

Deno.test("perf stat: a group shares the T100's one filter or is <not supported>; lone events with two filters multiplex", async () => {
  const ioatc = "spacemit_ioatc_hpm_1";
  const f = "config1=0x20c0010000000000";
  const t100 = "--iommu t100 --pci-domain 0xc -a -x ,";
  const group = await perf(
    `stat ${t100} -e {${ioatc}/untrans_rq,${f}/,${ioatc}/tlb_mis,${f}/},{${ioatc}/untrans_rq/,${ioatc}/tlb_mis,${f}/} dmatest --iterations 5`,
  );
  const into = group.seen.into.get(DMA0)!;
  const fields = group.err.map((l) => l.split(","));
  // The second group's sibling has another filter than its leader: EINVAL. Its leader, alone now,
  // waits for the first group, whose filter holds the block, to go: not in this short run.
  assert.deepEqual(fields.map((f) => f[0]), [
    `${into}`,
    `${events(group, URQ, DMA0)}`,
    "<not counted>",
    "<not supported>",
  ]);

  // Two filters cannot count at once: rotation every 4 ms gives each half of the run.
  const mux = await perf(
    `stat ${t100} -e ${ioatc}/untrans_rq/ -e ${ioatc}/untrans_rq,${f}/ dmatest --iterations 3000`,
  );
  const total = mux.seen.into.get(DMA0)!;
  for (const line of mux.err) {
    // count,unit,name,run,percent,,: the name has a comma of its own.
    const f = line.split(",");
    const [count, run, percent] = [f[0], f.at(-4), f.at(-3)];
    assert.ok(Number(percent) > 30 && Number(percent) < 70, line);
    assert.ok(Number(run) > 0, line);
    assert.ok(Math.abs(Number(count) - total) < total * 0.1, `${line} vs ${total}`);
  }
});
