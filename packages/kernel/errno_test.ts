import assert from "node:assert/strict";
import { ERRNO, Errno, isErrno } from "./mod.ts";

Deno.test("errno: names carry the numbers of asm-generic/errno-base.h, errno.h and EPROBE_DEFER", () => {
  // The uapi values every architecture but alpha/mips/parisc/sparc uses, and linux/errno.h's 517.
  const linux: Record<string, number> = {
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
    ENOTTY: 25,
    ENOSPC: 28,
    ERANGE: 34,
    ENOSYS: 38,
    ENODATA: 61,
    EOVERFLOW: 75,
    EILSEQ: 84,
    EMSGSIZE: 90,
    EOPNOTSUPP: 95,
    EADDRINUSE: 98,
    ETIMEDOUT: 110,
    EALREADY: 114,
    EPROBE_DEFER: 517,
  };
  assert.deepEqual({ ...ERRNO }, linux);
});

Deno.test("Errno: code, number, message; fromNumber() takes either sign and refuses unknown numbers", () => {
  const e = new Errno("EADDRINUSE", "IOVA 0x1000 is already mapped");
  assert.ok(e instanceof Error);
  assert.deepEqual([e.name, e.code, e.errno], ["Errno", "EADDRINUSE", 98]);
  assert.equal(e.message, "IOVA 0x1000 is already mapped (-EADDRINUSE)");
  assert.equal(new Errno("ENOMEM").message, "-ENOMEM");
  assert.equal(Errno.fromNumber(-22).code, "EINVAL");
  assert.equal(Errno.fromNumber(517, "later").message, "later (-EPROBE_DEFER)");
  assert.throws(() => Errno.fromNumber(10), RangeError);
  assert.ok(isErrno(e) && isErrno(e, "EADDRINUSE") && !isErrno(e, "EBUSY"));
  assert.ok(!isErrno(new Error("EADDRINUSE")));
});
