import assert from "node:assert/strict";
import {
  dev_dbg,
  dev_err,
  dev_err_probe,
  dev_info,
  Device,
  Dmesg,
  Errno,
  formatTimestamp,
  Kernel,
  LOGLEVEL_WARNING,
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
