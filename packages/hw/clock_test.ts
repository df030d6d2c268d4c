import assert from "node:assert/strict";
import fc from "fast-check";
import { Clock, DEFAULT_COSTS } from "./clock.ts";

Deno.test("clock: charge moves time but never runs events", () => {
  const c = new Clock();
  let ran = 0;
  c.after(100, () => ran++);
  c.charge(500);
  assert.equal(c.now(), 500);
  assert.equal(ran, 0, "a model's charge must not re-enter devices");
  c.charge(-5);
  assert.equal(c.now(), 500, "negative charges are ignored");
  c.advance(0);
  assert.equal(ran, 1);
  assert.equal(c.pending, 0);
});

Deno.test("clock: advance runs due events in time order at their scheduled time", () => {
  const c = new Clock();
  const log: string[] = [];
  c.schedule(300, () => log.push(`b@${c.now()}`));
  c.schedule(100, () => log.push(`a@${c.now()}`));
  c.schedule(300, () => log.push(`c@${c.now()}`));
  c.schedule(900, () => log.push(`late@${c.now()}`));
  c.advance(500);
  assert.deepEqual(log, ["a@100", "b@300", "c@300"], "ties run in scheduling order");
  assert.equal(c.now(), 500);
  assert.equal(c.nextEventAt(), 900);
  assert.equal(c.advanceToNextEvent(), true);
  assert.deepEqual(log.at(-1), "late@900");
  assert.equal(c.advanceToNextEvent(), false, "nothing left to wait for");
});

Deno.test("clock: an event scheduled by an event runs in the same advance when due", () => {
  const c = new Clock();
  const log: number[] = [];
  c.after(10, () => {
    log.push(c.now());
    c.after(10, () => log.push(c.now()));
  });
  c.advance(100);
  assert.deepEqual(log, [10, 20]);
});

Deno.test("clock: advance from inside an event only adds time (no nested delivery)", () => {
  const c = new Clock();
  const log: string[] = [];
  c.after(10, () => {
    log.push("outer-start");
    c.advance(50);
    log.push(`outer-end@${c.now()}`);
  });
  c.after(20, () => log.push(`inner@${c.now()}`));
  c.advance(10);
  assert.deepEqual(log, ["outer-start", "outer-end@60", "inner@60"]);
});

Deno.test("clock: cancel removes an event exactly once", () => {
  const c = new Clock();
  let ran = false;
  const id = c.after(10, () => ran = true);
  assert.equal(c.cancel(id), true);
  assert.equal(c.cancel(id), false);
  c.advance(100);
  assert.equal(ran, false);
});

Deno.test("clock: advance rejects negative and non-finite steps", () => {
  const c = new Clock();
  assert.throws(() => c.advance(-1), RangeError);
  assert.throws(() => c.advance(NaN), RangeError);
  assert.throws(() => c.advance(Infinity), RangeError);
  assert.equal(c.now(), 0);
});

Deno.test("clock: cost overrides keep the other defaults", () => {
  const c = new Clock({ mmio: 7 });
  assert.equal(c.costs.mmio, 7);
  assert.equal(c.costs.walkStep, DEFAULT_COSTS.walkStep);
  assert.equal(Object.isFrozen(c.costs), true);
});

Deno.test("clock: events of the same time run in scheduling order, after earlier ones scheduled later", () => {
  const c = new Clock();
  const ran: string[] = [];
  c.schedule(20, () => ran.push("a@20"));
  c.schedule(10, () => ran.push("b@10"));
  c.schedule(20, () => ran.push("c@20"));
  c.schedule(10, () => ran.push("d@10"));
  c.schedule(0, () => ran.push("e@0"));
  c.advance(20);
  assert.deepEqual(ran, ["e@0", "b@10", "d@10", "a@20", "c@20"]);
});

Deno.test("clock: events run in (time, scheduling order) whatever the insertion order", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { maxLength: 40 }), (times) => {
      const c = new Clock();
      const ran: [number, number][] = [];
      times.forEach((t, i) => c.schedule(t, () => ran.push([t, i])));
      c.advance(1000);
      const want = times.map((t, i) => [t, i] as [number, number])
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      assert.deepEqual(ran, want);
    }),
  );
});
