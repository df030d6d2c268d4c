// The rules of io-pgfault.c: groups collected until their last request, the handler found
// through the attach handle of the faulting PASID (or RID), every group answered exactly once,
// by the handler or by the core.
import assert from "node:assert/strict";
import { type Device, Errno } from "@iommu-lab/kernel";
import {
  type DevIommu,
  iommu_attach_device_pasid,
  iommu_attach_group_handle,
  iommu_detach_device_pasid,
  iommu_detach_group_handle,
  iommu_domain_free,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_READ,
  iommu_group_get,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  iommu_paging_domain_alloc,
  iommu_report_device_fault,
  type IommuDomain,
  iopf_free_group,
  iopf_group_response,
  iopf_queue_add_device,
  iopf_queue_alloc,
  iopf_queue_discard_partial,
  iopf_queue_free,
  iopf_queue_remove_device,
  IopfFault,
  type IopfGroup,
  type IopfQueue,
} from "./mod.ts";
import { type MockSystem, mockSystem } from "./testing.ts";

const PASID = 5;

/** A page request of group `grpid` at `addr` (PASID 5 unless `pasid` is null). */
function req(grpid: number, addr: number, last: boolean, pasid: number | null = PASID): IopfFault {
  let flags = last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0;
  if (pasid !== null) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
  return new IopfFault({
    type: IOMMU_FAULT_PAGE_REQ,
    prm: { flags, pasid: pasid ?? 0, grpid, perm: IOMMU_FAULT_PERM_READ, addr },
  });
}

interface Setup {
  /** Objects allocated before the IOPF queue, the domain and the attach. */
  base: number;
  sys: MockSystem;
  dev: Device;
  queue: IopfQueue;
  domain: IommuDomain;
  groups: IopfGroup[];
}

/** A device on an IOPF queue, PASID 5 attached with a handle to a domain recording its groups. */
function setup(opts: { handler?: boolean; handle?: boolean; queue?: boolean } = {}): Setup {
  const sys = mockSystem({ iommu: { pasids: 64 } });
  const dev = sys.addDevice("dev0", 1, 6);
  const base = sys.kernel.slab.allocatedObjects;
  const queue = iopf_queue_alloc(sys.kernel, "test");
  if (opts.queue ?? true) iopf_queue_add_device(queue, dev);
  const domain = iommu_paging_domain_alloc(dev);
  const groups: IopfGroup[] = [];
  if (opts.handler ?? true) domain.iopf_handler = (g) => void groups.push(g);
  iommu_attach_device_pasid(domain, dev, PASID, opts.handle ?? true ? { domain: null } : null);
  return { base, sys, dev, queue, domain, groups };
}

function codes(s: Setup): string[] {
  return s.sys.drv.responses.map((r) => `grp ${r.grpid} pasid ${r.pasid} code ${r.code}`);
}

/** Tears a setup down and checks nothing of the IOPF layer is left. */
function teardown(s: Setup): void {
  iommu_detach_device_pasid(s.domain, s.dev, PASID);
  iopf_queue_free(s.queue);
  iommu_domain_free(s.domain);
  assert.equal(s.sys.kernel.slab.allocatedObjects, s.base);
}

Deno.test("partial groups: non-last requests wait; the last one hands the whole group, in order, to the handler", () => {
  const s = setup();
  iommu_report_device_fault(s.dev, req(1, 0x1000, false));
  iommu_report_device_fault(s.dev, req(2, 0x9000, false));
  iommu_report_device_fault(s.dev, req(1, 0x2000, false));
  assert.equal(s.groups.length, 0);
  iommu_report_device_fault(s.dev, req(1, 0x3000, true));
  assert.equal(s.groups.length, 1);
  const g = s.groups[0];
  assert.deepEqual(g.faults.map((f) => f.fault.prm.addr), [0x1000, 0x2000, 0x3000]);
  assert.equal(g.fault_count, 3);
  assert.equal(g.last_fault.fault.prm.addr, 0x3000);
  assert.equal((s.dev.iommu as DevIommu).fault_param!.partial.length, 1, "group 2 still waits");
  assert.deepEqual(codes(s), [], "nobody answered yet");
  iopf_group_response(g, IOMMU_PAGE_RESP_SUCCESS);
  iopf_group_response(g, IOMMU_PAGE_RESP_FAILURE);
  assert.deepEqual(codes(s), ["grp 1 pasid 5 code 0"], "answered once");
  iopf_free_group(g);
});

Deno.test("EINVAL without an attach handle, or without a fault handler: the core answers INVALID itself, once", () => {
  for (const opts of [{ handle: false }, { handler: false }]) {
    const s = setup(opts);
    assert.throws(() => iommu_report_device_fault(s.dev, req(3, 0x1000, true)), {
      code: "EINVAL",
    });
    assert.deepEqual(codes(s), [`grp 3 pasid ${PASID} code ${IOMMU_PAGE_RESP_INVALID}`]);
    assert.equal(s.groups.length, 0);
  }
  // Another PASID than the one attached, and a request without PASID: nothing handles them.
  const s = setup();
  assert.throws(() => iommu_report_device_fault(s.dev, req(4, 0, true, 6)), { code: "EINVAL" });
  assert.throws(() => iommu_report_device_fault(s.dev, req(5, 0, true, null)), { code: "EINVAL" });
  assert.deepEqual(codes(s), ["grp 4 pasid 6 code 1", "grp 5 pasid 0 code 1"]);
});

Deno.test("a fault-capable domain on a device not on an IOPF queue: a warning, INVALID from the core, EINVAL", () => {
  const s = setup({ queue: false });
  assert.throws(() => iommu_report_device_fault(s.dev, req(1, 0, true)), { code: "EINVAL" });
  assert.deepEqual(codes(s), ["grp 1 pasid 5 code 1"]);
  assert.deepEqual(s.sys.kernel.dmesg.grep("iopf_param"), [
    "mock dev0: fault capable domain attached but no iopf_param",
  ]);
});

Deno.test("a handler refusing the group: the core answers FAILURE, says it aborted, and returns normally", () => {
  const s = setup();
  const objects = s.sys.kernel.slab.allocatedObjects;
  s.domain.iopf_handler = () => {
    throw new Errno("EBUSY", "refused");
  };
  iommu_report_device_fault(s.dev, req(1, 0x1000, false));
  iommu_report_device_fault(s.dev, req(1, 0x2000, true));
  assert.deepEqual(codes(s), [`grp 1 pasid 5 code ${IOMMU_PAGE_RESP_FAILURE}`]);
  assert.deepEqual(s.sys.kernel.dmesg.grep("aborted"), [
    "mock dev0: iopf with pasid 5 aborted",
  ]);
  assert.equal(s.sys.kernel.slab.allocatedObjects, objects, "partial and group freed");
});

Deno.test("ENOMEM: a partial request that cannot be kept is not answered; a group that cannot be allocated is answered FAILURE", () => {
  const s = setup();
  const objects = s.sys.kernel.slab.allocatedObjects;
  s.sys.kernel.slab.failNth(1);
  assert.throws(() => iommu_report_device_fault(s.dev, req(1, 0x1000, false)), {
    code: "ENOMEM",
  });
  assert.deepEqual(codes(s), []);
  iommu_report_device_fault(s.dev, req(2, 0x1000, false));
  s.sys.kernel.slab.failNth(1);
  iommu_report_device_fault(s.dev, req(2, 0x2000, true));
  assert.equal(s.groups.length, 0, "the handler never saw it");
  assert.deepEqual(codes(s), ["grp 2 pasid 5 code 2"]);
  assert.equal(s.sys.kernel.slab.allocatedObjects, objects);
});

Deno.test("iopf_queue_remove_device(): pending groups are answered INVALID, partials dropped; a late response is a no-op", () => {
  const s = setup();
  const objects = s.sys.kernel.slab.allocatedObjects;
  iommu_report_device_fault(s.dev, req(1, 0x1000, true));
  iommu_report_device_fault(s.dev, req(2, 0x1000, false));
  const g = s.groups[0];
  iopf_queue_remove_device(s.queue, s.dev);
  assert.deepEqual(codes(s), ["grp 1 pasid 5 code 1"]);
  iopf_group_response(g, IOMMU_PAGE_RESP_SUCCESS);
  assert.equal(codes(s).length, 1);
  assert.equal(s.sys.kernel.slab.allocatedObjects, objects - 1, "only the device's state went");
  assert.throws(() => iopf_queue_remove_device(s.queue, s.dev), { code: "EINVAL" });
  // Off the queue: a fault is a bad iopf again.
  assert.throws(() => iommu_report_device_fault(s.dev, req(3, 0, true)), { code: "EINVAL" });
  iopf_queue_add_device(s.queue, s.dev);
  teardown(s);
});

Deno.test("iopf_queue_discard_partial() forgets partial requests; their group's last one then comes alone", () => {
  const s = setup();
  iommu_report_device_fault(s.dev, req(1, 0x1000, false));
  iopf_queue_discard_partial(s.queue);
  iommu_report_device_fault(s.dev, req(1, 0x2000, true));
  assert.deepEqual(s.groups[0].faults.map((f) => f.fault.prm.addr), [0x2000]);
  iopf_group_response(s.groups[0], IOMMU_PAGE_RESP_SUCCESS);
  iopf_free_group(s.groups[0]);
});

Deno.test("iopf_queue_add_device(): ENODEV when the driver cannot answer, EBUSY on a queue already; iopf_queue_free() frees all", () => {
  const plain = mockSystem();
  const pd = plain.addDevice("dev0", 1);
  const before = plain.kernel.slab.allocatedObjects;
  const q = iopf_queue_alloc(plain.kernel, "plain");
  assert.throws(() => iopf_queue_add_device(q, pd), { code: "ENODEV" });
  iopf_queue_free(q);
  assert.equal(plain.kernel.slab.allocatedObjects, before);

  const s = setup();
  assert.throws(() => iopf_queue_add_device(s.queue, s.dev), { code: "EBUSY" });
  iommu_report_device_fault(s.dev, req(1, 0x1000, false));
  iommu_report_device_fault(s.dev, req(2, 0x1000, true));
  iopf_queue_free(s.queue);
  assert.deepEqual(codes(s), ["grp 2 pasid 5 code 1"]);
  iommu_detach_device_pasid(s.domain, s.dev, PASID);
  iommu_domain_free(s.domain);
  assert.equal(s.sys.kernel.slab.allocatedObjects, s.base, "queue, device state, group, partial");
});

Deno.test("iopf_queue_alloc(): ENOMEM for the queue or its workqueue leaves nothing", () => {
  const sys = mockSystem();
  const objects = sys.kernel.slab.allocatedObjects;
  for (const n of [1, 2]) {
    sys.kernel.slab.failNth(n);
    assert.throws(() => iopf_queue_alloc(sys.kernel, "q"), { code: "ENOMEM" });
    assert.equal(sys.kernel.slab.allocatedObjects, objects);
  }
});

Deno.test("requests without a PASID reach the RID's handle (iommu_attach_group_handle: iommufd's fault HWPTs)", () => {
  const sys = mockSystem({ iommu: { pasids: 64 } });
  const dev = sys.addDevice("dev0", 1, 6);
  const queue = iopf_queue_alloc(sys.kernel, "q");
  iopf_queue_add_device(queue, dev);
  const domain = iommu_paging_domain_alloc(dev);
  const groups: IopfGroup[] = [];
  domain.iopf_handler = (g) => void groups.push(g);
  const group = iommu_group_get(dev)!;
  iommu_attach_group_handle(domain, group, { domain: null });
  iommu_report_device_fault(dev, req(7, 0x4000, true, null));
  assert.equal(groups.length, 1);
  assert.throws(() => iommu_report_device_fault(dev, req(8, 0x4000, true)), { code: "EINVAL" });
  iopf_group_response(groups[0], IOMMU_PAGE_RESP_SUCCESS);
  iopf_free_group(groups[0]);
  assert.deepEqual(sys.drv.responses.map((r) => [r.grpid, r.code]), [[8, 1], [7, 0]]);
  iommu_detach_group_handle(domain, group);
  iopf_queue_free(queue);
  iommu_domain_free(domain);
});
