/**
 * The CPU side of the simulated timeline: what the kernel's own work costs, and the view of
 * physical memory through which the machine's kernel pays for its RAM accesses.
 *
 * `hw`'s `CostTable` prices what devices do (MMIO round trips, DMA, the IOMMU's
 * accesses); without this the CPU would be free, and a `dma_map_page()` (PTE reads and writes in
 * RAM, no register access) would take no simulated time at all.
 *
 * @module
 */
import type { Clock, PhysicalMemory } from "@iommu-lab/hw";
import type { PhysMem } from "@iommu-lab/kernel";

/**
 * What the CPU's own work costs, in nanoseconds of simulated time (the part of the machine's
 * cost table that `hw`'s `CostTable` leaves out).
 *
 * Round figures for an RV64 application core at about 2 GHz with a shared L2: they make CPU and
 * device work comparable on one timeline, not any one chip's figures.
 */
export interface CpuCostTable {
  /**
   * One 1- to 8-byte load or store of RAM by the kernel: a PTE, a command-queue slot, a device
   * context. Page tables and queues being hot, this is an L1/L2 hit mix, not a DRAM round trip.
   */
  memAccess: number;
  /**
   * One 64-byte cache line of a bulk access: `clear_page()`, a `memcpy()` or `memset()` into a
   * buffer, a `memcmp()` reading one back (8 ns a line is 8 GB/s, the DMA link's speed).
   */
  memLine: number;
  /**
   * The driver core around one `probe()` call: sysfs and devres setup, DMA and pinctrl
   * configuration, uevents; work the model does not run step by step.
   */
  probe: number;
}

/** The default {@linkcode CpuCostTable}. */
export const DEFAULT_CPU_COSTS: Readonly<CpuCostTable> = Object.freeze({
  memAccess: 10,
  memLine: 8,
  probe: 20_000,
});

/** Bytes of a cache line, the unit bulk accesses are charged in. */
const _LINE = 64;

/**
 * Physical memory as the machine's CPU sees it: the bus, with every access charged to the clock
 * ({@linkcode CpuCostTable.memAccess} per word, {@linkcode CpuCostTable.memLine} per cache line
 * a bulk access touches). The silicon keeps using the bus directly: device and IOMMU accesses are
 * priced by `hw`'s cost table.
 *
 * @example A PTE store costs memAccess; clearing a page costs 64 lines
 * ```ts
 * import assert from "node:assert/strict";
 * import { Clock, PhysicalMemory } from "@iommu-lab/hw";
 * import { CpuMem, DEFAULT_CPU_COSTS } from "@iommu-lab/machine";
 *
 * const bus = new PhysicalMemory();
 * bus.addRam(0x8000_0000, 1 << 20);
 * const clock = new Clock();
 * const mem = new CpuMem(bus, clock, DEFAULT_CPU_COSTS);
 * mem.store64(0x8000_0008, 0x1001, 0);
 * assert.equal(clock.now(), DEFAULT_CPU_COSTS.memAccess);
 * mem.fill(0x8000_1000, 4096, 0);
 * assert.equal(clock.now(), DEFAULT_CPU_COSTS.memAccess + 64 * DEFAULT_CPU_COSTS.memLine);
 * ```
 */
export class CpuMem implements PhysMem {
  readonly #mem: PhysicalMemory;
  readonly #clock: Clock;
  readonly #access: number;
  readonly #line: number;

  /** The view of `mem` whose accesses charge `costs` to `clock`. */
  constructor(mem: PhysicalMemory, clock: Clock, costs: Readonly<CpuCostTable>) {
    this.#mem = mem;
    this.#clock = clock;
    this.#access = costs.memAccess;
    this.#line = costs.memLine;
  }

  /** Non-zero when the last access failed (1 access fault, 2 poison). */
  get fault(): number {
    return this.#mem.fault;
  }

  /** Low unsigned 32 bits of the last {@linkcode CpuMem.load64}. */
  get lo(): number {
    return this.#mem.lo;
  }

  /** High unsigned 32 bits of the last {@linkcode CpuMem.load64}. */
  get hi(): number {
    return this.#mem.hi;
  }

  /** Reads 4 bytes. */
  read32(pa: number): number {
    this.#clock.charge(this.#access);
    return this.#mem.read32(pa);
  }

  /** Writes 4 bytes. */
  write32(pa: number, value: number): void {
    this.#clock.charge(this.#access);
    this.#mem.write32(pa, value);
  }

  /** Reads 8 bytes into `lo`/`hi`. */
  load64(pa: number): void {
    this.#clock.charge(this.#access);
    this.#mem.load64(pa);
  }

  /** Writes 8 bytes given as unsigned 32-bit halves. */
  store64(pa: number, lo: number, hi: number): void {
    this.#clock.charge(this.#access);
    this.#mem.store64(pa, lo, hi);
  }

  /** Atomic 64-bit compare-and-swap: one access. */
  cas64(pa: number, expLo: number, expHi: number, newLo: number, newHi: number): boolean {
    this.#clock.charge(this.#access);
    return this.#mem.cas64(pa, expLo, expHi, newLo, newHi);
  }

  /** Reads 8 bytes as a `bigint`. */
  read64(pa: number): bigint {
    this.#clock.charge(this.#access);
    return this.#mem.read64(pa);
  }

  /** Writes 8 bytes from a `bigint`. */
  write64(pa: number, value: bigint): void {
    this.#clock.charge(this.#access);
    this.#mem.write64(pa, value);
  }

  /** Copies bytes out of RAM. */
  readBytes(pa: number, len: number): Uint8Array {
    this.#bulk(pa, len);
    return this.#mem.readBytes(pa, len);
  }

  /** Copies RAM at `pa` into `out`, charged as a bulk read. */
  copyOut(pa: number, out: Uint8Array): void {
    this.#bulk(pa, out.length);
    this.#mem.copyOut(pa, out);
  }

  /** Copies bytes into RAM. */
  writeBytes(pa: number, data: Uint8Array): void {
    this.#bulk(pa, data.length);
    this.#mem.writeBytes(pa, data);
  }

  /** Fills RAM with a byte value. */
  fill(pa: number, len: number, byte = 0): void {
    this.#bulk(pa, len);
    this.#mem.fill(pa, len, byte);
  }

  #bulk(pa: number, len: number): void {
    if (len > 0) {
      this.#clock.charge(
        (Math.ceil((pa + len) / _LINE) - Math.floor(pa / _LINE)) * this.#line,
      );
    }
  }
}
