import assert from "node:assert/strict";
import { MEM_ACCESS_FAULT, type MmioHandler, PhysicalMemory } from "../memory.ts";
import {
  ACC_READ,
  ACC_WRITE,
  CPL_SC,
  CPL_UR,
  REQ_ATS,
  REQ_TRANSLATED,
  REQ_UNTRANSLATED,
} from "../iommu/request.ts";
import {
  PCI_ATS_CTRL_ENABLE,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  PCI_PRI_CTRL_RESET,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
  PCI_PRI_STATUS_UPRGI,
} from "./config.ts";
import {
  PRG_RESPONSE_FAILURE,
  PRG_RESPONSE_INVALID,
  PRG_RESPONSE_SUCCESS,
  PRQ_QUEUED,
} from "../iommu/page_request.ts";
import type { PageRequest } from "../iommu/queues.ts";
import {
  DMA_ERR_ABORT,
  DMA_ERR_ATS_DENIED,
  DMA_ERR_BUS,
  DMA_ERR_NO_MASTER,
  DMA_OK,
  PciFunction,
} from "./function.ts";
import { PCIE_MMIO_BASE, RootComplex } from "./root_complex.ts";
import { TEST_RAM_BASE, testPcieRig, TestTranslationPort } from "../testing.ts";
import { Clock } from "../clock.ts";

/** A register file that records writes and reads back a constant. */
function regs(): MmioHandler & { writes: [number, number][] } {
  const writes: [number, number][] = [];
  return {
    writes,
    read32: (off) => 0xc0de_0000 | off,
    write32: (off, v) => void writes.push([off, v]),
    read64: (off) => BigInt(0xc0de_0000 | off),
    write64: (off, v) => void writes.push([off, Number(v)]),
  };
}

function setup(opts: { ats?: boolean; msiVectors?: number } = {}) {
  const rig = testPcieRig();
  const dev = regs();
  const fn = new PciFunction({
    clock: rig.clock,
    vendorId: 0x1234,
    deviceId: 0xabcd,
    classCode: 0xff0000,
    bars: [{ index: 0, size: 0x4000, is64: true, handler: dev }],
    msix: { vectors: opts.msiVectors ?? 4, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000 },
    ats: opts.ats ? { atcEntries: 8 } : undefined,
  });
  const bdf = rig.rc.attach(fn, 3, 0);
  return { ...rig, dev, fn, bdf };
}

/** Assigns BAR0 (64-bit) and enables memory decode and bus mastering. */
function enable(fn: PciFunction, bar = PCIE_MMIO_BASE) {
  fn.configWrite32(PCI_BASE_ADDRESS_0, bar);
  fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0);
  fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

Deno.test("pcie: a BAR decodes only while Memory Space Enable is set", async (t) => {
  const { fn, mem, dev } = setup();
  await t.step("not mapped before command.MEM", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0, PCIE_MMIO_BASE);
    assert.equal(mem.read32(PCIE_MMIO_BASE), 0);
    assert.equal(mem.fault, MEM_ACCESS_FAULT);
  });
  await t.step("mapped when enabled; device offsets are BAR-relative", () => {
    fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
    assert.equal(mem.read32(PCIE_MMIO_BASE + 0x10), 0xc0de_0010);
    mem.write32(PCIE_MMIO_BASE + 0x20, 7);
    assert.deepEqual(dev.writes, [[0x20, 7]]);
    assert.equal(fn.barRegion(0)?.base, PCIE_MMIO_BASE);
  });
  await t.step("moving the BAR moves the region", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0, PCIE_MMIO_BASE + 0x10_0000);
    assert.equal(mem.read32(PCIE_MMIO_BASE + 0x10), 0);
    assert.equal(mem.fault, MEM_ACCESS_FAULT);
    assert.equal(mem.read32(PCIE_MMIO_BASE + 0x10_0010), 0xc0de_0010);
  });
  await t.step("clearing command.MEM unmaps it", () => {
    fn.configWrite32(PCI_COMMAND, 0);
    assert.equal(mem.mmio.some((r) => r.name.includes("BAR0")), false);
  });
  await t.step("an address outside the MMIO windows or over RAM is not decoded", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0, TEST_RAM_BASE);
    fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
    assert.equal(fn.barRegion(0), undefined);
    fn.configWrite32(PCI_BASE_ADDRESS_0, 0xffff_c000);
    fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0xffff_ffff);
    assert.equal(fn.barRegion(0), undefined, "a half-sized 64-bit BAR never throws");
  });
});

Deno.test("pcie: two functions' BARs never overlap on the bus", () => {
  const { fn, rc, clock } = setup();
  const other = new PciFunction({
    clock,
    vendorId: 1,
    deviceId: 2,
    classCode: 0,
    bars: [{ index: 0, size: 0x1000, handler: regs() }],
  });
  rc.attach(other, 4);
  enable(fn);
  other.configWrite32(PCI_BASE_ADDRESS_0, PCIE_MMIO_BASE + 0x1000);
  other.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
  assert.equal(other.barRegion(0), undefined, "inside fn's 16 KiB BAR: left undecoded");
});

Deno.test("pcie: MSI-X masking, pending bits and delivery (PCIe 6.1.4.5)", async (t) => {
  const { fn, mem, port, bdf } = setup();
  enable(fn);
  const table = PCIE_MMIO_BASE + 0x2000, pba = PCIE_MMIO_BASE + 0x3000;
  const target = 0x2800_0000; // an IOVA; the fake port maps it into RAM
  const landed = () => mem.read32(TEST_RAM_BASE + port.offset + target);
  const msix = fn.msix!;
  const ctrl = (v: number) => fn.configWrite32(msix.cap, v << 16);
  await t.step("vectors start masked; table reads back what was written", () => {
    assert.equal(mem.read32(table + 12), 1);
    mem.write32(table + 16, target + 3);
    mem.write32(table + 20, 0);
    mem.write32(table + 24, 0x55);
    assert.equal(mem.read32(table + 16), target, "address is dword aligned");
    assert.equal(mem.read32(table + 24), 0x55);
  });
  await t.step("disabled: a trigger is dropped, not held", () => {
    msix.notify(1);
    assert.equal(msix.isPending(1), false);
  });
  await t.step("enabled but the vector is masked: held in the PBA", () => {
    ctrl(PCI_MSIX_FLAGS_ENABLE);
    msix.notify(1);
    assert.equal(mem.read32(pba), 0b10);
    assert.equal(landed(), 0);
  });
  await t.step("unmasking sends the held message and clears the pending bit", () => {
    mem.write32(table + 16 + 12, 0);
    assert.equal(landed(), 0x55);
    assert.equal(mem.read32(pba), 0);
    const msi = port.seen.at(-1)!;
    assert.deepEqual(
      [msi.deviceId, msi.kind, msi.access, msi.iova],
      [bdf, REQ_UNTRANSLATED, ACC_WRITE, target],
      "the MSI is a translated write with the function's requester ID",
    );
  });
  await t.step("function mask holds every vector until cleared", () => {
    mem.write32(TEST_RAM_BASE + port.offset + target, 0);
    ctrl(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    msix.notify(1);
    assert.equal(landed(), 0);
    assert.equal(msix.isPending(1), true);
    ctrl(PCI_MSIX_FLAGS_ENABLE);
    assert.equal(landed(), 0x55);
    assert.equal(msix.isPending(1), false);
  });
  await t.step("an unmasked vector is sent at once; the PBA ignores writes", () => {
    mem.write32(TEST_RAM_BASE + port.offset + target, 0);
    msix.notify(1);
    assert.equal(landed(), 0x55);
    mem.write32(pba, 0xffff_ffff);
    assert.equal(mem.read32(pba), 0);
  });
  await t.step("a faulting MSI write is dropped", () => {
    port.faultPages.add(target / 4096);
    mem.write32(TEST_RAM_BASE + port.offset + target, 0);
    msix.notify(1);
    assert.equal(landed(), 0);
    port.faultPages.clear();
  });
  await t.step("bus master disabled: held until the function may write again", () => {
    fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
    msix.notify(1);
    assert.equal(landed(), 0);
    assert.equal(msix.isPending(1), true);
    fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    assert.equal(landed(), 0x55);
    assert.equal(msix.isPending(1), false);
  });
  await t.step("out-of-range vectors are ignored", () => {
    msix.notify(4);
    msix.notify(-1);
    mem.write32(table + 4 * 16, 0x1234);
    assert.equal(mem.read32(pba + 4), 0);
  });
});

Deno.test("pcie: MSI writes bypass translation when the platform does not translate them", () => {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 1 << 20);
  const clock = new Clock();
  const port = new TestTranslationPort();
  const rc = new RootComplex({ mem, clock, translator: port, translateMsi: false });
  const fn = new PciFunction({ clock, vendorId: 1, deviceId: 2, classCode: 0 });
  rc.attach(fn, 1);
  fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MASTER);
  fn.msiWrite(TEST_RAM_BASE + 0x40, 0, 0xbeef);
  assert.equal(mem.read32(TEST_RAM_BASE + 0x40), 0xbeef);
  assert.equal(port.seen.length, 0);
});

Deno.test("pcie: root complex routes DMA page by page through the translation port", async (t) => {
  await t.step("a read spanning three pages is three translated transactions", () => {
    const { fn, mem, port, bdf } = setup();
    enable(fn);
    const data = new Uint8Array(8192).map((_, i) => i * 7);
    mem.writeBytes(TEST_RAM_BASE + port.offset + 0x1800, data);
    const out = new Uint8Array(8192);
    assert.equal(fn.dmaRead(0x1800, out), 8192);
    assert.equal(fn.faultKind, DMA_OK);
    assert.deepEqual(out, data);
    assert.deepEqual(port.seen.map((r) => [r.deviceId, r.kind, r.access, r.iova]), [
      [bdf, REQ_UNTRANSLATED, ACC_READ, 0x1800],
      [bdf, REQ_UNTRANSLATED, ACC_READ, 0x2000],
      [bdf, REQ_UNTRANSLATED, ACC_READ, 0x3000],
    ]);
  });
  await t.step("a faulting read page stops the transfer with an error", () => {
    const { fn, port } = setup();
    enable(fn);
    port.faultPages.add(2);
    const out = new Uint8Array(4 * 4096);
    assert.equal(fn.dmaRead(0, out), 2 * 4096);
    assert.deepEqual([fn.faultKind, fn.faultAddr, fn.faultWrite, fn.faultCause], [
      DMA_ERR_ABORT,
      0x2000,
      false,
      13,
    ]);
    assert.equal(fn.faultCompletion, CPL_UR, "the completion status the root complex gave");
    assert.equal(fn.dmaRead(0, new Uint8Array(4)), 4);
    assert.equal(fn.faultCompletion, CPL_SC, "reset by the next DMA");
  });
  await t.step("a faulting write page is dropped and reported", () => {
    const { fn, mem, port } = setup();
    enable(fn);
    port.faultPages.add(1);
    const n = fn.dmaWrite(0, new Uint8Array(3 * 4096).fill(0xaa));
    assert.equal(n, 4096);
    assert.deepEqual([fn.faultKind, fn.faultAddr, fn.faultWrite, fn.faultCause], [
      DMA_ERR_ABORT,
      0x1000,
      true,
      15,
    ]);
    assert.equal(
      mem.read8(TEST_RAM_BASE + port.offset + 0x1000),
      0,
      "nothing written past the fault",
    );
  });
  await t.step("copy: source and destination with different page offsets", () => {
    const { fn, mem, port } = setup();
    enable(fn);
    const src = new Uint8Array(10_000).map((_, i) => (i * 31) & 0xff);
    mem.writeBytes(TEST_RAM_BASE + port.offset + 0x10_0100, src);
    assert.equal(fn.dmaCopy(0x20_0f00, 0x10_0100, src.length), src.length);
    assert.deepEqual(mem.readBytes(TEST_RAM_BASE + port.offset + 0x20_0f00, src.length), src);
    const reads = port.seen.filter((r) => r.access === ACC_READ).length;
    const writes = port.seen.filter((r) => r.access === ACC_WRITE).length;
    assert.deepEqual([reads, writes], [3, 6], "split at source and at destination page boundaries");
  });
  await t.step("copy: a faulting destination page stops the copy there", () => {
    const { fn, port } = setup();
    enable(fn);
    port.faultPages.add(0x201);
    assert.equal(fn.dmaCopy(0x20_0000, 0x10_0000, 4 * 4096), 4096);
    assert.deepEqual([fn.faultKind, fn.faultAddr, fn.faultWrite], [DMA_ERR_ABORT, 0x20_1000, true]);
  });
  await t.step("fill: a 32-bit pattern repeats from the destination on", () => {
    const { fn, mem, port } = setup();
    enable(fn);
    assert.equal(fn.dmaFill(0x1ffe, 8, 0x4433_2211), 8);
    assert.deepEqual(
      [...mem.readBytes(TEST_RAM_BASE + port.offset + 0x1ffe, 8)],
      [0x11, 0x22, 0x33, 0x44, 0x11, 0x22, 0x33, 0x44],
    );
    assert.equal(fn.dmaFill(0x3000, 4096, 0x5a5a_5a5a), 4096);
    assert.equal(mem.read32(TEST_RAM_BASE + port.offset + 0x3ffc), 0x5a5a_5a5a);
  });
  await t.step("a translated address that is not RAM is a bus error", () => {
    const { fn, port } = setup();
    enable(fn);
    port.offset = -TEST_RAM_BASE; // identity into the hole below RAM
    assert.equal(fn.dmaRead(0x1000, new Uint8Array(16)), 0);
    assert.equal(fn.faultKind, DMA_ERR_BUS);
  });
  await t.step("no DMA at all without bus mastering", () => {
    const { fn, port } = setup();
    fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
    assert.equal(fn.dmaWrite(0, new Uint8Array(4)), 0);
    assert.equal(fn.faultKind, DMA_ERR_NO_MASTER);
    assert.equal(port.seen.length, 0);
  });
  await t.step("PASID and privilege travel with the transaction", () => {
    const { fn, port } = setup();
    enable(fn);
    fn.dmaRead(0x5000, new Uint8Array(4), 42, true);
    assert.equal(port.seen[0].pid, 42);
  });
});

Deno.test("pcie: with ATS enabled, DMA goes through the ATC (PCIe ATS 10.1)", async (t) => {
  const rig = () => {
    const r = setup({ ats: true });
    enable(r.fn);
    r.fn.configWrite32(r.fn.atsCap + 4, PCI_ATS_CTRL_ENABLE << 16);
    return r;
  };
  await t.step("a miss sends a translation request, then translated requests hit the ATC", () => {
    const { fn, mem, port } = rig();
    mem.write32(TEST_RAM_BASE + port.offset + 0x7010, 0x1234_5678);
    const out = new Uint8Array(4);
    assert.equal(fn.dmaRead(0x7010, out), 4);
    assert.equal(new DataView(out.buffer).getUint32(0, true), 0x1234_5678);
    fn.dmaRead(0x7020, out);
    assert.deepEqual(port.seen.map((r) => [r.kind, r.iova]), [
      [REQ_ATS, 0x7000],
      [REQ_TRANSLATED, TEST_RAM_BASE + port.offset + 0x7010],
      [REQ_TRANSLATED, TEST_RAM_BASE + port.offset + 0x7020],
    ]);
    assert.equal(fn.atc!.entries, 1);
  });
  await t.step("atsInvalidate drops the entry so the next access asks again", () => {
    const { fn, port } = rig();
    fn.dmaRead(0x7000, new Uint8Array(4));
    assert.equal(fn.atsInvalidate(undefined, 0x7000, 0x1000), 1);
    fn.dmaRead(0x7000, new Uint8Array(4));
    assert.equal(port.seen.filter((r) => r.kind === REQ_ATS).length, 2);
  });
  await t.step("a completion with no access stops the transfer where PRI would go", () => {
    const { fn, port } = rig();
    port.faultPages.add(9);
    assert.equal(fn.dmaRead(0x9000, new Uint8Array(4)), 0);
    assert.equal(fn.faultKind, DMA_ERR_ATS_DENIED);
    assert.equal(fn.atc!.entries, 0, "a no-access completion is not cached");
  });
  await t.step("a read-only completion serves reads and denies writes", () => {
    const { fn, port } = rig();
    port.readOnlyPages.add(0xa);
    assert.equal(fn.dmaRead(0xa000, new Uint8Array(4)), 4);
    assert.equal(fn.dmaWrite(0xa000, new Uint8Array(4)), 0);
    assert.equal(fn.faultKind, DMA_ERR_ATS_DENIED);
  });
  await t.step("disabling ATS flushes the ATC and DMA is untranslated again", () => {
    const { fn, port } = rig();
    fn.dmaRead(0x7000, new Uint8Array(4));
    fn.configWrite32(fn.atsCap + 4, 0);
    assert.equal(fn.atc!.entries, 0);
    fn.dmaRead(0x7000, new Uint8Array(4));
    assert.equal(port.seen.at(-1)!.kind, REQ_UNTRANSLATED);
  });
  await t.step("the root complex delivers invalidations by requester ID", () => {
    const { fn, rc, bdf } = rig();
    fn.dmaRead(0x7000, new Uint8Array(4), 5);
    assert.equal(rc.atsInvalidate(bdf, 5, 0, 2 ** 40), true);
    assert.equal(fn.atc!.entries, 0);
    assert.equal(rc.atsInvalidate(0xffff, undefined, 0, 4096), false);
  });
});

/** A function with PRI (capacity 8) and PASID behind a rig whose root complex records the page
 * request messages it gets. */
function priSetup(pri: { prgResponsePasidRequired?: boolean } = {}) {
  const rig = testPcieRig();
  const fn = new PciFunction({
    clock: rig.clock,
    vendorId: 0x1234,
    deviceId: 0xabcd,
    classCode: 0xff0000,
    ats: {},
    pri: { outstandingCapacity: 8, ...pri },
    pasid: { width: 20 },
  });
  const bdf = rig.rc.attach(fn, 3, 0);
  const msgs: PageRequest[] = [];
  rig.rc.pageRequestPort = { pageRequest: (pr) => (msgs.push({ ...pr }), PRQ_QUEUED) };
  const cfg = (off: number) => fn.configRead32(fn.priCap + off);
  /** Writes PRI control (low half) and status (high half, RW1C). */
  const ctrl = (c: number, st = 0) => fn.configWrite32(fn.priCap + PCI_PRI_CTRL, c | st << 16);
  const status = () => cfg(PCI_PRI_CTRL) >>> 16;
  const enablePri = (alloc = 8) => {
    fn.configWrite32(fn.priCap + PCI_PRI_ALLOC_REQ, alloc);
    ctrl(PCI_PRI_CTRL_ENABLE);
  };
  const codes: number[] = [];
  const send = (pages: number[], pasid = -1) =>
    fn.pageRequestGroup(pages, true, false, pasid, false, false, (c) => codes.push(c));
  const respond = (prgIndex: number, responseCode: number, pv = false, pid = 0) =>
    rig.rc.atsPort.pageResponse({
      rid: bdf,
      dsv: false,
      dseg: 0,
      pv,
      pid,
      prgIndex,
      responseCode,
      dstId: bdf,
    });
  return { ...rig, fn, bdf, msgs, status, ctrl, enablePri, codes, send, respond };
}

Deno.test("PRI: a page request group is one message per page with one PRG index, L on the last, the PASID prefix; it takes credits from the allocation (PCIe PRI)", () => {
  const { fn, bdf, msgs, enablePri, send } = priSetup();
  assert.equal(send([0x1000]), -1, "PRI disabled");
  enablePri(3);
  assert.equal(fn.priCredits, 3);
  const prgi = fn.pageRequestGroup(
    [0x1_2345_6000, 0x7000],
    false,
    true,
    0x42,
    true,
    true,
    () => {},
  );
  assert.deepEqual(
    msgs.map((
      m,
    ) => [
      m.deviceId,
      m.pidValid,
      m.pid,
      m.priv,
      m.exec,
      m.read,
      m.write,
      m.last,
      m.prgIndex,
      m.addrHi,
      m.addrLo,
    ]),
    [
      [bdf, true, 0x42, true, true, false, true, false, prgi, 1, 0x2345_6000],
      [bdf, true, 0x42, true, true, false, true, true, prgi, 0, 0x7000],
    ],
  );
  assert.deepEqual([fn.priOutstanding, fn.priCredits], [2, 1]);
  assert.equal(send([0x1000, 0x2000]), -1, "two pages do not fit the one credit left");
  assert.equal(msgs.length, 2, "nothing of a refused group is sent");
  const other = send([0x1000]);
  assert.notEqual(other, prgi, "outstanding groups have distinct indices");
  assert.equal(msgs[2].pidValid, false);
  assert.equal(msgs[2].priv || msgs[2].exec, false, "no PASID: no PRIV, no EXEC");
});

Deno.test("PRI: PRG responses answer their group and free its credits; Stopped follows Enable and the outstanding groups (PCIe PRI Status)", () => {
  const { fn, enablePri, send, respond, codes, status, ctrl } = priSetup();
  assert.equal(status() & PCI_PRI_STATUS_STOPPED, PCI_PRI_STATUS_STOPPED, "stopped at reset");
  enablePri(4);
  assert.equal(status() & PCI_PRI_STATUS_STOPPED, 0);
  const a = send([0x1000, 0x2000]);
  const b = send([0x3000]);
  ctrl(0);
  assert.equal(status() & PCI_PRI_STATUS_STOPPED, 0, "disabled with requests outstanding");
  respond(b, PRG_RESPONSE_INVALID);
  respond(a, PRG_RESPONSE_SUCCESS);
  assert.deepEqual(codes, [PRG_RESPONSE_INVALID, PRG_RESPONSE_SUCCESS]);
  assert.equal(fn.priOutstanding, 0);
  assert.equal(status() & PCI_PRI_STATUS_STOPPED, PCI_PRI_STATUS_STOPPED, "all answered");
});

Deno.test("PRI: a response with no matching group sets UPRGI (RW1C); with PRG Response PASID Required the PASID must match (PCIe PRI Status)", () => {
  const { fn, enablePri, send, respond, codes, status, ctrl } = priSetup({
    prgResponsePasidRequired: true,
  });
  enablePri();
  respond(77, PRG_RESPONSE_SUCCESS);
  assert.equal(status() & PCI_PRI_STATUS_UPRGI, PCI_PRI_STATUS_UPRGI);
  ctrl(PCI_PRI_CTRL_ENABLE, PCI_PRI_STATUS_UPRGI);
  assert.equal(status() & PCI_PRI_STATUS_UPRGI, 0, "cleared by writing 1");
  const g = send([0x1000], 9);
  respond(g, PRG_RESPONSE_SUCCESS);
  respond(g, PRG_RESPONSE_SUCCESS, true, 8);
  assert.deepEqual([codes, status() & PCI_PRI_STATUS_UPRGI], [[], PCI_PRI_STATUS_UPRGI]);
  respond(g, PRG_RESPONSE_SUCCESS, true, 9);
  assert.deepEqual([codes, fn.priOutstanding], [[PRG_RESPONSE_SUCCESS], 0]);
  const h = send([0x1000]);
  respond(h, PRG_RESPONSE_SUCCESS, true, 5);
  assert.deepEqual(codes.length, 2, "a group without a PASID matches whatever the response says");
});

Deno.test("PRI: Response Failure sets RF, fails every outstanding group and stops PRI until it is enabled again (PCIe PRI)", () => {
  const { fn, enablePri, send, respond, codes, status, ctrl, msgs } = priSetup();
  enablePri();
  const a = send([0x1000]);
  send([0x2000]);
  respond(a, 0x7); // a reserved code counts as Response Failure
  assert.deepEqual(codes, [PRG_RESPONSE_FAILURE, PRG_RESPONSE_FAILURE]);
  assert.equal(status() & PCI_PRI_STATUS_RF, PCI_PRI_STATUS_RF);
  assert.deepEqual([fn.priCredits, fn.priOutstanding], [0, 0]);
  assert.equal(send([0x3000]), -1);
  assert.equal(fn.stopMarker(1), false);
  respond(a, PRG_RESPONSE_SUCCESS);
  assert.equal(status() & PCI_PRI_STATUS_UPRGI, 0, "responses are ignored, not unexpected");
  ctrl(PCI_PRI_CTRL_ENABLE, PCI_PRI_STATUS_RF);
  assert.equal(send([0x3000]), -1, "still enabled: the failure holds until Enable goes 0→1");
  ctrl(0);
  ctrl(PCI_PRI_CTRL_ENABLE);
  assert.notEqual(send([0x3000]), -1);
  assert.equal(status() & PCI_PRI_STATUS_RF, 0);
  assert.equal(msgs.length, 3);
});

Deno.test("PRI: Reset with Enable clear forgets the outstanding groups (their owners see Response Failure); with Enable set it does nothing; it reads 0 (PCIe PRI Control)", () => {
  const { fn, enablePri, send, codes, status, ctrl } = priSetup();
  enablePri();
  send([0x1000, 0x2000]);
  ctrl(PCI_PRI_CTRL_ENABLE | PCI_PRI_CTRL_RESET);
  assert.deepEqual([codes, fn.priOutstanding], [[], 2]);
  ctrl(PCI_PRI_CTRL_RESET);
  assert.deepEqual([codes, fn.priOutstanding], [[PRG_RESPONSE_FAILURE], 0]);
  assert.equal(status() & PCI_PRI_STATUS_STOPPED, PCI_PRI_STATUS_STOPPED);
  assert.equal(fn.configRead32(fn.priCap + PCI_PRI_CTRL) & PCI_PRI_CTRL_RESET, 0);
});

Deno.test("PRI: a Stop Marker is a page request with the PASID, L=1, R=W=0; it takes no credit", () => {
  const { fn, enablePri, msgs } = priSetup();
  assert.equal(fn.stopMarker(5), false, "PRI disabled");
  enablePri(1);
  assert.equal(fn.stopMarker(5), true);
  assert.deepEqual(
    msgs.map((m) => [m.pidValid, m.pid, m.last, m.read, m.write]),
    [[true, 5, true, false, false]],
  );
  assert.equal(fn.priCredits, 1);
});
