import assert from "node:assert/strict";
import { cli, runDemo } from "./demo.ts";
import { checkBadArguments } from "../tools/cli_testing.ts";

Deno.test("demo: dmatest passes through the platform IOMMU, the fault is logged, the trace parses", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const lines: string[] = [];
    const tracePath = `${dir}/sub/trace.json`;
    const r = runDemo({ tracePath, iterations: 4, print: (l) => lines.push(l) });
    assert.ok(r.ok);
    assert.equal(r.tests, 16);
    assert.equal(r.failures, 0);
    const out = lines.join("\n");
    assert.match(out, /riscv,iommu 3010000\.iommu: using MSIs/);
    // As Linux on QEMU virt: the engine joins its group when the PCI scan adds it, before its
    // driver binds, so the line carries the bus name rather than the driver's.
    const log = lines.flatMap((l) => l.split("\n")).map((l) => l.replace(/^\[ +\d+\.\d{6}\] /, ""));
    const added = log.indexOf("pci 0000:00:02.0: Adding to iommu group 0");
    assert.ok(added > 0, "the pci-prefixed group line is in the log");
    assert.match(log[added - 1], /^pci 0000:00:02\.0: BAR 0 \[mem .*\]: assigned$/);
    assert.ok(added < log.findIndex((l) => l.startsWith("iommu-lab-dmae 0000:00:02.0: ")));
    assert.ok(!log.some((l) => l.startsWith("iommu-lab-dmae 0000:00:02.0: Adding to iommu")));
    // Every line is a heading, a kernel log line, or the demo's own under a label column.
    for (const l of lines.flatMap((l) => l.split("\n")).filter((l) => l !== "")) {
      const labelled = l[14] === " " && /^[A-Za-z]* *$/.test(l.slice(0, 15));
      assert.ok(/^== |^\[ +\d+\.\d{6}\] /.test(l) || labelled, `unformatted line: ${l}`);
    }
    // Probes cost time: the boot is not all stamped 0.
    const stamps = [...out.matchAll(/^\[ +(\d+\.\d{6})\] /gm)].map((m) => Number(m[1]));
    assert.deepEqual(stamps, [...stamps].sort((a, b) => a - b));
    assert.doesNotMatch(out, /^\[ +0\.000000\] riscv,iommu 3010000\.iommu: using MSIs$/m);
    assert.match(out, /dmatest: dma0chan3-copy0: summary 4 tests, 0 failures/);
    assert.equal(
      r.faultLine,
      `riscv,iommu 3010000.iommu: Fault 15 devid: 0x10 iotval: ${
        r.faultIova.toString(16)
      } iotval2: 0`,
    );
    // Strict unmaps: each waits for an IOFENCE.C after its IOTINVAL.VMAs.
    assert.ok((r.commands["IOFENCE.C"] ?? 0) >= 2 * 16);
    assert.ok((r.commands["IOTINVAL.VMA"] ?? 0) >= r.commands["IOFENCE.C"]);

    const trace = JSON.parse(Deno.readTextFileSync(tracePath));
    const events: {
      name: string;
      cat: string;
      ph: string;
      ts: number;
      tid: number;
      args?: { name?: string };
    }[] = trace.traceEvents;
    assert.ok(events.every((e) => typeof e.ts === "number" && ["X", "i", "M"].includes(e.ph)));
    const tracks = events.filter((e) => e.name === "thread_name").map((e) => e.args?.name);
    for (const t of ["cpu", "iommu", "intc", "dma0chan0", "dma0chan3"]) {
      assert.ok(tracks.includes(t), t);
    }
    assert.equal(events.filter((e) => e.cat === "dma" && e.ph === "X").length, 16 + 1);
    assert.equal(events.filter((e) => e.cat === "fault").length, 1);
    assert.ok(events.some((e) => e.cat === "printk" && / Fault 15 /.test(e.name)));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("demo --features iopf,dirty,hpm: the series in one kernel; dmatest passes through the engine's ATC, and the fault is a page request the core refuses", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const lines: string[] = [];
    const r = runDemo({
      tracePath: `${dir}/trace.json`,
      iterations: 2,
      features: ["iopf", "dirty", "hpm"],
      print: (l) => lines.push(l),
    });
    assert.ok(r.ok);
    assert.deepEqual([r.tests, r.failures], [8, 0]);
    const out = lines.join("\n");
    assert.match(out, /; series iopf, dirty, hpm$/m);
    assert.match(out, /riscv,iommu 3010000\.iommu: page request queue enabled$/m);
    assert.match(out, /HPM: Registered riscv_iommu_hpm_0 /);
    assert.equal(r.faultLine, "riscv,iommu 3010000.iommu: page request fault report failed: -22");
    // Every unmap invalidates the engine's ATC; the refused group is answered once.
    assert.ok((r.commands["ATS.INVAL"] ?? 0) >= 2 * r.tests);
    assert.equal(r.commands["ATS.PRGR"], 1);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("demo.ts: bad arguments are one line and status 2, never a stack trace", async (t) => {
  await checkBadArguments(t, "demo", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["now"], 'unexpected argument "now"'],
    [["--trace"], "--trace needs a value"],
    [["--iterations", "0"], "--iterations: 0 is out of range (at least 1)"],
    [["--iterations", "1e3"], "--iterations: 1e3 is not an integer (decimal or 0x)"],
    [["--iterations", "-5"], "--iterations: -5 is out of range (at least 1)"],
    [["--features", "iopf,sva"], "--features: sva is not one of iopf, dirty, hpm, none"],
    [["--features", "none,iopf"], "--features: none goes alone"],
  ]);
});
