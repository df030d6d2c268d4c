import assert from "node:assert/strict";
import { Clock, PhysicalMemory } from "@iommu-lab/hw";
import { CpuMem, DEFAULT_CPU_COSTS } from "./cpu_mem.ts";

Deno.test("CpuMem: cas64 costs one access, copyOut one line per cache line read", () => {
  const bus = new PhysicalMemory();
  bus.addRam(0x8000_0000, 1 << 20);
  const clock = new Clock();
  const mem = new CpuMem(bus, clock, DEFAULT_CPU_COSTS);
  bus.store64(0x8000_0008, 0xc7, 0);
  assert.equal(mem.cas64(0x8000_0008, 0xc7, 0, 0x47, 0), true);
  assert.equal(bus.read32(0x8000_0008), 0x47);
  assert.equal(clock.now(), DEFAULT_CPU_COSTS.memAccess);
  const out = new Uint8Array(4096);
  mem.copyOut(0x8000_0000, out);
  assert.equal(out[8], 0x47);
  assert.equal(clock.now(), DEFAULT_CPU_COSTS.memAccess + 64 * DEFAULT_CPU_COSTS.memLine);
});
