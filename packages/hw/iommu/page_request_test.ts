import assert from "node:assert/strict";
import { MEM_ACCESS_FAULT } from "../memory.ts";
import { type TestIommuDevice, testIommuDevice } from "../testing.ts";
import { ATS_INVAL_SENT, type AtsPort, type PageGroupResponse } from "./command_queue.ts";
import {
  PRG_RESPONSE_FAILURE,
  PRG_RESPONSE_INVALID,
  PRG_RESPONSE_SUCCESS,
  PRQ_ANSWERED_FAILURE,
  PRQ_ANSWERED_INVALID,
  PRQ_ANSWERED_SUCCESS,
  PRQ_DISCARDED,
  PRQ_QUEUED,
} from "./page_request.ts";
import type { PageRequest } from "./queues.ts";
import * as R from "./regs.ts";
import {
  RISCV_IOMMU_DC_TC_DTF,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_EN_PRI,
  RISCV_IOMMU_DC_TC_PRPR,
  RISCV_IOMMU_DDTP_IOMMU_MODE_BARE,
  RISCV_IOMMU_DDTP_IOMMU_MODE_OFF,
} from "./structs.ts";

const DEV = 0x10;
const PRI = RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_EN_PRI;

/** A page request of DEV for page 0x1234_5000: read, last, PRG index 7, PASID 0x99 (priv). */
function req(init: Partial<PageRequest> = {}): PageRequest {
  return {
    deviceId: DEV,
    pidValid: true,
    pid: 0x99,
    priv: true,
    exec: false,
    read: true,
    write: false,
    last: true,
    prgIndex: 7,
    addrLo: 0x1234_5000,
    addrHi: 0,
    ...init,
  };
}

const STOP = { read: false, write: false, last: true } as const;

/** An IOMMU whose DEV has EN_ATS, EN_PRI (and `tc`); responses land in `sent`. */
function rig(tc = PRI, opts: { pqLog2Sz?: number } = {}) {
  const d = testIommuDevice(opts);
  d.ddt.set(DEV, { tc });
  const sent: PageGroupResponse[] = [];
  const port: AtsPort = {
    invalidate: () => ATS_INVAL_SENT,
    pageResponse: (r) => void sent.push(r),
  };
  d.iommu.atsPort = port;
  const fqt = () => d.iommu.read32(R.RISCV_IOMMU_REG_FQT);
  const pqt = () => d.iommu.read32(R.RISCV_IOMMU_REG_PQT);
  const pqcsr = () => d.iommu.read32(R.RISCV_IOMMU_REG_PQCSR);
  /** The [cause, TTYP, DID, PV, PID, PRIV, iotval] of fault record `i`. */
  const fault = (i: number) => {
    const d0 = d.mem.read64(d.fq + i * 32);
    return [
      Number(d0 & 0xfffn),
      Number(d0 >> 34n & 0x3fn),
      Number(d0 >> 40n),
      Number(d0 >> 32n & 1n),
      Number(d0 >> 12n & 0xfffffn),
      Number(d0 >> 33n & 1n),
      d.mem.read64(d.fq + i * 32 + 16),
    ];
  };
  return { ...d, sent, fqt, pqt, pqcsr, fault };
}

/** What a response said: [code, PASID or -1, PRG index, requester]. */
const said = (r: PageGroupResponse) => [r.responseCode, r.pv ? r.pid : -1, r.prgIndex, r.rid];

Deno.test("page request with EN_ATS=EN_PRI=1 goes to the PQ: PID/PV/PRIV/EXEC, DID, R/W/L, PRGI, address; pip (spec §2.7, PCIe ATS Page Request handling; §3.3, Page-Request-Queue)", () => {
  const { iommu, mem, pq, pqt, sent, fqt } = rig();
  assert.equal(iommu.pageRequest(req({ exec: true, write: true })), PRQ_QUEUED);
  const d0 = mem.read64(pq), d1 = mem.read64(pq + 8);
  assert.equal(d0, 0x99n << 12n | 1n << 32n | 1n << 33n | 1n << 34n | BigInt(DEV) << 40n);
  assert.equal(d1, 0x1234_5000n | 7n << 3n | 4n | 2n | 1n);
  assert.equal(pqt(), 1);
  assert.equal(
    iommu.read32(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_PIP,
    R.RISCV_IOMMU_IPSR_PIP,
  );
  assert.deepEqual([sent.length, fqt()], [0, 0], "software answers; no fault");
  assert.equal(iommu.pageRequest(req({ pidValid: false, last: false, addrHi: 0x12 })), PRQ_QUEUED);
  assert.equal(mem.read64(pq + 16), BigInt(DEV) << 40n, "no PASID: PID, PRIV and EXEC are 0");
  assert.equal(mem.read64(pq + 24), 0x12_1234_5000n | 7n << 3n | 1n);
});

Deno.test("a Stop Marker (PASID, L=1, R=W=0) is queued like a page request (spec §3.3, Page-Request-Queue)", () => {
  const { iommu, mem, pq, sent } = rig();
  assert.equal(iommu.pageRequest(req(STOP)), PRQ_QUEUED);
  assert.equal(mem.read64(pq + 8) & 7n, 4n);
  assert.equal(sent.length, 0);
});

Deno.test("pip is signalled as the other queues' interrupts are: icvec.piv selects the MSI vector or the wire (spec §5.18, Interrupt pending status register)", async (t) => {
  await t.step("MSI: msi_cfg_tbl[piv] is written on the 0→1 edge", () => {
    const { iommu, mem, alloc } = rig();
    const doorbell = alloc.page();
    iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 5n << 12n);
    iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(5), BigInt(doorbell));
    iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(5), 0x55);
    iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(5), 0);
    iommu.pageRequest(req());
    assert.equal(mem.read32(doorbell), 0x55);
    mem.write32(doorbell, 0);
    iommu.pageRequest(req());
    assert.equal(mem.read32(doorbell), 0, "pip still pending: no new edge");
  });
  await t.step("WSI: wire piv follows pip", () => {
    const wires: [number, boolean][] = [];
    const d = testIommuDevice({ caps: { igs: 1 }, irq: { setWire: (l, v) => wires.push([l, v]) } });
    d.ddt.set(DEV, { tc: PRI });
    d.iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 3n << 12n);
    d.iommu.pageRequest(req());
    assert.deepEqual(wires, [[3, true]]);
    d.iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_PIP);
    assert.deepEqual(wires, [[3, true], [3, false]]);
  });
});

Deno.test("automatic responses when the DC cannot be located: Response Failure with the PASID, a TTYP 9 fault (spec §2.7, PCIe ATS Page Request handling)", async (t) => {
  const check = (d: ReturnType<typeof rig>, cause: number) => {
    assert.equal(d.iommu.pageRequest(req()), PRQ_ANSWERED_FAILURE);
    assert.deepEqual(d.sent.map(said), [[PRG_RESPONSE_FAILURE, 0x99, 7, DEV]]);
    assert.equal(d.pqt(), 0);
    assert.deepEqual(d.fault(0), [cause, 9, DEV, 1, 0x99, 1, 4n]);
  };
  await t.step("ddtp Off (256)", () => {
    const d = rig();
    d.iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(RISCV_IOMMU_DDTP_IOMMU_MODE_OFF));
    check(d, 256);
  });
  await t.step("DDT entry load access fault (257)", () => {
    const d = rig();
    d.mem.injectFault(d.ddt.ddteAddr(DEV, 2), 8);
    d.iommu.translator.flushAll();
    check(d, 257);
  });
  await t.step("DDT entry not valid (258): an unknown device", () => {
    const d = rig();
    d.ddt.set(DEV, { invalid: true });
    d.iommu.translator.flushAll();
    check(d, 258);
  });
  await t.step("DDT entry misconfigured (259)", () => {
    const d = rig(PRI | RISCV_IOMMU_DC_TC_DTF);
    d.ddt.set(DEV, { tc: RISCV_IOMMU_DC_TC_EN_PRI }); // EN_PRI without EN_ATS
    d.iommu.translator.flushAll();
    check(d, 259);
  });
});

Deno.test("automatic responses for cause 260: Invalid Request, PASID only per PRPR (spec §2.7, PCIe ATS Page Request handling)", async (t) => {
  await t.step("ddtp Bare: no DC, so PRPR is taken as 0", () => {
    const d = rig();
    d.iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(RISCV_IOMMU_DDTP_IOMMU_MODE_BARE));
    assert.equal(d.iommu.pageRequest(req()), PRQ_ANSWERED_INVALID);
    assert.deepEqual(d.sent.map(said), [[PRG_RESPONSE_INVALID, -1, 7, DEV]]);
    assert.deepEqual(d.fault(0), [260, 9, DEV, 1, 0x99, 1, 4n]);
  });
  await t.step("EN_PRI=0 (EN_ATS=1): Invalid Request, the fault is logged", () => {
    const d = rig(RISCV_IOMMU_DC_TC_EN_ATS);
    assert.equal(d.iommu.pageRequest(req()), PRQ_ANSWERED_INVALID);
    assert.deepEqual(d.sent.map(said), [[PRG_RESPONSE_INVALID, -1, 7, DEV]]);
    assert.deepEqual(d.fault(0)[0], 260);
  });
  await t.step("EN_ATS=EN_PRI=0: Invalid Request; with DTF the fault is not logged", () => {
    const d = rig(RISCV_IOMMU_DC_TC_DTF);
    assert.equal(d.iommu.pageRequest(req()), PRQ_ANSWERED_INVALID);
    assert.equal(d.fqt(), 0);
  });
  await t.step("a device_id too wide for a 1LVL directory: Invalid Request without PASID", () => {
    const d = testIommuDevice({ mode: 2 });
    const sent: PageGroupResponse[] = [];
    d.iommu.atsPort = { invalidate: () => ATS_INVAL_SENT, pageResponse: (r) => void sent.push(r) };
    assert.equal(d.iommu.pageRequest(req({ deviceId: 0x100 })), PRQ_ANSWERED_INVALID);
    assert.deepEqual(sent.map(said), [[PRG_RESPONSE_INVALID, -1, 7, 0x100]]);
  });
});

Deno.test("automatic responses when the PQ cannot take the record: disabled or pqmf → Response Failure, full or pqof → Success; no fault logged (spec §2.7; §3.3)", async (t) => {
  await t.step("PQ disabled (pqen=0): Response Failure with the PASID even with PRPR=0", () => {
    const d = rig();
    d.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, 0);
    assert.equal(d.iommu.pageRequest(req()), PRQ_ANSWERED_FAILURE);
    assert.deepEqual(d.sent.map(said), [[PRG_RESPONSE_FAILURE, 0x99, 7, DEV]]);
    assert.equal(d.fqt(), 0);
  });
  await t.step(
    "pqmf: set by the faulting store, then Response Failure until software clears it",
    () => {
      const d = rig();
      d.mem.injectFault(d.pq, 16, MEM_ACCESS_FAULT, "write");
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 1 })), PRQ_ANSWERED_FAILURE);
      assert.ok(d.pqcsr() & R.RISCV_IOMMU_PQCSR_PQMF);
      assert.equal(
        d.iommu.read32(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_PIP,
        8,
        "pip on pqmf",
      );
      d.mem.clearFaults();
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 2 })), PRQ_ANSWERED_FAILURE);
      d.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, d.pqcsr());
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 3 })), PRQ_QUEUED);
      assert.deepEqual(d.sent.map((r) => r.prgIndex), [1, 2]);
      assert.equal(d.fqt(), 0);
    },
  );
  await t.step(
    "full queue: pqof, Success with the PASID per PRPR, until software clears pqof",
    () => {
      const d = rig(PRI | RISCV_IOMMU_DC_TC_PRPR, { pqLog2Sz: 1 });
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 1 })), PRQ_QUEUED);
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 2 })), PRQ_ANSWERED_SUCCESS);
      assert.ok(d.pqcsr() & R.RISCV_IOMMU_PQCSR_PQOF);
      assert.equal(d.takePageRequests().length, 1, "software makes room");
      assert.equal(
        d.iommu.pageRequest(req({ prgIndex: 3 })),
        PRQ_ANSWERED_SUCCESS,
        "pqof still set",
      );
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 4, last: false })), PRQ_DISCARDED);
      assert.equal(d.iommu.pageRequest(req(STOP)), PRQ_DISCARDED);
      d.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, d.pqcsr());
      assert.equal(d.iommu.pageRequest(req({ prgIndex: 5 })), PRQ_QUEUED);
      assert.deepEqual(d.sent.map(said), [
        [PRG_RESPONSE_SUCCESS, 0x99, 2, DEV],
        [PRG_RESPONSE_SUCCESS, 0x99, 3, DEV],
      ]);
      assert.equal(d.fqt(), 0);
    },
  );
  await t.step("PRPR=0: the Success goes without the PASID", () => {
    const d = rig(PRI, { pqLog2Sz: 1 });
    d.iommu.pageRequest(req());
    d.iommu.pageRequest(req());
    assert.deepEqual(d.sent.map(said), [[PRG_RESPONSE_SUCCESS, -1, 7, DEV]]);
  });
});

Deno.test("messages that need no response are discarded when not queued: L=0 and Stop Markers, in every case (spec §2.7, PCIe ATS Page Request handling)", () => {
  const setups: [string, (d: ReturnType<typeof rig>) => void][] = [
    ["Off", (d) => d.iommu.write64(R.RISCV_IOMMU_REG_DDTP, 0n)],
    ["Bare", (d) => d.iommu.write64(R.RISCV_IOMMU_REG_DDTP, 1n)],
    ["EN_PRI=0", (d) => {
      d.ddt.set(DEV, { tc: RISCV_IOMMU_DC_TC_EN_ATS });
      d.iommu.translator.flushAll();
    }],
    ["PQ off", (d) => d.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, 0)],
  ];
  for (const [name, setup] of setups) {
    const d = rig();
    setup(d);
    assert.equal(d.iommu.pageRequest(req({ last: false })), PRQ_DISCARDED, name);
    assert.equal(d.iommu.pageRequest(req(STOP)), PRQ_DISCARDED, name);
    assert.equal(d.sent.length, 0, name);
  }
  const d = rig();
  d.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, 0);
  assert.equal(
    d.iommu.pageRequest(req({ ...STOP, pidValid: false })),
    PRQ_ANSWERED_FAILURE,
    "L=1, R=W=0 without a PASID is no Stop Marker: it is answered",
  );
});

Deno.test("PQ overflow: a 2-entry queue and a burst of 8 groups, every group queued or answered exactly once; after pqof clears nothing is lost (spec §3.3, Page-Request-Queue)", () => {
  const d: TestIommuDevice & ReturnType<typeof rig> = rig(PRI, { pqLog2Sz: 1 });
  const outcomes = [];
  for (let g = 0; g < 8; g++) outcomes.push(d.iommu.pageRequest(req({ prgIndex: g })));
  assert.deepEqual(outcomes, [PRQ_QUEUED, ...Array(7).fill(PRQ_ANSWERED_SUCCESS)]);
  const queued = d.takePageRequests().map(([, d1]) => Number(d1 >> 3n & 0x1ffn));
  const answered = d.sent.map((r) => r.prgIndex);
  assert.deepEqual([...queued, ...answered].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
  // Software recovers: clears pqof; the next burst is queued one record at a time.
  d.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, d.pqcsr());
  assert.equal(d.pqcsr() & R.RISCV_IOMMU_PQCSR_PQOF, 0);
  for (let g = 8; g < 12; g++) {
    assert.equal(d.iommu.pageRequest(req({ prgIndex: g })), PRQ_QUEUED);
    assert.deepEqual(d.takePageRequests().map(([, d1]) => Number(d1 >> 3n & 0x1ffn)), [g]);
  }
  assert.equal(d.sent.length, 7);
});
