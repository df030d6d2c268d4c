import assert from "node:assert/strict";
import {
  clear_user,
  copy_from_user,
  copy_to_user,
  FOLL_WRITE,
  HPAGE_PMD_SIZE,
  Kernel,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_HUGETLB,
  MAP_POPULATE,
  MAP_SHARED,
  mmput,
  MmStruct,
  PAGE_SIZE,
  pin_user_pages,
  PROT_READ,
  PROT_WRITE,
  unpin_user_pages,
  vm_mmap,
  vm_munmap,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_SHARED | MAP_ANONYMOUS;

function setup(): { kernel: Kernel; mm: MmStruct } {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 26) });
  return { kernel, mm: new MmStruct(kernel) };
}

Deno.test("vm_mmap() places mappings 2 MiB aligned and allocates pages on first touch", () => {
  const { kernel, mm } = setup();
  const a = vm_mmap(mm, 0, 3 * PAGE_SIZE, RW, ANON);
  const b = vm_mmap(mm, 0, PAGE_SIZE, RW, ANON);
  assert.equal(a % HPAGE_PMD_SIZE, 0);
  assert.equal(b % HPAGE_PMD_SIZE, 0);
  assert.notEqual(a, b);
  assert.equal(kernel.pages.allocatedPages, 0);
  copy_to_user(mm, a + PAGE_SIZE - 2, new Uint8Array([7, 8, 9, 10]));
  assert.equal(kernel.pages.allocatedPages, 2);
  const back = new Uint8Array(4);
  copy_from_user(mm, back, a + PAGE_SIZE - 2);
  assert.deepEqual([...back], [7, 8, 9, 10]);
  clear_user(mm, a + PAGE_SIZE - 1, 2);
  copy_from_user(mm, back, a + PAGE_SIZE - 2);
  assert.deepEqual([...back], [7, 0, 0, 10]);
  mmput(mm);
  assert.equal(kernel.pages.allocatedPages, 0);
});

Deno.test("uaccess on an unmapped or read-only user address is EFAULT", () => {
  const { mm } = setup();
  assert.throws(() => copy_from_user(mm, new Uint8Array(8), 0), { code: "EFAULT" });
  const ro = vm_mmap(mm, 0, PAGE_SIZE, PROT_READ, ANON);
  assert.throws(() => copy_to_user(mm, ro, new Uint8Array(1)), { code: "EFAULT" });
  const pas: number[] = [];
  assert.throws(() => pin_user_pages(mm, ro, 1, FOLL_WRITE, pas), { code: "EFAULT" });
  pin_user_pages(mm, ro, 1, 0, pas);
  assert.equal(pas.length, 1);
  unpin_user_pages(mm, pas);
});

Deno.test("vm_mmap() and vm_munmap() refuse bad arguments with EINVAL", () => {
  const { mm } = setup();
  assert.throws(() => vm_mmap(mm, 0, 0, RW, ANON), { code: "EINVAL" });
  assert.throws(() => vm_mmap(mm, 0, PAGE_SIZE, RW, MAP_ANONYMOUS), { code: "EINVAL" });
  assert.throws(() => vm_mmap(mm, 0, PAGE_SIZE, RW, MAP_SHARED), { code: "EINVAL" });
  assert.throws(() => vm_mmap(mm, 0x1001, PAGE_SIZE, RW, ANON | MAP_FIXED), { code: "EINVAL" });
  assert.throws(() => vm_munmap(mm, 0x1001, PAGE_SIZE), { code: "EINVAL" });
  const huge = vm_mmap(mm, 0, HPAGE_PMD_SIZE, RW, ANON | MAP_HUGETLB);
  assert.throws(() => vm_munmap(mm, huge, PAGE_SIZE), { code: "EINVAL" });
});

Deno.test("a pinned page outlives munmap and is freed by its last unpin", () => {
  const { kernel, mm } = setup();
  const buf = vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, ANON);
  const pas: number[] = [];
  pin_user_pages(mm, buf, 4, FOLL_WRITE, pas);
  pin_user_pages(mm, buf + PAGE_SIZE, 1, FOLL_WRITE, pas);
  assert.equal(mm.folio(buf + PAGE_SIZE).pincount, 2);
  vm_munmap(mm, buf, 4 * PAGE_SIZE);
  assert.equal(kernel.pages.allocatedPages, 4);
  assert.throws(() => copy_from_user(mm, new Uint8Array(1), buf), { code: "EFAULT" });
  unpin_user_pages(mm, pas.slice(0, 4));
  assert.equal(kernel.pages.allocatedPages, 1);
  unpin_user_pages(mm, pas.slice(4));
  assert.equal(kernel.pages.allocatedPages, 0);
  assert.throws(() => unpin_user_pages(mm, pas.slice(4)), { code: "EINVAL" });
});

Deno.test("MAP_HUGETLB backs each 2 MiB with one physically contiguous folio", () => {
  const { kernel, mm } = setup();
  const buf = vm_mmap(mm, 0, 3 * HPAGE_PMD_SIZE - PAGE_SIZE, RW, ANON | MAP_HUGETLB);
  assert.equal(kernel.pages.allocatedPages, 3 * 512);
  assert.equal(mm.folios, 3);
  const pas: number[] = [];
  pin_user_pages(mm, buf, 1024, FOLL_WRITE, pas);
  assert.equal(pas[0] % HPAGE_PMD_SIZE, 0);
  for (let i = 1; i < 512; i++) assert.equal(pas[i], pas[0] + i * PAGE_SIZE);
  assert.equal(mm.folio(buf + 5 * PAGE_SIZE).pincount, 512);
  unpin_user_pages(mm, pas);
  vm_munmap(mm, buf, 3 * HPAGE_PMD_SIZE);
  assert.equal(kernel.pages.allocatedPages, 0);
});

Deno.test("pin_user_pages() that fails half way pins nothing (all or nothing)", () => {
  const { kernel, mm } = setup();
  const buf = vm_mmap(mm, 0, 8 * PAGE_SIZE, RW, ANON);
  vm_munmap(mm, buf + 4 * PAGE_SIZE, 4 * PAGE_SIZE);
  const pas = [123];
  assert.throws(() => pin_user_pages(mm, buf, 8, FOLL_WRITE, pas), { code: "EFAULT" });
  assert.deepEqual(pas, [123]);
  assert.equal(mm.folio(buf).pincount, 0);
  const fresh = vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, ANON);
  kernel.pages.failNth(2);
  assert.throws(() => pin_user_pages(mm, fresh, 4, FOLL_WRITE, []), { code: "ENOMEM" });
  assert.equal(mm.folio(fresh).pincount, 0);
  mmput(mm);
  assert.equal(kernel.pages.allocatedPages, 0);
});

Deno.test("MAP_POPULATE faults every page at mmap and unwinds when the allocator fails", () => {
  const { kernel, mm } = setup();
  vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, ANON | MAP_POPULATE);
  assert.equal(kernel.pages.allocatedPages, 4);
  kernel.pages.failNth(3);
  assert.throws(() => vm_mmap(mm, 0, 4 * PAGE_SIZE, RW, ANON | MAP_POPULATE), { code: "ENOMEM" });
  assert.equal(kernel.pages.allocatedPages, 4);
});
