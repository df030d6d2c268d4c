import assert from "node:assert/strict";
import {
  Device,
  device_del,
  dma_alloc_coherent,
  DMA_BIDIRECTIONAL,
  dma_free_coherent,
  DMA_FROM_DEVICE,
  dma_map_page,
  dma_map_sg,
  dma_set_mask,
  DMA_TO_DEVICE,
  dma_unmap_page,
  dma_unmap_sg,
  type ErrnoName,
  iommu_dma_prepare_msi,
  isErrno,
  msi_msg_set_addr,
  type MsiDesc,
  sg_init_one,
} from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_detach_device,
  IOMMU_DOMAIN_DMA,
  iommu_domain_free,
  iommu_get_dma_domain,
  iommu_iova_to_phys,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  iommu_paging_domain_alloc,
  IOMMU_WRITE,
  IommuDomain,
  type IommuDomainOps,
} from "./iommu.ts";
import { iommu_dma_init_domain, iommu_get_dma_cookie, iommu_put_dma_cookie } from "./dma_iommu.ts";
import { mockSystem } from "./testing.ts";

function errno(code: ErrnoName) {
  return (e: unknown) => isErrno(e, code);
}

function setup(opts: Parameters<typeof mockSystem>[0] = {}) {
  const sys = mockSystem(opts);
  const dev = sys.addDevice("dma0", 1);
  const domain = iommu_get_dma_domain(dev) as IommuDomain;
  return { sys, dev, domain, pages: sys.kernel.pages };
}

Deno.test("dma_map_page() returns an IOVA that translates to the buffer, offset kept", () => {
  const { dev, domain, pages } = setup();
  const page = pages.alloc(0);
  const addr = dma_map_page(dev, page, 0x123, 0x100, DMA_BIDIRECTIONAL);
  assert.notEqual(addr, page + 0x123, "the device sees an IOVA, not the physical address");
  assert.equal(addr % 4096, 0x123);
  assert.equal(iommu_iova_to_phys(domain, addr), page + 0x123);
  dma_unmap_page(dev, addr, 0x100, DMA_BIDIRECTIONAL);
});

Deno.test("dma_map_page() of a buffer crossing a page boundary maps both pages", () => {
  const { dev, domain, pages } = setup();
  const buf = pages.alloc(1);
  const addr = dma_map_page(dev, buf, 0xf00, 0x200, DMA_TO_DEVICE);
  assert.equal(iommu_iova_to_phys(domain, addr + 0x1ff), buf + 0x10ff);
  dma_unmap_page(dev, addr, 0x200, DMA_TO_DEVICE);
  assert.equal(iommu_iova_to_phys(domain, addr + 0x1ff), 0);
});

Deno.test("dma_map_page() allocates IOVAs top-down below the DMA mask and the aperture", async (t) => {
  await t.step("32-bit mask", () => {
    const { dev, pages } = setup();
    dma_set_mask(dev, 32);
    const a = dma_map_page(dev, pages.alloc(0), 0, 4096, DMA_TO_DEVICE);
    const b = dma_map_page(dev, pages.alloc(0), 0, 4096, DMA_TO_DEVICE);
    assert.equal(a, 2 ** 32 - 4096);
    assert.equal(b, 2 ** 32 - 8192);
  });
  await t.step("64-bit mask, Sv39 aperture (lower half)", () => {
    const { dev, pages } = setup();
    dma_set_mask(dev, 64);
    assert.equal(dma_map_page(dev, pages.alloc(0), 0, 4096, DMA_TO_DEVICE), 2 ** 38 - 4096);
  });
});

Deno.test("dma_unmap_page() unmaps and invalidates (strict) before the IOVA is reused", () => {
  const { sys, dev, domain, pages } = setup();
  const page = pages.alloc(0);
  const addr = dma_map_page(dev, page, 0, 4096, DMA_FROM_DEVICE);
  const syncs = sys.drv.stats.iotlb_sync;
  dma_unmap_page(dev, addr, 4096, DMA_FROM_DEVICE);
  assert.equal(sys.drv.stats.iotlb_sync, syncs + 1);
  assert.equal(iommu_iova_to_phys(domain, addr), 0);
  assert.equal(dma_map_page(dev, page, 0, 4096, DMA_FROM_DEVICE), addr, "rcache reuse");
});

Deno.test("dma_unmap_page() of an address not mapped, or twice, fails with EINVAL", () => {
  const { dev, pages } = setup();
  const page = pages.alloc(0);
  assert.throws(() => dma_unmap_page(dev, 0x1000_0000, 4096, DMA_TO_DEVICE), errno("EINVAL"));
  const addr = dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE);
  assert.throws(() => dma_unmap_page(dev, addr, 3 * 4096, DMA_TO_DEVICE), errno("EINVAL"));
  dma_unmap_page(dev, addr, 4096, DMA_TO_DEVICE);
  assert.throws(() => dma_unmap_page(dev, addr, 4096, DMA_TO_DEVICE), errno("EINVAL"));
  // The rejected double unmap did not put the IOVA in the cache twice.
  const x = dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE);
  const y = dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE);
  assert.notEqual(x, y);
});

Deno.test("dma_unmap_page() of size 0 fails with EINVAL and leaves the mapping and its IOVA", () => {
  const { dev, domain, pages } = setup();
  const page = pages.alloc(0);
  const addr = dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE);
  assert.throws(() => dma_unmap_page(dev, addr, 0, DMA_TO_DEVICE), errno("EINVAL"));
  assert.equal(iommu_iova_to_phys(domain, addr), page);
  assert.notEqual(dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE), addr, "IOVA still in use");
  dma_unmap_page(dev, addr, 4096, DMA_TO_DEVICE);
});

Deno.test("dma_unmap_page() with a wrong size in the same IOVA block unmaps all, frees the IOVA, then fails with EINVAL", async (t) => {
  await t.step("larger than mapped", () => {
    const { dev, domain, pages } = setup();
    const buf = pages.alloc(2);
    const addr = dma_map_page(dev, buf, 0, 3 * 4096, DMA_TO_DEVICE); // a 4-page IOVA block
    assert.throws(() => dma_unmap_page(dev, addr, 4 * 4096, DMA_TO_DEVICE), errno("EINVAL"));
    assert.equal(iommu_iova_to_phys(domain, addr), 0);
    assert.equal(dma_map_page(dev, buf, 0, 3 * 4096, DMA_TO_DEVICE), addr, "IOVA was freed");
  });
  await t.step("smaller than mapped", () => {
    const { dev, domain, pages } = setup();
    const buf = pages.alloc(2);
    const addr = dma_map_page(dev, buf, 0, 4 * 4096, DMA_TO_DEVICE);
    assert.throws(() => dma_unmap_page(dev, addr, 3 * 4096, DMA_TO_DEVICE), errno("EINVAL"));
    assert.equal(iommu_iova_to_phys(domain, addr + 3 * 4096), 0, "no page of the block is left");
    assert.equal(dma_map_page(dev, buf, 0, 4 * 4096, DMA_TO_DEVICE), addr, "IOVA was freed");
  });
});

Deno.test("dma_map_page() with the IOVA space exhausted fails with ENOMEM and leaks nothing", () => {
  const { dev, pages } = setup();
  dma_set_mask(dev, 14); // pfns 1..3 only
  const page = pages.alloc(0);
  const got = [1, 2, 3].map(() => dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE));
  assert.deepEqual(got, [0x3000, 0x2000, 0x1000]);
  const before = pages.allocatedPages;
  assert.throws(() => dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE), errno("ENOMEM"));
  assert.equal(pages.allocatedPages, before);
  dma_unmap_page(dev, 0x2000, 4096, DMA_TO_DEVICE);
  assert.equal(dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE), 0x2000);
});

Deno.test("dma_map_page() with DMA_NONE fails with EINVAL", () => {
  const { dev, pages } = setup();
  assert.throws(() => dma_map_page(dev, pages.alloc(0), 0, 4096, 3), errno("EINVAL"));
});

Deno.test("dma_map_sg() maps the segments at consecutive IOVAs and dma_unmap_sg() undoes it", () => {
  const { sys, dev, domain, pages } = setup();
  const a = pages.alloc(0);
  const b = pages.alloc(1);
  const sg = [sg_init_one(a + 0x800, 0x800), sg_init_one(b, 0x2000), sg_init_one(a, 0x10)];
  assert.equal(dma_map_sg(dev, sg, DMA_TO_DEVICE), 3);
  for (const s of sg) {
    assert.equal(s.dmaLength, s.length);
    assert.equal(iommu_iova_to_phys(domain, s.dmaAddress), s.phys);
    assert.equal(iommu_iova_to_phys(domain, s.dmaAddress + s.length - 1), s.phys + s.length - 1);
  }
  assert.equal(sg[1].dmaAddress, sg[0].dmaAddress - 0x800 + 0x1000);
  assert.equal(sg[2].dmaAddress, sg[1].dmaAddress + 0x2000);
  const syncs = sys.drv.stats.iotlb_sync;
  dma_unmap_sg(dev, sg, DMA_TO_DEVICE);
  assert.equal(sys.drv.stats.iotlb_sync, syncs + 1);
  for (const s of sg) assert.equal(iommu_iova_to_phys(domain, s.dmaAddress), 0);
});

Deno.test("dma_map_sg() failing midway unmaps the segments already mapped", () => {
  const { dev, domain, pages } = setup();
  const a = pages.alloc(0);
  // A physical address beyond what the table can output makes the second segment fail.
  const sg = [sg_init_one(a, 0x1000), sg_init_one(2 ** 56, 0x1000)];
  assert.throws(() => dma_map_sg(dev, sg, DMA_TO_DEVICE), (e) => isErrno(e));
  assert.equal(sg[0].dmaAddress, 0);
  const again = dma_map_page(dev, a, 0, 4096, DMA_TO_DEVICE);
  assert.equal(iommu_iova_to_phys(domain, again), a);
});

Deno.test("dma_alloc_coherent() returns zeroed memory mapped read/write; dma_free_coherent() frees it", () => {
  const { sys, dev, domain, pages } = setup();
  const mem = dma_alloc_coherent(dev, 0x3000);
  const held = pages.allocatedPages;
  assert.equal(sys.kernel.mem.read32(mem.cpuAddr + 0x2ffc), 0);
  assert.equal(iommu_iova_to_phys(domain, mem.dmaAddr + 0x2fff), mem.cpuAddr + 0x2fff);
  assert.ok(mem.dmaAddr < 2 ** 32, "below the 32-bit default coherent mask");
  dma_free_coherent(dev, 0x3000, mem);
  assert.equal(iommu_iova_to_phys(domain, mem.dmaAddr), 0);
  assert.equal(pages.allocatedPages, held - 4, "the order-2 block went back");
  assert.ok(!pages.allocations().some((a) => a.phys === mem.cpuAddr));
});

Deno.test("a device with an identity default domain does DMA at physical addresses", () => {
  const { dev, pages } = setup({ core: { passthrough: true } });
  const page = pages.alloc(0);
  assert.equal(dma_map_page(dev, page, 8, 64, DMA_TO_DEVICE), page + 8);
});

Deno.test("iommu_get_dma_cookie() on a domain that has one fails with EEXIST; put frees it in the slab", () => {
  const sys = mockSystem();
  const domain = new IommuDomain(IOMMU_DOMAIN_DMA, {}, { pgsize_bitmap: 4096 });
  const base = sys.kernel.slab.allocatedObjects;
  iommu_get_dma_cookie(domain, sys.kernel);
  assert.equal(sys.kernel.slab.allocatedObjects, base + 1);
  assert.throws(() => iommu_get_dma_cookie(domain, sys.kernel), errno("EEXIST"));
  iommu_put_dma_cookie(domain);
  assert.equal(domain.iova_cookie, null);
  assert.equal(sys.kernel.slab.allocatedObjects, base);
  iommu_put_dma_cookie(domain); // nothing left to put
});

Deno.test("iommu_dma_init_domain() needs a cookie and page sizes (EINVAL) and an aperture above IOVA 0 (EFAULT)", async (t) => {
  const sys = mockSystem();
  const dev = sys.addDevice("dma0", 1);
  const dmaDomain = (geometry = {}, pgsize_bitmap = 4096) => {
    const d = new IommuDomain(IOMMU_DOMAIN_DMA, {}, { pgsize_bitmap, geometry });
    iommu_get_dma_cookie(d);
    return d;
  };
  await t.step("no cookie", () => {
    const d = new IommuDomain(IOMMU_DOMAIN_DMA, {}, { pgsize_bitmap: 4096 });
    assert.throws(() => iommu_dma_init_domain(d, dev), errno("EINVAL"));
  });
  await t.step("no page sizes", () => {
    assert.throws(() => iommu_dma_init_domain(dmaDomain({}, 0), dev), errno("EINVAL"));
  });
  await t.step("an aperture that ends before the first usable IOVA", () => {
    const d = dmaDomain({ aperture_start: 0, aperture_end: 0xfff });
    assert.throws(() => iommu_dma_init_domain(d, dev), errno("EFAULT"));
    assert.equal(d.iova_cookie!.iovad, null);
  });
  await t.step("a second device after the aperture changed", () => {
    const d = dmaDomain({ aperture_start: 0x1000, aperture_end: 0xffff_ffff });
    iommu_dma_init_domain(d, dev);
    d.geometry.aperture_start = 0x10_0000;
    assert.throws(() => iommu_dma_init_domain(d, dev), errno("EFAULT"));
    d.geometry.aperture_start = 0x1000;
    iommu_dma_init_domain(d, dev);
  });
});

/** An MSI vector of `dev`, as the MSI layer hands it to its controller. */
function msiDesc(dev: Device): MsiDesc {
  const msg = { addressLo: 0, addressHi: 0, data: 1 };
  return { dev, msiIndex: 0, irq: 0, msg, iommuMsiIova: 0, iommuMsiShift: 0 };
}

/** Records the prot of every map_pages call `domain` gets. */
function spyProt(domain: IommuDomain): number[] {
  const prots: number[] = [];
  const ops = domain.ops;
  (domain as { ops: IommuDomainOps }).ops = {
    ...ops,
    map_pages(d, iova, paddr, pgsize, pgcount, prot, mapped) {
      prots.push(prot);
      ops.map_pages!(d, iova, paddr, pgsize, pgcount, prot, mapped);
    },
  };
  return prots;
}

const IMSIC = 0x2800_0000;

Deno.test("iommu_dma_prepare_msi() maps a doorbell page once per DMA domain, write-only no-exec MMIO", async (t) => {
  const { sys, dev, domain } = setup();
  const prots = spyProt(domain);
  const cookie = domain.iova_cookie!;
  const first = msiDesc(dev);
  await t.step(
    "the first vector maps the page below the DMA mask; the message keeps the offset",
    () => {
      iommu_dma_prepare_msi(first, IMSIC + 4);
      assert.equal(first.iommuMsiShift, 12);
      assert.equal(first.iommuMsiIova % 4096, 0);
      assert.ok(first.iommuMsiIova < 2 ** dev.dmaMask);
      assert.equal(iommu_iova_to_phys(domain, first.iommuMsiIova + 4), IMSIC + 4);
      assert.deepEqual(prots, [IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO]);
      msi_msg_set_addr(first, first.msg, IMSIC + 4);
      assert.deepEqual(first.msg, { addressLo: first.iommuMsiIova + 4, addressHi: 0, data: 1 });
    },
  );
  await t.step("later vectors on the same page reuse the mapping", () => {
    const again = msiDesc(dev);
    iommu_dma_prepare_msi(again, IMSIC);
    assert.equal(again.iommuMsiIova, first.iommuMsiIova);
    assert.equal(prots.length, 1);
    assert.deepEqual(cookie.msiPages.map((p) => [p.phys, p.iova]), [[IMSIC, first.iommuMsiIova]]);
  });
  await t.step("another doorbell page gets its own mapping", () => {
    const other = msiDesc(dev);
    iommu_dma_prepare_msi(other, IMSIC + 0x1000);
    assert.notEqual(other.iommuMsiIova, first.iommuMsiIova);
    assert.equal(iommu_iova_to_phys(domain, other.iommuMsiIova), IMSIC + 0x1000);
    assert.equal(cookie.msiPages.length, 2);
  });
  await t.step("a device in another group maps the doorbell in its own domain", () => {
    const dev2 = sys.addDevice("dma1", 2);
    const domain2 = iommu_get_dma_domain(dev2)!;
    assert.notEqual(domain2, domain);
    iommu_dma_prepare_msi(msiDesc(dev2), IMSIC);
    assert.equal(domain2.iova_cookie!.msiPages.length, 1);
    assert.equal(cookie.msiPages.length, 2, "the first domain is untouched");
  });
});

Deno.test("iommu_dma_prepare_msi() follows the current domain: identity and no IOMMU stay physical, blocked/unmanaged are EOPNOTSUPP", async (t) => {
  const { sys, dev, domain } = setup();
  const physical = (d: MsiDesc) => {
    msi_msg_set_addr(d, d.msg, IMSIC + 4);
    return d.iommuMsiShift === 0 && d.msg.addressLo === IMSIC + 4 && d.msg.addressHi === 0;
  };
  await t.step("a device without an IOMMU", () => {
    const desc = msiDesc(new Device(sys.kernel, { name: "plain" }));
    iommu_dma_prepare_msi(desc, IMSIC + 4);
    assert.ok(physical(desc));
  });
  await t.step("an identity default domain (iommu.passthrough=1)", () => {
    const pt = setup({ core: { passthrough: true } });
    const desc = msiDesc(pt.dev);
    iommu_dma_prepare_msi(desc, IMSIC + 4);
    assert.ok(physical(desc));
  });
  await t.step("a device moved to the identity domain gets the physical doorbell", () => {
    iommu_attach_device(sys.drv.ops.identity_domain!, dev);
    const desc = msiDesc(dev);
    iommu_dma_prepare_msi(desc, IMSIC + 4);
    assert.ok(physical(desc));
    assert.equal(domain.iova_cookie!.msiPages.length, 0, "nothing mapped in the DMA domain");
    iommu_detach_device(sys.drv.ops.identity_domain!, dev);
  });
  await t.step("nothing maps the doorbell in a blocking domain", () => {
    iommu_attach_device(sys.drv.ops.blocked_domain!, dev);
    assert.throws(() => iommu_dma_prepare_msi(msiDesc(dev), IMSIC), errno("EOPNOTSUPP"));
    iommu_detach_device(sys.drv.ops.blocked_domain!, dev);
  });
  await t.step("an unmanaged domain has no MSI cookie", () => {
    const unmanaged = iommu_paging_domain_alloc(dev);
    iommu_attach_device(unmanaged, dev);
    assert.throws(() => iommu_dma_prepare_msi(msiDesc(dev), IMSIC), errno("EOPNOTSUPP"));
    iommu_detach_device(unmanaged, dev);
    iommu_domain_free(unmanaged);
  });
  await t.step("back in the DMA domain the doorbell is mapped there", () => {
    const desc = msiDesc(dev);
    iommu_dma_prepare_msi(desc, IMSIC + 4);
    assert.equal(iommu_iova_to_phys(domain, desc.iommuMsiIova + 4), IMSIC + 4);
  });
});

Deno.test("iommu_dma_prepare_msi() without IOVA space is ENOMEM; the MSI pages go with the domain", () => {
  const { sys, dev, domain, pages } = setup();
  const base = { pages: pages.allocatedPages, objects: sys.kernel.slab.allocatedObjects };
  dma_set_mask(dev, 14); // pfns 1..3 only
  const page = pages.alloc(0);
  const got = [1, 2, 3].map(() => dma_map_page(dev, page, 0, 4096, DMA_TO_DEVICE));
  const objects = sys.kernel.slab.allocatedObjects;
  assert.throws(() => iommu_dma_prepare_msi(msiDesc(dev), IMSIC), errno("ENOMEM"));
  assert.equal(domain.iova_cookie!.msiPages.length, 0);
  assert.equal(sys.kernel.slab.allocatedObjects, objects, "the MSI page record was freed");
  dma_unmap_page(dev, got[1], 4096, DMA_TO_DEVICE);
  const desc = msiDesc(dev);
  iommu_dma_prepare_msi(desc, IMSIC);
  assert.equal(desc.iommuMsiIova, got[1]);
  assert.equal(sys.kernel.slab.allocatedObjects, objects + 1);
  for (const iova of [got[0], got[2]]) dma_unmap_page(dev, iova, 4096, DMA_TO_DEVICE);
  pages.free(page, 0);
  device_del(dev); // the last device: its group, DMA domain, cookie and MSI page go
  assert.deepEqual(sys.kernel.slab.allocations(), [], "dev_iommu, group, domain, cookie");
  assert.equal(base.objects, 4);
  assert.equal(pages.allocatedPages, base.pages - 1, "the device context");
});
