/**
 * struct resource: a device's address range or interrupt, as buses describe them.
 *
 * @module
 */

/** IORESOURCE_IO: a PCI I/O port range. */
export const IORESOURCE_IO = 0x0000_0100;
/** IORESOURCE_MEM: an MMIO range. */
export const IORESOURCE_MEM = 0x0000_0200;
/** IORESOURCE_IRQ: an interrupt (start = end = virq). */
export const IORESOURCE_IRQ = 0x0000_0400;
/** IORESOURCE_PREFETCH: prefetchable memory. */
export const IORESOURCE_PREFETCH = 0x0000_2000;
/** IORESOURCE_MEM_64: a 64-bit memory BAR. */
export const IORESOURCE_MEM_64 = 0x0010_0000;

/** struct resource: `[start, end]` inclusive, as Linux keeps it. */
export interface Resource {
  /** First address (or the irq). */
  readonly start: number;
  /** Last address, inclusive. */
  readonly end: number;
  /** IORESOURCE_* flags; the type is `flags & (IO | MEM | IRQ)`. */
  readonly flags: number;
  /** Name (`reg-names` / `interrupt-names` entry), or "". */
  readonly name: string;
}

/** Mirrors resource_size(). */
export function resource_size(res: Resource): number {
  return res.end - res.start + 1;
}

/** Mirrors resource_type(). */
export function resource_type(res: Resource): number {
  return res.flags & (IORESOURCE_IO | IORESOURCE_MEM | IORESOURCE_IRQ);
}
