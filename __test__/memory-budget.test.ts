// The in-process store's byte budget holds for the process, not only for its own
// accounting: filled with three times its budget, the RSS outside the JS heap grows
// by at most the budget plus the documented margin (README: 5 % + 6 MiB), for plain
// and tenant entries (bench/memory-overhead.js measures the same in detail).

import { runNode } from './helpers/child'

const BUDGET_MIB = 64
const MARGIN = { factor: 1.05, fixedMiB: 6 }

describe.each(['sessions', 'tenants'])('fill to capacity (%s)', (mode) => {
  it(`RSS outside the JS heap grows by at most ${BUDGET_MIB} MiB x ${MARGIN.factor} + ${MARGIN.fixedMiB} MiB`, async () => {
    const script = `require('./bench/memory-overhead.js').measure(${BUDGET_MIB}, '${mode}').then((r) => console.log(JSON.stringify(r)))`
    const run = await runNode(script, { env: { NODE_OPTIONS: '--expose-gc' }, deadlineMs: 60_000 })
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const r = JSON.parse(run.stdout)
    expect(r.chargedMiB).toBeLessThanOrEqual(BUDGET_MIB) // the store's own accounting
    expect(r.held).toBeGreaterThan(0.9 * ((BUDGET_MIB * 1024 * 1024) / r.chargedBytesPerEntry)) // it did fill up
    expect(r.rssGrowthMiB).toBeLessThanOrEqual(BUDGET_MIB * MARGIN.factor + MARGIN.fixedMiB)
  }, 90_000)
})
