#!/usr/bin/env node
// Packaging smoke test: `npm pack` this package, install the tarball into a
// scratch TypeScript app, type-check it with `tsc --strict` and run it.
// Proves that what users `npm install` loads, type-checks and works.
'use strict'

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocache-pack-'))
function run(cmd, args, cwd, env) {
  try {
    return execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }).toString()
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stdout}${err.stderr}`)
  }
}

try {
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], root))
  const files = packed.files.map((f) => f.path).sort()
  for (const needed of ['index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'keyv.js', 'keyv.d.ts', 'package.json']) {
    if (!files.includes(needed)) throw new Error(`tarball lacks ${needed}: ${files.join(', ')}`)
  }
  if (!files.some((f) => f.endsWith('.node'))) throw new Error(`tarball lacks the native addon: ${files.join(', ')}`)
  if (files.some((f) => f.startsWith('src/') || f.startsWith('target/'))) throw new Error('tarball ships sources/build output')

  const app = path.join(scratch, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, version: '1.0.0' }))
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', path.join(scratch, packed.filename)], app)
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, target: 'ES2022', module: 'commonjs', outDir: 'dist', types: [], skipLibCheck: false },
      files: ['app.ts'],
    }),
  )
  fs.writeFileSync(
    path.join(app, 'app.ts'),
    `import { createCacheManager, cacheManager, CacheManager, TenantCache, codes, CacheError } from 'ferrocache'
import { KeyvFerrocache, createKeyvStore } from 'ferrocache/keyv'

// no @types/node in this app: the package's types must stand alone
declare const process: { exitCode?: number }

interface Session { user: string; roles: string[] }

async function main(): Promise<void> {
  const cm: CacheManager = createCacheManager({ url: 'memory://', ttl: { session: 60 } })
  await cm.setSession('sid-1', { user: 'ada', roles: ['admin'] }, 3600)
  const s: Session | null = await cm.getSession<Session>('sid-1')
  if (s === null || s.user !== 'ada') throw new Error('session round trip failed')
  await cm.cacheQueryResult('orders_2024', [{ id: 1 }], 300)
  await cm.cacheQueryResult('ordersX', [{ id: 2 }])
  const removed: number = await cm.invalidateCache('orders_')
  if (removed !== 1) throw new Error('invalidateCache removed ' + removed)
  const t: TenantCache = cm.tenant('acme')
  if ((await t.getSession('sid-1')) !== null) throw new Error('tenant isolation failed')
  try {
    await cm.setSession('', 1)
    throw new Error('empty key accepted')
  } catch (err) {
    if ((err as CacheError).code !== codes.INVALID_ARG) throw err
  }
  const existed: boolean = await cm.deleteSession('sid-1')
  if (!existed) throw new Error('deleteSession returned false')
  // ferrocache/keyv without the keyv package (an optional peer): the adapter itself
  const store: KeyvFerrocache = new KeyvFerrocache({ manager: cm, tenant: 'acme' })
  store.namespace = 'users'
  const stored: boolean = await store.set('u1', '{"value":1}', 60_000)
  const read: string | undefined = await store.get<string>('u1')
  if (!stored || read !== '{"value":1}') throw new Error('keyv adapter round trip failed')
  await store.clear()
  if (await store.has('u1')) throw new Error('keyv adapter clear failed')
  const own = createKeyvStore('memory://')
  await own.set('k', 1)
  await own.disconnect()
  await cm.close()
  // the default instance reads REDIS_URL on first use
  await cacheManager.setSession('default', { ok: true })
  if ((await cacheManager.getSession<{ ok: boolean }>('default'))?.ok !== true) throw new Error('default instance failed')
  await cacheManager.close()
  console.log('scratch app OK')
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
`,
  )
  run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], app)
  const out = run(process.execPath, ['dist/app.js'], app, { REDIS_URL: 'memory://' })
  if (!out.includes('scratch app OK')) throw new Error(`scratch app printed: ${out}`)
  console.log(`pack smoke: ${packed.filename} (${files.length} files, ${(packed.size / 1024).toFixed(0)} KiB) installs, type-checks with tsc --strict and runs`)
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}
