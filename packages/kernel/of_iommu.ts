/**
 * IOMMU firmware specs and the OF side of DMA configuration: `iommus` (platform) and
 * `iommu-map` (PCI requester IDs) become `dev.fwspec`, then the IOMMU core probes the device.
 * A device whose IOMMU has no driver yet defers (`EPROBE_DEFER`) until it has one, or until
 * {@linkcode Kernel.lateInitcall} when it goes on without an IOMMU.
 *
 * @module
 */
import { type Device, type FwNode, IOMMU_FWSPEC_PCI_RC_ATS, type IommuFwspec } from "./device.ts";
import { Errno, isErrno } from "./errno.ts";
import type { DtNode } from "./fdt.ts";
import {
  of_count_phandle_with_args,
  of_device_is_available,
  of_map_id,
  of_parse_phandle_with_args,
  of_property_read_bool,
} from "./of.ts";
import { dev_dbg } from "./printk.ts";
import { hex } from "./vsprintf.ts";

/** Mirrors dev_iommu_fwspec_get(). */
export function dev_iommu_fwspec_get(dev: Device): IommuFwspec | null {
  return dev.fwspec;
}

/**
 * Mirrors iommu_fwspec_init(): starts `dev`'s fwspec for the IOMMU at `fwnode` (no-op when it
 * already names that IOMMU; EINVAL when it names another).
 */
export function iommu_fwspec_init(dev: Device, fwnode: FwNode): void {
  if (dev.fwspec !== null) {
    if (dev.fwspec.fwnode === fwnode) return;
    throw new Errno("EINVAL", `${dev.name} is already behind ${dev.fwspec.fwnode.name}`);
  }
  dev.fwspec = { fwnode, ids: [], flags: 0 };
}

/** Mirrors iommu_fwspec_add_ids(): appends IDs (EINVAL without a fwspec). */
export function iommu_fwspec_add_ids(dev: Device, ids: readonly number[]): void {
  if (dev.fwspec === null) throw new Errno("EINVAL", `${dev.name} has no IOMMU fwspec`);
  dev.fwspec.ids.push(...ids);
}

/** Mirrors iommu_fwspec_free(). */
export function iommu_fwspec_free(dev: Device): void {
  dev.fwspec = null;
}

function _xlate(dev: Device, iommu: DtNode, args: readonly number[]): void {
  if (!of_device_is_available(iommu)) throw new Errno("ENODEV", `${iommu.fullName} is disabled`);
  const xlate = dev.kernel.iommuLayer?.ofXlate(iommu) ?? null;
  iommu_fwspec_init(dev, iommu);
  if (xlate === null) {
    // driver_deferred_probe_check_state(): wait for the IOMMU driver until boot is over.
    if (!dev.kernel.core.initDone) {
      throw new Errno("EPROBE_DEFER", `IOMMU ${iommu.fullName} has no driver yet`);
    }
    throw new Errno("ENODEV", `IOMMU ${iommu.fullName} has no driver`);
  }
  xlate(dev, args);
}

/**
 * Mirrors of_iommu_configure(): builds `dev.fwspec` from `np`'s `iommus`, or, given a PCI
 * requester `id`, from the host bridge `np`'s `iommu-map` (adding IOMMU_FWSPEC_PCI_RC_ATS when
 * the bridge has `ats-supported`), then calls the IOMMU core's probe. Throws only
 * `EPROBE_DEFER`; any other failure leaves the device without an IOMMU (direct DMA).
 */
export function of_iommu_configure(dev: Device, np: DtNode, id?: number): void {
  if (dev.iommu !== null) return;
  try {
    if (id !== undefined) {
      const m = of_map_id(np, id, "iommu-map", "iommu-map-mask");
      if (m === null) throw new Errno("ENODEV", `no iommu-map entry for ${hex(id)}`);
      _xlate(dev, m.np, [m.id]);
      if (of_property_read_bool(np, "ats-supported")) dev.fwspec!.flags |= IOMMU_FWSPEC_PCI_RC_ATS;
    } else {
      const n = of_count_phandle_with_args(np, "iommus", "#iommu-cells");
      if (n === 0) throw new Errno("ENODEV", "no iommus");
      for (let i = 0; i < n; i++) {
        const spec = of_parse_phandle_with_args(np, "iommus", "#iommu-cells", i)!;
        _xlate(dev, spec.np, spec.args);
      }
    }
    dev.kernel.iommuLayer!.probeDevice(dev);
  } catch (e) {
    iommu_fwspec_free(dev);
    if (!isErrno(e) || e.code === "EPROBE_DEFER") throw e;
    if (e.code !== "ENODEV") dev_dbg(dev, `Adding to IOMMU failed: ${e.message}`);
  }
}
