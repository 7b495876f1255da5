// The published Keyv compliance suite (@keyv/test-suite 2.1.2, unmodified) against
// ferrocache/keyv, in memory mode (memory://) and against a private redis-server
// started here (never the shared 6379): with Keyv 5 (the suite's own peer, what
// cache-manager 7 and cacheable use) and with Keyv 6 (current on npm).

import * as fs from 'fs'
import Keyv from 'keyv'
import { Keyv as Keyv6 } from 'keyv6'
import { createCacheManager, CacheManager } from '..'
import { KeyvFerrocache } from '../lib/keyv'
import { keyvTestSuite } from './helpers/keyv-suite'
import { RedisServer, startRedis, uniquePrefix } from './helpers/redis-server'

let server: RedisServer | null = null
const managers: CacheManager[] = []

beforeAll(async () => {
  server = await startRedis()
})
afterAll(async () => {
  await Promise.all(managers.map((m) => m.close()))
  if (server) await server.stop()
})

/** A store factory over one manager per describe (made on first use: the server starts in beforeAll). */
function stores(url: () => string): () => KeyvFerrocache {
  let manager: CacheManager | null = null
  return () => {
    if (manager === null) {
      manager = createCacheManager({ url: url(), keyPrefix: uniquePrefix('keyv-suite') })
      managers.push(manager)
    }
    return new KeyvFerrocache({ manager })
  }
}

const memory = () => 'memory://'
const redis = () => server!.url

// Keyv 6 returns one boolean per key from delete([keys]) (Keyv 5: one boolean), so the
// suite's `toBeFalsy()` on [false, false, false] fails with any store under Keyv 6,
// its own in-memory one included (asserted in keyv-store.test.ts).
const KEYV6_MISMATCH = {
  '.deleteMany([keys]) with nonexistent keys resolves to false': 'Keyv 6 resolves delete([keys]) to boolean[]',
}

describe('@keyv/test-suite, Keyv 5, memory://', () => {
  keyvTestSuite(Keyv, stores(memory))
})

describe('@keyv/test-suite, Keyv 5, Redis', () => {
  keyvTestSuite(Keyv, stores(redis))
})

describe('@keyv/test-suite, Keyv 6, memory://', () => {
  keyvTestSuite(Keyv6, stores(memory), KEYV6_MISMATCH)
})

describe('@keyv/test-suite, Keyv 6, Redis', () => {
  keyvTestSuite(Keyv6, stores(redis), KEYV6_MISMATCH)
})

describe('@keyv/test-suite install', () => {
  it('never loads the dependencies replaced by empty packages (sqlite3, vitest, @vitest/coverage-v8)', () => {
    const dist = fs.readFileSync(require.resolve('@keyv/test-suite'), 'utf8')
    const required = [...dist.matchAll(/require\(["']([^"']+)["']\)/g)].map((m) => m[1]).sort()
    expect(required).toEqual(['bignumber.js', 'buffer', 'json-bigint', 'keyv', 'timekeeper'])
  })
})
