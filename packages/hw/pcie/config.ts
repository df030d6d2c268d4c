/**
 * PCI configuration space: 4 KiB of registers with per-bit write rules, the standard
 * capability list and the PCIe extended capability list, and the register names of Linux's
 * `include/uapi/linux/pci_regs.h`.
 *
 * Writes from the bus go through {@linkcode ConfigSpace.write32}, which honours read-only,
 * read-write and write-1-to-clear bits. That alone gives BAR sizing: a BAR's address bits below
 * its size are read-only zero, so writing all-ones reads back the size mask.
 *
 * @module
 */

/** Vendor ID (16 bits). */
export const PCI_VENDOR_ID = 0x00;
/** Device ID (16 bits). */
export const PCI_DEVICE_ID = 0x02;
/** Command register (16 bits). */
export const PCI_COMMAND = 0x04;
/** Command: respond to I/O space accesses (no I/O BARs here: hard-wired 0). */
export const PCI_COMMAND_IO = 0x1;
/** Command: respond to memory space accesses (BARs decode). */
export const PCI_COMMAND_MEMORY = 0x2;
/** Command: bus master enable (the function may issue DMA and MSIs). */
export const PCI_COMMAND_MASTER = 0x4;
/** Command: parity error response. */
export const PCI_COMMAND_PARITY = 0x40;
/** Command: SERR# enable. */
export const PCI_COMMAND_SERR = 0x100;
/** Command: INTx emulation disable. */
export const PCI_COMMAND_INTX_DISABLE = 0x400;
/** Status register (16 bits). */
export const PCI_STATUS = 0x06;
/** Status: the capability list at {@linkcode PCI_CAPABILITY_LIST} is valid. */
export const PCI_STATUS_CAP_LIST = 0x10;
/** Status error bits, all write-1-to-clear. */
export const PCI_STATUS_ERROR_BITS = 0xf900;
/** Revision ID (8 bits); class code follows in bits 31:8 of the same dword. */
export const PCI_CLASS_REVISION = 0x08;
/** Cache line size (8 bits, read-write). */
export const PCI_CACHE_LINE_SIZE = 0x0c;
/** Header type (8 bits). */
export const PCI_HEADER_TYPE = 0x0e;
/** Header type: the device has more than one function. */
export const PCI_HEADER_TYPE_MFD = 0x80;
/** First base address register. */
export const PCI_BASE_ADDRESS_0 = 0x10;
/** BAR flag: 64-bit memory BAR (takes two BAR slots). */
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
/** BAR flag: prefetchable memory. */
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
/** Expansion ROM BAR (not implemented: reads 0). */
export const PCI_ROM_ADDRESS = 0x30;
/** Subsystem vendor ID. */
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
/** Subsystem ID. */
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Pointer to the first capability. */
export const PCI_CAPABILITY_LIST = 0x34;
/** Interrupt line (read-write scratch for software). */
export const PCI_INTERRUPT_LINE = 0x3c;
/** Interrupt pin (0: no INTx). */
export const PCI_INTERRUPT_PIN = 0x3d;
/** Size of conventional configuration space. */
export const PCI_CFG_SPACE_SIZE = 0x100;
/** Size of PCIe configuration space. */
export const PCI_CFG_SPACE_EXP_SIZE = 0x1000;

/** Offset of the next-capability pointer within a capability. */
export const PCI_CAP_LIST_NEXT = 1;
/** Capability ID: PCI Express. */
export const PCI_CAP_ID_EXP = 0x10;
/** Capability ID: MSI-X. */
export const PCI_CAP_ID_MSIX = 0x11;

/** PCIe capabilities register (16 bits). */
export const PCI_EXP_FLAGS = 2;
/** PCIe capabilities: device/port type field (7:4). */
export const PCI_EXP_FLAGS_TYPE = 0x00f0;
/** Device/port type: PCIe endpoint. */
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
/** Device/port type: root-complex integrated endpoint (a function on the root bus). */
export const PCI_EXP_TYPE_RC_END = 0x9;
/** Device capabilities. */
export const PCI_EXP_DEVCAP = 4;
/** Device control (16 bits). */
export const PCI_EXP_DEVCTL = 8;
/** Device status (16 bits). */
export const PCI_EXP_DEVSTA = 10;
/** Device capabilities 2. */
export const PCI_EXP_DEVCAP2 = 0x24;
/** Device control 2 (16 bits). */
export const PCI_EXP_DEVCTL2 = 0x28;
/** Size of a version-2 PCIe capability. */
export const PCI_CAP_EXP_SIZEOF = 0x3c;

/** MSI-X message control (16 bits). */
export const PCI_MSIX_FLAGS = 2;
/** Message control: table size minus one. */
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
/** Message control: function mask. */
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
/** Message control: MSI-X enable. */
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
/** Table offset and BAR indicator. */
export const PCI_MSIX_TABLE = 4;
/** BAR indicator field of {@linkcode PCI_MSIX_TABLE} / {@linkcode PCI_MSIX_PBA}. */
export const PCI_MSIX_TABLE_BIR = 0x7;
/** PBA offset and BAR indicator. */
export const PCI_MSIX_PBA = 8;
/** Size of the MSI-X capability. */
export const PCI_CAP_MSIX_SIZEOF = 12;
/** Size of an MSI-X table entry. */
export const PCI_MSIX_ENTRY_SIZE = 16;
/** Entry: message address, low 32 bits. */
export const PCI_MSIX_ENTRY_LOWER_ADDR = 0;
/** Entry: message address, high 32 bits. */
export const PCI_MSIX_ENTRY_UPPER_ADDR = 4;
/** Entry: message data. */
export const PCI_MSIX_ENTRY_DATA = 8;
/** Entry: vector control. */
export const PCI_MSIX_ENTRY_VECTOR_CTRL = 12;
/** Vector control: the vector is masked (set at reset). */
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;

/** First extended capability (PCIe). */
export const PCI_EXT_CAP_START = 0x100;
/** Extended capability ID: Address Translation Services. */
export const PCI_EXT_CAP_ID_ATS = 0x0f;
/** Extended capability ID: Page Request Interface. */
export const PCI_EXT_CAP_ID_PRI = 0x13;
/** Extended capability ID: Process Address Space ID. */
export const PCI_EXT_CAP_ID_PASID = 0x1b;

/** ATS capability register (16 bits). */
export const PCI_ATS_CAP = 0x04;
/** ATS capability: invalidate queue depth (4:0; 0 means 32). */
export const PCI_ATS_CAP_QDEP_MASK = 0x1f;
/** ATS capability: page-aligned requests. */
export const PCI_ATS_CAP_PAGE_ALIGNED = 0x20;
/** ATS capability: global invalidate supported. */
export const PCI_ATS_CAP_GLOBAL_INV = 0x40;
/** ATS control register (16 bits). */
export const PCI_ATS_CTRL = 0x06;
/** ATS control: enable. */
export const PCI_ATS_CTRL_ENABLE = 0x8000;
/** ATS control: smallest translation unit (4:0), as log2(size) - 12. */
export const PCI_ATS_CTRL_STU_MASK = 0x1f;
/** Size of the ATS capability. */
export const PCI_EXT_CAP_ATS_SIZEOF = 8;

/** PRI control register (16 bits). */
export const PCI_PRI_CTRL = 0x04;
/** PRI control: enable. */
export const PCI_PRI_CTRL_ENABLE = 0x1;
/** PRI control: reset (reads 0). */
export const PCI_PRI_CTRL_RESET = 0x2;
/** PRI status register (16 bits). */
export const PCI_PRI_STATUS = 0x06;
/** PRI status: response failure (RW1C). */
export const PCI_PRI_STATUS_RF = 0x1;
/** PRI status: unexpected page request group index (RW1C). */
export const PCI_PRI_STATUS_UPRGI = 0x2;
/** PRI status: stopped (disabled with no request outstanding). */
export const PCI_PRI_STATUS_STOPPED = 0x100;
/** PRI status: PRG responses must carry a PASID. */
export const PCI_PRI_STATUS_PASID = 0x8000;
/** Outstanding page request capacity (RO). */
export const PCI_PRI_MAX_REQ = 0x08;
/** Outstanding page request allocation (RW). */
export const PCI_PRI_ALLOC_REQ = 0x0c;
/** Size of the PRI capability. */
export const PCI_EXT_CAP_PRI_SIZEOF = 16;

/** PASID capability register (16 bits). */
export const PCI_PASID_CAP = 0x04;
/** PASID capability: execute permission supported. */
export const PCI_PASID_CAP_EXEC = 0x02;
/** PASID capability: privileged mode supported. */
export const PCI_PASID_CAP_PRIV = 0x04;
/** PASID capability: max PASID width field shift (12:8). */
export const PCI_PASID_CAP_WIDTH_SHIFT = 8;
/** PASID control register (16 bits). */
export const PCI_PASID_CTRL = 0x06;
/** PASID control: enable. */
export const PCI_PASID_CTRL_ENABLE = 0x01;
/** PASID control: execute permission enable. */
export const PCI_PASID_CTRL_EXEC = 0x02;
/** PASID control: privileged mode enable. */
export const PCI_PASID_CTRL_PRIV = 0x04;
/** Size of the PASID capability. */
export const PCI_EXT_CAP_PASID_SIZEOF = 8;

/**
 * The 4 KiB configuration space of one function.
 *
 * The model side builds it with the raw setters and {@linkcode setWritable} /
 * {@linkcode setW1c}; the bus side only uses {@linkcode read32} and {@linkcode write32}.
 *
 * @example A BAR sizes itself through its write mask
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigSpace } from "@iommu-lab/hw";
 * import { PCI_BASE_ADDRESS_0 } from "@iommu-lab/hw/regs";
 *
 * const cfg = new ConfigSpace();
 * cfg.setWritable(PCI_BASE_ADDRESS_0, 4, ~(0x4000 - 1)); // a 16 KiB memory BAR
 * cfg.write32(PCI_BASE_ADDRESS_0, 0xffff_ffff);
 * assert.equal(cfg.read32(PCI_BASE_ADDRESS_0), 0xffff_c000);
 * ```
 */
export class ConfigSpace {
  readonly #view = new DataView(new ArrayBuffer(PCI_CFG_SPACE_EXP_SIZE));
  readonly #wmask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  readonly #w1c = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  #nextCap = 0x40;
  #lastCap = 0;
  #nextExt = PCI_EXT_CAP_START;
  #lastExt = 0;

  /** Reads the dword containing `offset` (offsets outside the space read all-ones). */
  read32(offset: number): number {
    const off = offset & ~3;
    if (off < 0 || off >= PCI_CFG_SPACE_EXP_SIZE) return 0xffff_ffff;
    return this.#view.getUint32(off, true);
  }

  /** A bus write of the dword containing `offset`: read-only bits keep their value, RW1C bits
   * written 1 clear, the rest take the new value. */
  write32(offset: number, value: number): void {
    const off = offset & ~3;
    if (off < 0 || off >= PCI_CFG_SPACE_EXP_SIZE) return;
    for (let i = 0; i < 4; i++) {
      const b = (value >>> (8 * i)) & 0xff;
      const old = this.#view.getUint8(off + i);
      const m = this.#wmask[off + i];
      this.#view.setUint8(off + i, ((old & ~m) | (b & m)) & ~(b & this.#w1c[off + i]));
    }
  }

  /** Raw 8-bit read (model side). */
  get8(offset: number): number {
    return this.#view.getUint8(offset);
  }

  /** Raw 16-bit read (model side). */
  get16(offset: number): number {
    return this.#view.getUint16(offset, true);
  }

  /** Raw 32-bit read (model side). */
  get32(offset: number): number {
    return this.#view.getUint32(offset, true);
  }

  /** Raw 8-bit write ignoring the write rules (model side). */
  set8(offset: number, value: number): void {
    this.#view.setUint8(offset, value & 0xff);
  }

  /** Raw 16-bit write ignoring the write rules (model side). */
  set16(offset: number, value: number): void {
    this.#view.setUint16(offset, value & 0xffff, true);
  }

  /** Raw 32-bit write ignoring the write rules (model side). */
  set32(offset: number, value: number): void {
    this.#view.setUint32(offset, value >>> 0, true);
  }

  /** Makes the bits of `mask` in the `bytes`-byte register at `offset` writable by the bus. */
  setWritable(offset: number, bytes: number, mask: number): void {
    for (let i = 0; i < bytes; i++) this.#wmask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Makes the bits of `mask` in the `bytes`-byte register at `offset` write-1-to-clear. */
  setW1c(offset: number, bytes: number, mask: number): void {
    for (let i = 0; i < bytes; i++) this.#w1c[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Appends a `len`-byte capability with `id` to the standard list; returns its offset. */
  addCap(id: number, len: number): number {
    const off = this.#nextCap;
    if (off + len > PCI_CFG_SPACE_SIZE) throw new RangeError("Cannot add capability: no room");
    this.set8(off, id);
    if (this.#lastCap === 0) this.set8(PCI_CAPABILITY_LIST, off);
    else this.set8(this.#lastCap + PCI_CAP_LIST_NEXT, off);
    this.set16(PCI_STATUS, this.get16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    this.#lastCap = off;
    this.#nextCap = (off + len + 7) & ~7;
    return off;
  }

  /** Appends a `len`-byte extended capability to the PCIe list; returns its offset. */
  addExtCap(id: number, version: number, len: number): number {
    const off = this.#nextExt;
    if (off + len > PCI_CFG_SPACE_EXP_SIZE) {
      throw new RangeError("Cannot add extended capability: no room");
    }
    this.set32(off, id | (version << 16));
    if (this.#lastExt !== 0) {
      this.set32(this.#lastExt, (this.get32(this.#lastExt) & 0xfffff) | (off << 20));
    }
    this.#lastExt = off;
    this.#nextExt = (off + len + 7) & ~7;
    return off;
  }
}
