// Types of ferrocache/otel: OpenTelemetry spans of ferrocache's operations.
// @opentelemetry/api is an optional peer dependency: nothing here imports its types.

import type { OperationMessage } from './tracing'

/** What `instrument` uses of an OpenTelemetry `Span`. */
export interface SpanLike {
  setAttribute(key: string, value: string | number | boolean): unknown
  recordException(exception: unknown): unknown
  setStatus(status: { code: number; message?: string }): unknown
  end(): unknown
}

/** What `instrument` uses of an OpenTelemetry `Tracer`. */
export interface TracerLike {
  startSpan(name: string, options?: object, context?: unknown): SpanLike
}

export interface InstrumentOptions {
  /** The tracer of the spans; default `trace.getTracer('ferrocache')`. */
  tracer?: TracerLike
  /** The `ferrocache.key` attribute of an operation, or undefined for none; default its key, except a session id. */
  key?: (message: OperationMessage) => string | undefined
}

/**
 * Makes a span of every ferrocache operation of this process (`ferrocache.<operation>`, as a
 * child of the active span, a `getOrSet`'s read and write as children of its span) until the
 * returned function is called. Attributes: `ferrocache.operation`, `.kind`, `.tenant`, `.key`,
 * and once settled `.hit`, `.served_by` (`l1`, `redis` or `memory`), `.shared`, `.allowed`
 * (rateLimit); a rejected operation records its error with status ERROR. Needs
 * `@opentelemetry/api`.
 */
export declare function instrument(options?: InstrumentOptions): () => void
