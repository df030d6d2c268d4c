/**
 * What the package's tests share: a kernel on test RAM with /dev/iommu and the mock IOMMU, a
 * process with a buffer, and short forms of the commands.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type ErrnoName,
  Kernel,
  MAP_ANONYMOUS,
  MAP_SHARED,
  mmput,
  MmStruct,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import type { IommuFd } from "./iommufd_private.ts";
import { iommufd_fops_open, iommufd_init } from "./main.ts";
import {
  IOMMU_TEST_CMD,
  iommu_test_cmd,
  IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
} from "./iommufd_test_h.ts";
import { iommufd_test_init, type IommufdSelftest } from "./selftest.ts";
import {
  IOMMU_DESTROY,
  iommu_destroy,
  IOMMU_HWPT_ALLOC,
  iommu_hwpt_alloc,
  IOMMU_IOAS_ALLOC,
  iommu_ioas_alloc,
  IOMMU_IOAS_MAP,
  iommu_ioas_map,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  sizeof,
} from "./uapi.ts";

/** A kernel with /dev/iommu and the mock, a process, an open file and a 64 KiB buffer. */
export interface Sys {
  kernel: Kernel;
  st: IommufdSelftest;
  mm: MmStruct;
  fd: IommuFd;
  buf: number;
}

/** Builds a {@linkcode Sys}. */
export function sys(): Sys {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 28) });
  const iommufd = iommufd_init(kernel);
  const st = iommufd_test_init(iommufd);
  const mm = new MmStruct(kernel);
  const buf = vm_mmap(mm, 0, 0x1_0000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  return { kernel, st, mm, fd: iommufd_fops_open(iommufd, mm), buf };
}

/** The call fails with `code`. */
export function fails(code: ErrnoName, fn: () => unknown): void {
  assert.throws(fn, { code });
}

/** IOMMU_IOAS_ALLOC: a new IOAS. */
export function ioas(s: Sys): number {
  const cmd: iommu_ioas_alloc = { size: sizeof(iommu_ioas_alloc), flags: 0, out_ioas_id: 0 };
  s.fd.ioctl(IOMMU_IOAS_ALLOC, cmd);
  return cmd.out_ioas_id;
}

/** A mock device attached to `pt_id` (with device flags): its handle, HWPT and device IDs. */
export function mock(s: Sys, pt_id: number, dev_flags?: number) {
  const out = { out_stdev_id: 0, out_hwpt_id: 0, out_idev_id: 0, dev_flags: dev_flags ?? 0 };
  const cmd: iommu_test_cmd = dev_flags === undefined
    ? { size: sizeof(iommu_test_cmd), op: IOMMU_TEST_OP_MOCK_DOMAIN, id: pt_id, mock_domain: out }
    : {
      size: sizeof(iommu_test_cmd),
      op: IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
      id: pt_id,
      mock_domain_flags: out,
    };
  s.fd.ioctl(IOMMU_TEST_CMD, cmd);
  return { stdev: out.out_stdev_id, hwpt: out.out_hwpt_id, idev: out.out_idev_id };
}

/** An IOMMU_IOAS_MAP structure (read/write, at `iova` when given). */
export function map_cmd(
  ioas_id: number,
  user_va: number,
  length: number | bigint,
  iova?: number | bigint,
): iommu_ioas_map {
  return {
    size: sizeof(iommu_ioas_map),
    flags: IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE |
      (iova === undefined ? 0 : IOMMU_IOAS_MAP_FIXED_IOVA),
    ioas_id,
    __reserved: 0,
    user_va: BigInt(user_va),
    length: BigInt(length),
    iova: BigInt(iova ?? 0),
  };
}

/** IOMMU_IOAS_MAP: returns the IOVA. */
export function map(s: Sys, ioas_id: number, length: number, iova?: number): number {
  const cmd = map_cmd(ioas_id, s.buf, length, iova);
  s.fd.ioctl(IOMMU_IOAS_MAP, cmd);
  return Number(cmd.iova);
}

/** An IOMMU_HWPT_ALLOC structure. */
export function hwpt_cmd(dev_id: number, pt_id: number, flags = 0): iommu_hwpt_alloc {
  return {
    size: sizeof(iommu_hwpt_alloc),
    flags,
    dev_id,
    pt_id,
    out_hwpt_id: 0,
    __reserved: 0,
  };
}

/** IOMMU_HWPT_ALLOC: returns the HWPT. */
export function hwpt(s: Sys, dev_id: number, pt_id: number, flags = 0): number {
  const cmd = hwpt_cmd(dev_id, pt_id, flags);
  s.fd.ioctl(IOMMU_HWPT_ALLOC, cmd);
  return cmd.out_hwpt_id;
}

/** IOMMU_DESTROY. */
export function destroy(s: Sys, id: number): void {
  s.fd.ioctl(IOMMU_DESTROY, { size: sizeof(iommu_destroy), id } as iommu_destroy);
}

/** Closes the file, lets the process exit, and checks every object and page came back. */
export function close(s: Sys): void {
  s.fd.close();
  assert.equal(s.kernel.slab.allocatedObjects, 0, `${s.kernel.slab.allocations()}`);
  mmput(s.mm);
  assert.equal(s.kernel.pages.allocatedPages, 0, "a page still pinned, or leaked");
}
