'use strict'
// Process exit: a bounded best-effort flush delivers what short-lived processes tracked without
// shutdown(), and nothing in the addon keeps a process alive.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { PACKAGE, collector, query, tenant, closedPort } = require('./helpers.cjs')

const SHORT = `
const { Client } = require(process.env.T_PACKAGE)
const c = new Client({ endpoint: process.env.T_ENDPOINT, apiKey: process.env.T_KEY })
for (let i = 0; i < 100; i++) {
  c.track({ eventType: 'provider.api_call', tenantId: process.env.T_TENANT, provider: 'openai',
            model: 'gpt-4o', usage: { input_tokens: 1 }, metadata: { p: Number(process.env.T_N) } })
}
if (process.env.T_EXIT) process.exit(0)
`

/** Run `code` in a fresh node; resolves to its wall time (ms) from spawn to exit. */
function runNode(code, env) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const p = spawn(process.execPath, ['-e', code], {
      env: { ...process.env, T_PACKAGE: PACKAGE, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let err = ''
    p.stderr.on('data', (d) => {
      err += d
    })
    p.on('error', reject)
    p.on('exit', (status) => {
      if (status !== 0) reject(new Error(`node exited ${status}: ${err}`))
      else resolve(performance.now() - t0)
    })
  })
}

async function pool(n, width, fn) {
  const out = new Array(n)
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++
        out[i] = await fn(i)
      }
    }),
  )
  return out
}

test('100 short-lived processes × 100 events, no shutdown: all delivered, each exits within 3 s', async () => {
  const c = await collector()
  const t = tenant()
  const env = { T_ENDPOINT: c.endpoint, T_KEY: c.apiKey, T_TENANT: t }
  const times = await pool(100, 4, (n) => runNode(SHORT, { ...env, T_N: String(n) }))
  const slowest = Math.max(...times)
  console.log(
    `exit: slowest process ${slowest.toFixed(0)} ms, median ${times.sort((a, b) => a - b)[50].toFixed(0)} ms`,
  )
  assert.ok(slowest < 3000, `slowest process took ${slowest} ms`)
  const rows = await query(
    `SELECT count(*), count(DISTINCT id), count(DISTINCT metadata->>'p') FROM events WHERE tenant_id = '${t}'`,
  )
  assert.deepEqual(rows[0].map(Number), [10_000, 10_000, 100])
})

test('process.exit() still delivers (bounded wait in the exit hook)', async () => {
  const c = await collector()
  const t = tenant()
  await runNode(SHORT, {
    T_ENDPOINT: c.endpoint,
    T_KEY: c.apiKey,
    T_TENANT: t,
    T_N: '0',
    T_EXIT: '1',
  })
  const rows = await query(`SELECT count(*) FROM events WHERE tenant_id = '${t}'`)
  assert.equal(Number(rows[0][0]), 100)
})

test('an unreachable collector never holds the exit beyond exitTimeout', async () => {
  const port = await closedPort()
  for (const budget of [1000, 0]) {
    const ms = await runNode(
      `const { Client } = require(process.env.T_PACKAGE)
       const c = new Client({ endpoint: 'http://127.0.0.1:${port}', exitTimeout: ${budget} })
       for (let i = 0; i < 1000; i++) c.track({ eventType: 'agent.created', tenantId: 'acme', agentId: 'a' })`,
      {},
    )
    assert.ok(ms < budget + 1000, `exit took ${ms} ms with exitTimeout ${budget}`)
  }
})

test('an idle client does not keep the process alive', async () => {
  const ms = await runNode(
    `const { Client } = require(process.env.T_PACKAGE)
     new Client({ endpoint: 'http://127.0.0.1:1' })`,
    {},
  )
  assert.ok(ms < 1500, `exit took ${ms} ms`)
})
