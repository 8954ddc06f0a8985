// auth_service.audit.file keeps every event the backend keeps, with a real auth server: events
// stored while the file could not be written (its folder moved away) and then a SIGKILL are in
// the file after the restart (the folder back), each once, after those written before.

import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, freePort, tempDir } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

const shipped = join(tempDir('warren-audit-file-'), 'shipped')
mkdirSync(shipped)
const file = join(shipped, 'audit.jsonl')
const auth = await new AuthProcess({ authServiceYaml: `  audit:\n    file: ${file}\n`, port: await freePort() }).start()
t.teardown(() => auth.stop())

const backendEvents = async () => (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events')).events
const fileIds = () =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => (JSON.parse(line) as AuditEvent).id)
    : []

t.test('events stored while the file could not be written, then a kill: all in the file after the restart, each once', async (t) => {
  await auth.token(['tokens', 'add', '--type=node'])
  await until('the first event written', () => fileIds().length > 0)
  const before = fileIds().length

  renameSync(shipped, `${shipped}.away`)
  await auth.token(['tokens', 'add', '--type=node'])
  await auth.token(['tokens', 'add', '--type=proxy'])
  const stored = await backendEvents()
  t.ok(stored.length >= before + 2, 'the events are in the backend')
  await auth.stop('SIGKILL')

  renameSync(`${shipped}.away`, shipped)
  await auth.start()
  const ids = (await backendEvents()).map((event) => event.id)
  await until('the file caught up', () => ids.every((id) => fileIds().includes(id)))
  const written = fileIds()
  t.same([...written].sort(), [...new Set(written)].sort(), 'no line twice')
  t.same(
    written.slice(0, stored.length),
    stored.map((event) => event.id),
    'every event stored before the kill, in its order',
  )
})
