/**
 * The RISC-V IOMMU register map, queue-entry layouts and command encodings (spec v1.0 chapters
 * 5 "Memory-mapped register interface" and 3 "In-memory queue interface"), as the silicon sees
 * them.
 *
 * A transcription with no logic, grouped by register. Names follow the spec and Linux's
 * `iommu-bits.h` so they can be grepped across C and TypeScript. Fields of 32-bit registers are
 * `number` masks; fields of 64-bit registers and in-memory doublewords are `bigint` masks (the
 * `GENMASK_ULL` of the C header); {@linkcode FIELD_GET} and {@linkcode FIELD_PREP} work on those.
 * Fault causes, TTYPs and the `ddtp.iommu_mode` values live with the structures in `structs.ts`.
 *
 * @module
 */

/** Size of the register page. */
export const RISCV_IOMMU_REG_SIZE = 0x1000;

// -- Register offsets (spec §5.1 "Register layout") --

/** `capabilities` (8 B, RO). Its fields are in `caps.ts`. */
export const RISCV_IOMMU_REG_CAPABILITIES = 0x000;
/** `fctl` (4 B): features control. */
export const RISCV_IOMMU_REG_FCTL = 0x008;
/** `ddtp` (8 B): device-directory-table pointer. */
export const RISCV_IOMMU_REG_DDTP = 0x010;
/** `cqb` (8 B): command-queue base. */
export const RISCV_IOMMU_REG_CQB = 0x018;
/** `cqh` (4 B, RO): command-queue head. */
export const RISCV_IOMMU_REG_CQH = 0x020;
/** `cqt` (4 B): command-queue tail. */
export const RISCV_IOMMU_REG_CQT = 0x024;
/** `fqb` (8 B): fault-queue base. */
export const RISCV_IOMMU_REG_FQB = 0x028;
/** `fqh` (4 B): fault-queue head. */
export const RISCV_IOMMU_REG_FQH = 0x030;
/** `fqt` (4 B, RO): fault-queue tail. */
export const RISCV_IOMMU_REG_FQT = 0x034;
/** `pqb` (8 B, present with capabilities.ATS): page-request-queue base. */
export const RISCV_IOMMU_REG_PQB = 0x038;
/** `pqh` (4 B, present with capabilities.ATS): page-request-queue head. */
export const RISCV_IOMMU_REG_PQH = 0x040;
/** `pqt` (4 B, RO, present with capabilities.ATS): page-request-queue tail. */
export const RISCV_IOMMU_REG_PQT = 0x044;
/** `cqcsr` (4 B): command-queue control and status. */
export const RISCV_IOMMU_REG_CQCSR = 0x048;
/** `fqcsr` (4 B): fault-queue control and status. */
export const RISCV_IOMMU_REG_FQCSR = 0x04c;
/** `pqcsr` (4 B, present with capabilities.ATS): page-request-queue control and status. */
export const RISCV_IOMMU_REG_PQCSR = 0x050;
/** `ipsr` (4 B, RW1C): interrupt pending status. */
export const RISCV_IOMMU_REG_IPSR = 0x054;
/** `iocountovf` (4 B, RO, present with capabilities.HPM): counter overflow shadows. */
export const RISCV_IOMMU_REG_IOCOUNTOVF = 0x058;
/** `iocountinh` (4 B, present with capabilities.HPM): counter inhibits. */
export const RISCV_IOMMU_REG_IOCOUNTINH = 0x05c;
/** `iohpmcycles` (8 B, present with capabilities.HPM): cycle counter. */
export const RISCV_IOMMU_REG_IOHPMCYCLES = 0x060;
/** `iohpmctr1` (8 B); counter N (1..31) is at {@linkcode RISCV_IOMMU_REG_IOHPMCTR}(N). */
export const RISCV_IOMMU_REG_IOHPMCTR_BASE = 0x068;
/** `iohpmevt1` (8 B); event selector N (1..31) is at {@linkcode RISCV_IOMMU_REG_IOHPMEVT}(N). */
export const RISCV_IOMMU_REG_IOHPMEVT_BASE = 0x160;
/** Number of programmable HPM counters the register map has room for. */
export const RISCV_IOMMU_IOHPMEVT_CNT = 31;
/** `tr_req_iova` (8 B, present with capabilities.DBG): debug translation request IOVA. */
export const RISCV_IOMMU_REG_TR_REQ_IOVA = 0x258;
/** `tr_req_ctl` (8 B, present with capabilities.DBG): debug translation request control. */
export const RISCV_IOMMU_REG_TR_REQ_CTL = 0x260;
/** `tr_response` (8 B, RO, present with capabilities.DBG): debug translation response. */
export const RISCV_IOMMU_REG_TR_RESPONSE = 0x268;
/** `iommu_qosid` (4 B, present with capabilities.QOSID) [post-1.0]. */
export const RISCV_IOMMU_REG_IOMMU_QOSID = 0x270;
/** `icvec` (8 B): interrupt cause to vector. */
export const RISCV_IOMMU_REG_ICVEC = 0x2f8;
/** `msi_cfg_tbl` (16 × 16 B, present unless capabilities.IGS is WSI). */
export const RISCV_IOMMU_REG_MSI_CFG_TBL = 0x300;
/** Number of `msi_cfg_tbl` entries. */
export const RISCV_IOMMU_MSI_CFG_TBL_ENTRIES = 16;

/** Offset of `iohpmctrN`, N in 1..31. */
export function RISCV_IOMMU_REG_IOHPMCTR(n: number): number {
  return RISCV_IOMMU_REG_IOHPMCTR_BASE + (n - 1) * 8;
}

/** Offset of `iohpmevtN`, N in 1..31. */
export function RISCV_IOMMU_REG_IOHPMEVT(n: number): number {
  return RISCV_IOMMU_REG_IOHPMEVT_BASE + (n - 1) * 8;
}

/** Offset of `msi_addr_n` (8 B). */
export function RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(n: number): number {
  return RISCV_IOMMU_REG_MSI_CFG_TBL + n * 0x10;
}

/** Offset of `msi_data_n` (4 B). */
export function RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(n: number): number {
  return RISCV_IOMMU_REG_MSI_CFG_TBL + n * 0x10 + 0x8;
}

/** Offset of `msi_vec_ctl_n` (4 B). */
export function RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(n: number): number {
  return RISCV_IOMMU_REG_MSI_CFG_TBL + n * 0x10 + 0xc;
}

// -- Shared layouts --

/** PPN field of `ddtp`, the queue bases and `tr_response` (bits 53:10). */
export const RISCV_IOMMU_PPN_FIELD = 0x003f_ffff_ffff_fc00n;

// -- fctl (spec §5.4 "Features-control register") --

/** `fctl.BE`: big-endian implicit accesses (WARL; writable only with capabilities.END). */
export const RISCV_IOMMU_FCTL_BE = 1 << 0;
/** `fctl.WSI`: wire-signalled interrupts (WARL; writable only with IGS=BOTH). */
export const RISCV_IOMMU_FCTL_WSI = 1 << 1;
/** `fctl.GXL`: G-stage uses Sv32x4 encodings (WARL). */
export const RISCV_IOMMU_FCTL_GXL = 1 << 2;

// -- ddtp (spec §5.5 "Device-directory-table pointer") --

/** `ddtp.iommu_mode` (WARL). */
export const RISCV_IOMMU_DDTP_IOMMU_MODE = 0xfn;
/** `ddtp.busy` (RO). */
export const RISCV_IOMMU_DDTP_BUSY = 1n << 4n;
/** `ddtp.PPN` (WARL): root DDT page. The `iommu_mode` values are in `structs.ts`. */
export const RISCV_IOMMU_DDTP_PPN: bigint = RISCV_IOMMU_PPN_FIELD;

// -- Queue bases cqb/fqb/pqb (spec §5.6/§5.9/§5.12, the queue base registers) --

/** `cqb.LOG2SZ-1` (WARL): the queue holds 2^(field + 1) entries. */
export const RISCV_IOMMU_CQB_ENTRIES = 0x1fn;
/** `cqb.PPN` (WARL). */
export const RISCV_IOMMU_CQB_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** `fqb.LOG2SZ-1` (WARL). */
export const RISCV_IOMMU_FQB_ENTRIES = 0x1fn;
/** `fqb.PPN` (WARL). */
export const RISCV_IOMMU_FQB_PPN: bigint = RISCV_IOMMU_PPN_FIELD;
/** `pqb.LOG2SZ-1` (WARL). */
export const RISCV_IOMMU_PQB_ENTRIES = 0x1fn;
/** `pqb.PPN` (WARL). */
export const RISCV_IOMMU_PQB_PPN: bigint = RISCV_IOMMU_PPN_FIELD;

/** Command-queue entry size in bytes. */
export const RISCV_IOMMU_CQ_ENTRY_SIZE = 16;
/** Fault-queue record size in bytes. */
export const RISCV_IOMMU_FQ_ENTRY_SIZE = 32;
/** Page-request-queue record size in bytes. */
export const RISCV_IOMMU_PQ_ENTRY_SIZE = 16;

// -- Queue CSRs (spec §5.15 "Command-queue CSR", §5.16 "Fault queue CSR", §5.17 "Page-request-queue
// CSR"): common bit positions --

/** Queue enable (cqen/fqen/pqen). */
export const RISCV_IOMMU_QUEUE_ENABLE = 1 << 0;
/** Queue interrupt enable (cie/fie/pie). */
export const RISCV_IOMMU_QUEUE_INTR_ENABLE = 1 << 1;
/** Queue memory fault (cqmf/fqmf/pqmf), RW1C. */
export const RISCV_IOMMU_QUEUE_MEM_FAULT = 1 << 8;
/** Queue overflow (fqof/pqof), RW1C. */
export const RISCV_IOMMU_QUEUE_OVERFLOW = 1 << 9;
/** Queue active (cqon/fqon/pqon), RO. */
export const RISCV_IOMMU_QUEUE_ACTIVE = 1 << 16;
/** Queue busy, RO. */
export const RISCV_IOMMU_QUEUE_BUSY = 1 << 17;

/** `cqcsr.cqen`. */
export const RISCV_IOMMU_CQCSR_CQEN: number = RISCV_IOMMU_QUEUE_ENABLE;
/** `cqcsr.cie`. */
export const RISCV_IOMMU_CQCSR_CIE: number = RISCV_IOMMU_QUEUE_INTR_ENABLE;
/** `cqcsr.cqmf` (RW1C): memory fault fetching a command or storing for IOFENCE.C. */
export const RISCV_IOMMU_CQCSR_CQMF: number = RISCV_IOMMU_QUEUE_MEM_FAULT;
/** `cqcsr.cmd_to` (RW1C): an IOFENCE.C found a timed-out ATS.INVAL. */
export const RISCV_IOMMU_CQCSR_CMD_TO = 1 << 9;
/** `cqcsr.cmd_ill` (RW1C): illegal or unsupported command. */
export const RISCV_IOMMU_CQCSR_CMD_ILL = 1 << 10;
/** `cqcsr.fence_w_ip` (RW1C): an IOFENCE.C with WSI=1 completed. */
export const RISCV_IOMMU_CQCSR_FENCE_W_IP = 1 << 11;
/** `cqcsr.cqon` (RO). */
export const RISCV_IOMMU_CQCSR_CQON: number = RISCV_IOMMU_QUEUE_ACTIVE;
/** `cqcsr.busy` (RO). */
export const RISCV_IOMMU_CQCSR_BUSY: number = RISCV_IOMMU_QUEUE_BUSY;

/** `fqcsr.fqen`. */
export const RISCV_IOMMU_FQCSR_FQEN: number = RISCV_IOMMU_QUEUE_ENABLE;
/** `fqcsr.fie`. */
export const RISCV_IOMMU_FQCSR_FIE: number = RISCV_IOMMU_QUEUE_INTR_ENABLE;
/** `fqcsr.fqmf` (RW1C): store fault writing a record. */
export const RISCV_IOMMU_FQCSR_FQMF: number = RISCV_IOMMU_QUEUE_MEM_FAULT;
/** `fqcsr.fqof` (RW1C): a record was dropped because the queue was full. */
export const RISCV_IOMMU_FQCSR_FQOF: number = RISCV_IOMMU_QUEUE_OVERFLOW;
/** `fqcsr.fqon` (RO). */
export const RISCV_IOMMU_FQCSR_FQON: number = RISCV_IOMMU_QUEUE_ACTIVE;
/** `fqcsr.busy` (RO). */
export const RISCV_IOMMU_FQCSR_BUSY: number = RISCV_IOMMU_QUEUE_BUSY;

/** `pqcsr.pqen`. */
export const RISCV_IOMMU_PQCSR_PQEN: number = RISCV_IOMMU_QUEUE_ENABLE;
/** `pqcsr.pie`. */
export const RISCV_IOMMU_PQCSR_PIE: number = RISCV_IOMMU_QUEUE_INTR_ENABLE;
/** `pqcsr.pqmf` (RW1C). */
export const RISCV_IOMMU_PQCSR_PQMF: number = RISCV_IOMMU_QUEUE_MEM_FAULT;
/** `pqcsr.pqof` (RW1C). */
export const RISCV_IOMMU_PQCSR_PQOF: number = RISCV_IOMMU_QUEUE_OVERFLOW;
/** `pqcsr.pqon` (RO). */
export const RISCV_IOMMU_PQCSR_PQON: number = RISCV_IOMMU_QUEUE_ACTIVE;
/** `pqcsr.busy` (RO). */
export const RISCV_IOMMU_PQCSR_BUSY: number = RISCV_IOMMU_QUEUE_BUSY;

// -- ipsr (spec §5.18 "Interrupt pending status register") --

/** Interrupt cause numbers (= ipsr bit index = icvec field index). */
export const RISCV_IOMMU_INTR_CQ = 0;
/** Fault-queue interrupt cause. */
export const RISCV_IOMMU_INTR_FQ = 1;
/** Performance-monitor interrupt cause. */
export const RISCV_IOMMU_INTR_PM = 2;
/** Page-request-queue interrupt cause. */
export const RISCV_IOMMU_INTR_PQ = 3;
/** Number of interrupt causes. */
export const RISCV_IOMMU_INTR_COUNT = 4;

/** `ipsr.cip`. */
export const RISCV_IOMMU_IPSR_CIP = 1 << RISCV_IOMMU_INTR_CQ;
/** `ipsr.fip`. */
export const RISCV_IOMMU_IPSR_FIP = 1 << RISCV_IOMMU_INTR_FQ;
/** `ipsr.pmip`. */
export const RISCV_IOMMU_IPSR_PMIP = 1 << RISCV_IOMMU_INTR_PM;
/** `ipsr.pip`. */
export const RISCV_IOMMU_IPSR_PIP = 1 << RISCV_IOMMU_INTR_PQ;

// -- HPM (spec §5.19–§5.23, the performance-monitoring registers) --

/** `iocountovf.CY` / `iocountinh.CY`: the cycle counter's bit. */
export const RISCV_IOMMU_IOCOUNTOVF_CY = 1 << 0;
/** `iocountinh.CY`. */
export const RISCV_IOMMU_IOCOUNTINH_CY = 1 << 0;
/** `iohpmcycles.counter` (bits 62:0). */
export const RISCV_IOMMU_IOHPMCYCLES_COUNTER = 0x7fff_ffff_ffff_ffffn;
/** `iohpmcycles.OF`. */
export const RISCV_IOMMU_IOHPMCYCLES_OF = 1n << 63n;
/** `iohpmevt.eventID`. */
export const RISCV_IOMMU_IOHPMEVT_EVENT_ID = 0x7fffn;
/** `iohpmevt.DMASK`. */
export const RISCV_IOMMU_IOHPMEVT_DMASK = 1n << 15n;
/** `iohpmevt.PID_PSCID`. */
export const RISCV_IOMMU_IOHPMEVT_PID_PSCID = 0xfffffn << 16n;
/** `iohpmevt.DID_GSCID`. */
export const RISCV_IOMMU_IOHPMEVT_DID_GSCID = 0xffffffn << 36n;
/** `iohpmevt.PV_PSCV`. */
export const RISCV_IOMMU_IOHPMEVT_PV_PSCV = 1n << 60n;
/** `iohpmevt.DV_GSCV`. */
export const RISCV_IOMMU_IOHPMEVT_DV_GSCV = 1n << 61n;
/** `iohpmevt.IDT`. */
export const RISCV_IOMMU_IOHPMEVT_IDT = 1n << 62n;
/** `iohpmevt.OF`. */
export const RISCV_IOMMU_IOHPMEVT_OF = 1n << 63n;

// -- Debug translation interface (spec chapter 4 "Debug support" and §5.24–§5.26) --

/** `tr_req_iova.vpn` (bits 63:12). */
export const RISCV_IOMMU_TR_REQ_IOVA_VPN = 0xffff_ffff_ffff_f000n;
/** `tr_req_ctl.Go/Busy` (RW1S). */
export const RISCV_IOMMU_TR_REQ_CTL_GO_BUSY = 1n << 0n;
/** `tr_req_ctl.Priv`. */
export const RISCV_IOMMU_TR_REQ_CTL_PRIV = 1n << 1n;
/** `tr_req_ctl.Exe`. */
export const RISCV_IOMMU_TR_REQ_CTL_EXE = 1n << 2n;
/** `tr_req_ctl.NW`: read-only access requested. */
export const RISCV_IOMMU_TR_REQ_CTL_NW = 1n << 3n;
/** `tr_req_ctl.PID`. */
export const RISCV_IOMMU_TR_REQ_CTL_PID = 0xfffffn << 12n;
/** `tr_req_ctl.PV`. */
export const RISCV_IOMMU_TR_REQ_CTL_PV = 1n << 32n;
/** `tr_req_ctl.DID`. */
export const RISCV_IOMMU_TR_REQ_CTL_DID = 0xffffffn << 40n;
/** `tr_response.fault`. */
export const RISCV_IOMMU_TR_RESPONSE_FAULT = 1n << 0n;
/** `tr_response.PBMT`. */
export const RISCV_IOMMU_TR_RESPONSE_PBMT = 3n << 7n;
/** `tr_response.S`: the range is larger than 4 KiB, size encoded in the PPN's low bits. */
export const RISCV_IOMMU_TR_RESPONSE_SZ = 1n << 9n;
/** `tr_response.PPN`. */
export const RISCV_IOMMU_TR_RESPONSE_PPN: bigint = RISCV_IOMMU_PPN_FIELD;

// -- icvec (spec §5.27 "Interrupt-cause-to-vector register") --

/** `icvec.civ`. */
export const RISCV_IOMMU_ICVEC_CIV = 0xfn;
/** `icvec.fiv`. */
export const RISCV_IOMMU_ICVEC_FIV = 0xfn << 4n;
/** `icvec.pmiv`. */
export const RISCV_IOMMU_ICVEC_PMIV = 0xfn << 8n;
/** `icvec.piv`. */
export const RISCV_IOMMU_ICVEC_PIV = 0xfn << 12n;

// -- msi_cfg_tbl (spec §5.28 "MSI configuration table") --

/** `msi_addr_x.ADDR` (bits 55:2). */
export const RISCV_IOMMU_MSI_CFG_TBL_ADDR = 0x00ff_ffff_ffff_fffcn;
/** `msi_vec_ctl_x.M`: the vector is masked. */
export const RISCV_IOMMU_MSI_CFG_TBL_CTRL_M = 1 << 0;

// -- iommu_qosid (spec the QoS Identifiers extension's "IOMMU QoS ID" register) [post-1.0] --

/** `iommu_qosid.RCID`. */
export const RISCV_IOMMU_IOMMU_QOSID_RCID = 0xfff;
/** `iommu_qosid.MCID`. */
export const RISCV_IOMMU_IOMMU_QOSID_MCID = 0xfff << 16;

// -- Commands (spec §3.1 "Command-Queue") --

/** Command dword0 opcode. */
export const RISCV_IOMMU_CMD_OPCODE = 0x7fn;
/** Command dword0 func3. */
export const RISCV_IOMMU_CMD_FUNC = 0x7n << 7n;

/** IOTINVAL opcode. */
export const RISCV_IOMMU_CMD_IOTINVAL_OPCODE = 1;
/** IOTINVAL.VMA func3: first-stage caches. */
export const RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA = 0;
/** IOTINVAL.GVMA func3: G-stage and MSI page-table caches. */
export const RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA = 1;
/** IOTINVAL dword0 AV. */
export const RISCV_IOMMU_CMD_IOTINVAL_AV = 1n << 10n;
/** IOTINVAL dword0 PSCID. */
export const RISCV_IOMMU_CMD_IOTINVAL_PSCID = 0xfffffn << 12n;
/** IOTINVAL dword0 PSCV. */
export const RISCV_IOMMU_CMD_IOTINVAL_PSCV = 1n << 32n;
/** IOTINVAL dword0 GV. */
export const RISCV_IOMMU_CMD_IOTINVAL_GV = 1n << 33n;
/** IOTINVAL dword0 NL (non-leaf, with capabilities.NL) [post-1.0]. */
export const RISCV_IOMMU_CMD_IOTINVAL_NL = 1n << 34n;
/** IOTINVAL dword0 GSCID. */
export const RISCV_IOMMU_CMD_IOTINVAL_GSCID = 0xffffn << 44n;
/** IOTINVAL dword1 S (NAPOT range, with capabilities.S) [post-1.0]. */
export const RISCV_IOMMU_CMD_IOTINVAL_S = 1n << 9n;
/** IOTINVAL dword1 ADDR[63:12]. */
export const RISCV_IOMMU_CMD_IOTINVAL_ADDR = 0x3fff_ffff_ffff_fc00n;

/** IOFENCE opcode. */
export const RISCV_IOMMU_CMD_IOFENCE_OPCODE = 2;
/** IOFENCE.C func3. */
export const RISCV_IOMMU_CMD_IOFENCE_FUNC_C = 0;
/** IOFENCE dword0 AV: store DATA to ADDR on completion. */
export const RISCV_IOMMU_CMD_IOFENCE_AV = 1n << 10n;
/** IOFENCE dword0 WSI: set cqcsr.fence_w_ip on completion. */
export const RISCV_IOMMU_CMD_IOFENCE_WSI = 1n << 11n;
/** IOFENCE dword0 PR. */
export const RISCV_IOMMU_CMD_IOFENCE_PR = 1n << 12n;
/** IOFENCE dword0 PW. */
export const RISCV_IOMMU_CMD_IOFENCE_PW = 1n << 13n;
/** IOFENCE dword0 DATA. */
export const RISCV_IOMMU_CMD_IOFENCE_DATA = 0xffff_ffffn << 32n;
/** IOFENCE dword1 ADDR[63:2]. */
export const RISCV_IOMMU_CMD_IOFENCE_ADDR = 0x3fff_ffff_ffff_ffffn;

/** IODIR opcode (v1.0 table: IOTDIR). */
export const RISCV_IOMMU_CMD_IODIR_OPCODE = 3;
/** IODIR.INVAL_DDT func3. */
export const RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT = 0;
/** IODIR.INVAL_PDT func3. */
export const RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT = 1;
/** IODIR dword0 PID. */
export const RISCV_IOMMU_CMD_IODIR_PID = 0xfffffn << 12n;
/** IODIR dword0 DV. */
export const RISCV_IOMMU_CMD_IODIR_DV = 1n << 33n;
/** IODIR dword0 DID. */
export const RISCV_IOMMU_CMD_IODIR_DID = 0xffffffn << 40n;

/** ATS opcode. */
export const RISCV_IOMMU_CMD_ATS_OPCODE = 4;
/** ATS.INVAL func3. */
export const RISCV_IOMMU_CMD_ATS_FUNC_INVAL = 0;
/** ATS.PRGR func3. */
export const RISCV_IOMMU_CMD_ATS_FUNC_PRGR = 1;
/** ATS dword0 PID. */
export const RISCV_IOMMU_CMD_ATS_PID = 0xfffffn << 12n;
/** ATS dword0 PV. */
export const RISCV_IOMMU_CMD_ATS_PV = 1n << 32n;
/** ATS dword0 DSV. */
export const RISCV_IOMMU_CMD_ATS_DSV = 1n << 33n;
/** ATS dword0 RID. */
export const RISCV_IOMMU_CMD_ATS_RID = 0xffffn << 40n;
/** ATS dword0 DSEG. */
export const RISCV_IOMMU_CMD_ATS_DSEG = 0xffn << 56n;
/** ATS.INVAL payload G. */
export const RISCV_IOMMU_CMD_ATS_INVAL_G = 1n << 0n;
/** ATS.INVAL payload S. */
export const RISCV_IOMMU_CMD_ATS_INVAL_S = 1n << 11n;
/** ATS.INVAL payload untranslated address[63:12]. */
export const RISCV_IOMMU_CMD_ATS_INVAL_UADDR = 0xffff_ffff_ffff_f000n;
/** ATS.PRGR payload Page Request Group Index. */
export const RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX = 0x1ffn << 32n;
/** ATS.PRGR payload Response Code. */
export const RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE = 0xfn << 44n;
/** ATS.PRGR payload Destination ID (v1.0; reserved in later revisions). */
export const RISCV_IOMMU_CMD_ATS_PRGR_DST_ID = 0xffffn << 48n;

// -- Fault-queue record (spec §3.2 "Fault/Event-Queue") --

/** FQ record dword0 CAUSE. */
export const RISCV_IOMMU_FQ_HDR_CAUSE = 0xfffn;
/** FQ record dword0 PID. */
export const RISCV_IOMMU_FQ_HDR_PID = 0xfffffn << 12n;
/** FQ record dword0 PV. */
export const RISCV_IOMMU_FQ_HDR_PV = 1n << 32n;
/** FQ record dword0 PRIV. */
export const RISCV_IOMMU_FQ_HDR_PRIV = 1n << 33n;
/** FQ record dword0 TTYP. */
export const RISCV_IOMMU_FQ_HDR_TTYPE = 0x3fn << 34n;
/** FQ record dword0 DID. */
export const RISCV_IOMMU_FQ_HDR_DID = 0xffffffn << 40n;

// -- Page-request-queue record (spec §3.3 "Page-Request-Queue") --

/** PQ record dword0 PID. */
export const RISCV_IOMMU_PQ_HDR_PID = 0xfffffn << 12n;
/** PQ record dword0 PV. */
export const RISCV_IOMMU_PQ_HDR_PV = 1n << 32n;
/** PQ record dword0 PRIV. */
export const RISCV_IOMMU_PQ_HDR_PRIV = 1n << 33n;
/** PQ record dword0 EXEC. */
export const RISCV_IOMMU_PQ_HDR_EXEC = 1n << 34n;
/** PQ record dword0 DID. */
export const RISCV_IOMMU_PQ_HDR_DID = 0xffffffn << 40n;
/** PQ record dword1 R. */
export const RISCV_IOMMU_PQ_PAYLOAD_R = 1n << 0n;
/** PQ record dword1 W. */
export const RISCV_IOMMU_PQ_PAYLOAD_W = 1n << 1n;
/** PQ record dword1 L: last request of its group. */
export const RISCV_IOMMU_PQ_PAYLOAD_L = 1n << 2n;
/** PQ record dword1 Page Request Group Index. */
export const RISCV_IOMMU_PQ_PAYLOAD_PRGI = 0x1ffn << 3n;
/** PQ record dword1 page address[63:12]. */
export const RISCV_IOMMU_PQ_PAYLOAD_ADDR = 0xffff_ffff_ffff_f000n;

/** Reads the field `mask` of `v`, shifted down (Linux `FIELD_GET` for 64-bit masks). */
export function FIELD_GET(mask: bigint, v: bigint): bigint {
  return (v & mask) >> _shiftOf(mask);
}

/** Places `val` into the field `mask` (Linux `FIELD_PREP` for 64-bit masks). */
export function FIELD_PREP(mask: bigint, val: bigint | number): bigint {
  return (BigInt(val) << _shiftOf(mask)) & mask;
}

function _shiftOf(mask: bigint): bigint {
  let s = 0n;
  while (s < 64n && ((mask >> s) & 1n) === 0n) s++;
  return s;
}
