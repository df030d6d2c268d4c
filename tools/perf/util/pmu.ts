/**
 * The perf tool's view of the kernel's PMUs: mirrors `tools/perf/util/pmu.c` and `pmus.c`.
 * A PMU is a directory of `/sys/bus/event_source/devices/`: its `type`, its `format/` fields
 * (`event` → `config:0-14`, several ranges allowed), its `events/` aliases, its `cpumask` (an
 * uncore PMU has one) and `identifier`, plus the pmu-events JSON `sys` events whose `Unit`
 * matches its name and whose `Compat` matches its identifier.
 *
 * It reads sysfs only through the kernel's user side (`sysfs_read`/`sysfs_readdir`), as perf
 * reads files.
 *
 * @module
 */
import { isErrno, type Kernel, sysfs_read, sysfs_readdir } from "@iommu-lab/kernel";
import type { PmuEvent } from "./pmu_events.ts";

/** Where the PMUs are. */
export const EVENT_SOURCE_DEVICES = "/sys/bus/event_source/devices";

/** struct perf_pmu_format: a `format/` file, e.g. `filter_did_gscid` → config1 bits 36..59. */
export interface PmuFormat {
  /** The term name (the file name). */
  readonly name: string;
  /** Which config word: 0 for `config`, 1 for `config1`, ... 3. */
  readonly value: number;
  /** The bits the field occupies, lowest first (value bit i goes to bits[i]). */
  readonly bits: readonly number[];
}

/** struct perf_pmu_alias: a named event of a PMU, from sysfs `events/` or a JSON table. */
export interface PmuAlias {
  /** The event name as its source spells it. */
  readonly name: string;
  /** The terms the name stands for, e.g. `event=0x04`. */
  readonly terms: string;
  /** Short description (JSON events). */
  readonly desc: string | null;
  /** Long description (JSON events). */
  readonly long_desc: string | null;
  /** Topic (JSON events: the file's name). */
  readonly topic: string | null;
  /** The JSON event's PMU name (`uncore_spacemit_ioatc_hpm`); null for sysfs events. */
  readonly pmu_name: string | null;
  /** Hidden from `perf list`. */
  readonly deprecated: boolean;
}

/** struct perf_pmu: what perf knows of one PMU. */
export interface PerfPmu {
  /** The PMU (directory) name. */
  readonly name: string;
  /** attr.type for its events. */
  readonly type: number;
  /** Its `format/` fields, in directory order. */
  readonly formats: readonly PmuFormat[];
  /** Its events: JSON sys events first, then sysfs ones (a name is kept once, any case). */
  readonly aliases: readonly PmuAlias[];
  /** Has a `cpumask`: system-wide counters only, on the CPUs listed. */
  readonly is_uncore: boolean;
  /** A CPU PMU (`cpu`, or one with a `cpus` file). */
  readonly is_core: boolean;
  /** The `identifier` of an uncore PMU, or null. */
  readonly id: string | null;
  /** The CPUs the `cpumask` (or `cpus`) file lists; null when neither exists. */
  readonly cpus: readonly number[] | null;
}

/**
 * Parses a `format/` file (the grammar of pmu.y): `config:0-14`, `config1:15`,
 * `config1:0-3,8-11`; several terms in one file leave the last. Null for what perf could not
 * use (an unknown word, `config4` and beyond).
 */
export function parse_pmu_format(name: string, text: string): PmuFormat | null {
  let last: PmuFormat | null = null;
  for (const term of text.trim().split(/\s+/)) {
    const m = /^config([0-9]*):([0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*)$/.exec(term);
    if (m === null) return null;
    const value = m[1] === "" ? 0 : Number(m[1]);
    if (value > 3) return null;
    const bits = new Set<number>();
    for (const range of m[2].split(",")) {
      const [lo, hi = lo] = range.split("-").map(Number);
      if (hi < lo || hi > 63) return null;
      for (let b = lo; b <= hi; b++) bits.add(b);
    }
    last = { name, value, bits: [...bits].sort((a, b) => a - b) };
  }
  return last;
}

/** Mirrors pmu_format_max_value(): the largest value the field holds. */
export function pmu_format_max_value(format: PmuFormat): bigint {
  return (1n << BigInt(format.bits.length)) - 1n;
}

/**
 * Mirrors pmu_format_value() with `zero` false: sets in `v` the bits of the field where `value`
 * has ones (its bit i at the field's ith bit), leaving the others.
 */
export function pmu_format_value(format: PmuFormat, value: bigint, v: bigint): bigint {
  format.bits.forEach((bit, i) => {
    if ((value >> BigInt(i)) & 1n) v |= 1n << BigInt(bit);
  });
  return v;
}

/**
 * Mirrors pmu_name_len_no_suffix(): the length of `name` without a `_<digits>` suffix (or a hex
 * one of more than two digits), which uncore PMUs of one kind differ by.
 */
export function pmu_name_len_no_suffix(name: string): number {
  let len = name.length;
  let hex = false;
  while (len > 0 && /[0-9a-fA-F]/.test(name[len - 1])) {
    if (!/[0-9]/.test(name[len - 1])) hex = true;
    len--;
  }
  if (len > 0 && len !== name.length && name[len - 1] === "_") {
    if (!hex || name.length - len > 2) return len - 1;
  }
  return name.length;
}

/**
 * Mirrors perf_pmu__match_wildcard(): `pmu_name` is `tok` followed by nothing, or by an optional
 * `_` and a number (hex only with more than two digits).
 */
export function perf_pmu__match_wildcard(pmu_name: string, tok: string): boolean {
  if (!pmu_name.startsWith(tok)) return false;
  let suffix = pmu_name.slice(tok.length);
  if (suffix === "") return true;
  if (suffix[0] === "_") suffix = suffix.slice(1);
  if (!/^[0-9a-fA-F]+$/.test(suffix)) return false;
  return /^[0-9]+$/.test(suffix) || suffix.length > 2;
}

function _noUncore(s: string): string {
  return s.startsWith("uncore_") ? s.slice(7) : s;
}

/**
 * Mirrors perf_pmu__match_wildcard_uncore(): does a JSON event's PMU (`uncore_` prefix ignored,
 * suffix optional, `a,b` naming `aN_bM`) name this PMU?
 */
export function perf_pmu__match_wildcard_uncore(pmu_name: string, to_match: string): boolean {
  let name = _noUncore(pmu_name);
  const match = _noUncore(to_match);
  if (!match.includes(",")) return perf_pmu__match_wildcard(name, match);
  for (const tok of match.split(",").filter((t) => t !== "")) {
    if (!name.startsWith(tok)) return false;
    name = name.slice(tok.length).replace(/^[0-9]*/, "").replace(/^_/, "");
  }
  return name === "";
}

/** fnmatch(3) without flags, for the `*?[` globs perf accepts in PMU names. */
export function fnmatch(pattern: string, s: string): boolean {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        const body = pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
        re += `[${body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  return new RegExp(`${re}$`).test(s);
}

/**
 * Mirrors perf_pmu__wildcard_match(): does `wildcard` (an event's PMU part) name the PMU, with
 * any suffix, or as a glob?
 */
export function perf_pmu__wildcard_match(pmu: PerfPmu, wildcard: string): boolean {
  const tok = _noUncore(wildcard);
  const name = _noUncore(pmu.name);
  return perf_pmu__match_wildcard(name, tok) || (/[*?[]/.test(tok) && fnmatch(tok, name));
}

/**
 * Mirrors pmu_uncore_identifier_match(): `compat` as an extended regular expression matching
 * the whole identifier. An expression that does not compile matches nothing.
 */
export function pmu_uncore_identifier_match(compat: string, id: string): boolean {
  try {
    return new RegExp(`^(?:${compat})$`).test(id);
  } catch {
    return false;
  }
}

function _read(kernel: Kernel, path: string): string | null {
  try {
    return sysfs_read(kernel, path);
  } catch (e) {
    if (isErrno(e)) return null;
    throw e;
  }
}

function _readdir(kernel: Kernel, path: string): string[] {
  try {
    return sysfs_readdir(kernel, path);
  } catch (e) {
    if (isErrno(e)) return [];
    throw e;
  }
}

/** A `cpumask`/`cpus` list (`0`, `0-3,8`) as CPU numbers. */
function _cpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(",").filter((p) => p !== "")) {
    const [lo, hi = lo] = part.split("-").map(Number);
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out;
}

/**
 * Mirrors perf_pmu__lookup(): reads PMU `name` from sysfs and adds the `sysEvents` that match
 * it; null when it has no readable `type`.
 */
export function perf_pmu__lookup(
  kernel: Kernel,
  name: string,
  sysEvents: readonly PmuEvent[],
): PerfPmu | null {
  const dir = `${EVENT_SOURCE_DEVICES}/${name}`;
  const typeText = _read(kernel, `${dir}/type`);
  if (typeText === null || !/^[0-9]+\s*$/.test(typeText)) return null;
  const formats: PmuFormat[] = [];
  for (const f of _readdir(kernel, `${dir}/format`)) {
    const fmt = parse_pmu_format(f, _read(kernel, `${dir}/format/${f}`) ?? "");
    if (fmt !== null) formats.push(fmt);
  }
  const cpumask = _read(kernel, `${dir}/cpumask`);
  const cpusFile = _read(kernel, `${dir}/cpus`);
  const is_uncore = cpumask !== null;
  const id = is_uncore ? _read(kernel, `${dir}/identifier`)?.replace(/\n$/, "") ?? null : null;
  const aliases: PmuAlias[] = [];
  const have = new Set<string>();
  const add = (a: PmuAlias) => {
    if (have.has(a.name.toLowerCase())) return;
    have.add(a.name.toLowerCase());
    aliases.push(a);
  };
  // pmu_add_sys_aliases(): JSON events whose Unit names this PMU and Compat its identifier.
  if (id !== null) {
    for (const pe of sysEvents) {
      if (pe.compat === null || !perf_pmu__match_wildcard_uncore(name, pe.pmu)) continue;
      if (!pmu_uncore_identifier_match(pe.compat, id)) continue;
      add({
        name: pe.name,
        terms: pe.event,
        desc: pe.desc,
        long_desc: pe.long_desc,
        topic: pe.topic,
        pmu_name: pe.pmu,
        deprecated: pe.deprecated,
      });
    }
  }
  for (const ev of _readdir(kernel, `${dir}/events`)) {
    if (/\.(unit|scale|per-pkg|snapshot)$/.test(ev)) continue;
    const terms = _read(kernel, `${dir}/events/${ev}`);
    if (terms === null) continue;
    add({
      name: ev,
      terms: terms.trim(),
      desc: null,
      long_desc: null,
      topic: null,
      pmu_name: null,
      deprecated: false,
    });
  }
  return {
    name,
    type: Number(typeText),
    formats,
    aliases,
    is_uncore,
    is_core: name === "cpu" || cpusFile !== null,
    id,
    cpus: cpumask !== null ? _cpuList(cpumask) : cpusFile !== null ? _cpuList(cpusFile) : null,
  };
}

/**
 * Mirrors pmus_cmp(): by name, and PMUs of one name with `_N` suffixes by the number N (so
 * `x_2` comes before `x_10`).
 */
export function pmus_cmp(a: string, b: string): number {
  const la = pmu_name_len_no_suffix(a);
  const lb = pmu_name_len_no_suffix(b);
  const n = Math.min(la, lb);
  const ret = a.slice(0, n) < b.slice(0, n) ? -1 : a.slice(0, n) > b.slice(0, n) ? 1 : 0;
  if (la !== lb || ret !== 0 || la === 0) return ret !== 0 ? ret : la - lb;
  const num = (s: string, l: number) => {
    const digits = s.slice(l + 1);
    return l === s.length ? 0 : parseInt(digits, /^[0-9]+$/.test(digits) ? 10 : 16);
  };
  return num(a, la) - num(b, lb);
}

/** Mirrors perf_pmus__scan(): every PMU of the kernel, in {@linkcode pmus_cmp} order. */
export function perf_pmus(kernel: Kernel, sysEvents: readonly PmuEvent[]): PerfPmu[] {
  const out: PerfPmu[] = [];
  for (const name of _readdir(kernel, EVENT_SOURCE_DEVICES)) {
    const pmu = perf_pmu__lookup(kernel, name, sysEvents);
    if (pmu !== null) out.push(pmu);
  }
  return out.sort((a, b) => pmus_cmp(a.name, b.name));
}

/** Mirrors pmu_find_format(). */
export function perf_pmu__find_format(pmu: PerfPmu, name: string): PmuFormat | undefined {
  return pmu.formats.find((f) => f.name === name);
}

/** Mirrors perf_pmu__find_alias(): by name, any case. */
export function perf_pmu__find_alias(pmu: PerfPmu, name: string): PmuAlias | undefined {
  const lower = name.toLowerCase();
  return pmu.aliases.find((a) => a.name.toLowerCase() === lower);
}
