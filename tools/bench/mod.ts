/**
 * `deno task bench`: runs every benchmark of tools/bench in turn, each in its own process so one's
 * JIT state and heap don't colour another's. Each prints one JSON line per figure in the shape of
 * `_report.ts` (`bench`, `figure`, `value`, `unit`, descriptive fields); see the README of the
 * repository for the targets.
 *
 * @module
 */
import { runTool, type Tool } from "../cli.ts";

/** The benchmark scripts of this folder, sorted. */
export async function benchScripts(): Promise<string[]> {
  const scripts: string[] = [];
  for await (const e of Deno.readDir(new URL(".", import.meta.url))) {
    if (
      e.isFile && e.name.endsWith(".ts") && e.name !== "mod.ts" && !e.name.startsWith("_") &&
      !e.name.endsWith("_test.ts")
    ) scripts.push(e.name);
  }
  return scripts.sort();
}

/** The command line: no options; exit status 1 when a benchmark failed. */
export const cli: Tool<Record<never, never>> = {
  usage: "deno task bench  (deno run -A tools/bench/mod.ts)",
  summary: "Runs every benchmark of tools/bench, each in its own process.",
  options: {},
  async main(_v, io) {
    let failed = false;
    for (const s of await benchScripts()) {
      const { success } = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL(s, import.meta.url).pathname],
        stdout: "inherit",
        stderr: "inherit",
      }).output();
      if (!success) {
        io.err(`bench: ${s} failed`);
        failed = true;
      }
    }
    return failed ? 1 : 0;
  },
};

if (import.meta.main) await runTool("bench", Deno.args, cli);
