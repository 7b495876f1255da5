// The napi boundary itself: Rust panics never abort Node, and values written by
// other clients at our keys are reported with a code instead of crashing a read.
import { spawnSync } from 'node:child_process'
import path from 'node:path'

const root = path.resolve(__dirname, '..')

describe('native boundary', () => {
  it('turns a panic in a synchronous native call into a thrown Error', () => {
    // in a child process, so that the panic message on stderr stays out of the Jest output
    const script = `
      const b = require('./binding.js')
      try { b.__panicForTests(); console.log('no throw') }
      catch (e) { console.log('caught', e instanceof Error, String(e.message).includes('test panic (sync)')) }
      console.log('alive')`
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: 10000 })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('caught true true')
    expect(r.stdout).toContain('alive')
  })

  it('turns a panic in an async native call into a rejected promise', () => {
    const script = `
      const b = require('./binding.js')
      b.__asyncPanicForTests().then(
        () => console.log('resolved'),
        (e) => console.log('rejected', e instanceof Error, String(e.message).includes('test panic (async)')),
      ).finally(() => console.log('alive'))`
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: 10000 })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('rejected true true')
    expect(r.stdout).toContain('alive')
  })
})
