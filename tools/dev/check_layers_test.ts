import assert from "node:assert/strict";
import { join } from "node:path";
import { findViolations, importGraph } from "./check_layers.ts";

const pkgs = [
  { dir: "hw", exported: new Set(["/r/packages/hw/mod.ts"]) },
  {
    dir: "kernel",
    exported: new Set(["/r/packages/kernel/mod.ts", "/r/packages/kernel/testing.ts"]),
  },
  { dir: "machine", exported: new Set(["/r/packages/machine/mod.ts"]) },
];
const edge = (from: string, to: string, specifier = to) => ({ from, to, specifier });

Deno.test("layer check: a software package importing @iommu-lab/hw is a violation", () => {
  const v = findViolations(
    [edge("/r/packages/kernel/a_test.ts", "/r/packages/hw/mod.ts", "@iommu-lab/hw")],
    pkgs,
    "/r/packages",
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
  );
  assert.deepEqual(v, []);
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
  );
  assert.equal(v.length, 2);
  assert.match(v[0], /private file of package "kernel"/);
  assert.match(v[1], /private file of package "hw"/);
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
    );
    assert.equal(v.length, 2, v.join("\n"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
