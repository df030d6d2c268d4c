/**
 * PCI configuration-space layout the kernel uses (include/uapi/linux/pci_regs.h): the kernel's
 * own copy, kept apart from the silicon's on purpose.
 *
 * @module
 */

/** Vendor ID (16 bits). */
export const PCI_VENDOR_ID = 0x00;
/** Device ID (16 bits). */
export const PCI_DEVICE_ID = 0x02;
/** Command register (16 bits). */
export const PCI_COMMAND = 0x04;
/** Command: respond to I/O space. */
export const PCI_COMMAND_IO = 0x1;
/** Command: respond to memory space. */
export const PCI_COMMAND_MEMORY = 0x2;
/** Command: bus mastering (the function may issue DMA). */
export const PCI_COMMAND_MASTER = 0x4;
/** Status register (16 bits; error bits are RW1C). */
export const PCI_STATUS = 0x06;
/** Status: the capability list is present. */
export const PCI_STATUS_CAP_LIST = 0x10;
/** Revision ID (8 bits) and class code (24 bits above it). */
export const PCI_CLASS_REVISION = 0x08;
/** Header type (8 bits). */
export const PCI_HEADER_TYPE = 0x0e;
/** Header type: layout mask. */
export const PCI_HEADER_TYPE_MASK = 0x7f;
/** Header type 0: an endpoint. */
export const PCI_HEADER_TYPE_NORMAL = 0;
/** Header type: multi-function device. */
export const PCI_HEADER_TYPE_MFD = 0x80;
/** First base address register. */
export const PCI_BASE_ADDRESS_0 = 0x10;
/** BAR: I/O space indicator. */
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
/** BAR: memory type mask. */
export const PCI_BASE_ADDRESS_MEM_TYPE_MASK = 0x06;
/** BAR: 64-bit memory. */
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
/** BAR: prefetchable memory. */
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
/** Subsystem vendor ID (16 bits). */
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
/** Subsystem ID (16 bits). */
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Offset of the first capability (8 bits). */
export const PCI_CAPABILITY_LIST = 0x34;
/** Capability: next pointer offset within a capability. */
export const PCI_CAP_LIST_NEXT = 1;
/** Capability ID: MSI. */
export const PCI_CAP_ID_MSI = 0x05;
/** Capability ID: PCI Express. */
export const PCI_CAP_ID_EXP = 0x10;
/** Capability ID: MSI-X. */
export const PCI_CAP_ID_MSIX = 0x11;
/** Size of the standard configuration header. */
export const PCI_CFG_SPACE_SIZE = 0x100;
/** Size of PCIe extended configuration space. */
export const PCI_CFG_SPACE_EXP_SIZE = 0x1000;

/** PCIe capability: device status (RW1C bits). */
export const PCI_EXP_DEVSTA = 10;

/** MSI: message control. */
export const PCI_MSI_FLAGS = 2;
/** MSI control: enable. */
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
/** MSI control: multiple message capable (log2 of vectors, bits 3:1). */
export const PCI_MSI_FLAGS_QMASK = 0x000e;
/** MSI control: multiple message enable (bits 6:4). */
export const PCI_MSI_FLAGS_QSIZE = 0x0070;
/** MSI control: 64-bit address capable. */
export const PCI_MSI_FLAGS_64BIT = 0x0080;
/** MSI control: per-vector masking capable. */
export const PCI_MSI_FLAGS_MASKBIT = 0x0100;
/** MSI: message address, low 32 bits. */
export const PCI_MSI_ADDRESS_LO = 4;
/** MSI: message address, high 32 bits (64-bit capability only). */
export const PCI_MSI_ADDRESS_HI = 8;
/** MSI: message data, 32-bit capability. */
export const PCI_MSI_DATA_32 = 8;
/** MSI: message data, 64-bit capability. */
export const PCI_MSI_DATA_64 = 12;
/** MSI: mask bits, 32-bit capability. */
export const PCI_MSI_MASK_32 = 12;
/** MSI: mask bits, 64-bit capability. */
export const PCI_MSI_MASK_64 = 16;

/** MSI-X: message control. */
export const PCI_MSIX_FLAGS = 2;
/** MSI-X control: table size minus one. */
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
/** MSI-X control: function mask. */
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
/** MSI-X control: enable. */
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
/** MSI-X: table offset and BIR. */
export const PCI_MSIX_TABLE = 4;
/** MSI-X: BAR indicator mask. */
export const PCI_MSIX_TABLE_BIR = 0x7;
/** MSI-X: table offset mask. */
export const PCI_MSIX_TABLE_OFFSET = 0xffff_fff8;
/** MSI-X table entry: message address low. */
export const PCI_MSIX_ENTRY_LOWER_ADDR = 0x0;
/** MSI-X table entry: message address high. */
export const PCI_MSIX_ENTRY_UPPER_ADDR = 0x4;
/** MSI-X table entry: message data. */
export const PCI_MSIX_ENTRY_DATA = 0x8;
/** MSI-X table entry: vector control. */
export const PCI_MSIX_ENTRY_VECTOR_CTRL = 0xc;
/** MSI-X vector control: masked. */
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;
/** MSI-X table entry size. */
export const PCI_MSIX_ENTRY_SIZE = 16;

/** Extended capability header: ID in bits 15:0. */
export const PCI_EXT_CAP_ID_MASK = 0xffff;
/** Extended capability ID: Address Translation Services. */
export const PCI_EXT_CAP_ID_ATS = 0x0f;
/** Extended capability ID: Page Request Interface. */
export const PCI_EXT_CAP_ID_PRI = 0x13;
/** Extended capability ID: Process Address Space ID. */
export const PCI_EXT_CAP_ID_PASID = 0x1b;

/** ATS: capability register (16 bits). */
export const PCI_ATS_CAP = 0x04;
/** ATS capability: invalidate queue depth (0 means 32). */
export const PCI_ATS_CAP_QDEP_MASK = 0x1f;
/** ATS capability: page-aligned requests. */
export const PCI_ATS_CAP_PAGE_ALIGNED = 0x20;
/** ATS: control register (16 bits). */
export const PCI_ATS_CTRL = 0x06;
/** ATS control: enable. */
export const PCI_ATS_CTRL_ENABLE = 0x8000;
/** Smallest translation unit: log2 of 4 KiB. */
export const PCI_ATS_MIN_STU = 12;

/** PRI: control register (16 bits). */
export const PCI_PRI_CTRL = 0x04;
/** PRI control: enable. */
export const PCI_PRI_CTRL_ENABLE = 0x1;
/** PRI control: reset. */
export const PCI_PRI_CTRL_RESET = 0x2;
/** PRI: status register (16 bits; RF and UPRGI are RW1C). */
export const PCI_PRI_STATUS = 0x06;
/** PRI status: the function is stopped (no outstanding requests). */
export const PCI_PRI_STATUS_STOPPED = 0x100;
/** PRI status: PRG responses must carry a PASID. */
export const PCI_PRI_STATUS_PASID = 0x8000;
/** PRI: outstanding page request capacity. */
export const PCI_PRI_MAX_REQ = 0x08;
/** PRI: outstanding page request allocation. */
export const PCI_PRI_ALLOC_REQ = 0x0c;

/** PASID: capability register (16 bits). */
export const PCI_PASID_CAP = 0x04;
/** PASID capability: execute permission supported. */
export const PCI_PASID_CAP_EXEC = 0x02;
/** PASID capability: privileged mode supported. */
export const PCI_PASID_CAP_PRIV = 0x04;
/** PASID: control register (16 bits). */
export const PCI_PASID_CTRL = 0x06;
/** PASID control: enable. */
export const PCI_PASID_CTRL_ENABLE = 0x01;
