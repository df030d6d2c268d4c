import assert from "node:assert/strict";
import type { InboundRequest, TranslationResult } from "@iommu-lab/hw";
import {
  RISCV_IOMMU_HPMEVENT_TLB_MISS,
  RISCV_IOMMU_HPMEVENT_URQ,
  RISCV_IOMMU_IOATC_BASE,
  RISCV_IOMMU_IOHPMEVT_DV_GSCV,
  RISCV_IOMMU_REG_DTISR,
  RISCV_IOMMU_REG_IOCOUNTINH,
  RISCV_IOMMU_REG_IOHPMCTR,
  RISCV_IOMMU_REG_IOHPMEVT,
  SPACEMIT_T100_IOATC_TLB_FILL,
  SPACEMIT_T100_IOATC_TLB_HIT,
  SPACEMIT_T100_IOATC_TLB_MISS,
  SPACEMIT_T100_IOATS_DDTC_HIT,
  SPACEMIT_T100_IOATS_DDTC_MISS,
} from "@iommu-lab/hw/regs";
import {
  DeviceTree,
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
  of_property_read_string_array,
  of_property_read_u32,
  of_property_read_u32_array,
} from "@iommu-lab/kernel";
import { Machine, VIRT_IOMMU_SYS_BASE } from "./mod.ts";

const BASE = VIRT_IOMMU_SYS_BASE;
const DMA0_RID = 2 << 3; // 00:02.0

function node(m: Machine, path: string) {
  return DeviceTree.fromBlob(m.fdt).findNode(path)!;
}

/** Copies `pages` pages there and back on dma0chan0 through a fresh mapping. */
function copy(m: Machine, pages: number) {
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(Math.ceil(Math.log2(2 * pages)));
  const len = pages * 4096;
  const iova = dma_map_page(chan.dev, buf, 0, 2 * len, DMA_BIDIRECTIONAL);
  assert.equal(chan.memcpy(iova + len, iova, len).status, "complete");
  assert.equal(chan.memcpy(iova, iova + len, len).status, "complete");
  dma_unmap_page(chan.dev, iova, 2 * len, DMA_BIDIRECTIONAL);
}

Deno.test("machine: the SpacemiT T100 variant boots from the node the v5 binding describes", () => {
  const m = Machine.boot({ t100: { ioatcs: 2 } });
  const iommu = node(m, "/soc/iommu@3010000");
  assert.deepEqual(of_property_read_string_array(iommu, "compatible"), [
    "spacemit,k3-t100",
    "spacemit,t100",
    "riscv,iommu",
  ]);
  assert.deepEqual(of_property_read_u32_array(iommu, "reg"), [0, BASE, 0, 0x3000]);
  assert.deepEqual(
    of_property_read_u32_array(iommu, "interrupts"),
    [36, 4, 37, 4, 38, 4, 39, 4, 40, 4, 41, 4],
  );
  assert.deepEqual(of_property_read_string_array(iommu, "interrupt-names"), [
    "civ",
    "fiv",
    "piv",
    "ioats-pmiv",
    "ioatc0-pmiv",
    "ioatc1-pmiv",
  ]);
  assert.ok(m.dmesg.some((l) => l.endsWith("riscv,iommu 3010000.iommu: using MSIs")));
  assert.equal(m.silicon.t100!.ioatcs.length, 2);
  assert.equal(m.silicon.rc.translator, m.silicon.t100, "the masters talk to the T100");
  copy(m, 2);

  const big = Machine.boot({ t100: { ioatcs: 64 } });
  assert.equal(
    of_property_read_u32_array(node(big, "/soc/iommu@3010000"), "interrupts")?.length,
    136,
  );
  assert.equal(
    of_property_read_u32(node(big, "/soc/interrupt-controller@d000000"), "riscv,num-sources"),
    104,
    "the APLIC grows to IOATC 63's source",
  );
  assert.equal(
    of_property_read_u32(
      node(Machine.boot(), "/soc/interrupt-controller@d000000"),
      "riscv,num-sources",
    ),
    96,
  );
});

Deno.test("machine: the T100's registers on the bus; IOATC 0 counts dma0chan0's requests as they reached it", () => {
  const m = Machine.boot({ t100: { ioatcs: 2 } });
  const { mem, rc } = m.silicon;
  assert.equal(mem.read32(BASE + RISCV_IOMMU_REG_DTISR(0)), 0b0101);
  const ioatc0 = BASE + RISCV_IOMMU_IOATC_BASE(0);
  mem.write32(ioatc0 + RISCV_IOMMU_REG_IOCOUNTINH, 0xffff_ffff);
  assert.equal(mem.read32(ioatc0 + RISCV_IOMMU_REG_IOCOUNTINH), 0xffff_ffff, "31 counters and CY");
  const events = [
    RISCV_IOMMU_HPMEVENT_URQ,
    RISCV_IOMMU_HPMEVENT_TLB_MISS,
    SPACEMIT_T100_IOATC_TLB_HIT,
    SPACEMIT_T100_IOATC_TLB_MISS,
    SPACEMIT_T100_IOATC_TLB_FILL,
  ];
  // One filter for all counters: device 00:02.0.
  const filter = RISCV_IOMMU_IOHPMEVT_DV_GSCV | BigInt(DMA0_RID) << 36n;
  events.forEach((id, i) =>
    mem.write64(ioatc0 + RISCV_IOMMU_REG_IOHPMEVT(i + 1), BigInt(id) | filter)
  );
  mem.write64(BASE + RISCV_IOMMU_REG_IOHPMEVT(1), BigInt(SPACEMIT_T100_IOATS_DDTC_MISS));
  mem.write64(BASE + RISCV_IOMMU_REG_IOHPMEVT(2), BigInt(SPACEMIT_T100_IOATS_DDTC_HIT));
  mem.write32(ioatc0 + RISCV_IOMMU_REG_IOCOUNTINH, 1);
  mem.write32(BASE + RISCV_IOMMU_REG_IOCOUNTINH, 1);

  let seen = 0;
  const t100 = rc.translator!;
  rc.translator = {
    translate(req: InboundRequest, res: TranslationResult) {
      if (req.deviceId === DMA0_RID && req.kind === 0) seen++;
      t100.translate(req, res);
    },
  };
  copy(m, 4);
  const ctr = (n: number) => Number(mem.read64(ioatc0 + RISCV_IOMMU_REG_IOHPMCTR(n)));
  const [urq, miss, hit, vmiss, fill] = events.map((_, i) => ctr(i + 1));
  assert.ok(seen >= 18, `${seen} requests: twice 4 reads, 4 writes and the completion MSI`);
  assert.ok(hit >= 9, `${hit} hits: the way back finds every page cached`);
  assert.equal(urq, seen);
  assert.equal(hit + vmiss, urq);
  assert.deepEqual([miss, fill], [vmiss, vmiss]);
  const ddtc = (n: number) => Number(mem.read64(BASE + RISCV_IOMMU_REG_IOHPMCTR(n)));
  assert.equal(ddtc(1) + ddtc(2), vmiss, "the IOATS looked up a device context per IOATC miss");
});

Deno.test("machine: an IOATC's overflow drives its PMIV wire, APLIC source 40 + i", () => {
  const m = Machine.boot({ t100: { ioatcs: 2 }, trace: true });
  const ioatc0 = BASE + RISCV_IOMMU_IOATC_BASE(0);
  const { mem } = m.silicon;
  mem.write64(ioatc0 + RISCV_IOMMU_REG_IOHPMCTR(1), ~0n);
  mem.write64(ioatc0 + RISCV_IOMMU_REG_IOHPMEVT(1), BigInt(RISCV_IOMMU_HPMEVENT_URQ));
  mem.write32(ioatc0 + RISCV_IOMMU_REG_IOCOUNTINH, 1);
  copy(m, 1);
  assert.ok(m.trace.events.some((e) => e.name === "wire 40 high"));
  assert.ok(!m.trace.events.some((e) => e.name === "wire 41 high"));
});

Deno.test("machine: t100.ioatcHpm sizes the IOATCs' HPM blocks (counters, widths)", () => {
  const m = Machine.boot({ t100: { ioatcs: 2, ioatcHpm: { counters: 4, counterBits: 16 } } });
  const { mem } = m.silicon;
  for (const i of [0, 1]) {
    const page = BASE + RISCV_IOMMU_IOATC_BASE(i);
    mem.write32(page + RISCV_IOMMU_REG_IOCOUNTINH, 0xffff_ffff);
    assert.equal(mem.read32(page + RISCV_IOMMU_REG_IOCOUNTINH), 0b11111, "CY and 4 counters");
    mem.write64(page + RISCV_IOMMU_REG_IOHPMCTR(1), ~0n);
    assert.equal(mem.read64(page + RISCV_IOMMU_REG_IOHPMCTR(1)), 0xffffn);
  }
  mem.write64(BASE + RISCV_IOMMU_REG_IOHPMCTR(1), ~0n);
  assert.equal(
    mem.read64(BASE + RISCV_IOMMU_REG_IOHPMCTR(1)),
    0xffff_ffff_ffff_ffffn,
    "not the IOATS",
  );
});

Deno.test("machine: a T100 is a platform IOMMU with its four IOATS wires and at most 64 IOATCs", () => {
  for (
    const opts of [
      { t100: {}, iommuBus: "pci" as const },
      { t100: {}, iommu: "none" as const },
      { t100: {}, iommuIrqs: 1 },
      { t100: { ioatcs: 65 } },
      { t100: { ioatcs: 1.5 } },
    ]
  ) {
    assert.throws(() => Machine.boot(opts), RangeError, JSON.stringify(opts));
  }
  assert.equal(Machine.boot().silicon.t100, null, "the plain machine has none");
});
