/**
 * tools/testing/selftests/iommu/iommufd.c: the fixtures `iommufd`, `iommufd_ioas` and
 * `iommufd_mock_domain`, their cases by Linux's names, on the mock IOMMU and, in the `riscv_*`
 * variants, on a booted machine with the RISC-V IOMMU driver and DMA engines bound to iommufd.
 * The dirty-tracking fixture is in iommufd_dirty_tracking_test.ts.
 *
 * Where Linux writes MOCK_APERTURE_START or MOCK_PAGE_SIZE for "a domain's first IOVA" or "its
 * smallest page", the cases use the environment's (`env.aperture_start`, `env.io_page_size`),
 * and check_mock_iova() asks the mock domain or, on the machine, has the device write the IOVAs.
 */
import assert from "node:assert/strict";
import {
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
  vm_munmap,
} from "@iommu-lab/kernel";
import {
  _IO,
  IOMMU_DESTROY,
  iommu_destroy,
  IOMMU_GET_HW_INFO,
  iommu_hw_info,
  IOMMU_HW_INFO_TYPE_NONE,
  IOMMU_HWPT_ALLOC,
  iommu_hwpt_alloc,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  iommu_hwpt_get_dirty_bitmap,
  IOMMU_HWPT_SET_DIRTY_TRACKING,
  iommu_hwpt_set_dirty_tracking,
  IOMMU_IOAS_ALLOC,
  iommu_ioas_alloc,
  IOMMU_IOAS_ALLOW_IOVAS,
  iommu_ioas_allow_iovas,
  IOMMU_IOAS_COPY,
  iommu_ioas_copy,
  IOMMU_IOAS_IOVA_RANGES,
  iommu_ioas_iova_ranges,
  IOMMU_IOAS_MAP,
  iommu_ioas_map,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_unmap,
  IOMMU_OPTION,
  iommu_option,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IOMMU_OPTION_RLIMIT_MODE,
  IOMMUFD_CMD_BASE,
  IOMMUFD_TYPE,
  offsetofend,
  sizeof,
  U64_MAX,
  type UapiHeader,
  type UapiStruct,
} from "@iommu-lab/iommufd";
import { IOMMU_HWPT_ALLOC_NEST_PARENT } from "@iommu-lab/iommu";
import {
  IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_TEST_CMD,
  iommu_test_cmd,
  iommu_test_hw_info,
  IOMMU_TEST_OP_ADD_RESERVED,
  IOMMU_TEST_OP_MD_CHECK_REFS,
  MOCK_APERTURE_START,
  MOCK_PAGE_SIZE,
} from "@iommu-lab/iommufd/testing";
import { FIXTURE, FIXTURE_VARIANT_ADD, TEST_F, TEST_HARNESS_MAIN } from "./kselftest_harness.ts";
import {
  _test_cmd_get_hw_info,
  _test_cmd_hwpt_alloc,
  _test_ioctl_destroy,
  _test_ioctl_ioas_alloc,
  _test_ioctl_ioas_map,
  _test_ioctl_ioas_unmap,
  BUFFER_SIZE,
  EXPECT_ERRNO,
  MAP_RW,
  mock_env,
  riscv_env,
  type SelftestEnv,
  type SelftestSelf,
  setup_iommufd,
  teardown_iommufd,
  test_ioctl_ioas_map_fixed,
} from "./iommufd_utils.ts";

/** The environments the variants run in. */
const ENVS: Record<string, () => SelftestEnv> = {
  mock: () => mock_env(),
  riscv: () => riscv_env(),
};

interface EnvVariant {
  env: string;
}

// FIXTURE(iommufd): an open /dev/iommu, nothing else.

const iommufd = FIXTURE<SelftestSelf, EnvVariant>(
  "iommufd",
  (self, v) => setup_iommufd(self, ENVS[v.env]()),
  (self) => teardown_iommufd(self),
);
FIXTURE_VARIANT_ADD(iommufd, "mock", { env: "mock" });
FIXTURE_VARIANT_ADD(iommufd, "riscv", { env: "riscv" });

TEST_F(iommufd, "simple_close", () => {});

TEST_F(iommufd, "cmd_fail", (self) => {
  // Object ID 0 is invalid.
  EXPECT_ERRNO("ENOENT", () => _test_ioctl_destroy(self.fd, 0));
  // A bad pointer.
  EXPECT_ERRNO("EFAULT", () => self.fd.ioctl(IOMMU_DESTROY, null));
  // An unknown ioctl.
  EXPECT_ERRNO(
    "ENOTTY",
    () =>
      self.fd.ioctl(
        _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE - 1),
        { size: sizeof(iommu_destroy), id: 0 } as iommu_destroy,
      ),
  );
});

/** The ioctls and the last field of the first version of their structure (TEST_LENGTH). */
const LENGTHS: [UapiStruct, number, string][] = [
  [iommu_destroy, IOMMU_DESTROY, "id"],
  [iommu_hw_info, IOMMU_GET_HW_INFO, "__reserved"],
  [iommu_hwpt_alloc, IOMMU_HWPT_ALLOC, "__reserved"],
  [iommu_ioas_alloc, IOMMU_IOAS_ALLOC, "out_ioas_id"],
  [iommu_ioas_iova_ranges, IOMMU_IOAS_IOVA_RANGES, "out_iova_alignment"],
  [iommu_ioas_allow_iovas, IOMMU_IOAS_ALLOW_IOVAS, "allowed_iovas"],
  [iommu_ioas_map, IOMMU_IOAS_MAP, "iova"],
  [iommu_ioas_copy, IOMMU_IOAS_COPY, "src_iova"],
  [iommu_ioas_unmap, IOMMU_IOAS_UNMAP, "length"],
  [iommu_option, IOMMU_OPTION, "val64"],
  [iommu_hwpt_set_dirty_tracking, IOMMU_HWPT_SET_DIRTY_TRACKING, "__reserved"],
  [iommu_hwpt_get_dirty_bitmap, IOMMU_HWPT_GET_DIRTY_BITMAP, "data"],
];

/** The errno of `fn`, or 0 when it succeeds. */
function errno_of(fn: () => void): string | 0 {
  try {
    fn();
    return 0;
  } catch (e) {
    return (e as { code: string }).code;
  }
}

TEST_F(iommufd, "cmd_length", (self) => {
  for (const [s, ioctl, last] of LENGTHS) {
    const min_size = offsetofend(s, last);
    const cmd: UapiHeader = { size: min_size - 1, trailing: new Uint8Array([0xff]) };
    EXPECT_ERRNO("EINVAL", () => self.fd.ioctl(ioctl, cmd));
    cmd.size = sizeof(s) + 1;
    EXPECT_ERRNO("E2BIG", () => self.fd.ioctl(ioctl, cmd));
    cmd.size = sizeof(s);
    const rc = errno_of(() => self.fd.ioctl(ioctl, { size: sizeof(s) }));
    // The same call with a zero byte past the structure behaves the same.
    const rc2 = errno_of(() =>
      self.fd.ioctl(ioctl, { size: sizeof(s) + 1, trailing: new Uint8Array([0]) })
    );
    assert.equal(rc2, rc, s.name);
  }
});

TEST_F(iommufd, "cmd_ex_fail", (self) => {
  const future = new Uint8Array(8);
  const cmd: iommu_destroy = { size: sizeof(iommu_destroy) + 8, id: 0, trailing: future };
  // The object ID is invalid and the command longer.
  EXPECT_ERRNO("ENOENT", () => self.fd.ioctl(IOMMU_DESTROY, cmd));
  // The future area is non-zero.
  future[0] = 1;
  EXPECT_ERRNO("E2BIG", () => self.fd.ioctl(IOMMU_DESTROY, cmd));
  // The original command "works".
  cmd.size = sizeof(iommu_destroy);
  EXPECT_ERRNO("ENOENT", () => self.fd.ioctl(IOMMU_DESTROY, cmd));
  // A short command fails.
  cmd.size = sizeof(iommu_destroy) - 1;
  EXPECT_ERRNO("EINVAL", () => self.fd.ioctl(IOMMU_DESTROY, cmd));
});

TEST_F(iommufd, "global_options", (self) => {
  const cmd: iommu_option = {
    size: sizeof(iommu_option),
    option_id: IOMMU_OPTION_RLIMIT_MODE,
    op: IOMMU_OPTION_OP_GET,
    __reserved: 0,
    object_id: 0,
    val64: 1n,
  };
  self.fd.ioctl(IOMMU_OPTION, cmd);
  assert.equal(cmd.val64, 0n);
  // This requires root (the test is).
  cmd.op = IOMMU_OPTION_OP_SET;
  cmd.val64 = 1n;
  self.fd.ioctl(IOMMU_OPTION, cmd);
  cmd.val64 = 2n;
  EXPECT_ERRNO("EINVAL", () => self.fd.ioctl(IOMMU_OPTION, cmd));
  cmd.op = IOMMU_OPTION_OP_GET;
  self.fd.ioctl(IOMMU_OPTION, cmd);
  assert.equal(cmd.val64, 1n);
  cmd.op = IOMMU_OPTION_OP_SET;
  cmd.val64 = 0n;
  self.fd.ioctl(IOMMU_OPTION, cmd);
  cmd.op = IOMMU_OPTION_OP_GET;
  cmd.option_id = IOMMU_OPTION_HUGE_PAGES;
  EXPECT_ERRNO("ENOENT", () => self.fd.ioctl(IOMMU_OPTION, cmd));
  cmd.op = IOMMU_OPTION_OP_SET;
  EXPECT_ERRNO("ENOENT", () => self.fd.ioctl(IOMMU_OPTION, cmd));
});

// FIXTURE(iommufd_ioas): an IOAS with 0, 1 or 2 devices attached (automatic domains).

interface IoasSelf extends SelftestSelf {
  ioas_id: number;
  stdev_id: number;
  hwpt_id: number;
  device_id: number;
  base_iova: number;
}

interface IoasVariant extends EnvVariant {
  mock_domains: number;
}

const iommufd_ioas = FIXTURE<IoasSelf, IoasVariant>(
  "iommufd_ioas",
  (self, v) => {
    setup_iommufd(self, ENVS[v.env]());
    self.ioas_id = _test_ioctl_ioas_alloc(self.fd);
    self.stdev_id =
      self.hwpt_id =
      self.device_id =
      self.base_iova =
        0;
    for (let i = 0; i < v.mock_domains; i++) {
      const ids = self.env.mock_domain(self.fd, self.ioas_id);
      self.stdev_id = ids.stdev_id;
      self.hwpt_id = ids.hwpt_id;
      self.device_id = ids.idev_id;
      // A domain's aperture may start at 0: map from 16 MiB, as the mock's aperture does.
      self.base_iova = Math.max(self.env.aperture_start, MOCK_APERTURE_START);
    }
  },
  (self) => teardown_iommufd(self),
);
FIXTURE_VARIANT_ADD(iommufd_ioas, "no_domain", { env: "mock", mock_domains: 0 });
FIXTURE_VARIANT_ADD(iommufd_ioas, "mock_domain", { env: "mock", mock_domains: 1 });
FIXTURE_VARIANT_ADD(iommufd_ioas, "two_mock_domain", { env: "mock", mock_domains: 2 });
FIXTURE_VARIANT_ADD(iommufd_ioas, "riscv_no_domain", { env: "riscv", mock_domains: 0 });
FIXTURE_VARIANT_ADD(iommufd_ioas, "riscv_domain", { env: "riscv", mock_domains: 1 });
FIXTURE_VARIANT_ADD(iommufd_ioas, "riscv_two_domain", { env: "riscv", mock_domains: 2 });

/** IOMMU_TEST_OP_ADD_RESERVED on the fixture's IOAS. */
function add_reserved(self: IoasSelf, start: number, length: number): void {
  self.fd.ioctl(IOMMU_TEST_CMD, {
    size: sizeof(iommu_test_cmd),
    op: IOMMU_TEST_OP_ADD_RESERVED,
    id: self.ioas_id,
    add_reserved: { start: BigInt(start), length: BigInt(length) },
  } as iommu_test_cmd);
}

/** test_ioctl_ioas_map(): maps `length` of `buffer` where the kernel picks. */
function ioas_map(self: IoasSelf, buffer: number, length: number): number {
  return _test_ioctl_ioas_map(self.fd, self.ioas_id, buffer, length, 0, MAP_RW);
}

TEST_F(iommufd_ioas, "ioas_auto_destroy", () => {});

TEST_F(iommufd_ioas, "ioas_destroy", (self) => {
  if (self.stdev_id) {
    // An IOAS cannot be freed while a device has a HWPT using it.
    EXPECT_ERRNO("EBUSY", () => _test_ioctl_destroy(self.fd, self.ioas_id));
  } else {
    // An IOAS can be allocated and freed by hand.
    _test_ioctl_destroy(self.fd, self.ioas_id);
  }
});

TEST_F(iommufd_ioas, "hwpt_attach", (self) => {
  // A device attached directly to an HWPT.
  if (self.stdev_id) {
    const ids = self.env.mock_domain(self.fd, self.hwpt_id);
    assert.equal(ids.hwpt_id, self.hwpt_id);
  } else {
    EXPECT_ERRNO("ENOENT", () => self.env.mock_domain(self.fd, self.hwpt_id));
  }
});

TEST_F(iommufd_ioas, "ioas_area_destroy", (self) => {
  // Adding an area does not change the ability to destroy.
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.buffer, PAGE_SIZE, self.base_iova);
  if (self.stdev_id) EXPECT_ERRNO("EBUSY", () => _test_ioctl_destroy(self.fd, self.ioas_id));
  else _test_ioctl_destroy(self.fd, self.ioas_id);
});

TEST_F(iommufd_ioas, "ioas_area_auto_destroy", (self) => {
  // An IOAS with many areas is freed at close.
  for (let i = 0; i < 10; i++) {
    test_ioctl_ioas_map_fixed(
      self.fd,
      self.ioas_id,
      self.buffer,
      PAGE_SIZE,
      self.base_iova + i * PAGE_SIZE,
    );
  }
});

TEST_F(iommufd_ioas, "get_hw_info", (self) => {
  const env = self.env;
  const size = sizeof(iommu_test_hw_info);
  const larger = vm_mmap(env.mm, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  if (!self.device_id) {
    EXPECT_ERRNO("ENOENT", () => _test_cmd_get_hw_info(self.fd, self.device_id, larger, size));
    return;
  }
  // A zero-size buffer.
  const none = _test_cmd_get_hw_info(self.fd, self.device_id, 0, 0);
  // A buffer larger than the data: the trailing bytes are zeroed.
  copy_to_user(env.mm, larger, new Uint8Array(size + 8).fill(0xaa));
  const info = _test_cmd_get_hw_info(self.fd, self.device_id, larger, size + 8);
  const got = new Uint8Array(size + 8);
  copy_from_user(env.mm, got, larger);
  assert.deepEqual([...got.subarray(info.data_len)], new Array(size + 8 - info.data_len).fill(0));
  if (env.name === "mock") {
    assert.equal(none.out_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);
    assert.equal(info.data_len, size);
    const v = new DataView(got.buffer);
    assert.equal(v.getUint32(0, true), 0); // flags
    assert.equal(v.getUint32(4, true), IOMMU_HW_INFO_SELFTEST_REGVAL);
    // A buffer smaller than the data gets what fits.
    copy_to_user(env.mm, larger, new Uint8Array(size).fill(0xaa));
    _test_cmd_get_hw_info(self.fd, self.device_id, larger, 4);
    copy_from_user(env.mm, got.subarray(0, size), larger);
    assert.deepEqual([...got.subarray(0, size)], [0, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa]);
  } else {
    // The RISC-V driver reports no hardware information.
    assert.equal(none.out_data_type, IOMMU_HW_INFO_TYPE_NONE);
    assert.equal(info.data_len, 0);
  }
});

TEST_F(iommufd_ioas, "area", (self) => {
  // Unmap fails if nothing is mapped.
  for (let i = 0; i < 10; i++) {
    EXPECT_ERRNO(
      "ENOENT",
      () => _test_ioctl_ioas_unmap(self.fd, self.ioas_id, i * PAGE_SIZE, PAGE_SIZE),
    );
  }
  // Unmap works.
  for (let i = 0; i < 10; i++) {
    test_ioctl_ioas_map_fixed(
      self.fd,
      self.ioas_id,
      self.buffer,
      PAGE_SIZE,
      self.base_iova + i * PAGE_SIZE,
    );
  }
  for (let i = 0; i < 10; i++) {
    _test_ioctl_ioas_unmap(self.fd, self.ioas_id, self.base_iova + i * PAGE_SIZE, PAGE_SIZE);
  }
  // Split fails.
  test_ioctl_ioas_map_fixed(
    self.fd,
    self.ioas_id,
    self.buffer,
    PAGE_SIZE * 2,
    self.base_iova + 16 * PAGE_SIZE,
  );
  EXPECT_ERRNO(
    "ENOENT",
    () => _test_ioctl_ioas_unmap(self.fd, self.ioas_id, self.base_iova + 16 * PAGE_SIZE, PAGE_SIZE),
  );
  EXPECT_ERRNO(
    "ENOENT",
    () => _test_ioctl_ioas_unmap(self.fd, self.ioas_id, self.base_iova + 17 * PAGE_SIZE, PAGE_SIZE),
  );
  // Over map fails.
  for (const [len, at] of [[2, 16], [1, 16], [1, 17], [2, 15], [3, 15]]) {
    EXPECT_ERRNO(
      "EEXIST",
      () =>
        test_ioctl_ioas_map_fixed(
          self.fd,
          self.ioas_id,
          self.buffer,
          PAGE_SIZE * len,
          self.base_iova + at * PAGE_SIZE,
        ),
    );
  }
  // Unmap all works, and succeeds on an empty IOAS.
  _test_ioctl_ioas_unmap(self.fd, self.ioas_id, 0, U64_MAX);
  assert.equal(_test_ioctl_ioas_unmap(self.fd, self.ioas_id, 0, U64_MAX), 0);
});

TEST_F(iommufd_ioas, "unmap_fully_contained_areas", (self) => {
  // Gives no_domain room to rewind base_iova.
  const base = self.base_iova + 4 * PAGE_SIZE;
  for (let i = 0; i < 4; i++) {
    test_ioctl_ioas_map_fixed(
      self.fd,
      self.ioas_id,
      self.buffer,
      8 * PAGE_SIZE,
      base + i * 16 * PAGE_SIZE,
    );
  }
  // Unmapping an area not fully contained does not work.
  EXPECT_ERRNO(
    "ENOENT",
    () => _test_ioctl_ioas_unmap(self.fd, self.ioas_id, base - 4 * PAGE_SIZE, 8 * PAGE_SIZE),
  );
  EXPECT_ERRNO(
    "ENOENT",
    () =>
      _test_ioctl_ioas_unmap(
        self.fd,
        self.ioas_id,
        base + 3 * 16 * PAGE_SIZE + 4 * PAGE_SIZE,
        8 * PAGE_SIZE,
      ),
  );
  // Unmapping fully contained areas works.
  const n = _test_ioctl_ioas_unmap(
    self.fd,
    self.ioas_id,
    base - 4 * PAGE_SIZE,
    3 * 16 * PAGE_SIZE + 8 * PAGE_SIZE + 4 * PAGE_SIZE,
  );
  assert.equal(n, 32 * PAGE_SIZE);
});

TEST_F(iommufd_ioas, "area_auto_iova", (self) => {
  const iovas: number[] = [];
  // Simple 4k pages.
  for (let i = 0; i < 10; i++) iovas[i] = ioas_map(self, self.buffer, PAGE_SIZE);
  for (let i = 0; i < 10; i++) _test_ioctl_ioas_unmap(self.fd, self.ioas_id, iovas[i], PAGE_SIZE);
  // The kernel aligns IOVAs to the length's lowest set bit.
  for (let i = 0; i < 10; i++) {
    const length = PAGE_SIZE * (i + 1);
    // Without a domain nothing is pinned: any user address will do.
    iovas[i] = ioas_map(self, self.stdev_id ? self.buffer : 2 ** 31, length);
    assert.equal(iovas[i] % (length & -length), 0);
  }
  for (let i = 0; i < 10; i++) {
    _test_ioctl_ioas_unmap(self.fd, self.ioas_id, iovas[i], PAGE_SIZE * (i + 1));
  }
  // IOVAs avoid a reserved region.
  const rstart = PAGE_SIZE * 4;
  const rlen = PAGE_SIZE * 100;
  add_reserved(self, rstart, rlen);
  for (let i = 0; i < 10; i++) {
    const length = PAGE_SIZE * (i + 1);
    iovas[i] = ioas_map(self, self.buffer, length);
    assert.equal(iovas[i] % (length & -length), 0);
    assert.equal(iovas[i] > rstart && iovas[i] < rstart + rlen, false);
  }
  for (let i = 0; i < 10; i++) {
    _test_ioctl_ioas_unmap(self.fd, self.ioas_id, iovas[i], PAGE_SIZE * (i + 1));
  }
  // An allowed range that intersects a reserved one.
  const ranges = user_ranges(self, [[PAGE_SIZE, PAGE_SIZE * 600]]);
  EXPECT_ERRNO("EADDRINUSE", () => allow_iovas(self, ranges, 1));
  // Allocate from an allowed range.
  const [start, last] = self.stdev_id
    ? [self.base_iova + PAGE_SIZE, self.base_iova + PAGE_SIZE * 600 - 1]
    : [PAGE_SIZE * 200, PAGE_SIZE * 600 - 1];
  allow_iovas(self, user_ranges(self, [[start, last]]), 1);
  for (let i = 0; i < 10; i++) {
    const length = PAGE_SIZE * (i + 1);
    iovas[i] = ioas_map(self, self.buffer, length);
    assert.equal(iovas[i] % (length & -length), 0);
    assert.ok(iovas[i] >= start && iovas[i] + length <= last + 1);
  }
  for (let i = 0; i < 10; i++) {
    _test_ioctl_ioas_unmap(self.fd, self.ioas_id, iovas[i], PAGE_SIZE * (i + 1));
  }
});

TEST_F(iommufd_ioas, "reserved_overflow", (self) => {
  add_reserved_raw(self, 6n, 0xffffffffffff8001n);
  EXPECT_ERRNO("ENOSPC", () => ioas_map(self, self.buffer, 0x5000));
});

TEST_F(iommufd_ioas, "area_allowed", (self) => {
  // A reserved range that intersects an allowed one.
  const ranges = user_ranges(self, [[self.base_iova, self.base_iova + PAGE_SIZE * 600]]);
  allow_iovas(self, ranges, 1);
  EXPECT_ERRNO("EADDRINUSE", () => add_reserved(self, self.base_iova + PAGE_SIZE, PAGE_SIZE));
  allow_iovas(self, ranges, 0);
  // An allowed range that intersects a reserved one.
  add_reserved(self, self.base_iova + PAGE_SIZE, PAGE_SIZE);
  EXPECT_ERRNO("EADDRINUSE", () => allow_iovas(self, ranges, 1));
});

TEST_F(iommufd_ioas, "copy_area", (self) => {
  const copy: iommu_ioas_copy = {
    size: sizeof(iommu_ioas_copy),
    flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE,
    dst_ioas_id: self.ioas_id,
    src_ioas_id: self.ioas_id,
    length: BigInt(PAGE_SIZE),
    dst_iova: 0n,
    src_iova: 0n,
  };
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.buffer, PAGE_SIZE, self.base_iova);
  // Copy inside a single IOAS.
  copy.src_iova = BigInt(self.base_iova);
  copy.dst_iova = BigInt(self.base_iova + PAGE_SIZE);
  self.fd.ioctl(IOMMU_IOAS_COPY, copy);
  // Copy between IOASes.
  copy.src_iova = BigInt(self.base_iova);
  copy.dst_iova = 0n;
  copy.dst_ioas_id = _test_ioctl_ioas_alloc(self.fd);
  self.fd.ioctl(IOMMU_IOAS_COPY, copy);
});

TEST_F(iommufd_ioas, "iova_ranges", (self) => {
  const env = self.env;
  const cmd: iommu_ioas_iova_ranges = {
    size: sizeof(iommu_ioas_iova_ranges),
    ioas_id: self.ioas_id,
    num_iovas: BUFFER_SIZE / 16,
    __reserved: 0,
    allowed_iovas: BigInt(self.buffer),
    out_iova_alignment: 0n,
  };
  const read = (n: number) => {
    const b = new Uint8Array(n * 16);
    copy_from_user(env.mm, b, self.buffer);
    const v = new DataView(b.buffer);
    return Array.from(
      { length: n },
      (_, i) => [v.getBigUint64(i * 16, true), v.getBigUint64(i * 16 + 8, true)],
    );
  };
  const clear = () => copy_to_user(env.mm, self.buffer, new Uint8Array(BUFFER_SIZE));
  const whole = [BigInt(env.aperture_start), BigInt(env.aperture_last)];
  // The ranges can be read.
  self.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, cmd);
  assert.equal(cmd.num_iovas, 1);
  if (!self.stdev_id) {
    assert.deepEqual(read(1), [[0n, U64_MAX]]);
    assert.equal(cmd.out_iova_alignment, 1n);
  } else {
    assert.deepEqual(read(1), [whole]);
    assert.equal(cmd.out_iova_alignment, BigInt(env.io_page_size));
  }
  // A buffer too small.
  clear();
  cmd.num_iovas = 0;
  EXPECT_ERRNO("EMSGSIZE", () => self.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, cmd));
  assert.equal(cmd.num_iovas, 1);
  assert.deepEqual(read(1), [[0n, 0n]]);
  // Two ranges, when the reserved one is inside the aperture.
  add_reserved(self, PAGE_SIZE, PAGE_SIZE);
  const P = BigInt(PAGE_SIZE);
  const two = !self.stdev_id
    ? [[0n, P - 1n], [2n * P, U64_MAX]]
    : env.aperture_start === 0
    ? [[0n, P - 1n], [2n * P, whole[1]]]
    : [whole];
  cmd.num_iovas = BUFFER_SIZE / 16;
  self.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, cmd);
  assert.equal(cmd.num_iovas, two.length);
  assert.deepEqual(read(two.length), two);
  // A buffer too small again.
  clear();
  cmd.num_iovas = 1;
  if (two.length === 2) {
    EXPECT_ERRNO("EMSGSIZE", () => self.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, cmd));
    assert.equal(cmd.num_iovas, 2);
  } else {
    self.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, cmd);
    assert.equal(cmd.num_iovas, 1);
  }
  assert.deepEqual(read(2), [two[0], [0n, 0n]]);
});

TEST_F(iommufd_ioas, "ioas_option_huge_pages", (self) => {
  const cmd: iommu_option = {
    size: sizeof(iommu_option),
    option_id: IOMMU_OPTION_HUGE_PAGES,
    op: IOMMU_OPTION_OP_GET,
    __reserved: 0,
    object_id: self.ioas_id,
    val64: 3n,
  };
  self.fd.ioctl(IOMMU_OPTION, cmd);
  assert.equal(cmd.val64, 1n);
  cmd.op = IOMMU_OPTION_OP_SET;
  cmd.val64 = 0n;
  self.fd.ioctl(IOMMU_OPTION, cmd);
  cmd.op = IOMMU_OPTION_OP_GET;
  cmd.val64 = 3n;
  self.fd.ioctl(IOMMU_OPTION, cmd);
  assert.equal(cmd.val64, 0n);
  cmd.op = IOMMU_OPTION_OP_SET;
  cmd.val64 = 2n;
  EXPECT_ERRNO("EINVAL", () => self.fd.ioctl(IOMMU_OPTION, cmd));
  cmd.val64 = 1n;
  self.fd.ioctl(IOMMU_OPTION, cmd);
});

TEST_F(iommufd_ioas, "ioas_iova_alloc", (self, v) => {
  for (let length = 1; length !== PAGE_SIZE * 2; length++) {
    if (v.mock_domains && length % self.env.io_page_size) {
      EXPECT_ERRNO("EINVAL", () => ioas_map(self, self.buffer, length));
    } else {
      const iova = ioas_map(self, self.buffer, length);
      _test_ioctl_ioas_unmap(self.fd, self.ioas_id, iova, length);
    }
  }
});

TEST_F(iommufd_ioas, "ioas_align_change", (self, v) => {
  const cmd: iommu_option = {
    size: sizeof(iommu_option),
    option_id: IOMMU_OPTION_HUGE_PAGES,
    op: IOMMU_OPTION_OP_SET,
    __reserved: 0,
    object_id: self.ioas_id,
    // 0 means everything must be aligned to PAGE_SIZE.
    val64: 0n,
  };
  // The alignment cannot be upgraded with a domain and a map present.
  if (v.mock_domains) return;
  // It can be upgraded to PAGE_SIZE when things are aligned right.
  test_ioctl_ioas_map_fixed(self.fd, self.ioas_id, self.buffer, PAGE_SIZE, MOCK_APERTURE_START);
  self.fd.ioctl(IOMMU_OPTION, cmd);
  // Misalignment is rejected at map time.
  EXPECT_ERRNO(
    "EINVAL",
    () =>
      test_ioctl_ioas_map_fixed(
        self.fd,
        self.ioas_id,
        self.buffer + MOCK_PAGE_SIZE,
        PAGE_SIZE,
        MOCK_APERTURE_START + PAGE_SIZE,
      ),
  );
  self.fd.ioctl(IOMMU_OPTION, cmd);
  // Reduce the alignment.
  cmd.val64 = 1n;
  self.fd.ioctl(IOMMU_OPTION, cmd);
  // Misalignment is rejected by an alignment upgrade.
  test_ioctl_ioas_map_fixed(
    self.fd,
    self.ioas_id,
    self.buffer + MOCK_PAGE_SIZE,
    PAGE_SIZE,
    MOCK_APERTURE_START + PAGE_SIZE,
  );
  cmd.val64 = 0n;
  EXPECT_ERRNO("EADDRINUSE", () => self.fd.ioctl(IOMMU_OPTION, cmd));
  _test_ioctl_ioas_unmap(self.fd, self.ioas_id, MOCK_APERTURE_START + PAGE_SIZE, PAGE_SIZE);
  _test_ioctl_ioas_unmap(self.fd, self.ioas_id, MOCK_APERTURE_START, PAGE_SIZE);
});

TEST_F(iommufd_ioas, "copy_sweep", (self, v) => {
  const dst_ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const copy: iommu_ioas_copy = {
    size: sizeof(iommu_ioas_copy),
    flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE,
    dst_ioas_id,
    src_ioas_id: self.ioas_id,
    length: BigInt(MOCK_PAGE_SIZE),
    dst_iova: BigInt(MOCK_APERTURE_START),
    src_iova: 0n,
  };
  const last_iova = MOCK_APERTURE_START + BUFFER_SIZE - (v.mock_domains ? 1 : 2);
  test_ioctl_ioas_map_fixed(
    self.fd,
    self.ioas_id,
    self.buffer,
    last_iova - MOCK_APERTURE_START + 1,
    MOCK_APERTURE_START,
  );
  for (let iova = MOCK_APERTURE_START - PAGE_SIZE; iova <= last_iova; iova += 511) {
    copy.src_iova = BigInt(iova);
    if (iova < MOCK_APERTURE_START || iova + MOCK_PAGE_SIZE - 1 > last_iova) {
      EXPECT_ERRNO("ENOENT", () => self.fd.ioctl(IOMMU_IOAS_COPY, copy));
    } else {
      self.fd.ioctl(IOMMU_IOAS_COPY, copy);
      _test_ioctl_ioas_unmap(self.fd, dst_ioas_id, Number(copy.dst_iova), MOCK_PAGE_SIZE);
    }
  }
  _test_ioctl_destroy(self.fd, dst_ioas_id);
});

/** struct iommu_iova_range entries written to a fresh page of user memory; returns its address. */
function user_ranges(self: IoasSelf, ranges: [number, number][]): number {
  const uptr = vm_mmap(
    self.env.mm,
    0,
    PAGE_SIZE,
    PROT_READ | PROT_WRITE,
    MAP_SHARED | MAP_ANONYMOUS,
  );
  const b = new Uint8Array(ranges.length * 16);
  const v = new DataView(b.buffer);
  ranges.forEach(([s, l], i) => {
    v.setBigUint64(i * 16, BigInt(s), true);
    v.setBigUint64(i * 16 + 8, BigInt(l), true);
  });
  copy_to_user(self.env.mm, uptr, b);
  return uptr;
}

/** IOMMU_IOAS_ALLOW_IOVAS with `num` ranges at `ranges`. */
function allow_iovas(self: IoasSelf, ranges: number, num: number): void {
  self.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, {
    size: sizeof(iommu_ioas_allow_iovas),
    ioas_id: self.ioas_id,
    num_iovas: num,
    __reserved: 0,
    allowed_iovas: BigInt(ranges),
  } as iommu_ioas_allow_iovas);
}

/** ADD_RESERVED with 64-bit start and length. */
function add_reserved_raw(self: IoasSelf, start: bigint, length: bigint): void {
  self.fd.ioctl(IOMMU_TEST_CMD, {
    size: sizeof(iommu_test_cmd),
    op: IOMMU_TEST_OP_ADD_RESERVED,
    id: self.ioas_id,
    add_reserved: { start, length },
  } as iommu_test_cmd);
}

// FIXTURE(iommufd_mock_domain): devices attached to an IOAS, maps checked as the device sees them.

interface MockDomainSelf extends SelftestSelf {
  ioas_id: number;
  hwpt_id: number;
  hwpt_ids: number[];
  stdev_ids: number[];
  idev_ids: number[];
  mmap_flags: number;
  mmap_buf_size: number;
}

interface MockDomainVariant extends EnvVariant {
  mock_domains: number;
  hugepages: boolean;
}

const iommufd_mock_domain = FIXTURE<MockDomainSelf, MockDomainVariant>(
  "iommufd_mock_domain",
  (self, v) => {
    setup_iommufd(self, ENVS[v.env]());
    self.ioas_id = _test_ioctl_ioas_alloc(self.fd);
    self.hwpt_ids = [0, 0];
    self.stdev_ids = [0, 0];
    self.idev_ids = [0, 0];
    for (let i = 0; i < v.mock_domains; i++) {
      const ids = self.env.mock_domain(self.fd, self.ioas_id);
      self.stdev_ids[i] = ids.stdev_id;
      self.hwpt_ids[i] = ids.hwpt_id;
      self.idev_ids[i] = ids.idev_id;
    }
    self.hwpt_id = self.hwpt_ids[0];
    self.mmap_flags = MAP_SHARED | MAP_ANONYMOUS;
    self.mmap_buf_size = PAGE_SIZE * 8;
    if (v.hugepages) {
      self.mmap_flags |= MAP_HUGETLB | MAP_POPULATE;
      self.mmap_buf_size = HPAGE_PMD_SIZE * 2;
    }
  },
  (self) => teardown_iommufd(self),
);
for (const env of ["mock", "riscv"]) {
  const pre = env === "mock" ? "" : "riscv_";
  FIXTURE_VARIANT_ADD(iommufd_mock_domain, `${pre}one_domain`, {
    env,
    mock_domains: 1,
    hugepages: false,
  });
  FIXTURE_VARIANT_ADD(iommufd_mock_domain, `${pre}two_domains`, {
    env,
    mock_domains: 2,
    hugepages: false,
  });
  FIXTURE_VARIANT_ADD(iommufd_mock_domain, `${pre}one_domain_hugepage`, {
    env,
    mock_domains: 1,
    hugepages: true,
  });
  FIXTURE_VARIANT_ADD(iommufd_mock_domain, `${pre}two_domains_hugepage`, {
    env,
    mock_domains: 2,
    hugepages: true,
  });
}

/** check_mock_iova(): every HWPT of the fixture maps `[iova, iova + length)` to `ptr`. */
function check_mock_iova(self: MockDomainSelf, ptr: number, iova: number, length: number): void {
  self.env.check_map(self.fd, self.hwpt_id, ptr, iova, length);
  if (self.hwpt_ids[1]) self.env.check_map(self.fd, self.hwpt_ids[1], ptr, iova, length);
}

/** check_refs(): each page of `[ptr, ptr + length)` holds `refs` pins (MD_CHECK_REFS). */
function check_refs(self: MockDomainSelf, ptr: number, length: number, refs: number): void {
  self.fd.ioctl(IOMMU_TEST_CMD, {
    size: sizeof(iommu_test_cmd),
    op: IOMMU_TEST_OP_MD_CHECK_REFS,
    id: 0,
    check_refs: { length: BigInt(length), uptr: BigInt(ptr), refs },
  } as iommu_test_cmd);
}

function md_map(self: MockDomainSelf, buf: number, length: number): number {
  return _test_ioctl_ioas_map(self.fd, self.ioas_id, buf, length, 0, MAP_RW);
}

TEST_F(iommufd_mock_domain, "basic", (self) => {
  const buf_size = self.mmap_buf_size;
  // A simple one-page map.
  const iova = md_map(self, self.buffer, PAGE_SIZE);
  check_mock_iova(self, self.buffer, iova, PAGE_SIZE);
  const buf = vm_mmap(self.env.mm, 0, buf_size, PROT_READ | PROT_WRITE, self.mmap_flags);
  // EFAULT half way through the mapping.
  vm_munmap(self.env.mm, buf + buf_size / 2, buf_size / 2);
  EXPECT_ERRNO("EFAULT", () => md_map(self, buf, buf_size));
  // EFAULT on the first page.
  vm_munmap(self.env.mm, buf, buf_size / 2);
  EXPECT_ERRNO("EFAULT", () => md_map(self, buf, buf_size));
});

/**
 * The loop of all_aligns and all_aligns_copy: every combination of page size and alignment in a
 * big region (fewer with huge pages) is mapped, handed to `check` and unmapped; the buffer's pin
 * counts go from 0 to 1 over the mapped pages and back.
 */
function for_all_aligns(
  self: MockDomainSelf,
  v: MockDomainVariant,
  check: (uptr: number, iova: number, length: number) => void,
): void {
  const step = self.env.io_page_size;
  const test_step = v.hugepages ? self.mmap_buf_size / 16 : step;
  const buf_size = self.mmap_buf_size;
  const buf = vm_mmap(self.env.mm, 0, buf_size, PROT_READ | PROT_WRITE, self.mmap_flags);
  check_refs(self, buf, buf_size, 0);
  for (let start = 0; start < buf_size; start += test_step) {
    for (let end = v.hugepages ? buf_size : start + step; end < buf_size; end += step) {
      const length = end - start;
      const iova = md_map(self, buf + start, length);
      check(buf + start, iova, length);
      const first = Math.floor(start / PAGE_SIZE) * PAGE_SIZE;
      check_refs(self, buf + first, Math.floor(end / PAGE_SIZE) * PAGE_SIZE - first, 1);
      _test_ioctl_ioas_unmap(self.fd, self.ioas_id, iova, length);
    }
  }
  check_refs(self, buf, buf_size, 0);
  vm_munmap(self.env.mm, buf, buf_size);
}

TEST_F(iommufd_mock_domain, "all_aligns", (self, v) => {
  for_all_aligns(self, v, (uptr, iova, length) => check_mock_iova(self, uptr, iova, length));
});

TEST_F(iommufd_mock_domain, "all_aligns_copy", (self, v) => {
  for_all_aligns(self, v, (uptr, iova, length) => {
    // Add and destroy a domain while the area exists.
    const old_id = self.hwpt_ids[1];
    const ids = self.env.mock_domain(self.fd, self.ioas_id);
    self.hwpt_ids[1] = ids.hwpt_id;
    check_mock_iova(self, uptr, iova, length);
    self.env.destroy_device(self.fd, ids.stdev_id);
    self.hwpt_ids[1] = old_id;
  });
});

TEST_F(iommufd_mock_domain, "replace", (self, v) => {
  const env = self.env;
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  env.mock_domain_replace(self.fd, self.stdev_ids[0], ioas_id);
  // Replacing the IOAS frees the prior HWPT: it is gone.
  if (v.mock_domains === 1) {
    EXPECT_ERRNO(
      "ENOENT",
      () => env.mock_domain_replace(self.fd, self.stdev_ids[0], self.hwpt_ids[0]),
    );
  }
  env.mock_domain_replace(self.fd, self.stdev_ids[0], ioas_id);
  if (v.mock_domains >= 2) {
    env.mock_domain_replace(self.fd, self.stdev_ids[0], self.hwpt_ids[1]);
    env.mock_domain_replace(self.fd, self.stdev_ids[0], self.hwpt_ids[1]);
    env.mock_domain_replace(self.fd, self.stdev_ids[0], self.hwpt_ids[0]);
  }
  env.mock_domain_replace(self.fd, self.stdev_ids[0], self.ioas_id);
  _test_ioctl_destroy(self.fd, ioas_id);
});

TEST_F(
  iommufd_mock_domain,
  "alloc_hwpt",
  (self, v) => {
    for (let i = 0; i < v.mock_domains; i++) {
      EXPECT_ERRNO(
        "EOPNOTSUPP",
        () =>
          _test_cmd_hwpt_alloc(
            self.fd,
            self.idev_ids[i],
            self.ioas_id,
            ~IOMMU_HWPT_ALLOC_NEST_PARENT >>> 0,
          ),
      );
      const hwpt0 = _test_cmd_hwpt_alloc(self.fd, self.idev_ids[i], self.ioas_id, 0);
      const hwpt1 = _test_cmd_hwpt_alloc(
        self.fd,
        self.idev_ids[i],
        self.ioas_id,
        IOMMU_HWPT_ALLOC_NEST_PARENT,
      );
      // A HWPT rotation: an attached HWPT cannot be destroyed.
      self.env.mock_domain_replace(self.fd, self.stdev_ids[i], hwpt0);
      EXPECT_ERRNO("EBUSY", () => _test_ioctl_destroy(self.fd, hwpt0));
      self.env.mock_domain_replace(self.fd, self.stdev_ids[i], hwpt1);
      EXPECT_ERRNO("EBUSY", () => _test_ioctl_destroy(self.fd, hwpt1));
      self.env.mock_domain_replace(self.fd, self.stdev_ids[i], self.ioas_id);
      _test_ioctl_destroy(self.fd, hwpt1);
      const ids = self.env.mock_domain(self.fd, hwpt0);
      self.env.destroy_device(self.fd, ids.stdev_id);
      _test_ioctl_destroy(self.fd, hwpt0);
    }
  },
);

TEST_HARNESS_MAIN(iommufd, iommufd_ioas, iommufd_mock_domain);
