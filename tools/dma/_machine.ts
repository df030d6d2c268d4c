/**
 * The machine options the dma tools' and perf's command lines share: which IOMMU, on which bus,
 * the PCI segment, how many DMA engines and channels.
 *
 * @module
 */
import { DMAE_MAX_CHANNELS } from "@iommu-lab/hw/regs";
import { Machine, type MachinePart, riscvIommu, VIRT_DMA_SLOT } from "@iommu-lab/machine";
import { type CliValues, UsageError } from "../cli.ts";

/** The machine's options, for a tool's {@linkcode ToolSpec}. */
export const MACHINE_OPTIONS = {
  "iommu": {
    type: "string",
    default: "riscv",
    choices: ["riscv", "t100", "none"],
    help:
      "translate DMA through the RISC-V IOMMU, a SpacemiT T100 (IOATS and 2 IOATCs), or not at all",
  },
  "iommu-bus": {
    type: "string",
    default: "platform",
    choices: ["platform", "pci"],
    help: "the platform IOMMU at 0x3010000 or the PCI one (1b36:0014)",
  },
  "pci-domain": {
    type: "int",
    default: 0,
    max: 0xff,
    help: "PCI segment of the PCIe host: device_id bits 23:16 (0xc: dma0chan0 is device 0xc0010)",
  },
  "engines": {
    type: "int",
    default: 1,
    min: 1,
    max: 32 - VIRT_DMA_SLOT,
    help: "DMA test engines (PCI slots from 00:02.0)",
  },
  "channels": {
    type: "int",
    default: 4,
    min: 1,
    max: DMAE_MAX_CHANNELS,
    help: "channels per engine",
  },
} as const;

/**
 * Boots the machine `v` describes, with `parts` (a series' machine parts: perf's HPM driver).
 * A {@linkcode UsageError} for a T100 on PCI.
 */
export function bootMachine(
  v: CliValues<typeof MACHINE_OPTIONS>,
  parts: readonly MachinePart[] = [],
): Machine {
  const bus = v["iommu-bus"] === "pci" ? "pci" : "platform";
  if (v.iommu === "t100" && bus === "pci") {
    throw new UsageError("--iommu t100 is a platform IOMMU: not with --iommu-bus pci");
  }
  return Machine.boot({
    iommu: v.iommu === "none" ? "none" : riscvIommu({ features: [] }),
    iommuBus: bus,
    t100: v.iommu === "t100" ? {} : undefined,
    pciDomain: v["pci-domain"],
    dmaEngines: v.engines,
    dmaChannels: v.channels,
    parts,
  });
}
