// iommu-sva.c on the mock driver: binds share the mm's PASID and SVA domain, and a device's
// page request on an SVA PASID is resolved by the mm's fault handler from the IOPF workqueue.
import assert from "node:assert/strict";
import {
  type Device,
  follow_pte,
  MAP_ANONYMOUS,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  MmStruct,
  PROT_READ,
  PROT_WRITE,
  SATP_MODE_48,
  vm_mmap,
} from "@iommu-lab/kernel";
import {
  IOMMU_DOMAIN_SVA,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  iommu_get_domain_for_dev_pasid,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  iommu_report_device_fault,
  iommu_sva_bind_device,
  iommu_sva_get_pasid,
  iommu_sva_unbind_device,
  iopf_queue_add_device,
  iopf_queue_alloc,
  iopf_queue_flush_dev,
  iopf_queue_free,
  IopfFault,
  type IopfQueue,
} from "./mod.ts";
import { type MockSystem, mockSystem } from "./testing.ts";

const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
const VA = 0x4000_0000;

interface Sva {
  sys: MockSystem;
  dev: Device;
  queue: IopfQueue;
  mm: MmStruct;
}

/** A device with 8-bit PASIDs on an IOPF queue, and an mm with 16 RW pages and 1 RO at VA. */
function sva(): Sva {
  const sys = mockSystem({ iommu: { pasids: 256 } });
  const dev = sys.addDevice("dev0", 1, 8);
  const queue = iopf_queue_alloc(sys.kernel, "sva");
  iopf_queue_add_device(queue, dev);
  const mm = mm_alloc(sys.kernel, SATP_MODE_48);
  vm_mmap(mm, VA, 16 * 4096, PROT_READ | PROT_WRITE, ANON);
  vm_mmap(mm, VA + 16 * 4096, 4096, PROT_READ, ANON);
  return { sys, dev, queue, mm };
}

function request(pasid: number, grpid: number, addr: number, perm: number, last = true) {
  return new IopfFault({
    type: IOMMU_FAULT_PAGE_REQ,
    prm: {
      flags: IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | (last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0),
      pasid,
      grpid,
      perm,
      addr,
    },
  });
}

Deno.test("iommu_sva_bind_device(): the mm gets a global PASID and an SVA domain holding it; binds are counted", () => {
  const { sys, dev, queue, mm } = sva();
  const other = sys.addDevice("dev1", 2, 8);
  const h = iommu_sva_bind_device(dev, mm);
  const pasid = iommu_sva_get_pasid(h);
  assert.equal(pasid, 1);
  const domain = iommu_get_domain_for_dev_pasid(dev, pasid)!;
  assert.equal(domain.type, IOMMU_DOMAIN_SVA);
  assert.equal(domain.mm, mm);
  assert.equal(mm.mm_count, 2, "the domain holds the mm");
  assert.equal(sys.drv.pasidAttached.get(dev)?.get(pasid), domain);
  assert.equal(iommu_sva_bind_device(dev, mm), h, "same device and mm: the same bind");
  const h2 = iommu_sva_bind_device(other, mm);
  assert.equal(h2.domain, domain, "another device shares the mm's domain");
  assert.equal(iommu_sva_get_pasid(h2), pasid);
  assert.equal(domain.users, 2);

  iommu_sva_unbind_device(h);
  assert.equal(iommu_get_domain_for_dev_pasid(dev, pasid), domain, "one reference left");
  iommu_sva_unbind_device(h);
  assert.equal(iommu_get_domain_for_dev_pasid(dev, pasid), null);
  assert.throws(() => iommu_sva_unbind_device(h), { code: "EINVAL" });
  iommu_sva_unbind_device(h2);
  assert.equal(mm.mm_count, 1, "the last bind freed the domain");
  assert.equal(iommu_sva_get_pasid(iommu_sva_bind_device(dev, mm)), pasid, "kept by the mm");
  iopf_queue_free(queue);
});

Deno.test("iommu_sva_bind_device(): ENOSPC without PASIDs, EOVERFLOW for a PASID the device cannot tag, EOPNOTSUPP without SVA, EINVAL without a page table", () => {
  const { sys, dev, mm } = sva();
  const bare = new MmStruct(sys.kernel);
  assert.throws(() => iommu_sva_bind_device(dev, bare), { code: "EINVAL" }, "nothing mapped yet");
  assert.equal(bare.iommu_mm, null, "and no PASID taken for it");
  assert.throws(() => iommu_sva_bind_device(sys.addDevice("nopasid", 3), mm), { code: "ENOSPC" });
  const mm2 = mm_alloc(sys.kernel);
  for (let i = 0; i < 4; i++) iommu_sva_bind_device(dev, mm_alloc(sys.kernel)); // PASIDs 1-4
  iommu_sva_bind_device(dev, mm2); // PASID 5
  assert.throws(() => iommu_sva_bind_device(sys.addDevice("narrow", 4, 2), mm2), {
    code: "EOVERFLOW",
  });
  const plain = mockSystem();
  const pd = plain.addDevice("d", 1, 8);
  assert.throws(() => iommu_sva_bind_device(pd, mm_alloc(plain.kernel)), { code: "ENOSPC" });
  const nosva = mockSystem({ iommu: { pasids: 16 } });
  nosva.drv.ops.domain_alloc_sva = undefined;
  const nd = nosva.addDevice("d", 1, 4);
  assert.throws(() => iommu_sva_bind_device(nd, mm_alloc(nosva.kernel)), { code: "EOPNOTSUPP" });
});

Deno.test("SVA faults: the mm's pages appear on demand, from the workqueue, and the group is answered SUCCESS", () => {
  const { sys, dev, queue, mm } = sva();
  const h = iommu_sva_bind_device(dev, mm);
  const pasid = iommu_sva_get_pasid(h);
  iommu_report_device_fault(dev, request(pasid, 3, VA + 0x1000, IOMMU_FAULT_PERM_READ, false));
  iommu_report_device_fault(dev, request(pasid, 3, VA + 0x2000, IOMMU_FAULT_PERM_WRITE));
  assert.equal(follow_pte(mm, VA + 0x1000), 0, "nothing runs inside the report");
  assert.equal(sys.drv.responses.length, 0);
  sys.kernel.clock.advance(1);
  assert.notEqual(follow_pte(mm, VA + 0x1000), 0);
  assert.notEqual(follow_pte(mm, VA + 0x2000), 0);
  assert.equal(mm.rss, 2);
  assert.deepEqual(sys.drv.responses.map((r) => [r.pasid, r.grpid, r.code]), [
    [pasid, 3, IOMMU_PAGE_RESP_SUCCESS],
  ]);
  iommu_sva_unbind_device(h);
  iopf_queue_free(queue);
});

Deno.test("SVA faults: an address outside the mm, a forbidden access, a failing member make the group INVALID (errors are sticky)", () => {
  const { sys, dev, queue, mm } = sva();
  const h = iommu_sva_bind_device(dev, mm);
  const pasid = iommu_sva_get_pasid(h);
  const RO = VA + 16 * 4096;
  iommu_report_device_fault(dev, request(pasid, 1, 0x1000, IOMMU_FAULT_PERM_READ));
  iommu_report_device_fault(dev, request(pasid, 2, RO, IOMMU_FAULT_PERM_WRITE));
  iommu_report_device_fault(dev, request(pasid, 3, VA, IOMMU_FAULT_PERM_EXEC));
  // In group 4 the first request fails: the second is never tried.
  iommu_report_device_fault(dev, request(pasid, 4, RO, IOMMU_FAULT_PERM_WRITE, false));
  iommu_report_device_fault(dev, request(pasid, 4, VA + 0x3000, IOMMU_FAULT_PERM_READ));
  iopf_queue_flush_dev(dev);
  assert.deepEqual(sys.drv.responses.map((r) => [r.grpid, r.code]), [
    [1, IOMMU_PAGE_RESP_INVALID],
    [2, IOMMU_PAGE_RESP_INVALID],
    [3, IOMMU_PAGE_RESP_INVALID],
    [4, IOMMU_PAGE_RESP_INVALID],
  ]);
  assert.equal(mm.rss, 0);
  iommu_sva_unbind_device(h);
  iopf_queue_free(queue);
});

Deno.test("SVA faults on an mm whose last user exited are INVALID; the PASID goes back with the last mmdrop()", () => {
  const { sys, dev, queue, mm } = sva();
  const h = iommu_sva_bind_device(dev, mm);
  const pasid = iommu_sva_get_pasid(h);
  mmput(mm); // the process exits while the device is still bound
  iommu_report_device_fault(dev, request(pasid, 1, VA, IOMMU_FAULT_PERM_READ));
  sys.kernel.clock.advance(1);
  assert.deepEqual(sys.drv.responses.map((r) => r.code), [IOMMU_PAGE_RESP_INVALID]);
  const objects = sys.kernel.slab.allocatedObjects;
  iommu_sva_unbind_device(h); // frees the domain, which drops the mm: the PASID is free
  assert.equal(sys.kernel.slab.allocatedObjects, objects - 4, "bind, domain, mm data, mm");
  const again = iommu_sva_bind_device(dev, mm_alloc(sys.kernel));
  assert.equal(iommu_sva_get_pasid(again), pasid);
  iopf_queue_free(queue);
});

Deno.test("fail-nth over bind and unbind: each allocation fails in turn, nothing is left after teardown", () => {
  for (const which of ["slab", "pages"] as const) {
    for (let n = 1;; n++) {
      const { sys, dev, queue, mm } = sva();
      const pages = sys.kernel.pages.allocatedPages - 1; // the mm's root table
      // The mm, the IOPF queue, its workqueue and the device's fault state.
      const objects = sys.kernel.slab.allocatedObjects - 4;
      (which === "slab" ? sys.kernel.slab : sys.kernel.pages).failNth(n);
      let fired = false;
      try {
        iommu_sva_unbind_device(iommu_sva_bind_device(dev, mm));
      } catch (e) {
        assert.equal((e as { code?: string }).code, "ENOMEM", `${which} ${n}`);
        fired = true;
      }
      (which === "slab" ? sys.kernel.slab : sys.kernel.pages).failNth(0);
      iopf_queue_free(queue);
      mmput(mm);
      assert.equal(sys.kernel.pages.allocatedPages, pages, `${which} ${n}: pages`);
      assert.equal(sys.kernel.slab.allocatedObjects, objects, `${which} ${n}: objects`);
      if (!fired) break;
    }
  }
});
