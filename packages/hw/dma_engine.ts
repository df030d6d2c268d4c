/**
 * A PCIe DMA test engine: the target of the dmatest analog. Each channel copies or fills memory
 * by DMA through the root complex (so through the IOMMU, page by page) and signals completion
 * with its MSI-X vector.
 *
 * BAR0 (64-bit, 16 KiB) register map, all registers 32-bit:
 *
 * | Offset | Register |
 * |---|---|
 * | 0x000 | `VERSION` (RO) |
 * | 0x004 | `CHANNELS` (RO): number of channels |
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
 * | 0x18 | `PASID`: bit 31 PV, bit 30 privileged, 19:0 PASID (needs the PASID capability enabled) |
 * | 0x1C | `CMD`: 1:0 OP (1 COPY, 2 FILL), bit 8 IRQ_EN, bit 31 GO (starts; reads back 0) |
 * | 0x20 | `STATUS`: bit 0 BUSY, bit 1 DONE (RW1C), bit 2 ERROR (RW1C), 15:8 error code |
 * | 0x24 | `XFERRED`: bytes moved before completion or the error |
 * | 0x28 / 0x2C | `ERR_ADDR_LO` / `ERR_ADDR_HI`: bus address of the failed transaction |
 * | 0x30 | `ERR_CAUSE`: the IOMMU's fault cause, when the root complex aborted it |
 *
 * The data moves when GO is written (the IOMMU sees the transactions then); the channel stays
 * BUSY for the simulated transfer time (`dmaSetup` + `dmaPage` per page, from the clock's cost
 * table) and completes in a clock event, or as soon as a register read finds that time passed.
 * A write dropped by the IOMMU is posted and could not be seen by real PCIe hardware; this test
 * engine learns of it from the model and reports it, as dmatest wants to know. Overlapping
 * copies run forward, like `memcpy`. Register writes other than STATUS are ignored while BUSY.
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
import { PCI_PASID_CTRL, PCI_PASID_CTRL_PRIV } from "./pcie/config.ts";

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

/** `STATUS.BUSY`. */
export const DMAE_STATUS_BUSY = 1 << 0;
/** `STATUS.DONE` (RW1C). */
export const DMAE_STATUS_DONE = 1 << 1;
/** `STATUS.ERROR` (RW1C). */
export const DMAE_STATUS_ERROR = 1 << 2;
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
/** Error code: bad command (unknown OP, an address above 2^53, PASID not enabled). */
export const DMAE_ERR_CMD = 5;
/** Error code: an ATS completion granted no access (a PRI page request would be next). */
export const DMAE_ERR_ATS = 6;

/** Options of {@linkcode DmaEngine}. */
export interface DmaEngineOptions {
  /** The machine's clock. */
  clock: Clock;
  /** Number of channels, 1 to {@linkcode DMAE_MAX_CHANNELS}. Default 4. */
  channels?: number;
  /** Advertise ATS (the engine then uses its ATC when software enables ATS). */
  ats?: boolean;
  /** Advertise PASID (20 bits, privileged mode supported). */
  pasid?: boolean;
}

interface Channel {
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
  doneAt: number;
  event: number;
  result: number;
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

  /** Creates an idle engine; RangeError for a channel count the engine cannot have. */
  constructor(opts: DmaEngineOptions) {
    this.#clock = opts.clock;
    const channels = opts.channels ?? 4;
    if (!Number.isInteger(channels) || channels < 1 || channels > DMAE_MAX_CHANNELS) {
      throw new RangeError(`A DMA engine has 1 to ${DMAE_MAX_CHANNELS} channels, not ${channels}`);
    }
    this.channels = channels;
    for (let i = 0; i < this.channels; i++) {
      this.#ch.push({
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
        doneAt: 0,
        event: 0,
        result: 0,
      });
    }
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
      ats: opts.ats ? { invalidateQueueDepth: 0 } : undefined,
      pasid: opts.pasid ? { width: 20, priv: true } : undefined,
      name: "dma-engine",
    });
  }

  /** Reads a register (offsets within BAR0, below the MSI-X table). */
  read32(offset: number): number {
    this.#clock.charge(this.#clock.costs.mmio);
    if (offset === DMAE_REG_VERSION) return 0x0001_0000;
    if (offset === DMAE_REG_CHANNELS) return this.channels;
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
    }
    return 0;
  }

  /** Writes a register; GO in `CMD` starts the channel. */
  write32(offset: number, value: number): void {
    this.#clock.charge(this.#clock.costs.mmio);
    const ch = this.#channel(offset);
    if (ch === undefined) return;
    this.#sync(ch);
    const v = value >>> 0;
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
        ch.pasid = (v & (DMAE_PASID_PV | DMAE_PASID_PRIV | 0xf_ffff)) >>> 0;
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
    ch.errLo = ch.errHi = ch.errCause = 0;
    const pv = (ch.pasid & DMAE_PASID_PV) !== 0;
    const priv = (ch.pasid & DMAE_PASID_PRIV) !== 0;
    const pasidOk = !pv || (fn.pasidEnabled &&
      (!priv || (fn.config.get16(fn.pasidCap + PCI_PASID_CTRL) & PCI_PASID_CTRL_PRIV) !== 0));
    // Bus addresses are numbers in the model: above 2^53 they cannot be exact, so refuse them.
    if (
      (op !== DMAE_OP_COPY && op !== DMAE_OP_FILL) || ch.src[1] >= 0x20_0000 ||
      ch.dst[1] >= 0x20_0000 || !pasidOk
    ) {
      return this.#finishAt(ch, DMAE_ERR_CMD, 0);
    }
    const pasid = pv ? ch.pasid & 0xf_ffff : -1;
    const src = toNumber64(ch.src[0], ch.src[1]);
    const dst = toNumber64(ch.dst[0], ch.dst[1]);
    const done = op === DMAE_OP_COPY
      ? fn.dmaCopy(dst, src, ch.len, pasid, priv)
      : fn.dmaFill(dst, ch.len, ch.pattern, pasid, priv);
    ch.xferred = done;
    let err = 0;
    if (done < ch.len) {
      err = fn.faultKind === DMA_ERR_NO_MASTER
        ? DMAE_ERR_MASTER
        : fn.faultKind === DMA_ERR_BUS
        ? DMAE_ERR_BUS
        : fn.faultKind === DMA_ERR_ATS_DENIED
        ? DMAE_ERR_ATS
        : fn.faultWrite
        ? DMAE_ERR_WRITE
        : DMAE_ERR_READ;
      ch.errLo = loOf(fn.faultAddr);
      ch.errHi = hiOf(fn.faultAddr);
      ch.errCause = fn.faultKind === DMA_ERR_ABORT ? fn.faultCause : 0;
    }
    const pages = Math.ceil(done / 4096) + (err !== 0 ? 1 : 0);
    this.#finishAt(ch, err, pages);
  }

  /** Schedules completion after the transfer time of `pages` pages. */
  #finishAt(ch: Channel, err: number, pages: number): void {
    const costs = this.#clock.costs;
    ch.result = err;
    ch.doneAt = this.#clock.now() + costs.dmaSetup + pages * costs.dmaPage;
    ch.event = this.#clock.schedule(ch.doneAt, () => {
      ch.event = 0;
      this.#complete(ch);
    });
  }

  /** A register access after the completion time completes the channel without waiting for
   * the clock event (a driver polling STATUS sees progress as its reads cost time). */
  #sync(ch: Channel): void {
    if ((ch.status & DMAE_STATUS_BUSY) === 0 || this.#clock.now() < ch.doneAt) return;
    this.#clock.cancel(ch.event);
    ch.event = 0;
    this.#complete(ch);
  }

  #complete(ch: Channel): void {
    if ((ch.status & DMAE_STATUS_BUSY) === 0) return;
    ch.status = ch.result === 0
      ? DMAE_STATUS_DONE
      : DMAE_STATUS_ERROR | (ch.result << DMAE_STATUS_ERR_SHIFT);
    if (ch.cmd & DMAE_CMD_IRQ_EN) this.fn.msix!.notify(this.#ch.indexOf(ch));
  }
}
