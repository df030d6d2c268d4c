/**
 * iommufd's private contract: the object table and its reference rules, the open file
 * (struct iommufd_ctx) with its ioctl dispatch and release, and the ucmd helpers every command
 * uses. Mirrors drivers/iommu/iommufd/iommufd_private.h and the object and file parts of main.c,
 * which live here so the command files can build on them without importing main.ts (whose
 * ioctl table imports them).
 *
 * @module
 */
import {
  Errno,
  Ida,
  ida_alloc_range,
  ida_free,
  type Kernel,
  kfree,
  kmalloc,
  type MmStruct,
  pr_warn,
} from "@iommu-lab/kernel";
import {
  _IOC_NR,
  _uapi_write_back,
  copy_struct_from_user,
  IOMMUFD_TYPE,
  offsetofend,
  type UapiHeader,
  type UapiStruct,
} from "./uapi.ts";

/** enum iommufd_object_type: any type (a lookup that accepts every object). */
export const IOMMUFD_OBJ_ANY = 0;
/** enum iommufd_object_type: a bound device. */
export const IOMMUFD_OBJ_DEVICE = 1;
/** enum iommufd_object_type: a paging HWPT (an iommu_domain the kernel maps). */
export const IOMMUFD_OBJ_HWPT_PAGING = 2;
/** enum iommufd_object_type: an IO address space. */
export const IOMMUFD_OBJ_IOAS = 4;
/** enum iommufd_object_type: a fault queue (none exist here yet; FAULT_ID_VALID finds none). */
export const IOMMUFD_OBJ_FAULT = 6;

/** Highest object ID (xa_limit_31b). */
const IOMMUFD_ID_MAX = 0x7fff_ffff;

/**
 * struct iommufd_object: what the object table holds. `users` counts references that keep the
 * object alive (the table's own, other objects', ioctls in flight); DESTROY needs it at one.
 * Subclasses say how they are torn down.
 */
export abstract class IommufdObject {
  /** ID in the table (0 until allocated). */
  id = 0;
  /** refcount `users`: the table's reference plus every holder. */
  users = 1;
  /** refcount `shortterm_users`: ioctls running on the object, plus the table's. */
  shortterm_users = 1;

  /** An object of enum iommufd_object_type `type`. */
  constructor(readonly type: number) {}

  /** Releases what the object holds (the object ops' destroy). */
  abstract destroy(): void;

  /** Undoes a fully initialised object that was never finalized (the ops' abort). */
  abort(): void {
    this.destroy();
  }
}

/** struct iommufd_ucmd: one ioctl call as the command handlers see it. */
export interface IommufdUcmd<T = Record<string, unknown>> {
  /** The open file. */
  readonly ictx: IommuFd;
  /** The caller's structure (where results go back). */
  readonly ubuffer: UapiHeader;
  /** The caller's `size`. */
  readonly user_size: number;
  /** The kernel's copy of the structure. */
  readonly cmd: T;
  /** The table entry being run (its structure is what a response copies back). */
  readonly op: IommufdIoctlOp;
}

/** struct iommufd_ioctl_op: one entry of the ioctl table. */
export interface IommufdIoctlOp {
  /** The full ioctl number the entry answers. */
  readonly ioctl_num: number;
  /** The structure (its size is `op->size`). */
  readonly struct: UapiStruct;
  /** offsetofend() of the last field of the first version of the structure. */
  readonly min_size: number;
  /** Runs the command; throws an Errno. */
  execute(ucmd: IommufdUcmd): void;
}

/**
 * The iommufd misc device (`/dev/iommu`) of one kernel: its ioctl table. Create it with
 * {@linkcode iommufd_init}.
 */
export class Iommufd {
  /** Ioctl entries by command number. */
  readonly ioctl_ops: Map<number, IommufdIoctlOp> = new Map();

  /** Use {@linkcode iommufd_init}. */
  constructor(readonly kernel: Kernel) {}

  /**
   * Adds a command to the table (an extension's ioctl, as the selftest's IOMMU_TEST_CMD).
   * EEXIST when its number is taken.
   */
  registerIoctl(op: IommufdIoctlOp): void {
    const nr = _IOC_NR(op.ioctl_num);
    if (this.ioctl_ops.has(nr)) throw new Errno("EEXIST", `ioctl 0x${nr.toString(16)} is taken`);
    this.ioctl_ops.set(nr, op);
  }
}

/** enum iopt_pages_account_mode: pinned pages count against the user's RLIMIT_MEMLOCK. */
export const IOPT_PAGES_ACCOUNT_USER = 1;
/** enum iopt_pages_account_mode: pinned pages count against the process's. */
export const IOPT_PAGES_ACCOUNT_MM = 2;

/**
 * An open `/dev/iommu`: struct iommufd_ctx. Commands run through {@linkcode IommuFd.ioctl};
 * user pointers in them are addresses in `mm`, the address space of the process that opened it.
 *
 * @example Allocate an IOAS, map a user buffer, unmap it
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel, MAP_ANONYMOUS, MAP_SHARED, MmStruct, PROT_READ, PROT_WRITE, vm_mmap } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import {
 *   IOMMU_IOAS_ALLOC, iommu_ioas_alloc, IOMMU_IOAS_MAP, iommu_ioas_map, IOMMU_IOAS_MAP_READABLE,
 *   IOMMU_IOAS_UNMAP, iommu_ioas_unmap, iommufd_fops_open, iommufd_init, sizeof,
 * } from "@iommu-lab/iommufd";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const mm = new MmStruct(kernel);
 * const fd = iommufd_fops_open(iommufd_init(kernel), mm);
 * const alloc: iommu_ioas_alloc = { size: sizeof(iommu_ioas_alloc), flags: 0, out_ioas_id: 0 };
 * fd.ioctl(IOMMU_IOAS_ALLOC, alloc);
 * const buf = vm_mmap(mm, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
 * const map: iommu_ioas_map = {
 *   size: sizeof(iommu_ioas_map), flags: IOMMU_IOAS_MAP_READABLE, ioas_id: alloc.out_ioas_id,
 *   __reserved: 0, user_va: BigInt(buf), length: 4096n, iova: 0n,
 * };
 * fd.ioctl(IOMMU_IOAS_MAP, map);
 * assert.equal(map.iova % 4096n, 0n);
 * const unmap: iommu_ioas_unmap = {
 *   size: sizeof(iommu_ioas_unmap), ioas_id: alloc.out_ioas_id, iova: map.iova, length: 4096n,
 * };
 * fd.ioctl(IOMMU_IOAS_UNMAP, unmap);
 * assert.equal(unmap.length, 4096n);
 * fd.close();
 * assert.equal(kernel.slab.allocatedObjects, 0);
 * ```
 */
export class IommuFd {
  /** The object table (xarray with XA_FLAGS_ALLOC1): null marks an ID reserved, not finalized. */
  readonly objects: Map<number, IommufdObject | null> = new Map();
  /** iommufd's per-group state by iommu group (`ictx->groups`). */
  readonly groups: Map<number, unknown> = new Map();
  /** `ictx->account_mode`. */
  account_mode: number = IOPT_PAGES_ACCOUNT_USER;
  readonly #ids = new Ida();
  #released = false;

  /** Use {@linkcode iommufd_fops_open}. */
  constructor(readonly iommufd: Iommufd, readonly mm: MmStruct) {}

  /** The kernel the file belongs to. */
  get kernel(): Kernel {
    return this.iommufd.kernel;
  }

  /** Allocates an object ID (xa_alloc). */
  _idAlloc(): number {
    return ida_alloc_range(this.#ids, 1, IOMMUFD_ID_MAX);
  }

  /** Frees an object ID. */
  _idFree(id: number): void {
    ida_free(this.#ids, id);
  }

  /**
   * Mirrors iommufd_fops_ioctl(): runs command `cmd` on `arg`, the caller's structure, whose
   * output fields are written back in place. `arg` null is a bad pointer (EFAULT).
   *
   * Errors: ENOTTY for a number that is not an iommufd command; EFAULT for no structure; EINVAL
   * when `size` is below the command's first version; E2BIG when bytes past the structure the
   * kernel knows are non-zero; then whatever the command returns. EBADF after close().
   */
  ioctl<T extends UapiHeader>(cmd: number, arg: T | null): void {
    if (this.#released) throw new Errno("EBADF", "The iommufd is closed");
    const nr = _IOC_NR(cmd);
    const op = this.iommufd.ioctl_ops.get(nr);
    // Numbers outside the table go to iommufd_vfio_ioctl(), which knows none here: ENOTTY.
    if (cmd >>> 8 !== IOMMUFD_TYPE || op === undefined) {
      throw new Errno("ENOTTY", `Unknown iommufd ioctl 0x${cmd.toString(16)}`);
    }
    if (arg === null || !Number.isInteger(arg.size) || arg.size < 0) {
      throw new Errno("EFAULT", "Bad ioctl argument");
    }
    if (op.ioctl_num !== cmd) throw new Errno("ENOTTY", `Unknown ioctl 0x${cmd.toString(16)}`);
    if (arg.size < op.min_size) {
      throw new Errno("EINVAL", `${op.struct.name}: size ${arg.size} < ${op.min_size}`);
    }
    const kcmd = copy_struct_from_user(op.struct, arg, arg.size);
    op.execute({ ictx: this, ubuffer: arg, user_size: arg.size, cmd: kcmd, op });
  }

  /**
   * Mirrors iommufd_fops_release(): destroys every object, leaves first (an object holding
   * another goes before it), then frees the context.
   */
  close(): void {
    if (this.#released) throw new Errno("EBADF", "The iommufd is already closed");
    while (this.objects.size !== 0) {
      let destroyed = 0;
      for (const [id, obj] of [...this.objects]) {
        if (obj === null || obj.users !== 1) continue;
        obj.users = 0;
        this.objects.delete(id);
        this._idFree(id);
        obj.destroy();
        kfree(this.kernel, obj);
        destroyed++;
      }
      // A refcount bug: Linux WARNs and leaks the rest.
      if (destroyed === 0) {
        pr_warn(this.kernel, `iommufd: ${this.objects.size} objects still in use at release`);
        break;
      }
    }
    this.#released = true;
    kfree(this.kernel, this);
  }
}

/**
 * Mirrors iommufd_ucmd_respond(): copies the first `cmd_len` bytes (all of it by default) of
 * the kernel's structure back to the caller, no more than the caller's size.
 */
export function iommufd_ucmd_respond(
  ucmd: IommufdUcmd,
  cmd_len: number = ucmd.op.struct.size,
): void {
  _uapi_write_back(
    ucmd.op.struct,
    ucmd.cmd,
    ucmd.ubuffer as unknown as Record<string, unknown>,
    Math.min(cmd_len, ucmd.user_size),
  );
}

/**
 * Mirrors iommufd_object_alloc(): accounts `obj` (ENOMEM) and reserves its ID; the object is
 * invisible to lookups until {@linkcode iommufd_object_finalize}.
 */
export function iommufd_object_alloc<T extends IommufdObject>(ictx: IommuFd, obj: T): T {
  kmalloc(ictx.kernel, obj);
  try {
    obj.id = ictx._idAlloc();
  } catch (e) {
    kfree(ictx.kernel, obj);
    throw e;
  }
  ictx.objects.set(obj.id, null);
  return obj;
}

/** Mirrors iommufd_object_finalize(): publishes the object under its ID. */
export function iommufd_object_finalize(ictx: IommuFd, obj: IommufdObject): void {
  ictx.objects.set(obj.id, obj);
}

/** Mirrors iommufd_object_abort(): undoes iommufd_object_alloc() of an object never finalized. */
export function iommufd_object_abort(ictx: IommuFd, obj: IommufdObject): void {
  ictx.objects.delete(obj.id);
  ictx._idFree(obj.id);
  kfree(ictx.kernel, obj);
}

/** Mirrors iommufd_object_abort_and_destroy(): tears down an initialised, unfinalized object. */
export function iommufd_object_abort_and_destroy(ictx: IommuFd, obj: IommufdObject): void {
  obj.abort();
  iommufd_object_abort(ictx, obj);
}

/**
 * Mirrors iommufd_get_object(): the object `id` of `type` (IOMMUFD_OBJ_ANY for any), with a
 * reference the caller drops with {@linkcode iommufd_put_object}. ENOENT when there is none,
 * it has another type, or it is being destroyed.
 */
export function iommufd_get_object(ictx: IommuFd, id: number, type: number): IommufdObject {
  const obj = ictx.objects.get(id);
  if (
    obj === undefined || obj === null || (type !== IOMMUFD_OBJ_ANY && obj.type !== type) ||
    !iommufd_lock_obj(obj)
  ) {
    throw new Errno("ENOENT", `No iommufd object ${id} of type ${type}`);
  }
  return obj;
}

/** Mirrors iommufd_lock_obj(): takes a reference unless the object is dying. */
export function iommufd_lock_obj(obj: IommufdObject): boolean {
  if (obj.users === 0) return false;
  obj.users++;
  obj.shortterm_users++;
  return true;
}

/** Mirrors iommufd_put_object(): drops a reference from {@linkcode iommufd_get_object}. */
export function iommufd_put_object(_ictx: IommuFd, obj: IommufdObject): void {
  obj.shortterm_users--;
  obj.users--;
}

/**
 * Mirrors iommufd_object_remove(): destroys object `id` if the table holds the only reference.
 * With `to_destroy`, the caller's own reference on it is dropped first. ENOENT when there is no
 * such object, EBUSY while something else uses it.
 */
export function iommufd_object_remove(
  ictx: IommuFd,
  to_destroy: IommufdObject | null,
  id: number,
): void {
  const obj = ictx.objects.get(id);
  if (to_destroy !== null) {
    if (obj !== to_destroy) throw new Errno("ENOENT", `Object ${id} is not the one to destroy`);
    to_destroy.users--;
  } else if (obj === undefined || obj === null) {
    throw new Errno("ENOENT", `No iommufd object ${id}`);
  }
  if (obj.users !== 1) {
    if (to_destroy !== null) to_destroy.users++;
    throw new Errno("EBUSY", `iommufd object ${id} is in use`);
  }
  obj.users = 0;
  ictx.objects.delete(id);
  ictx._idFree(id);
  obj.destroy();
  kfree(ictx.kernel, obj);
}

/**
 * Mirrors iommufd_object_destroy_user(): a driver destroys an object it created (dropping the
 * reference it held). EBUSY when something still uses it (Linux WARNs).
 */
export function iommufd_object_destroy_user(ictx: IommuFd, obj: IommufdObject): void {
  iommufd_object_remove(ictx, obj, obj.id);
}

/**
 * Mirrors iommufd_object_put_and_try_destroy(): drops the caller's reference and destroys the
 * object if that was the last one besides the table's.
 */
export function iommufd_object_put_and_try_destroy(ictx: IommuFd, obj: IommufdObject): void {
  obj.users--;
  if (obj.users === 1 && ictx.objects.get(obj.id) === obj) {
    iommufd_object_remove(ictx, null, obj.id);
  }
}

/** An entry of the ioctl table (the IOCTL_OP() macro). */
export function IOCTL_OP(
  ioctl_num: number,
  execute: (ucmd: IommufdUcmd) => void,
  struct: UapiStruct,
  last: string,
): IommufdIoctlOp {
  return { ioctl_num, execute, struct, min_size: offsetofend(struct, last) };
}
