import assert from "node:assert/strict";
import { checkBadArguments } from "../cli_testing.ts";
import { cli, exportedFiles } from "./doc_lint.ts";

Deno.test("doc_lint.ts: bad arguments are one line and status 2", async (t) => {
  await checkBadArguments(t, "doc_lint", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["packages/hw/mod.ts"], 'unexpected argument "packages/hw/mod.ts"'],
  ]);
});

Deno.test("exportedFiles(): every member's exports, subpaths included", async () => {
  const files = await exportedFiles(new URL("../..", import.meta.url).pathname);
  for (
    const f of [
      "packages/hw/mod.ts",
      "packages/hw/regs.ts",
      "packages/hw/testing.ts",
      "packages/kernel/testing.ts",
      "packages/riscv-iommu/bits.ts",
    ]
  ) assert.ok(files.includes(f), f);
  assert.ok(files.every((f) => f.startsWith("packages/")));
});
