// What the page-request series' machine tests share: a machine with the series and PRI engines,
// an SVA bind that records the groups its fault handler gets, and two watchers on the silicon's
// edges — the page requests and PRG responses crossing the root complex, and the commands the
// driver put on the command queue.
import {
  type PageGroupResponse,
  type PageRequest,
  PRQ_ANSWERED_FAILURE,
  PRQ_ANSWERED_INVALID,
  PRQ_ANSWERED_SUCCESS,
  PRQ_DISCARDED,
  PRQ_QUEUED,
} from "@iommu-lab/hw";
import {
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_UPRGI,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQT,
  RISCV_IOMMU_REG_PQCSR,
} from "@iommu-lab/hw/regs";
import {
  follow_pte,
  type MmStruct,
  pci_read_config_word,
  type PciDev,
  pte_pfn,
} from "@iommu-lab/kernel";
import { iommu_sva_bind_device, iommu_sva_get_pasid, type IommuSva } from "@iommu-lab/iommu";
import { decodeCommand } from "@iommu-lab/riscv-iommu/testing";
import { iopfPart, type RiscvIommuIopfOptions } from "@iommu-lab/riscv-iommu-iopf";
import { Machine, type MachineOptions } from "@iommu-lab/machine";

/** Bytes of a page. */
export const PAGE = 4096;

/**
 * Boots a machine with the series (`iopf` its options) and DMA engines with ATS, PRI and PASID;
 * returns it with channel 0 and the first engine's function.
 */
export function boot(opts: MachineOptions = {}, iopf: RiscvIommuIopfOptions = {}) {
  const m = Machine.boot({
    parts: [iopfPart(iopf)],
    dmaAts: true,
    dmaPri: true,
    dmaPasid: true,
    ...opts,
  });
  return { m, chan: m.dmaChannel(0), pdev: m.dmaDevices[0] };
}

/**
 * Binds `mm` to the engine and records, group by group, the page addresses the SVA domain's
 * fault handler receives (then lets the handler run as it would).
 */
export function bind(
  pdev: PciDev,
  mm: MmStruct,
): { h: IommuSva; pasid: number; groups: number[][] } {
  const h = iommu_sva_bind_device(pdev, mm);
  const domain = h.domain!;
  const handler = domain.iopf_handler!;
  const groups: number[][] = [];
  domain.iopf_handler = (group) => {
    groups.push(group.faults.map((f) => f.fault.prm.addr));
    handler(group);
  };
  return { h, pasid: iommu_sva_get_pasid(h), groups };
}

/** The physical address the process's page table maps `va` to. */
export function phys(mm: MmStruct, va: number): number {
  return pte_pfn(follow_pte(mm, va)) * PAGE + va % PAGE;
}

/** The function's PRI status bits that say a response went wrong: UPRGI and RF. */
export function priErrors(pdev: PciDev): number {
  return pci_read_config_word(pdev, pdev.priCap + PCI_PRI_STATUS) &
    (PCI_PRI_STATUS_UPRGI | PCI_PRI_STATUS_RF);
}

/** What crossed the root complex between the endpoints and the IOMMU (see {@linkcode watchPri}). */
export interface PriWatch {
  /** Page Request messages by the IOMMU's `PRQ_*` outcome (Stop Markers apart). */
  readonly outcomes: Record<
    "queued" | "discarded" | "success" | "invalid" | "failure",
    number
  >;
  /** Stop Markers sent, by outcome. */
  readonly stopMarkers: Record<"queued" | "discarded", number>;
  /** Groups sent (counted at their last request). */
  groups: number;
  /** PRG responses that reached an endpoint waiting for that group. */
  answered: number;
  /** PRG responses for a group the endpoint was not waiting for (a second answer, a stray). */
  unexpected: number;
  /** Every PRG response in order: requester, group index, code, PASID when it carried one. */
  readonly responses: { rid: number; prgi: number; code: number; pasid?: number }[];
  /** `pqcsr` as each automatic Success found it. */
  readonly pqcsrAtSuccess: number[];
  /** Groups sent and not answered yet, as `"rid:prgi"`. */
  readonly outstanding: Set<string>;
}

const _OUTCOME: Record<number, keyof PriWatch["outcomes"]> = {
  [PRQ_QUEUED]: "queued",
  [PRQ_DISCARDED]: "discarded",
  [PRQ_ANSWERED_SUCCESS]: "success",
  [PRQ_ANSWERED_INVALID]: "invalid",
  [PRQ_ANSWERED_FAILURE]: "failure",
};

/**
 * Watches the machine's page-request traffic where it crosses the root complex: every Page
 * Request and Stop Marker the endpoints send to the IOMMU (with the IOMMU's outcome) and every
 * PRG response the IOMMU sends back — its own automatic ones and the driver's ATS.PRGR — so a
 * test counts what each endpoint was answered, group by group.
 */
export function watchPri(m: Machine): PriWatch {
  const iommu = m.silicon.iommu!;
  const rc = m.silicon.rc;
  const w: PriWatch = {
    outcomes: { queued: 0, discarded: 0, success: 0, invalid: 0, failure: 0 },
    stopMarkers: { queued: 0, discarded: 0 },
    groups: 0,
    answered: 0,
    unexpected: 0,
    responses: [],
    pqcsrAtSuccess: [],
    outstanding: new Set(),
  };
  const port = rc.pageRequestPort!;
  rc.pageRequestPort = {
    pageRequest(pr: PageRequest): number {
      const stop = pr.pidValid && pr.last && !pr.read && !pr.write;
      if (pr.last && !stop) {
        w.groups++;
        w.outstanding.add(`${pr.deviceId}:${pr.prgIndex}`);
      }
      const r = port.pageRequest(pr);
      if (stop) w.stopMarkers[r === PRQ_QUEUED ? "queued" : "discarded"]++;
      else w.outcomes[_OUTCOME[r]]++;
      if (r === PRQ_ANSWERED_SUCCESS) w.pqcsrAtSuccess.push(iommu.read32(RISCV_IOMMU_REG_PQCSR));
      return r;
    },
  };
  const ats = iommu.atsPort!;
  iommu.atsPort = {
    invalidate: (inv, done) => ats.invalidate(inv, done),
    pageResponse(rsp: PageGroupResponse): void {
      const key = `${rsp.rid}:${rsp.prgIndex}`;
      if (w.outstanding.delete(key)) w.answered++;
      else w.unexpected++;
      w.responses.push({
        rid: rsp.rid,
        prgi: rsp.prgIndex,
        code: rsp.responseCode,
        ...(rsp.pv ? { pasid: rsp.pid } : {}),
      });
      ats.pageResponse(rsp);
    },
  };
  return w;
}

/**
 * The commands the driver put on the command queue while `fn` ran, in order, decoded as the
 * driver's fake IOMMU names them (`"IOTINVAL.VMA pscid=1 addr=0x1000"`, `"IOFENCE.C pr pw"`).
 */
export function issued(m: Machine, fn: () => void): string[] {
  const iommu = m.silicon.iommu!;
  const mem = m.silicon.mem;
  const cqb = iommu.read64(RISCV_IOMMU_REG_CQB);
  const ring = Number(cqb >> 10n & (2n ** 44n - 1n)) * PAGE;
  const entries = 2 ** (Number(cqb & 0x1fn) + 1);
  const from = iommu.read32(RISCV_IOMMU_REG_CQT);
  fn();
  const to = iommu.read32(RISCV_IOMMU_REG_CQT);
  const out: string[] = [];
  for (let i = from; i !== to; i = (i + 1) % entries) {
    out.push(decodeCommand(mem.read64(ring + i * 16), mem.read64(ring + i * 16 + 8)));
  }
  return out;
}
