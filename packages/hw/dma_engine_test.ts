import assert from "node:assert/strict";
import { Clock } from "./clock.ts";
import { PhysicalMemory } from "./memory.ts";
import { ACC_READ, ACC_WRITE } from "./iommu/request.ts";
import { Imsic, IMSIC_MMIO_PAGE_SZ, IMSIC_S_BASE } from "./intc/imsic.ts";
import {
  PCI_ATS_CTRL_ENABLE,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_PASID_CTRL_ENABLE,
  PCI_PASID_CTRL_EXEC,
  PCI_PASID_CTRL_PRIV,
} from "./pcie/config.ts";
import { PCIE_MMIO_BASE, RootComplex } from "./pcie/root_complex.ts";
import {
  encodeAtp,
  encodeDcTa,
  PageTableBuilder,
  TEST_RAM_BASE,
  testIommuEnv,
  testPcieRig,
} from "./testing.ts";
import { RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39, RISCV_IOMMU_DC_TC_EN_ATS } from "./iommu/structs.ts";
import {
  DMAE_CH_BASE,
  DMAE_CH_CMD,
  DMAE_CH_DST_HI,
  DMAE_CH_DST_LO,
  DMAE_CH_ERR_ADDR_HI,
  DMAE_CH_ERR_ADDR_LO,
  DMAE_CH_ERR_CAUSE,
  DMAE_CH_LEN,
  DMAE_CH_PASID,
  DMAE_CH_PATTERN,
  DMAE_CH_SRC_LO,
  DMAE_CH_STATUS,
  DMAE_CH_STRIDE,
  DMAE_CH_XFERRED,
  DMAE_CMD_GO,
  DMAE_CMD_IRQ_EN,
  DMAE_ERR_ATS,
  DMAE_ERR_CMD,
  DMAE_ERR_MASTER,
  DMAE_ERR_READ,
  DMAE_ERR_WRITE,
  DMAE_MAX_CHANNELS,
  DMAE_MSIX_TABLE,
  DMAE_OP_COPY,
  DMAE_OP_FILL,
  DMAE_PASID_EXEC,
  DMAE_PASID_PRIV,
  DMAE_PASID_PV,
  DMAE_REG_CHANNELS,
  DMAE_STATUS_BUSY,
  DMAE_STATUS_DONE,
  DMAE_STATUS_ERR_SHIFT,
  DMAE_STATUS_ERROR,
  DmaEngine,
} from "./dma_engine.ts";

const BAR = PCIE_MMIO_BASE;
const ch = (n: number, reg: number) => BAR + DMAE_CH_BASE + n * DMAE_CH_STRIDE + reg;

function setup(opts: { pasid?: boolean } = {}) {
  const rig = testPcieRig();
  const dma = new DmaEngine({ clock: rig.clock, channels: 2, pasid: opts.pasid });
  rig.rc.attach(dma.fn, 4);
  dma.fn.configWrite32(PCI_BASE_ADDRESS_0, BAR);
  dma.fn.configWrite32(PCI_BASE_ADDRESS_0 + 4, 0);
  dma.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  const ram = (iova: number) => TEST_RAM_BASE + rig.port.offset + iova;
  return { ...rig, dma, ram };
}

/** Programs channel `n` and starts it. */
function run(
  mem: PhysicalMemory,
  n: number,
  op: number,
  dst: number,
  len: number,
  srcOrPattern: number,
  irq = false,
) {
  mem.write32(ch(n, DMAE_CH_DST_LO), dst);
  mem.write32(ch(n, DMAE_CH_DST_HI), 0);
  mem.write32(ch(n, DMAE_CH_LEN), len);
  if (op === DMAE_OP_COPY) mem.write32(ch(n, DMAE_CH_SRC_LO), srcOrPattern);
  else mem.write32(ch(n, DMAE_CH_PATTERN), srcOrPattern);
  mem.write32(ch(n, DMAE_CH_CMD), DMAE_CMD_GO | op | (irq ? DMAE_CMD_IRQ_EN : 0));
}

/** Polls STATUS the way a driver without interrupts would, and returns it. */
function waitIdle(mem: PhysicalMemory, n: number): number {
  for (let i = 0; i < 1_000_000; i++) {
    const st = mem.read32(ch(n, DMAE_CH_STATUS));
    if ((st & DMAE_STATUS_BUSY) === 0) return st;
  }
  throw new Error("DMA channel never went idle");
}

Deno.test("dma engine: COPY moves the data through the IOMMU page by page", () => {
  const { mem, port, ram, dma } = setup();
  const len = 5 * 4096 + 123;
  const src = new Uint8Array(len).map((_, i) => (i * 13 + 7) & 0xff);
  mem.writeBytes(ram(0x10_0000), src);
  run(mem, 0, DMAE_OP_COPY, 0x40_0000, len, 0x10_0000);
  assert.equal(waitIdle(mem, 0), DMAE_STATUS_DONE);
  assert.equal(mem.read32(ch(0, DMAE_CH_XFERRED)), len);
  assert.deepEqual(mem.readBytes(ram(0x40_0000), len), src);
  const reads = port.seen.filter((r) => r.access === ACC_READ);
  const writes = port.seen.filter((r) => r.access === ACC_WRITE);
  assert.equal(reads.length, 6);
  assert.equal(writes.length, 6);
  assert.ok(port.seen.every((r) => r.deviceId === dma.fn.bdf), "requester ID is the engine's BDF");
});

Deno.test("dma engine: FILL writes the 32-bit pattern", () => {
  const { mem, ram } = setup();
  run(mem, 1, DMAE_OP_FILL, 0x2002, 10, 0xddcc_bbaa);
  assert.equal(waitIdle(mem, 1), DMAE_STATUS_DONE);
  assert.deepEqual(
    [...mem.readBytes(ram(0x2000), 14)],
    [0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0xaa, 0xbb, 0xcc, 0xdd, 0xaa, 0xbb, 0, 0],
  );
});

Deno.test("dma engine: a FILL across pages keeps the pattern's phase from DST", () => {
  const { mem, ram } = setup();
  run(mem, 0, DMAE_OP_FILL, 0x2ffe, 8, 0x4433_2211);
  assert.equal(waitIdle(mem, 0), DMAE_STATUS_DONE);
  assert.deepEqual([...mem.readBytes(ram(0x2ffe), 8)], [
    0x11,
    0x22,
    0x33,
    0x44,
    0x11,
    0x22,
    0x33,
    0x44,
  ]);
});

Deno.test("dma engine: a transfer runs as steps on the clock; the IOMMU sees page k dmaSetup + k·dmaPage after GO", () => {
  const { mem, clock, port } = setup();
  run(mem, 0, DMAE_OP_FILL, 0x10_0000, 3 * 4096, 0);
  const t0 = clock.now();
  const seenAt = (t: number) => {
    clock.advance(t0 + t - clock.now());
    return port.seen.length;
  };
  const { dmaSetup, dmaPage } = clock.costs;
  assert.equal(seenAt(dmaSetup - 1), 0, "nothing moves at the doorbell");
  assert.equal(seenAt(dmaSetup), 1);
  assert.equal(seenAt(dmaSetup + dmaPage), 2);
  assert.equal(seenAt(dmaSetup + 2 * dmaPage), 3);
  assert.equal(mem.read32(ch(0, DMAE_CH_STATUS)) & DMAE_STATUS_BUSY, DMAE_STATUS_BUSY);
  assert.equal(
    seenAt(dmaSetup + 3 * dmaPage) && mem.read32(ch(0, DMAE_CH_STATUS)),
    DMAE_STATUS_DONE,
  );
});

Deno.test("dma engine: a translation fault ends the command with an error status", async (t) => {
  await t.step("faulting source: read error, address and cause reported", () => {
    const { mem, port } = setup();
    port.faultPages.add(0x102);
    run(mem, 0, DMAE_OP_COPY, 0x40_0000, 4 * 4096, 0x10_0000);
    const st = waitIdle(mem, 0);
    assert.equal(st, DMAE_STATUS_ERROR | (DMAE_ERR_READ << DMAE_STATUS_ERR_SHIFT));
    assert.equal(mem.read32(ch(0, DMAE_CH_XFERRED)), 2 * 4096);
    assert.equal(mem.read32(ch(0, DMAE_CH_ERR_ADDR_LO)), 0x10_2000);
    assert.equal(mem.read32(ch(0, DMAE_CH_ERR_ADDR_HI)), 0);
    assert.equal(mem.read32(ch(0, DMAE_CH_ERR_CAUSE)), 13);
  });
  await t.step("faulting destination: write error", () => {
    const { mem, port } = setup();
    port.faultPages.add(0x401);
    run(mem, 0, DMAE_OP_FILL, 0x40_0000, 4 * 4096, 0x1111_1111);
    assert.equal(
      waitIdle(mem, 0),
      DMAE_STATUS_ERROR | (DMAE_ERR_WRITE << DMAE_STATUS_ERR_SHIFT),
    );
    assert.equal(mem.read32(ch(0, DMAE_CH_ERR_ADDR_LO)), 0x40_1000);
    assert.equal(mem.read32(ch(0, DMAE_CH_ERR_CAUSE)), 15);
  });
  await t.step("ERROR and its code clear with a write of 1", () => {
    const { mem, port } = setup();
    port.faultPages.add(0);
    run(mem, 0, DMAE_OP_FILL, 0, 4096, 0);
    waitIdle(mem, 0);
    mem.write32(ch(0, DMAE_CH_STATUS), DMAE_STATUS_ERROR);
    assert.equal(mem.read32(ch(0, DMAE_CH_STATUS)), 0);
  });
});

Deno.test("dma engine: bad commands and a disabled bus master are errors, not exceptions", () => {
  const { mem, dma } = setup();
  mem.write32(ch(0, DMAE_CH_CMD), DMAE_CMD_GO | 3);
  assert.equal(waitIdle(mem, 0) >>> DMAE_STATUS_ERR_SHIFT, DMAE_ERR_CMD);
  mem.write32(ch(0, DMAE_CH_DST_HI), 0xffff_ffff);
  mem.write32(ch(0, DMAE_CH_CMD), DMAE_CMD_GO | DMAE_OP_FILL);
  assert.equal(waitIdle(mem, 0) >>> DMAE_STATUS_ERR_SHIFT, DMAE_ERR_CMD, "address above 2^53");
  mem.write32(ch(0, DMAE_CH_PASID), DMAE_PASID_PV | 5);
  run(mem, 0, DMAE_OP_FILL, 0, 16, 0);
  assert.equal(waitIdle(mem, 0) >>> DMAE_STATUS_ERR_SHIFT, DMAE_ERR_CMD, "PASID not enabled");
  mem.write32(ch(0, DMAE_CH_PASID), 0);
  dma.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY);
  run(mem, 0, DMAE_OP_FILL, 0, 16, 0);
  assert.equal(waitIdle(mem, 0) >>> DMAE_STATUS_ERR_SHIFT, DMAE_ERR_MASTER);
});

Deno.test("dma engine: EXEC needs PV and Execute Permission Enable, PRIV Privileged Mode Enable; otherwise GO ends with CMD", () => {
  const { mem, dma } = setup({ pasid: true });
  const code = (pasid: number) => {
    mem.write32(ch(0, DMAE_CH_STATUS), DMAE_STATUS_ERROR | DMAE_STATUS_DONE);
    mem.write32(ch(0, DMAE_CH_PASID), pasid);
    run(mem, 0, DMAE_OP_COPY, 0x3000, 16, 0x4000);
    return waitIdle(mem, 0) >>> DMAE_STATUS_ERR_SHIFT;
  };
  dma.fn.configWrite32(dma.fn.pasidCap + 4, PCI_PASID_CTRL_ENABLE << 16);
  assert.equal(code(DMAE_PASID_EXEC), DMAE_ERR_CMD, "EXEC without a PASID");
  assert.equal(code(DMAE_PASID_PV | DMAE_PASID_EXEC | 3), DMAE_ERR_CMD);
  assert.equal(code(DMAE_PASID_PV | DMAE_PASID_PRIV | 3), DMAE_ERR_CMD);
  dma.fn.configWrite32(
    dma.fn.pasidCap + 4,
    (PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC | PCI_PASID_CTRL_PRIV) << 16,
  );
  assert.equal(code(DMAE_PASID_PV | DMAE_PASID_EXEC | DMAE_PASID_PRIV | 3), 0);
});

Deno.test("dma engine: transactions carry the PASID once the capability is enabled", () => {
  const { mem, dma, port } = setup({ pasid: true });
  dma.fn.configWrite32(dma.fn.pasidCap + 4, 1 << 16);
  mem.write32(ch(0, DMAE_CH_PASID), DMAE_PASID_PV | 77);
  run(mem, 0, DMAE_OP_FILL, 0x3000, 16, 0);
  assert.equal(waitIdle(mem, 0), DMAE_STATUS_DONE);
  assert.deepEqual(port.seen.map((r) => r.pid), [77]);
});

Deno.test("dma engine: BUSY lasts the simulated transfer time; writes are ignored meanwhile", () => {
  const { mem, clock, dma } = setup();
  run(mem, 0, DMAE_OP_FILL, 0, 8 * 4096, 0x0101_0101);
  const t0 = clock.now();
  assert.equal(mem.read32(ch(0, DMAE_CH_STATUS)), DMAE_STATUS_BUSY);
  mem.write32(ch(0, DMAE_CH_LEN), 1);
  assert.equal(mem.read32(ch(0, DMAE_CH_LEN)), 8 * 4096);
  clock.advance(clock.costs.dmaSetup + 8 * clock.costs.dmaPage);
  assert.equal(mem.read32(ch(0, DMAE_CH_STATUS)), DMAE_STATUS_DONE);
  assert.ok(clock.now() - t0 >= clock.costs.dmaSetup + 8 * clock.costs.dmaPage);
  assert.equal(mem.read32(BAR + DMAE_REG_CHANNELS), dma.channels);
});

Deno.test("dma engine: completion with IRQ_EN raises the channel's MSI-X vector at the IMSIC", () => {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 1 << 24);
  const clock = new Clock();
  const imsic = new Imsic({ clock });
  mem.addMmio(IMSIC_S_BASE, IMSIC_MMIO_PAGE_SZ, imsic, "imsic");
  imsic.eidelivery = 1;
  imsic.enable(33);
  const got: number[] = [];
  imsic.onMsi = (id) => got.push(id);
  const rc = new RootComplex({ mem, clock });
  const dma = new DmaEngine({ clock, channels: 2 });
  rc.attach(dma.fn, 4);
  dma.fn.configWrite32(PCI_BASE_ADDRESS_0, BAR);
  dma.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  dma.fn.configWrite32(dma.fn.msix!.cap, PCI_MSIX_FLAGS_ENABLE << 16);
  const entry = BAR + DMAE_MSIX_TABLE + 16; // vector 1 = channel 1
  mem.write32(entry, IMSIC_S_BASE);
  mem.write32(entry + 8, 33);
  mem.write32(entry + 12, 0);
  run(mem, 1, DMAE_OP_FILL, TEST_RAM_BASE, 4096, 0xabab_abab, true);
  assert.deepEqual(got, []);
  while (clock.advanceToNextEvent());
  assert.deepEqual(got, [33]);
  assert.equal(mem.read32(ch(1, DMAE_CH_STATUS)), DMAE_STATUS_DONE);
  assert.equal(mem.read32(TEST_RAM_BASE + 4092), 0xabab_abab);
});

Deno.test("dma engine: a channel count outside 1..DMAE_MAX_CHANNELS is a machine-building error, not a clamp", () => {
  const clock = new Clock();
  for (const channels of [0, DMAE_MAX_CHANNELS + 1, 1.5]) {
    assert.throws(() => new DmaEngine({ clock, channels }), RangeError, `${channels}`);
  }
  assert.equal(new DmaEngine({ clock, channels: DMAE_MAX_CHANNELS }).channels, DMAE_MAX_CHANNELS);
});

Deno.test("dma engine: out-of-range register offsets read 0 and ignore writes", () => {
  const { mem } = setup();
  mem.write32(ch(5, DMAE_CH_CMD), DMAE_CMD_GO | DMAE_OP_FILL);
  assert.equal(mem.read32(ch(5, DMAE_CH_STATUS)), 0);
  assert.equal(mem.read32(BAR + 0x80), 0);
  assert.equal(mem.read64(ch(0, DMAE_CH_DST_LO)), 0n);
});

Deno.test("dma engine: dmatest through the RISC-V IOMMU translator with 4 KiB mappings", () => {
  const { mem, alloc, ddt, tr } = testIommuEnv();
  const clock = new Clock();
  const rc = new RootComplex({ mem, clock, translator: tr });
  const dma = new DmaEngine({ clock });
  const bdf = rc.attach(dma.fn, 4);
  const pt = new PageTableBuilder(mem, alloc, "sv39");
  ddt.set(bdf, { ta: encodeDcTa(1), fsc: encodeAtp(RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39, pt.root) });
  const pages = 64, src = 0x1_0000_0000, dst = 0x1_1000_0000;
  for (let i = 0; i < pages; i++) {
    pt.map(0x100_0000 + i * 4096, src + i * 4096);
    if (i !== 40) pt.map(0x200_0000 + i * 4096, dst + i * 4096);
    mem.write32(src + i * 4096 + 8, 0x5000 + i);
  }
  dma.fn.configWrite32(PCI_BASE_ADDRESS_0, BAR);
  dma.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  run(mem, 0, DMAE_OP_COPY, 0x200_0000, 40 * 4096, 0x100_0000);
  assert.equal(waitIdle(mem, 0), DMAE_STATUS_DONE);
  for (let i = 0; i < 40; i++) assert.equal(mem.read32(dst + i * 4096 + 8), 0x5000 + i);
  mem.write32(ch(0, DMAE_CH_STATUS), DMAE_STATUS_DONE);
  run(mem, 0, DMAE_OP_COPY, 0x200_0000, pages * 4096, 0x100_0000);
  assert.equal(
    waitIdle(mem, 0),
    DMAE_STATUS_ERROR | (DMAE_ERR_WRITE << DMAE_STATUS_ERR_SHIFT),
    "page 40 of the destination is not mapped",
  );
  assert.equal(mem.read32(ch(0, DMAE_CH_ERR_ADDR_LO)), 0x200_0000 + 40 * 4096);
  assert.equal(mem.read32(ch(0, DMAE_CH_ERR_CAUSE)), 15, "store/AMO page fault");
  assert.equal(mem.read32(ch(0, DMAE_CH_XFERRED)), 40 * 4096);
});

Deno.test("dma engine: with ATS, pages come from ATS completions; an unmapped one is denied", () => {
  const { mem, alloc, ddt, tr } = testIommuEnv();
  const clock = new Clock();
  const rc = new RootComplex({ mem, clock, translator: tr });
  const dma = new DmaEngine({ clock, ats: true });
  const bdf = rc.attach(dma.fn, 4);
  const pt = new PageTableBuilder(mem, alloc, "sv39");
  ddt.set(bdf, {
    tc: RISCV_IOMMU_DC_TC_EN_ATS,
    ta: encodeDcTa(1),
    fsc: encodeAtp(RISCV_IOMMU_DC_FSC_IOSATP_MODE_SV39, pt.root),
  });
  for (let i = 0; i < 4; i++) pt.map(0x300_0000 + i * 4096, 0x1_2000_0000 + i * 4096);
  dma.fn.configWrite32(PCI_BASE_ADDRESS_0, BAR);
  dma.fn.configWrite32(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  dma.fn.configWrite32(dma.fn.atsCap + 4, PCI_ATS_CTRL_ENABLE << 16);
  run(mem, 0, DMAE_OP_FILL, 0x300_0000, 4 * 4096, 0x6666_6666);
  assert.equal(waitIdle(mem, 0), DMAE_STATUS_DONE);
  assert.equal(mem.read32(0x1_2000_0000 + 3 * 4096 + 8), 0x6666_6666);
  assert.equal(dma.fn.atc!.entries, 4, "one ATC entry per 4 KiB translation");
  mem.write32(ch(0, DMAE_CH_STATUS), DMAE_STATUS_DONE);
  run(mem, 0, DMAE_OP_FILL, 0x300_0000, 5 * 4096, 0);
  assert.equal(waitIdle(mem, 0) >>> DMAE_STATUS_ERR_SHIFT, DMAE_ERR_ATS);
  assert.equal(mem.read32(ch(0, DMAE_CH_ERR_ADDR_LO)), 0x300_4000);
});
