import assert from "node:assert/strict";
import {
  DeviceTree,
  DtNode,
  early_init_dt_scan_memory,
  IORESOURCE_MEM,
  of_address_to_resource,
  of_count_phandle_with_args,
  of_device_is_available,
  of_device_is_compatible,
  of_get_address,
  of_irq_count,
  of_irq_find_parent,
  of_irq_parse_one,
  of_map_id,
  of_n_addr_cells,
  of_n_size_cells,
  of_parse_phandle,
  of_parse_phandle_with_args,
  of_property_match_string,
  of_property_read_bool,
  of_property_read_string,
  of_property_read_string_array,
  of_property_read_u32,
  of_property_read_u32_array,
  of_property_read_u64,
  of_read_number,
  of_translate_address,
} from "./mod.ts";

const virt = DeviceTree.fromBlob(
  Deno.readFileSync(new URL("./testdata/virt.dtb", import.meta.url)),
);
const cells = DeviceTree.fromBlob(
  Deno.readFileSync(new URL("./testdata/cells.dtb", import.meta.url)),
);
const node = (dt: DeviceTree, path: string): DtNode => {
  const n = dt.findNode(path);
  assert.ok(n, path);
  return n;
};

Deno.test("typed properties: u32, u64, strings, string lists, booleans", () => {
  const iommu = node(virt, "/soc/iommu@3010000");
  assert.equal(of_property_read_u32(iommu, "#iommu-cells"), 1);
  assert.equal(of_property_read_u32(iommu, "absent"), undefined);
  assert.deepEqual(of_property_read_string_array(iommu, "interrupt-names"), [
    "cmdq",
    "fltq",
    "pm",
    "priq",
  ]);
  assert.equal(of_property_match_string(iommu, "interrupt-names", "pm"), 2);
  assert.equal(of_property_match_string(iommu, "interrupt-names", "nope"), -1);
  assert.equal(of_property_read_string(iommu, "compatible"), "riscv,iommu");
  assert.ok(
    of_device_is_compatible(node(virt, "/soc/interrupt-controller@28000000"), "riscv,imsics"),
  );
  assert.ok(of_property_read_bool(node(virt, "/soc/pci@30000000"), "ats-supported"));
  assert.equal(of_property_read_u64(node(virt, "/memory@80000000"), "reg"), 0x8000_0000);
  const n = new DtNode("x").set("short", new Uint8Array([1, 2])).set("odd", new Uint8Array(6))
    .set("nonul", new Uint8Array([65]));
  assert.throws(() => of_property_read_u32(n, "short"), { code: "EOVERFLOW" });
  assert.throws(() => of_property_read_u32_array(n, "odd"), { code: "EILSEQ" });
  assert.throws(() => of_property_read_string(n, "nonul"), { code: "EILSEQ" });
});

Deno.test("status: absent or okay is available, disabled is not", () => {
  assert.ok(of_device_is_available(node(virt, "/soc/iommu@3010000")));
  assert.ok(!of_device_is_available(node(virt, "/soc/disabled@10200000")));
});

Deno.test("reg decodes with the parent's #address-cells/#size-cells", async (t) => {
  await t.step("two-cell addresses and sizes on the virt soc", () => {
    const iommu = node(virt, "/soc/iommu@3010000");
    assert.equal(of_n_addr_cells(iommu), 2);
    assert.equal(of_n_size_cells(iommu), 2);
    assert.deepEqual(of_get_address(iommu, 0), { address: 0x301_0000, size: 0x1000 });
    assert.equal(of_get_address(iommu, 1), undefined);
    assert.deepEqual(of_get_address(node(virt, "/memory@80000000"), 0), {
      address: 0x8000_0000,
      size: 0x4000_0000,
    });
  });
  await t.step("a bus without #address-cells inherits its ancestors' (as Linux does)", () => {
    const leaf = node(cells, "/bus@20000000/nested/leaf@4000");
    assert.equal(of_n_addr_cells(leaf), 1);
    assert.equal(of_n_size_cells(leaf), 1);
    assert.deepEqual(of_get_address(leaf, 0), { address: 0x4000, size: 0x10 });
  });
  await t.step("a root without #address-cells defaults to one cell", () => {
    const dt = new DeviceTree();
    const n = dt.root.addChild("d@10").set("reg", [0x10, 0x20]);
    assert.deepEqual(of_get_address(n, 0), { address: 0x10, size: 0x20 });
  });
});

Deno.test("of_translate_address() follows ranges up to the root", async (t) => {
  await t.step("empty ranges is identity", () => {
    assert.equal(of_translate_address(node(virt, "/soc/iommu@3010000"), 0x301_0000), 0x301_0000);
  });
  await t.step("a non-identity range shifts, through an identity child bus", () => {
    const leaf = node(cells, "/bus@20000000/nested/leaf@4000");
    assert.equal(of_translate_address(leaf, 0x4000), 0x2000_4000);
    const r = of_address_to_resource(node(cells, "/bus@20000000/master@2000"), 1)!;
    assert.deepEqual(r, {
      start: 0x2000_3000,
      end: 0x2000_31ff,
      flags: IORESOURCE_MEM,
      name: "data",
    });
  });
  await t.step("addresses outside every range, or a bus without ranges, are EINVAL", () => {
    const leaf = node(cells, "/bus@20000000/nested/leaf@4000");
    assert.throws(() => of_translate_address(leaf, 0x10_0000), { code: "EINVAL" });
    const dt = new DeviceTree();
    const bus = dt.root.addChild("bus").set("#address-cells", [1]).set("#size-cells", [1]);
    const d = bus.addChild("d@0").set("reg", [0, 4]);
    assert.throws(() => of_address_to_resource(d, 0), /no ranges/);
  });
});

Deno.test("interrupts: parent lookup, specifier cells, interrupts-extended", async (t) => {
  const aplic = node(virt, "/soc/interrupt-controller@d000000");
  await t.step("interrupts with interrupt-parent and #interrupt-cells = 2", () => {
    const iommu = node(virt, "/soc/iommu@3010000");
    assert.equal(of_irq_find_parent(iommu), aplic);
    assert.equal(of_irq_count(iommu), 4);
    assert.deepEqual(of_irq_parse_one(iommu, 2), { np: aplic, args: [38, 4] });
    assert.equal(of_irq_parse_one(iommu, 4), undefined);
  });
  await t.step("interrupt-parent inherited from an ancestor bus", () => {
    const intc = node(cells, "/interrupt-controller@1000");
    const leaf = node(cells, "/bus@20000000/nested/leaf@4000");
    assert.deepEqual(of_irq_parse_one(leaf, 0), { np: intc, args: [8] });
  });
  await t.step("interrupts-extended names the controller per entry", () => {
    const intc = node(cells, "/interrupt-controller@1000");
    const m = node(cells, "/bus@20000000/master@2000");
    assert.equal(of_irq_count(m), 2);
    assert.deepEqual(of_irq_parse_one(m, 1), { np: intc, args: [7] });
  });
});

Deno.test("phandle lists: iommus with #iommu-cells, msi-parent", async (t) => {
  await t.step("one-cell iommus on the virt DMA engine", () => {
    const dma = node(virt, "/soc/dma@10100000");
    const spec = of_parse_phandle_with_args(dma, "iommus", "#iommu-cells", 0)!;
    assert.equal(spec.np, node(virt, "/soc/iommu@3010000"));
    assert.deepEqual(spec.args, [0x10]);
  });
  await t.step("two-cell iommus, two entries", () => {
    const m = node(cells, "/bus@20000000/master@2000");
    assert.equal(of_count_phandle_with_args(m, "iommus", "#iommu-cells"), 2);
    assert.deepEqual(of_parse_phandle_with_args(m, "iommus", "#iommu-cells", 1)?.args, [8, 0]);
    assert.equal(of_parse_phandle_with_args(m, "iommus", "#iommu-cells", 2), undefined);
  });
  await t.step("msi-parent", () => {
    assert.equal(
      of_parse_phandle(node(virt, "/soc/iommu@3010000"), "msi-parent", 0),
      node(virt, "/soc/interrupt-controller@28000000"),
    );
  });
  await t.step("a dangling phandle or a short list is EINVAL", () => {
    const dt = new DeviceTree();
    const io = dt.root.addChild("io").set("#iommu-cells", [2]);
    const ph = dt.phandleOf(io);
    const a = dt.root.addChild("a").set("iommus", [ph + 1, 0, 0]);
    const b = dt.root.addChild("b").set("iommus", [ph, 1]);
    assert.throws(() => of_parse_phandle_with_args(a, "iommus", "#iommu-cells", 0), /not found/);
    assert.throws(() => of_parse_phandle_with_args(b, "iommus", "#iommu-cells", 0), /too short/);
  });
});

Deno.test("of_map_id(): iommu-map translates requester IDs, with iommu-map-mask", async (t) => {
  const pci = node(virt, "/soc/pci@30000000");
  const iommu = node(virt, "/soc/iommu@3010000");
  await t.step("virt: every RID but 00:01.0 (0x8, the PCI IOMMU) maps 1:1", () => {
    for (const rid of [0x0, 0x7, 0x9, 0x100, 0xffff]) {
      assert.deepEqual(of_map_id(pci, rid, "iommu-map", "iommu-map-mask"), { np: iommu, id: rid });
    }
    assert.equal(of_map_id(pci, 0x8, "iommu-map", "iommu-map-mask"), null);
    assert.equal(of_map_id(pci, 0x1_0000, "iommu-map", "iommu-map-mask"), null);
  });
  await t.step("the mask drops the function bits before matching; output is rebased", () => {
    const host = node(cells, "/pcie@40000000");
    const smmu = node(cells, "/bus@20000000/iommu@1000");
    assert.deepEqual(of_map_id(host, 0x10f, "iommu-map", "iommu-map-mask"), {
      np: smmu,
      id: 0x1008,
    });
    assert.deepEqual(of_map_id(host, 0x1ff, "iommu-map", "iommu-map-mask"), {
      np: smmu,
      id: 0x10f8,
    });
    assert.equal(of_map_id(host, 0x200, "iommu-map", "iommu-map-mask"), null);
  });
  await t.step("no map property: no translation", () => {
    assert.equal(of_map_id(iommu, 1, "iommu-map", "iommu-map-mask"), null);
  });
});

Deno.test("early_init_dt_scan_memory(): RAM from memory nodes, reservations from both sources", () => {
  assert.deepEqual(early_init_dt_scan_memory(virt), {
    ram: [{ base: 0x8000_0000, size: 0x4000_0000 }],
    reserved: [{ base: 0x8000_0000, size: 0x20_0000 }],
  });
  const dt = new DeviceTree();
  dt.root.set("#address-cells", [2]).set("#size-cells", [2]);
  dt.root.addChild("memory@80000000").set("device_type", "memory")
    .set("reg", [0, 0x8000_0000, 0, 0x1000_0000, 0x1, 0, 0, 0x1000_0000]);
  dt.root.addChild("memory@90000000").set("device_type", "memory").set("status", "disabled")
    .set("reg", [0, 0x9000_0000, 0, 0x1000]);
  const rm = dt.root.addChild("reserved-memory").set("#address-cells", [2]).set("#size-cells", [2])
    .set("ranges", true);
  rm.addChild("fw@80000000").set("reg", [0, 0x8000_0000, 0, 0x4_0000]);
  assert.deepEqual(early_init_dt_scan_memory(dt), {
    ram: [{ base: 0x8000_0000, size: 0x1000_0000 }, { base: 0x1_0000_0000, size: 0x1000_0000 }],
    reserved: [{ base: 0x8000_0000, size: 0x4_0000 }],
  });
});

Deno.test("malformed typed properties are errors, never wrong values", async (t) => {
  const dt = new DeviceTree();
  const np = dt.root.addChild("x").set("one", [7]).set("wide", [0x20_0000, 0]);
  await t.step("u64 shorter than two cells: EOVERFLOW", () => {
    assert.throws(() => of_property_read_u64(np, "one"), { code: "EOVERFLOW" });
  });
  await t.step("cells at or beyond 2^53: EOVERFLOW", () => {
    assert.throws(() => of_property_read_u64(np, "wide"), { code: "EOVERFLOW" });
    assert.throws(() => of_read_number([0x20_0000, 0]), { code: "EOVERFLOW" });
    assert.equal(of_read_number([0x1f_ffff, 0xffff_ffff]), Number.MAX_SAFE_INTEGER);
  });
  await t.step("a string list without its final NUL: EILSEQ", () => {
    np.set("names", new Uint8Array([97, 0, 98]));
    assert.throws(() => of_property_read_string_array(np, "names"), { code: "EILSEQ" });
  });
  await t.step("interrupts with no interrupt parent: EINVAL", () => {
    np.set("interrupts", [5]);
    assert.throws(() => of_irq_parse_one(np, 0), { code: "EINVAL" });
  });
  await t.step("an iommu-map that is not 4-cell entries, or names no node: EINVAL", () => {
    const iommu = dt.root.addChild("iommu");
    const ph = dt.phandleOf(iommu);
    const host = dt.root.addChild("pci").set("iommu-map", [0, ph, 0]);
    assert.throws(() => of_map_id(host, 0, "iommu-map", "iommu-map-mask"), { code: "EINVAL" });
    host.set("iommu-map", [0, ph + 1, 0, 8]);
    assert.throws(() => of_map_id(host, 1, "iommu-map", "iommu-map-mask"), { code: "EINVAL" });
    assert.equal(of_map_id(host, 8, "iommu-map", "iommu-map-mask"), null, "outside the entry");
  });
});
