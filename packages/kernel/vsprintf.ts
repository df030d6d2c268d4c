/**
 * The number formats the kernel's messages use (lib/vsprintf.c): hexadecimal as `%x`/`%#x`/
 * `%0Nx` print it, and the `%pR` resource form. One home for them, so that a log line reads the
 * same whichever package prints it.
 *
 * @module
 */
import { IORESOURCE_IO, IORESOURCE_MEM_64, IORESOURCE_PREFETCH } from "./resource.ts";

/**
 * `value` in lowercase hexadecimal, zero-padded to `width` digits, after `prefix`: `"0x"` (the
 * default) is `%#0*x`, `""` is `%0*x`. Exact for any `bigint` and for integers below 2^53;
 * a negative value prints as `-0x...`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hex } from "@iommu-lab/kernel";
 *
 * assert.equal(hex(0x3010000), "0x3010000");
 * assert.equal(hex(0x1b36, 4, ""), "1b36");
 * assert.equal(hex(2, 2, ""), "02");
 * assert.equal(hex(0xffff_ffff_ffff_f000n), "0xfffffffffffff000");
 * ```
 */
export function hex(value: number | bigint, width = 0, prefix = "0x"): string {
  const neg = value < 0;
  const digits = (neg ? -value : value).toString(16).padStart(width, "0");
  return `${neg ? "-" : ""}${prefix}${digits}`;
}

/**
 * `[start, end]` as `%pR` prints a resource: `[mem 0x40000000-0x40003fff 64bit pref]`,
 * `[io  0x0000-0x001f]`.
 */
export function resource_string(start: number, end: number, flags: number): string {
  const io = (flags & IORESOURCE_IO) !== 0;
  const w = io ? 4 : 8;
  const attrs = `${flags & IORESOURCE_MEM_64 ? " 64bit" : ""}${
    flags & IORESOURCE_PREFETCH ? " pref" : ""
  }`;
  return `[${io ? "io " : "mem"} ${hex(start, w)}-${hex(end, w)}${attrs}]`;
}

/** A bus-number range as `%pR` prints it: `[bus 00-ff]`. */
export function bus_range_string(range: readonly [number, number]): string {
  return `[bus ${hex(range[0], 2, "")}-${hex(range[1], 2, "")}]`;
}
