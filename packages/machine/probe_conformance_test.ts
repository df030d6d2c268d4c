/**
 * The probe conformance suite: one behavioural suite, written once, that both probe paths of the
 * RISC-V IOMMU (the device-tree platform driver and the PCI driver) pass on the silicon model.
 * Then the path-specific cases: hardware variants and init error paths seen through real
 * registers.
 */
import assert from "node:assert/strict";
import { IGS_BOTH, IGS_WSI } from "@iommu-lab/hw";
import {
  CAP,
  RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_BARE,
  RISCV_IOMMU_DDTP_IOMMU_MODE_OFF,
  RISCV_IOMMU_FCTL_WSI,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FCTL,
  RISCV_IOMMU_REG_FQCSR,
} from "@iommu-lab/hw/regs";
import {
  device_attach,
  device_release_driver,
  device_unregister,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  dma_map_page,
  DMA_TO_DEVICE,
  dma_unmap_page,
  dmaDirectOps,
  LOGLEVEL_WARNING,
  msi_get_virq,
} from "@iommu-lab/kernel";
import { IOMMU_DOMAIN_DMA, iommu_get_domain_for_dev } from "@iommu-lab/iommu";
import { Machine, type MachineOptions } from "./mod.ts";

/** What differs between the two probe paths; everything else is the same suite. */
interface ProbePath {
  readonly bus: "platform" | "pci";
  /** dev_name() of the IOMMU. */
  readonly dev: string;
  /** The driver's name as dmesg prints it. */
  readonly driver: string;
  /** The messages the glue itself prints on a good probe. */
  readonly probeLines: readonly string[];
}

const PATHS: readonly ProbePath[] = [
  {
    bus: "platform",
    dev: "3010000.iommu",
    driver: "riscv,iommu",
    probeLines: ["riscv,iommu 3010000.iommu: using MSIs"],
  },
  { bus: "pci", dev: "0000:00:01.0", driver: "iommu_pci", probeLines: [] },
];

/** The DMA engine's requester ID: 00:02.0. */
const DEVID = 0x10;

function ddtMode(m: Machine): number {
  return Number(m.silicon.iommu!.read64(RISCV_IOMMU_REG_DDTP) & 0xfn);
}

function boot(path: ProbePath, opts: MachineOptions = {}): Machine {
  return Machine.boot({ iommuBus: path.bus, ...opts });
}

for (const path of PATHS) {
  Deno.test(`probe conformance (${path.bus}): the IOMMU binds and registers with the core`, () => {
    const m = boot(path);
    const dev = m.iommuDevice!;
    assert.equal(dev.name, path.dev);
    assert.equal(dev.state, "bound");
    assert.equal(dev.driver?.name, path.driver);
    const own = m.kernel.dmesg.records()
      .filter((r) => r.text.startsWith(`${path.driver} ${path.dev}:`));
    assert.deepEqual(own.map((r) => r.text), [...path.probeLines]);
    assert.ok(own.every((r) => r.level > LOGLEVEL_WARNING), "no warnings or errors");
    assert.equal(m.iommuCore.iommus.length, 1);
    assert.equal(m.iommuCore.iommus[0].dev, dev);
    assert.equal(ddtMode(m), RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL, "directory on");
  });

  Deno.test(`probe conformance (${path.bus}): a device behind it gets a default DMA domain`, () => {
    const m = boot(path);
    const eng = m.dmaDevices[0];
    assert.equal(eng.state, "bound");
    assert.deepEqual(eng.fwspec?.ids, [DEVID]);
    assert.equal(eng.fwspec?.fwnode, m.iommuCore.iommus[0].fwnode, "the IOMMU the DT names");
    assert.equal(iommu_get_domain_for_dev(eng)?.type, IOMMU_DOMAIN_DMA);
    assert.notEqual(eng.dma, dmaDirectOps, "dma-iommu ops installed");
    assert.ok(m.kernel.dmesg.grep(`${eng.name}: Adding to iommu group`).length === 1);
  });

  Deno.test(`probe conformance (${path.bus}): dma_map_page + a DMA engine copy go through the IOMMU`, () => {
    const m = boot(path);
    const chan = m.dmaChannel(0);
    const src = m.kernel.pages.alloc(0), dst = m.kernel.pages.alloc(0);
    for (let i = 0; i < 4096; i += 4) m.kernel.mem.write32(src + i, (i * 0x9e37_79b9) >>> 0);
    const s = dma_map_page(chan.dev, src, 0, 4096, DMA_TO_DEVICE);
    const d = dma_map_page(chan.dev, dst, 0, 4096, DMA_FROM_DEVICE);
    assert.notEqual(s, src, "an IOVA, not the physical address");
    const tx = chan.memcpy(d, s, 4096);
    assert.equal(tx.status, "complete");
    assert.equal(tx.xferred, 4096);
    assert.deepEqual(m.kernel.mem.readBytes(dst, 4096), m.kernel.mem.readBytes(src, 4096));
    assert.ok(m.silicon.iommu!.translator.iotlbSize > 0, "the IOMMU cached the translations");
    dma_unmap_page(chan.dev, s, 4096, DMA_TO_DEVICE);
    dma_unmap_page(chan.dev, d, 4096, DMA_FROM_DEVICE);
  });

  Deno.test(`probe conformance (${path.bus}): a fault is reported in dmesg in the driver's format`, () => {
    const m = boot(path);
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    const src = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    const unmapped = src - 0x10_0000; // IOVAs are allocated top down: nothing mapped here
    const tx = chan.memcpy(unmapped, src, 4096);
    assert.equal(tx.status, "error");
    assert.equal(tx.errCause, 15, "store/AMO page fault");
    m.run(100_000); // the fault queue's interrupt thread
    assert.deepEqual(m.kernel.dmesg.grep("Fault"), [
      `${path.driver} ${path.dev}: Fault 15 devid: 0x${DEVID.toString(16)} iotval: ${
        unmapped.toString(16)
      } iotval2: 0`,
    ]);
  });

  Deno.test(`probe conformance (${path.bus}): remove leaves ddtp Off, the queues off, no pages`, () => {
    const m = boot(path);
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    assert.equal(chan.memset(iova, 0x5a5a_5a5a, 4096).status, "complete");
    dma_unmap_page(chan.dev, iova, 4096, DMA_BIDIRECTIONAL);
    m.kernel.pages.free(buf, 0);

    for (const eng of m.dmaDevices) device_unregister(eng);
    device_release_driver(m.iommuDevice!);
    const iommu = m.silicon.iommu!;
    assert.equal(m.iommuDevice!.state, "unbound");
    assert.equal(ddtMode(m), RISCV_IOMMU_DDTP_IOMMU_MODE_OFF);
    assert.equal(iommu.read32(RISCV_IOMMU_REG_CQCSR), 0);
    assert.equal(iommu.read32(RISCV_IOMMU_REG_FQCSR), 0);
    assert.equal(m.iommuCore.iommus.length, 0);
    assert.deepEqual(m.kernel.pages.allocations(), [], "every page returned");
  });

  Deno.test(`probe conformance (${path.bus}): every allocation failure in probe unwinds cleanly`, () => {
    const m = boot(path);
    for (const eng of m.dmaDevices) device_unregister(eng);
    const dev = m.iommuDevice!;
    device_release_driver(dev);
    const iommu = m.silicon.iommu!;
    let n = 1;
    for (; n < 64; n++) {
      m.kernel.pages.failNth(n);
      if (device_attach(dev)) break;
      assert.deepEqual(m.kernel.pages.allocations(), [], `fail-nth ${n}: pages leaked`);
      assert.equal(ddtMode(m), RISCV_IOMMU_DDTP_IOMMU_MODE_OFF, `fail-nth ${n}: ddtp`);
      assert.equal(iommu.read32(RISCV_IOMMU_REG_CQCSR), 0, `fail-nth ${n}: cqcsr`);
      assert.equal(iommu.read32(RISCV_IOMMU_REG_FQCSR), 0, `fail-nth ${n}: fqcsr`);
      assert.equal(msi_get_virq(dev, 0), 0, `fail-nth ${n}: MSI vectors freed`);
      assert.equal(m.iommuCore.iommus.length, 0);
    }
    m.kernel.pages.failNth(0);
    // The DDT root page cannot be done without; a queue allocation that fails is retried at
    // half the size, so later failures do not fail the probe.
    assert.ok(n > 1);
    assert.equal(
      m.kernel.dmesg.grep(`${path.driver}: probe of ${path.dev} failed with error -12`).length,
      n - 1,
    );
    assert.equal(dev.state, "bound", "probes once the allocations succeed");
    assert.equal(ddtMode(m), RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL);
  });

  Deno.test(`probe conformance (${path.bus}): shutdown leaves ddtp Bare and the queues off`, () => {
    const m = boot(path);
    m.shutdown();
    const iommu = m.silicon.iommu!;
    assert.equal(ddtMode(m), RISCV_IOMMU_DDTP_IOMMU_MODE_BARE);
    assert.equal(iommu.read32(RISCV_IOMMU_REG_CQCSR), 0);
    assert.equal(iommu.read32(RISCV_IOMMU_REG_FQCSR), 0);
  });

  Deno.test(`probe conformance (${path.bus}): hardware refusing 3LVL gets a 2LVL directory`, () => {
    const m = boot(path, { iommuOptions: { ddtLevels: [1, 2] }, dmesgDebug: true });
    assert.equal(m.iommuDevice!.state, "bound");
    assert.equal(ddtMode(m), RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL);
    assert.equal(m.kernel.dmesg.grep(`${path.dev}: DDTP hw mode 3, requested 4`).length, 1);
    const chan = m.dmaChannel(0);
    const buf = m.kernel.pages.alloc(0);
    const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
    assert.equal(chan.memset(iova, 0x1234_5678, 4096).status, "complete");
    assert.equal(m.kernel.mem.read32(buf + 4092), 0x1234_5678);
  });

  Deno.test(`probe conformance (${path.bus}): a stalled command queue times out in init`, () => {
    const m = boot(path, { iommuOptions: { stallCommandQueue: true } });
    assert.deepEqual(m.kernel.dmesg.grep("command execution timeout"), [
      `${path.driver} ${path.dev}: Hardware error: command execution timeout`,
    ]);
    assert.ok(m.silicon.clock.now() >= 90e9, "waited RISCV_IOMMU_IOTINVAL_TIMEOUT (90 s)");
  });
}

Deno.test("PCI: WSI-only hardware is refused with the kernel's message", () => {
  const m = Machine.boot({ iommuBus: "pci", caps: { igs: IGS_WSI } });
  assert.deepEqual(m.kernel.dmesg.grep("iommu_pci"), [
    "iommu_pci 0000:00:01.0: error -ENODEV: unable to use message-signaled interrupts",
  ]);
  assert.equal(m.iommuDevice!.state, "unbound");
  assert.equal(m.iommuCore.iommus.length, 0);
  // The endpoint gave up waiting at late init and uses direct DMA, but the IOMMU is still in
  // its reset state (Off): every transaction is disallowed (cause 256), the completion MSI too.
  const chan = m.dmaChannel(0);
  assert.equal(chan.dev.dma, dmaDirectOps);
  const buf = m.kernel.pages.alloc(0);
  const tx = chan.memset(buf, 0, 4096);
  assert.equal(tx.status, "timeout");
  assert.equal(m.silicon.dmaEngines[0].fn.faultCause, 256);
});

Deno.test("platform: IGS=BOTH without msi-parent falls back to wired interrupts", () => {
  const m = Machine.boot({ iommuBus: "platform", caps: { igs: IGS_BOTH }, msiParent: false });
  assert.deepEqual(m.kernel.dmesg.grep("3010000.iommu"), [
    "riscv,iommu 3010000.iommu: failed to find an MSI domain",
    "riscv,iommu 3010000.iommu: using wire-signaled interrupts",
  ]);
  const iommu = m.silicon.iommu!;
  assert.equal(iommu.read32(RISCV_IOMMU_REG_FCTL) & RISCV_IOMMU_FCTL_WSI, RISCV_IOMMU_FCTL_WSI);
  // A fault now arrives on the fault queue's wire (APLIC source 37).
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(0);
  const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
  chan.memcpy(iova - 0x20_0000, iova, 64);
  m.run(100_000);
  assert.equal(m.kernel.dmesg.grep("Fault 15").length, 1);
  const line = m.kernel.irq.procInterrupts().find((l) => /aplic 37 /.test(l));
  assert.match(line ?? "", /^\s*\d+:\s+1\s+aplic 37\s+3010000\.iommu$/);
  assert.equal(iommu.read32(0x54) & 2, 0, "ipsr.fip cleared by the handler: the wire is low");
});

Deno.test("platform: IGS=MSI only and no msi-parent cannot probe", () => {
  const m = Machine.boot({ iommuBus: "platform", caps: { igs: 0 }, msiParent: false });
  assert.deepEqual(m.kernel.dmesg.grep("3010000.iommu"), [
    "riscv,iommu 3010000.iommu: failed to find an MSI domain",
    "riscv,iommu 3010000.iommu: error -ENODEV: unable to use wire-signaled interrupts",
  ]);
  assert.equal(m.iommuDevice!.state, "unbound");
});

Deno.test("platform: an IOMMU without capabilities.MSI_FLAT still probes (base-format DCs)", () => {
  const m = Machine.boot({ iommuBus: "platform", caps: { msiFlat: false } });
  assert.equal((m.silicon.iommu!.read64(0) >> BigInt(CAP.MSI_FLAT)) & 1n, 0n);
  const chan = m.dmaChannel(0);
  const buf = m.kernel.pages.alloc(0);
  const iova = dma_map_page(chan.dev, buf, 0, 4096, DMA_BIDIRECTIONAL);
  assert.equal(chan.memset(iova, 7, 4096).status, "complete");
});
