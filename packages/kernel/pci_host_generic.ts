/**
 * The generic ECAM host bridge: the `pci-host-ecam-generic` platform driver, its ECAM
 * configuration accessor and the parsing of the host node's `ranges`. Mirrors
 * drivers/pci/controller/pci-host-generic.c with pci-host-common.c, drivers/pci/ecam.c
 * (pci_ecam_create()) and of_pci_get_host_bridge_resources() of drivers/pci/of.c.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import type { DtNode } from "./fdt.ts";
import { type IoMem, ioremap, readl, writel } from "./io.ts";
import {
  of_n_addr_cells,
  of_property_read_u32,
  of_property_read_u32_array,
  of_read_number,
  of_translate_address,
} from "./of.ts";
import type { PciConfigAccessor, PciHostBridge, PciHostWindow } from "./pci.ts";
import { pci_host_probe, pci_remove_root_bus } from "./pci_probe.ts";
import type { PlatformDevice, PlatformDriver } from "./platform.ts";
import { dev_info } from "./printk.ts";
import {
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
  resource_size,
} from "./resource.ts";
import { bus_range_string, hex, resource_string } from "./vsprintf.ts";

/**
 * Mirrors pci_ecam_create(): an accessor over an ECAM window
 * (`(bus - busStart) << 20 | devfn << 12 | where`).
 */
export function pci_ecam_accessor(io: IoMem, busStart = 0): PciConfigAccessor {
  const off = (bus: number, devfn: number, where: number): number => {
    const o = ((bus - busStart) * 256 + devfn) * 4096 + where;
    return bus < busStart || o + 4 > io.size ? -1 : o;
  };
  return {
    read32: (bus, devfn, where) => {
      const o = off(bus, devfn, where);
      return o < 0 ? 0xffff_ffff : readl(io, o);
    },
    write32: (bus, devfn, where, value) => {
      const o = off(bus, devfn, where);
      if (o >= 0) writel(io, o, value);
    },
  };
}

/**
 * Mirrors of_pci_get_host_bridge_resources(): the windows in a PCI host node's `ranges`
 * (3-cell PCI addresses: space code in bits 25:24, prefetchable bit 30).
 */
export function of_pci_get_ranges(np: DtNode): PciHostWindow[] {
  const cells = of_property_read_u32_array(np, "ranges") ?? [];
  const pna = of_n_addr_cells(np);
  const ns = of_property_read_u32(np, "#size-cells") ?? 2;
  const step = 3 + pna + ns;
  const out: PciHostWindow[] = [];
  for (let i = 0; i + step <= cells.length; i += step) {
    const hi = cells[i];
    const space = (hi >>> 24) & 3;
    if (space === 0) continue;
    const flags = space === 1
      ? IORESOURCE_IO
      : IORESOURCE_MEM | (space === 3 ? IORESOURCE_MEM_64 : 0) |
        (hi & 0x4000_0000 ? IORESOURCE_PREFETCH : 0);
    out.push({
      pciAddr: of_read_number(cells.slice(i + 1, i + 3)),
      cpuAddr: of_translate_address(np, of_read_number(cells.slice(i + 3, i + 3 + pna))),
      size: of_read_number(cells.slice(i + 3 + pna, i + step)),
      flags,
    });
  }
  return out;
}

/**
 * pci-host-ecam-generic as a platform driver: reads `bus-range` and `ranges` (logging the
 * windows), maps the ECAM window (`reg` 0), and scans the bus. The machine registers it like any
 * other driver.
 */
export const pci_host_generic_driver: PlatformDriver = {
  name: "pci-host-generic",
  ofMatchTable: [{ compatible: "pci-host-ecam-generic" }],
  probe(pdev: PlatformDevice): void {
    const np = pdev.ofNode!;
    const ecam = pdev.resources[0];
    if (ecam === undefined) throw new Errno("ENODEV", `${pdev.name}: no ECAM window`);
    // As devm_of_pci_get_host_bridge_resources() logs what it parses.
    dev_info(pdev, `host bridge ${np.fullName} ranges:`);
    const cells = of_property_read_u32_array(np, "bus-range");
    const busRange: [number, number] = cells !== undefined && cells.length >= 2
      ? [cells[0], cells[1]]
      : [0, 0xff];
    if (cells === undefined || cells.length < 2) {
      dev_info(
        pdev,
        `  No bus range found for ${np.fullName}, using ${bus_range_string(busRange)}`,
      );
    }
    const windows = of_pci_get_ranges(np);
    for (const w of windows) {
      const type = (w.flags & IORESOURCE_IO ? "IO" : "MEM").padStart(6);
      dev_info(
        pdev,
        `  ${type} ${hex(w.cpuAddr, 10)}..${hex(w.cpuAddr + w.size - 1, 10)} -> ${
          hex(w.pciAddr, 10)
        }`,
      );
    }
    const io = ioremap(pdev.kernel, ecam.start, resource_size(ecam));
    // As pci_ecam_create() announces the window.
    dev_info(
      pdev,
      `ECAM at ${resource_string(ecam.start, ecam.end, ecam.flags)} for ${
        bus_range_string(busRange)
      }`,
    );
    pdev.driverData = pci_host_probe(pdev.kernel, {
      accessor: pci_ecam_accessor(io, busRange[0]),
      windows,
      ofNode: np,
      parent: pdev,
      busRange,
    });
  },
  remove(pdev: PlatformDevice): void {
    pci_remove_root_bus(pdev.driverData as PciHostBridge);
  },
};
