// fail-nth over the series' allocations: the IOMMU's probe (page-request ring, IOPF queue and its
// workqueue), an endpoint's probe, and SVA bind/unbind (directory pages, SVA domain, PSCID, bonds,
// notifier list, PASID data). Each failure surfaces as ENOMEM from the call that allocated, and
// after teardown no page, object or interrupt is left.
import assert from "node:assert/strict";
import {
  device_add,
  device_del,
  isErrno,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { iommu_sva_bind_device, iommu_sva_unbind_device } from "@iommu-lab/iommu";
import { RISCV_IOMMU_INTR_PQ } from "@iommu-lab/riscv-iommu/bits";
import type { TestSystem } from "@iommu-lab/riscv-iommu/testing";
import { type Endpoint, iopfSystem, pciEndpoint, pqRecord, settle } from "./_test_fixture.ts";

function assertClean(sys: TestSystem, what: string): void {
  assert.equal(sys.kernel.pages.allocatedPages, 0, `pages leaked at ${what}`);
  assert.deepEqual(sys.kernel.slab.allocations(), [], `objects leaked at ${what}`);
  assert.deepEqual(sys.kernel.irq.procInterrupts(), [], `irqs left at ${what}`);
}

Deno.test("fail-nth over the IOMMU's probe with the series: each allocation fails it cleanly or shrinks a queue", async (t) => {
  // Pages: the DDT root and the three rings. Objects: the IOMMU, the IOPF queue, its workqueue.
  for (const [which, count] of [["pages", 4], ["slab", 3]] as const) {
    await t.step(which, () => {
      let n = 1;
      for (;; n++) {
        const sys = iopfSystem({ bind: false });
        sys.kernel[which].failNth(n);
        device_add(sys.dev);
        const iommu = sys.iommu;
        if (iommu === null) {
          assert.equal(sys.kernel.dmesg.grep("failed with error -12").length, 1);
          assertClean(sys, `${which} ${n}`);
          continue;
        }
        const pq = iommu.queues.get(RISCV_IOMMU_INTR_PQ)!;
        const shrunk = iommu.cmdq.mask < 8191 || iommu.fltq.mask < 4095 || pq.mask < 4095;
        device_del(sys.dev);
        assertClean(sys, `${which} ${n}`);
        if (!shrunk) break;
      }
      assert.equal(n - 1, count, "allocations swept");
    });
  }
});

Deno.test("fail-nth over an endpoint's probe and an SVA bind/unbind with a fault: ENOMEM, and nothing left after teardown", async (t) => {
  for (const which of ["pages", "slab"] as const) {
    await t.step(which, () => {
      let fired = 0;
      for (let n = 1;; n++) {
        const sys = iopfSystem();
        const mm = mm_alloc(sys.kernel);
        let ep: Endpoint | null = null;
        sys.kernel[which].failNth(n);
        let failed = false;
        try {
          ep = pciEndpoint(sys);
          const handle = iommu_sva_bind_device(ep.pdev, mm);
          // A fault: its partial and group records, the mm's table and data pages. A failure
          // in the interrupt thread or the work is answered there, not thrown.
          vm_mmap(mm, 0x10_0000, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
          for (const [addr, last] of [[0x10_0000, false], [0x10_1000, true]] as const) {
            sys.fake.record(
              2,
              pqRecord({ did: ep.devid, pasid: 1, write: true, last, prgi: 1, addr }),
            );
          }
          settle(sys);
          iommu_sva_unbind_device(handle);
        } catch (e) {
          // The base driver fails an endpoint whose context it cannot make with ENODEV.
          assert.ok(isErrno(e, "ENOMEM") || isErrno(e, "ENODEV"), `${which} ${n}: ${e}`);
          failed = true;
        }
        sys.kernel[which].failNth(0);
        settle(sys);
        if (ep !== null) device_del(ep.pdev);
        mmput(mm);
        device_del(sys.dev);
        assertClean(sys, `${which} ${n}`);
        if (!failed) break;
        fired++;
      }
      assert.ok(fired >= 3, `${which}: ${fired} allocations swept`);
    });
  }
});
