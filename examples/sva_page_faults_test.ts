import assert from "node:assert/strict";
import { cli, runSvaPageFaults } from "./sva_page_faults.ts";
import { checkBadArguments } from "../tools/cli_testing.ts";

Deno.test("sva_page_faults: 16 untouched pages are faulted in for the engine, each group answered once; the timeline is in order and the round trip spans ATS miss to retry; the trace parses with the steps on their track", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const lines: string[] = [];
    const tracePath = `${dir}/sub/trace.json`;
    const r = runSvaPageFaults({ pages: 16, tracePath, print: (l) => lines.push(l) });
    assert.ok(r.ok);
    assert.deepEqual([r.pages, r.groups, r.requests], [16, 2, 16], "groups of 8 pages");
    const out = lines.join("\n");
    assert.match(out, /\] riscv,iommu 3010000\.iommu: page request queue enabled$/m);
    assert.match(out, /^memset {9}complete: 65536 bytes, 16 pages resident now$/m);

    const steps = r.timeline.map((s) => s.what.split(":")[0]);
    assert.deepEqual(steps, [
      "DMA start",
      "ATS miss",
      "page request group 0",
      "PQ records written (8), ipsr.PIP set",
      "interrupt",
      "PQ thread",
      "IOPF",
      "IOPF work",
      "ATS.PRGR Success reaches the engine",
      "device retry",
      "completion",
    ]);
    const ns = r.timeline.map((s) => s.ns);
    assert.deepEqual(ns, [...ns].sort((a, b) => a - b), "in time order");
    assert.ok(ns[1] > ns[0] && ns[5] > ns[4] && ns[8] > ns[7], "each hop takes time");
    assert.equal(r.roundTripNs, ns[9] - ns[1]);
    assert.match(out, new RegExp(`^round trip +${(r.roundTripNs / 1000).toFixed(3)} us`, "m"));

    const events: {
      name: string;
      cat: string;
      tid: number;
      ts: number;
      args?: { name?: string };
    }[] = JSON.parse(Deno.readTextFileSync(tracePath)).traceEvents;
    const track = events.find((e) => e.name === "thread_name" && e.args?.name === "sva steps");
    assert.ok(track !== undefined);
    const marks = events.filter((e) => e.cat === "step");
    assert.deepEqual(marks.map((e) => e.ts), ns.map((t) => t / 1000));
    assert.ok(marks.every((e) => e.tid === track.tid));
    assert.equal(events.filter((e) => e.cat === "command" && e.name === "ATS.PRGR").length, 2);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("sva_page_faults.ts: bad arguments are one line and status 2, never a stack trace", async (t) => {
  await checkBadArguments(t, "sva_page_faults", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["fill"], 'unexpected argument "fill"'],
    [["--trace"], "--trace needs a value"],
    [["--pages", "0"], "--pages: 0 is out of range (1 to 4096)"],
    [["--pages", "4097"], "--pages: 4097 is out of range (1 to 4096)"],
    [["--pages", "1e3"], "--pages: 1e3 is not an integer (decimal or 0x)"],
  ]);
});
