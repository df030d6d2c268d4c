/**
 * Speed of generic-pt's read_and_clear_dirty, what GET_DIRTY_BITMAP runs: 16 GiB of an Sv48x4
 * second-stage table on the silicon's memory, 1% of it dirtied by the IOMMU's atomic D update
 * before each round, read and cleared into a 4 KiB-granule bitmap. Targets: with 4 KiB leaves
 * (4 M PTEs) < 0.5 s; with 2 MiB leaves < 10 ms. Also prints the cost per PTE scanned, with 1%
 * dirty and with nothing dirty (`clean_*`: the table reading alone).
 *
 * Prints one JSON line per figure, the best of several rounds (more for the short 2 MiB scan)
 * so the JIT has warmed up.
 * Usage: `deno run -A tools/bench/dirty.ts` (`--help`).
 *
 * @module
 */
import { PhysicalMemory } from "@iommu-lab/hw";
import { PtIommu, riscv64x4, RISCVPT_D } from "@iommu-lab/generic-pt";
import {
  iommu_dirty_bitmap_init,
  IOMMU_READ,
  IOMMU_WRITE,
  IommuDirtyBitmap,
  IommuIotlbGather,
  iova_bitmap_alloc,
} from "@iommu-lab/iommu";
import { TestTableAllocator } from "@iommu-lab/generic-pt/testing";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

const DRAM = 0x8000_0000;
const GIB = 2 ** 30;
const SIZE = 16 * GIB;
const IOVA = 4 * GIB;
const PAGES = SIZE / 4096;

/** The PTE holding frame `pfn` of the table at `root` (a walk as the IOMMU does it). */
function pteOf(mem: PhysicalMemory, pt: PtIommu, root: number, pfn: number): number {
  let table = root;
  for (let level = pt.topLevel; level >= 0; level--) {
    const entries = level === pt.topLevel ? 2048 : 512;
    const ea = table + (Math.floor(pfn / 512 ** level) % entries) * 8;
    mem.load64(ea);
    if (level === 0 || (mem.lo & 0xe) !== 0) return ea;
    table = ((mem.lo >>> 10) + (mem.hi & 0x3f_ffff) * 2 ** 22) * 4096;
  }
  throw new Error("unreachable");
}

function* run1(name: string, leaf: number, rounds: number): Generator<BenchLine> {
  const mem = new PhysicalMemory();
  mem.addRam(DRAM, 64 * GIB);
  const alloc = new TestTableAllocator(mem, DRAM, 256 * 2 ** 20);
  const pt = new PtIommu({
    mem,
    alloc,
    vaBits: 50,
    format: riscv64x4,
    features: { dirtyTrackingActive: true },
  });
  // An output address off the larger alignments forces leaves of exactly `leaf` bytes.
  pt.map(IOVA, DRAM + 32 * GIB + leaf, SIZE, IOMMU_READ | IOMMU_WRITE);
  const root = pt.hwInfo().rootPa;
  const leaves = SIZE / leaf;
  const dirtyLeaves = Math.round(leaves / 100);
  const step = leaves / dirtyLeaves;
  const ptes = new Float64Array(dirtyLeaves);
  for (let i = 0; i < dirtyLeaves; i++) {
    ptes[i] = pteOf(mem, pt, root, (IOVA + Math.floor(i * step) * leaf) / 4096);
  }
  const data = new BigUint64Array(PAGES / 64);
  const bytes = new Uint8Array(data.buffer);
  const bitmap = iova_bitmap_alloc(IOVA, SIZE, 4096, data);
  const gather = new IommuIotlbGather();
  const dirty = new IommuDirtyBitmap();
  let best = Infinity;
  let bits = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < dirtyLeaves; i++) mem.or64(ptes[i], RISCVPT_D, 0); // the IOMMU's AMO
    bytes.fill(0);
    iommu_dirty_bitmap_init(dirty, bitmap, gather);
    const t = performance.now();
    pt.read_and_clear_dirty(IOVA, SIZE, 0, dirty);
    best = Math.min(best, performance.now() - t);
    bits = 0;
    for (let b of bytes) for (; b !== 0; b >>= 1) bits += b & 1;
  }
  if (bits !== dirtyLeaves * leaf / 4096) {
    throw new Error(`${name}: ${bits} dirty bits, expected ${dirtyLeaves * leaf / 4096}`);
  }
  // The same scan with nothing dirty: the cost of reading the table alone.
  let clean = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    pt.read_and_clear_dirty(IOVA, SIZE, 0, dirty);
    clean = Math.min(clean, performance.now() - t);
  }
  pt.deinit();
  const fields = { vaBits: 50, bytes: SIZE, ptes: leaves, dirty_ptes: dirtyLeaves };
  const target = leaf === 4096 ? "< 500" : "< 10";
  yield benchLine("dirty", `${name}_ms`, Number(best.toFixed(3)), "ms", { ...fields, target });
  yield benchLine(
    "dirty",
    `${name}_per_pte`,
    Number((best * 1e6 / leaves).toFixed(2)),
    "ns",
    fields,
  );
  yield benchLine("dirty", `${name}_clean_ms`, Number(clean.toFixed(3)), "ms", fields);
  yield benchLine(
    "dirty",
    `${name}_clean_per_pte`,
    Number((clean * 1e6 / leaves).toFixed(2)),
    "ns",
    fields,
  );
}

/** Runs the benchmarks, yielding their figures. */
export function* run(): Generator<BenchLine> {
  yield* run1("read_and_clear_4k", 4096, 5);
  yield* run1("read_and_clear_2m", 2 ** 21, 50);
}

/** The command line. */
export const cli = benchCli(
  "dirty",
  "Speed of generic-pt's read_and_clear_dirty over 16 GiB, 1% dirty.",
  run,
);

if (import.meta.main) await runTool("dirty", Deno.args, cli);
