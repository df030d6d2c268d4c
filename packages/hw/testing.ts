/**
 * Test fixtures of the silicon (`@iommu-lab/hw/testing`): builders that write the IOMMU's
 * in-memory structures as raw encodings (device and process directories, page tables of every
 * scheme, MSI page tables), a ready-made translation environment, and a PCIe rig with a
 * scriptable translation port. They use nothing but the silicon, so tests of `hw` never depend
 * on the software half.
 *
 * One naming convention: `test*()` builds a ready-made fixture or runs one step of one
 * (`testIommuEnv()`, `testPcieRig()`, `testRequest()`, `testTranslate()`, `testWrite64()`);
 * `Test*` classes stand in for a real part (`TestPageAllocator`, `TestTranslationPort`);
 * `*Builder` classes write one kind of in-memory structure; `encode*()` return one register or
 * structure field; `TEST_*` are the fixtures' constants.
 *
 * @example Translating through a first-stage Sv39 table
 * ```ts
 * import assert from "node:assert/strict";
 * import { XLATE_OK } from "@iommu-lab/hw";
 * import {
 *   encodeAtp,
 *   encodeDcTa,
 *   PageTableBuilder,
 *   testIommuEnv,
 *   testRequest,
 *   testTranslate,
 * } from "@iommu-lab/hw/testing";
 *
 * const env = testIommuEnv();
 * const pt = new PageTableBuilder(env.mem, env.alloc, "sv39");
 * pt.map(0x1000, 0x9000_0000);
 * env.ddt.set(7, { ta: encodeDcTa(1), fsc: encodeAtp(8, pt.root) });
 * const res = testTranslate(env.tr, testRequest(7, 0x1234));
 * assert.equal(res.status, XLATE_OK);
 * assert.equal(res.pa, 0x9000_0234);
 * ```
 *
 * @module
 */
export {
  type DcFields,
  DdtBuilder,
  encodeAtp,
  encodeDcTa,
  encodeIohgatp,
  encodePcTa,
  type MapOptions,
  PageTableBuilder,
  type PageTableScheme,
  PdtBuilder,
  TEST_PTE_RW_USER,
  TEST_RAM_BASE,
  TEST_RAM_SIZE,
  type TestIommuDevice,
  testIommuDevice,
  type TestIommuEnv,
  testIommuEnv,
  TestPageAllocator,
  testRequest,
  testTranslate,
  testWrite64,
} from "./iommu/testing.ts";
export {
  type SeenRequest,
  type TestPcieRig,
  testPcieRig,
  TestTranslationPort,
} from "./pcie/testing.ts";
