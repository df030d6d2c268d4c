import assert from "node:assert/strict";
import {
  dev_is_pci,
  Device,
  DeviceTree,
  type FwNode,
  iommu_fwspec_add_ids,
  IOMMU_FWSPEC_PCI_RC_ATS,
  type IommuLayer,
  Kernel,
  pci_alloc_irq_vectors,
  PCI_ANY_ID,
  pci_ats_page_aligned,
  pci_ats_queue_depth,
  pci_ats_supported,
  PCI_DEVFN,
  pci_disable_ats,
  pci_disable_pasid,
  pci_disable_pri,
  pci_driver_init,
  pci_enable_ats,
  pci_enable_device,
  pci_enable_pasid,
  pci_enable_pri,
  pci_find_capability,
  pci_find_ext_capability,
  pci_host_probe,
  pci_iomap,
  PCI_IRQ_MSIX,
  pci_irq_vector,
  pci_max_pasids,
  pci_msi_vec_count,
  pci_msix_vec_count,
  pci_pasid_features,
  pci_prg_resp_pasid_required,
  pci_pri_supported,
  pci_read_config_byte,
  pci_read_config_dword,
  pci_read_config_word,
  pci_register_driver,
  pci_reset_pri,
  pci_set_master,
  pci_write_config_byte,
  pci_write_config_dword,
  pci_write_config_word,
  to_pci_dev,
} from "./mod.ts";
import * as R from "./pci_regs.ts";
import { TestRam } from "./testing.ts";
import { bar, caps, FakeCfg, fn, setup } from "./_pci_test_fixture.ts";

Deno.test("capability walks: standard list, extended list, loops end", () => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(bar(fn(1, 1), 0, 0x1000), { msix: 8, msi: 4, ext: true }));
  cfg.fns.set(PCI_DEVFN(2, 0), caps(fn(1, 2), {}).set(0x41, 8, 0x40)); // points at itself
  const [d, loop] = probe().devices;
  assert.deepEqual(
    [d.msixCap, d.msiCap, d.atsCap, d.priCap, d.pasidCap],
    [0x50, 0x60, 0x100, 0x110, 0x120],
  );
  assert.equal(pci_find_capability(d, R.PCI_CAP_ID_EXP), 0x40);
  assert.equal(pci_find_capability(loop, R.PCI_CAP_ID_MSIX), 0);
  assert.equal(pci_find_ext_capability(loop, R.PCI_EXT_CAP_ID_ATS), 0);
});

Deno.test("PCI drivers match by vendor/device ID table and get the matching entry", () => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014, 0x080600));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1efd, 0x0008, 0x080600));
  cfg.fns.set(PCI_DEVFN(3, 0), fn(0x1234, 0x0001, 0x010802));
  const seen: [string, unknown][] = [];
  pci_register_driver(kernel, {
    name: "riscv-iommu-pci",
    idTable: [
      { vendor: 0x1b36, device: 0x0014, data: "redhat" },
      { vendor: 0x1efd, device: 0x0008, data: "rivos" },
    ],
    probe: (pdev, id) => void seen.push([pdev.name, id.data]),
  });
  pci_register_driver(kernel, {
    name: "nvme",
    idTable: [{ vendor: 0xffff_ffff, device: 0xffff_ffff, class: 0x010802, classMask: 0xffffff }],
    probe: (pdev, id) => void seen.push([pdev.name, id.class]),
  });
  probe();
  assert.deepEqual(seen, [["0000:00:01.0", "redhat"], ["0000:00:02.0", "rivos"], [
    "0000:00:03.0",
    0x010802,
  ]]);
});

Deno.test("pci_enable_device()/pci_set_master() set COMMAND bits without clearing RW1C status", () => {
  const { cfg, probe } = setup();
  const f = bar(fn(1, 1), 0, 0x1000).set(R.PCI_STATUS, 16, 0x8000, 0, 0xf900); // a latched error
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  const [d] = probe().devices;
  pci_enable_device(d);
  pci_set_master(d);
  assert.equal(pci_read_config_word(d, R.PCI_COMMAND), R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_MASTER);
  assert.equal(pci_read_config_word(d, R.PCI_STATUS), 0x8000, "status error bit survived");
  pci_write_config_word(d, R.PCI_STATUS, 0x8000);
  assert.equal(pci_read_config_word(d, R.PCI_STATUS), 0, "writing 1 clears it");
});

Deno.test("pci dma_configure: iommu-map gives the fwspec; the excluded RID gets no IOMMU", () => {
  const dt = DeviceTree.fromBlob(
    Deno.readFileSync(new URL("./testdata/virt.dtb", import.meta.url)),
  );
  const pciNode = dt.findNode("/soc/pci@30000000")!;
  const iommuNode = dt.findNode("/soc/iommu@3010000")!;
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 20),
    initcalls: [pci_driver_init],
  });
  const layer: IommuLayer = {
    ofXlate: (n: FwNode) => n === iommuNode ? (dev, args) => iommu_fwspec_add_ids(dev, args) : null,
    probeDevice: (dev) => void (dev.iommu = "probed"),
    releaseDevice() {},
    prepareMsi() {},
  };
  kernel.iommuLayer = layer;
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1234, 0x0001));
  pci_register_driver(kernel, {
    name: "any",
    idTable: [{ vendor: PCI_ANY_ID, device: PCI_ANY_ID }],
    probe() {},
  });
  const host = pci_host_probe(kernel, { accessor: cfg, ofNode: pciNode });
  const [iommuFn, ep] = host.devices;
  assert.equal(iommuFn.fwspec, null);
  assert.equal(iommuFn.state, "bound");
  assert.deepEqual(ep.fwspec?.ids, [0x10]);
  assert.equal(ep.fwspec?.fwnode, iommuNode);
  assert.equal(ep.fwspec!.flags & IOMMU_FWSPEC_PCI_RC_ATS, IOMMU_FWSPEC_PCI_RC_ATS);
  assert.equal(ep.iommu, "probed");
});

Deno.test("a PCI function gets the DT child node whose reg names its devfn (the PCI IOMMU's node)", () => {
  const dt = new DeviceTree();
  const host = dt.root.addChild("pci@30000000").set("#address-cells", [3]).set("#size-cells", [2]);
  const node = host.addChild("iommu@1,0").set("reg", [PCI_DEVFN(1, 0) << 8, 0, 0, 0, 0]);
  const kernel = new Kernel({
    mem: new TestRam(0x8000_0000, 1 << 20),
    initcalls: [pci_driver_init],
  });
  const cfg = new FakeCfg();
  cfg.fns.set(PCI_DEVFN(1, 0), fn(0x1b36, 0x0014));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(0x1b36, 0x0001));
  const [a, b] = pci_host_probe(kernel, { accessor: cfg, ofNode: host }).devices;
  assert.equal(a.ofNode, node);
  assert.equal(a.fwnode, node);
  assert.equal(b.ofNode, null);
});

Deno.test("PCI entry points reject what the function lacks or is not doing (EINVAL) and bad config offsets (EFAULT)", async (t) => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(fn(1, 1), {})); // no BAR, no MSI/MSI-X, no extended caps
  cfg.fns.set(PCI_DEVFN(2, 0), caps(fn(1, 2), { ext: true }));
  const [bare, full] = probe().devices;
  const einval = (what: string, f: () => unknown) =>
    assert.throws(f, { code: "EINVAL" }, `${what} should be EINVAL`);
  await t.step("a capability the function does not have", () => {
    einval("ATS queue depth", () => pci_ats_queue_depth(bare));
    einval("enable ATS", () => pci_enable_ats(bare, 12));
    einval("enable PRI", () => pci_enable_pri(bare, 1));
    einval("reset PRI", () => pci_reset_pri(bare));
    einval("enable PASID", () => pci_enable_pasid(bare, 0));
    einval("PASID features", () => pci_pasid_features(bare));
    einval("max PASIDs", () => pci_max_pasids(bare));
    einval("MSI-X count", () => pci_msix_vec_count(bare));
    einval("MSI count", () => pci_msi_vec_count(bare));
    assert.deepEqual(
      [pci_ats_supported(bare), pci_pri_supported(bare), pci_ats_page_aligned(bare)],
      [false, false, false],
    );
    assert.equal(pci_prg_resp_pasid_required(bare), false);
    assert.deepEqual([pci_ats_supported(full), pci_pri_supported(full)], [true, true]);
  });
  await t.step("disabling what is not enabled (C WARNs)", () => {
    einval("disable ATS", () => pci_disable_ats(full));
    einval("disable PRI", () => pci_disable_pri(full));
    einval("disable PASID", () => pci_disable_pasid(full));
    pci_enable_pasid(full, R.PCI_PASID_CAP_EXEC);
    assert.equal(pci_pasid_features(full), R.PCI_PASID_CAP_EXEC);
    pci_disable_pasid(full);
    assert.equal(pci_read_config_word(full, full.pasidCap + R.PCI_PASID_CTRL), 0);
    einval("disable PASID twice", () => pci_disable_pasid(full));
  });
  await t.step("BARs, vectors and device types", () => {
    einval("iomap of a missing BAR", () => pci_iomap(bare, 0));
    einval("iomap past the last BAR", () => pci_iomap(bare, 6));
    einval("vector range 0..1", () => pci_alloc_irq_vectors(bare, 0, 1, PCI_IRQ_MSIX));
    einval("vector range 2..1", () => pci_alloc_irq_vectors(bare, 2, 1, PCI_IRQ_MSIX));
    assert.throws(() => pci_alloc_irq_vectors(bare, 1, 1, PCI_IRQ_MSIX), { code: "ENOSPC" });
    einval("an unallocated vector", () => pci_irq_vector(bare, 0));
    const plain = new Device(kernel, { name: "plain" });
    assert.equal(dev_is_pci(plain), false);
    einval("to_pci_dev of a non-PCI device", () => to_pci_dev(plain));
    assert.equal(to_pci_dev(full), full);
  });
  await t.step(
    "config offsets outside 4 KiB or unaligned are EFAULT (PCIBIOS_BAD_REGISTER_NUMBER)",
    () => {
      const bad: [string, () => unknown][] = [
        ["dword at 2", () => pci_read_config_dword(full, 2)],
        ["word at 1", () => pci_read_config_word(full, 1)],
        ["byte at 0x1000", () => pci_read_config_byte(full, 0x1000)],
        ["dword at -4", () => pci_read_config_dword(full, -4)],
        ["word write at 0xfff", () => pci_write_config_word(full, 0xfff, 0)],
        ["dword write at 0x1000", () => pci_write_config_dword(full, 0x1000, 0)],
        ["byte write at 1.5", () => pci_write_config_byte(full, 1.5, 0)],
      ];
      for (const [what, f] of bad) assert.throws(f, { code: "EFAULT" }, what);
      assert.equal(pci_read_config_dword(full, 0), 2 << 16 | 1);
      assert.equal(pci_read_config_byte(full, 0xfff), 0);
    },
  );
});
