// Runs `node -e script` in the package root as a separate process, to check what a
// plain Node process does (exit by itself, no Jest vm). Killed by pid after a deadline.

import { spawn } from 'child_process'
import * as path from 'path'

export const ROOT = path.resolve(__dirname, '..', '..')

export interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  /** Killed at the deadline instead of exiting by itself. */
  timedOut: boolean
  /** From spawn to exit. */
  ms: number
  stdout: string
  stderr: string
  /** ms between the stdout line `done` and the exit; null without such a line. */
  exitAfterDoneMs: number | null
}

export interface RunOptions {
  env?: Record<string, string>
  /** SIGKILL after this long (default 5000 ms). */
  deadlineMs?: number
  /** Sees each stdout line as it arrives. */
  onLine?: (line: string) => void
}

export function runNode(script: string, options: RunOptions = {}): Promise<Run> {
  const { env = {}, deadlineMs = 5000, onLine } = options
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const child = spawn(process.execPath, ['-e', script], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let pending = ''
    let doneAt: number | null = null
    let timedOut = false
    child.stdout.on('data', (d) => {
      stdout += d.toString()
      pending += d.toString()
      let i
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i).trim()
        pending = pending.slice(i + 1)
        if (line === 'done') doneAt = Date.now()
        onLine?.(line)
      }
    })
    child.stderr.on('data', (d) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, deadlineMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const end = Date.now()
      resolve({
        code,
        signal,
        timedOut,
        ms: end - started,
        stdout,
        stderr,
        exitAfterDoneMs: doneAt === null ? null : end - doneAt,
      })
    })
  })
}
