// The napi boundary itself: Rust panics never abort Node (the test hooks are compiled only
// into the test build, target/test-hooks, and never into the published binary), and a call
// with arguments of the wrong type gets a coded error instead of crashing.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { createCacheManager } from '..'

const root = path.resolve(__dirname, '..')
const HOOKS = path.join(root, 'target', 'test-hooks', 'ferrocache.linux-x64-gnu.node')

/** Runs `script` in a child process on the test build (its panics' stderr stays out of Jest's). */
function withHooks(script: string) {
  return spawnSync(process.execPath, ['-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 10000,
    env: { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: HOOKS },
  })
}

describe('native boundary', () => {
  it('turns a panic in a synchronous native call into a thrown Error', () => {
    const r = withHooks(`
      const b = require('./binding.js')
      try { b.__panicForTests(); console.log('no throw') }
      catch (e) { console.log('caught', e instanceof Error, String(e.message).includes('test panic (sync)')) }
      console.log('alive')`)
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('caught true true')
    expect(r.stdout).toContain('alive')
  })

  it('turns a panic in an async native call into a rejected promise', () => {
    const r = withHooks(`
      const b = require('./binding.js')
      b.__asyncPanicForTests().then(
        () => console.log('resolved'),
        (e) => console.log('rejected', e instanceof Error, String(e.message).includes('test panic (async)')),
      ).finally(() => console.log('alive'))`)
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('rejected true true')
    expect(r.stdout).toContain('alive')
  })

  it('turns a panic inside the submit function into an Error answer', () => {
    const r = withHooks(`
      const b = require('./binding.js')
      const f = b.__submitPanicForTests(new b.NativeCache({ url: 'memory://' }))
      const answer = f()
      console.log('answered', answer instanceof Error, String(answer && answer.message).includes('test panic (submit)'))
      console.log('alive')`)
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('answered true true')
    expect(r.stdout).toContain('alive')
  })

  it('the published build has no test hooks', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const b = require('../binding.js')
    expect(b.__panicForTests).toBeUndefined()
    expect(b.__submitPanicForTests).toBeUndefined()
  })

  it('submit answers arguments of the wrong type with a coded error, and the cache goes on', async () => {
    const m = createCacheManager({ url: 'memory://' })
    const native = (
      m as unknown as { _native(): { submitFunction(slot: Float64Array): (...args: unknown[]) => unknown } }
    )._native()
    const submit = native.submitFunction(new Float64Array(5))
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Call } = require('../binding.js')
    expect(submit(99, 'k')).toMatchObject({ code: 'InvalidArg' })
    expect(submit(Call.GetSession, 5)).toMatchObject({ code: 'StringExpected' })
    expect(submit(Call.SetSession, 'k', undefined, '"v"', 'soon')).toMatchObject({ code: 'NumberExpected' })
    expect(submit(Call.SetSession, 'k', undefined, '"v"')).toBeNull()
    expect(submit(Call.GetSession, 'k')).toBe('"v"')
    expect(submit(Call.GetSession, 'k', 'tenant')).toBeNull()
    await expect(m.getSession('k')).resolves.toBe('v')
    await m.close()
    expect(submit(Call.GetSession, 'k')).toMatchObject({ code: 'ERR_CLOSED' })
  })
})
