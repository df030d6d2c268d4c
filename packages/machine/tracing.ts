/**
 * The machine's trace hooks: wrappers around the silicon's interfaces (MMIO windows, the
 * IOMMU's translation port, interrupt lines, the MSI doorbell) and an observer of the IOMMU's
 * translation events, recording into a {@linkcode Trace} (commands are recorded where they are
 * priced, by `priceCommands()` of `iommu_window.ts`). Nothing in `hw` is edited; with tracing off
 * every helper returns the object it was given and observes nothing, so an untraced machine pays
 * nothing.
 *
 * @module
 */
import {
  type Aplic,
  type Imsic,
  type Iommu,
  type IrqSink,
  type MmioHandler,
  type TranslationPort,
  XLATE_FAULT,
} from "@iommu-lab/hw";
import {
  RISCV_IOMMU_HPMEVENT_DD_WALK,
  RISCV_IOMMU_HPMEVENT_G_WALKS,
  RISCV_IOMMU_HPMEVENT_PD_WALK,
  RISCV_IOMMU_HPMEVENT_S_VS_WALKS,
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_REG_CAPABILITIES,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
  RISCV_IOMMU_REG_CQT,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FCTL,
  RISCV_IOMMU_REG_FQB,
  RISCV_IOMMU_REG_FQCSR,
  RISCV_IOMMU_REG_FQH,
  RISCV_IOMMU_REG_FQT,
  RISCV_IOMMU_REG_ICVEC,
  RISCV_IOMMU_REG_IPSR,
  RISCV_IOMMU_REG_MSI_CFG_TBL,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
  RISCV_IOMMU_REG_PQH,
  RISCV_IOMMU_REG_PQT,
} from "@iommu-lab/hw/regs";
import { type Trace, TRACK_CPU, TRACK_IOMMU, TRACK_IRQ } from "./trace.ts";

/** IOMMU register names for MMIO events. */
const _IOMMU_REGS = new Map<number, string>([
  [RISCV_IOMMU_REG_CAPABILITIES, "capabilities"],
  [RISCV_IOMMU_REG_FCTL, "fctl"],
  [RISCV_IOMMU_REG_DDTP, "ddtp"],
  [RISCV_IOMMU_REG_CQB, "cqb"],
  [RISCV_IOMMU_REG_CQH, "cqh"],
  [RISCV_IOMMU_REG_CQT, "cqt"],
  [RISCV_IOMMU_REG_FQB, "fqb"],
  [RISCV_IOMMU_REG_FQH, "fqh"],
  [RISCV_IOMMU_REG_FQT, "fqt"],
  [RISCV_IOMMU_REG_PQB, "pqb"],
  [RISCV_IOMMU_REG_PQH, "pqh"],
  [RISCV_IOMMU_REG_PQT, "pqt"],
  [RISCV_IOMMU_REG_CQCSR, "cqcsr"],
  [RISCV_IOMMU_REG_FQCSR, "fqcsr"],
  [RISCV_IOMMU_REG_PQCSR, "pqcsr"],
  [RISCV_IOMMU_REG_IPSR, "ipsr"],
  [RISCV_IOMMU_REG_ICVEC, "icvec"],
]);

/** The name of the IOMMU register at `offset`, for MMIO events. */
export function iommuRegName(offset: number): string {
  const name = _IOMMU_REGS.get(offset);
  if (name !== undefined) return name;
  const n = (offset - RISCV_IOMMU_REG_MSI_CFG_TBL) >> 4;
  if (n >= 0 && n < 16) return `msi_cfg_tbl[${n}]+0x${(offset & 0xf).toString(16)}`;
  return `0x${offset.toString(16)}`;
}

/** A register window whose CPU accesses are recorded on the CPU track. */
export class TracedMmio implements MmioHandler {
  readonly #inner: MmioHandler;
  readonly #trace: Trace;
  readonly #name: string;
  readonly #regName: (offset: number) => string;

  /**
   * Records accesses to `inner` (named `name`, e.g. `iommu`), naming registers with `regName`
   * (default: the offset in hex).
   */
  constructor(
    inner: MmioHandler,
    trace: Trace,
    name: string,
    regName: (offset: number) => string = (off) => `0x${off.toString(16)}`,
  ) {
    this.#inner = inner;
    this.#trace = trace;
    this.#name = name;
    this.#regName = regName;
  }

  /** Reads and (with `mmioReads`) records 4 bytes. */
  read32(offset: number): number {
    const v = this.#inner.read32(offset);
    if (this.#trace.mmioReads) this.#record("read", offset, v);
    return v;
  }

  /** Records and writes 4 bytes (the event is the write's start: what it sets off follows). */
  write32(offset: number, value: number): void {
    this.#record("write", offset, value >>> 0);
    this.#inner.write32(offset, value);
  }

  /** Reads and (with `mmioReads`) records 8 bytes. */
  read64(offset: number): bigint {
    const v = this.#inner.read64(offset);
    if (this.#trace.mmioReads) this.#record("read", offset, v);
    return v;
  }

  /** Records and writes 8 bytes. */
  write64(offset: number, value: bigint): void {
    this.#record("write", offset, value);
    this.#inner.write64(offset, value);
  }

  #record(op: string, offset: number, value: number | bigint): void {
    this.#trace.instant("mmio", `${op} ${this.#name} ${this.#regName(offset)}`, TRACK_CPU, {
      offset,
      value: typeof value === "bigint" ? value : `0x${value.toString(16)}`,
    });
  }
}

/** The IOMMU's translation port, recording faults (cause, device, address) on the IOMMU track. */
export function traceTranslations(iommu: Iommu, trace: Trace | null): TranslationPort {
  if (trace === null) return iommu;
  return {
    translate(req, res) {
      iommu.translate(req, res);
      if (res.status !== XLATE_FAULT) return;
      trace.instant("fault", `fault cause ${res.cause}`, TRACK_IOMMU, {
        devid: req.deviceId,
        iova: `0x${(req.iovaHi * 4294967296 + req.iovaLo).toString(16)}`,
        cause: res.cause,
        ttyp: res.ttyp,
        reported: res.reported,
      });
    },
  };
}

const _WALKS = new Map<number, string>([
  [RISCV_IOMMU_HPMEVENT_TLB_MISS, "IOTLB miss"],
  [RISCV_IOMMU_HPMEVENT_DD_WALK, "DDT walk"],
  [RISCV_IOMMU_HPMEVENT_PD_WALK, "PDT walk"],
  [RISCV_IOMMU_HPMEVENT_S_VS_WALKS, "S/VS-stage walk"],
  [RISCV_IOMMU_HPMEVENT_G_WALKS, "G-stage walk"],
]);

/**
 * Records the IOMMU's walks and IOTLB misses: the trace is one more observer of the translator's
 * events, beside any HPM unit counting them.
 */
export function traceWalks(iommu: Iommu, trace: Trace | null): void {
  if (trace === null) return;
  iommu.translator.addEventObserver({
    count(eventId, deviceId) {
      const name = _WALKS.get(eventId);
      if (name !== undefined) trace.instant("walk", name, TRACK_IOMMU, { devid: deviceId });
    },
  });
}

/** The APLIC's inputs as an IrqSink, recording level changes. */
export function traceWires(aplic: Aplic, trace: Trace | null): IrqSink {
  if (trace === null) return aplic;
  return {
    setWire(line, level) {
      trace.instant("irq", `wire ${line} ${level ? "high" : "low"}`, TRACK_IRQ);
      aplic.setWire(line, level);
    },
  };
}

/** The IMSIC's page, recording every MSI written to it. */
export function traceMsiWrites(imsic: Imsic, trace: Trace | null): MmioHandler {
  if (trace === null) return imsic;
  return {
    read32: (off) => imsic.read32(off),
    read64: (off) => imsic.read64(off),
    write32(off, value) {
      trace.instant("msi", `msi ${value >>> 0}`, TRACK_IRQ, { offset: off });
      imsic.write32(off, value);
    },
    write64(off, value) {
      trace.instant("msi", `msi ${value & 0xffff_ffffn}`, TRACK_IRQ, { offset: off });
      imsic.write64(off, value);
    },
  };
}
