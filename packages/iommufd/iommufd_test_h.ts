/**
 * The selftest's own user API: the IOMMU_TEST_CMD ioctl, its operations and structure, and the
 * mock IOMMU's constants. Mirrors drivers/iommu/iommufd/iommufd_test.h, for the operations the
 * mock here implements (no in-kernel accesses, nesting, vIOMMU or PASID).
 *
 * @module
 */
import {
  _IO,
  IOMMUFD_CMD_BASE,
  IOMMUFD_TYPE,
  uapi_struct,
  type UapiHeader,
  type UapiStruct,
} from "./uapi.ts";

/** IOMMU_TEST_OP_ADD_RESERVED: reserve an IOVA range of an IOAS. */
export const IOMMU_TEST_OP_ADD_RESERVED = 1;
/** IOMMU_TEST_OP_MOCK_DOMAIN: create a mock device, bind it and attach it to `id`. */
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
/** IOMMU_TEST_OP_MD_CHECK_MAP: check a mock domain maps IOVAs to the user pages given. */
export const IOMMU_TEST_OP_MD_CHECK_MAP = 3;
/** IOMMU_TEST_OP_MD_CHECK_REFS: check the pin count of user pages. */
export const IOMMU_TEST_OP_MD_CHECK_REFS = 4;
/** IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: replace what a mock device is attached to. */
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
/** IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: MOCK_DOMAIN with device flags. */
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
/** IOMMU_TEST_OP_DIRTY: mark IOVAs of a mock domain dirty, as a device write would. */
export const IOMMU_TEST_OP_DIRTY = 13;

/** Mock page-table type: MOCK_PAGE_SIZE pages, the mock aperture. */
export const MOCK_IOMMUPT_DEFAULT = 0;
/** Mock page-table type: MOCK_HUGE_PAGE_SIZE (and PAGE_SIZE) pages. */
export const MOCK_IOMMUPT_HUGE = 1;

/** First IOVA of a mock domain. */
export const MOCK_APERTURE_START: number = 2 ** 24;
/** Last IOVA of a mock domain. */
export const MOCK_APERTURE_LAST: number = 2 ** 31 - 1;
/** The mock IOMMU's page: half a CPU page, so iommufd's sub-page alignment is exercised. */
export const MOCK_PAGE_SIZE = 2048;
/** The mock's huge page. */
export const MOCK_HUGE_PAGE_SIZE: number = 512 * MOCK_PAGE_SIZE;

/** Mock device flag: its IOMMU cannot track dirty pages. */
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;

/** hw_info type of the mock IOMMU. */
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
/** `test_reg` of the mock's struct iommu_test_hw_info. */
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
/** Driver data type of the mock's HWPT data (struct iommu_hwpt_selftest). */
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
/** Default `iotlb` of struct iommu_hwpt_selftest. */
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;

/** ioctl(IOMMU_TEST_CMD). */
export const IOMMU_TEST_CMD: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32);

/** struct iommu_test_hw_info: what the mock's hw_info reports. */
export const iommu_test_hw_info: UapiStruct = uapi_struct("iommu_test_hw_info", [
  ["flags", "u32"],
  ["test_reg", "u32"],
]);

/** struct iommu_hwpt_selftest: the mock's HWPT driver data. */
export const iommu_hwpt_selftest: UapiStruct = uapi_struct("iommu_hwpt_selftest", [
  ["iotlb", "u32"],
  ["pagetable_type", "u32"],
]);

/** struct iommu_test_cmd: the operation, its object, and one member of the union per op. */
export interface iommu_test_cmd extends UapiHeader {
  /** IOMMU_TEST_OP_*. */
  op: number;
  /** The object the operation works on. */
  id: number;
  /** Must be 0. */
  __reserved?: number;
  /** ADD_RESERVED. */
  add_reserved?: { start: bigint; length: bigint };
  /** MOCK_DOMAIN: the selftest object, HWPT and device IDs. */
  mock_domain?: { out_stdev_id: number; out_hwpt_id: number; out_idev_id: number };
  /** MOCK_DOMAIN_FLAGS. */
  mock_domain_flags?: {
    out_stdev_id: number;
    out_hwpt_id: number;
    out_idev_id: number;
    dev_flags: number;
  };
  /** MOCK_DOMAIN_REPLACE: in the object to attach to, out the HWPT attached. */
  mock_domain_replace?: { pt_id: number };
  /** MD_CHECK_MAP. */
  check_map?: { iova: bigint; length: bigint; uptr: bigint };
  /** MD_CHECK_REFS. */
  check_refs?: { length: bigint; uptr: bigint; refs: number };
  /** DIRTY: bit i of the user bitmap at `uptr` marks page i dirty; out, how many were. */
  dirty?: {
    flags: number;
    iova: bigint;
    length: bigint;
    page_size: bigint;
    uptr: bigint;
    out_nr_dirty: bigint;
  };
  /** Ends the structure (its offset is the minimum size). */
  last?: number;
}

/** Layout of struct iommu_test_cmd (the union holds the members the mock implements). */
export const iommu_test_cmd: UapiStruct = uapi_struct("iommu_test_cmd", [
  ["size", "u32"],
  ["op", "u32"],
  ["id", "u32"],
  ["__reserved", "u32"],
  {
    union: [
      ["add_reserved", uapi_struct("add_reserved", [["start", "u64"], ["length", "u64"]])],
      [
        "mock_domain",
        uapi_struct("mock_domain", [
          ["out_stdev_id", "u32"],
          ["out_hwpt_id", "u32"],
          ["out_idev_id", "u32"],
        ]),
      ],
      [
        "mock_domain_flags",
        uapi_struct("mock_domain_flags", [
          ["out_stdev_id", "u32"],
          ["out_hwpt_id", "u32"],
          ["out_idev_id", "u32"],
          ["dev_flags", "u32"],
        ]),
      ],
      ["mock_domain_replace", uapi_struct("mock_domain_replace", [["pt_id", "u32"]])],
      [
        "check_map",
        uapi_struct("check_map", [["iova", "u64"], ["length", "u64"], ["uptr", "u64"]]),
      ],
      [
        "check_refs",
        uapi_struct("check_refs", [["length", "u64"], ["uptr", "u64"], ["refs", "u32"]]),
      ],
      [
        "dirty",
        uapi_struct("dirty", [
          ["flags", "u32"],
          ["iova", "u64"],
          ["length", "u64"],
          ["page_size", "u64"],
          ["uptr", "u64"],
          ["out_nr_dirty", "u64"],
        ]),
      ],
    ],
  },
  ["last", "u32"],
]);
