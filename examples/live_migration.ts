/**
 * Live migration's pre-copy loop over iommufd dirty tracking, on a booted machine.
 *
 * A VMM (this script) has given a PCIe DMA engine to its guest as VFIO would: the engine is bound
 * to iommufd and attached to a HWPT allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING, over an IOAS
 * that maps the guest's memory (user memory of the VMM). The device keeps writing into that
 * memory, most of its writes landing in a small hot set (seeded with pure-rand), while the VMM
 * migrates the memory to a second one: it turns tracking on (IOMMU_HWPT_SET_DIRTY_TRACKING),
 * copies everything once, then round after round reads and clears the dirty bitmap
 * (IOMMU_HWPT_GET_DIRTY_BITMAP) and copies the pages it names, while the device goes on writing
 * at a fixed rate per page copied. Once a round leaves few enough dirty pages the device is
 * stopped and the last ones are copied (stop-and-copy); the copy must then be byte for byte the
 * source. The RISC-V IOMMU sets D in the second-stage PTEs (DC.tc.GADE) as the DMA goes through
 * it; the driver reads and cleans them and flushes the IOTLB after each clearing read.
 *
 * Prints one line per round (dirty pages, bytes, the device's writes meanwhile) and writes one
 * SVG sheet with the dirty bitmap of every round, a page a cell.
 *
 * @module
 */
import { dirname } from "node:path";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import {
  clear_user,
  copy_from_user,
  copy_to_user,
  device_release_driver,
  MAP_ANONYMOUS,
  MAP_SHARED,
  MmStruct,
  PAGE_SIZE,
  pci_enable_device,
  pci_set_master,
  PROT_READ,
  PROT_WRITE,
  string_get_size,
  vm_mmap,
} from "@iommu-lab/kernel";
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "@iommu-lab/iommu";
import {
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_fops_open,
  iommufd_init,
} from "@iommu-lab/iommufd";
import { Machine } from "@iommu-lab/machine";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import {
  _test_cmd_get_dirty_bitmap,
  _test_cmd_hwpt_alloc,
  _test_cmd_set_dirty_tracking,
  _test_ioctl_ioas_alloc,
  test_ioctl_ioas_map_fixed,
  user_dma,
} from "../tools/testing/selftests/iommu/iommufd_utils.ts";
import { runTool, type Tool } from "../tools/cli.ts";

/** Where the guest's memory starts in the device's IOVA space (its guest-physical address). */
const GUEST_IOVA = 0x8000_0000;
/** Spans the hot set is cut into. */
const HOT_SPANS = 4;

/** What a migration run is given. */
export interface LiveMigrationOptions {
  /** Bytes of guest memory (a multiple of 4 KiB). */
  memBytes: number;
  /** Seed of the device's writes. */
  seed: number;
  /** Percent of the pages in the hot set. */
  hotPct: number;
  /** Percent of the device's writes that hit the hot set (the rest: any page). */
  hotWrites: number;
  /** The device's writes per page the VMM copies. */
  rate: number;
  /** A round with at most this many dirty pages ends the pre-copy. */
  stopPages: number;
  /** Rounds after the first full copy before stop-and-copy is forced. */
  maxRounds: number;
  /** Where the SVG sheet goes (directories are created). */
  svgPath: string;
  /** Where the lines go. */
  print(line: string): void;
}

/** One pass over the memory: the first full copy (round 0), a pre-copy round, or stop-and-copy. */
export interface MigrationRound {
  /** 0 for the full copy; stop-and-copy is the last one. */
  round: number;
  /** Pages copied: all of them, or the ones the bitmap named. */
  pages: number;
  /** Bytes copied. */
  bytes: number;
  /** The device's writes while the pages were copied (0 in stop-and-copy). */
  writes: number;
  /** Which pages were copied (bit i: page i), for the picture. */
  bitmap: Uint8Array;
}

/** What a run did. */
export interface LiveMigrationResult {
  /** Round 0, the pre-copy rounds, and stop-and-copy last. */
  rounds: MigrationRound[];
  /** The pre-copy ended on a small enough dirty set (not on `maxRounds`). */
  converged: boolean;
  /** The second memory equals the guest memory at the end. */
  identical: boolean;
  /** Pages copied over the whole migration. */
  totalPages: number;
}

/**
 * Runs the migration: boots the machine, gives the engine to the "guest" through iommufd, and
 * copies its memory while it writes.
 */
export function runLiveMigration(opts: LiveMigrationOptions): LiveMigrationResult {
  const pages = opts.memBytes / PAGE_SIZE;
  const machine = Machine.boot({
    parts: [dirtyPart()],
    // The engine's completion MSIs bypass the IOMMU: the guest's HWPT maps no doorbell.
    msiThroughIommu: false,
    dmaEngines: 1,
  });
  const kernel = machine.kernel;
  const mm = new MmStruct(kernel);
  const fd = iommufd_fops_open(iommufd_init(kernel), mm);
  const rw = PROT_READ | PROT_WRITE;
  const guest = vm_mmap(mm, 0, opts.memBytes, rw, MAP_SHARED | MAP_ANONYMOUS);
  const bitmapBytes = Math.ceil(pages / 64) * 8;
  const bitmap = vm_mmap(mm, 0, bitmapBytes, rw, MAP_SHARED | MAP_ANONYMOUS);
  const rng = xoroshiro128plus(opts.seed);

  // The guest's memory before the migration: every page holds something.
  const fill = new Uint8Array(opts.memBytes);
  const words = new Uint32Array(fill.buffer);
  for (let i = 0; i < words.length; i++) words[i] = (i * 0x9e37_79b9) >>> 0;
  copy_to_user(mm, guest, fill);

  // VFIO's part: the engine leaves its kernel driver, is bound to iommufd and attached to a
  // tracking HWPT over the IOAS mapping the guest's memory.
  const pdev = machine.dmaDevices[0];
  device_release_driver(pdev);
  const ioas_id = _test_ioctl_ioas_alloc(fd);
  const { idev, id: dev_id } = iommufd_device_bind(fd, pdev);
  const hwpt_id = _test_cmd_hwpt_alloc(fd, dev_id, ioas_id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  iommufd_device_attach(idev, hwpt_id);
  test_ioctl_ioas_map_fixed(fd, ioas_id, guest, opts.memBytes, GUEST_IOVA);
  pci_enable_device(pdev);
  pci_set_master(pdev);

  // The hot set: HOT_SPANS spans at seeded places; the device's writes mostly land there.
  const hot: number[] = [];
  const span = Math.max(1, Math.floor(pages * opts.hotPct / 100 / HOT_SPANS));
  for (let s = 0; s < HOT_SPANS; s++) {
    const start = uniformInt(rng, 0, pages - span);
    for (let p = start; p < start + span; p++) hot.push(p);
  }
  let writes = 0;
  const deviceWrite = () => {
    const page = uniformInt(rng, 0, 99) < opts.hotWrites
      ? hot[uniformInt(rng, 0, hot.length - 1)]
      : uniformInt(rng, 0, pages - 1);
    const off = uniformInt(rng, 0, PAGE_SIZE / 4 - 1) * 4;
    const len = uniformInt(rng, 1, Math.min(64, (PAGE_SIZE - off) / 4)) * 4;
    const pattern = uniformInt(rng, 0, 0xffff_ffff);
    user_dma(machine, pdev, "memset", GUEST_IOVA + page * PAGE_SIZE + off, pattern, len);
    writes++;
  };

  // The second memory, and the copy of a page into it with the device's writes interleaved.
  const dest = new Uint8Array(opts.memBytes);
  let credit = 0;
  const copyPage = (p: number, running: boolean) => {
    copy_from_user(mm, dest.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), guest + p * PAGE_SIZE);
    if (!running) return;
    for (credit += opts.rate; credit >= 1; credit--) deviceWrite();
  };
  const copyRound = (round: number, bits: Uint8Array, running: boolean): MigrationRound => {
    writes = 0;
    let n = 0;
    for (let p = 0; p < pages; p++) {
      if (!(bits[p >> 3] >> (p & 7) & 1)) continue;
      copyPage(p, running);
      n++;
    }
    return { round, pages: n, bytes: n * PAGE_SIZE, writes, bitmap: bits };
  };
  const readAndClear = (): Uint8Array => {
    clear_user(mm, bitmap, bitmapBytes);
    _test_cmd_get_dirty_bitmap(fd, hwpt_id, opts.memBytes, GUEST_IOVA, PAGE_SIZE, bitmap, 0);
    const bits = new Uint8Array(bitmapBytes);
    copy_from_user(mm, bits, bitmap);
    return bits;
  };

  opts.print(
    `live_migration: ${string_get_size(opts.memBytes)} of guest memory (${pages} pages of 4 KiB) ` +
      `behind the RISC-V IOMMU, seed ${opts.seed}`,
  );
  opts.print(
    `the device writes ${opts.rate} times per page copied, ${opts.hotWrites}% of it into ` +
      `${opts.hotPct}% of the pages; stop-and-copy at ${opts.stopPages} dirty pages`,
  );
  opts.print("round  dirty pages  dirty bytes  device writes");
  const line = (r: MigrationRound, note = "") =>
    opts.print(
      `${String(r.round).padStart(5)}  ${String(r.pages).padStart(11)}  ${
        string_get_size(r.bytes).padStart(11)
      }  ${String(r.writes).padStart(13)}${note}`,
    );

  _test_cmd_set_dirty_tracking(fd, hwpt_id, true);
  const rounds = [copyRound(0, new Uint8Array(bitmapBytes).fill(0xff), true)];
  line(rounds[0], "  (everything)");
  let converged = false;
  let bits = readAndClear();
  for (let round = 1; round <= opts.maxRounds; round++) {
    const r = copyRound(round, bits, true);
    rounds.push(r);
    line(r);
    bits = readAndClear();
    if (_count(bits) <= opts.stopPages) {
      converged = true;
      break;
    }
  }
  // Stop-and-copy: the device is quiet; what the last read named is all that is left.
  const last = copyRound(rounds.length, bits, false);
  rounds.push(last);
  line(last, "  (stop-and-copy, device stopped)");

  const now = new Uint8Array(opts.memBytes);
  copy_from_user(mm, now, guest);
  const identical = now.every((b, i) => b === dest[i]);
  const totalPages = rounds.reduce((s, r) => s + r.pages, 0);
  opts.print(
    `${converged ? "converged" : `did not converge in ${opts.maxRounds} rounds`}: ` +
      `${totalPages} pages copied (${string_get_size(totalPages * PAGE_SIZE)}), ` +
      `${last.pages} of them with the device stopped; the copy is ` +
      `${identical ? "identical" : "DIFFERENT"}`,
  );
  Deno.mkdirSync(dirname(opts.svgPath), { recursive: true });
  Deno.writeTextFileSync(opts.svgPath, dirtySheet(rounds, pages));
  opts.print(`wrote ${opts.svgPath}`);
  fd.close();
  return { rounds, converged, identical, totalPages };
}

function _count(bits: Uint8Array): number {
  let n = 0;
  for (const b of bits) for (let v = b; v; v &= v - 1) n++;
  return n;
}

/** Cell size and the panel's width in cells. */
const CELL = 3;
const COLUMNS = 128;

/**
 * One SVG sheet: a panel per round, the pages it copied in red on grey, a page a cell, rows of
 * COLUMNS pages; runs of dirty cells are one rectangle each.
 */
export function dirtySheet(rounds: readonly MigrationRound[], pages: number): string {
  const rows = Math.ceil(pages / COLUMNS);
  const pw = COLUMNS * CELL, ph = rows * CELL;
  const perRow = Math.max(1, Math.min(rounds.length, 4));
  const gap = 16, title = 18;
  const width = perRow * (pw + gap) + gap;
  const height = Math.ceil(rounds.length / perRow) * (ph + title + gap) + gap;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  rounds.forEach((r, i) => {
    const x = gap + (i % perRow) * (pw + gap);
    const y = gap + Math.floor(i / perRow) * (ph + title + gap);
    const what = i === 0 ? "full copy" : i === rounds.length - 1 ? "stop-and-copy" : "pre-copy";
    out.push(`<g transform="translate(${x},${y})">`);
    out.push(
      `<text y="12">round ${r.round} (${what}): ${r.pages} pages copied, ${
        string_get_size(r.bytes)
      }</text>`,
    );
    out.push(`<rect y="${title}" width="${pw}" height="${ph}" fill="#e6e6e6"/>`);
    for (let row = 0; row < rows; row++) {
      for (let c = 0; c < COLUMNS;) {
        const p = row * COLUMNS + c;
        if (p >= pages || !(r.bitmap[p >> 3] >> (p & 7) & 1)) {
          c++;
          continue;
        }
        let end = c + 1;
        while (end < COLUMNS && row * COLUMNS + end < pages) {
          const q = row * COLUMNS + end;
          if (!(r.bitmap[q >> 3] >> (q & 7) & 1)) break;
          end++;
        }
        out.push(
          `<rect x="${c * CELL}" y="${title + row * CELL}" width="${(end - c) * CELL}" ` +
            `height="${CELL}" fill="#d62728"/>`,
        );
        c = end;
      }
    }
    out.push("</g>");
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** The example's options. */
const OPTIONS = {
  "mem-mib": { type: "int", default: 32, min: 1, max: 256, help: "guest memory in MiB" },
  seed: { type: "int", default: 1, help: "seed of the device's writes" },
  "hot-pct": {
    type: "int",
    default: 5,
    min: 1,
    max: 100,
    help: "percent of the pages in the hot set",
  },
  "hot-writes": {
    type: "int",
    default: 90,
    min: 0,
    max: 100,
    help: "percent of the device's writes into the hot set",
  },
  rate: {
    type: "number",
    default: 0.5,
    max: 64,
    help: "the device's writes per page copied",
  },
  "stop-pages": {
    type: "int",
    default: 64,
    help: "dirty pages at or below which the device is stopped for the last copy",
  },
  "max-rounds": { type: "int", default: 30, min: 1, help: "pre-copy rounds at most" },
  svg: {
    type: "string",
    default: "out/live-migration.svg",
    arg: "PATH",
    help: "where to write the SVG sheet of the dirty bitmaps",
  },
} as const;

/** The example's command line. Exit status 1 when the pre-copy did not converge. */
export const cli: Tool<typeof OPTIONS> = {
  usage: "deno run -A examples/live_migration.ts [options]",
  summary: "Migrates a guest's memory while a DMA engine keeps writing into it: iterative " +
    "pre-copy over iommufd's dirty bitmap (RISC-V IOMMU second-stage dirty tracking), then " +
    "stop-and-copy; checks the copy and draws each round's dirty pages as SVG.",
  options: OPTIONS,
  main(v, io) {
    const r = runLiveMigration({
      memBytes: v["mem-mib"] * 2 ** 20,
      seed: v.seed,
      hotPct: v["hot-pct"],
      hotWrites: v["hot-writes"],
      rate: v.rate,
      stopPages: v["stop-pages"],
      maxRounds: v["max-rounds"],
      svgPath: v.svg,
      print: (l) => io.out(l),
    });
    return r.converged && r.identical ? 0 : 1;
  },
};

if (import.meta.main) await runTool("live_migration", Deno.args, cli);
