/**
 * I/O page faults: an IOMMU driver reports the page requests of a device (PCIe PRI) here; the
 * core collects the requests of a page request group until its last one, finds the domain that
 * handles faults through the attach handle of the faulting PASID, and hands the whole group to
 * that domain's `iopf_handler`, which answers it with {@linkcode iopf_group_response} (the
 * driver's `page_response`: ATS.PRGR on RISC-V). Every reported group is answered exactly once:
 * when no fault-capable domain is attached the core answers IOMMU_PAGE_RESP_INVALID itself.
 * Mirrors drivers/iommu/io-pgfault.c and its structures in include/linux/iommu.h, as of the
 * attach-handle rework (iommu_report_device_fault() answering bad faults itself).
 *
 * @module
 */
import {
  alloc_workqueue,
  destroy_workqueue,
  dev_warn,
  dev_warn_ratelimited,
  type Device,
  Errno,
  flush_workqueue,
  type Kernel,
  kfree,
  kmalloc,
  RatelimitState,
  type WorkqueueStruct,
  WorkStruct,
  WQ_UNBOUND,
} from "@iommu-lab/kernel";
import {
  dev_iommu_ops,
  DevIommu,
  iommu_attach_handle_get,
  iommu_group_get,
  IOMMU_NO_PASID,
  type IommuAttachHandle,
  type IommuFaultPageRequest,
} from "./iommu.ts";

/** IOMMU_FAULT_PERM_READ: the request asks for read access. */
export const IOMMU_FAULT_PERM_READ: number = 1 << 0;
/** IOMMU_FAULT_PERM_WRITE: the request asks for write access. */
export const IOMMU_FAULT_PERM_WRITE: number = 1 << 1;
/** IOMMU_FAULT_PERM_EXEC: the request asks for execute access. */
export const IOMMU_FAULT_PERM_EXEC: number = 1 << 2;
/** IOMMU_FAULT_PERM_PRIV: the request is privileged. */
export const IOMMU_FAULT_PERM_PRIV: number = 1 << 3;

/** enum iommu_fault_type IOMMU_FAULT_PAGE_REQ: a page request (recoverable). */
export const IOMMU_FAULT_PAGE_REQ = 1;

/** iommu_fault_page_request.flags: `pasid` is valid. */
export const IOMMU_FAULT_PAGE_REQUEST_PASID_VALID: number = 1 << 0;
/** iommu_fault_page_request.flags: the last request of its page request group. */
export const IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE: number = 1 << 1;
/** iommu_fault_page_request.flags: the response must carry the request's PASID. */
export const IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID: number = 1 << 2;

/** enum iommu_page_response_code: handled, retry the access (PRI "Success"). */
export const IOMMU_PAGE_RESP_SUCCESS = 0;
/** enum iommu_page_response_code: cannot be handled, do not retry (PRI "Invalid Request"). */
export const IOMMU_PAGE_RESP_INVALID = 1;
/** enum iommu_page_response_code: general error, stop requests (PRI "Response Failure"). */
export const IOMMU_PAGE_RESP_FAILURE = 2;

/** struct iommu_fault: a fault of `type` with its page request. */
export interface IommuFault {
  /** enum iommu_fault_type (IOMMU_FAULT_PAGE_REQ). */
  type: number;
  /** The page request. */
  prm: IommuFaultPageRequest;
}

/** struct iopf_fault: a reported fault, as a driver builds it and the core keeps it. */
export class IopfFault {
  /** A fault event holding `fault`. */
  constructor(readonly fault: IommuFault) {}
}

/**
 * struct iopf_group: the requests of one page request group, handed to a domain's
 * `iopf_handler` on the group's last request; answered once with
 * {@linkcode iopf_group_response}, freed with {@linkcode iopf_free_group}.
 */
export class IopfGroup {
  /** The group's requests, oldest first; the last one is {@linkcode IopfGroup.last_fault}. */
  readonly faults: IopfFault[] = [];
  /** The number of requests. */
  fault_count = 0;
  /** Work item for a handler that defers the group (SVA runs it on the IOPF queue). */
  readonly work: WorkStruct = new WorkStruct();
  /** The attach handle whose domain handles the group. */
  attach_handle: IommuAttachHandle | null = null;
  /** Waiting for its response on the device's pending list (the pending_node link). */
  _pending = false;
  /** For the handler's own use (iommufd numbers groups with it). */
  cookie = 0;

  /** Use {@linkcode iommu_report_device_fault}. */
  constructor(readonly fault_param: IommuFaultParam, readonly last_fault: IopfFault) {}
}

/**
 * struct iommu_fault_param: a device's I/O page fault state while it is on an IOPF queue. It is
 * reference counted: the queue holds one reference and every group in flight another, so a group
 * answered after the device left the queue still finds it.
 */
export class IommuFaultParam {
  /** References: the queue's, and one per group in flight. */
  users = 1;
  /** Requests of groups whose last request has not come yet. */
  readonly partial: IopfFault[] = [];
  /** Groups handed to a handler and not answered yet. */
  readonly faults: IopfGroup[] = [];

  /** Use {@linkcode iopf_queue_add_device}. */
  constructor(readonly dev: Device, readonly queue: IopfQueue) {}
}

/** struct iopf_queue: a fault queue an IOMMU driver allocates per IOMMU, with its workqueue. */
export class IopfQueue {
  /** The devices on the queue. */
  readonly devices: IommuFaultParam[] = [];
  /** The workqueue fault handlers may defer groups to (unbound: groups may run in any order). */
  wq!: WorkqueueStruct;
  /** Rate limit of the "iopf ... aborted" warning. */
  readonly rs: RatelimitState = new RatelimitState("iommu_report_device_fault");

  /** Use {@linkcode iopf_queue_alloc}. */
  constructor(readonly kernel: Kernel, readonly name: string) {}
}

/** Mirrors iopf_get_dev_fault_param(): the device's fault state with a reference, or null. */
function iopf_get_dev_fault_param(dev: Device): IommuFaultParam | null {
  const param = dev.iommu instanceof DevIommu ? dev.iommu.fault_param : null;
  if (param === null || param.users === 0) return null;
  param.users++;
  return param;
}

/** Mirrors iopf_put_dev_fault_param(): drops a reference; the last one frees the state. */
function iopf_put_dev_fault_param(param: IommuFaultParam): void {
  if (--param.users === 0) kfree(param.queue.kernel, param);
}

/** Mirrors __iopf_free_group(): frees the group's requests and its reference, not the group. */
function __iopf_free_group(group: IopfGroup): void {
  const kernel = group.fault_param.queue.kernel;
  for (const iopf of group.faults) if (iopf !== group.last_fault) kfree(kernel, iopf);
  group.faults.length = 0;
  iopf_put_dev_fault_param(group.fault_param);
}

/**
 * Mirrors iopf_free_group(): frees a group once its handler answered it (or gave up on it).
 */
export function iopf_free_group(group: IopfGroup): void {
  __iopf_free_group(group);
  kfree(group.fault_param.queue.kernel, group);
}

/** Mirrors report_partial_fault(): keeps a non-last request until its group's last one. */
function report_partial_fault(param: IommuFaultParam, fault: IommuFault): void {
  const iopf = kmalloc(
    param.queue.kernel,
    new IopfFault({ type: fault.type, prm: { ...fault.prm } }),
  );
  param.partial.push(iopf);
}

/**
 * Mirrors iopf_group_alloc(): a group of the last request and the partial requests of its group
 * index, oldest first, put on the device's pending list. When the group cannot be allocated,
 * `abort_group` (Linux's stack copy) is used instead, so the group can still be answered.
 */
function iopf_group_alloc(param: IommuFaultParam, abort_group: IopfGroup): IopfGroup {
  let group: IopfGroup;
  try {
    group = kmalloc(param.queue.kernel, new IopfGroup(param, abort_group.last_fault));
  } catch (e) {
    if (!(e instanceof Errno)) throw e;
    group = abort_group;
  }
  const grpid = group.last_fault.fault.prm.grpid;
  const partial = param.partial;
  for (let i = 0; i < partial.length;) {
    if (partial[i].fault.prm.grpid === grpid) group.faults.push(partial.splice(i, 1)[0]);
    else i++;
  }
  group.faults.push(group.last_fault);
  group._pending = true;
  param.faults.push(group);
  group.fault_count = group.faults.length;
  return group;
}

/**
 * Mirrors find_fault_handler(): the attach handle whose domain handles faults of `evt` — the
 * handle of its PASID, or of the RID (IOMMU_NO_PASID) for a request without one — provided that
 * domain has an `iopf_handler`; else null.
 */
function find_fault_handler(dev: Device, evt: IopfFault): IommuAttachHandle | null {
  const prm = evt.fault.prm;
  const group = iommu_group_get(dev);
  if (group === null) return null;
  const pasid = prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID ? prm.pasid : IOMMU_NO_PASID;
  let handle: IommuAttachHandle;
  try {
    handle = iommu_attach_handle_get(group, pasid, 0);
  } catch (e) {
    if (e instanceof Errno) return null;
    throw e;
  }
  return handle.domain?.iopf_handler ? handle : null;
}

/** Mirrors iopf_error_response(): answers a request nobody can handle with Invalid Request. */
function iopf_error_response(dev: Device, evt: IopfFault): void {
  const prm = evt.fault.prm;
  dev_iommu_ops(dev).page_response!(dev, prm, {
    pasid: prm.pasid,
    grpid: prm.grpid,
    code: IOMMU_PAGE_RESP_INVALID,
  });
}

/**
 * Mirrors iommu_report_device_fault(): what an IOMMU driver calls for each page request it
 * reads (typically from its page-request queue thread), in hardware order; the driver must
 * drop PASID stop markers itself.
 *
 * A request that is not the last of its group is kept (no answer is due for it). The last one
 * makes the group, which goes to the `iopf_handler` of the domain attached with a handle to the
 * request's PASID (or to the RID); that handler answers it, now or from a workqueue. A handler
 * that refuses the group, or a group that cannot be allocated, is answered
 * IOMMU_PAGE_RESP_FAILURE here, with a rate-limited "iopf with pasid N aborted". Every path that
 * returns normally has answered or will answer the group: the driver must not answer it too.
 *
 * Throws EINVAL when no fault-capable domain is attached there, or the device is not on an IOPF
 * queue, after answering the request IOMMU_PAGE_RESP_INVALID itself (for a last request and a
 * partial one alike: the device is stuck either way); ENOMEM when a partial request cannot be
 * kept (no answer: the rest of its group will be answered).
 */
export function iommu_report_device_fault(dev: Device, evt: IopfFault): void {
  const fault = evt.fault;
  const handle = find_fault_handler(dev, evt);
  const param = handle === null ? null : iopf_get_dev_fault_param(dev);
  if (handle !== null && param === null) {
    // Linux WARNs: the driver attached a fault-capable domain without iopf_queue_add_device().
    dev_warn(dev, "fault capable domain attached but no iopf_param");
  }
  if (param === null) {
    if (fault.type === IOMMU_FAULT_PAGE_REQ) iopf_error_response(dev, evt);
    throw new Errno(
      "EINVAL",
      `${dev.name}: bad iopf (no fault handler for PASID ${fault.prm.pasid})`,
    );
  }

  if (!(fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE)) {
    try {
      report_partial_fault(param, fault);
    } finally {
      iopf_put_dev_fault_param(param);
    }
    return;
  }

  // The group takes over the reference; its response and iopf_free_group() drop it.
  const abort_group = new IopfGroup(
    param,
    new IopfFault({ type: fault.type, prm: { ...fault.prm } }),
  );
  const group = iopf_group_alloc(param, abort_group);
  if (group !== abort_group) {
    group.attach_handle = handle;
    try {
      handle!.domain!.iopf_handler!(group);
      return;
    } catch (e) {
      if (!(e instanceof Errno)) throw e;
    }
  }
  dev_warn_ratelimited(dev, param.queue.rs, `iopf with pasid ${fault.prm.pasid} aborted`);
  iopf_group_response(group, IOMMU_PAGE_RESP_FAILURE);
  if (group === abort_group) __iopf_free_group(group);
  else iopf_free_group(group);
}

/**
 * Mirrors iopf_group_response(): answers the group with `status` (IOMMU_PAGE_RESP_*) through the
 * driver's `page_response`, once: a group already answered (by iopf_queue_remove_device(), say)
 * is left alone.
 */
export function iopf_group_response(group: IopfGroup, status: number): void {
  const param = group.fault_param;
  if (!group._pending) return;
  const prm = group.last_fault.fault.prm;
  const dev = param.dev;
  dev_iommu_ops(dev).page_response!(dev, prm, { pasid: prm.pasid, grpid: prm.grpid, code: status });
  group._pending = false;
  param.faults.splice(param.faults.indexOf(group), 1);
}

/**
 * Mirrors iopf_queue_flush_dev(): when it returns, every group of the queue handed to its
 * workqueue has been handled. A driver calls it when it detaches a PASID, after draining its
 * hardware queue, so no late fault reaches the next user of the PASID. ENODEV when `dev` is not
 * on a queue (Linux WARNs).
 */
export function iopf_queue_flush_dev(dev: Device): void {
  const param = dev.iommu instanceof DevIommu ? dev.iommu.fault_param : null;
  if (param === null) throw new Errno("ENODEV", `${dev.name} is not on an IOPF queue`);
  flush_workqueue(param.queue.wq);
}

/**
 * Mirrors iopf_queue_discard_partial(): forgets every partial request of the queue's devices
 * (their last requests were lost when the hardware queue overflowed).
 */
export function iopf_queue_discard_partial(queue: IopfQueue): void {
  for (const param of queue.devices) {
    for (const iopf of param.partial) kfree(queue.kernel, iopf);
    param.partial.length = 0;
  }
}

/**
 * Mirrors iopf_queue_add_device(): puts `dev` on `queue`, so its faults can be reported. ENODEV
 * when the IOMMU driver cannot answer page requests (`page_response`), EBUSY when the device is
 * on a queue already, ENOMEM.
 */
export function iopf_queue_add_device(queue: IopfQueue, dev: Device): void {
  const ops = dev_iommu_ops(dev);
  if (!ops.page_response) throw new Errno("ENODEV", `${dev.name}: the IOMMU cannot answer faults`);
  const iommu = dev.iommu as DevIommu;
  if (iommu.fault_param !== null) throw new Errno("EBUSY", `${dev.name} is on an IOPF queue`);
  const param = kmalloc(queue.kernel, new IommuFaultParam(dev, queue));
  queue.devices.push(param);
  iommu.fault_param = param;
}

/**
 * Mirrors iopf_queue_remove_device(): takes `dev` off `queue`. Its partial requests are dropped
 * and the groups still waiting for an answer are answered IOMMU_PAGE_RESP_INVALID and freed.
 * The caller has stopped the device's page requests and drained its hardware queue and the
 * IOPF workqueue first; it may then disable PRI on the device. EINVAL when `dev` is not on
 * `queue` (Linux WARNs).
 */
export function iopf_queue_remove_device(queue: IopfQueue, dev: Device): void {
  const iommu = dev.iommu instanceof DevIommu ? dev.iommu : null;
  const param = iommu?.fault_param ?? null;
  if (param === null || param.queue !== queue) {
    throw new Errno("EINVAL", `${dev.name} is not on IOPF queue ${queue.name}`);
  }
  for (const iopf of param.partial) kfree(queue.kernel, iopf);
  param.partial.length = 0;
  const ops = dev_iommu_ops(dev);
  while (param.faults.length !== 0) {
    const group = param.faults.shift()!;
    const prm = group.last_fault.fault.prm;
    ops.page_response!(dev, prm, {
      pasid: prm.pasid,
      grpid: prm.grpid,
      code: IOMMU_PAGE_RESP_INVALID,
    });
    group._pending = false;
    iopf_free_group(group);
  }
  queue.devices.splice(queue.devices.indexOf(param), 1);
  iommu!.fault_param = null;
  iopf_put_dev_fault_param(param);
}

/**
 * Mirrors iopf_queue_alloc(): a fault queue with an unbound workqueue `iopf_queue/<name>` (the
 * requests of a group are ordered; groups need not be). ENOMEM.
 *
 * DIVERGENCE: takes the kernel (Linux's allocates from the one global heap).
 */
export function iopf_queue_alloc(kernel: Kernel, name: string): IopfQueue {
  const queue = kmalloc(kernel, new IopfQueue(kernel, name));
  try {
    queue.wq = alloc_workqueue(kernel, `iopf_queue/${name}`, WQ_UNBOUND, 0);
  } catch (e) {
    kfree(kernel, queue);
    throw e;
  }
  return queue;
}

/**
 * Mirrors iopf_queue_free(): takes every device off the queue (as iopf_queue_remove_device()),
 * drains and destroys its workqueue, frees it.
 */
export function iopf_queue_free(queue: IopfQueue): void {
  while (queue.devices.length !== 0) iopf_queue_remove_device(queue, queue.devices[0].dev);
  destroy_workqueue(queue.wq);
  kfree(queue.kernel, queue);
}
