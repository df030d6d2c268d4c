import assert from "node:assert/strict";
import fc from "fast-check";
import { Clock } from "../clock.ts";
import {
  Aplic,
  APLIC_CLRIENUM,
  APLIC_CLRIP_BASE,
  APLIC_CLRIPNUM,
  APLIC_DOMAINCFG,
  APLIC_DOMAINCFG_DM,
  APLIC_DOMAINCFG_IE,
  APLIC_IDC_BASE,
  APLIC_IDC_CLAIMI,
  APLIC_IDC_IDELIVERY,
  APLIC_IDC_IFORCE,
  APLIC_IDC_ITHRESHOLD,
  APLIC_IDC_TOPI,
  APLIC_SETIE_BASE,
  APLIC_SETIENUM,
  APLIC_SETIP_BASE,
  APLIC_SETIPNUM,
  APLIC_SIZE,
  APLIC_SOURCECFG_BASE,
  APLIC_SOURCECFG_D,
  APLIC_SOURCECFG_SM_DETACH,
  APLIC_SOURCECFG_SM_EDGE_RISE,
  APLIC_SOURCECFG_SM_INACTIVE,
  APLIC_SOURCECFG_SM_LEVEL_HIGH,
  APLIC_SOURCECFG_SM_LEVEL_LOW,
  APLIC_TARGET_BASE,
} from "./aplic.ts";

const cfg = (i: number) => APLIC_SOURCECFG_BASE + 4 * (i - 1);
const target = (i: number) => APLIC_TARGET_BASE + 4 * (i - 1);
const idc = (r: number) => APLIC_IDC_BASE + r;

/** An APLIC with `lines` configured in `sm`, enabled, and delivery on. */
function setup(sm: number, lines: number[]) {
  const clock = new Clock();
  const aplic = new Aplic({ clock });
  for (const l of lines) {
    aplic.write32(cfg(l), sm);
    aplic.write32(APLIC_SETIENUM, l);
  }
  aplic.write32(idc(APLIC_IDC_IDELIVERY), 1);
  aplic.write32(APLIC_DOMAINCFG, APLIC_DOMAINCFG_IE);
  const taken: number[] = [];
  aplic.onWired = (l) => taken.push(l);
  return { clock, aplic, taken };
}

Deno.test("aplic: Level1 pending follows the input in direct mode (AIA §4.7)", async (t) => {
  await t.step("pending while high, cleared when low", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [5]);
    aplic.setWire(5, true);
    assert.equal(aplic.isPending(5), true);
    aplic.setWire(5, false);
    assert.equal(aplic.isPending(5), false);
  });
  await t.step("setip/setipnum cannot set it, in_clrip/clripnum cannot clear it", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [5]);
    aplic.write32(APLIC_SETIPNUM, 5);
    aplic.write32(APLIC_SETIP_BASE, 1 << 5);
    assert.equal(aplic.isPending(5), false);
    aplic.setWire(5, true);
    aplic.write32(APLIC_CLRIPNUM, 5);
    aplic.write32(APLIC_CLRIP_BASE, 1 << 5);
    assert.equal(aplic.isPending(5), true);
  });
  await t.step("a claim does not clear it: claimi keeps returning the line", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [5]);
    aplic.setWire(5, true);
    assert.equal(aplic.read32(idc(APLIC_IDC_CLAIMI)) >>> 16, 5);
    assert.equal(aplic.read32(idc(APLIC_IDC_CLAIMI)) >>> 16, 5);
  });
  await t.step("in_clrip reads the rectified input", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_LOW, [3]);
    assert.equal(aplic.read32(APLIC_CLRIP_BASE) & (1 << 3), 1 << 3, "Level0 with input low");
    assert.equal(aplic.isPending(3), true, "Level0 is pending while the wire is low");
    aplic.setWire(3, true);
    assert.equal(aplic.read32(APLIC_CLRIP_BASE) & (1 << 3), 0);
    assert.equal(aplic.isPending(3), false);
  });
});

Deno.test("aplic: a level line is re-delivered while asserted and stops when lowered", () => {
  const { clock, aplic, taken } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [36]);
  aplic.setWire(36, true);
  assert.deepEqual(taken, [], "delivery waits for the CPU side to advance");
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(taken, [36]);
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(taken, [36, 36], "still asserted after the handler: taken again");
  aplic.setWire(36, false);
  clock.advance(10 * clock.costs.irqDelivery);
  assert.deepEqual(taken, [36, 36]);
});

Deno.test("aplic: a disabled (masked) line is held, and delivered when enabled if still high", () => {
  const { clock, aplic, taken } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [7]);
  aplic.write32(APLIC_CLRIENUM, 7);
  assert.equal(aplic.isEnabled(7), false);
  aplic.setWire(7, true);
  clock.advance(10_000);
  assert.deepEqual(taken, []);
  assert.equal(aplic.read32(idc(APLIC_IDC_TOPI)), 0, "topi ignores disabled sources");
  aplic.write32(APLIC_SETIE_BASE, 1 << 7);
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(taken, [7]);
  aplic.write32(APLIC_CLRIENUM, 7);
  aplic.setWire(7, false);
  aplic.write32(APLIC_SETIENUM, 7);
  clock.advance(10_000);
  assert.deepEqual(taken, [7], "lowered while masked: nothing left to deliver");
});

Deno.test("aplic: an edge source is pending once per edge and cleared by the claim", () => {
  const { clock, aplic, taken } = setup(APLIC_SOURCECFG_SM_EDGE_RISE, [9]);
  aplic.setWire(9, true);
  clock.advance(10_000);
  assert.deepEqual(taken, [9], "held high after the claim: no second delivery");
  assert.equal(aplic.isPending(9), false);
  aplic.setWire(9, false);
  aplic.setWire(9, true);
  aplic.write32(APLIC_SETIPNUM, 9);
  clock.advance(10_000);
  assert.deepEqual(taken, [9, 9], "edge and setipnum before the take merge into one");
  aplic.write32(APLIC_SETIPNUM, 9);
  aplic.write32(APLIC_CLRIPNUM, 9);
  clock.advance(10_000);
  assert.deepEqual(taken, [9, 9], "cleared before it was taken");
});

Deno.test("aplic: a Detached source ignores its wire and is pended by software", () => {
  const { clock, aplic, taken } = setup(APLIC_SOURCECFG_SM_DETACH, [4]);
  aplic.setWire(4, true);
  assert.equal(aplic.isPending(4), false);
  aplic.write32(APLIC_SETIP_BASE, 1 << 4);
  clock.advance(10_000);
  assert.deepEqual(taken, [4]);
});

Deno.test("aplic: topi picks the lowest priority number, then the lowest identity", async (t) => {
  await t.step("priorities and ties", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [10, 11, 12]);
    aplic.write32(target(10), 5);
    aplic.write32(target(11), 3);
    aplic.write32(target(12), 3);
    for (const l of [10, 11, 12]) aplic.setWire(l, true);
    assert.equal(aplic.read32(idc(APLIC_IDC_TOPI)), (11 << 16) | 3);
    aplic.setWire(11, false);
    assert.equal(aplic.read32(idc(APLIC_IDC_TOPI)), (12 << 16) | 3);
  });
  await t.step("ithreshold masks priorities at or above it", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [10]);
    aplic.write32(target(10), 5);
    aplic.setWire(10, true);
    aplic.write32(idc(APLIC_IDC_ITHRESHOLD), 5);
    assert.equal(aplic.read32(idc(APLIC_IDC_TOPI)), 0);
    aplic.write32(idc(APLIC_IDC_ITHRESHOLD), 6);
    assert.equal(aplic.read32(idc(APLIC_IDC_TOPI)), (10 << 16) | 5);
  });
  await t.step("IPRIO 0 is written as 1; hart index is WARL 0", () => {
    const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [10]);
    aplic.write32(target(10), (3 << 18) | 0);
    assert.equal(aplic.read32(target(10)), 1);
  });
});

Deno.test("aplic: nothing reaches the hart without domaincfg.IE and idelivery", () => {
  const { clock, aplic, taken } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [2]);
  aplic.write32(APLIC_DOMAINCFG, APLIC_DOMAINCFG_DM);
  assert.equal(aplic.read32(APLIC_DOMAINCFG), 0x8000_0000, "IE cleared, DM is WARL 0");
  aplic.setWire(2, true);
  clock.advance(10_000);
  assert.deepEqual(taken, []);
  aplic.write32(APLIC_DOMAINCFG, APLIC_DOMAINCFG_IE);
  aplic.write32(idc(APLIC_IDC_IDELIVERY), 0);
  clock.advance(10_000);
  assert.deepEqual(taken, []);
  aplic.write32(idc(APLIC_IDC_IDELIVERY), 1);
  clock.advance(clock.costs.irqDelivery);
  assert.deepEqual(taken, [2]);
});

Deno.test("aplic: iforce raises a spurious interrupt that claimi answers with 0", () => {
  const { clock, aplic, taken } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, []);
  aplic.write32(idc(APLIC_IDC_IFORCE), 1);
  assert.equal(aplic.read32(idc(APLIC_IDC_CLAIMI)), 0);
  assert.equal(aplic.read32(idc(APLIC_IDC_IFORCE)), 0, "claim of nothing clears iforce");
  aplic.write32(idc(APLIC_IDC_IFORCE), 1);
  clock.advance(10_000);
  assert.deepEqual(taken, [], "the hart took the forced interrupt but no source was claimed");
  assert.equal(aplic.read32(idc(APLIC_IDC_IFORCE)), 0);
});

Deno.test("aplic: inactive, delegated and reserved source modes", () => {
  const { aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [6]);
  aplic.write32(cfg(6), APLIC_SOURCECFG_SM_INACTIVE);
  assert.equal(aplic.isEnabled(6), false, "going inactive clears the enable");
  aplic.write32(APLIC_SETIENUM, 6);
  assert.equal(aplic.isEnabled(6), false);
  aplic.write32(target(6), 9);
  assert.equal(aplic.read32(target(6)), 0, "an inactive source's target is read-only zero");
  aplic.write32(cfg(6), APLIC_SOURCECFG_D | 1);
  assert.equal(aplic.read32(cfg(6)), 0, "no child domains: D is WARL 0");
  aplic.write32(cfg(6), 2);
  assert.equal(aplic.read32(cfg(6)), 0, "reserved modes read back as Inactive");
});

Deno.test("aplic: register writes at every boundary and all-ones values never throw and leave reserved registers reading 0", () => {
  const { clock, aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [1]);
  for (let off = 0; off < APLIC_SIZE; off += 4) aplic.write32(off, 0xffff_ffff);
  clock.advance(1_000);
  for (let off = 0; off < APLIC_SIZE; off += 4) aplic.read32(off);
  assert.equal(aplic.read32(APLIC_SIZE - 4), 0, "beyond the last IDC");
  aplic.write32(APLIC_SETIPNUM, 0);
  aplic.write32(APLIC_SETIPNUM, 0xffff);
  clock.advance(1_000);
});

Deno.test("aplic: out-of-range lines and any register write never throw", () => {
  const { clock, aplic } = setup(APLIC_SOURCECFG_SM_LEVEL_HIGH, [1]);
  aplic.setWire(0, true);
  aplic.setWire(97, true);
  aplic.setWire(-1, true);
  aplic.setWire(1.5, true);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(APLIC_SIZE / 4 - 1), fc.nat(0xffff_ffff), fc.boolean())),
      (ops) => {
        for (const [w, v, read] of ops) {
          if (read) aplic.read32(w * 4);
          else aplic.write32(w * 4, v);
        }
        clock.advance(1_000);
      },
    ),
    { numRuns: 50 },
  );
});
