import assert from "node:assert/strict";
import {
  type Clock,
  Errno,
  Kernel,
  NSEC_PER_MSEC,
  SimClock,
  sysfs_read,
  sysfs_readdir,
  sysfs_write,
} from "@iommu-lab/kernel";
import { TestRam } from "@iommu-lab/kernel/testing";
import {
  perf_event_create_kernel_counter,
  perf_event_disable,
  perf_event_enable,
  perf_event_open,
  perf_event_read_value,
  perf_event_release_kernel,
  PERF_EVENT_STATE_ACTIVE,
  PERF_EVENT_STATE_DEAD,
  PERF_EVENT_STATE_ERROR,
  PERF_EVENT_STATE_INACTIVE,
  PERF_EVENT_STATE_OFF,
  PERF_EVENT_STATE_REVOKED,
  perf_hw_context,
  perf_pmu_register,
  perf_pmu_unregister,
  perf_sw_context,
  PERF_TYPE_MAX,
  PERF_TYPE_RAW,
  type PerfEvent,
  type PerfEventAttr,
} from "./mod.ts";
import { TestPmu } from "./testing.ts";

const DEV = "/sys/bus/event_source/devices";

/** A kernel on a timer clock and a source that counts `rate[id]` per microsecond. */
function setup(clock: Clock = new SimClock()) {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24), clock });
  const hits = new Map<number, bigint>();
  const emit = (id: number, n = 1n) => hits.set(id, (hits.get(id) ?? 0n) + n);
  // A source that counts time: `id` events per µs.
  const source = (id: number) => hits.get(id) ?? BigInt(Math.floor(kernel.clock.now() / 1000) * id);
  return { kernel, clock, emit, source };
}

function pmu(
  kernel: Kernel,
  name: string,
  source: (id: number) => bigint,
  opts: Partial<ConstructorParameters<typeof TestPmu>[0]> = {},
): TestPmu {
  const p = new TestPmu({ source, ...opts });
  perf_pmu_register(kernel, p, name, -1);
  return p;
}

const ms = (n: number) => n * NSEC_PER_MSEC;

Deno.test("perf_pmu_register: dynamic type ids from PERF_TYPE_MAX, lowest free first; sysfs directory", () => {
  const { kernel, source } = setup();
  const a = pmu(kernel, "pmu_a", source, { identifier: "spacemit,t100" });
  const b = pmu(kernel, "pmu_b", source);
  assert.deepEqual([a.type, b.type], [PERF_TYPE_MAX, PERF_TYPE_MAX + 1]);
  assert.deepEqual(sysfs_readdir(kernel, DEV), ["pmu_a", "pmu_b"]);
  assert.deepEqual(sysfs_readdir(kernel, `${DEV}/pmu_a`), [
    "type",
    "perf_event_mux_interval_ms",
    "cpumask",
    "format",
    "events",
    "identifier",
  ]);
  assert.equal(sysfs_read(kernel, `${DEV}/pmu_a/type`), "6\n");
  assert.equal(sysfs_read(kernel, `${DEV}/pmu_a/identifier`), "spacemit,t100\n");
  assert.equal(sysfs_read(kernel, `${DEV}/pmu_a/perf_event_mux_interval_ms`), "4\n");
  assert.equal(a.dev?.name, "pmu_a");
  // The freed id is the next handed out; a fixed type keeps its number.
  perf_pmu_unregister(a);
  assert.equal(a.dev, null);
  assert.deepEqual(sysfs_readdir(kernel, DEV), ["pmu_b"]);
  const c = pmu(kernel, "pmu_c", source);
  assert.equal(c.type, PERF_TYPE_MAX);
  const raw = new TestPmu({ source });
  perf_pmu_register(kernel, raw, "cpu", PERF_TYPE_RAW);
  assert.equal(sysfs_read(kernel, `${DEV}/cpu/type`), "4\n");
});

Deno.test("perf_pmu_register: EINVAL without a name, EEXIST for a name taken; unregister twice EINVAL", () => {
  const { kernel, source } = setup();
  const a = pmu(kernel, "dup", source);
  assert.throws(() => perf_pmu_register(kernel, new TestPmu({ source }), "", -1), {
    code: "EINVAL",
  });
  assert.throws(() => perf_pmu_register(kernel, new TestPmu({ source }), "dup", -1), {
    code: "EEXIST",
  });
  assert.throws(() => perf_pmu_register(kernel, a, "again", -1), { code: "EINVAL" });
  perf_pmu_unregister(a);
  assert.throws(() => perf_pmu_unregister(a), { code: "EINVAL" });
});

Deno.test("perf_event_mux_interval_ms: store takes a positive integer, EINVAL otherwise", () => {
  const { kernel, source } = setup();
  const p = pmu(kernel, "p", source);
  const path = `${DEV}/p/perf_event_mux_interval_ms`;
  sysfs_write(kernel, path, "10\n");
  assert.equal(p.hrtimer_interval_ms, 10);
  for (const bad of ["0", "-1", "x", "1.5", ""]) {
    assert.throws(() => sysfs_write(kernel, path, bad), { code: "EINVAL" }, bad);
  }
  assert.equal(sysfs_read(kernel, path), "10\n");
});

Deno.test("sys_perf_event_open: the errno Linux gives for each refusal", () => {
  const { kernel, source } = setup();
  assert.throws(() => perf_event_open(kernel, { type: 6 }, -1, 0), { code: "ENOENT" });
  const p = pmu(kernel, "uncore", source);
  const sw = pmu(kernel, "swp", source, { task_ctx_nr: perf_sw_context, capabilities: 0 });
  const other = pmu(kernel, "other", source);
  const t = p.type;
  const cases: [string, () => unknown, string][] = [
    [
      "unknown type, every PMU says ENOENT",
      () => perf_event_open(kernel, { type: 99 }, -1, 0),
      "ENOENT",
    ],
    ["pid -1 with cpu -1", () => perf_event_open(kernel, { type: t }, -1, -1), "EINVAL"],
    ["cpu beyond nr_cpu_ids", () => perf_event_open(kernel, { type: t }, -1, 1), "EINVAL"],
    ["a pid that is no task", () => perf_event_open(kernel, { type: t }, 42, 0), "ESRCH"],
    ["task event on an uncore PMU", () => perf_event_open(kernel, { type: t }, 0, -1), "EINVAL"],
    [
      "sampling on NO_INTERRUPT",
      () => perf_event_open(kernel, { type: t, sample_period: 1000n }, -1, 0),
      "EOPNOTSUPP",
    ],
    [
      "sampling on a PMU that can interrupt (no ring buffer)",
      () => perf_event_open(kernel, { type: sw.type, sample_period: 1n }, -1, 0),
      "EOPNOTSUPP",
    ],
    [
      "period with bit 63",
      () => perf_event_open(kernel, { type: t, sample_period: 1n << 63n }, -1, 0),
      "EINVAL",
    ],
    [
      "exclude_user on NO_EXCLUDE",
      () => perf_event_open(kernel, { type: t, exclude_user: true }, -1, 0),
      "EINVAL",
    ],
    [
      "config beyond 64 bits",
      () => perf_event_open(kernel, { type: t, config: 1n << 64n }, -1, 0),
      "EINVAL",
    ],
    ["negative type", () => perf_event_open(kernel, { type: -1 }, -1, 0), "EINVAL"],
  ];
  for (const [what, fn, code] of cases) assert.throws(fn, { code }, what);
  // Group rules.
  const leader = perf_event_open(kernel, { type: t }, -1, 0);
  const sib = perf_event_open(kernel, { type: t }, -1, 0, leader);
  const group = (attr: PerfEventAttr, l: PerfEvent, pid = -1, cpu = 0) =>
    perf_event_open(kernel, attr, pid, cpu, l);
  assert.throws(() => group({ type: t }, sib), { code: "EINVAL" }, "leader that is a sibling");
  assert.throws(
    () => group({ type: t, pinned: true }, leader),
    { code: "EINVAL" },
    "pinned sibling",
  );
  assert.throws(() => group({ type: t, exclusive: true }, leader), { code: "EINVAL" });
  assert.throws(() => group({ type: other.type }, leader), { code: "EINVAL" }, "two hw PMUs");
  assert.throws(() => group({ type: t }, leader), { code: "EINVAL" }, "3 events on 2 counters");
  const swTask = perf_event_open(kernel, { type: sw.type }, 0, -1);
  assert.throws(() => group({ type: sw.type }, swTask, -1, 0), { code: "EINVAL" }, "task vs CPU");
  perf_event_release_kernel(swTask);
  assert.throws(() => group({ type: sw.type }, swTask), { code: "EBADF" }, "released leader");
  assert.throws(() => perf_event_release_kernel(swTask), { code: "EBADF" });
  assert.throws(() => perf_event_read_value(swTask), { code: "EBADF" });
});

Deno.test("perf_init_event: a type no PMU owns goes to each PMU until one does not say ENOENT", () => {
  const { kernel, source } = setup();
  const first = pmu(kernel, "first", source);
  const asked: number[] = [];
  const init = first.event_init.bind(first);
  first.event_init = (ev) => {
    asked.push(ev.attr.type);
    init(ev);
  };
  const raw = new TestPmu({ source });
  raw.event_init = (ev) => {
    if (ev.attr.type !== PERF_TYPE_RAW) throw new Errno("ENOENT", "raw events only");
  };
  perf_pmu_register(kernel, raw, "raw_taker", -1);
  const ev = perf_event_open(kernel, { type: PERF_TYPE_RAW, config: 0x1an }, -1, 0);
  assert.equal(ev.pmu, raw);
  assert.deepEqual(asked, [PERF_TYPE_RAW]);
  // A registered type whose PMU says ENOENT is ENOENT, without asking the others.
  assert.throws(() => perf_event_open(kernel, { type: raw.type }, -1, 0), { code: "ENOENT" });
  assert.deepEqual(asked, [PERF_TYPE_RAW]);
});

Deno.test("counting: an enabled event counts while on; disable stops count and time enabled", () => {
  const { kernel, clock, emit, source } = setup();
  const p = pmu(kernel, "p", source);
  const ev = perf_event_create_kernel_counter(
    kernel,
    { type: p.type, config: 7n, disabled: true },
    0,
  );
  assert.equal(ev.state, PERF_EVENT_STATE_OFF);
  emit(7, 5n);
  clock.advance(1000);
  assert.deepEqual(perf_event_read_value(ev), { count: 0n, enabled: 0, running: 0 });
  perf_event_enable(ev);
  assert.equal(ev.state, PERF_EVENT_STATE_ACTIVE);
  emit(7, 3n);
  clock.advance(2000);
  assert.deepEqual(perf_event_read_value(ev), { count: 3n, enabled: 2000, running: 2000 });
  perf_event_disable(ev);
  emit(7, 100n);
  clock.advance(500);
  assert.deepEqual(perf_event_read_value(ev), { count: 3n, enabled: 2000, running: 2000 });
  assert.equal(p.used.filter((e) => e !== null).length, 0);
  perf_event_enable(ev);
  emit(7, 1n);
  clock.advance(100);
  assert.deepEqual(perf_event_read_value(ev), { count: 4n, enabled: 2100, running: 2100 });
  perf_event_release_kernel(ev);
  assert.equal(ev.state, PERF_EVENT_STATE_DEAD);
  assert.equal(p.used.filter((e) => e !== null).length, 0);
});

Deno.test("multiplexing: three events on two counters rotate every 4 ms, each runs 2/3 of the time", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source);
  // Source `id` counts id events per µs, so a count divided by its running time is exact.
  const evs = [1, 2, 3].map((id) =>
    perf_event_open(kernel, { type: p.type, config: BigInt(id) }, -1, 0)
  );
  assert.deepEqual(evs.map((e) => e.state), [
    PERF_EVENT_STATE_ACTIVE,
    PERF_EVENT_STATE_ACTIVE,
    PERF_EVENT_STATE_INACTIVE,
  ]);
  clock.advance(ms(12));
  const v = evs.map(perf_event_read_value);
  // [0,4): 1,2 on; [4,8): 2,3; [8,12): 3,1.
  assert.deepEqual(v.map((x) => x.enabled), [ms(12), ms(12), ms(12)]);
  assert.deepEqual(v.map((x) => x.running), [ms(8), ms(8), ms(8)]);
  assert.deepEqual(v.map((x) => x.count), [8000n, 16000n, 24000n]);
  // perf stat's scaling recovers the full-time count exactly: count * enabled / running.
  assert.deepEqual(v.map((x) => x.count * BigInt(x.enabled) / BigInt(x.running)), [
    12000n,
    24000n,
    36000n,
  ]);
  // Closing one ends the over-commit: the next tick rotates once more, then the timer stops.
  perf_event_release_kernel(evs[2]);
  clock.advance(ms(8));
  assert.equal((clock as SimClock).pending, 0);
  assert.deepEqual(evs.slice(0, 2).map((e) => e.state), [
    PERF_EVENT_STATE_ACTIVE,
    PERF_EVENT_STATE_ACTIVE,
  ]);
});

Deno.test("multiplexing: perf_event_mux_interval_ms sets the rotation period", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source, { counters: 1 });
  sysfs_write(kernel, `${DEV}/p/perf_event_mux_interval_ms`, "1");
  const a = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  clock.advance(ms(3));
  // [0,1) a, [1,2) b, [2,3) a.
  assert.deepEqual([a, b].map((e) => perf_event_read_value(e).running), [ms(2), ms(1)]);
});

Deno.test("groups: all or nothing — {a,b} and {c,d} on two counters take turns, never half", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source);
  const a = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type, config: 2n }, -1, 0, a);
  const c = perf_event_open(kernel, { type: p.type, config: 3n }, -1, 0);
  const d = perf_event_open(kernel, { type: p.type, config: 4n }, -1, 0, c);
  assert.deepEqual([a, b, c, d].map((e) => e.state), [1, 1, 0, 0]);
  for (let t = 1; t <= 8; t++) {
    clock.advance(ms(1));
    const on = [a, b, c, d].map((e) => e.state === PERF_EVENT_STATE_ACTIVE);
    assert.ok(on[0] === on[1] && on[2] === on[3] && on[0] !== on[2], `t=${t}ms: ${on}`);
  }
  const r = [a, b, c, d].map(perf_event_read_value);
  assert.deepEqual(r.map((x) => x.running), [ms(4), ms(4), ms(4), ms(4)]);
  assert.deepEqual(r.map((x) => x.count), [4000n, 8000n, 12000n, 16000n]);
});

Deno.test("groups: a group that fails at commit_txn is taken off again (cancel_txn), nothing left on", () => {
  const { kernel, source } = setup();
  const p = pmu(kernel, "p", source, { txn: true });
  const single = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const a = perf_event_open(kernel, { type: p.type, config: 2n, disabled: true }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type, config: 3n }, -1, 0, a);
  p.calls.length = 0;
  perf_event_enable(a);
  const [s, x, y] = [single.id, a.id, b.id];
  assert.deepEqual(p.calls, [
    `del:${s}`,
    "start_txn",
    `add:${s}`,
    "commit_txn",
    "start_txn",
    `add:${x}`,
    `add:${y}`,
    "commit_txn",
    `del:${y}`,
    `del:${x}`,
    "cancel_txn",
  ]);
  assert.deepEqual([single, a, b].map((e) => e.state), [1, 0, 0]);
  assert.deepEqual(p.used.map((e) => e?.id ?? null), [s, null]);
});

Deno.test("groups: a disabled sibling stays off while its group counts; enabling it reschedules", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source);
  const a = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type, config: 2n, disabled: true }, -1, 0, a);
  clock.advance(1000);
  assert.deepEqual([a.state, b.state], [PERF_EVENT_STATE_ACTIVE, PERF_EVENT_STATE_OFF]);
  perf_event_enable(b);
  clock.advance(1000);
  assert.deepEqual(perf_event_read_value(b), { count: 2n, enabled: 1000, running: 1000 });
  // Disabling the leader takes the whole group off; the sibling's time enabled runs on.
  perf_event_disable(a);
  clock.advance(1000);
  assert.deepEqual([a.state, b.state], [PERF_EVENT_STATE_OFF, PERF_EVENT_STATE_INACTIVE]);
  assert.deepEqual(perf_event_read_value(b), { count: 2n, enabled: 2000, running: 1000 });
});

Deno.test("pinned: a pinned group that cannot go on goes to ERROR and counts no time; enable retries", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source, { counters: 1 });
  const pin = perf_event_open(kernel, { type: p.type, config: 1n, pinned: true }, -1, 0);
  const pin2 = perf_event_open(kernel, { type: p.type, config: 2n, pinned: true }, -1, 0);
  assert.deepEqual([pin.state, pin2.state], [PERF_EVENT_STATE_ACTIVE, PERF_EVENT_STATE_ERROR]);
  clock.advance(ms(10));
  assert.deepEqual(perf_event_read_value(pin2), { count: 0n, enabled: 0, running: 0 });
  perf_event_release_kernel(pin);
  perf_event_enable(pin2);
  clock.advance(ms(1));
  assert.deepEqual(perf_event_read_value(pin2), { count: 2000n, enabled: ms(1), running: ms(1) });
});

Deno.test("exclusive: an exclusive group goes on without other flexible groups, and keeps them off", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source, { counters: 3 });
  const flex = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const excl = perf_event_open(kernel, { type: p.type, config: 2n, exclusive: true }, -1, 0);
  assert.deepEqual([flex.state, excl.state], [PERF_EVENT_STATE_ACTIVE, PERF_EVENT_STATE_INACTIVE]);
  clock.advance(ms(4));
  assert.deepEqual([flex.state, excl.state], [PERF_EVENT_STATE_INACTIVE, PERF_EVENT_STATE_ACTIVE]);
  // A pinned event goes on first; the exclusive group only minds the flexible ones.
  const pin = perf_event_open(kernel, { type: p.type, config: 3n, pinned: true }, -1, 0);
  assert.deepEqual([pin.state, flex.state, excl.state], [1, 0, 1]);
  clock.advance(ms(4));
  assert.deepEqual([pin.state, flex.state, excl.state], [1, 1, 0]);
});

Deno.test("software events: always go on, join a hardware group, and move a software group to hardware", () => {
  const { kernel, source } = setup();
  const hw = pmu(kernel, "hw", source, { counters: 1, task_ctx_nr: perf_hw_context });
  const sw = pmu(kernel, "sw", source, {
    counters: 4,
    task_ctx_nr: perf_sw_context,
    capabilities: 0,
  });
  const big = perf_event_open(kernel, { type: hw.type, config: 1n }, -1, 0);
  const swSib = perf_event_open(kernel, { type: sw.type, config: 2n }, -1, 0, big);
  assert.deepEqual([big.state, swSib.state], [PERF_EVENT_STATE_ACTIVE, PERF_EVENT_STATE_ACTIVE]);
  assert.equal(swSib.pmu, sw);
  // A software-only group that a hardware event joins moves to the hardware PMU's context.
  const swLeader = perf_event_open(kernel, { type: sw.type, config: 3n }, -1, 0);
  assert.equal(swLeader.pmu_ctx?.pmu, sw);
  const hwSib = perf_event_open(kernel, { type: hw.type, config: 4n }, -1, 0, swLeader);
  assert.equal(swLeader.pmu_ctx?.pmu, hw);
  // One hardware counter, two hardware groups: the moved group waits its turn.
  assert.deepEqual([swLeader.state, hwSib.state], [
    PERF_EVENT_STATE_INACTIVE,
    PERF_EVENT_STATE_INACTIVE,
  ]);
  // Task events work on PMUs with per-task contexts: the one task runs on CPU 0.
  const task = perf_event_open(kernel, { type: sw.type, config: 5n }, 0, -1);
  assert.equal(task.state, PERF_EVENT_STATE_ACTIVE);
});

Deno.test("release: a leader's siblings go on as groups of their own", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "p", source);
  const a = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type, config: 2n }, -1, 0, a);
  perf_event_release_kernel(a);
  assert.equal(b.group_leader, b);
  assert.equal(b.state, PERF_EVENT_STATE_ACTIVE);
  clock.advance(ms(1));
  assert.equal(perf_event_read_value(b).count, 2000n);
});

Deno.test("perf_pmu_unregister: events are revoked, keep their last values and stop counting", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "gone", source);
  const other = pmu(kernel, "stays", source);
  const ev = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const keep = perf_event_open(kernel, { type: other.type, config: 1n }, -1, 0);
  clock.advance(ms(1));
  perf_pmu_unregister(p);
  assert.equal(ev.state, PERF_EVENT_STATE_REVOKED);
  assert.deepEqual(p.used, [null, null]);
  clock.advance(ms(1));
  assert.deepEqual(perf_event_read_value(ev), { count: 1000n, enabled: ms(1), running: ms(1) });
  perf_event_enable(ev);
  assert.equal(ev.state, PERF_EVENT_STATE_REVOKED);
  assert.throws(() => perf_event_open(kernel, { type: p.type }, -1, 0), { code: "ENOENT" });
  assert.equal(perf_event_read_value(keep).count, 2000n);
  perf_event_release_kernel(ev);
  assert.equal(ev.state, PERF_EVENT_STATE_DEAD);
  assert.throws(() => sysfs_read(kernel, `${DEV}/gone/type`), { code: "ENOENT" });
});

Deno.test("perf_pmu_unregister: a software sibling of a revoked leader counts on in its own context", () => {
  const { kernel, clock, source } = setup();
  const hw = pmu(kernel, "hw", source, { task_ctx_nr: perf_hw_context });
  const sw = pmu(kernel, "sw", source, { task_ctx_nr: perf_sw_context, capabilities: 0 });
  const leader = perf_event_open(kernel, { type: hw.type, config: 1n }, -1, 0);
  const sib = perf_event_open(kernel, { type: sw.type, config: 2n }, -1, 0, leader);
  clock.advance(ms(1));
  perf_pmu_unregister(hw);
  assert.deepEqual([leader.state, sib.state], [PERF_EVENT_STATE_REVOKED, PERF_EVENT_STATE_ACTIVE]);
  assert.equal(sib.pmu_ctx?.pmu, sw);
  clock.advance(ms(1));
  assert.deepEqual(perf_event_read_value(sib), { count: 4000n, enabled: ms(2), running: ms(2) });
});

Deno.test("without a clock that can schedule, nothing rotates: a flexible group left out waits", () => {
  let now = 0;
  const plain: Clock = { now: () => now, advance: (ns) => void (now += ns) };
  const { kernel, clock, source } = setup(plain);
  const p = pmu(kernel, "p", source, { counters: 1 });
  const a = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type, config: 1n }, -1, 0);
  clock.advance(ms(20));
  assert.deepEqual([a, b].map((e) => perf_event_read_value(e).running), [ms(20), 0]);
  perf_event_disable(a);
  perf_event_enable(a);
  assert.deepEqual([a.state, b.state], [PERF_EVENT_STATE_ACTIVE, PERF_EVENT_STATE_INACTIVE]);
});

Deno.test("ctx_time_freeze(): time a PMU's add/del take while rescheduling is neither enabled-only nor lost (running == enabled)", () => {
  const { kernel, clock, source } = setup();
  const p = pmu(kernel, "slow", source, { counters: 2 });
  // Each callback costs 100 ns, as a driver's register accesses do.
  for (const cb of ["add", "del"] as const) {
    const f = p[cb].bind(p);
    p[cb] = (ev: PerfEvent, flags: number) => {
      clock.advance(100);
      f(ev, flags);
    };
  }
  const a = perf_event_open(kernel, { type: p.type }, -1, 0);
  const b = perf_event_open(kernel, { type: p.type }, -1, 0); // a goes off and on again
  clock.advance(ms(1));
  perf_event_disable(b);
  perf_event_enable(b);
  for (const ev of [a, b]) {
    const v = perf_event_read_value(ev);
    assert.equal(v.running, v.enabled, `event ${ev.id}`);
  }
  assert.ok(perf_event_read_value(a).enabled > ms(1));
});
