#!/usr/bin/env node
// Loads ferrocache from this checkout with the addon beside it (a build, or a CI artifact) and
// uses it through the in-process store: the check that a binary loads and works on its platform.
// Needs no dependency and no Redis.
'use strict'

const { createCacheManager } = require('..')

async function main() {
  const cm = createCacheManager({ url: 'memory://' })
  await cm.setSession('sid', { user: 'ada' }, 60)
  if ((await cm.getSession('sid'))?.user !== 'ada') throw new Error('session round trip failed')
  await cm.cacheQueryResult('orders_2024', [1])
  await cm.cacheQueryResult('ordersX', [2])
  const removed = await cm.invalidateCache('orders_')
  if (removed !== 1 || (await cm.getCachedQuery('ordersX')) === null)
    throw new Error(`invalidateCache removed ${removed}`)
  await cm.close()
  console.log(`ferrocache loads and works on ${process.platform}-${process.arch} (node ${process.version})`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
