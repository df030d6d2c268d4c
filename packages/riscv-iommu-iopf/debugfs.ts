/**
 * The seed patch's test helper, in its own file as the review of the patch asked: the debugfs
 * `riscv-iommu/inject_pq` file, whose write makes up a page-request record for a device ID and
 * feeds it to the record handler, without PRI hardware. The page-request thread itself is not
 * exercised by it; tests drive that through the IOMMU's queue.
 *
 * Upstream state tracked: riscv_iommu_inject_pq_set() of "[PATCH v1] iommu/riscv: Add page
 * request queue and IOPF support" (June 2026).
 *
 * @module
 */
import { dev_err, dev_info, Errno } from "@iommu-lab/kernel";
import { RISCV_IOMMU_CAPABILITIES_ATS } from "@iommu-lab/riscv-iommu/bits";
import type { RiscvIommuDevice } from "@iommu-lab/riscv-iommu";
import { riscv_iommu_handle_pq } from "./iommu.ts";

/**
 * Mirrors riscv_iommu_inject_pq_set(): a write of `devid` to `inject_pq`. The record asks to
 * read page 0xdead0000 with group index 1, last of its group, without PASID. ENODEV ("inject_pq:
 * ATS not supported") on an IOMMU without capabilities.ATS.
 */
export function riscv_iommu_inject_pq_set(iommu: RiscvIommuDevice, devid: number): void {
  if ((iommu.caps & RISCV_IOMMU_CAPABILITIES_ATS) === 0n) {
    dev_err(iommu.dev, "inject_pq: ATS not supported");
    throw new Errno("ENODEV", "inject_pq: ATS not supported");
  }
  dev_info(iommu.dev, `inject_pq: injecting fake PQ record for devid 0x${devid.toString(16)}`);
  // hdr: DID in bits 63:40; payload: ADDR 0xdead0 (bits 63:12), PRGI 1 (11:3), L (2), R (0).
  riscv_iommu_handle_pq(
    iommu,
    0,
    (devid << 8) >>> 0,
    (0xdead0 << 12 | 1 << 3 | 1 << 2 | 1) >>> 0,
    0,
  );
}
