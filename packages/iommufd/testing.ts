/**
 * The iommufd selftest's kernel side (`@iommu-lab/iommufd/testing`): the mock IOMMU driver and
 * the IOMMU_TEST_CMD ioctl that tools/testing/selftests/iommu drives, and that ioctl's uapi.
 *
 * @module
 */
export {
  IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_DATA_SELFTEST,
  iommu_hwpt_selftest,
  IOMMU_TEST_CMD,
  iommu_test_cmd,
  iommu_test_hw_info,
  IOMMU_TEST_IOTLB_DEFAULT,
  IOMMU_TEST_OP_ADD_RESERVED,
  IOMMU_TEST_OP_DIRTY,
  IOMMU_TEST_OP_MD_CHECK_MAP,
  IOMMU_TEST_OP_MD_CHECK_REFS,
  IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_HUGE_PAGE_SIZE,
  MOCK_IOMMUPT_DEFAULT,
  MOCK_IOMMUPT_HUGE,
  MOCK_PAGE_SIZE,
} from "./iommufd_test_h.ts";
export {
  IOMMUFD_OBJ_SELFTEST,
  iommufd_test_init,
  IommufdSelftest,
  MockDev,
  MockIommuDomain,
  SelftestObj,
} from "./selftest.ts";
