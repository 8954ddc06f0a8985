// `warrenctl audit ls` past what one listing holds (5,000 events): the table says it shows
// only the newest, and with --format=json standard output stays one JSON array of them while
// standard error says it is not all. A real auth server, its backend filled while it is down.

import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { AuditLog, DEFAULT_LIST_LIMIT } from '../auth/audit-log.ts'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, freePort } from './helpers/cluster.ts'

t.setTimeout(120_000)

const auth = await new AuthProcess({ port: await freePort() }).start()
t.teardown(() => auth.stop())
await auth.stop()
const backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
const log = new AuditLog({ backend, retentionMs: 86_400_000 })
const now = Date.now()
for (let i = 0; i <= DEFAULT_LIST_LIMIT; i++) {
  await log.append({ id: randomUUID(), time: now - 60_000 + i, type: 'token.removed', token_id: `t-${i}`, actor: 'admin' })
}
await backend.close()
await auth.start()

t.test('the table says only the newest are shown', async (t) => {
  const listed = await auth.ctl(['audit', 'ls', '--since=1h', '--type=token.removed'])
  t.equal(listed.code, 0, listed.stderr)
  t.match(listed.stdout, new RegExp(`Only the newest ${DEFAULT_LIST_LIMIT} events are shown`))
})

t.test('--format=json: one JSON array of the newest on standard output, and standard error says it is not all', async (t) => {
  const listed = await auth.ctl(['audit', 'ls', '--since=1h', '--type=token.removed', '--format=json'])
  t.equal(listed.code, 0, listed.stderr)
  const events = JSON.parse(listed.stdout) as AuditEvent[]
  t.equal(events.length, DEFAULT_LIST_LIMIT)
  t.equal(events.at(-1)?.token_id, `t-${DEFAULT_LIST_LIMIT}`, 'the newest')
  t.match(listed.stderr, new RegExp(`only the newest ${DEFAULT_LIST_LIMIT} events are listed`))
})
