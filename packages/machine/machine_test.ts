import assert from "node:assert/strict";
import { DmaEngine, PRG_RESPONSE_INVALID } from "@iommu-lab/hw";
import {
  APLIC_S_BASE,
  IMSIC_S_BASE,
  PCIE_ECAM_BASE,
  PCIE_MMIO_BASE,
  RISCV_IOMMU_HPMEVENT_URQ,
  RISCV_IOMMU_INTR_CQ,
  RISCV_IOMMU_INTR_FQ,
  RISCV_IOMMU_INTR_PM,
  RISCV_IOMMU_INTR_PQ,
  RISCV_IOMMU_REG_FCTL,
  RISCV_IOMMU_REG_ICVEC,
} from "@iommu-lab/hw/regs";
import {
  auxiliary_driver_register,
  type Device,
  DeviceTree,
  devm_auxiliary_device_create,
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
  dmaDirectOps,
  IOMMU_FWSPEC_PCI_RC_ATS,
  of_map_id,
  of_property_read_string_array,
  of_property_read_u32,
  of_property_read_u32_array,
  pci_enable_pri,
  platform_driver_register,
} from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_detach_device,
  iommu_domain_free,
  IOMMU_DOMAIN_IDENTITY,
  iommu_get_domain_for_dev,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  iommu_iova_to_phys,
  iommu_map,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
} from "@iommu-lab/iommu";
import {
  Machine,
  type MachinePart,
  riscvIommu,
  VIRT_DRAM_BASE,
  VIRT_IOMMU_SYS_BASE,
} from "./mod.ts";

Deno.test("the kernel boots from the blob the machine generates (platform IOMMU node)", () => {
  const m = Machine.boot({ iommuBus: "platform", ramSize: 2 ** 31 });
  const dt = DeviceTree.fromBlob(m.fdt);
  assert.deepEqual(dt.toBlob(), m.fdt, "a well-formed blob round-trips");
  assert.deepEqual(
    of_property_read_u32_array(dt.findNode("/memory@80000000")!, "reg"),
    [0, VIRT_DRAM_BASE, 0, 0x8000_0000],
  );
  const iommu = dt.findNode("/soc/iommu@3010000")!;
  const aplic = dt.findNode("/soc/interrupt-controller@d000000")!;
  const imsic = dt.findNode("/soc/interrupt-controller@28000000")!;
  assert.deepEqual(of_property_read_u32_array(iommu, "reg"), [0, VIRT_IOMMU_SYS_BASE, 0, 0x1000]);
  assert.equal(of_property_read_u32(iommu, "interrupt-parent"), aplic.phandle);
  assert.deepEqual(of_property_read_u32_array(iommu, "interrupts"), [36, 4, 37, 4, 38, 4, 39, 4]);
  assert.equal(of_property_read_u32(iommu, "msi-parent"), imsic.phandle);
  assert.equal(of_property_read_u32(iommu, "#iommu-cells"), 1);
  const pci = dt.findNode("/soc/pci@30000000")!;
  assert.equal(of_map_id(pci, 0x10, "iommu-map", "iommu-map-mask")?.np, iommu);
  assert.equal(of_map_id(pci, 0xffff, "iommu-map", "iommu-map-mask")?.id, 0xffff);
  assert.equal(pci.props.has("ats-supported"), true);
  // The kernel's platform devices are the tree's nodes.
  assert.equal(m.iommuDevice?.fwnode?.name, "iommu@3010000");
  assert.equal(m.kernel.deviceTree?.findNode("/soc/iommu@3010000"), m.iommuDevice?.fwnode);
});

Deno.test("interrupt-names name the vector the driver programs each cause on (binding: CIV 0, FIV 1, PIV 2, PMIV 3)", () => {
  const m = Machine.boot();
  const iommu = DeviceTree.fromBlob(m.fdt).findNode("/soc/iommu@3010000")!;
  const names = of_property_read_string_array(iommu, "interrupt-names");
  const icvec = m.silicon.iommu!.read64(RISCV_IOMMU_REG_ICVEC);
  const vec = (cause: number) => Number((icvec >> BigInt(4 * cause)) & 0xfn);
  assert.equal(names[vec(RISCV_IOMMU_INTR_CQ)], "cmdq");
  assert.equal(names[vec(RISCV_IOMMU_INTR_FQ)], "fltq");
  assert.equal(names[vec(RISCV_IOMMU_INTR_PQ)], "priq");
  assert.equal(names[vec(RISCV_IOMMU_INTR_PM)], "pm");
});

Deno.test("the PCIe host logs its ranges, ECAM and root bus before the engine, as Linux on QEMU virt", () => {
  const m = Machine.boot({ iommuBus: "platform" });
  const host = "pci-host-generic 30000000.pci:";
  const first = m.kernel.dmesg.grep(`${host} host bridge`)[0];
  const log = m.kernel.dmesg.records().map((r) => r.text);
  assert.deepEqual(log.slice(log.indexOf(first), log.indexOf(first) + 9), [
    `${host} host bridge /soc/pci@30000000 ranges:`,
    `${host}      MEM 0x0040000000..0x007fffffff -> 0x0040000000`,
    `${host} ECAM at [mem 0x30000000-0x3fffffff] for [bus 00-ff]`,
    `${host} PCI host bridge to bus 0000:00`,
    "pci_bus 0000:00: root bus resource [bus 00-ff]",
    "pci_bus 0000:00: root bus resource [mem 0x40000000-0x7fffffff]",
    "pci 0000:00:02.0: [1234:d3a0] type 00 class 0x080100",
    "pci 0000:00:02.0: BAR 0 [mem 0x40000000-0x40003fff 64bit]: assigned",
    "pci 0000:00:02.0: Adding to iommu group 0",
  ]);
});

Deno.test("with the IOMMU on PCI, iommu-map skips the IOMMU's own requester ID", () => {
  const m = Machine.boot({ iommuBus: "pci" });
  const dt = DeviceTree.fromBlob(m.fdt);
  assert.equal(dt.findNode("/soc/iommu@3010000"), undefined);
  const pci = dt.findNode("/soc/pci@30000000")!;
  const node = dt.findNode("/soc/pci@30000000/iommu@1")!;
  assert.equal(of_map_id(pci, 0x08, "iommu-map", "iommu-map-mask"), null, "00:01.0 itself");
  assert.deepEqual(of_map_id(pci, 0x10, "iommu-map", "iommu-map-mask"), { np: node, id: 0x10 });
  assert.deepEqual(of_map_id(pci, 0x07, "iommu-map", "iommu-map-mask"), { np: node, id: 0x07 });
  assert.equal(m.iommuDevice?.fwnode, m.kernel.deviceTree?.findNode("/soc/pci@30000000/iommu@1"));
  assert.equal(m.silicon.iommuPci?.fn.bdf, 0x08);
});

Deno.test("pciDomain: the host is PCI segment 0x0c, so the IOMMU sees device_id 0xc0010 for 000c:00:02.0 and DMA still translates", async (t) => {
  for (const iommuBus of ["platform", "pci"] as const) {
    await t.step(iommuBus, () => {
      const m = Machine.boot({ pciDomain: 0x0c, iommuBus });
      const pci = DeviceTree.fromBlob(m.fdt).findNode("/soc/pci@30000000")!;
      assert.equal(of_property_read_u32(pci, "linux,pci-domain"), 0x0c);
      assert.equal(of_map_id(pci, 0x10, "iommu-map", "iommu-map-mask")?.id, 0x0c_0010);
      const chan = m.dmaChannel(0);
      assert.equal(chan.dev.name, "000c:00:02.0");
      assert.deepEqual(chan.dev.fwspec?.ids, [0x0c_0010]);
      const seen: number[] = [];
      m.silicon.iommu!.translator.addEventObserver({
        count: (id, did) => void (id === RISCV_IOMMU_HPMEVENT_URQ && seen.push(did)),
      });
      const page = m.kernel.pages.alloc(1);
      m.kernel.mem.write32(page, 0x5eed_0c10);
      const iova = dma_map_page(chan.dev, page, 0, 8192, DMA_BIDIRECTIONAL);
      assert.equal(chan.memcpy(iova + 4096, iova, 4).status, "complete");
      assert.equal(m.kernel.mem.read32(page + 4096), 0x5eed_0c10);
      assert.ok(seen.length > 0 && seen.every((did) => did === 0x0c_0010), `${seen}`);
      dma_unmap_page(chan.dev, iova, 8192, DMA_BIDIRECTIONAL);
    });
  }
  assert.throws(() => Machine.boot({ pciDomain: 0x100 }), RangeError);
});

Deno.test("the memory map mirrors QEMU virt; 64 GiB of RAM costs only what is touched", () => {
  const m = Machine.boot({ ramSize: 64 * 2 ** 30 });
  const mmio = new Map(m.silicon.mem.mmio.map((r) => [r.name, r.base]));
  assert.equal(mmio.get("iommu"), 0x0301_0000);
  assert.equal(mmio.get("aplic"), APLIC_S_BASE);
  assert.equal(mmio.get("imsic"), IMSIC_S_BASE);
  assert.equal(mmio.get("pcie-ecam"), PCIE_ECAM_BASE);
  assert.equal(mmio.get("dma-engine BAR0"), PCIE_MMIO_BASE);
  assert.deepEqual(m.silicon.mem.ram.map((r) => [r.base, r.size]), [[
    VIRT_DRAM_BASE,
    64 * 2 ** 30,
  ]]);
  assert.equal(m.kernel.pages.totalPages, 16 * 2 ** 20);
  assert.ok(m.silicon.mem.touchedFrames < 1024, `${m.silicon.mem.touchedFrames} frames touched`);
});

Deno.test("a machine without an IOMMU: direct DMA on physical addresses", () => {
  const m = Machine.boot({ iommu: "none" });
  assert.equal(m.iommuDevice, null);
  assert.equal(m.silicon.iommu, null);
  assert.equal(
    DeviceTree.fromBlob(m.fdt).findNode("/soc/pci@30000000")!.props.has("iommu-map"),
    false,
  );
  const chan = m.dmaChannel(0);
  assert.equal(chan.dev.dma, dmaDirectOps);
  const buf = m.kernel.pages.alloc(0);
  const addr = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
  assert.equal(addr, buf);
  assert.equal(chan.memset(addr, 0xabab_abab, 4096).status, "complete");
  assert.equal(m.kernel.mem.read32(buf + 100), 0xabab_abab);
});

Deno.test("DMA engines with ATS, PASID and PRI: the kernel finds the capabilities", () => {
  const m = Machine.boot({ dmaAts: true, dmaPasid: true, dmaPri: true });
  const [dev] = m.dmaDevices;
  assert.notEqual(dev.atsCap, 0);
  assert.notEqual(dev.pasidCap, 0);
  assert.notEqual(dev.priCap, 0);
  assert.equal(Machine.boot({ dmaAts: true }).dmaDevices[0].priCap, 0);
  assert.equal(dev.fwspec!.flags & IOMMU_FWSPEC_PCI_RC_ATS, IOMMU_FWSPEC_PCI_RC_ATS);
  assert.equal(Machine.boot().dmaDevices[0].atsCap, 0);
});

Deno.test("the root complex takes the engine's page requests to the IOMMU and brings its answer back: EN_PRI=0 is Invalid Request and a TTYP 9 fault (spec §2.7)", () => {
  const m = Machine.boot({ dmaAts: true, dmaPri: true });
  pci_enable_pri(m.dmaDevices[0], 4);
  const fn = m.silicon.dmaEngines[0].fn;
  const codes: number[] = [];
  fn.pageRequestGroup([0x1000], true, false, -1, false, false, (c) => codes.push(c));
  assert.deepEqual(codes, [PRG_RESPONSE_INVALID]);
  m.run(1_000_000);
  assert.ok(m.dmesg.at(-1)!.endsWith("Fault 260 devid: 0x10 iotval: 4 iotval2: 0"));
});

Deno.test("several engines: channels dmaNchanM, one requester ID and group each", () => {
  const m = Machine.boot({ dmaEngines: 2, dmaChannels: 2 });
  assert.deepEqual(m.dmaChannels().map((c) => c.name), [
    "dma0chan0",
    "dma0chan1",
    "dma1chan0",
    "dma1chan1",
  ]);
  assert.deepEqual(m.dmaDevices.map((d) => d.fwspec?.ids), [[0x10], [0x18]]);
  assert.notEqual(m.dmaDevices[0].iommuGroup, m.dmaDevices[1].iommuGroup);
  assert.throws(() => m.dmaChannel(4), RangeError);
  assert.throws(() => Machine.boot({ dmaEngines: 31 }), RangeError);
});

Deno.test("iommu.passthrough=1: identity default domains, DMA at physical addresses", () => {
  const m = Machine.boot({ passthrough: true });
  const chan = m.dmaChannel(0);
  assert.equal(iommu_get_domain_for_dev(chan.dev)?.type, IOMMU_DOMAIN_IDENTITY);
  const buf = m.kernel.pages.alloc(0);
  assert.equal(dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL), buf);
  assert.equal(chan.memset(buf, 0x0102_0304, 4096).status, "complete");
  assert.equal(m.kernel.mem.read32(buf), 0x0102_0304);
});

Deno.test("PCI devices get 32-bit IOVAs first (pci_32bit_workaround) unless iommu.forcedac", () => {
  const page = (m: Machine) => {
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    m.kernel.mem.write32(buf, 0x5a5a_0001);
    assert.equal(chan.memcpy(iova + 2048, iova, 4).status, "complete");
    assert.equal(m.kernel.mem.read32(buf + 2048), 0x5a5a_0001);
    return iova;
  };
  const low = page(Machine.boot({}));
  assert.ok(low < 2 ** 32, `IOVA 0x${low.toString(16)} is below 4 GiB`);
  assert.ok(low >= 2 ** 31, "allocated top-down from the 32-bit limit");
  const high = page(Machine.boot({ forcedac: true }));
  assert.ok(high >= 2 ** 32, `forcedac IOVA 0x${high.toString(16)} is above 4 GiB`);

  // Once the 32-bit space is full, the device goes above 4 GiB and stops trying below.
  const m = Machine.boot({});
  const domain = iommu_get_domain_for_dev(m.dmaChannel(0).dev)!;
  const iovad = domain.iova_cookie!.iovad!;
  // The MSI doorbell took the top page below 4 GiB at probe; fill the rest.
  assert.equal(domain.iova_cookie!.msiPages[0].iova, 0xffff_f000);
  const below4g = iovad.allocIova(0xf_ffff - iovad.startPfn, 0xf_fffe, false)!;
  assert.ok(page(m) >= 2 ** 32, "falls back above 4 GiB when the 32-bit space is full");
  iovad.freeIova(below4g.pfnLo);
  assert.ok(page(m) >= 2 ** 32, "and does not try below 4 GiB again");
});

/** Where vector `n` of `dev` sends its MSI, as the kernel programmed it. */
function msiAddr(m: Machine, dev: Device, n: number): number {
  const msg = m.kernel.irq.msiDescs(dev)[n].msg;
  return msg.addressHi * 2 ** 32 + msg.addressLo;
}

Deno.test("endpoint MSIs go through the IOMMU: the doorbell is mapped in the DMA domain (iommu_dma_prepare_msi)", async (t) => {
  const m = Machine.boot({ trace: true });
  const chan = m.dmaChannel(0);
  const domain = iommu_get_domain_for_dev(chan.dev)!;
  const pages = domain.iova_cookie!.msiPages;
  await t.step("one doorbell page for every vector, mapped to the IMSIC", () => {
    assert.equal(pages.length, 1);
    assert.equal(pages[0].phys, IMSIC_S_BASE);
    assert.equal(iommu_iova_to_phys(domain, pages[0].iova), IMSIC_S_BASE);
    const n = m.kernel.irq.msiDescs(chan.dev).length;
    assert.equal(n, 4);
    for (let i = 0; i < n; i++) assert.equal(msiAddr(m, chan.dev, i), pages[0].iova);
  });
  const buf = m.kernel.pages.alloc(0);
  const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
  await t.step("the completion MSI is translated on its way to the IMSIC", () => {
    const from = m.trace.events.length;
    assert.equal(chan.memset(iova, 1, 4096).status, "complete");
    const events = m.trace.events.slice(from);
    const msi = events.findIndex((e) => e.cat === "msi");
    assert.ok(msi > 0, "the MSI reached the IMSIC");
    const before = events.slice(0, msi).filter((e) => e.cat === "walk" && e.ts === events[msi].ts);
    assert.deepEqual(before.map((e) => [e.name, e.args?.devid]), [
      ["IOTLB miss", 0x10],
      ["S/VS-stage walk", 0x10],
    ]);
  });
  await t.step("with the doorbell unmapped the MSI faults (cause 15 at its IOVA)", () => {
    assert.equal(iommu_unmap(domain, pages[0].iova, 4096), 4096);
    const tx = chan.memset(iova, 2, 4096);
    assert.equal(tx.status, "timeout", "the completion MSI never arrives");
    assert.equal(m.kernel.mem.read32(buf), 2, "the data moved");
    const line = `Fault 15 devid: 0x10 iotval: ${pages[0].iova.toString(16)} iotval2: 0`;
    assert.equal(m.kernel.dmesg.grep(line).length, 1);
  });
});

Deno.test("MSIs keep the physical doorbell around the IOMMU, in an identity domain and for the IOMMU itself", async (t) => {
  const delivered = (m: Machine) => {
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    assert.equal(chan.memset(iova, 1, 4096).status, "complete");
    return msiAddr(m, chan.dev, 0);
  };
  await t.step("msiThroughIommu: false (MSIs bypass translation; nothing is mapped)", () => {
    const m = Machine.boot({ msiThroughIommu: false });
    assert.equal(delivered(m), IMSIC_S_BASE);
    assert.deepEqual(iommu_get_domain_for_dev(m.dmaChannel(0).dev)!.iova_cookie!.msiPages, []);
  });
  await t.step("iommu.passthrough=1 (identity domain, MSIs translated 1:1)", () => {
    const m = Machine.boot({ passthrough: true });
    assert.equal(iommu_get_domain_for_dev(m.dmaChannel(0).dev)!.type, IOMMU_DOMAIN_IDENTITY);
    assert.equal(delivered(m), IMSIC_S_BASE);
  });
  for (const iommuBus of ["platform", "pci"] as const) {
    await t.step(`the IOMMU's own vectors (${iommuBus}): it is not behind itself`, () => {
      const m = Machine.boot({ iommuBus });
      const dev = m.iommuDevice!;
      assert.equal(dev.iommuGroup, null);
      const n = m.kernel.irq.msiDescs(dev).length;
      assert.ok(n > 0);
      for (let i = 0; i < n; i++) assert.equal(msiAddr(m, dev, i), IMSIC_S_BASE);
      assert.notEqual(delivered(m), IMSIC_S_BASE, "while the endpoint's are translated");
      // A fault reaches the driver through the fault queue's (physical) MSI.
      const chan = m.dmaChannel(0);
      assert.equal(chan.memset(0xdead_0000, 0, 64).status, "error");
      assert.equal(m.kernel.dmesg.grep("Fault 15 devid: 0x10 iotval: dead0000").length, 1);
    });
  }
});

Deno.test("the same options boot to the same state (deterministic)", () => {
  const run = () => {
    const m = Machine.boot({ iommuBus: "pci", dmaEngines: 2 });
    const chan = m.dmaChannel(3);
    const buf = m.kernel.pages.alloc(2);
    const iova = dma_map_page(chan.dev, buf, 0, 16384, DMA_BIDIRECTIONAL);
    chan.memcpy(iova + 8192, iova, 8192);
    return { dmesg: m.dmesg, now: m.silicon.clock.now(), iova };
  };
  assert.deepEqual(run(), run());
});

Deno.test("register accesses of the kernel cost costs.mmio, RAM accesses cpuCosts", async (t) => {
  const m = Machine.boot();
  const clock = m.silicon.clock;
  const { memAccess, memLine } = m.cpuCosts;
  assert.ok(memAccess > 0 && memLine > 0);
  const spent = (fn: () => void) => {
    const t0 = clock.now();
    fn();
    return clock.now() - t0;
  };
  await t.step("an MMIO register access costs costs.mmio", () => {
    const fctl = VIRT_IOMMU_SYS_BASE + RISCV_IOMMU_REG_FCTL;
    assert.equal(spent(() => m.silicon.mem.read32(fctl)), clock.costs.mmio);
  });
  await t.step("a word of RAM costs memAccess, whatever its width", () => {
    const pa = m.kernel.pages.alloc(0);
    assert.equal(spent(() => m.kernel.mem.read32(pa)), memAccess);
    assert.equal(spent(() => m.kernel.mem.store64(pa, 1, 2)), memAccess);
    assert.equal(spent(() => m.kernel.mem.read64(pa)), memAccess);
    assert.equal(m.kernel.mem.read32(pa + 4), 2, "the view writes through to the bus");
  });
  await t.step("a bulk access costs memLine per 64-byte line it touches", () => {
    const pa = m.kernel.pages.alloc(0);
    assert.equal(spent(() => m.kernel.mem.fill(pa, 4096, 0)), 64 * memLine);
    assert.equal(spent(() => m.kernel.mem.readBytes(pa + 60, 8)), 2 * memLine);
    assert.equal(spent(() => m.kernel.mem.writeBytes(pa + 64, new Uint8Array(64))), memLine);
    assert.equal(spent(() => m.kernel.mem.readBytes(pa, 0)), 0);
  });
  await t.step("the silicon's own accesses to RAM are not the CPU's", () => {
    assert.equal(spent(() => m.silicon.mem.read32(VIRT_DRAM_BASE)), 0);
  });
});

Deno.test("dma_map_page costs the CPU's PTE accesses; with cpuCosts zeroed it is free", () => {
  const mapTime = (cpuCosts?: { memAccess: number; memLine: number }) => {
    const m = Machine.boot({ cpuCosts });
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    // The first map allocates the page-table levels; time the steady state.
    const first = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    dma_unmap_page(chan.dev, first, 4096, DMA_BIDIRECTIONAL);
    const t0 = m.silicon.clock.now();
    dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    return { ns: m.silicon.clock.now() - t0, memAccess: m.cpuCosts.memAccess };
  };
  const { ns, memAccess } = mapTime();
  assert.ok(ns >= 2 * memAccess, `a map reads and writes PTEs: ${ns} ns`);
  assert.equal(ns % memAccess, 0, "nothing but RAM accesses");
  assert.equal(mapTime({ memAccess: 0, memLine: 0 }).ns, 0);
});

Deno.test("each probe pays cpuCosts.probe, so boot lines are stamped in probe order", () => {
  const probe = 1_000_000;
  const m = Machine.boot({ cpuCosts: { probe } });
  const at = (re: RegExp) => m.kernel.dmesg.records().find((r) => re.test(r.text))!.ns;
  const ns = m.kernel.dmesg.records().map((r) => r.ns);
  assert.deepEqual(ns, [...ns].sort((a, b) => a - b), "timestamps never go back");
  assert.equal(at(/^Machine model: /), 0);
  const imsic = at(/^riscv-imsic .*identities/);
  const aplic = at(/^riscv-aplic .*directly connected/);
  const iommu = at(/^riscv,iommu 3010000\.iommu: using MSIs$/);
  const dmae = at(/^iommu-lab-dmae 0000:00:02\.0: 4 channels/);
  assert.ok(imsic >= probe && imsic < 2 * probe, `${imsic}`);
  assert.ok(aplic >= imsic + probe && iommu >= aplic + probe && dmae >= iommu + probe);
  const free = Machine.boot({ cpuCosts: { probe: 0 } });
  // IMSIC, APLIC, IOMMU, PCIe host, DMA engine: five probes, nothing else differs.
  assert.equal(m.silicon.clock.now() - free.silicon.clock.now(), 5 * probe);
});

Deno.test("the command queue's work is priced: costs.command per entry the IOMMU ran", async (t) => {
  // A 16-entry queue wraps every 8 unmaps (IOTINVAL.VMA + IOFENCE.C each).
  const run = (command: number) => {
    const m = Machine.boot({ costs: { command }, iommuOptions: { maxLog2Sz: { cq: 4 } } });
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
      const t0 = m.silicon.clock.now();
      dma_unmap_page(chan.dev, iova, 4096, DMA_BIDIRECTIONAL);
      times.push(m.silicon.clock.now() - t0);
    }
    return times;
  };
  await t.step("an unmap runs two commands, across the queue's wrap too", () => {
    const free = run(0);
    const priced = run(1_000);
    assert.deepEqual(priced.map((ns, i) => ns - free[i]), Array(20).fill(2_000));
  });
});

Deno.test("a second-stage (iohgatp) domain end to end: the engine's DMA walks the Sv57x4 table", async (t) => {
  for (const iommuBus of ["platform", "pci"] as const) {
    await t.step(iommuBus, () => {
      const m = Machine.boot({ iommuBus, msiThroughIommu: false });
      const chan = m.dmaChannel(0);
      const s2 = iommu_paging_domain_alloc_flags(chan.dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
      iommu_attach_device(s2, chan.dev);
      const page = m.kernel.pages.alloc(1);
      m.kernel.mem.write32(page, 0xcafe_f00d);
      // A guest-physical address far above what a first-stage Sv39 lower half could hold.
      const gpa = 2 ** 45;
      iommu_map(s2, gpa, page, 8192, IOMMU_READ | IOMMU_WRITE);
      const tx = chan.memcpy(gpa + 4096, gpa, 4096);
      assert.equal(tx.status, "complete");
      assert.equal(m.kernel.mem.read32(page + 4096), 0xcafe_f00d);
      // Past the mapping, the write is a guest-page fault (cause 23) at the GPA.
      const bad = chan.memcpy(gpa + 8192, gpa, 4096);
      assert.equal(bad.status, "error");
      assert.equal(bad.errCause, 23);
      assert.equal(bad.errAddr, gpa + 8192);
      assert.equal(iommu_unmap(s2, gpa, 8192), 8192);
      const gone = chan.memcpy(gpa + 4096, gpa, 4096);
      assert.equal(gone.errCause, 21, "unmapped and invalidated: the read faults");
      iommu_detach_device(s2, chan.dev);
      iommu_domain_free(s2);
    });
  }
});

/**
 * A series as the machine sees it, shaped like the HPM one: a capability bit it needs, its
 * driver feature (which creates an auxiliary device on each IOMMU), the perf-like driver bound to
 * that device, and, for the sake of the test, extra hardware with its device-tree node and driver.
 */
function hpmLikePart(log: string[]): MachinePart {
  return {
    name: "hpm-like",
    caps: { nl: true },
    feature: {
      name: "hpm-like",
      missingCapability: (iommu) => (iommu.caps & 1n << 42n) !== 0n ? null : "capabilities.NL",
      probe: (iommu) => void devm_auxiliary_device_create(iommu.dev, "riscv_iommu", "hpm", {}, 0),
    },
    hardware(silicon) {
      silicon.rc.attach(new DmaEngine({ clock: silicon.clock, channels: 1 }).fn, 9);
    },
    deviceTree(dt) {
      dt.findNode("/soc")!.addChild("counter@10200000").set("compatible", "lab,counter")
        .set("reg", [0, 0x1020_0000, 0, 0x1000]);
    },
    drivers(kernel) {
      auxiliary_driver_register(kernel, {
        name: "riscv_iommu_hpm",
        idTable: [{ name: "riscv_iommu.hpm" }],
        probe: (adev) => void log.push(`aux ${adev.name}`),
      });
      platform_driver_register(kernel, {
        name: "lab-counter",
        ofMatchTable: [{ compatible: "lab,counter" }],
        probe: (pdev) => void log.push(`platform ${pdev.name}`),
      });
    },
  };
}

Deno.test("a machine part adds capabilities, hardware, device-tree nodes, a feature and drivers", () => {
  const log: string[] = [];
  const m = Machine.boot({ caps: { nl: false }, parts: [hpmLikePart(log)] });
  assert.deepEqual(log, ["aux riscv_iommu.hpm.0", "platform 10200000.counter"]);
  assert.deepEqual(m.driver!.features.map((f) => f.name), ["hpm-like"]);
  assert.equal(m.findDevice("0000:00:09.0")?.state, "bound", "the extra engine, on slot 9");
  assert.deepEqual(m.kernel.dmesg.grep("disabled"), []);
});

Deno.test("without the part, the same machine has none of it", () => {
  const log: string[] = [];
  const part = hpmLikePart(log);
  const m = Machine.boot({
    caps: { nl: false },
    iommu: riscvIommu({ features: [part.feature!] }),
  });
  assert.deepEqual(log, []);
  assert.equal(m.findDevice("0000:00:09.0"), undefined);
  assert.deepEqual(m.kernel.dmesg.grep("disabled"), [
    "riscv,iommu 3010000.iommu: hpm-like disabled: no capabilities.NL",
  ]);
});
