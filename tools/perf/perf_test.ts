import assert from "node:assert/strict";
import { Errno, pci_irq_vector } from "@iommu-lab/kernel";
import type { Machine } from "@iommu-lab/machine";
import { perf_hw_context, perf_pmu_register, type PerfEvent } from "@iommu-lab/perf";
import { TestPmu } from "@iommu-lab/perf/testing";
import { bootMachine } from "../dma/_machine.ts";
import { perfMain } from "./perf.ts";

/**
 * PMUs that count what the machine does, registered on the booted kernel the way a PMU driver
 * registers during boot: `irq` counts deliveries of the virq its `event` names (the DMA
 * channels' completion MSIs), `clk` counts nanoseconds of the machine's clock.
 */
function registerTestPmus(m: Machine, opts: { clkPmus?: string[]; clkCounters?: number } = {}) {
  const k = m.kernel;
  const irq = new TestPmu({
    source: (virq) => BigInt(k.irq.desc(virq)?.count ?? 0),
    events: { dma0chan0: `event=${pci_irq_vector(m.dmaChannel(0).dev, 0)}` },
  });
  perf_pmu_register(k, irq, "irq", -1);
  for (const name of opts.clkPmus ?? ["clk"]) {
    const clk = new TestPmu({
      source: () => BigInt(m.silicon.clock.now()),
      counters: opts.clkCounters,
      formats: { unused: "config1:0-3,8-11" },
    });
    perf_pmu_register(k, clk, name, -1);
  }
}

interface Run {
  status: number;
  out: string[];
  err: string[];
  machine: Machine | null;
  /** Simulated time when perf took over the booted machine. */
  t0: number;
}

/** Runs perf on `args` (a command line split at spaces, or the words) on a machine `setup` readies. */
async function perf(
  args: string | string[],
  setup: (m: Machine) => void = registerTestPmus,
): Promise<Run> {
  const r: Run = { status: -1, out: [], err: [], machine: null, t0: 0 };
  r.status = await perfMain(typeof args === "string" ? args.split(" ") : args, {
    out: (l) => r.out.push(...l.split("\n")),
    err: (l) => r.err.push(l),
    boot: (v) => {
      const m = bootMachine(v);
      setup(m);
      r.machine = m;
      r.t0 = m.silicon.clock.now();
      return m;
    },
  });
  return r;
}

const pad = (count: string, name: string) =>
  `${count.padStart(18)}      ${name.padEnd(32)}${" ".repeat(38)}`;

Deno.test("perf stat -a: counts DMA completion interrupts of a dmatest run in perf's layout", async () => {
  const r = await perf("stat -a -e irq/dma0chan0/ -- dmatest --iterations 5");
  assert.equal(r.status, 0);
  // The workload's console lines on stdout, as dmatest's module prints them.
  assert.equal(r.out.length, 3);
  assert.match(r.out[1], /^\[ +\d+\.\d{6}\] dmatest: Started 1 threads using dma0chan0$/);
  assert.match(r.out[2], /dmatest: dma0chan0-copy0: summary 5 tests, 0 failures/);
  const elapsed = (r.machine!.silicon.clock.now() - r.t0) / 1e9;
  assert.ok(elapsed > 0);
  assert.deepEqual(r.err, [
    "",
    " Performance counter stats for 'system wide':",
    "",
    pad("5", "irq/dma0chan0/"),
    "",
    ` ${elapsed.toFixed(9).padStart(17)} seconds time elapsed`,
    "",
  ]);
});

Deno.test("perf stat: the header names the workload without -a; an uncore event is <not supported>", async () => {
  const r = await perf("stat -e irq/dma0chan0/ dmatest --iterations 2 --seed 3");
  assert.equal(r.status, 0);
  assert.equal(r.err[1], " Performance counter stats for 'dmatest --iterations 2 --seed 3':");
  // perf opens an uncore PMU's events on its cpumask CPUs for the task: EINVAL.
  assert.equal(r.err[3], pad("<not supported>", "irq/dma0chan0/"));
});

Deno.test("perf stat: thousands separators by default, none with --no-big-num", async () => {
  const big = await perf("stat -a -e clk/event=0/ sleep 0.0012345");
  assert.equal(big.err[3], pad("1,234,500", "clk/event=0/"));
  assert.equal(big.err[5], "       0.001234500 seconds time elapsed");
  const plain = await perf("stat -a --no-big-num -e clk/event=0/ sleep 0.0012345");
  assert.equal(plain.err[3], pad("1234500", "clk/event=0/"));
});

Deno.test("perf stat -x: CSV lines count,unit,name,run,percent,metric,unit", async () => {
  const r = await perf("stat -a -x , -e clk/event=0/,irq/dma0chan0/,r1 sleep 0.002");
  assert.equal(r.status, 0);
  assert.deepEqual(r.err, [
    "2000000,,clk/event=0/,2000000,100.00,,",
    "0,,irq/dma0chan0/,2000000,100.00,,",
    "<not supported>,,r1,0,100.00,,",
  ]);
  const tab = await perf("stat -a -x \\t -e clk/event=0/ sleep 0.001");
  assert.deepEqual(tab.err, ["1000000\t\tclk/event=0/\t1000000\t100.00\t\t"]);
});

Deno.test("perf stat -I: one block per interval with its timestamp; the cut-short last one is not printed", async () => {
  const r = await perf("stat -a -I 10 -e clk/event=0/ -- sleep 0.035");
  assert.equal(r.status, 0);
  assert.deepEqual(r.err, [
    "#           time             counts unit events",
    `     0.010000000 ${pad("10,000,000", "clk/event=0/")}`,
    `     0.020000000 ${pad("10,000,000", "clk/event=0/")}`,
    `     0.030000000 ${pad("10,000,000", "clk/event=0/")}`,
  ]);
  const csv = await perf("stat -a -I 10 --interval-count 2 -x ; -e clk/event=0/");
  assert.deepEqual(csv.err, [
    "0.010000000;10000000;;clk/event=0/;10000000;100.00;;",
    "0.020000000;10000000;;clk/event=0/;10000000;100.00;;",
  ]);
});

Deno.test("perf stat -I: the header comes back every 26 intervals", async () => {
  const r = await perf("stat -a -I 10 --interval-count 27 -e clk/event=0/");
  assert.equal(r.err.length, 27 + 2);
  assert.deepEqual(
    r.err.flatMap((l, i) => l.startsWith("#") ? [i] : []),
    [0, 27],
  );
});

Deno.test("perf stat --timeout: counting and elapsed time stop when it expires", async () => {
  const r = await perf("stat -a --timeout 20 -e clk/event=0/ -- sleep 0.05");
  assert.equal(r.err[3], pad("20,000,000", "clk/event=0/"));
  assert.equal(r.err[5], "       0.020000000 seconds time elapsed");
  // The workload ran to its end all the same.
  assert.equal(r.machine!.silicon.clock.now() - r.t0, 50_000_000);
  const idle = await perf("stat -a --timeout 10 -e clk/event=0/");
  assert.equal(idle.err[3], pad("10,000,000", "clk/event=0/"));
});

Deno.test("perf stat: over-committed counters multiplex; counts are scaled and show the time ran", async () => {
  const setup = (m: Machine) => registerTestPmus(m, { clkCounters: 1 });
  const r = await perf("stat -a -e clk/event=0/,clk/event=0,name=second/ sleep 0.016", setup);
  // One counter, two events, rotation every 4 ms: each runs 8 of 16 ms, scaled back to 16.
  assert.equal(r.err[3], `${pad("16,000,000", "clk/event=0/")}  (50.00%)`);
  assert.equal(r.err[4], `${pad("16,000,000", "second")}  (50.00%)`);
  const csv = await perf("stat -a -x , -e clk/event=0/,clk/event=0/ sleep 0.016", setup);
  assert.deepEqual(csv.err, [
    "16000000,,clk/event=0/,8000000,50.00,,",
    "16000000,,clk/event=0/,8000000,50.00,,",
  ]);
});

Deno.test("perf stat: a group goes on whole or not at all; a pinned event that never fits is <not counted>", async () => {
  const setup = (m: Machine) => registerTestPmus(m, { clkCounters: 2 });
  const r = await perf(
    "stat -a -x , -e {clk/event=0/,clk/event=0/},clk/event=0/ sleep 0.012",
    setup,
  );
  // The group and the single event take turns: 8 of 12 ms for the group, 4 for the single.
  assert.deepEqual(r.err.map((l) => l.split(",").slice(3, 5).join(",")), [
    "8000000,66.00",
    "8000000,66.00",
    "4000000,33.00",
  ]);
  const pinned = await perf(
    "stat -a -e clk/event=0/D,clk/event=0/D,clk/event=0/D sleep 0.001",
    setup,
  );
  assert.equal(pinned.err[5], pad("<not counted>", "clk/event=0/D"));
  // A group larger than the PMU: event_init refuses the third member (EINVAL).
  const big = await perf("stat -a -x , -e {clk/event=0/,clk/event=0/,r1} sleep 0.001", setup);
  assert.equal(big.err.at(-1), "<not supported>,,r1,0,100.00,,");
});

Deno.test("perf stat: a PMU name without its _N suffix counts on every such PMU, summed in one line", async () => {
  const setup = (m: Machine) => registerTestPmus(m, { clkPmus: ["clk_0", "clk_1", "clk_2"] });
  const r = await perf("stat -a -e clk/event=0/ sleep 0.001", setup);
  assert.equal(r.err[3], pad("3,000,000", "clk/event=0/"));
  const one = await perf("stat -a -e clk_1/event=0/ sleep 0.001", setup);
  assert.equal(one.err[3], pad("1,000,000", "clk_1/event=0/"));
});

Deno.test("perf stat: an event perf cannot parse prints the event syntax error block, status 2", async () => {
  const r = await perf("stat -a -e irq/dma0chan1/ sleep 1");
  assert.equal(r.status, 2);
  assert.deepEqual(r.out, []);
  assert.deepEqual(r.err, [
    "event syntax error: 'irq/dma0chan1/'",
    "                         \\___ unknown term 'dma0chan1' for pmu 'irq'",
    "",
    "valid terms: event,config,config1,config2,config3,name,period,percore,metric-id,cpu",
    "Run 'perf list' for a list of valid events",
  ]);
});

Deno.test("perf stat: an open error other than 'not supported' ends the run with perf's Error: message", async () => {
  const setup = (m: Machine) => {
    registerTestPmus(m);
    const busy = new TestPmu({ source: () => 0n, task_ctx_nr: perf_hw_context });
    busy.event_init = (ev: PerfEvent) => {
      if (ev.attr.type === busy.type) throw new Errno("EBUSY", "in use");
      throw new Errno("ENOENT");
    };
    perf_pmu_register(m.kernel, busy, "busy", -1);
  };
  const r = await perf("stat -a -e clk/event=0/,busy// sleep 0.001", setup);
  assert.equal(r.status, 1);
  assert.deepEqual(r.err, [
    "Error:",
    "The sys_perf_event_open() syscall returned with 16 (Device or resource busy) for event (busy//).",
    '"dmesg | grep -i perf" may provide additional information.',
  ]);
});

Deno.test("perf: every bad argument is one line 'perf: ...' and status 2", async () => {
  const e = ["-a", "-e", "clk/event=0/"];
  const table: [string[], string][] = [
    [[], "perf: no command given: perf list, perf stat (see 'perf --help')"],
    [["record"], "perf: 'record' is not a perf-command. See 'perf --help'."],
    [
      ["stat", "sleep", "1"],
      "perf: no event given (-e): this kernel has no default events to count",
    ],
    [["stat", "-e", "r1"], "perf: nothing to count: give a workload, or -a"],
    [
      ["stat", ...e],
      "perf: -a without a workload needs --timeout or --interval-count (nothing interrupts a simulated run)",
    ],
    [["stat", ...e, "-I", "5", "sleep", "1"], "perf: print interval must be >= 10ms"],
    [["stat", ...e, "-I", "x", "sleep", "1"], "perf: -I: x is not an integer (decimal or 0x)"],
    [
      ["stat", ...e, "--interval-print", "1e3", "sleep", "1"],
      "perf: --interval-print: 1e3 is not an integer (decimal or 0x)",
    ],
    [["stat", ...e, "--timeout", "-5"], "perf: --timeout: -5 is out of range (at least 0)"],
    [["stat", ...e, "--timeout", "9"], "perf: timeout must be >= 10ms."],
    [
      ["stat", ...e, "--timeout", "100", "-I", "100"],
      "perf: timeout option is not supported with interval-print.",
    ],
    [
      ["stat", ...e, "--interval-count", "3", "--timeout", "100"],
      "perf: interval-count option should be used together with interval-print.",
    ],
    [["stat", ...e, "-B", "-x", ",", "sleep", "1"], "perf: -B option not supported with -x"],
    [["stat", ...e, "--bogus", "sleep", "1"], "perf: unknown option --bogus"],
    [["stat", "-a", "-e"], "perf: -e needs a value"],
    [["stat", "-a", "--event", "-a"], "perf: --event needs a value"],
    [["stat", ...e, "-a=1", "sleep", "1"], "perf: -a takes no value"],
    [["stat", ...e, "hackbench"], "perf: unknown workload 'hackbench' (workloads: dmatest, sleep)"],
    [["stat", ...e, "dmatest", "--bogus", "1"], "perf: dmatest: unknown option --bogus"],
    [
      ["stat", ...e, "dmatest", "--iterations", "ten"],
      "perf: dmatest: --iterations: ten is not an integer (decimal or 0x)",
    ],
    [["stat", ...e, "dmatest", "--iterations"], "perf: dmatest: --iterations needs a value"],
    [["stat", ...e, "dmatest", "--dmatest", "2"], "perf: dmatest: --dmatest: 2 is not one of 0, 1"],
    [["stat", ...e, "dmatest", "quick"], 'perf: dmatest: unexpected argument "quick"'],
    [
      ["stat", ...e, "dmatest", "--channel", "dma9chan0"],
      "perf: dmatest: no DMA channel matches (-ENODEV)",
    ],
    [["stat", ...e, "sleep", "soon"], "perf: sleep: seconds: soon is not a decimal number"],
    [["stat", ...e, "sleep", "1", "2"], "perf: sleep: wants one number of seconds"],
    [
      ["stat", ...e, "--iommu", "intel", "sleep", "1"],
      "perf: --iommu: intel is not one of riscv, t100, none",
    ],
    [
      ["stat", ...e, "--iommu", "t100", "--iommu-bus", "pci", "sleep", "1"],
      "perf: --iommu t100 is a platform IOMMU: not with --iommu-bus pci",
    ],
    [
      ["stat", ...e, "--pci-domain", "0x100", "sleep", "1"],
      "perf: --pci-domain: 0x100 is out of range (0 to 255)",
    ],
    [
      ["stat", ...e, "--features", "hpm,pri", "sleep", "1"],
      "perf: --features: pri is not one of iopf, dirty, hpm, none",
    ],
    [["list", "--features", "none,hpm"], "perf: --features: none goes alone"],
    [["list", "pmu", "tlb"], "perf: list takes at most one of: pmu, <event glob>"],
    [["list", "--detail"], "perf: unknown option --detail"],
  ];
  for (const [args, line] of table) {
    const r = await perf(args);
    assert.deepEqual([r.status, r.out, r.err], [2, [], [line]], args.join(" "));
  }
});

Deno.test("perf --help and perf stat -h print the usage, status 0", async () => {
  const cases: [string[], RegExp][] = [
    [["--help"], /^Usage: deno run -A tools\/perf\/perf.ts <command>/],
    [["stat", "-h"], /^Usage: deno run -A tools\/perf\/perf.ts stat (.|\n)*-e, --event EVENT/],
    [["list", "--help"], /^Usage: deno run -A tools\/perf\/perf.ts list (.|\n)*--details/],
  ];
  for (const [args, usage] of cases) {
    const r = await perf(args);
    assert.equal(r.status, 0);
    assert.match(r.out.join("\n"), usage);
    assert.deepEqual(r.err, []);
  }
});

Deno.test("perf stat: workload arguments after the events are the workload's, with or without --", async () => {
  const a = await perf("stat -a -e irq/dma0chan0/ dmatest --iterations 3 --dmatest 1");
  assert.equal(a.err[3], pad("3", "irq/dma0chan0/"));
  assert.match(a.out.at(-1)!, /dma0chan0-memset0: summary 3 tests, 0 failures/);
  const b = await perf("stat -a -eirq/dma0chan0/ -- dmatest --iterations 2");
  assert.equal(b.err[3], pad("2", "irq/dma0chan0/"));
});

/** PMUs shaped like the HPM driver's (v5 formats and event names), with no silicon behind. */
function hpmShapedPmus(m: Machine) {
  const formats = {
    event: "config:0-14",
    filter_pid_pscid: "config1:16-35",
    filter_did_gscid: "config1:36-59",
    filter_pv_pscv: "config1:60",
    filter_dv_gscv: "config1:61",
    filter_idt: "config1:62",
    filter_dmask: "config1:15",
  };
  const events = { cycles: "event=0x00", tlb_mis: "event=0x04", dd_walk: "event=0x05" };
  for (
    const [name, id] of [
      ["riscv_iommu_hpm_0", "riscv,iommu"],
      ["spacemit_ioats_hpm_0", "spacemit,t100"],
      ["spacemit_ioatc_hpm_0", "spacemit,t100"],
      ["spacemit_ioatc_hpm_1", "spacemit,t100"],
    ]
  ) {
    perf_pmu_register(
      m.kernel,
      new TestPmu({ source: () => 0n, formats, events, identifier: id }),
      name,
      -1,
    );
  }
}

Deno.test("perf list: sysfs events once per PMU kind, JSON events by topic with their unit, raw descriptors", async () => {
  const r = await perf("list", hpmShapedPmus);
  assert.equal(r.status, 0);
  const kernelEvent = (name: string) => `  ${name}`.padEnd(53) + "[Kernel PMU event]";
  const raw = (pmu: string) =>
    `  ${pmu}/event=0..0x7fff,filter_pid_pscid=0..0xfffff,filter_did_gscid=0..0xffffff,.../modifier` +
    "[Raw event descriptor]";
  const json = (name: string, desc: string, unit: string) => [
    `  ${name}`,
    `       [${desc}. Unit: uncore_spacemit_${unit}_hpm]`,
  ];
  assert.deepEqual(r.out, [
    ...["riscv_iommu_hpm", "spacemit_ioatc_hpm", "spacemit_ioats_hpm"].flatMap((p) =>
      ["cycles", "dd_walk", "tlb_mis"].map((e) => kernelEvent(`${p}/${e}/`))
    ),
    "",
    "ioatc:",
    ...json("ioatc_tlb_fill", "IOATC TLB fills", "ioatc"),
    ...json("ioatc_tlb_hit", "IOATC TLB hits", "ioatc"),
    ...json("ioatc_tlb_miss", "IOATC TLB misses", "ioatc"),
    "",
    "ioats:",
    ...json("ioats_ddtc_hit", "IOATS device-directory cache hits", "ioats"),
    ...json("ioats_ddtc_miss", "IOATS device-directory cache misses", "ioats"),
    ...json("ioats_pdtc_hit", "IOATS process-directory cache hits", "ioats"),
    ...json("ioats_pdtc_miss", "IOATS process-directory cache misses", "ioats"),
    "  rNNN".padEnd(53) + "[Raw event descriptor]",
    raw("riscv_iommu_hpm"),
    raw("spacemit_ioatc_hpm"),
    raw("spacemit_ioats_hpm"),
  ]);
});

Deno.test("perf list --details, -v and a glob: encodings, long descriptions wrapped, a filter", async () => {
  const d = await perf("list --details pmu", hpmShapedPmus);
  assert.deepEqual(d.out.slice(0, 4), [
    "  riscv_iommu_hpm/cycles/".padEnd(53) + "[Kernel PMU event]",
    "        riscv_iommu_hpm/event=0/",
    "  riscv_iommu_hpm/dd_walk/".padEnd(53) + "[Kernel PMU event]",
    "        riscv_iommu_hpm/event=0x5/",
  ]);
  assert.ok(!d.out.some((l) => l.includes("Raw event descriptor")));
  const full = await perf("list --details", hpmShapedPmus);
  assert.ok(full.out.includes(
    "        riscv_iommu_hpm/event=0..0x7fff,filter_pid_pscid=0..0xfffff," +
      "filter_did_gscid=0..0xffffff,filter_pv_pscv,filter_dv_gscv,filter_idt,filter_dmask/modifier",
  ));
  const v = await perf("list -v tlb_hit", hpmShapedPmus);
  assert.deepEqual(v.out, [
    "",
    "ioatc:",
    "  ioatc_tlb_hit",
    "       [Requests from the IOATC's DMA masters translated by the IOATC's own TLB,",
    "        without a request to the IOATS. Unit: uncore_spacemit_ioatc_hpm]",
  ]);
  // A machine without PMUs lists the raw descriptor only.
  assert.deepEqual((await perf("list", () => {})).out, [
    "  rNNN".padEnd(53) + "[Raw event descriptor]",
  ]);
});

Deno.test("perf stat: aliases from the pmu-events JSON count on the PMU whose identifier they match", async () => {
  const setup = (m: Machine) => {
    const clk = new TestPmu({
      source: (id) => BigInt(m.silicon.clock.now() * id),
      identifier: "spacemit,t100",
    });
    perf_pmu_register(m.kernel, clk, "spacemit_ioatc_hpm_1", -1);
  };
  // ioatc_tlb_miss is event 0x41 in ioatc.json: this test PMU counts 0x41 per ns.
  const r = await perf(
    "stat -a -x , -e spacemit_ioatc_hpm_1/ioatc_tlb_miss/,ioatc_tlb_hit sleep 0.001",
    setup,
  );
  assert.deepEqual(r.err.map((l) => l.split(",").slice(0, 3).join(",")), [
    `${0x41 * 1_000_000},,spacemit_ioatc_hpm_1/ioatc_tlb_miss/`,
    `${0x40 * 1_000_000},,ioatc_tlb_hit`,
  ]);
});
