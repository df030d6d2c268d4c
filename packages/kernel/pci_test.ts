import assert from "node:assert/strict";
import {
  dev_is_pci,
  Device,
  device_attach,
  device_release_driver,
  DeviceTree,
  Errno,
  type FwNode,
  generic_handle_domain_irq,
  iommu_fwspec_add_ids,
  IOMMU_FWSPEC_PCI_RC_ATS,
  type IommuLayer,
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
  irq_domain_create_msi,
  IRQ_HANDLED,
  Kernel,
  type MmioBackend,
  MmioRecorder,
  msi_get_virq,
  of_pci_get_ranges,
  of_platform_populate,
  pci_alloc_irq_vectors,
  PCI_ANY_ID,
  pci_ats_page_aligned,
  pci_ats_queue_depth,
  pci_ats_supported,
  pci_dev_id,
  PCI_DEVFN,
  pci_disable_ats,
  pci_disable_pasid,
  pci_disable_pri,
  pci_enable_ats,
  pci_enable_device,
  pci_enable_pasid,
  pci_enable_pri,
  pci_find_capability,
  pci_find_ext_capability,
  pci_free_irq_vectors,
  pci_host_generic_driver,
  pci_host_probe,
  pci_iomap,
  PCI_IRQ_MSI,
  PCI_IRQ_MSIX,
  pci_irq_vector,
  pci_max_pasids,
  pci_msi_vec_count,
  pci_msix_vec_count,
  pci_pasid_features,
  pci_prg_resp_pasid_required,
  pci_pri_supported,
  pci_read_config_byte,
  pci_read_config_dword,
  pci_read_config_word,
  pci_register_driver,
  pci_reset_pri,
  pci_set_master,
  pci_write_config_byte,
  pci_write_config_dword,
  pci_write_config_word,
  type PciConfigAccessor,
  type PciDev,
  type PciHostWindow,
  pcim_enable_device,
  platform_driver_register,
  request_irq,
  to_pci_dev,
} from "./mod.ts";
import * as R from "./pci_regs.ts";
import { TestRam } from "./testing.ts";

/** One function's configuration space: values, writable bits and RW1C bits per dword. */
class FakeFn {
  readonly v = new Uint32Array(1024);
  readonly wmask = new Uint32Array(1024);
  readonly w1c = new Uint32Array(1024);
  read(off: number): number {
    return this.v[off >> 2];
  }
  write(off: number, x: number): void {
    const i = off >> 2;
    this.v[i] = ((this.v[i] & ~this.wmask[i]) | (x & this.wmask[i]) & ~this.w1c[i]) >>> 0;
    this.v[i] = (this.v[i] & ~(x & this.w1c[i])) >>> 0;
  }
  set(off: number, bits: number, value: number, wmask = 0, w1c = 0): this {
    const i = off >> 2;
    const sh = (off & 3) * 8;
    const m = (bits === 32 ? 0xffff_ffff : ((1 << bits) - 1)) << sh;
    this.v[i] = ((this.v[i] & ~m) | ((value << sh) & m)) >>> 0;
    this.wmask[i] = ((this.wmask[i] & ~m) | ((wmask << sh) & m)) >>> 0;
    this.w1c[i] = ((this.w1c[i] & ~m) | ((w1c << sh) & m)) >>> 0;
    return this;
  }
}

function fn(vendor: number, device: number, classCode = 0xff0000, hdr = 0): FakeFn {
  return new FakeFn()
    .set(0, 16, vendor).set(2, 16, device)
    .set(R.PCI_COMMAND, 16, 0, 0x0407)
    .set(R.PCI_STATUS, 16, 0, 0, 0xf900)
    .set(R.PCI_CLASS_REVISION, 32, (classCode << 8 | 1) >>> 0)
    .set(R.PCI_HEADER_TYPE, 8, hdr);
}

/** A memory BAR of `size` bytes; 64-bit BARs take the next dword too. */
function bar(f: FakeFn, i: number, size: number, is64 = false, pref = false): FakeFn {
  const reg = R.PCI_BASE_ADDRESS_0 + i * 4;
  const attrs = (is64 ? R.PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
    (pref ? R.PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
  f.set(reg, 32, attrs, (~(Math.min(size, 2 ** 32) - 1) & ~0xf) >>> 0);
  if (is64) f.set(reg + 4, 32, 0, size > 2 ** 32 ? (~(size / 2 ** 32 - 1)) >>> 0 : 0xffff_ffff);
  return f;
}

/** Standard capabilities at 0x40 (PCIe), 0x50 (MSI-X, table in BAR 0 at 0x800), 0x60 (MSI). */
function caps(f: FakeFn, opts: { msix?: number; msi?: number; ext?: boolean }): FakeFn {
  f.set(R.PCI_STATUS, 16, R.PCI_STATUS_CAP_LIST, 0, 0xf900).set(R.PCI_CAPABILITY_LIST, 8, 0x40);
  f.set(0x40, 8, R.PCI_CAP_ID_EXP).set(0x41, 8, opts.msix ? 0x50 : opts.msi ? 0x60 : 0);
  if (opts.msix) {
    f.set(0x50, 8, R.PCI_CAP_ID_MSIX).set(0x51, 8, opts.msi ? 0x60 : 0);
    f.set(0x52, 16, opts.msix - 1, 0xc000);
    f.set(0x54, 32, 0x800); // BIR 0, offset 0x800
  }
  if (opts.msi) {
    f.set(0x60, 8, R.PCI_CAP_ID_MSI).set(0x61, 8, 0);
    const qmask = Math.log2(opts.msi) << 1;
    f.set(0x62, 16, qmask | R.PCI_MSI_FLAGS_64BIT | R.PCI_MSI_FLAGS_MASKBIT, 0x0071);
    f.set(0x64, 32, 0, 0xffff_fffc).set(0x68, 32, 0, 0xffff_ffff).set(0x6c, 16, 0, 0xffff);
    f.set(0x70, 32, 0, 0xffff_ffff);
  }
  if (opts.ext) {
    f.set(0x100, 32, (0x110 << 20 | 1 << 16 | R.PCI_EXT_CAP_ID_ATS) >>> 0);
    f.set(0x104, 16, 0x20 | 8).set(0x106, 16, 0, 0x801f);
    f.set(0x110, 32, (0x120 << 20 | 1 << 16 | R.PCI_EXT_CAP_ID_PRI) >>> 0);
    f.set(0x114, 16, 0, 0x3).set(
      0x116,
      16,
      R.PCI_PRI_STATUS_STOPPED | R.PCI_PRI_STATUS_PASID | 1,
      0,
      0x3,
    );
    f.set(0x118, 32, 32).set(0x11c, 32, 0, 0xffff_ffff);
    f.set(0x120, 32, (1 << 16 | R.PCI_EXT_CAP_ID_PASID) >>> 0);
    f.set(0x124, 16, 20 << 8 | R.PCI_PASID_CAP_EXEC, 0).set(0x126, 16, 0, 0x7);
  }
  return f;
}

class FakeCfg implements PciConfigAccessor {
  readonly fns = new Map<number, FakeFn>();
  read32(bus: number, devfn: number, where: number): number {
    return bus === 0 ? this.fns.get(devfn)?.read(where) ?? 0xffff_ffff : 0xffff_ffff;
  }
  write32(bus: number, devfn: number, where: number, value: number): void {
    if (bus === 0) this.fns.get(devfn)?.write(where, value);
  }
}

class Regs implements MmioBackend {
  readonly m = new Map<number, number>();
  read32(o: number): number {
    return this.m.get(o) ?? 0;
  }
  write32(o: number, v: number): void {
    this.m.set(o, v >>> 0);
  }
  read64(): bigint {
    return 0n;
  }
  write64(): void {}
}

const MEM32: PciHostWindow = {
  cpuAddr: 0x4000_0000,
  pciAddr: 0x4000_0000,
  size: 0x4000_0000,
  flags: IORESOURCE_MEM,
};
const MEM64: PciHostWindow = {
  cpuAddr: 0x4_0000_0000,
  pciAddr: 0x4_0000_0000,
  size: 0x4_0000_0000,
  flags: IORESOURCE_MEM | IORESOURCE_MEM_64,
};

function setup(windows: PciHostWindow[] = [MEM32, MEM64]) {
  const cfg = new FakeCfg();
  const bars = new MmioRecorder(new Regs());
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 24),
    ioremap: (pa) => (pa >= 0x4000_0000 ? { backend: bars, offset: pa } : null),
  });
  const imsic = irq_domain_create_msi(kernel, { name: "imsic" }, 63, {
    composeMsiMsg: (id) => ({ addressLo: 0x2800_0000, addressHi: 0, data: id }),
  });
  const probe = () => pci_host_probe(kernel, { accessor: cfg, windows, msiDomain: imsic });
  return { cfg, bars, kernel, imsic, probe };
}

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

Deno.test("capability walks: standard list, extended list, loops end", () => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(bar(fn(1, 1), 0, 0x1000), { msix: 8, msi: 4, ext: true }));
  cfg.fns.set(PCI_DEVFN(2, 0), caps(fn(1, 2), {}).set(0x41, 8, 0x40)); // points at itself
  const [d, loop] = probe().devices;
  assert.deepEqual(
    [d.msixCap, d.msiCap, d.atsCap, d.priCap, d.pasidCap],
    [0x50, 0x60, 0x100, 0x110, 0x120],
  );
  assert.equal(pci_find_capability(d, R.PCI_CAP_ID_EXP), 0x40);
  assert.equal(pci_find_capability(loop, R.PCI_CAP_ID_MSIX), 0);
  assert.equal(pci_find_ext_capability(loop, R.PCI_EXT_CAP_ID_ATS), 0);
});

Deno.test("PCI drivers match by vendor/device ID table and get the matching entry", () => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014, 0x080600));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1efd, 0x0008, 0x080600));
  cfg.fns.set(PCI_DEVFN(3, 0), fn(0x1234, 0x0001, 0x010802));
  const seen: [string, unknown][] = [];
  pci_register_driver(kernel, {
    name: "riscv-iommu-pci",
    idTable: [
      { vendor: 0x1b36, device: 0x0014, data: "redhat" },
      { vendor: 0x1efd, device: 0x0008, data: "rivos" },
    ],
    probe: (pdev, id) => void seen.push([pdev.name, id.data]),
  });
  pci_register_driver(kernel, {
    name: "nvme",
    idTable: [{ vendor: 0xffff_ffff, device: 0xffff_ffff, class: 0x010802, classMask: 0xffffff }],
    probe: (pdev, id) => void seen.push([pdev.name, id.class]),
  });
  probe();
  assert.deepEqual(seen, [["0000:00:01.0", "redhat"], ["0000:00:02.0", "rivos"], [
    "0000:00:03.0",
    0x010802,
  ]]);
});

Deno.test("pci_enable_device()/pci_set_master() set COMMAND bits without clearing RW1C status", () => {
  const { cfg, probe } = setup();
  const f = bar(fn(1, 1), 0, 0x1000).set(R.PCI_STATUS, 16, 0x8000, 0, 0xf900); // a latched error
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  const [d] = probe().devices;
  pci_enable_device(d);
  pci_set_master(d);
  assert.equal(pci_read_config_word(d, R.PCI_COMMAND), R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER);
  assert.equal(pci_read_config_word(d, R.PCI_STATUS), 0x8000, "status error bit survived");
  pci_write_config_word(d, R.PCI_STATUS, 0x8000);
  assert.equal(pci_read_config_word(d, R.PCI_STATUS), 0, "writing 1 clears it");
});

Deno.test("ATS: pci_enable_ats() programs STU and enable; rules as in drivers/pci/ats.c", async (t) => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(fn(1, 1), { ext: true }));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(1, 2));
  const [d, plain] = probe().devices;
  await t.step("enable with 4 KiB pages", () => {
    pci_enable_ats(d, 12);
    assert.equal(pci_read_config_word(d, d.atsCap + R.PCI_ATS_CTRL), R.PCI_ATS_CTRL_ENABLE);
    assert.ok(d.atsEnabled);
    assert.equal(d.atsStu, 12);
    assert.equal(pci_ats_queue_depth(d), 8);
  });
  await t.step("enabling twice is EBUSY; disable clears the bit; disabling twice is EINVAL", () => {
    assert.throws(() => pci_enable_ats(d, 12), { code: "EBUSY" });
    pci_disable_ats(d);
    assert.equal(pci_read_config_word(d, d.atsCap + R.PCI_ATS_CTRL), 0);
    assert.throws(() => pci_disable_ats(d), { code: "EINVAL" });
  });
  await t.step("STU below 4 KiB or no ATS capability is EINVAL", () => {
    assert.throws(() => pci_enable_ats(d, 11), { code: "EINVAL" });
    assert.throws(() => pci_enable_ats(plain, 12), { code: "EINVAL" });
    pci_enable_ats(d, 16);
    assert.equal(pci_read_config_word(d, d.atsCap + R.PCI_ATS_CTRL), R.PCI_ATS_CTRL_ENABLE | 4);
  });
});

Deno.test("PRI: enable allocates min(capacity, reqs); reset only while disabled; RW1C status kept", () => {
  const { cfg, probe } = setup();
  const f = caps(fn(1, 1), { ext: true });
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  const [d] = probe().devices;
  assert.ok(pci_prg_resp_pasid_required(d));
  pci_enable_pri(d, 64);
  assert.equal(d.priReqsAlloc, 32);
  assert.equal(f.read(0x11c), 32);
  assert.equal(pci_read_config_word(d, d.priCap + R.PCI_PRI_CTRL), R.PCI_PRI_CTRL_ENABLE);
  assert.equal(
    pci_read_config_word(d, d.priCap + R.PCI_PRI_STATUS) & 1,
    1,
    "RF (RW1C) survived the ctrl write",
  );
  assert.throws(() => pci_enable_pri(d, 1), { code: "EBUSY" });
  assert.throws(() => pci_reset_pri(d), { code: "EBUSY" });
  pci_disable_pri(d);
  pci_reset_pri(d);
  assert.equal(pci_read_config_word(d, d.priCap + R.PCI_PRI_CTRL), R.PCI_PRI_CTRL_RESET);
  f.set(0x116, 16, 0, 0, 0x3); // not stopped
  assert.throws(() => pci_enable_pri(d, 1), { code: "EBUSY" });
});

Deno.test("PASID: features must be supported; width gives the PASID count", () => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(fn(1, 1), { ext: true }));
  const [d] = probe().devices;
  assert.equal(pci_max_pasids(d), 1 << 20);
  assert.throws(() => pci_enable_pasid(d, R.PCI_PASID_CAP_PRIV), { code: "EINVAL" });
  pci_enable_pasid(d, R.PCI_PASID_CAP_EXEC);
  assert.equal(
    pci_read_config_word(d, d.pasidCap + R.PCI_PASID_CTRL),
    R.PCI_PASID_CTRL_ENABLE | R.PCI_PASID_CAP_EXEC,
  );
  assert.throws(() => pci_enable_pasid(d, 0), { code: "EBUSY" });
});

Deno.test("MSI-X: pci_alloc_irq_vectors() programs the table in the BAR through MMIO", async (t) => {
  const { cfg, bars, kernel, imsic, probe } = setup();
  const f = caps(bar(fn(1, 1), 0, 0x1000), { msix: 8, msi: 4 });
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  const [d] = probe().devices;
  const table = d.resource[0]!.start + 0x800;
  bars.clear();
  await t.step("four vectors: addr lo/hi, data per entry; MASKALL dropped at the end", () => {
    assert.equal(pci_alloc_irq_vectors(d, 1, 4, PCI_IRQ_MSIX | PCI_IRQ_MSI), 4);
    const expect: [number, number][] = [];
    for (let i = 0; i < 4; i++) {
      const e = table + i * 16;
      expect.push([e + 12, 1], [e, 0x2800_0000], [e + 4, 0], [e + 8, i + 1]);
    }
    assert.deepEqual(bars.writes(), expect);
    assert.equal(pci_read_config_word(d, 0x52), R.PCI_MSIX_FLAGS_ENABLE | 7);
    assert.ok(d.msixEnabled);
    assert.equal(d.irq, pci_irq_vector(d, 0));
    assert.throws(() => pci_irq_vector(d, 4), { code: "EINVAL" });
  });
  await t.step("request_irq() unmasks the entry; the MSI identity reaches the handler", () => {
    bars.clear();
    let got = 0;
    const irq = pci_irq_vector(d, 2);
    request_irq(kernel, irq, (n) => (got = n, IRQ_HANDLED), 0, "v2", d);
    assert.deepEqual(bars.writes(), [[table + 2 * 16 + 12, 0]]);
    generic_handle_domain_irq(imsic, 3);
    assert.equal(got, irq);
    assert.throws(() => pci_free_irq_vectors(d), { code: "EBUSY" });
    kernel.irq.desc(irq)!.actions.length = 0;
  });
  await t.step("pci_free_irq_vectors() disables MSI-X", () => {
    pci_free_irq_vectors(d);
    assert.equal(pci_read_config_word(d, 0x52) & R.PCI_MSIX_FLAGS_ENABLE, 0);
    assert.equal(d.irq, 0);
  });
  await t.step("more than the table holds is capped; min above it is ENOSPC", () => {
    assert.equal(pci_alloc_irq_vectors(d, 1, 32, PCI_IRQ_MSIX), 8);
    pci_free_irq_vectors(d);
    assert.throws(() => pci_alloc_irq_vectors(d, 9, 9, PCI_IRQ_MSIX), { code: "ENOSPC" });
  });
});

Deno.test("pcim_enable_device() makes pci_alloc_irq_vectors() managed: vectors freed at unbind or failed probe", async (t) => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(bar(fn(1, 1), 0, 0x1000), { msix: 8 }));
  cfg.fns.set(PCI_DEVFN(2, 0), caps(bar(fn(1, 2), 0, 0x1000), { msix: 8 }));
  let fail = true;
  pci_register_driver(kernel, {
    name: "managed",
    idTable: [{ vendor: 1, device: 1 }],
    probe(pdev) {
      pcim_enable_device(pdev);
      pci_alloc_irq_vectors(pdev, 1, 4, PCI_IRQ_MSIX);
      if (fail) throw new Errno("EIO", "later probe step");
    },
  });
  pci_register_driver(kernel, {
    name: "unmanaged",
    idTable: [{ vendor: 1, device: 2 }],
    probe(pdev) {
      pci_enable_device(pdev);
      pci_alloc_irq_vectors(pdev, 1, 4, PCI_IRQ_MSIX);
    },
  });
  const [managed, plain] = probe().devices;
  await t.step("a failed probe leaves no vector and MSI-X off", () => {
    assert.equal(managed.state, "unbound");
    assert.equal(managed.msixEnabled, false);
    assert.equal(msi_get_virq(managed, 0), 0);
    assert.equal(managed.isManaged, false, "devres undid pcim_enable_device");
  });
  await t.step("unbinding a managed driver frees them, and a rebind can allocate again", () => {
    fail = false;
    assert.equal(device_attach(managed), true);
    assert.equal(managed.msixEnabled, true);
    device_release_driver(managed);
    assert.equal(managed.msixEnabled, false);
    assert.equal(msi_get_virq(managed, 0), 0);
    assert.equal(device_attach(managed), true);
    pci_free_irq_vectors(managed); // a driver freeing them itself is fine too
    device_release_driver(managed);
    assert.equal(managed.msixEnabled, false);
  });
  await t.step("without pcim_enable_device() the vectors stay with the device", () => {
    device_release_driver(plain);
    assert.equal(plain.msixEnabled, true);
    pci_free_irq_vectors(plain);
  });
});

Deno.test("MSI: multi-message needs a power of two and aligned identities", () => {
  const { cfg, probe } = setup();
  const f = caps(fn(1, 1), { msi: 4 });
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  cfg.fns.set(PCI_DEVFN(2, 0), fn(1, 2));
  const [d, none] = probe().devices;
  assert.equal(pci_alloc_irq_vectors(d, 1, 3, PCI_IRQ_MSIX | PCI_IRQ_MSI), 2);
  assert.ok(d.msiEnabled);
  assert.equal(f.read(0x64), 0x2800_0000);
  assert.equal(f.read(0x6c) & 0xffff, 2, "base identity 2: aligned to the 2-vector block");
  assert.equal(pci_read_config_word(d, 0x62) & 0x71, 1 << 4 | 1, "MME = log2(2), enabled");
  assert.throws(() => pci_alloc_irq_vectors(none, 1, 1, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
    code: "ENOSPC",
  });
});

Deno.test("pci_alloc_irq_vectors() falls back from MSI-X to MSI when MSI-X is too small or fails (as Linux)", async (t) => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(bar(fn(1, 1), 0, 0x1000), { msix: 2, msi: 4 }));
  // BAR 0 ends where the MSI-X table would start, so enabling MSI-X fails.
  cfg.fns.set(PCI_DEVFN(2, 0), caps(bar(fn(1, 2), 0, 0x800), { msix: 8, msi: 4 }));
  cfg.fns.set(PCI_DEVFN(3, 0), caps(bar(fn(1, 3), 0, 0x800), { msix: 8 }));
  const [small, broken, only] = probe().devices;
  await t.step("MSI-X offers fewer than min: MSI gives them", () => {
    assert.equal(pci_alloc_irq_vectors(small, 4, 4, PCI_IRQ_MSIX | PCI_IRQ_MSI), 4);
    assert.ok(small.msiEnabled && !small.msixEnabled);
    assert.equal(small.irq, pci_irq_vector(small, 0));
  });
  await t.step("MSI-X fails: MSI is tried and MSI-X is left disabled", () => {
    assert.equal(pci_alloc_irq_vectors(broken, 1, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), 4);
    assert.ok(broken.msiEnabled && !broken.msixEnabled);
    assert.equal(pci_read_config_word(broken, 0x52) & R.PCI_MSIX_FLAGS_ENABLE, 0);
  });
  await t.step("fewer than min from MSI too: ENOSPC, nothing enabled", () => {
    assert.throws(() => pci_alloc_irq_vectors(small, 8, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
      code: "EINVAL", // already enabled
    });
    pci_free_irq_vectors(small);
    assert.throws(() => pci_alloc_irq_vectors(small, 8, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
      code: "ENOSPC",
    });
    assert.ok(!small.msiEnabled && !small.msixEnabled);
    assert.equal(msi_get_virq(small, 0), 0);
  });
  await t.step("MSI-X fails and there is no MSI: its error is returned", () => {
    assert.throws(() => pci_alloc_irq_vectors(only, 1, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
      code: "EINVAL",
    });
    assert.ok(!only.msixEnabled);
    assert.equal(msi_get_virq(only, 0), 0);
  });
});

Deno.test("pci dma_configure: iommu-map gives the fwspec; the excluded RID gets no IOMMU", () => {
  const dt = DeviceTree.fromBlob(
    Deno.readFileSync(new URL("./testdata/virt.dtb", import.meta.url)),
  );
  const pciNode = dt.findNode("/soc/pci@30000000")!;
  const iommuNode = dt.findNode("/soc/iommu@3010000")!;
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const layer: IommuLayer = {
    ofXlate: (n: FwNode) => n === iommuNode ? (dev, args) => iommu_fwspec_add_ids(dev, args) : null,
    probeDevice: (dev) => void (dev.iommu = "probed"),
    releaseDevice() {},
    prepareMsi() {},
  };
  kernel.iommuLayer = layer;
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1234, 0x0001));
  pci_register_driver(kernel, {
    name: "any",
    idTable: [{ vendor: PCI_ANY_ID, device: PCI_ANY_ID }],
    probe() {},
  });
  const host = pci_host_probe(kernel, { accessor: cfg, ofNode: pciNode });
  const [iommuFn, ep] = host.devices;
  assert.equal(iommuFn.fwspec, null);
  assert.equal(iommuFn.state, "bound");
  assert.deepEqual(ep.fwspec?.ids, [0x10]);
  assert.equal(ep.fwspec?.fwnode, iommuNode);
  assert.equal(ep.fwspec!.flags & IOMMU_FWSPEC_PCI_RC_ATS, IOMMU_FWSPEC_PCI_RC_ATS);
  assert.equal(ep.iommu, "probed");
});

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
  const devs = kernel.pciBus.devices as PciDev[];
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

Deno.test("a PCI function gets the DT child node whose reg names its devfn (the PCI IOMMU's node)", () => {
  const dt = new DeviceTree();
  const host = dt.root.addChild("pci@30000000").set("#address-cells", [3]).set("#size-cells", [2]);
  const node = host.addChild("iommu@1,0").set("reg", [PCI_DEVFN(1, 0) << 8, 0, 0, 0, 0]);
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1b36, 0x0001));
  const [a, b] = pci_host_probe(kernel, { accessor: cfg, ofNode: host }).devices;
  assert.equal(a.ofNode, node);
  assert.equal(a.fwnode, node);
  assert.equal(b.ofNode, null);
});

Deno.test("PCI entry points reject what the function lacks or is not doing (EINVAL) and bad config offsets (EFAULT)", async (t) => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(fn(1, 1), {})); // no BAR, no MSI/MSI-X, no extended caps
  cfg.fns.set(PCI_DEVFN(2, 0), caps(fn(1, 2), { ext: true }));
  const [bare, full] = probe().devices;
  const einval = (what: string, f: () => unknown) =>
    assert.throws(f, { code: "EINVAL" }, `${what} should be EINVAL`);
  await t.step("a capability the function does not have", () => {
    einval("ATS queue depth", () => pci_ats_queue_depth(bare));
    einval("enable ATS", () => pci_enable_ats(bare, 12));
    einval("enable PRI", () => pci_enable_pri(bare, 1));
    einval("reset PRI", () => pci_reset_pri(bare));
    einval("enable PASID", () => pci_enable_pasid(bare, 0));
    einval("PASID features", () => pci_pasid_features(bare));
    einval("max PASIDs", () => pci_max_pasids(bare));
    einval("MSI-X count", () => pci_msix_vec_count(bare));
    einval("MSI count", () => pci_msi_vec_count(bare));
    assert.deepEqual(
      [pci_ats_supported(bare), pci_pri_supported(bare), pci_ats_page_aligned(bare)],
      [false, false, false],
    );
    assert.equal(pci_prg_resp_pasid_required(bare), false);
    assert.deepEqual([pci_ats_supported(full), pci_pri_supported(full)], [true, true]);
  });
  await t.step("disabling what is not enabled (C WARNs)", () => {
    einval("disable ATS", () => pci_disable_ats(full));
    einval("disable PRI", () => pci_disable_pri(full));
    einval("disable PASID", () => pci_disable_pasid(full));
    pci_enable_pasid(full, R.PCI_PASID_CAP_EXEC);
    assert.equal(pci_pasid_features(full), R.PCI_PASID_CAP_EXEC);
    pci_disable_pasid(full);
    assert.equal(pci_read_config_word(full, full.pasidCap + R.PCI_PASID_CTRL), 0);
    einval("disable PASID twice", () => pci_disable_pasid(full));
  });
  await t.step("BARs, vectors and device types", () => {
    einval("iomap of a missing BAR", () => pci_iomap(bare, 0));
    einval("iomap past the last BAR", () => pci_iomap(bare, 6));
    einval("vector range 0..1", () => pci_alloc_irq_vectors(bare, 0, 1, PCI_IRQ_MSIX));
    einval("vector range 2..1", () => pci_alloc_irq_vectors(bare, 2, 1, PCI_IRQ_MSIX));
    assert.throws(() => pci_alloc_irq_vectors(bare, 1, 1, PCI_IRQ_MSIX), { code: "ENOSPC" });
    einval("an unallocated vector", () => pci_irq_vector(bare, 0));
    const plain = new Device(kernel, { name: "plain" });
    assert.equal(dev_is_pci(plain), false);
    einval("to_pci_dev of a non-PCI device", () => to_pci_dev(plain));
    assert.equal(to_pci_dev(full), full);
  });
  await t.step(
    "config offsets outside 4 KiB or unaligned are EFAULT (PCIBIOS_BAD_REGISTER_NUMBER)",
    () => {
      const bad: [string, () => unknown][] = [
        ["dword at 2", () => pci_read_config_dword(full, 2)],
        ["word at 1", () => pci_read_config_word(full, 1)],
        ["byte at 0x1000", () => pci_read_config_byte(full, 0x1000)],
        ["dword at -4", () => pci_read_config_dword(full, -4)],
        ["word write at 0xfff", () => pci_write_config_word(full, 0xfff, 0)],
        ["dword write at 0x1000", () => pci_write_config_dword(full, 0x1000, 0)],
        ["byte write at 1.5", () => pci_write_config_byte(full, 1.5, 0)],
      ];
      for (const [what, f] of bad) assert.throws(f, { code: "EFAULT" }, what);
      assert.equal(pci_read_config_dword(full, 0), 2 << 16 | 1);
      assert.equal(pci_read_config_byte(full, 0xfff), 0);
    },
  );
});
