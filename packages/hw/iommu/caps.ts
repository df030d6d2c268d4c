/**
 * The `capabilities` register (offset 0x000) of the RISC-V IOMMU, built from an options object
 * so a test can make an IOMMU without ATS, without HPM, WSI-only, and so on.
 *
 * @module
 */

/** Bit positions of the `capabilities` register (spec §5.3 "IOMMU capabilities"). */
export const CAP = {
  VERSION: 0,
  SV32: 8,
  SV39: 9,
  SV48: 10,
  SV57: 11,
  SVRSW60T59B: 14,
  SVPBMT: 15,
  SV32X4: 16,
  SV39X4: 17,
  SV48X4: 18,
  SV57X4: 19,
  AMO_MRIF: 21,
  MSI_FLAT: 22,
  MSI_MRIF: 23,
  AMO_HWAD: 24,
  ATS: 25,
  T2GPA: 26,
  END: 27,
  IGS: 28,
  HPM: 30,
  DBG: 31,
  PAS: 32,
  PD8: 38,
  PD17: 39,
  PD20: 40,
  QOSID: 41,
  NL: 42,
  S: 43,
} as const;

/** `capabilities.IGS` encodings. */
export const IGS_MSI = 0;
/** Wire-signalled interrupts only. */
export const IGS_WSI = 1;
/** Both; software picks with `fctl.WSI`. */
export const IGS_BOTH = 2;

/** What the IOMMU implements. Every field is optional; {@linkcode DEFAULT_CAPS} fills the rest. */
export interface IommuCaps {
  /** `capabilities.version`; v1.0 reports 0x10. */
  version: number;
  /** First-stage Sv32 (with DC.tc.SXL = 1). */
  sv32: boolean;
  /** First-stage Sv39. */
  sv39: boolean;
  /** First-stage Sv48 (requires Sv39). */
  sv48: boolean;
  /** First-stage Sv57 (requires Sv48). */
  sv57: boolean;
  /** [post-1.0] PTE bits 60:59 are free for software. */
  svrsw60t59b: boolean;
  /** Page-based memory types (PTE.PBMT). */
  svpbmt: boolean;
  /** G-stage Sv32x4 (34-bit GPAs; selected by `fctl.GXL` = 1). */
  sv32x4: boolean;
  /** G-stage Sv39x4 (41-bit GPAs). */
  sv39x4: boolean;
  /** G-stage Sv48x4 (50-bit GPAs). */
  sv48x4: boolean;
  /** G-stage Sv57x4 (59-bit GPAs). */
  sv57x4: boolean;
  /** Atomic (AMOOR) updates of MRIF pending bits. */
  amoMrif: boolean;
  /** MSI translation with basic-translate MSI PTEs; also selects the 64-byte extended DC. */
  msiFlat: boolean;
  /** MRIF-mode MSI PTEs. */
  msiMrif: boolean;
  /** Atomic hardware A/D updates (makes DC.tc.SADE/GADE legal). */
  amoHwad: boolean;
  /** PCIe ATS and PRI (also makes the page-request queue registers present). */
  ats: boolean;
  /** ATS completions may return GPAs (DC.tc.T2GPA). */
  t2gpa: boolean;
  /** Both endiannesses supported (then `fctl.BE` is writable). */
  end: boolean;
  /**
   * Interrupt generation support: {@linkcode IGS_MSI}, {@linkcode IGS_WSI} or {@linkcode IGS_BOTH}.
   */
  igs: 0 | 1 | 2;
  /** The performance monitor registers are present. */
  hpm: boolean;
  /** The debug translation interface (`tr_req_*`, `tr_response`) is present. */
  dbg: boolean;
  /** Physical address size in bits. */
  pas: number;
  /** One-level process directory (8-bit process_id). */
  pd8: boolean;
  /** Two-level process directory (17-bit process_id). */
  pd17: boolean;
  /** Three-level process directory (20-bit process_id). */
  pd20: boolean;
  /** [post-1.0] QoS IDs (`iommu_qosid`, DC.ta RCID/MCID). */
  qosid: boolean;
  /** [post-1.0] IOTINVAL NL (non-leaf) operand. */
  nl: boolean;
  /** [post-1.0] IOTINVAL S (NAPOT address range) operand. */
  s: boolean;
}

/** A full-featured IOMMU, as a kernel developer's default machine would want. */
export const DEFAULT_CAPS: Readonly<IommuCaps> = Object.freeze({
  version: 0x10,
  sv32: false,
  sv39: true,
  sv48: true,
  sv57: true,
  svrsw60t59b: false,
  svpbmt: true,
  sv32x4: false,
  sv39x4: true,
  sv48x4: true,
  sv57x4: true,
  amoMrif: true,
  msiFlat: true,
  msiMrif: true,
  amoHwad: true,
  ats: true,
  t2gpa: false,
  end: false,
  igs: IGS_BOTH,
  hpm: true,
  dbg: true,
  pas: 56,
  pd8: true,
  pd17: true,
  pd20: true,
  qosid: false,
  nl: false,
  s: false,
});

/** Fills unspecified fields of `opts` from {@linkcode DEFAULT_CAPS}. */
export function resolveCaps(opts: Partial<IommuCaps> = {}): IommuCaps {
  return { ...DEFAULT_CAPS, ...opts };
}

/** Encodes `caps` as the 64-bit `capabilities` register value. */
export function encodeCaps(caps: IommuCaps): bigint {
  const flags: [boolean, number][] = [
    [caps.sv32, CAP.SV32],
    [caps.sv39, CAP.SV39],
    [caps.sv48, CAP.SV48],
    [caps.sv57, CAP.SV57],
    [caps.svrsw60t59b, CAP.SVRSW60T59B],
    [caps.svpbmt, CAP.SVPBMT],
    [caps.sv32x4, CAP.SV32X4],
    [caps.sv39x4, CAP.SV39X4],
    [caps.sv48x4, CAP.SV48X4],
    [caps.sv57x4, CAP.SV57X4],
    [caps.amoMrif, CAP.AMO_MRIF],
    [caps.msiFlat, CAP.MSI_FLAT],
    [caps.msiMrif, CAP.MSI_MRIF],
    [caps.amoHwad, CAP.AMO_HWAD],
    [caps.ats, CAP.ATS],
    [caps.t2gpa, CAP.T2GPA],
    [caps.end, CAP.END],
    [caps.hpm, CAP.HPM],
    [caps.dbg, CAP.DBG],
    [caps.pd8, CAP.PD8],
    [caps.pd17, CAP.PD17],
    [caps.pd20, CAP.PD20],
    [caps.qosid, CAP.QOSID],
    [caps.nl, CAP.NL],
    [caps.s, CAP.S],
  ];
  let v = BigInt(caps.version & 0xff) | BigInt(caps.igs & 3) << BigInt(CAP.IGS) |
    BigInt(caps.pas & 0x3f) << BigInt(CAP.PAS);
  for (const [on, bit] of flags) if (on) v |= 1n << BigInt(bit);
  return v;
}
