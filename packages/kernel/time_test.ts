import assert from "node:assert/strict";
import { Kernel, ktime_get, msleep, ndelay, SimClock, udelay } from "./mod.ts";
import { TestRam } from "./testing.ts";

Deno.test("ndelay()/udelay()/msleep() advance the kernel's simulated clock, never the wall clock", () => {
  const clock = new SimClock(5);
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), clock });
  ndelay(kernel, 7);
  udelay(kernel, 3);
  msleep(kernel, 2);
  assert.equal(ktime_get(kernel), 5 + 7 + 3_000 + 2_000_000);
  assert.equal(clock.now(), ktime_get(kernel));
});

Deno.test("SimClock.advance(): a negative, NaN or infinite step is EINVAL and time stays put", () => {
  const clock = new SimClock();
  for (const ns of [-1, NaN, Infinity]) {
    assert.throws(() => clock.advance(ns), { code: "EINVAL" }, `${ns}`);
  }
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), clock });
  assert.throws(() => udelay(kernel, -1), { code: "EINVAL" });
  assert.equal(clock.now(), 0);
});
