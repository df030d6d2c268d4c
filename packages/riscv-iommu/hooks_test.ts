// The prerequisite hooks the series packages stand on, each exercised by a small test feature
// that uses it the way its series will (per-device hooks are in feature_test.ts).
import assert from "node:assert/strict";
import { device_del } from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_detach_device,
  iommu_domain_free,
  iommu_get_domain_for_dev,
  iommu_group_get,
  iommu_group_replace_domain,
  iommu_paging_domain_alloc,
} from "@iommu-lab/iommu";
import type { RiscvIommuFeature } from "./feature.ts";
import type { RiscvIommuDomain } from "./iommu.ts";
import { dcAddress, deviceContext, FAKE_IOMMU_CAPS, testSystem } from "./testing.ts";

const V = 1n;
const EN_ATS = 1n << 1n;
const EN_PRI = 1n << 2n;
const PDTV = 1n << 5n;
const PRPR = 1n << 6n;
const SADE = 1n << 8n;
const ATS = 1n << 25n;
const AMO_HWAD = 1n << 24n;
const MSI_FLAT = 1n << 22n;
const PD8 = 1n << 38n;

/**
 * What an ATS/PRI series contributes to each device's context at probe time: EN_ATS, EN_PRI and
 * PRPR in tc, and (as the MSI remapping series would) a flat MSI page table.
 */
const atsPriFeature: RiscvIommuFeature = {
  name: "ats-pri",
  probeDevice(_iommu, _dev, info) {
    info.dc.tc |= EN_ATS | EN_PRI | PRPR;
    info.dc.msiptp = 1n << 60n | 0x8_1234n;
    info.dc.msi_addr_mask = 0xffn;
    info.dc.msi_addr_pattern = 0x2_8000n;
  },
};

Deno.test("the DC template: a feature's tc and MSI fields survive identity, blocked, paging and back", () => {
  const caps = FAKE_IOMMU_CAPS | ATS | MSI_FLAT | AMO_HWAD;
  const sys = testSystem({ caps, features: [atsPriFeature] });
  const ep = sys.addEndpoint("ep0", 0x42);
  const group = iommu_group_get(ep)!;
  const dma = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  const msi = [1n << 60n | 0x8_1234n, 0xffn, 0x2_8000n];
  const ours = EN_ATS | EN_PRI | PRPR;
  const fsc = (d: RiscvIommuDomain) =>
    BigInt(d.pt.hwInfo().mode) << 60n | BigInt(d.pt.hwInfo().ppn);

  assert.deepEqual(deviceContext(sys, 0x42), [
    ours | V,
    0n,
    BigInt(dma.pscid) << 12n,
    fsc(dma),
    ...msi,
  ], "default DMA domain");
  iommu_group_replace_domain(group, sys.drv.identity_domain);
  assert.deepEqual(deviceContext(sys, 0x42), [ours | V, 0n, 0n, 0n, ...msi], "identity");
  iommu_group_replace_domain(group, sys.drv.blocked_domain);
  assert.deepEqual(deviceContext(sys, 0x42), [ours, 0n, 0n, 0n, ...msi], "blocked: V clear only");

  // A domain's own tc bits (hardware A/D updates) come and go with the domain.
  const hwad = iommu_paging_domain_alloc(ep) as RiscvIommuDomain;
  hwad.dc_tc = SADE;
  iommu_group_replace_domain(group, hwad);
  assert.deepEqual(deviceContext(sys, 0x42), [
    ours | SADE | V,
    0n,
    BigInt(hwad.pscid) << 12n,
    fsc(hwad),
    ...msi,
  ], "paging domain with SADE");
  iommu_group_replace_domain(group, dma);
  assert.deepEqual(deviceContext(sys, 0x42), [
    ours | V,
    0n,
    BigInt(dma.pscid) << 12n,
    fsc(dma),
    ...msi,
  ], "back to the DMA domain: SADE gone, the feature's bits kept");
  iommu_domain_free(hwad);

  device_del(ep);
  assert.deepEqual(deviceContext(sys, 0x42).slice(0, 1), [ours], "released: blocked, bits kept");
});

Deno.test("the DC template: with tc.PDTV from a feature, fsc stays its pdtp on every attach", () => {
  const pdt: RiscvIommuFeature = {
    name: "pasid",
    probeDevice(_iommu, _dev, info) {
      info.dc.tc |= PDTV;
      info.dc.fsc = 1n << 60n | 0x8_0042n; // PD8, the PDT root
    },
  };
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | PD8, features: [pdt] });
  const ep = sys.addEndpoint("ep0", 7);
  const domain = iommu_paging_domain_alloc(ep) as RiscvIommuDomain;
  iommu_attach_device(domain, ep);
  assert.deepEqual(deviceContext(sys, 7), [PDTV | V, 0n, 0n, 1n << 60n | 0x8_0042n]);
  iommu_detach_device(domain, ep);
  assert.deepEqual(deviceContext(sys, 7)[3], 1n << 60n | 0x8_0042n);
  iommu_domain_free(domain);
});

Deno.test("iodir_update() writes the whole context in two phases: V cleared, fields, then tc with V", () => {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS | MSI_FLAT, features: [atsPriFeature] });
  const ep = sys.addEndpoint("ep0", 3);
  const domain = iommu_paging_domain_alloc(ep) as RiscvIommuDomain;
  const base = dcAddress(sys, 3);
  const names = ["tc", "iohgatp", "ta", "fsc", "msiptp", "msi_addr_mask", "msi_addr_pattern"];
  const writes: string[] = [];
  const write64 = sys.ram.write64.bind(sys.ram);
  sys.ram.write64 = (pa, v) => {
    if (pa >= base && pa < base + 64) writes.push(`${names[(pa - base) / 8]}=${v.toString(16)}`);
    write64(pa, v);
  };
  iommu_attach_device(domain, ep);
  const { mode, ppn } = domain.pt.hwInfo();
  const ours = EN_ATS | EN_PRI | PRPR;
  assert.deepEqual(writes, [
    `tc=${ours.toString(16)}`,
    `fsc=${(BigInt(mode) << 60n | BigInt(ppn)).toString(16)}`,
    `ta=${(BigInt(domain.pscid) << 12n).toString(16)}`,
    `tc=${(ours | V).toString(16)}`,
  ]);
  iommu_detach_device(domain, ep);
  iommu_domain_free(domain);
});
