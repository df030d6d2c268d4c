import assert from "node:assert/strict";
import {
  dev_info,
  Device,
  DeviceTree,
  devm_ioremap_resource,
  devm_platform_ioremap_resource,
  type DtNode,
  Errno,
  type FwNode,
  iommu_fwspec_add_ids,
  type IommuLayer,
  IORESOURCE_IRQ,
  IORESOURCE_MEM,
  irq_domain_create_linear,
  irq_domain_create_msi,
  Kernel,
  type MmioBackend,
  msi_get_virq,
  type MsiMsg,
  of_device_get_match_data,
  of_platform_populate,
  platform_bus_init,
  platform_device_alloc,
  platform_device_msi_init_and_alloc_irqs,
  platform_device_register,
  platform_driver_register,
  platform_get_irq,
  platform_get_irq_byname,
  platform_get_irq_optional,
  platform_get_resource,
  platform_get_resource_byname,
  platform_irq_count,
  type PlatformDevice,
  readl,
  to_platform_device,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

const virtBlob = Deno.readFileSync(new URL("./testdata/virt.dtb", import.meta.url));
const cellsBlob = Deno.readFileSync(new URL("./testdata/cells.dtb", import.meta.url));

function boot(blob: Uint8Array, opts: { domains?: boolean } = {}) {
  const dt = DeviceTree.fromBlob(blob);
  const regs = new Map<number, number>();
  const backend: MmioBackend = {
    read32: (o) => regs.get(o) ?? 0,
    write32: (o, v) => void regs.set(o, v),
    read64: () => 0n,
    write64: () => {},
  };
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 24),
    ioremap: (pa) => ({ backend, offset: pa }),
    initcalls: [platform_bus_init],
  });
  if (opts.domains ?? true) addDomains(kernel, dt);
  return { dt, kernel, regs };
}

function addDomains(kernel: Kernel, dt: DeviceTree): void {
  const aplic = dt.findNode("/soc/interrupt-controller@d000000");
  if (aplic) irq_domain_create_linear(kernel, aplic, 96);
  const imsic = dt.findNode("/soc/interrupt-controller@28000000");
  if (imsic) {
    irq_domain_create_msi(kernel, imsic, 255, {
      composeMsiMsg: (id) => ({ addressLo: 0x2800_0000, addressHi: 0, data: id }),
    });
  }
}

/** A stand-in IOMMU core: an IOMMU is "registered" once its driver's probe ran. */
class FakeIommuLayer implements IommuLayer {
  readonly registered = new Set<FwNode>();
  readonly probed: string[] = [];
  ofXlate(fwnode: FwNode) {
    return this.registered.has(fwnode)
      ? (dev: Parameters<typeof iommu_fwspec_add_ids>[0], args: readonly number[]) =>
        iommu_fwspec_add_ids(dev, args.slice(0, 1))
      : null;
  }
  probeDevice(dev: PlatformDevice): void {
    this.probed.push(dev.name);
    dev.iommu = { ids: dev.fwspec!.ids };
  }
  releaseDevice(dev: PlatformDevice): void {
    dev.iommu = null;
  }
  prepareMsi(): void {}
}

Deno.test("of_platform_populate(): one device per available compatible node, named like Linux", () => {
  const { kernel } = boot(virtBlob);
  const devs = of_platform_populate(kernel, DeviceTree.fromBlob(virtBlob));
  assert.deepEqual(devs.map((d) => d.name), [
    "soc",
    "28000000.interrupt-controller",
    "d000000.interrupt-controller",
    "10000000.serial",
    "3010000.iommu",
    "10100000.dma",
    "30000000.pci",
  ]);
  const iommu = devs[4];
  assert.deepEqual(iommu.resources, [
    { start: 0x301_0000, end: 0x301_0fff, flags: IORESOURCE_MEM, name: "" },
  ]);
  assert.equal(iommu.parent, devs[0]);
  assert.equal(iommu.platformName, "iommu");
  assert.equal(kernel.buses.get("platform")!.devices.length, 7);
});

Deno.test("of_platform_populate(): translated names and reg-names on the cells board", () => {
  const { kernel, dt } = boot(cellsBlob, { domains: false });
  const devs = of_platform_populate(kernel, dt);
  assert.deepEqual(devs.map((d) => d.name), [
    "1000.interrupt-controller",
    "bus@20000000",
    "20001000.iommu",
    "20002000.master",
    "bus@20000000:nested",
    "20004000.leaf",
    "40000000.pcie",
  ]);
  const master = devs[3];
  assert.equal(platform_get_resource_byname(master, IORESOURCE_MEM, "data")?.start, 0x2000_3000);
  assert.equal(platform_get_resource(master, IORESOURCE_MEM, 2), null);
});

Deno.test("platform drivers match by the most specific compatible and get its data", () => {
  const { kernel, dt } = boot(cellsBlob, { domains: false });
  kernel.lateInitcall(); // the master's IOMMU has no driver here: probe without one
  of_platform_populate(kernel, dt);
  let data: unknown;
  platform_driver_register(kernel, {
    name: "generic",
    ofMatchTable: [
      { compatible: "iommu-lab,generic", data: "generic" },
      { compatible: "iommu-lab,master", data: "master" },
    ],
    probe(pdev) {
      data = of_device_get_match_data(pdev);
      dev_info(pdev, "bound");
    },
  });
  assert.equal(data, "master");
  assert.deepEqual(kernel.dmesg.grep("bound"), ["generic 20002000.master: bound"]);
});

Deno.test("platform_get_irq(): wired interrupts resolve through the controller's irq domain", async (t) => {
  const { kernel, dt } = boot(virtBlob);
  const [iommu] = of_platform_populate(kernel, dt).filter((d) => d.name === "3010000.iommu");
  await t.step("count and per-index hwirqs", () => {
    assert.equal(platform_irq_count(iommu), 4);
    const hw = [0, 1, 2, 3].map((i) => kernel.irq.desc(platform_get_irq(iommu, i))!.hwirq);
    assert.deepEqual(hw, [36, 37, 38, 39]);
  });
  await t.step("by name", () => {
    assert.equal(platform_get_irq_byname(iommu, "fltq"), platform_get_irq(iommu, 1));
    assert.throws(() => platform_get_irq_byname(iommu, "nope"), { code: "ENXIO" });
  });
  await t.step("a missing index is ENXIO and logged as the kernel logs it", () => {
    assert.throws(() => platform_get_irq(iommu, 4), { code: "ENXIO" });
    assert.equal(
      kernel.dmesg.grep("not found").at(-1),
      "platform 3010000.iommu: IRQ index 4 not found",
    );
  });
});

Deno.test("platform_get_irq() defers until the interrupt controller's domain exists", () => {
  const { kernel, dt } = boot(virtBlob, { domains: false });
  const irqs: number[] = [];
  platform_driver_register(kernel, {
    name: "ns16550",
    ofMatchTable: [{ compatible: "ns16550a" }],
    probe: (pdev) => void irqs.push(platform_get_irq(pdev, 0)),
  });
  const serial = of_platform_populate(kernel, dt).find((d) => d.name === "10000000.serial")!;
  assert.equal(serial.state, "deferred");
  assert.match(serial.deferReason, /no irq domain/);
  addDomains(kernel, dt);
  assert.equal(serial.state, "bound");
  assert.equal(kernel.irq.desc(irqs[0])!.hwirq, 10);
});

Deno.test("devm_platform_ioremap_resource() maps reg 0 through the machine's ioremap", () => {
  const { kernel, dt, regs } = boot(virtBlob);
  regs.set(0x301_0000 + 0x10, 0x1234);
  let got = 0;
  platform_driver_register(kernel, {
    name: "riscv,iommu",
    ofMatchTable: [{ compatible: "riscv,iommu" }],
    probe: (pdev) => void (got = readl(devm_platform_ioremap_resource(pdev, 0), 0x10)),
  });
  of_platform_populate(kernel, dt);
  assert.equal(got, 0x1234);
});

Deno.test("platform MSIs: msi-parent gives the domain; the write callback gets each message", () => {
  const { kernel, dt } = boot(virtBlob);
  const iommu = of_platform_populate(kernel, dt).find((d) => d.name === "3010000.iommu")!;
  assert.equal(iommu.msiDomain?.fwnode, dt.findNode("/soc/interrupt-controller@28000000"));
  const msgs: [number, MsiMsg][] = [];
  platform_device_msi_init_and_alloc_irqs(iommu, 4, (d, m) => msgs.push([d.msiIndex, m]));
  assert.deepEqual(msgs.map(([i, m]) => [i, m.addressLo, m.data]), [
    [0, 0x2800_0000, 1],
    [1, 0x2800_0000, 2],
    [2, 0x2800_0000, 3],
    [3, 0x2800_0000, 4],
  ]);
  assert.ok(msi_get_virq(iommu, 3) > 0);
  const serial = kernel.buses.get("platform")!.devices.find((d) => d.name === "10000000.serial")!;
  assert.throws(() => platform_device_msi_init_and_alloc_irqs(serial, 1, () => {}), {
    code: "ENODEV",
  });
});

Deno.test("IOMMU ordering: a device with iommus defers until its IOMMU's driver registered", async (t) => {
  const { kernel, dt } = boot(virtBlob);
  const layer = new FakeIommuLayer();
  kernel.iommuLayer = layer;
  const order: string[] = [];
  platform_driver_register(kernel, {
    name: "dma-engine",
    ofMatchTable: [{ compatible: "iommu-lab,dma-engine" }],
    probe: (pdev) => void order.push(`dma ${pdev.fwspec?.ids}`),
  });
  const devs = of_platform_populate(kernel, dt);
  const dma = devs.find((d) => d.name === "10100000.dma")!;
  const iommuNode = dt.findNode("/soc/iommu@3010000") as DtNode;
  await t.step("before the IOMMU driver, the DMA engine waits", () => {
    assert.equal(dma.state, "deferred");
    assert.match(dma.deferReason, /has no driver yet/);
    assert.equal(dma.fwspec, null, "fwspec is freed on deferral");
  });
  await t.step("binding the IOMMU driver re-probes it with a fwspec from iommus", () => {
    platform_driver_register(kernel, {
      name: "riscv,iommu",
      ofMatchTable: [{ compatible: "riscv,iommu" }],
      probe(pdev) {
        order.push("iommu");
        layer.registered.add(pdev.ofNode!);
      },
    });
    assert.deepEqual(order, ["iommu", "dma 16"]);
    assert.equal(dma.fwspec?.fwnode, iommuNode);
    assert.deepEqual(dma.fwspec?.ids, [0x10]);
    assert.deepEqual(layer.probed, ["10100000.dma"]);
  });
});

Deno.test("late_initcall: with no IOMMU driver, devices behind it probe without an IOMMU", () => {
  const { kernel, dt } = boot(virtBlob);
  kernel.iommuLayer = new FakeIommuLayer();
  platform_driver_register(kernel, {
    name: "dma-engine",
    ofMatchTable: [{ compatible: "iommu-lab,dma-engine" }],
    probe() {},
  });
  const dma = of_platform_populate(kernel, dt).find((d) => d.name === "10100000.dma")!;
  assert.equal(dma.state, "deferred");
  kernel.lateInitcall();
  assert.equal(dma.state, "bound");
  assert.equal(dma.fwspec, null);
  assert.equal(dma.iommu, null);
});

Deno.test("code-registered platform devices: name.id, name match, IRQ resources", () => {
  const { kernel } = boot(virtBlob, { domains: false });
  const pdev = platform_device_alloc(kernel, {
    name: "dmatest",
    id: 0,
    resources: [{ start: 42, end: 42, flags: IORESOURCE_IRQ, name: "" }],
  });
  let irq = 0;
  platform_driver_register(kernel, {
    name: "dmatest",
    probe: (p) => void (irq = platform_get_irq(p, 0)),
  });
  platform_device_register(pdev);
  assert.equal(pdev.name, "dmatest.0");
  assert.equal(pdev.state, "bound");
  assert.equal(irq, 42);
  assert.throws(() => platform_get_irq(pdev, 1), (e) => e instanceof Errno && e.code === "ENXIO");
});

Deno.test("platform entry points: a missing IRQ is ENXIO (logged only by the non-optional call), a bad resource or device EINVAL", () => {
  const { kernel, dt } = boot(virtBlob);
  of_platform_populate(kernel, dt);
  const serial = kernel.buses.get("platform")!.devices.find((d) => d.name === "10000000.serial")!;
  const pdev = to_platform_device(serial);
  assert.ok(platform_get_irq_optional(pdev, 0) > 0);
  assert.throws(() => platform_get_irq_optional(pdev, 1), { code: "ENXIO" });
  assert.deepEqual(kernel.dmesg.grep("not found"), [], "the optional variant is quiet");
  assert.throws(() => platform_get_irq(pdev, 1), { code: "ENXIO" });
  assert.equal(kernel.dmesg.grep("IRQ index 1 not found").length, 1);
  assert.throws(() => platform_get_irq_byname(pdev, "nope"), { code: "ENXIO" });
  assert.throws(() => devm_ioremap_resource(pdev, null), { code: "EINVAL" });
  const irqRes = { start: 1, end: 1, flags: IORESOURCE_IRQ, name: "" };
  assert.throws(() => devm_ioremap_resource(pdev, irqRes), { code: "EINVAL" });
  assert.throws(() => devm_platform_ioremap_resource(pdev, 1), { code: "EINVAL" });
  const plain = new Device(kernel, { name: "plain" });
  assert.throws(() => to_platform_device(plain), { code: "EINVAL" });
});
