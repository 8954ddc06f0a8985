// Each node's budget of stored events, by the injected clock: the burst passes, the batch
// past it is refused whole with a time to wait, and the budget refills at its rate. Idle
// hosts are forgotten so that memory stays bounded.

import t from 'tap'
import { statusOf } from './api/errors.ts'
import { Audit, NODE_EVENT_BURST, NODE_EVENTS_PER_SECOND, NodeEventBudget, NodeEventsOverBudget, PROXY_FAILED_RELAY_BURST, PROXY_FAILED_RELAYS_PER_SECOND } from './audit.ts'
import type { Backend } from './backend/backend.ts'

const T0 = Date.UTC(2026, 11, 1, 12)

t.test('a burst is taken, the next batch refused whole, and taken once the budget refilled', async (t) => {
  let now = T0
  const budget = new NodeEventBudget({ burst: 1000, perSecond: 20, clock: () => now })
  for (let batch = 0; batch < 10; batch++) t.equal(budget.take('host-a', 100), 0, `batch ${batch} of the burst`)
  t.equal(budget.take('host-a', 100), 5000, '100 more wait 5 s at 20 a second')
  t.equal(budget.take('host-a', 1), 50, 'nothing was taken by the refusal')
  t.equal(budget.take('host-b', 100), 0, 'another host has a budget of its own')
  t.equal(budget.refused, 2)
  now += 4000
  t.equal(budget.take('host-a', 100), 1000, 'not yet: 80 refilled')
  now += 1000
  t.equal(budget.take('host-a', 100), 0, 'refilled')
  t.equal(budget.take('host-a', 1), 50, 'and spent again')
  now += 3_600_000
  t.equal(budget.take('host-a', 1000), 0, 'refills to the burst, no further')
  t.not(budget.take('host-a', 1), 0)
})

t.test('idle hosts are forgotten', async (t) => {
  let now = T0
  const budget = new NodeEventBudget({ burst: 10, perSecond: 10, clock: () => now })
  for (let host = 0; host < 10_000; host++) budget.take(`host-${host}`, 1)
  t.equal(budget.size, 10_000, 'kept while there are few')
  now += 1000
  budget.take('host-new', 1)
  t.equal(budget.size, 1, 'past the threshold, every bucket that had refilled is gone')
  t.equal(budget.take('host-new', 9), 0, 'and one in use kept what it spent')
  t.not(budget.take('host-new', 1), 0)
})

t.test('the audit service refuses a node over budget with 429 and a time to wait', async (t) => {
  let now = T0
  const warnings: string[] = []
  const log = { debug() {}, info() {}, warn: (message: string) => warnings.push(message), error() {} }
  const audit = new Audit({ backend: {} as Backend, clusterName: 'example', retentionMs: 1, log: log as never, clock: () => now })
  t.equal(NODE_EVENT_BURST, 1000)
  t.equal(NODE_EVENTS_PER_SECOND, 20)
  for (let batch = 0; batch < 10; batch++) audit.admitNodeEvents('host-a', 100)
  const refusal = t.throws(() => audit.admitNodeEvents('host-a', 100)) as unknown
  t.type(refusal, NodeEventsOverBudget)
  t.same(statusOf(refusal), { status: 429, headers: { 'retry-after': '5' } }, 'what the node retries on, not what it drops (400, 413)')
  t.throws(() => audit.admitNodeEvents('host-a', 100))
  t.equal(warnings.length, 1, 'logged once as it went over, not for each batch')
  t.equal(audit.nodeBudget.refused, 2)
  now += 5000
  t.doesNotThrow(() => audit.admitNodeEvents('host-a', 100))
  t.throws(() => audit.admitNodeEvents('host-a', 100))
  t.equal(warnings.length, 1, 'nor again while it keeps at the rate')
  now += 3_600_000
  for (let batch = 0; batch < 10; batch++) audit.admitNodeEvents('host-a', 100)
  t.throws(() => audit.admitNodeEvents('host-a', 100))
  t.equal(warnings.length, 2, 'a new flood, after its budget was full again, is logged again')
})

t.test("a proxy's relayed batches that fail their check are charged to the proxy: past its budget they are refused before any check", async (t) => {
  let now = T0
  const warnings: string[] = []
  const log = { debug() {}, info() {}, warn: (message: string) => warnings.push(message), error() {} }
  const audit = new Audit({ backend: {} as Backend, clusterName: 'example', retentionMs: 1, log: log as never, clock: () => now })
  for (let failed = 0; failed < PROXY_FAILED_RELAY_BURST; failed++) {
    audit.admitRelayedBy('proxy-a')
    audit.relayRefused('proxy-a')
  }
  const refusal = t.throws(() => audit.admitRelayedBy('proxy-a')) as unknown
  t.same(statusOf(refusal), { status: 429, headers: { 'retry-after': '1' } }, 'answered 429: an honest proxy tries again later')
  t.doesNotThrow(() => audit.admitRelayedBy('proxy-b'), 'another proxy is not held back')
  t.doesNotThrow(() => audit.admitNodeEvents('host-a', NODE_EVENT_BURST), 'nor any node')
  t.equal(warnings.length, 1)
  now += 1000 / PROXY_FAILED_RELAYS_PER_SECOND
  t.doesNotThrow(() => audit.admitRelayedBy('proxy-a'), 'one more check once the budget refilled by one')
  t.doesNotThrow(() => audit.admitRelayedBy('proxy-a'), 'admitting takes nothing: only a failure does')
})
