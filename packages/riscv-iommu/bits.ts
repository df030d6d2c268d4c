/**
 * RISC-V IOMMU register layout and data structures: the driver's own transcription of the
 * RISC-V IOMMU Architecture Specification v1.0 and of its "IOMMU Extensions" chapter (QoS
 * identifiers; non-leaf PTE invalidation, `capabilities.NL`; address range invalidation,
 * `capabilities.S`), grouped by spec chapter as Linux's `drivers/iommu/riscv/iommu-bits.h` is.
 * No logic beyond the command builders.
 *
 * Upstream state tracked: iommu-bits.h as merged for Linux v7.2 (RISCV_IOMMU_CAPABILITIES_NL and
 * S, the dword-numbered command fields), with the command builders the series need on top.
 *
 * Fields of 64-bit registers and in-memory structures are `bigint` masks (Linux's
 * `GENMASK_ULL`/`BIT_ULL`); fields of 32-bit registers are `number` masks (`BIT`/`GENMASK`).
 * Commands are built on {@linkcode RiscvIommuCommand} as four unsigned 32-bit halves, since
 * command building sits on the unmap → iotlb_sync path and must not use `bigint`.
 *
 * @module
 */

function _genmask(h: number, l: number): bigint {
  return ((1n << BigInt(h - l + 1)) - 1n) << BigInt(l);
}

function _bit(n: number): bigint {
  return 1n << BigInt(n);
}

/** Mirrors FIELD_GET() of linux/bitfield.h for a 64-bit mask. */
export function FIELD_GET(mask: bigint, value: bigint): bigint {
  return (value & mask) >> _ffs64(mask);
}

/** Mirrors FIELD_PREP() of linux/bitfield.h for a 64-bit mask (excess bits are dropped). */
export function FIELD_PREP(mask: bigint, value: bigint | number): bigint {
  return (BigInt(value) << _ffs64(mask)) & mask;
}

function _ffs64(mask: bigint): bigint {
  let s = 0n;
  while (mask !== 0n && (mask & (1n << s)) === 0n) s++;
  return s;
}

/*
 * Chapter 5 "Memory-mapped register interface".
 */

/** Common PPN field of ddtp, cqb/fqb/pqb, non-leaf DDT entries, MSI PTEs (bits 53:10). */
export const RISCV_IOMMU_PPN_FIELD: bigint = _genmask(53, 10);
/** LOG2SZ-1 field of the queue base registers (bits 4:0). */
export const RISCV_IOMMU_QUEUE_LOG2SZ_FIELD: bigint = _genmask(4, 0);
/** Index field of the queue head/tail registers (bits 31:0). */
export const RISCV_IOMMU_QUEUE_INDEX_FIELD = 0xffff_ffff;
/** Queue CSR enable bit (cqen/fqen/pqen). */
export const RISCV_IOMMU_QUEUE_ENABLE = 1 << 0;
/** Queue CSR interrupt-enable bit (cie/fie/pie). */
export const RISCV_IOMMU_QUEUE_INTR_ENABLE = 1 << 1;
/** Queue CSR memory-fault bit (cqmf/fqmf/pqmf), RW1C. */
export const RISCV_IOMMU_QUEUE_MEM_FAULT = 1 << 8;
/** Queue CSR overflow bit (fqof/pqof), RW1C. */
export const RISCV_IOMMU_QUEUE_OVERFLOW = 1 << 9;
/** Queue CSR active bit (cqon/fqon/pqon). */
export const RISCV_IOMMU_QUEUE_ACTIVE = 1 << 16;
/** Queue CSR busy bit. */
export const RISCV_IOMMU_QUEUE_BUSY = 1 << 17;

/** PPN field of the address-translation pointers iosatp/iohgatp/pdtp/msiptp (bits 43:0). */
export const RISCV_IOMMU_ATP_PPN_FIELD: bigint = _genmask(43, 0);
/** MODE field of the address-translation pointers (bits 63:60). */
export const RISCV_IOMMU_ATP_MODE_FIELD: bigint = _genmask(63, 60);

/* 5.3 IOMMU capabilities (64 bits) */

/** Offset of `capabilities`. */
export const RISCV_IOMMU_REG_CAPABILITIES = 0x0000;
/** capabilities.version (major 7:4, minor 3:0). */
export const RISCV_IOMMU_CAPABILITIES_VERSION: bigint = _genmask(7, 0);
/** capabilities.Sv32. */
export const RISCV_IOMMU_CAPABILITIES_SV32: bigint = _bit(8);
/** capabilities.Sv39. */
export const RISCV_IOMMU_CAPABILITIES_SV39: bigint = _bit(9);
/** capabilities.Sv48. */
export const RISCV_IOMMU_CAPABILITIES_SV48: bigint = _bit(10);
/** capabilities.Sv57. */
export const RISCV_IOMMU_CAPABILITIES_SV57: bigint = _bit(11);
/** capabilities.Svpbmt. */
export const RISCV_IOMMU_CAPABILITIES_SVPBMT: bigint = _bit(15);
/** capabilities.Sv32x4. */
export const RISCV_IOMMU_CAPABILITIES_SV32X4: bigint = _bit(16);
/** capabilities.Sv39x4. */
export const RISCV_IOMMU_CAPABILITIES_SV39X4: bigint = _bit(17);
/** capabilities.Sv48x4. */
export const RISCV_IOMMU_CAPABILITIES_SV48X4: bigint = _bit(18);
/** capabilities.Sv57x4. */
export const RISCV_IOMMU_CAPABILITIES_SV57X4: bigint = _bit(19);
/** capabilities.AMO_MRIF. */
export const RISCV_IOMMU_CAPABILITIES_AMO_MRIF: bigint = _bit(21);
/** capabilities.MSI_FLAT (also selects the extended 64-byte DC format). */
export const RISCV_IOMMU_CAPABILITIES_MSI_FLAT: bigint = _bit(22);
/** capabilities.MSI_MRIF. */
export const RISCV_IOMMU_CAPABILITIES_MSI_MRIF: bigint = _bit(23);
/** capabilities.AMO_HWAD. */
export const RISCV_IOMMU_CAPABILITIES_AMO_HWAD: bigint = _bit(24);
/** capabilities.ATS (also gates the page-request queue registers). */
export const RISCV_IOMMU_CAPABILITIES_ATS: bigint = _bit(25);
/** capabilities.T2GPA. */
export const RISCV_IOMMU_CAPABILITIES_T2GPA: bigint = _bit(26);
/** capabilities.END: both endiannesses supported, chosen by fctl.BE. */
export const RISCV_IOMMU_CAPABILITIES_END: bigint = _bit(27);
/** capabilities.IGS: interrupt generation support. */
export const RISCV_IOMMU_CAPABILITIES_IGS: bigint = _genmask(29, 28);
/** capabilities.HPM. */
export const RISCV_IOMMU_CAPABILITIES_HPM: bigint = _bit(30);
/** capabilities.DBG. */
export const RISCV_IOMMU_CAPABILITIES_DBG: bigint = _bit(31);
/** capabilities.PAS: physical address size in bits. */
export const RISCV_IOMMU_CAPABILITIES_PAS: bigint = _genmask(37, 32);
/** capabilities.PD8. */
export const RISCV_IOMMU_CAPABILITIES_PD8: bigint = _bit(38);
/** capabilities.PD17. */
export const RISCV_IOMMU_CAPABILITIES_PD17: bigint = _bit(39);
/** capabilities.PD20. */
export const RISCV_IOMMU_CAPABILITIES_PD20: bigint = _bit(40);
/** capabilities.QOSID (QoS identifiers extension, post-1.0). */
export const RISCV_IOMMU_CAPABILITIES_QOSID: bigint = _bit(41);
/** capabilities.NL: IOTINVAL may also drop non-leaf entries (NL extension, post-1.0). */
export const RISCV_IOMMU_CAPABILITIES_NL: bigint = _bit(42);
/** capabilities.S: IOTINVAL address may be a NAPOT range (S extension, post-1.0). */
export const RISCV_IOMMU_CAPABILITIES_S: bigint = _bit(43);

/** capabilities.IGS = MSI only. */
export const RISCV_IOMMU_CAPABILITIES_IGS_MSI = 0;
/** capabilities.IGS = wire-signalled only. */
export const RISCV_IOMMU_CAPABILITIES_IGS_WSI = 1;
/** capabilities.IGS = both, chosen by fctl.WSI. */
export const RISCV_IOMMU_CAPABILITIES_IGS_BOTH = 2;
/** capabilities.IGS = reserved encoding. */
export const RISCV_IOMMU_CAPABILITIES_IGS_RSRV = 3;

/* 5.4 Features control register (32 bits) */

/** Offset of `fctl`. */
export const RISCV_IOMMU_REG_FCTL = 0x0008;
/** fctl.BE: big-endian implicit accesses. */
export const RISCV_IOMMU_FCTL_BE = 1 << 0;
/** fctl.WSI: wire-signalled interrupts. */
export const RISCV_IOMMU_FCTL_WSI = 1 << 1;
/** fctl.GXL: iohgatp encodings for Sv32x4. */
export const RISCV_IOMMU_FCTL_GXL = 1 << 2;

/* 5.5 Device-directory-table pointer (64 bits) */

/** Offset of `ddtp`. */
export const RISCV_IOMMU_REG_DDTP = 0x0010;
/** ddtp.iommu_mode. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE: bigint = _genmask(3, 0);
/** ddtp.busy. */
export const RISCV_IOMMU_DDTP_BUSY: bigint = _bit(4);
/** ddtp.PPN. */
export const RISCV_IOMMU_DDTP_PPN: bigint = RISCV_IOMMU_PPN_FIELD;

/** ddtp.iommu_mode Off: no inbound transaction allowed. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_OFF = 0;
/** ddtp.iommu_mode Bare: pass-through. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_BARE = 1;
/** ddtp.iommu_mode 1LVL: one-level DDT. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL = 2;
/** ddtp.iommu_mode 2LVL: two-level DDT. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL = 3;
/** ddtp.iommu_mode 3LVL: three-level DDT. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL = 4;
/** Largest ddtp.iommu_mode the spec defines. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_MAX = 4;

/* 5.6-5.14 Queue base, head and tail registers */

/** Offset of `cqb` (64 bits). */
export const RISCV_IOMMU_REG_CQB = 0x0018;
/** cqb.LOG2SZ-1. */
export const RISCV_IOMMU_CQB_ENTRIES: bigint = RISCV_IOMMU_QUEUE_LOG2SZ_FIELD;
/** cqb.PPN. */
export const RISCV_IOMMU_CQB_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** Offset of `cqh` (32 bits, read-only). */
export const RISCV_IOMMU_REG_CQH = 0x0020;
/** cqh.index. */
export const RISCV_IOMMU_CQH_INDEX: number = RISCV_IOMMU_QUEUE_INDEX_FIELD;
/** Offset of `cqt` (32 bits). */
export const RISCV_IOMMU_REG_CQT = 0x0024;
/** cqt.index. */
export const RISCV_IOMMU_CQT_INDEX: number = RISCV_IOMMU_QUEUE_INDEX_FIELD;
/** Offset of `fqb` (64 bits). */
export const RISCV_IOMMU_REG_FQB = 0x0028;
/** fqb.LOG2SZ-1. */
export const RISCV_IOMMU_FQB_ENTRIES: bigint = RISCV_IOMMU_QUEUE_LOG2SZ_FIELD;
/** fqb.PPN. */
export const RISCV_IOMMU_FQB_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** Offset of `fqh` (32 bits). */
export const RISCV_IOMMU_REG_FQH = 0x0030;
/** fqh.index. */
export const RISCV_IOMMU_FQH_INDEX: number = RISCV_IOMMU_QUEUE_INDEX_FIELD;
/** Offset of `fqt` (32 bits, read-only). */
export const RISCV_IOMMU_REG_FQT = 0x0034;
/** fqt.index. */
export const RISCV_IOMMU_FQT_INDEX: number = RISCV_IOMMU_QUEUE_INDEX_FIELD;
/** Offset of `pqb` (64 bits, present with capabilities.ATS). */
export const RISCV_IOMMU_REG_PQB = 0x0038;
/** pqb.LOG2SZ-1. */
export const RISCV_IOMMU_PQB_ENTRIES: bigint = RISCV_IOMMU_QUEUE_LOG2SZ_FIELD;
/** pqb.PPN. */
export const RISCV_IOMMU_PQB_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** Offset of `pqh` (32 bits). */
export const RISCV_IOMMU_REG_PQH = 0x0040;
/** pqh.index. */
export const RISCV_IOMMU_PQH_INDEX: number = RISCV_IOMMU_QUEUE_INDEX_FIELD;
/** Offset of `pqt` (32 bits, read-only). */
export const RISCV_IOMMU_REG_PQT = 0x0044;
/** pqt.index. */
export const RISCV_IOMMU_PQT_INDEX_MASK: number = RISCV_IOMMU_QUEUE_INDEX_FIELD;

/* 5.15 Command queue CSR (32 bits) */

/** Offset of `cqcsr`. */
export const RISCV_IOMMU_REG_CQCSR = 0x0048;
/** cqcsr.cqen. */
export const RISCV_IOMMU_CQCSR_CQEN: number = RISCV_IOMMU_QUEUE_ENABLE;
/** cqcsr.cie. */
export const RISCV_IOMMU_CQCSR_CIE: number = RISCV_IOMMU_QUEUE_INTR_ENABLE;
/** cqcsr.cqmf (RW1C). */
export const RISCV_IOMMU_CQCSR_CQMF: number = RISCV_IOMMU_QUEUE_MEM_FAULT;
/** cqcsr.cmd_to (RW1C). */
export const RISCV_IOMMU_CQCSR_CMD_TO = 1 << 9;
/** cqcsr.cmd_ill (RW1C). */
export const RISCV_IOMMU_CQCSR_CMD_ILL = 1 << 10;
/** cqcsr.fence_w_ip (RW1C). */
export const RISCV_IOMMU_CQCSR_FENCE_W_IP = 1 << 11;
/** cqcsr.cqon. */
export const RISCV_IOMMU_CQCSR_CQON: number = RISCV_IOMMU_QUEUE_ACTIVE;
/** cqcsr.busy. */
export const RISCV_IOMMU_CQCSR_BUSY: number = RISCV_IOMMU_QUEUE_BUSY;

/* 5.16 Fault queue CSR (32 bits) */

/** Offset of `fqcsr`. */
export const RISCV_IOMMU_REG_FQCSR = 0x004c;
/** fqcsr.fqen. */
export const RISCV_IOMMU_FQCSR_FQEN: number = RISCV_IOMMU_QUEUE_ENABLE;
/** fqcsr.fie. */
export const RISCV_IOMMU_FQCSR_FIE: number = RISCV_IOMMU_QUEUE_INTR_ENABLE;
/** fqcsr.fqmf (RW1C). */
export const RISCV_IOMMU_FQCSR_FQMF: number = RISCV_IOMMU_QUEUE_MEM_FAULT;
/** fqcsr.fqof (RW1C). */
export const RISCV_IOMMU_FQCSR_FQOF: number = RISCV_IOMMU_QUEUE_OVERFLOW;
/** fqcsr.fqon. */
export const RISCV_IOMMU_FQCSR_FQON: number = RISCV_IOMMU_QUEUE_ACTIVE;
/** fqcsr.busy. */
export const RISCV_IOMMU_FQCSR_BUSY: number = RISCV_IOMMU_QUEUE_BUSY;

/* 5.17 Page-request queue CSR (32 bits) */

/** Offset of `pqcsr`. */
export const RISCV_IOMMU_REG_PQCSR = 0x0050;
/** pqcsr.pqen. */
export const RISCV_IOMMU_PQCSR_PQEN: number = RISCV_IOMMU_QUEUE_ENABLE;
/** pqcsr.pie. */
export const RISCV_IOMMU_PQCSR_PIE: number = RISCV_IOMMU_QUEUE_INTR_ENABLE;
/** pqcsr.pqmf (RW1C). */
export const RISCV_IOMMU_PQCSR_PQMF: number = RISCV_IOMMU_QUEUE_MEM_FAULT;
/** pqcsr.pqof (RW1C). */
export const RISCV_IOMMU_PQCSR_PQOF: number = RISCV_IOMMU_QUEUE_OVERFLOW;
/** pqcsr.pqon. */
export const RISCV_IOMMU_PQCSR_PQON: number = RISCV_IOMMU_QUEUE_ACTIVE;
/** pqcsr.busy. */
export const RISCV_IOMMU_PQCSR_BUSY: number = RISCV_IOMMU_QUEUE_BUSY;

/* 5.18 Interrupt pending status (32 bits) */

/** Offset of `ipsr` (RW1C). */
export const RISCV_IOMMU_REG_IPSR = 0x0054;
/** Interrupt cause of the command queue (ipsr bit, icvec field index). */
export const RISCV_IOMMU_INTR_CQ = 0;
/** Interrupt cause of the fault queue. */
export const RISCV_IOMMU_INTR_FQ = 1;
/** Interrupt cause of the performance monitor. */
export const RISCV_IOMMU_INTR_PM = 2;
/** Interrupt cause of the page-request queue. */
export const RISCV_IOMMU_INTR_PQ = 3;
/** Number of interrupt causes. */
export const RISCV_IOMMU_INTR_COUNT = 4;
/** ipsr.cip. */
export const RISCV_IOMMU_IPSR_CIP = 1 << RISCV_IOMMU_INTR_CQ;
/** ipsr.fip. */
export const RISCV_IOMMU_IPSR_FIP = 1 << RISCV_IOMMU_INTR_FQ;
/** ipsr.pmip. */
export const RISCV_IOMMU_IPSR_PMIP = 1 << RISCV_IOMMU_INTR_PM;
/** ipsr.pip. */
export const RISCV_IOMMU_IPSR_PIP = 1 << RISCV_IOMMU_INTR_PQ;

/* 5.19-5.23 Performance monitoring */

/** Offset of `iocountovf` (32 bits, read-only). */
export const RISCV_IOMMU_REG_IOCOUNTOVF = 0x0058;
/** iocountovf.CY. */
export const RISCV_IOMMU_IOCOUNTOVF_CY = 1 << 0;
/** iocountovf.HPM (bits 31:1). */
export const RISCV_IOMMU_IOCOUNTOVF_HPM = 0xffff_fffe;
/** Offset of `iocountinh` (32 bits). */
export const RISCV_IOMMU_REG_IOCOUNTINH = 0x005c;
/** iocountinh.CY. */
export const RISCV_IOMMU_IOCOUNTINH_CY = 1 << 0;
/** iocountinh.HPM (bits 31:1). */
export const RISCV_IOMMU_IOCOUNTINH_HPM = 0xffff_fffe;
/** Offset of `iohpmcycles` (64 bits). */
export const RISCV_IOMMU_REG_IOHPMCYCLES = 0x0060;
/** iohpmcycles.counter. */
export const RISCV_IOMMU_IOHPMCYCLES_COUNTER: bigint = _genmask(62, 0);
/** iohpmcycles.OF. */
export const RISCV_IOMMU_IOHPMCYCLES_OF: bigint = _bit(63);
/** Offset of `iohpmctr1`. */
export const RISCV_IOMMU_REG_IOHPMCTR_BASE = 0x0068;
/** Offset of `iohpmctr<n+1>` (n is 0-based, as in Linux). */
export function RISCV_IOMMU_REG_IOHPMCTR(n: number): number {
  return RISCV_IOMMU_REG_IOHPMCTR_BASE + n * 8;
}
/** Offset of `iohpmevt1`. */
export const RISCV_IOMMU_REG_IOHPMEVT_BASE = 0x0160;
/** Offset of `iohpmevt<n+1>` (n is 0-based, as in Linux). */
export function RISCV_IOMMU_REG_IOHPMEVT(n: number): number {
  return RISCV_IOMMU_REG_IOHPMEVT_BASE + n * 8;
}
/** iohpmevt.eventID. */
export const RISCV_IOMMU_IOHPMEVT_EVENTID: bigint = _genmask(14, 0);
/** iohpmevt.DMASK. */
export const RISCV_IOMMU_IOHPMEVT_DMASK: bigint = _bit(15);
/** iohpmevt.PID_PSCID. */
export const RISCV_IOMMU_IOHPMEVT_PID_PSCID: bigint = _genmask(35, 16);
/** iohpmevt.DID_GSCID. */
export const RISCV_IOMMU_IOHPMEVT_DID_GSCID: bigint = _genmask(59, 36);
/** iohpmevt.PV_PSCV. */
export const RISCV_IOMMU_IOHPMEVT_PV_PSCV: bigint = _bit(60);
/** iohpmevt.DV_GSCV. */
export const RISCV_IOMMU_IOHPMEVT_DV_GSCV: bigint = _bit(61);
/** iohpmevt.IDT. */
export const RISCV_IOMMU_IOHPMEVT_IDT: bigint = _bit(62);
/** iohpmevt.OF. */
export const RISCV_IOMMU_IOHPMEVT_OF: bigint = _bit(63);
/** Number of event selectors (iohpmevt1..31). */
export const RISCV_IOMMU_IOHPMEVT_CNT = 31;

/** HPM event 0: do not count. */
export const RISCV_IOMMU_HPMEVENT_INVALID = 0;
/** HPM event: untranslated requests. */
export const RISCV_IOMMU_HPMEVENT_URQ = 1;
/** HPM event: translated requests. */
export const RISCV_IOMMU_HPMEVENT_TRQ = 2;
/** HPM event: ATS translation requests. */
export const RISCV_IOMMU_HPMEVENT_ATS_RQ = 3;
/** HPM event: IOTLB misses. */
export const RISCV_IOMMU_HPMEVENT_TLB_MISS = 4;
/** HPM event: device-directory walks. */
export const RISCV_IOMMU_HPMEVENT_DD_WALK = 5;
/** HPM event: process-directory walks. */
export const RISCV_IOMMU_HPMEVENT_PD_WALK = 6;
/** HPM event: first-stage page-table walks. */
export const RISCV_IOMMU_HPMEVENT_S_VS_WALKS = 7;
/** HPM event: second-stage page-table walks. */
export const RISCV_IOMMU_HPMEVENT_G_WALKS = 8;
/** One past the last standard HPM event. */
export const RISCV_IOMMU_HPMEVENT_MAX = 9;

/* 5.24-5.26 Debug translation interface */

/** Offset of `tr_req_iova` (64 bits). */
export const RISCV_IOMMU_REG_TR_REQ_IOVA = 0x0258;
/** tr_req_iova.vpn. */
export const RISCV_IOMMU_TR_REQ_IOVA_VPN: bigint = _genmask(63, 12);
/** Offset of `tr_req_ctl` (64 bits). */
export const RISCV_IOMMU_REG_TR_REQ_CTL = 0x0260;
/** tr_req_ctl.Go/Busy. */
export const RISCV_IOMMU_TR_REQ_CTL_GO_BUSY: bigint = _bit(0);
/** tr_req_ctl.Priv. */
export const RISCV_IOMMU_TR_REQ_CTL_PRIV: bigint = _bit(1);
/** tr_req_ctl.Exe. */
export const RISCV_IOMMU_TR_REQ_CTL_EXE: bigint = _bit(2);
/** tr_req_ctl.NW. */
export const RISCV_IOMMU_TR_REQ_CTL_NW: bigint = _bit(3);
/** tr_req_ctl.PID. */
export const RISCV_IOMMU_TR_REQ_CTL_PID: bigint = _genmask(31, 12);
/** tr_req_ctl.PV. */
export const RISCV_IOMMU_TR_REQ_CTL_PV: bigint = _bit(32);
/** tr_req_ctl.DID. */
export const RISCV_IOMMU_TR_REQ_CTL_DID: bigint = _genmask(63, 40);
/** Offset of `tr_response` (64 bits, read-only). */
export const RISCV_IOMMU_REG_TR_RESPONSE = 0x0268;
/** tr_response.fault. */
export const RISCV_IOMMU_TR_RESPONSE_FAULT: bigint = _bit(0);
/** tr_response.PBMT. */
export const RISCV_IOMMU_TR_RESPONSE_PBMT: bigint = _genmask(8, 7);
/** tr_response.S (range size encoded in PPN). */
export const RISCV_IOMMU_TR_RESPONSE_SZ: bigint = _bit(9);
/** tr_response.PPN. */
export const RISCV_IOMMU_TR_RESPONSE_PPN: bigint = RISCV_IOMMU_PPN_FIELD;

/* 5.27 Interrupt cause to vector (64 bits) */

/** Offset of `icvec`. */
export const RISCV_IOMMU_REG_ICVEC = 0x02f8;
/** icvec.civ: command-queue vector. */
export const RISCV_IOMMU_ICVEC_CIV: bigint = _genmask(3, 0);
/** icvec.fiv: fault-queue vector. */
export const RISCV_IOMMU_ICVEC_FIV: bigint = _genmask(7, 4);
/** icvec.pmiv: performance-monitor vector. */
export const RISCV_IOMMU_ICVEC_PMIV: bigint = _genmask(11, 8);
/** icvec.piv: page-request-queue vector. */
export const RISCV_IOMMU_ICVEC_PIV: bigint = _genmask(15, 12);

/* 5.28 MSI configuration table (16 entries of 16 bytes) */

/** Offset of `msi_cfg_tbl`. */
export const RISCV_IOMMU_REG_MSI_CFG_TBL = 0x0300;
/** Offset of `msi_addr_<n>` (64 bits). */
export function RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(n: number): number {
  return RISCV_IOMMU_REG_MSI_CFG_TBL + n * 0x10;
}
/** msi_addr.ADDR (bits 55:2). */
export const RISCV_IOMMU_MSI_CFG_TBL_ADDR: bigint = _genmask(55, 2);
/** Offset of `msi_data_<n>` (32 bits). */
export function RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(n: number): number {
  return RISCV_IOMMU_REG_MSI_CFG_TBL + n * 0x10 + 0x08;
}
/** msi_data (bits 31:0). */
export const RISCV_IOMMU_MSI_CFG_TBL_DATA = 0xffff_ffff;
/** Offset of `msi_vec_ctl_<n>` (32 bits). */
export function RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(n: number): number {
  return RISCV_IOMMU_REG_MSI_CFG_TBL + n * 0x10 + 0x0c;
}
/** msi_vec_ctl.M: vector masked. */
export const RISCV_IOMMU_MSI_CFG_TBL_CTRL_M = 1 << 0;

/** Size of the register file (one 4 KiB page). */
export const RISCV_IOMMU_REG_SIZE = 0x1000;

/*
 * Chapter 2 "Data Structures".
 */

/** Non-leaf DDT entry V bit. */
export const RISCV_IOMMU_DDTE_V: bigint = _bit(0);
/** Non-leaf DDT entry PPN. */
export const RISCV_IOMMU_DDTE_PPN: bigint = RISCV_IOMMU_PPN_FIELD;

/** Byte offsets of the fields of struct riscv_iommu_dc (msiptp onwards: extended format only). */
export const riscv_iommu_dc = {
  tc: 0x00,
  iohgatp: 0x08,
  ta: 0x10,
  fsc: 0x18,
  msiptp: 0x20,
  msi_addr_mask: 0x28,
  msi_addr_pattern: 0x30,
} as const;
/** Size of a base-format device context (capabilities.MSI_FLAT = 0). */
export const RISCV_IOMMU_DC_BASE_SIZE = 32;
/** Size of an extended-format device context (capabilities.MSI_FLAT = 1). */
export const RISCV_IOMMU_DC_EXT_SIZE = 64;

/** DC.tc.V. */
export const RISCV_IOMMU_DC_TC_V: bigint = _bit(0);
/** DC.tc.EN_ATS. */
export const RISCV_IOMMU_DC_TC_EN_ATS: bigint = _bit(1);
/** DC.tc.EN_PRI. */
export const RISCV_IOMMU_DC_TC_EN_PRI: bigint = _bit(2);
/** DC.tc.T2GPA. */
export const RISCV_IOMMU_DC_TC_T2GPA: bigint = _bit(3);
/** DC.tc.DTF. */
export const RISCV_IOMMU_DC_TC_DTF: bigint = _bit(4);
/** DC.tc.PDTV. */
export const RISCV_IOMMU_DC_TC_PDTV: bigint = _bit(5);
/** DC.tc.PRPR. */
export const RISCV_IOMMU_DC_TC_PRPR: bigint = _bit(6);
/** DC.tc.GADE. */
export const RISCV_IOMMU_DC_TC_GADE: bigint = _bit(7);
/** DC.tc.SADE. */
export const RISCV_IOMMU_DC_TC_SADE: bigint = _bit(8);
/** DC.tc.DPE. */
export const RISCV_IOMMU_DC_TC_DPE: bigint = _bit(9);
/** DC.tc.SBE. */
export const RISCV_IOMMU_DC_TC_SBE: bigint = _bit(10);
/** DC.tc.SXL. */
export const RISCV_IOMMU_DC_TC_SXL: bigint = _bit(11);

/** DC.iohgatp.PPN. */
export const RISCV_IOMMU_DC_IOHGATP_PPN: bigint = RISCV_IOMMU_ATP_PPN_FIELD;
/** DC.iohgatp.GSCID. */
export const RISCV_IOMMU_DC_IOHGATP_GSCID: bigint = _genmask(59, 44);
/** DC.iohgatp.MODE. */
export const RISCV_IOMMU_DC_IOHGATP_MODE: bigint = RISCV_IOMMU_ATP_MODE_FIELD;
/** iohgatp.MODE Bare. */
export const RISCV_IOMMU_DC_IOHGATP_MODE_BARE = 0;
/** iohgatp.MODE Sv32x4 (fctl.GXL = 1). */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV32X4 = 8;
/** iohgatp.MODE Sv39x4 (fctl.GXL = 0). */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV39X4 = 8;
/** iohgatp.MODE Sv48x4. */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV48X4 = 9;
/** iohgatp.MODE Sv57x4. */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV57X4 = 10;

/** DC.ta.PSCID. */
export const RISCV_IOMMU_DC_TA_PSCID: bigint = _genmask(31, 12);

/** DC.fsc.PPN. */
export const RISCV_IOMMU_DC_FSC_PPN: bigint = RISCV_IOMMU_ATP_PPN_FIELD;
/** DC.fsc.MODE. */
export const RISCV_IOMMU_DC_FSC_MODE: bigint = RISCV_IOMMU_ATP_MODE_FIELD;
/** fsc.MODE Bare (no first stage). */
export const RISCV_IOMMU_DC_FSC_MODE_BARE = 0;
/** iosatp.MODE Sv32 (DC.tc.SXL = 1). */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV32 = 8;
/** iosatp.MODE Sv39. */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39 = 8;
/** iosatp.MODE Sv48. */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48 = 9;
/** iosatp.MODE Sv57. */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV57 = 10;
/** pdtp.MODE PD8. */
export const RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8 = 1;
/** pdtp.MODE PD17. */
export const RISCV_IOMMU_DC_FSC_PDTP_MODE_PD17 = 2;
/** pdtp.MODE PD20. */
export const RISCV_IOMMU_DC_FSC_PDTP_MODE_PD20 = 3;

/** DC.msiptp.PPN. */
export const RISCV_IOMMU_DC_MSIPTP_PPN: bigint = RISCV_IOMMU_ATP_PPN_FIELD;
/** DC.msiptp.MODE. */
export const RISCV_IOMMU_DC_MSIPTP_MODE: bigint = RISCV_IOMMU_ATP_MODE_FIELD;
/** msiptp.MODE Off. */
export const RISCV_IOMMU_DC_MSIPTP_MODE_OFF = 0;
/** msiptp.MODE Flat. */
export const RISCV_IOMMU_DC_MSIPTP_MODE_FLAT = 1;
/** DC.msi_addr_mask. */
export const RISCV_IOMMU_DC_MSI_ADDR_MASK: bigint = _genmask(51, 0);
/** DC.msi_addr_pattern. */
export const RISCV_IOMMU_DC_MSI_PATTERN: bigint = _genmask(51, 0);

/** Non-leaf PDT entry V bit (§2.2 "Process-Directory-Table (PDT)"). */
export const RISCV_IOMMU_PDTE_V: bigint = _bit(0);
/** Non-leaf PDT entry PPN. */
export const RISCV_IOMMU_PDTE_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** Size of a process context (struct riscv_iommu_pc). */
export const RISCV_IOMMU_PC_SIZE = 16;

/** Byte offsets of the fields of struct riscv_iommu_pc. */
export const riscv_iommu_pc = { ta: 0x00, fsc: 0x08 } as const;

/** PC.ta.V. */
export const RISCV_IOMMU_PC_TA_V: bigint = _bit(0);
/** PC.ta.ENS. */
export const RISCV_IOMMU_PC_TA_ENS: bigint = _bit(1);
/** PC.ta.SUM. */
export const RISCV_IOMMU_PC_TA_SUM: bigint = _bit(2);
/** PC.ta.PSCID. */
export const RISCV_IOMMU_PC_TA_PSCID: bigint = _genmask(31, 12);
/** PC.fsc.PPN. */
export const RISCV_IOMMU_PC_FSC_PPN: bigint = RISCV_IOMMU_ATP_PPN_FIELD;
/** PC.fsc.MODE. */
export const RISCV_IOMMU_PC_FSC_MODE: bigint = RISCV_IOMMU_ATP_MODE_FIELD;

/*
 * Chapter 3 "In-memory queue interface".
 */

/** Size of a command-queue entry. */
export const RISCV_IOMMU_CMD_SIZE = 16;
/** Size of a fault-queue record. */
export const RISCV_IOMMU_FQ_RECORD_SIZE = 32;
/** Size of a page-request-queue record. */
export const RISCV_IOMMU_PQ_RECORD_SIZE = 16;

/** Command dword0.opcode. */
export const RISCV_IOMMU_CMD_OPCODE: bigint = _genmask(6, 0);
/** Command dword0.func3. */
export const RISCV_IOMMU_CMD_FUNC: bigint = _genmask(9, 7);

/** IOTINVAL opcode. */
export const RISCV_IOMMU_CMD_IOTINVAL_OPCODE = 1;
/** IOTINVAL.VMA function. */
export const RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA = 0;
/** IOTINVAL.GVMA function. */
export const RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA = 1;
/** IOTINVAL dword0.AV. */
export const RISCV_IOMMU_CMD_IOTINVAL_AV: bigint = _bit(10);
/** IOTINVAL dword0.PSCID. */
export const RISCV_IOMMU_CMD_IOTINVAL_PSCID: bigint = _genmask(31, 12);
/** IOTINVAL dword0.PSCV. */
export const RISCV_IOMMU_CMD_IOTINVAL_PSCV: bigint = _bit(32);
/** IOTINVAL dword0.GV. */
export const RISCV_IOMMU_CMD_IOTINVAL_GV: bigint = _bit(33);
/** IOTINVAL dword0.NL: also invalidate non-leaf entries (capabilities.NL). */
export const RISCV_IOMMU_CMD_IOTINVAL_NL: bigint = _bit(34);
/** IOTINVAL dword0.GSCID. */
export const RISCV_IOMMU_CMD_IOTINVAL_GSCID: bigint = _genmask(59, 44);
/** IOTINVAL dword1.S: ADDR is a NAPOT range (capabilities.S). */
export const RISCV_IOMMU_CMD_IOTINVAL_S: bigint = _bit(9);
/** IOTINVAL dword1.ADDR: the page number of the address (bits 61:10). */
export const RISCV_IOMMU_CMD_IOTINVAL_ADDR: bigint = _genmask(61, 10);

/** IOFENCE opcode. */
export const RISCV_IOMMU_CMD_IOFENCE_OPCODE = 2;
/** IOFENCE.C function. */
export const RISCV_IOMMU_CMD_IOFENCE_FUNC_C = 0;
/** IOFENCE dword0.AV: write DATA to ADDR on completion. */
export const RISCV_IOMMU_CMD_IOFENCE_AV: bigint = _bit(10);
/** IOFENCE dword0.WSI: set cqcsr.fence_w_ip on completion. */
export const RISCV_IOMMU_CMD_IOFENCE_WSI: bigint = _bit(11);
/** IOFENCE dword0.PR: order earlier device reads. */
export const RISCV_IOMMU_CMD_IOFENCE_PR: bigint = _bit(12);
/** IOFENCE dword0.PW: order earlier device writes. */
export const RISCV_IOMMU_CMD_IOFENCE_PW: bigint = _bit(13);
/** IOFENCE dword0.DATA. */
export const RISCV_IOMMU_CMD_IOFENCE_DATA: bigint = _genmask(63, 32);
/** IOFENCE dword1.ADDR[63:2]. */
export const RISCV_IOMMU_CMD_IOFENCE_ADDR: bigint = _genmask(61, 0);

/** IODIR opcode. */
export const RISCV_IOMMU_CMD_IODIR_OPCODE = 3;
/** IODIR.INVAL_DDT function. */
export const RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT = 0;
/** IODIR.INVAL_PDT function. */
export const RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT = 1;
/** IODIR dword0.PID. */
export const RISCV_IOMMU_CMD_IODIR_PID: bigint = _genmask(31, 12);
/** IODIR dword0.DV. */
export const RISCV_IOMMU_CMD_IODIR_DV: bigint = _bit(33);
/** IODIR dword0.DID. */
export const RISCV_IOMMU_CMD_IODIR_DID: bigint = _genmask(63, 40);

/** ATS opcode. */
export const RISCV_IOMMU_CMD_ATS_OPCODE = 4;
/** ATS.INVAL function. */
export const RISCV_IOMMU_CMD_ATS_FUNC_INVAL = 0;
/** ATS.PRGR function. */
export const RISCV_IOMMU_CMD_ATS_FUNC_PRGR = 1;
/** ATS dword0.PID. */
export const RISCV_IOMMU_CMD_ATS_PID: bigint = _genmask(31, 12);
/** ATS dword0.PV. */
export const RISCV_IOMMU_CMD_ATS_PV: bigint = _bit(32);
/** ATS dword0.DSV. */
export const RISCV_IOMMU_CMD_ATS_DSV: bigint = _bit(33);
/** ATS dword0.RID. */
export const RISCV_IOMMU_CMD_ATS_RID: bigint = _genmask(55, 40);
/** ATS dword0.DSEG. */
export const RISCV_IOMMU_CMD_ATS_DSEG: bigint = _genmask(63, 56);
/** ATS.INVAL payload G. */
export const RISCV_IOMMU_CMD_ATS_INVAL_G: bigint = _bit(0);
/** ATS.INVAL payload S. */
export const RISCV_IOMMU_CMD_ATS_INVAL_S: bigint = _bit(11);
/** ATS.INVAL payload untranslated address[63:12]. */
export const RISCV_IOMMU_CMD_ATS_INVAL_UADDR: bigint = _genmask(63, 12);
/** ATS.PRGR payload page-request group index. */
export const RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX: bigint = _genmask(40, 32);
/** ATS.PRGR payload response code. */
export const RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE: bigint = _genmask(47, 44);
/** ATS.PRGR payload destination ID. */
export const RISCV_IOMMU_CMD_ATS_PRGR_DST_ID: bigint = _genmask(63, 48);

/** Byte offsets of the fields of struct riscv_iommu_fq_record. */
export const riscv_iommu_fq_record = {
  hdr: 0x00,
  _reserved: 0x08,
  iotval: 0x10,
  iotval2: 0x18,
} as const;

/** Fault record header CAUSE. */
export const RISCV_IOMMU_FQ_HDR_CAUSE: bigint = _genmask(11, 0);
/** Fault record header PID. */
export const RISCV_IOMMU_FQ_HDR_PID: bigint = _genmask(31, 12);
/** Fault record header PV. */
export const RISCV_IOMMU_FQ_HDR_PV: bigint = _bit(32);
/** Fault record header PRIV. */
export const RISCV_IOMMU_FQ_HDR_PRIV: bigint = _bit(33);
/** Fault record header TTYP. */
export const RISCV_IOMMU_FQ_HDR_TTYP: bigint = _genmask(39, 34);
/** Fault record header DID. */
export const RISCV_IOMMU_FQ_HDR_DID: bigint = _genmask(63, 40);

/** Fault cause: instruction access fault. */
export const RISCV_IOMMU_FQ_CAUSE_INST_FAULT = 1;
/** Fault cause: read address misaligned. */
export const RISCV_IOMMU_FQ_CAUSE_RD_ADDR_MISALIGNED = 4;
/** Fault cause: read access fault. */
export const RISCV_IOMMU_FQ_CAUSE_RD_FAULT = 5;
/** Fault cause: write/AMO address misaligned. */
export const RISCV_IOMMU_FQ_CAUSE_WR_ADDR_MISALIGNED = 6;
/** Fault cause: write/AMO access fault. */
export const RISCV_IOMMU_FQ_CAUSE_WR_FAULT = 7;
/** Fault cause: instruction page fault. */
export const RISCV_IOMMU_FQ_CAUSE_INST_FAULT_S = 12;
/** Fault cause: read page fault. */
export const RISCV_IOMMU_FQ_CAUSE_RD_FAULT_S = 13;
/** Fault cause: write/AMO page fault. */
export const RISCV_IOMMU_FQ_CAUSE_WR_FAULT_S = 15;
/** Fault cause: instruction guest-page fault. */
export const RISCV_IOMMU_FQ_CAUSE_INST_FAULT_VS = 20;
/** Fault cause: read guest-page fault. */
export const RISCV_IOMMU_FQ_CAUSE_RD_FAULT_VS = 21;
/** Fault cause: write/AMO guest-page fault. */
export const RISCV_IOMMU_FQ_CAUSE_WR_FAULT_VS = 23;
/** Fault cause: all inbound transactions disallowed. */
export const RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED = 256;
/** Fault cause: DDT entry load access fault. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_LOAD_FAULT = 257;
/** Fault cause: DDT entry not valid. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_INVALID = 258;
/** Fault cause: DDT entry misconfigured. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_MISCONFIGURED = 259;
/** Fault cause: transaction type disallowed. */
export const RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED = 260;
/** Fault cause: MSI PTE load access fault. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_LOAD_FAULT = 261;
/** Fault cause: MSI PTE not valid. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_INVALID = 262;
/** Fault cause: MSI PTE misconfigured. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_MISCONFIGURED = 263;
/** Fault cause: MRIF access fault. */
export const RISCV_IOMMU_FQ_CAUSE_MRIF_FAULT = 264;
/** Fault cause: PDT entry load access fault. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_LOAD_FAULT = 265;
/** Fault cause: PDT entry not valid. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_INVALID = 266;
/** Fault cause: PDT entry misconfigured. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_MISCONFIGURED = 267;
/** Fault cause: DDT data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_CORRUPTED = 268;
/** Fault cause: PDT data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_CORRUPTED = 269;
/** Fault cause: MSI page-table data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_PT_CORRUPTED = 270;
/** Fault cause: MRIF data corruption (Linux keeps the historical spelling). */
export const RISCV_IOMMU_FQ_CAUSE_MRIF_CORRUIPTED = 271;
/** Fault cause: internal data-path error. */
export const RISCV_IOMMU_FQ_CAUSE_INTERNAL_DP_ERROR = 272;
/** Fault cause: IOMMU MSI write access fault. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_WR_FAULT = 273;
/** Fault cause: first/second-stage page-table data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED = 274;

/** Fault TTYP: not caused by an inbound transaction. */
export const RISCV_IOMMU_FQ_TTYP_NONE = 0;
/** Fault TTYP: untranslated read-for-execute. */
export const RISCV_IOMMU_FQ_TTYP_UADDR_INST_FETCH = 1;
/** Fault TTYP: untranslated read. */
export const RISCV_IOMMU_FQ_TTYP_UADDR_RD = 2;
/** Fault TTYP: untranslated write/AMO. */
export const RISCV_IOMMU_FQ_TTYP_UADDR_WR = 3;
/** Fault TTYP: translated read-for-execute. */
export const RISCV_IOMMU_FQ_TTYP_TADDR_INST_FETCH = 5;
/** Fault TTYP: translated read. */
export const RISCV_IOMMU_FQ_TTYP_TADDR_RD = 6;
/** Fault TTYP: translated write/AMO. */
export const RISCV_IOMMU_FQ_TTYP_TADDR_WR = 7;
/** Fault TTYP: PCIe ATS translation request. */
export const RISCV_IOMMU_FQ_TTYP_PCIE_ATS_REQ = 8;
/** Fault TTYP: PCIe message request. */
export const RISCV_IOMMU_FQ_TTYP_PCIE_MSG_REQ = 9;

/** Byte offsets of the fields of struct riscv_iommu_pq_record. */
export const riscv_iommu_pq_record = { hdr: 0x00, payload: 0x08 } as const;

/** Page-request header PID. */
export const RISCV_IOMMU_PQ_HDR_PID: bigint = _genmask(31, 12);
/** Page-request header PV. */
export const RISCV_IOMMU_PQ_HDR_PV: bigint = _bit(32);
/** Page-request header PRIV. */
export const RISCV_IOMMU_PQ_HDR_PRIV: bigint = _bit(33);
/** Page-request header EXEC. */
export const RISCV_IOMMU_PQ_HDR_EXEC: bigint = _bit(34);
/** Page-request header DID. */
export const RISCV_IOMMU_PQ_HDR_DID: bigint = _genmask(63, 40);
/** Page-request payload R. */
export const RISCV_IOMMU_PQ_PAYLOAD_R: bigint = _bit(0);
/** Page-request payload W. */
export const RISCV_IOMMU_PQ_PAYLOAD_W: bigint = _bit(1);
/** Page-request payload L (last request of the group). */
export const RISCV_IOMMU_PQ_PAYLOAD_L: bigint = _bit(2);
/** Page-request payload R, W and L together. */
export const RISCV_IOMMU_PQ_PAYLOAD_RWL_MASK: bigint = _genmask(2, 0);
/** Page-request payload page-request group index. */
export const RISCV_IOMMU_PQ_PAYLOAD_PRGI: bigint = _genmask(11, 3);
/** Page-request payload page address[63:12]. */
export const RISCV_IOMMU_PQ_PAYLOAD_ADDR: bigint = _genmask(63, 12);

/** MSI PTE V. */
export const RISCV_IOMMU_MSIPTE_V: bigint = _bit(0);
/** MSI PTE M (mode). */
export const RISCV_IOMMU_MSIPTE_M: bigint = _genmask(2, 1);
/** MSI PTE M = MRIF. */
export const RISCV_IOMMU_MSIPTE_M_MRIF = 1;
/** MSI PTE M = basic translate ("flat"). */
export const RISCV_IOMMU_MSIPTE_M_BASIC = 3;
/** MSI PTE MRIF address bits 55:9 (M = MRIF). */
export const RISCV_IOMMU_MSIPTE_MRIF_ADDR: bigint = _genmask(53, 7);
/** MSI PTE PPN (M = basic). */
export const RISCV_IOMMU_MSIPTE_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** MSI PTE C (custom). */
export const RISCV_IOMMU_MSIPTE_C: bigint = _bit(63);
/** MSI PTE MRIF notice ID bits 9:0. */
export const RISCV_IOMMU_MSIPTE_MRIF_NID: bigint = _genmask(9, 0);
/** MSI PTE MRIF notice PPN. */
export const RISCV_IOMMU_MSIPTE_MRIF_NPPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** MSI PTE MRIF notice ID bit 10. */
export const RISCV_IOMMU_MSIPTE_MRIF_NID_MSB: bigint = _bit(60);

/*
 * Command builders. dword0/dword1 are kept as unsigned 32-bit halves; the bit positions below
 * are those of the bigint masks above, shifted into the half that holds them.
 */

/**
 * One 16-byte command: two 64-bit doublewords as unsigned 32-bit halves.
 *
 * Mirrors struct riscv_iommu_command. Reuse one object per call site to build commands
 * without allocating.
 *
 * DIVERGENCE: Linux's holds two u64; the halves keep `bigint` off the unmap path.
 *
 * @example Building an IOTINVAL.VMA for one page of a PSCID
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   riscv_iommu_cmd_inval_set_addr,
 *   riscv_iommu_cmd_inval_set_pscid,
 *   riscv_iommu_cmd_inval_vma,
 *   RiscvIommuCommand,
 * } from "@iommu-lab/riscv-iommu/bits";
 *
 * const cmd = new RiscvIommuCommand();
 * riscv_iommu_cmd_inval_vma(cmd);
 * riscv_iommu_cmd_inval_set_pscid(cmd, 5);
 * riscv_iommu_cmd_inval_set_addr(cmd, 0x8000_3000);
 * assert.equal(cmd.dword0, 0x1_0000_5401n); // PSCV | PSCID=5 | AV | IOTINVAL
 * assert.equal(cmd.dword1, 0x8000_3000n >> 2n);
 * ```
 */
export class RiscvIommuCommand {
  /** Bits 31:0 of dword0. */
  dword0Lo = 0;
  /** Bits 63:32 of dword0. */
  dword0Hi = 0;
  /** Bits 31:0 of dword1. */
  dword1Lo = 0;
  /** Bits 63:32 of dword1. */
  dword1Hi = 0;

  /** dword0 as a `bigint` (for tests and logs). */
  get dword0(): bigint {
    return BigInt(this.dword0Hi >>> 0) << 32n | BigInt(this.dword0Lo >>> 0);
  }

  /** dword1 as a `bigint` (for tests and logs). */
  get dword1(): bigint {
    return BigInt(this.dword1Hi >>> 0) << 32n | BigInt(this.dword1Lo >>> 0);
  }
}

const _TWO22 = 0x40_0000;
const _TWO32 = 0x1_0000_0000;

function _cmd_init(cmd: RiscvIommuCommand, opcode: number, func: number): void {
  cmd.dword0Lo = opcode | func << 7;
  cmd.dword0Hi = 0;
  cmd.dword1Lo = 0;
  cmd.dword1Hi = 0;
}

/** Mirrors riscv_iommu_cmd_inval_vma(): IOTINVAL.VMA, everything else zero. */
export function riscv_iommu_cmd_inval_vma(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_IOTINVAL_OPCODE, RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA);
}

/**
 * Mirrors riscv_iommu_cmd_inval_gvma(): IOTINVAL.GVMA (second-stage entries), everything else
 * zero. Takes a GSCID, an address (a GPA), NL and the NAPOT range like IOTINVAL.VMA; a PSCID
 * makes it illegal.
 */
export function riscv_iommu_cmd_inval_gvma(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_IOTINVAL_OPCODE, RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA);
}

/**
 * Mirrors riscv_iommu_cmd_inval_set_addr(): sets ADDR to the page of `addr` and AV.
 *
 * `addr` is a 64-bit address as a number; any value a page-aligned 64-bit address can take
 * (including sign-extended upper-half IOVAs) is exact in a double, and the page offset is
 * dropped. Replaces dword1 (clears S).
 */
export function riscv_iommu_cmd_inval_set_addr(cmd: RiscvIommuCommand, addr: number): void {
  const pfn = Math.floor(addr / 4096);
  cmd.dword1Lo = (pfn % _TWO22) * 1024 >>> 0;
  cmd.dword1Hi = Math.floor(pfn / _TWO22) & 0x3fff_ffff;
  cmd.dword0Lo = (cmd.dword0Lo | 1 << 10) >>> 0;
}

/**
 * Sets ADDR to the NAPOT encoding of the range [`addr`, `addr` + `size`) and the S bit (needs
 * capabilities.S). `size` is a power of two of at least 8 KiB and `addr` is aligned to it.
 */
export function riscv_iommu_cmd_inval_set_range(
  cmd: RiscvIommuCommand,
  addr: number,
  size: number,
): void {
  // NAPOT: a page number whose lowest zero bit sits at X covers 2^(X+1) pages.
  riscv_iommu_cmd_inval_set_addr(cmd, addr + size / 2 - 4096);
  cmd.dword1Lo = (cmd.dword1Lo | 1 << 9) >>> 0;
}

/** Mirrors riscv_iommu_cmd_inval_set_nl(): sets NL (needs capabilities.NL). */
export function riscv_iommu_cmd_inval_set_nl(cmd: RiscvIommuCommand): void {
  cmd.dword0Hi = (cmd.dword0Hi | 1 << 2) >>> 0;
}

/** Mirrors riscv_iommu_cmd_inval_set_pscid(): sets PSCID and PSCV. */
export function riscv_iommu_cmd_inval_set_pscid(cmd: RiscvIommuCommand, pscid: number): void {
  cmd.dword0Lo = (cmd.dword0Lo | (pscid & 0xf_ffff) << 12) >>> 0;
  cmd.dword0Hi = (cmd.dword0Hi | 1) >>> 0;
}

/** Mirrors riscv_iommu_cmd_inval_set_gscid(): sets GSCID and GV. */
export function riscv_iommu_cmd_inval_set_gscid(cmd: RiscvIommuCommand, gscid: number): void {
  cmd.dword0Hi = (cmd.dword0Hi | (gscid & 0xffff) << 12 | 1 << 1) >>> 0;
}

/** Mirrors riscv_iommu_cmd_iofence(): IOFENCE.C with PR and PW. */
export function riscv_iommu_cmd_iofence(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_IOFENCE_OPCODE, RISCV_IOMMU_CMD_IOFENCE_FUNC_C);
  cmd.dword0Lo |= 1 << 12 | 1 << 13;
}

/**
 * Mirrors riscv_iommu_cmd_iofence_set_av(): IOFENCE.C that writes `data` to `addr` (4-byte
 * aligned, a physical address below 2^53) on completion.
 */
export function riscv_iommu_cmd_iofence_set_av(
  cmd: RiscvIommuCommand,
  addr: number,
  data: number,
): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_IOFENCE_OPCODE, RISCV_IOMMU_CMD_IOFENCE_FUNC_C);
  cmd.dword0Lo |= 1 << 10;
  cmd.dword0Hi = data >>> 0;
  const w = Math.floor(addr / 4);
  cmd.dword1Lo = w % _TWO32;
  cmd.dword1Hi = Math.floor(w / _TWO32) & 0x3fff_ffff;
}

/** Mirrors riscv_iommu_cmd_iodir_inval_ddt(): IODIR.INVAL_DDT for all devices. */
export function riscv_iommu_cmd_iodir_inval_ddt(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_IODIR_OPCODE, RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT);
}

/** Mirrors riscv_iommu_cmd_iodir_inval_pdt(): IODIR.INVAL_PDT (needs a DID). */
export function riscv_iommu_cmd_iodir_inval_pdt(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_IODIR_OPCODE, RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT);
}

/** Mirrors riscv_iommu_cmd_iodir_set_did(): sets DID and DV. */
export function riscv_iommu_cmd_iodir_set_did(cmd: RiscvIommuCommand, devid: number): void {
  cmd.dword0Hi = (cmd.dword0Hi | (devid & 0xff_ffff) << 8 | 1 << 1) >>> 0;
}

/** Mirrors riscv_iommu_cmd_iodir_set_pid(): sets PID. */
export function riscv_iommu_cmd_iodir_set_pid(cmd: RiscvIommuCommand, pasid: number): void {
  cmd.dword0Lo = (cmd.dword0Lo | (pasid & 0xf_ffff) << 12) >>> 0;
}

/** Mirrors riscv_iommu_cmd_ats_inval(): ATS.INVAL, everything else zero. */
export function riscv_iommu_cmd_ats_inval(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_ATS_OPCODE, RISCV_IOMMU_CMD_ATS_FUNC_INVAL);
}

/** RID, DSEG and DSV of an ATS command from a 24-bit device ID (segment in bits 23:16). */
function _ats_set_devid(cmd: RiscvIommuCommand, devid: number): void {
  cmd.dword0Hi = (cmd.dword0Hi | (devid & 0xffff) << 8 | (devid >>> 16 & 0xff) << 24 | 1 << 1) >>>
    0;
}

/** Mirrors riscv_iommu_cmd_ats_set_devid(): the destination: RID, DSEG and DSV from `devid`. */
export function riscv_iommu_cmd_ats_set_devid(cmd: RiscvIommuCommand, devid: number): void {
  _ats_set_devid(cmd, devid);
}

/** Mirrors riscv_iommu_cmd_ats_set_pid(): a PASID-specific command: PID and PV. */
export function riscv_iommu_cmd_ats_set_pid(cmd: RiscvIommuCommand, pid: number): void {
  cmd.dword0Lo = (cmd.dword0Lo | (pid & 0xf_ffff) << 12) >>> 0;
  cmd.dword0Hi = (cmd.dword0Hi | 1) >>> 0;
}

/**
 * Mirrors riscv_iommu_cmd_ats_set_range(): the invalidation payload for the `size` bytes at `addr`
 * (a power of two of at least 4 KiB, `addr` aligned to it), in the PCIe ATS encoding: untranslated
 * address[63:12] with the bits below the size's set and S when more than one page. Replaces the
 * payload (clears G).
 */
export function riscv_iommu_cmd_ats_set_range(
  cmd: RiscvIommuCommand,
  addr: number,
  size: number,
): void {
  // Bits 11 .. log2(size)-1 set: size/4096 - 1 shifted to bit 11, over the address.
  const v = addr + (size / 4096 - 1) * 2048;
  cmd.dword1Lo = v % _TWO32 >>> 0;
  cmd.dword1Hi = Math.floor(v / _TWO32) >>> 0;
}

/** Mirrors riscv_iommu_cmd_ats_set_all(): the payload covering the whole address space. */
export function riscv_iommu_cmd_ats_set_all(cmd: RiscvIommuCommand): void {
  // S set and every address bit but the top one: the PCIe "entire address space" encoding.
  cmd.dword1Lo = 0xffff_f800;
  cmd.dword1Hi = 0x7fff_ffff;
}

/** Mirrors riscv_iommu_cmd_prgr(): ATS.PRGR, everything else zero. */
export function riscv_iommu_cmd_prgr(cmd: RiscvIommuCommand): void {
  _cmd_init(cmd, RISCV_IOMMU_CMD_ATS_OPCODE, RISCV_IOMMU_CMD_ATS_FUNC_PRGR);
}

/**
 * Mirrors riscv_iommu_cmd_prgr_set_devid(): the destination (RID, DSEG, DSV) and the payload's
 * destination ID from `devid`.
 */
export function riscv_iommu_cmd_prgr_set_devid(cmd: RiscvIommuCommand, devid: number): void {
  _ats_set_devid(cmd, devid);
  cmd.dword1Hi = (cmd.dword1Hi | (devid & 0xffff) << 16) >>> 0;
}

/**
 * Mirrors riscv_iommu_cmd_prgr_set_response(): the page-request group index and the response code
 * (0 success, 1 invalid request, 15 response failure).
 */
export function riscv_iommu_cmd_prgr_set_response(
  cmd: RiscvIommuCommand,
  group: number,
  code: number,
): void {
  cmd.dword1Hi = (cmd.dword1Hi | (group & 0x1ff) | (code & 0xf) << 12) >>> 0;
}

/** Mirrors riscv_iommu_cmd_prgr_set_pid(): a response with a PASID: PID and PV. */
export function riscv_iommu_cmd_prgr_set_pid(cmd: RiscvIommuCommand, pid: number): void {
  riscv_iommu_cmd_ats_set_pid(cmd, pid);
}
