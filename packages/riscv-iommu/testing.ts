/**
 * Test fixtures of the driver and its bus glue (`@iommu-lab/riscv-iommu/testing`): a fake
 * RISC-V IOMMU register page and a kernel that binds the driver to it through a platform-like
 * bus. The fake knows just enough of the spec for the driver's and the glue's sequences (WARL
 * read-backs, queue enable handshakes, command execution, fault records, interrupts,
 * `msi_cfg_tbl`) and decodes offsets and commands on its own, from the spec's numbers, so it
 * does not agree with `bits.ts` on a mistake. End-to-end tests against the silicon model live
 * in the machine package.
 *
 * @example The driver bound to the fake: probing invalidates the directory and the TLBs
 * ```ts
 * import assert from "node:assert/strict";
 * import { testSystem } from "@iommu-lab/riscv-iommu/testing";
 *
 * const sys = testSystem();
 * assert.equal(sys.dev.state, "bound");
 * assert.equal(sys.fake.ddtMode, 4, "3LVL");
 * assert.deepEqual(sys.fake.commands.map((c) => c.text), [
 *   "IODIR.INVAL_DDT",
 *   "IOTINVAL.VMA",
 *   "IOFENCE.C pr pw",
 * ]);
 * ```
 *
 * @module
 */
import {
  bus_register,
  Device,
  device_add,
  device_del,
  devm_kzalloc,
  driver_register,
  Errno,
  type FwNode,
  generic_handle_domain_irq,
  type Initcall,
  IoMem,
  irq_create_mapping,
  irq_domain_create_linear,
  Kernel,
  type MmioAccess,
  type MmioBackend,
  MmioRecorder,
  SimClock,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import { iommu_subsys_init } from "@iommu-lab/iommu";
import { RiscvIommuDriver } from "./driver.ts";
import { riscv_iommu_disable, riscv_iommu_init, riscv_iommu_remove } from "./iommu.ts";
import type { RiscvIommuFeature } from "./feature.ts";
import { riscv_iommu_readl, riscv_iommu_readq, RiscvIommuDevice } from "./iommu_h.ts";

/**
 * `capabilities.IGS` encodings (spec numbers, not `bits.ts`): which interrupt signalling the
 * hardware offers, and so which `fctl.WSI` values it takes.
 */
export const IGS = { MSI: 0, WSI: 1, BOTH: 2, RSRV: 3 } as const;

/** `capabilities` of the fake by default: version 1.0, Sv39/48/57, IGS=MSI, nothing else. */
export const FAKE_IOMMU_CAPS = 0x10n | 7n << 9n;

/**
 * `capabilities` bits the tests ask the fake for (spec numbers, not `bits.ts`): the first- and
 * G-stage modes, MSI_FLAT, AMO_HWAD, ATS, the process-directory modes, NL and S.
 */
export const CAP = {
  SV39: 1n << 9n,
  SV48: 1n << 10n,
  SV57: 1n << 11n,
  SV39X4: 1n << 17n,
  SV48X4: 1n << 18n,
  SV57X4: 1n << 19n,
  MSI_FLAT: 1n << 22n,
  AMO_HWAD: 1n << 24n,
  ATS: 1n << 25n,
  PD8: 1n << 38n,
  PD17: 1n << 39n,
  PD20: 1n << 40n,
  NL: 1n << 42n,
  S: 1n << 43n,
} as const;

/** Device-context `tc` bits (spec numbers, not `bits.ts`). */
export const TC = {
  V: 1n,
  EN_ATS: 1n << 1n,
  EN_PRI: 1n << 2n,
  PDTV: 1n << 5n,
  PRPR: 1n << 6n,
  GADE: 1n << 7n,
  SADE: 1n << 8n,
  DPE: 1n << 9n,
} as const;

/** One command the fake executed (or refused), decoded. */
export interface FakeCommand {
  /** A short description, e.g. `"IOTINVAL.VMA pscid=1 addr=0x1000"` or `"IOFENCE.C pr pw"`. */
  readonly text: string;
  /** The raw first doubleword. */
  readonly dword0: bigint;
  /** The raw second doubleword. */
  readonly dword1: bigint;
}

/** What the fake implements; every field has a default. */
export interface FakeIommuOptions {
  /** `capabilities` (default {@linkcode FAKE_IOMMU_CAPS}). */
  caps?: bigint;
  /** Directory modes the hardware takes besides Off/Bare (default 1LVL, 2LVL, 3LVL). */
  ddtModes?: number[];
  /** A hardware-fixed DDT root address, reported in ddtp.PPN. */
  fixedDdt?: number;
  /** A hardware-fixed command-queue ring address, reported in cqb.PPN. */
  fixedCq?: number;
  /** ddtp.busy never clears. */
  ddtpStuckBusy?: boolean;
  /** ddtp.iommu_mode at reset (default Off). */
  resetMode?: number;
  /** Largest queue LOG2SZ-1 field value (default 0x1f: any). */
  maxLog2sz?: number;
  /** The base register drops writes of PPN (so it never reads back what was written). */
  brokenQueueBase?: boolean;
  /** Writable low bits of each icvec field (default 2: four vectors). */
  icvecBits?: number;
  /** icvec is hard-wired to this value. */
  icvecFixed?: bigint;
  /**
   * fctl at reset (default 0). BE is writable only with capabilities.END; WSI reads 1 on
   * WSI-only hardware, 0 on MSI-only hardware, and is writable only when IGS is BOTH.
   */
  fctl?: number;
  /** Queues never turn on. */
  queuesNeverOn?: boolean;
  /** Commands whose description starts with this are illegal (cmd_ill). */
  illegal?: string;
}

/**
 * The register page of a RISC-V IOMMU, enough to exercise the driver and its bus glue: WARL
 * read-backs (fctl, ddtp, queue bases, icvec, msi_cfg_tbl), queue enable handshakes, command
 * execution, fault records and interrupts. 64-bit registers also take 32-bit halves, as the
 * MSI-X code writes `msi_cfg_tbl`; reserved offsets of the page read 0 and ignore writes.
 */
export class FakeIommu implements MmioBackend {
  /** Commands executed so far (or refused with cmd_ill), oldest first. */
  readonly commands: FakeCommand[] = [];
  /** When set, the command queue fetches nothing until simulated time reaches it. */
  stallUntil = 0;
  /**
   * Device IDs whose functions never complete an ATS.INVAL (a device may break at any time): the
   * IOFENCE.C after one stops the queue with cmd_to and cqh on it; once cmd_to is cleared it runs
   * again and completes (a timeout is reported once, spec §3.1.2).
   */
  readonly atsInvalTimeout: Set<number> = new Set();
  /** Delivers the interrupt of a vector (wired by the test system to the irq layer). */
  raise: (vector: number) => void = () => {};

  /** `capabilities`. */
  caps: bigint;
  /** `fctl`. */
  fctl: number;
  /** `ddtp`. */
  ddtp = 0n;
  /** `cqb`, `fqb`, `pqb`. */
  readonly qb = [0n, 0n, 0n];
  /** `cqh`, `fqh`, `pqh`. */
  readonly qh = [0, 0, 0];
  /** `cqt`, `fqt`, `pqt`. */
  readonly qt = [0, 0, 0];
  /** `cqcsr`, `fqcsr`, `pqcsr`. */
  readonly qcsr = [0, 0, 0];
  /** `ipsr`. */
  ipsr = 0;
  /** `icvec`. */
  icvec = 0n;
  /** `msi_cfg_tbl` msi_addr_x. */
  readonly msiAddr: bigint[] = new Array(16).fill(0n);
  /** `msi_cfg_tbl` msi_data_x. */
  readonly msiData: number[] = new Array(16).fill(0);
  /** `msi_cfg_tbl` msi_vec_ctl_x (reset: masked). */
  readonly msiCtl: number[] = new Array(16).fill(1);
  readonly #mem: TestRam;
  readonly #clock: SimClock;
  readonly #o:
    & Required<Omit<FakeIommuOptions, "fixedDdt" | "fixedCq" | "illegal" | "icvecFixed">>
    & FakeIommuOptions;
  readonly #pending: number[] = [];
  /** An ATS.INVAL of `atsInvalTimeout` ran since the last IOFENCE.C. */
  #atsTimedOut = false;

  /** A fake reading commands from and writing records to `mem`. */
  constructor(mem: TestRam, clock: SimClock, opts: FakeIommuOptions = {}) {
    this.#mem = mem;
    this.#clock = clock;
    this.#o = {
      caps: FAKE_IOMMU_CAPS,
      ddtModes: [2, 3, 4],
      ddtpStuckBusy: false,
      resetMode: 0,
      maxLog2sz: 0x1f,
      brokenQueueBase: false,
      icvecBits: 2,
      fctl: 0,
      queuesNeverOn: false,
      ...opts,
    };
    this.caps = this.#o.caps;
    const igs = this.#igs();
    this.fctl = igs === IGS.WSI
      ? this.#o.fctl | 2
      : igs === IGS.MSI
      ? this.#o.fctl & ~2
      : this.#o.fctl;
    this.ddtp = BigInt(this.#o.resetMode) | (this.#o.ddtpStuckBusy ? 16n : 0n);
    if (opts.fixedDdt !== undefined) this.ddtp |= BigInt(opts.fixedDdt / 4096) << 10n;
    if (opts.fixedCq !== undefined) this.qb[0] = BigInt(opts.fixedCq / 4096) << 10n;
  }

  /** ddtp.iommu_mode. */
  get ddtMode(): number {
    return Number(this.ddtp & 15n);
  }

  #igs(): number {
    return Number(this.caps >> 28n & 3n);
  }

  /** Queue index of a base/head/tail/csr offset: 0 CQ, 1 FQ, 2 PQ. */
  #queue(off: number, first: number, step: number): number {
    return (off - first) / step;
  }

  /** Entries of queue `q` (from its base register). */
  #size(q: number): number {
    return 2 ** (Number(this.qb[q] & 0x1fn) + 1);
  }

  #ring(q: number): number {
    return Number(this.qb[q] >> 10n & (2n ** 44n - 1n)) * 4096;
  }

  /** Rejects an access the driver should never make: unaligned or outside the 4 KiB page. */
  #check(off: number, what: string): void {
    if (!(off >= 0 && off < 0x1000 && off % 4 === 0)) {
      throw new Errno("EINVAL", `fake IOMMU: bad ${what} at 0x${off.toString(16)}`);
    }
  }

  /** The 64-bit register at `off` (no side effects), or undefined if there is none. */
  #reg64(off: number): bigint | undefined {
    switch (off) {
      case 0x00:
        return this.caps;
      case 0x10:
        return this.ddtp;
      case 0x18:
      case 0x28:
      case 0x38:
        return this.qb[this.#queue(off, 0x18, 0x10)];
      case 0x2f8:
        return this.icvec;
    }
    if (off >= 0x300 && off < 0x400 && (off & 0xf) === 0) return this.msiAddr[(off - 0x300) >> 4];
    return undefined;
  }

  /** Writes the 64-bit register at `off` (one that `#reg64` knows). */
  #set64(off: number, v: bigint): void {
    switch (off) {
      case 0x00:
        return;
      case 0x10:
        return this.#writeDdtp(v);
      case 0x18:
      case 0x28:
      case 0x38: {
        const q = this.#queue(off, 0x18, 0x10);
        const log2 = v & 0x1fn;
        const max = BigInt(this.#o.maxLog2sz);
        const fixed = q === 0 ? this.#o.fixedCq : undefined;
        const ppn = fixed !== undefined
          ? BigInt(fixed / 4096) << 10n
          : this.#o.brokenQueueBase
          ? 0n
          : v & (2n ** 44n - 1n) << 10n;
        this.qb[q] = ppn | (log2 > max ? max : log2);
        return;
      }
      case 0x2f8: {
        const m = BigInt(2 ** this.#o.icvecBits - 1);
        this.icvec = this.#o.icvecFixed ?? v & (m | m << 4n | m << 8n | m << 12n);
        return;
      }
    }
    // msi_addr_x: ADDR[55:2].
    this.msiAddr[(off - 0x300) >> 4] = v & (2n ** 56n - 4n);
  }

  /** Reads 8 bytes. */
  read64(off: number): bigint {
    this.#check(off, "read");
    return this.#reg64(off) ??
      (BigInt(this.read32(off)) | BigInt(this.read32(off + 4)) << 32n);
  }

  /** Writes 8 bytes. */
  write64(off: number, v: bigint): void {
    this.#check(off, "write");
    if (this.#reg64(off) !== undefined) return this.#set64(off, v);
    this.write32(off, Number(v & 0xffff_ffffn));
    this.write32(off + 4, Number(v >> 32n));
  }

  #writeDdtp(v: bigint): void {
    if (this.#o.ddtpStuckBusy) return;
    const mode = Number(v & 15n);
    const ok = mode <= 1 || this.#o.ddtModes.includes(mode);
    const cur = this.ddtp & 15n;
    const fixed = this.#o.fixedDdt;
    const ppn = fixed !== undefined ? BigInt(fixed / 4096) << 10n : v & (2n ** 44n - 1n) << 10n;
    this.ddtp = ppn | (ok ? BigInt(mode) : cur);
  }

  /** Reads 4 bytes. */
  read32(off: number): number {
    this.#check(off, "read");
    switch (off) {
      case 0x08:
        return this.fctl;
      case 0x20:
        this.#runCommands();
        return this.qh[0];
      case 0x24:
        return this.qt[0];
      case 0x30:
      case 0x40:
        return this.qh[this.#queue(off, 0x20, 0x10)];
      case 0x34:
      case 0x44:
        return this.qt[this.#queue(off, 0x24, 0x10)];
      case 0x48:
      case 0x4c:
      case 0x50:
        return this.qcsr[this.#queue(off, 0x48, 4)];
      case 0x54:
        return this.ipsr;
    }
    if (off >= 0x300 && off < 0x400) {
      if ((off & 0xf) === 0x8) return this.msiData[(off - 0x300) >> 4];
      if ((off & 0xf) === 0xc) return this.msiCtl[(off - 0x300) >> 4];
    }
    const v = this.#reg64(off & ~7) ?? 0n;
    return Number(off & 4 ? v >> 32n : v & 0xffff_ffffn);
  }

  /** Writes 4 bytes. */
  write32(off: number, v: number): void {
    this.#check(off, "write");
    switch (off) {
      case 0x08: {
        const writable = (this.caps & 1n << 27n ? 1 : 0) | (this.#igs() === IGS.BOTH ? 2 : 0);
        this.fctl = (this.fctl & ~writable) | (v & writable);
        return;
      }
      case 0x24:
        this.qt[0] = v & (this.#size(0) - 1);
        this.#runCommands();
        return;
      case 0x30:
      case 0x40:
        this.qh[this.#queue(off, 0x20, 0x10)] = v & (this.#size(this.#queue(off, 0x20, 0x10)) - 1);
        return;
      case 0x48:
      case 0x4c:
      case 0x50:
        return this.#writeCsr(this.#queue(off, 0x48, 4), v);
      case 0x54:
        this.ipsr &= ~v;
        return;
    }
    if (off >= 0x300 && off < 0x400 && (off & 0xf) >= 0x8) {
      const n = (off - 0x300) >> 4;
      if ((off & 0xf) === 0x8) this.msiData[n] = v >>> 0;
      else this.msiCtl[n] = v & 1;
      return;
    }
    const base = off & ~7;
    const cur = this.#reg64(base);
    if (cur === undefined) return;
    const half = BigInt(v >>> 0);
    this.#set64(base, off & 4 ? (cur & 0xffff_ffffn) | half << 32n : (cur >> 32n) << 32n | half);
  }

  #writeCsr(q: number, v: number): void {
    const old = this.qcsr[q];
    let csr = (old & ~(v & 0xf00)) & ~3 | (v & 3);
    if (v & 1 && !(old & 1)) {
      if (q === 0) {
        this.qh[0] = 0;
        this.#atsTimedOut = false;
      } else {
        this.qt[q] = 0;
      }
      csr &= ~0xf00;
      if (!this.#o.queuesNeverOn) csr |= 1 << 16;
    }
    if (!(v & 1)) csr &= ~(1 << 16);
    this.qcsr[q] = csr;
  }

  /** Sets `bits` in the CSR of queue `q` (0 CQ, 1 FQ, 2 PQ) and raises its interrupt. */
  #queueError(q: 0 | 1 | 2, bits: number): void {
    this.qcsr[q] |= bits;
    this.#pend(q === 2 ? 3 : q, q);
  }

  /** Sets ipsr bit `cause` (interrupt-enabled queue `q`, or -1) and raises its vector. */
  #pend(cause: number, q: number): void {
    if (q >= 0 && !(this.qcsr[q] & 2)) return;
    const bit = 1 << cause;
    if (this.ipsr & bit) return;
    this.ipsr |= bit;
    this.#pending.push(Number(this.icvec >> BigInt(cause * 4) & 15n));
  }

  /**
   * Delivers the interrupts raised so far. The test clock calls it whenever time advances, so
   * an interrupt reaches the CPU some time after the hardware raised it, as on a real system.
   */
  deliver(): void {
    while (this.#pending.length > 0) this.raise(this.#pending.shift()!);
  }

  /** Fetches and runs commands from cqh to cqt. */
  #runCommands(): void {
    const csr = this.qcsr[0];
    if (!(csr & 1 << 16) || csr & 0x700 || this.#clock.now() < this.stallUntil) return;
    const size = this.#size(0);
    while (this.qh[0] !== this.qt[0]) {
      const pa = this.#ring(0) + this.qh[0] * 16;
      const d0 = this.#mem.read64(pa);
      const d1 = this.#mem.read64(pa + 8);
      const text = decodeCommand(d0, d1);
      this.commands.push({ text, dword0: d0, dword1: d1 });
      if (text.startsWith("illegal") || (this.#o.illegal && text.startsWith(this.#o.illegal))) {
        return this.#queueError(0, 1 << 10);
      }
      if ((d0 & 0x3ffn) === 4n && this.atsInvalTimeout.has(_atsDevid(d0))) {
        this.#atsTimedOut = true;
      }
      if (text.startsWith("IOFENCE.C") && this.#atsTimedOut) {
        this.#atsTimedOut = false;
        return this.#queueError(0, 1 << 9);
      }
      if (text.startsWith("IOFENCE.C") && d0 & 1n << 10n) {
        this.#mem.write32(Number(d1 << 2n), Number(d0 >> 32n));
      }
      this.qh[0] = (this.qh[0] + 1) % size;
    }
  }

  /**
   * Sets error bits in the CSR of queue `q` (cqcsr cmd_to/cqmf/fence_w_ip, fqcsr/pqcsr mf) as the
   * hardware would, with the queue's interrupt.
   */
  queueError(q: 0 | 1 | 2, bits: number): void {
    this.#queueError(q, bits);
  }

  /**
   * Writes a fault record (FQ) or page request (PQ, `q` 2) at the queue's tail and raises its
   * interrupt; when the queue is full the record is dropped and the overflow bit set instead.
   */
  record(q: 1 | 2, words: bigint[]): boolean {
    const csr = this.qcsr[q];
    if (!(csr & 1 << 16) || csr & 0x300) return false;
    const size = this.#size(q);
    const next = (this.qt[q] + 1) % size;
    const cause = q === 1 ? 1 : 3;
    if (next === this.qh[q]) {
      this.qcsr[q] |= 1 << 9;
      this.#pend(cause, q);
      return false;
    }
    const pa = this.#ring(q) + this.qt[q] * words.length * 8;
    words.forEach((w, i) => this.#mem.write64(pa + i * 8, w));
    this.qt[q] = next;
    this.#pend(cause, q);
    return true;
  }

  /** Raises the performance-monitor interrupt (ipsr.pmip). */
  pmInterrupt(): void {
    this.#pend(2, -1);
  }
}

/** The device ID an ATS command's dword0 names: RID, and DSEG above it when DSV is set. */
function _atsDevid(d0: bigint): number {
  const rid = Number(d0 >> 40n & 0xffffn);
  return d0 & 1n << 33n ? Number(d0 >> 56n) << 16 | rid : rid;
}

/** Register names by offset (spec numbers, not bits.ts), for readable MMIO traces. */
const _REG_NAMES: Record<number, string> = {
  0x00: "capabilities",
  0x08: "fctl",
  0x10: "ddtp",
  0x18: "cqb",
  0x20: "cqh",
  0x24: "cqt",
  0x28: "fqb",
  0x30: "fqh",
  0x34: "fqt",
  0x38: "pqb",
  0x40: "pqh",
  0x44: "pqt",
  0x48: "cqcsr",
  0x4c: "fqcsr",
  0x50: "pqcsr",
  0x54: "ipsr",
  0x2f8: "icvec",
};

/**
 * Recorded accesses as lines like `"w cqcsr 0x103"` (op, register name or hex offset, value):
 * what the exact register-sequence tests compare.
 */
export function mmioTrace(accesses: readonly MmioAccess[]): string[] {
  return accesses.map((a) =>
    `${a.op} ${_REG_NAMES[a.offset] ?? "0x" + a.offset.toString(16)} 0x${a.value.toString(16)}`
  );
}

/**
 * The physical address of the device context of `devid`, found by walking the DDT as the
 * hardware does (RISC-V IOMMU spec v1.0, §2.1 "Device-Directory-Table (DDT)"; spec numbers, not
 * bits.ts): DDI widths 7/9/8 in the base format, 6/9/9 in the extended one (MSI_FLAT).
 */
export function dcAddress(sys: TestSystem, devid: number): number {
  const ddtp = sys.fake.ddtp;
  const mode = Number(ddtp & 15n);
  const ext = (sys.fake.caps & 1n << 22n) !== 0n;
  const split = ext ? [[0, 6], [6, 9], [15, 9]] : [[0, 7], [7, 9], [16, 8]];
  let table = Number(ddtp >> 10n & (2n ** 44n - 1n)) * 4096;
  for (let level = mode - 2; level > 0; level--) {
    const [lsb, w] = split[level];
    const ddte = sys.ram.read64(table + (devid >>> lsb & (2 ** w - 1)) * 8);
    if (!(ddte & 1n)) throw new Errno("ENOENT", `DDT level ${level} of 0x${devid.toString(16)}`);
    table = Number(ddte >> 10n & (2n ** 44n - 1n)) * 4096;
  }
  const size = ext ? 64 : 32;
  return table + (devid & (2 ** split[0][1] - 1)) * size;
}

/**
 * The device context of `devid` as doublewords: tc, iohgatp, ta, fsc, and in the extended format
 * msiptp, msi_addr_mask, msi_addr_pattern.
 */
export function deviceContext(sys: TestSystem, devid: number): bigint[] {
  const pa = dcAddress(sys, devid);
  const n = (sys.fake.caps & 1n << 22n) !== 0n ? 7 : 4;
  return Array.from({ length: n }, (_, i) => sys.ram.read64(pa + i * 8));
}

/** Decodes a command from the spec's bit positions (not bits.ts). */
/** The commands `fn` makes the fake execute, as its short descriptions ({@linkcode decodeCommand}). */
export function commandsOf(sys: TestSystem, fn: () => void): string[] {
  sys.fake.commands.length = 0;
  fn();
  return sys.fake.commands.map((c) => c.text);
}

/**
 * Decodes a command (its two doublewords) the way {@linkcode FakeCommand.text} shows it, from
 * the spec's encodings (§3.1 "Command-Queue"): for tests that read commands from a real command
 * queue, such as the machine's.
 */
export function decodeCommand(d0: bigint, d1: bigint): string {
  const op = Number(d0 & 0x7fn);
  const func = Number(d0 >> 7n & 7n);
  const hex = (v: bigint) => "0x" + v.toString(16);
  // IOTINVAL.GVMA with PSCV is illegal.
  if (op === 1 && (func === 0 || (func === 1 && !(d0 >> 32n & 1n)))) {
    const parts = [func === 0 ? "IOTINVAL.VMA" : "IOTINVAL.GVMA"];
    if (d0 >> 33n & 1n) parts.push(`gscid=${d0 >> 44n & 0xffffn}`);
    if (d0 >> 32n & 1n) parts.push(`pscid=${d0 >> 12n & 0xfffffn}`);
    if (d0 >> 10n & 1n) {
      const addr = d1 >> 10n & (2n ** 52n - 1n);
      if (d1 >> 9n & 1n) {
        // NAPOT: the lowest zero bit X of ADDR makes the range 2^(X+1) pages.
        let x = 0n;
        while (addr >> x & 1n) x++;
        const pages = 2n ** (x + 1n);
        parts.push(`range=${hex((addr & ~(pages - 1n)) << 12n)}+${hex(pages << 12n)}`);
      } else {
        parts.push(`addr=${hex(addr << 12n)}`);
      }
    }
    if (d0 >> 34n & 1n) parts.push("nl");
    return parts.join(" ");
  }
  if (op === 2 && func === 0) {
    const parts = ["IOFENCE.C"];
    if (d0 >> 12n & 1n) parts.push("pr");
    if (d0 >> 13n & 1n) parts.push("pw");
    if (d0 >> 10n & 1n) parts.push(`av=${hex(d1 << 2n)} data=${hex(d0 >> 32n)}`);
    return parts.join(" ");
  }
  if (op === 3 && func === 0) {
    return d0 >> 33n & 1n ? `IODIR.INVAL_DDT did=${hex(d0 >> 40n)}` : "IODIR.INVAL_DDT";
  }
  if (op === 3 && func === 1 && d0 >> 33n & 1n) {
    return `IODIR.INVAL_PDT did=${hex(d0 >> 40n)} pid=${hex(d0 >> 12n & 0xfffffn)}`;
  }
  if (op === 4 && func === 0) {
    const parts = [`ATS.INVAL rid=${hex(d0 >> 40n & 0xffffn)}`];
    if (d0 >> 33n & 1n && d0 >> 56n) parts.push(`dseg=${hex(d0 >> 56n)}`);
    if (d0 >> 32n & 1n) parts.push(`pid=${hex(d0 >> 12n & 0xfffffn)}`);
    // PCIe ATS payload: S (bit 11) set means the lowest clear address bit above it, at B, makes
    // the range 2^(B+1) bytes; all address bits but the top one set is the whole space.
    let size = 4096n;
    if (d1 >> 11n & 1n) {
      let b = 12n;
      while (b < 63n && d1 >> b & 1n) b++;
      size = 2n ** (b + 1n);
    }
    if (size >= 2n ** 64n) parts.push("all");
    else parts.push(`range=${hex(d1 & ~(size - 1n) & ~0xfffn)}+${hex(size)}`);
    if (d1 & 1n) parts.push("g");
    return parts.join(" ");
  }
  if (op === 4 && func === 1) return `ATS.PRGR ${hex(d0)} ${hex(d1)}`;
  return `illegal ${hex(d0)} ${hex(d1)}`;
}

/** A clock that delivers pending interrupts whenever time moves (a machine clock's events). */
class _IrqClock extends SimClock {
  onAdvance: () => void = () => {};

  override advance(ns: number): void {
    super.advance(ns);
    this.onAdvance();
  }
}

/** Options of {@linkcode testSystem}. */
export interface TestSystemOptions extends FakeIommuOptions {
  /** Series features of the driver instance. */
  features?: RiscvIommuFeature[];
  /** Interrupt vectors the glue hands over (default 4). */
  irqs?: number;
  /** log2 of the command queue the glue asks for (default: the driver's 8192 entries). */
  cqLog2?: number;
  /** log2 of the fault queue the glue asks for (default: the driver's 4096 entries). */
  fqLog2?: number;
  /** Add the IOMMU device, which binds the driver (default true). */
  bind?: boolean;
  /** Default domains are identity (iommu.passthrough=1). */
  passthrough?: boolean;
  /** The kernel's initcalls (`pci_driver_init` for a test with PCI functions; default none). */
  initcalls?: readonly Initcall[];
}

/** A kernel, the fake IOMMU behind an MMIO recorder, and the driver bound to it. */
export interface TestSystem {
  /** The kernel (clock, dmesg, pages). */
  readonly kernel: Kernel;
  /** The RAM. */
  readonly ram: TestRam;
  /** The fake hardware. */
  readonly fake: FakeIommu;
  /** Every register access of the driver. */
  readonly rec: MmioRecorder;
  /** The IOMMU's platform device. */
  readonly dev: Device;
  /** Its firmware node (what endpoints name in their fwspec). */
  readonly fwnode: FwNode;
  /** The driver instance. */
  readonly drv: RiscvIommuDriver;
  /** The IOMMU instance once the probe ran (null if it failed). */
  iommu: RiscvIommuDevice | null;
  /**
   * Adds an endpoint with device IDs `ids` behind the IOMMU and probes it into the core; when the
   * IOMMU probe fails the endpoint is removed again and the error thrown.
   */
  addEndpoint(name: string, ...ids: number[]): Device;
}

/**
 * Builds a kernel on 64 MiB of RAM, the IOMMU core, a fake IOMMU at 0x301_0000 with wired
 * interrupts, and binds the driver to it as the platform glue would.
 */
export function testSystem(opts: TestSystemOptions = {}): TestSystem {
  const ram = new TestRam(0x8000_0000, 64 * 2 ** 20);
  const clock = new _IrqClock();
  const kernel = new Kernel({ mem: ram, clock, initcalls: opts.initcalls });
  iommu_subsys_init(kernel, { passthrough: opts.passthrough });
  const fake = new FakeIommu(ram, clock, opts);
  clock.onAdvance = () => fake.deliver();
  const rec = new MmioRecorder(fake);
  const wires = irq_domain_create_linear(kernel, null, 16, {}, "test-intc");
  const nirq = opts.irqs ?? 4;
  const irqs = Array.from({ length: nirq }, (_, v) => irq_create_mapping(wires, v));
  fake.raise = (vector) => void generic_handle_domain_irq(wires, vector);

  const fwnode: FwNode = { name: "iommu@3010000" };
  const drv = new RiscvIommuDriver({ features: opts.features });
  const bus = bus_register(kernel, {
    name: "riscv-iommu-test",
    match: (d, driver) => d.name.endsWith(".iommu") ? driver.name === "riscv,iommu" : false,
    dmaConfigure(d) {
      const layer = kernel.iommuLayer!;
      if (d.fwspec === null || d.iommu !== null) return;
      if (layer.ofXlate(d.fwspec.fwnode) === null) throw new Errno("EPROBE_DEFER");
      layer.probeDevice(d);
    },
  });
  const sys: TestSystem = {
    kernel,
    ram,
    fake,
    rec,
    dev: new Device(kernel, { name: "3010000.iommu", bus, fwnode }),
    fwnode,
    drv,
    iommu: null,
    addEndpoint(name, ...ids) {
      const ep = new Device(kernel, { name, bus });
      device_add(ep);
      // The fwspec comes after device_add so that this probe, not the add's, reports failures.
      ep.fwspec = { fwnode, ids, flags: 0 };
      try {
        kernel.iommuLayer!.probeDevice(ep);
      } catch (e) {
        device_del(ep);
        throw e;
      }
      return ep;
    },
  };
  driver_register(bus, {
    name: "riscv,iommu",
    probe(d) {
      const iommu = devm_kzalloc(d, new RiscvIommuDevice(d, new IoMem(rec, 0x1000, clock), drv));
      iommu.caps = riscv_iommu_readq(iommu, 0);
      iommu.fctl = riscv_iommu_readl(iommu, 8);
      iommu.irqs = irqs;
      iommu.irqs_count = nirq;
      if (opts.cqLog2) iommu.cmdq.log2sz = opts.cqLog2;
      if (opts.fqLog2) iommu.fltq.log2sz = opts.fqLog2;
      riscv_iommu_init(iommu);
      d.driverData = iommu;
      sys.iommu = iommu;
    },
    remove(d) {
      riscv_iommu_remove(d.driverData as RiscvIommuDevice);
      sys.iommu = null;
    },
    shutdown(d) {
      riscv_iommu_disable(d.driverData as RiscvIommuDevice);
    },
  });
  if (opts.bind ?? true) device_add(sys.dev);
  return sys;
}
