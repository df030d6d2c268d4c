/**
 * The kernel the drivers live in: device model, buses, irq layer, page allocator, DMA API,
 * dmesg and errno.
 *
 * @module
 */
export { ERRNO, Errno, type ErrnoName, isErrno } from "./errno.ts";
export type { PhysMem } from "./phys.ts";
