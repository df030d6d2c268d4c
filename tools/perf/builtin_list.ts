/**
 * `perf list`: mirrors `tools/perf/builtin-list.c` with `print-events.c` and the PMU parts of
 * `pmus.c` for the events this kernel has: every PMU's events (sysfs `events/` as
 * `pmu/event/  [Kernel PMU event]`, JSON events under their topic with their description and
 * unit), then `rNNN` and each PMU's `pmu/format=0..max,.../modifier` raw descriptor (the whole
 * format list with `--details`). PMUs that differ only by a `_N` suffix are listed once, by
 * the name without it, as perf does.
 *
 * There are no hardware, software, cache or tracepoint events in this kernel, so perf's
 * sections for them are empty.
 *
 * @module
 */
import { parse_events_terms } from "./util/parse_events.ts";
import { fnmatch, type PerfPmu, pmu_name_len_no_suffix } from "./util/pmu.ts";

/** perf list's switches. */
export interface ListOptions {
  /** `--details`: the encoding of each event and the full format lists. */
  readonly details: boolean;
  /** `-v`/`--long-desc`: long descriptions. */
  readonly long_desc: boolean;
  /** The argument: `pmu` (PMU events only), an event glob, or null for everything. */
  readonly what: string | null;
}

/** Terminal width perf wraps descriptions at. */
const COLUMNS = 80;

interface Sevent {
  readonly pmu: PerfPmu;
  readonly pmu_name: string;
  readonly topic: string | null;
  readonly name: string;
  readonly desc: string | null;
  readonly long_desc: string | null;
  readonly encoding: string;
}

/** Mirrors wordwrap(): words after column `start`, a new line (indented) before `max`. */
function wordwrap(s: string, start: number, max: number): string {
  let out = "";
  let column = start;
  for (const word of s.split(/[ \t]+/).filter((w) => w !== "")) {
    if (column + word.length >= max && column > start) {
      out += `\n${" ".repeat(start)}`;
      column = start;
    }
    const piece = `${column > start ? " " : ""}${word}`;
    out += piece;
    column += piece.length;
  }
  return out;
}

/** The PMUs whose name without suffix was not seen before (perf_pmus__scan_skip_duplicates). */
function skipDuplicates(pmus: readonly PerfPmu[]): PerfPmu[] {
  const seen = new Set<string>();
  return pmus.filter((p) => {
    const key = p.is_core ? p.name : p.name.slice(0, pmu_name_len_no_suffix(p.name));
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function dedupName(p: PerfPmu): string {
  return p.is_core ? p.name : p.name.slice(0, pmu_name_len_no_suffix(p.name));
}

/** parse_events_terms__to_strbuf(): `event=0x4`, numbers as `%#llx`. */
function termsString(terms: string): string {
  return parse_events_terms(terms).map((t) =>
    t.no_value
      ? t.config
      : `${t.config}=${t.num !== null ? (t.num === 0n ? "0" : `0x${t.num.toString(16)}`) : t.str}`
  ).join(",");
}

/** perf_pmu__for_each_event() over the PMUs, sorted by cmp_sevent(). */
function pmuEvents(pmus: readonly PerfPmu[]): Sevent[] {
  const out: Sevent[] = [];
  for (const pmu of skipDuplicates(pmus)) {
    const short = dedupName(pmu);
    for (const a of pmu.aliases) {
      if (a.deprecated) continue;
      let encoding: string;
      try {
        encoding = `${short}/${termsString(a.terms)}/`;
      } catch {
        continue; // an alias whose terms do not parse is not created (perf_pmu__new_alias())
      }
      out.push({
        pmu,
        pmu_name: a.pmu_name ?? pmu.name,
        topic: a.topic,
        name: a.desc !== null ? a.name : `${short}/${a.name}/`,
        desc: a.desc,
        long_desc: a.long_desc,
        encoding,
      });
    }
  }
  const cmp = (x: string, y: string) => x < y ? -1 : x > y ? 1 : 0;
  out.sort((a, b) =>
    Number(a.desc !== null) - Number(b.desc !== null) || cmp(a.topic ?? "", b.topic ?? "") ||
    Number(b.pmu.is_core) - Number(a.pmu.is_core) ||
    (a.pmu === b.pmu ? 0 : cmp(a.pmu_name, b.pmu_name)) || cmp(a.name, b.name)
  );
  return out.filter((e, i) =>
    i === out.length - 1 || e.name !== out[i + 1].name || e.pmu_name !== out[i + 1].pmu_name
  );
}

/** build_format_string(): `event=0..0x7fff` for wide fields, a bare name for one bit. */
function formatTerm(name: string, bits: number): string {
  if (bits <= 1) return name;
  const max = (1n << BigInt(bits)) - 1n;
  return bits > 8 ? `${name}=0..0x${max.toString(16)}` : `${name}=0..${max}`;
}

/** Prints the listing as perf's default_print_event() lays it out. */
export function cmd_list(pmus: readonly PerfPmu[], opts: ListOptions): string[] {
  const lines: string[] = [];
  let lastTopic = "";
  const glob = opts.what !== null && opts.what !== "pmu" ? `*${opts.what}*` : null;
  const print = (
    name: string,
    topic: string | null,
    typeDesc: string | null,
    desc: string | null,
    pmuName: string | null,
    encoding: string | null,
  ) => {
    if (
      glob !== null && !fnmatch(glob, name) &&
      !(topic !== null && fnmatch(glob.toLowerCase(), topic.toLowerCase()))
    ) {
      return;
    }
    if ((topic ?? "") !== lastTopic) {
      if (topic !== null) lines.push("", `${topic}:`);
      lastTopic = topic ?? "";
    }
    let line = `  ${name}`;
    if (topic === null && typeDesc !== null) line = `${line.padEnd(53)}[${typeDesc}]`;
    lines.push(line);
    if (desc !== null) {
      const withUnit = pmuName === null
        ? desc
        : `${desc}${desc.endsWith(".") ? "" : "."} Unit: ${pmuName}`;
      lines.push(`${"[".padStart(8)}${wordwrap(withUnit, 8, COLUMNS)}]`);
    }
    if (opts.details && encoding !== null) {
      lines.push(`${" ".repeat(8)}${wordwrap(encoding, 8, COLUMNS)}`);
    }
  };
  for (const e of pmuEvents(pmus)) {
    const desc = opts.long_desc ? e.long_desc ?? e.desc : e.desc;
    print(e.name, e.topic, "Kernel PMU event", desc, e.pmu_name, e.encoding);
  }
  if (opts.what !== null) return lines;
  print("rNNN", null, "Raw event descriptor", null, null, null);
  for (const pmu of skipDuplicates(pmus)) {
    const terms = pmu.formats.map((f) => formatTerm(f.name, f.bits.length));
    const short = terms.length > 3 ? `${terms.slice(0, 3).join(",")},...` : terms.join(",");
    const name = dedupName(pmu);
    print(
      `${name}/${short}/modifier`,
      null,
      "Raw event descriptor",
      null,
      null,
      `${name}/${terms.join(",")}/modifier`,
    );
  }
  return lines;
}
