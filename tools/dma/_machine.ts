/**
 * The machine options the dma tools' command lines share: which IOMMU, on which bus, how many
 * DMA channels.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Machine, riscvIommu } from "@iommu-lab/machine";

/** parseArgs option specs of the machine flags. */
export const MACHINE_FLAGS = {
  "iommu": { type: "string", default: "riscv" },
  "iommu-bus": { type: "string", default: "platform" },
  "engines": { type: "string", default: "1" },
  "channels": { type: "string", default: "4" },
} as const;

/** Help text of the machine flags. */
export const MACHINE_HELP = `machine:
  --iommu riscv|none          translate DMA through the RISC-V IOMMU (default) or not at all
  --iommu-bus platform|pci    the platform IOMMU at 0x3010000 (default) or the PCI one (1b36:0014)
  --engines N                 DMA test engines (default 1)
  --channels N                channels per engine (default 4)`;

/**
 * Parses a tool's command line: its `options`, the machine flags and `-h`/`--help`. Returns the
 * values, or the exit status when there is nothing to run: 0 once `help` (the tool's usage text)
 * is printed for `--help`, 2 once a parse error and the usage are printed.
 */
export function parseToolArgs<const O extends NonNullable<ParseArgsConfig["options"]>>(
  tool: string,
  args: string[],
  options: O,
  help: string,
) {
  const all = {
    ...MACHINE_FLAGS,
    ...options,
    help: { type: "boolean", short: "h", default: false },
  } as const;
  let values;
  try {
    ({ values } = parseArgs({ args, options: all }));
  } catch (e) {
    console.error(`${tool}: ${(e as Error).message}\n\n${help}${MACHINE_HELP}`);
    return 2;
  }
  // (The generic config leaves `values` opaque here; callers see their options' types.)
  if ((values as { help?: boolean }).help) {
    console.log(`${help}${MACHINE_HELP}`);
    return 0;
  }
  return values;
}

/** Boots the machine the flags describe; RangeError on a bad value. */
export function bootFromFlags(v: {
  iommu: string;
  "iommu-bus": string;
  engines: string;
  channels: string;
}): Machine {
  if (v.iommu !== "riscv" && v.iommu !== "none") throw new RangeError(`Unknown --iommu ${v.iommu}`);
  const bus = v["iommu-bus"];
  if (bus !== "platform" && bus !== "pci") throw new RangeError(`Unknown --iommu-bus ${bus}`);
  return Machine.boot({
    iommu: v.iommu === "none" ? "none" : riscvIommu({ features: [] }),
    iommuBus: bus,
    dmaEngines: intFlag(v.engines, "--engines"),
    dmaChannels: intFlag(v.channels, "--channels"),
  });
}

/** Parses a decimal or 0x integer flag; RangeError otherwise. */
export function intFlag(s: string, name: string): number {
  const n = Number(s);
  if (!Number.isInteger(n)) throw new RangeError(`${name} wants an integer, not ${s}`);
  return n;
}
