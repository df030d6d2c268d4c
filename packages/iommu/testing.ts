/**
 * A mock IOMMU driver for tests and benchmarks (`@iommu-lab/iommu/testing`), in the spirit of
 * the iommufd selftest's mock domain: the "hardware" is a map of which domain each device is
 * attached to, and the invalidation ops only count. A paging domain keeps its mappings in a
 * {@linkcode MockPageTable}: by default a {@linkcode MockMapTable}, a map of leaves (as the
 * selftest's mock domain kept an xarray before it moved to generic_pt); a package above this one
 * plugs in a real page table (`@iommu-lab/generic-pt/testing` has `ptMockTable`) so that the
 * core is tested without importing what it sits below.
 *
 * @module
 */
import {
  type Bus,
  bus_register,
  Device,
  device_add,
  DeviceTree,
  type DtNode,
  Errno,
  type FwNode,
  hex,
  Kernel,
  kfree,
  kmalloc,
  type MmStruct,
  type PhysMem,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import {
  generic_device_group,
  iommu_device_register,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  iommu_subsys_init,
  type IommuCoreOptions,
  IommuDevice,
  IommuDomain,
  type IommuDomainOps,
  type IommuIotlbGather,
  type IommuOps,
  pci_device_group,
} from "./iommu.ts";

/** What a mock paging domain needs from its page table (generic-pt's PtIommu has this shape). */
export interface MockPageTable {
  /** Leaf sizes the table offers. */
  readonly pgsize_bitmap: number;
  /**
   * Maps `pgcount` leaves of `pgsize` bytes from `iova` to `paddr`; returns the bytes mapped.
   * Throws EINVAL (unaligned), ERANGE (outside the IOVA space) or EADDRINUSE (already mapped).
   */
  map_pages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number;
  /**
   * Unmaps from `iova` up to `pgcount` leaves of `pgsize` bytes, recording the range in
   * `gather`; returns the bytes unmapped, stopping at the first hole.
   */
  unmap_pages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather): number;
  /** The physical address `iova` maps to, or 0. */
  iova_to_phys(iova: number): number;
  /** Frees whatever the table holds. */
  deinit(): void;
}

/** What a {@linkcode MockPageTableFactory} gets to build a domain's table with. */
export interface MockPageTableConfig {
  /** The kernel's physical memory (where a real table lives). */
  mem: PhysMem;
  /** Table pages, from the kernel page allocator. */
  alloc: { allocTable(order: number): number; freeTable(pa: number, order: number): void };
  /** IOVA width: 39, 48 or 57. */
  vaBits: number;
  /** Offer 64 KiB leaves. */
  svnapot: boolean;
  /** Counts an IOTLB sync a table does on its own (when a map replaces tables). */
  iotlbSync: () => void;
}

/** Builds the page table of a new mock paging domain. */
export type MockPageTableFactory = (cfg: MockPageTableConfig) => MockPageTable;

const SZ_4K = 4096;
const SZ_64K = 0x1_0000;

/**
 * A page table without tables: leaves in a map keyed by IOVA, with the leaf sizes and the
 * map/unmap contract of a riscv64 table of the same width (leaves of 4 KiB and 2^9 times that up
 * to the top level, 64 KiB with Svnapot; only the lower half of the IOVA space). Unmapping part
 * of a leaf unmaps the whole leaf, as generic-pt does.
 */
export class MockMapTable implements MockPageTable {
  /** Leaf sizes: 4 KiB, 2 MiB, 1 GiB, ... (and 64 KiB with Svnapot). */
  readonly pgsize_bitmap: number;
  /** The leaves: IOVA → size and physical address. */
  readonly leaves: Map<number, { size: number; paddr: number }> = new Map();
  readonly #sizes: number[] = [];
  readonly #end: number;

  /** A table of `cfg.vaBits` bits, with 64 KiB leaves when `cfg.svnapot`. */
  constructor(cfg: Pick<MockPageTableConfig, "vaBits" | "svnapot">) {
    let bitmap = cfg.svnapot ? SZ_64K : 0;
    for (let shift = 12; shift < cfg.vaBits; shift += 9) bitmap += 2 ** shift;
    this.pgsize_bitmap = bitmap;
    for (let sz = SZ_4K; sz <= bitmap; sz *= 2) {
      if (Math.floor(bitmap / sz) % 2 === 1) this.#sizes.push(sz);
    }
    this.#end = 2 ** (cfg.vaBits - 1);
  }

  /** See {@linkcode MockPageTable.map_pages}. */
  map_pages(iova: number, paddr: number, pgsize: number, pgcount: number, _prot: number): number {
    if (!this.#sizes.includes(pgsize) || iova % pgsize !== 0 || paddr % pgsize !== 0) {
      throw new Errno("EINVAL", `Cannot map ${hex(iova)}: bad size or alignment`);
    }
    if (iova < 0 || iova + pgsize * pgcount > this.#end) {
      throw new Errno("ERANGE", `IOVA ${hex(iova)} is outside the IOVA space`);
    }
    for (let i = 0; i < pgcount; i++) {
      const at = iova + i * pgsize;
      if (this.#leafAt(at) !== undefined || this.#leafWithin(at, pgsize)) {
        for (let j = 0; j < i; j++) this.leaves.delete(iova + j * pgsize);
        throw new Errno("EADDRINUSE", `IOVA ${hex(at)} is already mapped`);
      }
      this.leaves.set(at, { size: pgsize, paddr: paddr + i * pgsize });
    }
    return pgsize * pgcount;
  }

  /** See {@linkcode MockPageTable.unmap_pages}. */
  unmap_pages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather): number {
    let done = 0;
    while (done < pgsize * pgcount) {
      const leaf = this.leaves.get(iova + done);
      if (leaf === undefined) break;
      this.leaves.delete(iova + done);
      gather.addRange((iova + done) / SZ_4K, leaf.size / SZ_4K);
      gather.leafLevels |= 1 << Math.floor(Math.log2(leaf.size / SZ_4K) / 9);
      done += leaf.size;
    }
    return done;
  }

  /** See {@linkcode MockPageTable.iova_to_phys}. */
  iova_to_phys(iova: number): number {
    const at = this.#leafAt(iova);
    return at === undefined ? 0 : this.leaves.get(at)!.paddr + iova - at;
  }

  /** Drops every leaf. */
  deinit(): void {
    this.leaves.clear();
  }

  /** Start of the leaf holding `iova`, if any. */
  #leafAt(iova: number): number | undefined {
    for (const sz of this.#sizes) {
      const at = iova - iova % sz;
      if (this.leaves.get(at)?.size === sz) return at;
    }
    return undefined;
  }

  /** True when a leaf starts inside `(iova, iova + size)`. */
  #leafWithin(iova: number, size: number): boolean {
    if (size === SZ_4K) return false;
    for (const at of this.leaves.keys()) if (at > iova && at < iova + size) return true;
    return false;
  }
}

/** Options of a {@linkcode MockIommu}. */
export interface MockIommuOptions {
  /** Name of the IOMMU's firmware node. */
  name?: string;
  /** IOVA width of paging domains: 39 (default), 48 or 57. */
  vaBits?: number;
  /** Offer 64 KiB Svnapot pages. */
  svnapot?: boolean;
  /** Group devices as PCI functions (pci_device_group) rather than one per device. */
  pci?: boolean;
  /** Provide a static identity domain (default true). */
  identity?: boolean;
  /** Provide a static blocked domain and use it as the release domain (default true). */
  blocked?: boolean;
  /** The def_domain_type hook. */
  defDomainType?: (dev: Device) => number;
  /** Builds each paging domain's table (default: a {@linkcode MockMapTable}). */
  pageTable?: MockPageTableFactory;
  /**
   * PASIDs the IOMMU supports (default 0). With some, domains and the blocked domain take
   * `set_dev_pasid`, page responses are recorded and `domain_alloc_sva` gives SVA domains.
   */
  pasids?: number;
}

/** A paging domain of a {@linkcode MockIommu}. */
export class MockDomain extends IommuDomain {
  /** The page table. */
  readonly pt: MockPageTable;

  /**
   * Allocates the domain in the driver's kernel slab, then its table with `pageTable` (ENOMEM
   * from either).
   */
  constructor(
    readonly driver: MockIommu | null,
    mem: PhysMem,
    alloc: { allocTable(order: number): number; freeTable(pa: number, order: number): void },
    vaBits: number,
    svnapot: boolean,
    pageTable: MockPageTableFactory = (cfg) => new MockMapTable(cfg),
  ) {
    super(IOMMU_DOMAIN_UNMANAGED, mockDomainOps);
    if (driver !== null) kmalloc(driver.kernel, this);
    try {
      this.pt = pageTable({
        mem,
        alloc,
        vaBits,
        svnapot,
        iotlbSync: () => driver !== null && driver.stats.iotlb_sync++,
      });
    } catch (e) {
      if (driver !== null) kfree(driver.kernel, this);
      throw e;
    }
    this.pgsize_bitmap = this.pt.pgsize_bitmap;
    this.geometry.aperture_end = 2 ** (vaBits - 1) - 1;
  }
}

function _pt(domain: IommuDomain): MockPageTable {
  return (domain as MockDomain).pt;
}

/** The domain ops of {@linkcode MockDomain}s. */
export const mockDomainOps: IommuDomainOps = {
  attach_dev(domain, dev, old) {
    const drv = (domain as MockDomain).driver;
    if (drv === null) throw new Errno("EINVAL", "Domain has no IOMMU");
    drv._attach(domain, dev, old);
  },
  map_pages(domain, iova, paddr, pgsize, pgcount, prot, mapped) {
    mapped.bytes = _pt(domain).map_pages(iova, paddr, pgsize, pgcount, prot);
  },
  unmap_pages(domain, iova, pgsize, pgcount, gather: IommuIotlbGather) {
    return _pt(domain).unmap_pages(iova, pgsize, pgcount, gather);
  },
  iotlb_sync(domain, gather) {
    const drv = (domain as MockDomain).driver;
    if (drv === null) return;
    drv.stats.iotlb_sync++;
    drv.onIotlbSync?.(gather);
  },
  flush_iotlb_all(domain) {
    const drv = (domain as MockDomain).driver;
    if (drv !== null) drv.stats.flush_iotlb_all++;
  },
  iova_to_phys(domain, iova) {
    return _pt(domain).iova_to_phys(iova);
  },
  set_dev_pasid(domain, dev, pasid, old) {
    (domain as MockDomain).driver!._setPasid(domain, dev, pasid, old);
  },
  free(domain) {
    _pt(domain).deinit();
    const drv = (domain as MockDomain).driver;
    if (drv !== null) kfree(drv.kernel, domain);
  },
};

/**
 * A mock IOMMU driver instance: probe allocates a page per device (its "device context"),
 * paging domains are {@linkcode MockDomain}s in the kernel's RAM, so the kernel page
 * allocator's failNth reaches every allocation of probe, domain allocation and map.
 */
export class MockIommu {
  /** The registered instance. */
  readonly iommu: IommuDevice = new IommuDevice();
  /** The node devices name in their fwspec. */
  readonly fwnode: FwNode;
  /** The driver's ops. */
  readonly ops: IommuOps;
  /** How often each invalidation op ran. */
  readonly stats = { iotlb_sync: 0, flush_iotlb_all: 0 };
  /** Called by every iotlb_sync of this instance's domains, before the core frees the tables. */
  onIotlbSync: ((gather: IommuIotlbGather) => void) | null = null;
  /** Every attach_dev call that succeeded, in order. */
  readonly attachLog: { dev: Device; domain: IommuDomain; old: IommuDomain | null }[] = [];
  /** What each device's context points at (the "hardware" state). */
  readonly attached: Map<Device, IommuDomain> = new Map();
  /** Devices whose next attach fails with ENOSPC (an injected hardware error). */
  readonly failAttach: Set<Device> = new Set();
  /** Device context pages by device. */
  readonly contexts: Map<Device, number> = new Map();
  /** What each PASID of each device is attached to (the "hardware" state). */
  readonly pasidAttached: Map<Device, Map<number, IommuDomain>> = new Map();
  /** Every page response sent (`page_response`), in order. */
  readonly responses: { dev: Device; pasid: number; grpid: number; code: number }[] = [];

  /** A driver for `kernel` with `opts`. */
  constructor(readonly kernel: Kernel, opts: MockIommuOptions = {}) {
    this.fwnode = { name: opts.name ?? "iommu@0" };
    const vaBits = opts.vaBits ?? 39;
    const svnapot = opts.svnapot ?? false;
    const alloc = {
      allocTable: (order: number) => kernel.pages.alloc(order),
      freeTable: (pa: number, order: number) => kernel.pages.free(pa, order),
    };
    const attachOnly: IommuDomainOps = { attach_dev: (d, dev, old) => this._attach(d, dev, old) };
    const pasids = opts.pasids ?? 0;
    this.iommu.max_pasids = pasids;
    const blocked = opts.blocked ?? true
      ? new IommuDomain(
        IOMMU_DOMAIN_BLOCKED,
        pasids === 0 ? attachOnly : {
          ...attachOnly,
          set_dev_pasid: (d, dev, pasid, old) => this._setPasid(d, dev, pasid, old),
        },
      )
      : undefined;
    this.ops = {
      probe_device: (dev) => {
        if (dev.fwspec === null || dev.fwspec.ids.length === 0) {
          throw new Errno("ENODEV", `${dev.name} has no device ID`);
        }
        this.contexts.set(dev, kernel.pages.alloc(0));
        return this.iommu;
      },
      release_device: (dev) => {
        kernel.pages.free(this.contexts.get(dev)!, 0);
        this.contexts.delete(dev);
        this.attached.delete(dev);
        this.pasidAttached.delete(dev);
      },
      device_group: opts.pci ? pci_device_group : generic_device_group,
      domain_alloc_paging: () =>
        new MockDomain(this, kernel.mem, alloc, vaBits, svnapot, opts.pageTable),
      capable: () => true,
      identity_domain: opts.identity ?? true
        ? new IommuDomain(IOMMU_DOMAIN_IDENTITY, attachOnly)
        : undefined,
      blocked_domain: blocked,
      release_domain: blocked,
      def_domain_type: opts.defDomainType,
    };
    if (pasids !== 0) {
      this.ops.page_response = (dev, _evt, msg) =>
        void this.responses.push({ dev, pasid: msg.pasid, grpid: msg.grpid, code: msg.code });
      this.ops.domain_alloc_sva = (_dev: Device, _mm: MmStruct) =>
        kmalloc(kernel, new IommuDomain(0, mockSvaDomainOps(this)));
    }
  }

  /** Registers the instance with `hwdev` as its device (iommu_device_register()). */
  register(hwdev: Device): void {
    iommu_device_register(this.iommu, this.ops, hwdev);
  }

  /**
   * The attach_dev of every mock domain: EINVAL across instances, ENOSPC when injected.
   * @ignore package-private
   */
  _attach(domain: IommuDomain, dev: Device, old: IommuDomain | null): void {
    const own = domain instanceof MockDomain
      ? domain.driver === this
      : domain === this.ops.identity_domain || domain === this.ops.blocked_domain;
    if (!own) throw new Errno("EINVAL", `Domain is not from ${this.fwnode.name}`);
    if (this.failAttach.delete(dev)) throw new Errno("ENOSPC", "Injected attach failure");
    this.attached.set(dev, domain);
    this.attachLog.push({ dev, domain, old });
  }

  /**
   * The set_dev_pasid of every mock domain and of the blocked one (which detaches): ENOSPC when
   * injected for the device.
   */
  _setPasid(domain: IommuDomain, dev: Device, pasid: number, _old: IommuDomain | null): void {
    if (this.failAttach.delete(dev)) throw new Errno("ENOSPC", "Injected PASID attach failure");
    const table = this.pasidAttached.get(dev) ?? new Map<number, IommuDomain>();
    if (domain === this.ops.blocked_domain) table.delete(pasid);
    else table.set(pasid, domain);
    this.pasidAttached.set(dev, table);
  }
}

/** The ops of a {@linkcode MockIommu}'s SVA domains: PASID attach, and free. */
function mockSvaDomainOps(drv: MockIommu): IommuDomainOps {
  return {
    set_dev_pasid: (d, dev, pasid, old) => drv._setPasid(d, dev, pasid, old),
    free: (d) => kfree(drv.kernel, d),
  };
}

/** A kernel on test RAM with the IOMMU core set up, a "mock" bus and an IOMMU device on it. */
export interface MockSystem {
  /** The kernel. */
  readonly kernel: Kernel;
  /**
   * A bus whose dma_configure probes devices into their IOMMU (of_dma_configure's part); a
   * driver matches the devices whose name starts with the driver's.
   */
  readonly bus: Bus;
  /** The IOMMU's own device. */
  readonly hwdev: Device;
  /** The driver. */
  readonly drv: MockIommu;
  /**
   * Adds a device with ID `id` behind the IOMMU (fwspec as of_xlate would leave it); device_add
   * probes it into the core, or iommu_device_register() does if the IOMMU is not registered yet.
   * With `pasidBits`, its firmware node has `pasid-num-bits` (it tags PASIDs of that width).
   */
  addDevice(name: string, id: number, pasidBits?: number): Device;
}

/**
 * Builds a {@linkcode MockSystem}: RAM at 2 GiB of `ramSize` bytes, the core with `core`
 * options, and a {@linkcode MockIommu} (registered unless `register` is false).
 *
 * @example DMA through the mock IOMMU
 * ```ts
 * import assert from "node:assert/strict";
 * import { dma_map_page, dma_unmap_page, DMA_TO_DEVICE } from "@iommu-lab/kernel";
 * import { iommu_get_domain_for_dev, iommu_iova_to_phys } from "@iommu-lab/iommu";
 * import { mockSystem } from "@iommu-lab/iommu/testing";
 *
 * const sys = mockSystem();
 * const dev = sys.addDevice("dma0", 1);
 * const page = sys.kernel.pages.alloc(0);
 * const addr = dma_map_page(dev, page, 0x10, 64, DMA_TO_DEVICE);
 * assert.equal(iommu_iova_to_phys(iommu_get_domain_for_dev(dev)!, addr), page + 0x10);
 * dma_unmap_page(dev, addr, 64, DMA_TO_DEVICE);
 * ```
 */
export function mockSystem(
  opts: {
    ramSize?: number;
    core?: IommuCoreOptions;
    iommu?: MockIommuOptions;
    register?: boolean;
  } = {},
): MockSystem {
  const ramSize = opts.ramSize ?? 64 * 2 ** 20;
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, ramSize) });
  iommu_subsys_init(kernel, opts.core);
  const bus = bus_register(kernel, {
    name: "mock",
    match: (dev, drv) => dev.name.startsWith(drv.name),
    dmaConfigure(dev) {
      const layer = kernel.iommuLayer!;
      if (dev.fwspec === null || dev.iommu !== null) return;
      if (layer.ofXlate(dev.fwspec.fwnode) === null) throw new Errno("EPROBE_DEFER");
      layer.probeDevice(dev);
    },
  });
  const drv = new MockIommu(kernel, opts.iommu);
  const hwdev = new Device(kernel, { name: "3010000.iommu", fwnode: drv.fwnode });
  if (opts.register ?? true) drv.register(hwdev);
  return {
    kernel,
    bus,
    hwdev,
    drv,
    addDevice(name, id, pasidBits) {
      let fwnode: DtNode | null = null;
      if (pasidBits !== undefined) {
        fwnode = new DeviceTree().root.addChild(name).set("pasid-num-bits", [pasidBits]);
      }
      const dev = new Device(kernel, { name, bus, fwnode });
      dev.fwspec = { fwnode: drv.fwnode, ids: [id], flags: 0 };
      device_add(dev);
      return dev;
    },
  };
}

/**
 * A standalone unmanaged paging domain on its own test RAM, for map/unmap tests that need no
 * devices. Its IOVA width is 39 bits unless `vaBits` says otherwise; its table comes from
 * `pageTable` (default: a {@linkcode MockMapTable}).
 */
export function mockPagingDomain(
  vaBits = 39,
  svnapot = false,
  pageTable?: MockPageTableFactory,
): MockDomain {
  const ram = new TestRam(0x8000_0000, 1 << 26);
  const kernel = new Kernel({ mem: ram });
  const alloc = {
    allocTable: (order: number) => kernel.pages.alloc(order),
    freeTable: (pa: number, order: number) => kernel.pages.free(pa, order),
  };
  return new MockDomain(null, ram, alloc, vaBits, svnapot, pageTable);
}
