/**
 * The IOMMU's end of the PCIe Page Request Interface (spec §2.7 "PCIe ATS Page Request handling"
 * and §3.3 "Page-Request-Queue"): a Page Request or Stop Marker message from the root complex
 * locates its device context, is queued in the page-request queue when the device may use PRI and
 * the queue takes it, and otherwise is discarded or answered by the IOMMU itself with a Page
 * Request Group Response.
 *
 * @module
 */
import type { AtsPort } from "./command_queue.ts";
import type { DeviceContext } from "./context.ts";
import {
  type PageRequest,
  QUEUE_RECORD_MEM_FAULT,
  QUEUE_RECORD_OFF,
  QUEUE_RECORD_WRITTEN,
} from "./queues.ts";
import {
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_BARE,
  RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED,
  RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED,
} from "./structs.ts";
import type { Translator } from "./translator.ts";

/** PRG Response Code (PCIe): Success, the pages are there; retry the translation. */
export const PRG_RESPONSE_SUCCESS = 0;
/** PRG Response Code: Invalid Request, the pages will never be there. */
export const PRG_RESPONSE_INVALID = 1;
/** PRG Response Code: Response Failure, a catastrophic error; the function stops its PRI. */
export const PRG_RESPONSE_FAILURE = 0xf;

/** PCIe message code of a Page Request (what `iotval` holds in a TTYP 9 fault record). */
export const PCIE_MSG_CODE_PAGE_REQUEST = 0x04;

/** {@linkcode PageRequestUnit.receive}: the message was written to the page-request queue. */
export const PRQ_QUEUED = 0;
/** The message was discarded: it needs no response (L=0, or a Stop Marker) and was not queued. */
export const PRQ_DISCARDED = 1;
/** The IOMMU answered the group itself with Success. */
export const PRQ_ANSWERED_SUCCESS = 2;
/** The IOMMU answered the group itself with Invalid Request. */
export const PRQ_ANSWERED_INVALID = 3;
/** The IOMMU answered the group itself with Response Failure. */
export const PRQ_ANSWERED_FAILURE = 4;

/** Where the root complex delivers Page Request messages: the IOMMU. */
export interface PageRequestPort {
  /** Handles one Page Request or Stop Marker message; returns a `PRQ_*` outcome. */
  pageRequest(pr: PageRequest): number;
}

/** What the page-request path uses of the IOMMU it sits in. */
export interface PageRequestHost {
  /** Writes a page-request record; returns a `QUEUE_RECORD_*` outcome. */
  queue(pr: PageRequest): number;
  /** Writes a TTYP 9 fault record with `cause` for the message (`dtf`: DC.tc.DTF, if located). */
  fault(pr: PageRequest, cause: number, dtf: boolean): void;
  /** Where the IOMMU's own responses go (null: nowhere). */
  readonly ats: AtsPort | null;
}

/**
 * The decisions of spec §2.7 for one message, in order:
 *
 * | condition | queued? | a message with L=1 that is not a Stop Marker gets | PASID echoed |
 * |---|---|---|---|
 * | `ddtp` Off (256); DDT entry load fault, corruption, not valid or misconfigured (257, 268, 258, 259) | no, fault logged | Response Failure | if the request had one |
 * | `ddtp` Bare, a device_id too wide for the DDT, EN_ATS or EN_PRI 0 (260) | no, fault logged (DTF applies once the DC is located) | Invalid Request | per PRPR (0 without a DC) |
 * | `pqen`/`pqon` 0, or `pqmf` set (or set by this record's store) | no, no fault | Response Failure | if the request had one |
 * | queue full (sets `pqof`) or `pqof` set | no, no fault | Success | per PRPR |
 * | otherwise | yes (and `pip`) | — (software answers with ATS.PRGR) | — |
 *
 * Messages with L=0 and Stop Markers (a PASID, L=1, R=W=0) need no response: when not queued they
 * are discarded silently. A message with L=1 and R=W=0 but no PASID is not a Stop Marker (PCIe
 * gives Stop Markers a PASID): it is answered like any last request.
 */
export class PageRequestUnit {
  readonly #tr: Translator;
  readonly #host: PageRequestHost;

  /** The page-request path of the IOMMU whose translator is `tr`. */
  constructor(tr: Translator, host: PageRequestHost) {
    this.#tr = tr;
    this.#host = host;
  }

  /** Handles `pr` as the table above says; returns a `PRQ_*` outcome. Never throws. */
  receive(pr: PageRequest): number {
    const tr = this.#tr;
    const mode = tr.ddtpMode;
    let dc: DeviceContext | null = null;
    let cause = 0;
    if (mode === RISCV_IOMMU_DDTP_IOMMU_MODE_BARE) {
      cause = RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED;
    } else if (mode < RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL || mode > RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL) {
      cause = RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED;
    } else {
      dc = tr.deviceContext(pr.deviceId, pr.pidValid, pr.pid);
      if (dc === null) cause = tr.dcCause;
      else if (!dc.enAts || !dc.enPri) cause = RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED;
    }
    const needsResponse = pr.last && !(pr.pidValid && !pr.read && !pr.write);
    const prpr = dc !== null && dc.prpr;
    if (cause !== 0) {
      this.#host.fault(pr, cause, dc !== null && dc.dtf);
      if (!needsResponse) return PRQ_DISCARDED;
      return cause === RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED
        ? this.#respond(pr, PRG_RESPONSE_INVALID, prpr)
        : this.#respond(pr, PRG_RESPONSE_FAILURE, true);
    }
    const r = this.#host.queue(pr);
    if (r === QUEUE_RECORD_WRITTEN) return PRQ_QUEUED;
    if (!needsResponse) return PRQ_DISCARDED;
    return r === QUEUE_RECORD_OFF || r === QUEUE_RECORD_MEM_FAULT
      ? this.#respond(pr, PRG_RESPONSE_FAILURE, true)
      : this.#respond(pr, PRG_RESPONSE_SUCCESS, prpr);
  }

  /** Sends the IOMMU's own PRG Response; the PASID goes with it when `withPasid` allows. */
  #respond(pr: PageRequest, code: number, withPasid: boolean): number {
    const pv = withPasid && pr.pidValid;
    const did = pr.deviceId;
    this.#host.ats?.pageResponse({
      rid: did & 0xffff,
      dsv: did > 0xffff,
      dseg: did >>> 16,
      pv,
      pid: pv ? pr.pid : 0,
      prgIndex: pr.prgIndex & 0x1ff,
      responseCode: code,
      dstId: did & 0xffff,
    });
    return code === PRG_RESPONSE_SUCCESS
      ? PRQ_ANSWERED_SUCCESS
      : code === PRG_RESPONSE_INVALID
      ? PRQ_ANSWERED_INVALID
      : PRQ_ANSWERED_FAILURE;
  }
}
