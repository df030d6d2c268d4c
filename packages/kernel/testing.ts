/**
 * Fixtures for software-side tests (`@iommu-lab/kernel/testing`).
 *
 * @module
 */
export { FailNthSteps, failNthSweep } from "./fail_nth_testing.ts";
export { TestRam } from "./test_ram.ts";
