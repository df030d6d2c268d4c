/**
 * pmu-events: perf's JSON event descriptions, read at run time where perf compiles them with
 * `tools/perf/pmu-events/jevents.py`. This port loads the `sys` tables only (the events of
 * system PMUs, matched to a PMU by `Unit` and `Compat` against its `identifier`, see
 * `pmu.ts`), from every `sys/` directory under `pmu-events/arch/riscv/`.
 *
 * A JSON event becomes what jevents makes of it: the name in lower case, the terms
 * `config=<ConfigCode>` or `event=<EventCode>` (plus `Filter`), the descriptions without their
 * trailing period, the PMU `uncore_<unit in lower case>` and the topic from the file name.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** struct pmu_event: one event of a JSON table, as jevents encodes it. */
export interface PmuEvent {
  /** Event name, lower case (`ioatc_tlb_hit`). */
  readonly name: string;
  /** The terms the name stands for (`event=0x40`). */
  readonly event: string;
  /** BriefDescription without a trailing period. */
  readonly desc: string | null;
  /** PublicDescription without a trailing period. */
  readonly long_desc: string | null;
  /** The PMU the event is for: `uncore_<Unit>` (the `uncore_` prefix is ignored in matches). */
  readonly pmu: string;
  /** Compat: a regular expression the PMU's `identifier` must match whole. */
  readonly compat: string | null;
  /** The topic `perf list` groups it under: the JSON file's name. */
  readonly topic: string;
  /** ScaleUnit, if any. */
  readonly unit: string | null;
  /** Deprecated: hidden from `perf list`. */
  readonly deprecated: boolean;
}

/** The JSON files' directory. */
export const PMU_EVENTS_ARCH_DIR: string = fileURLToPath(
  new URL("../pmu-events/arch/riscv", import.meta.url),
);

/** jevents' llx(): small numbers in decimal, others as `0x..` hex. */
function llx(x: bigint): string {
  return x >= 0n && x < 10n ? String(x) : `0x${x.toString(16)}`;
}

/** jevents' fixdesc(): drops a trailing `.`, `. ` or `.  `. */
function fixdesc(s: unknown): string | null {
  if (typeof s !== "string") return null;
  return s.replace(/\.( {0,2})$/, "");
}

/** jevents' unit_to_pmu() for units outside its table of Intel/ARM names. */
function unit_to_pmu(unit: unknown): string {
  return typeof unit === "string" && unit !== "" ? `uncore_${unit.toLowerCase()}` : "default_core";
}

/**
 * Converts one JSON event as jevents' JsonEvent does; throws a `SyntaxError` naming `where`
 * for an entry without an `EventName` or with a code that is not a number.
 */
export function jsonEvent(jd: Record<string, unknown>, topic: string, where: string): PmuEvent {
  const num = (key: string): bigint | null => {
    const v = jd[key];
    if (v === undefined) return null;
    const text = String(v).split(",")[0].trim();
    if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(text)) {
      throw new SyntaxError(`${where}: ${key} "${String(v)}" is not a number`);
    }
    return BigInt(text);
  };
  if (typeof jd.EventName !== "string") {
    throw new SyntaxError(`${where}: an event has no EventName`);
  }
  const config = num("ConfigCode");
  let event = config !== null ? `config=${llx(config)}` : `event=${llx(num("EventCode") ?? 0n)}`;
  if (typeof jd.Filter === "string") event += `,${jd.Filter}`;
  return {
    name: jd.EventName.toLowerCase(),
    event,
    desc: fixdesc(jd.BriefDescription),
    long_desc: fixdesc(jd.PublicDescription),
    pmu: unit_to_pmu(jd.Unit),
    compat: typeof jd.Compat === "string" ? jd.Compat : null,
    topic: topic.replace(/-/g, " "),
    unit: typeof jd.ScaleUnit === "string" ? jd.ScaleUnit : null,
    deprecated: jd.Deprecated === "1" || jd.Deprecated === true,
  };
}

function _walk(dir: string, inSys: boolean, out: PmuEvent[]): void {
  const entries = [...Deno.readDirSync(dir)].sort((a, b) => a.name < b.name ? -1 : 1);
  for (const ent of entries) {
    const path = `${dir}/${ent.name}`;
    if (ent.isDirectory) {
      _walk(path, inSys || ent.name === "sys", out);
    } else if (inSys && ent.name.endsWith(".json")) {
      const list = JSON.parse(Deno.readTextFileSync(path));
      if (!Array.isArray(list)) throw new SyntaxError(`${path}: not a JSON array of events`);
      for (const jd of list) out.push(jsonEvent(jd, ent.name.replace(/\.json$/, ""), path));
    }
  }
}

/**
 * The sys events of every JSON file under `sys/` directories of `dir` (default
 * {@linkcode PMU_EVENTS_ARCH_DIR}), in path order (pmu_for_each_sys_event()).
 */
export function pmu_sys_events(dir: string = PMU_EVENTS_ARCH_DIR): PmuEvent[] {
  const out: PmuEvent[] = [];
  _walk(dir, false, out);
  return out;
}
