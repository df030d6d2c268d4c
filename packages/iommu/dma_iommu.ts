/**
 * dma-iommu: the DMA API on top of a device's default DMA domain. Mirrors
 * drivers/iommu/dma-iommu.c in strict mode: every unmap invalidates (iotlb_sync) before its
 * IOVA is reused; there is no lazy flush queue.
 *
 * IOVAs come from the domain's {@linkcode IovaDomain}, top-down below the device's DMA mask and
 * inside the domain's aperture.
 *
 * @module
 */
import {
  dev_is_pci,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaCoherent,
  type DmaDirection,
  type DmaOps,
  Errno,
  get_order,
  hex,
  type Kernel,
  kfree,
  kmalloc,
  type MsiDesc,
  type Scatterlist,
} from "@iommu-lab/kernel";
import type { Device } from "@iommu-lab/kernel";
import {
  __IOMMU_DOMAIN_DMA_API,
  type DevIommu,
  IOMMU_CACHE,
  iommu_get_dma_domain,
  iommu_iotlb_sync,
  iommu_map,
  iommu_map_nosync,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_READ,
  iommu_sync_map,
  iommu_unmap,
  iommu_unmap_fast,
  IOMMU_WRITE,
  type IommuDomain,
  IommuIotlbGather,
} from "./iommu.ts";
import { IovaDomain } from "./iova.ts";

/** struct iommu_dma_msi_page: an MSI doorbell page mapped into a DMA domain. */
export class IommuDmaMsiPage {
  /** IOVA the page is mapped at. */
  iova = 0;

  /** The record of doorbell page `phys`, before it is mapped. */
  constructor(readonly phys: number) {}
}

/** struct iommu_dma_cookie: the dma-iommu state of a DMA domain. */
export class IommuDmaCookie {
  /** The IOVA space, set up when the first device uses the domain. */
  iovad: IovaDomain | null = null;
  /** Reused by unmaps so they allocate nothing. */
  readonly gather: IommuIotlbGather = new IommuIotlbGather();
  /** msi_page_list: doorbells mapped so far, one per page, kept until the cookie is put. */
  readonly msiPages: IommuDmaMsiPage[] = [];

  /** A cookie accounted in the slab of `kernel` (none for a standalone domain). */
  constructor(readonly kernel: Kernel | null = null) {}
}

/**
 * Mirrors iommu_get_dma_cookie(): gives a DMA domain its cookie, kmalloc()ed in `kernel` when
 * given (ENOMEM when that fails); EEXIST if the domain has one.
 */
export function iommu_get_dma_cookie(domain: IommuDomain, kernel: Kernel | null = null): void {
  if (domain.iova_cookie !== null) throw new Errno("EEXIST", "Domain already has a DMA cookie");
  const cookie = new IommuDmaCookie(kernel);
  domain.iova_cookie = kernel === null ? cookie : kmalloc(kernel, cookie);
}

/**
 * Mirrors iommu_put_dma_cookie(): drops (and frees) the cookie, every IOVA and the MSI page
 * records with it. The doorbell mappings go with the domain's page table.
 */
export function iommu_put_dma_cookie(domain: IommuDomain): void {
  const cookie = domain.iova_cookie;
  if (cookie === null) return;
  cookie.iovad?.put();
  domain.iova_cookie = null;
  if (cookie.kernel === null) return;
  for (const page of cookie.msiPages) kfree(cookie.kernel, page);
  kfree(cookie.kernel, cookie);
}

/**
 * Mirrors iommu_dma_init_domain(): sets up the IOVA space of `domain` for `dev` (the granule is
 * the smallest page size, IOVA 0 is never used) and returns the dma-iommu ops.
 *
 * Errors: EINVAL without a cookie or page sizes; EFAULT when the aperture leaves nothing to
 * allocate or disagrees with the space set up for an earlier device.
 */
export function iommu_dma_init_domain(domain: IommuDomain, _dev: Device): DmaOps {
  const cookie = domain.iova_cookie;
  if (cookie === null || domain.pgsize_bitmap === 0) {
    throw new Errno("EINVAL", "Domain is not a DMA domain");
  }
  const granule = domain.pgsizes[0];
  const { aperture_start, aperture_end, force_aperture } = domain.geometry;
  const basePfn = Math.max(1, Math.ceil(aperture_start / granule));
  if (force_aperture && aperture_end < basePfn * granule) {
    throw new Errno("EFAULT", "specified DMA range outside IOMMU capability");
  }
  const iovad = cookie.iovad;
  if (iovad !== null) {
    if (iovad.granule !== granule || iovad.startPfn !== basePfn) {
      throw new Errno("EFAULT", "Incompatible range for DMA domain");
    }
  } else {
    cookie.iovad = new IovaDomain(granule, basePfn);
  }
  return iommuDmaOps;
}

/** The DMA domain of `dev` (its cookie's IOVA space is set up); ENODEV without one. */
function _dmaDomain(dev: Device): IommuDomain {
  const domain = iommu_get_dma_domain(dev);
  if (!domain?.iova_cookie?.iovad || (domain.type & __IOMMU_DOMAIN_DMA_API) === 0) {
    throw new Errno("ENODEV", `${dev.name} has no DMA domain`);
  }
  return domain;
}

/** Mirrors dma_info_to_prot() for a coherent device. */
function dma_info_to_prot(dir: DmaDirection): number {
  switch (dir) {
    case DMA_BIDIRECTIONAL:
      return IOMMU_CACHE | IOMMU_READ | IOMMU_WRITE;
    case DMA_TO_DEVICE:
      return IOMMU_CACHE | IOMMU_READ;
    case DMA_FROM_DEVICE:
      return IOMMU_CACHE | IOMMU_WRITE;
    default:
      throw new Errno("EINVAL", `Cannot map DMA with direction ${dir}`);
  }
}

/**
 * Mirrors iommu_dma_alloc_iova(): `size` bytes (granule-aligned) of IOVA ending at or below
 * the device's DMA mask and the aperture. A PCI device tries below 4 GiB first, as Linux does
 * for devices whose 64-bit DMA is untested (unless iommu.forcedac), and stops trying once that
 * space is full. ENOMEM when the space is full.
 */
function iommu_dma_alloc_iova(
  dev: Device,
  domain: IommuDomain,
  iovad: IovaDomain,
  size: number,
  bits: number,
): number {
  let limit = bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
  if (domain.geometry.force_aperture) limit = Math.min(limit, domain.geometry.aperture_end);
  const pages = size / iovad.granule;
  const param = dev.iommu as DevIommu | null;
  if (param !== null && param.pci_32bit_workaround && dev_is_pci(dev) && limit > DMA_32BIT_MASK) {
    const pfn = iovad.allocIovaFast(pages, Math.floor(DMA_32BIT_MASK / iovad.granule), false);
    if (pfn !== 0) return pfn * iovad.granule;
    param.pci_32bit_workaround = false;
  }
  const pfn = iovad.allocIovaFast(pages, Math.floor(limit / iovad.granule), true);
  if (pfn === 0) throw new Errno("ENOMEM", `No IOVA space for ${size} bytes`);
  return pfn * iovad.granule;
}

/** DMA_BIT_MASK(32). */
const DMA_32BIT_MASK = 2 ** 32 - 1;

function _align(iovad: IovaDomain, n: number): number {
  return Math.ceil(n / iovad.granule) * iovad.granule;
}

/** Mirrors __iommu_dma_map(): maps `size` bytes at `phys` at a fresh IOVA; returns the DMA address. */
function __iommu_dma_map(
  dev: Device,
  phys: number,
  size: number,
  prot: number,
  bits: number,
): number {
  const domain = _dmaDomain(dev);
  const iovad = domain.iova_cookie!.iovad!;
  const off = phys % iovad.granule;
  const len = _align(iovad, size + off);
  const iova = iommu_dma_alloc_iova(dev, domain, iovad, len, bits);
  try {
    iommu_map(domain, iova, phys - off, len, prot);
  } catch (e) {
    iovad.freeIovaFast(iova / iovad.granule, len / iovad.granule);
    throw e;
  }
  return iova + off;
}

/**
 * Mirrors __iommu_dma_unmap(): unmaps, invalidates (strict), then frees the IOVA. EINVAL when
 * `dmaAddr`/`size` is not a mapping this device's DMA API made (a double unmap included).
 *
 * The whole IOVA block is unmapped (the walk stops where the mapping ends), so a size that is
 * wrong but rounds to the same block still leaves nothing mapped and the IOVA freed, as Linux
 * does after its WARN; the call then throws EINVAL.
 */
function __iommu_dma_unmap(dev: Device, dmaAddr: number, size: number): void {
  const domain = _dmaDomain(dev);
  const iovad = domain.iova_cookie!.iovad!;
  const off = dmaAddr % iovad.granule;
  const start = dmaAddr - off;
  const len = _align(iovad, size + off);
  const pfn = start / iovad.granule;
  const node = iovad.findIova(pfn);
  const pages = len / iovad.granule;
  const blockPages = node === null ? 0 : node.pfnHi - pfn + 1;
  if (pages === 0 || node === null || node.pfnLo !== pfn || blockPages !== iovad.fastSize(pages)) {
    throw new Errno("EINVAL", `DMA address ${hex(dmaAddr)} was not mapped here`);
  }
  const gather = domain.iova_cookie!.gather;
  gather.reset();
  const unmapped = iommu_unmap_fast(domain, start, blockPages * iovad.granule, gather);
  iommu_iotlb_sync(domain, gather);
  // Nothing mapped: never mapped or already unmapped (its IOVA may sit in the rcache already).
  if (unmapped === 0) {
    throw new Errno("EINVAL", `DMA address ${hex(dmaAddr)} is not mapped`);
  }
  iovad.freeIovaFast(pfn, pages);
  if (unmapped !== len) {
    throw new Errno(
      "EINVAL",
      `DMA unmap of ${hex(dmaAddr)} with size ${size}: ${hex(unmapped)} bytes were mapped`,
    );
  }
}

/**
 * The DMA ops of devices whose default domain is a DMA domain (iommu_dma_ops).
 *
 * Streaming mappings round out to the IOMMU granule; the returned address keeps the buffer's
 * offset in its page. A scatterlist gets one contiguous IOVA range, segment after segment (no
 * merging, so `mapSg` returns the number of entries). Coherent memory is physically contiguous
 * (the model has no vmap) and mapped read/write.
 */
export const iommuDmaOps: DmaOps = {
  mapPage(dev, phys, size, dir) {
    return __iommu_dma_map(dev, phys, size, dma_info_to_prot(dir), dev.dmaMask);
  },
  unmapPage(dev, dmaAddr, size) {
    __iommu_dma_unmap(dev, dmaAddr, size);
  },
  mapSg(dev, sg: Scatterlist[], dir) {
    const prot = dma_info_to_prot(dir);
    const domain = _dmaDomain(dev);
    const iovad = domain.iova_cookie!.iovad!;
    let total = 0;
    for (const s of sg) total += _align(iovad, s.length + s.phys % iovad.granule);
    const iova = iommu_dma_alloc_iova(dev, domain, iovad, total, dev.dmaMask);
    let cur = iova;
    try {
      for (const s of sg) {
        const off = s.phys % iovad.granule;
        const len = _align(iovad, s.length + off);
        iommu_map_nosync(domain, cur, s.phys - off, len, prot);
        s.dmaAddress = cur + off;
        s.dmaLength = s.length;
        cur += len;
      }
      iommu_sync_map(domain, iova, total);
    } catch (e) {
      if (cur > iova) iommu_unmap(domain, iova, cur - iova);
      iovad.freeIovaFast(iova / iovad.granule, total / iovad.granule);
      for (const s of sg) s.dmaAddress = s.dmaLength = 0;
      throw e;
    }
    return sg.length;
  },
  unmapSg(dev, sg) {
    if (sg.length === 0) return;
    const first = sg[0].dmaAddress;
    const last = sg[sg.length - 1];
    __iommu_dma_unmap(dev, first, last.dmaAddress + last.dmaLength - first);
  },
  alloc(dev, size): DmaCoherent {
    const order = get_order(size);
    const pa = dev.kernel.pages.alloc(order);
    try {
      const prot = IOMMU_CACHE | IOMMU_READ | IOMMU_WRITE;
      return { cpuAddr: pa, dmaAddr: __iommu_dma_map(dev, pa, size, prot, dev.coherentDmaMask) };
    } catch (e) {
      dev.kernel.pages.free(pa, order);
      throw e;
    }
  },
  free(dev, size, mem) {
    __iommu_dma_unmap(dev, mem.dmaAddr, size);
    dev.kernel.pages.free(mem.cpuAddr, get_order(size));
  },
};

/**
 * Mirrors iommu_dma_sw_msi(): maps the doorbell page holding `msiAddr` into `domain` (once per
 * page: later vectors reuse the mapping) and records its IOVA and page shift in `desc`, so the
 * controller composes the message with msi_msg_set_addr(). A domain without a DMA cookie leaves
 * the doorbell physical.
 *
 * The page is mapped write-only, no-exec, as MMIO, at an IOVA allocated like a streaming
 * mapping of `desc.dev` (below its DMA mask). ENOMEM, as in Linux, when no IOVA is left or the
 * record or the mapping cannot be allocated; nothing is left behind then.
 */
export function iommu_dma_sw_msi(domain: IommuDomain, desc: MsiDesc, msiAddr: number): void {
  const cookie = domain.iova_cookie;
  if (cookie === null) {
    desc.iommuMsiIova = desc.iommuMsiShift = 0;
    return;
  }
  const page = iommu_dma_get_msi_page(desc.dev, msiAddr, domain, cookie);
  desc.iommuMsiIova = page.iova;
  desc.iommuMsiShift = Math.log2(cookie.iovad!.granule);
}

/** Mirrors iommu_dma_get_msi_page(): the cookie's mapping of the page of `msiAddr`, made if new. */
function iommu_dma_get_msi_page(
  dev: Device,
  msiAddr: number,
  domain: IommuDomain,
  cookie: IommuDmaCookie,
): IommuDmaMsiPage {
  const iovad = cookie.iovad;
  if (iovad === null) throw new Errno("ENOMEM", `${dev.name}: DMA domain has no IOVA space`);
  const size = iovad.granule;
  const phys = msiAddr - msiAddr % size;
  for (const p of cookie.msiPages) if (p.phys === phys) return p;
  const kernel = cookie.kernel;
  const page = new IommuDmaMsiPage(phys);
  if (kernel !== null) kmalloc(kernel, page);
  try {
    page.iova = iommu_dma_alloc_iova(dev, domain, iovad, size, dev.dmaMask);
    try {
      iommu_map(domain, page.iova, phys, size, IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO);
    } catch (e) {
      iovad.freeIovaFast(page.iova / size, 1);
      throw e;
    }
  } catch (e) {
    if (kernel !== null) kfree(kernel, page);
    if (!(e instanceof Errno)) throw e;
    throw new Errno("ENOMEM", `Cannot map MSI doorbell ${hex(phys)}: ${e.message}`);
  }
  cookie.msiPages.push(page);
  return page;
}
