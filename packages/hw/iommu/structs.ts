/**
 * Encodings of the RISC-V IOMMU's in-memory structures (spec chapter 2 "Data Structures" and §3.2
 * "Fault/Event-Queue"): the device directory (DDTE, device context), the process directory (PDTE,
 * process context), page-table entries, MSI page-table entries, fault causes and transaction types.
 *
 * Names follow Linux `iommu-bits.h` where it has them. The model keeps 64-bit words as two 32-bit
 * halves, so single-bit flags of a low word are plain masks (`RISCV_IOMMU_DC_TC_V`) and fields of
 * 64-bit words are given by their bit position (`..._SHIFT`) in the full word.
 *
 * @module
 */

// ddtp.iommu_mode (spec §5.5 "Device-directory-table pointer")
/** `ddtp.iommu_mode` Off: every inbound transaction is blocked (cause 256). */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_OFF = 0;
/** `ddtp.iommu_mode` Bare: Untranslated requests pass through untranslated. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_BARE = 1;
/** `ddtp.iommu_mode` 1LVL: one-level device directory. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL = 2;
/** `ddtp.iommu_mode` 2LVL: two-level device directory. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL = 3;
/** `ddtp.iommu_mode` 3LVL: three-level device directory. */
export const RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL = 4;

// Non-leaf DDT and PDT entries (spec §2.1 "Device-Directory-Table", §2.2 "Process-Directory-Table")
/** Non-leaf DDTE valid bit. */
export const RISCV_IOMMU_DDTE_V = 1 << 0;
/** Bit position of the non-leaf DDTE PPN (53:10). */
export const RISCV_IOMMU_DDTE_PPN_SHIFT = 10;
/** Non-leaf PDTE valid bit. */
export const RISCV_IOMMU_PDTE_V = 1 << 0;
/** Bit position of the non-leaf PDTE PPN (53:10). */
export const RISCV_IOMMU_PDTE_PPN_SHIFT = 10;

/** Size in bytes of a base-format device context (`capabilities.MSI_FLAT` = 0). */
export const RISCV_IOMMU_DC_BASE_SIZE = 32;
/** Size in bytes of an extended-format device context (`capabilities.MSI_FLAT` = 1). */
export const RISCV_IOMMU_DC_EXT_SIZE = 64;
/** Size in bytes of a process context. */
export const RISCV_IOMMU_PC_SIZE = 16;

// DC.tc (spec §2.1.3 "Device-context fields")
/** DC.tc.V: the device context is valid. */
export const RISCV_IOMMU_DC_TC_V = 1 << 0;
/** DC.tc.EN_ATS: Translated requests and ATS translation requests are allowed. */
export const RISCV_IOMMU_DC_TC_EN_ATS = 1 << 1;
/** DC.tc.EN_PRI: page requests are allowed. */
export const RISCV_IOMMU_DC_TC_EN_PRI = 1 << 2;
/** DC.tc.T2GPA: ATS completions return GPAs; Translated requests are G-stage translated. */
export const RISCV_IOMMU_DC_TC_T2GPA = 1 << 3;
/** DC.tc.DTF: disable reporting of translation faults. */
export const RISCV_IOMMU_DC_TC_DTF = 1 << 4;
/** DC.tc.PDTV: DC.fsc holds a process-directory pointer (pdtp). */
export const RISCV_IOMMU_DC_TC_PDTV = 1 << 5;
/** DC.tc.PRPR: IOMMU-generated page-request responses carry the PASID. */
export const RISCV_IOMMU_DC_TC_PRPR = 1 << 6;
/** DC.tc.GADE: hardware A/D updates in G-stage PTEs. */
export const RISCV_IOMMU_DC_TC_GADE = 1 << 7;
/** DC.tc.SADE: hardware A/D updates in first-stage PTEs. */
export const RISCV_IOMMU_DC_TC_SADE = 1 << 8;
/** DC.tc.DPE: requests without a process_id use process_id 0. */
export const RISCV_IOMMU_DC_TC_DPE = 1 << 9;
/** DC.tc.SBE: the PDT and first-stage page tables are big-endian. */
export const RISCV_IOMMU_DC_TC_SBE = 1 << 10;
/** DC.tc.SXL: first stage uses the 32-bit scheme (Sv32). */
export const RISCV_IOMMU_DC_TC_SXL = 1 << 11;
/** Reserved bits 23:12 of the low word of DC.tc (bits 63:32 are reserved too; 31:24 custom). */
export const RISCV_IOMMU_DC_TC_RESERVED_LO = 0x00fff000;

// DC.iohgatp, DC.fsc (iosatp/pdtp), DC.msiptp, PC.fsc: PPN 43:0, MODE 63:60
/** Bit position of the MODE field of iohgatp, iosatp, pdtp and msiptp (63:60). */
export const RISCV_IOMMU_ATP_MODE_SHIFT = 60;
/** Bit position of DC.iohgatp.GSCID (59:44). */
export const RISCV_IOMMU_DC_IOHGATP_GSCID_SHIFT = 44;
/** Width in bits of the PPN field of iohgatp, iosatp, pdtp and msiptp (43:0). */
export const RISCV_IOMMU_ATP_PPN_BITS = 44;
/** iohgatp.MODE Bare: no G-stage translation. */
export const RISCV_IOMMU_DC_IOHGATP_MODE_BARE = 0;
/** iohgatp.MODE Sv32x4 (when fctl.GXL = 1). */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV32X4 = 8;
/** iohgatp.MODE Sv39x4 (when fctl.GXL = 0). */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV39X4 = 8;
/** iohgatp.MODE Sv48x4. */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV48X4 = 9;
/** iohgatp.MODE Sv57x4. */
export const RISCV_IOMMU_DC_IOHGATP_MODE_SV57X4 = 10;
/** iosatp.MODE Bare: no first-stage translation. */
export const RISCV_IOMMU_DC_FSC_MODE_BARE = 0;
/** iosatp.MODE Sv32 (when DC.tc.SXL = 1). */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV32 = 8;
/** iosatp.MODE Sv39 (when DC.tc.SXL = 0). */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39 = 8;
/** iosatp.MODE Sv48. */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48 = 9;
/** iosatp.MODE Sv57. */
export const RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV57 = 10;
/** pdtp.MODE PD8: one-level process directory, 8-bit process_id. */
export const RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8 = 1;
/** pdtp.MODE PD17: two-level process directory, 17-bit process_id. */
export const RISCV_IOMMU_DC_FSC_PDTP_MODE_PD17 = 2;
/** pdtp.MODE PD20: three-level process directory, 20-bit process_id. */
export const RISCV_IOMMU_DC_FSC_PDTP_MODE_PD20 = 3;
/** msiptp.MODE Off: no MSI address translation. */
export const RISCV_IOMMU_DC_MSIPTP_MODE_OFF = 0;
/** msiptp.MODE Flat: a flat MSI page table. */
export const RISCV_IOMMU_DC_MSIPTP_MODE_FLAT = 1;
/** Bit position of DC.ta.PSCID and PC.ta.PSCID (31:12). */
export const RISCV_IOMMU_TA_PSCID_SHIFT = 12;
/** Width in bits of msi_addr_mask and msi_addr_pattern (51:0). */
export const RISCV_IOMMU_DC_MSI_ADDR_BITS = 52;

// PC.ta (spec §2.2 "Process-Directory-Table")
/** PC.ta.V: the process context is valid. */
export const RISCV_IOMMU_PC_TA_V = 1 << 0;
/** PC.ta.ENS: supervisor-privilege requests are allowed. */
export const RISCV_IOMMU_PC_TA_ENS = 1 << 1;
/** PC.ta.SUM: supervisor requests may read/write U=1 pages. */
export const RISCV_IOMMU_PC_TA_SUM = 1 << 2;

// Page-table entries (Privileged spec; spec the Privileged spec's Sv32/Sv39/Sv48/Sv57 PTE formats)
/** PTE valid. */
export const PTE_V = 1 << 0;
/** PTE readable. */
export const PTE_R = 1 << 1;
/** PTE writable. */
export const PTE_W = 1 << 2;
/** PTE executable. */
export const PTE_X = 1 << 3;
/** PTE user-accessible. */
export const PTE_U = 1 << 4;
/** PTE global mapping. */
export const PTE_G = 1 << 5;
/** PTE accessed. */
export const PTE_A = 1 << 6;
/** PTE dirty. */
export const PTE_D = 1 << 7;
/** Bit position of the PTE PPN (53:10 in 64-bit PTEs, 31:10 in Sv32 PTEs). */
export const PTE_PPN_SHIFT = 10;
/** Bit position of the PTE PBMT field (62:61). */
export const PTE_PBMT_SHIFT = 61;
/** Bit position of the Svnapot N bit (63). */
export const PTE_N_SHIFT = 63;
/** Mask, within the high word, of the reserved PTE bits 60:54. */
export const PTE_RESERVED_HI = 0x1fc00000;
/** Mask, within the high word, of PTE bits 58:54 (reserved when Svrsw60t59b frees 60:59). */
export const PTE_RESERVED_HI_SVRSW60T59B = 0x07c00000;
/** PBMT value PMA. */
export const PBMT_PMA = 0;
/** PBMT value NC (non-cacheable). */
export const PBMT_NC = 1;
/** PBMT value IO. */
export const PBMT_IO = 2;

// MSI page-table entries (AIA; spec §2.3.3 "Process to translate addresses of MSIs")
/** Size in bytes of an MSI PTE. */
export const RISCV_IOMMU_MSI_PTE_SIZE = 16;
/** MSI PTE valid bit (first doubleword). */
export const RISCV_IOMMU_MSI_PTE_V = 1 << 0;
/** Bit position of the MSI PTE mode field M (2:1). */
export const RISCV_IOMMU_MSI_PTE_M_SHIFT = 1;
/** MSI PTE M: MRIF mode. */
export const RISCV_IOMMU_MSI_PTE_M_MRIF = 1;
/** MSI PTE M: basic translate ("flat") mode. */
export const RISCV_IOMMU_MSI_PTE_M_BASIC = 3;
/** Bit position of the MSI PTE custom bit C (63). */
export const RISCV_IOMMU_MSI_PTE_C_SHIFT = 63;
/** Bit position of the basic-mode MSI PTE PPN (53:10). */
export const RISCV_IOMMU_MSI_PTE_PPN_SHIFT = 10;
/** Bit position of the MRIF-mode MRIF address field (53:7 holds address bits 55:9). */
export const RISCV_IOMMU_MSI_MRIF_ADDR_SHIFT = 7;
/** Bit position of the MRIF-mode notice PPN in the second doubleword (53:10). */
export const RISCV_IOMMU_MSI_MRIF_NPPN_SHIFT = 10;
/** Mask of NID[9:0] in the second doubleword. */
export const RISCV_IOMMU_MSI_MRIF_NID = 0x3ff;
/** Bit position of NID[10] in the second doubleword (60). */
export const RISCV_IOMMU_MSI_MRIF_NID_MSB_SHIFT = 60;

// Fault causes (spec §3.2 "Fault/Event-Queue"; Linux RISCV_IOMMU_FQ_CAUSE_*)
/** Instruction access fault. */
export const RISCV_IOMMU_FQ_CAUSE_INST_FAULT = 1;
/** Read address misaligned. */
export const RISCV_IOMMU_FQ_CAUSE_RD_ADDR_MISALIGNED = 4;
/** Read access fault. */
export const RISCV_IOMMU_FQ_CAUSE_RD_FAULT = 5;
/** Write/AMO address misaligned. */
export const RISCV_IOMMU_FQ_CAUSE_WR_ADDR_MISALIGNED = 6;
/** Write/AMO access fault. */
export const RISCV_IOMMU_FQ_CAUSE_WR_FAULT = 7;
/** Instruction page fault (first stage). */
export const RISCV_IOMMU_FQ_CAUSE_INST_FAULT_S = 12;
/** Read page fault (first stage). */
export const RISCV_IOMMU_FQ_CAUSE_RD_FAULT_S = 13;
/** Write/AMO page fault (first stage). */
export const RISCV_IOMMU_FQ_CAUSE_WR_FAULT_S = 15;
/** Instruction guest-page fault (G stage). */
export const RISCV_IOMMU_FQ_CAUSE_INST_FAULT_VS = 20;
/** Read guest-page fault (G stage). */
export const RISCV_IOMMU_FQ_CAUSE_RD_FAULT_VS = 21;
/** Write/AMO guest-page fault (G stage). */
export const RISCV_IOMMU_FQ_CAUSE_WR_FAULT_VS = 23;
/** All inbound transactions disallowed (ddtp Off). */
export const RISCV_IOMMU_FQ_CAUSE_DMA_DISABLED = 256;
/** DDT entry load access fault. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_LOAD_FAULT = 257;
/** DDT entry not valid. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_INVALID = 258;
/** DDT entry misconfigured. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_MISCONFIGURED = 259;
/** Transaction type disallowed. */
export const RISCV_IOMMU_FQ_CAUSE_TTYP_BLOCKED = 260;
/** MSI PTE load access fault. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_LOAD_FAULT = 261;
/** MSI PTE not valid. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_INVALID = 262;
/** MSI PTE misconfigured. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_MISCONFIGURED = 263;
/** MRIF access fault. */
export const RISCV_IOMMU_FQ_CAUSE_MRIF_FAULT = 264;
/** PDT entry load access fault. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_LOAD_FAULT = 265;
/** PDT entry not valid. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_INVALID = 266;
/** PDT entry misconfigured. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_MISCONFIGURED = 267;
/** DDT data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_DDT_CORRUPTED = 268;
/** PDT data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_PDT_CORRUPTED = 269;
/** MSI PT data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_PT_CORRUPTED = 270;
/** MSI MRIF data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_MRIF_CORRUPTED = 271;
/** Internal data path error. */
export const RISCV_IOMMU_FQ_CAUSE_INTERNAL_DP_ERROR = 272;
/** IOMMU MSI write access fault. */
export const RISCV_IOMMU_FQ_CAUSE_MSI_WR_FAULT = 273;
/** First/second-stage page-table data corruption. */
export const RISCV_IOMMU_FQ_CAUSE_PT_CORRUPTED = 274;

/**
 * True when a fault with `cause` is reported even though DC.tc.DTF = 1 (spec §3.2 "Fault/Event-
 * Queue": 256–259, 268, 272, 273; every other cause is suppressed by DTF).
 */
export function reportedDespiteDtf(cause: number): boolean {
  return (cause >= 256 && cause <= 259) || cause === 268 || cause === 272 || cause === 273;
}

// Transaction types (spec §3.2 "Fault/Event-Queue"; Linux RISCV_IOMMU_FQ_TTYP_*)
/** TTYP: not an inbound transaction. */
export const RISCV_IOMMU_FQ_TTYP_NONE = 0;
/** TTYP: Untranslated read-for-execute. */
export const RISCV_IOMMU_FQ_TTYP_UADDR_INST_FETCH = 1;
/** TTYP: Untranslated read. */
export const RISCV_IOMMU_FQ_TTYP_UADDR_RD = 2;
/** TTYP: Untranslated write/AMO. */
export const RISCV_IOMMU_FQ_TTYP_UADDR_WR = 3;
/** TTYP: Translated read-for-execute. */
export const RISCV_IOMMU_FQ_TTYP_TADDR_INST_FETCH = 5;
/** TTYP: Translated read. */
export const RISCV_IOMMU_FQ_TTYP_TADDR_RD = 6;
/** TTYP: Translated write/AMO. */
export const RISCV_IOMMU_FQ_TTYP_TADDR_WR = 7;
/** TTYP: PCIe ATS Translation Request. */
export const RISCV_IOMMU_FQ_TTYP_PCIE_ATS_REQ = 8;
/** TTYP: PCIe Message Request. */
export const RISCV_IOMMU_FQ_TTYP_PCIE_MSG_REQ = 9;

// HPM standard events (spec §5.19–§5.23, the performance-monitoring registers)
/** HPM event: Untranslated requests. */
export const RISCV_IOMMU_HPMEVENT_URQ = 1;
/** HPM event: Translated requests. */
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
/** HPM event: G-stage page-table walks. */
export const RISCV_IOMMU_HPMEVENT_G_WALKS = 8;
