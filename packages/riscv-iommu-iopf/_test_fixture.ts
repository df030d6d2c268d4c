/**
 * Test fixtures of the series (kernel fixtures and the base driver's fake IOMMU, no silicon): a
 * system running `iopf()` on the fake, PCI functions with ATS, PRI and PASID capabilities behind
 * it, page-request records and the decoding of the ATS commands. Numbers come from the PCIe and
 * RISC-V IOMMU specifications, not from the driver's definitions.
 *
 * @module
 */
import {
  IOMMU_FWSPEC_PCI_RC_ATS,
  pci_dev_id,
  pci_driver_init,
  pci_host_probe,
  type PciConfigAccessor,
  type PciDev,
} from "@iommu-lab/kernel";
import {
  CAP,
  FAKE_IOMMU_CAPS,
  type FakeCommand,
  type TestSystem,
  testSystem,
  type TestSystemOptions,
} from "@iommu-lab/riscv-iommu/testing";
import { iopf } from "./mod.ts";

/** Options of {@linkcode iopfSystem}. */
export interface IopfSystemOptions extends TestSystemOptions {
  /** Page-request queue entries of the series (default its 4096). */
  pqCount?: number;
}

/**
 * The base driver's test system running the series, on an IOMMU with ATS and PD8 by default,
 * in a kernel with a PCI bus.
 */
export function iopfSystem(opts: IopfSystemOptions = {}): TestSystem {
  return testSystem({
    caps: FAKE_IOMMU_CAPS | CAP.ATS | CAP.PD8,
    features: [iopf({ pqCount: opts.pqCount })],
    initcalls: [pci_driver_init],
    ...opts,
  });
}

/** Lets interrupts and queued work run (the CPU idles a few microseconds). */
export function settle(sys: TestSystem): void {
  for (let i = 0; i < 4; i++) sys.kernel.clock.advance(1000);
}

/** One function's configuration space: values, writable bits and RW1C bits per dword. */
class FunctionConfig implements PciConfigAccessor {
  readonly v = new Uint32Array(1024);
  readonly wmask = new Uint32Array(1024);
  readonly w1c = new Uint32Array(1024);

  constructor(readonly devfn: number) {}

  read32(bus: number, devfn: number, where: number): number {
    return bus === 0 && devfn === this.devfn ? this.v[where >> 2] : 0xffff_ffff;
  }

  write32(bus: number, devfn: number, where: number, x: number): void {
    if (bus !== 0 || devfn !== this.devfn) return;
    const i = where >> 2;
    const kept = this.v[i] & ~this.wmask[i];
    this.v[i] = ((kept | (x & this.wmask[i] & ~this.w1c[i])) & ~(x & this.w1c[i])) >>> 0;
  }

  /** Sets `bits` bits at byte offset `off` with their writable and RW1C masks. */
  set(off: number, bits: 8 | 16 | 32, value: number, wmask = 0, w1c = 0): this {
    const i = off >> 2;
    const sh = (off & 3) * 8;
    const m = (bits === 32 ? 0xffff_ffff : (1 << bits) - 1) << sh;
    this.v[i] = ((this.v[i] & ~m) | ((value << sh) & m)) >>> 0;
    this.wmask[i] = ((this.wmask[i] & ~m) | ((wmask << sh) & m)) >>> 0;
    this.w1c[i] = ((this.w1c[i] & ~m) | ((w1c << sh) & m)) >>> 0;
    return this;
  }

  /** A 16-bit register of an extended capability. */
  word(off: number): number {
    return (this.v[off >> 2] >>> ((off & 2) * 8)) & 0xffff;
  }
}

/** Options of {@linkcode pciEndpoint}. */
export interface EndpointOptions {
  /** Device and function 0 of a slot (default 0x08, 00:01.0); the requester ID is the device ID. */
  devfn?: number;
  /** An ATS capability (default true). */
  ats?: boolean;
  /** A PRI capability (default true). */
  pri?: boolean;
  /** PASID width of a PASID capability (default 8; 0 for none). */
  pasidBits?: number;
  /** PRI status "PRG Response PASID Required" (default true). */
  prgPasid?: boolean;
  /** The root complex supports ATS (the fwspec flag; default true). */
  rcAts?: boolean;
}

/** A PCI function of the fixture and its configuration space. */
export interface Endpoint {
  /** The function, probed onto the IOMMU. */
  readonly pdev: PciDev;
  /** Its configuration space. */
  readonly cfg: FunctionConfig;
  /** Its device ID on the IOMMU. */
  readonly devid: number;
  /** Offsets of its ATS, PRI and PASID capabilities (0 for those it lacks). */
  readonly caps: { readonly ats: number; readonly pri: number; readonly pasid: number };
}

/**
 * A PCIe function (a PCIe capability, then the extended capabilities asked for: ATS, PRI,
 * PASID from 0x100) on a host bridge of its own, probed onto `sys`'s IOMMU as the PCI bus would with
 * `iommu-map` (device ID = requester ID).
 */
export function pciEndpoint(sys: TestSystem, opts: EndpointOptions = {}): Endpoint {
  const devfn = opts.devfn ?? 0x08;
  const cfg = new FunctionConfig(devfn);
  cfg.set(0, 16, 0x1234).set(2, 16, 0xabcd).set(0x04, 16, 0, 0x0407);
  cfg.set(0x06, 16, 0x10).set(0x08, 32, 0xff00_0001).set(0x34, 8, 0x40);
  cfg.set(0x40, 8, 0x10); // PCI Express capability, last in the list
  // Extended capabilities from 0x100, 0x10 apart, each pointing at the next.
  const ext: ((at: number, next: number) => void)[] = [];
  const caps = { ats: 0, pri: 0, pasid: 0 };
  const at = () => 0x100 + 0x10 * ext.length;
  if (opts.ats ?? true) {
    caps.ats = at();
    ext.push((o, next) => {
      cfg.set(o, 32, (next << 20 | 1 << 16 | 0x0f) >>> 0);
      cfg.set(o + 4, 16, 0x20 | 8).set(o + 6, 16, 0, 0x801f);
    });
  }
  if (opts.pri ?? true) {
    caps.pri = at();
    ext.push((o, next) => {
      cfg.set(o, 32, (next << 20 | 1 << 16 | 0x13) >>> 0);
      const status = 0x100 | ((opts.prgPasid ?? true) ? 0x8000 : 0);
      cfg.set(o + 4, 16, 0, 0x3).set(o + 6, 16, status, 0, 0x3);
      cfg.set(o + 8, 32, 64).set(o + 12, 32, 0, 0xffff_ffff);
    });
  }
  const bits = opts.pasidBits ?? 8;
  if (bits > 0) {
    caps.pasid = at();
    ext.push((o, next) => {
      cfg.set(o, 32, (next << 20 | 1 << 16 | 0x1b) >>> 0);
      cfg.set(o + 4, 16, bits << 8 | 0x2).set(o + 6, 16, 0, 0x7);
    });
  }
  ext.forEach((write, i) => write(0x100 + 0x10 * i, i + 1 < ext.length ? 0x110 + 0x10 * i : 0));
  const host = pci_host_probe(sys.kernel, { accessor: cfg });
  const pdev = host.devices[0];
  const devid = pci_dev_id(pdev);
  pdev.fwspec = {
    fwnode: sys.fwnode,
    ids: [devid],
    flags: (opts.rcAts ?? true) ? IOMMU_FWSPEC_PCI_RC_ATS : 0,
  };
  sys.kernel.iommuLayer!.probeDevice(pdev);
  return { pdev, cfg, devid, caps };
}

/** A page-request record (RISC-V IOMMU spec v1.0, §3.3): header and payload doublewords. */
export function pqRecord(r: {
  did: number;
  pasid?: number;
  priv?: boolean;
  exec?: boolean;
  read?: boolean;
  write?: boolean;
  last?: boolean;
  prgi: number;
  addr: number;
}): bigint[] {
  let hdr = BigInt(r.did) << 40n;
  if (r.pasid !== undefined) hdr |= BigInt(r.pasid) << 12n | 1n << 32n;
  if (r.priv) hdr |= 1n << 33n;
  if (r.exec) hdr |= 1n << 34n;
  const payload = BigInt(r.addr) & ~0xfffn | BigInt(r.prgi) << 3n |
    (r.last ? 4n : 0n) | (r.write ? 2n : 0n) | (r.read ? 1n : 0n);
  return [hdr, payload];
}

/** An ATS.PRGR as the spec lays it out (RISC-V IOMMU spec v1.0, §3.1.4), or null. */
export function decodePrgr(c: FakeCommand): {
  rid: number;
  dseg: number | null;
  pasid: number | null;
  prgi: number;
  code: number;
  dst: number;
} | null {
  const d0 = c.dword0;
  const d1 = c.dword1;
  if ((d0 & 0x7fn) !== 4n || (d0 >> 7n & 7n) !== 1n) return null;
  return {
    rid: Number(d0 >> 40n & 0xffffn),
    dseg: d0 >> 33n & 1n ? Number(d0 >> 56n) : null,
    pasid: d0 >> 32n & 1n ? Number(d0 >> 12n & 0xfffffn) : null,
    prgi: Number(d1 >> 32n & 0x1ffn),
    code: Number(d1 >> 44n & 0xfn),
    dst: Number(d1 >> 48n),
  };
}
