/**
 * The RISC-V IOMMU as a PCIe function (QEMU's 1b36:0014, Rivos' 1efd:0008). Glue only: BAR0 is
 * the register page, interrupts are MSI-X (or MSI) vectors, then the bus-agnostic core takes
 * over. Mirrors drivers/iommu/riscv/iommu-pci.c.
 *
 * Upstream state tracked: iommu-pci.c as merged for Linux v7.2 (unchanged in substance since the
 * v10 series: QEMU's and Rivos' IDs, MSI-X or MSI vectors, `fctl.WSI` cleared).
 *
 * @module
 */
import {
  dev_err_probe,
  dev_get_drvdata,
  dev_set_drvdata,
  devm_kzalloc,
  Errno,
  type IoMem,
  IORESOURCE_MEM,
  pci_alloc_irq_vectors,
  PCI_IRQ_MSI,
  PCI_IRQ_MSIX,
  pci_irq_vector,
  pci_resource_flags,
  pci_resource_len,
  pci_set_master,
  type PciDev,
  type PciDeviceId,
  type PciDriver,
  pcim_enable_device,
  pcim_iomap_region,
} from "@iommu-lab/kernel";
import {
  riscv_iommu_disable,
  riscv_iommu_init,
  riscv_iommu_readl,
  riscv_iommu_readq,
  riscv_iommu_remove,
  riscv_iommu_writel,
  RiscvIommuDevice,
  type RiscvIommuDriver,
} from "@iommu-lab/riscv-iommu";
import {
  FIELD_GET,
  RISCV_IOMMU_CAPABILITIES_IGS,
  RISCV_IOMMU_CAPABILITIES_IGS_BOTH,
  RISCV_IOMMU_CAPABILITIES_IGS_MSI,
  RISCV_IOMMU_FCTL_WSI,
  RISCV_IOMMU_INTR_COUNT,
  RISCV_IOMMU_REG_CAPABILITIES,
  RISCV_IOMMU_REG_FCTL,
  RISCV_IOMMU_REG_SIZE,
} from "@iommu-lab/riscv-iommu/bits";

/** The driver's name (KBUILD_MODNAME of iommu-pci.c), as dmesg prefixes its messages. */
export const RISCV_IOMMU_PCI_DRIVER_NAME = "iommu_pci";

/** Red Hat, Inc. (QEMU) PCI vendor ID. */
export const PCI_VENDOR_ID_REDHAT = 0x1b36;
/** QEMU's RISC-V IOMMU function. */
export const PCI_DEVICE_ID_REDHAT_RISCV_IOMMU = 0x0014;
/** Rivos Inc. PCI vendor ID. */
export const PCI_VENDOR_ID_RIVOS = 0x1efd;
/** Rivos' RISC-V IOMMU function. */
export const PCI_DEVICE_ID_RIVOS_RISCV_IOMMU_GA = 0x0008;

/** The functions the driver binds to. Mirrors riscv_iommu_pci_tbl[]. */
export const riscv_iommu_pci_tbl: readonly PciDeviceId[] = [
  { vendor: PCI_VENDOR_ID_REDHAT, device: PCI_DEVICE_ID_REDHAT_RISCV_IOMMU },
  { vendor: PCI_VENDOR_ID_RIVOS, device: PCI_DEVICE_ID_RIVOS_RISCV_IOMMU_GA },
];

/**
 * Mirrors riscv_iommu_pci_probe(): enables the function, checks that BAR0 is a memory BAR of at
 * least the 4 KiB register page (else ENODEV), maps it, reads `capabilities` and `fctl`, refuses
 * hardware that can only signal wired interrupts (ENODEV: a PCI function has no wires), gets one
 * to four MSI-X/MSI vectors, clears `fctl.WSI` and runs `riscv_iommu_init()` for `driver`.
 */
export function riscv_iommu_pci_probe(pdev: PciDev, driver: RiscvIommuDriver): void {
  pcim_enable_device(pdev);
  if (!(pci_resource_flags(pdev, 0) & IORESOURCE_MEM)) {
    throw new Errno("ENODEV", `${pdev.name}: BAR0 is not a memory BAR`);
  }
  if (pci_resource_len(pdev, 0) < RISCV_IOMMU_REG_SIZE) {
    throw new Errno("ENODEV", `${pdev.name}: BAR0 is smaller than the register page`);
  }
  let reg: IoMem;
  try {
    reg = pcim_iomap_region(pdev, 0);
  } catch (e) {
    throw dev_err_probe(pdev, e, "pcim_iomap_regions failed");
  }
  const iommu = devm_kzalloc(pdev, new RiscvIommuDevice(pdev, reg, driver));
  pci_set_master(pdev);
  dev_set_drvdata(pdev, iommu);

  iommu.caps = riscv_iommu_readq(iommu, RISCV_IOMMU_REG_CAPABILITIES);
  iommu.fctl = riscv_iommu_readl(iommu, RISCV_IOMMU_REG_FCTL);

  const igs = Number(FIELD_GET(RISCV_IOMMU_CAPABILITIES_IGS, iommu.caps));
  if (igs !== RISCV_IOMMU_CAPABILITIES_IGS_MSI && igs !== RISCV_IOMMU_CAPABILITIES_IGS_BOTH) {
    throw dev_err_probe(pdev, "ENODEV", "unable to use message-signaled interrupts");
  }

  let n: number;
  try {
    n = pci_alloc_irq_vectors(pdev, 1, RISCV_IOMMU_INTR_COUNT, PCI_IRQ_MSIX | PCI_IRQ_MSI);
  } catch (e) {
    if (!(e instanceof Errno)) throw e;
    throw dev_err_probe(pdev, "ENODEV", "unable to allocate irq vectors");
  }
  iommu.irqs_count = n;
  for (let vec = 0; vec < n; vec++) iommu.irqs[vec] = pci_irq_vector(pdev, vec);

  if (iommu.fctl & RISCV_IOMMU_FCTL_WSI) {
    iommu.fctl ^= RISCV_IOMMU_FCTL_WSI;
    riscv_iommu_writel(iommu, RISCV_IOMMU_REG_FCTL, iommu.fctl);
  }

  riscv_iommu_init(iommu);
}

/** Mirrors riscv_iommu_pci_remove(): `riscv_iommu_remove()`. */
export function riscv_iommu_pci_remove(pdev: PciDev): void {
  riscv_iommu_remove(dev_get_drvdata<RiscvIommuDevice>(pdev));
}

/** Mirrors riscv_iommu_pci_shutdown(): quiesces the hardware with `riscv_iommu_disable()`. */
export function riscv_iommu_pci_shutdown(pdev: PciDev): void {
  riscv_iommu_disable(dev_get_drvdata<RiscvIommuDevice>(pdev));
}

/**
 * Mirrors riscv_iommu_pci_driver: the PCI driver for the IDs of
 * {@linkcode riscv_iommu_pci_tbl}, binding every such IOMMU to the driver instance `driver`.
 */
export function riscv_iommu_pci_driver(driver: RiscvIommuDriver): PciDriver {
  return {
    name: RISCV_IOMMU_PCI_DRIVER_NAME,
    idTable: riscv_iommu_pci_tbl,
    probe: (pdev: PciDev) => riscv_iommu_pci_probe(pdev, driver),
    remove: riscv_iommu_pci_remove,
    shutdown: riscv_iommu_pci_shutdown,
  };
}
