/**
 * Test-only builders of the IOMMU's in-memory structures: a page allocator, device and
 * process directories, page tables of every scheme, MSI page tables, and a ready-made IOMMU
 * environment. They write raw encodings with {@linkcode PhysicalMemory} so tests of the silicon
 * do not depend on the software packages.
 *
 * @module
 */

import { PhysicalMemory } from "../memory.ts";
import { type IommuCaps, resolveCaps } from "./caps.ts";
import {
  type InboundRequest,
  newRequest,
  newResult,
  setIova,
  type TranslationResult,
} from "./request.ts";
import {
  PTE_A,
  PTE_D,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_W,
  RISCV_IOMMU_DC_TC_V,
  RISCV_IOMMU_PC_TA_ENS,
  RISCV_IOMMU_PC_TA_SUM,
  RISCV_IOMMU_PC_TA_V,
} from "./structs.ts";
import type { CacheOptions } from "./cache.ts";
import { Translator } from "./translator.ts";
import { Iommu, type IommuOptions } from "./iommu.ts";
import {
  RISCV_IOMMU_CQCSR_CQEN,
  RISCV_IOMMU_FQCSR_FQEN,
  RISCV_IOMMU_PQCSR_PIE,
  RISCV_IOMMU_PQCSR_PQEN,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQT,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FQB,
  RISCV_IOMMU_REG_FQCSR,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
  RISCV_IOMMU_REG_PQH,
  RISCV_IOMMU_REG_PQT,
} from "./regs.ts";

/** Where test RAM starts (the virt board's DRAM base). */
export const TEST_RAM_BASE = 0x8000_0000;
/** Size of test RAM (sparse: only touched frames cost memory). */
export const TEST_RAM_SIZE = 2 ** 36;

/** Hands out zeroed, naturally aligned runs of pages from test RAM. */
export class TestPageAllocator {
  #next: number;

  /** Allocates from page `firstPn` upwards (default: the start of test RAM). */
  constructor(firstPn = TEST_RAM_BASE / 4096) {
    this.#next = firstPn;
  }

  /** Page number of `n` fresh pages aligned to `align` pages. */
  pages(n = 1, align = 1): number {
    const pn = Math.ceil(this.#next / align) * align;
    this.#next = pn + n;
    return pn;
  }

  /** Physical address of one fresh page. */
  page(): number {
    return this.pages() * 4096;
  }
}

/** Writes the 64-bit `value` at `pa` (big-endian when `be`). */
export function testWrite64(mem: PhysicalMemory, pa: number, value: bigint, be = false): void {
  mem.write64(pa, BigInt.asUintN(64, value), be);
}

/** An iosatp, pdtp, msiptp or PC.fsc value: MODE in 63:60, PPN in 43:0. */
export function encodeAtp(mode: number, ppn: number): bigint {
  return BigInt(mode) << 60n | BigInt(ppn);
}

/** An iohgatp value: MODE, GSCID and the root PPN. */
export function encodeIohgatp(mode: number, gscid: number, ppn: number): bigint {
  return BigInt(mode) << 60n | BigInt(gscid) << 44n | BigInt(ppn);
}

/** A DC.ta value holding `pscid`. */
export function encodeDcTa(pscid: number): bigint {
  return BigInt(pscid) << 12n;
}

/** A valid PC.ta value: `pscid` and the ENS/SUM flags. */
export function encodePcTa(pscid: number, flags: { ens?: boolean; sum?: boolean } = {}): bigint {
  return BigInt(pscid) << 12n | BigInt(RISCV_IOMMU_PC_TA_V) |
    (flags.ens ? BigInt(RISCV_IOMMU_PC_TA_ENS) : 0n) |
    (flags.sum ? BigInt(RISCV_IOMMU_PC_TA_SUM) : 0n);
}

/** Device-context doublewords (missing ones are 0; `tc` gets V=1 unless `invalid`). */
export interface DcFields {
  /** DC.tc flags (RISCV_IOMMU_DC_TC_*); V is added. */
  tc?: number | bigint;
  /** Leave DC.tc.V clear. */
  invalid?: boolean;
  /** DC.iohgatp. */
  iohgatp?: bigint;
  /** DC.ta. */
  ta?: bigint;
  /** DC.fsc (iosatp or pdtp). */
  fsc?: bigint;
  /** DC.msiptp (extended format). */
  msiptp?: bigint;
  /** DC.msi_addr_mask. */
  msiMask?: bigint;
  /** DC.msi_addr_pattern. */
  msiPattern?: bigint;
  /** The reserved last doubleword of an extended DC. */
  reserved?: bigint;
}

/** Builds a 1-, 2- or 3-level device directory with base (32 B) or extended (64 B) DCs. */
export class DdtBuilder {
  /** Root page number (for `ddtp.PPN`). */
  readonly rootPn: number;
  readonly #mem: PhysicalMemory;
  readonly #alloc: TestPageAllocator;
  readonly #levels: number;
  readonly #ext: boolean;
  readonly #be: boolean;

  /** A directory for `ddtp.iommu_mode` `mode` (2 1LVL, 3 2LVL, 4 3LVL). */
  constructor(
    mem: PhysicalMemory,
    alloc: TestPageAllocator,
    mode: number,
    ext: boolean,
    be = false,
  ) {
    this.#mem = mem;
    this.#alloc = alloc;
    this.#levels = mode - 1;
    this.#ext = ext;
    this.#be = be;
    this.rootPn = alloc.pages();
  }

  /** The DDI[`i`] of `did` for this DC format. */
  ddi(did: number, i: number): number {
    const b0 = this.#ext ? 6 : 7;
    if (i === 0) return did & ((1 << b0) - 1);
    if (i === 1) return (did >>> b0) & 0x1ff;
    return did >>> (b0 + 9);
  }

  /** Address of the non-leaf DDTE of `did` at `level` (1 or 2), creating parents as needed. */
  ddteAddr(did: number, level: number): number {
    let pn = this.rootPn;
    for (let l = this.#levels - 1; l > level; l--) pn = this.#next(pn, this.ddi(did, l));
    return pn * 4096 + this.ddi(did, level) * 8;
  }

  /** Address of the DC slot of `did`, creating the non-leaf entries above it. */
  dcAddr(did: number): number {
    let pn = this.rootPn;
    for (let l = this.#levels - 1; l > 0; l--) pn = this.#next(pn, this.ddi(did, l));
    return pn * 4096 + this.ddi(did, 0) * (this.#ext ? 64 : 32);
  }

  /** Writes the DC of `did`; returns its address. */
  set(did: number, dc: DcFields): number {
    const a = this.dcAddr(did);
    const tc = BigInt(dc.tc ?? 0) | (dc.invalid ? 0n : BigInt(RISCV_IOMMU_DC_TC_V));
    const words = [tc, dc.iohgatp ?? 0n, dc.ta ?? 0n, dc.fsc ?? 0n];
    if (this.#ext) {
      words.push(dc.msiptp ?? 0n, dc.msiMask ?? 0n, dc.msiPattern ?? 0n, dc.reserved ?? 0n);
    }
    words.forEach((v, i) => testWrite64(this.#mem, a + 8 * i, v, this.#be));
    return a;
  }

  #next(pn: number, idx: number): number {
    const a = pn * 4096 + idx * 8;
    const e = this.#mem.read64(a, this.#be);
    if ((e & 1n) !== 0n) return Number(e >> 10n & ((1n << 44n) - 1n));
    const child = this.#alloc.pages();
    testWrite64(this.#mem, a, BigInt(child) << 10n | 1n, this.#be);
    return child;
  }
}

/**
 * Builds a PD8/PD17/PD20 process directory. `ptr` turns the SPA page of a directory page into
 * the pointer written for it (a GPA page when the DC has a G stage; identity by default).
 */
export class PdtBuilder {
  /** Root pointer (for pdtp.PPN). */
  readonly root: number;
  /** SPA pages of every directory page allocated, root first. */
  readonly pages: number[];
  readonly #mem: PhysicalMemory;
  readonly #t: _Tables;
  readonly #levels: number;
  readonly #be: boolean;

  /** A directory for pdtp.MODE `mode` (1 PD8, 2 PD17, 3 PD20). */
  constructor(
    mem: PhysicalMemory,
    alloc: TestPageAllocator,
    mode: number,
    be = false,
    ptr: (spaPn: number) => number = (pn) => pn,
  ) {
    this.#mem = mem;
    this.#t = new _Tables(alloc, ptr);
    this.pages = this.#t.pages;
    this.#levels = mode;
    this.#be = be;
    this.root = this.#t.track(alloc.pages());
  }

  /** Address (SPA) of the non-leaf PDTE of `pid` at `level` (1 or 2). */
  pdteAddr(pid: number, level: number): number {
    let pn = this.#t.spa(this.root);
    for (let l = this.#levels - 1; l > level; l--) pn = this.#next(pn, _pdi(pid, l));
    return pn * 4096 + _pdi(pid, level) * 8;
  }

  /** Address (SPA) of the PC slot of `pid`. */
  pcAddr(pid: number): number {
    let pn = this.#t.spa(this.root);
    for (let l = this.#levels - 1; l > 0; l--) pn = this.#next(pn, _pdi(pid, l));
    return pn * 4096 + _pdi(pid, 0) * 16;
  }

  /** Writes the PC of `pid` (ta, fsc); returns its SPA. */
  set(pid: number, ta: bigint, fsc: bigint): number {
    const a = this.pcAddr(pid);
    testWrite64(this.#mem, a, ta, this.#be);
    testWrite64(this.#mem, a + 8, fsc, this.#be);
    return a;
  }

  #next(pn: number, idx: number): number {
    const a = pn * 4096 + idx * 8;
    const e = this.#mem.read64(a, this.#be);
    return this.#t.below(e, (e & 1n) !== 0n, (v) => testWrite64(this.#mem, a, v, this.#be));
  }
}

function _pdi(pid: number, level: number): number {
  return level === 0 ? pid & 0xff : level === 1 ? (pid >>> 8) & 0x1ff : (pid >>> 17) & 7;
}

/** A page-table scheme: first stage (Sv32/39/48/57) or G stage (x4). */
export type PageTableScheme =
  | "sv32"
  | "sv39"
  | "sv48"
  | "sv57"
  | "sv32x4"
  | "sv39x4"
  | "sv48x4"
  | "sv57x4";

const SCHEMES: Record<PageTableScheme, { levels: number; w: number; x4: boolean }> = {
  sv32: { levels: 2, w: 10, x4: false },
  sv39: { levels: 3, w: 9, x4: false },
  sv48: { levels: 4, w: 9, x4: false },
  sv57: { levels: 5, w: 9, x4: false },
  sv32x4: { levels: 2, w: 10, x4: true },
  sv39x4: { levels: 3, w: 9, x4: true },
  sv48x4: { levels: 4, w: 9, x4: true },
  sv57x4: { levels: 5, w: 9, x4: true },
};

/** Leaf options of {@linkcode PageTableBuilder.map}. */
export interface MapOptions {
  /** Leaf level: 0 for 4 KiB, 1 for 2 MiB (4 MiB in Sv32), ... */
  level?: number;
  /** Low PTE bits (default V|R|W|U|A|D). */
  flags?: number;
  /** PBMT (62:61). */
  pbmt?: number;
  /** Svnapot 64 KiB: sets N and PPN[3:0] = 1000b (maps the 16 pages around `pa`). */
  napot?: boolean;
  /** Extra bits ORed into the high word (reserved bits, N...). */
  hi?: number;
}

/** Default leaf flags: valid, readable, writable, user, accessed, dirty. */
export const TEST_PTE_RW_USER = PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D;

/**
 * Builds page tables of one scheme. `ptr` turns the SPA page of a table into the pointer
 * written for it (a GPA page for first-stage tables behind a G stage; identity by default).
 */
export class PageTableBuilder {
  /** Root pointer (for iosatp/iohgatp PPN). */
  readonly root: number;
  /** SPA pages of every table allocated (the root's 4 pages count once, first). */
  readonly pages: number[];
  readonly #mem: PhysicalMemory;
  readonly #t: _Tables;
  readonly #s: { levels: number; w: number; x4: boolean };
  readonly #be: boolean;

  /** Tables of `scheme`, big-endian when `be`; the x4 root is 16 KiB and 16 KiB aligned. */
  constructor(
    mem: PhysicalMemory,
    alloc: TestPageAllocator,
    scheme: PageTableScheme,
    be = false,
    ptr: (spaPn: number) => number = (pn) => pn,
  ) {
    this.#mem = mem;
    this.#t = new _Tables(alloc, ptr);
    this.pages = this.#t.pages;
    this.#s = SCHEMES[scheme];
    this.#be = be;
    this.root = this.#t.track(this.#s.x4 ? alloc.pages(4, 4) : alloc.pages());
  }

  /** Index of `va` at `level`. */
  index(va: number | bigint, level: number): number {
    const { levels, w, x4 } = this.#s;
    const width = x4 && level === levels - 1 ? w + 2 : w;
    const vpn = BigInt.asUintN(64, BigInt(va)) >> 12n;
    return Number(vpn >> BigInt(level * w) & ((1n << BigInt(width)) - 1n));
  }

  /** Address (SPA) of the PTE for `va` at `level`, creating the tables above it. */
  pteAddr(va: number | bigint, level: number): number {
    const { levels } = this.#s;
    let spa = this.#t.spa(this.root);
    for (let l = levels - 1; l > level; l--) {
      const a = spa * 4096 + this.index(va, l) * this.#pteSize;
      const e = this.#read(a);
      // A valid entry without R and X (0xa) points to a table; anything else is replaced.
      spa = this.#t.below(e, (e & 1n) !== 0n && (e & 0xan) === 0n, (v) => this.#write(a, v));
    }
    return spa * 4096 + this.index(va, level) * this.#pteSize;
  }

  /** Maps the page of `va` to `pa` with a leaf at `opts.level`; returns the leaf's address. */
  map(va: number | bigint, pa: number | bigint, opts: MapOptions = {}): number {
    const a = this.pteAddr(va, opts.level ?? 0);
    let ppn = BigInt(pa) >> 12n;
    if (opts.napot) ppn = (ppn & ~0xfn) | 8n;
    const pte = ppn << 10n | BigInt(opts.flags ?? TEST_PTE_RW_USER) |
      BigInt(opts.pbmt ?? 0) << 61n |
      (opts.napot ? 1n << 63n : 0n) | BigInt(opts.hi ?? 0) << 32n;
    this.#write(a, pte);
    return a;
  }

  /** Reads the PTE at `a`. */
  read(a: number): bigint {
    return this.#read(a);
  }

  /** Writes a raw PTE at `a`. */
  write(a: number, pte: bigint): void {
    this.#write(a, pte);
  }

  get #pteSize(): number {
    return this.#s.w === 10 ? 4 : 8;
  }

  #read(a: number): bigint {
    return this.#pteSize === 4
      ? BigInt(this.#mem.read32(a, this.#be))
      : this.#mem.read64(a, this.#be);
  }

  #write(a: number, pte: bigint): void {
    if (this.#pteSize === 4) this.#mem.write32(a, Number(BigInt.asUintN(32, pte)), this.#be);
    else testWrite64(this.#mem, a, pte, this.#be);
  }
}

/**
 * The pages of a tree of tables (a directory, a page table): each allocated page recorded, its
 * pointer (`ptr` of its SPA page) mapped back to it, and a missing non-leaf entry filled with a
 * new table on the way down.
 */
class _Tables {
  readonly pages: number[] = [];
  readonly #alloc: TestPageAllocator;
  readonly #ptr: (spaPn: number) => number;
  readonly #spaOf = new Map<number, number>();

  constructor(alloc: TestPageAllocator, ptr: (spaPn: number) => number) {
    this.#alloc = alloc;
    this.#ptr = ptr;
  }

  /** Records table page `spa`; returns its pointer. */
  track(spa: number): number {
    this.pages.push(spa);
    const ptr = this.#ptr(spa);
    this.#spaOf.set(ptr, spa);
    return ptr;
  }

  /** The SPA page of table pointer `ptr`. */
  spa(ptr: number): number {
    return this.#spaOf.get(ptr)!;
  }

  /**
   * The SPA page of the table below non-leaf entry `e`: the one it points to when `linked`, else
   * a new one, whose entry (valid, its pointer) goes in with `write`.
   */
  below(e: bigint, linked: boolean, write: (entry: bigint) => void): number {
    if (linked) return this.spa(Number(e >> 10n & ((1n << 44n) - 1n)));
    const child = this.track(this.#alloc.pages());
    write(BigInt(child) << 10n | 1n);
    return this.spa(child);
  }
}

/** A test IOMMU: memory, an allocator, a translator and a device directory. */
export interface TestIommuEnv {
  /** System memory (RAM at {@linkcode TEST_RAM_BASE}). */
  mem: PhysicalMemory;
  /** Page allocator over that RAM. */
  alloc: TestPageAllocator;
  /** The capabilities in force. */
  caps: IommuCaps;
  /** The translator under test, with ddtp set to the directory. */
  tr: Translator;
  /** The device directory. */
  ddt: DdtBuilder;
}

/** Builds an {@linkcode TestIommuEnv}: ddtp `mode` (default 3LVL), caps from DEFAULT_CAPS + `caps`. */
export function testIommuEnv(
  caps: Partial<IommuCaps> = {},
  mode = 4,
  opts: CacheOptions = {},
): TestIommuEnv {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, TEST_RAM_SIZE);
  const alloc = new TestPageAllocator();
  const c = resolveCaps(caps);
  const tr = new Translator(mem, c, opts);
  const ddt = new DdtBuilder(mem, alloc, mode, c.msiFlat);
  tr.ddtpMode = mode;
  tr.ddtpPpn = ddt.rootPn;
  return { mem, alloc, caps: c, tr, ddt };
}

/** A request: device `did`, address `iova`, plus any other fields. */
export function testRequest(
  did: number,
  iova: number | bigint,
  init: Partial<InboundRequest> = {},
): InboundRequest {
  const r = newRequest({ deviceId: did, ...init });
  setIova(r, iova);
  return r;
}

/** Translates `r` with `tr` into a fresh result. */
export function testTranslate(tr: Translator, r: InboundRequest): TranslationResult {
  const res = newResult();
  tr.translate(r, res);
  return res;
}

/** What {@linkcode testIommuDevice} builds. */
export interface TestIommuDevice {
  /** System memory (RAM at {@linkcode TEST_RAM_BASE}). */
  mem: PhysicalMemory;
  /** Page allocator over that RAM. */
  alloc: TestPageAllocator;
  /** The IOMMU, `ddtp` pointing at {@linkcode ddt}, its three queues on. */
  iommu: Iommu;
  /** The device directory. */
  ddt: DdtBuilder;
  /** Physical address of the fault queue (fqen). */
  fq: number;
  /** Physical address of the page-request queue (pqen, pie). */
  pq: number;
  /** Writes one command at `cqt` and moves `cqt` past it (the IOMMU runs it then). */
  command(d0: bigint, d1?: bigint): void;
  /**
   * The page-request records software has not consumed yet, as dword pairs, and moves `pqh` past
   * them (what a PQ handler does).
   */
  takePageRequests(): [bigint, bigint][];
}

/**
 * An {@linkcode Iommu} on fresh RAM with a 3LVL device directory (or `mode`), a 16-entry command
 * queue, a 16-entry fault queue and a page-request queue of 2^`pqLog2Sz` entries (default 4), all
 * enabled, for tests that drive the device through its registers and queues.
 */
export function testIommuDevice(
  opts: Partial<IommuOptions> & { mode?: number; pqLog2Sz?: number } = {},
): TestIommuDevice {
  const mem = opts.mem ?? new PhysicalMemory();
  if (opts.mem === undefined) mem.addRam(TEST_RAM_BASE, TEST_RAM_SIZE);
  const alloc = new TestPageAllocator();
  const iommu = new Iommu({ ...opts, mem });
  const mode = opts.mode ?? 4;
  const ddt = new DdtBuilder(mem, alloc, mode, iommu.caps.msiFlat);
  iommu.write64(RISCV_IOMMU_REG_DDTP, BigInt(ddt.rootPn) << 10n | BigInt(mode));
  const cq = alloc.pages(), fq = alloc.page(), pq = alloc.page();
  iommu.write64(RISCV_IOMMU_REG_CQB, BigInt(cq) << 10n | 3n);
  iommu.write32(RISCV_IOMMU_REG_CQCSR, RISCV_IOMMU_CQCSR_CQEN);
  iommu.write64(RISCV_IOMMU_REG_FQB, BigInt(fq / 4096) << 10n | 3n);
  iommu.write32(RISCV_IOMMU_REG_FQCSR, RISCV_IOMMU_FQCSR_FQEN);
  iommu.write64(RISCV_IOMMU_REG_PQB, BigInt(pq / 4096) << 10n | BigInt((opts.pqLog2Sz ?? 4) - 1));
  iommu.write32(RISCV_IOMMU_REG_PQCSR, RISCV_IOMMU_PQCSR_PQEN | RISCV_IOMMU_PQCSR_PIE);
  const command = (d0: bigint, d1 = 0n): void => {
    const t = iommu.read32(RISCV_IOMMU_REG_CQT);
    mem.write64(cq * 4096 + t * 16, d0);
    mem.write64(cq * 4096 + t * 16 + 8, d1);
    iommu.write32(RISCV_IOMMU_REG_CQT, (t + 1) % 16);
  };
  const takePageRequests = (): [bigint, bigint][] => {
    const out: [bigint, bigint][] = [];
    const size = 2 ** (Number(iommu.read64(RISCV_IOMMU_REG_PQB) & 0x1fn) + 1);
    let h = iommu.read32(RISCV_IOMMU_REG_PQH);
    const t = iommu.read32(RISCV_IOMMU_REG_PQT);
    for (; h !== t; h = (h + 1) % size) {
      out.push([mem.read64(pq + h * 16), mem.read64(pq + h * 16 + 8)]);
    }
    iommu.write32(RISCV_IOMMU_REG_PQH, h);
    return out;
  };
  return { mem, alloc, iommu, ddt, fq, pq, command, takePageRequests };
}
