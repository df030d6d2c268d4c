/**
 * The DMA API: per-device {@linkcode DmaOps} (direct mapping by default; dma-iommu installs its
 * own) and the `dma_*` entry points drivers call.
 *
 * Addresses are JS numbers (below 2^53). There is no CPU virtual address space: the "CPU
 * address" of coherent memory is its physical address, which the CPU reaches through
 * {@linkcode PhysMem}. Where C returns `DMA_MAPPING_ERROR` or `NULL`, these functions throw an
 * {@linkcode Errno}.
 *
 * @module
 */
import type { Device } from "./device.ts";
import { Errno } from "./errno.ts";
import { get_order, PAGE_SIZE } from "./page_alloc.ts";
import { hex } from "./vsprintf.ts";

/** enum dma_data_direction: DMA_BIDIRECTIONAL. */
export const DMA_BIDIRECTIONAL = 0;
/** enum dma_data_direction: DMA_TO_DEVICE. */
export const DMA_TO_DEVICE = 1;
/** enum dma_data_direction: DMA_FROM_DEVICE. */
export const DMA_FROM_DEVICE = 2;
/** enum dma_data_direction: DMA_NONE (invalid for mapping calls). */
export const DMA_NONE = 3;
/** One of the `DMA_*` direction constants. */
export type DmaDirection = 0 | 1 | 2 | 3;

/** DMA_ATTR_SKIP_CPU_SYNC. */
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;

/** One scatterlist entry: a physical segment and, once mapped, its DMA address. */
export interface Scatterlist {
  /** Physical address of the segment (page address plus offset). */
  phys: number;
  /** Segment length in bytes. */
  length: number;
  /** DMA address after {@linkcode dma_map_sg} (sg_dma_address). */
  dmaAddress: number;
  /** DMA length after {@linkcode dma_map_sg} (sg_dma_len). */
  dmaLength: number;
}

/** Memory from {@linkcode dma_alloc_coherent}: where the CPU and the device see it. */
export interface DmaCoherent {
  /** Physical address the CPU uses (through PhysMem). */
  readonly cpuAddr: number;
  /** Address the device uses (dma_handle). */
  readonly dmaAddr: number;
}

/**
 * struct dma_map_ops: what a device's DMA goes through. Implementations throw an
 * {@linkcode Errno} (usually `ENOMEM`) where C would return an error.
 */
export interface DmaOps {
  /** Maps `size` bytes at physical `phys`; returns the DMA address. */
  mapPage(dev: Device, phys: number, size: number, dir: DmaDirection, attrs: number): number;
  /** Undoes one {@linkcode DmaOps.mapPage}. */
  unmapPage(dev: Device, dmaAddr: number, size: number, dir: DmaDirection, attrs: number): void;
  /** Maps every entry of `sg` (filling dmaAddress/dmaLength); returns the entries used. */
  mapSg(dev: Device, sg: Scatterlist[], dir: DmaDirection, attrs: number): number;
  /** Undoes one {@linkcode DmaOps.mapSg} (given the original entries). */
  unmapSg(dev: Device, sg: Scatterlist[], dir: DmaDirection, attrs: number): void;
  /** Allocates zeroed coherent memory of `size` bytes. */
  alloc(dev: Device, size: number, attrs: number): DmaCoherent;
  /** Frees memory from {@linkcode DmaOps.alloc}. */
  free(dev: Device, size: number, mem: DmaCoherent, attrs: number): void;
}

/** One past the largest address a `bits`-bit DMA mask allows (capped where numbers stay exact). */
function _limit(bits: number): number {
  return 2 ** Math.min(bits, 53);
}

function _checkDir(dir: DmaDirection): void {
  if (dir !== DMA_BIDIRECTIONAL && dir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) {
    throw new Errno("EINVAL", `Cannot map DMA with direction ${dir}`);
  }
}

/**
 * Direct mapping (dma-direct): the DMA address is the physical address; mapping fails with
 * `EIO` when the buffer lies beyond the device's DMA mask (there is no swiotlb bounce).
 */
export const dmaDirectOps: DmaOps = {
  mapPage(dev, phys, size, dir) {
    _checkDir(dir);
    if (phys + size > _limit(dev.dmaMask)) {
      throw new Errno(
        "EIO",
        `DMA addr ${hex(phys)}+${size} overflow (mask ${dev.dmaMask} bits)`,
      );
    }
    return phys;
  },
  unmapPage() {},
  mapSg(dev, sg, dir, attrs) {
    for (const s of sg) {
      s.dmaAddress = this.mapPage(dev, s.phys, s.length, dir, attrs);
      s.dmaLength = s.length;
    }
    return sg.length;
  },
  unmapSg() {},
  alloc(dev, size) {
    const order = get_order(size);
    const pa = dev.kernel.pages.alloc(order);
    if (pa + PAGE_SIZE * 2 ** order > _limit(dev.coherentDmaMask)) {
      dev.kernel.pages.free(pa, order);
      throw new Errno("ENOMEM", `No coherent memory below the ${dev.coherentDmaMask}-bit mask`);
    }
    return { cpuAddr: pa, dmaAddr: pa };
  },
  free(dev, size, mem) {
    dev.kernel.pages.free(mem.cpuAddr, get_order(size));
  },
};

function _checkSize(size: number): void {
  if (!Number.isInteger(size) || size <= 0) throw new Errno("EINVAL", `Bad DMA size ${size}`);
}

function _checkAddr(what: string, addr: number): void {
  if (!Number.isSafeInteger(addr) || addr < 0) throw new Errno("EINVAL", `Bad DMA ${what} ${addr}`);
}

/**
 * Mirrors dma_map_page(): maps `size` bytes at `offset` into the page at physical `page`.
 *
 * @example Direct mapping returns the physical address
 * ```ts
 * import assert from "node:assert/strict";
 * import { Device, dma_map_page, dma_unmap_page, DMA_TO_DEVICE, Kernel } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const dev = new Device(kernel, { name: "dma0" });
 * const page = kernel.pages.alloc(0);
 * const addr = dma_map_page(dev, page, 0x10, 64, DMA_TO_DEVICE);
 * assert.equal(addr, page + 0x10);
 * dma_unmap_page(dev, addr, 64, DMA_TO_DEVICE);
 * ```
 */
export function dma_map_page(
  dev: Device,
  page: number,
  offset: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): number {
  _checkAddr("page", page);
  _checkAddr("offset", offset);
  _checkSize(size);
  return dev.dma.mapPage(dev, page + offset, size, dir, attrs);
}

/**
 * Mirrors dma_unmap_page(). A size of 0 or an invalid direction is EINVAL (C BUG()s on the
 * direction); the DMA ops reject addresses they did not map.
 */
export function dma_unmap_page(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDirection,
  attrs = 0,
): void {
  _checkDir(dir);
  _checkSize(size);
  dev.dma.unmapPage(dev, addr, size, dir, attrs);
}

/** Mirrors dma_map_single(): maps a buffer given by its physical address. */
export function dma_map_single(dev: Device, phys: number, size: number, dir: DmaDirection): number {
  _checkAddr("address", phys);
  _checkSize(size);
  return dev.dma.mapPage(dev, phys, size, dir, 0);
}

/** Mirrors dma_unmap_single(); the argument checks of {@linkcode dma_unmap_page}. */
export function dma_unmap_single(dev: Device, addr: number, size: number, dir: DmaDirection): void {
  dma_unmap_page(dev, addr, size, dir);
}

/** Mirrors dma_map_sg(): maps a scatterlist; returns the number of DMA segments. */
export function dma_map_sg(dev: Device, sg: Scatterlist[], dir: DmaDirection, attrs = 0): number {
  if (sg.length === 0) throw new Errno("EINVAL", "Cannot map an empty scatterlist");
  for (const s of sg) {
    _checkAddr("address", s.phys);
    _checkSize(s.length);
  }
  return dev.dma.mapSg(dev, sg, dir, attrs);
}

/** Mirrors dma_unmap_sg(): EINVAL for an empty list or an invalid direction. */
export function dma_unmap_sg(dev: Device, sg: Scatterlist[], dir: DmaDirection, attrs = 0): void {
  _checkDir(dir);
  if (sg.length === 0) throw new Errno("EINVAL", "Cannot unmap an empty scatterlist");
  dev.dma.unmapSg(dev, sg, dir, attrs);
}

/** Mirrors sg_init_one() / sg_set_buf(): builds one unmapped scatterlist entry. */
export function sg_init_one(phys: number, length: number): Scatterlist {
  return { phys, length, dmaAddress: 0, dmaLength: 0 };
}

/** Mirrors dma_alloc_coherent(): zeroed memory the CPU and the device share. */
export function dma_alloc_coherent(dev: Device, size: number): DmaCoherent {
  _checkSize(size);
  return dev.dma.alloc(dev, size, 0);
}

/** Mirrors dma_free_coherent(). */
export function dma_free_coherent(dev: Device, size: number, mem: DmaCoherent): void {
  _checkSize(size);
  dev.dma.free(dev, size, mem, 0);
}

/** Mirrors dma_set_mask(): the device can address `bits`-bit DMA addresses. */
export function dma_set_mask(dev: Device, bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 64) {
    throw new Errno("EIO", `Unsupported DMA mask of ${bits} bits`);
  }
  dev.dmaMask = bits;
}

/** Mirrors dma_set_mask_and_coherent(). */
export function dma_set_mask_and_coherent(dev: Device, bits: number): void {
  dma_set_mask(dev, bits);
  dev.coherentDmaMask = bits;
}
