import assert from "node:assert/strict";
import {
  copy_struct_from_user,
  IOMMU_DESTROY,
  iommu_destroy,
  iommu_hw_info,
  iommu_hwpt_alloc,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  iommu_hwpt_get_dirty_bitmap,
  iommu_hwpt_set_dirty_tracking,
  iommu_ioas_alloc,
  iommu_ioas_allow_iovas,
  iommu_ioas_copy,
  iommu_ioas_iova_ranges,
  IOMMU_IOAS_MAP,
  iommu_ioas_map,
  iommu_ioas_unmap,
  iommu_iova_range,
  iommu_option,
  offsetofend,
  sizeof,
  type UapiStruct,
} from "./uapi.ts";
import { iommu_test_cmd } from "./iommufd_test_h.ts";

Deno.test("uapi structures have the size and field offsets C gives them", () => {
  const want: [UapiStruct, number, string, number][] = [
    [iommu_destroy, 8, "id", 8],
    [iommu_ioas_alloc, 12, "out_ioas_id", 12],
    [iommu_iova_range, 16, "last", 16],
    [iommu_ioas_iova_ranges, 32, "out_iova_alignment", 32],
    [iommu_ioas_allow_iovas, 24, "allowed_iovas", 24],
    [iommu_ioas_map, 40, "iova", 40],
    [iommu_ioas_copy, 40, "src_iova", 40],
    [iommu_ioas_unmap, 24, "length", 24],
    [iommu_option, 24, "val64", 24],
    // The first version of HWPT_ALLOC and GET_HW_INFO ended at __reserved.
    [iommu_hwpt_alloc, 48, "__reserved", 24],
    [iommu_hw_info, 40, "__reserved", 32],
    [iommu_hwpt_set_dirty_tracking, 16, "__reserved", 16],
    [iommu_hwpt_get_dirty_bitmap, 48, "data", 48],
  ];
  for (const [s, size, last, end] of want) {
    assert.equal(sizeof(s), size, s.name);
    assert.equal(offsetofend(s, last), end, `${s.name}.${last}`);
  }
  assert.equal(offsetofend(iommu_hw_info, "out_capabilities"), 40);
  assert.equal(offsetofend(iommu_hwpt_alloc, "data_uptr"), 40);
  assert.throws(() => offsetofend(iommu_destroy, "nope"), RangeError);
});

Deno.test("copy_struct_from_user(): zero past the caller's size, E2BIG for non-zero bytes past the kernel's", () => {
  const map = {
    size: 24,
    flags: 6,
    ioas_id: 3,
    __reserved: 0,
    user_va: 0x1000n,
    length: 0x2000n,
    iova: 0x3000n,
  };
  // An older caller's 24 bytes: length and iova read as 0.
  assert.deepEqual(copy_struct_from_user(iommu_ioas_map, map, 24), {
    ...map,
    length: 0n,
    iova: 0n,
  });
  // A newer caller's zero tail is fine, a non-zero one is E2BIG.
  const newer = { ...map, size: 48, trailing: new Uint8Array(8) };
  assert.equal(copy_struct_from_user(iommu_ioas_map, newer, 48).iova, 0x3000n);
  newer.trailing[7] = 1;
  assert.throws(() => copy_struct_from_user(iommu_ioas_map, newer, 48), { code: "E2BIG" });
  assert.equal(copy_struct_from_user(iommu_ioas_map, newer, 47).iova, 0x3000n);
});

Deno.test("iommu_test_cmd's union members share bytes, as a C union does", () => {
  const cmd = copy_struct_from_user(iommu_test_cmd, {
    size: sizeof(iommu_test_cmd),
    add_reserved: { start: 0x10n, length: 0x20n },
  } as never, sizeof(iommu_test_cmd));
  assert.deepEqual(cmd.add_reserved, { start: 0x10n, length: 0x20n });
  assert.equal((cmd.check_map as { iova: bigint }).iova, 0x10n);
  assert.equal(offsetofend(iommu_test_cmd, "last"), 68);
});

Deno.test("ioctl numbers are _IO(';', nr) of the uapi's command numbers", () => {
  assert.equal(IOMMU_DESTROY, 0x3b80);
  assert.equal(IOMMU_IOAS_MAP, 0x3b85);
  assert.equal(IOMMU_HWPT_GET_DIRTY_BITMAP, 0x3b8c);
});
