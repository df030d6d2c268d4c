/**
 * The PCI bus: a host bridge enumerates configuration space through a
 * {@linkcode PciConfigAccessor} (ECAM or a test's), sizes and assigns BARs from the bridge's
 * memory windows, walks capability lists, and adds a {@linkcode PciDev} per function. Drivers
 * match by vendor/device ID; ATS, PRI, PASID and MSI/MSI-X are driven as Linux drives them.
 *
 * The root bus only: type-1 headers (bridges) are added as devices but not scanned behind.
 *
 * @module
 */
import {
  type BusType,
  Device,
  device_add,
  device_del,
  devm_add_action,
  type Driver,
  driver_register,
  driver_unregister,
} from "./device.ts";
import { Errno } from "./errno.ts";
import type { DtNode } from "./fdt.ts";
import { type IoMem, ioremap, readl, writel } from "./io.ts";
import {
  dev_set_msi_domain,
  irq_find_matching_fwnode,
  type IrqDomain,
  msi_domain_alloc_irqs,
  msi_domain_free_irqs_all,
  msi_get_virq,
  type MsiDesc,
  type MsiMsg,
} from "./irq.ts";
import type { Kernel } from "./kernel.ts";
import {
  of_n_addr_cells,
  of_parse_phandle_with_args,
  of_property_read_u32,
  of_property_read_u32_array,
  of_read_number,
  of_translate_address,
} from "./of.ts";
import { of_iommu_configure } from "./of_iommu.ts";
import * as R from "./pci_regs.ts";
import type { PlatformDevice, PlatformDriver } from "./platform.ts";
import { dev_info, pr_info } from "./printk.ts";
import {
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
  type Resource,
  resource_size,
} from "./resource.ts";

/** PCI_ANY_ID: matches any vendor/device/subsystem value in a {@linkcode PciDeviceId}. */
export const PCI_ANY_ID = 0xffff_ffff;
/** pci_alloc_irq_vectors(): allow legacy INTx (not modelled: never satisfied). */
export const PCI_IRQ_INTX = 1 << 0;
/** pci_alloc_irq_vectors(): allow MSI. */
export const PCI_IRQ_MSI = 1 << 1;
/** pci_alloc_irq_vectors(): allow MSI-X. */
export const PCI_IRQ_MSIX = 1 << 2;
/** Number of standard BARs. */
export const PCI_STD_NUM_BARS = 6;

/** Mirrors PCI_DEVFN(). */
export function PCI_DEVFN(slot: number, fn: number): number {
  return ((slot & 0x1f) << 3) | (fn & 7);
}

/** Mirrors PCI_SLOT(). */
export function PCI_SLOT(devfn: number): number {
  return (devfn >> 3) & 0x1f;
}

/** Mirrors PCI_FUNC(). */
export function PCI_FUNC(devfn: number): number {
  return devfn & 7;
}

/**
 * struct pci_ops, dword-wide: configuration reads and writes of function `devfn` on `bus`.
 * An absent function reads all-ones; writes to it are dropped.
 */
export interface PciConfigAccessor {
  /** Reads the dword at `where` (4-byte aligned). */
  read32(bus: number, devfn: number, where: number): number;
  /** Writes the dword at `where` (4-byte aligned). */
  write32(bus: number, devfn: number, where: number, value: number): void;
}

/**
 * Mirrors pci_ecam_create(): an accessor over an ECAM window
 * (`(bus - busStart) << 20 | devfn << 12 | where`).
 */
export function pci_ecam_accessor(io: IoMem, busStart = 0): PciConfigAccessor {
  const off = (bus: number, devfn: number, where: number): number => {
    const o = ((bus - busStart) * 256 + devfn) * 4096 + where;
    return bus < busStart || o + 4 > io.size ? -1 : o;
  };
  return {
    read32: (bus, devfn, where) => {
      const o = off(bus, devfn, where);
      return o < 0 ? 0xffff_ffff : readl(io, o);
    },
    write32: (bus, devfn, where, value) => {
      const o = off(bus, devfn, where);
      if (o >= 0) writel(io, o, value);
    },
  };
}

/** A host bridge memory window: PCI bus addresses `[pciAddr, +size)` seen at `cpuAddr`. */
export interface PciHostWindow {
  /** CPU physical address of the window. */
  readonly cpuAddr: number;
  /** PCI bus address of the window. */
  readonly pciAddr: number;
  /** Size in bytes. */
  readonly size: number;
  /** IORESOURCE_MEM or IORESOURCE_IO, plus IORESOURCE_PREFETCH / IORESOURCE_MEM_64. */
  readonly flags: number;
}

/**
 * Mirrors of_pci_get_host_bridge_resources(): the windows in a PCI host node's `ranges`
 * (3-cell PCI addresses: space code in bits 25:24, prefetchable bit 30).
 */
export function of_pci_get_ranges(np: DtNode): PciHostWindow[] {
  const cells = of_property_read_u32_array(np, "ranges") ?? [];
  const pna = of_n_addr_cells(np);
  const ns = of_property_read_u32(np, "#size-cells") ?? 2;
  const step = 3 + pna + ns;
  const out: PciHostWindow[] = [];
  for (let i = 0; i + step <= cells.length; i += step) {
    const hi = cells[i];
    const space = (hi >>> 24) & 3;
    if (space === 0) continue;
    const flags = space === 1
      ? IORESOURCE_IO
      : IORESOURCE_MEM | (space === 3 ? IORESOURCE_MEM_64 : 0) |
        (hi & 0x4000_0000 ? IORESOURCE_PREFETCH : 0);
    out.push({
      pciAddr: of_read_number(cells.slice(i + 1, i + 3)),
      cpuAddr: of_translate_address(np, of_read_number(cells.slice(i + 3, i + 3 + pna))),
      size: of_read_number(cells.slice(i + 3 + pna, i + step)),
      flags,
    });
  }
  return out;
}

/** Options for {@linkcode pci_host_probe}. */
export interface PciHostBridgeOptions {
  /** Configuration space. */
  accessor: PciConfigAccessor;
  /** Memory windows BARs are assigned from. */
  windows?: readonly PciHostWindow[];
  /** The host bridge's device-tree node (`iommu-map`, `msi-parent`, child nodes per devfn). */
  ofNode?: DtNode | null;
  /** The device that owns the bridge (the platform host controller). */
  parent?: Device | null;
  /** PCI segment ("domain") number, the `0000` in `0000:00:01.0`. */
  domain?: number;
  /** MSI domain for the functions; defaults to the `msi-parent` of `ofNode`. */
  msiDomain?: IrqDomain | null;
  /** Bus numbers behind the bridge (`bus-range`, default `[0, 0xff]`); the root bus is the first. */
  busRange?: readonly [number, number];
}

/** struct pci_host_bridge: one root bus and what its functions share. */
export class PciHostBridge {
  /** The functions found, in scan order. */
  readonly devices: PciDev[] = [];
  /** Configuration space accessor. */
  readonly accessor: PciConfigAccessor;
  /** Memory windows. */
  readonly windows: readonly PciHostWindow[];
  /** Device-tree node of the host bridge. */
  readonly ofNode: DtNode | null;
  /** PCI segment. */
  readonly domain: number;
  /** MSI domain for the functions. */
  readonly msiDomain: IrqDomain | null;
  /** Bus numbers behind the bridge; the root bus is the first. */
  readonly busRange: readonly [number, number];
  /** Next free PCI bus address per window. */
  readonly _next: number[];

  /** Use {@linkcode pci_host_probe}. */
  constructor(readonly kernel: Kernel, readonly parent: Device | null, opts: PciHostBridgeOptions) {
    this.accessor = opts.accessor;
    this.windows = opts.windows ?? [];
    this.ofNode = opts.ofNode ?? null;
    this.domain = opts.domain ??
      (this.ofNode ? of_property_read_u32(this.ofNode, "linux,pci-domain") ?? 0 : 0);
    const msiParent = this.ofNode &&
      of_parse_phandle_with_args(this.ofNode, "msi-parent", "#msi-cells", 0);
    this.msiDomain = opts.msiDomain ??
      (msiParent ? irq_find_matching_fwnode(kernel, msiParent.np) : null);
    this.busRange = opts.busRange ?? [0, 0xff];
    this._next = this.windows.map((w) => w.pciAddr);
  }
}

/** struct pci_device_id: what a driver binds to. */
export interface PciDeviceId {
  /** Vendor ID or PCI_ANY_ID. */
  readonly vendor: number;
  /** Device ID or PCI_ANY_ID. */
  readonly device: number;
  /** Subsystem vendor (PCI_ANY_ID when omitted). */
  readonly subvendor?: number;
  /** Subsystem device (PCI_ANY_ID when omitted). */
  readonly subdevice?: number;
  /** Class code to match under `classMask`. */
  readonly class?: number;
  /** Which class bits must match (0 when omitted: any class). */
  readonly classMask?: number;
  /** Driver data for this match. */
  readonly data?: unknown;
}

/** struct pci_driver. */
export interface PciDriver extends Driver {
  /** IDs the driver handles. */
  readonly idTable: readonly PciDeviceId[];
  /** Binds to `pdev`, which matched `id`. */
  probe(pdev: PciDev, id: PciDeviceId): void;
  /** Unbinds. */
  remove?(pdev: PciDev): void;
  /** Quiesces at shutdown. */
  shutdown?(pdev: PciDev): void;
}

/** Mirrors pci_match_id(): the first entry of `ids` that matches `pdev`. */
export function pci_match_id(ids: readonly PciDeviceId[], pdev: PciDev): PciDeviceId | undefined {
  const any = (want: number | undefined, have: number) =>
    want === undefined || want === PCI_ANY_ID || want === have;
  return ids.find((id) =>
    any(id.vendor, pdev.vendor) && any(id.device, pdev.device) &&
    any(id.subvendor, pdev.subsystemVendor) && any(id.subdevice, pdev.subsystemDevice) &&
    (((id.class ?? 0) ^ pdev.classCode) & (id.classMask ?? 0)) === 0
  );
}

/** struct pci_dev: one PCI function. */
export class PciDev extends Device {
  /** The host bridge it was found under. */
  readonly host: PciHostBridge;
  /** Bus number. */
  readonly busNr: number;
  /** Device and function (PCI_DEVFN). */
  readonly devfn: number;
  /** Vendor ID. */
  readonly vendor: number;
  /** Device ID. */
  readonly device: number;
  /** Class code (24 bits). */
  readonly classCode: number;
  /** Revision ID. */
  readonly revision: number;
  /** Header type (without the multi-function bit). */
  readonly hdrType: number;
  /** Subsystem vendor ID. */
  readonly subsystemVendor: number;
  /** Subsystem ID. */
  readonly subsystemDevice: number;
  /** Device-tree node for this devfn under the host bridge, if the tree has one. */
  readonly ofNode: DtNode | null;
  /** BAR resources (null where there is no BAR; the upper half of a 64-bit BAR is null). */
  readonly resource: (Resource | null)[] = new Array(PCI_STD_NUM_BARS).fill(null);
  /** Offset of the MSI capability, or 0. */
  msiCap = 0;
  /** Offset of the MSI-X capability, or 0. */
  msixCap = 0;
  /** Offset of the ATS extended capability, or 0. */
  atsCap = 0;
  /** Offset of the PRI extended capability, or 0. */
  priCap = 0;
  /** Offset of the PASID extended capability, or 0. */
  pasidCap = 0;
  /** pdev->ats_enabled. */
  atsEnabled = false;
  /** pdev->ats_stu: log2 of the smallest translation unit. */
  atsStu = 0;
  /** pdev->pri_enabled. */
  priEnabled = false;
  /** pdev->pri_reqs_alloc. */
  priReqsAlloc = 0;
  /** pdev->pasid_enabled. */
  pasidEnabled = false;
  /** pdev->pasid_features. */
  pasidFeatures = 0;
  /** pdev->msix_enabled. */
  msixEnabled = false;
  /** pdev->msi_enabled. */
  msiEnabled = false;
  /** pdev->irq: the first vector after pci_alloc_irq_vectors(), else 0. */
  irq = 0;
  /** pdev->is_managed: enabled with pcim_enable_device(), so its MSI vectors are devres. */
  isManaged = false;
  /** pdev->is_msi_managed: the devres action freeing the vectors is registered. */
  _msiManaged = false;
  /** 16-bit registers whose bits are RW1C, so sub-dword writes must not write them back. */
  readonly _rw1c = new Set<number>([R.PCI_STATUS]);

  /** Use {@linkcode pci_host_probe}, which reads the IDs from configuration space. */
  constructor(host: PciHostBridge, busNr: number, devfn: number, ids: {
    vendor: number;
    device: number;
    classRev: number;
    hdrType: number;
    subsys: number;
  }) {
    const ofNode = host.ofNode?.children.find((c) => {
      const reg = of_property_read_u32_array(c, "reg");
      return reg !== undefined && reg.length > 0 &&
        ((reg[0] >>> 8) & 0xffff) === (busNr << 8 | devfn);
    }) ?? null;
    super(host.kernel, {
      name: `${_hex(host.domain, 4)}:${_hex(busNr, 2)}:${_hex(PCI_SLOT(devfn), 2)}.${
        PCI_FUNC(devfn)
      }`,
      bus: host.kernel.pciBus,
      parent: host.parent,
      fwnode: ofNode,
    });
    this.host = host;
    this.busNr = busNr;
    this.devfn = devfn;
    this.ofNode = ofNode;
    this.vendor = ids.vendor;
    this.device = ids.device;
    this.classCode = ids.classRev >>> 8;
    this.revision = ids.classRev & 0xff;
    this.hdrType = ids.hdrType & R.PCI_HEADER_TYPE_MASK;
    this.subsystemVendor = ids.subsys & 0xffff;
    this.subsystemDevice = ids.subsys >>> 16;
  }
}

function _hex(v: number, w: number, prefix = ""): string {
  return prefix + v.toString(16).padStart(w, "0");
}

/** `[start, end]` as `%pR` prints it: `[mem 0x40000000-0x40003fff 64bit]`, `[io  0x0000-0x001f]`. */
function _pR(start: number, end: number, flags: number): string {
  const io = (flags & IORESOURCE_IO) !== 0;
  const w = io ? 4 : 8;
  const attrs = `${flags & IORESOURCE_MEM_64 ? " 64bit" : ""}${
    flags & IORESOURCE_PREFETCH ? " pref" : ""
  }`;
  return `[${io ? "io " : "mem"} ${_hex(start, w, "0x")}-${_hex(end, w, "0x")}${attrs}]`;
}

/** A bus-number range as `%pR` prints it: `[bus 00-ff]`. */
function _busStr(range: readonly [number, number]): string {
  return `[bus ${_hex(range[0], 2)}-${_hex(range[1], 2)}]`;
}

/**
 * The dword holding `where`; `EFAULT` (PCIBIOS_BAD_REGISTER_NUMBER, as pcibios_err_to_errno()
 * reports it) for an access outside the 4 KiB configuration space or not aligned to its size.
 */
function _dword(where: number, size: 1 | 2 | 4): number {
  if (!Number.isInteger(where) || where < 0 || where + size > R.PCI_CFG_SPACE_EXP_SIZE) {
    throw new Errno("EFAULT", `Configuration access at ${where} outside the config space`);
  }
  if (where % size !== 0) {
    throw new Errno(
      "EFAULT",
      `Configuration access of ${size} bytes at unaligned 0x${where.toString(16)}`,
    );
  }
  return where & ~3;
}

function _read32(pdev: PciDev, dw: number): number {
  return pdev.host.accessor.read32(pdev.busNr, pdev.devfn, dw) >>> 0;
}

function _write32(pdev: PciDev, dw: number, value: number): void {
  pdev.host.accessor.write32(pdev.busNr, pdev.devfn, dw, value >>> 0);
}

/** Mirrors pci_read_config_dword(); `EFAULT` for an unaligned or out-of-range `where`. */
export function pci_read_config_dword(pdev: PciDev, where: number): number {
  return _read32(pdev, _dword(where, 4));
}

/** Mirrors pci_write_config_dword(); `EFAULT` for an unaligned or out-of-range `where`. */
export function pci_write_config_dword(pdev: PciDev, where: number, value: number): void {
  _write32(pdev, _dword(where, 4), value);
}

/** Mirrors pci_read_config_word(); `EFAULT` for an unaligned or out-of-range `where`. */
export function pci_read_config_word(pdev: PciDev, where: number): number {
  return (_read32(pdev, _dword(where, 2)) >>> ((where & 2) * 8)) & 0xffff;
}

/** Mirrors pci_read_config_byte(); `EFAULT` for an out-of-range `where`. */
export function pci_read_config_byte(pdev: PciDev, where: number): number {
  return (_read32(pdev, _dword(where, 1)) >>> ((where & 3) * 8)) & 0xff;
}

/**
 * A sub-dword write as a dword read-modify-write (pci_generic_config_write32), except that
 * known RW1C neighbours are written as 0 so their status bits survive.
 */
function _writeSub(pdev: PciDev, where: number, size: 1 | 2, value: number): void {
  const dw = _dword(where, size);
  const shift = (where & 3) * 8;
  const field = (size === 1 ? 0xff : 0xffff) << shift;
  let keep = ~field;
  for (const half of [dw, dw + 2]) if (pdev._rw1c.has(half)) keep &= ~(0xffff << ((half - dw) * 8));
  const old = _read32(pdev, dw);
  _write32(pdev, dw, (old & keep) | ((value << shift) & field));
}

/** Mirrors pci_write_config_word(); `EFAULT` for an unaligned or out-of-range `where`. */
export function pci_write_config_word(pdev: PciDev, where: number, value: number): void {
  _writeSub(pdev, where, 2, value);
}

/** Mirrors pci_write_config_byte(); `EFAULT` for an out-of-range `where`. */
export function pci_write_config_byte(pdev: PciDev, where: number, value: number): void {
  _writeSub(pdev, where, 1, value);
}

/** Mirrors pci_find_capability(): offset of standard capability `cap`, or 0. */
export function pci_find_capability(pdev: PciDev, cap: number): number {
  if (!(pci_read_config_word(pdev, R.PCI_STATUS) & R.PCI_STATUS_CAP_LIST)) return 0;
  let pos = pci_read_config_byte(pdev, R.PCI_CAPABILITY_LIST);
  for (let ttl = 48; ttl > 0 && pos >= 0x40; ttl--) {
    pos &= ~3;
    const hdr = pci_read_config_word(pdev, pos);
    if ((hdr & 0xff) === 0xff) return 0;
    if ((hdr & 0xff) === cap) return pos;
    pos = hdr >>> 8;
  }
  return 0;
}

/** Mirrors pci_find_ext_capability(): offset of extended capability `cap`, or 0. */
export function pci_find_ext_capability(pdev: PciDev, cap: number): number {
  let pos = R.PCI_CFG_SPACE_SIZE;
  for (let ttl = (R.PCI_CFG_SPACE_EXP_SIZE - R.PCI_CFG_SPACE_SIZE) / 8; ttl > 0; ttl--) {
    const hdr = pci_read_config_dword(pdev, pos);
    if (hdr === 0 || hdr === 0xffff_ffff) return 0;
    if ((hdr & R.PCI_EXT_CAP_ID_MASK) === cap) return pos;
    pos = hdr >>> 20;
    if (pos < R.PCI_CFG_SPACE_SIZE) return 0;
  }
  return 0;
}

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
        `BAR ${b.i} [${kind} size ${_hex(b.size, 8, "0x")}]: can't assign; no space`,
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
    dev_info(b.pdev, `BAR ${b.i} ${_pR(start, end, b.flags)}: assigned`);
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
    `[${_hex(pdev.vendor, 4)}:${_hex(pdev.device, 4)}] type ${_hex(pdev.hdrType, 2)} class ${
      _hex(pdev.classCode, 6, "0x")
    }`,
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
 * import { Kernel, pci_host_probe, PCI_DEVFN } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
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
  const bus = `${_hex(host.domain, 4)}:${_hex(host.busRange[0], 2)}`;
  const msg = `PCI host bridge to bus ${bus}`;
  if (host.parent !== null) dev_info(host.parent, msg);
  else pr_info(host.kernel, msg);
  pr_info(host.kernel, `pci_bus ${bus}: root bus resource ${_busStr(host.busRange)}`);
  for (const w of host.windows) {
    const end = w.cpuAddr + w.size - 1;
    // devm_of_pci_get_host_bridge_resources() drops MEM_64 from windows: a BAR's property.
    const res = _pR(w.cpuAddr, end, w.flags & ~IORESOURCE_MEM_64);
    const wd = w.flags & IORESOURCE_IO ? 4 : 8;
    const offset = w.cpuAddr === w.pciAddr
      ? ""
      : ` (bus address [${_hex(w.pciAddr, wd, "0x")}-${_hex(w.pciAddr + w.size - 1, wd, "0x")}])`;
    pr_info(host.kernel, `pci_bus ${bus}: root bus resource ${res}${offset}`);
  }
}

/** Mirrors pci_remove_root_bus(): deletes every function of the bridge. */
export function pci_remove_root_bus(host: PciHostBridge): void {
  host.kernel.core.run(() => {
    for (const pdev of host.devices.splice(0).reverse()) device_del(pdev);
  });
}

/** The PCI bus type: ID-table match, host-bridge `iommu-map` for DMA configuration. */
export const pci_bus_type: BusType = {
  name: "pci",
  match: (dev, drv) => pci_match_id((drv as PciDriver).idTable, dev as PciDev) !== undefined,
  probe(dev, drv) {
    const pdrv = drv as PciDriver;
    pdrv.probe(dev as PciDev, pci_match_id(pdrv.idTable, dev as PciDev)!);
  },
  dmaConfigure(dev) {
    const np = (dev as PciDev).host.ofNode;
    if (np !== null) of_iommu_configure(dev, np, pci_dev_id(dev as PciDev));
  },
};

/** Mirrors pci_register_driver(). */
export function pci_register_driver(kernel: Kernel, drv: PciDriver): void {
  driver_register(kernel.pciBus, drv);
}

/** Mirrors pci_unregister_driver(). */
export function pci_unregister_driver(kernel: Kernel, drv: PciDriver): void {
  driver_unregister(kernel.pciBus, drv);
}

/** Mirrors dev_is_pci(). */
export function dev_is_pci(dev: Device): dev is PciDev {
  return dev instanceof PciDev;
}

/** Mirrors to_pci_dev(): EINVAL when `dev` is not a PCI function. */
export function to_pci_dev(dev: Device): PciDev {
  if (!(dev instanceof PciDev)) throw new Errno("EINVAL", `${dev.name} is not a PCI device`);
  return dev;
}

/** Mirrors pci_name(). */
export function pci_name(pdev: PciDev): string {
  return pdev.name;
}

/** Mirrors pci_dev_id(): the requester ID (bus << 8 | devfn). */
export function pci_dev_id(pdev: PciDev): number {
  return (pdev.busNr << 8) | pdev.devfn;
}

/**
 * Mirrors pci_for_each_dma_alias(): calls `fn` with each requester ID the function's DMA may
 * carry. Without bridges there is exactly one, its own. Stops at the first non-zero return.
 */
export function pci_for_each_dma_alias(
  pdev: PciDev,
  fn: (pdev: PciDev, alias: number) => number,
): number {
  return fn(pdev, pci_dev_id(pdev));
}

/** Mirrors pci_resource_start(). */
export function pci_resource_start(pdev: PciDev, bar: number): number {
  return pdev.resource[bar]?.start ?? 0;
}

/** Mirrors pci_resource_len(). */
export function pci_resource_len(pdev: PciDev, bar: number): number {
  const r = pdev.resource[bar];
  return r ? resource_size(r) : 0;
}

/** Mirrors pci_resource_flags(). */
export function pci_resource_flags(pdev: PciDev, bar: number): number {
  return pdev.resource[bar]?.flags ?? 0;
}

function _setCommand(pdev: PciDev, set: number, clear: number): void {
  const cmd = pci_read_config_word(pdev, R.PCI_COMMAND);
  const next = (cmd | set) & ~clear;
  if (next !== cmd) pci_write_config_word(pdev, R.PCI_COMMAND, next);
}

/** Mirrors pci_enable_device(): turns on memory (and I/O) decoding for the assigned BARs. */
export function pci_enable_device(pdev: PciDev): void {
  const io = pdev.resource.some((r) => r !== null && r.flags & IORESOURCE_IO);
  _setCommand(pdev, R.PCI_COMMAND_MEMORY | (io ? R.PCI_COMMAND_IO : 0), 0);
}

/** Mirrors pci_disable_device(): stops decoding and bus mastering. */
export function pci_disable_device(pdev: PciDev): void {
  _setCommand(pdev, 0, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_IO | R.PCI_COMMAND_MASTER);
}

/**
 * Mirrors pcim_enable_device(): pci_enable_device() undone when the driver unbinds, and the
 * device made managed: the vectors of a later pci_alloc_irq_vectors() are freed at unbind too.
 */
export function pcim_enable_device(pdev: PciDev): void {
  pci_enable_device(pdev);
  devm_add_action(pdev, () => {
    pci_disable_device(pdev);
    pdev.isManaged = false;
  });
  pdev.isManaged = true;
}

/** Mirrors pci_set_master(): lets the function issue DMA. */
export function pci_set_master(pdev: PciDev): void {
  _setCommand(pdev, R.PCI_COMMAND_MASTER, 0);
}

/** Mirrors pci_clear_master(). */
export function pci_clear_master(pdev: PciDev): void {
  _setCommand(pdev, 0, R.PCI_COMMAND_MASTER);
}

/**
 * Mirrors pci_iomap(): maps BAR `bar` (at most `maxlen` bytes; 0 = all). EINVAL for an unassigned
 * or I/O BAR.
 */
export function pci_iomap(pdev: PciDev, bar: number, maxlen = 0): IoMem {
  const r = pdev.resource[bar];
  if (r === null || r === undefined || !(r.flags & IORESOURCE_MEM)) {
    throw new Errno("EINVAL", `${pdev.name}: BAR ${bar} is not an assigned memory BAR`);
  }
  const len = maxlen > 0 ? Math.min(maxlen, resource_size(r)) : resource_size(r);
  return ioremap(pdev.kernel, r.start, len);
}

/** Mirrors pcim_iomap_region(): pci_iomap() for a managed driver. */
export function pcim_iomap_region(pdev: PciDev, bar: number): IoMem {
  return pci_iomap(pdev, bar);
}

// --- ATS / PRI / PASID (drivers/pci/ats.c) ---

/** Mirrors pci_ats_supported(). */
export function pci_ats_supported(pdev: PciDev): boolean {
  return pdev.atsCap !== 0;
}

/**
 * Mirrors pci_enable_ats(): enables ATS with smallest translation unit `2^ps` bytes.
 * EINVAL without ATS or with `ps` below 12; EBUSY when already enabled.
 */
export function pci_enable_ats(pdev: PciDev, ps: number): void {
  if (!pci_ats_supported(pdev)) throw new Errno("EINVAL", `${pdev.name}: no ATS capability`);
  if (pdev.atsEnabled) throw new Errno("EBUSY", `${pdev.name}: ATS already enabled`);
  if (!Number.isInteger(ps) || ps < R.PCI_ATS_MIN_STU || ps > R.PCI_ATS_MIN_STU + 31) {
    throw new Errno("EINVAL", `${pdev.name}: bad ATS page shift ${ps}`);
  }
  pdev.atsStu = ps;
  pci_write_config_word(
    pdev,
    pdev.atsCap + R.PCI_ATS_CTRL,
    R.PCI_ATS_CTRL_ENABLE | (ps - R.PCI_ATS_MIN_STU),
  );
  pdev.atsEnabled = true;
}

/** Mirrors pci_disable_ats() (EINVAL when not enabled, where C WARNs). */
export function pci_disable_ats(pdev: PciDev): void {
  if (!pdev.atsEnabled) throw new Errno("EINVAL", `${pdev.name}: ATS is not enabled`);
  const ctrl = pci_read_config_word(pdev, pdev.atsCap + R.PCI_ATS_CTRL);
  pci_write_config_word(pdev, pdev.atsCap + R.PCI_ATS_CTRL, ctrl & ~R.PCI_ATS_CTRL_ENABLE);
  pdev.atsEnabled = false;
}

/** Mirrors pci_ats_queue_depth(): invalidate queue depth (0 in the register means 32). */
export function pci_ats_queue_depth(pdev: PciDev): number {
  if (!pdev.atsCap) throw new Errno("EINVAL", `${pdev.name}: no ATS capability`);
  const q = pci_read_config_word(pdev, pdev.atsCap + R.PCI_ATS_CAP) & R.PCI_ATS_CAP_QDEP_MASK;
  return q === 0 ? 32 : q;
}

/** Mirrors pci_ats_page_aligned(). */
export function pci_ats_page_aligned(pdev: PciDev): boolean {
  return pdev.atsCap !== 0 &&
    (pci_read_config_word(pdev, pdev.atsCap + R.PCI_ATS_CAP) & R.PCI_ATS_CAP_PAGE_ALIGNED) !== 0;
}

/** Mirrors pci_pri_supported(). */
export function pci_pri_supported(pdev: PciDev): boolean {
  return pdev.priCap !== 0;
}

/**
 * Mirrors pci_enable_pri(): allocates min(`reqs`, capacity) outstanding page requests and
 * enables PRI. EINVAL without PRI; EBUSY when enabled already or not stopped.
 */
export function pci_enable_pri(pdev: PciDev, reqs: number): void {
  if (!pdev.priCap) throw new Errno("EINVAL", `${pdev.name}: no PRI capability`);
  if (pdev.priEnabled) throw new Errno("EBUSY", `${pdev.name}: PRI already enabled`);
  const status = pci_read_config_word(pdev, pdev.priCap + R.PCI_PRI_STATUS);
  if (!(status & R.PCI_PRI_STATUS_STOPPED)) {
    throw new Errno("EBUSY", `${pdev.name}: PRI is not stopped`);
  }
  const max = pci_read_config_dword(pdev, pdev.priCap + R.PCI_PRI_MAX_REQ);
  const n = Math.min(max, reqs);
  pdev.priReqsAlloc = n;
  pci_write_config_dword(pdev, pdev.priCap + R.PCI_PRI_ALLOC_REQ, n);
  pci_write_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL, R.PCI_PRI_CTRL_ENABLE);
  pdev.priEnabled = true;
}

/** Mirrors pci_disable_pri() (EINVAL when not enabled, where C WARNs). */
export function pci_disable_pri(pdev: PciDev): void {
  if (!pdev.priEnabled) throw new Errno("EINVAL", `${pdev.name}: PRI is not enabled`);
  const ctrl = pci_read_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL);
  pci_write_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL, ctrl & ~R.PCI_PRI_CTRL_ENABLE);
  pdev.priEnabled = false;
}

/** Mirrors pci_reset_pri(): resets the PRI state machine (EBUSY while enabled). */
export function pci_reset_pri(pdev: PciDev): void {
  if (!pdev.priCap) throw new Errno("EINVAL", `${pdev.name}: no PRI capability`);
  if (pdev.priEnabled) throw new Errno("EBUSY", `${pdev.name}: PRI is enabled`);
  pci_write_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL, R.PCI_PRI_CTRL_RESET);
}

/** Mirrors pci_prg_resp_pasid_required(): PRG responses must carry the request's PASID. */
export function pci_prg_resp_pasid_required(pdev: PciDev): boolean {
  return pdev.priCap !== 0 &&
    (pci_read_config_word(pdev, pdev.priCap + R.PCI_PRI_STATUS) & R.PCI_PRI_STATUS_PASID) !== 0;
}

/**
 * Mirrors pci_enable_pasid(): enables PASID with `features` (PCI_PASID_CAP_EXEC / _PRIV).
 * EINVAL without PASID or for unsupported features; EBUSY when already enabled.
 */
export function pci_enable_pasid(pdev: PciDev, features: number): void {
  if (pdev.pasidEnabled) throw new Errno("EBUSY", `${pdev.name}: PASID already enabled`);
  if (!pdev.pasidCap) throw new Errno("EINVAL", `${pdev.name}: no PASID capability`);
  const supported = pci_read_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CAP) &
    (R.PCI_PASID_CAP_EXEC | R.PCI_PASID_CAP_PRIV);
  if ((supported & features) !== features) {
    throw new Errno(
      "EINVAL",
      `${pdev.name}: PASID features 0x${features.toString(16)} unsupported`,
    );
  }
  pdev.pasidFeatures = features;
  pci_write_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CTRL, R.PCI_PASID_CTRL_ENABLE | features);
  pdev.pasidEnabled = true;
}

/** Mirrors pci_disable_pasid() (EINVAL when not enabled, where C WARNs). */
export function pci_disable_pasid(pdev: PciDev): void {
  if (!pdev.pasidEnabled) throw new Errno("EINVAL", `${pdev.name}: PASID is not enabled`);
  pci_write_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CTRL, 0);
  pdev.pasidEnabled = false;
}

/** Mirrors pci_pasid_features(): the supported feature bits (EINVAL without PASID). */
export function pci_pasid_features(pdev: PciDev): number {
  if (!pdev.pasidCap) throw new Errno("EINVAL", `${pdev.name}: no PASID capability`);
  return pci_read_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CAP) &
    (R.PCI_PASID_CAP_EXEC | R.PCI_PASID_CAP_PRIV);
}

/** Mirrors pci_max_pasids(): 2^width PASIDs (EINVAL without PASID). */
export function pci_max_pasids(pdev: PciDev): number {
  if (!pdev.pasidCap) throw new Errno("EINVAL", `${pdev.name}: no PASID capability`);
  return 2 ** ((pci_read_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CAP) >> 8) & 0x1f);
}

// --- MSI / MSI-X (drivers/pci/msi) ---

/** Mirrors pci_msix_vec_count(): the MSI-X table size (EINVAL without MSI-X). */
export function pci_msix_vec_count(pdev: PciDev): number {
  if (!pdev.msixCap) throw new Errno("EINVAL", `${pdev.name}: no MSI-X capability`);
  return (pci_read_config_word(pdev, pdev.msixCap + R.PCI_MSIX_FLAGS) & R.PCI_MSIX_FLAGS_QSIZE) + 1;
}

/** Mirrors pci_msi_vec_count(): vectors the MSI capability offers (EINVAL without MSI). */
export function pci_msi_vec_count(pdev: PciDev): number {
  if (!pdev.msiCap) throw new Errno("EINVAL", `${pdev.name}: no MSI capability`);
  const ctrl = pci_read_config_word(pdev, pdev.msiCap + R.PCI_MSI_FLAGS);
  return 1 << ((ctrl & R.PCI_MSI_FLAGS_QMASK) >> 1);
}

function _msixEnable(pdev: PciDev, nvec: number): void {
  const cap = pdev.msixCap;
  const table = pci_read_config_dword(pdev, cap + R.PCI_MSIX_TABLE);
  const bir = table & R.PCI_MSIX_TABLE_BIR;
  const r = pdev.resource[bir];
  const off = (table & R.PCI_MSIX_TABLE_OFFSET) >>> 0;
  const size = pci_msix_vec_count(pdev) * R.PCI_MSIX_ENTRY_SIZE;
  if (r === null || r === undefined || off + size > resource_size(r)) {
    throw new Errno("EINVAL", `${pdev.name}: MSI-X table outside BAR ${bir}`);
  }
  const ctrl = pci_read_config_word(pdev, cap + R.PCI_MSIX_FLAGS);
  pci_write_config_word(
    pdev,
    cap + R.PCI_MSIX_FLAGS,
    ctrl | R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL,
  );
  const io = ioremap(pdev.kernel, r.start + off, size);
  const entry = (d: MsiDesc) => d.msiIndex * R.PCI_MSIX_ENTRY_SIZE;
  const mask = (d: MsiDesc, masked: boolean) =>
    writel(io, entry(d) + R.PCI_MSIX_ENTRY_VECTOR_CTRL, masked ? R.PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
  try {
    msi_domain_alloc_irqs(pdev, nvec, {
      write(d: MsiDesc, msg: MsiMsg) {
        writel(io, entry(d) + R.PCI_MSIX_ENTRY_LOWER_ADDR, msg.addressLo);
        writel(io, entry(d) + R.PCI_MSIX_ENTRY_UPPER_ADDR, msg.addressHi);
        writel(io, entry(d) + R.PCI_MSIX_ENTRY_DATA, msg.data);
      },
      mask,
    });
  } catch (e) {
    pci_write_config_word(pdev, cap + R.PCI_MSIX_FLAGS, ctrl & ~R.PCI_MSIX_FLAGS_ENABLE);
    throw e;
  }
  pci_write_config_word(
    pdev,
    cap + R.PCI_MSIX_FLAGS,
    (ctrl | R.PCI_MSIX_FLAGS_ENABLE) & ~R.PCI_MSIX_FLAGS_MASKALL,
  );
  pdev.msixEnabled = true;
}

function _msiEnable(pdev: PciDev, nvec: number): void {
  const cap = pdev.msiCap;
  const ctrl = pci_read_config_word(pdev, cap + R.PCI_MSI_FLAGS);
  const is64 = (ctrl & R.PCI_MSI_FLAGS_64BIT) !== 0;
  const maskReg = cap + (is64 ? R.PCI_MSI_MASK_64 : R.PCI_MSI_MASK_32);
  const maskable = (ctrl & R.PCI_MSI_FLAGS_MASKBIT) !== 0;
  msi_domain_alloc_irqs(pdev, nvec, {
    write(d: MsiDesc, msg: MsiMsg) {
      if (d.msiIndex !== 0) return; // one message; the device adds the vector number to data
      pci_write_config_dword(pdev, cap + R.PCI_MSI_ADDRESS_LO, msg.addressLo);
      if (is64) pci_write_config_dword(pdev, cap + R.PCI_MSI_ADDRESS_HI, msg.addressHi);
      pci_write_config_word(pdev, cap + (is64 ? R.PCI_MSI_DATA_64 : R.PCI_MSI_DATA_32), msg.data);
    },
    mask: maskable
      ? (d: MsiDesc, masked: boolean) => {
        const bits = pci_read_config_dword(pdev, maskReg);
        pci_write_config_dword(
          pdev,
          maskReg,
          masked ? bits | (1 << d.msiIndex) : bits & ~(1 << d.msiIndex),
        );
      }
      : undefined,
  }, true);
  const mme = Math.log2(nvec) << 4;
  pci_write_config_word(
    pdev,
    cap + R.PCI_MSI_FLAGS,
    (ctrl & ~R.PCI_MSI_FLAGS_QSIZE) | mme | R.PCI_MSI_FLAGS_ENABLE,
  );
  pdev.msiEnabled = true;
}

/**
 * Mirrors pci_alloc_irq_vectors(): allocates between `min` and `max` vectors, MSI-X first then
 * MSI as `flags` allow, programming the MSI-X table (through MMIO on its BAR) or the MSI
 * capability with messages from the function's MSI domain. MSI is tried when MSI-X is absent,
 * offers fewer than `min` or fails. Returns the number allocated; ENOSPC when fewer than `min`
 * are possible, the last attempt's error when one failed, EINVAL for bad bounds or when already
 * enabled.
 * On a managed device (pcim_enable_device()) the vectors are freed when the driver unbinds or its
 * probe fails, as pcim_setup_msi_release() arranges.
 */
export function pci_alloc_irq_vectors(
  pdev: PciDev,
  min: number,
  max: number,
  flags: number,
): number {
  if (!Number.isInteger(min) || min < 1 || max < min) {
    throw new Errno("EINVAL", `${pdev.name}: bad vector range ${min}..${max}`);
  }
  if (pdev.msixEnabled || pdev.msiEnabled) {
    throw new Errno("EINVAL", `${pdev.name}: MSI/MSI-X already enabled`);
  }
  // As Linux: MSI-X first, then MSI when MSI-X is absent, too small or fails; the error is the
  // last attempt's, or ENOSPC when neither could offer `min` vectors.
  let err: unknown = new Errno(
    "ENOSPC",
    `${pdev.name}: cannot allocate ${min}..${max} interrupt vectors`,
  );
  const attempt = (n: number, enable: (pdev: PciDev, n: number) => void): boolean => {
    if (n < min) return false;
    try {
      _setupMsiRelease(pdev);
      enable(pdev, n);
    } catch (e) {
      err = e;
      return false;
    }
    pdev.irq = msi_get_virq(pdev, 0);
    return true;
  };
  if (flags & PCI_IRQ_MSIX && pdev.msixCap && pdev.msiDomain) {
    const n = Math.min(max, pci_msix_vec_count(pdev));
    if (attempt(n, _msixEnable)) return n;
  }
  if (flags & PCI_IRQ_MSI && pdev.msiCap && pdev.msiDomain) {
    let n = Math.min(max, pci_msi_vec_count(pdev));
    while (n & (n - 1)) n &= n - 1; // multi-message MSI needs a power of two
    if (attempt(n, _msiEnable)) return n;
  }
  throw err;
}

/** Mirrors pcim_setup_msi_release(): a managed device frees its vectors at unbind, once. */
function _setupMsiRelease(pdev: PciDev): void {
  if (!pdev.isManaged || pdev._msiManaged) return;
  devm_add_action(pdev, () => {
    pdev._msiManaged = false;
    pci_free_irq_vectors(pdev);
  });
  pdev._msiManaged = true;
}

/** Mirrors pci_irq_vector(): the virq of vector `nr` (EINVAL when not allocated). */
export function pci_irq_vector(pdev: PciDev, nr: number): number {
  const irq = msi_get_virq(pdev, nr);
  if (irq === 0) throw new Errno("EINVAL", `${pdev.name}: no vector ${nr}`);
  return irq;
}

/** Mirrors pci_free_irq_vectors(): disables MSI/MSI-X and frees the vectors (EBUSY if requested). */
export function pci_free_irq_vectors(pdev: PciDev): void {
  msi_domain_free_irqs_all(pdev);
  if (pdev.msixEnabled) {
    const ctrl = pci_read_config_word(pdev, pdev.msixCap + R.PCI_MSIX_FLAGS);
    pci_write_config_word(pdev, pdev.msixCap + R.PCI_MSIX_FLAGS, ctrl & ~R.PCI_MSIX_FLAGS_ENABLE);
    pdev.msixEnabled = false;
  }
  if (pdev.msiEnabled) {
    const ctrl = pci_read_config_word(pdev, pdev.msiCap + R.PCI_MSI_FLAGS);
    pci_write_config_word(pdev, pdev.msiCap + R.PCI_MSI_FLAGS, ctrl & ~R.PCI_MSI_FLAGS_ENABLE);
    pdev.msiEnabled = false;
  }
  pdev.irq = 0;
}

/**
 * pci-host-ecam-generic as a platform driver: reads `bus-range` and `ranges` (logging the
 * windows), maps the ECAM window (`reg` 0), and scans the bus. The machine registers it like any
 * other driver.
 */
export const pci_host_generic_driver: PlatformDriver = {
  name: "pci-host-generic",
  ofMatchTable: [{ compatible: "pci-host-ecam-generic" }],
  probe(pdev: PlatformDevice): void {
    const np = pdev.ofNode!;
    const ecam = pdev.resources[0];
    if (ecam === undefined) throw new Errno("ENODEV", `${pdev.name}: no ECAM window`);
    // As devm_of_pci_get_host_bridge_resources() logs what it parses.
    dev_info(pdev, `host bridge ${np.fullName} ranges:`);
    const cells = of_property_read_u32_array(np, "bus-range");
    const busRange: [number, number] = cells !== undefined && cells.length >= 2
      ? [cells[0], cells[1]]
      : [0, 0xff];
    if (cells === undefined || cells.length < 2) {
      dev_info(pdev, `  No bus range found for ${np.fullName}, using ${_busStr(busRange)}`);
    }
    const windows = of_pci_get_ranges(np);
    for (const w of windows) {
      const type = (w.flags & IORESOURCE_IO ? "IO" : "MEM").padStart(6);
      dev_info(
        pdev,
        `  ${type} ${_hex(w.cpuAddr, 10, "0x")}..${_hex(w.cpuAddr + w.size - 1, 10, "0x")} -> ${
          _hex(w.pciAddr, 10, "0x")
        }`,
      );
    }
    const io = ioremap(pdev.kernel, ecam.start, resource_size(ecam));
    // As pci_ecam_create() announces the window.
    dev_info(pdev, `ECAM at ${_pR(ecam.start, ecam.end, ecam.flags)} for ${_busStr(busRange)}`);
    pdev.driverData = pci_host_probe(pdev.kernel, {
      accessor: pci_ecam_accessor(io, busRange[0]),
      windows,
      ofNode: np,
      parent: pdev,
      busRange,
    });
  },
  remove(pdev: PlatformDevice): void {
    pci_remove_root_bus(pdev.driverData as PciHostBridge);
  },
};
