import assert from "node:assert/strict";
import {
  MEM_ACCESS_FAULT,
  MEM_OK,
  MEM_POISON,
  type MmioHandler,
  PhysicalMemory,
  SLAB_FRAMES,
} from "./memory.ts";
import { byteSwap64, read64Split, write64Split } from "./_u64.ts";

const RAM = 0x8000_0000;

function ram(): PhysicalMemory {
  const m = new PhysicalMemory();
  m.addRam(RAM, 64 * 2 ** 30);
  return m;
}

Deno.test("memory: 64 GiB of RAM costs only the frames touched", () => {
  const m = ram();
  assert.equal(m.read32(RAM + 63 * 2 ** 30), 0);
  assert.equal(m.touchedFrames, 0, "reads of untouched frames allocate nothing");
  m.write32(RAM + 63 * 2 ** 30 + 8, 0xdead_beef);
  m.write32(RAM, 1);
  assert.equal(m.touchedFrames, 2);
  assert.equal(m.read32(RAM + 63 * 2 ** 30 + 8), 0xdead_beef);
  m.fill(RAM, 4096);
  assert.equal(m.touchedFrames, 1, "zero-filling a whole frame returns it");
});

Deno.test("memory: frames of a 64 KiB block share a slab; frameWords() gives it, the frame's words at (pfn % SLAB_FRAMES) * 1024", () => {
  const m = ram();
  const pfn = RAM / 4096 + 21; // the fifth frame of its slab
  m.write32(pfn * 4096 + 8, 0x1234_5678);
  m.write32((pfn + 1) * 4096, 0x9abc_def0);
  const w = m.frameWords(pfn)!;
  assert.equal(w, m.frameWords(pfn + 1), "one slab");
  assert.equal(w.length, SLAB_FRAMES * 1024);
  assert.equal(w[(pfn % SLAB_FRAMES) * 1024 + 2], 0x1234_5678);
  assert.equal(w[((pfn + 1) % SLAB_FRAMES) * 1024], 0x9abc_def0);
  assert.equal(m.frameWords(pfn + 2), undefined, "an untouched frame of the slab reads as zeros");
  m.fill(pfn * 4096, 4096);
  assert.equal(m.frameWords(pfn), undefined, "a zero-filled frame is untouched again");
  m.write32(pfn * 4096, 1);
  assert.equal(m.read32(pfn * 4096 + 8), 0, "and comes back zeroed");
  assert.equal(m.read32((pfn + 1) * 4096), 0x9abc_def0, "its neighbour keeps its data");
});

Deno.test("memory: little- and big-endian 32/64-bit accesses", async (t) => {
  await t.step("LE 64-bit splits into halves, low word first", () => {
    const m = ram();
    m.write64(RAM + 0x10, 0x0102_0304_0506_0708n);
    assert.equal(m.read32(RAM + 0x10), 0x0506_0708);
    assert.equal(m.read32(RAM + 0x14), 0x0102_0304);
    assert.equal(m.read8(RAM + 0x10), 0x08);
  });
  await t.step("BE 64-bit puts the most significant byte first", () => {
    const m = ram();
    m.write64(RAM + 0x10, 0x0102_0304_0506_0708n, true);
    assert.equal(m.read8(RAM + 0x10), 0x01);
    assert.equal(m.read64(RAM + 0x10), byteSwap64(0x0102_0304_0506_0708n));
    assert.equal(m.read64(RAM + 0x10, true), 0x0102_0304_0506_0708n);
    m.load64(RAM + 0x10, true);
    assert.deepEqual([m.hi, m.lo], [0x0102_0304, 0x0506_0708]);
  });
  await t.step("BE 32-bit and 16-bit", () => {
    const m = ram();
    m.write32(RAM, 0xa1b2_c3d4, true);
    assert.equal(m.read32(RAM), 0xd4c3_b2a1);
    assert.equal(m.read32(RAM, true), 0xa1b2_c3d4);
    assert.equal(m.read16(RAM, true), 0xa1b2);
  });
  await t.step("accesses that straddle a frame boundary", () => {
    const m = ram();
    m.write64(RAM + 0xffc, 0x1122_3344_5566_7788n);
    assert.equal(m.read64(RAM + 0xffc), 0x1122_3344_5566_7788n);
    assert.equal(m.read32(RAM + 0x1000), 0x1122_3344);
    m.write32(RAM + 0x1ffe, 0xcafe_f00d, true);
    assert.equal(m.read32(RAM + 0x1ffe, true), 0xcafe_f00d);
  });
});

Deno.test("memory: an access straddling the end of RAM or a fault faults whole and stores nothing", async (t) => {
  const END = RAM + 64 * 2 ** 30;
  await t.step("a 64-bit read whose high half is past RAM", () => {
    const m = ram();
    m.write32(END - 4, 0x1234_5678);
    m.load64(END - 4);
    assert.equal(m.fault, MEM_ACCESS_FAULT);
    assert.deepEqual([m.lo, m.hi], [0, 0]);
    assert.equal(m.read32(END - 2), 0);
    assert.equal(m.fault, MEM_ACCESS_FAULT, "a 32-bit read too, even of an untouched frame");
  });
  await t.step("a 64-bit read whose low half is poisoned keeps the poison", () => {
    const m = ram();
    m.injectFault(RAM + 0xffc, 4, MEM_POISON);
    m.load64(RAM + 0xffc);
    assert.equal(m.fault, MEM_POISON);
  });
  await t.step("writes store no byte of a straddling access", () => {
    const m = ram();
    m.write32(END - 8, 0x1111_1111);
    m.write32(END - 4, 0x2222_2222);
    m.write64(END - 4, 0xffff_ffff_ffff_ffffn);
    assert.equal(m.fault, MEM_ACCESS_FAULT);
    m.write32(END - 2, 0xffff_ffff);
    assert.equal(m.fault, MEM_ACCESS_FAULT);
    assert.equal(m.read32(END - 4), 0x2222_2222, "nothing half-written");
  });
});

Deno.test("memory: read64Split/write64Split are two 4-byte accesses, low word first", () => {
  const log: string[] = [];
  const dev = {
    read32: (o: number) => (log.push(`r${o}`), o === 8 ? 0x89ab_cdef : 0x0123_4567),
    write32: (o: number, v: number) => void log.push(`w${o}=${v.toString(16)}`),
  };
  assert.equal(read64Split(dev, 8), 0x0123_4567_89ab_cdefn);
  write64Split(dev, 16, 0x1122_3344_5566_7788n);
  assert.deepEqual(log, ["r8", "r12", "w16=55667788", "w20=11223344"]);
});

Deno.test("memory: atomic compare-and-swap and OR", () => {
  const m = ram();
  m.write64(RAM, 0x11n);
  assert.equal(m.cas64(RAM, 0x12, 0, 0x51, 0), false, "CAS fails on a mismatch");
  assert.equal(m.read64(RAM), 0x11n);
  assert.equal(m.cas64(RAM, 0x11, 0, 0xd1, 0x8000_0000), true);
  assert.equal(m.read64(RAM), 0x8000_0000_0000_00d1n);
  assert.equal(m.cmpxchg64(RAM, 0x8000_0000_0000_00d1n, 5n), 0x8000_0000_0000_00d1n);
  assert.equal(m.read64(RAM), 5n);
  assert.equal(m.or32(RAM + 8, 0x40), 0);
  assert.equal(m.or32(RAM + 8, 0x80), 0x40);
  assert.equal(m.read32(RAM + 8), 0xc0);
  m.or64(RAM + 16, 0, 0x100);
  assert.equal(m.read64(RAM + 16), 0x100_0000_0000n);
});

Deno.test("memory: accesses outside every region fault and never throw", () => {
  const m = ram();
  assert.equal(m.read32(0x1000), 0);
  assert.equal(m.fault, MEM_ACCESS_FAULT);
  m.write64(0x1000, 1n);
  assert.equal(m.fault, MEM_ACCESS_FAULT);
  assert.equal(m.cas64(0x1000, 0, 0, 1, 0), false);
  m.read32(RAM);
  assert.equal(m.fault, MEM_OK);
  m.readBytes(RAM + 64 * 2 ** 30 - 8, 16);
  assert.equal(m.fault, MEM_ACCESS_FAULT, "a copy running off the end of RAM faults");
});

Deno.test("memory: injected access faults and poison", async (t) => {
  await t.step("an access fault covers reads and writes of the range", () => {
    const m = ram();
    m.write32(RAM + 0x2000, 7);
    m.injectFault(RAM + 0x2000, 8);
    assert.equal(m.read32(RAM + 0x2004), 0);
    assert.equal(m.fault, MEM_ACCESS_FAULT);
    m.write32(RAM + 0x2000, 9);
    assert.equal(m.fault, MEM_ACCESS_FAULT);
    assert.equal(m.read32(RAM + 0x2008), 0);
    assert.equal(m.fault, MEM_OK, "the byte after the range is fine");
    m.clearFaults();
    assert.equal(m.read32(RAM + 0x2000), 7, "the faulted write was dropped");
  });
  await t.step("poison affects reads only", () => {
    const m = ram();
    m.injectFault(RAM, 4096, MEM_POISON);
    m.load64(RAM + 8);
    assert.equal(m.fault, MEM_POISON);
    m.write32(RAM + 8, 1);
    assert.equal(m.fault, MEM_OK);
  });
  await t.step("a write-only fault leaves reads working", () => {
    const m = ram();
    m.injectFault(RAM, 4096, MEM_ACCESS_FAULT, "write");
    m.read32(RAM);
    assert.equal(m.fault, MEM_OK);
    m.write32(RAM, 1);
    assert.equal(m.fault, MEM_ACCESS_FAULT);
  });
});

Deno.test("memory: MMIO regions route 4- and 8-byte accesses to the device", () => {
  const m = ram();
  const log: string[] = [];
  const dev: MmioHandler = {
    read32: (o) => (log.push(`r32 ${o}`), 0x1234),
    write32: (o, v) => void log.push(`w32 ${o} ${v}`),
    read64: (o) => (log.push(`r64 ${o}`), 0xabn),
    write64: (o, v) => void log.push(`w64 ${o} ${v}`),
  };
  m.addMmio(0x0301_0000, 0x1000, dev, "iommu");
  assert.equal(m.read32(0x0301_0048), 0x1234);
  m.write32(0x0301_0024, 5);
  assert.equal(m.read64(0x0301_0010), 0xabn);
  m.write64(0x0301_0018, 0x99n);
  assert.deepEqual(log, ["r32 72", "w32 36 5", "r64 16", "w64 24 153"]);
  assert.equal(m.fault, MEM_OK);
  assert.throws(() => m.addRam(0x0301_0800, 4096), RangeError, "overlapping regions are refused");
});

Deno.test("memory: bulk copy, fill and writeBytes across frames", () => {
  const m = ram();
  const data = new Uint8Array(10000).map((_, i) => i & 0xff);
  m.writeBytes(RAM + 100, data);
  m.copy(RAM + 0x10_0000, RAM + 100, data.length);
  assert.deepEqual(m.readBytes(RAM + 0x10_0000, data.length), data);
  m.fill(RAM + 0x10_0000 + 10, 5, 0xee);
  assert.deepEqual([...m.readBytes(RAM + 0x10_0000 + 9, 7)], [9, 0xee, 0xee, 0xee, 0xee, 0xee, 15]);
});
