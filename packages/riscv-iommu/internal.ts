/**
 * What series packages of the RISC-V IOMMU driver may use beyond the public API
 * (`@iommu-lab/riscv-iommu/internal`): the `iommu.h` contract and the core's queue, command,
 * directory and invalidation helpers, as a series patch would reach them inside iommu.c.
 * Machines and users should not need it.
 *
 * @module
 */
export type { RiscvIommuFeature, RiscvIommuFeatureQueue } from "./feature.ts";
export {
  riscv_iommu_alloc_paging_domain,
  riscv_iommu_bond_link,
  riscv_iommu_bond_unlink,
  riscv_iommu_cmd_send,
  riscv_iommu_cmd_sync,
  RISCV_IOMMU_DDTP_TIMEOUT,
  RISCV_IOMMU_DEF_CQ_COUNT,
  RISCV_IOMMU_DEF_FQ_COUNT,
  riscv_iommu_domain_alloc_pscid,
  riscv_iommu_free_paging_domain,
  riscv_iommu_get_dc,
  riscv_iommu_get_device,
  riscv_iommu_iodir_alloc,
  riscv_iommu_iodir_set_mode,
  riscv_iommu_iodir_update,
  RISCV_IOMMU_IOTINVAL_TIMEOUT,
  riscv_iommu_iotlb_inval,
  riscv_iommu_irq,
  RISCV_IOMMU_MAX_GSCID,
  RISCV_IOMMU_MAX_PSCID,
  RISCV_IOMMU_QCSR_TIMEOUT,
  riscv_iommu_queue_alloc,
  riscv_iommu_queue_consume,
  riscv_iommu_queue_disable,
  riscv_iommu_queue_enable,
  riscv_iommu_queue_release,
  RISCV_IOMMU_QUEUE_TIMEOUT,
  riscv_iommu_queue_vec,
  riscv_iommu_read_dc,
  type RiscvIommuBond,
  RiscvIommuDc,
  type RiscvIommuGatherRange,
  type RiscvIommuInfo,
} from "./iommu.ts";
export {
  dev_to_iommu,
  riscv_iommu_poll,
  riscv_iommu_readl_timeout,
  riscv_iommu_readq_timeout,
  RiscvIommuHandle,
} from "./iommu_h.ts";
