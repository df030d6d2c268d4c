/**
 * ECAM (PCIe enhanced configuration access mechanism): configuration space of every function,
 * memory-mapped at `bus << 20 | device << 15 | function << 12 | register`.
 *
 * @module
 */
import type { MmioHandler } from "../memory.ts";
import { read64Split, write64Split } from "../_u64.ts";
import type { RootComplex } from "./root_complex.ts";

/** Shift of the bus number in an ECAM offset. */
export const ECAM_BUS_SHIFT = 20;
/** Shift of the device number in an ECAM offset. */
export const ECAM_DEVICE_SHIFT = 15;
/** Shift of the function number in an ECAM offset. */
export const ECAM_FUNCTION_SHIFT = 12;

/**
 * The ECAM window's handler. Reads of absent functions return all-ones (how enumeration finds
 * empty slots) and writes to them are dropped; 8-byte accesses are two dword accesses.
 */
export class Ecam implements MmioHandler {
  /** Number of buses the window covers. */
  readonly buses: number;
  readonly #rc: RootComplex;

  /** Creates the handler for `rc`, covering `buses` buses. */
  constructor(rc: RootComplex, buses: number) {
    this.#rc = rc;
    this.buses = buses;
  }

  /** Reads the configuration dword at ECAM offset `offset`. */
  read32(offset: number): number {
    this.#rc.clock.charge(this.#rc.clock.costs.mmio);
    const fn = this.#rc.functionAt(offset >>> ECAM_FUNCTION_SHIFT);
    return fn === undefined ? 0xffff_ffff : fn.configRead32(offset & 0xfff);
  }

  /** Writes the configuration dword at ECAM offset `offset`. */
  write32(offset: number, value: number): void {
    this.#rc.clock.charge(this.#rc.clock.costs.mmio);
    this.#rc.functionAt(offset >>> ECAM_FUNCTION_SHIFT)?.configWrite32(offset & 0xfff, value);
  }

  /** Two dword reads, low first. */
  read64(offset: number): bigint {
    return read64Split(this, offset);
  }

  /** Two dword writes, low first. */
  write64(offset: number, value: bigint): void {
    write64Split(this, offset, value);
  }
}
