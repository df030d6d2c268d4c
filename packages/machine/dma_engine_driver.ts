/**
 * The kernel driver of the machine's PCIe DMA test engine (1234:d3a0), in the shape of a Linux
 * dmaengine provider: each hardware channel is a {@linkcode DmaChan} that takes memcpy and
 * memset descriptors, runs them one at a time, and completes them from the channel's MSI-X
 * interrupt. dmatest and dma_map_benchmark analogs drive the channels; the addresses they give
 * are bus (DMA) addresses from the DMA API (`dma_map_page`...), so with an IOMMU in front they
 * are IOVAs.
 *
 * @module
 */
import {
  DMAE_CH_BASE,
  DMAE_CH_CMD,
  DMAE_CH_DST_HI,
  DMAE_CH_DST_LO,
  DMAE_CH_ERR_ADDR_HI,
  DMAE_CH_ERR_ADDR_LO,
  DMAE_CH_ERR_CAUSE,
  DMAE_CH_ERR_CPL,
  DMAE_CH_LEN,
  DMAE_CH_PASID,
  DMAE_CH_PATTERN,
  DMAE_CH_SRC_HI,
  DMAE_CH_SRC_LO,
  DMAE_CH_STATUS,
  DMAE_CH_STRIDE,
  DMAE_CH_XFERRED,
  DMAE_CMD_GO,
  DMAE_CMD_IRQ_EN,
  DMAE_DEVICE_ID,
  DMAE_OP_COPY,
  DMAE_OP_FILL,
  DMAE_PASID_EXEC,
  DMAE_PASID_PRIV,
  DMAE_PASID_PV,
  DMAE_PASID_STOP_GO,
  DMAE_REG_CHANNELS,
  DMAE_REG_PASID_STOP,
  DMAE_STATUS_BUSY,
  DMAE_STATUS_DONE,
  DMAE_STATUS_ERR_SHIFT,
  DMAE_STATUS_ERROR,
  DMAE_VENDOR_ID,
} from "@iommu-lab/hw/regs";
import {
  dev_get_drvdata,
  dev_info,
  dev_set_drvdata,
  devm_request_irq,
  dma_set_mask_and_coherent,
  Errno,
  type IoMem,
  IRQ_HANDLED,
  IRQ_NONE,
  pci_alloc_irq_vectors,
  PCI_IRQ_MSIX,
  pci_irq_vector,
  pci_set_master,
  type PciDev,
  type PciDriver,
  pcim_enable_device,
  pcim_iomap_region,
  readl,
  writel,
} from "@iommu-lab/kernel";
import { type Trace, TRACK_DMA } from "./trace.ts";

/** The driver's name, as dmesg prefixes its messages. */
export const DMA_ENGINE_DRIVER_NAME = "iommu-lab-dmae";

/**
 * What a descriptor's transactions carry besides the addresses: a PASID (and with it the
 * privileged and execute attributes); none by default.
 */
export interface DmaTxAttrs {
  /** PASID (20 bits) the transfer is tagged with; none when absent. */
  readonly pasid?: number;
  /** Privileged (supervisor) requests; needs a PASID. */
  readonly priv?: boolean;
  /** A memcpy's reads are reads for execute; needs a PASID. */
  readonly exec?: boolean;
}

/** Where a descriptor is in its life. */
export type DmaTxStatus = "prepared" | "queued" | "running" | "complete" | "error" | "timeout";

/**
 * One transfer (struct dma_async_tx_descriptor plus its result). Addresses are bus addresses
 * below 2^53.
 */
export interface DmaTx {
  /** The cookie {@linkcode DmaChan.submit} gave it (0 before). */
  cookie: number;
  /** Copy or fill. */
  readonly op: "memcpy" | "memset";
  /** Destination bus address. */
  readonly dst: number;
  /** Source bus address (memcpy). */
  readonly src: number;
  /** Bytes to move. */
  readonly len: number;
  /** 32-bit fill pattern (memset). */
  readonly pattern: number;
  /** PASID, privileged and execute attributes of its transactions. */
  readonly attrs: DmaTxAttrs;
  /** Called once when the transfer completes or fails (the dmaengine callback). */
  callback?: (tx: DmaTx) => void;
  /** Current state. */
  status: DmaTxStatus;
  /** Bytes the engine moved (all of `len` on success). */
  xferred: number;
  /** The engine's error code (`DMAE_ERR_*`), 0 on success. */
  error: number;
  /** Bus address of the failed transaction, on error. */
  errAddr: number;
  /** The IOMMU's fault cause the root complex reported, on error (0 if none). */
  errCause: number;
  /**
   * The PCIe completion status of the aborted request (`ERR_CPL`): 1 Unsupported Request, 4
   * Completer Abort, 0 when none was aborted.
   */
  errCpl: number;
  /** Simulated time the engine was started (ns). */
  startNs: number;
  /** Simulated time the completion was handled (ns). */
  doneNs: number;
}

/** Time to wait for a transfer before calling it timed out, in simulated µs (dmatest's 3 s). */
export const DMA_TX_TIMEOUT_US = 3_000_000;

/** What the channels wait on: the machine's clock (a hart idling in `wfi`). */
export interface IdleClock {
  /** Current simulated time in nanoseconds. */
  now(): number;
  /** Runs the next scheduled event (an interrupt being taken); false when none is scheduled. */
  advanceToNextEvent(): boolean;
  /** Lets `ns` pass. */
  advance(ns: number): void;
}

/** A channel's interrupt handler, for the driver's probe (private to this module). */
let _chan_irq: (chan: DmaChan) => 0 | 1;

/**
 * One hardware channel (struct dma_chan): a queue of descriptors the channel runs in order.
 *
 * @example Copying a buffer through the IOMMU (see the machine tests for a full run)
 * ```ts ignore
 * const chan = machine.dmaChannel(0);
 * const src = dma_map_page(chan.dev, srcPage, 0, 4096, DMA_TO_DEVICE);
 * const dst = dma_map_page(chan.dev, dstPage, 0, 4096, DMA_FROM_DEVICE);
 * const tx = chan.memcpy(dst, src, 4096);
 * assert.equal(tx.status, "complete");
 * ```
 */
export class DmaChan {
  /** `dma<engine>chan<index>`, as dmaengine names channels. */
  readonly name: string;
  /** Completed descriptors so far. */
  completed = 0;
  /** Failed descriptors so far. */
  failed = 0;

  readonly #io: IoMem;
  readonly #base: number;
  readonly #clock: IdleClock;
  readonly #trace: Trace | null;
  readonly #tid: number;
  readonly #queue: DmaTx[] = [];
  #running: DmaTx | null = null;
  #cookie = 0;

  /** Channel `index` of the engine `dev` mapped at `io`. */
  constructor(
    readonly dev: PciDev,
    readonly index: number,
    engine: number,
    io: IoMem,
    clock: IdleClock,
    trace: Trace | null,
  ) {
    this.name = `dma${engine}chan${index}`;
    this.#io = io;
    this.#base = DMAE_CH_BASE + index * DMAE_CH_STRIDE;
    this.#clock = clock;
    this.#trace = trace?.enabled ? trace : null;
    this.#tid = TRACK_DMA + 32 * engine + index;
    trace?.tracks.set(this.#tid, this.name);
  }

  /**
   * Mirrors dmaengine_prep_dma_memcpy(): a descriptor copying `len` bytes `src` → `dst`, its
   * transactions tagged as `attrs` says.
   */
  prepMemcpy(dst: number, src: number, len: number, attrs: DmaTxAttrs = {}): DmaTx {
    return _tx("memcpy", dst, src, len, 0, attrs);
  }

  /** Mirrors dmaengine_prep_dma_memset(): a descriptor filling `len` bytes with `pattern`. */
  prepMemset(dst: number, pattern: number, len: number, attrs: DmaTxAttrs = {}): DmaTx {
    return _tx("memset", dst, 0, len, pattern >>> 0, attrs);
  }

  /** Mirrors dmaengine_submit(): queues `tx`; returns its cookie. EINVAL if already submitted. */
  submit(tx: DmaTx): number {
    if (tx.status !== "prepared") throw new Errno("EINVAL", `${this.name}: descriptor reused`);
    tx.cookie = ++this.#cookie;
    tx.status = "queued";
    this.#queue.push(tx);
    return tx.cookie;
  }

  /** Mirrors dma_async_issue_pending(): starts the hardware if it is idle. */
  issuePending(): void {
    if (this.#running === null) this.#startNext();
  }

  /**
   * Mirrors dma_sync_wait(): lets simulated time pass (taking interrupts) until `tx` is done or
   * `timeoutUs` passed (`Infinity`: until nothing is left that could complete it); a transfer
   * still running then is marked `timeout`. Returns `tx`.
   */
  syncWait(tx: DmaTx, timeoutUs = DMA_TX_TIMEOUT_US): DmaTx {
    const deadline = this.#clock.now() + timeoutUs * 1000;
    while (!_done(tx) && this.#clock.now() < deadline) {
      const before = this.#clock.now();
      if (!this.#clock.advanceToNextEvent()) {
        // Nothing will ever complete it (its interrupt was lost): wait out the timeout; an
        // endless wait ends here, as a stopped dmatest thread's does.
        if (Number.isFinite(deadline)) this.#clock.advance(deadline - before);
        break;
      }
      // Events at the current instant only: give the CPU one tick so time always moves.
      if (this.#clock.now() === before) this.#clock.advance(1);
    }
    if (!_done(tx)) {
      tx.status = "timeout";
      if (this.#running === tx) this.#running = null;
      const i = this.#queue.indexOf(tx);
      if (i >= 0) this.#queue.splice(i, 1);
    }
    return tx;
  }

  /** Copies `len` bytes from bus address `src` to `dst` and waits for it (prep, submit, issue, wait). */
  memcpy(dst: number, src: number, len: number, attrs: DmaTxAttrs = {}): DmaTx {
    const tx = this.prepMemcpy(dst, src, len, attrs);
    this.submit(tx);
    this.issuePending();
    return this.syncWait(tx);
  }

  /** Fills `len` bytes at bus address `dst` with `pattern` and waits for it. */
  memset(dst: number, pattern: number, len: number, attrs: DmaTxAttrs = {}): DmaTx {
    const tx = this.prepMemset(dst, pattern, len, attrs);
    this.submit(tx);
    this.issuePending();
    return this.syncWait(tx);
  }

  static {
    _chan_irq = (chan) => chan.#irq();
  }

  /** The channel's interrupt: completes the running descriptor and starts the next. */
  #irq(): 0 | 1 {
    const status = readl(this.#io, this.#base + DMAE_CH_STATUS);
    if (!(status & (DMAE_STATUS_DONE | DMAE_STATUS_ERROR))) return IRQ_NONE;
    const tx = this.#running;
    const r = (off: number) => readl(this.#io, this.#base + off);
    if (tx !== null) {
      tx.xferred = r(DMAE_CH_XFERRED);
      if (status & DMAE_STATUS_ERROR) {
        tx.error = (status >>> DMAE_STATUS_ERR_SHIFT) & 0xff;
        tx.errAddr = r(DMAE_CH_ERR_ADDR_HI) * 4294967296 + r(DMAE_CH_ERR_ADDR_LO);
        tx.errCause = r(DMAE_CH_ERR_CAUSE);
        tx.errCpl = r(DMAE_CH_ERR_CPL);
        tx.status = "error";
        this.failed++;
      } else {
        tx.status = "complete";
        this.completed++;
      }
      tx.doneNs = this.#clock.now();
    }
    writel(this.#io, this.#base + DMAE_CH_STATUS, status & (DMAE_STATUS_DONE | DMAE_STATUS_ERROR));
    this.#running = null;
    if (tx !== null) {
      this.#trace?.complete("dma", tx.op, this.#tid, tx.startNs, {
        dst: tx.dst,
        src: tx.src,
        len: tx.len,
        xferred: tx.xferred,
        error: tx.error,
      });
      tx.callback?.(tx);
    }
    this.#startNext();
    return IRQ_HANDLED;
  }

  #startNext(): void {
    const tx = this.#queue.shift();
    if (tx === undefined) return;
    if (readl(this.#io, this.#base + DMAE_CH_STATUS) & DMAE_STATUS_BUSY) {
      // A transfer that timed out is still moving: wait for its interrupt.
      this.#queue.unshift(tx);
      return;
    }
    const w = (off: number, v: number) => writel(this.#io, this.#base + off, v);
    w(DMAE_CH_SRC_LO, tx.src % 4294967296);
    w(DMAE_CH_SRC_HI, Math.floor(tx.src / 4294967296));
    w(DMAE_CH_DST_LO, tx.dst % 4294967296);
    w(DMAE_CH_DST_HI, Math.floor(tx.dst / 4294967296));
    w(DMAE_CH_LEN, tx.len);
    w(DMAE_CH_PATTERN, tx.pattern);
    const a = tx.attrs;
    w(
      DMAE_CH_PASID,
      a.pasid === undefined ? 0 : (DMAE_PASID_PV | (a.priv ? DMAE_PASID_PRIV : 0) |
        (a.exec ? DMAE_PASID_EXEC : 0) | (a.pasid & 0xf_ffff)) >>> 0,
    );
    tx.status = "running";
    tx.startNs = this.#clock.now();
    this.#running = tx;
    const op = tx.op === "memcpy" ? DMAE_OP_COPY : DMAE_OP_FILL;
    w(DMAE_CH_CMD, (DMAE_CMD_GO | DMAE_CMD_IRQ_EN | op) >>> 0);
  }
}

function _tx(
  op: "memcpy" | "memset",
  dst: number,
  src: number,
  len: number,
  pattern: number,
  attrs: DmaTxAttrs,
): DmaTx {
  if (!Number.isInteger(len) || len <= 0 || len > 0xffff_ffff) {
    throw new Errno("EINVAL", `Bad DMA length ${len}`);
  }
  const { pasid } = attrs;
  if (pasid === undefined ? attrs.priv || attrs.exec : !(pasid >= 0 && pasid < 2 ** 20)) {
    throw new Errno("EINVAL", `Bad DMA PASID attributes`);
  }
  return {
    cookie: 0,
    op,
    dst,
    src,
    len,
    pattern,
    attrs,
    status: "prepared",
    xferred: 0,
    error: 0,
    errAddr: 0,
    errCause: 0,
    errCpl: 0,
    startNs: 0,
    doneNs: 0,
  };
}

function _done(tx: DmaTx): boolean {
  return tx.status === "complete" || tx.status === "error";
}

/** What the driver keeps per bound engine (dev_get_drvdata of the engine's PciDev). */
export interface DmaEngineData {
  /** Engine number (the `N` of `dmaNchanM`). */
  readonly id: number;
  /** The channels. */
  readonly chans: readonly DmaChan[];
  /** BAR0. */
  readonly io: IoMem;
}

/** The channels of a bound engine, or an empty list for any other device. */
export function dma_engine_chans(pdev: PciDev): readonly DmaChan[] {
  return pdev.driver?.name === DMA_ENGINE_DRIVER_NAME
    ? dev_get_drvdata<DmaEngineData>(pdev).chans
    : [];
}

/**
 * Stops the bound engine's traffic with `pasid`, as a driver does before the PASID is torn down:
 * the engine ends the transfers tagged with it (error `DMAE_ERR_STOPPED`, completed through their
 * interrupts as usual) and, with PRI enabled, sends a Stop Marker for it. EINVAL for a device the
 * driver is not bound to or a PASID wider than 20 bits.
 */
export function dma_engine_stop_pasid(pdev: PciDev, pasid: number): void {
  if (pdev.driver?.name !== DMA_ENGINE_DRIVER_NAME || !(pasid >= 0 && pasid < 2 ** 20)) {
    throw new Errno("EINVAL", `${pdev.name}: cannot stop PASID ${pasid}`);
  }
  writel(
    dev_get_drvdata<DmaEngineData>(pdev).io,
    DMAE_REG_PASID_STOP,
    (DMAE_PASID_STOP_GO | pasid) >>> 0,
  );
}

/**
 * The PCI driver of the DMA test engine: enables the function, maps BAR0, sets a 64-bit DMA
 * mask, allocates one MSI-X vector per channel and creates the channels. Engines are numbered in
 * bind order per driver instance (one instance per kernel).
 */
export function dma_engine_driver(clock: IdleClock, trace: Trace | null): PciDriver {
  let engines = 0;
  return {
    name: DMA_ENGINE_DRIVER_NAME,
    idTable: [{ vendor: DMAE_VENDOR_ID, device: DMAE_DEVICE_ID }],
    probe(pdev: PciDev): void {
      pcim_enable_device(pdev);
      const io = pcim_iomap_region(pdev, 0);
      pci_set_master(pdev);
      dma_set_mask_and_coherent(pdev, 64);
      const n = readl(io, DMAE_REG_CHANNELS);
      // pcim_enable_device() made the device managed: devres frees the vectors at unbind.
      pci_alloc_irq_vectors(pdev, n, n, PCI_IRQ_MSIX);
      const id = engines++;
      const chans: DmaChan[] = [];
      for (let i = 0; i < n; i++) {
        const chan = new DmaChan(pdev, i, id, io, clock, trace);
        devm_request_irq(pdev, pci_irq_vector(pdev, i), () => _chan_irq(chan), 0, chan.name, chan);
        chans.push(chan);
      }
      dev_set_drvdata(pdev, { id, chans, io } satisfies DmaEngineData);
      dev_info(pdev, `${n} channels, dma${id}chan0..${n - 1}`);
    },
  };
}
