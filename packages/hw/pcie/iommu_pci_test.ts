import assert from "node:assert/strict";
import { Clock } from "../clock.ts";
import { PhysicalMemory } from "../memory.ts";
import { IGS_WSI } from "../iommu/caps.ts";
import { Iommu } from "../iommu/iommu.ts";
import {
  RISCV_IOMMU_CMD_ATS_FUNC_INVAL,
  RISCV_IOMMU_CMD_ATS_INVAL_S,
  RISCV_IOMMU_CMD_ATS_OPCODE,
  RISCV_IOMMU_CQCSR_CIE,
  RISCV_IOMMU_CQCSR_CMD_TO,
  RISCV_IOMMU_CQCSR_CQEN,
  RISCV_IOMMU_IPSR_CIP,
  RISCV_IOMMU_REG_CAPABILITIES,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
  RISCV_IOMMU_REG_CQT,
  RISCV_IOMMU_REG_IPSR,
} from "../iommu/regs.ts";
import { Imsic, IMSIC_MMIO_PAGE_SZ, IMSIC_S_BASE } from "../intc/imsic.ts";
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_MSIX,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
} from "./config.ts";
import { PciFunction } from "./function.ts";
import { IommuPciFunction, RISCV_IOMMU_PCI_PBA } from "./iommu_pci.ts";
import { PCIE_MMIO_BASE, RootComplex } from "./root_complex.ts";

const RAM = 0x8000_0000;
const BAR = PCIE_MMIO_BASE;
const CQ = RAM + 0x10_0000;

function setup(caps = {}) {
  const clock = new Clock();
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 1 << 30);
  const imsic = new Imsic({ clock });
  mem.addMmio(IMSIC_S_BASE, IMSIC_MMIO_PAGE_SZ, imsic, "imsic");
  imsic.eidelivery = 1;
  imsic.enable(5);
  const got: number[] = [];
  imsic.onMsi = (id) => got.push(id);
  const iommu = new Iommu({ mem, clock, caps: { igs: 0, ...caps } });
  const rc = new RootComplex({ mem, clock, translator: iommu });
  iommu.atsPort = rc.atsPort;
  const pci = new IommuPciFunction(iommu, { clock });
  rc.attach(pci.fn, 1);
  return { clock, mem, imsic, got, iommu, rc, pci };
}

/** Assigns BAR0 and enables decode and bus mastering, as the kernel's PCI core does. */
function enable(pci: IommuPciFunction) {
  pci.fn.configWrite32(PCI_BASE_ADDRESS_0, BAR);
  pci.fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0);
  pci.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/** Enables a 4-entry command queue with cie at CQ and points vector 0 at IMSIC identity 5. */
function queues(mem: PhysicalMemory) {
  mem.write64(BAR + RISCV_IOMMU_REG_CQB, BigInt(CQ / 4096) << 10n | 1n);
  mem.write32(BAR + RISCV_IOMMU_REG_CQCSR, RISCV_IOMMU_CQCSR_CQEN | RISCV_IOMMU_CQCSR_CIE);
  mem.write32(BAR + 0x300, IMSIC_S_BASE);
  mem.write32(BAR + 0x304, 0);
  mem.write32(BAR + 0x308, 5);
}

/** Queues one command and rings the doorbell. */
function submit(mem: PhysicalMemory, d0: bigint, d1: bigint) {
  const t = mem.read32(BAR + RISCV_IOMMU_REG_CQT);
  mem.write64(CQ + 16 * t, d0);
  mem.write64(CQ + 16 * t + 8, d1);
  mem.write32(BAR + RISCV_IOMMU_REG_CQT, (t + 1) & 3);
}

/** An illegal command (opcode 0): cmd_ill, so ipsr.cip and an interrupt on vector 0. */
const raiseCip = (mem: PhysicalMemory) => submit(mem, 0n, 0n);

Deno.test("riscv-iommu-pci: enumerates as 1b36:0014, class 0x0806, BAR0 64-bit 4 KiB", () => {
  const { pci } = setup();
  const fn = pci.fn;
  assert.equal(fn.configRead32(0), 0x0014_1b36);
  assert.equal(fn.configRead32(0x08), 0x0806_0001);
  fn.configWrite32(PCI_BASE_ADDRESS_0, 0xffff_ffff);
  assert.equal(fn.configRead32(PCI_BASE_ADDRESS_0), 0xffff_f004);
  const cap = pci.msixCap;
  assert.equal(fn.configRead32(cap) & 0xff, PCI_CAP_ID_MSIX);
  assert.equal(fn.configRead32(cap) >>> 16, 15, "16 vectors: one per msi_cfg_tbl entry");
  assert.equal(fn.configRead32(cap + 4), 0x300, "table = msi_cfg_tbl in BAR0");
  assert.equal(fn.configRead32(cap + 8), RISCV_IOMMU_PCI_PBA);
  assert.equal(fn.dmaBypass, true, "the IOMMU's own DMA is not translated");
});

Deno.test("riscv-iommu-pci: BAR0 is the IOMMU's register page", () => {
  const { pci, mem, iommu } = setup();
  enable(pci);
  assert.equal(mem.read64(BAR + RISCV_IOMMU_REG_CAPABILITIES), iommu.read64(0));
  mem.write32(BAR + 0x300 + 8, 0x77);
  assert.equal(iommu.read32(0x308), 0x77, "msi_data_0 written through the MSI-X table");
});

Deno.test("riscv-iommu-pci: MSI-X Enable, Function Mask and BME gate the IOMMU's MSIs", async (t) => {
  const { pci, mem, clock, got } = setup();
  enable(pci);
  queues(mem);
  const ctrl = (v: number) => pci.fn.configWrite32(pci.msixCap, v << 16);
  const settle = () => clock.advance(10_000);
  await t.step("vector unmasked but MSI-X disabled: the message is held", () => {
    mem.write32(BAR + 0x30c, 0);
    assert.equal(mem.read32(BAR + 0x30c), 0, "software reads back its own Mask bit");
    raiseCip(mem);
    assert.equal(mem.read32(BAR + RISCV_IOMMU_REG_IPSR) & RISCV_IOMMU_IPSR_CIP, 1);
    settle();
    assert.deepEqual(got, []);
  });
  await t.step("enabling MSI-X sends the held message", () => {
    ctrl(PCI_MSIX_FLAGS_ENABLE);
    settle();
    assert.deepEqual(got, [5]);
  });
  await t.step("function mask holds the next one until cleared", () => {
    ctrl(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    mem.write32(BAR + RISCV_IOMMU_REG_IPSR, RISCV_IOMMU_IPSR_CIP); // re-raised: cmd_ill holds
    settle();
    assert.deepEqual(got, [5]);
    ctrl(PCI_MSIX_FLAGS_ENABLE);
    settle();
    assert.deepEqual(got, [5, 5]);
  });
  await t.step("the vector's own mask holds it too", () => {
    mem.write32(BAR + 0x30c, 1);
    mem.write32(BAR + RISCV_IOMMU_REG_IPSR, RISCV_IOMMU_IPSR_CIP);
    settle();
    assert.deepEqual(got, [5, 5]);
    mem.write32(BAR + 0x30c, 0);
    settle();
    assert.deepEqual(got, [5, 5, 5]);
  });
  await t.step("bus master off holds it", () => {
    pci.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
    mem.write32(BAR + RISCV_IOMMU_REG_IPSR, RISCV_IOMMU_IPSR_CIP);
    settle();
    assert.deepEqual(got, [5, 5, 5]);
    pci.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    settle();
    assert.deepEqual(got, [5, 5, 5, 5]);
  });
  await t.step("the PBA ignores writes", () => {
    mem.write32(BAR + RISCV_IOMMU_PCI_PBA, 0xffff_ffff);
    assert.equal(mem.read32(BAR + RISCV_IOMMU_PCI_PBA), 0);
  });
});

Deno.test("riscv-iommu-pci: a WSI-only IOMMU has no MSI-X capability", () => {
  const { pci } = setup({ igs: IGS_WSI });
  assert.equal(pci.msixCap, 0);
  assert.equal(pci.fn.msix, undefined);
  const next = pci.fn.configRead32(pci.fn.expCap) >>> 8 & 0xff;
  assert.equal(next, 0, "the PCI Express capability is the only one");
});

Deno.test("riscv-iommu-pci: ATS.INVAL from the command queue reaches the endpoint's ATC; IOFENCE.C waits for its completion", () => {
  const { pci, mem, clock, rc } = setup();
  enable(pci);
  queues(mem);
  const ep = new PciFunction({ clock, vendorId: 1, deviceId: 2, classCode: 0, ats: {} });
  const rid = rc.attach(ep, 3);
  const atc = ep.atc!;
  atc.insert(-1, 0x10_0000, 4096, RAM, 3, false, false);
  atc.insert(-1, 0x1f_f000, 4096, RAM, 3, false, false);
  atc.insert(-1, 0x20_0000, 4096, RAM, 3, false, false);
  // A 1 MiB invalidation of 0x10_0000: page number 0x17f (seven low ones, then a zero), S=1.
  const d0 = BigInt(RISCV_IOMMU_CMD_ATS_OPCODE) | BigInt(RISCV_IOMMU_CMD_ATS_FUNC_INVAL) << 7n |
    BigInt(rid) << 40n;
  submit(mem, d0, 0x17f000n | RISCV_IOMMU_CMD_ATS_INVAL_S);
  submit(mem, 2n, 0n); // IOFENCE.C
  assert.equal(mem.read32(BAR + RISCV_IOMMU_REG_CQH), 1, "sent; the fence waits");
  assert.equal(atc.lookup(-1, 0x10_0000), true, "until the endpoint completes it");
  clock.advance(clock.costs.atsInvalidate);
  assert.equal(mem.read32(BAR + RISCV_IOMMU_REG_CQH), 2, "completed, and the fence with it");
  assert.equal(mem.read32(BAR + RISCV_IOMMU_REG_CQCSR) & RISCV_IOMMU_CQCSR_CMD_TO, 0);
  assert.equal(atc.lookup(-1, 0x10_0000), false);
  assert.equal(atc.lookup(-1, 0x1f_f000), false);
  assert.equal(atc.lookup(-1, 0x20_0000), true, "outside the 1 MiB range");
});
