/**
 * The platform bus: devices created from device-tree nodes with `compatible` (or registered by
 * code with explicit resources), drivers matched by `compatible` (or by name), resources,
 * interrupts and platform MSIs.
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
  type Driver,
  driver_register,
  driver_unregister,
} from "./device.ts";
import { Errno, isErrno } from "./errno.ts";
import type { DeviceTree, DtNode } from "./fdt.ts";
import { type IoMem, ioremap } from "./io.ts";
import {
  dev_set_msi_domain,
  irq_create_mapping,
  irq_find_matching_fwnode,
  msi_domain_alloc_irqs,
  msi_domain_free_irqs_all,
  type MsiDesc,
  type MsiMsg,
} from "./irq.ts";
import type { Kernel } from "./kernel.ts";
import {
  of_address_to_resource,
  of_device_is_available,
  of_device_is_compatible,
  of_get_address,
  of_irq_parse_one,
  of_parse_phandle_with_args,
  of_property_match_string,
  of_property_read_string_array,
  of_translate_address,
} from "./of.ts";
import { of_iommu_configure } from "./of_iommu.ts";
import { dev_err } from "./printk.ts";
import {
  IORESOURCE_IRQ,
  IORESOURCE_MEM,
  type Resource,
  resource_size,
  resource_type,
} from "./resource.ts";
import { hex } from "./vsprintf.ts";

/** struct of_device_id: one `compatible` a driver handles, with per-match data. */
export interface OfDeviceId {
  /** The compatible string. */
  readonly compatible: string;
  /** Driver data for this match (of_device_get_match_data()). */
  readonly data?: unknown;
}

/** struct platform_driver. */
export interface PlatformDriver extends Driver {
  /** Device-tree matches; without a match here, the driver name matches the device name. */
  readonly ofMatchTable?: readonly OfDeviceId[];
  /** Binds to a platform device. */
  probe(pdev: PlatformDevice): void;
  /** Unbinds. */
  remove?(pdev: PlatformDevice): void;
  /** Quiesces at shutdown. */
  shutdown?(pdev: PlatformDevice): void;
}

/** Options for {@linkcode platform_device_alloc}. */
export interface PlatformDeviceOptions {
  /** pdev->name, matched against driver names when there is no device-tree match. */
  name: string;
  /** Instance id appended as `name.id` (-1 for none, the default). */
  id?: number;
  /** Explicit resources (MMIO ranges, IRQ numbers). */
  resources?: readonly Resource[];
  /** The parent device. */
  parent?: Device | null;
}

/** struct platform_device. */
export class PlatformDevice extends Device {
  /** The device-tree node the device was created from, if any. */
  readonly ofNode: DtNode | null;
  /** pdev->name. */
  readonly platformName: string;
  /** pdev->id (-1 when none). */
  readonly id: number;
  /** MMIO (and, for code-registered devices, IRQ) resources. */
  readonly resources: readonly Resource[];

  /** Use {@linkcode of_platform_populate} or {@linkcode platform_device_alloc}. */
  constructor(
    kernel: Kernel,
    devName: string,
    opts: PlatformDeviceOptions & { ofNode?: DtNode | null },
  ) {
    super(kernel, {
      name: devName,
      bus: _busOf(kernel, platform_bus_type),
      parent: opts.parent ?? null,
      fwnode: opts.ofNode ?? null,
    });
    this.ofNode = opts.ofNode ?? null;
    this.platformName = opts.name;
    this.id = opts.id ?? -1;
    this.resources = opts.resources ?? [];
  }
}

/** Mirrors to_platform_device(): EINVAL when `dev` is not one. */
export function to_platform_device(dev: Device): PlatformDevice {
  if (!(dev instanceof PlatformDevice)) {
    throw new Errno("EINVAL", `${dev.name} is not a platform device`);
  }
  return dev;
}

/** Mirrors dev_of_node(): the device's device-tree node, or null. */
export function dev_of_node(dev: Device): DtNode | null {
  return dev instanceof PlatformDevice ? dev.ofNode : null;
}

/** Mirrors of_match_node(): the table entry for the node's most specific compatible. */
export function of_match_node(
  table: readonly OfDeviceId[],
  np: DtNode,
): OfDeviceId | undefined {
  for (const c of of_property_read_string_array(np, "compatible")) {
    const hit = table.find((e) => e.compatible === c);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/** Mirrors of_device_get_match_data(): the matched entry's data for a bound platform driver. */
export function of_device_get_match_data<T = unknown>(dev: Device): T | undefined {
  const np = dev_of_node(dev);
  const table = (dev.driver as PlatformDriver | null)?.ofMatchTable;
  if (np === null || table === undefined) return undefined;
  return of_match_node(table, np)?.data as T | undefined;
}

/** The platform bus type (platform_match, DT-based dma_configure). */
export const platform_bus_type: BusType = {
  name: "platform",
  match(dev, drv) {
    const pdev = dev as PlatformDevice;
    const table = (drv as PlatformDriver).ofMatchTable;
    if (pdev.ofNode !== null && table !== undefined && of_match_node(table, pdev.ofNode)) {
      return true;
    }
    return pdev.platformName === drv.name;
  },
  dmaConfigure(dev) {
    const np = (dev as PlatformDevice).ofNode;
    if (np !== null) of_iommu_configure(dev, np);
  },
};

/** Mirrors of_device_make_bus_id(): `3010000.iommu` from the translated `reg`, else the node name. */
function _busId(np: DtNode): string {
  let name = "";
  for (let n: DtNode = np; n.parent !== null; n = n.parent) {
    const a = of_get_address(n, 0);
    if (a !== undefined) {
      const addr = hex(of_translate_address(n, a.address), 0, "");
      return name === "" ? `${addr}.${n.baseName}` : `${addr}.${n.baseName}:${name}`;
    }
    name = name === "" ? n.name : `${n.name}:${name}`;
  }
  return name;
}

/** Mirrors of_msi_configure(): sets `dev`'s MSI domain from `msi-parent` (if registered). */
export function of_msi_configure(dev: Device, np: DtNode): void {
  const parent = of_parse_phandle_with_args(np, "msi-parent", "#msi-cells", 0);
  if (parent !== undefined) {
    dev_set_msi_domain(dev, irq_find_matching_fwnode(dev.kernel, parent.np));
  }
}

function _createOf(kernel: Kernel, np: DtNode, parent: Device | null): PlatformDevice {
  const resources: Resource[] = [];
  for (let i = 0;; i++) {
    const r = of_address_to_resource(np, i);
    if (r === undefined) break;
    resources.push(r);
  }
  const pdev = new PlatformDevice(kernel, _busId(np), {
    name: np.baseName,
    resources,
    parent,
    ofNode: np,
  });
  of_msi_configure(pdev, np);
  return pdev;
}

function _populate(
  kernel: Kernel,
  bus: DtNode,
  parent: Device | null,
  out: PlatformDevice[],
): void {
  for (const np of bus.children) {
    if (!np.props.has("compatible") || !of_device_is_available(np)) continue;
    const pdev = _createOf(kernel, np, parent);
    device_add(pdev);
    out.push(pdev);
    if (of_device_is_compatible(np, "simple-bus") || of_device_is_compatible(np, "simple-mfd")) {
      _populate(kernel, np, pdev, out);
    }
  }
}

/**
 * Mirrors of_platform_default_populate(): makes `dt` the kernel's device tree and adds a platform
 * device for every available node with `compatible` under the root, descending into
 * `simple-bus` nodes. Returns the devices in creation order.
 *
 * @example Populating the board of testdata/virt.dts
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeviceTree, Kernel, of_platform_populate, platform_bus_init } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const dt = new DeviceTree();
 * const soc = dt.root.addChild("soc").set("compatible", "simple-bus").set("ranges", true);
 * soc.addChild("iommu@3010000").set("compatible", "riscv,iommu").set("reg", [0x301_0000, 0x1000]);
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), initcalls: [platform_bus_init] });
 * const devs = of_platform_populate(kernel, dt);
 * assert.deepEqual(devs.map((d) => d.name), ["soc", "3010000.iommu"]);
 * ```
 */
export function of_platform_populate(kernel: Kernel, dt: DeviceTree): PlatformDevice[] {
  kernel.deviceTree = dt;
  const out: PlatformDevice[] = [];
  kernel.core.run(() => _populate(kernel, dt.root, null, out));
  return out;
}

/** Mirrors platform_device_alloc(): a device registered by code, named `name.id` or `name`. */
export function platform_device_alloc(kernel: Kernel, opts: PlatformDeviceOptions): PlatformDevice {
  const id = opts.id ?? -1;
  return new PlatformDevice(kernel, id >= 0 ? `${opts.name}.${id}` : opts.name, opts);
}

/** Mirrors platform_device_register(). */
export function platform_device_register(pdev: PlatformDevice): void {
  device_add(pdev);
}

/** Mirrors platform_device_unregister(). */
export function platform_device_unregister(pdev: PlatformDevice): void {
  device_del(pdev);
}

/**
 * Mirrors platform_bus_init() (called by driver_init()): registers the platform bus. Pass it in
 * `KernelOptions.initcalls` for a kernel with platform devices.
 */
export function platform_bus_init(kernel: Kernel): void {
  bus_register(kernel, platform_bus_type);
}

/** Mirrors platform_driver_register() (EINVAL before {@linkcode platform_bus_init} ran). */
export function platform_driver_register(kernel: Kernel, drv: PlatformDriver): void {
  driver_register(_busOf(kernel, platform_bus_type), drv);
}

/** Mirrors platform_driver_unregister(). */
export function platform_driver_unregister(kernel: Kernel, drv: PlatformDriver): void {
  driver_unregister(_busOf(kernel, platform_bus_type), drv);
}

/** Mirrors platform_get_resource(): the `num`th resource of `type`, or null. */
export function platform_get_resource(
  pdev: PlatformDevice,
  type: number,
  num: number,
): Resource | null {
  return pdev.resources.filter((r) => resource_type(r) === type)[num] ?? null;
}

/** Mirrors platform_get_resource_byname(). */
export function platform_get_resource_byname(
  pdev: PlatformDevice,
  type: number,
  name: string,
): Resource | null {
  return pdev.resources.find((r) => resource_type(r) === type && r.name === name) ?? null;
}

/**
 * Mirrors platform_get_irq_optional(): the virq of interrupt `num`. ENXIO when there is none,
 * EPROBE_DEFER while its interrupt controller has no irq domain yet.
 */
export function platform_get_irq_optional(pdev: PlatformDevice, num: number): number {
  if (pdev.ofNode === null) {
    const r = platform_get_resource(pdev, IORESOURCE_IRQ, num);
    if (r === null) throw new Errno("ENXIO", `${pdev.name}: no IRQ ${num}`);
    return r.start;
  }
  const spec = of_irq_parse_one(pdev.ofNode, num);
  if (spec === undefined) throw new Errno("ENXIO", `${pdev.name}: no IRQ ${num}`);
  const domain = irq_find_matching_fwnode(pdev.kernel, spec.np);
  if (domain === null) {
    throw new Errno("EPROBE_DEFER", `${pdev.name}: no irq domain for ${spec.np.fullName} yet`);
  }
  return irq_create_mapping(domain, domain.ops.xlate?.(spec.args) ?? spec.args[0]);
}

/** Mirrors platform_get_irq(): as the optional variant, logging when the IRQ is missing. */
export function platform_get_irq(pdev: PlatformDevice, num: number): number {
  try {
    return platform_get_irq_optional(pdev, num);
  } catch (e) {
    if (isErrno(e, "ENXIO")) dev_err(pdev, `IRQ index ${num} not found`);
    throw e;
  }
}

/** Mirrors platform_get_irq_byname(): the interrupt named in `interrupt-names`. */
export function platform_get_irq_byname(pdev: PlatformDevice, name: string): number {
  const i = pdev.ofNode === null
    ? -1
    : of_property_match_string(pdev.ofNode, "interrupt-names", name);
  if (i < 0) {
    dev_err(pdev, `IRQ ${name} not found`);
    throw new Errno("ENXIO", `${pdev.name}: no IRQ named ${name}`);
  }
  return platform_get_irq(pdev, i);
}

/** Mirrors platform_irq_count(): how many IRQs resolve (EPROBE_DEFER while one cannot yet). */
export function platform_irq_count(pdev: PlatformDevice): number {
  for (let n = 0;; n++) {
    try {
      platform_get_irq_optional(pdev, n);
    } catch (e) {
      if (isErrno(e, "ENXIO")) return n;
      throw e;
    }
  }
}

/** Mirrors devm_ioremap_resource(): maps an IORESOURCE_MEM (EINVAL for another type). */
export function devm_ioremap_resource(dev: Device, res: Resource | null): IoMem {
  if (res === null || resource_type(res) !== IORESOURCE_MEM) {
    dev_err(dev, "invalid resource");
    throw new Errno("EINVAL", `${dev.name}: invalid resource`);
  }
  return ioremap(dev.kernel, res.start, resource_size(res));
}

/** Mirrors devm_platform_ioremap_resource(): maps MMIO resource `index`. */
export function devm_platform_ioremap_resource(pdev: PlatformDevice, index: number): IoMem {
  return devm_ioremap_resource(pdev, platform_get_resource(pdev, IORESOURCE_MEM, index));
}

/** irq_write_msi_msg_t: programs a platform device's own MSI registers for one vector. */
export type IrqWriteMsiMsg = (desc: MsiDesc, msg: MsiMsg) => void;

/**
 * Mirrors platform_device_msi_init_and_alloc_irqs(): allocates `nvec` MSIs from `dev`'s MSI
 * domain and calls `writeMsiMsg` so the device learns where to write; the virqs come from
 * `msi_get_virq(dev, i)`. ENODEV without an MSI domain, ENOSPC when it is full.
 */
export function platform_device_msi_init_and_alloc_irqs(
  dev: Device,
  nvec: number,
  writeMsiMsg: IrqWriteMsiMsg,
): void {
  msi_domain_alloc_irqs(dev, nvec, { write: writeMsiMsg });
}

/** Mirrors platform_device_msi_free_irqs_all(). */
export function platform_device_msi_free_irqs_all(dev: Device): void {
  msi_domain_free_irqs_all(dev);
}
