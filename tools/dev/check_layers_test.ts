import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ALLOWED_EDGES,
  cli,
  findCycles,
  findViolations,
  HW_TIERS,
  importGraph,
  type LayerRules,
} from "./check_layers.ts";
import { checkBadArguments } from "../cli_testing.ts";

const pkg = (dir: string, ...files: string[]) => ({
  dir,
  exported: new Set((files.length ? files : ["mod.ts"]).map((f) => `/r/packages/${dir}/${f}`)),
});
const pkgs = [pkg("hw"), pkg("kernel", "mod.ts", "testing.ts"), pkg("iommu"), pkg("machine")];
const edge = (from: string, to: string, specifier = to) => ({ from, to, specifier });
const rules: LayerRules = {
  allowed: { hw: [], kernel: [], iommu: ["kernel"], machine: ["hw", "kernel", "iommu"] },
  hwTiers: [
    { name: "base", files: ["memory.ts"] },
    { name: "iommu", files: ["iommu/walk.ts", "iommu/translator.ts"] },
    { name: "front", files: ["mod.ts"] },
  ],
};

Deno.test("layer check: a software package importing @iommu-lab/hw is a violation", () => {
  const v = findViolations(
    [edge("/r/packages/kernel/a_test.ts", "/r/packages/hw/mod.ts", "@iommu-lab/hw")],
    pkgs,
    "/r/packages",
    rules,
  );
  assert.equal(v.length, 1);
  assert.match(v[0], /software package "kernel" imports the silicon/);
});

Deno.test("layer check: machine, tools and examples may import the silicon", () => {
  const v = findViolations(
    [
      edge("/r/packages/machine/boot.ts", "/r/packages/hw/mod.ts"),
      edge("/r/tools/bench/translate.ts", "/r/packages/hw/mod.ts"),
      edge("/r/examples/demo.ts", "/r/packages/hw/mod.ts"),
    ],
    pkgs,
    "/r/packages",
    rules,
  );
  assert.deepEqual(v, []);
});

Deno.test("layer check: an edge the allowed-edges table does not list is a violation", () => {
  const v = findViolations(
    [edge("/r/packages/kernel/x.ts", "/r/packages/iommu/mod.ts", "@iommu-lab/iommu")],
    pkgs,
    "/r/packages",
    rules,
  );
  assert.deepEqual(v, [
    'packages/kernel/x.ts: package "kernel" may not import package "iommu" ' +
    '("@iommu-lab/iommu"; it may import: nothing)',
  ]);
});

Deno.test("layer check: a package missing from the allowed-edges table is a violation", () => {
  const v = findViolations([], [...pkgs, pkg("perf")], "/r/packages", rules);
  assert.deepEqual(v, [
    "packages/perf: not in the allowed-edges table (tools/dev/check_layers.ts)",
  ]);
});

Deno.test("layer check: a synthetic cycle between packages fails, even through a test file and a testing export", () => {
  // The table allows both directions here, so only the cycle check can catch it.
  const loose: LayerRules = { ...rules, allowed: { ...rules.allowed, kernel: ["iommu"] } };
  const v = findViolations(
    [
      edge("/r/packages/iommu/iommu.ts", "/r/packages/kernel/mod.ts"),
      edge("/r/packages/kernel/a_test.ts", "/r/packages/iommu/mod.ts"),
    ],
    pkgs,
    "/r/packages",
    loose,
  );
  assert.deepEqual(v, ["package cycle: iommu -> kernel -> iommu"]);
});

Deno.test("findCycles() reports one shortest cycle per strongly connected component", () => {
  const g = new Map([
    ["a", new Set(["b"])],
    ["b", new Set(["c"])],
    ["c", new Set(["a", "d"])],
    ["d", new Set(["e"])],
    ["e", new Set(["d"])],
    ["f", new Set(["a"])],
  ]);
  assert.deepEqual(findCycles(g).map((c) => c.join(" -> ")).sort(), [
    "a -> b -> c -> a",
    "d -> e -> d",
  ]);
  assert.deepEqual(findCycles(new Map([["x", new Set(["y"])]])), []);
});

Deno.test("layer check: a wrong-way edge inside hw (walk.ts importing translator.ts is fine, memory.ts importing walk.ts is not)", () => {
  const v = findViolations(
    [
      edge("/r/packages/hw/iommu/translator.ts", "/r/packages/hw/iommu/walk.ts", "./walk.ts"),
      edge("/r/packages/hw/memory.ts", "/r/packages/hw/iommu/walk.ts", "./iommu/walk.ts"),
      edge("/r/packages/hw/iommu/walk_test.ts", "/r/packages/hw/mod.ts", "../mod.ts"),
    ],
    pkgs,
    "/r/packages",
    rules,
  );
  assert.deepEqual(v, [
    'packages/hw/memory.ts: wrong-way edge to iommu/walk.ts ("./iommu/walk.ts"): ' +
    'tier "base" may not import tier "iommu"',
  ]);
});

Deno.test("layer check: the repository's hw/iommu/walk.ts may not import translator.ts (HpmEventSink lives below both)", () => {
  const v = findViolations(
    [edge("/r/packages/hw/iommu/walk.ts", "/r/packages/hw/iommu/translator.ts", "./translator.ts")],
    pkgs,
    "/r/packages",
  );
  assert.equal(v.length, 1);
  assert.match(v[0], /wrong-way edge to iommu\/translator\.ts/);
});

Deno.test("layer check: a file of hw in no tier is a violation", () => {
  const v = findViolations(
    [edge("/r/packages/hw/iommu/new.ts", "/r/packages/hw/memory.ts", "../memory.ts")],
    pkgs,
    "/r/packages",
    rules,
  );
  assert.deepEqual(v, [
    "packages/hw/iommu/new.ts: in no tier of HW_TIERS (tools/dev/check_layers.ts)",
  ]);
});

Deno.test("layer check: importing another package's private file is a violation", () => {
  const v = findViolations(
    [
      edge("/r/packages/machine/boot.ts", "/r/packages/kernel/pci.ts", "../kernel/pci.ts"),
      edge("/r/tools/x.ts", "/r/packages/hw/iommu/walk.ts"),
      edge("/r/packages/machine/t.ts", "/r/packages/kernel/testing.ts"),
      edge("/r/packages/kernel/a.ts", "/r/packages/kernel/b.ts"),
    ],
    pkgs,
    "/r/packages",
    rules,
  );
  assert.equal(v.length, 2);
  assert.match(v[0], /private file of package "kernel"/);
  assert.match(v[1], /private file of package "hw"/);
});

Deno.test("layer check: the allowed-edges table is acyclic, lists every package, and names only packages it lists", async () => {
  const graph = new Map(Object.entries(ALLOWED_EDGES).map(([k, v]) => [k, new Set(v)]));
  assert.deepEqual(findCycles(graph), []);
  const dirs: string[] = [];
  for await (const e of Deno.readDir(new URL("../../packages/", import.meta.url))) {
    if (e.isDirectory) dirs.push(e.name);
  }
  assert.deepEqual(Object.keys(ALLOWED_EDGES).sort(), dirs.sort());
  for (const targets of Object.values(ALLOWED_EDGES)) {
    for (const t of targets) assert.ok(t in ALLOWED_EDGES, t);
  }
  assert.ok(HW_TIERS.length > 0);
});

Deno.test("layer check: docs/architecture.md documents the allowed-edges table the check applies", async () => {
  const doc = await Deno.readTextFile(new URL("../../docs/architecture.md", import.meta.url));
  const rows = new Map<string, string[]>();
  for (const m of doc.matchAll(/^\| `([a-z-]+)` +\| ([^|]*)\|/gm)) {
    rows.set(m[1], [...m[2].matchAll(/`([a-z-]+)`/g)].map((x) => x[1]));
  }
  assert.deepEqual(Object.fromEntries(rows), ALLOWED_EDGES);
});

Deno.test("layer check: deno info resolves import-map names, relative paths and type imports", async () => {
  const root = await Deno.makeTempDir();
  try {
    const w = (p: string, s: string) => Deno.writeTextFile(join(root, p), s);
    await Deno.mkdir(join(root, "packages/hw"), { recursive: true });
    await Deno.mkdir(join(root, "packages/kernel"), { recursive: true });
    await w("deno.json", JSON.stringify({ workspace: ["./packages/hw", "./packages/kernel"] }));
    await w(
      "packages/hw/deno.json",
      JSON.stringify({ name: "@iommu-lab/hw", exports: "./mod.ts" }),
    );
    await w("packages/hw/mod.ts", 'export type { T } from "./inner.ts";\n');
    await w("packages/hw/inner.ts", "export type T = number;\n");
    await w(
      "packages/kernel/deno.json",
      JSON.stringify({ name: "@iommu-lab/kernel", exports: "./mod.ts" }),
    );
    await w(
      "packages/kernel/mod.ts",
      'import type { T } from "@iommu-lab/hw";\nexport type U = T;\n',
    );
    await w(
      "packages/kernel/b.ts",
      'import type { T } from "../hw/inner.ts";\nexport type V = T;\n',
    );
    const edges = await importGraph(root);
    const exported = (d: string) => new Set([join(root, "packages", d, "mod.ts")]);
    const v = findViolations(
      edges,
      [{ dir: "hw", exported: exported("hw") }, { dir: "kernel", exported: exported("kernel") }],
      join(root, "packages"),
      {
        allowed: { hw: [], kernel: [] },
        hwTiers: [{ name: "all", files: ["mod.ts", "inner.ts"] }],
      },
    );
    assert.equal(v.length, 2, v.join("\n"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("check_layers.ts: bad arguments are one line and status 2", async (t) => {
  await checkBadArguments(t, "check_layers", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["packages"], 'unexpected argument "packages"'],
    [["-x"], "unknown option -x"],
    [["--help=1"], "--help takes no value"],
  ]);
});
