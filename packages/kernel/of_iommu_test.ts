import assert from "node:assert/strict";
import {
  dev_iommu_fwspec_get,
  Device,
  DeviceTree,
  Errno,
  type FwNode,
  iommu_fwspec_add_ids,
  iommu_fwspec_free,
  iommu_fwspec_init,
  type IommuLayer,
  Kernel,
  of_iommu_configure,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

/** A tree with an IOMMU (`#iommu-cells = <1>`) and a consumer naming it with ID 0x10. */
function setup(layer: Partial<IommuLayer> = {}) {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const dt = new DeviceTree();
  dt.root.set("#address-cells", [1]).set("#size-cells", [1]);
  const iommu = dt.root.addChild("iommu@3010000").set("#iommu-cells", [1]);
  const ph = dt.phandleOf(iommu);
  const np = dt.root.addChild("dma@10100000").set("iommus", [ph, 0x10]);
  const probed: string[] = [];
  kernel.iommuLayer = {
    ofXlate: () => (dev, args) => iommu_fwspec_add_ids(dev, args),
    probeDevice: (dev) => void probed.push(dev.name),
    releaseDevice() {},
    prepareMsi() {},
    ...layer,
  };
  kernel.core.initDone = true;
  const dev = new Device(kernel, { name: "10100000.dma", fwnode: np });
  return { kernel, dt, iommu, np, dev, probed };
}

Deno.test("iommu_fwspec_init(): the same IOMMU again is a no-op, another IOMMU is EINVAL", () => {
  const { dev } = setup();
  const a: FwNode = { name: "iommu@a" };
  iommu_fwspec_init(dev, a);
  iommu_fwspec_add_ids(dev, [1, 2]);
  iommu_fwspec_init(dev, a);
  assert.deepEqual(dev_iommu_fwspec_get(dev)?.ids, [1, 2]);
  assert.throws(() => iommu_fwspec_init(dev, { name: "iommu@b" }), { code: "EINVAL" });
  iommu_fwspec_free(dev);
  assert.equal(dev_iommu_fwspec_get(dev), null);
  assert.throws(() => iommu_fwspec_add_ids(dev, [3]), { code: "EINVAL" }, "no fwspec to add to");
});

Deno.test("of_iommu_configure(): iommus become the fwspec, then the IOMMU core probes", () => {
  const { dev, np, iommu, probed } = setup();
  of_iommu_configure(dev, np);
  assert.equal(dev.fwspec?.fwnode, iommu);
  assert.deepEqual(dev.fwspec?.ids, [0x10]);
  assert.deepEqual(probed, ["10100000.dma"]);
});

Deno.test("of_iommu_configure(): failures other than EPROBE_DEFER leave the device on direct DMA", async (t) => {
  await t.step("no iommus property", () => {
    const { dt, dev, probed } = setup();
    of_iommu_configure(dev, dt.root);
    assert.equal(dev.fwspec, null);
    assert.deepEqual(probed, []);
  });
  await t.step("a disabled IOMMU node (ENODEV)", () => {
    const { dev, np, iommu, probed } = setup();
    iommu.set("status", "disabled");
    of_iommu_configure(dev, np);
    assert.equal(dev.fwspec, null);
    assert.deepEqual(probed, []);
  });
  await t.step("an IOMMU without a driver after boot (ENODEV)", () => {
    const { dev, np, probed } = setup({ ofXlate: () => null });
    of_iommu_configure(dev, np);
    assert.equal(dev.fwspec, null);
    assert.deepEqual(probed, []);
  });
  await t.step("probe_device failing with ENOMEM: logged (dynamic debug), fwspec dropped", () => {
    const { kernel, dev, np } = setup({
      probeDevice: () => {
        throw new Errno("ENOMEM", "no context");
      },
    });
    kernel.dmesg.debug = true;
    of_iommu_configure(dev, np);
    assert.equal(dev.fwspec, null);
    assert.equal(kernel.dmesg.grep("Adding to IOMMU failed").length, 1);
  });
  await t.step("a PCI requester ID no iommu-map entry covers", () => {
    const { dt, dev, iommu, probed } = setup();
    const host = dt.root.addChild("pci@30000000").set("iommu-map", [0, dt.phandleOf(iommu), 0, 8]);
    of_iommu_configure(dev, host, 0x8);
    assert.equal(dev.fwspec, null);
    of_iommu_configure(dev, host, 0x7);
    assert.deepEqual(dev_iommu_fwspec_get(dev)?.ids, [0x7]);
    assert.deepEqual(probed, ["10100000.dma"]);
  });
});

Deno.test("of_iommu_configure(): an IOMMU without a driver during boot is EPROBE_DEFER", () => {
  const { kernel, dev, np } = setup({ ofXlate: () => null });
  kernel.core.initDone = false;
  assert.throws(() => of_iommu_configure(dev, np), { code: "EPROBE_DEFER" });
  assert.equal(dev.fwspec, null, "the partial fwspec is freed");
});
