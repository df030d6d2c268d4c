// Property: random map/unmap sequences agree with a plain page → phys reference map, for every
// configuration, in a lower window across 2M boundaries and the top of the sign-extended half.
// GENERIC_PT_FUZZ_RUNS sets the number of sequences per configuration.
import assert from "node:assert/strict";
import fc from "fast-check";
import { isErrno } from "@iommu-lab/kernel";
import { IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/iommu";
import { PT_TEST_CONFIGS, PtFixture, testSeed } from "./test_fixture.ts";

const RUNS = Number(Deno.env.get("GENERIC_PT_FUZZ_RUNS") ?? 40);
const WINDOW = 2048; // frames: 8 MiB, four 2 MiB regions
const LOWER = 0x3fe00;
const UPPER = 2 ** 52 - WINDOW;
const PPN_BASE = 0x10_0000;

type Op =
  | { kind: "map"; upper: boolean; off: number; len: number; delta: number }
  | { kind: "unmapRegion"; pick: number }
  | { kind: "unmapPrefix"; pick: number; frac: number }
  | { kind: "unmapAt"; upper: boolean; off: number; len: number }
  | { kind: "unmapInside"; pick: number; frac: number }
  | { kind: "check"; upper: boolean; off: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("map" as const),
      upper: fc.boolean(),
      off: fc.oneof(fc.integer({ min: 0, max: WINDOW - 1 }), fc.constantFrom(0, 496, 512, 1024)),
      len: fc.oneof(fc.integer({ min: 1, max: 1100 }), fc.constantFrom(16, 32, 512, 1024)),
      // 512-frame deltas keep 2M leaves possible, 16-frame ones 64K leaves, odd ones neither.
      delta: fc.constantFrom(0, 512, 1536, 16, 48, 1, 7),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("unmapRegion" as const), pick: fc.nat() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("unmapPrefix" as const),
      pick: fc.nat(),
      frac: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("unmapAt" as const),
      upper: fc.boolean(),
      off: fc.integer({ min: 0, max: WINDOW - 1 }),
      len: fc.integer({ min: 1, max: 600 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("unmapInside" as const),
      pick: fc.nat(),
      frac: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("check" as const),
      upper: fc.boolean(),
      off: fc.integer({ min: 0, max: WINDOW - 1 }),
    }),
  },
);

/** The engine's leaves, expanded, must equal the reference map exactly. */
function compareLeaves(fx: PtFixture, model: Map<number, number>): void {
  let pages = 0;
  fx.pt.forEachLeaf((pfn, n, ppn) => {
    for (let i = 0; i < n; i++) {
      const want = model.get(pfn + i);
      if (want !== ppn + i) {
        assert.fail(`frame 0x${(pfn + i).toString(16)} maps ${ppn + i}, model ${want}`);
      }
    }
    pages += n;
  });
  assert.equal(pages, model.size, "no page mapped the model lacks");
}

function runOps(fx: PtFixture, ops: Op[]): void {
  const model = new Map<number, number>();
  const regions: { start: number; len: number }[] = [];
  const hasUpper = fx.highStart !== undefined;
  const base = (upper: boolean) => upper && hasUpper ? UPPER : LOWER;
  const unmapExact = (start: number, len: number) => {
    assert.equal(fx.pt.unmap(fx.iova(start), len * 4096, fx.gather), len * 4096);
    fx.sync();
    for (let i = 0; i < len; i++) model.delete(start + i);
  };
  for (const op of ops) {
    if (op.kind === "map") {
      const start = base(op.upper) + op.off;
      const len = Math.min(op.len, WINDOW - op.off);
      const ppn = PPN_BASE + op.off + op.delta;
      let busy = false;
      for (let i = 0; i < len && !busy; i++) busy = model.has(start + i);
      try {
        fx.pt.map(fx.iova(start), ppn * 4096, len * 4096, IOMMU_READ | IOMMU_WRITE);
        assert.ok(!busy, "a map over a mapped page succeeded");
        for (let i = 0; i < len; i++) model.set(start + i, ppn + i);
        regions.push({ start, len });
      } catch (e) {
        assert.ok(busy && isErrno(e, "EADDRINUSE"), String(e));
      }
    } else if (op.kind === "unmapRegion" || op.kind === "unmapPrefix") {
      if (regions.length === 0) continue;
      const r = regions[op.pick % regions.length];
      if (op.kind === "unmapRegion") {
        regions.splice(regions.indexOf(r), 1);
        unmapExact(r.start, r.len);
        continue;
      }
      // Unmapping the start of a region removes whole leaves: at least what was asked.
      const ask = Math.max(1, Math.floor(r.len * op.frac));
      const got = fx.pt.unmap(fx.iova(r.start), ask * 4096, fx.gather) / 4096;
      fx.sync();
      assert.ok(got >= ask && got <= r.len, `unmapped ${got} of ${ask} asked in ${r.len}`);
      for (let i = 0; i < got; i++) model.delete(r.start + i);
      r.start += got;
      r.len -= got;
      if (r.len === 0) regions.splice(regions.indexOf(r), 1);
    } else if (op.kind === "unmapAt") {
      // Starting on a hole unmaps nothing, whatever follows.
      const start = base(op.upper) + op.off;
      if (model.has(start)) continue;
      const len = Math.min(op.len, WINDOW - op.off);
      assert.equal(fx.pt.unmap(fx.iova(start), len * 4096, fx.gather), 0);
      assert.ok(fx.gather.isEmpty);
    } else if (op.kind === "unmapInside") {
      // Starting inside a large leaf unmaps nothing: leaves are never split.
      const large: { pfn: number; pages: number }[] = [];
      fx.pt.forEachLeaf((pfn, pages) => pages > 1 && large.push({ pfn, pages }));
      if (large.length === 0) continue;
      const leaf = large[op.pick % large.length];
      const at = leaf.pfn + 1 + Math.floor(op.frac * (leaf.pages - 2));
      assert.equal(fx.pt.unmap(fx.iova(at), 4096, fx.gather), 0);
    } else {
      const pfn = base(op.upper) + op.off;
      const want = model.get(pfn);
      assert.equal(fx.pt.iova_to_phys(fx.iova(pfn)), want === undefined ? 0 : want * 4096);
    }
    compareLeaves(fx, model);
  }
  for (const r of regions) unmapExact(r.start, r.len);
  assert.equal(fx.countValids(), 0);
}

Deno.test("map/unmap sequences agree with a reference page map and leak no table", async (t) => {
  for (const cfg of PT_TEST_CONFIGS) {
    await t.step(cfg.name, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
          const fx = new PtFixture(cfg);
          runOps(fx, ops);
          fx.finish();
        }),
        { numRuns: RUNS, seed: testSeed() },
      );
    });
  }
});
