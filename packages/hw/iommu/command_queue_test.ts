import assert from "node:assert/strict";
import { MEM_ACCESS_FAULT, PhysicalMemory } from "../memory.ts";
import { type IommuCaps, resolveCaps } from "./caps.ts";
import { Clock } from "../clock.ts";
import {
  ATS_INVAL_BUSY,
  ATS_INVAL_SENT,
  type AtsInvalidation,
  type AtsPort,
  CMD_FENCE_W_IP,
  CMD_ILLEGAL,
  CMD_MEM_FAULT,
  CMD_OK,
  CommandUnit,
  type Invalidator,
  type PageGroupResponse,
} from "./command_queue.ts";
import { Iommu, type IommuOptions } from "./iommu.ts";
import * as R from "./regs.ts";
import { newRequest, newResult } from "./request.ts";

const RAM = 0x8000_0000;

/** An Invalidator that records its calls. */
function recorder(): Invalidator & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    invalDdt: (...a) => void calls.push(["ddt", ...a]),
    invalPdt: (...a) => void calls.push(["pdt", ...a]),
    iotinvalVma: (...a) => void calls.push(["vma", ...a]),
    iotinvalGvma: (...a) => void calls.push(["gvma", ...a]),
  };
}

function unit(caps: Partial<IommuCaps> = {}) {
  const mem = new PhysicalMemory();
  mem.addRam(0, 2 ** 20);
  const inval = recorder();
  const cu = new CommandUnit(mem, resolveCaps(caps), inval);
  return { mem, inval, cu };
}

const bits = (...b: number[]) => b.reduce((m, i) => m | 1n << BigInt(i), 0n);
const range = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);

Deno.test("IOTINVAL.VMA and .GVMA hand every operand to the caches (spec §3.1, Command-Queue)", async (t) => {
  await t.step("VMA with GV, AV, PSCV, GSCID, PSCID and a 52-bit ADDR", () => {
    const { cu, inval } = unit();
    const d0 = 1n | R.RISCV_IOMMU_CMD_IOTINVAL_AV | 0xabcden << 12n |
      R.RISCV_IOMMU_CMD_IOTINVAL_PSCV | R.RISCV_IOMMU_CMD_IOTINVAL_GV | 0xbeefn << 44n;
    assert.equal(cu.execute(d0, 0x1234_5678_9n << 10n, 0), CMD_OK);
    assert.equal(cu.execute(1n, 0xf_ffff_ffff_ffffn << 10n, 0), CMD_OK);
    assert.deepEqual(inval.calls, [
      ["vma", true, true, true, 0xbeef, 0xabcde, 0x5678_9000, 0x1234, false, false],
      ["vma", false, false, false, 0, 0, 0xffff_f000, 0xffff_ffff, false, false],
    ]);
  });
  await t.step("GVMA; PSCV=1 is illegal", () => {
    const { cu, inval } = unit();
    const d0 = 1n | 1n << 7n | R.RISCV_IOMMU_CMD_IOTINVAL_AV | R.RISCV_IOMMU_CMD_IOTINVAL_GV |
      7n << 44n;
    assert.equal(cu.execute(d0, 0x80n << 10n, 0), CMD_OK);
    assert.equal(cu.execute(d0 | R.RISCV_IOMMU_CMD_IOTINVAL_PSCV, 0n, 0), CMD_ILLEGAL);
    assert.deepEqual(inval.calls, [["gvma", true, true, 7, 0x80000, 0, false, false]]);
  });
  await t.step("NL and S are legal only with capabilities.NL / capabilities.S", () => {
    const NL = R.RISCV_IOMMU_CMD_IOTINVAL_NL, S = R.RISCV_IOMMU_CMD_IOTINVAL_S;
    assert.equal(unit().cu.execute(1n | NL, 0n, 0), CMD_ILLEGAL);
    assert.equal(unit().cu.execute(1n, S, 0), CMD_ILLEGAL);
    const { cu, inval } = unit({ nl: true, s: true });
    assert.equal(cu.execute(1n | 1n << 7n | NL, S, 0), CMD_OK);
    assert.deepEqual(inval.calls, [["gvma", false, false, 0, 0, 0, true, true]]);
  });
});

Deno.test("any reserved bit set makes a command illegal; every defined bit is accepted (spec §3.1, Command-Queue)", async (t) => {
  // [name, dword0 of a legal command, reserved bits of dword0 (above func3), of dword1]
  const cases: [string, bigint, number[], number[]][] = [
    ["IOTINVAL.VMA", 1n, [11, ...range(34, 43), ...range(60, 63)], [...range(0, 9), 62, 63]],
    ["IOTINVAL.GVMA", 1n | 1n << 7n, [11, 32, ...range(34, 43), ...range(60, 63)], [
      ...range(0, 9),
      62,
      63,
    ]],
    ["IOFENCE.C", 2n, [11, ...range(14, 31)], [62, 63]],
    ["IODIR.INVAL_DDT", 3n, [10, 11, ...range(12, 31), 32, ...range(34, 39)], range(0, 63)],
    ["IODIR.INVAL_PDT", 3n | 1n << 7n | bits(33), [10, 11, 32, 33, ...range(34, 39)], range(0, 63)],
    ["ATS.INVAL", 4n, [10, 11, ...range(34, 39)], []],
    ["ATS.PRGR", 4n | 1n << 7n, [10, 11, ...range(34, 39)], []],
  ];
  for (const [name, d0, rsvd0, rsvd1] of cases) {
    await t.step(name, () => {
      const { cu } = unit();
      assert.equal(cu.execute(d0, 0n, 0), CMD_OK, "the base command is legal");
      for (let b = 10; b < 64; b++) {
        const illegal = rsvd0.includes(b);
        const r = cu.execute(d0 ^ 1n << BigInt(b), 0n, 0);
        assert.equal(r === CMD_ILLEGAL, illegal, `${name} dword0 bit ${b}`);
      }
      for (let b = 0; b < 64; b++) {
        const r = cu.execute(d0, 1n << BigInt(b), 0);
        assert.equal(r === CMD_ILLEGAL, rsvd1.includes(b), `${name} dword1 bit ${b}`);
      }
    });
  }
  await t.step("IOFENCE.C WSI is legal when fctl.WSI=1", () => {
    const { cu } = unit();
    assert.equal(cu.execute(2n | bits(11), 0n, R.RISCV_IOMMU_FCTL_WSI), CMD_FENCE_W_IP);
  });
});

Deno.test("reserved opcodes and func3 values, custom opcodes and ATS without capabilities.ATS are illegal", () => {
  const { cu } = unit();
  const legal = new Set(["1.0", "1.1", "2.0", "3.0", "3.1", "4.0", "4.1"]);
  for (let op = 0; op < 128; op++) {
    for (let f = 0; f < 8; f++) {
      const d0 = BigInt(op) | BigInt(f) << 7n | (op === 3 && f === 1 ? bits(33) : 0n);
      const r = cu.execute(d0, 0n, 0);
      assert.equal(r !== CMD_ILLEGAL, legal.has(`${op}.${f}`), `opcode ${op} func3 ${f}`);
    }
  }
  const noAts = unit({ ats: false }).cu;
  assert.equal(noAts.execute(4n, 0n, 0), CMD_ILLEGAL);
  assert.equal(noAts.execute(4n | 1n << 7n, 0n, 0), CMD_ILLEGAL);
});

Deno.test("IODIR.INVAL_DDT/INVAL_PDT operands reach the directory caches", () => {
  const { cu, inval } = unit();
  assert.equal(cu.execute(3n | bits(33) | 0xabcdefn << 40n, 0n, 0), CMD_OK);
  assert.equal(cu.execute(3n, 0n, 0), CMD_OK);
  assert.equal(
    cu.execute(3n | 1n << 7n | bits(33) | 0x12n << 40n | 0xfffffn << 12n, 0n, 0),
    CMD_OK,
  );
  assert.equal(cu.execute(3n | 1n << 7n | 0x12n << 40n, 0n, 0), CMD_ILLEGAL, "INVAL_PDT with DV=0");
  assert.deepEqual(inval.calls, [
    ["ddt", true, 0xabcdef],
    ["ddt", false, 0],
    ["pdt", 0x12, 0xfffff],
  ]);
});

Deno.test("ATS.INVAL and ATS.PRGR are delivered decoded to the AtsPort", () => {
  const { cu } = unit();
  const got: (AtsInvalidation | PageGroupResponse)[] = [];
  cu.ats = {
    invalidate: (inv, done) => (got.push(inv), done(), ATS_INVAL_SENT),
    pageResponse: (rsp) => void got.push(rsp),
  };
  const d0 = 4n | 0x77n << 12n | R.RISCV_IOMMU_CMD_ATS_PV | R.RISCV_IOMMU_CMD_ATS_DSV |
    0x0108n << 40n | 0x3n << 56n;
  cu.execute(d0, 0x7fff_f000n | 1n << 11n | 1n, 0);
  cu.execute(d0 | 1n << 7n, 0x1ffn << 32n | 0xfn << 44n | 0xbeefn << 48n, 0);
  const target = { rid: 0x108, dsv: true, dseg: 3, pv: true, pid: 0x77 };
  assert.deepEqual(got, [
    { ...target, global: true, s: true, addr: 0x7fff_f000n },
    { ...target, prgIndex: 0x1ff, responseCode: 0xf, dstId: 0xbeef },
  ]);
});

Deno.test("IOFENCE.C AV stores DATA with fctl.BE endianness; a faulting store is cqmf", () => {
  const { cu, mem } = unit({ end: true });
  const fence = 2n | R.RISCV_IOMMU_CMD_IOFENCE_AV | 0x1122_3344n << 32n;
  assert.equal(cu.execute(fence, 0x100n >> 2n, 0), CMD_OK);
  assert.equal(mem.read32(0x100), 0x1122_3344);
  assert.equal(cu.execute(fence, 0x200n >> 2n, R.RISCV_IOMMU_FCTL_BE), CMD_OK);
  assert.equal(mem.read32(0x200, true), 0x1122_3344);
  assert.equal(mem.read8(0x200), 0x11, "big-endian: most significant byte first");
  mem.injectFault(0x300, 4, MEM_ACCESS_FAULT, "write");
  assert.equal(cu.execute(fence, 0x300n >> 2n, 0), CMD_MEM_FAULT);
  assert.equal(cu.execute(fence, (1n << 60n) >> 2n, 0), CMD_MEM_FAULT, "beyond PAS");
});

// -- The fetch loop, through the Iommu --

function machine(opts: Partial<IommuOptions> = {}, caps: Partial<IommuCaps> = {}) {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const iommu = new Iommu({ mem, caps, ...opts });
  const ddts: number[] = [];
  iommu.translator.invalDdt = (_dv, did) => void ddts.push(did);
  const cq = (log2 = 4, base = RAM) => {
    iommu.write64(R.RISCV_IOMMU_REG_CQB, BigInt(base / 4096) << 10n | BigInt(log2 - 1));
    iommu.write32(R.RISCV_IOMMU_REG_CQT, 0);
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
  };
  /** Writes commands at the tail and bumps cqt once. */
  const submit = (...cmds: [bigint, bigint?][]) => {
    const size = 2 ** (Number(iommu.read64(R.RISCV_IOMMU_REG_CQB) & 0x1fn) + 1);
    let t = iommu.read32(R.RISCV_IOMMU_REG_CQT);
    for (const [d0, d1 = 0n] of cmds) {
      mem.write64(RAM + t * 16, d0);
      mem.write64(RAM + t * 16 + 8, d1);
      t = (t + 1) % size;
    }
    iommu.write32(R.RISCV_IOMMU_REG_CQT, t);
  };
  const cqh = () => iommu.read32(R.RISCV_IOMMU_REG_CQH);
  const csr = () => iommu.read32(R.RISCV_IOMMU_REG_CQCSR);
  return { mem, iommu, ddts, cq, submit, cqh, csr };
}

const ddt = (did: number): [bigint] => [3n | bits(33) | BigInt(did) << 40n];
const ILL = R.RISCV_IOMMU_CQCSR_CMD_ILL, MF = R.RISCV_IOMMU_CQCSR_CQMF;
const TO = R.RISCV_IOMMU_CQCSR_CMD_TO;

Deno.test("commands run in order when cqt is written, across the ring's wrap-around", () => {
  const { cq, submit, cqh, ddts } = machine();
  cq(2);
  for (let i = 0; i < 10; i++) submit(ddt(i));
  submit(ddt(10), ddt(11), ddt(12));
  assert.deepEqual(ddts, range(0, 12));
  assert.equal(cqh(), 13 % 4);
});

Deno.test("cmd_ill leaves cqh on the bad command; clearing cmd_ill resumes without a cqt write", () => {
  const { cq, submit, cqh, csr, ddts, iommu, mem } = machine();
  cq();
  submit(ddt(1), [0x7fn], ddt(2));
  assert.deepEqual([cqh(), ddts], [1, [1]]);
  assert.ok(csr() & ILL);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_CIP, 1);
  mem.write64(RAM + 16, ddt(9)[0]);
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, csr()); // write the error bit back: RW1C
  assert.equal(csr() & ILL, 0);
  assert.deepEqual([cqh(), ddts], [3, [1, 9, 2]]);
});

Deno.test("a reserved bit in any command stops the queue with cmd_ill and cqh on that command", async (t) => {
  // [name, a legal dword0, dword1, the dword (0 or 1) and bit made reserved-illegal]
  const cases: [string, bigint, bigint, 0 | 1, number][] = [
    ["IOTINVAL.VMA", 1n, 0n, 0, 11],
    ["IOTINVAL.VMA ADDR[63:62]", 1n, 0n, 1, 63],
    ["IOTINVAL.GVMA PSCV", 1n | 1n << 7n, 0n, 0, 32],
    ["IOFENCE.C", 2n, 0n, 0, 20],
    ["IOFENCE.C WSI under fctl.WSI=0", 2n, 0n, 0, 11],
    ["IODIR.INVAL_DDT PID", 3n, 0n, 0, 12],
    ["IODIR.INVAL_PDT dword1", 3n | 1n << 7n | bits(33), 0n, 1, 0],
    ["ATS.INVAL", 4n, 0n, 0, 35],
    ["ATS.PRGR", 4n | 1n << 7n, 0n, 0, 10],
  ];
  for (const [name, d0, d1, dw, bit] of cases) {
    await t.step(name, () => {
      const { cq, submit, cqh, csr, ddts, iommu } = machine();
      cq();
      const bad: [bigint, bigint] = dw === 0
        ? [d0 | 1n << BigInt(bit), d1]
        : [d0, 1n << BigInt(bit)];
      submit(ddt(1), [d0, d1], bad, ddt(2));
      assert.deepEqual([cqh(), csr() & ILL], [2, ILL], "the legal form ran, the bad one did not");
      assert.ok(!ddts.includes(2), "nothing after it ran");
      assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_CIP, 1);
    });
  }
});

Deno.test("a command fetch fault sets cqmf and stalls until cleared", () => {
  const { cq, submit, cqh, csr, ddts, iommu, mem } = machine();
  cq();
  mem.injectFault(RAM + 16, 16, MEM_ACCESS_FAULT, "read");
  submit(ddt(1), ddt(2), ddt(3));
  assert.deepEqual([cqh(), ddts, csr() & MF], [1, [1], MF]);
  submit(ddt(4));
  assert.equal(cqh(), 1, "a cqt write does not restart a queue stopped by cqmf");
  mem.clearFaults();
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | MF);
  assert.deepEqual([cqh(), ddts.length], [4, 4]);
});

Deno.test("IOFENCE.C whose store faults sets cqmf with cqh on the fence; it retries after clearing", () => {
  const { cq, submit, cqh, csr, iommu, mem } = machine();
  cq();
  mem.injectFault(RAM + 0x8000, 4);
  submit([2n | R.RISCV_IOMMU_CMD_IOFENCE_AV | 5n << 32n, BigInt(RAM + 0x8000) >> 2n], ddt(1));
  assert.deepEqual([cqh(), csr() & MF], [0, MF]);
  mem.clearFaults();
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | MF);
  assert.equal(mem.read32(RAM + 0x8000), 5);
  assert.equal(cqh(), 2);
});

/** An AtsPort whose Invalidation Completions the test sends; `room` requests fit at a time. */
function slowPort(room = 32) {
  const dones: (() => void)[] = [];
  let outstanding = 0;
  const port: AtsPort = {
    invalidate: (_inv, done) => {
      if (outstanding >= room) return ATS_INVAL_BUSY;
      outstanding++;
      dones.push(() => (outstanding--, done()));
      return ATS_INVAL_SENT;
    },
    pageResponse: () => {},
  };
  /** Completes the oldest outstanding request. */
  const complete = () => dones.shift()!();
  return { port, complete, dones };
}

Deno.test("ATS.INVAL completes on its Invalidation Completion: cqh moves past it at once, IOFENCE.C waits for it (spec §3.1.4, IOMMU PCIe ATS commands; §3.1.2, IOFENCE.C)", () => {
  const clock = new Clock();
  const { port, complete } = slowPort();
  const { cq, submit, cqh, csr, ddts, iommu, mem } = machine({ ats: port, clock });
  cq();
  submit(
    [4n],
    [4n],
    [2n | R.RISCV_IOMMU_CMD_IOFENCE_AV | 7n << 32n, BigInt(RAM + 0x8000) >> 2n],
    ddt(1),
  );
  assert.deepEqual([cqh(), ddts, mem.read32(RAM + 0x8000)], [2, [], 0], "the fence waits");
  complete();
  assert.equal(cqh(), 2, "one ATS.INVAL still outstanding");
  complete();
  assert.deepEqual([cqh(), ddts, mem.read32(RAM + 0x8000), csr() & TO], [4, [1], 7, 0]);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQCSR) & (ILL | MF), 0);
});

Deno.test("a function with no room for an ATS.INVAL holds the command queue on it until a completion makes room (PCIe invalidate queue depth)", () => {
  const clock = new Clock();
  const { port, complete } = slowPort(1);
  const { cq, submit, cqh } = machine({ ats: port, clock });
  cq();
  submit([4n], [4n], [2n]);
  assert.equal(cqh(), 1, "the second ATS.INVAL waits for room");
  complete();
  assert.equal(cqh(), 2, "sent once the first completed; the fence waits for it");
  complete();
  assert.equal(cqh(), 3);
});

Deno.test("an ATS.INVAL with no completion within the timeout surfaces as cmd_to at the next IOFENCE.C, cqh on the fence (spec §3.1.4, IOMMU PCIe ATS commands)", async (t) => {
  await t.step("the request went out and was never completed", () => {
    const clock = new Clock();
    const { port, dones } = slowPort();
    const { cq, submit, cqh, csr, iommu, ddts } = machine({
      ats: port,
      clock,
      atsInvalTimeoutNs: 1_000_000,
    });
    cq();
    submit([4n], ddt(1), [2n], ddt(2));
    assert.deepEqual([cqh(), csr() & TO, ddts], [2, 0, [1]], "the fence waits");
    clock.advance(999_999);
    assert.equal(csr() & TO, 0);
    clock.advance(1);
    assert.deepEqual([cqh(), csr() & TO, ddts], [2, TO, [1]]);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_CIP, 1);
    dones[0]();
    assert.equal(csr() & TO, TO, "a late completion changes nothing");
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | TO);
    assert.deepEqual(
      [cqh(), csr() & TO, ddts],
      [4, 0, [1, 2]],
      "reported once, then the fence completes",
    );
  });
  await t.step("the function never had room for it: the timeout ends the wait too", () => {
    const clock = new Clock();
    const { port } = slowPort(0);
    const { cq, submit, cqh, csr } = machine({ ats: port, clock, atsInvalTimeoutNs: 5000 });
    cq();
    submit([4n], [2n]);
    assert.equal(cqh(), 0);
    clock.advance(5000);
    assert.deepEqual([cqh(), csr() & TO], [1, TO]);
  });
  await t.step(
    "without a clock, a completion that does not come within the call is a timeout",
    () => {
      let answer = false;
      const port: AtsPort = {
        invalidate: (_inv, done) => (answer && done(), ATS_INVAL_SENT),
        pageResponse: () => {},
      };
      const { cq, submit, cqh, csr, iommu } = machine({ ats: port });
      cq();
      submit([4n], [2n]);
      assert.deepEqual([cqh(), csr() & TO], [1, TO]);
      iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | TO);
      answer = true;
      submit([4n], [2n]);
      assert.deepEqual([cqh(), csr() & TO], [4, 0]);
    },
  );
  await t.step("without an AtsPort ATS.INVAL completes at once", () => {
    const { cq, submit, cqh, csr } = machine();
    cq();
    submit([4n], [2n]);
    assert.deepEqual([cqh(), csr() & (TO | ILL)], [2, 0]);
  });
  await t.step("re-enabling the queue forgets the ATS.INVALs of its earlier life", () => {
    const clock = new Clock();
    const { port } = slowPort();
    const { cq, submit, cqh, iommu } = machine({ ats: port, clock });
    cq();
    submit([4n], [2n]);
    assert.equal(cqh(), 1);
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, 0);
    cq();
    submit([2n]);
    assert.equal(cqh(), 1);
    clock.advance(120e9);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQCSR) & TO, 0);
  });
});

Deno.test("commandObserver sees each command the queue consumes, with its slot and doublewords: those a cqt write runs, the IOFENCE.C an Invalidation Completion releases later, a timed-out fence only once cmd_to is cleared; not a command stopped by cmd_ill", () => {
  const clock = new Clock();
  const { port, complete } = slowPort();
  const { cq, submit, iommu, csr } = machine({ ats: port, clock, atsInvalTimeoutNs: 1000 });
  const seen: [number, bigint, bigint][] = [];
  iommu.commandObserver = (i, d0lo, d0hi, d1lo, d1hi) =>
    seen.push([i, BigInt(d0hi) << 32n | BigInt(d0lo), BigInt(d1hi) << 32n | BigInt(d1lo)]);
  cq();
  const inval = 4n | 0x10n << 40n, payload = 0x7_8000_1000n;
  submit(ddt(1), [inval, payload], [2n]);
  assert.deepEqual(seen, [[0, ddt(1)[0], 0n], [1, inval, payload]], "the fence waits");
  complete();
  assert.deepEqual(seen.slice(2), [[2, 2n, 0n]], "released by the completion");
  submit([inval], [2n]);
  assert.equal(seen.length, 4, "the ATS.INVAL went out");
  clock.advance(1000);
  assert.equal(csr() & TO, TO);
  assert.equal(seen.length, 4, "the fence stopped on cmd_to, unconsumed");
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | TO);
  assert.deepEqual(seen.slice(4), [[4, 2n, 0n]]);
  submit([0x7fn], ddt(2));
  assert.equal(seen.length, 5, "an illegal command is not consumed");
});

Deno.test("IOFENCE.C WSI=1 sets fence_w_ip under fctl.WSI=1 and the queue goes on", () => {
  const { cq, submit, cqh, csr, iommu, ddts } = machine();
  iommu.write32(R.RISCV_IOMMU_REG_FCTL, R.RISCV_IOMMU_FCTL_WSI);
  cq();
  submit([
    2n | R.RISCV_IOMMU_CMD_IOFENCE_WSI | R.RISCV_IOMMU_CMD_IOFENCE_PR |
    R.RISCV_IOMMU_CMD_IOFENCE_PW,
  ], ddt(1));
  assert.deepEqual([cqh(), ddts], [2, [1]]);
  assert.ok(csr() & R.RISCV_IOMMU_CQCSR_FENCE_W_IP);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR) & R.RISCV_IOMMU_IPSR_CIP, 1);
});

Deno.test("endianness: commands are fetched with fctl.BE (spec §2.10, Endianness of in-memory data structures)", () => {
  const { cq, cqh, csr, iommu, mem, ddts } = machine({}, { end: true });
  iommu.write32(R.RISCV_IOMMU_REG_FCTL, R.RISCV_IOMMU_FCTL_BE);
  cq();
  mem.write64(RAM, ddt(0x42)[0], true);
  mem.write64(RAM + 8, 0n, true);
  iommu.write32(R.RISCV_IOMMU_REG_CQT, 1);
  assert.deepEqual([cqh(), ddts, csr() & ILL], [1, [0x42], 0]);
  mem.write64(RAM + 16, ddt(0x42)[0]); // little-endian: opcode 0 when read big-endian
  mem.write64(RAM + 24, 0n);
  iommu.write32(R.RISCV_IOMMU_REG_CQT, 2);
  assert.deepEqual([cqh(), ddts, csr() & ILL], [1, [0x42], ILL]);
});

Deno.test("stallCommandQueue: cqh does not advance until the stall is lifted", () => {
  const { cq, submit, cqh, iommu, ddts } = machine({ stallCommandQueue: true });
  cq();
  submit(ddt(1), ddt(2));
  assert.deepEqual([cqh(), ddts], [0, []]);
  iommu.stallCommandQueue = false;
  assert.deepEqual([cqh(), ddts], [2, [1, 2]]);
});

Deno.test("a disabled queue runs nothing; enabling runs from cqh = 0 up to cqt", () => {
  const { submit, cqh, iommu, ddts } = machine();
  iommu.write64(R.RISCV_IOMMU_REG_CQB, BigInt(RAM / 4096) << 10n | 3n);
  submit(ddt(1), ddt(2));
  assert.deepEqual([cqh(), ddts], [0, []]);
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN);
  assert.deepEqual([cqh(), ddts], [2, [1, 2]]);
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, 0);
  submit(ddt(3));
  assert.deepEqual([cqh(), ddts], [2, [1, 2]]);
});

Deno.test("an IOFENCE.C store aimed at the IOMMU's own registers cannot drive its queue", () => {
  const { mem, iommu, cq, submit, cqh } = machine();
  const BASE = 0x0301_0000;
  mem.addMmio(BASE, 0x1000, iommu, "iommu");
  cq(2);
  // Each fence would write cqt = 1 forever if the store reached the register.
  submit([
    2n | R.RISCV_IOMMU_CMD_IOFENCE_AV | 1n << 32n,
    BigInt(BASE + R.RISCV_IOMMU_REG_CQT) >> 2n,
  ]);
  assert.equal(cqh(), 1);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQT), 1);
});

Deno.test("IOTINVAL.VMA and IODIR.INVAL_DDT through the queue reach the real caches", () => {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const iommu = new Iommu({ mem, caps: { msiFlat: false } });
  const DDT = RAM + 0x10_0000, ROOT = DDT + 0x1000, L1 = DDT + 0x2000, L0 = DDT + 0x3000;
  const ptr = (pa: number) => BigInt(pa / 4096) << 10n | 1n;
  mem.write64(DDT + 32, 1n); // device 1, base DC: V
  mem.write64(DDT + 32 + 0x10, 5n << 12n); // PSCID 5
  mem.write64(DDT + 32 + 0x18, 8n << 60n | BigInt(ROOT / 4096));
  mem.write64(ROOT, ptr(L1));
  mem.write64(L1, ptr(L0));
  mem.write64(L0 + 8, 0x80777n << 10n | 0xd7n);
  iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(DDT / 4096) << 10n | 2n);
  iommu.write64(R.RISCV_IOMMU_REG_CQB, BigInt(RAM / 4096) << 10n | 3n);
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN);
  let t = 0;
  const run = (d0: bigint, d1 = 0n) => {
    mem.write64(RAM + t * 16, d0);
    mem.write64(RAM + t * 16 + 8, d1);
    iommu.write32(R.RISCV_IOMMU_REG_CQT, ++t);
  };
  const pa = () => {
    const res = newResult();
    iommu.translate(newRequest({ deviceId: 1, iovaLo: 0x1000 }), res);
    return res.status === 0 ? res.pa : -res.cause;
  };
  assert.equal(pa(), 0x8077_7000);
  mem.write64(L0 + 8, 0x80888n << 10n | 0xd7n);
  run(
    1n | R.RISCV_IOMMU_CMD_IOTINVAL_AV | R.RISCV_IOMMU_CMD_IOTINVAL_PSCV | 5n << 12n,
    0x1n << 10n,
  );
  run(2n);
  assert.equal(pa(), 0x8088_8000, "the leaf was invalidated");
  mem.write64(DDT + 32, 0n);
  assert.equal(pa(), 0x8088_8000, "the DC is still cached");
  run(3n | bits(33) | 1n << 40n);
  run(2n);
  assert.equal(pa(), -258, "after IODIR.INVAL_DDT the invalid DC is seen");
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQH), 4);
});
