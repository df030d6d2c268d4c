/**
 * The machine options the dma tools' and perf's command lines share: which IOMMU, on which bus,
 * which of the driver's series it is built with, the PCI segment, how many DMA engines and
 * channels.
 *
 * @module
 */
import { DMAE_MAX_CHANNELS } from "@iommu-lab/hw/regs";
import {
  Machine,
  type MachineOptions,
  type MachinePart,
  riscvIommu,
  VIRT_DMA_SLOT,
} from "@iommu-lab/machine";
import { dirtyPart } from "@iommu-lab/riscv-iommu-dirty";
import { hpmPart } from "@iommu-lab/riscv-iommu-hpm";
import { iopfPart } from "@iommu-lab/riscv-iommu-iopf";
import { type CliValues, UsageError } from "../cli.ts";

/**
 * The series `--features` names, each with the machine part that builds it in: the page-request
 * series (`iopf`; the DMA engines then advertise ATS, PRI and PASID, which it enables), hardware
 * dirty tracking (`dirty`), the HPM as perf PMUs (`hpm`).
 */
export const FEATURES: Readonly<Record<string, () => MachinePart>> = {
  iopf: iopfPart,
  dirty: dirtyPart,
  hpm: hpmPart,
};

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
  "features": {
    type: "string",
    default: "none",
    arg: "LIST",
    help: "the driver's series, a comma list: iopf (page requests; engines with ATS, PRI, " +
      "PASID), dirty (dirty tracking), hpm (perf PMUs); or none",
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
 * The names of a `--features` list (`iopf,hpm`, or `none`), checked: each one of
 * {@linkcode FEATURES}, none twice, `none` alone. A {@linkcode UsageError} otherwise.
 */
export function parseFeatures(list: string): string[] {
  const names = list.split(",");
  const known = [...Object.keys(FEATURES), "none"].join(", ");
  for (const [i, name] of names.entries()) {
    if (name !== "none" && !Object.hasOwn(FEATURES, name)) {
      const shown = name === "" ? '""' : name;
      throw new UsageError(`--features: ${shown} is not one of ${known}`);
    }
    if (names.indexOf(name) !== i) throw new UsageError(`--features: ${name} is named twice`);
  }
  if (names.includes("none")) {
    if (names.length > 1) throw new UsageError("--features: none goes alone");
    return [];
  }
  return names;
}

/**
 * The machine options that build in the series `names` ({@linkcode parseFeatures}): their parts,
 * and with `iopf` DMA engines that advertise ATS, PRI and PASID.
 */
export function featureOptions(
  names: readonly string[],
): Required<Pick<MachineOptions, "parts" | "dmaPasid">> & { dmaAts: boolean; dmaPri: boolean } {
  const iopf = names.includes("iopf");
  return {
    parts: names.map((f) => FEATURES[f]()),
    dmaAts: iopf,
    dmaPri: iopf,
    dmaPasid: iopf,
  };
}

/**
 * Boots the machine `v` describes: the series `--features` names, then those of `parts` not
 * among them (perf's HPM driver). A {@linkcode UsageError} for a T100 on PCI, or a series with
 * no IOMMU to run on.
 */
export function bootMachine(
  v: CliValues<typeof MACHINE_OPTIONS>,
  parts: readonly MachinePart[] = [],
): Machine {
  const bus = v["iommu-bus"] === "pci" ? "pci" : "platform";
  if (v.iommu === "t100" && bus === "pci") {
    throw new UsageError("--iommu t100 is a platform IOMMU: not with --iommu-bus pci");
  }
  const features = parseFeatures(v.features);
  if (v.iommu === "none" && features.length > 0) {
    throw new UsageError(`--features ${v.features}: not with --iommu none`);
  }
  const named = featureOptions(features);
  return Machine.boot({
    ...named,
    iommu: v.iommu === "none" ? "none" : riscvIommu({ features: [] }),
    iommuBus: bus,
    t100: v.iommu === "t100" ? {} : undefined,
    pciDomain: v["pci-domain"],
    dmaEngines: v.engines,
    dmaChannels: v.channels,
    parts: [...named.parts, ...parts.filter((p) => !named.parts.some((n) => n.name === p.name))],
  });
}
