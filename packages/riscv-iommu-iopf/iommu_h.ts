/**
 * What the page-request series adds to drivers/iommu/riscv/iommu.h: per IOMMU, the page-request
 * queue and the IOPF queue its records are reported to (the `priq` and the IOPF queue of
 * struct riscv_iommu_device); per device, the endpoint state of ATS, PRI and PASID and its
 * process directory (struct riscv_iommu_endpoint of Tomasz Jeznach's riscv_iommu.next tree).
 *
 * Upstream state tracked: the posted "[PATCH v1] iommu/riscv: Add page request queue and IOPF
 * support" (June 2026) for the queue; the endpoint follows riscv_iommu.next.
 *
 * @module
 */
import { RatelimitState } from "@iommu-lab/kernel";
import type { IopfQueue } from "@iommu-lab/iommu";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { RiscvIommuCommand } from "@iommu-lab/riscv-iommu/bits";
import type { RiscvIommuQueue } from "@iommu-lab/riscv-iommu";

/** The feature's name: its key in `feature_data` and in the driver's messages. */
export const RISCV_IOMMU_IOPF = "iopf";

/**
 * The series' part of struct riscv_iommu_device (`iommu.feature_data.get("iopf")`): the
 * page-request queue (qid 3) and the IOPF queue its page requests go to.
 *
 * DIVERGENCE: a feature's data on the IOMMU instead of fields of struct riscv_iommu_device, as
 * every series plugs in through the base driver's hooks.
 */
export class RiscvIommuIopfDevice {
  /** Scratch command (ATS.PRGR, ATS.INVAL, IODIR.INVAL_PDT), as Linux builds them on the stack. */
  readonly cmd: RiscvIommuCommand = new RiscvIommuCommand();
  /** Rate limit of the page-request warnings of this IOMMU. */
  readonly rs: RatelimitState = new RatelimitState("riscv_iommu_handle_pq");

  /** The data of an IOMMU with page-request queue `priq` reporting to `pq_work`. */
  constructor(readonly priq: RiscvIommuQueue, readonly pq_work: IopfQueue) {}
}

/**
 * Per-device state of the series (`info.feature_data.get("iopf")`), as struct
 * riscv_iommu_endpoint: what was enabled on the PCI function, the IOPF queue membership, and the
 * process directory once a PASID is attached.
 */
export class RiscvIommuEndpoint {
  /** ATS is enabled on the function and DC.tc.EN_ATS set. */
  ats_enabled = false;
  /** PRI is enabled on the function and DC.tc.EN_PRI set. */
  pri_enabled = false;
  /** PRG responses must carry the request's PASID (DC.tc.PRPR set). */
  pri_pasid_required = false;
  /** PASID is enabled on the function. */
  pasid_enabled = false;
  /** Fault-capable domains attached: while above 0 the device is on the IOPF queue. */
  iopf_refcount = 0;
  /** Physical address of the process directory root (-1 without one). */
  pdt_root: number = -1;
  /** pdtp.MODE of the directory (PD8, PD17, PD20). */
  pdt_mode = 0;
  /** Every page of the directory, the root first. */
  readonly pdt_pages: number[] = [];
  /** The domains attached to PASIDs of the device. */
  readonly pasids: Map<number, RiscvIommuDomain> = new Map();
}
