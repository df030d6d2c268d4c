/**
 * Fail-nth sweeps for tests (`@iommu-lab/kernel/testing`): a scenario runs once per allocation
 * with the page allocator's or the slab's `failNth(n)` armed, as Linux's fail-nth fault injection
 * sweeps a syscall, and each run must unwind to nothing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isErrno } from "./errno.ts";

/**
 * The steps of one fail-nth pass: each {@linkcode FailNthSteps.step} runs unless a step before it
 * failed. A step may fail only with what `allowed` accepts (ENOMEM by default); its name is then
 * {@linkcode FailNthSteps.failed} and the later steps are skipped.
 *
 * @example Two steps, the first failing as the injected allocation does
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno } from "@iommu-lab/kernel";
 * import { FailNthSteps } from "@iommu-lab/kernel/testing";
 *
 * const s = new FailNthSteps("pages 1");
 * s.step("alloc", () => {
 *   throw new Errno("ENOMEM", "injected");
 * });
 * s.step("map", () => assert.fail("not reached"));
 * assert.equal(s.failed, "alloc");
 * ```
 */
export class FailNthSteps {
  /** The step that failed, or null. */
  failed: string | null = null;

  /**
   * Steps of the pass `label` names in messages (`pages failure 3`); `allowed` says which error
   * a step `what` may fail with.
   */
  constructor(
    readonly label: string,
    readonly allowed: (what: string, e: unknown) => boolean = (_what, e) => isErrno(e, "ENOMEM"),
  ) {}

  /** Runs `fn` as step `what`, unless a step failed before. */
  step(what: string, fn: () => void): void {
    if (this.failed !== null) return;
    try {
      fn();
    } catch (e) {
      assert.ok(this.allowed(what, e), `${what} at ${this.label} threw ${e}`);
      this.failed = what;
    }
  }
}

/**
 * Sweeps a scenario over its allocations: `pass(n)` runs it with the `n`th allocation failing and
 * says whether that failure fired; n goes 1, 2, ... until it did not. Returns how many
 * allocations the scenario made (the last n - 1).
 */
export function failNthSweep(pass: (n: number) => boolean): number {
  let n = 1;
  while (pass(n)) n++;
  return n - 1;
}
