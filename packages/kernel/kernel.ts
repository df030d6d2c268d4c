/**
 * The kernel instance: owns the clock, dmesg, page allocator, driver core and irq layer; the
 * buses register through the initcalls its creator passes. Nothing in this package is global;
 * two kernels (a host and a guest) live side by side.
 *
 * @module
 */
import { type Bus, type Device, DriverCore, type FwNode } from "./device.ts";
import { Errno } from "./errno.ts";
import type { IoremapFn } from "./io.ts";
import { IrqLayer, type MsiDesc } from "./irq.ts";
import type { MmStruct } from "./mm.ts";
import { type MemRange, PageAllocator } from "./page_alloc.ts";
import type { PhysMem } from "./phys.ts";
import type { DeviceTree } from "./fdt.ts";
import { Dmesg } from "./printk.ts";
import { Slab } from "./slab.ts";
import { Sysfs } from "./sysfs.ts";
import { type Clock, SimClock } from "./time.ts";

/**
 * What the driver core needs from the IOMMU core (`@iommu-lab/iommu` installs it in
 * {@linkcode Kernel.iommuLayer}). Without it, devices behind an IOMMU wait until
 * {@linkcode Kernel.lateInitcall} and then use direct DMA.
 */
export interface IommuLayer {
  /**
   * Mirrors iommu_ops_from_fwnode() + ops->of_xlate: the xlate of the IOMMU registered for
   * `fwnode`, or null while none is (the consumer's probe then defers).
   */
  ofXlate(fwnode: FwNode): ((dev: Device, args: readonly number[]) => void) | null;
  /**
   * Mirrors iommu_probe_device(): called in dma_configure once `dev.fwspec` is complete, which
   * happens when the device is added (see `device_iommu_probe`), when its IOMMU registers, and
   * at driver bind if neither got it done. It sets `dev.iommu` on success, and is not called
   * again while `dev.iommu` is set (a re-bind keeps the device's IOMMU state, as in Linux).
   * Throwing `ENODEV` means "no IOMMU for this device"; the fwspec is then dropped and the
   * device uses direct DMA.
   */
  probeDevice(dev: Device): void;
  /**
   * Mirrors iommu_release_device(): called by device_del() for a device with `dev.iommu` set;
   * clears `dev.iommu` (and `dev.fwspec`).
   */
  releaseDevice(dev: Device): void;
  /**
   * Mirrors iommu_dma_prepare_msi(): maps the MSI doorbell at `msiAddr` where `desc.dev`'s
   * current domain needs it and records the mapping in `desc` (`iommuMsiIova`/`iommuMsiShift`);
   * leaves `desc` alone for a device without an IOMMU or in an identity domain. Throws an errno
   * (ENOMEM when the doorbell cannot be mapped).
   */
  prepareMsi(desc: MsiDesc, msiAddr: number): void;
  /**
   * Mirrors mm_pasid_drop(), called by the last mmdrop() of `mm`: gives back the PASID SVA
   * allocated for it (mm->iommu_mm) and frees that data. Optional: without it no mm has one.
   */
  mmPasidDrop?(mm: MmStruct): void;
}

/**
 * One initcall: runs once while the kernel is built, after its core state exists (Linux's
 * initcall levels, flattened into the order of {@linkcode KernelOptions.initcalls}).
 */
export type Initcall = (kernel: Kernel) => void;

/** Options for a {@linkcode Kernel}. */
export interface KernelOptions {
  /** Physical memory as the CPU sees it. */
  mem: PhysMem;
  /** RAM the page allocator manages; defaults to `mem.base`/`mem.size` when `mem` has them. */
  ram?: readonly MemRange[];
  /** RAM the page allocator must not hand out (firmware, the DTB). */
  reserved?: readonly MemRange[];
  /** The simulated clock; a fresh {@linkcode SimClock} by default. */
  clock?: Clock;
  /** dmesg ring size in records. */
  dmesgSize?: number;
  /** Finds device registers for {@linkcode ioremap}; without it every ioremap fails. */
  ioremap?: IoremapFn;
  /**
   * Run in order once the core state exists: the buses the kernel has
   * (`platform_bus_init`, `pci_driver_init`, `auxiliary_bus_init`), as the machine's
   * configuration selects them.
   */
  initcalls?: readonly Initcall[];
}

/**
 * One kernel: the root every device, driver and allocation hangs off.
 *
 * @example Booting an empty kernel on test RAM
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel, pr_info } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * pr_info(kernel, "Booting");
 * assert.equal(kernel.pages.totalPages, 4096);
 * assert.deepEqual(kernel.dmesg.lines(), ["[    0.000000] Booting"]);
 * ```
 */
export class Kernel {
  /** CPU access to physical memory. */
  readonly mem: PhysMem;
  /** Simulated time. */
  readonly clock: Clock;
  /** The kernel log. */
  readonly dmesg: Dmesg;
  /** The page allocator. */
  readonly pages: PageAllocator;
  /** Object allocation accounting (kmalloc/kfree, failslab). */
  readonly slab: Slab = new Slab();
  /** The sysfs tree (`/sys`) drivers publish attributes in. */
  readonly sysfs: Sysfs = new Sysfs();
  /** Registered buses by name (see {@linkcode KernelOptions.initcalls}). */
  readonly buses: Map<string, Bus> = new Map();
  /** The driver core (device list, deferred probe). */
  readonly core: DriverCore;
  /** The irq layer (virqs, domains, handlers). */
  readonly irq: IrqLayer;
  /** The device tree the platform bus was populated from (of_root), if any. */
  deviceTree: DeviceTree | null = null;
  /** The IOMMU core's hooks, once it is loaded. */
  iommuLayer: IommuLayer | null = null;
  /** Where {@linkcode ioremap} finds registers. */
  readonly ioremapFn: IoremapFn | null;

  /** Builds a kernel over `opts.mem`. */
  constructor(opts: KernelOptions) {
    this.mem = opts.mem;
    this.clock = opts.clock ?? new SimClock();
    this.dmesg = new Dmesg(this.clock, opts.dmesgSize);
    const ram = opts.ram ?? _ramOf(opts.mem);
    this.pages = new PageAllocator(opts.mem, ram, opts.reserved);
    this.core = new DriverCore(this);
    this.irq = new IrqLayer(this);
    this.ioremapFn = opts.ioremap ?? null;
    for (const initcall of opts.initcalls ?? []) initcall(this);
  }

  /**
   * Mirrors deferred_probe_initcall(): boot is over. Deferred devices are retried, and from now
   * on a missing optional supplier (an IOMMU whose driver never loaded) no longer defers.
   */
  lateInitcall(): void {
    this.core.initDone = true;
    this.core.trigger();
  }

  /** Mirrors kernel_power_off()'s device_shutdown(): shuts devices down, last bound first. */
  shutdown(): void {
    this.core.shutdown();
  }
}

function _ramOf(mem: PhysMem): MemRange[] {
  const m = mem as Partial<MemRange>;
  if (typeof m.base !== "number" || typeof m.size !== "number") {
    throw new Errno("EINVAL", "Cannot find the RAM ranges: pass KernelOptions.ram");
  }
  return [{ base: m.base, size: m.size }];
}
