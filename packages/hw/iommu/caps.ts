/**
 * The `capabilities` register (offset 0x000) of the RISC-V IOMMU, built from an options object
 * so a test can make an IOMMU without ATS, without HPM, WSI-only, and so on.
 *
 * @module
 */

/** Bit positions of the `capabilities` register (spec §5.3; digest §3.1). */
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
  sv32: boolean;
  sv39: boolean;
  sv48: boolean;
  sv57: boolean;
  svrsw60t59b: boolean;
  svpbmt: boolean;
  sv32x4: boolean;
  sv39x4: boolean;
  sv48x4: boolean;
  sv57x4: boolean;
  amoMrif: boolean;
  msiFlat: boolean;
  msiMrif: boolean;
  amoHwad: boolean;
  ats: boolean;
  t2gpa: boolean;
  /** Both endiannesses supported (then `fctl.BE` is writable). */
  end: boolean;
  /** Interrupt generation support: {@linkcode IGS_MSI}, {@linkcode IGS_WSI} or {@linkcode IGS_BOTH}. */
  igs: 0 | 1 | 2;
  hpm: boolean;
  dbg: boolean;
  /** Physical address size in bits. */
  pas: number;
  pd8: boolean;
  pd17: boolean;
  pd20: boolean;
  qosid: boolean;
  nl: boolean;
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
