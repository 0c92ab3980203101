'use strict'
// examples/node runs against the collector (ci.sh builds it from TypeScript in a scratch project
// that installed the packed tarball, and passes its entry in AGENTTALLY_EXAMPLE).

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const { collector, query, tenant } = require('./helpers.cjs')

test(
  'examples/node: runs recorded as the collector stores them',
  {
    skip: process.env.AGENTTALLY_EXAMPLE ? false : 'AGENTTALLY_EXAMPLE not set (ci.sh sets it)',
  },
  async () => {
    const c = await collector()
    const t = tenant()
    const out = execFileSync(process.execPath, [process.env.AGENTTALLY_EXAMPLE], {
      env: {
        ...process.env,
        AGENTTALLY_ENDPOINT: c.endpoint,
        AGENTTALLY_API_KEY: c.apiKey,
        AGENTTALLY_TENANT: t,
      },
      encoding: 'utf8',
      timeout: 60_000,
    })
    assert.match(out, /2\/3 tasks done; 11 events sent, 0 dropped/)
    assert.match(out, /rejected as expected: VALIDATION event\.duration_ms/)
    const rows = await query(
      `SELECT event_type, coalesce(error_code, ''), count(*) FROM events WHERE tenant_id = '${t}'
      GROUP BY 1, 2 ORDER BY 1, 2`,
    )
    assert.deepEqual(rows, [
      ['agent.completed', '', '2'],
      ['agent.failed', 'provider_overloaded', '1'],
      ['agent.started', '', '3'],
      ['provider.api_call', '', '5'],
    ])
    const [[cost]] = await query(
      `SELECT sum(cost_usd) FROM events WHERE tenant_id = '${t}' AND event_type = 'agent.completed'`,
    )
    assert.ok(Number(cost) > 0)
  },
)
