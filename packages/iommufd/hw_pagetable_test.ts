import assert from "node:assert/strict";
import {
  copy_from_user,
  copy_to_user,
  MAP_ANONYMOUS,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_FAULT_ID_VALID,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  type IommuDirtyOps,
} from "@iommu-lab/iommu";
import {
  close,
  destroy,
  fails,
  hwpt,
  hwpt_cmd,
  ioas,
  map,
  mock,
  type Sys,
  sys,
} from "./_test_fixture.ts";
import { iommufd_get_object, iommufd_put_object } from "./iommufd_private.ts";
import type { IommufdHwptPaging } from "./hw_pagetable.ts";
import {
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_TEST_CMD,
  iommu_test_cmd,
  IOMMU_TEST_OP_DIRTY,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_PAGE_SIZE,
} from "./iommufd_test_h.ts";
import {
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  iommu_hwpt_get_dirty_bitmap,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  IOMMU_HWPT_SET_DIRTY_TRACKING,
  iommu_hwpt_set_dirty_tracking,
  sizeof,
  U64_MAX,
} from "./uapi.ts";

const set_tracking = (s: Sys, hwpt_id: number, flags = IOMMU_HWPT_DIRTY_TRACKING_ENABLE) =>
  s.fd.ioctl(IOMMU_HWPT_SET_DIRTY_TRACKING, {
    size: sizeof(iommu_hwpt_set_dirty_tracking),
    flags,
    hwpt_id,
    __reserved: 0,
  } as iommu_hwpt_set_dirty_tracking);

function bitmap_cmd(hwpt_id: number, data: number, o: Partial<iommu_hwpt_get_dirty_bitmap> = {}) {
  return {
    size: sizeof(iommu_hwpt_get_dirty_bitmap),
    hwpt_id,
    flags: 0,
    __reserved: 0,
    iova: BigInt(MOCK_APERTURE_START),
    length: 0x8000n,
    page_size: BigInt(MOCK_PAGE_SIZE),
    data: BigInt(data),
    ...o,
  } as iommu_hwpt_get_dirty_bitmap;
}

/** Marks the pages of `bits` (bit i: page i of MOCK_PAGE_SIZE from the aperture) dirty. */
function dirty(s: Sys, hwpt_id: number, bits: number, scratch: number): number {
  copy_to_user(s.mm, scratch, new Uint8Array([bits & 0xff, bits >> 8]));
  const cmd: iommu_test_cmd = {
    size: sizeof(iommu_test_cmd),
    op: IOMMU_TEST_OP_DIRTY,
    id: hwpt_id,
    dirty: {
      flags: 0,
      iova: BigInt(MOCK_APERTURE_START),
      length: 16n * BigInt(MOCK_PAGE_SIZE),
      page_size: BigInt(MOCK_PAGE_SIZE),
      uptr: BigInt(scratch),
      out_nr_dirty: 0n,
    },
  };
  s.fd.ioctl(IOMMU_TEST_CMD, cmd);
  return Number(cmd.dirty!.out_nr_dirty);
}

/** A tracking HWPT with 32 KiB mapped at the mock aperture and a page for bitmaps. */
function tracking(): { s: Sys; id: number; dev: ReturnType<typeof mock>; h: number; bm: number } {
  const s = sys();
  const id = ioas(s);
  const dev = mock(s, id);
  map(s, id, 0x8000, MOCK_APERTURE_START);
  const h = hwpt(s, dev.idev, id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  const bm = vm_mmap(s.mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  return { s, id, dev, h, bm };
}

function read_bits(s: Sys, bm: number): number {
  const b = new Uint8Array(2);
  copy_from_user(s.mm, b, bm);
  return b[0] | b[1] << 8;
}

Deno.test("HWPT_ALLOC: EOPNOTSUPP for __reserved or unknown flags, EINVAL for data without a type or a type without data", () => {
  const s = sys();
  const id = ioas(s);
  const dev = mock(s, id);
  fails(
    "EOPNOTSUPP",
    () => s.fd.ioctl(IOMMU_HWPT_ALLOC, { ...hwpt_cmd(dev.idev, id), __reserved: 1 }),
  );
  fails("EOPNOTSUPP", () => hwpt(s, dev.idev, id, 1 << 5));
  fails("EINVAL", () => s.fd.ioctl(IOMMU_HWPT_ALLOC, { ...hwpt_cmd(dev.idev, id), data_len: 8 }));
  fails(
    "EINVAL",
    () =>
      s.fd.ioctl(IOMMU_HWPT_ALLOC, {
        ...hwpt_cmd(dev.idev, id),
        data_type: IOMMU_HWPT_DATA_SELFTEST,
      }),
  );
  close(s);
});

Deno.test("HWPT_ALLOC: ENOENT for no such device, EINVAL for a pt_id that is not an IOAS, EOPNOTSUPP to nest on a HWPT", () => {
  const s = sys();
  const id = ioas(s);
  const dev = mock(s, id);
  fails("ENOENT", () => hwpt(s, id, id));
  fails("EINVAL", () => hwpt(s, dev.idev, dev.idev));
  fails("EINVAL", () => hwpt(s, dev.idev, 999));
  fails("EOPNOTSUPP", () => hwpt(s, dev.idev, dev.hwpt));
  close(s);
});

Deno.test("HWPT_ALLOC: DIRTY_TRACKING needs IOMMU_CAP_DIRTY_TRACKING, FAULT_ID_VALID no NEST_PARENT and a fault object", () => {
  const s = sys();
  const id = ioas(s);
  const nodirty = mock(s, id, MOCK_FLAGS_DEVICE_NO_DIRTY);
  fails("EOPNOTSUPP", () => hwpt(s, nodirty.idev, id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
  fails(
    "EOPNOTSUPP",
    () => hwpt(s, nodirty.idev, id, IOMMU_HWPT_ALLOC_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_NEST_PARENT),
  );
  fails("ENOENT", () => hwpt(s, nodirty.idev, id, IOMMU_HWPT_ALLOC_FAULT_ID_VALID));
  // A tracking HWPT refuses a device whose IOMMU cannot track (the mock's attach_dev).
  const dev = mock(s, id);
  const h = hwpt(s, dev.idev, id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  fails("EINVAL", () => mock(s, h, MOCK_FLAGS_DEVICE_NO_DIRTY));
  close(s);
});

Deno.test("HWPT_ALLOC driver data: EFAULT unreadable, EOPNOTSUPP unknown type or page table, E2BIG non-zero tail", () => {
  const s = sys();
  const id = ioas(s);
  const dev = mock(s, id);
  const data = (type: number, len: number, uptr: number) =>
    s.fd.ioctl(IOMMU_HWPT_ALLOC, {
      ...hwpt_cmd(dev.idev, id),
      data_type: type,
      data_len: len,
      data_uptr: BigInt(uptr),
    });
  fails("EFAULT", () => data(IOMMU_HWPT_DATA_SELFTEST, 8, 0));
  fails("EOPNOTSUPP", () => data(0x1234, 8, s.buf));
  copy_to_user(s.mm, s.buf, new Uint8Array([0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1]));
  fails("EOPNOTSUPP", () => data(IOMMU_HWPT_DATA_SELFTEST, 8, s.buf));
  fails("E2BIG", () => data(IOMMU_HWPT_DATA_SELFTEST, 13, s.buf));
  fails("EINVAL", () => data(IOMMU_HWPT_DATA_SELFTEST, 2, s.buf));
  close(s);
});

Deno.test("HWPT_SET_DIRTY_TRACKING: EOPNOTSUPP for unknown flags or a domain that cannot track, ENOENT for no such HWPT", () => {
  const { s, id, dev, h } = tracking();
  fails("EOPNOTSUPP", () => set_tracking(s, h, 2));
  fails("ENOENT", () => set_tracking(s, id));
  fails("EOPNOTSUPP", () => set_tracking(s, dev.hwpt));
  set_tracking(s, h);
  set_tracking(s, h, 0);
  close(s);
});

Deno.test("HWPT_GET_DIRTY_BITMAP: flags, reserved, IDs, alignment, page size, overflow and an unmapped range", () => {
  const { s, id, dev, h, bm } = tracking();
  set_tracking(s, h);
  const get = (o: Partial<iommu_hwpt_get_dirty_bitmap>, hwpt_id = h) =>
    s.fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, bitmap_cmd(hwpt_id, bm, o));
  fails("EOPNOTSUPP", () => get({ flags: 2 }));
  fails("EOPNOTSUPP", () => get({ __reserved: 1 }));
  fails("ENOENT", () => get({}, id));
  fails("EOPNOTSUPP", () => get({}, dev.hwpt));
  fails("EINVAL", () => get({ page_size: 0n }));
  fails("EINVAL", () => get({ page_size: 3072n, iova: 0n, length: 3072n * 64n }));
  fails("EINVAL", () => get({ iova: BigInt(MOCK_APERTURE_START + 1024) }));
  fails("EINVAL", () => get({ length: 0n }));
  fails("EOVERFLOW", () => get({ iova: U64_MAX - 2047n }));
  fails("EINVAL", () => get({ length: 0x10000n }));
  get({});
  close(s);
});

Deno.test("HWPT_GET_DIRTY_BITMAP: a bitmap running past the user's memory is EFAULT", () => {
  const { s, h, bm } = tracking();
  set_tracking(s, h);
  // 32 KiB at 2 KiB a bit is 16 bits, two bytes, rounded to a u64: 8 bytes.
  fails("EFAULT", () => s.fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, bitmap_cmd(h, bm + 4096 - 4)));
  s.fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, bitmap_cmd(h, bm + 4096 - 8));
  close(s);
});

Deno.test("HWPT_GET_DIRTY_BITMAP: bit i is page i; NO_CLEAR reads again; a clearing read flushes the IOTLB", () => {
  const { s, h, bm } = tracking();
  set_tracking(s, h);
  assert.equal(dirty(s, h, 0b1000_0101, bm), 3);
  const before = s.st.iotlb_syncs;
  s.fd.ioctl(
    IOMMU_HWPT_GET_DIRTY_BITMAP,
    bitmap_cmd(h, bm, { flags: IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR }),
  );
  assert.equal(read_bits(s, bm), 0b1000_0101);
  assert.equal(s.st.iotlb_syncs, before);
  copy_to_user(s.mm, bm, new Uint8Array(8));
  s.fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, bitmap_cmd(h, bm));
  assert.equal(read_bits(s, bm), 0b1000_0101);
  assert.equal(s.st.iotlb_syncs, before + 1);
  copy_to_user(s.mm, bm, new Uint8Array(8));
  s.fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, bitmap_cmd(h, bm));
  assert.equal(read_bits(s, bm), 0);
  close(s);
});

Deno.test("HWPT_SET_DIRTY_TRACKING enable clears stale dirty state of every area, then turns tracking on", () => {
  const { s, id, h, bm } = tracking();
  map(s, id, 0x8000, MOCK_APERTURE_START + 0x10_0000);
  set_tracking(s, h);
  assert.equal(dirty(s, h, 0xff, bm), 8);
  set_tracking(s, h, 0);
  const obj = iommufd_get_object(s.fd, h, 0) as IommufdHwptPaging;
  const ops = obj.domain.dirty_ops!;
  const log: string[] = [];
  obj.domain.dirty_ops = {
    read_and_clear_dirty(d, iova, size, flags, bitmap) {
      log.push(
        `clear 0x${iova.toString(16)}+0x${size.toString(16)}${
          bitmap.bitmap ? " into a bitmap" : ""
        }`,
      );
      ops.read_and_clear_dirty(d, iova, size, flags, bitmap);
    },
    set_dirty_tracking(d, enabled) {
      log.push(`set ${enabled}`);
      ops.set_dirty_tracking(d, enabled);
    },
  } satisfies IommuDirtyOps;
  iommufd_put_object(s.fd, obj);
  set_tracking(s, h);
  assert.deepEqual(log, ["clear 0x1000000+0x8000", "clear 0x1100000+0x8000", "set true"]);
  // The kernel only sets bits: the user zeroes the bitmap first.
  copy_to_user(s.mm, bm, new Uint8Array(8));
  s.fd.ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, bitmap_cmd(h, bm));
  assert.equal(read_bits(s, bm), 0);
  destroy(s, h);
  close(s);
});
