import assert from "node:assert/strict";
import {
  type Bus,
  bus_register,
  Device,
  device_add,
  device_del,
  device_is_bound,
  device_link_add,
  device_release_driver,
  devm_add_action,
  type Driver,
  driver_register,
  driver_unregister,
  Errno,
  Kernel,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

function setup(): { kernel: Kernel; bus: Bus; log: string[] } {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
  const bus = bus_register(kernel, {
    name: "test",
    match: (dev, drv) => dev.name.startsWith(drv.name),
  });
  return { kernel, bus, log: [] };
}

function add(kernel: Kernel, bus: Bus, name: string): Device {
  const dev = new Device(kernel, { name, bus });
  device_add(dev);
  return dev;
}

Deno.test("driver core: match then probe binds; remove runs driver remove then devres", async (t) => {
  await t.step("device first, driver later", () => {
    const { kernel, bus, log } = setup();
    const dev = add(kernel, bus, "foo0");
    assert.equal(dev.state, "unbound");
    const drv: Driver = {
      name: "foo",
      probe(d) {
        log.push(`probe ${d.name}`);
        devm_add_action(d, () => log.push("devres 1"));
        devm_add_action(d, () => log.push("devres 2"));
      },
      remove(d) {
        log.push(`remove ${d.name}`);
      },
    };
    driver_register(bus, drv);
    assert.equal(dev.state, "bound");
    assert.equal(dev.driver, drv);
    driver_unregister(bus, drv);
    assert.equal(dev.state, "unbound");
    assert.equal(dev.driver, null);
    assert.deepEqual(log, ["probe foo0", "remove foo0", "devres 2", "devres 1"]);
  });
  await t.step("driver first, device later; non-matching driver is not probed", () => {
    const { kernel, bus, log } = setup();
    driver_register(bus, { name: "bar", probe: () => log.push("bar") });
    driver_register(bus, { name: "foo", probe: () => log.push("foo") });
    const dev = add(kernel, bus, "foo1");
    assert.deepEqual(log, ["foo"]);
    assert.equal(dev.driver?.name, "foo");
  });
  await t.step("registering the same driver name twice is EBUSY", () => {
    const { bus } = setup();
    driver_register(bus, { name: "foo", probe() {} });
    assert.throws(() => driver_register(bus, { name: "foo", probe() {} }), { code: "EBUSY" });
  });
});

Deno.test("really_probe(): a failed probe releases devres, clears the driver and logs", async (t) => {
  await t.step("EINVAL is logged as 'probe of ... failed with error -22'", () => {
    const { kernel, bus, log } = setup();
    const dev = add(kernel, bus, "foo0");
    driver_register(bus, {
      name: "foo",
      probe(d) {
        devm_add_action(d, () => log.push("undo"));
        d.driverData = 1;
        throw new Errno("EINVAL");
      },
    });
    assert.equal(dev.state, "unbound");
    assert.equal(dev.driver, null);
    assert.equal(dev.driverData, null);
    assert.deepEqual(log, ["undo"]);
    assert.deepEqual(kernel.dmesg.grep("probe of"), ["foo: probe of foo0 failed with error -22"]);
  });
  await t.step("ENODEV tries the next matching driver silently", () => {
    const { kernel, bus } = setup();
    driver_register(bus, {
      name: "f",
      probe: () => {
        throw new Errno("ENODEV");
      },
    });
    driver_register(bus, { name: "fo", probe() {} });
    const dev = add(kernel, bus, "foo0");
    assert.equal(dev.driver?.name, "fo");
    assert.deepEqual(kernel.dmesg.grep("failed"), []);
  });
  await t.step("a JavaScript error in probe is a bug and propagates after cleanup", () => {
    const { kernel, bus } = setup();
    driver_register(bus, {
      name: "foo",
      probe: () => {
        throw new TypeError("oops");
      },
    });
    const dev = new Device(kernel, { name: "foo0", bus });
    assert.throws(() => device_add(dev), TypeError);
    assert.equal(dev.driver, null);
    assert.equal(dev.state, "unbound");
  });
});

Deno.test("deferred probe: EPROBE_DEFER retries after another driver binds", () => {
  const { kernel, bus, log } = setup();
  let supplierReady = false;
  driver_register(bus, {
    name: "consumer",
    probe(d) {
      log.push(`consumer probe ready=${supplierReady}`);
      if (!supplierReady) throw new Errno("EPROBE_DEFER", "no IOMMU yet");
      log.push(`consumer bound ${d.name}`);
    },
  });
  const c = add(kernel, bus, "consumer0");
  assert.equal(c.state, "deferred");
  assert.equal(c.deferReason, "no IOMMU yet (-EPROBE_DEFER)");
  assert.deepEqual(kernel.core.deferred, [c]);
  driver_register(bus, {
    name: "supplier",
    probe() {
      supplierReady = true;
      log.push("supplier bound");
    },
  });
  add(kernel, bus, "supplier0");
  assert.equal(c.state, "bound");
  assert.deepEqual(kernel.core.deferred, []);
  assert.deepEqual(log, [
    "consumer probe ready=false",
    "supplier bound",
    "consumer probe ready=true",
    "consumer bound consumer0",
  ]);
  assert.deepEqual(kernel.core.bound.map((d) => d.name), ["supplier0", "consumer0"]);
});

Deno.test("deferred probe: a device added from inside a probe is probed before the retry", () => {
  const { kernel, bus, log } = setup();
  let ready = false;
  driver_register(bus, {
    name: "leaf",
    probe() {
      log.push(`leaf ready=${ready}`);
      if (!ready) throw new Errno("EPROBE_DEFER");
    },
  });
  driver_register(bus, {
    name: "host",
    probe() {
      log.push("host probe");
      add(kernel, bus, "leaf1");
      ready = true;
    },
  });
  add(kernel, bus, "leaf0");
  add(kernel, bus, "host0");
  assert.deepEqual(log, [
    "leaf ready=false",
    "host probe",
    "leaf ready=false",
    "leaf ready=true",
    "leaf ready=true",
  ]);
  assert.ok(bus.devices.every((d) => d.state === "bound"));
});

Deno.test("device links: consumer waits for supplier and is unbound first", async (t) => {
  await t.step("probe order follows the link, not the add order", () => {
    const { kernel, bus, log } = setup();
    driver_register(bus, {
      name: "",
      probe: (d) => log.push(`probe ${d.name}`),
      remove: (d) => log.push(`remove ${d.name}`),
    });
    const consumer = new Device(kernel, { name: "dma0", bus });
    const supplier = new Device(kernel, { name: "iommu0", bus });
    device_link_add(consumer, supplier);
    device_add(consumer);
    assert.equal(consumer.state, "deferred");
    assert.equal(consumer.deferReason, "wait for supplier iommu0");
    device_add(supplier);
    assert.deepEqual(log, ["probe iommu0", "probe dma0"]);
    log.length = 0;
    device_release_driver(supplier);
    assert.deepEqual(log, ["remove dma0", "remove iommu0"]);
    assert.equal(consumer.state, "deferred");
  });
  await t.step("cycles are refused", () => {
    const { kernel, bus } = setup();
    const a = new Device(kernel, { name: "a", bus });
    const b = new Device(kernel, { name: "b", bus });
    device_link_add(a, b);
    assert.throws(() => device_link_add(b, a), { code: "EINVAL" });
    assert.throws(() => device_link_add(a, a), { code: "EINVAL" });
  });
  await t.step("deleting the supplier drops the link so the consumer can probe", () => {
    const { kernel, bus } = setup();
    driver_register(bus, { name: "", probe() {} });
    const consumer = new Device(kernel, { name: "c", bus });
    const supplier = new Device(kernel, { name: "s", bus });
    device_link_add(consumer, supplier);
    device_add(consumer);
    device_add(supplier);
    device_del(supplier);
    assert.equal(supplier.state, "removed");
    assert.equal(consumer.state, "bound");
    assert.deepEqual(consumer.suppliers, []);
  });
});

Deno.test("device_del(): unbinds, leaves the bus, and a second delete is ENODEV", () => {
  const { kernel, bus, log } = setup();
  driver_register(bus, { name: "foo", probe() {}, remove: () => log.push("remove") });
  const dev = add(kernel, bus, "foo0");
  device_del(dev);
  assert.deepEqual(log, ["remove"]);
  assert.deepEqual(bus.devices, []);
  assert.deepEqual(kernel.core.devices, []);
  assert.throws(() => device_del(dev), { code: "ENODEV" });
});

Deno.test("device_shutdown(): last bound is shut down first", () => {
  const { kernel, bus, log } = setup();
  driver_register(bus, { name: "", probe() {}, shutdown: (d) => log.push(d.name) });
  add(kernel, bus, "a");
  add(kernel, bus, "b");
  kernel.shutdown();
  assert.deepEqual(log, ["b", "a"]);
});

Deno.test("bus_register(): a bus name is unique per kernel, not globally", () => {
  const { kernel } = setup();
  assert.throws(() => bus_register(kernel, { name: "test", match: () => false }), {
    code: "EEXIST",
  });
  const other = new Kernel({ mem: new TestRam(0, 1 << 20) });
  assert.equal(bus_register(other, { name: "test", match: () => false }).name, "test");
});

Deno.test("driver core argument rules: no bus, added twice, duplicate names, unknown driver", () => {
  const { kernel, bus } = setup();
  assert.throws(() => device_add(new Device(kernel, { name: "orphan" })), { code: "EINVAL" });
  const dev = add(kernel, bus, "a0");
  assert.throws(() => device_add(dev), { code: "EEXIST" });
  assert.throws(() => add(kernel, bus, "a0"), { code: "EEXIST" }, "names are unique on a bus");
  const drv: Driver = { name: "a", probe() {} };
  assert.throws(() => driver_unregister(bus, drv), { code: "ENODEV" });
  driver_register(bus, drv);
  assert.ok(device_is_bound(dev));
  driver_unregister(bus, drv);
  assert.ok(!device_is_bound(dev));
  assert.throws(() => driver_unregister(bus, drv), { code: "ENODEV" });
  assert.throws(() => bus_register(kernel, { name: "test", match: () => true }), {
    code: "EEXIST",
  });
});
