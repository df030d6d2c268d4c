import assert from "node:assert/strict";
import {
  parse_events,
  parse_events_error__print,
  parse_events_terms,
  ParseEventsError,
} from "./parse_events.ts";
import { parse_pmu_format, type PerfPmu, type PmuAlias } from "./pmu.ts";

function alias(name: string, terms: string): PmuAlias {
  return {
    name,
    terms,
    desc: null,
    long_desc: null,
    topic: null,
    pmu_name: null,
    deprecated: false,
  };
}

/** A PMU shaped like the v5 RISC-V IOMMU HPM (filters in config1). */
function hpm(name: string, type: number, extra: Partial<PerfPmu> = {}): PerfPmu {
  const f = (n: string, t: string) => parse_pmu_format(n, t)!;
  return {
    name,
    type,
    is_uncore: true,
    is_core: false,
    id: "riscv,iommu",
    cpus: [0],
    formats: [
      f("event", "config:0-14"),
      f("filter_pid_pscid", "config1:16-35"),
      f("filter_did_gscid", "config1:36-59"),
      f("filter_pv_pscv", "config1:60"),
      f("filter_dv_gscv", "config1:61"),
      f("filter_idt", "config1:62"),
      f("filter_dmask", "config1:15"),
    ],
    aliases: [
      alias("cycles", "event=0x00"),
      alias("tlb_mis", "event=0x04"),
      alias("dd_walk", "event=0x05"),
    ],
    ...extra,
  };
}

const PMUS = [
  hpm("riscv_iommu_hpm_0", 8),
  hpm("spacemit_ioats_hpm_0", 9),
  hpm("spacemit_ioatc_hpm_0", 10),
  hpm("spacemit_ioatc_hpm_1", 11),
];

/** The error parse_events() throws for `str`. */
function error(str: string, pmus = PMUS): ParseEventsError {
  try {
    parse_events(str, pmus);
  } catch (e) {
    if (e instanceof ParseEventsError) return e;
    throw e;
  }
  assert.fail(`${str} parsed`);
}

Deno.test("parse_events: the seed's event: alias dd_walk and a raw config1 filter", () => {
  const { evsels } = parse_events("spacemit_ioats_hpm_0/dd_walk,config1=0x20c0010000000000/", PMUS);
  assert.equal(evsels.length, 1);
  assert.equal(evsels[0].name, "spacemit_ioats_hpm_0/dd_walk,config1=0x20c0010000000000/");
  assert.deepEqual(evsels[0].attr, { type: 9, config: 5n, config1: 0x20c0010000000000n });
  assert.equal(evsels[0].pmu?.name, "spacemit_ioats_hpm_0");
});

Deno.test("parse_events: format fields scatter values into their bits, filters into config1", () => {
  const { evsels } = parse_events(
    "riscv_iommu_hpm_0/event=0x1,filter_did_gscid=0x10,filter_dv_gscv=1,filter_dmask/",
    PMUS,
  );
  assert.deepEqual(evsels[0].attr, {
    type: 8,
    config: 1n,
    config1: (0x10n << 36n) | (1n << 61n) | (1n << 15n),
  });
  // A multi-range field: value bit i goes to the ith bit of the ranges, lowest first.
  const pmu = hpm("m", 20, { formats: [parse_pmu_format("split", "config1:0-3,8-11")!] });
  const r = parse_events("m/split=0xab/", [pmu]);
  assert.equal(r.evsels[0].attr.config1, 0xa0bn);
  const e = error("m/split=256/", [pmu]);
  assert.deepEqual([e.idx, e.str], [8, "value too big for format (split), maximum is 255"]);
});

Deno.test("parse_events: aliases as a bare term, as event=<alias>, and searched on every PMU", () => {
  assert.equal(parse_events("riscv_iommu_hpm_0/event=tlb_mis/", PMUS).evsels[0].attr.config, 4n);
  const { evsels } = parse_events("tlb_mis", PMUS);
  assert.deepEqual(evsels.map((e) => e.pmu?.name), PMUS.map((p) => p.name));
  assert.ok(evsels.every((e) => e.name === "tlb_mis" && e.counter === 0 && e.attr.config === 4n));
  // Terms after an alias add to it (bits OR, as perf's zero=false formatting does).
  assert.equal(parse_events("riscv_iommu_hpm_0/tlb_mis,event=1/", PMUS).evsels[0].attr.config, 5n);
  const bad = error("foo_event");
  assert.deepEqual([bad.idx, bad.str, bad.help], [
    0,
    "Bad event name",
    "Unable to find event on a PMU of 'foo_event'",
  ]);
});

Deno.test("parse_events: a PMU name without its _N suffix is every such PMU, counted as one", () => {
  const { evsels } = parse_events("spacemit_ioatc_hpm/tlb_mis/", PMUS);
  assert.deepEqual(evsels.map((e) => e.pmu?.name), [
    "spacemit_ioatc_hpm_0",
    "spacemit_ioatc_hpm_1",
  ]);
  assert.deepEqual(evsels.map((e) => [e.counter, e.leader]), [[0, 0], [0, 1]]);
  assert.deepEqual(parse_events("spacemit_ioat?_hpm_0//", PMUS).evsels.map((e) => e.pmu?.name), [
    "spacemit_ioats_hpm_0",
    "spacemit_ioatc_hpm_0",
  ]);
});

Deno.test("parse_events: raw rNNN, type:config, and their static terms", () => {
  assert.deepEqual(parse_events("r1a", PMUS).evsels[0].attr, { type: 4, config: 0x1an });
  // As perf's lexer does: r followed by hex digits only is raw, even if it spells a word.
  assert.deepEqual(parse_events("rdead", PMUS).evsels[0].attr, { type: 4, config: 0xdeadn });
  assert.deepEqual(parse_events("9:0x4/config1=3/", PMUS).evsels[0].attr, {
    type: 9,
    config: 4n,
    config1: 3n,
  });
  const e = error("r1a/foo=1/");
  assert.deepEqual([e.idx, e.str], [4, "<sysfs term>"]);
});

Deno.test("parse_events: static terms — name, period, config words; others not usable in perf stat", () => {
  const { evsels } = parse_events("riscv_iommu_hpm_0/tlb_mis,name=misses,period=1000/", PMUS);
  assert.equal(evsels[0].name, "misses");
  assert.equal(evsels[0].attr.sample_period, 1000n);
  const cases: [string, number, string][] = [
    ["riscv_iommu_hpm_0/freq=10/", -1, "'freq' is not usable in 'perf stat'"],
    ["riscv_iommu_hpm_0/percore=2/", 26, "expected 0 or 1"],
    ["riscv_iommu_hpm_0/cpu=1/", 22, "too big"],
    ["riscv_iommu_hpm_0/cpu=x9/", 22, "not a valid PMU or CPU number"],
    ["riscv_iommu_hpm_0/name=1/", 23, "expected string value"],
    ["riscv_iommu_hpm_0/config1=abc/", 26, "expected numeric value"],
    ["riscv_iommu_hpm_0/event=zz/", 24, "expected numeric value"],
    ["riscv_iommu_hpm_0/event/", 0, "no value assigned for term"],
    ["riscv_iommu_hpm_0/event=0x8000/", 24, "value too big for format (event), maximum is 32767"],
  ];
  for (const [str, idx, msg] of cases) {
    const e = error(str);
    assert.deepEqual([e.idx, e.str], [idx, msg], str);
  }
  // A one-bit field without a value is 1.
  assert.equal(
    parse_events("riscv_iommu_hpm_0/filter_idt/", PMUS).evsels[0].attr.config1,
    1n << 62n,
  );
});

Deno.test("parse_events: an unknown term names the PMU and lists its formats then the static terms", () => {
  const e = error("riscv_iommu_hpm_0/tlb_miss/");
  assert.equal(e.idx, 18);
  assert.equal(e.str, "unknown term 'tlb_miss' for pmu 'riscv_iommu_hpm_0'");
  assert.equal(
    e.help,
    "valid terms: event,filter_pid_pscid,filter_did_gscid,filter_pv_pscv,filter_dv_gscv," +
      "filter_idt,filter_dmask,config,config1,config2,config3,name,period,percore,metric-id,cpu",
  );
  const bad = error("nopmu/event=1/");
  assert.deepEqual([bad.idx, bad.str, bad.help], [
    0,
    "Bad event or PMU",
    "Unable to find PMU or event on a PMU of 'nopmu'",
  ]);
  // Inside a group the column is the term's, in the whole string.
  assert.equal(error("{riscv_iommu_hpm_0/cycles/,riscv_iommu_hpm_0/nope/}").idx, 45);
});

Deno.test("parse_events: groups, group modifiers, and regrouping of events of several PMUs", () => {
  const r = parse_events("{riscv_iommu_hpm_0/cycles/,riscv_iommu_hpm_0/tlb_mis/}:u", PMUS);
  assert.deepEqual(r.evsels.map((e) => e.leader), [0, 0]);
  assert.deepEqual(r.evsels.map((e) => e.name), [
    "riscv_iommu_hpm_0/cycles/",
    "riscv_iommu_hpm_0/tlb_mis/",
  ]);
  assert.ok(
    r.evsels.every((e) => e.attr.exclude_kernel && e.attr.exclude_hv && !e.attr.exclude_user),
  );
  assert.equal(r.regrouped, false);
  const mixed = parse_events(
    "{riscv_iommu_hpm_0/cycles/,spacemit_ioats_hpm_0/cycles/,riscv_iommu_hpm_0/tlb_mis/},r1",
    PMUS,
  );
  assert.equal(mixed.regrouped, true);
  assert.deepEqual(mixed.evsels.map((e) => [e.pmu?.name ?? "-", e.leader, e.counter]), [
    ["riscv_iommu_hpm_0", 0, 0],
    ["riscv_iommu_hpm_0", 0, 2],
    ["spacemit_ioats_hpm_0", 2, 1],
    ["-", 3, 3],
  ]);
});

Deno.test("parse_events: modifiers u k h G H I D e, as perf combines them", () => {
  const attr = (s: string) => parse_events(s, PMUS).evsels[0].attr;
  assert.deepEqual(
    ["exclude_user", "exclude_kernel", "exclude_hv"].map((k) =>
      attr("tlb_mis:uk")[k as "exclude_hv"]
    ),
    [false, false, true],
  );
  assert.equal(attr("riscv_iommu_hpm_0/tlb_mis/k").exclude_user, true);
  assert.equal(attr("riscv_iommu_hpm_0/tlb_mis/G").exclude_host, true);
  assert.equal(attr("riscv_iommu_hpm_0/tlb_mis/G").exclude_guest, false);
  assert.equal(attr("r1:I").exclude_idle, true);
  assert.equal(attr("riscv_iommu_hpm_0/tlb_mis/D").pinned, true);
  assert.equal(attr("{r1,r2}:e").exclusive, true);
  assert.equal(parse_events("tlb_mis:", PMUS).evsels.length, 4);
  const e = error("riscv_iommu_hpm_0/tlb_mis/up");
  assert.deepEqual([e.idx, e.str], [27, "modifier 'p' is not supported"]);
});

Deno.test("parse_events: syntax errors are 'Unrecognized input' at the token before the bad one", () => {
  const cases: [string, number][] = [
    ["", 0],
    ["riscv_iommu_hpm_0/event=1", 24],
    ["riscv_iommu_hpm_0/event=1/,", 26],
    ["{r1,r2", 4],
    ["r1,,r2", 2],
    ["riscv_iommu_hpm_0/=1/", 17],
    ["riscv_iommu_hpm_0/event=99999999999999999999/", 23],
    ["tlb_mis#", 0],
  ];
  for (const [str, idx] of cases) {
    const e = error(str);
    assert.deepEqual([e.str, e.idx], ["Unrecognized input", idx], JSON.stringify(str));
  }
});

Deno.test("parse_events_terms: an alias's terms; bad ones throw", () => {
  assert.deepEqual(
    parse_events_terms("event=0x04,config1=5").map((t) => [t.hardcoded, t.config, t.num]),
    [[null, "event", 4n], ["config1", "config1", 5n]],
  );
  assert.throws(() => parse_events_terms("event=,"), ParseEventsError);
});

Deno.test("parse_events_error__print: the caret sits under the bad term; long strings are cut", () => {
  const event = "riscv_iommu_hpm_0/tlb_miss/";
  const lines = parse_events_error__print(error(event), event);
  assert.deepEqual(lines, [
    "event syntax error: '..ommu_hpm_0/tlb_miss/'",
    "                                  \\___ unknown term 'tlb_miss' for pmu 'riscv_iommu_hpm_0'",
    "",
    "valid terms: event,filter_pid_pscid,filter_did_gscid,filter_pv_pscv,filter_dv_gscv," +
    "filter_idt,filter_dmask,config,config1,config2,config3,name,period,percore,metric-id,cpu",
  ]);
  // The backslash is under the term's first character.
  assert.equal(lines[1].indexOf("\\"), lines[0].indexOf("tlb_miss"));
  // A string longer than the terminal ends in "..".
  const long = `r1,${"x".repeat(100)}`;
  const [first, second] = parse_events_error__print(
    new ParseEventsError(3, "Bad event name"),
    long,
  );
  assert.equal(first.length, 80 - 2 + 2);
  assert.ok(first.endsWith("..'"));
  assert.equal(second, `${" ".repeat(24)}\\___ Bad event name`);
  // An error before the string (idx -1) points at the opening quote.
  assert.equal(
    parse_events_error__print(new ParseEventsError(-1, "x"), "ab")[1].indexOf("\\"),
    "event syntax error: ".length,
  );
});
