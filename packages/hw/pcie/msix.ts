/**
 * MSI-X (PCIe §7.7.2): the capability's control bits, the vector table and the pending-bit
 * array (PBA) a function exposes in one of its BARs.
 *
 * A vector is delivered as a 32-bit memory write of the entry's data to the entry's address,
 * issued by the function like any of its writes (so through the IOMMU when the platform
 * translates MSIs). While MSI-X is enabled but the function or the vector is masked, triggering
 * sets the vector's pending bit instead, and unmasking sends the held message and clears the bit
 * (PCIe §6.1.4.5). Bus Master Enable clear holds messages the same way (the function may not
 * write), and setting it sends them. While MSI-X is disabled, triggers are dropped (no INTx is
 * modelled).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import {
  type ConfigSpace,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_MSIX_ENTRY_CTRL_MASKBIT,
  PCI_MSIX_ENTRY_SIZE,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
} from "./config.ts";

/** Where the table and PBA live and how many vectors there are. */
export interface MsixOptions {
  /** Number of vectors (1..2048). */
  vectors: number;
  /** BAR holding the table (and, in this model, the PBA). */
  bar: number;
  /** Offset of the table in the BAR (8-byte aligned). */
  tableOffset: number;
  /** Offset of the PBA in the BAR (8-byte aligned). */
  pbaOffset: number;
}

/** Sends one message: a 32-bit write of `data` to the 64-bit address `addrLo`/`addrHi`. */
export type MsiSend = (addrLo: number, addrHi: number, data: number) => void;

/**
 * The MSI-X state of one function; its {@linkcode PciFunction} routes BAR accesses in the table
 * and PBA ranges here and forwards control-word writes to {@linkcode controlWritten}.
 */
export class Msix {
  /** Number of vectors. */
  readonly vectors: number;
  /** BAR indicator of the table and PBA. */
  readonly bar: number;
  /** Offset of the table in the BAR. */
  readonly tableOffset: number;
  /** Offset of the PBA in the BAR. */
  readonly pbaOffset: number;
  /** Configuration-space offset of the capability. */
  readonly cap: number;

  readonly #cfg: ConfigSpace;
  readonly #clock: Clock;
  readonly #send: MsiSend;
  readonly #table: Uint32Array;
  readonly #pba: Uint32Array;

  /** Creates the state for a capability at `cap` in `cfg`; every vector starts masked. */
  constructor(cfg: ConfigSpace, cap: number, opts: MsixOptions, clock: Clock, send: MsiSend) {
    this.vectors = opts.vectors;
    this.bar = opts.bar;
    this.tableOffset = opts.tableOffset;
    this.pbaOffset = opts.pbaOffset;
    this.cap = cap;
    this.#cfg = cfg;
    this.#clock = clock;
    this.#send = send;
    this.#table = new Uint32Array(opts.vectors * 4);
    for (let v = 0; v < opts.vectors; v++) this.#table[v * 4 + 3] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
    this.#pba = new Uint32Array((opts.vectors + 31) >>> 5);
  }

  /** Size in bytes of the table. */
  get tableSize(): number {
    return this.vectors * PCI_MSIX_ENTRY_SIZE;
  }

  /** Size in bytes of the PBA (whole qwords). */
  get pbaSize(): number {
    return ((this.vectors + 63) >>> 6) * 8;
  }

  /** MSI-X Enable is set. */
  get enabled(): boolean {
    return (this.#cfg.get16(this.cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_ENABLE) !== 0;
  }

  /** Function Mask is set. */
  get functionMasked(): boolean {
    return (this.#cfg.get16(this.cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_MASKALL) !== 0;
  }

  /** True when `vector`'s Mask bit is set. */
  isMasked(vector: number): boolean {
    return (this.#table[vector * 4 + 3] & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0;
  }

  /** True when `vector`'s pending bit is set. */
  isPending(vector: number): boolean {
    return (this.#pba[vector >>> 5] & (1 << (vector & 31))) !== 0;
  }

  /** The function signals `vector`: sent now, held pending while masked, dropped if disabled. */
  notify(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.vectors || !this.enabled) return;
    if (this.#held() || this.isMasked(vector)) {
      this.#pba[vector >>> 5] |= 1 << (vector & 31);
      return;
    }
    this.#fire(vector);
  }

  /** Sends the held messages that the control word (Enable, Function Mask) or the command
   * register (Bus Master Enable) now lets through. */
  controlWritten(): void {
    if (!this.enabled || this.#held()) return;
    for (let v = 0; v < this.vectors; v++) {
      if (this.isPending(v) && !this.isMasked(v)) this.#fire(v);
    }
  }

  /** A CPU read of the table at byte `offset` within it. */
  readTable32(offset: number): number {
    this.#clock.charge(this.#clock.costs.mmio);
    const i = offset >>> 2;
    return i < this.#table.length ? this.#table[i] : 0;
  }

  /** A CPU write of the table; unmasking a pending vector sends it. */
  writeTable32(offset: number, value: number): void {
    this.#clock.charge(this.#clock.costs.mmio);
    const i = offset >>> 2;
    if (i >= this.#table.length) return;
    const field = i & 3;
    // The address is dword aligned; only the Mask bit of vector control is implemented.
    if (field === 0) this.#table[i] = value & ~3;
    else if (field === 3) this.#table[i] = value & PCI_MSIX_ENTRY_CTRL_MASKBIT;
    else this.#table[i] = value >>> 0;
    if (field === 3) {
      const v = i >>> 2;
      if (this.isPending(v) && !this.isMasked(v) && this.enabled && !this.#held()) {
        this.#fire(v);
      }
    }
  }

  /** A CPU read of the PBA at byte `offset` within it (writes to the PBA are ignored). */
  readPba32(offset: number): number {
    this.#clock.charge(this.#clock.costs.mmio);
    const i = offset >>> 2;
    return i < this.#pba.length ? this.#pba[i] >>> 0 : 0;
  }

  /** Every vector is held: the function is masked or may not write. */
  #held(): boolean {
    return this.functionMasked || (this.#cfg.get16(PCI_COMMAND) & PCI_COMMAND_MASTER) === 0;
  }

  #fire(v: number): void {
    this.#pba[v >>> 5] &= ~(1 << (v & 31));
    const t = v * 4;
    this.#send(this.#table[t], this.#table[t + 1], this.#table[t + 2]);
  }
}
