/**
 * Event strings as perf parses them: mirrors `tools/perf/util/parse-events.{l,y,c}` and the
 * term handling of `pmu.c` (perf_pmu__check_alias(), perf_pmu__config()) for what `perf stat`
 * takes:
 *
 * - `pmu/terms/modifiers`: terms are `format` fields of the PMU (`event=0x4`,
 *   `filter_did_gscid=0x2`), its `events` aliases (`tlb_mis`, `event=tlb_mis`), or the static
 *   terms `config`, `config1`..`config3`, `name`, `period`, `percore`, `metric-id`, `cpu`; a PMU
 *   name without its `_<N>` suffix (or a glob) names every such PMU, counted as one;
 * - `name[:modifiers]`: an alias searched on every PMU;
 * - `rNNN` (a raw event of type PERF_TYPE_RAW), `type:config` numbers, with optional terms;
 * - `{a,b}[:modifiers]` groups; events of different PMUs in a group are regrouped per PMU;
 * - modifiers `u k h` (privilege levels), `G H` (guest/host), `I` (idle), `D` (pinned), `e`
 *   (exclusive).
 *
 * Errors are {@linkcode ParseEventsError}s at a column of the string;
 * {@linkcode parse_events_error__print} lays them out as perf's "event syntax error" block.
 *
 * DIVERGENCE: perf (since 6.5) retries a failing `pmu/.../` as a PMU wildcard and then as an
 * event name, and prints every error recorded on the way ("Bad event or PMU" above the term
 * error, twice); this parser reports the one error at the failing term, as perf did before.
 * Characters the lexer does not know are a syntax error here (flex drops them).
 *
 * @module
 */
import { nr_cpu_ids, PERF_TYPE_RAW, type PerfEventAttr } from "@iommu-lab/perf";
import {
  perf_pmu__find_alias,
  perf_pmu__find_format,
  perf_pmu__wildcard_match,
  type PerfPmu,
  pmu_format_max_value,
  pmu_format_value,
  type PmuAlias,
} from "./pmu.ts";

/** An error at column `idx` of the event string, with an optional help paragraph. */
export class ParseEventsError extends Error {
  /** Column of the event string the error is at (-1: before it). */
  readonly idx: number;
  /** The message under the caret. */
  readonly str: string;
  /** A paragraph printed after the block (e.g. the valid terms). */
  readonly help: string | null;

  /** Records an error as parse_events_error__handle() does. */
  constructor(idx: number, str: string, help: string | null = null) {
    super(str);
    this.name = "ParseEventsError";
    this.idx = idx;
    this.str = str;
    this.help = help;
  }
}

/** struct evsel: one counter to open. */
export interface Evsel {
  /** The name perf stat prints: the event as written, or its `name=` term. */
  name: string;
  /** The PMU, or null for a raw or numeric event. */
  readonly pmu: PerfPmu | null;
  /** The attr to open it with. */
  readonly attr: PerfEventAttr;
  /** Index (in the list) of its group leader; its own index for a leader. */
  leader: number;
  /** Evsels from one event of the string (a wildcard's PMUs) share it: perf stat sums them. */
  readonly counter: number;
}

/** What {@linkcode parse_events} returns. */
export interface ParsedEvents {
  /** The counters, leaders before their members. */
  readonly evsels: Evsel[];
  /** Events of a group were regrouped by PMU (perf warns). */
  readonly regrouped: boolean;
}

/** The static terms (parse-events.l's keywords) in enum parse_events__term_type order. */
const CONFIG_TERM_NAMES = [
  "config",
  "config1",
  "config2",
  "config3",
  "name",
  "period",
  "freq",
  "branch_type",
  "time",
  "call-graph",
  "stack-size",
  "no-inherit",
  "inherit",
  "max-stack",
  "nr",
  "overwrite",
  "no-overwrite",
  "driver-config",
  "percore",
  "aux-output",
  "aux-action",
  "aux-sample-size",
  "metric-id",
  "raw",
  "legacy-cache",
  "hardware",
  "cpu",
  "ratio-to-prev",
];

/** A static term at the start of a string: the longest keyword that matches. */
const TERM_RE = new RegExp(
  `^(${[...CONFIG_TERM_NAMES].sort((a, b) => b.length - a.length).join("|")})`,
);

/** The ones config_term_avail() allows once perf stat has shrunk the list. */
const STAT_TERMS = new Set([
  "config",
  "config1",
  "config2",
  "config3",
  "name",
  "period",
  "percore",
  "metric-id",
  "cpu",
]);

/** Mirrors parse_events_formats_error_string() under perf stat's shrunk term list. */
export function parse_events_formats_error_string(additional: string | null): string {
  const terms = CONFIG_TERM_NAMES.filter((t) => STAT_TERMS.has(t)).join(",");
  return additional !== null ? `valid terms: ${additional},${terms}` : `valid terms: ${terms}`;
}

/** One term of an event's `/.../` (struct parse_events_term). */
interface Term {
  /** A static term's name (`config1`), or null for a sysfs (format or alias) term. */
  readonly hardcoded: string | null;
  /** The term's name. */
  readonly config: string;
  /** Numeric value (1 for a term without a value). */
  readonly num: bigint | null;
  /** String value. */
  readonly str: string | null;
  /** Written without `=value`. */
  readonly no_value: boolean;
  /** Column of the term, and of its value (0 when it has none, as perf records it). */
  readonly err_term: number;
  readonly err_val: number;
}

type TokKind = "name" | "raw" | "num" | "mod" | "term" | "/" | "," | ":" | "{" | "}" | "=" | "eof";

interface Tok {
  readonly kind: TokKind;
  readonly text: string;
  readonly col: number;
  readonly end: number;
  readonly num?: bigint;
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** parse-events.l: the INITIAL and config start conditions, over one string. */
class Lexer {
  #pos = 0;
  /** Start column of the last token (YYLTYPE first_column), for the error column. */
  lastCol = 0;
  prevCol = 0;

  constructor(readonly src: string) {}

  /** The next token in `state`; a number beyond 64 bits or an unknown character throws. */
  next(state: "initial" | "config"): Tok {
    const s = this.src;
    while (this.#pos < s.length && /\s/.test(s[this.#pos])) this.#pos++;
    const col = this.#pos;
    this.prevCol = this.lastCol;
    this.lastCol = col;
    if (col >= s.length) return { kind: "eof", text: "", col, end: col };
    const c = s[col];
    const punct = state === "initial" ? "/,:{}=" : "/,=";
    if (punct.includes(c)) {
      this.#pos++;
      return { kind: c as TokKind, text: c, col, end: col + 1 };
    }
    const rest = s.slice(col);
    const cands: [TokKind, RegExp][] = state === "initial"
      ? [
        ["raw", /^r[0-9a-fA-F]+/],
        ["num", /^[0-9]+/],
        ["num", /^0x[0-9a-fA-F]+/],
        ["mod", /^[ukhpPGHSDIWeb]+/],
        ["name", /^[a-zA-Z_*?[\]][a-zA-Z0-9_*?.[\]]*/],
      ]
      : [
        ["term", TERM_RE],
        ["name", /^[a-zA-Z_*?][a-zA-Z0-9\-_*?.:]*/],
        ["num", /^[0-9]+/],
        ["num", /^0x[0-9a-fA-F]+/],
      ];
    let best: Tok | null = null;
    for (const [kind, re] of cands) {
      const m = re.exec(rest);
      if (m === null || (best !== null && m[0].length <= best.text.length)) continue;
      best = { kind, text: m[0], col, end: col + m[0].length };
    }
    if (best === null) throw new ParseEventsError(this.prevCol, "Unrecognized input");
    if (best.kind === "term" && !CONFIG_TERM_NAMES.includes(best.text)) {
      best = { ...best, kind: "name" };
    }
    if (best.kind === "num") {
      const num = BigInt(best.text);
      if (num > U64_MAX) throw new ParseEventsError(this.prevCol, "Unrecognized input");
      best = { ...best, num };
    }
    this.#pos = best.end;
    return best;
  }
}

/** The parser's view: one token of lookahead over a {@linkcode Lexer}. */
class Cursor {
  readonly lex: Lexer;
  tok: Tok;
  /** End column of the last token taken. */
  prevEnd = 0;
  #state: "initial" | "config";

  constructor(src: string, state: "initial" | "config") {
    this.lex = new Lexer(src);
    this.#state = state;
    this.tok = this.lex.next(state);
  }

  /** The lookahead is a `kind` token (a method, so the compiler does not narrow `tok`). */
  is(kind: TokKind): boolean {
    return this.tok.kind === kind;
  }

  /** Consumes the lookahead; `state` is the start condition for the one after it. */
  take(state: "initial" | "config" = this.#state): Tok {
    const t = this.tok;
    this.prevEnd = t.end;
    this.#state = state;
    this.tok = this.lex.next(state);
    return t;
  }

  /** A bison syntax error at the lookahead (at YYLTYPE's last_column, the token before it). */
  unexpected(): ParseEventsError {
    return new ParseEventsError(this.lex.prevCol, "Unrecognized input");
  }

  expect(kind: TokKind, state?: "initial" | "config"): Tok {
    if (this.tok.kind !== kind) throw this.unexpected();
    return this.take(state);
  }
}

/** event_config: `term(,term)*` up to the closing `/` (not consumed). */
function parseTerms(cur: Cursor): Term[] {
  const terms: Term[] = [];
  for (;;) {
    const t = cur.tok;
    if (t.kind !== "name" && t.kind !== "term") throw cur.unexpected();
    cur.take();
    const hardcoded = t.kind === "term" ? t.text : null;
    if (!cur.is("=")) {
      terms.push({
        hardcoded,
        config: t.text,
        num: 1n,
        str: null,
        no_value: true,
        err_term: t.col,
        err_val: 0,
      });
    } else {
      cur.take();
      const v = cur.tok;
      if (v.kind === "num") {
        terms.push({
          hardcoded,
          config: t.text,
          num: v.num!,
          str: null,
          no_value: false,
          err_term: t.col,
          err_val: v.col,
        });
      } else if (v.kind === "name" || v.kind === "term") {
        terms.push({
          hardcoded,
          config: t.text,
          num: null,
          str: v.text,
          no_value: false,
          err_term: t.col,
          err_val: v.col,
        });
      } else {
        throw cur.unexpected();
      }
      cur.take();
    }
    if (!cur.is(",")) return terms;
    cur.take();
  }
}

/**
 * Mirrors parse_events_terms(): a term list on its own, as an `events/` alias or a JSON event
 * holds it (`event=0x04,config1=0x20c0010000000000`).
 */
export function parse_events_terms(str: string): Term[] {
  const cur = new Cursor(str, "config");
  const terms = parseTerms(cur);
  if (!cur.is("eof")) throw cur.unexpected();
  return terms;
}

interface Modifiers {
  readonly text: string;
  readonly col: number;
}

type EventDef =
  | { kind: "pmu"; name: Tok; terms: Term[] }
  | { kind: "name"; name: Tok }
  | { kind: "raw"; config: bigint; terms: Term[] }
  | { kind: "numeric"; type: bigint; config: bigint; terms: Term[] };

interface ParsedEvent {
  readonly def: EventDef;
  readonly mods: Modifiers | null;
  readonly start: number;
  readonly end: number;
}

interface ParsedGroup {
  readonly events: ParsedEvent[];
  readonly mods: Modifiers | null;
}

/** `/terms/` or `//` after an event name; the lookahead is the opening `/`. */
function parseSlashTerms(cur: Cursor): Term[] {
  cur.take("config");
  if (cur.is("/")) {
    cur.take("initial");
    return [];
  }
  const terms = parseTerms(cur);
  cur.expect("/", "initial");
  return terms;
}

function parseEvent(cur: Cursor): ParsedEvent {
  const first = cur.tok;
  let def: EventDef;
  if (first.kind === "name") {
    cur.take();
    if (cur.is("/")) {
      def = { kind: "pmu", name: first, terms: parseSlashTerms(cur) };
    } else {
      def = { kind: "name", name: first };
      if (cur.is(":")) cur.take();
    }
  } else if (first.kind === "raw" || first.kind === "num") {
    cur.take();
    let type = BigInt(PERF_TYPE_RAW);
    let config: bigint;
    if (first.kind === "raw") {
      config = BigInt(`0x${first.text.slice(1)}`);
      if (config > U64_MAX) throw new ParseEventsError(first.col, "Unrecognized input");
    } else {
      cur.expect(":");
      const c = cur.expect("num");
      type = first.num!;
      config = c.num!;
    }
    let terms: Term[] = [];
    if (cur.is("/")) terms = parseSlashTerms(cur);
    if (cur.is(":")) cur.take();
    def = first.kind === "raw"
      ? { kind: "raw", config, terms }
      : { kind: "numeric", type, config, terms };
  } else {
    throw cur.unexpected();
  }
  let mods: Modifiers | null = null;
  if (cur.is("mod")) {
    const m = cur.take();
    mods = { text: m.text, col: m.col };
  }
  return { def, mods, start: first.col, end: cur.prevEnd };
}

/** groups: `(group|event)(,(group|event))*`. */
function parseGroups(cur: Cursor): ParsedGroup[] {
  const out: ParsedGroup[] = [];
  for (;;) {
    if (cur.is("{")) {
      cur.take();
      const events: ParsedEvent[] = [parseEvent(cur)];
      while (cur.is(",")) {
        cur.take();
        events.push(parseEvent(cur));
      }
      cur.expect("}");
      let mods: Modifiers | null = null;
      if (cur.is(":")) {
        cur.take();
        const m = cur.expect("mod");
        mods = { text: m.text, col: m.col };
      }
      out.push({ events, mods });
    } else {
      out.push({ events: [parseEvent(cur)], mods: null });
    }
    if (cur.is("eof")) return out;
    cur.expect(",");
  }
}

/**
 * Mirrors parse_events__modifier_event(): `u k h` choose the privilege levels counted, `G H`
 * guest/host, `I` excludes idle, `D` pins, `e` makes exclusive.
 */
function applyModifiers(attr: PerfEventAttr, mods: Modifiers): void {
  let eu = attr.exclude_user ?? false;
  let ek = attr.exclude_kernel ?? false;
  let eh = attr.exclude_hv ?? false;
  let eG = attr.exclude_guest ?? false;
  let eH = attr.exclude_host ?? false;
  let exclude = eu || ek || eh;
  let excludeGH = eG || eH;
  for (let i = 0; i < mods.text.length; i++) {
    const c = mods.text[i];
    if ("ukh".includes(c)) {
      if (!exclude) {
        exclude =
          eu =
          ek =
          eh =
            true;
      }
      if (c === "u") eu = false;
      else if (c === "k") ek = false;
      else eh = false;
    } else if (c === "G" || c === "H") {
      if (!excludeGH) excludeGH = eG = eH = true;
      if (c === "G") eG = false;
      else eH = false;
    } else if (c === "I") {
      attr.exclude_idle = true;
    } else if (c === "D") {
      attr.pinned = true;
    } else if (c === "e") {
      attr.exclusive = true;
    } else {
      throw new ParseEventsError(mods.col + i, `modifier '${c}' is not supported`);
    }
  }
  Object.assign(attr, {
    exclude_user: eu,
    exclude_kernel: ek,
    exclude_hv: eh,
    exclude_guest: eG,
    exclude_host: eH,
  });
}

interface Built {
  name: string | null;
}

/** Mirrors config_term_common() for one static term, under perf stat's term list. */
function configTermCommon(attr: PerfEventAttr, term: Term, out: Built, pmus: readonly PerfPmu[]) {
  const kind = term.hardcoded!;
  const wantNum = () => {
    if (term.num === null) throw new ParseEventsError(term.err_val, "expected numeric value");
    return term.num;
  };
  const wantStr = () => {
    if (term.str === null) throw new ParseEventsError(term.err_val, "expected string value");
    return term.str;
  };
  switch (kind) {
    case "config":
    case "config1":
    case "config2":
    case "config3": {
      const key = kind as "config" | "config1" | "config2" | "config3";
      attr[key] = (attr[key] ?? 0n) | wantNum();
      break;
    }
    case "name":
      out.name = wantStr();
      break;
    case "period":
      attr.sample_period = wantNum();
      break;
    case "percore":
      if (wantNum() > 1n) throw new ParseEventsError(term.err_val, "expected 0 or 1");
      break;
    case "metric-id":
      wantStr();
      break;
    case "cpu":
      if (term.num !== null) {
        if (term.num >= BigInt(nr_cpu_ids)) throw new ParseEventsError(term.err_val, "too big");
      } else if (!pmus.some((p) => p.name === term.str) && !/^[0-9]+(-[0-9]+)?$/.test(term.str!)) {
        throw new ParseEventsError(term.err_val, "not a valid PMU or CPU number");
      }
      break;
    default:
      throw new ParseEventsError(-1, `'${kind}' is not usable in 'perf stat'`);
  }
}

/** Mirrors pmu_find_alias(): the alias a term names, if it names one. */
function findAlias(pmu: PerfPmu, term: Term): PmuAlias | undefined {
  if (term.hardcoded !== null) return undefined;
  if (term.num !== null) {
    if (!term.no_value || perf_pmu__find_format(pmu, term.config)) return undefined;
    return perf_pmu__find_alias(pmu, term.config);
  }
  if (term.config.toLowerCase() !== "event") return undefined;
  return perf_pmu__find_alias(pmu, term.str!);
}

/** The alias's terms, located at the column of the term that named it. */
function aliasTerms(alias: PmuAlias, at: number): Term[] | null {
  try {
    return parse_events_terms(alias.terms).map((t) => ({ ...t, err_term: at, err_val: at }));
  } catch (e) {
    if (e instanceof ParseEventsError) return null; // perf_pmu__new_alias() drops such an alias
    throw e;
  }
}

/**
 * Mirrors parse_events_add_pmu(): the static terms, then aliases replaced by their terms, then
 * every term set into the attr through the PMU's formats.
 */
function addPmu(pmu: PerfPmu, terms: readonly Term[], pmus: readonly PerfPmu[]) {
  const attr: PerfEventAttr = { type: pmu.type, config: 0n };
  const out: Built = { name: null };
  for (const t of terms) if (t.hardcoded !== null) configTermCommon(attr, t, out, pmus);
  const expanded: Term[] = [];
  for (const t of terms) {
    const alias = findAlias(pmu, t);
    const sub = alias === undefined ? null : aliasTerms(alias, t.err_term);
    expanded.push(...(sub ?? [t]));
  }
  for (const t of expanded) {
    if (t.hardcoded !== null) {
      configTermCommon(attr, t, out, pmus);
      continue;
    }
    const format = perf_pmu__find_format(pmu, t.config);
    if (format === undefined) {
      const names = pmu.formats.length === 0 ? null : pmu.formats.map((f) => f.name).join(",");
      throw new ParseEventsError(
        t.err_term,
        `unknown term '${t.config}' for pmu '${pmu.name}'`,
        parse_events_formats_error_string(names),
      );
    }
    if (t.num === null) throw new ParseEventsError(t.err_val, "expected numeric value");
    if (t.no_value && format.bits.length > 1) {
      throw new ParseEventsError(t.err_val, "no value assigned for term");
    }
    const max = pmu_format_max_value(format);
    if (t.num > max) {
      throw new ParseEventsError(
        t.err_val,
        `value too big for format (${format.name}), maximum is ${max}`,
      );
    }
    const key = (["config", "config1", "config2", "config3"] as const)[format.value];
    attr[key] = pmu_format_value(format, t.num, attr[key] ?? 0n);
  }
  return { attr, name: out.name };
}

function badPmu(name: Tok): ParseEventsError {
  return new ParseEventsError(
    name.col,
    "Bad event or PMU",
    `Unable to find PMU or event on a PMU of '${name.text}'`,
  );
}

/**
 * Parses `str` into counters over `pmus` (perf's parse_events()); throws a
 * {@linkcode ParseEventsError} at the column of the problem.
 *
 * @example A format field, an alias and a filter in config1
 * ```ts
 * import assert from "node:assert/strict";
 * import { parse_events } from "./parse_events.ts";
 *
 * const pmu = {
 *   name: "riscv_iommu_hpm_0", type: 8, is_uncore: true, is_core: false, id: "riscv,iommu",
 *   cpus: [0],
 *   formats: [
 *     { name: "event", value: 0, bits: [...Array(15).keys()] },
 *     { name: "filter_dmask", value: 1, bits: [15] },
 *   ],
 *   aliases: [{ name: "tlb_mis", terms: "event=0x04", desc: null, long_desc: null,
 *     topic: null, pmu_name: null, deprecated: false }],
 * };
 * const { evsels } = parse_events("riscv_iommu_hpm_0/tlb_mis,filter_dmask=1/", [pmu]);
 * assert.deepEqual(evsels[0].attr, { type: 8, config: 4n, config1: 0x8000n });
 * ```
 */
export function parse_events(str: string, pmus: readonly PerfPmu[]): ParsedEvents {
  const cur = new Cursor(str, "initial");
  if (cur.is("eof")) throw new ParseEventsError(0, "Unrecognized input");
  const groups = parseGroups(cur);
  const evsels: Evsel[] = [];
  let regrouped = false;
  let counter = 0;
  for (const g of groups) {
    const members: Evsel[] = [];
    for (const ev of g.events) {
      const text = str.slice(ev.start, ev.end);
      for (const { attr, name, pmu } of expand(ev, pmus)) {
        if (ev.mods !== null) applyModifiers(attr, ev.mods);
        if (g.mods !== null) applyModifiers(attr, g.mods);
        members.push({ name: name ?? text, pmu, attr, leader: -1, counter });
      }
      counter++;
    }
    // parse_events__sort_events_and_fix_groups(): one group per PMU, in first-seen order.
    const byPmu = new Map<string, Evsel[]>();
    for (const m of members) {
      const key = m.pmu?.name ?? "";
      byPmu.set(key, [...(byPmu.get(key) ?? []), m]);
    }
    if (g.events.length > 1 && byPmu.size > 1) regrouped = true;
    for (const list of g.events.length > 1 ? byPmu.values() : members.map((m) => [m])) {
      const leader = evsels.length;
      for (const m of list) evsels.push({ ...m, leader });
    }
  }
  return { evsels, regrouped };
}

/** The counters one event of the string stands for. */
function expand(ev: ParsedEvent, pmus: readonly PerfPmu[]) {
  const def = ev.def;
  const out: { attr: PerfEventAttr; name: string | null; pmu: PerfPmu | null }[] = [];
  if (def.kind === "raw" || def.kind === "numeric") {
    if (def.kind === "numeric" && def.type > 0xffff_ffffn) {
      throw new ParseEventsError(ev.start, "Unrecognized input");
    }
    const attr: PerfEventAttr = {
      type: def.kind === "raw" ? PERF_TYPE_RAW : Number(def.type),
      config: def.config,
    };
    const built: Built = { name: null };
    for (const t of def.terms) {
      if (t.hardcoded === null) {
        throw new ParseEventsError(
          t.err_term,
          "<sysfs term>",
          parse_events_formats_error_string(null),
        );
      }
      configTermCommon(attr, t, built, pmus);
    }
    out.push({ attr, name: built.name, pmu: null });
    return out;
  }
  const name = def.name;
  const nameTerm: Term = {
    hardcoded: null,
    config: name.text,
    num: 1n,
    str: null,
    no_value: true,
    err_term: name.col,
    err_val: 0,
  };
  if (def.kind === "pmu") {
    // parse_events_multi_pmu_add_or_add_pmu(): the PMU, or every PMU the name is a wildcard of.
    const exact = pmus.find((p) => p.name === name.text);
    const matched = exact !== undefined
      ? [exact]
      : pmus.filter((p) => perf_pmu__wildcard_match(p, name.text));
    let firstError: ParseEventsError | null = null;
    for (const pmu of matched) {
      try {
        const r = addPmu(pmu, def.terms, pmus);
        out.push({ ...r, pmu });
      } catch (e) {
        if (!(e instanceof ParseEventsError)) throw e;
        if (exact !== undefined) throw e;
        firstError ??= e;
      }
    }
    if (out.length !== 0) return out;
    if (firstError !== null) throw firstError;
    // Not a PMU: an event name, with terms.
    const hits = pmus.filter((p) => perf_pmu__find_alias(p, name.text) !== undefined);
    if (hits.length === 0) throw badPmu(name);
    for (const pmu of hits) out.push({ ...addPmu(pmu, [nameTerm, ...def.terms], pmus), pmu });
    return out;
  }
  // parse_events_multi_pmu_add(): the alias on every PMU that has it.
  for (const pmu of pmus) {
    if (perf_pmu__find_alias(pmu, name.text) === undefined) continue;
    out.push({ ...addPmu(pmu, [nameTerm], pmus), pmu });
  }
  if (out.length === 0) {
    throw new ParseEventsError(
      name.col,
      "Bad event name",
      `Unable to find event on a PMU of '${name.text}'`,
    );
  }
  return out;
}

/**
 * Mirrors __parse_events_error__print(): the "event syntax error" block for `err` in `event`,
 * for a terminal `columns` wide (perf's default without a terminal: 80). The string is cut with
 * `..` when the error is far in (past column 13) or it does not fit; `\___` sits under the
 * column of the error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parse_events_error__print, ParseEventsError } from "./parse_events.ts";
 *
 * assert.deepEqual(
 *   parse_events_error__print(new ParseEventsError(4, "unknown term 'x' for pmu 'hpm'"), "hpm/x/"),
 *   ["event syntax error: 'hpm/x/'", "                         \\___ unknown term 'x' for pmu 'hpm'"],
 * );
 * ```
 */
export function parse_events_error__print(
  err: ParseEventsError,
  event: string,
  columns = 80,
): string[] {
  const str = "event syntax error: ";
  const width = columns - 2;
  const maxLen = width - str.length;
  const maxErrIdx = 13;
  const cut = err.idx > maxErrIdx ? err.idx - maxErrIdx : 0;
  let buf = [...event.slice(cut, cut + maxLen)];
  if (cut) buf[0] = buf[1] = ".";
  if (event.length - cut > maxLen) {
    buf = buf.slice(0, maxLen);
    buf[maxLen - 1] = buf[maxLen - 2] = ".";
  }
  const idx = str.length + err.idx - cut;
  const lines = [`${str}'${buf.join("")}'`, `${" ".repeat(idx + 1)}\\___ ${err.str}`];
  if (err.help !== null) lines.push("", err.help);
  return lines;
}
