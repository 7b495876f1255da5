#!/usr/bin/env node
// The release set-up, checked where the workflow cannot run: .github/workflows/CI.yml parses and
// builds, loads and publishes exactly package.json's napi.targets; each npm/<platform>/package.json
// names its target's os, cpu, libc and .node at the main package's version, and is what
// `napi create-npm-dirs` makes; the main package ships no binary and builds nothing on install.
'use strict'

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { isDeepStrictEqual } = require('node:util')
const YAML = require('yaml')

const root = path.resolve(__dirname, '..')
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const { binaryName, targets } = pkg.napi

function check(ok, message) {
  if (!ok) throw new Error(message)
}

// What a target triple means to npm, derived here independently of napi-rs's own table.
function describeTriple(triple) {
  const [cpuPart, , osPart, abi] = triple.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64' }[cpuPart]
  const platform = { linux: 'linux', darwin: 'darwin', windows: 'win32' }[osPart]
  check(cpu && platform, `unknown target ${triple}`)
  check(platform !== 'linux' || ['gnu', 'musl'].includes(abi), `unknown linux abi in ${triple}`)
  check(platform !== 'win32' || abi === 'msvc', `unknown windows abi in ${triple}`)
  const name = [platform, cpu, abi].filter(Boolean).join('-')
  const libc = { gnu: ['glibc'], musl: ['musl'] }[abi]
  return { name, os: [platform], cpu: [cpu], libc }
}

function checkPlatformPackages() {
  const npmDir = path.join(root, 'npm')
  const expected = targets.map(describeTriple)
  const dirs = fs.readdirSync(npmDir).sort()
  check(
    isDeepStrictEqual(dirs, expected.map((t) => t.name).sort()),
    `npm/ holds ${dirs.join(', ')}; napi.targets needs ${expected.map((t) => t.name).join(', ')}`,
  )
  for (const t of expected) {
    const manifest = JSON.parse(fs.readFileSync(path.join(npmDir, t.name, 'package.json'), 'utf8'))
    const binary = `${binaryName}.${t.name}.node`
    const want = {
      name: `${pkg.name}-${t.name}`,
      version: pkg.version,
      os: t.os,
      cpu: t.cpu,
      libc: t.libc,
      main: binary,
      files: [binary],
    }
    for (const [field, value] of Object.entries(want)) {
      check(
        isDeepStrictEqual(manifest[field], value),
        `npm/${t.name}/package.json: ${field} is ${JSON.stringify(manifest[field])}, expected ${JSON.stringify(value)}`,
      )
    }
    check(!manifest.scripts, `npm/${t.name}/package.json has scripts`)
  }
  // the committed directories are what the tool the workflow runs makes from package.json
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrocache-npm-dirs-'))
  try {
    fs.copyFileSync(path.join(root, 'package.json'), path.join(scratch, 'package.json'))
    const napi = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
    execFileSync(process.execPath, [napi, 'create-npm-dirs', '--cwd', scratch], { stdio: 'pipe' })
    for (const t of expected) {
      const made = (file) => fs.readFileSync(path.join(scratch, 'npm', t.name, file), 'utf8')
      const committed = (file) => fs.readFileSync(path.join(npmDir, t.name, file), 'utf8')
      check(
        isDeepStrictEqual(JSON.parse(made('package.json')), JSON.parse(committed('package.json'))),
        `npm/${t.name}/package.json differs from what \`napi create-npm-dirs\` makes: run it and commit npm/`,
      )
      check(made('README.md') === committed('README.md'), `npm/${t.name}/README.md is not current`)
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
  return expected.length
}

function checkMainPackage() {
  check(!pkg.files.some((f) => f.includes('.node')), `package.json files ships a binary: ${pkg.files.join(', ')}`)
  for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) {
    check(!pkg.scripts[script], `package.json has a "${script}" script: installing must not build`)
  }
  // `napi prepublish` adds them at publish; listed here, `npm ci` fails until they are on the registry
  check(!pkg.optionalDependencies, 'optionalDependencies belong to the published package.json only')
}

function checkWorkflow() {
  const text = fs.readFileSync(path.join(root, '.github', 'workflows', 'CI.yml'), 'utf8')
  const doc = YAML.parse(text, { prettyErrors: true })
  const jobs = doc.jobs
  check(doc.env.APP_NAME === binaryName, `workflow APP_NAME ${doc.env.APP_NAME} is not napi.binaryName ${binaryName}`)
  for (const job of ['build', 'test-bindings']) {
    const listed = jobs[job].strategy.matrix.settings.map((s) => s.target)
    check(
      isDeepStrictEqual([...listed].sort(), [...targets].sort()),
      `workflow job ${job} has targets ${listed.join(', ')}; napi.targets is ${targets.join(', ')}`,
    )
  }
  for (const s of jobs.build.strategy.matrix.settings) {
    check(s.build.startsWith('npm run build -- ') && s.build.includes(`--target ${s.target}`), `build of ${s.target}`)
  }
  const steps = (job) => jobs[job].steps.map((s) => s.run ?? '').join('\n')
  check(
    /\.ci\/run|npm test/.test(steps('test')) && steps('test').includes('redis-server'),
    'test job: redis-server, npm test',
  )
  check(jobs.publish.if.includes("startsWith(github.ref, 'refs/tags/v')"), 'publish runs on version tags only')
  check(isDeepStrictEqual(jobs.publish.needs.sort(), ['test', 'test-bindings']), 'publish needs test, test-bindings')
  const publish = steps('publish')
  let at = -1
  for (const command of ['napi create-npm-dirs', 'napi artifacts', 'napi prepublish -t npm', 'npm publish']) {
    const next = publish.indexOf(command, at + 1)
    check(next > at, `publish job lacks \`${command}\` (in this order)`)
    at = next
  }
  check(text.includes('NPM_TOKEN: ${{ secrets.NPM_TOKEN }}'), 'publish uses secrets.NPM_TOKEN')
}

const count = checkPlatformPackages()
checkMainPackage()
checkWorkflow()
console.log(
  `platforms: ${count} targets in package.json, .github/workflows/CI.yml (build, test-bindings, publish) and npm/ agree; ` +
    'the main package ships no binary and builds nothing on install',
)
