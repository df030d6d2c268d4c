import assert from "node:assert/strict";
import { join } from "node:path";
import { checkBadArguments, runCaptured } from "../cli_testing.ts";
import { cli, dtcCheck } from "./dtc_check.ts";

Deno.test("dtc_check.ts: bad arguments are one line and status 2", async (t) => {
  await checkBadArguments(t, "dtc_check", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["virt.dts"], 'unexpected argument "virt.dts"'],
  ]);
});

Deno.test("dtcCheck(): a blob that differs from what dtc makes of its source fails; a missing dtc skips", async () => {
  const root = await Deno.makeTempDir();
  try {
    const data = join(root, "packages/kernel/testdata");
    await Deno.mkdir(data, { recursive: true });
    await Deno.writeTextFile(join(data, "a.dts"), "/dts-v1/; / { };\n");
    await Deno.writeFile(join(data, "a.dtb"), new Uint8Array([0xd0, 0x0d, 0xfe, 0xed]));
    // A stand-in dtc that writes the 4 bytes of the committed blob, or 5 with BAD set.
    const dtc = join(root, "dtc");
    await Deno.writeTextFile(
      dtc,
      '#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\n' +
        'printf "\\320\\015\\376\\355${BAD:+x}" > "$2"\n',
    );
    await Deno.chmod(dtc, 0o755);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    assert.equal(await dtcCheck(root, io, dtc), 0, lines.join("\n"));
    Deno.env.set("BAD", "1");
    try {
      assert.equal(await dtcCheck(root, io, dtc), 1);
    } finally {
      Deno.env.delete("BAD");
    }
    assert.match(lines.at(-1)!, /packages\/kernel\/testdata\/a\.dtb does not match .*a\.dts/);
    assert.equal(await dtcCheck(root, io, join(root, "no-such-dtc")), 0);
    assert.equal(lines.at(-1), "dtc_check: dtc not installed, skipping");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("dtc_check.ts on the repository: passes, or skips without dtc", async () => {
  const r = await runCaptured("dtc_check", cli, []);
  assert.equal(r.status, 0, r.err.join("\n"));
});
