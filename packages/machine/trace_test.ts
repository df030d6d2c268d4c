import assert from "node:assert/strict";
import {
  device_attach,
  device_release_driver,
  device_unregister,
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
} from "@iommu-lab/kernel";
import { iopfPart } from "@iommu-lab/riscv-iommu-iopf";
import { Machine, type TraceEvent, TRACK_CPU, TRACK_DMA, TRACK_IOMMU, TRACK_IRQ } from "./mod.ts";

/** Boots a traced machine, copies a page through the IOMMU and makes one fault. */
function tracedRun(iommuBus: "platform" | "pci") {
  const m = Machine.boot({ iommuBus, trace: true });
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(1);
  const iova = dma_map_page(chan.dev, buf, 0, 8192, DMA_BIDIRECTIONAL);
  assert.equal(chan.memcpy(iova + 4096, iova, 4096).status, "complete");
  assert.equal(chan.memcpy(iova - 0x10_0000, iova, 64).status, "error");
  m.run(100_000);
  return m;
}

function named(events: TraceEvent[], cat: string, name?: string | RegExp): TraceEvent[] {
  return events.filter((e) =>
    e.cat === cat &&
    (name === undefined || (typeof name === "string" ? e.name === name : name.test(e.name)))
  );
}

for (const bus of ["platform", "pci"] as const) {
  Deno.test(`trace (${bus}): the written file parses and holds the run's events`, async (t) => {
    const m = tracedRun(bus);
    const path = await Deno.makeTempFile({ suffix: ".json" });
    try {
      m.trace.write(path);
      const json = JSON.parse(await Deno.readTextFile(path));
      const events: TraceEvent[] = json.traceEvents;
      const end = m.silicon.clock.now() / 1000;

      await t.step("trace-event format: ph, ts in µs of simulated time, pid/tid", () => {
        assert.ok(events.length > 50);
        for (const e of events) {
          assert.ok(["X", "i", "M"].includes(e.ph), e.ph);
          assert.equal(typeof e.ts, "number");
          assert.ok(e.ts >= 0 && e.ts <= end, `${e.name} at ${e.ts} µs is outside the run`);
          assert.equal(e.pid, 1);
          if (e.ph === "X") assert.ok((e.dur ?? -1) >= 0);
        }
        const ts = events.map((e) => e.ts);
        assert.deepEqual(ts, [...ts].sort((a, b) => a - b), "sorted by time");
        const threads = named(events, "__metadata", "thread_name").map((e) => e.args?.name);
        assert.deepEqual(threads.slice(0, 3), ["cpu", "iommu", "intc"]);
        assert.ok(threads.includes("dma0chan0"));
      });

      await t.step("MMIO writes, commands and walks", () => {
        const cqt = named(events, "mmio", / cqt$/);
        assert.ok(cqt.length > 0 && cqt.every((e) => e.tid === TRACK_CPU));
        const cmds = named(events, "command").map((e) => e.name);
        assert.ok(cmds.includes("IODIR.INVAL_DDT"), cmds.join());
        assert.ok(cmds.includes("IOTINVAL.VMA"));
        assert.ok(cmds.includes("IOFENCE.C"));
        assert.ok(named(events, "command").every((e) => e.tid === TRACK_IOMMU));
        assert.ok(named(events, "walk", "DDT walk").length > 0);
        assert.ok(named(events, "walk", "S/VS-stage walk").length > 0);
      });

      await t.step("the fault, its interrupt and the driver's log line", () => {
        const [fault] = named(events, "fault");
        assert.equal(fault.name, "fault cause 15");
        assert.equal(fault.args?.devid, 0x10);
        const fqMsi = named(events, "msi").filter((e) => e.ts >= fault.ts);
        assert.ok(fqMsi.length > 0 && fqMsi.every((e) => e.tid === TRACK_IRQ));
        const handled = named(events, "irq", /^handle msi /).filter((e) => e.ts >= fault.ts);
        assert.ok(handled.length >= 2, "the fault queue's and the DMA channel's handlers ran");
        const log = named(events, "printk", /Fault 15 devid: 0x10/);
        assert.equal(log.length, 1);
        assert.ok(log[0].ts >= fault.ts);
      });

      await t.step("DMA transfers as spans on their channel's track", () => {
        const dma = named(events, "dma");
        assert.deepEqual(dma.map((e) => e.name), ["memcpy", "memcpy"]);
        assert.ok(dma.every((e) => e.tid === TRACK_DMA && e.ph === "X"));
        assert.ok(dma[0].dur! > 0);
        assert.deepEqual([dma[0].args?.xferred, dma[1].args?.error], [4096, 2]);
      });
    } finally {
      await Deno.remove(path);
    }
  });
}

Deno.test("trace: off by default, and then no hook wraps the silicon", () => {
  const m = Machine.boot();
  assert.equal(m.trace.enabled, false);
  assert.equal(m.silicon.rc.translator, m.silicon.iommu, "the root complex talks to the IOMMU");
  assert.deepEqual(m.silicon.iommu!.translator.eventObservers, []);
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(0);
  chan.memset(dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL), 0, 4096);
  assert.deepEqual(m.trace.events, []);
  assert.deepEqual(m.trace.toJSON().traceEvents.filter((e) => e.ph !== "M"), []);
});

Deno.test("trace: mmioReads records reads too; limit caps the buffer", () => {
  const reads = Machine.boot({ trace: { mmioReads: true } });
  assert.ok(named(reads.trace.events, "mmio", /^read iommu capabilities$/).length > 0);
  const capped = Machine.boot({ trace: { limit: 10 } });
  assert.equal(capped.trace.events.length, 10);
  assert.ok(capped.trace.dropped > 0);
});

Deno.test("trace: each command is a span of costs.command, counted from cqh 0 after a re-enable", () => {
  const m = Machine.boot({ trace: true, costs: { command: 250 } });
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(0);
  for (let i = 0; i < 3; i++) {
    dma_unmap_page(chan.dev, dma_map_page(chan.dev, buf, 0, 4096, 0), 4096, DMA_BIDIRECTIONAL);
  }
  m.kernel.pages.free(buf, 0);
  const boot = named(m.trace.events, "command");
  assert.ok(boot.every((e) => e.ph === "X" && e.dur === 0.25 && e.tid === TRACK_IOMMU));
  const slots = boot.map((e) => e.args?.slot);
  assert.deepEqual(slots, slots.map((_, i) => i), "one span per queue slot, in order");
  assert.deepEqual(
    boot.slice(-6).map((e) => e.name),
    Array(3).fill(["IOTINVAL.VMA", "IOFENCE.C"]).flat(),
  );
  for (let i = 1; i < boot.length; i++) assert.ok(boot[i].ts >= boot[i - 1].ts + 0.25);

  // Unbind and rebind: the driver turns the queue off, and turning it on again zeroes cqh.
  for (const eng of m.dmaDevices) device_unregister(eng);
  device_release_driver(m.iommuDevice!);
  const before = named(m.trace.events, "command").length;
  assert.ok(device_attach(m.iommuDevice!));
  const rebind = named(m.trace.events, "command").slice(before);
  assert.ok(rebind.length > 0 && rebind.length < 8, `${rebind.length} commands`);
  assert.equal(rebind[0].args?.slot, 0);
});

Deno.test("the IOFENCE.C an ATS Invalidation Completion releases is charged costs.command in the completion's clock event and, traced, recorded as it runs, after the function's invalidation time", async (t) => {
  for (const trace of [false, true]) {
    await t.step(trace ? "traced" : "untraced", () => {
      const command = 250;
      const m = Machine.boot({ trace, costs: { command }, parts: [iopfPart()], dmaAts: true });
      const clock = m.silicon.clock, iommu = m.silicon.iommu!;
      const chan = m.dmaChannel(0);
      const buf = m.kernel.pages.alloc(0);
      const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
      assert.equal(chan.memset(iova, 1, 4096).status, "complete", "the ATC holds the page");
      // What running the commands a completion releases costs, measured inside its event.
      const charged: number[] = [];
      const port = iommu.atsPort!;
      iommu.atsPort = {
        invalidate: (inv, done) =>
          port.invalidate(inv, () => {
            const t0 = clock.now();
            done();
            charged.push(clock.now() - t0);
          }),
        pageResponse: (rsp) => port.pageResponse(rsp),
      };
      const from = m.trace.events.length;
      dma_unmap_page(chan.dev, iova, 4096, DMA_BIDIRECTIONAL);
      assert.deepEqual(charged, [command], "the IOFENCE.C ran, and was charged, in the completion");
      if (!trace) return;
      const cmds = named(m.trace.events.slice(from), "command");
      assert.deepEqual(cmds.map((e) => e.name), ["IOTINVAL.VMA", "ATS.INVAL", "IOFENCE.C"]);
      const [, inval, fence] = cmds;
      assert.ok(cmds.every((e) => e.dur === command / 1000 && e.tid === TRACK_IOMMU));
      assert.equal(fence.args?.slot, (inval.args?.slot as number) + 1);
      assert.ok(fence.ts >= inval.ts + clock.costs.atsInvalidate / 1000, "after the completion");
    });
  }
});

Deno.test("trace: each walk is recorded once (a miss and a first-stage walk per fresh mapping and for the MSI doorbell)", () => {
  const m = Machine.boot({ trace: true });
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(0);
  const from = m.trace.events.length;
  for (let i = 0; i < 5; i++) {
    const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    assert.equal(chan.memset(iova, i, 4096).status, "complete");
    // The unmap's IOTINVAL.VMA empties the IOTLB, so the next memset misses again.
    dma_unmap_page(chan.dev, iova, 4096, DMA_BIDIRECTIONAL);
  }
  const walks = named(m.trace.events.slice(from), "walk");
  const count = (name: string) => walks.filter((e) => e.name === name).length;
  // One more for the completion MSIs' doorbell page, which the unmaps (by address) leave cached.
  assert.equal(count("IOTLB miss"), 6);
  assert.equal(count("S/VS-stage walk"), 6);
  assert.equal(count("DDT walk"), 1, "the device context stays cached");
  assert.equal(walks.length, 13);
  assert.ok(walks.every((e) => e.args?.devid === 0x10 && e.tid === TRACK_IOMMU));
});
