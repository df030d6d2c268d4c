/**
 * Devices bound to an iommufd: binding (with DMA ownership), attach/replace/detach to an HWPT or
 * an IOAS (an automatic domain), and IOMMU_GET_HW_INFO. Mirrors drivers/iommu/iommufd/device.c
 * for DMA without a PASID.
 *
 * A driver (VFIO in Linux, the selftest's mock devices or a user-space driver here) calls
 * {@linkcode iommufd_device_bind} for a device no kernel driver is bound to, then
 * {@linkcode iommufd_device_attach}; user space sees the device through its ID.
 *
 * @module
 */
import { clear_user, copy_to_user, type Device, Errno, kfree, kmalloc } from "@iommu-lab/kernel";
import {
  dev_iommu_ops,
  device_iommu_capable,
  iommu_attach_group,
  IOMMU_CAP_CACHE_COHERENCY,
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_detach_group,
  iommu_device_claim_dma_owner,
  iommu_device_release_dma_owner,
  iommu_group_get,
  iommu_group_replace_domain,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  type IommuGroup,
} from "@iommu-lab/iommu";
import {
  iommufd_hw_pagetable_put,
  iommufd_hwpt_paging_alloc,
  type IommufdHwptPaging,
} from "./hw_pagetable.ts";
import type { IommufdIoas } from "./ioas.ts";
import {
  type IommuFd,
  iommufd_get_object,
  iommufd_lock_obj,
  IOMMUFD_OBJ_ANY,
  IOMMUFD_OBJ_DEVICE,
  IOMMUFD_OBJ_HWPT_PAGING,
  IOMMUFD_OBJ_IOAS,
  iommufd_object_abort_and_destroy,
  iommufd_object_alloc,
  iommufd_object_destroy_user,
  iommufd_object_finalize,
  iommufd_put_object,
  iommufd_ucmd_respond,
  IommufdObject,
  type IommufdUcmd,
} from "./iommufd_private.ts";
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  type iommu_hw_info,
  IOMMU_HW_INFO_TYPE_NONE,
} from "./uapi.ts";

/** struct iommufd_attach: what the devices of a group bound here are attached to. */
export interface IommufdAttach {
  /** The HWPT the group is attached to. */
  hwpt: IommufdHwptPaging;
  /** The attached devices of the group, by object ID. */
  readonly devices: Map<number, IommufdDevice>;
}

/** struct iommufd_group: iommufd's state for an iommu_group with devices bound to one file. */
export class IommufdGroup {
  /** kref: devices of the group bound to the file. */
  ref = 1;
  /** The attachment of the group (the NO_PASID entry of `pasid_attach`), or null. */
  attach: IommufdAttach | null = null;

  /** The state of `group` in `ictx`. */
  constructor(readonly ictx: IommuFd, readonly group: IommuGroup) {}
}

/** struct iommufd_device: a device bound to an iommufd. */
export class IommufdDevice extends IommufdObject {
  /** Use {@linkcode iommufd_device_bind}. */
  constructor(
    readonly ictx: IommuFd,
    readonly dev: Device,
    readonly igroup: IommufdGroup,
  ) {
    super(IOMMUFD_OBJ_DEVICE);
  }

  /** Mirrors iommufd_device_destroy(): gives DMA back to the kernel, drops the group. */
  destroy(): void {
    iommu_device_release_dma_owner(this.dev);
    iommufd_put_group(this.igroup);
  }
}

/** Mirrors iommufd_put_group(): the last reference frees the group state. */
function iommufd_put_group(igroup: IommufdGroup): void {
  if (--igroup.ref !== 0) return;
  igroup.ictx.groups.delete(igroup.group.id);
  kfree(igroup.ictx.kernel, igroup);
}

/**
 * Mirrors iommufd_get_group(): the file's state for the group of `dev` (one per group, shared
 * by its devices). ENODEV without a group, ENOMEM.
 */
function iommufd_get_group(ictx: IommuFd, dev: Device): IommufdGroup {
  const group = iommu_group_get(dev);
  if (group === null) throw new Errno("ENODEV", `${dev.name} is not in an iommu group`);
  const cur = ictx.groups.get(group.id) as IommufdGroup | undefined;
  if (cur !== undefined) {
    cur.ref++;
    return cur;
  }
  const igroup = kmalloc(ictx.kernel, new IommufdGroup(ictx, group));
  ictx.groups.set(group.id, igroup);
  return igroup;
}

/**
 * Mirrors iommufd_device_bind(): binds `dev` (no kernel driver bound) to `ictx` and claims its
 * DMA; the device then sits in the blocking domain. The caller holds the device until
 * {@linkcode iommufd_device_unbind}. Returns the device and its ID.
 *
 * Errors: EINVAL when the IOMMU is not cache coherent (iommufd maps everything IOMMU_CACHE);
 * ENODEV without an iommu group; EPERM/EBUSY from iommu_device_claim_dma_owner(); ENOMEM.
 *
 * DIVERGENCE: Linux also refuses (EPERM) a device whose MSIs the platform cannot isolate,
 * unless allow_unsafe_interrupts; the kernel here has no notion of MSI isolation.
 */
export function iommufd_device_bind(
  ictx: IommuFd,
  dev: Device,
): { idev: IommufdDevice; id: number } {
  if (!device_iommu_capable(dev, IOMMU_CAP_CACHE_COHERENCY)) {
    throw new Errno("EINVAL", `${dev.name}: the IOMMU is not cache coherent`);
  }
  const igroup = iommufd_get_group(ictx, dev);
  try {
    iommu_device_claim_dma_owner(dev, ictx);
  } catch (e) {
    iommufd_put_group(igroup);
    throw e;
  }
  let idev: IommufdDevice;
  try {
    idev = iommufd_object_alloc(ictx, new IommufdDevice(ictx, dev, igroup));
  } catch (e) {
    iommu_device_release_dma_owner(dev);
    iommufd_put_group(igroup);
    throw e;
  }
  // The calling driver is a user until iommufd_device_unbind().
  idev.users++;
  iommufd_object_finalize(ictx, idev);
  return { idev, id: idev.id };
}

/**
 * Mirrors iommufd_device_unbind(): the driver lets go of the device, which returns to the DMA
 * API. EBUSY (Linux WARNs) while it is still attached.
 */
export function iommufd_device_unbind(idev: IommufdDevice): void {
  iommufd_object_destroy_user(idev.ictx, idev);
}

/** Mirrors iommufd_get_device(): device `id` with a reference (ENOENT). */
export function iommufd_get_device(ucmd: IommufdUcmd, id: number): IommufdDevice {
  return iommufd_get_object(ucmd.ictx, id, IOMMUFD_OBJ_DEVICE) as IommufdDevice;
}

/**
 * Mirrors iommufd_hw_pagetable_attach(): attaches the device to `hwpt`; the first device of a
 * group attaches the group (the IOMMU driver's attach_dev runs then), the others follow it.
 * EBUSY when the device is attached already, EINVAL when its group is attached to another HWPT,
 * and what the core and driver throw (EINVAL for a domain of another IOMMU, say); ENOMEM.
 */
export function iommufd_hw_pagetable_attach(hwpt: IommufdHwptPaging, idev: IommufdDevice): void {
  const igroup = idev.igroup;
  let attach = igroup.attach;
  const first = attach === null;
  if (attach === null) {
    attach = kmalloc(idev.ictx.kernel, { hwpt, devices: new Map() } as IommufdAttach);
  }
  try {
    if (attach.devices.has(idev.id)) throw new Errno("EBUSY", "The device is attached");
    if (!first && attach.hwpt !== hwpt) {
      throw new Errno("EINVAL", "The group is attached to another HWPT");
    }
    // iommufd_device_attach_reserved_iova(): the core has no reserved regions to enforce.
    if (first) {
      // Mirrors iommufd_hwpt_attach_device(); the attach handle it allocates is kept here.
      iommu_attach_group(hwpt.domain, igroup.group);
      igroup.attach = attach;
    }
  } catch (e) {
    if (first) kfree(idev.ictx.kernel, attach);
    throw e;
  }
  hwpt.users++;
  attach.devices.set(idev.id, idev);
}

/**
 * Mirrors iommufd_hw_pagetable_detach(): takes the device off its HWPT; the last device of the
 * group detaches the group (back to blocking). Returns the HWPT, whose reference the caller
 * drops, or null when the device was not attached.
 */
export function iommufd_hw_pagetable_detach(idev: IommufdDevice): IommufdHwptPaging | null {
  const igroup = idev.igroup;
  const attach = igroup.attach;
  if (attach === null || !attach.devices.delete(idev.id)) return null;
  const hwpt = attach.hwpt;
  if (attach.devices.size === 0) {
    iommu_detach_group(hwpt.domain, igroup.group);
    igroup.attach = null;
    kfree(idev.ictx.kernel, attach);
  }
  return hwpt;
}

/** How change_pt moves a device: attach or replace. Returns the HWPT to release, or null. */
type AttachFn = (idev: IommufdDevice, hwpt: IommufdHwptPaging) => IommufdHwptPaging | null;

/** Mirrors iommufd_device_do_attach(). */
function iommufd_device_do_attach(
  idev: IommufdDevice,
  hwpt: IommufdHwptPaging,
): IommufdHwptPaging | null {
  iommufd_hw_pagetable_attach(hwpt, idev);
  return null;
}

/**
 * Mirrors iommufd_device_do_replace(): moves the device's whole group to `hwpt` without passing
 * through blocking, carrying the references its attached devices hold. EINVAL when the device is
 * not attached. Returns the old HWPT (one reference for the caller to drop), or null when
 * `hwpt` is the one attached.
 */
function iommufd_device_do_replace(
  idev: IommufdDevice,
  hwpt: IommufdHwptPaging,
): IommufdHwptPaging | null {
  const igroup = idev.igroup;
  const attach = igroup.attach;
  if (attach === null || !attach.devices.has(idev.id)) {
    throw new Errno("EINVAL", "The device is not attached");
  }
  const old = attach.hwpt;
  if (hwpt === old) return null;
  // Mirrors iommufd_hwpt_replace_device() (the attach handle is replaced along).
  iommu_group_replace_domain(igroup.group, hwpt.domain);
  attach.hwpt = hwpt;
  const n = attach.devices.size;
  hwpt.users += n;
  old.users -= n - 1;
  return old;
}

/**
 * Mirrors iommufd_device_auto_get_domain(): attaches to an automatic HWPT of `ioas` that takes
 * the device (EINVAL from one means "incompatible", try the next), or makes a new one.
 * Returns the HWPT to release and the ID of the one attached.
 */
function iommufd_device_auto_get_domain(
  idev: IommufdDevice,
  ioas: IommufdIoas,
  do_attach: AttachFn,
): { destroy: IommufdHwptPaging | null; pt_id: number } {
  const immediate_attach = do_attach === iommufd_device_do_attach;
  for (const hwpt of [...ioas.hwpt_list]) {
    if (!hwpt.auto_domain || !iommufd_lock_obj(hwpt)) continue;
    try {
      return { destroy: do_attach(idev, hwpt), pt_id: hwpt.id };
    } catch (e) {
      if (!(e instanceof Errno) || e.code !== "EINVAL") throw e;
    } finally {
      iommufd_put_object(idev.ictx, hwpt);
    }
  }
  const hwpt = iommufd_hwpt_paging_alloc(idev.ictx, ioas, idev, 0, immediate_attach, null);
  let destroy: IommufdHwptPaging | null = null;
  if (!immediate_attach) {
    try {
      destroy = do_attach(idev, hwpt);
    } catch (e) {
      iommufd_object_abort_and_destroy(idev.ictx, hwpt);
      throw e;
    }
  }
  hwpt.auto_domain = true;
  iommufd_object_finalize(idev.ictx, hwpt);
  return { destroy, pt_id: hwpt.id };
}

/**
 * Mirrors iommufd_device_change_pt(): `pt_id` is an HWPT (used as is) or an IOAS (an automatic
 * HWPT). Returns the ID attached. ENOENT for no such object, EINVAL for another type.
 */
function iommufd_device_change_pt(idev: IommufdDevice, pt_id: number, do_attach: AttachFn): number {
  const ictx = idev.ictx;
  const pt_obj = iommufd_get_object(ictx, pt_id, IOMMUFD_OBJ_ANY);
  let destroy: IommufdHwptPaging | null;
  try {
    if (pt_obj.type === IOMMUFD_OBJ_HWPT_PAGING) {
      destroy = do_attach(idev, pt_obj as IommufdHwptPaging);
    } else if (pt_obj.type === IOMMUFD_OBJ_IOAS) {
      const r = iommufd_device_auto_get_domain(idev, pt_obj as IommufdIoas, do_attach);
      destroy = r.destroy;
      pt_id = r.pt_id;
    } else {
      throw new Errno("EINVAL", `Object ${pt_id} is not an IOAS or HWPT`);
    }
  } finally {
    iommufd_put_object(ictx, pt_obj);
  }
  // This destruction has to come after everything above lets go.
  if (destroy !== null) iommufd_hw_pagetable_put(ictx, destroy);
  return pt_id;
}

/**
 * Mirrors iommufd_device_attach(): attaches the device to HWPT or IOAS `pt_id`; returns the ID
 * of the HWPT attached (an automatic one for an IOAS). Undo with
 * {@linkcode iommufd_device_detach}.
 */
export function iommufd_device_attach(idev: IommufdDevice, pt_id: number): number {
  const id = iommufd_device_change_pt(idev, pt_id, iommufd_device_do_attach);
  // Pairs with iommufd_device_detach(): a device with an attachment cannot be destroyed.
  idev.users++;
  return id;
}

/**
 * Mirrors iommufd_device_replace(): moves an attached device to HWPT or IOAS `pt_id` without a
 * window of blocked DMA; nothing changes on failure. Returns the ID of the HWPT attached.
 */
export function iommufd_device_replace(idev: IommufdDevice, pt_id: number): number {
  return iommufd_device_change_pt(idev, pt_id, iommufd_device_do_replace);
}

/** Mirrors iommufd_device_detach(): undoes iommufd_device_attach() (DMA is blocked again). */
export function iommufd_device_detach(idev: IommufdDevice): void {
  const hwpt = iommufd_hw_pagetable_detach(idev);
  if (hwpt === null) return;
  iommufd_hw_pagetable_put(idev.ictx, hwpt);
  idev.users--;
}

/**
 * Mirrors iommufd_get_hw_info(): IOMMU_GET_HW_INFO copies the driver's information (ops.hw_info,
 * none without it) to `data_uptr`, zero-filling the rest of `data_len`, and reports the data's
 * type and length and IOMMU_HW_CAP_DIRTY_TRACKING. EOPNOTSUPP for `flags` or `__reserved` and
 * from the driver, ENOENT for no such device, EFAULT.
 */
export function iommufd_get_hw_info(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_hw_info;
  if (cmd.flags || cmd.__reserved) throw new Errno("EOPNOTSUPP", "flags and __reserved are 0");
  const idev = iommufd_get_device(ucmd, cmd.dev_id);
  try {
    const ops = dev_iommu_ops(idev.dev);
    let data: Uint8Array = new Uint8Array(0);
    cmd.out_data_type = IOMMU_HW_INFO_TYPE_NONE;
    if (ops.hw_info) {
      const info = ops.hw_info(idev.dev, IOMMU_HW_INFO_TYPE_DEFAULT);
      data = info.data;
      cmd.out_data_type = info.type;
    }
    const uptr = Number(cmd.data_uptr);
    const copy_len = Math.min(cmd.data_len, data.length);
    copy_to_user(ucmd.ictx.mm, uptr, data.subarray(0, copy_len));
    // The caller's buffer past what the driver has reads as zero.
    if (copy_len < cmd.data_len) clear_user(ucmd.ictx.mm, uptr + copy_len, cmd.data_len - copy_len);
    cmd.data_len = data.length;
    cmd.out_capabilities = device_iommu_capable(idev.dev, IOMMU_CAP_DIRTY_TRACKING)
      ? BigInt(IOMMU_HW_CAP_DIRTY_TRACKING)
      : 0n;
    iommufd_ucmd_respond(ucmd);
  } finally {
    iommufd_put_object(ucmd.ictx, idev);
  }
}
