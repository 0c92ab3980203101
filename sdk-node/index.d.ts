// Public types of `agenttally` (hand-written: the API of index.js; the addon's own generated
// declarations are native.d.ts).

/** Canonical usage buckets (non-negative integers; all optional). */
export interface Usage {
  input_tokens?: number
  cached_input_tokens?: number
  cache_write_tokens?: number
  cache_write_1h_tokens?: number
  output_tokens?: number
  reasoning_tokens?: number
  requests?: number
}

/** The `usage` of an OpenAI, Anthropic or Gemini SDK response, as the SDK returns it. Converted
 * by sdk-core's adapters; the adapter is picked by `provider`, else by the keys present. */
export type ProviderUsage = { readonly [key: string]: unknown }

export type OverflowPolicy = 'drop_newest' | 'drop_oldest' | 'spool'

export type ServiceTier = 'standard' | 'batch' | 'flex' | 'priority'

/** Client settings; each one left out keeps sdk-core's default. Durations are milliseconds. */
export interface ClientOptions {
  endpoint?: string
  apiKey?: string
  /** A PEM file of the CA certificates that verify an `https://` endpoint, instead of the
   * built-in roots (a private CA, a self-signed collector). */
  caFile?: string
  flushAt?: number
  flushInterval?: number
  maxQueueEvents?: number
  maxQueueBytes?: number
  overflow?: OverflowPolicy
  spoolDir?: string
  gzip?: boolean
  disabled?: boolean
  priceBook?: PriceBook
  requestTimeout?: number
  maxRetryTime?: number
  maxInFlight?: number
  /** The bounded flush when the process exits without `shutdown()` (default 2000). */
  exitTimeout?: number
}

/** One event. Money is a decimal string (`"0.0042"`), never a number. */
export interface TrackEvent {
  eventType: string
  tenantId: string
  correlationId?: string
  userId?: string
  agentId?: string
  workflowId?: string
  durationMs?: number
  queueMs?: number
  costUsd?: string
  provider?: string
  model?: string
  taskType?: string
  usage?: Usage | ProviderUsage
  success?: boolean
  errorCode?: string
  metadata?: { readonly [key: string]: unknown }
  /** A `Date` or RFC 3339 text with an offset. */
  timestamp?: Date | string
  serviceTier?: ServiceTier
  /** The event's id (a UUID) instead of a generated one: an event sent again with the same id
   * is stored once. */
  eventId?: string
}

export interface Dropped {
  queueFull: number
  evicted: number
  undeliverable: number
  shutdown: number
  spoolFull: number
  spoolIo: number
  /** All drops, `queueFull` included. */
  total: number
}

/** A snapshot of the client's counters. */
export interface Stats {
  accepted: number
  sent: number
  duplicates: number
  /** Acknowledged by the collector (`sent + duplicates`). */
  delivered: number
  retried: number
  requests: number
  rejected: number
  dropped: Dropped
  queueDepth: number
  queueBytes: number
  spooled: number
  replayed: number
  spoolPending: number
  spoolBytes: number
  spoolCorrupt: number
  oldestQueuedAgeMs: number
  /** Delivery requests running now. */
  requestsInFlight: number
  /** How many requests the client lets run at once now: grows while a backlog keeps every slot busy, up to `maxInFlight`; halves when the collector asks to slow down. */
  inFlightLimit: number
}

export interface RunOptions {
  tenantId: string
  agentId: string
  taskType: string
}

export interface Call {
  provider: string
  model: string
  usage?: Usage | ProviderUsage
}

/** One agent run, passed to the `client.run(...)` callback. */
export declare class Run {
  private constructor()
  recordCall(call: Call): void
  complete(): void
  fail(errorCode: string): void
  timeout(): void
  readonly correlationId: string
  /** Summed cost of the recorded calls (decimal string), or null when none had a cost. */
  readonly cost: string | null
  readonly finished: boolean
}

export declare class Client {
  constructor(options?: ClientOptions)
  /** Validate, price (with a price book) and queue one event; returns its id. Never blocks. */
  track(event: TrackEvent): string
  /** Resolves once every event accepted before the call is delivered (default: no time limit). */
  flush(timeoutMs?: number): Promise<void>
  /** Deliver what is queued (at most `timeoutMs`), then stop. */
  shutdown(timeoutMs?: number): Promise<void>
  stats(): Stats
  /** The cost of one provider call as `track` would price it with the client's price book,
   * without tracking anything: a decimal string, or null (unpriced, or no price book). */
  priceCall(call: Call): string | null
  /** `agent.started`, then `agent.completed` when `fn` resolves, or `agent.failed` with the
   * error's `code` (else its name) when it throws — then the error is rethrown. */
  run<T>(options: RunOptions, fn: (run: Run) => T | Promise<T>): Promise<T>
}

export interface CostOptions {
  serviceTier?: ServiceTier
  /** When the call happened (default: now). */
  at?: Date | string
}

export interface Cost {
  /** Exact USD as a decimal string; null when unpriced. */
  usd: string | null
  status: string
  priceVersion: string | null
}

export declare class PriceBook {
  private constructor()
  static builtin(): PriceBook
  static fromLitellmJson(pathOrText: string): PriceBook
  readonly version: string
  readonly size: number
  cost(model: string, usage: Usage | ProviderUsage, options?: CostOptions): Cost
}

export type ErrorCode =
  'VALIDATION' | 'CONFIG' | 'CLOSED' | 'QUEUE_FULL' | 'TIMEOUT' | 'PRICING' | 'IO' | 'INTERNAL'

export declare class AgentTallyError extends Error {
  constructor(message: string, code: ErrorCode, field?: string | null)
  readonly code: ErrorCode
  /** The field or setting the error is about (also named in the message), or null. */
  readonly field: string | null
}

export declare const VERSION: string
/** The default `exitTimeout` (milliseconds). */
export declare const EXIT_TIMEOUT_MS: number
