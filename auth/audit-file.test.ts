// auth_service.audit.file after a crash: the lines that a run stored in the backend but did not
// get into the file (a file that could not be written, a kill between the commit and the
// write) are written by the next start, each once and in order; lines already written before
// a kill are not written again, a line cut short by a power cut is written again whole, and
// nothing is left in the backend once written. On both backends: etcd takes at most 128
// operations in a transaction, and hundreds of lines wait here.

import { execFileSync, spawn } from 'node:child_process'
import { appendFileSync, chmodSync, chownSync, lchownSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { onEveryBackend, withTxn } from '../test/helpers/backends.ts'
import { tempDir } from '../test/helpers/cluster.ts'
import { Audit } from './audit.ts'
import { RETRY_MS, TAIL_BYTES } from './audit-file.ts'
import { AuditLog } from './audit-log.ts'
import type { Backend } from './backend/backend.ts'
import { SqliteBackend } from './backend/sqlite.ts'

const DAY = 86_400_000
const T0 = Date.UTC(2026, 11, 1, 12)
const quiet = () => createLogger('audit', { stream: new PassThrough(), format: 'json' })

/** An auth server's audit with its file at `file` and its data dir at `dataDir`. */
function audit(backend: Backend, file: string | undefined, dataDir: string, clock = () => T0, maxWaitingFileLines?: number): Audit {
  return new Audit({ backend, clusterName: 'example', retentionMs: DAY, file, dataDir, log: quiet(), clock, maxWaitingFileLines })
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
    // A restart is later by the clock than the run before: its lines come after.
    const restarted = audit(backend, file, dir, () => T0 + 60_000)
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

t.test('a file that is no regular file (a pipe, as /dev/stdout in a container): each line once, nothing left waiting', async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const fifo = join(dir, 'audit.fifo')
  const out = join(dir, 'read')
  execFileSync('mkfifo', [fifo])
  // A reader that holds the pipe as a container's log collector does: open for as long as the server writes.
  const reader = spawn('sh', ['-c', `exec 3<>"${fifo}"; exec cat <&3 > "${out}"`])
  t.teardown(() => reader.kill())
  const run = audit(backend, fifo, dir)
  await run.start()
  for (let i = 0; i < 20; i++) await run.record('token.removed', { token_id: `token-${i}` })
  await run.stop()
  const expected = (await run.log.list()).events.map((event) => event.id)
  const ids = () =>
    readFileSync(out, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line).id as string)
  for (let waited = 0; ids().length < expected.length && waited < 100; waited++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(ids().sort(), expected.sort(), 'each event once')
  t.equal((await backend.list('/audit/file-outbox/')).length, 0, 'nothing left waiting in the backend')
})

t.test("a pipe reached through a link of the running user's, as /dev/stdout is one: each line once", async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const fifo = join(dir, 'audit.fifo')
  const link = join(dir, 'stdout')
  const out = join(dir, 'read')
  execFileSync('mkfifo', [fifo])
  symlinkSync(fifo, link)
  const reader = spawn('sh', ['-c', `exec 3<>"${fifo}"; exec cat <&3 > "${out}"`])
  t.teardown(() => reader.kill())
  const run = audit(backend, link, dir)
  await run.start()
  for (let i = 0; i < 5; i++) await run.record('token.removed', { token_id: `token-${i}` })
  await run.stop()
  const expected = (await run.log.list()).events.map((event) => event.id)
  const ids = () => fileIds(out)
  for (let waited = 0; ids().length < expected.length && waited < 100; waited++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(ids().sort(), expected.sort(), 'each event once')
})

t.test("a regular file reached through a link of the running user's (a log folder elsewhere, /dev/stdout to a file): a start reads its end, and it takes the lines", async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const target = join(dir, 'audit-target.jsonl')
  const link = join(dir, 'audit.jsonl')
  writeFileSync(target, '{"id":"from-before"}\n', { mode: 0o600 })
  symlinkSync(target, link)
  const run = audit(backend, link, dir)
  await run.start()
  await run.record('token.removed', { token_id: 'token-0' })
  await run.stop()
  t.same(fileIds(target), ['from-before', ...(await run.log.list()).events.map((event) => event.id)], 'the line after the one before')
})

t.test('a file made ready with a mode that lets others read it is made private, and takes the lines', async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const file = join(dir, 'audit.jsonl')
  writeFileSync(file, '', { mode: 0o644 })
  chmodSync(file, 0o644)
  const run = audit(backend, file, dir)
  await run.start()
  await run.record('token.removed', { token_id: 'token-0' })
  await run.stop()
  t.equal(statSync(file).mode & 0o777, 0o600, 'the file is 0600')
  t.same(
    fileIds(file),
    (await run.log.list()).events.map((event) => event.id),
    'its line is there',
  )
})

const asRoot = process.getuid?.() !== 0 && 'needs root to give a file or link to another user'

t.test("a link of another user's in its place is not followed", { skip: asRoot }, async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  // root's file, whose last line has no newline (a start would cut it off as a line cut short).
  const victim = join(dir, 'victim.conf')
  writeFileSync(victim, 'line one\nprecious tail without newline', { mode: 0o644 })
  const logs = join(dir, 'logs')
  mkdirSync(logs)
  chownSync(logs, 65534, 65534)
  const file = join(logs, 'audit.jsonl')
  symlinkSync(victim, file)
  lchownSync(file, 65534, 65534)
  await t.rejects(audit(backend, file, dir).start(), 'the start fails')
  t.equal(readFileSync(victim, 'utf8'), 'line one\nprecious tail without newline', "the link's target is untouched")
  t.equal(statSync(victim).mode & 0o777, 0o644, 'and keeps its mode')
})

t.test("a pipe of another user's is refused: its owner would read every event", { skip: asRoot }, async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const fifo = join(dir, 'audit.fifo')
  execFileSync('mkfifo', [fifo])
  chownSync(fifo, 65534, 65534)
  const reader = spawn('sh', ['-c', `exec 3<>"${fifo}"; exec cat <&3 > /dev/null`])
  t.teardown(() => reader.kill())
  await t.rejects(audit(backend, fifo, dir).start(), 'the start fails')
})

t.test("a file of another user's is refused", { skip: asRoot }, async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const file = join(dir, 'audit.jsonl')
  writeFileSync(file, '', { mode: 0o644 })
  chownSync(file, 65534, 65534)
  await t.rejects(audit(backend, file, dir).start(), 'the start fails')
  t.equal(statSync(file).size, 0, 'nothing is written into it')
  t.equal(statSync(file).mode & 0o777, 0o644, 'its mode is left as it was')
})

t.test('while the file cannot be written, at most so many lines wait in the backend; the events are all kept', async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const file = join(dir, 'shipped', 'audit.jsonl')
  mkdirSync(join(dir, 'shipped'))
  const run = audit(backend, file, dir, () => T0, 5)
  await run.start()
  rmSync(join(dir, 'shipped'), { recursive: true })
  for (let i = 0; i < 12; i++) await run.record('token.removed', { token_id: `token-${i}` })
  t.equal((await backend.list('/audit/file-outbox/')).length, 5, 'five lines wait')
  t.equal((await run.log.list()).events.length, 12, 'every event is stored')
  mkdirSync(join(dir, 'shipped'))
  await run.stop()
  t.equal(fileIds(file).length, 5, 'the five are written once the file can be')
  t.equal((await backend.list('/audit/file-outbox/')).length, 0)
})

t.test("a start finds a line cut short after a character cut by where its read of the file's end began", async (t) => {
  const dir = tempDir()
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const file = join(dir, 'audit.jsonl')
  // Lines of three-byte characters, and a line cut short whose length puts the start of the
  // end read inside a character.
  const line = `${JSON.stringify({ id: 'old-event', note: '\ufffd'.repeat(1000) })}\n`
  const whole = Buffer.from(line.repeat(Math.ceil((2 * TAIL_BYTES) / Buffer.byteLength(line))))
  const content = [10, 11, 12].map((cut) => Buffer.concat([whole, Buffer.from(line.slice(0, cut))])).find((bytes) => (bytes[bytes.length - TAIL_BYTES] & 0xc0) === 0x80)!
  t.ok(content, 'a layout whose end read starts inside a character')
  writeFileSync(file, content)
  const run = audit(backend, file, dir)
  await run.start()
  await run.record('token.removed', { token_id: 'after' })
  await run.stop()
  const lines = readFileSync(file, 'utf8').trim().split('\n')
  t.doesNotThrow(() => lines.map((text) => JSON.parse(text)), 'every line is whole JSON')
  t.equal(JSON.parse(lines.at(-1)!).token_id, 'after')
})

t.test('a delete that committed but was not answered does not leave the waiting count high: lines go on to the file', async (t) => {
  const dir = tempDir()
  const real = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => real.close())
  let failOnce = true
  const backend = withTxn(real, async (conditions, operations) => {
    const done = await real.txn(conditions, operations)
    if (failOnce && operations.length > 0 && operations.every((op) => op.op === 'delete')) {
      failOnce = false
      throw new Error('the backend did not answer')
    }
    return done
  })
  const file = join(dir, 'audit.jsonl')
  let now = T0
  // One line may wait: a count left one too high would stop every line.
  const run = audit(backend, file, dir, () => now++, 1)
  t.teardown(() => run.stop())
  await run.start()
  await run.record('token.removed', { token_id: 'first' })
  // The first line's delete fails as answered; the retry finds it gone.
  await new Promise((resolve) => setTimeout(resolve, RETRY_MS + 500))
  await run.record('token.removed', { token_id: 'second' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  await run.record('token.removed', { token_id: 'third' })
  for (let waited = 0; fileIds(file).length < 3 && waited < 50; waited++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(fileIds(file).length, 3, 'every event has its line')
})
