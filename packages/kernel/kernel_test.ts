import assert from "node:assert/strict";
import {
  auxiliary_bus_init,
  auxiliary_driver_register,
  Kernel,
  pci_driver_init,
  pci_register_driver,
  platform_bus_init,
  platform_driver_register,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

const mem = () => new TestRam(0x8000_0000, 1 << 20);

Deno.test("Kernel: core state only; the buses are the initcalls' doing, run in order after it", () => {
  const order: string[] = [];
  new Kernel({
    mem: mem(),
    initcalls: [
      (k) => order.push(`first, ${k.pages.totalPages} pages`),
      platform_bus_init,
      pci_driver_init,
      auxiliary_bus_init,
      (k) => order.push(`last, ${[...k.buses.keys()].join(" ")}`),
    ],
  });
  assert.deepEqual(order, ["first, 256 pages", "last, platform pci auxiliary"]);
  assert.deepEqual([...new Kernel({ mem: mem() }).buses.keys()], []);
});

Deno.test("driver_register() on a bus whose initcall did not run is EINVAL (the bus was not initialized)", async (t) => {
  const kernel = new Kernel({ mem: mem(), initcalls: [platform_bus_init] });
  const none = { name: "x", probe() {} };
  await t.step("pci", () => {
    assert.throws(
      () => pci_register_driver(kernel, { ...none, idTable: [] }),
      { code: "EINVAL", message: /Bus pci was not initialized/ },
    );
  });
  await t.step("auxiliary", () => {
    assert.throws(() => auxiliary_driver_register(kernel, { ...none, idTable: [] }), {
      code: "EINVAL",
    });
  });
  await t.step("the platform bus is there", () => {
    platform_driver_register(kernel, { ...none, ofMatchTable: [] });
    assert.equal(kernel.buses.get("platform")!.drivers.length, 1);
  });
  await t.step("an initcall twice is EEXIST (bus_register())", () => {
    assert.throws(() => platform_bus_init(kernel), { code: "EEXIST" });
  });
});
