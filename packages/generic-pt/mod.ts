/**
 * Generic page tables for IOMMU domains: one engine ({@linkcode PtIommu}) that maps, unmaps
 * and translates on tables in simulated physical memory, and the formats it runs (the RISC-V
 * first stage {@linkcode riscv64} and second stage {@linkcode riscv64x4}). Mirrors Linux's
 * drivers/iommu/generic_pt.
 *
 * @example A Sv48 domain with Svnapot
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_READ, IOMMU_WRITE, IommuIotlbGather } from "@iommu-lab/iommu";
 * import { PtIommu } from "@iommu-lab/generic-pt";
 * import { TestTableAllocator } from "@iommu-lab/generic-pt/testing";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const ram = new TestRam(0x8000_0000, 1 << 24);
 * const alloc = new TestTableAllocator(ram, 0x8000_0000, 1 << 24);
 * const pt = new PtIommu({ mem: ram, alloc, vaBits: 48, features: { svnapot: true } });
 * assert.equal(pt.hwInfo().mode, 9);
 * pt.map(0x1_0000, 0x9001_0000, 0x1_0000, IOMMU_READ | IOMMU_WRITE); // one 64 KiB leaf
 * let leaves = 0;
 * pt.forEachLeaf((_pfn, pages) => {
 *   leaves++;
 *   assert.equal(pages, 16);
 * });
 * assert.equal(leaves, 1);
 * const gather = new IommuIotlbGather();
 * pt.unmap(0x1_0000, 0x1_0000, gather);
 * gather.putPages();
 * pt.deinit();
 * assert.equal(alloc.allocatedPages, 0);
 * ```
 *
 * @module
 */
export {
  type Iova,
  ptComputeBestPgsize,
  PtIommu,
  type PtIommuConfig,
  type PtIommuDomainOps,
  type PtIommuHwInfo,
} from "./iommu_pt.ts";
export { ffs, fls } from "./log2.ts";
export {
  PT_ENTRY_EMPTY,
  PT_ENTRY_OA,
  PT_ENTRY_TABLE,
  PT_GRANULE_LG2SZ,
  PT_GRANULE_SIZE,
  PT_PFN_SPACE,
  type PtAllocator,
  type PtAttrs,
  type PtEntryType,
  type PtFeatures,
  type PtFormat,
} from "./pt_defs.ts";
export { PtState } from "./pt_state.ts";
export {
  riscv64,
  riscv64x4,
  RISCVPT_A,
  RISCVPT_D,
  riscvpt_entry_is_write_dirty,
  riscvpt_entry_make_write_clean,
  riscvpt_entry_make_write_dirty,
  RISCVPT_G,
  RISCVPT_IO_HI,
  RISCVPT_N_HI,
  RISCVPT_NAPOT_64K_LG2,
  RISCVPT_NC_HI,
  RISCVPT_PPN64_64K_SZ,
  RISCVPT_PPN_HI_MASK,
  RISCVPT_PPN_SHIFT,
  RISCVPT_R,
  RISCVPT_RSW,
  RISCVPT_U,
  RISCVPT_V,
  RISCVPT_W,
  RISCVPT_X,
  riscvptAttrFromEntry,
  riscvptEntryNumContigLg2,
  riscvptEntryOaPpn,
  riscvptEntryType,
  riscvptLeafHi,
  riscvptLeafLo,
  riscvptPpn,
  riscvptTableLo,
} from "./riscv.ts";
