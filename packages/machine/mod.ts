/**
 * The composition root of iommu-lab: a `virt`-like RISC-V machine built from the silicon
 * (`@iommu-lab/hw`), booting a kernel (`@iommu-lab/kernel`) from a device tree it generates,
 * with the IOMMU core and the RISC-V IOMMU driver and its series features picked per machine.
 *
 * @example DMA through the IOMMU: map a page, copy it with the DMA engine, unmap
 * ```ts
 * import assert from "node:assert/strict";
 * import { dma_map_page, dma_unmap_page, DMA_BIDIRECTIONAL } from "@iommu-lab/kernel";
 * import { Machine, riscvIommu } from "@iommu-lab/machine";
 *
 * const m = Machine.boot({ iommu: riscvIommu({ features: [] }), iommuBus: "pci" });
 * const chan = m.dmaChannel(0);
 * const page = m.kernel.pages.alloc(1); // two pages: source and destination
 * m.kernel.mem.write32(page, 0xcafe_f00d);
 * const iova = dma_map_page(chan.dev, page, 0, 8192, DMA_BIDIRECTIONAL);
 * assert.notEqual(iova, page); // an IOVA of the device's DMA domain
 * const tx = chan.memcpy(iova + 4096, iova, 4096);
 * assert.equal(tx.status, "complete");
 * assert.equal(m.kernel.mem.read32(page + 4096), 0xcafe_f00d);
 * dma_unmap_page(chan.dev, iova, 8192, DMA_BIDIRECTIONAL);
 * ```
 *
 * @module
 */
export { type CpuCostTable, CpuMem, DEFAULT_CPU_COSTS } from "./cpu_mem.ts";
export {
  dma_engine_chans,
  dma_engine_driver,
  DMA_ENGINE_DRIVER_NAME,
  dma_engine_stop_pasid,
  DMA_TX_TIMEOUT_US,
  DmaChan,
  type DmaEngineData,
  type DmaTx,
  type DmaTxAttrs,
  type DmaTxStatus,
  type IdleClock,
} from "./dma_engine_driver.ts";
export { aplic_driver, imsic_driver } from "./irqchip.ts";
export {
  Machine,
  type MachineOptions,
  type MachinePart,
  riscvIommu,
  type RiscvIommuSpec,
  type Silicon,
  type T100MachineOptions,
} from "./machine.ts";
export {
  Trace,
  type TraceClock,
  type TraceEvent,
  type TraceOptions,
  TRACK_CPU,
  TRACK_DMA,
  TRACK_IOMMU,
  TRACK_IRQ,
} from "./trace.ts";
export {
  VIRT_APLIC_SOURCES,
  virt_aplic_sources,
  virt_device_tree,
  VIRT_DMA_SLOT,
  VIRT_DRAM_BASE,
  VIRT_IMSIC_IDS,
  VIRT_IOMMU_IOATC_IRQ,
  VIRT_IOMMU_PCI_SLOT,
  VIRT_IOMMU_SYS_BASE,
  VIRT_IOMMU_SYS_IRQ,
  VIRT_IOMMU_SYS_IRQS,
  VIRT_IOMMU_SYS_SIZE,
  type VirtDtLayout,
} from "./virt_dt.ts";
