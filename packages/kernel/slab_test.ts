import assert from "node:assert/strict";
import {
  bus_register,
  Device,
  device_add,
  device_del,
  devm_kzalloc,
  driver_register,
  Errno,
  Kernel,
  kfree,
  kmalloc,
  Slab,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

class IommuGroupLike {}

Deno.test("kmalloc()/kfree(): live objects are counted per kernel and named in leak reports", () => {
  const a = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const b = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const group = kmalloc(a, new IommuGroupLike());
  const plain = kmalloc(a, { id: 1 });
  assert.equal(a.slab.allocatedObjects, 2);
  assert.equal(b.slab.allocatedObjects, 0, "accounting is per kernel");
  assert.deepEqual(a.slab.allocations(), ["IommuGroupLike", "Object"]);
  kfree(a, group);
  kfree(a, plain);
  assert.equal(a.slab.allocatedObjects, 0);
});

Deno.test("kfree(): a double free, a foreign object or another kernel's object is EINVAL", () => {
  const a = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const b = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const obj = kmalloc(a, {});
  assert.throws(() => kfree(b, obj), { code: "EINVAL" });
  assert.throws(() => kfree(a, {}), { code: "EINVAL" });
  kfree(a, obj);
  assert.throws(() => kfree(a, obj), { code: "EINVAL" });
  assert.throws(() => kmalloc(a, kmalloc(a, {})), { code: "EEXIST" }, "allocated twice");
});

Deno.test("failNth(n): exactly the nth object allocation from now fails with ENOMEM", () => {
  const slab = new Slab();
  slab.failNth(2);
  const first = slab.alloc({});
  assert.throws(() => slab.alloc(new IommuGroupLike()), { code: "ENOMEM" });
  assert.equal(slab.allocatedObjects, 1, "the failed allocation is not counted");
  const third = slab.alloc({});
  slab.failNth(1);
  slab.failNth(0);
  slab.free(slab.alloc({}));
  slab.free(first);
  slab.free(third);
  assert.equal(slab.allocatedObjects, 0);
  for (const bad of [-1, 1.5, NaN]) assert.throws(() => slab.failNth(bad), { code: "EINVAL" });
});

Deno.test("devm_kzalloc(): freed when the driver unbinds or its probe fails; ENOMEM injectable", () => {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const bus = bus_register(kernel, { name: "test", match: () => true });
  let failLater = true;
  driver_register(bus, {
    name: "drv",
    probe(dev) {
      dev.driverData = devm_kzalloc(dev, new IommuGroupLike());
      if (failLater) throw new Errno("EIO", "a later probe step");
    },
  });
  const dev = new Device(kernel, { name: "d0", bus });
  device_add(dev);
  assert.equal(dev.state, "unbound");
  assert.equal(kernel.slab.allocatedObjects, 0, "freed by the failed probe");
  failLater = false;
  const other = new Device(kernel, { name: "d1", bus });
  device_add(other);
  assert.deepEqual(kernel.slab.allocations(), ["IommuGroupLike"]);
  device_del(other);
  assert.equal(kernel.slab.allocatedObjects, 0, "freed at unbind");
  kernel.slab.failNth(1);
  const third = new Device(kernel, { name: "d2", bus });
  device_add(third);
  assert.equal(third.state, "unbound");
  assert.equal(kernel.slab.allocatedObjects, 0);
});
