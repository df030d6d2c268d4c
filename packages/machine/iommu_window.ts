/**
 * The IOMMU's registers with their work priced: the platform IOMMU's page on the bus, and the
 * PCI IOMMU's BAR as `ioremap()` hands it out. The IOMMU model runs the command queue inside the
 * MMIO write that makes entries runnable, and charges nothing for it (nor, on the platform bus,
 * for the access); this window prices both and, on a traced machine, records each command.
 *
 * @module
 */
import type { Clock, Iommu, MmioHandler, PhysicalMemory } from "@iommu-lab/hw";
import {
  RISCV_IOMMU_CMD_ATS_OPCODE,
  RISCV_IOMMU_CMD_IODIR_OPCODE,
  RISCV_IOMMU_CMD_IOFENCE_OPCODE,
  RISCV_IOMMU_CMD_IOTINVAL_OPCODE,
  RISCV_IOMMU_CQB_PPN,
  RISCV_IOMMU_CQCSR_CQEN,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
  RISCV_IOMMU_REG_CQT,
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

/** What an {@linkcode IommuWindow} needs besides the registers and the IOMMU behind them. */
export interface IommuWindowOptions {
  /** Where commands are read back from for the trace. */
  readonly mem: PhysicalMemory;
  /** The clock the work is charged to. */
  readonly clock: Clock;
  /** The trace commands are recorded in, or null. */
  readonly trace: Trace | null;
  /** Cost of each access to the registers themselves (0 when the front end charges it). */
  readonly mmio: number;
}

/**
 * The IOMMU's registers with their work priced: each access costs `mmio`, and a write to `cqt`
 * (or to `cqcsr`, restarting the queue) charges `costs.command` for each entry the IOMMU
 * consumed in it, so the driver's following `cqh` poll sees them done that much later. With a
 * trace, each entry is a `command` span on the IOMMU track, named by opcode and holding both
 * dwords.
 */
export class IommuWindow implements MmioHandler {
  readonly #inner: MmioHandler;
  readonly #iommu: Iommu;
  readonly #mem: PhysicalMemory;
  readonly #clock: Clock;
  readonly #trace: Trace | null;
  readonly #mmio: number;
  /** CQCSR.CQEN as last written: turning it on zeroes `cqh` before commands run. */
  #cqen = false;

  /** The window `inner` onto the registers of `iommu` (often `iommu` itself). */
  constructor(inner: MmioHandler, iommu: Iommu, opts: IommuWindowOptions) {
    this.#inner = inner;
    this.#iommu = iommu;
    this.#mem = opts.mem;
    this.#clock = opts.clock;
    this.#trace = opts.trace?.enabled ? opts.trace : null;
    this.#mmio = opts.mmio;
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

  /** Writes 4 bytes, then charges the commands the write ran. */
  write32(offset: number, value: number): void {
    this.#clock.charge(this.#mmio);
    if (offset !== RISCV_IOMMU_REG_CQT && offset !== RISCV_IOMMU_REG_CQCSR) {
      this.#inner.write32(offset, value);
      return;
    }
    let head = this.#iommu.read32(RISCV_IOMMU_REG_CQH);
    if (offset === RISCV_IOMMU_REG_CQCSR) {
      const en = (value & RISCV_IOMMU_CQCSR_CQEN) !== 0;
      if (en && !this.#cqen) head = 0;
      this.#cqen = en;
    }
    this.#inner.write32(offset, value);
    this.#ran(head);
  }

  /** Writes 8 bytes (no 64-bit register makes commands runnable). */
  write64(offset: number, value: bigint): void {
    this.#clock.charge(this.#mmio);
    this.#inner.write64(offset, value);
  }

  #ran(head: number): void {
    const now = this.#iommu.read32(RISCV_IOMMU_REG_CQH);
    if (now === head) return;
    const clock = this.#clock;
    const cost = clock.costs.command;
    // Only a queue that wrapped needs its size.
    const size = now > head ? 0 : 2 << (this.#iommu.read32(RISCV_IOMMU_REG_CQB) & 0x1f);
    const n = now > head ? now - head : now + size - head;
    if (this.#trace === null) {
      clock.charge(cost * n);
      return;
    }
    const cqb = this.#iommu.read64(RISCV_IOMMU_REG_CQB);
    const ring = Number((cqb & RISCV_IOMMU_CQB_PPN) >> 10n) * 4096;
    const entries = 2 << Number(cqb & 0x1fn);
    for (let k = 0, i = head; k < n; k++, i = (i + 1) % entries) {
      const at = ring + i * 16;
      const lo = this.#mem.read32(at);
      const start = clock.now();
      clock.charge(cost);
      this.#trace.complete(
        "command",
        _commandName(lo & 0x7f, (lo >>> 7) & 7),
        TRACK_IOMMU,
        start,
        { slot: i, dword0: this.#mem.read64(at), dword1: this.#mem.read64(at + 8) },
      );
    }
  }
}
