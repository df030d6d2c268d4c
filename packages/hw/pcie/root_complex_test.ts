import assert from "node:assert/strict";
import { Clock } from "../clock.ts";
import { PhysicalMemory } from "../memory.ts";
import { REQ_ATS, REQ_UNTRANSLATED } from "../iommu/request.ts";
import { PCI_ATS_CTRL_ENABLE, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_HEADER_TYPE } from "./config.ts";
import { DMA_ERR_ABORT, PciFunction } from "./function.ts";
import { PCIE_ECAM_BASE, RootComplex } from "./root_complex.ts";
import { ATS_INVAL_SENT, type AtsInvalidation } from "../iommu/command_queue.ts";
import { TEST_RAM_BASE, testIommuDevice, testPcieRig } from "../testing.ts";
import { TestTranslationPort } from "./testing.ts";
import {
  RISCV_IOMMU_CQCSR_CMD_TO,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
} from "../iommu/regs.ts";

const ecam = (bus: number, dev: number, fn: number, reg: number) =>
  PCIE_ECAM_BASE + (bus << 20 | dev << 15 | fn << 12 | reg);

function fnWithId(clock: Clock, deviceId: number, extra = {}) {
  return new PciFunction({ clock, vendorId: 0x1b36, deviceId, classCode: 0x0200, ...extra });
}

Deno.test("ecam: bus/device/function/register decode", async (t) => {
  const { mem, clock, rc } = testPcieRig();
  const a = fnWithId(clock, 0x0a);
  const b = fnWithId(clock, 0x0b);
  const c = fnWithId(clock, 0x0c);
  assert.equal(rc.attach(a, 1), 0x08);
  assert.equal(rc.attach(b, 1, 3), 0x0b);
  assert.equal(rc.attach(c, 31, 7, 2), 0x2ff);
  await t.step("each function answers at its own 4 KiB", () => {
    assert.equal(mem.read32(ecam(0, 1, 0, 0)), 0x000a_1b36);
    assert.equal(mem.read32(ecam(0, 1, 3, 0)), 0x000b_1b36);
    assert.equal(mem.read32(ecam(2, 31, 7, 0)), 0x000c_1b36);
    assert.equal(mem.read32(ecam(2, 31, 7, 0x100 + a.expCap)), 0, "register offset decoded");
    assert.equal(mem.read32(ecam(0, 1, 0, a.expCap)) & 0xff, 0x10);
  });
  await t.step("empty slots read all-ones and ignore writes", () => {
    assert.equal(mem.read32(ecam(0, 2, 0, 0)), 0xffff_ffff);
    assert.equal(mem.read32(ecam(1, 1, 0, 0)), 0xffff_ffff);
    mem.write32(ecam(0, 2, 0, PCI_COMMAND), 0xffff);
  });
  await t.step("writes reach the function's configuration space", () => {
    mem.write32(ecam(0, 1, 3, PCI_COMMAND), PCI_COMMAND_MASTER);
    assert.equal(b.busMaster, true);
    assert.equal(a.busMaster, false);
  });
  await t.step("64-bit accesses are two dword accesses", () => {
    assert.equal(
      mem.read64(ecam(0, 1, 0, 0)),
      0x0000_0000_000a_1b36n | BigInt(mem.read32(ecam(0, 1, 0, 4))) << 32n,
    );
  });
  await t.step("function 0 of a device with more functions is multi-function", () => {
    assert.equal(a.config.get8(PCI_HEADER_TYPE) & 0x80, 0x80);
    assert.equal(c.config.get8(PCI_HEADER_TYPE) & 0x80, 0, "2:31.7 has no function 0");
    const d = fnWithId(clock, 0x0d);
    rc.attach(fnWithId(clock, 0x0e), 5, 1);
    rc.attach(d, 5, 0);
    assert.equal(d.config.get8(PCI_HEADER_TYPE) & 0x80, 0x80, "also when function 0 comes last");
  });
  await t.step("a taken or impossible slot is a machine-building error", () => {
    assert.throws(() => rc.attach(fnWithId(clock, 1), 1), RangeError);
    assert.throws(() => rc.attach(fnWithId(clock, 1), 32), RangeError);
    assert.throws(() => rc.attach(a, 6), RangeError, "a function sits in one slot");
  });
  await t.step("MMIO accesses to ECAM are charged to the clock", () => {
    const t0 = clock.now();
    mem.read32(ecam(0, 1, 0, 0));
    assert.equal(clock.now() - t0, clock.costs.mmio);
  });
});

Deno.test("root complex: without an IOMMU untranslated DMA is identity and ATS is refused", () => {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 1 << 20);
  const clock = new Clock();
  const rc = new RootComplex({ mem, clock });
  const fn = fnWithId(clock, 1, { ats: {} });
  rc.attach(fn, 1);
  fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MASTER);
  assert.equal(fn.dmaWrite(TEST_RAM_BASE + 0x10, new Uint8Array([1, 2, 3, 4])), 4);
  assert.equal(mem.read32(TEST_RAM_BASE + 0x10), 0x0403_0201);
  fn.configWrite32(fn.atsCap + 4, PCI_ATS_CTRL_ENABLE << 16);
  assert.equal(fn.dmaRead(TEST_RAM_BASE, new Uint8Array(4)), 0);
  assert.equal(fn.faultKind, DMA_ERR_ABORT, "no translation agent: Unsupported Request");
});

Deno.test("root complex: a bypass function's DMA never reaches the IOMMU", () => {
  const { clock, rc, port, mem } = testPcieRig();
  const iommuFn = fnWithId(clock, 0x14, { dmaBypass: true });
  const dev = fnWithId(clock, 0x20);
  rc.attach(iommuFn, 1);
  rc.attach(dev, 2);
  for (const f of [iommuFn, dev]) f.configWrite32(PCI_COMMAND, PCI_COMMAND_MASTER);
  iommuFn.dmaWrite(TEST_RAM_BASE, new Uint8Array(4).fill(9));
  iommuFn.msiWrite(TEST_RAM_BASE + 8, 0, 7);
  assert.equal(port.seen.length, 0);
  assert.equal(mem.read32(TEST_RAM_BASE + 8), 7);
  dev.dmaRead(0x1000, new Uint8Array(4));
  assert.deepEqual(port.seen.map((r) => [r.deviceId, r.kind]), [[dev.bdf, REQ_UNTRANSLATED]]);
  assert.notEqual(port.seen[0].kind, REQ_ATS);
});

Deno.test("root complex: the ATS port decodes ATS.INVAL targets and ranges; the function drops the entries when it completes", () => {
  const { clock, rc } = testPcieRig();
  const fn = fnWithId(clock, 1, { ats: {} });
  const rid = rc.attach(fn, 1);
  let completions = 0;
  const inv = (o: Partial<AtsInvalidation>) => {
    const r = rc.atsPort.invalidate({
      rid,
      dsv: false,
      dseg: 0,
      pv: false,
      pid: 0,
      global: false,
      s: false,
      addr: 0n,
      ...o,
    }, () => completions++);
    clock.advance(clock.costs.atsInvalidate);
    return r;
  };
  const fill = () => {
    fn.atc!.flush();
    fn.atc!.insert(-1, 0x0000, 4096, TEST_RAM_BASE, 3, false, false);
    fn.atc!.insert(-1, 0x1000, 4096, TEST_RAM_BASE, 3, false, false);
    fn.atc!.insert(4, 0x1000, 4096, TEST_RAM_BASE, 3, false, false);
  };
  fill();
  assert.equal(inv({ addr: 0x1000n }), ATS_INVAL_SENT);
  assert.equal(fn.atc!.entries, 1, "S=0: one 4 KiB page, every PASID");
  fill();
  assert.equal(inv({ addr: 0x1000n, pv: true, pid: 4 }), ATS_INVAL_SENT);
  assert.equal(fn.atc!.entries, 2, "PV: only PASID 4");
  fill();
  assert.equal(inv({ addr: 0x0000n, s: true }), ATS_INVAL_SENT);
  assert.equal(fn.atc!.entries, 0, "S=1 with page number ...0: 8 KiB at 0");
  fill();
  assert.equal(inv({ s: true, addr: 0xffff_ffff_ffff_f000n }), ATS_INVAL_SENT);
  assert.equal(fn.atc!.entries, 0, "all ones: everything");
  assert.equal(completions, 4);
  assert.equal(inv({ rid: 0x77 }), ATS_INVAL_SENT, "no such function: sent, never completed");
  assert.equal(inv({ dsv: true, dseg: 1 }), ATS_INVAL_SENT, "another segment: likewise");
  while (clock.advanceToNextEvent());
  assert.equal(completions, 4);
});

Deno.test("root complex in PCI segment 0x0c: device_id is segment:bus:devfn; ATS.INVAL and PRG responses for other segments go nowhere", () => {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 1 << 20);
  const clock = new Clock();
  const port = new TestTranslationPort();
  const rc = new RootComplex({ mem, clock, translator: port, segment: 0x0c });
  const fn = fnWithId(clock, 1, { ats: {} });
  const rid = rc.attach(fn, 2);
  fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MASTER);
  fn.dmaRead(0x1000, new Uint8Array(4));
  assert.deepEqual(port.seen.map((r) => r.deviceId), [0x0c_0010]);
  let completions = 0;
  const inv = (o: Partial<AtsInvalidation>) => {
    fn.atc!.insert(-1, 0x1000, 4096, TEST_RAM_BASE, 3, false, false);
    rc.atsPort.invalidate({
      rid,
      dsv: true,
      dseg: 0x0c,
      pv: false,
      pid: 0,
      global: false,
      s: false,
      addr: 0x1000n,
      ...o,
    }, () => completions++);
    while (clock.advanceToNextEvent());
  };
  inv({ dseg: 0 });
  inv({ dsv: false });
  assert.equal(completions, 0, "segment 0 is not this hierarchy");
  inv({});
  assert.equal(completions, 1);
  assert.throws(() => new RootComplex({ mem, clock, segment: 256 }), RangeError);
});

/** An IOMMU behind a root complex with one ATS endpoint (queue depth `depth`, `ns` per request). */
function atsRig(depth: number, ns: number) {
  const clock = new Clock();
  const d = testIommuDevice({ clock });
  const rc = new RootComplex({ mem: d.mem, clock, translator: d.iommu });
  d.iommu.atsPort = rc.atsPort;
  const ep = fnWithId(clock, 2, { ats: { invalidateQueueDepth: depth, invalidateNs: ns } });
  const rid = rc.attach(ep, 3);
  const inval = () => d.command(4n | BigInt(rid) << 40n, 0x5000n);
  const cqh = () => d.iommu.read32(RISCV_IOMMU_REG_CQH);
  /** Time at which cqh reaches `n`, letting events run. */
  const when = (n: number) => {
    while (cqh() !== n && clock.advanceToNextEvent());
    return cqh() === n ? clock.now() : -1;
  };
  return { ...d, clock, ep, inval, cqh, when };
}

Deno.test("ATS.INVAL takes the endpoint's time, bounded by its invalidate queue depth, and IOFENCE.C shows it (PCIe ATS Invalidate Queue Depth; spec §3.1.4, IOMMU PCIe ATS commands)", async (t) => {
  await t.step("depth 2, 10 µs each: four invalidations complete in two rounds", () => {
    const r = atsRig(2, 10_000);
    assert.equal(r.ep.atsInvalidateQueueDepth, 2);
    for (let i = 0; i < 4; i++) r.inval();
    r.command(2n);
    assert.equal(r.cqh(), 2, "two sent, the third waits for room");
    assert.equal(r.when(5), 20_000);
  });
  await t.step("depth 0 means 32: the same four complete together", () => {
    const r = atsRig(0, 10_000);
    assert.equal(r.ep.atsInvalidateQueueDepth, 32);
    for (let i = 0; i < 4; i++) r.inval();
    r.command(2n);
    assert.equal(r.cqh(), 4);
    assert.equal(r.when(5), 10_000);
  });
  await t.step(
    "a function that never completes: cmd_to at the fence after the IOMMU's timeout",
    () => {
      const r = atsRig(1, Infinity);
      r.inval();
      r.inval();
      r.command(2n);
      assert.equal(r.cqh(), 1);
      while (r.clock.advanceToNextEvent());
      assert.equal(r.cqh(), 2, "the second one timed out waiting for room; cqh on the fence");
      assert.equal(r.clock.now(), 60e9, "both timed out 60 s after they were fetched");
      assert.equal(
        r.iommu.read32(RISCV_IOMMU_REG_CQCSR) & RISCV_IOMMU_CQCSR_CMD_TO,
        RISCV_IOMMU_CQCSR_CMD_TO,
      );
    },
  );
});
