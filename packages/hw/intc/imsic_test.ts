import assert from "node:assert/strict";
import { Clock } from "../clock.ts";
import { PhysicalMemory } from "../memory.ts";
import { byteSwap32 } from "../_u64.ts";
import {
  Imsic,
  IMSIC_MMIO_PAGE_BE,
  IMSIC_MMIO_PAGE_LE,
  IMSIC_MMIO_PAGE_SZ,
  IMSIC_S_BASE,
} from "./imsic.ts";

function setup() {
  const clock = new Clock();
  const imsic = new Imsic({ clock });
  const mem = new PhysicalMemory();
  mem.addMmio(IMSIC_S_BASE, IMSIC_MMIO_PAGE_SZ, imsic, "imsic");
  imsic.eidelivery = 1;
  const got: number[] = [];
  imsic.onMsi = (id) => got.push(id);
  return { clock, imsic, mem, got };
}

Deno.test("imsic: a 32-bit write of an identity to seteipnum sets it pending", async (t) => {
  await t.step("seteipnum_le", () => {
    const { imsic, mem } = setup();
    mem.write32(IMSIC_S_BASE + IMSIC_MMIO_PAGE_LE, 17);
    assert.equal(imsic.isPending(17), true);
    assert.equal(imsic.isPending(16), false);
  });
  await t.step("seteipnum_be takes the identity byte-swapped", () => {
    const { imsic, mem } = setup();
    mem.write32(IMSIC_S_BASE + IMSIC_MMIO_PAGE_BE, byteSwap32(33));
    assert.equal(imsic.isPending(33), true);
  });
  await t.step("identity 0, identities above the file and other offsets are ignored", () => {
    const { imsic, mem } = setup();
    mem.write32(IMSIC_S_BASE, 0);
    mem.write32(IMSIC_S_BASE, 256);
    mem.write32(IMSIC_S_BASE + 8, 5);
    assert.equal(imsic.topei(), 0);
    for (let i = 1; i <= imsic.ids; i++) imsic.enable(i);
    assert.equal(imsic.topei(), 0);
  });
  await t.step("the page reads as zero", () => {
    const { mem } = setup();
    mem.write32(IMSIC_S_BASE, 5);
    assert.equal(mem.read32(IMSIC_S_BASE), 0);
  });
});

Deno.test("imsic: a disabled identity stays pending and is delivered once enabled", () => {
  const { clock, imsic, mem, got } = setup();
  mem.write32(IMSIC_S_BASE, 9);
  clock.advance(10_000);
  assert.deepEqual(got, []);
  assert.equal(imsic.isPending(9), true);
  imsic.enable(9);
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(got, [9]);
  assert.equal(imsic.isPending(9), false, "taking it claimed it (stopei)");
  clock.advance(10_000);
  assert.deepEqual(got, [9], "MSIs are edges: no re-delivery without a new write");
});

Deno.test("imsic: topei is the lowest pending-and-enabled identity below eithreshold", () => {
  const { imsic } = setup();
  imsic.onMsi = undefined;
  for (const id of [40, 12, 70]) {
    imsic.enable(id);
    imsic.setPending(id);
  }
  assert.equal(imsic.topei(), (12 << 16) | 12);
  imsic.eithreshold = 12;
  assert.equal(imsic.topei(), 0, "12 is not below a threshold of 12");
  imsic.eithreshold = 0;
  assert.equal(imsic.claim(), 12);
  assert.equal(imsic.claim(), 40);
  imsic.clearPending(70);
  assert.equal(imsic.claim(), 0);
});

Deno.test("imsic: eidelivery 0 holds interrupts until it is set again", () => {
  const { clock, imsic, mem, got } = setup();
  imsic.enable(3);
  imsic.eidelivery = 0;
  mem.write32(IMSIC_S_BASE, 3);
  clock.advance(10_000);
  assert.deepEqual(got, []);
  imsic.eidelivery = 0x4000_0000;
  assert.equal(imsic.eidelivery, 0, "APLIC pass-through mode is not implemented (WARL)");
  imsic.eidelivery = 1;
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(got, [3]);
});

Deno.test("imsic: several identities are taken one per delivery, lowest first", () => {
  const { clock, imsic, mem, got } = setup();
  for (const id of [5, 2, 8]) {
    imsic.enable(id);
    mem.write32(IMSIC_S_BASE, id);
  }
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(got, [2]);
  clock.advance(10_000);
  assert.deepEqual(got, [2, 5, 8]);
});

Deno.test("imsic: the identity count is one less than a multiple of 64", () => {
  const clock = new Clock();
  assert.equal(new Imsic({ clock }).ids, 255);
  assert.equal(new Imsic({ clock, ids: 63 }).ids, 63);
  assert.equal(new Imsic({ clock, ids: 100 }).ids, 127);
  assert.equal(new Imsic({ clock, ids: 5000 }).ids, 2047);
});
