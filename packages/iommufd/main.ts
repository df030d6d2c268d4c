/**
 * The iommufd character device: its ioctl table, IOMMU_DESTROY and IOMMU_OPTION, and open.
 * Mirrors drivers/iommu/iommufd/main.c (the object table, the dispatch and release are in
 * iommufd_private.ts).
 *
 * One {@linkcode Iommufd} per kernel holds the ioctl table (extensions such as the selftest's
 * IOMMU_TEST_CMD add to it); {@linkcode iommufd_fops_open} gives a process an
 * {@linkcode IommuFd}, and `fd.ioctl(cmd, struct)` runs a command. Failures throw an
 * {@linkcode Errno} with the errno Linux returns.
 *
 * @module
 */
import { Errno, type Kernel, kmalloc, type MmStruct } from "@iommu-lab/kernel";
import {
  IOMMU_DESTROY,
  iommu_destroy,
  IOMMU_GET_HW_INFO,
  iommu_hw_info,
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
  IOMMU_IOAS_UNMAP,
  iommu_ioas_unmap,
  IOMMU_OPTION,
  iommu_option,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IOMMU_OPTION_RLIMIT_MODE,
} from "./uapi.ts";
import { iommufd_get_hw_info } from "./device.ts";
import {
  iommufd_hwpt_alloc,
  iommufd_hwpt_get_dirty_bitmap,
  iommufd_hwpt_set_dirty_tracking,
} from "./hw_pagetable.ts";
import {
  iommufd_ioas_alloc_ioctl,
  iommufd_ioas_allow_iovas,
  iommufd_ioas_copy,
  iommufd_ioas_iova_ranges,
  iommufd_ioas_map,
  iommufd_ioas_option,
  iommufd_ioas_unmap,
} from "./ioas.ts";
import {
  IOCTL_OP,
  IommuFd,
  Iommufd,
  iommufd_object_remove,
  type IommufdUcmd,
  IOPT_PAGES_ACCOUNT_MM,
  IOPT_PAGES_ACCOUNT_USER,
} from "./iommufd_private.ts";

/** Mirrors iommufd_destroy(): IOMMU_DESTROY. */
function iommufd_destroy(ucmd: IommufdUcmd): void {
  iommufd_object_remove(ucmd.ictx, null, ucmd.cmd.id as number);
}

/**
 * Mirrors iommufd_option_rlimit_mode(): reads or sets how pinned pages are accounted (per user
 * or per process). Only the setting is kept: pages are not charged to any rlimit here.
 */
function iommufd_option_rlimit_mode(cmd: iommu_option, ictx: IommuFd): void {
  if (cmd.object_id) throw new Errno("EOPNOTSUPP", "RLIMIT_MODE is a global option");
  if (cmd.op === IOMMU_OPTION_OP_GET) {
    cmd.val64 = ictx.account_mode === IOPT_PAGES_ACCOUNT_MM ? 1n : 0n;
    return;
  }
  if (cmd.op !== IOMMU_OPTION_OP_SET) throw new Errno("EOPNOTSUPP", `Unknown op ${cmd.op}`);
  // The caller is taken to have CAP_SYS_RESOURCE.
  if (ictx.objects.size !== 0) throw new Errno("EBUSY", "Objects exist");
  if (cmd.val64 === 0n) ictx.account_mode = IOPT_PAGES_ACCOUNT_USER;
  else if (cmd.val64 === 1n) ictx.account_mode = IOPT_PAGES_ACCOUNT_MM;
  else throw new Errno("EINVAL", `Bad RLIMIT_MODE ${cmd.val64}`);
}

/** Mirrors iommufd_option(): IOMMU_OPTION. */
function iommufd_option(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_option;
  if (cmd.__reserved) throw new Errno("EOPNOTSUPP", "__reserved must be 0");
  if (cmd.option_id === IOMMU_OPTION_RLIMIT_MODE) iommufd_option_rlimit_mode(cmd, ucmd.ictx);
  else if (cmd.option_id === IOMMU_OPTION_HUGE_PAGES) iommufd_ioas_option(ucmd);
  else throw new Errno("EOPNOTSUPP", `Unknown option ${cmd.option_id}`);
  (ucmd.ubuffer as unknown as iommu_option).val64 = cmd.val64;
}

/**
 * Mirrors iommufd_init(): the misc device with the iommufd ioctl table, for `kernel`.
 *
 * @example The table answers every command of the uapi
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import { IOMMU_HWPT_GET_DIRTY_BITMAP, iommufd_init } from "@iommu-lab/iommufd";
 *
 * const dev = iommufd_init(new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) }));
 * assert.equal(dev.ioctl_ops.get(IOMMU_HWPT_GET_DIRTY_BITMAP & 0xff)?.min_size, 48);
 * ```
 */
export function iommufd_init(kernel: Kernel): Iommufd {
  const dev = new Iommufd(kernel);
  for (
    const op of [
      IOCTL_OP(IOMMU_DESTROY, iommufd_destroy, iommu_destroy, "id"),
      IOCTL_OP(IOMMU_GET_HW_INFO, iommufd_get_hw_info, iommu_hw_info, "__reserved"),
      IOCTL_OP(IOMMU_HWPT_ALLOC, iommufd_hwpt_alloc, iommu_hwpt_alloc, "__reserved"),
      IOCTL_OP(
        IOMMU_HWPT_GET_DIRTY_BITMAP,
        iommufd_hwpt_get_dirty_bitmap,
        iommu_hwpt_get_dirty_bitmap,
        "data",
      ),
      IOCTL_OP(
        IOMMU_HWPT_SET_DIRTY_TRACKING,
        iommufd_hwpt_set_dirty_tracking,
        iommu_hwpt_set_dirty_tracking,
        "__reserved",
      ),
      IOCTL_OP(IOMMU_IOAS_ALLOC, iommufd_ioas_alloc_ioctl, iommu_ioas_alloc, "out_ioas_id"),
      IOCTL_OP(
        IOMMU_IOAS_ALLOW_IOVAS,
        iommufd_ioas_allow_iovas,
        iommu_ioas_allow_iovas,
        "allowed_iovas",
      ),
      IOCTL_OP(IOMMU_IOAS_COPY, iommufd_ioas_copy, iommu_ioas_copy, "src_iova"),
      IOCTL_OP(
        IOMMU_IOAS_IOVA_RANGES,
        iommufd_ioas_iova_ranges,
        iommu_ioas_iova_ranges,
        "out_iova_alignment",
      ),
      IOCTL_OP(IOMMU_IOAS_MAP, iommufd_ioas_map, iommu_ioas_map, "iova"),
      IOCTL_OP(IOMMU_IOAS_UNMAP, iommufd_ioas_unmap, iommu_ioas_unmap, "length"),
      IOCTL_OP(IOMMU_OPTION, iommufd_option, iommu_option, "val64"),
    ]
  ) {
    dev.registerIoctl(op);
  }
  return dev;
}

/**
 * Mirrors iommufd_fops_open(): opens `/dev/iommu` of `iommufd` for the process of `mm`. ENOMEM
 * when the context cannot be allocated; EINVAL for an mm of another kernel.
 */
export function iommufd_fops_open(iommufd: Iommufd, mm: MmStruct): IommuFd {
  if (mm.kernel !== iommufd.kernel) throw new Errno("EINVAL", "The process runs on another kernel");
  return kmalloc(iommufd.kernel, new IommuFd(iommufd, mm));
}
