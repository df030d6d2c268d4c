// The driver's three series in one machine: page requests, IOPF and SVA (iopfPart), second-stage
// dirty tracking (dirtyPart) and the HPM as perf PMUs (hpmPart), on a plain riscv,iommu and on a
// SpacemiT T100. In that one machine, at once: dmatest-style DMA through the default paging
// domain of an ATS engine, a DIRTY_TRACKING second-stage domain on a second engine reporting
// exactly the pages its DMA wrote, a process bound with SVA to the first engine whose fill is
// served through page requests, and HPM counters opened through the perf core as perf stat opens
// them, counting that traffic against the test's own count of the requests that crossed the root
// complex. Then a function that stops completing ATS invalidations under a clearing read, the SVA
// engine taking a tracked domain once its process is gone, and everything unbound with nothing
// left behind. The composed driver routes domain_alloc_paging_flags to the feature owning each
// flag and ORs capable(); the page-request series' hooks (per-device, invalidation, cmdTimeout,
// attachRid) serve the dirty series' domains.
import assert from "node:assert/strict";
import {
  type InboundRequest,
  REQ_ATS,
  REQ_TRANSLATED,
  REQ_UNTRANSLATED,
  type TranslationResult,
} from "@iommu-lab/hw";
import {
  device_release_driver,
  DMA_BIDIRECTIONAL,
  dma_map_page,
  DMA_TO_DEVICE,
  dma_unmap_page,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  PROT_READ,
  PROT_WRITE,
  sysfs_read,
  sysfs_readdir,
  vm_mmap,
} from "@iommu-lab/kernel";
import {
  device_iommu_capable,
  IOMMU_CAP_CACHE_COHERENCY,
  IOMMU_CAP_DIRTY_TRACKING,
  IOMMU_DIRTY_NO_CLEAR,
  iommu_domain_free,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_paging_domain_alloc_flags,
  iommu_sva_bind_device,
  iommu_sva_unbind_device,
} from "@iommu-lab/iommu";
import {
  perf_event_open,
  perf_event_read_value,
  perf_event_release_kernel,
  PERF_EVENT_STATE_REVOKED,
  type PerfEvent,
} from "@iommu-lab/perf";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import { hpmPart } from "@iommu-lab/riscv-iommu-hpm";
import { iopfPart } from "@iommu-lab/riscv-iommu-iopf";
import { type DmaChan, Machine } from "@iommu-lab/machine";
import { bind, issued, PAGE, phys, priErrors, watchPri } from "./_iopf_test_fixture.ts";
import {
  clearDirtyData,
  footprint,
  freeTrackedDomain,
  getDirtyBitmap,
  GPA_2M,
  GPA_4K,
  GPA_64K,
  GPA_SRC,
  K4,
  K64,
  M2,
  ok,
  pages,
  trackedDomain,
} from "./_dirty_test_fixture.ts";

const DEVICES = "/sys/bus/event_source/devices";

/**
 * Two DMA engines of two channels with ATS, PRI and PASID, and the three series. Endpoint MSIs
 * go around the IOMMU: the tracked domain maps no interrupt doorbell (iommufd would install one
 * in it, as its sw_msi does).
 */
function bootAll(t100: boolean): Machine {
  return Machine.boot({
    parts: [iopfPart(), dirtyPart(), hpmPart()],
    dmaAts: true,
    dmaPri: true,
    dmaPasid: true,
    dmaEngines: 2,
    dmaChannels: 2,
    msiThroughIommu: false,
    t100: t100 ? { ioatcs: 2 } : undefined,
  });
}

/** The requests each engine sent into the IOMMU (a T100's IOATCs first), by kind. */
type Crossed = Map<number, [untranslated: number, translated: number, ats: number]>;

/** Counts every request that crosses the root complex into the IOMMU, by device and kind. */
function countRequests(m: Machine): Crossed {
  const seen: Crossed = new Map();
  const rc = m.silicon.rc;
  const iommu = rc.translator;
  rc.translator = {
    translate(req: InboundRequest, res: TranslationResult) {
      let c = seen.get(req.deviceId);
      if (c === undefined) seen.set(req.deviceId, c = [0, 0, 0]);
      c[req.kind === REQ_UNTRANSLATED ? 0 : req.kind === REQ_TRANSLATED ? 1 : 2]++;
      iommu.translate(req, res);
    },
  };
  return seen;
}

/** The requests of `kind` from `devices` (all of them when absent) in `seen`. */
function crossed(seen: Crossed, kind: number, devices?: number[]): bigint {
  const i = kind === REQ_UNTRANSLATED ? 0 : kind === REQ_TRANSLATED ? 1 : 2;
  let n = 0;
  for (const [did, c] of seen) if (devices === undefined || devices.includes(did)) n += c[i];
  return BigInt(n);
}

/**
 * Opens `pmu/event/` system-wide as perf stat does: the PMU's type and the event's encoding
 * (`event=0x03`) read from its sysfs directory.
 */
function perfOpen(m: Machine, pmu: string, event: string): PerfEvent {
  const type = Number(sysfs_read(m.kernel, `${DEVICES}/${pmu}/type`));
  const enc = /^event=(0x[0-9a-f]+)$/.exec(
    sysfs_read(m.kernel, `${DEVICES}/${pmu}/events/${event}`).trim(),
  );
  assert.ok(enc, `${pmu}/${event}/`);
  return perf_event_open(m.kernel, { type, config: BigInt(enc[1]) }, -1, 0);
}

/** The pages and slab objects the kernel holds. */
function held(m: Machine): { pages: number; objects: string[] } {
  return { pages: m.kernel.pages.allocatedPages, objects: m.kernel.slab.allocations() };
}

/**
 * dmatest's test on `chan`, `n` times: a source and a destination buffer filled with distinct
 * patterns, mapped (source DMA_TO_DEVICE, destination DMA_BIDIRECTIONAL), a copy of a part of
 * one into the other, unmapped, and both buffers checked whole. Returns the commands each unmap
 * put on the command queue.
 */
function dmatestStyle(m: Machine, chan: DmaChan, n: number): string[][] {
  const k = m.kernel;
  const size = 2 * PAGE;
  const src = k.pages.alloc(1), dst = k.pages.alloc(1);
  const unmaps: string[][] = [];
  try {
    for (let i = 0; i < n; i++) {
      const len = 0x300 + i * 0x2b1, so = (i * 0x97) % 0x400, doff = (i * 0x1f3) % 0x600;
      const srcPat = Uint8Array.from({ length: size }, (_, b) => 0x80 | (b + i) & 0x7f);
      const dstPat = Uint8Array.from({ length: size }, (_, b) => 0x20 | (~b & 0x1f));
      k.mem.writeBytes(src, srcPat);
      k.mem.writeBytes(dst, dstPat);
      const s = dma_map_page(chan.dev, src, 0, size, DMA_TO_DEVICE);
      const d = dma_map_page(chan.dev, dst, 0, size, DMA_BIDIRECTIONAL);
      ok(chan.memcpy(d + doff, s + so, len));
      unmaps.push(issued(m, () => {
        dma_unmap_page(chan.dev, s, size, DMA_TO_DEVICE);
        dma_unmap_page(chan.dev, d, size, DMA_BIDIRECTIONAL);
      }));
      assert.deepEqual(k.mem.readBytes(src, size), srcPat, "srcbuf overwritten!");
      const want = dstPat.slice();
      want.set(srcPat.subarray(so, so + len), doff);
      assert.deepEqual(k.mem.readBytes(dst, size), want, "dstbuf not copied, or was copied!");
    }
  } finally {
    k.pages.free(src, 1);
    k.pages.free(dst, 1);
  }
  return unmaps;
}

for (const variant of ["riscv,iommu", "SpacemiT T100"] as const) {
  Deno.test(`${variant} with the iopf, dirty and hpm series at once: dmatest-style DMA, dirty tracking, SVA page requests and HPM counts in one machine, then nothing leaks`, async (t) => {
    const t100 = variant === "SpacemiT T100";
    const m = bootAll(t100);
    const [dma, sva, tracked] = [m.dmaChannel(1), m.dmaChannel(0), m.dmaChannel(2)];
    const dev1 = tracked.dev;
    const [rid0, rid1] = m.silicon.dmaEngines.map((e) => e.fn.bdf);

    await t.step("the composed driver: every series active, flags routed, capable() OR-ed", () => {
      assert.deepEqual(m.driver!.features.map((f) => f.name), ["iopf", "dirty-tracking", "hpm"]);
      assert.deepEqual(m.kernel.dmesg.grep(/disabled: no /), []);
      assert.ok(m.dmesg.some((l) => l.endsWith("page request queue enabled")));
      assert.deepEqual(
        sysfs_readdir(m.kernel, DEVICES).sort(),
        t100
          ? ["spacemit_ioatc_hpm_1", "spacemit_ioatc_hpm_2", "spacemit_ioats_hpm_0"]
          : ["riscv_iommu_hpm_0"],
      );
      assert.equal(device_iommu_capable(dev1, IOMMU_CAP_DIRTY_TRACKING), true, "dirty's");
      assert.equal(device_iommu_capable(dev1, IOMMU_CAP_CACHE_COHERENCY), true, "the base's");
      // No series reports hw_info: iommufd's GET_HW_INFO answers from capable() alone.
      assert.equal(m.driver!.ops.hw_info, undefined);
      const s2 = iommu_paging_domain_alloc_flags(dev1, IOMMU_HWPT_ALLOC_NEST_PARENT);
      assert.deepEqual([(s2 as RiscvIommuDomain).feature, s2.dirty_ops], [null, null], "base");
      const dt = iommu_paging_domain_alloc_flags(dev1, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      assert.equal((dt as RiscvIommuDomain).feature?.name, "dirty-tracking");
      assert.notEqual(dt.dirty_ops, null);
      assert.throws(
        () => iommu_paging_domain_alloc_flags(dev1, IOMMU_HWPT_ALLOC_PASID),
        { code: "EOPNOTSUPP" },
        "no series owns IOMMU_HWPT_ALLOC_PASID",
      );
      for (const d of [s2, dt]) iommu_domain_free(d);
    });

    // What stays until the device or its domain goes is made first, so that the baseline is
    // what the kernel holds between uses: the process directory of a first bind, the page-table
    // levels of the DMA domain's first map (an unmap frees no table).
    const warm = mm_alloc(m.kernel);
    iommu_sva_unbind_device(iommu_sva_bind_device(sva.dev, warm));
    mmput(warm);
    dmatestStyle(m, dma, 1);
    const baseline = held(m);
    const seen = countRequests(m);
    const w = watchPri(m);
    const hpm: Record<string, PerfEvent> = t100
      ? {
        ioatsAts: perfOpen(m, "spacemit_ioats_hpm_0", "ats_rq"),
        ioatsTrans: perfOpen(m, "spacemit_ioats_hpm_0", "trans_rq"),
        ioatc0Trans: perfOpen(m, "spacemit_ioatc_hpm_1", "trans_rq"),
        ioatc0Untrans: perfOpen(m, "spacemit_ioatc_hpm_1", "untrans_rq"),
        ioatc1Trans: perfOpen(m, "spacemit_ioatc_hpm_2", "trans_rq"),
      }
      : {
        ats: perfOpen(m, "riscv_iommu_hpm_0", "ats_rq"),
        trans: perfOpen(m, "riscv_iommu_hpm_0", "trans_rq"),
        untrans: perfOpen(m, "riscv_iommu_hpm_0", "untrans_rq"),
      };

    const mm = mm_alloc(m.kernel);
    const va = vm_mmap(mm, 0, 32 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    const bound = bind(sva.dev, mm);
    let d: RiscvIommuDomain | null = null;

    await t.step("all at once: an SVA fill faulting in, dmatest copies, tracked writes", () => {
      const fill = sva.prepMemset(va, 0x5aa5_5aa5, 32 * PAGE, { pasid: bound.pasid });
      sva.submit(fill);
      sva.issuePending();
      while (w.outstanding.size === 0) m.run(100);

      // dmatest on the other channel of the SVA engine, its page requests in flight.
      const unmaps = dmatestStyle(m, dma, 6);
      for (const cmds of unmaps) {
        assert.ok(cmds.some((c) => c.startsWith("IOTINVAL.VMA")), cmds.join("; "));
        assert.ok(cmds.some((c) => c.startsWith("ATS.INVAL")), `ATS.INVAL: ${cmds.join("; ")}`);
      }

      // The second engine on a DIRTY_TRACKING domain, enabled in iommufd's order.
      d = trackedDomain(m, tracked);
      clearDirtyData(d);
      d.dirty_ops!.set_dirty_tracking(d, true);
      ok(tracked.memcpy(GPA_4K + 3 * K4 + 0x100, GPA_SRC, K4));
      ok(tracked.memcpy(GPA_64K + K64 + 0x5000, GPA_SRC + 0x20, 8));
      ok(tracked.memcpy(GPA_2M + M2 + 0x1_2340, GPA_SRC, 64));
      ok(tracked.memset(GPA_4K + 7 * K4, 0x5a5a_5a5a, K4));
      const written = footprint(
        [GPA_4K + 3 * K4 + 0x100, K4],
        [GPA_64K + K64 + 0x5000, 8],
        [GPA_2M + M2 + 0x1_2340, 64],
        [GPA_4K + 7 * K4, K4],
      );
      assert.deepEqual(pages(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR)), pages(written));
      assert.deepEqual(getDirtyBitmap(d), written, "the clearing read reports the same");
      // Written again after the clearing read: its translation cached in the engine's ATC
      // must have gone with the D bits, or the write is missed.
      ok(tracked.memcpy(GPA_4K + 3 * K4, GPA_SRC, 16));
      ok(tracked.memcpy(GPA_64K + 3 * K64 + 0xf000, GPA_SRC, K4));
      assert.deepEqual(
        pages(getDirtyBitmap(d)),
        pages(footprint([GPA_4K + 3 * K4, 16], [GPA_64K + 3 * K64 + 0xf000, K4])),
      );

      sva.syncWait(fill);
      assert.deepEqual([fill.status, fill.error, fill.xferred], ["complete", 0, 32 * PAGE]);
    });

    await t.step("SVA: each page asked once, every group answered once with Success", () => {
      const asked = bound.groups.flat().sort((a, b) => a - b);
      assert.deepEqual(asked, Array.from({ length: 32 }, (_, i) => va + i * PAGE));
      assert.deepEqual([w.outstanding.size, w.unexpected, w.answered], [0, 0, w.groups]);
      assert.ok(w.responses.every((r) => r.code === 0 && r.pasid === bound.pasid));
      assert.equal(priErrors(sva.dev), 0);
      for (let i = 0; i < 32; i++) {
        assert.equal(m.kernel.mem.read32(phys(mm, va + i * PAGE) + PAGE - 4), 0x5aa5_5aa5);
      }
    });

    await t.step(
      "HPM counters, read through the perf core, count the requests that crossed",
      () => {
        const n = (ev: PerfEvent) => perf_event_read_value(ev).count;
        const all = crossed(seen, REQ_ATS);
        assert.ok(all > 0n && crossed(seen, REQ_TRANSLATED) > 0n, "ATS engines at work");
        if (!t100) {
          assert.equal(n(hpm.ats), all);
          assert.equal(n(hpm.trans), crossed(seen, REQ_TRANSLATED));
          assert.equal(n(hpm.untrans), crossed(seen, REQ_UNTRANSLATED));
        } else {
          // An IOATC passes ATS and translated requests on to the IOATS.
          assert.equal(n(hpm.ioatsAts), all);
          assert.equal(n(hpm.ioatsTrans), crossed(seen, REQ_TRANSLATED));
          assert.equal(n(hpm.ioatc0Trans), crossed(seen, REQ_TRANSLATED, [rid0, rid0 + 1]));
          assert.equal(n(hpm.ioatc0Untrans), crossed(seen, REQ_UNTRANSLATED, [rid0, rid0 + 1]));
          assert.equal(n(hpm.ioatc1Trans), crossed(seen, REQ_TRANSLATED, [rid1, rid1 + 1]));
        }
        for (const ev of Object.values(hpm)) perf_event_release_kernel(ev);
      },
    );

    await t.step(
      "a function that stops completing ATS.INVAL during a clearing read: the cmdTimeout hook takes its ATS away in that sync, and its writes stay tracked",
      () => {
        const tracker = d!;
        ok(tracked.memcpy(GPA_4K + 6 * K4, GPA_SRC, 32));
        m.silicon.dmaEngines[1].fn.atsInvalidateNs = Infinity;
        assert.deepEqual(getDirtyBitmap(tracker), footprint([GPA_4K + 6 * K4, 32]));
        assert.deepEqual(m.kernel.dmesg.grep("ATS invalidation timed out"), [
          `riscv,iommu 3010000.iommu: ${tracked.dev.name} (devid 0x${
            rid1.toString(16)
          }): ATS invalidation timed out; ATS and PRI disabled, translated requests blocked`,
        ]);
        // Untranslated now: the IOMMU's own walks set D.
        ok(tracked.memcpy(GPA_4K + 6 * K4, GPA_SRC, 32));
        ok(tracked.memset(GPA_2M, 0x7777_7777, 8));
        assert.deepEqual(getDirtyBitmap(tracker), footprint([GPA_4K + 6 * K4, 32], [GPA_2M, 8]));
      },
    );

    await t.step(
      "the SVA engine, its process unbound, takes a DIRTY_TRACKING domain: its directory leaves the context while the second stage is there",
      () => {
        iommu_sva_unbind_device(bound.h);
        const d0 = trackedDomain(m, sva);
        clearDirtyData(d0);
        d0.dirty_ops!.set_dirty_tracking(d0, true);
        ok(sva.memcpy(GPA_4K + 5 * K4 + 0x40, GPA_SRC, 64));
        assert.deepEqual(getDirtyBitmap(d0), footprint([GPA_4K + 5 * K4 + 0x40, 64]));
        assert.throws(() => iommu_sva_bind_device(sva.dev, mm), { code: "EBUSY" });
        freeTrackedDomain(m, sva, d0);
        // Back on its DMA domain, the engine binds and faults again.
        const again = bind(sva.dev, mm);
        const fresh = vm_mmap(mm, 0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        ok(sva.memset(fresh, 0x1234_5678, 4 * PAGE, { pasid: again.pasid }));
        assert.equal(again.groups.flat().length, 4, "each new page faulted in once");
        assert.equal(m.kernel.mem.read32(phys(mm, fresh + 3 * PAGE)), 0x1234_5678);
        iommu_sva_unbind_device(again.h);
      },
    );

    await t.step("unbind and free everything: the kernel holds what it held before", () => {
      mmput(mm);
      freeTrackedDomain(m, tracked, d!);
      assert.deepEqual(held(m), baseline);
      assert.deepEqual(m.kernel.dmesg.grep(/Fault|report failed|aborted/), []);
    });

    await t.step("the IOMMU unbound: its PMUs and subdevices go, an open event is revoked", () => {
      const ev = perfOpen(m, t100 ? "spacemit_ioats_hpm_0" : "riscv_iommu_hpm_0", "ats_rq");
      device_release_driver(m.iommuDevice!);
      assert.equal(ev.state, PERF_EVENT_STATE_REVOKED);
      perf_event_release_kernel(ev);
      assert.deepEqual(sysfs_readdir(m.kernel, DEVICES), []);
      assert.ok(!m.devices.some((dev) => dev.name.startsWith("iommu.")));
    });
  });
}
