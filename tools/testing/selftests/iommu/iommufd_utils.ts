/**
 * The helpers of tools/testing/selftests/iommu/iommufd_utils.h (`_test_ioctl_ioas_map()`,
 * `test_cmd_mock_domain()`, `teardown_iommufd()`, `EXPECT_ERRNO()`, ...), and the environments
 * the fixtures run in: the mock IOMMU of `@iommu-lab/iommufd/testing` on test RAM, or a booted
 * {@linkcode Machine} whose PCIe DMA engines are bound to iommufd behind the RISC-V IOMMU, as
 * VFIO would bind them, and driven from "user space" through their BAR.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  APLIC_S_BASE,
  DMAE_CH_BASE,
  DMAE_CH_CMD,
  DMAE_CH_DST_HI,
  DMAE_CH_DST_LO,
  DMAE_CH_LEN,
  DMAE_CH_PATTERN,
  DMAE_CH_SRC_HI,
  DMAE_CH_SRC_LO,
  DMAE_CH_STATUS,
  DMAE_CMD_GO,
  DMAE_OP_COPY,
  DMAE_OP_FILL,
  DMAE_STATUS_BUSY,
  DMAE_STATUS_DONE,
  IMSIC_S_BASE,
  PCIE_ECAM_BASE,
} from "@iommu-lab/hw/regs";
import {
  cells64,
  copy_from_user,
  device_release_driver,
  Errno,
  type ErrnoName,
  HPAGE_PMD_SIZE,
  Kernel,
  MAP_ANONYMOUS,
  MAP_SHARED,
  mmput,
  MmStruct,
  of_property_read_u32_array,
  PAGE_SIZE,
  pci_clear_master,
  pci_disable_device,
  pci_enable_device,
  pci_resource_start,
  pci_set_master,
  type PciDev,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import { Iommu } from "@iommu-lab/hw";
import {
  IOMMU_DESTROY,
  iommu_destroy,
  IOMMU_GET_HW_INFO,
  iommu_hw_info,
  IOMMU_HWPT_ALLOC,
  iommu_hwpt_alloc,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  iommu_hwpt_get_dirty_bitmap,
  IOMMU_HWPT_SET_DIRTY_TRACKING,
  iommu_hwpt_set_dirty_tracking,
  IOMMU_IOAS_ALLOC,
  iommu_ioas_alloc,
  IOMMU_IOAS_MAP,
  iommu_ioas_map,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_unmap,
  type IommuFd,
  type Iommufd,
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_device_detach,
  iommufd_device_replace,
  iommufd_device_unbind,
  iommufd_fops_open,
  iommufd_init,
  type IommufdDevice,
  sizeof,
} from "@iommu-lab/iommufd";
import {
  IOMMU_TEST_CMD,
  iommu_test_cmd,
  IOMMU_TEST_OP_DIRTY,
  IOMMU_TEST_OP_MD_CHECK_MAP,
  IOMMU_TEST_OP_MD_CHECK_REFS,
  IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
  iommufd_test_init,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_HUGE_PAGE_SIZE,
  MOCK_PAGE_SIZE,
} from "@iommu-lab/iommufd/testing";
import { Machine, type MachineOptions, type MachinePart, VIRT_DMA_SLOT } from "@iommu-lab/machine";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";

/** The size of the selftest's `buffer`: 16 CPU pages. */
export const BUFFER_SIZE: number = PAGE_SIZE * 16;

/** Mirrors EXPECT_ERRNO(): `fn` fails with `code`. */
export function EXPECT_ERRNO(code: ErrnoName, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Errno, `expected ${code}, got ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** IDs MOCK_DOMAIN returns: the device's handle, the HWPT attached and the bound device. */
export interface MockDomainIds {
  /** Destroying this removes the device (`stdev_id`). */
  stdev_id: number;
  /** The HWPT the device was attached to. */
  hwpt_id: number;
  /** The iommufd device object (`idev_id`). */
  idev_id: number;
}

/** Where a fixture runs: a kernel, its /dev/iommu, a process, and a way to make devices. */
export interface SelftestEnv {
  /** "mock" or "riscv". */
  readonly name: string;
  /** The kernel. */
  readonly kernel: Kernel;
  /** /dev/iommu of that kernel. */
  readonly iommufd: Iommufd;
  /** The test process. */
  readonly mm: MmStruct;
  /** The smallest page of the IOMMU's domains (MOCK_PAGE_SIZE, or 4 KiB on RISC-V). */
  readonly io_page_size: number;
  /** The huge page of the IOMMU's domains (MOCK_HUGE_PAGE_SIZE, or 2 MiB on RISC-V). */
  readonly huge_page_size: number;
  /** First IOVA of a domain's aperture. */
  readonly aperture_start: number;
  /** Last IOVA of a domain's aperture. */
  readonly aperture_last: number;
  /** Pages and objects allocated before the test (teardown must get back to these). */
  readonly base: { pages: number; objects: number };
  /** Mirrors _test_cmd_mock_domain(): a new device bound to `fd` and attached to `pt_id`. */
  mock_domain(fd: IommuFd, pt_id: number, dev_flags?: number): MockDomainIds;
  /** Mirrors _test_cmd_mock_domain_replace(): returns the HWPT now attached. */
  mock_domain_replace(fd: IommuFd, stdev_id: number, pt_id: number): number;
  /** Removes a device mock_domain() made. */
  destroy_device(fd: IommuFd, stdev_id: number): void;
  /** Checks, as the device sees it, that `[iova, iova + length)` maps the user memory at `uptr`. */
  check_map(fd: IommuFd, hwpt_id: number, uptr: number, iova: number, length: number): void;
  /**
   * Makes dirty the pages (of `page_size` from `iova`) whose bits the user bitmap at `bitmap`
   * sets, as a device write does: IOMMU_TEST_OP_DIRTY on the mock, DMA on the machine (through
   * a device attached to the HWPT). Returns how many pages it dirtied.
   */
  set_dirty(
    fd: IommuFd,
    hwpt_id: number,
    iova: number,
    length: number,
    page_size: number,
    bitmap: number,
  ): number;
  /** Lets go of the devices before the file closes (a VFIO device holds its binding). */
  release(fd: IommuFd): void;
}

/** A mock environment: test RAM, /dev/iommu with the selftest module, one process. */
export function mock_env(ramSize = 512 * 2 ** 20): SelftestEnv {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, ramSize) });
  const iommufd = iommufd_init(kernel);
  iommufd_test_init(iommufd);
  const mm = new MmStruct(kernel);
  return {
    name: "mock",
    kernel,
    iommufd,
    mm,
    io_page_size: MOCK_PAGE_SIZE,
    huge_page_size: MOCK_HUGE_PAGE_SIZE,
    aperture_start: MOCK_APERTURE_START,
    aperture_last: MOCK_APERTURE_LAST,
    base: { pages: kernel.pages.allocatedPages, objects: kernel.slab.allocatedObjects },
    mock_domain(fd, pt_id, dev_flags) {
      const cmd: iommu_test_cmd = {
        size: sizeof(iommu_test_cmd),
        op: IOMMU_TEST_OP_MOCK_DOMAIN,
        id: pt_id,
      };
      const out = { out_stdev_id: 0, out_hwpt_id: 0, out_idev_id: 0, dev_flags: dev_flags ?? 0 };
      if (dev_flags === undefined) cmd.mock_domain = out;
      else {
        cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS;
        cmd.mock_domain_flags = out;
      }
      fd.ioctl(IOMMU_TEST_CMD, cmd);
      return { stdev_id: out.out_stdev_id, hwpt_id: out.out_hwpt_id, idev_id: out.out_idev_id };
    },
    mock_domain_replace(fd, stdev_id, pt_id) {
      const cmd: iommu_test_cmd = {
        size: sizeof(iommu_test_cmd),
        op: IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
        id: stdev_id,
        mock_domain_replace: { pt_id },
      };
      fd.ioctl(IOMMU_TEST_CMD, cmd);
      return cmd.mock_domain_replace!.pt_id;
    },
    destroy_device(fd, stdev_id) {
      _test_ioctl_destroy(fd, stdev_id);
    },
    check_map(fd, hwpt_id, uptr, iova, length) {
      fd.ioctl(IOMMU_TEST_CMD, {
        size: sizeof(iommu_test_cmd),
        op: IOMMU_TEST_OP_MD_CHECK_MAP,
        id: hwpt_id,
        check_map: { iova: BigInt(iova), length: BigInt(length), uptr: BigInt(uptr) },
      } as iommu_test_cmd);
    },
    set_dirty: (fd, hwpt_id, iova, length, page_size, bitmap) =>
      _test_cmd_mock_domain_set_dirty(fd, hwpt_id, length, iova, page_size, bitmap),
    release() {},
  };
}

/** Where {@linkcode no_dirty_iommu_part} puts its IOMMU's registers. */
export const NO_DIRTY_IOMMU_BASE = 0x0302_0000;
/** The APLIC source of its wire 0 (wires 0..3 follow the machine's IOMMU's 36..39). */
const NO_DIRTY_IOMMU_IRQ = 40;

/**
 * A second platform RISC-V IOMMU, without capabilities.AMO_HWAD (so it cannot track dirty pages),
 * translating for the DMA engine of PCI slot `slot` while the machine's own IOMMU keeps every
 * other requester ID: the host bridge's `iommu-map` sends that slot's RIDs to it, and the root
 * complex's inbound transactions from that slot go through it. Its node has MSIs (msi-parent,
 * the IMSIC) and four wires on APLIC sources 40..43, as the machine's IOMMU has. It is the machine behind the selftest's MOCK_FLAGS_DEVICE_NO_DIRTY devices
 * (`enforce_dirty`): one kernel, one driver instance, two IOMMUs of which one cannot track.
 */
export function no_dirty_iommu_part(slot: number): MachinePart {
  return {
    name: "no-dirty-iommu",
    hardware(silicon) {
      const iommu = new Iommu({ mem: silicon.mem, caps: { amoHwad: false } });
      silicon.mem.addMmio(NO_DIRTY_IOMMU_BASE, 0x1000, iommu, "iommu-no-dirty");
      iommu.irq = {
        setWire: (line, level) => silicon.aplic.setWire(NO_DIRTY_IOMMU_IRQ + line, level),
      };
      iommu.atsPort = silicon.rc.atsPort;
      const main = silicon.rc.translator;
      silicon.rc.translator = {
        translate: (req, res) => ((req.deviceId >> 3) === slot ? iommu : main).translate(req, res),
      };
    },
    deviceTree(dt) {
      const soc = dt.findNode("/soc")!;
      const imsic = dt.findNode(`/soc/interrupt-controller@${IMSIC_S_BASE.toString(16)}`)!;
      const aplic = dt.findNode(`/soc/interrupt-controller@${APLIC_S_BASE.toString(16)}`)!;
      const node = soc.addChild(`iommu@${NO_DIRTY_IOMMU_BASE.toString(16)}`)
        .set("compatible", "riscv,iommu")
        .set("reg", [...cells64(NO_DIRTY_IOMMU_BASE), ...cells64(0x1000)])
        .set("#iommu-cells", [1])
        .set("interrupt-parent", [dt.phandleOf(aplic)])
        .set("interrupts", [0, 1, 2, 3].flatMap((i) => [NO_DIRTY_IOMMU_IRQ + i, 4]))
        .set("interrupt-names", ["cmdq", "fltq", "priq", "pm"])
        .set("msi-parent", [dt.phandleOf(imsic)]);
      const pci = dt.findNode(`/soc/pci@${PCIE_ECAM_BASE.toString(16)}`)!;
      const map = of_property_read_u32_array(pci, "iommu-map")!;
      const rid = slot << 3;
      // The slot's eight functions to the new IOMMU, the rest as the machine mapped them.
      const split: number[] = [];
      for (let i = 0; i < map.length; i += 4) {
        const [base, ph, out, len] = map.slice(i, i + 4);
        const end = base + len;
        if (base < rid) split.push(base, ph, out, Math.min(end, rid) - base);
        if (end > rid + 8) {
          const from = Math.max(base, rid + 8);
          split.push(from, ph, out + from - base, end - from);
        }
      }
      pci.set("iommu-map", [...split, rid, dt.phandleOf(node), rid, 8]);
    },
  };
}

/** A device of the real machine, bound to iommufd the way VFIO binds one. */
interface RealDevice {
  pdev: PciDev;
  idev: IommufdDevice;
  fd: IommuFd;
}

/**
 * A real environment: a booted machine (the platform RISC-V IOMMU and its driver, with the
 * series `opts.parts` bring, three DMA engines whose MSIs bypass the IOMMU since an iommufd
 * domain maps no doorbell), /dev/iommu with the selftest module loaded beside the real driver
 * (for IOMMU_TEST_OP_ADD_RESERVED), one process. mock_domain() takes the next DMA engine off its
 * kernel driver, binds it and attaches it.
 */
export function riscv_env(opts: MachineOptions = {}): SelftestEnv & { machine: Machine } {
  const machine = Machine.boot({
    iommuBus: "platform",
    msiThroughIommu: false,
    dmaEngines: 3,
    ramSize: 512 * 2 ** 20,
    ...opts,
  });
  const kernel = machine.kernel;
  const iommufd = iommufd_init(kernel);
  iommufd_test_init(iommufd);
  const mm = new MmStruct(kernel);
  const devices = new Map<number, RealDevice>();
  const free = [...machine.dmaDevices];
  const mainIommu = machine.iommuDevice!.fwnode;
  let next = 0x1000;
  // What DMA the checks do goes through channel 0 of the engine attached to the HWPT.
  const engineOf = (hwpt_id: number, fd: IommuFd): PciDev => {
    for (const d of devices.values()) {
      const attach = d.idev.igroup.attach;
      if (d.fd === fd && attach !== null && attach.hwpt.id === hwpt_id) return d.pdev;
    }
    throw new Errno("ENODEV", `No device attached to HWPT ${hwpt_id}`);
  };
  for (const pdev of free) device_release_driver(pdev);
  return {
    name: "riscv",
    machine,
    kernel,
    iommufd,
    mm,
    io_page_size: PAGE_SIZE,
    huge_page_size: HPAGE_PMD_SIZE,
    aperture_start: 0,
    aperture_last: 2 ** 53 - 1,
    base: { pages: kernel.pages.allocatedPages, objects: kernel.slab.allocatedObjects },
    mock_domain(fd, pt_id, dev_flags = 0) {
      // MOCK_FLAGS_DEVICE_NO_DIRTY: a device behind an IOMMU other than the machine's own
      // (no_dirty_iommu_part()'s); otherwise one behind the machine's IOMMU.
      const other = (dev_flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0;
      const i = free.findIndex((p) => (p.fwspec?.fwnode !== mainIommu) === other);
      if (i < 0) throw new Errno("ENODEV", "No DMA engine left");
      const [pdev] = free.splice(i, 1);
      let bound: { idev: IommufdDevice; id: number };
      try {
        bound = iommufd_device_bind(fd, pdev);
      } catch (e) {
        free.splice(i, 0, pdev);
        throw e;
      }
      let hwpt_id: number;
      try {
        hwpt_id = iommufd_device_attach(bound.idev, pt_id);
      } catch (e) {
        iommufd_device_unbind(bound.idev);
        free.splice(i, 0, pdev);
        throw e;
      }
      // What vfio_pci_core_enable() does when user space opens the device.
      pci_enable_device(pdev);
      pci_set_master(pdev);
      const stdev_id = next++;
      devices.set(stdev_id, { pdev, idev: bound.idev, fd });
      return { stdev_id, hwpt_id, idev_id: bound.id };
    },
    mock_domain_replace(_fd, stdev_id, pt_id) {
      const d = devices.get(stdev_id);
      if (d === undefined) throw new Errno("ENOENT", `No device ${stdev_id}`);
      return iommufd_device_replace(d.idev, pt_id);
    },
    destroy_device(_fd, stdev_id) {
      const d = devices.get(stdev_id);
      if (d === undefined) throw new Errno("ENOENT", `No device ${stdev_id}`);
      pci_clear_master(d.pdev);
      pci_disable_device(d.pdev);
      iommufd_device_detach(d.idev);
      iommufd_device_unbind(d.idev);
      devices.delete(stdev_id);
      free.push(d.pdev);
    },
    check_map(fd, hwpt_id, uptr, iova, length) {
      // The device fills the IOVA range; the user memory must then hold the pattern.
      const pdev = engineOf(hwpt_id, fd);
      const pattern = 0x5a00_0000 + (iova & 0xff_ffff);
      user_dma(machine, pdev, "memset", iova, pattern, length);
      const got = new Uint8Array(length);
      copy_from_user(mm, got, uptr);
      const want = new Uint8Array(length);
      const pat = new Uint8Array(new Uint32Array([pattern]).buffer);
      for (let i = 0; i < length; i++) want[i] = pat[i % 4];
      if (!got.every((b, i) => b === want[i])) {
        throw new Errno("EINVAL", `IOVA 0x${iova.toString(16)} does not reach user memory`);
      }
    },
    set_dirty(fd, hwpt_id, iova, length, page_size, bitmap) {
      const pdev = engineOf(hwpt_id, fd);
      const bits = new Uint8Array(Math.ceil(length / page_size / 8));
      copy_from_user(mm, bits, bitmap);
      let n = 0;
      for (let i = 0; i < length / page_size; i++) {
        if (!((bits[i >> 3] >> (i & 7)) & 1)) continue;
        user_dma(machine, pdev, "memset", iova + i * page_size, 0x6469_7274, 4);
        n++;
      }
      return n;
    },
    release(fd) {
      for (const [id, d] of [...devices]) if (d.fd === fd) this.destroy_device(fd, id);
    },
  };
}

/**
 * A real environment for dirty tracking: {@linkcode riscv_env} with the riscv-iommu
 * dirty-tracking series loaded (`dirtyPart()`: AMO_HWAD on the IOMMU, the feature in its driver)
 * and a fourth DMA engine behind a second IOMMU that cannot track
 * ({@linkcode no_dirty_iommu_part}), for MOCK_FLAGS_DEVICE_NO_DIRTY.
 */
export function riscv_dirty_env(): SelftestEnv & { machine: Machine } {
  return riscv_env({
    dmaEngines: 4,
    parts: [dirtyPart(), no_dirty_iommu_part(VIRT_DMA_SLOT + 3)],
  });
}

/**
 * A user-space driver's DMA on a real engine: programs channel 0 through the BAR (a mapped BAR,
 * no interrupt) and polls it done. `memset` fills `len` bytes at `dst` with the 32-bit `src`;
 * `memcpy` copies from IOVA `src`. Throws EIO when the transfer fails (an IOMMU fault).
 */
export function user_dma(
  machine: Machine,
  pdev: PciDev,
  op: "memset" | "memcpy",
  dst: number,
  src: number,
  len: number,
): void {
  const mem = machine.silicon.mem;
  const ch = pci_resource_start(pdev, 0) + DMAE_CH_BASE;
  if (op === "memcpy") {
    mem.write32(ch + DMAE_CH_SRC_LO, src % 2 ** 32);
    mem.write32(ch + DMAE_CH_SRC_HI, Math.floor(src / 2 ** 32));
  } else {
    mem.write32(ch + DMAE_CH_PATTERN, src >>> 0);
  }
  mem.write32(ch + DMAE_CH_DST_LO, dst % 2 ** 32);
  mem.write32(ch + DMAE_CH_DST_HI, Math.floor(dst / 2 ** 32));
  mem.write32(ch + DMAE_CH_LEN, len);
  mem.write32(
    ch + DMAE_CH_CMD,
    (DMAE_CMD_GO | (op === "memcpy" ? DMAE_OP_COPY : DMAE_OP_FILL)) >>> 0,
  );
  let status = mem.read32(ch + DMAE_CH_STATUS);
  for (let i = 0; status & DMAE_STATUS_BUSY && i < 1_000_000; i++) {
    machine.run(1000);
    status = mem.read32(ch + DMAE_CH_STATUS);
  }
  mem.write32(ch + DMAE_CH_STATUS, status);
  if (status !== DMAE_STATUS_DONE) {
    throw new Errno(
      "EIO",
      `DMA ${op} to 0x${dst.toString(16)} failed (status 0x${status.toString(16)})`,
    );
  }
}

/** What every fixture keeps: the environment, the open file and the test buffer. */
export interface SelftestSelf {
  /** Where the test runs. */
  env: SelftestEnv;
  /** The open /dev/iommu (the fail_nth sequences open it themselves). */
  fd: IommuFd;
  /** A mapped BUFFER_SIZE user buffer (the selftest's global `buffer`). */
  buffer: number;
}

/** Opens the environment's /dev/iommu and maps the test buffer (what each setup starts with). */
export function setup_iommufd(self: SelftestSelf, env: SelftestEnv): void {
  self.env = env;
  self.buffer = vm_mmap(env.mm, 0, BUFFER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  self.fd = iommufd_fops_open(env.iommufd, env.mm);
}

/**
 * Mirrors teardown_iommufd(): closes the file, then checks through a new one that no page of
 * the buffer is pinned any more (MD_CHECK_REFS); then, beyond Linux, that every page and object
 * the test allocated came back once the process exits.
 */
export function teardown_iommufd(self: SelftestSelf): void {
  const env = self.env;
  if (self.fd !== undefined) {
    env.release(self.fd);
    self.fd.close();
  }
  const fd = iommufd_fops_open(env.iommufd, env.mm);
  fd.ioctl(IOMMU_TEST_CMD, {
    size: sizeof(iommu_test_cmd),
    op: IOMMU_TEST_OP_MD_CHECK_REFS,
    id: 0,
    check_refs: { length: BigInt(BUFFER_SIZE), uptr: BigInt(self.buffer), refs: 0 },
  } as iommu_test_cmd);
  fd.close();
  mmput(env.mm);
  assert.equal(env.kernel.pages.allocatedPages, env.base.pages, "pages leaked");
  const objects = env.kernel.slab.allocatedObjects;
  // A device the driver could not give back its default domain (it warned) stays blocked,
  // without the driver's per-domain state: fewer objects, never more.
  if (env.kernel.dmesg.grep("Failed to attach the default domain").length) {
    assert.ok(objects <= env.base.objects, `objects leaked: ${objects} > ${env.base.objects}`);
  } else {
    assert.equal(objects, env.base.objects, `objects leaked: ${env.kernel.slab.allocations()}`);
  }
}

/** Mirrors _test_ioctl_destroy(). */
export function _test_ioctl_destroy(fd: IommuFd, id: number): void {
  fd.ioctl(IOMMU_DESTROY, { size: sizeof(iommu_destroy), id } as iommu_destroy);
}

/** Mirrors _test_ioctl_ioas_alloc(): a new IOAS's ID. */
export function _test_ioctl_ioas_alloc(fd: IommuFd): number {
  const cmd: iommu_ioas_alloc = { size: sizeof(iommu_ioas_alloc), flags: 0, out_ioas_id: 0 };
  fd.ioctl(IOMMU_IOAS_ALLOC, cmd);
  assert.notEqual(cmd.out_ioas_id, 0);
  return cmd.out_ioas_id;
}

/** Read and write, the flags test_ioctl_ioas_map() uses. */
export const MAP_RW = IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/**
 * Mirrors _test_ioctl_ioas_map(): maps `length` bytes of user memory at `buffer`; with
 * FIXED_IOVA in `flags` at `iova`. Returns the IOVA.
 */
export function _test_ioctl_ioas_map(
  fd: IommuFd,
  ioas_id: number,
  buffer: number,
  length: number,
  iova: number,
  flags: number,
): number {
  const cmd: iommu_ioas_map = {
    size: sizeof(iommu_ioas_map),
    flags,
    ioas_id,
    __reserved: 0,
    user_va: BigInt(buffer),
    length: BigInt(length),
    iova: flags & IOMMU_IOAS_MAP_FIXED_IOVA ? BigInt(iova) : 0n,
  };
  fd.ioctl(IOMMU_IOAS_MAP, cmd);
  return Number(cmd.iova);
}

/** Mirrors test_ioctl_ioas_map_fixed_id(). */
export function test_ioctl_ioas_map_fixed(
  fd: IommuFd,
  ioas_id: number,
  buffer: number,
  length: number,
  iova: number,
): void {
  _test_ioctl_ioas_map(fd, ioas_id, buffer, length, iova, IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW);
}

/** Mirrors _test_ioctl_ioas_unmap(): returns the bytes unmapped. */
export function _test_ioctl_ioas_unmap(
  fd: IommuFd,
  ioas_id: number,
  iova: number | bigint,
  length: number | bigint,
): number {
  const cmd: iommu_ioas_unmap = {
    size: sizeof(iommu_ioas_unmap),
    ioas_id,
    iova: BigInt(iova),
    length: BigInt(length),
  };
  fd.ioctl(IOMMU_IOAS_UNMAP, cmd);
  return Number(cmd.length);
}

/** Mirrors _test_cmd_hwpt_alloc(): a paging HWPT with `flags` (and driver data). */
export function _test_cmd_hwpt_alloc(
  fd: IommuFd,
  dev_id: number,
  pt_id: number,
  flags: number,
  data?: { type: number; uptr: number; len: number },
): number {
  const cmd: iommu_hwpt_alloc = {
    size: sizeof(iommu_hwpt_alloc),
    flags,
    dev_id,
    pt_id,
    out_hwpt_id: 0,
    __reserved: 0,
    data_type: data?.type ?? IOMMU_HWPT_DATA_NONE,
    data_len: data?.len ?? 0,
    data_uptr: BigInt(data?.uptr ?? 0),
  };
  fd.ioctl(IOMMU_HWPT_ALLOC, cmd);
  return cmd.out_hwpt_id;
}

/** Mirrors _test_cmd_set_dirty_tracking(). */
export function _test_cmd_set_dirty_tracking(fd: IommuFd, hwpt_id: number, enabled: boolean): void {
  fd.ioctl(IOMMU_HWPT_SET_DIRTY_TRACKING, {
    size: sizeof(iommu_hwpt_set_dirty_tracking),
    flags: enabled ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
    hwpt_id,
    __reserved: 0,
  } as iommu_hwpt_set_dirty_tracking);
}

/** Mirrors _test_cmd_get_dirty_bitmap(). */
export function _test_cmd_get_dirty_bitmap(
  fd: IommuFd,
  hwpt_id: number,
  length: number,
  iova: number,
  page_size: number,
  bitmap: number,
  flags: number,
): void {
  fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, {
    size: sizeof(iommu_hwpt_get_dirty_bitmap),
    hwpt_id,
    flags,
    __reserved: 0,
    iova: BigInt(iova),
    length: BigInt(length),
    page_size: BigInt(page_size),
    data: BigInt(bitmap),
  } as iommu_hwpt_get_dirty_bitmap);
}

/** Mirrors _test_cmd_mock_domain_set_dirty(): marks pages dirty; returns how many. */
export function _test_cmd_mock_domain_set_dirty(
  fd: IommuFd,
  hwpt_id: number,
  length: number,
  iova: number,
  page_size: number,
  bitmap: number,
): number {
  const cmd: iommu_test_cmd = {
    size: sizeof(iommu_test_cmd),
    op: IOMMU_TEST_OP_DIRTY,
    id: hwpt_id,
    dirty: {
      flags: 0,
      iova: BigInt(iova),
      length: BigInt(length),
      page_size: BigInt(page_size),
      uptr: BigInt(bitmap),
      out_nr_dirty: 0n,
    },
  };
  fd.ioctl(IOMMU_TEST_CMD, cmd);
  return Number(cmd.dirty!.out_nr_dirty);
}

/** Mirrors _test_cmd_get_hw_info(): the hw_info data type, length and capabilities. */
export function _test_cmd_get_hw_info(
  fd: IommuFd,
  dev_id: number,
  data: number,
  data_len: number,
): iommu_hw_info {
  const cmd: iommu_hw_info = {
    size: sizeof(iommu_hw_info),
    flags: 0,
    dev_id,
    data_len,
    data_uptr: BigInt(data),
    out_data_type: 0,
    __reserved: 0,
    out_capabilities: 0n,
  };
  fd.ioctl(IOMMU_GET_HW_INFO, cmd);
  return cmd;
}
