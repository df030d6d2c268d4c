// Second-stage (iohgatp) paging domains of the base driver: allocation with
// IOMMU_HWPT_ALLOC_NEST_PARENT, the attach's register and command sequence, IOTINVAL.GVMA with the
// first stage's stride rules, a feature allocating them for dirty tracking, and a fail-nth sweep.
import assert from "node:assert/strict";
import { type Device, device_del } from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_detach_device,
  iommu_domain_free,
  iommu_flush_iotlb_all,
  iommu_get_domain_for_dev,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  iommu_iova_to_phys,
  iommu_map,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
  iommu_unmap,
  IOMMU_WRITE,
  type IommuDirtyOps,
} from "@iommu-lab/iommu";
import type { RiscvIommuFeature } from "./feature.ts";
import {
  riscv_iommu_alloc_paging_domain,
  riscv_iommu_iodir_update,
  riscv_iommu_read_dc,
} from "./internal.ts";
import { type RiscvIommuDomain, RiscvIommuDriver } from "./mod.ts";
import {
  CAP,
  commandsOf,
  dcAddress,
  deviceContext,
  FAKE_IOMMU_CAPS,
  mmioTrace,
  TC,
  type TestSystem,
  testSystem,
  type TestSystemOptions,
} from "./testing.ts";
import { FailNthSteps, failNthSweep } from "@iommu-lab/kernel/testing";

const { SV39X4, SV48X4, SV57X4, AMO_HWAD, NL, S } = CAP;
const { GADE } = TC;
const X4 = SV39X4 | SV48X4 | SV57X4;
const RW = IOMMU_READ | IOMMU_WRITE;

/** Records the driver's writes to the base-format device context of `devid`, as `"tc=1"`. */
function dcWrites(sys: TestSystem, devid: number): string[] {
  const base = dcAddress(sys, devid);
  const writes: string[] = [];
  const write64 = sys.ram.write64.bind(sys.ram);
  sys.ram.write64 = (pa, v) => {
    if (pa >= base && pa < base + 32) {
      writes.push(`${["tc", "iohgatp", "ta", "fsc"][(pa - base) / 8]}=${v.toString(16)}`);
    }
    write64(pa, v);
  };
  return writes;
}

/** A system with one endpoint (ID 5) in its default DMA domain and a second-stage domain on it. */
function withS2(opts: TestSystemOptions = {}) {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | X4, ...opts });
  const ep = sys.addEndpoint("ep0", 5);
  const dma = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  const s2 = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT) as RiscvIommuDomain;
  return { sys, ep, dma, s2 };
}

Deno.test("NEST_PARENT allocates an iohgatp domain: the widest x4 mode, a GSCID, GPAs from 0", async (t) => {
  for (
    const [caps, bits, mode] of [[SV39X4, 41, 8], [SV39X4 | SV48X4, 50, 9], [X4, 59, 10]] as const
  ) {
    await t.step(`Sv${bits - 2}x4`, () => {
      const sys = testSystem({ caps: FAKE_IOMMU_CAPS | caps });
      const ep = sys.addEndpoint("ep0", 3);
      const d = iommu_paging_domain_alloc_flags(
        ep,
        IOMMU_HWPT_ALLOC_NEST_PARENT,
      ) as RiscvIommuDomain;
      assert.equal(d.second_stage, true);
      assert.deepEqual([d.gscid, d.pscid], [1, 0]);
      assert.equal(d.pt.vaBits, bits);
      assert.equal(d.pt.hwInfo().mode, mode);
      assert.equal(d.pt.hwInfo().rootPa % 16384, 0, "16 KiB root, 16 KiB aligned");
      assert.equal(d.geometry.aperture_start, 0);
      assert.equal(d.geometry.aperture_end, Math.min(2 ** bits, 2 ** 53) - 1);
      iommu_domain_free(d);
    });
  }
  await t.step("no x4 mode: EOPNOTSUPP, nothing left behind", () => {
    const sys = testSystem();
    const ep = sys.addEndpoint("ep0", 3);
    const objects = sys.kernel.slab.allocatedObjects;
    const pages = sys.kernel.pages.allocatedPages;
    assert.throws(
      () => iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT),
      { code: "EOPNOTSUPP" },
    );
    assert.equal(sys.kernel.slab.allocatedObjects, objects);
    assert.equal(sys.kernel.pages.allocatedPages, pages);
  });
  await t.step("GSCIDs: an IDA per driver instance, lowest free first, apart from PSCIDs", () => {
    const { ep, s2 } = withS2();
    const b = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT) as RiscvIommuDomain;
    assert.deepEqual([s2.gscid, b.gscid], [1, 2]);
    iommu_domain_free(s2);
    const c = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT) as RiscvIommuDomain;
    assert.equal(c.gscid, 1);
    iommu_domain_free(b);
    iommu_domain_free(c);
  });
});

Deno.test("second-stage attach: the exact MMIO and command sequence, iohgatp written with fsc Bare", () => {
  const { sys, ep, dma, s2 } = withS2();
  const writes = dcWrites(sys, 5);
  const t0 = sys.iommu!.cmdq.tail;
  sys.rec.clear();
  const cmds = commandsOf(sys, () => iommu_attach_device(s2, ep));
  // A doorbell per command; one CSR and head read per IOFENCE.C (done at once).
  const ring = (n: number) => `w cqt 0x${(t0 + n).toString(16)}`;
  const fence = (n: number) => ["r cqcsr 0x10003", `r cqh 0x${(t0 + n).toString(16)}`];
  assert.deepEqual(mmioTrace(sys.rec.accesses), [
    ...[1, 2, 3].map(ring),
    ...fence(3),
    ...[4, 5, 6, 7].map(ring),
    ...fence(7),
    ...[8, 9].map(ring),
    ...fence(9),
  ]);
  const { ppn } = s2.pt.hwInfo();
  const iohgatp = 10n << 60n | 1n << 44n | BigInt(ppn); // Sv57x4, GSCID 1
  assert.deepEqual(writes, ["tc=0", `iohgatp=${iohgatp.toString(16)}`, "fsc=0", "ta=0", "tc=1"]);
  assert.deepEqual(cmds, [
    // The old first-stage context invalidated (RISC-V IOMMU spec v1.0, §6.3.1).
    "IODIR.INVAL_DDT did=0x5",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
    // The new context: with a G-stage, IOTINVAL.VMA and IOTINVAL.GVMA of its GSCID.
    "IODIR.INVAL_DDT did=0x5",
    "IOTINVAL.VMA gscid=1",
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
    // The DMA domain's last device on this IOMMU left.
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(deviceContext(sys, 5), [1n, iohgatp, 0n, 0n]);
  assert.deepEqual(s2.bonds.map((b) => b.dev), [ep]);

  // Back to the DMA domain: the second-stage context invalidated, then its GSCID flushed.
  assert.deepEqual(commandsOf(sys, () => iommu_detach_device(s2, ep)), [
    "IODIR.INVAL_DDT did=0x5",
    "IOTINVAL.VMA gscid=1",
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x5",
    `IOTINVAL.VMA pscid=${dma.pscid}`,
    "IOFENCE.C pr pw",
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
  ]);
  iommu_domain_free(s2);
});

Deno.test("a context changing only tc bits stays valid: tc rewritten in place, one invalidation", () => {
  const { sys, ep, s2 } = withS2({ caps: FAKE_IOMMU_CAPS | X4 | AMO_HWAD });
  iommu_attach_device(s2, ep);
  const [tc, iohgatp, ta, fsc] = deviceContext(sys, 5);
  const writes = dcWrites(sys, 5);
  const dc = riscv_iommu_read_dc(sys.iommu!, ep);
  assert.deepEqual([dc.tc, dc.iohgatp, dc.ta, dc.fsc], [tc, iohgatp, ta, fsc]);
  dc.tc |= GADE;
  const cmds = commandsOf(sys, () => riscv_iommu_iodir_update(sys.iommu!, ep, dc));
  // One store: V never reads clear, so a device's DMA in flight does not fault.
  assert.deepEqual(writes, [`tc=${(tc | GADE).toString(16)}`]);
  assert.deepEqual(cmds, [
    "IODIR.INVAL_DDT did=0x5",
    "IOTINVAL.VMA gscid=1",
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(deviceContext(sys, 5), [tc | GADE, iohgatp, ta, fsc]);
  // Any other field changing still takes both phases.
  writes.length = 0;
  Object.assign(dc, { tc, ta: ta | 1n << 12n });
  commandsOf(sys, () => riscv_iommu_iodir_update(sys.iommu!, ep, dc));
  assert.deepEqual(writes, ["tc=80", "ta=1000", `tc=${tc.toString(16)}`], "V cleared first");
  dc.ta = ta;
  riscv_iommu_iodir_update(sys.iommu!, ep, dc);
  iommu_detach_device(s2, ep);
  iommu_domain_free(s2);
});

Deno.test("second-stage iotlb_sync: IOTINVAL.GVMA per page, per superpage stride, or GSCID-wide", () => {
  const { sys, ep, s2 } = withS2();
  iommu_attach_device(s2, ep);
  iommu_map(s2, 0x10_0000, 0x8010_0000, 0x3000, RW);
  assert.equal(iommu_iova_to_phys(s2, 0x10_2345), 0x8010_2345);
  const t0 = sys.iommu!.cmdq.tail;
  sys.rec.clear();
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(s2, 0x10_0000, 0x3000)), [
    "IOTINVAL.GVMA gscid=1 addr=0x100000",
    "IOTINVAL.GVMA gscid=1 addr=0x101000",
    "IOTINVAL.GVMA gscid=1 addr=0x102000",
    "IOFENCE.C pr pw",
  ]);
  // The registers: a doorbell per command, then the fence's CSR and head reads.
  assert.deepEqual(mmioTrace(sys.rec.accesses), [
    ...[1, 2, 3, 4].map((n) => `w cqt 0x${(t0 + n).toString(16)}`),
    "r cqcsr 0x10003",
    `r cqh 0x${(t0 + 4).toString(16)}`,
  ]);
  iommu_map(s2, 0x4000_0000, 0x8000_0000, 0x40_0000, RW);
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(s2, 0x4000_0000, 0x40_0000)), [
    "IOTINVAL.GVMA gscid=1 addr=0x40000000",
    "IOTINVAL.GVMA gscid=1 addr=0x40200000",
    "IOFENCE.C pr pw",
  ], "two 2 MiB leaves: a 2 MiB stride");
  iommu_map(s2, 0x20_0000, 0x8000_1000, 600 * 4096, RW);
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(s2, 0x20_0000, 600 * 4096)), [
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
  ], "more than 512 strides");
  assert.deepEqual(commandsOf(sys, () => iommu_flush_iotlb_all(s2)), [
    "IOTINVAL.GVMA gscid=1",
    "IOFENCE.C pr pw",
  ]);
  iommu_detach_device(s2, ep);
  iommu_domain_free(s2);
});

Deno.test("second-stage iotlb_sync: freed tables are GSCID-wide unless NL; S makes one range", async (t) => {
  const cases: [string, bigint, string[]][] = [
    ["no NL", 0n, ["IOTINVAL.GVMA gscid=1"]],
    ["NL and S", NL | S, ["IOTINVAL.GVMA gscid=1 range=0x200000+0x200000 nl"]],
  ];
  for (const [name, extra, want] of cases) {
    await t.step(name, () => {
      const { sys, ep, s2 } = withS2({ caps: FAKE_IOMMU_CAPS | X4 | extra });
      iommu_attach_device(s2, ep);
      // 4 KiB pages (the output is not 2 MiB aligned) filling one level-0 table.
      iommu_map(s2, 0x20_0000, 0x8000_1000, 0x20_0000, RW);
      const before = sys.kernel.pages.allocatedPages;
      assert.deepEqual(commandsOf(sys, () => iommu_unmap(s2, 0x20_0000, 0x20_0000)), [
        ...want,
        "IOFENCE.C pr pw",
      ]);
      assert.equal(sys.kernel.pages.allocatedPages, before - 1, "the level-0 table was freed");
      iommu_detach_device(s2, ep);
      iommu_domain_free(s2);
    });
  }
});

Deno.test("a feature allocating second-stage domains for dirty tracking: GADE rides the domain", () => {
  const dirtyOps: IommuDirtyOps = { set_dirty_tracking: () => {}, read_and_clear_dirty: () => {} };
  const dirty: RiscvIommuFeature = {
    name: "dirty",
    missingCapability: (iommu) => (iommu.caps & AMO_HWAD) !== 0n ? null : "capabilities.AMO_HWAD",
    allocFlags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    ops: {
      domain_alloc_paging_flags(dev) {
        const domain = riscv_iommu_alloc_paging_domain(dev, true);
        domain.dc_tc = GADE;
        domain.dirty_ops = dirtyOps;
        return domain;
      },
    },
  };
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | X4 | AMO_HWAD, features: [dirty] });
  const ep = sys.addEndpoint("ep0", 5);
  const flags = IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT;
  const d = iommu_paging_domain_alloc_flags(ep, flags) as RiscvIommuDomain;
  assert.equal(d.second_stage, true);
  assert.equal(d.dirty_ops, dirtyOps);
  iommu_attach_device(d, ep);
  const [tc, iohgatp, , fsc] = deviceContext(sys, 5);
  assert.equal(tc, GADE | 1n);
  assert.equal(iohgatp >> 44n & 0xffffn, BigInt(d.gscid));
  assert.equal(fsc, 0n);
  iommu_detach_device(d, ep);
  assert.equal(deviceContext(sys, 5)[0] & GADE, 0n, "GADE leaves with the domain");
  iommu_domain_free(d);
  // A feature may not claim what the base driver owns.
  assert.throws(
    () =>
      new RiscvIommuDriver({
        features: [{ ...dirty, allocFlags: IOMMU_HWPT_ALLOC_NEST_PARENT }],
      }),
    { code: "EINVAL", message: /cannot take allocation flags 0x1/ },
  );
});

/**
 * One pass of a second-stage domain's life (allocated with NEST_PARENT, attached, mapped,
 * unmapped, detached) with the `n`th page or object allocation failing. Returns whether the
 * injected failure fired; teardown must then leave nothing behind, its GSCID included.
 */
function failNthPass(which: "pages" | "slab", n: number): boolean {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | X4 });
  const { kernel } = sys;
  const ep: Device = sys.addEndpoint("ep0", 0x12345);
  let domain: RiscvIommuDomain | null = null;
  const pass = new FailNthSteps(`${which} failure ${n}`);
  const step = pass.step.bind(pass);
  const alloc = () =>
    iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_NEST_PARENT) as RiscvIommuDomain;
  kernel[which].failNth(n);
  step("alloc", () => domain = alloc());
  step("attach", () => iommu_attach_device(domain!, ep));
  if (pass.failed === "attach") assert.equal(domain!.bonds.length, 0);
  // A 4 KiB page, a 2 MiB leaf and a 4 KiB page: tables of every level on the way.
  step("map", () => iommu_map(domain!, 0x1f_f000, 0x801f_f000, 0x20_2000, RW));
  step("unmap", () => assert.equal(iommu_unmap(domain!, 0x1f_f000, 0x20_2000), 0x20_2000));
  step("detach", () => iommu_detach_device(domain!, ep));
  kernel[which].failNth(0);

  if (domain !== null) {
    if (iommu_get_domain_for_dev(ep) === domain) iommu_detach_device(domain, ep);
    iommu_domain_free(domain);
  }
  const again = alloc();
  assert.equal(again.gscid, 1, `GSCID leaked at ${which} failure ${n}`);
  iommu_domain_free(again);
  device_del(ep);
  device_del(sys.dev);
  assert.equal(kernel.pages.allocatedPages, 0, `pages leaked at ${which} failure ${n}`);
  assert.deepEqual(kernel.slab.allocations(), [], `objects leaked at ${which} failure ${n}`);
  return pass.failed !== null;
}

Deno.test("fail-nth: every page and object allocation of a second-stage domain's life unwinds", async (t) => {
  assert.equal(failNthPass("pages", 0), false, "the scenario runs clean without injection");
  // Pages: the 16 KiB root (one allocation) and the map's level-3, -2, -1 and two level-0
  // tables. Objects: the domain and its bond, the bond back to the DMA domain.
  for (const [which, count] of [["pages", 6], ["slab", 3]] as const) {
    await t.step(which, () => {
      assert.equal(failNthSweep((n) => failNthPass(which, n)), count, "allocations swept");
    });
  }
});
