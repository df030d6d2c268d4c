// The series against the riscv-iommu test fake: capability and skip line, the DIRTY_TRACKING
// allocation, the exact register and command sequences of set_dirty_tracking on and off and of
// a clearing read, the Linux enable order, and the attach check across two IOMMUs.
import assert from "node:assert/strict";
import {
  Device,
  device_add,
  devm_kzalloc,
  type FwNode,
  generic_handle_domain_irq,
  IoMem,
  irq_create_mapping,
  irq_domain_create_linear,
  MmioRecorder,
  type SimClock,
} from "@iommu-lab/kernel";
import type { TestRam } from "@iommu-lab/kernel/testing";
import {
  device_iommu_capable,
  iommu_attach_device,
  IOMMU_CAP_DIRTY_TRACKING,
  IOMMU_CAP_NOEXEC,
  iommu_detach_device,
  iommu_dirty_bitmap_init,
  IOMMU_DIRTY_NO_CLEAR,
  iommu_domain_free,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_iotlb_sync,
  iommu_map,
  iommu_paging_domain_alloc,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDirtyBitmap,
  type IommuDomain,
  IommuIotlbGather,
  iova_bitmap_alloc,
} from "@iommu-lab/iommu";
import {
  riscv_iommu_init,
  riscv_iommu_readl,
  riscv_iommu_readq,
  RiscvIommuDevice,
  type RiscvIommuDomain,
} from "@iommu-lab/riscv-iommu";
import {
  CAP,
  commandsOf,
  dcAddress,
  deviceContext,
  FAKE_IOMMU_CAPS,
  FakeIommu,
  mmioTrace,
  TC,
  type TestSystem,
  testSystem,
} from "@iommu-lab/riscv-iommu/testing";
import { dirty, riscv_iommu_dirty_ops } from "./mod.ts";

const X4 = 7n << 17n; // Sv39x4, Sv48x4, Sv57x4
const { AMO_HWAD, S } = CAP;
const { V, GADE } = TC;
const PTE_R = 1n << 1n;
const PTE_W = 1n << 2n;
const PTE_A = 1n << 6n;
const PTE_D = 1n << 7n;
const RW = IOMMU_READ | IOMMU_WRITE;
const EP = 5;

/** A fake with AMO_HWAD and the x4 modes, the feature loaded, endpoint ID 5 probed. */
function system(caps = FAKE_IOMMU_CAPS | X4 | AMO_HWAD) {
  const sys = testSystem({ caps, features: [dirty()] });
  const ep = sys.addEndpoint("ep0", EP);
  return { sys, ep };
}

/** A tracking domain attached to the endpoint. */
function tracked(caps?: bigint) {
  const { sys, ep } = system(caps);
  const d = iommu_paging_domain_alloc_flags(
    ep,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  ) as RiscvIommuDomain;
  iommu_attach_device(d, ep);
  return { sys, ep, d };
}

/**
 * The physical address of the leaf PTE mapping `iova` in a second-stage table, found as the
 * IOMMU walks it (RISC-V privileged spec, Sv57x4: 11 index bits at the root, 9 below).
 */
function leafPte(sys: TestSystem, d: RiscvIommuDomain, iova: number): number {
  let table = d.pt.hwInfo().rootPa;
  const pfn = Math.floor(iova / 4096);
  for (let level = d.pt.topLevel;; level--) {
    const width = level === d.pt.topLevel ? 2 ** (d.pt.vaBits - 12 - 9 * level) : 512;
    const pa = table + (Math.floor(pfn / 2 ** (9 * level)) % width) * 8;
    const pte = sys.ram.read64(pa);
    assert.ok(pte & 1n, `IOVA 0x${iova.toString(16)} unmapped at level ${level}`);
    if (pte & (PTE_R | PTE_W)) return pa;
    table = Number(pte >> 10n & (2n ** 44n - 1n)) * 4096;
  }
}

/** What the IOMMU does on a write through a leaf with GADE: sets D (one copy of an Svnapot leaf). */
function deviceWrite(sys: TestSystem, d: RiscvIommuDomain, iova: number): void {
  const pa = leafPte(sys, d, iova);
  sys.ram.write64(pa, sys.ram.read64(pa) | PTE_A | PTE_D);
}

function isDirty(sys: TestSystem, d: RiscvIommuDomain, iova: number): boolean {
  return (sys.ram.read64(leafPte(sys, d, iova)) & PTE_D) !== 0n;
}

/**
 * Records, in order, the stores to `watch` (name → physical address) with how many commands
 * the fake had run by then; returns the log.
 */
function watchStores(sys: TestSystem, watch: Record<string, number>): string[] {
  const log: string[] = [];
  const names = new Map(Object.entries(watch).map(([n, pa]) => [pa, n]));
  const ram = sys.ram as TestRam;
  const store64 = ram.store64.bind(ram);
  ram.store64 = (pa, lo, hi) => {
    const name = names.get(pa);
    if (name !== undefined) {
      const v = BigInt(hi >>> 0) << 32n | BigInt(lo >>> 0);
      log.push(`${name}=${v.toString(16)} @${sys.fake.commands.length}`);
    }
    store64(pa, lo, hi);
  };
  return log;
}

/** iommufd's read: the bitmap of `[iova, iova + length)` at 4 KiB, the gather flushed after. */
function getDirtyBitmap(d: IommuDomain, iova: number, length: number, flags = 0): Uint8Array {
  const data = new Uint8Array(Math.ceil(length / 4096 / 64) * 8);
  const dirty = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirty, iova_bitmap_alloc(iova, length, 4096, data), gather);
  d.dirty_ops!.read_and_clear_dirty(d, iova, length, flags, dirty);
  iommu_iotlb_sync(d, gather);
  return data;
}

/** The page numbers (from the bitmap's start) whose bits are set. */
function bits(data: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < data.length * 8; i++) if (data[i >> 3] >> (i & 7) & 1) out.push(i);
  return out;
}

Deno.test("capable(IOMMU_CAP_DIRTY_TRACKING) with capabilities.AMO_HWAD, only that capability", () => {
  const { ep } = system();
  assert.equal(device_iommu_capable(ep, IOMMU_CAP_DIRTY_TRACKING), true);
  assert.equal(device_iommu_capable(ep, IOMMU_CAP_NOEXEC), false);
});

Deno.test("without capabilities.AMO_HWAD: the skip line, not capable, DIRTY_TRACKING is EOPNOTSUPP", () => {
  const { sys, ep } = system(FAKE_IOMMU_CAPS | X4);
  assert.deepEqual(sys.kernel.dmesg.grep("dirty-tracking"), [
    "riscv,iommu 3010000.iommu: dirty-tracking disabled: no capabilities.AMO_HWAD",
  ]);
  assert.equal(device_iommu_capable(ep, IOMMU_CAP_DIRTY_TRACKING), false);
  const objects = sys.kernel.slab.allocatedObjects;
  const pages = sys.kernel.pages.allocatedPages;
  for (const flags of [IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_DIRTY_TRACKING | 1]) {
    assert.throws(() => iommu_paging_domain_alloc_flags(ep, flags), { code: "EOPNOTSUPP" });
  }
  assert.equal(sys.kernel.slab.allocatedObjects, objects);
  assert.equal(sys.kernel.pages.allocatedPages, pages);
});

Deno.test("DIRTY_TRACKING allocates a second-stage domain with dirty_ops; other domains have none", () => {
  const { sys, ep } = system();
  for (
    const flags of [
      IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
      IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT,
    ]
  ) {
    const d = iommu_paging_domain_alloc_flags(ep, flags) as RiscvIommuDomain;
    assert.equal(d.second_stage, true);
    assert.equal(d.gscid, 1);
    assert.equal(d.dirty_ops, riscv_iommu_dirty_ops);
    assert.equal(d.pt.features.dirtyTrackingActive, false, "tracking starts off");
    assert.equal(d.dc_tc, 0n);
    iommu_domain_free(d);
  }
  const parent = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT);
  assert.equal(parent.dirty_ops, null, "a nesting parent alone does not track");
  iommu_domain_free(parent);
  const s1 = iommu_paging_domain_alloc(ep);
  assert.equal(s1.dirty_ops, null);
  iommu_domain_free(s1);
  const objects = sys.kernel.slab.allocatedObjects;
  const data = { type: 1, data: new Uint8Array(8) };
  assert.throws(
    () => iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, data),
    { code: "EOPNOTSUPP" },
  );
  assert.throws(
    () =>
      iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID),
    { code: "EOPNOTSUPP" },
  );
  assert.equal(sys.kernel.slab.allocatedObjects, objects);
});

Deno.test("set_dirty_tracking(true): GADE in place, invalidated, then the presets cleaned and flushed", () => {
  const { sys, ep, d } = tracked();
  iommu_map(d, 0x10_0000, 0x8100_0000, 0x1000, RW); // one 4 KiB leaf, D preset
  const pte = leafPte(sys, d, 0x10_0000);
  assert.equal(sys.ram.read64(pte) & (PTE_A | PTE_D), PTE_A | PTE_D);
  const [tc] = deviceContext(sys, EP);
  assert.equal(tc, V);
  const stores = watchStores(sys, { tc: dcAddress(sys, EP), pte });
  const t0 = sys.iommu!.cmdq.tail;
  sys.rec.clear();
  const cmds = commandsOf(sys, () => d.dirty_ops!.set_dirty_tracking(d, true));
  assert.deepEqual(cmds, [
    // The context (RISC-V IOMMU spec v1.0, §6.3.1): with a G-stage, VMA and GVMA of its GSCID.
    "IODIR.INVAL_DDT did=0x5",
    "IOTINVAL.VMA gscid=1",
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
    // The leaf whose preset D was taken: its IOTLB entry may still let writes skip the update.
    "IOTINVAL.GVMA gscid=1 addr=0x100000",
    "IOFENCE.C pr pw",
  ]);
  // GADE with V kept, in one store, before any command; D cleaned only once GADE is fenced in.
  assert.deepEqual(stores, ["tc=81 @0", `pte=${(sys.ram.read64(pte)).toString(16)} @4`]);
  assert.equal(sys.ram.read64(pte) & (PTE_A | PTE_D | PTE_W), PTE_A | PTE_W);
  const ring = (n: number) => `w cqt 0x${(t0 + n).toString(16)}`;
  const fence = (n: number) => ["r cqcsr 0x10003", `r cqh 0x${(t0 + n).toString(16)}`];
  assert.deepEqual(mmioTrace(sys.rec.accesses), [
    ...[1, 2, 3, 4].map(ring),
    ...fence(4),
    ...[5, 6].map(ring),
    ...fence(6),
  ]);
  assert.equal(deviceContext(sys, EP)[0], V | GADE);
  assert.equal(d.dc_tc, GADE);
  assert.equal(d.pt.features.dirtyTrackingActive, true);
  // Leaves mapped from now on come without D.
  iommu_map(d, 0x20_0000, 0x8120_0000, 0x1000, RW);
  assert.equal(isDirty(sys, d, 0x20_0000), false);
  assert.deepEqual(commandsOf(sys, () => d.dirty_ops!.set_dirty_tracking(d, true)), [], "a no-op");
  iommu_detach_device(d, ep);
});

Deno.test("set_dirty_tracking(false): D given back, the IOTLB flushed, and only then GADE cleared", () => {
  const { sys, ep, d } = tracked();
  d.dirty_ops!.set_dirty_tracking(d, true);
  iommu_map(d, 0x10_0000, 0x8100_0000, 0x1000, RW); // no D: the IOMMU sets it
  iommu_map(d, 0x20_0000, 0x8120_0000, 0x1000, IOMMU_READ); // read-only: never D
  const pte = leafPte(sys, d, 0x10_0000);
  const ro = leafPte(sys, d, 0x20_0000);
  const stores = watchStores(sys, { tc: dcAddress(sys, EP), pte, ro });
  const cmds = commandsOf(sys, () => d.dirty_ops!.set_dirty_tracking(d, false));
  assert.deepEqual(cmds, [
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x5",
    "IOTINVAL.VMA gscid=1",
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
  ]);
  const v = sys.ram.read64(pte);
  assert.equal(v & (PTE_A | PTE_D | PTE_W), PTE_A | PTE_D | PTE_W);
  assert.deepEqual(stores, [`pte=${v.toString(16)} @0`, "tc=1 @2"], "D, flush, then GADE off");
  assert.equal(sys.ram.read64(ro) & PTE_D, 0n);
  assert.equal(deviceContext(sys, EP)[0], V);
  assert.equal(d.dc_tc, 0n);
  assert.deepEqual(commandsOf(sys, () => d.dirty_ops!.set_dirty_tracking(d, false)), [], "a no-op");
  iommu_detach_device(d, ep);
});

Deno.test("a clearing read: the dirty leaves reported and cleaned, IOTINVAL.GVMA of them on the sync", async (t) => {
  const { sys, d } = tracked();
  d.dirty_ops!.set_dirty_tracking(d, true);
  iommu_map(d, 0x10_0000, 0x8100_0000, 0x4000, RW); // four 4 KiB leaves
  iommu_map(d, 0x20_0000, 0x8120_0000, 0x1_0000, RW); // one 64 KiB Svnapot leaf
  iommu_map(d, 0x40_0000, 0x8140_0000, 0x20_0000, RW); // one 2 MiB leaf

  await t.step("4 KiB: the page's bit, the leaf cleaned, one IOTINVAL.GVMA", () => {
    deviceWrite(sys, d, 0x10_2000);
    let data!: Uint8Array;
    const cmds = commandsOf(sys, () => data = getDirtyBitmap(d, 0x10_0000, 0x4000));
    assert.deepEqual(bits(data), [2]);
    assert.equal(isDirty(sys, d, 0x10_2000), false);
    assert.deepEqual(cmds, ["IOTINVAL.GVMA gscid=1 addr=0x102000", "IOFENCE.C pr pw"]);
  });
  await t.step("NO_CLEAR: reported, left dirty, nothing to flush", () => {
    deviceWrite(sys, d, 0x10_1000);
    let data!: Uint8Array;
    const cmds = commandsOf(
      sys,
      () => data = getDirtyBitmap(d, 0x10_0000, 0x4000, IOMMU_DIRTY_NO_CLEAR),
    );
    assert.deepEqual(bits(data), [1]);
    assert.equal(isDirty(sys, d, 0x10_1000), true);
    assert.deepEqual(cmds, []);
    getDirtyBitmap(d, 0x10_0000, 0x4000);
  });
  await t.step("64 KiB Svnapot: one dirty copy reports all 16 pages and cleans every copy", () => {
    deviceWrite(sys, d, 0x20_7000);
    let data!: Uint8Array;
    const cmds = commandsOf(sys, () => data = getDirtyBitmap(d, 0x20_0000, 0x1_0000));
    assert.deepEqual(bits(data), Array.from({ length: 16 }, (_, i) => i));
    for (let i = 0; i < 16; i++) assert.equal(isDirty(sys, d, 0x20_0000 + i * 4096), false);
    assert.deepEqual(cmds, [
      ...Array.from(
        { length: 16 },
        (_, i) => `IOTINVAL.GVMA gscid=1 addr=0x${(0x20_0000 + i * 4096).toString(16)}`,
      ),
      "IOFENCE.C pr pw",
    ]);
  });
  await t.step("2 MiB: all 512 pages, one IOTINVAL.GVMA at the 2 MiB stride", () => {
    deviceWrite(sys, d, 0x4f_f000);
    let data!: Uint8Array;
    const cmds = commandsOf(sys, () => data = getDirtyBitmap(d, 0x40_0000, 0x20_0000));
    assert.equal(bits(data).length, 512);
    assert.deepEqual(cmds, ["IOTINVAL.GVMA gscid=1 addr=0x400000", "IOFENCE.C pr pw"]);
  });
  await t.step("no gather from the caller: the driver flushes the GSCID itself", () => {
    deviceWrite(sys, d, 0x10_3000);
    const dirty = new IommuDirtyBitmap();
    iommu_dirty_bitmap_init(dirty, null, null);
    const cmds = commandsOf(
      sys,
      () => d.dirty_ops!.read_and_clear_dirty(d, 0x10_0000, 0x4000, 0, dirty),
    );
    assert.equal(isDirty(sys, d, 0x10_3000), false);
    assert.deepEqual(cmds, ["IOTINVAL.GVMA gscid=1", "IOFENCE.C pr pw"]);
  });
});

Deno.test("with capabilities.S a clearing read of a 64 KiB leaf is one NAPOT-range IOTINVAL.GVMA", () => {
  const { sys, d } = tracked(FAKE_IOMMU_CAPS | X4 | AMO_HWAD | S);
  d.dirty_ops!.set_dirty_tracking(d, true);
  iommu_map(d, 0x20_0000, 0x8120_0000, 0x1_0000, RW);
  deviceWrite(sys, d, 0x20_0000);
  assert.deepEqual(commandsOf(sys, () => getDirtyBitmap(d, 0x20_0000, 0x1_0000)), [
    "IOTINVAL.GVMA gscid=1 range=0x200000+0x10000",
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("the Linux order (clear with no bitmap, then enable) never strips a preset D while GADE is off", () => {
  const { sys, d } = tracked();
  iommu_map(d, 0x10_0000, 0x8100_0000, 0x2000, RW);
  // iommufd's iopt_set_dirty_tracking(): iopt_clear_dirty_data() first ...
  const dirty = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirty, null, gather);
  const cmds = commandsOf(sys, () => {
    d.dirty_ops!.read_and_clear_dirty(d, 0x10_0000, 0x2000, 0, dirty);
    iommu_iotlb_sync(d, gather);
  });
  assert.deepEqual(cmds, [], "nothing cleaned, nothing to flush");
  assert.equal(deviceContext(sys, EP)[0] & GADE, 0n);
  assert.equal(isDirty(sys, d, 0x10_0000), true, "a device write now goes through");
  assert.equal(isDirty(sys, d, 0x10_1000), true);
  // ... then set_dirty_tracking(true), which takes the presets once GADE is on.
  d.dirty_ops!.set_dirty_tracking(d, true);
  assert.equal(isDirty(sys, d, 0x10_0000), false);
  assert.deepEqual(bits(getDirtyBitmap(d, 0x10_0000, 0x2000)), [], "a clean snapshot");
  deviceWrite(sys, d, 0x10_1000);
  assert.deepEqual(bits(getDirtyBitmap(d, 0x10_0000, 0x2000)), [1]);
});

Deno.test("with tracking off a read with a bitmap is EINVAL; the arguments are still checked", () => {
  const { d } = tracked();
  iommu_map(d, 0x10_0000, 0x8100_0000, 0x1000, RW);
  assert.throws(() => getDirtyBitmap(d, 0x10_0000, 0x1000), { code: "EINVAL" });
  const dirty = new IommuDirtyBitmap();
  const read = (iova: number, size: number, flags: number) =>
    d.dirty_ops!.read_and_clear_dirty(d, iova, size, flags, dirty);
  assert.throws(() => read(0x10_0000, 0, 0), { code: "EINVAL" });
  assert.throws(() => read(0x10_0000, 0x1000, 4), { code: "EINVAL" });
  assert.throws(() => read(2 ** 60, 0x1000, 0), { code: "ERANGE" });
});

Deno.test("a device attached while tracking is on gets GADE; leaving, it keeps none", () => {
  const { sys, ep, d } = tracked();
  d.dirty_ops!.set_dirty_tracking(d, true);
  const ep1 = sys.addEndpoint("ep1", 6);
  iommu_attach_device(d, ep1);
  assert.equal(deviceContext(sys, 6)[0], V | GADE);
  // Off and on again: both contexts change, one fence each.
  assert.deepEqual(commandsOf(sys, () => d.dirty_ops!.set_dirty_tracking(d, false)), [
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
    ...[5, 6].flatMap((id) => [
      `IODIR.INVAL_DDT did=0x${id.toString(16)}`,
      "IOTINVAL.VMA gscid=1",
      "IOTINVAL.GVMA gscid=1",
      "IOFENCE.C pr pw",
    ]),
  ]);
  d.dirty_ops!.set_dirty_tracking(d, true);
  iommu_detach_device(d, ep1);
  assert.equal(deviceContext(sys, 6)[0] & GADE, 0n, "the DMA domain's context has no GADE");
  assert.equal(deviceContext(sys, EP)[0], V | GADE);
  iommu_detach_device(d, ep);
  iommu_domain_free(d);
});

/**
 * A second fake IOMMU, without AMO_HWAD, on the same kernel and driver instance as `sys`'s, and
 * an endpoint (ID 9) behind it, probed into the core.
 */
function secondIommu(sys: TestSystem): Device {
  const { kernel } = sys;
  const clock = kernel.clock as SimClock;
  const fake = new FakeIommu(sys.ram, clock, { caps: FAKE_IOMMU_CAPS | X4 });
  const wires = irq_domain_create_linear(kernel, null, 4, {}, "test-intc2");
  const irqs = [0, 1, 2, 3].map((v) => irq_create_mapping(wires, v));
  fake.raise = (vector) => void generic_handle_domain_irq(wires, vector);
  const fwnode: FwNode = { name: "iommu@3020000" };
  const dev = new Device(kernel, { name: "3020000.iommu-b", fwnode });
  const iommu = devm_kzalloc(
    dev,
    new RiscvIommuDevice(dev, new IoMem(new MmioRecorder(fake), 0x1000, clock), sys.drv),
  );
  iommu.caps = riscv_iommu_readq(iommu, 0);
  iommu.fctl = riscv_iommu_readl(iommu, 8);
  iommu.irqs = irqs;
  iommu.irqs_count = 4;
  riscv_iommu_init(iommu);
  const ep = new Device(kernel, { name: "ep-b", bus: sys.dev.bus });
  device_add(ep);
  ep.fwspec = { fwnode, ids: [9], flags: 0 };
  kernel.iommuLayer!.probeDevice(ep);
  return ep;
}

Deno.test("attach: a tracking domain to a device whose IOMMU cannot track is EINVAL (enforce_dirty)", () => {
  const { sys, ep, d } = tracked();
  const other = secondIommu(sys);
  // (Bound by hand, outside a bus: dmesg names the device without a driver.)
  assert.deepEqual(sys.kernel.dmesg.grep("dirty-tracking"), [
    "3020000.iommu-b: dirty-tracking disabled: no capabilities.AMO_HWAD",
  ]);
  assert.equal(device_iommu_capable(other, IOMMU_CAP_DIRTY_TRACKING), false);
  const objects = sys.kernel.slab.allocatedObjects;
  assert.throws(() => iommu_attach_device(d, other), { code: "EINVAL" });
  assert.equal(sys.kernel.slab.allocatedObjects, objects, "no bond left");
  assert.deepEqual(d.bonds.map((b) => b.dev), [ep]);
  // The same device takes a nesting parent that does not track.
  const parent = iommu_paging_domain_alloc_flags(other, IOMMU_HWPT_ALLOC_NEST_PARENT);
  iommu_attach_device(parent, other);
  iommu_detach_device(parent, other);
  iommu_domain_free(parent);
  iommu_detach_device(d, ep);
  iommu_domain_free(d);
});
