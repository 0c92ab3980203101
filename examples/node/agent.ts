// A bug-fixing agent instrumented with `client.run(...)`: each task is one run whose provider
// calls are recorded with the usage objects the OpenAI and Anthropic SDKs return; a task that
// throws is recorded as `agent.failed` with the error's code. CI runs it against the collector:
//
//   AGENTTALLY_ENDPOINT=http://127.0.0.1:8080 AGENTTALLY_API_KEY=... node dist/agent.js

import { AgentTallyError, Client, PriceBook, type Run } from 'agenttally'

interface Task {
  id: string
  kind: 'bug_fix' | 'feature'
  fails?: boolean
}

/** What `openai.chat.completions.create(...)` returns as `usage` (abridged fake). */
function openAiUsage(prompt: number, completion: number) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: Math.floor(prompt / 4) },
  }
}

/** What `anthropic.messages.create(...)` returns as `usage` (abridged fake). */
function anthropicUsage(input: number, output: number) {
  return {
    input_tokens: input,
    output_tokens: output,
    cache_read_input_tokens: 4 * input,
  }
}

class ProviderError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message)
  }
}

async function solve(run: Run, task: Task): Promise<string> {
  run.recordCall({
    provider: 'openai',
    model: 'gpt-4o-mini',
    usage: openAiUsage(2_000, 150),
  })
  if (task.fails) throw new ProviderError('overloaded', 'provider_overloaded')
  run.recordCall({
    provider: 'anthropic',
    model: 'claude-sonnet-4-5',
    usage: anthropicUsage(1_500, 700),
  })
  return `patch for ${task.id}`
}

async function main(): Promise<void> {
  const tenantId = process.env.AGENTTALLY_TENANT ?? 'acme-corp'
  const client = new Client({
    endpoint: process.env.AGENTTALLY_ENDPOINT ?? 'http://127.0.0.1:8080',
    apiKey: process.env.AGENTTALLY_API_KEY ?? '',
    priceBook: PriceBook.builtin(),
    flushInterval: 200,
  })
  const tasks: Task[] = [
    { id: 'BUG-1', kind: 'bug_fix' },
    { id: 'BUG-2', kind: 'bug_fix', fails: true },
    { id: 'FEAT-3', kind: 'feature' },
  ]
  let done = 0
  for (const task of tasks) {
    try {
      const patch = await client.run(
        { tenantId, agentId: 'bugfix-agent', taskType: task.kind },
        async (run) => {
          const out = await solve(run, task)
          console.log(`${task.id}: ${out} (cost ${run.cost ?? 'unpriced'} USD)`)
          return out
        },
      )
      if (patch) done += 1
    } catch (err) {
      console.log(`${task.id}: failed (${err instanceof Error ? err.message : String(err)})`)
    }
  }
  try {
    client.track({
      eventType: 'provider.api_call',
      tenantId,
      costUsd: '0.1' as string,
      durationMs: -1,
    })
  } catch (err) {
    if (!(err instanceof AgentTallyError)) throw err
    console.log(`rejected as expected: ${err.code} ${err.message}`)
  }
  await client.shutdown(10_000)
  const stats = client.stats()
  console.log(
    `${done}/${tasks.length} tasks done; ${stats.sent} events sent, ${stats.dropped.total} dropped`,
  )
  if (stats.sent !== stats.accepted) process.exitCode = 1
}

await main()
