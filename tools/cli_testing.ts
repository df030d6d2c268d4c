/**
 * Test helpers for the command-line entry points: each tool's test runs its table of bad
 * arguments through {@linkcode checkBadArguments}.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type CliIo, type OptionSpecs, runCli, type Tool } from "./cli.ts";

/** Runs `tool` in-process on `args`; returns its exit status and what it wrote. */
export async function runCaptured<O extends OptionSpecs>(
  name: string,
  tool: Tool<O>,
  args: readonly string[],
): Promise<{ status: number; out: string[]; err: string[] }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const status = await runCli(name, args, tool, io);
  return { status, out, err };
}

/**
 * One step per row of `table`: the arguments must end in status 2 with exactly one line,
 * `<name>: <message>`, on stderr and nothing on stdout. Then `--help` must print the usage and
 * end in status 0.
 */
export async function checkBadArguments<O extends OptionSpecs>(
  t: Deno.TestContext,
  name: string,
  tool: Tool<O>,
  table: readonly (readonly [args: readonly string[], message: string])[],
): Promise<void> {
  for (const [args, message] of table) {
    await t.step(args.join(" ") || "(no arguments)", async () => {
      const r = await runCaptured(name, tool, args);
      assert.deepEqual(r.err, [`${name}: ${message}`]);
      assert.deepEqual(r.out, []);
      assert.equal(r.status, 2);
    });
  }
  await t.step("--help", async () => {
    const r = await runCaptured(name, tool, ["--help"]);
    assert.equal(r.status, 0);
    assert.deepEqual(r.err, []);
    assert.match(r.out.join("\n"), /^Usage: /);
  });
}
