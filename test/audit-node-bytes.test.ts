// A node's stolen keys try to fill the auth server's disk through the audit log, against a
// real auth server: events of 16 fields of 1,024 control characters each (stored escaped, six
// bytes a character, they were 112 KB an event). Each is stored within MAX_STORED_EVENT_BYTES,
// its control characters replaced and marked truncated, as `audit ls` (the admin API) lists
// it; and the node's budget, counted in bytes too, refuses its batches (429) long before
// the 1,000 events of its burst.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { MAX_STORED_EVENT_BYTES, NODE_BYTES_BURST, NODE_EVENT_BURST } from '../auth/audit.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { joinCluster } from '../shared/join.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, tempDir } from './helpers/cluster.ts'

t.setTimeout(240_000)

const auditFile = join(tempDir('warren-audit-'), 'audit.jsonl')
const auth = await new AuthProcess({ authServiceYaml: `  audit:\n    file: ${auditFile}\n` }).start()
t.teardown(() => auth.stop())
const identity = await joinCluster({ authServer: auth.address, token: await auth.token(), caPins: [await auth.pin()], nodename: 'stolen-1', roles: ['node'], warn: () => {} })
const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
t.teardown(() => client.close())

t.test("a node's keys sending the largest events it may: each stored within its bound, and the budget counts their bytes", async (t) => {
  const fat = '\u0001'.repeat(1024)
  const fields = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`f_${String.fromCharCode(97 + i)}`, fat]))
  let stored = 0
  let refusal: ApiError | undefined
  for (let batch = 0; !refusal && batch < 1000; batch++) {
    const events = Array.from({ length: 5 }, (_, i) => ({ id: `fat-${batch}-${i}-xxxxxxxx`, time: Date.now(), type: 'exec' as const, ...fields }))
    try {
      stored += (await client.call('POST /v1/audit/events', { body: { events } })).stored
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      refusal = error
    }
  }
  t.match(refusal, { status: 429, retryAfterS: Number }, 'refused with the status the node retries on')
  t.ok(
    stored < NODE_EVENT_BURST / 2 && stored * MAX_STORED_EVENT_BYTES >= NODE_BYTES_BURST / 2,
    `refused by bytes, after ${stored} events, not the ${NODE_EVENT_BURST} of the event burst`,
  )

  // What `warrenctl audit ls --format=json` lists, asked of the admin API straight (its output is past what the test's runner buffers).
  const { events } = await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?since=0&node=stolen-1&type=exec')
  t.equal(events.length, stored, 'every event taken is listed')
  const { id, time, type, cluster, node, host_id, ...own } = events[0]!
  t.ok(Buffer.byteLength(JSON.stringify(own)) <= MAX_STORED_EVENT_BYTES, `its own fields are ${Buffer.byteLength(JSON.stringify(own))} bytes stored`)
  t.match(own, { truncated: true, f_a: /^\uFFFD*$/ }, 'control characters replaced, and the event says it was cut')
  t.notOk(
    events.some((event) => Object.values(event).some((value) => typeof value === 'string' && [...value].some(isControl))),
    'no control character stored in any',
  )
  // The audit file holds the same bounded events, once each is written.
  let lines: string[] = []
  for (let i = 0; i < 100 && lines.length < stored; i++) {
    lines = readFileSync(auditFile, 'utf8')
      .split('\n')
      .filter((line) => line.includes('"fat-'))
    await sleep(100)
  }
  t.equal(lines.length, stored)
  t.ok(
    lines.every((line) => Buffer.byteLength(line) <= MAX_STORED_EVENT_BYTES + 1024),
    'each line within the bound, and the header the auth server adds',
  )
})

/** A control character that would be stored escaped (tab and newline aside). */
function isControl(char: string): boolean {
  const code = char.charCodeAt(0)
  return (code < 0x20 && char !== '\t' && char !== '\n') || (code >= 0x7f && code <= 0x9f)
}
