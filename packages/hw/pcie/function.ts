/**
 * A PCIe function: a type 0 configuration header with BARs, the PCI Express, MSI-X, ATS, PRI and
 * PASID capabilities, and the DMA a function issues through its root complex.
 *
 * Devices (the DMA engine, the IOMMU's own function) are built by composition: they create a
 * {@linkcode PciFunction} with their register handlers as BARs and call its DMA methods.
 *
 * DMA is split into transactions that never cross a 4 KiB boundary, as PCIe requires, and each
 * transaction is translated on its own by the root complex's `TranslationPort` with
 * this function's BDF as requester ID. With ATS enabled in its capability, the function looks
 * each page up in its ATC first, fills misses with ATS Translation Requests and issues
 * Translated requests. Memory is moved a whole chunk at a time with `copyOut`/`writeBytes`, and
 * the request/result objects are reused, so the per-page cost is two translations and a copy.
 *
 * @module
 */
import { hiOf, loOf, read64Split, toNumber64, write64Split } from "../_u64.ts";
import type { MmioHandler, PhysicalMemory, Region } from "../memory.ts";
import type { Clock } from "../clock.ts";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_WRITE,
  CPL_SC,
  newRequest,
  newResult,
  REQ_ATS,
  REQ_TRANSLATED,
  REQ_UNTRANSLATED,
  setIova,
  XLATE_ABSORBED,
  XLATE_OK,
} from "../iommu/request.ts";
import type { PageGroupResponse } from "../iommu/command_queue.ts";
import { PRG_RESPONSE_FAILURE, PRG_RESPONSE_INVALID } from "../iommu/page_request.ts";
import type { PageRequest } from "../iommu/queues.ts";
import { Atc, ATC_NO_PASID } from "./atc.ts";
import {
  ConfigSpace,
  PCI_ATS_CAP,
  PCI_ATS_CAP_GLOBAL_INV,
  PCI_ATS_CAP_PAGE_ALIGNED,
  PCI_ATS_CAP_QDEP_MASK,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_ATS_CTRL_STU_MASK,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CACHE_LINE_SIZE,
  PCI_CAP_EXP_SIZEOF,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_MSIX,
  PCI_CAP_MSIX_SIZEOF,
  PCI_CLASS_REVISION,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_PARITY,
  PCI_COMMAND_SERR,
  PCI_DEVICE_ID,
  PCI_EXP_DEVCTL,
  PCI_EXP_FLAGS,
  PCI_EXP_TYPE_RC_END,
  PCI_EXT_CAP_ATS_SIZEOF,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_EXT_CAP_PASID_SIZEOF,
  PCI_EXT_CAP_PRI_SIZEOF,
  PCI_INTERRUPT_LINE,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_MSIX_PBA,
  PCI_MSIX_TABLE,
  PCI_PASID_CAP,
  PCI_PASID_CAP_EXEC,
  PCI_PASID_CAP_PRIV,
  PCI_PASID_CAP_WIDTH_SHIFT,
  PCI_PASID_CTRL,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PASID_CTRL_PRIV,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_PASID,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
  PCI_PRI_STATUS_UPRGI,
  PCI_STATUS,
  PCI_STATUS_ERROR_BITS,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from "./config.ts";
import { Msix, type MsixOptions } from "./msix.ts";
import type { RootComplex } from "./root_complex.ts";

/** The DMA completed. */
export const DMA_OK = 0;
/** The root complex refused the transaction (the IOMMU faulted it): a read completes with
 * UR/CA, a write is dropped. The IOMMU's cause is in {@linkcode PciFunction.faultCause}. */
export const DMA_ERR_ABORT = 1;
/** The transaction was translated but the memory access failed (bus error or poison). */
export const DMA_ERR_BUS = 2;
/** Bus Master Enable is clear: the function may not issue requests. */
export const DMA_ERR_NO_MASTER = 3;
/** An ATS completion granted no access to the page: with PRI the function may ask for it with a
 * page request ({@linkcode PciFunction.pageRequestGroup}) and try again. */
export const DMA_ERR_ATS_DENIED = 4;

/** Called once when a page request group is answered, with the PRG response code it got. */
export type PrgHandler = (code: number) => void;

/** A page request group in flight. */
interface _Group {
  pidValid: boolean;
  pid: number;
  pages: number;
  onResponse: PrgHandler;
}

/** One memory BAR of a function. */
export interface BarSpec {
  /** BAR number (0–5; a 64-bit BAR also takes `index + 1`). */
  index: number;
  /** Size in bytes: a power of two, at least 16. */
  size: number;
  /** A 64-bit BAR. */
  is64?: boolean;
  /** Prefetchable memory. */
  prefetchable?: boolean;
  /** The device's registers behind the BAR (offsets from the BAR's start). */
  handler: MmioHandler;
}

/** What a function implements. */
export interface PciFunctionOptions {
  /** The machine's clock (MSI-X table accesses are charged to it). */
  clock: Clock;
  /** Vendor ID. */
  vendorId: number;
  /** Device ID. */
  deviceId: number;
  /** Class code (24 bits: base class, sub-class, programming interface). */
  classCode: number;
  /** Revision ID. */
  revision?: number;
  /** Subsystem vendor ID. */
  subsystemVendorId?: number;
  /** Subsystem ID. */
  subsystemId?: number;
  /** Memory BARs. */
  bars?: BarSpec[];
  /** MSI-X capability: table and PBA placement. */
  msix?: MsixOptions;
  /**
   * ATS extended capability (and an ATC of `atcEntries` entries). `invalidateQueueDepth` is the
   * capability's field (0 means 32); `invalidateNs` how long the function takes to complete an
   * Invalidate Request (default the clock's `atsInvalidate` cost; `Infinity`: never).
   */
  ats?: {
    invalidateQueueDepth?: number;
    globalInvalidate?: boolean;
    atcEntries?: number;
    invalidateNs?: number;
  };
  /** PRI extended capability: Outstanding Page Request Capacity and PRG Response PASID Required. */
  pri?: { outstandingCapacity: number; prgResponsePasidRequired?: boolean };
  /** PASID extended capability. */
  pasid?: { width: number; exec?: boolean; priv?: boolean };
  /** The function's own DMA bypasses translation (the IOMMU's function). */
  dmaBypass?: boolean;
  /** A name for the bus's region list. */
  name?: string;
  /** Called after every configuration write, with the dword offset (a device's own side
   * effects, beyond the standard ones this class implements). */
  onConfigWrite?: (offset: number) => void;
}

const PAGE = 4096;

/**
 * One PCIe function (a root-complex integrated endpoint).
 *
 * @example BAR sizing, assignment and decode
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock, PciFunction, PhysicalMemory, RootComplex } from "@iommu-lab/hw";
 *
 * const clock = new Clock();
 * const mem = new PhysicalMemory();
 * const rc = new RootComplex({ mem, clock });
 * const regs = { read32: () => 0x1234, write32() {}, read64: () => 0n, write64() {} };
 * const fn = new PciFunction({
 *   clock, vendorId: 0x1b36, deviceId: 0x0005, classCode: 0xff0000,
 *   bars: [{ index: 0, size: 0x1000, handler: regs }],
 * });
 * rc.attach(fn, 2);
 * fn.configWrite32(0x10, 0xffff_ffff);
 * assert.equal(fn.configRead32(0x10), 0xffff_f000); // 4 KiB
 * fn.configWrite32(0x10, 0x4000_0000);
 * fn.configWrite32(0x04, 0x2); // memory space enable
 * assert.equal(mem.read32(0x4000_0000), 0x1234);
 * ```
 */
export class PciFunction {
  /** Configuration space. */
  readonly config: ConfigSpace = new ConfigSpace();
  /** MSI-X state, when the function has the capability. */
  readonly msix: Msix | undefined;
  /** The ATC, when the function has the ATS capability. */
  readonly atc: Atc | undefined;
  /** Offset of the PCI Express capability. */
  readonly expCap: number;
  /** Offset of the ATS extended capability (0: absent). */
  readonly atsCap: number = 0;
  /** Offset of the PRI extended capability (0: absent). */
  readonly priCap: number = 0;
  /** Offset of the PASID extended capability (0: absent). */
  readonly pasidCap: number = 0;
  /** The function's own DMA is not translated. */
  readonly dmaBypass: boolean;
  /** Name used for its BAR regions. */
  readonly name: string;
  /**
   * Simulated ns from accepting an Invalidate Request to sending its Invalidation Completion
   * (`Infinity`: a function that never completes one). Settable, to slow a device down.
   */
  atsInvalidateNs: number;

  /** Why the last DMA stopped: {@linkcode DMA_OK} or a `DMA_ERR_*` code. */
  faultKind: number = DMA_OK;
  /** Address of the transaction that failed. */
  faultAddr = 0;
  /** The failed transaction was a write. */
  faultWrite = false;
  /** The IOMMU's fault cause for {@linkcode DMA_ERR_ABORT}, else 0. */
  faultCause = 0;
  /** The completion status (`CPL_UR` or `CPL_CA`) for {@linkcode DMA_ERR_ABORT}, else `CPL_SC`. */
  faultCompletion: number = CPL_SC;
  /** Called when the function's page-request state changes (a group was answered, PRI was
   * enabled, disabled or reset): its PRI client may send the requests it held back, or give up. */
  onPriCredits: (() => void) | null = null;

  readonly #clock: Clock;
  readonly #bars: BarSpec[];
  readonly #onConfigWrite: ((offset: number) => void) | undefined;
  #invalidations = 0;
  readonly #groups = new Map<number, _Group>();
  readonly #pr: PageRequest = {
    deviceId: 0,
    pidValid: false,
    pid: 0,
    priv: false,
    exec: false,
    read: false,
    write: false,
    last: false,
    prgIndex: 0,
    addrLo: 0,
    addrHi: 0,
  };
  #priOutstanding = 0;
  #priFailed = false;
  #nextPrgi = 0;
  readonly #windows: MmioHandler[] = [];
  readonly #regions: (Region | undefined)[] = [];
  readonly #req = newRequest();
  readonly #res = newResult();
  #rc: RootComplex | undefined;
  #bdf = -1;
  #bounce: Uint8Array | undefined;
  #fillBuf: Uint8Array | undefined;
  #fillPattern = -1;

  /**
   * Builds the configuration space from `opts`.
   *
   * @throws {RangeError} on an impossible layout (overlapping BARs, a bad size): a model bug.
   */
  constructor(opts: PciFunctionOptions) {
    const cfg = this.config;
    this.name = opts.name ?? `pci-${opts.vendorId.toString(16)}:${opts.deviceId.toString(16)}`;
    this.dmaBypass = opts.dmaBypass ?? false;
    this.#clock = opts.clock;
    this.atsInvalidateNs = opts.ats?.invalidateNs ?? opts.clock.costs.atsInvalidate;
    this.#onConfigWrite = opts.onConfigWrite;
    cfg.set16(PCI_VENDOR_ID, opts.vendorId);
    cfg.set16(PCI_DEVICE_ID, opts.deviceId);
    cfg.set32(PCI_CLASS_REVISION, ((opts.classCode & 0xff_ffff) << 8 | (opts.revision ?? 0)) >>> 0);
    cfg.set16(PCI_SUBSYSTEM_VENDOR_ID, opts.subsystemVendorId ?? 0);
    cfg.set16(PCI_SUBSYSTEM_ID, opts.subsystemId ?? 0);
    cfg.setWritable(
      PCI_COMMAND,
      2,
      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
        PCI_COMMAND_INTX_DISABLE,
    );
    cfg.setW1c(PCI_STATUS, 2, PCI_STATUS_ERROR_BITS);
    cfg.setWritable(PCI_CACHE_LINE_SIZE, 1, 0xff);
    cfg.setWritable(PCI_INTERRUPT_LINE, 1, 0xff);

    this.#bars = opts.bars ?? [];
    const used = new Set<number>();
    for (const bar of this.#bars) {
      const slots = bar.is64 ? [bar.index, bar.index + 1] : [bar.index];
      if (
        slots.some((s) => s < 0 || s > 5 || used.has(s)) || bar.size < 16 ||
        !Number.isInteger(Math.log2(bar.size)) || bar.size > (bar.is64 ? 2 ** 32 : 2 ** 31)
      ) {
        throw new RangeError(`Cannot build ${this.name}: bad BAR ${bar.index}`);
      }
      slots.forEach((s) => used.add(s));
      const off = PCI_BASE_ADDRESS_0 + 4 * bar.index;
      cfg.set32(
        off,
        (bar.is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
          (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0),
      );
      // Address bits below the size are read-only zero: writing all-ones reads back the size.
      cfg.setWritable(off, 4, (~(bar.size - 1) & ~0xf) >>> 0);
      if (bar.is64) cfg.setWritable(off + 4, 4, 0xffff_ffff);
      this.#windows[bar.index] = this.#barWindow(bar);
    }

    this.expCap = cfg.addCap(PCI_CAP_ID_EXP, PCI_CAP_EXP_SIZEOF);
    cfg.set16(this.expCap + PCI_EXP_FLAGS, 2 | (PCI_EXP_TYPE_RC_END << 4));
    cfg.setWritable(this.expCap + PCI_EXP_DEVCTL, 2, 0x7fff);

    if (opts.msix !== undefined) {
      const m = opts.msix;
      const bar = this.#bars.find((b) => b.index === m.bar);
      if (
        bar === undefined || m.vectors < 1 || m.vectors > 2048 || (m.tableOffset | m.pbaOffset) & 7
      ) {
        throw new RangeError(`Cannot build ${this.name}: bad MSI-X layout`);
      }
      const cap = cfg.addCap(PCI_CAP_ID_MSIX, PCI_CAP_MSIX_SIZEOF);
      cfg.set16(cap + PCI_MSIX_FLAGS, m.vectors - 1);
      cfg.setWritable(cap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
      cfg.set32(cap + PCI_MSIX_TABLE, m.tableOffset | m.bar);
      cfg.set32(cap + PCI_MSIX_PBA, m.pbaOffset | m.bar);
      this.msix = new Msix(cfg, cap, m, opts.clock, (lo, hi, data) => this.msiWrite(lo, hi, data));
      const end = (o: number, n: number) => o + n <= bar.size;
      if (!end(m.tableOffset, this.msix.tableSize) || !end(m.pbaOffset, this.msix.pbaSize)) {
        throw new RangeError(`Cannot build ${this.name}: MSI-X table or PBA outside BAR`);
      }
    }

    if (opts.ats !== undefined) {
      const a = opts.ats;
      this.atsCap = cfg.addExtCap(PCI_EXT_CAP_ID_ATS, 1, PCI_EXT_CAP_ATS_SIZEOF);
      cfg.set16(
        this.atsCap + PCI_ATS_CAP,
        ((a.invalidateQueueDepth ?? 0) & PCI_ATS_CAP_QDEP_MASK) | PCI_ATS_CAP_PAGE_ALIGNED |
          (a.globalInvalidate ? PCI_ATS_CAP_GLOBAL_INV : 0),
      );
      cfg.setWritable(this.atsCap + PCI_ATS_CTRL, 2, PCI_ATS_CTRL_ENABLE | PCI_ATS_CTRL_STU_MASK);
      this.atc = new Atc(a.atcEntries ?? 64);
    }
    if (opts.pri !== undefined) {
      this.priCap = cfg.addExtCap(PCI_EXT_CAP_ID_PRI, 1, PCI_EXT_CAP_PRI_SIZEOF);
      cfg.setWritable(this.priCap + PCI_PRI_CTRL, 2, PCI_PRI_CTRL_ENABLE | PCI_PRI_CTRL_RESET);
      cfg.set16(
        this.priCap + PCI_PRI_STATUS,
        PCI_PRI_STATUS_STOPPED | (opts.pri.prgResponsePasidRequired ? PCI_PRI_STATUS_PASID : 0),
      );
      cfg.setW1c(this.priCap + PCI_PRI_STATUS, 2, PCI_PRI_STATUS_RF | PCI_PRI_STATUS_UPRGI);
      cfg.set32(this.priCap + PCI_PRI_MAX_REQ, opts.pri.outstandingCapacity);
      cfg.setWritable(this.priCap + PCI_PRI_ALLOC_REQ, 4, 0xffff_ffff);
    }
    if (opts.pasid !== undefined) {
      const p = opts.pasid;
      this.pasidCap = cfg.addExtCap(PCI_EXT_CAP_ID_PASID, 1, PCI_EXT_CAP_PASID_SIZEOF);
      cfg.set16(
        this.pasidCap + PCI_PASID_CAP,
        (p.exec ? PCI_PASID_CAP_EXEC : 0) | (p.priv ? PCI_PASID_CAP_PRIV : 0) |
          ((p.width & 0x1f) << PCI_PASID_CAP_WIDTH_SHIFT),
      );
      cfg.setWritable(
        this.pasidCap + PCI_PASID_CTRL,
        2,
        PCI_PASID_CTRL_ENABLE | (p.exec ? PCI_PASID_CTRL_EXEC : 0) |
          (p.priv ? PCI_PASID_CTRL_PRIV : 0),
      );
    }
  }

  /** Requester ID (bus << 8 | device << 3 | function), or -1 before {@linkcode RootComplex.attach}. */
  get bdf(): number {
    return this.#bdf;
  }

  /** The root complex the function is attached to. */
  get rc(): RootComplex | undefined {
    return this.#rc;
  }

  /** Command.MEM: the BARs decode. */
  get memoryEnabled(): boolean {
    return (this.config.get16(PCI_COMMAND) & PCI_COMMAND_MEMORY) !== 0;
  }

  /** Command.BME: the function may issue DMA and MSIs. */
  get busMaster(): boolean {
    return (this.config.get16(PCI_COMMAND) & PCI_COMMAND_MASTER) !== 0;
  }

  /** ATS is enabled: DMA goes through the ATC. */
  get atsEnabled(): boolean {
    return this.atsCap !== 0 &&
      (this.config.get16(this.atsCap + PCI_ATS_CTRL) & PCI_ATS_CTRL_ENABLE) !== 0;
  }

  /** Invalidate Requests the function accepts before it pushes back (the ATS capability's). */
  get atsInvalidateQueueDepth(): number {
    if (this.atsCap === 0) return 0;
    return (this.config.get16(this.atsCap + PCI_ATS_CAP) & PCI_ATS_CAP_QDEP_MASK) || 32;
  }

  /** ATS Smallest Translation Unit as programmed (log2(bytes) - 12). */
  get atsStu(): number {
    return this.atsCap === 0
      ? 0
      : this.config.get16(this.atsCap + PCI_ATS_CTRL) & PCI_ATS_CTRL_STU_MASK;
  }

  /** PRI is enabled. */
  get priEnabled(): boolean {
    return this.priCap !== 0 &&
      (this.config.get16(this.priCap + PCI_PRI_CTRL) & PCI_PRI_CTRL_ENABLE) !== 0;
  }

  /** PASID is enabled. */
  get pasidEnabled(): boolean {
    return this.pasidCap !== 0 &&
      (this.config.get16(this.pasidCap + PCI_PASID_CTRL) & PCI_PASID_CTRL_ENABLE) !== 0;
  }

  /** The address BAR `index` is programmed with (a number; exact below 2^53). */
  barAddress(index: number): number {
    const bar = this.#bars.find((b) => b.index === index);
    if (bar === undefined) return 0;
    const off = PCI_BASE_ADDRESS_0 + 4 * index;
    const lo = this.config.get32(off) & ~0xf;
    return bar.is64 ? toNumber64(lo, this.config.get32(off + 4)) : lo >>> 0;
  }

  /** The bus region BAR `index` is decoded at, if it is mapped. */
  barRegion(index: number): Region | undefined {
    return this.#regions[index];
  }

  /**
   * Called by {@linkcode RootComplex.attach}; not for devices.
   * @ignore package-private
   */
  _attached(rc: RootComplex, bdf: number): void {
    this.#rc = rc;
    this.#bdf = bdf;
  }

  /** A configuration read (from ECAM) of the dword at `offset`. */
  configRead32(offset: number): number {
    return this.config.read32(offset);
  }

  /** A configuration write (from ECAM) of the dword at `offset`, with its side effects. */
  configWrite32(offset: number, value: number): void {
    const dw = offset & 0xffc;
    const wasPri = this.priEnabled;
    this.config.write32(dw, value);
    if (dw === PCI_COMMAND) {
      this.#remap();
      this.msix?.controlWritten();
    } else if (dw >= PCI_BASE_ADDRESS_0 && dw < PCI_BASE_ADDRESS_0 + 24) {
      this.#remap();
    } else if (this.msix !== undefined && dw === this.msix.cap) {
      this.msix.controlWritten();
    } else if (this.atsCap !== 0 && dw === this.atsCap + 4) {
      if (!this.atsEnabled) this.atc!.flush();
    } else if (this.priCap !== 0 && dw === this.priCap + 4) {
      this.#priControlWritten(wasPri, (value & PCI_PRI_CTRL_RESET) !== 0);
    }
    this.#onConfigWrite?.(dw);
  }

  /** Page requests (pages) sent and not answered yet. */
  get priOutstanding(): number {
    return this.#priOutstanding;
  }

  /**
   * Page requests the function may send now: its Outstanding Page Request Allocation less those
   * outstanding; 0 while PRI is disabled or stopped by a Response Failure.
   */
  get priCredits(): number {
    if (!this.priEnabled || this.#priFailed) return 0;
    const alloc = this.config.get32(this.priCap + PCI_PRI_ALLOC_REQ);
    return Math.max(0, alloc - this.#priOutstanding);
  }

  /**
   * Sends a Page Request Group (PCIe PRI): one Page Request message per address of `pages` (page
   * aligned; the low 12 bits are ignored), all with one PRG index, the last with L=1; `read`,
   * `write` as asked; a PASID prefix with `priv` and `exec` when `pasid` ≥ 0. Each page takes one
   * of {@linkcode priCredits}. Returns the PRG index, or -1 when the group cannot go (too few
   * credits, all 512 indices in use, no pages). `onResponse` gets the code of the PRG Response,
   * and Response Failure when the function's PRI fails or is reset before that; it may run before
   * this returns (the IOMMU can answer the last request itself).
   */
  pageRequestGroup(
    pages: readonly number[],
    read: boolean,
    write: boolean,
    pasid: number,
    priv: boolean,
    exec: boolean,
    onResponse: PrgHandler,
  ): number {
    const rc = this.#rc;
    if (rc === undefined || pages.length === 0 || pages.length > this.priCredits) return -1;
    let prgi = this.#nextPrgi;
    for (let n = 0; this.#groups.has(prgi); n++) {
      if (n === 512) return -1;
      prgi = (prgi + 1) & 0x1ff;
    }
    this.#nextPrgi = (prgi + 1) & 0x1ff;
    const pidValid = pasid >= 0;
    this.#groups.set(prgi, {
      pidValid,
      pid: pidValid ? pasid : 0,
      pages: pages.length,
      onResponse,
    });
    this.#priOutstanding += pages.length;
    this.#priStatus();
    const pr = this.#pr;
    pr.pidValid = pidValid;
    pr.pid = pidValid ? pasid : 0;
    pr.priv = pidValid && priv;
    pr.exec = pidValid && exec;
    pr.read = read;
    pr.write = write;
    pr.prgIndex = prgi;
    for (let i = 0; i < pages.length; i++) {
      pr.last = i === pages.length - 1;
      pr.addrLo = loOf(pages[i]) & ~0xfff;
      pr.addrHi = hiOf(pages[i]);
      rc.pageRequest(this, pr);
    }
    return prgi;
  }

  /**
   * Sends a Stop Marker for `pasid` (a Page Request with the PASID, L=1, R=W=0): the function
   * has stopped using the PASID and will send no more page requests with it. Needs PRI enabled
   * and not stopped by a Response Failure; false otherwise. Takes no credit and gets no response.
   */
  stopMarker(pasid: number): boolean {
    const rc = this.#rc;
    if (rc === undefined || !this.priEnabled || this.#priFailed || pasid < 0) return false;
    const pr = this.#pr;
    pr.pidValid = true;
    pr.pid = pasid & 0xfffff;
    pr.priv =
      pr.exec =
      pr.read =
      pr.write =
        false;
    pr.last = true;
    pr.prgIndex = 0;
    pr.addrLo = pr.addrHi = 0;
    rc.pageRequest(this, pr);
    return true;
  }

  /**
   * A PRG Response message for this function (from the root complex). It answers the outstanding
   * group with its PRG index, and, when PRG Response PASID Required is set and the group had a
   * PASID, the same PASID (otherwise the response's PASID is not looked at). No such group sets
   * Unexpected PRG Index. A code other than Success or Invalid Request is a Response Failure: it
   * sets Response Failure, stops the function's PRI until software enables it again (later
   * responses are ignored) and fails every outstanding group.
   */
  prgResponse(rsp: PageGroupResponse): void {
    if (this.priCap === 0 || this.#priFailed) return;
    const g = this.#groups.get(rsp.prgIndex);
    const pasidRequired =
      (this.config.get16(this.priCap + PCI_PRI_STATUS) & PCI_PRI_STATUS_PASID) !== 0;
    if (g === undefined || (pasidRequired && g.pidValid && (!rsp.pv || rsp.pid !== g.pid))) {
      this.#priStatus(PCI_PRI_STATUS_UPRGI);
      return;
    }
    this.#groups.delete(rsp.prgIndex);
    this.#priOutstanding -= g.pages;
    const code = rsp.responseCode;
    if (code > PRG_RESPONSE_INVALID) {
      this.#priFailed = true;
      this.#dropGroups();
      this.#priStatus(PCI_PRI_STATUS_RF);
      g.onResponse(PRG_RESPONSE_FAILURE);
      this.onPriCredits?.();
      return;
    }
    this.#priStatus();
    g.onResponse(code);
    this.onPriCredits?.();
  }

  /**
   * Reads `out.length` bytes at `addr` by DMA (reads for execute with `exec`, which counts only
   * with a PASID). Returns the number of bytes read; when short, the `fault*` fields say why and
   * where.
   */
  dmaRead(
    addr: number,
    out: Uint8Array,
    pasid = ATC_NO_PASID,
    priv = false,
    exec = false,
  ): number {
    const mem = this.#begin();
    if (mem === undefined) return 0;
    let done = 0;
    while (done < out.length) {
      const a = addr + done;
      const n = Math.min(out.length - done, PAGE - (a % PAGE));
      const pa = this.#xlate(a, false, pasid, priv, exec);
      if (pa < 0) return done;
      mem.copyOut(pa, out, done, n);
      if (mem.fault !== 0) return this.#fail(DMA_ERR_BUS, a, false, 0, done);
      done += n;
    }
    return done;
  }

  /** Writes `data` at `addr` by DMA. Returns the number of bytes written (see {@linkcode dmaRead}). */
  dmaWrite(addr: number, data: Uint8Array, pasid = ATC_NO_PASID, priv = false): number {
    const mem = this.#begin();
    if (mem === undefined) return 0;
    let done = 0;
    while (done < data.length) {
      const a = addr + done;
      const n = Math.min(data.length - done, PAGE - (a % PAGE));
      if (!this.#put(mem, a, data, done, n, pasid, priv)) return done;
      done += n;
    }
    return done;
  }

  /**
   * Copies `len` bytes from `src` to `dst` by DMA, reading one source page at a time into a
   * reused bounce buffer (reads for execute with `exec`). Returns the number of bytes copied (see
   * {@linkcode dmaRead}).
   */
  dmaCopy(
    dst: number,
    src: number,
    len: number,
    pasid = ATC_NO_PASID,
    priv = false,
    exec = false,
  ): number {
    const mem = this.#begin();
    if (mem === undefined) return 0;
    const bounce = this.#bounce ??= new Uint8Array(PAGE);
    let done = 0;
    while (done < len) {
      const s = src + done;
      const n = Math.min(len - done, PAGE - (s % PAGE));
      const spa = this.#xlate(s, false, pasid, priv, exec);
      if (spa < 0) return done;
      mem.copyOut(spa, bounce, 0, n);
      if (mem.fault !== 0) return this.#fail(DMA_ERR_BUS, s, false, 0, done);
      let w = 0;
      while (w < n) {
        const d = dst + done + w;
        const m = Math.min(n - w, PAGE - (d % PAGE));
        if (!this.#put(mem, d, bounce, w, m, pasid, priv)) {
          return done + w;
        }
        w += m;
      }
      done += n;
    }
    return done;
  }

  /**
   * Fills `len` bytes at `dst` with the little-endian 32-bit `pattern` repeated from `dst` on.
   * Returns the number of bytes written (see {@linkcode dmaRead}).
   */
  dmaFill(dst: number, len: number, pattern: number, pasid = ATC_NO_PASID, priv = false): number {
    const mem = this.#begin();
    if (mem === undefined) return 0;
    const p = pattern >>> 0;
    const byte = p & 0xff;
    const uniform = p === (byte * 0x0101_0101) >>> 0;
    let buf = this.#fillBuf;
    if (!uniform && (buf === undefined || this.#fillPattern !== p)) {
      buf = this.#fillBuf = new Uint8Array(PAGE + 4);
      new DataView(buf.buffer).setUint32(0, p, true);
      for (let i = 4; i < buf.length; i++) buf[i] = buf[i & 3];
      this.#fillPattern = p;
    }
    let done = 0;
    while (done < len) {
      const d = dst + done;
      const n = Math.min(len - done, PAGE - (d % PAGE));
      const pa = this.#xlate(d, true, pasid, priv, false);
      if (pa === -1) return done;
      if (pa >= 0) {
        if (uniform) mem.fill(pa, n, byte);
        else mem.writeBytes(pa, buf!, done & 3, n);
        if (mem.fault !== 0) return this.#fail(DMA_ERR_BUS, d, true, 0, done);
      }
      done += n;
    }
    return done;
  }

  /**
   * Sends an MSI: a 32-bit write of `data` to `addrLo`/`addrHi`, translated when the root
   * complex translates MSIs. Dropped when Bus Master Enable is clear (MSI-X holds its messages
   * before that) or the write faults.
   */
  msiWrite(addrLo: number, addrHi: number, data: number): void {
    const rc = this.#rc;
    if (rc === undefined || !this.busMaster) return;
    const addr = toNumber64(addrLo, addrHi);
    if (!rc.translateMsi || this.dmaBypass) {
      rc.mem.write32(addr, data);
      return;
    }
    const req = this.#req, res = this.#res;
    req.kind = REQ_UNTRANSLATED;
    req.access = ACC_WRITE;
    req.pidValid = false;
    req.pid = 0;
    req.priv = false;
    req.data = data >>> 0;
    req.len = 4;
    req.iovaLo = addrLo >>> 0;
    req.iovaHi = addrHi >>> 0;
    rc.inbound(this, req, res);
    if (res.status === XLATE_OK) rc.mem.write32(res.pa, data);
  }

  /**
   * Drops the ATC entries overlapping `[addr, addr + size)` for `pasid` (all PASIDs when
   * undefined; see {@linkcode Atc.invalidate}) at once. Returns the number of entries dropped.
   */
  atsInvalidate(pasid: number | undefined, addr: number, size: number, global = false): number {
    return this.atc === undefined ? 0 : this.atc.invalidate(pasid, addr, size, global);
  }

  /**
   * An ATS Invalidate Request from the root complex (the IOMMU's ATS.INVAL). The function takes it
   * when fewer than {@linkcode atsInvalidateQueueDepth} are in its queue (false otherwise: PCIe
   * backpressure, nothing happens) and, {@linkcode atsInvalidateNs} later, drops the entries (as
   * {@linkcode atsInvalidate}) and sends the Invalidation Completion: `done`. Until then it may
   * still use them, as a device may before it completes the request.
   */
  atsInvalidateRequest(
    pasid: number | undefined,
    addr: number,
    size: number,
    global: boolean,
    done: () => void,
  ): boolean {
    if (this.atc === undefined || this.#invalidations >= this.atsInvalidateQueueDepth) return false;
    this.#invalidations++;
    if (this.atsInvalidateNs === Infinity) return true;
    this.#clock.after(this.atsInvalidateNs, () => {
      this.#invalidations--;
      this.atsInvalidate(pasid, addr, size, global);
      done();
    });
    return true;
  }

  /**
   * The PRI control register was written: Reset (with Enable clear) forgets every outstanding
   * group; Enable going 0→1 ends the stop a Response Failure caused. Reset reads 0.
   */
  #priControlWritten(wasEnabled: boolean, reset: boolean): void {
    const off = this.priCap + PCI_PRI_CTRL;
    const ctrl = this.config.get16(off) & ~PCI_PRI_CTRL_RESET;
    this.config.set16(off, ctrl);
    const enabled = (ctrl & PCI_PRI_CTRL_ENABLE) !== 0;
    if (reset && !enabled) {
      this.#dropGroups();
      this.#priOutstanding = 0;
    }
    if (enabled && !wasEnabled) this.#priFailed = false;
    this.#priStatus();
    this.onPriCredits?.();
  }

  /** Fails every outstanding group (its handler gets Response Failure) and frees its pages. */
  #dropGroups(): void {
    const groups = [...this.#groups.values()];
    this.#groups.clear();
    this.#priOutstanding = 0;
    for (const g of groups) g.onResponse(PRG_RESPONSE_FAILURE);
  }

  /** Sets the PRI status bits `set`, and Stopped as Enable and the outstanding groups say. */
  #priStatus(set = 0): void {
    const off = this.priCap + PCI_PRI_STATUS;
    const stopped = !this.priEnabled && this.#groups.size === 0;
    const st = this.config.get16(off) & ~PCI_PRI_STATUS_STOPPED;
    this.config.set16(off, st | set | (stopped ? PCI_PRI_STATUS_STOPPED : 0));
  }

  #begin(): PhysicalMemory | undefined {
    this.faultKind = DMA_OK;
    this.faultCause = 0;
    this.faultCompletion = CPL_SC;
    if (this.#rc === undefined || !this.busMaster) {
      this.#fail(DMA_ERR_NO_MASTER, 0, false, 0, 0);
      return undefined;
    }
    return this.#rc.mem;
  }

  #fail(kind: number, addr: number, write: boolean, cause: number, done: number): number {
    this.faultKind = kind;
    this.faultAddr = addr;
    this.faultWrite = write;
    this.faultCause = cause;
    return done;
  }

  /** One write transaction of `data[off, off + len)` (within a page) at `addr`; false when it failed. */
  #put(
    mem: PhysicalMemory,
    addr: number,
    data: Uint8Array,
    off: number,
    len: number,
    pasid: number,
    priv: boolean,
  ): boolean {
    const pa = this.#xlate(addr, true, pasid, priv, false);
    if (pa === -1) return false;
    if (pa === -2) return true; // absorbed by the IOMMU
    mem.writeBytes(pa, data, off, len);
    if (mem.fault !== 0) {
      this.#fail(DMA_ERR_BUS, addr, true, 0, 0);
      return false;
    }
    return true;
  }

  /**
   * Translates one transaction at `addr`: returns the physical address, -2 when the IOMMU
   * absorbed a write, or -1 with the `fault*` fields set.
   */
  #xlate(addr: number, write: boolean, pasid: number, priv: boolean, exec: boolean): number {
    const rc = this.#rc!;
    const req = this.#req, res = this.#res;
    req.pidValid = pasid >= 0;
    req.pid = pasid >= 0 ? pasid : 0;
    req.priv = pasid >= 0 && priv;
    // Execute Requested travels in the PASID prefix: without a PASID a read is a plain read.
    req.access = write ? ACC_WRITE : exec && pasid >= 0 ? ACC_EXEC : ACC_READ;
    req.len = PAGE;
    req.data = 0;
    let at = addr;
    req.kind = REQ_UNTRANSLATED;
    const atc = this.atc;
    if (atc !== undefined && this.atsEnabled && !this.dmaBypass) {
      // An execute needs X, which a completion grants only with R.
      const need = write ? 2 : exec && pasid >= 0 ? 4 : 1;
      if (!atc.lookup(pasid, addr) || (!atc.untranslatedOnly && (atc.perm & need) === 0)) {
        req.kind = REQ_ATS;
        req.noWrite = !write;
        req.execReq = exec && pasid >= 0;
        setIova(req, addr - (addr % PAGE));
        rc.clock.charge(rc.clock.costs.atsRequest);
        rc.inbound(this, req, res);
        if (res.status !== XLATE_OK) return this.#abort(addr, write);
        if (res.untranslatedOnly || res.perm !== 0) {
          atc.insert(pasid, addr, res.size, res.pa, res.perm, res.untranslatedOnly, res.global);
        }
        if (!res.untranslatedOnly && (res.perm & need) === 0) {
          return this.#fail(DMA_ERR_ATS_DENIED, addr, write, 0, -1);
        }
        atc.lookup(pasid, addr);
      }
      if (atc.untranslatedOnly) {
        req.kind = REQ_UNTRANSLATED;
      } else {
        req.kind = REQ_TRANSLATED;
        at = atc.pa;
      }
    }
    setIova(req, at);
    rc.inbound(this, req, res);
    if (res.status === XLATE_OK) return res.pa;
    if (res.status === XLATE_ABSORBED && write) return -2;
    return this.#abort(addr, write);
  }

  /** The root complex refused the transaction: the IOMMU's cause and completion status. */
  #abort(addr: number, write: boolean): number {
    this.faultCompletion = this.#res.completion;
    return this.#fail(DMA_ERR_ABORT, addr, write, this.#res.cause, -1);
  }

  #remap(): void {
    const rc = this.#rc;
    if (rc === undefined) return;
    for (const bar of this.#bars) {
      const want = this.memoryEnabled ? this.barAddress(bar.index) : -1;
      const cur = this.#regions[bar.index];
      if (cur !== undefined && cur.base === want) continue;
      if (cur !== undefined) rc.mem.removeMmio(cur);
      this.#regions[bar.index] = want >= 0 && rc.canMap(want, bar.size)
        ? rc.mem.addMmio(want, bar.size, this.#windows[bar.index], `${this.name} BAR${bar.index}`)
        : undefined;
    }
  }

  /** The BAR's handler on the bus: MSI-X table and PBA ranges go to MSI-X, the rest to the
   * device. */
  #barWindow(bar: BarSpec): MmioHandler {
    const dev = bar.handler;
    const msixRange = (off: number): 0 | 1 | 2 => {
      const m = this.msix;
      if (m === undefined || m.bar !== bar.index) return 0;
      if (off >= m.tableOffset && off < m.tableOffset + m.tableSize) return 1;
      if (off >= m.pbaOffset && off < m.pbaOffset + m.pbaSize) return 2;
      return 0;
    };
    const read32 = (off: number): number => {
      const r = msixRange(off);
      if (r === 1) return this.msix!.readTable32(off - this.msix!.tableOffset);
      if (r === 2) return this.msix!.readPba32(off - this.msix!.pbaOffset);
      return dev.read32(off);
    };
    const write32 = (off: number, v: number): void => {
      const r = msixRange(off);
      if (r === 1) this.msix!.writeTable32(off - this.msix!.tableOffset, v);
      else if (r === 0) dev.write32(off, v);
    };
    const read64 = (off: number): bigint => {
      if (msixRange(off) === 0) return dev.read64(off);
      return read64Split({ read32 }, off);
    };
    const write64 = (off: number, v: bigint): void => {
      if (msixRange(off) === 0) return dev.write64(off, v);
      write64Split({ write32 }, off, v);
    };
    return { read32, write32, read64, write64 };
  }
}
