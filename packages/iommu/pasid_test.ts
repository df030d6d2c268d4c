// PASID attach in the core (iommu.c): the pasid_array, attach handles, the blocking domain's
// set_dev_pasid as the detach, and the global PASID space SVA takes its PASIDs from.
import assert from "node:assert/strict";
import { Device, device_add } from "@iommu-lab/kernel";
import {
  iommu_alloc_global_pasid,
  iommu_attach_device_pasid,
  iommu_attach_group_handle,
  iommu_attach_handle_get,
  iommu_detach_device_pasid,
  iommu_detach_group_handle,
  iommu_domain_free,
  IOMMU_DOMAIN_SVA,
  IOMMU_DOMAIN_UNMANAGED,
  iommu_free_global_pasid,
  iommu_get_domain_for_dev,
  iommu_get_domain_for_dev_pasid,
  iommu_group_get,
  IOMMU_NO_PASID,
  iommu_paging_domain_alloc,
  type IommuAttachHandle,
  type IommuDomain,
} from "./mod.ts";
import { type MockSystem, mockSystem } from "./testing.ts";

function pasidDevice(sys: MockSystem, name: string, id: number, bits?: number): Device {
  return sys.addDevice(name, id, bits);
}

function handle(): IommuAttachHandle {
  return { domain: null };
}

Deno.test("iommu_attach_device_pasid(): the driver's set_dev_pasid, the pasid_array entry and the handle; detach through the blocking domain", () => {
  const sys = mockSystem({ iommu: { pasids: 256 } });
  const dev = pasidDevice(sys, "dev0", 1, 5);
  const domain = iommu_paging_domain_alloc(dev);
  const h = handle();
  iommu_attach_device_pasid(domain, dev, 7, h);
  assert.equal(sys.drv.pasidAttached.get(dev)?.get(7), domain);
  assert.equal(h.domain, domain);
  assert.equal(iommu_get_domain_for_dev_pasid(dev, 7), domain);
  assert.equal(iommu_get_domain_for_dev_pasid(dev, 8), null);
  assert.equal(iommu_attach_handle_get(iommu_group_get(dev)!, 7, 0), h);
  assert.notEqual(iommu_get_domain_for_dev(dev), domain, "the RID keeps its own domain");

  iommu_detach_device_pasid(domain, dev, 7);
  assert.equal(sys.drv.pasidAttached.get(dev)?.has(7), false);
  assert.equal(iommu_get_domain_for_dev_pasid(dev, 7), null);
  assert.throws(() => iommu_attach_handle_get(iommu_group_get(dev)!, 7, 0), { code: "ENOENT" });
  iommu_attach_device_pasid(domain, dev, 7); // free again, and without a handle
  assert.throws(() => iommu_attach_handle_get(iommu_group_get(dev)!, 7, 0), { code: "ENOENT" });
  iommu_detach_device_pasid(domain, dev, 7);
  iommu_domain_free(domain);
});

Deno.test("iommu_attach_device_pasid(): ENODEV, EOPNOTSUPP, EINVAL, EBUSY as Linux, and a driver failure leaves the PASID free", () => {
  const sys = mockSystem({ iommu: { pasids: 256 } });
  const dev = pasidDevice(sys, "dev0", 1, 5);
  const domain = iommu_paging_domain_alloc(dev);
  const lone = new Device(sys.kernel, { name: "lone", bus: sys.bus });
  device_add(lone);
  assert.throws(() => iommu_attach_device_pasid(domain, lone, 1), { code: "ENODEV" });
  assert.throws(() => iommu_attach_device_pasid(domain, dev, IOMMU_NO_PASID), { code: "EINVAL" });
  assert.throws(() => iommu_attach_device_pasid(domain, dev, 32), { code: "EINVAL" }, "5 bits");
  assert.throws(() => iommu_attach_device_pasid(domain, dev, 1.5), { code: "EINVAL" });

  const other = mockSystem({ iommu: { pasids: 256 } });
  const foreign = iommu_paging_domain_alloc(pasidDevice(other, "x", 1, 5));
  assert.throws(() => iommu_attach_device_pasid(foreign, dev, 1), { code: "EINVAL" });

  sys.drv.failAttach.add(dev);
  assert.throws(() => iommu_attach_device_pasid(domain, dev, 3), { code: "ENOSPC" });
  assert.equal(iommu_get_domain_for_dev_pasid(dev, 3), null);
  iommu_attach_device_pasid(domain, dev, 3);
  assert.throws(() => iommu_attach_device_pasid(domain, dev, 3), { code: "EBUSY" });
  assert.throws(() => iommu_get_domain_for_dev_pasid(dev, 3, IOMMU_DOMAIN_SVA), { code: "EBUSY" });
  assert.equal(iommu_get_domain_for_dev_pasid(dev, 3, IOMMU_DOMAIN_UNMANAGED), domain);
  const second = iommu_paging_domain_alloc(dev);
  assert.throws(() => iommu_detach_device_pasid(second, dev, 3), { code: "EINVAL" });
  iommu_detach_device_pasid(domain, dev, 3);

  // An IOMMU whose blocking domain cannot detach PASIDs cannot attach them either.
  const plain = mockSystem();
  const pd = pasidDevice(plain, "dev0", 1, 5);
  assert.throws(() => iommu_attach_device_pasid(iommu_paging_domain_alloc(pd), pd, 1), {
    code: "EOPNOTSUPP",
  });
  for (const d of [domain, second]) iommu_domain_free(d);
});

Deno.test("max_pasids: the smaller of the device's pasid-num-bits and the IOMMU's; a device without PASIDs is skipped", () => {
  const sys = mockSystem({ iommu: { pasids: 16 } });
  const wide = pasidDevice(sys, "wide", 1, 20);
  const narrow = pasidDevice(sys, "narrow", 2, 2);
  const none = pasidDevice(sys, "none", 3);
  const d = iommu_paging_domain_alloc(wide);
  assert.throws(() => iommu_attach_device_pasid(d, wide, 16), { code: "EINVAL" });
  iommu_attach_device_pasid(d, wide, 15);
  assert.throws(() => iommu_attach_device_pasid(d, narrow, 4), { code: "EINVAL" });
  // As Linux: a device that cannot tag requests is not asked, and does not fail the attach.
  iommu_attach_device_pasid(d, none, 9);
  assert.equal(sys.drv.pasidAttached.get(none), undefined);
  assert.equal(iommu_get_domain_for_dev_pasid(none, 9), d);
  iommu_detach_device_pasid(d, none, 9);
  iommu_detach_device_pasid(d, wide, 15);
  iommu_domain_free(d);
});

Deno.test("iommu_alloc_global_pasid(): one space per kernel from PASID 1, below the device's max_pasids; ENOSPC when none", () => {
  const sys = mockSystem({ iommu: { pasids: 4 } });
  const dev = pasidDevice(sys, "dev0", 1, 8);
  const none = pasidDevice(sys, "none", 2);
  assert.deepEqual([1, 2, 3].map(() => iommu_alloc_global_pasid(dev)), [1, 2, 3]);
  assert.throws(() => iommu_alloc_global_pasid(dev), { code: "ENOSPC" });
  assert.throws(() => iommu_alloc_global_pasid(none), { code: "ENOSPC" });
  iommu_free_global_pasid(sys.kernel, 2);
  assert.equal(iommu_alloc_global_pasid(dev), 2);
  assert.throws(() => iommu_free_global_pasid(sys.kernel, 9), { code: "EINVAL" });
  const another = mockSystem({ iommu: { pasids: 4 } });
  assert.equal(iommu_alloc_global_pasid(pasidDevice(another, "d", 1, 8)), 1, "per kernel");
});

Deno.test("iommu_attach_group_handle(): the RID's handle lives at IOMMU_NO_PASID until iommu_detach_group_handle()", () => {
  const sys = mockSystem({ iommu: { pasids: 16 } });
  const dev = pasidDevice(sys, "dev0", 1, 4);
  const group = iommu_group_get(dev)!;
  const dma = iommu_get_domain_for_dev(dev);
  const d: IommuDomain = iommu_paging_domain_alloc(dev);
  const h = handle();
  iommu_attach_group_handle(d, group, h);
  assert.equal(iommu_get_domain_for_dev(dev), d);
  assert.equal(iommu_attach_handle_get(group, IOMMU_NO_PASID, 0), h);
  assert.equal(h.domain, d);
  assert.throws(() => iommu_attach_group_handle(d, group, handle()), { code: "EBUSY" });
  iommu_detach_group_handle(d, group);
  assert.equal(iommu_get_domain_for_dev(dev), dma);
  assert.throws(() => iommu_attach_handle_get(group, IOMMU_NO_PASID, 0), { code: "ENOENT" });
  iommu_domain_free(d);
});
