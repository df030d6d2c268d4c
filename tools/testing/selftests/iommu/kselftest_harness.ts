/**
 * A small analog of tools/testing/selftests/kselftest_harness.h, so the iommufd selftests keep
 * Linux's shapes and names: FIXTURE() with setup/teardown, FIXTURE_VARIANT_ADD(), TEST_F(), and
 * TEST_HARNESS_MAIN() registering one `Deno.test` per fixture variant (named
 * `fixture.variant`) with one step per TEST_F (named as in Linux). Every test gets a fresh
 * `self` and a fresh setup, as kselftest runs each in a child process; teardown runs even when
 * the test fails.
 *
 * @module
 */

/** One variant of a fixture. */
export interface VariantEntry<V> {
  /** Variant name (FIXTURE_VARIANT_ADD's second argument). */
  readonly name: string;
  /** The variant's values. */
  readonly variant: V;
}

/** A fixture: its setup and teardown, variants and tests. */
export interface Fixture<S, V> {
  /** Fixture name. */
  readonly name: string;
  /** FIXTURE_SETUP: fills a fresh `self`. */
  setup(self: S, variant: V): void;
  /** FIXTURE_TEARDOWN: runs after every test, failed or not. */
  teardown(self: S, variant: V): void;
  /** FIXTURE_VARIANT_ADD entries (one unnamed variant when none is added). */
  readonly variants: VariantEntry<V>[];
  /** TEST_F entries. */
  readonly tests: TestEntry<S, V>[];
}

/** One TEST_F. */
export interface TestEntry<S, V> {
  /** Test name. */
  readonly name: string;
  /** The test body. */
  fn(self: S, variant: V): void;
}

/** FIXTURE + FIXTURE_SETUP + FIXTURE_TEARDOWN: declares a fixture. */
export function FIXTURE<S, V = Record<string, never>>(
  name: string,
  setup: (self: S, variant: V) => void,
  teardown: (self: S, variant: V) => void,
): Fixture<S, V> {
  return { name, setup, teardown, variants: [], tests: [] };
}

/** FIXTURE_VARIANT_ADD: adds a named variant. */
export function FIXTURE_VARIANT_ADD<S, V>(
  f: Fixture<S, V>,
  name: string,
  variant: V,
): void {
  f.variants.push({ name, variant });
}

/** TEST_F: adds a test run once per variant. */
export function TEST_F<S, V>(
  f: Fixture<S, V>,
  name: string,
  fn: (self: S, variant: V) => void,
): void {
  f.tests.push({ name, fn });
}

/** Runs one test of `f` in `variant`: fresh self, setup, the test, teardown. */
export function run_test<S, V>(
  f: Fixture<S, V>,
  variant: V,
  fn: (self: S, variant: V) => void,
): void {
  const self = {} as S;
  f.setup(self, variant);
  try {
    fn(self, variant);
  } catch (e) {
    // A teardown failure must not hide the test's own.
    try {
      f.teardown(self, variant);
    } catch { /* the test's failure is the one to report */ }
    throw e;
  }
  f.teardown(self, variant);
}

/** TEST_HARNESS_MAIN: registers every variant of every fixture with Deno's test runner. */
export function TEST_HARNESS_MAIN(...fixtures: Fixture<unknown, unknown>[]): void {
  for (const f of fixtures) {
    const variants = f.variants.length !== 0 ? f.variants : [{ name: "", variant: {} }];
    for (const v of variants as VariantEntry<unknown>[]) {
      Deno.test(v.name === "" ? f.name : `${f.name}.${v.name}`, async (t) => {
        for (const test of f.tests) {
          await t.step(test.name, () => run_test(f, v.variant, test.fn));
        }
      });
    }
  }
}
