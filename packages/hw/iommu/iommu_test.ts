import assert from "node:assert/strict";
import { PhysicalMemory } from "../memory.ts";
import { encodeCaps, IGS_BOTH, IGS_MSI, IGS_WSI, type IommuCaps, resolveCaps } from "./caps.ts";
import { Iommu, type IommuOptions } from "./iommu.ts";
import * as R from "./regs.ts";
import { RISCV_IOMMU_HPMEVENT_URQ } from "./structs.ts";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_WRITE,
  type InboundRequest,
  iovaOf,
  newRequest,
  newResult,
  type TranslationResult,
  XLATE_OK,
} from "./request.ts";

const RAM = 0x8000_0000;

function make(opts: Partial<IommuOptions> = {}, caps: Partial<IommuCaps> = {}) {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const wires = new Map<number, boolean>();
  const iommu = new Iommu({
    mem,
    caps,
    irq: { setWire: (l, v) => wires.set(l, v) },
    ...opts,
  });
  return { mem, iommu, wires };
}

/** Sets up a command queue of 2^log2 entries at `base` and enables it. */
function enableCq(iommu: Iommu, base = RAM, log2 = 4, csr = R.RISCV_IOMMU_CQCSR_CQEN) {
  iommu.write64(R.RISCV_IOMMU_REG_CQB, BigInt(base / 4096) << 10n | BigInt(log2 - 1));
  iommu.write32(R.RISCV_IOMMU_REG_CQT, 0);
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, csr);
}

function enableFq(iommu: Iommu, base = RAM + 0x10_0000, log2 = 4, csr = R.RISCV_IOMMU_FQCSR_FQEN) {
  iommu.write64(R.RISCV_IOMMU_REG_FQB, BigInt(base / 4096) << 10n | BigInt(log2 - 1));
  iommu.write32(R.RISCV_IOMMU_REG_FQH, 0);
  iommu.write32(R.RISCV_IOMMU_REG_FQCSR, csr);
}

/** Writes a command at the tail and bumps `cqt`. */
function submit(iommu: Iommu, mem: PhysicalMemory, d0: bigint, d1 = 0n) {
  const t = iommu.read32(R.RISCV_IOMMU_REG_CQT);
  const base = Number(iommu.read64(R.RISCV_IOMMU_REG_CQB) >> 10n) * 4096;
  const size = 2 ** (Number(iommu.read64(R.RISCV_IOMMU_REG_CQB) & 0x1fn) + 1);
  mem.write64(base + t * 16, d0);
  mem.write64(base + t * 16 + 8, d1);
  iommu.write32(R.RISCV_IOMMU_REG_CQT, (t + 1) % size);
}

const ILLEGAL = 0x7fn; // opcode 127: custom, unsupported
const IOFENCE_WSI = 2n | R.RISCV_IOMMU_CMD_IOFENCE_WSI;

Deno.test("reset state: enables, on/busy bits, ipsr, Go/Busy and ddtp.busy are 0; mode Off (spec §5.2, Reset behavior)", async (t) => {
  await t.step("default reset", () => {
    const { iommu } = make();
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CAPABILITIES), encodeCaps(resolveCaps()));
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_DDTP), 0n);
    for (const off of [R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_REG_PQCSR]) {
      assert.equal(iommu.read32(off), 0);
    }
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), 0);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_REQ_CTL), 0n);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(5)), 1, "vectors reset masked");
  });
  await t.step("resetMode bare", () => {
    const { iommu } = make({ resetMode: "bare" });
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_DDTP), 1n);
  });
  await t.step("reset() after use returns to the reset state", () => {
    const { iommu } = make();
    iommu.write64(R.RISCV_IOMMU_REG_DDTP, 4n);
    enableCq(iommu);
    iommu.reset();
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_DDTP), 0n);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQCSR), 0);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQB), 0n);
  });
});

Deno.test("register map: every register at its offset of spec §5.1 (Register layout), its reset value, and what writing all ones leaves (RO/RW/RW1C/WARL, capability-gated presence)", async (t) => {
  // [offset, size, reset, after writing all ones]; everything else reads 0 before and after.
  const ONES = 0xffff_ffff_ffff_ffffn;
  const PPN44 = ((1n << 44n) - 1n) << 10n; // PAS 56
  const full = (caps: IommuCaps): [number, 4 | 8, bigint, bigint][] => {
    const ats = caps.ats, hpm = caps.hpm, dbg = caps.dbg, msi = caps.igs !== IGS_WSI;
    const wsi = caps.igs === IGS_WSI ? 2n : 0n;
    const on = (present: boolean, v: bigint) => present ? v : 0n;
    const regs: [number, 4 | 8, bigint, bigint][] = [
      [R.RISCV_IOMMU_REG_CAPABILITIES, 8, encodeCaps(caps), encodeCaps(caps)],
      [R.RISCV_IOMMU_REG_FCTL, 4, wsi, caps.igs === IGS_MSI ? 0n : 2n],
      [R.RISCV_IOMMU_REG_DDTP, 8, 0n, 0n], // mode 15 is reserved: the write is dropped
      [R.RISCV_IOMMU_REG_CQB, 8, 0n, PPN44 | 0x1fn],
      [R.RISCV_IOMMU_REG_CQH, 4, 0n, 0n],
      [R.RISCV_IOMMU_REG_CQT, 4, 0n, 1n], // a 2-entry queue after reset
      [R.RISCV_IOMMU_REG_FQB, 8, 0n, PPN44 | 0x1fn],
      [R.RISCV_IOMMU_REG_FQH, 4, 0n, 1n],
      [R.RISCV_IOMMU_REG_FQT, 4, 0n, 0n],
      [R.RISCV_IOMMU_REG_PQB, 8, 0n, on(ats, PPN44 | 0x1fn)],
      [R.RISCV_IOMMU_REG_PQH, 4, 0n, on(ats, 1n)],
      [R.RISCV_IOMMU_REG_PQT, 4, 0n, 0n],
      [R.RISCV_IOMMU_REG_CQCSR, 4, 0n, 0x1_0003n], // cqen, cie, then cqon
      [R.RISCV_IOMMU_REG_FQCSR, 4, 0n, 0x1_0003n],
      [R.RISCV_IOMMU_REG_PQCSR, 4, 0n, on(ats, 0x1_0003n)],
      [R.RISCV_IOMMU_REG_IPSR, 4, 0n, 0n],
      [R.RISCV_IOMMU_REG_IOCOUNTOVF, 4, 0n, 0n],
      [R.RISCV_IOMMU_REG_IOCOUNTINH, 4, on(hpm, 0xffff_ffffn), on(hpm, 0xffff_ffffn)], // reset: inhibited
      [R.RISCV_IOMMU_REG_IOHPMCYCLES, 8, 0n, on(hpm, ONES)],
      [R.RISCV_IOMMU_REG_TR_REQ_IOVA, 8, 0n, on(dbg, 0xffff_ffff_ffff_f000n)],
      [R.RISCV_IOMMU_REG_TR_REQ_CTL, 8, 0n, on(dbg, 0xffff_ff01_ffff_f00en)], // Go cleared
      [R.RISCV_IOMMU_REG_TR_RESPONSE, 8, 0n, 0n],
      [R.RISCV_IOMMU_REG_ICVEC, 8, 0n, 0xffffn],
    ];
    for (let n = 1; n <= 31; n++) {
      regs.push([R.RISCV_IOMMU_REG_IOHPMCTR(n), 8, 0n, on(hpm, ONES)]);
      regs.push([R.RISCV_IOMMU_REG_IOHPMEVT(n), 8, 0n, on(hpm, ONES & ~0x7fffn)]); // eventID WARL
    }
    for (let n = 0; n < 16; n++) {
      regs.push([R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(n), 8, 0n, on(msi, 0x00ff_ffff_ffff_fffcn)]);
      regs.push([R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(n), 4, 0n, on(msi, 0xffff_ffffn)]);
      regs.push([R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(n), 4, on(msi, 1n), on(msi, 1n)]);
    }
    return regs;
  };
  const sweep = (capsOpt: Partial<IommuCaps>) => {
    const caps = resolveCaps(capsOpt);
    const table = new Map<number, [4 | 8, bigint, bigint, number]>();
    for (const [off, size, reset, ones] of full(caps)) {
      table.set(off, [size, reset, ones, off]);
      if (size === 8) table.set(off + 4, [size, reset >> 32n, ones >> 32n, off]);
    }
    for (let off = 0; off < 0x1000; off += 4) {
      const [size, reset, ones, base] = table.get(off) ?? [4, 0n, 0n, off];
      const { iommu } = make({ cache: { iotlb: { sets: 4, ways: 4 } } }, capsOpt);
      const where = `0x${off.toString(16)}`;
      assert.equal(iommu.read32(off), Number(reset & 0xffff_ffffn), `${where} reset`);
      if (size === 8) iommu.write64(base, ONES);
      else iommu.write32(off, 0xffff_ffff);
      assert.equal(iommu.read32(off), Number(ones & 0xffff_ffffn), `${where} after all ones`);
    }
  };
  await t.step("every capability", () => sweep({ igs: IGS_BOTH }));
  await t.step("no ATS, HPM or DBG; WSI only: their registers read 0 and ignore writes", () => {
    sweep({ ats: false, hpm: false, dbg: false, igs: IGS_WSI });
  });
  await t.step("MSI only: fctl.WSI stays 0", () => sweep({ igs: IGS_MSI }));
});

Deno.test("capabilities is read-only and reflects the caps option", () => {
  const caps = { sv57: false, ats: false, igs: IGS_WSI, pas: 48 } as const;
  const { iommu } = make({}, caps);
  const v = encodeCaps(resolveCaps(caps));
  iommu.write64(R.RISCV_IOMMU_REG_CAPABILITIES, ~0n);
  iommu.write32(R.RISCV_IOMMU_REG_CAPABILITIES + 4, 0);
  assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CAPABILITIES), v);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CAPABILITIES), Number(v & 0xffff_ffffn));
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CAPABILITIES + 4), Number(v >> 32n));
});

Deno.test("absent optional registers read 0 and ignore writes (capability-gated presence)", async (t) => {
  const poke = (iommu: Iommu, offs: number[]) => {
    for (const off of offs) {
      iommu.write32(off, 0xffff_ffff);
      iommu.write32(off + 4, 0xffff_ffff);
    }
    return offs.map((off) => iommu.read64(off));
  };
  await t.step("PQ registers without ATS", () => {
    const offs = [R.RISCV_IOMMU_REG_PQB, R.RISCV_IOMMU_REG_PQH, R.RISCV_IOMMU_REG_PQCSR];
    assert.deepEqual(poke(make({}, { ats: false }).iommu, offs), [0n, 0n, 0n]);
    const [pqb] = poke(make({}, { ats: true }).iommu, [R.RISCV_IOMMU_REG_PQB]);
    assert.notEqual(pqb, 0n, "present with ATS");
  });
  await t.step("HPM registers without HPM", () => {
    const offs = [
      R.RISCV_IOMMU_REG_IOCOUNTOVF,
      R.RISCV_IOMMU_REG_IOHPMCYCLES,
      R.RISCV_IOMMU_REG_IOHPMCTR(7),
      R.RISCV_IOMMU_REG_IOHPMEVT(31),
    ];
    assert.deepEqual(poke(make({}, { hpm: false }).iommu, offs), [0n, 0n, 0n, 0n]);
    const present = poke(make({}, { hpm: true }).iommu, offs);
    assert.equal(present[1], 0xffff_ffff_ffff_ffffn, "iohpmcycles is writable with HPM");
    assert.equal(present[2], 0xffff_ffff_ffff_ffffn, "iohpmctr7 is writable with HPM");
  });
  await t.step("debug interface without DBG", () => {
    const offs = [R.RISCV_IOMMU_REG_TR_REQ_IOVA, R.RISCV_IOMMU_REG_TR_REQ_CTL];
    assert.deepEqual(poke(make({}, { dbg: false }).iommu, offs), [0n, 0n]);
    assert.equal(poke(make({}, { dbg: true }).iommu, offs)[0], 0xffff_ffff_ffff_f000n);
  });
  await t.step("msi_cfg_tbl with IGS=WSI", () => {
    const offs = [R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(0), R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(15)];
    assert.deepEqual(poke(make({}, { igs: IGS_WSI }).iommu, offs), [0n, 0n]);
    assert.notEqual(poke(make({}, { igs: IGS_MSI }).iommu, offs)[0], 0n);
  });
  await t.step("iommu_qosid without QOSID", () => {
    const off = R.RISCV_IOMMU_REG_IOMMU_QOSID;
    assert.equal(poke(make({}, { qosid: false }).iommu, [off])[0], 0n);
    assert.equal(poke(make({}, { qosid: true }).iommu, [off])[0], 0x0fff_0fffn);
  });
});

Deno.test("register access sizes: 4/8 bytes naturally aligned; anything else reads 0 and is ignored", async (t) => {
  await t.step("8-byte access to a pair of 32-bit registers is both halves", () => {
    const { iommu } = make();
    enableCq(iommu, RAM, 4, 0);
    iommu.write64(R.RISCV_IOMMU_REG_CQH, 0x0000_0005_0000_0003n);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQT), 5);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQH), 0, "cqh is RO");
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQH), 5n << 32n);
  });
  await t.step("4-byte halves of a 64-bit register merge", () => {
    const { iommu } = make();
    iommu.write32(R.RISCV_IOMMU_REG_CQB, 0x0000_4003);
    iommu.write32(R.RISCV_IOMMU_REG_CQB + 4, 0x12);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQB), 0x12_0000_4003n);
    iommu.write32(R.RISCV_IOMMU_REG_CQB, 0x0000_8001);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQB), 0x12_0000_8001n);
  });
  await t.step("misaligned, out-of-page and odd offsets", () => {
    const { iommu } = make();
    iommu.write64(R.RISCV_IOMMU_REG_CQB, 0x4003n);
    for (const off of [0x19, 0x1a, 0x1b, 0x1c + 0.5, -4, 0x1000, 0xffd, NaN]) {
      assert.equal(iommu.read32(off), 0);
      iommu.write32(off, 0xffff_ffff);
    }
    for (const off of [0x1c, 0x14, 0x24, 0xffc, 0x1000, -8]) {
      assert.equal(iommu.read64(off), 0n);
      iommu.write64(off, ~0n);
    }
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQB), 0x4003n);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQT), 0);
  });
  await t.step("reserved and custom space reads 0 after writes", () => {
    const { iommu } = make();
    for (const off of [0x00c, 0x274, 0x2b0, 0x2f0, 0x400, 0x800, 0xff8]) {
      iommu.write64(off, ~0n);
      assert.equal(iommu.read64(off), 0n, `0x${off.toString(16)}`);
    }
  });
});

Deno.test("fctl WARL: BE needs capabilities.END, WSI follows IGS, GXL needs Sv32x4", async (t) => {
  const W = R.RISCV_IOMMU_REG_FCTL;
  await t.step("BE writable only with END", () => {
    const le = make({}, { end: false }).iommu;
    le.write32(W, R.RISCV_IOMMU_FCTL_BE);
    assert.equal(le.read32(W) & R.RISCV_IOMMU_FCTL_BE, 0);
    const both = make({}, { end: true }).iommu;
    both.write32(W, R.RISCV_IOMMU_FCTL_BE);
    assert.equal(both.read32(W) & R.RISCV_IOMMU_FCTL_BE, R.RISCV_IOMMU_FCTL_BE);
    assert.equal(both.translator.fctlBE, true);
  });
  await t.step("WSI is fixed unless IGS=BOTH", () => {
    for (const [igs, written, expect] of [[IGS_MSI, 2, 0], [IGS_WSI, 0, 2], [IGS_BOTH, 2, 2]]) {
      const { iommu } = make({}, { igs: igs as 0 | 1 | 2 });
      iommu.write32(W, written);
      assert.equal(iommu.read32(W) & R.RISCV_IOMMU_FCTL_WSI, expect, `IGS ${igs}`);
    }
  });
  await t.step(
    "GXL: writable with Sv32x4 and a wider x4; fixed 1 with Sv32x4 alone; else 0",
    () => {
      const g = R.RISCV_IOMMU_FCTL_GXL;
      const none = make({}, { sv32x4: false }).iommu;
      none.write32(W, g);
      assert.equal(none.read32(W) & g, 0);
      const mixed = make({}, { sv32x4: true, sv39x4: true }).iommu;
      mixed.write32(W, g);
      assert.equal(mixed.read32(W) & g, g);
      assert.equal(mixed.translator.fctlGXL, true);
      mixed.write32(W, 0);
      assert.equal(mixed.read32(W) & g, 0);
      const only = make({}, { sv32x4: true, sv39x4: false, sv48x4: false, sv57x4: false }).iommu;
      assert.equal(only.read32(W) & g, g);
      only.write32(W, 0);
      assert.equal(only.read32(W) & g, g);
    },
  );
  await t.step("reserved and custom bits read 0", () => {
    const { iommu } = make({}, { end: true, igs: IGS_BOTH });
    iommu.write32(W, 0xffff_fff8);
    assert.equal(iommu.read32(W), 0);
  });
});

Deno.test("ddtp: mode WARL, xLVL→xLVL refused, PPN WARL to PAS, busy (spec §5.5, Device-directory-table pointer)", async (t) => {
  const D = R.RISCV_IOMMU_REG_DDTP;
  await t.step("Off/Bare → xLVL → Off; xLVL → other xLVL keeps the old value", () => {
    const { iommu } = make();
    iommu.write64(D, 0x12345n << 10n | 4n);
    assert.equal(iommu.read64(D), 0x12345n << 10n | 4n);
    assert.equal(iommu.translator.ddtpMode, 4);
    assert.equal(iommu.translator.ddtpPpn, 0x12345);
    iommu.write64(D, 0x999n << 10n | 3n);
    assert.equal(iommu.read64(D), 0x12345n << 10n | 4n, "3LVL → 2LVL refused");
    iommu.write64(D, 0x777n << 10n | 4n);
    assert.equal(iommu.read64(D), 0x777n << 10n | 4n, "same mode with a new PPN is accepted");
    iommu.write64(D, 1n);
    assert.equal(iommu.read64(D), 1n);
    iommu.write64(D, 0x5n << 10n | 2n);
    assert.equal(iommu.read64(D), 0x5n << 10n | 2n, "Bare → 1LVL");
  });
  await t.step("reserved and custom modes keep the old value", () => {
    const { iommu } = make();
    iommu.write64(D, 0x10n << 10n | 1n);
    for (let m = 5n; m < 16n; m++) {
      iommu.write64(D, 0x20n << 10n | m);
      assert.equal(iommu.read64(D), 0x10n << 10n | 1n, `mode ${m}`);
    }
  });
  await t.step("unsupported levels are refused, so a 3LVL→2LVL→1LVL probe finds 1LVL", () => {
    const { iommu } = make({ ddtLevels: [1] });
    const found = [4n, 3n, 2n].find((m) => {
      iommu.write64(D, 0x80000n << 10n | m);
      return (iommu.read64(D) & 0xfn) === m;
    });
    assert.equal(found, 2n);
  });
  await t.step("reserved bits read 0; PPN masked to PAS", () => {
    const { iommu } = make({}, { pas: 40 });
    iommu.write64(D, ~0n << 5n | 4n);
    assert.equal(iommu.read64(D), ((1n << 28n) - 1n) << 10n | 4n);
  });
  await t.step("hard-wired DDT location reads back whatever is written", () => {
    const { iommu } = make({ fixedPpn: { ddt: 0x80123 } });
    assert.equal(iommu.read64(D), 0x80123n << 10n);
    iommu.write64(D, 4n);
    assert.equal(iommu.read64(D), 0x80123n << 10n | 4n);
  });
  await t.step("busy reads 1 for ddtpBusyPolls reads after a write", () => {
    const { iommu } = make({ ddtpBusyPolls: 2 });
    iommu.write64(D, 1n);
    const seen = [0, 1, 2].map(() => iommu.read32(D));
    assert.deepEqual(seen, [0x11, 0x11, 0x1]);
    iommu.write32(D + 4, 0);
    assert.equal(iommu.read32(D + 4), 0, "reading the high half does not consume the window");
    assert.equal(iommu.read64(D), 0x11n);
  });
});

Deno.test("queue bases: LOG2SZ WARL probe, PPN WARL, hard-wired PPN, index masking (spec §5.6–§5.14, the queue base, head and tail registers)", async (t) => {
  await t.step("writing LOG2SZ-1 = 0x1F reads back the supported maximum", () => {
    const { iommu } = make({ maxLog2Sz: { cq: 13, fq: 12, pq: 1 } });
    const cases: [number, bigint][] = [
      [R.RISCV_IOMMU_REG_CQB, 12n],
      [R.RISCV_IOMMU_REG_FQB, 11n],
      [R.RISCV_IOMMU_REG_PQB, 0n],
    ];
    for (const [off, max] of cases) {
      iommu.write64(off, 0x1fn);
      assert.equal(iommu.read64(off), max);
    }
    const full = make().iommu;
    full.write64(R.RISCV_IOMMU_REG_CQB, 0x1fn);
    assert.equal(full.read64(R.RISCV_IOMMU_REG_CQB), 0x1fn, "default supports 2^32 entries");
  });
  await t.step("PPN is WARL to PAS; reserved bits read 0; hard-wired PPN", () => {
    const { iommu } = make({ fixedPpn: { fq: 0x80400 } }, { pas: 44 });
    iommu.write64(R.RISCV_IOMMU_REG_CQB, ~0n << 5n | 3n);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQB), ((1n << 32n) - 1n) << 10n | 3n);
    iommu.write64(R.RISCV_IOMMU_REG_FQB, 0x1234n << 10n | 2n);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_FQB), 0x80400n << 10n | 2n);
  });
  await t.step("cqt/fqh/pqh keep only LOG2SZ bits; writing the base clears the bits above", () => {
    const { iommu } = make();
    const pairs = [
      [R.RISCV_IOMMU_REG_CQB, R.RISCV_IOMMU_REG_CQT],
      [R.RISCV_IOMMU_REG_FQB, R.RISCV_IOMMU_REG_FQH],
      [R.RISCV_IOMMU_REG_PQB, R.RISCV_IOMMU_REG_PQH],
    ];
    for (const [b, idx] of pairs) {
      iommu.write64(b, 7n); // 256 entries
      iommu.write32(idx, 0xffff_ffff);
      assert.equal(iommu.read32(idx), 0xff);
      iommu.write64(b, 2n); // 8 entries
      assert.equal(iommu.read32(idx), 0x7);
    }
  });
  await t.step("cqh, fqt and pqt are read-only", () => {
    const { iommu } = make();
    for (const off of [R.RISCV_IOMMU_REG_CQH, R.RISCV_IOMMU_REG_FQT, R.RISCV_IOMMU_REG_PQT]) {
      iommu.write32(off, 3);
      assert.equal(iommu.read32(off), 0);
    }
  });
  await t.step("base writes while the queue is on are ignored", () => {
    const { iommu } = make();
    enableCq(iommu, RAM, 4);
    iommu.write64(R.RISCV_IOMMU_REG_CQB, 0n);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_CQB), BigInt(RAM / 4096) << 10n | 3n);
  });
});

Deno.test("queue CSRs: enable/on sequencing, busy window, RW1C bits (spec §5.15, Command-queue CSR, §5.16, Fault queue CSR)", async (t) => {
  await t.step("cqen 0→1 resets cqh and the error bits; cqon follows cqen", () => {
    const { iommu, mem } = make();
    enableCq(iommu);
    submit(iommu, mem, 2n);
    submit(iommu, mem, ILLEGAL);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQH), 1);
    assert.equal(
      iommu.read32(R.RISCV_IOMMU_REG_CQCSR),
      R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CQON | R.RISCV_IOMMU_CQCSR_CMD_ILL,
    );
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, 0);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQCSR), R.RISCV_IOMMU_CQCSR_CMD_ILL);
    iommu.write32(R.RISCV_IOMMU_REG_CQT, 0);
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQH), 0);
    assert.equal(
      iommu.read32(R.RISCV_IOMMU_REG_CQCSR),
      R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CQON,
    );
  });
  await t.step("fqen 0→1 resets fqt and clears fqmf/fqof; fqh is software's", () => {
    const { iommu } = make();
    enableFq(iommu, RAM, 1);
    iommu.translate(...req());
    iommu.translate(...req());
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQT), 1);
    assert.ok(iommu.read32(R.RISCV_IOMMU_REG_FQCSR) & R.RISCV_IOMMU_FQCSR_FQOF);
    iommu.write32(R.RISCV_IOMMU_REG_FQCSR, 0);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQCSR), R.RISCV_IOMMU_FQCSR_FQOF);
    iommu.write32(R.RISCV_IOMMU_REG_FQH, 1);
    iommu.write32(R.RISCV_IOMMU_REG_FQCSR, R.RISCV_IOMMU_FQCSR_FQEN);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQT), 0);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQH), 1, "fqh is left alone (QEMU zeroes it)");
    assert.equal(
      iommu.read32(R.RISCV_IOMMU_REG_FQCSR),
      R.RISCV_IOMMU_FQCSR_FQEN | R.RISCV_IOMMU_FQCSR_FQON,
    );
  });
  await t.step("busy shows for csrBusyPolls reads, with the on bit still at its old value", () => {
    const { iommu } = make({ csrBusyPolls: 2 });
    enableCq(iommu);
    const EN = R.RISCV_IOMMU_CQCSR_CQEN, ON = R.RISCV_IOMMU_CQCSR_CQON;
    const seen = [0, 1, 2].map(() => iommu.read32(R.RISCV_IOMMU_REG_CQCSR));
    assert.deepEqual(seen, [EN | R.RISCV_IOMMU_CQCSR_BUSY, EN | R.RISCV_IOMMU_CQCSR_BUSY, EN | ON]);
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, 0);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQCSR), ON | R.RISCV_IOMMU_CQCSR_BUSY);
  });
  await t.step("on and busy are read-only; reserved bits read 0", () => {
    const { iommu } = make();
    iommu.write32(R.RISCV_IOMMU_REG_FQCSR, 0xffff_ffff & ~R.RISCV_IOMMU_FQCSR_FQEN);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQCSR), R.RISCV_IOMMU_FQCSR_FIE);
  });
});

Deno.test("icvec: each field keeps log2(icvecVectors) bits (WARL probe with 0xF)", () => {
  for (const [n, expect] of [[1, 0n], [2, 0x1111n], [4, 0x3333n], [16, 0xffffn]]) {
    const { iommu } = make({ icvecVectors: n as number });
    iommu.write64(R.RISCV_IOMMU_REG_ICVEC, ~0n);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_ICVEC), expect, `${n} vectors`);
  }
  assert.throws(() => make({ icvecVectors: 3 }), RangeError);
});

Deno.test("cache option: a cache geometry the model cannot build is a RangeError naming the cache", () => {
  assert.throws(() => make({ cache: { iotlb: { sets: 1000 } } }), {
    name: "RangeError",
    message: /iotlb cache's sets 1000/,
  });
  assert.throws(() => make({ cache: { ddt: { ways: 3 } } }), /ddt cache's ways 3/);
  assert.throws(() => make({ cache: { pdt: { ways: 64 } } }), /pdt cache's ways 64/);
  make({ cache: { iotlb: { sets: 1 << 17, ways: 4 }, ddt: { sets: 1, ways: 1 } } });
});

Deno.test("msi_cfg_tbl: ADDR 55:2 WARL, 32-bit data, only M in vec_ctl (spec §5.28, MSI configuration table)", () => {
  const { iommu } = make();
  iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(3), ~0n);
  iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(3), ~0n);
  assert.equal(iommu.read64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(3)), 0x00ff_ffff_ffff_fffcn);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(3)), 0xffff_ffff);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(3)), 1);
  assert.equal(iommu.read64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(4)), 0n, "other entries untouched");
});

// -- Interrupts --

function req(init: Partial<InboundRequest> = {}): [InboundRequest, TranslationResult] {
  return [newRequest({ deviceId: 5, iovaLo: 0x1000, ...init }), newResult()];
}

Deno.test("ipsr is RW1C per bit; a bit whose condition still holds sets again (spec §5.18, Interrupt pending status register)", async (t) => {
  await t.step("cip re-sets while cmd_ill is pending; clearing cmd_ill lets it stay clear", () => {
    const { iommu, mem } = make();
    enableCq(iommu, RAM, 4, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
    submit(iommu, mem, ILLEGAL);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_CIP);
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_CIP);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_CIP);
    mem.write64(RAM, 2n); // repair the command into an IOFENCE.C
    const csr = iommu.read32(R.RISCV_IOMMU_REG_CQCSR);
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, csr);
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_CIP);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), 0);
  });
  await t.step("clearing one bit leaves the others", () => {
    const { iommu, mem } = make();
    enableFq(iommu, RAM + 0x10_0000, 4, R.RISCV_IOMMU_FQCSR_FQEN | R.RISCV_IOMMU_FQCSR_FIE);
    enableCq(iommu, RAM, 4, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
    // iohpmctr2 one short of wrapping, counting Untranslated requests: the next one overflows it.
    iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(2), ~0n);
    iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(2), BigInt(RISCV_IOMMU_HPMEVENT_URQ));
    iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0);
    iommu.translate(...req());
    submit(iommu, mem, ILLEGAL);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), 0b111);
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_FIP);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), 0b101, "the new-record fip clears alone");
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_PMIP);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), 0b001);
  });
  await t.step("fip sets on fqof while fie; enabling cie with an error pending sets cip", () => {
    const { iommu, mem } = make();
    enableFq(iommu, RAM + 0x10_0000, 1, R.RISCV_IOMMU_FQCSR_FQEN | R.RISCV_IOMMU_FQCSR_FIE);
    iommu.translate(...req());
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_FIP);
    iommu.translate(...req()); // full: fqof
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_FIP);
    iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_FIP);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_FIP, "fqof still set");
    enableCq(iommu);
    submit(iommu, mem, ILLEGAL);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR) & 1, 0, "cie=0: no cip");
    iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
    assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR) & 1, 1);
  });
});

Deno.test("WSI: each wire is the OR of the ipsr bits icvec maps to it (level-triggered)", () => {
  const { iommu, mem, wires } = make({}, { igs: IGS_WSI });
  iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 0x3255n); // civ 5, fiv 5, pmiv 2, piv 3
  enableFq(iommu, RAM + 0x10_0000, 4, R.RISCV_IOMMU_FQCSR_FQEN | R.RISCV_IOMMU_FQCSR_FIE);
  enableCq(iommu, RAM, 4, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
  iommu.translate(...req());
  assert.equal(wires.get(5), true);
  submit(iommu, mem, IOFENCE_WSI);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_CQCSR) & R.RISCV_IOMMU_CQCSR_FENCE_W_IP, 2048);
  iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_FIP);
  assert.equal(wires.get(5), true, "cip still holds the shared wire");
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_FENCE_W_IP);
  iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_CIP);
  assert.equal(wires.get(5), false);
  // iohpmctr4 one short of wrapping, counting Untranslated requests: the next one overflows it.
  iommu.write64(R.RISCV_IOMMU_REG_IOHPMCTR(4), ~0n);
  iommu.write64(R.RISCV_IOMMU_REG_IOHPMEVT(4), BigInt(RISCV_IOMMU_HPMEVENT_URQ));
  iommu.write32(R.RISCV_IOMMU_REG_IOCOUNTINH, 0);
  iommu.translate(...req());
  assert.equal(wires.get(2), true);
  iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 0x3755n);
  assert.deepEqual([wires.get(2), wires.get(7)], [false, true], "moving pmiv moves the level");
});

Deno.test("WSI: clearing an ipsr bit whose condition still holds keeps its wire high, no glitch", () => {
  const mem = new PhysicalMemory();
  mem.addRam(RAM, 2 ** 30);
  const calls: string[] = [];
  const iommu = new Iommu({
    mem,
    caps: { igs: IGS_WSI },
    irq: { setWire: (l, v) => void calls.push(`${l}=${v}`) },
  });
  iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 0x3n); // civ 3
  enableCq(iommu, RAM, 4, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
  submit(iommu, mem, ILLEGAL);
  assert.deepEqual(calls, ["3=true"]);
  iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_CIP);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_IPSR), R.RISCV_IOMMU_IPSR_CIP, "cmd_ill still set");
  assert.deepEqual(calls, ["3=true"], "the level never dropped");
  iommu.write32(R.RISCV_IOMMU_REG_CQCSR, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CMD_ILL);
  iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_CIP);
  assert.deepEqual(calls, ["3=true", "3=false"]);
});

Deno.test("MSI: one message per ipsr 0→1 edge from msi_cfg_tbl; masked vectors stay pending", () => {
  const { iommu, mem } = make({}, { igs: IGS_MSI });
  const IMSIC = RAM + 0x20_0000;
  iommu.write64(R.RISCV_IOMMU_REG_ICVEC, 0x0010n); // fiv 1
  iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(1), BigInt(IMSIC));
  iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(1), 0);
  enableFq(iommu, RAM + 0x10_0000, 4, R.RISCV_IOMMU_FQCSR_FQEN | R.RISCV_IOMMU_FQCSR_FIE);
  const sent = () => {
    const v = mem.read32(IMSIC);
    mem.write32(IMSIC, 0);
    return v;
  };
  iommu.translate(...req());
  assert.equal(sent(), 0, "masked at reset: nothing sent");
  iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_DATA(1), 0x42);
  iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(1), 0);
  assert.equal(sent(), 0x42, "pending message sent on unmask");
  iommu.translate(...req());
  assert.equal(sent(), 0, "fip already 1: no edge");
  iommu.write32(R.RISCV_IOMMU_REG_IPSR, R.RISCV_IOMMU_IPSR_FIP);
  iommu.translate(...req());
  assert.equal(sent(), 0x42);
});

Deno.test("a faulting IOMMU MSI write logs cause 273 with TTYP 0 and iotval = msi_addr", () => {
  const { iommu, mem } = make({}, { igs: IGS_MSI });
  const FQ = RAM + 0x10_0000;
  enableFq(iommu, FQ, 4, R.RISCV_IOMMU_FQCSR_FQEN);
  iommu.write64(R.RISCV_IOMMU_REG_MSI_CFG_TBL_ADDR(0), 0x10_0000n); // nothing there
  iommu.write32(R.RISCV_IOMMU_REG_MSI_CFG_TBL_CTRL(0), 0);
  enableCq(iommu, RAM, 4, R.RISCV_IOMMU_CQCSR_CQEN | R.RISCV_IOMMU_CQCSR_CIE);
  submit(iommu, mem, ILLEGAL);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQT), 1);
  assert.equal(mem.read64(FQ), 273n);
  assert.equal(mem.read64(FQ + 16), 0x10_0000n);
});

// -- Debug translation interface --

Deno.test("debug interface: Go/Busy is RW1S and clears on completion; the request is built from tr_req_*", async (t) => {
  const run = (opts: Partial<IommuOptions>, ctl: bigint, iova = 0x1234_5000n) => {
    const { iommu } = make(opts);
    let seen: InboundRequest | undefined;
    iommu.translator.translate = (r, out) => {
      seen = { ...r };
      out.status = XLATE_OK;
      out.pa = 0x8765_4000;
      out.size = 4096;
      out.pbmt = 0;
    };
    iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_IOVA, iova | 0xfffn);
    iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_CTL, ctl);
    return { iommu, seen };
  };
  const GO = R.RISCV_IOMMU_TR_REQ_CTL_GO_BUSY;
  await t.step("fields", () => {
    const ctl = GO | R.RISCV_IOMMU_TR_REQ_CTL_PRIV | 0xabcdn << 12n | R.RISCV_IOMMU_TR_REQ_CTL_PV |
      0x12_3456n << 40n;
    const { iommu, seen } = run({}, ctl);
    assert.ok(seen);
    assert.deepEqual(
      [seen.deviceId, seen.pidValid, seen.pid, seen.priv, seen.access, seen.kind, seen.debug],
      [0x12_3456, true, 0xabcd, true, ACC_WRITE, 0, true],
    );
    assert.equal(iovaOf(seen), 0x1234_5000n, "bits 11:0 of tr_req_iova are reserved");
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_REQ_CTL), ctl & ~GO, "Go clears when done");
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_RESPONSE), 0x8765_4n << 10n);
  });
  await t.step("Priv is ignored without PV; NW=1 reads, NW=1 Exe=1 executes", () => {
    const a = run({}, GO | R.RISCV_IOMMU_TR_REQ_CTL_PRIV | 7n << 12n | R.RISCV_IOMMU_TR_REQ_CTL_NW);
    assert.deepEqual([a.seen?.priv, a.seen?.pid, a.seen?.access], [false, 0, ACC_READ]);
    const b = run({}, GO | R.RISCV_IOMMU_TR_REQ_CTL_EXE | R.RISCV_IOMMU_TR_REQ_CTL_NW);
    assert.equal(b.seen?.access, ACC_EXEC);
  });
  await t.step("Exe with NW=0 is legalised to Exe=0 (a read-write request)", () => {
    const { iommu, seen } = run({}, GO | R.RISCV_IOMMU_TR_REQ_CTL_EXE);
    assert.equal(seen?.access, ACC_WRITE);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_REQ_CTL), 0n);
  });
  await t.step("writing without Go runs nothing; busy reads 1 for trBusyPolls reads", () => {
    assert.equal(run({}, R.RISCV_IOMMU_TR_REQ_CTL_NW).seen, undefined);
    const { iommu } = run({ trBusyPolls: 1 }, GO);
    iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_CTL, 0n);
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_REQ_CTL), GO, "software cannot clear Busy");
    assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_REQ_CTL), 0n);
  });
});

Deno.test("tr_response: superpages report their true size with S=1; 4 KiB pages S=0; PBMT; fault", async (t) => {
  const respond = (pa: number, size: number, pbmt = 0, status: 0 | 1 = XLATE_OK) => {
    const { iommu } = make();
    iommu.translator.translate = (_r, out) => {
      Object.assign(out, { status, pa, size, pbmt, reported: false });
    };
    iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_CTL, R.RISCV_IOMMU_TR_REQ_CTL_GO_BUSY);
    return iommu.read64(R.RISCV_IOMMU_REG_TR_RESPONSE);
  };
  const S = R.RISCV_IOMMU_TR_RESPONSE_SZ;
  await t.step("2 MiB: PPN low bits 0_1111_1111", () => {
    assert.equal(respond(0x8040_0000 + 0x3000, 2 ** 21), (0x80400n | 0xffn) << 10n | S);
  });
  await t.step("64 KiB: PPN low bits 0111", () => {
    assert.equal(respond(0x8001_0000 + 0x5000, 2 ** 16), (0x80010n | 0x7n) << 10n | S);
  });
  await t.step("1 GiB", () => {
    assert.equal(respond(0xc000_0000 + 0x1234_5000, 2 ** 30), (0xc0000n | 0x1ffffn) << 10n | S);
  });
  await t.step("4 KiB: the page's own PPN and S=0; PBMT in bits 8:7", () => {
    assert.equal(respond(0x8040_3000, 4096, 2), 0x80403n << 10n | 2n << 7n);
  });
  await t.step("fault sets bit 0", () => {
    assert.equal(respond(0, 0, 0, 1), R.RISCV_IOMMU_TR_RESPONSE_FAULT);
  });
});

Deno.test("debug interface faults are logged in the fault queue like any other", () => {
  const { iommu, mem } = make(); // ddtp Off: every request faults with cause 256
  const FQ = RAM + 0x10_0000;
  enableFq(iommu, FQ);
  iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_IOVA, 0x5000n);
  iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_CTL, 1n | 9n << 40n);
  assert.equal(iommu.read64(R.RISCV_IOMMU_REG_TR_RESPONSE) & 1n, 1n);
  assert.equal(iommu.read32(R.RISCV_IOMMU_REG_FQT), 1);
  assert.equal(mem.read64(FQ) & 0xfffn, 256n);
});

Deno.test("debug interface end to end: a 2 MiB Sv39 leaf reports S=1 and its range; a 4 KiB leaf its page", () => {
  const { iommu, mem } = make({}, { msiFlat: true });
  const DDT = RAM, ROOT = RAM + 0x1000, L1 = RAM + 0x2000, L0 = RAM + 0x3000;
  const ptr = (pa: number) => BigInt(pa / 4096) << 10n | 1n;
  mem.write64(DDT + 64, 1n); // device 1: extended DC, tc.V
  mem.write64(DDT + 64 + 0x18, 8n << 60n | BigInt(ROOT / 4096)); // fsc: Sv39
  mem.write64(ROOT, ptr(L1));
  mem.write64(L1 + 8, 0x80400n << 10n | 0xd7n); // VPN[1]=1: 2 MiB leaf at 0x8040_0000
  mem.write64(L1 + 16, ptr(L0));
  mem.write64(L0 + 5 * 8, 0x80555n << 10n | 0xd7n); // 0x40_5000 → 0x8055_5000
  iommu.write64(R.RISCV_IOMMU_REG_DDTP, BigInt(DDT / 4096) << 10n | 2n);
  const probe = (iova: bigint) => {
    iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_IOVA, iova);
    iommu.write64(R.RISCV_IOMMU_REG_TR_REQ_CTL, 1n | R.RISCV_IOMMU_TR_REQ_CTL_NW | 1n << 40n);
    return iommu.read64(R.RISCV_IOMMU_REG_TR_RESPONSE);
  };
  assert.equal(probe(0x20_3000n), (0x80400n | 0xffn) << 10n | R.RISCV_IOMMU_TR_RESPONSE_SZ);
  assert.equal(probe(0x40_5000n), 0x80555n << 10n);
  assert.equal(probe(0x60_0000n) & 1n, 1n, "unmapped: fault");
});
