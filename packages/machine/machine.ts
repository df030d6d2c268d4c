/**
 * The composition root: builds a `virt`-like machine from the silicon, generates its device
 * tree, boots a kernel from that blob with the chosen driver packages, and hands back what a
 * test, a tool or a demo needs (dmesg, devices, the DMA channels, the silicon, a trace).
 *
 * @module
 */
import {
  Aplic,
  Clock,
  type CostTable,
  DmaEngine,
  type DmaEngineOptions,
  Imsic,
  type IoatcOptions,
  Iommu,
  type IommuCaps,
  type IommuOptions,
  IommuPciFunction,
  type MmioHandler,
  PhysicalMemory,
  type Region,
  RootComplex,
  SPACEMIT_T100_IOATS_HPM,
  SpacemitT100,
} from "@iommu-lab/hw";
import { APLIC_S_BASE, APLIC_SIZE, IMSIC_MMIO_PAGE_SZ, IMSIC_S_BASE } from "@iommu-lab/hw/regs";
import {
  auxiliary_bus_init,
  type Device,
  DeviceTree,
  type IoremapFn,
  Kernel,
  of_platform_populate,
  of_property_read_string,
  pci_driver_init,
  pci_host_generic_driver,
  pci_register_driver,
  type PciDev,
  platform_bus_init,
  platform_driver_register,
  pr_info,
} from "@iommu-lab/kernel";
import { iommu_subsys_init, type IommuCore } from "@iommu-lab/iommu";
import {
  RiscvIommuDriver,
  type RiscvIommuDriverOptions,
  type RiscvIommuFeature,
} from "@iommu-lab/riscv-iommu";
import { riscv_iommu_pci_driver, riscv_iommu_platform_driver } from "@iommu-lab/riscv-iommu-probe";
import { type CpuCostTable, CpuMem, DEFAULT_CPU_COSTS } from "./cpu_mem.ts";
import { dma_engine_chans, dma_engine_driver, type DmaChan } from "./dma_engine_driver.ts";
import { aplic_driver, imsic_driver } from "./irqchip.ts";
import { Trace, type TraceOptions } from "./trace.ts";
import { IommuWindow, priceCommands } from "./iommu_window.ts";
import {
  iommuRegName,
  TracedMmio,
  traceMsiWrites,
  traceTranslations,
  traceWalks,
  traceWires,
} from "./tracing.ts";
import {
  virt_aplic_sources,
  virt_device_tree,
  VIRT_DMA_SLOT,
  VIRT_DRAM_BASE,
  VIRT_IMSIC_IDS,
  VIRT_IOMMU_IOATC_IRQ,
  VIRT_IOMMU_PCI_SLOT,
  VIRT_IOMMU_SYS_BASE,
  VIRT_IOMMU_SYS_IRQ,
  VIRT_IOMMU_SYS_IRQS,
  VIRT_IOMMU_SYS_SIZE,
} from "./virt_dt.ts";

/** The RISC-V IOMMU driver with a set of series features, as a machine option. */
export interface RiscvIommuSpec {
  /** Which driver. */
  readonly kind: "riscv-iommu";
  /** The series features the driver instance runs, in probe order. */
  readonly features: readonly RiscvIommuFeature[];
}

/**
 * Picks the RISC-V IOMMU driver and its series features for a machine, like Kconfig:
 * `Machine.boot({ iommu: riscvIommu({ features: [iopf(), hpm()] }) })`.
 */
export function riscvIommu(opts: RiscvIommuDriverOptions = {}): RiscvIommuSpec {
  return { kind: "riscv-iommu", features: opts.features ?? [] };
}

/**
 * What a series adds to a machine besides its driver feature: the one place its machine-side
 * parts go, so that a new series never edits `Machine.boot`. Every member is optional; `boot`
 * uses them in this order:
 *
 * 1. `caps` and `iommuOptions` — over the machine's own, when the silicon's IOMMU is built;
 * 2. `hardware(silicon)` — once the silicon is built (a device on a free PCI slot, an MMIO unit);
 * 3. `deviceTree(dt, silicon)` — nodes for that hardware, before the blob is written;
 * 4. `feature` — added to the RISC-V IOMMU driver instance, after `riscvIommu()`'s features;
 * 5. `drivers(kernel, silicon)` — registered after the built-in drivers, before the device tree
 *    is populated (the perf driver of an auxiliary device the feature creates, say).
 */
export interface MachinePart {
  /** Name, for messages. */
  readonly name: string;
  /** IOMMU capabilities the part needs (over `MachineOptions.caps`). */
  readonly caps?: Partial<IommuCaps>;
  /** IOMMU hardware variants the part needs (over `MachineOptions.iommuOptions`). */
  readonly iommuOptions?: Omit<IommuOptions, "mem" | "caps" | "irq" | "ats">;
  /** The part's series feature for the RISC-V IOMMU driver (ignored with `iommu: "none"`). */
  readonly feature?: RiscvIommuFeature;
  /** Adds hardware to the silicon just built. */
  hardware?(silicon: Silicon): void;
  /** Adds device-tree nodes for it. */
  deviceTree?(dt: DeviceTree, silicon: Silicon): void;
  /** Registers the kernel drivers the part needs. */
  drivers?(kernel: Kernel, silicon: Silicon): void;
}

/**
 * The platform IOMMU as a SpacemiT T100 (`hw`'s `SpacemitT100`): its IOATS at 0x0301_0000 and
 * one IOATC page per IOATC above it, IOATC `i` in front of PCI slot `2 + i` (DMA engine `i`'s
 * functions, requester IDs `(2 + i) << 3` to `+ 7`) with its PMIV wire on APLIC source `40 + i`.
 */
export interface T100MachineOptions {
  /** IOATCs, 0..64. Default 2. */
  ioatcs?: number;
  /** Entries of each IOATC's IOTLB. Default 64. */
  iotlbEntries?: number;
  /** The IOATCs' HPM counters and widths (default: 31 counters of 64 bits). */
  ioatcHpm?: IoatcOptions["hpm"];
}

/** How to build and boot a machine. Every field has a default. */
export interface MachineOptions {
  /** The IOMMU driver, or "none" for a machine without an IOMMU. Default `riscvIommu()`. */
  iommu?: RiscvIommuSpec | "none";
  /** Where the IOMMU sits: a platform device at 0x3010000 or PCI function 00:01.0 (1b36:0014). */
  iommuBus?: "platform" | "pci";
  /** IOMMU capabilities (unset ones from the hardware defaults). */
  caps?: Partial<IommuCaps>;
  /** Hardware variants of the IOMMU (refused DDT depths, a stalled command queue, ...). */
  iommuOptions?: Omit<IommuOptions, "mem" | "caps" | "irq" | "ats">;
  /**
   * The PCI segment (domain) of the PCIe host, 0..255: `linux,pci-domain`, and bits 23:16 of the
   * `device_id` of every function behind it (the `iommu-map` says so). Default 0.
   */
  pciDomain?: number;
  /** Wired interrupts in the platform IOMMU's node (0..4). Default 4. */
  iommuIrqs?: number;
  /** Whether the platform IOMMU's node has an `msi-parent`. Default true. */
  msiParent?: boolean;
  /** Bytes of DRAM at 0x8000_0000 (sparse: only touched pages cost). Default 1 GiB. */
  ramSize?: number;
  /** DMA test engines on the PCIe bus (slots 2, 3, ...). Default 1. */
  dmaEngines?: number;
  /** Channels per DMA engine (1..32). Default 4. */
  dmaChannels?: number;
  /**
   * DMA engines advertise ATS (and use their ATC once software enables it), optionally with an
   * invalidate queue depth and completion time. Default false.
   */
  dmaAts?: DmaEngineOptions["ats"];
  /** DMA engines advertise PASID (20 bits, privileged and execute modes). Default false. */
  dmaPasid?: boolean;
  /**
   * DMA engines advertise PRI (and ask for the pages ATS denies once software enables it),
   * optionally with their capacity and group size. Default false.
   */
  dmaPri?: DmaEngineOptions["pri"];
  /**
   * Send endpoint MSIs through the IOMMU, as QEMU's `virt` does. Default true: the IMSIC driver
   * has dma-iommu map its page into each DMA domain (`iommu_dma_prepare_msi()`) and devices write
   * to that IOVA. False routes endpoint MSIs around the IOMMU (a bus with an untranslated MSI
   * window) and the kernel programs the physical doorbell.
   */
  msiThroughIommu?: boolean;
  /** iommu.passthrough=1: default domains are identity. */
  passthrough?: boolean;
  /** iommu.forcedac=1: PCI devices get IOVAs above 4 GiB from the first map. */
  forcedac?: boolean;
  /** Overrides of the simulated clock's cost table (what devices and the IOMMU cost). */
  costs?: Partial<CostTable>;
  /** Overrides of the CPU's cost table (what the kernel's own work costs). */
  cpuCosts?: Partial<CpuCostTable>;
  /** Record a trace of the run (see {@linkcode Trace}). Default off. */
  trace?: boolean | TraceOptions;
  /** Record dev_dbg/pr_debug lines in dmesg. Default false. */
  dmesgDebug?: boolean;
  /** What series add to the machine besides their driver feature, in order. Default none. */
  parts?: readonly MachinePart[];
  /**
   * Make the platform IOMMU a SpacemiT T100 (a distributed IOMMU: IOATS and IOATCs; see
   * {@linkcode T100MachineOptions}). Needs `iommuBus: "platform"` and 4 `iommuIrqs`. Default: a
   * plain RISC-V IOMMU.
   */
  t100?: T100MachineOptions;
}

/** The hardware of a machine, for tests and tools that look at or poke the silicon. */
export interface Silicon {
  /** The simulated clock (also the kernel's). */
  readonly clock: Clock;
  /** The system bus. */
  readonly mem: PhysicalMemory;
  /** The IOMMU, or null on a machine without one. */
  readonly iommu: Iommu | null;
  /** The IOMMU's PCI function when it sits on PCI. */
  readonly iommuPci: IommuPciFunction | null;
  /** The SpacemiT T100 around `iommu` (its IOATS), with `MachineOptions.t100`. */
  readonly t100: SpacemitT100 | null;
  /** The PCIe root complex. */
  readonly rc: RootComplex;
  /** The wired interrupt controller. */
  readonly aplic: Aplic;
  /** The MSI controller (hart 0's supervisor interrupt file). */
  readonly imsic: Imsic;
  /** The DMA test engines, by slot order. */
  readonly dmaEngines: readonly DmaEngine[];
}

/**
 * A booted machine.
 *
 * @example Boot, then find the IOMMU and a DMA channel
 * ```ts
 * import assert from "node:assert/strict";
 * import { Machine } from "@iommu-lab/machine";
 *
 * const m = Machine.boot({ iommuBus: "platform" });
 * assert.ok(m.dmesg.some((l) => l.endsWith("riscv,iommu 3010000.iommu: using MSIs")));
 * assert.equal(m.iommuDevice?.name, "3010000.iommu");
 * assert.equal(m.dmaChannel(0).name, "dma0chan0");
 * ```
 */
export class Machine {
  /** The kernel. */
  readonly kernel: Kernel;
  /** The hardware. */
  readonly silicon: Silicon;
  /** The IOMMU core of the kernel. */
  readonly iommuCore: IommuCore;
  /** The RISC-V IOMMU driver instance (null with `iommu: "none"`). */
  readonly driver: RiscvIommuDriver | null;
  /** The device tree blob the kernel booted from. */
  readonly fdt: Uint8Array;
  /** The trace (empty unless booted with `trace`). */
  readonly trace: Trace;
  /** The options the machine was booted with. */
  readonly options: Readonly<MachineOptions>;
  /** What the CPU's own work costs (the defaults with `options.cpuCosts` over them). */
  readonly cpuCosts: Readonly<CpuCostTable>;

  private constructor(
    kernel: Kernel,
    silicon: Silicon,
    iommuCore: IommuCore,
    driver: RiscvIommuDriver | null,
    fdt: Uint8Array,
    trace: Trace,
    options: MachineOptions,
    cpuCosts: Readonly<CpuCostTable>,
  ) {
    this.kernel = kernel;
    this.silicon = silicon;
    this.iommuCore = iommuCore;
    this.driver = driver;
    this.fdt = fdt;
    this.trace = trace;
    this.options = options;
    this.cpuCosts = cpuCosts;
  }

  /**
   * Builds the hardware, generates the device tree, and boots a kernel from it: irq
   * controllers, the PCIe host, the IOMMU glue (platform and PCI drivers both registered, as
   * both are built in) and the DMA engine driver, then `lateInitcall()`. Each of `opts.parts`
   * adds its machine-side parts on the way (see {@linkcode MachinePart}). Throws RangeError on
   * impossible options (more DMA engines than PCI slots, say).
   */
  static boot(opts: MachineOptions = {}): Machine {
    const board = Machine.#buildSilicon(opts);
    const fdt = Machine.#buildDeviceTree(opts, board);
    return Machine.#bootKernel(opts, board, fdt);
  }

  /**
   * Builds the silicon: memory, the interrupt controllers, the PCIe root complex, the IOMMU with
   * the capabilities and variants of the options and of every part, the DMA engines, then each
   * part's own hardware.
   */
  static #buildSilicon(opts: MachineOptions): _Board {
    const spec = opts.iommu ?? riscvIommu();
    const parts = opts.parts ?? [];
    const ramSize = opts.ramSize ?? 2 ** 30;
    const nEngines = opts.dmaEngines ?? 1;
    if (!Number.isInteger(nEngines) || nEngines < 0 || VIRT_DMA_SLOT + nEngines > 32) {
      throw new RangeError(`Cannot build a machine with ${nEngines} DMA engines`);
    }
    const nIoatcs = Machine.#ioatcs(opts);

    const clock = new Clock(opts.costs);
    const trace = new Trace(
      clock,
      opts.trace !== undefined && opts.trace !== false,
      typeof opts.trace === "object" ? opts.trace : {},
    );
    const traced = trace.enabled ? trace : null;
    const mem = new PhysicalMemory();
    mem.addRam(VIRT_DRAM_BASE, ramSize, "memory");
    const imsic = new Imsic({ clock, ids: VIRT_IMSIC_IDS });
    mem.addMmio(IMSIC_S_BASE, IMSIC_MMIO_PAGE_SZ, traceMsiWrites(imsic, traced), "imsic");
    const aplic = new Aplic({ clock, sources: virt_aplic_sources(nIoatcs ?? 0) });
    mem.addMmio(APLIC_S_BASE, APLIC_SIZE, aplic, "aplic");
    const rc = new RootComplex({
      mem,
      clock,
      translateMsi: opts.msiThroughIommu ?? true,
      segment: opts.pciDomain,
    });

    let iommu: Iommu | null = null;
    let iommuPci: IommuPciFunction | null = null;
    let t100: SpacemitT100 | null = null;
    let iommuRegion: Region | null = null;
    if (spec !== "none") {
      const caps: Partial<IommuCaps> = Object.assign(
        {},
        opts.caps,
        ...parts.map((p) => p.caps ?? {}),
      );
      const variants: MachinePart["iommuOptions"] = Object.assign(
        {},
        opts.iommuOptions,
        ...parts.map((p) => p.iommuOptions ?? {}),
      );
      // A T100's IOATS counts its vendor events with one filter for all counters.
      const hpm = nIoatcs === null
        ? variants?.hpm
        : { ...variants?.hpm, ...SPACEMIT_T100_IOATS_HPM };
      iommu = new Iommu({ ...variants, mem, caps, clock, hpm });
      const port = traceTranslations(iommu, traced);
      if ((opts.iommuBus ?? "platform") === "platform") {
        const wires = traceWires(aplic, traced);
        iommu.irq = {
          setWire(line, level) {
            if (line < VIRT_IOMMU_SYS_IRQS) wires.setWire(VIRT_IOMMU_SYS_IRQ + line, level);
          },
        };
        if (nIoatcs !== null) {
          t100 = new SpacemitT100(iommu, {
            ioatcs: Array.from({ length: nIoatcs }, (_, i) => {
              const id = rc.segment << 16 | (VIRT_DMA_SLOT + i) << 3;
              return {
                devices: [id, id + 7],
                iotlbEntries: opts.t100?.iotlbEntries,
                hpm: opts.t100?.ioatcHpm,
              };
            }),
            clock,
            irq: { setWire: (i, level) => wires.setWire(VIRT_IOMMU_IOATC_IRQ + i, level) },
            upstream: port,
          });
        }
        // The model charges nothing for its registers; the PCI function charges for its BAR.
        iommuRegion = mem.addMmio(
          VIRT_IOMMU_SYS_BASE,
          t100?.size ?? VIRT_IOMMU_SYS_SIZE,
          new IommuWindow(t100 ?? iommu, clock, clock.costs.mmio),
          "iommu",
        );
      } else {
        iommuPci = new IommuPciFunction(iommu, { clock });
        rc.attach(iommuPci.fn, VIRT_IOMMU_PCI_SLOT);
      }
      rc.translator = t100 ?? port;
      iommu.atsPort = rc.atsPort;
      rc.pageRequestPort = iommu;
      priceCommands(iommu, clock, traced);
      traceWalks(iommu, traced);
    }
    const dmaEngines: DmaEngine[] = [];
    for (let i = 0; i < nEngines; i++) {
      const e = new DmaEngine({
        clock,
        channels: opts.dmaChannels ?? 4,
        ats: opts.dmaAts,
        pasid: opts.dmaPasid,
        pri: opts.dmaPri,
      });
      rc.attach(e.fn, VIRT_DMA_SLOT + i);
      dmaEngines.push(e);
    }
    const silicon: Silicon = { clock, mem, iommu, iommuPci, t100, rc, aplic, imsic, dmaEngines };
    for (const p of parts) p.hardware?.(silicon);
    return { silicon, trace, iommuRegion };
  }

  /** The IOATCs of the T100 option, or null for a plain IOMMU; RangeError when impossible. */
  static #ioatcs(opts: MachineOptions): number | null {
    if (opts.t100 === undefined) return null;
    const n = opts.t100.ioatcs ?? 2;
    const why = opts.iommu === "none"
      ? "there is no IOMMU"
      : (opts.iommuBus ?? "platform") !== "platform"
      ? "the IOMMU is on PCI"
      : (opts.iommuIrqs ?? VIRT_IOMMU_SYS_IRQS) !== VIRT_IOMMU_SYS_IRQS
      ? `its IOATS needs ${VIRT_IOMMU_SYS_IRQS} wires`
      : !Number.isInteger(n) || n < 0 || n > 64
      ? `${n} IOATCs (0..64)`
      : "";
    if (why !== "") throw new RangeError(`Cannot build a SpacemiT T100 machine: ${why}`);
    return n;
  }

  /** Writes the device tree of the board, with every part's nodes, as a blob. */
  static #buildDeviceTree(opts: MachineOptions, board: _Board): Uint8Array {
    const dt = virt_device_tree({
      ramSize: opts.ramSize ?? 2 ** 30,
      iommu: board.silicon.iommu === null ? "none" : opts.iommuBus ?? "platform",
      iommuIrqs: opts.iommuIrqs ?? VIRT_IOMMU_SYS_IRQS,
      iommuMsiParent: opts.msiParent ?? true,
      atsSupported: board.silicon.iommu !== null,
      pciDomain: board.silicon.rc.segment,
      t100Ioatcs: board.silicon.t100?.ioatcs.length,
    });
    for (const p of opts.parts ?? []) p.deviceTree?.(dt, board.silicon);
    return dt.toBlob();
  }

  /**
   * Boots a kernel on the board from `fdt`: the IOMMU core, the built-in drivers and every part's,
   * `of_platform_populate()`, `lateInitcall()`.
   */
  static #bootKernel(opts: MachineOptions, board: _Board, fdt: Uint8Array): Machine {
    const { silicon, trace, iommuRegion } = board;
    const { clock, mem, iommuPci, aplic, imsic } = silicon;
    const spec = opts.iommu ?? riscvIommu();
    const parts = opts.parts ?? [];
    const ramSize = opts.ramSize ?? 2 ** 30;
    const traced = trace.enabled ? trace : null;

    // What the kernel's ioremap() gets: the bus's window; with a trace, one recording the CPU's
    // accesses.
    const ioremap: IoremapFn = (phys, size) => {
      const r = mem.mmioAt(phys);
      if (r === undefined || phys + size > r.base + r.size) return null;
      let backend: MmioHandler = r.mmio!;
      if (traced !== null) {
        const named = r === iommuRegion || r === iommuPci?.fn.barRegion(0);
        backend = new TracedMmio(backend, traced, r.name, named ? iommuRegName : undefined);
      }
      return { backend, offset: phys - r.base };
    };
    const cpuCosts = Object.freeze({ ...DEFAULT_CPU_COSTS, ...opts.cpuCosts });
    const kernel = new Kernel({
      mem: new CpuMem(mem, clock, cpuCosts),
      ram: [{ base: VIRT_DRAM_BASE, size: ramSize }],
      clock,
      ioremap,
      initcalls: [platform_bus_init, pci_driver_init, auxiliary_bus_init],
    });
    kernel.dmesg.debug = opts.dmesgDebug ?? false;
    trace.log = () => kernel.dmesg.records();

    const dt = DeviceTree.fromBlob(fdt);
    pr_info(kernel, `Machine model: ${of_property_read_string(dt.root, "model")}`);
    const iommuCore = iommu_subsys_init(kernel, {
      passthrough: opts.passthrough,
      forcedac: opts.forcedac,
    });
    const features = spec === "none" ? [] : [
      ...spec.features,
      ...parts.flatMap((p) => p.feature === undefined ? [] : [p.feature]),
    ];
    const driver = spec === "none" ? null : new RiscvIommuDriver({ features });

    // Every driver is built in; each probe also pays for the driver core's work around it.
    const timed = <D extends { probe(...args: never[]): void }>(drv: D): D => ({
      ...drv,
      probe(...args: Parameters<D["probe"]>) {
        clock.charge(cpuCosts.probe);
        drv.probe(...args);
      },
    });
    const msiThroughIommu = opts.msiThroughIommu ?? true;
    platform_driver_register(kernel, timed(imsic_driver(imsic, traced, msiThroughIommu)));
    platform_driver_register(kernel, timed(aplic_driver(aplic, traced)));
    platform_driver_register(kernel, timed(pci_host_generic_driver));
    if (driver !== null) {
      platform_driver_register(kernel, timed(riscv_iommu_platform_driver(driver)));
      pci_register_driver(kernel, timed(riscv_iommu_pci_driver(driver)));
    }
    pci_register_driver(kernel, timed(dma_engine_driver(clock, traced)));
    for (const p of parts) p.drivers?.(kernel, silicon);
    of_platform_populate(kernel, dt);
    kernel.lateInitcall();

    return new Machine(kernel, silicon, iommuCore, driver, fdt, trace, opts, cpuCosts);
  }

  /** The kernel log as `dmesg` prints it. */
  get dmesg(): string[] {
    return this.kernel.dmesg.lines();
  }

  /** Every device of the kernel, in the order they were added. */
  get devices(): readonly Device[] {
    return this.kernel.core.devices;
  }

  /** The device the IOMMU hardware appears as (bound or not), or null without an IOMMU. */
  get iommuDevice(): Device | null {
    if (this.silicon.iommu === null) return null;
    const want = this.silicon.iommuPci !== null
      ? this.#pciSlotName(VIRT_IOMMU_PCI_SLOT)
      : `${VIRT_IOMMU_SYS_BASE.toString(16)}.iommu`;
    return this.findDevice(want) ?? null;
  }

  /** The device named `name` (`dev_name()`), if any. */
  findDevice(name: string): Device | undefined {
    return this.kernel.core.devices.find((d) => d.name === name);
  }

  /** The PCI functions of the DMA engines, bound or not, by slot. */
  get dmaDevices(): PciDev[] {
    return this.silicon.dmaEngines.map((_, i) =>
      this.findDevice(this.#pciSlotName(VIRT_DMA_SLOT + i))
    )
      .filter((d): d is PciDev => d !== undefined);
  }

  /** Every channel of the bound DMA engines (dmatest's channel list). */
  dmaChannels(): DmaChan[] {
    return this.dmaDevices.flatMap((d) => [...dma_engine_chans(d)]);
  }

  /** Channel `n` of {@linkcode dmaChannels}; RangeError when there is no such channel. */
  dmaChannel(n = 0): DmaChan {
    const chan = this.dmaChannels()[n];
    if (chan === undefined) throw new RangeError(`No DMA channel ${n} on this machine`);
    return chan;
  }

  /** dev_name() of function 0 in `slot` of the root bus, e.g. `"0000:00:02.0"`. */
  #pciSlotName(slot: number): string {
    const domain = this.silicon.rc.segment.toString(16).padStart(4, "0");
    return `${domain}:00:${slot.toString(16).padStart(2, "0")}.0`;
  }

  /** Lets `ns` of simulated time pass on the CPU side (interrupts are taken meanwhile). */
  run(ns: number): void {
    this.silicon.clock.advance(ns);
  }

  /** Mirrors kernel_power_off(): shuts every device down, last bound first. */
  shutdown(): void {
    this.kernel.shutdown();
  }
}

/** The silicon with what the kernel's boot needs besides it. */
interface _Board {
  readonly silicon: Silicon;
  readonly trace: Trace;
  /** The platform IOMMU's MMIO region, when it sits on the platform bus. */
  readonly iommuRegion: Region | null;
}
