'use strict'
// Every contender behind the same tiny interface, each used the way its users
// use it: set(key, value, ttlSeconds) and get(key) -> value | null | undefined.
// JSON is done where a user would do it (ioredis/node-redis: JSON.stringify on
// write, JSON.parse on read; cache-manager/Keyv, bentocache: their own serializer; lru-cache:
// JSON text stored, so reads are fresh copies like ferrocache's).

const path = require('node:path')

const ROOT = path.join(__dirname, '..')

function loadFerrocache() {
  return require(ROOT) // index.js; binding.js honours NAPI_RS_NATIVE_LIBRARY_PATH
}

/** ferrocache; `kind` 'session' uses setSession/getSession, 'query' cacheQueryResult/getCachedQuery. */
function ferrocache(url, kind, options = {}) {
  const { createCacheManager } = loadFerrocache()
  const cache = createCacheManager({ url, ...options })
  const c = {
    name: 'ferrocache',
    cache,
    close: () => cache.close(),
  }
  if (kind === 'session') {
    c.set = (k, v, ttl) => cache.setSession(k, v, ttl)
    c.get = (k) => cache.getSession(k)
  } else {
    c.set = (k, v, ttl) => cache.cacheQueryResult(k, v, ttl)
    c.get = (k) => cache.getCachedQuery(k)
  }
  return c
}

/** ioredis: SET key json EX ttl / GET + JSON.parse. */
async function ioredis(port, ns) {
  const Redis = require('ioredis')
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, enableAutoPipelining: false })
  await r.connect()
  return {
    name: 'ioredis',
    client: r,
    set: (k, v, ttl) => r.set(ns + k, JSON.stringify(v), 'EX', ttl),
    get: async (k) => {
      const s = await r.get(ns + k)
      return s === null ? null : JSON.parse(s)
    },
    close: () => r.quit(),
  }
}

/** node-redis (`redis` v5): SET key json {EX} / GET + JSON.parse. */
function nodeRedis(url, ns, onError = (e) => console.error(`node-redis: ${e.message}`)) {
  return nodeRedisClient('node-redis', { url }, ns, onError)
}

async function nodeRedisClient(name, options, ns, onError) {
  const { createClient } = require('redis')
  const client = createClient(options)
  client.on('error', onError)
  await client.connect()
  return {
    name,
    client,
    set: (k, v, ttl) => client.set(ns + k, JSON.stringify(v), { EX: ttl }),
    get: async (k) => {
      const s = await client.get(ns + k)
      return s === null ? null : JSON.parse(s)
    },
    close: () => client.quit(),
  }
}

/**
 * node-redis v5 with its client-side cache (RESP3, server-assisted tracking in the default mode:
 * the server sends an invalidation for every key this connection read once it changes):
 * SET key json {EX} / GET (answered from the cache when it holds the key) + JSON.parse.
 */
function nodeRedisCsc(url, ns, onError = (e) => console.error(`node-redis CSC: ${e.message}`)) {
  return nodeRedisClient('node-redis CSC', { url, RESP: 3, clientSideCache: { maxEntries: 100_000 } }, ns, onError)
}

/**
 * bentocache as its docs set up a multi-tier cache: memory L1 (the memory driver's defaults:
 * an LRU of 1,000 entries), redis L2, and the redis bus that keeps other instances' L1s coherent.
 * Values are plain objects (bentocache serializes them); TTL in ms. get -> value | undefined.
 * Its get, on an L1 miss, stores the L2 reply in L1 whatever happened meanwhile: a set of the
 * same key made in this process while that GET was in flight is overwritten in L1 by the older
 * value, which is then served until evicted or expired (its own bus messages are ignored).
 * The harness's read check catches that when reads and writes of one key overlap (concurrency > 1).
 */
async function bentocache(port, prefix) {
  const { BentoCache, bentostore } = require('bentocache')
  const { memoryDriver } = require('bentocache/drivers/memory')
  const { redisDriver, redisBusDriver } = require('bentocache/drivers/redis')
  const connection = { host: '127.0.0.1', port }
  const bento = new BentoCache({
    default: 'multitier',
    prefix,
    stores: {
      multitier: bentostore()
        .useL1Layer(memoryDriver())
        .useL2Layer(redisDriver({ connection }))
        .useBus(redisBusDriver({ connection })),
    },
  })
  await bento.set({ key: '__warm__', value: 1, ttl: 1000 }) // creates the store, opens its connections
  return {
    name: 'bentocache',
    bento,
    set: (k, v, ttl) => bento.set({ key: k, value: v, ttl: ttl * 1000 }),
    get: (k) => bento.get({ key: k }),
    close: () => bento.disconnectAll(),
  }
}

/** cache-manager v7 over Keyv + @keyv/redis: set(key, value, ttlMs) / get. */
async function cacheManager(url, ns) {
  const { createCache } = require('cache-manager')
  const { Keyv } = require('keyv')
  const { default: KeyvRedis } = require('@keyv/redis')
  const store = new KeyvRedis(url)
  const cache = createCache({ stores: [new Keyv({ store, namespace: ns })] })
  await cache.set('__warm__', 1, 1000) // opens the connection
  return {
    name: 'cache-manager',
    cache,
    set: (k, v, ttl) => cache.set(k, v, ttl * 1000),
    get: (k) => cache.get(k),
    close: () => cache.disconnect(),
  }
}

/** lru-cache holding JSON text (stringify on set, parse on get), with a TTL per entry. Synchronous. */
function lruCache() {
  const { LRUCache } = require('lru-cache')
  const lru = new LRUCache({ max: 100_000, ttl: 3600_000 })
  return {
    name: 'lru-cache',
    lru,
    set: (k, v, ttl) => {
      lru.set(k, JSON.stringify(v), { ttl: ttl * 1000 })
    },
    get: (k) => {
      const s = lru.get(k)
      return s === undefined ? null : JSON.parse(s)
    },
    close: () => lru.clear(),
  }
}

/**
 * Not a cache: the least JS-thread work any async JSON cache client can do per call
 * (JSON.stringify on set, JSON.parse on get, one promise each, a Map of JSON text, no I/O).
 * Its JS-thread CPU per op, divided by ioredis's, is the lowest ratio any client could
 * reach in this harness: the JSON and the harness's own bookkeeping are in it.
 */
function jsonFloor() {
  const texts = new Map()
  return {
    name: FLOOR,
    set: async (k, v) => {
      texts.set(k, JSON.stringify(v))
    },
    get: async (k) => {
      const s = texts.get(k)
      return s === undefined ? null : JSON.parse(s)
    },
    close: () => texts.clear(),
  }
}

/**
 * @cacheable/memory (cacheable's in-memory store, what cache-manager v7 users reach for)
 * holding JSON text like lru-cache: stringify on set, parse on get, its own clone off
 * (the JSON is the copy). LRU bounded like lru-cache, TTL per entry. Synchronous.
 */
function cacheableMemory() {
  const { CacheableMemory } = require('@cacheable/memory')
  const mem = new CacheableMemory({ useClone: false, lruSize: 100_000 })
  return {
    name: '@cacheable/memory',
    set: (k, v, ttl) => {
      mem.set(k, JSON.stringify(v), ttl * 1000)
    },
    get: (k) => {
      const s = mem.get(k)
      return s === undefined ? null : JSON.parse(s)
    },
    close: () => mem.clear(),
  }
}

const FLOOR = 'floor (JSON only)'

module.exports = {
  ferrocache,
  ioredis,
  nodeRedis,
  nodeRedisCsc,
  bentocache,
  cacheManager,
  lruCache,
  cacheableMemory,
  jsonFloor,
  FLOOR,
  loadFerrocache,
}
