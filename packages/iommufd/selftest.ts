/**
 * The iommufd selftest's kernel side: a mock IOMMU driver whose devices sit on their own bus,
 * mock paging domains (MOCK_PAGE_SIZE pages, an optional huge-page variant, software dirty
 * tracking), and the IOMMU_TEST_CMD ioctl that creates mock devices and inspects mock domains.
 * Mirrors drivers/iommu/iommufd/selftest.c.
 *
 * The mock's page table is the pre-generic_pt one of Linux: one 64-bit entry per
 * MOCK_PAGE_SIZE of IOVA (physical address, present/huge/dirty bits), in leaf tables of 512
 * entries that come from the kernel's page allocator, so fail-nth reaches every map. It does not
 * model the RISC-V rule that a writable leaf needs D set while tracking is off (see the README).
 *
 * @module
 */
import {
  type Bus,
  bus_register,
  copy_from_user,
  Device,
  device_add,
  device_del,
  Errno,
  type FwNode,
  Ida,
  ida_alloc,
  ida_free,
  type Kernel,
  kfree,
  kmalloc,
  PAGE_SIZE,
  pin_user_pages,
  unpin_user_pages,
} from "@iommu-lab/kernel";
import {
  generic_device_group,
  IOMMU_CAP_CACHE_COHERENCY,
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_device_register,
  iommu_dirty_bitmap_record,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_iova_to_phys,
  IommuDevice,
  type IommuDirtyOps,
  IommuDomain,
  type IommuDomainOps,
  type IommuHwInfo,
  type IommuOps,
  type IommuUserData,
} from "@iommu-lab/iommu";
import {
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_device_detach,
  iommufd_device_replace,
  iommufd_device_unbind,
  type IommufdDevice,
} from "./device.ts";
import type { IommufdHwptPaging } from "./hw_pagetable.ts";
import { iommufd_get_ioas } from "./ioas.ts";
import { iopt_reserve_iova } from "./io_pagetable.ts";
import {
  IOCTL_OP,
  type IommuFd,
  type Iommufd,
  iommufd_get_object,
  IOMMUFD_OBJ_HWPT_PAGING,
  iommufd_object_abort,
  iommufd_object_alloc,
  iommufd_object_finalize,
  iommufd_put_object,
  iommufd_ucmd_respond,
  IommufdObject,
  type IommufdUcmd,
} from "./iommufd_private.ts";
import {
  IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_DATA_SELFTEST,
  iommu_hwpt_selftest,
  IOMMU_TEST_CMD,
  iommu_test_cmd,
  iommu_test_hw_info,
  IOMMU_TEST_OP_ADD_RESERVED,
  IOMMU_TEST_OP_DIRTY,
  IOMMU_TEST_OP_MD_CHECK_MAP,
  IOMMU_TEST_OP_MD_CHECK_REFS,
  IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_HUGE_PAGE_SIZE,
  MOCK_IOMMUPT_DEFAULT,
  MOCK_IOMMUPT_HUGE,
  MOCK_PAGE_SIZE,
} from "./iommufd_test_h.ts";
import { _uapi_struct_from_bytes, IOMMU_HWPT_DATA_NONE, offsetofend } from "./uapi.ts";

/** enum iommufd_object_type IOMMUFD_OBJ_SELFTEST: a mock device's handle. */
export const IOMMUFD_OBJ_SELFTEST = 11;

/** mock->flags: dirty tracking is on. */
const MOCK_DIRTY_TRACK = 1;

/** Entry bits (the low bits of a MOCK_PAGE_SIZE-aligned physical address). */
const MOCK_PTE_PRESENT = 1 << 0;
const MOCK_PTE_HUGE = 1 << 1;
const MOCK_PTE_DIRTY = 1 << 2;
const ENTRIES_PER_LEAF = 512;
const LEAF_SPAN = ENTRIES_PER_LEAF * MOCK_PAGE_SIZE;

/** struct mock_dev: a device on the mock bus. */
export class MockDev extends Device {
  /** MOCK_FLAGS_DEVICE_* flags. */
  readonly flags: number;
  /** Index of the device (its name and device ID). */
  readonly index: number;

  /** A mock device of the selftest `st` (not added yet). */
  constructor(st: IommufdSelftest, index: number, flags: number) {
    super(st.kernel, { name: `iommufd_mock${index}`, bus: st.bus });
    this.flags = flags;
    this.index = index;
  }
}

/** struct mock_iommu_domain: a paging domain of the mock IOMMU. */
export class MockIommuDomain extends IommuDomain {
  /** MOCK_DIRTY_TRACK. */
  flags = 0;
  /** Leaf table (physical address) per LEAF_SPAN of IOVA. */
  readonly leaves: Map<number, number> = new Map();
  /** Present entries per leaf, to free a leaf when it empties. */
  readonly used: Map<number, number> = new Map();

  /** A mock domain of `st`: huge pages with `huge`, dirty ops with `dirty`. */
  constructor(readonly st: IommufdSelftest, readonly huge: boolean, dirty: boolean) {
    super(IOMMU_DOMAIN_UNMANAGED, mockDomainOps, {
      pgsize_bitmap: huge ? MOCK_HUGE_PAGE_SIZE | PAGE_SIZE : MOCK_PAGE_SIZE,
      geometry: { aperture_start: MOCK_APERTURE_START, aperture_end: MOCK_APERTURE_LAST },
    });
    if (dirty) this.dirty_ops = mockDirtyOps;
  }
}

/** Address of the entry for `iova`, or -1 when its leaf does not exist. */
function _pte(mock: MockIommuDomain, iova: number): number {
  const leaf = mock.leaves.get(Math.floor(iova / LEAF_SPAN));
  if (leaf === undefined) return -1;
  return leaf + (Math.floor(iova / MOCK_PAGE_SIZE) % ENTRIES_PER_LEAF) * 8;
}

function _read(mock: MockIommuDomain, pte: number): number {
  const mem = mock.st.kernel.mem;
  mem.load64(pte);
  return mem.hi * 2 ** 32 + mem.lo;
}

function _write(mock: MockIommuDomain, pte: number, v: number): void {
  mock.st.kernel.mem.store64(pte, v % 2 ** 32 >>> 0, Math.floor(v / 2 ** 32));
}

/** The flag bits of entry `iova` (0: not mapped); the address is the rest of the entry. */
function _entry(mock: MockIommuDomain, iova: number): number {
  const pte = _pte(mock, iova);
  return pte < 0 ? 0 : _read(mock, pte) % MOCK_PAGE_SIZE;
}

/** Maps one page of `pgsize` at `iova` (ENOMEM for a leaf, EADDRINUSE over a mapping). */
function _map_one(mock: MockIommuDomain, iova: number, pa: number, pgsize: number): void {
  const flags = MOCK_PTE_PRESENT | (pgsize === MOCK_HUGE_PAGE_SIZE ? MOCK_PTE_HUGE : 0);
  for (let off = 0; off < pgsize; off += MOCK_PAGE_SIZE) {
    if (_entry(mock, iova + off) & MOCK_PTE_PRESENT) {
      _unmap_range(mock, iova, off);
      throw new Errno("EADDRINUSE", `IOVA 0x${(iova + off).toString(16)} is mapped`);
    }
  }
  for (let off = 0; off < pgsize; off += MOCK_PAGE_SIZE) {
    const index = Math.floor((iova + off) / LEAF_SPAN);
    if (!mock.leaves.has(index)) {
      try {
        mock.leaves.set(index, mock.st.kernel.pages.alloc(0));
      } catch (e) {
        _unmap_range(mock, iova, off);
        throw e;
      }
      mock.used.set(index, 0);
    }
    _write(mock, _pte(mock, iova + off), pa + off + flags);
    mock.used.set(index, mock.used.get(index)! + 1);
  }
}

/** Clears `len` bytes of entries from `iova`, freeing leaves that empty. */
function _unmap_range(mock: MockIommuDomain, iova: number, len: number): void {
  for (let off = 0; off < len; off += MOCK_PAGE_SIZE) {
    const index = Math.floor((iova + off) / LEAF_SPAN);
    _write(mock, _pte(mock, iova + off), 0);
    const n = mock.used.get(index)! - 1;
    if (n !== 0) {
      mock.used.set(index, n);
      continue;
    }
    mock.st.kernel.pages.free(mock.leaves.get(index)!, 0);
    mock.leaves.delete(index);
    mock.used.delete(index);
  }
}

/** Mirrors mock_domain_nop_attach(): a device that cannot track refuses a tracking domain. */
function mock_domain_nop_attach(domain: IommuDomain, dev: Device): void {
  if (domain.dirty_ops !== null && ((dev as MockDev).flags & MOCK_FLAGS_DEVICE_NO_DIRTY)) {
    throw new Errno("EINVAL", `${dev.name} cannot track dirty pages`);
  }
}

/** The domain ops of {@linkcode MockIommuDomain}. */
const mockDomainOps: IommuDomainOps = {
  attach_dev: mock_domain_nop_attach,
  map_pages(domain, iova, paddr, pgsize, pgcount, _prot, mapped) {
    const mock = domain as MockIommuDomain;
    for (let i = 0; i < pgcount; i++) {
      _map_one(mock, iova + i * pgsize, paddr + i * pgsize, pgsize);
      mapped.bytes += pgsize;
    }
  },
  unmap_pages(domain, iova, pgsize, pgcount, gather) {
    const mock = domain as MockIommuDomain;
    let unmapped = 0;
    for (let i = 0; i < pgcount; i++) {
      const at = iova + i * pgsize;
      if (!(_entry(mock, at) & MOCK_PTE_PRESENT)) break;
      _unmap_range(mock, at, pgsize);
      unmapped += pgsize;
    }
    if (unmapped !== 0) {
      gather.addRange(Math.floor(iova / PAGE_SIZE), Math.ceil(unmapped / PAGE_SIZE));
    }
    return unmapped;
  },
  iotlb_sync(domain) {
    (domain as MockIommuDomain).st.iotlb_syncs++;
  },
  iova_to_phys(domain, iova) {
    const mock = domain as MockIommuDomain;
    if (!(_entry(mock, iova) & MOCK_PTE_PRESENT)) return 0;
    const e = _read(mock, _pte(mock, iova));
    return e - (e % MOCK_PAGE_SIZE) + (iova % MOCK_PAGE_SIZE);
  },
  free(domain) {
    const mock = domain as MockIommuDomain;
    for (const leaf of mock.leaves.values()) mock.st.kernel.pages.free(leaf, 0);
    mock.leaves.clear();
    kfree(mock.st.kernel, mock);
  },
};

/** The IOVA of the entry holding the dirty bit of the page at `iova` (a huge page's head). */
function _head(e: number, iova: number): number {
  const pgsize = e & MOCK_PTE_HUGE ? MOCK_HUGE_PAGE_SIZE : MOCK_PAGE_SIZE;
  return Math.floor(iova / pgsize) * pgsize;
}

/** Marks the page at `iova` dirty, as a device write would; false when it is not mapped. */
function mock_set_dirty(mock: MockIommuDomain, iova: number): boolean {
  const e = _entry(mock, iova);
  if (!(e & MOCK_PTE_PRESENT)) return false;
  const pte = _pte(mock, _head(e, iova));
  const he = _read(mock, pte);
  if (!(he % MOCK_PAGE_SIZE & MOCK_PTE_DIRTY)) _write(mock, pte, he + MOCK_PTE_DIRTY);
  return true;
}

/** The dirty ops of tracking mock domains. */
const mockDirtyOps: IommuDirtyOps = {
  /** Mirrors mock_domain_set_dirty_tracking(). */
  set_dirty_tracking(domain, enabled) {
    const mock = domain as MockIommuDomain;
    if (enabled && domain.dirty_ops === null) throw new Errno("EINVAL", "No dirty ops");
    mock.flags = enabled ? mock.flags | MOCK_DIRTY_TRACK : mock.flags & ~MOCK_DIRTY_TRACK;
  },
  /**
   * Mirrors mock_domain_read_and_clear_dirty(): reports (and unless NO_CLEAR, cleans) each dirty
   * page, a huge page whole. Reading into a bitmap with tracking off is EINVAL.
   */
  read_and_clear_dirty(domain, iova, size, flags, dirty) {
    const mock = domain as MockIommuDomain;
    if (!(mock.flags & MOCK_DIRTY_TRACK) && dirty.bitmap !== null) {
      throw new Errno("EINVAL", "Dirty tracking is off");
    }
    const end = iova + size;
    for (let cur = iova; cur < end;) {
      const e = _entry(mock, cur);
      if (!(e & MOCK_PTE_PRESENT)) {
        cur = Math.floor(cur / MOCK_PAGE_SIZE) * MOCK_PAGE_SIZE + MOCK_PAGE_SIZE;
        continue;
      }
      const head = _head(e, cur);
      const pgsize = e & MOCK_PTE_HUGE ? MOCK_HUGE_PAGE_SIZE : MOCK_PAGE_SIZE;
      const pte = _pte(mock, head);
      const he = _read(mock, pte);
      if (he % MOCK_PAGE_SIZE & MOCK_PTE_DIRTY) {
        if (!(flags & IOMMU_DIRTY_NO_CLEAR)) _write(mock, pte, he - MOCK_PTE_DIRTY);
        iommu_dirty_bitmap_record(dirty, head, pgsize);
      }
      cur = head + pgsize;
    }
  },
};

/** Mirrors mock_domain_hw_info(): struct iommu_test_hw_info of type SELFTEST. */
function mock_domain_hw_info(_dev: Device, type: number): IommuHwInfo {
  if (type !== IOMMU_HW_INFO_TYPE_DEFAULT && type !== IOMMU_HW_INFO_TYPE_SELFTEST) {
    throw new Errno("EOPNOTSUPP", `No hw_info of type ${type}`);
  }
  const data = new Uint8Array(iommu_test_hw_info.size);
  new DataView(data.buffer).setUint32(4, IOMMU_HW_INFO_SELFTEST_REGVAL, true);
  return { type: IOMMU_HW_INFO_TYPE_SELFTEST, data };
}

/**
 * Mirrors mock_domain_alloc_paging_flags(): NEST_PARENT, DIRTY_TRACKING (not for a device that
 * cannot track) and PASID, and IOMMU_HWPT_DATA_SELFTEST data choosing the page-table type.
 * EOPNOTSUPP otherwise; EINVAL/E2BIG for data of a bad size; ENOMEM.
 */
function mock_domain_alloc_paging_flags(
  st: IommufdSelftest,
  dev: Device,
  flags: number,
  user_data: IommuUserData | null,
): IommuDomain {
  const dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
  const PAGING_FLAGS = IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT |
    IOMMU_HWPT_ALLOC_PASID;
  if ((flags & ~PAGING_FLAGS) || (dirty && ((dev as MockDev).flags & MOCK_FLAGS_DEVICE_NO_DIRTY))) {
    throw new Errno("EOPNOTSUPP", `Mock cannot allocate with flags 0x${flags.toString(16)}`);
  }
  let type = MOCK_IOMMUPT_DEFAULT;
  if (user_data !== null) {
    if (user_data.type !== IOMMU_HWPT_DATA_SELFTEST && user_data.type !== IOMMU_HWPT_DATA_NONE) {
      throw new Errno("EOPNOTSUPP", `Unknown HWPT data type ${user_data.type}`);
    }
    // Mirrors iommu_copy_struct_from_user(): at least up to `iotlb`, any newer tail zero.
    if (user_data.data.length < offsetofend(iommu_hwpt_selftest, "iotlb")) {
      throw new Errno("EINVAL", "HWPT data is too short");
    }
    const cfg = _uapi_struct_from_bytes(iommu_hwpt_selftest, user_data.data);
    type = cfg.pagetable_type as number;
  }
  if (type !== MOCK_IOMMUPT_DEFAULT && type !== MOCK_IOMMUPT_HUGE) {
    throw new Errno("EOPNOTSUPP", `Unknown mock page-table type ${type}`);
  }
  return kmalloc(st.kernel, new MockIommuDomain(st, type === MOCK_IOMMUPT_HUGE, dirty));
}

/**
 * The selftest's state in one kernel (the module's statics in Linux): the mock bus and IOMMU.
 * Create it with {@linkcode iommufd_test_init}.
 */
export class IommufdSelftest {
  /** The mock IOMMU instance. */
  readonly iommu: IommuDevice = new IommuDevice();
  /** Its firmware node (mock devices name it in their fwspec). */
  readonly fwnode: FwNode = { name: "iommufd_selftest" };
  /** The mock bus ("iommufd_mock"). */
  readonly bus: Bus;
  /** iotlb_sync calls on mock domains (a clearing dirty read must flush). */
  iotlb_syncs = 0;
  /** Mock device numbers (mock_dev_ida). */
  readonly ids: Ida = new Ida();
  /** The mock's iommu_ops. */
  readonly ops: IommuOps;

  /** Use {@linkcode iommufd_test_init}. */
  constructor(readonly kernel: Kernel) {
    this.bus = bus_register(kernel, {
      name: "iommufd_mock",
      match: () => false,
      dmaConfigure: (dev) => {
        const layer = kernel.iommuLayer!;
        if (dev.fwspec === null || dev.iommu !== null) return;
        layer.probeDevice(dev);
      },
    });
    const nop: IommuDomainOps = { attach_dev: mock_domain_nop_attach };
    const blocked = new IommuDomain(IOMMU_DOMAIN_BLOCKED, nop);
    this.ops = {
      capable: (dev, cap) =>
        cap === IOMMU_CAP_CACHE_COHERENCY ||
        (cap === IOMMU_CAP_DIRTY_TRACKING &&
          !((dev as MockDev).flags & MOCK_FLAGS_DEVICE_NO_DIRTY)),
      hw_info: mock_domain_hw_info,
      domain_alloc_paging_flags: (dev, flags, data) =>
        mock_domain_alloc_paging_flags(this, dev, flags, data),
      probe_device: (dev) => {
        if (dev.bus !== this.bus) throw new Errno("ENODEV", `${dev.name} is not a mock device`);
        return this.iommu;
      },
      device_group: generic_device_group,
      def_domain_type: () => IOMMU_DOMAIN_IDENTITY,
      identity_domain: new IommuDomain(IOMMU_DOMAIN_IDENTITY, nop),
      blocked_domain: blocked,
      release_domain: blocked,
    };
  }
}

/** Mirrors mock_dev_create(): a mock device added to the bus, probed into its own group. */
function mock_dev_create(st: IommufdSelftest, flags: number): MockDev {
  const index = ida_alloc(st.ids);
  let mdev: MockDev;
  try {
    mdev = kmalloc(st.kernel, new MockDev(st, index, flags));
  } catch (e) {
    ida_free(st.ids, index);
    throw e;
  }
  mdev.fwspec = { fwnode: st.fwnode, ids: [index], flags: 0 };
  device_add(mdev);
  return mdev;
}

/** Mirrors mock_dev_destroy(). */
function mock_dev_destroy(st: IommufdSelftest, mdev: MockDev): void {
  device_del(mdev);
  ida_free(st.ids, mdev.index);
  kfree(st.kernel, mdev);
}

/** struct selftest_obj: the handle of a mock device bound and attached by MOCK_DOMAIN. */
export class SelftestObj extends IommufdObject {
  /** The bound device. */
  idev: IommufdDevice | null = null;
  /** The mock device. */
  mdev: MockDev | null = null;

  /** A handle in `st`. */
  constructor(readonly st: IommufdSelftest) {
    super(IOMMUFD_OBJ_SELFTEST);
  }

  /** Mirrors iommufd_selftest_destroy(): detach, unbind and remove the mock device. */
  destroy(): void {
    iommufd_device_detach(this.idev!);
    iommufd_device_unbind(this.idev!);
    mock_dev_destroy(this.st, this.mdev!);
  }
}

type TestCmd = Required<iommu_test_cmd>;

/** Mirrors iommufd_test_mock_domain(): MOCK_DOMAIN and MOCK_DOMAIN_FLAGS. */
function iommufd_test_mock_domain(st: IommufdSelftest, ucmd: IommufdUcmd, cmd: TestCmd): void {
  const ictx = ucmd.ictx;
  const flagged = cmd.op === IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS;
  const dev_flags = flagged ? cmd.mock_domain_flags.dev_flags : 0;
  if (dev_flags & ~MOCK_FLAGS_DEVICE_NO_DIRTY) throw new Errno("EINVAL", "Bad mock device flags");
  const sobj = iommufd_object_alloc(ictx, new SelftestObj(st));
  try {
    const mdev = mock_dev_create(st, dev_flags);
    try {
      const { idev, id } = iommufd_device_bind(ictx, mdev);
      try {
        const pt_id = iommufd_device_attach(idev, cmd.id);
        const out = flagged ? cmd.mock_domain_flags : cmd.mock_domain;
        out.out_hwpt_id = pt_id;
        out.out_stdev_id = sobj.id;
        out.out_idev_id = id;
        cmd.mock_domain = cmd.mock_domain_flags = out as TestCmd["mock_domain_flags"];
        iommufd_ucmd_respond(ucmd);
      } catch (e) {
        iommufd_device_detach(idev);
        iommufd_device_unbind(idev);
        throw e;
      }
      sobj.idev = idev;
      sobj.mdev = mdev;
    } catch (e) {
      mock_dev_destroy(st, mdev);
      throw e;
    }
  } catch (e) {
    iommufd_object_abort(ictx, sobj);
    throw e;
  }
  iommufd_object_finalize(ictx, sobj);
}

/** Mirrors iommufd_test_mock_domain_replace(). */
function iommufd_test_mock_domain_replace(ucmd: IommufdUcmd, cmd: TestCmd): void {
  const sobj = iommufd_get_object(ucmd.ictx, cmd.id, IOMMUFD_OBJ_SELFTEST) as SelftestObj;
  try {
    cmd.mock_domain_replace.pt_id = iommufd_device_replace(
      sobj.idev!,
      cmd.mock_domain_replace.pt_id,
    );
    iommufd_ucmd_respond(ucmd);
  } finally {
    iommufd_put_object(ucmd.ictx, sobj);
  }
}

/** Mirrors get_md_pagetable(): HWPT `id` whose domain is a mock one (ENOENT, EINVAL). */
function get_md_pagetable(ucmd: IommufdUcmd, id: number): IommufdHwptPaging {
  const hwpt = iommufd_get_object(ucmd.ictx, id, IOMMUFD_OBJ_HWPT_PAGING) as IommufdHwptPaging;
  if (!(hwpt.domain instanceof MockIommuDomain)) {
    iommufd_put_object(ucmd.ictx, hwpt);
    throw new Errno("EINVAL", `HWPT ${id} is not a mock domain`);
  }
  return hwpt;
}

/** The physical address of user address `uptr` (get_user_pages_fast of its page). */
function _user_pa(ictx: IommuFd, uptr: number): number {
  const pas: number[] = [];
  pin_user_pages(ictx.mm, uptr - (uptr % PAGE_SIZE), 1, 0, pas);
  unpin_user_pages(ictx.mm, pas);
  return pas[0] + (uptr % PAGE_SIZE);
}

/**
 * Mirrors iommufd_test_md_check_pa(): every MOCK_PAGE_SIZE of `[iova, iova + length)` maps to
 * the physical page of the user address it came from. EINVAL on a mismatch or misalignment.
 */
function iommufd_test_md_check_pa(ucmd: IommufdUcmd, cmd: TestCmd): void {
  const iova = Number(cmd.check_map.iova);
  const length = Number(cmd.check_map.length);
  const uptr = Number(cmd.check_map.uptr);
  if (iova % MOCK_PAGE_SIZE || length % MOCK_PAGE_SIZE) throw new Errno("EINVAL", "Unaligned");
  const hwpt = get_md_pagetable(ucmd, cmd.id);
  try {
    for (let off = 0; off < length; off += MOCK_PAGE_SIZE) {
      if (iommu_iova_to_phys(hwpt.domain, iova + off) !== _user_pa(ucmd.ictx, uptr + off)) {
        throw new Errno("EINVAL", `IOVA 0x${(iova + off).toString(16)} maps elsewhere`);
      }
    }
  } finally {
    iommufd_put_object(ucmd.ictx, hwpt);
  }
}

/**
 * Mirrors iommufd_test_md_check_refs(): each 4 KiB user page of `[uptr, uptr + length)` holds
 * `refs` pins (huge pages are skipped, as Linux skips compound pages). EINVAL misaligned, EFAULT
 * unmapped, EIO on a mismatch.
 */
function iommufd_test_md_check_refs(ucmd: IommufdUcmd, cmd: TestCmd): void {
  const length = Number(cmd.check_refs.length);
  const uptr = Number(cmd.check_refs.uptr);
  if (length % PAGE_SIZE || uptr % PAGE_SIZE) throw new Errno("EINVAL", "Unaligned");
  for (let off = 0; off < length; off += PAGE_SIZE) {
    const folio = ucmd.ictx.mm.folio(uptr + off);
    if (folio.order === 0 && folio.pincount !== cmd.check_refs.refs) {
      throw new Errno("EIO", `Page at 0x${(uptr + off).toString(16)} has ${folio.pincount} pins`);
    }
  }
}

/**
 * Mirrors iommufd_test_dirty(): marks dirty the pages of a tracking mock domain whose bits the
 * user bitmap sets; reports how many were mapped. EINVAL for bad sizes or tracking off, EFAULT.
 */
function iommufd_test_dirty(ucmd: IommufdUcmd, cmd: TestCmd): void {
  const d = cmd.dirty;
  const iova = Number(d.iova);
  const length = Number(d.length);
  const page_size = Number(d.page_size);
  if (!page_size || !length || iova % page_size || length % page_size || !d.uptr) {
    throw new Errno("EINVAL", "Bad dirty range");
  }
  const hwpt = get_md_pagetable(ucmd, cmd.id);
  try {
    const mock = hwpt.domain as MockIommuDomain;
    if (!(mock.flags & MOCK_DIRTY_TRACK)) throw new Errno("EINVAL", "Dirty tracking is off");
    const max = length / page_size;
    const tmp = kmalloc(ucmd.ictx.kernel, new Uint8Array(Math.ceil(max / 8)));
    try {
      copy_from_user(ucmd.ictx.mm, tmp, Number(d.uptr));
      let count = 0;
      for (let i = 0; i < max; i++) {
        if ((tmp[i >> 3] >> (i & 7)) & 1 && mock_set_dirty(mock, iova + i * page_size)) count++;
      }
      d.out_nr_dirty = BigInt(count);
      iommufd_ucmd_respond(ucmd);
    } finally {
      kfree(ucmd.ictx.kernel, tmp);
    }
  } finally {
    iommufd_put_object(ucmd.ictx, hwpt);
  }
}

/** Mirrors iommufd_test_add_reserved(): reserves `[start, start + length)` of IOAS `id`. */
function iommufd_test_add_reserved(ucmd: IommufdUcmd, cmd: TestCmd): void {
  const ioas = iommufd_get_ioas(ucmd.ictx, cmd.id);
  try {
    const { start, length } = cmd.add_reserved;
    const last = BigInt.asUintN(64, start + length - 1n);
    iopt_reserve_iova(ioas.iopt, Number(start), Number(last), null);
  } finally {
    iommufd_put_object(ucmd.ictx, ioas);
  }
}

/** Mirrors iommufd_test(): IOMMU_TEST_CMD. EOPNOTSUPP for an operation the mock lacks. */
function iommufd_test(st: IommufdSelftest, ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as TestCmd;
  switch (cmd.op) {
    case IOMMU_TEST_OP_ADD_RESERVED:
      return iommufd_test_add_reserved(ucmd, cmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN:
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return iommufd_test_mock_domain(st, ucmd, cmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
      return iommufd_test_mock_domain_replace(ucmd, cmd);
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return iommufd_test_md_check_pa(ucmd, cmd);
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      return iommufd_test_md_check_refs(ucmd, cmd);
    case IOMMU_TEST_OP_DIRTY:
      return iommufd_test_dirty(ucmd, cmd);
  }
  throw new Errno("EOPNOTSUPP", `Unknown test op ${cmd.op}`);
}

/**
 * Mirrors iommufd_test_init(): registers the mock bus and IOMMU in the kernel of `iommufd`
 * (next to any real IOMMU) and adds IOMMU_TEST_CMD to its ioctl table.
 *
 * @example A mock device bound and attached to an IOAS
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel, MmStruct } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import { IOMMU_IOAS_ALLOC, iommu_ioas_alloc, iommufd_fops_open, iommufd_init, sizeof } from "@iommu-lab/iommufd";
 * import { IOMMU_TEST_CMD, iommu_test_cmd, IOMMU_TEST_OP_MOCK_DOMAIN, iommufd_test_init } from "@iommu-lab/iommufd/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const iommufd = iommufd_init(kernel);
 * iommufd_test_init(iommufd);
 * const fd = iommufd_fops_open(iommufd, new MmStruct(kernel));
 * const ioas: iommu_ioas_alloc = { size: sizeof(iommu_ioas_alloc), flags: 0, out_ioas_id: 0 };
 * fd.ioctl(IOMMU_IOAS_ALLOC, ioas);
 * const mock: iommu_test_cmd = {
 *   size: sizeof(iommu_test_cmd), op: IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas.out_ioas_id,
 *   mock_domain: { out_stdev_id: 0, out_hwpt_id: 0, out_idev_id: 0 },
 * };
 * fd.ioctl(IOMMU_TEST_CMD, mock);
 * assert.ok(mock.mock_domain!.out_hwpt_id > ioas.out_ioas_id);
 * fd.close();
 * assert.equal(kernel.slab.allocatedObjects, 0);
 * ```
 */
export function iommufd_test_init(iommufd: Iommufd): IommufdSelftest {
  const kernel = iommufd.kernel;
  const st = new IommufdSelftest(kernel);
  iommu_device_register(
    st.iommu,
    st.ops,
    new Device(kernel, { name: "iommufd_selftest", fwnode: st.fwnode }),
  );
  iommufd.registerIoctl(
    IOCTL_OP(IOMMU_TEST_CMD, (ucmd) => iommufd_test(st, ucmd), iommu_test_cmd, "last"),
  );
  return st;
}
