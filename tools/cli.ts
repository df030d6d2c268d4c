/**
 * The one command-line parser of every entry point in `examples/` and `tools/`.
 *
 * A tool declares its options once ({@linkcode ToolSpec}); {@linkcode runCli} parses the
 * arguments, answers `-h`/`--help` with the usage text the spec generates, runs the tool, and
 * turns every bad argument into one line `<tool>: <what is wrong>` on stderr and exit status 2,
 * never a stack trace. What it refuses:
 * - an unknown option, a positional argument (unless the tool takes operands: then parsing
 *   stops at the first argument that is not an option, or after `--`, and `main` gets the
 *   rest), a value given to a boolean option;
 * - an option that needs a value and has none (the next argument is another option);
 * - an integer that is not decimal or `0x` hexadecimal (`1e3`, `1.5`, `0b1`, `12abc`, ``), or
 *   is outside the option's `min`/`max` (negatives unless `min` allows them);
 * - a string outside the option's `choices`.
 *
 * A tool's own checks of a value (that need more than one option) throw {@linkcode UsageError}
 * from `main`; they end the same way.
 *
 * @example A tool with two options
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CliIo, runCli } from "./cli.ts";
 *
 * const lines: string[] = [];
 * const io: CliIo = { out: (l) => lines.push(l), err: (l) => lines.push(l) };
 * const spec = {
 *   usage: "deno run tools/x.ts [options]",
 *   summary: "Counts.",
 *   options: {
 *     count: { type: "int", default: 1, min: 1, help: "how many" },
 *     loud: { type: "boolean", help: "shout" },
 *   },
 *   main: (v: { count: number; loud: boolean }, out: CliIo) => {
 *     out.out(`${v.count}${v.loud ? "!" : ""}`);
 *   },
 * } as const;
 * assert.equal(await runCli("x", ["--count", "0x10", "--loud"], spec, io), 0);
 * assert.equal(await runCli("x", ["--count", "1e3"], spec, io), 2);
 * assert.deepEqual(lines, ["16!", "x: --count: 1e3 is not an integer (decimal or 0x)"]);
 * ```
 *
 * @module
 */
import { type ErrnoName, isErrno } from "@iommu-lab/kernel";

/** A bad argument: {@linkcode runCli} prints `<tool>: <message>` and exits with status 2. */
export class UsageError extends Error {
  /** Why the arguments cannot be used, as a sentence fragment (no tool name). */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Runs `fn`, turning an `Errno` whose code is one of `codes` into a {@linkcode UsageError}: what
 * a kernel API's own parameter checks refuse is a bad argument on a command line.
 */
export function refusedAsUsage<T>(codes: readonly ErrnoName[], fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (codes.some((c) => isErrno(e, c))) throw new UsageError((e as Error).message);
    throw e;
  }
}

/** Where a tool writes: lines to stdout and to stderr. */
export interface CliIo {
  /** One line of output. */
  out(line: string): void;
  /** One line of diagnostics. */
  err(line: string): void;
}

/** The process's stdout and stderr. */
export const consoleIo: CliIo = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};

/** What every option declares. */
interface OptionBase {
  /** One line of help. */
  help: string;
  /** A one-letter alias (`-t` for `--threads`). */
  short?: string;
}

/** An integer option: decimal or `0x` hexadecimal, within `min`..`max` (default 0..2^53). */
export interface IntOption extends OptionBase {
  /** The kind. */
  type: "int";
  /** The value when the option is absent. */
  default?: number;
  /** Smallest value allowed (default 0). */
  min?: number;
  /** Largest value allowed (default `Number.MAX_SAFE_INTEGER`). */
  max?: number;
  /** Name of the value in the help (default `N`). */
  arg?: string;
}

/** A decimal number with an optional fraction (`0.5`), within `min`..`max` (default 0..). */
export interface NumberOption extends OptionBase {
  /** The kind. */
  type: "number";
  /** The value when the option is absent. */
  default?: number;
  /** Smallest value allowed (default 0). */
  min?: number;
  /** Largest value allowed (default `Number.MAX_VALUE`). */
  max?: number;
  /** Name of the value in the help (default `N`). */
  arg?: string;
}

/** A string option, restricted to `choices` when given. */
export interface StringOption extends OptionBase {
  /** The kind. */
  type: "string";
  /** The value when the option is absent. */
  default?: string;
  /** The values allowed. */
  choices?: readonly string[];
  /** Name of the value in the help (default `S`, or the choices joined by `|`). */
  arg?: string;
}

/** A flag: present or not. */
export interface BooleanOption extends OptionBase {
  /** The kind. */
  type: "boolean";
}

/** One option of a tool. */
export type OptionSpec = IntOption | NumberOption | StringOption | BooleanOption;

/** A tool's options, by long name (`--name`). */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** The parsed value of one option. */
export type OptionValue<S> = S extends BooleanOption ? boolean
  : S extends IntOption | NumberOption
    ? (S extends { default: number } ? number : number | undefined)
  : S extends { choices: readonly (infer C extends string)[] }
    ? (S extends { default: string } ? C : C | undefined)
  : S extends { default: string } ? string
  : string | undefined;

/** The parsed values of a tool's options. */
export type CliValues<O extends OptionSpecs> = { -readonly [K in keyof O]: OptionValue<O[K]> };

/** A tool's command line: its usage line, what it does, and its options. */
export interface ToolSpec<O extends OptionSpecs> {
  /** The command, e.g. `deno run -A tools/dma/dmatest.ts [options]`. */
  usage: string;
  /** What the tool does, a paragraph. */
  summary: string;
  /** The options. */
  options: O;
  /**
   * What follows the options (`<command> [<args>]`), for a tool that runs another: parsing stops
   * at the first argument that is not an option, or after `--`, as perf's parse_options() does
   * with PARSE_OPT_STOP_AT_NON_OPTION. Without it, such an argument is refused.
   */
  operands?: string;
}

/** A tool to run: its command line and its body. */
export interface Tool<O extends OptionSpecs> extends ToolSpec<O> {
  /**
   * Runs the tool, writing to `io`; returns its exit status (0 when it returns nothing).
   * Throws {@linkcode UsageError} for an argument it cannot use.
   */
  main(
    values: CliValues<O>,
    io: CliIo,
    operands: readonly string[],
  ): number | void | Promise<number | void>;
}

const INT = /^(0|[1-9][0-9]*|0[xX][0-9a-fA-F]+)$/;
const DECIMAL = /^([0-9]+)(\.[0-9]+)?$/;

/**
 * Parses `text` as an integer for `what`: decimal or `0x` hexadecimal, optionally negative, and
 * within `min`..`max`. Throws {@linkcode UsageError} otherwise.
 */
export function parseInteger(
  text: string,
  what: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const neg = text.startsWith("-");
  const body = neg ? text.slice(1) : text;
  if (!INT.test(body)) throw new UsageError(`${what}: ${text} is not an integer (decimal or 0x)`);
  const n = (neg ? -1 : 1) * Number(body);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: ${text} is too large`);
  _range(n, text, what, min, max);
  return n === 0 ? 0 : n;
}

/** Parses `text` as a decimal number (fraction allowed) within `min`..`max` for `what`. */
export function parseDecimal(
  text: string,
  what: string,
  min = 0,
  max = Number.MAX_VALUE,
): number {
  const neg = text.startsWith("-");
  if (!DECIMAL.test(neg ? text.slice(1) : text)) {
    throw new UsageError(`${what}: ${text} is not a decimal number`);
  }
  const n = Number(text);
  _range(n, text, what, min, max);
  return n;
}

function _range(n: number, text: string, what: string, min: number, max: number): void {
  if (n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER || max === Number.MAX_VALUE
      ? `at least ${min}`
      : `${min} to ${max}`;
    throw new UsageError(`${what}: ${text} is out of range (${range})`);
  }
}

/** The usage text of `spec`: usage line, summary, then one line per option. */
export function helpText<O extends OptionSpecs>(spec: ToolSpec<O>): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const arg = o.type === "boolean" ? "" : ` ${_argName(o)}`;
    const flag = (o.short ? `-${o.short}, ` : "") + `--${name}${arg}`;
    const dflt = "default" in o && o.default !== undefined && o.default !== ""
      ? ` (default ${o.default})`
      : "";
    return [flag, o.help + dflt] as const;
  });
  rows.push(["-h, --help", "print this help and exit"]);
  const w = Math.max(...rows.map(([f]) => f.length));
  return [
    `Usage: ${spec.usage}`,
    "",
    spec.summary,
    "",
    "Options:",
    ...rows.map(([f, h]) => `  ${f.padEnd(w)}  ${h}`),
  ].join("\n");
}

function _argName(o: Exclude<OptionSpec, BooleanOption>): string {
  if (o.arg !== undefined) return o.arg;
  if (o.type === "string") return o.choices ? o.choices.join("|") : "S";
  return "N";
}

/**
 * Parses `args` against `spec`. Returns null for `-h`/`--help`; throws {@linkcode UsageError}
 * for a bad argument.
 */
export function parseCli<O extends OptionSpecs>(
  args: readonly string[],
  spec: ToolSpec<O>,
): CliValues<O> | null {
  return _parseCli(args, spec)?.values ?? null;
}

/** {@linkcode parseCli}, with the operands of a tool that takes them. */
function _parseCli<O extends OptionSpecs>(
  args: readonly string[],
  spec: ToolSpec<O>,
): { values: CliValues<O>; operands: readonly string[] } | null {
  let operands: readonly string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, o] of Object.entries(spec.options)) if (o.short) byShort.set(o.short, name);
  const raw = new Map<string, string | true>();
  const shownAs = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") return null;
    const option = (a.startsWith("--") && a.length > 2) || /^-[^-0-9]/.test(a);
    if (spec.operands !== undefined && !option) {
      operands = args.slice(a === "--" ? i + 1 : i);
      break;
    }
    let name: string, inline: string | undefined;
    if (a.startsWith("--") && a.length > 2) {
      const eq = a.indexOf("=");
      name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      inline = eq < 0 ? undefined : a.slice(eq + 1);
      if (name === "help") throw new UsageError("--help takes no value");
      if (!Object.hasOwn(spec.options, name)) throw new UsageError(`unknown option --${name}`);
    } else if (/^-[^-0-9]/.test(a)) {
      const long = byShort.get(a[1]);
      if (long === undefined) throw new UsageError(`unknown option -${a[1]}`);
      name = long;
      inline = a.length > 2 ? a.slice(2).replace(/^=/, "") : undefined;
    } else {
      throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
    }
    const o = spec.options[name];
    const shown = a.startsWith("--") ? `--${name}` : a.slice(0, 2);
    shownAs.set(name, shown);
    if (o.type === "boolean") {
      if (inline !== undefined) throw new UsageError(`${shown} takes no value`);
      raw.set(name, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("-") && !/^-[0-9]/.test(next))) {
        throw new UsageError(`${shown} needs a value`);
      }
      value = next;
      i++;
    }
    raw.set(name, value);
  }
  const values: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    const v = raw.get(name);
    const what = shownAs.get(name) ?? `--${name}`;
    switch (o.type) {
      case "boolean":
        values[name] = v === true;
        break;
      case "int":
        values[name] = v === undefined ? o.default : parseInteger(v as string, what, o.min, o.max);
        break;
      case "number":
        values[name] = v === undefined ? o.default : parseDecimal(v as string, what, o.min, o.max);
        break;
      case "string":
        if (v !== undefined && o.choices && !o.choices.includes(v as string)) {
          throw new UsageError(`${what}: ${v} is not one of ${o.choices.join(", ")}`);
        }
        values[name] = v ?? o.default;
        break;
    }
  }
  return { values: values as CliValues<O>, operands };
}

/**
 * Runs `tool` on `args`: prints the help for `-h`/`--help` (status 0), one line
 * `<name>: <what is wrong>` for a bad argument (status 2), else returns what `main` returns.
 */
export async function runCli<O extends OptionSpecs>(
  name: string,
  args: readonly string[],
  tool: Tool<O>,
  io: CliIo = consoleIo,
): Promise<number> {
  try {
    const parsed = _parseCli(args, tool);
    if (parsed === null) {
      io.out(helpText(tool));
      return 0;
    }
    return (await tool.main(parsed.values, io, parsed.operands)) ?? 0;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`${name}: ${e.message}`);
    return 2;
  }
}

/** {@linkcode runCli} for `import.meta.main`: exits the process with the tool's status. */
export async function runTool<O extends OptionSpecs>(
  name: string,
  args: readonly string[],
  tool: Tool<O>,
): Promise<never> {
  Deno.exit(await runCli(name, args, tool));
}
