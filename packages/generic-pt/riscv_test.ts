// The riscv64 formats against the privileged spec's PTE layout (Sv39/48/57, Svnapot, Svpbmt)
// and the IOMMU spec's iosatp/iohgatp MODE encodings.
import assert from "node:assert/strict";
import { isErrno } from "@iommu-lab/kernel";
import { PtIommu } from "./iommu_pt.ts";
import type { PtFeatures, PtFormat } from "./pt_defs.ts";
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from "@iommu-lab/iommu";
import { riscv64, riscv64x4 } from "./riscv.ts";
import { PtFixture } from "./test_fixture.ts";

const spec = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/riscv-iommu-spec-modes.json", import.meta.url)),
);

// PTE fields of the privileged spec, as 64-bit values.
const V = 1n, R = 2n, W = 4n, X = 8n, U = 16n, G = 32n, A = 64n, D = 128n;
const N = 1n << 63n;
const pbmt = (pte: bigint) => pte >> 61n & 3n;
const ppnOf = (pte: bigint) => pte >> 10n & (1n << 44n) - 1n;

function fixture(vaBits: number, features: PtFeatures, format: PtFormat = riscv64): PtFixture {
  return new PtFixture({ name: "spec", format, vaBits, features });
}

/** The raw PTE a spec walk of `pfn` ends at, and its level. */
function pteOf(fx: PtFixture, pfn: number): { pte: bigint; level: number; pa: number } {
  const path = fx.walkPath(pfn);
  const last = path[path.length - 1];
  const pa = last.table + last.index * 8;
  return { pte: fx.ram.read64(pa), level: last.level, pa };
}

Deno.test("leaf PTEs: prot maps to R/W/X with A|U always and D pre-set on writable pages", async (t) => {
  const cases: [string, number, bigint][] = [
    ["READ|WRITE", IOMMU_READ | IOMMU_WRITE, V | R | W | X | U | A | D],
    ["READ", IOMMU_READ, V | R | X | U | A],
    ["WRITE", IOMMU_WRITE, V | R | W | X | U | A | D],
    ["READ|NOEXEC", IOMMU_READ | IOMMU_NOEXEC, V | R | U | A],
    [
      "READ|WRITE|NOEXEC|PRIV",
      IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_PRIV,
      V | R | W | U | A | D,
    ],
  ];
  for (const [name, prot, bits] of cases) {
    await t.step(name, () => {
      const fx = fixture(39, { signExtend: true });
      fx.pt.map(0x1234_5000, 0x1_2345_6000, 4096, prot);
      const { pte, level } = pteOf(fx, 0x12345);
      assert.equal(level, 0);
      assert.equal(pte & 0x3ffn, bits, "flag bits 9:0 (G and RSW clear)");
      assert.equal(ppnOf(pte), 0x123456n);
      assert.equal(pte >> 54n, 0n, "reserved bits, PBMT and N clear");
      assert.equal(pte & G, 0n);
      fx.doUnmap(0x12345, 1);
      fx.finish();
    });
  }
  await t.step("no R, W or X is EOPNOTSUPP from the format, EINVAL from map", () => {
    const fx = fixture(39, {});
    assert.throws(
      () => riscv64.setProt(IOMMU_NOEXEC, fx.pt.features, { lo: 0, hi: 0 }),
      (e) => isErrno(e, "EOPNOTSUPP"),
    );
    assert.throws(() => fx.pt.map(0, 0, 4096, IOMMU_NOEXEC), (e) => isErrno(e, "EINVAL"));
    assert.throws(() => fx.pt.map(0, 0, 4096, 0), (e) => isErrno(e, "EINVAL"));
    fx.finish();
  });
});

Deno.test("Svpbmt: MMIO is PBMT=IO, non-cacheable is PBMT=NC, cacheable is PMA", async (t) => {
  const cases: [string, number, boolean, bigint][] = [
    ["MMIO", IOMMU_READ | IOMMU_MMIO, true, 2n],
    ["MMIO|CACHE", IOMMU_READ | IOMMU_MMIO | IOMMU_CACHE, true, 2n],
    ["not CACHE", IOMMU_READ, true, 1n],
    ["CACHE", IOMMU_READ | IOMMU_CACHE, true, 0n],
    ["MMIO without Svpbmt", IOMMU_READ | IOMMU_MMIO, false, 0n],
    ["not CACHE without Svpbmt", IOMMU_READ, false, 0n],
  ];
  for (const [name, prot, svpbmt, want] of cases) {
    await t.step(name, () => {
      const fx = fixture(48, { svpbmt });
      fx.pt.map(0x20_0000, 0x40_0000, 0x20_0000, prot);
      const { pte, level } = pteOf(fx, 0x200);
      assert.equal(level, 1);
      assert.equal(pbmt(pte), want);
      fx.doUnmap(0x200, 512);
      fx.finish();
    });
  }
});

Deno.test("Svnapot: a 64 KiB leaf is 16 identical PTEs with N=1 and PPN[3:0]=1000b", () => {
  const fx = fixture(39, { svnapot: true });
  fx.pt.map(0x5_0000, 0x1_2345_0000, 0x1_0000, IOMMU_READ | IOMMU_WRITE);
  const { pa, level } = pteOf(fx, 0x50);
  assert.equal(level, 0);
  const first = fx.ram.read64(pa);
  assert.equal(first & N, N);
  assert.equal(ppnOf(first) & 0xfn, 0b1000n);
  assert.equal(ppnOf(first) >> 4n, 0x1_2345_0000n >> 16n);
  for (let i = 0; i < 16; i++) assert.equal(fx.ram.read64(pa + i * 8), first, `PTE ${i}`);
  assert.equal(fx.ram.read64(pa + 16 * 8), 0n, "the next PTE is untouched");
  assert.equal(fx.pt.iova_to_phys(0x5_f123), 0x1_2345_f123);
  // Without Svnapot the same map is 16 ordinary 4 KiB leaves.
  const plain = fixture(39, {});
  plain.pt.map(0x5_0000, 0x1_2345_0000, 0x1_0000, IOMMU_READ | IOMMU_WRITE);
  const p = pteOf(plain, 0x53);
  assert.equal(p.pte & N, 0n);
  assert.equal(ppnOf(p.pte), 0x1_2345_3n);
  fx.doUnmap(0x50, 16);
  plain.doUnmap(0x50, 16);
  fx.finish();
  plain.finish();
});

Deno.test("non-leaf PTEs hold only V and the PPN (D, A, U clear)", () => {
  const fx = fixture(57, { signExtend: true });
  fx.pt.map(0x1_0000_0000, 0, 4096, IOMMU_READ);
  const path = fx.walkPath(0x10_0000);
  assert.equal(path.length, 5);
  for (const step of path.slice(0, -1)) {
    const pte = fx.ram.read64(step.table + step.index * 8);
    assert.equal(pte & 0x3ffn, V, `level ${step.level} flags`);
    assert.equal(pte >> 54n, 0n, `level ${step.level} upper bits`);
  }
  fx.doUnmap(0x10_0000, 1);
  fx.finish();
});

Deno.test("superpage leaves sit at their level with a naturally aligned PPN", async (t) => {
  for (const [lg2, level] of [[21, 1], [30, 2], [39, 3], [48, 4]]) {
    await t.step(`2^${lg2} bytes at level ${level}`, () => {
      const fx = fixture(57, { signExtend: true });
      const pages = 2 ** (lg2 - 12);
      fx.doMap(pages, pages * 3, pages);
      const { pte, level: got } = pteOf(fx, pages);
      assert.equal(got, level);
      assert.equal(pte & (R | W | X), R | W | X, "a leaf has R, W or X set");
      assert.equal(ppnOf(pte), BigInt(pages * 3));
      fx.doUnmap(pages, pages);
      fx.finish();
    });
  }
});

Deno.test("iosatp.MODE and iohgatp.MODE match the spec's encodings", async (t) => {
  const cases: [PtFormat, number, string, string][] = [
    [riscv64, 39, "iosatp.MODE", "Sv39"],
    [riscv64, 48, "iosatp.MODE", "Sv48"],
    [riscv64, 57, "iosatp.MODE", "Sv57"],
    [riscv64x4, 41, "iohgatp.MODE", "Sv39x4"],
    [riscv64x4, 50, "iohgatp.MODE", "Sv48x4"],
    [riscv64x4, 59, "iohgatp.MODE", "Sv57x4"],
  ];
  for (const [format, vaBits, field, name] of cases) {
    await t.step(`${name}`, () => {
      const fx = fixture(vaBits, {}, format);
      assert.equal(fx.pt.hwInfo().mode, spec.modes[field][name]);
      fx.finish();
    });
  }
});

Deno.test("Sv39 sign extension: the upper half is indexed by VA[38:30] like the lower half", () => {
  const fx = fixture(39, { signExtend: true });
  fx.pt.map(0xffff_ffc0_0000_0000n, 0x8000_0000, 4096, IOMMU_READ);
  const root = fx.pt.hwInfo().rootPa;
  const top = fx.ram.read64(root + 256 * 8);
  assert.equal(top & V, V, "the first upper-half IOVA uses top index 256");
  fx.pt.map(0x3f_ffff_f000, 0x8000_1000, 4096, IOMMU_READ);
  assert.equal(fx.ram.read64(root + 255 * 8) & V, V, "the last lower-half IOVA uses index 255");
  fx.pt.unmap(0xffff_ffc0_0000_0000n, 4096, fx.gather);
  fx.pt.unmap(0x3f_ffff_f000, 4096, fx.gather);
  fx.finish();
});

Deno.test("second stage: the 16 KiB root holds 2048 entries, GPA bits 40:39 select its page", () => {
  const fx = fixture(41, {}, riscv64x4);
  const root = fx.pt.hwInfo().rootPa;
  assert.equal(root % 16384, 0);
  assert.equal(fx.alloc.allocatedPages, 4, "an order-2 root");
  fx.pt.map(2 ** 41 - 4096, 0x9000_0000, 4096, IOMMU_READ | IOMMU_WRITE);
  assert.equal(fx.ram.read64(root + 2047 * 8) & V, V, "the last GPA uses root entry 2047");
  assert.equal(fx.pt.iova_to_phys(2 ** 41 - 1), 0x9000_0fff);
  assert.throws(
    () =>
      new PtIommu({
        mem: fx.ram,
        alloc: fx.alloc,
        vaBits: 41,
        format: riscv64x4,
        features: { signExtend: true },
      }),
    (e) => isErrno(e, "EINVAL"),
  );
  fx.pt.unmap(2 ** 41 - 4096, 4096, fx.gather);
  fx.finish();
});
