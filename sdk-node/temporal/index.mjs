// ESM entry of `agenttally/temporal`: the same objects as the CommonJS entry.
import cjs from './index.js'

export const {
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
} = cjs
export default cjs
