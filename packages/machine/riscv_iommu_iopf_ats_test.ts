// ATS end to end: the DMA engine's ATC caches the translations the IOMMU gives it; the series
// follows each IOTLB invalidation with an ATS.INVAL to the function before the IOFENCE.C, so an
// unmapped or remapped page is never reached through a stale entry; and a function that never
// completes an invalidation surfaces as cmd_to, and loses its ATS before the unmap returns.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACC_WRITE,
  ATS_INVAL_TIMEOUT_NS,
  CPL_UR,
  newRequest,
  newResult,
  type PciFunction,
  REQ_TRANSLATED,
  type TranslationResult,
  XLATE_FAULT,
  XLATE_OK,
} from "@iommu-lab/hw";
import {
  DMAE_ERR_PRI_INVALID,
  DMAE_ERR_WRITE,
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  RISCV_IOMMU_CQCSR_CMD_TO,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_CQH,
  RISCV_IOMMU_REG_CQT,
} from "@iommu-lab/hw/regs";
import {
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
  pci_write_config_word,
  type PciDev,
} from "@iommu-lab/kernel";
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
import type { Machine } from "@iommu-lab/machine";
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

/** A machine whose engines are attached to one paging domain of the test's own, ready to map. */
function pagingMachine(engines = 1) {
  // The domain maps no MSI doorbell: completions go around the IOMMU.
  const { m, chan, pdev } = boot({ msiThroughIommu: false, dmaEngines: engines });
  const domain = iommu_paging_domain_alloc(pdev);
  for (const dev of m.dmaDevices) iommu_attach_device(domain, dev);
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

/** The pages and slab objects the kernel holds. */
function held(m: Machine) {
  return { pages: m.kernel.pages.allocatedPages, objects: m.kernel.slab.allocations() };
}

/**
 * A Translated write to `pa` from `fn`, as a function still using an ATC entry would send it:
 * the IOMMU's answer.
 */
function translatedWrite(m: Machine, fn: PciFunction, pa: number): TranslationResult {
  const res = newResult();
  m.silicon.rc.inbound(
    fn,
    newRequest({ kind: REQ_TRANSLATED, access: ACC_WRITE, iovaLo: pa }),
    res,
  );
  return res;
}

const RECOVERY = /ATS invalidation timed out/;

Deno.test("ATS invalidation timeout end to end (spec §3.1.2, §3.1.4): a function that stops completing invalidations makes the unmap's IOFENCE.C end in cmd_to; in that sync, before the page goes back, the driver takes its ATS and PRI away (one dmesg line); the unmapped IOVA is out of its reach — its DMA there and the Translated write a stale ATC would make are refused with Unsupported Request — while the other engine keeps its ATS, nothing wedges and nothing leaks", () => {
  const { m, chan, pdev } = boot({ dmaEngines: 2 });
  const [fn, fn1] = m.silicon.dmaEngines.map((e) => e.fn);
  const [chan1, pdev1] = [m.dmaChannels()[4], m.dmaDevices[1]];
  const iommu = m.silicon.iommu!;
  const clock = m.silicon.clock;
  const mem = m.kernel.mem;
  const cycle = (dev: PciDev, c: typeof chan) => {
    const pg = m.kernel.pages.alloc(0);
    const va = dma_map_page(dev, pg, 0, PAGE, DMA_BIDIRECTIONAL);
    const tx = c.memset(va, 0x5a5a_5a5a, PAGE);
    const t0 = clock.now();
    const cmds = issued(m, () => dma_unmap_page(dev, va, PAGE, DMA_BIDIRECTIONAL));
    const took = clock.now() - t0;
    const data = mem.read32(pg + 64);
    m.kernel.pages.free(pg, 0);
    return { tx, cmds: cmds.map((c) => c.split(" ")[0]), took, data };
  };
  // The IOVA allocator's caches and the page tables settle on the first round trip.
  cycle(pdev, chan);
  cycle(pdev1, chan1);
  const before = held(m);

  const page = m.kernel.pages.alloc(0);
  const iova = dma_map_page(pdev, page, 0, PAGE, DMA_BIDIRECTIONAL);
  assert.equal(chan.memset(iova, 0x1111_1111, PAGE).status, "complete");
  assert.equal(fn.atc!.lookup(-1, iova), true);
  assert.equal(translatedWrite(m, fn, page).status, XLATE_OK, "ATS on: Translated requests pass");
  const pscid = (iommu_get_domain_for_dev(pdev) as RiscvIommuDomain).pscid;

  fn.atsInvalidateNs = Infinity; // the function breaks
  const t0 = clock.now();
  const cmds = issued(m, () => dma_unmap_page(pdev, iova, PAGE, DMA_BIDIRECTIONAL));
  const waited = clock.now() - t0;
  assert.deepEqual(cmds, [
    `IOTINVAL.VMA pscid=${pscid} addr=0x${iova.toString(16)}`,
    `ATS.INVAL rid=0x10 range=0x${iova.toString(16)}+0x1000`,
    "IOFENCE.C pr pw", // cmd_to, then completes once the CQ thread cleared it
    "IODIR.INVAL_DDT did=0x10", // the context without EN_ATS, EN_PRI, PRPR
    `IOTINVAL.VMA pscid=${pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.ok(waited >= ATS_INVAL_TIMEOUT_NS && waited < 90e9, `${waited} ns: one timeout`);
  assert.deepEqual(m.kernel.dmesg.grep(/Queue #0 error|ATS invalidation/), [
    "riscv,iommu 3010000.iommu: Queue #0 error; fault:0 timeout:1 illegal:0 fence_w_ip:0",
    "riscv,iommu 3010000.iommu: 0000:00:02.0 (devid 0x10): ATS invalidation timed out; ATS and PRI disabled, translated requests blocked",
  ]);
  assert.deepEqual(m.kernel.dmesg.grep("command execution timeout"), []);
  assert.equal(iommu.read32(RISCV_IOMMU_REG_CQCSR) & RISCV_IOMMU_CQCSR_CMD_TO, 0);
  assert.equal(iommu.read32(RISCV_IOMMU_REG_CQH), iommu.read32(RISCV_IOMMU_REG_CQT));
  assert.deepEqual([fn.atsEnabled, fn.priEnabled, fn.atc!.lookup(-1, iova)], [false, false, false]);
  m.kernel.pages.free(page, 0); // what the unmap was for

  // Out of reach: the engine's DMA there faults in the IOMMU's page table, and a Translated
  // write, as a function that kept its ATC entry would send, is no longer allowed (EN_ATS 0).
  const tx = chan.memset(iova, 0x2222_2222, PAGE);
  assert.deepEqual(
    [tx.status, tx.error, tx.errCause, tx.errCpl, tx.xferred],
    ["error", DMAE_ERR_WRITE, 15, CPL_UR, 0],
  );
  const res = translatedWrite(m, fn, page);
  assert.deepEqual([res.status, res.cause, res.completion], [XLATE_FAULT, 260, CPL_UR]);
  assert.equal(mem.read32(page), 0x1111_1111, "the freed page was not written");
  // ATS Enable set again behind the driver's back: the engine's Translation Requests get UR.
  pci_write_config_word(pdev, pdev.atsCap + PCI_ATS_CTRL, PCI_ATS_CTRL_ENABLE);
  const p2 = m.kernel.pages.alloc(0);
  const va2 = dma_map_page(pdev, p2, 0, PAGE, DMA_BIDIRECTIONAL);
  const refused = chan.memset(va2, 1, PAGE);
  assert.deepEqual(
    [refused.status, refused.error, refused.errCause, refused.errCpl],
    ["error", DMAE_ERR_WRITE, 260, CPL_UR],
  );
  pci_write_config_word(pdev, pdev.atsCap + PCI_ATS_CTRL, 0);
  dma_unmap_page(pdev, va2, PAGE, DMA_BIDIRECTIONAL);
  m.kernel.pages.free(p2, 0);

  // Nothing wedges: the engine's DMA goes on untranslated, and its unmaps need no ATS.INVAL.
  const again = cycle(pdev, chan);
  assert.deepEqual([again.tx.status, again.data], ["complete", 0x5a5a_5a5a]);
  assert.deepEqual(again.cmds, ["IOTINVAL.VMA", "IOFENCE.C"]);
  assert.ok(again.took < 1e6, `${again.took} ns`);
  // The other engine keeps ATS: its ATC fills, and its invalidations complete at once.
  const other = cycle(pdev1, chan1);
  assert.deepEqual([other.tx.status, other.data, fn1.atsEnabled], ["complete", 0x5a5a_5a5a, true]);
  assert.deepEqual(other.cmds, ["IOTINVAL.VMA", "ATS.INVAL", "IOFENCE.C"]);
  assert.ok(other.took < 1e6, `${other.took} ns`);
  assert.equal(m.kernel.dmesg.grep(RECOVERY).length, 1);
  assert.deepEqual(held(m), before, "nothing leaked");
});

Deno.test("ATS invalidation timeout behind a fence that covered two engines of one domain: ATS.INVAL and IOFENCE.C pairs (spec §3.1.4) find the broken one; only it loses ATS, the other keeps using its ATC", () => {
  const { m, chan, domain } = pagingMachine(2);
  const [fn, fn1] = m.silicon.dmaEngines.map((e) => e.fn);
  const chan1 = m.dmaChannels()[4];
  const pages = [m.kernel.pages.alloc(0), m.kernel.pages.alloc(0)];
  iommu_map(domain, IOVA, pages[0], PAGE, IOMMU_READ | IOMMU_WRITE);
  iommu_map(domain, IOVA + PAGE, pages[1], PAGE, IOMMU_READ | IOMMU_WRITE);
  assert.equal(chan.memset(IOVA, 1, PAGE).status, "complete");
  assert.equal(chan1.memset(IOVA, 1, PAGE).status, "complete");
  fn.atsInvalidateNs = Infinity;
  const p = (domain as RiscvIommuDomain).pscid;
  const t0 = m.silicon.clock.now();
  assert.deepEqual(issued(m, () => iommu_unmap(domain, IOVA, PAGE)), [
    `IOTINVAL.VMA pscid=${p} addr=0x100000`,
    "ATS.INVAL rid=0x10 range=0x100000+0x1000",
    "ATS.INVAL rid=0x18 range=0x100000+0x1000",
    "IOFENCE.C pr pw", // cmd_to: one of them
    "ATS.INVAL rid=0x18 all",
    "IOFENCE.C pr pw", // completes: not this one
    "ATS.INVAL rid=0x10 all",
    "IOFENCE.C pr pw", // cmd_to: this one
    "IODIR.INVAL_DDT did=0x10",
    `IOTINVAL.VMA pscid=${p}`,
    "IOFENCE.C pr pw",
  ]);
  const waited = m.silicon.clock.now() - t0;
  assert.ok(waited >= 2 * ATS_INVAL_TIMEOUT_NS && waited < 180e9, `${waited} ns: two timeouts`);
  assert.deepEqual(m.kernel.dmesg.grep(RECOVERY).map((l) => l.split(": ")[1]), [
    "0000:00:02.0 (devid 0x10)",
  ]);
  assert.deepEqual([fn.atsEnabled, fn1.atsEnabled], [false, true]);
  assert.equal(chan1.memset(IOVA + PAGE, 2, PAGE).status, "complete");
  assert.equal(fn1.atc!.lookup(-1, IOVA + PAGE), true, "the other engine's ATC fills again");
  assert.deepEqual(chan.memset(IOVA, 3, PAGE).errCpl, CPL_UR, "unmapped: refused");
  assert.deepEqual(issued(m, () => iommu_unmap(domain, IOVA + PAGE, PAGE)), [
    `IOTINVAL.VMA pscid=${p} addr=0x101000`,
    "ATS.INVAL rid=0x18 range=0x101000+0x1000",
    "IOFENCE.C pr pw",
  ]);
  assert.equal(fn1.atc!.lookup(-1, IOVA + PAGE), false);
});

Deno.test("ATS invalidation timeout at the first attach: a function broken from the start times the boot's sync out once and never gets to use ATS; its DMA goes through the IOMMU untranslated and its unmaps wait for no ATS.INVAL", () => {
  const { m, chan, pdev } = boot({ dmaAts: { invalidateNs: Infinity } });
  const clock = m.silicon.clock;
  assert.ok(clock.now() >= ATS_INVAL_TIMEOUT_NS, "the boot waited one timeout");
  assert.deepEqual(m.kernel.dmesg.grep(RECOVERY).length, 1);
  assert.equal(m.silicon.dmaEngines[0].fn.atsEnabled, false);
  const page = m.kernel.pages.alloc(0);
  const iova = dma_map_page(pdev, page, 0, PAGE, DMA_BIDIRECTIONAL);
  assert.equal(chan.memset(iova, 0x1111_1111, PAGE).status, "complete");
  assert.equal(m.kernel.mem.read32(page), 0x1111_1111);
  assert.equal(m.silicon.dmaEngines[0].fn.atc!.lookup(-1, iova), false, "nothing cached");
  const t0 = clock.now();
  const cmds = issued(m, () => dma_unmap_page(pdev, iova, PAGE, DMA_BIDIRECTIONAL));
  assert.deepEqual(cmds.map((c) => c.split(" ")[0]), ["IOTINVAL.VMA", "IOFENCE.C"]);
  assert.ok(clock.now() - t0 < 1e6);
  assert.equal(m.kernel.dmesg.grep("Queue #0 error").length, 1);
});
