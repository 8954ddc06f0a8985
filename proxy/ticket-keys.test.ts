import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SAVE_RETRY_MS, sessionIdContext, TICKET_LIFETIME_S, TicketKeys } from './ticket-keys.ts'

const DAY = 86_400_000

t.test('the key is kept on disk and outlives a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-ticket-'))
  const first = new TicketKeys(dir, () => 1_000_000).current()
  t.equal(first.key.length, 48, 'the 48 bytes Node takes')
  t.equal(statSync(join(dir, 'tls-ticket-key.json')).mode & 0o777, 0o600)
  const again = new TicketKeys(dir, () => 1_000_000 + DAY).current()
  t.same(again.key, first.key, 'a restarted proxy reads the same key back')
  t.equal(again.created, first.created)
})

t.test('a key a ticket lifetime old is replaced, and the new one saved', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-ticket-'))
  let now = 5_000_000
  const keys = new TicketKeys(dir, () => now)
  const first = keys.current()
  now += TICKET_LIFETIME_S * 1000 - 1
  t.same(keys.current().key, first.key, 'still in use just before its lifetime ends')
  now += 1
  const second = keys.current()
  t.notSame(second.key, first.key, 'replaced once it is a lifetime old')
  t.equal(second.created, now)
  t.same(new TicketKeys(dir, () => now).current().key, second.key, 'and the replacement is what a restart reads')
})

t.test('a damaged or foreign file gives a new key instead of failing', async (t) => {
  for (const content of ['not json', '{"created": 1, "key": "c2hvcnQ="}', '{"key": 5}']) {
    const dir = mkdtempSync(join(tmpdir(), 'warren-ticket-'))
    writeFileSync(join(dir, 'tls-ticket-key.json'), content)
    const key = new TicketKeys(dir, () => 7_000_000).current()
    t.equal(key.key.length, 48, `from ${JSON.stringify(content)}`)
    t.equal(JSON.parse(readFileSync(join(dir, 'tls-ticket-key.json'), 'utf8')).created, 7_000_000, 'and saves it')
  }
})

t.test('a key dated in the future (a clock set back) is replaced', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-ticket-'))
  const future = new TicketKeys(dir, () => 10 * DAY).current()
  const now = new TicketKeys(dir, () => 2 * DAY).current()
  t.notSame(now.key, future.key)
})

t.test('the session ID context is stable per cluster and fits OpenSSL', async (t) => {
  t.equal(sessionIdContext('a'), sessionIdContext('a'))
  t.not(sessionIdContext('a'), sessionIdContext('b'))
  t.ok(Buffer.byteLength(sessionIdContext('a')) <= 32)
})

t.test('a key the disk refuses is used from memory, and saved once the disk allows', async (t) => {
  // The data dir's place is taken by a file: every write there fails, as on a full disk.
  const dir = join(mkdtempSync(join(tmpdir(), 'warren-ticket-')), 'data')
  writeFileSync(dir, '')
  let now = 1_000_000
  const keys = new TicketKeys(dir, () => now)
  const first = keys.current()
  t.equal(first.key.length, 48, 'a key, although it could not be saved')
  t.ok(keys.unsaved)
  t.equal(keys.current(), first, 'the same key for the next connection')
  rmSync(dir)
  mkdirSync(dir)
  now += SAVE_RETRY_MS - 1
  keys.current()
  t.ok(keys.unsaved, 'not tried again before SAVE_RETRY_MS')
  now += 1
  t.equal(keys.current(), first)
  t.notOk(keys.unsaved, 'saved')
  t.same(new TicketKeys(dir, () => now).current().key, first.key, 'a restart finds it')
})
