import assert from "node:assert/strict";
import {
  Device,
  dma_alloc_coherent,
  DMA_BIDIRECTIONAL,
  dma_free_coherent,
  DMA_FROM_DEVICE,
  dma_map_page,
  dma_map_sg,
  dma_map_single,
  DMA_NONE,
  dma_set_mask,
  dma_set_mask_and_coherent,
  DMA_TO_DEVICE,
  dma_unmap_page,
  dma_unmap_sg,
  dma_unmap_single,
  dmaDirectOps,
  type DmaOps,
  Kernel,
  PAGE_SIZE,
  sg_init_one,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

function setup(base = 0x8000_0000) {
  const ram = new TestRam(base, 1 << 24);
  const kernel = new Kernel({ mem: ram });
  return { ram, kernel, dev: new Device(kernel, { name: "dma0" }) };
}

Deno.test("dma-direct: the DMA address is the physical address", () => {
  const { dev } = setup();
  assert.equal(dev.dma, dmaDirectOps);
  assert.equal(dma_map_page(dev, 0x8000_1000, 0x20, 64, DMA_TO_DEVICE), 0x8000_1020);
  assert.equal(dma_map_single(dev, 0x8000_2000, 4096, DMA_FROM_DEVICE), 0x8000_2000);
  const sg = [sg_init_one(0x8000_3000, 100), sg_init_one(0x8000_5000, 200)];
  assert.equal(dma_map_sg(dev, sg, DMA_BIDIRECTIONAL), 2);
  assert.deepEqual(sg.map((s) => [s.dmaAddress, s.dmaLength]), [[0x8000_3000, 100], [
    0x8000_5000,
    200,
  ]]);
  dma_unmap_sg(dev, sg, DMA_BIDIRECTIONAL);
});

Deno.test("dma-direct: buffers beyond the DMA mask fail with EIO (no bounce buffers)", () => {
  const { dev } = setup();
  assert.equal(dev.dmaMask, 32, "Linux's default mask");
  assert.throws(() => dma_map_single(dev, 0xffff_f000, 0x2000, DMA_TO_DEVICE), { code: "EIO" });
  dma_set_mask(dev, 64);
  assert.equal(dma_map_single(dev, 0xffff_f000, 0x2000, DMA_TO_DEVICE), 0xffff_f000);
  assert.throws(() => dma_set_mask(dev, 65), { code: "EIO" });
});

Deno.test("DMA API argument checks: direction, size, address, empty scatterlist are EINVAL", async (t) => {
  const { dev } = setup();
  const page = 0x8000_1000;
  const cases: [string, () => unknown][] = [
    ["map with DMA_NONE", () => dma_map_single(dev, page, 16, DMA_NONE)],
    ["map of size 0", () => dma_map_single(dev, page, 0, DMA_TO_DEVICE)],
    ["map of a fractional size", () => dma_map_page(dev, page, 0, 1.5, DMA_TO_DEVICE)],
    ["map of a negative address", () => dma_map_single(dev, -4096, 16, DMA_TO_DEVICE)],
    ["map at a negative offset", () => dma_map_page(dev, page, -16, 16, DMA_TO_DEVICE)],
    ["map of an empty scatterlist", () => dma_map_sg(dev, [], DMA_TO_DEVICE)],
    ["map of an empty segment", () => dma_map_sg(dev, [sg_init_one(page, 0)], DMA_TO_DEVICE)],
    ["unmap with DMA_NONE", () => dma_unmap_page(dev, page, 16, DMA_NONE)],
    ["unmap of size 0", () => dma_unmap_single(dev, page, 0, DMA_TO_DEVICE)],
    ["unmap of an empty scatterlist", () => dma_unmap_sg(dev, [], DMA_TO_DEVICE)],
    ["unmap of a scatterlist with DMA_NONE", () => dma_unmap_sg(dev, [sg_init_one(page, 16)], 3)],
    ["alloc of size 0", () => dma_alloc_coherent(dev, 0)],
    ["free of size 0", () => dma_free_coherent(dev, 0, { cpuAddr: page, dmaAddr: page })],
  ];
  for (const [name, fn] of cases) {
    await t.step(name, () => assert.throws(fn, { code: "EINVAL" }));
  }
  assert.equal(dev.kernel.pages.allocatedPages, 0);
});

Deno.test("dma_alloc_coherent(): zeroed pages from the page allocator, all returned on free", () => {
  const { ram, kernel, dev } = setup();
  ram.fill(0x8000_0000, 1 << 16, 0xee);
  const mem = dma_alloc_coherent(dev, 3 * PAGE_SIZE);
  assert.equal(mem.cpuAddr, mem.dmaAddr);
  assert.equal(kernel.pages.allocatedPages, 4, "rounded up to an order-2 block");
  assert.ok(ram.readBytes(mem.cpuAddr, 3 * PAGE_SIZE).every((b) => b === 0));
  dma_free_coherent(dev, 3 * PAGE_SIZE, mem);
  assert.equal(kernel.pages.allocatedPages, 0);
});

Deno.test("dma_alloc_coherent(): RAM above the coherent mask is ENOMEM and leaks nothing", () => {
  const { kernel, dev } = setup(0x1_0000_0000);
  assert.throws(() => dma_alloc_coherent(dev, PAGE_SIZE), { code: "ENOMEM" });
  assert.equal(kernel.pages.allocatedPages, 0);
  dma_set_mask_and_coherent(dev, 40);
  const mem = dma_alloc_coherent(dev, PAGE_SIZE);
  assert.ok(mem.dmaAddr >= 0x1_0000_0000);
  kernel.pages.failNth(1);
  assert.throws(() => dma_alloc_coherent(dev, PAGE_SIZE), { code: "ENOMEM" });
});

Deno.test("a device's dma ops are replaceable (what dma-iommu does)", () => {
  const { dev } = setup();
  const calls: string[] = [];
  const ops: DmaOps = {
    ...dmaDirectOps,
    mapPage: (_d, phys, size) => (calls.push(`map ${phys.toString(16)}+${size}`), 0x1000),
  };
  dev.dma = ops;
  assert.equal(dma_map_page(dev, 0x8000_0000, 8, 8, DMA_TO_DEVICE), 0x1000);
  assert.deepEqual(calls, ["map 80000008+8"]);
});
