/**
 * The auxiliary bus: a driver splits a function into devices named `modname.devname.id` that
 * other drivers bind to by `modname.devname` (the HPM driver on the riscv-iommu, for one).
 *
 * @module
 */
import {
  _busOf,
  bus_register,
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
import type { Kernel } from "./kernel.ts";

/** struct auxiliary_device_id: `modname.devname` to bind to. */
export interface AuxiliaryDeviceId {
  /** `modname.devname`, e.g. `"riscv_iommu.hpm"`. */
  readonly name: string;
  /** Driver data for this match. */
  readonly data?: unknown;
}

/** struct auxiliary_driver. */
export interface AuxiliaryDriver extends Driver {
  /** Names the driver binds to. */
  readonly idTable: readonly AuxiliaryDeviceId[];
  /** Binds to `adev`, which matched `id`. */
  probe(adev: AuxiliaryDevice, id: AuxiliaryDeviceId): void;
  /** Unbinds. */
  remove?(adev: AuxiliaryDevice): void;
  /** Quiesces at shutdown. */
  shutdown?(adev: AuxiliaryDevice): void;
}

/** struct auxiliary_device: named `modname.devname.id`, child of the device that made it. */
export class AuxiliaryDevice extends Device {
  /** The creating module's name (KBUILD_MODNAME). */
  readonly modname: string;
  /** adev->name: the device's name within the module. */
  readonly devname: string;
  /** adev->id: instance number, unique per `modname.devname`. */
  readonly id: number;
  /** Data the parent hands the auxiliary driver (dev_get_platdata()). */
  readonly platformData: unknown;

  /** Mirrors auxiliary_device_init(): a device not yet added (see {@linkcode auxiliary_device_add}). */
  constructor(
    parent: Device,
    modname: string,
    devname: string,
    id: number,
    platformData?: unknown,
  ) {
    if (devname === "" || devname.includes(".") || !Number.isInteger(id) || id < 0) {
      throw new Errno("EINVAL", `Bad auxiliary device name ${modname}.${devname}.${id}`);
    }
    super(parent.kernel, {
      name: `${modname}.${devname}.${id}`,
      bus: _busOf(parent.kernel, auxiliary_bus_type),
      parent,
    });
    this.modname = modname;
    this.devname = devname;
    this.id = id;
    this.platformData = platformData;
  }
}

/** Mirrors auxiliary_match_id(): the entry whose name equals the device name without `.id`. */
export function auxiliary_match_id(
  ids: readonly AuxiliaryDeviceId[],
  adev: AuxiliaryDevice,
): AuxiliaryDeviceId | undefined {
  const want = adev.name.slice(0, adev.name.lastIndexOf("."));
  return ids.find((id) => id.name === want);
}

/** The auxiliary bus type. */
export const auxiliary_bus_type: BusType = {
  name: "auxiliary",
  match: (dev, drv) =>
    auxiliary_match_id((drv as AuxiliaryDriver).idTable, dev as AuxiliaryDevice) !== undefined,
  probe(dev, drv) {
    const adrv = drv as AuxiliaryDriver;
    adrv.probe(dev as AuxiliaryDevice, auxiliary_match_id(adrv.idTable, dev as AuxiliaryDevice)!);
  },
};

/** Mirrors auxiliary_device_add(): adds the device (EEXIST when the name is taken). */
export function auxiliary_device_add(adev: AuxiliaryDevice): void {
  device_add(adev);
}

/** Mirrors auxiliary_device_delete(). */
export function auxiliary_device_delete(adev: AuxiliaryDevice): void {
  device_del(adev);
}

/**
 * Mirrors auxiliary_device_create(): makes and adds `modname.devname.id` under `parent`.
 *
 * @example A parent driver spawning a device another driver binds
 * ```ts
 * import assert from "node:assert/strict";
 * import { auxiliary_bus_init, auxiliary_device_create, auxiliary_driver_register, Device, Kernel } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), initcalls: [auxiliary_bus_init] });
 * let bound = "";
 * auxiliary_driver_register(kernel, {
 *   name: "riscv_iommu_hpm",
 *   idTable: [{ name: "riscv_iommu.hpm" }],
 *   probe: (adev) => void (bound = adev.name),
 * });
 * const parent = new Device(kernel, { name: "3010000.iommu" });
 * auxiliary_device_create(parent, "riscv_iommu", "hpm", undefined, 0);
 * assert.equal(bound, "riscv_iommu.hpm.0");
 * ```
 */
export function auxiliary_device_create(
  parent: Device,
  modname: string,
  devname: string,
  platformData: unknown,
  id: number,
): AuxiliaryDevice {
  const adev = new AuxiliaryDevice(parent, modname, devname, id, platformData);
  auxiliary_device_add(adev);
  return adev;
}

/** Mirrors auxiliary_device_destroy(). */
export function auxiliary_device_destroy(adev: AuxiliaryDevice): void {
  auxiliary_device_delete(adev);
}

/** Mirrors devm_auxiliary_device_create(): destroyed when `parent`'s driver unbinds. */
export function devm_auxiliary_device_create(
  parent: Device,
  modname: string,
  devname: string,
  platformData: unknown,
  id = 0,
): AuxiliaryDevice {
  const adev = auxiliary_device_create(parent, modname, devname, platformData, id);
  devm_add_action(parent, () => auxiliary_device_destroy(adev));
  return adev;
}

/**
 * Mirrors auxiliary_bus_init() (called by driver_init()): registers the auxiliary bus. Pass it in
 * `KernelOptions.initcalls` for a kernel with auxiliary devices.
 */
export function auxiliary_bus_init(kernel: Kernel): void {
  bus_register(kernel, auxiliary_bus_type);
}

/** Mirrors auxiliary_driver_register() (EINVAL before {@linkcode auxiliary_bus_init} ran). */
export function auxiliary_driver_register(kernel: Kernel, drv: AuxiliaryDriver): void {
  driver_register(_busOf(kernel, auxiliary_bus_type), drv);
}

/** Mirrors auxiliary_driver_unregister(). */
export function auxiliary_driver_unregister(kernel: Kernel, drv: AuxiliaryDriver): void {
  driver_unregister(_busOf(kernel, auxiliary_bus_type), drv);
}
