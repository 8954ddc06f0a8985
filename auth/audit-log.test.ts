// The audit log on both backends: de-duplication by event ID in the write's own transaction,
// listing in time order with the filters of `warrenctl audit ls`, and retention by the
// injected clock. Then what auth/audit.ts adds: the JSON-lines file, and that a file that
// cannot be written never costs the backend its event (audit-file.test.ts: nor the file its line).

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { Etcd3 } from 'etcd3'
import type { Test } from 'tap'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from '../test/helpers/etcd.ts'
import { Audit } from './audit.ts'
import { AuditLog, typeMatcher } from './audit-log.ts'
import type { Backend } from './backend/backend.ts'
import { EtcdBackend } from './backend/etcd.ts'
import { SqliteBackend } from './backend/sqlite.ts'

const DAY = 86_400_000
const T0 = Date.UTC(2026, 11, 1, 12)

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-audit-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function event(id: string, time: number, type: AuditEvent['type'], fields: Record<string, string> = {}): AuditEvent {
  return { id, time, type, cluster: 'example', ...fields }
}

type Open = (t: Test) => Promise<Backend>

function storeCases(t: Test, name: string, open: Open): void {
  t.test(`${name}: an event whose ID is stored already is not stored again`, async (t) => {
    const log = new AuditLog({ backend: await open(t), retentionMs: 90 * DAY })
    t.equal(await log.append(event('event-0001', T0, 'exec', { command: 'uptime' })), true)
    t.equal(await log.append(event('event-0001', T0 + 5, 'exec', { command: 'other' })), false, 'the retry is a no-op')
    const concurrent = await Promise.all([1, 2, 3].map(() => log.append(event('event-0002', T0 + 1, 'exec'))))
    t.equal(concurrent.filter(Boolean).length, 1, 'of three concurrent copies, one is stored')
    const { events } = await log.list()
    t.same(
      events.map((e) => [e.id, e.command]),
      [
        ['event-0001', 'uptime'],
        ['event-0002', undefined],
      ],
    )
  })

  t.test(`${name}: listing is in time order across days, and filters`, async (t) => {
    const log = new AuditLog({ backend: await open(t), retentionMs: 90 * DAY })
    await log.append(event('event-late', T0 + 2 * DAY, 'session.end', { user: 'alice', node: 'pi-1' }))
    await log.append(event('event-early', T0, 'session.start', { user: 'alice', node: 'pi-1' }))
    await log.append(event('event-middle', T0 + DAY, 'login', { user: 'bob' }))
    await log.append(event('event-admin', T0 + DAY + 1, 'user.removed', { user: 'carol', actor: 'bob' }))
    await log.append(event('event-host', T0 + DAY + 2, 'exec', { node: 'pi-2', host_id: 'host-2' }))
    const ids = async (query: Parameters<AuditLog['list']>[0]) => (await log.list(query)).events.map((e) => e.id)
    t.same(await ids({}), ['event-early', 'event-middle', 'event-admin', 'event-host', 'event-late'])
    t.same(await ids({ since: T0 + 1 }), ['event-middle', 'event-admin', 'event-host', 'event-late'])
    t.same(await ids({ since: T0 + 1, until: T0 + DAY + 1 }), ['event-middle', 'event-admin'])
    t.same(await ids({ type: 'session.*' }), ['event-early', 'event-late'])
    t.same(await ids({ type: 'login' }), ['event-middle'])
    t.same(await ids({ user: 'bob' }), ['event-middle', 'event-admin'], 'as the user, or as the admin who acted')
    t.same(await ids({ node: 'pi-1' }), ['event-early', 'event-late'])
    t.same(await ids({ node: 'host-2' }), ['event-host'], 'a node by its host ID')
    const limited = await log.list({}, 2)
    t.same(
      limited.events.map((e) => e.id),
      ['event-host', 'event-late'],
      'the newest when more match',
    )
    t.equal(limited.truncated, true)
  })

  t.test(`${name}: retention removes what is older, by the injected clock`, async (t) => {
    let now = T0
    const log = new AuditLog({ backend: await open(t), retentionMs: 10 * DAY, clock: () => now })
    await log.append(event('event-old', T0 - 20 * DAY, 'login'))
    await log.append(event('event-edge', T0 + 1000, 'login'))
    await log.append(event('event-new', T0 + 5 * DAY, 'login'))
    t.equal(await log.purge(), 1)
    t.same(
      (await log.list()).events.map((e) => e.id),
      ['event-edge', 'event-new'],
    )
    now = T0 + 10 * DAY + 2000
    t.equal(await log.purge(), 1, 'within a day, only the part past retention')
    t.same(
      (await log.list()).events.map((e) => e.id),
      ['event-new'],
    )
    t.equal(await log.append(event('event-old', T0 + 6 * DAY, 'login')), true, 'a purged ID no longer counts as stored')
  })

  t.test(`${name}: a session's owner is one item, filed under the node that sent its start, gone with it`, async (t) => {
    let now = T0
    const log = new AuditLog({ backend: await open(t), retentionMs: 10 * DAY, clock: () => now })
    const start = { session_id: 'session-1', user: 'carol', login: 'pi', host_id: 'host-1', node: 'pi-1' }
    await log.append(event('event-start', T0, 'session.start', start))
    t.equal(await log.append(event('event-start', T0, 'session.start', { ...start, user: 'mallory' })), false, 'a retry changes nothing')
    await log.append(event('event-forged', T0 + 1, 'session.start', { ...start, user: 'mallory', host_id: 'host-2', node: 'pi-2' }))
    await log.append(event('event-exec', T0 + 2, 'exec', { ...start, session_id: 'session-2' }))
    t.same(await log.sessionOwner('host-1', 'session-1'), { user: 'carol', login: 'pi' })
    t.same(await log.sessionOwner('host-2', 'session-1'), { user: 'mallory', login: 'pi' }, "another node's start names only its own session")
    t.equal(await log.sessionOwner('host-1', 'session-2'), undefined, 'only session.start files an owner')
    now = T0 + 11 * DAY
    await log.purge()
    t.equal(await log.sessionOwner('host-1', 'session-1'), undefined, 'removed with its event')
  })

  t.test(`${name}: a limited listing reads the newest days only, and keeps time order`, async (t) => {
    const backend = await open(t)
    const listed: string[] = []
    const counting = new Proxy(backend, {
      get(target, property) {
        if (property === 'list')
          return (prefix: string) => {
            listed.push(prefix)
            return target.list(prefix)
          }
        const value = Reflect.get(target, property)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const log = new AuditLog({ backend: counting, retentionMs: 90 * DAY })
    for (let day = 0; day < 3; day++) for (const n of [1, 2, 3]) await log.append(event(`event-${day}-${n}`, T0 + day * DAY + n, 'exec'))
    listed.length = 0
    t.same(await log.list({}, 2).then(({ events, truncated }) => [events.map((e) => e.id), truncated]), [['event-2-2', 'event-2-3'], true])
    t.equal(listed.filter((prefix) => prefix.startsWith('/audit/events/')).length, 1, 'the older days are never read')
    t.same(await log.list({}, 4).then(({ events, truncated }) => [events.map((e) => e.id), truncated]), [['event-1-3', 'event-2-1', 'event-2-2', 'event-2-3'], true])
    t.same(await log.list({ since: T0 + DAY }, 6).then(({ events, truncated }) => [events.length, truncated]), [6, false], 'exactly the limit is not truncated')
    t.same((await log.list({ type: 'exec' }, 100)).events.map((e) => e.id).slice(0, 2), ['event-0-1', 'event-0-2'])
  })

  t.test(`${name}: a listing stops at its bytes too, the newest kept, and says it is truncated`, async (t) => {
    const log = new AuditLog({ backend: await open(t), retentionMs: 90 * DAY })
    for (let n = 1; n <= 10; n++) await log.append(event(`event-${n}`, T0 + n, 'exec', { command: 'x'.repeat(n === 10 ? 5000 : 1000) }))
    const sizes = (await log.list()).events.map((e) => Buffer.byteLength(JSON.stringify(e)))
    t.same(await log.list({}, 100, sizes[9]! + sizes[8]! + sizes[7]!).then(({ events, truncated }) => [events.map((e) => e.id), truncated]), [
      ['event-8', 'event-9', 'event-10'],
      true,
    ])
    t.same(await log.list({}, 100, 1).then(({ events, truncated }) => [events.map((e) => e.id), truncated]), [['event-10'], true], 'one event at least, however large')
    t.same(await log.list({}, 100, 1 << 20).then(({ events, truncated }) => [events.length, truncated]), [10, false])
  })
}

storeCases(t, 'SQLite', async (t) => {
  const backend = SqliteBackend.open(join(await tempDir(t), 'backend.db'))
  t.teardown(() => backend.close())
  return backend
})

const unavailable = etcdUnavailable()
if (unavailable) {
  t.comment(`etcd cases skipped: ${unavailable}`)
} else {
  let etcd: EtcdServer
  t.before(async () => {
    etcd = await EtcdServer.start()
  })
  t.teardown(() => etcd?.stop())
  storeCases(t, 'etcd', async (t) => {
    const prefix = uniquePrefix('audit')
    const backend = await EtcdBackend.open({ peers: [etcd.clientUrl], prefix })
    t.teardown(async () => {
      await backend.close()
      const client = new Etcd3({ hosts: etcd.clientUrl })
      await client.delete().prefix(prefix)
      client.close()
    })
    return backend
  })
}

t.test('type globs', async (t) => {
  t.equal(typeMatcher('session.*')('session.start'), true)
  t.equal(typeMatcher('session.*')('sessionXstart'), false, 'a dot is a dot')
  t.equal(typeMatcher('*.removed')('lock.removed'), true)
  t.equal(typeMatcher('exec')('exec'), true)
  t.equal(typeMatcher('exec')('exec.more'), false)
})

t.test('every stored event goes to the file as one JSON line; a file that fails loses nothing in the backend', async (t) => {
  const dir = await tempDir(t)
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const stream = new PassThrough()
  const logLines: string[] = []
  stream.on('data', (chunk) => logLines.push(String(chunk)))
  const log = createLogger('audit', { stream, format: 'json' })
  const file = join(dir, 'audit.jsonl')
  const audit = new Audit({ backend, clusterName: 'example', retentionMs: DAY, file, dataDir: dir, log, clock: () => T0 })
  await audit.record('token.removed', { token_id: 'a1b2c3', actor: 'admin', ignored: undefined })
  const node = { nodename: 'pi-1', hostId: 'host-1' }
  t.equal(await audit.ingest([{ id: 'node-event-1', time: T0 + 1, type: 'exec', fields: { command: 'uptime', node: 'forged' } }], node), 1)
  t.equal(await audit.ingest([{ id: 'node-event-1', time: T0 + 1, type: 'exec', fields: { command: 'uptime' } }], node), 0, 'a retry stores nothing')
  await audit.stop()
  const lines = (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line))
  t.match(lines, [
    { type: 'token.removed', token_id: 'a1b2c3', actor: 'admin', cluster: 'example', time: T0 },
    { id: 'node-event-1', type: 'exec', command: 'uptime', node: 'pi-1', host_id: 'host-1' },
  ])
  t.notOk('ignored' in lines[0], 'undefined fields are left out')
  t.same(lines, (await audit.log.list()).events, 'the file holds what the backend holds')

  const missing = join(dir, 'missing', 'audit.jsonl')
  const broken = new Audit({ backend, clusterName: 'example', retentionMs: DAY, file: missing, dataDir: join(dir, 'other'), log, clock: () => T0 + 2 })
  await broken.record('role.removed', { role: 'ops' })
  await broken.stop()
  t.equal((await audit.log.list({ type: 'role.removed' })).events.length, 1, 'the event is in the backend')
  t.ok(
    logLines.some((line) => JSON.parse(line).level === 'warn' && JSON.parse(line).file === missing),
    'the failed write is logged',
  )
})

t.test("a node's event dated ahead of the server's clock is dated when it arrived, the node's time kept", async (t) => {
  const dir = await tempDir(t)
  const backend = SqliteBackend.open(join(dir, 'backend.db'))
  t.teardown(() => backend.close())
  const audit = new Audit({ backend, clusterName: 'example', retentionMs: DAY, log: createLogger('audit', { level: 'error' }), clock: () => T0 })
  const node = { nodename: 'pi-1', hostId: 'host-1' }
  const years = 5 * 365 * DAY
  await audit.ingest(
    [
      { id: 'node-event-skewed', time: T0 + 60_000, type: 'exec', fields: { command: 'a clock a minute ahead' } },
      { id: 'node-event-ahead', time: T0 + years, type: 'exec', fields: { command: 'hide the rest' } },
    ],
    node,
  )
  const { events } = await audit.log.list()
  t.match(
    events,
    [
      { id: 'node-event-ahead', time: T0, node_time: T0 + years },
      { id: 'node-event-skewed', time: T0 + 60_000 },
    ],
    'the event dated years ahead is dated when it arrived',
  )
  t.notOk('node_time' in events[1], 'a clock a little ahead is believed')
})
