/**
 * A user process's address space (`mm_struct`): one model for every user of process memory.
 * iommufd copies through it (`copy_from_user()`, `copy_to_user()`, `clear_user()`) and pins its
 * pages for DMA (`pin_user_pages()`); shared virtual addressing hands its CPU page table to an
 * IOMMU as a first-stage table and serves the device's page faults with `handle_mm_fault()`.
 * Both see the same pages: a page pinned for iommufd and a page faulted in for a device are
 * the same PTE of the same table. Mirrors the parts of kernel/fork.c (mm_alloc, mmget, mmput,
 * mmgrab, mmdrop), mm/mmap.c and mm/vma.c (vm_mmap, vm_munmap), mm/memory.c (handle_mm_fault,
 * follow_pte, access_remote_vm), mm/gup.c (pin_user_pages, unpin_user_pages), mm/hugetlb.c,
 * include/linux/uaccess.h and arch/riscv (the PTE bits, flush_tlb_range's notifier call) that
 * iommufd and SVA rely on.
 *
 * The page table is a RISC-V Sv39 or Sv48 table built in kernel pages, so an IOMMU walks it in
 * physical memory. There is no `current` task: every entry point takes the mm. Page-table
 * entries are numbers (a PFN below 2^41 leaves them below 2^53), so a fault allocates no
 * `bigint`.
 *
 * User pages come from the kernel's page allocator on first touch (4 KiB) or at mmap time
 * (MAP_HUGETLB: naturally aligned 2 MiB folios, mapped by one leaf PTE a level up), so the
 * kernel's page count sees them, fail-nth reaches every fault, and a device given their
 * physical addresses writes real memory. A folio is freed when it is neither mapped nor
 * pinned: pages pinned by a driver outlive the munmap or the exit of the process that mapped
 * them, as in Linux.
 *
 * @module
 */
import { Errno, isErrno } from "./errno.ts";
import type { Kernel } from "./kernel.ts";
import {
  __mmu_notifier_release,
  mmu_notifier_arch_invalidate_secondary_tlbs,
  type MmuNotifierSubscriptions,
} from "./mmu_notifier.ts";
import { PAGE_SIZE } from "./page_alloc.ts";
import type { PhysMem } from "./phys.ts";
import { kfree, kmalloc } from "./slab.ts";

/** satp.MODE Sv39 (the field value of Linux's SATP_MODE_39): three levels, 39-bit VAs. */
export const SATP_MODE_39 = 8;
/** satp.MODE Sv48 (the field value of Linux's SATP_MODE_48): four levels, 48-bit VAs. */
export const SATP_MODE_48 = 9;

/** PTE bit: valid (_PAGE_PRESENT). */
export const _PAGE_PRESENT = 1 << 0;
/** PTE bit: readable. */
export const _PAGE_READ = 1 << 1;
/** PTE bit: writable. */
export const _PAGE_WRITE = 1 << 2;
/** PTE bit: executable. */
export const _PAGE_EXEC = 1 << 3;
/** PTE bit: user mode may access. */
export const _PAGE_USER = 1 << 4;
/** PTE bit: accessed. */
export const _PAGE_ACCESSED = 1 << 6;
/** PTE bit: dirty. */
export const _PAGE_DIRTY = 1 << 7;
/** Where the PFN starts in a PTE. */
export const _PAGE_PFN_SHIFT = 10;
/** A PTE with any of these bits is a leaf; without them it points to the next table. */
const _PAGE_LEAF = _PAGE_READ | _PAGE_WRITE | _PAGE_EXEC;

/** mmap() prot: readable. */
export const PROT_READ = 0x1;
/** mmap() prot: writable. */
export const PROT_WRITE = 0x2;
/** mmap() prot: executable. */
export const PROT_EXEC = 0x4;
/** mmap() flag: a shared mapping. */
export const MAP_SHARED = 0x01;
/** mmap() flag: changes are private. */
export const MAP_PRIVATE = 0x02;
/** mmap() flag: at exactly `addr`, replacing what is there. */
export const MAP_FIXED = 0x10;
/** mmap() flag: not backed by a file. */
export const MAP_ANONYMOUS = 0x20;
/** mmap() flag: fault every page in now. */
export const MAP_POPULATE = 0x8000;
/** mmap() flag: back the mapping with huge pages (2 MiB here). */
export const MAP_HUGETLB = 0x4_0000;
/** mmap() flag: at exactly `addr`, failing (EEXIST) rather than replacing a mapping there. */
export const MAP_FIXED_NOREPLACE = 0x10_0000;
/** Size of a huge page (a PMD leaf): 2 MiB. */
export const HPAGE_PMD_SIZE = 0x20_0000;
const HPAGE_PMD_ORDER = 9;

/** vm_flags: readable. */
export const VM_READ = 0x1;
/** vm_flags: writable. */
export const VM_WRITE = 0x2;
/** vm_flags: executable. */
export const VM_EXEC = 0x4;
/** vm_flags: backed by huge pages (MAP_HUGETLB). */
export const VM_HUGETLB = 0x40_0000;

/** handle_mm_fault() flag: a write access. */
export const FAULT_FLAG_WRITE: number = 1 << 0;
/** handle_mm_fault() flag: the access came from user mode. */
export const FAULT_FLAG_USER: number = 1 << 6;
/** handle_mm_fault() flag: faulting in another task's mm (a device, GUP). */
export const FAULT_FLAG_REMOTE: number = 1 << 7;
/** handle_mm_fault() flag: an instruction fetch. */
export const FAULT_FLAG_INSTRUCTION: number = 1 << 8;

/** vm_fault_t: out of memory. */
export const VM_FAULT_OOM = 0x1;
/** vm_fault_t: segmentation fault (the access is not allowed). */
export const VM_FAULT_SIGSEGV = 0x40;
/** vm_fault_t: any error (of those this kernel produces). */
export const VM_FAULT_ERROR: number = VM_FAULT_OOM | VM_FAULT_SIGSEGV;

/** get_user_pages() flag: the pages will be written (the mapping must be writable). */
export const FOLL_WRITE = 0x01;

/** A block of pages the mm allocated: one 4 KiB page, or a 2 MiB hugetlb page. */
export class Folio {
  /** 4 KiB pages of the address space mapping it. */
  mapcount = 0;
  /** Outstanding pins (pin_user_pages() without unpin_user_pages()). */
  pincount = 0;

  /** `2^order` pages at `pa`. */
  constructor(readonly pa: number, readonly order: number) {}
}

/** struct vm_area_struct: one mapping `[vm_start, vm_end)` of an mm. */
export class VmAreaStruct {
  /** A mapping of `mm`. */
  constructor(
    readonly vm_mm: MmStruct,
    public vm_start: number,
    public vm_end: number,
    readonly vm_flags: number,
  ) {}
}

/** The mms {@linkcode mm_alloc} took from the slab, which their last mmdrop() gives back. */
const slabMms = new WeakSet<MmStruct>();

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
  /** Physical address of the root page table (-1 until allocated, and once freed). */
  pgd: number = -1;
  /** satp.MODE of the table: {@linkcode SATP_MODE_39} or {@linkcode SATP_MODE_48}. */
  readonly satp_mode: number;
  /** Table levels (3 or 4). */
  readonly levels: number;
  /** End of user space (TASK_SIZE): the lower half of the sign-extended VA space. */
  readonly task_size: number;
  /** The mappings, sorted by address. */
  readonly vmas: VmAreaStruct[] = [];
  /** Users of the mappings (mmget/mmput); the last mmput() unmaps everything. */
  mm_users = 1;
  /** References to the structure itself (mmgrab/mmdrop); mm_users together hold one. */
  mm_count = 1;
  /** 4 KiB pages mapped (the RSS; a huge page counts 512). */
  rss = 0;
  /**
   * Table pages below the root, freed by exit_mmap().
   * @ignore package-private
   */
  readonly _tables: number[] = [];
  /**
   * Every 4 KiB frame of every live folio → its folio.
   * @ignore package-private
   */
  readonly _folioOf: Map<number, Folio> = new Map();
  /** The MMU notifiers (mm->notifier_subscriptions), allocated on first registration. */
  notifier_subscriptions: MmuNotifierSubscriptions | null = null;
  /** The IOMMU layer's data (mm->iommu_mm: the SVA PASID and domains). */
  iommu_mm: unknown = null;

  /**
   * A structure outside the slab, as a test or a tool builds for the process it plays (the
   * iommufd selftests do): its root page table comes with its first mapping, and its last
   * mmdrop() frees the table but not the structure. The kernel's own allocation is
   * {@linkcode mm_alloc}. EINVAL for a `satp_mode` other than Sv39 and Sv48.
   *
   * DIVERGENCE: Linux has no mm outside mm_alloc() (bar init_mm); this one lets a test measure
   * the kernel's page and object counts around a process that has allocated nothing yet.
   *
   * DIVERGENCE: the paging mode is per mm (Linux uses the system's satp mode for every
   * process), so tests can give an IOMMU either format.
   */
  constructor(readonly kernel: Kernel, satp_mode: number = SATP_MODE_39) {
    if (satp_mode !== SATP_MODE_39 && satp_mode !== SATP_MODE_48) {
      throw new Errno("EINVAL", `No page-table mode ${satp_mode}`);
    }
    this.satp_mode = satp_mode;
    this.levels = satp_mode === SATP_MODE_39 ? 3 : 4;
    this.task_size = 2 ** (12 + 9 * this.levels - 1);
  }

  /**
   * The folio mapped at `uaddr`, faulted in (for reading) if needed: what
   * get_user_pages_fast() returns for one page. EFAULT where no readable mapping is, ENOMEM.
   */
  folio(uaddr: number): Folio {
    return this._folioOf.get(_fault_in(this, uaddr, false) / PAGE_SIZE)!;
  }

  /** Folios allocated and not yet freed (mapped, pinned, or both). */
  get folios(): number {
    return new Set(this._folioOf.values()).size;
  }
}

/** Allocates the root table unless `mm` has one (ENOMEM when it cannot be). */
function _pgd_alloc(mm: MmStruct): void {
  if (mm.pgd < 0) mm.pgd = mm.kernel.pages.alloc(0);
}

/**
 * Mirrors mm_alloc(): an empty address space with a root page table, in Sv39 unless
 * `satp_mode` asks for Sv48 (EINVAL for another mode). ENOMEM when the structure or the root
 * page cannot be allocated.
 *
 * @example Populating a page on demand and finding it again
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   access_remote_vm, FOLL_WRITE, follow_pte, Kernel, MAP_ANONYMOUS, MAP_PRIVATE, mm_alloc, mmput,
 *   PROT_READ, PROT_WRITE, pte_pfn, vm_mmap,
 * } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const mm = mm_alloc(kernel);
 * const va = vm_mmap(mm, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
 * assert.equal(follow_pte(mm, va), 0, "nothing is there until touched");
 * access_remote_vm(mm, va + 4096, new Uint8Array([1, 2, 3]), FOLL_WRITE);
 * const pa = pte_pfn(follow_pte(mm, va + 4096)) * 4096;
 * assert.deepEqual([...kernel.mem.readBytes(pa, 3)], [1, 2, 3]);
 * mmput(mm);
 * assert.equal(kernel.pages.allocatedPages, 0);
 * ```
 */
export function mm_alloc(kernel: Kernel, satp_mode: number = SATP_MODE_39): MmStruct {
  const mm = kmalloc(kernel, new MmStruct(kernel, satp_mode));
  try {
    _pgd_alloc(mm);
  } catch (e) {
    kfree(kernel, mm);
    throw e;
  }
  slabMms.add(mm);
  return mm;
}

/** Mirrors mmget(): one more user of the mappings (EINVAL once the last user has gone). */
export function mmget(mm: MmStruct): void {
  if (mm.mm_users === 0) throw new Errno("EINVAL", "The address space has exited");
  mm.mm_users++;
}

/** Mirrors mmget_not_zero(): a user reference, unless the mappings are already torn down. */
export function mmget_not_zero(mm: MmStruct): boolean {
  if (mm.mm_users === 0) return false;
  mm.mm_users++;
  return true;
}

/**
 * Mirrors mmput(): drops a user; the last one unmaps everything (exit_mmap) and drops its mm.
 * Pinned pages live on until unpinned.
 */
export function mmput(mm: MmStruct): void {
  if (mm.mm_users === 0) throw new Errno("EINVAL", "Unbalanced mmput()");
  if (--mm.mm_users !== 0) return;
  exit_mmap(mm);
  mmdrop(mm);
}

/** Mirrors mmgrab(): keeps the structure (and its root table) alive, not the mappings. */
export function mmgrab(mm: MmStruct): void {
  if (mm.mm_count === 0) throw new Errno("EINVAL", "The mm is freed");
  mm.mm_count++;
}

/**
 * Mirrors mmdrop(): drops a structure reference; the last one frees the root table, lets the
 * IOMMU layer drop the mm's PASID (mm_pasid_drop()) and frees the structure (one from
 * {@linkcode mm_alloc}).
 */
export function mmdrop(mm: MmStruct): void {
  if (mm.mm_count === 0) throw new Errno("EINVAL", "Unbalanced mmdrop()");
  if (--mm.mm_count !== 0) return;
  const kernel = mm.kernel;
  if (mm.pgd >= 0) kernel.pages.free(mm.pgd, 0);
  mm.pgd = -1;
  kernel.iommuLayer?.mmPasidDrop?.(mm);
  if (mm.notifier_subscriptions !== null) kfree(kernel, mm.notifier_subscriptions);
  mm.notifier_subscriptions = null;
  if (slabMms.delete(mm)) kfree(kernel, mm);
}

/**
 * Mirrors exit_mmap(): the last user has gone. Secondary MMUs are told first (their `release`,
 * so an IOMMU stops walking the table), then every mapping is dropped (pinned folios stay) and
 * the table pages below the root are freed.
 */
function exit_mmap(mm: MmStruct): void {
  __mmu_notifier_release(mm);
  if (mm.pgd >= 0) {
    const zapped: number[] = [];
    _zap(mm, mm.pgd, mm.levels - 1, 0, 0, mm.task_size, zapped);
    _release(mm, zapped);
  }
  for (const pa of mm._tables) mm.kernel.pages.free(pa, 0);
  mm._tables.length = 0;
  mm.vmas.length = 0;
}

function _read_pte(mem: PhysMem, pa: number): number {
  mem.load64(pa);
  return mem.hi * 2 ** 32 + mem.lo;
}

function _write_pte(mem: PhysMem, pa: number, pte: number): void {
  mem.store64(pa, pte % 2 ** 32, Math.floor(pte / 2 ** 32));
}

/** Index of `addr` in a table of `level` (0 is the leaf level). */
function _index(addr: number, level: number): number {
  return Math.floor(addr / 2 ** (12 + 9 * level)) % 512;
}

/**
 * The physical address of the PTE slot of `addr` at `level` (0 for a 4 KiB page, 1 for a huge
 * page), allocating missing tables when `alloc` (ENOMEM when one cannot be), else -1 where a
 * table is missing.
 */
function _pte_slot(mm: MmStruct, addr: number, level: number, alloc: boolean): number {
  const kernel = mm.kernel;
  const mem = kernel.mem;
  let table = mm.pgd;
  for (let l = mm.levels - 1; l > level; l--) {
    const slot = table + _index(addr, l) * 8;
    const pte = _read_pte(mem, slot);
    if (pte % 2 === 1) {
      table = pte_pfn(pte) * PAGE_SIZE;
      continue;
    }
    if (!alloc) return -1;
    const next = kernel.pages.alloc(0);
    mm._tables.push(next);
    _write_pte(mem, slot, (next / PAGE_SIZE) * 2 ** _PAGE_PFN_SHIFT + _PAGE_PRESENT);
    table = next;
  }
  return table + _index(addr, level) * 8;
}

/** Mirrors pte_pfn(): the page frame a PTE maps. */
export function pte_pfn(pte: number): number {
  return Math.floor(pte / 2 ** _PAGE_PFN_SHIFT) % 2 ** 44;
}

/**
 * Mirrors follow_pte(): the PTE mapping `addr` in `mm` (0 when nothing is mapped there). A
 * huge page's entry comes back narrowed to the 4 KiB page holding `addr` (its PFN advanced),
 * so `pte_pfn()` of the result is always that page.
 *
 * DIVERGENCE: takes the mm and returns the entry's value; Linux's takes a VMA, hands back a
 * locked pointer to it, and fails on a huge-page entry.
 */
export function follow_pte(mm: MmStruct, addr: number): number {
  if (!(addr >= 0 && addr < mm.task_size) || mm.pgd < 0) return 0;
  const mem = mm.kernel.mem;
  let table = mm.pgd;
  for (let level = mm.levels - 1;; level--) {
    const pte = _read_pte(mem, table + _index(addr, level) * 8);
    if (pte % 2 === 0) return 0;
    if (pte & _PAGE_LEAF) {
      return pte + (Math.floor(addr / PAGE_SIZE) % 2 ** (9 * level)) * 2 ** _PAGE_PFN_SHIFT;
    }
    if (level === 0) return 0;
    table = pte_pfn(pte) * PAGE_SIZE;
  }
}

/** Mirrors vma_lookup(): the mapping holding `addr`, or null. */
export function vma_lookup(mm: MmStruct, addr: number): VmAreaStruct | null {
  for (const vma of mm.vmas) {
    if (addr < vma.vm_start) return null;
    if (addr < vma.vm_end) return vma;
  }
  return null;
}

/** The PTE permission bits of a mapping with `vm_flags`. */
function _vm_prot(vm_flags: number): number {
  let prot = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
  if (vm_flags & VM_READ) prot |= _PAGE_READ;
  if (vm_flags & VM_WRITE) prot |= _PAGE_WRITE | _PAGE_DIRTY;
  if (vm_flags & VM_EXEC) prot |= _PAGE_EXEC;
  return prot;
}

/**
 * Mirrors handle_mm_fault(): resolves a fault at `address` in `vma` (FAULT_FLAG_* in `flags`)
 * and returns a vm_fault_t: 0 when the page is (now) there, VM_FAULT_SIGSEGV for an access the
 * mapping does not allow (or an mm that has exited), VM_FAULT_OOM when no page or table page
 * can be had. A fault on a page already present is spurious and returns 0. In a MAP_HUGETLB
 * mapping the fault maps the whole 2 MiB folio with one leaf PTE a level up.
 *
 * DIVERGENCE: no zero page and no copy-on-write: the first touch maps a zeroed page with all the
 * mapping's permissions, Accessed and (if writable) Dirty set, so a device walking the table
 * needs no A/D updates and a read never has to be upgraded by a second fault.
 */
export function handle_mm_fault(vma: VmAreaStruct, address: number, flags: number): number {
  const want =
    (flags & FAULT_FLAG_WRITE ? VM_WRITE : flags & FAULT_FLAG_INSTRUCTION ? VM_EXEC : 0) ||
    VM_READ;
  const mm = vma.vm_mm;
  if (
    (vma.vm_flags & want) === 0 || address < vma.vm_start || address >= vma.vm_end ||
    mm.mm_users === 0
  ) {
    return VM_FAULT_SIGSEGV;
  }
  const kernel = mm.kernel;
  const order = vma.vm_flags & VM_HUGETLB ? HPAGE_PMD_ORDER : 0;
  let slot: number;
  let pa: number;
  try {
    slot = _pte_slot(mm, address, order === 0 ? 0 : 1, true);
    if (_read_pte(kernel.mem, slot) % 2 === 1) return 0;
    pa = kernel.pages.alloc(order);
  } catch (e) {
    if (isErrno(e, "ENOMEM")) return VM_FAULT_OOM;
    throw e;
  }
  const folio = new Folio(pa, order);
  const nr = 2 ** order;
  for (let i = 0; i < nr; i++) mm._folioOf.set(pa / PAGE_SIZE + i, folio);
  folio.mapcount = nr;
  mm.rss += nr;
  _write_pte(kernel.mem, slot, (pa / PAGE_SIZE) * 2 ** _PAGE_PFN_SHIFT + _vm_prot(vma.vm_flags));
  return 0;
}

/**
 * Faults in the page of `uaddr` as get_user_pages() and the uaccess routines do, and returns
 * its physical address. EFAULT where no mapping allows the access, ENOMEM.
 */
function _fault_in(mm: MmStruct, uaddr: number, write: boolean): number {
  const vma = vma_lookup(mm, uaddr);
  const fault = vma === null
    ? VM_FAULT_SIGSEGV
    : handle_mm_fault(vma, uaddr, write ? FAULT_FLAG_WRITE : 0);
  if (fault & VM_FAULT_OOM) throw new Errno("ENOMEM", "No page for a user fault");
  if (fault & VM_FAULT_SIGSEGV) {
    throw new Errno(
      "EFAULT",
      `No ${write ? "writable" : "readable"} mapping at user address 0x${uaddr.toString(16)}`,
    );
  }
  return pte_pfn(follow_pte(mm, uaddr)) * PAGE_SIZE;
}

/**
 * Mirrors access_remote_vm(): copies `buf` into (FOLL_WRITE in `gup_flags`) or out of `mm` at
 * `addr`, faulting pages in as a remote access; returns the bytes copied, short when it reaches
 * an address that is not mapped or not accessible that way.
 */
export function access_remote_vm(
  mm: MmStruct,
  addr: number,
  buf: Uint8Array,
  gup_flags: number,
): number {
  if (!mmget_not_zero(mm)) return 0;
  const write = (gup_flags & FOLL_WRITE) !== 0;
  const mem = mm.kernel.mem;
  let done = 0;
  try {
    while (done < buf.length) {
      const va = addr + done;
      const vma = vma_lookup(mm, va);
      if (vma === null) break;
      const fault = FAULT_FLAG_REMOTE | (write ? FAULT_FLAG_WRITE : 0);
      if (handle_mm_fault(vma, va, fault) & VM_FAULT_ERROR) break;
      const pa = pte_pfn(follow_pte(mm, va)) * PAGE_SIZE + va % PAGE_SIZE;
      const n = Math.min(buf.length - done, PAGE_SIZE - va % PAGE_SIZE);
      const part = buf.subarray(done, done + n);
      if (write) mem.writeBytes(pa, part);
      else mem.copyOut(pa, part);
      done += n;
    }
  } finally {
    mmput(mm);
  }
  return done;
}

/**
 * Mirrors get_unmapped_area() for anonymous mappings: the highest free range of `len` bytes in
 * user space (top-down, as mmap_base is laid out), 2 MiB aligned so that any mapping can hold
 * huge pages, or -1.
 *
 * DIVERGENCE: Linux aligns only anonymous mappings of 2 MiB or more (for THP) and hugetlb ones;
 * here every mapping starts on a huge page, as iommufd's tests expect of their buffers.
 */
function _unmapped_area(mm: MmStruct, len: number): number {
  let top = mm.task_size;
  for (let i = mm.vmas.length - 1; i >= -1; i--) {
    const below = i >= 0 ? mm.vmas[i].vm_end : PAGE_SIZE;
    const start = Math.floor((top - len) / HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE;
    if (start >= below) return start;
    if (i >= 0) top = mm.vmas[i].vm_start;
  }
  return -1;
}

/**
 * Mirrors vm_mmap() for anonymous memory: maps `len` bytes (rounded up to pages, or to 2 MiB
 * with MAP_HUGETLB) with `prot` (PROT_*) and returns the address. With MAP_FIXED the mapping
 * goes at `addr` exactly, replacing what is there (unmapped as vm_munmap() does); with
 * MAP_FIXED_NOREPLACE too, but failing where a mapping is in the way; otherwise the kernel
 * picks the place, top-down and 2 MiB aligned. Pages come with the first fault, or at once
 * with MAP_POPULATE (and always with MAP_HUGETLB, whose pages are reserved at mmap).
 * RISC-V has no write-only pages, so PROT_WRITE implies read.
 *
 * Other flags are ignored, as Linux ignores the flags it does not know.
 *
 * Errors: EINVAL for a zero length, an unaligned fixed address (to 2 MiB for MAP_HUGETLB), no
 * MAP_SHARED/MAP_PRIVATE, no MAP_ANONYMOUS (there are no files), a fixed range that would split
 * a hugetlb mapping, or an exited mm; ENOMEM when no room is left, the range
 * leaves user space, or the page allocator runs out (the new mapping is then undone); EEXIST
 * when MAP_FIXED_NOREPLACE finds a mapping in the way.
 */
export function vm_mmap(
  mm: MmStruct,
  addr: number,
  len: number,
  prot: number,
  flags: number,
): number {
  if (
    mm.mm_users === 0 || !Number.isSafeInteger(len) || len <= 0 ||
    (flags & (MAP_SHARED | MAP_PRIVATE)) === 0 || (flags & MAP_ANONYMOUS) === 0
  ) {
    throw new Errno("EINVAL", `Cannot map ${len} bytes with flags 0x${flags.toString(16)}`);
  }
  const huge = (flags & MAP_HUGETLB) !== 0;
  const unit = huge ? HPAGE_PMD_SIZE : PAGE_SIZE;
  const size = Math.ceil(len / unit) * unit;
  let start: number;
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % unit !== 0) {
      throw new Errno("EINVAL", `Cannot map at 0x${addr.toString(16)}`);
    }
    if (size > mm.task_size - addr) throw new Errno("ENOMEM", "Mapping leaves user space");
    if (
      (flags & MAP_FIXED_NOREPLACE) &&
      mm.vmas.some((v) => v.vm_start < addr + size && addr < v.vm_end)
    ) {
      throw new Errno("EEXIST", `A mapping is in the way at 0x${addr.toString(16)}`);
    }
    start = addr;
  } else {
    start = _unmapped_area(mm, size);
    if (start < 0) throw new Errno("ENOMEM", "No room for the mapping");
  }
  _pgd_alloc(mm);
  if (flags & MAP_FIXED) _munmap(mm, start, start + size);
  let vm_flags = huge ? VM_HUGETLB : 0;
  if (prot & (PROT_READ | PROT_WRITE)) vm_flags |= VM_READ;
  if (prot & PROT_WRITE) vm_flags |= VM_WRITE;
  if (prot & PROT_EXEC) vm_flags |= VM_EXEC;
  const vma = new VmAreaStruct(mm, start, start + size, vm_flags);
  let i = 0;
  while (i < mm.vmas.length && mm.vmas[i].vm_start < start) i++;
  mm.vmas.splice(i, 0, vma);
  if ((huge || (flags & MAP_POPULATE)) && (vm_flags & VM_READ)) {
    for (let va = start; va < start + size; va += unit) {
      if (handle_mm_fault(vma, va, 0) & VM_FAULT_OOM) {
        _munmap(mm, start, start + size);
        throw new Errno("ENOMEM", `No page to populate 0x${va.toString(16)}`);
      }
    }
  }
  return start;
}

/**
 * Clears the leaf PTEs of `[start, end)` under `table` (of `level`, mapping from `base`),
 * collecting the physical address and the 4 KiB page count of each in `zapped`; tables that
 * are absent are skipped whole. A huge leaf is cleared whole (callers never split one).
 */
function _zap(
  mm: MmStruct,
  table: number,
  level: number,
  base: number,
  start: number,
  end: number,
  zapped: number[],
): void {
  const mem = mm.kernel.mem;
  const span = 2 ** (12 + 9 * level);
  const first = Math.max(0, Math.floor((start - base) / span));
  const last = Math.min(511, Math.ceil((end - base) / span) - 1);
  for (let i = first; i <= last; i++) {
    const slot = table + i * 8;
    const pte = _read_pte(mem, slot);
    if (pte % 2 === 0) continue;
    if (pte & _PAGE_LEAF) {
      _write_pte(mem, slot, 0);
      zapped.push(pte_pfn(pte) * PAGE_SIZE, span / PAGE_SIZE);
    } else if (level > 0) {
      _zap(mm, pte_pfn(pte) * PAGE_SIZE, level - 1, base + i * span, start, end, zapped);
    }
  }
}

/** Frees `folio` once it is neither mapped nor pinned. */
function _maybe_free(mm: MmStruct, folio: Folio): void {
  if (folio.mapcount !== 0 || folio.pincount !== 0) return;
  const pfn = folio.pa / PAGE_SIZE;
  for (let i = 0; i < 2 ** folio.order; i++) mm._folioOf.delete(pfn + i);
  mm.kernel.pages.free(folio.pa, folio.order);
}

/** Drops the mappings {@linkcode _zap} collected: the folios neither mapped nor pinned go. */
function _release(mm: MmStruct, zapped: readonly number[]): void {
  for (let i = 0; i < zapped.length; i += 2) {
    const folio = mm._folioOf.get(zapped[i] / PAGE_SIZE)!;
    folio.mapcount -= zapped[i + 1];
    mm.rss -= zapped[i + 1];
    _maybe_free(mm, folio);
  }
}

/**
 * Mirrors arch/riscv's __flush_tlb_range() as far as other MMUs go: after PTEs of
 * `[start, end)` changed, the secondary TLBs (an IOMMU walking this table) are invalidated
 * through the MMU notifiers.
 */
function __flush_tlb_range(mm: MmStruct, start: number, end: number): void {
  mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end);
}

/**
 * Mirrors do_vmi_munmap(): removes the mappings of the page-aligned `[start, end)` (splitting
 * those that stick out), clears their PTEs, invalidates the secondary TLBs for the range, and
 * only then drops the pages, so no device can reach a freed page. EINVAL, changing nothing,
 * when a hugetlb mapping would be split off a huge-page boundary.
 */
function _munmap(mm: MmStruct, start: number, end: number): void {
  for (const va of [start, end - 1]) {
    const vma = vma_lookup(mm, va);
    if (
      vma !== null && (vma.vm_flags & VM_HUGETLB) &&
      (start % HPAGE_PMD_SIZE !== 0 || end % HPAGE_PMD_SIZE !== 0)
    ) {
      throw new Errno("EINVAL", "A hugetlb mapping is unmapped by whole huge pages");
    }
  }
  const kept: VmAreaStruct[] = [];
  let touched = false;
  for (const vma of mm.vmas) {
    if (vma.vm_end <= start || vma.vm_start >= end) {
      kept.push(vma);
      continue;
    }
    touched = true;
    if (vma.vm_start < start) kept.push(new VmAreaStruct(mm, vma.vm_start, start, vma.vm_flags));
    if (vma.vm_end > end) kept.push(new VmAreaStruct(mm, end, vma.vm_end, vma.vm_flags));
  }
  if (!touched) return;
  mm.vmas.length = 0;
  mm.vmas.push(...kept);
  const zapped: number[] = [];
  _zap(mm, mm.pgd, mm.levels - 1, 0, start, end, zapped);
  if (zapped.length === 0) return;
  __flush_tlb_range(mm, start, end);
  _release(mm, zapped);
}

/**
 * Mirrors vm_munmap(): removes the mappings of `[start, start + len)` (splitting those that
 * stick out; a hugetlb mapping only by whole huge pages), clears their PTEs, invalidates the
 * secondary TLBs for the range, and only then drops the pages, so no device can reach a freed
 * page. Pinned pages stay allocated until unpinned. Unmapping a hole is not an error. EINVAL
 * for an unaligned start, a zero length, a range beyond user space, or a split hugetlb page.
 * DIVERGENCE: table pages stay until the mm exits (Linux's free_pgtables() frees those a munmap
 * empties).
 */
export function vm_munmap(mm: MmStruct, start: number, len: number): void {
  if (
    !Number.isSafeInteger(start) || start < 0 || start % PAGE_SIZE !== 0 ||
    !Number.isSafeInteger(len) || len <= 0 || len > mm.task_size - start
  ) {
    throw new Errno("EINVAL", `Cannot unmap ${len} bytes at 0x${start.toString(16)}`);
  }
  if (mm.pgd < 0) return;
  _munmap(mm, start, start + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE);
}

/** Calls `fn(pa, off, n)` for each page piece of `[uaddr, uaddr + len)`, faulting pages in. */
function _each_page(
  mm: MmStruct,
  uaddr: number,
  len: number,
  write: boolean,
  fn: (pa: number, off: number, n: number) => void,
): void {
  if (!Number.isSafeInteger(uaddr) || uaddr < 0 || uaddr + len > mm.task_size) {
    throw new Errno("EFAULT", `Bad user address 0x${uaddr.toString(16)}`);
  }
  let off = 0;
  while (off < len) {
    const va = uaddr + off;
    const n = Math.min(len - off, PAGE_SIZE - (va % PAGE_SIZE));
    let pa: number;
    try {
      pa = _fault_in(mm, va, write);
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
  _each_page(
    mm,
    from,
    to.length,
    false,
    (pa, off, n) => mem.copyOut(pa, to.subarray(off, off + n)),
  );
}

/** Mirrors copy_to_user(): writes `from` to user memory at `to`; EFAULT on a bad address. */
export function copy_to_user(mm: MmStruct, to: number, from: Uint8Array): void {
  const mem = mm.kernel.mem;
  _each_page(
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
  _each_page(mm, to, n, true, (pa, _off, len) => mem.fill(pa, len, 0));
}

/**
 * Mirrors pin_user_pages() with FOLL_LONGTERM: faults in and pins `nr_pages` user pages from
 * `start` (page aligned), appending their physical addresses to `pages`. The pages are the
 * ones the page table maps (what a device walking it through SVA reaches too). Release them
 * with {@linkcode unpin_user_pages}.
 *
 * EINVAL for an unaligned start; EFAULT when a page is not mapped, or is read-only and
 * `gup_flags` has FOLL_WRITE; ENOMEM from the page allocator. DIVERGENCE: all or nothing — on
 * an error the pages pinned so far are unpinned and the error thrown, where Linux returns the
 * count it got.
 */
export function pin_user_pages(
  mm: MmStruct,
  start: number,
  nr_pages: number,
  gup_flags: number,
  pages: number[],
): void {
  if (!Number.isSafeInteger(start) || start < 0 || start % PAGE_SIZE !== 0) {
    throw new Errno("EINVAL", `Unaligned pin at 0x${start.toString(16)}`);
  }
  const first = pages.length;
  try {
    for (let i = 0; i < nr_pages; i++) {
      const pa = _fault_in(mm, start + i * PAGE_SIZE, (gup_flags & FOLL_WRITE) !== 0);
      mm._folioOf.get(pa / PAGE_SIZE)!.pincount++;
      pages.push(pa);
    }
  } catch (e) {
    unpin_user_pages(mm, pages.splice(first));
    throw e;
  }
}

/**
 * Mirrors unpin_user_pages(): drops one pin per page, freeing a folio that is no longer mapped
 * nor pinned; EINVAL for a page not pinned.
 *
 * DIVERGENCE: takes the mm the pages were pinned from, whose folios this kernel tracks (Linux
 * finds the struct page from the address alone).
 */
export function unpin_user_pages(mm: MmStruct, pages: readonly number[]): void {
  for (const pa of pages) {
    const folio = mm._folioOf.get(pa / PAGE_SIZE);
    if (folio === undefined || folio.pincount === 0) {
      throw new Errno("EINVAL", `Page 0x${pa.toString(16)} is not pinned`);
    }
    folio.pincount--;
    _maybe_free(mm, folio);
  }
}
