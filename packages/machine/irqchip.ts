/**
 * The kernel's drivers for the machine's interrupt controllers (Linux's
 * irq-riscv-aplic-direct.c and irq-riscv-imsic-*.c, reduced to what one hart needs): each binds
 * to its device-tree node, creates the irq domain devices find through `interrupt-parent` /
 * `msi-parent`, and hands interrupts the hart takes to `generic_handle_domain_irq()`.
 *
 * Upstream state tracked: the drivers as of Linux v6.13 (the AIA irqchip series, merged for
 * v6.10), reduced to one hart and direct APLIC delivery.
 *
 * DIVERGENCE: they live in the machine, not in the kernel package, because the hart side of the
 * controllers (the IMSIC's CSRs, the trap that reads `claimi`) is reached through the silicon
 * objects, not through MMIO.
 *
 * @module
 */
import type { Aplic, Imsic } from "@iommu-lab/hw";
import {
  APLIC_CLRIENUM,
  APLIC_DOMAINCFG,
  APLIC_DOMAINCFG_IE,
  APLIC_IDC_BASE,
  APLIC_IDC_IDELIVERY,
  APLIC_IDC_ITHRESHOLD,
  APLIC_SETIENUM,
  APLIC_SOURCECFG_BASE,
  APLIC_SOURCECFG_SM_EDGE_FALL,
  APLIC_SOURCECFG_SM_EDGE_RISE,
  APLIC_SOURCECFG_SM_LEVEL_HIGH,
  APLIC_SOURCECFG_SM_LEVEL_LOW,
  APLIC_TARGET_BASE,
} from "@iommu-lab/hw/regs";
import {
  dev_info,
  devm_platform_ioremap_resource,
  Errno,
  generic_handle_domain_irq,
  iommu_dma_prepare_msi,
  irq_domain_create_linear,
  irq_domain_create_msi,
  type IrqDomain,
  msi_msg_set_addr,
  of_property_read_u32,
  type PlatformDevice,
  type PlatformDriver,
  writel,
} from "@iommu-lab/kernel";
import { type Trace, TRACK_IRQ } from "./trace.ts";

/** Device-tree interrupt type cells (IRQ_TYPE_*) and the APLIC source mode each selects. */
const _SOURCE_MODE: Record<number, number> = {
  1: APLIC_SOURCECFG_SM_EDGE_RISE,
  2: APLIC_SOURCECFG_SM_EDGE_FALL,
  4: APLIC_SOURCECFG_SM_LEVEL_HIGH,
  8: APLIC_SOURCECFG_SM_LEVEL_LOW,
};

/** Runs the kernel's handling of one interrupt the hart took, as a span on the irq track. */
function _take(trace: Trace | null, name: string, domain: IrqDomain, hwirq: number): void {
  const t0 = domain.kernel.clock.now();
  generic_handle_domain_irq(domain, hwirq);
  if (trace?.enabled) trace.complete("irq", `handle ${name} ${hwirq}`, TRACK_IRQ, t0);
}

/**
 * The APLIC driver (direct delivery to the one hart): `riscv,aplic` nodes. A source's trigger
 * type is programmed when a device's interrupt is first translated (as irq_set_type does);
 * masking and unmasking enable and disable the source.
 */
export function aplic_driver(aplic: Aplic, trace: Trace | null): PlatformDriver {
  return {
    name: "riscv-aplic",
    ofMatchTable: [{ compatible: "riscv,aplic" }],
    probe(pdev: PlatformDevice): void {
      const np = pdev.ofNode!;
      const io = devm_platform_ioremap_resource(pdev, 0);
      const nr = of_property_read_u32(np, "riscv,num-sources") ?? 0;
      if (nr < 1 || nr > aplic.sources) {
        throw new Errno("EINVAL", `${pdev.name}: riscv,num-sources ${nr} is out of range`);
      }
      const domain = irq_domain_create_linear(pdev.kernel, np, nr + 1, {
        xlate(cells) {
          const [line, type] = cells;
          if (line < 1 || line > nr) throw new Errno("EINVAL", `APLIC source ${line} out of range`);
          writel(
            io,
            APLIC_SOURCECFG_BASE + 4 * (line - 1),
            _SOURCE_MODE[type ?? 4] ?? APLIC_SOURCECFG_SM_LEVEL_HIGH,
          );
          writel(io, APLIC_TARGET_BASE + 4 * (line - 1), 1);
          return line;
        },
        mask(hwirq, masked) {
          writel(io, masked ? APLIC_CLRIENUM : APLIC_SETIENUM, hwirq);
        },
      }, "aplic");
      writel(io, APLIC_IDC_BASE + APLIC_IDC_ITHRESHOLD, 0);
      writel(io, APLIC_IDC_BASE + APLIC_IDC_IDELIVERY, 1);
      writel(io, APLIC_DOMAINCFG, APLIC_DOMAINCFG_IE);
      aplic.onWired = (line) => _take(trace, "wire", domain, line);
      dev_info(pdev, `${nr} interrupts directly connected to 1 CPUs`);
    },
    remove(): void {
      aplic.onWired = undefined;
    },
  };
}

/**
 * The IMSIC driver (hart 0's supervisor interrupt file): `riscv,imsics` nodes. Identities are
 * the MSI data; the doorbell is the file's page; masking is the file's `eie` bits.
 *
 * With `behindIommu` (endpoint MSIs are translated, as on QEMU `virt`), each vector is prepared
 * with iommu_dma_prepare_msi() as imsic_irq_domain_alloc() does, so a device in a DMA domain
 * writes to the IOVA its domain maps the page at. Without it the bus sends MSIs around the
 * IOMMU and the message carries the physical page.
 */
export function imsic_driver(
  imsic: Imsic,
  trace: Trace | null,
  behindIommu: boolean,
): PlatformDriver {
  return {
    name: "riscv-imsic",
    ofMatchTable: [{ compatible: "riscv,imsics" }],
    probe(pdev: PlatformDevice): void {
      const np = pdev.ofNode!;
      const page = pdev.resources[0];
      if (page === undefined) throw new Errno("ENODEV", `${pdev.name}: no interrupt file page`);
      const ids = Math.min(of_property_read_u32(np, "riscv,num-ids") ?? 0, imsic.ids);
      if (ids < 63) throw new Errno("EINVAL", `${pdev.name}: riscv,num-ids ${ids} is too small`);
      const domain = irq_domain_create_msi(pdev.kernel, np, ids, {
        prepareMsi: behindIommu
          ? (_id, desc) => iommu_dma_prepare_msi(desc, page.start)
          : undefined,
        composeMsiMsg(id, desc) {
          const msg = { addressLo: 0, addressHi: 0, data: id };
          msi_msg_set_addr(desc, msg, page.start);
          return msg;
        },
        mask: (id, masked) => masked ? imsic.disable(id) : imsic.enable(id),
      }, "imsic");
      imsic.eidelivery = 1;
      imsic.onMsi = (id) => _take(trace, "msi", domain, id);
      dev_info(pdev, `${ids} interrupt identities, 1 hart`);
    },
    remove(): void {
      imsic.onMsi = undefined;
      imsic.eidelivery = 0;
    },
  };
}
