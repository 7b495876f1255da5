'use strict'
// OpenTelemetry spans of ferrocache's operations: a subscriber of the tracing channel
// `ferrocache:operation` (lib/tracing.js). `@opentelemetry/api` is an optional peer
// dependency, loaded when `instrument` is first called; ferrocache itself never loads it.

const { tracingChannel } = require('node:diagnostics_channel')
const { OPERATION_CHANNEL } = require('./tracing.js')

// session ids are secrets: no span carries them unless `key` says otherwise
const keyUnlessSession = (message) => (message.kind === 'session' ? undefined : message.key)

/**
 * Makes a span of every ferrocache operation of this process (`ferrocache.<operation>`, as a
 * child of the active span, a `getOrSet`'s read and write as children of its span) until the
 * returned function is called. Attributes: `ferrocache.operation`, `.kind`, `.tenant`, `.key`
 * (`options.key(message)`; default the key, except a session id), and once it settled `.hit`,
 * `.served_by` (`l1`, `redis` or `memory`), `.shared`, `.allowed` (rateLimit); a rejected
 * operation records its error with status ERROR. `options.tracer`: default
 * `trace.getTracer('ferrocache')`.
 */
function instrument(options = {}) {
  const api = require('@opentelemetry/api')
  const tracer = options.tracer ?? api.trace.getTracer('ferrocache')
  const recordKey = options.key ?? keyUnlessSession
  const spans = new WeakMap()
  const finish = (message) => {
    const span = spans.get(message)
    if (span === undefined) return
    spans.delete(message)
    if (message.hit !== undefined) span.setAttribute('ferrocache.hit', message.hit)
    if (message.servedBy !== undefined) span.setAttribute('ferrocache.served_by', message.servedBy)
    if (message.shared) span.setAttribute('ferrocache.shared', true)
    if (message.operation === 'rateLimit' && message.result)
      span.setAttribute('ferrocache.allowed', message.result.allowed)
    if (message.error !== undefined) {
      span.recordException(message.error)
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: String(message.error?.message ?? message.error) })
    }
    span.end()
  }
  const subscribers = {
    start(message) {
      const parent = message.parent === undefined ? undefined : spans.get(message.parent)
      const active = api.context.active()
      const attributes = { 'ferrocache.operation': message.operation, 'ferrocache.kind': message.kind }
      if (message.tenant !== undefined) attributes['ferrocache.tenant'] = message.tenant
      const key = recordKey(message)
      if (key !== undefined) attributes['ferrocache.key'] = key
      if (message.keys !== undefined) attributes['ferrocache.keys'] = message.keys.length
      const span = tracer.startSpan(
        `ferrocache.${message.operation}`,
        { kind: api.SpanKind.INTERNAL, attributes },
        parent === undefined ? active : api.trace.setSpan(active, parent),
      )
      spans.set(message, span)
    },
    // an operation that threw synchronously gets no asyncEnd
    end(message) {
      if (message.error !== undefined) finish(message)
    },
    asyncEnd: finish,
  }
  const channel = tracingChannel(OPERATION_CHANNEL)
  channel.subscribe(subscribers)
  return () => {
    channel.unsubscribe(subscribers)
  }
}

module.exports = { instrument }
