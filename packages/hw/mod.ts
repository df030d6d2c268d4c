/**
 * The silicon: a register-accurate model of the RISC-V IOMMU (spec v1.0) and the platform
 * around it.
 *
 * The IOMMU is an {@linkcode Iommu}: an MMIO device (`read32`/`write32`/`read64`/`write64` at
 * an offset of its 4 KiB register page) and the translation port of the devices behind it
 * (`translate(req, res)`). It works on a {@linkcode PhysicalMemory}: the bus that holds its
 * tables and queues and routes its MSIs.
 *
 * @example Boot an IOMMU in Bare mode and pass a DMA through
 * ```ts
 * import assert from "node:assert/strict";
 * import { Iommu, newRequest, newResult, PhysicalMemory, XLATE_OK } from "@iommu-lab/hw";
 * import { RISCV_IOMMU_DDTP_IOMMU_MODE_BARE, RISCV_IOMMU_REG_DDTP } from "@iommu-lab/hw/regs";
 *
 * const mem = new PhysicalMemory();
 * mem.addRam(0x8000_0000, 2 ** 30);
 * const iommu = new Iommu({ mem, caps: { ats: false } });
 * iommu.write64(RISCV_IOMMU_REG_DDTP, BigInt(RISCV_IOMMU_DDTP_IOMMU_MODE_BARE));
 * const res = newResult();
 * iommu.translate(newRequest({ deviceId: 1, iovaLo: 0x8000_1000 }), res);
 * assert.equal(res.status, XLATE_OK);
 * assert.equal(res.pa, 0x8000_1000);
 * ```
 *
 * @module
 */
export {
  type FaultOn,
  MEM_ACCESS_FAULT,
  MEM_OK,
  MEM_POISON,
  type MemFault,
  type MmioHandler,
  PAGE_SHIFT,
  PAGE_SIZE,
  pfnOf,
  PhysicalMemory,
  type Region,
} from "./memory.ts";
export {
  DEFAULT_CAPS,
  IGS_BOTH,
  IGS_MSI,
  IGS_WSI,
  type IommuCaps,
  resolveCaps,
} from "./iommu/caps.ts";
export {
  ATS_INVAL_BUSY,
  ATS_INVAL_SENT,
  ATS_INVAL_TIMEOUT_NS,
  type AtsInvalidation,
  type AtsPort,
  type AtsTarget,
  type PageGroupResponse,
} from "./iommu/command_queue.ts";
export { type CommandObserver, Iommu, type IommuOptions, type IrqSink } from "./iommu/iommu.ts";
export {
  type PageRequestPort,
  PCIE_MSG_CODE_PAGE_REQUEST,
  PRG_RESPONSE_FAILURE,
  PRG_RESPONSE_INVALID,
  PRG_RESPONSE_SUCCESS,
  PRQ_ANSWERED_FAILURE,
  PRQ_ANSWERED_INVALID,
  PRQ_ANSWERED_SUCCESS,
  PRQ_DISCARDED,
  PRQ_QUEUED,
} from "./iommu/page_request.ts";
export {
  type PageRequest,
  QUEUE_RECORD_MEM_FAULT,
  QUEUE_RECORD_OFF,
  QUEUE_RECORD_OVERFLOW,
  QUEUE_RECORD_WRITTEN,
} from "./iommu/queues.ts";
export {
  ACC_EXEC,
  ACC_READ,
  ACC_WRITE,
  completionStatus,
  CPL_CA,
  CPL_SC,
  CPL_UR,
  type InboundRequest,
  iovaOf,
  newRequest,
  newResult,
  REQ_ATS,
  REQ_TRANSLATED,
  REQ_UNTRANSLATED,
  setIova,
  type TranslationPort,
  type TranslationResult,
  XLATE_ABSORBED,
  XLATE_FAULT,
  XLATE_OK,
} from "./iommu/request.ts";
export { Translator } from "./iommu/translator.ts";
export {
  type CacheGeometry,
  type CacheName,
  type CacheOptions,
  type CacheReplacement,
  DEFAULT_CACHE_GEOMETRY,
  DEFAULT_MICRO_TLB_ENTRIES,
  DEFAULT_WALK_CACHE_ENTRIES,
  type ResolvedGeometry,
} from "./iommu/cache.ts";
export { type HpmBulkSink, type HpmEventPort, type HpmEventSink } from "./iommu/hpm_event.ts";
export {
  type HpmEvent,
  type HpmOptions,
  HpmUnit,
  type HpmWiring,
  STANDARD_HPM_EVENTS,
} from "./iommu/hpm.ts";
export { Clock, type CostTable, DEFAULT_COSTS } from "./clock.ts";
export { Aplic, type AplicOptions } from "./intc/aplic.ts";
export { Imsic, type ImsicOptions } from "./intc/imsic.ts";
export { ConfigSpace } from "./pcie/config.ts";
export {
  type BarSpec,
  DMA_ERR_ABORT,
  DMA_ERR_ATS_DENIED,
  DMA_ERR_BUS,
  DMA_ERR_NO_MASTER,
  DMA_OK,
  PciFunction,
  type PciFunctionOptions,
  type PrgHandler,
} from "./pcie/function.ts";
export { type MsiSend, Msix, type MsixOptions } from "./pcie/msix.ts";
export { Atc, ATC_NO_PASID } from "./pcie/atc.ts";
export { Ecam } from "./pcie/ecam.ts";
export { type MmioWindow, RootComplex, type RootComplexOptions } from "./pcie/root_complex.ts";
export { IommuPciFunction, type IommuPciOptions } from "./pcie/iommu_pci.ts";
export { DmaEngine, type DmaEngineOptions } from "./dma_engine.ts";
export {
  Ioatc,
  type IoatcOptions,
  SPACEMIT_T100_IOATC_EVENTS,
  SPACEMIT_T100_IOATS_HPM,
  SpacemitT100,
  type SpacemitT100Options,
} from "./vendor/spacemit_t100.ts";
