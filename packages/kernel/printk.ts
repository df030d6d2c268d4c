/**
 * The kernel log: printk levels, a dmesg ring buffer stamped with simulated time, and the
 * `dev_*` / `pr_*` helpers that write to it.
 *
 * @module
 */
import type { Device } from "./device.ts";
import { Errno, type ErrnoName, isErrno } from "./errno.ts";
import { type Clock, NSEC_PER_SEC } from "./time.ts";

/** KERN_EMERG: system is unusable. */
export const LOGLEVEL_EMERG = 0;
/** KERN_ALERT: action must be taken immediately. */
export const LOGLEVEL_ALERT = 1;
/** KERN_CRIT: critical conditions. */
export const LOGLEVEL_CRIT = 2;
/** KERN_ERR: error conditions. */
export const LOGLEVEL_ERR = 3;
/** KERN_WARNING: warning conditions. */
export const LOGLEVEL_WARNING = 4;
/** KERN_NOTICE: normal but significant condition. */
export const LOGLEVEL_NOTICE = 5;
/** KERN_INFO: informational. */
export const LOGLEVEL_INFO = 6;
/** KERN_DEBUG: debug-level messages. */
export const LOGLEVEL_DEBUG = 7;

/** One dmesg record. */
export interface LogRecord {
  /** Simulated time of the message in nanoseconds. */
  readonly ns: number;
  /** Log level, {@linkcode LOGLEVEL_EMERG} to {@linkcode LOGLEVEL_DEBUG}. */
  readonly level: number;
  /** The message without timestamp or trailing newline. */
  readonly text: string;
}

/**
 * Formats a time as dmesg does: `[    1.374429]` (seconds padded to 5, microseconds).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTimestamp } from "@iommu-lab/kernel";
 *
 * assert.equal(formatTimestamp(1_374_429_123), "[    1.374429]");
 * ```
 */
export function formatTimestamp(ns: number): string {
  const us = Math.floor(ns / 1000);
  const sec = Math.floor(us / 1_000_000);
  return `[${String(sec).padStart(5)}.${String(us % 1_000_000).padStart(6, "0")}]`;
}

/**
 * The dmesg ring buffer: keeps the last `capacity` records, oldest dropped first.
 *
 * `dev_dbg`/`pr_debug` records are kept only when {@linkcode Dmesg.debug} is on (dynamic
 * debug); every other level is always recorded.
 *
 * @example Reading the log as `dmesg` prints it
 * ```ts
 * import assert from "node:assert/strict";
 * import { Dmesg, SimClock } from "@iommu-lab/kernel";
 *
 * const clock = new SimClock(2_000_000_000);
 * const log = new Dmesg(clock);
 * log.printk(6, "Linux version 6.17");
 * assert.deepEqual(log.lines(), ["[    2.000000] Linux version 6.17"]);
 * ```
 */
export class Dmesg {
  /** Records `LOGLEVEL_DEBUG` messages too (like enabling dynamic debug). */
  debug = false;
  readonly #clock: Clock;
  readonly #capacity: number;
  /** Records; the live ones start at `#start` (dropped ones are sliced off in bulk). */
  #records: LogRecord[] = [];
  #start = 0;
  #dropped = 0;
  /** Texts already printed once, per device (the `*_once` helpers). */
  readonly #once = new WeakMap<object, Set<string>>();

  /** A log reading time from `clock`, holding at most `capacity` records (EINVAL below 1). */
  constructor(clock: Clock, capacity = 8192) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new Errno("EINVAL", `Cannot keep ${capacity} log records`);
    }
    this.#clock = clock;
    this.#capacity = capacity;
  }

  /** Appends one record per line of `text` at `level`. */
  printk(level: number, text: string): void {
    if (level >= LOGLEVEL_DEBUG && !this.debug) return;
    const ns = this.#clock.now();
    for (const line of text.replace(/\n$/, "").split("\n")) {
      this.#records.push({ ns, level, text: line });
    }
    const over = this.#records.length - this.#start - this.#capacity;
    if (over > 0) {
      this.#start += over;
      this.#dropped += over;
      if (this.#start >= this.#capacity) {
        this.#records = this.#records.slice(this.#start);
        this.#start = 0;
      }
    }
  }

  /** The records still in the buffer, oldest first. */
  records(): readonly LogRecord[] {
    return this.#records.slice(this.#start);
  }

  /** How many records fell out of the ring so far. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The buffer formatted as `dmesg` prints it, optionally only up to `maxLevel`. */
  lines(maxLevel = LOGLEVEL_DEBUG): string[] {
    return this.records().filter((r) => r.level <= maxLevel).map((r) =>
      `${formatTimestamp(r.ns)} ${r.text}`
    );
  }

  /** Texts (without timestamps) of the records that match `pattern`. */
  grep(pattern: RegExp | string): string[] {
    const hit = typeof pattern === "string"
      ? (t: string) => t.includes(pattern)
      : (t: string) => pattern.test(t);
    return this.records().filter((r) => hit(r.text)).map((r) => r.text);
  }

  /**
   * True the first time `text` is asked about for `owner`: the state of the `*_once` helpers.
   * @ignore package-private
   */
  _firstTime(owner: object, text: string): boolean {
    let seen = this.#once.get(owner);
    if (seen === undefined) this.#once.set(owner, seen = new Set());
    if (seen.has(text)) return false;
    seen.add(text);
    return true;
  }

  /** Empties the buffer (`dmesg -C`). */
  clear(): void {
    this.#records = [];
    this.#start = 0;
  }

  /** The whole buffer as one string, a line per record. */
  toString(): string {
    return this.lines().join("\n");
  }
}

/** Mirrors printk() on the kernel's log: `pr_info(kernel, "...")` and friends wrap it. */
export function printk(kernel: { readonly dmesg: Dmesg }, level: number, text: string): void {
  kernel.dmesg.printk(level, text);
}

/** Mirrors pr_err(). */
export function pr_err(kernel: { readonly dmesg: Dmesg }, text: string): void {
  kernel.dmesg.printk(LOGLEVEL_ERR, text);
}

/** Mirrors pr_warn(). */
export function pr_warn(kernel: { readonly dmesg: Dmesg }, text: string): void {
  kernel.dmesg.printk(LOGLEVEL_WARNING, text);
}

/** Mirrors pr_info(). */
export function pr_info(kernel: { readonly dmesg: Dmesg }, text: string): void {
  kernel.dmesg.printk(LOGLEVEL_INFO, text);
}

/** Mirrors pr_debug() (recorded only with {@linkcode Dmesg.debug} on). */
export function pr_debug(kernel: { readonly dmesg: Dmesg }, text: string): void {
  kernel.dmesg.printk(LOGLEVEL_DEBUG, text);
}

/**
 * Mirrors dev_driver_string(): the bound driver's name, else the bus name.
 */
export function dev_driver_string(dev: Device): string {
  return dev.driver?.name ?? dev.bus?.name ?? "";
}

/**
 * Mirrors dev_printk(): logs `"<driver> <device>: <text>"` at `level`.
 *
 * @example A line as the riscv-iommu platform driver prints it
 * ```ts
 * import assert from "node:assert/strict";
 * import { Device, dev_info, Kernel, SimClock } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24), clock: new SimClock(1_374_429_000) });
 * const dev = new Device(kernel, { name: "3010000.iommu" });
 * dev.driver = { name: "riscv,iommu", probe() {} };
 * dev_info(dev, "using MSIs");
 * assert.deepEqual(kernel.dmesg.lines(), ["[    1.374429] riscv,iommu 3010000.iommu: using MSIs"]);
 * ```
 */
export function dev_printk(level: number, dev: Device, text: string): void {
  const drv = dev_driver_string(dev);
  dev.kernel.dmesg.printk(level, `${drv === "" ? "" : drv + " "}${dev.name}: ${text}`);
}

/** Mirrors dev_err(). */
export function dev_err(dev: Device, text: string): void {
  dev_printk(LOGLEVEL_ERR, dev, text);
}

/** Mirrors dev_warn(). */
export function dev_warn(dev: Device, text: string): void {
  dev_printk(LOGLEVEL_WARNING, dev, text);
}

/** Mirrors dev_notice(). */
export function dev_notice(dev: Device, text: string): void {
  dev_printk(LOGLEVEL_NOTICE, dev, text);
}

/** Mirrors dev_info(). */
export function dev_info(dev: Device, text: string): void {
  dev_printk(LOGLEVEL_INFO, dev, text);
}

/** Mirrors dev_dbg() (recorded only with {@linkcode Dmesg.debug} on). */
export function dev_dbg(dev: Device, text: string): void {
  dev_printk(LOGLEVEL_DEBUG, dev, text);
}

/**
 * Mirrors dev_err_once(): dev_err() the first time. Linux keeps one flag per call site; with no
 * global state here the flag is per device and message text (so a message that varies is printed
 * once per variant).
 */
export function dev_err_once(dev: Device, text: string): void {
  if (dev.kernel.dmesg._firstTime(dev, text)) dev_err(dev, text);
}

/** Mirrors dev_warn_once(): dev_warn() the first time (see {@linkcode dev_err_once}). */
export function dev_warn_once(dev: Device, text: string): void {
  if (dev.kernel.dmesg._firstTime(dev, text)) dev_warn(dev, text);
}

/** DEFAULT_RATELIMIT_INTERVAL: 5 s, in nanoseconds of simulated time. */
export const DEFAULT_RATELIMIT_INTERVAL = 5 * NSEC_PER_SEC;
/** DEFAULT_RATELIMIT_BURST: messages allowed per interval. */
export const DEFAULT_RATELIMIT_BURST = 10;

/**
 * Mirrors struct ratelimit_state (DEFINE_RATELIMIT_STATE()): at most `burst` messages per
 * `interval` ns. Linux defines one static state per call site; here the caller keeps one in its
 * instance (per device, per driver...), named after the function that uses it, as the
 * "callbacks suppressed" line names `__func__`.
 */
export class RatelimitState {
  /** Start of the current interval (ns), or -1 before the first message. */
  begin: number = -1;
  /** Messages let through in the current interval. */
  printed = 0;
  /** Messages suppressed in the current interval. */
  missed = 0;

  /** A state for call site `func`, allowing `burst` messages per `interval` ns. */
  constructor(
    readonly func: string,
    readonly interval: number = DEFAULT_RATELIMIT_INTERVAL,
    readonly burst: number = DEFAULT_RATELIMIT_BURST,
  ) {}
}

/**
 * Mirrors __ratelimit(): whether a message may be printed now under `rs`, in `kernel`'s simulated
 * time. When an interval with suppressed messages is over, logs `"<func>: N callbacks
 * suppressed"` first. An interval of 0 never limits.
 */
export function __ratelimit(
  kernel: { readonly clock: Clock; readonly dmesg: Dmesg },
  rs: RatelimitState,
): boolean {
  if (!rs.interval) return true;
  const now = kernel.clock.now();
  if (rs.begin < 0) rs.begin = now;
  if (now > rs.begin + rs.interval) {
    if (rs.missed > 0) {
      kernel.dmesg.printk(LOGLEVEL_WARNING, `${rs.func}: ${rs.missed} callbacks suppressed`);
      rs.missed = 0;
    }
    rs.begin = now;
    rs.printed = 0;
  }
  if (rs.burst > rs.printed) {
    rs.printed++;
    return true;
  }
  rs.missed++;
  return false;
}

/**
 * Mirrors dev_err_ratelimited(): dev_err() unless `rs` is over its burst.
 *
 * @example Ten messages per five seconds, then a count of what was dropped
 * ```ts
 * import assert from "node:assert/strict";
 * import { Device, dev_err_ratelimited, Kernel, RatelimitState } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
 * const dev = new Device(kernel, { name: "dev0" });
 * const rs = new RatelimitState("dev0_irq");
 * for (let i = 0; i < 12; i++) dev_err_ratelimited(dev, rs, `event ${i}`);
 * kernel.clock.advance(6e9);
 * dev_err_ratelimited(dev, rs, "event 12");
 * assert.deepEqual(kernel.dmesg.grep(/event (9|1[0-2])|suppressed/), [
 *   "dev0: event 9",
 *   "dev0_irq: 2 callbacks suppressed",
 *   "dev0: event 12",
 * ]);
 * ```
 */
export function dev_err_ratelimited(dev: Device, rs: RatelimitState, text: string): void {
  if (__ratelimit(dev.kernel, rs)) dev_err(dev, text);
}

/** Mirrors dev_warn_ratelimited(): dev_warn() unless `rs` is over its burst. */
export function dev_warn_ratelimited(dev: Device, rs: RatelimitState, text: string): void {
  if (__ratelimit(dev.kernel, rs)) dev_warn(dev, text);
}

/**
 * Mirrors dev_err_probe(): logs `text` with the error unless it is `EPROBE_DEFER`, and
 * returns the {@linkcode Errno} for the caller to throw.
 *
 * `err` is an errno name or a caught error (a non-Errno error is returned unchanged, after
 * logging).
 */
export function dev_err_probe(dev: Device, err: unknown, text: string): unknown {
  const e = typeof err === "string" ? new Errno(err as ErrnoName) : err;
  if (isErrno(e, "EPROBE_DEFER")) {
    dev_dbg(dev, `error -EPROBE_DEFER: ${text}`);
  } else {
    const code = isErrno(e) ? `-${e.code}` : String(e);
    dev_err(dev, `error ${code}: ${text}`);
  }
  return e;
}
