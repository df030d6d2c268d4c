/**
 * Test fixtures for the PCIe model: a scriptable translation port and a small machine (RAM, clock,
 * root complex) to attach functions to.
 *
 * @module
 */
import { Clock } from "../clock.ts";
import { PhysicalMemory } from "../memory.ts";
import {
  ACC_WRITE,
  CPL_UR,
  type InboundRequest,
  iovaOf,
  REQ_ATS,
  REQ_TRANSLATED,
  type TranslationPort,
  type TranslationResult,
  XLATE_FAULT,
  XLATE_OK,
} from "../iommu/request.ts";
import { RootComplex } from "./root_complex.ts";
import { TEST_RAM_BASE } from "../iommu/testing.ts";

/** One transaction as {@linkcode TestTranslationPort} saw it. */
export interface SeenRequest {
  /** The requester's device_id. */
  deviceId: number;
  /** REQ_UNTRANSLATED, REQ_TRANSLATED or REQ_ATS. */
  kind: number;
  /** ACC_READ, ACC_WRITE or ACC_EXEC. */
  access: number;
  /** The address asked for. */
  iova: number;
  /** The process_id, or -1 without one. */
  pid: number;
}

/**
 * A translation port that maps IOVA page `p` to `TEST_RAM_BASE + offset + p * 4096`, faults the
 * pages
 * in {@linkcode faultPages} (cause 13 for reads, 15 for writes), grants read-only access to
 * {@linkcode readOnlyPages}, and records every request.
 */
export class TestTranslationPort implements TranslationPort {
  /** Added to the IOVA (beyond {@linkcode TEST_RAM_BASE}) to make the physical address. */
  offset = 0x100_0000;
  /** IOVA page numbers that fault. */
  readonly faultPages: Set<number> = new Set();
  /** IOVA page numbers that are read-only. */
  readonly readOnlyPages: Set<number> = new Set();
  /** Every request seen. */
  readonly seen: SeenRequest[] = [];
  /** Size reported in ATS completions. */
  atsSize = 4096;

  /** Answers `req` per the rules above. */
  translate(req: InboundRequest, res: TranslationResult): void {
    const iova = Number(iovaOf(req));
    this.seen.push({
      deviceId: req.deviceId,
      kind: req.kind,
      access: req.access,
      iova,
      pid: req.pidValid ? req.pid : -1,
    });
    res.untranslatedOnly = false;
    res.global = false;
    res.size = 4096;
    if (req.kind === REQ_TRANSLATED) {
      res.status = XLATE_OK;
      res.pa = iova;
      res.perm = 3;
      return;
    }
    const page = Math.floor(iova / 4096);
    const write = req.access === ACC_WRITE;
    const ro = this.readOnlyPages.has(page);
    if (req.kind === REQ_ATS) {
      // Page faults answer ATS with Success and no permission (spec §2.6 "PCIe ATS translation
      // request handling").
      res.status = XLATE_OK;
      res.perm = this.faultPages.has(page) ? 0 : ro ? 1 : 3;
      res.pa = TEST_RAM_BASE + this.offset + iova - (iova % this.atsSize);
      res.size = this.atsSize;
      return;
    }
    if (this.faultPages.has(page) || (write && ro)) {
      res.status = XLATE_FAULT;
      res.cause = write ? 15 : 13;
      res.completion = CPL_UR;
      return;
    }
    res.status = XLATE_OK;
    res.pa = TEST_RAM_BASE + this.offset + iova;
    res.perm = ro ? 1 : 3;
  }
}

/** What {@linkcode testPcieRig} builds. */
export interface TestPcieRig {
  /** The bus, with 1 GiB of RAM at {@linkcode TEST_RAM_BASE}. */
  mem: PhysicalMemory;
  /** The rig's clock. */
  clock: Clock;
  /** The translation port every inbound transaction goes through. */
  port: TestTranslationPort;
  /** The root complex to attach functions to. */
  rc: RootComplex;
}

/**
 * RAM (1 GiB at {@linkcode TEST_RAM_BASE}), a clock, a {@linkcode TestTranslationPort} and a root
 * complex.
 */
export function testPcieRig(): TestPcieRig {
  const mem = new PhysicalMemory();
  mem.addRam(TEST_RAM_BASE, 2 ** 30);
  const clock = new Clock();
  const port = new TestTranslationPort();
  const rc = new RootComplex({ mem, clock, translator: port });
  return { mem, clock, port, rc };
}
