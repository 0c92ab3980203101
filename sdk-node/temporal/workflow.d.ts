// Types of `agenttally/temporal/workflow` (the workflow interceptor module).
import type {
  WorkflowInboundCallsInterceptor,
  WorkflowInterceptorsFactory,
  WorkflowOutboundCallsInterceptor,
} from '@temporalio/workflow'

/** The header that carries the context. */
export declare const HEADER_KEY: 'agenttally'

/** The factory Temporal calls for each workflow run (the module's `interceptors` export). */
export declare const interceptors: WorkflowInterceptorsFactory

/** Emits the run's `agent.started` and outcome through the `agenttally` sink. */
export declare class AgentTallyWorkflowInboundInterceptor implements WorkflowInboundCallsInterceptor {
  private constructor()
}

/** Copies the header onto activities, local activities, child workflows, continue-as-new and
 * signals. */
export declare class AgentTallyWorkflowOutboundInterceptor implements WorkflowOutboundCallsInterceptor {
  private constructor()
}
