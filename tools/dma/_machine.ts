/**
 * The machine options the dma tools' command lines share: which IOMMU, on which bus, how many
 * DMA engines and channels.
 *
 * @module
 */
import { DMAE_MAX_CHANNELS } from "@iommu-lab/hw/regs";
import { Machine, riscvIommu, VIRT_DMA_SLOT } from "@iommu-lab/machine";
import type { CliValues } from "../cli.ts";

/** The machine's options, for a tool's {@linkcode ToolSpec}. */
export const MACHINE_OPTIONS = {
  "iommu": {
    type: "string",
    default: "riscv",
    choices: ["riscv", "none"],
    help: "translate DMA through the RISC-V IOMMU, or not at all",
  },
  "iommu-bus": {
    type: "string",
    default: "platform",
    choices: ["platform", "pci"],
    help: "the platform IOMMU at 0x3010000 or the PCI one (1b36:0014)",
  },
  "engines": {
    type: "int",
    default: 1,
    min: 1,
    max: 32 - VIRT_DMA_SLOT,
    help: "DMA test engines (PCI slots from 00:03.0)",
  },
  "channels": {
    type: "int",
    default: 4,
    min: 1,
    max: DMAE_MAX_CHANNELS,
    help: "channels per engine",
  },
} as const;

/** Boots the machine `v` describes. */
export function bootMachine(v: CliValues<typeof MACHINE_OPTIONS>): Machine {
  return Machine.boot({
    iommu: v.iommu === "none" ? "none" : riscvIommu({ features: [] }),
    iommuBus: v["iommu-bus"] === "pci" ? "pci" : "platform",
    dmaEngines: v.engines,
    dmaChannels: v.channels,
  });
}
