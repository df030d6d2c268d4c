/**
 * The private contract between the bus-agnostic core (`iommu.ts`), the bus glue and the series
 * packages: the device and queue structures and the MMIO accessors. Mirrors
 * drivers/iommu/riscv/iommu.h.
 *
 * Upstream state tracked: iommu.h as merged for Linux v7.2 (unchanged in substance since the v10
 * series merged for v6.13). Departures are marked where they are made (the README lists them).
 *
 * @module
 */
import {
  type Device,
  Errno,
  type IoMem,
  PollTimeout,
  RatelimitState,
  read_poll_timeout_backoff,
  readl,
  readq,
  writel,
  writeq,
} from "@iommu-lab/kernel";
import { DevIommu, IommuDevice } from "@iommu-lab/iommu";
import {
  RISCV_IOMMU_INTR_CQ,
  RISCV_IOMMU_INTR_FQ,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_FQB,
  RISCV_IOMMU_REG_FQCSR,
  RiscvIommuCommand,
} from "./bits.ts";
import type { RiscvIommuDriver } from "./driver.ts";
import type { RiscvIommuFeature } from "./feature.ts";

/**
 * One hardware queue (command, fault or page-request). Mirrors struct riscv_iommu_queue.
 *
 * Indexes are free-running unsigned 32-bit counters (the kernel's atomic_t), masked with
 * {@linkcode RiscvIommuQueue.mask} to find a slot.
 */
export class RiscvIommuQueue {
  /** Producer index: slots reserved so far (command queue). */
  prod = 0;
  /** Consumer index: hardware head as last seen (CQ), records consumed (FQ/PQ). */
  head = 0;
  /** Producer index published to hardware (CQ) or last read from it (FQ/PQ). */
  tail = 0;
  /** Entries minus one; set by `riscv_iommu_queue_alloc()`. */
  mask = 0;
  /** Physical address of the ring; -1 until allocated. */
  phys: number = -1;
  /** The IOMMU while the queue is enabled (its irq requested), else null. */
  iommu: RiscvIommuDevice | null = null;

  /**
   * Mirrors RISCV_IOMMU_QUEUE_INIT(): a queue with interrupt cause `qid`, base register `qbr`
   * and CSR `qcr`, asking for `2^log2sz` entries of `entry_size` bytes.
   */
  constructor(
    readonly qid: number,
    readonly qbr: number,
    readonly qcr: number,
    public log2sz: number,
    readonly entry_size: number,
  ) {}
}

/**
 * The handle an IOMMU registers with the core (the struct iommu_device embedded in
 * struct riscv_iommu_device), pointing back at its instance.
 */
export class RiscvIommuHandle extends IommuDevice {
  /** A handle for `riscv`. */
  constructor(readonly riscv: RiscvIommuDevice) {
    super();
  }
}

/**
 * Mirrors the dev_to_iommu() macro: the RISC-V IOMMU translating `dev`. ENODEV when `dev` is
 * not behind one (not probed, or probed by another driver).
 */
export function dev_to_iommu(dev: Device): RiscvIommuDevice {
  const handle = dev.iommu instanceof DevIommu ? dev.iommu.iommu_dev : null;
  if (!(handle instanceof RiscvIommuHandle)) {
    throw new Errno("ENODEV", `${dev.name} is not behind a RISC-V IOMMU`);
  }
  return handle.riscv;
}

/**
 * What the core (`iommu.ts`) keeps per IOMMU besides struct riscv_iommu_device: scratch commands
 * (Linux builds them on the stack; reusing them keeps the unmap path free of allocation) and the
 * capability bits the invalidation path reads, as numbers. Reached with
 * {@linkcode riscv_iommu_priv}; neither is part of the package's API.
 */
export class RiscvIommuPriv {
  /** Scratch command of the invalidation paths. */
  readonly cmd: RiscvIommuCommand = new RiscvIommuCommand();
  /** Scratch IOFENCE.C of `riscv_iommu_cmd_sync()`. */
  readonly fence: RiscvIommuCommand = new RiscvIommuCommand();
  /** capabilities.NL. */
  nl = false;
  /** capabilities.S. */
  napot = false;
  /** Rate limit of the fault log (the one dev_warn_ratelimited() in riscv_iommu_fault() has). */
  readonly fault_rs: RatelimitState = new RatelimitState("riscv_iommu_fault");
  /** The probed devices by device ID (`riscv_iommu_get_device()`). */
  readonly eps: Map<number, Device> = new Map();
  /**
   * Command-queue slot of the IOFENCE.C the CQ thread last found timed out (`cqcsr.cmd_to`), until
   * the `riscv_iommu_cmd_sync()` that queued it takes it; -1: none.
   */
  cmd_to = -1;
}

let _priv: (iommu: RiscvIommuDevice) => RiscvIommuPriv;

/**
 * One RISC-V IOMMU instance. Mirrors struct riscv_iommu_device.
 *
 * DIVERGENCE: besides Linux's fields it points at its driver instance and holds what the series
 * features set up on it (`queues`, `feature_data`, `active_features`); see `driver.ts`.
 *
 * The bus glue creates it with the device, the mapped registers and the driver instance, fills
 * {@linkcode RiscvIommuDevice.caps}, {@linkcode RiscvIommuDevice.fctl},
 * {@linkcode RiscvIommuDevice.irqs} and {@linkcode RiscvIommuDevice.irqs_count}, then calls
 * `riscv_iommu_init()`. It may also shrink {@linkcode RiscvIommuQueue.log2sz} of the queues
 * before init (0 means the default size). Everything else belongs to the core.
 */
export class RiscvIommuDevice {
  /** The IOMMU's own device (platform or PCI). */
  readonly dev: Device;
  /** The register window. */
  readonly reg: IoMem;
  /** The driver instance: ops, PSCID space and features shared by its IOMMUs. */
  readonly driver: RiscvIommuDriver;
  /** The handle registered with the IOMMU core (struct iommu_device). */
  readonly iommu: RiscvIommuHandle = new RiscvIommuHandle(this);
  /** `capabilities`, read by the glue. */
  caps = 0n;
  /** `fctl` as the glue left it (it chose WSI or MSI). */
  fctl = 0;
  /** Interrupt numbers by vector, as the glue allocated them. */
  irqs: number[] = [];
  /** How many vectors of {@linkcode RiscvIommuDevice.irqs} are valid (1 to 4 used). */
  irqs_count = 0;
  /** `icvec` as programmed and read back by init. */
  icvec = 0n;
  /** The command queue (qid 0). */
  readonly cmdq: RiscvIommuQueue;
  /** The fault queue (qid 1). */
  readonly fltq: RiscvIommuQueue;
  /** Queues the features asked for, by qid. */
  readonly queues: Map<number, RiscvIommuQueue> = new Map();
  /** Per-feature state on this IOMMU, by feature name (the features' own business). */
  readonly feature_data: Map<string, unknown> = new Map();
  /** ddtp.iommu_mode in force. */
  ddt_mode = 0;
  /** Physical address of the DDT root page; -1 before `riscv_iommu_iodir_alloc()`. */
  ddt_phys: number = -1;
  /** Features running on this IOMMU (supported and probed), in probe order. */
  readonly active_features: RiscvIommuFeature[] = [];
  readonly #priv: RiscvIommuPriv = new RiscvIommuPriv();

  static {
    _priv = (iommu) => iommu.#priv;
  }

  /** An instance of `driver` for `dev` with registers `reg`. */
  constructor(dev: Device, reg: IoMem, driver: RiscvIommuDriver) {
    this.dev = dev;
    this.reg = reg;
    this.driver = driver;
    this.cmdq = new RiscvIommuQueue(
      RISCV_IOMMU_INTR_CQ,
      RISCV_IOMMU_REG_CQB,
      RISCV_IOMMU_REG_CQCSR,
      0,
      16,
    );
    this.fltq = new RiscvIommuQueue(
      RISCV_IOMMU_INTR_FQ,
      RISCV_IOMMU_REG_FQB,
      RISCV_IOMMU_REG_FQCSR,
      0,
      32,
    );
  }

  /** The series features of the driver instance. */
  get features(): readonly RiscvIommuFeature[] {
    return this.driver.features;
  }
}

/** The core's private state of `iommu` (see {@linkcode RiscvIommuPriv}). */
export function riscv_iommu_priv(iommu: RiscvIommuDevice): RiscvIommuPriv {
  return _priv(iommu);
}

/** Mirrors riscv_iommu_readl(). */
export function riscv_iommu_readl(iommu: RiscvIommuDevice, addr: number): number {
  return readl(iommu.reg, addr);
}

/** Mirrors riscv_iommu_readq(). */
export function riscv_iommu_readq(iommu: RiscvIommuDevice, addr: number): bigint {
  return readq(iommu.reg, addr);
}

/** Mirrors riscv_iommu_writel(). */
export function riscv_iommu_writel(iommu: RiscvIommuDevice, addr: number, val: number): void {
  writel(iommu.reg, addr, val);
}

/** Mirrors riscv_iommu_writeq(). */
export function riscv_iommu_writeq(iommu: RiscvIommuDevice, addr: number, val: bigint): void {
  writeq(iommu.reg, addr, val);
}

/**
 * read_poll_timeout_backoff() on the IOMMU's clock that returns the last value read on timeout
 * instead of throwing: the C macros set `val` either way and their callers test it, not the return
 * code.
 *
 * DIVERGENCE: Linux's readx_poll_timeout() spins with a fixed delay; in simulated time a delay
 * doubling up to 1/1024 of the timeout sees a responsive device within twice its latency and a
 * stalled one in about a thousand reads.
 */
export function riscv_iommu_poll<T>(
  iommu: RiscvIommuDevice,
  op: () => T,
  cond: (v: T) => boolean,
  delayUs: number,
  timeoutUs: number,
): T {
  try {
    return read_poll_timeout_backoff(iommu.reg.clock, op, cond, delayUs, timeoutUs);
  } catch (e) {
    if (e instanceof PollTimeout) return e.value as T;
    throw e;
  }
}

/**
 * Mirrors riscv_iommu_readl_timeout(): reads `addr` until `cond` holds or `timeoutUs` of
 * simulated time passed; returns the last value read, which the caller checks again (the C
 * macro's callers test its return code instead).
 */
export function riscv_iommu_readl_timeout(
  iommu: RiscvIommuDevice,
  addr: number,
  cond: (v: number) => boolean,
  delayUs: number,
  timeoutUs: number,
): number {
  return riscv_iommu_poll(iommu, () => readl(iommu.reg, addr), cond, delayUs, timeoutUs);
}

/** Mirrors riscv_iommu_readq_timeout(): {@linkcode riscv_iommu_readl_timeout} for 64 bits. */
export function riscv_iommu_readq_timeout(
  iommu: RiscvIommuDevice,
  addr: number,
  cond: (v: bigint) => boolean,
  delayUs: number,
  timeoutUs: number,
): bigint {
  return riscv_iommu_poll(iommu, () => readq(iommu.reg, addr), cond, delayUs, timeoutUs);
}
