import assert from "node:assert/strict";
import {
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
  pci_dev_id,
  PCI_DEVFN,
} from "./mod.ts";
import * as R from "./pci_regs.ts";
import { bar, fn, MEM64, setup } from "./_pci_test_fixture.ts";

Deno.test("pci_host_probe(): scans slots, functions of multi-function devices only", () => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(0, 0), fn(0x1b36, 0x0008, 0x060000));
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014, 0x080600));
  cfg.fns.set(PCI_DEVFN(1, 1), fn(0xdead, 0xbeef)); // not scanned: 00:01.0 is single-function
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1af4, 0x1000, 0x020000, R.PCI_HEADER_TYPE_MFD));
  cfg.fns.set(PCI_DEVFN(2, 3), fn(0x1af4, 0x1001));
  const host = probe();
  assert.deepEqual(host.devices.map((d) => [d.name, d.vendor, d.device, d.classCode]), [
    ["0000:00:00.0", 0x1b36, 0x0008, 0x060000],
    ["0000:00:01.0", 0x1b36, 0x0014, 0x080600],
    ["0000:00:02.0", 0x1af4, 0x1000, 0x020000],
    ["0000:00:02.3", 0x1af4, 0x1001, 0xff0000],
  ]);
  assert.equal(pci_dev_id(host.devices[3]), 0x13);
  assert.equal(host.devices[1].revision, 1);
});

Deno.test("BARs are sized, assigned largest first, naturally aligned, in the right window", () => {
  const { cfg, kernel, probe } = setup([
    { cpuAddr: 0x4000_0000, pciAddr: 0x1000_0000, size: 0x10_0000, flags: IORESOURCE_MEM },
    { ...MEM64, flags: MEM64.flags | IORESOURCE_PREFETCH },
  ]);
  const a = bar(bar(fn(1, 1), 0, 0x1000), 2, 0x2_0000_0000, true, true);
  const b = bar(bar(fn(1, 2), 0, 0x100), 1, 0x8000);
  const c = bar(fn(1, 3), 0, 0x20_0000); // too big for the 32-bit window
  cfg.fns.set(PCI_DEVFN(1, 0), a);
  cfg.fns.set(PCI_DEVFN(2, 0), b);
  cfg.fns.set(PCI_DEVFN(3, 0), c);
  const [da, db, dc] = probe().devices;
  assert.deepEqual(da.resource[2], {
    start: 0x4_0000_0000,
    end: 0x4_0000_0000 + 0x2_0000_0000 - 1,
    flags: IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_PREFETCH,
    name: "0000:00:01.0",
  });
  assert.equal(da.resource[3], null, "upper half of a 64-bit BAR");
  // 32-bit window: 0x8000 first, then 0x1000, then 0x100; CPU address = PCI + 0x3000_0000
  assert.equal(db.resource[1]?.start, 0x4000_0000);
  assert.equal(da.resource[0]?.start, 0x4000_8000);
  assert.equal(db.resource[0]?.start, 0x4000_9000);
  assert.equal(a.read(R.PCI_BASE_ADDRESS_0) & ~0xf, 0x1000_8000, "BAR holds the PCI address");
  assert.equal(a.read(R.PCI_BASE_ADDRESS_0 + 12), 0x4, "upper dword of the 64-bit BAR");
  assert.equal(dc.resource[0], null);
  assert.ok(
    kernel.dmesg.grep("assigned").includes(
      "pci 0000:00:01.0: BAR 2 [mem 0x400000000-0x5ffffffff 64bit pref]: assigned",
    ),
  );
  assert.deepEqual(kernel.dmesg.grep("no space"), [
    "pci 0000:00:03.0: BAR 0 [mem size 0x00200000]: can't assign; no space",
  ]);
});
