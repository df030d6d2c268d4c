/**
 * The end-to-end test the RFC ("[RFC PATCH 00/11] iommu/riscv: Add hardware dirty tracking for
 * second-stage domains") leaves as follow-up work, through iommufd on a booted machine with the
 * real driver and silicon: IOMMU_HWPT_ALLOC(DIRTY_TRACKING) → attach → IOMMU_IOAS_MAP → DMA from
 * a PCIe device (the DMA engine, driven from user space through its BAR) into 4 KiB, 64 KiB
 * Svnapot and 2 MiB leaves → IOMMU_HWPT_SET_DIRTY_TRACKING → IOMMU_HWPT_GET_DIRTY_BITMAP, and
 * the bitmap must be the IOVA footprint of what the device wrote, leaf by leaf, exactly. NO_CLEAR
 * reads give it again; after a clearing read only new writes show (a page written again
 * included: the IOTLB flush after the read reached the IOMMU); reads never set D.
 *
 * Not a file of Linux's selftests: their dirty tests drive the mock's IOMMU_TEST_OP_DIRTY.
 */
import assert from "node:assert/strict";
import {
  clear_user,
  copy_from_user,
  HPAGE_PMD_SIZE,
  MAP_ANONYMOUS,
  MAP_HUGETLB,
  MAP_POPULATE,
  MAP_SHARED,
  pci_clear_master,
  pci_disable_device,
  pci_enable_device,
  pci_set_master,
  type PciDev,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { iommu_get_domain_for_dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "@iommu-lab/iommu";
import {
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_device_detach,
  iommufd_device_unbind,
  type IommufdDevice,
} from "@iommu-lab/iommufd";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import {
  _test_cmd_get_dirty_bitmap,
  _test_cmd_hwpt_alloc,
  _test_cmd_set_dirty_tracking,
  _test_ioctl_destroy,
  _test_ioctl_ioas_alloc,
  EXPECT_ERRNO,
  riscv_env,
  type SelftestEnv,
  type SelftestSelf,
  setup_iommufd,
  teardown_iommufd,
  test_ioctl_ioas_map_fixed,
  user_dma,
} from "./iommufd_utils.ts";
import type { Machine } from "@iommu-lab/machine";

const K4 = 0x1000;
const K64 = 0x1_0000;
const M2 = HPAGE_PMD_SIZE;

/** The tracked IOVA range, one region per leaf size, back to back (a bitmap read needs no gap). */
const BASE = 0x4000_0000;
const R2M = BASE; // 2 leaves of 2 MiB (a hugetlb buffer)
const R64K = R2M + 2 * M2; // 4 Svnapot leaves of 64 KiB (a slice of a hugetlb buffer)
const R4K = R64K + 4 * K64; // 8 leaves of 4 KiB (32 KiB can hold no larger leaf)
const LENGTH = R4K + 8 * K4 - BASE;
/** What the engine copies from, outside the tracked range. */
const SRC = 0x5000_0000;

/** The leaf the layout gives `iova`: the unit in which the IOMMU's D bits count. */
function leafSize(iova: number): number {
  return iova < R64K ? M2 : iova < R4K ? K64 : K4;
}

/** Page indexes (from BASE) of the leaves `[iova, iova + len)` ranges touch. */
function footprint(...ranges: [number, number][]): number[] {
  const set = new Set<number>();
  for (const [iova, len] of ranges) {
    for (let a = iova; a < iova + len;) {
      const size = leafSize(a);
      const leaf = a - a % size;
      for (let p = leaf; p < leaf + size; p += K4) set.add((p - BASE) / K4);
      a = leaf + size;
    }
  }
  return [...set].sort((x, y) => x - y);
}

interface E2e extends SelftestSelf {
  env: SelftestEnv & { machine: Machine };
  pdev: PciDev;
  idev: IommufdDevice;
  ioas_id: number;
  hwpt_id: number;
  /** User memory behind each region. */
  u2m: number;
  u64k: number;
  u4k: number;
  usrc: number;
  /** User memory for the bitmap. */
  bitmap: number;
}

/**
 * HWPT_ALLOC(DIRTY_TRACKING) → attach → IOAS_MAP, on a machine booted with the riscv-iommu
 * dirty-tracking series (on the platform or the PCI IOMMU). The device is a DMA engine taken off
 * its kernel driver and bound to iommufd as VFIO binds one.
 */
function setup(iommuBus: "platform" | "pci"): E2e {
  const self = {} as E2e;
  setup_iommufd(self, riscv_env({ iommuBus, parts: [dirtyPart()] }));
  const { mm, machine } = self.env;
  const rw = PROT_READ | PROT_WRITE;
  const huge = MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE;
  self.u2m = vm_mmap(mm, 0, 2 * M2, rw, huge);
  self.u64k = vm_mmap(mm, 0, M2, rw, huge);
  self.u4k = vm_mmap(mm, 0, 8 * K4, rw, MAP_SHARED | MAP_ANONYMOUS);
  self.usrc = vm_mmap(mm, 0, K64, rw, MAP_SHARED | MAP_ANONYMOUS);
  self.bitmap = vm_mmap(mm, 0, K4, rw, MAP_SHARED | MAP_ANONYMOUS);

  self.pdev = machine.dmaDevices[0];
  self.ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const bound = iommufd_device_bind(self.fd, self.pdev);
  self.idev = bound.idev;
  self.hwpt_id = _test_cmd_hwpt_alloc(
    self.fd,
    bound.id,
    self.ioas_id,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  );
  assert.equal(iommufd_device_attach(self.idev, self.hwpt_id), self.hwpt_id);
  pci_enable_device(self.pdev);
  pci_set_master(self.pdev);
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.u2m, 2 * M2, R2M);
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.u64k, 4 * K64, R64K);
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.u4k, 8 * K4, R4K);
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.usrc, K64, SRC);
  return self;
}

/** Detach, unbind, destroy; then teardown_iommufd() finds every page and object back. */
function teardown(self: E2e): void {
  pci_clear_master(self.pdev);
  pci_disable_device(self.pdev);
  iommufd_device_detach(self.idev);
  iommufd_device_unbind(self.idev);
  _test_ioctl_destroy(self.fd, self.hwpt_id);
  teardown_iommufd(self);
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP over the tracked range: the page indexes set. */
function dirtyPages(self: E2e, flags = 0): number[] {
  const bytes = new Uint8Array(Math.ceil(LENGTH / K4 / 64) * 8);
  // Bits are or-ed into the user's bitmap: each read starts from a clear one.
  clear_user(self.env.mm, self.bitmap, bytes.length);
  _test_cmd_get_dirty_bitmap(self.fd, self.hwpt_id, LENGTH, BASE, K4, self.bitmap, flags);
  copy_from_user(self.env.mm, bytes, self.bitmap);
  const out: number[] = [];
  for (let i = 0; i < LENGTH / K4; i++) if (bytes[i >> 3] >> (i & 7) & 1) out.push(i);
  return out;
}

/** The device's DMA, from user space through its BAR. */
function memcpy(self: E2e, dst: number, src: number, len: number): void {
  user_dma(self.env.machine, self.pdev, "memcpy", dst, src, len);
}

function memset(self: E2e, dst: number, pattern: number, len: number): void {
  user_dma(self.env.machine, self.pdev, "memset", dst, pattern, len);
}

Deno.test("riscv dirty tracking through iommufd: the bitmap is exactly the IOVA footprint of the device's writes", async (t) => {
  for (const iommuBus of ["platform", "pci"] as const) {
    await t.step(iommuBus, () => {
      const self = setup(iommuBus);
      // The mapping has the leaves the test needs: 2 MiB, 64 KiB Svnapot and 4 KiB.
      const domain = iommu_get_domain_for_dev(self.pdev) as RiscvIommuDomain;
      const leaves: number[] = [];
      domain.pt.forEachLeaf((pfn, pages) => {
        if (pfn * K4 >= BASE && pfn * K4 < BASE + LENGTH) leaves.push(pages);
      });
      assert.deepEqual(leaves, [512, 512, 16, 16, 16, 16, 1, 1, 1, 1, 1, 1, 1, 1]);

      // Before tracking: writes go through (D is preset), and count for nothing later.
      memset(self, R4K, 0x0bad_f00d, K4);
      memcpy(self, R2M + 0x3000, SRC, 64);
      _test_cmd_set_dirty_tracking(self.fd, self.hwpt_id, true);
      assert.deepEqual(dirtyPages(self, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR), [], "clean start");

      // Writes across two 4 KiB leaves, a few bytes of a 64 KiB and of a 2 MiB leaf, a fill,
      // and copies whose sources are a 2 MiB and a 64 KiB leaf (read, never dirty).
      memcpy(self, R4K + 3 * K4 + 0x100, SRC, K4);
      memcpy(self, R64K + K64 + 0x5000, SRC + 0x20, 8);
      memcpy(self, R2M + M2 + 0x1_2340, SRC, 64);
      memset(self, R4K + 7 * K4, 0x5a5a_5a5a, K4);
      memcpy(self, R4K, R2M + 0x8000, 0x800);
      memcpy(self, R4K + 0x800, R64K + 2 * K64, 0x800);
      const written = footprint(
        [R4K + 3 * K4 + 0x100, K4],
        [R64K + K64 + 0x5000, 8],
        [R2M + M2 + 0x1_2340, 64],
        [R4K + 7 * K4, K4],
        [R4K, K4],
      );
      assert.equal(written.length, 4 + 16 + 512);
      assert.deepEqual(dirtyPages(self, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR), written);
      assert.deepEqual(dirtyPages(self, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR), written, "again");
      assert.deepEqual(dirtyPages(self), written, "the clearing read reports the same");
      assert.deepEqual(dirtyPages(self), [], "then nothing");

      // New writes show, old ones do not; page 3 again proves its IOTLB entry was flushed.
      memcpy(self, R4K + 3 * K4, SRC, 16);
      memcpy(self, R64K + 3 * K64 + 0xf000, SRC, K4);
      assert.deepEqual(
        dirtyPages(self),
        footprint([R4K + 3 * K4, 16], [R64K + 3 * K64 + 0xf000, K4]),
      );

      // Reads never set D.
      for (const src of [R4K, R4K + 7 * K4, R64K + 0x8000, R2M + 2 * M2 - K4]) {
        memcpy(self, SRC, src, K4);
      }
      assert.deepEqual(dirtyPages(self), []);

      // The data went to the user's pages the IOVAs map.
      const word = (at: number) => {
        const b = new Uint8Array(4);
        copy_from_user(self.env.mm, b, at);
        return new DataView(b.buffer).getUint32(0, true);
      };
      assert.equal(word(self.u4k + 7 * K4 + 0x10), 0x5a5a_5a5a);
      assert.equal(word(self.u4k + 0x900), word(self.u64k + 2 * K64 + 0x100));
      assert.deepEqual(self.env.kernel.dmesg.grep("Fault"), []);
      teardown(self);
    });
  }
});

Deno.test("riscv dirty tracking through iommufd: bad input on the real driver gets the uapi's errno", () => {
  const self = setup("platform");
  const get = (o: { iova?: number; length?: number; page_size?: number; bitmap?: number }) =>
    _test_cmd_get_dirty_bitmap(
      self.fd,
      self.hwpt_id,
      o.length ?? LENGTH,
      o.iova ?? BASE,
      o.page_size ?? K4,
      o.bitmap ?? self.bitmap,
      0,
    );
  // Tracking off: the driver has no dirty state to report.
  EXPECT_ERRNO("EINVAL", () => get({}));
  _test_cmd_set_dirty_tracking(self.fd, self.hwpt_id, true);
  get({});
  EXPECT_ERRNO("EINVAL", () => get({ page_size: 3 * K4, length: 3 * K4 * 64 }));
  EXPECT_ERRNO("EINVAL", () => get({ iova: BASE + 0x800 }));
  // A range running past what is mapped.
  EXPECT_ERRNO("EINVAL", () => get({ length: LENGTH + K4 }));
  EXPECT_ERRNO("EINVAL", () => get({ length: 0 }));
  // 2 KiB of bits for the whole range at 256 bytes a page runs past the bitmap's page.
  EXPECT_ERRNO("EFAULT", () => get({ page_size: 256, bitmap: self.bitmap + K4 - 8 }));
  // Destroying what is in use; the device still writes where it did.
  EXPECT_ERRNO("EBUSY", () => _test_ioctl_destroy(self.fd, self.hwpt_id));
  EXPECT_ERRNO("EBUSY", () => _test_ioctl_destroy(self.fd, self.ioas_id));
  memcpy(self, R4K, SRC, 16);
  assert.deepEqual(dirtyPages(self), footprint([R4K, 16]));
  teardown(self);
});
