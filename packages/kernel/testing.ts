/**
 * Fixtures for software-side tests (`@iommu-lab/kernel/testing`).
 *
 * @module
 */
export { TestRam } from "./test_ram.ts";
