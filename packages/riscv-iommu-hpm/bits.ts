/**
 * What the series adds to drivers/iommu/riscv/iommu-bits.h: the SpacemiT T100's distributed
 * translation interface status registers (DTISR0-3, in the custom range of the IOMMU page) and
 * where its IOATC register pages sit. From "iommu/riscv: Add SpacemiT T100 IOATC HPM support"
 * (v5 6/8, Lv Zheng, 28 Feb 2026).
 *
 * @module
 */
import { RISCV_IOMMU_REG_SIZE } from "@iommu-lab/riscv-iommu/bits";

/** `dtisr0` (4 bytes): distributed translation interfaces 0-15, two status bits each. */
export const RISCV_IOMMU_REG_DTISR_BASE = 0x02b0;

/** Offset of `dtisr<n>` (n 0..3): interfaces 16n..16n+15. */
export function RISCV_IOMMU_REG_DTISR(n: number): number {
  return RISCV_IOMMU_REG_DTISR_BASE + n * 4;
}

/** Position of interface `n`'s status field in its `dtisr`. */
export function RISCV_IOMMU_DTI_STS_SHIFT(n: number): number {
  return (n % 16) * 2;
}

/** Interface `n`'s status field in its `dtisr`. */
export function RISCV_IOMMU_DTI_STS_MASK(n: number): number {
  return (0x3 << RISCV_IOMMU_DTI_STS_SHIFT(n)) >>> 0;
}

/** Interface status: nothing there. */
export const RISCV_IOMMU_DTI_STS_NONE = 0x0;
/** Interface status: an IOATC. */
export const RISCV_IOMMU_DTI_STS_IOATC = 0x1;

/** IOATCs a T100 can have. */
export const MAX_RISCV_IOMMU_IOATC = 64;

/** Offset of IOATC `idx`'s register page from the IOMMU (IOATS) page. */
export function RISCV_IOMMU_IOATC_BASE(idx: number): number {
  return (idx + 1) * RISCV_IOMMU_REG_SIZE;
}
