/**
 * The fixture of the conformance suites (the analog of kunit_iommu.h): the configurations every
 * format runs, a domain on test RAM with a leak check at the end, and the KUnit helpers
 * (do_map, do_unmap, check_iova, count_valids) in page-frame units.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TestRam } from "@iommu-lab/kernel/testing";
import { type Iova, PtIommu } from "./iommu_pt.ts";
import { PT_ENTRY_TABLE, PT_PFN_SPACE, type PtFeatures, type PtFormat } from "./pt_defs.ts";
import { PtState } from "./pt_state.ts";
import { IOMMU_READ, IOMMU_WRITE, IommuIotlbGather } from "@iommu-lab/iommu";
import { riscv64, riscv64x4 } from "./riscv.ts";
import { TestTableAllocator } from "./testing.ts";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/** One configuration a suite runs for. */
export interface PtTestConfig {
  /** Name as KUnit prints it, with the mode. */
  name: string;
  /** Table format. */
  format: PtFormat;
  /** IOVA width. */
  vaBits: number;
  /** Features; as in KUnit, those the configuration does not pick are on. */
  features: PtFeatures;
}

/** The riscv64 KUnit configurations (Sv39+Svnapot, Sv48, Sv57+Svnapot) and their x4 twins. */
export const PT_TEST_CONFIGS: readonly PtTestConfig[] = [
  {
    name: "riscv64_cfg_0 (Sv39 + Svnapot)",
    format: riscv64,
    vaBits: 39,
    features: { svnapot: true, svpbmt: true, signExtend: true },
  },
  {
    name: "riscv64_cfg_1 (Sv48)",
    format: riscv64,
    vaBits: 48,
    features: { svnapot: false, svpbmt: true, signExtend: true },
  },
  {
    name: "riscv64_cfg_2 (Sv57 + Svnapot)",
    format: riscv64,
    vaBits: 57,
    features: { svnapot: true, svpbmt: true, signExtend: true },
  },
  {
    name: "riscv64x4_cfg_0 (Sv39x4 + Svnapot)",
    format: riscv64x4,
    vaBits: 41,
    features: { svnapot: true, svpbmt: true },
  },
  {
    name: "riscv64x4_cfg_1 (Sv48x4)",
    format: riscv64x4,
    vaBits: 50,
    features: { svnapot: false, svpbmt: true },
  },
  {
    name: "riscv64x4_cfg_2 (Sv57x4 + Svnapot)",
    format: riscv64x4,
    vaBits: 59,
    features: { svnapot: true, svpbmt: true },
  },
];

/** Base of the test RAM and of the table allocator's window. */
export const RAM_BASE = 0x8000_0000;
const TABLE_WINDOW = 1 << 28;
const RW = IOMMU_READ | IOMMU_WRITE;

/** Unsigned 32-bit values from the workspace's seeded generator (pure-rand's xoroshiro128+). */
export function rng32(seed: number): () => number {
  const rng = xoroshiro128plus(seed);
  return () => rng.next() >>> 0;
}

/** The seed for randomized tests: `GENERIC_PT_SEED` or a fixed default. */
export function testSeed(): number {
  return Number(Deno.env.get("GENERIC_PT_SEED") ?? 0x5eed);
}

/** A domain under test, with KUnit's helpers. */
export class PtFixture {
  /** Test RAM. */
  readonly ram = new TestRam(RAM_BASE, 2 ** 34);
  /** Table allocator with page accounting. */
  readonly alloc = new TestTableAllocator(this.ram, RAM_BASE, TABLE_WINDOW);
  /** The table. */
  readonly pt: PtIommu;
  /** The gather unmaps use; synced (pages put) by {@linkcode doUnmap}. */
  readonly gather = new IommuIotlbGather();
  /** Frame after the lower region (KUnit's top range is `[0, lowEnd)` in frames). */
  readonly lowEnd: number;
  /** First frame of the sign-extended upper region, or undefined without sign extension. */
  readonly highStart: number | undefined;
  /** KUnit's safe_pgsize_bitmap: sizes below 2^(vaBits - 1), as log2 of bytes, ascending. */
  readonly safeSizesLg2: number[] = [];
  /** KUnit's test_oa (0x74a71445deadbeef within the output size) as a frame number. */
  readonly testOaPpn: number;
  #flipUpper = false;

  /** Builds a domain for `cfg`. */
  constructor(readonly cfg: PtTestConfig) {
    this.pt = new PtIommu({
      mem: this.ram,
      alloc: this.alloc,
      vaBits: cfg.vaBits,
      features: cfg.features,
      format: cfg.format,
    });
    const vpnBits = cfg.vaBits - 12;
    this.lowEnd = cfg.format.canSignExtend ? 2 ** (vpnBits - 1) : 2 ** vpnBits;
    this.highStart = cfg.features.signExtend ? PT_PFN_SPACE - this.lowEnd : undefined;
    for (let lg2 = 12; lg2 < cfg.vaBits - 1; lg2++) {
      if (Math.floor(this.pt.pgsize_bitmap / 2 ** lg2) % 2 === 1) this.safeSizesLg2.push(lg2);
    }
    this.testOaPpn = Number((0x74a71445deadbeefn % (1n << 56n)) >> 12n);
  }

  /**
   * The IOVA of frame `pfn`: a number in the lower region; in the upper region alternately a
   * negative number and an unsigned `bigint`, so both forms get exercised.
   */
  iova(pfn: number): Iova {
    if (pfn < this.lowEnd) return pfn * 4096;
    this.#flipUpper = !this.#flipUpper;
    return this.#flipUpper ? (pfn - PT_PFN_SPACE) * 4096 : BigInt(pfn) << 12n;
  }

  /** KUnit's do_map(): maps `pages` frames from `pfn` to `ppn`, read-write; must succeed. */
  doMap(pfn: number, ppn: number, pages: number): void {
    assert.equal(this.pt.map(this.iova(pfn), ppn * 4096, pages * 4096, RW), pages * 4096);
  }

  /** KUnit's do_unmap(): unmaps exactly `pages` frames from `pfn`, then syncs the gather. */
  doUnmap(pfn: number, pages: number): void {
    assert.equal(this.pt.unmap(this.iova(pfn), pages * 4096, this.gather), pages * 4096);
    this.sync();
  }

  /** What the kunit iotlb_sync does: frees the gathered table pages. */
  sync(): void {
    this.gather.putPages();
    this.gather.reset();
  }

  /**
   * KUnit's check_iova(): every frame of the range translates to its output frame. Ranges
   * above `maxChecks` frames are checked at both ends and at evenly spread frames.
   */
  checkIova(pfn: number, ppn: number, pages: number, maxChecks = Infinity): void {
    const step = pages <= maxChecks ? 1 : Math.floor(pages / maxChecks);
    const check = (i: number) => {
      const pa = this.pt.iova_to_phys(this.iova(pfn + i));
      if (pa !== (ppn + i) * 4096) {
        assert.fail(
          `iova frame 0x${(pfn + i).toString(16)} -> 0x${pa.toString(16)}, ` +
            `expected 0x${((ppn + i) * 4096).toString(16)}`,
        );
      }
    };
    for (let i = 0; i < pages; i += step) check(i);
    check(pages - 1);
  }

  /** Leaves per size (log2 bytes); a contiguous Svnapot leaf counts once. */
  leafCounts(): Map<number, number> {
    const counts = new Map<number, number>();
    this.pt.forEachLeaf((_pfn, pages) => {
      const lg2 = Math.log2(pages) + 12;
      counts.set(lg2, (counts.get(lg2) ?? 0) + 1);
    });
    return counts;
  }

  /** KUnit's count_valids(): the number of leaves. */
  countValids(): number {
    let n = 0;
    for (const c of this.leafCounts().values()) n += c;
    return n;
  }

  /**
   * The tables a walk of frame `pfn` visits, top first, with the index used at each level,
   * computed the way the spec walks (9 bits per level, the top table wider for x4).
   */
  walkPath(pfn: number): { level: number; table: number; index: number }[] {
    const pts = new PtState(this.ram);
    const path = [];
    pts.table = this.pt.hwInfo().rootPa;
    for (let level = this.pt.topLevel; level >= 0; level--) {
      const entries = level === this.pt.topLevel ? 512 << this.cfg.format.topOrder : 512;
      const index = Math.floor(pfn / 512 ** level) % entries;
      path.push({ level, table: pts.table, index });
      pts.level = level;
      pts.index = index;
      if (pts.load() !== PT_ENTRY_TABLE) break;
      pts.table = pts.tablePa();
    }
    return path;
  }

  /** Frees the domain and checks that every table page came back (the KUnit exit check). */
  finish(): void {
    this.sync();
    this.pt.deinit();
    assert.equal(this.alloc.allocatedPages, 0, "table pages leaked");
  }
}

/** Runs `body` once per configuration as a `t.step`, with a fresh fixture and its leak check. */
export async function forEachConfig(
  t: Deno.TestContext,
  body: (fx: PtFixture) => void,
  configs: readonly PtTestConfig[] = PT_TEST_CONFIGS,
): Promise<void> {
  for (const cfg of configs) {
    await t.step(cfg.name, () => {
      const fx = new PtFixture(cfg);
      body(fx);
      fx.finish();
    });
  }
}
