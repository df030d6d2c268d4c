/**
 * The user memory behind IOAS mappings: an {@linkcode IoptPages} is a range of a process's
 * address space, pinned while some domain needs its physical pages, and the area functions
 * that load those pages into iommu_domains and take them out again. Mirrors the parts of
 * drivers/iommu/iommufd/pages.c that domains use (there are no in-kernel accesses here).
 *
 * DIVERGENCE: pages.c pins, per area, only the span of pages the area covers, keeps the PFNs in
 * the first domain (the "storage domain") or an xarray, and reads them back from there. Here an
 * IoptPages pins its whole range when the first area using it gains a domain and keeps the
 * physical addresses in an array until the last such area loses its domains; areas that slice a
 * range (IOMMU_IOAS_COPY) keep all of it pinned.
 *
 * @module
 */
import {
  Errno,
  FOLL_WRITE,
  kfree,
  kmalloc,
  type MmStruct,
  PAGE_SIZE,
  pin_user_pages,
  pr_warn,
  unpin_user_pages,
} from "@iommu-lab/kernel";
import { iommu_map, iommu_unmap, type IommuDomain } from "@iommu-lab/iommu";
import type { IommuFd } from "./iommufd_private.ts";
import type { IoptArea } from "./io_pagetable.ts";

/** 2^64, the value `ULONG_MAX` (2^64 - 1) rounds to as a number. */
export const ULONG_MAX: number = 2 ** 64;

/** struct iopt_pages: a page-aligned range of user memory some areas map. */
export class IoptPages {
  /** kref: areas and pending copies using the range. */
  kref = 1;
  /** Physical address of each page while pinned, else null. */
  pinned: number[] | null = null;
  /** Areas holding the pin (those with a storage domain). */
  pin_users = 0;

  /** `npages` pages of `mm` from the page-aligned `uptr`. */
  constructor(
    readonly ictx: IommuFd,
    readonly mm: MmStruct,
    readonly uptr: number,
    readonly npages: number,
    readonly writable: boolean,
  ) {}
}

/**
 * Mirrors iopt_alloc_user_pages(): a range covering `length` bytes from user address `uptr`,
 * pinned later. Returns it with the byte offset of `uptr` in it. EINVAL for a zero or huge
 * length, EOVERFLOW when the range wraps, ENOMEM.
 */
export function iopt_alloc_user_pages(
  ictx: IommuFd,
  uptr: number,
  length: number,
  writable: boolean,
): { pages: IoptPages; start_byte: number } {
  if (uptr + length > ULONG_MAX) throw new Errno("EOVERFLOW", "The user range wraps");
  // Mirrors iopt_alloc_pages(): also keeps DIV_ROUND_UP below from overflowing.
  if (length === 0 || length > ULONG_MAX - PAGE_SIZE) {
    throw new Errno("EINVAL", `Cannot map ${length} bytes`);
  }
  const start = uptr - (uptr % PAGE_SIZE);
  const start_byte = uptr - start;
  const npages = Math.ceil((length + start_byte) / PAGE_SIZE);
  const pages = kmalloc(ictx.kernel, new IoptPages(ictx, ictx.mm, start, npages, writable));
  return { pages, start_byte };
}

/** Mirrors iopt_put_pages(): drops a reference; the last one frees the (unpinned) range. */
export function iopt_put_pages(pages: IoptPages): void {
  if (--pages.kref !== 0) return;
  if (pages.pinned !== null) pr_warn(pages.ictx.kernel, "iommufd: freeing pinned pages");
  kfree(pages.ictx.kernel, pages);
}

/** Takes the area's pin on its pages, pinning the range for the first user (EFAULT, ENOMEM). */
function _area_pin(pages: IoptPages): void {
  if (pages.pin_users === 0) {
    const pas: number[] = [];
    pin_user_pages(pages.mm, pages.uptr, pages.npages, pages.writable ? FOLL_WRITE : 0, pas);
    pages.pinned = pas;
  }
  pages.pin_users++;
}

/** Drops the area's pin; the last one unpins the range. */
function _area_unpin(pages: IoptPages): void {
  if (--pages.pin_users !== 0) return;
  unpin_user_pages(pages.mm, pages.pinned!);
  pages.pinned = null;
}

/**
 * Maps the area's bytes into `domain` at its IOVA, one iommu_map() per physically contiguous
 * run (per page with large pages disabled, as batch_iommu_map_small()); unwinds on failure.
 */
function _area_map(area: IoptArea, domain: IommuDomain): void {
  const pinned = area.pages!.pinned!;
  const small = area.iopt!.disable_large_pages;
  const end = area.start_byte + area.length;
  let mapped = 0;
  let runPa = 0;
  let runLen = 0;
  try {
    for (let byte = area.start_byte; byte < end;) {
      const off = byte % PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - off, end - byte);
      const pa = pinned[Math.floor(byte / PAGE_SIZE)] + off;
      if (runLen !== 0 && (small || pa !== runPa + runLen)) {
        iommu_map(domain, area.start + mapped, runPa, runLen, area.iommu_prot);
        mapped += runLen;
        runLen = 0;
      }
      if (runLen === 0) runPa = pa;
      runLen += n;
      byte += n;
    }
    iommu_map(domain, area.start + mapped, runPa, runLen, area.iommu_prot);
  } catch (e) {
    if (mapped !== 0) iommu_unmap(domain, area.start, mapped);
    throw e;
  }
}

/** Mirrors iopt_area_unmap_domain(): takes the area's IOVA range out of `domain`. */
export function iopt_area_unmap_domain(area: IoptArea, domain: IommuDomain): void {
  const n = iommu_unmap(domain, area.start, area.length);
  if (n !== area.length) {
    pr_warn(area.pages!.ictx.kernel, `iommufd: unmapped ${n} of ${area.length} bytes`);
  }
}

/**
 * Mirrors iopt_area_fill_domain(): loads the area into `domain`, which a domain being added to
 * the IOAS needs. The first domain of an area pins its pages and becomes its storage domain.
 */
export function iopt_area_fill_domain(area: IoptArea, domain: IommuDomain): void {
  const pages = area.pages!;
  const fresh = area.storage_domain === null;
  if (fresh) _area_pin(pages);
  try {
    _area_map(area, domain);
  } catch (e) {
    if (fresh) _area_unpin(pages);
    throw e;
  }
  if (fresh) area.storage_domain = domain;
}

/**
 * Mirrors iopt_area_unfill_domain(): takes the area out of `domain`, its last one, and lets its
 * pages go.
 */
export function iopt_area_unfill_domain(
  area: IoptArea,
  pages: IoptPages,
  domain: IommuDomain,
): void {
  iopt_area_unmap_domain(area, domain);
  area.storage_domain = null;
  _area_unpin(pages);
}

/**
 * Mirrors iopt_area_fill_domains(): a new area goes into every domain of its IOAS (pinning its
 * pages first); on a failure nothing stays mapped or pinned. Nothing to do without domains.
 */
export function iopt_area_fill_domains(area: IoptArea, pages: IoptPages): void {
  const domains = area.iopt!.domains;
  if (domains.length === 0) return;
  _area_pin(pages);
  let done = 0;
  try {
    for (; done < domains.length; done++) _area_map(area, domains[done]);
  } catch (e) {
    for (let i = 0; i < done; i++) iopt_area_unmap_domain(area, domains[i]);
    _area_unpin(pages);
    throw e;
  }
  area.storage_domain = domains[0];
}

/** Mirrors iopt_area_unfill_domains(): an area leaving its IOAS leaves every domain. */
export function iopt_area_unfill_domains(area: IoptArea, pages: IoptPages): void {
  if (area.storage_domain === null) return;
  for (const domain of area.iopt!.domains) iopt_area_unmap_domain(area, domain);
  area.storage_domain = null;
  _area_unpin(pages);
}
