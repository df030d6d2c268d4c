/**
 * The machine behind the riscv selftests' MOCK_FLAGS_DEVICE_NO_DIRTY devices: the second IOMMU
 * of no_dirty_iommu_part() probes without the dirty-tracking feature, and the DMA of the engine
 * behind it goes through it.
 */
import assert from "node:assert/strict";
import { device_iommu_capable, IOMMU_CAP_DIRTY_TRACKING } from "@iommu-lab/iommu";
import { MOCK_FLAGS_DEVICE_NO_DIRTY } from "@iommu-lab/iommufd/testing";
import {
  _test_ioctl_ioas_alloc,
  BUFFER_SIZE,
  riscv_dirty_env,
  type SelftestSelf,
  setup_iommufd,
  teardown_iommufd,
  test_ioctl_ioas_map_fixed,
} from "./iommufd_utils.ts";

Deno.test("no_dirty_iommu_part: a second IOMMU without AMO_HWAD translates its slot's DMA", () => {
  const env = riscv_dirty_env();
  const dmesg = env.machine.dmesg;
  assert.ok(dmesg.some((l) => l.endsWith("3010000.iommu: using MSIs")));
  assert.ok(
    dmesg.some((l) =>
      l.endsWith("3020000.iommu: dirty-tracking disabled: no capabilities.AMO_HWAD")
    ),
  );
  assert.ok(!dmesg.some((l) => l.includes("3010000.iommu: dirty-tracking disabled")));
  const [a, b, c, d] = env.machine.dmaDevices;
  for (const p of [a, b, c]) assert.ok(device_iommu_capable(p, IOMMU_CAP_DIRTY_TRACKING));
  assert.ok(!device_iommu_capable(d, IOMMU_CAP_DIRTY_TRACKING));
  assert.notEqual(d.fwspec!.fwnode, a.fwspec!.fwnode);

  // The engine behind the second IOMMU reaches the user buffer through an IOAS there: its
  // context is only in that IOMMU's directory, so a DMA routed to the first one would fault.
  const self = {} as SelftestSelf;
  setup_iommufd(self, env);
  const ioas_id = _test_ioctl_ioas_alloc(self.fd);
  const dev = env.mock_domain(self.fd, ioas_id, MOCK_FLAGS_DEVICE_NO_DIRTY);
  test_ioctl_ioas_map_fixed(self.fd, ioas_id, self.buffer, BUFFER_SIZE, 0x10_0000);
  env.check_map(self.fd, dev.hwpt_id, self.buffer, 0x10_0000, BUFFER_SIZE);
  teardown_iommufd(self);
});
