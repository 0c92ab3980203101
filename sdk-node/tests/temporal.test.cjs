'use strict'
// agenttally/temporal against a real Temporal dev server (the `temporal` CLI,
// AGENTTALLY_TEMPORAL_CLI) and the real collector: a three-activity workflow's exact events,
// replay with and without the interceptors, a re-run workflow task stored once, and the header
// through a child workflow and continue-as-new. One dev server and one worker for the file; the
// workflow code is bundled once with the interceptors and once without (for the replay test).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const crypto = require('node:crypto')
const { spawn, execFile } = require('node:child_process')
const { promisify } = require('node:util')
const { createRequire } = require('node:module')
const { PACKAGE, collector, query, tenant } = require('./helpers.cjs')

// Everything from the installed package's point of view: its @temporalio/* are the ones the
// interceptors see.
const pkgRequire = createRequire(path.join(PACKAGE, 'package.json'))
const { Client: Events, PriceBook } = pkgRequire('agenttally')
const temporal = pkgRequire('agenttally/temporal')
const { Worker, NativeConnection, bundleWorkflowCode, DefaultLogger, Runtime } =
  pkgRequire('@temporalio/worker')
const { Client, Connection, WorkflowFailedError } = pkgRequire('@temporalio/client')
const { Context } = pkgRequire('@temporalio/activity')
const { ApplicationFailure } = pkgRequire('@temporalio/common')

const CLI =
  process.env.AGENTTALLY_TEMPORAL_CLI || path.resolve(__dirname, '..', '.venv', 'bin', 'temporal')

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
  service_tier: 'standard',
}
const RECORDED_USAGE = { input_tokens: 2000, output_tokens: 100 }

async function freePort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A directory where the installed package and its @temporalio/* resolve (the scratch project
 * under ci.sh, else this package, which resolves itself by name). */
function appDir() {
  const marker = `${path.sep}node_modules${path.sep}`
  const at = PACKAGE.lastIndexOf(marker)
  return at < 0 ? path.resolve(__dirname, '..') : PACKAGE.slice(0, at)
}

/** The workflows file where the installed package's @temporalio/workflow resolves (the bundle
 * must hold one copy of it). */
function workflowsPath() {
  const source = path.join(__dirname, 'temporal-workflows.cjs')
  const marker = `${path.sep}node_modules${path.sep}`
  const at = PACKAGE.lastIndexOf(marker)
  if (at < 0) return source
  const target = path.join(PACKAGE.slice(0, at), 'agenttally-temporal-workflows.cjs')
  fs.copyFileSync(source, target)
  return target
}

let env = null

/** One dev server, one collector client, one worker (bundled once) for the whole file. */
async function setup() {
  if (env) return env
  env = (async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') })
    const port = await freePort()
    const server = spawn(
      CLI,
      [
        'server',
        'start-dev',
        '--headless',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--log-level',
        'error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let serverLog = ''
    server.stderr.on('data', (chunk) => {
      serverLog += chunk
    })
    process.on('exit', () => server.kill('SIGTERM'))
    const address = `127.0.0.1:${port}`
    const file = workflowsPath()
    const [withInterceptors, plain] = await Promise.all([
      bundleWorkflowCode({
        workflowsPath: file,
        workflowInterceptorModules: [temporal.WORKFLOW_INTERCEPTOR_MODULE],
        logger: new DefaultLogger('WARN'),
      }),
      bundleWorkflowCode({ workflowsPath: file, logger: new DefaultLogger('WARN') }),
    ])
    let connection
    for (let i = 0; ; i++) {
      try {
        connection = await NativeConnection.connect({ address })
        break
      } catch (err) {
        if (i > 120 || server.exitCode !== null) {
          throw new Error(`temporal dev server did not start: ${err.message}\n${serverLog}`)
        }
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    const c = await collector()
    const book = PriceBook.builtin()
    const events = new Events({
      endpoint: c.endpoint,
      apiKey: c.apiKey,
      priceBook: book,
      flushInterval: 100,
    })
    const options = { client: events, tenantId: 'default-tenant' }
    const worker = temporal.workerOptions(options)
    const sinkCalls = []
    const fn = worker.sinks.agenttally.event.fn
    worker.sinks.agenttally.event.fn = (info, ev) => {
      sinkCalls.push({ runId: info.runId, workflowId: info.workflowId, ev })
      fn(info, ev)
    }
    const taskQueue = `tq-${crypto.randomBytes(4).toString('hex')}`
    const w = await Worker.create({
      connection,
      taskQueue,
      workflowBundle: withInterceptors,
      activities,
      // Every workflow task after the first replays the history: nothing may be emitted then.
      maxCachedWorkflows: 0,
      interceptors: { activity: worker.interceptors.activity },
      sinks: worker.sinks,
    })
    const running = w.run()
    const client = new Client({
      connection: await Connection.connect({ address }),
      interceptors: temporal.clientInterceptors({ tenantId: 'default-tenant' }),
    })
    const stop = async () => {
      w.shutdown()
      await running
      await events.shutdown(10_000)
      await connection.close()
      await client.connection.close()
      server.kill('SIGTERM')
    }
    return {
      address,
      client,
      events,
      book,
      taskQueue,
      sinkCalls,
      stop,
      bundles: { withInterceptors, plain },
    }
  })()
  return env
}

test.after(async () => {
  if (env) await (await env).stop()
})

const activities = {
  async plan(topic) {
    return {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      model: 'gpt-4o',
      choices: [{ index: 0, message: { role: 'assistant', content: `plan for ${topic}` } }],
      usage: OPENAI_USAGE,
    }
  },
  async draft() {
    if (Context.current().info.attempt === 1) {
      throw ApplicationFailure.retryable('rate limited', 'RateLimited')
    }
    assert.equal(
      temporal.recordCall({ provider: 'openai', model: 'gpt-4o-mini', usage: RECORDED_USAGE }),
      true,
    )
    return {
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'draft' }],
      usage: ANTHROPIC_USAGE,
    }
  },
  async publish() {
    throw ApplicationFailure.nonRetryable('the reviewer said no', 'PublishRejected')
  },
  async note(text) {
    return text
  },
  async slow() {
    const ctx = Context.current()
    for (let i = 0; i < 40; i++) {
      ctx.heartbeat(i)
      await ctx.sleep(100)
    }
    return 'late'
  },
}

function strip(s) {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s
}

test('a workflow with three activities stores exactly its events, with fields and costs', async () => {
  const { client, events, book, taskQueue } = await setup()
  const t = tenant()
  const workflowId = `order-${crypto.randomBytes(4).toString('hex')}`
  const handle = await temporal.withContext(
    { tenantId: t, correlationId: 'order-42', userId: 'u-7', taskType: 'bug_fix' },
    () => client.workflow.start('agentWorkflow', { args: ['refunds'], taskQueue, workflowId }),
  )
  await assert.rejects(handle.result(), WorkflowFailedError)
  await events.flush(30_000)

  const rows = await query(
    `SELECT event_type, agent_id, coalesce(metadata->'temporal'->>'attempt', ''),
            coalesce(error_code, ''), coalesce(provider || '/' || model, ''),
            coalesce(metadata->>'calls', ''), correlation_id, coalesce(user_id, ''),
            coalesce(task_type, ''), workflow_id, metadata->'temporal'->>'scope',
            metadata->'temporal'->>'workflow_run_id', coalesce(metadata->'temporal'->>'task_queue', ''),
            coalesce(metadata->'temporal'->>'workflow_type', ''),
            duration_ms IS NOT NULL, queue_ms IS NOT NULL, success,
            coalesce(cost_usd::text, ''), id
       FROM events WHERE tenant_id = '${t}'
      ORDER BY agent_id, coalesce(metadata->'temporal'->>'attempt', ''), event_type, provider`,
  )
  const summary = rows.map((r) => r.slice(0, 6))
  assert.deepEqual(summary, [
    ['agent.failed', 'agentWorkflow', '', 'PublishRejected', '', ''],
    ['agent.started', 'agentWorkflow', '', '', '', ''],
    ['agent.failed', 'draft', '1', 'RateLimited', '', '0'],
    ['agent.started', 'draft', '1', '', '', ''],
    ['agent.completed', 'draft', '2', '', '', '2'],
    ['agent.started', 'draft', '2', '', '', ''],
    ['provider.api_call', 'draft', '2', '', 'anthropic/claude-sonnet-4-5', ''],
    ['provider.api_call', 'draft', '2', '', 'openai/gpt-4o-mini', ''],
    ['agent.completed', 'plan', '1', '', '', '1'],
    ['agent.started', 'plan', '1', '', '', ''],
    ['provider.api_call', 'plan', '1', '', 'openai/gpt-4o', ''],
    ['agent.failed', 'publish', '1', 'PublishRejected', '', '0'],
    ['agent.started', 'publish', '1', '', '', ''],
  ])
  const runId = handle.firstExecutionRunId
  for (const r of rows) {
    const [type, , , , , , corr, user, task, wid, scope, run, tq, wtype] = r
    assert.equal(corr, 'order-42', `${type} correlation id`)
    assert.equal(user, 'u-7')
    assert.equal(task, 'bug_fix')
    assert.equal(wid, workflowId)
    assert.equal(run, runId)
    assert.equal(tq, taskQueue)
    assert.equal(wtype, 'agentWorkflow')
    assert.equal(scope, r[1] === 'agentWorkflow' ? 'workflow' : 'activity')
    const terminal = type !== 'agent.started' && type !== 'provider.api_call'
    assert.equal(r[14], terminal ? 't' : 'f', `${type} ${r[1]}: duration_ms`)
    const queued = scope === 'activity' && type !== 'provider.api_call'
    assert.equal(r[15], queued ? 't' : 'f', `${type} ${r[1]}: queue_ms`)
    assert.equal(r[16], type.endsWith('failed') ? 'f' : 't')
  }
  // Workflow event ids are derived from the run id and the event's place in the run.
  assert.equal(rows[1][18], temporal.workflowEventId(runId, 0))
  assert.equal(rows[0][18], temporal.workflowEventId(runId, 1))

  // Cost: each call priced by the book; each activity's outcome carries the sum of its calls.
  const cost = (i) => strip(rows[i][17])
  assert.equal(
    cost(10),
    strip(
      book.cost('gpt-4o', { input_tokens: 1000, cached_input_tokens: 200, output_tokens: 300 }).usd,
    ),
  )
  assert.equal(cost(7), strip(book.cost('gpt-4o-mini', RECORDED_USAGE).usd))
  assert.equal(cost(8), cost(10))
  const sum = await query(
    `SELECT sum(cost_usd)::text FROM events WHERE tenant_id = '${t}'
        AND event_type = 'provider.api_call' AND agent_id = 'draft'`,
  )
  assert.equal(cost(4), strip(sum[0][0]))
  assert.equal(cost(2), '')
  assert.equal(cost(11), '')
})

test('replay with and without the interceptors: no non-determinism, nothing emitted', async () => {
  const { client, taskQueue, bundles } = await setup()
  const workflowId = `replay-${crypto.randomBytes(4).toString('hex')}`
  const handle = await client.workflow.start('agentWorkflow', {
    args: ['replay'],
    taskQueue,
    workflowId,
  })
  await assert.rejects(handle.result(), WorkflowFailedError)
  const history = await handle.fetchHistory()

  for (const [name, bundle] of Object.entries(bundles)) {
    const replayEvents = new Events({ endpoint: 'http://127.0.0.1:9', disabled: false })
    const calls = []
    const s = temporal.sinks({ client: replayEvents, tenantId: 'replay' })
    const fn = s.agenttally.event.fn
    s.agenttally.event.fn = (info, ev) => {
      calls.push(ev)
      fn(info, ev)
    }
    await Worker.runReplayHistory({ workflowBundle: bundle, sinks: s }, history, workflowId)
    assert.deepEqual(calls, [], `${name}: the sink was called during replay`)
    assert.equal(replayEvents.stats().accepted, 0, `${name}: events were tracked`)
    await replayEvents.shutdown(0).catch(() => {})
  }
})

test('a re-run workflow task emits again with the same ids; stored once', async () => {
  const { client, events, taskQueue, sinkCalls } = await setup()
  const t = tenant()
  const workflowId = `flaky-${crypto.randomBytes(4).toString('hex')}`
  const before = events.stats().duplicates
  const handle = await temporal.withContext({ tenantId: t }, () =>
    client.workflow.start('flakyTaskWorkflow', { taskQueue, workflowId }),
  )
  assert.equal(await handle.result(), 'ok')
  await events.flush(30_000)
  const started = sinkCalls.filter(
    (c) => c.workflowId === workflowId && c.ev.eventType === 'agent.started',
  )
  assert.equal(started.length, 2, 'agent.started is sent by both runs of the first task')
  const rows = await query(
    `SELECT event_type, correlation_id FROM events WHERE tenant_id = '${t}' ORDER BY event_type`,
  )
  assert.deepEqual(rows, [
    ['agent.completed', workflowId],
    ['agent.started', workflowId],
  ])
  assert.equal(events.stats().duplicates - before, 1)
})

test('the header reaches a child workflow, through continue-as-new, and its activity', async () => {
  const { client, events, taskQueue } = await setup()
  const t = tenant()
  const workflowId = `parent-${crypto.randomBytes(4).toString('hex')}`
  const handle = await temporal.withContext({ tenantId: t, correlationId: 'tree-1' }, () =>
    client.workflow.start('parentWorkflow', { taskQueue, workflowId }),
  )
  assert.equal(await handle.result(), 'child')
  await events.flush(30_000)
  const rows = await query(
    `SELECT workflow_id, agent_id, event_type, correlation_id,
            coalesce(metadata->>'continued_as_new', '')
       FROM events WHERE tenant_id = '${t}' ORDER BY workflow_id, agent_id, event_type, 5`,
  )
  const child = `${workflowId}-child`
  assert.deepEqual(rows, [
    [workflowId, 'parentWorkflow', 'agent.completed', 'tree-1', ''],
    [workflowId, 'parentWorkflow', 'agent.started', 'tree-1', ''],
    [child, 'childWorkflow', 'agent.completed', 'tree-1', ''],
    [child, 'childWorkflow', 'agent.completed', 'tree-1', 'true'],
    [child, 'childWorkflow', 'agent.started', 'tree-1', ''],
    [child, 'childWorkflow', 'agent.started', 'tree-1', ''],
    [child, 'note', 'agent.completed', 'tree-1', ''],
    [child, 'note', 'agent.started', 'tree-1', ''],
  ])
})

test('a local activity carries the header and is instrumented like any activity', async () => {
  const { client, events, taskQueue } = await setup()
  const t = tenant()
  const workflowId = `local-${crypto.randomBytes(4).toString('hex')}`
  const handle = await temporal.withContext(
    { tenantId: t, correlationId: 'local-1', userId: 'u-9' },
    () => client.workflow.start('localWorkflow', { taskQueue, workflowId }),
  )
  assert.equal(await handle.result(), 'local')
  await events.flush(30_000)
  const rows = await query(
    `SELECT agent_id, event_type, correlation_id, coalesce(user_id, ''),
            metadata->'temporal'->>'scope'
       FROM events WHERE tenant_id = '${t}' ORDER BY agent_id, event_type`,
  )
  assert.deepEqual(rows, [
    ['localWorkflow', 'agent.completed', 'local-1', 'u-9', 'workflow'],
    ['localWorkflow', 'agent.started', 'local-1', 'u-9', 'workflow'],
    ['note', 'agent.completed', 'local-1', 'u-9', 'activity'],
    ['note', 'agent.started', 'local-1', 'u-9', 'activity'],
  ])
})

// The Python half: sdk-node/tests/temporal_python.py, run by the interpreter that has
// `agenttally[temporal]` installed (ci.sh sets AGENTTALLY_PYTHON to sdk-python's venv after
// sdk-python/ci.sh made it).
const PYTHON = process.env.AGENTTALLY_PYTHON
const PY_SCRIPT = path.join(__dirname, 'temporal_python.py')
const crossLanguage = PYTHON
  ? {}
  : { skip: 'AGENTTALLY_PYTHON (a Python with agenttally[temporal]) is not set' }

async function pythonEnv() {
  const c = await collector()
  return { ...process.env, AGENTTALLY_ENDPOINT: c.endpoint, AGENTTALLY_API_KEY: c.apiKey }
}

test(
  'a Python client starts a TypeScript worker’s workflow: its header reaches every event',
  crossLanguage,
  async () => {
    const { address, events, taskQueue } = await setup()
    const t = tenant()
    const workflowId = `py-parent-${crypto.randomBytes(4).toString('hex')}`
    const { stdout } = await promisify(execFile)(
      PYTHON,
      [PY_SCRIPT, 'start', address, taskQueue, workflowId, t, 'py-tree', 'u-py', 'triage'],
      { env: await pythonEnv(), encoding: 'utf8', timeout: 120_000 },
    )
    assert.equal(stdout.trim(), 'child')
    await events.flush(30_000)
    const rows = await query(
      `SELECT workflow_id, agent_id, event_type, correlation_id, coalesce(user_id, ''),
            coalesce(task_type, ''), coalesce(metadata->>'continued_as_new', '')
       FROM events WHERE tenant_id = '${t}' ORDER BY workflow_id, agent_id, event_type, 7`,
    )
    const child = `${workflowId}-child`
    const ctx = ['py-tree', 'u-py', 'triage']
    assert.deepEqual(rows, [
      [workflowId, 'parentWorkflow', 'agent.completed', ...ctx, ''],
      [workflowId, 'parentWorkflow', 'agent.started', ...ctx, ''],
      [child, 'childWorkflow', 'agent.completed', ...ctx, ''],
      [child, 'childWorkflow', 'agent.completed', ...ctx, 'true'],
      [child, 'childWorkflow', 'agent.started', ...ctx, ''],
      [child, 'childWorkflow', 'agent.started', ...ctx, ''],
      [child, 'note', 'agent.completed', ...ctx, ''],
      [child, 'note', 'agent.started', ...ctx, ''],
    ])
    // Nothing went to the Python client's default tenant.
    const stray = await query(`SELECT count(*) FROM events WHERE workflow_id = '${workflowId}'`)
    assert.deepEqual(stray, [['2']])
  },
)

test(
  'a TypeScript client starts a Python worker’s workflow: its header reaches every event',
  crossLanguage,
  async () => {
    const { address, client } = await setup()
    const t = tenant()
    const queue = `py-${crypto.randomBytes(4).toString('hex')}`
    const py = spawn(PYTHON, [PY_SCRIPT, 'worker', address, queue, 'python-default'], {
      env: await pythonEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    py.stdout.on('data', (chunk) => {
      out += chunk
    })
    py.stderr.on('data', (chunk) => {
      err += chunk
    })
    const exited = new Promise((resolve) => py.on('exit', resolve))
    try {
      for (let i = 0; !out.includes('ready'); i++) {
        assert.ok(i < 600 && py.exitCode === null, `the Python worker did not start:\n${err}`)
        await new Promise((r) => setTimeout(r, 100))
      }
      const workflowId = `py-agent-${crypto.randomBytes(4).toString('hex')}`
      const handle = await temporal.withContext(
        { tenantId: t, correlationId: 'ts-tree', userId: 'u-ts', taskType: 'research' },
        () => client.workflow.start('PyAgent', { args: ['refunds'], taskQueue: queue, workflowId }),
      )
      assert.equal(await handle.result(), 'gpt-4o-mini')
    } finally {
      py.stdin.end()
    }
    assert.equal(await exited, 0, err)
    assert.match(out, /sent 5 events/)
    const rows = await query(
      `SELECT agent_id, event_type, correlation_id, coalesce(user_id, ''),
            coalesce(task_type, ''), metadata->'temporal'->>'scope', cost_usd IS NOT NULL
       FROM events WHERE tenant_id = '${t}' ORDER BY agent_id, event_type`,
    )
    const ctx = ['ts-tree', 'u-ts', 'research']
    assert.deepEqual(rows, [
      ['PyAgent', 'agent.completed', ...ctx, 'workflow', 'f'],
      ['PyAgent', 'agent.started', ...ctx, 'workflow', 'f'],
      ['py_call', 'agent.completed', ...ctx, 'activity', 't'],
      ['py_call', 'agent.started', ...ctx, 'activity', 'f'],
      ['py_call', 'provider.api_call', ...ctx, 'activity', 't'],
    ])
  },
)

test('examples/temporal/node: every run has its four calls priced', async () => {
  const { address } = await setup()
  const c = await collector()
  const t = tenant()
  const dir = fs.mkdtempSync(path.join(appDir(), '.temporal-example-'))
  try {
    const example = path.resolve(__dirname, '..', '..', 'examples', 'temporal', 'node')
    for (const f of ['worker.mjs', 'workflows.mjs']) {
      fs.copyFileSync(path.join(example, f), path.join(dir, f))
    }
    const { stdout: out } = await promisify(execFile)(
      process.execPath,
      [path.join(dir, 'worker.mjs'), t, '3'],
      {
        env: {
          ...process.env,
          AGENTTALLY_ENDPOINT: c.endpoint,
          AGENTTALLY_API_KEY: c.apiKey,
          TEMPORAL_ADDRESS: address,
        },
        encoding: 'utf8',
        timeout: 120_000,
      },
    )
    assert.match(out, /3 workflow runs \(3 approved\)/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const rows = await query(
    `SELECT workflow_id, count(*), count(cost_usd), sum(cost_usd)::text
       FROM events WHERE tenant_id = '${t}' AND event_type = 'provider.api_call'
      GROUP BY workflow_id ORDER BY workflow_id`,
  )
  assert.equal(rows.length, 3)
  for (const [, calls, priced] of rows) {
    assert.deepEqual([calls, priced], ['4', '4'])
  }
  // Each run's outcome events carry the sum of its calls.
  const sums = await query(
    `SELECT workflow_id, sum(cost_usd)::text FROM events
      WHERE tenant_id = '${t}' AND event_type = 'agent.completed'
        AND metadata->'temporal'->>'scope' = 'activity'
      GROUP BY workflow_id ORDER BY workflow_id`,
  )
  assert.deepEqual(
    sums.map(([w, sum]) => [w, strip(sum)]),
    rows.map(([w, , , sum]) => [w, strip(sum)]),
  )
})

test('bad input: options, context, header and recordCall name the field; no throw from events', () => {
  const { AgentTallyError } = pkgRequire('agenttally')
  const events = new Events({ endpoint: 'http://127.0.0.1:9', disabled: true })
  const bad = (fn, field) =>
    assert.throws(fn, (err) => {
      assert.ok(err instanceof AgentTallyError, String(err))
      assert.equal(err.code, 'VALIDATION')
      assert.equal(err.field, field)
      assert.ok(err.message.startsWith(`${field}: `), err.message)
      return true
    })
  bad(() => temporal.workerOptions({ client: events, tenantId: '' }), 'temporal.tenantId')
  bad(() => temporal.workerOptions({ client: {}, tenantId: 't' }), 'temporal.client')
  bad(() => temporal.clientInterceptors(null), 'temporal.options')
  bad(() => temporal.clientInterceptors({ tenantId: 't', taskType: 5 }), 'temporal.taskType')
  bad(() => temporal.withContext({ correlationId: '' }, () => 1), 'context.correlationId')
  bad(() => temporal.withContext({}, 'nope'), 'context.fn')
  bad(() => temporal.recordCall({ provider: 'openai' }), 'recordCall.model')
  const p = (v) => ({ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from(v) })
  bad(() => temporal.decodeHeader(p('[1]')), 'header.agenttally')
  bad(() => temporal.decodeHeader(p('{"tenant_id":"t"}')), 'header.agenttally.correlation_id')
  bad(
    () => temporal.decodeHeader(p('{"tenant_id":"t","correlation_id":"c","user_id":7}')),
    'header.agenttally.user_id',
  )
  bad(() => temporal.decodeHeader(p('{')), 'header.agenttally')
  // The header as the Python interceptor writes it (sorted keys, no spaces) decodes; encoding
  // gives json/plain.
  const ctx = temporal.decodeHeader(
    p(
      '{"correlation_id":"order-42","task_type":"bug_fix","tenant_id":"acme-corp","user_id":"u-7"}',
    ),
  )
  assert.deepEqual(ctx, {
    tenant_id: 'acme-corp',
    correlation_id: 'order-42',
    user_id: 'u-7',
    task_type: 'bug_fix',
  })
  const payload = temporal.encodeHeader(ctx)
  assert.equal(Buffer.from(payload.metadata.encoding).toString(), 'json/plain')
  assert.deepEqual(JSON.parse(Buffer.from(payload.data).toString()), ctx)
  // Outside an instrumented activity recordCall records nothing.
  assert.equal(temporal.recordCall({ provider: 'openai', model: 'gpt-4o' }), false)
  // Ids shared with the Python interceptor: uuid5(namespace, "run:seq").
  assert.equal(temporal.workflowEventId('abc', 0), '8f55aa0e-0291-5c38-8e54-d8f64d1146e8')
  // Result shapes.
  assert.deepEqual(
    temporal
      .callsInResult([
        { model: 'gpt-4o', usage: { prompt_tokens: 1, completion_tokens: 2 } },
        { type: 'message', model: 'claude-x', usage: { input_tokens: 1, output_tokens: 2 } },
        { model: 'gemini-2.0-flash', usage: { promptTokenCount: 3 } },
        { provider: 'mistral', model: 'm', usage: { input_tokens: 1 } },
        'text',
        { model: 'gpt-4o' },
      ])
      .map((c) => `${c.provider}/${c.model}`),
    ['openai/gpt-4o', 'anthropic/claude-x', 'google/gemini-2.0-flash', 'mistral/m'],
  )
  // track's eventId is checked like any field.
  const e = { eventType: 'agent.started', tenantId: 't', agentId: 'a' }
  bad(() => events.track({ ...e, eventId: 'not-a-uuid' }), 'event.event_id')
  const id = temporal.workflowEventId('run', 1)
  assert.equal(events.track({ ...e, eventId: id }), id)
  assert.equal(events.priceCall({ provider: 'openai', model: 'no-such-model' }), null)
})

test('an activity past its start-to-close timeout: agent.timeout', async () => {
  const { client, events, taskQueue } = await setup()
  const t = tenant()
  const workflowId = `slow-${crypto.randomBytes(4).toString('hex')}`
  const handle = await temporal.withContext({ tenantId: t }, () =>
    client.workflow.start('timeoutWorkflow', { taskQueue, workflowId }),
  )
  assert.equal(await handle.result(), 'timed out')
  // The attempt's outcome is emitted when the worker sees the cancellation.
  let rows = []
  for (let i = 0; i < 50; i++) {
    await events.flush(30_000)
    rows = await query(
      `SELECT event_type, coalesce(error_code, '') FROM events
        WHERE tenant_id = '${t}' AND agent_id = 'slow' ORDER BY event_type`,
    )
    if (rows.length >= 2) break
    await new Promise((r) => setTimeout(r, 200))
  }
  assert.deepEqual(rows, [
    ['agent.started', ''],
    ['agent.timeout', 'timeout'],
  ])
})
