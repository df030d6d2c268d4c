import assert from "node:assert/strict";
import * as R from "./regs.ts";

interface Field {
  name: string;
  lsb: number;
  width: number;
}
interface Tables {
  registers: { name: string; offset: number; size: number }[];
  register_fields: Record<string, Field[]>;
  structures: Record<string, Field[]>;
  command_opcodes: Record<string, Record<string, number>>;
  queue_entry_bytes: Record<string, number>;
}

const tables: Tables = JSON.parse(
  await Deno.readTextFile(new URL("../testdata/riscv-iommu-spec-tables.json", import.meta.url)),
);

function mask(f: Field): bigint {
  return ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
}

function field(reg: string, name: string): bigint {
  const f = (tables.register_fields[reg] ?? tables.structures[reg]).find((x) => x.name === name);
  assert.ok(f, `${reg}.${name} is in the spec tables`);
  return mask(f);
}

const OFFSETS: Record<string, number> = {
  capabilities: R.RISCV_IOMMU_REG_CAPABILITIES,
  fctl: R.RISCV_IOMMU_REG_FCTL,
  ddtp: R.RISCV_IOMMU_REG_DDTP,
  cqb: R.RISCV_IOMMU_REG_CQB,
  cqh: R.RISCV_IOMMU_REG_CQH,
  cqt: R.RISCV_IOMMU_REG_CQT,
  fqb: R.RISCV_IOMMU_REG_FQB,
  fqh: R.RISCV_IOMMU_REG_FQH,
  fqt: R.RISCV_IOMMU_REG_FQT,
  pqb: R.RISCV_IOMMU_REG_PQB,
  pqh: R.RISCV_IOMMU_REG_PQH,
  pqt: R.RISCV_IOMMU_REG_PQT,
  cqcsr: R.RISCV_IOMMU_REG_CQCSR,
  fqcsr: R.RISCV_IOMMU_REG_FQCSR,
  pqcsr: R.RISCV_IOMMU_REG_PQCSR,
  ipsr: R.RISCV_IOMMU_REG_IPSR,
  iocountovf: R.RISCV_IOMMU_REG_IOCOUNTOVF,
  iocountinh: R.RISCV_IOMMU_REG_IOCOUNTINH,
  iohpmcycles: R.RISCV_IOMMU_REG_IOHPMCYCLES,
  tr_req_iova: R.RISCV_IOMMU_REG_TR_REQ_IOVA,
  tr_req_ctl: R.RISCV_IOMMU_REG_TR_REQ_CTL,
  tr_response: R.RISCV_IOMMU_REG_TR_RESPONSE,
  icvec: R.RISCV_IOMMU_REG_ICVEC,
};

function offsetOf(name: string): number {
  let m = /^iohpmctr(\d+)$/.exec(name);
  if (m) return R.RISCV_IOMMU_REG_IOHPMCTR(Number(m[1]));
  m = /^iohpmevt(\d+)$/.exec(name);
  if (m) return R.RISCV_IOMMU_REG_IOHPMEVT(Number(m[1]));
  m = /^msi_(addr|data|vec_ctl)_(\d+)$/.exec(name);
  if (m) {
    const n = Number(m[2]);
    if (m[1] === "addr") return R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(n);
    if (m[1] === "data") return R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(n);
    return R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(n);
  }
  assert.ok(name in OFFSETS, `register ${name} has a constant`);
  return OFFSETS[name];
}

Deno.test("regs: every register offset matches the spec's register map (spec §5.1, Register layout)", () => {
  assert.equal(tables.registers.length, 133);
  for (const r of tables.registers) assert.equal(offsetOf(r.name), r.offset, r.name);
  assert.equal(R.RISCV_IOMMU_REG_IOHPMCTR(31), 0x158);
  assert.equal(R.RISCV_IOMMU_REG_IOHPMEVT(31), 0x250);
});

Deno.test("regs: register field masks match the spec tables (spec chapter 5, Memory-mapped register interface)", () => {
  const n = (v: number) => BigInt(v);
  const cases: [string, string, bigint][] = [
    ["fctl", "BE", n(R.RISCV_IOMMU_FCTL_BE)],
    ["fctl", "WSI", n(R.RISCV_IOMMU_FCTL_WSI)],
    ["fctl", "GXL", n(R.RISCV_IOMMU_FCTL_GXL)],
    ["ddtp", "iommu_mode", R.RISCV_IOMMU_DDTP_IOMMU_MODE],
    ["ddtp", "busy", R.RISCV_IOMMU_DDTP_BUSY],
    ["ddtp", "PPN", R.RISCV_IOMMU_DDTP_PPN],
    ["cqb", "LOG2SZ-1", R.RISCV_IOMMU_CQB_ENTRIES],
    ["cqb", "PPN", R.RISCV_IOMMU_CQB_PPN],
    ["fqb", "LOG2SZ-1", R.RISCV_IOMMU_FQB_ENTRIES],
    ["fqb", "PPN", R.RISCV_IOMMU_FQB_PPN],
    ["pqb", "LOG2SZ-1", R.RISCV_IOMMU_PQB_ENTRIES],
    ["pqb", "PPN", R.RISCV_IOMMU_PQB_PPN],
    ["cqcsr", "cqen", n(R.RISCV_IOMMU_CQCSR_CQEN)],
    ["cqcsr", "cie", n(R.RISCV_IOMMU_CQCSR_CIE)],
    ["cqcsr", "cqmf", n(R.RISCV_IOMMU_CQCSR_CQMF)],
    ["cqcsr", "cmd_to", n(R.RISCV_IOMMU_CQCSR_CMD_TO)],
    ["cqcsr", "cmd_ill", n(R.RISCV_IOMMU_CQCSR_CMD_ILL)],
    ["cqcsr", "fence_w_ip", n(R.RISCV_IOMMU_CQCSR_FENCE_W_IP)],
    ["cqcsr", "cqon", n(R.RISCV_IOMMU_CQCSR_CQON)],
    ["cqcsr", "busy", n(R.RISCV_IOMMU_CQCSR_BUSY)],
    ["fqcsr", "fqen", n(R.RISCV_IOMMU_FQCSR_FQEN)],
    ["fqcsr", "fie", n(R.RISCV_IOMMU_FQCSR_FIE)],
    ["fqcsr", "fqmf", n(R.RISCV_IOMMU_FQCSR_FQMF)],
    ["fqcsr", "fqof", n(R.RISCV_IOMMU_FQCSR_FQOF)],
    ["fqcsr", "fqon", n(R.RISCV_IOMMU_FQCSR_FQON)],
    ["fqcsr", "busy", n(R.RISCV_IOMMU_FQCSR_BUSY)],
    ["pqcsr", "pqen", n(R.RISCV_IOMMU_PQCSR_PQEN)],
    ["pqcsr", "pie", n(R.RISCV_IOMMU_PQCSR_PIE)],
    ["pqcsr", "pqmf", n(R.RISCV_IOMMU_PQCSR_PQMF)],
    ["pqcsr", "pqof", n(R.RISCV_IOMMU_PQCSR_PQOF)],
    ["pqcsr", "pqon", n(R.RISCV_IOMMU_PQCSR_PQON)],
    ["pqcsr", "busy", n(R.RISCV_IOMMU_PQCSR_BUSY)],
    ["ipsr", "cip", n(R.RISCV_IOMMU_IPSR_CIP)],
    ["ipsr", "fip", n(R.RISCV_IOMMU_IPSR_FIP)],
    ["ipsr", "pmip", n(R.RISCV_IOMMU_IPSR_PMIP)],
    ["ipsr", "pip", n(R.RISCV_IOMMU_IPSR_PIP)],
    ["iohpmcycles", "counter", R.RISCV_IOMMU_IOHPMCYCLES_COUNTER],
    ["iohpmcycles", "OF", R.RISCV_IOMMU_IOHPMCYCLES_OF],
    ["iohpmevt", "eventID", R.RISCV_IOMMU_IOHPMEVT_EVENT_ID],
    ["iohpmevt", "DMASK", R.RISCV_IOMMU_IOHPMEVT_DMASK],
    ["iohpmevt", "PID_PSCID", R.RISCV_IOMMU_IOHPMEVT_PID_PSCID],
    ["iohpmevt", "DID_GSCID", R.RISCV_IOMMU_IOHPMEVT_DID_GSCID],
    ["iohpmevt", "PV_PSCV", R.RISCV_IOMMU_IOHPMEVT_PV_PSCV],
    ["iohpmevt", "DV_GSCV", R.RISCV_IOMMU_IOHPMEVT_DV_GSCV],
    ["iohpmevt", "IDT", R.RISCV_IOMMU_IOHPMEVT_IDT],
    ["iohpmevt", "OF", R.RISCV_IOMMU_IOHPMEVT_OF],
    ["tr_req_iova", "vpn", R.RISCV_IOMMU_TR_REQ_IOVA_VPN],
    ["tr_req_ctl", "Go/Busy", R.RISCV_IOMMU_TR_REQ_CTL_GO_BUSY],
    ["tr_req_ctl", "Priv", R.RISCV_IOMMU_TR_REQ_CTL_PRIV],
    ["tr_req_ctl", "Exe", R.RISCV_IOMMU_TR_REQ_CTL_EXE],
    ["tr_req_ctl", "NW", R.RISCV_IOMMU_TR_REQ_CTL_NW],
    ["tr_req_ctl", "PID", R.RISCV_IOMMU_TR_REQ_CTL_PID],
    ["tr_req_ctl", "PV", R.RISCV_IOMMU_TR_REQ_CTL_PV],
    ["tr_req_ctl", "DID", R.RISCV_IOMMU_TR_REQ_CTL_DID],
    ["tr_response", "fault", R.RISCV_IOMMU_TR_RESPONSE_FAULT],
    ["tr_response", "PBMT", R.RISCV_IOMMU_TR_RESPONSE_PBMT],
    ["tr_response", "S", R.RISCV_IOMMU_TR_RESPONSE_SZ],
    ["tr_response", "PPN", R.RISCV_IOMMU_TR_RESPONSE_PPN],
    ["icvec", "civ", R.RISCV_IOMMU_ICVEC_CIV],
    ["icvec", "fiv", R.RISCV_IOMMU_ICVEC_FIV],
    ["icvec", "pmiv", R.RISCV_IOMMU_ICVEC_PMIV],
    ["icvec", "piv", R.RISCV_IOMMU_ICVEC_PIV],
    ["msi_addr", "ADDR", R.RISCV_IOMMU_MSI_CFG_TBL_ADDR],
    ["msi_vec_ctl", "M", n(R.RISCV_IOMMU_MSI_CFG_TBL_CTRL_M)],
  ];
  for (const [reg, name, m] of cases) assert.equal(m, field(reg, name), `${reg}.${name}`);
});

Deno.test("regs: command encodings match the spec tables (spec §3.1, Command-Queue)", () => {
  const ops = tables.command_opcodes;
  assert.equal(R.RISCV_IOMMU_CMD_IOTINVAL_OPCODE, ops.IOTINVAL.opcode);
  assert.equal(R.RISCV_IOMMU_CMD_IOTINVAL_FUNC_VMA, ops.IOTINVAL.VMA);
  assert.equal(R.RISCV_IOMMU_CMD_IOTINVAL_FUNC_GVMA, ops.IOTINVAL.GVMA);
  assert.equal(R.RISCV_IOMMU_CMD_IOFENCE_OPCODE, ops.IOFENCE.opcode);
  assert.equal(R.RISCV_IOMMU_CMD_IOFENCE_FUNC_C, ops.IOFENCE.C);
  assert.equal(R.RISCV_IOMMU_CMD_IODIR_OPCODE, ops.IODIR.opcode);
  assert.equal(R.RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_DDT, ops.IODIR.INVAL_DDT);
  assert.equal(R.RISCV_IOMMU_CMD_IODIR_FUNC_INVAL_PDT, ops.IODIR.INVAL_PDT);
  assert.equal(R.RISCV_IOMMU_CMD_ATS_OPCODE, ops.ATS.opcode);
  assert.equal(R.RISCV_IOMMU_CMD_ATS_FUNC_INVAL, ops.ATS.INVAL);
  assert.equal(R.RISCV_IOMMU_CMD_ATS_FUNC_PRGR, ops.ATS.PRGR);
  const cases: [string, string, bigint][] = [
    ["cmd.dw0", "opcode", R.RISCV_IOMMU_CMD_OPCODE],
    ["cmd.dw0", "func3", R.RISCV_IOMMU_CMD_FUNC],
    ["cmd.iotinval.dw0", "AV", R.RISCV_IOMMU_CMD_IOTINVAL_AV],
    ["cmd.iotinval.dw0", "PSCID", R.RISCV_IOMMU_CMD_IOTINVAL_PSCID],
    ["cmd.iotinval.dw0", "PSCV", R.RISCV_IOMMU_CMD_IOTINVAL_PSCV],
    ["cmd.iotinval.dw0", "GV", R.RISCV_IOMMU_CMD_IOTINVAL_GV],
    ["cmd.iotinval.dw0", "GSCID", R.RISCV_IOMMU_CMD_IOTINVAL_GSCID],
    ["cmd.iotinval.dw1", "ADDR[63:12]", R.RISCV_IOMMU_CMD_IOTINVAL_ADDR],
    ["cmd.iofence.dw0", "AV", R.RISCV_IOMMU_CMD_IOFENCE_AV],
    ["cmd.iofence.dw0", "WSI", R.RISCV_IOMMU_CMD_IOFENCE_WSI],
    ["cmd.iofence.dw0", "PR", R.RISCV_IOMMU_CMD_IOFENCE_PR],
    ["cmd.iofence.dw0", "PW", R.RISCV_IOMMU_CMD_IOFENCE_PW],
    ["cmd.iofence.dw0", "DATA", R.RISCV_IOMMU_CMD_IOFENCE_DATA],
    ["cmd.iofence.dw1", "ADDR[63:2]", R.RISCV_IOMMU_CMD_IOFENCE_ADDR],
    ["cmd.iodir.dw0", "PID", R.RISCV_IOMMU_CMD_IODIR_PID],
    ["cmd.iodir.dw0", "DV", R.RISCV_IOMMU_CMD_IODIR_DV],
    ["cmd.iodir.dw0", "DID", R.RISCV_IOMMU_CMD_IODIR_DID],
    ["cmd.ats.dw0", "PID", R.RISCV_IOMMU_CMD_ATS_PID],
    ["cmd.ats.dw0", "PV", R.RISCV_IOMMU_CMD_ATS_PV],
    ["cmd.ats.dw0", "DSV", R.RISCV_IOMMU_CMD_ATS_DSV],
    ["cmd.ats.dw0", "RID", R.RISCV_IOMMU_CMD_ATS_RID],
    ["cmd.ats.dw0", "DSEG", R.RISCV_IOMMU_CMD_ATS_DSEG],
    ["cmd.ats.inval.dw1", "G", R.RISCV_IOMMU_CMD_ATS_INVAL_G],
    ["cmd.ats.inval.dw1", "S", R.RISCV_IOMMU_CMD_ATS_INVAL_S],
    ["cmd.ats.inval.dw1", "UADDR[63:12]", R.RISCV_IOMMU_CMD_ATS_INVAL_UADDR],
    ["cmd.ats.prgr.dw1", "PRG_INDEX", R.RISCV_IOMMU_CMD_ATS_PRGR_PRG_INDEX],
    ["cmd.ats.prgr.dw1", "RESP_CODE", R.RISCV_IOMMU_CMD_ATS_PRGR_RESP_CODE],
    ["cmd.ats.prgr.dw1", "DST_ID", R.RISCV_IOMMU_CMD_ATS_PRGR_DST_ID],
  ];
  for (const [s, name, m] of cases) assert.equal(m, field(s, name), `${s}.${name}`);
});

Deno.test("regs: queue entry sizes match the spec (CQ 16 B, FQ 32 B, PQ 16 B)", () => {
  assert.equal(R.RISCV_IOMMU_CQ_ENTRY_SIZE, tables.queue_entry_bytes.CQ);
  assert.equal(R.RISCV_IOMMU_FQ_ENTRY_SIZE, tables.queue_entry_bytes.FQ);
  assert.equal(R.RISCV_IOMMU_PQ_ENTRY_SIZE, tables.queue_entry_bytes.PQ);
});

Deno.test("regs: FIELD_GET and FIELD_PREP shift by the mask's lowest set bit", () => {
  assert.equal(R.FIELD_GET(R.RISCV_IOMMU_CMD_IODIR_DID, 0xabcdef00_0000_0000n), 0xabcdefn);
  assert.equal(R.FIELD_PREP(R.RISCV_IOMMU_CMD_IOTINVAL_GSCID, 0x1234), 0x1234n << 44n);
  assert.equal(R.FIELD_PREP(R.RISCV_IOMMU_CMD_IOTINVAL_GSCID, 0x1_ffff), 0xffffn << 44n);
});
