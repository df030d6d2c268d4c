// End to end on a booted machine: the PCIe DMA engine's writes go through the silicon's IOMMU,
// which sets D in the second-stage table of a DIRTY_TRACKING domain (GADE); the driver's dirty
// ops report exactly the leaves written, at the iommu-core level iommufd builds on. Reads never
// set D; the IOTLB flush after a clearing read reaches the silicon; iommufd's enable order
// never faults the device; a machine without the feature or without AMO_HWAD; fail-nth.
import assert from "node:assert/strict";
import {
  device_iommu_capable,
  iommu_attach_device,
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_detach_device,
  iommu_dirty_bitmap_init,
  IOMMU_DIRTY_NO_CLEAR,
  iommu_domain_free,
  iommu_get_domain_for_dev,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  iommu_iotlb_sync,
  iommu_map,
  iommu_paging_domain_alloc_flags,
  iommu_unmap,
  IommuDirtyBitmap,
  IommuIotlbGather,
  iova_bitmap_alloc,
} from "@iommu-lab/iommu";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { Machine, type MachineOptions, riscvIommu } from "@iommu-lab/machine";
import { dirty, dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import {
  BASE,
  clearDirtyData,
  footprint,
  getDirtyBitmap,
  GPA_2M,
  GPA_4K,
  GPA_64K,
  GPA_SRC,
  K4,
  K64,
  LENGTH,
  M2,
  ok,
  pages,
  RW,
  trackedDomain,
} from "./_dirty_test_fixture.ts";
import { FailNthSteps, failNthSweep } from "@iommu-lab/kernel/testing";

function boot(opts: MachineOptions = {}) {
  // The engine's completion MSIs bypass the IOMMU: the tracked domain does not map the IMSIC.
  const m = Machine.boot({ parts: [dirtyPart()], msiThroughIommu: false, ...opts });
  return { m, chan: m.dmaChannel(0) };
}

Deno.test("the mapping has the leaves the test needs: 4 KiB, 64 KiB Svnapot and 2 MiB", () => {
  const { m, chan } = boot();
  const d = trackedDomain(m, chan);
  const leaves = new Map<number, number>();
  d.pt.forEachLeaf((_pfn, n) => leaves.set(n, (leaves.get(n) ?? 0) + 1));
  assert.deepEqual([...leaves].sort((a, b) => a[0] - b[0]), [[1, 8], [16, 5], [512, 2]]);
});

Deno.test("DMA writes through a DIRTY_TRACKING domain: the bitmap is exactly the IOVA footprint", async (t) => {
  for (const iommuBus of ["platform", "pci"] as const) {
    await t.step(iommuBus, () => {
      const { m, chan } = boot({ iommuBus });
      assert.equal(device_iommu_capable(chan.dev, IOMMU_CAP_DIRTY_TRACKING), true);
      const d = trackedDomain(m, chan);
      d.dirty_ops!.set_dirty_tracking(d, true);
      assert.deepEqual(pages(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR)), [], "a clean start");

      // Writes: across two 4 KiB leaves, a few bytes of a 64 KiB and of a 2 MiB leaf, a fill.
      // Reads: every copy's source, a 64 KiB and a 2 MiB leaf among them.
      ok(chan.memcpy(GPA_4K + 3 * K4 + 0x100, GPA_SRC, K4));
      ok(chan.memcpy(GPA_64K + K64 + 0x5000, GPA_SRC + 0x20, 8));
      ok(chan.memcpy(GPA_2M + M2 + 0x1_2340, GPA_SRC, 64));
      ok(chan.memset(GPA_4K + 7 * K4, 0x5a5a_5a5a, K4));
      ok(chan.memcpy(GPA_4K, GPA_2M + 0x8000, 0x800));
      ok(chan.memcpy(GPA_4K + 0x800, GPA_64K + 2 * K64, 0x800));
      const written = footprint(
        [GPA_4K + 3 * K4 + 0x100, K4],
        [GPA_64K + K64 + 0x5000, 8],
        [GPA_2M + M2 + 0x1_2340, 64],
        [GPA_4K + 7 * K4, K4],
        [GPA_4K, K4],
      );
      assert.equal(pages(written).length, 4 + 16 + 512);

      assert.deepEqual(pages(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR)), pages(written));
      assert.deepEqual(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR), written, "NO_CLEAR: again");
      assert.deepEqual(getDirtyBitmap(d), written, "the clearing read reports the same");
      assert.deepEqual(pages(getDirtyBitmap(d)), [], "then nothing");

      // New writes show, old ones do not; page 3 again proves its IOTLB entry was flushed.
      ok(chan.memcpy(GPA_4K + 3 * K4, GPA_SRC, 16));
      ok(chan.memcpy(GPA_64K + 3 * K64 + 0xf000, GPA_SRC, 0x1000));
      assert.deepEqual(
        getDirtyBitmap(d),
        footprint([GPA_4K + 3 * K4, 16], [GPA_64K + 3 * K64 + 0xf000, K4]),
      );

      // The data went where the table says.
      const phys = d.pt.iova_to_phys(GPA_4K + 7 * K4 + 0x10);
      assert.equal(m.kernel.mem.read32(phys), 0x5a5a_5a5a);
      iommu_detach_device(d, chan.dev);
      iommu_domain_free(d);
    });
  }
});

Deno.test("the IOTLB flush after a clearing read reaches the silicon: without it a rewrite is missed", () => {
  const { chan, m } = boot();
  const d = trackedDomain(m, chan);
  d.dirty_ops!.set_dirty_tracking(d, true);
  const page = GPA_4K + 5 * K4;
  ok(chan.memcpy(page, GPA_SRC, 64));
  // A clearing read whose gather is not synced yet.
  const data = new Uint8Array(Math.ceil(LENGTH / K4 / 64) * 8);
  const dirtyBits = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirtyBits, iova_bitmap_alloc(BASE, LENGTH, K4, data), gather);
  d.dirty_ops!.read_and_clear_dirty(d, BASE, LENGTH, 0, dirtyBits);
  assert.deepEqual(data, footprint([page, 64]));
  ok(chan.memcpy(page, GPA_SRC, 64));
  // The IOMMU's IOTLB still holds the leaf writable with D: the write does not walk.
  assert.deepEqual(pages(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR)), []);
  iommu_iotlb_sync(d, gather); // IOTINVAL.GVMA of the page, IOFENCE.C
  ok(chan.memcpy(page, GPA_SRC, 64));
  assert.deepEqual(getDirtyBitmap(d), footprint([page, 64]), "flushed: the write is seen");
});

Deno.test("DMA reads never set D: a read-only workload leaves the bitmap empty", () => {
  const { chan, m } = boot();
  const d = trackedDomain(m, chan);
  d.dirty_ops!.set_dirty_tracking(d, true);
  const sink = m.kernel.pages.alloc(0);
  iommu_map(d, 0x6000_0000, sink, K4, RW); // outside the bitmap's range
  for (const src of [GPA_4K, GPA_64K + 0x8000, GPA_2M + M2 - K4, GPA_SRC]) {
    ok(chan.memcpy(0x6000_0000, src, K4));
  }
  assert.deepEqual(pages(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR)), []);
});

Deno.test("iommufd's enable order (clear with no bitmap, then set_dirty_tracking) never faults the device", async (t) => {
  await t.step("the driver: writes go through between the two, the snapshot is clean", () => {
    const { m, chan } = boot();
    const d = trackedDomain(m, chan);
    ok(chan.memcpy(GPA_4K, GPA_SRC, K4)); // tracking off: D preset, nothing to update
    clearDirtyData(d); // iopt_set_dirty_tracking(): iopt_clear_dirty_data() ...
    ok(chan.memcpy(GPA_4K + K4, GPA_SRC, K4)); // ... a write in between ...
    ok(chan.memcpy(GPA_2M, GPA_SRC, K4));
    d.dirty_ops!.set_dirty_tracking(d, true); // ... then ops->set_dirty_tracking(true)
    assert.deepEqual(pages(getDirtyBitmap(d, IOMMU_DIRTY_NO_CLEAR)), []);
    ok(chan.memcpy(GPA_4K + 2 * K4, GPA_SRC, K4));
    assert.deepEqual(getDirtyBitmap(d), footprint([GPA_4K + 2 * K4, K4]));
    assert.deepEqual(m.kernel.dmesg.grep("Fault"), []);
  });
  await t.step("the hazard is real: D cleared while GADE is off, the next write faults", () => {
    const { m, chan } = boot();
    const d = trackedDomain(m, chan);
    // What plugging generic-pt's read in directly (the RFC's IOMMU_PT_DIRTY_OPS) would do.
    const dirtyBits = new IommuDirtyBitmap();
    const gather = new IommuIotlbGather();
    iommu_dirty_bitmap_init(dirtyBits, null, gather);
    d.pt.read_and_clear_dirty(BASE, LENGTH, 0, dirtyBits);
    iommu_iotlb_sync(d, gather);
    const tx = chan.memcpy(GPA_4K + K4, GPA_SRC, K4);
    assert.equal(tx.status, "error");
    assert.equal(tx.errCause, 23, "store/AMO guest-page fault");
    assert.equal(tx.errAddr, GPA_4K + K4);
  });
});

Deno.test("tracking off again: D back on every writable leaf, GADE out, DMA goes on", () => {
  const { m, chan } = boot();
  const d = trackedDomain(m, chan);
  d.dirty_ops!.set_dirty_tracking(d, true);
  ok(chan.memcpy(GPA_64K, GPA_SRC, K4));
  d.dirty_ops!.set_dirty_tracking(d, false);
  assert.equal(d.dc_tc, 0n);
  // Every leaf written and unwritten goes through without GADE.
  for (const gpa of [GPA_4K, GPA_64K, GPA_64K + K64, GPA_2M, GPA_2M + M2]) {
    ok(chan.memcpy(gpa, GPA_SRC, 64));
  }
  assert.throws(() => getDirtyBitmap(d), { code: "EINVAL" }, "no dirty state while off");
  d.dirty_ops!.set_dirty_tracking(d, true);
  assert.deepEqual(pages(getDirtyBitmap(d)), [], "on again: a clean snapshot");
  assert.deepEqual(m.kernel.dmesg.grep("Fault"), []);
});

Deno.test("without the feature loaded the machine behaves as before", () => {
  const plain = Machine.boot({ msiThroughIommu: false });
  const { m } = boot();
  assert.deepEqual(m.dmesg, plain.dmesg, "the same boot log");
  const chan = plain.dmaChannel(0);
  assert.equal(device_iommu_capable(chan.dev, IOMMU_CAP_DIRTY_TRACKING), false);
  assert.throws(
    () => iommu_paging_domain_alloc_flags(chan.dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING),
    { code: "EOPNOTSUPP" },
  );
  const s2 = iommu_paging_domain_alloc_flags(chan.dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
  assert.equal(s2.dirty_ops, null);
  iommu_attach_device(s2, chan.dev);
  const page = plain.kernel.pages.alloc(1);
  iommu_map(s2, GPA_4K, page, 2 * K4, RW);
  ok(chan.memcpy(GPA_4K + K4, GPA_4K, K4));
  iommu_detach_device(s2, chan.dev);
  iommu_domain_free(s2);
});

Deno.test("a machine without AMO_HWAD: the skip line, not capable, DIRTY_TRACKING is EOPNOTSUPP", async (t) => {
  await t.step("the feature alone on a machine that lacks it", () => {
    const m = Machine.boot({
      caps: { amoHwad: false },
      iommu: riscvIommu({ features: [dirty()] }),
      msiThroughIommu: false,
    });
    assert.deepEqual(m.kernel.dmesg.grep("dirty-tracking"), [
      "riscv,iommu 3010000.iommu: dirty-tracking disabled: no capabilities.AMO_HWAD",
    ]);
    const chan = m.dmaChannel(0);
    assert.equal(device_iommu_capable(chan.dev, IOMMU_CAP_DIRTY_TRACKING), false);
    for (
      const flags of [
        IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT,
      ]
    ) {
      assert.throws(() => iommu_paging_domain_alloc_flags(chan.dev, flags), {
        code: "EOPNOTSUPP",
      });
    }
  });
  await t.step("the part asks the silicon for AMO_HWAD over the machine's caps", () => {
    const { m, chan } = boot({ caps: { amoHwad: false } });
    assert.deepEqual(m.kernel.dmesg.grep("dirty-tracking"), []);
    assert.equal(device_iommu_capable(chan.dev, IOMMU_CAP_DIRTY_TRACKING), true);
  });
});

/**
 * One pass of a tracking domain's life on the machine with the `n`th page or object allocation
 * failing: alloc, attach, map, enable, DMA, clearing read, disable, detach, unmap, free. Returns
 * whether the injected failure fired; nothing may be left behind either way.
 */
function failNthPass(which: "pages" | "slab", n: number): boolean {
  const { m, chan } = boot();
  const { kernel } = m;
  const before = { pages: kernel.pages.allocations(), slab: kernel.slab.allocations() };
  const buf = kernel.pages.alloc(9); // 2 MiB of RAM behind all three leaves
  let d: RiscvIommuDomain | null = null;
  const pass = new FailNthSteps(`${which} failure ${n}`);
  const step = pass.step.bind(pass);
  kernel[which].failNth(n);
  step("alloc", () => {
    d = iommu_paging_domain_alloc_flags(
      chan.dev,
      IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    ) as RiscvIommuDomain;
  });
  step("attach", () => iommu_attach_device(d!, chan.dev));
  step("map", () => {
    iommu_map(d!, GPA_4K, buf, K4, RW);
    iommu_map(d!, GPA_64K, buf + K64, K64, RW);
    iommu_map(d!, GPA_2M, buf, M2, RW);
  });
  step("enable", () => d!.dirty_ops!.set_dirty_tracking(d!, true));
  step("dma", () => ok(chan.memcpy(GPA_2M + K4, GPA_64K, K4)));
  step("read", () => assert.equal(pages(getDirtyBitmap(d!)).length, 512));
  step("disable", () => d!.dirty_ops!.set_dirty_tracking(d!, false));
  step("detach", () => iommu_detach_device(d!, chan.dev));
  kernel[which].failNth(0);

  if (d !== null) {
    const dom: RiscvIommuDomain = d;
    if (iommu_get_domain_for_dev(chan.dev) === dom) iommu_detach_device(dom, chan.dev);
    for (const [gpa, len] of [[GPA_4K, K4], [GPA_64K, K64], [GPA_2M, M2]]) {
      if (dom.pt.iova_to_phys(gpa) !== 0) assert.equal(iommu_unmap(dom, gpa, len), len);
    }
    iommu_domain_free(dom);
  }
  kernel.pages.free(buf, 9);
  const again = iommu_paging_domain_alloc_flags(chan.dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  assert.equal((again as RiscvIommuDomain).gscid, 1, `GSCID leaked at ${which} failure ${n}`);
  iommu_domain_free(again);
  assert.deepEqual(kernel.pages.allocations(), before.pages, `pages leaked at ${which} ${n}`);
  assert.deepEqual(kernel.slab.allocations(), before.slab, `objects leaked at ${which} ${n}`);
  return pass.failed !== null;
}

Deno.test("fail-nth: every allocation of alloc/attach/map/set_dirty_tracking/read/detach unwinds", async (t) => {
  assert.equal(failNthPass("pages", 0), false, "the scenario runs clean without injection");
  // Pages: the 16 KiB root, and the maps' tables (levels 3 to 0 for the 4 KiB leaf, a level-0
  // table for the 64 KiB one, a level-1 table for the 2 MiB one). Objects: the domain, its bond,
  // the bond back to the DMA domain. set_dirty_tracking and the reads allocate none.
  for (const [which, count] of [["pages", 7], ["slab", 3]] as const) {
    await t.step(which, () => {
      assert.equal(failNthSweep((n) => failNthPass(which, n)), count, "allocations swept");
    });
  }
});
