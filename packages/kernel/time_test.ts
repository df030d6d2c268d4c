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

Deno.test("SimClock.after(): work runs in time order at its own time; an advance inside it only adds time", () => {
  const clock = new SimClock();
  const seen: string[] = [];
  clock.after(300, () => seen.push(`b@${clock.now()}`));
  clock.after(100, () => {
    seen.push(`a@${clock.now()}`);
    clock.advance(50); // a poll inside the work: no other work runs from here
    clock.after(0, () => seen.push(`c@${clock.now()}`));
  });
  clock.after(300, () => seen.push(`b2@${clock.now()}`));
  clock.advance(1_000);
  assert.deepEqual(seen, ["a@100", "c@150", "b@300", "b2@300"]);
  assert.equal(clock.now(), 1_000);
  clock.after(-5, () => seen.push(`d@${clock.now()}`));
  assert.equal(seen.length, 4, "nothing runs outside advance()");
  clock.advance(0);
  assert.deepEqual(seen.slice(4), ["d@1000"]);
});

Deno.test("SimClock.cancel(): a cancelled callback never runs; cancelling twice or after the run is false", () => {
  const clock = new SimClock();
  const seen: number[] = [];
  const a = clock.after(100, () => seen.push(1));
  const b = clock.after(200, () => seen.push(2));
  assert.equal(clock.pending, 2);
  assert.equal(clock.cancel(a), true);
  assert.equal(clock.cancel(a), false);
  clock.advance(300);
  assert.deepEqual(seen, [2]);
  assert.equal(clock.cancel(b), false);
  assert.equal(clock.pending, 0);
});
