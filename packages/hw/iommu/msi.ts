/**
 * MSI address translation (spec §2.3.3 "Process to translate addresses of MSIs"; AIA "IOMMU
 * support"): recognising accesses to virtual interrupt files by the DC's address mask and pattern,
 * reading MSI PTEs from the flat MSI page table, and storing MSIs into memory-resident interrupt
 * files (MRIFs).
 *
 * @module
 */

import { MEM_POISON, type PhysicalMemory } from "../memory.ts";
import { hiOf } from "../_u64.ts";
import type { IommuCaps } from "./caps.ts";
import type { DeviceContext } from "./context.ts";
import {
  RISCV_IOMMU_FQ_CAUSE_MRIF_CORRUPTED,
  RISCV_IOMMU_FQ_CAUSE_MRIF_FAULT,
  RISCV_IOMMU_FQ_CAUSE_MSI_INVALID,
  RISCV_IOMMU_FQ_CAUSE_MSI_LOAD_FAULT,
  RISCV_IOMMU_FQ_CAUSE_MSI_MISCONFIGURED,
  RISCV_IOMMU_FQ_CAUSE_MSI_PT_CORRUPTED,
  RISCV_IOMMU_FQ_CAUSE_RD_FAULT,
  RISCV_IOMMU_FQ_CAUSE_WR_FAULT,
  RISCV_IOMMU_MSI_MRIF_NID,
  RISCV_IOMMU_MSI_PTE_M_BASIC,
  RISCV_IOMMU_MSI_PTE_M_MRIF,
  RISCV_IOMMU_MSI_PTE_SIZE,
  RISCV_IOMMU_MSI_PTE_V,
} from "./structs.ts";
import { ppnOf } from "./walk.ts";

/** True when GPA page `gpn` belongs to a virtual interrupt file of `dc`:
 * `(gpn & ~mask) == (pattern & ~mask)`. */
export function msiAddressMatch(dc: DeviceContext, gpn: number): boolean {
  const lo = gpn >>> 0;
  const hi = hiOf(gpn);
  return (lo & ~dc.maskLo) >>> 0 === dc.patLo && (hi & ~dc.maskHi) >>> 0 === dc.patHi;
}

/**
 * The interrupt-file number of GPA page `gpn`: the bits of `gpn` where the 52-bit mask
 * `maskHi:maskLo` is 1, packed towards bit 0 in order (x86 PEXT).
 */
export function extractBits(gpn: number, maskLo: number, maskHi: number): number {
  const lo = gpn >>> 0;
  const hi = hiOf(gpn);
  let r = 0, weight = 1;
  for (let b = 0; b < 52; b++) {
    const m = b < 32 ? maskLo >>> b : maskHi >>> (b - 32);
    if ((m & 1) === 0) continue;
    if (((b < 32 ? lo >>> b : hi >>> (b - 32)) & 1) !== 0) r += weight;
    weight *= 2;
  }
  return r;
}

/** Reads MSI PTEs and delivers MSIs to MRIFs for one IOMMU. */
export class MsiPageTable {
  /** Mode of the last PTE fetched: RISCV_IOMMU_MSI_PTE_M_BASIC or _M_MRIF. */
  mode = 0;
  /** Basic mode: the SPA page the interrupt file maps to. */
  pn = 0;
  /** MRIF mode: physical address of the MRIF (512-byte aligned). */
  mrif = 0;
  /** MRIF mode: page of the notice MSI. */
  nppn = 0;
  /** MRIF mode: notice MSI data (NID, 11 bits). */
  nid = 0;

  readonly #mem: PhysicalMemory;
  readonly #caps: IommuCaps;

  /** Creates an MSI unit over `mem` for an IOMMU with `caps`. */
  constructor(mem: PhysicalMemory, caps: IommuCaps) {
    this.#mem = mem;
    this.#caps = caps;
  }

  /**
   * Reads and checks the MSI PTE for GPA page `gpn` of `dc` (doublewords big-endian when `be`,
   * per fctl.BE); returns 0 with the outputs set, or cause 261, 262, 263 or 270.
   */
  fetch(dc: DeviceContext, gpn: number, be: boolean): number {
    const mem = this.#mem;
    const a = dc.msiPpn * 4096 + extractBits(gpn, dc.maskLo, dc.maskHi) * RISCV_IOMMU_MSI_PTE_SIZE;
    mem.load64(a, be);
    if (mem.fault !== 0) return this.#loadCause();
    const lo = mem.lo, hi = mem.hi;
    mem.load64(a + 8, be);
    if (mem.fault !== 0) return this.#loadCause();
    const lo1 = mem.lo, hi1 = mem.hi;
    if ((lo & RISCV_IOMMU_MSI_PTE_V) === 0) return RISCV_IOMMU_FQ_CAUSE_MSI_INVALID;
    // C=1 is custom: this model implements none, so it is misconfigured.
    if (hi >>> 31 !== 0) return RISCV_IOMMU_FQ_CAUSE_MSI_MISCONFIGURED;
    const m = (lo >>> 1) & 3;
    if (m === RISCV_IOMMU_MSI_PTE_M_BASIC) {
      // Reserved: 9:3, 62:54.
      if ((lo & 0x3f8) !== 0 || (hi & 0x7fc00000) !== 0) {
        return RISCV_IOMMU_FQ_CAUSE_MSI_MISCONFIGURED;
      }
      this.mode = m;
      this.pn = ppnOf(lo, hi);
      return 0;
    }
    // Reserved: 6:3, 62:54 of the first doubleword; 59:54, 63:61 of the second.
    if (
      m !== RISCV_IOMMU_MSI_PTE_M_MRIF || !this.#caps.msiMrif || (lo & 0x78) !== 0 ||
      (hi & 0x7fc00000) !== 0 || (hi1 & 0xefc00000) !== 0
    ) {
      return RISCV_IOMMU_FQ_CAUSE_MSI_MISCONFIGURED;
    }
    this.mode = m;
    this.mrif = ((hi & 0x3fffff) * 33554432 + (lo >>> 7)) * 512;
    this.nppn = ppnOf(lo1, hi1);
    this.nid = (lo1 & RISCV_IOMMU_MSI_MRIF_NID) | (((hi1 >>> 28) & 1) << 10);
    return 0;
  }

  /**
   * An access of `len` bytes at page offset `off` to the page the last fetched MRIF-mode PTE
   * covers. Returns 0 when the IOMMU absorbed it: a read (it reads as zero), a write it stored
   * as an MSI (pending bit set with AMOOR if `capabilities.AMO_MRIF`, else read-modify-write,
   * then the notice MSI), or a write it discards (`off[11:3]` ≠ 0, data ≥ 2048, or big-endian
   * data, which this model does not accept). Other sizes and misaligned accesses are aborted
   * (cause 5/7); MRIF and notice-write faults give cause 264 (271 for poison).
   */
  mrifAccess(write: boolean, off: number, len: number, data: number): number {
    if (len !== 4 || (off & 3) !== 0) {
      return write ? RISCV_IOMMU_FQ_CAUSE_WR_FAULT : RISCV_IOMMU_FQ_CAUSE_RD_FAULT;
    }
    if (!write || (off & 0xffc) !== 0 || data >>> 11 !== 0) return 0;
    const mem = this.#mem;
    // Pending bits of identities 64k..64k+63 are the doubleword at 16k (enables at 16k+8).
    const a = this.mrif + 16 * (data >>> 6);
    const bitLo = data & 32 ? 0 : 1 << (data & 31);
    const bitHi = data & 32 ? 1 << (data & 31) : 0;
    if (this.#caps.amoMrif) mem.or64(a, bitLo, bitHi);
    else {
      mem.load64(a);
      if (mem.fault === 0) mem.store64(a, (mem.lo | bitLo) >>> 0, (mem.hi | bitHi) >>> 0);
    }
    if (mem.fault !== 0) {
      return mem.fault === MEM_POISON
        ? RISCV_IOMMU_FQ_CAUSE_MRIF_CORRUPTED
        : RISCV_IOMMU_FQ_CAUSE_MRIF_FAULT;
    }
    mem.write32(this.nppn * 4096, this.nid);
    return mem.fault === 0 ? 0 : RISCV_IOMMU_FQ_CAUSE_MRIF_FAULT;
  }

  #loadCause(): number {
    return this.#mem.fault === MEM_POISON
      ? RISCV_IOMMU_FQ_CAUSE_MSI_PT_CORRUPTED
      : RISCV_IOMMU_FQ_CAUSE_MSI_LOAD_FAULT;
  }
}
