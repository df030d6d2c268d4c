/**
 * A user process's address space, as far as a user of `/dev/iommu` needs one: anonymous and
 * hugetlb mappings (`vm_mmap()`/`vm_munmap()`), the uaccess copies (`copy_from_user()`,
 * `copy_to_user()`, `clear_user()`) and long-term pinning (`pin_user_pages()`,
 * `unpin_user_pages()`). Mirrors the parts of mm/mmap.c, mm/gup.c, mm/hugetlb.c and
 * include/linux/uaccess.h that iommufd relies on.
 *
 * User pages come from the kernel's page allocator on first touch (4 KiB) or at mmap time
 * (MAP_HUGETLB: naturally aligned 2 MiB folios), so the kernel's page count sees them, fail-nth
 * reaches every fault, and a device given their physical addresses writes real memory. A folio
 * is freed when it is neither mapped nor pinned: pages pinned by a driver outlive the munmap or
 * the exit of the process that mapped them, as in Linux.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import type { Kernel } from "./kernel.ts";
import { PAGE_SIZE } from "./page_alloc.ts";

/** prot: the mapping can be read. */
export const PROT_READ = 0x1;
/** prot: the mapping can be written. */
export const PROT_WRITE = 0x2;
/** mmap flag: shared mapping. */
export const MAP_SHARED = 0x01;
/** mmap flag: private mapping. */
export const MAP_PRIVATE = 0x02;
/** mmap flag: place the mapping exactly at `addr`, replacing what is there. */
export const MAP_FIXED = 0x10;
/** mmap flag: not backed by a file. */
export const MAP_ANONYMOUS = 0x20;
/** mmap flag: fault every page in now. */
export const MAP_POPULATE = 0x8000;
/** mmap flag: back the mapping with huge pages (2 MiB here). */
export const MAP_HUGETLB = 0x40000;
/** gup flag: the pages will be written (the mapping must be writable). */
export const FOLL_WRITE = 0x01;
/** Size of a huge page (a PMD leaf): 2 MiB. */
export const HPAGE_PMD_SIZE = 0x20_0000;

const HPAGE_ORDER = 9;
/** Where mappings without MAP_FIXED start (TASK_UNMAPPED_BASE); every one is 2 MiB aligned. */
const MMAP_BASE = 0x20_0000_0000;
/** Highest user address + 1 (a 47-bit user space). */
const TASK_SIZE = 2 ** 47;

/** A block of pages the mm allocated: one 4 KiB page, or a 2 MiB hugetlb page. */
export class Folio {
  /** 4 KiB pages of the address space mapping it. */
  mapcount = 0;
  /** Outstanding pins (pin_user_pages() without unpin_user_pages()). */
  pincount = 0;

  /** `2^order` pages at `pa`. */
  constructor(readonly pa: number, readonly order: number) {}
}

interface Vma {
  start: number;
  end: number;
  prot: number;
  hugetlb: boolean;
}

/**
 * struct mm_struct: the address space of one user process of `kernel`.
 *
 * @example Map, write, pin and read back a page
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   copy_from_user,
 *   copy_to_user,
 *   FOLL_WRITE,
 *   Kernel,
 *   MAP_ANONYMOUS,
 *   MAP_SHARED,
 *   MmStruct,
 *   pin_user_pages,
 *   PROT_READ,
 *   PROT_WRITE,
 *   unpin_user_pages,
 *   vm_mmap,
 * } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const mm = new MmStruct(kernel);
 * const buf = vm_mmap(mm, 0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
 * copy_to_user(mm, buf + 4096, new Uint8Array([1, 2, 3]));
 * const pas: number[] = [];
 * pin_user_pages(mm, buf, 2, FOLL_WRITE, pas);
 * assert.equal(kernel.mem.read32(pas[1]) & 0xffffff, 0x030201);
 * assert.equal(mm.folio(buf).pincount, 1);
 * unpin_user_pages(mm, pas);
 * const back = new Uint8Array(3);
 * copy_from_user(mm, back, buf + 4096);
 * assert.deepEqual([...back], [1, 2, 3]);
 * ```
 */
export class MmStruct {
  readonly #vmas: Vma[] = [];
  /** User page number → physical address of the 4 KiB page mapped there. */
  readonly #pte = new Map<number, number>();
  /** Every 4 KiB frame of every live folio → its folio. */
  readonly #folioOf = new Map<number, Folio>();
  #next = MMAP_BASE;

  /** An empty address space in `kernel`. */
  constructor(readonly kernel: Kernel) {}

  /**
   * The folio mapped at `uaddr`, faulted in if needed: what get_user_pages_fast() returns for
   * one page. EFAULT outside any mapping, ENOMEM.
   */
  folio(uaddr: number): Folio {
    const pa = this._fault(Math.floor(uaddr / PAGE_SIZE), false);
    return this.#folioOf.get(pa / PAGE_SIZE)!;
  }

  /** Folios allocated and not yet freed (mapped, pinned, or both). */
  get folios(): number {
    return new Set(this.#folioOf.values()).size;
  }

  /**
   * The VMA holding `uaddr`, or undefined.
   * @ignore package-private
   */
  _vma(uaddr: number): Vma | undefined {
    for (const v of this.#vmas) if (uaddr >= v.start && uaddr < v.end) return v;
    return undefined;
  }

  /**
   * A free range of `len` bytes for a mapping without MAP_FIXED, 2 MiB aligned.
   * @ignore package-private
   */
  _place(len: number): number {
    const addr = this.#next;
    if (addr + len > TASK_SIZE) throw new Errno("ENOMEM", "User address space exhausted");
    this.#next = addr + Math.ceil(len / HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE;
    return addr;
  }

  /**
   * Inserts `vma`, keeping the list sorted by start.
   * @ignore package-private
   */
  _insert(vma: Vma): void {
    let i = 0;
    while (i < this.#vmas.length && this.#vmas[i].start < vma.start) i++;
    this.#vmas.splice(i, 0, vma);
  }

  /**
   * Unmaps `[start, end)`, splitting VMAs that straddle it.
   * @ignore package-private
   */
  _unmap(start: number, end: number): void {
    const keep: Vma[] = [];
    for (const v of this.#vmas) {
      if (v.end <= start || v.start >= end) {
        keep.push(v);
        continue;
      }
      if (v.start < start) keep.push({ ...v, end: start });
      if (v.end > end) keep.push({ ...v, start: end });
      for (let va = Math.max(v.start, start); va < Math.min(v.end, end); va += PAGE_SIZE) {
        this._zap(va / PAGE_SIZE);
      }
    }
    this.#vmas.length = 0;
    this.#vmas.push(...keep);
  }

  /**
   * Drops the page mapped at user page `vpn`, freeing its folio when nothing else holds it.
   * @ignore package-private
   */
  _zap(vpn: number): void {
    const pa = this.#pte.get(vpn);
    if (pa === undefined) return;
    this.#pte.delete(vpn);
    const folio = this.#folioOf.get(pa / PAGE_SIZE)!;
    folio.mapcount--;
    this._maybeFree(folio);
  }

  /**
   * Frees `folio` once it is neither mapped nor pinned.
   * @ignore package-private
   */
  _maybeFree(folio: Folio): void {
    if (folio.mapcount !== 0 || folio.pincount !== 0) return;
    for (let i = 0; i < 2 ** folio.order; i++) this.#folioOf.delete(folio.pa / PAGE_SIZE + i);
    this.kernel.pages.free(folio.pa, folio.order);
  }

  /**
   * The physical address of user page `vpn`, faulting it in (a 4 KiB page, or the whole 2 MiB
   * of a hugetlb VMA). EFAULT outside any VMA or on a write to a read-only one; ENOMEM from the
   * page allocator.
   */
  _fault(vpn: number, write: boolean): number {
    const uaddr = vpn * PAGE_SIZE;
    const vma = this._vma(uaddr);
    if (vma === undefined) {
      throw new Errno("EFAULT", `No mapping at user address 0x${uaddr.toString(16)}`);
    }
    if (write && (vma.prot & PROT_WRITE) === 0) {
      throw new Errno("EFAULT", `User address 0x${uaddr.toString(16)} is read-only`);
    }
    const have = this.#pte.get(vpn);
    if (have !== undefined) return have;
    const order = vma.hugetlb ? HPAGE_ORDER : 0;
    const first = vma.hugetlb
      ? Math.floor(uaddr / HPAGE_PMD_SIZE) * (HPAGE_PMD_SIZE / PAGE_SIZE)
      : vpn;
    const folio = new Folio(this.kernel.pages.alloc(order), order);
    for (let i = 0; i < 2 ** order; i++) {
      const pfn = folio.pa / PAGE_SIZE + i;
      this.#folioOf.set(pfn, folio);
      this.#pte.set(first + i, pfn * PAGE_SIZE);
      folio.mapcount++;
    }
    return this.#pte.get(vpn)!;
  }

  /** Takes one pin on the folio of the 4 KiB frame at `pa`. */
  _pin(pa: number): void {
    this.#folioOf.get(pa / PAGE_SIZE)!.pincount++;
  }

  /** Drops one pin on the folio of the frame at `pa`; EINVAL when it holds none. */
  _unpin(pa: number): void {
    const folio = this.#folioOf.get(pa / PAGE_SIZE);
    if (folio === undefined || folio.pincount === 0) {
      throw new Errno("EINVAL", `Page 0x${pa.toString(16)} is not pinned`);
    }
    folio.pincount--;
    this._maybeFree(folio);
  }

  /** Every VMA, for exit_mmap(). */
  _ranges(): [number, number][] {
    return this.#vmas.map((v) => [v.start, v.end]);
  }
}

function _pageAligned(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n % PAGE_SIZE === 0;
}

/**
 * Mirrors vm_mmap() for anonymous memory: maps `len` bytes (rounded up to pages, or to 2 MiB
 * with MAP_HUGETLB) with `prot`, at `addr` with MAP_FIXED (replacing what is there), else at an
 * address the mm picks (2 MiB aligned). Returns the address.
 *
 * Errors: EINVAL for a zero or unaligned length/address, no MAP_SHARED/MAP_PRIVATE, or no
 * MAP_ANONYMOUS (there are no files); ENOMEM when the address space or, with MAP_POPULATE (and
 * always with MAP_HUGETLB, whose pages are reserved at mmap), the page allocator runs out.
 */
export function vm_mmap(
  mm: MmStruct,
  addr: number,
  len: number,
  prot: number,
  flags: number,
): number {
  const huge = (flags & MAP_HUGETLB) !== 0;
  const unit = huge ? HPAGE_PMD_SIZE : PAGE_SIZE;
  if (!Number.isSafeInteger(len) || len <= 0) throw new Errno("EINVAL", `Cannot map ${len} bytes`);
  if ((flags & (MAP_SHARED | MAP_PRIVATE)) === 0 || (flags & MAP_ANONYMOUS) === 0) {
    throw new Errno("EINVAL", `Unsupported mmap flags 0x${flags.toString(16)}`);
  }
  const size = Math.ceil(len / unit) * unit;
  let start: number;
  if (flags & MAP_FIXED) {
    if (!_pageAligned(addr) || addr % unit !== 0 || addr + size > TASK_SIZE) {
      throw new Errno("EINVAL", `Cannot map at 0x${addr.toString(16)}`);
    }
    mm._unmap(addr, addr + size);
    start = addr;
  } else {
    start = mm._place(size);
  }
  mm._insert({ start, end: start + size, prot, hugetlb: huge });
  if (huge || (flags & MAP_POPULATE)) {
    try {
      for (let va = start; va < start + size; va += unit) mm._fault(va / PAGE_SIZE, false);
    } catch (e) {
      mm._unmap(start, start + size);
      throw e;
    }
  }
  return start;
}

/**
 * Mirrors vm_munmap(): unmaps `[addr, addr + len)` (whole huge pages in a hugetlb VMA). Pinned
 * pages stay allocated until unpinned. EINVAL for an unaligned address or a zero length.
 */
export function vm_munmap(mm: MmStruct, addr: number, len: number): void {
  if (!_pageAligned(addr) || !Number.isSafeInteger(len) || len <= 0) {
    throw new Errno("EINVAL", `Cannot unmap ${len} bytes at 0x${addr.toString(16)}`);
  }
  const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
  for (const va of [addr, end - 1]) {
    const vma = mm._vma(va);
    if (vma?.hugetlb && (addr % HPAGE_PMD_SIZE !== 0 || end % HPAGE_PMD_SIZE !== 0)) {
      throw new Errno("EINVAL", "A hugetlb mapping is unmapped by whole huge pages");
    }
  }
  mm._unmap(addr, end);
}

/** Mirrors mmput()'s exit_mmap(): unmaps everything; pinned pages live on until unpinned. */
export function mmput(mm: MmStruct): void {
  for (const [start, end] of mm._ranges()) mm._unmap(start, end);
}

/** Calls `fn(pa, off, n)` for each page piece of `[uaddr, uaddr + len)`, faulting pages in. */
function _eachPage(
  mm: MmStruct,
  uaddr: number,
  len: number,
  write: boolean,
  fn: (pa: number, off: number, n: number) => void,
): void {
  if (!Number.isSafeInteger(uaddr) || uaddr < 0 || uaddr + len > TASK_SIZE) {
    throw new Errno("EFAULT", `Bad user address 0x${uaddr.toString(16)}`);
  }
  let off = 0;
  while (off < len) {
    const va = uaddr + off;
    const n = Math.min(len - off, PAGE_SIZE - (va % PAGE_SIZE));
    let pa: number;
    try {
      pa = mm._fault(Math.floor(va / PAGE_SIZE), write);
    } catch (e) {
      // The uaccess routines report any failed fault as bytes not copied: EFAULT.
      throw e instanceof Errno && e.code !== "EFAULT" ? new Errno("EFAULT", e.message) : e;
    }
    fn(pa + (va % PAGE_SIZE), off, n);
    off += n;
  }
}

/** Mirrors copy_from_user(): fills `to` from user memory at `from`; EFAULT on a bad address. */
export function copy_from_user(mm: MmStruct, to: Uint8Array, from: number): void {
  const mem = mm.kernel.mem;
  _eachPage(mm, from, to.length, false, (pa, off, n) => mem.copyOut(pa, to.subarray(off, off + n)));
}

/** Mirrors copy_to_user(): writes `from` to user memory at `to`; EFAULT on a bad address. */
export function copy_to_user(mm: MmStruct, to: number, from: Uint8Array): void {
  const mem = mm.kernel.mem;
  _eachPage(
    mm,
    to,
    from.length,
    true,
    (pa, off, n) => mem.writeBytes(pa, from.subarray(off, off + n)),
  );
}

/** Mirrors clear_user(): zeroes `n` bytes of user memory at `to`; EFAULT on a bad address. */
export function clear_user(mm: MmStruct, to: number, n: number): void {
  const mem = mm.kernel.mem;
  _eachPage(mm, to, n, true, (pa, _off, len) => mem.fill(pa, len, 0));
}

/**
 * Mirrors pin_user_pages() with FOLL_LONGTERM: faults in and pins `nr_pages` user pages from
 * `start` (page aligned), appending their physical addresses to `pages`. Release them with
 * {@linkcode unpin_user_pages}.
 *
 * EINVAL for an unaligned start; EFAULT when a page is not mapped, or is read-only and `gup_flags`
 * has FOLL_WRITE; ENOMEM from the page allocator. DIVERGENCE: all or nothing — on an error the
 * pages pinned so far are unpinned and the error thrown, where Linux returns the count it got.
 */
export function pin_user_pages(
  mm: MmStruct,
  start: number,
  nr_pages: number,
  gup_flags: number,
  pages: number[],
): void {
  if (!_pageAligned(start)) throw new Errno("EINVAL", `Unaligned pin at 0x${start.toString(16)}`);
  const first = pages.length;
  try {
    for (let i = 0; i < nr_pages; i++) {
      const pa = mm._fault(start / PAGE_SIZE + i, (gup_flags & FOLL_WRITE) !== 0);
      mm._pin(pa);
      pages.push(pa);
    }
  } catch (e) {
    unpin_user_pages(mm, pages.splice(first));
    throw e;
  }
}

/** Mirrors unpin_user_pages(): drops one pin per page; EINVAL for a page not pinned. */
export function unpin_user_pages(mm: MmStruct, pages: readonly number[]): void {
  for (const pa of pages) mm._unpin(pa);
}
