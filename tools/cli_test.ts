import assert from "node:assert/strict";
import { helpText, parseCli, parseDecimal, parseInteger, type Tool, UsageError } from "./cli.ts";
import { checkBadArguments, runCaptured } from "./cli_testing.ts";

const spec = {
  usage: "deno run tools/x.ts [options]",
  summary: "A tool.",
  options: {
    count: { type: "int", default: 4, min: 1, max: 32, help: "how many" },
    offset: { type: "int", min: -1, help: "where (-1: anywhere)" },
    seconds: { type: "number", default: 1, help: "how long", short: "s" },
    mode: { type: "string", default: "copy", choices: ["copy", "fill"], help: "what" },
    name: { type: "string", help: "who" },
    verbose: { type: "boolean", help: "say more", short: "v" },
  },
} as const;

Deno.test("parseInteger() takes decimal and 0x only, within the range", async (t) => {
  for (const [text, n] of [["0", 0], ["17", 17], ["0x1F", 31], ["0X10", 16], ["-1", -1]] as const) {
    await t.step(text, () => assert.equal(parseInteger(text, "--n", -1), n));
  }
  for (
    const [text, why] of [
      ["1e3", "is not an integer"],
      ["1.5", "is not an integer"],
      ["0b11", "is not an integer"],
      ["0o7", "is not an integer"],
      ["12abc", "is not an integer"],
      ["", "is not an integer"],
      [" 1", "is not an integer"],
      ["+1", "is not an integer"],
      ["Infinity", "is not an integer"],
      ["0x", "is not an integer"],
      ["-2", "is out of range \\(-1 to 10\\)"],
      ["11", "is out of range \\(-1 to 10\\)"],
      ["9007199254740993", "is too large"],
    ] as const
  ) {
    await t.step(`${JSON.stringify(text)} is refused`, () => {
      assert.throws(() => parseInteger(text, "--n", -1, 10), (e) => {
        assert.ok(e instanceof UsageError);
        assert.match(e.message, new RegExp(`^--n: .* ${why}`));
        return true;
      });
    });
  }
});

Deno.test("parseDecimal() takes a fraction but no exponent, sign or hex", () => {
  assert.equal(parseDecimal("0.25", "-s"), 0.25);
  assert.equal(parseDecimal("3", "-s"), 3);
  for (const text of ["1e-3", ".5", "5.", "0x10", "-1", "NaN"]) {
    assert.throws(() => parseDecimal(text, "-s"), UsageError, text);
  }
});

Deno.test("parseCli() reads long, short, = and inline forms, and fills defaults", () => {
  assert.deepEqual(parseCli(["--count=0x8", "-s", "0.5", "--mode", "fill", "-v"], spec), {
    count: 8,
    offset: undefined,
    seconds: 0.5,
    mode: "fill",
    name: undefined,
    verbose: true,
  });
  assert.deepEqual(parseCli(["-s2", "--offset", "-1", "--name", "x"], spec), {
    count: 4,
    offset: -1,
    seconds: 2,
    mode: "copy",
    name: "x",
    verbose: false,
  });
  assert.equal(parseCli(["--count", "3", "-h"], spec), null);
});

Deno.test("the shared parser's bad-argument table", async (t) => {
  const tool: Tool<typeof spec.options> = { ...spec, main: () => 0 };
  await checkBadArguments(t, "x", tool, [
    [["--bogus"], "unknown option --bogus"],
    [["-q"], "unknown option -q"],
    [["stray"], 'unexpected argument "stray"'],
    [["--count"], "--count needs a value"],
    [["--count", "--verbose"], "--count needs a value"],
    [["--name", "-v"], "--name needs a value"],
    [["--count", "1e3"], "--count: 1e3 is not an integer (decimal or 0x)"],
    [["--count", "-1"], "--count: -1 is out of range (1 to 32)"],
    [["--count", "40"], "--count: 40 is out of range (1 to 32)"],
    [["--offset", "-2"], "--offset: -2 is out of range (at least -1)"],
    [["-s", "x"], "-s: x is not a decimal number"],
    [["--mode", "move"], "--mode: move is not one of copy, fill"],
    [["--verbose=1"], "--verbose takes no value"],
    [["--help=yes"], "--help takes no value"],
  ]);
});

Deno.test("runCli(): a UsageError from main is a bad argument; any other error is not swallowed", async () => {
  const tool: Tool<typeof spec.options> = {
    ...spec,
    main: (v) => {
      if (v.count > 8) throw new UsageError("--count beyond the engine's 8 channels");
      throw new TypeError("a bug");
    },
  };
  const r = await runCaptured("x", tool, ["--count", "9"]);
  assert.deepEqual([r.status, r.err], [2, ["x: --count beyond the engine's 8 channels"]]);
  await assert.rejects(() => runCaptured("x", tool, []), TypeError);
});

Deno.test("operands: parsing stops at the first argument that is not an option, or after --", async () => {
  const seen: (readonly string[])[] = [];
  const tool: Tool<typeof spec.options> = {
    ...spec,
    operands: "<command> [<args>]",
    main: (v, _io, operands) => void seen.push([String(v.count), ...operands]),
  };
  for (
    const args of [
      ["-v", "--count", "2", "sleep", "--count", "9"],
      ["--count=2", "--", "--count", "9"],
      ["--count", "2"],
    ]
  ) {
    assert.equal((await runCaptured("x", tool, args)).status, 0);
  }
  assert.deepEqual(seen, [["2", "sleep", "--count", "9"], ["2", "--count", "9"], ["2"]]);
  // Without operands, the same arguments are refused.
  const r = await runCaptured("x", { ...tool, operands: undefined }, ["sleep"]);
  assert.deepEqual([r.status, r.err], [2, ['x: unexpected argument "sleep"']]);
});

Deno.test("helpText() lists every option with its value, default and aliases", () => {
  assert.equal(
    helpText(spec),
    [
      "Usage: deno run tools/x.ts [options]",
      "",
      "A tool.",
      "",
      "Options:",
      "  --count N         how many (default 4)",
      "  --offset N        where (-1: anywhere)",
      "  -s, --seconds N   how long (default 1)",
      "  --mode copy|fill  what (default copy)",
      "  --name S          who",
      "  -v, --verbose     say more",
      "  -h, --help        print this help and exit",
    ].join("\n"),
  );
});

/** Every file of examples/ and tools/ that runs as a program, with the name it reports under. */
async function entryPoints(): Promise<{ path: string; name: string | null }[]> {
  const root = new URL("../", import.meta.url);
  const out: { path: string; name: string | null }[] = [];
  const walk = async (dir: URL) => {
    for await (const e of Deno.readDir(dir)) {
      const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
      if (e.isDirectory) await walk(url);
      else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) {
        const text = await Deno.readTextFile(url);
        if (!/^if \(import\.meta\.main\)/m.test(text)) continue;
        const name = /await runTool\("([^"]+)", Deno\.args, /.exec(text)?.[1] ?? null;
        out.push({ path: url.pathname, name });
      }
    }
  };
  await walk(new URL("examples/", root));
  await walk(new URL("tools/", root));
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

Deno.test("every entry point parses through runTool: --bogus is one line and status 2, --help status 0", async (t) => {
  const eps = await entryPoints();
  assert.ok(eps.length >= 12, `${eps.length} entry points`);
  const run = async (path: string, arg: string) => {
    const o = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", path, arg] }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: o.code, out: text(o.stdout), err: text(o.stderr) };
  };
  const results = await Promise.all(
    eps.map(async (ep) => ({
      ep,
      bad: await run(ep.path, "--bogus"),
      help: await run(ep.path, "--help"),
    })),
  );
  for (const { ep, bad, help } of results) {
    await t.step(ep.path.replace(/^.*\/(examples|tools)\//, "$1/"), () => {
      assert.ok(
        ep.name !== null,
        "the entry point does not end with `await runTool(name, Deno.args, cli)`",
      );
      assert.deepEqual([bad.code, bad.out, bad.err], [
        2,
        "",
        `${ep.name}: unknown option --bogus\n`,
      ]);
      assert.equal(help.code, 0, help.err);
      assert.match(help.out, /^Usage: /);
    });
  }
});
