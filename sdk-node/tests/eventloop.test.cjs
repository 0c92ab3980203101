'use strict'
// flush() waits off the main thread: while it waits on a slow endpoint, timers fire on time.

const test = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { PACKAGE } = require('./helpers.cjs')
const { Client, AgentTallyError } = require(PACKAGE)

test('setInterval keeps firing on time while flush() waits on a slow endpoint', async () => {
  // Accepts connections and never answers: every request waits for the client's timeout.
  const sockets = []
  const server = net.createServer((s) => sockets.push(s))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = new Client({
    endpoint: `http://127.0.0.1:${server.address().port}`,
    exitTimeout: 0,
  })
  for (let i = 0; i < 100; i++)
    client.track({ eventType: 'agent.created', tenantId: 'acme', agentId: 'a' })

  const PERIOD = 10
  const ticks = []
  const timer = setInterval(() => ticks.push(performance.now()), PERIOD)
  const t0 = performance.now()
  const pending = client.flush(1500)
  const callMs = performance.now() - t0
  let caught = null
  try {
    await pending
  } catch (err) {
    caught = err
  }
  const waited = performance.now() - t0
  clearInterval(timer)

  assert.ok(caught instanceof AgentTallyError && caught.code === 'TIMEOUT', String(caught))
  assert.ok(callMs < 20, `flush() itself took ${callMs} ms`)
  assert.ok(waited >= 1400, `flush settled after ${waited} ms`)
  const gaps = ticks.slice(1).map((t, i) => t - ticks[i])
  const worst = Math.max(...gaps)
  console.log(
    `event loop: ${ticks.length} ticks in ${waited.toFixed(0)} ms, worst gap ${worst.toFixed(1)} ms`,
  )
  assert.ok(ticks.length >= (waited / PERIOD) * 0.8, `only ${ticks.length} ticks in ${waited} ms`)
  assert.ok(worst < 100, `a tick came ${worst} ms after the previous one`)

  await client.shutdown(0).catch(() => {})
  for (const s of sockets) s.destroy()
  server.close()
})
