import assert from "node:assert/strict";
import {
  IoMem,
  ioremap,
  Kernel,
  type MmioBackend,
  MmioRecorder,
  PollTimeout,
  read_poll_timeout_backoff,
  readl,
  readl_poll_timeout,
  readq,
  readq_poll_timeout,
  SimClock,
  writel,
  writeq,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

/** A register file: 64-bit registers of which 32-bit halves can be accessed. */
class Regs implements MmioBackend {
  readonly v = new Map<number, bigint>();
  read32(o: number): number {
    const q = this.v.get(o & ~7) ?? 0n;
    return Number(o & 4 ? q >> 32n : q & 0xffff_ffffn);
  }
  write32(o: number, x: number): void {
    const q = this.v.get(o & ~7) ?? 0n;
    this.v.set(
      o & ~7,
      o & 4 ? (q & 0xffff_ffffn) | BigInt(x >>> 0) << 32n : (q & ~0xffff_ffffn) | BigInt(x >>> 0),
    );
  }
  read64(o: number): bigint {
    return this.v.get(o) ?? 0n;
  }
  write64(o: number, x: bigint): void {
    this.v.set(o, x);
  }
}

Deno.test("readl/writel/readq/writeq reach the backend at base + offset, values unsigned", () => {
  const regs = new Regs();
  const rec = new MmioRecorder(regs);
  const io = new IoMem(rec, 0x100, new SimClock(), 0x1000);
  writel(io, 0x10, -1);
  writeq(io, 0x18, -2n);
  assert.equal(readl(io, 0x10), 0xffff_ffff);
  assert.equal(readq(io, 0x18), 0xffff_ffff_ffff_fffen);
  assert.deepEqual(rec.accesses, [
    { op: "w", size: 4, offset: 0x1010, value: 0xffff_ffff },
    { op: "w", size: 8, offset: 0x1018, value: 0xffff_ffff_ffff_fffen },
    { op: "r", size: 4, offset: 0x1010, value: 0xffff_ffff },
    { op: "r", size: 8, offset: 0x1018, value: 0xffff_ffff_ffff_fffen },
  ]);
  assert.deepEqual(rec.writes(), [[0x1010, 0xffff_ffff], [0x1018, 0xffff_ffff_ffff_fffen]]);
  rec.clear();
  assert.equal(rec.accesses.length, 0);
});

Deno.test("accesses outside the IoMem window are EINVAL (a driver bug), not silent", () => {
  const io = new IoMem(new Regs(), 0x100, new SimClock());
  assert.throws(() => readl(io, 0x100), { code: "EINVAL" });
  assert.throws(() => readq(io, 0xfc), { code: "EINVAL" });
  assert.throws(() => writel(io, -4, 0), { code: "EINVAL" });
});

Deno.test("ioremap() goes through the machine's IoremapFn; unmapped space is ENOMEM", () => {
  const regs = new Regs();
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 20),
    ioremap: (pa, size) =>
      pa >= 0x301_0000 && pa + size <= 0x301_1000
        ? { backend: regs, offset: pa - 0x301_0000 }
        : null,
  });
  const io = ioremap(kernel, 0x301_0100, 0x100);
  writel(io, 4, 7);
  assert.equal(regs.read32(0x104), 7);
  assert.equal(io.phys, 0x301_0100);
  assert.throws(() => ioremap(kernel, 0x400_0000, 0x1000), { code: "ENOMEM" });
  assert.throws(() => ioremap(new Kernel({ mem: new TestRam(0, 4096) }), 0, 4), {
    code: "ENOMEM",
  });
});

Deno.test("readl_poll_timeout() advances simulated time by delay_us until the condition holds", () => {
  const clock = new SimClock();
  const regs = new Regs();
  regs.write32(0x10, 1 << 17); // BUSY
  const io = new IoMem(regs, 0x100, clock);
  // A device that clears BUSY once 35 us have passed.
  const dev: MmioBackend = {
    ...regs,
    read32: (o) => (clock.now() >= 35_000 ? 0 : regs.read32(o)),
    write32: regs.write32.bind(regs),
    read64: regs.read64.bind(regs),
    write64: regs.write64.bind(regs),
  };
  const io2 = new IoMem(dev, 0x100, clock);
  assert.equal(readl_poll_timeout(io2, 0x10, (v) => (v & 1 << 17) === 0, 10, 1000), 0);
  assert.equal(clock.now(), 40_000);
  const t0 = clock.now();
  assert.throws(
    () => readl_poll_timeout(io, 0x10, (v) => (v & 1 << 17) === 0, 10, 100),
    (e) => e instanceof PollTimeout && e.code === "ETIMEDOUT" && e.value === 1 << 17,
  );
  const waited = clock.now() - t0;
  assert.ok(waited > 100_000 && waited <= 110_000, `waited ${waited} ns`);
});

Deno.test("readq_poll_timeout() with delay 0 still advances time (1 us steps), never spins", () => {
  const clock = new SimClock();
  const io = new IoMem(new Regs(), 0x100, clock);
  assert.throws(() => readq_poll_timeout(io, 0, (v) => v === 1n, 0, 5), { code: "ETIMEDOUT" });
  assert.equal(clock.now(), 6_000);
  assert.throws(() => readq_poll_timeout(io, 0, () => true, 0, 0), { code: "EINVAL" });
});

Deno.test("read_poll_timeout_backoff() doubles the delay up to timeout/1024: few reads, quick answers seen", async (t) => {
  await t.step("a device ready after 40 us is seen before 80 us", () => {
    const clock = new SimClock();
    const times: number[] = [];
    const v = read_poll_timeout_backoff(
      clock,
      () => (times.push(clock.now()), clock.now() < 40_000 ? 1 : 0),
      (x) => x === 0,
      0,
      90e6,
    );
    assert.equal(v, 0);
    // 1, 2, 4, 8, 16, 32 us steps.
    assert.deepEqual(times, [0, 1, 3, 7, 15, 31, 63].map((us) => us * 1000));
  });
  await t.step("a stuck device times out after the timeout, reading about a thousand times", () => {
    const clock = new SimClock();
    let reads = 0;
    assert.throws(
      () => read_poll_timeout_backoff(clock, () => (reads++, 7), (x) => x === 0, 10, 1_000_000),
      (e: unknown) => e instanceof PollTimeout && e.value === 7 && e.code === "ETIMEDOUT",
    );
    assert.ok(clock.now() > 1e9 && clock.now() <= 1e9 + 1e9 / 1024 + 1, `${clock.now()} ns`);
    assert.ok(reads > 1000 && reads < 1100, `${reads} reads`);
  });
  await t.step("bad delay or timeout is EINVAL", () => {
    const clock = new SimClock();
    for (const [d, to] of [[-1, 10], [0, 0], [NaN, 10]]) {
      assert.throws(() => read_poll_timeout_backoff(clock, () => 0, () => true, d, to), {
        code: "EINVAL",
      });
    }
  });
});
