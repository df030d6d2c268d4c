import assert from "node:assert/strict";
import { TestRam } from "./test_ram.ts";

Deno.test("TestRam.cas64 swaps only on a match and leaves the value found in lo/hi", () => {
  const ram = new TestRam(0x8000_0000, 1 << 20);
  ram.store64(0x8000_0010, 0xc7, 0x8000_0000);
  assert.equal(ram.cas64(0x8000_0010, 0x47, 0x8000_0000, 0x7, 0), false);
  assert.deepEqual([ram.lo, ram.hi], [0xc7, 0x8000_0000]);
  assert.equal(ram.read64(0x8000_0010), 0x8000_0000_0000_00c7n, "a failed CAS stores nothing");
  assert.equal(ram.cas64(0x8000_0010, 0xc7, 0x8000_0000, 0x47, 0x8000_0000), true);
  assert.equal(ram.read64(0x8000_0010), 0x8000_0000_0000_0047n);
  assert.equal(ram.cas64(0x7000_0000, 0, 0, 1, 0), false, "outside RAM");
  assert.equal(ram.fault, 1);
});

Deno.test("TestRam.copyOut crosses frames, reads untouched frames as zeros, stops at a fault", () => {
  const ram = new TestRam(0x8000_0000, 3 * 4096);
  ram.write32(0x8000_0ffc, 0x0403_0201);
  ram.write32(0x8000_2000, 0x0807_0605);
  const out = new Uint8Array(4 + 4096 + 4).fill(0xee);
  ram.copyOut(0x8000_0ffc, out);
  assert.deepEqual([...out.subarray(0, 4)], [1, 2, 3, 4]);
  assert.ok(out.subarray(4, 4100).every((b) => b === 0), "the untouched frame reads as zeros");
  assert.deepEqual([...out.subarray(4100)], [5, 6, 7, 8]);
  const tail = new Uint8Array(8).fill(0xee);
  ram.copyOut(0x8000_2ffc, tail);
  assert.equal(ram.fault, 1, "the copy ran past RAM");
  assert.deepEqual([...tail.subarray(4)], [0xee, 0xee, 0xee, 0xee]);
});
