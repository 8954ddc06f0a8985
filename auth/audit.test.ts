// Each node's budget of stored events, by the injected clock: the burst passes, the batch
// past it is refused whole with a time to wait, and the budget refills at its rate. Idle
// hosts are forgotten so that memory stays bounded.

import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { EVENT_ID } from '../shared/protocol/audit.ts'
import { statusOf } from './api/errors.ts'
import {
  Audit,
  MAX_STORED_EVENT_BYTES,
  NODE_BYTES_BURST,
  NODE_BYTES_PER_SECOND,
  NODE_EVENT_BURST,
  NODE_EVENTS_PER_SECOND,
  NodeEventBudget,
  NodeEventsOverBudget,
  PROXY_FAILED_RELAY_BURST,
  PROXY_FAILED_RELAYS_PER_SECOND,
  storedFields,
} from './audit.ts'
import type { Backend } from './backend/backend.ts'
import { SqliteBackend } from './backend/sqlite.ts'

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

t.test("a node's budget counts bytes too: a batch past its bytes is refused whole, and taken once they refilled", async (t) => {
  let now = T0
  const budget = new NodeEventBudget({ burst: 1000, perSecond: 20, bytesBurst: 100_000, bytesPerSecond: 10_000, clock: () => now })
  t.equal(budget.take('host-a', 10, 90_000), 0, 'within both')
  t.equal(budget.take('host-a', 1, 20_000), 1000, '10,000 bytes short at 10,000 a second: one second')
  t.equal(budget.take('host-a', 1, 10_000), 0, 'nothing was taken by the refusal')
  t.equal(budget.take('host-a', 1, 5000), 500, 'spent: 5,000 bytes wait half a second')
  now += 10_000
  t.equal(budget.take('host-a', 1, 1_000_000), 0, 'more than the burst is charged as the burst, or it could never pass')
  t.equal(budget.refused, 2)
})

t.test('what a node stores of an event: control characters replaced, within MAX_STORED_EVENT_BYTES, the longest fields cut', async (t) => {
  const session = { session_id: 'a8f2c1d0-0000-4000-8000-000000000000', user: 'alice', login: 'pi', client_addr: '192.0.2.1:50000' }
  const honest = { ...session, operation: 'rename', path: `/srv/${'日本'.repeat(509)}`, target: `/srv/${'é'.repeat(1019)}`, command: 'tab\tand\nnewline' }
  t.same(storedFields(honest).fields, honest, "an honest event's longest fields, in 3-byte characters, are kept whole, tabs and newlines too")
  const fat = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`f_${String.fromCharCode(97 + i)}`, '\u0001\u009b'.repeat(512)]))
  const { fields, bytes } = storedFields(fat)
  t.ok(bytes <= MAX_STORED_EVENT_BYTES && bytes === Buffer.byteLength(JSON.stringify(fields)), `${bytes} bytes`)
  t.equal(fields.truncated, true)
  t.match(fields, { f_a: /^\uFFFD{100,}$/, f_p: /^\uFFFD{100,}$/ }, 'control characters replaced, every field cut alike')
  const mixed = storedFields({
    ...session,
    command: 'x'.repeat(1024),
    f_a: 'y'.repeat(1024),
    f_b: 'z'.repeat(1024),
    f_c: '\u0007'.repeat(1024),
    f_d: 'w'.repeat(1024),
    f_e: 'v'.repeat(1024),
    f_f: 'u'.repeat(1024),
    f_g: 't'.repeat(1024),
  })
  t.match(mixed.fields, session, 'the short fields, who did it, are kept: the longest are cut')
  t.ok(mixed.bytes <= MAX_STORED_EVENT_BYTES)
})

t.test("the audit service charges a node's batch its bytes as stored", async (t) => {
  const audit = new Audit({ backend: {} as Backend, clusterName: 'example', retentionMs: 1, log: { debug() {}, info() {}, warn() {}, error() {} } as never, clock: () => T0 })
  t.equal(NODE_BYTES_BURST, 2 * 1024 * 1024)
  t.equal(NODE_BYTES_PER_SECOND, 16 * 1024)
  const fat = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`f_${String.fromCharCode(97 + i)}`, '\u0001'.repeat(1024)]))
  const batch = (n: number) => Array.from({ length: 100 }, (_, i) => ({ id: `event-${n}-${i}`, time: T0, type: 'exec' as const, fields: fat }))
  let batches = 0
  while (batches < 10) {
    try {
      audit.admitNodeEvents('host-a', batch(batches))
    } catch (error) {
      t.type(error, NodeEventsOverBudget)
      break
    }
    batches++
  }
  t.equal(batches, Math.floor(NODE_BYTES_BURST / (100 * MAX_STORED_EVENT_BYTES)), 'as many batches as the bytes burst holds at the bound each, not the 10 of the event burst')
})

t.test("a refused recording's event has an ID no node's event can have, so that no node can take it first", async (t) => {
  const backend = SqliteBackend.open(join(mkdtempSync(join(tmpdir(), 'warren-audit-')), 'backend.db'))
  t.teardown(() => backend.close())
  const audit = new Audit({ backend, clusterName: 'example', retentionMs: 86_400_000, log: createLogger('audit', { level: 'error' }), clock: () => T0 })
  await audit.recordingRefused('host-1', 'session-1', async () => ({ reason: 'too long' }))
  await audit.recordingRefused('host-1', 'session-1', async () => ({ reason: 'too long' }))
  const { events } = await audit.log.list()
  t.equal(events.length, 1, 'once per recording')
  t.notMatch(events[0]!.id, EVENT_ID, 'not of the form a node may send')
})
