/**
 * IO address spaces: the IOAS object and its commands (IOMMU_IOAS_ALLOC, _IOVA_RANGES,
 * _ALLOW_IOVAS, _MAP, _COPY, _UNMAP, and the per-IOAS IOMMU_OPTION_HUGE_PAGES). Mirrors
 * drivers/iommu/iommufd/ioas.c.
 *
 * @module
 */
import { copy_from_user, copy_to_user, Errno, kfree, kmalloc, pr_warn } from "@iommu-lab/kernel";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "@iommu-lab/iommu";
import type { IommufdHwptPaging } from "./hw_pagetable.ts";
import {
  _spans,
  IoPagetable,
  IOPT_ALLOC_IOVA,
  iopt_destroy_table,
  iopt_disable_large_pages,
  iopt_enable_large_pages,
  iopt_free_pages_list,
  iopt_get_pages,
  iopt_map_pages,
  iopt_map_user_pages,
  iopt_set_allow_iova,
  iopt_unmap_all,
  iopt_unmap_iova,
  type IoptInterval,
  type IoptPagesList,
} from "./io_pagetable.ts";
import {
  type IommuFd,
  iommufd_get_object,
  IOMMUFD_OBJ_IOAS,
  iommufd_object_alloc,
  iommufd_object_finalize,
  iommufd_put_object,
  iommufd_ucmd_respond,
  IommufdObject,
  type IommufdUcmd,
} from "./iommufd_private.ts";
import { ULONG_MAX } from "./pages.ts";
import {
  type iommu_ioas_alloc,
  type iommu_ioas_allow_iovas,
  type iommu_ioas_copy,
  type iommu_ioas_iova_ranges,
  type iommu_ioas_map,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  type iommu_ioas_unmap,
  iommu_iova_range,
  type iommu_option,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  sizeof,
  U64_MAX,
} from "./uapi.ts";

/** struct iommufd_ioas: an IO address space. */
export class IommufdIoas extends IommufdObject {
  /** The IOVA → user memory mappings. */
  readonly iopt: IoPagetable;
  /** Paging HWPTs kept in sync with the IOAS (`hwpt_list`). */
  readonly hwpt_list: IommufdHwptPaging[] = [];

  /** An empty IOAS of `ictx`. Mirrors iopt_init_table(). */
  constructor(ictx: IommuFd) {
    super(IOMMUFD_OBJ_IOAS);
    this.iopt = new IoPagetable(ictx);
  }

  /** Mirrors iommufd_ioas_destroy(): unmaps everything, frees the IOVA ranges. */
  destroy(): void {
    try {
      iopt_unmap_all(this.iopt);
    } catch (e) {
      pr_warn(this.iopt.kernel, `iommufd: IOAS ${this.id} cannot unmap all: ${e}`);
    }
    iopt_destroy_table(this.iopt);
  }
}

/** A u64 of the uapi from an IOVA number (2^64 stands for ULONG_MAX). */
export function _u64(n: number): bigint {
  return n >= ULONG_MAX ? U64_MAX : BigInt(n);
}

/**
 * check_add_overflow(iova, length - 1) of the iopt functions, done on the uapi's 64-bit values
 * (as numbers, the sum would round): EOVERFLOW when the range passes U64_MAX.
 */
function _check_range(iova: bigint, length: bigint): void {
  if (length !== 0n && iova + length - 1n > U64_MAX) throw new Errno("EOVERFLOW", "Range wraps");
}

/** Mirrors iommufd_ioas_alloc(): a new, unfinalized IOAS (ENOMEM). */
export function iommufd_ioas_alloc(ictx: IommuFd): IommufdIoas {
  return iommufd_object_alloc(ictx, new IommufdIoas(ictx));
}

/** Mirrors iommufd_get_ioas(): IOAS `id` with a reference (ENOENT). */
export function iommufd_get_ioas(ictx: IommuFd, id: number): IommufdIoas {
  return iommufd_get_object(ictx, id, IOMMUFD_OBJ_IOAS) as IommufdIoas;
}

/** Mirrors iommufd_ioas_alloc_ioctl(): IOMMU_IOAS_ALLOC. EOPNOTSUPP for flags, ENOMEM. */
export function iommufd_ioas_alloc_ioctl(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_ioas_alloc;
  if (cmd.flags) throw new Errno("EOPNOTSUPP", "IOAS_ALLOC takes no flags");
  const ioas = iommufd_ioas_alloc(ucmd.ictx);
  cmd.out_ioas_id = ioas.id;
  iommufd_ucmd_respond(ucmd);
  iommufd_object_finalize(ucmd.ictx, ioas);
}

/** Writes one struct iommu_iova_range to user memory at `uptr`. */
function _put_range(ictx: IommuFd, uptr: number, start: number, last: number): void {
  const b = new Uint8Array(sizeof(iommu_iova_range));
  const v = new DataView(b.buffer);
  v.setBigUint64(0, _u64(start), true);
  v.setBigUint64(8, _u64(last), true);
  copy_to_user(ictx.mm, uptr, b);
}

/**
 * Mirrors iommufd_ioas_iova_ranges(): IOMMU_IOAS_IOVA_RANGES. Writes the IOVA ranges that are
 * not reserved (as many as `num_iovas` allows) and their number; EMSGSIZE, after writing the
 * count, when the array is too small. EOPNOTSUPP for `__reserved`, ENOENT, EFAULT.
 */
export function iommufd_ioas_iova_ranges(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_ioas_iova_ranges;
  if (cmd.__reserved) throw new Errno("EOPNOTSUPP", "__reserved must be 0");
  const ioas = iommufd_get_ioas(ucmd.ictx, cmd.ioas_id);
  try {
    const max = cmd.num_iovas;
    const ranges = Number(cmd.allowed_iovas);
    cmd.num_iovas = 0;
    cmd.out_iova_alignment = BigInt(ioas.iopt.iova_alignment);
    for (const span of _spans(ioas.iopt.reserved, 0, ULONG_MAX)) {
      if (!span.is_hole) continue;
      if (cmd.num_iovas < max) {
        _put_range(
          ucmd.ictx,
          ranges + cmd.num_iovas * sizeof(iommu_iova_range),
          span.start,
          span.last,
        );
      }
      cmd.num_iovas++;
    }
    iommufd_ucmd_respond(ucmd);
    if (cmd.num_iovas > max) {
      throw new Errno("EMSGSIZE", `${cmd.num_iovas} ranges, room for ${max}`);
    }
  } finally {
    iommufd_put_object(ucmd.ictx, ioas);
  }
}

/**
 * Mirrors iommufd_ioas_load_iovas(): reads `num` struct iommu_iova_range from user memory into
 * `out` (sorted, each accounted). EFAULT, EINVAL for an empty range or two that intersect.
 */
function iommufd_ioas_load_iovas(
  ictx: IommuFd,
  out: IoptInterval[],
  ranges: number,
  num: number,
): void {
  const b = new Uint8Array(sizeof(iommu_iova_range));
  const v = new DataView(b.buffer);
  for (let i = 0; i < num; i++) {
    copy_from_user(ictx.mm, b, ranges + i * b.length);
    const start = v.getBigUint64(0, true);
    const last = v.getBigUint64(8, true);
    if (start >= last) throw new Errno("EINVAL", "An allowed range is empty");
    const node = { start: Number(start), last: Number(last) };
    if (out.some((n) => n.start <= node.last && node.start <= n.last)) {
      throw new Errno("EINVAL", "Allowed ranges intersect");
    }
    kmalloc(ictx.kernel, node);
    let at = 0;
    while (at < out.length && out[at].start < node.start) at++;
    out.splice(at, 0, node);
  }
}

/**
 * Mirrors iommufd_ioas_allow_iovas(): IOMMU_IOAS_ALLOW_IOVAS replaces the allowed ranges (none:
 * everything is allowed). EOPNOTSUPP for `__reserved`, ENOENT, EFAULT, EINVAL, and EADDRINUSE
 * when a range is reserved; nothing changes on failure.
 */
export function iommufd_ioas_allow_iovas(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_ioas_allow_iovas;
  if (cmd.__reserved) throw new Errno("EOPNOTSUPP", "__reserved must be 0");
  const ioas = iommufd_get_ioas(ucmd.ictx, cmd.ioas_id);
  const allowed: IoptInterval[] = [];
  try {
    iommufd_ioas_load_iovas(ucmd.ictx, allowed, Number(cmd.allowed_iovas), cmd.num_iovas);
    iopt_set_allow_iova(ioas.iopt, allowed);
  } finally {
    for (const node of allowed) kfree(ucmd.ictx.kernel, node);
    iommufd_put_object(ucmd.ictx, ioas);
  }
}

/**
 * Mirrors conv_iommu_prot(): IOMMU_CACHE always (iommufd binds only cache-coherent IOMMUs),
 * plus READ/WRITE from the map flags.
 */
function conv_iommu_prot(map_flags: number): number {
  let prot = IOMMU_CACHE;
  if (map_flags & IOMMU_IOAS_MAP_WRITEABLE) prot |= IOMMU_WRITE;
  if (map_flags & IOMMU_IOAS_MAP_READABLE) prot |= IOMMU_READ;
  return prot;
}

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

/**
 * Mirrors iommufd_ioas_map(): IOMMU_IOAS_MAP maps user memory at a fixed IOVA or one the kernel
 * picks (written back to `iova`). EOPNOTSUPP for unknown flags or `__reserved`, EOVERFLOW for
 * U64-sized values, EINVAL without READABLE/WRITEABLE, then what iopt_map_user_pages() throws
 * (ENOENT, EEXIST, EINVAL, ENOSPC, EFAULT, ENOMEM).
 */
export function iommufd_ioas_map(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_ioas_map;
  if ((cmd.flags & ~MAP_FLAGS) || cmd.__reserved) {
    throw new Errno("EOPNOTSUPP", `Bad map flags 0x${cmd.flags.toString(16)}`);
  }
  if (cmd.iova >= U64_MAX || cmd.length >= U64_MAX) throw new Errno("EOVERFLOW", "Too large");
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) {
    throw new Errno("EINVAL", "A mapping must be readable or writeable");
  }
  const ioas = iommufd_get_ioas(ucmd.ictx, cmd.ioas_id);
  try {
    const flags = cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? 0 : IOPT_ALLOC_IOVA;
    _check_range(cmd.user_va, cmd.length);
    if (!flags) _check_range(cmd.iova, cmd.length);
    const iova = iopt_map_user_pages(
      ucmd.ictx,
      ioas.iopt,
      Number(cmd.iova),
      Number(cmd.user_va),
      Number(cmd.length),
      conv_iommu_prot(cmd.flags),
      flags,
    );
    cmd.iova = BigInt(iova);
    iommufd_ucmd_respond(ucmd);
  } finally {
    iommufd_put_object(ucmd.ictx, ioas);
  }
}

/**
 * Mirrors iommufd_ioas_copy(): IOMMU_IOAS_COPY maps the memory behind a mapped range of one
 * IOAS into another (or the same) without pinning it again. Errors as MAP, ENOENT when the
 * source range is not mapped without a gap.
 */
export function iommufd_ioas_copy(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_ioas_copy;
  if (cmd.flags & ~MAP_FLAGS) throw new Errno("EOPNOTSUPP", "Bad copy flags");
  if (cmd.length >= U64_MAX || cmd.src_iova >= U64_MAX || cmd.dst_iova >= U64_MAX) {
    throw new Errno("EOVERFLOW", "Too large");
  }
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) {
    throw new Errno("EINVAL", "A mapping must be readable or writeable");
  }
  const ictx = ucmd.ictx;
  const list: IoptPagesList[] = [];
  const src = iommufd_get_ioas(ictx, cmd.src_ioas_id);
  try {
    _check_range(cmd.src_iova, cmd.length);
    iopt_get_pages(src.iopt, Number(cmd.src_iova), Number(cmd.length), list);
  } finally {
    iommufd_put_object(ictx, src);
  }
  try {
    const dst = iommufd_get_ioas(ictx, cmd.dst_ioas_id);
    try {
      const flags = cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? 0 : IOPT_ALLOC_IOVA;
      if (!flags) _check_range(cmd.dst_iova, cmd.length);
      const iova = iopt_map_pages(
        dst.iopt,
        list,
        Number(cmd.length),
        Number(cmd.dst_iova),
        conv_iommu_prot(cmd.flags),
        flags,
      );
      cmd.dst_iova = BigInt(iova);
      iommufd_ucmd_respond(ucmd);
    } finally {
      iommufd_put_object(ictx, dst);
    }
  } finally {
    iopt_free_pages_list(ictx.kernel, list);
  }
}

/**
 * Mirrors iommufd_ioas_unmap(): IOMMU_IOAS_UNMAP removes the mappings inside a range (IOVA 0
 * with length U64_MAX: all of them) and writes back the bytes unmapped. ENOENT (nothing there, or
 * a mapping cut in two), EINVAL, EOVERFLOW.
 */
export function iommufd_ioas_unmap(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_ioas_unmap;
  const ioas = iommufd_get_ioas(ucmd.ictx, cmd.ioas_id);
  try {
    let unmapped: number;
    if (cmd.iova === 0n && cmd.length === U64_MAX) {
      unmapped = iopt_unmap_all(ioas.iopt);
    } else {
      if (cmd.iova >= U64_MAX || cmd.length >= U64_MAX) throw new Errno("EOVERFLOW", "Too large");
      _check_range(cmd.iova, cmd.length);
      unmapped = iopt_unmap_iova(ioas.iopt, Number(cmd.iova), Number(cmd.length));
    }
    cmd.length = _u64(unmapped);
    iommufd_ucmd_respond(ucmd);
  } finally {
    iommufd_put_object(ucmd.ictx, ioas);
  }
}

/**
 * Mirrors iommufd_ioas_option(): IOMMU_OPTION_HUGE_PAGES of the IOAS `object_id` (1: combine
 * contiguous pages, 0: map page by page). ENOENT, EINVAL for another value, EOPNOTSUPP.
 */
export function iommufd_ioas_option(ucmd: IommufdUcmd): void {
  const cmd = ucmd.cmd as unknown as iommu_option;
  if (cmd.__reserved) throw new Errno("EOPNOTSUPP", "__reserved must be 0");
  const ioas = iommufd_get_ioas(ucmd.ictx, cmd.object_id);
  try {
    if (cmd.op === IOMMU_OPTION_OP_GET) {
      cmd.val64 = ioas.iopt.disable_large_pages ? 0n : 1n;
    } else if (cmd.op !== IOMMU_OPTION_OP_SET) {
      throw new Errno("EOPNOTSUPP", `Unknown op ${cmd.op}`);
    } else if (cmd.val64 === 0n) {
      iopt_disable_large_pages(ioas.iopt);
    } else if (cmd.val64 === 1n) {
      iopt_enable_large_pages(ioas.iopt);
    } else {
      throw new Errno("EINVAL", `Bad HUGE_PAGES value ${cmd.val64}`);
    }
  } finally {
    iommufd_put_object(ucmd.ictx, ioas);
  }
}
