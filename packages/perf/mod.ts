/**
 * The perf_event subsystem of the kernel analog: what a PMU driver registers (`struct pmu` and
 * its sysfs groups) and what a perf_event user opens, enables, reads and closes, with groups and
 * multiplexing as `kernel/events/core.c` schedules them.
 *
 * @example A software PMU counting calls, read with its times
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno, Kernel, sysfs_read } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 * import {
 *   perf_event_open, perf_event_read_value, perf_pmu_register, perf_sw_context,
 *   type PerfEvent, type Pmu,
 * } from "@iommu-lab/perf";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const active = new Set<PerfEvent>();
 * const pmu: Pmu = {
 *   name: "", type: -1, dev: null, task_ctx_nr: perf_sw_context,
 *   event_init(ev) { if (ev.attr.type !== pmu.type) throw new Errno("ENOENT"); },
 *   add(ev) { active.add(ev); }, del(ev) { active.delete(ev); },
 *   start() {}, stop() {}, read() {},
 * };
 * perf_pmu_register(kernel, pmu, "calls", -1);
 * const type = Number(sysfs_read(kernel, "/sys/bus/event_source/devices/calls/type"));
 * const ev = perf_event_open(kernel, { type }, -1, 0);
 * for (const e of active) e.count += 3n;
 * kernel.clock.advance(1000);
 * assert.deepEqual(perf_event_read_value(ev), { count: 3n, enabled: 1000, running: 1000 });
 * ```
 *
 * @module
 */
export {
  nr_cpu_ids,
  perf_event_create_kernel_counter,
  perf_event_disable,
  perf_event_enable,
  perf_event_open,
  perf_event_read_value,
  perf_event_release_kernel,
  perf_pmu_register,
  perf_pmu_unregister,
  type PerfEventValue,
  type TimerClock,
} from "./core.ts";
export {
  for_each_sibling_event,
  HwPerfEvent,
  is_sampling_event,
  is_software_event,
  PERF_CPU_HRTIMER,
  PERF_EF_RELOAD,
  PERF_EF_START,
  PERF_EF_UPDATE,
  PERF_EVENT_STATE_ACTIVE,
  PERF_EVENT_STATE_DEAD,
  PERF_EVENT_STATE_ERROR,
  PERF_EVENT_STATE_EXIT,
  PERF_EVENT_STATE_INACTIVE,
  PERF_EVENT_STATE_OFF,
  PERF_EVENT_STATE_REVOKED,
  PERF_HES_STOPPED,
  PERF_HES_UPTODATE,
  perf_hw_context,
  perf_invalid_context,
  PERF_PMU_CAP_EXCLUSIVE,
  PERF_PMU_CAP_NO_EXCLUDE,
  PERF_PMU_CAP_NO_INTERRUPT,
  PERF_PMU_CAP_NO_NMI,
  PERF_PMU_TXN_ADD,
  perf_sw_context,
  PERF_TYPE_BREAKPOINT,
  PERF_TYPE_HARDWARE,
  PERF_TYPE_HW_CACHE,
  PERF_TYPE_MAX,
  PERF_TYPE_RAW,
  PERF_TYPE_SOFTWARE,
  PERF_TYPE_TRACEPOINT,
  PerfEvent,
  type PerfEventAttr,
  type PerfEventAttrFull,
  PerfEventPmuContext,
  type PerfPmuEventsAttr,
  type Pmu,
  PMU_EVENT_ATTR_ID,
  PMU_EVENT_ATTR_STRING,
  PMU_FORMAT_ATTR,
} from "./perf_event.ts";
