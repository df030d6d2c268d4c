/**
 * The driver model: devices, drivers and buses, the IOMMU side of a device probed when it is
 * added, binding (match → dma_configure → probe), deferred probe on `EPROBE_DEFER` with re-probe after any driver binds, device links
 * (suppliers bind before consumers and unbind after them), and devres actions.
 *
 * Everything is synchronous, as Linux's synchronous probe is: `device_add()` and
 * `driver_register()` return with every possible binding done, including deferred devices
 * that became probeable.
 *
 * @module
 */
import { dmaDirectOps, type DmaOps } from "./dma.ts";
import { Errno, isErrno } from "./errno.ts";
import type { IrqDomain } from "./irq.ts";
import type { Kernel } from "./kernel.ts";
import { dev_dbg, pr_warn } from "./printk.ts";

/**
 * struct fwnode_handle: a firmware description of a device (a device-tree node). Compared by
 * identity; the name is for messages.
 */
export interface FwNode {
  /** Node name for messages, e.g. `"iommu@3010000"`. */
  readonly name: string;
}

/**
 * struct iommu_fwspec: which IOMMU translates a device's DMA and the device's IDs on it.
 * Filled by of_xlate (platform `iommus`, PCI `iommu-map`); read by the IOMMU core and driver.
 */
export interface IommuFwspec {
  /** The IOMMU's firmware node. */
  readonly fwnode: FwNode;
  /** The device's IDs (device IDs on the IOMMU), in firmware order. */
  readonly ids: number[];
  /** IOMMU_FWSPEC_* flags. */
  flags: number;
}

/** IOMMU_FWSPEC_PCI_RC_ATS: the PCI root complex supports ATS. */
export const IOMMU_FWSPEC_PCI_RC_ATS = 1 << 0;

/** Where a device is in its life: added → bound / deferred / unbound → removed. */
export type DeviceState = "new" | "probing" | "bound" | "deferred" | "unbound" | "removed";

/** struct device_driver: a driver a bus can bind to its devices. */
export interface Driver {
  /** Driver name; dmesg prefixes a bound device's messages with it. */
  readonly name: string;
  /**
   * Binds to `dev`; throws an {@linkcode Errno} on failure (`EPROBE_DEFER` to retry later).
   * `id` is the bus's match entry where the bus passes one (PCI's pci_device_id).
   */
  probe(dev: Device, id?: unknown): void;
  /** Unbinds from `dev` (devres actions run after it). */
  remove?(dev: Device): void;
  /** Quiesces `dev` at shutdown. */
  shutdown?(dev: Device): void;
}

/**
 * struct bus_type: how a bus matches and binds. Methods left out default to calling the
 * driver directly.
 */
export interface BusType {
  /** Bus name (`"platform"`, `"pci"`, `"auxiliary"`). */
  readonly name: string;
  /** True when `drv` can drive `dev`. */
  match(dev: Device, drv: Driver): boolean;
  /** Calls the driver's probe with bus-specific arguments. */
  probe?(dev: Device, drv: Driver): void;
  /** Calls the driver's remove. */
  remove?(dev: Device, drv: Driver): void;
  /** Calls the driver's shutdown. */
  shutdown?(dev: Device, drv: Driver): void;
  /**
   * Mirrors bus->dma_configure(): sets up `dev.fwspec` and `dev.dma` before probe (OF/PCI IOMMU
   * configuration); may throw `EPROBE_DEFER` while the device's IOMMU has no driver yet. Also
   * run without a driver by {@linkcode device_iommu_probe}, which ignores its errors.
   */
  dmaConfigure?(dev: Device): void;
  /** Mirrors bus->dma_cleanup(): undoes dmaConfigure after unbind or a failed probe. */
  dmaCleanup?(dev: Device): void;
}

/** A registered bus: its type plus the devices and drivers on it in one kernel. */
export class Bus {
  /** Devices on the bus, in the order they were added. */
  readonly devices: Device[] = [];
  /** Drivers on the bus, in the order they were registered. */
  readonly drivers: Driver[] = [];

  /** Use {@linkcode bus_register} (which also records the bus in the kernel). */
  constructor(readonly kernel: Kernel, readonly type: BusType) {}

  /** The bus name. */
  get name(): string {
    return this.type.name;
  }
}

/** Mirrors bus_register(): makes a bus of `type` in `kernel`. */
export function bus_register(kernel: Kernel, type: BusType): Bus {
  if (kernel.buses.has(type.name)) {
    throw new Errno("EEXIST", `Cannot register bus ${type.name} twice`);
  }
  const bus = new Bus(kernel, type);
  kernel.buses.set(type.name, bus);
  return bus;
}

/**
 * The bus of `type` in `kernel`. EINVAL when its initcall did not run: the kernel's
 * driver_register() refuses a bus that "was not initialized" the same way.
 */
export function _busOf(kernel: Kernel, type: BusType): Bus {
  const bus = kernel.buses.get(type.name);
  if (bus === undefined) {
    throw new Errno(
      "EINVAL",
      `Bus ${type.name} was not initialized: pass its initcall in KernelOptions.initcalls`,
    );
  }
  return bus;
}

/** struct device_link: `consumer` needs `supplier` bound to work. */
export interface DeviceLink {
  /** The device that depends. */
  readonly consumer: Device;
  /** The device depended on. */
  readonly supplier: Device;
}

/** Options for a new {@linkcode Device}. */
export interface DeviceOptions {
  /** dev_name(), e.g. `"3010000.iommu"` or `"0000:00:01.0"`. */
  name: string;
  /** The bus the device sits on (needed by {@linkcode device_add}). */
  bus?: Bus | null;
  /** The parent device (a PCI device's host bridge, an aux device's creator). */
  parent?: Device | null;
  /** The firmware node describing the device. */
  fwnode?: FwNode | null;
}

/**
 * struct device: one device of a {@linkcode Kernel}.
 *
 * @example Binding a driver on a bus
 * ```ts
 * import assert from "node:assert/strict";
 * import { bus_register, Device, device_add, driver_register, Kernel } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const bus = bus_register(kernel, { name: "demo", match: (d, drv) => d.name === drv.name });
 * const dev = new Device(kernel, { name: "widget", bus });
 * device_add(dev);
 * driver_register(bus, { name: "widget", probe(d) { d.driverData = 42; } });
 * assert.equal(dev.state, "bound");
 * assert.equal(dev.driverData, 42);
 * ```
 */
export class Device {
  /** The kernel instance the device belongs to. */
  readonly kernel: Kernel;
  /** dev_name(). */
  readonly name: string;
  /** The bus, or null for a device outside any bus. */
  readonly bus: Bus | null;
  /** The parent device. */
  readonly parent: Device | null;
  /** dev->fwnode (a device-tree node for OF devices). */
  fwnode: FwNode | null;
  /** The bound driver (set during probe too, as Linux does). */
  driver: Driver | null = null;
  /** dev_get_drvdata(): the driver's private data. */
  driverData: unknown = null;
  /** Life-cycle state. */
  state: DeviceState = "new";
  /** Why the last probe deferred, for `devices_deferred`-style reports. */
  deferReason = "";
  /** dev->iommu_fwspec (in Linux under dev->iommu). */
  fwspec: IommuFwspec | null = null;
  /** dev->iommu: private to the IOMMU core. */
  iommu: unknown = null;
  /** dev->iommu_group: private to the IOMMU core. */
  iommuGroup: unknown = null;
  /** The DMA operations in force (direct mapping unless an IOMMU layer installs its own). */
  dma: DmaOps = dmaDirectOps;
  /** Streaming DMA mask in address bits (Linux's default is 32). */
  dmaMask = 32;
  /** Coherent DMA mask in address bits. */
  coherentDmaMask = 32;
  /** dev->msi.domain: where the device's MSIs are allocated (see `dev_set_msi_domain`). */
  msiDomain: IrqDomain | null = null;
  /** Links where this device is the consumer. */
  readonly suppliers: DeviceLink[] = [];
  /** Links where this device is the supplier. */
  readonly consumers: DeviceLink[] = [];
  /**
   * devres actions, run in reverse at unbind or failed probe (driver-core internal).
   * @ignore package-private
   */
  readonly _devres: (() => void)[] = [];

  /** Creates (does not add) a device; see {@linkcode device_add}. */
  constructor(kernel: Kernel, opts: DeviceOptions) {
    this.kernel = kernel;
    this.name = opts.name;
    this.bus = opts.bus ?? null;
    this.parent = opts.parent ?? null;
    this.fwnode = opts.fwnode ?? null;
  }
}

/** Mirrors dev_name(). */
export function dev_name(dev: Device): string {
  return dev.name;
}

/** Mirrors dev_get_drvdata(). */
export function dev_get_drvdata<T>(dev: Device): T {
  return dev.driverData as T;
}

/** Mirrors dev_set_drvdata(). */
export function dev_set_drvdata(dev: Device, data: unknown): void {
  dev.driverData = data;
}

/** Mirrors device_is_bound(). */
export function device_is_bound(dev: Device): boolean {
  return dev.state === "bound";
}

/**
 * Mirrors devm_add_action(): runs `action` when the driver unbinds or its probe fails, in
 * reverse order of registration.
 */
export function devm_add_action(dev: Device, action: () => void): void {
  dev._devres.push(action);
}

/**
 * Mirrors device_link_add(): `consumer` will not probe until `supplier` is bound, and is unbound
 * before `supplier` is. Returns the existing link if there is one; refuses cycles (`EINVAL`).
 */
export function device_link_add(consumer: Device, supplier: Device): DeviceLink {
  if (consumer === supplier || _dependsOn(supplier, consumer)) {
    throw new Errno("EINVAL", `Cannot link ${consumer.name} to ${supplier.name}: cycle`);
  }
  const old = consumer.suppliers.find((l) => l.supplier === supplier);
  if (old !== undefined) return old;
  const link = { consumer, supplier };
  consumer.suppliers.push(link);
  supplier.consumers.push(link);
  return link;
}

/** Mirrors device_link_del(). */
export function device_link_del(link: DeviceLink): void {
  _remove(link.consumer.suppliers, link);
  _remove(link.supplier.consumers, link);
  if (link.consumer.state === "deferred") link.consumer.kernel.core.trigger();
}

function _dependsOn(dev: Device, on: Device): boolean {
  return dev.suppliers.some((l) => l.supplier === on || _dependsOn(l.supplier, on));
}

/** After a probe attempt: bound or waiting, so no other driver should be tried. */
function _settled(dev: Device): boolean {
  return dev.state === "bound" || dev.state === "deferred";
}

function _remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

/**
 * Mirrors device_add(): puts `dev` on its bus, probes its IOMMU side (the IOMMU core's
 * BUS_NOTIFY_ADD_DEVICE, see {@linkcode device_iommu_probe}) and binds a matching driver if one
 * is registered.
 */
export function device_add(dev: Device): void {
  if (dev.bus === null) throw new Errno("EINVAL", `Cannot add ${dev.name}: no bus`);
  if (dev.state !== "new") throw new Errno("EEXIST", `Cannot add ${dev.name} twice`);
  if (dev.bus.devices.some((d) => d.name === dev.name)) {
    throw new Errno("EEXIST", `${dev.bus.name} already has a device named ${dev.name}`);
  }
  dev.state = "unbound";
  dev.bus.devices.push(dev);
  dev.kernel.core.devices.push(dev);
  dev.kernel.core.run(() => {
    device_iommu_probe(dev);
    dev.kernel.core.attach(dev);
  });
}

/**
 * Probes the IOMMU side of a device no driver is bound to: runs the bus's dma_configure, which
 * resolves `dev.fwspec` and hands the device to the IOMMU core when its IOMMU is registered, so
 * the device joins a group without a driver. Mirrors iommu_probe_device() as
 * iommu_bus_notifier() (device_add) and bus_iommu_probe() (iommu_device_register) call it, with
 * its replay of the bus's dma_configure. Errors are ignored, as the notifier ignores them: the
 * device stays without an IOMMU, and its driver's bind runs dma_configure again (deferring while
 * the IOMMU has no driver).
 */
export function device_iommu_probe(dev: Device): void {
  const type = dev.bus?.type;
  if (dev.kernel.iommuLayer === null || dev.iommu !== null || dev.driver !== null) return;
  if (type?.dmaConfigure === undefined || dev.state === "new" || dev.state === "removed") return;
  try {
    type.dmaConfigure(dev);
  } catch (e) {
    if (!(e instanceof Errno)) throw e;
  }
}

/**
 * Mirrors device_del() / device_unregister(): unbinds `dev` (and first its consumers), tells the
 * IOMMU layer, drops its links and takes it off its bus.
 */
export function device_del(dev: Device): void {
  if (dev.state === "new" || dev.state === "removed") {
    throw new Errno("ENODEV", `Cannot delete ${dev.name}: not added`);
  }
  const core = dev.kernel.core;
  core.run(() => {
    core.release(dev);
    if (dev.iommu !== null) dev.kernel.iommuLayer?.releaseDevice(dev);
    for (const l of [...dev.suppliers, ...dev.consumers]) device_link_del(l);
    _remove(dev.bus!.devices, dev);
    _remove(core.devices, dev);
    _remove(core.deferred, dev);
    dev.state = "removed";
  });
}

/** Mirrors device_unregister(). */
export const device_unregister = device_del;

/** Mirrors device_attach(): tries to bind `dev` now; true when bound. */
export function device_attach(dev: Device): boolean {
  dev.kernel.core.run(() => dev.kernel.core.attach(dev));
  return dev.state === "bound";
}

/** Mirrors device_release_driver(): unbinds `dev` (consumers first). */
export function device_release_driver(dev: Device): void {
  dev.kernel.core.run(() => dev.kernel.core.release(dev));
}

/** Mirrors driver_register(): adds `drv` to `bus` and binds it to every matching device. */
export function driver_register(bus: Bus, drv: Driver): void {
  if (bus.drivers.includes(drv) || bus.drivers.some((d) => d.name === drv.name)) {
    throw new Errno("EBUSY", `Driver '${drv.name}' is already registered on ${bus.name}`);
  }
  bus.drivers.push(drv);
  const core = bus.kernel.core;
  core.run(() => {
    for (const dev of [...bus.devices]) {
      if (dev.state !== "bound" && dev.state !== "probing" && bus.type.match(dev, drv)) {
        core.probe(dev, drv);
      }
    }
  });
}

/** Mirrors driver_unregister(): unbinds `drv` from its devices and removes it. */
export function driver_unregister(bus: Bus, drv: Driver): void {
  if (!bus.drivers.includes(drv)) {
    throw new Errno("ENODEV", `Driver '${drv.name}' is not registered on ${bus.name}`);
  }
  const core = bus.kernel.core;
  core.run(() => {
    for (const dev of [...bus.devices]) if (dev.driver === drv) core.release(dev);
    _remove(bus.drivers, drv);
  });
}

/**
 * The driver core of one kernel: device list, deferred-probe list, bind order. Reached as
 * `kernel.core`; drivers use the free functions above instead.
 */
export class DriverCore {
  /** Every added device, in add order (devices_kset). */
  readonly devices: Device[] = [];
  /** Devices waiting for a retry (deferred_probe_pending_list). */
  readonly deferred: Device[] = [];
  /** Bound devices in bind order; shutdown walks it backwards. */
  readonly bound: Device[] = [];
  /** Set once boot is over (see {@linkcode Kernel.lateInitcall}). */
  initDone = false;
  #depth = 0;
  #triggered = false;

  /** Creates the driver core of `kernel`. */
  constructor(readonly kernel: Kernel) {}

  /** Asks for the deferred list to be retried when the outermost driver-core call returns. */
  trigger(): void {
    this.#triggered = true;
    if (this.#depth === 0) this.run(() => {});
  }

  /** Runs a driver-core operation; retries deferred devices after the outermost one. */
  run(fn: () => void): void {
    this.#depth++;
    try {
      fn();
    } finally {
      this.#depth--;
    }
    if (this.#depth > 0) return;
    this.#depth++;
    try {
      while (this.#triggered) {
        this.#triggered = false;
        for (const dev of [...this.deferred]) {
          if (dev.state === "deferred") this.attach(dev);
        }
      }
    } finally {
      this.#depth--;
    }
  }

  /** __device_attach(): tries each matching driver in registration order. */
  attach(dev: Device): void {
    if (dev.state === "bound" || dev.state === "removed") return;
    for (const drv of [...dev.bus!.drivers]) {
      if (!dev.bus!.type.match(dev, drv)) continue;
      this.probe(dev, drv);
      if (_settled(dev)) return;
    }
  }

  /** really_probe(): supplier check, dma_configure, probe, cleanup on failure. */
  probe(dev: Device, drv: Driver): void {
    const waiting = dev.suppliers.find((l) => l.supplier.state !== "bound");
    if (waiting !== undefined) {
      this.#defer(dev, `wait for supplier ${waiting.supplier.name}`);
      return;
    }
    const type = dev.bus!.type;
    dev.state = "probing";
    dev.driver = drv;
    let configured = false;
    try {
      type.dmaConfigure?.(dev);
      configured = true;
      if (type.probe) type.probe(dev, drv);
      else drv.probe(dev);
    } catch (e) {
      this.#unwind(dev, configured);
      if (isErrno(e, "EPROBE_DEFER")) {
        this.#defer(dev, e.message);
        return;
      }
      dev.state = "unbound";
      _remove(this.deferred, dev);
      if (!(e instanceof Errno)) throw e;
      if (e.code === "ENODEV" || e.code === "ENXIO") {
        dev_dbg(dev, `probe with driver ${drv.name} rejects match ${-e.errno}`);
      } else {
        pr_warn(this.kernel, `${drv.name}: probe of ${dev.name} failed with error ${-e.errno}`);
      }
      return;
    }
    dev.state = "bound";
    dev.deferReason = "";
    _remove(this.deferred, dev);
    this.bound.push(dev);
    dev_dbg(dev, `bound to driver ${drv.name}`);
    this.#triggered = true;
  }

  /** __device_release_driver(): unbinds consumers, then `dev`; consumers wait to rebind. */
  release(dev: Device): void {
    _remove(this.deferred, dev);
    if (dev.state !== "bound") {
      if (dev.state === "deferred") dev.state = "unbound";
      return;
    }
    for (const l of [...dev.consumers]) {
      if (l.consumer.state === "bound") {
        this.release(l.consumer);
        this.#defer(l.consumer, `wait for supplier ${dev.name}`);
      }
    }
    const drv = dev.driver!;
    const type = dev.bus!.type;
    try {
      if (type.remove) type.remove(dev, drv);
      else drv.remove?.(dev);
    } finally {
      _remove(this.bound, dev);
      this.#unwind(dev, true);
      dev.state = "unbound";
    }
  }

  /** Mirrors device_shutdown(): shuts bound devices down, last bound first. */
  shutdown(): void {
    for (const dev of [...this.bound].reverse()) {
      const drv = dev.driver!;
      const type = dev.bus!.type;
      if (type.shutdown) type.shutdown(dev, drv);
      else drv.shutdown?.(dev);
    }
  }

  #defer(dev: Device, reason: string): void {
    dev.state = "deferred";
    dev.deferReason = reason;
    if (!this.deferred.includes(dev)) this.deferred.push(dev);
    dev_dbg(dev, `deferred probe pending: ${reason}`);
  }

  #unwind(dev: Device, configured: boolean): void {
    const actions = dev._devres.splice(0);
    for (let i = actions.length - 1; i >= 0; i--) actions[i]();
    if (configured) dev.bus!.type.dmaCleanup?.(dev);
    dev.driver = null;
    dev.driverData = null;
  }
}
