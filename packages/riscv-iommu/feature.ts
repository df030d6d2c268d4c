/**
 * The extension points a series package plugs into the base driver with: a feature is an object
 * handed to the driver instance, e.g.
 * `new RiscvIommuDriver({ features: [iopf(), dirty(), hpm()] })`.
 *
 * The hooks, in the order the driver uses them for each IOMMU it initialises:
 *
 * 1. `missingCapability(iommu)` — capability check (reads `iommu.caps`): the name of a
 *    capability the IOMMU lacks skips the feature on that IOMMU (no queue, no probe, no remove,
 *    no per-device hooks) and leaves one dmesg line: "<name> disabled: no <capability>".
 * 2. `queue` — an extra hardware queue (the page-request queue is qid 3, `pqb`/`pqcsr`, vector
 *    `icvec.piv`): the driver allocates it (WARL size probing, halving on ENOMEM) and enables it
 *    with a threaded interrupt on the vector `icvec` gives its qid, right after the fault queue.
 * 3. `probe(iommu)` — after the queues run and before the device directory is switched on and
 *    the IOMMU registered with the core. Other vectors (the HPM's `icvec.pmiv`) are found with
 *    `riscv_iommu_irq(iommu, RISCV_IOMMU_INTR_PM)`.
 * 4. `remove(iommu)` — at `riscv_iommu_remove()` (and when a later init step fails): after the
 *    IOMMU left the core and the directory is off, before the feature's queue and the command
 *    and fault queues are disabled; features are removed in reverse order.
 *
 * For each device the core probes onto an IOMMU where the feature runs:
 *
 * - `probeDevice(iommu, dev, info)` — once its device contexts exist (invalid) and before it is
 *   attached; per-device state goes in `info.feature_data`. A throw fails the probe, and the
 *   features probed before are released.
 * - `releaseDevice(iommu, dev, info)` — when it leaves, after the blocking release domain was
 *   attached; last feature first.
 *
 * What a feature sets in `info.dc` (the device's context template: tc flags, ta bits, the pdtp
 * with PDTV, the MSI fields) is written by every attach, with the domain's own fields over it;
 * a domain's `dc_tc` bits (GADE...) come with the domain. While the template has PDTV, the
 * context keeps the feature's pdtp and each attach hands the domain's first stage to
 * `attachRid(iommu, dev, info, dc, fsc, ta)` instead, before the context is rewritten: the feature
 * keeps it where requests without a PASID find it (process_id 0, with DPE).
 *
 * On the invalidation paths, before the IOFENCE.C that ends them:
 *
 * - `iotlbInval(bond, domain, gather)` — per device attached to the paging domain, after its
 *   IOTINVAL commands (ATS.INVAL for a device with ATS enabled);
 * - `iodirInval(iommu, dev, devid)` — after each device context's IODIR.INVAL_DDT and IOTINVAL.
 *
 * And when a sync's IOFENCE.C timed out (`cqcsr.cmd_to`, an ATS.INVAL without completion):
 * `cmdTimeout(iommu, index)`, in that sync, before it returns.
 *
 * Before a paging domain the feature allocated is attached to a device (behind any IOMMU of the
 * driver instance): `attachDev(domain, dev, iommu)`, which may refuse it.
 *
 * And, for the whole driver instance (its `iommu_ops` are shared by every IOMMU it drives):
 *
 * - `ops` — extra `iommu_ops` (`page_response`, `capable`, ...). A feature may not replace an op
 *   of the base driver, nor one of another feature, except `capable`, which is OR-ed over the
 *   features that provide it. `domain_alloc_paging_flags` and `hw_info` may come from several
 *   features: each declares what it owns (`allocFlags`, `hwInfoTypes`) and the driver routes a
 *   request to the owner active on the device's IOMMU; unknown flags are EOPNOTSUPP.
 * - `domainOps` — extra ops of every paging domain the base driver allocates.
 * - `blockedDomainOps` — extra ops of the blocking domain (`set_dev_pasid`: the core detaches a
 *   PASID by attaching it to the blocking domain).
 *
 * @module
 */
import type { Device } from "@iommu-lab/kernel";
import type { IommuDomainOps, IommuOps } from "@iommu-lab/iommu";
import type {
  RiscvIommuBond,
  RiscvIommuDc,
  RiscvIommuDomain,
  RiscvIommuGatherRange,
  RiscvIommuInfo,
} from "./iommu.ts";
import type { RiscvIommuDevice, RiscvIommuQueue } from "./iommu_h.ts";

/** An extra hardware queue a feature asks the driver to run (see the module doc, step 2). */
export interface RiscvIommuFeatureQueue {
  /** Interrupt cause of the queue: its `ipsr` bit and `icvec` field (3 for the PQ). */
  readonly qid: number;
  /** Offset of the queue base register (`pqb`). */
  readonly qbr: number;
  /** Offset of the queue CSR (`pqcsr`). */
  readonly qcr: number;
  /** log2 of the entries asked for; the hardware may grant fewer. */
  readonly log2sz: number;
  /** Bytes per entry. */
  readonly entry_size: number;
  /** The threaded interrupt handler: consumes records (`riscv_iommu_queue_consume`...). */
  thread(iommu: RiscvIommuDevice, queue: RiscvIommuQueue): void;
}

/** A series feature of the RISC-V IOMMU driver (see the module doc). */
export interface RiscvIommuFeature {
  /** Name, for messages and `RiscvIommuDevice.feature_data`. Unique per driver instance. */
  readonly name: string;
  /**
   * Capability check: the name of a capability this IOMMU lacks (e.g. `"capabilities.ATS"`),
   * which skips the feature here and is logged; null when the feature can run. Default: it can.
   */
  missingCapability?(iommu: RiscvIommuDevice): string | null;
  /** An extra hardware queue the driver allocates and enables before {@linkcode probe}. */
  readonly queue?: RiscvIommuFeatureQueue;
  /** Sets the feature up on one IOMMU; throw an Errno to fail the IOMMU's init. */
  probe?(iommu: RiscvIommuDevice): void;
  /** Tears down what {@linkcode probe} set up. */
  remove?(iommu: RiscvIommuDevice): void;
  /**
   * Sets the feature up for a device the core probes onto `iommu` (enable PCI ATS/PRI/PASID,
   * join an IOPF queue, allocate a PDT...): its device contexts exist, invalid, and it is not
   * attached yet. `info` is the driver's per-device data; the feature keeps its own state in
   * `info.feature_data` under its name. Throw an Errno to fail the device's probe.
   */
  probeDevice?(iommu: RiscvIommuDevice, dev: Device, info: RiscvIommuInfo): void;
  /**
   * Undoes {@linkcode probeDevice} when the device leaves (it went through the blocking release
   * domain first), or when a later feature's `probeDevice` failed.
   */
  releaseDevice?(iommu: RiscvIommuDevice, dev: Device, info: RiscvIommuInfo): void;
  /**
   * Runs in every IOTLB invalidation of a paging domain, once per device attached to it (`bond`,
   * on `bond.iommu`), after the IOTINVAL commands and before the IOFENCE.C: queue the feature's
   * own commands for the device (`riscv_iommu_cmd_send()`), such as the ATS.INVAL of an
   * ATS-enabled one. `gather` is the range invalidated (4 KiB frames); no levels or an empty range
   * means the whole domain. It runs on the unmap path: allocate nothing.
   */
  iotlbInval?(bond: RiscvIommuBond, domain: RiscvIommuDomain, gather: RiscvIommuGatherRange): void;
  /**
   * Runs after the IODIR.INVAL_DDT and IOTINVAL of each change to device context `devid` of
   * `dev` (every attach), before the IOFENCE.C: the feature's own commands for the device.
   */
  iodirInval?(iommu: RiscvIommuDevice, dev: Device, devid: number): void;
  /**
   * The IOFENCE.C a `riscv_iommu_cmd_sync()` queued at command-queue index `index` (counted as
   * `iommu.cmdq.prod` counts; its slot is `index & iommu.cmdq.mask`) timed out (`cqcsr.cmd_to`):
   * an ATS.INVAL queued between the previous IOFENCE.C and it got no Invalidation Completion, and
   * the device's ATC may still hold what it should have dropped. Runs in that sync, after the CQ
   * thread reported and cleared the bit and the fence completed, before the sync returns to its
   * caller (an unmap frees its pages only after): the feature may read the ring, queue commands
   * and sync (a timeout there runs this hook again, nested).
   */
  cmdTimeout?(iommu: RiscvIommuDevice, index: number): void;
  /**
   * Runs before a paging domain this feature allocated (through its routed
   * `domain_alloc_paging_flags`) is attached to `dev` behind `iommu` — an IOMMU the feature may
   * not run on. Throw an Errno to refuse the attach (nothing has changed yet), as Linux drivers
   * refuse a dirty-tracking domain to a device whose IOMMU cannot track (EINVAL).
   */
  attachDev?(domain: RiscvIommuDomain, dev: Device, iommu: RiscvIommuDevice): void;
  /**
   * An attach (identity, blocked, paging) of a device whose template has tc.PDTV, before its
   * device contexts are rewritten as `dc` (which keeps the template's pdtp): `fsc` and `ta` are
   * the domain's first stage (iosatp and PSCID; Bare and 0 for identity, blocked and second-stage
   * domains), for the feature to put where requests without a PASID find them. `dc.tc` has V
   * unless the domain blocks; `dc.iohgatp` is the domain's second stage. The feature may take
   * the directory out of `dc` for a domain it cannot go under (PDTV and DPE clear, `fsc` and
   * `ta` the domain's): the template keeps it for the next attach. Throw an Errno to fail the
   * attach; nothing has changed yet.
   */
  attachRid?(
    iommu: RiscvIommuDevice,
    dev: Device,
    info: RiscvIommuInfo,
    dc: RiscvIommuDc,
    fsc: bigint,
    ta: bigint,
  ): void;
  /**
   * Extra `iommu_ops` of the driver instance. `domain_alloc_paging_flags` and `hw_info` are not
   * merged but routed: declare what they handle in {@linkcode allocFlags} and
   * {@linkcode hwInfoTypes}.
   */
  readonly ops?: Partial<IommuOps>;
  /**
   * The IOMMU_HWPT_ALLOC_* flags this feature's `ops.domain_alloc_paging_flags` handles: an
   * allocation with any of them (and its user data) goes there, on the IOMMUs the feature runs
   * on. Flags no feature owns and the base driver does not handle are EOPNOTSUPP.
   */
  readonly allocFlags?: number;
  /**
   * The enum iommu_hw_info_type values this feature's `ops.hw_info` reports; a request for
   * IOMMU_HW_INFO_TYPE_DEFAULT goes to the first feature that reports any.
   */
  readonly hwInfoTypes?: readonly number[];
  /** Extra ops of the paging domains the driver allocates. */
  readonly domainOps?: Partial<IommuDomainOps>;
  /**
   * Extra ops of the driver instance's blocking domain: its `set_dev_pasid(blocked, dev, pasid,
   * old)` is how the core detaches a PASID from `old`. Shared by every IOMMU of the driver:
   * check the device's IOMMU runs the feature.
   */
  readonly blockedDomainOps?: Partial<IommuDomainOps>;
}
