/**
 * Linux errno values and the error class kernel-side APIs throw.
 *
 * @module
 */

/** Linux errno numbers (asm-generic/errno-base.h and errno.h), by name. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  ENODATA: 61,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ETIMEDOUT: 110,
  EALREADY: 114,
  EPROBE_DEFER: 517,
  ENOTTY: 25,
  EILSEQ: 84,
} as const;

/** An errno name such as `"EINVAL"`. */
export type ErrnoName = keyof typeof ERRNO;

const NAMES = new Map<number, ErrnoName>(
  Object.entries(ERRNO).map(([k, v]) => [v, k as ErrnoName]),
);

/**
 * An error carrying a Linux errno; what kernel-side APIs throw where C returns `-EINVAL`.
 *
 * @example Throwing and matching an errno
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno } from "@iommu-lab/kernel";
 *
 * const err = new Errno("EINVAL", "iova is not page aligned");
 * assert.equal(err.errno, 22);
 * assert.equal(err.code, "EINVAL");
 * assert.equal(err.message, "iova is not page aligned (-EINVAL)");
 * ```
 */
export class Errno extends Error {
  /** The errno name, e.g. `"ENOMEM"`. */
  readonly code: ErrnoName;
  /** The errno number, e.g. 12. */
  readonly errno: number;

  /** Creates an error for `code` with an explanatory message. */
  constructor(code: ErrnoName, message: string = code) {
    super(message === code ? `-${code}` : `${message} (-${code})`);
    this.name = "Errno";
    this.code = code;
    this.errno = ERRNO[code];
  }

  /** Creates an error from an errno number (positive or negative). */
  static fromNumber(n: number, message?: string): Errno {
    const name = NAMES.get(Math.abs(n));
    if (name === undefined) throw new RangeError(`Unknown errno ${n}`);
    return new Errno(name, message);
  }
}

/** True when `e` is an {@linkcode Errno} with the given code. */
export function isErrno(e: unknown, code?: ErrnoName): e is Errno {
  return e instanceof Errno && (code === undefined || e.code === code);
}
