/**
 * Enumeration: scans the root bus of a host bridge, sizes and assigns BARs from its windows and
 * adds a {@linkcode PciDev} per function, logging as Linux does. Mirrors drivers/pci/probe.c
 * (pci_host_probe(), pci_setup_device(), pci_register_host_bridge()) and the BAR assignment of
 * drivers/pci/setup-bus.c. The root bus only: type-1 headers (bridges) are added as devices but
 * not scanned behind.
 *
 * @module
 */
import { device_add, device_del } from "./device.ts";
import { dev_set_msi_domain } from "./irq.ts";
import type { Kernel } from "./kernel.ts";
import {
  PCI_DEVFN,
  pci_find_capability,
  pci_find_ext_capability,
  pci_read_config_dword,
  PCI_STD_NUM_BARS,
  pci_write_config_dword,
  PciDev,
  PciHostBridge,
  type PciHostBridgeOptions,
  type PciHostWindow,
} from "./pci.ts";
import * as R from "./pci_regs.ts";
import { dev_info, pr_info } from "./printk.ts";
import {
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
} from "./resource.ts";
import { bus_range_string, hex, resource_string } from "./vsprintf.ts";

/** Sizes BAR `i` (write all-ones, read back, restore); returns its resource flags and size. */
function _sizeBar(pdev: PciDev, i: number): { size: number; flags: number; is64: boolean } | null {
  const reg = R.PCI_BASE_ADDRESS_0 + i * 4;
  const orig = pci_read_config_dword(pdev, reg);
  pci_write_config_dword(pdev, reg, 0xffff_ffff);
  const lo = pci_read_config_dword(pdev, reg);
  pci_write_config_dword(pdev, reg, orig);
  if (lo === 0 || lo === 0xffff_ffff && orig === 0xffff_ffff) return null;
  if (lo & R.PCI_BASE_ADDRESS_SPACE_IO) {
    const mask = (lo & ~3) >>> 0;
    return { size: ((~mask & 0xffff) + 1) >>> 0, flags: IORESOURCE_IO, is64: false };
  }
  const is64 = (lo & R.PCI_BASE_ADDRESS_MEM_TYPE_MASK) === R.PCI_BASE_ADDRESS_MEM_TYPE_64;
  let hiMask = 0xffff_ffff;
  if (is64 && i < 5) {
    const origHi = pci_read_config_dword(pdev, reg + 4);
    pci_write_config_dword(pdev, reg + 4, 0xffff_ffff);
    hiMask = pci_read_config_dword(pdev, reg + 4);
    pci_write_config_dword(pdev, reg + 4, origHi);
  }
  const loMask = (lo & ~0xf) >>> 0;
  // the size is the two's complement of the 64-bit mask, taken half by half
  const size = (is64 ? (~hiMask >>> 0) * 4294967296 : 0) + (~loMask >>> 0) + 1;
  const flags = IORESOURCE_MEM | (is64 ? IORESOURCE_MEM_64 : 0) |
    (lo & R.PCI_BASE_ADDRESS_MEM_PREFETCH ? IORESOURCE_PREFETCH : 0);
  return { size, flags, is64 };
}

/**
 * Picks the window for a BAR: one of its kind that has room, below 4 GiB for a 32-bit BAR;
 * 64-bit prefetchable BARs prefer a 64-bit window, the others a non-prefetchable one.
 */
function _window(host: PciHostBridge, flags: number, size: number): number {
  const kind = flags & (IORESOURCE_IO | IORESOURCE_MEM);
  const pref = (flags & IORESOURCE_MEM_64) !== 0 && (flags & IORESOURCE_PREFETCH) !== 0;
  const score = (w: PciHostWindow) =>
    pref
      ? Number((w.flags & IORESOURCE_MEM_64) !== 0)
      : Number((w.flags & IORESOURCE_PREFETCH) === 0);
  const fits = (i: number) => {
    const w = host.windows[i];
    return Math.ceil(host._next[i] / size) * size + size <= w.pciAddr + w.size;
  };
  return host.windows.map((w, i) => ({ w, i }))
    .filter(({ w }) =>
      (w.flags & kind) !== 0 &&
      ((flags & IORESOURCE_MEM_64) !== 0 || w.pciAddr + w.size <= 4294967296)
    )
    .sort((a, b) => score(b.w) - score(a.w))
    .find(({ i }) => fits(i))?.i ?? -1;
}

/** Sizes every BAR of the functions, then assigns them largest first, naturally aligned. */
function _assignBars(host: PciHostBridge, devs: PciDev[]): void {
  const bars: { pdev: PciDev; i: number; size: number; flags: number; is64: boolean }[] = [];
  for (const pdev of devs) {
    if (pdev.hdrType !== R.PCI_HEADER_TYPE_NORMAL) continue;
    for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
      const b = _sizeBar(pdev, i);
      if (b === null) continue;
      bars.push({ pdev, i, ...b });
      if (b.is64) i++;
    }
  }
  bars.sort((a, b) => b.size - a.size);
  for (const b of bars) {
    const wi = _window(host, b.flags, b.size);
    const kind = b.flags & IORESOURCE_IO ? "io" : "mem";
    if (wi < 0) {
      dev_info(
        b.pdev,
        `BAR ${b.i} [${kind} size ${hex(b.size, 8)}]: can't assign; no space`,
      );
      continue;
    }
    const w = host.windows[wi];
    const pci = Math.ceil(host._next[wi] / b.size) * b.size;
    host._next[wi] = pci + b.size;
    const reg = R.PCI_BASE_ADDRESS_0 + b.i * 4;
    pci_write_config_dword(b.pdev, reg, pci % 4294967296);
    if (b.is64) pci_write_config_dword(b.pdev, reg + 4, Math.floor(pci / 4294967296));
    const start = w.cpuAddr + (pci - w.pciAddr);
    const end = start + b.size - 1;
    b.pdev.resource[b.i] = { start, end, flags: b.flags, name: b.pdev.name };
    dev_info(b.pdev, `BAR ${b.i} ${resource_string(start, end, b.flags)}: assigned`);
  }
}

function _scanDevice(host: PciHostBridge, busNr: number, devfn: number): PciDev | null {
  const id = host.accessor.read32(busNr, devfn, R.PCI_VENDOR_ID) >>> 0;
  if (id === 0xffff_ffff || id === 0 || (id & 0xffff) === 0xffff) return null;
  const hdr = (host.accessor.read32(busNr, devfn, R.PCI_HEADER_TYPE & ~3) >>> 16) & 0xff;
  const pdev = new PciDev(host, busNr, devfn, {
    vendor: id & 0xffff,
    device: id >>> 16,
    classRev: host.accessor.read32(busNr, devfn, R.PCI_CLASS_REVISION) >>> 0,
    hdrType: hdr,
    subsys: (hdr & R.PCI_HEADER_TYPE_MASK) === R.PCI_HEADER_TYPE_NORMAL
      ? host.accessor.read32(busNr, devfn, R.PCI_SUBSYSTEM_VENDOR_ID) >>> 0
      : 0,
  });
  // As pci_setup_device() announces each function when it reads its header.
  dev_info(
    pdev,
    `[${hex(pdev.vendor, 4, "")}:${hex(pdev.device, 4, "")}] type ${
      hex(pdev.hdrType, 2, "")
    } class ${hex(pdev.classCode, 6)}`,
  );
  pdev.msiCap = pci_find_capability(pdev, R.PCI_CAP_ID_MSI);
  pdev.msixCap = pci_find_capability(pdev, R.PCI_CAP_ID_MSIX);
  const exp = pci_find_capability(pdev, R.PCI_CAP_ID_EXP);
  if (exp !== 0) {
    pdev._rw1c.add(exp + R.PCI_EXP_DEVSTA);
    pdev.atsCap = pci_find_ext_capability(pdev, R.PCI_EXT_CAP_ID_ATS);
    pdev.priCap = pci_find_ext_capability(pdev, R.PCI_EXT_CAP_ID_PRI);
    pdev.pasidCap = pci_find_ext_capability(pdev, R.PCI_EXT_CAP_ID_PASID);
    if (pdev.priCap !== 0) pdev._rw1c.add(pdev.priCap + R.PCI_PRI_STATUS);
  }
  dev_set_msi_domain(pdev, host.msiDomain);
  return pdev;
}

/**
 * Mirrors pci_host_probe(): scans bus 0 of a new host bridge, assigns BARs, and adds each
 * function to the PCI bus (binding drivers). Returns the bridge.
 *
 * @example Enumerating one function from a fake configuration space
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel, PCI_DEVFN, pci_driver_init, pci_host_probe } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), initcalls: [pci_driver_init] });
 * const cfg = new Map<number, number>([[0, 0x0014_1b36], [8, 0x0806_0000]]);
 * const host = pci_host_probe(kernel, {
 *   accessor: {
 *     read32: (bus, devfn, where) => bus === 0 && devfn === PCI_DEVFN(1, 0) ? cfg.get(where) ?? 0 : 0xffff_ffff,
 *     write32: () => {},
 *   },
 * });
 * assert.deepEqual(host.devices.map((d) => [d.name, d.vendor, d.device]), [["0000:00:01.0", 0x1b36, 0x14]]);
 * ```
 */
export function pci_host_probe(kernel: Kernel, opts: PciHostBridgeOptions): PciHostBridge {
  const host = new PciHostBridge(kernel, opts.parent ?? null, opts);
  const busNr = host.busRange[0];
  _registerHostBridge(host);
  const found: PciDev[] = [];
  for (let slot = 0; slot < 32; slot++) {
    const f0 = _scanDevice(host, busNr, PCI_DEVFN(slot, 0));
    if (f0 === null) continue;
    found.push(f0);
    const mfd = (opts.accessor.read32(busNr, PCI_DEVFN(slot, 0), R.PCI_HEADER_TYPE & ~3) >>> 16) &
      R.PCI_HEADER_TYPE_MFD;
    for (let fn = 1; mfd && fn < 8; fn++) {
      const f = _scanDevice(host, busNr, PCI_DEVFN(slot, fn));
      if (f !== null) found.push(f);
    }
  }
  _assignBars(host, found);
  kernel.core.run(() => {
    for (const pdev of found) {
      host.devices.push(pdev);
      device_add(pdev);
    }
  });
  return host;
}

/** Mirrors the log of pci_register_host_bridge(): the root bus and the resources it decodes. */
function _registerHostBridge(host: PciHostBridge): void {
  const bus = `${hex(host.domain, 4, "")}:${hex(host.busRange[0], 2, "")}`;
  const msg = `PCI host bridge to bus ${bus}`;
  if (host.parent !== null) dev_info(host.parent, msg);
  else pr_info(host.kernel, msg);
  pr_info(host.kernel, `pci_bus ${bus}: root bus resource ${bus_range_string(host.busRange)}`);
  for (const w of host.windows) {
    const end = w.cpuAddr + w.size - 1;
    // devm_of_pci_get_host_bridge_resources() drops MEM_64 from windows: a BAR's property.
    const res = resource_string(w.cpuAddr, end, w.flags & ~IORESOURCE_MEM_64);
    const wd = w.flags & IORESOURCE_IO ? 4 : 8;
    const offset = w.cpuAddr === w.pciAddr
      ? ""
      : ` (bus address [${hex(w.pciAddr, wd)}-${hex(w.pciAddr + w.size - 1, wd)}])`;
    pr_info(host.kernel, `pci_bus ${bus}: root bus resource ${res}${offset}`);
  }
}

/** Mirrors pci_remove_root_bus(): deletes every function of the bridge. */
export function pci_remove_root_bus(host: PciHostBridge): void {
  host.kernel.core.run(() => {
    for (const pdev of host.devices.splice(0).reverse()) device_del(pdev);
  });
}
