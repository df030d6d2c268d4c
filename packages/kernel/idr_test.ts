import assert from "node:assert/strict";
import { Ida, ida_alloc, ida_alloc_range, ida_free, ida_is_empty } from "./mod.ts";

Deno.test("ida_alloc_range() hands out the lowest free ID of the range, reusing freed ones", () => {
  const ida = new Ida();
  assert.equal(ida_is_empty(ida), true);
  assert.deepEqual([1, 2, 3, 4].map(() => ida_alloc_range(ida, 1, 10)), [1, 2, 3, 4]);
  ida_free(ida, 2);
  ida_free(ida, 3);
  assert.equal(ida_alloc_range(ida, 1, 10), 2, "lowest free first");
  assert.equal(ida_alloc_range(ida, 5, 10), 5, "only inside the range");
  assert.equal(ida_alloc(ida), 0);
  for (const id of [0, 1, 2, 4, 5]) ida_free(ida, id);
  assert.equal(ida_is_empty(ida), true);
});

Deno.test("ida_alloc_range(): ENOSPC when the range is used up, per instance", () => {
  const a = new Ida();
  const b = new Ida();
  assert.equal(ida_alloc_range(a, 7, 7), 7);
  assert.throws(() => ida_alloc_range(a, 7, 7), { code: "ENOSPC" });
  assert.equal(ida_alloc_range(b, 7, 7), 7, "no state shared between instances");
});

Deno.test("ida_alloc_range()/ida_free() reject bad arguments with EINVAL", () => {
  const ida = new Ida();
  for (const [min, max] of [[2, 1], [-1, 3], [0.5, 3], [0, NaN]]) {
    assert.throws(() => ida_alloc_range(ida, min, max), { code: "EINVAL" }, `[${min}, ${max}]`);
  }
  assert.throws(() => ida_free(ida, 0), { code: "EINVAL", message: /id=0 .*not allocated/ });
  ida_alloc(ida);
  ida_free(ida, 0);
  assert.throws(() => ida_free(ida, 0), { code: "EINVAL" }, "double free");
});
