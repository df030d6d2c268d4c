/**
 * The silicon: a register-accurate model of the RISC-V IOMMU (spec v1.0) and the platform
 * around it.
 *
 * @module
 */
export {
  byteSwap32,
  byteSwap64,
  type FaultOn,
  hi32,
  join64,
  lo32,
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
  toNumber64,
} from "./memory.ts";
