import assert from "node:assert/strict";
import {
  bus_register,
  dev_get_msi_domain,
  dev_set_msi_domain,
  Device,
  device_add,
  devm_request_irq,
  disable_irq,
  driver_register,
  driver_unregister,
  enable_irq,
  Errno,
  free_irq,
  generic_handle_domain_irq,
  generic_handle_irq,
  iommu_dma_prepare_msi,
  irq_create_mapping,
  irq_dispose_mapping,
  irq_domain_create_linear,
  irq_domain_create_msi,
  irq_find_mapping,
  irq_find_matching_fwnode,
  IRQ_HANDLED,
  IRQ_NONE,
  IRQ_WAKE_THREAD,
  type IrqDomain,
  IRQF_NO_AUTOEN,
  IRQF_ONESHOT,
  IRQF_SHARED,
  type IrqHandler,
  irqs_disabled,
  Kernel,
  local_irq_restore,
  local_irq_save,
  msi_domain_alloc_irqs,
  msi_domain_free_irqs_all,
  msi_get_virq,
  msi_msg_set_addr,
  type MsiDesc,
  type MsiMsg,
  request_irq,
  request_threaded_irq,
} from "./mod.ts";
import { TestRam } from "./testing.ts";

function setup(): { kernel: Kernel; wires: IrqDomain; masks: string[] } {
  const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
  const masks: string[] = [];
  const wires = irq_domain_create_linear(kernel, { name: "aplic" }, 64, {
    mask: (hw, m) => masks.push(`${m ? "mask" : "unmask"} ${hw}`),
  });
  return { kernel, wires, masks };
}

Deno.test("irq domains: virqs are per kernel, mappings are stable and unknown lines are spurious", () => {
  const { kernel, wires } = setup();
  const a = irq_create_mapping(wires, 5);
  assert.equal(irq_create_mapping(wires, 5), a);
  assert.equal(irq_find_mapping(wires, 5), a);
  assert.equal(irq_find_mapping(wires, 6), 0);
  assert.notEqual(irq_create_mapping(wires, 6), a);
  assert.throws(() => irq_create_mapping(wires, 64), { code: "EINVAL" });
  assert.equal(generic_handle_domain_irq(wires, 9), false);
  assert.equal(kernel.irq.spurious, 1);
  assert.equal(irq_find_matching_fwnode(kernel, wires.fwnode!), wires);
  irq_dispose_mapping(kernel, a);
  assert.equal(irq_find_mapping(wires, 5), 0);
});

Deno.test("request_irq(): handler gets the virq and dev_id; unmasked on request, masked on free", () => {
  const { kernel, wires, masks } = setup();
  const irq = irq_create_mapping(wires, 3);
  const seen: unknown[] = [];
  request_irq(kernel, irq, (n, id) => (seen.push([n, id]), IRQ_HANDLED), 0, "dev", "cookie");
  generic_handle_domain_irq(wires, 3);
  assert.deepEqual(seen, [[irq, "cookie"]]);
  assert.equal(kernel.irq.desc(irq)!.count, 1);
  assert.match(kernel.irq.procInterrupts()[0], /^\s+\d+:\s+1\s+aplic 3\s+dev$/);
  assert.throws(() => irq_dispose_mapping(kernel, irq), { code: "EBUSY" });
  free_irq(kernel, irq, "cookie");
  assert.throws(() => free_irq(kernel, irq, "cookie"), { code: "EINVAL" });
  generic_handle_domain_irq(wires, 3);
  assert.equal(seen.length, 1);
  assert.equal(kernel.irq.desc(irq)!.unhandled, 1);
  assert.deepEqual(masks, ["unmask 3", "mask 3"]);
});

Deno.test("request_threaded_irq(): IRQ_WAKE_THREAD runs the thread after every primary handler", () => {
  const { kernel, wires } = setup();
  const irq = irq_create_mapping(wires, 1);
  const log: string[] = [];
  request_threaded_irq(
    kernel,
    irq,
    () => (log.push("hard A"), IRQ_WAKE_THREAD),
    () => (log.push("thread A"), IRQ_HANDLED),
    IRQF_SHARED,
    "A",
    "a",
  );
  request_irq(kernel, irq, () => (log.push("hard B"), IRQ_NONE), IRQF_SHARED, "B", "b");
  generic_handle_irq(kernel, irq);
  assert.deepEqual(log, ["hard A", "hard B", "thread A"]);
});

Deno.test("shared lines: every action runs; unclaimed deliveries count as unhandled", () => {
  const { kernel, wires } = setup();
  const irq = irq_create_mapping(wires, 2);
  let aMine = false;
  const hits: string[] = [];
  request_irq(
    kernel,
    irq,
    () => (hits.push("a"), aMine ? IRQ_HANDLED : IRQ_NONE),
    IRQF_SHARED,
    "a",
    1,
  );
  request_irq(kernel, irq, () => (hits.push("b"), IRQ_NONE), IRQF_SHARED, "b", 2);
  generic_handle_irq(kernel, irq);
  assert.equal(kernel.irq.desc(irq)!.unhandled, 1);
  aMine = true;
  generic_handle_irq(kernel, irq);
  assert.equal(kernel.irq.desc(irq)!.unhandled, 1);
  assert.deepEqual(hits, ["a", "b", "a", "b"]);
  free_irq(kernel, irq, 1);
  generic_handle_irq(kernel, irq);
  assert.deepEqual(hits.slice(4), ["b"]);
});

Deno.test("request_threaded_irq() argument rules (EBUSY / EINVAL)", async (t) => {
  const { kernel, wires } = setup();
  const irq = irq_create_mapping(wires, 4);
  const h: IrqHandler = () => IRQ_HANDLED;
  await t.step("non-shared line already taken is EBUSY", () => {
    request_irq(kernel, irq, h, 0, "first", 1);
    assert.throws(() => request_irq(kernel, irq, h, IRQF_SHARED, "second", 2), { code: "EBUSY" });
    free_irq(kernel, irq, 1);
  });
  await t.step("shared needs every action shared and the same ONESHOT", () => {
    request_irq(kernel, irq, h, IRQF_SHARED, "first", 1);
    assert.throws(() => request_irq(kernel, irq, h, 0, "x", 2), { code: "EBUSY" });
    assert.throws(
      () => request_threaded_irq(kernel, irq, h, h, IRQF_SHARED | IRQF_ONESHOT, "x", 2),
      { code: "EBUSY" },
    );
    free_irq(kernel, irq, 1);
  });
  await t.step("shared needs a dev_id", () => {
    assert.throws(() => request_irq(kernel, irq, h, IRQF_SHARED, "x", null), { code: "EINVAL" });
  });
  await t.step("handler=NULL needs IRQF_ONESHOT; no handler at all is EINVAL", () => {
    assert.throws(() => request_threaded_irq(kernel, irq, null, h, 0, "x", 1), { code: "EINVAL" });
    assert.throws(() => request_threaded_irq(kernel, irq, null, null, IRQF_ONESHOT, "x", 1), {
      code: "EINVAL",
    });
    request_threaded_irq(kernel, irq, null, h, IRQF_ONESHOT, "x", 1);
    free_irq(kernel, irq, 1);
  });
  await t.step("unknown virq is EINVAL", () => {
    assert.throws(() => request_irq(kernel, 999, h, 0, "x", 1), { code: "EINVAL" });
  });
});

Deno.test("IRQF_ONESHOT: line stays masked while the thread runs; a delivery then is replayed", () => {
  const { kernel, wires, masks } = setup();
  const irq = irq_create_mapping(wires, 8);
  const log: string[] = [];
  let nested = true;
  request_threaded_irq(
    kernel,
    irq,
    () => (log.push("hard"), IRQ_WAKE_THREAD),
    () => {
      log.push(`thread masked=${kernel.irq.desc(irq)!.masked}`);
      if (nested) {
        nested = false;
        generic_handle_domain_irq(wires, 8); // arrives while the thread runs
        log.push("raised");
      }
      return IRQ_HANDLED;
    },
    IRQF_ONESHOT,
    "oneshot",
    null,
  );
  generic_handle_domain_irq(wires, 8);
  assert.deepEqual(log, ["hard", "thread masked=true", "raised", "hard", "thread masked=true"]);
  assert.deepEqual(masks, ["unmask 8", "mask 8", "unmask 8", "mask 8", "unmask 8"]);
  assert.equal(kernel.irq.desc(irq)!.count, 2);
});

Deno.test("without ONESHOT a delivery during the thread reruns the primary and the thread", () => {
  const { kernel, wires } = setup();
  const irq = irq_create_mapping(wires, 9);
  const log: string[] = [];
  let nested = true;
  request_threaded_irq(
    kernel,
    irq,
    () => (log.push("hard"), IRQ_WAKE_THREAD),
    () => {
      log.push("thread");
      if (nested) {
        nested = false;
        generic_handle_irq(kernel, irq);
      }
      return IRQ_HANDLED;
    },
    0,
    "t",
    null,
  );
  generic_handle_irq(kernel, irq);
  assert.deepEqual(log, ["hard", "thread", "hard", "thread"]);
});

Deno.test("a delivery during the primary handler is replayed after it, not nested", () => {
  const { kernel, wires } = setup();
  const irq = irq_create_mapping(wires, 10);
  let depth = 0;
  let maxDepth = 0;
  let calls = 0;
  request_irq(
    kernel,
    irq,
    () => {
      depth++;
      maxDepth = Math.max(depth, maxDepth);
      if (++calls === 1) generic_handle_irq(kernel, irq);
      depth--;
      return IRQ_HANDLED;
    },
    0,
    "r",
    null,
  );
  generic_handle_irq(kernel, irq);
  assert.equal(calls, 2);
  assert.equal(maxDepth, 1);
});

Deno.test("disable_irq()/enable_irq() nest; deliveries while disabled replay on enable", () => {
  const { kernel, wires, masks } = setup();
  const irq = irq_create_mapping(wires, 11);
  let hits = 0;
  request_irq(kernel, irq, () => (hits++, IRQ_HANDLED), IRQF_NO_AUTOEN, "n", null);
  assert.deepEqual(masks, []);
  generic_handle_irq(kernel, irq);
  assert.equal(hits, 0);
  enable_irq(kernel, irq);
  assert.equal(hits, 1);
  disable_irq(kernel, irq);
  disable_irq(kernel, irq);
  generic_handle_irq(kernel, irq);
  enable_irq(kernel, irq);
  assert.equal(hits, 1);
  enable_irq(kernel, irq);
  assert.equal(hits, 2);
  assert.throws(() => enable_irq(kernel, irq), { code: "EINVAL" });
  assert.deepEqual(masks, ["unmask 11", "mask 11", "unmask 11"]);
});

Deno.test("local_irq_save()/local_irq_restore(): deliveries wait for restore, nest, run in arrival order", () => {
  const { kernel, wires } = setup();
  const log: string[] = [];
  const a = irq_create_mapping(wires, 1);
  const b = irq_create_mapping(wires, 2);
  request_threaded_irq(
    kernel,
    a,
    () => (log.push("hard a"), IRQ_WAKE_THREAD),
    () => (log.push("thread a"), IRQ_HANDLED),
    IRQF_ONESHOT,
    "a",
    null,
  );
  request_irq(kernel, b, () => (log.push("b"), IRQ_HANDLED), 0, "b", null);

  const outer = local_irq_save(kernel);
  assert.equal(outer, false);
  assert.equal(irqs_disabled(kernel), true);
  generic_handle_irq(kernel, b);
  const inner = local_irq_save(kernel);
  generic_handle_irq(kernel, a);
  generic_handle_irq(kernel, b);
  local_irq_restore(kernel, inner);
  assert.equal(log.length, 0, "still off: the inner restore puts back 'off'");
  assert.equal(kernel.irq.desc(b)!.count, 2, "deliveries are counted when they arrive");
  log.push("section done");
  local_irq_restore(kernel, outer);
  assert.equal(irqs_disabled(kernel), false);
  // b arrived twice while off: one pending delivery, as a level a CPU takes once.
  assert.deepEqual(log, ["section done", "b", "hard a", "thread a"]);
  generic_handle_irq(kernel, b);
  assert.equal(log.at(-1), "b", "delivered at once when on");
});

Deno.test("local_irq_restore(): an irq freed while held back is not delivered", () => {
  const { kernel, wires } = setup();
  const irq = irq_create_mapping(wires, 4);
  let hits = 0;
  request_irq(kernel, irq, () => (hits++, IRQ_HANDLED), 0, "x", null);
  const flags = local_irq_save(kernel);
  generic_handle_irq(kernel, irq);
  free_irq(kernel, irq, null);
  local_irq_restore(kernel, flags);
  assert.equal(hits, 0);
});

Deno.test("devm_request_irq() is freed when the driver unbinds", () => {
  const { kernel, wires } = setup();
  const bus = bus_register(kernel, { name: "b", match: () => true });
  const irq = irq_create_mapping(wires, 12);
  const drv = {
    name: "d",
    probe: (dev: Device) => devm_request_irq(dev, irq, () => IRQ_HANDLED, 0, "d", dev),
  };
  driver_register(bus, drv);
  device_add(new Device(kernel, { name: "d0", bus }));
  assert.equal(kernel.irq.desc(irq)!.actions.length, 1);
  driver_unregister(bus, drv);
  assert.equal(kernel.irq.desc(irq)!.actions.length, 0);
});

Deno.test("MSI domain: identities allocated lowest first, messages composed and written", async (t) => {
  const { kernel } = setup();
  const compose = (id: number): MsiMsg => ({ addressLo: 0x2800_0000, addressHi: 0, data: id });
  const masked = new Map<number, boolean>();
  const imsic = irq_domain_create_msi(kernel, { name: "imsic" }, 8, {
    composeMsiMsg: compose,
    mask: (id, m) => masked.set(id, m),
  });
  const dev = new Device(kernel, { name: "dev0" });
  await t.step("no domain is ENODEV", () => {
    assert.throws(() => msi_domain_alloc_irqs(dev, 1, { write() {} }), { code: "ENODEV" });
  });
  dev.msiDomain = imsic;
  const written: [number, MsiMsg][] = [];
  const devMask: [number, boolean][] = [];
  const writer = {
    write: (d: { msiIndex: number }, m: MsiMsg) => written.push([d.msiIndex, m]),
    mask: (d: { msiIndex: number }, m: boolean) => devMask.push([d.msiIndex, m]),
  };
  await t.step("three vectors get identities 1, 2, 3", () => {
    const virqs = msi_domain_alloc_irqs(dev, 3, writer);
    assert.deepEqual(written.map(([i, m]) => [i, m.data]), [[0, 1], [1, 2], [2, 3]]);
    assert.deepEqual(virqs.map((_, i) => msi_get_virq(dev, i)), virqs);
    assert.equal(msi_get_virq(dev, 3), 0);
    assert.deepEqual(devMask, [[0, true], [1, true], [2, true]]);
  });
  await t.step(
    "delivering identity 2 runs the handler of vector 1 and unmask reached the device",
    () => {
      let got = -1;
      const irq = msi_get_virq(dev, 1);
      request_irq(kernel, irq, (n) => (got = n, IRQ_HANDLED), 0, "v1", dev);
      assert.deepEqual(devMask.at(-1), [1, false]);
      assert.equal(masked.get(2), false);
      generic_handle_domain_irq(imsic, 2);
      assert.equal(got, irq);
      assert.throws(() => msi_domain_free_irqs_all(dev), { code: "EBUSY" });
      free_irq(kernel, irq, dev);
    },
  );
  await t.step("contiguous allocation is size-aligned; exhaustion is ENOSPC", () => {
    const other = new Device(kernel, { name: "dev1" });
    other.msiDomain = imsic;
    msi_domain_alloc_irqs(other, 3, { write() {} }, true);
    assert.deepEqual(
      [0, 1, 2].map((i) => kernel.irq.desc(msi_get_virq(other, i))!.hwirq),
      [4, 5, 6],
    );
    assert.throws(() => msi_domain_alloc_irqs(other, 3, { write() {} }), { code: "ENOSPC" });
    assert.equal(msi_get_virq(other, 3), 0, "a failed allocation adds no vector");
  });
  await t.step("free_irqs_all returns identities for reuse", () => {
    msi_domain_free_irqs_all(dev);
    assert.equal(msi_get_virq(dev, 0), 0);
    const again = new Device(kernel, { name: "dev2" });
    again.msiDomain = imsic;
    msi_domain_alloc_irqs(again, 3, { write() {} });
    assert.deepEqual(
      [0, 1, 2].map((i) => kernel.irq.desc(msi_get_virq(again, i))!.hwirq),
      [1, 2, 3],
    );
  });
});

Deno.test("MSI domain: iommu_dma_prepare_msi() remaps the doorbell before the message is composed", async (t) => {
  const { kernel } = setup();
  const DOORBELL = 0x2800_0000;
  const order: string[] = [];
  const imsic = irq_domain_create_msi(kernel, { name: "imsic" }, 8, {
    prepareMsi(id, desc) {
      order.push(`prepare ${id}`);
      iommu_dma_prepare_msi(desc, DOORBELL + 4);
    },
    composeMsiMsg(id, desc) {
      order.push(`compose ${id}`);
      const msg = { addressLo: 0, addressHi: 0, data: id };
      msi_msg_set_addr(desc, msg, DOORBELL + 4);
      return msg;
    },
  });
  const dev = new Device(kernel, { name: "dev0" });
  dev.msiDomain = imsic;
  const addr = (i: number) => {
    const m = kernel.irq.desc(msi_get_virq(dev, i))!.msi!.msg;
    return m.addressHi * 2 ** 32 + m.addressLo;
  };
  await t.step("without an IOMMU core the message targets the doorbell itself", () => {
    msi_domain_alloc_irqs(dev, 2, { write() {} });
    assert.deepEqual(order, ["prepare 1", "prepare 2", "compose 1", "compose 2"]);
    assert.equal(addr(0), DOORBELL + 4);
  });
  const prepared: [MsiDesc, number][] = [];
  let failAt = 0;
  kernel.iommuLayer = {
    ofXlate: () => null,
    probeDevice() {},
    releaseDevice() {},
    prepareMsi(desc, msiAddr) {
      if (--failAt === 0) throw new Errno("ENOMEM", "no IOVA");
      prepared.push([desc, msiAddr]);
      desc.iommuMsiIova = 0x1_ffff_f000;
      desc.iommuMsiShift = 12;
    },
  };
  await t.step("the IOMMU core's mapping replaces the page, the offset is kept", () => {
    msi_domain_alloc_irqs(dev, 1, { write() {} });
    assert.deepEqual(prepared.map(([d, a]) => [d.msiIndex, a]), [[2, DOORBELL + 4]]);
    assert.equal(addr(2), 0x1_ffff_f004);
    assert.equal(addr(0), DOORBELL + 4, "vectors prepared earlier keep their message");
  });
  await t.step("a failed prepare leaves no vector, virq or identity behind", () => {
    const other = new Device(kernel, { name: "dev1" });
    other.msiDomain = imsic;
    failAt = 2;
    assert.throws(() => msi_domain_alloc_irqs(other, 3, { write: () => assert.fail() }), {
      code: "ENOMEM",
    });
    assert.equal(msi_get_virq(other, 0), 0);
    assert.equal(imsic.mappings.size, 3, "only dev0's vectors are mapped");
    failAt = 1;
    assert.throws(() => msi_domain_alloc_irqs(dev, 1, { write() {} }), { code: "ENOMEM" });
    assert.ok(msi_get_virq(dev, 2) > 0 && msi_get_virq(dev, 3) === 0, "dev0 keeps its three");
    msi_domain_alloc_irqs(other, 1, { write() {} });
    assert.equal(kernel.irq.desc(msi_get_virq(other, 0))!.hwirq, 4, "identity 4 came back");
  });
});

Deno.test("irq layer argument rules: domains, MSI domains and vector counts", () => {
  const { kernel, wires } = setup();
  assert.throws(
    () => irq_domain_create_linear(kernel, wires.fwnode!, 8),
    { code: "EEXIST" },
    "one domain per controller node",
  );
  assert.throws(() => irq_create_mapping(wires, -1), { code: "EINVAL" });
  assert.equal(generic_handle_irq(kernel, 999), false, "a delivery never throws: spurious");
  assert.throws(() => enable_irq(kernel, 999), { code: "EINVAL" });
  assert.throws(() => free_irq(kernel, 999, null), { code: "EINVAL" });
  const dev = new Device(kernel, { name: "dev0" });
  assert.throws(() => dev_set_msi_domain(dev, wires), { code: "EINVAL" }, "a wired domain");
  assert.equal(dev_get_msi_domain(dev), null);
  const imsic = irq_domain_create_msi(kernel, { name: "imsic" }, 4, {
    composeMsiMsg: (id) => ({ addressLo: 0x2800_0000, addressHi: 0, data: id }),
  });
  dev_set_msi_domain(dev, imsic);
  assert.equal(dev_get_msi_domain(dev), imsic);
  for (const n of [0, -1, 1.5]) {
    assert.throws(() => msi_domain_alloc_irqs(dev, n, { write() {} }), { code: "EINVAL" }, `${n}`);
  }
  assert.throws(
    () => irq_dispose_mapping(kernel, msi_domain_alloc_irqs(dev, 1, { write() {} })[0]),
    {
      code: "EINVAL",
    },
    "MSI vectors are freed with their device, not disposed",
  );
});
