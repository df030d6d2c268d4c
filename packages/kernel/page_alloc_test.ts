import assert from "node:assert/strict";
import fc from "fast-check";
import { get_order, MAX_PAGE_ORDER, PAGE_SIZE, PageAllocator } from "./mod.ts";
import { TestRam } from "./testing.ts";

const BASE = 0x8000_0000;

function make(size = 1 << 24): { ram: TestRam; pages: PageAllocator } {
  const ram = new TestRam(BASE, size);
  return { ram, pages: new PageAllocator(ram, [{ base: BASE, size }]) };
}

Deno.test("alloc_pages(): blocks are zeroed, size-aligned and counted", () => {
  const { ram, pages } = make();
  const a = pages.alloc(0);
  ram.fill(a, PAGE_SIZE, 0xaa);
  pages.free(a, 0);
  const b = pages.alloc(3);
  assert.equal(b % (PAGE_SIZE * 8), 0);
  assert.ok(ram.readBytes(b, PAGE_SIZE * 8).every((x) => x === 0), "allocation is zeroed");
  assert.equal(pages.allocatedPages, 8);
  assert.deepEqual(pages.allocations(), [{ phys: b, order: 3 }]);
  pages.free(b, 3);
  assert.equal(pages.allocatedPages, 0);
});

Deno.test("free_pages(): wrong order, double free and foreign addresses are EINVAL", () => {
  const { pages } = make();
  const a = pages.alloc(1);
  assert.throws(() => pages.free(a, 0), { code: "EINVAL" });
  assert.throws(() => pages.free(a + PAGE_SIZE, 1), { code: "EINVAL" });
  pages.free(a, 1);
  assert.throws(() => pages.free(a, 1), { code: "EINVAL" });
  assert.throws(() => pages.alloc(MAX_PAGE_ORDER + 1), { code: "EINVAL" });
  assert.throws(() => pages.alloc(-1), { code: "EINVAL" });
});

Deno.test("failNth(n): exactly the nth allocation from now fails with ENOMEM", () => {
  const { pages } = make();
  pages.failNth(3);
  const a = pages.alloc(0);
  const b = pages.alloc(0);
  assert.throws(() => pages.alloc(0), { code: "ENOMEM" });
  const c = pages.alloc(0);
  assert.equal(pages.allocatedPages, 3);
  for (const p of [a, b, c]) pages.free(p, 0);
  pages.failNth(1);
  pages.failNth(0);
  pages.free(pages.alloc(0), 0);
  assert.equal(pages.allocatedPages, 0);
});

Deno.test("exhaustion is ENOMEM and freeing everything coalesces back to max-order blocks", () => {
  const size = 1 << 23; // two order-10 blocks
  const { pages } = make(size);
  const got: number[] = [];
  for (let i = 0; i < size / PAGE_SIZE; i++) got.push(pages.alloc(0));
  assert.equal(new Set(got).size, got.length);
  assert.throws(() => pages.alloc(0), { code: "ENOMEM" });
  for (const p of got) pages.free(p, 0);
  assert.equal(pages.allocatedPages, 0);
  const big = [pages.alloc(MAX_PAGE_ORDER), pages.alloc(MAX_PAGE_ORDER)];
  assert.throws(() => pages.alloc(0), { code: "ENOMEM" });
  for (const p of big) pages.free(p, MAX_PAGE_ORDER);
});

Deno.test("reserved ranges and unaligned RAM are never handed out", () => {
  const ram = new TestRam(BASE, 1 << 20);
  const reserved = { base: BASE + 0x1_0000, size: 0x2000 };
  const pages = new PageAllocator(ram, [{ base: BASE + 0x800, size: (1 << 20) - 0x800 }], [
    reserved,
  ]);
  assert.equal(pages.totalPages, 256 - 1 - 2);
  const all: number[] = [];
  for (let i = 0; i < pages.totalPages; i++) all.push(pages.alloc(0));
  assert.ok(all.every((p) => p >= BASE + 0x1000));
  assert.ok(all.every((p) => p < reserved.base || p >= reserved.base + reserved.size));
});

Deno.test("live blocks never overlap: a freed middle block is reused by the split of a larger one, counts match", () => {
  const { pages } = make(1 << 22);
  const a = pages.alloc(0), b = pages.alloc(1), c = pages.alloc(0), d = pages.alloc(2);
  pages.free(b, 1);
  const e = pages.alloc(0), f = pages.alloc(0); // the two halves of b's block
  assert.deepEqual([e, f].sort((x, y) => x - y), [b, b + PAGE_SIZE]);
  const spans = [[a, 0], [c, 0], [d, 2], [e, 0], [f, 0]].map((
    [pa, o],
  ) => [pa, pa + PAGE_SIZE * 2 ** o])
    .sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], `${i}`);
  assert.equal(pages.allocatedPages, 1 + 1 + 4 + 1 + 1);
  for (const [pa, o] of [[a, 0], [c, 0], [d, 2], [e, 0], [f, 0]]) pages.free(pa, o);
  assert.equal(pages.allocatedPages, 0);
});

Deno.test("property: live blocks never overlap and counts match", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(4), fc.boolean()), { maxLength: 60 }), (ops) => {
      const { pages } = make(1 << 22);
      const live: { pa: number; order: number }[] = [];
      for (const [order, free] of ops) {
        if (free && live.length > 0) {
          const { pa, order: o } = live.splice(live.length >> 1, 1)[0];
          pages.free(pa, o);
        } else {
          live.push({ pa: pages.alloc(order), order });
        }
        const spans = live.map((b) => [b.pa, b.pa + PAGE_SIZE * 2 ** b.order]).sort((x, y) =>
          x[0] - y[0]
        );
        for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1]);
        assert.equal(pages.allocatedPages, live.reduce((n, b) => n + 2 ** b.order, 0));
      }
    }),
    { numRuns: 50 },
  );
});

Deno.test("get_order() is the smallest order that fits", () => {
  assert.deepEqual([1, 4096, 4097, 8192, 16385].map(get_order), [0, 0, 1, 1, 3]);
  assert.throws(() => get_order(0), { code: "EINVAL" });
});
