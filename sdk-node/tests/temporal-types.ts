// Compile-time check of the `agenttally/temporal` declarations (ci.sh: `tsc --noEmit` against
// the installed package); never run.
import { Client, PriceBook } from 'agenttally'
import {
  clientInterceptors,
  recordCall,
  withContext,
  workerOptions,
  WORKFLOW_INTERCEPTOR_MODULE,
  type TemporalOptions,
} from 'agenttally/temporal'
import { interceptors } from 'agenttally/temporal/workflow'
import { Client as TemporalClient, Connection } from '@temporalio/client'
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker'

export async function main(): Promise<void> {
  const events = new Client({ endpoint: 'http://127.0.0.1:8080', priceBook: PriceBook.builtin() })
  const options: TemporalOptions = { client: events, tenantId: 'acme-corp', taskType: 'support' }
  const client = new TemporalClient({
    connection: await Connection.connect({ address: '127.0.0.1:7233' }),
    interceptors: clientInterceptors(options),
  })
  const instrumented = workerOptions(options)
  const worker = await Worker.create({
    connection: await NativeConnection.connect({ address: '127.0.0.1:7233' }),
    taskQueue: 'agents',
    workflowBundle: await bundleWorkflowCode({
      workflowsPath: require.resolve('./workflows'),
      workflowInterceptorModules: [WORKFLOW_INTERCEPTOR_MODULE],
    }),
    activities: {
      async answer(): Promise<string> {
        const recorded: boolean = recordCall({
          provider: 'openai',
          model: 'gpt-4o',
          usage: { prompt_tokens: 10, completion_tokens: 2 },
        })
        return String(recorded)
      },
    },
    interceptors: { activity: instrumented.interceptors.activity },
    sinks: instrumented.sinks,
  })
  const id: string = await withContext({ correlationId: 'order-42', userId: 'u-7' }, async () => {
    const handle = await client.workflow.start('agent', { taskQueue: 'agents', workflowId: 'w' })
    return handle.workflowId
  })
  const factory: typeof interceptors = interceptors
  void factory
  void id
  await worker.runUntil(Promise.resolve())
}
