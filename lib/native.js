'use strict'
// Loads the native addon through the loader `napi build` generates (binding.js): a
// `ferrocache.<platform>.node` beside it (a build in a clone), else the platform package
// `ferrocache-<platform>`, an optional dependency of the published package. When neither loads,
// the error says which package is missing instead of the loader's generic message.

const fs = require('node:fs')
const path = require('node:path')

function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    return !process.report?.getReport?.().header?.glibcVersionRuntime
  }
}

// `<platform>-<arch>[-<abi>]`, as napi-rs names the platform packages
function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') return `${platform}-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `${platform}-${arch}-msvc`
  return `${platform}-${arch}`
}

function loadError(cause) {
  const name = platformName()
  const pkg = `ferrocache-${name}`
  const local = path.join(__dirname, '..', `ferrocache.${name}.node`)
  let present = fs.existsSync(local) ? local : null
  try {
    present ??= require.resolve(`${pkg}/package.json`) && pkg
  } catch {
    // not installed
  }
  // the published package.json lists the platform packages (`napi prepublish` adds them)
  const published = Object.keys(require('../package.json').optionalDependencies ?? {})
  const build = 'build it from source in a clone of the repository with `npm run build` (needs a Rust toolchain)'
  let message
  if (present) message = `ferrocache: the native addon ${present} failed to load (see the cause)`
  else if (published.length > 0 && !published.includes(pkg))
    message = `ferrocache: no prebuilt native addon for ${name} (published: ${published.join(', ')}); ${build}`
  else
    message =
      `ferrocache: the native addon for ${name} is missing: install the package ${pkg} (npm installs it with ` +
      `ferrocache as an optional dependency unless optional dependencies are omitted, e.g. --omit=optional), or ${build}`
  const error = new Error(message)
  error.cause = cause
  return error
}

try {
  module.exports = require('../binding.js')
} catch (err) {
  throw loadError(err)
}
