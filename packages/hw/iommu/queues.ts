/**
 * The register mechanics shared by the three in-memory queues (command, fault, page-request): the
 * base register's WARL rules, head/tail indices, the control/status register's enable/on/busy
 * sequencing and RW1C error bits, and the producer side of the two queues the IOMMU writes records
 * to (spec §5.6–§5.17 and chapter 3 "In-memory queue interface").
 *
 * @module
 */
import { MEM_OK, type PhysicalMemory } from "../memory.ts";
import { hi32, lo32 } from "../_u64.ts";
import {
  RISCV_IOMMU_QUEUE_ACTIVE,
  RISCV_IOMMU_QUEUE_BUSY,
  RISCV_IOMMU_QUEUE_ENABLE,
  RISCV_IOMMU_QUEUE_INTR_ENABLE,
  RISCV_IOMMU_QUEUE_MEM_FAULT,
  RISCV_IOMMU_QUEUE_OVERFLOW,
} from "./regs.ts";

/** {@linkcode HwQueue.push} wrote the record. */
export const QUEUE_RECORD_WRITTEN = 0;
/** The record was dropped: the queue is off. */
export const QUEUE_RECORD_OFF = 1;
/** The record was dropped: the memory-fault bit is (now) set. */
export const QUEUE_RECORD_MEM_FAULT = 2;
/** The record was dropped: the overflow bit is (now) set. */
export const QUEUE_RECORD_OVERFLOW = 3;

/** How one queue of an IOMMU is built. */
export interface HwQueueConfig {
  /** Entry size in bytes (CQ 16, FQ 32, PQ 16). */
  entrySize: number;
  /** True for the command queue, where software owns the tail; false where it owns the head. */
  swOwnsTail: boolean;
  /** The RW1C error bits of the queue's CSR. */
  errorBits: number;
  /** Largest LOG2SZ (entries = 2^LOG2SZ) the base register accepts, 1..32. */
  maxLog2Sz: number;
  /** Physical address size in bits (the PPN field is WARL to it). */
  pas: number;
  /** A hard-wired queue location: the PPN always reads back this value. */
  fixedPpn?: number;
  /** After an enable change the CSR reads busy for this many reads. */
  busyPolls: number;
}

/**
 * One queue's registers: base (`cqb`/`fqb`/`pqb`), head, tail and CSR.
 *
 * The base register's LOG2SZ-1 field is WARL to {@linkcode HwQueueConfig.maxLog2Sz} and its PPN to
 * the PAS (or hard-wired). Writes to the base while the queue is enabled or on (UNSPECIFIED in the
 * spec) are ignored, so the indices always stay inside the queue. Writing the base clears the
 * index bits at and above LOG2SZ, of both indices.
 */
export class HwQueue {
  /** Index of the next entry the consumer reads. */
  head = 0;
  /** Index of the next entry the producer writes. */
  tail = 0;
  /** CSR bits as stored: enable, interrupt enable, error bits and the on bit (busy is derived). */
  csr = 0;
  readonly #cfg: HwQueueConfig;
  readonly #ppnMask: bigint;
  #log2SzM1 = 0;
  // Kept beside the size field: every queue step masks an index with it.
  #mask = 1;
  #ppn = 0;
  #busyReads = 0;
  #onShown = 0;

  /** Builds the queue in its reset state. */
  constructor(cfg: HwQueueConfig) {
    this.#cfg = cfg;
    this.#ppnMask = (1n << BigInt(Math.max(0, Math.min(cfg.pas, 56) - 12))) - 1n;
    this.reset();
  }

  /** Number of entries. */
  get size(): number {
    return this.#mask + 1;
  }

  /** `size - 1`: the bits of an index that are writable. */
  get mask(): number {
    return this.#mask;
  }

  /** Physical address of entry `index`. */
  entryAddr(index: number): number {
    return this.#ppn * 4096 + index * this.#cfg.entrySize;
  }

  /** True when the queue is on (active). */
  get on(): boolean {
    return (this.csr & RISCV_IOMMU_QUEUE_ACTIVE) !== 0;
  }

  /** Any of the RW1C error bits is set. */
  get errored(): boolean {
    return (this.csr & this.#cfg.errorBits) !== 0;
  }

  /** Puts the queue in its reset state: off, empty, smallest size, no errors. */
  reset(): void {
    this.head = 0;
    this.tail = 0;
    this.csr = 0;
    this.#log2SzM1 = 0;
    this.#mask = 1;
    this.#ppn = this.#cfg.fixedPpn ?? 0;
    this.#busyReads = 0;
  }

  /** The base register's value. */
  readBase(): bigint {
    return BigInt(this.#ppn) << 10n | BigInt(this.#log2SzM1);
  }

  /** A write to the base register. */
  writeBase(v: bigint): void {
    if ((this.csr & (RISCV_IOMMU_QUEUE_ENABLE | RISCV_IOMMU_QUEUE_ACTIVE)) !== 0) return;
    this.#log2SzM1 = Math.min(Number(v & 0x1fn), this.#cfg.maxLog2Sz - 1);
    this.#mask = 2 ** (this.#log2SzM1 + 1) - 1;
    this.#ppn = this.#cfg.fixedPpn ?? Number(v >> 10n & this.#ppnMask);
    this.head = (this.head & this.mask) >>> 0;
    this.tail = (this.tail & this.mask) >>> 0;
  }

  /** A write to the software-owned index (`cqt`, `fqh`, `pqh`): only the low LOG2SZ bits stick. */
  writeSwIndex(v: number): void {
    const i = (v & this.mask) >>> 0;
    if (this.#cfg.swOwnsTail) this.tail = i;
    else this.head = i;
  }

  /** The CSR as software reads it; counts down the busy window. */
  readCsr(): number {
    if (this.#busyReads === 0) return this.csr;
    this.#busyReads--;
    return (this.csr & ~RISCV_IOMMU_QUEUE_ACTIVE | this.#onShown | RISCV_IOMMU_QUEUE_BUSY) >>> 0;
  }

  /**
   * A write to the CSR: enable and interrupt enable are RW, the error bits RW1C.
   * Enabling (0→1) zeroes the IOMMU-owned index, clears every error bit and turns the queue on;
   * disabling turns it off. Everything happens at once; the busy bit only shows it.
   */
  writeCsr(v: number): void {
    const keep = RISCV_IOMMU_QUEUE_ENABLE | RISCV_IOMMU_QUEUE_INTR_ENABLE;
    const wasOn = this.csr & RISCV_IOMMU_QUEUE_ACTIVE;
    const wasEn = this.csr & RISCV_IOMMU_QUEUE_ENABLE;
    const en = v & RISCV_IOMMU_QUEUE_ENABLE;
    let csr = (this.csr & ~keep | v & keep) & ~(v & this.#cfg.errorBits);
    if (en && !wasEn) {
      if (this.#cfg.swOwnsTail) this.head = 0;
      else this.tail = 0;
      csr = csr & ~this.#cfg.errorBits | RISCV_IOMMU_QUEUE_ACTIVE;
    } else if (!en && wasEn) {
      csr &= ~RISCV_IOMMU_QUEUE_ACTIVE;
    }
    this.csr = csr >>> 0;
    if (en !== wasEn) {
      this.#busyReads = this.#cfg.busyPolls;
      this.#onShown = wasOn;
    }
  }

  /**
   * Appends a record given as doubleword halves (`rec[2i]` low, `rec[2i + 1]` high of dword i)
   * when the queue is on, has no error bit set and is not full; sets the overflow bit when it is
   * full (tail == head − 1) and the memory-fault bit when a store faults. Returns one of the
   * `QUEUE_RECORD_*` outcomes.
   */
  push(mem: PhysicalMemory, rec: Uint32Array, be: boolean): number {
    if (!this.on) return QUEUE_RECORD_OFF;
    if (this.csr & RISCV_IOMMU_QUEUE_MEM_FAULT) return QUEUE_RECORD_MEM_FAULT;
    if (this.csr & RISCV_IOMMU_QUEUE_OVERFLOW) return QUEUE_RECORD_OVERFLOW;
    const next = ((this.tail + 1) & this.mask) >>> 0;
    if (next === this.head) {
      this.csr |= RISCV_IOMMU_QUEUE_OVERFLOW;
      return QUEUE_RECORD_OVERFLOW;
    }
    const addr = this.entryAddr(this.tail);
    for (let i = 0; i < rec.length; i += 2) {
      mem.store64(addr + i * 4, rec[i], rec[i + 1], be);
      if (mem.fault !== MEM_OK) {
        this.csr |= RISCV_IOMMU_QUEUE_MEM_FAULT;
        return QUEUE_RECORD_MEM_FAULT;
      }
    }
    this.tail = next;
    return QUEUE_RECORD_WRITTEN;
  }
}

/**
 * Encodes a fault record (spec §3.2 "Fault/Event-Queue") into `out` (8 halves). PV=0 forces PID and
 * PRIV to 0; TTYP 0 forces DID, PV, PID and PRIV to 0.
 */
export function encodeFaultRecord(
  out: Uint32Array,
  cause: number,
  ttyp: number,
  did: number,
  pv: boolean,
  pid: number,
  priv: boolean,
  iotval: bigint,
  iotval2: bigint,
): void {
  const inbound = ttyp !== 0;
  const withPid = inbound && pv;
  out[0] = (cause & 0xfff | (withPid ? (pid & 0xfffff) << 12 : 0)) >>> 0;
  out[1] = ((withPid ? 1 : 0) | (withPid && priv ? 2 : 0) | (ttyp & 0x3f) << 2 |
    (inbound ? (did & 0xffffff) << 8 : 0)) >>> 0;
  out[2] = 0;
  out[3] = 0;
  out[4] = lo32(iotval);
  out[5] = hi32(iotval);
  out[6] = lo32(iotval2);
  out[7] = hi32(iotval2);
}

/**
 * A PCIe Page Request message, as the page-request queue records it (spec §3.3 "Page-Request-
 * Queue").
 */
export interface PageRequest {
  /** Requester device_id. */
  deviceId: number;
  /** The request carries a PASID. */
  pidValid: boolean;
  /** PASID (process_id). */
  pid: number;
  /** Privilege Mode Requested (only with a PASID). */
  priv: boolean;
  /** Execute Requested (only with a PASID). */
  exec: boolean;
  /** Read access requested. */
  read: boolean;
  /** Write access requested. */
  write: boolean;
  /** Last request of its Page Request Group. */
  last: boolean;
  /** Page Request Group Index (9 bits). */
  prgIndex: number;
  /** Low 32 bits of the page address (bits 11:0 ignored). */
  addrLo: number;
  /** High 32 bits of the page address. */
  addrHi: number;
}

/** Encodes a page-request record into `out` (4 halves); PRIV and EXEC need a PASID. */
export function encodePageRequest(out: Uint32Array, pr: PageRequest): void {
  const pv = pr.pidValid;
  out[0] = (pv ? (pr.pid & 0xfffff) << 12 : 0) >>> 0;
  out[1] = ((pv ? 1 : 0) | (pv && pr.priv ? 2 : 0) | (pv && pr.exec ? 4 : 0) |
    (pr.deviceId & 0xffffff) << 8) >>> 0;
  out[2] = ((pr.read ? 1 : 0) | (pr.write ? 2 : 0) | (pr.last ? 4 : 0) |
    (pr.prgIndex & 0x1ff) << 3 | pr.addrLo & ~0xfff) >>> 0;
  out[3] = pr.addrHi >>> 0;
}
