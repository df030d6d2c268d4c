import assert from "node:assert/strict";
import fc from "fast-check";
import { Clock } from "./clock.ts";
import { CPL_CA, CPL_UR } from "./iommu/request.ts";
import {
  PRG_RESPONSE_FAILURE,
  PRG_RESPONSE_INVALID,
  PRG_RESPONSE_SUCCESS,
  PRQ_ANSWERED_SUCCESS,
} from "./iommu/page_request.ts";
import * as R from "./iommu/regs.ts";
import {
  PTE_U,
  PTE_X,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_EN_PRI,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_DC_TC_PRPR,
} from "./iommu/structs.ts";
import {
  PCI_ATS_CTRL_ENABLE,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PASID_CTRL_PRIV,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_UPRGI,
} from "./pcie/config.ts";
import { PCIE_MMIO_BASE, RootComplex } from "./pcie/root_complex.ts";
import {
  encodeAtp,
  encodeDcTa,
  encodePcTa,
  PageTableBuilder,
  PdtBuilder,
  TEST_PTE_RW_USER,
  testIommuDevice,
} from "./testing.ts";
import {
  DMAE_CH_BASE,
  DMAE_CH_CMD,
  DMAE_CH_DST_HI,
  DMAE_CH_DST_LO,
  DMAE_CH_ERR_ADDR_LO,
  DMAE_CH_ERR_CAUSE,
  DMAE_CH_ERR_CPL,
  DMAE_CH_LEN,
  DMAE_CH_PASID,
  DMAE_CH_PATTERN,
  DMAE_CH_SRC_HI,
  DMAE_CH_SRC_LO,
  DMAE_CH_STATUS,
  DMAE_CH_STRIDE,
  DMAE_CH_XFERRED,
  DMAE_CMD_GO,
  DMAE_ERR_ATS,
  DMAE_ERR_PRI_FAILURE,
  DMAE_ERR_PRI_INVALID,
  DMAE_ERR_READ,
  DMAE_ERR_STOPPED,
  DMAE_OP_COPY,
  DMAE_OP_FILL,
  DMAE_PASID_EXEC,
  DMAE_PASID_PRIV,
  DMAE_PASID_PV,
  DMAE_PASID_STOP_GO,
  DMAE_REG_PASID_STOP,
  DMAE_STATUS_BUSY,
  DMAE_STATUS_DONE,
  DMAE_STATUS_ERR_SHIFT,
  DMAE_STATUS_ERROR,
  DMAE_STATUS_PRI_WAIT,
  DmaEngine,
  type DmaEngineOptions,
} from "./dma_engine.ts";

const BAR = PCIE_MMIO_BASE;
const PID = 5;
/** IOVA `a` maps to physical DATA + a. */
const DATA = 0x4_0000_0000;
const SUPERVISOR = TEST_PTE_RW_USER & ~PTE_U;
const reg = (ch: number, r: number) => BAR + DMAE_CH_BASE + ch * DMAE_CH_STRIDE + r;

/** One page request record as software reads it from the PQ. */
interface Rec {
  did: number;
  pv: boolean;
  pid: number;
  priv: boolean;
  exec: boolean;
  read: boolean;
  write: boolean;
  last: boolean;
  prgi: number;
  addr: number;
}

function decode([d0, d1]: [bigint, bigint]): Rec {
  return {
    did: Number(d0 >> 40n),
    pv: (d0 >> 32n & 1n) === 1n,
    pid: Number(d0 >> 12n & 0xfffffn),
    priv: (d0 >> 33n & 1n) === 1n,
    exec: (d0 >> 34n & 1n) === 1n,
    read: (d1 & 1n) === 1n,
    write: (d1 & 2n) === 2n,
    last: (d1 & 4n) === 4n,
    prgi: Number(d1 >> 3n & 0x1ffn),
    addr: Number(d1 & ~0xfffn),
  };
}

interface RigOptions {
  /** DC.tc (default EN_ATS | EN_PRI | PRPR, plus PDTV). */
  tc?: number;
  /** Outstanding Page Request Allocation software programs (default 32). */
  alloc?: number;
  /** PQ size, log2 (default 4). */
  pqLog2Sz?: number;
  /** Engine PRI options. */
  pri?: DmaEngineOptions["pri"];
}

/**
 * The silicon with a "driver" written in the test: an IOMMU whose DC for the engine has EN_ATS,
 * EN_PRI and PRPR and a PD8 process directory (PASID 5 → an Sv39 table, PC.ENS set) with DPE for
 * transfers without a PASID; the engine's ATS, PASID (privileged, execute) and PRI enabled. The
 * PQ handler `serve` maps what page requests ask for (or answers as `policy` says) and sends
 * ATS.PRGR through the command queue.
 */
function rig(o: RigOptions = {}) {
  const clock = new Clock();
  const d = testIommuDevice({ clock, pqLog2Sz: o.pqLog2Sz });
  const rc = new RootComplex({
    mem: d.mem,
    clock,
    translator: d.iommu,
    pageRequestPort: d.iommu,
  });
  d.iommu.atsPort = rc.atsPort;
  const dma = new DmaEngine({ clock, channels: 4, ats: true, pasid: true, pri: o.pri ?? true });
  const fn = dma.fn;
  const bdf = rc.attach(fn, 4);
  fn.configWrite32(PCI_BASE_ADDRESS_0, BAR);
  fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0);
  fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  fn.configWrite32(fn.atsCap + 4, PCI_ATS_CTRL_ENABLE << 16);
  fn.configWrite32(
    fn.pasidCap + 4,
    (PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_PRIV | PCI_PASID_CTRL_EXEC) << 16,
  );
  fn.configWrite32(fn.priCap + PCI_PRI_ALLOC_REQ, o.alloc ?? 32);
  fn.configWrite32(fn.priCap + PCI_PRI_CTRL, PCI_PRI_CTRL_ENABLE);
  const pt = new PageTableBuilder(d.mem, d.alloc, "sv39");
  const pdt = new PdtBuilder(d.mem, d.alloc, 1);
  for (const pid of [0, PID]) pdt.set(pid, encodePcTa(1, { ens: true }), encodeAtp(8, pt.root));
  d.ddt.set(bdf, {
    tc: (o.tc ?? RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_EN_PRI | RISCV_IOMMU_DC_TC_PRPR) |
      RISCV_IOMMU_DC_TC_PDTV | 1 << 9, // DPE
    ta: encodeDcTa(0),
    fsc: encodeAtp(1, pdt.root),
  });
  const map = (iova: number, pages = 1, flags = TEST_PTE_RW_USER) => {
    for (let i = 0; i < pages; i++) pt.map(iova + i * 4096, DATA + iova + i * 4096, { flags });
  };
  const records: Rec[] = [];
  const partial = new Map<number, Rec[]>();
  /** Groups the handler saw, in order, and the code it answered each with. */
  const groups: { recs: Rec[]; code: number }[] = [];
  let policy = (recs: Rec[]): number => {
    // A privileged request needs a supervisor page (PC.SUM is 0).
    for (const r of recs) {
      map(r.addr, 1, (r.priv ? SUPERVISOR : TEST_PTE_RW_USER) | (r.exec ? PTE_X : 0));
    }
    return PRG_RESPONSE_SUCCESS;
  };
  /** The PQ handler: collects each group until its last request, then answers it. */
  const serve = () => {
    for (const raw of d.takePageRequests()) {
      const r = decode(raw);
      records.push(r);
      const g = [...(partial.get(r.prgi) ?? []), r];
      if (!r.last) {
        partial.set(r.prgi, g);
        continue;
      }
      partial.delete(r.prgi);
      if (!r.read && !r.write) continue; // a Stop Marker needs no answer
      const code = policy(g);
      groups.push({ recs: g, code });
      const pv = r.pv ? 1n << 32n | BigInt(r.pid) << 12n : 0n;
      d.command(
        4n | 1n << 7n | pv | BigInt(r.did) << 40n,
        BigInt(r.prgi) << 32n | BigInt(code) << 44n | BigInt(r.did) << 48n,
      );
    }
  };
  const status = (ch: number) => d.mem.read32(reg(ch, DMAE_CH_STATUS));
  /** Serves page requests and lets time pass until every channel is idle; their statuses. */
  const run = (onStep = () => {}) => {
    for (let i = 0; i < 100_000; i++) {
      onStep();
      serve();
      if ([0, 1, 2, 3].every((c) => (status(c) & DMAE_STATUS_BUSY) === 0)) break;
      const queued =
        d.iommu.read32(R.RISCV_IOMMU_REG_PQH) !== d.iommu.read32(R.RISCV_IOMMU_REG_PQT);
      if (!clock.advanceToNextEvent() && !queued) break;
    }
    return [0, 1, 2, 3].map(status);
  };
  /** Programs channel `ch` and sets GO. */
  const start = (
    ch: number,
    op: number,
    dst: number,
    len: number,
    srcOrPattern: number,
    pasid = DMAE_PASID_PV | PID,
  ) => {
    const w = (r: number, v: number) => d.mem.write32(reg(ch, r), v);
    w(DMAE_CH_DST_LO, dst);
    w(DMAE_CH_DST_HI, 0);
    w(DMAE_CH_LEN, len);
    w(op === DMAE_OP_COPY ? DMAE_CH_SRC_LO : DMAE_CH_PATTERN, srcOrPattern);
    w(DMAE_CH_SRC_HI, 0);
    w(DMAE_CH_PASID, pasid);
    w(DMAE_CH_CMD, DMAE_CMD_GO | op);
  };
  return {
    ...d,
    clock,
    rc,
    dma,
    fn,
    bdf,
    pt,
    map,
    records,
    groups,
    serve,
    run,
    start,
    status,
    setPolicy: (p: typeof policy) => (policy = p),
    reg: (ch: number, r: number) => d.mem.read32(reg(ch, r)),
  };
}

const err = (code: number) => DMAE_STATUS_ERROR | code << DMAE_STATUS_ERR_SHIFT;

Deno.test("device retry loop: a copy into 64 absent pages sends page request groups, waits, and resumes on Success; the data lands in the pages software populated (PCIe PRI; spec §2.7, PCIe ATS Page Request handling)", () => {
  const r = rig();
  const src = 0x100_0000, dst = 0x200_0000, len = 64 * 4096;
  r.map(src, 64, SUPERVISOR);
  const data = new Uint8Array(len).map((_, i) => (i * 7 + 3) & 0xff);
  r.mem.writeBytes(DATA + src, data);
  r.start(0, DMAE_OP_COPY, dst, len, src, DMAE_PASID_PV | DMAE_PASID_PRIV | PID);
  let waited = false;
  const st = r.run(() => waited ||= (r.status(0) & DMAE_STATUS_PRI_WAIT) !== 0);
  assert.equal(st[0], DMAE_STATUS_DONE);
  assert.ok(waited, "STATUS.PRI_WAIT showed while a group was outstanding");
  assert.equal(r.reg(0, DMAE_CH_XFERRED), len);
  assert.deepEqual(r.mem.readBytes(DATA + dst, len), data, "every page where software put it");
  assert.equal(r.groups.length, 8, "groups of DMAE_PRG_MAX_PAGES = 8 pages");
  for (const { recs } of r.groups) {
    assert.equal(recs.length, 8);
    assert.ok(recs.every((x) => x.pv && x.pid === PID && x.priv && x.write && !x.read));
    assert.ok(recs.every((x, i) => x.last === (i === 7) && x.prgi === recs[0].prgi));
    assert.ok(recs.every((x, i) => x.addr === recs[0].addr + i * 4096 && x.did === r.bdf));
  }
  assert.deepEqual(
    r.groups.map((g) => g.recs[0].addr),
    [...Array(8)].map((_, i) => dst + i * 32768),
  );
  assert.equal(r.fn.priOutstanding, 0);
});

Deno.test("page requests ask R for reads, with EXEC (and a PASID) Execute Requested too; a transfer without a PASID sends requests without one", async (t) => {
  await t.step("COPY with EXEC: R and EXEC, the page mapped executable, the copy completes", () => {
    const r = rig();
    r.map(0x300_0000, 1);
    r.mem.write32(DATA + 0x10_0000, 0x1234_5678);
    r.start(
      0,
      DMAE_OP_COPY,
      0x300_0000,
      4096,
      0x10_0000,
      DMAE_PASID_PV | DMAE_PASID_EXEC | PID,
    );
    assert.equal(r.run()[0], DMAE_STATUS_DONE);
    assert.deepEqual(
      r.records.map((x) => [x.read, x.write, x.exec, x.pv]),
      [[true, false, true, true]],
    );
    assert.equal(r.mem.read32(DATA + 0x300_0000), 0x1234_5678);
  });
  await t.step("FILL without a PASID: W, no PASID, no PRIV", () => {
    const r = rig();
    r.start(1, DMAE_OP_FILL, 0x40_0000, 2 * 4096, 0xabab_abab, 0);
    assert.equal(r.run()[1], DMAE_STATUS_DONE);
    assert.deepEqual(
      r.records.map((x) => [x.write, x.pv, x.priv, x.last]),
      [[true, false, false, false], [true, false, false, true]],
    );
    assert.equal(r.mem.read32(DATA + 0x40_1ffc), 0xabab_abab);
  });
});

Deno.test("Invalid Request fails the transfer with PRI_INVALID at the page asked for; Response Failure with PRI_FAILURE, the function's RF set and its PRI stopped (PCIe PRI)", async (t) => {
  await t.step("Invalid Request", () => {
    const r = rig();
    r.map(0x50_0000, 1);
    r.setPolicy(() => PRG_RESPONSE_INVALID);
    r.start(0, DMAE_OP_FILL, 0x50_0000, 3 * 4096, 0);
    assert.equal(r.run()[0], err(DMAE_ERR_PRI_INVALID));
    assert.equal(r.reg(0, DMAE_CH_XFERRED), 4096);
    assert.equal(r.reg(0, DMAE_CH_ERR_ADDR_LO), 0x50_1000);
  });
  await t.step("Response Failure", () => {
    const r = rig();
    r.setPolicy(() => PRG_RESPONSE_FAILURE);
    r.start(0, DMAE_OP_FILL, 0x50_0000, 4096, 0);
    assert.equal(r.run()[0], err(DMAE_ERR_PRI_FAILURE));
    const st = r.fn.configRead32(r.fn.priCap + PCI_PRI_CTRL) >>> 16;
    assert.equal(st & PCI_PRI_STATUS_RF, PCI_PRI_STATUS_RF);
    r.start(0, DMAE_OP_FILL, 0x50_0000, 4096, 0);
    assert.equal(r.run()[0], err(DMAE_ERR_ATS), "PRI stopped: a denial is final");
  });
});

Deno.test("the Outstanding Page Request Allocation bounds the groups: allocation 2, groups of at most 2 pages, a second channel waits for credits and resumes (PCIe PRI)", () => {
  const r = rig({ alloc: 2 });
  r.start(0, DMAE_OP_FILL, 0x60_0000, 4 * 4096, 0x1111_1111);
  r.start(1, DMAE_OP_FILL, 0x70_0000, 4 * 4096, 0x2222_2222);
  let most = 0;
  const st = r.run(() => (most = Math.max(most, r.fn.priOutstanding)));
  assert.deepEqual(st.slice(0, 2), [DMAE_STATUS_DONE, DMAE_STATUS_DONE]);
  assert.equal(most, 2);
  assert.ok(r.groups.every((g) => g.recs.length <= 2));
  assert.equal(r.groups.reduce((n, g) => n + g.recs.length, 0), 8);
  assert.equal(r.mem.read32(DATA + 0x70_3ffc), 0x2222_2222);
});

Deno.test("the IOMMU's automatic responses reach the device: EN_PRI=0 → Invalid Request → PRI_INVALID; PQ disabled → Response Failure → PRI_FAILURE (spec §2.7, PCIe ATS Page Request handling)", async (t) => {
  await t.step("EN_PRI=0", () => {
    const r = rig({ tc: RISCV_IOMMU_DC_TC_EN_ATS });
    r.start(0, DMAE_OP_FILL, 0x50_0000, 4096, 0, 0);
    assert.equal(r.run()[0], err(DMAE_ERR_PRI_INVALID));
    assert.equal(r.records.length, 0);
  });
  await t.step(
    "EN_PRI=0 (so PRPR=0) with a PASID: the response lacks the PASID the function requires: UPRGI, the channel keeps waiting",
    () => {
      const r = rig({ tc: RISCV_IOMMU_DC_TC_EN_ATS });
      r.start(0, DMAE_OP_FILL, 0x50_0000, 4096, 0);
      assert.equal(r.run()[0], DMAE_STATUS_BUSY | DMAE_STATUS_PRI_WAIT);
      const st = r.fn.configRead32(r.fn.priCap + PCI_PRI_CTRL) >>> 16;
      assert.equal(st & PCI_PRI_STATUS_UPRGI, PCI_PRI_STATUS_UPRGI);
    },
  );
  await t.step("PQ disabled", () => {
    const r = rig();
    r.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, 0);
    r.start(0, DMAE_OP_FILL, 0x50_0000, 4096, 0);
    assert.equal(r.run()[0], err(DMAE_ERR_PRI_FAILURE));
  });
});

Deno.test("PQ overflow: the IOMMU answers Success for what it dropped, the device retries after a pause, and once software clears pqof every group is queued and answered exactly once (spec §3.3, Page-Request-Queue)", () => {
  const r = rig({ pqLog2Sz: 1, pri: { maxGroupPages: 1 } });
  const outcomes: number[] = [];
  const iommu = r.iommu;
  r.rc.pageRequestPort = {
    pageRequest: (pr) => {
      const o = iommu.pageRequest(pr);
      outcomes.push(o);
      return o;
    },
  };
  for (let c = 0; c < 4; c++) r.start(c, DMAE_OP_FILL, 0x80_0000 + c * 0x10_0000, 2 * 4096, c);
  let overflowed = false;
  const st = r.run(() => {
    const csr = r.iommu.read32(R.RISCV_IOMMU_REG_PQCSR);
    if (csr & R.RISCV_IOMMU_PQCSR_PQOF) {
      overflowed = true;
      r.iommu.write32(R.RISCV_IOMMU_REG_PQCSR, csr); // software recovers: RW1C
    }
  });
  assert.ok(overflowed, "a burst of four overflows a one-record queue");
  assert.deepEqual(st, [DMAE_STATUS_DONE, DMAE_STATUS_DONE, DMAE_STATUS_DONE, DMAE_STATUS_DONE]);
  assert.equal(r.groups.length, 8, "each of the 8 pages was queued and answered once");
  const keys = r.groups.map((g) => g.recs[0].addr);
  assert.equal(new Set(keys).size, 8);
  const auto = outcomes.filter((o) => o === PRQ_ANSWERED_SUCCESS).length;
  assert.ok(auto > 0, "the IOMMU answered Success for groups it could not queue");
  assert.equal(outcomes.length, auto + 8, "every group sent was answered exactly once");
  for (let c = 0; c < 4; c++) assert.equal(r.mem.read32(DATA + 0x80_1ffc + c * 0x10_0000), c);
});

Deno.test("PASID_STOP ends the PASID's transfers with STOPPED and sends a Stop Marker after its page requests; the late response is ignored", () => {
  const r = rig();
  r.map(0x91_0000, 2);
  r.start(0, DMAE_OP_FILL, 0x90_0000, 4096, 0);
  r.start(1, DMAE_OP_FILL, 0x91_0000, 2 * 4096, 0x33, 0);
  r.clock.advanceToNextEvent();
  assert.ok(r.status(0) & DMAE_STATUS_PRI_WAIT);
  const pending = r.takePageRequests().map(decode);
  assert.equal(pending.length, 1);
  r.mem.write32(BAR + DMAE_REG_PASID_STOP, DMAE_PASID_STOP_GO | PID);
  assert.equal(r.mem.read32(BAR + DMAE_REG_PASID_STOP), PID);
  assert.deepEqual(
    r.takePageRequests().map(decode).map((x) => [x.pv, x.pid, x.last, x.read, x.write]),
    [[true, PID, true, false, false]],
  );
  r.clock.advance(0);
  assert.equal(r.status(0), err(DMAE_ERR_STOPPED));
  // Software answers the group it had read before the stop: the channel is done with it.
  const g = pending[0];
  r.command(
    4n | 1n << 7n | 1n << 32n | BigInt(PID) << 12n | BigInt(g.did) << 40n,
    BigInt(g.prgi) << 32n | BigInt(g.did) << 48n,
  );
  assert.equal(r.fn.priOutstanding, 0, "the answer frees its credit");
  r.clock.advance(0);
  assert.equal(r.status(0), err(DMAE_ERR_STOPPED));
  assert.equal(r.run()[1], DMAE_STATUS_DONE, "a transfer without that PASID goes on");
  assert.equal(r.mem.read32(DATA + 0x91_1ffc), 0x33);
});

Deno.test("ERR_CPL reports the completion status of the aborted request: UR for EN_ATS=0 (260), CA for a PDT load fault (265) (spec §2.6, PCIe ATS translation request handling)", async (t) => {
  await t.step("UR", () => {
    const r = rig({ tc: 0 });
    r.start(0, DMAE_OP_COPY, 0x50_0000, 4096, 0x10_0000);
    assert.equal(r.run()[0], err(DMAE_ERR_READ));
    assert.deepEqual([r.reg(0, DMAE_CH_ERR_CAUSE), r.reg(0, DMAE_CH_ERR_CPL)], [260, CPL_UR]);
  });
  await t.step("CA", () => {
    const r = rig();
    const dc = r.ddt.dcAddr(r.bdf);
    r.mem.injectFault(Number(r.mem.read64(dc + 24) & 0xfff_ffff_ffffn) * 4096, 4096);
    r.start(0, DMAE_OP_COPY, 0x50_0000, 4096, 0x10_0000);
    assert.equal(r.run()[0], err(DMAE_ERR_READ));
    assert.deepEqual([r.reg(0, DMAE_CH_ERR_CAUSE), r.reg(0, DMAE_CH_ERR_CPL)], [265, CPL_CA]);
  });
});

Deno.test("guest-controlled input never throws: random descriptors, PASID stops, PRI control writes and response codes (property)", () => {
  const runs = Number(Deno.env.get("DMAE_PRI_PROP_RUNS") ?? 60);
  const op = fc.oneof(
    fc.tuple(
      fc.constant("go" as const),
      fc.nat(3),
      fc.nat(3),
      fc.nat(0x20_0000),
      fc.nat(5 * 4096),
      fc.nat(),
    ),
    fc.tuple(fc.constant("stop" as const), fc.nat(7)),
    fc.tuple(fc.constant("pri" as const), fc.nat(0xffff), fc.nat(40)),
    fc.tuple(fc.constant("code" as const), fc.nat(15)),
    fc.tuple(fc.constant("time" as const), fc.nat(50_000)),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const r = rig();
      let code = PRG_RESPONSE_SUCCESS;
      r.setPolicy((recs) => {
        for (const x of recs) r.map(x.addr, 1, x.priv ? SUPERVISOR : TEST_PTE_RW_USER);
        return code;
      });
      for (const o of ops) {
        if (o[0] === "go") {
          const pasid = [0, DMAE_PASID_PV | PID, DMAE_PASID_PV | DMAE_PASID_PRIV | PID, o[5]][o[2]];
          r.start(
            o[1],
            (o[5] & 3) || DMAE_OP_FILL,
            o[3] * 4096 + (o[5] & 0xfff),
            o[4],
            0x10_0000,
            pasid,
          );
        } else if (o[0] === "stop") {
          r.mem.write32(BAR + DMAE_REG_PASID_STOP, DMAE_PASID_STOP_GO | o[1]);
        } else if (o[0] === "pri") {
          r.fn.configWrite32(r.fn.priCap + PCI_PRI_ALLOC_REQ, o[2]);
          r.fn.configWrite32(r.fn.priCap + PCI_PRI_CTRL, o[1] * 0x10001);
        } else if (o[0] === "code") {
          code = o[1];
        } else {
          r.clock.advance(o[1]);
          r.serve();
        }
      }
      for (const st of r.run()) {
        assert.ok((st & DMAE_STATUS_BUSY) === 0 || (st & DMAE_STATUS_PRI_WAIT) !== 0, `${st}`);
      }
    }),
    { numRuns: runs, seed: 10 },
  );
});
