// End to end on a booted machine: the IOMMU driver creates an auxiliary device per HPM block, the
// perf driver registers a PMU per block, and perf events count what the silicon's HPM counted
// while the PCIe DMA engines' requests went through it. Every count is checked against a count
// the test keeps itself: its own observer of the translator's events (or of the requests
// reaching the T100), filtered by its own code.
import assert from "node:assert/strict";
import {
  type DmaEngine,
  type InboundRequest,
  REQ_UNTRANSLATED,
  type TranslationResult,
} from "@iommu-lab/hw";
import {
  device_release_driver,
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
  isErrno,
  type Kernel,
  sysfs_read,
  sysfs_readdir,
  sysfs_write,
} from "@iommu-lab/kernel";
import { iommu_get_domain_for_dev } from "@iommu-lab/iommu";
import {
  perf_event_disable,
  perf_event_enable,
  perf_event_open,
  perf_event_read_value,
  perf_event_release_kernel,
  PERF_EVENT_STATE_REVOKED,
  type PerfEvent,
  type PerfEventAttr,
} from "@iommu-lab/perf";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { hpmPart } from "@iommu-lab/riscv-iommu-hpm";
import { type DmaChan, Machine, type MachineOptions, VIRT_IOMMU_IOATC_IRQ } from "./mod.ts";

const DEVICES = "/sys/bus/event_source/devices";
const URQ = 1, TLB_MISS = 4, DD_WALK = 5, S_WALK = 7;
const DV = 1n << 61n, PV = 1n << 60n, IDT = 1n << 62n, DMASK = 1n << 15n;
const did = (id: number) => DV | BigInt(id) << 36n;

function boot(opts: MachineOptions = {}): Machine {
  return Machine.boot({ ...opts, parts: [hpmPart()] });
}

function pmus(m: Machine): string[] {
  try {
    return sysfs_readdir(m.kernel, DEVICES).sort();
  } catch (e) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
}

function read(k: Kernel, path: string): string {
  return sysfs_read(k, `${DEVICES}/${path}`);
}

/** A CPU-wide counting event of PMU `pmu`. */
function open(m: Machine, pmu: string, attr: Omit<PerfEventAttr, "type">, leader?: PerfEvent) {
  const type = Number(read(m.kernel, `${pmu}/type`));
  return perf_event_open(m.kernel, { ...attr, type }, -1, 0, leader ?? null);
}

function count(ev: PerfEvent): bigint {
  return perf_event_read_value(ev).count;
}

/** What the translator of the machine's IOMMU (a T100's IOATS) reported, as the test saw it. */
interface Seen {
  id: number;
  did: number;
  pscidValid: boolean;
  pscid: number;
}

function observe(m: Machine): Seen[] {
  const seen: Seen[] = [];
  m.silicon.iommu!.translator.addEventObserver({
    count(id, did, _pv, _pid, _gv, _gscid, pscidValid, pscid) {
      seen.push({ id, did, pscidValid, pscid });
    },
  });
  return seen;
}

/** Maps `pages` pages and copies them there and back `times` times on `chan`. */
function copy(chan: DmaChan, pages: number, times = 1): void {
  const k = chan.dev.kernel;
  const buf = k.pages.alloc(Math.ceil(Math.log2(2 * pages)));
  const len = pages * 4096;
  const iova = dma_map_page(chan.dev, buf, 0, 2 * len, DMA_BIDIRECTIONAL);
  for (let i = 0; i < times; i++) {
    assert.equal(chan.memcpy(iova + len, iova, len).status, "complete");
    assert.equal(chan.memcpy(iova, iova + len, len).status, "complete");
  }
  dma_unmap_page(chan.dev, iova, 2 * len, DMA_BIDIRECTIONAL);
  k.pages.free(buf, Math.ceil(Math.log2(2 * pages)));
}

/** The requester ID of DMA engine `n`'s function 0 (segment 0). */
function rid(m: Machine, n: number): number {
  return m.silicon.dmaEngines[n].fn.bdf;
}

Deno.test("riscv_iommu_hpm: a riscv,iommu gets riscv_iommu_hpm_0 with v5's sysfs: formats in config/config1, the standard events, cpumask, identifier", () => {
  const m = boot();
  const k = m.kernel;
  assert.deepEqual(pmus(m), ["riscv_iommu_hpm_0"]);
  assert.ok(m.dmesg.some((l) =>
    l.endsWith(
      "riscv,iommu 3010000.iommu: riscv_iommu_hpm auxiliary device created",
    )
  ));
  assert.ok(
    m.dmesg.some((l) =>
      /riscv_iommu_hpm iommu\.riscv_iommu_hpm\.0: HPM: Registered riscv_iommu_hpm_0 \(31 counters, IRQ \d+, per-counter filter\)$/
        .test(l)
    ),
  );
  const formats = Object.fromEntries(
    sysfs_readdir(k, `${DEVICES}/riscv_iommu_hpm_0/format`).map((
      f,
    ) => [f, read(k, `riscv_iommu_hpm_0/format/${f}`)]),
  );
  assert.deepEqual(formats, {
    event: "config:0-14\n",
    filter_pid_pscid: "config1:16-35\n",
    filter_did_gscid: "config1:36-59\n",
    filter_pv_pscv: "config1:60\n",
    filter_dv_gscv: "config1:61\n",
    filter_idt: "config1:62\n",
    filter_dmask: "config1:15\n",
  });
  const events = sysfs_readdir(k, `${DEVICES}/riscv_iommu_hpm_0/events`);
  assert.deepEqual(events, [
    "cycles",
    "untrans_rq",
    "trans_rq",
    "ats_rq",
    "tlb_mis",
    "dd_walk",
    "pd_walk",
    "s_walk",
    "g_walk",
  ]);
  assert.deepEqual(
    events.map((e) => read(k, `riscv_iommu_hpm_0/events/${e}`)),
    [0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => `event=0x0${i}\n`),
  );
  assert.equal(read(k, "riscv_iommu_hpm_0/cpumask"), "0\n");
  assert.equal(read(k, "riscv_iommu_hpm_0/identifier"), "riscv,iommu\n");
  assert.equal(read(k, "riscv_iommu_hpm_0/global_filter"), "false\n");
  // No vendor event on a plain RISC-V IOMMU: the T100's IDs are refused.
  assert.throws(() => open(m, "riscv_iommu_hpm_0", { config: 0x41n }), /EINVAL/);
});

Deno.test("riscv_iommu_hpm: a SpacemiT T100 gets spacemit_ioats_hpm_0 and spacemit_ioatc_hpm_<id> per IOATC, ids from one allocator, IOATC PMIV on its own wire", () => {
  const m = boot({ t100: { ioatcs: 2 } });
  const k = m.kernel;
  assert.deepEqual(pmus(m), [
    "spacemit_ioatc_hpm_1",
    "spacemit_ioatc_hpm_2",
    "spacemit_ioats_hpm_0",
  ]);
  for (const p of pmus(m)) {
    assert.equal(read(k, `${p}/identifier`), "spacemit,t100\n");
    assert.equal(read(k, `${p}/global_filter`), "true\n");
  }
  assert.deepEqual(sysfs_readdir(k, `${DEVICES}/spacemit_ioatc_hpm_1/events`), [
    "cycles",
    "untrans_rq",
    "trans_rq",
    "tlb_mis",
  ]);
  assert.equal(sysfs_readdir(k, `${DEVICES}/spacemit_ioats_hpm_0/events`).length, 9);
  // IOATC i's interrupt is the node's interrupt 4 + i: APLIC source 40 + i.
  for (const i of [0, 1]) {
    const line = m.dmesg.find((l) => l.includes(`Registered spacemit_ioatc_hpm_${i + 1} `))!;
    const irq = Number(/IRQ (\d+)/.exec(line)![1]);
    assert.equal(k.irq.desc(irq)?.hwirq, VIRT_IOMMU_IOATC_IRQ + i, line);
  }
});

Deno.test("riscv_iommu_hpm: without capabilities.HPM the feature is skipped with one line and no PMU", () => {
  const m = boot({ caps: { hpm: false } });
  assert.ok(
    m.dmesg.some((l) => l.endsWith("riscv,iommu 3010000.iommu: hpm disabled: no capabilities.HPM")),
  );
  assert.deepEqual(pmus(m), []);
  copy(m.dmaChannel(0), 2);
});

Deno.test("riscv_iommu_hpm: a PCI IOMMU's PMU has an empty identifier (no device-tree node)", () => {
  const m = boot({ iommuBus: "pci" });
  assert.deepEqual(pmus(m), ["riscv_iommu_hpm_0"]);
  assert.equal(read(m.kernel, "riscv_iommu_hpm_0/identifier"), "");
});

Deno.test("riscv_iommu_hpm: the standard events count what the translator reported", () => {
  const m = boot({ dmaEngines: 2 });
  const seen = observe(m);
  const evs = [URQ, TLB_MISS, DD_WALK, S_WALK].map((id) =>
    open(m, "riscv_iommu_hpm_0", { config: BigInt(id) })
  );
  copy(m.dmaChannel(0), 8, 2);
  copy(m.dmaChannel(4), 4);
  const want = [URQ, TLB_MISS, DD_WALK, S_WALK].map((id) =>
    BigInt(seen.filter((s) => s.id === id).length)
  );
  assert.ok(want.every((n) => n > 0n), `${want}`);
  assert.deepEqual(evs.map(count), want);
});

Deno.test("riscv_iommu_hpm: filters: one device by DID, a PCI bus and a slot pair by DMASK, a PSCID with IDT=1", () => {
  const m = boot({ dmaEngines: 3, dmaChannels: 1 });
  const seen = observe(m);
  const [a, b, c] = [0, 1, 2].map((n) => m.dmaChannel(n));
  const pscid = (chan: DmaChan) => (iommu_get_domain_for_dev(chan.dev) as RiscvIommuDomain).pscid;
  const pmu = "riscv_iommu_hpm_0";
  const byDid = open(m, pmu, { config: BigInt(URQ), config1: did(rid(m, 0)) });
  // DID 0x007f with DMASK: bits 7:0 ignored, bus 0; DID 0x0017: bits 3:0 ignored, slots 2-3.
  const bus0 = open(m, pmu, { config: BigInt(URQ), config1: did(0x007f) | DMASK });
  const slots23 = open(m, pmu, { config: BigInt(URQ), config1: did(0x0017) | DMASK });
  const bus1 = open(m, pmu, { config: BigInt(URQ), config1: did(0x017f) | DMASK });
  const byPscid = open(m, pmu, {
    config: BigInt(TLB_MISS),
    config1: IDT | PV | BigInt(pscid(b)) << 16n,
  });
  copy(a, 4);
  copy(b, 8, 2);
  copy(c, 2, 3);
  const urq = seen.filter((s) => s.id === URQ);
  const n = (xs: Seen[]) => BigInt(xs.length);
  assert.equal(count(byDid), n(urq.filter((s) => s.did === rid(m, 0))));
  assert.equal(count(bus0), n(urq.filter((s) => s.did >> 8 === 0)));
  assert.equal(count(bus0), n(urq), "every engine is on bus 0");
  const slot = (s: Seen) => (s.did >> 3) & 0x1f;
  assert.equal(count(slots23), n(urq.filter((s) => slot(s) === 2 || slot(s) === 3)));
  assert.ok(count(slots23) < count(bus0), "engine 2 (slot 4) is left out");
  assert.equal(count(bus1), 0n);
  const misses = seen.filter((s) => s.id === TLB_MISS && s.pscidValid && s.pscid === pscid(b));
  assert.ok(misses.length > 0);
  assert.equal(count(byPscid), n(misses));
  assert.notEqual(pscid(a), pscid(b));
});

/** Counts a T100's IOATC-fronted untranslated requests from `dev` as they reach the T100. */
function requestsInto(m: Machine, dev: number): { n: number } {
  const rc = m.silicon.rc;
  const t100 = rc.translator;
  const seen = { n: 0 };
  rc.translator = {
    translate(req: InboundRequest, res: TranslationResult) {
      if (req.deviceId === dev && req.kind === REQ_UNTRANSLATED) seen.n++;
      t100.translate(req, res);
    },
  };
  return seen;
}

Deno.test("riscv_iommu_hpm: the seed's two events on a T100 (PCI segment 0x0c: dma0chan0 is device 0xc0010): IOATS DDT walks, IOATC 0's TLB misses", () => {
  const m = boot({ t100: { ioatcs: 2 }, pciDomain: 0x0c });
  const seen = observe(m);
  const into = requestsInto(m, 0x0c_0010);
  const config1 = 0x20c0010000000000n;
  const walks = open(m, "spacemit_ioats_hpm_0", { config: BigInt(DD_WALK), config1 });
  const misses = open(m, "spacemit_ioatc_hpm_1", { config: BigInt(TLB_MISS), config1 });
  const urqs = open(m, "spacemit_ioatc_hpm_1", { config: BigInt(URQ), config1 });
  const other = open(m, "spacemit_ioatc_hpm_2", { config: BigInt(URQ) });
  copy(m.dmaChannel(0), 4, 2);
  const fromDev = seen.filter((s) => s.did === 0x0c_0010);
  assert.equal(count(walks), BigInt(fromDev.filter((s) => s.id === DD_WALK).length));
  assert.ok(count(walks) > 0n);
  // An IOATC miss is a request the IOATC sends on: what the IOATS sees as an untranslated one.
  assert.equal(count(misses), BigInt(fromDev.filter((s) => s.id === URQ).length));
  assert.equal(count(urqs), BigInt(into.n));
  assert.ok(count(misses) < count(urqs), "the way back hits the IOATC's TLB");
  assert.equal(count(other), 0n, "IOATC 1 fronts dma engine 1, which is idle");
});

Deno.test("riscv_iommu_hpm: a 16-bit counter gives the exact 64-bit total through the overflow interrupt (IOMMU on a shared wire, IOATC on its own)", async (t) => {
  const copies = Number(Deno.env.get("HPM_OVERFLOW_COPIES") ?? 160);
  await t.step("riscv,iommu, one wired vector for every cause", () => {
    const m = boot({
      iommuOptions: { hpm: { counterBits: 16 } },
      iommuIrqs: 1,
      msiParent: false,
    });
    const seen = observe(m);
    const ev = open(m, "riscv_iommu_hpm_0", { config: BigInt(URQ) });
    const irq = Number(/IRQ (\d+)/.exec(m.dmesg.find((l) => l.includes("HPM: Registered"))!)![1]);
    copy(m.dmaChannel(0), 256, copies);
    const want = BigInt(seen.filter((s) => s.id === URQ).length);
    assert.ok(want > 2n * 0x1_0000n, `${want} events wrap the counter more than twice`);
    assert.equal(count(ev), want);
    assert.ok(
      m.kernel.irq.desc(irq)!.count >= Number(want / 0x8000n),
      "one interrupt per half range",
    );
  });
  await t.step("T100 IOATC 0", () => {
    const m = boot({ t100: { ioatcs: 1, ioatcHpm: { counterBits: 16 } } });
    const into = requestsInto(m, rid(m, 0));
    const ev = open(m, "spacemit_ioatc_hpm_1", { config: BigInt(URQ) });
    copy(m.dmaChannel(0), 256, copies);
    assert.ok(into.n > 2 * 0x1_0000);
    assert.equal(count(ev), BigInt(into.n));
  });
});

Deno.test("riscv_iommu_hpm: groups go on whole; more events than counters are multiplexed", () => {
  const m = boot({ t100: { ioatcs: 1, ioatcHpm: { counters: 2 } }, dmaChannels: 1 });
  const into = requestsInto(m, rid(m, 0));
  const pmu = "spacemit_ioatc_hpm_1";
  const leader = open(m, pmu, { config: BigInt(URQ) });
  const sibling = open(m, pmu, { config: BigInt(URQ) }, leader);
  const cycles = open(m, pmu, { config: 0n }, leader);
  assert.throws(
    () => open(m, pmu, { config: BigInt(TLB_MISS) }, leader),
    /EINVAL/,
    "3 on 2 counters",
  );
  copy(m.dmaChannel(0), 16);
  assert.equal(count(leader), BigInt(into.n));
  assert.equal(count(sibling), BigInt(into.n));
  assert.ok(count(cycles) > 0n);
  for (const e of [cycles, sibling, leader]) perf_event_release_kernel(e);

  // Three events, two counters: each is on 2/3 of the time; scaled, each estimates the total.
  sysfs_write(m.kernel, `${DEVICES}/${pmu}/perf_event_mux_interval_ms`, "1");
  into.n = 0;
  const evs = [URQ, URQ, URQ].map(() => open(m, pmu, { config: BigInt(URQ) }));
  copy(m.dmaChannel(0), 64, 100);
  for (const ev of evs) {
    const { count, enabled, running } = perf_event_read_value(ev);
    assert.ok(running > 0 && running < enabled, `${running}/${enabled}`);
    assert.ok(count <= BigInt(into.n));
    const scaled = Number(count) * enabled / running;
    assert.ok(Math.abs(scaled - into.n) < into.n * 0.1, `${scaled} vs ${into.n}`);
  }
});

Deno.test("riscv_iommu_hpm: event_init refuses what the series refuses, with its errno", () => {
  const m = boot({ t100: { ioatcs: 1 }, iommuOptions: { hpm: { counters: 1 } } });
  const ioats = "spacemit_ioats_hpm_0";
  const errno = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      if (isErrno(e)) return e.code;
      throw e;
    }
    return "ok";
  };
  const type = Number(read(m.kernel, `${ioats}/type`));
  assert.equal(errno(() => open(m, ioats, { config: 5n, sample_period: 1000n })), "EINVAL");
  assert.equal(
    errno(() => perf_event_open(m.kernel, { type, config: 5n }, 0, -1)),
    "EINVAL",
    "a per-task event",
  );
  assert.equal(errno(() => open(m, ioats, { config: 9n })), "EINVAL", "no event 9");
  assert.equal(errno(() => open(m, ioats, { config: 0x7fn })), "EINVAL", "no vendor event 0x7f");
  assert.equal(errno(() => open(m, ioats, { config: 5n, exclude_user: true })), "EINVAL");
  // One programmable counter: one event opens alone (v5 counted its leader twice).
  const one = open(m, ioats, { config: BigInt(DD_WALK) });
  const cy = open(m, ioats, { config: 0n }, one);
  assert.equal(errno(() => open(m, ioats, { config: BigInt(URQ) }, one)), "EINVAL", "2 on 1");
  assert.equal(errno(() => open(m, ioats, { config: 0n }, one)), "EINVAL", "two cycles events");
  assert.equal(
    errno(() => open(m, "spacemit_ioatc_hpm_1", { config: BigInt(URQ) }, one)),
    "EINVAL",
    "a member of another PMU",
  );
  for (const e of [cy, one]) perf_event_release_kernel(e);
  // The global filter: a group's events share one filter; lone events with another wait.
  const f1 = open(m, "spacemit_ioatc_hpm_1", { config: BigInt(URQ), config1: did(rid(m, 0)) });
  assert.equal(
    errno(() => open(m, "spacemit_ioatc_hpm_1", { config: BigInt(TLB_MISS) }, f1)),
    "EINVAL",
  );
  const f2 = open(m, "spacemit_ioatc_hpm_1", { config: BigInt(TLB_MISS) });
  copy(m.dmaChannel(0), 2);
  const v1 = perf_event_read_value(f1), v2 = perf_event_read_value(f2);
  assert.ok(v1.running === v1.enabled && v1.count > 0n);
  assert.equal(v2.running, 0, "its filter differs from the one the counting event set: EAGAIN");
});

Deno.test("riscv_iommu_hpm: unbinding the IOMMU deletes the subdevices: PMUs gone, events revoked, ids free again", () => {
  const m = boot({ t100: { ioatcs: 1 } });
  const ev = open(m, "spacemit_ioatc_hpm_1", { config: BigInt(URQ) });
  copy(m.dmaChannel(0), 2);
  const before = count(ev);
  assert.ok(before > 0n);
  device_release_driver(m.iommuDevice!);
  assert.deepEqual(pmus(m), []);
  assert.equal(ev.state, PERF_EVENT_STATE_REVOKED);
  assert.equal(count(ev), before);
  perf_event_disable(ev);
  perf_event_enable(ev);
  perf_event_release_kernel(ev);
  assert.ok(!m.devices.some((d) => d.name.startsWith("iommu.")));
  const engines: readonly DmaEngine[] = m.silicon.dmaEngines;
  assert.equal(engines.length, 1);
});
