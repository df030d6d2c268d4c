/**
 * The iommufd_fail_nth analog for the core on riscv64 tables of this package (the mock driver of
 * `@iommu-lab/iommu/testing` with `ptMockTable`, so map and unmap allocate and free table pages):
 * every page allocation (fail_page_alloc) and every
 * object allocation (failslab: per-device data, groups, domains, DMA cookies, MSI pages) of probe,
 * domain allocation, attach, map, unmap, the MSI doorbell mapping and the DMA API is made to fail
 * in turn; each failure must surface as ENOMEM from the call that allocated, leave that call's
 * effects undone, and after teardown no page, object, device context or group may remain.
 */
import assert from "node:assert/strict";
import {
  Device,
  device_add,
  device_del,
  dma_alloc_coherent,
  dma_free_coherent,
  dma_map_page,
  dma_map_sg,
  dma_set_mask,
  DMA_TO_DEVICE,
  dma_unmap_page,
  dma_unmap_sg,
  iommu_dma_prepare_msi,
  isErrno,
  type MsiDesc,
  sg_init_one,
} from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_detach_device,
  iommu_domain_free,
  iommu_get_dma_domain,
  iommu_get_domain_for_dev,
  iommu_group_get,
  iommu_iova_to_phys,
  iommu_map,
  iommu_paging_domain_alloc,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
  type IommuDomain,
} from "@iommu-lab/iommu";
import { mockSystem } from "@iommu-lab/iommu/testing";
import { ptMockTable } from "./testing.ts";

const SZ_2M = 0x20_0000;
const RW = IOMMU_READ | IOMMU_WRITE;

/** Which allocator the pass injects into. */
type Allocator = "pages" | "slab";

/**
 * One pass of the scenario, failing the `failAt`th allocation of `which` (0: no injection).
 * Returns whether an injected failure fired.
 */
function pass(which: Allocator, failAt: number): boolean {
  const sys = mockSystem({ iommu: { svnapot: true, pageTable: ptMockTable } });
  const { kernel, drv } = sys;
  const pages = kernel.pages;
  const base = pages.allocatedPages;
  const baseObjects = kernel.slab.allocatedObjects;
  const injector = which === "pages" ? pages : kernel.slab;
  const dev = new Device(kernel, { name: "dev0", bus: sys.bus });
  device_add(dev);
  // Named after device_add so that the probe below is the device's first.
  dev.fwspec = { fwnode: drv.fwnode, ids: [1], flags: 0 };
  let domain: IommuDomain | null = null;
  let failed = false;
  injector.failNth(failAt);
  const step = (what: string, fn: () => void, undone: () => void = () => {}) => {
    if (failed) return;
    try {
      fn();
    } catch (e) {
      assert.ok(isErrno(e, "ENOMEM"), `${what} at failure ${failAt} threw ${e}`);
      failed = true;
      undone();
    }
  };
  step("probe", () => kernel.iommuLayer!.probeDevice(dev), () => {
    assert.equal(dev.iommu, null);
    assert.equal(iommu_group_get(dev), null);
  });
  step("domain_alloc_paging", () => domain = iommu_paging_domain_alloc(dev));
  step("attach", () => iommu_attach_device(domain!, dev), () => {
    assert.ok(iommu_get_domain_for_dev(dev) !== domain);
  });
  // 4 KiB, 64 KiB and 2 MiB leaves, in tables built on the way.
  step(
    "map",
    () => iommu_map(domain!, SZ_2M - 0x1_1000, 0x9000_0000 - 0x1_1000, 3 * SZ_2M, RW),
    () => {
      for (const iova of [SZ_2M - 0x1_1000, SZ_2M - 0x1_0000, SZ_2M, 3 * SZ_2M]) {
        assert.equal(iommu_iova_to_phys(domain!, iova), 0, `0x${iova.toString(16)} left mapped`);
      }
    },
  );
  step("unmap", () => assert.equal(iommu_unmap(domain!, SZ_2M, SZ_2M), SZ_2M));
  step("detach", () => iommu_detach_device(domain!, dev));
  // Back in the DMA domain: the doorbell's record, IOVA and page tables.
  const msg = { addressLo: 0, addressHi: 0, data: 1 };
  const desc: MsiDesc = { dev, msiIndex: 0, irq: 0, msg, iommuMsiIova: 0, iommuMsiShift: 0 };
  step("iommu_dma_prepare_msi", () => iommu_dma_prepare_msi(desc, 0x2800_0000), () => {
    assert.equal(desc.iommuMsiShift, 0);
    assert.deepEqual(iommu_get_dma_domain(dev)!.iova_cookie!.msiPages, []);
  });
  step("dma_alloc_coherent", () => {
    const mem = dma_alloc_coherent(dev, 0x5000);
    dma_free_coherent(dev, 0x5000, mem);
  });
  // Streaming DMA below 2^38, coherent below 2^32: each builds its own tables.
  dma_set_mask(dev, 38);
  step("dma_map_page", () => {
    const addr = dma_map_page(dev, 0x8800_0000, 0x10, 0x2000, DMA_TO_DEVICE);
    dma_unmap_page(dev, addr, 0x2000, DMA_TO_DEVICE);
  });
  step("dma_map_sg", () => {
    const sg = [sg_init_one(0x8800_0000, 0x1000), sg_init_one(0x8900_0000, 0x3000)];
    dma_map_sg(dev, sg, DMA_TO_DEVICE);
    dma_unmap_sg(dev, sg, DMA_TO_DEVICE);
  });
  injector.failNth(0);

  // Teardown with the normal API, then nothing may remain.
  if (domain !== null) {
    if (iommu_get_domain_for_dev(dev) === domain) iommu_detach_device(domain, dev);
    iommu_domain_free(domain);
  }
  device_del(dev);
  assert.equal(pages.allocatedPages, base, `pages leaked at ${which} failure ${failAt}`);
  assert.deepEqual(
    kernel.slab.allocatedObjects,
    baseObjects,
    `objects leaked at ${which} failure ${failAt}: ${kernel.slab.allocations()}`,
  );
  assert.equal(drv.contexts.size, 0);
  assert.equal(drv.attached.size, 0);
  return failed;
}

Deno.test("fail_nth: every page allocation failure in probe/attach/map/unmap/DMA unwinds", () => {
  assert.equal(pass("pages", 0), false, "the scenario runs clean without injection");
  let n = 1;
  while (pass("pages", n)) n++;
  // Probe (context + DMA domain root), paging domain root, map tables, DMA tables and pages.
  assert.ok(n > 10, `only ${n - 1} allocations were exercised`);
});

Deno.test("fail_nth: every object allocation failure in probe/attach/map/unmap/DMA unwinds", () => {
  let n = 1;
  while (pass("slab", n)) n++;
  // Probe: dev_iommu, group, DMA domain and its cookie; the unmanaged paging domain; the MSI page.
  assert.equal(n - 1, 6, `${n - 1} object allocations were exercised`);
});
