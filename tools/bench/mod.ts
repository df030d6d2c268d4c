/**
 * `deno task bench`: runs every benchmark of tools/bench in turn. Each prints one JSON line per
 * figure; see the README of the repository for the targets.
 *
 * @module
 */
const here = new URL(".", import.meta.url);
const scripts: string[] = [];
for await (const e of Deno.readDir(here)) {
  if (e.isFile && e.name.endsWith(".ts") && e.name !== "mod.ts" && !e.name.endsWith("_test.ts")) {
    scripts.push(e.name);
  }
}
scripts.sort();
let failed = false;
for (const s of scripts) {
  // Each benchmark runs in its own process so one's JIT state and heap don't colour another's.
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(s, here).pathname],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) {
    console.error(`bench: ${s} failed`);
    failed = true;
  }
}
if (failed) Deno.exit(1);
