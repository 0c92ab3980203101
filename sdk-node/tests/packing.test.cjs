'use strict'
// track() hands the addon an event packed in one call (strings joined, numbers in shared slots,
// everything else as it is): what arrives in PostgreSQL is what was given, whatever the strings
// contain, and values of other types still fail with the field and the rule.

const test = require('node:test')
const assert = require('node:assert/strict')
const vm = require('node:vm')
const { PACKAGE, collector, query, tenant } = require('./helpers.cjs')
const { Client, AgentTallyError } = require(PACKAGE)

test('strings, numbers and usage arrive as given', async () => {
  const c = await collector()
  const t = tenant()
  const client = new Client({ endpoint: c.endpoint, apiKey: c.apiKey })
  const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000
  const base = { eventType: 'provider.api_call', tenantId: t, provider: 'openai', model: 'gpt-4o' }
  const inherited = Object.create({ input_tokens: 9 })
  inherited.output_tokens = 3
  // [event, the row expected: user_id, agent_id, workflow_id, correlation_id (null: the id),
  //  input, cached, output tokens, duration_ms, success, ts (null: not checked)]
  const cases = [
    [
      { ...base, userId: 'ü', agentId: 'agent-é😀-日本', workflowId: 'ü😀'.repeat(85) },
      ['ü', 'agent-é😀-日本', 'ü😀'.repeat(85), null, '', '', '', '', 't', null],
    ],
    // Lone surrogates are stored as U+FFFD, also when two of them meet across fields.
    [
      { ...base, userId: 'a\uD83D', agentId: '\uDE00b', workflowId: 'x\uD83D\uDE00' },
      ['a\uFFFD', '\uFFFDb', 'x😀', null, '', '', '', '', 't', null],
    ],
    [
      { ...base, correlationId: '\uD83D', userId: '\uDE00', usage: inherited },
      ['\uFFFD', '', '', '\uFFFD', '9', '0', '3', '', 't', null],
    ],
    [
      {
        ...base,
        agentId: 'openai-shaped',
        usage: {
          prompt_tokens: 1200,
          completion_tokens: 300,
          total_tokens: 1500,
          prompt_tokens_details: { cached_tokens: 200 },
        },
        durationMs: 0,
        success: false,
        timestamp: new Date(hour + 1_234),
      },
      ['', 'openai-shaped', '', null, '1000', '200', '300', '0', 'f', hour + 1_234],
    ],
    [
      {
        ...base,
        agentId: 'text-timestamp',
        usage: { input_tokens: 1_000_000_000_000, output_tokens: undefined },
        timestamp: new Date(hour + 5_678).toISOString(),
      },
      ['', 'text-timestamp', '', null, '1000000000000', '0', '0', '', 't', hour + 5_678],
    ],
    [
      {
        ...base,
        agentId: 'other-realm-date',
        timestamp: vm.runInNewContext(`new Date(${hour + 9_012})`),
      },
      ['', 'other-realm-date', '', null, '', '', '', '', 't', hour + 9_012],
    ],
  ]
  const expected = new Map()
  for (const [event, row] of cases) {
    const id = client.track(event)
    expected.set(
      id,
      row.map((v, i) => (i === 3 && v === null ? id : v)),
    )
  }
  // A getter that tracks while its own event is being read: each event keeps its own fields.
  const nestedIds = []
  const outer = client.track({
    ...base,
    agentId: 'outer',
    usage: { input_tokens: 1, output_tokens: 2 },
    metadata: {
      get nested() {
        nestedIds.push(
          client.track({ ...base, agentId: 'inner', usage: { input_tokens: 3, output_tokens: 4 } }),
        )
        return 'read'
      },
    },
  })
  expected.set(outer, ['', 'outer', '', outer, '1', '0', '2', '', 't', null])
  assert.equal(nestedIds.length, 1)
  expected.set(nestedIds[0], ['', 'inner', '', nestedIds[0], '3', '0', '4', '', 't', null])

  await client.flush(30_000)
  assert.equal(client.stats().sent, expected.size, JSON.stringify(client.stats()))
  await client.shutdown(10_000)
  const rows = await query(
    `SELECT id, coalesce(user_id, ''), coalesce(agent_id, ''), coalesce(workflow_id, ''),
            correlation_id, coalesce(input_tokens::text, ''), coalesce(cached_input_tokens::text, ''),
            coalesce(output_tokens::text, ''), coalesce(duration_ms::text, ''), success,
            (extract(epoch FROM ts) * 1000)::bigint, metadata::text
       FROM events WHERE tenant_id = '${t}'`,
  )
  assert.equal(rows.length, expected.size)
  for (const [id, ...got] of rows) {
    const want = expected.get(id)
    assert.ok(want, `unexpected event ${id}`)
    const metadata = got.pop()
    const ts = got.pop()
    assert.deepEqual(got, want.slice(0, 9), `event ${id}`)
    if (want[9] !== null) assert.equal(Number(ts), want[9], `timestamp of ${id}`)
    if (id === outer) assert.equal(metadata, '{"nested": "read"}')
  }
})

test('values of other types name the field; a failed call leaves nothing behind', async () => {
  const client = new Client({ disabled: true })
  const base = { eventType: 'provider.api_call', tenantId: 'acme', provider: 'openai' }
  const cases = [
    [{ ...base, success: 'yes' }, 'event.success: must be a boolean, got string'],
    [{ ...base, timestamp: 5 }, 'event.timestamp: must be a Date or RFC 3339 text, got number'],
    [{ ...base, timestamp: new Date(NaN) }, 'event.timestamp: must be a valid Date'],
    [{ ...base, usage: [] }, 'event.usage: must be a plain object, got array'],
    [{ ...base, usage: 7 }, 'event.usage: must be a plain object, got number'],
    [{ ...base, usage: { input_tokens: 1.5 } }, 'event.usage.input_tokens: must be a non-negative'],
    [{ ...base, usage: { input_tokens: '5' } }, 'event.usage.input_tokens: must be a non-negative'],
    [{ ...base, queueMs: '5' }, 'event.queue_ms: must be a number, got string'],
    [{ ...base, durationMs: NaN }, 'event.duration_ms: must be an integer, got NaN'],
    [{ ...base, agentId: 'a\0b' }, 'event.agent_id: must not contain NUL'],
    [{ ...base, tenantId: 5 }, 'event.tenant_id: must be a string, got number'],
    [{ ...base, eventType: undefined }, 'event.event_type: is required'],
    [{ ...base, costUsd: 1 }, 'event.cost_usd: must be a decimal string such as'],
    [{ ...base, model: ['gpt-4o'] }, 'event.model: must be a string, got array'],
    // The first field in the documented order is the one reported.
    [{ ...base, userId: 1, durationMs: 'x' }, 'event.user_id: must be a string, got number'],
  ]
  for (const [event, message] of cases) {
    let caught
    try {
      client.track(event)
    } catch (err) {
      caught = err
    }
    assert.ok(caught instanceof AgentTallyError, `${JSON.stringify(event)}: ${caught}`)
    assert.equal(caught.code, 'VALIDATION')
    assert.ok(caught.message.startsWith(message), `${caught.message} should start with ${message}`)
    // The next call packs its own event, nothing of the failed one.
    assert.equal(typeof client.track({ ...base, model: 'gpt-4o' }), 'string')
  }
  await client.shutdown()
})
