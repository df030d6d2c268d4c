// The auxiliary bus framework of the series on the base driver's fake IOMMU (no silicon: the
// counting end to end is in packages/machine/riscv_iommu_hpm_test.ts).
import assert from "node:assert/strict";
import {
  auxiliary_bus_init,
  auxiliary_driver_register,
  type AuxiliaryDevice,
  device_add,
  device_attach,
  device_release_driver,
  Errno,
  readl,
} from "@iommu-lab/kernel";
import { FAKE_IOMMU_CAPS, testSystem } from "@iommu-lab/riscv-iommu/testing";
import {
  hpm,
  riscv_iommu_get_subdev,
  riscv_iommu_hpm_driver,
  riscv_iommu_subdev_add,
  riscv_iommu_subdev_cleanup,
  type RiscvIommuSubdev,
} from "./mod.ts";

const CAP_HPM = 1n << 30n;

/** A kernel with the auxiliary bus, the fake IOMMU and a driver recording what binds. */
function system(caps: bigint) {
  const sys = testSystem({ caps, features: [hpm()], bind: false });
  auxiliary_bus_init(sys.kernel);
  const bound: RiscvIommuSubdev[] = [];
  const removed: string[] = [];
  auxiliary_driver_register(sys.kernel, {
    name: "riscv_iommu_hpm",
    idTable: [{ name: "iommu.riscv_iommu_hpm" }],
    probe: (adev: AuxiliaryDevice) => void bound.push(riscv_iommu_get_subdev(adev)!),
    remove: (adev: AuxiliaryDevice) => void removed.push(adev.name),
  });
  device_add(sys.dev);
  return { sys, bound, removed };
}

Deno.test("riscv_iommu_subdev_setup(): capabilities.HPM gives iommu.riscv_iommu_hpm.0 under the IOMMU, its base at iocountovf, its irq icvec.pmiv's", () => {
  const { sys, bound } = system(FAKE_IOMMU_CAPS | CAP_HPM);
  assert.equal(bound.length, 1);
  const subdev = bound[0];
  assert.equal(subdev.auxdev.name, "iommu.riscv_iommu_hpm.0");
  assert.equal(subdev.auxdev.parent, sys.dev);
  assert.equal(subdev.iommu, sys.iommu);
  assert.deepEqual(subdev.info, {
    irq: sys.iommu!.irqs[3],
    global_filter: false,
    is_ioatc: false,
    index: 0,
  });
  assert.equal(subdev.identifier, null, "no device-tree node");
  sys.rec.accesses.length = 0;
  readl(subdev.base, 4);
  assert.deepEqual(sys.rec.accesses.map((a) => a.offset), [0x5c], "iocountinh");
  assert.ok(
    sys.kernel.dmesg.lines().some((l) => l.endsWith("riscv_iommu_hpm auxiliary device created")),
  );
});

Deno.test("riscv_iommu_subdev_cleanup(): unbinding the IOMMU deletes its subdevices and frees their IDs", () => {
  const { sys, bound, removed } = system(FAKE_IOMMU_CAPS | CAP_HPM);
  device_release_driver(sys.dev);
  assert.deepEqual(removed, ["iommu.riscv_iommu_hpm.0"]);
  assert.ok(!sys.kernel.core.devices.some((d) => d.name.startsWith("iommu.")));
  assert.ok(device_attach(sys.dev));
  assert.deepEqual(bound.map((s) => s.auxdev.name), [
    "iommu.riscv_iommu_hpm.0",
    "iommu.riscv_iommu_hpm.0",
  ]);
});

Deno.test("riscv_iommu_subdev_add(): IDs come from one allocator per driver instance; EINVAL without info, taking no ID", () => {
  const { sys, bound } = system(FAKE_IOMMU_CAPS | CAP_HPM);
  const iommu = sys.iommu!;
  const base = bound[0].base;
  assert.throws(
    () =>
      riscv_iommu_subdev_add(iommu, {
        name: "riscv_iommu_hpm",
        info: null,
        base,
        identifier: null,
      }),
    (e) => e instanceof Errno && e.code === "EINVAL",
  );
  const info = { irq: 1, global_filter: false, is_ioatc: false, index: 0 };
  riscv_iommu_subdev_add(iommu, { name: "riscv_iommu_hpm", info, base, identifier: "x" });
  assert.deepEqual(bound.map((s) => s.auxdev.name), [
    "iommu.riscv_iommu_hpm.0",
    "iommu.riscv_iommu_hpm.1",
  ]);
  riscv_iommu_subdev_cleanup(iommu);
  riscv_iommu_subdev_add(iommu, { name: "riscv_iommu_hpm", info, base, identifier: null });
  assert.equal(bound.at(-1)!.auxdev.name, "iommu.riscv_iommu_hpm.0", "both IDs went back");
});

Deno.test("hpm(): an IOMMU without capabilities.HPM skips the feature with the base driver's line", () => {
  const { sys, bound } = system(FAKE_IOMMU_CAPS);
  assert.equal(sys.dev.state, "bound");
  assert.deepEqual(bound, []);
  assert.ok(sys.kernel.dmesg.lines().some((l) => l.endsWith("hpm disabled: no capabilities.HPM")));
});

Deno.test("riscv_iommu_hpm_probe(): a block whose iocountinh holds no counter is ENODEV, and no PMU", () => {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | CAP_HPM, features: [hpm()], bind: false });
  auxiliary_bus_init(sys.kernel);
  auxiliary_driver_register(sys.kernel, riscv_iommu_hpm_driver);
  device_add(sys.dev);
  const adev = sys.kernel.core.devices.find((d) => d.name === "iommu.riscv_iommu_hpm.0")!;
  assert.equal(adev.state, "unbound", "the fake's HPM registers read 0");
  assert.equal(sys.kernel.buses.get("event_source"), undefined, "no PMU was registered");
});
