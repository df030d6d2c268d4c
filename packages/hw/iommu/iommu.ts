/**
 * The RISC-V IOMMU as a device: its 4 KiB register page, the command, fault and page-request
 * queues, interrupt generation and the debug translation interface, around the
 * {@linkcode Translator} that answers inbound transactions.
 *
 * Everything is synchronous but ATS.INVAL: commands run when `cqt` is written (and when `cqcsr`
 * re-enables the queue or clears an error), fault and page-request records are written as faults
 * and messages come, interrupts are raised at once. An ATS.INVAL completes when the device's
 * Invalidation Completion arrives or times out on the `clock`; the queue then runs on. The
 * register file never throws: every write lands on its WARL/RW1C/RO outcome.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { MEM_OK, type MmioHandler, type PhysicalMemory } from "../memory.ts";
import { hi32, join64, lo32 } from "../_u64.ts";
import { encodeCaps, IGS_BOTH, IGS_WSI, type IommuCaps, resolveCaps } from "./caps.ts";
import {
  type AtsPort,
  CMD_FENCE_W_IP,
  CMD_ILLEGAL,
  CMD_MEM_FAULT,
  CMD_OK,
  CMD_TIMEOUT,
  CMD_WAIT,
  CommandUnit,
} from "./command_queue.ts";
import { type HpmOptions, HpmUnit, inHpmBlock } from "./hpm.ts";
import {
  type PageRequestPort,
  PageRequestUnit,
  PCIE_MSG_CODE_PAGE_REQUEST,
} from "./page_request.ts";
import {
  encodeFaultRecord,
  encodePageRequest,
  HwQueue,
  type PageRequest,
  QUEUE_RECORD_OFF,
  QUEUE_RECORD_WRITTEN,
} from "./queues.ts";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_WRITE,
  type InboundRequest,
  newRequest,
  newResult,
  setIova,
  type TranslationPort,
  type TranslationResult,
  type XLATE_FAULT,
  XLATE_OK,
} from "./request.ts";
import {
  RISCV_IOMMU_CQ_ENTRY_SIZE,
  RISCV_IOMMU_CQCSR_CMD_ILL,
  RISCV_IOMMU_CQCSR_CMD_TO,
  RISCV_IOMMU_CQCSR_CQEN,
  RISCV_IOMMU_CQCSR_CQMF,
  RISCV_IOMMU_CQCSR_FENCE_W_IP,
  RISCV_IOMMU_FCTL_BE,
  RISCV_IOMMU_FCTL_GXL,
  RISCV_IOMMU_FCTL_WSI,
  RISCV_IOMMU_FQ_ENTRY_SIZE,
  RISCV_IOMMU_INTR_COUNT,
  RISCV_IOMMU_IOMMU_QOSID_MCID,
  RISCV_IOMMU_IOMMU_QOSID_RCID,
  RISCV_IOMMU_IPSR_CIP,
  RISCV_IOMMU_IPSR_FIP,
  RISCV_IOMMU_IPSR_PIP,
  RISCV_IOMMU_IPSR_PMIP,
  RISCV_IOMMU_MSI_CFG_TBL_ADDR,
  RISCV_IOMMU_MSI_CFG_TBL_CTRL_M,
  RISCV_IOMMU_MSI_CFG_TBL_ENTRIES,
  RISCV_IOMMU_PQ_ENTRY_SIZE,
  RISCV_IOMMU_QUEUE_INTR_ENABLE,
  RISCV_IOMMU_QUEUE_MEM_FAULT,
  RISCV_IOMMU_QUEUE_OVERFLOW,
  RISCV_IOMMU_REG_CAPABILITIES,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
  RISCV_IOMMU_REG_CQT,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FCTL,
  RISCV_IOMMU_REG_FQB,
  RISCV_IOMMU_REG_FQCSR,
  RISCV_IOMMU_REG_FQH,
  RISCV_IOMMU_REG_FQT,
  RISCV_IOMMU_REG_ICVEC,
  RISCV_IOMMU_REG_IOMMU_QOSID,
  RISCV_IOMMU_REG_IPSR,
  RISCV_IOMMU_REG_MSI_CFG_TBL,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
  RISCV_IOMMU_REG_PQH,
  RISCV_IOMMU_REG_PQT,
  RISCV_IOMMU_REG_SIZE,
  RISCV_IOMMU_REG_TR_REQ_CTL,
  RISCV_IOMMU_REG_TR_REQ_IOVA,
  RISCV_IOMMU_REG_TR_RESPONSE,
  RISCV_IOMMU_TR_REQ_CTL_DID,
  RISCV_IOMMU_TR_REQ_CTL_EXE,
  RISCV_IOMMU_TR_REQ_CTL_GO_BUSY,
  RISCV_IOMMU_TR_REQ_CTL_NW,
  RISCV_IOMMU_TR_REQ_CTL_PID,
  RISCV_IOMMU_TR_REQ_CTL_PRIV,
  RISCV_IOMMU_TR_REQ_CTL_PV,
  RISCV_IOMMU_TR_REQ_IOVA_VPN,
  RISCV_IOMMU_TR_RESPONSE_FAULT,
  RISCV_IOMMU_TR_RESPONSE_PPN,
  RISCV_IOMMU_TR_RESPONSE_SZ,
} from "./regs.ts";
import {
  reportedDespiteDtf,
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_BARE,
  RISCV_IOMMU_DDTP_IOMMU_MODE_OFF,
  RISCV_IOMMU_FQ_CAUSE_MSI_WR_FAULT,
  RISCV_IOMMU_FQ_TTYP_NONE,
  RISCV_IOMMU_FQ_TTYP_PCIE_MSG_REQ,
} from "./structs.ts";
import type { CacheOptions } from "./cache.ts";
import { Translator } from "./translator.ts";

/**
 * Told of each command the command queue consumes (`cqh` moves past it), wherever that happens:
 * in the register write that made it runnable, or later, when an ATS Invalidation Completion or
 * timeout lets a waiting IOFENCE.C run. `index` is the command's slot; the doublewords come as
 * their unsigned 32-bit halves (bits 31:0, 63:32), as the queue fetched them.
 */
export type CommandObserver = (
  index: number,
  d0lo: number,
  d0hi: number,
  d1lo: number,
  d1hi: number,
) => void;

/** Where wire-signalled interrupts go: line `n` is interrupt vector `n` (0..15). */
export interface IrqSink {
  /** Drives wire `line` to `level`; called only when the level changes. */
  setWire(line: number, level: boolean): void;
}

/** How an {@linkcode Iommu} is built: its capabilities and the hardware variant. */
export interface IommuOptions {
  /** The system bus: DDT/PDT/page tables, queues, MSIs. */
  mem: PhysicalMemory;
  /** Capabilities; unset fields come from `DEFAULT_CAPS`. */
  caps?: Partial<IommuCaps>;
  /** Wire-signalled interrupt lines (WSI); MSIs are stores to `mem` and need no sink. */
  irq?: IrqSink;
  /** Where ATS.INVAL/ATS.PRGR go (also settable later through {@linkcode Iommu.atsPort}). */
  ats?: AtsPort;
  /**
   * The machine's clock: `iohpmcycles` counts it and it times ATS.INVAL completions out. Without
   * one `iohpmcycles` holds what was written and an ATS.INVAL the port does not complete at once
   * counts as timed out.
   */
  clock?: Clock;
  /** How long an ATS.INVAL waits for its Invalidation Completion, in ns. Default 60 s (PCIe). */
  atsInvalTimeoutNs?: number;
  /** The HPM's hardware variant (with capabilities.HPM): counters, widths, events, filter. */
  hpm?: HpmOptions;
  /** `ddtp.iommu_mode` after reset. Default "off" (the spec's recommendation). */
  resetMode?: "off" | "bare";
  /**
   * Geometry of the translation caches (IOTLB, DDT and PDT caches: sets, ways, replacement
   * policy); unset fields come from `DEFAULT_CACHE_GEOMETRY`.
   */
  cache?: CacheOptions;
  /** Device-directory depths `ddtp` accepts (WARL); default all of 1, 2, 3. */
  ddtLevels?: readonly (1 | 2 | 3)[];
  /** Largest LOG2SZ (entries = 2^n, 1..32) each queue base accepts; default 32 for all. */
  maxLog2Sz?: { cq?: number; fq?: number; pq?: number };
  /** Hard-wired PPNs: `ddtp.PPN` or a queue base's PPN always reads back this value. */
  fixedPpn?: { ddt?: number; cq?: number; fq?: number; pq?: number };
  /**
   * Interrupt vectors per `icvec` field (1, 2, 4, 8 or 16: the field's writable bits). Default 16.
   */
  icvecVectors?: number;
  /** `ddtp.busy` reads 1 for this many reads after each `ddtp` write. Default 0. */
  ddtpBusyPolls?: number;
  /** `cqcsr`/`fqcsr`/`pqcsr` read busy for this many reads after an enable change. Default 0. */
  csrBusyPolls?: number;
  /** `tr_req_ctl.Go/Busy` reads 1 for this many reads after a request. Default 0. */
  trBusyPolls?: number;
  /** Start with the command queue stalled (see {@linkcode Iommu.stallCommandQueue}). */
  stallCommandQueue?: boolean;
}

// Nested MMIO writes deeper than this (an IOMMU MSI aimed at its own registers, re-raising
// forever) are dropped so the model always terminates.
const MAX_MMIO_NESTING = 8;
const CQ_STOP = RISCV_IOMMU_CQCSR_CQMF | RISCV_IOMMU_CQCSR_CMD_TO | RISCV_IOMMU_CQCSR_CMD_ILL;
const CQ_ERRORS = CQ_STOP | RISCV_IOMMU_CQCSR_FENCE_W_IP;
const QUEUE_ERRORS = RISCV_IOMMU_QUEUE_MEM_FAULT | RISCV_IOMMU_QUEUE_OVERFLOW;
const TR_CTL_RW = RISCV_IOMMU_TR_REQ_CTL_PRIV | RISCV_IOMMU_TR_REQ_CTL_EXE |
  RISCV_IOMMU_TR_REQ_CTL_NW | RISCV_IOMMU_TR_REQ_CTL_PID | RISCV_IOMMU_TR_REQ_CTL_PV |
  RISCV_IOMMU_TR_REQ_CTL_DID;
const MSI_CFG_TBL_END = RISCV_IOMMU_REG_MSI_CFG_TBL + RISCV_IOMMU_MSI_CFG_TBL_ENTRIES * 16;

/**
 * A RISC-V IOMMU: an MMIO device on the bus and the translation port of the devices behind it.
 *
 * WARL choices where the spec leaves room:
 * - `fctl.BE` is writable only with `caps.end` (else 0: little-endian only). `fctl.WSI` is
 *   writable only with IGS=BOTH, else fixed to the one supported method. `fctl.GXL` is writable
 *   when Sv32x4 and a wider Sv*x4 are both supported, reads 1 when Sv32x4 is the only G-stage
 *   scheme and 0 otherwise. `fctl` writes are accepted whatever the IOMMU's state.
 * - `ddtp`: a write of a reserved or unsupported mode, or of one xLVL mode while another xLVL mode
 *   is current, is dropped whole (the old value stays). PPN is WARL to the PAS.
 * - Queue bases: LOG2SZ-1 is clamped to the supported maximum; writes while the queue is enabled
 *   or on are dropped. The debug interface legalises Exe=1 with NW=0 to Exe=0 (a read-write
 *   request), since the spec requires NW=1 for Exe.
 * - `msi_vec_ctl.M` resets to 1 (masked), as a PCIe MSI-X table does.
 *
 * @example Probing the command queue's size, then running an IOFENCE.C
 * ```ts
 * import assert from "node:assert/strict";
 * import { Iommu, PhysicalMemory } from "@iommu-lab/hw";
 * import { RISCV_IOMMU_REG_CQB } from "@iommu-lab/hw/regs";
 *
 * const mem = new PhysicalMemory();
 * mem.addRam(0x8000_0000, 2 ** 30);
 * const iommu = new Iommu({ mem, maxLog2Sz: { cq: 10 } });
 * iommu.write64(RISCV_IOMMU_REG_CQB, 0x1fn);
 * assert.equal(iommu.read64(RISCV_IOMMU_REG_CQB), 9n); // 2^(9+1) entries at most
 *
 * // A 2-entry CQ at 0x8000_0000; IOFENCE.C with AV stores 0x1234 to 0x8000_1000.
 * iommu.write64(RISCV_IOMMU_REG_CQB, 0x8000_0n << 10n);
 * mem.write64(0x8000_0000, 0x1234n << 32n | 1n << 10n | 2n);
 * mem.write64(0x8000_0008, 0x8000_1000n >> 2n);
 * iommu.write32(0x48, 1); // cqcsr.cqen
 * iommu.write32(0x24, 1); // cqt
 * assert.equal(iommu.read32(0x20), 1); // cqh moved past the fence
 * assert.equal(mem.read32(0x8000_1000), 0x1234);
 * ```
 */
export class Iommu implements MmioHandler, TranslationPort, PageRequestPort {
  /** The capabilities this IOMMU was built with. */
  readonly caps: Readonly<IommuCaps>;
  /** The translation core (caches included). */
  readonly translator: Translator;
  /** Wire-signalled interrupt lines. */
  irq: IrqSink | null;
  /**
   * The performance monitor (with capabilities.HPM): its registers are this page's at
   * `iocountovf`, and it observes the translator's events while some counter counts.
   */
  readonly hpm: HpmUnit | null;
  /** Told of each command the command queue consumes (see {@linkcode CommandObserver}). */
  commandObserver: CommandObserver | null = null;

  readonly #mem: PhysicalMemory;
  readonly #resetBare: boolean;
  readonly #ddtLevels: readonly number[];
  readonly #fixedDdtPpn: number | undefined;
  readonly #ddtpBusyPolls: number;
  readonly #trBusyPolls: number;
  readonly #capsLo: number;
  readonly #capsHi: number;
  readonly #ddtPpnMask: bigint;
  readonly #vecMask: number;
  readonly #gxlWritable: boolean;
  readonly #cq: HwQueue;
  readonly #fq: HwQueue;
  readonly #pq: HwQueue;
  readonly #cmd: CommandUnit;
  readonly #pri: PageRequestUnit;
  readonly #rec = new Uint32Array(8);
  readonly #trReq: InboundRequest = newRequest({ debug: true });
  readonly #trRes: TranslationResult = newResult();

  #fctl = 0;
  #ddtpMode = 0;
  #ddtpPpn = 0;
  #ddtpBusyReads = 0;
  #ipsr = 0;
  #wires = 0;
  #trIova = 0n;
  #trCtl = 0n;
  #trResponse = 0n;
  #trBusyReads = 0;
  #qosid = 0;
  #icvec = 0;
  readonly #msiAddr = new BigUint64Array(RISCV_IOMMU_MSI_CFG_TBL_ENTRIES);
  readonly #msiData = new Uint32Array(RISCV_IOMMU_MSI_CFG_TBL_ENTRIES);
  readonly #msiCtl = new Uint32Array(RISCV_IOMMU_MSI_CFG_TBL_ENTRIES);
  #msiPending = 0;
  #stall: boolean;
  #cqRunning = false;
  #depth = 0;
  #selfStore = false;

  /** Builds an IOMMU in its reset state. Throws `RangeError` on impossible options. */
  constructor(opts: IommuOptions) {
    const caps = resolveCaps(opts.caps);
    this.caps = Object.freeze(caps);
    this.#resetBare = opts.resetMode === "bare";
    this.#ddtLevels = [...(opts.ddtLevels ?? [1, 2, 3])];
    this.#fixedDdtPpn = opts.fixedPpn?.ddt;
    this.#ddtpBusyPolls = opts.ddtpBusyPolls ?? 0;
    this.#trBusyPolls = opts.trBusyPolls ?? 0;
    this.#mem = opts.mem;
    this.irq = opts.irq ?? null;
    this.#stall = opts.stallCommandQueue ?? false;
    const capsReg = encodeCaps(caps);
    this.#capsLo = lo32(capsReg);
    this.#capsHi = hi32(capsReg);
    this.#ddtPpnMask = (1n << BigInt(Math.max(0, Math.min(caps.pas, 56) - 12))) - 1n;
    const vectors = opts.icvecVectors ?? 16;
    if (![1, 2, 4, 8, 16].includes(vectors)) {
      throw new RangeError(`Cannot build the IOMMU: icvecVectors ${vectors} is not 1/2/4/8/16`);
    }
    this.#vecMask = vectors - 1;
    this.#gxlWritable = caps.sv32x4 && (caps.sv39x4 || caps.sv48x4 || caps.sv57x4);
    const queue = (
      entrySize: number,
      swOwnsTail: boolean,
      errorBits: number,
      max?: number,
      ppn?: number,
    ) => {
      const maxLog2Sz = max ?? 32;
      if (!Number.isInteger(maxLog2Sz) || maxLog2Sz < 1 || maxLog2Sz > 32) {
        throw new RangeError(`Cannot build the IOMMU: maxLog2Sz ${maxLog2Sz} is not in 1..32`);
      }
      return new HwQueue({
        entrySize,
        swOwnsTail,
        errorBits,
        maxLog2Sz,
        pas: caps.pas,
        fixedPpn: ppn,
        busyPolls: opts.csrBusyPolls ?? 0,
      });
    };
    const max = opts.maxLog2Sz ?? {}, fixed = opts.fixedPpn ?? {};
    this.#cq = queue(RISCV_IOMMU_CQ_ENTRY_SIZE, true, CQ_ERRORS, max.cq, fixed.cq);
    this.#fq = queue(RISCV_IOMMU_FQ_ENTRY_SIZE, false, QUEUE_ERRORS, max.fq, fixed.fq);
    this.#pq = queue(RISCV_IOMMU_PQ_ENTRY_SIZE, false, QUEUE_ERRORS, max.pq, fixed.pq);
    this.translator = new Translator(opts.mem, caps, opts.cache);
    const translator = this.translator;
    const hpm: HpmUnit | null = caps.hpm
      ? new HpmUnit(opts.hpm ?? {}, {
        clock: opts.clock,
        overflow: () => this.#raise(RISCV_IOMMU_IPSR_PMIP),
        armed: (on) =>
          on ? translator.addEventObserver(hpm!) : translator.removeEventObserver(hpm!),
      })
      : null;
    this.hpm = hpm;
    this.#cmd = new CommandUnit(opts.mem, caps, this.translator);
    const cmd = this.#cmd;
    cmd.ats = opts.ats ?? null;
    cmd.clock = opts.clock ?? null;
    if (opts.atsInvalTimeoutNs !== undefined) cmd.atsTimeoutNs = opts.atsInvalTimeoutNs;
    cmd.onAtsProgress = () => this.#processCq();
    this.#pri = new PageRequestUnit(this.translator, {
      queue: (pr) => this.enqueuePageRequest(pr),
      fault: (pr, cause, dtf) => {
        if (dtf && !reportedDespiteDtf(cause)) return;
        const pv = pr.pidValid;
        this.#fault(
          cause,
          RISCV_IOMMU_FQ_TTYP_PCIE_MSG_REQ,
          pr.deviceId,
          pv,
          pr.pid,
          pv && pr.priv,
          BigInt(PCIE_MSG_CODE_PAGE_REQUEST),
          0n,
        );
      },
      get ats() {
        return cmd.ats;
      },
    });
    this.reset();
  }

  /**
   * Where ATS.INVAL and ATS.PRGR (and the IOMMU's own PRG responses) are delivered; null completes
   * ATS.INVAL at once.
   */
  get atsPort(): AtsPort | null {
    return this.#cmd.ats;
  }

  set atsPort(port: AtsPort | null) {
    this.#cmd.ats = port;
  }

  /**
   * When true the command queue fetches nothing (`cqh` stays put) although it is on: a
   * hardware hang, for driver timeout tests. Clearing it resumes processing.
   */
  get stallCommandQueue(): boolean {
    return this.#stall;
  }

  set stallCommandQueue(on: boolean) {
    this.#stall = on;
    this.#processCq();
  }

  /** Puts every register in its reset state (spec §5.2 "Reset behavior") and empties the caches. */
  reset(): void {
    const caps = this.caps;
    this.#fctl = (caps.igs === IGS_WSI ? RISCV_IOMMU_FCTL_WSI : 0) |
      (caps.sv32x4 && !this.#gxlWritable ? RISCV_IOMMU_FCTL_GXL : 0);
    this.#ddtpMode = this.#resetBare
      ? RISCV_IOMMU_DDTP_IOMMU_MODE_BARE
      : RISCV_IOMMU_DDTP_IOMMU_MODE_OFF;
    this.#ddtpPpn = this.#fixedDdtPpn ?? 0;
    this.#ddtpBusyReads = 0;
    this.#cq.reset();
    this.#fq.reset();
    this.#pq.reset();
    this.#cmd.resetAts();
    this.#ipsr = 0;
    this.hpm?.reset();
    this.#trIova = 0n;
    this.#trCtl = 0n;
    this.#trResponse = 0n;
    this.#trBusyReads = 0;
    this.#qosid = 0;
    this.#icvec = 0;
    this.#msiAddr.fill(0n);
    this.#msiData.fill(0);
    this.#msiCtl.fill(RISCV_IOMMU_MSI_CFG_TBL_CTRL_M);
    this.#msiPending = 0;
    this.#syncTranslator();
    this.translator.flushAll();
    this.#updateWires();
  }

  // -- TranslationPort --

  /**
   * Translates an inbound transaction; when the translator asks for a fault record, writes it
   * to the fault queue, and clears `res.reported` if the record was dropped (queue off, full,
   * `fqof`/`fqmf` set, or the store faulted).
   */
  translate(req: InboundRequest, res: TranslationResult): void {
    this.translator.translate(req, res);
    // XLATE_FAULT as a literal: a module constant would cost a load and a check per request.
    if (res.status === (1 satisfies typeof XLATE_FAULT) && res.reported) this.#record(req, res);
  }

  /** Writes the fault record of `res`; clears `res.reported` if it was dropped. */
  #record(req: InboundRequest, res: TranslationResult): void {
    // Out of translate(), which then stays small enough to be inlined into its callers.
    res.reported = this.#fault(
      res.cause,
      res.ttyp,
      req.deviceId,
      req.pidValid,
      req.pid,
      req.priv,
      res.iotval,
      res.iotval2,
    );
  }

  /**
   * A PCIe Page Request or Stop Marker message from the root complex (spec §2.7 "PCIe ATS Page
   * Request handling"): queued, discarded, or answered by the IOMMU through {@linkcode atsPort}
   * (see `PageRequestUnit`). Returns a `PRQ_*` outcome.
   */
  pageRequest(pr: PageRequest): number {
    return this.#pri.receive(pr);
  }

  /**
   * Writes a page-request record to the page-request queue (the PRI path calls this). Returns
   * a `QUEUE_RECORD_*` outcome; a dropped record sets no fault record, as the spec says.
   */
  enqueuePageRequest(pr: PageRequest): number {
    if (!this.caps.ats) return QUEUE_RECORD_OFF;
    encodePageRequest(this.#rec.subarray(0, 4), pr);
    const r = this.#push(this.#pq, this.#rec.subarray(0, 4));
    if (r === QUEUE_RECORD_WRITTEN) this.#raiseIf(this.#pq, RISCV_IOMMU_IPSR_PIP);
    else this.#updateIp();
    return r;
  }

  // -- MmioHandler --

  /** Reads 4 bytes at `offset`; misaligned, absent or reserved registers read 0. */
  read32(offset: number): number {
    if (!_inPage(offset, 4)) return 0;
    if (inHpmBlock(offset)) return this.hpm?.read32(offset) ?? 0;
    const base = offset & ~7;
    if (this.#is64(base)) {
      const v = this.#read64Reg(base, (offset & 4) === 0);
      return offset & 4 ? hi32(v) : lo32(v);
    }
    return this.#read32Reg(offset);
  }

  /** Reads 8 bytes at `offset`: a 64-bit register, or a pair of 32-bit ones (low first). */
  read64(offset: number): bigint {
    if (!_inPage(offset, 8)) return 0n;
    if (inHpmBlock(offset)) return this.hpm?.read64(offset) ?? 0n;
    if (this.#is64(offset)) return this.#read64Reg(offset, true);
    const lo = this.#read32Reg(offset);
    return join64(lo, this.#read32Reg(offset + 4));
  }

  /** Writes 4 bytes at `offset`; a half of a 64-bit register merges with the other half. */
  write32(offset: number, value: number): void {
    if (!_inPage(offset, 4) || this.#depth >= MAX_MMIO_NESTING || this.#selfStore) return;
    this.#depth++;
    try {
      if (inHpmBlock(offset)) return this.hpm?.write32(offset, value);
      const base = offset & ~7;
      if (this.#is64(base)) {
        const cur = this.#read64Reg(base, false);
        const v = BigInt(value >>> 0);
        this.#write64Reg(
          base,
          offset & 4 ? cur & 0xffff_ffffn | v << 32n : cur & ~0xffff_ffffn | v,
        );
      } else {
        this.#write32Reg(offset, value >>> 0);
      }
    } finally {
      this.#depth--;
    }
  }

  /** Writes 8 bytes at `offset`: a 64-bit register, or a pair of 32-bit ones (low first). */
  write64(offset: number, value: bigint): void {
    if (!_inPage(offset, 8) || this.#depth >= MAX_MMIO_NESTING || this.#selfStore) return;
    this.#depth++;
    try {
      const v = BigInt.asUintN(64, value);
      if (inHpmBlock(offset)) return this.hpm?.write64(offset, v);
      if (this.#is64(offset)) {
        this.#write64Reg(offset, v);
      } else {
        this.#write32Reg(offset, lo32(v));
        this.#write32Reg(offset + 4, hi32(v));
      }
    } finally {
      this.#depth--;
    }
  }

  // -- Register file --

  #is64(off: number): boolean {
    switch (off) {
      case RISCV_IOMMU_REG_CAPABILITIES:
      case RISCV_IOMMU_REG_DDTP:
      case RISCV_IOMMU_REG_CQB:
      case RISCV_IOMMU_REG_FQB:
      case RISCV_IOMMU_REG_PQB:
      case RISCV_IOMMU_REG_TR_REQ_IOVA:
      case RISCV_IOMMU_REG_TR_REQ_CTL:
      case RISCV_IOMMU_REG_TR_RESPONSE:
      case RISCV_IOMMU_REG_ICVEC:
        return true;
    }
    return off >= RISCV_IOMMU_REG_MSI_CFG_TBL && off < MSI_CFG_TBL_END && (off & 8) === 0;
  }

  /** A 64-bit register; `consume` counts the read against a busy window. */
  #read64Reg(off: number, consume: boolean): bigint {
    const caps = this.caps;
    switch (off) {
      case RISCV_IOMMU_REG_CAPABILITIES:
        return join64(this.#capsLo, this.#capsHi);
      case RISCV_IOMMU_REG_DDTP: {
        let busy = 0n;
        if (consume && this.#ddtpBusyReads > 0) {
          this.#ddtpBusyReads--;
          busy = 1n << 4n;
        }
        return BigInt(this.#ddtpPpn) << 10n | BigInt(this.#ddtpMode) | busy;
      }
      case RISCV_IOMMU_REG_CQB:
        return this.#cq.readBase();
      case RISCV_IOMMU_REG_FQB:
        return this.#fq.readBase();
      case RISCV_IOMMU_REG_PQB:
        return caps.ats ? this.#pq.readBase() : 0n;
      case RISCV_IOMMU_REG_TR_REQ_IOVA:
        return caps.dbg ? this.#trIova : 0n;
      case RISCV_IOMMU_REG_TR_REQ_CTL: {
        if (!caps.dbg) return 0n;
        let busy = 0n;
        if (consume && this.#trBusyReads > 0) {
          this.#trBusyReads--;
          busy = RISCV_IOMMU_TR_REQ_CTL_GO_BUSY;
        }
        return this.#trCtl | busy;
      }
      case RISCV_IOMMU_REG_TR_RESPONSE:
        return caps.dbg ? this.#trResponse : 0n;
      case RISCV_IOMMU_REG_ICVEC:
        return BigInt(this.#icvec);
    }
    // Only msi_cfg_tbl addresses are left.
    return caps.igs === IGS_WSI ? 0n : this.#msiAddr[(off - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4];
  }

  #read32Reg(off: number): number {
    const caps = this.caps;
    switch (off) {
      case RISCV_IOMMU_REG_FCTL:
        return this.#fctl;
      case RISCV_IOMMU_REG_CQH:
        return this.#cq.head;
      case RISCV_IOMMU_REG_CQT:
        return this.#cq.tail;
      case RISCV_IOMMU_REG_FQH:
        return this.#fq.head;
      case RISCV_IOMMU_REG_FQT:
        return this.#fq.tail;
      case RISCV_IOMMU_REG_PQH:
        return caps.ats ? this.#pq.head : 0;
      case RISCV_IOMMU_REG_PQT:
        return caps.ats ? this.#pq.tail : 0;
      case RISCV_IOMMU_REG_CQCSR:
        return this.#cq.readCsr();
      case RISCV_IOMMU_REG_FQCSR:
        return this.#fq.readCsr();
      case RISCV_IOMMU_REG_PQCSR:
        return caps.ats ? this.#pq.readCsr() : 0;
      case RISCV_IOMMU_REG_IPSR:
        return this.#ipsr;
      case RISCV_IOMMU_REG_IOMMU_QOSID:
        return caps.qosid ? this.#qosid : 0;
    }
    if (off >= RISCV_IOMMU_REG_MSI_CFG_TBL && off < MSI_CFG_TBL_END && caps.igs !== IGS_WSI) {
      const n = (off - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4;
      return off & 4 ? this.#msiCtl[n] : this.#msiData[n];
    }
    return 0;
  }

  #write64Reg(off: number, v: bigint): void {
    const caps = this.caps;
    switch (off) {
      case RISCV_IOMMU_REG_DDTP:
        return this.#writeDdtp(v);
      case RISCV_IOMMU_REG_CQB:
        return this.#cq.writeBase(v);
      case RISCV_IOMMU_REG_FQB:
        return this.#fq.writeBase(v);
      case RISCV_IOMMU_REG_PQB:
        if (caps.ats) this.#pq.writeBase(v);
        return;
      case RISCV_IOMMU_REG_TR_REQ_IOVA:
        if (caps.dbg) this.#trIova = v & RISCV_IOMMU_TR_REQ_IOVA_VPN;
        return;
      case RISCV_IOMMU_REG_TR_REQ_CTL:
        if (caps.dbg) this.#writeTrReqCtl(v);
        return;
      case RISCV_IOMMU_REG_ICVEC:
        return this.#writeIcvec(lo32(v));
      case RISCV_IOMMU_REG_CAPABILITIES:
      case RISCV_IOMMU_REG_TR_RESPONSE:
        return;
    }
    // Only msi_cfg_tbl addresses are left.
    if (caps.igs !== IGS_WSI) {
      this.#msiAddr[(off - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4] = v & RISCV_IOMMU_MSI_CFG_TBL_ADDR;
    }
  }

  #write32Reg(off: number, v: number): void {
    const caps = this.caps;
    switch (off) {
      case RISCV_IOMMU_REG_FCTL:
        return this.#writeFctl(v);
      case RISCV_IOMMU_REG_CQT:
        this.#cq.writeSwIndex(v);
        return this.#processCq();
      case RISCV_IOMMU_REG_FQH:
        return this.#fq.writeSwIndex(v);
      case RISCV_IOMMU_REG_PQH:
        if (caps.ats) this.#pq.writeSwIndex(v);
        return;
      case RISCV_IOMMU_REG_CQCSR:
        // A queue enabled afresh has no ATS.INVAL of an earlier life to wait for or report.
        if (!(this.#cq.csr & RISCV_IOMMU_CQCSR_CQEN) && v & RISCV_IOMMU_CQCSR_CQEN) {
          this.#cmd.resetAts();
        }
        this.#cq.writeCsr(v);
        this.#updateIp();
        return this.#processCq();
      case RISCV_IOMMU_REG_FQCSR:
        this.#fq.writeCsr(v);
        return this.#updateIp();
      case RISCV_IOMMU_REG_PQCSR:
        if (!caps.ats) return;
        this.#pq.writeCsr(v);
        return this.#updateIp();
      case RISCV_IOMMU_REG_IPSR:
        // RW1C per bit; a bit whose condition still holds sets again (an MSI re-signals it; a
        // wire it keeps high does not drop for a moment).
        this.#ipsr &= ~(v & ((1 << RISCV_IOMMU_INTR_COUNT) - 1));
        this.#updateIp();
        return this.#updateWires();
      case RISCV_IOMMU_REG_IOMMU_QOSID:
        if (caps.qosid) {
          this.#qosid = v & (RISCV_IOMMU_IOMMU_QOSID_RCID | RISCV_IOMMU_IOMMU_QOSID_MCID);
        }
        return;
    }
    if (off >= RISCV_IOMMU_REG_MSI_CFG_TBL && off < MSI_CFG_TBL_END && caps.igs !== IGS_WSI) {
      const n = (off - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4;
      if (off & 4) this.#writeMsiCtl(n, v & RISCV_IOMMU_MSI_CFG_TBL_CTRL_M);
      else this.#msiData[n] = v;
    }
  }

  #writeFctl(v: number): void {
    const caps = this.caps;
    let f = this.#fctl;
    if (caps.end) f = f & ~RISCV_IOMMU_FCTL_BE | v & RISCV_IOMMU_FCTL_BE;
    if (caps.igs === IGS_BOTH) f = f & ~RISCV_IOMMU_FCTL_WSI | v & RISCV_IOMMU_FCTL_WSI;
    if (this.#gxlWritable) f = f & ~RISCV_IOMMU_FCTL_GXL | v & RISCV_IOMMU_FCTL_GXL;
    this.#fctl = f;
    this.#syncTranslator();
    this.#updateWires();
  }

  #writeDdtp(v: bigint): void {
    this.#ddtpBusyReads = this.#ddtpBusyPolls;
    const mode = Number(v & 0xfn);
    const xlvl = (m: number) =>
      m >= RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL && m <= RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL;
    if (xlvl(mode)) {
      if (!this.#ddtLevels.includes(mode - 1)) return;
      if (xlvl(this.#ddtpMode) && mode !== this.#ddtpMode) return;
    } else if (
      mode !== RISCV_IOMMU_DDTP_IOMMU_MODE_OFF && mode !== RISCV_IOMMU_DDTP_IOMMU_MODE_BARE
    ) {
      return;
    }
    this.#ddtpMode = mode;
    this.#ddtpPpn = this.#fixedDdtPpn ?? Number(v >> 10n & this.#ddtPpnMask);
    this.#syncTranslator();
  }

  #syncTranslator(): void {
    const t = this.translator;
    t.ddtpMode = this.#ddtpMode;
    t.ddtpPpn = this.#ddtpPpn;
    t.fctlBE = (this.#fctl & RISCV_IOMMU_FCTL_BE) !== 0;
    t.fctlGXL = (this.#fctl & RISCV_IOMMU_FCTL_GXL) !== 0;
  }

  #writeIcvec(v: number): void {
    const m = this.#vecMask;
    this.#icvec = (v & m) | (v & m << 4) | (v & m << 8) | (v & m << 12);
    this.#updateWires();
  }

  #vector(cause: number): number {
    return this.#icvec >> (4 * cause) & 0xf;
  }

  // -- Interrupts --

  /**
   * Sets the ipsr bits whose level conditions hold (spec §5.18 "Interrupt pending status
   * register").
   */
  #updateIp(): void {
    let set = 0;
    const cie = (q: HwQueue) => (q.csr & RISCV_IOMMU_QUEUE_INTR_ENABLE) !== 0;
    if (cie(this.#cq) && this.#cq.csr & CQ_ERRORS) set |= RISCV_IOMMU_IPSR_CIP;
    if (cie(this.#fq) && this.#fq.csr & QUEUE_ERRORS) set |= RISCV_IOMMU_IPSR_FIP;
    if (this.caps.ats && cie(this.#pq) && this.#pq.csr & QUEUE_ERRORS) {
      set |= RISCV_IOMMU_IPSR_PIP;
    }
    this.#raise(set);
  }

  /** Raises `bit` when the queue's interrupt enable is set (a new record was written). */
  #raiseIf(q: HwQueue, bit: number): void {
    if (q.csr & RISCV_IOMMU_QUEUE_INTR_ENABLE) this.#raise(bit);
  }

  /** Sets ipsr bits; each 0→1 edge is signalled (a wire level, or one MSI). */
  #raise(bits: number): void {
    const fresh = bits & ~this.#ipsr;
    if (fresh === 0) return;
    this.#ipsr |= fresh;
    if (this.#fctl & RISCV_IOMMU_FCTL_WSI) return this.#updateWires();
    for (let c = 0; c < RISCV_IOMMU_INTR_COUNT; c++) {
      if (fresh & 1 << c) this.#signalMsi(this.#vector(c));
    }
  }

  /** Drives each wire to the OR of the ipsr bits mapped to it (all low in MSI mode). */
  #updateWires(): void {
    let levels = 0;
    if (this.#fctl & RISCV_IOMMU_FCTL_WSI) {
      for (let c = 0; c < RISCV_IOMMU_INTR_COUNT; c++) {
        if (this.#ipsr & 1 << c) levels |= 1 << this.#vector(c);
      }
    }
    const changed = levels ^ this.#wires;
    this.#wires = levels;
    for (let line = 0; changed >> line; line++) {
      if (changed & 1 << line) this.irq?.setWire(line, (levels & 1 << line) !== 0);
    }
  }

  #signalMsi(vec: number): void {
    if (this.#msiCtl[vec] & RISCV_IOMMU_MSI_CFG_TBL_CTRL_M) {
      this.#msiPending |= 1 << vec;
      return;
    }
    const addr = this.#msiAddr[vec];
    this.#mem.write32(Number(addr), this.#msiData[vec]);
    if (this.#mem.fault !== MEM_OK) {
      this.#fault(
        RISCV_IOMMU_FQ_CAUSE_MSI_WR_FAULT,
        RISCV_IOMMU_FQ_TTYP_NONE,
        0,
        false,
        0,
        false,
        addr,
        0n,
      );
    }
  }

  #writeMsiCtl(n: number, m: number): void {
    this.#msiCtl[n] = m;
    if (m === 0 && this.#msiPending & 1 << n) {
      this.#msiPending &= ~(1 << n);
      this.#signalMsi(n);
    }
  }

  // -- Queues --

  /** Writes a fault record; true when it landed in the fault queue. */
  #fault(
    cause: number,
    ttyp: number,
    did: number,
    pv: boolean,
    pid: number,
    priv: boolean,
    iotval: bigint,
    iotval2: bigint,
  ): boolean {
    encodeFaultRecord(this.#rec, cause, ttyp, did, pv, pid, priv, iotval, iotval2);
    const r = this.#push(this.#fq, this.#rec);
    if (r === QUEUE_RECORD_WRITTEN) this.#raiseIf(this.#fq, RISCV_IOMMU_IPSR_FIP);
    else this.#updateIp();
    return r === QUEUE_RECORD_WRITTEN;
  }

  /** Pushes a record with the IOMMU's own stores, which cannot reach its own registers. */
  #push(q: HwQueue, rec: Uint32Array): number {
    this.#selfStore = true;
    const r = q.push(this.#mem, rec, (this.#fctl & RISCV_IOMMU_FCTL_BE) !== 0);
    this.#selfStore = false;
    return r;
  }

  /** Fetches and executes commands until the queue is empty, stalled or stopped by an error. */
  #processCq(): void {
    if (this.#cqRunning) return;
    this.#cqRunning = true;
    const q = this.#cq, mem = this.#mem;
    while (q.on && !(q.csr & CQ_STOP) && !this.#stall && q.head !== q.tail) {
      const be = (this.#fctl & RISCV_IOMMU_FCTL_BE) !== 0;
      const addr = q.entryAddr(q.head);
      mem.load64(addr, be);
      let outcome = mem.fault !== MEM_OK ? CMD_MEM_FAULT : CMD_OK;
      const d0lo = mem.lo, d0hi = mem.hi;
      mem.load64(addr + 8, be);
      if (mem.fault !== MEM_OK) outcome = CMD_MEM_FAULT;
      const d1lo = mem.lo, d1hi = mem.hi;
      if (outcome === CMD_OK) {
        this.#selfStore = true;
        outcome = this.#cmd.executeHalves(d0lo, d0hi, d1lo, d1hi, this.#fctl);
        this.#selfStore = false;
      }
      if (outcome === CMD_WAIT) break;
      if (outcome === CMD_OK || outcome === CMD_FENCE_W_IP) {
        const index = q.head;
        q.head = ((q.head + 1) & q.mask) >>> 0;
        if (outcome === CMD_FENCE_W_IP) q.csr |= RISCV_IOMMU_CQCSR_FENCE_W_IP;
        this.commandObserver?.(index, d0lo, d0hi, d1lo, d1hi);
      } else if (outcome === CMD_ILLEGAL) {
        q.csr |= RISCV_IOMMU_CQCSR_CMD_ILL;
      } else if (outcome === CMD_TIMEOUT) {
        q.csr |= RISCV_IOMMU_CQCSR_CMD_TO;
      } else {
        q.csr |= RISCV_IOMMU_CQCSR_CQMF;
      }
      if (outcome !== CMD_OK) this.#updateIp();
    }
    this.#cqRunning = false;
  }

  // -- Debug translation interface --

  #writeTrReqCtl(v: bigint): void {
    let ctl = v & TR_CTL_RW;
    if (ctl & RISCV_IOMMU_TR_REQ_CTL_EXE && !(ctl & RISCV_IOMMU_TR_REQ_CTL_NW)) {
      ctl &= ~RISCV_IOMMU_TR_REQ_CTL_EXE;
    }
    this.#trCtl = ctl;
    if (v & RISCV_IOMMU_TR_REQ_CTL_GO_BUSY) this.#runDebugRequest();
  }

  /** Runs the `tr_req_*` request as an Untranslated request and fills `tr_response`. */
  #runDebugRequest(): void {
    const ctl = this.#trCtl, req = this.#trReq, res = this.#trRes;
    const pv = (ctl & RISCV_IOMMU_TR_REQ_CTL_PV) !== 0n;
    req.deviceId = Number((ctl & RISCV_IOMMU_TR_REQ_CTL_DID) >> 40n);
    req.pidValid = pv;
    req.pid = pv ? Number((ctl & RISCV_IOMMU_TR_REQ_CTL_PID) >> 12n) : 0;
    req.priv = pv && (ctl & RISCV_IOMMU_TR_REQ_CTL_PRIV) !== 0n;
    req.access = !(ctl & RISCV_IOMMU_TR_REQ_CTL_NW)
      ? ACC_WRITE
      : ctl & RISCV_IOMMU_TR_REQ_CTL_EXE
      ? ACC_EXEC
      : ACC_READ;
    setIova(req, this.#trIova);
    this.translate(req, res);
    this.#trResponse = res.status === XLATE_OK
      ? BigInt(res.pbmt & 3) << 7n | _rangePpn(res.pa, res.size)
      : RISCV_IOMMU_TR_RESPONSE_FAULT;
    this.#trBusyReads = this.#trBusyPolls;
  }
}

/**
 * `tr_response` S and PPN for a translation to `pa` in a range of `size` bytes: a power-of-two
 * range above 4 KiB is reported whole (S=1, the first 0 bit of the PPN at position X gives
 * 2^(X+1) × 4 KiB); anything else as the 4 KiB page holding `pa` (S=0).
 */
function _rangePpn(pa: number, size: number): bigint {
  const pages = size / 4096;
  const ppn = Math.floor(pa / 4096);
  if (!(pages >= 2 && Number.isInteger(Math.log2(pages)))) {
    return BigInt(ppn) << 10n & RISCV_IOMMU_TR_RESPONSE_PPN;
  }
  const base = ppn - ppn % pages;
  const v = BigInt(base + pages / 2 - 1) << 10n | RISCV_IOMMU_TR_RESPONSE_SZ;
  return v & (RISCV_IOMMU_TR_RESPONSE_PPN | RISCV_IOMMU_TR_RESPONSE_SZ);
}

function _inPage(offset: number, size: number): boolean {
  return Number.isInteger(offset) && offset >= 0 && offset <= RISCV_IOMMU_REG_SIZE - size &&
    offset % size === 0;
}
