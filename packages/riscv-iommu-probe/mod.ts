/**
 * The bus glue of the RISC-V IOMMU driver (the "PCI and platform probe" part of the series):
 * a platform driver for device-tree nodes with `compatible = "riscv,iommu"` and a PCI driver
 * for the IOMMU functions 1b36:0014 and 1efd:0008. Each finds the registers and the interrupt
 * vectors, then hands the IOMMU to `riscv_iommu_init()` of `@iommu-lab/riscv-iommu`.
 *
 * Both drivers take the driver instance ({@linkcode RiscvIommuDriver}: ops, PSCID space, series
 * features) that the IOMMUs they bind will share; the machine makes one per kernel.
 *
 * @example Registering both drivers on a kernel
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   Kernel,
 *   pci_driver_init,
 *   pci_register_driver,
 *   platform_bus_init,
 *   platform_driver_register,
 * } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
 * import { riscv_iommu_pci_driver, riscv_iommu_platform_driver } from "@iommu-lab/riscv-iommu-probe";
 *
 * const kernel = new Kernel({
 *   mem: new TestRam(0x8000_0000, 1 << 24),
 *   initcalls: [platform_bus_init, pci_driver_init],
 * });
 * const driver = new RiscvIommuDriver({ features: [] });
 * platform_driver_register(kernel, riscv_iommu_platform_driver(driver));
 * pci_register_driver(kernel, riscv_iommu_pci_driver(driver));
 * assert.deepEqual(kernel.buses.get("platform")!.drivers.map((d) => d.name), ["riscv,iommu"]);
 * assert.deepEqual(kernel.buses.get("pci")!.drivers.map((d) => d.name), ["iommu_pci"]);
 * ```
 *
 * @module
 */
export type { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
export {
  PCI_DEVICE_ID_REDHAT_RISCV_IOMMU,
  PCI_DEVICE_ID_RIVOS_RISCV_IOMMU_GA,
  PCI_VENDOR_ID_REDHAT,
  PCI_VENDOR_ID_RIVOS,
  riscv_iommu_pci_driver,
  RISCV_IOMMU_PCI_DRIVER_NAME,
  riscv_iommu_pci_probe,
  riscv_iommu_pci_remove,
  riscv_iommu_pci_shutdown,
  riscv_iommu_pci_tbl,
} from "./pci.ts";
export {
  riscv_iommu_of_match,
  riscv_iommu_platform_driver,
  RISCV_IOMMU_PLATFORM_DRIVER_NAME,
  riscv_iommu_platform_probe,
  riscv_iommu_platform_remove,
  riscv_iommu_platform_shutdown,
  riscv_iommu_write_msi_msg,
} from "./platform.ts";
