// The page-request queue of the series on the fake IOMMU: its bring-up, the thread turning
// records into I/O page faults, ATS.PRGR responses, stop markers, pqof/pqmf, and teardown.
import assert from "node:assert/strict";
import { device_del, mm_alloc, type MmStruct, SATP_MODE_48 } from "@iommu-lab/kernel";
import {
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_EXEC,
  IOMMU_FAULT_PERM_PRIV,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_PERM_WRITE,
  IOMMU_PAGE_RESP_FAILURE,
  IOMMU_PAGE_RESP_INVALID,
  IOMMU_PAGE_RESP_SUCCESS,
  iommu_sva_bind_device,
  iommu_sva_get_pasid,
  iommu_sva_unbind_device,
  iopf_free_group,
  iopf_group_response,
  type IopfGroup,
} from "@iommu-lab/iommu";
import { CAP, FAKE_IOMMU_CAPS, mmioTrace, type TestSystem } from "@iommu-lab/riscv-iommu/testing";
import {
  decodePrgr,
  type Endpoint,
  iopfSystem,
  pciEndpoint,
  pqRecord,
  settle,
} from "./_test_fixture.ts";
import { riscv_iommu_inject_pq_set } from "./debugfs.ts";

/** The PRGRs the fake executed, decoded. */
function prgrs(sys: TestSystem) {
  return sys.fake.commands.map(decodePrgr).filter((p) => p !== null);
}

/** An endpoint bound to an mm whose SVA domain's fault handler only records the groups. */
function recording(sys: TestSystem, ep: Endpoint) {
  const mm: MmStruct = mm_alloc(sys.kernel, SATP_MODE_48);
  const handle = iommu_sva_bind_device(ep.pdev, mm);
  const groups: IopfGroup[] = [];
  handle.domain!.iopf_handler = (g) => void groups.push(g);
  return { mm, handle, pasid: iommu_sva_get_pasid(handle), groups };
}

Deno.test("init: the page-request queue comes up after the fault queue, before the directory: 'page request queue enabled'", () => {
  const sys = iopfSystem({ pqCount: 512 });
  const all = mmioTrace(sys.rec.accesses);
  const trace = all.filter((l) => /pq/.test(l));
  const ring = Number(sys.fake.qb[2] >> 10n) * 4096;
  assert.deepEqual(trace.slice(0, 6), [
    "w pqb 0x1f", // LOG2SZ all ones: the WARL probe
    "r pqb 0x1f",
    `w pqb 0x${(BigInt(ring / 4096) << 10n | 8n).toString(16)}`, // 512 entries
    `r pqb 0x${(BigInt(ring / 4096) << 10n | 8n).toString(16)}`,
    "w pqh 0x0",
    "w pqcsr 0x103",
  ]);
  const ddtOn = all.findIndex((l) => /^w ddtp 0x[0-9a-f]*4$/.test(l));
  assert.ok(all.indexOf("w fqcsr 0x103") < all.indexOf("w pqcsr 0x103"));
  assert.ok(ddtOn > all.indexOf("w pqcsr 0x103"));
  assert.deepEqual(sys.kernel.dmesg.grep("page request"), [
    "riscv,iommu 3010000.iommu: page request queue enabled",
  ]);
  assert.equal(sys.iommu!.iommu.max_pasids, 256, "PD8");
});

Deno.test("records become iopf faults: R/W/L, group index, address, PASID, EXEC and PRIV; NEEDS_PASID as the function asks", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys);
  const { pasid, groups, handle } = recording(sys, ep);
  sys.fake.record(2, pqRecord({ did: ep.devid, pasid, read: true, prgi: 5, addr: 0x7000_1000 }));
  sys.fake.record(
    2,
    pqRecord({
      did: ep.devid,
      pasid,
      write: true,
      exec: true,
      priv: true,
      last: true,
      prgi: 5,
      addr: 0x7000_2000,
    }),
  );
  settle(sys);
  assert.equal(groups.length, 1);
  const PV = IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
  assert.deepEqual(groups[0].faults.map((f) => ({ ...f.fault.prm, private_data: undefined })), [
    {
      flags: PV,
      pasid,
      grpid: 5,
      perm: IOMMU_FAULT_PERM_READ,
      addr: 0x7000_1000,
      private_data: undefined,
    },
    {
      flags: PV | IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
      pasid,
      grpid: 5,
      perm: IOMMU_FAULT_PERM_WRITE | IOMMU_FAULT_PERM_EXEC | IOMMU_FAULT_PERM_PRIV,
      addr: 0x7000_2000,
      private_data: undefined,
    },
  ]);
  assert.equal(sys.fake.qh[2], 2, "pqh advanced past both records");
  iopf_group_response(groups[0], IOMMU_PAGE_RESP_SUCCESS);
  iopf_free_group(groups[0]);
  iommu_sva_unbind_device(handle);
});

Deno.test("ATS.PRGR: Success 0000b, Invalid Request 0001b, Response Failure 1111b, to the requester, with its PASID", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys, { devfn: 0x10 });
  const { pasid, groups, handle } = recording(sys, ep);
  for (const prgi of [1, 2, 3]) {
    sys.fake.record(2, pqRecord({ did: ep.devid, pasid, read: true, last: true, prgi, addr: 0 }));
  }
  settle(sys);
  sys.fake.commands.length = 0;
  const codes = [IOMMU_PAGE_RESP_SUCCESS, IOMMU_PAGE_RESP_INVALID, IOMMU_PAGE_RESP_FAILURE];
  groups.forEach((g, i) => {
    iopf_group_response(g, codes[i]);
    iopf_free_group(g);
  });
  assert.deepEqual(
    prgrs(sys),
    [1, 2, 3].map((prgi, i) => ({
      rid: 0x10,
      dseg: 0,
      pasid,
      prgi,
      code: [0b0000, 0b0001, 0b1111][i],
      dst: 0x10,
    })),
  );
  assert.equal(sys.fake.commands.length, 3, "no fence: a response needs none");
  iommu_sva_unbind_device(handle);
});

Deno.test("a function that does not want the PASID back gets responses without it", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys, { prgPasid: false });
  const { pasid, groups, handle } = recording(sys, ep);
  sys.fake.record(2, pqRecord({ did: ep.devid, pasid, read: true, last: true, prgi: 9, addr: 0 }));
  settle(sys);
  assert.equal(groups[0].last_fault.fault.prm.flags & IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID, 0);
  iopf_group_response(groups[0], IOMMU_PAGE_RESP_SUCCESS);
  iopf_free_group(groups[0]);
  assert.equal(prgrs(sys).at(-1)!.pasid, null);
  iommu_sva_unbind_device(handle);
});

Deno.test("no fault handler: the core answers Invalid Request once, the driver logs -22 and does not answer again", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys);
  sys.fake.commands.length = 0;
  sys.fake.record(
    2,
    pqRecord({ did: ep.devid, pasid: 7, read: true, last: true, prgi: 4, addr: 0 }),
  );
  settle(sys);
  assert.deepEqual(prgrs(sys), [{ rid: ep.devid, dseg: 0, pasid: 7, prgi: 4, code: 1, dst: 8 }]);
  assert.deepEqual(sys.kernel.dmesg.grep("report failed"), [
    "riscv,iommu 3010000.iommu: page request fault report failed: -22",
  ]);
});

Deno.test("no fault handler, a group of three requests: each is refused (-22), one Invalid Request answers the group", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys);
  sys.fake.commands.length = 0;
  for (let i = 0; i < 3; i++) {
    sys.fake.record(
      2,
      pqRecord({ did: ep.devid, write: true, last: i === 2, prgi: 9, addr: 0x1000 * i }),
    );
  }
  settle(sys);
  assert.deepEqual(prgrs(sys), [{ rid: ep.devid, dseg: 0, pasid: null, prgi: 9, code: 1, dst: 8 }]);
  assert.equal(sys.kernel.dmesg.grep("report failed: -22").length, 3);
});

Deno.test("the seed's inject_pq (debugfs.ts): its fake record now gets the core's Invalid Request, and the -22 the seed saw", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys);
  sys.fake.commands.length = 0;
  riscv_iommu_inject_pq_set(sys.iommu!, ep.devid);
  assert.deepEqual(sys.kernel.dmesg.grep(/inject_pq|report failed/), [
    "riscv,iommu 3010000.iommu: inject_pq: injecting fake PQ record for devid 0x8",
    "riscv,iommu 3010000.iommu: page request fault report failed: -22",
  ]);
  assert.deepEqual(prgrs(sys), [{ rid: 8, dseg: 0, pasid: null, prgi: 1, code: 1, dst: 8 }]);
  const noAts = iopfSystem({ caps: FAKE_IOMMU_CAPS });
  assert.throws(() => riscv_iommu_inject_pq_set(noAts.iommu!, 8), { code: "ENODEV" });
  assert.deepEqual(noAts.kernel.dmesg.grep("inject_pq"), [
    "riscv,iommu 3010000.iommu: inject_pq: ATS not supported",
  ]);
});

Deno.test("stop markers are dropped; a record of a device the IOMMU does not know is logged and dropped", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys);
  const { pasid, groups, handle } = recording(sys, ep);
  sys.fake.commands.length = 0;
  sys.fake.record(2, pqRecord({ did: ep.devid, pasid, last: true, prgi: 0, addr: 0 }));
  sys.fake.record(2, pqRecord({ did: 0x77, read: true, last: true, prgi: 0, addr: 0 }));
  settle(sys);
  assert.equal(groups.length, 0);
  assert.deepEqual(prgrs(sys), []);
  assert.deepEqual(sys.kernel.dmesg.grep("unknown devid"), [
    "riscv,iommu 3010000.iommu: page request for unknown devid 0x77",
  ]);
  iommu_sva_unbind_device(handle);
});

Deno.test("pqof: the thread reports and clears it, and drops the partial groups whose last request may be lost", () => {
  const sys = iopfSystem({ pqCount: 2 });
  const ep = pciEndpoint(sys);
  const { pasid, groups, handle } = recording(sys, ep);
  const rec = (prgi: number, last: boolean, addr: number) =>
    sys.fake.record(2, pqRecord({ did: ep.devid, pasid, read: true, last, prgi, addr }));
  assert.equal(rec(1, false, 0x1000), true);
  assert.equal(rec(2, false, 0x5000), false, "two entries hold one record: overflow");
  assert.equal(rec(3, true, 0x6000), false, "dropped while pqof is set");
  assert.notEqual(sys.fake.qcsr[2] & 1 << 9, 0);
  settle(sys);
  assert.equal(sys.fake.qcsr[2] & 1 << 9, 0, "pqof cleared by the thread");
  assert.deepEqual(sys.kernel.dmesg.grep("Queue #3"), [
    "riscv,iommu 3010000.iommu: Queue #3 error; memory fault:0 overflow:1",
  ]);
  assert.equal(rec(1, true, 0x2000), true, "records flow again");
  settle(sys);
  assert.deepEqual(groups[0].faults.map((f) => f.fault.prm.addr), [0x2000], "partial 0x1000 gone");
  iopf_group_response(groups[0], IOMMU_PAGE_RESP_SUCCESS);
  iopf_free_group(groups[0]);
  iommu_sva_unbind_device(handle);
});

Deno.test("pqmf: reported and cleared by the thread", () => {
  const sys = iopfSystem();
  sys.fake.queueError(2, 1 << 8);
  settle(sys);
  assert.equal(sys.fake.qcsr[2] & 1 << 8, 0);
  assert.deepEqual(sys.kernel.dmesg.grep("Queue #3"), [
    "riscv,iommu 3010000.iommu: Queue #3 error; memory fault:1 overflow:0",
  ]);
});

Deno.test("remove: the page-request queue is disabled after the directory is off; nothing is left", () => {
  const sys = iopfSystem();
  const ep = pciEndpoint(sys);
  device_del(ep.pdev);
  sys.rec.clear();
  device_del(sys.dev);
  const w = mmioTrace(sys.rec.accesses).filter((l) => l.startsWith("w"));
  const ddtOff = w.indexOf("w ddtp 0x0");
  const pqOff = w.indexOf("w pqcsr 0x0");
  assert.ok(ddtOff >= 0 && ddtOff < pqOff && pqOff < w.indexOf("w cqcsr 0x0"));
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.slab.allocations(), []);
  assert.deepEqual(sys.kernel.irq.procInterrupts(), []);
});

Deno.test("an IOMMU without capabilities.ATS: no page-request queue, one line saying why", () => {
  const sys = iopfSystem({ caps: FAKE_IOMMU_CAPS });
  assert.equal(sys.rec.accesses.some((a) => a.offset === 0x38 || a.offset === 0x50), false);
  assert.deepEqual(sys.kernel.dmesg.grep(/iopf|page request/), [
    "riscv,iommu 3010000.iommu: iopf disabled: no capabilities.ATS",
  ]);
  assert.equal(sys.iommu!.iommu.max_pasids, 0);
  assert.equal(CAP.ATS & FAKE_IOMMU_CAPS, 0n);
});
