// PASIDs on the fake IOMMU: the process directory a device gets with its first PASID (PD8, PD17,
// PD20 by capability), the RID's translation in process_id 0, the process contexts of SVA
// domains, and the exact commands of attach and detach.
import assert from "node:assert/strict";
import {
  device_del,
  mm_alloc,
  mmput,
  type MmStruct,
  SATP_MODE_39,
  SATP_MODE_48,
} from "@iommu-lab/kernel";
import {
  dev_iommu_ops,
  iommu_attach_device_pasid,
  iommu_detach_device_pasid,
  iommu_domain_free,
  iommu_get_domain_for_dev,
  iommu_group_get,
  iommu_group_replace_domain,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  iommu_paging_domain_alloc,
  iommu_paging_domain_alloc_flags,
  iommu_sva_bind_device,
  iommu_sva_get_pasid,
  iommu_sva_unbind_device,
} from "@iommu-lab/iommu";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import {
  CAP,
  commandsOf,
  deviceContext,
  FAKE_IOMMU_CAPS,
  TC,
  type TestSystem,
} from "@iommu-lab/riscv-iommu/testing";
import { iopfSystem, pciEndpoint } from "./_test_fixture.ts";
import type { RiscvIommuSvaDomain } from "./mod.ts";

/** A process context (ta, fsc) at `pa`. */
function pc(sys: TestSystem, pa: number): bigint[] {
  return [sys.ram.read64(pa), sys.ram.read64(pa + 8)];
}

/** The root of a device's directory, from its context's pdtp (spec numbers). */
function pdtRoot(sys: TestSystem, devid: number): number {
  return Number(deviceContext(sys, devid)[3] & (2n ** 44n - 1n)) * 4096;
}

function iosatp(d: RiscvIommuDomain): bigint {
  return BigInt(d.pt.hwInfo().mode) << 60n | BigInt(d.pt.hwInfo().ppn);
}

/** The first stage of an mm's page table as a process context's fsc. */
function mmFsc(mm: MmStruct): bigint {
  return BigInt(mm.satp_mode) << 60n | BigInt(mm.pgd / 4096);
}

Deno.test("the first PASID: a PD8 directory, PDTV|DPE with its pdtp, the RID's domain in process_id 0, the exact commands", () => {
  const sys = iopfSystem();
  const { pdev, devid } = pciEndpoint(sys);
  const dma = iommu_get_domain_for_dev(pdev) as RiscvIommuDomain;
  const mm = mm_alloc(sys.kernel, SATP_MODE_48);
  const pages = sys.kernel.pages.allocatedPages;
  let handle!: ReturnType<typeof iommu_sva_bind_device>;
  const cmds = commandsOf(sys, () => handle = iommu_sva_bind_device(pdev, mm));
  assert.deepEqual(cmds, [
    // The context is rewritten for the RID's domain, now through the directory.
    "IODIR.INVAL_DDT did=0x8",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x8",
    "IOTINVAL.VMA",
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw",
  ]);
  assert.equal(sys.kernel.pages.allocatedPages, pages + 1, "one PD8 page");
  const root = pdtRoot(sys, devid);
  const base = TC.V | TC.EN_ATS | TC.EN_PRI | TC.PRPR;
  assert.deepEqual(deviceContext(sys, devid), [
    base | TC.PDTV | TC.DPE,
    0n,
    0n,
    1n << 60n | BigInt(root / 4096),
  ]);
  const sva = handle.domain as RiscvIommuSvaDomain;
  const pasid = iommu_sva_get_pasid(handle);
  assert.equal(pasid, 1);
  assert.deepEqual(pc(sys, root), [BigInt(dma.pscid) << 12n | 1n, iosatp(dma)], "process_id 0");
  assert.deepEqual(pc(sys, root + 16 * pasid), [BigInt(sva.pscid) << 12n | 1n, mmFsc(mm)]);
  assert.notEqual(sva.pscid, dma.pscid);

  // Detach: the context goes invalid and is invalidated, then the bond's last flush.
  const off = commandsOf(sys, () => iommu_sva_unbind_device(handle));
  assert.deepEqual(off, [
    `IODIR.INVAL_PDT did=0x8 pid=0x${pasid.toString(16)}`,
    `IOTINVAL.VMA pscid=${sva.pscid}`,
    `ATS.INVAL rid=0x8 pid=0x${pasid.toString(16)} all`,
    "IOFENCE.C pr pw",
    `IOTINVAL.VMA pscid=${sva.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.equal(sys.ram.read64(root + 16 * pasid) & 1n, 0n);
  assert.equal(deviceContext(sys, devid)[0] & TC.PDTV, TC.PDTV, "the directory stays");

  mmput(mm);
  device_del(pdev);
  device_del(sys.dev);
  assert.equal(sys.kernel.pages.allocatedPages, 0, "released with the device");
  assert.deepEqual(sys.kernel.slab.allocations(), []);
});

Deno.test("under a directory the RID's domain changes in process_id 0; a second stage is refused (EBUSY)", () => {
  const sys = iopfSystem({ caps: FAKE_IOMMU_CAPS | CAP.ATS | 1n << 38n | 1n << 17n });
  const { pdev, devid } = pciEndpoint(sys);
  const mm = mm_alloc(sys.kernel);
  const handle = iommu_sva_bind_device(pdev, mm);
  const root = pdtRoot(sys, devid);
  const group = iommu_group_get(pdev)!;
  const other = iommu_paging_domain_alloc(pdev) as RiscvIommuDomain;
  iommu_group_replace_domain(group, other);
  assert.deepEqual(pc(sys, root), [BigInt(other.pscid) << 12n | 1n, iosatp(other)]);
  iommu_group_replace_domain(group, sys.drv.identity_domain);
  assert.deepEqual(pc(sys, root), [1n, 0n], "identity: first stage Bare, valid");
  iommu_group_replace_domain(group, sys.drv.blocked_domain);
  assert.deepEqual(pc(sys, root), [0n, 0n]);
  assert.equal(deviceContext(sys, devid)[0] & TC.V, 0n);
  const s2 = iommu_paging_domain_alloc_flags(pdev, IOMMU_HWPT_ALLOC_NEST_PARENT);
  assert.throws(() => iommu_group_replace_domain(group, s2), { code: "EBUSY" });
  assert.equal(iommu_get_domain_for_dev(pdev), sys.drv.blocked_domain);
  iommu_group_replace_domain(group, other);
  iommu_sva_unbind_device(handle);
  for (const d of [s2]) iommu_domain_free(d);
});

Deno.test("with no PASID attached, a second stage goes in without the directory (PDTV and DPE out, fsc Bare), PASIDs are refused while it is there (EBUSY), a first stage brings the directory back", () => {
  const sys = iopfSystem({ caps: FAKE_IOMMU_CAPS | CAP.ATS | 1n << 38n | 1n << 17n });
  const { pdev, devid } = pciEndpoint(sys);
  const dma = iommu_get_domain_for_dev(pdev) as RiscvIommuDomain;
  const mm = mm_alloc(sys.kernel);
  iommu_sva_unbind_device(iommu_sva_bind_device(pdev, mm));
  const root = pdtRoot(sys, devid);
  const base = TC.V | TC.EN_ATS | TC.EN_PRI | TC.PRPR;
  const group = iommu_group_get(pdev)!;
  const s2 = iommu_paging_domain_alloc_flags(
    pdev,
    IOMMU_HWPT_ALLOC_NEST_PARENT,
  ) as RiscvIommuDomain;
  iommu_group_replace_domain(group, s2);
  const hw = s2.pt.hwInfo();
  assert.deepEqual(deviceContext(sys, devid), [
    base,
    BigInt(hw.mode) << 60n | BigInt(s2.gscid) << 44n | BigInt(hw.ppn),
    0n,
    0n,
  ]);
  assert.deepEqual(pc(sys, root), [0n, iosatp(dma)], "process_id 0 no longer valid");
  assert.throws(() => iommu_sva_bind_device(pdev, mm), { code: "EBUSY" });
  assert.deepEqual(deviceContext(sys, devid)[0], base, "nothing changed");

  iommu_group_replace_domain(group, dma);
  assert.deepEqual(deviceContext(sys, devid), [
    base | TC.PDTV | TC.DPE,
    0n,
    0n,
    1n << 60n | BigInt(root / 4096),
  ]);
  assert.deepEqual(pc(sys, root), [BigInt(dma.pscid) << 12n | 1n, iosatp(dma)]);
  const handle = iommu_sva_bind_device(pdev, mm);
  assert.equal(pdtRoot(sys, devid), root, "the same directory");
  iommu_sva_unbind_device(handle);
  iommu_domain_free(s2);
  mmput(mm);
});

Deno.test("PD17 and PD20 by capability: the process context of a PASID is found through PDI[2] and PDI[1]", () => {
  for (const [cap, mode, bits] of [[CAP.PD17, 2n, 17], [CAP.PD20, 3n, 20]] as const) {
    const sys = iopfSystem({ caps: FAKE_IOMMU_CAPS | CAP.ATS | cap });
    const { pdev, devid } = pciEndpoint(sys, { pasidBits: bits });
    const mm = mm_alloc(sys.kernel, SATP_MODE_39);
    // An SVA domain attached straight to a high PASID (binds take the lowest free one).
    const ops = dev_iommu_ops(pdev);
    const domain = ops.domain_alloc_sva!(pdev, mm);
    domain.owner = ops;
    const pasid = bits === 20 ? 0xa2345 : 0x1_2345;
    iommu_attach_device_pasid(domain, pdev, pasid);
    const dc = deviceContext(sys, devid);
    assert.equal(dc[3] >> 60n, mode);
    // Walk as the IOMMU would: PDI[2] = bits 19:17, PDI[1] = 16:8, PDI[0] = 7:0.
    let table = pdtRoot(sys, devid);
    const indexes = bits === 20 ? [pasid >> 17 & 7, pasid >> 8 & 0x1ff] : [pasid >> 8 & 0x1ff];
    for (const i of indexes) {
      const pdte = sys.ram.read64(table + i * 8);
      assert.equal(pdte & 1n, 1n);
      table = Number(pdte >> 10n & (2n ** 44n - 1n)) * 4096;
    }
    const sva = domain as RiscvIommuSvaDomain;
    assert.deepEqual(pc(sys, table + (pasid & 0xff) * 16), [
      BigInt(sva.pscid) << 12n | 1n,
      mmFsc(mm),
    ]);
    iommu_detach_device_pasid(domain, pdev, pasid);
    iommu_domain_free(domain);
    mmput(mm);
    device_del(pdev);
    device_del(sys.dev);
    assert.equal(sys.kernel.pages.allocatedPages, 0);
  }
});

Deno.test("SVA needs PASID on the function (EOPNOTSUPP) and PRI for its faults (ENODEV), and leaves nothing when refused", () => {
  const sys = iopfSystem();
  const mm = mm_alloc(sys.kernel);
  const noPri = pciEndpoint(sys, { devfn: 0x08, pri: false });
  const pages = sys.kernel.pages.allocatedPages;
  const objects = sys.kernel.slab.allocatedObjects;
  assert.throws(() => iommu_sva_bind_device(noPri.pdev, mm), { code: "ENODEV" });
  assert.equal(deviceContext(sys, noPri.devid)[0] & TC.PDTV, 0n, "no directory");
  assert.equal(sys.kernel.pages.allocatedPages, pages);
  // Only what stays with the mm until its last mmdrop(): its PASID and its notifier list.
  assert.equal(sys.kernel.slab.allocatedObjects, objects + 2);
  // A function with PASIDs but no ATS: PASID is never enabled on it.
  const noAts = pciEndpoint(sys, { devfn: 0x10, ats: false });
  const ops = dev_iommu_ops(noAts.pdev);
  const d = ops.domain_alloc_sva!(noAts.pdev, mm);
  d.owner = ops;
  assert.throws(() => iommu_attach_device_pasid(d, noAts.pdev, 3), { code: "EOPNOTSUPP" });
  iommu_domain_free(d);
  // An mm in a format the IOMMU does not walk.
  const sv39only = iopfSystem({ caps: CAP.ATS | 1n << 9n | 1n << 38n | FAKE_IOMMU_CAPS & 0xffn });
  const e = pciEndpoint(sv39only);
  assert.throws(() => iommu_sva_bind_device(e.pdev, mm_alloc(sv39only.kernel, SATP_MODE_48)), {
    code: "EOPNOTSUPP",
  });
});
