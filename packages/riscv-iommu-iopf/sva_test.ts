// SVA through the series on the fake IOMMU, with the page requests a PRI device would send
// written into the page-request queue: pages appear in the process on demand, the notifier keeps
// the IOTLB and ATC in step with its unmaps, and unbind drains the requests in flight.
import assert from "node:assert/strict";
import {
  access_remote_vm,
  device_del,
  follow_pte,
  MAP_ANONYMOUS,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  mm_alloc,
  mmput,
  type MmStruct,
  PROT_READ,
  PROT_WRITE,
  pte_pfn,
  SATP_MODE_48,
  vm_mmap,
  vm_munmap,
} from "@iommu-lab/kernel";
import {
  iommu_sva_bind_device,
  iommu_sva_get_pasid,
  iommu_sva_unbind_device,
  type IommuSva,
} from "@iommu-lab/iommu";
import type { TestSystem } from "@iommu-lab/riscv-iommu/testing";
import {
  decodePrgr,
  type Endpoint,
  iopfSystem,
  pciEndpoint,
  pqRecord,
  settle,
} from "./_test_fixture.ts";
import type { RiscvIommuSvaDomain } from "./mod.ts";
import { commandsOf } from "@iommu-lab/riscv-iommu/testing";

const VA = 0x10_0000_0000;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;

interface Bound {
  sys: TestSystem;
  ep: Endpoint;
  mm: MmStruct;
  handle: IommuSva;
  pasid: number;
}

/** A PRI/PASID function bound to a process with 64 writable pages at VA and one read-only after. */
function bound(pqCount = 256): Bound {
  const sys = iopfSystem({ pqCount });
  const ep = pciEndpoint(sys);
  const mm = mm_alloc(sys.kernel, SATP_MODE_48);
  vm_mmap(mm, VA, 64 * 4096, PROT_READ | PROT_WRITE, ANON);
  vm_mmap(mm, VA + 64 * 4096, 4096, PROT_READ, ANON);
  const handle = iommu_sva_bind_device(ep.pdev, mm);
  return { sys, ep, mm, handle, pasid: iommu_sva_get_pasid(handle) };
}

/** The device asks for page `va` (one-request group `prgi`). */
function request(b: Bound, va: number, prgi: number, write = true): boolean {
  return b.sys.fake.record(
    2,
    pqRecord({ did: b.ep.devid, pasid: b.pasid, read: !write, write, last: true, prgi, addr: va }),
  );
}

function responses(sys: TestSystem) {
  return sys.fake.commands.map(decodePrgr).filter((p) => p !== null);
}

Deno.test("64 pages a device touches first: each request reaches the mm's fault handler, the page appears, Success goes back", () => {
  const b = bound();
  b.sys.fake.commands.length = 0;
  for (let i = 0; i < 64; i++) assert.ok(request(b, VA + i * 4096, i % 512));
  assert.equal(b.mm.rss, 0);
  settle(b.sys);
  assert.equal(b.mm.rss, 64);
  for (let i = 0; i < 64; i++) assert.notEqual(follow_pte(b.mm, VA + i * 4096), 0);
  const got = responses(b.sys);
  assert.equal(got.length, 64, "each group answered once");
  assert.ok(got.every((r, i) => r.code === 0 && r.prgi === i && r.pasid === b.pasid));
  // What the device would now write through its ATC lands in the process's own pages.
  const pa = pte_pfn(follow_pte(b.mm, VA + 5 * 4096)) * 4096;
  b.sys.ram.write32(pa + 8, 0xc0ff_ee00);
  const seen = new Uint8Array(4);
  access_remote_vm(b.mm, VA + 5 * 4096 + 8, seen, 0);
  assert.deepEqual([...seen], [0x00, 0xee, 0xff, 0xc0]);
  iommu_sva_unbind_device(b.handle);
});

Deno.test("a request the process does not allow (a write to its read-only page, an address it has not mapped) gets Invalid Request", () => {
  const b = bound();
  b.sys.fake.commands.length = 0;
  request(b, VA + 64 * 4096, 1, true);
  request(b, 0x1000, 2, false);
  request(b, VA + 64 * 4096, 3, false);
  settle(b.sys);
  assert.deepEqual(responses(b.sys).map((r) => [r.prgi, r.code]), [[1, 1], [2, 1], [3, 0]]);
  iommu_sva_unbind_device(b.handle);
});

Deno.test("munmap: IOTINVAL.VMA of the PASID's PSCID and its ATS.INVAL, fenced, before the pages go back", () => {
  const b = bound();
  for (let i = 0; i < 4; i++) request(b, VA + i * 4096, i);
  settle(b.sys);
  const sva = b.handle.domain as RiscvIommuSvaDomain;
  const pages = b.sys.kernel.pages.allocatedPages;
  const cmds = commandsOf(b.sys, () => vm_munmap(b.mm, VA + 4096, 3 * 4096));
  assert.deepEqual(cmds, [
    `IOTINVAL.VMA pscid=${sva.pscid} addr=0x1000001000`,
    `IOTINVAL.VMA pscid=${sva.pscid} addr=0x1000002000`,
    `IOTINVAL.VMA pscid=${sva.pscid} addr=0x1000003000`,
    `ATS.INVAL rid=0x8 pid=0x${b.pasid.toString(16)} range=0x1000000000+0x4000`,
    "IOFENCE.C pr pw",
  ]);
  assert.equal(b.sys.kernel.pages.allocatedPages, pages - 3);
  // A large unmap: one PSCID-wide IOTINVAL; the ATC still gets the smallest block holding it.
  const wide = commandsOf(b.sys, () => vm_munmap(b.mm, VA, 64 * 4096 + 600 * 4096));
  assert.deepEqual(wide, [
    `IOTINVAL.VMA pscid=${sva.pscid}`,
    `ATS.INVAL rid=0x8 pid=0x${b.pasid.toString(16)} range=0x1000000000+0x400000`,
    "IOFENCE.C pr pw",
  ]);
  iommu_sva_unbind_device(b.handle);
});

Deno.test("the process exits while bound: its PASID stops translating before its tables go; unbind after that", () => {
  const b = bound();
  request(b, VA, 1);
  settle(b.sys);
  const sva = b.handle.domain as RiscvIommuSvaDomain;
  const cmds = commandsOf(b.sys, () => mmput(b.mm));
  assert.deepEqual(cmds.slice(0, 4), [
    `IODIR.INVAL_PDT did=0x8 pid=0x${b.pasid.toString(16)}`,
    `IOTINVAL.VMA pscid=${sva.pscid}`,
    `ATS.INVAL rid=0x8 pid=0x${b.pasid.toString(16)} all`,
    "IOFENCE.C pr pw",
  ]);
  b.sys.fake.commands.length = 0;
  request(b, VA + 4096, 2);
  settle(b.sys);
  assert.deepEqual(responses(b.sys).map((r) => r.code), [1], "an exited mm: Invalid Request");
  iommu_sva_unbind_device(b.handle);
  device_del(b.ep.pdev);
  device_del(b.sys.dev);
  assert.equal(b.sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(b.sys.kernel.slab.allocations(), []);
});

Deno.test("unbind with requests in flight: the queue is drained and each group answered once before the PASID goes", () => {
  const b = bound();
  b.sys.fake.commands.length = 0;
  for (let i = 0; i < 8; i++) request(b, VA + i * 4096, i); // raised, not yet taken by the CPU
  iommu_sva_unbind_device(b.handle);
  const got = responses(b.sys);
  assert.deepEqual(got.map((r) => [r.prgi, r.code]), [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [i, 0]));
  assert.equal(b.mm.rss, 8, "handled before the PASID went");
  const unbindAt = b.sys.fake.commands.findIndex((c) => c.text.startsWith("IODIR.INVAL_PDT"));
  assert.ok(unbindAt < b.sys.fake.commands.findIndex((c) => decodePrgr(c) !== null));
  // Later requests of the PASID find no handler: the core answers them.
  b.sys.fake.commands.length = 0;
  request(b, VA, 9);
  settle(b.sys);
  assert.deepEqual(responses(b.sys).map((r) => [r.prgi, r.code]), [[9, 1]]);
  settle(b.sys);
  assert.equal(responses(b.sys).length, 1, "nothing answered twice");
});
