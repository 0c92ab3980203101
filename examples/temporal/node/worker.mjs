// An agent that runs as a Temporal workflow, instrumented by the AgentTally interceptors.
//
// The workflow researches, drafts and reviews an answer; each step is an activity that calls a
// model (simulated here: the responses have the shape the OpenAI and Anthropic SDKs return). No
// activity mentions AgentTally except `draft`, which records its two calls itself; the others'
// calls are found in their results. Every event carries the ticket's correlation id, and the
// collector has the cost of each workflow run.
//
//   temporal server start-dev &    # or any Temporal server
//   AGENTTALLY_ENDPOINT=http://127.0.0.1:8080 AGENTTALLY_API_KEY=... \
//     TEMPORAL_ADDRESS=127.0.0.1:7233 node worker.mjs [tenant] [runs]

import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Client, PriceBook } from 'agenttally'
import { clientInterceptors, recordCall, withContext, workerOptions } from 'agenttally/temporal'
import { Context } from '@temporalio/activity'
import { Client as TemporalClient, Connection } from '@temporalio/client'
import { NativeConnection, Worker } from '@temporalio/worker'

const activities = {
  async research(question) {
    // What `openai.chat.completions.create(...)` returns, in short.
    return {
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [{ message: { role: 'assistant', content: `notes on ${question}` } }],
      usage: { prompt_tokens: 3000 + 10 * question.length, completion_tokens: 400 },
    }
  },

  async draft(notes) {
    // Two calls in one activity, recorded explicitly (e.g. `usage: message.usage`).
    for (const words of [300, 120]) {
      const usage = { input_tokens: 2500, output_tokens: words * 2 }
      recordCall({ provider: 'anthropic', model: 'claude-sonnet-4-5', usage })
    }
    return `draft from ${notes}`
  },

  async review(text) {
    if (Context.current().info.attempt === 1 && text.length % 2 === 0) {
      throw new Error('the reviewer timed out upstream') // retried by Temporal
    }
    return {
      model: 'gpt-4o',
      usage: { prompt_tokens: 1500, completion_tokens: 80 },
      approved: true,
    }
  },
}

async function main(tenant, runs) {
  const events = new Client({
    endpoint: process.env.AGENTTALLY_ENDPOINT ?? 'http://127.0.0.1:8080',
    apiKey: process.env.AGENTTALLY_API_KEY,
    priceBook: PriceBook.builtin(),
  })
  const address = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233'
  const options = { client: events, tenantId: tenant }
  // The client sets the header; the worker emits the events (register each part once).
  const client = new TemporalClient({
    connection: await Connection.connect({ address }),
    interceptors: clientInterceptors(options),
  })
  const taskQueue = `support-${randomBytes(4).toString('hex')}`
  const worker = await Worker.create({
    connection: await NativeConnection.connect({ address }),
    taskQueue,
    workflowsPath: fileURLToPath(new URL('./workflows.mjs', import.meta.url)),
    activities,
    ...workerOptions(options),
  })
  const results = await worker.runUntil(async () => {
    const handles = []
    for (let i = 0; i < runs; i++) {
      const ticket = `ticket-${randomBytes(3).toString('hex')}-${i}`
      const handle = await withContext(
        { tenantId: tenant, correlationId: ticket, taskType: 'support' },
        () =>
          client.workflow.start('supportAgent', {
            args: [`question ${i}`],
            taskQueue,
            workflowId: ticket,
          }),
      )
      handles.push(handle)
    }
    return Promise.all(handles.map((h) => h.result()))
  })
  await events.shutdown(10_000)
  await client.connection.close()
  const approved = results.filter((r) => r === 'approved').length
  console.log(`${results.length} workflow runs (${approved} approved)`)
  console.log(`sent ${events.stats().sent} events`)
}

await main(process.argv[2] ?? 'acme-corp', Number(process.argv[3] ?? 3))
