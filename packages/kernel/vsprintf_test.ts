import assert from "node:assert/strict";
import {
  bus_range_string,
  hex,
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
  resource_string,
  string_get_size,
} from "./mod.ts";

Deno.test("hex(): %#x, %0Nx and %#0Nx, exact above 2^32 and for bigints", () => {
  assert.equal(hex(0), "0x0");
  assert.equal(hex(255, 4, ""), "00ff");
  assert.equal(hex(0x1_0000_0000, 10), "0x0100000000");
  assert.equal(hex(2 ** 53 - 1), "0x1fffffffffffff");
  assert.equal(hex(2n ** 64n - 1n), "0xffffffffffffffff");
  assert.equal(hex(-16), "-0x10");
});

Deno.test("resource_string()/bus_range_string() print as %pR does", () => {
  assert.equal(
    resource_string(
      0x4000_0000,
      0x4000_3fff,
      IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_PREFETCH,
    ),
    "[mem 0x40000000-0x40003fff 64bit pref]",
  );
  assert.equal(resource_string(0, 0x1f, IORESOURCE_IO), "[io  0x0000-0x001f]");
  assert.equal(bus_range_string([0, 0xff]), "[bus 00-ff]");
});

Deno.test("string_get_size(): three significant digits in binary units", () => {
  for (
    const [n, s] of [
      [0, "0 B"],
      [1023, "1023 B"],
      [1024, "1.00 KiB"],
      [16384, "16.0 KiB"],
      [100 * 1024, "100 KiB"],
      [64 << 20, "64.0 MiB"],
      [3 * 2 ** 30 / 2, "1.50 GiB"],
    ] as const
  ) assert.equal(string_get_size(n), s, `${n}`);
});
