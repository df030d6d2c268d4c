/**
 * iommufd as a user-space program sees it: an {@linkcode IommuFd} opened on a kernel, objects
 * with IDs (IOAS, paging HWPTs, devices), and the uapi's commands taking structures with the
 * uapi's field names and size rules. Drivers bind devices with {@linkcode iommufd_device_bind}
 * and attach them with {@linkcode iommufd_device_attach}. Mirrors drivers/iommu/iommufd and
 * include/uapi/linux/iommufd.h.
 *
 * @example Open /dev/iommu and read an IOAS's IOVA ranges
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel, MmStruct } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import {
 *   IOMMU_IOAS_ALLOC, iommu_ioas_alloc, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges,
 *   iommufd_fops_open, iommufd_init, sizeof,
 * } from "@iommu-lab/iommufd";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const fd = iommufd_fops_open(iommufd_init(kernel), new MmStruct(kernel));
 * const ioas: iommu_ioas_alloc = { size: sizeof(iommu_ioas_alloc), flags: 0, out_ioas_id: 0 };
 * fd.ioctl(IOMMU_IOAS_ALLOC, ioas);
 * const ranges: iommu_ioas_iova_ranges = {
 *   size: sizeof(iommu_ioas_iova_ranges), ioas_id: ioas.out_ioas_id, num_iovas: 0,
 *   __reserved: 0, allowed_iovas: 0n, out_iova_alignment: 0n,
 * };
 * assert.throws(() => fd.ioctl(IOMMU_IOAS_IOVA_RANGES, ranges), { code: "EMSGSIZE" });
 * assert.equal(ranges.num_iovas, 1); // one range: the whole IOVA space
 * fd.close();
 * ```
 *
 * @module
 */
export {
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_device_detach,
  iommufd_device_replace,
  iommufd_device_unbind,
  type IommufdAttach,
  IommufdDevice,
  type IommufdGroup,
} from "./device.ts";
export { IommufdHwptPaging } from "./hw_pagetable.ts";
export { iommufd_get_ioas, IommufdIoas } from "./ioas.ts";
export {
  IoPagetable,
  IOPT_IOVA_LIMIT,
  iopt_reserve_iova,
  type IoptArea,
  type IoptInterval,
  type IoptReserved,
} from "./io_pagetable.ts";
export { type IoptPages } from "./pages.ts";
export {
  IOCTL_OP,
  IommuFd,
  Iommufd,
  iommufd_get_object,
  IOMMUFD_OBJ_ANY,
  IOMMUFD_OBJ_DEVICE,
  IOMMUFD_OBJ_HWPT_PAGING,
  IOMMUFD_OBJ_IOAS,
  iommufd_object_abort,
  iommufd_object_alloc,
  iommufd_object_finalize,
  iommufd_put_object,
  iommufd_ucmd_respond,
  type IommufdIoctlOp,
  IommufdObject,
  type IommufdUcmd,
} from "./iommufd_private.ts";
export { iommufd_fops_open, iommufd_init } from "./main.ts";
export {
  _IO,
  copy_struct_from_user,
  IOMMU_DESTROY,
  iommu_destroy,
  IOMMU_GET_HW_INFO,
  IOMMU_HW_CAP_DIRTY_TRACKING,
  iommu_hw_info,
  IOMMU_HW_INFO_TYPE_NONE,
  IOMMU_HWPT_ALLOC,
  iommu_hwpt_alloc,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  iommu_hwpt_get_dirty_bitmap,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
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
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_unmap,
  iommu_iova_range,
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
  uapi_struct,
  type UapiField,
  type UapiHeader,
  type UapiMember,
  type UapiScalar,
  UapiStruct,
} from "./uapi.ts";
