/**
 * The dirty-tracking series' hunks of drivers/iommu/riscv/iommu.c: IOMMU_CAP_DIRTY_TRACKING when
 * the IOMMU has capabilities.AMO_HWAD, second-stage (iohgatp) domains allocated with
 * IOMMU_HWPT_ALLOC_DIRTY_TRACKING that carry `dirty_ops`, `set_dirty_tracking` turning DC.tc.GADE
 * on and off in the contexts of the attached devices, `read_and_clear_dirty` from generic-pt, and
 * the attach check refusing a tracking domain to a device whose IOMMU cannot track.
 *
 * Upstream state tracked: "[RFC PATCH 00/11] iommu/riscv: Add hardware dirty tracking for
 * second-stage domains" (Fangyu Yu, 28 Apr 2026), its iommu.c patches. Its generic_pt patches
 * (the riscv64 second-stage format and the dirty PTE ops) are in `@iommu-lab/generic-pt`; the
 * second-stage domains, GSCIDs, IOTINVAL.GVMA and domain_alloc_paging_flags it brings are in
 * `@iommu-lab/riscv-iommu` already, as the prerequisites this series shares with nesting.
 *
 * The hazard the RFC leaves open: iommufd enables tracking by first clearing stale dirty bits (a
 * `read_and_clear_dirty` without a bitmap) and only then calling `set_dirty_tracking(true)`. On
 * RISC-V, while GADE is off, D on a writable leaf is not a dirty bit but the preset that lets a
 * write through: the IOMMU may not set D, so a write to a leaf without D is a guest-page fault
 * (RISC-V IOMMU spec v1.0, §2.1.3 "Device-context fields", DC.tc.GADE). Clearing there would
 * fault the device's next write. So, here:
 *
 * - a read of a domain whose tracking is off leaves D alone (with a bitmap it is EINVAL, as
 *   intel_iommu_read_and_clear_dirty() has it: there is no dirty state to report);
 * - `set_dirty_tracking(true)` sets GADE first, then takes the presets away itself (a clearing
 *   walk of the whole domain and its IOTLB flush), which is the clean snapshot iommufd's early
 *   read was for;
 * - `set_dirty_tracking(false)` gives D back to every writable leaf, flushes the IOTLB, and only
 *   then clears GADE.
 *
 * @module
 */
import { type Device, Errno } from "@iommu-lab/kernel";
import {
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_dirty_bitmap_init,
  IOMMU_DIRTY_NO_CLEAR,
  iommu_flush_iotlb_all,
  iommu_iotlb_sync,
  IommuDirtyBitmap,
  type IommuDirtyOps,
  type IommuDomain,
  IommuIotlbGather,
  type IommuUserData,
} from "@iommu-lab/iommu";
import type { RiscvIommuDevice, RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import {
  RISCV_IOMMU_CAPABILITIES_AMO_HWAD,
  RISCV_IOMMU_DC_TC_GADE,
} from "@iommu-lab/riscv-iommu/bits";
import {
  dev_to_iommu,
  riscv_iommu_alloc_paging_domain,
  riscv_iommu_iodir_update,
  riscv_iommu_read_dc,
} from "@iommu-lab/riscv-iommu/internal";

/** Whether `iommu` updates A/D bits in hardware (capabilities.AMO_HWAD), so DC.tc.GADE is legal. */
export function _amo_hwad(iommu: RiscvIommuDevice): boolean {
  return (iommu.caps & RISCV_IOMMU_CAPABILITIES_AMO_HWAD) !== 0n;
}

/**
 * Mirrors riscv_iommu_capable() of the series: IOMMU_CAP_DIRTY_TRACKING when the device's IOMMU
 * has capabilities.AMO_HWAD; no other capability.
 */
export function riscv_iommu_capable(dev: Device, cap: number): boolean {
  return cap === IOMMU_CAP_DIRTY_TRACKING && _amo_hwad(dev_to_iommu(dev));
}

/**
 * The series' part of riscv_iommu_domain_alloc_paging_flags(): with IOMMU_HWPT_ALLOC_DIRTY_TRACKING
 * (alone or with IOMMU_HWPT_ALLOC_NEST_PARENT) a second-stage domain whose `dirty_ops` are
 * {@linkcode riscv_iommu_dirty_ops}, tracking off. The driver routes only those flags here, and
 * only for a device whose IOMMU runs the feature (has AMO_HWAD; elsewhere the base driver answers
 * EOPNOTSUPP). EOPNOTSUPP with user data; ENOMEM and EOPNOTSUPP (no Sv*x4 mode) from the base.
 */
export function riscv_iommu_domain_alloc_paging_flags(
  dev: Device,
  flags: number,
  user_data: IommuUserData | null,
): RiscvIommuDomain {
  if (user_data !== null) {
    throw new Errno("EOPNOTSUPP", `${dev.name}: no user data with flags 0x${flags.toString(16)}`);
  }
  const domain = riscv_iommu_alloc_paging_domain(dev, true);
  domain.dirty_ops = riscv_iommu_dirty_ops;
  return domain;
}

/**
 * The series' check in riscv_iommu_attach_paging_domain(), run as the feature's `attachDev` for
 * the domains it allocated: EINVAL when the device's IOMMU cannot track (no AMO_HWAD), as the
 * Intel and AMD drivers and iommufd's mock refuse such an attach (the selftest `enforce_dirty`).
 */
export function _attach_dirty_check(
  _domain: RiscvIommuDomain,
  dev: Device,
  iommu: RiscvIommuDevice,
): void {
  if (!_amo_hwad(iommu)) {
    throw new Errno("EINVAL", `${dev.name}: ${iommu.dev.name} cannot track dirty pages`);
  }
}

/**
 * Gives every device attached to `domain` the domain's GADE: its context as it is, with tc.GADE
 * from `domain.dc_tc`, through the whole-DC update. Only tc changes, so the update is one store
 * per context (V stays set: DMA in flight goes on), then IODIR.INVAL_DDT, IOTINVAL.VMA and
 * IOTINVAL.GVMA of the GSCID, and IOFENCE.C.
 */
function _iodir_update_gade(domain: RiscvIommuDomain): void {
  const gade = domain.dc_tc & RISCV_IOMMU_DC_TC_GADE;
  for (const bond of domain.bonds) {
    const dc = riscv_iommu_read_dc(bond.iommu, bond.dev);
    dc.tc = (dc.tc & ~RISCV_IOMMU_DC_TC_GADE) | gade;
    riscv_iommu_iodir_update(bond.iommu, bond.dev, dc);
  }
}

/**
 * Cleans D in every leaf of `domain` and flushes what was cleaned from the IOTLB (IOTINVAL.GVMA,
 * IOFENCE.C), as iommufd's iopt_clear_dirty_data() does before enabling: the IOMMU marks the next
 * write of each leaf again.
 */
function _clear_dirty(domain: RiscvIommuDomain): void {
  const gather = new IommuIotlbGather();
  const dirty = new IommuDirtyBitmap();
  iommu_dirty_bitmap_init(dirty, null, gather);
  const { aperture_start, aperture_end } = domain.geometry;
  domain.pt.read_and_clear_dirty(aperture_start, aperture_end - aperture_start + 1, 0, dirty);
  iommu_iotlb_sync(domain, gather);
}

/**
 * Mirrors riscv_iommu_set_dirty_tracking() of the series: turns hardware dirty tracking of a
 * second-stage domain on or off, on every device attached to it now (devices attached later get
 * GADE with the domain's `dc_tc`). A no-op when it already is.
 *
 * Enable: GADE into each context (in place, invalidated), then generic-pt's
 * PT_FEAT_RISCV_DIRTY_TRACKING_ACTIVE (new writable leaves without D), then D cleaned off every
 * leaf with the IOTLB flush. Disable: the feature off first, which gives D back to every
 * writable leaf, an IOTLB flush (the IOMMU may hold leaves without D), then GADE out of each
 * context. So a writable leaf without D never meets a context without GADE.
 *
 * DIVERGENCE: the RFC only flips GADE and the generic-pt feature, relying on iommufd's clearing
 * read before it; that read comes while GADE is still off, so here it leaves D alone
 * ({@linkcode riscv_iommu_read_and_clear_dirty}) and the clean happens here, after GADE is on.
 */
export function riscv_iommu_set_dirty_tracking(iommu_domain: IommuDomain, enabled: boolean): void {
  const domain = iommu_domain as RiscvIommuDomain;
  if (domain.pt.features.dirtyTrackingActive === enabled) return;
  if (enabled) {
    domain.dc_tc |= RISCV_IOMMU_DC_TC_GADE;
    _iodir_update_gade(domain);
    domain.pt.set_dirty_tracking_active(true);
    _clear_dirty(domain);
  } else {
    domain.pt.set_dirty_tracking_active(false);
    iommu_flush_iotlb_all(domain);
    domain.dc_tc &= ~RISCV_IOMMU_DC_TC_GADE;
    _iodir_update_gade(domain);
  }
}

/**
 * The domain's read_and_clear_dirty: generic-pt's (pt_iommu_riscv_64_read_and_clear_dirty(),
 * what the RFC plugs in with IOMMU_PT_DIRTY_OPS) — every leaf of `[iova, iova + size)` the IOMMU
 * wrote through reported into `dirty.bitmap` and, unless `flags` has IOMMU_DIRTY_NO_CLEAR, cleaned
 * with its range added to `dirty.gather`. The caller flushes that gather from the IOTLB
 * (iommufd's iommu_iotlb_sync() after the read), or the IOMMU would keep writing through cached
 * leaves whose D it no longer sets; with no gather, the domain's whole IOTLB is flushed here.
 *
 * DIVERGENCE: with tracking off, D is the preset of writable leaves, not the device's writes: a
 * read with a bitmap is EINVAL (as intel_iommu_read_and_clear_dirty()), one without (iommufd's
 * clearing read before enabling) leaves every leaf as it is, where clearing would fault the
 * device's next write. Errnos of generic-pt's read otherwise (EINVAL, ERANGE, EOVERFLOW).
 */
export function riscv_iommu_read_and_clear_dirty(
  iommu_domain: IommuDomain,
  iova: number,
  size: number,
  flags: number,
  dirty: IommuDirtyBitmap,
): void {
  const domain = iommu_domain as RiscvIommuDomain;
  if (!domain.pt.features.dirtyTrackingActive) {
    if (dirty.bitmap !== null) throw new Errno("EINVAL", "Dirty tracking is off");
    flags |= IOMMU_DIRTY_NO_CLEAR;
  }
  domain.pt.read_and_clear_dirty(iova, size, flags, dirty);
  if (dirty.gather === null && (flags & IOMMU_DIRTY_NO_CLEAR) === 0) iommu_flush_iotlb_all(domain);
}

/** The dirty ops of the domains the series allocates. Mirrors riscv_iommu_dirty_ops. */
export const riscv_iommu_dirty_ops: IommuDirtyOps = Object.freeze({
  set_dirty_tracking: riscv_iommu_set_dirty_tracking,
  read_and_clear_dirty: riscv_iommu_read_and_clear_dirty,
});
