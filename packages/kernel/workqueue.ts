/**
 * Workqueues on the simulated clock: deferred work that runs later, outside the context that
 * queued it (an interrupt thread hands a page fault to process context). Mirrors the API of
 * kernel/workqueue.c; the execution model is this kernel's own, on one CPU:
 *
 * - a queue that gets work while idle schedules one clock event (`kernel.clock.after(0, ...)`),
 *   so its kworker takes the work at the CPU's next instruction boundary (the next
 *   `clock.advance()`: an idle loop, a delay, a poll), and runs every item queued by then, in
 *   queueing order, one at a time. Items never overlap and take no simulated time of their own.
 * - `flush_workqueue()` runs what is queued right away, where Linux would sleep until the
 *   kworker finished it: either way the work is done when it returns.
 *
 * DIVERGENCE: no worker pools, CPUs or concurrency limits: `flags` and `max_active` are kept
 * for the caller's information only, since one simulated CPU runs one item at a time anyway.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import type { Kernel } from "./kernel.ts";
import { kfree, kmalloc } from "./slab.ts";

/** WQ_UNBOUND: work is not bound to the queueing CPU. */
export const WQ_UNBOUND: number = 1 << 1;

/** struct work_struct: one deferred call of `func`. */
export class WorkStruct {
  /** What runs: the work item is passed back (container_of() finds its owner). */
  func: (work: WorkStruct) => void;
  /** The queue it is pending on, or null when idle or running. */
  _wq: WorkqueueStruct | null = null;

  /** A work item running `func`; see {@linkcode INIT_WORK}. */
  constructor(func: (work: WorkStruct) => void = () => {}) {
    this.func = func;
  }
}

/** Mirrors INIT_WORK(): (re)sets the function of an idle work item; EBUSY while it is pending. */
export function INIT_WORK(work: WorkStruct, func: (work: WorkStruct) => void): void {
  if (work._wq !== null) throw new Errno("EBUSY", "Cannot re-initialise pending work");
  work.func = func;
}

/** struct workqueue_struct: work items waiting for this queue's kworker. */
export class WorkqueueStruct {
  /** Items queued and not started, oldest first. */
  readonly _pending: WorkStruct[] = [];
  /** A clock event will run the queue. */
  _kicked = false;
  /** destroy_workqueue() ran. */
  _dead = false;

  /** Use {@linkcode alloc_workqueue}. */
  constructor(
    readonly kernel: Kernel,
    readonly name: string,
    readonly flags: number,
    readonly max_active: number,
  ) {}

  /** Items queued and not started yet. */
  get pending(): number {
    return this._pending.length;
  }
}

/**
 * Mirrors alloc_workqueue(): a queue named `name`, accounted in the kernel's slab. ENOMEM when
 * the allocation fails; ENODEV when the kernel's clock cannot schedule work
 * (`Clock.after`).
 *
 * @example Work queued from a handler runs at the CPU's next instruction boundary
 * ```ts
 * import assert from "node:assert/strict";
 * import { alloc_workqueue, Kernel, queue_work, WorkStruct, WQ_UNBOUND } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
 * const wq = alloc_workqueue(kernel, "iopf_queue/demo", WQ_UNBOUND, 0);
 * const seen: string[] = [];
 * queue_work(wq, new WorkStruct(() => seen.push(`work@${kernel.clock.now()}`)));
 * seen.push("handler returns");
 * kernel.clock.advance(10);
 * assert.deepEqual(seen, ["handler returns", "work@0"]);
 * ```
 */
export function alloc_workqueue(
  kernel: Kernel,
  name: string,
  flags: number,
  max_active: number,
): WorkqueueStruct {
  if (kernel.clock.after === undefined) {
    throw new Errno("ENODEV", `Workqueue ${name}: the clock cannot run deferred work`);
  }
  return kmalloc(kernel, new WorkqueueStruct(kernel, name, flags, max_active));
}

/** Runs the queued items in order until none is left (the kworker's loop). */
function _run(wq: WorkqueueStruct): void {
  const pending = wq._pending;
  while (pending.length !== 0) {
    const work = pending.shift()!;
    work._wq = null;
    work.func(work);
  }
}

/**
 * Mirrors queue_work(): queues `work` on `wq`; false when it is already pending (somewhere), as
 * Linux's. EINVAL on a destroyed queue (Linux WARNs).
 */
export function queue_work(wq: WorkqueueStruct, work: WorkStruct): boolean {
  if (wq._dead) throw new Errno("EINVAL", `Workqueue ${wq.name} is destroyed`);
  if (work._wq !== null) return false;
  work._wq = wq;
  wq._pending.push(work);
  if (!wq._kicked) {
    wq._kicked = true;
    wq.kernel.clock.after!(0, () => {
      wq._kicked = false;
      _run(wq);
    });
  }
  return true;
}

/** Mirrors flush_workqueue(): when it returns, everything queued on `wq` before has run. */
export function flush_workqueue(wq: WorkqueueStruct): void {
  _run(wq);
}

/** Mirrors destroy_workqueue(): drains `wq`, then frees it; later queue_work() is EINVAL. */
export function destroy_workqueue(wq: WorkqueueStruct): void {
  if (wq._dead) throw new Errno("EINVAL", `Workqueue ${wq.name} is destroyed already`);
  _run(wq);
  wq._dead = true;
  kfree(wq.kernel, wq);
}
