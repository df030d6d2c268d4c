/**
 * Hardware page tables: the paging HWPT object (an iommu_domain kept in sync with an IOAS),
 * IOMMU_HWPT_ALLOC with its flags, and the dirty-tracking commands
 * IOMMU_HWPT_SET_DIRTY_TRACKING and IOMMU_HWPT_GET_DIRTY_BITMAP. Mirrors
 * drivers/iommu/iommufd/hw_pagetable.c.
 *
 * @module
 */
import { copy_from_user, Errno } from "@iommu-lab/kernel";
import {
  device_iommu_capable,
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_domain_free,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_FAULT_ID_VALID,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_paging_domain_alloc_flags,
  type IommuDomain,
  type IommuUserData,
} from "@iommu-lab/iommu";
import {
  iommufd_get_device,
  iommufd_hw_pagetable_attach,
  iommufd_hw_pagetable_detach,
  type IommufdDevice,
} from "./device.ts";
import type { IommufdIoas } from "./ioas.ts";
import {
  iommufd_check_iova_range,
  iopt_read_and_clear_dirty_data,
  iopt_set_dirty_tracking,
  iopt_table_add_domain,
  iopt_table_remove_domain,
} from "./io_pagetable.ts";
import {
  type IommuFd,
  iommufd_get_object,
  IOMMUFD_OBJ_ANY,
  IOMMUFD_OBJ_FAULT,
  IOMMUFD_OBJ_HWPT_PAGING,
  IOMMUFD_OBJ_IOAS,
  iommufd_object_abort_and_destroy,
  iommufd_object_alloc,
  iommufd_object_finalize,
  iommufd_object_put_and_try_destroy,
  iommufd_put_object,
  iommufd_ucmd_respond,
  IommufdObject,
  type IommufdUcmd,
} from "./iommufd_private.ts";
import {
  type iommu_hwpt_alloc,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  type iommu_hwpt_get_dirty_bitmap,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  type iommu_hwpt_set_dirty_tracking,
} from "./uapi.ts";

/** struct iommufd_hwpt_paging: an iommu_domain whose mappings follow an IOAS. */
export class IommufdHwptPaging extends IommufdObject {
  /** The domain (set once allocated). */
  domain!: IommuDomain;
  /** Made by attaching a device to an IOAS, and destroyed with its last device. */
  auto_domain = false;
  /** Allocated with IOMMU_HWPT_ALLOC_NEST_PARENT. */
  nest_parent = false;
  /** On the IOAS's `hwpt_list` (its domain is synced with the IOAS). */
  _listed = false;

  /** A paging HWPT of `ioas`, which it keeps alive. */
  constructor(readonly ioas: IommufdIoas) {
    super(IOMMUFD_OBJ_HWPT_PAGING);
  }

  /** Mirrors iommufd_hwpt_paging_destroy(): unsyncs the domain, frees it, drops the IOAS. */
  destroy(): void {
    if (this._listed) {
      this.ioas.hwpt_list.splice(this.ioas.hwpt_list.indexOf(this), 1);
      this._listed = false;
      iopt_table_remove_domain(this.ioas.iopt, this.domain);
    }
    if (this.domain !== undefined) iommu_domain_free(this.domain);
    this.ioas.users--;
  }
}

/**
 * Mirrors iommufd_hw_pagetable_put(): drops a reference an attachment held; an automatic HWPT
 * goes away with its last user.
 */
export function iommufd_hw_pagetable_put(ictx: IommuFd, hwpt: IommufdHwptPaging): void {
  if (hwpt.auto_domain) iommufd_object_put_and_try_destroy(ictx, hwpt);
  else hwpt.users--;
}

const VALID_FLAGS = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
  IOMMU_HWPT_ALLOC_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;

/**
 * Mirrors iommufd_hwpt_paging_alloc(): a paging domain from the IOMMU of `idev` (with
 * IOMMU_HWPT_ALLOC_* `flags` and driver data), attached to `idev` first with `immediate_attach`,
 * then filled with the IOAS's mappings. The HWPT is returned unfinalized.
 *
 * Errors: EOPNOTSUPP for flags or data the driver cannot take (through
 * domain_alloc_paging_flags), unknown flags, DIRTY_TRACKING on an IOMMU without
 * IOMMU_CAP_DIRTY_TRACKING, or FAULT_ID_VALID with NEST_PARENT; then what the driver, the attach
 * and filling the domain throw.
 */
export function iommufd_hwpt_paging_alloc(
  ictx: IommuFd,
  ioas: IommufdIoas,
  idev: IommufdDevice,
  flags: number,
  immediate_attach: boolean,
  user_data: IommuUserData | null,
): IommufdHwptPaging {
  if (flags & ~VALID_FLAGS) throw new Errno("EOPNOTSUPP", `Bad HWPT flags 0x${flags.toString(16)}`);
  if (
    (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) &&
    !device_iommu_capable(idev.dev, IOMMU_CAP_DIRTY_TRACKING)
  ) {
    throw new Errno("EOPNOTSUPP", `${idev.dev.name}: the IOMMU cannot track dirty pages`);
  }
  if ((flags & IOMMU_HWPT_ALLOC_FAULT_ID_VALID) && (flags & IOMMU_HWPT_ALLOC_NEST_PARENT)) {
    throw new Errno("EOPNOTSUPP", "A nest parent cannot report faults");
  }
  const hwpt = iommufd_object_alloc(ictx, new IommufdHwptPaging(ioas));
  ioas.users++;
  hwpt.nest_parent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  try {
    // The core refuses flags or data for a driver without domain_alloc_paging_flags.
    hwpt.domain = iommu_paging_domain_alloc_flags(
      idev.dev,
      flags & ~IOMMU_HWPT_ALLOC_FAULT_ID_VALID,
      user_data,
    );
    if (immediate_attach) iommufd_hw_pagetable_attach(hwpt, idev);
    try {
      iopt_table_add_domain(ioas.iopt, hwpt.domain);
    } catch (e) {
      if (immediate_attach) {
        iommufd_hw_pagetable_detach(idev);
        hwpt.users--;
      }
      throw e;
    }
  } catch (e) {
    iommufd_object_abort_and_destroy(ictx, hwpt);
    throw e;
  }
  ioas.hwpt_list.push(hwpt);
  hwpt._listed = true;
  return hwpt;
}

/**
 * Mirrors iommufd_hwpt_alloc(): IOMMU_HWPT_ALLOC makes a paging HWPT of the IOAS `pt_id` for
 * device `dev_id`, with driver data (`data_type`, `data_len` bytes at `data_uptr`).
 *
 * Errors: EOPNOTSUPP for `__reserved` and from iommufd_hwpt_paging_alloc(); EINVAL for data
 * without a type or a type without data, and for a `pt_id` that is not an IOAS; ENOENT for no
 * such device, or a fault object that does not exist; EFAULT for unreadable data.
 *
 * DIVERGENCE: a `pt_id` that is a paging HWPT asks for a nested HWPT in Linux; the IOMMU core
 * here has no domain_alloc_nested, so that is EOPNOTSUPP, as Linux answers a driver without one.
 */
export function iommufd_hwpt_alloc(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as Required<iommu_hwpt_alloc>;
  const ictx = ucmd.ictx;
  if (cmd.__reserved) throw new Errno("EOPNOTSUPP", "__reserved must be 0");
  if (
    (cmd.data_type === IOMMU_HWPT_DATA_NONE && cmd.data_len) ||
    (cmd.data_type !== IOMMU_HWPT_DATA_NONE && !cmd.data_len)
  ) {
    throw new Errno("EINVAL", "Driver data needs both a type and a length");
  }
  const idev = iommufd_get_device(ucmd, cmd.dev_id);
  try {
    let pt_obj;
    try {
      pt_obj = iommufd_get_object(ictx, cmd.pt_id, IOMMUFD_OBJ_ANY);
    } catch {
      throw new Errno("EINVAL", `No object ${cmd.pt_id} to build an HWPT on`);
    }
    try {
      if (pt_obj.type === IOMMUFD_OBJ_HWPT_PAGING) {
        throw new Errno("EOPNOTSUPP", "The IOMMU cannot allocate nested domains");
      }
      if (pt_obj.type !== IOMMUFD_OBJ_IOAS) {
        throw new Errno("EINVAL", `Object ${cmd.pt_id} is not an IOAS`);
      }
      let user_data: IommuUserData | null = null;
      if (cmd.data_len) {
        const data = new Uint8Array(cmd.data_len);
        copy_from_user(ictx.mm, data, Number(cmd.data_uptr));
        user_data = { type: cmd.data_type, data };
      }
      const hwpt = iommufd_hwpt_paging_alloc(
        ictx,
        pt_obj as IommufdIoas,
        idev,
        cmd.flags,
        false,
        user_data,
      );
      try {
        if (cmd.flags & IOMMU_HWPT_ALLOC_FAULT_ID_VALID) {
          // Mirrors iommufd_get_fault(): there are no fault objects to find.
          iommufd_put_object(ictx, iommufd_get_object(ictx, cmd.fault_id, IOMMUFD_OBJ_FAULT));
        }
        cmd.out_hwpt_id = hwpt.id;
        iommufd_ucmd_respond(ucmd);
      } catch (e) {
        iommufd_object_abort_and_destroy(ictx, hwpt);
        throw e;
      }
      iommufd_object_finalize(ictx, hwpt);
    } finally {
      iommufd_put_object(ictx, pt_obj);
    }
  } finally {
    iommufd_put_object(ictx, idev);
  }
}

/** Mirrors iommufd_get_hwpt_paging(): paging HWPT `id` with a reference (ENOENT). */
function iommufd_get_hwpt_paging(ucmd: IommufdUcmd, id: number): IommufdHwptPaging {
  return iommufd_get_object(ucmd.ictx, id, IOMMUFD_OBJ_HWPT_PAGING) as IommufdHwptPaging;
}

/**
 * Mirrors iommufd_hwpt_set_dirty_tracking(): IOMMU_HWPT_SET_DIRTY_TRACKING turns the HWPT's
 * tracking on (clearing stale dirty state first) or off. EOPNOTSUPP for unknown flags or a
 * domain that cannot track, ENOENT for no such HWPT.
 */
export function iommufd_hwpt_set_dirty_tracking(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_hwpt_set_dirty_tracking;
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) {
    throw new Errno("EOPNOTSUPP", `Bad flags 0x${cmd.flags.toString(16)}`);
  }
  const hwpt = iommufd_get_hwpt_paging(ucmd, cmd.hwpt_id);
  try {
    iopt_set_dirty_tracking(
      hwpt.ioas.iopt,
      hwpt.domain,
      (cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE) !== 0,
    );
  } finally {
    iommufd_put_object(ucmd.ictx, hwpt);
  }
}

/**
 * Mirrors iommufd_hwpt_get_dirty_bitmap(): IOMMU_HWPT_GET_DIRTY_BITMAP sets bit i of the user's
 * bitmap when page i (of `page_size` bytes from `iova`) was written, clearing that state unless
 * NO_CLEAR (a clearing read is followed by an IOTLB flush).
 *
 * Errors: EOPNOTSUPP for unknown flags, `__reserved`, or a domain that cannot track; ENOENT for
 * no such HWPT; EOVERFLOW for a wrapping range; EINVAL for a range not aligned to the IOAS or the
 * page size, a page size that is zero or not a power of two, or a range not fully mapped; EFAULT
 * for a bitmap that is not writable user memory (too small for the range, say).
 */
export function iommufd_hwpt_get_dirty_bitmap(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_hwpt_get_dirty_bitmap;
  if ((cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) || cmd.__reserved) {
    throw new Errno("EOPNOTSUPP", `Bad flags 0x${cmd.flags.toString(16)}`);
  }
  const hwpt = iommufd_get_hwpt_paging(ucmd, cmd.hwpt_id);
  try {
    const iopt = hwpt.ioas.iopt;
    iommufd_check_iova_range(iopt, cmd.iova, cmd.length, cmd.page_size);
    iopt_read_and_clear_dirty_data(iopt, hwpt.domain, cmd.flags, {
      iova: Number(cmd.iova),
      length: Number(cmd.length),
      page_size: Number(cmd.page_size),
      data: Number(cmd.data),
    });
  } finally {
    iommufd_put_object(ucmd.ictx, hwpt);
  }
}
