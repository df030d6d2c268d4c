// The page-request queue end to end, where the IOMMU answers on its own: a queue too small for a
// burst of page requests (pqof, automatic Success, the driver's recovery), and the states in
// which the spec has the IOMMU answer a device's page requests without software — the directory
// in Bare mode, a device context without EN_PRI, the queue off or faulting, a device the
// directory does not know. Each is observed at the endpoint, on a booted machine whose driver
// put the IOMMU in that state.
import assert from "node:assert/strict";
import { MEM_ACCESS_FAULT, PRG_RESPONSE_FAILURE, PRG_RESPONSE_INVALID } from "@iommu-lab/hw";
import {
  DMAE_ERR_ATS,
  DMAE_ERR_PRI_FAILURE,
  PCI_PRI_STATUS,
  PCI_PRI_STATUS_RF,
  PCI_PRI_STATUS_UPRGI,
  RISCV_IOMMU_DDTP_IOMMU_MODE_BARE,
  RISCV_IOMMU_PQB_PPN,
  RISCV_IOMMU_PQCSR_PQMF,
  RISCV_IOMMU_PQCSR_PQOF,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FQT,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
} from "@iommu-lab/hw/regs";
import {
  dev_get_drvdata,
  device_del,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  pci_enable_pri,
  pci_reset_pri,
  PROT_READ,
  PROT_WRITE,
  vm_mmap,
} from "@iommu-lab/kernel";
import { type DevIommu, iommu_sva_unbind_device } from "@iommu-lab/iommu";
import type { RiscvIommuDevice } from "@iommu-lab/riscv-iommu";
import { RISCV_IOMMU_INTR_PQ } from "@iommu-lab/riscv-iommu/bits";
import { riscv_iommu_queue_disable } from "@iommu-lab/riscv-iommu/internal";
import { Machine } from "@iommu-lab/machine";
import { bind, boot, PAGE, phys, priErrors, watchPri } from "./_iopf_test_fixture.ts";

const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

Deno.test("PQ overflow (spec §3.3, Page-Request-Queue; §2.7): a burst from 8 channels of 2 engines into a 2-entry queue gets automatic Success while pqof is set, the driver clears it, every group is answered once and every transfer completes", async (t) => {
  const cases = [
    {
      name: "2 entries by the hardware's WARL (pqb.LOG2SZ-1 at most 0), groups of one page",
      opts: { iommuOptions: { maxLog2Sz: { pq: 1 } }, dmaPri: { maxGroupPages: 1 } },
      iopf: {},
      log2sz: 0,
    },
    {
      name: "4 entries (iopf({ pqCount: 4 })), groups of two pages: a group the overflow cut is " +
        "discarded, and asked again",
      opts: { dmaPri: { maxGroupPages: 2 } },
      iopf: { pqCount: 4 },
      log2sz: 1,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const { m } = boot({ dmaEngines: 2, ...c.opts }, c.iopf);
      const iommu = m.silicon.iommu!;
      assert.equal(Number(iommu.read64(RISCV_IOMMU_REG_PQB) & 0x1fn), c.log2sz);
      const mm = mm_alloc(m.kernel);
      const chans = m.dmaChannels();
      const pages = 4;
      const va = vm_mmap(mm, 0, chans.length * pages * PAGE, RW, ANON);
      const binds = m.dmaDevices.map((pdev) => bind(pdev, mm));
      const pasid = binds[0].pasid;
      const w = watchPri(m);

      // Every channel starts before the CPU takes an interrupt: a burst.
      const txs = chans.map((chan, i) => {
        const tx = chan.prepMemset(va + i * pages * PAGE, 0x1000_0001 * (i + 1), pages * PAGE, {
          pasid,
        });
        chan.submit(tx);
        chan.issuePending();
        return tx;
      });
      for (let i = 0; i < txs.length; i++) chans[i].syncWait(txs[i]);

      for (const [i, tx] of txs.entries()) {
        assert.deepEqual([tx.status, tx.error, tx.xferred], ["complete", 0, pages * PAGE], `${i}`);
        for (let p = 0; p < pages; p++) {
          const pa = phys(mm, va + (i * pages + p) * PAGE);
          assert.equal(m.kernel.mem.read32(pa + PAGE - 4), (0x1000_0001 * (i + 1)) >>> 0);
        }
      }
      // The overflow happened, and the IOMMU answered for the software while pqof was set.
      assert.ok(w.outcomes.success > 0, "automatic Success responses");
      assert.ok(w.pqcsrAtSuccess.every((csr) => csr & RISCV_IOMMU_PQCSR_PQOF), "pqof was set");
      assert.deepEqual([w.outcomes.invalid, w.outcomes.failure], [0, 0]);
      const ovf = m.kernel.dmesg.grep("Queue #3 error");
      assert.ok(ovf.length > 0);
      assert.ok(ovf.every((l) => l.endsWith("Queue #3 error; memory fault:0 overflow:1")));
      assert.equal(iommu.read32(RISCV_IOMMU_REG_PQCSR) & RISCV_IOMMU_PQCSR_PQOF, 0, "cleared");
      // Nothing lost: every group the engines sent was answered exactly once — by the IOMMU or,
      // for each group queued whole, by the driver after the handler ran.
      assert.equal(w.unexpected, 0);
      assert.equal(w.outstanding.size, 0);
      assert.equal(w.answered, w.groups);
      // One SVA domain serves the mm on both engines: each bind saw every group its handler got.
      assert.equal(binds[0].h.domain, binds[1].h.domain);
      const handled = binds[0].groups;
      assert.equal(w.responses.length, w.outcomes.success + handled.length);
      assert.deepEqual(
        [...new Set(handled.flat())].sort((a, b) => a - b),
        Array.from({ length: chans.length * pages }, (_, i) => va + i * PAGE),
        "each page reached the handler",
      );
      if (c.log2sz > 0) {
        assert.ok(w.outcomes.discarded > 0, "requests of cut groups dropped with their group");
        // The cut groups' first requests were queued; the driver's recovery let them go.
        for (const pdev of m.dmaDevices) {
          assert.equal((pdev.iommu as DevIommu).fault_param!.partial.length, 0, "no partial kept");
        }
        assert.ok(handled.every((g) => g.length === 2), "only whole groups reach the handler");
      }
      // And at each endpoint: no answer it did not wait for, no group left waiting.
      for (const pdev of m.dmaDevices) assert.equal(priErrors(pdev), 0);
      for (const e of m.silicon.dmaEngines) assert.equal(e.fn.priOutstanding, 0);
      for (const b of binds) iommu_sva_unbind_device(b.h);
      mmput(mm);
    });
  }
});

/**
 * Sends one page request group of the first engine's function (the page at 256 MiB, read) and
 * lets the machine run; returns the response codes the function got and its PRI status after.
 */
function pageRequest(m: Machine, pasid = -1): { sent: boolean; codes: number[]; status: number } {
  const fn = m.silicon.dmaEngines[0].fn;
  const codes: number[] = [];
  const sent = fn.pageRequestGroup([0x1000_0000], true, false, pasid, false, false, (code) => {
    codes.push(code);
  }) >= 0;
  m.run(100_000);
  return { sent, codes, status: fn.config.get16(fn.priCap + PCI_PRI_STATUS) };
}

Deno.test("Bare mode (spec §2.7, PCIe ATS Page Request handling): after the driver's shutdown (riscv_iommu_disable: ddtp Bare, queues off) the IOMMU answers Invalid Request itself; with no device context it echoes no PASID, so a function that requires one flags UPRGI", () => {
  const { m } = boot();
  m.shutdown();
  const iommu = m.silicon.iommu!;
  assert.equal(iommu.read64(RISCV_IOMMU_REG_DDTP) & 0xfn, BigInt(RISCV_IOMMU_DDTP_IOMMU_MODE_BARE));
  const w = watchPri(m);
  const plain = pageRequest(m);
  assert.deepEqual(plain.codes, [PRG_RESPONSE_INVALID]);
  assert.equal(plain.status & (PCI_PRI_STATUS_UPRGI | PCI_PRI_STATUS_RF), 0);
  const tagged = pageRequest(m, 5);
  assert.deepEqual(tagged.codes, [], "the response did not match the group");
  assert.equal(tagged.status & PCI_PRI_STATUS_UPRGI, PCI_PRI_STATUS_UPRGI);
  assert.deepEqual(w.responses.map((r) => [r.code, r.pasid]), [[1, undefined], [1, undefined]]);
  assert.equal(w.outcomes.invalid, 2);
  assert.equal(iommu.read32(RISCV_IOMMU_REG_FQT), 0, "the fault queue is off: no record");
});

Deno.test("EN_PRI=0 (spec §2.7): on a machine without the series the contexts have neither EN_ATS nor EN_PRI; a function whose own driver enables PRI gets Invalid Request, and the driver logs the TTYP 9 fault (cause 260)", () => {
  const m = Machine.boot({ caps: { ats: true }, dmaAts: true, dmaPri: true, dmaPasid: true });
  const pdev = m.dmaDevices[0];
  assert.equal(m.silicon.iommu!.read32(RISCV_IOMMU_REG_PQCSR), 0, "no page-request queue");
  pci_reset_pri(pdev);
  pci_enable_pri(pdev, 32);
  const w = watchPri(m);
  const r = pageRequest(m);
  assert.deepEqual(r.codes, [PRG_RESPONSE_INVALID]);
  assert.equal(r.status & (PCI_PRI_STATUS_UPRGI | PCI_PRI_STATUS_RF), 0);
  assert.equal(w.outcomes.invalid, 1);
  assert.deepEqual(m.kernel.dmesg.grep(/Fault \d+ devid/), [
    "riscv,iommu 3010000.iommu: Fault 260 devid: 0x10 iotval: 4 iotval2: 0",
  ]);
});

Deno.test("PQ memory fault (spec §2.7; §3.3): the record's store faults, pqmf is set and the IOMMU answers Response Failure; the engine fails PRI_FAILURE and its PRI stays stopped (no recovery, as upstream); the driver reports and clears pqmf, and the queue takes the other engine's requests", () => {
  const { m } = boot({ dmaEngines: 2 });
  const iommu = m.silicon.iommu!;
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, 8 * PAGE, RW, ANON);
  const [a, b] = m.dmaDevices.map((pdev) => bind(pdev, mm));
  const w = watchPri(m);
  const ring = Number((iommu.read64(RISCV_IOMMU_REG_PQB) & RISCV_IOMMU_PQB_PPN) >> 10n) * PAGE;
  m.silicon.mem.injectFault(ring, PAGE, MEM_ACCESS_FAULT, "write");
  const chans = m.dmaChannels();
  const failed = chans[0].memset(va, 1, PAGE, { pasid: a.pasid });
  assert.deepEqual([failed.status, failed.error, failed.errAddr], [
    "error",
    DMAE_ERR_PRI_FAILURE,
    va,
  ]);
  assert.equal(w.outcomes.failure, 1);
  assert.deepEqual(w.responses.map((r) => [r.code, r.pasid]), [[PRG_RESPONSE_FAILURE, a.pasid]]);
  assert.equal(priErrors(m.dmaDevices[0]), PCI_PRI_STATUS_RF);
  assert.deepEqual(m.kernel.dmesg.grep("Queue #3 error"), [
    "riscv,iommu 3010000.iommu: Queue #3 error; memory fault:1 overflow:0",
  ]);
  assert.equal(iommu.read32(RISCV_IOMMU_REG_PQCSR) & RISCV_IOMMU_PQCSR_PQMF, 0, "cleared");

  m.silicon.mem.clearFaults();
  const again = chans[0].memset(va, 2, PAGE, { pasid: a.pasid });
  assert.deepEqual([again.status, again.error], ["error", DMAE_ERR_ATS], "PRI stopped by RF");
  const other = chans[4].memset(va + PAGE, 3, PAGE, { pasid: b.pasid });
  assert.equal(other.status, "complete");
  assert.equal(w.outcomes.queued, 1);
  assert.equal(m.kernel.mem.read32(phys(mm, va + PAGE)), 3);
  for (const x of [a, b]) iommu_sva_unbind_device(x.h);
  mmput(mm);
});

Deno.test("PQ disabled (spec §2.7): with the page-request queue off and the directory on — a state the driver's remove avoids by turning the directory off first — the IOMMU answers Response Failure, with the PASID, and logs nothing", () => {
  const { m, chan, pdev } = boot();
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, PAGE, RW, ANON);
  const { pasid } = bind(pdev, mm);
  const iommu = dev_get_drvdata<RiscvIommuDevice>(m.iommuDevice!);
  riscv_iommu_queue_disable(iommu.queues.get(RISCV_IOMMU_INTR_PQ)!);
  assert.equal(m.silicon.iommu!.read32(RISCV_IOMMU_REG_PQCSR), 0);
  const w = watchPri(m);
  const tx = chan.memset(va, 1, PAGE, { pasid });
  assert.deepEqual([tx.status, tx.error], ["error", DMAE_ERR_PRI_FAILURE]);
  assert.deepEqual(w.responses.map((r) => [r.code, r.pasid]), [[PRG_RESPONSE_FAILURE, pasid]]);
  assert.equal(priErrors(pdev), PCI_PRI_STATUS_RF);
  assert.deepEqual(m.kernel.dmesg.grep(/Fault \d+ devid|Queue #3/), []);
});

Deno.test("a device the directory does not know (spec §2.7): a function the kernel removed (its context now invalid) that re-enables PRI gets Response Failure, the driver logs the fault (cause 258), and the function's PRI stops", () => {
  const { m, pdev } = boot();
  device_del(pdev);
  pci_reset_pri(pdev);
  pci_enable_pri(pdev, 32);
  const w = watchPri(m);
  const r = pageRequest(m);
  assert.deepEqual(r.codes, [PRG_RESPONSE_FAILURE]);
  assert.equal(r.status & PCI_PRI_STATUS_RF, PCI_PRI_STATUS_RF);
  assert.equal(w.outcomes.failure, 1);
  assert.deepEqual(m.kernel.dmesg.grep(/Fault \d+ devid/), [
    "riscv,iommu 3010000.iommu: Fault 258 devid: 0x10 iotval: 4 iotval2: 0",
  ]);
  assert.equal(pageRequest(m).sent, false, "no credit until PRI is enabled again");
});
