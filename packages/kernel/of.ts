/**
 * Open Firmware helpers on {@linkcode DtNode}s: typed property reads, `#address-cells` /
 * `#size-cells` (inherited from ancestors, as Linux does), address translation through
 * `ranges`, phandle lists with arguments (`iommus`, `interrupts-extended`, `msi-parent`),
 * interrupt specifiers and `iommu-map` / `msi-map` id translation.
 *
 * Where C returns `-EINVAL` for a missing property, these return `undefined`; malformed values
 * (wrong length, dangling phandle) throw an {@linkcode Errno}.
 *
 * @module
 */
import { Errno } from "./errno.ts";
import type { DeviceTree, DtNode } from "./fdt.ts";
import type { MemRange } from "./page_alloc.ts";
import { IORESOURCE_MEM, type Resource } from "./resource.ts";
import { hex } from "./vsprintf.ts";

const TWO32 = 4294967296;

/** Linux's default #address-cells when no ancestor says (OF_ROOT_NODE_ADDR_CELLS_DEFAULT). */
export const OF_ROOT_NODE_ADDR_CELLS_DEFAULT = 1;
/** Linux's default #size-cells when no ancestor says (OF_ROOT_NODE_SIZE_CELLS_DEFAULT). */
export const OF_ROOT_NODE_SIZE_CELLS_DEFAULT = 1;

function _cells(np: DtNode, name: string, v: Uint8Array): number[] {
  if (v.length % 4 !== 0) {
    throw new Errno("EILSEQ", `${np.fullName}: ${name} is not a list of cells`);
  }
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 4) out.push(dv.getUint32(i));
  return out;
}

/** Combines big-endian cells into a number (EOVERFLOW at 2^53 and above). */
export function of_read_number(cells: readonly number[]): number {
  let v = 0;
  for (const c of cells) {
    v = v * TWO32 + c;
    if (v > Number.MAX_SAFE_INTEGER) throw new Errno("EOVERFLOW", "Cell value beyond 2^53");
  }
  return v;
}

/** Mirrors of_get_property(): the raw value, or undefined. */
export function of_get_property(np: DtNode, name: string): Uint8Array | undefined {
  return np.props.get(name);
}

/** Mirrors of_property_read_bool(): whether the property exists. */
export function of_property_read_bool(np: DtNode, name: string): boolean {
  return np.props.has(name);
}

/**
 * Mirrors of_property_read_u32(): the first cell, or undefined when absent (EOVERFLOW when
 * shorter than a cell).
 *
 * @example Reading typed properties
 * ```ts
 * import assert from "node:assert/strict";
 * import { DtNode, of_property_read_string_array, of_property_read_u32 } from "@iommu-lab/kernel";
 *
 * const np = new DtNode("iommu@3010000").set("#iommu-cells", [1]).set("compatible", ["a,b", "c"]);
 * assert.equal(of_property_read_u32(np, "#iommu-cells"), 1);
 * assert.equal(of_property_read_u32(np, "missing"), undefined);
 * assert.deepEqual(of_property_read_string_array(np, "compatible"), ["a,b", "c"]);
 * ```
 */
export function of_property_read_u32(np: DtNode, name: string): number | undefined {
  const v = np.props.get(name);
  if (v === undefined) return undefined;
  if (v.length < 4) throw new Errno("EOVERFLOW", `${np.fullName}: ${name} is shorter than a cell`);
  return new DataView(v.buffer, v.byteOffset).getUint32(0);
}

/** Reads every cell of a property (undefined when absent). */
export function of_property_read_u32_array(np: DtNode, name: string): number[] | undefined {
  const v = np.props.get(name);
  return v === undefined ? undefined : _cells(np, name, v);
}

/** Mirrors of_property_read_u64(): two cells as a number below 2^53. */
export function of_property_read_u64(np: DtNode, name: string): number | undefined {
  const c = of_property_read_u32_array(np, name);
  if (c === undefined) return undefined;
  if (c.length < 2) throw new Errno("EOVERFLOW", `${np.fullName}: ${name} is shorter than 64 bits`);
  return of_read_number(c.slice(0, 2));
}

/** Mirrors of_property_read_string_array(): the NUL-separated strings ([] when absent). */
export function of_property_read_string_array(np: DtNode, name: string): string[] {
  const v = np.props.get(name);
  if (v === undefined || v.length === 0) return [];
  if (v[v.length - 1] !== 0) {
    throw new Errno("EILSEQ", `${np.fullName}: ${name} is not NUL-terminated`);
  }
  return new TextDecoder().decode(v.subarray(0, v.length - 1)).split("\0");
}

/** Mirrors of_property_read_string(): the first string, or undefined. */
export function of_property_read_string(np: DtNode, name: string): string | undefined {
  return of_property_read_string_array(np, name)[0];
}

/** Mirrors of_property_match_string(): the index of `str` in a string list, or -1. */
export function of_property_match_string(np: DtNode, name: string, str: string): number {
  return of_property_read_string_array(np, name).indexOf(str);
}

/** Mirrors of_device_is_compatible(): `compat` is one of the node's `compatible` strings. */
export function of_device_is_compatible(np: DtNode, compat: string): boolean {
  return of_property_read_string_array(np, "compatible").includes(compat);
}

/** Mirrors of_device_is_available(): `status` absent, "okay" or "ok". */
export function of_device_is_available(np: DtNode): boolean {
  const s = of_property_read_string(np, "status");
  return s === undefined || s === "okay" || s === "ok";
}

function _inherited(np: DtNode | null, name: string, def: number): number {
  for (let n = np; n !== null; n = n.parent) {
    const v = of_property_read_u32(n, name);
    if (v !== undefined) return v;
  }
  return def;
}

/** Mirrors of_n_addr_cells(): address cells of `np`'s `reg` (from the parent, inherited). */
export function of_n_addr_cells(np: DtNode): number {
  return _inherited(np.parent, "#address-cells", OF_ROOT_NODE_ADDR_CELLS_DEFAULT);
}

/** Mirrors of_n_size_cells(): size cells of `np`'s `reg` (from the parent, inherited). */
export function of_n_size_cells(np: DtNode): number {
  return _inherited(np.parent, "#size-cells", OF_ROOT_NODE_SIZE_CELLS_DEFAULT);
}

/** Mirrors of_get_address(): entry `index` of `reg` in bus addresses, or undefined. */
export function of_get_address(
  np: DtNode,
  index: number,
): { address: number; size: number } | undefined {
  const reg = of_property_read_u32_array(np, "reg");
  if (reg === undefined) return undefined;
  const na = of_n_addr_cells(np);
  const ns = of_n_size_cells(np);
  const at = index * (na + ns);
  if (index < 0 || at + na + ns > reg.length) return undefined;
  return {
    address: of_read_number(reg.slice(at, at + na)),
    size: of_read_number(reg.slice(at + na, at + na + ns)),
  };
}

/**
 * Mirrors of_translate_address(): a bus address of `np` as a CPU physical address, through
 * every ancestor's `ranges` (empty = identity). EINVAL when a bus lacks `ranges` or no range
 * covers the address.
 */
export function of_translate_address(np: DtNode, address: number): number {
  let addr = address;
  for (let bus = np.parent; bus !== null && bus.parent !== null; bus = bus.parent) {
    const ranges = of_property_read_u32_array(bus, "ranges");
    if (ranges === undefined) {
      throw new Errno(
        "EINVAL",
        `${np.fullName}: ${bus.fullName} has no ranges to translate ${hex(addr)}`,
      );
    }
    if (ranges.length === 0) continue;
    const cna = _inherited(bus, "#address-cells", OF_ROOT_NODE_ADDR_CELLS_DEFAULT);
    const cns = _inherited(bus, "#size-cells", OF_ROOT_NODE_SIZE_CELLS_DEFAULT);
    const pna = of_n_addr_cells(bus);
    const step = cna + pna + cns;
    let hit: number | undefined;
    for (let i = 0; i + step <= ranges.length && hit === undefined; i += step) {
      const child = of_read_number(ranges.slice(i, i + cna));
      const parent = of_read_number(ranges.slice(i + cna, i + cna + pna));
      const size = of_read_number(ranges.slice(i + cna + pna, i + step));
      if (addr >= child && addr - child < size) hit = parent + (addr - child);
    }
    if (hit === undefined) {
      throw new Errno(
        "EINVAL",
        `${np.fullName}: ${hex(addr)} is outside ${bus.fullName} ranges`,
      );
    }
    addr = hit;
  }
  return addr;
}

/**
 * Mirrors of_address_to_resource(): `reg` entry `index` translated to a CPU-physical
 * IORESOURCE_MEM, named from `reg-names`. Undefined when there is no such entry.
 */
export function of_address_to_resource(np: DtNode, index: number): Resource | undefined {
  const a = of_get_address(np, index);
  if (a === undefined) return undefined;
  const start = of_translate_address(np, a.address);
  const name = of_property_read_string_array(np, "reg-names")[index] ?? "";
  return { start, end: start + a.size - 1, flags: IORESOURCE_MEM, name };
}

/** The root of the tree `np` belongs to. */
function _root(np: DtNode): DtNode {
  let n = np;
  while (n.parent !== null) n = n.parent;
  return n;
}

/** Mirrors of_find_node_by_phandle(), searching the tree `np` belongs to. */
export function of_find_node_by_phandle(np: DtNode, phandle: number): DtNode | undefined {
  if (phandle === 0) return undefined;
  for (const n of _root(np).walk()) if (n.phandle === phandle) return n;
  return undefined;
}

/** struct of_phandle_args: a referenced node and its argument cells. */
export interface OfPhandleArgs {
  /** The node the phandle points at. */
  readonly np: DtNode;
  /** The argument cells after the phandle. */
  readonly args: number[];
}

/** Splits a phandle list into entries (EINVAL on a dangling phandle or short list). */
function _phandleList(
  np: DtNode,
  listName: string,
  cellsName: string | null,
  fixedCells: number,
): OfPhandleArgs[] | undefined {
  const cells = of_property_read_u32_array(np, listName);
  if (cells === undefined) return undefined;
  const out: OfPhandleArgs[] = [];
  for (let i = 0; i < cells.length;) {
    const target = of_find_node_by_phandle(np, cells[i]);
    if (target === undefined) {
      throw new Errno(
        "EINVAL",
        `${np.fullName}: ${listName} phandle ${hex(cells[i])} not found`,
      );
    }
    const n = cellsName === null
      ? fixedCells
      : of_property_read_u32(target, cellsName) ?? fixedCells;
    if (i + 1 + n > cells.length) {
      throw new Errno("EINVAL", `${np.fullName}: ${listName} is too short for ${target.fullName}`);
    }
    out.push({ np: target, args: cells.slice(i + 1, i + 1 + n) });
    i += 1 + n;
  }
  return out;
}

/**
 * Mirrors of_parse_phandle_with_args(): entry `index` of a `<&node arg...>` list whose argument
 * count each target gives in `cellsName` (e.g. `iommus` / `#iommu-cells`). Undefined past the
 * end or when absent; a target without `cellsName` takes `defaultCells` arguments (0).
 */
export function of_parse_phandle_with_args(
  np: DtNode,
  listName: string,
  cellsName: string,
  index: number,
  defaultCells = 0,
): OfPhandleArgs | undefined {
  return _phandleList(np, listName, cellsName, defaultCells)?.[index];
}

/** Mirrors of_count_phandle_with_args(): entries in the list (0 when absent). */
export function of_count_phandle_with_args(
  np: DtNode,
  listName: string,
  cellsName: string,
): number {
  return _phandleList(np, listName, cellsName, 0)?.length ?? 0;
}

/** Mirrors of_parse_phandle(): the node of the `index`th phandle in a plain phandle list. */
export function of_parse_phandle(np: DtNode, name: string, index: number): DtNode | undefined {
  return _phandleList(np, name, null, 0)?.[index]?.np;
}

/**
 * Mirrors of_irq_find_parent(): follows `interrupt-parent` (or the parent node) until a node
 * with `#interrupt-cells`.
 */
export function of_irq_find_parent(np: DtNode): DtNode | undefined {
  let n: DtNode | undefined = np;
  do {
    const ph = of_property_read_u32(n, "interrupt-parent");
    n = ph === undefined ? n.parent ?? undefined : of_find_node_by_phandle(n, ph);
  } while (n !== undefined && !n.props.has("#interrupt-cells"));
  return n;
}

/**
 * Mirrors of_irq_parse_one(): interrupt `index` of `np` as its controller and specifier cells,
 * from `interrupts-extended` or `interrupts` + the interrupt parent. Undefined past the end.
 */
export function of_irq_parse_one(np: DtNode, index: number): OfPhandleArgs | undefined {
  if (np.props.has("interrupts-extended")) {
    return of_parse_phandle_with_args(np, "interrupts-extended", "#interrupt-cells", index);
  }
  const cells = of_property_read_u32_array(np, "interrupts");
  if (cells === undefined) return undefined;
  const ctrl = of_irq_find_parent(np);
  if (ctrl === undefined) throw new Errno("EINVAL", `${np.fullName}: no interrupt parent`);
  const size = of_property_read_u32(ctrl, "#interrupt-cells")!;
  const at = index * size;
  if (index < 0 || size === 0 || at + size > cells.length) return undefined;
  return { np: ctrl, args: cells.slice(at, at + size) };
}

/** Mirrors of_irq_count(): how many interrupts `np` lists. */
export function of_irq_count(np: DtNode): number {
  let n = 0;
  while (of_irq_parse_one(np, n) !== undefined) n++;
  return n;
}

/**
 * Mirrors of_map_id(): translates `id` through a `<id-base &target out-base length>` map such as
 * `iommu-map` (after `id & <mapMask>`, default all ones). Returns the target and the output id,
 * or null when the property is absent or no entry covers the id.
 */
export function of_map_id(
  np: DtNode,
  id: number,
  mapName: string,
  maskName: string,
): { np: DtNode; id: number } | null {
  const map = of_property_read_u32_array(np, mapName);
  if (map === undefined) return null;
  if (map.length % 4 !== 0) {
    throw new Errno("EINVAL", `${np.fullName}: ${mapName} is not a list of 4-cell entries`);
  }
  const mask = of_property_read_u32(np, maskName) ?? 0xffff_ffff;
  const masked = (id & mask) >>> 0;
  for (let i = 0; i < map.length; i += 4) {
    const [base, ph, out, len] = map.slice(i, i + 4);
    if (masked < base || masked - base >= len) continue;
    const target = of_find_node_by_phandle(np, ph);
    if (target === undefined) {
      throw new Errno(
        "EINVAL",
        `${np.fullName}: ${mapName} phandle ${hex(ph)} not found`,
      );
    }
    return { np: target, id: masked - base + out };
  }
  return null;
}

/** Mirrors of_get_child_by_name(): the first child whose name without unit address matches. */
export function of_get_child_by_name(np: DtNode, name: string): DtNode | undefined {
  return np.children.find((c) => c.baseName === name);
}

/**
 * Mirrors early_init_dt_scan_memory() and the reserved-memory scan: RAM from every
 * `device_type = "memory"` node's `reg`, reserved ranges from the memory reservation map and
 * `/reserved-memory` children, ready for `new Kernel({ ram, reserved })`.
 */
export function early_init_dt_scan_memory(
  dt: DeviceTree,
): { ram: MemRange[]; reserved: MemRange[] } {
  const ranges = (np: DtNode): MemRange[] => {
    const out: MemRange[] = [];
    for (let i = 0;; i++) {
      const r = of_address_to_resource(np, i);
      if (r === undefined) return out;
      out.push({ base: r.start, size: r.end - r.start + 1 });
    }
  };
  const ram = dt.root.children
    .filter((n) =>
      of_property_read_string(n, "device_type") === "memory" && of_device_is_available(n)
    )
    .flatMap(ranges);
  const reserved: MemRange[] = dt.reserved.map((r) => ({ base: r.address, size: r.size }));
  for (const n of dt.findNode("/reserved-memory")?.children ?? []) reserved.push(...ranges(n));
  return { ram, reserved };
}
