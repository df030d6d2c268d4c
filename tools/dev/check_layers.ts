/**
 * The layer check of docs/architecture.md, run by `deno task ok`.
 *
 * It resolves the whole import graph with `deno info --json` (so import-map names, relative
 * paths and `import type` all count, tests and `testing` exports included) and fails when:
 * - a package imports a package that {@linkcode ALLOWED_EDGES} does not list for it (which is
 *   how "software never imports the silicon" is enforced), or a package is missing from it;
 * - the packages' import graph has a cycle, whatever the table says;
 * - a file of `hw` imports a file of a higher tier of {@linkcode HW_TIERS} (a wrong-way edge
 *   inside the silicon), or a file of `hw` is in no tier;
 * - anything imports a file of another package that the package does not export (its private
 *   files), including by a relative path that walks into the other package.
 *
 * `tools/` and `examples/` are not packages: they may import any package's exports.
 *
 * Usage: `deno run -A tools/dev/check_layers.ts` (exit status 1 on a violation).
 *
 * @module
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import { dirname, join, relative, resolve, sep } from "node:path";
import { runTool, type Tool } from "../cli.ts";

/**
 * The allowed edges: each package under packages/ and the packages it may import. The order
 * of the rows is the order of the layers, lowest first. A new package adds its row here and in
 * docs/architecture.md (a test checks that the two agree).
 */
export const ALLOWED_EDGES: Readonly<Record<string, readonly string[]>> = {
  "hw": [],
  "kernel": [],
  "iommu": ["kernel"],
  "generic-pt": ["kernel", "iommu"],
  "riscv-iommu": ["kernel", "iommu", "generic-pt"],
  "riscv-iommu-probe": ["kernel", "iommu", "riscv-iommu"],
  "iommufd": ["kernel", "iommu"],
  "riscv-iommu-dirty": ["kernel", "iommu", "generic-pt", "riscv-iommu"],
  "perf": ["kernel"],
  "riscv-iommu-iopf": ["kernel", "iommu", "riscv-iommu"],
  "riscv-iommu-hpm": ["kernel", "iommu", "riscv-iommu", "perf"],
  "machine": [
    "hw",
    "kernel",
    "iommu",
    "generic-pt",
    "riscv-iommu",
    "riscv-iommu-probe",
    "riscv-iommu-dirty",
    "riscv-iommu-iopf",
    "perf",
    "riscv-iommu-hpm",
  ],
};

/** One tier of the silicon: files (relative to packages/hw; `dir/*` for a folder). */
export interface HwTier {
  /** What the tier holds. */
  name: string;
  /** Its files. */
  files: readonly string[];
}

/**
 * The tiers inside `hw`, lowest first: a file may import files of its own tier or lower ones.
 * Tests (`*_test.ts`) sit above every tier.
 */
export const HW_TIERS: readonly HwTier[] = [
  { name: "memory and time", files: ["_u64.ts", "memory.ts", "clock.ts"] },
  {
    name: "spec encodings and the inbound interface",
    files: [
      "iommu/caps.ts",
      "iommu/regs.ts",
      "iommu/structs.ts",
      "iommu/request.ts",
      "iommu/hpm_event.ts",
      "pcie/config.ts",
    ],
  },
  {
    name: "walks, caches, MSI translation and the HPM",
    files: [
      "iommu/cache.ts",
      "iommu/walk.ts",
      "iommu/walk_cache.ts",
      "iommu/iotlb.ts",
      "iommu/context.ts",
      "iommu/msi.ts",
      "iommu/hpm.ts",
    ],
  },
  { name: "the translation core", files: ["iommu/translator.ts"] },
  {
    name: "the IOMMU device (and vendor IOMMUs built on it)",
    files: [
      "iommu/queues.ts",
      "iommu/command_queue.ts",
      "iommu/page_request.ts",
      "iommu/iommu.ts",
      "vendor/*",
    ],
  },
  { name: "the platform", files: ["pcie/*", "intc/*", "dma_engine.ts"] },
  {
    name: "front doors and fixtures",
    files: ["mod.ts", "regs.ts", "testing.ts", "iommu/testing.ts", "pcie/testing.ts"],
  },
];

/** The rules {@linkcode findViolations} applies (the repository's by default). */
export interface LayerRules {
  /** Package → the packages it may import. */
  allowed: Readonly<Record<string, readonly string[]>>;
  /** The tiers of `hw`, lowest first. */
  hwTiers: readonly HwTier[];
}

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
 * The tier index of a file of `hw` (path relative to packages/hw), or -1 when it has none. A
 * file named exactly wins over a `dir/*` pattern.
 */
function tierOf(file: string, tiers: readonly HwTier[]): number {
  if (file.endsWith("_test.ts")) return tiers.length;
  const exact = tiers.findIndex((t) => t.files.includes(file));
  if (exact >= 0) return exact;
  return tiers.findIndex((t) =>
    t.files.some((f) => f.endsWith("/*") && dirname(file) === f.slice(0, -2))
  );
}

/**
 * The package cycles of `graph` (package → packages it imports), each as a path that starts
 * and ends at the same package.
 */
export function findCycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  // Tarjan's strongly connected components; one cycle is reported per component.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const scc = new Set<string>();
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.add(w);
    } while (w !== v);
    if (scc.size > 1 || graph.get(v)?.has(v)) out.push(_cycleIn(graph, scc, v));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** A cycle through `start` inside the strongly connected `scc` (breadth-first: the shortest). */
function _cycleIn(
  graph: ReadonlyMap<string, ReadonlySet<string>>,
  scc: ReadonlySet<string>,
  start: string,
): string[] {
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!scc.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = prev.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/**
 * Returns one message per layer violation among `edges` under `rules`.
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
  rules: LayerRules = { allowed: ALLOWED_EDGES, hwTiers: HW_TIERS },
): string[] {
  const byDir = new Map(packages.map((p) => [p.dir, p]));
  const out: string[] = [];
  for (const p of packages) {
    if (!(p.dir in rules.allowed)) {
      out.push(`packages/${p.dir}: not in the allowed-edges table (tools/dev/check_layers.ts)`);
    }
  }
  const graph = new Map<string, Set<string>>();
  const seen = new Set<string>();
  for (const e of edges) {
    const target = packageOf(e.to, packagesRoot);
    if (target === undefined) continue;
    const source = packageOf(e.from, packagesRoot);
    const where = relative(dirname(packagesRoot), e.from);
    if (source === target) {
      if (source === "hw") out.push(..._hwTierViolation(e, packagesRoot, rules.hwTiers, seen));
      continue;
    }
    if (source !== undefined) {
      if (!graph.has(source)) graph.set(source, new Set());
      graph.get(source)!.add(target);
      const allowed = rules.allowed[source];
      if (allowed !== undefined && !allowed.includes(target)) {
        out.push(
          target === "hw"
            ? `${where}: software package "${source}" imports the silicon ("${e.specifier}")`
            : `${where}: package "${source}" may not import package "${target}" ` +
              `("${e.specifier}"; it may import: ${allowed.join(", ") || "nothing"})`,
        );
        continue;
      }
    }
    const pkg = byDir.get(target);
    if (pkg !== undefined && !pkg.exported.has(e.to)) {
      out.push(
        `${where}: imports "${e.specifier}", a private file of package "${target}" ` +
          `(use an export of @iommu-lab/${target})`,
      );
    }
  }
  for (const cycle of findCycles(graph)) {
    out.push(`package cycle: ${cycle.join(" -> ")}`);
  }
  return out;
}

function _hwTierViolation(
  e: Edge,
  packagesRoot: string,
  tiers: readonly HwTier[],
  seen: Set<string>,
): string[] {
  const hwRoot = join(packagesRoot, "hw");
  const from = relative(hwRoot, e.from).split(sep).join("/");
  const to = relative(hwRoot, e.to).split(sep).join("/");
  const out: string[] = [];
  const a = tierOf(from, tiers), b = tierOf(to, tiers);
  for (const [f, t] of [[from, a], [to, b]] as const) {
    if (t < 0 && !seen.has(f)) {
      seen.add(f);
      out.push(`packages/hw/${f}: in no tier of HW_TIERS (tools/dev/check_layers.ts)`);
    }
  }
  if (a >= 0 && b > a) {
    out.push(
      `packages/hw/${from}: wrong-way edge to ${to} ("${e.specifier}"): ` +
        `tier "${tiers[a].name}" may not import tier "${tiers[b].name}"`,
    );
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

/** Reads every package's folder name and exported files under `packagesRoot`. */
export async function readPackages(packagesRoot: string): Promise<PackageInfo[]> {
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

/** Runs the check on the repository at `root`; returns the exit status. */
export async function checkLayers(root: string): Promise<number> {
  const packagesRoot = join(root, "packages");
  const violations = findViolations(
    await importGraph(root),
    await readPackages(packagesRoot),
    packagesRoot,
  );
  if (violations.length > 0) {
    console.error(`Layer check failed (${violations.length}):`);
    for (const v of violations) console.error(`  ${v}`);
    return 1;
  }
  console.log("Layer check passed: allowed edges only, no cycle, no wrong-way edge in hw.");
  return 0;
}

/** The command line: no options; checks the repository this file is in. */
export const cli: Tool<Record<never, never>> = {
  usage: "deno run -A tools/dev/check_layers.ts",
  summary: "Checks the import graph against the allowed edges of docs/architecture.md.",
  options: {},
  main: () => checkLayers(resolve(dirname(fileURLToPath(import.meta.url)), "..", "..")),
};

if (import.meta.main) await runTool("check_layers", Deno.args, cli);
