/**
 * The IOMMU's work priced. The model charges nothing for its registers on the platform bus, nor
 * for the commands it runs: {@linkcode IommuWindow} prices each access to the platform IOMMU's
 * page (the PCI IOMMU's BAR is priced by its function), and {@linkcode priceCommands} charges
 * each command the IOMMU consumes and, on a traced machine, records it — wherever the command
 * runs: in the `cqt` or `cqcsr` write that made it runnable, or later, in the clock event of an
 * ATS Invalidation Completion (or timeout) that lets a waiting IOFENCE.C complete.
 *
 * @module
 */
import type { Clock, Iommu, MmioHandler } from "@iommu-lab/hw";
import {
  RISCV_IOMMU_CMD_ATS_OPCODE,
  RISCV_IOMMU_CMD_IODIR_OPCODE,
  RISCV_IOMMU_CMD_IOFENCE_OPCODE,
  RISCV_IOMMU_CMD_IOTINVAL_OPCODE,
} from "@iommu-lab/hw/regs";
import { type Trace, TRACK_IOMMU } from "./trace.ts";

/** The name of a command by opcode and func3, as the spec names it. */
function _commandName(opcode: number, func: number): string {
  switch (opcode) {
    case RISCV_IOMMU_CMD_IOTINVAL_OPCODE:
      return func === 0 ? "IOTINVAL.VMA" : func === 1 ? "IOTINVAL.GVMA" : `IOTINVAL.${func}`;
    case RISCV_IOMMU_CMD_IOFENCE_OPCODE:
      return func === 0 ? "IOFENCE.C" : `IOFENCE.${func}`;
    case RISCV_IOMMU_CMD_IODIR_OPCODE:
      return func === 0 ? "IODIR.INVAL_DDT" : func === 1 ? "IODIR.INVAL_PDT" : `IODIR.${func}`;
    case RISCV_IOMMU_CMD_ATS_OPCODE:
      return func === 0 ? "ATS.INVAL" : func === 1 ? "ATS.PRGR" : `ATS.${func}`;
  }
  return `opcode ${opcode}`;
}

/** A doubleword from its unsigned 32-bit halves, for the trace. */
function _dword(lo: number, hi: number): bigint {
  return BigInt(hi) << 32n | BigInt(lo);
}

/**
 * Charges `clock.costs.command` for each command `iommu` consumes, at the simulated time it
 * runs, so a driver polling `cqh` sees it done that much later. With a `trace`, each command is a
 * `command` span of that length on the IOMMU track, named by opcode, with its slot and both
 * doublewords.
 */
export function priceCommands(iommu: Iommu, clock: Clock, trace: Trace | null): void {
  const cost = clock.costs.command;
  iommu.commandObserver = trace === null
    ? () => clock.charge(cost)
    : (index, d0lo, d0hi, d1lo, d1hi) => {
      const start = clock.now();
      clock.charge(cost);
      trace.complete(
        "command",
        _commandName(d0lo & 0x7f, (d0lo >>> 7) & 7),
        TRACK_IOMMU,
        start,
        { slot: index, dword0: _dword(d0lo, d0hi), dword1: _dword(d1lo, d1hi) },
      );
    };
}

/** The platform IOMMU's register page with each access charged `mmio` (the round trip). */
export class IommuWindow implements MmioHandler {
  readonly #inner: MmioHandler;
  readonly #clock: Clock;
  readonly #mmio: number;

  /** `inner` (the IOMMU, or a vendor IOMMU around it) with its accesses charged to `clock`. */
  constructor(inner: MmioHandler, clock: Clock, mmio: number) {
    this.#inner = inner;
    this.#clock = clock;
    this.#mmio = mmio;
  }

  /** Reads 4 bytes. */
  read32(offset: number): number {
    this.#clock.charge(this.#mmio);
    return this.#inner.read32(offset);
  }

  /** Reads 8 bytes. */
  read64(offset: number): bigint {
    this.#clock.charge(this.#mmio);
    return this.#inner.read64(offset);
  }

  /** Writes 4 bytes. */
  write32(offset: number, value: number): void {
    this.#clock.charge(this.#mmio);
    this.#inner.write32(offset, value);
  }

  /** Writes 8 bytes. */
  write64(offset: number, value: bigint): void {
    this.#clock.charge(this.#mmio);
    this.#inner.write64(offset, value);
  }
}
