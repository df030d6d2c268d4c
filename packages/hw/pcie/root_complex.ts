/**
 * The PCIe root complex of the `virt` machine: the ECAM configuration window, the MMIO windows
 * BARs may be assigned in, and the inbound path that sends every transaction from a function
 * through the IOMMU.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { PhysicalMemory, Region } from "../memory.ts";
import { toNumber64 } from "../_u64.ts";
import {
  CPL_UR,
  type InboundRequest,
  REQ_UNTRANSLATED,
  type TranslationPort,
  type TranslationResult,
  XLATE_FAULT,
  XLATE_OK,
} from "../iommu/request.ts";
import {
  ATS_INVAL_BUSY,
  ATS_INVAL_SENT,
  type AtsInvalidation,
  type AtsPort,
  type PageGroupResponse,
} from "../iommu/command_queue.ts";
import { Ecam } from "./ecam.ts";
import { PCI_HEADER_TYPE, PCI_HEADER_TYPE_MFD } from "./config.ts";
import type { PciFunction } from "./function.ts";
import type { PageRequestPort } from "../iommu/page_request.ts";
import type { PageRequest } from "../iommu/queues.ts";

/** Physical base of the ECAM window on the `virt` memory map. */
export const PCIE_ECAM_BASE = 0x3000_0000;
/** Size of the ECAM window (256 buses). */
export const PCIE_ECAM_SIZE = 0x1000_0000;
/** Physical base of the 32-bit PCIe MMIO window on the `virt` memory map. */
export const PCIE_MMIO_BASE = 0x4000_0000;
/** Size of the 32-bit PCIe MMIO window. */
export const PCIE_MMIO_SIZE = 0x4000_0000;

/** An address range the host bridge forwards to PCIe. */
export interface MmioWindow {
  /** First address. */
  base: number;
  /** Size in bytes. */
  size: number;
}

/** Options of {@linkcode RootComplex}. */
export interface RootComplexOptions {
  /** The system bus: ECAM and BARs are mapped on it, DMA lands in it. */
  mem: PhysicalMemory;
  /** The machine's clock. */
  clock: Clock;
  /** Who answers inbound transactions: the IOMMU. Default: identity (no IOMMU). */
  translator?: TranslationPort;
  /** Who takes Page Request messages: the IOMMU. Default: nobody. */
  pageRequestPort?: PageRequestPort;
  /** Whether MSI writes from endpoints are translated (QEMU `virt`: yes). Default true. */
  translateMsi?: boolean;
  /** ECAM base. Default {@linkcode PCIE_ECAM_BASE}. */
  ecamBase?: number;
  /** ECAM size (a multiple of 1 MiB; one bus per MiB). Default {@linkcode PCIE_ECAM_SIZE}. */
  ecamSize?: number;
  /** Where BARs decode. Default the 32-bit window at {@linkcode PCIE_MMIO_BASE}. */
  mmioWindows?: MmioWindow[];
  /**
   * The PCI segment (domain) of the hierarchy, 0..255: the bits 23:16 of every `device_id` its
   * functions' transactions carry to the IOMMU (bus, device and function are bits 15:0). Default 0.
   */
  segment?: number;
}

/**
 * The answer without an IOMMU: untranslated requests pass through unchanged; Translated and ATS
 * requests get Unsupported Request, since there is no translation agent.
 */
class _Identity implements TranslationPort {
  translate(req: InboundRequest, res: TranslationResult): void {
    res.cause = 0;
    res.reported = false;
    res.untranslatedOnly = false;
    res.global = false;
    res.pbmt = 0;
    if (req.kind !== REQ_UNTRANSLATED || req.iovaHi >= 0x20_0000) {
      res.status = XLATE_FAULT;
      res.completion = CPL_UR;
      res.perm = 0;
      res.size = 0;
      return;
    }
    res.status = XLATE_OK;
    res.pa = toNumber64(req.iovaLo, req.iovaHi);
    res.perm = 7;
    res.size = 4096;
  }
}

/**
 * The root complex: owns the ECAM window (mapped on the bus at construction), the functions on
 * its root bus, and the translation of their inbound transactions.
 *
 * @example Enumerating a function through ECAM
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock, PciFunction, PhysicalMemory, RootComplex } from "@iommu-lab/hw";
 * import { PCIE_ECAM_BASE } from "@iommu-lab/hw/regs";
 *
 * const clock = new Clock();
 * const mem = new PhysicalMemory();
 * const rc = new RootComplex({ mem, clock });
 * rc.attach(new PciFunction({ clock, vendorId: 0x1b36, deviceId: 0x0014, classCode: 0x080600 }), 1);
 * assert.equal(mem.read32(PCIE_ECAM_BASE + (1 << 15)), 0x0014_1b36);
 * assert.equal(mem.read32(PCIE_ECAM_BASE + (2 << 15)), 0xffff_ffff); // nothing in slot 2
 * ```
 */
export class RootComplex {
  /** The system bus. */
  readonly mem: PhysicalMemory;
  /** The machine's clock. */
  readonly clock: Clock;
  /** Whether MSI writes from endpoints are translated. */
  readonly translateMsi: boolean;
  /** The ECAM handler. */
  readonly ecam: Ecam;
  /** The ECAM region on the bus. */
  readonly ecamRegion: Region;
  /** Where BARs decode. */
  readonly mmioWindows: readonly MmioWindow[];
  /** Who answers inbound transactions (settable: the IOMMU may be built after the bus). */
  translator: TranslationPort;
  /** Where Page Request messages go: the IOMMU (null: nowhere, they are dropped). */
  pageRequestPort: PageRequestPort | null;
  /** The PCI segment of the hierarchy. */
  readonly segment: number;

  readonly #identity = new _Identity();
  /** `segment` in the place it takes in a `device_id`. */
  readonly #segmentId: number;
  readonly #functions = new Map<number, PciFunction>();

  /** Creates the root complex and maps its ECAM window on `opts.mem`. */
  constructor(opts: RootComplexOptions) {
    this.mem = opts.mem;
    this.clock = opts.clock;
    this.translator = opts.translator ?? this.#identity;
    this.pageRequestPort = opts.pageRequestPort ?? null;
    this.translateMsi = opts.translateMsi ?? true;
    const segment = opts.segment ?? 0;
    if (!Number.isInteger(segment) || segment < 0 || segment > 0xff) {
      throw new RangeError(`Cannot build a root complex in PCI segment ${segment}`);
    }
    this.segment = segment;
    this.#segmentId = segment << 16;
    this.mmioWindows = opts.mmioWindows ?? [{ base: PCIE_MMIO_BASE, size: PCIE_MMIO_SIZE }];
    const size = opts.ecamSize ?? PCIE_ECAM_SIZE;
    this.ecam = new Ecam(this, size >>> 20);
    this.ecamRegion = opts.mem.addMmio(
      opts.ecamBase ?? PCIE_ECAM_BASE,
      size,
      this.ecam,
      "pcie-ecam",
    );
  }

  /** The attached functions, by requester ID. */
  get functions(): ReadonlyMap<number, PciFunction> {
    return this.#functions;
  }

  /**
   * Places `fn` at `bus:device.func` and returns its requester ID (BDF). Setting a function
   * other than 0 marks function 0 of the device multi-function, so enumeration finds it.
   *
   * @throws {RangeError} when the slot is taken or out of range (a machine-building bug).
   */
  attach(fn: PciFunction, device: number, func = 0, bus = 0): number {
    if (device < 0 || device > 31 || func < 0 || func > 7 || bus < 0 || bus >= this.ecam.buses) {
      throw new RangeError(`Cannot attach ${fn.name}: ${bus}:${device}.${func} is out of range`);
    }
    const bdf = (bus << 8) | (device << 3) | func;
    if (this.#functions.has(bdf) || fn.bdf >= 0) {
      throw new RangeError(`Cannot attach ${fn.name}: ${bus}:${device}.${func} is taken`);
    }
    this.#functions.set(bdf, fn);
    fn._attached(this, bdf);
    const fn0 = this.#functions.get(bdf & ~7);
    if (func !== 0 && fn0 !== undefined) {
      fn0.config.set8(PCI_HEADER_TYPE, fn0.config.get8(PCI_HEADER_TYPE) | PCI_HEADER_TYPE_MFD);
    } else if (
      func === 0 && [...this.#functions.keys()].some((k) => (k & ~7) === bdf && k !== bdf)
    ) {
      fn.config.set8(PCI_HEADER_TYPE, fn.config.get8(PCI_HEADER_TYPE) | PCI_HEADER_TYPE_MFD);
    }
    return bdf;
  }

  /** The function with requester ID `bdf`, if any. */
  functionAt(bdf: number): PciFunction | undefined {
    return this.#functions.get(bdf);
  }

  /** Translates an inbound transaction of `fn`: `device_id` (segment and requester ID) set, then
   * the IOMMU (or identity, for functions whose DMA bypasses it). */
  inbound(fn: PciFunction, req: InboundRequest, res: TranslationResult): void {
    req.deviceId = this.#segmentId | fn.bdf;
    (fn.dmaBypass ? this.#identity : this.translator).translate(req, res);
  }

  /**
   * A Page Request or Stop Marker message from `fn`: `device_id` set, then to the
   * {@linkcode pageRequestPort}. Returns its `PRQ_*` outcome, or -1 when nobody takes it.
   */
  pageRequest(fn: PciFunction, pr: PageRequest): number {
    pr.deviceId = this.#segmentId | fn.bdf;
    return this.pageRequestPort === null ? -1 : this.pageRequestPort.pageRequest(pr);
  }

  /** True when a BAR of `size` bytes at `base` lies in an MMIO window and overlaps nothing. */
  canMap(base: number, size: number): boolean {
    if (!this.mmioWindows.some((w) => base >= w.base && base + size <= w.base + w.size)) {
      return false;
    }
    const overlaps = (r: Region) => base < r.base + r.size && r.base < base + size;
    return !this.mem.ram.some(overlaps) && !this.mem.mmio.some(overlaps);
  }

  /**
   * Delivers an ATS Invalidate Request for `[addr, addr + size)` to the function with requester
   * ID `deviceId` (see {@linkcode PciFunction.atsInvalidate}). Returns false when no function
   * with an ATC is there to complete it.
   */
  atsInvalidate(
    deviceId: number,
    pasid: number | undefined,
    addr: number,
    size: number,
    global = false,
  ): boolean {
    const fn = this.#functions.get(deviceId);
    if (fn?.atc === undefined) return false;
    fn.atsInvalidate(pasid, addr, size, global);
    return true;
  }

  /**
   * The root complex's end of the IOMMU's ATS commands (set it as `Iommu.atsPort`): ATS.INVAL
   * becomes an Invalidate Request to the addressed function (see
   * {@linkcode PciFunction.atsInvalidateRequest}: it completes in the function's time, or the
   * function pushes back); a request to a missing function, another segment, or a function
   * without ATS goes out and never completes (the IOMMU times it out). A Page Request Group
   * Response goes to the function it names ({@linkcode PciFunction.prgResponse}); one for
   * another segment or a missing function is dropped.
   */
  readonly atsPort: AtsPort = {
    invalidate: (inv: AtsInvalidation, done: () => void): number => {
      const fn = this.#functions.get(inv.rid);
      if ((inv.dsv ? inv.dseg : 0) !== this.segment || fn?.atc === undefined) {
        return ATS_INVAL_SENT;
      }
      let base = BigInt.asUintN(64, inv.addr) & ~0xfffn;
      let size = 4096n;
      if (inv.s) {
        // PCIe ATS range encoding: the first 0 bit of the page number at position x gives
        // 2^(x+1) pages; the bits below it are all ones.
        const pn = base >> 12n;
        let x = 0n;
        while (x < 52n && (pn >> x) & 1n) x++;
        size = 4096n << (x + 1n);
        base &= ~(size - 1n);
      }
      const pasid = inv.pv ? inv.pid : undefined;
      return fn.atsInvalidateRequest(pasid, Number(base), Number(size), inv.global, done)
        ? ATS_INVAL_SENT
        : ATS_INVAL_BUSY;
    },
    pageResponse: (rsp: PageGroupResponse): void => {
      if ((rsp.dsv ? rsp.dseg : 0) !== this.segment) return;
      this.#functions.get(rsp.rid)?.prgResponse(rsp);
    },
  };
}
