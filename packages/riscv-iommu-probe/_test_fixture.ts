/**
 * Test fixtures of the glue (kernel fixtures only, no silicon): a fake IOMMU register file that
 * knows just enough for `riscv_iommu_init()` to succeed, and kernels that present it as a
 * device-tree platform device or as a PCI function with an MSI-X table over `msi_cfg_tbl`.
 *
 * The fake decodes offsets from the spec's register map on its own (numbers, not `bits.ts`), so
 * a wrong offset in the glue shows up as a failing test. Commands complete as soon as the tail
 * is written; nothing else (faults, interrupts) happens. The machine package runs the same glue
 * on the silicon model.
 *
 * @module
 */
import {
  DeviceTree,
  type DtNode,
  IORESOURCE_IO,
  IORESOURCE_MEM,
  irq_domain_create_linear,
  irq_domain_create_msi,
  type IrqDomain,
  Kernel,
  type MmioBackend,
  MmioRecorder,
  of_platform_populate,
  PCI_DEVFN,
  pci_host_probe,
  pci_register_driver,
  type PciHostBridge,
  platform_driver_register,
  type PlatformDevice,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import { iommu_subsys_init, type IommuCore } from "@iommu-lab/iommu";
import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
import { riscv_iommu_pci_driver } from "./pci.ts";
import { riscv_iommu_platform_driver } from "./platform.ts";

/** capabilities.IGS values (spec: 0 MSI, 1 WSI, 2 BOTH, 3 reserved). */
export const IGS = { MSI: 0, WSI: 1, BOTH: 2, RSRV: 3 } as const;

/** `capabilities` with Sv39/48/57 (bits 9-11), version 1.0 and the given IGS (bits 29:28). */
export function capsWith(igs: number): bigint {
  return 0x10n | 7n << 9n | BigInt(igs) << 28n;
}

/** A fake RISC-V IOMMU register page (offsets from the spec's register map). */
export class FakeIommuRegs implements MmioBackend {
  /** `capabilities`. */
  readonly caps: bigint;
  /** `fctl` (WSI is bit 1). */
  fctl: number;
  /** `ddtp`. */
  ddtp = 0n;
  /** `icvec`. */
  icvec = 0n;
  /** `cqb`, `fqb`, `pqb`. */
  readonly qb = [0n, 0n, 0n];
  /** `cqh`, `fqh`, `pqh`. */
  readonly qh = [0, 0, 0];
  /** `cqt`, `fqt`, `pqt`. */
  readonly qt = [0, 0, 0];
  /** `cqcsr`, `fqcsr`, `pqcsr`. */
  readonly csr = [0, 0, 0];
  /** `msi_cfg_tbl` addresses. */
  readonly msiAddr: bigint[] = new Array(16).fill(0n);
  /** `msi_cfg_tbl` data. */
  readonly msiData: number[] = new Array(16).fill(0);
  /** `msi_cfg_tbl` vector control (reset: masked). */
  readonly msiCtl: number[] = new Array(16).fill(1);

  /** A page with `caps`; `fctl.WSI` resets to 1 for WSI-only hardware, else to `wsiReset`. */
  constructor(caps: bigint, wsiReset = false) {
    this.caps = caps;
    const igs = Number(caps >> 28n & 3n);
    this.fctl = igs === IGS.WSI || (igs === IGS.BOTH && wsiReset) ? 2 : 0;
  }

  /** ddtp.iommu_mode. */
  get ddtMode(): number {
    return Number(this.ddtp & 0xfn);
  }

  /** Reads 8 bytes. */
  read64(off: number): bigint {
    if (off === 0x00) return this.caps;
    if (off === 0x10) return this.ddtp;
    if (off === 0x18 || off === 0x28 || off === 0x38) return this.qb[(off - 0x18) >> 4];
    if (off === 0x2f8) return this.icvec;
    if (off >= 0x300 && off < 0x400 && (off & 0xf) === 0) return this.msiAddr[(off - 0x300) >> 4];
    return BigInt(this.read32(off)) | BigInt(this.read32(off + 4)) << 32n;
  }

  /** Writes 8 bytes. */
  write64(off: number, v: bigint): void {
    if (off === 0x10) {
      this.ddtp = v & ((2n ** 44n - 1n) << 10n | 0xfn);
    } else if (off === 0x18 || off === 0x28 || off === 0x38) {
      // LOG2SZ is WARL: at most 2^10 entries here.
      const log2 = v & 0x1fn;
      this.qb[(off - 0x18) >> 4] = (v & (2n ** 44n - 1n) << 10n) | (log2 > 9n ? 9n : log2);
    } else if (off === 0x2f8) {
      this.icvec = v & 0xffffn;
    } else if (off >= 0x300 && off < 0x400 && (off & 0xf) === 0) {
      this.msiAddr[(off - 0x300) >> 4] = v & (2n ** 56n - 4n);
    } else {
      this.write32(off, Number(v & 0xffff_ffffn));
      this.write32(off + 4, Number(v >> 32n));
    }
  }

  /** Reads 4 bytes. */
  read32(off: number): number {
    if (off === 0x08) return this.fctl;
    if (off === 0x20 || off === 0x30 || off === 0x40) return this.qh[(off - 0x20) >> 4];
    if (off === 0x24 || off === 0x34 || off === 0x44) return this.qt[(off - 0x24) >> 4];
    if (off === 0x48 || off === 0x4c || off === 0x50) return this.csr[(off - 0x48) >> 2];
    if (off >= 0x300 && off < 0x400) {
      const n = (off - 0x300) >> 4;
      if ((off & 0xf) === 0x8) return this.msiData[n];
      if ((off & 0xf) === 0xc) return this.msiCtl[n];
    }
    if (off % 4 === 0 && off < 0x1000) {
      const v = this.read64(off & ~7);
      return Number(off & 4 ? v >> 32n : v & 0xffff_ffffn);
    }
    return 0;
  }

  /** Writes 4 bytes. */
  write32(off: number, v: number): void {
    if (off === 0x08) {
      // fctl.WSI is writable only when both methods are supported.
      if (Number(this.caps >> 28n & 3n) === IGS.BOTH) this.fctl = (this.fctl & ~2) | (v & 2);
    } else if (off === 0x24) {
      this.qt[0] = v;
      this.qh[0] = v; // every command completes at once
    } else if (off === 0x30 || off === 0x40) {
      this.qh[(off - 0x20) >> 4] = v;
    } else if (off === 0x48 || off === 0x4c || off === 0x50) {
      // EN (bit 0) shows as ON (bit 16) at once; MF and the error bits are RW1C.
      const q = (off - 0x48) >> 2;
      this.csr[q] = (this.csr[q] & 0xf00 & ~v) | (v & 3) | (v & 1 ? 1 << 16 : 0);
    } else if (off >= 0x300 && off < 0x400) {
      const n = (off - 0x300) >> 4;
      const lo = this.msiAddr[n] & 0xffff_ffffn, hi = this.msiAddr[n] >> 32n;
      // 32-bit halves of ADDR, as an MSI-X table is written.
      if ((off & 0xf) === 0x0) this.msiAddr[n] = (hi << 32n | BigInt(v >>> 0)) & (2n ** 56n - 4n);
      else if ((off & 0xf) === 0x4) {
        this.msiAddr[n] = (BigInt(v >>> 0) << 32n | lo) & (2n ** 56n - 4n);
      } else if ((off & 0xf) === 0x8) this.msiData[n] = v >>> 0;
      else this.msiCtl[n] = v & 1;
    }
  }
}

/** A kernel with the IOMMU core on 64 MiB of test RAM, reaching `regs` at `[base, base + len)`. */
function _kernel(
  regs: MmioRecorder,
  base: number,
  len: number,
): { kernel: Kernel; core: IommuCore } {
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 64 * 2 ** 20),
    ioremap: (phys, size) =>
      phys >= base && phys + size <= base + len ? { backend: regs, offset: phys - base } : null,
  });
  return { kernel, core: iommu_subsys_init(kernel) };
}

/** Options of {@linkcode platformSystem}. */
export interface PlatformSystemOptions {
  /** `capabilities` of the fake. */
  caps: bigint;
  /** `fctl.WSI` after reset when IGS is BOTH. */
  wsiReset?: boolean;
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
  /** The fake registers. */
  readonly regs: FakeIommuRegs;
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
  const regs = new FakeIommuRegs(opts.caps, opts.wsiReset);
  const rec = new MmioRecorder(regs);
  const { kernel, core } = _kernel(rec, 0x301_0000, 0x1000);

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
    regs,
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
  const devs = of_platform_populate(kernel, dt);
  (sys as { pdev: PlatformDevice }).pdev = devs.find((d) => d.ofNode === _find(dt, "iommu"))!;
  return sys;
}

function _find(dt: DeviceTree, base: string): DtNode | undefined {
  return dt.root.children.find((c) => c.baseName === base);
}

/** Options of {@linkcode pciSystem}. */
export interface PciSystemOptions {
  /** `capabilities` of the fake. */
  caps: bigint;
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
  /** The fake registers. */
  readonly regs: FakeIommuRegs;
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
  const regs = new FakeIommuRegs(opts.caps);
  const rec = new MmioRecorder(regs);
  const size = opts.barSize ?? 0x1000;
  const { kernel, core } = _kernel(rec, _BAR_BASE, size);
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
  return { kernel, core, regs, rec, host, msi };
}
