import assert from "node:assert/strict";
import { MEM_POISON } from "@iommu-lab/hw";
import { Machine, riscvIommu } from "@iommu-lab/machine";
import {
  device_iommu_capable,
  IOMMU_CAP_DIRTY_TRACKING,
  iommu_get_domain_for_dev,
  iommu_iova_to_phys,
} from "@iommu-lab/iommu";
import { pci_read_config_word, sysfs_readdir } from "@iommu-lab/kernel";
import {
  PCI_ATS_CTRL,
  PCI_ATS_CTRL_ENABLE,
  PCI_PRI_CTRL,
  PCI_PRI_CTRL_ENABLE,
  RISCV_IOMMU_HPMEVENT_ATS_RQ,
} from "@iommu-lab/hw/regs";
import { cli, type DmatestInjectInfo, dmatestOptions, PATTERN_SRC, runDmatest } from "./dmatest.ts";
import { bootMachine } from "./_machine.ts";
import { parseCli } from "../cli.ts";
import { checkBadArguments, runCaptured } from "../cli_testing.ts";

function _boot(bus: "platform" | "pci"): Machine {
  return Machine.boot({ iommu: riscvIommu({ features: [] }), iommuBus: bus, dmaChannels: 2 });
}

const SUMMARY =
  /^dmatest: (dma0chan\d-(?:copy|memset)\d): summary (\d+) tests, (\d+) failures \d+\.\d\d iops \d+ KB\/s \(0\)$/;

for (const bus of ["platform", "pci"] as const) {
  Deno.test(`dmatest copies and fills through the ${bus} IOMMU's DMA domain and verifies every byte`, async (t) => {
    const m = _boot(bus);
    const domain = iommu_get_domain_for_dev(m.dmaChannel(0).dev)!;
    const bufs = new Set<number>();
    const iovas = new Set<number>();
    const record = (i: DmatestInjectInfo) => {
      for (const pa of [i.srcPhys, i.dstPhys]) if (pa) bufs.add(pa);
      for (const iova of [i.srcDma, i.dstDma]) if (iova) iovas.add(iova);
    };
    await t.step("copy, random lengths and offsets, two threads per channel", () => {
      const seen: { phys: number; dma: number }[] = [];
      const r = runDmatest(m, {
        iterations: 6,
        test_buf_size: 3 * 4096,
        threads_per_chan: 2,
        inject: (i) => {
          record(i);
          seen.push({ phys: i.dstPhys, dma: i.dstDma });
        },
      });
      assert.equal(r.tests, 2 * 2 * 6);
      assert.equal(r.failures, 0);
      assert.ok(r.bytes > 0 && r.simNs > 0);
      // The engine saw IOVAs of the DMA domain, not physical addresses.
      assert.ok(seen.every((s) => s.dma < s.phys || s.dma >= s.phys + 3 * 4096));
      const sums = r.log.filter((l) => SUMMARY.test(l));
      assert.deepEqual(sums.map((l) => l.match(SUMMARY)![1]), [
        "dma0chan0-copy0",
        "dma0chan0-copy1",
        "dma0chan1-copy0",
        "dma0chan1-copy1",
      ]);
      for (const l of sums) assert.deepEqual(l.match(SUMMARY)!.slice(2), ["6", "0"]);
    });
    await t.step("fill (memset) with norandom and transfer_size", () => {
      const r = runDmatest(m, {
        mode: "fill",
        iterations: 3,
        test_buf_size: 8192,
        norandom: true,
        transfer_size: 5000,
        inject: record,
      });
      assert.equal(r.failures, 0);
      assert.equal(r.bytes, 2 * 3 * 5000);
      assert.ok(r.log.some((l) => l.startsWith("dmatest: dma0chan1-memset0: summary 3 tests")));
    });
    await t.step("coherent buffers from dma_alloc_coherent", () => {
      const r = runDmatest(m, {
        coherent: true,
        iterations: 4,
        test_buf_size: 4096,
        channel: "dma0chan1",
        inject: record,
      });
      assert.equal(r.tests, 4);
      assert.equal(r.failures, 0);
    });
    await t.step("every buffer freed and every IOVA unmapped afterwards", () => {
      const live = new Set(m.kernel.pages.allocations().map((a) => a.phys));
      assert.ok(bufs.size >= 4 && [...bufs].every((pa) => !live.has(pa)));
      assert.ok(
        iovas.size >= 4 && [...iovas].every((iova) => iommu_iova_to_phys(domain, iova) === 0),
      );
    });
  });
}

Deno.test("dmatest reports a DMA to an unmapped IOVA as a completion error, and the IOMMU logs the fault", () => {
  const m = _boot("platform");
  const r = runDmatest(m, {
    iterations: 3,
    test_buf_size: 4096,
    max_channels: 1,
    inject: (i) => {
      if (i.iteration === 1) i.dstDma = 0x1000; // below every IOVA dma-iommu hands out
    },
  });
  assert.equal(r.tests, 3);
  assert.equal(r.failures, 1);
  assert.match(r.log.join("\n"), /dma0chan0-copy0: result #2: 'completion error status' .* \(2\)/);
  // Cause 15: store/AMO page fault, at the IOVA the engine wrote.
  assert.ok(
    m.dmesg.some((l) => /riscv,iommu 3010000\.iommu: Fault 15 devid: 0x10 iotval: 1000 /.test(l)),
  );
});

Deno.test("dmatest reports a write into a DMA_TO_DEVICE (read-only) mapping as a completion error", () => {
  const m = _boot("pci");
  const r = runDmatest(m, {
    iterations: 1,
    test_buf_size: 8192,
    norandom: true,
    transfer_size: 4096,
    max_channels: 1,
    inject: (i) => {
      i.dstDma = i.srcDma + 4096; // the second page of the source buffer
    },
  });
  assert.equal(r.failures, 1);
  assert.ok(m.dmesg.some((l) => /Fault 15 devid: 0x10 /.test(l)));
});

Deno.test("dmatest reports poisoned source memory as a completion error", () => {
  const m = _boot("platform");
  const r = runDmatest(m, {
    iterations: 2,
    test_buf_size: 4096,
    max_channels: 1,
    inject: (i) => {
      if (i.iteration === 0) m.silicon.mem.injectFault(i.srcPhys, 4096, MEM_POISON, "read");
      else m.silicon.mem.clearFaults();
    },
  });
  assert.equal(r.failures, 1);
  assert.match(r.log.join("\n"), /result #1: 'completion error status' .* \(3\)/);
});

Deno.test("dmatest verification catches bad copies: not copied, was copied, mismatch", async (t) => {
  const m = _boot("platform");
  const run = (inject: (i: DmatestInjectInfo) => void) =>
    runDmatest(m, {
      iterations: 1,
      test_buf_size: 4096,
      norandom: true,
      transfer_size: 2048,
      max_channels: 1,
      inject,
    });
  await t.step("an overrun of 8 bytes: was copied", () => {
    const r = run((i) => i.len += 8);
    assert.equal(r.failures, 1);
    const log = r.log.join("\n");
    const bad = r.log.filter((l) => / (not copied|was copied|mismatch)! /.test(l));
    assert.equal(bad.length, 8, log);
    // Past the region's end: source bytes where the destination pattern should be.
    const m0 = /dstbuf\[0x800\] was copied! Expected 1f, got ([0-9a-f]{2})/.exec(log);
    assert.ok(m0, log);
    assert.equal(Number.parseInt(m0[1], 16), PATTERN_SRC | 0x1f);
    assert.match(log, /result #1: 'data error' with src_off=0x0 dst_off=0x0 len=0x800 \(8\)/);
  });
  await t.step("a copy 32 bytes late: not copied, was copied, the rest counted", () => {
    const r = run((i) => i.dstDma += 32);
    const log = r.log.join("\n");
    assert.match(log, /dstbuf\[0x1f\] not copied! Expected c0, got 20/);
    assert.equal(r.log.filter((l) => / not copied! /.test(l)).length, 32);
    assert.match(log, /dmatest: dma0chan0-copy0: 32 errors suppressed/);
    assert.match(log, /'data error' .* \(64\)/);
  });
  await t.step("a copy 8 bytes late: the counters of the copied bytes mismatch", () => {
    const r = run((i) => i.dstDma += 8);
    const log = r.log.join("\n");
    assert.match(log, /dstbuf\[0x8\] mismatch! Expected d7, got df/);
    assert.match(log, /'data error' .* \(2056\)/);
  });
  await t.step("the source read from the wrong place: mismatch", () => {
    const r = run((i) => i.srcDma += 4);
    assert.equal(r.failures, 1);
    assert.match(r.log.join("\n"), /dstbuf\[0x0\] mismatch! Expected df, got db/);
  });
});

Deno.test("dmatest verification catches a misplaced fill (memset)", () => {
  const m = _boot("platform");
  const r = runDmatest(m, {
    mode: "fill",
    iterations: 2,
    test_buf_size: 4096,
    norandom: true,
    transfer_size: 2048,
    max_channels: 1,
    inject: (i) => {
      if (i.iteration === 1) i.dstDma += 4;
    },
  });
  assert.equal(r.failures, 1);
  const log = r.log.join("\n");
  assert.equal(r.log.filter((l) => / not copied! /.test(l)).length, 4);
  assert.match(log, /dma0chan0-memset0: dstbuf\[0x803\] was copied! Expected 1c, got de/);
  assert.match(log, /result #2: 'data error' .* \(8\)/);
});

Deno.test("dmatest: a thread whose buffers cannot be allocated reports -ENOMEM and runs nothing", () => {
  const m = _boot("platform");
  runDmatest(m, { iterations: 2, test_buf_size: 4096 }); // grows the page table once
  const pages = m.kernel.pages.allocatedPages;
  m.kernel.pages.failNth(2); // dma0chan0-copy0's destination buffer
  const r = runDmatest(m, { iterations: 2, test_buf_size: 4096 });
  assert.deepEqual(r.threads.map((t) => [t.name, t.tests, t.ret]), [
    ["dma0chan0-copy0", 0, -12],
    ["dma0chan1-copy0", 2, 0],
  ]);
  assert.equal(r.failures, 0);
  assert.match(
    r.log.join("\n"),
    /dma0chan0-copy0: summary 0 tests, 0 failures 0\.00 iops 0 KB\/s \(-12\)/,
  );
  assert.equal(
    m.kernel.pages.allocatedPages,
    pages,
    "the source buffer of the failed thread is freed",
  );
});

Deno.test("runDmatest rejects bad parameters (EINVAL) and unknown channels (ENODEV)", async (t) => {
  const m = _boot("platform");
  const pages = m.kernel.pages.allocatedPages;
  for (
    const [name, opts] of [
      ["iterations 0", { iterations: 0 }],
      ["test_buf_size 0", { test_buf_size: 0 }],
      ["test_buf_size above 4 MiB", { test_buf_size: (4 << 20) + 1 }],
      ["threads_per_chan 0", { threads_per_chan: 0 }],
      ["alignment beyond the buffer", { test_buf_size: 4096, alignment: 13 }],
      ["transfer_size of the whole buffer", { test_buf_size: 4096, transfer_size: 4096 }],
    ] as const
  ) {
    await t.step(name, () => assert.throws(() => runDmatest(m, opts), { code: "EINVAL" }));
  }
  await t.step("channel dma9chan0", () => {
    assert.throws(() => runDmatest(m, { channel: "dma9chan0" }), { code: "ENODEV" });
  });
  assert.equal(m.kernel.pages.allocatedPages, pages);
});

Deno.test("dmatest.ts command line prints the kernel's summary lines and its own", async () => {
  const r = await runCaptured("dmatest", cli, [
    "--iterations",
    "2",
    "--channels",
    "1",
    "--iommu-bus",
    "pci",
  ]);
  assert.equal(r.status, 0, r.err.join("\n"));
  assert.match(
    r.out.join("\n"),
    /^\[ +\d+\.\d{6}\] dmatest: dma0chan0-copy0: summary 2 tests, 0 failures \d+\.\d\d iops \d+ KB\/s \(0\)$/m,
  );
  assert.match(
    r.out.at(-1)!,
    /^dmatest: 2 tests, 0 failures, \d+(\.\d+)? [KM]iB in [\d.]+ us simulated, \d+ ms real$/,
  );
});

Deno.test("dmatest --features iopf,dirty,hpm: one kernel with the three series; dmatest passes through the engine's ATC, each unmap invalidating it with ATS.INVAL", async (t) => {
  const args = ["--features", "iopf,dirty,hpm", "--channels", "2", "--iterations", "4"];
  await t.step("the machine the options describe", () => {
    const v = parseCli(args, cli)!;
    const m = bootMachine(v);
    assert.deepEqual(m.driver!.features.map((f) => f.name), ["iopf", "dirty-tracking", "hpm"]);
    const pdev = m.dmaDevices[0];
    assert.equal(device_iommu_capable(pdev, IOMMU_CAP_DIRTY_TRACKING), true);
    assert.deepEqual(sysfs_readdir(m.kernel, "/sys/bus/event_source/devices"), [
      "riscv_iommu_hpm_0",
    ]);
    assert.ok(pci_read_config_word(pdev, pdev.atsCap + PCI_ATS_CTRL) & PCI_ATS_CTRL_ENABLE);
    assert.ok(pci_read_config_word(pdev, pdev.priCap + PCI_PRI_CTRL) & PCI_PRI_CTRL_ENABLE);
    const ats = m.silicon.iommu!.atsPort!;
    let invalidations = 0;
    m.silicon.iommu!.atsPort = {
      invalidate: (inv, done) => (invalidations++, ats.invalidate(inv, done)),
      pageResponse: (rsp) => ats.pageResponse(rsp),
    };
    let atsRequests = 0;
    m.silicon.iommu!.translator.addEventObserver({
      count: (id) => void (id === RISCV_IOMMU_HPMEVENT_ATS_RQ && atsRequests++),
    });
    const r = runDmatest(m, dmatestOptions(v));
    assert.deepEqual([r.tests, r.failures], [8, 0]);
    assert.ok(atsRequests > 0, "the engine asked for translations");
    // Each test unmaps its source and destination: two ATS.INVALs at least.
    assert.ok(invalidations >= 2 * r.tests, `${invalidations} ATS invalidations`);
  });
  await t.step("the command line", async () => {
    const r = await runCaptured("dmatest", cli, [...args, "--dmesg"]);
    assert.equal(r.status, 0, r.err.join("\n"));
    const out = r.out.join("\n");
    assert.match(out, /riscv,iommu 3010000\.iommu: page request queue enabled$/m);
    assert.match(out, /HPM: Registered riscv_iommu_hpm_0 /);
    assert.doesNotMatch(out, /disabled: no capabilities/);
    assert.match(r.out.at(-1)!, /^dmatest: 8 tests, 0 failures, /);
  });
});

Deno.test("dmatest.ts: bad arguments are one line and status 2, never a stack trace", async (t) => {
  await checkBadArguments(t, "dmatest", cli, [
    [["--bogus"], "unknown option --bogus"],
    [["extra"], 'unexpected argument "extra"'],
    [["--iterations"], "--iterations needs a value"],
    [["--iterations", "--verbose"], "--iterations needs a value"],
    [["--iterations", "x"], "--iterations: x is not an integer (decimal or 0x)"],
    [["--iterations", "1e3"], "--iterations: 1e3 is not an integer (decimal or 0x)"],
    [["--iterations", "0"], "--iterations: 0 is out of range (at least 1)"],
    [["--iterations", "-1"], "--iterations: -1 is out of range (at least 1)"],
    [["--test_buf_size", "0x500000"], "--test_buf_size: 0x500000 is out of range (1 to 4194304)"],
    [["--alignment", "40"], "16384-byte buffer too small for 2^40-byte alignment (-EINVAL)"],
    [["--alignment", "-2"], "--alignment: -2 is out of range (at least -1)"],
    [["--timeout", "-2"], "--timeout: -2 is out of range (at least -1)"],
    [["--timeout", "1.5"], "--timeout: 1.5 is not an integer (decimal or 0x)"],
    [
      ["--transfer_size", "16384"],
      "transfer_size must be lower than test_buf_size and aligned (-EINVAL)",
    ],
    [["--channels", "40"], "--channels: 40 is out of range (1 to 32)"],
    [["--channels", "0"], "--channels: 0 is out of range (1 to 32)"],
    [["--engines", "99"], "--engines: 99 is out of range (1 to 30)"],
    [["--channel", "dma9chan0"], "no DMA channel matches (-ENODEV)"],
    [["--mode", "move"], "--mode: move is not one of copy, fill"],
    [["--dmatest", "2"], "--dmatest: 2 is not one of 0, 1"],
    [["--iommu-bus", "isa"], "--iommu-bus: isa is not one of platform, pci"],
    [
      ["--iommu", "t100", "--iommu-bus", "pci"],
      "--iommu t100 is a platform IOMMU: not with --iommu-bus pci",
    ],
    [["--pci-domain", "-1"], "--pci-domain: -1 is out of range (0 to 255)"],
    [["--seed", "0x100000000"], "--seed: 0x100000000 is out of range (0 to 4294967295)"],
    [["--noverify=1"], "--noverify takes no value"],
    [["--features", "sva"], "--features: sva is not one of iopf, dirty, hpm, none"],
    [["--features", "iopf,,hpm"], '--features: "" is not one of iopf, dirty, hpm, none'],
    [["--features", "IOPF"], "--features: IOPF is not one of iopf, dirty, hpm, none"],
    [["--features", "hpm,dirty,hpm"], "--features: hpm is named twice"],
    [["--features", "none,dirty"], "--features: none goes alone"],
    [["--features"], "--features needs a value"],
    [["--features", "dirty", "--iommu", "none"], "--features dirty: not with --iommu none"],
  ]);
});

Deno.test("dmatest --timeout -1 waits forever, as in Linux; --timeout 0 times every test out", () => {
  const m = _boot("platform");
  const forever = runDmatest(m, { iterations: 2, test_buf_size: 4096, timeout: -1 });
  assert.deepEqual([forever.tests, forever.failures], [4, 0]);
  const none = runDmatest(m, { iterations: 2, test_buf_size: 4096, timeout: 0 });
  assert.deepEqual([none.tests, none.failures], [4, 4]);
  assert.match(none.log.join("\n"), /test timed out/);
});
