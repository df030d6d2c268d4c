import assert from "node:assert/strict";
import {
  Device,
  device_add,
  device_del,
  DeviceTree,
  dmaDirectOps,
  driver_register,
  Errno,
  type ErrnoName,
  iommu_fwspec_add_ids,
  isErrno,
  Kernel,
  of_platform_populate,
  platform_bus_init,
  platform_driver_register,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import {
  dev_iommu_ops,
  dev_iommu_priv_get,
  dev_iommu_priv_set,
  device_iommu_capable,
  iommu_attach_device,
  iommu_attach_group,
  IOMMU_CAP_CACHE_COHERENCY,
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_detach_device,
  iommu_detach_group,
  iommu_device_claim_dma_owner,
  iommu_device_register,
  iommu_device_release_dma_owner,
  iommu_device_unregister,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  iommu_domain_free,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  iommu_flush_iotlb_all,
  iommu_get_dma_domain,
  iommu_get_domain_for_dev,
  iommu_group_alloc,
  iommu_group_get,
  iommu_group_replace_domain,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  iommu_iotlb_gather_init,
  iommu_iotlb_sync,
  iommu_iova_to_phys,
  iommu_map,
  iommu_map_nosync,
  iommu_paging_domain_alloc,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
  iommu_subsys_init,
  iommu_sync_map,
  iommu_unmap,
  iommu_unmap_fast,
  IOMMU_WRITE,
  type IommuCore,
  type IommuDirtyOps,
  IommuDomain,
  type IommuDomainOps,
  type IommuOps,
} from "./iommu.ts";
import { iommuDmaOps } from "./dma_iommu.ts";
import { MockIommu, type MockMapTable, mockPagingDomain, mockSystem } from "./testing.ts";

const SZ_4K = 0x1000;
const SZ_2M = 0x20_0000;
const SZ_1G = 0x4000_0000;
const RW = IOMMU_READ | IOMMU_WRITE;

/** Identity checks that do not pretty-print the kernel's object graph on failure. */
function same(a: unknown, b: unknown, msg = "not the same object"): void {
  assert.ok(a === b, msg);
}

function notSame(a: unknown, b: unknown, msg = "the same object"): void {
  assert.ok(a !== b, msg);
}

function errno(code: ErrnoName) {
  return (e: unknown) => isErrno(e, code);
}

/** A paging domain that records map_pages/unmap_pages calls over a Map "page table". */
function recordingDomain(pgsize_bitmap: number, failOnCall = 0) {
  const calls: [string, number, number, number][] = [];
  const leaves = new Map<number, number>();
  const ops: IommuDomainOps = {
    map_pages(_d, iova, _paddr, pgsize, pgcount, _prot, mapped) {
      calls.push(["map", iova, pgsize, pgcount]);
      if (calls.length === failOnCall) throw new Error("injected");
      for (let i = 0; i < pgcount; i++) leaves.set(iova + i * pgsize, pgsize);
      mapped.bytes = pgsize * pgcount;
    },
    unmap_pages(_d, iova, pgsize, pgcount) {
      calls.push(["unmap", iova, pgsize, pgcount]);
      let n = 0;
      while (n < pgsize * pgcount && leaves.has(iova + n)) {
        const sz = leaves.get(iova + n)!;
        leaves.delete(iova + n);
        n += sz;
      }
      return n;
    },
  };
  return { domain: new IommuDomain(IOMMU_DOMAIN_UNMANAGED, ops, { pgsize_bitmap }), calls, leaves };
}

Deno.test("iommu_map() rejects size 0 with EINVAL", () => {
  const domain = mockPagingDomain();
  assert.throws(() => iommu_map(domain, SZ_2M, SZ_2M, 0, RW), errno("EINVAL"));
});

Deno.test("iommu_map() rejects iova, paddr or size unaligned to the smallest page (EINVAL)", async (t) => {
  const domain = mockPagingDomain();
  for (
    const [what, iova, pa, size] of [
      ["iova", SZ_2M + 0x800, SZ_2M, SZ_4K],
      ["paddr", SZ_2M, SZ_2M + 4, SZ_4K],
      ["size", SZ_2M, SZ_2M, SZ_4K + 1],
    ] as const
  ) {
    await t.step(what, () => {
      assert.throws(() => iommu_map(domain, iova, pa, size, RW), errno("EINVAL"));
      assert.equal(iommu_iova_to_phys(domain, SZ_2M), 0);
    });
  }
});

Deno.test("iommu_map() rejects a range that wraps the address space (EOVERFLOW)", () => {
  const { domain, calls } = recordingDomain(SZ_4K);
  const top = 2 ** 53 - SZ_4K;
  assert.throws(() => iommu_map(domain, top, 0, 2 * SZ_4K, RW), errno("EOVERFLOW"));
  assert.equal(calls.length, 0);
});

Deno.test("iommu_map() into a non-paging domain fails with EINVAL", () => {
  const identity = new IommuDomain(IOMMU_DOMAIN_IDENTITY, {}, { pgsize_bitmap: SZ_4K });
  assert.throws(() => iommu_map(identity, 0, 0, SZ_4K, RW), errno("EINVAL"));
  const blocked = new IommuDomain(IOMMU_DOMAIN_BLOCKED, {}, { pgsize_bitmap: SZ_4K });
  assert.throws(() => iommu_map(blocked, 0, 0, SZ_4K, RW), errno("EINVAL"));
  assert.equal(iommu_unmap(blocked, 0, SZ_4K), 0);
});

Deno.test("iommu_map() splits a range into the largest page sizes alignment allows (iommu_pgsize)", async (t) => {
  const bitmap = SZ_4K | SZ_2M | SZ_1G;
  await t.step("small pages up to a superpage boundary, then superpages, then the tail", () => {
    const { domain, calls } = recordingDomain(bitmap);
    iommu_map(domain, 0x3f_e000, 0x803f_e000, 0x2000 + SZ_2M + 0x1000, RW);
    assert.deepEqual(calls, [
      ["map", 0x3f_e000, SZ_4K, 2],
      ["map", 0x40_0000, SZ_2M, 1],
      ["map", 0x60_0000, SZ_4K, 1],
    ]);
  });
  await t.step("iova and paddr offset differently within 2 MiB: one run of 4 KiB pages", () => {
    const { domain, calls } = recordingDomain(bitmap);
    iommu_map(domain, 0x3f_e000, 0x803f_f000, 0x2000 + SZ_2M, RW);
    assert.deepEqual(calls, [["map", 0x3f_e000, SZ_4K, 514]]);
  });
  await t.step("1 GiB aligned: one superpage", () => {
    const { domain, calls } = recordingDomain(bitmap);
    iommu_map(domain, SZ_1G, 4 * SZ_1G, SZ_1G, RW);
    assert.deepEqual(calls, [["map", SZ_1G, SZ_1G, 1]]);
  });
  await t.step("iommu_unmap() splits the same way", () => {
    const { domain, calls } = recordingDomain(bitmap);
    iommu_map(domain, 0x3f_e000, 0x803f_e000, 0x2000 + SZ_2M, RW);
    calls.length = 0;
    assert.equal(iommu_unmap(domain, 0x3f_e000, 0x2000 + SZ_2M), 0x2000 + SZ_2M);
    assert.deepEqual(calls, [["unmap", 0x3f_e000, SZ_4K, 2], ["unmap", 0x40_0000, SZ_2M, 1]]);
  });
});

Deno.test("iommu_map() unwinds what it mapped when map_pages fails midway", async (t) => {
  await t.step("a driver error on the second call", () => {
    const { domain, leaves } = recordingDomain(SZ_4K | SZ_2M, 2);
    assert.throws(() => iommu_map(domain, 0x3f_f000, 0x803f_f000, SZ_4K + SZ_2M, RW), /injected/);
    assert.equal(leaves.size, 0);
  });
  await t.step("EADDRINUSE from the driver over an existing page", () => {
    const domain = mockPagingDomain();
    iommu_map(domain, 0x60_0000, 0x9000_0000, SZ_4K, RW);
    assert.throws(
      () => iommu_map(domain, 0x3f_f000, 0x803f_f000, SZ_4K + SZ_2M + SZ_4K, RW),
      errno("EADDRINUSE"),
    );
    assert.equal(iommu_iova_to_phys(domain, 0x3f_f000), 0);
    assert.equal(iommu_iova_to_phys(domain, 0x40_0000), 0);
    assert.equal(iommu_iova_to_phys(domain, 0x60_0000), 0x9000_0000);
  });
});

Deno.test("iommu_unmap() of what isn't mapped returns 0, so does a double unmap (a count, no errno, as Linux)", () => {
  const domain = mockPagingDomain();
  assert.equal(iommu_unmap(domain, SZ_2M, SZ_4K), 0);
  iommu_map(domain, SZ_2M, 0x9000_0000, 2 * SZ_4K, RW);
  assert.equal(iommu_unmap(domain, SZ_2M, 2 * SZ_4K), 2 * SZ_4K);
  assert.equal(iommu_unmap(domain, SZ_2M, 2 * SZ_4K), 0);
});

Deno.test("iommu_unmap() returns 0 for unaligned, zero and wrapping ranges and unmaps nothing (Linux returns a count, not an errno)", () => {
  const domain = mockPagingDomain();
  iommu_map(domain, SZ_2M, 0x9000_0000, 2 * SZ_4K, RW);
  assert.equal(iommu_unmap(domain, SZ_2M + 0x10, SZ_4K), 0);
  assert.equal(iommu_unmap(domain, SZ_2M, SZ_4K - 1), 0);
  assert.equal(iommu_unmap(domain, SZ_2M, 0), 0);
  assert.equal(iommu_unmap(domain, 2 ** 53 - SZ_4K, 2 * SZ_4K), 0);
  assert.equal(iommu_iova_to_phys(domain, SZ_2M + SZ_4K), 0x9000_1000);
});

Deno.test("iommu_unmap() stops at the first hole", () => {
  const domain = mockPagingDomain();
  iommu_map(domain, SZ_2M, 0x9000_0000, SZ_4K, RW);
  iommu_map(domain, SZ_2M + 2 * SZ_4K, 0x9000_2000, SZ_4K, RW);
  assert.equal(iommu_unmap(domain, SZ_2M, 3 * SZ_4K), SZ_4K);
  assert.equal(iommu_iova_to_phys(domain, SZ_2M + 2 * SZ_4K), 0x9000_2000);
});

Deno.test("iommu_map() of an aligned 1 GiB range installs one 1 GiB leaf", () => {
  const domain = mockPagingDomain();
  iommu_map(domain, SZ_1G, 4 * SZ_1G, SZ_1G, RW);
  assert.deepEqual([...(domain.pt as MockMapTable).leaves], [
    [SZ_1G, { size: SZ_1G, paddr: 4 * SZ_1G }],
  ]);
  assert.equal(iommu_iova_to_phys(domain, SZ_1G + 0x1234_5678), 4 * SZ_1G + 0x1234_5678);
});

Deno.test("iommu_iova_to_phys() of an identity domain is the IOVA", () => {
  const identity = new IommuDomain(IOMMU_DOMAIN_IDENTITY, {});
  assert.equal(iommu_iova_to_phys(identity, 0x8123_4567), 0x8123_4567);
});

Deno.test("iommu_device_register() probes devices configured before it (bus_iommu_probe)", () => {
  const sys = mockSystem({ register: false });
  const dev = sys.addDevice("dev0", 7);
  same(dev.iommu, null);
  sys.drv.register(sys.hwdev);
  const group = iommu_group_get(dev)!;
  assert.deepEqual(group.devices, [dev]);
  assert.equal(group.default_domain!.type, IOMMU_DOMAIN_DMA);
  same(iommu_get_domain_for_dev(dev), group.default_domain);
  same(sys.drv.attached.get(dev), group.default_domain);
  same(dev.dma, iommuDmaOps);
  assert.deepEqual(sys.kernel.dmesg.grep("Adding to iommu group"), [
    `mock dev0: Adding to iommu group ${group.id}`,
  ]);
});

Deno.test("a device whose IOMMU is not registered defers its probe until the IOMMU binds", () => {
  const sys = mockSystem({ register: false });
  const dev = new Device(sys.kernel, { name: "nic0", bus: sys.bus });
  dev.fwspec = { fwnode: sys.drv.fwnode, ids: [3], flags: 0 };
  device_add(dev);
  let probed = 0;
  driver_register(sys.bus, { name: "nic", probe: () => void probed++ });
  assert.equal(dev.state, "deferred");
  assert.equal(probed, 0);
  // The IOMMU's own driver binds and registers the instance; deferred probe runs again.
  const hw = new Device(sys.kernel, { name: "iommu0", bus: sys.bus, fwnode: sys.drv.fwnode });
  device_add(hw);
  driver_register(sys.bus, { name: "iommu", probe: (d) => sys.drv.register(d) });
  assert.equal(dev.state, "bound");
  assert.equal(probed, 1);
  notSame(iommu_group_get(dev), null);
  same(dev.dma, iommuDmaOps);
});

Deno.test("default domains are DMA (translated) by default, identity with iommu.passthrough", async (t) => {
  await t.step("translated", () => {
    const sys = mockSystem();
    const dev = sys.addDevice("dev0", 1);
    same(iommu_get_dma_domain(dev)!.type, IOMMU_DOMAIN_DMA);
    same(dev.dma, iommuDmaOps);
  });
  await t.step("passthrough", () => {
    const sys = mockSystem({ core: { passthrough: true } });
    const dev = sys.addDevice("dev0", 1);
    same(iommu_get_dma_domain(dev), sys.drv.ops.identity_domain);
    same(sys.drv.attached.get(dev), sys.drv.ops.identity_domain);
    same(dev.dma, dmaDirectOps);
  });
  await t.step("passthrough without an identity domain falls back to DMA", () => {
    const sys = mockSystem({ core: { passthrough: true }, iommu: { identity: false } });
    const dev = sys.addDevice("dev0", 1);
    same(iommu_get_dma_domain(dev)!.type, IOMMU_DOMAIN_DMA);
    assert.equal(sys.kernel.dmesg.grep("Falling back to IOMMU_DOMAIN_DMA").length, 1);
  });
  await t.step("def_domain_type overrides the policy", () => {
    const sys = mockSystem({
      iommu: { defDomainType: (d) => d.name === "gpu0" ? IOMMU_DOMAIN_IDENTITY : 0 },
    });
    same(iommu_get_dma_domain(sys.addDevice("gpu0", 1)), sys.drv.ops.identity_domain);
    same(iommu_get_dma_domain(sys.addDevice("nic0", 2))!.type, IOMMU_DOMAIN_DMA);
  });
});

Deno.test("probe_device() refusing a device (ENODEV) leaves it without IOMMU and leaks nothing", () => {
  const sys = mockSystem();
  const base = sys.kernel.pages.allocatedPages;
  const dev = new Device(sys.kernel, { name: "odd0", bus: sys.bus });
  dev.fwspec = { fwnode: sys.drv.fwnode, ids: [], flags: 0 };
  device_add(dev);
  assert.throws(() => sys.kernel.iommuLayer!.probeDevice(dev), errno("ENODEV"));
  same(dev.iommu, null);
  same(iommu_group_get(dev), null);
  same(dev.dma, dmaDirectOps);
  assert.equal(sys.kernel.pages.allocatedPages, base);
});

Deno.test("pci_device_group() groups devices sharing a requester ID", () => {
  const sys = mockSystem({ iommu: { pci: true } });
  const a = sys.addDevice("0000:00:01.0", 0x08);
  const b = sys.addDevice("0000:00:01.1", 0x08);
  const c = sys.addDevice("0000:00:02.0", 0x10);
  same(iommu_group_get(a), iommu_group_get(b));
  notSame(iommu_group_get(a), iommu_group_get(c));
  assert.deepEqual(iommu_group_get(a)!.devices, [a, b]);
  same(sys.drv.attached.get(b), iommu_group_get(a)!.default_domain);
});

Deno.test("iommu_attach_device() to a group of several devices fails with EINVAL", () => {
  const sys = mockSystem({ iommu: { pci: true } });
  const a = sys.addDevice("0000:00:01.0", 0x08);
  sys.addDevice("0000:00:01.1", 0x08);
  const domain = iommu_paging_domain_alloc(a);
  assert.throws(() => iommu_attach_device(domain, a), errno("EINVAL"));
  iommu_attach_group(domain, iommu_group_get(a)!);
  same(iommu_get_domain_for_dev(a), domain);
});

Deno.test("iommu_attach_device() of a domain of another IOMMU fails with EINVAL", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const other = mockSystem({ iommu: { name: "iommu@1" } });
  const foreign = iommu_paging_domain_alloc(other.addDevice("dev1", 1));
  assert.throws(() => iommu_attach_device(foreign, dev), errno("EINVAL"));
  assert.throws(() => iommu_group_replace_domain(iommu_group_get(dev)!, foreign), errno("EINVAL"));
  same(iommu_get_domain_for_dev(dev), iommu_get_dma_domain(dev));
});

Deno.test("iommu_attach_device() and iommu_detach_device() switch to and from an unmanaged domain", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const def = iommu_get_dma_domain(dev)!;
  const domain = iommu_paging_domain_alloc(dev);
  assert.equal(domain.type, IOMMU_DOMAIN_UNMANAGED);
  iommu_attach_device(domain, dev);
  same(iommu_get_domain_for_dev(dev), domain);
  same(sys.drv.attached.get(dev), domain);
  iommu_attach_device(domain, dev); // attaching the attached domain again is a no-op
  iommu_detach_device(domain, dev);
  same(iommu_get_domain_for_dev(dev), def);
  same(sys.drv.attached.get(dev), def);
  iommu_domain_free(domain);
});

Deno.test("iommu_device_claim_dma_owner() blocks DMA until the owner attaches; release restores the default domain", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const def = iommu_get_dma_domain(dev)!;
  const ictx = {};
  iommu_device_claim_dma_owner(dev, ictx);
  const group = iommu_group_get(dev)!;
  same(group.owner, ictx);
  same(iommu_get_domain_for_dev(dev), sys.drv.ops.blocked_domain);
  iommu_device_claim_dma_owner(dev, ictx); // the same owner again is counted
  assert.equal(group.owner_cnt, 2);
  assert.throws(() => iommu_device_claim_dma_owner(dev, {}), errno("EPERM"));
  const domain = iommu_paging_domain_alloc(dev);
  iommu_attach_group(domain, group);
  same(sys.drv.attached.get(dev), domain);
  iommu_detach_group(domain, group); // an owned group goes back to blocking, not to DMA
  same(iommu_get_domain_for_dev(dev), sys.drv.ops.blocked_domain);
  iommu_device_release_dma_owner(dev);
  same(iommu_get_domain_for_dev(dev), sys.drv.ops.blocked_domain);
  iommu_device_release_dma_owner(dev);
  same(iommu_get_domain_for_dev(dev), def);
  assert.equal(group.owner, null);
  assert.throws(() => iommu_device_release_dma_owner(dev), errno("EINVAL"));
  iommu_domain_free(domain);
});

Deno.test("iommu_device_claim_dma_owner(): EBUSY outside the default domain, EPERM with a bound driver, ENODEV without a group", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const domain = iommu_paging_domain_alloc(dev);
  iommu_attach_device(domain, dev);
  assert.throws(() => iommu_device_claim_dma_owner(dev, {}), errno("EBUSY"));
  iommu_detach_device(domain, dev);
  iommu_domain_free(domain);
  driver_register(sys.bus, { name: "dev", probe() {} });
  assert.equal(dev.state, "bound");
  assert.throws(() => iommu_device_claim_dma_owner(dev, {}), errno("EPERM"));
  assert.equal(iommu_group_get(dev)!.owner_cnt, 0);
  const stray = new Device(sys.kernel, { name: "stray" });
  assert.throws(() => iommu_device_claim_dma_owner(stray, {}), errno("ENODEV"));
});

Deno.test("iommu_attach_device() while another unmanaged domain is attached fails with EBUSY", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const d1 = iommu_paging_domain_alloc(dev);
  const d2 = iommu_paging_domain_alloc(dev);
  iommu_attach_device(d1, dev);
  assert.throws(() => iommu_attach_device(d2, dev), errno("EBUSY"));
  same(iommu_get_domain_for_dev(dev), d1);
});

Deno.test("iommu_detach_device() of a domain that is not attached fails with EINVAL", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const domain = iommu_paging_domain_alloc(dev);
  assert.throws(() => iommu_detach_device(domain, dev), errno("EINVAL"));
  const stray = new Device(sys.kernel, { name: "stray" });
  assert.throws(() => iommu_detach_device(domain, stray), errno("ENODEV"));
  assert.throws(() => iommu_attach_device(domain, stray), errno("ENODEV"));
});

Deno.test("iommu_group_replace_domain() moves between unmanaged domains directly", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const d1 = iommu_paging_domain_alloc(dev);
  const d2 = iommu_paging_domain_alloc(dev);
  const group = iommu_group_get(dev)!;
  iommu_attach_group(d1, group);
  sys.drv.attachLog.length = 0;
  iommu_group_replace_domain(group, d2);
  assert.deepEqual(sys.drv.attachLog, [{ dev, domain: d2, old: d1 }]);
  same(iommu_get_domain_for_dev(dev), d2);
  assert.equal(d1.attachedGroups, 0);
  iommu_domain_free(d1);
});

Deno.test("a failed attach puts the group's devices back on the old domain", () => {
  const sys = mockSystem({ iommu: { pci: true } });
  const a = sys.addDevice("0000:00:01.0", 0x08);
  const b = sys.addDevice("0000:00:01.1", 0x08);
  const group = iommu_group_get(a)!;
  const def = group.default_domain!;
  const domain = iommu_paging_domain_alloc(a);
  sys.drv.failAttach.add(b);
  assert.throws(() => iommu_attach_group(domain, group), errno("ENOSPC"));
  same(group.domain, def);
  same(sys.drv.attached.get(a), def);
  same(sys.drv.attached.get(b), def);
  assert.equal(domain.attachedGroups, 0);
  iommu_domain_free(domain);
});

Deno.test("iommu_domain_free() of an attached domain fails with EBUSY", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const domain = iommu_paging_domain_alloc(dev);
  iommu_attach_device(domain, dev);
  assert.throws(() => iommu_domain_free(domain), errno("EBUSY"));
  iommu_detach_device(domain, dev);
  iommu_domain_free(domain);
});

Deno.test("iommu_paging_domain_alloc() needs an IOMMU (ENODEV) and known flags (EOPNOTSUPP)", () => {
  const sys = mockSystem();
  const stray = new Device(sys.kernel, { name: "stray" });
  assert.throws(() => iommu_paging_domain_alloc(stray), errno("ENODEV"));
  const dev = sys.addDevice("dev0", 1);
  assert.throws(() => iommu_paging_domain_alloc_flags(dev, 1), errno("EOPNOTSUPP"));
});

Deno.test("iommu_paging_domain_alloc_flags() hands flags and user data to domain_alloc_paging_flags", () => {
  const sys = mockSystem({ register: false });
  const seen: [number, number | null][] = [];
  const dirty: IommuDirtyOps = {
    set_dirty_tracking: () => {},
    read_and_clear_dirty: () => {},
  };
  const ops: IommuOps = {
    ...sys.drv.ops,
    domain_alloc_paging_flags(dev, flags, userData) {
      seen.push([flags, userData?.type ?? null]);
      const domain = sys.drv.ops.domain_alloc_paging!(dev);
      if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) domain.dirty_ops = dirty;
      return domain;
    },
  };
  iommu_device_register(sys.drv.iommu, ops, sys.hwdev);
  const dev = sys.addDevice("dev0", 1);
  seen.length = 0; // the default domain's allocation
  const data = { type: 7, data: new Uint8Array([1, 2, 3]) };
  const tracked = iommu_paging_domain_alloc_flags(dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, data);
  const plain = iommu_paging_domain_alloc_flags(dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
  assert.deepEqual(seen, [[IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 7], [
    IOMMU_HWPT_ALLOC_NEST_PARENT,
    null,
  ]]);
  same(tracked.dirty_ops, dirty, "the domain's own dirty ops");
  same(plain.dirty_ops, null);
  same(tracked.owner, ops);
  assert.equal(tracked.type, IOMMU_DOMAIN_UNMANAGED);
  iommu_domain_free(tracked);
  iommu_domain_free(plain);
});

Deno.test("iommu_paging_domain_alloc_flags(): user data without domain_alloc_paging_flags is EOPNOTSUPP", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const objects = sys.kernel.slab.allocatedObjects;
  assert.throws(
    () => iommu_paging_domain_alloc_flags(dev, 0, { type: 1, data: new Uint8Array(4) }),
    errno("EOPNOTSUPP"),
  );
  assert.equal(sys.kernel.slab.allocatedObjects, objects);
  same(iommu_paging_domain_alloc(dev).dirty_ops, null, "no dirty tracking by default");
});

Deno.test("deleting a device attaches the release domain, releases it and frees its group's domains", () => {
  const sys = mockSystem();
  const base = sys.kernel.pages.allocatedPages;
  const baseObjects = sys.kernel.slab.allocatedObjects;
  const dev = sys.addDevice("dev0", 1);
  const def = iommu_get_dma_domain(dev)!;
  assert.ok(sys.kernel.pages.allocatedPages > base);
  // dev_iommu, the group, the DMA domain and its cookie.
  assert.equal(sys.kernel.slab.allocatedObjects, baseObjects + 4);
  device_del(dev);
  assert.equal(sys.kernel.slab.allocatedObjects, baseObjects, `${sys.kernel.slab.allocations()}`);
  assert.deepEqual(sys.drv.attachLog.at(-1), { dev, domain: sys.drv.ops.blocked_domain, old: def });
  same(dev.iommu, null);
  same(iommu_group_get(dev), null);
  same(dev.dma, dmaDirectOps);
  same(def.iova_cookie, null);
  assert.equal(sys.drv.contexts.size, 0);
  assert.equal(sys.kernel.pages.allocatedPages, base);
});

Deno.test("group numbers come from iommu_group_ida: a freed group's number is reused, a failed allocation uses none", async (t) => {
  const sys = mockSystem();
  const core = sys.kernel.iommuLayer as IommuCore;
  const a = sys.addDevice("dev0", 1);
  const b = sys.addDevice("dev1", 2);
  const [ida, idb] = [iommu_group_get(a)!.id, iommu_group_get(b)!.id];
  assert.deepEqual([ida, idb], [0, 1]);
  await t.step("freeing a group gives its number to the next one", () => {
    device_del(a);
    const c = sys.addDevice("dev2", 3);
    assert.equal(iommu_group_get(c)!.id, ida);
    assert.equal(
      sys.kernel.dmesg.grep("Adding to iommu group").at(-1),
      `mock dev2: Adding to iommu group ${ida}`,
    );
  });
  await t.step("an iommu_group_alloc() that fails with ENOMEM keeps no number", () => {
    sys.kernel.slab.failNth(1);
    assert.throws(() => iommu_group_alloc(core), errno("ENOMEM"));
    assert.equal(iommu_group_alloc(core).id, 2);
  });
});

Deno.test("iommu_device_unregister() releases the devices it serves", () => {
  const sys = mockSystem();
  const base = sys.kernel.pages.allocatedPages;
  const dev = sys.addDevice("dev0", 1);
  iommu_device_unregister(sys.drv.iommu);
  same(iommu_group_get(dev), null);
  same(dev.dma, dmaDirectOps);
  assert.equal(sys.kernel.pages.allocatedPages, base);
  assert.throws(() => iommu_device_unregister(sys.drv.iommu), errno("ENODEV"));
  assert.equal(sys.kernel.iommuLayer!.ofXlate(sys.drv.fwnode), null);
});

Deno.test("iommu_device_register() twice fails with EBUSY", () => {
  const sys = mockSystem();
  assert.throws(() => sys.drv.register(sys.hwdev), errno("EBUSY"));
});

Deno.test("iommu_device_register() of a second IOMMU for the same firmware node fails with EEXIST", () => {
  const sys = mockSystem();
  const twin = new MockIommu(sys.kernel, { name: sys.drv.fwnode.name });
  const hw = new Device(sys.kernel, { name: "twin", fwnode: sys.drv.fwnode });
  assert.throws(() => twin.register(hw), errno("EEXIST"));
  assert.equal(twin.iommu.ops, null);
  assert.equal(sys.kernel.iommuLayer!.ofXlate(sys.drv.fwnode) !== null, true);
});

Deno.test("iommu_subsys_init() twice fails with EBUSY; a foreign IOMMU layer makes registration ENODEV", () => {
  const sys = mockSystem();
  assert.throws(() => iommu_subsys_init(sys.kernel), errno("EBUSY"));
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  kernel.iommuLayer = {
    ofXlate: () => null,
    probeDevice() {},
    releaseDevice() {},
    prepareMsi() {},
  };
  const drv = new MockIommu(kernel);
  assert.throws(() => drv.register(new Device(kernel, { name: "iommu0" })), errno("ENODEV"));
  assert.equal(drv.iommu.ops, null);
});

Deno.test("dev_iommu_ops() and dev_iommu_priv_set() of a device without an IOMMU fail with ENODEV", () => {
  const sys = mockSystem();
  const stray = new Device(sys.kernel, { name: "stray" });
  assert.throws(() => dev_iommu_ops(stray), errno("ENODEV"));
  assert.throws(() => dev_iommu_priv_set(stray, 1), errno("ENODEV"));
  assert.equal(dev_iommu_priv_get(stray), undefined);
  const dev = sys.addDevice("dev0", 1);
  same(dev_iommu_ops(dev), sys.drv.ops);
  dev_iommu_priv_set(dev, "ctx");
  assert.equal(dev_iommu_priv_get(dev), "ctx");
});

Deno.test("iommu_attach_group()/iommu_group_replace_domain() of an empty group fail with ENODEV; detaching a domain not attached with EINVAL", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const domain = iommu_paging_domain_alloc(dev);
  const empty = iommu_group_alloc(sys.kernel.iommuLayer as IommuCore);
  assert.throws(() => iommu_attach_group(domain, empty), errno("ENODEV"));
  assert.throws(() => iommu_group_replace_domain(empty, domain), errno("ENODEV"));
  const group = iommu_group_get(dev)!;
  assert.throws(() => iommu_detach_group(domain, group), errno("EINVAL"));
  same(group.domain, group.default_domain);
  iommu_attach_group(domain, group);
  iommu_detach_group(domain, group);
  same(group.domain, group.default_domain);
  assert.equal(domain.attachedGroups, 0);
  iommu_domain_free(domain);
});

Deno.test("iommu_map() into a domain without map_pages fails with ENODEV, without page sizes with EINVAL", () => {
  const noOps = new IommuDomain(IOMMU_DOMAIN_UNMANAGED, {}, { pgsize_bitmap: SZ_4K });
  assert.throws(() => iommu_map(noOps, 0, 0, SZ_4K, RW), errno("ENODEV"));
  assert.equal(iommu_unmap(noOps, 0, SZ_4K), 0, "no unmap_pages: nothing unmapped");
  const { domain } = recordingDomain(0);
  assert.throws(() => iommu_map(domain, 0, 0, SZ_4K, RW), errno("EINVAL"));
  for (const bad of [-1, 0.5, 2 ** 53]) {
    assert.throws(() => domain.pgsize_bitmap = bad, errno("EINVAL"), `bitmap ${bad}`);
  }
});

Deno.test("iommu_iova_to_phys() of a blocked domain or a domain without iova_to_phys is 0", () => {
  const blocked = new IommuDomain(IOMMU_DOMAIN_BLOCKED, {});
  assert.equal(iommu_iova_to_phys(blocked, 0x8000_0000), 0);
  const { domain } = recordingDomain(SZ_4K);
  iommu_map(domain, SZ_2M, 0x9000_0000, SZ_4K, RW);
  assert.equal(iommu_iova_to_phys(domain, SZ_2M), 0);
});

Deno.test("device_iommu_capable() asks the driver; false without an IOMMU or a capable op", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const asked: number[] = [];
  sys.drv.ops.capable = (_d, cap) => (asked.push(cap), cap === IOMMU_CAP_CACHE_COHERENCY);
  assert.equal(device_iommu_capable(dev, IOMMU_CAP_CACHE_COHERENCY), true);
  assert.equal(device_iommu_capable(dev, IOMMU_CAP_DIRTY_TRACKING), false);
  assert.deepEqual(asked, [IOMMU_CAP_CACHE_COHERENCY, IOMMU_CAP_DIRTY_TRACKING]);
  delete sys.drv.ops.capable;
  assert.equal(device_iommu_capable(dev, IOMMU_CAP_CACHE_COHERENCY), false);
  const stray = new Device(sys.kernel, { name: "stray" });
  assert.equal(device_iommu_capable(stray, IOMMU_CAP_CACHE_COHERENCY), false);
});

Deno.test("iommu_unmap_fast() only gathers; iommu_iotlb_sync() invalidates and empties the gather", () => {
  const sys = mockSystem();
  const dev = sys.addDevice("dev0", 1);
  const domain = iommu_paging_domain_alloc(dev);
  iommu_map(domain, SZ_2M, 0x9000_0000, SZ_4K, RW);
  const syncs = sys.drv.stats.iotlb_sync;
  const gather = iommu_iotlb_gather_init();
  assert.equal(iommu_unmap_fast(domain, SZ_2M, SZ_2M, gather), SZ_4K);
  assert.equal(sys.drv.stats.iotlb_sync, syncs, "no invalidation yet");
  assert.deepEqual([gather.startPfn, gather.endPfn], [SZ_2M / SZ_4K, SZ_2M / SZ_4K + 1]);
  assert.equal(iommu_iova_to_phys(domain, SZ_2M), 0);
  assert.equal(iommu_unmap_fast(domain, SZ_2M, SZ_2M, gather), 0, "a second unmap gathers nothing");
  iommu_iotlb_sync(domain, gather);
  assert.equal(sys.drv.stats.iotlb_sync, syncs + 1);
  assert.ok(gather.isEmpty);
  iommu_iotlb_sync(domain, gather);
  assert.equal(sys.drv.stats.iotlb_sync, syncs + 1, "an empty gather needs no invalidation");
  iommu_flush_iotlb_all(domain);
  assert.equal(sys.drv.stats.flush_iotlb_all, 1);
  iommu_domain_free(domain);
});

Deno.test("iommu_map() unwinds the mapping when iotlb_sync_map fails; iommu_sync_map() reaches the driver", () => {
  const { domain, leaves } = recordingDomain(SZ_4K);
  const synced: [number, number][] = [];
  let fail = true;
  (domain.ops as IommuDomainOps).iotlb_sync_map = (_d, iova, size) => {
    synced.push([iova, size]);
    if (fail) throw new Errno("ENOMEM", "injected");
  };
  assert.throws(() => iommu_map(domain, SZ_2M, 0x9000_0000, 2 * SZ_4K, RW), errno("ENOMEM"));
  assert.equal(leaves.size, 0, "nothing stays mapped");
  fail = false;
  iommu_map_nosync(domain, SZ_2M, 0x9000_0000, 2 * SZ_4K, RW);
  assert.equal(synced.length, 1, "map_nosync does not sync");
  iommu_sync_map(domain, SZ_2M, 2 * SZ_4K);
  assert.deepEqual(synced.at(-1), [SZ_2M, 2 * SZ_4K]);
});

Deno.test("of_xlate: a platform device's iommus specifier reaches the driver, which probes it into a group", async (t) => {
  function boot(withXlate: boolean) {
    const kernel = new Kernel({
      mem: new TestRam(0x8000_0000, 1 << 24),
      initcalls: [platform_bus_init],
    });
    iommu_subsys_init(kernel);
    const dt = new DeviceTree();
    dt.root.set("#address-cells", [1]).set("#size-cells", [1]);
    const iommuNode = dt.root.addChild("iommu@3010000")
      .set("compatible", "riscv,iommu").set("reg", [0x301_0000, 0x1000]).set("#iommu-cells", [1]);
    dt.root.addChild("dma@10100000").set("compatible", "lab,dma")
      .set("reg", [0x1010_0000, 0x1000]).set("iommus", [dt.phandleOf(iommuNode), 0x10]);
    const drv = new MockIommu(kernel);
    const xlated: number[][] = [];
    const ops: IommuOps = {
      ...drv.ops,
      of_xlate: withXlate
        ? (dev, args) => (xlated.push([...args]), iommu_fwspec_add_ids(dev, args))
        : undefined,
    };
    platform_driver_register(kernel, {
      name: "riscv,iommu",
      ofMatchTable: [{ compatible: "riscv,iommu" }],
      probe: (pdev) => iommu_device_register(drv.iommu, ops, pdev),
    });
    const bound: Device[] = [];
    platform_driver_register(kernel, {
      name: "lab-dma",
      ofMatchTable: [{ compatible: "lab,dma" }],
      probe: (pdev) => void bound.push(pdev),
    });
    of_platform_populate(kernel, dt);
    return { kernel, iommuNode, xlated, bound };
  }
  await t.step(
    "the specifier becomes the fwspec ID; the device joins a group on a DMA domain",
    () => {
      const { iommuNode, xlated, bound } = boot(true);
      assert.deepEqual(xlated, [[0x10]]);
      assert.equal(bound.length, 1);
      const dev = bound[0];
      same(dev.fwspec?.fwnode, iommuNode);
      assert.deepEqual(dev.fwspec?.ids, [0x10]);
      assert.equal(iommu_get_dma_domain(dev)?.type, IOMMU_DOMAIN_DMA);
      same(dev.dma, iommuDmaOps);
    },
  );
  await t.step("an IOMMU without of_xlate (ENODEV) leaves the device on direct DMA", () => {
    const { bound, kernel } = boot(false);
    assert.equal(bound.length, 1);
    const dev = bound[0];
    same(dev.iommu, null);
    same(dev.fwspec, null);
    same(dev.dma, dmaDirectOps);
    assert.equal(kernel.slab.allocatedObjects, 0, `${kernel.slab.allocations()}`);
  });
});

/**
 * A board with an IOMMU node and two consumers naming it in `iommus`: 10100000.dma (ID 0x10)
 * has a driver ("lab,dma"), 10200000.dma (ID 0x20) has none ("lab,idle"). `iommuFirst` puts
 * the IOMMU node first in the tree, so it binds and registers before the consumers are added.
 */
function ofBoard(iommuFirst: boolean) {
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 24),
    initcalls: [platform_bus_init],
  });
  iommu_subsys_init(kernel);
  const dt = new DeviceTree();
  dt.root.set("#address-cells", [1]).set("#size-cells", [1]);
  const addIommu = () =>
    dt.root.addChild("iommu@3010000").set("compatible", "riscv,iommu")
      .set("reg", [0x301_0000, 0x1000]).set("#iommu-cells", [1]);
  const first = iommuFirst ? addIommu() : null;
  const dmaNode = dt.root.addChild("dma@10100000").set("compatible", "lab,dma")
    .set("reg", [0x1010_0000, 0x1000]);
  const idleNode = dt.root.addChild("dma@10200000").set("compatible", "lab,idle")
    .set("reg", [0x1020_0000, 0x1000]);
  const iommuNode = first ?? addIommu();
  dmaNode.set("iommus", [dt.phandleOf(iommuNode), 0x10]);
  idleNode.set("iommus", [dt.phandleOf(iommuNode), 0x20]);
  const drv = new MockIommu(kernel);
  const ops: IommuOps = { ...drv.ops, of_xlate: (dev, args) => iommu_fwspec_add_ids(dev, args) };
  platform_driver_register(kernel, {
    name: "riscv,iommu",
    ofMatchTable: [{ compatible: "riscv,iommu" }],
    probe: (pdev) => iommu_device_register(drv.iommu, ops, pdev),
  });
  platform_driver_register(kernel, {
    name: "lab-dma",
    ofMatchTable: [{ compatible: "lab,dma" }],
    probe: () => {},
  });
  const devs = of_platform_populate(kernel, dt);
  const dma = devs.find((d) => d.ofNode === dmaNode)!;
  const idle = devs.find((d) => d.ofNode === idleNode)!;
  return { kernel, drv, iommuNode, dma, idle };
}

Deno.test("a device without a driver joins an IOMMU group at device_add", () => {
  const { kernel, drv, iommuNode, idle } = ofBoard(true);
  const objects = kernel.slab.allocatedObjects;
  same(idle.driver, null);
  assert.equal(idle.state, "unbound");
  same(idle.fwspec?.fwnode, iommuNode);
  assert.deepEqual(idle.fwspec?.ids, [0x20]);
  assert.deepEqual(iommu_group_get(idle)?.devices, [idle]);
  assert.equal(iommu_get_dma_domain(idle)?.type, IOMMU_DOMAIN_DMA);
  same(idle.dma, iommuDmaOps);
  // No driver: dev_driver_string() is the bus name, as Linux prints it from the bus notifier.
  assert.deepEqual(kernel.dmesg.grep("Adding to iommu group"), [
    "platform 10100000.dma: Adding to iommu group 0",
    "platform 10200000.dma: Adding to iommu group 1",
  ]);
  // device_del releases it (iommu_release_device) without a driver ever having bound.
  device_del(idle);
  same(iommu_group_get(idle), null);
  same(idle.iommu, null);
  assert.equal(drv.contexts.has(idle), false);
  assert.ok(kernel.slab.allocatedObjects < objects, "its group and domain are freed");
});

Deno.test("devices added before the IOMMU registers are probed by iommu_device_register (bus_iommu_probe)", () => {
  const { kernel, iommuNode, dma, idle } = ofBoard(false);
  // The IOMMU node comes last: at device_add nothing could be probed, and the driver's bind
  // deferred; iommu_device_register() then probed both, before the deferred bind ran again.
  assert.deepEqual(kernel.dmesg.grep("Adding to iommu group"), [
    "platform 10100000.dma: Adding to iommu group 0",
    "platform 10200000.dma: Adding to iommu group 1",
  ]);
  assert.equal(dma.state, "bound");
  assert.equal(idle.state, "unbound");
  for (const [dev, id] of [[dma, 0x10], [idle, 0x20]] as const) {
    same(dev.fwspec?.fwnode, iommuNode);
    assert.deepEqual(dev.fwspec?.ids, [id]);
    assert.equal(iommu_get_dma_domain(dev)?.type, IOMMU_DOMAIN_DMA);
    same(dev.dma, iommuDmaOps);
  }
});
