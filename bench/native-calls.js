'use strict'
// The cost of one memory:// read or write at the native boundary, without JSON or
// promises: the NativeCache methods (getSync/setSync), the plain functions index.js
// uses (localFunctions), and lru-cache's get/set for scale. W4's keys and ~1 KB values.
//
//   node bench/native-calls.js       (NAPI_RS_NATIVE_LIBRARY_PATH picks the addon build)

const { NativeCache } = require('../binding.js')
const { LRUCache } = require('lru-cache')
const { sessionValue, sessionIds } = require('./workloads')

const ids = sessionIds(10_000)
const jsons = ids.map((id) => JSON.stringify(sessionValue(id, 1)))
const native = new NativeCache({ url: 'memory://' })
const local = native.localFunctions()
const lru = new LRUCache({ max: 100_000, ttl: 3600_000 })
for (let i = 0; i < ids.length; i++) {
  local.set(0, ids[i], jsons[i], 3600)
  lru.set(ids[i], jsons[i], { ttl: 3600_000 })
}

let seed = 12345
const next = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff
  return seed % ids.length
}

/** Best of 5 runs of 300,000 calls, in ns per call. */
function time(name, fn) {
  let best = Infinity
  for (let r = 0; r < 5; r++) {
    const n = 300_000
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) fn()
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n)
  }
  console.log(`${name.padEnd(34)} ${best.toFixed(0).padStart(6)} ns`)
}

const miss = ids.map((k) => `${k}-missing`)
time('getSync (method), hit', () => native.getSync(0, ids[next()]))
time('local.get, hit', () => local.get(0, ids[next()]))
time('local.get, miss', () => local.get(0, miss[next()]))
time('lru.get, hit', () => lru.get(ids[next()]))
time('setSync (method), 1 KB', () => {
  const k = next()
  native.setSync(0, ids[k], jsons[k], 3600)
})
time('local.set, 1 KB', () => {
  const k = next()
  local.set(0, ids[k], jsons[k], 3600)
})
time('local.set, "1"', () => local.set(1, ids[next()], '1', 3600))
time('lru.set, 1 KB', () => {
  const k = next()
  lru.set(ids[k], jsons[k], { ttl: 3600_000 })
})
time('memoryOnly (a getter, no arguments)', () => native.memoryOnly)
native.close()
