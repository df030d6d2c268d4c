/**
 * An APLIC-like wired interrupt controller (RISC-V AIA §4): one supervisor-level interrupt
 * domain in direct delivery mode with one hart's interrupt delivery control (IDC).
 *
 * What is modelled, from the AIA spec:
 *
 * - `sourcecfg[i]` source modes Inactive, Detached, Edge1, Edge0, Level1, Level0. Delegation to
 *   child domains is not implemented (`D` reads 0).
 * - Pending bits: a Level source in direct mode is pending exactly while its rectified input is
 *   high; `setip`/`in_clrip` and claims do not change it. So a level line that is still asserted
 *   after the handler ran is delivered again, as hardware does. Edge and Detached sources are set
 *   by an edge (Edge only) or `setip*`, and cleared by a claim or `in_clrip`/`clripnum`.
 * - `setie`/`clrie` enable bits, `target[i]` (hart index WARL 0, IPRIO 8 bits, 0 written as 1),
 *   IDC `idelivery`, `iforce`, `ithreshold`, `topi` and `claimi`.
 * - `domaincfg`: IE writable; DM is WARL 0 (direct delivery only: on QEMU `virt` with an IMSIC the
 *   APLIC forwards by MSI instead, which is not modelled); BE reads 0.
 *
 * The hart's external interrupt is asserted when `domaincfg.IE`, `idelivery` and either `topi`
 * non-zero or `iforce` hold. When {@linkcode Aplic.onWired} is set, the hart takes it after
 * `costs.irqDelivery` ns at the next {@linkcode Clock.advance}: the model claims
 * the top interrupt, as the CPU's trap handler would read `claimi`, and calls `onWired(line)`.
 *
 * @module
 */
import type { Clock, CostTable } from "../clock.ts";
import type { MmioHandler } from "../memory.ts";
import { read64Split, write64Split } from "../_u64.ts";
import { _HartInput } from "./hart.ts";

/** Physical base of the supervisor-level APLIC on the `virt` memory map. */
export const APLIC_S_BASE = 0x0d00_0000;
/** Size of the APLIC's register window (one IDC). */
export const APLIC_SIZE = 0x8000;

/** `domaincfg`: domain configuration. */
export const APLIC_DOMAINCFG = 0x0000;
/** `domaincfg` bits 31:24 read as 0x80. */
export const APLIC_DOMAINCFG_RDONLY = 0x8000_0000;
/** `domaincfg.IE`: interrupt enable for the whole domain. */
export const APLIC_DOMAINCFG_IE = 1 << 8;
/** `domaincfg.DM`: MSI delivery mode (WARL 0 here). */
export const APLIC_DOMAINCFG_DM = 1 << 2;
/** `sourcecfg[1]`; source `i` is at `APLIC_SOURCECFG_BASE + 4 * (i - 1)`. */
export const APLIC_SOURCECFG_BASE = 0x0004;
/** `sourcecfg.D`: delegated to a child domain (WARL 0 here). */
export const APLIC_SOURCECFG_D = 1 << 10;
/** `sourcecfg.SM` field mask. */
export const APLIC_SOURCECFG_SM_MASK = 0x7;
/** Source mode: inactive (input ignored, not pending, not enabled). */
export const APLIC_SOURCECFG_SM_INACTIVE = 0;
/** Source mode: active, input ignored (pending only by software). */
export const APLIC_SOURCECFG_SM_DETACH = 1;
/** Source mode: rising edge. */
export const APLIC_SOURCECFG_SM_EDGE_RISE = 4;
/** Source mode: falling edge. */
export const APLIC_SOURCECFG_SM_EDGE_FALL = 5;
/** Source mode: level high. */
export const APLIC_SOURCECFG_SM_LEVEL_HIGH = 6;
/** Source mode: level low. */
export const APLIC_SOURCECFG_SM_LEVEL_LOW = 7;
/** `setip[0]`: pending bits of sources 0–31 (write 1 to set). */
export const APLIC_SETIP_BASE = 0x1c00;
/** `setipnum`: write a source number to set its pending bit. */
export const APLIC_SETIPNUM = 0x1cdc;
/** `in_clrip[0]`: reads rectified inputs, write 1 to clear pending bits. */
export const APLIC_CLRIP_BASE = 0x1d00;
/** `clripnum`: write a source number to clear its pending bit. */
export const APLIC_CLRIPNUM = 0x1ddc;
/** `setie[0]`: enable bits of sources 0–31 (write 1 to set). */
export const APLIC_SETIE_BASE = 0x1e00;
/** `setienum`: write a source number to enable it. */
export const APLIC_SETIENUM = 0x1edc;
/** `clrie[0]`: write 1 to clear enable bits (reads 0). */
export const APLIC_CLRIE_BASE = 0x1f00;
/** `clrienum`: write a source number to disable it. */
export const APLIC_CLRIENUM = 0x1fdc;
/** `setipnum_le`: little-endian form of `setipnum`. */
export const APLIC_SETIPNUM_LE = 0x2000;
/** `target[1]`; source `i` is at `APLIC_TARGET_BASE + 4 * (i - 1)`. */
export const APLIC_TARGET_BASE = 0x3004;
/** `target.HartIndex` shift (direct mode). */
export const APLIC_TARGET_HART_IDX_SHIFT = 18;
/** `target.IPRIO` mask (direct mode); smaller numbers are higher priority. */
export const APLIC_TARGET_IPRIO_MASK = 0xff;
/** The first IDC (hart 0). */
export const APLIC_IDC_BASE = 0x4000;
/** IDC `idelivery`: 1 enables delivery to the hart. */
export const APLIC_IDC_IDELIVERY = 0x00;
/** IDC `iforce`: 1 forces a (spurious) interrupt. */
export const APLIC_IDC_IFORCE = 0x04;
/** IDC `ithreshold`: only priorities numerically below it are delivered (0: all). */
export const APLIC_IDC_ITHRESHOLD = 0x08;
/** IDC `topi`: identity (25:16) and priority (7:0) of the top pending-and-enabled interrupt. */
export const APLIC_IDC_TOPI = 0x18;
/** `topi`/`claimi` identity shift. */
export const APLIC_IDC_TOPI_ID_SHIFT = 16;
/** IDC `claimi`: reads as `topi` and claims that interrupt. */
export const APLIC_IDC_CLAIMI = 0x1c;

/** Options of {@linkcode Aplic}. */
export interface AplicOptions {
  /** The machine's clock: MMIO accesses are charged to it and deliveries scheduled on it. */
  clock: Clock;
  /** Number of interrupt sources; identities are 1..sources (at most 1023). Default 96. */
  sources?: number;
}

/**
 * An APLIC interrupt domain in direct delivery mode with one hart.
 *
 * Devices drive it through {@linkcode setWire} (the IOMMU's `IrqSink`); the CPU side programs it
 * through its registers (an {@linkcode MmioHandler} to map at {@linkcode APLIC_S_BASE}) and gets
 * interrupts through {@linkcode onWired}.
 *
 * @example A level line is delivered until the device lowers it
 * ```ts
 * import assert from "node:assert/strict";
 * import { Aplic, Clock } from "@iommu-lab/hw";
 * import { APLIC_DOMAINCFG, APLIC_DOMAINCFG_IE, APLIC_IDC_BASE, APLIC_IDC_IDELIVERY, APLIC_SETIENUM, APLIC_SOURCECFG_BASE, APLIC_SOURCECFG_SM_LEVEL_HIGH } from "@iommu-lab/hw/regs";
 *
 * const clock = new Clock();
 * const aplic = new Aplic({ clock });
 * const line = 36;
 * aplic.write32(APLIC_SOURCECFG_BASE + 4 * (line - 1), APLIC_SOURCECFG_SM_LEVEL_HIGH);
 * aplic.write32(APLIC_SETIENUM, line);
 * aplic.write32(APLIC_IDC_BASE + APLIC_IDC_IDELIVERY, 1);
 * aplic.write32(APLIC_DOMAINCFG, APLIC_DOMAINCFG_IE);
 * const taken: number[] = [];
 * aplic.onWired = (l) => {
 *   taken.push(l);
 *   if (taken.length === 2) aplic.setWire(line, false); // the handler quiets the device
 * };
 * aplic.setWire(line, true);
 * clock.advance(10_000);
 * assert.deepEqual(taken, [36, 36]);
 * ```
 */
export class Aplic implements MmioHandler {
  /** Number of sources (identities 1..sources). */
  readonly sources: number;

  readonly #clock: Clock;
  readonly #costs: Readonly<CostTable>;
  readonly #hart: _HartInput;
  readonly #sourcecfg: Uint32Array;
  readonly #target: Uint32Array;
  readonly #input: Uint32Array;
  readonly #pending: Uint32Array;
  readonly #enabled: Uint32Array;
  #domaincfg = 0;
  #idelivery = 0;
  #iforce = 0;
  #ithreshold = 0;
  #onWired: ((line: number) => void) | undefined;

  /** Creates a domain with every source inactive and delivery off, as after reset. */
  constructor(opts: AplicOptions) {
    this.#clock = opts.clock;
    this.#costs = opts.clock.costs;
    this.sources = Math.max(1, Math.min(1023, opts.sources ?? 96));
    const n = this.sources + 1;
    const words = (n + 31) >>> 5;
    this.#sourcecfg = new Uint32Array(n);
    this.#target = new Uint32Array(n);
    this.#input = new Uint32Array(words);
    this.#pending = new Uint32Array(words);
    this.#enabled = new Uint32Array(words);
    this.#hart = new _HartInput(opts.clock, () => this.#take());
  }

  /** The CPU side's handler: called with the claimed source when the hart takes an interrupt. */
  get onWired(): ((line: number) => void) | undefined {
    return this.#onWired;
  }

  set onWired(fn: ((line: number) => void) | undefined) {
    this.#onWired = fn;
    this.#update();
  }

  /** Drives input `line` (the `IrqSink` contract); unknown lines are ignored. */
  setWire(line: number, level: boolean): void {
    if (!this.#valid(line)) return;
    const w = line >>> 5, b = 1 << (line & 31);
    const was = (this.#input[w] & b) !== 0;
    if (was === level) return;
    if (level) this.#input[w] |= b;
    else this.#input[w] &= ~b;
    const sm = this.#sourcecfg[line];
    const rect =
      level !== (sm === APLIC_SOURCECFG_SM_EDGE_FALL || sm === APLIC_SOURCECFG_SM_LEVEL_LOW);
    if (sm === APLIC_SOURCECFG_SM_LEVEL_HIGH || sm === APLIC_SOURCECFG_SM_LEVEL_LOW) {
      this.#setBit(this.#pending, line, rect);
    } else if (
      (sm === APLIC_SOURCECFG_SM_EDGE_RISE || sm === APLIC_SOURCECFG_SM_EDGE_FALL) && rect
    ) {
      this.#setBit(this.#pending, line, true);
    }
    this.#update();
  }

  /** True when source `line` is pending. */
  isPending(line: number): boolean {
    return this.#valid(line) && (this.#pending[line >>> 5] & (1 << (line & 31))) !== 0;
  }

  /** True when source `line` is enabled. */
  isEnabled(line: number): boolean {
    return this.#valid(line) && (this.#enabled[line >>> 5] & (1 << (line & 31))) !== 0;
  }

  /** Reads a register; unimplemented offsets read 0. */
  read32(offset: number): number {
    this.#clock.charge(this.#costs.mmio);
    const off = offset & ~3;
    if (off === APLIC_DOMAINCFG) return (APLIC_DOMAINCFG_RDONLY | this.#domaincfg) >>> 0;
    if (off >= APLIC_SOURCECFG_BASE && off < APLIC_SOURCECFG_BASE + 4 * this.sources) {
      return this.#sourcecfg[((off - APLIC_SOURCECFG_BASE) >>> 2) + 1];
    }
    if (off >= APLIC_SETIP_BASE && off < APLIC_SETIP_BASE + 128) {
      return this.#word(this.#pending, (off - APLIC_SETIP_BASE) >>> 2);
    }
    if (off >= APLIC_CLRIP_BASE && off < APLIC_CLRIP_BASE + 128) {
      return this.#rectifiedWord((off - APLIC_CLRIP_BASE) >>> 2);
    }
    if (off >= APLIC_SETIE_BASE && off < APLIC_SETIE_BASE + 128) {
      return this.#word(this.#enabled, (off - APLIC_SETIE_BASE) >>> 2);
    }
    if (off >= APLIC_TARGET_BASE && off < APLIC_TARGET_BASE + 4 * this.sources) {
      return this.#target[((off - APLIC_TARGET_BASE) >>> 2) + 1];
    }
    switch (off - APLIC_IDC_BASE) {
      case APLIC_IDC_IDELIVERY:
        return this.#idelivery;
      case APLIC_IDC_IFORCE:
        return this.#iforce;
      case APLIC_IDC_ITHRESHOLD:
        return this.#ithreshold;
      case APLIC_IDC_TOPI:
        return this.#topi();
      case APLIC_IDC_CLAIMI:
        return this.#claim();
    }
    return 0;
  }

  /** Writes a register; read-only and unimplemented offsets ignore writes. */
  write32(offset: number, value: number): void {
    this.#clock.charge(this.#costs.mmio);
    const off = offset & ~3;
    const v = value >>> 0;
    if (off === APLIC_DOMAINCFG) {
      this.#domaincfg = v & APLIC_DOMAINCFG_IE;
    } else if (off >= APLIC_SOURCECFG_BASE && off < APLIC_SOURCECFG_BASE + 4 * this.sources) {
      this.#setSourcecfg(((off - APLIC_SOURCECFG_BASE) >>> 2) + 1, v);
    } else if (off >= APLIC_SETIP_BASE && off < APLIC_SETIP_BASE + 128) {
      this.#forBits((off - APLIC_SETIP_BASE) << 3, v, (i) => this.#softPend(i, true));
    } else if (off === APLIC_SETIPNUM || off === APLIC_SETIPNUM_LE) {
      this.#softPend(v, true);
    } else if (off >= APLIC_CLRIP_BASE && off < APLIC_CLRIP_BASE + 128) {
      this.#forBits((off - APLIC_CLRIP_BASE) << 3, v, (i) => this.#softPend(i, false));
    } else if (off === APLIC_CLRIPNUM) {
      this.#softPend(v, false);
    } else if (off >= APLIC_SETIE_BASE && off < APLIC_SETIE_BASE + 128) {
      this.#forBits((off - APLIC_SETIE_BASE) << 3, v, (i) => this.#enable(i, true));
    } else if (off === APLIC_SETIENUM) {
      this.#enable(v, true);
    } else if (off >= APLIC_CLRIE_BASE && off < APLIC_CLRIE_BASE + 128) {
      this.#forBits((off - APLIC_CLRIE_BASE) << 3, v, (i) => this.#enable(i, false));
    } else if (off === APLIC_CLRIENUM) {
      this.#enable(v, false);
    } else if (off >= APLIC_TARGET_BASE && off < APLIC_TARGET_BASE + 4 * this.sources) {
      const i = ((off - APLIC_TARGET_BASE) >>> 2) + 1;
      // Hart index is WARL 0 (one hart); IPRIO 0 is not a priority and reads back as 1.
      if (this.#active(i)) this.#target[i] = (v & APLIC_TARGET_IPRIO_MASK) || 1;
    } else {
      switch (off - APLIC_IDC_BASE) {
        case APLIC_IDC_IDELIVERY:
          this.#idelivery = v & 1;
          break;
        case APLIC_IDC_IFORCE:
          this.#iforce = v & 1;
          break;
        case APLIC_IDC_ITHRESHOLD:
          this.#ithreshold = v & APLIC_TARGET_IPRIO_MASK;
          break;
      }
    }
    this.#update();
  }

  /** Reads 8 bytes as two 4-byte accesses, low word first. */
  read64(offset: number): bigint {
    return read64Split(this, offset);
  }

  /** Writes 8 bytes as two 4-byte accesses, low word first. */
  write64(offset: number, value: bigint): void {
    write64Split(this, offset, value);
  }

  #valid(line: number): boolean {
    return Number.isInteger(line) && line >= 1 && line <= this.sources;
  }

  #active(i: number): boolean {
    return this.#sourcecfg[i] !== APLIC_SOURCECFG_SM_INACTIVE;
  }

  #isLevel(i: number): boolean {
    const sm = this.#sourcecfg[i];
    return sm === APLIC_SOURCECFG_SM_LEVEL_HIGH || sm === APLIC_SOURCECFG_SM_LEVEL_LOW;
  }

  #rectified(i: number): boolean {
    const sm = this.#sourcecfg[i];
    if (sm === APLIC_SOURCECFG_SM_INACTIVE || sm === APLIC_SOURCECFG_SM_DETACH) return false;
    const inv = sm === APLIC_SOURCECFG_SM_EDGE_FALL || sm === APLIC_SOURCECFG_SM_LEVEL_LOW;
    return ((this.#input[i >>> 5] & (1 << (i & 31))) !== 0) !== inv;
  }

  #setBit(arr: Uint32Array, i: number, on: boolean): void {
    if (on) arr[i >>> 5] |= 1 << (i & 31);
    else arr[i >>> 5] &= ~(1 << (i & 31));
  }

  #word(arr: Uint32Array, w: number): number {
    return w < arr.length ? arr[w] >>> 0 : 0;
  }

  #rectifiedWord(w: number): number {
    let v = 0;
    for (let b = 0; b < 32; b++) {
      const i = w * 32 + b;
      if (this.#valid(i) && this.#rectified(i)) v |= 1 << b;
    }
    return v >>> 0;
  }

  #forBits(first: number, v: number, fn: (i: number) => void): void {
    for (let b = 0; b < 32; b++) if ((v >>> b) & 1) fn(first + b);
  }

  #setSourcecfg(i: number, v: number): void {
    // Delegation is not implemented, so D is WARL 0 and a write with D set selects Inactive.
    let sm = v & APLIC_SOURCECFG_D ? 0 : v & APLIC_SOURCECFG_SM_MASK;
    if (sm === 2 || sm === 3) sm = APLIC_SOURCECFG_SM_INACTIVE; // reserved encodings
    this.#sourcecfg[i] = sm;
    if (sm === APLIC_SOURCECFG_SM_INACTIVE) {
      this.#setBit(this.#pending, i, false);
      this.#setBit(this.#enabled, i, false);
      this.#target[i] = 0;
      return;
    }
    if (this.#target[i] === 0) this.#target[i] = 1;
    if (this.#isLevel(i)) this.#setBit(this.#pending, i, this.#rectified(i));
  }

  /** setip/clrip: only Edge and Detached sources' pending bits are software-writable. */
  #softPend(i: number, on: boolean): void {
    if (!this.#valid(i) || !this.#active(i) || this.#isLevel(i)) return;
    this.#setBit(this.#pending, i, on);
  }

  #enable(i: number, on: boolean): void {
    if (this.#valid(i) && this.#active(i)) this.#setBit(this.#enabled, i, on);
  }

  /** The top pending-and-enabled interrupt as `topi` encodes it, or 0. */
  #topi(): number {
    let best = 0, bestPrio = 256;
    for (let w = 0; w < this.#pending.length; w++) {
      let bits = this.#pending[w] & this.#enabled[w];
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const i = w * 32 + b;
        const prio = this.#target[i] & APLIC_TARGET_IPRIO_MASK;
        if (this.#ithreshold !== 0 && prio >= this.#ithreshold) continue;
        if (prio < bestPrio) {
          best = i;
          bestPrio = prio;
        }
      }
    }
    return best === 0 ? 0 : ((best << APLIC_IDC_TOPI_ID_SHIFT) | bestPrio) >>> 0;
  }

  /** `claimi`: returns `topi` and clears the claimed pending bit unless the source is a level. */
  #claim(): number {
    const topi = this.#topi();
    if (topi === 0) {
      this.#iforce = 0;
      return 0;
    }
    const i = topi >>> APLIC_IDC_TOPI_ID_SHIFT;
    if (!this.#isLevel(i)) this.#setBit(this.#pending, i, false);
    return topi;
  }

  #asserted(): boolean {
    return (this.#domaincfg & APLIC_DOMAINCFG_IE) !== 0 && this.#idelivery !== 0 &&
      (this.#iforce !== 0 || this.#topi() !== 0);
  }

  #update(): void {
    if (this.#onWired !== undefined && this.#asserted()) this.#hart.kick();
  }

  #take(): void {
    if (!this.#asserted()) return;
    const topi = this.#claim();
    if (topi !== 0) this.#onWired?.(topi >>> APLIC_IDC_TOPI_ID_SHIFT);
    this.#update();
  }
}
