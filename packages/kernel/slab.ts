/**
 * Object allocation accounting: `kmalloc()`/`kfree()` for the kernel's bookkeeping objects
 * (IOMMU groups, per-device IOMMU data, DMA cookies, driver domains). JavaScript's collector
 * reclaims the memory; what this adds is what a test needs from the C allocator: a count of
 * live objects (so teardown can be checked to free everything), a refusal of double and
 * foreign frees, and failslab-style injection (make the Nth allocation fail with `ENOMEM`).
 *
 * @module
 */
import { type Device, devm_add_action } from "./device.ts";
import { Errno } from "./errno.ts";

/**
 * The object allocator of one kernel (`kernel.slab`). Objects are accounted by identity.
 *
 * @example Accounting, failing and freeing objects
 * ```ts
 * import assert from "node:assert/strict";
 * import { kfree, Kernel, kmalloc } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
 * const ctx = kmalloc(kernel, { id: 1 });
 * assert.equal(kernel.slab.allocatedObjects, 1);
 * kernel.slab.failNth(1);
 * assert.throws(() => kmalloc(kernel, { id: 2 }), { code: "ENOMEM" });
 * kfree(kernel, ctx);
 * assert.throws(() => kfree(kernel, ctx), { code: "EINVAL" }); // double free
 * assert.equal(kernel.slab.allocatedObjects, 0);
 * ```
 */
export class Slab {
  readonly #live = new Set<object>();
  #failIn = 0;

  /** Objects allocated and not yet freed. */
  get allocatedObjects(): number {
    return this.#live.size;
  }

  /** The constructor names of the live objects, oldest first (for leak reports). */
  allocations(): string[] {
    return [...this.#live].map((o) => o.constructor?.name ?? "Object");
  }

  /**
   * Makes the `n`th allocation from now fail with `ENOMEM` (1 = the next one); 0 cancels.
   * Fires once. Mirrors failslab with fail-nth.
   */
  failNth(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new Errno("EINVAL", `Cannot fail allocation ${n}`);
    this.#failIn = n;
  }

  /** Accounts `obj` as allocated and returns it; `ENOMEM` when the injected failure fires. */
  alloc<T extends object>(obj: T): T {
    if (this.#failIn > 0 && --this.#failIn === 0) {
      throw new Errno("ENOMEM", `Injected failure of a ${obj.constructor?.name} allocation`);
    }
    if (this.#live.has(obj)) throw new Errno("EEXIST", "Object is already allocated");
    this.#live.add(obj);
    return obj;
  }

  /** Accounts `obj` as freed; `EINVAL` when it is not allocated (a double or foreign free). */
  free(obj: object): void {
    if (!this.#live.delete(obj)) {
      throw new Errno("EINVAL", `Cannot free a ${obj.constructor?.name} that is not allocated`);
    }
  }
}

/**
 * Mirrors kmalloc()/kzalloc() for an object of `kernel`: returns `obj`, now counted in
 * `kernel.slab`, or throws `ENOMEM` (injected with `kernel.slab.failNth()`). Call it before
 * anything else is set up for the object, as C allocates before it initialises.
 */
export function kmalloc<T extends object>(kernel: { readonly slab: Slab }, obj: T): T {
  return kernel.slab.alloc(obj);
}

/** Mirrors kfree(): `EINVAL` for an object `kernel` did not allocate or already freed. */
export function kfree(kernel: { readonly slab: Slab }, obj: object): void {
  kernel.slab.free(obj);
}

/**
 * Mirrors devm_kzalloc(): kmalloc() for `dev`'s driver, freed when it unbinds or its probe fails
 * (as driver-private structures are allocated in probe). ENOMEM like kmalloc().
 */
export function devm_kzalloc<T extends object>(dev: Device, obj: T): T {
  kmalloc(dev.kernel, obj);
  devm_add_action(dev, () => kfree(dev.kernel, obj));
  return obj;
}
