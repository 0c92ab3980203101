// Types of `agenttally/temporal` (hand-written: the API of temporal/index.js).
import type { Context as ActivityContext } from '@temporalio/activity'
import type { ClientInterceptors, WorkflowClientInterceptor } from '@temporalio/client'
import type { Payload } from '@temporalio/common'
import type {
  ActivityExecuteInput,
  ActivityInboundCallsInterceptor,
  ActivityInterceptorsFactory,
  InjectedSinks,
  Next,
} from '@temporalio/worker'
import type { Sinks } from '@temporalio/workflow'
import type { Call, Client, ProviderUsage, Usage } from '../index'

/** The header that carries the context (shared with the Python interceptor). */
export declare const HEADER_KEY: 'agenttally'
/** UUIDv5 namespace of workflow event ids. */
export declare const WORKFLOW_EVENT_NAMESPACE: string
/** Absolute path of `agenttally/temporal/workflow`, for `interceptors.workflowModules` or
 * `bundleWorkflowCode({ workflowInterceptorModules })`. */
export declare const WORKFLOW_INTERCEPTOR_MODULE: string
/** The name of the sink the workflow interceptors send through. */
export declare const SINK_NAME: 'agenttally'

/** Defaults of workflows started without a context. */
export interface TemporalDefaults {
  /** The tenant of workflows started without a context (and without a header). */
  tenantId: string
  taskType?: string
  /** Where events that could not be tracked are reported (default: `console`). */
  logger?: { warn(message: string): void }
}

/** Worker-side options: the client that delivers the events and prices model calls. */
export interface TemporalOptions extends TemporalDefaults {
  client: Client
}

/** What the `agenttally` header carries. */
export interface HeaderContext {
  tenant_id: string
  correlation_id: string
  user_id?: string
  task_type?: string
}

export interface ContextOptions {
  tenantId?: string
  correlationId?: string
  userId?: string
  taskType?: string
}

/** Puts the `agenttally` header on workflows it starts (start, signal-with-start,
 * update-with-start); a header already set is left as it is. */
export declare class AgentTallyWorkflowClientInterceptor implements WorkflowClientInterceptor {
  constructor(options: TemporalDefaults)
}

/** One attempt's `agent.started` and outcome, and the model calls of its result. */
export declare class AgentTallyActivityInboundInterceptor implements ActivityInboundCallsInterceptor {
  constructor(ctx: ActivityContext, options: TemporalOptions)
  execute(
    input: ActivityExecuteInput,
    next: Next<ActivityInboundCallsInterceptor, 'execute'>,
  ): Promise<unknown>
}

/** `interceptors` for `new Client({ interceptors })`. */
export declare function clientInterceptors(options: TemporalDefaults): ClientInterceptors
/** The factory for the worker's `interceptors.activity`. */
export declare function activityInterceptors(options: TemporalOptions): ActivityInterceptorsFactory
/** The sinks for the worker's `sinks` (`callDuringReplay: false`). */
export declare function sinks(options: TemporalOptions): InjectedSinks<AgentTallySinks>
/** The activity interceptor, the workflow interceptor module and the sinks, to merge into
 * `Worker.create({...})`. */
export declare function workerOptions(options: TemporalOptions): {
  interceptors: { activity: ActivityInterceptorsFactory[]; workflowModules: string[] }
  sinks: InjectedSinks<AgentTallySinks>
}

/** Run `fn` with a context: workflows started inside it by an instrumented client carry it. */
export declare function withContext<T>(context: ContextOptions, fn: () => T): T
/** Record a model call made by the current activity (priced, added to the attempt's cost).
 * Returns false outside an activity run by an instrumented worker. */
export declare function recordCall(call: Call): boolean
/** The model calls an activity result reports. */
export declare function callsInResult(
  result: unknown,
): { provider: string; model: string; usage: Usage | ProviderUsage }[]
/** The id of a workflow event: `uuid5(WORKFLOW_EVENT_NAMESPACE, `${runId}:${seq}`)`. */
export declare function workflowEventId(runId: string, seq: number): string
/** Decode a header payload; throws a VALIDATION `AgentTallyError` naming the field. */
export declare function decodeHeader(payload: Payload): HeaderContext
/** The header payload of a context (`json/plain`). */
export declare function encodeHeader(context: HeaderContext): Payload

/** What the workflow interceptors send (one call per workflow event). */
export interface WorkflowEvent {
  eventType: 'agent.started' | 'agent.completed' | 'agent.failed'
  seq: number
  tenantId: string | null
  correlationId: string | null
  userId: string | null
  taskType: string | null
  timestampMs: number
  durationMs?: number
  errorCode?: string
  continuedAsNew?: boolean
}

/** The sink the workflow interceptors send through. */
export interface AgentTallySinks extends Sinks {
  agenttally: {
    event(ev: WorkflowEvent): void
  }
}
