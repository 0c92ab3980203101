// Per-call cost of `client.track(...)` against the analytics clients Node services use today:
// posthog-node `capture` and @segment/analytics-node `track`. One process, the same payload for
// every client, every client's sends pointed at a closed local port, so only the call and the
// client's own background work are measured. Not run in CI (needs the devDependencies).
//
//   node bench/track_bench.mjs [calls]
//
// Calls run in chunks of 1,000 with the event loop turned between chunks, so each client's
// timers and send attempts run inside the measured time: `call` sums the chunks (what the caller
// waits for), `all in` is the wall time of the round.

import net from 'node:net'
import { createRequire } from 'node:module'
import { PostHog } from 'posthog-node'
import { Analytics } from '@segment/analytics-node'

const require = createRequire(import.meta.url)
const { Client } = require(process.env.AGENTTALLY_PACKAGE || '../index.js')

const CALLS = Number(process.argv[2] ?? 200_000)
const CHUNK = 1_000

const PROPS = {
  agent_id: 'bugfix-agent',
  task_type: 'bug_fix',
  provider: 'openai',
  model: 'gpt-4o',
  input_tokens: 1_200,
  output_tokens: 300,
  cost_usd: '0.006',
}

async function closedPort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

/** Best of three rounds: `{ call, all }` in µs per call. */
async function measure(fn) {
  for (let i = 0; i < Math.min(CALLS / 10, 20_000); i++) fn(i)
  await turn()
  let best = { call: Infinity, all: Infinity }
  for (let round = 0; round < 3; round++) {
    let inCalls = 0
    const t0 = performance.now()
    for (let done = 0; done < CALLS; done += CHUNK) {
      const c0 = performance.now()
      for (let i = done; i < done + CHUNK; i++) fn(i)
      inCalls += performance.now() - c0
      await turn()
    }
    const all = performance.now() - t0
    best = {
      call: Math.min(best.call, (inCalls / CALLS) * 1e3),
      all: Math.min(best.all, (all / CALLS) * 1e3),
    }
  }
  return best
}

const port = await closedPort()
const host = `http://127.0.0.1:${port}`

const at = new Client({
  endpoint: host,
  overflow: 'drop_oldest',
  maxQueueEvents: 1 << 20,
  maxQueueBytes: 2 ** 31,
  exitTimeout: 0,
})
const usage = { input_tokens: PROPS.input_tokens, output_tokens: PROPS.output_tokens }
const agenttally = await measure(() =>
  at.track({
    eventType: 'provider.api_call',
    tenantId: 'acme',
    agentId: PROPS.agent_id,
    taskType: PROPS.task_type,
    provider: PROPS.provider,
    model: PROPS.model,
    usage,
    costUsd: PROPS.cost_usd,
  }),
)
await at.shutdown(0).catch(() => {})

const ph = new PostHog('phc_bench', {
  host,
  maxQueueSize: 10_000_000,
  fetchRetryCount: 0,
  disableGeoip: true,
})
ph.on?.('error', () => {})
const posthog = await measure(() =>
  ph.capture({ distinctId: 'acme', event: 'agent_call', properties: PROPS }),
)
ph.disable?.()

const seg = new Analytics({ writeKey: 'bench', host, maxRetries: 0 })
seg.on('error', () => {})
const segment = await measure(() =>
  seg.track({ userId: 'acme', event: 'agent_call', properties: PROPS }),
)

const fmt = (r) => `call ${r.call.toFixed(2)} µs, all in ${r.all.toFixed(2)} µs`
console.log(`calls per round: ${CALLS} (best of 3), node ${process.version}`)
console.log(`agenttally  track   ${fmt(agenttally)}`)
console.log(`posthog-node capture ${fmt(posthog)}`)
console.log(`segment-node track  ${fmt(segment)}`)
const ratio = (a, b) => `${(b.call / a.call).toFixed(1)}x (all in ${(b.all / a.all).toFixed(1)}x)`
console.log(`agenttally vs posthog-node: ${ratio(agenttally, posthog)} faster`)
console.log(`agenttally vs segment-node: ${ratio(agenttally, segment)} faster`)
process.exit(0)
