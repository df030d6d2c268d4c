/**
 * tools/testing/selftests/iommu/iommufd.c, FIXTURE(iommufd_dirty_tracking): the buffer-size
 * variants (8k ... 128M, 64M and 128M also on huge pages) and the cases enforce_dirty,
 * set_dirty_tracking, device_dirty_capability, get_dirty_bitmap and get_dirty_bitmap_no_clear,
 * on the mock IOMMU (dirty bits set with IOMMU_TEST_OP_DIRTY) and, as `riscv_*`, on a machine
 * with the riscv-iommu dirty-tracking series loaded (dirty bits set by the DMA engine writing
 * through the RISC-V IOMMU, which sets D in the second-stage PTEs). There a device "that cannot
 * track" (MOCK_FLAGS_DEVICE_NO_DIRTY) is a DMA engine behind a second IOMMU without AMO_HWAD.
 *
 * One divergence from Linux's case: the device of the fixture is moved onto the tracking HWPT
 * before the bitmaps are read (Linux leaves it unattached), since on the machine the writes
 * that make pages dirty come from that device.
 */
import assert from "node:assert/strict";
import {
  clear_user,
  copy_from_user,
  copy_to_user,
  HPAGE_PMD_SIZE,
  MAP_ANONYMOUS,
  MAP_HUGETLB,
  MAP_POPULATE,
  MAP_SHARED,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "@iommu-lab/iommu";
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  IOMMU_OPTION,
  iommu_option,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_SET,
  sizeof,
} from "@iommu-lab/iommufd";
import {
  IOMMU_HWPT_DATA_SELFTEST,
  iommu_hwpt_selftest,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_IOMMUPT_DEFAULT,
  MOCK_IOMMUPT_HUGE,
} from "@iommu-lab/iommufd/testing";
import { FIXTURE, FIXTURE_VARIANT_ADD, TEST_F, TEST_HARNESS_MAIN } from "./kselftest_harness.ts";
import {
  _test_cmd_get_dirty_bitmap,
  _test_cmd_get_hw_info,
  _test_cmd_hwpt_alloc,
  _test_cmd_set_dirty_tracking,
  _test_ioctl_destroy,
  _test_ioctl_ioas_alloc,
  EXPECT_ERRNO,
  mock_env,
  riscv_dirty_env,
  type SelftestSelf,
  setup_iommufd,
  teardown_iommufd,
  test_ioctl_ioas_map_fixed,
} from "./iommufd_utils.ts";

interface DirtySelf extends SelftestSelf {
  ioas_id: number;
  hwpt_id: number;
  stdev_id: number;
  idev_id: number;
  /** Bytes of IOVA per bitmap bit: the domain's smallest page. */
  page_size: number;
  /** Bits of the bitmap: one per page of the buffer. */
  bitmap_size: number;
  /** User memory for the bitmap, a page more than it needs (for the unaligned cases). */
  bitmap: number;
  /** The mapped buffer (hugetlb with `hugepages`). */
  dbuf: number;
}

interface DirtyVariant {
  riscv: boolean;
  buffer_size: number;
  hugepages: boolean;
}

const iommufd_dirty_tracking = FIXTURE<DirtySelf, DirtyVariant>(
  "iommufd_dirty_tracking",
  (self, v) => {
    setup_iommufd(self, v.riscv ? riscv_dirty_env() : mock_env());
    const mm = self.env.mm;
    let flags = MAP_SHARED | MAP_ANONYMOUS;
    // The mapping of a hugetlb buffer is a whole number of huge pages.
    let size = v.buffer_size;
    if (v.hugepages) {
      flags |= MAP_HUGETLB | MAP_POPULATE;
      size = Math.max(size, HPAGE_PMD_SIZE);
    }
    self.dbuf = vm_mmap(mm, 0, size, PROT_READ | PROT_WRITE, flags);
    self.page_size = self.env.io_page_size;
    self.bitmap_size = v.buffer_size / self.page_size;
    const bytes = Math.ceil(self.bitmap_size / 8) + PAGE_SIZE;
    self.bitmap = vm_mmap(mm, 0, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
    self.ioas_id = _test_ioctl_ioas_alloc(self.fd);
    // The page size fed to the page table must be the one the dirty logic expects.
    if (!v.hugepages) {
      self.fd.ioctl(IOMMU_OPTION, {
        size: sizeof(iommu_option),
        option_id: IOMMU_OPTION_HUGE_PAGES,
        op: IOMMU_OPTION_OP_SET,
        __reserved: 0,
        object_id: self.ioas_id,
        val64: 0n,
      } as iommu_option);
    }
    const ids = self.env.mock_domain(self.fd, self.ioas_id);
    self.stdev_id = ids.stdev_id;
    self.hwpt_id = ids.hwpt_id;
    self.idev_id = ids.idev_id;
  },
  (self) => teardown_iommufd(self),
);

const M = 2 ** 20;
const SIZES: [string, number, boolean][] = [
  // Half of a u8 index bitmap.
  ["domain_dirty8k", 8 * 1024, false],
  // One u8 index bitmap.
  ["domain_dirty16k", 16 * 1024, false],
  // One u32 index bitmap.
  ["domain_dirty64k", 64 * 1024, false],
  // One u64 index bitmap.
  ["domain_dirty128k", 128 * 1024, false],
  // Two u64 index and a trailing end bitmap.
  ["domain_dirty320k", 320 * 1024, false],
  // A 4K bitmap (64M IOVA range).
  ["domain_dirty64M", 64 * M, false],
  ["domain_dirty64M_huge", 64 * M, true],
  // An 8K bitmap (128M IOVA range).
  ["domain_dirty128M", 128 * M, false],
  ["domain_dirty128M_huge", 128 * M, true],
];
for (const [name, buffer_size, hugepages] of SIZES) {
  FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, name, { riscv: false, buffer_size, hugepages });
}
for (const [name, buffer_size, hugepages] of SIZES) {
  FIXTURE_VARIANT_ADD(iommufd_dirty_tracking, `riscv_${name}`, {
    riscv: true,
    buffer_size,
    hugepages,
  });
}

TEST_F(
  iommufd_dirty_tracking,
  "enforce_dirty",
  (self) => {
    const env = self.env;
    // The regular case: a device that cannot track refuses a tracking HWPT.
    const hwpt_id = _test_cmd_hwpt_alloc(
      self.fd,
      self.idev_id,
      self.ioas_id,
      IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    );
    const dev = env.mock_domain(self.fd, hwpt_id);
    EXPECT_ERRNO("EINVAL", () => env.mock_domain(self.fd, hwpt_id, MOCK_FLAGS_DEVICE_NO_DIRTY));
    env.destroy_device(self.fd, dev.stdev_id);
    _test_ioctl_destroy(self.fd, hwpt_id);
    // An IOMMU that cannot track refuses to allocate one.
    const ioas_id = _test_ioctl_ioas_alloc(self.fd);
    const nodirty = env.mock_domain(self.fd, ioas_id, MOCK_FLAGS_DEVICE_NO_DIRTY);
    EXPECT_ERRNO(
      "EOPNOTSUPP",
      () =>
        _test_cmd_hwpt_alloc(self.fd, nodirty.idev_id, ioas_id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING),
    );
    env.destroy_device(self.fd, nodirty.stdev_id);
  },
);

TEST_F(iommufd_dirty_tracking, "set_dirty_tracking", (self) => {
  const hwpt_id = _test_cmd_hwpt_alloc(
    self.fd,
    self.idev_id,
    self.ioas_id,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  );
  const dev = self.env.mock_domain(self.fd, hwpt_id);
  _test_cmd_set_dirty_tracking(self.fd, hwpt_id, true);
  _test_cmd_set_dirty_tracking(self.fd, hwpt_id, false);
  self.env.destroy_device(self.fd, dev.stdev_id);
  _test_ioctl_destroy(self.fd, hwpt_id);
});

TEST_F(iommufd_dirty_tracking, "device_dirty_capability", (self) => {
  const hwpt_id = _test_cmd_hwpt_alloc(self.fd, self.idev_id, self.ioas_id, 0);
  const dev = self.env.mock_domain(self.fd, hwpt_id);
  const info = _test_cmd_get_hw_info(self.fd, self.idev_id, 0, 0);
  assert.equal(
    info.out_capabilities & BigInt(IOMMU_HW_CAP_DIRTY_TRACKING),
    BigInt(IOMMU_HW_CAP_DIRTY_TRACKING),
  );
  self.env.destroy_device(self.fd, dev.stdev_id);
  _test_ioctl_destroy(self.fd, hwpt_id);
});

/**
 * Mirrors _test_mock_dirty_bitmaps(): dirties the first page of every other PTE (of
 * `pte_page_size`), then checks a read reports exactly those PTEs whole, and that a second read
 * reports them again only with NO_CLEAR.
 */
function test_mock_dirty_bitmaps(
  self: DirtySelf,
  hwpt_id: number,
  length: number,
  iova: number,
  pte_page_size: number,
  bitmap: number,
  flags: number,
): void {
  const { env, fd, page_size } = self;
  const npte = pte_page_size / page_size;
  const pteset = 2 * npte;
  const nbits = self.bitmap_size;
  const nbytes = Math.ceil(nbits / 8);
  const bits = new Uint8Array(nbytes);
  let nr = 0;
  for (let i = 0; i < nbits; i += pteset, nr++) bits[i >> 3] |= 1 << (i & 7);
  clear_user(env.mm, bitmap, nbytes);
  copy_to_user(env.mm, bitmap, bits);
  assert.equal(env.set_dirty(fd, hwpt_id, iova, length, page_size, bitmap), nr);
  const read = () => {
    clear_user(env.mm, bitmap, nbytes);
    _test_cmd_get_dirty_bitmap(fd, hwpt_id, length, iova, page_size, bitmap, flags);
    const got = new Uint8Array(nbytes);
    copy_from_user(env.mm, got, bitmap);
    return got;
  };
  const want = (set: boolean) => {
    const w = new Uint8Array(nbytes);
    for (let i = 0; i < nbits; i++) if (set && i % pteset < npte) w[i >> 3] |= 1 << (i & 7);
    return w;
  };
  // The dirtied PTEs, each whole.
  assert.deepEqual(read(), want(true));
  // Read already: all clear, unless the first read did not clear.
  assert.deepEqual(read(), want((flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0));
}

/** Maps the buffer, makes a tracking HWPT of it, attaches the device and turns tracking on. */
function tracking_hwpt(self: DirtySelf, v: DirtyVariant): { hwpt_id: number; pte: number } {
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.dbuf, v.buffer_size, MOCK_APERTURE_START);
  // The mock's page-table type comes as driver data; the machine's driver takes none.
  let data;
  if (self.env.name === "mock") {
    const cfg = new Uint8Array(sizeof(iommu_hwpt_selftest));
    new DataView(cfg.buffer).setUint32(
      4,
      v.hugepages ? MOCK_IOMMUPT_HUGE : MOCK_IOMMUPT_DEFAULT,
      true,
    );
    copy_to_user(self.env.mm, self.bitmap, cfg);
    data = { type: IOMMU_HWPT_DATA_SELFTEST, uptr: self.bitmap, len: cfg.length };
  }
  const hwpt_id = _test_cmd_hwpt_alloc(
    self.fd,
    self.idev_id,
    self.ioas_id,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    data,
  );
  self.env.mock_domain_replace(self.fd, self.stdev_id, hwpt_id);
  _test_cmd_set_dirty_tracking(self.fd, hwpt_id, true);
  return { hwpt_id, pte: v.hugepages ? self.env.huge_page_size : self.page_size };
}

for (
  const [name, flags] of [["get_dirty_bitmap", 0], [
    "get_dirty_bitmap_no_clear",
    IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  ]] as const
) {
  TEST_F(iommufd_dirty_tracking, name, (self, v) => {
    const { hwpt_id, pte } = tracking_hwpt(self, v);
    const run = (bitmap: number) =>
      test_mock_dirty_bitmaps(
        self,
        hwpt_id,
        v.buffer_size,
        MOCK_APERTURE_START,
        pte,
        bitmap,
        flags,
      );
    run(self.bitmap);
    // A PAGE_SIZE-unaligned bitmap.
    run(self.bitmap + 2048);
    // A u64-unaligned bitmap.
    run(self.bitmap + 0xff1);
    self.env.mock_domain_replace(self.fd, self.stdev_id, self.ioas_id);
    _test_ioctl_destroy(self.fd, hwpt_id);
  });
}

TEST_HARNESS_MAIN(iommufd_dirty_tracking);
