import assert from "node:assert/strict";
import {
  __ratelimit,
  dev_dbg,
  dev_err,
  dev_err_once,
  dev_err_probe,
  dev_info,
  dev_warn_once,
  dev_warn_ratelimited,
  Device,
  Dmesg,
  Errno,
  formatTimestamp,
  Kernel,
  LOGLEVEL_WARNING,
  RatelimitState,
  SimClock,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

Deno.test("dmesg timestamps print as [%5lu.%06lu] of simulated time", async (t) => {
  for (
    const [ns, want] of [
      [0, "[    0.000000]"],
      [999, "[    0.000000]"],
      [1_374_429_999, "[    1.374429]"],
      [12_345_000_001_000, "[12345.000001]"],
      [123_456_000_000_000, "[123456.000000]"],
    ] as const
  ) {
    await t.step(`${ns} ns`, () => assert.equal(formatTimestamp(ns), want));
  }
});

Deno.test("dev_info() prefixes driver name then device name, stamped with the kernel clock", () => {
  const clock = new SimClock();
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), clock });
  const dev = new Device(kernel, { name: "3010000.iommu" });
  dev_info(dev, "not bound yet");
  dev.driver = { name: "riscv,iommu", probe() {} };
  clock.advance(1_374_429_000);
  dev_err(dev, "queue init failed");
  assert.deepEqual(kernel.dmesg.lines(), [
    "[    0.000000] 3010000.iommu: not bound yet",
    "[    1.374429] riscv,iommu 3010000.iommu: queue init failed",
  ]);
  assert.deepEqual(kernel.dmesg.records().map((r) => r.level), [6, 3]);
});

Deno.test("dev_dbg() is recorded only with dynamic debug on", () => {
  const kernel = new Kernel({ mem: new TestRam(0, 1 << 20) });
  const dev = new Device(kernel, { name: "d" });
  dev_dbg(dev, "hidden");
  kernel.dmesg.debug = true;
  dev_dbg(dev, "shown");
  assert.deepEqual(kernel.dmesg.grep(/hidden|shown/), ["d: shown"]);
});

Deno.test("dev_err_probe() logs the errno name but stays quiet for EPROBE_DEFER", () => {
  const kernel = new Kernel({ mem: new TestRam(0, 1 << 20) });
  const dev = new Device(kernel, { name: "d" });
  const e = dev_err_probe(dev, "ENODEV", "unable to use message-signaled interrupts");
  assert.ok(e instanceof Errno && e.code === "ENODEV");
  const d = dev_err_probe(dev, new Errno("EPROBE_DEFER"), "no irq domain");
  assert.ok(d instanceof Errno && d.code === "EPROBE_DEFER");
  assert.deepEqual(kernel.dmesg.lines(), [
    "[    0.000000] d: error -ENODEV: unable to use message-signaled interrupts",
  ]);
});

Deno.test("dmesg is a ring: the oldest records drop out and are counted", () => {
  const log = new Dmesg(new SimClock(), 3);
  for (let i = 0; i < 5; i++) log.printk(6, `m${i}`);
  assert.deepEqual(log.records().map((r) => r.text), ["m2", "m3", "m4"]);
  assert.equal(log.dropped, 2);
  log.printk(LOGLEVEL_WARNING, "a\nb\n");
  assert.deepEqual(log.records().map((r) => r.text), ["m4", "a", "b"]);
  assert.deepEqual(log.lines(LOGLEVEL_WARNING), ["[    0.000000] a", "[    0.000000] b"]);
  for (let i = 0; i < 10; i++) log.printk(6, `n${i}`);
  assert.deepEqual(log.records().map((r) => r.text), ["n7", "n8", "n9"]);
  assert.equal(log.dropped, 2 + 2 + 10);
  log.clear();
  assert.equal(log.toString(), "");
});

Deno.test("Dmesg: a ring of fewer than one record is EINVAL, from the kernel options too", () => {
  for (const n of [0, -1, 2.5]) {
    assert.throws(() => new Dmesg(new SimClock(), n), { code: "EINVAL" }, `${n}`);
    assert.throws(
      () => new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20), dmesgSize: n }),
      { code: "EINVAL" },
    );
  }
});

Deno.test("dev_err_once()/dev_warn_once(): each message once per device, at its level", () => {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const a = new Device(kernel, { name: "a" });
  const b = new Device(kernel, { name: "b" });
  for (let i = 0; i < 3; i++) {
    dev_err_once(a, "Hardware error: command execution timeout");
    dev_warn_once(a, "odd");
    dev_err_once(b, "Hardware error: command execution timeout");
  }
  dev_err_once(a, "Hardware error: command enqueue failed");
  assert.deepEqual(kernel.dmesg.records().map((r) => [r.level, r.text]), [
    [3, "a: Hardware error: command execution timeout"],
    [LOGLEVEL_WARNING, "a: odd"],
    [3, "b: Hardware error: command execution timeout"],
    [3, "a: Hardware error: command enqueue failed"],
  ]);
  kernel.dmesg.clear();
  dev_err_once(a, "Hardware error: command execution timeout");
  assert.deepEqual(kernel.dmesg.records(), [], "dmesg -C does not re-arm");
  const other = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  dev_warn_once(new Device(other, { name: "a" }), "odd");
  assert.deepEqual(other.dmesg.grep("odd"), ["a: odd"], "no state shared between kernels");
});

Deno.test("__ratelimit(): burst per interval of simulated time, then '<func>: N callbacks suppressed'", () => {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const dev = new Device(kernel, { name: "iommu" });
  const rs = new RatelimitState("riscv_iommu_fault");
  for (let i = 0; i < 13; i++) dev_warn_ratelimited(dev, rs, `Fault ${i}`);
  assert.equal(kernel.dmesg.grep("Fault").length, 10, "DEFAULT_RATELIMIT_BURST");
  kernel.clock.advance(5e9);
  dev_warn_ratelimited(dev, rs, "Fault 13");
  assert.equal(kernel.dmesg.grep("Fault 13").length, 0, "still inside the 5 s interval");
  kernel.clock.advance(1);
  dev_warn_ratelimited(dev, rs, "Fault 14");
  assert.deepEqual(kernel.dmesg.records().slice(-2).map((r) => [r.level, r.text]), [
    [LOGLEVEL_WARNING, "riscv_iommu_fault: 4 callbacks suppressed"],
    [LOGLEVEL_WARNING, "iommu: Fault 14"],
  ]);
  assert.deepEqual([rs.printed, rs.missed], [1, 0]);

  const tight = new RatelimitState("f", 100, 1);
  assert.deepEqual([__ratelimit(kernel, tight), __ratelimit(kernel, tight)], [true, false]);
  const off = new RatelimitState("g", 0, 0);
  assert.ok([1, 2, 3].every(() => __ratelimit(kernel, off)), "interval 0 never limits");
});
