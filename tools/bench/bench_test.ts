import assert from "node:assert/strict";
import { checkBadArguments, runCaptured } from "../cli_testing.ts";
import { benchLine } from "./_report.ts";
import { benchScripts, cli as benchAll } from "./mod.ts";
import {
  cli as translate,
  FIGURES,
  runEachInItsOwnProcess,
  runScenario,
  setupMs,
} from "./translate.ts";
import { fill, iopfMachine } from "./iopf.ts";
import { runSvaPageFaults } from "../../examples/sva_page_faults.ts";

/** What every benchmark refuses: options it does not have, and arguments. */
const NO_ARGUMENTS = [
  [["--bogus"], "unknown option --bogus"],
  [["-x"], "unknown option -x"],
  [["--rounds", "3"], "unknown option --rounds"],
  [["translate"], 'unexpected argument "translate"'],
] as const;

for (const script of await benchScripts()) {
  const name = script.replace(/\.ts$/, "");
  Deno.test(`bench/${script}: bad arguments are one line and status 2`, async (t) => {
    const { cli } = await import(`./${script}`);
    await checkBadArguments(t, name, cli, NO_ARGUMENTS);
  });
}

Deno.test("bench/mod.ts (deno task bench): bad arguments are one line and status 2", async (t) => {
  await checkBadArguments(t, "bench", benchAll, NO_ARGUMENTS);
});

Deno.test("benchLine(): bench, figure, value, unit first, then descriptive fields that cannot shadow them", () => {
  const line = benchLine("iommu_map", "map_4k", 4.5e6, "pages/s", { target: ">= 2000000" });
  assert.deepEqual(Object.keys(line), ["bench", "figure", "value", "unit", "target"]);
  assert.throws(() => benchLine("x", "y", 1, "s", { value: 2 }), TypeError);
});

Deno.test("bench/translate.ts: a figure has the common shape and keeps its own fields", () => {
  const f = runScenario("hot2", 1, "sv39", 4096);
  assert.equal(f.bench, "translate");
  assert.equal(f.figure, "hot2_ddt1_sv39_4096");
  assert.equal(f.unit, "translations/s");
  assert.ok(f.value > 0);
  assert.deepEqual(
    [f.scenario, f.ddt, f.mode, f.pages, f.requests, f.translations_per_s],
    ["hot2", 1, "sv39", 4096, 2_000_000, f.value],
  );
});

Deno.test("bench/translate.ts: --figure names one of its figures", async (t) => {
  await checkBadArguments(t, "translate", translate, [
    [["--figure"], "--figure needs a value"],
    [
      ["--figure", "walk_ddt1_sv39"],
      `--figure: walk_ddt1_sv39 is not one of ${FIGURES.join(", ")}`,
    ],
  ]);
});

Deno.test("bench/translate.ts: --processes is a count from 1 to 99", async (t) => {
  await checkBadArguments(t, "translate", translate, [
    [["--processes", "0"], "--processes: 0 is out of range (1 to 99)"],
    [["--processes", "100"], "--processes: 100 is out of range (1 to 99)"],
    [["--processes", "three"], "--processes: three is not an integer (decimal or 0x)"],
    [["--figure", "setup_ddt1_sv39_4096", "--processes"], "--processes needs a value"],
  ]);
});

Deno.test("bench/translate.ts: --figure with --processes N measures that figure in N fresh processes", async () => {
  const args = ["--figure", "setup_ddt1_sv39_4096", "--processes", "2"];
  const r = await runCaptured("translate", translate, args);
  assert.equal(r.status, 0);
  assert.deepEqual(r.err, []);
  assert.equal(r.out.length, 1);
  const line = JSON.parse(r.out[0]);
  assert.equal(line.figure, "setup_ddt1_sv39_4096");
  assert.equal(line.processes, 2);
  assert.ok(line.value <= line.worst);
});

Deno.test("bench/translate.ts: every figure is the best of fresh processes of its own, in order, with the median and the worst", async () => {
  const out: string[] = [], err: string[] = [];
  const names = ["setup_ddt3_sv39_4096", "setup_ddt1_sv48_4096"];
  const status = await runEachInItsOwnProcess(names, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  }, 2);
  assert.equal(status, 0);
  assert.deepEqual(err, []);
  const lines = out.map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.figure), names);
  for (const l of lines) {
    assert.equal(l.unit, "ms");
    assert.equal(l.processes, 2);
    assert.ok(l.value <= l.worst, "a time: the best is the shortest");
    assert.equal(l.median, l.worst);
  }
});

Deno.test("bench/iopf.ts: a fill serves a page request per page, and its round trip is the one the example measures", () => {
  const r = fill(iopfMachine(), 16, true);
  assert.ok(r.s > 0);
  const dir = Deno.makeTempDirSync();
  try {
    const tracePath = `${dir}/trace.json`;
    assert.equal(r.rtNs, runSvaPageFaults({ pages: 16, tracePath, print: () => {} }).roundTripNs);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("bench/translate.ts: each figure says what the IOMMU did — IOTLB hit rate and walks per request", async (t) => {
  await t.step("hot2 hits on all but its two first requests, which walk once each", () => {
    const f = runScenario("hot2", 1, "sv39", 4096, "bare", 20_000);
    assert.equal(f.requests, 20_000);
    assert.equal(f.iotlb_hit_rate, 0.9999);
    assert.equal(f.walks_per_request, 0.0001);
  });
  await t.step(
    "rand over 262144 pages mostly walks in a 4096-entry IOTLB, as hardware would",
    () => {
      const f = runScenario("rand", 1, "sv39", 262144, "bare", 20_000);
      assert.ok(f.iotlb_hit_rate < 0.05, `hit rate ${f.iotlb_hit_rate}`);
      assert.equal(f.walks_per_request, Number((1 - f.iotlb_hit_rate).toFixed(4)));
    },
  );
  await t.step(
    "the two-stage walk (Sv39 over Sv39x4): five walks per request, three of them implicit",
    () => {
      const f = runScenario("walk", 3, "sv39", 4096, "sv39x4", 20_000);
      assert.equal(f.figure, "walk_ddt3_sv39_over_sv39x4_4096");
      assert.deepEqual([f.gstage, f.iotlb_hit_rate, f.walks_per_request], ["sv39x4", 0, 5]);
    },
  );
  await t.step("setup is timed apart from the requests", () => {
    assert.ok(setupMs(1, "sv48", 4096, "bare") > 0);
  });
});
