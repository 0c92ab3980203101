'use strict'
// client.run(...): started → calls → completed, or failed with the error's code (then rethrown);
// usage from OpenAI and Anthropic SDK response objects.

const test = require('node:test')
const assert = require('node:assert/strict')
const { PACKAGE, collector, query, tenant } = require('./helpers.cjs')
const { Client, PriceBook } = require(PACKAGE)

// As the SDKs return them (openai: chat.completions.create(...).usage; anthropic:
// messages.create(...).usage).
const OPENAI_USAGE = {
  prompt_tokens: 1200,
  completion_tokens: 300,
  total_tokens: 1500,
  prompt_tokens_details: { cached_tokens: 200, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
}
const ANTHROPIC_USAGE = {
  input_tokens: 50,
  output_tokens: 400,
  cache_creation_input_tokens: 1000,
  cache_read_input_tokens: 18000,
  cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 0 },
  server_tool_use: null,
  service_tier: 'standard',
}

test('run: completed with summed cost; failed with the code, then rethrown', async () => {
  const c = await collector()
  const t = tenant()
  const book = PriceBook.builtin()
  const client = new Client({ endpoint: c.endpoint, apiKey: c.apiKey, priceBook: book })

  let cost = null
  const result = await client.run(
    { tenantId: t, agentId: 'bugfix-agent', taskType: 'bug_fix' },
    async (run) => {
      run.recordCall({ provider: 'openai', model: 'gpt-4o', usage: OPENAI_USAGE })
      await new Promise((r) => setTimeout(r, 5))
      run.recordCall({ provider: 'anthropic', model: 'claude-sonnet-4-5', usage: ANTHROPIC_USAGE })
      cost = run.cost
      return 'patched'
    },
  )
  assert.equal(result, 'patched')
  const expected = [
    book.cost('gpt-4o', { input_tokens: 1000, cached_input_tokens: 200, output_tokens: 300 }).usd,
    book.cost('claude-sonnet-4-5', {
      input_tokens: 50,
      cached_input_tokens: 18000,
      cache_write_tokens: 1000,
      output_tokens: 400,
    }).usd,
  ]
  assert.ok(expected.every((u) => typeof u === 'string'))

  class RateLimited extends Error {
    code = 'rate_limited'
  }
  const boom = new RateLimited('429')
  await assert.rejects(
    client.run({ tenantId: t, agentId: 'a2', taskType: 'feature' }, async () => {
      throw boom
    }),
    (err) => err === boom,
  )
  await assert.rejects(
    client.run({ tenantId: t, agentId: 'a3', taskType: 'feature' }, () => {
      null.x
    }),
    TypeError,
  )
  await client.run({ tenantId: t, agentId: 'a4', taskType: 'feature' }, (run) => run.timeout())
  await client.shutdown(30_000)

  const rows = await query(
    `SELECT agent_id, event_type, coalesce(error_code, ''), coalesce(cost_usd::text, ''),
            coalesce(input_tokens, 0), coalesce(cached_input_tokens, 0), coalesce(cache_write_tokens, 0),
            coalesce(output_tokens, 0), correlation_id
       FROM events WHERE tenant_id = '${t}' AND event_type LIKE 'agent.%' AND event_type <> 'agent.started'
      ORDER BY agent_id`,
  )
  const sum = (a, b) => {
    const scale = Math.max(a.split('.')[1]?.length ?? 0, b.split('.')[1]?.length ?? 0)
    const units = (s) =>
      BigInt(s.replace('.', '') + '0'.repeat(scale - (s.split('.')[1]?.length ?? 0)))
    const u = (units(a) + units(b)).toString().padStart(scale + 1, '0')
    return scale ? `${u.slice(0, -scale)}.${u.slice(-scale)}` : u
  }
  const strip = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s)
  assert.equal(strip(cost), strip(sum(expected[0], expected[1])))
  assert.deepEqual(
    rows.map((r) => r.slice(0, 3)),
    [
      ['a2', 'agent.failed', 'rate_limited'],
      ['a3', 'agent.failed', 'TypeError'],
      ['a4', 'agent.timeout', 'timeout'],
      ['bugfix-agent', 'agent.completed', ''],
    ],
  )
  const done = rows[3]
  assert.equal(strip(done[3]), strip(cost))
  assert.deepEqual(done.slice(4, 8).map(Number), [1050, 18200, 1000, 700])
  // started + 2 calls + completed share the run's correlation id; the other runs have 2 events.
  const perRun = await query(
    `SELECT count(*) FROM events WHERE tenant_id = '${t}' GROUP BY correlation_id ORDER BY 1`,
  )
  assert.deepEqual(perRun, [['2'], ['2'], ['2'], ['4']])
  const ofDone = await query(`SELECT count(*) FROM events WHERE correlation_id = '${done[8]}'`)
  assert.equal(Number(ofDone[0][0]), 4)
})
