// worker_threads: a client per worker, the addon loaded in several workers at once (ESM entry).

import test from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { PACKAGE, collector, query, tenant } = require('./helpers.cjs')

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
import(workerData.entry).then(async ({ Client }) => {
  const c = new Client({ endpoint: workerData.endpoint, apiKey: workerData.apiKey })
  for (let i = 0; i < workerData.count; i++) {
    c.track({ eventType: 'provider.api_call', tenantId: workerData.tenant, provider: 'openai',
              model: 'gpt-4o', costUsd: '0.000001', metadata: { w: workerData.w, i } })
  }
  if (workerData.shutdown) {
    await c.shutdown(60000)
    parentPort.postMessage(c.stats())
  }
})
`

function run(workerData) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData })
    let stats = null
    w.on('message', (m) => {
      stats = m
    })
    w.on('error', reject)
    w.on('exit', (code) =>
      code === 0 ? resolve(stats) : reject(new Error(`worker exited ${code}`)),
    )
  })
}

const entry = require.resolve(PACKAGE).replace(/index\.js$/, 'index.mjs')

test('4 workers × 10,000 events at once: all delivered, clean shutdown', async () => {
  const c = await collector()
  const t = tenant()
  const all = await Promise.all(
    [0, 1, 2, 3].map((w) =>
      run({
        entry,
        endpoint: c.endpoint,
        apiKey: c.apiKey,
        tenant: t,
        w,
        count: 10_000,
        shutdown: true,
      }),
    ),
  )
  for (const s of all) {
    assert.equal(s.accepted, 10_000)
    assert.equal(s.sent, 10_000)
    assert.equal(s.dropped.total, 0)
  }
  const rows = await query(
    `SELECT metadata->>'w', count(*), count(DISTINCT id), sum(cost_usd) FROM events
      WHERE tenant_id = '${t}' GROUP BY 1 ORDER BY 1`,
  )
  assert.deepEqual(
    rows,
    [0, 1, 2, 3].map((w) => [String(w), '10000', '10000', '0.010000']),
  )
})

test('a worker that ends without shutdown delivers at its exit', async () => {
  const c = await collector()
  const t = tenant()
  await run({
    entry,
    endpoint: c.endpoint,
    apiKey: c.apiKey,
    tenant: t,
    w: 0,
    count: 500,
    shutdown: false,
  })
  // The worker's exit flush is bounded by exitTimeout (2 s); allow its delivery to land.
  let n = 0
  for (let i = 0; i < 50 && n < 500; i++) {
    n = Number((await query(`SELECT count(*) FROM events WHERE tenant_id = '${t}'`))[0][0])
    if (n < 500) await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(n, 500)
})
