// read_and_clear_dirty and PT_FEAT_RISCV_DIRTY_TRACKING_ACTIVE on the engine, with the IOMMU's
// A/D updates played by the same compare-and-swap on the PTE that the silicon does.
import assert from "node:assert/strict";
import { type ErrnoName, isErrno } from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import {
  iommu_dirty_bitmap_init,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDirtyBitmap,
  IommuIotlbGather,
  iova_bitmap_alloc,
} from "@iommu-lab/iommu";
import { PtIommu } from "./iommu_pt.ts";
import { PT_ENTRY_OA, PT_PFN_SPACE, type PtFormat } from "./pt_defs.ts";
import { PtState } from "./pt_state.ts";
import { riscv64x4, RISCVPT_A, RISCVPT_D, RISCVPT_R, RISCVPT_U, RISCVPT_W } from "./riscv.ts";
import {
  forEachConfig,
  PT_TEST_CONFIGS,
  PtFixture,
  type PtTestConfig,
  RAM_BASE,
  rng32,
  testSeed,
} from "./test_fixture.ts";
import { TestTableAllocator } from "./testing.ts";

const RW = IOMMU_READ | IOMMU_WRITE;
const SV48X4: PtTestConfig = PT_TEST_CONFIGS.find((c) => c.vaBits === 50)!;
const SV39X4_NAPOT: PtTestConfig = PT_TEST_CONFIGS.find((c) => c.vaBits === 41)!;

/** A fixture whose table has dirty tracking on from the start, as a DIRTY_TRACKING domain. */
function tracking(cfg: PtTestConfig): PtFixture {
  return new PtFixture({ ...cfg, features: { ...cfg.features, dirtyTrackingActive: true } });
}

/**
 * Maps `pages` frames from `pfn` with `prot` in leaves of exactly `pgsize` bytes: the output is
 * offset by `pgsize` from an alignment far larger, so no larger leaf fits.
 */
function mapWith(fx: PtFixture, pfn: number, pages: number, pgsize: number, prot = RW): void {
  fx.pt.map(fx.iova(pfn), (pfn % 2 ** 30) * 4096 + pgsize, pages * 4096, prot);
}

/**
 * What the IOMMU does to the leaf of frame `pfn` on an access: A, and D on a write to a writable
 * page, set with a compare-and-swap on the PTE it walked (for Svnapot, the copy of that page).
 */
function hwAccess(fx: PtFixture, pfn: number, write: boolean): void {
  const path = fx.walkPath(pfn);
  const leaf = path[path.length - 1];
  const pts = new PtState(fx.ram);
  Object.assign(pts, leaf);
  assert.equal(pts.load(), PT_ENTRY_OA, `frame 0x${pfn.toString(16)} is mapped`);
  const set = RISCVPT_A | (write && (pts.lo & RISCVPT_W) !== 0 ? RISCVPT_D : 0);
  const ea = pts.entryPa;
  while ((fx.ram.read32(ea) & set) !== set) {
    fx.ram.load64(ea);
    const lo = fx.ram.lo;
    const hi = fx.ram.hi;
    fx.ram.cas64(ea, lo, hi, (lo | set) >>> 0, hi);
  }
}

/** The PTE words of frame `pfn`'s leaf entry. */
function pteOf(fx: PtFixture, pfn: number): [number, number] {
  const path = fx.walkPath(pfn);
  const leaf = path[path.length - 1];
  fx.ram.load64(leaf.table + leaf.index * 8);
  return [fx.ram.lo, fx.ram.hi];
}

/**
 * Runs read_and_clear_dirty over frames `pfn..pfn + pages - 1` into a fresh bitmap at 4 KiB and
 * returns the set bits as frame numbers, with the gather it filled.
 */
function readDirty(
  fx: PtFixture,
  pfn: number,
  pages: number,
  flags = 0,
): { frames: number[]; gather: IommuIotlbGather } {
  const data = new Uint8Array(Math.ceil(pages / 64) * 8);
  const iova = pfn * 4096; // the unsigned IOVA, as iommufd's bitmap has it
  const bitmap = iova_bitmap_alloc(iova, pages * 4096, 4096, data);
  const gather = new IommuIotlbGather();
  const dirty = new IommuDirtyBitmap();
  iommu_dirty_bitmap_init(dirty, bitmap, gather);
  fx.pt.read_and_clear_dirty(fx.iova(pfn), pages * 4096, flags, dirty);
  const frames = [];
  for (let i = 0; i < pages; i++) if ((data[i >> 3] >> (i & 7)) & 1) frames.push(pfn + i);
  return { frames, gather };
}

function span(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

Deno.test("set_prot: D is preset on writable leaves only while dirty tracking is off", async (t) => {
  await forEachConfig(t, (fx) => {
    const base = 0x100;
    fx.doMap(base, 0x1000, 1); // RW, tracking off
    fx.pt.map(fx.iova(base + 1), 0x2000, 4096, IOMMU_READ);
    assert.equal(pteOf(fx, base)[0] & RISCVPT_D, RISCVPT_D, "writable: D preset");
    assert.equal(pteOf(fx, base + 1)[0] & RISCVPT_D, 0, "read-only: never D");
    fx.pt.set_dirty_tracking_active(true);
    assert.equal(fx.pt.features.dirtyTrackingActive, true);
    // Same prot as the first map: the cached attributes must not carry D over.
    fx.doMap(base + 2, 0x3000, 1);
    assert.equal(pteOf(fx, base + 2)[0] & RISCVPT_D, 0, "tracking: the IOMMU sets D");
    assert.equal(pteOf(fx, base + 2)[0] & (RISCVPT_W | RISCVPT_A), RISCVPT_W | RISCVPT_A);
    assert.equal(pteOf(fx, base)[0] & RISCVPT_D, RISCVPT_D, "turning it on rewrites nothing");
    fx.pt.set_dirty_tracking_active(false);
    fx.doMap(base + 3, 0x4000, 1);
    assert.equal(pteOf(fx, base + 3)[0] & RISCVPT_D, RISCVPT_D, "off again: D preset again");
    fx.doUnmap(base, 4);
  });
});

Deno.test("set_dirty_tracking_active(false): every writable leaf gets D back, read-only ones not", () => {
  const fx = tracking(SV39X4_NAPOT);
  mapWith(fx, 0x200, 16, 0x1_0000); // one Svnapot leaf
  mapWith(fx, 0x400, 512, 0x20_0000); // one 2 MiB leaf
  mapWith(fx, 0x4_0000, 2 ** 18, 2 ** 30); // one 1 GiB leaf
  mapWith(fx, 0x100, 4, 4096);
  mapWith(fx, 0x104, 1, 4096, IOMMU_READ);
  for (const pfn of [0x200, 0x20f, 0x400, 0x4_0000, 0x100, 0x103]) {
    assert.equal(pteOf(fx, pfn)[0] & RISCVPT_D, 0);
  }
  const before = pteOf(fx, 0x104);
  fx.pt.set_dirty_tracking_active(false);
  for (let pfn = 0x200; pfn < 0x210; pfn++) {
    assert.equal(pteOf(fx, pfn)[0] & RISCVPT_D, RISCVPT_D, `Svnapot copy ${pfn - 0x200}`);
  }
  for (const pfn of [0x400, 0x4_0000, 0x100, 0x101, 0x102, 0x103]) {
    assert.equal(pteOf(fx, pfn)[0] & RISCVPT_D, RISCVPT_D, `frame 0x${pfn.toString(16)}`);
  }
  assert.deepEqual(pteOf(fx, 0x104), before, "the read-only leaf is untouched");
  fx.doUnmap(0x4_0000, 2 ** 18);
  fx.doUnmap(0x400, 512);
  fx.doUnmap(0x200, 16);
  fx.doUnmap(0x100, 5);
  fx.finish();
});

Deno.test("read_and_clear_dirty: 4 KiB, 64 KiB Svnapot, 2 MiB and 1 GiB leaves report whole", async (t) => {
  const configs = PT_TEST_CONFIGS.filter((c) => c.features.svnapot);
  for (const cfg of configs) {
    await t.step(cfg.name, () => {
      const fx = tracking(cfg);
      mapWith(fx, 0x100, 8, 4096);
      mapWith(fx, 0x200, 32, 0x1_0000); // two Svnapot leaves
      mapWith(fx, 0x400, 1024, 0x20_0000); // two 2 MiB leaves
      mapWith(fx, 0x4_0000, 2 ** 18, 2 ** 30); // one 1 GiB leaf
      assert.deepEqual(readDirty(fx, 0, 0x8_0000).frames, [], "nothing written yet");

      hwAccess(fx, 0x103, true);
      hwAccess(fx, 0x105, true);
      hwAccess(fx, 0x106, false); // a read sets A, never D
      hwAccess(fx, 0x21b, true); // copy 11 of the second Svnapot leaf
      hwAccess(fx, 0x201, false);
      hwAccess(fx, 0x6ab, true); // inside the second 2 MiB leaf
      hwAccess(fx, 0x5_1234, true); // inside the 1 GiB leaf
      const { frames, gather } = readDirty(fx, 0, 0x8_0000);
      assert.deepEqual(frames, [
        0x103,
        0x105,
        ...span(0x210, 16),
        ...span(0x600, 512),
        ...span(0x4_0000, 2 ** 18),
      ]);
      assert.deepEqual([gather.startPfn, gather.endPfn], [0x103, 0x8_0000]);
      assert.equal(gather.leafLevels, 0b111, "4 KiB, 2 MiB and 1 GiB leaves changed");
      assert.equal(gather.tableLevels, 0);

      for (let pfn = 0x210; pfn < 0x220; pfn++) {
        assert.equal(pteOf(fx, pfn)[0] & RISCVPT_D, 0, `Svnapot copy ${pfn - 0x210} cleaned`);
      }
      assert.equal(pteOf(fx, 0x106)[0] & (RISCVPT_A | RISCVPT_D), RISCVPT_A, "A survives");
      assert.deepEqual(readDirty(fx, 0, 0x8_0000).frames, [], "cleared");
      fx.doUnmap(0x4_0000, 2 ** 18);
      fx.doUnmap(0x400, 1024);
      fx.doUnmap(0x200, 32);
      fx.doUnmap(0x100, 8);
      fx.finish();
    });
  }
});

Deno.test("read_and_clear_dirty: NO_CLEAR returns the same twice and changes no PTE", () => {
  const fx = tracking(SV39X4_NAPOT);
  mapWith(fx, 0x200, 16, 0x1_0000);
  mapWith(fx, 0x400, 512, 0x20_0000);
  mapWith(fx, 0x100, 4, 4096);
  hwAccess(fx, 0x205, true);
  hwAccess(fx, 0x401, true);
  hwAccess(fx, 0x102, true);
  const ptes = [0x200, 0x205, 0x400, 0x102].map((p) => pteOf(fx, p));
  const first = readDirty(fx, 0, 0x1000, IOMMU_DIRTY_NO_CLEAR);
  const second = readDirty(fx, 0, 0x1000, IOMMU_DIRTY_NO_CLEAR);
  assert.deepEqual(first.frames, [0x102, ...span(0x200, 16), ...span(0x400, 512)]);
  assert.deepEqual(second.frames, first.frames);
  assert.ok(first.gather.isEmpty, "nothing to flush when nothing was cleared");
  assert.deepEqual([0x200, 0x205, 0x400, 0x102].map((p) => pteOf(fx, p)), ptes);
  assert.deepEqual(readDirty(fx, 0, 0x1000).frames, first.frames, "a clearing read sees it too");
  assert.deepEqual(readDirty(fx, 0, 0x1000, IOMMU_DIRTY_NO_CLEAR).frames, []);
  fx.doUnmap(0x400, 512);
  fx.doUnmap(0x200, 16);
  fx.doUnmap(0x100, 4);
  fx.finish();
});

Deno.test("read_and_clear_dirty: after a clearing read new writes show and old ones do not", () => {
  const fx = tracking(SV48X4);
  mapWith(fx, 0x1000, 2048, 4096);
  for (const pfn of [0x1000, 0x1200, 0x17ff]) hwAccess(fx, pfn, true);
  assert.deepEqual(readDirty(fx, 0x1000, 2048).frames, [0x1000, 0x1200, 0x17ff]);
  hwAccess(fx, 0x1001, true);
  hwAccess(fx, 0x1200, true); // the same page again
  hwAccess(fx, 0x1300, false);
  assert.deepEqual(readDirty(fx, 0x1000, 2048).frames, [0x1001, 0x1200]);
  assert.deepEqual(readDirty(fx, 0x1000, 2048).frames, []);
  // No bitmap: only the cleaning and the gather, as iommufd clears before tracking starts.
  hwAccess(fx, 0x1400, true);
  const dirty = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirty, null, gather);
  fx.pt.read_and_clear_dirty(fx.iova(0x1000), 2048 * 4096, 0, dirty);
  assert.deepEqual([gather.startPfn, gather.endPfn], [0x1400, 0x1401]);
  assert.deepEqual(readDirty(fx, 0x1000, 2048).frames, []);
  fx.doUnmap(0x1000, 2048);
  fx.finish();
});

Deno.test("read_and_clear_dirty: a partial range reports only what it covers of a leaf", () => {
  const fx = tracking(SV39X4_NAPOT);
  mapWith(fx, 0x200, 16, 0x1_0000);
  mapWith(fx, 0x400, 512, 0x20_0000);
  mapWith(fx, 0x100, 4, 4096);
  // The dirty Svnapot copy (3) lies before the range: the leaf is still dirty as a whole.
  hwAccess(fx, 0x203, true);
  assert.deepEqual(readDirty(fx, 0x208, 0x10, IOMMU_DIRTY_NO_CLEAR).frames, span(0x208, 8));
  // ... and after it.
  assert.deepEqual(readDirty(fx, 0x1f0, 0x12, IOMMU_DIRTY_NO_CLEAR).frames, [0x200, 0x201]);
  // A 2 MiB leaf seen through a window of 3 pages, an unaligned IOVA and size.
  hwAccess(fx, 0x5ff, true);
  const data = new Uint8Array(8);
  const dirty = new IommuDirtyBitmap();
  const gather = new IommuIotlbGather();
  iommu_dirty_bitmap_init(dirty, iova_bitmap_alloc(0x40_0000, 64 * 4096, 4096, data), gather);
  fx.pt.read_and_clear_dirty(0x40_1ff8, 0x1010, 0, dirty); // frames 0x401..0x403
  assert.deepEqual([...data], [0b1110, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([gather.startPfn, gather.endPfn], [0x401, 0x404]);
  assert.equal(gather.leafLevels, 0b10);
  assert.equal(pteOf(fx, 0x400)[0] & RISCVPT_D, 0, "the whole leaf was cleaned");
  // A range of 4 KiB leaves where only the middle one is dirty and asked for.
  hwAccess(fx, 0x101, true);
  hwAccess(fx, 0x103, true);
  assert.deepEqual(readDirty(fx, 0x101, 1).frames, [0x101]);
  assert.deepEqual(readDirty(fx, 0x100, 4).frames, [0x103]);
  fx.doUnmap(0x400, 512);
  fx.doUnmap(0x200, 16);
  fx.doUnmap(0x100, 4);
  fx.finish();
});

Deno.test("read_and_clear_dirty: the sign-extended upper half, by negative and bigint IOVA", () => {
  const cfg = PT_TEST_CONFIGS[0]; // Sv39 + Svnapot, first stage
  const fx = tracking(cfg);
  const top = PT_PFN_SPACE - 0x200; // the last 2 MiB of the 64-bit space
  mapWith(fx, top, 512, 4096);
  hwAccess(fx, top + 7, true);
  hwAccess(fx, PT_PFN_SPACE - 1, true);
  // fx.iova() alternates a negative number and a bigint for the upper half.
  assert.deepEqual(readDirty(fx, top, 512, IOMMU_DIRTY_NO_CLEAR).frames, [
    top + 7,
    PT_PFN_SPACE - 1,
  ]);
  assert.deepEqual(readDirty(fx, top, 512).frames, [top + 7, PT_PFN_SPACE - 1]);
  assert.deepEqual(readDirty(fx, top, 512).frames, []);
  fx.doUnmap(top, 512);
  fx.finish();
});

Deno.test("make_write_clean: an IOMMU update between the read and the write is kept (CAS)", () => {
  // A PTE the IOMMU has not accessed yet (A clear) and already dirty; the IOMMU sets A right
  // after the CPU reads it. A plain store of the value read would lose that A.
  let armed = -1;
  class RacyRam extends TestRam {
    override load64(pa: number): void {
      super.load64(pa);
      if (pa === armed) {
        armed = -1;
        this.store64(pa, (this.lo | RISCVPT_A) >>> 0, this.hi); // the IOMMU's AMO, just after
      }
    }
  }
  const ram = new RacyRam(RAM_BASE, 1 << 24);
  const alloc = new TestTableAllocator(ram, RAM_BASE, 1 << 24);
  const pt = new PtIommu({ mem: ram, alloc, vaBits: 41, format: riscv64x4 });
  pt.map(0x10_0000, 0x9000_0000, 4096, RW);
  // Find the PTE and make it dirty but not accessed.
  const pts = new PtState(ram);
  pts.table = pt.hwInfo().rootPa;
  for (pts.level = pt.topLevel; pts.level > 0; pts.level--) {
    pts.index = Math.floor(0x100 / 512 ** pts.level) % (pts.level === pt.topLevel ? 2048 : 512);
    pts.load();
    pts.table = pts.tablePa();
  }
  pts.index = 0x100;
  pts.load();
  pts.installLeaf(pts.entryOaPpn(), 12, {
    lo: RISCVPT_R | RISCVPT_W | RISCVPT_U | RISCVPT_D,
    hi: 0,
  });
  armed = pts.entryPa;
  const data = new Uint8Array(8);
  const dirty = new IommuDirtyBitmap();
  iommu_dirty_bitmap_init(dirty, iova_bitmap_alloc(0x10_0000, 4096, 4096, data), null);
  pt.read_and_clear_dirty(0x10_0000, 4096, 0, dirty);
  assert.equal(armed, -1, "the IOMMU update landed inside the clean");
  assert.equal(data[0], 1);
  pts.load();
  assert.equal(pts.lo & (RISCVPT_A | RISCVPT_D), RISCVPT_A, "A kept, D cleared");
  const gather = new IommuIotlbGather();
  pt.unmap(0x10_0000, 4096, gather);
  gather.putPages();
  pt.deinit();
  assert.equal(alloc.allocatedPages, 0);
});

Deno.test("read_and_clear_dirty: a random model of maps, device writes and reads agrees", () => {
  // Leaves of every size at random places; writes dirty whole leaves; reads over random ranges
  // report every covered page of a dirty leaf and (unless NO_CLEAR) clean those leaves.
  const rnd = rng32(testSeed());
  const fx = tracking(SV39X4_NAPOT);
  const leaves: { pfn: number; pages: number; dirty: boolean; writable: boolean }[] = [];
  const sizes = [1, 16, 512];
  const SPACE = 0x4000; // frames 0..16383: 64 MiB
  for (let pfn = 0; pfn < SPACE;) {
    const pages = sizes[rnd() % 3];
    const at = Math.ceil(pfn / pages) * pages;
    if (at + pages > SPACE) break;
    if (rnd() % 4 !== 0) {
      const writable = rnd() % 8 !== 0;
      mapWith(fx, at, pages, pages * 4096, writable ? RW : IOMMU_READ);
      leaves.push({ pfn: at, pages, dirty: false, writable });
    }
    pfn = at + pages;
  }
  const leafOf = (pfn: number) => leaves.find((l) => pfn >= l.pfn && pfn < l.pfn + l.pages);
  for (let round = 0; round < 40; round++) {
    for (let n = rnd() % 30; n > 0; n--) {
      const pfn = rnd() % SPACE;
      const leaf = leafOf(pfn);
      if (leaf === undefined) continue;
      const write = rnd() % 2 === 0;
      hwAccess(fx, pfn, write);
      if (write && leaf.writable) leaf.dirty = true;
    }
    const first = rnd() % SPACE;
    const pages = 1 + rnd() % (SPACE - first);
    const noClear = rnd() % 3 === 0;
    const got = readDirty(fx, first, pages, noClear ? IOMMU_DIRTY_NO_CLEAR : 0).frames;
    const want = [];
    for (let pfn = first; pfn < first + pages; pfn++) if (leafOf(pfn)?.dirty) want.push(pfn);
    assert.deepEqual(got, want, `round ${round}`);
    if (!noClear) {
      for (const l of leaves) if (l.pfn < first + pages && l.pfn + l.pages > first) l.dirty = false;
    }
  }
  for (const l of leaves) fx.doUnmap(l.pfn, l.pages);
  fx.finish();
});

Deno.test("read_and_clear_dirty: bad arguments fail with Linux's errno", () => {
  const fx = tracking(SV48X4);
  const dirty = new IommuDirtyBitmap();
  const fail = (iova: number | bigint, size: number, flags: number, errno: ErrnoName) =>
    assert.throws(
      () => fx.pt.read_and_clear_dirty(iova, size, flags, dirty),
      (e) => isErrno(e, errno),
    );
  fail(0, 0, 0, "EINVAL");
  fail(0, -4096, 0, "EINVAL");
  fail(0, 4096, 2, "EINVAL");
  fail(2 ** 50 - 4096, 8192, 0, "ERANGE"); // past the 50-bit space
  fail(0xffff_ffff_ffff_f000n, 8192, 0, "EOVERFLOW");
  fx.pt.read_and_clear_dirty(2 ** 50 - 4096, 4096, 0, dirty); // the last page is fine
  fx.finish();
  fail(0, 4096, 0, "EINVAL"); // after deinit

  const noDirty: PtFormat = {
    ...riscv64x4,
    is_write_dirty: undefined,
    make_write_clean: undefined,
    make_write_dirty: undefined,
  };
  const ram = new TestRam(RAM_BASE, 1 << 24);
  const alloc = new TestTableAllocator(ram, RAM_BASE, 1 << 24);
  const pt = new PtIommu({ mem: ram, alloc, vaBits: 41, format: noDirty });
  assert.throws(() => pt.read_and_clear_dirty(0, 4096, 0, dirty), (e) => isErrno(e, "EOPNOTSUPP"));
  assert.throws(() => pt.set_dirty_tracking_active(true), (e) => isErrno(e, "EOPNOTSUPP"));
  pt.deinit();
  assert.throws(
    () =>
      new PtIommu({
        mem: ram,
        alloc,
        vaBits: 41,
        format: noDirty,
        features: { dirtyTrackingActive: true },
      }),
    (e) => isErrno(e, "EINVAL"),
  );
  assert.equal(alloc.allocatedPages, 0);
});
