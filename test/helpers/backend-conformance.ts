// The behaviour every Backend must share, written once and run against each implementation,
// so that auth code written against SQLite behaves the same on etcd.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { Backend, Item } from '../../auth/backend/backend.ts'

export interface BackendUnderTest {
  backend: Backend
  /** Opens the same store again after the suite has closed `backend`. */
  reopen?: () => Promise<Backend>
  /** Releases what the factory made (files, servers); the suite closes backends itself. */
  cleanup: () => Promise<void>
}

export interface ConformanceOptions {
  /** TTL used by the expiry tests; the suite waits a little longer than this. */
  ttlMs?: number
}

type Body = (t: Test, backend: Backend, subject: BackendUnderTest) => Promise<void>

export function backendConformance(t: Test, name: string, makeBackend: () => Promise<BackendUnderTest>, options: ConformanceOptions = {}): Promise<unknown> {
  const ttlMs = options.ttlMs ?? 300

  return t.test(`${name} conforms to Backend`, async (t) => {
    // Each case gets a fresh, empty store so cases cannot leak into one another.
    const check = (title: string, body: Body) =>
      t.test(title, async (t) => {
        const subject = await makeBackend()
        t.teardown(async () => {
          await subject.backend.close()
          await subject.cleanup()
        })
        await body(t, subject.backend, subject)
      })

    check('get of a missing key is undefined', async (t, backend) => {
      t.equal(await backend.get('/missing'), undefined)
    })

    check('put then get returns the value and the revision put returned', async (t, backend) => {
      const revision = await backend.put('/a', 'one')
      t.ok(Number.isInteger(revision) && revision > 0, 'revision is a positive integer')
      const item = await backend.get('/a')
      t.match(item, { key: '/a', value: 'one', revision })
      t.equal(item?.expires, undefined, 'no TTL, no expiry')
    })

    check('put overwrites and raises the revision', async (t, backend) => {
      const first = await backend.put('/a', 'one')
      const second = await backend.put('/a', 'two')
      t.ok(second > first, `${second} > ${first}`)
      t.match(await backend.get('/a'), { value: 'two', revision: second })
    })

    check('revisions increase across keys', async (t, backend) => {
      const revisions = [await backend.put('/a', '1'), await backend.put('/b', '1'), await backend.put('/a', '2'), await backend.put('/c', '1')]
      t.same(
        revisions,
        [...revisions].sort((x, y) => x - y),
        'in write order',
      )
      t.equal(new Set(revisions).size, revisions.length, 'all distinct')
    })

    check('delete removes the key and reports whether it was there', async (t, backend) => {
      t.equal(await backend.delete('/a'), false, 'absent')
      await backend.put('/a', 'one')
      await backend.put('/b', 'two')
      t.equal(await backend.delete('/a'), true, 'present')
      t.equal(await backend.get('/a'), undefined)
      t.same(keys(await backend.list('/')), ['/b'])
      t.equal(await backend.delete('/a'), false, 'already gone')
    })

    check('a deleted and recreated key gets a new revision', async (t, backend) => {
      const before = await backend.put('/a', 'one')
      await backend.delete('/a')
      const after = await backend.put('/a', 'one')
      t.ok(after > before, `${after} > ${before}`)
      await backend.delete('/a')
      t.equal(await backend.create('/a', 'one'), true)
      const created = await backend.get('/a')
      t.ok(created !== undefined && created.revision > after, 'create also gets a new revision')
    })

    check('create writes only when the key is absent', async (t, backend) => {
      t.equal(await backend.create('/a', 'first'), true)
      t.equal(await backend.create('/a', 'second'), false)
      t.match(await backend.get('/a'), { value: 'first' }, 'the losing create changed nothing')
      await backend.delete('/a')
      t.equal(await backend.create('/a', 'third'), true, 'free again after delete')
    })

    check('list returns the items under a prefix in key order', async (t, backend) => {
      for (const key of ['/users/carol/x', '/usersx', '/users/bob', '/user', '/roles/a', '/users/alice']) {
        await backend.put(key, `value of ${key}`)
      }
      const users = await backend.list('/users/')
      t.same(keys(users), ['/users/alice', '/users/bob', '/users/carol/x'])
      for (const item of users) {
        t.same(await backend.get(item.key), item, `${item.key} as get sees it`)
      }
      t.same(keys(await backend.list('/users')), ['/users/alice', '/users/bob', '/users/carol/x', '/usersx'])
      t.same(keys(await backend.list('')), ['/roles/a', '/user', '/users/alice', '/users/bob', '/users/carol/x', '/usersx'])
      t.same(await backend.list('/nothing/'), [])
    })

    check('list treats the prefix literally', async (t, backend) => {
      const special = ['/a%/1', '/a_/1', '/a\\/1', '/a[x]/1', "/a'/1", '/a*/1', '/a.b/1']
      for (const key of [...special, '/ab/1', '/a/1', '/axb/1']) await backend.put(key, 'v')
      for (const key of special) {
        const prefix = key.slice(0, -1)
        t.same(keys(await backend.list(prefix)), [key], `prefix ${JSON.stringify(prefix)}`)
      }
    })

    check('list handles prefixes and keys beyond ASCII', async (t, backend) => {
      const inside = ['/ü/1', '/ü/2', '/ü/\uffff', '/ü/😀', '/ü/😀/deeper']
      for (const key of [...inside, '/üx', '/v', '/ü']) await backend.put(key, key)
      t.same(keys(await backend.list('/ü/')).sort(), [...inside].sort())
      t.same(keys(await backend.list('/ü/😀')), ['/ü/😀', '/ü/😀/deeper'])
    })

    check('items disappear once their TTL passes', async (t, backend) => {
      const expiringRevision = await backend.put('/ttl/put', 'v', { ttlMs })
      await backend.create('/ttl/create', 'v', { ttlMs })
      await backend.txn([], [{ op: 'put', key: '/ttl/txn', value: 'v', ttlMs }])
      const conditioned = await backend.put('/ttl/conditioned', 'v', { ttlMs })
      await backend.put('/ttl/forever', 'v')
      const lastExpiryStarts = Date.now()

      const fresh = await backend.get('/ttl/put')
      t.ok(fresh?.expires !== undefined, 'an item with a TTL reports its expiry')
      t.equal((await backend.list('/ttl/')).length, 5, 'all visible before expiry')

      await sleep(lastExpiryStarts + ttlMs + 250 - Date.now())

      t.equal(await backend.get('/ttl/put'), undefined, 'get no longer sees it')
      t.same(keys(await backend.list('/ttl/')), ['/ttl/forever'], 'list no longer sees them')
      t.equal(await backend.delete('/ttl/create'), false, 'delete treats it as absent')
      t.equal(await backend.txn([{ key: '/ttl/conditioned', revision: conditioned }], []), false, 'its old revision no longer matches')
      t.equal(await backend.txn([{ key: '/ttl/txn', absent: true }], [{ op: 'put', key: '/ttl/txn', value: 'w' }]), true, 'txn sees it as absent')
      t.equal(await backend.create('/ttl/put', 'again'), true, 'create succeeds over it')
      const recreated = await backend.get('/ttl/put')
      t.match(recreated, { value: 'again' })
      t.ok(recreated !== undefined && recreated.revision > expiringRevision, 'with a new revision')
      t.equal(recreated?.expires, undefined, 'and without the old expiry')
    })

    check('a long TTL reports when the item expires', async (t, backend) => {
      const before = Date.now()
      await backend.put('/a', 'v', { ttlMs: 60_000 })
      const after = Date.now()
      const expires = (await backend.get('/a'))?.expires ?? 0
      // Lease-based stores round TTLs to whole seconds, hence the slack.
      t.ok(expires >= before + 59_000 && expires <= after + 61_000, `expires ${expires - before} ms from now`)
    })

    check('a put without a TTL clears an earlier one', async (t, backend) => {
      await backend.put('/a', 'v', { ttlMs: 60_000 })
      await backend.put('/a', 'w')
      t.equal((await backend.get('/a'))?.expires, undefined)
    })

    check('txn applies its operations when the revision matches', async (t, backend) => {
      const revision = await backend.put('/a', 'one')
      await backend.put('/gone', 'x')
      const applied = await backend.txn(
        [{ key: '/a', revision }],
        [
          { op: 'put', key: '/a', value: 'two' },
          { op: 'put', key: '/b', value: 'new' },
          { op: 'delete', key: '/gone' },
        ],
      )
      t.equal(applied, true)
      const a = await backend.get('/a')
      t.match(a, { value: 'two' })
      t.ok(a !== undefined && a.revision > revision, 'the revision moved on')
      t.match(await backend.get('/b'), { value: 'new' })
      t.equal(await backend.get('/gone'), undefined)
    })

    check('txn with a stale revision applies nothing', async (t, backend) => {
      const stale = await backend.put('/a', 'one')
      const current = await backend.put('/a', 'two')
      await backend.put('/keep', 'x')
      const applied = await backend.txn(
        [{ key: '/a', revision: stale }],
        [
          { op: 'put', key: '/a', value: 'three' },
          { op: 'put', key: '/new', value: 'y' },
          { op: 'delete', key: '/keep' },
        ],
      )
      t.equal(applied, false)
      t.match(await backend.get('/a'), { value: 'two', revision: current })
      t.equal(await backend.get('/new'), undefined)
      t.match(await backend.get('/keep'), { value: 'x' })
    })

    check('txn revision condition on a missing key fails', async (t, backend) => {
      t.equal(await backend.txn([{ key: '/a', revision: 1 }], [{ op: 'put', key: '/a', value: 'v' }]), false)
      t.equal(await backend.get('/a'), undefined)
    })

    check('txn absent condition holds only once', async (t, backend) => {
      const claim = () => backend.txn([{ key: '/a', absent: true }], [{ op: 'put', key: '/a', value: 'mine' }])
      t.equal(await claim(), true)
      t.equal(await claim(), false)
    })

    check('txn with mixed conditions needs all of them', async (t, backend) => {
      const a = await backend.put('/a', 'one')
      const b = await backend.put('/b', 'one')
      t.equal(
        await backend.txn(
          [
            { key: '/a', revision: a },
            { key: '/b', revision: b + 1000 },
            { key: '/c', absent: true },
          ],
          [
            { op: 'delete', key: '/a' },
            { op: 'put', key: '/c', value: 'x' },
          ],
        ),
        false,
        'one wrong revision among them fails the lot',
      )
      t.equal(
        await backend.txn(
          [
            { key: '/a', revision: a },
            { key: '/b', absent: true },
          ],
          [{ op: 'delete', key: '/a' }],
        ),
        false,
        'a present key fails an absent condition',
      )
      t.match(await backend.get('/a'), { revision: a }, 'nothing applied')
      t.equal(await backend.get('/c'), undefined, 'nothing applied')
      t.equal(
        await backend.txn(
          [
            { key: '/a', revision: a },
            { key: '/b', revision: b },
            { key: '/c', absent: true },
          ],
          [
            { op: 'delete', key: '/a' },
            { op: 'put', key: '/c', value: 'x' },
          ],
        ),
        true,
        'all conditions hold',
      )
      t.same(keys(await backend.list('/')), ['/b', '/c'])
    })

    check('txn without conditions always applies', async (t, backend) => {
      t.equal(await backend.txn([], [{ op: 'put', key: '/a', value: 'v', ttlMs: 60_000 }]), true)
      t.ok((await backend.get('/a'))?.expires !== undefined, 'txn puts honour ttlMs')
      t.equal(await backend.txn([], [{ op: 'delete', key: '/never-existed' }]), true, 'deleting nothing is fine')
    })

    check('exactly one of 50 concurrent txns on the same revision wins', async (t, backend) => {
      const revision = await backend.put('/token', 'single-use')
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          backend.txn(
            [{ key: '/token', revision }],
            [
              { op: 'delete', key: '/token' },
              { op: 'put', key: `/winners/${i}`, value: 'won' },
            ],
          ),
        ),
      )
      t.equal(results.filter(Boolean).length, 1)
      t.equal(await backend.get('/token'), undefined)
      t.equal((await backend.list('/winners/')).length, 1, 'only the winner wrote')
    })

    check('exactly one of 50 concurrent creates wins', async (t, backend) => {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => backend.create('/lock', `holder ${i}`)))
      t.equal(results.filter(Boolean).length, 1)
      const winner = results.indexOf(true)
      t.match(await backend.get('/lock'), { value: `holder ${winner}` })
    })

    check('unicode, empty and 1 MB values round-trip', async (t, backend) => {
      const unicode = 'ключ ü € 中文 😀 \u0000 "quoted" \\ \n'
      const big = 'ascii ü € 😀 '.repeat(Math.ceil((1024 * 1024) / 14)).slice(0, 1024 * 1024)
      await backend.put('/unicode/ключ/😀', unicode)
      await backend.put('/empty', '')
      await backend.put('/big', big)
      t.equal((await backend.get('/unicode/ключ/😀'))?.value, unicode)
      t.equal((await backend.get('/empty'))?.value, '')
      t.ok((await backend.get('/big'))?.value === big, '1 MB value from get')
      t.ok((await backend.list('/big'))[0]?.value === big, '1 MB value from list')
    })

    check('close is idempotent and later calls reject', async (t, backend) => {
      await backend.close()
      await backend.close()
      await t.rejects(backend.get('/a'))
      await t.rejects(backend.list('/'))
      await t.rejects(backend.put('/a', 'v'))
      await t.rejects(backend.create('/a', 'v'))
      await t.rejects(backend.delete('/a'))
      await t.rejects(backend.txn([], []))
    })

    check('data survives close and reopen', async (t, backend, subject) => {
      if (subject.reopen === undefined) {
        t.pass('this backend cannot be reopened')
        return
      }
      await backend.put('/kept', 'one')
      await backend.put('/expiring', 'two', { ttlMs: 60_000 })
      await backend.put('/deleted', 'three')
      const deletedRevision = await backend.put('/deleted', 'four')
      await backend.delete('/deleted')
      const before = await backend.list('/')
      await backend.close()

      const reopened = await subject.reopen()
      t.teardown(() => reopened.close())
      t.same(await reopened.list('/'), before, 'same items, revisions and expiries')
      t.equal(await reopened.get('/deleted'), undefined, 'deletes are durable too')
      const next = await reopened.put('/deleted', 'five')
      t.ok(next > deletedRevision, 'revisions keep increasing across restarts')
    })
  })
}

function keys(items: Item[]): string[] {
  return items.map((item) => item.key)
}
