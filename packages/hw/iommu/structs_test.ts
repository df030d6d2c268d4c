import assert from "node:assert/strict";
import * as S from "./structs.ts";

const tables = JSON.parse(
  await Deno.readTextFile(new URL("../testdata/riscv-iommu-spec-tables.json", import.meta.url)),
);
type Field = { name: string; lsb: number; width: number };
const field = (struct: string, name: string): Field =>
  (tables.structures[struct] as Field[]).find((f) => f.name === name)!;

Deno.test("DC.tc flag bits match the spec tables", () => {
  const flags: [string, number][] = [
    ["V", S.RISCV_IOMMU_DC_TC_V],
    ["EN_ATS", S.RISCV_IOMMU_DC_TC_EN_ATS],
    ["EN_PRI", S.RISCV_IOMMU_DC_TC_EN_PRI],
    ["T2GPA", S.RISCV_IOMMU_DC_TC_T2GPA],
    ["DTF", S.RISCV_IOMMU_DC_TC_DTF],
    ["PDTV", S.RISCV_IOMMU_DC_TC_PDTV],
    ["PRPR", S.RISCV_IOMMU_DC_TC_PRPR],
    ["GADE", S.RISCV_IOMMU_DC_TC_GADE],
    ["SADE", S.RISCV_IOMMU_DC_TC_SADE],
    ["DPE", S.RISCV_IOMMU_DC_TC_DPE],
    ["SBE", S.RISCV_IOMMU_DC_TC_SBE],
    ["SXL", S.RISCV_IOMMU_DC_TC_SXL],
  ];
  for (const [name, mask] of flags) assert.equal(mask, 1 << field("dc.tc", name).lsb, name);
  const defined = flags.reduce((m, [, v]) => m | v, 0);
  assert.equal(defined & S.RISCV_IOMMU_DC_TC_RESERVED_LO, 0);
});

Deno.test("pointer fields (iohgatp, iosatp, pdtp, msiptp, PC.fsc, DDTE, PDTE) match the spec tables", () => {
  for (const s of ["dc.iohgatp", "dc.fsc.iosatp", "dc.fsc.pdtp", "dc.msiptp", "pc.fsc"]) {
    assert.equal(field(s, "MODE").lsb, S.RISCV_IOMMU_ATP_MODE_SHIFT, s);
    assert.equal(field(s, "PPN").width, S.RISCV_IOMMU_ATP_PPN_BITS, s);
  }
  assert.equal(field("dc.iohgatp", "GSCID").lsb, S.RISCV_IOMMU_DC_IOHGATP_GSCID_SHIFT);
  assert.equal(field("dc.ta", "PSCID").lsb, S.RISCV_IOMMU_TA_PSCID_SHIFT);
  assert.equal(field("pc.ta", "PSCID").lsb, S.RISCV_IOMMU_TA_PSCID_SHIFT);
  assert.equal(field("ddte_nonleaf", "PPN").lsb, S.RISCV_IOMMU_DDTE_PPN_SHIFT);
  assert.equal(field("pdte_nonleaf", "PPN").lsb, S.RISCV_IOMMU_PDTE_PPN_SHIFT);
  assert.equal(1 << field("pc.ta", "ENS").lsb, S.RISCV_IOMMU_PC_TA_ENS);
  assert.equal(1 << field("pc.ta", "SUM").lsb, S.RISCV_IOMMU_PC_TA_SUM);
  assert.equal(field("dc.msi_addr_mask", "mask").width, S.RISCV_IOMMU_DC_MSI_ADDR_BITS);
  const m = tables.modes;
  assert.equal(m["iosatp.MODE"].Sv39, S.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39);
  assert.equal(m["iosatp.MODE"].Sv48, S.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48);
  assert.equal(m["iosatp.MODE"].Sv57, S.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV57);
  assert.equal(m["iosatp.MODE"]["Sv32 (SXL=1)"], S.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV32);
  assert.equal(m["iohgatp.MODE"].Sv39x4, S.RISCV_IOMMU_DC_IOHGATP_MODE_SV39X4);
  assert.equal(m["iohgatp.MODE"].Sv48x4, S.RISCV_IOMMU_DC_IOHGATP_MODE_SV48X4);
  assert.equal(m["iohgatp.MODE"].Sv57x4, S.RISCV_IOMMU_DC_IOHGATP_MODE_SV57X4);
  assert.equal(m["iohgatp.MODE"]["Sv32x4 (GXL=1)"], S.RISCV_IOMMU_DC_IOHGATP_MODE_SV32X4);
  assert.equal(m["pdtp.MODE"].PD8, S.RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8);
  assert.equal(m["pdtp.MODE"].PD17, S.RISCV_IOMMU_DC_FSC_PDTP_MODE_PD17);
  assert.equal(m["pdtp.MODE"].PD20, S.RISCV_IOMMU_DC_FSC_PDTP_MODE_PD20);
  assert.equal(m["msiptp.MODE"].Flat, S.RISCV_IOMMU_DC_MSIPTP_MODE_FLAT);
  assert.equal(m["ddtp.iommu_mode"]["3LVL"], S.RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL);
  assert.equal(m["ddtp.iommu_mode"].Bare, S.RISCV_IOMMU_DDTP_IOMMU_MODE_BARE);
});

Deno.test("PTE and MSI PTE bits match the spec tables", () => {
  const pte: [string, number][] = [
    ["V", S.PTE_V],
    ["R", S.PTE_R],
    ["W", S.PTE_W],
    ["X", S.PTE_X],
    ["U", S.PTE_U],
    ["G", S.PTE_G],
    ["A", S.PTE_A],
    ["D", S.PTE_D],
  ];
  for (const [name, mask] of pte) assert.equal(mask, 1 << field("pte64", name).lsb, name);
  assert.equal(field("pte64", "PPN").lsb, S.PTE_PPN_SHIFT);
  assert.equal(field("pte64", "PBMT").lsb, S.PTE_PBMT_SHIFT);
  assert.equal(field("pte64", "N").lsb, S.PTE_N_SHIFT);
  const res = field("pte64", "reserved");
  assert.equal(S.PTE_RESERVED_HI, ((1 << res.width) - 1) << (res.lsb - 32));
  assert.equal(1 << field("msipte.dw0", "V").lsb, S.RISCV_IOMMU_MSI_PTE_V);
  assert.equal(field("msipte.dw0", "M").lsb, S.RISCV_IOMMU_MSI_PTE_M_SHIFT);
  assert.equal(field("msipte.dw0", "PPN").lsb, S.RISCV_IOMMU_MSI_PTE_PPN_SHIFT);
  assert.equal(field("msipte.dw0", "C").lsb, S.RISCV_IOMMU_MSI_PTE_C_SHIFT);
  assert.equal(field("msipte_mrif.dw0", "MRIF_ADDR[55:9]").lsb, S.RISCV_IOMMU_MSI_MRIF_ADDR_SHIFT);
  assert.equal(field("msipte_mrif.dw1", "NPPN").lsb, S.RISCV_IOMMU_MSI_MRIF_NPPN_SHIFT);
  assert.equal(field("msipte_mrif.dw1", "NID[10]").lsb, S.RISCV_IOMMU_MSI_MRIF_NID_MSB_SHIFT);
  assert.equal(
    (1 << field("msipte_mrif.dw1", "NID[9:0]").width) - 1,
    S.RISCV_IOMMU_MSI_MRIF_NID,
  );
  assert.equal(tables.modes["msipte.M"].MRIF, S.RISCV_IOMMU_MSI_PTE_M_MRIF);
  assert.equal(tables.modes["msipte.M"]["basic (flat)"], S.RISCV_IOMMU_MSI_PTE_M_BASIC);
});

Deno.test("fault causes, TTYPs and HPM events match the spec tables", () => {
  const causes = Object.entries(S).filter(([k]) => k.startsWith("RISCV_IOMMU_FQ_CAUSE_"));
  assert.deepEqual(
    causes.map(([, v]) => String(v)).sort(),
    Object.keys(tables.fault_causes).sort(),
  );
  const ttyps = Object.entries(S).filter(([k]) => k.startsWith("RISCV_IOMMU_FQ_TTYP_"));
  assert.deepEqual(ttyps.map(([, v]) => String(v)).sort(), Object.keys(tables.ttyp).sort());
  const events = Object.entries(S).filter(([k]) => k.startsWith("RISCV_IOMMU_HPMEVENT_"));
  assert.deepEqual(
    events.map(([, v]) => String(v)).sort(),
    Object.keys(tables.hpm_events).filter((k) => k !== "0").sort(),
  );
});

Deno.test("reportedDespiteDtf matches the spec's DTF column", () => {
  for (const [cause, reported] of Object.entries(tables.causes_reported_when_DTF)) {
    assert.equal(S.reportedDespiteDtf(Number(cause)), reported, `cause ${cause}`);
  }
});
