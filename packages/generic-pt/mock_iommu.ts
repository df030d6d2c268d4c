/**
 * The mock IOMMU driver of `@iommu-lab/iommu/testing` with real page tables: its paging domains
 * get riscv64 tables of this package, so that tests and benchmarks of the core see table pages
 * allocated, gathered and freed. It lives here, above `iommu`, because the core must not import
 * what sits on it (as Linux's iommufd selftest builds its mock domain on generic_pt, not the
 * reverse).
 *
 * @module
 */
import type { MockPageTableFactory } from "@iommu-lab/iommu/testing";
import { PtIommu } from "./iommu_pt.ts";

/**
 * A `pageTable` for `MockIommuOptions`: a riscv64 {@linkcode PtIommu} of the domain's width,
 * its table pages from the kernel page allocator.
 *
 * @example A mock system whose domains have real tables
 * ```ts
 * import assert from "node:assert/strict";
 * import { iommu_map, iommu_paging_domain_alloc, IOMMU_READ } from "@iommu-lab/iommu";
 * import { mockSystem } from "@iommu-lab/iommu/testing";
 * import { ptMockTable } from "@iommu-lab/generic-pt/testing";
 *
 * const sys = mockSystem({ iommu: { pageTable: ptMockTable } });
 * const dev = sys.addDevice("dev0", 1);
 * const domain = iommu_paging_domain_alloc(dev);
 * const before = sys.kernel.pages.allocatedPages;
 * iommu_map(domain, 0x20_0000, 0x9000_0000, 0x1000, IOMMU_READ);
 * assert.equal(sys.kernel.pages.allocatedPages, before + 2, "a level-1 and a level-0 table");
 * ```
 */
export const ptMockTable: MockPageTableFactory = (cfg): PtIommu =>
  new PtIommu({
    mem: cfg.mem,
    alloc: cfg.alloc,
    vaBits: cfg.vaBits,
    features: { svnapot: cfg.svnapot },
    iotlbSync: cfg.iotlbSync,
  });
