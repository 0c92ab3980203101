'use strict'
// Workflows of temporal.test.cjs (bundled into the workflow isolate: imports only
// @temporalio/workflow).

const wf = require('@temporalio/workflow')

const { plan, draft, publish, note } = wf.proxyActivities({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '50ms', backoffCoefficient: 1, maximumAttempts: 3 },
})

/** Three activities: `plan` succeeds, `draft` fails once then succeeds, `publish` fails for
 * good, which fails the run. */
async function agentWorkflow(topic) {
  const p = await plan(topic)
  const d = await draft(p)
  return await publish(d)
}

/** Its first workflow task fails (a plain Error fails the task, not the run); the retried task
 * runs the code again from the start, not as a replay. */
async function flakyTaskWorkflow() {
  if (wf.workflowInfo().historyLength <= 3) throw new Error('first workflow task fails')
  return 'ok'
}

/** Starts a child that continues as new once, then runs an activity: all carry the parent's
 * context. */
async function parentWorkflow() {
  return await wf.executeChild(childWorkflow, {
    args: [0],
    workflowId: `${wf.workflowInfo().workflowId}-child`,
  })
}

async function childWorkflow(n) {
  if (n === 0) await wf.continueAsNew(1)
  return await note('child')
}

const { slow } = wf.proxyActivities({
  startToCloseTimeout: '1s',
  heartbeatTimeout: '400ms',
  retry: { maximumAttempts: 1 },
})

/** One activity that outlives its start-to-close timeout. */
async function timeoutWorkflow() {
  try {
    await slow()
  } catch {
    return 'timed out'
  }
  return 'finished'
}

const { note: localNote } = wf.proxyLocalActivities({ startToCloseTimeout: '30s' })

/** One local activity: it carries the header and is instrumented like any activity. */
async function localWorkflow() {
  return await localNote('local')
}

module.exports = {
  agentWorkflow,
  localWorkflow,
  flakyTaskWorkflow,
  parentWorkflow,
  childWorkflow,
  timeoutWorkflow,
}
