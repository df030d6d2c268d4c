import assert from "node:assert/strict";
import { Atc, ATC_NO_PASID } from "./atc.ts";

Deno.test("atc: lookups match the PASID the translation was obtained with", () => {
  const atc = new Atc(4);
  atc.insert(7, 0x1000, 4096, 0x8000_1000, 3, false, false);
  assert.equal(atc.lookup(7, 0x1ff8), true);
  assert.equal(atc.pa, 0x8000_1ff8);
  assert.equal(atc.lookup(8, 0x1000), false);
  assert.equal(atc.lookup(ATC_NO_PASID, 0x1000), false);
});

Deno.test("atc: a Global entry serves every PASID but not PASID-less requests", () => {
  const atc = new Atc(4);
  atc.insert(7, 0x1000, 4096, 0x8000_1000, 1, false, true);
  assert.equal(atc.lookup(9, 0x1000), true);
  assert.equal(atc.perm, 1);
  assert.equal(atc.lookup(ATC_NO_PASID, 0x1000), false);
});

Deno.test("atc: invalidation scope (PCIe ATS invalidate request)", async (t) => {
  const fill = () => {
    const atc = new Atc(8);
    atc.insert(ATC_NO_PASID, 0x0000, 4096, 0x9000_0000, 3, false, false);
    atc.insert(1, 0x0000, 4096, 0x9100_0000, 3, false, false);
    atc.insert(2, 0x0000, 4096, 0x9200_0000, 3, false, true);
    atc.insert(1, 0x20_0000, 0x20_0000, 0x9400_0000, 3, false, false);
    return atc;
  };
  await t.step("no PASID: every overlapping entry, whatever its PASID", () => {
    const atc = fill();
    assert.equal(atc.invalidate(undefined, 0, 4096, false), 3);
    assert.equal(atc.entries, 1);
  });
  await t.step("with a PASID: only that PASID's entries", () => {
    const atc = fill();
    assert.equal(atc.invalidate(1, 0, 4096, false), 1);
    assert.equal(atc.lookup(ATC_NO_PASID, 0), true);
    assert.equal(atc.lookup(2, 0), true);
  });
  await t.step("with a PASID and Global: also Global entries of other PASIDs", () => {
    const atc = fill();
    assert.equal(atc.invalidate(1, 0, 4096, true), 2);
    assert.equal(atc.lookup(ATC_NO_PASID, 0), true);
  });
  await t.step("a range inside a superpage entry drops the whole entry", () => {
    const atc = fill();
    assert.equal(atc.invalidate(1, 0x30_0000, 4096, false), 1);
    assert.equal(atc.lookup(1, 0x20_0000), false);
  });
});

Deno.test("atc: replacement is round-robin once full; a refill of a range reuses its slot", () => {
  const atc = new Atc(2);
  atc.insert(ATC_NO_PASID, 0x1000, 4096, 0x1000, 1, false, false);
  atc.insert(ATC_NO_PASID, 0x1000, 4096, 0x1000, 3, false, false);
  assert.equal(atc.entries, 1);
  atc.lookup(ATC_NO_PASID, 0x1000);
  assert.equal(atc.perm, 3);
  atc.insert(ATC_NO_PASID, 0x2000, 4096, 0x2000, 3, false, false);
  atc.insert(ATC_NO_PASID, 0x3000, 4096, 0x3000, 3, true, false);
  assert.equal(atc.entries, 2);
  assert.equal(atc.lookup(ATC_NO_PASID, 0x2000), true, "0x2000 went to the free slot");
  assert.equal(atc.lookup(ATC_NO_PASID, 0x3000), true);
  assert.equal(atc.untranslatedOnly, true);
  atc.flush();
  assert.equal(atc.entries, 0);
});
