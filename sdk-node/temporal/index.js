'use strict'
// `agenttally/temporal`: Temporal instrumentation (client and activity interceptors, the sink the
// workflow interceptors send through, and a worker helper). `@temporalio/*` are optional peer
// dependencies: only this subpath needs them. The workflow side is `agenttally/temporal/workflow`
// (bundled into the workflow isolate; it never loads the native addon).

const crypto = require('node:crypto')
const { AsyncLocalStorage } = require('node:async_hooks')
const {
  defaultPayloadConverter,
  ApplicationFailure,
  CancelledFailure,
} = require('@temporalio/common')
const { Client, AgentTallyError } = require('../index.js')

/** The header that carries the context (shared with the Python interceptor). */
const HEADER_KEY = 'agenttally'

/** UUIDv5 namespace of workflow event ids: `uuid5(namespace, `${runId}:${n}`)`, n = 0 for
 * `agent.started`, 1 for the run's outcome (the same ids as the Python interceptor's). */
const WORKFLOW_EVENT_NAMESPACE = '5b0c7a8e-2f0d-5c1e-9a57-6e1f3a0c4d21'

/** The workflow interceptor module, for `interceptors.workflowModules` or
 * `bundleWorkflowCode({ workflowInterceptorModules })`. */
const WORKFLOW_INTERCEPTOR_MODULE = require.resolve('./workflow.js')

/** The name of the sink the workflow interceptors send through. */
const SINK_NAME = 'agenttally'

function invalid(field, rule) {
  return new AgentTallyError(`${field}: ${rule}`, 'VALIDATION', field)
}

function uuid5(namespace, name) {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex')
  const hash = crypto.createHash('sha1').update(ns).update(name, 'utf8').digest()
  const b = hash.subarray(0, 16)
  b[6] = (b[6] & 0x0f) | 0x50
  b[8] = (b[8] & 0x3f) | 0x80
  const h = b.toString('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** The id of a workflow event: derived from the run id and the event's place in the run. */
function workflowEventId(runId, seq) {
  return uuid5(WORKFLOW_EVENT_NAMESPACE, `${runId}:${seq}`)
}

/** Options of every part: `client` delivers and prices (worker side only); `tenantId` (and
 * `taskType`) are the defaults of workflows started without a context. */
function checkOptions(options, needClient) {
  if (options === null || typeof options !== 'object') {
    throw invalid('temporal.options', 'must be an object')
  }
  const { client, tenantId, taskType, logger } = options
  if (needClient && !(client instanceof Client)) {
    throw invalid('temporal.client', 'must be an agenttally Client')
  }
  if (typeof tenantId !== 'string' || tenantId === '') {
    throw invalid('temporal.tenantId', 'must be a non-empty string')
  }
  if (taskType != null && typeof taskType !== 'string') {
    throw invalid('temporal.taskType', 'must be a string when given')
  }
  if (logger != null && typeof logger.warn !== 'function') {
    throw invalid('temporal.logger', 'must have a warn(message) method when given')
  }
  return { client, tenantId, taskType: taskType ?? null, logger: logger ?? console }
}

/** Track without ever throwing: instrumentation must not fail a workflow or an activity. */
function safeTrack(root, event) {
  try {
    return root.client.track(event)
  } catch (err) {
    root.logger.warn(`agenttally: ${event.eventType} was not tracked: ${err && err.message}`)
    return null
  }
}

// context -----------------------------------------------------------------------------------

/** Context given with `withContext`, and that of the activity attempt being run. */
const given = new AsyncLocalStorage()
const attempts = new AsyncLocalStorage()

/** Run `fn` with `context`: workflows started inside it by an instrumented Temporal client carry
 * it (fields left out: the default tenant and task type, the workflow id as correlation id). */
function withContext(context, fn) {
  if (context === null || typeof context !== 'object') {
    throw invalid('context', 'must be an object')
  }
  for (const key of ['tenantId', 'correlationId', 'userId', 'taskType']) {
    const v = context[key]
    if (v != null && (typeof v !== 'string' || v === '')) {
      throw invalid(`context.${key}`, 'must be a non-empty string when given')
    }
  }
  if (typeof fn !== 'function') throw invalid('context.fn', 'must be a function')
  return given.run({ ...context }, fn)
}

/** The header's context `{ tenant_id, correlation_id, user_id?, task_type? }`; throws a
 * VALIDATION error naming the field when it is malformed. */
function decodeHeader(payload) {
  let value
  try {
    value = defaultPayloadConverter.fromPayload(payload)
  } catch (err) {
    throw invalid(`header.${HEADER_KEY}`, `must be a JSON payload (${err && err.message})`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(`header.${HEADER_KEY}`, 'must be a JSON object')
  }
  for (const key of ['tenant_id', 'correlation_id']) {
    if (typeof value[key] !== 'string' || value[key] === '') {
      throw invalid(`header.${HEADER_KEY}.${key}`, 'must be a non-empty string')
    }
  }
  for (const key of ['user_id', 'task_type']) {
    if (value[key] != null && typeof value[key] !== 'string') {
      throw invalid(`header.${HEADER_KEY}.${key}`, 'must be a string when present')
    }
  }
  const out = { tenant_id: value.tenant_id, correlation_id: value.correlation_id }
  if (value.user_id != null) out.user_id = value.user_id
  if (value.task_type != null) out.task_type = value.task_type
  return out
}

/** The header payload of a context (Temporal's default JSON converter: `json/plain`). */
function encodeHeader(context) {
  const out = { tenant_id: context.tenant_id, correlation_id: context.correlation_id }
  if (context.user_id != null) out.user_id = context.user_id
  if (context.task_type != null) out.task_type = context.task_type
  return defaultPayloadConverter.toPayload(out)
}

// client ------------------------------------------------------------------------------------

/** A `WorkflowClientInterceptor` that puts the `agenttally` header on workflows it starts (also
 * signal-with-start and update-with-start). A header already set is left as it is. */
class AgentTallyWorkflowClientInterceptor {
  constructor(options) {
    this.root = checkOptions(options, false)
  }

  context(workflowId) {
    const g = given.getStore()
    const attempt = attempts.getStore()
    const base = attempt ? attempt.context : null
    if (!g && base) return base
    const c = g || {}
    return {
      tenant_id: c.tenantId ?? (base ? base.tenant_id : this.root.tenantId),
      correlation_id: c.correlationId ?? (base ? base.correlation_id : workflowId),
      user_id: c.userId ?? (base ? base.user_id : null),
      task_type: c.taskType ?? (base ? base.task_type : this.root.taskType),
    }
  }

  headers(headers, workflowId) {
    if (headers && headers[HEADER_KEY] != null) return headers
    return { ...headers, [HEADER_KEY]: encodeHeader(this.context(workflowId)) }
  }

  start(input, next) {
    return next({ ...input, headers: this.headers(input.headers, input.options.workflowId) })
  }

  startWithDetails(input, next) {
    return next({ ...input, headers: this.headers(input.headers, input.options.workflowId) })
  }

  signalWithStart(input, next) {
    return next({ ...input, headers: this.headers(input.headers, input.options.workflowId) })
  }

  startUpdateWithStart(input, next) {
    const headers = this.headers(input.workflowStartHeaders, input.workflowStartOptions.workflowId)
    return next({ ...input, workflowStartHeaders: headers })
  }
}

/** `interceptors` for `new Client({ interceptors })` (or `{ workflow: [...] }` merged into yours). */
function clientInterceptors(options) {
  return { workflow: [new AgentTallyWorkflowClientInterceptor(options)] }
}

// activities --------------------------------------------------------------------------------

/** Exact sum of two non-negative decimal strings. */
function addDecimal(a, b) {
  if (a == null) return b
  if (b == null) return a
  const [ai, af = ''] = a.split('.')
  const [bi, bf = ''] = b.split('.')
  const scale = Math.max(af.length, bf.length)
  const sum = BigInt(ai + af.padEnd(scale, '0')) + BigInt(bi + bf.padEnd(scale, '0'))
  if (scale === 0) return sum.toString()
  const digits = sum.toString().padStart(scale + 1, '0')
  const frac = digits.slice(-scale).replace(/0+$/, '')
  const int = digits.slice(0, -scale)
  return frac === '' ? int : `${int}.${frac}`
}

/** The events of one activity attempt. */
class Attempt {
  constructor(root, context, info) {
    this.root = root
    this.context = context
    this.started = performance.now()
    this.startedAt = Date.now()
    // The worker does not expose the attempt's started time; the attempt starts here, as soon
    // as the worker has the task.
    this.queueMs = Math.max(0, Math.round(this.startedAt - info.currentAttemptScheduledTimestampMs))
    this.agentId = info.activityType
    this.workflowId = info.workflowExecution ? info.workflowExecution.workflowId : null
    this.temporal = {
      scope: 'activity',
      workflow_type: info.workflowType ?? null,
      workflow_run_id: info.workflowExecution ? info.workflowExecution.runId : null,
      activity_type: info.activityType,
      activity_id: info.activityId,
      attempt: info.attempt,
      task_queue: info.taskQueue,
    }
    this.cost = null
    this.calls = 0
  }

  tags() {
    const c = this.context
    return {
      tenantId: c.tenant_id,
      correlationId: c.correlation_id,
      userId: c.user_id ?? undefined,
      taskType: c.task_type ?? undefined,
      agentId: this.agentId,
      workflowId: this.workflowId ?? undefined,
    }
  }

  start() {
    safeTrack(this.root, {
      eventType: 'agent.started',
      queueMs: this.queueMs,
      metadata: { temporal: this.temporal },
      ...this.tags(),
    })
  }

  record(call) {
    let cost
    try {
      cost = this.root.client.priceCall(call)
    } catch (err) {
      this.root.logger.warn(`agenttally: call usage not understood: ${err && err.message}`)
      return
    }
    const id = safeTrack(this.root, {
      eventType: 'provider.api_call',
      provider: call.provider,
      model: call.model,
      usage: call.usage,
      metadata: { temporal: this.temporal },
      ...this.tags(),
    })
    if (id === null) return
    this.calls += 1
    this.cost = addDecimal(this.cost, cost)
  }

  finish(err, ctx) {
    const fields = {
      durationMs: Math.round(performance.now() - this.started),
      queueMs: this.queueMs,
      metadata: { temporal: this.temporal, calls: this.calls },
      costUsd: this.cost ?? undefined,
      ...this.tags(),
    }
    if (err === undefined) {
      safeTrack(this.root, { eventType: 'agent.completed', ...fields })
    } else if (timedOut(err, ctx)) {
      safeTrack(this.root, {
        eventType: 'agent.timeout',
        success: false,
        errorCode: 'timeout',
        ...fields,
      })
    } else {
      safeTrack(this.root, {
        eventType: 'agent.failed',
        success: false,
        errorCode: errorCode(err),
        ...fields,
      })
    }
  }
}

/** Whether the attempt ended by a timeout: an error named TimeoutError, or a cancellation that
 * says so. The server does not tell a worker that an attempt timed out: the worker learns it from
 * a heartbeat, which finds the attempt gone (`notFound`); that counts as a timeout once the
 * attempt's start-to-close or schedule-to-close deadline has passed. */
function timedOut(err, ctx) {
  if (err !== null && typeof err === 'object' && err.name === 'TimeoutError') return true
  if (!(err instanceof CancelledFailure) && !(ctx && ctx.cancellationSignal.aborted)) return false
  const details = ctx ? ctx.cancellationDetails : undefined
  if (!details) return false
  if (details.timedOut) return true
  if (!details.notFound) return false
  const info = ctx.info
  const now = Date.now()
  const startToClose =
    info.startToCloseTimeoutMs > 0 &&
    now >= info.currentAttemptScheduledTimestampMs + info.startToCloseTimeoutMs
  const scheduleToClose =
    info.scheduleToCloseTimeoutMs > 0 &&
    now >= info.scheduledTimestampMs + info.scheduleToCloseTimeoutMs
  return startToClose || scheduleToClose
}

/** An activity's error code: an ApplicationFailure's type, else the error's `code` (a string),
 * else its name. */
function errorCode(err) {
  if (err instanceof ApplicationFailure && err.type) return err.type
  if (err !== null && typeof err === 'object') {
    if (typeof err.code === 'string' && err.code !== '') return err.code
    if (typeof err.name === 'string' && err.name !== '') return err.name
  }
  return 'Error'
}

/** Record a model call made by the current activity: a `provider.api_call` priced by the
 * client's price book, whose cost is added to the attempt's outcome. `usage` is canonical
 * buckets or a provider SDK's usage object. Returns false (and records nothing) outside an
 * activity run by an instrumented worker. */
function recordCall(call) {
  if (call === null || typeof call !== 'object')
    throw invalid('recordCall.call', 'must be an object')
  for (const key of ['provider', 'model']) {
    if (typeof call[key] !== 'string' || call[key] === '') {
      throw invalid(`recordCall.${key}`, 'must be a non-empty string')
    }
  }
  const attempt = attempts.getStore()
  if (!attempt) return false
  attempt.record({ provider: call.provider, model: call.model, usage: call.usage })
  return true
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function guessProvider(result, usage, model) {
  if (typeof result.provider === 'string' && result.provider !== '') return result.provider
  if ('prompt_tokens' in usage || 'completion_tokens' in usage) return 'openai'
  if ('promptTokenCount' in usage || 'prompt_token_count' in usage) return 'google'
  if (
    result.type === 'message' ||
    'cache_creation_input_tokens' in usage ||
    'cache_read_input_tokens' in usage
  ) {
    return 'anthropic'
  }
  if ('input_tokens_details' in usage || result.object === 'response') return 'openai'
  const name = model.toLowerCase()
  if (name.startsWith('claude')) return 'anthropic'
  if (name.startsWith('gemini')) return 'google'
  return 'openai'
}

/** The model calls an activity result reports, as `{ provider, model, usage }`: an OpenAI-style
 * or Anthropic-style response, an object with `model`, `usage` and optionally `provider`, or an
 * array of those. */
function callsInResult(result, depth = 0) {
  if (Array.isArray(result)) {
    return depth > 4 ? [] : result.flatMap((item) => callsInResult(item, depth + 1))
  }
  if (!isObject(result)) return []
  const { usage, model } = result
  if (!isObject(usage) || typeof model !== 'string' || model === '') return []
  return [{ provider: guessProvider(result, usage, model), model, usage: { ...usage } }]
}

class AgentTallyActivityInboundInterceptor {
  constructor(ctx, root) {
    this.ctx = ctx
    this.root = root
  }

  contextOf(headers) {
    const payload = headers ? headers[HEADER_KEY] : undefined
    if (payload != null) {
      try {
        return decodeHeader(payload)
      } catch (err) {
        this.root.logger.warn(`agenttally: ${err.message}; using the defaults`)
      }
    }
    const info = this.ctx.info
    return {
      tenant_id: this.root.tenantId,
      correlation_id: info.workflowExecution ? info.workflowExecution.workflowId : info.activityId,
      task_type: this.root.taskType ?? undefined,
    }
  }

  async execute(input, next) {
    const attempt = new Attempt(this.root, this.contextOf(input.headers), this.ctx.info)
    attempt.start()
    return attempts.run(attempt, async () => {
      let result
      try {
        result = await next(input)
      } catch (err) {
        attempt.finish(err, this.ctx)
        throw err
      }
      for (const call of callsInResult(result)) attempt.record(call)
      attempt.finish(undefined, this.ctx)
      return result
    })
  }
}

/** The factory for the worker's `interceptors.activity`. */
function activityInterceptors(options) {
  const root = checkOptions(options, true)
  return (ctx) => ({ inbound: new AgentTallyActivityInboundInterceptor(ctx, root) })
}

// workflows (worker side) -------------------------------------------------------------------

/** The sinks the workflow interceptors send through, for the worker's `sinks`. Registered with
 * `callDuringReplay: false`: nothing is sent while a history is replayed. */
function sinks(options) {
  const root = checkOptions(options, true)
  return {
    [SINK_NAME]: {
      event: {
        callDuringReplay: false,
        fn(info, ev) {
          workflowEvent(root, info, ev)
        },
      },
    },
  }
}

function workflowEvent(root, info, ev) {
  if (!isObject(ev) || typeof ev.eventType !== 'string' || !Number.isInteger(ev.seq)) return
  const metadata = {
    temporal: {
      scope: 'workflow',
      workflow_type: info.workflowType,
      workflow_run_id: info.runId,
      task_queue: info.taskQueue,
    },
  }
  if (ev.continuedAsNew) metadata.continued_as_new = true
  const failed = ev.eventType === 'agent.failed'
  safeTrack(root, {
    eventType: ev.eventType,
    eventId: workflowEventId(info.runId, ev.seq),
    tenantId: ev.tenantId ?? root.tenantId,
    correlationId: ev.correlationId ?? info.workflowId,
    userId: ev.userId ?? undefined,
    taskType: ev.taskType ?? root.taskType ?? undefined,
    agentId: info.workflowType,
    workflowId: info.workflowId,
    durationMs: ev.durationMs ?? undefined,
    success: failed ? false : undefined,
    errorCode: failed ? String(ev.errorCode ?? 'Error') : undefined,
    timestamp: typeof ev.timestampMs === 'number' ? new Date(ev.timestampMs) : undefined,
    metadata,
  })
}

/** Everything a worker needs, to merge into `Worker.create({...})`: the activity interceptor,
 * the workflow interceptor module and the sinks. With a prebuilt `workflowBundle`, pass
 * `WORKFLOW_INTERCEPTOR_MODULE` to `bundleWorkflowCode({ workflowInterceptorModules })` instead
 * (the bundle carries its workflow interceptors). */
function workerOptions(options) {
  return {
    interceptors: {
      activity: [activityInterceptors(options)],
      workflowModules: [WORKFLOW_INTERCEPTOR_MODULE],
    },
    sinks: sinks(options),
  }
}

module.exports = {
  HEADER_KEY,
  WORKFLOW_EVENT_NAMESPACE,
  WORKFLOW_INTERCEPTOR_MODULE,
  SINK_NAME,
  AgentTallyWorkflowClientInterceptor,
  AgentTallyActivityInboundInterceptor,
  clientInterceptors,
  activityInterceptors,
  sinks,
  workerOptions,
  withContext,
  recordCall,
  callsInResult,
  workflowEventId,
  decodeHeader,
  encodeHeader,
}
