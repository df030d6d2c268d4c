/**
 * Address Translation Services, the Page Request Interface and PASID of a PCI function. Mirrors
 * drivers/pci/ats.c.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import {
  pci_read_config_dword,
  pci_read_config_word,
  pci_write_config_dword,
  pci_write_config_word,
  type PciDev,
} from "./pci.ts";
import * as R from "./pci_regs.ts";
import { hex } from "./vsprintf.ts";

/** Mirrors pci_ats_supported(). */
export function pci_ats_supported(pdev: PciDev): boolean {
  return pdev.atsCap !== 0;
}

/**
 * Mirrors pci_enable_ats(): enables ATS with smallest translation unit `2^ps` bytes.
 * EINVAL without ATS or with `ps` below 12; EBUSY when already enabled.
 */
export function pci_enable_ats(pdev: PciDev, ps: number): void {
  if (!pci_ats_supported(pdev)) throw new Errno("EINVAL", `${pdev.name}: no ATS capability`);
  if (pdev.atsEnabled) throw new Errno("EBUSY", `${pdev.name}: ATS already enabled`);
  if (!Number.isInteger(ps) || ps < R.PCI_ATS_MIN_STU || ps > R.PCI_ATS_MIN_STU + 31) {
    throw new Errno("EINVAL", `${pdev.name}: bad ATS page shift ${ps}`);
  }
  pdev.atsStu = ps;
  pci_write_config_word(
    pdev,
    pdev.atsCap + R.PCI_ATS_CTRL,
    R.PCI_ATS_CTRL_ENABLE | (ps - R.PCI_ATS_MIN_STU),
  );
  pdev.atsEnabled = true;
}

/** Mirrors pci_disable_ats() (EINVAL when not enabled, where C WARNs). */
export function pci_disable_ats(pdev: PciDev): void {
  if (!pdev.atsEnabled) throw new Errno("EINVAL", `${pdev.name}: ATS is not enabled`);
  const ctrl = pci_read_config_word(pdev, pdev.atsCap + R.PCI_ATS_CTRL);
  pci_write_config_word(pdev, pdev.atsCap + R.PCI_ATS_CTRL, ctrl & ~R.PCI_ATS_CTRL_ENABLE);
  pdev.atsEnabled = false;
}

/** Mirrors pci_ats_queue_depth(): invalidate queue depth (0 in the register means 32). */
export function pci_ats_queue_depth(pdev: PciDev): number {
  if (!pdev.atsCap) throw new Errno("EINVAL", `${pdev.name}: no ATS capability`);
  const q = pci_read_config_word(pdev, pdev.atsCap + R.PCI_ATS_CAP) & R.PCI_ATS_CAP_QDEP_MASK;
  return q === 0 ? 32 : q;
}

/** Mirrors pci_ats_page_aligned(). */
export function pci_ats_page_aligned(pdev: PciDev): boolean {
  return pdev.atsCap !== 0 &&
    (pci_read_config_word(pdev, pdev.atsCap + R.PCI_ATS_CAP) & R.PCI_ATS_CAP_PAGE_ALIGNED) !== 0;
}

/** Mirrors pci_pri_supported(). */
export function pci_pri_supported(pdev: PciDev): boolean {
  return pdev.priCap !== 0;
}

/**
 * Mirrors pci_enable_pri(): allocates min(`reqs`, capacity) outstanding page requests and
 * enables PRI. EINVAL without PRI; EBUSY when enabled already or not stopped.
 */
export function pci_enable_pri(pdev: PciDev, reqs: number): void {
  if (!pdev.priCap) throw new Errno("EINVAL", `${pdev.name}: no PRI capability`);
  if (pdev.priEnabled) throw new Errno("EBUSY", `${pdev.name}: PRI already enabled`);
  const status = pci_read_config_word(pdev, pdev.priCap + R.PCI_PRI_STATUS);
  if (!(status & R.PCI_PRI_STATUS_STOPPED)) {
    throw new Errno("EBUSY", `${pdev.name}: PRI is not stopped`);
  }
  const max = pci_read_config_dword(pdev, pdev.priCap + R.PCI_PRI_MAX_REQ);
  const n = Math.min(max, reqs);
  pdev.priReqsAlloc = n;
  pci_write_config_dword(pdev, pdev.priCap + R.PCI_PRI_ALLOC_REQ, n);
  pci_write_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL, R.PCI_PRI_CTRL_ENABLE);
  pdev.priEnabled = true;
}

/** Mirrors pci_disable_pri() (EINVAL when not enabled, where C WARNs). */
export function pci_disable_pri(pdev: PciDev): void {
  if (!pdev.priEnabled) throw new Errno("EINVAL", `${pdev.name}: PRI is not enabled`);
  const ctrl = pci_read_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL);
  pci_write_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL, ctrl & ~R.PCI_PRI_CTRL_ENABLE);
  pdev.priEnabled = false;
}

/** Mirrors pci_reset_pri(): resets the PRI state machine (EBUSY while enabled). */
export function pci_reset_pri(pdev: PciDev): void {
  if (!pdev.priCap) throw new Errno("EINVAL", `${pdev.name}: no PRI capability`);
  if (pdev.priEnabled) throw new Errno("EBUSY", `${pdev.name}: PRI is enabled`);
  pci_write_config_word(pdev, pdev.priCap + R.PCI_PRI_CTRL, R.PCI_PRI_CTRL_RESET);
}

/** Mirrors pci_prg_resp_pasid_required(): PRG responses must carry the request's PASID. */
export function pci_prg_resp_pasid_required(pdev: PciDev): boolean {
  return pdev.priCap !== 0 &&
    (pci_read_config_word(pdev, pdev.priCap + R.PCI_PRI_STATUS) & R.PCI_PRI_STATUS_PASID) !== 0;
}

/**
 * Mirrors pci_enable_pasid(): enables PASID with `features` (PCI_PASID_CAP_EXEC / _PRIV).
 * EINVAL without PASID or for unsupported features; EBUSY when already enabled.
 */
export function pci_enable_pasid(pdev: PciDev, features: number): void {
  if (pdev.pasidEnabled) throw new Errno("EBUSY", `${pdev.name}: PASID already enabled`);
  if (!pdev.pasidCap) throw new Errno("EINVAL", `${pdev.name}: no PASID capability`);
  const supported = pci_read_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CAP) &
    (R.PCI_PASID_CAP_EXEC | R.PCI_PASID_CAP_PRIV);
  if ((supported & features) !== features) {
    throw new Errno(
      "EINVAL",
      `${pdev.name}: PASID features ${hex(features)} unsupported`,
    );
  }
  pdev.pasidFeatures = features;
  pci_write_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CTRL, R.PCI_PASID_CTRL_ENABLE | features);
  pdev.pasidEnabled = true;
}

/** Mirrors pci_disable_pasid() (EINVAL when not enabled, where C WARNs). */
export function pci_disable_pasid(pdev: PciDev): void {
  if (!pdev.pasidEnabled) throw new Errno("EINVAL", `${pdev.name}: PASID is not enabled`);
  pci_write_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CTRL, 0);
  pdev.pasidEnabled = false;
}

/** Mirrors pci_pasid_features(): the supported feature bits (EINVAL without PASID). */
export function pci_pasid_features(pdev: PciDev): number {
  if (!pdev.pasidCap) throw new Errno("EINVAL", `${pdev.name}: no PASID capability`);
  return pci_read_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CAP) &
    (R.PCI_PASID_CAP_EXEC | R.PCI_PASID_CAP_PRIV);
}

/** Mirrors pci_max_pasids(): 2^width PASIDs (EINVAL without PASID). */
export function pci_max_pasids(pdev: PciDev): number {
  if (!pdev.pasidCap) throw new Errno("EINVAL", `${pdev.name}: no PASID capability`);
  return 2 ** ((pci_read_config_word(pdev, pdev.pasidCap + R.PCI_PASID_CAP) >> 8) & 0x1f);
}
