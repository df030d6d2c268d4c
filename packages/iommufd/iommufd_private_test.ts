import assert from "node:assert/strict";
import { close, destroy, fails, ioas, mock, sys } from "./_test_fixture.ts";
import { _IO, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, sizeof } from "./uapi.ts";

Deno.test("ioctl(): ENOTTY for another driver's number, EFAULT without a structure, EINVAL below the first version's size", () => {
  const s = sys();
  const ok: iommu_ioas_alloc = { size: sizeof(iommu_ioas_alloc), flags: 0, out_ioas_id: 0 };
  fails("ENOTTY", () => s.fd.ioctl(_IO(0x3a, 0x81), ok));
  fails("ENOTTY", () => s.fd.ioctl(_IO(0x3b, 0xff), ok));
  fails("EFAULT", () => s.fd.ioctl(IOMMU_IOAS_ALLOC, null));
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_ALLOC, { ...ok, size: 11 }));
  close(s);
  fails("EBADF", () => s.fd.ioctl(IOMMU_IOAS_ALLOC, ok));
  fails("EBADF", () => s.fd.close());
});

Deno.test("object IDs start at 1 and the lowest free one is reused", () => {
  const s = sys();
  assert.deepEqual([ioas(s), ioas(s), ioas(s)], [1, 2, 3]);
  destroy(s, 2);
  assert.equal(ioas(s), 2);
  assert.equal(ioas(s), 4);
  close(s);
});

Deno.test("close() destroys objects leaves first: devices, then HWPTs, then IOASes", () => {
  const s = sys();
  const id = ioas(s);
  mock(s, id);
  mock(s, id);
  fails("EBUSY", () => destroy(s, id));
  close(s);
});
