// The system Chromium for browser tests (playwright-core drives it; no browser download).

import * as fs from 'fs'
import * as path from 'path'

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/**
 * The Chromium to launch: `CHROMIUM_PATH`, else `chromium` or `chromium-browser` on the PATH.
 * Throws (the test fails, it is never skipped) saying how to install it.
 */
export function chromiumPath(): string {
  const configured = process.env.CHROMIUM_PATH
  if (configured) {
    if (isExecutableFile(configured)) return configured
    throw new Error(`CHROMIUM_PATH=${configured} is not an executable file`)
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue
    for (const name of ['chromium', 'chromium-browser']) {
      const candidate = path.join(dir, name)
      if (isExecutableFile(candidate)) return candidate
    }
  }
  throw new Error(
    'Chromium is not installed: no `chromium` or `chromium-browser` on the PATH. ' +
      'Install it (Debian: `apt-get install chromium`; .ci/run does) or set CHROMIUM_PATH.',
  )
}
