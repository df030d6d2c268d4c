import assert from "node:assert/strict";
import { MEM_ACCESS_FAULT, PhysicalMemory } from "../memory.ts";
import type { IommuCaps } from "./caps.ts";
import { Iommu } from "./iommu.ts";
import {
  encodeFaultRecord,
  encodePageRequest,
  HwQueue,
  type PageRequest,
  QUEUE_RECORD_MEM_FAULT,
  QUEUE_RECORD_OFF,
  QUEUE_RECORD_OVERFLOW,
  QUEUE_RECORD_WRITTEN,
} from "./queues.ts";
import * as R from "./regs.ts";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_WRITE,
  newRequest,
  newResult,
  setIova,
  XLATE_FAULT,
} from "./request.ts";
import {
  encodeAtp,
  encodeIohgatp,
  encodePcTa,
  PageTableBuilder,
  PdtBuilder,
  testIommuEnv,
} from "../testing.ts";
import { RISCV_IOMMU_DC_TC_DPE, RISCV_IOMMU_DC_TC_PDTV } from "./structs.ts";

const RAM = 0x8000_0000;
const FQ = RAM + 0x10_0000;
const PQ = RAM + 0x20_0000;
const P = R.FIELD_PREP;

function dwords(rec: Uint32Array): bigint[] {
  const out = [];
  for (let i = 0; i < rec.length; i += 2) out.push(BigInt(rec[i + 1]) << 32n | BigInt(rec[i]));
  return out;
}

Deno.test("fault record layout: PV=0 ⇒ PID=PRIV=0; TTYP=0 ⇒ DID=PV=PID=PRIV=0 (spec §3.2, Fault/Event-Queue)", async (t) => {
  const rec = new Uint32Array(8);
  await t.step("all fields", () => {
    encodeFaultRecord(rec, 13, 3, 0xabcdef, true, 0x12345, true, 0xffff_ffff_0000_1000n, 0x5n);
    assert.deepEqual(dwords(rec), [
      P(R.RISCV_IOMMU_FQ_HDR_CAUSE, 13) | P(R.RISCV_IOMMU_FQ_HDR_PID, 0x12345) |
      R.RISCV_IOMMU_FQ_HDR_PV | R.RISCV_IOMMU_FQ_HDR_PRIV | P(R.RISCV_IOMMU_FQ_HDR_TTYPE, 3) |
      P(R.RISCV_IOMMU_FQ_HDR_DID, 0xabcdef),
      0n,
      0xffff_ffff_0000_1000n,
      0x5n,
    ]);
  });
  await t.step("PV=0", () => {
    encodeFaultRecord(rec, 13, 2, 7, false, 0x12345, true, 0n, 0n);
    assert.equal(dwords(rec)[0], 13n | P(R.RISCV_IOMMU_FQ_HDR_TTYPE, 2) | 7n << 40n);
  });
  await t.step("TTYP=0", () => {
    encodeFaultRecord(rec, 273, 0, 7, true, 0x12345, true, 0x2800_0000n, 0n);
    assert.deepEqual(dwords(rec), [273n, 0n, 0x2800_0000n, 0n]);
  });
});

Deno.test("page-request record layout; PRIV and EXEC need a PASID (spec §3.3, Page-Request-Queue)", () => {
  const rec = new Uint32Array(4);
  const pr: PageRequest = {
    deviceId: 0x10,
    pidValid: true,
    pid: 0x3_0001,
    priv: true,
    exec: true,
    read: true,
    write: true,
    last: true,
    prgIndex: 0x1a5,
    addrLo: 0xdead_bfff,
    addrHi: 0x7f,
  };
  encodePageRequest(rec, pr);
  assert.deepEqual(dwords(rec), [
    P(R.RISCV_IOMMU_PQ_HDR_PID, 0x3_0001) | R.RISCV_IOMMU_PQ_HDR_PV | R.RISCV_IOMMU_PQ_HDR_PRIV |
    R.RISCV_IOMMU_PQ_HDR_EXEC | P(R.RISCV_IOMMU_PQ_HDR_DID, 0x10),
    R.RISCV_IOMMU_PQ_PAYLOAD_R | R.RISCV_IOMMU_PQ_PAYLOAD_W | R.RISCV_IOMMU_PQ_PAYLOAD_L |
    P(R.RISCV_IOMMU_PQ_PAYLOAD_PRGI, 0x1a5) | 0x7f_dead_b000n,
  ]);
  encodePageRequest(rec, { ...pr, pidValid: false });
  assert.equal(dwords(rec)[0], P(R.RISCV_IOMMU_PQ_HDR_DID, 0x10));
});

/** An IOMMU whose translator faults every request with cause 13 and asks for a record. */
function faulting(caps: Partial<IommuCaps> = {}, log2 = 3) {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const iommu = new Iommu({ mem, caps });
  iommu.translator.translate = (req, res) => {
    Object.assign(res, {
      status: XLATE_FAULT,
      cause: 13,
      ttyp: 2,
      iotval: BigInt(req.iovaLo),
      iotval2: 0n,
      reported: true,
    });
  };
  iommu.write64(R.RISCV_IOMMU_REG_FQB, BigInt(FQ / 4096) << 10n | BigInt(log2 - 1));
  iommu.write32(R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_FQCSR_FQEN | R.RISCV_IOMMU_FQCSR_FIE);
  const fault = (iova: number) => {
    const res = newResult();
    iommu.translate(newRequest({ deviceId: 9, pidValid: true, pid: 4, iovaLo: iova }), res);
    return res.reported;
  };
  const fqt = () => iommu.read32(R.RISCV_IOMMU_REG_FQT);
  const csr = () => iommu.read32(R.RISCV_IOMMU_REG_FQCSR);
  return { mem, iommu, fault, fqt, csr };
}

const OF = R.RISCV_IOMMU_FQCSR_FQOF, MF = R.RISCV_IOMMU_FQCSR_FQMF;

Deno.test("fault records land at fqt, 32 bytes apart, and raise fip", () => {
  const { mem, iommu, fault, fqt } = faulting();
  assert.equal(fault(0x1000), true);
  assert.equal(fault(0x2000), true);
  assert.equal(fqt(), 2);
  assert.equal(mem.read64(FQ), 13n | 4n << 12n | 1n << 32n | 2n << 34n | 9n << 40n);
  assert.equal(mem.read64(FQ + 16), 0x1000n);
  assert.equal(mem.read64(FQ + 32 + 16), 0x2000n);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_FIP);
});

Deno.test("fault records end to end: CAUSE, PID, PV, PRIV, TTYP, DID, iotval and iotval2 of real faults (QEMU gets these wrong)", () => {
  // Device 0x1234: PD8 directory behind an Sv39x4 G stage; PC 5 (ENS, SUM) and PC 0 have an Sv39
  // first stage mapping IOVA 0x1000 to GPA 0x7000_0000, which the G stage leaves unmapped.
  const env = testIommuEnv();
  const { mem, alloc } = env;
  const g = new PageTableBuilder(mem, alloc, "sv39x4");
  const pdt = new PdtBuilder(mem, alloc, 1);
  const pt = new PageTableBuilder(mem, alloc, "sv39");
  pt.map(0x1000, 0x7000_0000);
  pdt.set(5, encodePcTa(9, { ens: true, sum: true }), encodeAtp(8, pt.root));
  pdt.set(0, encodePcTa(9), encodeAtp(8, pt.root));
  for (const pn of [...pdt.pages, ...pt.pages]) g.map(pn * 4096, pn * 4096);
  env.ddt.set(0x1234, {
    tc: RISCV_IOMMU_DC_TC_PDTV | RISCV_IOMMU_DC_TC_DPE,
    fsc: encodeAtp(1, pdt.root),
    iohgatp: encodeIohgatp(8, 3, g.root),
  });
  const iommu = new Iommu({ mem });
  const fq = alloc.page();
  iommu.write64(R.RISCV_IOMMU_REG_FQB, BigInt(fq / 4096) << 10n | 3n);
  iommu.write32(R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_FQCSR_FQEN);
  iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(env.ddt.rootPn) << 10n | 4n);
  const record = (init: Parameters<typeof newRequest>[0]) => {
    const t = iommu.read32(R.RISCV_IOMMU_REG_FQT);
    const r = newRequest({ deviceId: 0x1234, ...init });
    setIova(r, 0x1abcn);
    iommu.translate(r, newResult());
    return [0, 1, 2, 3].map((i) => mem.read64(fq + t * 32 + i * 8));
  };
  const hdr = (cause: number, ttyp: number, pid: number | null, priv = false) =>
    P(R.RISCV_IOMMU_FQ_HDR_CAUSE, cause) | P(R.RISCV_IOMMU_FQ_HDR_TTYPE, ttyp) |
    P(R.RISCV_IOMMU_FQ_HDR_DID, 0x1234) |
    (pid === null ? 0n : R.RISCV_IOMMU_FQ_HDR_PV | P(R.RISCV_IOMMU_FQ_HDR_PID, pid)) |
    (priv ? R.RISCV_IOMMU_FQ_HDR_PRIV : 0n);
  // Supervisor read with process_id 5: guest-page fault on the final GPA.
  assert.deepEqual(record({ pidValid: true, pid: 5, priv: true, access: ACC_READ }), [
    hdr(21, 2, 5, true),
    0n,
    0x1abcn,
    0x7000_0abcn,
  ]);
  // User write, process_id 5: TTYP 3, PRIV 0.
  assert.deepEqual(record({ pidValid: true, pid: 5, access: ACC_WRITE })[0], hdr(23, 3, 5));
  // No process_id (DPE uses PC 0): PV=0, PID=0, PRIV=0 although a PC was used; an execute of a
  // non-executable page is TTYP 1, cause 12, and a first-stage fault has no iotval2.
  const x = record({ access: ACC_EXEC, priv: true });
  assert.deepEqual([x[0], x[3]], [hdr(12, 1, null), 0n]);
  // process_id 0 is reported as such (PV=1).
  assert.deepEqual(record({ pidValid: true, pid: 0 })[0], hdr(21, 2, 0));
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQT), 4);
});

Deno.test("fault records are big-endian under fctl.BE", () => {
  const { mem, iommu, fault } = faulting({ end: true });
  iommu.write32(R.RISCV_IOMMU_REG_FCTL, R.RISCV_IOMMU_FCTL_BE);
  fault(0x1234_5000);
  assert.equal(mem.read64(FQ + 16, true), 0x1234_5000n);
  assert.equal(mem.read8(FQ + 16 + 7), 0x00, "least significant byte last");
  assert.equal(mem.read8(FQ + 16 + 4), 0x12);
});

Deno.test("a full fault queue (tail == head − 1) sets fqof and drops every record until cleared", () => {
  const { iommu, fault, fqt, csr } = faulting({}, 2); // 4 entries, 3 usable
  assert.deepEqual([fault(1), fault(2), fault(3)], [true, true, true]);
  assert.equal(fault(4), false, "the fourth record does not fit");
  assert.equal(csr() & OF, OF);
  iommu.write32(R.RISCV_IOMMU_REG_FQH, 2); // software consumed two
  assert.equal(fault(5), false, "still dropped: fqof is set");
  assert.equal(fqt(), 3);
  iommu.write32(R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_FQCSR_FQEN | OF);
  assert.equal(fault(6), true);
  assert.equal(fqt(), 0);
});

Deno.test("a record store fault sets fqmf and drops every record until cleared", () => {
  const { mem, iommu, fault, fqt, csr } = faulting();
  mem.injectFault(FQ + 32, 32, MEM_ACCESS_FAULT, "write");
  assert.equal(fault(1), true);
  assert.equal(fault(2), false);
  assert.deepEqual([fqt(), csr() & MF], [1, MF]);
  mem.clearFaults();
  assert.equal(fault(3), false, "dropped while fqmf is set");
  iommu.write32(R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_FQCSR_FQEN | MF);
  assert.equal(fault(4), true);
  assert.equal(mem.read64(FQ + 32 + 16), 4n);
});

Deno.test("with the fault queue off, records are dropped without an error bit", () => {
  const { iommu, fault, csr } = faulting();
  iommu.write32(R.RISCV_IOMMU_REG_FQCSR, 0);
  assert.equal(fault(1), false);
  assert.equal(csr(), 0);
});

Deno.test("a fault the translator does not report (DTF, ATS page faults) writes no record", () => {
  const { iommu, fqt } = faulting();
  iommu.translator.translate = (_req, res) =>
    Object.assign(res, { status: XLATE_FAULT, cause: 13 });
  const res = newResult();
  iommu.translate(newRequest(), res);
  assert.deepEqual([res.reported, fqt()], [false, 0]);
});

Deno.test("page requests: records at pqt, pip, and the PRI outcomes off/overflow/memory fault", () => {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const iommu = new Iommu({ mem });
  const pr: PageRequest = {
    deviceId: 1,
    pidValid: false,
    pid: 0,
    priv: false,
    exec: false,
    read: true,
    write: false,
    last: true,
    prgIndex: 3,
    addrLo: 0x5000,
    addrHi: 0,
  };
  assert.equal(iommu.enqueuePageRequest(pr), QUEUE_RECORD_OFF);
  iommu.write64(R.RISCV_IOMMU_REG_PQB, BigInt(PQ / 4096) << 10n | 0n); // 2 entries
  iommu.write32(R.RISCV_IOMMU_REG_PQCSR, R.RISCV_IOMMU_PQCSR_PQEN | R.RISCV_IOMMU_PQCSR_PIE);
  assert.equal(iommu.enqueuePageRequest(pr), QUEUE_RECORD_WRITTEN);
  assert.equal(mem.read64(PQ + 8), 0x5000n | 3n << 3n | 5n);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_PQT), 1);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_PIP);
  assert.equal(iommu.enqueuePageRequest(pr), QUEUE_RECORD_OVERFLOW);
  assert.ok(iommu.read32(R.RISCV_IOMMU_REG_PQCSR) & R.RISCV_IOMMU_PQCSR_PQOF);
  iommu.write32(R.RISCV_IOMMU_REG_PQCSR, R.RISCV_IOMMU_PQCSR_PQEN | R.RISCV_IOMMU_PQCSR_PQOF);
  iommu.write32(R.RISCV_IOMMU_REG_PQH, 1);
  mem.injectFault(PQ + 16, 16, MEM_ACCESS_FAULT, "write");
  assert.equal(iommu.enqueuePageRequest(pr), QUEUE_RECORD_MEM_FAULT);
  assert.equal(iommu.enqueuePageRequest(pr), QUEUE_RECORD_MEM_FAULT, "dropped until pqmf clears");
  const noAts = new Iommu({ mem, caps: { ats: false } });
  assert.equal(noAts.enqueuePageRequest(pr), QUEUE_RECORD_OFF);
});

Deno.test("endianness: page-request records are big-endian under fctl.BE (spec §2.10, Endianness of in-memory data structures)", () => {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const iommu = new Iommu({ mem, caps: { end: true } });
  iommu.write32(R.RISCV_IOMMU_REG_FCTL, R.RISCV_IOMMU_FCTL_BE);
  iommu.write64(R.RISCV_IOMMU_REG_PQB, BigInt(PQ / 4096) << 10n | 3n);
  iommu.write32(R.RISCV_IOMMU_REG_PQCSR, R.RISCV_IOMMU_PQCSR_PQEN);
  const pr: PageRequest = {
    deviceId: 0x12_3456,
    pidValid: true,
    pid: 0x789,
    priv: false,
    exec: false,
    read: true,
    write: false,
    last: true,
    prgIndex: 1,
    addrLo: 0xabcd_e000,
    addrHi: 0x12,
  };
  assert.equal(iommu.enqueuePageRequest(pr), QUEUE_RECORD_WRITTEN);
  const rec = new Uint32Array(4);
  encodePageRequest(rec, pr);
  assert.deepEqual([mem.read64(PQ, true), mem.read64(PQ + 8, true)], dwords(rec));
  assert.equal(mem.read8(PQ), 0x12, "DID[23:16], the most significant byte, comes first");
});

Deno.test("HwQueue: a 2^32-entry queue wraps its 32-bit index", () => {
  const mem = new PhysicalMemory();
  mem.addRam(0, 2 ** 40);
  const q = new HwQueue({
    entrySize: 16,
    swOwnsTail: false,
    errorBits: MF | OF,
    maxLog2Sz: 32,
    pas: 56,
    busyPolls: 0,
  });
  q.writeBase(0x1fn);
  assert.equal(q.size, 2 ** 32);
  q.writeCsr(R.RISCV_IOMMU_QUEUE_ENABLE);
  q.writeSwIndex(5);
  q.tail = 0xffff_ffff;
  assert.equal(q.push(mem, new Uint32Array(4), false), QUEUE_RECORD_WRITTEN);
  assert.equal(q.tail, 0);
  assert.equal(q.entryAddr(0xffff_ffff), 0xffff_ffff * 16);
});
