/**
 * tools/testing/selftests/iommu/iommufd_fail_nth.c: run a sequence of iommufd calls that
 * succeeds, then run it again once per allocation it makes with that allocation failing
 * (TEST_FAIL_NTH), for the kernel's object allocator (failslab) and its page allocator
 * (fail_page_alloc) in turn. Linux looks for kernel splats; here each failed run must end in an
 * errno, and its teardown must find no page pinned and every page and object given back.
 *
 * The sequences are Linux's basic, map_domain, map_two_domains and device, plus hwpt_dirty (a
 * tracking HWPT: alloc, attach, map, set tracking, dirty reads) that the dirty-tracking issue
 * asks for. Each runs on the mock and on the machine (with the riscv-iommu dirty-tracking series
 * loaded), where the RISC-V driver's own allocations (domains, page tables, PSCIDs and GSCIDs,
 * device contexts) are swept too.
 */
import assert from "node:assert/strict";
import {
  copy_to_user,
  Errno,
  MAP_ANONYMOUS,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "@iommu-lab/iommu";
import {
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  IOMMU_IOAS_ALLOW_IOVAS,
  iommu_ioas_allow_iovas,
  IOMMU_IOAS_COPY,
  iommu_ioas_copy,
  IOMMU_IOAS_IOVA_RANGES,
  iommu_ioas_iova_ranges,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  type IommuFd,
  iommufd_fops_open,
  sizeof,
} from "@iommu-lab/iommufd";
import { MOCK_APERTURE_START } from "@iommu-lab/iommufd/testing";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import { FIXTURE, FIXTURE_VARIANT_ADD, TEST_F, TEST_HARNESS_MAIN } from "./kselftest_harness.ts";
import {
  _test_cmd_get_dirty_bitmap,
  _test_cmd_get_hw_info,
  _test_cmd_hwpt_alloc,
  _test_cmd_set_dirty_tracking,
  _test_ioctl_destroy,
  _test_ioctl_ioas_alloc,
  _test_ioctl_ioas_map,
  _test_ioctl_ioas_unmap,
  MAP_RW,
  mock_env,
  riscv_env,
  type SelftestEnv,
  type SelftestSelf,
  teardown_iommufd,
} from "./iommufd_utils.ts";

/** The fail_nth buffer: 2 MiB. */
const FAIL_NTH_BUFFER_SIZE = 2 * 2 ** 20;

interface FailNthSelf extends SelftestSelf {
  /** Sets the injection off from here (fail_nth_enable()). */
  fail_nth_enable(): void;
}

interface FailNthVariant {
  riscv: boolean;
}

/** Which allocator a sweep fails. */
type Injector = "slab" | "pages";

/** The sweep state: the allocator, and which of its allocations after enable() fails. */
interface NthState {
  which: Injector;
  nth: number;
  /** Allocations seen after enable(). */
  seen: number;
  /** An injected failure fired. */
  fired: boolean;
}

const basic_fail_nth = FIXTURE<FailNthSelf, FailNthVariant>(
  "basic_fail_nth",
  (self, v) => {
    self.env = v.riscv ? riscv_env({ parts: [dirtyPart()] }) : mock_env();
    self.buffer = vm_mmap(
      self.env.mm,
      0,
      FAIL_NTH_BUFFER_SIZE,
      PROT_READ | PROT_WRITE,
      MAP_SHARED | MAP_ANONYMOUS,
    );
    (self as { fd?: IommuFd }).fd = undefined;
    self.fail_nth_enable = () => {};
  },
  (self) => teardown_iommufd(self),
);
FIXTURE_VARIANT_ADD(basic_fail_nth, "mock", { riscv: false });
FIXTURE_VARIANT_ADD(basic_fail_nth, "riscv", { riscv: true });

/**
 * Counts the allocations of `env`'s kernel of `st.which` between on() and off(), and fails the
 * `st.nth`th (never for 0).
 */
function instrument(env: SelftestEnv, st: NthState): { on(): void; off(): void } {
  const slab = env.kernel.slab;
  const pages = env.kernel.pages;
  const slabAlloc = slab.alloc.bind(slab);
  const pagesAlloc = pages.alloc.bind(pages);
  let on = false;
  const count = (which: Injector) => {
    if (!on || which !== st.which) return;
    if (++st.seen === st.nth) {
      st.fired = true;
      throw new Errno("ENOMEM", `fail_nth: ${which} allocation ${st.nth}`);
    }
  };
  slab.alloc = <T extends object>(obj: T): T => {
    count("slab");
    return slabAlloc(obj);
  };
  pages.alloc = (order: number): number => {
    count("pages");
    return pagesAlloc(order);
  };
  return { on: () => on = true, off: () => on = false };
}

/**
 * Mirrors TEST_FAIL_NTH(): runs `seq` clean, then once per allocation it makes after
 * fail_nth_enable() with that allocation failing (each allocator in turn), tearing down and
 * setting up between runs. A run that fails must fail with an errno, after the injection.
 */
function TEST_FAIL_NTH(
  name: string,
  seq: (self: FailNthSelf) => void,
): void {
  TEST_F(basic_fail_nth, name, (self, v) => {
    let first = true;
    for (const which of ["slab", "pages"] as const) {
      for (let nth = 0;; nth++) {
        if (!first) {
          basic_fail_nth.teardown(self, v);
          basic_fail_nth.setup(self, v);
        }
        first = false;
        const st: NthState = { which, nth, seen: 0, fired: false };
        const nth_state = instrument(self.env, st);
        self.fail_nth_enable = nth_state.on;
        try {
          seq(self);
          // A failure nothing can report must at least warn (Linux's WARN under fail_nth).
          assert.ok(
            !st.fired || self.env.kernel.dmesg.grep("Failed to attach the default domain").length,
            `${which} failure ${nth} was swallowed`,
          );
        } catch (e) {
          assert.ok(st.fired && e instanceof Errno, `${which} failure ${nth}: ${e}`);
        }
        nth_state.off();
        // Past the last allocation the sequence runs clean: the sweep is done.
        if (nth !== 0 && !st.fired) break;
      }
    }
  });
}

/** Opens /dev/iommu in the sequence (after enable, as the basic test does). */
function open(self: FailNthSelf): void {
  self.fd = iommufd_fops_open(self.env.iommufd, self.env.mm);
}

// Covers ioas.c.
TEST_FAIL_NTH("basic", (self) => {
  self.fail_nth_enable();
  open(self);
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const ranges = vm_mmap(self.env.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  self.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, {
    size: sizeof(iommu_ioas_iova_ranges),
    ioas_id,
    num_iovas: 10,
    __reserved: 0,
    allowed_iovas: BigInt(ranges),
    out_iova_alignment: 0n,
  } as iommu_ioas_iova_ranges);
  const r = new DataView(new ArrayBuffer(16));
  r.setBigUint64(0, 16n * 1024n, true);
  r.setBigUint64(8, BigInt(FAIL_NTH_BUFFER_SIZE + 16 * 1024 * 600 - 1), true);
  copy_to_user(self.env.mm, ranges, new Uint8Array(r.buffer));
  self.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, {
    size: sizeof(iommu_ioas_allow_iovas),
    ioas_id,
    num_iovas: 1,
    __reserved: 0,
    allowed_iovas: BigInt(ranges),
  } as iommu_ioas_allow_iovas);
  const iova = _test_ioctl_ioas_map(self.fd, ioas_id, self.buffer, FAIL_NTH_BUFFER_SIZE, 0, MAP_RW);
  self.fd.ioctl(IOMMU_IOAS_COPY, {
    size: sizeof(iommu_ioas_copy),
    flags: MAP_RW,
    dst_ioas_id: ioas_id,
    src_ioas_id: ioas_id,
    length: 160n,
    dst_iova: 0n,
    src_iova: BigInt(iova),
  } as iommu_ioas_copy);
  _test_ioctl_ioas_unmap(self.fd, ioas_id, iova, FAIL_NTH_BUFFER_SIZE);
  // The failure path of no IOVA to unmap.
  try {
    _test_ioctl_ioas_unmap(self.fd, ioas_id, iova, FAIL_NTH_BUFFER_SIZE);
  } catch (e) {
    if (!(e instanceof Errno) || e.code !== "ENOENT") throw e;
  }
});

// iopt_area_fill_domains() and iopt_area_fill_domain().
TEST_FAIL_NTH("map_domain", (self) => {
  open(self);
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  self.fail_nth_enable();
  const ids = self.env.mock_domain(self.fd, ioas_id);
  _test_ioctl_ioas_map(self.fd, ioas_id, self.buffer, 262144, 0, MAP_RW);
  self.env.destroy_device(self.fd, ids.stdev_id);
  self.env.mock_domain(self.fd, ioas_id);
});

TEST_FAIL_NTH("map_two_domains", (self) => {
  open(self);
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const a = self.env.mock_domain(self.fd, ioas_id);
  self.fail_nth_enable();
  const b = self.env.mock_domain(self.fd, ioas_id);
  _test_ioctl_ioas_map(self.fd, ioas_id, self.buffer, 262144, 0, MAP_RW);
  self.env.destroy_device(self.fd, a.stdev_id);
  self.env.destroy_device(self.fd, b.stdev_id);
  self.env.mock_domain(self.fd, ioas_id);
  self.env.mock_domain(self.fd, ioas_id);
});

// device.c.
TEST_FAIL_NTH("device", (self) => {
  open(self);
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const ioas_id2 = _test_ioctl_ioas_alloc(self.fd);
  const fixed = IOMMU_IOAS_MAP_FIXED_IOVA | MAP_RW;
  _test_ioctl_ioas_map(self.fd, ioas_id, self.buffer, 4096, MOCK_APERTURE_START, fixed);
  _test_ioctl_ioas_map(self.fd, ioas_id2, self.buffer, 4096, MOCK_APERTURE_START, fixed);
  self.fail_nth_enable();
  const ids = self.env.mock_domain(self.fd, ioas_id);
  const info = vm_mmap(self.env.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  _test_cmd_get_hw_info(self.fd, ids.idev_id, info, 8);
  const hwpt_id = _test_cmd_hwpt_alloc(self.fd, ids.idev_id, ioas_id, 0);
  self.env.mock_domain_replace(self.fd, ids.stdev_id, ioas_id2);
  self.env.mock_domain_replace(self.fd, ids.stdev_id, hwpt_id);
});

// HWPT_ALLOC with DIRTY_TRACKING, attach, map, set tracking, dirty reads.
TEST_FAIL_NTH("hwpt_dirty", (self) => {
  open(self);
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const ids = self.env.mock_domain(self.fd, ioas_id);
  const bitmap = vm_mmap(self.env.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  self.fail_nth_enable();
  const hwpt_id = _test_cmd_hwpt_alloc(
    self.fd,
    ids.idev_id,
    ioas_id,
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  );
  self.env.mock_domain_replace(self.fd, ids.stdev_id, hwpt_id);
  const iova = _test_ioctl_ioas_map(self.fd, ioas_id, self.buffer, 262144, 0, MAP_RW);
  _test_cmd_set_dirty_tracking(self.fd, hwpt_id, true);
  copy_to_user(self.env.mm, bitmap, new Uint8Array(16).fill(0x55));
  self.env.set_dirty(self.fd, hwpt_id, iova, 262144, 2048, bitmap);
  _test_cmd_get_dirty_bitmap(
    self.fd,
    hwpt_id,
    262144,
    iova,
    2048,
    bitmap,
    IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  );
  _test_cmd_get_dirty_bitmap(self.fd, hwpt_id, 262144, iova, 2048, bitmap, 0);
  _test_ioctl_ioas_unmap(self.fd, ioas_id, iova, 262144);
  self.env.mock_domain_replace(self.fd, ids.stdev_id, ioas_id);
  _test_ioctl_destroy(self.fd, hwpt_id);
});

TEST_HARNESS_MAIN(basic_fail_nth);
