// Device directory management, identity/blocking/paging domains, bonds and IOTLB invalidation
// (RISC-V IOMMU spec v1.0, chapter 2 "Data Structures" and §6.3 "Guidelines for invalidations"),
// through the IOMMU core, on the fake register file.
import assert from "node:assert/strict";
import { type Device, device_del, isErrno } from "@iommu-lab/kernel";
import {
  iommu_attach_device,
  iommu_attach_group,
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
import type { RiscvIommuFeature } from "./feature.ts";
import type { RiscvIommuDomain } from "./iommu.ts";
import {
  CAP,
  commandsOf,
  dcAddress,
  deviceContext,
  mmioTrace,
  type TestSystem,
  testSystem,
  type TestSystemOptions,
} from "./testing.ts";
import { FailNthSteps, failNthSweep } from "@iommu-lab/kernel/testing";

const { SV39, SV48, SV57, MSI_FLAT, NL, S } = CAP;
const V1 = 0x10n;
const RW = IOMMU_READ | IOMMU_WRITE;

/** tc, iohgatp, ta, fsc of the device context of `devid`. */
function dc(sys: TestSystem, devid: number): bigint[] {
  return deviceContext(sys, devid).slice(0, 4);
}

/** A system with one endpoint (ID 5) in its default DMA domain and an unmanaged domain on it. */
function withDomain(opts: TestSystemOptions = {}) {
  const sys = testSystem(opts);
  const ep = sys.addEndpoint("ep0", 5);
  const domain = iommu_paging_domain_alloc(ep) as RiscvIommuDomain;
  iommu_attach_device(domain, ep);
  return { sys, ep, domain };
}

Deno.test("probe_device() + default domain: the DC of each ID, 3LVL base format (DDI 7/9/8)", () => {
  const sys = testSystem();
  const ep = sys.addEndpoint("ep0", 0x12345, 0x12346);
  const domain = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  const { ppn, mode } = domain.pt.hwInfo();
  for (const id of [0x12345, 0x12346]) {
    const [tc, iohgatp, ta, fsc] = dc(sys, id);
    assert.equal(tc, 1n, "tc: V only");
    assert.equal(iohgatp, 0n);
    assert.equal(ta, BigInt(domain.pscid) << 12n);
    assert.equal(fsc, BigInt(mode) << 60n | BigInt(ppn));
  }
  assert.equal(mode, 10, "Sv57, the widest mode of the default caps");
});

Deno.test("get_dc() allocates missing directory levels lazily, once: neighbours share them", () => {
  const sys = testSystem();
  const pages = () => sys.kernel.pages.allocatedPages;
  const root = sys.iommu!.ddt_phys;
  const dirPages = (fn: () => void) => {
    const before = pages();
    fn();
    return pages() - before - 1; // minus the default domain's root table
  };
  assert.ok(sys.ram.readBytes(root, 4096).every((b) => b === 0), "empty root");
  assert.equal(dirPages(() => sys.addEndpoint("ep0", 0x12345)), 2, "DDI[2] and DDI[1] tables");
  assert.equal(dirPages(() => sys.addEndpoint("ep1", 0x12346)), 0, "same leaf table");
  assert.equal(dirPages(() => sys.addEndpoint("ep2", 0x12445)), 1, "same DDI[2], new leaf");
  assert.equal(dirPages(() => sys.addEndpoint("ep3", 0x22345)), 2, "new DDI[2] entry");
  assert.ok(sys.ram.read64(root + 0x1 * 8) & 1n && sys.ram.read64(root + 0x2 * 8) & 1n);
});

Deno.test("probe_device() uses the extended 64-byte DC and DDI 6/9/9 with capabilities.MSI_FLAT", () => {
  const sys = testSystem({ caps: V1 | SV39 | MSI_FLAT });
  sys.addEndpoint("ep0", 0x41);
  sys.addEndpoint("ep1", 0x8041);
  const a = dcAddress(sys, 0x41);
  assert.equal(a % 4096, 64, "slot 1 of 64-byte contexts");
  assert.equal(dc(sys, 0x41)[0], 1n);
  assert.equal(dc(sys, 0x8041)[0], 1n);
  assert.notEqual(dcAddress(sys, 0x8041), a);
});

Deno.test("probe_device() fails with ENODEV for an ID the 1LVL directory cannot hold", () => {
  const sys = testSystem({ ddtModes: [2] });
  sys.addEndpoint("ep0", 0x7f);
  assert.equal(dc(sys, 0x7f)[0], 1n);
  assert.throws(() => sys.addEndpoint("ep1", 0x80), { code: "ENODEV" });
  assert.deepEqual(sys.kernel.dmesg.grep("device context"), [
    "riscv-iommu-test ep1: cannot set up device context for device ID 0x80",
  ]);
});

Deno.test("probe_device() is ENODEV while the directory is Bare (global pass-through)", () => {
  const sys = testSystem();
  sys.iommu!.ddt_mode = 1;
  assert.throws(() => sys.addEndpoint("ep0", 1), { code: "ENODEV" });
});

Deno.test("probe_device() warns 'already attached' for a valid DC and writes it invalid first", () => {
  const sys = testSystem();
  sys.addEndpoint("ep0", 5);
  const cmds = commandsOf(sys, () => sys.addEndpoint("ep1", 5));
  assert.deepEqual(sys.kernel.dmesg.grep("already attached"), [
    "riscv-iommu-test ep1: already attached to IOMMU device directory",
  ]);
  // tc was cleared by the probe, so the attach has no first (invalidate-old) phase.
  assert.deepEqual(cmds, ["IODIR.INVAL_DDT did=0x5", "IOTINVAL.VMA pscid=2", "IOFENCE.C pr pw"]);
});

Deno.test("identity domain: DC.fsc Bare and ta V (pass-through), no bond", () => {
  const sys = testSystem({ passthrough: true });
  let cmds: string[] = [];
  cmds = commandsOf(sys, () => sys.addEndpoint("ep0", 9));
  assert.deepEqual(dc(sys, 9), [1n, 0n, 0n, 0n]);
  assert.deepEqual(cmds, ["IODIR.INVAL_DDT did=0x9", "IOTINVAL.VMA", "IOFENCE.C pr pw"]);
});

Deno.test("blocking domain: DC invalid; the old paging domain's PSCID is flushed", () => {
  const sys = testSystem();
  const ep = sys.addEndpoint("ep0", 5);
  const old = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  const cmds = commandsOf(
    sys,
    () => iommu_group_replace_domain(iommu_group_get(ep)!, sys.drv.blocked_domain),
  );
  assert.equal(dc(sys, 5)[0] & 1n, 0n);
  assert.deepEqual(cmds, [
    "IODIR.INVAL_DDT did=0x5",
    `IOTINVAL.VMA pscid=${old.pscid}`,
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x5",
    "IOTINVAL.VMA",
    "IOFENCE.C pr pw",
    `IOTINVAL.VMA pscid=${old.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.equal(old.bonds.length, 0);
});

Deno.test("attach_paging(): two-phase DC update, V cleared first and set last, then the old PSCID flushed", () => {
  const sys = testSystem();
  const ep = sys.addEndpoint("ep0", 5);
  const old = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
  const domain = iommu_paging_domain_alloc(ep) as RiscvIommuDomain;
  const base = dcAddress(sys, 5);
  const writes: string[] = [];
  const write64 = sys.ram.write64.bind(sys.ram);
  sys.ram.write64 = (pa, v) => {
    if (pa >= base && pa < base + 32) {
      writes.push(`${["tc", "iohgatp", "ta", "fsc"][(pa - base) / 8]}=${v.toString(16)}`);
    }
    write64(pa, v);
  };
  const t0 = sys.iommu!.cmdq.tail;
  sys.rec.clear();
  const cmds = commandsOf(sys, () => iommu_attach_device(domain, ep));
  // MMIO: a doorbell per command, and one CSR + head read per IOFENCE.C (done at once).
  const ring = (n: number) => `w cqt 0x${(t0 + n).toString(16)}`;
  const fence = (n: number) => ["r cqcsr 0x10003", `r cqh 0x${(t0 + n).toString(16)}`];
  assert.deepEqual(mmioTrace(sys.rec.accesses), [
    ...[1, 2, 3].map(ring),
    ...fence(3),
    ...[4, 5, 6].map(ring),
    ...fence(6),
    ...[7, 8].map(ring),
    ...fence(8),
  ]);
  const { ppn } = domain.pt.hwInfo();
  assert.deepEqual(writes, [
    "tc=0",
    `fsc=${(10n << 60n | BigInt(ppn)).toString(16)}`,
    `ta=${(BigInt(domain.pscid) << 12n).toString(16)}`,
    "tc=1",
  ]);
  assert.deepEqual(cmds, [
    "IODIR.INVAL_DDT did=0x5",
    `IOTINVAL.VMA pscid=${old.pscid}`,
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x5",
    `IOTINVAL.VMA pscid=${domain.pscid}`,
    "IOFENCE.C pr pw",
    `IOTINVAL.VMA pscid=${old.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(domain.bonds.map((b) => b.dev), [ep]);
  assert.equal(old.bonds.length, 0);
});

Deno.test("bond_unlink(): the old PSCID is flushed only when its last device on the IOMMU leaves", () => {
  const sys = testSystem();
  const ep0 = sys.addEndpoint("ep0", 1);
  const ep1 = sys.addEndpoint("ep1", 2);
  const shared = iommu_paging_domain_alloc(ep0) as RiscvIommuDomain;
  iommu_attach_group(shared, iommu_group_get(ep0)!);
  iommu_attach_group(shared, iommu_group_get(ep1)!);
  assert.deepEqual(shared.bonds.map((b) => b.dev), [ep0, ep1]);
  const back = (id: number, dom: RiscvIommuDomain) => [
    `IODIR.INVAL_DDT did=0x${id}`,
    `IOTINVAL.VMA pscid=${shared.pscid}`,
    "IOFENCE.C pr pw",
    `IODIR.INVAL_DDT did=0x${id}`,
    `IOTINVAL.VMA pscid=${dom.pscid}`,
    "IOFENCE.C pr pw",
  ];
  const dom0 = iommu_group_get(ep0)!.default_domain as RiscvIommuDomain;
  const dom1 = iommu_group_get(ep1)!.default_domain as RiscvIommuDomain;
  // ep1 still uses the PSCID on this IOMMU: no flush beyond the context change itself.
  assert.deepEqual(commandsOf(sys, () => iommu_detach_device(shared, ep0)), back(1, dom0));
  assert.deepEqual(commandsOf(sys, () => iommu_detach_device(shared, ep1)), [
    ...back(2, dom1),
    `IOTINVAL.VMA pscid=${shared.pscid}`,
    "IOFENCE.C pr pw",
  ]);
  assert.equal(shared.bonds.length, 0);
  iommu_domain_free(shared);
});

Deno.test("domain_alloc_paging(): Sv39/48/57 from capabilities, the largest wins", async (t) => {
  for (
    const [caps, bits, mode] of [[SV39, 39, 8], [SV39 | SV48, 48, 9], [
      SV39 | SV48 | SV57,
      57,
      10,
    ]] as const
  ) {
    await t.step(`Sv${bits}`, () => {
      const sys = testSystem({ caps: V1 | caps });
      const ep = sys.addEndpoint("ep0", 3);
      const domain = iommu_get_domain_for_dev(ep) as RiscvIommuDomain;
      assert.equal(domain.pt.vaBits, bits);
      assert.equal(dc(sys, 3)[3] >> 60n, BigInt(mode));
      assert.equal(domain.geometry.aperture_end, Math.min(2 ** (bits - 1), 2 ** 53) - 1);
    });
  }
  await t.step("no first-stage mode: ENODEV", () => {
    const sys = testSystem({ caps: V1 });
    assert.throws(() => sys.addEndpoint("ep0", 3), { code: "ENODEV" });
    assert.equal(sys.kernel.dmesg.grep("cannot find supported page table mode").length, 1);
  });
  await t.step("attach to an IOMMU that cannot walk the domain's mode: ENODEV, unchanged", () => {
    const { sys, ep, domain } = withDomain();
    const other = iommu_paging_domain_alloc(ep) as RiscvIommuDomain;
    sys.iommu!.caps &= ~SV57;
    const before = dc(sys, 5);
    assert.throws(
      () => iommu_group_replace_domain(iommu_group_get(ep)!, other),
      { code: "ENODEV" },
    );
    assert.deepEqual(dc(sys, 5), before);
    assert.equal(iommu_get_domain_for_dev(ep), domain);
    iommu_domain_free(other);
  });
});

Deno.test("PSCIDs come from an IDA per driver instance, lowest free first, from 1", () => {
  const a = testSystem();
  const b = testSystem();
  const epa = a.addEndpoint("ep0", 1);
  const epb = b.addEndpoint("ep0", 1);
  assert.equal((iommu_get_domain_for_dev(epa) as RiscvIommuDomain).pscid, 1);
  assert.equal((iommu_get_domain_for_dev(epb) as RiscvIommuDomain).pscid, 1, "no global state");
  const d2 = iommu_paging_domain_alloc(epa) as RiscvIommuDomain;
  const d3 = iommu_paging_domain_alloc(epa) as RiscvIommuDomain;
  assert.deepEqual([d2.pscid, d3.pscid], [2, 3]);
  iommu_domain_free(d2);
  const d4 = iommu_paging_domain_alloc(epa) as RiscvIommuDomain;
  assert.equal(d4.pscid, 2);
  iommu_domain_free(d3);
  iommu_domain_free(d4);
});

Deno.test("iotlb_sync(): one IOTINVAL.VMA per 4 KiB page for a small unmap", () => {
  const { sys, domain } = withDomain();
  iommu_map(domain, 0x10_0000, 0x8010_0000, 0x3000, RW);
  const p = domain.pscid;
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x10_0000, 0x3000)), [
    `IOTINVAL.VMA pscid=${p} addr=0x100000`,
    `IOTINVAL.VMA pscid=${p} addr=0x101000`,
    `IOTINVAL.VMA pscid=${p} addr=0x102000`,
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("iotlb_sync(): the stride is 4 KiB·512^level of the lowest changed level (superpages)", async (t) => {
  for (
    const [size, iova, pa] of [[0x20_0000, 0x20_0000, 0x8020_0000], [2 ** 30, 2 ** 30, 2 ** 31]]
  ) {
    await t.step(`one command for a 0x${size.toString(16)} leaf`, () => {
      const { sys, domain } = withDomain();
      iommu_map(domain, iova, pa, 2 * size, RW);
      assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, iova, 2 * size)), [
        `IOTINVAL.VMA pscid=${domain.pscid} addr=0x${iova.toString(16)}`,
        `IOTINVAL.VMA pscid=${domain.pscid} addr=0x${(iova + size).toString(16)}`,
        "IOFENCE.C pr pw",
      ]);
    });
  }
});

Deno.test("iotlb_sync(): more than 512 strides become one PSCID-wide IOTINVAL.VMA", () => {
  const { sys, domain } = withDomain();
  iommu_map(domain, 0x20_0000, 0x8000_1000, 600 * 4096, RW);
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x20_0000, 600 * 4096)), [
    `IOTINVAL.VMA pscid=${domain.pscid}`,
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("iotlb_sync(): freed tables need PSCID-wide IOTINVAL unless NL; pages freed after the fence", async (t) => {
  const cases: [string, bigint, (p: number) => string[]][] = [
    ["no NL: PSCID-wide", 0n, (p) => [`IOTINVAL.VMA pscid=${p}`]],
    [
      "NL: per page with NL",
      NL,
      (p) =>
        Array.from(
          { length: 512 },
          (_, i) => `IOTINVAL.VMA pscid=${p} addr=0x${(0x20_0000 + i * 4096).toString(16)} nl`,
        ),
    ],
    [
      "NL and S: one NAPOT range with NL",
      NL | S,
      (p) => [`IOTINVAL.VMA pscid=${p} range=0x200000+0x200000 nl`],
    ],
  ];
  for (const [name, extra, want] of cases) {
    await t.step(name, () => {
      const { sys, domain } = withDomain({ caps: V1 | SV39 | SV48 | SV57 | extra });
      // 4 KiB pages (the output is not 2 MiB aligned) filling one level-0 table.
      iommu_map(domain, 0x20_0000, 0x8000_1000, 0x20_0000, RW);
      const pages = sys.kernel.pages;
      const free = pages.free.bind(pages);
      const freedAt: number[] = [];
      pages.free = (pa, order) => {
        freedAt.push(sys.fake.commands.length);
        free(pa, order);
      };
      const before = pages.allocatedPages;
      const cmds = commandsOf(sys, () => iommu_unmap(domain, 0x20_0000, 0x20_0000));
      assert.deepEqual(cmds, [...want(domain.pscid), "IOFENCE.C pr pw"]);
      assert.equal(pages.allocatedPages, before - 1, "the level-0 table was freed");
      assert.deepEqual(freedAt, [cmds.length], "only once the IOFENCE.C completed");
    });
  }
});

Deno.test("iotlb_sync(): the gather of several unmap_pages() calls covers them all (4 KiB below 2 MiB)", async (t) => {
  // A 4 KiB page at 0x1ff000 and a 2 MiB leaf at 0x200000: iommu_unmap() takes them in two
  // unmap_pages() calls into one gather, whose range and levels must hold both: 513 pages at a
  // 4 KiB stride, more than 512 commands, so the whole PSCID unless one NAPOT range can cover it.
  const cases: [string, bigint, (p: number) => string][] = [
    ["without NL", 0n, (p) => `IOTINVAL.VMA pscid=${p}`],
    ["with NL", NL, (p) => `IOTINVAL.VMA pscid=${p}`],
    ["with S", S, (p) => `IOTINVAL.VMA pscid=${p} range=0x0+0x400000`],
    ["with NL and S", NL | S, (p) => `IOTINVAL.VMA pscid=${p} range=0x0+0x400000`],
  ];
  for (const [name, extra, want] of cases) {
    await t.step(name, () => {
      const seen: string[] = [];
      const spy: RiscvIommuFeature = {
        name: "gather-spy",
        iotlbInval: (_bond, _domain, g) =>
          void seen.push(
            `pfn 0x${g.startPfn.toString(16)}-0x${g.endPfn.toString(16)} leaf ${g.leafLevels} ` +
              `table ${g.tableLevels}`,
          ),
      };
      const { sys, domain } = withDomain({
        caps: V1 | SV39 | SV48 | SV57 | extra,
        features: [spy],
      });
      iommu_map(domain, 0x1f_f000, 0x801f_f000, 0x20_1000, RW);
      let leaves = 0;
      domain.pt.forEachLeaf(() => leaves++);
      assert.equal(leaves, 2, "one 4 KiB and one 2 MiB leaf");
      seen.length = 0;
      const cmds = commandsOf(sys, () => iommu_unmap(domain, 0x1f_f000, 0x20_1000));
      assert.deepEqual(seen, ["pfn 0x1ff-0x400 leaf 3 table 0"], "levels 0 and 1, both pages");
      assert.deepEqual(cmds, [want(domain.pscid), "IOFENCE.C pr pw"]);
      assert.equal(domain.pt.iova_to_phys(0x1f_f000) + domain.pt.iova_to_phys(0x3f_f000), 0);
    });
  }
});

Deno.test("iotlb_sync() with capabilities.S: a multi-page range is one NAPOT command", () => {
  const { sys, domain } = withDomain({ caps: V1 | SV39 | S });
  iommu_map(domain, 0x10_1000, 0x8010_1000, 0x3000, RW);
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x10_1000, 0x3000)), [
    `IOTINVAL.VMA pscid=${domain.pscid} range=0x100000+0x4000`,
    "IOFENCE.C pr pw",
  ]);
  iommu_map(domain, 0x10_1000, 0x8010_1000, 0x1000, RW);
  assert.deepEqual(commandsOf(sys, () => iommu_unmap(domain, 0x10_1000, 0x1000)), [
    `IOTINVAL.VMA pscid=${domain.pscid} addr=0x101000`,
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("flush_iotlb_all(): one PSCID-wide IOTINVAL.VMA per IOMMU, then IOFENCE.C", () => {
  const { sys, domain } = withDomain();
  assert.deepEqual(commandsOf(sys, () => iommu_flush_iotlb_all(domain)), [
    `IOTINVAL.VMA pscid=${domain.pscid}`,
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("map/iova_to_phys through the driver's domain ops use the generic-pt table", () => {
  const { domain } = withDomain();
  iommu_map(domain, 0x4000_0000, 0x8000_0000, 2 ** 30, RW);
  assert.equal(domain.ops.iova_to_phys!(domain, 0x4123_4567), 0x8123_4567);
  let leaves = 0;
  domain.pt.forEachLeaf((_pfn, pages) => {
    leaves++;
    assert.equal(pages, 2 ** 18, "one 1 GiB leaf");
  });
  assert.equal(leaves, 1);
});

Deno.test("release_device(): the device leaves through the blocking domain; unbinding frees everything", () => {
  const { sys, ep, domain } = withDomain();
  iommu_map(domain, 0x10_0000, 0x8010_0000, 0x1000, RW);
  device_del(ep);
  assert.equal(dc(sys, 5)[0] & 1n, 0n);
  assert.equal(domain.bonds.length, 0);
  iommu_unmap(domain, 0x10_0000, 0x1000);
  iommu_domain_free(domain);
  device_del(sys.dev);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
});

/**
 * One pass of an endpoint's life (probe with its default domain, a paging domain allocated,
 * attached, mapped, unmapped, detached) with the `n`th page or object allocation failing.
 * Returns whether the injected failure fired; teardown must then leave nothing behind.
 */
function failNthPass(which: "pages" | "slab", n: number): boolean {
  const sys = testSystem();
  const { kernel } = sys;
  let ep: Device | null = null;
  let domain: RiscvIommuDomain | null = null;
  // A directory level that cannot be allocated is ENODEV, as riscv_iommu_get_dc() failing is.
  const pass = new FailNthSteps(
    `${which} failure ${n}`,
    (what, e) => isErrno(e, "ENOMEM") || (what === "probe" && isErrno(e, "ENODEV")),
  );
  const step = pass.step.bind(pass);
  kernel[which].failNth(n);
  step("probe", () => ep = sys.addEndpoint("ep0", 0x12345));
  step("alloc", () => domain = iommu_paging_domain_alloc(ep!) as RiscvIommuDomain);
  step("attach", () => iommu_attach_device(domain!, ep!));
  if (pass.failed === "attach") {
    assert.notEqual(iommu_get_domain_for_dev(ep!), domain);
    assert.equal(domain!.bonds.length, 0);
  }
  // A 4 KiB page, a 2 MiB leaf and a 4 KiB page: tables of every level on the way.
  step("map", () => iommu_map(domain!, 0x1f_f000, 0x801f_f000, 0x20_2000, RW));
  step("unmap", () => assert.equal(iommu_unmap(domain!, 0x1f_f000, 0x20_2000), 0x20_2000));
  step("detach", () => iommu_detach_device(domain!, ep!));
  kernel[which].failNth(0);

  if (domain !== null) {
    if (iommu_get_domain_for_dev(ep!) === domain) iommu_detach_device(domain, ep!);
    iommu_domain_free(domain);
  }
  if (ep !== null) device_del(ep);
  device_del(sys.dev);
  assert.equal(kernel.pages.allocatedPages, 0, `pages leaked at ${which} failure ${n}`);
  assert.deepEqual(kernel.slab.allocations(), [], `objects leaked at ${which} failure ${n}`);
  return pass.failed !== null;
}

Deno.test("fail-nth: every page and object allocation of an endpoint's probe, attach and map unwinds", async (t) => {
  assert.equal(failNthPass("pages", 0), false, "the scenario runs clean without injection");
  // Pages: two directory levels and the default domain's root; the paging domain's root and
  // three tables of the map. Objects: the core's and the driver's per-device data, the group, the
  // default domain, its bond and DMA cookie; the paging domain and its bond; the bond back.
  for (const [which, count] of [["pages", 9], ["slab", 9]] as const) {
    await t.step(which, () => {
      assert.equal(failNthSweep((n) => failNthPass(which, n)), count, "allocations swept");
    });
  }
});
