// ATS, PRI and PASID of PCI functions behind the IOMMU: what probe enables (configuration space
// and device-context template), what release undoes, and ATS.INVAL after each invalidation.
import assert from "node:assert/strict";
import { device_del } from "@iommu-lab/kernel";
import {
  type DevIommu,
  iommu_attach_device,
  iommu_detach_device,
  iommu_domain_free,
  iommu_flush_iotlb_all,
  iommu_get_domain_for_dev,
  iommu_group_get,
  iommu_group_replace_domain,
  iommu_map,
  iommu_paging_domain_alloc,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
} from "@iommu-lab/iommu";
import type { RiscvIommuDomain } from "@iommu-lab/riscv-iommu";
import { commandsOf, deviceContext, TC } from "@iommu-lab/riscv-iommu/testing";
import { iopfSystem, pciEndpoint } from "./_test_fixture.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

Deno.test("probe: PASID, ATS (4 KiB STU) and PRI (32 requests) enabled on the function; EN_ATS, EN_PRI, PRPR in its context", () => {
  const sys = iopfSystem();
  const { pdev, cfg, devid, caps } = pciEndpoint(sys);
  assert.deepEqual(caps, { ats: 0x100, pri: 0x110, pasid: 0x120 });
  assert.equal(cfg.word(caps.pasid + 6), 0x1 | 0x2, "PASID enable with EXEC, the feature it has");
  assert.equal(cfg.word(caps.ats + 6), 0x8000, "ATS enable, STU 0: 4 KiB");
  assert.equal(cfg.v[(caps.pri + 12) >> 2], 32, "min(64 the function has, 32)");
  assert.equal(cfg.word(caps.pri + 4), 0x1, "PRI enable");
  assert.deepEqual(
    [pdev.pasidEnabled, pdev.atsEnabled, pdev.priEnabled, pdev.priReqsAlloc],
    [true, true, true, 32],
  );
  assert.equal(deviceContext(sys, devid)[0], TC.V | TC.EN_ATS | TC.EN_PRI | TC.PRPR);
  assert.equal((pdev.iommu as DevIommu).max_pasids, 256, "min(2^8, PD8's 256)");

  device_del(pdev);
  assert.equal(cfg.word(caps.pasid + 6), 0);
  assert.equal(cfg.word(caps.ats + 6) & 0x8000, 0);
  assert.equal(cfg.word(caps.pri + 4) & 1, 0);
  assert.deepEqual(sys.kernel.slab.allocations().filter((n) => n === "RiscvIommuEndpoint"), []);
});

Deno.test("probe: only what the function and its root complex allow", async (t) => {
  const sys = iopfSystem();
  await t.step("a root complex without ATS: nothing enabled", () => {
    const { pdev, cfg, devid, caps } = pciEndpoint(sys, { devfn: 0x08, rcAts: false });
    const controls = [caps.ats + 6, caps.pri + 4, caps.pasid + 6].map((o) => cfg.word(o));
    assert.deepEqual(controls, [0, 0, 0], "ATS, PRI and PASID control registers");
    assert.equal(deviceContext(sys, devid)[0], TC.V);
    device_del(pdev);
  });
  await t.step("ATS without PRI: EN_ATS only", () => {
    const { pdev, devid } = pciEndpoint(sys, { devfn: 0x10, pri: false });
    assert.equal(deviceContext(sys, devid)[0], TC.V | TC.EN_ATS);
    device_del(pdev);
  });
  await t.step("PRI whose responses need no PASID: no PRPR", () => {
    const { pdev, devid } = pciEndpoint(sys, { devfn: 0x18, prgPasid: false });
    assert.equal(deviceContext(sys, devid)[0], TC.V | TC.EN_ATS | TC.EN_PRI);
    device_del(pdev);
  });
  await t.step("no ATS capability: nothing, and no PASID either", () => {
    const { pdev, cfg, devid, caps } = pciEndpoint(sys, { devfn: 0x20, ats: false });
    assert.equal(caps.pasid, 0x110);
    assert.equal(cfg.word(caps.pasid + 6), 0);
    assert.equal(deviceContext(sys, devid)[0], TC.V);
    device_del(pdev);
  });
});

Deno.test("after an IOTLB invalidation: ATS.INVAL of the range to each ATS function, before the IOFENCE.C", () => {
  const sys = iopfSystem();
  const ats = pciEndpoint(sys, { devfn: 0x08 });
  const plain = pciEndpoint(sys, { devfn: 0x10, ats: false });
  const domain = iommu_paging_domain_alloc(ats.pdev) as RiscvIommuDomain;
  iommu_attach_device(domain, ats.pdev);
  iommu_attach_device(domain, plain.pdev);
  iommu_map(domain, 0x20_1000, 0x8020_1000, 0x3000, RW);
  const p = domain.pscid;
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x20_1000, 0x3000)), [
    `IOTINVAL.VMA pscid=${p} addr=0x201000`,
    `IOTINVAL.VMA pscid=${p} addr=0x202000`,
    `IOTINVAL.VMA pscid=${p} addr=0x203000`,
    "ATS.INVAL rid=0x8 range=0x200000+0x4000",
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(commandsOf(sys, () => iommu_flush_iotlb_all(domain)), [
    `IOTINVAL.VMA pscid=${p}`,
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw",
  ]);
  iommu_detach_device(domain, plain.pdev);
  iommu_detach_device(domain, ats.pdev);
  iommu_domain_free(domain);
});

Deno.test("after a device-context change: ATS.INVAL of the whole ATC, in both phases of the update", () => {
  const sys = iopfSystem();
  const { pdev } = pciEndpoint(sys);
  const dma = iommu_get_domain_for_dev(pdev) as RiscvIommuDomain;
  const cmds = commandsOf(
    sys,
    () => iommu_group_replace_domain(iommu_group_get(pdev)!, sys.drv.identity_domain),
  );
  assert.deepEqual(cmds, [
    "IODIR.INVAL_DDT did=0x8",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x8",
    "IOTINVAL.VMA",
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("an ATS invalidation that times out (spec §3.1.2, §3.1.4): in the unmap's own sync, before it returns, the function loses ATS and PRI — EN_ATS, EN_PRI, PRPR out of its context (rewritten in place, §6.3.1) and template, ATS and PRI off in its configuration space — with one error line; it gets no ATS.INVAL again, and keeps PASID", () => {
  const sys = iopfSystem();
  const { pdev, cfg, devid, caps } = pciEndpoint(sys);
  const domain = iommu_paging_domain_alloc(pdev) as RiscvIommuDomain;
  iommu_attach_device(domain, pdev);
  iommu_map(domain, 0x20_0000, 0x8020_0000, 0x2000, RW);
  const p = domain.pscid;
  sys.fake.atsInvalTimeout.add(devid);
  let returned = false;
  const cmds = commandsOf(sys, () => {
    iommu_unmap(domain, 0x20_0000, 0x1000);
    returned = true;
  });
  assert.ok(returned);
  assert.deepEqual(cmds, [
    `IOTINVAL.VMA pscid=${p} addr=0x200000`,
    "ATS.INVAL rid=0x8 range=0x200000+0x1000",
    "IOFENCE.C pr pw", // cmd_to
    "IOFENCE.C pr pw", // completes once the CQ thread cleared it
    "IODIR.INVAL_DDT did=0x8",
    `IOTINVAL.VMA pscid=${p}`,
    "IOFENCE.C pr pw",
  ]);
  assert.equal(deviceContext(sys, devid)[0], TC.V);
  assert.equal(cfg.word(caps.ats + 6) & 0x8000, 0, "ATS Enable");
  assert.equal(cfg.word(caps.pri + 4) & 1, 0, "PRI Enable");
  assert.deepEqual([pdev.atsEnabled, pdev.priEnabled, pdev.pasidEnabled], [false, false, true]);
  assert.deepEqual(sys.kernel.dmesg.grep("ATS invalidation"), [
    `riscv,iommu 3010000.iommu: ${pdev.name} (devid 0x8): ATS invalidation timed out; ATS and PRI disabled, translated requests blocked`,
  ]);

  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x20_1000, 0x1000)), [
    `IOTINVAL.VMA pscid=${p} addr=0x201000`,
    "IOFENCE.C pr pw",
  ]);
  iommu_group_replace_domain(iommu_group_get(pdev)!, sys.drv.identity_domain);
  assert.equal(deviceContext(sys, devid)[0], TC.V, "the template keeps them off");
  iommu_domain_free(domain);
  device_del(pdev);
  assert.equal(sys.kernel.dmesg.grep("ATS invalidation").length, 1);
  assert.deepEqual(sys.kernel.slab.allocations().filter((n) => n === "RiscvIommuEndpoint"), []);
});

Deno.test("an ATS invalidation timeout behind a fence that covered several functions: each gets an ATS.INVAL of its whole ATC and an IOFENCE.C of its own (spec §3.1.4's pairs); only the one whose pair times out again loses ATS", () => {
  const sys = iopfSystem();
  const good = pciEndpoint(sys, { devfn: 0x08 });
  const bad = pciEndpoint(sys, { devfn: 0x10 });
  const domain = iommu_paging_domain_alloc(good.pdev) as RiscvIommuDomain;
  iommu_attach_device(domain, good.pdev);
  iommu_attach_device(domain, bad.pdev);
  iommu_map(domain, 0x20_0000, 0x8020_0000, 0x1000, RW);
  const p = domain.pscid;
  sys.fake.atsInvalTimeout.add(bad.devid);
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x20_0000, 0x1000)), [
    `IOTINVAL.VMA pscid=${p} addr=0x200000`,
    "ATS.INVAL rid=0x8 range=0x200000+0x1000",
    "ATS.INVAL rid=0x10 range=0x200000+0x1000",
    "IOFENCE.C pr pw", // cmd_to: one of the two
    "IOFENCE.C pr pw",
    "ATS.INVAL rid=0x10 all",
    "IOFENCE.C pr pw", // cmd_to: this one
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x10",
    `IOTINVAL.VMA pscid=${p}`,
    "IOFENCE.C pr pw",
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw", // completes: that one is fine
  ]);
  assert.deepEqual(
    [good, bad].map((e) => [deviceContext(sys, e.devid)[0], e.pdev.atsEnabled]),
    [[TC.V | TC.EN_ATS | TC.EN_PRI | TC.PRPR, true], [TC.V, false]],
  );
  assert.deepEqual(sys.kernel.dmesg.grep(/ATS invalidation timed out/).length, 1);
  assert.deepEqual(commandsOf(sys, () => iommu_flush_iotlb_all(domain)), [
    `IOTINVAL.VMA pscid=${p}`,
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw",
  ]);
  iommu_detach_device(domain, bad.pdev);
  iommu_detach_device(domain, good.pdev);
  iommu_domain_free(domain);
});

Deno.test("an ATS invalidation that times out in the first phase of an attach: the context the attach then writes, composed before, gets EN_ATS taken out again before its IOFENCE.C", () => {
  const sys = iopfSystem();
  const { pdev, devid } = pciEndpoint(sys);
  const dma = iommu_get_domain_for_dev(pdev) as RiscvIommuDomain;
  sys.fake.atsInvalTimeout.add(devid);
  const cmds = commandsOf(
    sys,
    () => iommu_group_replace_domain(iommu_group_get(pdev)!, sys.drv.identity_domain),
  );
  assert.deepEqual(cmds, [
    "IODIR.INVAL_DDT did=0x8", // phase 1: V cleared
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "ATS.INVAL rid=0x8 all",
    "IOFENCE.C pr pw", // cmd_to
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x8", // the recovery, on the invalid context
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x8", // phase 2: the identity context, with EN_ATS from before
    "IOTINVAL.VMA",
    "IODIR.INVAL_DDT did=0x8", // EN_ATS out again
    "IOFENCE.C pr pw",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.equal(deviceContext(sys, devid)[0], TC.V);
  assert.equal(pdev.atsEnabled, false);
});
