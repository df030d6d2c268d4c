/**
 * The IOMMU core: IOMMU instances and their ops, per-device probe, groups, default domains,
 * attach/detach/replace, and map/unmap with the IOTLB gather. Mirrors drivers/iommu/iommu.c
 * and include/linux/iommu.h.
 *
 * The core of one kernel is an {@linkcode IommuCore} installed as `kernel.iommuLayer`; drivers
 * and users call the free functions (`iommu_device_register()`, `iommu_map()`,
 * `iommu_attach_device()`, ...) that find it from the device or domain they are given.
 * Failures throw an {@linkcode Errno} with the errno Linux returns.
 *
 * @module
 */
import type { IommuDirtyBitmap } from "./iova_bitmap.ts";
import type { IommuFaultParam, IopfGroup } from "./io_pgfault.ts";
import { mm_pasid_drop } from "./iommu_sva.ts";
import {
  dev_info,
  dev_is_pci,
  dev_warn,
  type Device,
  device_iommu_probe,
  dmaDirectOps,
  DtNode,
  Errno,
  type FwNode,
  hex,
  Ida,
  ida_alloc,
  ida_alloc_range,
  ida_free,
  type IommuLayer,
  type Kernel,
  kfree,
  kmalloc,
  mmdrop,
  type MmStruct,
  type MsiDesc,
  of_property_read_u32,
  pci_max_pasids,
  pr_info,
  pr_warn,
} from "@iommu-lab/kernel";
import {
  iommu_dma_init_domain,
  iommu_dma_sw_msi,
  iommu_get_dma_cookie,
  iommu_put_dma_cookie,
} from "./dma_iommu.ts";
import type { IommuDmaCookie } from "./dma_iommu.ts";

/** prot: the device may read. */
export const IOMMU_READ = 1 << 0;
/** prot: the device may write. */
export const IOMMU_WRITE = 1 << 1;
/** prot: DMA is cache coherent. */
export const IOMMU_CACHE = 1 << 2;
/** prot: no instruction fetch. */
export const IOMMU_NOEXEC = 1 << 3;
/** prot: the target is MMIO. */
export const IOMMU_MMIO = 1 << 4;
/** prot: privileged accesses only. */
export const IOMMU_PRIV = 1 << 5;

/** Domain type bit: the domain has page tables (map/unmap work). */
export const __IOMMU_DOMAIN_PAGING = 1 << 0;
/** Domain type bit: the DMA API uses the domain. */
export const __IOMMU_DOMAIN_DMA_API = 1 << 1;
/** Domain type bit: identity (pass-through). */
export const __IOMMU_DOMAIN_PT = 1 << 2;
/** Domain type bit: DMA API with a lazy flush queue. */
export const __IOMMU_DOMAIN_DMA_FQ = 1 << 3;
/** Domain type bit: shared virtual addressing. */
export const __IOMMU_DOMAIN_SVA = 1 << 4;
/** Domain type bit: legacy platform-specific domain. */
export const __IOMMU_DOMAIN_PLATFORM = 1 << 5;
/** Domain type bit: nested on a parent paging domain. */
export const __IOMMU_DOMAIN_NESTED = 1 << 6;
/** All DMA is blocked. */
export const IOMMU_DOMAIN_BLOCKED = 0;
/** DMA addresses are physical addresses. */
export const IOMMU_DOMAIN_IDENTITY: number = __IOMMU_DOMAIN_PT;
/** A paging domain a user (VFIO, iommufd, a driver) manages. */
export const IOMMU_DOMAIN_UNMANAGED: number = __IOMMU_DOMAIN_PAGING;
/** A paging domain behind the DMA API (strict invalidation). */
export const IOMMU_DOMAIN_DMA: number = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API;
/** A DMA domain with a flush queue (not implemented: the core is always strict). */
export const IOMMU_DOMAIN_DMA_FQ: number = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API |
  __IOMMU_DOMAIN_DMA_FQ;
/** An SVA domain (a process address space). */
export const IOMMU_DOMAIN_SVA: number = __IOMMU_DOMAIN_SVA;
/** A nested domain. */
export const IOMMU_DOMAIN_NESTED: number = __IOMMU_DOMAIN_NESTED;

/** enum iommu_cap: IOMMU_CAP_CACHE_COHERENCY. */
export const IOMMU_CAP_CACHE_COHERENCY = 0;
/** enum iommu_cap: IOMMU_CAP_NOEXEC. */
export const IOMMU_CAP_NOEXEC = 1;
/** enum iommu_cap: IOMMU_CAP_PRE_BOOT_PROTECTION. */
export const IOMMU_CAP_PRE_BOOT_PROTECTION = 2;
/** enum iommu_cap: IOMMU_CAP_ENFORCE_CACHE_COHERENCY. */
export const IOMMU_CAP_ENFORCE_CACHE_COHERENCY = 3;
/** enum iommu_cap: IOMMU_CAP_DEFERRED_FLUSH. */
export const IOMMU_CAP_DEFERRED_FLUSH = 4;
/** enum iommu_cap: IOMMU_CAP_DIRTY_TRACKING. */
export const IOMMU_CAP_DIRTY_TRACKING = 5;

/** The PASID of DMA without a PASID. */
export const IOMMU_NO_PASID = 0;
/** The first PASID iommu_alloc_global_pasid() hands out. */
export const IOMMU_FIRST_GLOBAL_PASID = 1;

/** IOMMU_HWPT_ALLOC_NEST_PARENT: the domain can be the parent (second stage) of nested ones. */
export const IOMMU_HWPT_ALLOC_NEST_PARENT: number = 1 << 0;
/** IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the domain tracks dirty pages (`dirty_ops`). */
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: number = 1 << 1;
/** IOMMU_HWPT_ALLOC_FAULT_ID_VALID: the domain reports I/O page faults to a fault object. */
export const IOMMU_HWPT_ALLOC_FAULT_ID_VALID: number = 1 << 2;
/** IOMMU_HWPT_ALLOC_PASID: the domain may be attached to PASIDs. */
export const IOMMU_HWPT_ALLOC_PASID: number = 1 << 3;

/** enum iommu_hw_info_type IOMMU_HW_INFO_TYPE_DEFAULT: whatever type the driver reports. */
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;

/** What a domain can translate: struct iommu_domain_geometry. */
export interface IommuDomainGeometry {
  /** First IOVA that can be mapped. */
  aperture_start: number;
  /** Last IOVA that can be mapped (inclusive). */
  aperture_end: number;
  /** DMA addresses outside the aperture cannot be used at all. */
  force_aperture: boolean;
}

/** Where a domain op reports the bytes it mapped (the `size_t *mapped` of map_pages). */
export interface IommuMapped {
  /** Bytes mapped by the call, also when it then failed. */
  bytes: number;
}

/**
 * struct iommu_domain_ops: what a domain does. Ops that can fail throw an {@linkcode Errno}.
 */
export interface IommuDomainOps {
  /**
   * Makes `dev` translate through `domain`, replacing `old` (null on first attach).
   * On failure the device must still be attached to `old`.
   */
  attach_dev?(domain: IommuDomain, dev: Device, old: IommuDomain | null): void;
  /**
   * Makes requests of `dev` tagged with `pasid` translate through `domain`, replacing `old`
   * (null on first attach). The blocking domain's detaches the PASID from `old`. On failure the
   * PASID must still be on `old`.
   */
  set_dev_pasid?(domain: IommuDomain, dev: Device, pasid: number, old: IommuDomain | null): void;
  /**
   * Maps `pgcount` pages of `pgsize` bytes from `iova` to `paddr`. Adds to `mapped.bytes` what
   * it mapped, also when it then throws, so the core can unwind it.
   */
  map_pages?(
    domain: IommuDomain,
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: number,
    mapped: IommuMapped,
  ): void;
  /**
   * Unmaps up to `pgcount` pages of `pgsize` bytes from `iova`, recording what to invalidate
   * in `gather`; returns the bytes unmapped (0 when nothing is mapped at `iova`).
   */
  unmap_pages?(
    domain: IommuDomain,
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IommuIotlbGather,
  ): number;
  /** Invalidates every IOTLB entry of the domain. */
  flush_iotlb_all?(domain: IommuDomain): void;
  /** Makes new mappings visible (for IOMMUs that cache non-present entries). */
  iotlb_sync_map?(domain: IommuDomain, iova: number, size: number): void;
  /** Invalidates what `gather` collected. The core frees the gather's table pages after it. */
  iotlb_sync?(domain: IommuDomain, gather: IommuIotlbGather): void;
  /** Translates one IOVA; 0 when unmapped. */
  iova_to_phys?(domain: IommuDomain, iova: number): number;
  /** Frees the domain (its page tables). */
  free?(domain: IommuDomain): void;
}

/**
 * struct iommu_domain: a translation context devices attach to. Drivers create (or extend) it
 * in `domain_alloc_paging` or as their static identity/blocked domains.
 */
export class IommuDomain {
  /** IOMMU_DOMAIN_* type; the core sets it on paging domains it allocates. */
  type: number;
  /** The domain's operations. */
  readonly ops: IommuDomainOps;
  /** The ops of the driver that allocated the domain; set by the core on paging domains. */
  owner: IommuOps | null = null;
  /**
   * Dirty tracking of this domain (Linux's `domain->dirty_ops`), or null when it has none: a
   * driver gives them only to the domains that can track (those allocated with
   * IOMMU_HWPT_ALLOC_DIRTY_TRACKING), not to every paging domain.
   */
  dirty_ops: IommuDirtyOps | null = null;
  /** The translation window. */
  geometry: IommuDomainGeometry;
  /** dma-iommu state of DMA domains (struct iommu_dma_cookie). */
  iova_cookie: IommuDmaCookie | null = null;
  /**
   * Handles I/O page fault groups of devices attached with an attach handle (an SVA bind, an
   * iommufd fault-capable HWPT); null for a domain that cannot take faults. It must answer the
   * group with iopf_group_response() and free it with iopf_free_group(), now or later; throwing
   * refuses the group, which the core then answers with IOMMU_PAGE_RESP_FAILURE.
   */
  iopf_handler: ((group: IopfGroup) => void) | null = null;
  /** The address space an SVA domain shares (it holds an mmgrab() reference), else null. */
  mm: MmStruct | null = null;
  /** SVA binds using this SVA domain. */
  users = 0;
  /** Groups the domain is attached to (the core's bookkeeping). */
  attachedGroups = 0;
  #pgsize_bitmap = 0;
  #pgsizes: number[] = [];
  /**
   * Reused by {@linkcode iommu_map} so a map allocates nothing.
   * @ignore package-private
   */
  readonly _mapped: IommuMapped = { bytes: 0 };
  /**
   * Reused by {@linkcode iommu_unmap}.
   * @ignore package-private
   */
  readonly _gather: IommuIotlbGather = new IommuIotlbGather();

  /** A domain of `type` with `ops`, page sizes and aperture. */
  constructor(
    type: number,
    ops: IommuDomainOps,
    opts: { pgsize_bitmap?: number; geometry?: Partial<IommuDomainGeometry> } = {},
  ) {
    this.type = type;
    this.ops = ops;
    this.pgsize_bitmap = opts.pgsize_bitmap ?? 0;
    this.geometry = {
      aperture_start: opts.geometry?.aperture_start ?? 0,
      aperture_end: opts.geometry?.aperture_end ?? Number.MAX_SAFE_INTEGER,
      force_aperture: opts.geometry?.force_aperture ?? true,
    };
  }

  /** Supported page sizes: bit `n` set means 2^n-byte pages (n below 53). */
  get pgsize_bitmap(): number {
    return this.#pgsize_bitmap;
  }

  set pgsize_bitmap(bitmap: number) {
    if (!Number.isSafeInteger(bitmap) || bitmap < 0) {
      throw new Errno("EINVAL", `Bad page size bitmap ${bitmap}`);
    }
    this.#pgsize_bitmap = bitmap;
    this.#pgsizes = [];
    for (let size = 1; size <= bitmap; size *= 2) {
      if (Math.floor(bitmap / size) % 2 === 1) this.#pgsizes.push(size);
    }
  }

  /** The page sizes of {@linkcode IommuDomain.pgsize_bitmap}, smallest first. */
  get pgsizes(): readonly number[] {
    return this.#pgsizes;
  }
}

/** Frees table pages put on a gather's freelist (a page-table allocator, seen by the core). */
export interface IommuPagesAllocator {
  /** Frees `2^order` pages at `pa`. */
  freeTable(pa: number, order: number): void;
}

/**
 * struct iommu_iotlb_gather: what an unmap changed, for the invalidation that must follow, and
 * the table pages to free once it has.
 *
 * Ranges count 4 KiB frames of the IOVA space (`startPfn` inclusive, `endPfn` exclusive), and
 * the level bitmaps say which leaf/table entries went away, as generic_pt's detailed gather
 * records them. A driver passes the core's gather straight to its generic-pt page table, which
 * fills it.
 */
export class IommuIotlbGather {
  /** First frame to invalidate (`Infinity` when empty). */
  startPfn: number = Infinity;
  /** Frame after the last to invalidate. */
  endPfn = 0;
  /** Bit `L`: a leaf at level `L` was removed. */
  leafLevels = 0;
  /** Bit `L`: a table at level `L` was removed (its page is on the freelist). */
  tableLevels = 0;
  /** Physical addresses of freed 4 KiB table pages awaiting the flush. */
  readonly freelist: number[] = [];
  /** Unmapped IOVAs go to a flush queue instead of being invalidated now (never, here). */
  queued = false;
  #alloc: IommuPagesAllocator | null = null;

  /** True when there is nothing to invalidate or free. */
  get isEmpty(): boolean {
    return this.startPfn >= this.endPfn && this.freelist.length === 0;
  }

  /** Widens the range to `pages` frames from `pfn`. Mirrors iommu_iotlb_gather_add_range(). */
  addRange(pfn: number, pages: number): void {
    if (pfn < this.startPfn) this.startPfn = pfn;
    if (pfn + pages > this.endPfn) this.endPfn = pfn + pages;
  }

  /** Queues a table page `alloc` gets back after the flush. */
  addFreedTable(pa: number, alloc: IommuPagesAllocator): void {
    if (this.#alloc !== null && this.#alloc !== alloc) {
      throw new Errno("EINVAL", "A gather cannot hold table pages of two allocators");
    }
    this.#alloc = alloc;
    this.freelist.push(pa);
  }

  /** Frees the queued table pages; only once the IOTLB flush completed. Mirrors iommu_put_pages_list(). */
  putPages(): void {
    const alloc = this.#alloc;
    if (alloc !== null) { for (const pa of this.freelist) alloc.freeTable(pa, 0); }
    this.freelist.length = 0;
    this.#alloc = null;
  }

  /** Empties range and levels for the next update. Mirrors iommu_iotlb_gather_init(). */
  reset(): void {
    this.startPfn = Infinity;
    this.endPfn = 0;
    this.leafLevels = 0;
    this.tableLevels = 0;
    this.queued = false;
  }
}

/** A page request (struct iommu_fault_page_request); see `io_pgfault.ts`. */
export interface IommuFaultPageRequest {
  /** IOMMU_FAULT_PAGE_REQUEST_PASID_VALID, _LAST_PAGE, IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID. */
  flags: number;
  /** PASID when PASID_VALID. */
  pasid: number;
  /** Page request group index. */
  grpid: number;
  /** IOMMU_FAULT_PERM_* (READ, WRITE, EXEC, PRIV). */
  perm: number;
  /** Faulting address. */
  addr: number;
  /** Whatever the driver needs to answer the request (the requester's device ID, say). */
  private_data?: readonly [number, number];
}

/** A response to a page request group (struct iommu_page_response); see `io_pgfault.ts`. */
export interface IommuPageResponse {
  /** PASID of the request. */
  pasid: number;
  /** Group index of the request. */
  grpid: number;
  /** IOMMU_PAGE_RESP_SUCCESS (0), _INVALID (1) or _FAILURE (2). */
  code: number;
}

/** struct iommu_dirty_ops: a domain's hardware dirty tracking. */
export interface IommuDirtyOps {
  /** Starts or stops dirty tracking on every device attached to `domain`. */
  set_dirty_tracking(domain: IommuDomain, enabled: boolean): void;
  /**
   * Reports the dirty pages of `size` bytes from `iova` into `dirty`, clearing their dirty state
   * unless `flags` has IOMMU_DIRTY_NO_CLEAR.
   */
  read_and_clear_dirty(
    domain: IommuDomain,
    iova: number,
    size: number,
    flags: number,
    dirty: IommuDirtyBitmap,
  ): void;
}

/** struct iommu_user_data: driver-specific data from user space (iommufd). */
export interface IommuUserData {
  /** enum iommu_hwpt_data_type (or the command's own type enum). */
  readonly type: number;
  /** The data, as the uapi structure lays it out. */
  readonly data: Uint8Array;
}

/** What `hw_info` returns for iommufd's IOMMU_GET_HW_INFO. */
export interface IommuHwInfo {
  /** enum iommu_hw_info_type. */
  type: number;
  /** The driver's info structure, as the uapi lays it out. */
  data: Uint8Array;
}

/**
 * struct iommu_ops: what an IOMMU driver provides. Methods that can fail throw an
 * {@linkcode Errno}.
 */
export interface IommuOps {
  /** True when the IOMMU of `dev` has capability `cap` (IOMMU_CAP_*). */
  capable?(dev: Device, cap: number): boolean;
  /**
   * Driver-specific hardware information for iommufd, of enum iommu_hw_info_type `type`
   * (IOMMU_HW_INFO_TYPE_DEFAULT: the driver's own); EOPNOTSUPP for a type it does not report.
   */
  hw_info?(dev: Device, type: number): IommuHwInfo;
  /** Allocates an empty paging domain usable by `dev`. */
  domain_alloc_paging?(dev: Device): IommuDomain;
  /**
   * Like {@linkcode IommuOps.domain_alloc_paging} with IOMMU_HWPT_ALLOC_* flags and driver data
   * (null without); EOPNOTSUPP for flags or data the driver does not handle.
   */
  domain_alloc_paging_flags?(
    dev: Device,
    flags: number,
    userData: IommuUserData | null,
  ): IommuDomain;
  /**
   * Allocates an SVA domain whose first stage is `mm`'s page table (the core sets its type, `mm`
   * and fault handler); EOPNOTSUPP when `dev`'s IOMMU cannot walk it.
   */
  domain_alloc_sva?(dev: Device, mm: MmStruct): IommuDomain;
  /** Sets up `dev` (its IDs come from `dev.fwspec`); returns the IOMMU instance that serves it. */
  probe_device(dev: Device): IommuDevice;
  /** Undoes {@linkcode IommuOps.probe_device}. */
  release_device?(dev: Device): void;
  /** Returns the group `dev` belongs in (generic_device_group(), pci_device_group()). */
  device_group(dev: Device): IommuGroup;
  /** Adds the firmware specifier `args` of `dev` to its fwspec (iommu_fwspec_add_ids()). */
  of_xlate?(dev: Device, args: readonly number[]): void;
  /** The default domain type `dev` requires (IOMMU_DOMAIN_*), or 0 for no preference. */
  def_domain_type?(dev: Device): number;
  /**
   * Sends `msg` to the device as the response to the page request group `evt` ends (the IOPF
   * core calls it exactly once per group). Whether the response carries the PASID is the
   * driver's to decide from `evt` (PASID_VALID and NEEDS_PASID).
   */
  page_response?(dev: Device, evt: IommuFaultPageRequest, msg: IommuPageResponse): void;
  /** The driver's static identity domain. */
  identity_domain?: IommuDomain;
  /** The driver's static blocking domain. */
  blocked_domain?: IommuDomain;
  /** A domain devices are attached to before release_device (usually blocking). */
  release_domain?: IommuDomain;
  /** Page sizes for paging domains that do not set their own. */
  pgsize_bitmap?: number;
}

/** struct iommu_device: one IOMMU instance a driver registers. */
export class IommuDevice {
  /** The driver's ops (set by {@linkcode iommu_device_register}). */
  ops: IommuOps | null = null;
  /** Firmware node devices name in their `iommus` / `iommu-map`. */
  fwnode: FwNode | null = null;
  /** The IOMMU's own device. */
  dev: Device | null = null;
  /** PASIDs the instance supports (0: none). */
  max_pasids = 0;
}

/** struct dev_iommu: the core's per-device state (`dev.iommu`). */
export class DevIommu {
  /** The IOMMU instance serving the device. */
  iommu_dev: IommuDevice | null = null;
  /** The driver's per-device data (dev_iommu_priv_get()). */
  priv: unknown = null;
  /** PASIDs the device may use (0: none), set when it is probed. */
  max_pasids = 0;
  /** Its I/O page fault state while it is on an IOPF queue (iopf_queue_add_device()). */
  fault_param: IommuFaultParam | null = null;
  /**
   * A PCI device still tries 32-bit IOVAs first: set unless iommu.forcedac, cleared once that
   * space runs out.
   */
  pci_32bit_workaround: boolean;

  /** Per-device state in the core of one kernel. */
  constructor(readonly core: IommuCore) {
    this.pci_32bit_workaround = !core.forcedac;
  }
}

/** struct iommu_group: devices that cannot be isolated from each other. */
export class IommuGroup {
  /** Group number (the sysfs name). */
  readonly id: number;
  /** Member devices. */
  readonly devices: Device[] = [];
  /** The domain the DMA API uses, attached when nobody else claimed the group. */
  default_domain: IommuDomain | null = null;
  /** A domain that blocks all DMA (for detach without a default domain). */
  blocking_domain: IommuDomain | null = null;
  /** The domain currently attached. */
  domain: IommuDomain | null = null;
  /** The group's driver data (iommu_group_get_iommudata()). */
  iommu_data: unknown = null;
  /** Who claimed DMA ownership of the group (iommufd's context), or null. */
  owner: unknown = null;
  /** Claims of {@linkcode IommuGroup.owner} (devices of the group bound to it). */
  owner_cnt = 0;
  /**
   * What each PASID is attached to, and the RID's attach handle at IOMMU_NO_PASID
   * (group->pasid_array): the domain and the caller's attach handle, if it gave one.
   */
  readonly pasid_array: Map<number, { domain: IommuDomain; handle: IommuAttachHandle | null }> =
    new Map();

  /** Use {@linkcode iommu_group_alloc}. */
  constructor(readonly core: IommuCore, id: number) {
    this.id = id;
  }
}

/** Options of the core (the `iommu.*` kernel parameters). */
export interface IommuCoreOptions {
  /** iommu.passthrough=1: default domains are identity rather than DMA. */
  passthrough?: boolean;
  /** iommu.forcedac=1: PCI devices get IOVAs above 4 GiB straight away (no 32-bit first try). */
  forcedac?: boolean;
}

/**
 * The IOMMU core of one kernel: registered IOMMUs and the default-domain policy. Implements the
 * kernel's {@linkcode IommuLayer} hooks (of_xlate lookup, probe and release of devices).
 */
export class IommuCore implements IommuLayer {
  /** Registered IOMMU instances (iommu_device_list). */
  readonly iommus: IommuDevice[] = [];
  /** iommu_def_domain_type: IOMMU_DOMAIN_DMA or IOMMU_DOMAIN_IDENTITY. */
  readonly defDomainType: number;
  /** iommu_dma_forcedac: see {@linkcode IommuCoreOptions.forcedac}. */
  readonly forcedac: boolean;
  /**
   * iommu_group_ida: group numbers, the lowest free one first, reused once a group is freed.
   * @ignore package-private
   */
  readonly _groupIda: Ida = new Ida();
  /** iommu_global_pasid_ida: PASIDs handed out by iommu_alloc_global_pasid(). */
  readonly _pasidIda: Ida = new Ida();

  /** Use {@linkcode iommu_subsys_init}. */
  constructor(readonly kernel: Kernel, opts: IommuCoreOptions = {}) {
    this.defDomainType = opts.passthrough ? IOMMU_DOMAIN_IDENTITY : IOMMU_DOMAIN_DMA;
    this.forcedac = opts.forcedac ?? false;
  }

  /** Mirrors iommu_ops_from_fwnode() + of_iommu_xlate(): the xlate for `fwnode`, or null. */
  ofXlate(fwnode: FwNode): ((dev: Device, args: readonly number[]) => void) | null {
    const ops = this.iommus.find((i) => i.fwnode === fwnode)?.ops;
    if (!ops) return null;
    return (dev, args) => {
      if (!ops.of_xlate) throw new Errno("ENODEV", `IOMMU ${fwnode.name} has no of_xlate`);
      ops.of_xlate(dev, args);
    };
  }

  /** Mirrors iommu_probe_device(). */
  probeDevice(dev: Device): void {
    __iommu_probe_device(this, dev);
  }

  /** Mirrors iommu_release_device(). */
  releaseDevice(dev: Device): void {
    iommu_release_device(dev);
  }

  /**
   * Mirrors iommu_dma_prepare_msi(): MSIs of a device outside any group, or attached to an
   * identity domain, go to the physical doorbell; a DMA domain maps the doorbell page
   * ({@linkcode iommu_dma_sw_msi}) as the device's current domain, so the mapping lives and
   * dies with that domain. EOPNOTSUPP in any other domain (blocked, unmanaged without a DMA
   * cookie): nothing there would map the doorbell.
   */
  prepareMsi(desc: MsiDesc, msiAddr: number): void {
    const domain = iommu_group_get(desc.dev)?.domain ?? null;
    if (domain === null || domain.type === IOMMU_DOMAIN_IDENTITY) return;
    if (domain.iova_cookie === null) {
      throw new Errno("EOPNOTSUPP", `${desc.dev.name}: no MSI mapping in this domain`);
    }
    iommu_dma_sw_msi(domain, desc, msiAddr);
  }

  /** Mirrors mm_pasid_drop() (see `iommu_sva.ts`). */
  mmPasidDrop(mm: MmStruct): void {
    mm_pasid_drop(mm);
  }
}

/**
 * Mirrors iommu_subsys_init(): creates the IOMMU core of `kernel` with the policy of `opts`.
 *
 * @example Booting the core in pass-through mode
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import { IOMMU_DOMAIN_IDENTITY, iommu_subsys_init } from "@iommu-lab/iommu";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const core = iommu_subsys_init(kernel, { passthrough: true });
 * assert.equal(core.defDomainType, IOMMU_DOMAIN_IDENTITY);
 * assert.deepEqual(kernel.dmesg.grep("iommu:"), ["iommu: Default domain type: Passthrough"]);
 * ```
 */
export function iommu_subsys_init(kernel: Kernel, opts: IommuCoreOptions = {}): IommuCore {
  if (kernel.iommuLayer !== null) throw new Errno("EBUSY", "The IOMMU core is already set up");
  const core = new IommuCore(kernel, opts);
  kernel.iommuLayer = core;
  pr_info(
    kernel,
    `iommu: Default domain type: ${opts.passthrough ? "Passthrough" : "Translated"}`,
  );
  return core;
}

/** The core of `kernel`, set up with defaults on first use (it is built into Linux). */
function _core(kernel: Kernel): IommuCore {
  const layer = kernel.iommuLayer;
  if (layer === null) return iommu_subsys_init(kernel);
  if (!(layer instanceof IommuCore)) throw new Errno("ENODEV", "Another IOMMU layer is loaded");
  return layer;
}

/**
 * Mirrors iommu_device_register(): makes `iommu` (served by `ops`, on hardware `hwdev`)
 * available, then probes the IOMMU side of every device without a driver that was added
 * before, so those behind `iommu` join their groups (bus_iommu_probe()).
 */
export function iommu_device_register(iommu: IommuDevice, ops: IommuOps, hwdev: Device): void {
  const core = _core(hwdev.kernel);
  if (core.iommus.includes(iommu)) {
    throw new Errno("EBUSY", `IOMMU of ${hwdev.name} is already registered`);
  }
  const fwnode = iommu.fwnode ?? hwdev.fwnode;
  if (fwnode !== null && core.iommus.some((i) => i.fwnode === fwnode)) {
    throw new Errno("EEXIST", `An IOMMU for ${fwnode.name} is already registered`);
  }
  iommu.ops = ops;
  iommu.dev = hwdev;
  iommu.fwnode = fwnode;
  core.iommus.push(iommu);
  // Mirrors bus_iommu_probe(): devices added before the IOMMU registered.
  for (const dev of [...core.kernel.core.devices]) device_iommu_probe(dev);
}

/** Mirrors iommu_device_unregister(): releases every device `iommu` serves, then forgets it. */
export function iommu_device_unregister(iommu: IommuDevice): void {
  const core = iommu.dev === null ? null : _core(iommu.dev.kernel);
  const i = core?.iommus.indexOf(iommu) ?? -1;
  if (core === null || i < 0) throw new Errno("ENODEV", "IOMMU is not registered");
  for (const dev of [...core.kernel.core.devices]) {
    if (dev.iommu instanceof DevIommu && dev.iommu.iommu_dev === iommu) iommu_release_device(dev);
  }
  core.iommus.splice(i, 1);
}

/** dev->iommu as the core's type, or null when the device is not behind a probed IOMMU. */
function _devIommu(dev: Device): DevIommu | null {
  return dev.iommu instanceof DevIommu ? dev.iommu : null;
}

/** The group of `dev`, or null. Mirrors iommu_group_get(). */
export function iommu_group_get(dev: Device): IommuGroup | null {
  return dev.iommuGroup instanceof IommuGroup ? dev.iommuGroup : null;
}

/** Mirrors dev_iommu_ops(): the ops of the IOMMU serving `dev` (ENODEV when none). */
export function dev_iommu_ops(dev: Device): IommuOps {
  const ops = _devIommu(dev)?.iommu_dev?.ops;
  if (!ops) throw new Errno("ENODEV", `${dev.name} is not behind an IOMMU`);
  return ops;
}

/** Mirrors dev_iommu_priv_get(): the driver's per-device data. */
export function dev_iommu_priv_get<T>(dev: Device): T {
  return _devIommu(dev)?.priv as T;
}

/** Mirrors dev_iommu_priv_set(). */
export function dev_iommu_priv_set(dev: Device, priv: unknown): void {
  const param = _devIommu(dev);
  if (param === null) throw new Errno("ENODEV", `${dev.name} is not being probed by an IOMMU`);
  param.priv = priv;
}

/**
 * Mirrors iommu_group_alloc(): a new empty group with the lowest free group number, accounted in
 * the kernel's slab (ENOMEM when the allocation fails). The core frees it, and its number, when
 * its last device is released.
 */
export function iommu_group_alloc(core: IommuCore): IommuGroup {
  const id = ida_alloc(core._groupIda);
  try {
    return kmalloc(core.kernel, new IommuGroup(core, id));
  } catch (e) {
    ida_free(core._groupIda, id);
    throw e;
  }
}

/** Mirrors generic_device_group(): every device is isolated in its own group. */
export function generic_device_group(dev: Device): IommuGroup {
  return iommu_group_alloc(_core(dev.kernel));
}

/**
 * Mirrors pci_device_group(), simplified: devices sharing a requester ID (a fwspec ID on the
 * same IOMMU, i.e. DMA aliases) share a group; otherwise each PCI function gets its own, as
 * with ACS isolation everywhere.
 */
export function pci_device_group(dev: Device): IommuGroup {
  const spec = dev.fwspec;
  if (spec !== null) {
    for (const other of _core(dev.kernel).kernel.core.devices) {
      const group = iommu_group_get(other);
      const os = other.fwspec;
      if (other === dev || group === null || os === null || os.fwnode !== spec.fwnode) continue;
      if (os.ids.some((id) => spec.ids.includes(id))) return group;
    }
  }
  return generic_device_group(dev);
}

function __iommu_probe_device(core: IommuCore, dev: Device): void {
  if (dev.iommu !== null) return;
  const spec = dev.fwspec;
  const iommu = spec === null ? undefined : core.iommus.find((i) => i.fwnode === spec.fwnode);
  if (iommu === undefined || iommu.ops === null) {
    throw new Errno("ENODEV", `No IOMMU registered for ${dev.name}`);
  }
  const ops = iommu.ops;
  // Mirrors dev_iommu_get().
  const param = kmalloc(core.kernel, new DevIommu(core));
  dev.iommu = param;
  try {
    param.iommu_dev = ops.probe_device(dev);
  } catch (e) {
    dev_iommu_free(dev);
    throw e;
  }
  param.max_pasids = dev_iommu_get_max_pasids(dev);
  let group: IommuGroup;
  try {
    group = ops.device_group(dev);
  } catch (e) {
    ops.release_device?.(dev);
    dev_iommu_free(dev);
    throw e;
  }
  group.devices.push(dev);
  dev.iommuGroup = group;
  try {
    if (group.default_domain === null && group.domain === null) {
      iommu_setup_default_domain(group);
    } else if (group.domain !== null) {
      __iommu_attach_device(group.domain, dev, null);
    }
    iommu_setup_dma_ops(dev);
  } catch (e) {
    __iommu_group_remove_device(dev, group, ops);
    throw e;
  }
  dev_info(dev, `Adding to iommu group ${group.id}`);
}

function iommu_release_device(dev: Device): void {
  const group = iommu_group_get(dev);
  const ops = _devIommu(dev)?.iommu_dev?.ops;
  if (group === null || !ops) return;
  const rel = ops.release_domain;
  if (rel && group.domain !== rel) {
    try {
      __iommu_attach_device(rel, dev, group.domain);
    } catch (e) {
      if (!(e instanceof Errno)) throw e;
      dev_warn(dev, `Failed to attach the release domain: ${-e.errno}`);
    }
  }
  __iommu_group_remove_device(dev, group, ops);
}

/** Takes `dev` out of `group`, releases it in the driver and frees the group's domains if last. */
function __iommu_group_remove_device(dev: Device, group: IommuGroup, ops: IommuOps): void {
  group.devices.splice(group.devices.indexOf(dev), 1);
  dev.iommuGroup = null;
  dev.dma = dmaDirectOps;
  ops.release_device?.(dev);
  dev_iommu_free(dev);
  if (group.devices.length !== 0) return;
  if (group.domain !== null) group.domain.attachedGroups--;
  group.domain = null;
  for (const d of [group.default_domain, group.blocking_domain]) {
    if (d !== null && d !== ops.identity_domain && d !== ops.blocked_domain) iommu_domain_free(d);
  }
  group.default_domain = null;
  group.blocking_domain = null;
  // Mirrors iommu_group_release() once the last reference is gone.
  ida_free(group.core._groupIda, group.id);
  kfree(group.core.kernel, group);
}

/**
 * Mirrors dev_iommu_get_max_pasids(): what the device can tag (a PCI function's PASID
 * capability, the `pasid-num-bits` property of its firmware node), bounded by its IOMMU.
 */
function dev_iommu_get_max_pasids(dev: Device): number {
  let max_pasids = 0;
  if (dev_is_pci(dev)) {
    if (dev.pasidCap !== 0) max_pasids = pci_max_pasids(dev);
  } else if (dev.fwnode instanceof DtNode) {
    const bits = of_property_read_u32(dev.fwnode, "pasid-num-bits");
    if (bits !== undefined) max_pasids = 2 ** bits;
  }
  return Math.min(max_pasids, (dev.iommu as DevIommu).iommu_dev!.max_pasids);
}

/** Mirrors dev_iommu_free(): drops and frees `dev.iommu`. */
function dev_iommu_free(dev: Device): void {
  const param = dev.iommu as DevIommu;
  dev.iommu = null;
  kfree(param.core.kernel, param);
}

/** Mirrors iommu_get_default_domain_type(): what the group's devices and the policy ask for. */
function iommu_get_default_domain_type(group: IommuGroup, ops: IommuOps): number {
  let type = 0;
  for (const dev of group.devices) {
    const want = ops.def_domain_type?.(dev) ?? 0;
    if (want === 0) continue;
    if (type !== 0 && want !== type) {
      throw new Errno("EINVAL", `Devices of iommu group ${group.id} need different domain types`);
    }
    type = want;
  }
  return type;
}

/** Mirrors iommu_setup_default_domain() for a group's first device. */
function iommu_setup_default_domain(group: IommuGroup): void {
  const dev = group.devices[0];
  const ops = dev_iommu_ops(dev);
  const req = iommu_get_default_domain_type(group, ops);
  const type = req !== 0 ? req : group.core.defDomainType;
  let dom: IommuDomain;
  if (type === IOMMU_DOMAIN_IDENTITY && ops.identity_domain) {
    dom = ops.identity_domain;
  } else if (type === IOMMU_DOMAIN_IDENTITY && req !== 0) {
    throw new Errno("EINVAL", `${dev.name} needs an identity domain the IOMMU cannot provide`);
  } else {
    if (type === IOMMU_DOMAIN_IDENTITY) {
      pr_warn(
        group.core.kernel,
        `iommu: Failed to allocate default IOMMU domain of type ${type} for group ${group.id} - Falling back to IOMMU_DOMAIN_DMA`,
      );
    }
    dom = __iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_DMA, 0, null);
  }
  try {
    group.default_domain = dom;
    __iommu_group_set_domain(group, dom);
  } catch (e) {
    group.default_domain = null;
    if (dom !== ops.identity_domain) iommu_domain_free(dom);
    throw e;
  }
}

/** Mirrors iommu_setup_dma_ops(): dma-iommu for DMA default domains, direct mapping otherwise. */
function iommu_setup_dma_ops(dev: Device): void {
  const dom = iommu_group_get(dev)?.default_domain ?? null;
  if (dom !== null && (dom.type & __IOMMU_DOMAIN_DMA_API) !== 0) {
    dev.dma = iommu_dma_init_domain(dom, dev);
  } else {
    dev.dma = dmaDirectOps;
  }
}

function __iommu_paging_domain_alloc_flags(
  dev: Device,
  type: number,
  flags: number,
  userData: IommuUserData | null,
): IommuDomain {
  const ops = dev_iommu_ops(dev);
  let dom: IommuDomain;
  if (ops.domain_alloc_paging_flags) {
    dom = ops.domain_alloc_paging_flags(dev, flags, userData);
  } else if (flags === 0 && userData === null && ops.domain_alloc_paging) {
    dom = ops.domain_alloc_paging(dev);
  } else {
    throw new Errno("EOPNOTSUPP", `${dev.name}: IOMMU cannot allocate this paging domain`);
  }
  dom.type = type;
  dom.owner = ops;
  if (dom.pgsize_bitmap === 0) dom.pgsize_bitmap = ops.pgsize_bitmap ?? 0;
  if ((type & __IOMMU_DOMAIN_DMA_API) !== 0) {
    try {
      iommu_get_dma_cookie(dom, dev.kernel);
    } catch (e) {
      dom.ops.free?.(dom);
      throw e;
    }
  }
  return dom;
}

/** Mirrors iommu_paging_domain_alloc(): an unmanaged paging domain for `dev`'s IOMMU. */
export function iommu_paging_domain_alloc(dev: Device): IommuDomain {
  return iommu_paging_domain_alloc_flags(dev, 0);
}

/**
 * Mirrors iommu_paging_domain_alloc_flags() (EOPNOTSUPP for flags or data the driver cannot do).
 *
 * DIVERGENCE: Linux's takes no user data; iommufd calls `domain_alloc_paging_flags` itself with
 * it. Here iommufd goes through the core, so its domains are set up as every other's, and passes
 * `userData` on.
 */
export function iommu_paging_domain_alloc_flags(
  dev: Device,
  flags: number,
  userData: IommuUserData | null = null,
): IommuDomain {
  return __iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_UNMANAGED, flags, userData);
}

/** Mirrors iommu_domain_free(); EBUSY while a group is attached to the domain. */
export function iommu_domain_free(domain: IommuDomain): void {
  if (domain.attachedGroups !== 0) throw new Errno("EBUSY", "Cannot free an attached domain");
  iommu_put_dma_cookie(domain);
  if (domain.type === IOMMU_DOMAIN_SVA && domain.mm !== null) mmdrop(domain.mm);
  domain.ops.free?.(domain);
}

function __iommu_attach_device(domain: IommuDomain, dev: Device, old: IommuDomain | null): void {
  if (!domain.ops.attach_dev) throw new Errno("ENODEV", "Domain cannot be attached");
  domain.ops.attach_dev(domain, dev, old);
}

/**
 * Mirrors __iommu_group_set_domain(): attaches every device of `group` to `domain`; on a failure
 * the devices already moved go back to the old domain and the error is thrown.
 */
function __iommu_group_set_domain(group: IommuGroup, domain: IommuDomain): void {
  const old = group.domain;
  if (old === domain) return;
  let done = 0;
  try {
    for (; done < group.devices.length; done++) {
      __iommu_attach_device(domain, group.devices[done], old);
    }
  } catch (e) {
    for (let i = 0; i < done && old !== null; i++) {
      try {
        __iommu_attach_device(old, group.devices[i], domain);
      } catch {
        dev_warn(group.devices[i], "Failed to restore the previous domain");
      }
    }
    throw e;
  }
  if (old !== null) old.attachedGroups--;
  domain.attachedGroups++;
  group.domain = domain;
}

function _checkCompatible(domain: IommuDomain, group: IommuGroup): void {
  const ops = dev_iommu_ops(group.devices[0]);
  const isStatic = domain === ops.identity_domain || domain === ops.blocked_domain;
  if (!isStatic && domain.owner !== ops) {
    throw new Errno("EINVAL", `Domain belongs to another IOMMU than iommu group ${group.id}`);
  }
}

/**
 * Mirrors iommu_attach_group(): attaches `domain` to `group`; EBUSY when another non-default
 * domain is attached, EINVAL when the domain comes from another IOMMU driver.
 */
export function iommu_attach_group(domain: IommuDomain, group: IommuGroup): void {
  if (group.devices.length === 0) throw new Errno("ENODEV", `iommu group ${group.id} is empty`);
  const cur = group.domain;
  if (
    cur !== null && cur !== group.default_domain && cur !== group.blocking_domain && cur !== domain
  ) {
    throw new Errno("EBUSY", `iommu group ${group.id} is attached to another domain`);
  }
  _checkCompatible(domain, group);
  __iommu_group_set_domain(group, domain);
}

/**
 * Mirrors iommu_attach_device(): like {@linkcode iommu_attach_group} for the group of `dev`,
 * which must hold only `dev` (EINVAL otherwise; ENODEV without an IOMMU).
 */
export function iommu_attach_device(domain: IommuDomain, dev: Device): void {
  iommu_attach_group(domain, _singleDeviceGroup(dev));
}

/** The group of `dev`, which must hold only `dev` (ENODEV without an IOMMU, EINVAL otherwise). */
function _singleDeviceGroup(dev: Device): IommuGroup {
  const group = iommu_group_get(dev);
  if (group === null) throw new Errno("ENODEV", `${dev.name} is not behind an IOMMU`);
  if (group.devices.length !== 1) {
    throw new Errno("EINVAL", `iommu group ${group.id} of ${dev.name} has several devices`);
  }
  return group;
}

/**
 * Mirrors __iommu_group_set_core_domain(): back to the blocking domain while a user owns the
 * group's DMA, else to the default domain (blocking when there is none).
 */
function __iommu_group_set_core_domain(group: IommuGroup): void {
  let dom = group.owner === null ? group.default_domain : null;
  if (dom === null) {
    if (group.blocking_domain === null) {
      group.blocking_domain = __iommu_group_alloc_blocking_domain(group);
    }
    dom = group.blocking_domain;
  }
  __iommu_group_set_domain(group, dom);
}

/** Mirrors __iommu_group_alloc_blocking_domain(): the static one, else an empty paging domain. */
function __iommu_group_alloc_blocking_domain(group: IommuGroup): IommuDomain {
  const dev = group.devices[0];
  const ops = dev_iommu_ops(dev);
  if (ops.blocked_domain) return ops.blocked_domain;
  const dom = __iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_UNMANAGED, 0, null);
  dom.type = IOMMU_DOMAIN_BLOCKED;
  return dom;
}

/**
 * Mirrors iommu_detach_group(): returns `group` to its default (or blocking) domain. EINVAL when
 * `domain` is not the attached one (Linux WARNs and ignores the call).
 */
export function iommu_detach_group(domain: IommuDomain, group: IommuGroup): void {
  if (group.domain !== domain) {
    throw new Errno("EINVAL", `iommu group ${group.id} is not attached to this domain`);
  }
  __iommu_group_set_core_domain(group);
}

/** Mirrors iommu_detach_device(): {@linkcode iommu_detach_group} for a single-device group. */
export function iommu_detach_device(domain: IommuDomain, dev: Device): void {
  iommu_detach_group(domain, _singleDeviceGroup(dev));
}

/**
 * Mirrors iommu_group_replace_domain(): switches `group` to `domain` whatever is attached now,
 * without passing through the default domain (iommufd's replace). EINVAL for a foreign domain.
 */
export function iommu_group_replace_domain(group: IommuGroup, domain: IommuDomain): void {
  if (group.devices.length === 0) throw new Errno("ENODEV", `iommu group ${group.id} is empty`);
  _checkCompatible(domain, group);
  __iommu_group_set_domain(group, domain);
}

/**
 * Mirrors iommu_device_claim_dma_owner(): gives `owner` (a user such as iommufd) the DMA of the
 * group of `dev`, whose devices then sit in the blocking domain until the owner attaches its own
 * domains. Devices of one group may be claimed by the same owner again (counted).
 *
 * Errors: ENODEV without a group; EPERM when another owner holds the group, or a device of the
 * group has a kernel driver bound; EBUSY when a domain other than the default one is attached;
 * whatever allocating or attaching the blocking domain throws.
 *
 * DIVERGENCE: the driver core does not count DMA API users (iommu_device_use_default_domain()),
 * so a group with a bound driver is refused here as Linux refuses it through that count.
 */
export function iommu_device_claim_dma_owner(dev: Device, owner: object): void {
  const group = iommu_group_get(dev);
  if (group === null) throw new Errno("ENODEV", `${dev.name} is not in an iommu group`);
  if (group.owner_cnt !== 0) {
    if (group.owner !== owner) {
      throw new Errno("EPERM", `iommu group ${group.id} is owned by another user`);
    }
    group.owner_cnt++;
    return;
  }
  if (group.devices.some((d) => d.driver !== null)) {
    throw new Errno("EPERM", `iommu group ${group.id} has a device with a kernel driver`);
  }
  // Mirrors __iommu_take_dma_ownership().
  if (group.domain !== null && group.domain !== group.default_domain) {
    throw new Errno("EBUSY", `iommu group ${group.id} is not in its default domain`);
  }
  if (group.blocking_domain === null) {
    group.blocking_domain = __iommu_group_alloc_blocking_domain(group);
  }
  __iommu_group_set_domain(group, group.blocking_domain);
  group.owner = owner;
  group.owner_cnt = 1;
}

/**
 * Mirrors iommu_device_release_dma_owner(): drops one claim; the last one gives the group back
 * to its default domain and the DMA API (if the driver cannot attach it, the group stays blocked
 * and dmesg says so). EINVAL when the group is not owned (Linux WARNs).
 */
export function iommu_device_release_dma_owner(dev: Device): void {
  const group = iommu_group_get(dev);
  if (group === null || group.owner_cnt === 0) {
    throw new Errno("EINVAL", `${dev.name}: DMA ownership is not claimed`);
  }
  if (group.owner_cnt > 1) {
    group.owner_cnt--;
    return;
  }
  // Mirrors __iommu_release_dma_ownership() and its __iommu_group_set_domain_nofail(): a driver
  // failing to attach the default domain leaves the group blocked, with a warning.
  group.owner_cnt = 0;
  group.owner = null;
  try {
    __iommu_group_set_core_domain(group);
  } catch (e) {
    if (!(e instanceof Errno)) throw e;
    dev_warn(dev, `Failed to attach the default domain: ${-e.errno}`);
  }
}

/** Mirrors iommu_get_domain_for_dev(): the domain `dev` is attached to, or null. */
export function iommu_get_domain_for_dev(dev: Device): IommuDomain | null {
  return iommu_group_get(dev)?.domain ?? null;
}

/** Mirrors iommu_get_dma_domain(): the default domain the DMA API of `dev` uses, or null. */
export function iommu_get_dma_domain(dev: Device): IommuDomain | null {
  return iommu_group_get(dev)?.default_domain ?? null;
}

/**
 * struct iommu_attach_handle: what a caller attaching a domain with a handle (an SVA bind, an
 * iommufd fault-capable HWPT) finds again from a fault: the I/O page fault path looks up the
 * handle of the faulting PASID (or of the RID at IOMMU_NO_PASID) and calls its domain's
 * `iopf_handler`. Callers embed it in their own state (`IommuSva` implements it).
 */
export interface IommuAttachHandle {
  /** The domain it was attached with (set by the core). */
  domain: IommuDomain | null;
}

/** Mirrors domain_iommu_ops_compatible(): `domain` may serve devices of `ops`' IOMMUs. */
function domain_iommu_ops_compatible(ops: IommuOps, domain: IommuDomain): boolean {
  return domain.owner === ops || domain === ops.blocked_domain ||
    domain === ops.identity_domain;
}

/** Mirrors iommu_remove_dev_pasid(): the blocking domain's set_dev_pasid detaches `domain`. */
function iommu_remove_dev_pasid(dev: Device, pasid: number, domain: IommuDomain): void {
  const blocked = dev_iommu_ops(dev).blocked_domain!;
  try {
    blocked.ops.set_dev_pasid!(blocked, dev, pasid, domain);
  } catch (e) {
    // Linux WARNs: a detach cannot fail.
    if (!(e instanceof Errno)) throw e;
    dev_warn(dev, `Failed to detach PASID ${pasid}: ${-e.errno}`);
  }
}

/**
 * Mirrors __iommu_set_group_pasid(): `domain` on `pasid` of every device of `group` that has
 * PASIDs; on a failure the devices done are detached again (or put back on `old`).
 */
function __iommu_set_group_pasid(
  domain: IommuDomain,
  group: IommuGroup,
  pasid: number,
  old: IommuDomain | null,
): void {
  let done = 0;
  try {
    for (; done < group.devices.length; done++) {
      const dev = group.devices[done];
      if (_devIommu(dev)!.max_pasids > 0) domain.ops.set_dev_pasid!(domain, dev, pasid, old);
    }
  } catch (e) {
    for (let i = 0; i < done; i++) {
      const dev = group.devices[i];
      if (_devIommu(dev)!.max_pasids === 0) continue;
      if (old === null) iommu_remove_dev_pasid(dev, pasid, domain);
      else old.ops.set_dev_pasid!(old, dev, pasid, domain);
    }
    throw e;
  }
}

/**
 * Mirrors iommu_attach_device_pasid(): makes requests of `dev` (and of the rest of its group)
 * tagged with `pasid` translate through `domain`, recording `handle` (if any) so that faults on
 * the PASID reach `domain.iopf_handler`.
 *
 * Errors: ENODEV when `dev` is not behind an IOMMU; EOPNOTSUPP when the domain has no
 * `set_dev_pasid` or the IOMMU's blocking domain cannot detach PASIDs; EINVAL for
 * IOMMU_NO_PASID, a PASID a device of the group cannot tag, or a domain of another IOMMU driver;
 * EBUSY when the PASID is attached already; whatever the driver throws.
 */
export function iommu_attach_device_pasid(
  domain: IommuDomain,
  dev: Device,
  pasid: number,
  handle: IommuAttachHandle | null = null,
): void {
  const group = iommu_group_get(dev);
  if (group === null) throw new Errno("ENODEV", `${dev.name} is not behind an IOMMU`);
  const ops = dev_iommu_ops(dev);
  if (!domain.ops.set_dev_pasid || !ops.blocked_domain?.ops.set_dev_pasid) {
    throw new Errno("EOPNOTSUPP", `${dev.name}: the IOMMU cannot attach PASIDs`);
  }
  if (
    !domain_iommu_ops_compatible(ops, domain) || !Number.isInteger(pasid) ||
    pasid <= IOMMU_NO_PASID
  ) {
    throw new Errno("EINVAL", `${dev.name}: cannot attach this domain to PASID ${pasid}`);
  }
  for (const d of group.devices) {
    const max = _devIommu(d)!.max_pasids;
    // Devices without PASIDs cannot tag requests with this one: they do not matter here.
    if (max > 0 && pasid >= max) {
      throw new Errno("EINVAL", `${d.name} has PASIDs below ${max} only`);
    }
  }
  if (group.pasid_array.has(pasid)) {
    throw new Errno("EBUSY", `PASID ${pasid} of iommu group ${group.id} is attached`);
  }
  __iommu_set_group_pasid(domain, group, pasid, null);
  if (handle !== null) handle.domain = domain;
  group.pasid_array.set(pasid, { domain, handle });
}

/**
 * Mirrors iommu_detach_device_pasid(): the IOMMU's blocking domain takes `pasid` of `dev`'s
 * group back from `domain`. EINVAL when `domain` is not the one attached there (Linux trusts the
 * caller).
 */
export function iommu_detach_device_pasid(domain: IommuDomain, dev: Device, pasid: number): void {
  const group = iommu_group_get(dev);
  if (group === null || group.pasid_array.get(pasid)?.domain !== domain) {
    throw new Errno("EINVAL", `${dev.name}: PASID ${pasid} is not attached to this domain`);
  }
  for (const d of group.devices) {
    if (_devIommu(d)!.max_pasids > 0) iommu_remove_dev_pasid(d, pasid, domain);
  }
  group.pasid_array.delete(pasid);
}

/**
 * Mirrors iommu_get_domain_for_dev_pasid(): the domain on `pasid` of `dev`'s group, or null.
 * EBUSY when `type` is given and that domain is of another type.
 */
export function iommu_get_domain_for_dev_pasid(
  dev: Device,
  pasid: number,
  type = 0,
): IommuDomain | null {
  const entry = iommu_group_get(dev)?.pasid_array.get(pasid);
  if (entry === undefined) return null;
  if (type !== 0 && entry.domain.type !== type) {
    throw new Errno("EBUSY", `PASID ${pasid} of ${dev.name} holds another domain type`);
  }
  return entry.domain;
}

/**
 * Mirrors iommu_attach_handle_get(): the handle `pasid` of `group` was attached with (the RID's
 * at IOMMU_NO_PASID). ENOENT when there is none; EBUSY when `type` is given and its domain is of
 * another type.
 */
export function iommu_attach_handle_get(
  group: IommuGroup,
  pasid: number,
  type: number,
): IommuAttachHandle {
  const entry = group.pasid_array.get(pasid);
  if (entry === undefined || entry.handle === null) {
    throw new Errno("ENOENT", `No attach handle on PASID ${pasid} of iommu group ${group.id}`);
  }
  if (type !== 0 && entry.domain.type !== type) {
    throw new Errno("EBUSY", `PASID ${pasid} of iommu group ${group.id} holds another type`);
  }
  return entry.handle;
}

/**
 * Mirrors iommu_attach_group_handle(): {@linkcode iommu_attach_group} that also records
 * `handle` for the RID (IOMMU_NO_PASID), so faults without a PASID reach the domain's
 * `iopf_handler` (iommufd's fault-capable HWPTs). EBUSY when the RID has a handle already.
 */
export function iommu_attach_group_handle(
  domain: IommuDomain,
  group: IommuGroup,
  handle: IommuAttachHandle,
): void {
  if (group.pasid_array.has(IOMMU_NO_PASID)) {
    throw new Errno("EBUSY", `iommu group ${group.id} has an attach handle`);
  }
  iommu_attach_group(domain, group);
  handle.domain = domain;
  group.pasid_array.set(IOMMU_NO_PASID, { domain, handle });
}

/**
 * Mirrors iommu_detach_group_handle(): the group goes back to its default (or blocking) domain
 * and the RID's handle is forgotten. EINVAL when `domain` is not attached.
 */
export function iommu_detach_group_handle(domain: IommuDomain, group: IommuGroup): void {
  iommu_detach_group(domain, group);
  group.pasid_array.delete(IOMMU_NO_PASID);
}

/**
 * Mirrors iommu_alloc_global_pasid(): a PASID from the kernel's global space (the same value on
 * every IOMMU, as SVA wants for one mm), in [IOMMU_FIRST_GLOBAL_PASID, max_pasids of `dev`).
 * ENOSPC when `dev` has no PASIDs or none is left (Linux returns IOMMU_PASID_INVALID).
 */
export function iommu_alloc_global_pasid(dev: Device): number {
  const max = _devIommu(dev)?.max_pasids ?? 0;
  if (max <= IOMMU_FIRST_GLOBAL_PASID) throw new Errno("ENOSPC", `${dev.name} has no PASIDs`);
  return ida_alloc_range(_core(dev.kernel)._pasidIda, IOMMU_FIRST_GLOBAL_PASID, max - 1);
}

/**
 * Mirrors iommu_free_global_pasid(): gives `pasid` back. EINVAL when it is not allocated.
 *
 * DIVERGENCE: takes the kernel, whose core holds the PASID space (Linux's is a global IDA).
 */
export function iommu_free_global_pasid(kernel: Kernel, pasid: number): void {
  ida_free(_core(kernel)._pasidIda, pasid);
}

/** Mirrors device_iommu_capable(): false when `dev` has no IOMMU or the driver says no. */
export function device_iommu_capable(dev: Device, cap: number): boolean {
  const ops = _devIommu(dev)?.iommu_dev?.ops;
  return ops?.capable?.(dev, cap) ?? false;
}

/** Index of the largest page size usable at `iova`/`paddr` for `size` bytes. */
function _pgsizeIdx(sizes: readonly number[], iova: number, paddr: number, size: number): number {
  let i = sizes.length - 1;
  while (i > 0 && (sizes[i] > size || iova % sizes[i] !== 0 || paddr % sizes[i] !== 0)) i--;
  return i;
}

/**
 * How many pages of `sizes[idx]` to map in one go: all of `size`, unless the next larger page
 * size could take over at an aligned boundary inside it. Mirrors iommu_pgsize()'s count.
 */
function _pgcount(
  sizes: readonly number[],
  idx: number,
  iova: number,
  paddr: number,
  size: number,
): number {
  const pgsize = sizes[idx];
  if (idx + 1 < sizes.length) {
    const next = sizes[idx + 1];
    if ((iova - paddr) % next === 0) {
      const offset = next - iova % next;
      if (offset + next <= size) size = offset;
    }
  }
  return Math.floor(size / pgsize);
}

/** Validates a range for map/unmap; returns an errno name or null. */
function _checkRange(
  domain: IommuDomain,
  iova: number,
  size: number,
): "EINVAL" | "EOVERFLOW" | null {
  if ((domain.type & __IOMMU_DOMAIN_PAGING) === 0 || domain.pgsize_bitmap === 0) return "EINVAL";
  if (!Number.isInteger(iova) || !Number.isInteger(size) || iova < 0 || size <= 0) return "EINVAL";
  if (iova + size - 1 > Number.MAX_SAFE_INTEGER) return "EOVERFLOW";
  return null;
}

/**
 * Mirrors iommu_map_nosync(): maps `size` bytes at `iova` to `paddr`, in the largest page sizes
 * alignment allows, without iotlb_sync_map. Unwinds what it mapped on failure.
 *
 * Errors: EINVAL for a non-paging domain, size 0 or an address/size not aligned to the
 * smallest page size; EOVERFLOW when `iova + size` wraps; ENODEV when the domain cannot map;
 * whatever the driver throws (ENOMEM, EADDRINUSE, ERANGE...).
 */
export function iommu_map_nosync(
  domain: IommuDomain,
  iova: number,
  paddr: number,
  size: number,
  prot: number,
): void {
  const bad = _checkRange(domain, iova, size);
  if (bad !== null) throw new Errno(bad, `Cannot map ${hex(size)} bytes at IOVA ${hex(iova)}`);
  const map_pages = domain.ops.map_pages;
  if (!map_pages) throw new Errno("ENODEV", "Domain has no map_pages");
  const sizes = domain.pgsizes;
  const min = sizes[0];
  if (!Number.isSafeInteger(paddr) || paddr < 0 || iova % min || paddr % min || size % min) {
    throw new Errno("EINVAL", `Unaligned map of ${hex(size)} bytes at IOVA ${hex(iova)}`);
  }
  const mapped = domain._mapped;
  const origIova = iova;
  let left = size;
  try {
    while (left > 0) {
      const idx = _pgsizeIdx(sizes, iova, paddr, left);
      const count = _pgcount(sizes, idx, iova, paddr, left);
      mapped.bytes = 0;
      try {
        map_pages(domain, iova, paddr, sizes[idx], count, prot, mapped);
      } finally {
        left -= mapped.bytes;
      }
      if (mapped.bytes === 0) throw new Errno("EINVAL", "map_pages mapped nothing");
      iova += mapped.bytes;
      paddr += mapped.bytes;
    }
  } catch (e) {
    if (size - left > 0) iommu_unmap(domain, origIova, size - left);
    throw e;
  }
}

/** Mirrors iommu_sync_map(): makes new mappings visible to the IOMMU. */
export function iommu_sync_map(domain: IommuDomain, iova: number, size: number): void {
  domain.ops.iotlb_sync_map?.(domain, iova, size);
}

/**
 * Mirrors iommu_map(): {@linkcode iommu_map_nosync} then iotlb_sync_map; nothing stays mapped
 * when it throws.
 *
 * @example Mapping and translating through a mock domain
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_READ, iommu_iova_to_phys, iommu_map, iommu_unmap } from "@iommu-lab/iommu";
 * import { mockPagingDomain } from "@iommu-lab/iommu/testing";
 *
 * const domain = mockPagingDomain();
 * iommu_map(domain, 0x10_0000, 0x8020_0000, 0x2000, IOMMU_READ);
 * assert.equal(iommu_iova_to_phys(domain, 0x10_1234), 0x8020_1234);
 * assert.equal(iommu_unmap(domain, 0x10_0000, 0x2000), 0x2000);
 * assert.equal(iommu_iova_to_phys(domain, 0x10_1234), 0);
 * ```
 */
export function iommu_map(
  domain: IommuDomain,
  iova: number,
  paddr: number,
  size: number,
  prot: number,
): void {
  iommu_map_nosync(domain, iova, paddr, size, prot);
  if (!domain.ops.iotlb_sync_map) return;
  try {
    domain.ops.iotlb_sync_map(domain, iova, size);
  } catch (e) {
    iommu_unmap(domain, iova, size);
    throw e;
  }
}

/**
 * Mirrors iommu_unmap_fast(): unmaps up to `size` bytes from `iova`, recording the invalidation
 * in `gather` without doing it. Returns the bytes unmapped: it stops at the first hole, so 0 when
 * nothing is mapped at `iova`, and 0 (as Linux) for a non-paging domain, a zero or overflowing
 * size, or an unaligned range.
 */
export function iommu_unmap_fast(
  domain: IommuDomain,
  iova: number,
  size: number,
  gather: IommuIotlbGather,
): number {
  if (_checkRange(domain, iova, size) !== null) return 0;
  const unmap_pages = domain.ops.unmap_pages;
  const sizes = domain.pgsizes;
  if (!unmap_pages || iova % sizes[0] !== 0 || size % sizes[0] !== 0) return 0;
  let unmapped = 0;
  while (unmapped < size) {
    const idx = _pgsizeIdx(sizes, iova, iova, size - unmapped);
    const count = _pgcount(sizes, idx, iova, iova, size - unmapped);
    let n: number;
    try {
      n = unmap_pages(domain, iova, sizes[idx], count, gather);
    } catch (e) {
      // unmap_pages returns 0 on error in Linux: so does the core, for any driver.
      if (e instanceof Errno) break;
      throw e;
    }
    if (n === 0) break;
    iova += n;
    unmapped += n;
  }
  return unmapped;
}

/**
 * Mirrors iommu_unmap(): {@linkcode iommu_unmap_fast} then iotlb_sync; returns the bytes
 * unmapped (0 for a double unmap or bad arguments).
 */
export function iommu_unmap(domain: IommuDomain, iova: number, size: number): number {
  const gather = domain._gather;
  gather.reset();
  const n = iommu_unmap_fast(domain, iova, size, gather);
  iommu_iotlb_sync(domain, gather);
  return n;
}

/** Mirrors iommu_iotlb_gather_init(): an empty gather. */
export function iommu_iotlb_gather_init(): IommuIotlbGather {
  return new IommuIotlbGather();
}

/**
 * Mirrors iommu_iotlb_sync(): lets the driver invalidate what `gather` collected, then frees the
 * gather's table pages (if the driver did not) and empties it.
 */
export function iommu_iotlb_sync(domain: IommuDomain, gather: IommuIotlbGather): void {
  if (gather.isEmpty) return;
  domain.ops.iotlb_sync?.(domain, gather);
  gather.putPages();
  gather.reset();
}

/** Mirrors iommu_flush_iotlb_all(). */
export function iommu_flush_iotlb_all(domain: IommuDomain): void {
  domain.ops.flush_iotlb_all?.(domain);
}

/**
 * Mirrors iommu_iova_to_phys(): the physical address `iova` maps to; `iova` itself in an
 * identity domain, 0 when unmapped.
 */
export function iommu_iova_to_phys(domain: IommuDomain, iova: number): number {
  if (domain.type === IOMMU_DOMAIN_IDENTITY) return iova;
  return domain.ops.iova_to_phys?.(domain, iova) ?? 0;
}
