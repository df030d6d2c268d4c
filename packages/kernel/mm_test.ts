import assert from "node:assert/strict";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_EXEC,
  _PAGE_PRESENT,
  _PAGE_READ,
  _PAGE_USER,
  _PAGE_WRITE,
  access_remote_vm,
  clear_user,
  copy_from_user,
  copy_to_user,
  FAULT_FLAG_INSTRUCTION,
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_WRITE,
  FOLL_WRITE,
  follow_pte,
  handle_mm_fault,
  HPAGE_PMD_SIZE,
  type IommuLayer,
  Kernel,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_HUGETLB,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  mm_alloc,
  mmdrop,
  mmget,
  mmget_not_zero,
  mmgrab,
  mmput,
  MmStruct,
  mmu_notifier_register,
  mmu_notifier_unregister,
  MmuNotifier,
  PAGE_SIZE,
  pin_user_pages,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  pte_pfn,
  SATP_MODE_39,
  SATP_MODE_48,
  unpin_user_pages,
  VM_FAULT_OOM,
  VM_FAULT_SIGSEGV,
  vm_mmap,
  vm_munmap,
  vma_lookup,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const SHARED = MAP_SHARED | MAP_ANONYMOUS;
/** Sv39 table pages of a first fault in an empty table: the root, then one per level below. */
const SV39_TABLES = 3;

function kernel(): Kernel {
  return new Kernel({ mem: new TestRam(0x8000_0000, 1 << 26) });
}

/** A process built the way iommufd's users build theirs: a structure outside the slab. */
function setup(): { kernel: Kernel; mm: MmStruct } {
  const k = kernel();
  return { kernel: k, mm: new MmStruct(k) };
}

/** Faults every page of `[va, va + len)` in with `flags`; returns the vm_fault_t of each. */
function touch(mm: MmStruct, va: number, len: number, flags = 0): number[] {
  const out: number[] = [];
  for (let a = va; a < va + len; a += 4096) out.push(handle_mm_fault(vma_lookup(mm, a)!, a, flags));
  return out;
}

/** The physical address the CPU page table maps `va` to. */
function phys(mm: MmStruct, va: number): number {
  return pte_pfn(follow_pte(mm, va)) * PAGE_SIZE + va % PAGE_SIZE;
}

Deno.test("mm_alloc(): a root table page; Sv39 and Sv48 user spaces are the lower halves of 39 and 48 bits", () => {
  const k = kernel();
  const mm39 = mm_alloc(k);
  const mm48 = mm_alloc(k, SATP_MODE_48);
  assert.deepEqual([mm39.satp_mode, mm39.levels, mm39.task_size], [SATP_MODE_39, 3, 2 ** 38]);
  assert.deepEqual([mm48.satp_mode, mm48.levels, mm48.task_size], [SATP_MODE_48, 4, 2 ** 47]);
  assert.equal(k.pages.allocatedPages, 2);
  assert.throws(() => mm_alloc(k, 10), { code: "EINVAL" });
  mmput(mm39);
  mmput(mm48);
  assert.equal(k.pages.allocatedPages, 0);
  assert.equal(k.slab.allocatedObjects, 0);
});

Deno.test("mm_alloc(): ENOMEM for the structure or the root page leaves nothing behind", () => {
  const k = kernel();
  k.slab.failNth(1);
  assert.throws(() => mm_alloc(k), { code: "ENOMEM" });
  k.pages.failNth(1);
  assert.throws(() => mm_alloc(k), { code: "ENOMEM" });
  assert.equal(k.pages.allocatedPages, 0);
  assert.equal(k.slab.allocatedObjects, 0);
});

Deno.test("new MmStruct(): no slab object, the root table with the first mapping, all of it back at the last mmput()", () => {
  const { kernel: k, mm } = setup();
  assert.deepEqual([k.pages.allocatedPages, k.slab.allocatedObjects, mm.pgd], [0, 0, -1]);
  const a = vm_mmap(mm, 0, PAGE_SIZE, RW, SHARED);
  assert.deepEqual([k.pages.allocatedPages, k.slab.allocatedObjects], [1, 0]);
  copy_to_user(mm, a, new Uint8Array([1]));
  assert.equal(k.pages.allocatedPages, SV39_TABLES + 1);
  mmput(mm);
  assert.deepEqual([k.pages.allocatedPages, k.slab.allocatedObjects, mm.pgd], [0, 0, -1]);
  assert.throws(() => vm_mmap(mm, 0, PAGE_SIZE, RW, SHARED), { code: "EINVAL" }, "exited");
});

Deno.test("vm_mmap(): top-down 2 MiB aligned placement, MAP_FIXED_NOREPLACE, and the errno of each bad request", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const a = vm_mmap(mm, 0, 10_000, RW, ANON);
  assert.equal(a, 2 ** 38 - HPAGE_PMD_SIZE, "at the top of user space, huge-page aligned");
  assert.equal(mm.vmas[0].vm_end - a, 12_288, "rounded up to pages");
  const b = vm_mmap(mm, 0, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS);
  assert.equal(b, a - HPAGE_PMD_SIZE);
  assert.equal(vm_mmap(mm, 0x1000_0000, 8192, RW, ANON | MAP_FIXED_NOREPLACE), 0x1000_0000);
  assert.deepEqual(mm.vmas.map((v) => v.vm_start), [0x1000_0000, b, a]);
  assert.throws(() => vm_mmap(mm, 0x1000_1000, 4096, RW, ANON | MAP_FIXED_NOREPLACE), {
    code: "EEXIST",
  });
  assert.throws(() => vm_mmap(mm, 0x1000_0800, 4096, RW, ANON | MAP_FIXED_NOREPLACE), {
    code: "EINVAL",
  });
  assert.throws(() => vm_mmap(mm, 2 ** 38 - 4096, 8192, RW, ANON | MAP_FIXED_NOREPLACE), {
    code: "ENOMEM",
  });
  assert.throws(() => vm_mmap(mm, 2 ** 38 - 4096, 8192, RW, ANON | MAP_FIXED), { code: "ENOMEM" });
  assert.throws(() => vm_mmap(mm, 0, 0, RW, ANON), { code: "EINVAL" });
  assert.throws(() => vm_mmap(mm, 0, 4096, RW, MAP_PRIVATE), { code: "EINVAL" }, "file-backed");
  assert.throws(() => vm_mmap(mm, 0, 4096, RW, MAP_ANONYMOUS), { code: "EINVAL" }, "no type");
  assert.equal(
    vm_mmap(mm, 0, 4096, RW, ANON | 0x4000),
    b - HPAGE_PMD_SIZE,
    "MAP_NORESERVE: ignored",
  );
  assert.throws(() => vm_mmap(mm, 0x1001, 4096, RW, ANON | MAP_FIXED), { code: "EINVAL" });
  assert.throws(() => vm_mmap(mm, 0, 2 ** 38, RW, ANON), { code: "ENOMEM" });
  assert.throws(() => vm_munmap(mm, 0x1001, 4096), { code: "EINVAL" });
  assert.throws(() => vm_munmap(mm, 0, 0), { code: "EINVAL" });
  assert.throws(() => vm_munmap(mm, 2 ** 38 - 4096, 8192), { code: "EINVAL" }, "beyond");
  mmput(mm);
  assert.throws(() => vm_mmap(mm, 0, 4096, RW, ANON), { code: "EINVAL" }, "exited");
});

Deno.test("handle_mm_fault(): the first touch maps a zeroed page with the mapping's permissions, A and D set", () => {
  const k = kernel();
  const mm = mm_alloc(k, SATP_MODE_48);
  const fixed = ANON | MAP_FIXED_NOREPLACE;
  const rw = vm_mmap(mm, 0x40_0000, 4096, RW, fixed);
  const ro = vm_mmap(mm, 0x40_1000, 4096, PROT_READ, fixed);
  const rx = vm_mmap(mm, 0x40_2000, 4096, PROT_READ | PROT_EXEC, fixed);
  const base = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_READ;
  assert.deepEqual(touch(mm, rw, 4096), [0]);
  assert.equal(follow_pte(mm, rw) & 0x3ff, base | _PAGE_WRITE | _PAGE_DIRTY);
  assert.deepEqual(touch(mm, ro, 4096), [0]);
  assert.equal(follow_pte(mm, ro) & 0x3ff, base);
  assert.deepEqual(touch(mm, rx, 4096, FAULT_FLAG_INSTRUCTION), [0]);
  assert.equal(follow_pte(mm, rx) & 0x3ff, base | _PAGE_EXEC);
  // Sv48: a root, then one table per level below it, shared by the three nearby pages.
  assert.equal(k.pages.allocatedPages, 1 + 3 + 3);
  assert.equal(mm.rss, 3);
  const pa = phys(mm, rw);
  assert.deepEqual([...k.mem.readBytes(pa, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(touch(mm, rw, 4096, FAULT_FLAG_WRITE), [0], "spurious: already there");
  assert.equal(phys(mm, rw), pa);
  assert.equal(k.pages.allocatedPages, 7);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("handle_mm_fault(): an access the mapping forbids is VM_FAULT_SIGSEGV; no page is VM_FAULT_OOM", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const ro = vm_mmap(mm, 0, 4096, PROT_READ, ANON);
  const vma = vma_lookup(mm, ro)!;
  assert.equal(handle_mm_fault(vma, ro, FAULT_FLAG_WRITE), VM_FAULT_SIGSEGV);
  assert.equal(handle_mm_fault(vma, ro, FAULT_FLAG_INSTRUCTION), VM_FAULT_SIGSEGV);
  assert.equal(handle_mm_fault(vma, ro + 4096, 0), VM_FAULT_SIGSEGV, "outside the mapping");
  assert.equal(follow_pte(mm, ro), 0);
  // Each retry gets one allocation further: the tables made so far stay, as Linux's do.
  for (const [nth, tables] of [[1, 0], [2, 1], [2, 2]]) {
    k.pages.failNth(nth);
    assert.equal(handle_mm_fault(vma, ro, 0), VM_FAULT_OOM);
    assert.equal(follow_pte(mm, ro), 0);
    assert.equal(k.pages.allocatedPages, 1 + tables);
  }
  assert.equal(handle_mm_fault(vma, ro, 0), 0);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
  assert.equal(handle_mm_fault(vma, ro, 0), VM_FAULT_SIGSEGV, "a stale VMA of an exited mm");
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("vm_munmap(): splits mappings, and the secondary TLBs are invalidated before the pages are freed", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const va = vm_mmap(mm, 0, 8 * 4096, RW, ANON);
  touch(mm, va, 8 * 4096, FAULT_FLAG_WRITE);
  const calls: string[] = [];
  const sub = new MmuNotifier({
    arch_invalidate_secondary_tlbs(_s, _mm, start, end) {
      // The old pages are still allocated: a device may still be using them until we return.
      calls.push(`0x${(start - va).toString(16)}-0x${(end - va).toString(16)} rss=${mm.rss}`);
      calls.push(`allocated=${k.pages.allocatedPages}`);
    },
  });
  mmu_notifier_register(sub, mm);
  const before = k.pages.allocatedPages;
  vm_munmap(mm, va + 2 * 4096, 3 * 4096);
  assert.deepEqual(calls, ["0x2000-0x5000 rss=8", `allocated=${before}`]);
  assert.equal(k.pages.allocatedPages, before - 3);
  assert.deepEqual(mm.vmas.map((v) => [v.vm_start - va, v.vm_end - va]), [
    [0, 0x2000],
    [0x5000, 0x8000],
  ]);
  assert.equal(follow_pte(mm, va + 0x2000), 0);
  assert.notEqual(follow_pte(mm, va + 0x5000), 0);
  vm_munmap(mm, va + 0x2000, 0x3000);
  assert.equal(calls.length, 2, "a hole: nothing to invalidate");
  assert.throws(() => vm_munmap(mm, va + 1, 4096), { code: "EINVAL" });
  assert.throws(() => vm_munmap(mm, va, 0), { code: "EINVAL" });
  mmu_notifier_unregister(sub, mm);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("vm_mmap(MAP_FIXED) replaces what is there: its PTEs go, the secondary TLBs are told, the new pages are fresh", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const va = vm_mmap(mm, 0, 4 * 4096, RW, ANON);
  copy_to_user(mm, va + 4096, new Uint8Array([0xaa]));
  const before = k.pages.allocatedPages;
  const calls: string[] = [];
  const sub = new MmuNotifier({
    arch_invalidate_secondary_tlbs: (_s, _m, start, end) => calls.push(`${start - va}-${end - va}`),
  });
  mmu_notifier_register(sub, mm);
  assert.equal(vm_mmap(mm, va + 4096, 4096, PROT_READ, ANON | MAP_FIXED), va + 4096);
  assert.deepEqual(calls, ["4096-8192"]);
  assert.equal(k.pages.allocatedPages, before - 1, "the replaced page is freed");
  assert.deepEqual(mm.vmas.map((v) => [v.vm_start - va, v.vm_end - va]), [
    [0, 4096],
    [4096, 8192],
    [8192, 16384],
  ]);
  assert.equal(follow_pte(mm, va + 4096), 0);
  const back = new Uint8Array(1);
  copy_from_user(mm, back, va + 4096);
  assert.deepEqual([...back], [0], "a fresh zeroed page, whichever frame it is");
  assert.throws(() => copy_to_user(mm, va + 4096, back), { code: "EFAULT" }, "now read-only");
  assert.equal(k.pages.allocatedPages, before);
  mmu_notifier_unregister(sub, mm);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("access_remote_vm(): faults pages in, copies across pages, stops short where access ends", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const rw = vm_mmap(mm, 0x20_0000, 2 * 4096, RW, ANON | MAP_FIXED_NOREPLACE);
  const data = Uint8Array.from({ length: 6000 }, (_, i) => i & 0xff);
  assert.equal(access_remote_vm(mm, rw + 100, data, FOLL_WRITE), 6000);
  const back = new Uint8Array(6000);
  assert.equal(access_remote_vm(mm, rw + 100, back, 0), 6000);
  assert.deepEqual(back, data);
  assert.equal(access_remote_vm(mm, rw + 4096, new Uint8Array(8192), 0), 4096, "hole after");
  const ro = vm_mmap(mm, 0x40_0000, 4096, PROT_READ, ANON | MAP_FIXED_NOREPLACE);
  assert.equal(access_remote_vm(mm, ro, new Uint8Array(4), FOLL_WRITE), 0, "read-only");
  mmput(mm);
  assert.equal(access_remote_vm(mm, rw, back, 0), 0, "exited");
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("mmput()/mmdrop(): the last user releases the notifiers and frees the mappings; the last reference the root and the PASID", () => {
  const k = kernel();
  const dropped: MmStruct[] = [];
  k.iommuLayer = { mmPasidDrop: (m: MmStruct) => dropped.push(m) } as unknown as IommuLayer;
  const mm = mm_alloc(k);
  const va = vm_mmap(mm, 0, 4 * 4096, RW, ANON);
  touch(mm, va, 4 * 4096);
  const log: string[] = [];
  const sub = new MmuNotifier({
    release: (_s, m) => log.push(`release rss=${m.rss}`),
    arch_invalidate_secondary_tlbs: () => log.push("invalidate"),
  });
  mmu_notifier_register(sub, mm);
  assert.throws(() => mmu_notifier_register(sub, mm), { code: "EBUSY" });
  mmget(mm);
  assert.equal(mmget_not_zero(mm), true);
  mmput(mm);
  mmput(mm);
  assert.deepEqual(log, []);
  mmput(mm);
  assert.deepEqual(log, ["release rss=4"], "told before the tables go, and only once");
  assert.equal(k.pages.allocatedPages, 1, "the root stays while the notifier holds the mm");
  assert.equal(mmget_not_zero(mm), false);
  assert.throws(() => mmget(mm), { code: "EINVAL" });
  assert.throws(() => mmput(mm), { code: "EINVAL" });
  mmgrab(mm);
  mmu_notifier_unregister(sub, mm);
  assert.deepEqual(log, ["release rss=4"], "released already: unregister only drops");
  assert.deepEqual(dropped, []);
  mmdrop(mm);
  assert.deepEqual(dropped, [mm]);
  assert.equal(k.pages.allocatedPages, 0);
  assert.equal(k.slab.allocatedObjects, 0);
  assert.throws(() => mmdrop(mm), { code: "EINVAL" });
});

Deno.test("mmu_notifier_unregister() of a live mm calls release; bad calls are EINVAL; ENOMEM leaves no subscription", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const log: string[] = [];
  const sub = new MmuNotifier({ release: () => log.push("release") });
  assert.throws(() => mmu_notifier_unregister(sub, mm), { code: "EINVAL" });
  k.slab.failNth(1);
  assert.throws(() => mmu_notifier_register(sub, mm), { code: "ENOMEM" });
  assert.equal(sub.mm, null);
  assert.equal(mm.mm_count, 1);
  mmu_notifier_register(sub, mm);
  assert.equal(mm.mm_count, 2);
  mmu_notifier_unregister(sub, mm);
  assert.deepEqual(log, ["release"]);
  assert.equal(mm.mm_count, 1);
  mmput(mm);
  assert.throws(() => mmu_notifier_register(sub, mm), { code: "EINVAL" }, "exited");
  assert.equal(k.slab.allocatedObjects, 0);
});

Deno.test("uaccess copies through the page table and allocates pages on first touch", () => {
  const { kernel: k, mm } = setup();
  const a = vm_mmap(mm, 0, 3 * PAGE_SIZE, RW, SHARED);
  const b = vm_mmap(mm, 0, PAGE_SIZE, RW, SHARED);
  assert.equal(a % HPAGE_PMD_SIZE, 0);
  assert.equal(b % HPAGE_PMD_SIZE, 0);
  assert.notEqual(a, b);
  assert.equal(mm.folios, 0);
  copy_to_user(mm, a + PAGE_SIZE - 2, new Uint8Array([7, 8, 9, 10]));
  assert.equal(mm.folios, 2);
  assert.equal(k.pages.allocatedPages, SV39_TABLES + 2);
  assert.deepEqual([...k.mem.readBytes(phys(mm, a + PAGE_SIZE - 2), 2)], [7, 8]);
  assert.deepEqual([...k.mem.readBytes(phys(mm, a + PAGE_SIZE), 2)], [9, 10]);
  const back = new Uint8Array(4);
  copy_from_user(mm, back, a + PAGE_SIZE - 2);
  assert.deepEqual([...back], [7, 8, 9, 10]);
  clear_user(mm, a + PAGE_SIZE - 1, 2);
  copy_from_user(mm, back, a + PAGE_SIZE - 2);
  assert.deepEqual([...back], [7, 0, 0, 10]);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("uaccess on an unmapped, inaccessible or read-only user address is EFAULT", () => {
  const { mm } = setup();
  assert.throws(() => copy_from_user(mm, new Uint8Array(8), 0), { code: "EFAULT" });
  const ro = vm_mmap(mm, 0, PAGE_SIZE, PROT_READ, SHARED);
  assert.throws(() => copy_to_user(mm, ro, new Uint8Array(1)), { code: "EFAULT" });
  const none = vm_mmap(mm, 0, PAGE_SIZE, 0, SHARED);
  assert.throws(() => copy_from_user(mm, new Uint8Array(1), none), { code: "EFAULT" });
  const pas: number[] = [];
  assert.throws(() => pin_user_pages(mm, ro, 1, FOLL_WRITE, pas), { code: "EFAULT" });
  pin_user_pages(mm, ro, 1, 0, pas);
  assert.equal(pas.length, 1);
  unpin_user_pages(mm, pas);
  mm.kernel.pages.failNth(1);
  const rw = vm_mmap(mm, 0, PAGE_SIZE, RW, SHARED);
  assert.throws(() => copy_to_user(mm, rw, new Uint8Array(1)), { code: "EFAULT" }, "no page");
});

Deno.test("a page pinned for a driver is the page the CPU page table maps, the one a device fault finds", () => {
  const k = kernel();
  const mm = mm_alloc(k);
  const buf = vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, SHARED);
  // Pinned first: the pins populate the table; a device's fault then finds them there.
  const pas: number[] = [];
  pin_user_pages(mm, buf, 2, FOLL_WRITE, pas);
  assert.deepEqual(pas, [phys(mm, buf), phys(mm, buf + PAGE_SIZE)]);
  const vma = vma_lookup(mm, buf)!;
  assert.equal(handle_mm_fault(vma, buf, FAULT_FLAG_REMOTE | FAULT_FLAG_WRITE), 0);
  assert.equal(phys(mm, buf), pas[0], "spurious: the pinned page is mapped already");
  // Faulted in first (as SVA does): the pin takes the very page the device wrote.
  assert.equal(handle_mm_fault(vma, buf + 2 * PAGE_SIZE, FAULT_FLAG_REMOTE | FAULT_FLAG_WRITE), 0);
  k.mem.writeBytes(phys(mm, buf + 2 * PAGE_SIZE), new Uint8Array([0x5a]));
  pin_user_pages(mm, buf + 2 * PAGE_SIZE, 1, FOLL_WRITE, pas);
  assert.equal(pas[2], phys(mm, buf + 2 * PAGE_SIZE));
  assert.equal(k.mem.read32(pas[2]) & 0xff, 0x5a);
  assert.equal(mm.rss, 3);
  assert.equal(mm.folio(buf + 2 * PAGE_SIZE).pincount, 1);
  unpin_user_pages(mm, pas);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("a pinned page outlives munmap and the process's exit, and is freed by its last unpin", () => {
  const { kernel: k, mm } = setup();
  const buf = vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, SHARED);
  const pas: number[] = [];
  pin_user_pages(mm, buf, 4, FOLL_WRITE, pas);
  pin_user_pages(mm, buf + PAGE_SIZE, 1, FOLL_WRITE, pas);
  assert.equal(mm.folio(buf + PAGE_SIZE).pincount, 2);
  vm_munmap(mm, buf, 4 * PAGE_SIZE);
  assert.equal(follow_pte(mm, buf + PAGE_SIZE), 0, "unmapped, but not freed");
  assert.equal(k.pages.allocatedPages, SV39_TABLES + 4);
  assert.throws(() => copy_from_user(mm, new Uint8Array(1), buf), { code: "EFAULT" });
  unpin_user_pages(mm, pas.slice(0, 4));
  assert.equal(k.pages.allocatedPages, SV39_TABLES + 1);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 1, "the process has exited; the pin has not");
  unpin_user_pages(mm, pas.slice(4));
  assert.equal(k.pages.allocatedPages, 0);
  assert.throws(() => unpin_user_pages(mm, pas.slice(4)), { code: "EINVAL" });
});

Deno.test("MAP_HUGETLB backs each 2 MiB with one physically contiguous folio, mapped by one leaf a level up", () => {
  const { kernel: k, mm } = setup();
  const buf = vm_mmap(mm, 0, 3 * HPAGE_PMD_SIZE - PAGE_SIZE, RW, SHARED | MAP_HUGETLB);
  // The root and the one table of 2 MiB leaves below it: no table of 4 KiB pages.
  assert.equal(k.pages.allocatedPages, 3 * 512 + 2);
  assert.equal(mm.folios, 3);
  assert.equal(mm.rss, 3 * 512);
  const pas: number[] = [];
  pin_user_pages(mm, buf, 1024, FOLL_WRITE, pas);
  assert.equal(pas[0] % HPAGE_PMD_SIZE, 0);
  for (let i = 1; i < 512; i++) assert.equal(pas[i], pas[0] + i * PAGE_SIZE);
  assert.equal(phys(mm, buf + 5 * PAGE_SIZE + 3), pas[5] + 3);
  assert.equal(follow_pte(mm, buf + 5 * PAGE_SIZE) & 0xff, follow_pte(mm, buf) & 0xff);
  assert.equal(mm.folio(buf + 5 * PAGE_SIZE).pincount, 512);
  unpin_user_pages(mm, pas);
  assert.throws(() => vm_munmap(mm, buf, PAGE_SIZE), { code: "EINVAL" });
  assert.throws(
    () => vm_mmap(mm, buf + HPAGE_PMD_SIZE - PAGE_SIZE, 2 * PAGE_SIZE, RW, SHARED | MAP_FIXED),
    { code: "EINVAL" },
    "a fixed mapping may not split a huge page either",
  );
  assert.throws(() => vm_mmap(mm, buf + PAGE_SIZE, 1, RW, SHARED | MAP_HUGETLB | MAP_FIXED), {
    code: "EINVAL",
  });
  assert.equal(mm.folios, 3, "the refused calls changed nothing");
  vm_munmap(mm, buf, 3 * HPAGE_PMD_SIZE);
  assert.equal(k.pages.allocatedPages, 2);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("pin_user_pages() that fails half way pins nothing (all or nothing)", () => {
  const { kernel: k, mm } = setup();
  const buf = vm_mmap(mm, 0, 8 * PAGE_SIZE, RW, SHARED);
  vm_munmap(mm, buf + 4 * PAGE_SIZE, 4 * PAGE_SIZE);
  const pas = [123];
  assert.throws(() => pin_user_pages(mm, buf, 8, FOLL_WRITE, pas), { code: "EFAULT" });
  assert.deepEqual(pas, [123]);
  assert.equal(mm.folio(buf).pincount, 0);
  const fresh = vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, SHARED);
  k.pages.failNth(2); // the new 2 MiB region's table, then its first page
  assert.throws(() => pin_user_pages(mm, fresh, 4, FOLL_WRITE, []), { code: "ENOMEM" });
  assert.equal(mm.folio(fresh).pincount, 0);
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});

Deno.test("MAP_POPULATE faults every page at mmap and unwinds when the allocator fails", () => {
  const { kernel: k, mm } = setup();
  const a = vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, SHARED | MAP_POPULATE);
  assert.equal(k.pages.allocatedPages, SV39_TABLES + 4);
  assert.notEqual(follow_pte(mm, a + 3 * PAGE_SIZE), 0);
  k.pages.failNth(3); // the new region's table, a page, and the next page fails
  assert.throws(() => vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, SHARED | MAP_POPULATE), {
    code: "ENOMEM",
  });
  assert.equal(mm.vmas.length, 1);
  assert.equal(mm.folios, 4);
  assert.equal(k.pages.allocatedPages, SV39_TABLES + 4 + 1, "the table stays, as Linux's do");
  mmput(mm);
  assert.equal(k.pages.allocatedPages, 0);
});
