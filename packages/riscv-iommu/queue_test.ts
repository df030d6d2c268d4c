// The command queue producer and IOFENCE.C sync, the CQ and FQ interrupt threads (RISC-V IOMMU
// spec v1.0, chapter 3 "In-memory queue interface"), on the fake register file with interrupts delivered as simulated time passes.
import assert from "node:assert/strict";
import { device_del } from "@iommu-lab/kernel";
import {
  riscv_iommu_cmd_iodir_inval_ddt,
  riscv_iommu_cmd_iodir_set_did,
  RISCV_IOMMU_CQCSR_CMD_TO,
  RISCV_IOMMU_CQCSR_CQMF,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_FQCSR,
  RISCV_IOMMU_REG_FQH,
  RISCV_IOMMU_REG_IPSR,
  RiscvIommuCommand,
} from "./bits.ts";
import {
  riscv_iommu_cmd_send,
  riscv_iommu_cmd_sync,
  RISCV_IOMMU_IOTINVAL_TIMEOUT,
} from "./iommu.ts";
import { type TestSystem, testSystem } from "./testing.ts";

const US = 1000;

/** After an error path, unbinding the driver must still return every page, object and irq. */
function assertUnbindFreesAll(sys: TestSystem): void {
  device_del(sys.dev);
  assert.equal(sys.kernel.pages.allocatedPages, 0, "pages leaked");
  assert.deepEqual(sys.kernel.slab.allocations(), [], "objects leaked");
  assert.deepEqual(sys.kernel.irq.procInterrupts(), [], "irqs left requested");
}

/** An FQ record header: CAUSE, TTYP, DID. */
function hdr(cause: number, ttyp: number, did: number): bigint {
  return BigInt(cause) | BigInt(ttyp) << 34n | BigInt(did) << 40n;
}

Deno.test("cmd_sync() waits for the IOFENCE.C to pass cqh", () => {
  const sys = testSystem();
  const iommu = sys.iommu!;
  const cmd = new RiscvIommuCommand();
  riscv_iommu_cmd_iodir_inval_ddt(cmd);
  sys.fake.commands.length = 0;
  sys.fake.stallUntil = sys.kernel.clock.now() + 40 * US;
  riscv_iommu_cmd_send(iommu, cmd);
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.deepEqual(sys.fake.commands.map((c) => c.text), ["IODIR.INVAL_DDT", "IOFENCE.C pr pw"]);
  assert.ok(sys.kernel.clock.now() >= sys.fake.stallUntil);
  // Seen within twice the device's latency (the poll backs off, it does not sleep long).
  assert.ok(sys.kernel.clock.now() < sys.fake.stallUntil + 80 * US);
  assert.deepEqual(sys.kernel.dmesg.grep("error"), []);
});

Deno.test("cmd_sync() on a stalled command queue: 'command execution timeout' once, after 90 s", () => {
  const sys = testSystem();
  const iommu = sys.iommu!;
  sys.fake.stallUntil = Infinity;
  const t0 = sys.kernel.clock.now();
  sys.rec.clear();
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.ok(sys.kernel.clock.now() - t0 >= 90e9);
  assert.ok(sys.rec.accesses.length < 5000, `${sys.rec.accesses.length} MMIO reads to time out`);
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.deepEqual(sys.kernel.dmesg.grep("Hardware error"), [
    "riscv,iommu 3010000.iommu: Hardware error: command execution timeout",
  ]);
  assertUnbindFreesAll(sys);
});

Deno.test("queue_send() on a full queue waits for the hardware head, then goes on in order", () => {
  const sys = testSystem({ cqLog2: 2 }); // 4 slots, 3 usable
  const iommu = sys.iommu!;
  sys.fake.commands.length = 0;
  sys.fake.stallUntil = sys.kernel.clock.now() + 1000 * US;
  const cmd = new RiscvIommuCommand();
  for (let did = 1; did <= 5; did++) {
    riscv_iommu_cmd_iodir_inval_ddt(cmd);
    riscv_iommu_cmd_iodir_set_did(cmd, did);
    riscv_iommu_cmd_send(iommu, cmd);
  }
  assert.ok(sys.kernel.clock.now() >= sys.fake.stallUntil, "the 4th command waited");
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.deepEqual(sys.fake.commands.map((c) => c.text), [
    "IODIR.INVAL_DDT did=0x1",
    "IODIR.INVAL_DDT did=0x2",
    "IODIR.INVAL_DDT did=0x3",
    "IODIR.INVAL_DDT did=0x4",
    "IODIR.INVAL_DDT did=0x5",
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(sys.kernel.dmesg.grep("error"), []);
});

Deno.test("queue_send() on a full queue the hardware never drains: 'command enqueue failed' once", () => {
  const sys = testSystem({ cqLog2: 2 });
  const iommu = sys.iommu!;
  sys.fake.stallUntil = Infinity;
  const cmd = new RiscvIommuCommand();
  riscv_iommu_cmd_iodir_inval_ddt(cmd);
  for (let i = 0; i < 5; i++) riscv_iommu_cmd_send(iommu, cmd);
  assert.deepEqual(sys.kernel.dmesg.grep("Hardware error"), [
    "riscv,iommu 3010000.iommu: Hardware error: command enqueue failed",
  ]);
  assert.equal(iommu.cmdq.prod - iommu.cmdq.head, 3, "dropped commands reserve no slot");
  assertUnbindFreesAll(sys);
});

Deno.test("an illegal command: cmd_sync stops early, the CQ thread reports and clears cmd_ill", () => {
  const sys = testSystem({ illegal: "IODIR" });
  const iommu = sys.iommu!;
  const t0 = sys.kernel.clock.now();
  const cmd = new RiscvIommuCommand();
  riscv_iommu_cmd_iodir_inval_ddt(cmd);
  riscv_iommu_cmd_send(iommu, cmd);
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.ok(sys.kernel.clock.now() - t0 < 1e9, "no 90 s wait");
  assert.deepEqual(sys.kernel.dmesg.grep("Hardware error"), []);
  sys.rec.clear();
  sys.kernel.clock.advance(1 * US); // the interrupt arrives
  assert.deepEqual(sys.kernel.dmesg.grep("Queue #0"), [
    "riscv,iommu 3010000.iommu: Queue #0 error; fault:0 timeout:0 illegal:1 fence_w_ip:0",
  ]);
  const w = sys.rec.writes();
  assert.deepEqual(w, [[RISCV_IOMMU_REG_CQCSR, 0x10403], [RISCV_IOMMU_REG_IPSR, 1]]);
  assert.equal(sys.fake.qcsr[0] & 0x400, 0, "cmd_ill cleared");
  assert.equal(sys.fake.ipsr & 1, 0, "cip cleared");
  assertUnbindFreesAll(sys);
});

Deno.test("cqmf stops cmd_sync early and is reported by the CQ thread", () => {
  const sys = testSystem();
  const t0 = sys.kernel.clock.now();
  sys.fake.queueError(0, RISCV_IOMMU_CQCSR_CQMF);
  riscv_iommu_cmd_sync(sys.iommu!, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.ok(sys.kernel.clock.now() - t0 < 1e9);
  assert.equal(sys.kernel.dmesg.grep("fault:1").length, 0, "the CQ thread has not run yet");
  sys.kernel.clock.advance(1 * US);
  assert.equal(sys.kernel.dmesg.grep("fault:1").length, 1);
  assert.equal(sys.fake.qcsr[0] & 0xf00, 0);
  assertUnbindFreesAll(sys);
});

Deno.test("cmd_to: cmd_sync waits while the CQ thread reports and clears it, then its IOFENCE.C completes (spec §3.1.2: cmd_to stops the queue on the fence until cleared)", () => {
  const sys = testSystem();
  const t0 = sys.kernel.clock.now();
  sys.fake.queueError(0, RISCV_IOMMU_CQCSR_CMD_TO);
  sys.fake.commands.length = 0;
  riscv_iommu_cmd_sync(sys.iommu!, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.ok(sys.kernel.clock.now() - t0 < 1e9);
  assert.equal(sys.kernel.dmesg.grep("timeout:1").length, 1, "reported before the sync returned");
  assert.deepEqual(sys.fake.commands.map((c) => c.text), ["IOFENCE.C pr pw"], "completed");
  assert.equal(sys.fake.qh[0], sys.fake.qt[0]);
  assert.equal(sys.fake.qcsr[0] & 0xf00, 0);
  assert.deepEqual(sys.kernel.dmesg.grep("command execution timeout"), []);
  assertUnbindFreesAll(sys);
});

Deno.test("fault queue thread logs each record as the kernel does and returns the slots", () => {
  const sys = testSystem();
  const { fake } = sys;
  assert.ok(fake.record(1, [hdr(13, 2, 0x42), 0n, 0x1000n, 0n]));
  assert.ok(fake.record(1, [hdr(258, 3, 0x1_0203), 0n, 0xffff_ffff_ffff_f000n, 0x5n]));
  assert.ok(fake.record(1, [hdr(0, 0, 0), 0n, 0n, 0n]), "cause 0 is not logged");
  sys.rec.clear();
  sys.kernel.clock.advance(1 * US);
  assert.deepEqual(sys.kernel.dmesg.grep("Fault"), [
    "riscv,iommu 3010000.iommu: Fault 13 devid: 0x42 iotval: 1000 iotval2: 0",
    "riscv,iommu 3010000.iommu: Fault 258 devid: 0x10203 iotval: fffffffffffff000 iotval2: 5",
  ]);
  assert.deepEqual(sys.rec.writes(), [[RISCV_IOMMU_REG_IPSR, 2], [RISCV_IOMMU_REG_FQH, 3]]);
  assert.equal(fake.qh[1], 3);
  assert.equal(sys.iommu!.fltq.head, 3);
});

Deno.test("fault queue overflow: records up to full are logged, then fqof is reported and cleared", () => {
  const sys = testSystem({ fqLog2: 2 }); // 4 slots, 3 usable
  const { fake } = sys;
  const results = [1, 2, 3, 4].map((did) => fake.record(1, [hdr(15, 3, did), 0n, 0n, 0n]));
  assert.deepEqual(results, [true, true, true, false]);
  sys.kernel.clock.advance(1 * US);
  assert.equal(sys.kernel.dmesg.grep(/Fault 15 devid: 0x[123] /).length, 3);
  assert.deepEqual(sys.kernel.dmesg.grep("Queue #1"), [
    "riscv,iommu 3010000.iommu: Queue #1 error; memory fault:0 overflow:1",
  ]);
  assert.equal(fake.qcsr[1] & 0x300, 0, "fqof cleared by writing it back");
  assert.equal(fake.qcsr[1] & 1, 1, "queue still enabled");
  // Records flow again after the overflow was cleared, wrapping around the ring.
  assert.ok(fake.record(1, [hdr(15, 3, 9), 0n, 0n, 0n]));
  sys.kernel.clock.advance(1 * US);
  assert.equal(sys.kernel.dmesg.grep("devid: 0x9 ").length, 1);
  assert.equal(sys.iommu!.fltq.head, 4);
  assert.deepEqual(sys.rec.writes().filter(([o]) => o === RISCV_IOMMU_REG_FQCSR).at(-1), [
    RISCV_IOMMU_REG_FQCSR,
    0x10203,
  ]);
  assertUnbindFreesAll(sys);
});

Deno.test("fault queue memory fault: fqmf is reported and cleared, the queue keeps running", () => {
  const sys = testSystem();
  const { fake } = sys;
  fake.queueError(1, 1 << 8);
  sys.rec.clear();
  sys.kernel.clock.advance(1 * US);
  assert.deepEqual(sys.kernel.dmesg.grep("Queue #1"), [
    "riscv,iommu 3010000.iommu: Queue #1 error; memory fault:1 overflow:0",
  ]);
  assert.equal(fake.qcsr[1] & 0x300, 0, "fqmf cleared");
  assert.ok(fake.record(1, [hdr(1, 1, 3), 0n, 0n, 0n]), "records are accepted again");
  sys.kernel.clock.advance(1 * US);
  assert.equal(sys.kernel.dmesg.grep("Fault 1 devid: 0x3 ").length, 1);
  assertUnbindFreesAll(sys);
});

Deno.test("fence_w_ip is reported and cleared by the CQ thread without stopping cmd_sync", () => {
  const sys = testSystem();
  sys.fake.queueError(0, 1 << 11);
  sys.kernel.clock.advance(1 * US);
  assert.deepEqual(sys.kernel.dmesg.grep("Queue #0"), [
    "riscv,iommu 3010000.iommu: Queue #0 error; fault:0 timeout:0 illegal:0 fence_w_ip:1",
  ]);
  assert.equal(sys.fake.qcsr[0] & 0xf00, 0);
  sys.fake.commands.length = 0;
  riscv_iommu_cmd_sync(sys.iommu!, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.deepEqual(sys.fake.commands.map((c) => c.text), ["IOFENCE.C pr pw"]);
});

Deno.test("fault logs are rate limited to 10 per 5 s, then the suppressed count is printed", () => {
  const sys = testSystem({ fqLog2: 6 });
  for (let i = 0; i < 15; i++) sys.fake.record(1, [hdr(13, 2, i), 0n, 0n, 0n]);
  sys.kernel.clock.advance(1 * US);
  assert.equal(sys.kernel.dmesg.grep("Fault 13").length, 10);
  sys.kernel.clock.advance(5e9);
  sys.fake.record(1, [hdr(13, 2, 99), 0n, 0n, 0n]);
  sys.kernel.clock.advance(1 * US);
  assert.deepEqual(sys.kernel.dmesg.grep(/suppressed|devid: 0x63/), [
    "riscv_iommu_fault: 5 callbacks suppressed",
    "riscv,iommu 3010000.iommu: Fault 13 devid: 0x63 iotval: 0 iotval2: 0",
  ]);
});
