'use strict'
// 10,000 events arrive exactly once, with exact decimals, read back from PostgreSQL.

const test = require('node:test')
const assert = require('node:assert/strict')
const { PACKAGE, collector, query, tenant } = require('./helpers.cjs')
const { Client } = require(PACKAGE)

const TOTAL = 10_000

/** i × 0.0000012345 + 0.1 as exact decimal text, and in units of 1e-10 as a BigInt. */
function costOf(i) {
  const units = BigInt(i) * 12_345n + 1_000_000_000n
  return { text: decimalText(units, 10), units }
}

function decimalText(units, scale) {
  const s = units.toString().padStart(scale + 1, '0')
  return `${s.slice(0, -scale)}.${s.slice(-scale)}`
}

test('10,000 events arrive exactly once with exact decimals', async () => {
  const c = await collector()
  const t = tenant()
  const client = new Client({ endpoint: c.endpoint, apiKey: c.apiKey })
  const ids = new Set()
  let expected = 0n
  for (let i = 0; i < TOTAL; i++) {
    const cost = costOf(i)
    expected += cost.units
    ids.add(
      client.track({
        eventType: 'provider.api_call',
        tenantId: t,
        provider: 'openai',
        model: 'gpt-4o',
        costUsd: cost.text,
        usage: { input_tokens: 10, output_tokens: i % 7 },
        metadata: { i },
      }),
    )
  }
  assert.equal(ids.size, TOTAL)
  await client.flush(60_000)
  const stats = client.stats()
  await client.shutdown(10_000)
  assert.equal(stats.accepted, TOTAL)
  assert.equal(stats.sent, TOTAL)
  assert.equal(stats.duplicates, 0)
  assert.equal(stats.rejected, 0)
  assert.equal(stats.dropped.total, 0)
  // Delivered: nothing in flight; the adaptive limit stays within 1..=maxInFlight (16).
  assert.equal(stats.requestsInFlight, 0)
  assert.ok(stats.inFlightLimit >= 1 && stats.inFlightLimit <= 16, `limit ${stats.inFlightLimit}`)

  const [[count, distinct, sum, outputs]] = await query(
    `SELECT count(*), count(DISTINCT id), sum(cost_usd), sum(output_tokens) FROM events WHERE tenant_id = '${t}'`,
  )
  assert.equal(Number(count), TOTAL)
  assert.equal(Number(distinct), TOTAL)
  // NUMERIC keeps every digit: the sum equals the exact BigInt sum of what was sent.
  assert.equal(sum.replace(/0+$/, ''), decimalText(expected, 10).replace(/0+$/, ''))
  let outs = 0
  for (let i = 0; i < TOTAL; i++) outs += i % 7
  assert.equal(Number(outputs), outs)
  const stored = new Set(
    (await query(`SELECT id FROM events WHERE tenant_id = '${t}'`)).map((r) => r[0]),
  )
  assert.deepEqual(stored, ids)
})

test('every field arrives as given', async () => {
  const c = await collector()
  const t = tenant()
  const client = new Client({ endpoint: c.endpoint, apiKey: c.apiKey })
  // Within the collector's retention window; milliseconds kept.
  const at = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000 + 7_089)
  const id = client.track({
    eventType: 'provider.api_call',
    tenantId: t,
    correlationId: 'corr-1',
    userId: 'user-1',
    agentId: 'agent-1',
    workflowId: 'wf-1',
    durationMs: 1234,
    queueMs: 56,
    costUsd: '0.0000000001',
    provider: 'anthropic',
    model: 'claude-sonnet-4-5',
    taskType: 'bug_fix',
    usage: { input_tokens: 7, cache_read_input_tokens: 3, output_tokens: 2 },
    success: false,
    errorCode: 'rate_limited',
    metadata: { nested: { list: [1, 'two', null, true] } },
    timestamp: at,
  })
  await client.flush(30_000)
  assert.equal(client.stats().sent, 1, JSON.stringify(client.stats()))
  await client.shutdown(30_000)
  const rows = await query(
    `SELECT id, correlation_id, user_id, agent_id, workflow_id, duration_ms, queue_ms, cost_usd,
            provider, model, task_type, input_tokens, cached_input_tokens, output_tokens, success,
            error_code, metadata::text, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS')
       FROM events WHERE tenant_id = '${t}'`,
  )
  assert.deepEqual(rows, [
    [
      id,
      'corr-1',
      'user-1',
      'agent-1',
      'wf-1',
      '1234',
      '56',
      '0.0000000001',
      'anthropic',
      'claude-sonnet-4-5',
      'bug_fix',
      '7',
      '3',
      '2',
      'f',
      'rate_limited',
      '{"nested": {"list": [1, "two", null, true]}}',
      at.toISOString().slice(0, 23),
    ],
  ])
})
