// auth_service.audit.file after a crash: the lines that a run stored in the backend but did not
// get into the file (a file that could not be written, a kill between the commit and the
// write) are written by the next start, each once and in order; lines already written before
// a kill are not written again, a line cut short by a power cut is written again whole, and
// nothing is left in the backend once written. On both backends: etcd takes at most 128
// operations in a transaction, and hundreds of lines wait here.

import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { onEveryBackend } from '../test/helpers/backends.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { Audit } from './audit.ts'
import { AuditLog } from './audit-log.ts'
import type { Backend } from './backend/backend.ts'
import { SqliteBackend } from './backend/sqlite.ts'

const DAY = 86_400_000
const T0 = Date.UTC(2026, 11, 1, 12)
const quiet = () => createLogger('audit', { stream: new PassThrough(), format: 'json' })

/** An auth server's audit with its file at `file` and its data dir at `dataDir`. */
function audit(backend: Backend, file: string | undefined, dataDir: string, clock = () => T0): Audit {
  return new Audit({ backend, clusterName: 'example', retentionMs: DAY, file, dataDir, log: quiet(), clock })
}

function fileIds(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line).id as string)
}

/** Stores `count` token events while `file`'s folder does not exist: each in the backend, none in the file. */
async function storeUnwritten(backend: Backend, file: string, dataDir: string, count: number): Promise<string[]> {
  let now = T0
  const run = audit(backend, file, dataDir, () => now++)
  for (let i = 0; i < count; i++) await run.record('token.removed', { token_id: `token-${i}` })
  await run.stop()
  const { events } = await run.log.list()
  return events.map((event) => event.id)
}

onEveryBackend('audit-file', (name, open) => {
  t.test(`${name}: lines stored while the file could not be written are written by the next start, once each, in order`, async (t) => {
    const backend = await open()
    t.teardown(() => backend.close())
    const dir = tempDir()
    const file = join(dir, 'shipped', 'audit.jsonl')
    const stored = await storeUnwritten(backend, file, dir, 250)
    t.equal(stored.length, 250, 'every event is in the backend')

    mkdirSync(join(dir, 'shipped'))
    const restarted = audit(backend, file, dir)
    await restarted.start()
    await restarted.record('role.removed', { role: 'ops' })
    await restarted.stop()
    const written = fileIds(file)
    t.same(written.slice(0, 250), stored, 'the lines left behind, in the order they were stored')
    t.equal(written.length, 251, 'then the new one')
    t.same((await backend.list('/audit/file-outbox/')).length, 0, 'nothing is left waiting in the backend')
  })

  t.test(`${name}: a kill after the write and before the outbox emptied writes nothing twice; a line cut short is written again whole`, async (t) => {
    const backend = await open()
    t.teardown(() => backend.close())
    const dir = tempDir()
    const file = join(dir, 'shipped', 'audit.jsonl')
    const stored = await storeUnwritten(backend, file, dir, 3)
    // The first two lines reached the file before the kill; the third was cut short.
    mkdirSync(join(dir, 'shipped'))
    const events = (await new AuditLog({ backend, retentionMs: DAY }).list()).events.map((event) => JSON.stringify(event))
    writeFileSync(file, `${events[0]}\n${events[1]}\n`)
    appendFileSync(file, events[2].slice(0, 20))

    const restarted = audit(backend, file, dir)
    await restarted.start()
    await restarted.stop()
    t.same(fileIds(file), stored, 'each line once, whole')
  })

  t.test(`${name}: with the file no longer configured, its lines waiting in the backend are dropped`, async (t) => {
    const backend = await open()
    t.teardown(() => backend.close())
    const dir = tempDir()
    await storeUnwritten(backend, join(dir, 'missing', 'audit.jsonl'), dir, 2)
    t.equal((await backend.list('/audit/file-outbox/')).length, 2)
    const without = audit(backend, undefined, dir)
    await without.start()
    await without.stop()
    t.equal((await backend.list('/audit/file-outbox/')).length, 0)
    t.equal((await without.log.list()).events.length, 2, 'the events stay')
  })
})

t.test('a file that cannot be written at start fails the start, naming it', async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  await t.rejects(audit(backend, join(dir, 'missing', 'audit.jsonl'), dir).start(), { message: /auth_service\.audit\.file: cannot write .*missing\/audit\.jsonl/ })
})
