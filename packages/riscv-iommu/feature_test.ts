// The extension points of feature.ts, exercised by a small test feature that uses every hook
// the way the page-request-queue and HPM series do.
import assert from "node:assert/strict";
import {
  type Device,
  device_del,
  Errno,
  free_irq,
  IRQ_HANDLED,
  IRQ_NONE,
  IRQF_SHARED,
  request_irq,
} from "@iommu-lab/kernel";
import {
  dev_iommu_ops,
  dev_iommu_priv_get,
  device_iommu_capable,
  IOMMU_CAP_CACHE_COHERENCY,
  IOMMU_CAP_DIRTY_TRACKING,
  IOMMU_CAP_NOEXEC,
  IOMMU_CAP_PRE_BOOT_PROTECTION,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_PASID,
  iommu_map,
  iommu_paging_domain_alloc_flags,
  IOMMU_READ,
} from "@iommu-lab/iommu";
import {
  riscv_iommu_cmd_iodir_inval_ddt,
  riscv_iommu_cmd_iodir_set_did,
  riscv_iommu_cmd_prgr,
  riscv_iommu_cmd_prgr_set_devid,
  riscv_iommu_cmd_prgr_set_response,
  RISCV_IOMMU_INTR_PM,
  RISCV_IOMMU_INTR_PQ,
  RISCV_IOMMU_IPSR_PIP,
  RISCV_IOMMU_IPSR_PMIP,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FQCSR,
  RISCV_IOMMU_REG_IPSR,
  RISCV_IOMMU_REG_PQB,
  RISCV_IOMMU_REG_PQCSR,
  RiscvIommuCommand,
} from "./bits.ts";
import type { RiscvIommuFeature } from "./feature.ts";
import {
  dev_to_iommu,
  riscv_iommu_alloc_paging_domain,
  riscv_iommu_cmd_send,
  riscv_iommu_cmd_sync,
  riscv_iommu_get_dc,
  RISCV_IOMMU_IOTINVAL_TIMEOUT,
  riscv_iommu_irq,
  riscv_iommu_queue_consume,
  riscv_iommu_queue_release,
  type RiscvIommuInfo,
} from "./internal.ts";
import { riscv_iommu_readl, riscv_iommu_writel, type RiscvIommuDevice } from "./mod.ts";
import { RiscvIommuDriver } from "./driver.ts";
import { CAP, FAKE_IOMMU_CAPS, type TestSystem, testSystem } from "./testing.ts";

const { ATS } = CAP;

/** ATS.PRGR answering page-request group `prgi` of device `did` with response `code`. */
function prgr(cmd: RiscvIommuCommand, did: number, prgi: number, code = 0): void {
  riscv_iommu_cmd_prgr(cmd);
  riscv_iommu_cmd_prgr_set_devid(cmd, did);
  riscv_iommu_cmd_prgr_set_response(cmd, prgi, code);
}

/**
 * A feature shaped like the PQ/IOPF and HPM series: a page-request queue answered with
 * ATS.PRGR, the HPM vector claimed in probe, iommu_ops and domain ops added.
 */
function testFeature(log: string[], opts: { failProbe?: boolean } = {}): RiscvIommuFeature {
  const cmd = new RiscvIommuCommand();
  return {
    name: "test-pq",
    missingCapability: (iommu) => (iommu.caps & ATS) !== 0n ? null : "capabilities.ATS",
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
            const pa = q.phys + ((q.head + i) & q.mask) * 16;
            const did = Number(mem.read64(pa) >> 40n);
            const prgi = Number(mem.read64(pa + 8) >> 3n & 0x1ffn);
            log.push(`page request did=${did} prgi=${prgi}`);
            prgr(cmd, did, prgi);
            riscv_iommu_cmd_send(iommu, cmd);
          }
          riscv_iommu_queue_release(q, n);
        }
        riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
      },
    },
    probe(iommu) {
      log.push(`probe pq=${iommu.queues.get(RISCV_IOMMU_INTR_PQ)?.mask}`);
      if (opts.failProbe) throw new Errno("EIO", "Injected feature probe failure");
      const irq = riscv_iommu_irq(iommu, RISCV_IOMMU_INTR_PM);
      const handler = () => {
        if (!(riscv_iommu_readl(iommu, RISCV_IOMMU_REG_IPSR) & RISCV_IOMMU_IPSR_PMIP)) {
          return IRQ_NONE;
        }
        riscv_iommu_writel(iommu, RISCV_IOMMU_REG_IPSR, RISCV_IOMMU_IPSR_PMIP);
        log.push("pmu overflow");
        return IRQ_HANDLED;
      };
      request_irq(iommu.dev.kernel, irq, handler, IRQF_SHARED, "riscv_iommu_pmu", iommu);
      iommu.feature_data.set("test-pq", irq);
    },
    remove(iommu: RiscvIommuDevice) {
      free_irq(iommu.dev.kernel, iommu.feature_data.get("test-pq") as number, iommu);
      log.push("remove");
    },
    allocFlags: IOMMU_HWPT_ALLOC_PASID,
    hwInfoTypes: [0x5c],
    ops: {
      capable: (_dev, cap) => cap === IOMMU_CAP_DIRTY_TRACKING,
      hw_info: () => ({ type: 0x5c, data: new Uint8Array([1, 2]) }),
      page_response(dev, evt, msg) {
        const iommu = dev_to_iommu(dev);
        prgr(cmd, dev.fwspec!.ids[0], evt.grpid, msg.code);
        riscv_iommu_cmd_send(iommu, cmd);
        riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
      },
      domain_alloc_paging_flags(dev, flags) {
        if (flags & ~IOMMU_HWPT_ALLOC_PASID) {
          throw new Errno("EOPNOTSUPP", `Flags 0x${flags.toString(16)}`);
        }
        log.push(`alloc flags=${flags}`);
        return riscv_iommu_alloc_paging_domain(dev);
      },
    },
    domainOps: {
      iotlb_sync_map: (_d, iova, size) => void log.push(`sync_map 0x${iova.toString(16)}+${size}`),
    },
  };
}

function atsSystem(log: string[], failProbe = false): TestSystem {
  return testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features: [testFeature(log, { failProbe })] });
}

Deno.test("feature queue and probe run after CQ and FQ are on and before the directory is set", () => {
  const log: string[] = [];
  const sys = atsSystem(log);
  const w = sys.rec.writes();
  const at = (reg: number, v: number | bigint) => w.findIndex(([o, x]) => o === reg && x === v);
  const ddtOn = w.findIndex(([o, v]) => o === RISCV_IOMMU_REG_DDTP && ((v as bigint) & 15n) === 4n);
  assert.ok(at(RISCV_IOMMU_REG_FQCSR, 0x103) < at(RISCV_IOMMU_REG_PQCSR, 0x103));
  assert.ok(at(RISCV_IOMMU_REG_PQCSR, 0x103) < ddtOn);
  assert.deepEqual(log, ["probe pq=15"]);
  assert.equal(sys.iommu!.active_features.length, 1);
  assert.equal(
    sys.kernel.irq.procInterrupts().filter((l) => l.includes("riscv_iommu_pmu")).length,
    1,
  );
});

Deno.test("feature queue: records are consumed by its thread on the PIV vector, answered on the CQ", () => {
  const log: string[] = [];
  const sys = atsSystem(log);
  sys.fake.commands.length = 0;
  sys.fake.record(2, [0x42n << 40n, 7n << 3n | 4n]);
  sys.fake.record(2, [0x43n << 40n, 8n << 3n | 4n]);
  sys.kernel.clock.advance(1000);
  assert.deepEqual(log.slice(1), ["page request did=66 prgi=7", "page request did=67 prgi=8"]);
  assert.deepEqual(sys.fake.commands.map((c) => c.text.split(" ")[0]), [
    "ATS.PRGR",
    "ATS.PRGR",
    "IOFENCE.C",
  ]);
  assert.equal(sys.fake.qh[2], 2, "pqh advanced");
  assert.equal(sys.fake.ipsr & RISCV_IOMMU_IPSR_PIP, 0);
});

Deno.test("queue_send() runs with interrupts off: a feature thread's command waits for the interrupted one", () => {
  const log: string[] = [];
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features: [testFeature(log)], cqLog2: 2 });
  const iommu = sys.iommu!;
  sys.fake.commands.length = 0;
  sys.fake.stallUntil = sys.kernel.clock.now() + 1000 * 1000;
  const cmd = new RiscvIommuCommand();
  const inval = (did: number) => {
    riscv_iommu_cmd_iodir_inval_ddt(cmd);
    riscv_iommu_cmd_iodir_set_did(cmd, did);
    riscv_iommu_cmd_send(iommu, cmd);
  };
  for (let did = 1; did <= 3; did++) inval(did); // 4 slots: the queue is full
  // A page request is raised; its thread answers on the CQ as soon as the CPU takes it.
  sys.fake.record(2, [0x42n << 40n, 7n << 3n | 4n]);
  inval(4); // waits for the stalled hardware, letting time (and the interrupt) pass
  riscv_iommu_cmd_sync(iommu, RISCV_IOMMU_IOTINVAL_TIMEOUT);
  assert.deepEqual(sys.fake.commands.map((c) => c.text), [
    "IODIR.INVAL_DDT did=0x1",
    "IODIR.INVAL_DDT did=0x2",
    "IODIR.INVAL_DDT did=0x3",
    "IODIR.INVAL_DDT did=0x4",
    `ATS.PRGR 0x${(0x42n << 40n | 1n << 33n | 1n << 7n | 4n).toString(16)} 0x${
      (0x42n << 48n | 7n << 32n).toString(16)
    }`,
    "IOFENCE.C pr pw",
    "IOFENCE.C pr pw",
  ]);
  assert.deepEqual(log.slice(1), ["page request did=66 prgi=7"]);
  assert.deepEqual(sys.kernel.dmesg.grep(/error|Queue/), []);
});

Deno.test("feature claims the HPM vector (icvec.pmiv) with riscv_iommu_irq()", () => {
  const log: string[] = [];
  const sys = atsSystem(log);
  sys.fake.pmInterrupt();
  sys.kernel.clock.advance(1000);
  assert.deepEqual(log.slice(1), ["pmu overflow"]);
});

Deno.test("riscv_iommu_capable: the base driver reports IOMMU_CAP_CACHE_COHERENCY and nothing else", () => {
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS });
  const ep = sys.addEndpoint("ep0", 0x42);
  assert.ok(device_iommu_capable(ep, IOMMU_CAP_CACHE_COHERENCY));
  for (const cap of [IOMMU_CAP_NOEXEC, IOMMU_CAP_PRE_BOOT_PROTECTION, IOMMU_CAP_DIRTY_TRACKING]) {
    assert.ok(!device_iommu_capable(ep, cap), `cap ${cap}`);
  }
});

Deno.test("feature ops: capable is OR-ed, hw_info, page_response, domain_alloc_paging_flags, domain ops", () => {
  const log: string[] = [];
  const other: RiscvIommuFeature = {
    name: "pre-boot",
    ops: { capable: (_dev, cap) => cap === IOMMU_CAP_PRE_BOOT_PROTECTION },
  };
  const sys = testSystem({ caps: FAKE_IOMMU_CAPS | ATS, features: [testFeature(log), other] });
  const ep = sys.addEndpoint("ep0", 0x42);
  // The base driver's, then each feature's.
  assert.ok(device_iommu_capable(ep, IOMMU_CAP_CACHE_COHERENCY));
  assert.ok(device_iommu_capable(ep, IOMMU_CAP_DIRTY_TRACKING));
  assert.ok(device_iommu_capable(ep, IOMMU_CAP_PRE_BOOT_PROTECTION));
  assert.ok(!device_iommu_capable(ep, IOMMU_CAP_NOEXEC));
  assert.deepEqual(dev_iommu_ops(ep).hw_info!(ep, IOMMU_HW_INFO_TYPE_DEFAULT), {
    type: 0x5c,
    data: new Uint8Array([1, 2]),
  });

  sys.fake.commands.length = 0;
  dev_iommu_ops(ep).page_response!(ep, { flags: 0, pasid: 0, grpid: 3, perm: 0, addr: 0 }, {
    pasid: 0,
    grpid: 3,
    code: 1,
  });
  assert.deepEqual(sys.fake.commands.map((c) => c.text), [
    `ATS.PRGR 0x${(0x42n << 40n | 1n << 33n | 1n << 7n | 4n).toString(16)} 0x${
      (0x42n << 48n | 1n << 44n | 3n << 32n).toString(16)
    }`,
    "IOFENCE.C pr pw",
  ]);

  // The default domain of ep0 came from the base driver (flags 0); PASID is the feature's.
  assert.ok(!log.some((l) => l.startsWith("alloc")));
  const d = iommu_paging_domain_alloc_flags(ep, IOMMU_HWPT_ALLOC_PASID);
  assert.ok(log.includes("alloc flags=8"));
  assert.throws(() => iommu_paging_domain_alloc_flags(ep, 2), { code: "EOPNOTSUPP" });
  iommu_map(d, 0x1000, 0x8000_1000, 0x1000, IOMMU_READ);
  assert.ok(log.includes("sync_map 0x1000+4096"));
});

Deno.test("a feature whose capability check fails is skipped: no queue, no probe, no remove", () => {
  const log: string[] = [];
  const sys = testSystem({ features: [testFeature(log)] });
  assert.deepEqual(log, []);
  assert.equal(sys.rec.writes().filter(([o]) => o === RISCV_IOMMU_REG_PQCSR).length, 0);
  assert.equal(sys.iommu!.queues.size, 0);
  device_del(sys.dev);
  assert.deepEqual(log, []);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
});

Deno.test("feature remove runs after the directory is off and before the CQ is disabled", () => {
  const log: string[] = [];
  const sys = atsSystem(log);
  sys.rec.clear();
  device_del(sys.dev);
  assert.deepEqual(log, ["probe pq=15", "remove"]);
  const w = sys.rec.writes();
  const ddtOff = w.findIndex(([o, v]) => o === RISCV_IOMMU_REG_DDTP && v === 0n);
  const pqOff = w.findIndex(([o, v]) => o === RISCV_IOMMU_REG_PQCSR && v === 0);
  const cqOff = w.findIndex(([o, v]) => o === RISCV_IOMMU_REG_CQCSR && v === 0);
  assert.ok(ddtOff >= 0 && ddtOff < pqOff && pqOff < cqOff);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.irq.procInterrupts(), []);
});

Deno.test("a failing feature probe fails the IOMMU probe and unwinds its queue and the core's", () => {
  const log: string[] = [];
  const sys = atsSystem(log, true);
  assert.equal(sys.iommu, null);
  assert.equal(sys.kernel.dmesg.grep("probe of 3010000.iommu failed with error -5").length, 1);
  const w = sys.rec.writes().map(([o, v]) => `${o}=${v}`);
  assert.deepEqual(w.slice(-3), [
    `${RISCV_IOMMU_REG_PQCSR}=0`,
    `${RISCV_IOMMU_REG_FQCSR}=0`,
    `${RISCV_IOMMU_REG_CQCSR}=0`,
  ]);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.irq.procInterrupts(), []);
});

Deno.test("driver instance refuses features clashing on a name or an op (EINVAL)", () => {
  const f = (name: string, ops = {}) => ({ name, ops });
  assert.throws(() => new RiscvIommuDriver({ features: [f("a"), f("a")] }), { code: "EINVAL" });
  assert.throws(
    () => new RiscvIommuDriver({ features: [f("a", { device_group: () => null! })] }),
    { code: "EINVAL", message: /cannot replace device_group of the base driver/ },
  );
  const hw = { hw_info: () => ({ type: 0, data: new Uint8Array() }) };
  const info = (name: string) => ({ ...f(name, hw), hwInfoTypes: [7] });
  assert.throws(
    () => new RiscvIommuDriver({ features: [info("a"), info("b")] }),
    { code: "EINVAL", message: /Feature b cannot take hw_info type 7 of feature a/ },
  );
});

/**
 * A feature using the per-device hooks as an ATS/PRI series does: it records each call with the
 * state of the device's context at that moment, and keeps per-device state in `info`.
 */
function perDeviceFeature(name: string, log: string[], failOn?: string): RiscvIommuFeature {
  const dcState = (iommu: RiscvIommuDevice, dev: Device) => {
    const tc = iommu.dev.kernel.mem.read64(riscv_iommu_get_dc(iommu, dev.fwspec!.ids[0]));
    return tc & 1n ? "valid" : "invalid";
  };
  return {
    name,
    probeDevice(iommu, dev, info) {
      if (dev.name === failOn) throw new Errno("EOPNOTSUPP", `${name} refuses ${dev.name}`);
      log.push(`${name} probe ${dev.name} dc ${dcState(iommu, dev)}`);
      info.feature_data.set(name, { ats: true, id: dev.fwspec!.ids[0] });
    },
    releaseDevice(iommu, dev, info) {
      const data = JSON.stringify(info.feature_data.get(name));
      log.push(`${name} release ${dev.name} dc ${dcState(iommu, dev)} ${data}`);
    },
  };
}

Deno.test("per-device hooks: probeDevice before the first attach, releaseDevice after the blocking one", () => {
  const log: string[] = [];
  const sys = testSystem({ features: [perDeviceFeature("a", log), perDeviceFeature("b", log)] });
  const ep = sys.addEndpoint("ep0", 0x42);
  assert.deepEqual(log, ["a probe ep0 dc invalid", "b probe ep0 dc invalid"]);
  // The default DMA domain was attached after the hooks ran.
  assert.equal(sys.ram.read64(riscv_iommu_get_dc(sys.iommu!, 0x42)) & 1n, 1n);
  const info = dev_iommu_priv_get<RiscvIommuInfo>(ep);
  assert.deepEqual(info.feature_data.get("a"), { ats: true, id: 0x42 });
  log.length = 0;
  device_del(ep);
  assert.deepEqual(log, [
    'b release ep0 dc invalid {"ats":true,"id":66}',
    'a release ep0 dc invalid {"ats":true,"id":66}',
  ]);
  device_del(sys.dev);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.slab.allocations(), []);
});

Deno.test("per-device hooks: a failing probeDevice fails the probe and releases the features before it", () => {
  const log: string[] = [];
  const sys = testSystem({
    features: [perDeviceFeature("a", log), perDeviceFeature("b", log, "ep1")],
  });
  sys.addEndpoint("ep0", 1);
  const objects = sys.kernel.slab.allocatedObjects;
  log.length = 0;
  assert.throws(() => sys.addEndpoint("ep1", 2), { code: "EOPNOTSUPP" });
  assert.deepEqual(log, ["a probe ep1 dc invalid", 'a release ep1 dc invalid {"ats":true,"id":2}']);
  assert.equal(sys.kernel.slab.allocatedObjects, objects, "per-device data freed");
});

Deno.test("per-device hooks run only for the features active on the device's IOMMU", () => {
  const log: string[] = [];
  const skipped = { ...perDeviceFeature("ats", log), missingCapability: () => "capabilities.ATS" };
  const sys = testSystem({ features: [skipped] });
  device_del(sys.addEndpoint("ep0", 1));
  assert.deepEqual(log, []);
});
