/**
 * The layer check of DESIGN.md §2 rule 1, run by `deno task ok`.
 *
 * It resolves the whole import graph with `deno info --json` (so import-map names, relative
 * paths and `import type` all count) and fails when:
 * - a software package imports `@iommu-lab/hw` (only `machine`, `examples/` and `tools/` may);
 * - anything imports a file of another package that the package does not export (its private
 *   files), including by a relative path that walks into the other package.
 *
 * Usage: `deno run -A tools/dev/check_layers.ts` (exit status 1 on a violation).
 *
 * @module
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import { dirname, join, relative, resolve, sep } from "node:path";

/** Packages allowed to import the silicon. Everything else under packages/ is software. */
export const MAY_IMPORT_HW: ReadonlySet<string> = new Set(["hw", "machine"]);

/** One resolved edge of the import graph: `from` imports `to` (absolute file paths). */
export interface Edge {
  /** Importing file. */
  from: string;
  /** Imported file. */
  to: string;
  /** The specifier as written. */
  specifier: string;
}

/** A workspace package: its folder name and the files its `exports` map names. */
export interface PackageInfo {
  /** Folder under packages/, e.g. `"kernel"`. */
  dir: string;
  /** Absolute paths of the exported files. */
  exported: ReadonlySet<string>;
}

/** Finds the package (folder name under `packagesRoot`) that holds `file`, if any. */
function packageOf(file: string, packagesRoot: string): string | undefined {
  const rel = relative(packagesRoot, file);
  if (rel.startsWith("..") || rel === "") return undefined;
  return rel.split(sep)[0];
}

/**
 * Returns one message per layer violation among `edges`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findViolations } from "./check_layers.ts";
 *
 * const pkgs = [
 *   { dir: "hw", exported: new Set(["/r/packages/hw/mod.ts"]) },
 *   { dir: "kernel", exported: new Set(["/r/packages/kernel/mod.ts"]) },
 * ];
 * const edges = [{ from: "/r/packages/kernel/a.ts", to: "/r/packages/hw/mod.ts", specifier: "@iommu-lab/hw" }];
 * assert.equal(findViolations(edges, pkgs, "/r/packages").length, 1);
 * ```
 */
export function findViolations(
  edges: readonly Edge[],
  packages: readonly PackageInfo[],
  packagesRoot: string,
): string[] {
  const byDir = new Map(packages.map((p) => [p.dir, p]));
  const out: string[] = [];
  for (const e of edges) {
    const target = packageOf(e.to, packagesRoot);
    if (target === undefined) continue;
    const source = packageOf(e.from, packagesRoot);
    if (source === target) continue;
    const where = relative(dirname(packagesRoot), e.from);
    if (target === "hw" && source !== undefined && !MAY_IMPORT_HW.has(source)) {
      out.push(`${where}: software package "${source}" imports the silicon ("${e.specifier}")`);
      continue;
    }
    const pkg = byDir.get(target);
    if (pkg !== undefined && !pkg.exported.has(e.to)) {
      out.push(
        `${where}: imports "${e.specifier}", a private file of package "${target}" ` +
          `(use an export of @iommu-lab/${target})`,
      );
    }
  }
  return out;
}

async function listSources(dir: string, acc: string[]): Promise<void> {
  for await (const ent of Deno.readDir(dir)) {
    if (ent.name.startsWith(".") || ent.name === "node_modules") continue;
    const p = join(dir, ent.name);
    if (ent.isDirectory) await listSources(p, acc);
    else if (/\.(ts|tsx|js|mjs)$/.test(ent.name)) acc.push(p);
  }
}

async function readPackages(packagesRoot: string): Promise<PackageInfo[]> {
  const out: PackageInfo[] = [];
  for await (const ent of Deno.readDir(packagesRoot)) {
    if (!ent.isDirectory) continue;
    const dir = join(packagesRoot, ent.name);
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "deno.json")));
    const exp = typeof cfg.exports === "string" ? { ".": cfg.exports } : cfg.exports ?? {};
    const exported = new Set(
      Object.values(exp as Record<string, string>).map((p) => resolve(dir, p)),
    );
    out.push({ dir: ent.name, exported });
  }
  return out;
}

interface InfoModule {
  specifier: string;
  local?: string;
  dependencies?: {
    specifier: string;
    code?: { specifier: string };
    type?: { specifier: string };
  }[];
}

/** Resolves the import graph of every source file under `root` with `deno info --json`. */
export async function importGraph(root: string): Promise<Edge[]> {
  const files: string[] = [];
  for (const d of ["packages", "tools", "examples"]) {
    try {
      await listSources(join(root, d), files);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const entryDir = join(root, ".cache");
  await Deno.mkdir(entryDir, { recursive: true });
  const entry = join(entryDir, "layers_entry.ts");
  await Deno.writeTextFile(
    entry,
    files.map((f) => `import type {} from ${JSON.stringify(pathToFileURL(f).href)};`).join("\n"),
  );
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!res.success) {
    throw new Error(`deno info failed: ${new TextDecoder().decode(res.stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(res.stdout)) as { modules: InfoModule[] };
  const edges: Edge[] = [];
  for (const m of info.modules) {
    if (!m.specifier.startsWith("file:") || m.local === entry) continue;
    for (const d of m.dependencies ?? []) {
      for (const r of [d.code, d.type]) {
        if (r?.specifier.startsWith("file:")) {
          edges.push({
            from: fileURLToPath(m.specifier),
            to: fileURLToPath(r.specifier),
            specifier: d.specifier,
          });
        }
      }
    }
  }
  return edges;
}

if (import.meta.main) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const packagesRoot = join(root, "packages");
  const violations = findViolations(
    await importGraph(root),
    await readPackages(packagesRoot),
    packagesRoot,
  );
  if (violations.length > 0) {
    console.error(`Layer check failed (${violations.length}):`);
    for (const v of violations) console.error(`  ${v}`);
    Deno.exit(1);
  }
  console.log("Layer check passed: no software package imports the silicon or a private file.");
}
