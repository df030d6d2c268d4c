/**
 * Shared virtual addressing: a device uses a process's virtual addresses, tagged with the PASID
 * the mm gets once for every device (from the global PASID space), through an SVA domain whose
 * first stage is the mm's own page table. Pages the device touches before the CPU did are
 * populated on demand: the SVA domain's fault handler runs the mm's fault handler from the IOPF
 * workqueue and answers the group. Mirrors drivers/iommu/iommu-sva.c.
 *
 * @module
 */
import {
  type Device,
  Errno,
  FAULT_FLAG_INSTRUCTION,
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_USER,
  FAULT_FLAG_WRITE,
  handle_mm_fault,
  INIT_WORK,
  kfree,
  kmalloc,
  mmget_not_zero,
  mmgrab,
  mmput,
  type MmStruct,
  queue_work,
  VM_EXEC,
  VM_FAULT_ERROR,
  VM_READ,
  VM_WRITE,
  vma_lookup,
} from "@iommu-lab/kernel";
import {
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  type IommuFault,
  iopf_free_group,
  iopf_group_response,
  type IopfGroup,
} from "./io_pgfault.ts";
import {
  dev_iommu_ops,
  type DevIommu,
  iommu_alloc_global_pasid,
  iommu_attach_device_pasid,
  iommu_attach_handle_get,
  iommu_detach_device_pasid,
  iommu_domain_free,
  IOMMU_DOMAIN_SVA,
  iommu_free_global_pasid,
  iommu_group_get,
  type IommuAttachHandle,
  type IommuDomain,
} from "./iommu.ts";

/** struct iommu_mm_data: what SVA hangs off an mm (`mm.iommu_mm`). */
export class IommuMmData {
  /** The SVA domains following the mm, one per IOMMU driver whose devices bind it. */
  readonly sva_domains: IommuDomain[] = [];

  /** The PASID of `mm`, the same on every device. */
  constructor(readonly mm: MmStruct, readonly pasid: number) {}
}

/** struct iommu_sva: a bind of a device to an mm, reference counted over repeated binds. */
export class IommuSva implements IommuAttachHandle {
  /** The SVA domain of the bind. */
  domain: IommuDomain | null = null;
  /** Binds of the same device and mm sharing this handle. */
  users = 1;

  /** Use {@linkcode iommu_sva_bind_device}. */
  constructor(readonly dev: Device) {}
}

/**
 * Mirrors iommu_alloc_mm_data(): the mm's SVA data, with its PASID, made on the first bind.
 * EOVERFLOW when the mm already has a PASID `dev` cannot tag; ENOSPC when no PASID is left (or
 * `dev` has none); ENOMEM.
 */
function iommu_alloc_mm_data(mm: MmStruct, dev: Device): IommuMmData {
  const existing = mm.iommu_mm as IommuMmData | null;
  if (existing !== null) {
    if (existing.pasid >= (dev.iommu as DevIommu).max_pasids) {
      throw new Errno("EOVERFLOW", `${dev.name} cannot tag PASID ${existing.pasid}`);
    }
    return existing;
  }
  const pasid = iommu_alloc_global_pasid(dev);
  try {
    const iommu_mm = kmalloc(mm.kernel, new IommuMmData(mm, pasid));
    mm.iommu_mm = iommu_mm;
    return iommu_mm;
  } catch (e) {
    iommu_free_global_pasid(mm.kernel, pasid);
    throw e;
  }
}

/**
 * Mirrors iommu_sva_bind_device(): lets `dev` use the addresses of `mm` with the PASID
 * {@linkcode iommu_sva_get_pasid} returns. A second bind of the same device and mm takes a
 * reference on the first; another device reuses the mm's SVA domain when its IOMMU can, else
 * gets a new one from the driver (`domain_alloc_sva`). The caller holds a user reference on
 * `mm`. Undo with {@linkcode iommu_sva_unbind_device}.
 *
 * Errors: ENODEV when `dev` is not behind an IOMMU; EINVAL for an mm without a page table;
 * ENOSPC / EOVERFLOW for the PASID (see above); EOPNOTSUPP when the driver has no SVA; EBUSY
 * when the mm's PASID of `dev` is used by something else; whatever the driver throws
 * (ENOMEM...). A failed bind leaves the mm's PASID with the mm, as Linux does, until its last
 * mmdrop().
 *
 * DIVERGENCE: the EINVAL: every Linux mm has its pgd from mm_alloc(); here a structure built
 * with `new MmStruct()` gets its root with its first mapping, and has none to share before.
 *
 * @example Binding an mm and resolving a device fault on it
 * ```ts ignore
 * const handle = iommu_sva_bind_device(dev, mm);
 * program_device(dev, iommu_sva_get_pasid(handle), va); // the device DMAs to `va` of `mm`
 * iommu_sva_unbind_device(handle);
 * ```
 */
export function iommu_sva_bind_device(dev: Device, mm: MmStruct): IommuSva {
  const group = iommu_group_get(dev);
  if (group === null) throw new Errno("ENODEV", `${dev.name} is not behind an IOMMU`);
  if (mm.pgd < 0) throw new Errno("EINVAL", "The mm has no page table to share");
  const iommu_mm = iommu_alloc_mm_data(mm, dev);

  let existing: IommuAttachHandle | null = null;
  try {
    existing = iommu_attach_handle_get(group, iommu_mm.pasid, IOMMU_DOMAIN_SVA);
  } catch (e) {
    if (!(e instanceof Errno) || e.code !== "ENOENT") throw e;
  }
  if (existing !== null) {
    const handle = existing as IommuSva;
    if (handle.domain!.mm !== mm) {
      throw new Errno("EBUSY", `PASID ${iommu_mm.pasid} of ${dev.name} serves another mm`);
    }
    handle.users++;
    return handle;
  }

  const handle = kmalloc(dev.kernel, new IommuSva(dev));
  try {
    for (const domain of iommu_mm.sva_domains) {
      try {
        iommu_attach_device_pasid(domain, dev, iommu_mm.pasid, handle);
      } catch (e) {
        if (e instanceof Errno) continue;
        throw e;
      }
      domain.users++;
      return handle;
    }
    const domain = iommu_sva_domain_alloc(dev, mm);
    try {
      iommu_attach_device_pasid(domain, dev, iommu_mm.pasid, handle);
    } catch (e) {
      iommu_domain_free(domain);
      throw e;
    }
    domain.users = 1;
    iommu_mm.sva_domains.push(domain);
    return handle;
  } catch (e) {
    kfree(dev.kernel, handle);
    throw e;
  }
}

/**
 * Mirrors iommu_sva_unbind_device(): drops a bind; the last one of the handle detaches the
 * PASID (the driver drains the device's faults for it), and the last user of the SVA domain
 * frees it. The device must have stopped issuing requests with the PASID. The PASID stays
 * with the mm until its last mmdrop().
 */
export function iommu_sva_unbind_device(handle: IommuSva): void {
  if (handle.users === 0) throw new Errno("EINVAL", "The SVA handle is unbound already");
  if (--handle.users !== 0) return;
  const domain = handle.domain!;
  const iommu_mm = domain.mm!.iommu_mm as IommuMmData;
  iommu_detach_device_pasid(domain, handle.dev, iommu_mm.pasid);
  if (--domain.users === 0) {
    iommu_mm.sva_domains.splice(iommu_mm.sva_domains.indexOf(domain), 1);
    iommu_domain_free(domain);
  }
  kfree(handle.dev.kernel, handle);
}

/** Mirrors iommu_sva_get_pasid(): the PASID the device must tag its requests to the mm with. */
export function iommu_sva_get_pasid(handle: IommuSva): number {
  return (handle.domain!.mm!.iommu_mm as IommuMmData).pasid;
}

/**
 * Mirrors mm_pasid_drop(), from the last mmdrop() (through the kernel's `iommuLayer`): the mm's
 * PASID goes back to the global space and its SVA data is freed. Every bind is gone by then.
 */
export function mm_pasid_drop(mm: MmStruct): void {
  const iommu_mm = mm.iommu_mm as IommuMmData | null;
  if (iommu_mm === null) return;
  iommu_free_global_pasid(mm.kernel, iommu_mm.pasid);
  mm.iommu_mm = null;
  kfree(mm.kernel, iommu_mm);
}

/**
 * Mirrors iommu_sva_handle_mm(): resolves one request on `mm` as a remote fault of the access it
 * asks for; IOMMU_PAGE_RESP_SUCCESS when the page is there now, IOMMU_PAGE_RESP_INVALID for a
 * request without PASID, an exited mm, an address outside any mapping or an access the
 * mapping forbids (where a CPU would get SIGSEGV), or a failed fault.
 */
function iommu_sva_handle_mm(fault: IommuFault, mm: MmStruct): number {
  const prm = fault.prm;
  if (!(prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID)) return IOMMU_PAGE_RESP_INVALID;
  if (!mmget_not_zero(mm)) return IOMMU_PAGE_RESP_INVALID;
  try {
    const vma = vma_lookup(mm, prm.addr);
    if (vma === null) return IOMMU_PAGE_RESP_INVALID;
    let access = 0;
    let flags = FAULT_FLAG_REMOTE;
    if (prm.perm & IOMMU_FAULT_PERM_READ) access |= VM_READ;
    if (prm.perm & IOMMU_FAULT_PERM_WRITE) {
      access |= VM_WRITE;
      flags |= FAULT_FLAG_WRITE;
    }
    if (prm.perm & IOMMU_FAULT_PERM_EXEC) {
      access |= VM_EXEC;
      flags |= FAULT_FLAG_INSTRUCTION;
    }
    if (!(prm.perm & IOMMU_FAULT_PERM_PRIV)) flags |= FAULT_FLAG_USER;
    if (access & ~vma.vm_flags) return IOMMU_PAGE_RESP_INVALID;
    return handle_mm_fault(vma, prm.addr, flags) & VM_FAULT_ERROR
      ? IOMMU_PAGE_RESP_INVALID
      : IOMMU_PAGE_RESP_SUCCESS;
  } finally {
    mmput(mm);
  }
}

/**
 * Mirrors iommu_sva_handle_iopf(), the IOPF work: resolves the group's requests in order
 * (errors are sticky: the rest are not tried), answers the group and frees it.
 */
function iommu_sva_handle_iopf(group: IopfGroup): void {
  let status = IOMMU_PAGE_RESP_SUCCESS;
  const mm = group.attach_handle!.domain!.mm!;
  for (const iopf of group.faults) {
    if (status !== IOMMU_PAGE_RESP_SUCCESS) break;
    status = iommu_sva_handle_mm(iopf.fault, mm);
  }
  iopf_group_response(group, status);
  iopf_free_group(group);
}

/**
 * Mirrors iommu_sva_iopf_handler(), the `iopf_handler` of SVA domains: the fault is resolved
 * from the device's IOPF workqueue, since it may sleep. EBUSY when the group is queued already.
 */
function iommu_sva_iopf_handler(group: IopfGroup): void {
  INIT_WORK(group.work, () => iommu_sva_handle_iopf(group));
  if (!queue_work(group.fault_param.queue.wq, group.work)) {
    throw new Errno("EBUSY", "The fault group is queued already");
  }
}

/**
 * Mirrors iommu_sva_domain_alloc(): the driver's SVA domain for `mm` (`domain_alloc_sva`), made
 * an IOMMU_DOMAIN_SVA that holds the mm (mmgrab) and handles faults with
 * iommu_sva_iopf_handler. EOPNOTSUPP when the driver has no SVA.
 */
function iommu_sva_domain_alloc(dev: Device, mm: MmStruct): IommuDomain {
  const ops = dev_iommu_ops(dev);
  if (!ops.domain_alloc_sva) throw new Errno("EOPNOTSUPP", `${dev.name}: the IOMMU has no SVA`);
  const domain = ops.domain_alloc_sva(dev, mm);
  domain.type = IOMMU_DOMAIN_SVA;
  mmgrab(mm);
  domain.mm = mm;
  domain.owner = ops;
  domain.iopf_handler = iommu_sva_iopf_handler;
  return domain;
}
