// The workflow of worker.mjs, bundled into Temporal's workflow isolate: it knows nothing of
// AgentTally (the worker registers the interceptor module that instruments it).
import { proxyActivities } from '@temporalio/workflow'

const { research, draft, review } = proxyActivities({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '200ms' },
})

/** Research, draft and review an answer to a support question. */
export async function supportAgent(question) {
  const notes = await research(question)
  const text = await draft(notes.choices[0].message.content)
  const verdict = await review(text)
  return verdict.approved ? 'approved' : 'rejected'
}
