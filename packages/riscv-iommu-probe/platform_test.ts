import assert from "node:assert/strict";
import {
  device_release_driver,
  irq_find_mapping,
  msi_get_virq,
  platform_driver_register,
} from "@iommu-lab/kernel";
import { RiscvIommuDevice, RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
import { IGS } from "@iommu-lab/riscv-iommu/testing";
import { capsWith, platformSystem, sweepProbeFailures } from "./_test_fixture.ts";
import { riscv_iommu_platform_driver } from "./platform.ts";

const NAME = "riscv,iommu 3010000.iommu";

function iommuOf(sys: { pdev: { driverData: unknown } }): RiscvIommuDevice {
  assert.ok(sys.pdev.driverData instanceof RiscvIommuDevice);
  return sys.pdev.driverData;
}

Deno.test("riscv_iommu_platform_probe() with IGS=MSI programs one msi_cfg_tbl entry per vector", () => {
  const sys = platformSystem({ caps: capsWith(IGS.MSI) });
  const iommu = iommuOf(sys);
  assert.equal(sys.pdev.state, "bound");
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [`${NAME}: using MSIs`]);
  assert.equal(iommu.irqs_count, 4);
  for (let v = 0; v < 4; v++) {
    const virq = msi_get_virq(sys.pdev, v);
    assert.equal(iommu.irqs[v], virq);
    const identity = sys.kernel.irq.desc(virq)!.hwirq;
    // ADDR at 0x300 + 16n, DATA at +8, CTRL at +0xC written 0 (unmasked).
    assert.equal(sys.fake.msiAddr[v], 0x2800_0000n);
    assert.equal(sys.fake.msiData[v], identity);
    assert.equal(sys.fake.msiCtl[v], 0);
  }
  assert.equal(sys.fake.msiCtl[4], 1, "vectors beyond the four stay masked");
  assert.equal(sys.fake.fctl & 2, 0, "fctl.WSI clear");
  assert.equal(sys.core.iommus.length, 1, "registered with the IOMMU core");
  assert.equal(sys.core.iommus[0].fwnode, sys.pdev.ofNode);
});

Deno.test("IGS=BOTH with an msi-parent uses MSIs and clears fctl.WSI", () => {
  const sys = platformSystem({ caps: capsWith(IGS.BOTH), fctl: 2 });
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [`${NAME}: using MSIs`]);
  assert.equal(sys.fake.fctl & 2, 0);
  assert.ok(
    sys.rec.writes().some(([off, v]) => off === 0x08 && v === 0),
    "the glue wrote fctl with WSI cleared",
  );
  assert.equal(iommuOf(sys).fctl & 2, 0);
});

Deno.test("IGS=BOTH without an msi-parent falls back to wire-signaled interrupts", () => {
  const sys = platformSystem({ caps: capsWith(IGS.BOTH), msiParent: false });
  const iommu = iommuOf(sys);
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [
    `${NAME}: failed to find an MSI domain`,
    `${NAME}: using wire-signaled interrupts`,
  ]);
  assert.equal(sys.fake.fctl & 2, 2, "fctl.WSI set");
  assert.deepEqual(iommu.irqs, [36, 37, 38, 39].map((l) => irq_find_mapping(sys.wires!, l)));
  assert.ok(sys.fake.msiCtl.every((c) => c === 1), "msi_cfg_tbl untouched");
  assert.equal(sys.pdev.state, "bound");
});

Deno.test("IGS=BOTH falls back to wires when the MSI domain has too few identities", () => {
  const sys = platformSystem({ caps: capsWith(IGS.BOTH), msiIds: 2 });
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [
    `${NAME}: failed to allocate MSIs`,
    `${NAME}: using wire-signaled interrupts`,
  ]);
  assert.equal(msi_get_virq(sys.pdev, 0), 0, "no MSI vector left allocated");
  assert.equal(sys.pdev.state, "bound");
});

Deno.test("IGS=WSI uses the wired interrupts even with an msi-parent", () => {
  const sys = platformSystem({ caps: capsWith(IGS.WSI) });
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [`${NAME}: using wire-signaled interrupts`]);
  assert.equal(msi_get_virq(sys.pdev, 0), 0);
  assert.equal(sys.pdev.state, "bound");
});

Deno.test("IGS=MSI without an MSI domain is refused with ENODEV and the kernel's message", () => {
  const sys = platformSystem({ caps: capsWith(IGS.MSI), msiParent: false });
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [
    `${NAME}: failed to find an MSI domain`,
    `${NAME}: error -ENODEV: unable to use wire-signaled interrupts`,
  ]);
  assert.equal(sys.pdev.state, "unbound");
  assert.equal(sys.core.iommus.length, 0);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
});

Deno.test("a reserved IGS is refused: invalid IGS", () => {
  const sys = platformSystem({ caps: capsWith(IGS.RSRV) });
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [`${NAME}: error -ENODEV: invalid IGS`]);
  assert.equal(sys.pdev.state, "unbound");
});

Deno.test("irq count from the platform: none is ENODEV, more than four use four", async (t) => {
  await t.step("no interrupts", () => {
    const sys = platformSystem({ caps: capsWith(IGS.WSI), irqs: 0 });
    assert.deepEqual(sys.kernel.dmesg.grep(NAME), [
      `${NAME}: error -ENODEV: no IRQ resources provided`,
    ]);
    assert.equal(sys.pdev.state, "unbound");
  });
  await t.step("six interrupts", () => {
    const sys = platformSystem({ caps: capsWith(IGS.WSI), irqs: 6 });
    const iommu = iommuOf(sys);
    assert.equal(iommu.irqs_count, 4);
    assert.equal(iommu.irqs.length, 4);
  });
  await t.step("two interrupts: icvec folds the four causes onto them", () => {
    const sys = platformSystem({ caps: capsWith(IGS.MSI), irqs: 2 });
    const iommu = iommuOf(sys);
    assert.equal(iommu.irqs_count, 2);
    assert.equal(msi_get_virq(sys.pdev, 2), 0, "two MSIs only");
    // CIV[3:0] = 0, FIV[7:4] = 1, PMIV[11:8] = 3 % 2, PIV[15:12] = 2 % 2.
    assert.equal(sys.fake.icvec, 0x0110n);
  });
});

Deno.test("the probe defers until the interrupt controller has an irq domain", () => {
  const sys = platformSystem({ caps: capsWith(IGS.WSI), lateWires: true });
  assert.equal(sys.pdev.state, "deferred");
  assert.equal(sys.rec.accesses.filter((a) => a.op === "w").length, 0, "nothing written yet");
  sys.addWiredDomain();
  assert.equal(sys.pdev.state, "bound");
});

Deno.test("a node without reg cannot be mapped", () => {
  const sys = platformSystem({ caps: capsWith(IGS.WSI), noReg: true });
  assert.deepEqual(sys.kernel.dmesg.grep("could not map"), [
    `riscv,iommu ${sys.pdev.name}: error -EINVAL: could not map register region`,
  ]);
  assert.equal(sys.pdev.state, "unbound");
});

Deno.test("riscv_iommu_write_msi_msg() truncates an address outside ADDR[55:2], reporting it once", () => {
  // Bit 56 set: beyond what msi_cfg_tbl.ADDR holds.
  const sys = platformSystem({ caps: capsWith(IGS.MSI), msiAddressHi: 0x0100_0000 });
  const errs = sys.kernel.dmesg.grep("uh oh");
  assert.deepEqual(errs, [
    `${NAME}: uh oh, the IOMMU can't send MSIs to 0x100000028000000, sending to 0x28000000 instead`,
  ]);
  assert.equal(sys.fake.msiAddr[3], 0x2800_0000n);
});

Deno.test("fail-nth: every allocation of the platform probe fails it cleanly (MSIs and wires)", async (t) => {
  // Pages: the DDT root, the command ring, the fault ring. Objects: the IOMMU structure.
  for (const igs of [IGS.MSI, IGS.WSI]) {
    for (const [which, count] of [["pages", 3], ["slab", 1]] as const) {
      await t.step(`IGS ${igs}, ${which}`, () => {
        const n = sweepProbeFailures(which, (beforeBind) => {
          const sys = platformSystem({ caps: capsWith(igs), beforeBind });
          return { kernel: sys.kernel, dev: sys.pdev };
        });
        assert.equal(n, count);
      });
    }
  }
});

Deno.test("riscv_iommu_platform_remove() turns the IOMMU off and frees MSIs and pages", () => {
  const sys = platformSystem({ caps: capsWith(IGS.MSI) });
  assert.ok(sys.kernel.pages.allocatedPages > 0);
  device_release_driver(sys.pdev);
  assert.equal(sys.pdev.state, "unbound");
  assert.equal(sys.fake.ddtMode, 0, "ddtp Off");
  assert.deepEqual(sys.fake.qcsr, [0, 0, 0], "queues disabled");
  assert.equal(msi_get_virq(sys.pdev, 0), 0, "MSIs freed");
  assert.equal(sys.core.iommus.length, 0);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
});

Deno.test("riscv_iommu_platform_shutdown() leaves the directory in Bare with the queues off", () => {
  const sys = platformSystem({ caps: capsWith(IGS.WSI) });
  assert.ok(sys.fake.ddtMode > 1, "translating after probe");
  sys.kernel.shutdown();
  assert.equal(sys.fake.ddtMode, 1, "ddtp Bare");
  assert.deepEqual(sys.fake.qcsr, [0, 0, 0]);
});

Deno.test("the driver matches compatible riscv,iommu and is named like the kernel's", () => {
  const drv = riscv_iommu_platform_driver(new RiscvIommuDriver());
  assert.equal(drv.name, "riscv,iommu");
  assert.deepEqual(drv.ofMatchTable, [{ compatible: "riscv,iommu" }]);
  const sys = platformSystem({ caps: capsWith(IGS.WSI) });
  assert.throws(() => platform_driver_register(sys.kernel, drv), { code: "EBUSY" });
});
