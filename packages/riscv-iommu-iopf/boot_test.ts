// A system booted without the series behaves exactly as before it existed: the same register
// accesses, commands, device contexts and PCI configuration, whether the series is left out or
// loaded on an IOMMU without capabilities.ATS (where it only says it is off).
import assert from "node:assert/strict";
import { device_del, mm_alloc, pci_driver_init } from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_detach_device,
  iommu_domain_free,
  iommu_map,
  iommu_paging_domain_alloc,
  IOMMU_READ,
  iommu_sva_bind_device,
  iommu_unmap,
} from "@iommu-lab/iommu";
import {
  CAP,
  deviceContext,
  FAKE_IOMMU_CAPS,
  mmioTrace,
  testSystem,
} from "@iommu-lab/riscv-iommu/testing";
import { pciEndpoint, pqRecord, settle } from "./_test_fixture.ts";
import { iopf } from "./mod.ts";

/**
 * Boots, probes a function with ATS, PRI and PASID, maps, unmaps, detaches, gets a page request
 * from it, tries SVA, and tears down; returns everything observable.
 */
function scenario(caps: bigint, features: ReturnType<typeof iopf>[]) {
  const sys = testSystem({ caps, features, initcalls: [pci_driver_init] });
  const { pdev, cfg, devid } = pciEndpoint(sys);
  const dc = deviceContext(sys, devid);
  const domain = iommu_paging_domain_alloc(pdev);
  iommu_attach_device(domain, pdev);
  iommu_map(domain, 0x1000, 0x8000_1000, 0x4000, IOMMU_READ);
  iommu_unmap(domain, 0x1000, 0x4000);
  iommu_detach_device(domain, pdev);
  iommu_domain_free(domain);
  const recorded = sys.fake.record(
    2,
    pqRecord({ did: devid, read: true, last: true, prgi: 1, addr: 0 }),
  );
  settle(sys);
  let sva = "bound";
  try {
    iommu_sva_bind_device(pdev, mm_alloc(sys.kernel));
  } catch (e) {
    sva = (e as { code: string }).code;
  }
  device_del(pdev);
  device_del(sys.dev);
  return {
    mmio: mmioTrace(sys.rec.accesses),
    commands: sys.fake.commands.map((c) => c.text),
    dc,
    config: [...cfg.v],
    recorded,
    sva,
    dmesg: sys.kernel.dmesg.lines().map((l) => l.replace(/^\[[ .0-9]+\] /, "")),
  };
}

Deno.test("without the series: no page-request queue, no ATS/PRI/PASID on the function, no PASIDs, and nothing else differs", () => {
  const caps = FAKE_IOMMU_CAPS | CAP.ATS | CAP.PD8;
  const without = scenario(caps, []);
  assert.equal(without.mmio.some((l) => / pq[bhtc]/.test(l)), false);
  assert.equal(without.recorded, false, "the page-request queue is off: the record goes nowhere");
  assert.equal(without.dc[0], 1n, "V only: no EN_ATS, EN_PRI, PRPR");
  assert.equal(without.sva, "ENOSPC", "no PASIDs without the series");
  assert.equal(without.commands.some((c) => c.startsWith("ATS")), false);

  // The series loaded on an IOMMU without ATS stays off: the same run, one more line.
  const skipped = scenario(FAKE_IOMMU_CAPS | CAP.PD8, [iopf()]);
  const plain = scenario(FAKE_IOMMU_CAPS | CAP.PD8, []);
  assert.deepEqual(skipped.mmio, plain.mmio);
  assert.deepEqual(skipped.commands, plain.commands);
  assert.deepEqual(skipped.dc, plain.dc);
  assert.deepEqual(skipped.config, plain.config);
  assert.deepEqual(
    skipped.dmesg.filter((l) => !plain.dmesg.includes(l)),
    ["riscv,iommu 3010000.iommu: iopf disabled: no capabilities.ATS"],
  );
  assert.deepEqual(plain.config, without.config, "the function's configuration untouched");

  // And with the series on an ATS IOMMU, the same run differs where it should.
  const withIt = scenario(caps, [iopf()]);
  assert.equal(withIt.dc[0], 1n | 2n | 4n | 1n << 6n);
  assert.equal(withIt.recorded, true);
  assert.equal(withIt.sva, "bound");
});
