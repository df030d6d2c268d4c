/**
 * The io_pagetable of an IOAS: areas (IOVA ranges mapped to user memory), the allowed and
 * reserved IOVA ranges, automatic IOVA allocation, the iommu_domains kept in sync with the
 * areas, and dirty tracking over them. Mirrors drivers/iommu/iommufd/io_pagetable.c and
 * io_pagetable.h.
 *
 * The interval trees are sorted arrays (an IOAS holds tens of areas, not millions). IOVAs are
 * numbers: exact below 2^53, where every domain's aperture ends here; `ULONG_MAX` is 2^64.
 *
 * @module
 */
import {
  copy_from_user,
  copy_to_user,
  Errno,
  type Kernel,
  kfree,
  kmalloc,
  PAGE_SIZE,
} from "@iommu-lab/kernel";
import {
  iommu_dirty_bitmap_init,
  IOMMU_DIRTY_NO_CLEAR,
  iommu_iotlb_sync,
  IOMMU_WRITE,
  IommuDirtyBitmap,
  type IommuDomain,
  IommuIotlbGather,
  iova_bitmap_alloc,
} from "@iommu-lab/iommu";
import type { IommuFd } from "./iommufd_private.ts";
import {
  iopt_alloc_user_pages,
  iopt_area_fill_domain,
  iopt_area_fill_domains,
  iopt_area_unfill_domain,
  iopt_area_unfill_domains,
  iopt_area_unmap_domain,
  iopt_put_pages,
  type IoptPages,
  ULONG_MAX,
} from "./pages.ts";

/** iopt_map flag: the IOVA is picked by the kernel, not given. */
export const IOPT_ALLOC_IOVA = 1 << 0;

/**
 * IOVAs at or above this cannot be mapped. DIVERGENCE: Linux maps anywhere below 2^64 in an IOAS
 * without domains; here IOVAs are numbers, exact only below 2^53, so MAP/COPY at fixed IOVAs
 * above fail with EOVERFLOW and automatic allocation stays below.
 */
export const IOPT_IOVA_LIMIT: number = 2 ** 53;

/** An inclusive IOVA interval (an interval_tree_node). */
export interface IoptInterval {
  /** First IOVA. */
  start: number;
  /** Last IOVA (inclusive). */
  last: number;
}

/** struct iopt_area: an IOVA range mapped to a slice of an {@linkcode IoptPages}. */
export class IoptArea implements IoptInterval {
  /** First IOVA. */
  start = 0;
  /** Last IOVA (inclusive). */
  last = 0;
  /** The user memory; null while the area is being created or torn down. */
  pages: IoptPages | null = null;
  /** Byte of `pages` the area's first IOVA maps to. */
  start_byte = 0;
  /** `start_byte` within its page. */
  page_offset = 0;
  /** IOMMU_READ/WRITE/CACHE of the mapping. */
  iommu_prot = 0;
  /** The domain holding the area's pages pinned (the first one it was loaded into), or null. */
  storage_domain: IommuDomain | null = null;
  /** The IOAS the area is in, once inserted. */
  iopt: IoPagetable | null = null;

  /** Bytes of IOVA. Mirrors iopt_area_length(). */
  get length(): number {
    return this.last - this.start + 1;
  }
}

/** struct iopt_reserved: an IOVA range no area may use (an aperture edge, a test's range). */
export interface IoptReserved extends IoptInterval {
  /** Who reserved it (a domain, or null for the selftest). */
  owner: unknown;
}

/** struct io_pagetable. */
export class IoPagetable {
  /** Areas, by start. */
  readonly areas: IoptArea[] = [];
  /** Allowed ranges, by start (empty: everything is allowed). */
  allowed: IoptInterval[] = [];
  /** Reserved ranges, by start (they may overlap). */
  readonly reserved: IoptReserved[] = [];
  /** Domains kept in sync with the areas. */
  readonly domains: IommuDomain[] = [];
  /** Alignment MAP and COPY need: the smallest page of every domain (1 without domains). */
  iova_alignment = 1;
  /** IOMMU_OPTION_HUGE_PAGES off: map page by page. */
  disable_large_pages = false;

  /** The io_pagetable of an IOAS of `ictx`. Mirrors iopt_init_table(). */
  constructor(readonly ictx: IommuFd) {}

  /** The kernel objects are accounted in. */
  get kernel(): Kernel {
    return this.ictx.kernel;
  }
}

/** The first interval of `list` (sorted by start) that intersects `[start, last]`. */
function _first<T extends IoptInterval>(
  list: readonly T[],
  start: number,
  last: number,
): T | undefined {
  for (const n of list) {
    if (n.start > last) return undefined;
    if (n.last >= start) return n;
  }
  return undefined;
}

function _insert<T extends IoptInterval>(list: T[], node: T): void {
  let i = 0;
  while (i < list.length && list[i].start <= node.start) i++;
  list.splice(i, 0, node);
}

function _remove<T>(list: T[], node: T): void {
  const i = list.indexOf(node);
  if (i >= 0) list.splice(i, 1);
}

/** One span of interval_tree_for_each_span(): a hole or a used stretch of `[first, last]`. */
export interface Span extends IoptInterval {
  is_hole: boolean;
}

/**
 * Mirrors interval_tree_for_each_span() (and the double-span walk over two trees): splits
 * `[first, last]` into used stretches (the union of `used`) and the holes between.
 */
export function _spans(used: readonly IoptInterval[], first: number, last: number): Span[] {
  const sorted = [...used].sort((a, b) => a.start - b.start);
  const out: Span[] = [];
  let cur = first;
  let i = 0;
  while (cur <= last) {
    while (i < sorted.length && sorted[i].last < cur) i++;
    if (i === sorted.length || sorted[i].start > last) {
      out.push({ is_hole: true, start: cur, last });
      break;
    }
    if (sorted[i].start > cur) {
      out.push({ is_hole: true, start: cur, last: sorted[i].start - 1 });
      cur = sorted[i].start;
    }
    let end = sorted[i].last;
    while (i + 1 < sorted.length && sorted[i + 1].start <= end + 1) {
      end = Math.max(end, sorted[++i].last);
    }
    out.push({ is_hole: false, start: cur, last: Math.min(end, last) });
    if (end >= last) break;
    cur = end + 1;
    i++;
  }
  return out;
}

/** Mirrors roundup_pow_of_two(). */
function _roundup_pow_of_two(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** 1 << __ffs64(n): the largest power of two dividing `n` (n > 0). */
function _lowest_bit(n: number): number {
  let b = 1;
  while (n % (b * 2) === 0) b *= 2;
  return b;
}

/** ALIGN(x, a) | page_offset, as __alloc_iova_check_hole/used() build a candidate. */
function _align_or(x: number, a: number, page_offset: number): number {
  const aligned = Math.ceil(x / a) * a;
  const low = aligned % PAGE_SIZE;
  return aligned - low + (low | page_offset);
}

/** Mirrors __alloc_iova_check_hole()/_used(): the candidate start in `span`, or -1. */
function _fit(span: IoptInterval, length: number, align: number, page_offset: number): number {
  if (span.last - span.start < length - 1) return -1;
  const start = _align_or(span.start, align, page_offset);
  if (start > span.last || span.last - start < length - 1) return -1;
  return start;
}

/**
 * Mirrors iopt_alloc_iova(): the lowest free IOVA for `length` bytes inside the allowed ranges
 * (or [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] without any), aligned to the length's power of two but
 * no more than `uptr` is, keeping `uptr`'s offset in its page so huge pages stay possible.
 * EOVERFLOW for a zero or huge length, EINVAL when that alignment is below the IOAS's, ENOSPC
 * when nothing fits.
 */
function iopt_alloc_iova(iopt: IoPagetable, uptr: number, length: number): number {
  const page_offset = uptr % PAGE_SIZE;
  if (length === 0 || length >= ULONG_MAX / 2) throw new Errno("EOVERFLOW", "Bad length");
  let align = _roundup_pow_of_two(length);
  if (uptr !== 0) align = Math.min(align, _lowest_bit(uptr));
  if (align < iopt.iova_alignment) {
    throw new Errno("EINVAL", `Alignment ${align} below the IOAS's ${iopt.iova_alignment}`);
  }
  const allowed = iopt.allowed.length === 0
    ? [{ is_hole: false, start: PAGE_SIZE, last: ULONG_MAX - PAGE_SIZE }]
    : _spans(iopt.allowed, PAGE_SIZE, ULONG_MAX - PAGE_SIZE);
  const used = [...iopt.reserved, ...iopt.areas];
  for (const span of allowed) {
    if (span.is_hole) continue;
    const clipped = { start: span.start, last: Math.min(span.last, IOPT_IOVA_LIMIT - 1) };
    // As __alloc_iova_check_used(), the holes are searched from the aligned start.
    const start_used = _fit(clipped, length, align, page_offset);
    if (start_used < 0) continue;
    for (const hole of _spans(used, start_used, clipped.last)) {
      if (!hole.is_hole) continue;
      const start = _fit(hole, length, align, page_offset);
      if (start >= 0) return start;
    }
  }
  throw new Errno("ENOSPC", `No free IOVA range of 0x${length.toString(16)} bytes`);
}

/**
 * Mirrors iopt_check_iova(): `[iova, iova + length)` can take a new area. EINVAL when unaligned
 * or reserved, EEXIST when mapped, EOVERFLOW when it wraps (or passes IOPT_IOVA_LIMIT).
 */
function iopt_check_iova(iopt: IoPagetable, iova: number, length: number): void {
  if (iova % iopt.iova_alignment !== 0) {
    throw new Errno("EINVAL", `IOVA 0x${iova.toString(16)} is not ${iopt.iova_alignment} aligned`);
  }
  const last = iova + length - 1;
  if (last > ULONG_MAX) throw new Errno("EOVERFLOW", "IOVA range wraps");
  if (_first(iopt.reserved, iova, last)) throw new Errno("EINVAL", "IOVA range is reserved");
  if (_first(iopt.areas, iova, last)) throw new Errno("EEXIST", "IOVA range is mapped");
  if (last >= IOPT_IOVA_LIMIT) throw new Errno("EOVERFLOW", "IOVA range is beyond 2^53");
}

/** struct iopt_pages_list: a slice of pages a MAP or COPY puts at consecutive IOVAs. */
export interface IoptPagesList {
  /** The pages (the list holds a reference). */
  pages: IoptPages | null;
  /** The area being created for them. */
  area: IoptArea | null;
  /** First byte of the slice in `pages`. */
  start_byte: number;
  /** Bytes of the slice. */
  length: number;
}

/**
 * Mirrors iopt_insert_area(): sets `area` up for `length` bytes of `pages` from `start_byte` at
 * `iova` and inserts it with no pages (reserving the IOVA). EPERM for a writable mapping of
 * pages pinned read-only, EINVAL for an offset the IOAS's alignment forbids.
 */
function iopt_insert_area(
  iopt: IoPagetable,
  area: IoptArea,
  pages: IoptPages,
  iova: number,
  start_byte: number,
  length: number,
  iommu_prot: number,
): void {
  if ((iommu_prot & IOMMU_WRITE) && !pages.writable) {
    throw new Errno("EPERM", "Writable mapping of read-only pages");
  }
  area.iommu_prot = iommu_prot;
  area.page_offset = start_byte % PAGE_SIZE;
  if (area.page_offset % iopt.iova_alignment !== 0) {
    throw new Errno("EINVAL", `Page offset 0x${area.page_offset.toString(16)} is unaligned`);
  }
  area.start = iova;
  area.last = iova + length - 1;
  area.start_byte = start_byte;
  area.iopt = iopt;
  _insert(iopt.areas, area);
}

/**
 * Mirrors iopt_alloc_area_pages(): allocates an area per list element, picks or checks the IOVA
 * (EINVAL for a zero or unaligned length) and inserts the areas, still without pages. Returns
 * the IOVA.
 */
function iopt_alloc_area_pages(
  iopt: IoPagetable,
  list: IoptPagesList[],
  length: number,
  dst_iova: number,
  iommu_prot: number,
  flags: number,
): number {
  for (const elm of list) elm.area = kmalloc(iopt.kernel, new IoptArea());
  if (length % iopt.iova_alignment !== 0 || length === 0) {
    throw new Errno("EINVAL", `Length 0x${length.toString(16)} is not IOAS aligned`);
  }
  let iova = dst_iova;
  if (flags & IOPT_ALLOC_IOVA) {
    // The first element's user address decides the ideal alignment.
    const first = list[0];
    iova = iopt_alloc_iova(iopt, first.pages!.uptr + first.start_byte, length);
  } else {
    iopt_check_iova(iopt, iova, length);
  }
  let at = iova;
  for (const elm of list) {
    iopt_insert_area(iopt, elm.area!, elm.pages!, at, elm.start_byte, elm.length, iommu_prot);
    at += elm.length;
  }
  return iova;
}

/** Mirrors iopt_abort_area(): takes an area that never got its pages out and frees it. */
function iopt_abort_area(kernel: Kernel, area: IoptArea): void {
  if (area.iopt !== null) _remove(area.iopt.areas, area);
  kfree(kernel, area);
}

/** Mirrors iopt_free_pages_list(): drops what a list still holds (areas, page references). */
export function iopt_free_pages_list(kernel: Kernel, list: IoptPagesList[]): void {
  for (const elm of list.splice(0)) {
    if (elm.area !== null) iopt_abort_area(kernel, elm.area);
    if (elm.pages !== null) iopt_put_pages(elm.pages);
    kfree(kernel, elm);
  }
}

/**
 * Mirrors iopt_map_pages(): maps the list's slices at consecutive IOVAs (picked by the kernel
 * with IOPT_ALLOC_IOVA) into the IOAS and all its domains. The areas take the list's pages.
 * Returns the IOVA.
 */
export function iopt_map_pages(
  iopt: IoPagetable,
  list: IoptPagesList[],
  length: number,
  dst_iova: number,
  iommu_prot: number,
  flags: number,
): number {
  const iova = iopt_alloc_area_pages(iopt, list, length, dst_iova, iommu_prot, flags);
  // Mirrors iopt_fill_domains_pages().
  let done = 0;
  try {
    for (; done < list.length; done++) {
      const elm = list[done];
      elm.area!.pages = elm.pages;
      try {
        iopt_area_fill_domains(elm.area!, elm.pages!);
      } catch (e) {
        elm.area!.pages = null;
        throw e;
      }
    }
  } catch (e) {
    for (let i = 0; i < done; i++) {
      iopt_area_unfill_domains(list[i].area!, list[i].pages!);
      list[i].area!.pages = null;
    }
    throw e;
  }
  // The areas own the pages now.
  for (const elm of list) {
    elm.pages = null;
    elm.area = null;
  }
  return iova;
}

/**
 * Mirrors iopt_map_user_pages(): maps `length` bytes of the caller's memory at `uptr` at `iova`
 * (or where the kernel picks with IOPT_ALLOC_IOVA). With domains the pages are pinned and
 * loaded now (EFAULT for memory that is not mapped); without, only when a domain comes.
 * Returns the IOVA.
 */
export function iopt_map_user_pages(
  ictx: IommuFd,
  iopt: IoPagetable,
  iova: number,
  uptr: number,
  length: number,
  iommu_prot: number,
  flags: number,
): number {
  const { pages, start_byte } = iopt_alloc_user_pages(
    ictx,
    uptr,
    length,
    (iommu_prot & IOMMU_WRITE) !== 0,
  );
  // The element lives on the stack in Linux: only what it points to is allocated.
  const elm: IoptPagesList = { pages, area: null, start_byte, length };
  try {
    return iopt_map_pages(iopt, [elm], length, iova, iommu_prot, flags);
  } catch (e) {
    if (elm.area !== null) iopt_abort_area(ictx.kernel, elm.area);
    if (elm.pages !== null) iopt_put_pages(elm.pages);
    throw e;
  }
}

/**
 * Mirrors iopt_area_contig_init()/_next() as iopt_for_each_contig_area() uses them: the areas
 * that cover `[iova, last]` without a gap, each with the part of it inside; `done` is false when
 * a gap (or an area being torn down) stops the walk short.
 */
function _contig(
  iopt: IoPagetable,
  iova: number,
  last: number,
): { parts: { area: IoptArea; cur: number; last: number }[]; done: boolean } {
  const parts: { area: IoptArea; cur: number; last: number }[] = [];
  let cur = iova;
  let area = _first(iopt.areas, iova, iova);
  while (area !== undefined && area.pages !== null) {
    parts.push({ area, cur, last: Math.min(last, area.last) });
    if (area.last >= last) return { parts, done: true };
    cur = area.last + 1;
    area = _first(iopt.areas, cur, last);
    if (area !== undefined && area.start !== cur) break;
  }
  return { parts, done: false };
}

/**
 * Mirrors iopt_get_pages(): a list referencing the pages behind `[iova, iova + length)`, which
 * must be mapped without a gap (ENOENT). EINVAL for a zero length, EOVERFLOW when it wraps.
 */
export function iopt_get_pages(
  iopt: IoPagetable,
  iova: number,
  length: number,
  list: IoptPagesList[],
): void {
  if (!length) throw new Errno("EINVAL", "Zero length");
  const last = iova + length - 1;
  if (last > ULONG_MAX) throw new Errno("EOVERFLOW", "IOVA range wraps");
  const { parts, done } = _contig(iopt, iova, last);
  try {
    for (const p of parts) {
      const elm = kmalloc(iopt.kernel, {
        pages: p.area.pages,
        area: null,
        start_byte: p.area.start_byte + (p.cur - p.area.start),
        length: p.last - p.cur + 1,
      } as IoptPagesList);
      p.area.pages!.kref++;
      list.push(elm);
    }
    if (!done) throw new Errno("ENOENT", "IOVA range is not fully mapped");
  } catch (e) {
    iopt_free_pages_list(iopt.kernel, list);
    throw e;
  }
}

/**
 * Mirrors iopt_unmap_iova_range(): removes every area inside `[start, last]`, which may not cut
 * one (ENOENT; areas before it are gone already, as in Linux). Returns the bytes unmapped; ENOENT
 * when nothing was mapped there.
 */
function iopt_unmap_iova_range(iopt: IoPagetable, start: number, last: number): number {
  let unmapped = 0;
  for (let area = _first(iopt.areas, start, last); area; area = _first(iopt.areas, start, last)) {
    if (area.pages === null) throw new Errno("EBUSY", "Area is being mapped");
    if (area.start < start || area.last > last) {
      throw new Errno("ENOENT", "Unmap would split an area");
    }
    const pages = area.pages;
    area.pages = null;
    iopt_area_unfill_domains(area, pages);
    iopt_abort_area(iopt.kernel, area);
    iopt_put_pages(pages);
    unmapped += area.length;
  }
  if (unmapped === 0) throw new Errno("ENOENT", "Nothing is mapped there");
  return unmapped;
}

/**
 * Mirrors iopt_unmap_iova(): unmaps areas wholly inside `[iova, iova + length)`; splitting one
 * is ENOENT. EINVAL for a zero length, EOVERFLOW when it wraps. Returns the bytes unmapped.
 */
export function iopt_unmap_iova(iopt: IoPagetable, iova: number, length: number): number {
  if (!length) throw new Errno("EINVAL", "Zero length");
  const last = iova + length - 1;
  if (last > ULONG_MAX) throw new Errno("EOVERFLOW", "IOVA range wraps");
  return iopt_unmap_iova_range(iopt, iova, last);
}

/** Mirrors iopt_unmap_all(): unmaps everything; an empty IOAS is fine. Returns the bytes. */
export function iopt_unmap_all(iopt: IoPagetable): number {
  return iopt.areas.length === 0 ? 0 : iopt_unmap_iova_range(iopt, 0, ULONG_MAX);
}

/**
 * Mirrors iopt_set_allow_iova(): replaces the allowed ranges with `allowed` (which the caller
 * frees either way: on success it holds the old ones). EADDRINUSE when one intersects a
 * reserved range.
 */
export function iopt_set_allow_iova(iopt: IoPagetable, allowed: IoptInterval[]): void {
  const old = iopt.allowed;
  for (const a of allowed) {
    if (_first(iopt.reserved, a.start, a.last)) {
      throw new Errno("EADDRINUSE", "An allowed range is reserved");
    }
  }
  iopt.allowed = [...allowed];
  allowed.length = 0;
  allowed.push(...old);
}

/**
 * Mirrors iopt_reserve_iova(): no area may use `[start, last]`. EADDRINUSE when an area or an
 * allowed range intersects it, ENOMEM.
 */
export function iopt_reserve_iova(
  iopt: IoPagetable,
  start: number,
  last: number,
  owner: unknown,
): void {
  if (_first(iopt.areas, start, last) || _first(iopt.allowed, start, last)) {
    throw new Errno("EADDRINUSE", "The range is mapped or allowed");
  }
  _insert(iopt.reserved, kmalloc(iopt.kernel, { start, last, owner } as IoptReserved));
}

/** Mirrors iopt_remove_reserved_iova(): drops every range `owner` reserved. */
export function iopt_remove_reserved_iova(iopt: IoPagetable, owner: unknown): void {
  for (const r of [...iopt.reserved]) {
    if (r.owner !== owner) continue;
    _remove(iopt.reserved, r);
    kfree(iopt.kernel, r);
  }
}

/** Mirrors iopt_destroy_table(): frees the allowed and the selftest's reserved ranges. */
export function iopt_destroy_table(iopt: IoPagetable): void {
  iopt_remove_reserved_iova(iopt, null);
  for (const a of iopt.allowed) kfree(iopt.kernel, a);
  iopt.allowed = [];
}

/** Mirrors iopt_check_iova_alignment(): every area fits `align`, else EADDRINUSE. */
function iopt_check_iova_alignment(iopt: IoPagetable, align: number): void {
  for (const a of iopt.areas) {
    if (a.start % align || a.length % align || a.page_offset % align) {
      throw new Errno("EADDRINUSE", `An area is not ${align} aligned`);
    }
  }
}

/** 1 << __ffs(pgsize_bitmap): the smallest page of a domain. */
function _min_pgsize(domain: IommuDomain): number {
  return domain.pgsizes[0] ?? 1;
}

/**
 * Mirrors iopt_table_add_domain(): keeps `domain` in sync with the IOAS: reserves what is
 * outside its aperture, raises the IOAS alignment to its smallest page and loads every area
 * (pinning pages for the first domain). EINVAL for a smallest page above PAGE_SIZE, EADDRINUSE
 * when an area is outside the aperture or misaligned, EEXIST for a domain already there, and
 * what loading throws; nothing changes on failure.
 */
export function iopt_table_add_domain(iopt: IoPagetable, domain: IommuDomain): void {
  if (iopt.domains.includes(domain)) throw new Errno("EEXIST", "Domain is already in the IOAS");
  const align = Math.max(_min_pgsize(domain), iopt.iova_alignment);
  if (align > PAGE_SIZE) throw new Errno("EINVAL", `Domain page size ${align} > PAGE_SIZE`);
  if (align !== iopt.iova_alignment) iopt_check_iova_alignment(iopt, align);
  const g = domain.geometry;
  try {
    if (g.aperture_start !== 0) iopt_reserve_iova(iopt, 0, g.aperture_start - 1, domain);
    if (g.aperture_end < ULONG_MAX) {
      iopt_reserve_iova(iopt, g.aperture_end + 1, ULONG_MAX, domain);
    }
    iopt_fill_domain(iopt, domain);
  } catch (e) {
    iopt_remove_reserved_iova(iopt, domain);
    throw e;
  }
  iopt.iova_alignment = align;
  iopt.domains.push(domain);
}

/** Mirrors iopt_fill_domain(): loads every area into `domain`; on failure unloads them again. */
function iopt_fill_domain(iopt: IoPagetable, domain: IommuDomain): void {
  let done = 0;
  try {
    for (; done < iopt.areas.length; done++) {
      if (iopt.areas[done].pages !== null) iopt_area_fill_domain(iopt.areas[done], domain);
    }
  } catch (e) {
    for (let i = 0; i < done; i++) {
      const area = iopt.areas[i];
      if (area.pages === null) continue;
      if (area.storage_domain === domain) iopt_area_unfill_domain(area, area.pages, domain);
      else iopt_area_unmap_domain(area, domain);
    }
    throw e;
  }
}

/**
 * Mirrors iopt_unfill_domain(): takes every area out of `domain`, already removed from the
 * domain list. Areas it stored move to another domain; with none left they unpin.
 */
function iopt_unfill_domain(iopt: IoPagetable, domain: IommuDomain): void {
  const storage = iopt.domains[0] ?? null;
  for (const area of iopt.areas) {
    if (area.pages === null) continue;
    if (storage !== null) {
      if (area.storage_domain === domain) area.storage_domain = storage;
      iopt_area_unmap_domain(area, domain);
    } else {
      iopt_area_unfill_domain(area, area.pages, domain);
    }
  }
}

/** Mirrors iopt_calculate_iova_alignment(): the alignment the remaining domains need. */
function iopt_calculate_iova_alignment(iopt: IoPagetable): void {
  let align = iopt.disable_large_pages ? PAGE_SIZE : 1;
  for (const d of iopt.domains) align = Math.max(align, _min_pgsize(d));
  if (align > iopt.iova_alignment) iopt_check_iova_alignment(iopt, align);
  iopt.iova_alignment = align;
}

/**
 * Mirrors iopt_table_remove_domain(): stops syncing `domain`: unloads the areas from it, drops
 * its reserved ranges and recomputes the alignment.
 */
export function iopt_table_remove_domain(iopt: IoPagetable, domain: IommuDomain): void {
  const i = iopt.domains.indexOf(domain);
  if (i < 0) return;
  // Linux compacts its xarray by moving the tail entry into the hole.
  const tail = iopt.domains.pop()!;
  if (tail !== domain) iopt.domains[i] = tail;
  iopt_unfill_domain(iopt, domain);
  iopt_remove_reserved_iova(iopt, domain);
  iopt_calculate_iova_alignment(iopt);
}

/** Mirrors iopt_enable_large_pages(). */
export function iopt_enable_large_pages(iopt: IoPagetable): void {
  iopt.disable_large_pages = false;
  iopt_calculate_iova_alignment(iopt);
}

/**
 * Mirrors iopt_disable_large_pages(): map page by page from now on. EINVAL when domains already
 * have areas mapped, EADDRINUSE when an area is not PAGE_SIZE aligned.
 */
export function iopt_disable_large_pages(iopt: IoPagetable): void {
  if (iopt.disable_large_pages) return;
  if (iopt.domains.length !== 0 && iopt.areas.length !== 0) {
    throw new Errno("EINVAL", "Domains already have areas mapped");
  }
  iopt.disable_large_pages = true;
  try {
    iopt_calculate_iova_alignment(iopt);
  } catch (e) {
    iopt.disable_large_pages = false;
    throw e;
  }
}

/** What IOMMU_HWPT_GET_DIRTY_BITMAP asks for, as numbers (checked). */
export interface IoptDirtyRequest {
  /** IOVA of bit 0. */
  iova: number;
  /** Bytes of IOVA. */
  length: number;
  /** Bytes per bit. */
  page_size: number;
  /** User address of the bitmap. */
  data: number;
}

/**
 * Mirrors iommufd_check_iova_range(): the range is aligned to the IOAS and to the bitmap's page
 * size and does not wrap. EOVERFLOW, EINVAL (also for a zero page size). The checks are done in
 * 64-bit arithmetic, as C does them.
 */
export function iommufd_check_iova_range(
  iopt: IoPagetable,
  iova: bigint,
  length: bigint,
  page_size: bigint,
): void {
  const last = iova + length - 1n;
  if (last < 0n || last > 0xffff_ffff_ffff_ffffn) throw new Errno("EOVERFLOW", "Range wraps");
  const pg = BigInt(iopt.iova_alignment);
  if ((iova & (pg - 1n)) || ((last + 1n) & (pg - 1n))) {
    throw new Errno("EINVAL", "Range is not aligned to the IOAS");
  }
  if (!page_size) throw new Errno("EINVAL", "Zero page size");
  if ((iova & (page_size - 1n)) || ((last + 1n) & (page_size - 1n))) {
    throw new Errno("EINVAL", "Range is not aligned to the page size");
  }
}

/**
 * Mirrors iommu_read_and_clear_dirty(): reads (and unless NO_CLEAR, clears) the dirty state of
 * `req` from `domain` into the user's bitmap, then flushes the IOTLB for what a clearing read
 * cleaned. EOPNOTSUPP for a domain without dirty ops; EFAULT when the bitmap is not writable user
 * memory; EINVAL for a page size that is not a power of two or a range not fully mapped; ENOMEM.
 *
 * DIVERGENCE: Linux pins the user's bitmap pages and ignores iova_bitmap_for_each()'s error (a
 * bitmap or range that cannot be walked reads as success). Here the bitmap is read into a
 * buffer, updated and copied back, and those errors reach the caller.
 */
function iommu_read_and_clear_dirty(
  domain: IommuDomain,
  iopt: IoPagetable,
  flags: number,
  req: IoptDirtyRequest,
): void {
  const ops = domain.dirty_ops;
  if (ops === null) throw new Errno("EOPNOTSUPP", "The domain does not track dirty pages");
  const nbits = Math.ceil(req.length / req.page_size);
  const buf = new Uint8Array(Math.ceil(nbits / 64) * 8);
  const mm = iopt.ictx.mm;
  copy_from_user(mm, buf, req.data);
  // Mirrors the kzalloc() of struct iova_bitmap.
  const iter = kmalloc(iopt.kernel, iova_bitmap_alloc(req.iova, req.length, req.page_size, buf));
  try {
    const gather = new IommuIotlbGather();
    const dirty = new IommuDirtyBitmap();
    iommu_dirty_bitmap_init(dirty, iter, gather);
    // Mirrors __iommu_read_and_clear_dirty() over the one window of the bitmap.
    const { parts, done } = _contig(iopt, req.iova, req.iova + req.length - 1);
    for (const p of parts) {
      ops.read_and_clear_dirty(domain, p.cur, p.last - p.cur + 1, flags, dirty);
    }
    if (!done) throw new Errno("EINVAL", "The range is not fully mapped");
    if (!(flags & IOMMU_DIRTY_NO_CLEAR)) iommu_iotlb_sync(domain, gather);
    copy_to_user(mm, req.data, buf);
  } finally {
    kfree(iopt.kernel, iter);
  }
}

/** Mirrors iopt_read_and_clear_dirty_data(): IOMMU_HWPT_GET_DIRTY_BITMAP on `domain`. */
export function iopt_read_and_clear_dirty_data(
  iopt: IoPagetable,
  domain: IommuDomain,
  flags: number,
  req: IoptDirtyRequest,
): void {
  iommu_read_and_clear_dirty(domain, iopt, flags, req);
}

/**
 * Mirrors iopt_clear_dirty_data(): clears the dirty state of every area (a read without a
 * bitmap), then flushes the IOTLB.
 */
function iopt_clear_dirty_data(iopt: IoPagetable, domain: IommuDomain): void {
  const ops = domain.dirty_ops!;
  const gather = new IommuIotlbGather();
  const dirty = new IommuDirtyBitmap();
  iommu_dirty_bitmap_init(dirty, null, gather);
  try {
    for (const area of iopt.areas) {
      if (area.pages === null) continue;
      ops.read_and_clear_dirty(domain, area.start, area.length, 0, dirty);
    }
  } finally {
    iommu_iotlb_sync(domain, gather);
  }
}

/**
 * Mirrors iopt_set_dirty_tracking(): turns tracking on or off. Turning it on first clears stale
 * dirty state (so the first read reports only writes made while tracking), then calls
 * set_dirty_tracking, in Linux's order (see the README for what that order asks of a RISC-V
 * driver). EOPNOTSUPP for a domain without dirty ops.
 */
export function iopt_set_dirty_tracking(
  iopt: IoPagetable,
  domain: IommuDomain,
  enable: boolean,
): void {
  const ops = domain.dirty_ops;
  if (ops === null) throw new Errno("EOPNOTSUPP", "The domain does not track dirty pages");
  if (enable) iopt_clear_dirty_data(iopt, domain);
  ops.set_dirty_tracking(domain, enable);
}
