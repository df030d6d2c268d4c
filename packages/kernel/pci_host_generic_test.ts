import assert from "node:assert/strict";
import {
  DeviceTree,
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  Kernel,
  type MmioBackend,
  of_pci_get_ranges,
  of_platform_populate,
  PCI_DEVFN,
  pci_driver_init,
  pci_host_generic_driver,
  type PciDev,
  platform_bus_init,
  platform_driver_register,
} from "./mod.ts";
import { TestRam } from "./testing.ts";
import { bar, FakeCfg, fn, setup } from "./_pci_test_fixture.ts";

/** Boots pci-host-generic on virt.dtb's host bridge (ECAM at 0x30000000) over `cfg`. */
function ecamHost(cfg: FakeCfg, dt: DeviceTree): Kernel {
  const ecam: MmioBackend = {
    read32: (o) => cfg.read32(o >>> 20, (o >>> 12) & 0xff, o & 0xfff),
    write32: (o, v) => cfg.write32(o >>> 20, (o >>> 12) & 0xff, o & 0xfff, v),
    read64: () => 0n,
    write64: () => {},
  };
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 20),
    ioremap: (pa) => (pa === 0x3000_0000 ? { backend: ecam, offset: 0 } : null),
    initcalls: [platform_bus_init, pci_driver_init],
  });
  kernel.lateInitcall();
  platform_driver_register(kernel, pci_host_generic_driver);
  of_platform_populate(kernel, dt);
  return kernel;
}

function virtDt(): DeviceTree {
  return DeviceTree.fromBlob(Deno.readFileSync(new URL("./testdata/virt.dtb", import.meta.url)));
}

Deno.test("pci-host-ecam-generic: ECAM window from reg, windows from ranges, devices scanned", () => {
  const dt = virtDt();
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(3, 0), bar(fn(0x1234, 0x11), 0, 0x4000));
  const kernel = ecamHost(cfg, dt);
  assert.deepEqual(of_pci_get_ranges(dt.findNode("/soc/pci@30000000")!), [
    { pciAddr: 0, cpuAddr: 0x300_0000, size: 0x1_0000, flags: IORESOURCE_IO },
    { pciAddr: 0x4000_0000, cpuAddr: 0x4000_0000, size: 0x4000_0000, flags: IORESOURCE_MEM },
    {
      pciAddr: 0x4_0000_0000,
      cpuAddr: 0x4_0000_0000,
      size: 0x4_0000_0000,
      flags: IORESOURCE_MEM | IORESOURCE_MEM_64,
    },
  ]);
  const devs = kernel.buses.get("pci")!.devices as PciDev[];
  assert.deepEqual(devs.map((d) => d.name), ["0000:00:03.0"]);
  assert.equal(devs[0].resource[0]?.start, 0x4000_0000);
  assert.equal(devs[0].parent?.name, "30000000.pci");
});

Deno.test("pci-host-generic logs ranges, ECAM and root bus resources before the functions, each announced before its BAR (as Linux)", () => {
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(2, 0), bar(fn(0x1234, 0xd3a0, 0x088000), 0, 0x4000, true));
  cfg.fns.set(PCI_DEVFN(3, 0), bar(fn(0x1b36, 0x0014, 0x080600), 0, 0x1000));
  const kernel = ecamHost(cfg, virtDt());
  const host = "pci-host-generic 30000000.pci:";
  assert.deepEqual(kernel.dmesg.grep(/^(pci-host-generic|pci_bus|pci) /), [
    `${host} host bridge /soc/pci@30000000 ranges:`,
    `${host}       IO 0x0003000000..0x000300ffff -> 0x0000000000`,
    `${host}      MEM 0x0040000000..0x007fffffff -> 0x0040000000`,
    `${host}      MEM 0x0400000000..0x07ffffffff -> 0x0400000000`,
    `${host} ECAM at [mem 0x30000000-0x3fffffff] for [bus 00-ff]`,
    `${host} PCI host bridge to bus 0000:00`,
    "pci_bus 0000:00: root bus resource [bus 00-ff]",
    "pci_bus 0000:00: root bus resource [io  0x3000000-0x300ffff] (bus address [0x0000-0xffff])",
    "pci_bus 0000:00: root bus resource [mem 0x40000000-0x7fffffff]",
    "pci_bus 0000:00: root bus resource [mem 0x400000000-0x7ffffffff]",
    "pci 0000:00:02.0: [1234:d3a0] type 00 class 0x088000",
    "pci 0000:00:03.0: [1b36:0014] type 00 class 0x080600",
    "pci 0000:00:02.0: BAR 0 [mem 0x40000000-0x40003fff 64bit]: assigned",
    "pci 0000:00:03.0: BAR 0 [mem 0x40004000-0x40004fff]: assigned",
  ]);
});

Deno.test("pci-host-generic without bus-range says so and takes buses 00-ff", () => {
  const dt = virtDt();
  dt.findNode("/soc/pci@30000000")!.props.delete("bus-range");
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1234, 0xd3a0, 0x088000));
  const kernel = ecamHost(cfg, dt);
  assert.deepEqual(kernel.dmesg.grep(/bus range|bus 00-ff|type 00/), [
    "pci-host-generic 30000000.pci:   No bus range found for /soc/pci@30000000, using [bus 00-ff]",
    "pci-host-generic 30000000.pci: ECAM at [mem 0x30000000-0x3fffffff] for [bus 00-ff]",
    "pci_bus 0000:00: root bus resource [bus 00-ff]",
    "pci 0000:00:02.0: [1234:d3a0] type 00 class 0x088000",
  ]);
});

Deno.test("pci_host_probe() without a parent device logs the root bus with pr_info(); windows lose MEM_64 (as Linux)", () => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0008, 0x060000));
  probe();
  assert.deepEqual(kernel.dmesg.grep(/^(PCI host|pci_bus|pci) /), [
    "PCI host bridge to bus 0000:00",
    "pci_bus 0000:00: root bus resource [bus 00-ff]",
    "pci_bus 0000:00: root bus resource [mem 0x40000000-0x7fffffff]",
    "pci_bus 0000:00: root bus resource [mem 0x400000000-0x7ffffffff]",
    "pci 0000:00:01.0: [1b36:0008] type 00 class 0x060000",
  ]);
});
