import assert from "node:assert/strict";
import {
  device_attach,
  device_release_driver,
  msi_get_virq,
  pci_irq_vector,
} from "@iommu-lab/kernel";
import { RiscvIommuDevice } from "@iommu-lab/riscv-iommu";
import { IGS } from "@iommu-lab/riscv-iommu/testing";
import { capsWith, pciSystem, sweepProbeFailures } from "./_test_fixture.ts";

const NAME = "iommu_pci 0000:00:01.0";

function iommuOf(pdev: { driverData: unknown }): RiscvIommuDevice {
  assert.ok(pdev.driverData instanceof RiscvIommuDevice);
  return pdev.driverData;
}

Deno.test("riscv_iommu_pci_probe() binds 1b36:0014 and 1efd:0008 with MSI-X vectors", async (t) => {
  for (const id of [[0x1b36, 0x0014], [0x1efd, 0x0008]] as [number, number][]) {
    await t.step(`${id[0].toString(16)}:${id[1].toString(16).padStart(4, "0")}`, () => {
      const sys = pciSystem({ caps: capsWith(IGS.MSI), id });
      const pdev = sys.host.devices[0];
      assert.equal(pdev.state, "bound");
      const iommu = iommuOf(pdev);
      assert.equal(iommu.irqs_count, 4);
      assert.equal(pdev.msixEnabled, true);
      for (let v = 0; v < 4; v++) {
        assert.equal(iommu.irqs[v], pci_irq_vector(pdev, v));
        // The MSI-X table is msi_cfg_tbl: the kernel's MSI-X code programmed it.
        assert.equal(sys.fake.msiAddr[v], 0x2800_0000n);
        assert.equal(sys.fake.msiData[v], sys.kernel.irq.desc(iommu.irqs[v])!.hwirq);
        // Unmasked once requested: the command and fault queues' vectors (CIV 0, FIV 1).
        assert.equal(sys.fake.msiCtl[v], v < 2 ? 0 : 1);
      }
      assert.equal(sys.core.iommus.length, 1);
      assert.equal(sys.fake.ddtMode, 4, "directory on, 3LVL");
    });
  }
});

Deno.test("a function of another vendor is left alone", () => {
  const sys = pciSystem({ caps: capsWith(IGS.MSI), id: [0x1234, 0x0014] });
  assert.equal(sys.host.devices[0].state, "unbound");
  assert.equal(sys.rec.accesses.length, 0);
});

Deno.test("IGS=BOTH: a set fctl.WSI is cleared before init", () => {
  const sys = pciSystem({ caps: capsWith(IGS.BOTH) });
  const pdev = sys.host.devices[0];
  device_release_driver(pdev);
  sys.fake.fctl = 2; // as if firmware had selected wired interrupts
  sys.rec.clear();
  assert.equal(device_attach(pdev), true, "rebinds: the vectors were released at unbind");
  assert.equal(sys.fake.fctl & 2, 0);
  assert.deepEqual(sys.rec.writes().filter(([off]) => off === 0x08), [[0x08, 0]]);
});

Deno.test("WSI-only hardware is refused: unable to use message-signaled interrupts (ENODEV)", () => {
  const sys = pciSystem({ caps: capsWith(IGS.WSI) });
  const pdev = sys.host.devices[0];
  assert.equal(pdev.state, "unbound");
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [
    `${NAME}: error -ENODEV: unable to use message-signaled interrupts`,
  ]);
  assert.equal(pdev.msixEnabled, false, "no vectors allocated");
  assert.equal(sys.core.iommus.length, 0);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
});

Deno.test("BAR0 must be a memory BAR of at least 4 KiB", async (t) => {
  await t.step("2 KiB", () => {
    const sys = pciSystem({ caps: capsWith(IGS.MSI), barSize: 0x800 });
    assert.equal(sys.host.devices[0].state, "unbound");
    assert.equal(sys.rec.accesses.length, 0, "registers never touched");
  });
  await t.step("I/O BAR", () => {
    const sys = pciSystem({ caps: capsWith(IGS.MSI), ioBar: true });
    assert.equal(sys.host.devices[0].state, "unbound");
    assert.equal(sys.rec.accesses.length, 0);
  });
  await t.step("64 KiB is fine", () => {
    const sys = pciSystem({ caps: capsWith(IGS.MSI), barSize: 0x1_0000 });
    assert.equal(sys.host.devices[0].state, "bound");
  });
});

Deno.test("pci_alloc_irq_vectors(1..4): two MSI-X entries give two vectors", () => {
  const sys = pciSystem({ caps: capsWith(IGS.MSI), msixVectors: 2 });
  const iommu = iommuOf(sys.host.devices[0]);
  assert.equal(iommu.irqs_count, 2);
  assert.equal(sys.fake.icvec, 0x0110n, "FIV 1, PIV 0, PMIV 1");
});

Deno.test("no MSI domain: unable to allocate irq vectors (ENODEV)", () => {
  const sys = pciSystem({ caps: capsWith(IGS.MSI), msiDomain: false });
  assert.deepEqual(sys.kernel.dmesg.grep(NAME), [
    `${NAME}: error -ENODEV: unable to allocate irq vectors`,
  ]);
  assert.equal(sys.host.devices[0].state, "unbound");
});

Deno.test("an init failure releases the managed MSI-X vectors, every page and object", () => {
  const sys = pciSystem({ caps: capsWith(IGS.MSI), ddtModes: [] }); // no xLVL directory mode
  const pdev = sys.host.devices[0];
  assert.equal(pdev.state, "unbound");
  assert.deepEqual(sys.kernel.dmesg.grep(/DDTP|failed/), [
    `${NAME}: DDTP hw mode 0, failed to set 4`,
    "iommu_pci: probe of 0000:00:01.0 failed with error -22",
  ]);
  assert.equal(pdev.msixEnabled, false);
  assert.equal(msi_get_virq(pdev, 0), 0, "vectors freed by devres");
  assert.equal(sys.kernel.pages.allocatedPages, 0);
  assert.deepEqual(sys.kernel.slab.allocations(), []);
});

Deno.test("fail-nth: every allocation of the PCI probe fails it cleanly, vectors included", async (t) => {
  // Pages: the DDT root, the command ring, the fault ring. Objects: the IOMMU structure.
  for (const [which, count] of [["pages", 3], ["slab", 1]] as const) {
    await t.step(which, () => {
      const n = sweepProbeFailures(which, (beforeBind) => {
        const sys = pciSystem({ caps: capsWith(IGS.MSI), beforeBind });
        return { kernel: sys.kernel, dev: sys.host.devices[0] };
      });
      assert.equal(n, count);
    });
  }
});

Deno.test("riscv_iommu_pci_remove() turns the IOMMU off and returns every page", () => {
  const sys = pciSystem({ caps: capsWith(IGS.MSI) });
  const pdev = sys.host.devices[0];
  device_release_driver(pdev);
  assert.equal(pdev.state, "unbound");
  assert.equal(sys.fake.ddtMode, 0, "ddtp Off");
  assert.deepEqual(sys.fake.qcsr, [0, 0, 0]);
  assert.equal(sys.core.iommus.length, 0);
  assert.equal(sys.kernel.pages.allocatedPages, 0);
});

Deno.test("riscv_iommu_pci_shutdown() leaves the directory in Bare with the queues off", () => {
  const sys = pciSystem({ caps: capsWith(IGS.MSI) });
  sys.kernel.shutdown();
  assert.equal(sys.fake.ddtMode, 1);
  assert.deepEqual(sys.fake.qcsr, [0, 0, 0]);
});
