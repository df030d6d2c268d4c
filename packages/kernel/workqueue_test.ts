import assert from "node:assert/strict";
import {
  alloc_workqueue,
  destroy_workqueue,
  flush_workqueue,
  INIT_WORK,
  Kernel,
  queue_work,
  SimClock,
  WorkStruct,
  WQ_UNBOUND,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

function kernel(clock = new SimClock()): Kernel {
  return new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), clock });
}

Deno.test("queue_work(): work runs at the next clock advance, in queueing order, not inside the caller", () => {
  const k = kernel();
  const wq = alloc_workqueue(k, "test", WQ_UNBOUND, 0);
  const seen: string[] = [];
  const a = new WorkStruct(() => {
    seen.push("a");
    // Work queued by running work runs in the same pass, after what was queued before it.
    assert.equal(queue_work(wq, c), true);
  });
  const b = new WorkStruct(() => seen.push("b"));
  const c = new WorkStruct(() => seen.push("c"));
  assert.equal(queue_work(wq, a), true);
  assert.equal(queue_work(wq, b), true);
  assert.equal(queue_work(wq, a), false, "already pending");
  assert.equal(wq.pending, 2);
  assert.deepEqual(seen, []);
  k.clock.advance(1);
  assert.deepEqual(seen, ["a", "b", "c"]);
  assert.equal(wq.pending, 0);
  assert.equal(queue_work(wq, a), true, "idle again: queues anew");
  k.clock.advance(0);
  assert.deepEqual(seen, ["a", "b", "c", "a", "c"]);
});

Deno.test("flush_workqueue(): everything queued has run when it returns; the clock event then finds nothing", () => {
  const k = kernel();
  const wq = alloc_workqueue(k, "test", 0, 1);
  let runs = 0;
  const w = new WorkStruct(() => runs++);
  queue_work(wq, w);
  flush_workqueue(wq);
  assert.equal(runs, 1);
  k.clock.advance(10);
  assert.equal(runs, 1);
});

Deno.test("INIT_WORK() on pending work is EBUSY; destroy_workqueue() drains, frees, and refuses later work (EINVAL)", () => {
  const k = kernel();
  const objects = k.slab.allocatedObjects;
  const wq = alloc_workqueue(k, "test", 0, 0);
  assert.equal(k.slab.allocatedObjects, objects + 1);
  const seen: number[] = [];
  const w = new WorkStruct();
  INIT_WORK(w, () => seen.push(1));
  queue_work(wq, w);
  assert.throws(() => INIT_WORK(w, () => seen.push(2)), { code: "EBUSY" });
  destroy_workqueue(wq);
  assert.deepEqual(seen, [1]);
  assert.equal(k.slab.allocatedObjects, objects);
  assert.throws(() => queue_work(wq, w), { code: "EINVAL" });
  assert.throws(() => destroy_workqueue(wq), { code: "EINVAL" });
});

Deno.test("alloc_workqueue(): ENOMEM under fail-nth; ENODEV on a clock that cannot schedule work", () => {
  const k = kernel();
  k.slab.failNth(1);
  assert.throws(() => alloc_workqueue(k, "test", 0, 0), { code: "ENOMEM" });
  const noEvents = kernel({ now: () => 0, advance() {} } as unknown as SimClock);
  assert.throws(() => alloc_workqueue(noEvents, "test", 0, 0), { code: "ENODEV" });
});
