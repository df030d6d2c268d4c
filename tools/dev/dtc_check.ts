/**
 * Recompiles every packages/*\/testdata/*.dts with the real `dtc` and fails when a committed
 * `.dtb` differs from it (a `.dts` edited without regenerating its blob). Skips when `dtc` is not
 * installed (`apt-get install -y device-tree-compiler`). Regenerate a blob with
 * `dtc -q -I dts -O dtb -o packages/kernel/testdata/virt.dtb packages/kernel/testdata/virt.dts`.
 *
 * Usage: `deno run -A tools/dev/dtc_check.ts` (exit status 1 on a stale blob).
 *
 * @module
 */
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type CliIo, runTool, type Tool } from "../cli.ts";

/** Compares every blob under `root`'s packages with what `dtc` makes of its source. */
export async function dtcCheck(root: string, io: CliIo, dtc = "dtc"): Promise<number> {
  const sources: string[] = [];
  for await (const pkg of Deno.readDir(join(root, "packages"))) {
    const data = join(root, "packages", pkg.name, "testdata");
    try {
      for await (const f of Deno.readDir(data)) {
        if (f.name.endsWith(".dts")) sources.push(join(data, f.name));
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const tmp = await Deno.makeTempFile({ suffix: ".dtb" });
  let status = 0;
  try {
    for (const dts of sources.sort()) {
      let out: Deno.CommandOutput;
      try {
        out = await new Deno.Command(dtc, {
          args: ["-q", "-I", "dts", "-O", "dtb", "-o", tmp, dts],
        })
          .output();
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        io.out("dtc_check: dtc not installed, skipping");
        return 0;
      }
      const dtb = dts.replace(/\.dts$/, ".dtb");
      const name = relative(root, dtb);
      if (!out.success) {
        io.err(`dtc_check: dtc failed on ${relative(root, dts)}`);
        status = 1;
        continue;
      }
      const want = await Deno.readFile(tmp);
      let have: Uint8Array | null = null;
      try {
        have = await Deno.readFile(dtb);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (have === null || have.length !== want.length || have.some((b, i) => b !== want[i])) {
        io.err(`dtc_check: ${name} does not match ${relative(root, dts)} (recompile it with dtc)`);
        status = 1;
      }
    }
  } finally {
    await Deno.remove(tmp);
  }
  if (status === 0) io.out("dtc_check: all device-tree blobs match their sources");
  return status;
}

/** The command line: no options; checks the repository this file is in. */
export const cli: Tool<Record<never, never>> = {
  usage: "deno run -A tools/dev/dtc_check.ts",
  summary: "Recompiles every packages/*/testdata/*.dts with dtc and compares the committed .dtb.",
  options: {},
  main: (_v, io) => dtcCheck(join(dirname(fileURLToPath(import.meta.url)), "..", ".."), io),
};

if (import.meta.main) await runTool("dtc_check", Deno.args, cli);
