/**
 * The RISC-V IOMMU hardware performance monitor as a perf PMU: a port of "[PATCH v5 0/8]
 * iommu/riscv: Add HPM support for RISC-V IOMMU" (Lv Zheng and Jingyu Li, SpacemiT, 28 Feb
 * 2026) as a series of `@iommu-lab/riscv-iommu`. The IOMMU driver creates an auxiliary device
 * per HPM register block (its own, and on a SpacemiT T100 each IOATC's); the perf driver
 * `riscv_iommu_hpm` binds to them and registers the counting PMUs `riscv_iommu_hpm_<id>`,
 * `spacemit_ioats_hpm_<id>` and `spacemit_ioatc_hpm_<id>`.
 *
 * @example A T100 machine: count the DDT walks of one device
 * ```ts
 * import assert from "node:assert/strict";
 * import { sysfs_read } from "@iommu-lab/kernel";
 * import { Machine } from "@iommu-lab/machine";
 * import { perf_event_open, perf_event_read_value } from "@iommu-lab/perf";
 * import { hpmPart } from "@iommu-lab/riscv-iommu-hpm";
 *
 * const m = Machine.boot({ t100: { ioatcs: 1 }, parts: [hpmPart()] });
 * const dir = "/sys/bus/event_source/devices/spacemit_ioats_hpm_0";
 * assert.equal(sysfs_read(m.kernel, `${dir}/events/dd_walk`), "event=0x05\n");
 * const type = Number(sysfs_read(m.kernel, `${dir}/type`));
 * const rid = 2 << 3; // dma0chan0's engine, 00:02.0
 * const ev = perf_event_open(m.kernel, {
 *   type,
 *   config: 5n, // dd_walk
 *   config1: 1n << 61n | BigInt(rid) << 36n, // filter_dv_gscv, filter_did_gscid
 * }, -1, 0);
 * m.dmaChannel(0).memset(0, 0, 64); // nothing mapped at IOVA 0: one walk, then a fault
 * assert.equal(perf_event_read_value(ev).count, 1n);
 * ```
 *
 * @module
 */
export { hpm, type HpmMachinePart, hpmPart } from "./feature.ts";
export {
  MAX_RISCV_IOMMU_IOATC,
  RISCV_IOMMU_DTI_STS_IOATC,
  RISCV_IOMMU_DTI_STS_MASK,
  RISCV_IOMMU_DTI_STS_NONE,
  RISCV_IOMMU_DTI_STS_SHIFT,
  RISCV_IOMMU_IOATC_BASE,
  RISCV_IOMMU_REG_DTISR,
  RISCV_IOMMU_REG_DTISR_BASE,
} from "./bits.ts";
export { RISCV_IOMMU_HPM_FEATURE, type RiscvIommuSubdevParams } from "./iommu_h.ts";
export {
  riscv_iommu_clear_pmip,
  riscv_iommu_get_hpm_identifier,
  RISCV_IOMMU_HPM_SIZE,
  riscv_iommu_pmip_status,
  riscv_iommu_subdev_add,
  riscv_iommu_subdev_cleanup,
  riscv_iommu_subdev_setup,
} from "./iommu.ts";
export { riscv_iommu_get_subdev, type RiscvIommuHpmInfo, RiscvIommuSubdev } from "./riscv_iommu.ts";
export {
  riscv_iommu_hpm_driver,
  riscv_iommu_hpm_event_add,
  riscv_iommu_hpm_event_del,
  riscv_iommu_hpm_event_init,
  riscv_iommu_hpm_event_start,
  riscv_iommu_hpm_event_stop,
  riscv_iommu_hpm_event_update,
  riscv_iommu_hpm_ids,
  riscv_iommu_hpm_probe,
  riscv_iommu_hpm_remove,
  RISCV_IOMMU_HPMCOUNTER_CYCLES,
  RISCV_IOMMU_HPMEVENT_CYCLES,
  RISCV_IOMMU_HPMEVENT_MAX,
  RiscvIommuHpm,
} from "./riscv_iommu_hpm.ts";
