/**
 * Command execution for the command queue (digest §6.1): decoding, the illegal-command checks
 * and the effect of every command. The fetch loop and `cqcsr` live in `iommu.ts`.
 *
 * @module
 */
import { MEM_OK, type PhysicalMemory } from "../memory.ts";
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
  RISCV_IOMMU_CMD_FUNC,
  RISCV_IOMMU_CMD_IODIR_DID,
  RISCV_IOMMU_CMD_IODIR_DV,
  RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT,
  RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT,
  RISCV_IOMMU_CMD_IODIR_OPCODE,
  RISCV_IOMMU_CMD_IODIR_PID,
  RISCV_IOMMU_CMD_IOFENCE_ADDR,
  RISCV_IOMMU_CMD_IOFENCE_AV,
  RISCV_IOMMU_CMD_IOFENCE_DATA,
  RISCV_IOMMU_CMD_IOFENCE_FUNC_C,
  RISCV_IOMMU_CMD_IOFENCE_OPCODE,
  RISCV_IOMMU_CMD_IOFENCE_WSI,
  RISCV_IOMMU_CMD_IOTINVAL_ADDR,
  RISCV_IOMMU_CMD_IOTINVAL_AV,
  RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA,
  RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA,
  RISCV_IOMMU_CMD_IOTINVAL_GSCID,
  RISCV_IOMMU_CMD_IOTINVAL_GV,
  RISCV_IOMMU_CMD_IOTINVAL_NL,
  RISCV_IOMMU_CMD_IOTINVAL_OPCODE,
  RISCV_IOMMU_CMD_IOTINVAL_PSCID,
  RISCV_IOMMU_CMD_IOTINVAL_PSCV,
  RISCV_IOMMU_CMD_IOTINVAL_S,
  RISCV_IOMMU_CMD_OPCODE,
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

/** Where ATS commands go: the root complex, which forwards them to the devices' ATCs. */
export interface AtsPort {
  /**
   * Sends an Invalidation Request and waits for its completion. Returns false when the device
   * did not complete it in time: the next IOFENCE.C then reports `cmd_to`.
   */
  invalidate(inv: AtsInvalidation): boolean;
  /** Sends a Page Request Group Response. */
  pageResponse(rsp: PageGroupResponse): void;
}

// Reserved bits per command (digest §6.1); NL/S are carved out when the caps have them.
const IOTINVAL_RSVD0 = 1n << 11n | 0x3ffn << 34n | 0xfn << 60n;
const IOTINVAL_RSVD1 = 0x3ffn | 3n << 62n;
const IOFENCE_RSVD0 = 0x3ffffn << 14n;
const IOFENCE_RSVD1 = 3n << 62n;
const IODIR_RSVD0 = 3n << 10n | 1n << 32n | 0x3fn << 34n;
const ATS_RSVD0 = 3n << 10n | 0x3fn << 34n;

/**
 * Executes one command at a time, synchronously: when `execute` returns, the command's effect
 * is complete (so IOFENCE.C PR/PW have nothing left to order).
 */
export class CommandUnit {
  /** Where ATS.INVAL and ATS.PRGR go; without one, ATS.INVAL completes at once. */
  ats: AtsPort | null = null;
  /** An ATS.INVAL timed out since the last IOFENCE.C reported one. */
  atsTimedOut = false;
  readonly #mem: PhysicalMemory;
  readonly #caps: IommuCaps;
  readonly #inval: Invalidator;
  readonly #rsvd0Iotinval: bigint;
  readonly #rsvd1Iotinval: bigint;

  /** A command unit storing through `mem` and invalidating `inval`'s caches. */
  constructor(mem: PhysicalMemory, caps: IommuCaps, inval: Invalidator) {
    this.#mem = mem;
    this.#caps = caps;
    this.#inval = inval;
    this.#rsvd0Iotinval = caps.nl ? IOTINVAL_RSVD0 & ~RISCV_IOMMU_CMD_IOTINVAL_NL : IOTINVAL_RSVD0;
    this.#rsvd1Iotinval = caps.s ? IOTINVAL_RSVD1 & ~RISCV_IOMMU_CMD_IOTINVAL_S : IOTINVAL_RSVD1;
  }

  /** Executes the command `d0`/`d1` under feature control `fctl`; returns a `CMD_*` outcome. */
  execute(d0: bigint, d1: bigint, fctl: number): number {
    const func = Number((d0 & RISCV_IOMMU_CMD_FUNC) >> 7n);
    switch (Number(d0 & RISCV_IOMMU_CMD_OPCODE)) {
      case RISCV_IOMMU_CMD_IOTINVAL_OPCODE:
        return this.#iotinval(func, d0, d1);
      case RISCV_IOMMU_CMD_IOFENCE_OPCODE:
        return this.#iofence(func, d0, d1, fctl);
      case RISCV_IOMMU_CMD_IODIR_OPCODE:
        return this.#iodir(func, d0, d1);
      case RISCV_IOMMU_CMD_ATS_OPCODE:
        return this.#ats(func, d0, d1);
    }
    return CMD_ILLEGAL;
  }

  #iotinval(func: number, d0: bigint, d1: bigint): number {
    if (d0 & this.#rsvd0Iotinval || d1 & this.#rsvd1Iotinval) return CMD_ILLEGAL;
    const addr = (d1 & RISCV_IOMMU_CMD_IOTINVAL_ADDR) << 2n;
    const lo = Number(addr & 0xffff_ffffn), hi = Number(addr >> 32n & 0xffff_ffffn);
    const av = (d0 & RISCV_IOMMU_CMD_IOTINVAL_AV) !== 0n;
    const gv = (d0 & RISCV_IOMMU_CMD_IOTINVAL_GV) !== 0n;
    const pscv = (d0 & RISCV_IOMMU_CMD_IOTINVAL_PSCV) !== 0n;
    const gscid = Number((d0 & RISCV_IOMMU_CMD_IOTINVAL_GSCID) >> 44n);
    const nl = (d0 & RISCV_IOMMU_CMD_IOTINVAL_NL) !== 0n;
    const s = (d1 & RISCV_IOMMU_CMD_IOTINVAL_S) !== 0n;
    if (func === RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA) {
      const pscid = Number((d0 & RISCV_IOMMU_CMD_IOTINVAL_PSCID) >> 12n);
      this.#inval.iotinvalVma(gv, av, pscv, gscid, pscid, lo, hi, nl, s);
      return CMD_OK;
    }
    if (func === RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA && !pscv) {
      this.#inval.iotinvalGvma(gv, av, gscid, lo, hi, nl, s);
      return CMD_OK;
    }
    return CMD_ILLEGAL;
  }

  #iofence(func: number, d0: bigint, d1: bigint, fctl: number): number {
    const wsi = (d0 & RISCV_IOMMU_CMD_IOFENCE_WSI) !== 0n;
    if (func !== RISCV_IOMMU_CMD_IOFENCE_FUNC_C) return CMD_ILLEGAL;
    if (d0 & IOFENCE_RSVD0 || d1 & IOFENCE_RSVD1) return CMD_ILLEGAL;
    // WSI is a reserved bit unless interrupts are wire-signalled.
    if (wsi && !(fctl & RISCV_IOMMU_FCTL_WSI)) return CMD_ILLEGAL;
    if (this.atsTimedOut) {
      this.atsTimedOut = false;
      return CMD_TIMEOUT;
    }
    if (d0 & RISCV_IOMMU_CMD_IOFENCE_AV) {
      const addr = Number((d1 & RISCV_IOMMU_CMD_IOFENCE_ADDR) << 2n);
      if (addr >= 2 ** this.#caps.pas) return CMD_MEM_FAULT;
      const data = Number((d0 & RISCV_IOMMU_CMD_IOFENCE_DATA) >> 32n);
      this.#mem.write32(addr, data, (fctl & RISCV_IOMMU_FCTL_BE) !== 0);
      if (this.#mem.fault !== MEM_OK) return CMD_MEM_FAULT;
    }
    return wsi ? CMD_FENCE_W_IP : CMD_OK;
  }

  #iodir(func: number, d0: bigint, d1: bigint): number {
    if (d0 & IODIR_RSVD0 || d1 !== 0n) return CMD_ILLEGAL;
    const dv = (d0 & RISCV_IOMMU_CMD_IODIR_DV) !== 0n;
    const did = Number((d0 & RISCV_IOMMU_CMD_IODIR_DID) >> 40n);
    const pid = Number((d0 & RISCV_IOMMU_CMD_IODIR_PID) >> 12n);
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
      const inv: AtsInvalidation = {
        ...target,
        global: (d1 & RISCV_IOMMU_CMD_ATS_INVAL_G) !== 0n,
        s: (d1 & RISCV_IOMMU_CMD_ATS_INVAL_S) !== 0n,
        addr: d1 & RISCV_IOMMU_CMD_ATS_INVAL_UADDR,
      };
      if (this.ats !== null && !this.ats.invalidate(inv)) this.atsTimedOut = true;
    } else {
      this.ats?.pageResponse({
        ...target,
        prgIndex: Number((d1 & RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX) >> 32n),
        responseCode: Number((d1 & RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE) >> 44n),
        dstId: Number((d1 & RISCV_IOMMU_CMD_ATS_PRGR_DST_ID) >> 48n),
      });
    }
    return CMD_OK;
  }
}
