'use strict'
// Errors are AgentTallyError instances with a stable code and the field in the message.

const test = require('node:test')
const assert = require('node:assert/strict')
const { PACKAGE, closedPort } = require('./helpers.cjs')
const { Client, PriceBook, AgentTallyError } = require(PACKAGE)

function throwsCode(fn, code, field) {
  let caught
  try {
    fn()
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof AgentTallyError, `expected AgentTallyError, got ${caught}`)
  assert.ok(caught instanceof Error)
  assert.equal(caught.name, 'AgentTallyError')
  assert.equal(caught.code, code, caught.message)
  assert.ok(caught.message.includes(field), `${caught.message} should name ${field}`)
  return caught
}

async function rejectsCode(promise, code, text) {
  let caught
  try {
    await promise
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof AgentTallyError, `expected AgentTallyError, got ${caught}`)
  assert.equal(caught.code, code, caught.message)
  assert.ok(caught.message.includes(text), caught.message)
}

test('VALIDATION: events name the field', async () => {
  const client = new Client({ disabled: true })
  const base = { eventType: 'provider.api_call', tenantId: 'acme' }
  const e = throwsCode(
    () => client.track({ ...base, tenantId: '' }),
    'VALIDATION',
    'event.tenant_id',
  )
  assert.equal(e.field, 'tenant_id')
  throwsCode(
    () => client.track({ eventType: 'provider.api_call' }),
    'VALIDATION',
    'event.tenant_id',
  )
  throwsCode(() => client.track({ ...base, eventType: 'nope' }), 'VALIDATION', 'event.event_type')
  throwsCode(() => client.track({ ...base, costUsd: 0.1 }), 'VALIDATION', 'event.cost_usd')
  throwsCode(() => client.track({ ...base, costUsd: '1,5' }), 'VALIDATION', 'event.cost_usd')
  throwsCode(() => client.track({ ...base, durationMs: -5 }), 'VALIDATION', 'event.duration_ms')
  throwsCode(() => client.track({ ...base, durationMs: 1.5 }), 'VALIDATION', 'event.duration_ms')
  throwsCode(() => client.track({ ...base, userId: 42 }), 'VALIDATION', 'event.user_id')
  throwsCode(
    () => client.track({ ...base, usage: { output_tokens: -1 } }),
    'VALIDATION',
    'event.usage.output_tokens',
  )
  throwsCode(() => client.track({ ...base, usage: { bogus: 1 } }), 'VALIDATION', 'event.usage')
  throwsCode(() => client.track({ ...base, metadata: [1] }), 'VALIDATION', 'event.metadata')
  throwsCode(
    () => client.track({ ...base, metadata: { f: () => 1 } }),
    'VALIDATION',
    'event.metadata.f',
  )
  throwsCode(
    () => client.track({ ...base, timestamp: 'yesterday' }),
    'VALIDATION',
    'event.timestamp',
  )
  throwsCode(
    () => client.track({ ...base, serviceTier: 'gold' }),
    'VALIDATION',
    'event.service_tier',
  )
  throwsCode(() => client.track(null), 'VALIDATION', 'event')
  await client.shutdown()
})

test('CONFIG: settings name themselves', () => {
  const ok = { endpoint: 'http://127.0.0.1:1', disabled: true }
  throwsCode(() => new Client({ ...ok, flushAt: -1 }), 'CONFIG', 'config.flush_at')
  throwsCode(() => new Client({ ...ok, flushAt: 0 }), 'CONFIG', 'config.flush_at')
  throwsCode(() => new Client({ ...ok, flushInterval: 'soon' }), 'CONFIG', 'config.flush_interval')
  throwsCode(() => new Client({ ...ok, overflow: 'block' }), 'CONFIG', 'config.overflow')
  throwsCode(() => new Client({ endpoint: 'ftp://x' }), 'CONFIG', 'config.endpoint')
  throwsCode(() => new Client({ ...ok, gzip: 'yes' }), 'CONFIG', 'config.gzip')
  throwsCode(() => new Client({ ...ok, exitTimeout: -1 }), 'CONFIG', 'config.exit_timeout')
  throwsCode(() => new Client({ ...ok, priceBook: {} }), 'CONFIG', 'config.price_book')
})

test('CLOSED after shutdown; shutdown twice is fine', async () => {
  const client = new Client({ endpoint: `http://127.0.0.1:${await closedPort()}` })
  await client.shutdown(0)
  await client.shutdown(0)
  throwsCode(
    () => client.track({ eventType: 'agent.created', tenantId: 'acme', agentId: 'a' }),
    'CLOSED',
    'closed',
  )
})

test('QUEUE_FULL with drop_newest, TIMEOUT on flush', async () => {
  const port = await closedPort()
  const client = new Client({
    endpoint: `http://127.0.0.1:${port}`,
    maxQueueEvents: 2,
    flushAt: 100,
    exitTimeout: 0,
  })
  const ev = { eventType: 'agent.created', tenantId: 'acme', agentId: 'a' }
  // The worker may take queued events in flight at any moment; keep tracking until the queue
  // (2 events plus what is in flight) is full.
  let full = null
  for (let i = 0; i < 10_000 && full === null; i++) {
    try {
      client.track(ev)
    } catch (err) {
      full = err
    }
  }
  throwsCode(
    () => {
      if (full) throw full
    },
    'QUEUE_FULL',
    'queue full',
  )
  assert.equal(client.stats().dropped.queueFull, 1)
  await rejectsCode(client.flush(200), 'TIMEOUT', 'flush')
  await client.shutdown(0).catch(() => {})
})

test('PriceBook: exact decimal strings, errors with codes', () => {
  const book = PriceBook.builtin()
  assert.ok(book.size > 0)
  const cost = book.cost('gpt-4o', { input_tokens: 1_000_000, output_tokens: 1_000_000 })
  assert.equal(typeof cost.usd, 'string')
  assert.match(cost.usd, /^\d+(\.\d+)?$/)
  assert.equal(typeof cost.status, 'string')
  assert.equal(typeof cost.priceVersion, 'string')
  const unpriced = book.cost('no-such-model', { input_tokens: 1 })
  assert.equal(unpriced.usd, null)
  assert.equal(unpriced.status, 'unpriced')
  // An OpenAI response usage object prices like its canonical buckets.
  const openai = book.cost('gpt-4o', {
    prompt_tokens: 1200,
    completion_tokens: 300,
    total_tokens: 1500,
    prompt_tokens_details: { cached_tokens: 200 },
  })
  const canonical = book.cost('gpt-4o', {
    input_tokens: 1000,
    cached_input_tokens: 200,
    output_tokens: 300,
  })
  assert.equal(openai.usd, canonical.usd)
  throwsCode(
    () => book.cost('gpt-4o', { input_tokens: 1 }, { serviceTier: 'gold' }),
    'VALIDATION',
    'service_tier',
  )
  throwsCode(() => book.cost('gpt-4o', { input_tokens: 1 }, { at: 'x' }), 'VALIDATION', 'at')
  throwsCode(() => PriceBook.fromLitellmJson('/no/such/file.json'), 'PRICING', 'pricing')
  const lite = PriceBook.fromLitellmJson(
    JSON.stringify({
      'my-model': {
        input_cost_per_token: 0.0000025,
        output_cost_per_token: 0.00001,
        litellm_provider: 'openai',
      },
    }),
  )
  assert.equal(lite.cost('my-model', { input_tokens: 1000, output_tokens: 100 }).usd, '0.0035')
  assert.throws(() => new PriceBook(), TypeError)
})
