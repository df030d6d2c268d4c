import assert from "node:assert/strict";
import {
  device_attach,
  device_release_driver,
  Errno,
  generic_handle_domain_irq,
  IRQ_HANDLED,
  msi_get_virq,
  pci_alloc_irq_vectors,
  PCI_DEVFN,
  pci_enable_device,
  pci_free_irq_vectors,
  PCI_IRQ_MSI,
  PCI_IRQ_MSIX,
  pci_irq_vector,
  pci_read_config_word,
  pci_register_driver,
  pcim_enable_device,
  request_irq,
} from "./mod.ts";
import * as R from "./pci_regs.ts";
import { bar, caps, fn, setup } from "./_pci_test_fixture.ts";

Deno.test("MSI-X: pci_alloc_irq_vectors() programs the table in the BAR through MMIO", async (t) => {
  const { cfg, bars, kernel, imsic, probe } = setup();
  const f = caps(bar(fn(1, 1), 0, 0x1000), { msix: 8, msi: 4 });
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  const [d] = probe().devices;
  const table = d.resource[0]!.start + 0x800;
  bars.clear();
  await t.step("four vectors: addr lo/hi, data per entry; MASKALL dropped at the end", () => {
    assert.equal(pci_alloc_irq_vectors(d, 1, 4, PCI_IRQ_MSIX | PCI_IRQ_MSI), 4);
    const expect: [number, number][] = [];
    for (let i = 0; i < 4; i++) {
      const e = table + i * 16;
      expect.push([e + 12, 1], [e, 0x2800_0000], [e + 4, 0], [e + 8, i + 1]);
    }
    assert.deepEqual(bars.writes(), expect);
    assert.equal(pci_read_config_word(d, 0x52), R.PCI_MSIX_FLAGS_ENABLE | 7);
    assert.ok(d.msixEnabled);
    assert.equal(d.irq, pci_irq_vector(d, 0));
    assert.throws(() => pci_irq_vector(d, 4), { code: "EINVAL" });
  });
  await t.step("request_irq() unmasks the entry; the MSI identity reaches the handler", () => {
    bars.clear();
    let got = 0;
    const irq = pci_irq_vector(d, 2);
    request_irq(kernel, irq, (n) => (got = n, IRQ_HANDLED), 0, "v2", d);
    assert.deepEqual(bars.writes(), [[table + 2 * 16 + 12, 0]]);
    generic_handle_domain_irq(imsic, 3);
    assert.equal(got, irq);
    assert.throws(() => pci_free_irq_vectors(d), { code: "EBUSY" });
    kernel.irq.desc(irq)!.actions.length = 0;
  });
  await t.step("pci_free_irq_vectors() disables MSI-X", () => {
    pci_free_irq_vectors(d);
    assert.equal(pci_read_config_word(d, 0x52) & R.PCI_MSIX_FLAGS_ENABLE, 0);
    assert.equal(d.irq, 0);
  });
  await t.step("more than the table holds is capped; min above it is ENOSPC", () => {
    assert.equal(pci_alloc_irq_vectors(d, 1, 32, PCI_IRQ_MSIX), 8);
    pci_free_irq_vectors(d);
    assert.throws(() => pci_alloc_irq_vectors(d, 9, 9, PCI_IRQ_MSIX), { code: "ENOSPC" });
  });
});

Deno.test("pcim_enable_device() makes pci_alloc_irq_vectors() managed: vectors freed at unbind or failed probe", async (t) => {
  const { cfg, kernel, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(bar(fn(1, 1), 0, 0x1000), { msix: 8 }));
  cfg.fns.set(PCI_DEVFN(2, 0), caps(bar(fn(1, 2), 0, 0x1000), { msix: 8 }));
  let fail = true;
  pci_register_driver(kernel, {
    name: "managed",
    idTable: [{ vendor: 1, device: 1 }],
    probe(pdev) {
      pcim_enable_device(pdev);
      pci_alloc_irq_vectors(pdev, 1, 4, PCI_IRQ_MSIX);
      if (fail) throw new Errno("EIO", "later probe step");
    },
  });
  pci_register_driver(kernel, {
    name: "unmanaged",
    idTable: [{ vendor: 1, device: 2 }],
    probe(pdev) {
      pci_enable_device(pdev);
      pci_alloc_irq_vectors(pdev, 1, 4, PCI_IRQ_MSIX);
    },
  });
  const [managed, plain] = probe().devices;
  await t.step("a failed probe leaves no vector and MSI-X off", () => {
    assert.equal(managed.state, "unbound");
    assert.equal(managed.msixEnabled, false);
    assert.equal(msi_get_virq(managed, 0), 0);
    assert.equal(managed.isManaged, false, "devres undid pcim_enable_device");
  });
  await t.step("unbinding a managed driver frees them, and a rebind can allocate again", () => {
    fail = false;
    assert.equal(device_attach(managed), true);
    assert.equal(managed.msixEnabled, true);
    device_release_driver(managed);
    assert.equal(managed.msixEnabled, false);
    assert.equal(msi_get_virq(managed, 0), 0);
    assert.equal(device_attach(managed), true);
    pci_free_irq_vectors(managed); // a driver freeing them itself is fine too
    device_release_driver(managed);
    assert.equal(managed.msixEnabled, false);
  });
  await t.step("without pcim_enable_device() the vectors stay with the device", () => {
    device_release_driver(plain);
    assert.equal(plain.msixEnabled, true);
    pci_free_irq_vectors(plain);
  });
});

Deno.test("MSI: multi-message needs a power of two and aligned identities", () => {
  const { cfg, probe } = setup();
  const f = caps(fn(1, 1), { msi: 4 });
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  cfg.fns.set(PCI_DEVFN(2, 0), fn(1, 2));
  const [d, none] = probe().devices;
  assert.equal(pci_alloc_irq_vectors(d, 1, 3, PCI_IRQ_MSIX | PCI_IRQ_MSI), 2);
  assert.ok(d.msiEnabled);
  assert.equal(f.read(0x64), 0x2800_0000);
  assert.equal(f.read(0x6c) & 0xffff, 2, "base identity 2: aligned to the 2-vector block");
  assert.equal(pci_read_config_word(d, 0x62) & 0x71, 1 << 4 | 1, "MME = log2(2), enabled");
  assert.throws(() => pci_alloc_irq_vectors(none, 1, 1, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
    code: "ENOSPC",
  });
});

Deno.test("pci_alloc_irq_vectors() falls back from MSI-X to MSI when MSI-X is too small or fails (as Linux)", async (t) => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(bar(fn(1, 1), 0, 0x1000), { msix: 2, msi: 4 }));
  // BAR 0 ends where the MSI-X table would start, so enabling MSI-X fails.
  cfg.fns.set(PCI_DEVFN(2, 0), caps(bar(fn(1, 2), 0, 0x800), { msix: 8, msi: 4 }));
  cfg.fns.set(PCI_DEVFN(3, 0), caps(bar(fn(1, 3), 0, 0x800), { msix: 8 }));
  const [small, broken, only] = probe().devices;
  await t.step("MSI-X offers fewer than min: MSI gives them", () => {
    assert.equal(pci_alloc_irq_vectors(small, 4, 4, PCI_IRQ_MSIX | PCI_IRQ_MSI), 4);
    assert.ok(small.msiEnabled && !small.msixEnabled);
    assert.equal(small.irq, pci_irq_vector(small, 0));
  });
  await t.step("MSI-X fails: MSI is tried and MSI-X is left disabled", () => {
    assert.equal(pci_alloc_irq_vectors(broken, 1, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), 4);
    assert.ok(broken.msiEnabled && !broken.msixEnabled);
    assert.equal(pci_read_config_word(broken, 0x52) & R.PCI_MSIX_FLAGS_ENABLE, 0);
  });
  await t.step("fewer than min from MSI too: ENOSPC, nothing enabled", () => {
    assert.throws(() => pci_alloc_irq_vectors(small, 8, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
      code: "EINVAL", // already enabled
    });
    pci_free_irq_vectors(small);
    assert.throws(() => pci_alloc_irq_vectors(small, 8, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
      code: "ENOSPC",
    });
    assert.ok(!small.msiEnabled && !small.msixEnabled);
    assert.equal(msi_get_virq(small, 0), 0);
  });
  await t.step("MSI-X fails and there is no MSI: its error is returned", () => {
    assert.throws(() => pci_alloc_irq_vectors(only, 1, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI), {
      code: "EINVAL",
    });
    assert.ok(!only.msixEnabled);
    assert.equal(msi_get_virq(only, 0), 0);
  });
});
