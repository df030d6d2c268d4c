// The configuration-space fixture of the PCI tests: fake functions with writable and RW1C bits,
// BARs and capabilities, a config accessor over them, and a kernel with an MSI domain.
import {
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  irq_domain_create_msi,
  Kernel,
  type MmioBackend,
  MmioRecorder,
  pci_driver_init,
  pci_host_probe,
  type PciConfigAccessor,
  type PciHostWindow,
} from "./mod.ts";
import * as R from "./pci_regs.ts";
import { TestRam } from "./testing.ts";

/** One function's configuration space: values, writable bits and RW1C bits per dword. */
export class FakeFn {
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

export function fn(vendor: number, device: number, classCode = 0xff0000, hdr = 0): FakeFn {
  return new FakeFn()
    .set(0, 16, vendor).set(2, 16, device)
    .set(R.PCI_COMMAND, 16, 0, 0x0407)
    .set(R.PCI_STATUS, 16, 0, 0, 0xf900)
    .set(R.PCI_CLASS_REVISION, 32, (classCode << 8 | 1) >>> 0)
    .set(R.PCI_HEADER_TYPE, 8, hdr);
}

/** A memory BAR of `size` bytes; 64-bit BARs take the next dword too. */
export function bar(f: FakeFn, i: number, size: number, is64 = false, pref = false): FakeFn {
  const reg = R.PCI_BASE_ADDRESS_0 + i * 4;
  const attrs = (is64 ? R.PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
    (pref ? R.PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
  f.set(reg, 32, attrs, (~(Math.min(size, 2 ** 32) - 1) & ~0xf) >>> 0);
  if (is64) f.set(reg + 4, 32, 0, size > 2 ** 32 ? (~(size / 2 ** 32 - 1)) >>> 0 : 0xffff_ffff);
  return f;
}

/** Standard capabilities at 0x40 (PCIe), 0x50 (MSI-X, table in BAR 0 at 0x800), 0x60 (MSI). */
export function caps(f: FakeFn, opts: { msix?: number; msi?: number; ext?: boolean }): FakeFn {
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

export class FakeCfg implements PciConfigAccessor {
  readonly fns = new Map<number, FakeFn>();
  read32(bus: number, devfn: number, where: number): number {
    return bus === 0 ? this.fns.get(devfn)?.read(where) ?? 0xffff_ffff : 0xffff_ffff;
  }
  write32(bus: number, devfn: number, where: number, value: number): void {
    if (bus === 0) this.fns.get(devfn)?.write(where, value);
  }
}

export class Regs implements MmioBackend {
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

export const MEM32: PciHostWindow = {
  cpuAddr: 0x4000_0000,
  pciAddr: 0x4000_0000,
  size: 0x4000_0000,
  flags: IORESOURCE_MEM,
};
export const MEM64: PciHostWindow = {
  cpuAddr: 0x4_0000_0000,
  pciAddr: 0x4_0000_0000,
  size: 0x4_0000_0000,
  flags: IORESOURCE_MEM | IORESOURCE_MEM_64,
};

export function setup(windows: PciHostWindow[] = [MEM32, MEM64]) {
  const cfg = new FakeCfg();
  const bars = new MmioRecorder(new Regs());
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 24),
    ioremap: (pa) => (pa >= 0x4000_0000 ? { backend: bars, offset: pa } : null),
    initcalls: [pci_driver_init],
  });
  const imsic = irq_domain_create_msi(kernel, { name: "imsic" }, 63, {
    composeMsiMsg: (id) => ({ addressLo: 0x2800_0000, addressHi: 0, data: id }),
  });
  const probe = () => pci_host_probe(kernel, { accessor: cfg, windows, msiDomain: imsic });
  return { cfg, bars, kernel, imsic, probe };
}
