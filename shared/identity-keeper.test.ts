// Saving a host's identity when the disk refuses: the host goes on with it from memory, says
// so in its status, logs the refusal at most once a minute, and saves the latest identity as
// soon as a try (the next change, or the retry timer) succeeds. Injected clock and timers.

import { Writable } from 'node:stream'
import t from 'tap'
import { fakeTimers } from '../test/helpers/fake-timers.ts'
import { IdentityKeeper, RETRY_MS } from './identity-keeper.ts'
import type { NodeIdentity } from './identity-store.ts'
import { createLogger } from './log.ts'

function world() {
  const entries: Record<string, unknown>[] = []
  const stream = new Writable({
    write: (chunk, _enc, done) => {
      entries.push(JSON.parse(String(chunk)))
      done()
    },
  })
  const fake = fakeTimers()
  const disk = { full: true, saved: [] as string[] }
  let current = { hostId: 'h', tlsCertPem: 'cert-1' } as NodeIdentity
  const keeper = new IdentityKeeper({
    dataDir: '/data',
    log: createLogger('test', { format: 'json', level: 'debug', stream }),
    current: () => current,
    clock: fake.clock,
    timers: fake.timers,
    save: (_dir, identity) => {
      if (disk.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
      disk.saved.push(identity.tlsCertPem)
    },
  })
  const change = (cert: string) => {
    current = { ...current, tlsCertPem: cert }
    return current
  }
  return { entries, fake, disk, keeper, change }
}

t.test('a refused save leaves the identity in use, says so, and is tried again until the disk has room', async (t) => {
  const { entries, fake, disk, keeper, change } = world()
  const start = fake.clock()
  t.equal(keeper.save(change('cert-2')), false)
  t.same(keeper.status, { since: new Date(start).toISOString(), error: 'ENOSPC: no space left on device, write' })
  t.equal(entries.filter((e) => e.identity_unsaved === 'ENOSPC').length, 1, 'logged with its code')
  t.equal(fake.pending.size, 1, 'a retry is due')

  await fake.advanceTo(start + 10_000)
  t.equal(keeper.save(change('cert-3')), false, 'the next change is refused too')
  t.equal(entries.filter((e) => e.identity_unsaved).length, 1, 'not logged again within a minute')
  t.equal(fake.pending.size, 1, 'still one retry due')
  t.equal(keeper.status?.since, new Date(start).toISOString(), 'unsaved since the first refusal')

  await fake.advanceTo(start + RETRY_MS)
  t.equal(entries.filter((e) => e.identity_unsaved).length, 2, 'the retry a minute later is logged')
  disk.full = false
  await fake.advanceTo(start + 2 * RETRY_MS)
  t.same(disk.saved, ['cert-3'], 'the retry saved the latest identity')
  t.equal(keeper.status, undefined)
  t.match(
    entries.find((e) => e.unsaved_ms !== undefined),
    { unsaved_ms: 2 * RETRY_MS },
    'and said how long it was unsaved',
  )
  t.equal(fake.pending.size, 0, 'no retry is left')
})

t.test('a change saved while a retry is due ends the retries', async (t) => {
  const { fake, disk, keeper, change } = world()
  keeper.save(change('cert-2'))
  disk.full = false
  t.equal(keeper.save(change('cert-3')), true)
  t.equal(keeper.status, undefined)
  t.equal(fake.pending.size, 0)
  t.same(disk.saved, ['cert-3'])
})

t.test('saved at once when the disk has room: nothing is logged, nothing is due', async (t) => {
  const { entries, fake, disk, keeper, change } = world()
  disk.full = false
  t.equal(keeper.save(change('cert-2')), true)
  t.same(entries, [])
  t.equal(fake.pending.size, 0)
})

t.test('whenSaved waits for the save that puts the identity on disk, and tells each caller once', async (t) => {
  const { fake, disk, keeper, change } = world()
  const start = fake.clock()
  keeper.save(change('cert-2'))
  const told: string[] = []
  keeper.whenSaved(() => told.push(`first ${disk.saved.join()}`))
  keeper.whenSaved(() => told.push(`second ${disk.saved.join()}`))
  await fake.advanceTo(start + RETRY_MS)
  t.same(told, [], 'not while the disk refuses')
  disk.full = false
  await fake.advanceTo(start + 2 * RETRY_MS)
  t.same(told, ['first cert-2', 'second cert-2'], 'both, after the retry saved it')
  keeper.save(change('cert-3'))
  t.equal(told.length, 2, 'a later save tells nobody again')
  keeper.whenSaved(() => told.push('saved already'))
  t.equal(told[2], 'saved already', 'a caller after the save is told at once')
})
