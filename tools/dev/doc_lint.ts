/**
 * `deno doc --lint` over every export of every workspace member, as `deno task ok` runs it: the
 * files each member's `deno.json` names in `exports` (its front door and subpaths such as
 * `./testing`, `./regs`, `./bits`), so that no documented symbol lacks a doc comment or an
 * explicit type.
 *
 * Usage: `deno run -A tools/dev/doc_lint.ts` (exit status 1 on a finding).
 *
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type CliIo, runTool, type Tool } from "../cli.ts";

/** The exported files of every member of the workspace at `root`, relative to `root`. */
export async function exportedFiles(root: string): Promise<string[]> {
  const ws = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  const out: string[] = [];
  for (const member of ws.workspace as string[]) {
    const dir = join(root, member);
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "deno.json")));
    const exp = typeof cfg.exports === "string" ? { ".": cfg.exports } : cfg.exports ?? {};
    for (const f of Object.values(exp as Record<string, string>)) {
      out.push(relative(root, resolve(dir, f)));
    }
  }
  return out;
}

/** Runs `deno doc --lint` on the exported files of the workspace at `root`. */
export async function docLint(root: string, io: CliIo): Promise<number> {
  const files = await exportedFiles(root);
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", ...files],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (r.success) io.out(`doc_lint: ${files.length} exported modules documented`);
  return r.success ? 0 : 1;
}

/** The command line: no options; lints the repository this file is in. */
export const cli: Tool<Record<never, never>> = {
  usage: "deno run -A tools/dev/doc_lint.ts",
  summary: "Runs deno doc --lint over every export of every workspace member.",
  options: {},
  main: (_v, io) => docLint(join(dirname(fileURLToPath(import.meta.url)), "..", ".."), io),
};

if (import.meta.main) await runTool("doc_lint", Deno.args, cli);
