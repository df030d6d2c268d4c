import assert from "node:assert/strict";
import { CPL_UR } from "@iommu-lab/hw";
import { DMAE_ERR_READ, DMAE_ERR_STOPPED, DMAE_ERR_WRITE } from "@iommu-lab/hw/regs";
import {
  device_attach,
  device_release_driver,
  DMA_BIDIRECTIONAL,
  dma_map_page,
  pci_enable_pasid,
  pci_irq_vector,
} from "@iommu-lab/kernel";
import { dma_engine_stop_pasid, type DmaTx, Machine } from "./mod.ts";

function setup(opts = {}) {
  const m = Machine.boot(opts);
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(2); // 16 KiB
  const iova = dma_map_page(chan.dev, buf, 0, 16384, DMA_BIDIRECTIONAL);
  return { m, chan, buf, iova };
}

Deno.test("dmaengine: descriptors queued on a channel run in submit order, one completion irq each", () => {
  const { m, chan, buf, iova } = setup();
  for (let i = 0; i < 4096; i += 4) m.kernel.mem.write32(buf + i, i);
  const done: number[] = [];
  const txs: DmaTx[] = [
    chan.prepMemcpy(iova + 4096, iova, 4096),
    chan.prepMemset(iova + 8192, 0x7777_7777, 4096),
    chan.prepMemcpy(iova + 12288, iova + 4096, 4096), // reads what the first one wrote
  ];
  for (const tx of txs) tx.callback = (t) => done.push(t.cookie);
  const cookies = txs.map((tx) => chan.submit(tx));
  assert.deepEqual(cookies, [1, 2, 3]);
  assert.ok(txs.every((tx) => tx.status === "queued"), "nothing starts before issue_pending");
  chan.issuePending();
  chan.syncWait(txs[2]);
  assert.deepEqual(done, [1, 2, 3]);
  assert.ok(txs.every((tx) => tx.status === "complete"));
  assert.ok(txs[0].doneNs <= txs[1].startNs && txs[1].doneNs <= txs[2].startNs, "one at a time");
  assert.deepEqual(m.kernel.mem.readBytes(buf + 12288, 4096), m.kernel.mem.readBytes(buf, 4096));
  assert.equal(m.kernel.mem.read32(buf + 8192 + 4092), 0x7777_7777);
  const irq = pci_irq_vector(chan.dev, 0);
  assert.equal(m.kernel.irq.desc(irq)!.count, 3);
  assert.equal(chan.completed, 3);
});

Deno.test("dmaengine: channels of one engine run side by side", () => {
  const { m, iova } = setup();
  const [a, b] = m.dmaChannels();
  const ta = a.prepMemset(iova, 1, 8192), tb = b.prepMemset(iova + 8192, 2, 8192);
  a.submit(ta), b.submit(tb);
  a.issuePending(), b.issuePending();
  a.syncWait(ta), b.syncWait(tb);
  assert.equal(ta.status, "complete");
  assert.equal(tb.status, "complete");
  assert.ok(tb.startNs < ta.doneNs, "the second started before the first finished");
});

Deno.test("dmaengine: a faulting transfer completes with the engine's error, the IOMMU's cause and the completion status of the aborted request", async (t) => {
  const { chan, iova } = setup();
  await t.step("write to an unmapped IOVA", () => {
    const tx = chan.memcpy(iova - 0x10_0000, iova, 4096);
    assert.equal(tx.status, "error");
    assert.equal(tx.error, DMAE_ERR_WRITE);
    assert.equal(tx.errAddr, iova - 0x10_0000);
    assert.equal(tx.errCause, 15);
    assert.equal(tx.errCpl, CPL_UR, "no translation: Unsupported Request");
    assert.equal(tx.xferred, 0);
  });
  await t.step("read across the end of a mapping", () => {
    const tx = chan.memcpy(iova, iova + 12288, 8192);
    assert.equal(tx.status, "error");
    assert.equal(tx.error, DMAE_ERR_READ);
    assert.equal(tx.xferred, 4096, "the mapped page moved");
    assert.equal(tx.errCause, 13);
    assert.equal(tx.errCpl, CPL_UR);
  });
  assert.equal(chan.failed, 2);
});

Deno.test("dmaengine: bad descriptors are EINVAL", () => {
  const { chan, iova } = setup();
  assert.throws(() => chan.prepMemcpy(iova, iova, 0), { code: "EINVAL" });
  const tx = chan.prepMemset(iova, 0, 64);
  chan.submit(tx);
  assert.throws(() => chan.submit(tx), { code: "EINVAL" });
  assert.throws(() => chan.prepMemset(iova, 0, 64, { priv: true }), { code: "EINVAL" });
  assert.throws(() => chan.prepMemcpy(iova, iova, 64, { pasid: 2 ** 20 }), { code: "EINVAL" });
});

Deno.test("dmaengine: a descriptor's PASID reaches the IOMMU with its transactions (a DC without PDTV refuses it: cause 260)", () => {
  const { chan, iova } = setup({ dmaPasid: true });
  pci_enable_pasid(chan.dev, 0);
  assert.equal(chan.memset(iova, 0x5a5a_5a5a, 4096).status, "complete", "no PASID: translated");
  const tx = chan.memset(iova, 0, 4096, { pasid: 7 });
  assert.deepEqual([tx.status, tx.error, tx.errCause], ["error", DMAE_ERR_WRITE, 260]);
});

Deno.test("dmaengine: dma_engine_stop_pasid() ends the transfers tagged with that PASID, others go on", () => {
  const m = Machine.boot({ iommu: "none", dmaPasid: true });
  const [a, b] = m.dmaChannels();
  pci_enable_pasid(a.dev, 0);
  const buf = m.kernel.pages.alloc(6); // 256 KiB
  const ta = a.prepMemset(buf, 1, 128 * 1024, { pasid: 9 });
  const tb = b.prepMemset(buf + 128 * 1024, 2, 128 * 1024);
  a.submit(ta), b.submit(tb);
  a.issuePending(), b.issuePending();
  dma_engine_stop_pasid(a.dev, 9);
  a.syncWait(ta), b.syncWait(tb);
  assert.deepEqual([ta.status, ta.error], ["error", DMAE_ERR_STOPPED]);
  assert.ok(ta.xferred < ta.len);
  assert.equal(tb.status, "complete");
  assert.throws(() => dma_engine_stop_pasid(a.dev, -1), { code: "EINVAL" });
});

Deno.test("dmaengine: unbinding frees the vectors, so the engine binds again", () => {
  const { m } = setup();
  const dev = m.dmaDevices[0];
  device_release_driver(dev);
  assert.equal(dev.msixEnabled, false);
  assert.deepEqual(m.dmaChannels(), []);
  assert.equal(device_attach(dev), true);
  assert.equal(m.dmaChannels().length, 4);
});
