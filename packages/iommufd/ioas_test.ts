import assert from "node:assert/strict";
import { copy_to_user, PAGE_SIZE } from "@iommu-lab/kernel";
import { close, destroy, fails, hwpt, ioas, map, map_cmd, mock, sys } from "./_test_fixture.ts";
import { MOCK_APERTURE_LAST, MOCK_APERTURE_START } from "./iommufd_test_h.ts";
import {
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_ALLOW_IOVAS,
  iommu_ioas_allow_iovas,
  IOMMU_IOAS_COPY,
  iommu_ioas_copy,
  IOMMU_IOAS_IOVA_RANGES,
  iommu_ioas_iova_ranges,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_unmap,
  IOMMU_OPTION,
  iommu_option,
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IOMMU_OPTION_RLIMIT_MODE,
  sizeof,
  U64_MAX,
} from "./uapi.ts";

const unmap = (ioas_id: number, iova: bigint, length: bigint): iommu_ioas_unmap => ({
  size: sizeof(iommu_ioas_unmap),
  ioas_id,
  iova,
  length,
});

Deno.test("IOAS commands: ENOENT for an unknown ID or an object of another type", () => {
  const s = sys();
  const id = ioas(s);
  const dev = mock(s, id);
  fails("ENOENT", () => map(s, 999, PAGE_SIZE));
  fails("ENOENT", () => map(s, dev.hwpt, PAGE_SIZE));
  fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(dev.idev, 0n, U64_MAX)));
  const copy = (src_ioas_id: number, dst_ioas_id: number): iommu_ioas_copy => ({
    size: sizeof(iommu_ioas_copy),
    flags: IOMMU_IOAS_MAP_READABLE,
    dst_ioas_id,
    src_ioas_id,
    length: BigInt(PAGE_SIZE),
    dst_iova: 0n,
    src_iova: BigInt(map(s, id, PAGE_SIZE)),
  });
  for (const bad of [999, dev.hwpt, dev.idev]) {
    fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_COPY, copy(bad, id)));
    fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_COPY, copy(id, bad)));
    fails("ENOENT", () =>
      s.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, {
        size: sizeof(iommu_ioas_iova_ranges),
        ioas_id: bad,
        num_iovas: 0,
        __reserved: 0,
        allowed_iovas: 0n,
        out_iova_alignment: 0n,
      } as iommu_ioas_iova_ranges));
    fails("ENOENT", () =>
      s.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, {
        size: sizeof(iommu_ioas_allow_iovas),
        ioas_id: bad,
        num_iovas: 0,
        __reserved: 0,
        allowed_iovas: 0n,
      } as iommu_ioas_allow_iovas));
    fails("ENOENT", () => s.fd.ioctl(IOMMU_OPTION, huge_pages(bad, IOMMU_OPTION_OP_GET)));
  }
  close(s);
});

/** An IOMMU_OPTION structure for HUGE_PAGES of `object_id`. */
const huge_pages = (object_id: number, op: number, val64 = 0n): iommu_option => ({
  size: sizeof(iommu_option),
  option_id: IOMMU_OPTION_HUGE_PAGES,
  op,
  __reserved: 0,
  object_id,
  val64,
});

Deno.test("IOMMU_OPTION: EOPNOTSUPP for __reserved, an unknown option or op, an object on RLIMIT_MODE; EINVAL values; EBUSY once objects exist", () => {
  const s = sys();
  const rlimit = (o: Partial<iommu_option>): iommu_option => ({
    size: sizeof(iommu_option),
    option_id: IOMMU_OPTION_RLIMIT_MODE,
    op: IOMMU_OPTION_OP_SET,
    __reserved: 0,
    object_id: 0,
    val64: 1n,
    ...o,
  });
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_OPTION, rlimit({ __reserved: 1 })));
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_OPTION, rlimit({ option_id: 2 })));
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_OPTION, rlimit({ op: 2 })));
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_OPTION, rlimit({ object_id: 1 })));
  fails("EINVAL", () => s.fd.ioctl(IOMMU_OPTION, rlimit({ val64: 2n })));
  s.fd.ioctl(IOMMU_OPTION, rlimit({}));
  const id = ioas(s);
  fails("EBUSY", () => s.fd.ioctl(IOMMU_OPTION, rlimit({ val64: 0n })));
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_OPTION, huge_pages(id, 2)));
  fails("EINVAL", () => s.fd.ioctl(IOMMU_OPTION, huge_pages(id, IOMMU_OPTION_OP_SET, 2n)));
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_OPTION, { ...huge_pages(id, 0), __reserved: 1 }));
  close(s);
});

Deno.test("IOAS_ALLOC and IOAS_MAP: EOPNOTSUPP for unknown flags or __reserved, EINVAL without READABLE/WRITEABLE", () => {
  const s = sys();
  const id = ioas(s);
  fails(
    "EOPNOTSUPP",
    () => s.fd.ioctl(IOMMU_IOAS_ALLOC, { size: 12, flags: 1, out_ioas_id: 0 } as never),
  );
  fails(
    "EOPNOTSUPP",
    () => s.fd.ioctl(IOMMU_IOAS_MAP, { ...map_cmd(id, s.buf, PAGE_SIZE), flags: 1 << 3 }),
  );
  fails(
    "EOPNOTSUPP",
    () => s.fd.ioctl(IOMMU_IOAS_MAP, { ...map_cmd(id, s.buf, PAGE_SIZE), __reserved: 1 }),
  );
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_MAP, { ...map_cmd(id, s.buf, PAGE_SIZE), flags: 0 }));
  close(s);
});

Deno.test("IOAS_MAP: EOVERFLOW for U64_MAX sizes and wrapping ranges, EINVAL for a zero length", () => {
  const s = sys();
  const id = ioas(s);
  fails("EOVERFLOW", () => s.fd.ioctl(IOMMU_IOAS_MAP, map_cmd(id, s.buf, PAGE_SIZE, U64_MAX)));
  fails("EOVERFLOW", () => s.fd.ioctl(IOMMU_IOAS_MAP, map_cmd(id, s.buf, U64_MAX, 0)));
  fails(
    "EOVERFLOW",
    () => s.fd.ioctl(IOMMU_IOAS_MAP, map_cmd(id, s.buf, BigInt(2 * PAGE_SIZE), U64_MAX - 4096n)),
  );
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_MAP, map_cmd(id, s.buf, 0, 0)));
  close(s);
});

Deno.test("IOAS_MAP with a domain: EINVAL for an IOVA or length below its page, or outside its aperture; EFAULT for unmapped memory", () => {
  const s = sys();
  const id = ioas(s);
  mock(s, id);
  fails("EINVAL", () => map(s, id, PAGE_SIZE, MOCK_APERTURE_START + 0x100));
  fails("EINVAL", () => map(s, id, 0x100, MOCK_APERTURE_START));
  fails("EINVAL", () => map(s, id, PAGE_SIZE, 0));
  fails("EINVAL", () => map(s, id, PAGE_SIZE, MOCK_APERTURE_LAST + 1));
  fails("EFAULT", () => s.fd.ioctl(IOMMU_IOAS_MAP, map_cmd(id, 0x1000, PAGE_SIZE)));
  close(s);
});

Deno.test("IOAS_MAP without a domain pins nothing; the first domain pins, the last one's detach unpins", () => {
  const s = sys();
  const id = ioas(s);
  map(s, id, 4 * PAGE_SIZE, MOCK_APERTURE_START);
  assert.equal(s.mm.folio(s.buf).pincount, 0);
  const a = mock(s, id);
  const b = mock(s, id);
  assert.equal(s.mm.folio(s.buf).pincount, 1);
  destroy(s, a.stdev);
  assert.equal(s.mm.folio(s.buf + 3 * PAGE_SIZE).pincount, 1);
  destroy(s, b.stdev);
  assert.equal(s.mm.folio(s.buf).pincount, 0);
  close(s);
});

Deno.test("IOAS_UNMAP: EINVAL for a zero length, EOVERFLOW when it wraps, ENOENT for nothing mapped or a split", () => {
  const s = sys();
  const id = ioas(s);
  map(s, id, 2 * PAGE_SIZE, 0x10_0000);
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(id, 0x10_0000n, 0n)));
  fails("EOVERFLOW", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(id, U64_MAX, 1n)));
  fails("EOVERFLOW", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(id, 4096n, U64_MAX - 1n)));
  // [2, U64_MAX] does not wrap: it is a range like any other (nothing there).
  fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(id, 0x20_0000n, U64_MAX - 0x20_0000n)));
  fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(id, 0x20_0000n, 4096n)));
  fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_UNMAP, unmap(id, 0x10_0000n, 4096n)));
  const all = unmap(id, 0n, U64_MAX);
  s.fd.ioctl(IOMMU_IOAS_UNMAP, all);
  assert.equal(all.length, 8192n);
  close(s);
});

Deno.test("IOAS_COPY: ENOENT for a source not mapped without a gap, EINVAL for a zero length, EPERM writing read-only pages", () => {
  const s = sys();
  const id = ioas(s);
  const dst = ioas(s);
  map(s, id, PAGE_SIZE, 0x10_0000);
  map(s, id, PAGE_SIZE, 0x10_2000);
  const copy = (
    src_iova: number,
    length: number,
    flags = IOMMU_IOAS_MAP_READABLE,
  ): iommu_ioas_copy => ({
    size: sizeof(iommu_ioas_copy),
    flags,
    dst_ioas_id: dst,
    src_ioas_id: id,
    length: BigInt(length),
    dst_iova: 0n,
    src_iova: BigInt(src_iova),
  });
  fails("ENOENT", () => s.fd.ioctl(IOMMU_IOAS_COPY, copy(0x10_0000, 3 * PAGE_SIZE)));
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_COPY, copy(0x10_0000, 0)));
  fails(
    "EOVERFLOW",
    () => s.fd.ioctl(IOMMU_IOAS_COPY, { ...copy(0, PAGE_SIZE), src_iova: U64_MAX }),
  );
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_IOAS_COPY, copy(0x10_0000, PAGE_SIZE, 1 << 4)));
  const ro = map_cmd(id, s.buf, PAGE_SIZE, 0x20_0000);
  ro.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
  s.fd.ioctl(IOMMU_IOAS_MAP, ro);
  fails("EPERM", () => s.fd.ioctl(IOMMU_IOAS_COPY, copy(0x20_0000, PAGE_SIZE, 2)));
  s.fd.ioctl(IOMMU_IOAS_COPY, copy(0x10_2000, PAGE_SIZE));
  close(s);
});

Deno.test("IOAS_IOVA_RANGES and ALLOW_IOVAS: EOPNOTSUPP for __reserved, EFAULT for a bad array, EINVAL for empty or intersecting ranges", () => {
  const s = sys();
  const id = ioas(s);
  const ranges: iommu_ioas_iova_ranges = {
    size: sizeof(iommu_ioas_iova_ranges),
    ioas_id: id,
    num_iovas: 1,
    __reserved: 1,
    allowed_iovas: BigInt(s.buf),
    out_iova_alignment: 0n,
  };
  fails("EOPNOTSUPP", () => s.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, ranges));
  ranges.__reserved = 0;
  ranges.allowed_iovas = 0n;
  fails("EFAULT", () => s.fd.ioctl(IOMMU_IOAS_IOVA_RANGES, ranges));
  const allow = (num_iovas: number, at = s.buf): iommu_ioas_allow_iovas => ({
    size: sizeof(iommu_ioas_allow_iovas),
    ioas_id: id,
    num_iovas,
    __reserved: 0,
    allowed_iovas: BigInt(at),
  });
  fails("EFAULT", () => s.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, allow(1, 0)));
  const put = (r: [number, number][]) => {
    const b = new DataView(new ArrayBuffer(r.length * 16));
    r.forEach(([a, l], i) => {
      b.setBigUint64(i * 16, BigInt(a), true);
      b.setBigUint64(i * 16 + 8, BigInt(l), true);
    });
    copy_to_user(s.mm, s.buf, new Uint8Array(b.buffer));
  };
  put([[0x5000, 0x5000]]);
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, allow(1)));
  put([[0x1000, 0x8fff], [0x8000, 0x9fff]]);
  fails("EINVAL", () => s.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, allow(2)));
  put([[0x1000, 0x7fff], [0x8000, 0x9fff]]);
  s.fd.ioctl(IOMMU_IOAS_ALLOW_IOVAS, allow(2));
  // MAP picks from the allowed ranges only.
  assert.equal(map(s, id, 0x2000) >= 0x1000 && map(s, id, 0x2000) < 0xa000, true);
  fails("ENOSPC", () => map(s, id, 0x4000));
  close(s);
});

Deno.test("DESTROY of an IOAS a HWPT uses is EBUSY, and works once the HWPT is gone", () => {
  const s = sys();
  const id = ioas(s);
  const dev = mock(s, id);
  const h = hwpt(s, dev.idev, id);
  fails("EBUSY", () => destroy(s, id));
  destroy(s, h);
  destroy(s, dev.stdev);
  destroy(s, id);
  fails("ENOENT", () => destroy(s, id));
  close(s);
});
