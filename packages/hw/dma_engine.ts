/**
 * A PCIe DMA test engine: the target of the dmatest analog. Each channel copies or fills memory
 * by DMA through the root complex (so through the IOMMU, page by page) and signals completion
 * with its MSI-X vector. It can tag its transfers with a PASID (privileged, execute), use ATS
 * through its ATC when software enables ATS, and with PRI enabled ask for the pages an ATS
 * completion denies with page requests, waiting for the answer.
 *
 * BAR0 (64-bit, 16 KiB) register map, all registers 32-bit:
 *
 * | Offset | Register |
 * |---|---|
 * | 0x000 | `VERSION` (RO): 0x0002_0000 |
 * | 0x004 | `CHANNELS` (RO): number of channels |
 * | 0x008 | `PASID_STOP`: write bit 31 GO with a PASID in 19:0 to stop that PASID (below); reads the last PASID stopped |
 * | 0x100 + 0x40·ch | channel `ch` registers, below |
 * | 0x2000 | MSI-X table (vector `ch` = channel `ch`) |
 * | 0x3000 | MSI-X PBA |
 *
 * | Channel offset | Register |
 * |---|---|
 * | 0x00 / 0x04 | `SRC_LO` / `SRC_HI`: source bus address (COPY) |
 * | 0x08 / 0x0C | `DST_LO` / `DST_HI`: destination bus address |
 * | 0x10 | `LEN`: bytes to move |
 * | 0x14 | `PATTERN`: 32-bit little-endian fill pattern (FILL) |
 * | 0x18 | `PASID`: bit 31 PV, bit 30 PRIV (privileged), bit 29 EXEC (COPY reads are reads for execute), 19:0 PASID |
 * | 0x1C | `CMD`: 1:0 OP (1 COPY, 2 FILL), bit 8 IRQ_EN, bit 31 GO (starts; reads back 0) |
 * | 0x20 | `STATUS`: bit 0 BUSY, bit 1 DONE (RW1C), bit 2 ERROR (RW1C), bit 3 PRI_WAIT (RO: waiting for a page request group's response, or for one that frees credits), 15:8 error code |
 * | 0x24 | `XFERRED`: bytes moved before completion or the error |
 * | 0x28 / 0x2C | `ERR_ADDR_LO` / `ERR_ADDR_HI`: bus address of the failed transaction (or of the page a page request failed for) |
 * | 0x30 | `ERR_CAUSE`: the IOMMU's fault cause, when the root complex aborted it |
 * | 0x34 | `ERR_CPL`: the PCIe completion status of that transaction: 1 Unsupported Request, 4 Completer Abort (0 otherwise) |
 *
 * `PASID` with PV needs the PASID capability enabled, PRIV its Privileged Mode Enable, EXEC its
 * Execute Permission Enable (and PV); otherwise GO ends at once with error `CMD`.
 *
 * A channel runs its transfer as steps on the simulated clock: after `dmaSetup` it moves one
 * chunk (a COPY's source page, a FILL's destination page) every `dmaPage` ns, from the clock's
 * cost table; the IOMMU sees each chunk's transactions at its step. It completes `dmaPage` after
 * its last chunk (or after the chunk that failed), in a clock event or as soon as a register
 * access finds that time passed, raising its MSI-X vector with IRQ_EN.
 *
 * With ATS enabled the engine's function translates through its ATC. When an ATS completion
 * denies a page and PRI is enabled (with an allocation), the channel sends a page request group
 * for it: the page and the following pages of the same buffer the transfer still needs and the
 * ATC does not hold, up to {@linkcode DMAE_PRG_MAX_PAGES} (or the engine's `maxGroupPages`) and
 * the free credits of the allocation;
 * reads ask R (with EXEC: and execute), writes W; the PASID, PRIV and EXEC of the transfer go
 * with them. It then waits (STATUS.PRI_WAIT). A Success response retries the translation (at
 * once the first time, after {@linkcode DMAE_PRI_BACKOFF_NS}-based pauses when the page is still
 * denied); Invalid Request ends the transfer with error `PRI_INVALID`, Response Failure
 * (or the function's PRI failing or being reset meanwhile) with `PRI_FAILURE`. With no credit
 * free it waits for one; with PRI disabled, no allocation, or {@linkcode DMAE_PRI_TRIES} groups
 * sent for one page without it becoming usable, the transfer ends with error `ATS`.
 *
 * `PASID_STOP` stops a PASID's traffic, as a device does before its PASID is torn down: every
 * channel running or waiting with that PASID ends with error `STOPPED` (responses still owed to
 * its page requests are ignored when they come), and with PRI enabled the function sends a Stop
 * Marker for the PASID.
 *
 * A write dropped by the IOMMU is posted and could not be seen by real PCIe hardware; this test
 * engine learns of it from the model and reports it, as dmatest wants to know. Overlapping
 * copies run forward, like `memcpy`. Register writes other than STATUS and `PASID_STOP` are
 * ignored while BUSY.
 *
 * @module
 */
import type { Clock } from "./clock.ts";
import type { MmioHandler } from "./memory.ts";
import { hiOf, loOf, read64Split, toNumber64, write64Split } from "./_u64.ts";
import {
  DMA_ERR_ABORT,
  DMA_ERR_ATS_DENIED,
  DMA_ERR_BUS,
  DMA_ERR_NO_MASTER,
  PciFunction,
} from "./pcie/function.ts";
import { PCI_PASID_CTRL, PCI_PASID_CTRL_EXEC, PCI_PASID_CTRL_PRIV } from "./pcie/config.ts";
import { CPL_SC } from "./iommu/request.ts";
import { PRG_RESPONSE_INVALID, PRG_RESPONSE_SUCCESS } from "./iommu/page_request.ts";

/** PCI vendor ID of the engine (QEMU's example-device vendor). */
export const DMAE_VENDOR_ID = 0x1234;
/** PCI device ID of the engine. */
export const DMAE_DEVICE_ID = 0xd3a0;
/** PCI class code: system peripheral, DMA controller. */
export const DMAE_CLASS = 0x080100;
/** Size of BAR0. */
export const DMAE_BAR_SIZE = 0x4000;

/** `VERSION` register. */
export const DMAE_REG_VERSION = 0x000;
/** `CHANNELS` register. */
export const DMAE_REG_CHANNELS = 0x004;
/** `PASID_STOP` register. */
export const DMAE_REG_PASID_STOP = 0x008;
/** `PASID_STOP.GO`: stop the PASID in bits 19:0. */
export const DMAE_PASID_STOP_GO = 1 << 31;
/** Most channels an engine has: their registers and MSI-X vectors fit BAR0. */
export const DMAE_MAX_CHANNELS = 32;
/** First channel's registers. */
export const DMAE_CH_BASE = 0x100;
/** Distance between channels' registers. */
export const DMAE_CH_STRIDE = 0x40;
/** Channel `SRC_LO`. */
export const DMAE_CH_SRC_LO = 0x00;
/** Channel `SRC_HI`. */
export const DMAE_CH_SRC_HI = 0x04;
/** Channel `DST_LO`. */
export const DMAE_CH_DST_LO = 0x08;
/** Channel `DST_HI`. */
export const DMAE_CH_DST_HI = 0x0c;
/** Channel `LEN`. */
export const DMAE_CH_LEN = 0x10;
/** Channel `PATTERN`. */
export const DMAE_CH_PATTERN = 0x14;
/** Channel `PASID`. */
export const DMAE_CH_PASID = 0x18;
/** Channel `CMD`. */
export const DMAE_CH_CMD = 0x1c;
/** Channel `STATUS`. */
export const DMAE_CH_STATUS = 0x20;
/** Channel `XFERRED`. */
export const DMAE_CH_XFERRED = 0x24;
/** Channel `ERR_ADDR_LO`. */
export const DMAE_CH_ERR_ADDR_LO = 0x28;
/** Channel `ERR_ADDR_HI`. */
export const DMAE_CH_ERR_ADDR_HI = 0x2c;
/** Channel `ERR_CAUSE`. */
export const DMAE_CH_ERR_CAUSE = 0x30;
/** Channel `ERR_CPL`. */
export const DMAE_CH_ERR_CPL = 0x34;
/** Offset of the MSI-X table in BAR0. */
export const DMAE_MSIX_TABLE = 0x2000;
/** Offset of the MSI-X PBA in BAR0. */
export const DMAE_MSIX_PBA = 0x3000;

/** `CMD.OP` mask. */
export const DMAE_CMD_OP_MASK = 0x3;
/** `CMD.OP`: copy `LEN` bytes from `SRC` to `DST`. */
export const DMAE_OP_COPY = 1;
/** `CMD.OP`: fill `LEN` bytes at `DST` with `PATTERN`. */
export const DMAE_OP_FILL = 2;
/** `CMD.IRQ_EN`: signal the channel's MSI-X vector on completion. */
export const DMAE_CMD_IRQ_EN = 1 << 8;
/** `CMD.GO`: start the command. */
export const DMAE_CMD_GO = 1 << 31;
/** `PASID.PV`: transactions carry the PASID. */
export const DMAE_PASID_PV = 1 << 31;
/** `PASID.PRIV`: transactions are privileged. */
export const DMAE_PASID_PRIV = 1 << 30;
/** `PASID.EXEC`: a COPY's reads are reads for execute (Execute Requested). */
export const DMAE_PASID_EXEC = 1 << 29;

/** `STATUS.BUSY`. */
export const DMAE_STATUS_BUSY = 1 << 0;
/** `STATUS.DONE` (RW1C). */
export const DMAE_STATUS_DONE = 1 << 1;
/** `STATUS.ERROR` (RW1C). */
export const DMAE_STATUS_ERROR = 1 << 2;
/** `STATUS.PRI_WAIT` (RO): the channel waits for the response to its page request group, or for
 * credits to send one. */
export const DMAE_STATUS_PRI_WAIT = 1 << 3;
/** `STATUS` error code shift (15:8). */
export const DMAE_STATUS_ERR_SHIFT = 8;

/** Error code: a read was aborted (translation fault: UR/CA completion). */
export const DMAE_ERR_READ = 1;
/** Error code: a write was dropped (translation fault). */
export const DMAE_ERR_WRITE = 2;
/** Error code: a translated access hit a bus error or poison. */
export const DMAE_ERR_BUS = 3;
/** Error code: Bus Master Enable is clear. */
export const DMAE_ERR_MASTER = 4;
/** Error code: bad command (unknown OP, an address above 2^53, PASID/PRIV/EXEC not enabled). */
export const DMAE_ERR_CMD = 5;
/** Error code: an ATS completion granted no access and page requests could not help (PRI
 * disabled or without allocation, or the page stayed unusable after {@linkcode DMAE_PRI_TRIES}
 * groups). */
export const DMAE_ERR_ATS = 6;
/** Error code: a page request group was answered Invalid Request. */
export const DMAE_ERR_PRI_INVALID = 7;
/** Error code: a page request group was answered Response Failure (or the function's PRI failed
 * or was reset before it was answered). */
export const DMAE_ERR_PRI_FAILURE = 8;
/** Error code: the transfer's PASID was stopped (`PASID_STOP`). */
export const DMAE_ERR_STOPPED = 9;

/** Most pages one page request group asks for, unless the engine is built with another limit. */
export const DMAE_PRG_MAX_PAGES = 8;
/** Page request groups a channel sends for one page before it gives up on it. */
export const DMAE_PRI_TRIES = 16;
/**
 * A Success that did not make the page usable (the IOMMU answers Success for a group its full
 * page-request queue dropped) is retried after a pause growing by this much per group already
 * sent for the page, in ns: the device gives software about a millisecond to recover.
 */
export const DMAE_PRI_BACKOFF_NS = 10_000;

/** Options of {@linkcode DmaEngine}. */
export interface DmaEngineOptions {
  /** The machine's clock. */
  clock: Clock;
  /** Number of channels, 1 to {@linkcode DMAE_MAX_CHANNELS}. Default 4. */
  channels?: number;
  /**
   * Advertise ATS (the engine then uses its ATC when software enables ATS): its invalidate queue
   * depth (capability field, 0 = 32; default 0) and the time it takes to complete an Invalidate
   * Request (default the clock's `atsInvalidate` cost; `Infinity`: never).
   */
  ats?: boolean | { invalidateQueueDepth?: number; invalidateNs?: number };
  /** Advertise PASID (20 bits, privileged and execute modes supported). */
  pasid?: boolean;
  /**
   * Advertise PRI: Outstanding Page Request Capacity (default 64), PRG Response PASID Required
   * (default true), and the most pages a channel asks for in one group (default
   * {@linkcode DMAE_PRG_MAX_PAGES}).
   */
  pri?: boolean | {
    outstandingCapacity?: number;
    prgResponsePasidRequired?: boolean;
    maxGroupPages?: number;
  };
}

const PAGE = 4096;
/** Channel states. */
const IDLE = 0, RUN = 1, WAIT_PRG = 2, WAIT_CREDIT = 3, ENDING = 4;

interface Channel {
  index: number;
  src: [number, number];
  dst: [number, number];
  len: number;
  pattern: number;
  pasid: number;
  cmd: number;
  status: number;
  xferred: number;
  errLo: number;
  errHi: number;
  errCause: number;
  errCpl: number;
  /** IDLE, RUN (a step is scheduled), WAIT_PRG, WAIT_CREDIT or ENDING (completion scheduled). */
  state: number;
  /** When the scheduled step or completion is due. */
  at: number;
  /** Its clock event (0: none). */
  event: number;
  /** The error code the completion reports (0: success). */
  result: number;
  /** Bumped when a wait ends, so that a response to a group the channel gave up on is ignored. */
  token: number;
  /** Page request groups sent for the page at the current position. */
  tries: number;
  /** The page the channel asked for. */
  page: number;
  /** Runs the scheduled step or completion (one closure per channel). */
  due: () => void;
}

/**
 * The DMA test engine. Attach {@linkcode DmaEngine.fn} to a root complex.
 *
 * @example Copying a page through the root complex
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock, DmaEngine, PhysicalMemory, RootComplex } from "@iommu-lab/hw";
 * import { DMAE_CH_BASE, DMAE_CH_CMD, DMAE_CH_DST_LO, DMAE_CH_LEN, DMAE_CH_SRC_LO, DMAE_CH_STATUS, DMAE_CMD_GO, DMAE_OP_COPY, DMAE_STATUS_DONE } from "@iommu-lab/hw/regs";
 *
 * const clock = new Clock();
 * const mem = new PhysicalMemory();
 * mem.addRam(0x8000_0000, 1 << 24);
 * const rc = new RootComplex({ mem, clock }); // no IOMMU: bus addresses are physical
 * const dma = new DmaEngine({ clock });
 * rc.attach(dma.fn, 4);
 * dma.fn.configWrite32(0x10, 0x4000_0000); // BAR0
 * dma.fn.configWrite32(0x04, 0x6); // memory decode + bus master
 * mem.write32(0x8000_0000, 0xfeed_f00d);
 * const ch0 = 0x4000_0000 + DMAE_CH_BASE;
 * mem.write32(ch0 + DMAE_CH_SRC_LO, 0x8000_0000);
 * mem.write32(ch0 + DMAE_CH_DST_LO, 0x8010_0000);
 * mem.write32(ch0 + DMAE_CH_LEN, 4096);
 * mem.write32(ch0 + DMAE_CH_CMD, DMAE_CMD_GO | DMAE_OP_COPY);
 * clock.advance(10_000);
 * assert.equal(mem.read32(ch0 + DMAE_CH_STATUS), DMAE_STATUS_DONE);
 * assert.equal(mem.read32(0x8010_0000), 0xfeed_f00d);
 * ```
 */
export class DmaEngine implements MmioHandler {
  /** The engine's PCI function. */
  readonly fn: PciFunction;
  /** Number of channels. */
  readonly channels: number;

  readonly #clock: Clock;
  readonly #ch: Channel[] = [];
  readonly #pages: number[] = [];
  readonly #groupPages: number;
  #stopped = 0;

  /** Creates an idle engine; RangeError for a channel count the engine cannot have. */
  constructor(opts: DmaEngineOptions) {
    this.#clock = opts.clock;
    const channels = opts.channels ?? 4;
    if (!Number.isInteger(channels) || channels < 1 || channels > DMAE_MAX_CHANNELS) {
      throw new RangeError(`A DMA engine has 1 to ${DMAE_MAX_CHANNELS} channels, not ${channels}`);
    }
    this.channels = channels;
    for (let i = 0; i < this.channels; i++) {
      const ch: Channel = {
        index: i,
        src: [0, 0],
        dst: [0, 0],
        len: 0,
        pattern: 0,
        pasid: 0,
        cmd: 0,
        status: 0,
        xferred: 0,
        errLo: 0,
        errHi: 0,
        errCause: 0,
        errCpl: 0,
        state: IDLE,
        at: 0,
        event: 0,
        result: 0,
        token: 0,
        tries: 0,
        page: 0,
        due: () => {
          ch.event = 0;
          this.#run(ch);
        },
      };
      this.#ch.push(ch);
    }
    const ats = opts.ats === true ? {} : opts.ats || undefined;
    const pri = opts.pri === true ? {} : opts.pri || undefined;
    this.#groupPages = Math.max(1, pri?.maxGroupPages ?? DMAE_PRG_MAX_PAGES);
    this.fn = new PciFunction({
      clock: opts.clock,
      vendorId: DMAE_VENDOR_ID,
      deviceId: DMAE_DEVICE_ID,
      classCode: DMAE_CLASS,
      bars: [{ index: 0, size: DMAE_BAR_SIZE, is64: true, handler: this }],
      msix: {
        vectors: this.channels,
        bar: 0,
        tableOffset: DMAE_MSIX_TABLE,
        pbaOffset: DMAE_MSIX_PBA,
      },
      ats: ats && { invalidateQueueDepth: 0, ...ats },
      pri: pri && {
        outstandingCapacity: pri.outstandingCapacity ?? 64,
        prgResponsePasidRequired: pri.prgResponsePasidRequired ?? true,
      },
      pasid: opts.pasid ? { width: 20, priv: true, exec: true } : undefined,
      name: "dma-engine",
    });
    this.fn.onPriCredits = () => {
      for (const ch of this.#ch) {
        if (ch.state !== WAIT_CREDIT) continue;
        ch.status &= ~DMAE_STATUS_PRI_WAIT;
        this.#schedule(ch, this.#clock.now(), RUN);
      }
    };
  }

  /** Reads a register (offsets within BAR0, below the MSI-X table). */
  read32(offset: number): number {
    this.#clock.charge(this.#clock.costs.mmio);
    if (offset === DMAE_REG_VERSION) return 0x0002_0000;
    if (offset === DMAE_REG_CHANNELS) return this.channels;
    if (offset === DMAE_REG_PASID_STOP) return this.#stopped;
    const ch = this.#channel(offset);
    if (ch === undefined) return 0;
    this.#sync(ch);
    switch ((offset - DMAE_CH_BASE) % DMAE_CH_STRIDE) {
      case DMAE_CH_SRC_LO:
        return ch.src[0];
      case DMAE_CH_SRC_HI:
        return ch.src[1];
      case DMAE_CH_DST_LO:
        return ch.dst[0];
      case DMAE_CH_DST_HI:
        return ch.dst[1];
      case DMAE_CH_LEN:
        return ch.len;
      case DMAE_CH_PATTERN:
        return ch.pattern;
      case DMAE_CH_PASID:
        return ch.pasid;
      case DMAE_CH_CMD:
        return ch.cmd;
      case DMAE_CH_STATUS:
        return ch.status;
      case DMAE_CH_XFERRED:
        return ch.xferred;
      case DMAE_CH_ERR_ADDR_LO:
        return ch.errLo;
      case DMAE_CH_ERR_ADDR_HI:
        return ch.errHi;
      case DMAE_CH_ERR_CAUSE:
        return ch.errCause;
      case DMAE_CH_ERR_CPL:
        return ch.errCpl;
    }
    return 0;
  }

  /** Writes a register; GO in `CMD` starts the channel, GO in `PASID_STOP` stops a PASID. */
  write32(offset: number, value: number): void {
    this.#clock.charge(this.#clock.costs.mmio);
    const v = value >>> 0;
    if (offset === DMAE_REG_PASID_STOP) {
      if (v & DMAE_PASID_STOP_GO) this.#stopPasid(v & 0xf_ffff);
      return;
    }
    const ch = this.#channel(offset);
    if (ch === undefined) return;
    this.#sync(ch);
    const reg = (offset - DMAE_CH_BASE) % DMAE_CH_STRIDE;
    if (reg === DMAE_CH_STATUS) {
      ch.status &= ~(v & (DMAE_STATUS_DONE | DMAE_STATUS_ERROR));
      if ((ch.status & DMAE_STATUS_ERROR) === 0) ch.status &= 0xff;
      return;
    }
    if (ch.status & DMAE_STATUS_BUSY) return;
    switch (reg) {
      case DMAE_CH_SRC_LO:
        ch.src[0] = v;
        break;
      case DMAE_CH_SRC_HI:
        ch.src[1] = v;
        break;
      case DMAE_CH_DST_LO:
        ch.dst[0] = v;
        break;
      case DMAE_CH_DST_HI:
        ch.dst[1] = v;
        break;
      case DMAE_CH_LEN:
        ch.len = v;
        break;
      case DMAE_CH_PATTERN:
        ch.pattern = v;
        break;
      case DMAE_CH_PASID:
        ch.pasid = (v & (DMAE_PASID_PV | DMAE_PASID_PRIV | DMAE_PASID_EXEC | 0xf_ffff)) >>> 0;
        break;
      case DMAE_CH_CMD:
        ch.cmd = v & (DMAE_CMD_OP_MASK | DMAE_CMD_IRQ_EN);
        if (v & DMAE_CMD_GO) this.#start(ch);
        break;
    }
  }

  /** Two 4-byte reads, low first. */
  read64(offset: number): bigint {
    return read64Split(this, offset);
  }

  /** Two 4-byte writes, low first (so a 64-bit address register is written whole). */
  write64(offset: number, value: bigint): void {
    write64Split(this, offset, value);
  }

  #channel(offset: number): Channel | undefined {
    if (offset < DMAE_CH_BASE) return undefined;
    return this.#ch[Math.floor((offset - DMAE_CH_BASE) / DMAE_CH_STRIDE)];
  }

  #start(ch: Channel): void {
    const fn = this.fn;
    const op = ch.cmd & DMAE_CMD_OP_MASK;
    ch.status = DMAE_STATUS_BUSY;
    ch.xferred = 0;
    ch.errLo =
      ch.errHi =
      ch.errCause =
      ch.errCpl =
        0;
    ch.tries = 0;
    const start = this.#clock.now() + this.#clock.costs.dmaSetup;
    const ctrl = fn.pasidCap === 0 ? 0 : fn.config.get16(fn.pasidCap + PCI_PASID_CTRL);
    const pv = (ch.pasid & DMAE_PASID_PV) !== 0;
    const pasidOk = !pv ? (ch.pasid & DMAE_PASID_EXEC) === 0 : fn.pasidEnabled &&
      ((ch.pasid & DMAE_PASID_PRIV) === 0 || (ctrl & PCI_PASID_CTRL_PRIV) !== 0) &&
      ((ch.pasid & DMAE_PASID_EXEC) === 0 || (ctrl & PCI_PASID_CTRL_EXEC) !== 0);
    // Bus addresses are numbers in the model: above 2^53 they cannot be exact, so refuse them.
    if (
      (op !== DMAE_OP_COPY && op !== DMAE_OP_FILL) || ch.src[1] >= 0x20_0000 ||
      ch.dst[1] >= 0x20_0000 || !pasidOk
    ) {
      return this.#end(ch, DMAE_ERR_CMD, start);
    }
    if (ch.len === 0) return this.#end(ch, 0, start);
    this.#schedule(ch, start, RUN);
  }

  #schedule(ch: Channel, at: number, state: number): void {
    if (ch.event !== 0) this.#clock.cancel(ch.event);
    ch.state = state;
    ch.at = at;
    ch.event = this.#clock.schedule(at, ch.due);
  }

  /** Ends the transfer with error `err` (0: success); the channel completes at `at`. */
  #end(ch: Channel, err: number, at: number): void {
    ch.result = err;
    ch.status &= ~DMAE_STATUS_PRI_WAIT;
    this.#schedule(ch, at, ENDING);
  }

  #run(ch: Channel): void {
    if (ch.state === RUN) this.#step(ch);
    else if (ch.state === ENDING) this.#complete(ch);
  }

  /** A register access runs what fell due before it (a driver polling STATUS sees progress as
   * its reads cost time), without waiting for the clock's events. */
  #sync(ch: Channel): void {
    const clock = this.#clock;
    while (ch.event !== 0 && clock.now() >= ch.at) {
      clock.cancel(ch.event);
      ch.event = 0;
      this.#run(ch);
    }
  }

  /** Moves the next chunk of the transfer. */
  #step(ch: Channel): void {
    const fn = this.fn;
    const pv = (ch.pasid & DMAE_PASID_PV) !== 0;
    const pasid = pv ? ch.pasid & 0xf_ffff : -1;
    const priv = (ch.pasid & DMAE_PASID_PRIV) !== 0;
    const exec = (ch.pasid & DMAE_PASID_EXEC) !== 0;
    const src = toNumber64(ch.src[0], ch.src[1]) + ch.xferred;
    const dst = toNumber64(ch.dst[0], ch.dst[1]) + ch.xferred;
    const copy = (ch.cmd & DMAE_CMD_OP_MASK) === DMAE_OP_COPY;
    const at = copy ? src : dst;
    const n = Math.min(ch.len - ch.xferred, PAGE - at % PAGE);
    let done: number;
    if (copy) {
      done = fn.dmaCopy(dst, src, n, pasid, priv, exec);
    } else {
      // The pattern repeats from the start of the buffer: rotate it to this chunk's phase.
      const r = (ch.xferred & 3) * 8;
      const p = r === 0 ? ch.pattern : (ch.pattern >>> r | ch.pattern << (32 - r)) >>> 0;
      done = fn.dmaFill(dst, n, p, pasid, priv);
    }
    ch.xferred += done;
    if (done !== 0) ch.tries = 0;
    const next = ch.at + this.#clock.costs.dmaPage;
    if (done === n) {
      if (ch.xferred >= ch.len) this.#end(ch, 0, next);
      else this.#schedule(ch, next, RUN);
      return;
    }
    if (fn.faultKind === DMA_ERR_ATS_DENIED && this.#pageRequest(ch, pasid, priv, exec)) return;
    const kind = fn.faultKind;
    ch.errLo = loOf(fn.faultAddr);
    ch.errHi = hiOf(fn.faultAddr);
    ch.errCause = kind === DMA_ERR_ABORT ? fn.faultCause : 0;
    ch.errCpl = kind === DMA_ERR_ABORT ? fn.faultCompletion : CPL_SC;
    this.#end(
      ch,
      kind === DMA_ERR_NO_MASTER
        ? DMAE_ERR_MASTER
        : kind === DMA_ERR_BUS
        ? DMAE_ERR_BUS
        : kind === DMA_ERR_ATS_DENIED
        ? DMAE_ERR_ATS
        : fn.faultWrite
        ? DMAE_ERR_WRITE
        : DMAE_ERR_READ,
      next,
    );
  }

  /**
   * The ATS completion for the function's fault address denied it: asks for the page (and the
   * next ones the transfer needs) with a page request group and waits; true when the channel now
   * waits, false when page requests cannot help.
   */
  #pageRequest(ch: Channel, pasid: number, priv: boolean, exec: boolean): boolean {
    const fn = this.fn;
    if (ch.tries >= DMAE_PRI_TRIES) return false;
    const credits = fn.priCredits;
    if (credits === 0) {
      // Held back until an answer frees credits; with none outstanding none will come.
      if (fn.priOutstanding === 0) return false;
      ch.state = WAIT_CREDIT;
      ch.status |= DMAE_STATUS_PRI_WAIT;
      return true;
    }
    const write = fn.faultWrite;
    const need = write ? 2 : exec && pasid >= 0 ? 4 : 1;
    const page = fn.faultAddr - fn.faultAddr % PAGE;
    const copy = (ch.cmd & DMAE_CMD_OP_MASK) === DMAE_OP_COPY;
    const buf = copy && !write ? ch.src : ch.dst;
    const end = toNumber64(buf[0], buf[1]) + ch.len;
    const pages = this.#pages;
    pages.length = 0;
    pages.push(page);
    const max = Math.min(this.#groupPages, credits);
    const atc = fn.atc!;
    for (let a = page + PAGE; pages.length < max && a < end; a += PAGE) {
      if (atc.lookup(pasid, a) && (atc.untranslatedOnly || (atc.perm & need) !== 0)) break;
      pages.push(a);
    }
    const token = ++ch.token;
    ch.state = WAIT_PRG;
    ch.page = page;
    ch.tries++;
    ch.status |= DMAE_STATUS_PRI_WAIT;
    const prgi = fn.pageRequestGroup(
      pages,
      !write,
      write,
      pasid,
      priv,
      exec && !write,
      (code) => this.#answered(ch, token, code),
    );
    if (prgi >= 0) return true;
    ch.state = RUN;
    ch.status &= ~DMAE_STATUS_PRI_WAIT;
    return false;
  }

  /** The response to the channel's page request group arrived. */
  #answered(ch: Channel, token: number, code: number): void {
    if (ch.state !== WAIT_PRG || ch.token !== token) return;
    ch.status &= ~DMAE_STATUS_PRI_WAIT;
    const now = this.#clock.now();
    if (code === PRG_RESPONSE_SUCCESS) {
      return this.#schedule(ch, now + DMAE_PRI_BACKOFF_NS * (ch.tries - 1), RUN);
    }
    ch.errLo = loOf(ch.page);
    ch.errHi = hiOf(ch.page);
    this.#end(ch, code === PRG_RESPONSE_INVALID ? DMAE_ERR_PRI_INVALID : DMAE_ERR_PRI_FAILURE, now);
  }

  /** `PASID_STOP`: ends every transfer of `pasid` and sends a Stop Marker for it. */
  #stopPasid(pasid: number): void {
    this.#stopped = pasid;
    const now = this.#clock.now();
    for (const ch of this.#ch) {
      this.#sync(ch);
      const mine = (ch.pasid & DMAE_PASID_PV) !== 0 && (ch.pasid & 0xf_ffff) === pasid;
      if (!mine || ch.state === IDLE || ch.state === ENDING) continue;
      ch.token++;
      this.#end(ch, DMAE_ERR_STOPPED, now);
    }
    this.fn.stopMarker(pasid);
  }

  #complete(ch: Channel): void {
    ch.state = IDLE;
    ch.status = ch.result === 0
      ? DMAE_STATUS_DONE
      : DMAE_STATUS_ERROR | (ch.result << DMAE_STATUS_ERR_SHIFT);
    if (ch.cmd & DMAE_CMD_IRQ_EN) this.fn.msix!.notify(ch.index);
  }
}
