/**
 * The PCI core: functions ({@linkcode PciDev}), host bridges, configuration accessors,
 * capability walks, the bus type and driver registration, resources, enabling and bus
 * mastering. Mirrors drivers/pci/pci.c, access.c and pci-driver.c (and include/linux/pci.h);
 * enumeration is in pci_probe.ts, ATS/PRI/PASID in pci_ats.ts, MSI/MSI-X in pci_msi.ts, the
 * generic ECAM host in pci_host_generic.ts.
 *
 * @module
 */
import {
  _busOf,
  bus_register,
  type BusType,
  Device,
  devm_add_action,
  type Driver,
  driver_register,
  driver_unregister,
} from "./device.ts";
import { Errno } from "./errno.ts";
import type { DtNode } from "./fdt.ts";
import { type IoMem, ioremap } from "./io.ts";
import { irq_find_matching_fwnode, type IrqDomain } from "./irq.ts";
import type { Kernel } from "./kernel.ts";
import {
  of_parse_phandle_with_args,
  of_property_read_u32,
  of_property_read_u32_array,
} from "./of.ts";
import { of_iommu_configure } from "./of_iommu.ts";
import * as R from "./pci_regs.ts";
import { IORESOURCE_IO, IORESOURCE_MEM, type Resource, resource_size } from "./resource.ts";
import { hex } from "./vsprintf.ts";

/** PCI_ANY_ID: matches any vendor/device/subsystem value in a {@linkcode PciDeviceId}. */
export const PCI_ANY_ID = 0xffff_ffff;
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
 * struct pci_ops, dword-wide: configuration reads and writes of function `devfn` on `bus`.
 * An absent function reads all-ones; writes to it are dropped.
 */
export interface PciConfigAccessor {
  /** Reads the dword at `where` (4-byte aligned). */
  read32(bus: number, devfn: number, where: number): number;
  /** Writes the dword at `where` (4-byte aligned). */
  write32(bus: number, devfn: number, where: number, value: number): void;
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
  /**
   * Next free PCI bus address per window.
   * @ignore package-private
   */
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
  /**
   * pdev->is_msi_managed: the devres action freeing the vectors is registered.
   * @ignore package-private
   */
  _msiManaged = false;
  /**
   * 16-bit registers whose bits are RW1C, so sub-dword writes must not write them back.
   * @ignore package-private
   */
  readonly _rw1c: Set<number> = new Set([R.PCI_STATUS]);

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
      name: `${hex(host.domain, 4, "")}:${hex(busNr, 2, "")}:${hex(PCI_SLOT(devfn), 2, "")}.${
        PCI_FUNC(devfn)
      }`,
      bus: _busOf(host.kernel, pci_bus_type),
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
      `Configuration access of ${size} bytes at unaligned ${hex(where)}`,
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

/**
 * Mirrors pci_driver_init(), the postcore initcall that registers the PCI bus: pass it in
 * `KernelOptions.initcalls` for a kernel with PCI.
 */
export function pci_driver_init(kernel: Kernel): void {
  bus_register(kernel, pci_bus_type);
}

/** Mirrors pci_register_driver() (EINVAL before {@linkcode pci_driver_init} ran). */
export function pci_register_driver(kernel: Kernel, drv: PciDriver): void {
  driver_register(_busOf(kernel, pci_bus_type), drv);
}

/** Mirrors pci_unregister_driver(). */
export function pci_unregister_driver(kernel: Kernel, drv: PciDriver): void {
  driver_unregister(_busOf(kernel, pci_bus_type), drv);
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
