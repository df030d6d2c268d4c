// The prerequisite hooks the series packages stand on, each exercised by a small test feature
// that uses it the way its series will (per-device hooks are in feature_test.ts).
import assert from "node:assert/strict";
import { Device, device_add, device_del, DeviceTree, Errno, kmalloc } from "@iommu-lab/kernel";
import {
  dev_iommu_ops,
  dev_iommu_priv_get,
  iommu_attach_device,
  iommu_attach_device_pasid,
  iommu_attach_group,
  iommu_detach_device,
  iommu_detach_device_pasid,
  iommu_domain_free,
  iommu_flush_iotlb_all,
  iommu_get_domain_for_dev,
  iommu_group_get,
  iommu_group_replace_domain,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_map,
  iommu_paging_domain_alloc,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
  type IommuDirtyOps,
} from "@iommu-lab/iommu";
import {
  riscv_iommu_cmd_ats_inval,
  riscv_iommu_cmd_ats_set_all,
  riscv_iommu_cmd_ats_set_devid,
  riscv_iommu_cmd_ats_set_range,
  riscv_iommu_cmd_iodir_inval_ddt,
  riscv_iommu_cmd_iodir_set_did,
  RISCV_IOMMU_INTR_PQ,
  RISCV_IOMMU_IPSR_PIP,
  RISCV_IOMMU_REG_IPSR,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
  RiscvIommuCommand,
} from "./bits.ts";
import type { RiscvIommuFeature } from "./feature.ts";
import {
  riscv_iommu_alloc_paging_domain,
  riscv_iommu_bond_link,
  riscv_iommu_bond_unlink,
  riscv_iommu_cmd_send,
  riscv_iommu_cmd_sync,
  riscv_iommu_domain_alloc_pscid,
  riscv_iommu_free_paging_domain,
  riscv_iommu_get_dc,
  riscv_iommu_get_device,
  RISCV_IOMMU_IOTINVAL_TIMEOUT,
  riscv_iommu_iotlb_inval,
  riscv_iommu_queue_consume,
  riscv_iommu_queue_release,
  riscv_iommu_read_dc,
  type RiscvIommuDc,
  type RiscvIommuInfo,
} from "./internal.ts";
import { riscv_iommu_writel, RiscvIommuDomain, RiscvIommuDriver } from "./mod.ts";
import {
  CAP,
  commandsOf,
  dcAddress,
  decodeCommand,
  deviceContext,
  FAKE_IOMMU_CAPS,
  TC,
  testSystem,
} from "./testing.ts";

const RW = IOMMU_READ | IOMMU_WRITE;

const { ATS, AMO_HWAD, MSI_FLAT, PD8 } = CAP;
const { V, EN_ATS, EN_PRI, PDTV, PRPR, DPE, SADE } = TC;

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
  assert.deepEqual(Object.values(riscv_iommu_read_dc(sys.iommu!, ep)), deviceContext(sys, 0x42));
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

/**
 * ATS.INVAL after IOTLB and directory invalidations, as an ATS series adds it for the devices it
 * enabled ATS on (here: those named "ats*").
 */
function atsInvalFeature(): RiscvIommuFeature {
  const cmd = new RiscvIommuCommand();
  const enabled = (info: RiscvIommuInfo) => info.feature_data.get("ats") === true;
  return {
    name: "ats",
    probeDevice: (_iommu, dev, info) =>
      void info.feature_data.set("ats", dev.name.startsWith("ats")),
    iotlbInval(bond, _domain, gather) {
      if (!enabled(dev_iommu_priv_get<RiscvIommuInfo>(bond.dev))) return;
      riscv_iommu_cmd_ats_inval(cmd);
      riscv_iommu_cmd_ats_set_devid(cmd, bond.dev.fwspec!.ids[0]);
      if (gather.leafLevels + gather.tableLevels === 0 || gather.startPfn >= gather.endPfn) {
        riscv_iommu_cmd_ats_set_all(cmd);
      } else {
        // The smallest naturally aligned block holding the range.
        let pages = 1;
        while (Math.floor(gather.startPfn / pages) !== Math.floor((gather.endPfn - 1) / pages)) {
          pages *= 2;
        }
        riscv_iommu_cmd_ats_set_range(
          cmd,
          Math.floor(gather.startPfn / pages) * pages * 4096,
          pages * 4096,
        );
      }
      riscv_iommu_cmd_send(bond.iommu, cmd);
    },
    iodirInval(iommu, dev, devid) {
      if (!enabled(dev_iommu_priv_get<RiscvIommuInfo>(dev))) return;
      riscv_iommu_cmd_ats_inval(cmd);
      riscv_iommu_cmd_ats_set_devid(cmd, devid);
      riscv_iommu_cmd_ats_set_all(cmd);
      riscv_iommu_cmd_send(iommu, cmd);
    },
  };
}

Deno.test("after an IOTLB invalidation: the feature's ATS.INVAL per ATS device, before the IOFENCE.C", () => {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features: [atsInvalFeature()] });
  const ats = sys.addEndpoint("ats0", 0x10);
  const plain = sys.addEndpoint("nic0", 0x20);
  const domain = iommu_paging_domain_alloc(ats) as RiscvIommuDomain;
  iommu_attach_group(domain, iommu_group_get(ats)!);
  iommu_attach_group(domain, iommu_group_get(plain)!);
  iommu_map(domain, 0x10_1000, 0x8010_1000, 0x3000, RW);
  const p = domain.pscid;
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x10_1000, 0x3000)), [
    `IOTINVAL.VMA pscid=${p} addr=0x101000`,
    `IOTINVAL.VMA pscid=${p} addr=0x102000`,
    `IOTINVAL.VMA pscid=${p} addr=0x103000`,
    "ATS.INVAL rid=0x10 range=0x100000+0x4000",
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(commandsOf(sys, () => iommu_flush_iotlb_all(domain)), [
    `IOTINVAL.VMA pscid=${p}`,
    "ATS.INVAL rid=0x10 all",
    "IOFENCE.C pr pw",
  ]);
  iommu_detach_device(domain, plain);
  iommu_detach_device(domain, ats);
  iommu_domain_free(domain);
});

Deno.test("after a directory invalidation: the feature's ATS.INVAL of the device, before the IOFENCE.C", () => {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features: [atsInvalFeature()] });
  const ats = sys.addEndpoint("ats0", 0x10);
  const dma = iommu_get_domain_for_dev(ats) as RiscvIommuDomain;
  const cmds = commandsOf(
    sys,
    () => iommu_group_replace_domain(iommu_group_get(ats)!, sys.drv.identity_domain),
  );
  assert.deepEqual(cmds, [
    "IODIR.INVAL_DDT did=0x10",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "ATS.INVAL rid=0x10 all",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x10",
    "IOTINVAL.VMA",
    "ATS.INVAL rid=0x10 all",
    "IOFENCE.C pr pw",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  // A device the feature did not enable ATS on gets none.
  const plain = sys.addEndpoint("nic0", 0x20);
  assert.ok(
    !commandsOf(
      sys,
      () => iommu_group_replace_domain(iommu_group_get(plain)!, sys.drv.blocked_domain),
    )
      .some((c) => c.startsWith("ATS.INVAL")),
  );
});

Deno.test("cmdTimeout: a sync whose IOFENCE.C timed out (cmd_to, spec §3.1.2) tells the features in that sync, once the CQ thread reported and cleared the bit and the fence completed, before the sync returns; the hook can read the ring, queue commands and sync; a sync without timeout does not call it", () => {
  const seen: string[] = [];
  const cmd = new RiscvIommuCommand();
  const sys = testSystem({
    caps: FAKE_IOMMU_CAPS | ATS,
    features: [{
      ...atsInvalFeature(),
      cmdTimeout(iommu, index) {
        const q = iommu.cmdq;
        const at = (i: number) => {
          const pa = q.phys + (i & q.mask) * 16;
          return decodeCommand(sys.ram.read64(pa), sys.ram.read64(pa + 8));
        };
        const cmdTo = sys.fake.qcsr[0] & 1 << 9 ? "set" : "clear";
        const reported = sys.kernel.dmesg.grep("timeout:1").length;
        seen.push(`${at(index)} after ${at(index - 1)}; cmd_to ${cmdTo}, reported ${reported}`);
        riscv_iommu_cmd_iodir_inval_ddt(cmd);
        riscv_iommu_cmd_iodir_set_did(cmd, 0x10);
        riscv_iommu_cmd_send(iommu, cmd);
        riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
      },
    }],
  });
  const ats = sys.addEndpoint("ats0", 0x10);
  const domain = iommu_paging_domain_alloc(ats) as RiscvIommuDomain;
  iommu_attach_group(domain, iommu_group_get(ats)!);
  iommu_map(domain, 0x10_1000, 0x8010_1000, 0x1000, RW);
  sys.fake.atsInvalTimeout.add(0x10);
  const cmds = commandsOf(sys, () => {
    iommu_unmap(domain, 0x10_1000, 0x1000);
    seen.push("unmap returned");
  });
  assert.deepEqual(cmds, [
    `IOTINVAL.VMA pscid=${domain.pscid} addr=0x101000`,
    "ATS.INVAL rid=0x10 range=0x101000+0x1000",
    "IOFENCE.C pr pw", // stops on cmd_to
    "IOFENCE.C pr pw", // runs again once the CQ thread cleared it
    "IODIR.INVAL_DDT did=0x10",
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(seen, [
    "IOFENCE.C pr pw after ATS.INVAL rid=0x10 range=0x101000+0x1000; cmd_to clear, reported 1",
    "unmap returned",
  ]);
  assert.deepEqual(sys.kernel.dmesg.grep("command execution timeout"), []);
  sys.fake.atsInvalTimeout.clear();
  iommu_flush_iotlb_all(domain);
  assert.equal(seen.length, 2, "no timeout, no call");
  iommu_detach_device(domain, ats);
  iommu_domain_free(domain);
});

Deno.test("device_id → device: a page-request thread finds the Device of a record's DID", () => {
  const log: string[] = [];
  const pq: RiscvIommuFeature = {
    name: "pq",
    queue: {
      qid: RISCV_IOMMU_INTR_PQ,
      qbr: RISCV_IOMMU_REG_PQB,
      qcr: RISCV_IOMMU_REG_PQCSR,
      log2sz: 4,
      entry_size: 16,
      thread(iommu, q) {
        riscv_iommu_writel(iommu, RISCV_IOMMU_REG_IPSR, RISCV_IOMMU_IPSR_PIP);
        const mem = iommu.dev.kernel.mem;
        for (let n = riscv_iommu_queue_consume(q); n > 0; n = riscv_iommu_queue_consume(q)) {
          for (let i = 0; i < n; i++) {
            const did = Number(mem.read64(q.phys + ((q.head + i) & q.mask) * 16) >> 40n);
            log.push(
              `0x${did.toString(16)}: ${riscv_iommu_get_device(iommu, did)?.name ?? "gone"}`,
            );
          }
          riscv_iommu_queue_release(q, n);
        }
      },
    },
  };
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features: [pq] });
  const ep0 = sys.addEndpoint("ep0", 0x42, 0x43);
  sys.addEndpoint("ep1", 0x100);
  const request = (did: number) => {
    sys.fake.record(2, [BigInt(did) << 40n, 1n << 2n]);
    sys.kernel.clock.advance(1000);
  };
  for (const did of [0x42, 0x43, 0x100, 0x7]) request(did);
  device_del(ep0);
  request(0x43);
  assert.deepEqual(log, ["0x42: ep0", "0x43: ep0", "0x100: ep1", "0x7: gone", "0x43: gone"]);
});

/**
 * Two series that both need the routed ops, loaded together: a dirty-tracking one owning
 * IOMMU_HWPT_ALLOC_DIRTY_TRACKING (its domains, and only those, get dirty_ops) and a HW-queue one
 * owning a hw_info type. The dirty one runs only on IOMMUs with AMO_HWAD.
 */
function routedFeatures(seen: string[]) {
  const dirtyOps: IommuDirtyOps = {
    set_dirty_tracking: () => {},
    read_and_clear_dirty: () => {},
  };
  const dirty: RiscvIommuFeature = {
    name: "dirty",
    missingCapability: (iommu) => (iommu.caps & AMO_HWAD) !== 0n ? null : "capabilities.AMO_HWAD",
    allocFlags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    hwInfoTypes: [0x10],
    ops: {
      domain_alloc_paging_flags(dev, flags, user_data) {
        seen.push(`dirty alloc 0x${flags.toString(16)} data ${user_data?.type ?? "-"}`);
        const domain = riscv_iommu_alloc_paging_domain(dev);
        domain.dirty_ops = dirtyOps;
        return domain;
      },
      hw_info: (_dev, type) => ({ type: 0x10, data: new Uint8Array([type]) }),
    },
  };
  const hwq: RiscvIommuFeature = {
    name: "hw-queue",
    hwInfoTypes: [0x20],
    ops: { hw_info: () => ({ type: 0x20, data: new Uint8Array([0x20]) }) },
  };
  return { dirty, hwq, dirtyOps };
}

Deno.test("routed ops: allocation flags and hw_info types go to the feature that owns them", () => {
  const seen: string[] = [];
  const { dirty, hwq, dirtyOps } = routedFeatures(seen);
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | AMO_HWAD, features: [dirty, hwq] });
  const ep = sys.addEndpoint("ep0", 1);
  assert.deepEqual(seen, [], "the default domain came from the base driver");
  const plain = iommu_get_domain_for_dev(ep)!;
  assert.equal(plain.dirty_ops, null);

  const data = { type: 3, data: new Uint8Array(8) };
  const tracked = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, data);
  assert.deepEqual(seen, ["dirty alloc 0x2 data 3"]);
  assert.equal(tracked.dirty_ops, dirtyOps, "the domain's own dirty ops");
  iommu_domain_free(tracked);

  const objects = sys.kernel.slab.allocatedObjects;
  for (const flags of [IOMMU_HWPT_ALLOC_PASID, 1 << 9, IOMMU_HWPT_ALLOC_DIRTY_TRACKING | 1 << 9]) {
    assert.throws(() => iommu_paging_domain_alloc_flags(ep, flags), { code: "EOPNOTSUPP" });
  }
  assert.throws(() => iommu_paging_domain_alloc_flags(ep, 0, data), { code: "EOPNOTSUPP" });
  assert.equal(sys.kernel.slab.allocatedObjects, objects, "refused allocations leave nothing");

  const ops = dev_iommu_ops(ep);
  assert.deepEqual(ops.hw_info!(ep, IOMMU_HW_INFO_TYPE_DEFAULT).type, 0x10, "first feature");
  assert.deepEqual(ops.hw_info!(ep, 0x20).type, 0x20);
  assert.deepEqual(ops.hw_info!(ep, 0x10).data, new Uint8Array([0x10]));
  assert.throws(() => ops.hw_info!(ep, 0x30), { code: "EOPNOTSUPP" });
  assert.equal(seen.length, 1);
});

Deno.test("attachDev: the allocating feature may refuse an attach of its domain before anything changes", () => {
  const seen: string[] = [];
  const { dirty } = routedFeatures(seen);
  const refusing: RiscvIommuFeature = {
    ...dirty,
    attachDev(domain, dev, iommu) {
      seen.push(`${dev.name} on ${iommu.dev.name}: own domain ${domain.feature === refusing}`);
      if (dev.name === "ep1") throw new Errno("EINVAL", "cannot track");
    },
  };
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | AMO_HWAD, features: [refusing] });
  const ep0 = sys.addEndpoint("ep0", 1);
  const ep1 = sys.addEndpoint("ep1", 2);
  const tracked = iommu_paging_domain_alloc_flags(ep0, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  assert.equal((tracked as RiscvIommuDomain).feature, refusing);
  iommu_attach_device(tracked, ep0);
  const dc = deviceContext(sys, 2);
  const objects = sys.kernel.slab.allocatedObjects;
  const cmds = commandsOf(
    sys,
    () => assert.throws(() => iommu_attach_device(tracked, ep1), { code: "EINVAL" }),
  );
  assert.deepEqual(cmds, [], "no invalidation: the context was never touched");
  assert.deepEqual(deviceContext(sys, 2), dc);
  assert.equal(sys.kernel.slab.allocatedObjects, objects, "no bond");
  assert.deepEqual((tracked as RiscvIommuDomain).bonds.map((b) => b.dev), [ep0]);
  assert.deepEqual(seen, [
    "dirty alloc 0x2 data -",
    "ep0 on 3010000.iommu: own domain true",
    "ep1 on 3010000.iommu: own domain true",
  ]);
  // The base driver's domains ask nobody.
  const plain = iommu_paging_domain_alloc(ep1);
  iommu_attach_device(plain, ep1);
  assert.equal(seen.length, 3);
  iommu_detach_device(plain, ep1);
  iommu_domain_free(plain);
  iommu_detach_device(tracked, ep0);
  iommu_domain_free(tracked);
});

Deno.test("routed ops: a feature skipped on an IOMMU owns nothing there (EOPNOTSUPP)", () => {
  const seen: string[] = [];
  const { dirty, hwq } = routedFeatures(seen);
  const sys = testSystem({ features: [dirty, hwq] }); // no AMO_HWAD
  const ep = sys.addEndpoint("ep0", 1);
  assert.throws(
    () => iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_DIRTY_TRACKING),
    { code: "EOPNOTSUPP" },
  );
  assert.equal(dev_iommu_ops(ep).hw_info!(ep, IOMMU_HW_INFO_TYPE_DEFAULT).type, 0x20);
  assert.throws(() => dev_iommu_ops(ep).hw_info!(ep, 0x10), { code: "EOPNOTSUPP" });
  assert.deepEqual(seen, []);
});

Deno.test("routed ops: features owning the same flag or type, or owning nothing, are EINVAL", () => {
  const alloc = {
    domain_alloc_paging_flags: (dev: Device) => riscv_iommu_alloc_paging_domain(dev),
  };
  const owner = (name: string, allocFlags: number) => ({ name, allocFlags, ops: alloc });
  assert.throws(
    () => new RiscvIommuDriver({ features: [owner("a", 2), owner("b", 6)] }),
    { code: "EINVAL", message: /Feature b cannot take allocation flags 0x2/ },
  );
  assert.throws(
    () => new RiscvIommuDriver({ features: [{ name: "a", ops: alloc }] }),
    { code: "EINVAL", message: /allocFlags and domain_alloc_paging_flags go together/ },
  );
  assert.throws(
    () => new RiscvIommuDriver({ features: [{ name: "a", hwInfoTypes: [1] }] }),
    { code: "EINVAL", message: /hwInfoTypes and hw_info go together/ },
  );
});

Deno.test("a feature skipped for a missing capability leaves one dmesg line naming both", () => {
  const probed: string[] = [];
  const needs = (name: string, bit: bigint, cap: string): RiscvIommuFeature => ({
    name,
    missingCapability: (iommu) => (iommu.caps & bit) !== 0n ? null : cap,
    probe: () => void probed.push(name),
  });
  const features = [
    needs("page-requests", ATS, "capabilities.ATS"),
    needs("dirty-tracking", AMO_HWAD, "capabilities.AMO_HWAD"),
  ];
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features });
  device_del(sys.addEndpoint("ep0", 1));
  assert.deepEqual(probed, ["page-requests"]);
  assert.deepEqual(sys.kernel.dmesg.grep("disabled"), [
    "riscv,iommu 3010000.iommu: dirty-tracking disabled: no capabilities.AMO_HWAD",
  ]);
});

/**
 * A PASID series' use of `attachRid`: with PDTV in the template (a PDT), the RID's translation
 * goes to the feature, which records it with the context's state at that moment.
 */
function pdtFeature(log: string[], refuse: (dc: RiscvIommuDc) => boolean): RiscvIommuFeature {
  return {
    name: "pdt",
    probeDevice(_iommu, _dev, info) {
      info.dc.tc |= PDTV | DPE;
      info.dc.fsc = 1n << 60n | 0x8_0042n;
    },
    attachRid(iommu, dev, _info, dc, fsc, ta) {
      const cur = iommu.dev.kernel.mem.read64(riscv_iommu_get_dc(iommu, dev.fwspec!.ids[0]));
      log.push(
        `rid fsc=${fsc.toString(16)} ta=${ta.toString(16)} V=${dc.tc & V} dc.fsc=${
          dc.fsc.toString(16)
        } before=${cur & V}`,
      );
      if (refuse(dc)) throw new Errno("EBUSY", "a second stage under a PDT");
    },
  };
}

Deno.test("attachRid: under PDTV every attach hands the domain's first stage to the feature before the context changes", () => {
  const log: string[] = [];
  const caps = FAKE_IOMMU_CAPS | PD8 | 1n << 17n; // Sv39x4
  const sys = testSystem({ caps, features: [pdtFeature(log, (dc) => dc.iohgatp !== 0n)] });
  const ep = sys.addEndpoint("ep0", 7);
  const group = iommu_group_get(ep)!;
  const dma = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  const fsc = BigInt(dma.pt.hwInfo().mode) << 60n | BigInt(dma.pt.hwInfo().ppn);
  const pdtp = "1000000000080042";
  assert.deepEqual(log, [
    `rid fsc=${fsc.toString(16)} ta=${
      (BigInt(dma.pscid) << 12n).toString(16)
    } V=1 dc.fsc=${pdtp} before=0`,
  ]);
  iommu_group_replace_domain(group, sys.drv.identity_domain);
  iommu_group_replace_domain(group, sys.drv.blocked_domain);
  assert.deepEqual(log.slice(1), [
    `rid fsc=0 ta=0 V=1 dc.fsc=${pdtp} before=1`,
    `rid fsc=0 ta=0 V=0 dc.fsc=${pdtp} before=1`,
  ]);
  assert.deepEqual(deviceContext(sys, 7), [PDTV | DPE, 0n, 0n, 1n << 60n | 0x8_0042n]);

  // The feature refuses a second stage: the attach fails and nothing changed.
  const s2 = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT) as RiscvIommuDomain;
  const cmds = commandsOf(sys, () => {
    assert.throws(() => iommu_group_replace_domain(group, s2), { code: "EBUSY" });
  });
  assert.deepEqual(cmds, []);
  assert.equal(s2.bonds.length, 0);
  assert.equal(iommu_get_domain_for_dev(ep), sys.drv.blocked_domain);
  iommu_domain_free(s2);
});

Deno.test("blockedDomainOps: the core detaches a PASID through the blocking domain's set_dev_pasid", () => {
  const log: string[] = [];
  const pasids: RiscvIommuFeature = {
    name: "pasid",
    probe: (iommu) => void (iommu.iommu.max_pasids = 256),
    domainOps: {
      set_dev_pasid: (_d, dev, pasid, old) => void log.push(`set ${dev.name} ${pasid} ${old}`),
    },
    blockedDomainOps: {
      set_dev_pasid: (d, dev, pasid, old) =>
        void log.push(`blocked ${dev.name} ${pasid} ${d === sys.drv.blocked_domain} ${!!old}`),
    },
  };
  const sys = testSystem({ features: [pasids] });
  // A device whose firmware node says it tags 8-bit PASIDs.
  const ep = new Device(sys.kernel, {
    name: "ep0",
    bus: sys.dev.bus,
    fwnode: new DeviceTree().root.addChild("ep0").set("pasid-num-bits", [8]),
  });
  device_add(ep);
  ep.fwspec = { fwnode: sys.fwnode, ids: [5], flags: 0 };
  sys.kernel.iommuLayer!.probeDevice(ep);
  const domain = iommu_paging_domain_alloc(ep);
  iommu_attach_device_pasid(domain, ep, 9);
  iommu_detach_device_pasid(domain, ep, 9);
  assert.deepEqual(log, ["set ep0 9 null", "blocked ep0 9 true true"]);
  assert.equal(sys.drv.blocked_domain.ops.attach_dev, sys.drv.ops.blocked_domain!.ops.attach_dev);
  assert.throws(
    () =>
      new RiscvIommuDriver({ features: [{ name: "x", blockedDomainOps: { attach_dev() {} } }] }),
    { code: "EINVAL", message: /cannot replace attach_dev of the base driver/ },
  );
  iommu_domain_free(domain);
});

Deno.test("a series' own domain: a PSCID of the driver instance, bonds its invalidation follows, freed by the base", () => {
  const sys = testSystem();
  const ep = sys.addEndpoint("ep0", 3);
  const iommu = sys.iommu!;
  const objects = sys.kernel.slab.allocatedObjects;
  const domain = kmalloc(
    sys.kernel,
    new RiscvIommuDomain(sys.drv.paging_domain_ops, sys.kernel, sys.drv, false),
  );
  riscv_iommu_domain_alloc_pscid(domain);
  const dma = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  assert.ok(domain.pscid > 0 && domain.pscid !== dma.pscid, "from the shared PSCID space");
  riscv_iommu_bond_link(domain, ep, iommu);
  const gather = { startPfn: 0x10, endPfn: 0x12, leafLevels: 1, tableLevels: 0 };
  assert.deepEqual(commandsOf(sys, () => riscv_iommu_iotlb_inval(domain, gather)), [
    `IOTINVAL.VMA pscid=${domain.pscid} addr=0x10000`,
    `IOTINVAL.VMA pscid=${domain.pscid} addr=0x11000`,
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(commandsOf(sys, () => riscv_iommu_bond_unlink(domain, ep, iommu)), [
    `IOTINVAL.VMA pscid=${domain.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  riscv_iommu_free_paging_domain(domain);
  assert.equal(sys.kernel.slab.allocatedObjects, objects);
});
