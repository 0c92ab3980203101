'use strict'
// `agenttally/temporal/workflow`: the workflow interceptors, for the worker's
// `interceptors.workflowModules` (or `bundleWorkflowCode({ workflowInterceptorModules })`).
//
// This module is bundled into the workflow isolate: it imports `@temporalio/workflow` only (never
// the native addon), issues no commands and never awaits anything of its own, so a history
// replays the same with or without it. Events leave the isolate through the `agenttally` sink,
// which the worker registers with `callDuringReplay: false` (see `agenttally/temporal`): nothing
// is emitted while a history is replayed, and nothing is emitted from a query.

const wf = require('@temporalio/workflow')

/** The header that carries the context (shared with the Python interceptor). */
const HEADER_KEY = 'agenttally'

const { agenttally: sink } = wf.proxySinks()

/** The header's context, or null when it is absent or malformed (the worker then fills in its
 * defaults: its tenant, the workflow id as correlation id). */
function decode(payload) {
  if (payload == null) return null
  let value
  try {
    value = wf.defaultPayloadConverter.fromPayload(payload)
  } catch {
    return null
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  for (const key of ['tenant_id', 'correlation_id']) {
    if (typeof value[key] !== 'string' || value[key] === '') return null
  }
  for (const key of ['user_id', 'task_type']) {
    if (value[key] != null && typeof value[key] !== 'string') return null
  }
  return value
}

/** The error code of a run that failed: an ApplicationFailure's type, through activity and
 * child workflow failures to their cause, else the error's name. */
function errorCode(err) {
  let e = err
  for (let i = 0; i < 8 && e != null; i++) {
    if (e instanceof wf.ApplicationFailure && e.type) return e.type
    if ((e instanceof wf.ActivityFailure || e instanceof wf.ChildWorkflowFailure) && e.cause) {
      e = e.cause
      continue
    }
    break
  }
  if (e instanceof wf.CancelledFailure) return 'CancelledFailure'
  if (e !== null && typeof e === 'object' && typeof e.name === 'string' && e.name !== '') {
    return e.name
  }
  return 'Error'
}

/** Whether `err` ends the run (otherwise it fails the workflow task, which is retried and runs
 * the workflow code again: its outcome comes later). */
function endsRun(err) {
  return err instanceof wf.TemporalFailure || wf.isCancellation(err)
}

class State {
  constructor() {
    /** The payload copied onto outgoing calls (null: none came with the run). */
    this.header = null
    this.context = null
  }

  load(headers) {
    const payload = headers ? headers[HEADER_KEY] : undefined
    const context = decode(payload)
    if (context !== null) {
      this.context = context
      this.header = payload
    }
  }

  /** Hand one event to the sink (a no-op while replaying: the sink is not called then). */
  emit(eventType, seq, fields) {
    const info = wf.workflowInfo()
    if (info.unsafe.isReplaying) return
    const c = this.context
    sink.event({
      eventType,
      seq,
      tenantId: c ? c.tenant_id : null,
      correlationId: c ? c.correlation_id : null,
      userId: c && c.user_id != null ? c.user_id : null,
      taskType: c && c.task_type != null ? c.task_type : null,
      timestampMs: Date.now(),
      ...fields,
    })
  }

  with(headers) {
    if (this.header === null || headers[HEADER_KEY] === this.header) return headers
    return { ...headers, [HEADER_KEY]: this.header }
  }
}

/** Workflow time since the run started (the isolate's clock is the workflow's). */
function runMs() {
  return Math.max(0, Date.now() - wf.workflowInfo().runStartTime.getTime())
}

class AgentTallyWorkflowInboundInterceptor {
  constructor(state) {
    this.state = state
  }

  async execute(input, next) {
    const s = this.state
    s.load(input.headers)
    s.emit('agent.started', 0, {})
    let result
    try {
      result = await next(input)
    } catch (err) {
      if (err instanceof wf.ContinueAsNew) {
        s.emit('agent.completed', 1, { durationMs: runMs(), continuedAsNew: true })
      } else if (endsRun(err)) {
        s.emit('agent.failed', 1, { durationMs: runMs(), errorCode: errorCode(err) })
      }
      throw err
    }
    s.emit('agent.completed', 1, { durationMs: runMs() })
    return result
  }
}

class AgentTallyWorkflowOutboundInterceptor {
  constructor(state) {
    this.state = state
  }

  scheduleActivity(input, next) {
    return next({ ...input, headers: this.state.with(input.headers) })
  }

  scheduleLocalActivity(input, next) {
    return next({ ...input, headers: this.state.with(input.headers) })
  }

  startChildWorkflowExecution(input, next) {
    return next({ ...input, headers: this.state.with(input.headers) })
  }

  continueAsNew(input, next) {
    return next({ ...input, headers: this.state.with(input.headers) })
  }

  signalWorkflow(input, next) {
    return next({ ...input, headers: this.state.with(input.headers) })
  }
}

/** The workflow interceptors factory Temporal looks for in an interceptor module. */
function interceptors() {
  const state = new State()
  return {
    inbound: [new AgentTallyWorkflowInboundInterceptor(state)],
    outbound: [new AgentTallyWorkflowOutboundInterceptor(state)],
  }
}

module.exports = {
  interceptors,
  HEADER_KEY,
  AgentTallyWorkflowInboundInterceptor,
  AgentTallyWorkflowOutboundInterceptor,
}
