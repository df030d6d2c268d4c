import assert from "node:assert/strict";
import { cli, runLiveMigration } from "./live_migration.ts";
import { checkBadArguments, runCaptured } from "../tools/cli_testing.ts";

Deno.test("live_migration: the pre-copy converges and the copy is identical; one SVG panel per round", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const lines: string[] = [];
    const svgPath = `${dir}/sub/lm.svg`;
    const r = runLiveMigration({
      memBytes: 2 * 2 ** 20,
      seed: 7,
      hotPct: 10,
      hotWrites: 90,
      rate: 0.5,
      stopPages: 8,
      maxRounds: 20,
      svgPath,
      print: (l) => lines.push(l),
    });
    assert.ok(r.converged);
    assert.ok(r.identical);
    const [first, ...rest] = r.rounds;
    const last = rest.at(-1)!;
    assert.equal(first.pages, 512, "round 0 copies everything");
    assert.equal(first.writes, 256, "0.5 device writes per page copied");
    assert.ok(rest.length >= 2, "at least one pre-copy round before stop-and-copy");
    for (const round of rest.slice(0, -1)) {
      assert.ok(round.pages > 8, "a pre-copy round only runs above the threshold");
      // The writes come at the rate, a fraction of one carried from round to round.
      assert.ok(Math.abs(round.writes - round.pages / 2) <= 1, `${round.writes} writes`);
    }
    assert.ok(last.pages <= 8 && last.writes === 0, "stop-and-copy: few pages, device stopped");
    assert.equal(r.totalPages, r.rounds.reduce((s, x) => s + x.pages, 0));
    assert.match(lines.at(-2)!, /^converged: \d+ pages copied .* the copy is identical$/);

    const svg = Deno.readTextFileSync(svgPath);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
    assert.equal(svg.match(/<g /g)?.length, r.rounds.length);
    assert.match(svg, /round 0 \(full copy\): 512 pages copied, 2\.00 MiB/);
    assert.match(svg, new RegExp(`round ${last.round} \\(stop-and-copy\\): ${last.pages} pages`));
    assert.ok(svg.trimEnd().endsWith("</svg>"));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("live_migration: a device writing faster than the copy does not converge (status 1), the copy is still identical", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const args = ["--mem-mib", "1", "--rate", "4", "--hot-pct", "50", "--stop-pages", "1"];
    const r = await runCaptured("live_migration", cli, [
      ...args,
      "--max-rounds",
      "2",
      "--svg",
      `${dir}/lm.svg`,
    ]);
    assert.equal(r.status, 1);
    assert.deepEqual(r.err, []);
    assert.match(r.out.join("\n"), /did not converge in 2 rounds: .* the copy is identical/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("live_migration.ts: bad arguments are one line and status 2, never a stack trace", async (t) => {
  await checkBadArguments(t, "live_migration", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["migrate"], 'unexpected argument "migrate"'],
    [["--svg"], "--svg needs a value"],
    [["--mem-mib", "0"], "--mem-mib: 0 is out of range (1 to 256)"],
    [["--mem-mib", "1.5"], "--mem-mib: 1.5 is not an integer (decimal or 0x)"],
    [["--hot-pct", "101"], "--hot-pct: 101 is out of range (1 to 100)"],
    [["--hot-writes", "-1"], "--hot-writes: -1 is out of range (0 to 100)"],
    [["--rate", "fast"], "--rate: fast is not a decimal number"],
    [["--rate", "65"], "--rate: 65 is out of range (0 to 64)"],
    [["--max-rounds", "0"], "--max-rounds: 0 is out of range (at least 1)"],
    [["--seed", "0x"], "--seed: 0x is not an integer (decimal or 0x)"],
  ]);
});
