/**
 * The one shape of a benchmark line: `bench` (the script), `figure` (what was measured),
 * `value` and `unit`, then the figure's descriptive fields (`target`, the scenario's
 * parameters). `deno task bench` prints one JSON line per figure.
 *
 * @module
 */
import type { CliIo, Tool } from "../cli.ts";

/** One benchmark figure. */
export interface BenchLine {
  /** The benchmark script, e.g. `iommu_map`. */
  readonly bench: string;
  /** What was measured, e.g. `map_4k`. */
  readonly figure: string;
  /** The measurement. */
  readonly value: number;
  /** Its unit, e.g. `pages/s`. */
  readonly unit: string;
  /** Descriptive fields: the target, the scenario's parameters. */
  readonly [field: string]: string | number;
}

/** Builds a {@linkcode BenchLine}; `fields` may not override the four common ones. */
export function benchLine(
  bench: string,
  figure: string,
  value: number,
  unit: string,
  fields: Readonly<Record<string, string | number>> = {},
): BenchLine {
  for (const k of ["bench", "figure", "value", "unit"]) {
    if (k in fields) throw new TypeError(`A descriptive field may not be named ${k}`);
  }
  return { bench, figure, value, unit, ...fields };
}

/** The command line of a benchmark script: no options, `--help`, lines to stdout as JSON. */
export function benchCli(
  name: string,
  summary: string,
  run: () => readonly BenchLine[] | Iterable<BenchLine>,
): Tool<Record<never, never>> {
  return {
    usage: `deno run -A tools/bench/${name}.ts`,
    summary: `${summary} Prints one JSON line per figure (bench, figure, value, unit, ...).`,
    options: {},
    main(_v, io: CliIo) {
      for (const line of run()) io.out(JSON.stringify(line));
    },
  };
}
