/**
 * Test fixtures of the glue (kernel fixtures only, no silicon): kernels that present the fake
 * IOMMU of `@iommu-lab/riscv-iommu/testing` as a device-tree platform device or as a PCI
 * function with an MSI-X table over `msi_cfg_tbl`. The machine package runs the same glue on
 * the silicon model.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Device,
  device_release_driver,
  DeviceTree,
  type DtNode,
  IORESOURCE_IO,
  IORESOURCE_MEM,
  irq_domain_create_linear,
  irq_domain_create_msi,
  type IrqDomain,
  Kernel,
  MmioRecorder,
  msi_get_virq,
  of_platform_populate,
  PCI_DEVFN,
  pci_driver_init,
  pci_host_probe,
  pci_register_driver,
  type PciHostBridge,
  platform_bus_init,
  platform_driver_register,
  type PlatformDevice,
  SimClock,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import { iommu_subsys_init, type IommuCore } from "@iommu-lab/iommu";
import { type RiscvIommuDevice, RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
import { FAKE_IOMMU_CAPS, FakeIommu, type FakeIommuOptions } from "@iommu-lab/riscv-iommu/testing";
import { riscv_iommu_pci_driver } from "./pci.ts";
import { riscv_iommu_platform_driver } from "./platform.ts";

/** The fake's default `capabilities` with the given IGS (bits 29:28). */
export function capsWith(igs: number): bigint {
  return FAKE_IOMMU_CAPS | BigInt(igs) << 28n;
}

/** What both fixtures take besides the fake's variant. */
interface BootOptions extends FakeIommuOptions {
  /** Runs on the kernel just before the IOMMU is bound (to inject allocation failures). */
  beforeBind?: (kernel: Kernel) => void;
}

/**
 * A kernel with the IOMMU core on 64 MiB of test RAM, and a fake IOMMU (variant `opts`) in that
 * RAM, whose registers the kernel reaches at `[base, base + len)`.
 */
function _kernel(
  opts: FakeIommuOptions,
  base: number,
  len: number,
): { kernel: Kernel; core: IommuCore; fake: FakeIommu; rec: MmioRecorder } {
  const ram = new TestRam(0x8000_0000, 64 * 2 ** 20);
  const clock = new SimClock();
  const fake = new FakeIommu(ram, clock, opts);
  const rec = new MmioRecorder(fake);
  const kernel = new Kernel({
    mem: ram,
    clock,
    ioremap: (phys, size) =>
      phys >= base && phys + size <= base + len ? { backend: rec, offset: phys - base } : null,
    initcalls: [platform_bus_init, pci_driver_init],
  });
  return { kernel, core: iommu_subsys_init(kernel), fake, rec };
}

/** Options of {@linkcode platformSystem}. */
export interface PlatformSystemOptions extends BootOptions {
  /** Wired interrupts listed in the node (default 4). */
  irqs?: number;
  /** Give the node an `msi-parent` (default true). */
  msiParent?: boolean;
  /** Identities of the MSI domain (default 63). */
  msiIds?: number;
  /** The MSI doorbell's high address word (default 0). */
  msiAddressHi?: number;
  /** Leave out the node's `reg`. */
  noReg?: boolean;
  /** Register the wired interrupt domain only when the test calls `addWiredDomain()`. */
  lateWires?: boolean;
}

/** A booted kernel with a `riscv,iommu` node on the fake registers. */
export interface PlatformSystem {
  /** The kernel. */
  readonly kernel: Kernel;
  /** The IOMMU core. */
  readonly core: IommuCore;
  /** The fake IOMMU. */
  readonly fake: FakeIommu;
  /** Every register access of the glue and the core. */
  readonly rec: MmioRecorder;
  /** The IOMMU's platform device. */
  readonly pdev: PlatformDevice;
  /** The MSI domain (the node's msi-parent). */
  readonly msi: IrqDomain;
  /** The wired domain (null until added with `lateWires`). */
  wires: IrqDomain | null;
  /** Registers the wired domain (for `lateWires`). */
  addWiredDomain(): IrqDomain;
}

/** Boots a kernel whose device tree has an interrupt controller, an MSI controller and the IOMMU. */
export function platformSystem(opts: PlatformSystemOptions): PlatformSystem {
  const { kernel, core, fake, rec } = _kernel(opts, 0x301_0000, 0x1000);

  const dt = new DeviceTree();
  dt.root.set("#address-cells", [2]).set("#size-cells", [2]);
  const intc = dt.root.addChild("interrupt-controller@d000000")
    .set("interrupt-controller", true).set("#interrupt-cells", [1]);
  const imsic = dt.root.addChild("interrupt-controller@28000000")
    .set("msi-controller", true).set("#msi-cells", [0]);
  const node = dt.root.addChild("iommu@3010000").set("compatible", "riscv,iommu")
    .set("interrupt-parent", [dt.phandleOf(intc)])
    .set("interrupts", Array.from({ length: opts.irqs ?? 4 }, (_, i) => 36 + i))
    .set("#iommu-cells", [1]);
  if (!opts.noReg) node.set("reg", [0, 0x301_0000, 0, 0x1000]);
  if (opts.msiParent ?? true) node.set("msi-parent", [dt.phandleOf(imsic)]);

  const msi = irq_domain_create_msi(kernel, imsic, opts.msiIds ?? 63, {
    composeMsiMsg: (id) => ({
      addressLo: 0x2800_0000,
      addressHi: opts.msiAddressHi ?? 0,
      data: id,
    }),
  });
  const sys: PlatformSystem = {
    kernel,
    core,
    fake,
    rec,
    pdev: null!,
    msi,
    wires: null,
    addWiredDomain() {
      sys.wires = irq_domain_create_linear(kernel, intc, 96);
      return sys.wires;
    },
  };
  if (!opts.lateWires) sys.addWiredDomain();
  platform_driver_register(kernel, riscv_iommu_platform_driver(new RiscvIommuDriver()));
  opts.beforeBind?.(kernel);
  const devs = of_platform_populate(kernel, dt);
  (sys as { pdev: PlatformDevice }).pdev = devs.find((d) => d.ofNode === _find(dt, "iommu"))!;
  return sys;
}

function _find(dt: DeviceTree, base: string): DtNode | undefined {
  return dt.root.children.find((c) => c.baseName === base);
}

/** Options of {@linkcode pciSystem}. */
export interface PciSystemOptions extends BootOptions {
  /** Vendor and device ID (default 1b36:0014). */
  id?: [number, number];
  /** BAR0 size (default 4 KiB). */
  barSize?: number;
  /** BAR0 is an I/O BAR. */
  ioBar?: boolean;
  /** MSI-X table entries (default 16, one per msi_cfg_tbl entry; 0: no MSI-X capability). */
  msixVectors?: number;
  /** Give the host bridge an MSI domain (default true). */
  msiDomain?: boolean;
}

/** A booted kernel with the fake IOMMU as PCI function 00:01.0. */
export interface PciSystem {
  /** The kernel. */
  readonly kernel: Kernel;
  /** The IOMMU core. */
  readonly core: IommuCore;
  /** The fake IOMMU. */
  readonly fake: FakeIommu;
  /** Every register access of the glue, the core and the MSI-X code. */
  readonly rec: MmioRecorder;
  /** The host bridge (its `devices[0]` is the IOMMU function). */
  readonly host: PciHostBridge;
  /** The MSI domain of the host bridge (null with `msiDomain: false`). */
  readonly msi: IrqDomain | null;
}

const _BAR_BASE = 0x4000_0000;

/**
 * Boots a kernel with a host bridge whose only function is the fake IOMMU: BAR0 (64-bit memory)
 * holds the registers, the MSI-X capability's table is `msi_cfg_tbl` at BAR0 + 0x300.
 */
export function pciSystem(opts: PciSystemOptions): PciSystem {
  const size = opts.barSize ?? 0x1000;
  const { kernel, core, fake, rec } = _kernel(opts, _BAR_BASE, size);
  const msi = opts.msiDomain ?? true
    ? irq_domain_create_msi(kernel, null, 63, {
      composeMsiMsg: (id) => ({ addressLo: 0x2800_0000, addressHi: 0, data: id }),
    })
    : null;
  const [vendor, device] = opts.id ?? [0x1b36, 0x0014];
  const vectors = opts.msixVectors ?? 16;
  const cfg = new Uint32Array(64);
  cfg[0x00 >> 2] = (device << 16 | vendor) >>> 0;
  cfg[0x04 >> 2] = (vectors > 0 ? 0x10 : 0) << 16; // status: capabilities list
  cfg[0x08 >> 2] = 0x0806_0001; // class 0x080600, revision 1
  cfg[0x10 >> 2] = opts.ioBar ? 1 : 4; // I/O, or 64-bit memory
  if (vectors > 0) {
    cfg[0x34 >> 2] = 0x40;
    cfg[0x40 >> 2] = ((vectors - 1) << 16 | 0x11) >>> 0; // MSI-X, no next capability
    cfg[0x44 >> 2] = 0x300; // table: BAR0 + 0x300
    cfg[0x48 >> 2] = 0x400; // PBA: BAR0 + 0x400
  }
  const write = (where: number, v: number) => {
    const i = where >> 2;
    if (where === 0x04) cfg[i] = (cfg[i] & 0xffff_0000) | (v & 0x7);
    else if (where === 0x10) cfg[i] = opts.ioBar ? (v & ~(size - 1)) | 1 : (v & ~(size - 1)) | 4;
    else if (where === 0x14) cfg[i] = opts.ioBar ? 0 : v;
    else if (where === 0x40 && vectors > 0) cfg[i] = (cfg[i] & 0x3fff_ffff) | (v & 0xc000_0000);
  };
  pci_register_driver(kernel, riscv_iommu_pci_driver(new RiscvIommuDriver()));
  opts.beforeBind?.(kernel);
  const host = pci_host_probe(kernel, {
    accessor: {
      read32: (bus, devfn, where) =>
        bus === 0 && devfn === PCI_DEVFN(1, 0) ? cfg[where >> 2] : 0xffff_ffff,
      write32: (bus, devfn, where, v) => {
        if (bus === 0 && devfn === PCI_DEVFN(1, 0)) write(where, v >>> 0);
      },
    },
    windows: [{
      cpuAddr: _BAR_BASE,
      pciAddr: _BAR_BASE,
      size: 0x1000_0000,
      flags: opts.ioBar ? IORESOURCE_IO : IORESOURCE_MEM,
    }],
    msiDomain: msi,
  });
  return { kernel, core, fake, rec, host, msi };
}

/**
 * The fail-nth sweep both glues pass: boots with the `n`th page or object allocation failing, for
 * n = 1, 2, ... until an injection no longer fires. Each failed probe must leave a dmesg line, no
 * page, object, irq or MSI vector; a probe that survives (a smaller queue) must unbind clean.
 * Returns how many allocations the probe made of that kind.
 */
export function sweepProbeFailures(
  which: "pages" | "slab",
  boot: (beforeBind: (kernel: Kernel) => void) => { kernel: Kernel; dev: Device },
): number {
  for (let n = 1;; n++) {
    const { kernel, dev } = boot((k) => k[which].failNth(n));
    const iommu = dev.driverData as RiscvIommuDevice | null;
    const shrunk = iommu !== null && (iommu.cmdq.mask < 8191 || iommu.fltq.mask < 4095);
    if (dev.state === "bound") {
      if (!shrunk) return n - 1;
      device_release_driver(dev);
    } else {
      assert.ok(kernel.dmesg.grep("failed with error -12").length === 1, `no message at ${n}`);
    }
    assert.equal(dev.state, "unbound");
    assert.equal(kernel.pages.allocatedPages, 0, `pages leaked at ${which} ${n}`);
    assert.deepEqual(kernel.slab.allocations(), [], `objects leaked at ${which} ${n}`);
    assert.deepEqual(kernel.irq.procInterrupts(), [], `irqs left at ${which} ${n}`);
    assert.equal(msi_get_virq(dev, 0), 0, `MSI vectors left at ${which} ${n}`);
  }
}
