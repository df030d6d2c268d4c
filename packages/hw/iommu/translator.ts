/**
 * The IOMMU's translation core: answers every inbound transaction from the device directory,
 * process directory, page tables and MSI page tables in memory, with DDT/PDT caches and an IOTLB.
 *
 * @module
 */

import type { PhysicalMemory } from "../memory.ts";
import type { IommuCaps } from "./caps.ts";
import {
  type InboundRequest,
  iovaOf,
  type TranslationPort,
  type TranslationResult,
  XLATE_FAULT,
} from "./request.ts";
import { RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED } from "./structs.ts";

/** Sizes of the translation caches (entries). */
export interface CacheOptions {
  /** Device contexts cached (tagged by device_id). */
  ddtEntries?: number;
  /** Process contexts cached (tagged by device_id and process_id). */
  pdtEntries?: number;
  /** IOTLB entries (rounded up to a power of two). */
  iotlbEntries?: number;
}

/** Receives the standard HPM events (digest §3.9) as they happen. */
export interface HpmEventSink {
  /** Counts one occurrence of `eventId` with the IDs the counter filters look at. */
  count(
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void;
}

/** The translation core (work in progress: every request faults with cause 256). */
export class Translator implements TranslationPort {
  /** `ddtp.iommu_mode`: 0 Off, 1 Bare, 2 1LVL, 3 2LVL, 4 3LVL. */
  ddtpMode = 0;
  /** `ddtp.PPN`: the root device-directory page. */
  ddtpPpn = 0;
  /** `fctl.BE`. */
  fctlBE = false;
  /** `fctl.GXL`. */
  fctlGXL = false;
  /** When false every translation walks (the IOTLB is neither looked up nor filled). */
  iotlbEnabled = true;
  /** HPM event sink, or null. */
  hpm: HpmEventSink | null = null;

  /** Creates a translator reading structures from `mem`. */
  constructor(mem: PhysicalMemory, caps: IommuCaps, opts: CacheOptions = {}) {
    void mem;
    void caps;
    void opts;
  }

  /** Translates `req` into `res`; never throws. */
  translate(req: InboundRequest, res: TranslationResult): void {
    res.status = XLATE_FAULT;
    res.cause = RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED;
    res.ttyp = 0;
    res.iotval = iovaOf(req);
    res.iotval2 = 0n;
    res.reported = true;
  }

  /** IODIR.INVAL_DDT. */
  invalDdt(dv: boolean, did: number): void {
    void dv;
    void did;
  }

  /** IODIR.INVAL_PDT. */
  invalPdt(did: number, pid: number): void {
    void did;
    void pid;
  }

  /** IOTINVAL.VMA. */
  iotinvalVma(
    gv: boolean,
    av: boolean,
    pscv: boolean,
    gscid: number,
    pscid: number,
    addrLo: number,
    addrHi: number,
    nl: boolean,
    s: boolean,
  ): void {
    void [gv, av, pscv, gscid, pscid, addrLo, addrHi, nl, s];
  }

  /** IOTINVAL.GVMA. */
  iotinvalGvma(
    gv: boolean,
    av: boolean,
    gscid: number,
    addrLo: number,
    addrHi: number,
    nl: boolean,
    s: boolean,
  ): void {
    void [gv, av, gscid, addrLo, addrHi, nl, s];
  }

  /** Empties every cache (reset). */
  flushAll(): void {}
}
