import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type CacheGeometry,
  DEFAULT_CACHE_GEOMETRY,
  DEFAULT_MICRO_TLB_ENTRIES,
  resolveGeometry,
  resolveMicroTlb,
  SetAssociative,
} from "./cache.ts";

const replacement = (g: CacheGeometry) => new SetAssociative(resolveGeometry("iotlb", g));

Deno.test("cache geometry: the defaults are sizes a real IOMMU could have, pseudo-LRU", () => {
  assert.deepEqual(resolveGeometry("iotlb"), { sets: 1024, ways: 4, replacement: "plru" });
  assert.deepEqual(resolveGeometry("ddt"), { sets: 16, ways: 4, replacement: "plru" });
  assert.deepEqual(resolveGeometry("pdt"), { sets: 32, ways: 4, replacement: "plru" });
  assert.deepEqual(resolveGeometry("iotlb", { ways: 8 }), {
    sets: 1024,
    ways: 8,
    replacement: "plru",
  });
  assert.equal(DEFAULT_CACHE_GEOMETRY.iotlb.sets * DEFAULT_CACHE_GEOMETRY.iotlb.ways, 4096);
});

Deno.test("cache geometry: one the model cannot build (sets or ways not a power of two, over 16 ways, an unknown policy) is a machine-building RangeError", () => {
  const bad: [keyof typeof DEFAULT_CACHE_GEOMETRY, CacheGeometry, RegExp][] = [
    ["iotlb", { sets: 3 }, /iotlb cache's sets 3 is not a power of two/],
    ["iotlb", { sets: 0 }, /sets 0 is not a power of two/],
    ["ddt", { sets: 2 ** 23 }, /ddt cache's sets 8388608 is not a power of two up to 4194304/],
    ["pdt", { ways: 0 }, /pdt cache's ways 0 is not a power of two up to 16/],
    ["iotlb", { ways: 32 }, /ways 32 is not a power of two up to 16/],
    ["iotlb", { ways: 1.5 }, /ways 1.5/],
    [
      "iotlb",
      { replacement: "lru" as "plru" },
      /replacement "lru" is not plru or round-robin/,
    ],
  ];
  for (const [which, g, message] of bad) {
    assert.throws(() => resolveGeometry(which, g), { name: "RangeError", message });
  }
});

Deno.test("a fill takes the lowest invalid way; in a full set, bit pseudo-LRU takes the lowest way not used since the MRU bits last filled up", () => {
  const r = replacement({ sets: 2, ways: 4 });
  assert.deepEqual([r.fill(1), r.fill(1), r.fill(1), r.fill(1)], [0, 1, 2, 3]);
  // The fill of way 3 set every MRU bit: only way 3's stays.
  assert.equal(r.fill(1), 0);
  r.touch(1, 2);
  assert.equal(r.fill(1), 1, "ways 0, 2 and 3 were used since");
  // That fill set every bit again: only way 1's stays.
  assert.equal(r.fill(1), 0);
  r.release(1 * 4 + 2);
  assert.equal(r.fill(1), 2, "an invalid way before any victim");
  assert.equal(r.fill(0), 0, "sets keep their own state");
  r.releaseAll();
  assert.equal(r.fill(1), 0, "releaseAll() empties every set");
  assert.equal(r.fill(1), 1);
});

Deno.test("bit pseudo-LRU never evicts the way used last; with 2 ways it is exact LRU (property)", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(2, 4, 8, 16),
      fc.array(fc.nat(15), { minLength: 1, maxLength: 64 }),
      (ways, uses) => {
        const r = replacement({ sets: 1, ways });
        for (let w = 0; w < ways; w++) r.fill(0);
        for (const u of uses) r.touch(0, u % ways);
        const last = uses[uses.length - 1] % ways;
        const victim = r.fill(0);
        assert.notEqual(victim, last);
        if (ways === 2) assert.equal(victim, 1 - last);
      },
    ),
  );
});

Deno.test("round-robin: once a set is full, fills take its ways in turn, whatever the hits", () => {
  const r = replacement({ sets: 2, ways: 4, replacement: "round-robin" });
  for (let w = 0; w < 4; w++) r.fill(0);
  const victims: number[] = [];
  for (let i = 0; i < 6; i++) {
    r.touch(0, 3);
    victims.push(r.fill(0));
  }
  assert.deepEqual(victims, [0, 1, 2, 3, 0, 1]);
  assert.equal(r.fill(1), 0, "sets keep their own state");
});

Deno.test("one way: every fill takes way 0", () => {
  for (const policy of ["plru", "round-robin"] as const) {
    const r = replacement({ sets: 4, ways: 1, replacement: policy });
    assert.deepEqual([r.fill(2), r.fill(2), r.fill(2)], [0, 0, 0]);
  }
});

Deno.test("micro-TLB entries: 8 by default, 0 disables it; anything but 0 or a power of two up to 64 is a machine-building RangeError", () => {
  assert.equal(DEFAULT_MICRO_TLB_ENTRIES, 8);
  assert.equal(resolveMicroTlb(), 8);
  for (const n of [0, 1, 2, 64]) assert.equal(resolveMicroTlb(n), n);
  for (const n of [3, 128, -1, 1.5]) {
    assert.throws(() => resolveMicroTlb(n), {
      name: "RangeError",
      message: new RegExp(`micro-TLB's ${n} entries are not 0 or a power of two up to 64`),
    });
  }
});
