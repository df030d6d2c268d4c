/**
 * Flattened device tree: the DTB format `dtc` writes (header, memory reservation map, structure
 * block of FDT_BEGIN_NODE/PROP/END_NODE/NOP/END tokens, strings block), read into a tree of
 * {@linkcode DtNode}s and written back. Writing is the exact inverse of reading: a blob `dtc`
 * compiled parses and re-serialises byte for byte (the strings block is laid out as dtc lays it
 * out, sharing suffixes).
 *
 * Property values stay raw bytes (big-endian, as in the blob); `of.ts` types them.
 *
 * @module
 */
import type { FwNode } from "./device.ts";
import { Errno } from "./errno.ts";
import { hex } from "./vsprintf.ts";

/** FDT_MAGIC. */
export const FDT_MAGIC = 0xd00dfeed;
/** FDT_BEGIN_NODE token. */
export const FDT_BEGIN_NODE = 1;
/** FDT_END_NODE token. */
export const FDT_END_NODE = 2;
/** FDT_PROP token. */
export const FDT_PROP = 3;
/** FDT_NOP token. */
export const FDT_NOP = 4;
/** FDT_END token. */
export const FDT_END = 9;
/** The version this writer produces (and the last compatible one). */
export const FDT_VERSION = 17;
const FDT_LAST_COMP_VERSION = 16;
const HEADER_SIZE = 40;
const TWO32 = 4294967296;

/** What a property value can be given as when building a tree. */
export type PropValue = Uint8Array | readonly number[] | string | readonly string[] | true;

/** Encodes a property value: u32 cells, a string, a string list, or `true` (empty). */
export function encodeProp(value: PropValue): Uint8Array {
  if (value === true) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return new TextEncoder().encode(value + "\0");
  if (value.length > 0 && typeof value[0] === "string") {
    return new TextEncoder().encode((value as readonly string[]).map((s) => s + "\0").join(""));
  }
  const cells = value as readonly number[];
  const out = new Uint8Array(cells.length * 4);
  const dv = new DataView(out.buffer);
  cells.forEach((c, i) => {
    if (!Number.isInteger(c) || c < -0x8000_0000 || c > 0xffff_ffff) {
      throw new Errno("EINVAL", `Cell ${c} does not fit 32 bits`);
    }
    dv.setUint32(i * 4, c >>> 0);
  });
  return out;
}

/** Splits a number below 2^53 into two cells `[hi, lo]`, as `reg` and `ranges` hold it. */
export function cells64(value: number): [number, number] {
  return [Math.floor(value / TWO32), value % TWO32];
}

/** A device-tree node: name, properties (insertion-ordered raw values) and children. */
export class DtNode implements FwNode {
  /** Properties by name, in blob order. */
  readonly props: Map<string, Uint8Array> = new Map();
  /** Child nodes, in blob order. */
  readonly children: DtNode[] = [];

  /** Creates a detached node; use {@linkcode DtNode.addChild} to build trees. */
  constructor(readonly name: string, readonly parent: DtNode | null = null) {}

  /** The path from the root, e.g. `/soc/iommu@3010000` (`/` for the root). */
  get fullName(): string {
    if (this.parent === null) return "/";
    const up = this.parent.fullName;
    return `${up === "/" ? "" : up}/${this.name}`;
  }

  /** The name without the unit address (`iommu` for `iommu@3010000`). */
  get baseName(): string {
    const at = this.name.indexOf("@");
    return at < 0 ? this.name : this.name.slice(0, at);
  }

  /** The node's phandle (`phandle` or `linux,phandle`), or 0. */
  get phandle(): number {
    const v = this.props.get("phandle") ?? this.props.get("linux,phandle");
    return v !== undefined && v.length === 4
      ? new DataView(v.buffer, v.byteOffset).getUint32(0)
      : 0;
  }

  /** Appends a child named `name` and returns it. */
  addChild(name: string): DtNode {
    if (this.children.some((c) => c.name === name)) {
      throw new Errno("EEXIST", `${this.fullName} already has a child ${name}`);
    }
    const c = new DtNode(name, this);
    this.children.push(c);
    return c;
  }

  /** Sets (or replaces, keeping its position) property `name`; returns the node for chaining. */
  set(name: string, value: PropValue): this {
    this.props.set(name, encodeProp(value));
    return this;
  }

  /** The child named exactly `name`, or undefined. */
  child(name: string): DtNode | undefined {
    return this.children.find((c) => c.name === name);
  }

  /** This node and all below it, depth first in blob order. */
  *walk(): Generator<DtNode> {
    yield this;
    for (const c of this.children) yield* c.walk();
  }
}

/** One entry of the memory reservation map (`/memreserve/`). */
export interface FdtReserveEntry {
  /** First byte reserved. */
  readonly address: number;
  /** Bytes reserved. */
  readonly size: number;
}

/**
 * A device tree: the root node, the memory reservation map and `boot_cpuid_phys`.
 *
 * @example Building a tree, writing a blob and reading it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeviceTree } from "@iommu-lab/kernel";
 *
 * const dt = new DeviceTree();
 * dt.root.set("#address-cells", [2]).set("#size-cells", [2]);
 * dt.root.addChild("memory@80000000").set("device_type", "memory").set("reg", [0, 0x8000_0000, 0, 0x4000_0000]);
 * const again = DeviceTree.fromBlob(dt.toBlob());
 * assert.deepEqual(again.toBlob(), dt.toBlob());
 * assert.equal(again.findNode("/memory@80000000")?.name, "memory@80000000");
 * ```
 */
export class DeviceTree {
  /** The root node. */
  readonly root: DtNode;
  /** The memory reservation map. */
  readonly reserved: FdtReserveEntry[] = [];
  /** boot_cpuid_phys from the header. */
  bootCpuidPhys = 0;
  #byPhandle: Map<number, DtNode> | null = null;

  /** An empty tree, or one around an existing root. */
  constructor(root = new DtNode("")) {
    this.root = root;
  }

  /**
   * Mirrors unflatten_device_tree(): parses a DTB. Malformed blobs are `EINVAL` with the reason
   * (bad magic, version, offsets, token, or truncation).
   */
  static fromBlob(blob: Uint8Array): DeviceTree {
    return _parse(blob);
  }

  /** Serialises the tree as `dtc -O dtb` does (version 17, dtc's block order and strings). */
  toBlob(): Uint8Array {
    return _write(this);
  }

  /** Mirrors of_find_node_by_path(): the node at an absolute path, or undefined. */
  findNode(path: string): DtNode | undefined {
    if (!path.startsWith("/")) return undefined;
    let n: DtNode | undefined = this.root;
    for (const part of path.split("/").filter((p) => p !== "")) {
      n = n.child(part) ?? n.children.find((c) => c.baseName === part);
      if (n === undefined) return undefined;
    }
    return n;
  }

  /** Mirrors of_find_node_by_phandle(): the node with phandle `ph`, or undefined. */
  findByPhandle(ph: number): DtNode | undefined {
    if (ph === 0) return undefined;
    let n = this.#byPhandle?.get(ph);
    if (n === undefined || n.phandle !== ph) {
      this.#byPhandle = new Map();
      for (const x of this.root.walk()) if (x.phandle !== 0) this.#byPhandle.set(x.phandle, x);
      n = this.#byPhandle.get(ph);
    }
    return n;
  }

  /** Gives `node` a phandle (the next unused one) unless it has one; returns it. */
  phandleOf(node: DtNode): number {
    if (node.phandle !== 0) return node.phandle;
    let max = 0;
    for (const x of this.root.walk()) max = Math.max(max, x.phandle);
    node.set("phandle", [max + 1]);
    return max + 1;
  }
}

function _bad(why: string): Errno {
  return new Errno("EINVAL", `Bad FDT: ${why}`);
}

function _parse(blob: Uint8Array): DeviceTree {
  if (blob.length < HEADER_SIZE) throw _bad("truncated header");
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (dv.getUint32(0) !== FDT_MAGIC) throw _bad("bad magic");
  const total = dv.getUint32(4);
  const offStruct = dv.getUint32(8);
  const offStrings = dv.getUint32(12);
  const offRsv = dv.getUint32(16);
  const version = dv.getUint32(20);
  const lastComp = dv.getUint32(24);
  const sizeStrings = dv.getUint32(32);
  const sizeStruct = dv.getUint32(36);
  if (version < FDT_LAST_COMP_VERSION || lastComp > FDT_VERSION) {
    throw _bad(`unsupported version ${version} (last compatible ${lastComp})`);
  }
  if (total > blob.length) throw _bad(`totalsize ${total} beyond the ${blob.length}-byte blob`);
  if (offStruct + sizeStruct > total || offStrings + sizeStrings > total || offRsv + 16 > total) {
    throw _bad("block outside totalsize");
  }
  const dt = new DeviceTree();
  dt.bootCpuidPhys = dv.getUint32(28);
  for (let p = offRsv;; p += 16) {
    if (p + 16 > total) throw _bad("unterminated memory reservation map");
    const address = dv.getUint32(p) * TWO32 + dv.getUint32(p + 4);
    const size = dv.getUint32(p + 8) * TWO32 + dv.getUint32(p + 12);
    if (address === 0 && size === 0) break;
    dt.reserved.push({ address, size });
  }
  const dec = new TextDecoder();
  const cstr = (start: number, end: number): [string, number] => {
    let e = start;
    while (e < end && blob[e] !== 0) e++;
    if (e >= end) throw _bad("unterminated string");
    return [dec.decode(blob.subarray(start, e)), e + 1];
  };
  const end = offStruct + sizeStruct;
  let p = offStruct;
  const u32 = (): number => {
    if (p + 4 > end) throw _bad("structure block truncated");
    const v = dv.getUint32(p);
    p += 4;
    return v;
  };
  let node: DtNode | null = null;
  let done = false;
  while (!done) {
    const tok = u32();
    switch (tok) {
      case FDT_BEGIN_NODE: {
        const [name, next] = cstr(p, end);
        p = (next + 3) & ~3;
        if (node === null) {
          if (dt.root.props.size > 0 || dt.root.children.length > 0) throw _bad("two roots");
          node = dt.root;
        } else {
          node = node.addChild(name);
        }
        break;
      }
      case FDT_END_NODE:
        if (node === null) throw _bad("FDT_END_NODE outside a node");
        node = node.parent;
        break;
      case FDT_PROP: {
        if (node === null) throw _bad("FDT_PROP outside a node");
        const len = u32();
        const nameoff = u32();
        if (p + len > end) throw _bad("property value truncated");
        if (nameoff >= sizeStrings) throw _bad("property name offset out of range");
        const [name] = cstr(offStrings + nameoff, offStrings + sizeStrings);
        node.props.set(name, blob.slice(p, p + len));
        p = (p + len + 3) & ~3;
        break;
      }
      case FDT_NOP:
        break;
      case FDT_END:
        if (node !== null) throw _bad("FDT_END inside a node");
        done = true;
        break;
      default:
        throw _bad(`unknown token ${hex(tok)} at ${hex(p - 4)}`);
    }
  }
  return dt;
}

/** dtc's string table: a new name may reuse any existing NUL-terminated tail. */
class _Strings {
  text = "";
  offsetOf(name: string): number {
    const want = name + "\0";
    for (let i = 0; i + want.length <= this.text.length; i++) {
      if (this.text.startsWith(want, i)) return i;
    }
    const off = this.text.length;
    this.text += want;
    return off;
  }
}

function _write(dt: DeviceTree): Uint8Array {
  const enc = new TextEncoder();
  const strings = new _Strings();
  const words: Uint8Array[] = [];
  let structLen = 0;
  const push = (b: Uint8Array) => {
    words.push(b);
    structLen += b.length;
  };
  const tok = (t: number) => push(encodeProp([t]));
  const padded = (b: Uint8Array) => {
    const out = new Uint8Array((b.length + 3) & ~3);
    out.set(b);
    return out;
  };
  const emit = (n: DtNode) => {
    tok(FDT_BEGIN_NODE);
    push(padded(enc.encode(n.name + "\0")));
    for (const [name, value] of n.props) {
      push(encodeProp([FDT_PROP, value.length, strings.offsetOf(name)]));
      push(padded(value));
    }
    for (const c of n.children) emit(c);
    tok(FDT_END_NODE);
  };
  emit(dt.root);
  tok(FDT_END);
  const str = enc.encode(strings.text);
  const offRsv = HEADER_SIZE;
  const offStruct = offRsv + (dt.reserved.length + 1) * 16;
  const offStrings = offStruct + structLen;
  const total = offStrings + str.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  [
    FDT_MAGIC,
    total,
    offStruct,
    offStrings,
    offRsv,
    FDT_VERSION,
    FDT_LAST_COMP_VERSION,
    dt.bootCpuidPhys,
    str.length,
    structLen,
  ].forEach((v, i) => dv.setUint32(i * 4, v));
  dt.reserved.forEach((r, i) => {
    const [ah, al] = cells64(r.address);
    const [sh, sl] = cells64(r.size);
    [ah, al, sh, sl].forEach((v, j) => dv.setUint32(offRsv + i * 16 + j * 4, v));
  });
  let p = offStruct;
  for (const w of words) {
    out.set(w, p);
    p += w.length;
  }
  out.set(str, offStrings);
  return out;
}
