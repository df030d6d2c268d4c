import assert from "node:assert/strict";
import { checkBadArguments } from "../cli_testing.ts";
import { benchLine } from "./_report.ts";
import { benchScripts, cli as benchAll } from "./mod.ts";
import { runScenario } from "./translate.ts";
import { fill, iopfMachine } from "./iopf.ts";
import { runSvaPageFaults } from "../../examples/sva_page_faults.ts";

/** What every benchmark refuses: it takes no options and no arguments. */
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
