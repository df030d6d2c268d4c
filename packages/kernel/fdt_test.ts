import assert from "node:assert/strict";
import fc from "fast-check";
import { DeviceTree, type DtNode, Errno, FDT_MAGIC, FDT_NOP } from "./mod.ts";

const virtBlob = Deno.readFileSync(new URL("./testdata/virt.dtb", import.meta.url));
const cellsBlob = Deno.readFileSync(new URL("./testdata/cells.dtb", import.meta.url));

function be32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off);
}

Deno.test("unflatten_device_tree() reads the dtc-compiled virt board", async (t) => {
  const dt = DeviceTree.fromBlob(virtBlob);
  await t.step("memory reservation map holds the /memreserve/", () => {
    assert.deepEqual(dt.reserved, [{ address: 0x8000_0000, size: 0x20_0000 }]);
  });
  await t.step("nodes keep blob order and full names", () => {
    assert.deepEqual(dt.root.children.map((c) => c.name), [
      "chosen",
      "memory@80000000",
      "cpus",
      "soc",
    ]);
    const iommu = dt.findNode("/soc/iommu@3010000")!;
    assert.equal(iommu.fullName, "/soc/iommu@3010000");
    assert.equal(iommu.baseName, "iommu");
    assert.equal(dt.findNode("/soc/iommu")?.name, "iommu@3010000");
    assert.equal(dt.findNode("/soc/nothing"), undefined);
  });
  await t.step("property values are the raw big-endian bytes dtc wrote", () => {
    const mem = dt.findNode("/memory@80000000")!;
    assert.deepEqual([...mem.props.get("reg")!], [
      0,
      0,
      0,
      0,
      0x80,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0x40,
      0,
      0,
      0,
    ]);
    assert.deepEqual(mem.props.get("device_type"), new TextEncoder().encode("memory\0"));
    assert.equal(dt.findNode("/soc/pci@30000000")!.props.get("dma-coherent")!.length, 0);
  });
  await t.step("phandles resolve to the labelled nodes", () => {
    const iommu = dt.findNode("/soc/iommu@3010000")!;
    assert.ok(iommu.phandle > 0);
    assert.equal(dt.findByPhandle(iommu.phandle), iommu);
    assert.equal(dt.findByPhandle(0), undefined);
    assert.equal(dt.findByPhandle(0x7777), undefined);
  });
});

Deno.test("FDT writer is the exact inverse of the parser on dtc blobs", async (t) => {
  for (const [name, blob] of [["virt.dtb", virtBlob], ["cells.dtb", cellsBlob]] as const) {
    await t.step(name, () => assert.deepEqual(DeviceTree.fromBlob(blob).toBlob(), blob));
  }
});

Deno.test("FDT writer lays the strings block out as dtc does (shared suffixes)", () => {
  const dt = new DeviceTree();
  dt.root.set("#size-cells", [1]).set("size-cells", [2]).set("cells", [3]).set("model", "m");
  const blob = dt.toBlob();
  const off = be32(blob, 12);
  const size = be32(blob, 32);
  assert.equal(new TextDecoder().decode(blob.subarray(off, off + size)), "#size-cells\0model\0");
  const again = DeviceTree.fromBlob(blob);
  assert.deepEqual([...again.root.props.keys()], ["#size-cells", "size-cells", "cells", "model"]);
});

Deno.test("FDT header: version 17, blocks in dtc order, boot cpu and reservations kept", () => {
  const dt = new DeviceTree();
  dt.bootCpuidPhys = 3;
  dt.reserved.push({ address: 0x1_2345_6000, size: 0x1000 });
  dt.root.addChild("a@1").set("reg", [1]);
  const blob = dt.toBlob();
  assert.equal(be32(blob, 0), FDT_MAGIC);
  assert.equal(be32(blob, 4), blob.length);
  assert.equal(be32(blob, 16), 40, "reservation map right after the header");
  assert.equal(be32(blob, 8), 40 + 32, "structure block after one entry and the terminator");
  assert.equal(be32(blob, 20), 17);
  assert.equal(be32(blob, 24), 16);
  const back = DeviceTree.fromBlob(blob);
  assert.equal(back.bootCpuidPhys, 3);
  assert.deepEqual(back.reserved, [{ address: 0x1_2345_6000, size: 0x1000 }]);
});

/** Inserts one FDT_NOP token at `structOffset` bytes into the structure block. */
function withNop(blob: Uint8Array, structOffset: number): Uint8Array {
  const offStruct = be32(blob, 8);
  const at = offStruct + structOffset;
  const out = new Uint8Array(blob.length + 4);
  out.set(blob.subarray(0, at));
  new DataView(out.buffer).setUint32(at, FDT_NOP);
  out.set(blob.subarray(at), at + 4);
  const dv = new DataView(out.buffer);
  dv.setUint32(4, be32(blob, 4) + 4);
  dv.setUint32(12, be32(blob, 12) + 4);
  dv.setUint32(36, be32(blob, 36) + 4);
  return out;
}

Deno.test("FDT_NOP tokens anywhere between tokens are skipped", () => {
  const dt = DeviceTree.fromBlob(cellsBlob);
  const rootName = 8; // FDT_BEGIN_NODE + "" padded
  const nopped = withNop(withNop(cellsBlob, rootName), 0);
  assert.deepEqual(DeviceTree.fromBlob(nopped).toBlob(), dt.toBlob());
});

Deno.test("malformed blobs are EINVAL with the reason, never another exception", async (t) => {
  const mutate = (f: (dv: DataView, b: Uint8Array) => void): Uint8Array => {
    const b = virtBlob.slice();
    f(new DataView(b.buffer), b);
    return b;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ["truncated header", virtBlob.slice(0, 20), /truncated header/],
    ["bad magic", mutate((dv) => dv.setUint32(0, 0xdeadbeef)), /bad magic/],
    ["old version", mutate((dv) => dv.setUint32(20, 15)), /version/],
    ["totalsize beyond blob", virtBlob.slice(0, virtBlob.length - 1), /totalsize/],
    ["unknown token", mutate((dv) => dv.setUint32(be32(virtBlob, 8), 7)), /unknown token 0x7/],
    [
      "property name offset out of range",
      mutate((dv) => dv.setUint32(be32(virtBlob, 8) + 8 + 8, 0xffff)),
      /name offset/,
    ],
  ];
  for (const [name, blob, why] of cases) {
    await t.step(name, () => {
      assert.throws(
        () => DeviceTree.fromBlob(blob),
        (e) => e instanceof Errno && e.code === "EINVAL" && why.test(e.message),
      );
    });
  }
  await t.step("random corruption", () => {
    fc.assert(
      fc.property(fc.nat(virtBlob.length - 1), fc.nat(255), (at, byte) => {
        const b = virtBlob.slice();
        b[at] = byte;
        try {
          DeviceTree.fromBlob(b);
        } catch (e) {
          assert.ok(e instanceof Errno, String(e));
        }
      }),
      { numRuns: Number(Deno.env.get("FDT_FUZZ_RUNS") ?? 300) },
    );
  });
});

const nameArb = fc.stringMatching(/^[a-z][a-z0-9,-]{0,8}(@[0-9a-f]{1,4})?$/);
const propArb = fc.tuple(
  fc.stringMatching(/^[#a-z][a-z0-9,#-]{0,10}$/),
  fc.uint8Array({ maxLength: 13 }),
);

function buildTree(spec: { props: [string, Uint8Array][]; kids: string[] }[]): DeviceTree {
  const dt = new DeviceTree();
  let parent = dt.root;
  spec.forEach((s, i) => {
    for (const [k, v] of s.props) parent.props.set(k, v);
    for (const name of s.kids) if (!parent.child(name)) parent.addChild(name);
    parent = parent.children[i % Math.max(parent.children.length, 1)] ?? parent;
  });
  return dt;
}

function shape(n: DtNode): unknown {
  return [n.name, [...n.props].map(([k, v]) => [k, [...v]]), n.children.map(shape)];
}

Deno.test("property: toBlob() then fromBlob() gives back the same tree", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          props: fc.array(propArb, { maxLength: 4 }),
          kids: fc.array(nameArb, { maxLength: 3 }),
        }),
        { maxLength: 5 },
      ),
      (spec) => {
        const dt = buildTree(spec);
        const back = DeviceTree.fromBlob(dt.toBlob());
        assert.deepEqual(shape(back.root), shape(dt.root));
        assert.deepEqual(back.toBlob(), dt.toBlob());
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("DtNode building: set() encodes cells, strings, lists and booleans; phandleOf() allocates", () => {
  const dt = new DeviceTree();
  const n = dt.root.addChild("n@0")
    .set("cells", [1, 0xffff_ffff])
    .set("str", "ab")
    .set("list", ["a", "bc"])
    .set("flag", true);
  assert.deepEqual([...n.props.get("cells")!], [0, 0, 0, 1, 255, 255, 255, 255]);
  assert.deepEqual([...n.props.get("str")!], [97, 98, 0]);
  assert.deepEqual([...n.props.get("list")!], [97, 0, 98, 99, 0]);
  assert.equal(n.props.get("flag")!.length, 0);
  assert.throws(() => n.set("bad", [2 ** 32]), { code: "EINVAL" });
  assert.throws(() => dt.root.addChild("n@0"), { code: "EEXIST" });
  const m = dt.root.addChild("m");
  assert.equal(dt.phandleOf(n), 1);
  assert.equal(dt.phandleOf(m), 2);
  assert.equal(dt.phandleOf(n), 1);
  assert.equal(dt.findByPhandle(2), m);
});
