/**
 * dmatest: an analog of Linux's `drivers/dma/dmatest.c` on the machine's PCIe DMA test engine,
 * with every buffer reached through the DMA API of the engine (so through the IOMMU).
 *
 * Each test thread owns a source and a destination buffer of `test_buf_size` bytes from the page
 * allocator. Per iteration it picks a length and offsets (random unless `norandom` or
 * `transfer_size`), writes the
 * dmatest patterns into both buffers, maps them with `dma_map_page` (source `DMA_TO_DEVICE`,
 * destination `DMA_BIDIRECTIONAL`, as Linux does), submits a memcpy (or memset) descriptor, waits
 * for its completion interrupt, unmaps, and verifies that:
 *
 * - the source is untouched,
 * - the destination region holds the copied (or filled) bytes,
 * - the destination bytes before and after the region are untouched.
 *
 * With `coherent` the buffers come from `dma_alloc_coherent` instead and stay mapped.
 *
 * Threads are simulated: in each round every thread prepares and submits its descriptor, then
 * all wait, so channels run in parallel in simulated time and threads of one channel queue on it.
 * Rates are in simulated time. The thread's run time excludes the CPU's pattern fill and compare,
 * as Linux subtracts them: they go to the bus directly, outside simulated time, while mapping,
 * unmapping and waiting cost what the machine charges. The real (wall-clock) time of the whole run
 * is reported beside them.
 *
 * Messages go to dmesg with the kernel's wording (`dmatest: dma0chan0-copy0: summary 1 tests,
 * 0 failures 3412.23 iops 27312 KB/s (0)`).
 *
 * CLI: `deno run -A tools/dma/dmatest.ts --iterations 10 --test_buf_size 4096 --threads_per_chan 2`
 * (`--help` lists the options) boots the default machine, runs, and prints dmatest's dmesg lines.
 *
 * @module
 */
import {
  dma_alloc_coherent,
  DMA_BIDIRECTIONAL,
  dma_free_coherent,
  dma_map_page,
  DMA_TO_DEVICE,
  dma_unmap_page,
  Errno,
  get_order,
  hex,
  isErrno,
  type Kernel,
  type PciDev,
  pr_info,
  pr_warn,
  string_get_size,
} from "@iommu-lab/kernel";
import type { DmaChan, DmaTx, Machine } from "@iommu-lab/machine";
import { bootMachine, MACHINE_OPTIONS } from "./_machine.ts";
import { type CliValues, refusedAsUsage, runTool, type Tool } from "../cli.ts";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { RandomGenerator } from "pure-rand/types/RandomGenerator";

/** Source bytes carry this bit. */
export const PATTERN_SRC = 0x80;
/** Destination bytes carry no source bit. */
export const PATTERN_DST = 0x00;
/** Source bytes inside the region to copy carry this bit. */
export const PATTERN_COPY = 0x40;
/** Destination bytes inside the region to overwrite carry this bit. */
export const PATTERN_OVERWRITE = 0x20;
/** The low bits of a pattern byte: the inverted byte index, so shifted copies show up. */
export const PATTERN_COUNT_MASK = 0x1f;
/** At most this many mismatches are printed per buffer; the rest are counted. */
export const MAX_ERROR_COUNT = 32;

/** Parameters, named as the dmatest module's. */
export interface DmatestOptions {
  /** Iterations per thread (the module's 0 = "until stopped" is not supported). Default 10. */
  iterations?: number;
  /** Size of each thread's source and destination buffers in bytes. Default 16384. */
  test_buf_size?: number;
  /** Threads per channel. Default 1. */
  threads_per_chan?: number;
  /** Use at most this many channels (0: all). Default 0. */
  max_channels?: number;
  /** Use only the channel with this name (`dma0chan1`); empty: any. */
  channel?: string;
  /** Skip filling and verifying the buffers. */
  noverify?: boolean;
  /** Offsets 0 and, without `transfer_size`, the whole buffer: no random lengths or offsets. */
  norandom?: boolean;
  /** Length of every transfer, below `test_buf_size` (0: random, or the buffer with `norandom`). */
  transfer_size?: number;
  /**
   * log2 of the alignment of lengths and offsets; -1 (as the module's default) takes the
   * engine's, which needs none. Default -1.
   */
  alignment?: number;
  /** `copy` (DMA_MEMCPY, threads named `-copyN`) or `fill` (DMA_MEMSET, `-memsetN`). */
  mode?: "copy" | "fill";
  /** Buffers from `dma_alloc_coherent` (mapped once) instead of `dma_map_page` per iteration. */
  coherent?: boolean;
  /** Completion timeout in ms of simulated time; -1 waits forever, as in Linux. Default 3000. */
  timeout?: number;
  /** Log every result, passed ones too. */
  verbose?: boolean;
  /** Seed of the random lengths and offsets. Default 1. */
  seed?: number;
  /**
   * Fault injection: called after a descriptor's buffers are mapped and before it is prepared.
   * It may poison memory or change `info.srcDma` / `info.dstDma` (to an unmapped IOVA, say) or
   * `info.len`.
   */
  inject?: (info: DmatestInjectInfo) => void;
}

/** What {@linkcode DmatestOptions.inject} sees (and may change) for one descriptor. */
export interface DmatestInjectInfo {
  /** Thread name, `dma0chan0-copy0`. */
  readonly thread: string;
  /** Iteration, from 0. */
  readonly iteration: number;
  /** The channel's device. */
  readonly dev: PciDev;
  /** Physical address of the source buffer (fill: 0). */
  readonly srcPhys: number;
  /** Physical address of the destination buffer. */
  readonly dstPhys: number;
  /** Bus address the source region starts at (fill: 0). */
  srcDma: number;
  /** Bus address the destination region starts at. */
  dstDma: number;
  /** Bytes to move (more makes the engine overrun the region dmatest verifies). */
  len: number;
}

/** The outcome of one thread. */
export interface DmatestThreadResult {
  /** `dma0chan0-copy0`. */
  readonly name: string;
  /** Tests run. */
  readonly tests: number;
  /** Tests failed. */
  readonly failures: number;
  /** Bytes the tests asked to move (failed ones included, as the kernel counts `total_len`). */
  readonly bytes: number;
  /** The thread's run time in simulated ns. */
  readonly simNs: number;
  /** Tests per second of simulated time. */
  readonly iops: number;
  /** KiB per second of simulated time (the kernel's `KB/s`). */
  readonly kbps: number;
  /** The thread's return value: 0, or the negative errno that kept it from starting. */
  readonly ret: number;
}

/** The outcome of a run. */
export interface DmatestResult {
  /** One per thread, in channel then thread order. */
  readonly threads: readonly DmatestThreadResult[];
  /** Tests run by all threads. */
  readonly tests: number;
  /** Tests failed by all threads. */
  readonly failures: number;
  /** Bytes moved by all threads. */
  readonly bytes: number;
  /** Simulated time from the first start to the last completion, ns. */
  readonly simNs: number;
  /** Wall-clock time of the run, ms. */
  readonly realMs: number;
  /** The dmesg lines dmatest printed (without timestamps). */
  readonly log: readonly string[];
}

interface _Thread {
  name: string;
  chan: DmaChan;
  srcPhys: number;
  dstPhys: number;
  srcDmaBase: number;
  dstDmaBase: number;
  order: number;
  tests: number;
  failures: number;
  bytes: number;
  startNs: number;
  endNs: number;
  ret: number;
  // Per-iteration state.
  len: number;
  srcOff: number;
  dstOff: number;
  fill: number;
  srcMap: number;
  dstMap: number;
  tx: DmaTx | null;
}

/**
 * Runs dmatest on the DMA engine channels of `machine` and returns the per-thread results.
 *
 * Throws `ENODEV` when no channel matches, `EINVAL` for bad parameters; failures of tests are
 * results, not exceptions. Every page and mapping is returned before it returns.
 *
 * @example Ten copies on every channel through the platform IOMMU
 * ```ts
 * import assert from "node:assert/strict";
 * import { Machine, riscvIommu } from "@iommu-lab/machine";
 * import { runDmatest } from "./dmatest.ts";
 *
 * const machine = Machine.boot({ iommu: riscvIommu({ features: [] }), iommuBus: "platform" });
 * const r = runDmatest(machine, { iterations: 10, test_buf_size: 4096 });
 * assert.equal(r.failures, 0);
 * assert.match(r.log.at(-1)!, /^dmatest: dma0chan3-copy0: summary 10 tests, 0 failures /);
 * ```
 */
export function runDmatest(machine: Machine, opts: DmatestOptions = {}): DmatestResult {
  const kernel = machine.kernel;
  // Linux subtracts the pattern fill and compare from each thread's run time; here the CPU does
  // them on the bus directly, outside simulated time, which leaves the same rates.
  const ram = machine.silicon.mem;
  const iterations = opts.iterations ?? 10;
  const bufSize = opts.test_buf_size ?? 16384;
  const perChan = opts.threads_per_chan ?? 1;
  const alignment = opts.alignment ?? -1;
  const mode = opts.mode ?? "copy";
  const xferSize = opts.transfer_size ?? 0;
  const timeout = opts.timeout ?? 3000;
  _check(Number.isInteger(iterations) && iterations > 0, "iterations must be at least 1");
  _check(
    Number.isInteger(bufSize) && bufSize > 0 && bufSize <= 4 << 20,
    `test_buf_size ${bufSize} is not 1 to 4194304 bytes`,
  );
  _check(Number.isInteger(perChan) && perChan > 0, "threads_per_chan must be at least 1");
  _check(Number.isInteger(alignment) && alignment >= -1, `bad alignment ${alignment}`);
  const align = Math.max(0, alignment);
  // 2 ** align, not 1 << align: a shift by 40 wraps to 256 and would pass.
  _check(2 ** align <= bufSize, `${bufSize}-byte buffer too small for 2^${align}-byte alignment`);
  _check(
    Number.isInteger(xferSize) && xferSize >= 0 && xferSize < bufSize &&
      xferSize % 2 ** align === 0,
    "transfer_size must be lower than test_buf_size and aligned",
  );
  _check(Number.isInteger(timeout) && timeout >= -1, `bad timeout ${timeout}`);
  const timeoutUs = timeout === -1 ? Infinity : timeout * 1000;
  _check(mode === "copy" || mode === "fill", `unknown mode ${mode}`);

  let chans = machine.dmaChannels();
  if (opts.channel) chans = chans.filter((c) => c.name === opts.channel);
  if (opts.max_channels) chans = chans.slice(0, opts.max_channels);
  if (chans.length === 0) throw new Errno("ENODEV", "no DMA channel matches");

  const logStart = kernel.dmesg.records().length;
  const realStart = performance.now();
  const rng = xoroshiro128plus(opts.seed ?? 1);
  const op = mode === "copy" ? "copy" : "memset";
  const order = get_order(bufSize);
  const threads: _Thread[] = [];
  try {
    for (const chan of chans) {
      for (let i = 0; i < perChan; i++) {
        threads.push(_threadAlloc(kernel, chan, `${chan.name}-${op}${i}`, order, bufSize, opts));
      }
      pr_info(kernel, `dmatest: Added ${perChan} threads using ${chan.name}`);
    }
    for (const chan of chans) {
      pr_info(kernel, `dmatest: Started ${perChan} threads using ${chan.name}`);
    }

    // Pattern images: the base patterns and the buffers the CPU writes each iteration.
    const srcBase = new Uint8Array(bufSize);
    const dstBase = new Uint8Array(bufSize);
    for (let i = 0; i < bufSize; i++) {
      srcBase[i] = PATTERN_SRC | (~i & PATTERN_COUNT_MASK);
      dstBase[i] = PATTERN_DST | (~i & PATTERN_COUNT_MASK);
    }
    const srcImg = new Uint8Array(bufSize);
    const dstImg = new Uint8Array(bufSize);
    const expect = new Uint8Array(bufSize);

    for (const t of threads) t.startNs = kernel.clock.now();
    for (let it = 0; it < iterations; it++) {
      for (const t of threads) {
        if (t.ret !== 0) continue;
        _pick(t, rng, bufSize, align, xferSize, opts.norandom ?? false, it);
        if (!opts.noverify) {
          _initSrc(t, srcImg, srcBase, mode);
          if (mode === "copy") ram.writeBytes(t.srcPhys, srcImg);
          dstImg.set(dstBase);
          for (let i = t.dstOff; i < t.dstOff + t.len; i++) dstImg[i] |= PATTERN_OVERWRITE;
          ram.writeBytes(t.dstPhys, dstImg);
        }
        _submit(t, mode, opts, it);
      }
      for (const t of threads) t.chan.issuePending();
      for (const t of threads) {
        if (t.ret !== 0) continue;
        const tx = t.tx;
        if (tx !== null) t.chan.syncWait(tx, timeoutUs);
        _unmap(t, mode, opts);
        t.tests++;
        t.endNs = kernel.clock.now();
        if (tx === null) continue; // mapping or prep failed: already counted
        if (tx.status !== "complete") {
          t.failures++;
          _result(
            kernel,
            t,
            tx.status === "timeout" ? "test timed out" : "completion error status",
            tx.status === "timeout" ? 0 : tx.error,
          );
          continue;
        }
        if (opts.noverify) {
          if (opts.verbose) _result(kernel, t, "test passed", 0);
          continue;
        }
        _initSrc(t, srcImg, srcBase, mode);
        expect.set(dstBase);
        if (mode === "copy") {
          expect.set(srcImg.subarray(t.srcOff, t.srcOff + t.len), t.dstOff);
        } else {
          expect.fill(t.fill, t.dstOff, t.dstOff + t.len);
        }
        let errors = 0;
        if (mode === "copy") {
          errors += _verify(kernel, t, "srcbuf", ram.readBytes(t.srcPhys, bufSize), srcImg);
        }
        errors += _verify(kernel, t, "dstbuf", ram.readBytes(t.dstPhys, bufSize), expect);
        if (errors > 0) {
          t.failures++;
          _result(kernel, t, "data error", errors);
        } else if (opts.verbose) {
          _result(kernel, t, "test passed", 0);
        }
      }
    }
  } finally {
    for (const t of threads) _threadFree(kernel, t, bufSize, opts);
  }

  const out: DmatestThreadResult[] = [];
  let first = Infinity;
  let last = 0;
  for (const t of threads) {
    const simNs = Math.max(1, t.endNs - t.startNs);
    first = Math.min(first, t.startNs);
    last = Math.max(last, t.endNs);
    const iops = t.tests * 1e9 / simNs;
    const kbps = Math.floor(Math.floor(t.bytes / 1024) * 1e9 / simNs);
    pr_info(
      kernel,
      `dmatest: ${t.name}: summary ${t.tests} tests, ${t.failures} failures ${
        iops.toFixed(2)
      } iops ${kbps} KB/s (${t.ret})`,
    );
    out.push({
      name: t.name,
      tests: t.tests,
      failures: t.failures,
      bytes: t.bytes,
      simNs,
      iops,
      kbps,
      ret: t.ret,
    });
  }
  return {
    threads: out,
    tests: out.reduce((s, t) => s + t.tests, 0),
    failures: out.reduce((s, t) => s + t.failures, 0),
    bytes: out.reduce((s, t) => s + t.bytes, 0),
    simNs: Math.max(0, last - first),
    realMs: performance.now() - realStart,
    log: kernel.dmesg.records().slice(logStart).map((r) => r.text).filter((l) =>
      l.startsWith("dmatest: ")
    ),
  };
}

function _check(ok: boolean, msg: string): void {
  if (!ok) throw new Errno("EINVAL", msg);
}

function _threadAlloc(
  kernel: Kernel,
  chan: DmaChan,
  name: string,
  order: number,
  size: number,
  opts: DmatestOptions,
): _Thread {
  const t: _Thread = {
    name,
    chan,
    srcPhys: 0,
    dstPhys: 0,
    srcDmaBase: 0,
    dstDmaBase: 0,
    order,
    tests: 0,
    failures: 0,
    bytes: 0,
    startNs: 0,
    endNs: 0,
    ret: 0,
    len: 0,
    srcOff: 0,
    dstOff: 0,
    fill: 0,
    srcMap: 0,
    dstMap: 0,
    tx: null,
  };
  // A thread that cannot get its buffers reports the errno in its summary, as the kernel's does.
  try {
    if (opts.coherent) {
      const src = dma_alloc_coherent(chan.dev, size);
      t.srcPhys = src.cpuAddr;
      t.srcDmaBase = src.dmaAddr;
      const dst = dma_alloc_coherent(chan.dev, size);
      t.dstPhys = dst.cpuAddr;
      t.dstDmaBase = dst.dmaAddr;
    } else {
      t.srcPhys = kernel.pages.alloc(order);
      t.dstPhys = kernel.pages.alloc(order);
    }
  } catch (e) {
    if (!isErrno(e)) throw e;
    t.ret = -e.errno;
  }
  return t;
}

function _threadFree(kernel: Kernel, t: _Thread, size: number, opts: DmatestOptions): void {
  if (opts.coherent) {
    if (t.srcPhys) {
      dma_free_coherent(t.chan.dev, size, { cpuAddr: t.srcPhys, dmaAddr: t.srcDmaBase });
    }
    if (t.dstPhys) {
      dma_free_coherent(t.chan.dev, size, { cpuAddr: t.dstPhys, dmaAddr: t.dstDmaBase });
    }
  } else {
    if (t.srcPhys) kernel.pages.free(t.srcPhys, t.order);
    if (t.dstPhys) kernel.pages.free(t.dstPhys, t.order);
  }
}

/** Picks the length and offsets of the next test, as dmatest does. */
function _pick(
  t: _Thread,
  rng: RandomGenerator,
  bufSize: number,
  align: number,
  xferSize: number,
  norandom: boolean,
  it: number,
): void {
  if (xferSize) {
    t.len = xferSize;
  } else {
    t.len = norandom ? bufSize : uniformInt(rng, 1, bufSize);
    t.len = (t.len >>> align) << align || 1 << align;
  }
  if (norandom) {
    t.srcOff = t.dstOff = 0;
  } else {
    t.srcOff = ((uniformInt(rng, 0, bufSize - t.len)) >>> align) << align;
    t.dstOff = ((uniformInt(rng, 0, bufSize - t.len)) >>> align) << align;
  }
  t.bytes += t.len;
  // A fill value that changes per iteration, so a stale destination cannot pass.
  t.fill = PATTERN_SRC | PATTERN_COPY | (~it & PATTERN_COUNT_MASK);
}

function _initSrc(t: _Thread, img: Uint8Array, base: Uint8Array, mode: "copy" | "fill"): void {
  img.set(base);
  if (mode === "copy") { for (let i = t.srcOff; i < t.srcOff + t.len; i++) img[i] |= PATTERN_COPY; }
}

/** Maps the buffers (unless coherent), prepares and submits the descriptor. */
function _submit(t: _Thread, mode: "copy" | "fill", opts: DmatestOptions, it: number): void {
  const dev = t.chan.dev;
  const size = 4096 << t.order;
  t.tx = null;
  t.srcMap = t.dstMap = -1;
  try {
    if (opts.coherent) {
      t.srcMap = t.srcDmaBase;
      t.dstMap = t.dstDmaBase;
    } else {
      if (mode === "copy") t.srcMap = dma_map_page(dev, t.srcPhys, 0, size, DMA_TO_DEVICE);
      t.dstMap = dma_map_page(dev, t.dstPhys, 0, size, DMA_BIDIRECTIONAL);
    }
  } catch (e) {
    if (!isErrno(e)) throw e;
    t.failures++;
    _result(t.chan.dev.kernel, t, "dma mapping error", -e.errno);
    return;
  }
  const info: DmatestInjectInfo = {
    thread: t.name,
    iteration: it,
    dev,
    srcPhys: mode === "copy" ? t.srcPhys : 0,
    dstPhys: t.dstPhys,
    srcDma: mode === "copy" ? t.srcMap + t.srcOff : 0,
    dstDma: t.dstMap + t.dstOff,
    len: t.len,
  };
  opts.inject?.(info);
  let tx: DmaTx;
  try {
    tx = mode === "copy"
      ? t.chan.prepMemcpy(info.dstDma, info.srcDma, info.len)
      : t.chan.prepMemset(info.dstDma, t.fill * 0x01010101, info.len);
  } catch (e) {
    if (!isErrno(e)) throw e;
    t.failures++;
    _result(t.chan.dev.kernel, t, "prep error", -e.errno);
    return;
  }
  t.chan.submit(tx);
  t.tx = tx;
}

function _unmap(t: _Thread, mode: "copy" | "fill", opts: DmatestOptions): void {
  if (opts.coherent) return;
  const dev = t.chan.dev;
  const size = 4096 << t.order;
  if (mode === "copy" && t.srcMap >= 0) dma_unmap_page(dev, t.srcMap, size, DMA_TO_DEVICE);
  if (t.dstMap >= 0) dma_unmap_page(dev, t.dstMap, size, DMA_BIDIRECTIONAL);
  t.srcMap = t.dstMap = -1;
}

function _result(kernel: Kernel, t: _Thread, msg: string, data: number): void {
  pr_info(
    kernel,
    `dmatest: ${t.name}: result #${t.tests}: '${msg}' with src_off=${hex(t.srcOff)} dst_off=${
      hex(t.dstOff)
    } len=${hex(t.len)} (${data})`,
  );
}

/**
 * Compares a buffer read back with what it should hold; prints the first mismatches in
 * dmatest's wording and returns how many bytes differ.
 */
function _verify(
  kernel: Kernel,
  t: _Thread,
  which: "srcbuf" | "dstbuf",
  got: Uint8Array,
  want: Uint8Array,
): number {
  if (_equal(got, want)) return 0;
  let errors = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    if (errors < MAX_ERROR_COUNT) {
      const diff = got[i] ^ want[i];
      const what = which === "srcbuf"
        ? "overwritten"
        : (want[i] & PATTERN_COPY && diff & (PATTERN_COPY | PATTERN_OVERWRITE))
        ? "not copied"
        : diff & PATTERN_SRC
        ? "was copied"
        : "mismatch";
      // dmatest_mismatch(): "%s: %s[0x%x] %s! Expected %02x, got %02x"
      const x2 = (v: number) => hex(v, 2, "");
      pr_warn(
        kernel,
        `dmatest: ${t.name}: ${which}[${hex(i)}] ${what}! Expected ${x2(want[i])}, got ${
          x2(got[i])
        }`,
      );
    }
    errors++;
  }
  if (errors > MAX_ERROR_COUNT) {
    pr_warn(kernel, `dmatest: ${t.name}: ${errors - MAX_ERROR_COUNT} errors suppressed`);
  }
  return errors;
}

/** Whole-buffer equality, four bytes at a time where the length allows. */
function _equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const n = a.length & ~3;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const a32 = new Uint32Array(a.buffer, a.byteOffset, n / 4);
    const b32 = new Uint32Array(b.buffer, b.byteOffset, n / 4);
    for (let i = 0; i < a32.length; i++) if (a32[i] !== b32[i]) return false;
  } else {
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  }
  for (let i = n; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** dmatest's module parameters, as command-line options. */
export const DMATEST_PARAMS = {
  "iterations": { type: "int", default: 10, min: 1, help: "tests per thread" },
  "test_buf_size": { type: "int", default: 16384, min: 1, max: 4 << 20, help: "bytes per buffer" },
  "threads_per_chan": { type: "int", default: 1, min: 1, help: "threads per channel" },
  "max_channels": { type: "int", default: 0, help: "use at most N channels (0: all)" },
  "channel": { type: "string", arg: "NAME", help: "only this channel (dma0chan1)" },
  "dmatest": { type: "string", choices: ["0", "1"], help: "0 memcpy, 1 memset (as --mode)" },
  "mode": { type: "string", default: "copy", choices: ["copy", "fill"], help: "what to test" },
  "noverify": { type: "boolean", help: "do not fill or verify buffers" },
  "norandom": { type: "boolean", help: "whole buffer (or --transfer_size) at offset 0" },
  "transfer_size": { type: "int", default: 0, help: "bytes per transfer with --norandom" },
  "alignment": {
    type: "int",
    default: -1,
    min: -1,
    help: "log2 alignment of lengths and offsets (-1: the engine's)",
  },
  "coherent": { type: "boolean", help: "buffers from dma_alloc_coherent, mapped once" },
  "timeout": {
    type: "int",
    default: 3000,
    min: -1,
    arg: "MS",
    help: "completion timeout, simulated ms (-1: wait forever)",
  },
  "seed": { type: "int", default: 1, max: 0xffff_ffff, help: "seed of lengths and offsets" },
  "verbose": { type: "boolean", help: "print passed results too" },
} as const;

/** dmatest's options: the module's parameters, then the machine's. */
export const DMATEST_OPTIONS = {
  ...DMATEST_PARAMS,
  "dmesg": { type: "boolean", help: "print the whole kernel log, boot included" },
  ...MACHINE_OPTIONS,
} as const;

/** The {@linkcode runDmatest} options the module parameters `v` stand for. */
export function dmatestOptions(v: CliValues<typeof DMATEST_PARAMS>): DmatestOptions {
  return {
    iterations: v.iterations,
    test_buf_size: v.test_buf_size,
    threads_per_chan: v.threads_per_chan,
    max_channels: v.max_channels,
    channel: v.channel,
    noverify: v.noverify,
    norandom: v.norandom,
    transfer_size: v.transfer_size,
    alignment: v.alignment,
    mode: v.dmatest === undefined ? v.mode : v.dmatest === "1" ? "fill" : "copy",
    coherent: v.coherent,
    timeout: v.timeout,
    seed: v.seed,
    verbose: v.verbose,
  };
}

/**
 * The command line: boots a machine from the options, runs dmatest, prints its dmesg lines and
 * the simulated and real time. Exit status 1 when a test failed.
 */
export const cli: Tool<typeof DMATEST_OPTIONS> = {
  usage: "deno run -A tools/dma/dmatest.ts [options]",
  summary:
    "Runs dmatest on the DMA test engine's channels through the IOMMU and prints its dmesg lines.",
  options: DMATEST_OPTIONS,
  main(v, io) {
    const machine = bootMachine(v);
    // What the module's parameter checks refuse is a bad argument here.
    const r = refusedAsUsage(["EINVAL", "ENODEV"], () => runDmatest(machine, dmatestOptions(v)));
    const lines = v.dmesg
      ? machine.dmesg
      : machine.kernel.dmesg.lines().filter((l) => /\] (dmatest: |.*: Fault )/.test(l));
    for (const l of lines) io.out(l);
    io.out(
      `dmatest: ${r.tests} tests, ${r.failures} failures, ${string_get_size(r.bytes)} in ` +
        `${(r.simNs / 1000).toFixed(1)} us simulated, ${r.realMs.toFixed(0)} ms real`,
    );
    return r.failures === 0 ? 0 : 1;
  },
};

if (import.meta.main) await runTool("dmatest", Deno.args, cli);
