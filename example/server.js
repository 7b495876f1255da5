'use strict'
// Starts the example app: `npm start` (or `node example/server.js`).
//
//   PORT       port to listen on (default 3000; 0 = any free port)
//   HOST       interface to bind (default: all interfaces)
//   REDIS_URL  Redis to use (default redis://127.0.0.1:6379). Nothing has to be
//              listening there: ferrocache then serves from its in-process store,
//              and switches to Redis by itself once it answers.

const { createCacheManager } = require('..')
const { createApp } = require('./app')

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const port = process.env.PORT === undefined || process.env.PORT === '' ? 3000 : Number(process.env.PORT)
const host = process.env.HOST || undefined

if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT must be an integer in [0, 65535], got ${JSON.stringify(process.env.PORT)}`)
  process.exit(1)
}

/** The URL with any password replaced, for logs. */
function redact(url) {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@')
  }
}

const manager = createCacheManager({
  url: redisUrl,
  keyPrefix: 'fc-example:',
  // A request should not wait long on a Redis that is down or hung: after this,
  // the call is served from the in-process store.
  commandTimeoutMs: 200,
  connectTimeoutMs: 500,
})
const app = createApp(manager)
const server = app.listen(port, host)

server.on('listening', () => {
  const addr = server.address()
  const shown =
    host === undefined || host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  console.log(
    `ferrocache example listening on http://${shown}:${addr.port} (status page: /status; cache: ${redact(redisUrl)}, in-process fallback when unreachable)`,
  )
})

let stopping = false

async function shutdown(reason, exitCode) {
  if (stopping) return
  stopping = true
  // Requests still running get a few seconds; idle keep-alive sockets are closed now.
  const force = setTimeout(() => server.closeAllConnections(), 5000)
  force.unref()
  const closed = server.listening ? new Promise((resolve) => server.close(() => resolve())) : Promise.resolve()
  server.closeIdleConnections()
  try {
    await closed
    await manager.close()
  } catch (err) {
    console.error(`error while shutting down (${reason}):`, err)
    exitCode = 1
  }
  process.exit(exitCode)
}

server.on('error', (err) => {
  console.error(`cannot listen on port ${port}: ${err.message}`)
  shutdown('listen error', 1)
})

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (stopping) {
      process.exit(1) // second signal: stop waiting
    }
    shutdown(signal, 0)
  })
}
