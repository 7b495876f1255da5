// Runs the published Keyv compliance suite (@keyv/test-suite, written for vitest)
// unmodified under Jest: its functions take a vitest-like object with
// it/beforeEach/afterEach and call `t.expect`; this maps that object onto Jest's
// globals. Nothing of the suite is copied or edited.
//
// The suite's own type declarations import `vitest`, which this project does not
// install (see docs/decisions.md), so it is loaded with require() and typed here.

/** The context a suite test receives (vitest's `TestContext`, as far as the suite uses it). */
interface SuiteContext {
  expect: typeof expect
}

/** The part of vitest's API the suite calls. */
interface VitestLike {
  it(name: string, fn: (t: SuiteContext) => unknown): void
  beforeEach(fn: () => unknown): void
  afterEach(fn: () => unknown): void
}

type SuiteFn = (test: VitestLike, Keyv: unknown, store: () => unknown) => void

// eslint-disable-next-line @typescript-eslint/no-require-imports
const suite: { default: SuiteFn } = require('@keyv/test-suite')

export interface SuiteRun {
  /** Tests the suite registered. */
  registered: number
  /** Tests that ran to completion (passed, or failed as `expectFailure` says). */
  completed: number
}

/**
 * Registers every test of `@keyv/test-suite`'s default export (api, values, namespace)
 * in the current describe, for `Keyv` over stores made by `store`, and one last test
 * asserting that all of them ran. A test named in `expectFailure` is still run, and
 * must fail (its reason is in its name): nothing is skipped.
 */
export function keyvTestSuite(
  Keyv: unknown,
  store: () => unknown,
  expectFailure: Record<string, string> = {},
): SuiteRun {
  const run: SuiteRun = { registered: 0, completed: 0 }
  const expected = new Set(Object.keys(expectFailure))
  const jestLike: VitestLike = {
    it(name, fn) {
      run.registered += 1
      // Jest reads a test function with a parameter as taking `done`: wrap it.
      if (expected.has(name)) {
        expected.delete(name)
        it(`${name} [fails by design: ${expectFailure[name]}]`, async () => {
          await expect((async () => fn({ expect }))()).rejects.toThrow()
          run.completed += 1
        })
      } else {
        it(name, async () => {
          await fn({ expect })
          run.completed += 1
        })
      }
    },
    beforeEach: (fn) => beforeEach(async () => void (await fn())),
    afterEach: (fn) => afterEach(async () => void (await fn())),
  }
  suite.default(jestLike, Keyv, store)
  const unknown = [...expected]
  it('ran every test of @keyv/test-suite', () => {
    expect(unknown).toEqual([]) // every expected failure names a real test
    expect(run.registered).toBeGreaterThan(0)
    expect(run.completed).toBe(run.registered)
  })
  return run
}
