import assert from "node:assert/strict";
import {
  pci_ats_queue_depth,
  PCI_DEVFN,
  pci_disable_ats,
  pci_disable_pri,
  pci_enable_ats,
  pci_enable_pasid,
  pci_enable_pri,
  pci_max_pasids,
  pci_prg_resp_pasid_required,
  pci_read_config_word,
  pci_reset_pri,
} from "./mod.ts";
import * as R from "./pci_regs.ts";
import { caps, fn, setup } from "./_pci_test_fixture.ts";

Deno.test("ATS: pci_enable_ats() programs STU and enable; rules as in drivers/pci/ats.c", async (t) => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(fn(1, 1), { ext: true }));
  cfg.fns.set(PCI_DEVFN(2, 0), fn(1, 2));
  const [d, plain] = probe().devices;
  await t.step("enable with 4 KiB pages", () => {
    pci_enable_ats(d, 12);
    assert.equal(pci_read_config_word(d, d.atsCap + R.PCI_ATS_CTRL), R.PCI_ATS_CTRL_ENABLE);
    assert.ok(d.atsEnabled);
    assert.equal(d.atsStu, 12);
    assert.equal(pci_ats_queue_depth(d), 8);
  });
  await t.step("enabling twice is EBUSY; disable clears the bit; disabling twice is EINVAL", () => {
    assert.throws(() => pci_enable_ats(d, 12), { code: "EBUSY" });
    pci_disable_ats(d);
    assert.equal(pci_read_config_word(d, d.atsCap + R.PCI_ATS_CTRL), 0);
    assert.throws(() => pci_disable_ats(d), { code: "EINVAL" });
  });
  await t.step("STU below 4 KiB or no ATS capability is EINVAL", () => {
    assert.throws(() => pci_enable_ats(d, 11), { code: "EINVAL" });
    assert.throws(() => pci_enable_ats(plain, 12), { code: "EINVAL" });
    pci_enable_ats(d, 16);
    assert.equal(pci_read_config_word(d, d.atsCap + R.PCI_ATS_CTRL), R.PCI_ATS_CTRL_ENABLE | 4);
  });
});

Deno.test("PRI: enable allocates min(capacity, reqs); reset only while disabled; RW1C status kept", () => {
  const { cfg, probe } = setup();
  const f = caps(fn(1, 1), { ext: true });
  cfg.fns.set(PCI_DEVFN(1, 0), f);
  const [d] = probe().devices;
  assert.ok(pci_prg_resp_pasid_required(d));
  pci_enable_pri(d, 64);
  assert.equal(d.priReqsAlloc, 32);
  assert.equal(f.read(0x11c), 32);
  assert.equal(pci_read_config_word(d, d.priCap + R.PCI_PRI_CTRL), R.PCI_PRI_CTRL_ENABLE);
  assert.equal(
    pci_read_config_word(d, d.priCap + R.PCI_PRI_STATUS) & 1,
    1,
    "RF (RW1C) survived the ctrl write",
  );
  assert.throws(() => pci_enable_pri(d, 1), { code: "EBUSY" });
  assert.throws(() => pci_reset_pri(d), { code: "EBUSY" });
  pci_disable_pri(d);
  pci_reset_pri(d);
  assert.equal(pci_read_config_word(d, d.priCap + R.PCI_PRI_CTRL), R.PCI_PRI_CTRL_RESET);
  f.set(0x116, 16, 0, 0, 0x3); // not stopped
  assert.throws(() => pci_enable_pri(d, 1), { code: "EBUSY" });
});

Deno.test("PASID: features must be supported; width gives the PASID count", () => {
  const { cfg, probe } = setup();
  cfg.fns.set(PCI_DEVFN(1, 0), caps(fn(1, 1), { ext: true }));
  const [d] = probe().devices;
  assert.equal(pci_max_pasids(d), 1 << 20);
  assert.throws(() => pci_enable_pasid(d, R.PCI_PASID_CAP_PRIV), { code: "EINVAL" });
  pci_enable_pasid(d, R.PCI_PASID_CAP_EXEC);
  assert.equal(
    pci_read_config_word(d, d.pasidCap + R.PCI_PASID_CTRL),
    R.PCI_PASID_CTRL_ENABLE | R.PCI_PASID_CAP_EXEC,
  );
  assert.throws(() => pci_enable_pasid(d, 0), { code: "EBUSY" });
});
