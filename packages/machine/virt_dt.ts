/**
 * The memory map of the `virt` machine (QEMU's RISC-V `virt` board, with `iommu-sys=on` or a
 * `riscv-iommu-pci` device) and the device tree the machine generates for its kernel, written
 * with the kernel's own FDT writer so the kernel boots from a real blob.
 *
 * @module
 */
import {
  APLIC_S_BASE,
  APLIC_SIZE,
  IMSIC_MMIO_PAGE_SZ,
  IMSIC_S_BASE,
  PCIE_ECAM_BASE,
  PCIE_ECAM_SIZE,
  PCIE_MMIO_BASE,
  PCIE_MMIO_SIZE,
} from "@iommu-lab/hw/regs";
import { cells64, DeviceTree, type DtNode } from "@iommu-lab/kernel";

/** Base of DRAM. */
export const VIRT_DRAM_BASE = 0x8000_0000;
/** Base of the platform IOMMU's register page (`-M virt,iommu-sys=on`). */
export const VIRT_IOMMU_SYS_BASE = 0x0301_0000;
/** Size of the platform IOMMU's register page. */
export const VIRT_IOMMU_SYS_SIZE = 0x1000;
/** APLIC source of the platform IOMMU's wire 0 (wires 0..3 are sources 36..39). */
export const VIRT_IOMMU_SYS_IRQ = 36;
/** Wired interrupts of the platform IOMMU (one per `icvec` cause). */
export const VIRT_IOMMU_SYS_IRQS = 4;
/** Interrupt sources of the APLIC (more when the IOATCs of a T100 need them). */
export const VIRT_APLIC_SOURCES = 96;
/** APLIC source of a SpacemiT T100's IOATC 0 PMIV wire; IOATC `i` is source 40 + `i`. */
export const VIRT_IOMMU_IOATC_IRQ: number = VIRT_IOMMU_SYS_IRQ + VIRT_IOMMU_SYS_IRQS;

/** The APLIC's sources: QEMU virt's 96, or as many as `ioatcs` PMIV wires need. */
export function virt_aplic_sources(ioatcs: number): number {
  return Math.max(VIRT_APLIC_SOURCES, VIRT_IOMMU_IOATC_IRQ + ioatcs);
}
/** Identities of the IMSIC's supervisor file. */
export const VIRT_IMSIC_IDS = 255;
/** PCI slot of the IOMMU function when the IOMMU is on PCI (00:01.0, as QEMU places it). */
export const VIRT_IOMMU_PCI_SLOT = 1;
/** PCI slot of the first DMA test engine; engine `n` is at slot `VIRT_DMA_SLOT + n`. */
export const VIRT_DMA_SLOT = 2;

/** Device-tree interrupt type cell: level high (IRQ_TYPE_LEVEL_HIGH). */
const IRQ_TYPE_LEVEL_HIGH = 4;

/** What the generated tree describes. */
export interface VirtDtLayout {
  /** Bytes of DRAM at {@linkcode VIRT_DRAM_BASE}. */
  ramSize: number;
  /** Where the IOMMU is: a platform device, a PCI function, or absent. */
  iommu: "platform" | "pci" | "none";
  /** Wired interrupts listed in the platform IOMMU node (0..4). */
  iommuIrqs: number;
  /** Whether the platform IOMMU node has an `msi-parent`. */
  iommuMsiParent: boolean;
  /** Whether the PCIe host says `ats-supported` (the root complex forwards ATS requests). */
  atsSupported: boolean;
  /** The platform IOMMU is a SpacemiT T100 with this many IOATCs (absent: a plain one). */
  t100Ioatcs?: number;
  /** The PCI segment of the PCIe host (`linux,pci-domain`, device_id bits 23:16). Default 0. */
  pciDomain?: number;
}

/**
 * Builds the device tree of a `virt` machine: memory, one hart with its interrupt controller,
 * the IMSIC and the APLIC (both with phandles), the `riscv,iommu` platform node (reg,
 * interrupts and their names, msi-parent, #iommu-cells) when the IOMMU is a platform device (a
 * SpacemiT T100's as the v5 binding describes it, with `t100Ioatcs`),
 * and the ECAM PCIe host with its `ranges`, `msi-parent` and an `iommu-map` sending every
 * requester ID to the IOMMU (on PCI: every one but the IOMMU function's own, which gets a child
 * node for the map to point at).
 *
 * @example The platform IOMMU node
 * ```ts
 * import assert from "node:assert/strict";
 * import { of_property_read_string_array } from "@iommu-lab/kernel";
 * import { virt_device_tree } from "@iommu-lab/machine";
 *
 * const dt = virt_device_tree({
 *   ramSize: 2 ** 30,
 *   iommu: "platform",
 *   iommuIrqs: 4,
 *   iommuMsiParent: true,
 *   atsSupported: true,
 * });
 * const iommu = dt.findNode("/soc/iommu@3010000")!;
 * assert.deepEqual(of_property_read_string_array(iommu, "interrupt-names"), ["cmdq", "fltq", "priq", "pm"]);
 * ```
 */
export function virt_device_tree(layout: VirtDtLayout): DeviceTree {
  const dt = new DeviceTree();
  const root = dt.root.set("#address-cells", [2]).set("#size-cells", [2])
    .set("compatible", "riscv-virtio").set("model", "riscv-virtio,qemu");

  root.addChild(`memory@${VIRT_DRAM_BASE.toString(16)}`).set("device_type", "memory")
    .set("reg", [...cells64(VIRT_DRAM_BASE), ...cells64(layout.ramSize)]);

  const cpus = root.addChild("cpus").set("#address-cells", [1]).set("#size-cells", [0])
    .set("timebase-frequency", [10_000_000]);
  const cpu0 = cpus.addChild("cpu@0").set("device_type", "cpu").set("reg", [0])
    .set("compatible", "riscv").set("riscv,isa", "rv64imafdch").set("mmu-type", "riscv,sv57");
  const hartIntc = cpu0.addChild("interrupt-controller").set("#address-cells", [0])
    .set("#interrupt-cells", [1]).set("interrupt-controller", true)
    .set("compatible", "riscv,cpu-intc");
  const sExt = [dt.phandleOf(hartIntc), 9]; // supervisor external interrupt

  const soc = root.addChild("soc").set("#address-cells", [2]).set("#size-cells", [2])
    .set("compatible", "simple-bus").set("ranges", true);

  const imsic = soc.addChild(`interrupt-controller@${IMSIC_S_BASE.toString(16)}`)
    .set("compatible", ["qemu,imsics", "riscv,imsics"])
    .set("reg", _reg(IMSIC_S_BASE, IMSIC_MMIO_PAGE_SZ))
    .set("interrupts-extended", sExt).set("interrupt-controller", true)
    .set("#interrupt-cells", [0]).set("#address-cells", [0])
    .set("msi-controller", true).set("#msi-cells", [0])
    .set("riscv,num-ids", [VIRT_IMSIC_IDS]);
  const imsicPh = dt.phandleOf(imsic);

  const aplic = soc.addChild(`interrupt-controller@${APLIC_S_BASE.toString(16)}`)
    .set("compatible", ["qemu,aplic", "riscv,aplic"])
    .set("reg", _reg(APLIC_S_BASE, APLIC_SIZE))
    .set("interrupts-extended", sExt).set("interrupt-controller", true)
    .set("#interrupt-cells", [2]).set("#address-cells", [0])
    .set("riscv,num-sources", [virt_aplic_sources(layout.t100Ioatcs ?? 0)]);
  const aplicPh = dt.phandleOf(aplic);

  let iommuPh = 0;
  if (layout.iommu === "platform") {
    const t100 = layout.t100Ioatcs;
    const node = soc.addChild(`iommu@${VIRT_IOMMU_SYS_BASE.toString(16)}`)
      .set("#iommu-cells", [1]);
    const n = Math.max(0, Math.min(layout.iommuIrqs, VIRT_IOMMU_SYS_IRQS));
    const sources = Array.from({ length: n }, (_, i) => VIRT_IOMMU_SYS_IRQ + i);
    // The vectors in the order the binding gives them and the driver programs icvec (CIV 0,
    // FIV 1, PIV 2, PMIV 3): not the order of the ipsr bits (cip, fip, pmip, pip).
    let names = ["cmdq", "fltq", "priq", "pm"].slice(0, n);
    if (t100 === undefined) {
      node.set("compatible", "riscv,iommu").set(
        "reg",
        _reg(VIRT_IOMMU_SYS_BASE, VIRT_IOMMU_SYS_SIZE),
      );
    } else {
      // The v5 binding: the IOATS's four vectors in the driver's order (CIV, FIV, PIV, PMIV), then
      // each IOATC's PMIV wire; the window covers the IOATS page and one page per IOATC.
      node.set("compatible", ["spacemit,k3-t100", "spacemit,t100", "riscv,iommu"])
        .set("reg", _reg(VIRT_IOMMU_SYS_BASE, (t100 + 1) * VIRT_IOMMU_SYS_SIZE));
      names = ["civ", "fiv", "piv", "ioats-pmiv"].slice(0, n);
      for (let i = 0; i < t100; i++) {
        sources.push(VIRT_IOMMU_IOATC_IRQ + i);
        names.push(`ioatc${i}-pmiv`);
      }
    }
    if (sources.length > 0) {
      node.set("interrupt-parent", [aplicPh])
        .set("interrupts", sources.flatMap((src) => [src, IRQ_TYPE_LEVEL_HIGH]))
        .set("interrupt-names", names);
    }
    if (layout.iommuMsiParent) node.set("msi-parent", [imsicPh]);
    iommuPh = dt.phandleOf(node);
  }

  const buses = PCIE_ECAM_SIZE / 2 ** 20;
  const domain = layout.pciDomain ?? 0;
  // The IOMMU sees segment:bus:devfn; the requester IDs map onto that.
  const seg = domain << 16;
  const pci = soc.addChild(`pci@${PCIE_ECAM_BASE.toString(16)}`)
    .set("compatible", "pci-host-ecam-generic").set("device_type", "pci")
    .set("#address-cells", [3]).set("#size-cells", [2]).set("#interrupt-cells", [1])
    .set("reg", _reg(PCIE_ECAM_BASE, PCIE_ECAM_SIZE))
    .set("bus-range", [0, buses - 1]).set("linux,pci-domain", [domain])
    .set("dma-coherent", true).set("msi-parent", [imsicPh])
    // One 32-bit non-prefetchable memory window, identity-mapped.
    .set("ranges", [
      0x0200_0000,
      ...cells64(PCIE_MMIO_BASE),
      ...cells64(PCIE_MMIO_BASE),
      ...cells64(PCIE_MMIO_SIZE),
    ]);
  if (layout.atsSupported) pci.set("ats-supported", true);
  if (layout.iommu === "pci") {
    const devfn = VIRT_IOMMU_PCI_SLOT << 3;
    iommuPh = dt.phandleOf(_pciChild(pci, "iommu", VIRT_IOMMU_PCI_SLOT));
    pci.set("iommu-map", [
      0,
      iommuPh,
      seg,
      devfn,
      devfn + 1,
      iommuPh,
      seg | devfn + 1,
      0x1_0000 - devfn - 1,
    ]);
  } else if (layout.iommu === "platform") {
    pci.set("iommu-map", [0, iommuPh, seg, 0x1_0000]);
  }
  return dt;
}

/** The node of the PCI function at `slot`.0 on bus 0, as `of_pci` finds it by `reg`. */
function _pciChild(host: DtNode, name: string, slot: number): DtNode {
  return host.addChild(`${name}@${slot.toString(16)}`)
    .set("reg", [(slot << 3) << 8, 0, 0, 0, 0])
    .set("compatible", ["pci1b36,14", "riscv,pci-iommu"])
    .set("#iommu-cells", [1]);
}

function _reg(base: number, size: number): number[] {
  return [...cells64(base), ...cells64(size)];
}
