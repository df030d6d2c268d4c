// Checks the driver's own register map (bits.ts) against the spec's tables, which the silicon
// is checked against too: a wrong bit fails here instead of two halves agreeing on a mistake.
import assert from "node:assert/strict";
import fc from "fast-check";
import * as B from "./bits.ts";
// The spec tables as data (a copy of hw's testdata: software never imports hw).
import tables from "./testdata/riscv-iommu-spec-tables.json" with { type: "json" };

function genmask(lsb: number, width: number): bigint {
  return ((1n << BigInt(width)) - 1n) << BigInt(lsb);
}

function offsetOf(name: string): number | undefined {
  const fixed: Record<string, number> = {
    capabilities: B.RISCV_IOMMU_REG_CAPABILITIES,
    fctl: B.RISCV_IOMMU_REG_FCTL,
    ddtp: B.RISCV_IOMMU_REG_DDTP,
    cqb: B.RISCV_IOMMU_REG_CQB,
    cqh: B.RISCV_IOMMU_REG_CQH,
    cqt: B.RISCV_IOMMU_REG_CQT,
    fqb: B.RISCV_IOMMU_REG_FQB,
    fqh: B.RISCV_IOMMU_REG_FQH,
    fqt: B.RISCV_IOMMU_REG_FQT,
    pqb: B.RISCV_IOMMU_REG_PQB,
    pqh: B.RISCV_IOMMU_REG_PQH,
    pqt: B.RISCV_IOMMU_REG_PQT,
    cqcsr: B.RISCV_IOMMU_REG_CQCSR,
    fqcsr: B.RISCV_IOMMU_REG_FQCSR,
    pqcsr: B.RISCV_IOMMU_REG_PQCSR,
    ipsr: B.RISCV_IOMMU_REG_IPSR,
    iocountovf: B.RISCV_IOMMU_REG_IOCOUNTOVF,
    iocountinh: B.RISCV_IOMMU_REG_IOCOUNTINH,
    iohpmcycles: B.RISCV_IOMMU_REG_IOHPMCYCLES,
    tr_req_iova: B.RISCV_IOMMU_REG_TR_REQ_IOVA,
    tr_req_ctl: B.RISCV_IOMMU_REG_TR_REQ_CTL,
    tr_response: B.RISCV_IOMMU_REG_TR_RESPONSE,
    icvec: B.RISCV_IOMMU_REG_ICVEC,
  };
  if (name in fixed) return fixed[name];
  const m = /^(iohpmctr|iohpmevt|msi_addr_|msi_data_|msi_vec_ctl_)(\d+)$/.exec(name);
  if (m === null) return undefined;
  const n = Number(m[2]);
  switch (m[1]) {
    case "iohpmctr":
      return B.RISCV_IOMMU_REG_IOHPMCTR(n - 1);
    case "iohpmevt":
      return B.RISCV_IOMMU_REG_IOHPMEVT(n - 1);
    case "msi_addr_":
      return B.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(n);
    case "msi_data_":
      return B.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(n);
    default:
      return B.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(n);
  }
}

/** Every field of the tables, keyed "group.field", mapped to the driver's mask. */
const FIELDS: Record<string, bigint | number> = {
  "capabilities.version": B.RISCV_IOMMU_CAPABILITIES_VERSION,
  "capabilities.Sv32": B.RISCV_IOMMU_CAPABILITIES_SV32,
  "capabilities.Sv39": B.RISCV_IOMMU_CAPABILITIES_SV39,
  "capabilities.Sv48": B.RISCV_IOMMU_CAPABILITIES_SV48,
  "capabilities.Sv57": B.RISCV_IOMMU_CAPABILITIES_SV57,
  "capabilities.Svpbmt": B.RISCV_IOMMU_CAPABILITIES_SVPBMT,
  "capabilities.Sv32x4": B.RISCV_IOMMU_CAPABILITIES_SV32X4,
  "capabilities.Sv39x4": B.RISCV_IOMMU_CAPABILITIES_SV39X4,
  "capabilities.Sv48x4": B.RISCV_IOMMU_CAPABILITIES_SV48X4,
  "capabilities.Sv57x4": B.RISCV_IOMMU_CAPABILITIES_SV57X4,
  "capabilities.AMO_MRIF": B.RISCV_IOMMU_CAPABILITIES_AMO_MRIF,
  "capabilities.MSI_FLAT": B.RISCV_IOMMU_CAPABILITIES_MSI_FLAT,
  "capabilities.MSI_MRIF": B.RISCV_IOMMU_CAPABILITIES_MSI_MRIF,
  "capabilities.AMO_HWAD": B.RISCV_IOMMU_CAPABILITIES_AMO_HWAD,
  "capabilities.ATS": B.RISCV_IOMMU_CAPABILITIES_ATS,
  "capabilities.T2GPA": B.RISCV_IOMMU_CAPABILITIES_T2GPA,
  "capabilities.END": B.RISCV_IOMMU_CAPABILITIES_END,
  "capabilities.IGS": B.RISCV_IOMMU_CAPABILITIES_IGS,
  "capabilities.HPM": B.RISCV_IOMMU_CAPABILITIES_HPM,
  "capabilities.DBG": B.RISCV_IOMMU_CAPABILITIES_DBG,
  "capabilities.PAS": B.RISCV_IOMMU_CAPABILITIES_PAS,
  "capabilities.PD8": B.RISCV_IOMMU_CAPABILITIES_PD8,
  "capabilities.PD17": B.RISCV_IOMMU_CAPABILITIES_PD17,
  "capabilities.PD20": B.RISCV_IOMMU_CAPABILITIES_PD20,
  "fctl.BE": B.RISCV_IOMMU_FCTL_BE,
  "fctl.WSI": B.RISCV_IOMMU_FCTL_WSI,
  "fctl.GXL": B.RISCV_IOMMU_FCTL_GXL,
  "ddtp.iommu_mode": B.RISCV_IOMMU_DDTP_IOMMU_MODE,
  "ddtp.busy": B.RISCV_IOMMU_DDTP_BUSY,
  "ddtp.PPN": B.RISCV_IOMMU_DDTP_PPN,
  "cqb.LOG2SZ-1": B.RISCV_IOMMU_CQB_ENTRIES,
  "cqb.PPN": B.RISCV_IOMMU_CQB_PPN,
  "fqb.LOG2SZ-1": B.RISCV_IOMMU_FQB_ENTRIES,
  "fqb.PPN": B.RISCV_IOMMU_FQB_PPN,
  "pqb.LOG2SZ-1": B.RISCV_IOMMU_PQB_ENTRIES,
  "pqb.PPN": B.RISCV_IOMMU_PQB_PPN,
  "cqcsr.cqen": B.RISCV_IOMMU_CQCSR_CQEN,
  "cqcsr.cie": B.RISCV_IOMMU_CQCSR_CIE,
  "cqcsr.cqmf": B.RISCV_IOMMU_CQCSR_CQMF,
  "cqcsr.cmd_to": B.RISCV_IOMMU_CQCSR_CMD_TO,
  "cqcsr.cmd_ill": B.RISCV_IOMMU_CQCSR_CMD_ILL,
  "cqcsr.fence_w_ip": B.RISCV_IOMMU_CQCSR_FENCE_W_IP,
  "cqcsr.cqon": B.RISCV_IOMMU_CQCSR_CQON,
  "cqcsr.busy": B.RISCV_IOMMU_CQCSR_BUSY,
  "fqcsr.fqen": B.RISCV_IOMMU_FQCSR_FQEN,
  "fqcsr.fie": B.RISCV_IOMMU_FQCSR_FIE,
  "fqcsr.fqmf": B.RISCV_IOMMU_FQCSR_FQMF,
  "fqcsr.fqof": B.RISCV_IOMMU_FQCSR_FQOF,
  "fqcsr.fqon": B.RISCV_IOMMU_FQCSR_FQON,
  "fqcsr.busy": B.RISCV_IOMMU_FQCSR_BUSY,
  "pqcsr.pqen": B.RISCV_IOMMU_PQCSR_PQEN,
  "pqcsr.pie": B.RISCV_IOMMU_PQCSR_PIE,
  "pqcsr.pqmf": B.RISCV_IOMMU_PQCSR_PQMF,
  "pqcsr.pqof": B.RISCV_IOMMU_PQCSR_PQOF,
  "pqcsr.pqon": B.RISCV_IOMMU_PQCSR_PQON,
  "pqcsr.busy": B.RISCV_IOMMU_PQCSR_BUSY,
  "ipsr.cip": B.RISCV_IOMMU_IPSR_CIP,
  "ipsr.fip": B.RISCV_IOMMU_IPSR_FIP,
  "ipsr.pmip": B.RISCV_IOMMU_IPSR_PMIP,
  "ipsr.pip": B.RISCV_IOMMU_IPSR_PIP,
  "iohpmcycles.counter": B.RISCV_IOMMU_IOHPMCYCLES_COUNTER,
  "iohpmcycles.OF": B.RISCV_IOMMU_IOHPMCYCLES_OF,
  "iohpmevt.eventID": B.RISCV_IOMMU_IOHPMEVT_EVENTID,
  "iohpmevt.DMASK": B.RISCV_IOMMU_IOHPMEVT_DMASK,
  "iohpmevt.PID_PSCID": B.RISCV_IOMMU_IOHPMEVT_PID_PSCID,
  "iohpmevt.DID_GSCID": B.RISCV_IOMMU_IOHPMEVT_DID_GSCID,
  "iohpmevt.PV_PSCV": B.RISCV_IOMMU_IOHPMEVT_PV_PSCV,
  "iohpmevt.DV_GSCV": B.RISCV_IOMMU_IOHPMEVT_DV_GSCV,
  "iohpmevt.IDT": B.RISCV_IOMMU_IOHPMEVT_IDT,
  "iohpmevt.OF": B.RISCV_IOMMU_IOHPMEVT_OF,
  "tr_req_iova.vpn": B.RISCV_IOMMU_TR_REQ_IOVA_VPN,
  "tr_req_ctl.Go/Busy": B.RISCV_IOMMU_TR_REQ_CTL_GO_BUSY,
  "tr_req_ctl.Priv": B.RISCV_IOMMU_TR_REQ_CTL_PRIV,
  "tr_req_ctl.Exe": B.RISCV_IOMMU_TR_REQ_CTL_EXE,
  "tr_req_ctl.NW": B.RISCV_IOMMU_TR_REQ_CTL_NW,
  "tr_req_ctl.PID": B.RISCV_IOMMU_TR_REQ_CTL_PID,
  "tr_req_ctl.PV": B.RISCV_IOMMU_TR_REQ_CTL_PV,
  "tr_req_ctl.DID": B.RISCV_IOMMU_TR_REQ_CTL_DID,
  "tr_response.fault": B.RISCV_IOMMU_TR_RESPONSE_FAULT,
  "tr_response.PBMT": B.RISCV_IOMMU_TR_RESPONSE_PBMT,
  "tr_response.S": B.RISCV_IOMMU_TR_RESPONSE_SZ,
  "tr_response.PPN": B.RISCV_IOMMU_TR_RESPONSE_PPN,
  "icvec.civ": B.RISCV_IOMMU_ICVEC_CIV,
  "icvec.fiv": B.RISCV_IOMMU_ICVEC_FIV,
  "icvec.pmiv": B.RISCV_IOMMU_ICVEC_PMIV,
  "icvec.piv": B.RISCV_IOMMU_ICVEC_PIV,
  "msi_addr.ADDR": B.RISCV_IOMMU_MSI_CFG_TBL_ADDR,
  "msi_vec_ctl.M": B.RISCV_IOMMU_MSI_CFG_TBL_CTRL_M,
  "ddte_nonleaf.V": B.RISCV_IOMMU_DDTE_V,
  "ddte_nonleaf.PPN": B.RISCV_IOMMU_DDTE_PPN,
  "dc.tc.V": B.RISCV_IOMMU_DC_TC_V,
  "dc.tc.EN_ATS": B.RISCV_IOMMU_DC_TC_EN_ATS,
  "dc.tc.EN_PRI": B.RISCV_IOMMU_DC_TC_EN_PRI,
  "dc.tc.T2GPA": B.RISCV_IOMMU_DC_TC_T2GPA,
  "dc.tc.DTF": B.RISCV_IOMMU_DC_TC_DTF,
  "dc.tc.PDTV": B.RISCV_IOMMU_DC_TC_PDTV,
  "dc.tc.PRPR": B.RISCV_IOMMU_DC_TC_PRPR,
  "dc.tc.GADE": B.RISCV_IOMMU_DC_TC_GADE,
  "dc.tc.SADE": B.RISCV_IOMMU_DC_TC_SADE,
  "dc.tc.DPE": B.RISCV_IOMMU_DC_TC_DPE,
  "dc.tc.SBE": B.RISCV_IOMMU_DC_TC_SBE,
  "dc.tc.SXL": B.RISCV_IOMMU_DC_TC_SXL,
  "dc.iohgatp.PPN": B.RISCV_IOMMU_DC_IOHGATP_PPN,
  "dc.iohgatp.GSCID": B.RISCV_IOMMU_DC_IOHGATP_GSCID,
  "dc.iohgatp.MODE": B.RISCV_IOMMU_DC_IOHGATP_MODE,
  "dc.ta.PSCID": B.RISCV_IOMMU_DC_TA_PSCID,
  "dc.fsc.iosatp.PPN": B.RISCV_IOMMU_DC_FSC_PPN,
  "dc.fsc.iosatp.MODE": B.RISCV_IOMMU_DC_FSC_MODE,
  "dc.fsc.pdtp.PPN": B.RISCV_IOMMU_DC_FSC_PPN,
  "dc.fsc.pdtp.MODE": B.RISCV_IOMMU_DC_FSC_MODE,
  "dc.msiptp.PPN": B.RISCV_IOMMU_DC_MSIPTP_PPN,
  "dc.msiptp.MODE": B.RISCV_IOMMU_DC_MSIPTP_MODE,
  "dc.msi_addr_mask.mask": B.RISCV_IOMMU_DC_MSI_ADDR_MASK,
  "dc.msi_addr_pattern.pattern": B.RISCV_IOMMU_DC_MSI_PATTERN,
  "pdte_nonleaf.V": B.RISCV_IOMMU_PDTE_V,
  "pdte_nonleaf.PPN": B.RISCV_IOMMU_PDTE_PPN,
  "pc.ta.V": B.RISCV_IOMMU_PC_TA_V,
  "pc.ta.ENS": B.RISCV_IOMMU_PC_TA_ENS,
  "pc.ta.SUM": B.RISCV_IOMMU_PC_TA_SUM,
  "pc.ta.PSCID": B.RISCV_IOMMU_PC_TA_PSCID,
  "pc.fsc.PPN": B.RISCV_IOMMU_PC_FSC_PPN,
  "pc.fsc.MODE": B.RISCV_IOMMU_PC_FSC_MODE,
  "msipte.dw0.V": B.RISCV_IOMMU_MSIPTE_V,
  "msipte.dw0.M": B.RISCV_IOMMU_MSIPTE_M,
  "msipte.dw0.PPN": B.RISCV_IOMMU_MSIPTE_PPN,
  "msipte.dw0.C": B.RISCV_IOMMU_MSIPTE_C,
  "msipte_mrif.dw0.V": B.RISCV_IOMMU_MSIPTE_V,
  "msipte_mrif.dw0.M": B.RISCV_IOMMU_MSIPTE_M,
  "msipte_mrif.dw0.MRIF_ADDR[55:9]": B.RISCV_IOMMU_MSIPTE_MRIF_ADDR,
  "msipte_mrif.dw0.C": B.RISCV_IOMMU_MSIPTE_C,
  "msipte_mrif.dw1.NID[9:0]": B.RISCV_IOMMU_MSIPTE_MRIF_NID,
  "msipte_mrif.dw1.NPPN": B.RISCV_IOMMU_MSIPTE_MRIF_NPPN,
  "msipte_mrif.dw1.NID[10]": B.RISCV_IOMMU_MSIPTE_MRIF_NID_MSB,
  "cmd.dw0.opcode": B.RISCV_IOMMU_CMD_OPCODE,
  "cmd.dw0.func3": B.RISCV_IOMMU_CMD_FUNC,
  "cmd.iotinval.dw0.AV": B.RISCV_IOMMU_CMD_IOTINVAL_AV,
  "cmd.iotinval.dw0.PSCID": B.RISCV_IOMMU_CMD_IOTINVAL_PSCID,
  "cmd.iotinval.dw0.PSCV": B.RISCV_IOMMU_CMD_IOTINVAL_PSCV,
  "cmd.iotinval.dw0.GV": B.RISCV_IOMMU_CMD_IOTINVAL_GV,
  "cmd.iotinval.dw0.GSCID": B.RISCV_IOMMU_CMD_IOTINVAL_GSCID,
  "cmd.iotinval.dw1.ADDR[63:12]": B.RISCV_IOMMU_CMD_IOTINVAL_ADDR,
  "cmd.iofence.dw0.AV": B.RISCV_IOMMU_CMD_IOFENCE_AV,
  "cmd.iofence.dw0.WSI": B.RISCV_IOMMU_CMD_IOFENCE_WSI,
  "cmd.iofence.dw0.PR": B.RISCV_IOMMU_CMD_IOFENCE_PR,
  "cmd.iofence.dw0.PW": B.RISCV_IOMMU_CMD_IOFENCE_PW,
  "cmd.iofence.dw0.DATA": B.RISCV_IOMMU_CMD_IOFENCE_DATA,
  "cmd.iofence.dw1.ADDR[63:2]": B.RISCV_IOMMU_CMD_IOFENCE_ADDR,
  "cmd.iodir.dw0.PID": B.RISCV_IOMMU_CMD_IODIR_PID,
  "cmd.iodir.dw0.DV": B.RISCV_IOMMU_CMD_IODIR_DV,
  "cmd.iodir.dw0.DID": B.RISCV_IOMMU_CMD_IODIR_DID,
  "cmd.ats.dw0.PID": B.RISCV_IOMMU_CMD_ATS_PID,
  "cmd.ats.dw0.PV": B.RISCV_IOMMU_CMD_ATS_PV,
  "cmd.ats.dw0.DSV": B.RISCV_IOMMU_CMD_ATS_DSV,
  "cmd.ats.dw0.RID": B.RISCV_IOMMU_CMD_ATS_RID,
  "cmd.ats.dw0.DSEG": B.RISCV_IOMMU_CMD_ATS_DSEG,
  "cmd.ats.inval.dw1.G": B.RISCV_IOMMU_CMD_ATS_INVAL_G,
  "cmd.ats.inval.dw1.S": B.RISCV_IOMMU_CMD_ATS_INVAL_S,
  "cmd.ats.inval.dw1.UADDR[63:12]": B.RISCV_IOMMU_CMD_ATS_INVAL_UADDR,
  "cmd.ats.prgr.dw1.PRG_INDEX": B.RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX,
  "cmd.ats.prgr.dw1.RESP_CODE": B.RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE,
  "cmd.ats.prgr.dw1.DST_ID": B.RISCV_IOMMU_CMD_ATS_PRGR_DST_ID,
  "fq.dw0.CAUSE": B.RISCV_IOMMU_FQ_HDR_CAUSE,
  "fq.dw0.PID": B.RISCV_IOMMU_FQ_HDR_PID,
  "fq.dw0.PV": B.RISCV_IOMMU_FQ_HDR_PV,
  "fq.dw0.PRIV": B.RISCV_IOMMU_FQ_HDR_PRIV,
  "fq.dw0.TTYP": B.RISCV_IOMMU_FQ_HDR_TTYP,
  "fq.dw0.DID": B.RISCV_IOMMU_FQ_HDR_DID,
  "pq.dw0.PID": B.RISCV_IOMMU_PQ_HDR_PID,
  "pq.dw0.PV": B.RISCV_IOMMU_PQ_HDR_PV,
  "pq.dw0.PRIV": B.RISCV_IOMMU_PQ_HDR_PRIV,
  "pq.dw0.EXEC": B.RISCV_IOMMU_PQ_HDR_EXEC,
  "pq.dw0.DID": B.RISCV_IOMMU_PQ_HDR_DID,
  "pq.dw1.R": B.RISCV_IOMMU_PQ_PAYLOAD_R,
  "pq.dw1.W": B.RISCV_IOMMU_PQ_PAYLOAD_W,
  "pq.dw1.L": B.RISCV_IOMMU_PQ_PAYLOAD_L,
  "pq.dw1.PRGI": B.RISCV_IOMMU_PQ_PAYLOAD_PRGI,
  "pq.dw1.ADDR[63:12]": B.RISCV_IOMMU_PQ_PAYLOAD_ADDR,
};

/** Table groups the driver deliberately leaves to another package. */
const NOT_OURS = new Set(["pte64"]);

Deno.test("register offsets match the spec's register map (v1.0 §5.1 Register layout)", () => {
  for (const r of tables.registers) {
    assert.equal(offsetOf(r.name), r.offset, r.name);
  }
  assert.equal(B.RISCV_IOMMU_REG_SIZE, 4096);
});

Deno.test("every register and structure field matches the spec's bit positions", async (t) => {
  const groups: Record<string, { name: string; lsb: number; width: number }[]> = {
    ...tables.register_fields,
    ...tables.structures,
  };
  for (const [group, fields] of Object.entries(groups)) {
    if (NOT_OURS.has(group)) continue;
    await t.step(group, () => {
      for (const f of fields) {
        const key = `${group}.${f.name}`;
        assert.ok(key in FIELDS, `bits.ts has no definition for ${key}`);
        assert.equal(BigInt(FIELDS[key]), genmask(f.lsb, f.width), key);
      }
    });
  }
  // No stale entries in the map: each names a field the tables have.
  for (const key of Object.keys(FIELDS)) {
    const dot = Object.keys(groups).find((g) =>
      key.startsWith(g + ".") && groups[g].some((f) => key === `${g}.${f.name}`)
    );
    assert.ok(dot !== undefined, `${key} is not in the spec tables`);
  }
});

Deno.test("32-bit register fields are numbers, 64-bit ones bigints (BIT vs BIT_ULL)", () => {
  const size = new Map(tables.registers.map((r) => [r.name, r.size]));
  for (const [key, mask] of Object.entries(FIELDS)) {
    const reg = key.split(".")[0];
    if (!size.has(reg)) continue;
    assert.equal(typeof mask, size.get(reg) === 4 ? "number" : "bigint", key);
  }
});

Deno.test("post-1.0 extension bits: QOSID 41, NL 42, S 43; IOTINVAL NL dword0 bit 34, S dword1 bit 9", () => {
  // Not in the v1.0 tables: the spec's "IOMMU Extensions" chapter (QoS identifiers, non-leaf PTE
  // invalidation, address range invalidation).
  assert.equal(B.RISCV_IOMMU_CAPABILITIES_QOSID, 1n << 41n);
  assert.equal(B.RISCV_IOMMU_CAPABILITIES_NL, 1n << 42n);
  assert.equal(B.RISCV_IOMMU_CAPABILITIES_S, 1n << 43n);
  assert.equal(B.RISCV_IOMMU_CMD_IOTINVAL_NL, 1n << 34n);
  assert.equal(B.RISCV_IOMMU_CMD_IOTINVAL_S, 1n << 9n);
});

Deno.test("command opcodes and functions match the spec (v1.0 §3.1 Command-Queue (CQ))", () => {
  const op = tables.command_opcodes;
  assert.equal(B.RISCV_IOMMU_CMD_IOTINVAL_OPCODE, op.IOTINVAL.opcode);
  assert.equal(B.RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA, op.IOTINVAL.VMA);
  assert.equal(B.RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA, op.IOTINVAL.GVMA);
  assert.equal(B.RISCV_IOMMU_CMD_IOFENCE_OPCODE, op.IOFENCE.opcode);
  assert.equal(B.RISCV_IOMMU_CMD_IOFENCE_FUNC_C, op.IOFENCE.C);
  assert.equal(B.RISCV_IOMMU_CMD_IODIR_OPCODE, op.IODIR.opcode);
  assert.equal(B.RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT, op.IODIR.INVAL_DDT);
  assert.equal(B.RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT, op.IODIR.INVAL_PDT);
  assert.equal(B.RISCV_IOMMU_CMD_ATS_OPCODE, op.ATS.opcode);
  assert.equal(B.RISCV_IOMMU_CMD_ATS_FUNC_INVAL, op.ATS.INVAL);
  assert.equal(B.RISCV_IOMMU_CMD_ATS_FUNC_PRGR, op.ATS.PRGR);
});

Deno.test("fault causes, TTYPs and HPM events are exactly the spec's (tables 11, 12, 13)", () => {
  const exported = (prefix: string, skip: RegExp = /$^/) =>
    Object.entries(B).filter(([k, v]) =>
      k.startsWith(prefix) && !skip.test(k) && typeof v === "number"
    )
      .map(([, v]) => v as number).sort((a, b) => a - b);
  const keys = (o: Record<string, string>) => Object.keys(o).map(Number).sort((a, b) => a - b);
  assert.deepEqual(exported("RISCV_IOMMU_FQ_CAUSE_"), keys(tables.fault_causes));
  assert.deepEqual(exported("RISCV_IOMMU_FQ_TTYP_"), keys(tables.ttyp));
  assert.deepEqual(exported("RISCV_IOMMU_HPMEVENT_", /_MAX$/), keys(tables.hpm_events));
  assert.equal(B.RISCV_IOMMU_HPMEVENT_MAX, Math.max(...keys(tables.hpm_events)) + 1);
});

Deno.test("mode encodings match the spec (ddtp, iosatp, iohgatp, pdtp, msiptp, MSI PTE M)", () => {
  const m = tables.modes;
  assert.deepEqual(
    [
      B.RISCV_IOMMU_DDTP_IOMMU_MODE_OFF,
      B.RISCV_IOMMU_DDTP_IOMMU_MODE_BARE,
      B.RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
      B.RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL,
      B.RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
    ],
    [
      m["ddtp.iommu_mode"].Off,
      m["ddtp.iommu_mode"].Bare,
      m["ddtp.iommu_mode"]["1LVL"],
      m["ddtp.iommu_mode"]["2LVL"],
      m["ddtp.iommu_mode"]["3LVL"],
    ],
  );
  assert.equal(B.RISCV_IOMMU_DDTP_IOMMU_MODE_MAX, m["ddtp.iommu_mode"]["3LVL"]);
  assert.equal(B.RISCV_IOMMU_DC_FSC_MODE_BARE, m["iosatp.MODE"].Bare);
  assert.equal(B.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV32, m["iosatp.MODE"]["Sv32 (SXL=1)"]);
  assert.equal(B.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39, m["iosatp.MODE"].Sv39);
  assert.equal(B.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV48, m["iosatp.MODE"].Sv48);
  assert.equal(B.RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV57, m["iosatp.MODE"].Sv57);
  assert.equal(B.RISCV_IOMMU_DC_IOHGATP_MODE_BARE, m["iohgatp.MODE"].Bare);
  assert.equal(B.RISCV_IOMMU_DC_IOHGATP_MODE_SV32X4, m["iohgatp.MODE"]["Sv32x4 (GXL=1)"]);
  assert.equal(B.RISCV_IOMMU_DC_IOHGATP_MODE_SV39X4, m["iohgatp.MODE"].Sv39x4);
  assert.equal(B.RISCV_IOMMU_DC_IOHGATP_MODE_SV48X4, m["iohgatp.MODE"].Sv48x4);
  assert.equal(B.RISCV_IOMMU_DC_IOHGATP_MODE_SV57X4, m["iohgatp.MODE"].Sv57x4);
  assert.equal(B.RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8, m["pdtp.MODE"].PD8);
  assert.equal(B.RISCV_IOMMU_DC_FSC_PDTP_MODE_PD17, m["pdtp.MODE"].PD17);
  assert.equal(B.RISCV_IOMMU_DC_FSC_PDTP_MODE_PD20, m["pdtp.MODE"].PD20);
  assert.equal(B.RISCV_IOMMU_DC_MSIPTP_MODE_OFF, m["msiptp.MODE"].Off);
  assert.equal(B.RISCV_IOMMU_DC_MSIPTP_MODE_FLAT, m["msiptp.MODE"].Flat);
  assert.equal(B.RISCV_IOMMU_MSIPTE_M_MRIF, m["msipte.M"].MRIF);
  assert.equal(B.RISCV_IOMMU_MSIPTE_M_BASIC, m["msipte.M"]["basic (flat)"]);
});

Deno.test("queue entry and structure sizes match the spec (CQ 16, FQ 32, PQ 16; DC 32/64; PC 16)", () => {
  assert.equal(B.RISCV_IOMMU_CMD_SIZE, tables.queue_entry_bytes.CQ);
  assert.equal(B.RISCV_IOMMU_FQ_RECORD_SIZE, tables.queue_entry_bytes.FQ);
  assert.equal(B.RISCV_IOMMU_PQ_RECORD_SIZE, tables.queue_entry_bytes.PQ);
  assert.equal(B.RISCV_IOMMU_DC_BASE_SIZE, B.riscv_iommu_dc.msiptp);
  assert.equal(B.RISCV_IOMMU_DC_EXT_SIZE, B.riscv_iommu_dc.msi_addr_pattern + 16);
  assert.deepEqual(Object.values(B.riscv_iommu_dc), [0, 8, 16, 24, 32, 40, 48]);
  assert.equal(B.riscv_iommu_fq_record.iotval2 + 8, B.RISCV_IOMMU_FQ_RECORD_SIZE);
  assert.equal(B.riscv_iommu_pq_record.payload + 8, B.RISCV_IOMMU_PQ_RECORD_SIZE);
  // A PD8 leaf (PDI[0], 8 bits) of 16-byte process contexts fills one 4 KiB page.
  assert.equal(B.RISCV_IOMMU_PC_SIZE, B.riscv_iommu_pc.fsc + 8);
  assert.equal(B.RISCV_IOMMU_PC_SIZE * 2 ** tables.pdt_geometry.PDI[0][1], 4096);
});

Deno.test("FIELD_GET/FIELD_PREP round-trip through a mask and drop excess bits", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 63 }),
      fc.integer({ min: 1, max: 64 }),
      fc.bigInt(0n, (1n << 64n) - 1n),
      (lsb, w, v) => {
        const width = Math.min(w, 64 - lsb);
        const mask = genmask(lsb, width);
        const limit = (1n << BigInt(width)) - 1n;
        assert.equal(B.FIELD_GET(mask, B.FIELD_PREP(mask, v)), v & limit);
        assert.equal(B.FIELD_PREP(mask, v) & ~mask, 0n);
      },
    ),
  );
});

Deno.test("command builders put each argument in exactly its spec field (v1.0 §3.1.1-§3.1.4)", async (t) => {
  const cmd = new B.RiscvIommuCommand();
  const op = (
    c: B.RiscvIommuCommand,
  ) => [
    B.FIELD_GET(B.RISCV_IOMMU_CMD_OPCODE, c.dword0),
    B.FIELD_GET(B.RISCV_IOMMU_CMD_FUNC, c.dword0),
  ];
  const pageAddr = fc.bigInt(0n, (1n << 52n) - 1n).map((pfn) => Number(pfn << 12n));

  await t.step("IOTINVAL.VMA with PSCID, GSCID, ADDR and NL", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xf_ffff }),
        fc.integer({ min: 0, max: 0xffff }),
        pageAddr,
        (pscid, gscid, addr) => {
          B.riscv_iommu_cmd_inval_vma(cmd);
          assert.deepEqual(op(cmd), [1n, 0n]);
          assert.equal(cmd.dword0 & ~(B.RISCV_IOMMU_CMD_OPCODE | B.RISCV_IOMMU_CMD_FUNC), 0n);
          assert.equal(cmd.dword1, 0n);
          B.riscv_iommu_cmd_inval_set_pscid(cmd, pscid);
          B.riscv_iommu_cmd_inval_set_gscid(cmd, gscid);
          B.riscv_iommu_cmd_inval_set_addr(cmd, addr);
          B.riscv_iommu_cmd_inval_set_nl(cmd);
          const d0 = cmd.dword0;
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_IOTINVAL_PSCID, d0), BigInt(pscid));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_IOTINVAL_GSCID, d0), BigInt(gscid));
          const flags = B.RISCV_IOMMU_CMD_IOTINVAL_AV | B.RISCV_IOMMU_CMD_IOTINVAL_PSCV |
            B.RISCV_IOMMU_CMD_IOTINVAL_GV | B.RISCV_IOMMU_CMD_IOTINVAL_NL;
          assert.equal(d0 & flags, flags);
          const all = flags | B.RISCV_IOMMU_CMD_IOTINVAL_PSCID | B.RISCV_IOMMU_CMD_IOTINVAL_GSCID |
            B.RISCV_IOMMU_CMD_OPCODE | B.RISCV_IOMMU_CMD_FUNC;
          assert.equal(d0 & ~all, 0n, "no reserved dword0 bit set");
          assert.equal(
            cmd.dword1,
            B.FIELD_PREP(B.RISCV_IOMMU_CMD_IOTINVAL_ADDR, BigInt(addr) >> 12n),
          );
        },
      ),
    );
  });

  await t.step("IOTINVAL.GVMA with GSCID, ADDR (a GPA) and NL; never PSCV", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), pageAddr, (gscid, addr) => {
        B.riscv_iommu_cmd_inval_gvma(cmd);
        assert.deepEqual(op(cmd), [1n, 1n]);
        assert.equal(cmd.dword1, 0n);
        B.riscv_iommu_cmd_inval_set_gscid(cmd, gscid);
        B.riscv_iommu_cmd_inval_set_addr(cmd, addr);
        B.riscv_iommu_cmd_inval_set_nl(cmd);
        const d0 = cmd.dword0;
        assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_IOTINVAL_GSCID, d0), BigInt(gscid));
        assert.equal(d0 & B.RISCV_IOMMU_CMD_IOTINVAL_PSCV, 0n, "PSCV is illegal with GVMA");
        const flags = B.RISCV_IOMMU_CMD_IOTINVAL_AV | B.RISCV_IOMMU_CMD_IOTINVAL_GV |
          B.RISCV_IOMMU_CMD_IOTINVAL_NL;
        assert.equal(d0 & flags, flags);
        assert.equal(
          cmd.dword1,
          B.FIELD_PREP(B.RISCV_IOMMU_CMD_IOTINVAL_ADDR, BigInt(addr) >> 12n),
        );
      }),
    );
    B.riscv_iommu_cmd_inval_gvma(cmd);
    B.riscv_iommu_cmd_inval_set_gscid(cmd, 0x1234);
    assert.equal(cmd.dword0, 0x1234n << 44n | 1n << 33n | 1n << 7n | 1n);
  });

  await t.step(
    "IOTINVAL ADDR drops the page offset and keeps upper-half (sign-extended) IOVAs",
    () => {
      B.riscv_iommu_cmd_inval_vma(cmd);
      B.riscv_iommu_cmd_inval_set_addr(cmd, 0xffff_ffff_ffff_f000);
      assert.equal(cmd.dword1, B.RISCV_IOMMU_CMD_IOTINVAL_ADDR);
      B.riscv_iommu_cmd_inval_set_addr(cmd, 0x1234_5fff);
      assert.equal(cmd.dword1, 0x12345n << 10n);
    },
  );

  await t.step(
    "IOTINVAL NAPOT range: lowest zero ADDR bit at X covers 2^(X+1) pages, S set",
    () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 0, max: 0xfff }),
          (lg2pages, k) => {
            const size = 4096 * 2 ** lg2pages;
            const addr = k * size;
            B.riscv_iommu_cmd_inval_vma(cmd);
            B.riscv_iommu_cmd_inval_set_range(cmd, addr, size);
            assert.equal(cmd.dword1 & B.RISCV_IOMMU_CMD_IOTINVAL_S, B.RISCV_IOMMU_CMD_IOTINVAL_S);
            assert.equal(cmd.dword0 & B.RISCV_IOMMU_CMD_IOTINVAL_AV, B.RISCV_IOMMU_CMD_IOTINVAL_AV);
            const a = B.FIELD_GET(B.RISCV_IOMMU_CMD_IOTINVAL_ADDR, cmd.dword1);
            let x = 0n;
            while ((a >> x & 1n) === 1n) x++;
            assert.equal(2n ** (x + 1n) * 4096n, BigInt(size));
            assert.equal(a & ~((1n << x) - 1n), BigInt(addr) >> 12n);
          },
        ),
      );
    },
  );

  await t.step("IOFENCE.C sets PR and PW; with AV carries DATA and ADDR[63:2]", () => {
    B.riscv_iommu_cmd_iofence(cmd);
    assert.deepEqual(op(cmd), [2n, 0n]);
    assert.equal(cmd.dword0, 2n | B.RISCV_IOMMU_CMD_IOFENCE_PR | B.RISCV_IOMMU_CMD_IOFENCE_PW);
    assert.equal(cmd.dword1, 0n);
    fc.assert(
      fc.property(
        fc.bigInt(0n, (1n << 51n) - 1n),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (w, data) => {
          B.riscv_iommu_cmd_iofence_set_av(cmd, Number(w << 2n), data);
          assert.equal(cmd.dword0, 2n | B.RISCV_IOMMU_CMD_IOFENCE_AV | BigInt(data) << 32n);
          assert.equal(cmd.dword1, B.FIELD_PREP(B.RISCV_IOMMU_CMD_IOFENCE_ADDR, w));
        },
      ),
    );
  });

  await t.step("IODIR.INVAL_DDT / INVAL_PDT with DID (DV) and PID", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xff_ffff }),
        fc.integer({ min: 0, max: 0xf_ffff }),
        (did, pid) => {
          B.riscv_iommu_cmd_iodir_inval_ddt(cmd);
          assert.deepEqual(op(cmd), [3n, 0n]);
          assert.equal(cmd.dword0, 3n);
          B.riscv_iommu_cmd_iodir_set_did(cmd, did);
          assert.equal(
            cmd.dword0,
            3n | B.RISCV_IOMMU_CMD_IODIR_DV | B.FIELD_PREP(B.RISCV_IOMMU_CMD_IODIR_DID, did),
          );
          B.riscv_iommu_cmd_iodir_inval_pdt(cmd);
          B.riscv_iommu_cmd_iodir_set_did(cmd, did);
          B.riscv_iommu_cmd_iodir_set_pid(cmd, pid);
          assert.deepEqual(op(cmd), [3n, 1n]);
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_IODIR_PID, cmd.dword0), BigInt(pid));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_IODIR_DID, cmd.dword0), BigInt(did));
          assert.equal(cmd.dword1, 0n);
        },
      ),
    );
  });

  await t.step("ATS.INVAL to a device ID (RID, DSEG, DSV) and PASID, with a NAPOT payload", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xff_ffff }),
        fc.integer({ min: 0, max: 0xf_ffff }),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 0xfff }),
        (devid, pid, lg2pages, k) => {
          const size = 4096 * 2 ** lg2pages;
          B.riscv_iommu_cmd_ats_inval(cmd);
          assert.deepEqual(op(cmd), [4n, 0n]);
          B.riscv_iommu_cmd_ats_set_devid(cmd, devid);
          B.riscv_iommu_cmd_ats_set_pid(cmd, pid);
          B.riscv_iommu_cmd_ats_set_range(cmd, k * size, size);
          const d0 = cmd.dword0;
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_RID, d0), BigInt(devid & 0xffff));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_DSEG, d0), BigInt(devid >>> 16));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_PID, d0), BigInt(pid));
          const flags = B.RISCV_IOMMU_CMD_ATS_DSV | B.RISCV_IOMMU_CMD_ATS_PV;
          assert.equal(d0 & flags, flags);
          // PCIe ATS: S set for more than a page; the lowest clear address bit B makes 2^(B+1).
          const d1 = cmd.dword1;
          assert.equal((d1 & B.RISCV_IOMMU_CMD_ATS_INVAL_S) !== 0n, lg2pages > 0);
          assert.equal(d1 & B.RISCV_IOMMU_CMD_ATS_INVAL_G, 0n);
          const ua = B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_INVAL_UADDR, d1);
          let x = 0n;
          while (lg2pages > 0 && (ua >> x & 1n) === 1n) x++;
          const pages = lg2pages === 0 ? 1n : 2n ** (x + 1n);
          assert.equal(pages * 4096n, BigInt(size));
          assert.equal(ua & ~((1n << x) - 1n), BigInt(k * size) >> 12n);
        },
      ),
    );
    B.riscv_iommu_cmd_ats_inval(cmd);
    B.riscv_iommu_cmd_ats_set_devid(cmd, 0x12_3456);
    B.riscv_iommu_cmd_ats_set_range(cmd, 0x20_0000, 0x20_0000);
    assert.equal(cmd.dword0, 0x12n << 56n | 0x3456n << 40n | 1n << 33n | 4n);
    assert.equal(cmd.dword1, 0x2f_f800n, "2 MiB at 2 MiB: S, address bits 12..19 set");
    B.riscv_iommu_cmd_ats_set_all(cmd);
    assert.equal(cmd.dword1, (1n << 63n) - 1n & ~((1n << 11n) - 1n), "the whole address space");
  });

  await t.step("ATS.PRGR to a device ID: destination ID, group index, response code, PASID", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xff_ffff }),
        fc.integer({ min: 0, max: 0x1ff }),
        fc.constantFrom(0, 1, 15),
        fc.integer({ min: 0, max: 0xf_ffff }),
        (devid, group, code, pid) => {
          B.riscv_iommu_cmd_prgr(cmd);
          assert.deepEqual(op(cmd), [4n, 1n]);
          B.riscv_iommu_cmd_prgr_set_devid(cmd, devid);
          B.riscv_iommu_cmd_prgr_set_response(cmd, group, code);
          B.riscv_iommu_cmd_prgr_set_pid(cmd, pid);
          const d1 = cmd.dword1;
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_RID, cmd.dword0), BigInt(devid & 0xffff));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_PID, cmd.dword0), BigInt(pid));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_PRGR_DST_ID, d1), BigInt(devid & 0xffff));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX, d1), BigInt(group));
          assert.equal(B.FIELD_GET(B.RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE, d1), BigInt(code));
          const fields = B.RISCV_IOMMU_CMD_ATS_PRGR_DST_ID | B.RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX |
            B.RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE;
          assert.equal(d1 & ~fields, 0n, "no reserved payload bit set");
        },
      ),
    );
  });

  await t.step("a builder starting a command resets all four halves of the previous one", () => {
    B.riscv_iommu_cmd_iofence_set_av(cmd, 0xffff_fffc, 0xffff_ffff);
    B.riscv_iommu_cmd_iodir_inval_ddt(cmd);
    assert.equal(cmd.dword0, 3n);
    assert.equal(cmd.dword1, 0n);
  });
});
