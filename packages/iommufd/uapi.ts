/**
 * The iommufd user API: command numbers, flags and the command structures with the layout C
 * gives them. Mirrors include/uapi/linux/iommufd.h (the commands up to
 * IOMMU_HWPT_GET_DIRTY_BITMAP; IOMMU_HWPT_ALLOC with the fault_id of later kernels).
 *
 * A structure value is a plain object with the uapi's field names: `__u32`/`__u16`/`__u8` are
 * numbers, `__u64`/`__aligned_u64` are bigints (so `U64_MAX` and the EOVERFLOW checks stay
 * exact). Each structure has a descriptor ({@linkcode UapiStruct}) with the offsets and size a C
 * compiler gives it, so `sizeof()` and `offsetofend()` mean what they mean in C, and the ioctl
 * layer copies exactly `size` bytes as `copy_struct_from_user()` does. Bytes a newer caller
 * sends past the end of the structure the kernel knows go in `trailing`.
 *
 * @module
 */
import { Errno } from "@iommu-lab/kernel";

/** The ioctl type of iommufd (`';'`). */
export const IOMMUFD_TYPE = 0x3b;

/** Mirrors _IO(): an ioctl number without a size (iommufd passes the size in the structure). */
export function _IO(type: number, nr: number): number {
  return ((type & 0xff) << 8) | (nr & 0xff);
}

/** Mirrors _IOC_NR(): the command number of an ioctl. */
export function _IOC_NR(cmd: number): number {
  return cmd & 0xff;
}

/** First iommufd command number. */
export const IOMMUFD_CMD_BASE = 0x80;
/** enum iommufd command numbers. */
export const IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE;
/** IOMMUFD_CMD_IOAS_ALLOC. */
export const IOMMUFD_CMD_IOAS_ALLOC = 0x81;
/** IOMMUFD_CMD_IOAS_ALLOW_IOVAS. */
export const IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82;
/** IOMMUFD_CMD_IOAS_COPY. */
export const IOMMUFD_CMD_IOAS_COPY = 0x83;
/** IOMMUFD_CMD_IOAS_IOVA_RANGES. */
export const IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84;
/** IOMMUFD_CMD_IOAS_MAP. */
export const IOMMUFD_CMD_IOAS_MAP = 0x85;
/** IOMMUFD_CMD_IOAS_UNMAP. */
export const IOMMUFD_CMD_IOAS_UNMAP = 0x86;
/** IOMMUFD_CMD_OPTION. */
export const IOMMUFD_CMD_OPTION = 0x87;
/** IOMMUFD_CMD_HWPT_ALLOC. */
export const IOMMUFD_CMD_HWPT_ALLOC = 0x89;
/** IOMMUFD_CMD_GET_HW_INFO. */
export const IOMMUFD_CMD_GET_HW_INFO = 0x8a;
/** IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING. */
export const IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b;
/** IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP. */
export const IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c;

/** ioctl(IOMMU_DESTROY). */
export const IOMMU_DESTROY: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY);
/** ioctl(IOMMU_IOAS_ALLOC). */
export const IOMMU_IOAS_ALLOC: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC);
/** ioctl(IOMMU_IOAS_ALLOW_IOVAS). */
export const IOMMU_IOAS_ALLOW_IOVAS: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS);
/** ioctl(IOMMU_IOAS_COPY). */
export const IOMMU_IOAS_COPY: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY);
/** ioctl(IOMMU_IOAS_IOVA_RANGES). */
export const IOMMU_IOAS_IOVA_RANGES: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES);
/** ioctl(IOMMU_IOAS_MAP). */
export const IOMMU_IOAS_MAP: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP);
/** ioctl(IOMMU_IOAS_UNMAP). */
export const IOMMU_IOAS_UNMAP: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP);
/** ioctl(IOMMU_OPTION). */
export const IOMMU_OPTION: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION);
/** ioctl(IOMMU_HWPT_ALLOC). */
export const IOMMU_HWPT_ALLOC: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC);
/** ioctl(IOMMU_GET_HW_INFO). */
export const IOMMU_GET_HW_INFO: number = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO);
/** ioctl(IOMMU_HWPT_SET_DIRTY_TRACKING). */
export const IOMMU_HWPT_SET_DIRTY_TRACKING: number = _IO(
  IOMMUFD_TYPE,
  IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING,
);
/** ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP). */
export const IOMMU_HWPT_GET_DIRTY_BITMAP: number = _IO(
  IOMMUFD_TYPE,
  IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP,
);

/** enum iommufd_ioas_map_flags: map at the given IOVA rather than one the kernel picks. */
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
/** enum iommufd_ioas_map_flags: DMA may write. */
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
/** enum iommufd_ioas_map_flags: DMA may read. */
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;
/** enum iommufd_option: RLIMIT_MEMLOCK accounting mode (global). */
export const IOMMU_OPTION_RLIMIT_MODE = 0;
/** enum iommufd_option: combine contiguous pages into large IOMMU pages (per IOAS). */
export const IOMMU_OPTION_HUGE_PAGES = 1;
/** enum iommufd_option_ops: set the value. */
export const IOMMU_OPTION_OP_SET = 0;
/** enum iommufd_option_ops: read the value. */
export const IOMMU_OPTION_OP_GET = 1;
/** enum iommu_hwpt_data_type: no driver data. */
export const IOMMU_HWPT_DATA_NONE = 0;
/** enum iommu_hw_info_type: the driver reports no hardware information. */
export const IOMMU_HW_INFO_TYPE_NONE = 0;
/** enum iommufd_hw_capabilities: the IOMMU can track dirty pages. */
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
/** enum iommufd_hwpt_set_dirty_tracking_flags: turn tracking on. */
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
/** enum iommufd_hwpt_get_dirty_bitmap_flags: read without clearing the dirty state. */
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;
/** U64_MAX: with IOVA 0, the length of IOMMU_IOAS_UNMAP that unmaps everything. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** A scalar field type. */
export type UapiScalar = "u8" | "u16" | "u32" | "u64";

/** One field of a {@linkcode UapiStruct}. */
export interface UapiField {
  /** Field name, as in the C structure. */
  readonly name: string;
  /** Byte offset. */
  readonly offset: number;
  /** Scalar type, or a nested structure. */
  readonly type: UapiScalar | UapiStruct;
  /** True for a member of an anonymous union (it shares its bytes with the other members). */
  readonly union: boolean;
}

/** The layout of a C structure: what `sizeof` and `offsetof` return for it. */
export class UapiStruct {
  /** Use {@linkcode uapi_struct}. */
  constructor(
    /** The C name, for messages. */
    readonly name: string,
    /** sizeof(struct), padding included. */
    readonly size: number,
    /** Alignment of the structure. */
    readonly align: number,
    /** The fields in order. */
    readonly fields: readonly UapiField[],
  ) {}
}

/** Every uapi structure value carries its size as its first field. */
export interface UapiHeader {
  /** sizeof the structure as the caller knows it. */
  size: number;
  /** Bytes the caller's (newer) structure has after the end of the one this kernel knows. */
  trailing?: Uint8Array;
}

/** A member of {@linkcode uapi_struct}: a named field, or an anonymous union of them. */
export type UapiMember =
  | readonly [string, UapiScalar | UapiStruct]
  | { readonly union: readonly (readonly [string, UapiScalar | UapiStruct])[] };

const SCALAR_SIZE: Record<UapiScalar, number> = { u8: 1, u16: 2, u32: 4, u64: 8 };

function _sizeAlign(t: UapiScalar | UapiStruct): [number, number] {
  return typeof t === "string" ? [SCALAR_SIZE[t], SCALAR_SIZE[t]] : [t.size, t.align];
}

function _alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Lays a structure out as C does: each member at the next offset its alignment allows
 * (`__aligned_u64` is 8-aligned on every ABI iommufd supports), the size rounded to the largest
 * alignment.
 */
export function uapi_struct(name: string, members: readonly UapiMember[]): UapiStruct {
  const fields: UapiField[] = [];
  let off = 0;
  let align = 1;
  for (const m of members) {
    const list = "union" in m ? m.union : [m];
    let usize = 0;
    let ualign = 1;
    for (const [, t] of list) {
      const [s, a] = _sizeAlign(t);
      usize = Math.max(usize, s);
      ualign = Math.max(ualign, a);
    }
    off = _alignUp(off, ualign);
    for (const [fname, t] of list) {
      fields.push({ name: fname, offset: off, type: t, union: "union" in m });
    }
    off += usize;
    align = Math.max(align, ualign);
  }
  return new UapiStruct(name, _alignUp(off, align), align, fields);
}

/** Mirrors sizeof(struct ...). */
export function sizeof(s: UapiStruct): number {
  return s.size;
}

/** Mirrors offsetofend(): the offset of the byte after field `name`. */
export function offsetofend(s: UapiStruct, name: string): number {
  const f = s.fields.find((x) => x.name === name);
  if (f === undefined) throw new RangeError(`${s.name} has no field ${name}`);
  return f.offset + _sizeAlign(f.type)[0];
}

type Obj = Record<string, unknown>;

/** Writes the fields `obj` has into `view` at `base` (missing fields stay as they are: zero). */
export function _uapi_encode(s: UapiStruct, obj: Obj, view: DataView, base: number): void {
  for (const f of s.fields) {
    const v = obj[f.name];
    if (v === undefined) continue;
    const at = base + f.offset;
    if (typeof f.type !== "string") {
      _uapi_encode(f.type, v as Obj, view, at);
    } else if (f.type === "u64") {
      view.setBigUint64(at, BigInt.asUintN(64, v as bigint), true);
    } else if (f.type === "u32") {
      view.setUint32(at, v as number, true);
    } else if (f.type === "u16") {
      view.setUint16(at, v as number, true);
    } else {
      view.setUint8(at, v as number);
    }
  }
}

/** Reads every field (every member of each union) from `view` at `base`. */
export function _uapi_decode(s: UapiStruct, view: DataView, base: number): Obj {
  const out: Obj = {};
  for (const f of s.fields) {
    const at = base + f.offset;
    if (typeof f.type !== "string") out[f.name] = _uapi_decode(f.type, view, at);
    else if (f.type === "u64") out[f.name] = view.getBigUint64(at, true);
    else if (f.type === "u32") out[f.name] = view.getUint32(at, true);
    else if (f.type === "u16") out[f.name] = view.getUint16(at, true);
    else out[f.name] = view.getUint8(at);
  }
  return out;
}

/**
 * Copies the fields of `from` that end within `len` bytes into `to` (a copy_to_user() of the
 * first `len` bytes). Of a union, only the members `to` already has are written: the caller
 * looks at the structure through that member. A field the length cuts in two is not written.
 */
export function _uapi_write_back(s: UapiStruct, from: Obj, to: Obj, len: number): void {
  for (const f of s.fields) {
    if (f.offset + _sizeAlign(f.type)[0] > len) {
      if (typeof f.type !== "string" && f.offset < len && to[f.name] !== undefined) {
        _uapi_write_back(f.type, from[f.name] as Obj, to[f.name] as Obj, len - f.offset);
      }
      continue;
    }
    if (f.union && to[f.name] === undefined) continue;
    if (typeof f.type !== "string") {
      to[f.name] ??= {};
      _uapi_write_back(f.type, from[f.name] as Obj, to[f.name] as Obj, Infinity);
    } else {
      to[f.name] = from[f.name];
    }
  }
}

/**
 * Mirrors copy_struct_from_user(): the kernel's view (`ksize` bytes) of a caller's structure of
 * `usize` bytes. Bytes past `usize` read as zero; bytes past `ksize` (the caller's newer fields,
 * from `trailing`) must be zero, else E2BIG.
 */
export function copy_struct_from_user(
  s: UapiStruct,
  user: UapiHeader,
  usize: number,
): Record<string, unknown> {
  const buf = new Uint8Array(Math.max(usize, s.size) + 8);
  _uapi_encode(s, user as unknown as Obj, new DataView(buf.buffer), 0);
  if (user.trailing !== undefined && usize > s.size) {
    buf.set(user.trailing.subarray(0, Math.min(user.trailing.length, usize - s.size)), s.size);
  }
  return _uapi_struct_from_bytes(s, buf.subarray(0, usize));
}

/**
 * The kernel's view of a structure a caller passed as `bytes` (driver data, say): bytes past
 * the end read as zero, bytes past the structure the kernel knows must be zero (E2BIG).
 */
export function _uapi_struct_from_bytes(s: UapiStruct, bytes: Uint8Array): Obj {
  for (let i = s.size; i < bytes.length; i++) {
    if (bytes[i] !== 0) throw new Errno("E2BIG", `${s.name}: non-zero bytes past ${s.size}`);
  }
  const buf = new Uint8Array(Math.max(s.size, bytes.length));
  buf.set(bytes);
  return _uapi_decode(s, new DataView(buf.buffer), 0);
}

/** struct iommu_destroy. */
export interface iommu_destroy extends UapiHeader {
  /** Object to destroy. */
  id: number;
}
/** Layout of struct iommu_destroy. */
export const iommu_destroy: UapiStruct = uapi_struct("iommu_destroy", [
  ["size", "u32"],
  ["id", "u32"],
]);

/** struct iommu_ioas_alloc. */
export interface iommu_ioas_alloc extends UapiHeader {
  /** Must be 0. */
  flags: number;
  /** Output: the new IOAS. */
  out_ioas_id: number;
}
/** Layout of struct iommu_ioas_alloc. */
export const iommu_ioas_alloc: UapiStruct = uapi_struct("iommu_ioas_alloc", [
  ["size", "u32"],
  ["flags", "u32"],
  ["out_ioas_id", "u32"],
]);

/** struct iommu_iova_range: an interval of IOVA, `last` inclusive. */
export interface iommu_iova_range {
  /** First IOVA. */
  start: bigint;
  /** Last IOVA (inclusive). */
  last: bigint;
}
/** Layout of struct iommu_iova_range. */
export const iommu_iova_range: UapiStruct = uapi_struct("iommu_iova_range", [
  ["start", "u64"],
  ["last", "u64"],
]);

/** struct iommu_ioas_iova_ranges. */
export interface iommu_ioas_iova_ranges extends UapiHeader {
  /** IOAS to read. */
  ioas_id: number;
  /** In: entries of `allowed_iovas`; out: the number of ranges. */
  num_iovas: number;
  /** Must be 0. */
  __reserved: number;
  /** User pointer to an array of struct iommu_iova_range. */
  allowed_iovas: bigint;
  /** Output: the alignment MAP and COPY need. */
  out_iova_alignment: bigint;
}
/** Layout of struct iommu_ioas_iova_ranges. */
export const iommu_ioas_iova_ranges: UapiStruct = uapi_struct("iommu_ioas_iova_ranges", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["num_iovas", "u32"],
  ["__reserved", "u32"],
  ["allowed_iovas", "u64"],
  ["out_iova_alignment", "u64"],
]);

/** struct iommu_ioas_allow_iovas. */
export interface iommu_ioas_allow_iovas extends UapiHeader {
  /** IOAS to change. */
  ioas_id: number;
  /** Entries of `allowed_iovas`. */
  num_iovas: number;
  /** Must be 0. */
  __reserved: number;
  /** User pointer to an array of struct iommu_iova_range. */
  allowed_iovas: bigint;
}
/** Layout of struct iommu_ioas_allow_iovas. */
export const iommu_ioas_allow_iovas: UapiStruct = uapi_struct("iommu_ioas_allow_iovas", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["num_iovas", "u32"],
  ["__reserved", "u32"],
  ["allowed_iovas", "u64"],
]);

/** struct iommu_ioas_map. */
export interface iommu_ioas_map extends UapiHeader {
  /** IOMMU_IOAS_MAP_* flags. */
  flags: number;
  /** IOAS to map into. */
  ioas_id: number;
  /** Must be 0. */
  __reserved: number;
  /** User address of the memory to map. */
  user_va: bigint;
  /** Bytes to map. */
  length: bigint;
  /** In with FIXED_IOVA, else out: where the mapping is. */
  iova: bigint;
}
/** Layout of struct iommu_ioas_map. */
export const iommu_ioas_map: UapiStruct = uapi_struct("iommu_ioas_map", [
  ["size", "u32"],
  ["flags", "u32"],
  ["ioas_id", "u32"],
  ["__reserved", "u32"],
  ["user_va", "u64"],
  ["length", "u64"],
  ["iova", "u64"],
]);

/** struct iommu_ioas_copy. */
export interface iommu_ioas_copy extends UapiHeader {
  /** IOMMU_IOAS_MAP_* flags. */
  flags: number;
  /** IOAS to map into. */
  dst_ioas_id: number;
  /** IOAS to copy from. */
  src_ioas_id: number;
  /** Bytes to copy. */
  length: bigint;
  /** In with FIXED_IOVA, else out: where the copy is mapped. */
  dst_iova: bigint;
  /** IOVA of the source range. */
  src_iova: bigint;
}
/** Layout of struct iommu_ioas_copy. */
export const iommu_ioas_copy: UapiStruct = uapi_struct("iommu_ioas_copy", [
  ["size", "u32"],
  ["flags", "u32"],
  ["dst_ioas_id", "u32"],
  ["src_ioas_id", "u32"],
  ["length", "u64"],
  ["dst_iova", "u64"],
  ["src_iova", "u64"],
]);

/** struct iommu_ioas_unmap. */
export interface iommu_ioas_unmap extends UapiHeader {
  /** IOAS to change. */
  ioas_id: number;
  /** First IOVA to unmap. */
  iova: bigint;
  /** In: bytes to unmap; out: bytes unmapped. */
  length: bigint;
}
/** Layout of struct iommu_ioas_unmap. */
export const iommu_ioas_unmap: UapiStruct = uapi_struct("iommu_ioas_unmap", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["iova", "u64"],
  ["length", "u64"],
]);

/** struct iommu_option. */
export interface iommu_option extends UapiHeader {
  /** IOMMU_OPTION_RLIMIT_MODE or IOMMU_OPTION_HUGE_PAGES. */
  option_id: number;
  /** IOMMU_OPTION_OP_SET or _GET. */
  op: number;
  /** Must be 0. */
  __reserved: number;
  /** The IOAS for per-IOAS options, 0 for global ones. */
  object_id: number;
  /** The value set, or read back. */
  val64: bigint;
}
/** Layout of struct iommu_option. */
export const iommu_option: UapiStruct = uapi_struct("iommu_option", [
  ["size", "u32"],
  ["option_id", "u32"],
  ["op", "u16"],
  ["__reserved", "u16"],
  ["object_id", "u32"],
  ["val64", "u64"],
]);

/** struct iommu_hwpt_alloc. */
export interface iommu_hwpt_alloc extends UapiHeader {
  /** IOMMU_HWPT_ALLOC_* flags. */
  flags: number;
  /** The device the HWPT is for. */
  dev_id: number;
  /** The IOAS to connect the HWPT to. */
  pt_id: number;
  /** Output: the new HWPT. */
  out_hwpt_id: number;
  /** Must be 0. */
  __reserved: number;
  /** enum iommu_hwpt_data_type of the driver data. */
  data_type?: number;
  /** Length of the driver data. */
  data_len?: number;
  /** User pointer to the driver data. */
  data_uptr?: bigint;
  /** Fault object, with IOMMU_HWPT_ALLOC_FAULT_ID_VALID. */
  fault_id?: number;
  /** Must be 0. */
  __reserved2?: number;
}
/** Layout of struct iommu_hwpt_alloc. */
export const iommu_hwpt_alloc: UapiStruct = uapi_struct("iommu_hwpt_alloc", [
  ["size", "u32"],
  ["flags", "u32"],
  ["dev_id", "u32"],
  ["pt_id", "u32"],
  ["out_hwpt_id", "u32"],
  ["__reserved", "u32"],
  ["data_type", "u32"],
  ["data_len", "u32"],
  ["data_uptr", "u64"],
  ["fault_id", "u32"],
  ["__reserved2", "u32"],
]);

/** struct iommu_hw_info. */
export interface iommu_hw_info extends UapiHeader {
  /** Must be 0. */
  flags: number;
  /** The device to report on. */
  dev_id: number;
  /** In: bytes at `data_uptr`; out: bytes of information the driver has. */
  data_len: number;
  /** User pointer to a buffer for the driver's information. */
  data_uptr: bigint;
  /** Output: enum iommu_hw_info_type of the information. */
  out_data_type: number;
  /** Must be 0. */
  __reserved: number;
  /** Output: IOMMU_HW_CAP_* bits. */
  out_capabilities: bigint;
}
/** Layout of struct iommu_hw_info. */
export const iommu_hw_info: UapiStruct = uapi_struct("iommu_hw_info", [
  ["size", "u32"],
  ["flags", "u32"],
  ["dev_id", "u32"],
  ["data_len", "u32"],
  ["data_uptr", "u64"],
  ["out_data_type", "u32"],
  ["__reserved", "u32"],
  ["out_capabilities", "u64"],
]);

/** struct iommu_hwpt_set_dirty_tracking. */
export interface iommu_hwpt_set_dirty_tracking extends UapiHeader {
  /** IOMMU_HWPT_DIRTY_TRACKING_ENABLE or 0. */
  flags: number;
  /** The HWPT. */
  hwpt_id: number;
  /** Must be 0. */
  __reserved: number;
}
/** Layout of struct iommu_hwpt_set_dirty_tracking. */
export const iommu_hwpt_set_dirty_tracking: UapiStruct = uapi_struct(
  "iommu_hwpt_set_dirty_tracking",
  [["size", "u32"], ["flags", "u32"], ["hwpt_id", "u32"], ["__reserved", "u32"]],
);

/** struct iommu_hwpt_get_dirty_bitmap. */
export interface iommu_hwpt_get_dirty_bitmap extends UapiHeader {
  /** The HWPT. */
  hwpt_id: number;
  /** IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR or 0. */
  flags: number;
  /** Must be 0. */
  __reserved: number;
  /** IOVA of bit 0. */
  iova: bigint;
  /** Bytes of IOVA to report. */
  length: bigint;
  /** Bytes of IOVA per bit, a power of two. */
  page_size: bigint;
  /** User pointer to the bitmap (u64 words, bit i = page i). */
  data: bigint;
}
/** Layout of struct iommu_hwpt_get_dirty_bitmap. */
export const iommu_hwpt_get_dirty_bitmap: UapiStruct = uapi_struct(
  "iommu_hwpt_get_dirty_bitmap",
  [
    ["size", "u32"],
    ["hwpt_id", "u32"],
    ["flags", "u32"],
    ["__reserved", "u32"],
    ["iova", "u64"],
    ["length", "u64"],
    ["page_size", "u64"],
    ["data", "u64"],
  ],
);
