// riscv_iommu_init() / riscv_iommu_remove() / riscv_iommu_disable() against the fake register
// file: exact register sequences, WARL probing, and every error path unwinding cleanly.
import assert from "node:assert/strict";
import { Device, device_add, device_del } from "@iommu-lab/kernel";
import {
  iommu_device_register,
  iommu_device_unregister,
  type IommuCore,
  IommuDevice,
  type IommuOps,
} from "@iommu-lab/iommu";
import {
  RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL,
  RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL,
  RISCV_IOMMU_REG_CQB,
  RISCV_IOMMU_REG_CQCSR,
  RISCV_IOMMU_REG_DDTP,
  RISCV_IOMMU_REG_FCTL,
  RISCV_IOMMU_REG_FQCSR,
} from "./bits.ts";
import { riscv_iommu_iodir_set_mode } from "./iommu.ts";
import { FAKE_IOMMU_CAPS, mmioTrace, type TestSystem, testSystem } from "./testing.ts";

const PPN = (pa: number) => BigInt(pa / 4096) << 10n;

/** The probe failed: message in dmesg, nothing bound, every page back. */
function assertProbeFailed(sys: TestSystem, errno: number, why: RegExp): void {
  assert.equal(sys.iommu, null);
  assert.equal(sys.dev.state, "unbound");
  assert.ok(sys.kernel.dmesg.grep(why).length > 0, sys.kernel.dmesg.lines().join("\n"));
  if (errno !== 19) {
    assert.deepEqual(sys.kernel.dmesg.grep(`failed with error -${errno}`).length, 1);
  }
  assert.equal(sys.kernel.pages.allocatedPages, 0, "pages leaked");
  assert.deepEqual(sys.kernel.slab.allocations(), [], "objects leaked");
  assert.deepEqual(sys.kernel.irq.procInterrupts(), [], "irqs left requested");
}

/** A system whose IOMMU probe runs with the `n`th page or object allocation failing. */
function probeFailing(which: "pages" | "slab", n: number): TestSystem {
  const sys = testSystem({ bind: false });
  sys.kernel[which].failNth(n);
  device_add(sys.dev);
  return sys;
}

Deno.test("riscv_iommu_init() register sequence: icvec, DDT probe, CQ then FQ enable, 3LVL, invalidate", () => {
  const sys = testSystem();
  const iommu = sys.iommu!;
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  const cqb = hex(PPN(iommu.cmdq.phys) | 12n); // 8192 entries
  const fqb = hex(PPN(iommu.fltq.phys) | 11n); // 4096 entries
  const ddtp = hex(PPN(iommu.ddt_phys) | 4n); // 3LVL
  assert.deepEqual(mmioTrace(sys.rec.accesses), [
    // The glue.
    `r capabilities 0x${FAKE_IOMMU_CAPS.toString(16)}`,
    "r fctl 0x0",
    // init_check(): idle, then icvec CIV 0, FIV 1, PMIV 3, PIV 2 and its read-back.
    "r ddtp 0x0",
    "w icvec 0x2310",
    "r icvec 0x2310",
    // iodir_alloc(): WARL probe of a hardware-fixed root in Off.
    "r ddtp 0x0",
    "w ddtp 0x0",
    "r ddtp 0x0",
    // queue_alloc(): WARL probe of LOG2SZ, then base and size, read back.
    "w cqb 0x1f",
    "r cqb 0x1f",
    `w cqb ${cqb}`,
    `r cqb ${cqb}`,
    "w fqb 0x1f",
    "r fqb 0x1f",
    `w fqb ${fqb}`,
    `r fqb ${fqb}`,
    // queue_enable() CQ then FQ: empty, EN|IE|MF, settled and on, pending bit cleared.
    "w cqt 0x0",
    "w cqcsr 0x103",
    "r cqcsr 0x10003",
    "w ipsr 0x1",
    "w fqh 0x0",
    "w fqcsr 0x103",
    "r fqcsr 0x10003",
    "w ipsr 0x2",
    // iodir_set_mode(3LVL), then IODIR.INVAL_DDT, IOTINVAL.VMA, IOFENCE.C and its wait.
    "r ddtp 0x0",
    `w ddtp ${ddtp}`,
    `r ddtp ${ddtp}`,
    "w cqt 0x1",
    "w cqt 0x2",
    "w cqt 0x3",
    "r cqcsr 0x10003",
    "r cqh 0x3",
  ]);
  assert.deepEqual(sys.fake.commands.map((c) => c.text), [
    "IODIR.INVAL_DDT",
    "IOTINVAL.VMA",
    "IOFENCE.C pr pw",
  ]);
  assert.equal(iommu.ddt_mode, RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL);
  assert.equal(sys.kernel.pages.allocatedPages, 1 + 32 + 32);
  assert.ok(
    (sys.kernel.iommuLayer as IommuCore).iommus.includes(iommu.iommu),
    "registered with the IOMMU core",
  );
});

Deno.test("init_check() distributes icvec over the vectors the glue provides", async (t) => {
  for (const [n, icvec] of [[1, 0n], [2, 0x0110n], [3, 0x2010n], [4, 0x2310n]] as const) {
    await t.step(`${n} vector(s)`, () => {
      const sys = testSystem({ irqs: n });
      assert.equal(sys.iommu!.icvec, icvec);
      assert.equal(sys.kernel.irq.procInterrupts().length, 1 + (n > 1 ? 1 : 0));
    });
  }
  await t.step("no vector is EINVAL", () => {
    assertProbeFailed(testSystem({ irqs: 0 }), 22, /error -EINVAL: unexpected device state/);
  });
  await t.step("a vector read back beyond the ones provided is EINVAL", () => {
    const sys = testSystem({ irqs: 2, icvecFixed: 0x3210n });
    assertProbeFailed(sys, 22, /error -EINVAL: unexpected device state/);
  });
});

Deno.test("init_check() refuses a busy or already translating IOMMU (EBUSY)", async (t) => {
  await t.step("ddtp.busy", () => {
    const sys = testSystem({ ddtpStuckBusy: true });
    assertProbeFailed(sys, 16, /error -EBUSY: unexpected device state/);
  });
  await t.step("directory already in 3LVL (no kdump handover)", () => {
    const sys = testSystem({ resetMode: RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL });
    assertProbeFailed(sys, 16, /error -EBUSY: unexpected device state/);
    assert.deepEqual(sys.rec.writes(), [], "nothing written to an IOMMU in use");
  });
});

Deno.test("init_check() switches fctl.BE to little-endian when capabilities.END allows", async (t) => {
  await t.step("END: BE flipped and read back", () => {
    const sys = testSystem({ caps: FAKE_IOMMU_CAPS | 1n << 27n, fctl: 1 });
    assert.deepEqual(sys.rec.writes()[0], [RISCV_IOMMU_REG_FCTL, 0]);
    assert.equal(sys.iommu!.fctl, 0);
  });
  await t.step("big-endian only hardware is EINVAL", () => {
    assertProbeFailed(testSystem({ fctl: 1 }), 22, /unexpected device state/);
  });
});

Deno.test("iodir_alloc() uses a hardware-fixed DDT root (WARL ddtp.PPN), zeroed, without allocating", () => {
  const root = 0x83ff_0000;
  const sys = testSystem({ fixedDdt: root, bind: false });
  sys.ram.fill(root, 4096, 0xa5);
  device_add(sys.dev);
  assert.equal(sys.iommu!.ddt_phys, root);
  assert.equal(sys.kernel.pages.allocatedPages, 64, "no page for the directory root");
  const ep = sys.addEndpoint("ep0", 0x10203);
  assert.ok(ep.iommu !== null);
  assert.ok(sys.ram.read64(root + 1 * 8) & 1n, "DDI[2]=1 entry valid in the fixed root");
  for (let i = 0; i < 512; i++) if (i !== 1) assert.equal(sys.ram.read64(root + i * 8), 0n);
});

Deno.test("iodir_set_mode() falls back from 3LVL to 2LVL to 1LVL when the WARL mode reads back Off", async (t) => {
  for (const [modes, want] of [[[3], 3], [[2], 2], [[2, 3], 3]] as const) {
    await t.step(`hardware takes ${modes.join(",")} → mode ${want}`, () => {
      const sys = testSystem({ ddtModes: [...modes] });
      const iommu = sys.iommu!;
      assert.equal(iommu.ddt_mode, want);
      const ddtpWrites = sys.rec.writes().filter(([o]) => o === RISCV_IOMMU_REG_DDTP).slice(1);
      const tried = ddtpWrites.map(([, v]) => Number((v as bigint) & 15n));
      assert.deepEqual(tried, [4, 3, 2].filter((m) => m >= want));
      assert.deepEqual(sys.fake.commands.map((c) => c.text), [
        "IODIR.INVAL_DDT",
        "IOTINVAL.VMA",
        "IOFENCE.C pr pw",
      ]);
    });
  }
  await t.step("no xLVL at all: EINVAL, unwound", () => {
    const sys = testSystem({ ddtModes: [] });
    assertProbeFailed(sys, 22, /DDTP hw mode 0, failed to set 4/);
    const csrOff = sys.rec.writes().filter(([o, v]) =>
      (o === RISCV_IOMMU_REG_CQCSR || o === RISCV_IOMMU_REG_FQCSR) && v === 0
    );
    assert.deepEqual(csrOff.map(([o]) => o), [RISCV_IOMMU_REG_FQCSR, RISCV_IOMMU_REG_CQCSR]);
  });
  await t.step("xLVL to xLVL is refused (EINVAL): the spec requires passing Off/Bare", () => {
    const sys = testSystem();
    assert.throws(
      () => riscv_iommu_iodir_set_mode(sys.iommu!, RISCV_IOMMU_DDTP_IOMMU_MODE_2LVL),
      { code: "EINVAL" },
    );
    assert.equal(sys.iommu!.ddt_mode, RISCV_IOMMU_DDTP_IOMMU_MODE_3LVL);
    riscv_iommu_iodir_set_mode(sys.iommu!, 0);
    riscv_iommu_iodir_set_mode(sys.iommu!, RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL);
    assert.equal(sys.iommu!.ddt_mode, RISCV_IOMMU_DDTP_IOMMU_MODE_1LVL);
  });
});

Deno.test("queue_alloc() takes min(requested, hardware WARL maximum) entries", async (t) => {
  await t.step("hardware LOG2SZ-1 max 5: 64 entries each", () => {
    const sys = testSystem({ maxLog2sz: 5 });
    assert.equal(sys.iommu!.cmdq.mask, 63);
    assert.equal(sys.iommu!.fltq.mask, 63);
    assert.equal(sys.kernel.pages.allocatedPages, 1 + 1 + 1);
  });
  await t.step("glue asks for 16 commands", () => {
    const sys = testSystem({ cqLog2: 4 });
    assert.equal(sys.iommu!.cmdq.mask, 15);
    assert.deepEqual(sys.rec.writes()[3], [RISCV_IOMMU_REG_CQB, PPN(sys.iommu!.cmdq.phys) | 3n]);
  });
});

Deno.test("queue_alloc() uses a hardware-fixed ring location (WARL cqb.PPN) without allocating", () => {
  const ring = 0x83f0_0000;
  const sys = testSystem({ fixedCq: ring });
  const iommu = sys.iommu!;
  assert.equal(iommu.cmdq.phys, ring);
  assert.equal(iommu.cmdq.mask, 8191);
  assert.equal(sys.kernel.pages.allocatedPages, 1 + 32, "the DDT root and the fault ring only");
  // The init's invalidation went through the fixed ring.
  assert.equal(sys.ram.read64(ring + 2 * 16) & 0x7fn, 2n, "IOFENCE.C in slot 2");
  assert.deepEqual(sys.fake.commands.map((c) => c.text), [
    "IODIR.INVAL_DDT",
    "IOTINVAL.VMA",
    "IOFENCE.C pr pw",
  ]);
});

Deno.test("queue_alloc() halves the ring while pages are short", () => {
  // Allocation 1 is the DDT root, 2 the 128 KiB command ring.
  const sys = probeFailing("pages", 2);
  assert.equal(sys.iommu!.cmdq.mask, 4095);
  assert.equal(sys.iommu!.fltq.mask, 4095);
  assert.deepEqual(sys.kernel.dmesg.grep("error"), []);
});

Deno.test("queue_alloc() is ENODEV when the base register does not read back", () => {
  const sys = testSystem({ brokenQueueBase: true });
  assertProbeFailed(sys, 19, /queue #0 allocation failed/);
});

Deno.test("a command queue that never executes: init logs 'command execution timeout' once and binds, as Linux", () => {
  const sys = testSystem({ bind: false });
  sys.fake.stallUntil = Infinity;
  const t0 = sys.kernel.clock.now();
  device_add(sys.dev);
  assert.equal(sys.dev.state, "bound", "Linux does not fail the probe on a command timeout");
  assert.ok(sys.kernel.clock.now() - t0 >= 90e9, "the 90 s IOFENCE.C timeout");
  assert.deepEqual(sys.kernel.dmesg.grep("Hardware error"), [
    "riscv,iommu 3010000.iommu: Hardware error: command execution timeout",
  ]);
  assert.deepEqual(sys.fake.commands, [], "nothing was executed");
  device_del(sys.dev);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.slab.allocations(), []);
  assert.deepEqual(sys.kernel.irq.procInterrupts(), []);
});

Deno.test("queue_enable() is EBUSY when the queue does not turn on, and unwinds", () => {
  const sys = testSystem({ queuesNeverOn: true });
  assertProbeFailed(sys, 16, /queue #0 failed to start/);
  assert.deepEqual(sys.rec.writes().at(-1), [RISCV_IOMMU_REG_CQCSR, 0]);
});

Deno.test("fail-nth: each page and object allocation of the probe fails it cleanly or shrinks a queue", async (t) => {
  // Pages: the DDT root, the command ring, the fault ring. Objects: the IOMMU structure.
  for (const [which, count] of [["pages", 3], ["slab", 1]] as const) {
    await t.step(which, () => {
      let n = 1;
      for (;; n++) {
        const sys = probeFailing(which, n);
        const iommu = sys.iommu;
        if (iommu === null) {
          assertProbeFailed(sys, 12, /probe of 3010000\.iommu failed with error -12/);
          continue;
        }
        const shrunk = iommu.cmdq.mask < 8191 || iommu.fltq.mask < 4095;
        device_del(sys.dev);
        assert.equal(sys.kernel.pages.allocatedPages, 0, `pages leaked at ${which} ${n}`);
        assert.deepEqual(sys.kernel.slab.allocations(), [], `objects leaked at ${which} ${n}`);
        if (!shrunk) break;
      }
      assert.equal(n - 1, count, "allocations swept");
    });
  }
});

Deno.test("iommu_device_register() failing: 'cannot register iommu interface', directory Off, unwound", () => {
  const sys = testSystem({ bind: false });
  // Another IOMMU already registered for the same firmware node.
  const other = new Device(sys.kernel, { name: "other", fwnode: sys.fwnode });
  const squatter = new IommuDevice();
  iommu_device_register(squatter, {} as IommuOps, other);
  device_add(sys.dev);
  assertProbeFailed(sys, 17, /error -EEXIST: cannot register iommu interface/);
  const trace = mmioTrace(sys.rec.accesses);
  assert.deepEqual(trace.filter((l) => /^w (ddtp|cqcsr|fqcsr) /.test(l)).slice(-3), [
    "w ddtp 0x0",
    "w fqcsr 0x0",
    "w cqcsr 0x0",
  ]);
  assert.equal(sys.fake.ddtMode, 0, "directory Off");
  // The driver forgot the IOMMU: with the driver's ops registered for that firmware node, an
  // endpoint's probe finds no RISC-V IOMMU (not the dead one, whose directory is Off).
  iommu_device_unregister(squatter);
  iommu_device_register(new IommuDevice(), sys.drv.ops, other);
  assert.throws(() => sys.addEndpoint("ep0", 1), { code: "ENODEV", message: /No RISC-V IOMMU/ });
});

Deno.test("riscv_iommu_remove(): devices blocked, directory Off and invalidated, CQ then FQ off, all freed", () => {
  const sys = testSystem();
  sys.addEndpoint("ep0", 7);
  const iommu = sys.iommu!;
  const ddtp = `0x${(PPN(iommu.ddt_phys) | 4n).toString(16)}`;
  const t0 = iommu.cmdq.tail;
  const cqt = (n: number) => `w cqt 0x${(t0 + n).toString(16)}`;
  const cqh = (n: number) => `r cqh 0x${(t0 + n).toString(16)}`;
  sys.rec.clear();
  sys.fake.commands.length = 0;
  device_del(sys.dev);
  // The endpoint goes to the blocking domain (two-phase update, old PSCID flushed) first.
  assert.deepEqual(sys.fake.commands.map((c) => c.text), [
    "IODIR.INVAL_DDT did=0x7",
    "IOTINVAL.VMA pscid=1",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT did=0x7",
    "IOTINVAL.VMA",
    "IOFENCE.C pr pw",
    "IOTINVAL.VMA pscid=1",
    "IOFENCE.C pr pw",
    "IODIR.INVAL_DDT",
    "IOTINVAL.VMA",
    "IOFENCE.C pr pw",
  ]);
  const trace = mmioTrace(sys.rec.accesses);
  assert.deepEqual(trace.slice(trace.indexOf(`r ddtp ${ddtp}`)), [
    `r ddtp ${ddtp}`,
    "w ddtp 0x0",
    "r ddtp 0x0",
    cqt(9),
    cqt(10),
    cqt(11),
    "r cqcsr 0x10003",
    cqh(11),
    "w cqcsr 0x0",
    "r cqcsr 0x0",
    "w fqcsr 0x0",
    "r fqcsr 0x0",
  ]);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.slab.allocations(), []);
  assert.deepEqual(sys.kernel.irq.procInterrupts(), []);
});

Deno.test("riscv_iommu_disable() at shutdown: Bare, every queue CSR cleared, no wait", () => {
  const sys = testSystem();
  sys.rec.clear();
  sys.kernel.shutdown();
  assert.deepEqual(mmioTrace(sys.rec.accesses), [
    "w ddtp 0x1",
    "w cqcsr 0x0",
    "w fqcsr 0x0",
    "w pqcsr 0x0",
  ]);
});
