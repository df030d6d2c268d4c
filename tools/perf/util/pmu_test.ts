import assert from "node:assert/strict";
import { Kernel } from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import { perf_pmu_register } from "@iommu-lab/perf";
import { TestPmu } from "@iommu-lab/perf/testing";
import { jsonEvent, pmu_sys_events } from "./pmu_events.ts";
import {
  fnmatch,
  parse_pmu_format,
  perf_pmu__match_wildcard,
  perf_pmu__match_wildcard_uncore,
  perf_pmus,
  pmu_format_max_value,
  pmu_format_value,
  pmu_name_len_no_suffix,
  pmu_uncore_identifier_match,
} from "./pmu.ts";

Deno.test("parse_pmu_format: pmu.y's config[N]:bits with ranges and lists", () => {
  assert.deepEqual(parse_pmu_format("event", "config:0-14\n"), {
    name: "event",
    value: 0,
    bits: [...Array(15).keys()],
  });
  assert.deepEqual(parse_pmu_format("idt", "config1:62"), { name: "idt", value: 1, bits: [62] });
  assert.deepEqual(parse_pmu_format("x", "config2:0-1,8,10-11")?.bits, [0, 1, 8, 10, 11]);
  // The last of several terms wins, as perf_pmu_format__set_value() overwrites.
  assert.deepEqual(parse_pmu_format("y", "config:0-3 config3:4")?.value, 3);
  for (const bad of ["config4:0", "umask:0-7", "config:7-3", "config:64", "config"]) {
    assert.equal(parse_pmu_format("bad", bad), null, bad);
  }
});

Deno.test("pmu_format_value: value bits fill the field's bits in order; max is 2^width-1", () => {
  const f = parse_pmu_format("f", "config1:4-5,60")!;
  assert.equal(pmu_format_max_value(f), 7n);
  assert.equal(pmu_format_value(f, 0b101n, 0n), (1n << 4n) | (1n << 60n));
  assert.equal(pmu_format_value(f, 0b010n, 1n), 1n | (1n << 5n));
});

Deno.test("PMU name suffixes and wildcards as perf matches them", () => {
  assert.equal(pmu_name_len_no_suffix("spacemit_ioatc_hpm_12"), "spacemit_ioatc_hpm".length);
  assert.equal(pmu_name_len_no_suffix("cpum_cf"), 7); // hex 'cf': two digits are not a suffix
  assert.equal(pmu_name_len_no_suffix("pmu_abc"), 3);
  assert.equal(pmu_name_len_no_suffix("riscv_iommu_hpm"), "riscv_iommu_hpm".length);
  assert.ok(perf_pmu__match_wildcard("spacemit_ioatc_hpm_3", "spacemit_ioatc_hpm"));
  assert.ok(perf_pmu__match_wildcard("spacemit_ioatc_hpm_3", "spacemit_ioatc_hpm_3"));
  assert.ok(!perf_pmu__match_wildcard("spacemit_ioatc_hpm_3", "spacemit_ioats_hpm"));
  assert.ok(!perf_pmu__match_wildcard("spacemit_ioatc_hpm_x", "spacemit_ioatc_hpm"));
  assert.ok(perf_pmu__match_wildcard_uncore("spacemit_ioats_hpm_0", "uncore_spacemit_ioats_hpm"));
  assert.ok(perf_pmu__match_wildcard_uncore("hisi_sccl1_ddrc0", "hisi_sccl,ddrc"));
  assert.ok(fnmatch("spacemit_ioat?_hpm_[01]", "spacemit_ioatc_hpm_1"));
  assert.ok(!fnmatch("spacemit_*_hpm_[!01]", "spacemit_ioatc_hpm_1"));
  assert.ok(pmu_uncore_identifier_match("spacemit,t100", "spacemit,t100"));
  assert.ok(pmu_uncore_identifier_match("spacemit,t1(00|50)", "spacemit,t150"));
  assert.ok(!pmu_uncore_identifier_match("spacemit,t100", "spacemit,t1000"));
  assert.ok(!pmu_uncore_identifier_match("spacemit,(", "spacemit,("));
});

Deno.test("pmu-events: our T100 JSON, as jevents encodes it", () => {
  const evs = pmu_sys_events();
  assert.deepEqual(evs.map((e) => [e.pmu, e.name, e.event, e.topic]), [
    ["uncore_spacemit_ioatc_hpm", "ioatc_tlb_hit", "event=0x40", "ioatc"],
    ["uncore_spacemit_ioatc_hpm", "ioatc_tlb_miss", "event=0x41", "ioatc"],
    ["uncore_spacemit_ioatc_hpm", "ioatc_tlb_fill", "event=0x42", "ioatc"],
    ["uncore_spacemit_ioats_hpm", "ioats_ddtc_hit", "event=0x40", "ioats"],
    ["uncore_spacemit_ioats_hpm", "ioats_ddtc_miss", "event=0x41", "ioats"],
    ["uncore_spacemit_ioats_hpm", "ioats_pdtc_hit", "event=0x42", "ioats"],
    ["uncore_spacemit_ioats_hpm", "ioats_pdtc_miss", "event=0x43", "ioats"],
  ]);
  assert.ok(evs.every((e) => e.compat === "spacemit,t100" && e.desc && e.long_desc));
  assert.ok(evs.every((e) => !e.desc!.endsWith(".") && !e.long_desc!.endsWith(".")));
});

Deno.test("pmu-events: jsonEvent's encodings and refusals", () => {
  const e = jsonEvent({ EventName: "A.B", EventCode: "4", BriefDescription: "x.  " }, "t-u", "f");
  assert.deepEqual([e.name, e.event, e.desc, e.pmu, e.topic], [
    "a.b",
    "event=4",
    "x",
    "default_core",
    "t u",
  ]);
  assert.equal(
    jsonEvent({ EventName: "c", ConfigCode: "0x1F", Filter: "umask=1" }, "t", "f").event,
    "config=0x1f,umask=1",
  );
  assert.throws(() => jsonEvent({ EventCode: "1" }, "t", "f.json"), SyntaxError);
  assert.throws(
    () => jsonEvent({ EventName: "x", EventCode: "zz" }, "t", "f.json"),
    /f.json: EventCode/,
  );
});

Deno.test("perf_pmus: formats, aliases, cpumask and identifier from sysfs; sys JSON events by Unit and Compat", () => {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
  const source = () => 0n;
  const reg = (name: string, identifier: string | undefined) =>
    perf_pmu_register(
      kernel,
      new TestPmu({
        source,
        identifier,
        formats: { filter_dmask: "config1:15" },
        events: { tlb_mis: "event=0x04", IOATC_TLB_HIT: "event=0x99" },
      }),
      name,
      -1,
    );
  reg("spacemit_ioatc_hpm_1", "spacemit,t100");
  reg("spacemit_ioats_hpm_0", "spacemit,t100");
  reg("riscv_iommu_hpm_0", "riscv,iommu");
  reg("spacemit_ioatc_hpm_2", "other,soc");
  reg("spacemit_ioatc_hpm_10", "spacemit,t100");
  // Sorted by name, and by number among PMUs of one name (pmus_cmp()).
  const pmus = perf_pmus(kernel, pmu_sys_events());
  assert.deepEqual(pmus.map((p) => [p.name, p.type, p.is_uncore, p.id, p.cpus]), [
    ["riscv_iommu_hpm_0", 8, true, "riscv,iommu", [0]],
    ["spacemit_ioatc_hpm_1", 6, true, "spacemit,t100", [0]],
    ["spacemit_ioatc_hpm_2", 9, true, "other,soc", [0]],
    ["spacemit_ioatc_hpm_10", 10, true, "spacemit,t100", [0]],
    ["spacemit_ioats_hpm_0", 7, true, "spacemit,t100", [0]],
  ]);
  const [riscv, ioatc1, other, , ioats] = pmus;
  assert.deepEqual(ioatc1.formats.map((f) => f.name), ["event", "filter_dmask"]);
  // JSON first; a sysfs event of the same name (any case) is not added again.
  assert.deepEqual(ioatc1.aliases.map((a) => [a.name, a.terms]), [
    ["ioatc_tlb_hit", "event=0x40"],
    ["ioatc_tlb_miss", "event=0x41"],
    ["ioatc_tlb_fill", "event=0x42"],
    ["tlb_mis", "event=0x04"],
  ]);
  assert.deepEqual(ioats.aliases.map((a) => a.name).slice(0, 4), [
    "ioats_ddtc_hit",
    "ioats_ddtc_miss",
    "ioats_pdtc_hit",
    "ioats_pdtc_miss",
  ]);
  // Unit matches but Compat does not, or neither: sysfs events only.
  assert.deepEqual(riscv.aliases.map((a) => a.name), ["tlb_mis", "IOATC_TLB_HIT"]);
  assert.deepEqual(other.aliases.map((a) => a.name), ["tlb_mis", "IOATC_TLB_HIT"]);
});
