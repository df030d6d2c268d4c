import assert from "node:assert/strict";
import {
  auxiliary_bus_init,
  auxiliary_device_create,
  auxiliary_device_destroy,
  auxiliary_driver_register,
  AuxiliaryDevice,
  bus_register,
  Device,
  device_add,
  devm_auxiliary_device_create,
  driver_register,
  driver_unregister,
  Kernel,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

function setup() {
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 20),
    initcalls: [auxiliary_bus_init],
  });
  const parent = new Device(kernel, { name: "3010000.iommu" });
  return { kernel, parent };
}

Deno.test("auxiliary bus: drivers match modname.devname, ignoring the .id suffix", () => {
  const { kernel, parent } = setup();
  const seen: [string, unknown][] = [];
  auxiliary_driver_register(kernel, {
    name: "hpm",
    idTable: [{ name: "riscv_iommu.hpm", data: 1 }, { name: "riscv_iommu.hpm2", data: 2 }],
    probe: (adev, id) => void seen.push([adev.name, id.data]),
  });
  const a = auxiliary_device_create(parent, "riscv_iommu", "hpm", { counters: 31 }, 0);
  auxiliary_device_create(parent, "riscv_iommu", "hpm", undefined, 1);
  auxiliary_device_create(parent, "riscv_iommu", "hpm2", undefined, 7);
  const other = auxiliary_device_create(parent, "riscv_iommu", "hp", undefined, 0);
  auxiliary_device_create(parent, "other", "hpm", undefined, 0);
  assert.deepEqual(seen, [["riscv_iommu.hpm.0", 1], ["riscv_iommu.hpm.1", 1], [
    "riscv_iommu.hpm2.7",
    2,
  ]]);
  assert.equal(other.state, "unbound");
  assert.deepEqual(a.platformData, { counters: 31 });
  assert.equal(a.parent, parent);
});

Deno.test("auxiliary devices: names are unique, devname has no dot, ids are non-negative", () => {
  const { parent } = setup();
  auxiliary_device_create(parent, "m", "d", undefined, 0);
  assert.throws(() => auxiliary_device_create(parent, "m", "d", undefined, 0), { code: "EEXIST" });
  assert.throws(() => new AuxiliaryDevice(parent, "m", "a.b", 0), { code: "EINVAL" });
  assert.throws(() => new AuxiliaryDevice(parent, "m", "d", -1), { code: "EINVAL" });
});

Deno.test("devm_auxiliary_device_create(): removed when the parent's driver unbinds", () => {
  const { kernel } = setup();
  const bus = bus_register(kernel, { name: "host", match: () => true });
  const removed: string[] = [];
  auxiliary_driver_register(kernel, {
    name: "child",
    idTable: [{ name: "parent_mod.child" }],
    probe() {},
    remove: (adev) => void removed.push(adev.name),
  });
  const drv = {
    name: "parent",
    probe: (dev: Device) => void devm_auxiliary_device_create(dev, "parent_mod", "child", null),
  };
  driver_register(bus, drv);
  const dev = new Device(kernel, { name: "p0", bus });
  device_add(dev);
  assert.equal(kernel.buses.get("auxiliary")!.devices.length, 1);
  assert.equal(kernel.buses.get("auxiliary")!.devices[0].state, "bound");
  driver_unregister(bus, drv);
  assert.deepEqual(removed, ["parent_mod.child.0"]);
  assert.equal(kernel.buses.get("auxiliary")!.devices.length, 0);
});

Deno.test("auxiliary_device_destroy() unbinds and removes", () => {
  const { kernel, parent } = setup();
  let removed = 0;
  auxiliary_driver_register(kernel, {
    name: "x",
    idTable: [{ name: "m.x" }],
    probe() {},
    remove: () => void removed++,
  });
  const a = auxiliary_device_create(parent, "m", "x", undefined, 3);
  auxiliary_device_destroy(a);
  assert.equal(removed, 1);
  assert.equal(a.state, "removed");
});
