/**
 * Command execution for the command queue (spec §3.1 "Command-Queue"): decoding, the illegal-
 * command checks and the effect of every command. The fetch loop and `cqcsr` live in `iommu.ts`.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { MEM_OK, type PhysicalMemory } from "../memory.ts";
import { hi32, join64, lo32, toNumber64 } from "../_u64.ts";
import type { IommuCaps } from "./caps.ts";
import {
  RISCV_IOMMU_CMD_ATS_DSEG,
  RISCV_IOMMU_CMD_ATS_DSV,
  RISCV_IOMMU_CMD_ATS_FUNC_INVAL,
  RISCV_IOMMU_CMD_ATS_FUNC_PRGR,
  RISCV_IOMMU_CMD_ATS_INVAL_G,
  RISCV_IOMMU_CMD_ATS_INVAL_S,
  RISCV_IOMMU_CMD_ATS_INVAL_UADDR,
  RISCV_IOMMU_CMD_ATS_OPCODE,
  RISCV_IOMMU_CMD_ATS_PID,
  RISCV_IOMMU_CMD_ATS_PRGR_DST_ID,
  RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX,
  RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE,
  RISCV_IOMMU_CMD_ATS_PV,
  RISCV_IOMMU_CMD_ATS_RID,
  RISCV_IOMMU_CMD_IODIR_DV,
  RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT,
  RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT,
  RISCV_IOMMU_CMD_IODIR_OPCODE,
  RISCV_IOMMU_CMD_IOFENCE_AV,
  RISCV_IOMMU_CMD_IOFENCE_FUNC_C,
  RISCV_IOMMU_CMD_IOFENCE_OPCODE,
  RISCV_IOMMU_CMD_IOFENCE_WSI,
  RISCV_IOMMU_CMD_IOTINVAL_AV,
  RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA,
  RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA,
  RISCV_IOMMU_CMD_IOTINVAL_GV,
  RISCV_IOMMU_CMD_IOTINVAL_NL,
  RISCV_IOMMU_CMD_IOTINVAL_OPCODE,
  RISCV_IOMMU_CMD_IOTINVAL_PSCV,
  RISCV_IOMMU_CMD_IOTINVAL_S,
  RISCV_IOMMU_FCTL_BE,
  RISCV_IOMMU_FCTL_WSI,
} from "./regs.ts";

/** The command completed (the fetch loop moves `cqh` past it). */
export const CMD_OK = 0;
/** An IOFENCE.C with WSI=1 completed: set `cqcsr.fence_w_ip`. */
export const CMD_FENCE_W_IP = 1;
/** Illegal or unsupported: set `cqcsr.cmd_ill`; `cqh` stays on the command. */
export const CMD_ILLEGAL = 2;
/** The IOFENCE.C store faulted: set `cqcsr.cqmf`; `cqh` stays on the command. */
export const CMD_MEM_FAULT = 3;
/** An IOFENCE.C found a timed-out ATS.INVAL: set `cqcsr.cmd_to`; `cqh` stays on the fence. */
export const CMD_TIMEOUT = 4;
/**
 * The command cannot complete yet (an ATS.INVAL the device has no room for, an IOFENCE.C behind
 * outstanding ATS.INVALs): `cqh` stays on it and the queue runs again when one completes or times
 * out.
 */
export const CMD_WAIT = 5;

/** {@linkcode AtsPort.invalidate}: the Invalidation Request went out. */
export const ATS_INVAL_SENT = 0;
/** {@linkcode AtsPort.invalidate}: the function's invalidate queue is full; nothing was sent. */
export const ATS_INVAL_BUSY = 1;

/** How long an ATS.INVAL waits for its Invalidation Completion: PCIe's 1 minute, in ns. */
export const ATS_INVAL_TIMEOUT_NS = 60e9;

/** The caches a command invalidates; `Translator` implements it. */
export interface Invalidator {
  /** IODIR.INVAL_DDT: `dv` false drops every DDT and PDT entry, else those of `did`. */
  invalDdt(dv: boolean, did: number): void;
  /** IODIR.INVAL_PDT: drops the process context of (`did`, `pid`). */
  invalPdt(did: number, pid: number): void;
  /** IOTINVAL.VMA; the address is ADDR[63:12] << 12 as two 32-bit halves. */
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
  ): void;
  /** IOTINVAL.GVMA; the address is the GPA ADDR[63:12] << 12 as two 32-bit halves. */
  iotinvalGvma(
    gv: boolean,
    av: boolean,
    gscid: number,
    addrLo: number,
    addrHi: number,
    nl: boolean,
    s: boolean,
  ): void;
}

/** The requester an ATS command is addressed to (dword0 of ATS.INVAL and ATS.PRGR). */
export interface AtsTarget {
  /** Requester ID (bus:dev.fn) of the device. */
  rid: number;
  /** `dseg` is a valid PCIe segment number. */
  dsv: boolean;
  /** Segment number. */
  dseg: number;
  /** The message carries a PASID (`pid`). */
  pv: boolean;
  /** PASID. */
  pid: number;
}

/** An ATS.INVAL command: the PCIe Invalidation Request to send. */
export interface AtsInvalidation extends AtsTarget {
  /** Global invalidate (payload bit 0). */
  global: boolean;
  /** Size bit: the address encodes a range larger than 4 KiB (PCIe encoding). */
  s: boolean;
  /** Untranslated address, bits 63:12 (low 12 bits zero). */
  addr: bigint;
}

/** An ATS.PRGR command: the PCIe Page Request Group Response to send. */
export interface PageGroupResponse extends AtsTarget {
  /** Page Request Group Index. */
  prgIndex: number;
  /** Response code: 0 Success, 1 Invalid Request, 15 Response Failure. */
  responseCode: number;
  /** Destination ID (v1.0 layout; later revisions made these bits zero). */
  dstId: number;
}

/** Where ATS commands go: the root complex, which forwards them to the devices. */
export interface AtsPort {
  /**
   * Sends an Invalidation Request. Returns {@linkcode ATS_INVAL_SENT}, and calls `done` when the
   * Invalidation Completion arrives (later, or never), or {@linkcode ATS_INVAL_BUSY} when the
   * function cannot take another request now (its invalidate queue is full: PCIe backpressure).
   */
  invalidate(inv: AtsInvalidation, done: () => void): number;
  /** Sends a Page Request Group Response (the IOMMU's own, or one ATS.PRGR asks for). */
  pageResponse(rsp: PageGroupResponse): void;
}

/** One ATS.INVAL in flight: waiting for room, waiting for its completion, or ended. */
interface _Inval {
  /** The timeout's clock event (0: none). */
  timer: number;
  /** Completed or timed out. */
  ended: boolean;
}

// Reserved bits per command (spec §3.1 "Command-Queue"); NL/S are carved out when the caps have
// them.
const IOTINVAL_RSVD0 = 1n << 11n | 0x3ffn << 34n | 0xfn << 60n;
const IOTINVAL_RSVD1 = 0x3ffn | 3n << 62n;
const IOFENCE_RSVD0 = 0x3ffffn << 14n;
const IOFENCE_RSVD1 = 3n << 62n;
const IODIR_RSVD0 = 3n << 10n | 1n << 32n | 0x3fn << 34n;
const ATS_RSVD0 = 3n << 10n | 0x3fn << 34n;

// The fetch loop decodes the unsigned 32-bit halves of each doubleword (lo = bits 31:0, hi =
// bits 63:32) so invalidations, the driver's hot path, run without bigint: these are the masks
// above and the regs.ts fields, split once.
const IOTINVAL_RSVD0_LO = lo32(IOTINVAL_RSVD0), IOTINVAL_RSVD0_HI = hi32(IOTINVAL_RSVD0);
const IOTINVAL_RSVD1_LO = lo32(IOTINVAL_RSVD1), IOTINVAL_RSVD1_HI = hi32(IOTINVAL_RSVD1);
const IOTINVAL_NL_HI = hi32(RISCV_IOMMU_CMD_IOTINVAL_NL);
const IOTINVAL_S_LO = lo32(RISCV_IOMMU_CMD_IOTINVAL_S);
const IOTINVAL_AV_LO = lo32(RISCV_IOMMU_CMD_IOTINVAL_AV);
const IOTINVAL_PSCV_HI = hi32(RISCV_IOMMU_CMD_IOTINVAL_PSCV);
const IOTINVAL_GV_HI = hi32(RISCV_IOMMU_CMD_IOTINVAL_GV);
const IOFENCE_RSVD0_LO = lo32(IOFENCE_RSVD0), IOFENCE_RSVD1_HI = hi32(IOFENCE_RSVD1);
const IOFENCE_AV_LO = lo32(RISCV_IOMMU_CMD_IOFENCE_AV);
const IOFENCE_WSI_LO = lo32(RISCV_IOMMU_CMD_IOFENCE_WSI);
const IODIR_RSVD0_LO = lo32(IODIR_RSVD0), IODIR_RSVD0_HI = hi32(IODIR_RSVD0);
const IODIR_DV_HI = hi32(RISCV_IOMMU_CMD_IODIR_DV);

/**
 * Executes one command at a time. Every command but ATS.INVAL takes effect inside `execute` (so
 * IOFENCE.C PR/PW have nothing left to order). ATS.INVAL is sent to the {@linkcode AtsPort} and
 * completes when the device's Invalidation Completion arrives, or when {@linkcode atsTimeoutNs}
 * of the {@linkcode clock} pass without one (spec §3.1.4, IOMMU PCIe ATS commands): `cqh` moves past it once it
 * is sent, an IOFENCE.C waits for every earlier one ({@linkcode CMD_WAIT}) and then reports a
 * timeout as `cmd_to`. A function with no room for the request holds the command queue on the
 * ATS.INVAL (its timeout runs meanwhile). Without a clock nothing can be waited for: an
 * invalidation the port does not complete within the call counts as timed out at once.
 */
export class CommandUnit {
  /** Where ATS.INVAL and ATS.PRGR go; without one, ATS.INVAL completes at once. */
  ats: AtsPort | null = null;
  /** Times ATS.INVAL completions out. */
  clock: Clock | null = null;
  /** How long an ATS.INVAL may take, in ns of {@linkcode clock}. */
  atsTimeoutNs: number = ATS_INVAL_TIMEOUT_NS;
  /** Called when an ATS.INVAL completes or times out: a waiting command may run now. */
  onAtsProgress: (() => void) | null = null;
  /** An ATS.INVAL timed out since the last IOFENCE.C reported one. */
  atsTimedOut = false;
  readonly #pending = new Set<_Inval>();
  #blocked: _Inval | null = null;
  readonly #mem: PhysicalMemory;
  readonly #caps: IommuCaps;
  readonly #inval: Invalidator;
  readonly #rsvd0HiIotinval: number;
  readonly #rsvd1LoIotinval: number;

  /** A command unit storing through `mem` and invalidating `inval`'s caches. */
  constructor(mem: PhysicalMemory, caps: IommuCaps, inval: Invalidator) {
    this.#mem = mem;
    this.#caps = caps;
    this.#inval = inval;
    this.#rsvd0HiIotinval = caps.nl ? IOTINVAL_RSVD0_HI & ~IOTINVAL_NL_HI : IOTINVAL_RSVD0_HI;
    this.#rsvd1LoIotinval = caps.s ? IOTINVAL_RSVD1_LO & ~IOTINVAL_S_LO : IOTINVAL_RSVD1_LO;
  }

  /** ATS.INVALs still waiting for their completion. */
  get atsPending(): number {
    return this.#pending.size;
  }

  /**
   * Forgets every ATS.INVAL in flight and any reported timeout (reset, or a command queue enabled
   * afresh): late completions are ignored.
   */
  resetAts(): void {
    for (const inv of this.#pending) this.#end(inv);
    if (this.#blocked !== null) this.#end(this.#blocked);
    this.#pending.clear();
    this.#blocked = null;
    this.atsTimedOut = false;
  }

  /** Executes the command `d0`/`d1` under feature control `fctl`; returns a `CMD_*` outcome. */
  execute(d0: bigint, d1: bigint, fctl: number): number {
    return this.executeHalves(lo32(d0), hi32(d0), lo32(d1), hi32(d1), fctl);
  }

  /**
   * {@linkcode execute} on the unsigned 32-bit halves of the two doublewords, as the fetch loop
   * reads them: invalidations are the driver's hot path, so they decode without `bigint`.
   */
  executeHalves(d0lo: number, d0hi: number, d1lo: number, d1hi: number, fctl: number): number {
    const func = (d0lo >>> 7) & 7;
    switch (d0lo & 0x7f) {
      case RISCV_IOMMU_CMD_IOTINVAL_OPCODE:
        return this.#iotinval(func, d0lo, d0hi, d1lo, d1hi);
      case RISCV_IOMMU_CMD_IOFENCE_OPCODE:
        return this.#iofence(func, d0lo, d0hi, d1lo, d1hi, fctl);
      case RISCV_IOMMU_CMD_IODIR_OPCODE:
        return this.#iodir(func, d0lo, d0hi, d1lo, d1hi);
      case RISCV_IOMMU_CMD_ATS_OPCODE:
        return this.#ats(func, join64(d0lo, d0hi), join64(d1lo, d1hi));
    }
    return CMD_ILLEGAL;
  }

  #iotinval(func: number, d0lo: number, d0hi: number, d1lo: number, d1hi: number): number {
    if (
      d0lo & IOTINVAL_RSVD0_LO || d0hi & this.#rsvd0HiIotinval ||
      d1lo & this.#rsvd1LoIotinval || d1hi & IOTINVAL_RSVD1_HI
    ) {
      return CMD_ILLEGAL;
    }
    // ADDR[63:12] sits in bits 61:10 of dword1.
    const lo = (d1lo << 2 & 0xffff_f000) >>> 0;
    const hi = ((d1hi & 0x3fff_ffff) << 2 | d1lo >>> 30) >>> 0;
    const av = (d0lo & IOTINVAL_AV_LO) !== 0;
    const gv = (d0hi & IOTINVAL_GV_HI) !== 0;
    const pscv = (d0hi & IOTINVAL_PSCV_HI) !== 0;
    const gscid = (d0hi >>> 12) & 0xffff;
    const nl = (d0hi & IOTINVAL_NL_HI) !== 0;
    const s = (d1lo & IOTINVAL_S_LO) !== 0;
    if (func === RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA) {
      this.#inval.iotinvalVma(gv, av, pscv, gscid, d0lo >>> 12, lo, hi, nl, s);
      return CMD_OK;
    }
    if (func === RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA && !pscv) {
      this.#inval.iotinvalGvma(gv, av, gscid, lo, hi, nl, s);
      return CMD_OK;
    }
    return CMD_ILLEGAL;
  }

  #iofence(
    func: number,
    d0lo: number,
    d0hi: number,
    d1lo: number,
    d1hi: number,
    fctl: number,
  ): number {
    const wsi = (d0lo & IOFENCE_WSI_LO) !== 0;
    if (func !== RISCV_IOMMU_CMD_IOFENCE_FUNC_C) return CMD_ILLEGAL;
    if (d0lo & IOFENCE_RSVD0_LO || d1hi & IOFENCE_RSVD1_HI) return CMD_ILLEGAL;
    // WSI is a reserved bit unless interrupts are wire-signalled.
    if (wsi && !(fctl & RISCV_IOMMU_FCTL_WSI)) return CMD_ILLEGAL;
    if (this.#pending.size !== 0) return CMD_WAIT;
    if (this.atsTimedOut) {
      this.atsTimedOut = false;
      return CMD_TIMEOUT;
    }
    if (d0lo & IOFENCE_AV_LO) {
      // ADDR[63:2] sits in bits 61:0 of dword1.
      const hi = ((d1hi & 0x3fff_ffff) << 2 | d1lo >>> 30) >>> 0;
      if (this.#caps.pas < 64 && hi >= 2 ** (this.#caps.pas - 32)) return CMD_MEM_FAULT;
      this.#mem.write32(toNumber64(d1lo << 2, hi), d0hi, (fctl & RISCV_IOMMU_FCTL_BE) !== 0);
      if (this.#mem.fault !== MEM_OK) return CMD_MEM_FAULT;
    }
    return wsi ? CMD_FENCE_W_IP : CMD_OK;
  }

  #iodir(func: number, d0lo: number, d0hi: number, d1lo: number, d1hi: number): number {
    if (d0lo & IODIR_RSVD0_LO || d0hi & IODIR_RSVD0_HI || d1lo !== 0 || d1hi !== 0) {
      return CMD_ILLEGAL;
    }
    const dv = (d0hi & IODIR_DV_HI) !== 0;
    const did = d0hi >>> 8;
    const pid = d0lo >>> 12;
    if (func === RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT && pid === 0) {
      this.#inval.invalDdt(dv, did);
      return CMD_OK;
    }
    if (func === RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT && dv) {
      this.#inval.invalPdt(did, pid);
      return CMD_OK;
    }
    return CMD_ILLEGAL;
  }

  #ats(func: number, d0: bigint, d1: bigint): number {
    if (!this.#caps.ats || d0 & ATS_RSVD0) return CMD_ILLEGAL;
    if (func !== RISCV_IOMMU_CMD_ATS_FUNC_INVAL && func !== RISCV_IOMMU_CMD_ATS_FUNC_PRGR) {
      return CMD_ILLEGAL;
    }
    // The payload is the PCIe message's; its zero fields are the device's to check.
    const target: AtsTarget = {
      rid: Number((d0 & RISCV_IOMMU_CMD_ATS_RID) >> 40n),
      dsv: (d0 & RISCV_IOMMU_CMD_ATS_DSV) !== 0n,
      dseg: Number((d0 & RISCV_IOMMU_CMD_ATS_DSEG) >> 56n),
      pv: (d0 & RISCV_IOMMU_CMD_ATS_PV) !== 0n,
      pid: Number((d0 & RISCV_IOMMU_CMD_ATS_PID) >> 12n),
    };
    if (func === RISCV_IOMMU_CMD_ATS_FUNC_INVAL) {
      return this.#invalidate({
        ...target,
        global: (d1 & RISCV_IOMMU_CMD_ATS_INVAL_G) !== 0n,
        s: (d1 & RISCV_IOMMU_CMD_ATS_INVAL_S) !== 0n,
        addr: d1 & RISCV_IOMMU_CMD_ATS_INVAL_UADDR,
      });
    }
    this.ats?.pageResponse({
      ...target,
      prgIndex: Number((d1 & RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX) >> 32n),
      responseCode: Number((d1 & RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE) >> 44n),
      dstId: Number((d1 & RISCV_IOMMU_CMD_ATS_PRGR_DST_ID) >> 48n),
    });
    return CMD_OK;
  }

  /** Sends ATS.INVAL `inv` (again, when it was held for want of room); a `CMD_*` outcome. */
  #invalidate(inv: AtsInvalidation): number {
    const port = this.ats;
    if (port === null) return CMD_OK;
    let rec = this.#blocked;
    this.#blocked = null;
    if (rec === null) {
      const r: _Inval = { timer: 0, ended: false };
      if (this.clock !== null) {
        r.timer = this.clock.after(this.atsTimeoutNs, () => {
          r.timer = 0;
          this.#timedOut(r);
        });
      }
      rec = r;
    } else if (rec.ended) {
      // Timed out while the function had no room for it: done, and reported at the fence.
      return CMD_OK;
    }
    const r = rec;
    const sent = port.invalidate(inv, () => {
      if (r.ended) return;
      this.#end(r);
      this.#pending.delete(r);
      this.onAtsProgress?.();
    });
    if (r.ended) return CMD_OK;
    if (this.clock === null) {
      this.#timedOut(r);
      return CMD_OK;
    }
    if (sent === ATS_INVAL_BUSY) {
      this.#blocked = r;
      return CMD_WAIT;
    }
    this.#pending.add(r);
    return CMD_OK;
  }

  #timedOut(r: _Inval): void {
    if (r.ended) return;
    this.#end(r);
    this.#pending.delete(r);
    this.atsTimedOut = true;
    this.onAtsProgress?.();
  }

  #end(r: _Inval): void {
    r.ended = true;
    if (r.timer !== 0) this.clock?.cancel(r.timer);
    r.timer = 0;
  }
}
