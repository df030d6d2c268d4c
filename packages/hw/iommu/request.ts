/**
 * The IOMMU's inbound edge: a transaction from a device (through the root complex or a
 * platform master) and the response the IOMMU gives it.
 *
 * Both are plain mutable objects so the hot path can reuse one of each and allocate nothing.
 *
 * @module
 */
import { hi32, hiOf, join64, lo32, loOf } from "../_u64.ts";

/** Kind of inbound transaction. */
export const REQ_UNTRANSLATED = 0;
/** A PCIe Translated request (AT=10b): the address came from the device's ATC. */
export const REQ_TRANSLATED = 1;
/** A PCIe ATS Translation Request. */
export const REQ_ATS = 2;

/** Access type of a transaction. */
export const ACC_READ = 0;
/** Write or AMO. */
export const ACC_WRITE = 1;
/** Read for execute. */
export const ACC_EXEC = 2;

/** One inbound transaction. */
export interface InboundRequest {
  /** Requester device_id (up to 24 bits). */
  deviceId: number;
  /** True when the transaction carries a process_id (PCIe PASID). */
  pidValid: boolean;
  /** process_id (up to 20 bits); meaningful when {@linkcode pidValid}. */
  pid: number;
  /** Privileged (supervisor) access; only meaningful with a process_id. */
  priv: boolean;
  /** {@linkcode ACC_READ}, {@linkcode ACC_WRITE} or {@linkcode ACC_EXEC}. Not used by ATS
   * translation requests, which say what they ask for with {@linkcode noWrite} and
   * {@linkcode execReq}. */
  access: 0 | 1 | 2;
  /** ATS translation request: No-Write (NW), only read permission is asked for. */
  noWrite: boolean;
  /** ATS translation request: Execute-Requested (ER); PCIe carries it in the PASID prefix, so it
   * counts only with a process_id. */
  execReq: boolean;
  /** {@linkcode REQ_UNTRANSLATED}, {@linkcode REQ_TRANSLATED} or {@linkcode REQ_ATS}. */
  kind: 0 | 1 | 2;
  /** Low unsigned 32 bits of the address (IOVA; SPA or GPA for translated requests). A 64-bit
   * address is kept as two halves so the hot path never needs `bigint`; see {@linkcode setIova}. */
  iovaLo: number;
  /** High unsigned 32 bits of the address. */
  iovaHi: number;
  /** For writes: the 32-bit value written. Only MSI writes that the IOMMU absorbs (MRIF mode)
   * look at it. */
  data: number;
  /** Access length in bytes (MRIF-mode MSI writes must be 4 bytes, 4-byte aligned). */
  len: number;
  /** Issued by the debug translation interface (`tr_req_ctl`): translated like an Untranslated
   * request, but an address mapped by an MRIF-mode MSI PTE faults with cause 260 instead of
   * being delivered. */
  debug: boolean;
}

/** Outcome status of a translation. */
export const XLATE_OK = 0;
/** The translation faulted; see {@linkcode TranslationResult.cause}. */
export const XLATE_FAULT = 1;
/** The IOMMU consumed the write itself (an MSI to an MRIF-mode MSI PTE, or one it silently
 * discards); the bridge must not forward it. An absorbed read (an aligned 32-bit read of an
 * MRIF-mapped page) completes with zeros. */
export const XLATE_ABSORBED = 2;

/** PCIe completion status of a request the IOMMU answered: Successful Completion. */
export const CPL_SC = 0;
/** PCIe completion status: Unsupported Request. */
export const CPL_UR = 1;
/** PCIe completion status: Completer Abort. */
export const CPL_CA = 4;

/**
 * The PCIe completion status a faulting request gets for fault `cause`. For ATS translation
 * requests spec §2.6 "PCIe ATS translation request handling" lists it: configuration errors and
 * access faults (1, 5, 7, 261, 263, 265, 267) are Completer Abort; a permanent error or ATS not
 * being allowed (256–260) is Unsupported Request. Chapter 6 "Hardware guidelines" adds Completer
 * Abort for the data-corruption causes (268–272, 274). The spec leaves the status of a faulting
 * Untranslated or Translated read to the bridge ("UR or CA"): this model uses the same table for
 * them and answers the page-fault class (page and guest-page faults, 262, 266: no translation
 * exists, as with an address nothing claims) with Unsupported Request, the rest (misaligned and
 * MRIF access faults too) with Completer Abort.
 */
export function completionStatus(cause: number): number {
  switch (cause) {
    case 1:
    case 4:
    case 5:
    case 6:
    case 7:
    case 261:
    case 263:
    case 264:
    case 265:
    case 267:
    case 268:
    case 269:
    case 270:
    case 271:
    case 272:
    case 274:
      return CPL_CA;
  }
  return CPL_UR;
}

/** The IOMMU's answer to an {@linkcode InboundRequest}. */
export interface TranslationResult {
  /** {@linkcode XLATE_OK}, {@linkcode XLATE_FAULT} or {@linkcode XLATE_ABSORBED}. */
  status: 0 | 1 | 2;
  /** Physical address (valid when OK). A number: exact below 2^53, which covers every address
   * this platform maps (the bus faults anything above). */
  pa: number;
  /** Permissions granted: bit 0 R, bit 1 W, bit 2 X (ATS completions report these). */
  perm: number;
  /** Resolved PBMT (0 PMA, 1 NC, 2 IO). */
  pbmt: number;
  /** Size of the translation range in bytes (4 KiB or a superpage size). */
  size: number;
  /** For ATS: the completion is "untranslated only" (U=1, MRIF-mapped address). */
  untranslatedOnly: boolean;
  /** For ATS: the first-stage G bit (global) when a PASID was present. */
  global: boolean;
  /** The fault CAUSE when status is FAULT (spec §3.2 "Fault/Event-Queue"). */
  cause: number;
  /** TTYP of the fault record. */
  ttyp: number;
  /** iotval of the fault record. */
  iotval: bigint;
  /** iotval2 of the fault record. */
  iotval2: bigint;
  /** True when a fault record was written to the fault queue (false when DTF suppressed it,
   * or the fault is one the spec answers without a record, such as ATS page faults). */
  reported: boolean;
  /** When status is FAULT: the PCIe completion status the requester sees, {@linkcode CPL_UR} or
   * {@linkcode CPL_CA} (see {@linkcode completionStatus}); not maintained otherwise. */
  completion: number;
}

/** Creates a zeroed request (an untranslated read of IOVA 0 by device 0). */
export function newRequest(init: Partial<InboundRequest> = {}): InboundRequest {
  return {
    deviceId: 0,
    pidValid: false,
    pid: 0,
    priv: false,
    access: ACC_READ,
    noWrite: false,
    execReq: false,
    kind: REQ_UNTRANSLATED,
    iovaLo: 0,
    iovaHi: 0,
    data: 0,
    len: 4,
    debug: false,
    ...init,
  };
}

/** Creates an empty result object to be filled by translations. */
export function newResult(): TranslationResult {
  return {
    status: XLATE_OK,
    pa: 0,
    perm: 0,
    pbmt: 0,
    size: 0,
    untranslatedOnly: false,
    global: false,
    cause: 0,
    ttyp: 0,
    iotval: 0n,
    iotval2: 0n,
    reported: false,
    completion: CPL_SC,
  };
}

/** Sets the address of `req` from a number (below 2^53) or a 64-bit `bigint` (sign-extended
 * IOVAs such as 0xffff_ffc0_0000_0000). */
export function setIova(req: InboundRequest, iova: number | bigint): void {
  if (typeof iova === "bigint") {
    const v = BigInt.asUintN(64, iova);
    req.iovaLo = lo32(v);
    req.iovaHi = hi32(v);
  } else {
    req.iovaLo = loOf(iova);
    req.iovaHi = hiOf(iova);
  }
}

/** The address of `req` as a `bigint` (API edges, fault records). */
export function iovaOf(req: InboundRequest): bigint {
  return join64(req.iovaLo, req.iovaHi);
}

/** Anything that answers inbound transactions: the IOMMU, or a bridge with no IOMMU. */
export interface TranslationPort {
  /** Translates `req`, filling `res`; never throws. */
  translate(req: InboundRequest, res: TranslationResult): void;
}
