// ATS end to end: the DMA engine's ATC caches the translations the IOMMU gives it; the series
// follows each IOTLB invalidation with an ATS.INVAL to the function before the IOFENCE.C, so an
// unmapped or remapped page is never reached through a stale entry; and a function that never
// completes an invalidation surfaces as cmd_to.
import assert from "node:assert/strict";
import fc from "fast-check";
import { ATS_INVAL_TIMEOUT_NS } from "@iommu-lab/hw";
import {
  DMAE_ERR_PRI_INVALID,
  RISCV_IOMMU_CQCSR_CMD_TO,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
  RISCV_IOMMU_REG_CQT,
} from "@iommu-lab/hw/regs";
import { DMA_BIDIRECTIONAL, dma_map_page, dma_unmap_page } from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_get_domain_for_dev,
  iommu_map,
  iommu_paging_domain_alloc,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
} from "@iommu-lab/iommu";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { boot, issued, PAGE, priErrors } from "./_iopf_test_fixture.ts";

Deno.test("ATS (spec §3.1.4, IOMMU PCIe ATS commands): the engine's ATC holds its translations; dma_unmap_page() issues IOTINVAL.VMA per page, one ATS.INVAL of the range, then IOFENCE.C, which waits for the function's completion; the entries are gone and a DMA there is refused", () => {
  const { m, chan, pdev } = boot();
  const atc = m.silicon.dmaEngines[0].fn.atc!;
  const pscid = (iommu_get_domain_for_dev(pdev) as RiscvIommuDomain).pscid;
  const page = m.kernel.pages.alloc(1);
  m.kernel.mem.write32(page, 0x5eed_0001);
  const iova = dma_map_page(pdev, page, 0, 2 * PAGE, DMA_BIDIRECTIONAL);
  assert.equal(chan.memcpy(iova + PAGE, iova, PAGE).status, "complete");
  assert.deepEqual([atc.lookup(-1, iova), atc.lookup(-1, iova + PAGE)], [true, true]);

  const t0 = m.silicon.clock.now();
  const cmds = issued(m, () => dma_unmap_page(pdev, iova, 2 * PAGE, DMA_BIDIRECTIONAL));
  const hex = (v: number) => `0x${v.toString(16)}`;
  assert.deepEqual(cmds, [
    `IOTINVAL.VMA pscid=${pscid} addr=${hex(iova)}`,
    `IOTINVAL.VMA pscid=${pscid} addr=${hex(iova + PAGE)}`,
    `ATS.INVAL rid=0x10 range=${hex(iova)}+0x2000`,
    "IOFENCE.C pr pw",
  ]);
  assert.ok(m.silicon.clock.now() - t0 >= m.silicon.clock.costs.atsInvalidate, "fenced");
  assert.deepEqual([atc.lookup(-1, iova), atc.lookup(-1, iova + PAGE)], [false, false]);

  const tx = chan.memcpy(iova + PAGE, iova, PAGE);
  assert.deepEqual([tx.status, tx.error, tx.xferred], ["error", DMAE_ERR_PRI_INVALID, 0]);
  assert.equal(priErrors(pdev), 0);
});

/** A machine whose engine is attached to a paging domain of the test's own, ready to map. */
function pagingMachine() {
  // The domain maps no MSI doorbell: completions go around the IOMMU.
  const { m, chan, pdev } = boot({ msiThroughIommu: false });
  const domain = iommu_paging_domain_alloc(pdev);
  iommu_attach_device(domain, pdev);
  return { m, chan, pdev, domain, atc: m.silicon.dmaEngines[0].fn.atc! };
}

const IOVA = 0x10_0000;

Deno.test("ATS: a page unmapped and mapped again elsewhere is reached at its new page; the old one, which the ATC had cached, is never written again", () => {
  const { m, chan, domain, atc } = pagingMachine();
  const [a, b] = [m.kernel.pages.alloc(0), m.kernel.pages.alloc(0)];
  iommu_map(domain, IOVA, a, PAGE, IOMMU_READ | IOMMU_WRITE);
  assert.equal(chan.memset(IOVA, 0xaaaa_aaaa, PAGE).status, "complete");
  assert.equal(atc.lookup(-1, IOVA), true);
  assert.deepEqual(issued(m, () => iommu_unmap(domain, IOVA, PAGE)), [
    `IOTINVAL.VMA pscid=${(domain as RiscvIommuDomain).pscid} addr=0x100000`,
    "ATS.INVAL rid=0x10 range=0x100000+0x1000",
    "IOFENCE.C pr pw",
  ]);
  iommu_map(domain, IOVA, b, PAGE, IOMMU_READ | IOMMU_WRITE);
  assert.equal(chan.memset(IOVA, 0xbbbb_bbbb, PAGE).status, "complete");
  assert.equal(m.kernel.mem.read32(b + 64), 0xbbbb_bbbb);
  assert.equal(m.kernel.mem.read32(a + 64), 0xaaaa_aaaa, "the old page untouched");
});

type AtsOp =
  | { op: "map"; slot: number; page: number; write: boolean }
  | { op: "unmap"; slot: number; count: number }
  | { op: "write"; slot: number; pattern: number }
  | { op: "read"; slot: number };

const SLOTS = 4;
const PAGES = 4;

const atsOp: fc.Arbitrary<AtsOp> = fc.oneof(
  fc.record({
    op: fc.constant("map" as const),
    slot: fc.nat(SLOTS - 1),
    page: fc.nat(PAGES - 1),
    write: fc.boolean(),
  }),
  fc.record({
    op: fc.constant("unmap" as const),
    slot: fc.nat(SLOTS - 1),
    count: fc.integer({ min: 1, max: 3 }),
  }),
  fc.record({
    op: fc.constant("write" as const),
    slot: fc.nat(SLOTS - 1),
    pattern: fc.integer({ min: 1, max: 0xffff_ffff }),
  }),
  fc.record({ op: fc.constant("read" as const), slot: fc.nat(SLOTS - 1) }),
);

const PROP_RUNS = Number(Deno.env.get("IOPF_ATS_PROP_RUNS") ?? 16);
const PROP_SEED = Number(Deno.env.get("IOPF_ATS_PROP_SEED") ?? 0x1f0f);

Deno.test("ATS property: over random map/unmap/DMA sequences the engine never reaches a page through a stale translation (IOPF_ATS_PROP_RUNS, IOPF_ATS_PROP_SEED)", () => {
  fc.assert(
    fc.property(fc.array(atsOp, { minLength: 1, maxLength: 32, size: "max" }), (ops) => {
      const { m, chan, domain } = pagingMachine();
      const mem = m.kernel.mem;
      const pages = Array.from({ length: PAGES }, () => m.kernel.pages.alloc(0));
      // The engine reads into a scratch page mapped read-write for the whole run.
      const scratch = m.kernel.pages.alloc(0);
      const scratchIova = IOVA + SLOTS * PAGE;
      iommu_map(domain, scratchIova, scratch, PAGE, IOMMU_READ | IOMMU_WRITE);
      const content = new Array<number>(PAGES).fill(0);
      const slots: ({ page: number; write: boolean } | null)[] = new Array(SLOTS).fill(null);
      const iova = (slot: number) => IOVA + slot * PAGE;
      for (const o of ops) {
        if (o.op === "map") {
          if (slots[o.slot] !== null) continue;
          iommu_map(
            domain,
            iova(o.slot),
            pages[o.page],
            PAGE,
            IOMMU_READ | (o.write ? IOMMU_WRITE : 0),
          );
          slots[o.slot] = { page: o.page, write: o.write };
        } else if (o.op === "unmap") {
          // iommu_unmap() stops at the first page that is not mapped, as Linux's does.
          let n = 0;
          while (n < o.count && o.slot + n < SLOTS && slots[o.slot + n] !== null) n++;
          const size = Math.min(o.count, SLOTS - o.slot) * PAGE;
          assert.equal(iommu_unmap(domain, iova(o.slot), size), n * PAGE);
          for (let s = o.slot; s < o.slot + n; s++) slots[s] = null;
        } else if (o.op === "write") {
          const tx = chan.memset(iova(o.slot), o.pattern, PAGE);
          const to = slots[o.slot];
          if (to?.write) {
            assert.equal(tx.status, "complete");
            content[to.page] = o.pattern;
          } else {
            assert.deepEqual([tx.status, tx.error, tx.xferred], ["error", DMAE_ERR_PRI_INVALID, 0]);
          }
        } else {
          mem.write32(scratch, 0);
          const tx = chan.memcpy(scratchIova, iova(o.slot), PAGE);
          const from = slots[o.slot];
          if (from !== null) {
            assert.equal(tx.status, "complete");
            assert.equal(mem.read32(scratch), content[from.page]);
          } else {
            assert.deepEqual([tx.status, tx.error, tx.xferred], ["error", DMAE_ERR_PRI_INVALID, 0]);
          }
        }
        for (let p = 0; p < PAGES; p++) {
          assert.equal(mem.read32(pages[p]), content[p], `page ${p} after ${JSON.stringify(o)}`);
        }
      }
    }),
    { numRuns: PROP_RUNS, seed: PROP_SEED },
  );
});

Deno.test("ATS: a function that never completes an invalidation (invalidateNs: Infinity) surfaces as cmd_to at the IOFENCE.C; the driver logs and clears it, as upstream, and the queue runs on — nothing wedges, each sync waits the 60 s timeout; the function keeps its stale translation (no recovery upstream)", () => {
  const { m, chan, pdev } = boot({ dmaAts: { invalidateNs: Infinity } });
  const iommu = m.silicon.iommu!;
  const clock = m.silicon.clock;
  // The attach at boot already flushed the whole ATC once: the boot waited for it too.
  assert.ok(clock.now() >= ATS_INVAL_TIMEOUT_NS);
  const timeouts = () => m.kernel.dmesg.grep("Queue #0 error");
  assert.deepEqual(timeouts(), [
    "riscv,iommu 3010000.iommu: Queue #0 error; fault:0 timeout:1 illegal:0 fence_w_ip:0",
  ]);

  const page = m.kernel.pages.alloc(0);
  const iova = dma_map_page(pdev, page, 0, PAGE, DMA_BIDIRECTIONAL);
  assert.equal(chan.memset(iova, 0x1111_1111, PAGE).status, "complete");
  const t0 = clock.now();
  const cmds = issued(m, () => dma_unmap_page(pdev, iova, PAGE, DMA_BIDIRECTIONAL));
  const waited = clock.now() - t0;
  assert.deepEqual(cmds.map((c) => c.split(" ")[0]), ["IOTINVAL.VMA", "ATS.INVAL", "IOFENCE.C"]);
  assert.ok(
    waited >= ATS_INVAL_TIMEOUT_NS && waited < 90e9,
    `the sync waited ${waited} ns: the timeout, not the driver's 90 s`,
  );
  assert.equal(timeouts().length, 2);
  assert.deepEqual(m.kernel.dmesg.grep("command execution timeout"), []);
  assert.equal(iommu.read32(RISCV_IOMMU_REG_CQCSR) & RISCV_IOMMU_CQCSR_CMD_TO, 0, "cleared");
  assert.equal(iommu.read32(RISCV_IOMMU_REG_CQH), iommu.read32(RISCV_IOMMU_REG_CQT), "drained");

  // Nothing recovers the function: its ATC still maps the unmapped IOVA, and a DMA through it
  // lands in the page the driver gave back.
  assert.equal(m.silicon.dmaEngines[0].fn.atc!.lookup(-1, iova), true);
  assert.equal(chan.memset(iova, 0x2222_2222, PAGE).status, "complete");
  assert.equal(m.kernel.mem.read32(page), 0x2222_2222);

  // The system goes on: another map and unmap time out the same way and complete.
  const again = dma_map_page(pdev, page, 0, PAGE, DMA_BIDIRECTIONAL);
  dma_unmap_page(pdev, again, PAGE, DMA_BIDIRECTIONAL);
  assert.equal(timeouts().length, 3);
  assert.equal(iommu.read32(RISCV_IOMMU_REG_CQH), iommu.read32(RISCV_IOMMU_REG_CQT));
});
