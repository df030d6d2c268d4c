import assert from "node:assert/strict";
import {
  type AttributeGroup,
  bus_register,
  Device,
  device_add,
  device_add_groups,
  device_remove_groups,
  type DeviceAttribute,
  Errno,
  Kernel,
  sysfs_read,
  sysfs_readdir,
  sysfs_write,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

function setup() {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
  const bus = bus_register(kernel, { name: "event_source", match: () => false });
  const parent = new Device(kernel, { name: "iommu.riscv_iommu_hpm.0" });
  const dev = new Device(kernel, { name: "pmu_0", bus, parent });
  device_add(dev);
  return { kernel, bus, parent, dev };
}

const ro = (name: string, text: string): DeviceAttribute => ({
  name,
  mode: 0o444,
  show: () => text,
});

Deno.test("sysfs: named groups are subdirectories, unnamed ones files; the bus link reaches them", () => {
  const { kernel, dev } = setup();
  const seen: string[] = [];
  const cpumask: DeviceAttribute = {
    name: "cpumask",
    mode: 0o444,
    show: (d, a) => {
      seen.push(`${d.name}:${a.name}`);
      return "0\n";
    },
  };
  device_add_groups(dev, [
    { attrs: [cpumask] },
    { name: "format", attrs: [ro("event", "config:0-14\n"), ro("filter_dmask", "config1:15\n")] },
  ]);
  const base = "/sys/bus/event_source/devices/pmu_0";
  assert.deepEqual(sysfs_readdir(kernel, base), ["cpumask", "format"]);
  assert.deepEqual(sysfs_readdir(kernel, `${base}/format`), ["event", "filter_dmask"]);
  assert.equal(sysfs_read(kernel, `${base}/format/filter_dmask`), "config1:15\n");
  assert.equal(sysfs_read(kernel, `${base}/cpumask`), "0\n");
  // The real directory sits under the parent's, and show() gets the device and its attribute.
  assert.equal(sysfs_read(kernel, "/sys/devices/iommu.riscv_iommu_hpm.0/pmu_0/cpumask"), "0\n");
  assert.deepEqual(seen, ["pmu_0:cpumask", "pmu_0:cpumask"]);
});

Deno.test("sysfs: is_visible hides an attribute with 0 and may change its mode", () => {
  const { kernel, dev } = setup();
  const stored: string[] = [];
  const attrs: DeviceAttribute[] = [
    ro("cycles", "event=0x00\n"),
    ro("tlb_mis", "event=0x04\n"),
    { name: "knob", mode: 0o644, show: () => "1\n", store: (_d, _a, b) => void stored.push(b) },
  ];
  const calls: number[] = [];
  const grp: AttributeGroup = {
    name: "events",
    attrs,
    is_visible: (_d, a, n) => {
      calls.push(n);
      if (a.name === "tlb_mis") return 0;
      return a.name === "knob" ? 0o444 : a.mode;
    },
  };
  device_add_groups(dev, [grp]);
  assert.deepEqual(calls, [0, 1, 2]);
  const dir = "/sys/bus/event_source/devices/pmu_0/events";
  assert.deepEqual(sysfs_readdir(kernel, dir), ["cycles", "knob"]);
  assert.throws(() => sysfs_read(kernel, `${dir}/tlb_mis`), { code: "ENOENT" });
  assert.throws(() => sysfs_write(kernel, `${dir}/knob`, "2"), { code: "EACCES" });
  assert.deepEqual(stored, []);
});

Deno.test("sysfs: store() receives writes and refuses with its errno", () => {
  const { kernel, dev } = setup();
  let value = 4;
  device_add_groups(dev, [{
    attrs: [{
      name: "perf_event_mux_interval_ms",
      mode: 0o644,
      show: () => `${value}\n`,
      store: (_d, _a, buf) => {
        const n = Number(buf.trim());
        if (!Number.isInteger(n) || n < 1) throw new Errno("EINVAL", buf);
        value = n;
      },
    }],
  }]);
  const path = "/sys/bus/event_source/devices/pmu_0/perf_event_mux_interval_ms";
  sysfs_write(kernel, path, "10\n");
  assert.equal(sysfs_read(kernel, path), "10\n");
  assert.throws(() => sysfs_write(kernel, path, "0"), { code: "EINVAL" });
  assert.equal(sysfs_read(kernel, path), "10\n");
});

Deno.test("sysfs: bad paths fail as the syscalls do", () => {
  const { kernel, dev } = setup();
  device_add_groups(dev, [{ name: "format", attrs: [ro("event", "config:0-14\n")] }, {
    attrs: [{ name: "wo", mode: 0o200, store: () => {} }, { name: "noshow", mode: 0o444 }],
  }]);
  const base = "/sys/bus/event_source/devices/pmu_0";
  assert.throws(() => sysfs_read(kernel, `${base}/format/umask`), { code: "ENOENT" });
  assert.throws(() => sysfs_read(kernel, "/proc/cpuinfo"), { code: "ENOENT" });
  assert.throws(() => sysfs_read(kernel, `${base}/format`), { code: "EISDIR" });
  assert.throws(() => sysfs_readdir(kernel, `${base}/format/event`), { code: "ENOTDIR" });
  assert.throws(() => sysfs_read(kernel, `${base}/format/event/x`), { code: "ENOTDIR" });
  assert.throws(() => sysfs_read(kernel, `${base}/wo`), { code: "EACCES" });
  assert.throws(() => sysfs_read(kernel, `${base}/noshow`), { code: "EIO" });
  assert.throws(() => sysfs_write(kernel, `${base}/format/event`, "1"), { code: "EACCES" });
  assert.throws(() => sysfs_write(kernel, `${base}/format`, "1"), { code: "EISDIR" });
});

Deno.test("sysfs: device_add_groups is all or none; duplicates are EEXIST", () => {
  const { kernel, dev, bus } = setup();
  const format: AttributeGroup = { name: "format", attrs: [ro("event", "config:0-14\n")] };
  assert.throws(
    () => device_add_groups(dev, [{ attrs: [ro("cpumask", "0\n")] }, format, format]),
    { code: "EEXIST" },
  );
  // Nothing is left behind, not even the device's directory or its bus link.
  assert.deepEqual(sysfs_readdir(kernel, "/sys/bus/event_source/devices"), []);
  assert.throws(
    () => device_add_groups(dev, [{ attrs: [ro("type", "6\n"), ro("type", "6\n")] }]),
    { code: "EEXIST" },
  );
  assert.deepEqual(sysfs_readdir(kernel, "/sys/bus/event_source/devices"), []);
  // Two devices of one name under one parent cannot both have a directory.
  device_add_groups(dev, [format]);
  const twin = new Device(kernel, { name: "pmu_0", bus, parent: dev.parent });
  assert.throws(() => device_add_groups(twin, [format]), { code: "EEXIST" });
  assert.equal(
    sysfs_read(kernel, "/sys/bus/event_source/devices/pmu_0/format/event"),
    "config:0-14\n",
  );
});

Deno.test("sysfs: removing the last group removes the directory, its bus link and empty parents", () => {
  const { kernel, dev, parent } = setup();
  const groups: AttributeGroup[] = [
    { attrs: [ro("type", "6\n")] },
    { name: "format", attrs: [ro("event", "config:0-14\n")] },
  ];
  device_add_groups(dev, groups);
  device_remove_groups(dev, [groups[1]]);
  assert.deepEqual(sysfs_readdir(kernel, "/sys/bus/event_source/devices/pmu_0"), ["type"]);
  device_remove_groups(dev, [groups[0]]);
  assert.deepEqual(sysfs_readdir(kernel, "/sys/bus/event_source/devices"), []);
  assert.throws(() => sysfs_readdir(kernel, `/sys/devices/${parent.name}`), { code: "ENOENT" });
  assert.deepEqual(sysfs_readdir(kernel, "/sys/devices"), []);
  // And the device can publish again.
  device_add_groups(dev, groups);
  assert.equal(sysfs_read(kernel, "/sys/bus/event_source/devices/pmu_0/type"), "6\n");
});

Deno.test("sysfs: each kernel has its own tree", () => {
  const a = setup();
  const b = setup();
  device_add_groups(a.dev, [{ attrs: [ro("type", "6\n")] }]);
  assert.equal(sysfs_read(a.kernel, "/sys/bus/event_source/devices/pmu_0/type"), "6\n");
  assert.throws(() => sysfs_readdir(b.kernel, "/sys/bus/event_source/devices"), { code: "ENOENT" });
});
