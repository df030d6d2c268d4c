// End to end on a booted machine: a PCIe DMA engine with ATS, PRI and PASID behind the silicon's
// IOMMU, the page-request series in its driver (iopfPart), the IOMMU core's IOPF and SVA, and the
// kernel's process address space. The engine's ATS translations that come back without the
// permission it needs turn into page request groups; the IOMMU writes them into its page-request
// queue; the driver's PQ thread reports them; the SVA handler faults the pages into the process's
// page table on the IOPF workqueue; ATS.PRGR goes back through the root complex and the engine
// retries. A plain paging domain has no handler: the core answers Invalid Request.
import assert from "node:assert/strict";
import {
  DMAE_ERR_PRI_INVALID,
  PCI_ATS_CTRL,
  PCI_PASID_CTRL,
  PCI_PRI_CTRL,
} from "@iommu-lab/hw/regs";
import {
  DMA_BIDIRECTIONAL,
  dma_map_page,
  dma_unmap_page,
  FOLL_WRITE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  pci_read_config_word,
  pin_user_pages,
  PROT_READ,
  PROT_WRITE,
  unpin_user_pages,
  vm_mmap,
  vm_munmap,
} from "@iommu-lab/kernel";
import { iommu_sva_unbind_device } from "@iommu-lab/iommu";
import { iopf, iopfPart } from "@iommu-lab/riscv-iommu-iopf";
import { Machine, type MachineOptions } from "@iommu-lab/machine";
import { bind, boot, PAGE, phys, priErrors } from "./_iopf_test_fixture.ts";

const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

Deno.test("SVA: an engine writes 64 pages the process never touched; each request reaches the handler, each group is answered once, the data is in the process's pages", () => {
  const { m, chan, pdev } = boot();
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, 64 * PAGE, RW, ANON);
  const { h, pasid, groups } = bind(pdev, mm);
  assert.equal(mm.rss, 0);

  const tx = chan.memset(va, 0x5aa5_5aa5, 64 * PAGE, { pasid });
  assert.deepEqual([tx.status, tx.error, tx.xferred], ["complete", 0, 64 * PAGE]);
  const asked = groups.flat().sort((a, b) => a - b);
  assert.deepEqual(asked, Array.from({ length: 64 }, (_, i) => va + i * PAGE), "each page once");
  assert.ok(groups.length > 1 && groups.every((g) => g.length <= 8), "groups of up to 8 pages");
  assert.equal(mm.rss, 64);
  for (let i = 0; i < 64; i++) {
    const pa = phys(mm, va + i * PAGE);
    assert.equal(m.kernel.mem.read32(pa), 0x5aa5_5aa5, `page ${i} first word`);
    assert.equal(m.kernel.mem.read32(pa + PAGE - 4), 0x5aa5_5aa5, `page ${i} last word`);
  }
  assert.equal(priErrors(pdev), 0, "no response to a group the engine no longer waited for");
  assert.deepEqual(m.kernel.dmesg.grep(/report failed|aborted/), []);

  iommu_sva_unbind_device(h);
  mmput(mm);
});

Deno.test("a plain paging domain has no fault handler: the core refuses each request (-22), one Invalid Request answers the group, the engine fails with PRI_INVALID", () => {
  const { m, chan, pdev } = boot();
  const iova = 0x1234_0000; // nothing of the engine's DMA domain is mapped there
  const tx = chan.memset(iova, 0xffff_ffff, 3 * PAGE);
  assert.deepEqual([tx.status, tx.error, tx.xferred, tx.errAddr], [
    "error",
    DMAE_ERR_PRI_INVALID,
    0,
    iova,
  ]);
  assert.deepEqual(m.kernel.dmesg.grep("report failed"), [
    "riscv,iommu 3010000.iommu: page request fault report failed: -22",
    "riscv,iommu 3010000.iommu: page request fault report failed: -22",
    "riscv,iommu 3010000.iommu: page request fault report failed: -22",
  ]);
  assert.equal(priErrors(pdev), 0, "one response for the one group");
});

Deno.test("a page pinned for a driver (pin_user_pages, as iommufd pins) is the page the engine reaches through SVA: no request for it", () => {
  const { m, chan, pdev } = boot();
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, 8 * PAGE, RW, ANON);
  const pinned: number[] = [];
  pin_user_pages(mm, va, 4, FOLL_WRITE, pinned);
  const { h, pasid, groups } = bind(pdev, mm);

  const tx = chan.memset(va, 0x0bad_cafe, 8 * PAGE, { pasid });
  assert.equal(tx.status, "complete");
  assert.deepEqual(
    groups.flat().sort((a, b) => a - b),
    [4, 5, 6, 7].map((i) => va + i * PAGE),
    "only the pages the pins did not populate",
  );
  for (const pa of pinned) assert.equal(m.kernel.mem.read32(pa + 8), 0x0bad_cafe);
  assert.deepEqual(pinned, [0, 1, 2, 3].map((i) => phys(mm, va + i * PAGE)));

  unpin_user_pages(mm, pinned);
  iommu_sva_unbind_device(h);
  mmput(mm);
});

Deno.test("munmap while bound: the IOTLB and the engine's ATC are invalidated, a DMA there is refused, and after a new mapping the engine asks for its pages again", () => {
  const { m, chan, pdev } = boot();
  const mm = mm_alloc(m.kernel);
  const va = vm_mmap(mm, 0, 8 * PAGE, RW, ANON);
  const { h, pasid, groups } = bind(pdev, mm);
  assert.equal(chan.memset(va, 0x1111_1111, 8 * PAGE, { pasid }).status, "complete");
  assert.equal(chan.memset(va, 0x2222_2222, 8 * PAGE, { pasid }).status, "complete");
  assert.equal(groups.flat().length, 8, "the second pass hit the ATC: no request");

  vm_munmap(mm, va, 8 * PAGE);
  const gone = chan.memset(va, 0x3333_3333, PAGE, { pasid });
  assert.deepEqual([gone.status, gone.error, gone.xferred], ["error", DMAE_ERR_PRI_INVALID, 0]);
  assert.equal(groups.flat().length, 9, "no stale ATC entry: the engine asked, and was refused");

  assert.equal(vm_mmap(mm, va, 8 * PAGE, RW, ANON | MAP_FIXED), va);
  groups.length = 0;
  const tx = chan.memset(va, 0x4444_4444, 8 * PAGE, { pasid });
  assert.equal(tx.status, "complete");
  assert.equal(groups.flat().length, 8);
  for (let i = 0; i < 8; i++) {
    assert.equal(m.kernel.mem.read32(phys(mm, va + i * PAGE)), 0x4444_4444);
  }
  assert.equal(priErrors(pdev), 0);

  iommu_sva_unbind_device(h);
  mmput(mm);
});

Deno.test("iopfPart() asks the silicon for ATS over the machine's caps; without ATS the series stays off", () => {
  const on = boot({ caps: { ats: false } }).m;
  assert.deepEqual(on.kernel.dmesg.grep("page request queue"), [
    "riscv,iommu 3010000.iommu: page request queue enabled",
  ]);
  const off = Machine.boot({
    caps: { ats: false },
    parts: [{ name: "iopf", feature: iopfPart().feature }],
  });
  assert.deepEqual(off.kernel.dmesg.grep("page request queue"), []);
  assert.equal(off.kernel.dmesg.grep("iopf disabled: no capabilities.ATS").length, 1);
});

/**
 * Boots with tracing, maps two pages for the engine, copies, unmaps, copies again (a fault) and
 * shuts down; returns what can be observed of it: every trace event but the kernel log's, the
 * log, the simulated time, the transfers, and the engine's ATS, PRI and PASID controls.
 */
function observe(opts: MachineOptions) {
  const m = Machine.boot({ trace: true, ...opts });
  const chan = m.dmaChannel(0);
  const pdev = m.dmaDevices[0];
  const page = m.kernel.pages.alloc(1);
  const iova = dma_map_page(pdev, page, 0, 2 * PAGE, DMA_BIDIRECTIONAL);
  const ok = chan.memcpy(iova + PAGE, iova, PAGE);
  dma_unmap_page(pdev, iova, 2 * PAGE, DMA_BIDIRECTIONAL);
  const faulted = chan.memcpy(iova + PAGE, iova, PAGE);
  const controls = [
    [pdev.atsCap, PCI_ATS_CTRL],
    [pdev.priCap, PCI_PRI_CTRL],
    [pdev.pasidCap, PCI_PASID_CTRL],
  ].map(([cap, ctrl]) => cap === 0 ? null : pci_read_config_word(pdev, cap + ctrl));
  m.shutdown();
  return {
    events: m.trace.toJSON().traceEvents.filter((e) => e.cat !== "printk"),
    dmesg: m.dmesg,
    ns: m.silicon.clock.now(),
    txs: [ok, faulted].map((tx) => [tx.status, tx.error, tx.xferred, tx.errCause]),
    controls,
  };
}

Deno.test("a machine booted without the series behaves exactly as before: its feature on an IOMMU without ATS gives the same trace (MMIO writes, commands, faults, interrupts, DMA, at the same simulated times), DMA results and log but for one line; a kernel without it on an ATS IOMMU enables no ATS, PRI or PASID and never touches the page-request queue", () => {
  const before = observe({ caps: { ats: false } });
  const off = observe({ caps: { ats: false }, parts: [{ name: "iopf", feature: iopf() }] });
  assert.deepEqual(off.events, before.events);
  assert.equal(off.ns, before.ns);
  assert.deepEqual(off.txs, before.txs);
  assert.deepEqual(off.dmesg.filter((l) => !before.dmesg.includes(l)), [
    "[    0.000097] riscv,iommu 3010000.iommu: iopf disabled: no capabilities.ATS",
  ]);
  assert.deepEqual(before.dmesg.filter((l) => !off.dmesg.includes(l)), []);
  assert.equal(before.txs[1][0], "error", "the second copy faulted");

  const capable = observe({ caps: { ats: true }, dmaAts: true, dmaPri: true, dmaPasid: true });
  assert.deepEqual(capable.controls, [0, 0, 0]);
  assert.deepEqual(capable.txs, before.txs);
  const names = (r: typeof before) =>
    r.events.filter((e) => e.cat === "mmio" || e.cat === "command").map((e) => e.name);
  assert.deepEqual(names(capable), names(before));
  // The page-request queue stays off: only the base driver's shutdown writes pqcsr, with 0.
  const pq = capable.events.filter((e) => / pq(b|h|t|csr)$|^ATS\./.test(e.name));
  assert.deepEqual(pq.map((e) => [e.name, e.args?.value]), [["write iommu pqcsr", "0x0"]]);
});
