/**
 * The page-request series of the RISC-V IOMMU driver: what it adds to
 * drivers/iommu/riscv/iommu.c, through the base driver's feature hooks.
 *
 * - The page-request queue (RISC-V IOMMU spec v1.0, §3.3 "Page-request queue"), allocated and
 *   enabled when capabilities.ATS ("page request queue enabled"), and its thread
 *   `riscv_iommu_priq_process()`: each record becomes an `iopf_fault` for
 *   `iommu_report_device_fault()`; stop markers are dropped; pqof/pqmf are reported and cleared,
 *   and an overflow discards the partial groups.
 * - `.page_response`: ATS.PRGR on the command queue (Success 0000b, Invalid Request 0001b,
 *   Response Failure 1111b; PASID when the function requires it).
 * - ATS, PRI and PASID enabled on PCI functions at probe (EN_ATS, EN_PRI, PRPR in the device
 *   context template), and ATS.INVAL after every IOTLB and directory invalidation of their
 *   contexts (§6.3.7 "Device Address Translation Cache invalidations").
 * - A function that never completes an ATS.INVAL (the IOFENCE.C behind it ends in cmd_to, §3.1.2
 *   "IOMMU Command-queue Fence commands"): in the sync that met the timeout, before its caller
 *   frees anything, the function is found (from the command ring, with ATS.INVAL and IOFENCE.C
 *   pairs when the fence covered several) and loses ATS and PRI, IOMMU side first: EN_ATS off in
 *   its context, so its Translated requests are refused.
 * - A process directory (PD8/PD17/PD20 by capability, §2.2) for a device's first PASID, with the
 *   RID's translation moved to process_id 0 (DPE); SVA domains whose first stage is the process's
 *   page table, attached to PASIDs (`set_dev_pasid`) and detached through the blocking domain,
 *   kept coherent with the process's unmaps by an MMU notifier.
 *
 * Upstream state tracked: the posted "[PATCH v1] iommu/riscv: Add page request queue and IOPF
 * support" (bingyu.xian, 17 Jun 2026) for the queue, its thread and `.page_response`, with the
 * review's and the current core's rules applied (the core answers bad faults itself; stop
 * markers are the driver's to drop); ATS, PRI, PASID and the process directory after Tomasz
 * Jeznach's riscv_iommu.next tree; SVA after the current core (`domain_alloc_sva`, the blocking
 * domain's `set_dev_pasid`, `arch_invalidate_secondary_tlbs`); the recovery from an ATS
 * invalidation timeout has no upstream counterpart. Departures are marked `DIVERGENCE:`.
 *
 * @module
 */
import {
  dev_err,
  dev_info,
  dev_is_pci,
  dev_name,
  dev_warn,
  dev_warn_ratelimited,
  type Device,
  Errno,
  IOMMU_FWSPEC_PCI_RC_ATS,
  kfree,
  kmalloc,
  type MmStruct,
  mmu_notifier_register,
  mmu_notifier_unregister,
  MmuNotifier,
  PAGE_SHIFT,
  pci_ats_supported,
  pci_disable_ats,
  pci_disable_pasid,
  pci_disable_pri,
  pci_enable_ats,
  pci_enable_pasid,
  pci_enable_pri,
  pci_pasid_features,
  pci_prg_resp_pasid_required,
  pci_pri_supported,
  pci_reset_pri,
  SATP_MODE_39,
  SATP_MODE_48,
  to_pci_dev,
} from "@iommu-lab/kernel";
import {
  dev_iommu_priv_get,
  type DevIommu,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  iommu_get_domain_for_dev,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  iommu_report_device_fault,
  type IommuDomain,
  type IommuDomainOps,
  type IommuFaultPageRequest,
  type IommuPageResponse,
  iopf_queue_add_device,
  iopf_queue_alloc,
  iopf_queue_discard_partial,
  iopf_queue_flush_dev,
  iopf_queue_free,
  iopf_queue_remove_device,
  IopfFault,
} from "@iommu-lab/iommu";
import {
  FIELD_GET,
  FIELD_PREP,
  RISCV_IOMMU_CAPABILITIES_ATS,
  RISCV_IOMMU_CAPABILITIES_PD17,
  RISCV_IOMMU_CAPABILITIES_PD20,
  RISCV_IOMMU_CAPABILITIES_PD8,
  RISCV_IOMMU_CAPABILITIES_SV39,
  RISCV_IOMMU_CAPABILITIES_SV48,
  RISCV_IOMMU_CMD_ATS_DSEG,
  RISCV_IOMMU_CMD_ATS_DSV,
  RISCV_IOMMU_CMD_ATS_FUNC_INVAL,
  riscv_iommu_cmd_ats_inval,
  RISCV_IOMMU_CMD_ATS_OPCODE,
  RISCV_IOMMU_CMD_ATS_RID,
  riscv_iommu_cmd_ats_set_all,
  riscv_iommu_cmd_ats_set_devid,
  riscv_iommu_cmd_ats_set_pid,
  riscv_iommu_cmd_ats_set_range,
  RISCV_IOMMU_CMD_FUNC,
  riscv_iommu_cmd_inval_set_pscid,
  riscv_iommu_cmd_inval_vma,
  riscv_iommu_cmd_iodir_inval_ddt,
  riscv_iommu_cmd_iodir_inval_pdt,
  riscv_iommu_cmd_iodir_set_did,
  riscv_iommu_cmd_iodir_set_pid,
  RISCV_IOMMU_CMD_IOFENCE_OPCODE,
  RISCV_IOMMU_CMD_OPCODE,
  riscv_iommu_cmd_prgr,
  riscv_iommu_cmd_prgr_set_devid,
  riscv_iommu_cmd_prgr_set_pid,
  riscv_iommu_cmd_prgr_set_response,
  riscv_iommu_dc,
  RISCV_IOMMU_DC_FSC_MODE,
  RISCV_IOMMU_DC_FSC_PDTP_MODE_PD17,
  RISCV_IOMMU_DC_FSC_PDTP_MODE_PD20,
  RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8,
  RISCV_IOMMU_DC_FSC_PPN,
  RISCV_IOMMU_DC_TC_DPE,
  RISCV_IOMMU_DC_TC_EN_ATS,
  RISCV_IOMMU_DC_TC_EN_PRI,
  RISCV_IOMMU_DC_TC_PDTV,
  RISCV_IOMMU_DC_TC_PRPR,
  RISCV_IOMMU_DC_TC_V,
  RISCV_IOMMU_INTR_PQ,
  RISCV_IOMMU_IPSR_PIP,
  riscv_iommu_pc,
  RISCV_IOMMU_PC_FSC_MODE,
  RISCV_IOMMU_PC_FSC_PPN,
  RISCV_IOMMU_PC_SIZE,
  RISCV_IOMMU_PC_TA_PSCID,
  RISCV_IOMMU_PC_TA_V,
  RISCV_IOMMU_PDTE_PPN,
  RISCV_IOMMU_PDTE_V,
  RISCV_IOMMU_PQ_RECORD_SIZE,
  RISCV_IOMMU_PQCSR_PQMF,
  RISCV_IOMMU_PQCSR_PQOF,
  RISCV_IOMMU_REG_IPSR,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
} from "@iommu-lab/riscv-iommu/bits";
import {
  dev_to_iommu,
  riscv_iommu_bond_link,
  riscv_iommu_bond_unlink,
  riscv_iommu_cmd_send,
  riscv_iommu_cmd_sync,
  riscv_iommu_domain_alloc_pscid,
  riscv_iommu_free_paging_domain,
  riscv_iommu_get_dc,
  riscv_iommu_get_device,
  riscv_iommu_iodir_update,
  RISCV_IOMMU_IOTINVAL_TIMEOUT,
  riscv_iommu_iotlb_inval,
  riscv_iommu_queue_consume,
  riscv_iommu_queue_release,
  riscv_iommu_read_dc,
  type RiscvIommuBond,
  type RiscvIommuDc,
  type RiscvIommuFeature,
  type RiscvIommuGatherRange,
  type RiscvIommuInfo,
} from "@iommu-lab/riscv-iommu/internal";
import {
  riscv_iommu_readl,
  riscv_iommu_writel,
  type RiscvIommuDevice,
  RiscvIommuDomain,
  type RiscvIommuQueue,
} from "@iommu-lab/riscv-iommu";
import { RISCV_IOMMU_IOPF, RiscvIommuEndpoint, RiscvIommuIopfDevice } from "./iommu_h.ts";

/** Page-request queue entries asked for by default (the seed's RISCV_IOMMU_DEF_PQ_COUNT). */
export const RISCV_IOMMU_DEF_PQ_COUNT = 4096;
/** Outstanding page requests allocated to each PRI function, as riscv_iommu.next does. */
export const RISCV_IOMMU_PRI_REQUESTS = 32;

/** The series' data on `iommu`, or null when the feature does not run there. */
function _iopf(iommu: RiscvIommuDevice): RiscvIommuIopfDevice | null {
  return (iommu.feature_data.get(RISCV_IOMMU_IOPF) as RiscvIommuIopfDevice | undefined) ?? null;
}

/** The series' state of a probed device (set by `riscv_iommu_enable_pdev()`). */
function _ep(info: RiscvIommuInfo): RiscvIommuEndpoint {
  return info.feature_data.get(RISCV_IOMMU_IOPF) as RiscvIommuEndpoint;
}

function _dev_ep(dev: Device): RiscvIommuEndpoint {
  return _ep(dev_iommu_priv_get<RiscvIommuInfo>(dev));
}

/*
 * The page-request queue (RISC-V IOMMU spec v1.0, §3.3).
 */

/**
 * Mirrors riscv_iommu_handle_pq() of the seed: turns a page-request record (its header and
 * payload doublewords as 32-bit halves) into an `iopf_fault` and reports it. A stop marker (PASID, L=1, R=W=0) is dropped (the core does not
 * take them). A record of a device the IOMMU does not know (it left meanwhile) is logged and
 * dropped. When the report fails the core has answered the request already (or none is due):
 * the driver only logs, and never answers a second time.
 */
export function riscv_iommu_handle_pq(
  iommu: RiscvIommuDevice,
  hdrLo: number,
  hdrHi: number,
  payLo: number,
  payHi: number,
): void {
  const iopf = _iopf(iommu)!;
  const pv = (hdrHi & 1) !== 0;
  const read = (payLo & 1) !== 0;
  const write = (payLo & 2) !== 0;
  const last = (payLo & 4) !== 0;
  // DIVERGENCE: the seed reports stop markers too; the core requires drivers to drop them (as
  // riscv_iommu.next does).
  if (pv && last && !read && !write) return;

  const devid = hdrHi >>> 8;
  const dev = riscv_iommu_get_device(iommu, devid);
  if (dev === null) {
    dev_warn_ratelimited(
      iommu.dev,
      iopf.rs,
      `page request for unknown devid 0x${devid.toString(16)}`,
    );
    return;
  }
  const ep = _dev_ep(dev);
  let flags = last ? IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE : 0;
  let perm = (read ? IOMMU_FAULT_PERM_READ : 0) | (write ? IOMMU_FAULT_PERM_WRITE : 0);
  let pasid = 0;
  if (pv) {
    pasid = hdrLo >>> 12;
    flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
    // DIVERGENCE: the seed sets NEEDS_PASID on every PASID request; only a function whose PRI
    // status asks for it gets the PASID back (PCIe's "PRG Response PASID Required").
    if (ep.pri_pasid_required) flags |= IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
    if (hdrHi & 4) perm |= IOMMU_FAULT_PERM_EXEC;
    if (hdrHi & 2) perm |= IOMMU_FAULT_PERM_PRIV;
  }
  const prm: IommuFaultPageRequest = {
    flags,
    pasid,
    grpid: (payLo >>> 3) & 0x1ff,
    perm,
    addr: payHi * 2 ** 32 + ((payLo & ~0xfff) >>> 0),
    // The requester, as the seed keeps it, for the response.
    private_data: [devid, 0],
  };
  try {
    iommu_report_device_fault(dev, new IopfFault({ type: IOMMU_FAULT_PAGE_REQ, prm }));
  } catch (e) {
    if (!(e instanceof Errno)) throw e;
    dev_warn_ratelimited(iommu.dev, iopf.rs, `page request fault report failed: ${-e.errno}`);
  }
}

/**
 * Mirrors riscv_iommu_priq_process(), the page-request queue's threaded handler: clears
 * ipsr.PIP, reports every record, hands the slots back, then reports and clears pqmf/pqof. After
 * an overflow the IOMMU dropped requests, possibly the last ones of groups: their partial
 * requests are discarded (iopf_queue_discard_partial()).
 */
export function riscv_iommu_priq_process(iommu: RiscvIommuDevice, queue: RiscvIommuQueue): void {
  const iopf = _iopf(iommu)!;
  const mem = iommu.dev.kernel.mem;
  riscv_iommu_writel(iommu, RISCV_IOMMU_REG_IPSR, RISCV_IOMMU_IPSR_PIP);
  for (
    let cnt = riscv_iommu_queue_consume(queue);
    cnt > 0;
    cnt = riscv_iommu_queue_consume(queue)
  ) {
    for (let i = 0; i < cnt; i++) {
      const pa = queue.phys + ((queue.head + i) & queue.mask) * RISCV_IOMMU_PQ_RECORD_SIZE;
      mem.load64(pa);
      const hdrLo = mem.lo;
      const hdrHi = mem.hi;
      mem.load64(pa + 8);
      riscv_iommu_handle_pq(iommu, hdrLo, hdrHi, mem.lo, mem.hi);
    }
    riscv_iommu_queue_release(queue, cnt);
  }

  const ctrl = riscv_iommu_readl(iommu, queue.qcr);
  if (ctrl & (RISCV_IOMMU_PQCSR_PQMF | RISCV_IOMMU_PQCSR_PQOF)) {
    riscv_iommu_writel(iommu, queue.qcr, ctrl);
    // DIVERGENCE: the seed only clears pqof; the core asks the driver to drop the partial
    // requests whose last one the overflow may have lost.
    if (ctrl & RISCV_IOMMU_PQCSR_PQOF) iopf_queue_discard_partial(iopf.pq_work);
    dev_warn(
      iommu.dev,
      `Queue #${queue.qid} error; memory fault:${ctrl & RISCV_IOMMU_PQCSR_PQMF ? 1 : 0} overflow:${
        ctrl & RISCV_IOMMU_PQCSR_PQOF ? 1 : 0
      }`,
    );
  }
}

/**
 * Mirrors riscv_iommu_page_response() of the seed, the `.page_response` op: ATS.PRGR to the
 * requester of the group, with its group index and the response code (Success 0000b, Invalid
 * Request 0001b, Response Failure 1111b), and the PASID when the request had one and the
 * function requires it in responses. Only a response to the last request of a group goes out.
 */
export function riscv_iommu_page_response(
  dev: Device,
  evt: IommuFaultPageRequest,
  msg: IommuPageResponse,
): void {
  const iommu = dev_to_iommu(dev);
  // The op is the driver instance's: an IOMMU without the series has no PQ, so no request.
  const iopf = _iopf(iommu);
  if (iopf === null) return;
  // DIVERGENCE: the seed answers every call. A PRG Response retires the whole group (PCIe PRI),
  // and the core answers each request it cannot handle, the group's earlier ones included: only
  // the answer to the last request is sent, or the function sees responses to a group it no
  // longer waits for (UPRGI).
  if (!(evt.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE)) return;
  const cmd = iopf.cmd;
  const code = msg.code === IOMMU_PAGE_RESP_SUCCESS
    ? 0b0000
    : msg.code === IOMMU_PAGE_RESP_INVALID
    ? 0b0001
    : 0b1111;
  riscv_iommu_cmd_prgr(cmd);
  riscv_iommu_cmd_prgr_set_response(cmd, msg.grpid, code);
  riscv_iommu_cmd_prgr_set_devid(cmd, evt.private_data?.[0] ?? dev.fwspec!.ids[0]);
  // DIVERGENCE: the seed echoes the PASID of every PASID request; PCIe wants it only where the
  // function requires it (NEEDS_PASID).
  const withPasid = IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
  if ((evt.flags & withPasid) === withPasid) riscv_iommu_cmd_prgr_set_pid(cmd, msg.pasid);
  riscv_iommu_cmd_send(iommu, cmd);
}

/*
 * ATS (RISC-V IOMMU spec v1.0, §6.3.7): the devices' caches after the IOMMU's own.
 */

/**
 * Queues ATS.INVAL to requester `devid`, for `pasid` (-1: requests without a PASID), of the range
 * `gather` changed (all of it without levels or with an empty range), in the PCIe encoding: the
 * smallest naturally aligned block holding the range. Allocates nothing: it runs on the unmap
 * path.
 */
function riscv_iommu_ats_inval(
  iommu: RiscvIommuDevice,
  devid: number,
  pasid: number,
  gather: RiscvIommuGatherRange,
): void {
  const cmd = _iopf(iommu)!.cmd;
  const start = gather.startPfn;
  const end = gather.endPfn;
  let pages = 1;
  while (pages < 2 ** 52 && Math.floor(start / pages) !== Math.floor((end - 1) / pages)) {
    pages *= 2;
  }
  riscv_iommu_cmd_ats_inval(cmd);
  riscv_iommu_cmd_ats_set_devid(cmd, devid);
  if (pasid >= 0) riscv_iommu_cmd_ats_set_pid(cmd, pasid);
  if (gather.leafLevels + gather.tableLevels === 0 || !(end > start) || pages >= 2 ** 52) {
    riscv_iommu_cmd_ats_set_all(cmd);
  } else {
    riscv_iommu_cmd_ats_set_range(cmd, Math.floor(start / pages) * pages * 4096, pages * 4096);
  }
  riscv_iommu_cmd_send(iommu, cmd);
}

const _ALL: RiscvIommuGatherRange = { startPfn: 0, endPfn: 0, leafLevels: 0, tableLevels: 0 };

/**
 * The `iotlbInval` hook: ATS.INVAL of what the IOTLB invalidation of `domain` covered, to a
 * device attached with ATS enabled — of its PASID for an SVA domain, else of its requests
 * without one.
 */
function riscv_iommu_iotlb_inval_ats(
  bond: RiscvIommuBond,
  domain: RiscvIommuDomain,
  gather: RiscvIommuGatherRange,
): void {
  if (!_dev_ep(bond.dev).ats_enabled) return;
  const pasid = domain instanceof RiscvIommuSvaDomain ? domain.pasid : -1;
  const ids = bond.dev.fwspec!.ids;
  for (let i = 0; i < ids.length; i++) riscv_iommu_ats_inval(bond.iommu, ids[i], pasid, gather);
}

/** The tc bits of ATS and PRI, which a function whose ATS is off must not have (spec §2.1.4). */
const _TC_ATS = RISCV_IOMMU_DC_TC_EN_ATS | RISCV_IOMMU_DC_TC_EN_PRI | RISCV_IOMMU_DC_TC_PRPR;

/**
 * The `iodirInval` hook: context `devid` of an ATS device changed: drop its whole ATC. A device
 * whose ATS a timeout took away meanwhile (riscv_iommu_ats_disable()) may get EN_ATS back from an
 * attach that composed its context before (the timeout came in the sync of its first phase): it
 * is taken out again here, in place, with an IODIR.INVAL_DDT before the change's IOFENCE.C.
 */
function riscv_iommu_iodir_inval_ats(iommu: RiscvIommuDevice, dev: Device, devid: number): void {
  if (_dev_ep(dev).ats_enabled) {
    riscv_iommu_ats_inval(iommu, devid, -1, _ALL);
    return;
  }
  const mem = iommu.dev.kernel.mem;
  const tc = riscv_iommu_get_dc(iommu, devid) + riscv_iommu_dc.tc;
  if ((mem.read64(tc) & RISCV_IOMMU_DC_TC_EN_ATS) === 0n) return;
  mem.write64(tc, mem.read64(tc) & ~_TC_ATS);
  const cmd = _iopf(iommu)!.cmd;
  riscv_iommu_cmd_iodir_inval_ddt(cmd);
  riscv_iommu_cmd_iodir_set_did(cmd, devid);
  riscv_iommu_cmd_send(iommu, cmd);
}

/*
 * A function that never completes an ATS invalidation (RISC-V IOMMU spec v1.0, §3.1.2 "IOMMU
 * Command-queue Fence commands": the IOFENCE.C behind it times out with cmd_to, cqh on it; §3.1.4
 * "IOMMU PCIe ATS commands"): its ATC keeps what was unmapped, so its ATS goes.
 */

/**
 * The devices the ATS.INVALs queued between the IOFENCE.C before command `index` and it were sent
 * to (only functions with ATS enabled get one), read back from the command ring: those an
 * IOFENCE.C timing out at `index` may be waiting for. Slots more than a ring behind the producer
 * may already hold newer commands, so the search stops there too (the driver never queues that
 * much between two fences).
 */
function _ats_inval_targets(iommu: RiscvIommuDevice, index: number): Device[] {
  const q = iommu.cmdq;
  const mem = iommu.dev.kernel.mem;
  const out: Device[] = [];
  for (let i = (index - 1) >>> 0; ((q.prod - i) >>> 0) <= q.mask + 1; i = (i - 1) >>> 0) {
    const d0 = mem.read64(q.phys + (i & q.mask) * 16);
    const op = Number(FIELD_GET(RISCV_IOMMU_CMD_OPCODE, d0));
    if (op === RISCV_IOMMU_CMD_IOFENCE_OPCODE) break;
    if (
      op !== RISCV_IOMMU_CMD_ATS_OPCODE ||
      Number(FIELD_GET(RISCV_IOMMU_CMD_FUNC, d0)) !== RISCV_IOMMU_CMD_ATS_FUNC_INVAL
    ) {
      continue;
    }
    const rid = Number(FIELD_GET(RISCV_IOMMU_CMD_ATS_RID, d0));
    const seg = d0 & RISCV_IOMMU_CMD_ATS_DSV ? Number(FIELD_GET(RISCV_IOMMU_CMD_ATS_DSEG, d0)) : 0;
    const dev = riscv_iommu_get_device(iommu, seg << 16 | rid);
    if (dev !== null && !out.includes(dev)) out.push(dev);
  }
  return out;
}

/**
 * The `cmdTimeout` hook: the IOFENCE.C at command `index` timed out, so an ATS.INVAL before it
 * got no Invalidation Completion and the function it went to may still use translations that no
 * longer exist — pages the caller, still waiting in its sync, is about to free. When only one
 * function was sent ATS.INVALs since the previous IOFENCE.C, it is the one; with several, each
 * gets an ATS.INVAL of its whole ATC and an IOFENCE.C of its own, as spec §3.1.4 "IOMMU PCIe ATS
 * commands" suggests (pairs "to identify the device that caused the timeout"): a healthy one
 * completes it (its ATC is then clean), and the pair of the broken one times out again and comes
 * back here with it alone. The broken function's ATS is then turned off
 * (riscv_iommu_ats_disable()); the others keep theirs.
 *
 * DIVERGENCE: upstream has no recovery (the CQ thread reports cmd_to and the caller goes on).
 * Linux's other drivers: VT-d's qi_check_fault() clears ITE and resubmits the aborted descriptors
 * (-EAGAIN), giving up (-ETIMEDOUT) only when the device is gone; SMMUv3's
 * arm_smmu_cmdq_skip_err() repeats the CMD_SYNC on an ATC invalidation timeout; AMD logs
 * IOTLB_INV_TIMEOUT and the cure is a PCI quirk (quirk_no_ats()). None stops the function from
 * using a stale ATC entry. This follows the review of the SMMUv3 "Recover ATC invalidate timeouts"
 * series (March 2026): block the device's translated requests in the context that issued the
 * invalidation, before it goes on; find the device by reissuing per-device invalidations with a
 * sync each; do not reset the device from the IOMMU driver (its own driver owns that).
 */
function riscv_iommu_ats_inval_timeout(iommu: RiscvIommuDevice, index: number): void {
  const devs = _ats_inval_targets(iommu, index);
  if (devs.length === 1) {
    riscv_iommu_ats_disable(iommu, devs[0]);
    return;
  }
  for (const dev of devs) {
    for (const id of dev.fwspec!.ids) riscv_iommu_ats_inval(iommu, id, -1, _ALL);
    riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  }
}

/**
 * Takes ATS (and PRI) away from a function whose ATC cannot be trusted, IOMMU side first, since
 * the function may not honour its own ATS Enable any more (the order of spec §6.6 "Guidelines for
 * enabling and disabling ATS and/or PRI", device first, is for a device that works): EN_ATS,
 * EN_PRI and PRPR go from its context template (every later attach keeps them off; §2.1.4
 * "Device-context configuration checks" forbids EN_PRI without EN_ATS, PRPR without EN_PRI) and
 * from its device contexts, rewritten in place with IODIR.INVAL_DDT, IOTINVAL and IOFENCE.C
 * (§6.3.1 "Changing device directory table entry"). From then on the IOMMU treats the function's
 * Translated requests and ATS Translation Requests as unsupported (§2.1.3 "Device-context
 * fields", tc.EN_ATS; "Transaction type disallowed", cause 260). Then PRI and ATS are disabled in
 * its configuration space: a function may cache translations only while its ATS Enable is set
 * (PCIe ATS Control register). No ATS.INVAL goes to it again (it would only time out). One error
 * line names it; PASID stays, and its untranslated DMA goes on through the IOMMU.
 */
function riscv_iommu_ats_disable(iommu: RiscvIommuDevice, dev: Device): void {
  const info = dev_iommu_priv_get<RiscvIommuInfo>(dev);
  const ep = _ep(info);
  const pri = ep.pri_enabled;
  ep.ats_enabled = false;
  ep.pri_enabled = false;
  info.dc.tc &= ~_TC_ATS;
  const dc = riscv_iommu_read_dc(iommu, dev);
  dc.tc &= ~_TC_ATS;
  riscv_iommu_iodir_update(iommu, dev, dc);
  const pdev = to_pci_dev(dev);
  if (pri) pci_disable_pri(pdev);
  pci_disable_ats(pdev);
  dev_err(
    iommu.dev,
    `${dev_name(dev)} (devid 0x${
      dev.fwspec!.ids[0].toString(16)
    }): ATS invalidation timed out; ATS${
      pri ? " and PRI" : ""
    } disabled, translated requests blocked`,
  );
}

/*
 * PCIe ATS, PRI and PASID of the endpoints.
 */

/**
 * Mirrors riscv_iommu_enable_pdev() of riscv_iommu.next, the `probeDevice` hook: on a PCI
 * function behind a root complex with ATS, enables PASID (before ATS, as PCIe asks) when the
 * IOMMU has a process directory, ATS (4 KiB translations) and PRI (reset, then
 * RISCV_IOMMU_PRI_REQUESTS outstanding requests), and sets EN_ATS, EN_PRI and, when the function
 * wants the PASID in PRG responses, PRPR in the device's context template. A capability that does
 * not come up is left off.
 */
function riscv_iommu_enable_pdev(iommu: RiscvIommuDevice, dev: Device, info: RiscvIommuInfo): void {
  const ep = kmalloc(dev.kernel, new RiscvIommuEndpoint());
  info.feature_data.set(RISCV_IOMMU_IOPF, ep);
  if (!dev_is_pci(dev) || !(dev.fwspec!.flags & IOMMU_FWSPEC_PCI_RC_ATS)) return;
  if (!pci_ats_supported(dev)) return;
  const tryEnable = (fn: () => void): boolean => {
    try {
      fn();
      return true;
    } catch (e) {
      if (!(e instanceof Errno)) throw e;
      dev_warn(dev, `cannot enable ${e.message}`);
      return false;
    }
  };
  if (dev.pasidCap !== 0 && iommu.iommu.max_pasids > 0) {
    ep.pasid_enabled = tryEnable(() => pci_enable_pasid(dev, pci_pasid_features(dev)));
  }
  ep.ats_enabled = tryEnable(() => pci_enable_ats(dev, PAGE_SHIFT));
  if (!ep.ats_enabled) return;
  info.dc.tc |= RISCV_IOMMU_DC_TC_EN_ATS;
  if (!pci_pri_supported(dev)) return;
  ep.pri_enabled = tryEnable(() => {
    pci_reset_pri(dev);
    pci_enable_pri(dev, RISCV_IOMMU_PRI_REQUESTS);
  });
  if (!ep.pri_enabled) return;
  info.dc.tc |= RISCV_IOMMU_DC_TC_EN_PRI;
  ep.pri_pasid_required = pci_prg_resp_pasid_required(dev);
  if (ep.pri_pasid_required) info.dc.tc |= RISCV_IOMMU_DC_TC_PRPR;
}

/**
 * Mirrors riscv_iommu_disable_pdev(), the `releaseDevice` hook: the device left (its contexts
 * are invalid, its PASIDs detached): PRI, ATS and PASID off on the function, the process
 * directory freed.
 */
function riscv_iommu_disable_pdev(iommu: RiscvIommuDevice, dev: Device, info: RiscvIommuInfo) {
  const ep = _ep(info);
  if (ep.iopf_refcount > 0) {
    // Linux WARNs: a fault-capable domain outlived the device's PASIDs.
    iopf_queue_remove_device(_iopf(iommu)!.pq_work, dev);
    ep.iopf_refcount = 0;
  }
  if (dev_is_pci(dev)) {
    if (ep.pri_enabled) pci_disable_pri(dev);
    if (ep.ats_enabled) pci_disable_ats(dev);
    if (ep.pasid_enabled) pci_disable_pasid(dev);
  }
  for (const pa of ep.pdt_pages) dev.kernel.pages.free(pa, 0);
  info.feature_data.delete(RISCV_IOMMU_IOPF);
  kfree(dev.kernel, ep);
}

/**
 * Mirrors the IOPF enabling of a fault-capable domain (intel_iommu_enable_iopf()'s twin): the
 * first one attached puts the device on the IOMMU's IOPF queue. ENODEV without PRI.
 */
function riscv_iommu_iopf_enable(iommu: RiscvIommuDevice, dev: Device, ep: RiscvIommuEndpoint) {
  if (!ep.pri_enabled) throw new Errno("ENODEV", `${dev.name}: no PRI, no I/O page faults`);
  if (ep.iopf_refcount === 0) iopf_queue_add_device(_iopf(iommu)!.pq_work, dev);
  ep.iopf_refcount++;
}

/** Undoes {@linkcode riscv_iommu_iopf_enable}: the last one takes the device off the queue. */
function riscv_iommu_iopf_disable(iommu: RiscvIommuDevice, dev: Device, ep: RiscvIommuEndpoint) {
  if (--ep.iopf_refcount === 0) iopf_queue_remove_device(_iopf(iommu)!.pq_work, dev);
}

/*
 * The process directory (RISC-V IOMMU spec v1.0, §2.2 "Process-Directory-Table (PDT)").
 */

/**
 * pdtp.MODE for a device tagging `max` PASIDs: the smallest of PD8 (256), PD17 and PD20 the IOMMU
 * has that holds them all, else its largest.
 */
function _pdt_mode(iommu: RiscvIommuDevice, max: number): number {
  const modes: [bigint, number, number][] = [
    [RISCV_IOMMU_CAPABILITIES_PD8, RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8, 2 ** 8],
    [RISCV_IOMMU_CAPABILITIES_PD17, RISCV_IOMMU_DC_FSC_PDTP_MODE_PD17, 2 ** 17],
    [RISCV_IOMMU_CAPABILITIES_PD20, RISCV_IOMMU_DC_FSC_PDTP_MODE_PD20, 2 ** 20],
  ];
  const have = modes.filter(([cap]) => (iommu.caps & cap) !== 0n);
  return (have.find(([, , n]) => n >= max) ?? have[have.length - 1])[1];
}

/**
 * Mirrors riscv_iommu_get_pc() of riscv_iommu.next: the physical address of the process context
 * of `pasid` in the device's directory, walking PDI[2] and PDI[1] (bits 19:17, 16:8) as the mode
 * has them and allocating missing directory pages (ENOMEM). A new non-leaf entry needs no
 * invalidation: the IOMMU caches no invalid entry.
 */
function riscv_iommu_get_pc(dev: Device, ep: RiscvIommuEndpoint, pasid: number): number {
  const kernel = dev.kernel;
  const mem = kernel.mem;
  const levels = ep.pdt_mode - RISCV_IOMMU_DC_FSC_PDTP_MODE_PD8;
  let table = ep.pdt_root;
  for (let level = levels; level > 0; level--) {
    const index = level === 2 ? pasid >>> 17 & 0x7 : pasid >>> 8 & 0x1ff;
    const slot = table + index * 8;
    mem.load64(slot);
    if (mem.lo & 1) {
      table = (mem.hi * 2 ** 22 + (mem.lo >>> 10)) * 4096;
      continue;
    }
    const next = kernel.pages.alloc(0);
    ep.pdt_pages.push(next);
    mem.write64(slot, FIELD_PREP(RISCV_IOMMU_PDTE_PPN, next / 4096) | RISCV_IOMMU_PDTE_V);
    table = next;
  }
  return table + (pasid & 0xff) * RISCV_IOMMU_PC_SIZE;
}

/**
 * Rewrites the device's contexts for the domain its RID is attached to (the base's attach, from
 * the template): how a change to the template reaches the hardware.
 */
function _reattach_rid(dev: Device): void {
  const domain = iommu_get_domain_for_dev(dev)!;
  domain.ops.attach_dev!(domain, dev, domain);
}

/**
 * Gives the device a process directory for its first PASID: the root (and the page of
 * process_id 0), PDTV and DPE with the pdtp in the template, then the RID's domain attached again,
 * which puts its translation in process_id 0 (`attachRid`) and writes the context. The directory
 * stays until the device is released. ENOMEM, with nothing changed.
 *
 * DIVERGENCE: riscv_iommu.next gives every PASID-capable device a PD8 directory at its first
 * attach; here a device gets one with its first PASID (so a device that never uses one keeps its
 * plain context), in the smallest mode the IOMMU has for its PASID width.
 */
function riscv_iommu_pdt_alloc(
  iommu: RiscvIommuDevice,
  dev: Device,
  info: RiscvIommuInfo,
  ep: RiscvIommuEndpoint,
): void {
  const kernel = dev.kernel;
  const root = kernel.pages.alloc(0);
  ep.pdt_root = root;
  ep.pdt_mode = _pdt_mode(iommu, (dev.iommu as DevIommu).max_pasids);
  ep.pdt_pages.push(root);
  const tpl = { tc: info.dc.tc, fsc: info.dc.fsc, ta: info.dc.ta };
  try {
    riscv_iommu_get_pc(dev, ep, 0);
    info.dc.tc |= RISCV_IOMMU_DC_TC_PDTV | RISCV_IOMMU_DC_TC_DPE;
    info.dc.fsc = FIELD_PREP(RISCV_IOMMU_DC_FSC_MODE, ep.pdt_mode) |
      FIELD_PREP(RISCV_IOMMU_DC_FSC_PPN, root / 4096);
    info.dc.ta = 0n;
    _reattach_rid(dev);
  } catch (e) {
    info.dc.tc = tpl.tc;
    info.dc.fsc = tpl.fsc;
    info.dc.ta = tpl.ta;
    for (const pa of ep.pdt_pages) kernel.pages.free(pa, 0);
    ep.pdt_pages.length = 0;
    ep.pdt_root = -1;
    ep.pdt_mode = 0;
    throw e;
  }
}

/**
 * The `attachRid` hook: the RID's domain goes to process_id 0 (DPE sends requests without a
 * PASID there): its iosatp and PSCID with V, or nothing (V clear) for the blocking domain. V is
 * cleared first, so no walk sees a half-written context; the attach's IODIR.INVAL_DDT (which
 * drops the device's cached process contexts too) and IOTINVAL follow.
 *
 * A second-stage domain takes the directory out of the context (PDTV and DPE clear, `fsc` Bare):
 * under a G-stage the pdtp would be a guest-physical address, and PASIDs over a G-stage are not
 * supported. The directory itself stays with the device, and the next first-stage domain puts
 * it back. EBUSY while a PASID is attached.
 */
function riscv_iommu_attach_rid(
  _iommu: RiscvIommuDevice,
  dev: Device,
  info: RiscvIommuInfo,
  dc: RiscvIommuDc,
  fsc: bigint,
  ta: bigint,
): void {
  const ep = _ep(info);
  if (dc.iohgatp !== 0n && ep.pasids.size !== 0) {
    throw new Errno("EBUSY", `${dev.name}: PASIDs in use, no second stage`);
  }
  const mem = dev.kernel.mem;
  const pc = riscv_iommu_get_pc(dev, ep, 0);
  mem.write64(pc + riscv_iommu_pc.ta, 0n);
  if (dc.iohgatp !== 0n) {
    dc.tc &= ~(RISCV_IOMMU_DC_TC_PDTV | RISCV_IOMMU_DC_TC_DPE);
    dc.fsc = fsc;
    dc.ta = ta;
    return;
  }
  if ((dc.tc & RISCV_IOMMU_DC_TC_V) === 0n) return;
  mem.write64(pc + riscv_iommu_pc.fsc, fsc);
  mem.write64(pc + riscv_iommu_pc.ta, (ta & RISCV_IOMMU_PC_TA_PSCID) | RISCV_IOMMU_PC_TA_V);
}

/**
 * A process context of the device changed: IODIR.INVAL_PDT of each of its device IDs, IOTINVAL.VMA
 * of the old PSCID, ATS.INVAL of the PASID when ATS is on, then IOFENCE.C (§6.3.1's sequence).
 */
function riscv_iommu_pc_inval(
  iommu: RiscvIommuDevice,
  dev: Device,
  ep: RiscvIommuEndpoint,
  pasid: number,
  pscid: number,
): void {
  const cmd = _iopf(iommu)!.cmd;
  for (const id of dev.fwspec!.ids) {
    riscv_iommu_cmd_iodir_inval_pdt(cmd);
    riscv_iommu_cmd_iodir_set_did(cmd, id);
    riscv_iommu_cmd_iodir_set_pid(cmd, pasid);
    riscv_iommu_cmd_send(iommu, cmd);
  }
  riscv_iommu_cmd_inval_vma(cmd);
  riscv_iommu_cmd_inval_set_pscid(cmd, pscid);
  riscv_iommu_cmd_send(iommu, cmd);
  if (ep.ats_enabled) {
    for (const id of dev.fwspec!.ids) riscv_iommu_ats_inval(iommu, id, pasid, _ALL);
  }
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
}

/*
 * SVA domains: a process's page table as the first stage of a PASID.
 */

/**
 * An SVA domain: the first stage is the page table of `mm` (no table of its own), with a PSCID of
 * the driver instance and an MMU notifier keeping the IOTLBs and ATCs in step with the process.
 * The PASID is the mm's (one per mm, the same on every device).
 */
export class RiscvIommuSvaDomain extends RiscvIommuDomain {
  /** The PASID it is attached with (-1 before the first attach). */
  pasid: number = -1;
  /** Reused by the notifier's invalidations. */
  readonly _range: RiscvIommuGatherRange = {
    startPfn: 0,
    endPfn: 0,
    leafLevels: 1,
    tableLevels: 0,
  };
  /** The subscription to the mm. */
  readonly mn: MmuNotifier;

  /** Use `domain_alloc_sva`. */
  constructor(dev: Device, iommu: RiscvIommuDevice) {
    super(riscv_iommu_sva_domain_ops, dev.kernel, iommu.driver, false);
    this.mn = new MmuNotifier({
      arch_invalidate_secondary_tlbs: (_mn, _mm, start, end) =>
        riscv_iommu_mm_arch_invalidate_secondary_tlbs(this, start, end),
      release: () => riscv_iommu_mm_release(this),
    });
  }
}

/**
 * The notifier's `arch_invalidate_secondary_tlbs`: the process changed PTEs of `[start, end)`:
 * IOTINVAL.VMA of the domain's PSCID over them (per page, or PSCID-wide past 512 pages), the
 * ATS.INVAL of its PASID on ATS devices, IOFENCE.C — before the process reuses the pages.
 */
function riscv_iommu_mm_arch_invalidate_secondary_tlbs(
  domain: RiscvIommuSvaDomain,
  start: number,
  end: number,
): void {
  const range = domain._range;
  range.startPfn = Math.floor(start / 4096);
  range.endPfn = Math.ceil(end / 4096);
  riscv_iommu_iotlb_inval(domain, range);
}

/**
 * The notifier's `release`: the process exits with the domain still attached: its page tables
 * are about to be freed, so every PASID using it stops translating (its process context turns
 * invalid; the device's requests then fault) until it is detached.
 */
function riscv_iommu_mm_release(domain: RiscvIommuSvaDomain): void {
  for (const bond of domain.bonds) {
    const ep = _dev_ep(bond.dev);
    const pc = riscv_iommu_get_pc(bond.dev, ep, domain.pasid);
    bond.dev.kernel.mem.write64(pc + riscv_iommu_pc.ta, 0n);
    riscv_iommu_pc_inval(bond.iommu, bond.dev, ep, domain.pasid, domain.pscid);
  }
}

/**
 * The `domain_alloc_sva` op: an SVA domain over `mm`'s page table on the IOMMU of `dev`, with a
 * PSCID and a notifier registered on the mm. EOPNOTSUPP when the series does not run on that
 * IOMMU or it cannot walk the mm's format (Sv39 or Sv48 in capabilities); ENOMEM.
 */
export function riscv_iommu_domain_alloc_sva(dev: Device, mm: MmStruct): IommuDomain {
  const iommu = dev_to_iommu(dev);
  const cap = mm.satp_mode === SATP_MODE_39
    ? RISCV_IOMMU_CAPABILITIES_SV39
    : mm.satp_mode === SATP_MODE_48
    ? RISCV_IOMMU_CAPABILITIES_SV48
    : 0n;
  if (_iopf(iommu) === null || (iommu.caps & cap) === 0n) {
    throw new Errno("EOPNOTSUPP", `${dev.name}: no SVA over this page table`);
  }
  const domain = kmalloc(dev.kernel, new RiscvIommuSvaDomain(dev, iommu));
  try {
    riscv_iommu_domain_alloc_pscid(domain);
    mmu_notifier_register(domain.mn, mm);
  } catch (e) {
    riscv_iommu_free_paging_domain(domain);
    throw e;
  }
  return domain;
}

/** The SVA domain's `free`: off the mm's notifiers, then the PSCID and the domain. */
function riscv_iommu_sva_domain_free(iommu_domain: IommuDomain): void {
  const domain = iommu_domain as RiscvIommuSvaDomain;
  mmu_notifier_unregister(domain.mn, domain.mn.mm!);
  riscv_iommu_free_paging_domain(domain);
}

/**
 * The SVA domain's `set_dev_pasid`: requests of `dev` tagged `pasid` translate through the
 * process's page table. In order, so a failure undoes what came before: the device joins the
 * IOPF queue (ENODEV without PRI), the domain's bond is linked (its invalidations now reach the
 * device), the device gets its process directory on its first PASID, and the process context is
 * written (fsc first, then ta with V: a context is never valid half-written). A context that was
 * invalid needs no invalidation. EOPNOTSUPP without PASID on the device, or to replace a domain;
 * EBUSY while the RID's domain is a second stage (PASIDs over a G-stage are not supported);
 * ENOMEM.
 */
function riscv_iommu_sva_set_dev_pasid(
  iommu_domain: IommuDomain,
  dev: Device,
  pasid: number,
  old: IommuDomain | null,
): void {
  const domain = iommu_domain as RiscvIommuSvaDomain;
  const iommu = dev_to_iommu(dev);
  const info = dev_iommu_priv_get<RiscvIommuInfo>(dev);
  // Undefined on an IOMMU of the driver instance without the series.
  const ep = _ep(info) as RiscvIommuEndpoint | undefined;
  if (!ep?.pasid_enabled || old !== null) {
    throw new Errno("EOPNOTSUPP", `${dev.name}: cannot attach PASID ${pasid}`);
  }
  if (info.domain?.second_stage) {
    throw new Errno("EBUSY", `${dev.name}: second stage attached, no PASIDs`);
  }
  const faults = domain.iopf_handler !== null;
  if (faults) riscv_iommu_iopf_enable(iommu, dev, ep);
  domain.pasid = pasid;
  let pc: number;
  try {
    riscv_iommu_bond_link(domain, dev, iommu);
    try {
      if (ep.pdt_root < 0) riscv_iommu_pdt_alloc(iommu, dev, info, ep);
      pc = riscv_iommu_get_pc(dev, ep, pasid);
    } catch (e) {
      riscv_iommu_bond_unlink(domain, dev, iommu);
      throw e;
    }
  } catch (e) {
    if (faults) riscv_iommu_iopf_disable(iommu, dev, ep);
    throw e;
  }
  const mm = domain.mn.mm!;
  const mem = dev.kernel.mem;
  mem.write64(
    pc + riscv_iommu_pc.fsc,
    FIELD_PREP(RISCV_IOMMU_PC_FSC_MODE, mm.satp_mode) |
      FIELD_PREP(RISCV_IOMMU_PC_FSC_PPN, mm.pgd / 4096),
  );
  mem.write64(
    pc + riscv_iommu_pc.ta,
    FIELD_PREP(RISCV_IOMMU_PC_TA_PSCID, domain.pscid) | RISCV_IOMMU_PC_TA_V,
  );
  domain.pasid = pasid;
  ep.pasids.set(pasid, domain);
}

/**
 * Mirrors riscv_iommu_remove_dev_pasid(), the blocking domain's `set_dev_pasid`: `pasid` of
 * `dev` stops translating through `old`. The process context turns invalid and is invalidated
 * (IODIR.INVAL_PDT, IOTINVAL.VMA of its PSCID, ATS.INVAL of the PASID, IOFENCE.C); then the page
 * requests of the PASID still in flight are flushed out — the page-request queue, then the IOPF
 * workqueue — so none reaches the next user of the PASID; then the bond goes, and the device
 * leaves the IOPF queue with its last fault-capable domain. EINVAL when `old` is not attached
 * there.
 */
function riscv_iommu_remove_dev_pasid(
  _blocked: IommuDomain,
  dev: Device,
  pasid: number,
  old: IommuDomain | null,
): void {
  const iommu = dev_to_iommu(dev);
  const iopf = _iopf(iommu);
  const ep = iopf === null ? null : _dev_ep(dev);
  const domain = ep?.pasids.get(pasid);
  if (ep === null || domain === undefined || domain !== old) {
    throw new Errno("EINVAL", `${dev.name}: PASID ${pasid} is not attached to this domain`);
  }
  const pc = riscv_iommu_get_pc(dev, ep, pasid);
  dev.kernel.mem.write64(pc + riscv_iommu_pc.ta, 0n);
  riscv_iommu_pc_inval(iommu, dev, ep, pasid, domain.pscid);
  const faults = domain.iopf_handler !== null;
  if (faults) {
    riscv_iommu_priq_process(iommu, iopf!.priq);
    iopf_queue_flush_dev(dev);
  }
  ep.pasids.delete(pasid);
  riscv_iommu_bond_unlink(domain, dev, iommu);
  if (faults) riscv_iommu_iopf_disable(iommu, dev, ep);
}

/** The ops of SVA domains. */
const riscv_iommu_sva_domain_ops: IommuDomainOps = Object.freeze({
  set_dev_pasid: riscv_iommu_sva_set_dev_pasid,
  free: riscv_iommu_sva_domain_free,
});

/*
 * Init and remove.
 */

/**
 * The seed's init hunk (after the page-request queue is enabled): the IOPF queue of the IOMMU,
 * the PASIDs its process directories give (2^20, 2^17 or 2^8 by PD20/PD17/PD8), and "page
 * request queue enabled".
 */
function riscv_iommu_iopf_probe(iommu: RiscvIommuDevice): void {
  const pq_work = iopf_queue_alloc(iommu.dev.kernel, dev_name(iommu.dev));
  iommu.feature_data.set(
    RISCV_IOMMU_IOPF,
    new RiscvIommuIopfDevice(iommu.queues.get(RISCV_IOMMU_INTR_PQ)!, pq_work),
  );
  const caps = iommu.caps;
  iommu.iommu.max_pasids = caps & RISCV_IOMMU_CAPABILITIES_PD20
    ? 2 ** 20
    : caps & RISCV_IOMMU_CAPABILITIES_PD17
    ? 2 ** 17
    : caps & RISCV_IOMMU_CAPABILITIES_PD8
    ? 2 ** 8
    : 0;
  dev_info(iommu.dev, "page request queue enabled");
}

/** The seed's remove hunk: the IOPF queue goes (the base disables the page-request queue after). */
function riscv_iommu_iopf_remove(iommu: RiscvIommuDevice): void {
  iopf_queue_free(_iopf(iommu)!.pq_work);
  iommu.feature_data.delete(RISCV_IOMMU_IOPF);
  iommu.iommu.max_pasids = 0;
}

/** Options of {@linkcode riscv_iommu_iopf_feature}. */
export interface RiscvIommuIopfOptions {
  /** Page-request queue entries asked for (a power of two; default 4096, as the seed). */
  pqCount?: number;
}

/**
 * The series as a feature of the base driver, exported as `iopf()` for
 * `new RiscvIommuDriver({ features: [iopf()] })` (or a machine's `riscvIommu({ features })`):
 * its queue, hooks and ops. It runs on every IOMMU with capabilities.ATS. EINVAL for a
 * page-request queue size that is not a power of two of at least 2. (The seed's Kconfig line
 * "select IOMMU_IOPF" is this file's import of the IOPF core.)
 */
export function riscv_iommu_iopf_feature(opts: RiscvIommuIopfOptions = {}): RiscvIommuFeature {
  const count = opts.pqCount ?? RISCV_IOMMU_DEF_PQ_COUNT;
  if (!(count >= 2 && Number.isInteger(Math.log2(count)))) {
    throw new Errno("EINVAL", `Page-request queue of ${count} entries`);
  }
  return {
    name: RISCV_IOMMU_IOPF,
    missingCapability: (iommu) =>
      (iommu.caps & RISCV_IOMMU_CAPABILITIES_ATS) !== 0n ? null : "capabilities.ATS",
    queue: {
      qid: RISCV_IOMMU_INTR_PQ,
      qbr: RISCV_IOMMU_REG_PQB,
      qcr: RISCV_IOMMU_REG_PQCSR,
      log2sz: Math.log2(count),
      entry_size: RISCV_IOMMU_PQ_RECORD_SIZE,
      thread: riscv_iommu_priq_process,
    },
    probe: riscv_iommu_iopf_probe,
    remove: riscv_iommu_iopf_remove,
    probeDevice: riscv_iommu_enable_pdev,
    releaseDevice: riscv_iommu_disable_pdev,
    iotlbInval: riscv_iommu_iotlb_inval_ats,
    iodirInval: riscv_iommu_iodir_inval_ats,
    cmdTimeout: riscv_iommu_ats_inval_timeout,
    attachRid: riscv_iommu_attach_rid,
    ops: {
      page_response: riscv_iommu_page_response,
      domain_alloc_sva: riscv_iommu_domain_alloc_sva,
    },
    blockedDomainOps: { set_dev_pasid: riscv_iommu_remove_dev_pasid },
  };
}

/** What {@linkcode iopfPart} fills of `@iommu-lab/machine`'s `MachinePart`. */
export interface IopfMachinePart {
  /** The part's name. */
  readonly name: string;
  /** The IOMMU capabilities the feature needs: ATS, which brings the page-request queue. */
  readonly caps: { readonly ats: true };
  /** The driver feature. */
  readonly feature: RiscvIommuFeature;
}

/**
 * The series as a machine part (`Machine.boot({ parts: [iopfPart()], dmaAts, dmaPri,
 * dmaPasid })`): the silicon's IOMMU with ATS (and so a page-request queue), and the
 * {@linkcode riscv_iommu_iopf_feature} in its driver. The endpoints' ATS, PRI and PASID are the
 * machine's DMA-engine options. (A series package does not import the machine; the object has
 * the `MachinePart` shape.)
 */
export function iopfPart(opts: RiscvIommuIopfOptions = {}): IopfMachinePart {
  return { name: RISCV_IOMMU_IOPF, caps: { ats: true }, feature: riscv_iommu_iopf_feature(opts) };
}
