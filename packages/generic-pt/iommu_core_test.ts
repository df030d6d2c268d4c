// The IOMMU core over riscv64 tables of this package: what only a real page table shows (table
// pages allocated by map, gathered by unmap and freed after the IOTLB flush).
import assert from "node:assert/strict";
import {
  iommu_domain_free,
  iommu_iotlb_gather_init,
  iommu_iotlb_sync,
  iommu_map,
  iommu_paging_domain_alloc,
  IOMMU_READ,
  iommu_unmap,
  iommu_unmap_fast,
  IOMMU_WRITE,
} from "@iommu-lab/iommu";
import { mockSystem } from "@iommu-lab/iommu/testing";
import { ptMockTable } from "./testing.ts";

const SZ_4K = 0x1000;
const SZ_2M = 0x20_0000;
const RW = IOMMU_READ | IOMMU_WRITE;

function ptSystem() {
  return mockSystem({ iommu: { pageTable: ptMockTable } });
}

Deno.test("iommu_unmap() calls iotlb_sync once and frees table pages only after it", () => {
  const sys = ptSystem();
  const dev = sys.addDevice("dev0", 1);
  const pages = sys.kernel.pages;
  const domain = iommu_paging_domain_alloc(dev);
  const base = pages.allocatedPages;
  iommu_map(domain, SZ_2M, 0x9000_0000, SZ_2M, RW);
  iommu_map(domain, 2 * SZ_2M, 0x9000_0000, SZ_4K, RW);
  for (let i = 1; i < 512; i++) iommu_map(domain, 2 * SZ_2M + i * SZ_4K, 0x9000_0000, SZ_4K, RW);
  assert.ok(pages.allocatedPages > base, "4 KiB pages need a level-0 table");
  let held = -1;
  sys.drv.onIotlbSync = (g) => {
    const live = new Set(pages.allocations().map((a) => a.phys));
    held = g.freelist.filter((pa) => live.has(pa)).length;
  };
  const before = sys.drv.stats.iotlb_sync;
  assert.equal(iommu_unmap(domain, 2 * SZ_2M, SZ_2M), SZ_2M);
  assert.equal(sys.drv.stats.iotlb_sync - before, 1);
  assert.equal(held, 1, "the freed level-0 table was still allocated during the flush");
  assert.equal(pages.allocatedPages, base + 1, "only the table of the other range remains");
  iommu_domain_free(domain);
});

Deno.test("iommu_unmap_fast() leaves an emptied table on the gather until iommu_iotlb_sync()", () => {
  const sys = ptSystem();
  const dev = sys.addDevice("dev0", 1);
  const pages = sys.kernel.pages;
  const domain = iommu_paging_domain_alloc(dev);
  for (let i = 0; i < 512; i++) iommu_map(domain, SZ_2M + i * SZ_4K, 0x9000_0000, SZ_4K, RW);
  const withTable = pages.allocatedPages;
  const gather = iommu_iotlb_gather_init();
  assert.equal(iommu_unmap_fast(domain, SZ_2M, SZ_2M, gather), SZ_2M);
  assert.equal(gather.freelist.length, 1);
  assert.equal(pages.allocatedPages, withTable, "the emptied table waits for the flush");
  iommu_iotlb_sync(domain, gather);
  assert.equal(pages.allocatedPages, withTable - 1);
  iommu_domain_free(domain);
});
