import assert from "node:assert/strict";
import { Clock } from "../clock.ts";
import {
  ConfigSpace,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_MSIX,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_REVISION,
  PCI_COMMAND,
  PCI_EXT_CAP_ID_ATS,
  PCI_EXT_CAP_ID_PASID,
  PCI_EXT_CAP_ID_PRI,
  PCI_EXT_CAP_START,
  PCI_PASID_CAP,
  PCI_PASID_CTRL,
  PCI_PRI_ALLOC_REQ,
  PCI_PRI_CTRL,
  PCI_PRI_MAX_REQ,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_STOPPED,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
} from "./config.ts";
import { PciFunction } from "./function.ts";

const nop = { read32: () => 0, write32() {}, read64: () => 0n, write64() {} };

function fullFunction(): PciFunction {
  return new PciFunction({
    clock: new Clock(),
    vendorId: 0x1234,
    deviceId: 0x5678,
    classCode: 0x080100,
    revision: 3,
    bars: [
      { index: 0, size: 0x4000, is64: true, handler: nop },
      { index: 2, size: 0x100, handler: nop },
      { index: 3, size: 0x10_0000, is64: true, prefetchable: true, handler: nop },
    ],
    msix: { vectors: 4, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000 },
    ats: { invalidateQueueDepth: 8 },
    pri: { outstandingCapacity: 32 },
    pasid: { width: 20, exec: false, priv: true },
  });
}

/** Walks the standard list as Linux's pci_find_capability() does: [id, offset] pairs. */
function walkCaps(fn: PciFunction): [number, number][] {
  const out: [number, number][] = [];
  if (!((fn.configRead32(PCI_COMMAND) >>> 16) & PCI_STATUS_CAP_LIST)) return out;
  let pos = fn.configRead32(PCI_CAPABILITY_LIST) & 0xfc;
  for (let ttl = 48; pos !== 0 && ttl > 0; ttl--) {
    const dw = fn.configRead32(pos);
    out.push([dw & 0xff, pos]);
    pos = (dw >>> 8) & 0xfc;
  }
  return out;
}

/** Walks the extended list as pci_find_ext_capability() does: [id, version, offset]. */
function walkExtCaps(fn: PciFunction): [number, number, number][] {
  const out: [number, number, number][] = [];
  let pos = PCI_EXT_CAP_START;
  for (let ttl = 480; pos !== 0 && ttl > 0; ttl--) {
    const hdr = fn.configRead32(pos);
    if (hdr === 0) break;
    out.push([hdr & 0xffff, (hdr >>> 16) & 0xf, pos]);
    pos = hdr >>> 20;
  }
  return out;
}

Deno.test("pci: a write honours read-only, read-write and write-1-to-clear bits", () => {
  const cfg = new ConfigSpace();
  cfg.set32(0x40, 0xaabb_ccdd);
  cfg.setWritable(0x40, 4, 0x0000_ff00);
  cfg.setW1c(0x40, 4, 0xff00_0000);
  cfg.write32(0x40, 0x0f00_1122);
  assert.equal(cfg.read32(0x40), 0xa0bb_11dd, "RO kept, RW taken, RW1C cleared where 1");
  assert.equal(cfg.read32(0x41), cfg.read32(0x40), "sub-dword offsets address their dword");
  assert.equal(cfg.read32(0x1000), 0xffff_ffff, "outside the 4 KiB space reads all-ones");
  cfg.write32(-4, 0); // ignored, never throws
});

Deno.test("pci: BAR sizing reads back the size mask and type bits (PCI 6.2.5.1)", async (t) => {
  const fn = fullFunction();
  await t.step("64-bit BAR0, 16 KiB", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0, 0xffff_ffff);
    fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0xffff_ffff);
    assert.equal(fn.configRead32(PCI_BASE_ADDRESS_0), 0xffff_c004);
    assert.equal(fn.configRead32(PCI_BASE_ADDRESS_0 + 4), 0xffff_ffff);
    const mask = BigInt(fn.configRead32(PCI_BASE_ADDRESS_0 + 4)) << 32n |
      BigInt((fn.configRead32(PCI_BASE_ADDRESS_0) & ~0xf) >>> 0);
    const size = BigInt.asUintN(64, ~mask + 1n);
    assert.equal(size, 0x4000n);
  });
  await t.step("32-bit BAR2, 256 bytes", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0 + 8, 0xffff_ffff);
    assert.equal(fn.configRead32(PCI_BASE_ADDRESS_0 + 8), 0xffff_ff00);
  });
  await t.step("64-bit prefetchable BAR3, 1 MiB", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0 + 12, 0xffff_ffff);
    assert.equal(fn.configRead32(PCI_BASE_ADDRESS_0 + 12), 0xfff0_000c);
  });
  await t.step("unimplemented BAR5 and the ROM BAR read 0", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0 + 20, 0xffff_ffff);
    assert.equal(fn.configRead32(PCI_BASE_ADDRESS_0 + 20), 0);
    fn.configWrite32(0x30, 0xffff_f800);
    assert.equal(fn.configRead32(0x30), 0);
  });
  await t.step("an assigned address reads back", () => {
    fn.configWrite32(PCI_BASE_ADDRESS_0, 0x4000_8000);
    fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0);
    assert.equal(fn.barAddress(0), 0x4000_8000);
  });
});

Deno.test("pci: the header identifies the function and is read-only", () => {
  const fn = fullFunction();
  assert.equal(fn.configRead32(0), 0x5678_1234);
  assert.equal(fn.configRead32(PCI_CLASS_REVISION), 0x0801_0003);
  fn.configWrite32(0, 0);
  fn.configWrite32(PCI_CLASS_REVISION, 0);
  assert.equal(fn.configRead32(0), 0x5678_1234);
  assert.equal(fn.configRead32(PCI_CLASS_REVISION), 0x0801_0003);
  fn.configWrite32(PCI_COMMAND, 0xffff_ffff);
  assert.equal(fn.configRead32(PCI_COMMAND) & 0xffff, 0x0546, "only MEM/BME/PERR/SERR/INTx-dis");
  assert.equal(fn.configRead32(PCI_STATUS) >>> 16 & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
});

Deno.test("pci: capability chain walk finds PCIe and MSI-X, then ATS, PRI and PASID", () => {
  const fn = fullFunction();
  const caps = walkCaps(fn);
  assert.deepEqual(caps.map(([id]) => id), [PCI_CAP_ID_EXP, PCI_CAP_ID_MSIX]);
  assert.deepEqual(caps.map(([, off]) => off), [fn.expCap, fn.msix!.cap]);
  assert.equal(fn.configRead32(fn.expCap) >>> 16 & 0xf0, 0x90, "root-complex integrated endpoint");
  const ext = walkExtCaps(fn);
  assert.deepEqual(ext.map(([id]) => id), [
    PCI_EXT_CAP_ID_ATS,
    PCI_EXT_CAP_ID_PRI,
    PCI_EXT_CAP_ID_PASID,
  ]);
  assert.deepEqual(ext.map(([, , off]) => off), [fn.atsCap, fn.priCap, fn.pasidCap]);
  assert.ok(ext.every(([, v]) => v === 1));
  const plain = new PciFunction({ clock: new Clock(), vendorId: 1, deviceId: 2, classCode: 0 });
  assert.deepEqual(walkExtCaps(plain), [], "no extended capabilities: header 0 at 0x100");
});

Deno.test("pci: MSI-X capability describes the table and PBA", () => {
  const fn = fullFunction();
  const cap = fn.msix!.cap;
  assert.equal(fn.configRead32(cap) >>> 16, 3, "table size minus one; disabled and unmasked");
  assert.equal(fn.configRead32(cap + 4), 0x2000, "table at BAR0 + 0x2000");
  assert.equal(fn.configRead32(cap + 8), 0x3000, "PBA at BAR0 + 0x3000");
  fn.configWrite32(cap, 0xffff_ffff);
  assert.equal(fn.configRead32(cap) >>> 16, 0xc003, "only Enable and Function Mask are writable");
});

Deno.test("pci: ATS control enables and sets STU; the capability reports the queue depth", () => {
  const fn = fullFunction();
  assert.equal(fn.configRead32(fn.atsCap + 4) & 0x1f, 8);
  fn.configWrite32(fn.atsCap + 4, (PCI_ATS_CTRL_ENABLE | 3) << 16);
  assert.equal(fn.atsEnabled, true);
  assert.equal(fn.atsStu, 3);
  assert.equal(fn.config.get16(fn.atsCap + PCI_ATS_CTRL), 0x8003);
});

Deno.test("pci: PRI enable, reset, stopped and outstanding allocation", () => {
  const fn = fullFunction();
  const st = () => fn.config.get16(fn.priCap + PCI_PRI_STATUS);
  assert.equal(st() & PCI_PRI_STATUS_STOPPED, PCI_PRI_STATUS_STOPPED, "disabled and idle");
  assert.equal(fn.configRead32(fn.priCap + PCI_PRI_MAX_REQ), 32);
  fn.configWrite32(fn.priCap + PCI_PRI_ALLOC_REQ, 16);
  assert.equal(fn.configRead32(fn.priCap + PCI_PRI_ALLOC_REQ), 16);
  fn.configWrite32(fn.priCap + PCI_PRI_CTRL, 1);
  assert.equal(fn.priEnabled, true);
  assert.equal(st() & PCI_PRI_STATUS_STOPPED, 0, "enabled: not stopped");
  fn.configWrite32(fn.priCap + PCI_PRI_CTRL, 2);
  assert.equal(fn.config.get16(fn.priCap + PCI_PRI_CTRL), 0, "reset reads 0; enable cleared");
  assert.equal(st() & PCI_PRI_STATUS_STOPPED, PCI_PRI_STATUS_STOPPED);
  fn.config.set16(fn.priCap + PCI_PRI_STATUS, st() | PCI_PRI_STATUS_RF);
  fn.configWrite32(fn.priCap + PCI_PRI_CTRL, PCI_PRI_STATUS_RF << 16);
  assert.equal(st() & PCI_PRI_STATUS_RF, 0, "response failure is RW1C");
});

Deno.test("pci: PASID control bits are writable only when supported", () => {
  const fn = fullFunction();
  assert.equal(fn.config.get16(fn.pasidCap + PCI_PASID_CAP), 0x1404, "width 20, priv, no exec");
  fn.configWrite32(fn.pasidCap + 4, 0x7 << 16);
  assert.equal(fn.config.get16(fn.pasidCap + PCI_PASID_CTRL), 0x5, "exec enable is RO 0");
  assert.equal(fn.pasidEnabled, true);
});

Deno.test("pci: impossible layouts are rejected when the model is built", () => {
  const clock = new Clock();
  const base = { clock, vendorId: 1, deviceId: 1, classCode: 0 };
  assert.throws(
    () => new PciFunction({ ...base, bars: [{ index: 0, size: 3000, handler: nop }] }),
    RangeError,
  );
  assert.throws(
    () =>
      new PciFunction({
        ...base,
        bars: [{ index: 0, size: 4096, is64: true, handler: nop }, {
          index: 1,
          size: 4096,
          handler: nop,
        }],
      }),
    RangeError,
  );
  assert.throws(
    () =>
      new PciFunction({
        ...base,
        bars: [{ index: 0, size: 4096, handler: nop }],
        msix: { vectors: 8, bar: 0, tableOffset: 0xfc0, pbaOffset: 0 },
      }),
    RangeError,
  );
});
