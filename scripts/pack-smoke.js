#!/usr/bin/env node
// Packaging smoke test, as a user without a Rust toolchain installs ferrocache: `npm pack` the main
// package (no binary) and this platform's package (npm/<platform> with the built .node copied in,
// as `napi artifacts` does at release), install both into scratch TypeScript apps with cargo and
// rustc off the PATH, type-check them with `tsc --strict` and run them. The main package alone
// must fail to load with an error naming the missing platform package.
'use strict'

const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocache-pack-'))

// The PATH without the directories holding cargo or rustc: everything below runs with it.
const noRustPath = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter((dir) => !['cargo', 'rustc'].some((tool) => fs.existsSync(path.join(dir, tool))))
  .join(path.delimiter)
const noRustEnv = { ...process.env, PATH: noRustPath }
for (const tool of ['cargo', 'rustc']) {
  const probe = spawnSync(tool, ['--version'], { env: noRustEnv })
  if (probe.error?.code !== 'ENOENT') throw new Error(`${tool} is still found on the PATH without Rust: ${noRustPath}`)
}

function run(cmd, args, cwd, env) {
  try {
    return execFileSync(cmd, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...noRustEnv, ...env },
    }).toString()
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${err.stdout}${err.stderr}`, { cause: err })
  }
}

function pack(dir) {
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], dir))
  return { ...packed, path: path.join(scratch, packed.filename), files: packed.files.map((f) => f.path).sort() }
}

function newApp(name, type) {
  const app = path.join(scratch, name)
  fs.mkdirSync(app)
  const manifest = { name, private: true, version: '1.0.0', ...(type && { type }) }
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(manifest))
  return app
}

// This machine's platform package, named as napi-rs names them (`linux-x64-gnu`, `darwin-arm64`...).
function hostPlatform() {
  const abi =
    process.platform === 'linux'
      ? process.report.getReport().header.glibcVersionRuntime
        ? 'gnu'
        : 'musl'
      : process.platform === 'win32'
        ? 'msvc'
        : null
  return [process.platform, process.arch, abi].filter(Boolean).join('-')
}

// The main package as published: `napi prepublish` adds the platform packages, at the package's
// version, to its optionalDependencies.
function publishedMain(tarball) {
  const dir = path.join(scratch, 'main')
  fs.mkdirSync(dir)
  run('tar', ['-xzf', tarball, '-C', dir], root)
  const manifestPath = path.join(dir, 'package', 'package.json')
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'))
  const platforms = fs.readdirSync(path.join(root, 'npm')).sort()
  manifest.optionalDependencies = Object.fromEntries(platforms.map((p) => [`${pkg.name}-${p}`, pkg.version]))
  fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2))
  fs.rmSync(tarball)
  return pack(path.join(dir, 'package'))
}

// npm/<platform> with the addon built by `npm run build` copied in, as `napi artifacts` does.
function platformPackage(platform) {
  const binary = `${pkg.napi.binaryName}.${platform}.node`
  const dir = path.join(scratch, platform)
  fs.cpSync(path.join(root, 'npm', platform), dir, { recursive: true })
  fs.copyFileSync(path.join(root, binary), path.join(dir, binary))
  const packed = pack(dir)
  const want = ['README.md', binary, 'package.json'].sort()
  if (packed.files.join() !== want.join()) throw new Error(`${packed.filename} holds ${packed.files.join(', ')}`)
  return packed
}

// Without its platform package (optional dependencies omitted), loading fails and says what is missing.
function checkMissingPlatform(main, platform) {
  const app = newApp('no-platform-app')
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', '--omit=optional', main.path], app)
  if (fs.existsSync(path.join(app, 'node_modules', `${pkg.name}-${platform}`)))
    throw new Error('platform package installed')
  const loaded = spawnSync(process.execPath, ['-e', "require('ferrocache')"], { cwd: app, env: noRustEnv })
  const stderr = loaded.stderr.toString()
  const want = `ferrocache: the native addon for ${platform} is missing: install the package ${pkg.name}-${platform}`
  if (loaded.status === 0 || !stderr.includes(want)) {
    throw new Error(`the main package alone: exit ${loaded.status}, stderr:\n${stderr}`)
  }
}

// The value exports each entry point documents in its .d.ts: `export declare const|function|class
// NAME`, `export { a, b } from`, and those of the files it re-exports with `export * from`.
function documentedNames(dts) {
  const text = fs.readFileSync(path.join(root, dts), 'utf8')
  const names = [...text.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1])
  for (const m of text.matchAll(/^export \{([^}]+)\} from/gm)) names.push(...m[1].split(',').map((n) => n.trim()))
  for (const m of text.matchAll(/^export \* from '([^']+)'/gm)) {
    names.push(...documentedNames(path.join(path.dirname(dts), `${m[1]}.d.ts`)))
  }
  return [...new Set(names)].sort()
}

// Installs the tarballs into an app with "type": "module" and imports every documented name of
// each entry point by name: from plain ESM, from TypeScript compiled with module NodeNext (ESM
// output), and with require() from CommonJS. A name Node's CommonJS export detection cannot see
// fails the ESM import at link time. Returns how many names were checked.
function checkNamedExports(tarballs) {
  const entries = {
    ferrocache: 'index.d.ts',
    'ferrocache/express': 'lib/express.d.ts',
    'ferrocache/session': 'lib/session.d.ts',
    'ferrocache/keyv': 'lib/keyv.d.ts',
    'ferrocache/otel': 'lib/otel.d.ts',
  }
  const app = newApp('esm-app', 'module')
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', ...tarballs], app)
  let esm = ''
  let cjs = ''
  let count = 0
  for (const [specifier, dts] of Object.entries(entries)) {
    const names = documentedNames(dts)
    if (names.length === 0) throw new Error(`no exports found in ${dts}`)
    count += names.length
    const local = names.map((n, i) => `${n} as e${count}_${i}`)
    esm += `import { ${local.join(', ')} } from '${specifier}'\n`
    esm += `for (const [n, v] of Object.entries({ ${names.map((n, i) => `${n}: e${count}_${i}`).join(', ')} })) if (v === undefined) throw new Error('${specifier}: ' + n + ' is undefined')\n`
    cjs += `{ const m = require('${specifier}'); for (const n of ${JSON.stringify(names)}) if (m[n] === undefined) throw new Error('${specifier}: ' + n + ' is undefined from CommonJS') }\n`
  }
  fs.writeFileSync(path.join(app, 'names.mjs'), `${esm}console.log('esm names OK')\n`)
  fs.writeFileSync(path.join(app, 'names.cjs'), `${cjs}console.log('cjs names OK')\n`)
  if (!run(process.execPath, ['names.mjs'], app).includes('esm names OK')) throw new Error('ESM import failed')
  if (!run(process.execPath, ['names.cjs'], app).includes('cjs names OK')) throw new Error('CommonJS require failed')
  // TypeScript emitting ESM: the README's import line, type-checked and run (ferrocache/session's
  // types need express-session's, an optional peer this app does not install)
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        outDir: 'dist',
        types: [],
      },
      files: ['app.ts'],
    }),
  )
  fs.writeFileSync(
    path.join(app, 'app.ts'),
    `import { createCacheManager, cacheHealthHandler, cacheMetricsHandler, registerPrometheus, toPrometheusText } from 'ferrocache'
import { KeyvFerrocache } from 'ferrocache/keyv'

const cm = createCacheManager({ url: 'memory://' })
await cm.setSession('s', { ok: true })
const handlers = [cacheHealthHandler(cm), cacheMetricsHandler(cm)]
const text: string = toPrometheusText(cm.metrics())
if (handlers.length !== 2 || typeof registerPrometheus !== 'function' || !text.includes('ferrocache_')) throw new Error('helpers')
if (typeof KeyvFerrocache !== 'function') throw new Error('adapter')
if ((await cm.getSession<{ ok: boolean }>('s'))?.ok !== true) throw new Error('round trip')
await cm.close()
console.log('esm app OK')
`,
  )
  run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], app)
  if (!run(process.execPath, ['dist/app.js'], app).includes('esm app OK')) throw new Error('TypeScript ESM app failed')
  return count
}

try {
  const started = Date.now()
  const platform = hostPlatform()
  const packed = pack(root)
  const files = packed.files
  for (const needed of [
    'index.js',
    'index.d.ts',
    'binding.js',
    'binding.d.ts',
    'lib/manager.js',
    'lib/native.js',
    'lib/keyv.js',
    'lib/keyv.d.ts',
    'lib/session.js',
    'package.json',
  ]) {
    if (!files.includes(needed)) throw new Error(`tarball lacks ${needed}: ${files.join(', ')}`)
  }
  if (files.some((f) => f.endsWith('.node'))) throw new Error(`the main tarball ships a binary: ${files.join(', ')}`)
  if (files.some((f) => f.startsWith('src/') || f.startsWith('target/') || f.startsWith('npm/')))
    throw new Error('tarball ships sources/build output')
  const main = publishedMain(packed.path)
  const native = platformPackage(platform)

  const app = newApp('app')
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', main.path, native.path], app)
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'commonjs',
        outDir: 'dist',
        types: [],
        skipLibCheck: false,
      },
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
  const named = checkNamedExports([main.path, native.path])
  checkMissingPlatform(main, platform)
  console.log(
    `pack smoke (${((Date.now() - started) / 1000).toFixed(1)} s, no cargo or rustc on the PATH): ` +
      `${main.filename} (${main.files.length} files, ${(main.size / 1024).toFixed(0)} KiB, no binary) with ` +
      `${native.filename} (${(native.size / 1024).toFixed(0)} KiB) installs, type-checks with tsc --strict and runs; ` +
      `${named} documented names import by name from ESM (plain and TypeScript NodeNext) and CommonJS; ` +
      `without ${pkg.name}-${platform} it fails naming that package`,
  )
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}
