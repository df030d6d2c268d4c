/**
 * Speed of IOMMU_HWPT_GET_DIRTY_BITMAP through iommufd on a booted machine: the whole ioctl path
 * (the uapi checks, iommufd's walk over the IOAS areas, the RISC-V driver's
 * read_and_clear_dirty on its second-stage table in the machine's memory, the copy of the bitmap
 * out to user memory, the IOTLB flush of what was cleaned: IOTINVAL.GVMA and IOFENCE.C through
 * the command queue). 16 GiB of IOVA is mapped in a DIRTY_TRACKING HWPT attached to a PCIe DMA
 * engine; before each read 1% of the leaves, evenly spread, are written through by the engine's
 * requester ID (the IOMMU's own walk and D update: the translation of a DMA write, without the
 * data). Targets: with 4 KiB leaves (4 M PTEs) < 0.5 s, with 2 MiB leaves < 10 ms; also the
 * cost per PTE scanned.
 *
 * The 16 GiB are one 64 MiB user buffer mapped 256 times at consecutive IOVAs (IOAS_MAP of the
 * same user memory again and again, so the same pages are pinned 256 times): the machine need
 * not own 16 GiB of RAM, and the table the IOMMU walks and the driver scans is the real 16 GiB
 * one. 4 KiB leaves come from ordinary pages with IOMMU_OPTION_HUGE_PAGES off; 2 MiB leaves from
 * a MAP_HUGETLB buffer.
 *
 * Prints one JSON line per figure, the best of several reads (more for the short 2 MiB one).
 * Usage: `deno run -A tools/bench/iommufd_dirty.ts` (`--help`).
 *
 * @module
 */
import { ACC_WRITE, newRequest, newResult, setIova, XLATE_OK } from "@iommu-lab/hw";
import {
  clear_user,
  copy_from_user,
  device_release_driver,
  MAP_ANONYMOUS,
  MAP_HUGETLB,
  MAP_POPULATE,
  MAP_SHARED,
  MmStruct,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { iommu_get_domain_for_dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "@iommu-lab/iommu";
import {
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  iommu_hwpt_get_dirty_bitmap,
  IOMMU_OPTION,
  iommu_option,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_SET,
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_fops_open,
  iommufd_init,
  sizeof,
} from "@iommu-lab/iommufd";
import { Machine } from "@iommu-lab/machine";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import {
  _test_cmd_hwpt_alloc,
  _test_cmd_set_dirty_tracking,
  _test_ioctl_ioas_alloc,
  test_ioctl_ioas_map_fixed,
} from "../testing/selftests/iommu/iommufd_utils.ts";
import { runTool } from "../cli.ts";
import { benchCli, type BenchLine, benchLine } from "./_report.ts";

const GIB = 2 ** 30;
const SIZE = 16 * GIB;
/** The user buffer mapped again and again. */
const CHUNK = 64 * 2 ** 20;
const IOVA = 4 * GIB;
const PAGES = SIZE / 4096;

function* run1(name: string, leaf: number, rounds: number): Generator<BenchLine> {
  const machine = Machine.boot({ parts: [dirtyPart()], msiThroughIommu: false, dmaEngines: 1 });
  const mm = new MmStruct(machine.kernel);
  const fd = iommufd_fops_open(iommufd_init(machine.kernel), mm);
  const rw = PROT_READ | PROT_WRITE;
  const huge = leaf > 4096 ? MAP_HUGETLB | MAP_POPULATE : 0;
  const buf = vm_mmap(mm, 0, CHUNK, rw, MAP_SHARED | MAP_ANONYMOUS | huge);
  const bitmapBytes = PAGES / 8;
  const bitmap = vm_mmap(mm, 0, bitmapBytes, rw, MAP_SHARED | MAP_ANONYMOUS);

  const pdev = machine.dmaDevices[0];
  device_release_driver(pdev);
  const ioas_id = _test_ioctl_ioas_alloc(fd);
  if (leaf === 4096) {
    fd.ioctl(IOMMU_OPTION, {
      size: sizeof(iommu_option),
      option_id: IOMMU_OPTION_HUGE_PAGES,
      op: IOMMU_OPTION_OP_SET,
      __reserved: 0,
      object_id: ioas_id,
      val64: 0n,
    } as iommu_option);
  }
  const { idev, id: dev_id } = iommufd_device_bind(fd, pdev);
  const hwpt_id = _test_cmd_hwpt_alloc(fd, dev_id, ioas_id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  iommufd_device_attach(idev, hwpt_id);
  for (let off = 0; off < SIZE; off += CHUNK) {
    test_ioctl_ioas_map_fixed(fd, ioas_id, buf, CHUNK, IOVA + off);
  }
  _test_cmd_set_dirty_tracking(fd, hwpt_id, true);
  const leaves = SIZE / leaf;
  let counted = 0;
  (iommu_get_domain_for_dev(pdev) as RiscvIommuDomain).pt.forEachLeaf((_pfn, pages) => {
    if (pages * 4096 !== leaf) throw new Error(`${name}: a leaf of ${pages} pages`);
    counted++;
  });
  if (counted !== leaves) throw new Error(`${name}: ${counted} leaves, expected ${leaves}`);

  // The engine's writes as the IOMMU sees them: one per dirty leaf.
  const translator = machine.silicon.rc.translator;
  const req = newRequest({ deviceId: pdev.fwspec!.ids[0], access: ACC_WRITE });
  const res = newResult();
  const dirtyLeaves = Math.round(leaves / 100);
  const step = leaves / dirtyLeaves;
  const write = () => {
    for (let i = 0; i < dirtyLeaves; i++) {
      setIova(req, IOVA + Math.floor(i * step) * leaf);
      translator.translate(req, res);
      if (res.status !== XLATE_OK) throw new Error(`${name}: write faulted (${res.cause})`);
    }
  };
  const cmd: iommu_hwpt_get_dirty_bitmap = {
    size: sizeof(iommu_hwpt_get_dirty_bitmap),
    hwpt_id,
    flags: 0,
    __reserved: 0,
    iova: BigInt(IOVA),
    length: BigInt(SIZE),
    page_size: 4096n,
    data: BigInt(bitmap),
  };
  const bits = new Uint8Array(bitmapBytes);
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    write();
    clear_user(mm, bitmap, bitmapBytes);
    const t = performance.now();
    fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, cmd);
    best = Math.min(best, performance.now() - t);
    copy_from_user(mm, bits, bitmap);
    let n = 0;
    for (let b of bits) for (; b !== 0; b >>= 1) n += b & 1;
    if (n !== dirtyLeaves * leaf / 4096) {
      throw new Error(`${name}: ${n} dirty bits, expected ${dirtyLeaves * leaf / 4096}`);
    }
  }
  fd.close();
  const fields = { bytes: SIZE, ptes: leaves, dirty_ptes: dirtyLeaves, mapped_as: "64 MiB x 256" };
  yield benchLine("iommufd_dirty", `${name}_ms`, Number(best.toFixed(3)), "ms", {
    ...fields,
    target: leaf === 4096 ? "< 500" : "< 10",
  });
  yield benchLine(
    "iommufd_dirty",
    `${name}_per_pte`,
    Number((best * 1e6 / leaves).toFixed(2)),
    "ns",
    fields,
  );
}

/** Runs the benchmarks, yielding their figures. */
export function* run(): Generator<BenchLine> {
  yield* run1("get_dirty_bitmap_4k", 4096, 5);
  yield* run1("get_dirty_bitmap_2m", 2 ** 21, 50);
}

/** The command line. */
export const cli = benchCli(
  "iommufd_dirty",
  "Speed of IOMMU_HWPT_GET_DIRTY_BITMAP through iommufd on the RISC-V IOMMU over 16 GiB, " +
    "1% dirty.",
  run,
);

if (import.meta.main) await runTool("iommufd_dirty", Deno.args, cli);
