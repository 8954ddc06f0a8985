// The etcd backend against a real etcd 3 started on loopback: the shared conformance suite,
// then what is particular to etcd (expiry ahead of lease revocation, shared leases, several
// clients racing, prefixes, TLS with client certificates and the peer's name checked, and no
// plaintext to a peer that is not on loopback unless asked for outright).

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Etcd3 } from 'etcd3'
import type { Test } from 'tap'
import t from 'tap'
import { backendConformance } from '../../test/helpers/backend-conformance.ts'
import { loopbackCert, testCA } from '../../test/helpers/certs.ts'
import { freePort, tempDir } from '../../test/helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, nonLoopbackAddress, relayTo, uniquePrefix } from '../../test/helpers/etcd.ts'
import { decode, EtcdBackend, encode, onLoopback, rangeEnd } from './etcd.ts'
import { openBackend, storageTransport } from './index.ts'

const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  let etcd: EtcdServer
  t.before(async () => {
    etcd = await EtcdServer.start()
  })
  t.teardown(() => etcd.stop())

  const open = async (t: Test, prefix = uniquePrefix()) => {
    const backend = await EtcdBackend.open({ peers: [etcd.clientUrl], prefix })
    t.teardown(() => backend.close())
    return backend
  }

  /** A plain etcd client, to look at what the backend stored. */
  const raw = (t: Test) => {
    const client = new Etcd3({ hosts: etcd.clientUrl })
    t.teardown(() => client.close())
    return client
  }

  // Each case gets a prefix of its own on the one etcd: a fresh, empty store.
  // Expiry is exact whatever the TTL; 1.5 s is not a whole number of lease seconds.
  backendConformance(
    t,
    'EtcdBackend',
    async () => {
      const prefix = uniquePrefix('conformance')
      return {
        backend: await EtcdBackend.open({ peers: [etcd.clientUrl], prefix }),
        reopen: () => EtcdBackend.open({ peers: [etcd.clientUrl], prefix }),
        cleanup: async () => {
          const client = new Etcd3({ hosts: etcd.clientUrl })
          await client.delete().prefix(prefix)
          client.close()
        },
      }
    },
    { ttlMs: 1500 },
  )

  t.test('an expired item is gone for reads and conditions before etcd revokes its lease', async (t) => {
    const backend = await open(t)
    const stored = raw(t).namespace(backend.prefix)
    const expiring = await backend.put('/expiring', 'v', { ttlMs: 1000 })
    await backend.put('/claimed', 'v', { ttlMs: 1000 })
    await backend.put('/recreated', 'v', { ttlMs: 1000 })
    const expiries = (await backend.list('/')).map((item) => item.expires!)
    t.equal(expiries.length, 3)
    const expires = (await backend.get('/expiring'))!.expires!
    await sleep(Math.max(...expiries) + 20 - Date.now())

    // The lease outlives the item by at least a second, so etcd still holds all three.
    t.equal(await stored.get('/expiring').string(), `${String(expires).padStart(15, '0')}\nv`, 'etcd still holds it')
    t.equal(await backend.get('/expiring'), undefined, 'get')
    t.same(await backend.list('/'), [], 'list')
    t.equal(await backend.txn([{ key: '/expiring', revision: expiring }], []), false, 'a revision condition fails')
    t.equal(await backend.txn([{ key: '/claimed', absent: true }], [{ op: 'put', key: '/claimed', value: 'mine' }]), true, 'an absent condition holds')
    t.equal(await backend.create('/recreated', 'again'), true, 'create succeeds')
    t.equal(await backend.delete('/expiring'), false, 'delete reports it absent')
    t.match(await backend.get('/claimed'), { value: 'mine', expires: undefined })

    // Left alone, an expired item is removed from etcd by its lease.
    await backend.put('/left', 'v', { ttlMs: 1000 })
    const deadline = Date.now() + 20_000
    while ((await stored.get('/left').string()) !== null && Date.now() < deadline) await sleep(200)
    t.equal(await stored.get('/left').string(), null, 'the lease removed it from etcd')
  })

  t.test('a condition on a live item with a lease holds at once', async (t) => {
    const backend = await open(t)
    const revision = await backend.put('/token', 'single-use', { ttlMs: 60_000 })
    t.equal(await backend.txn([{ key: '/token', revision }], [{ op: 'delete', key: '/token' }]), true)
    t.equal(await backend.get('/token'), undefined)
  })

  t.test('conditions on items without a lease, whatever their value', async (t) => {
    const backend = await open(t)
    // Values sorting below or above an expiry's digits take different paths through txn.
    for (const value of ['', '"quoted"', '0', '999999999999999999', '{"json":1}', '\u0000', 'ü']) {
      const revision = await backend.put('/k', value)
      t.equal(await backend.txn([{ key: '/k', revision: revision - 1 }], [{ op: 'put', key: '/k', value: 'no' }]), false, `${JSON.stringify(value)}: stale revision`)
      t.equal(await backend.txn([{ key: '/k', revision }], [{ op: 'put', key: '/k', value: 'yes' }]), true, `${JSON.stringify(value)}: current revision`)
      t.equal((await backend.get('/k'))?.value, 'yes')
      t.equal(await backend.txn([{ key: '/k', absent: true }], []), false, `${JSON.stringify(value)}: not absent`)
    }
  })

  t.test('writes expiring in the same second share one lease that outlives them', async (t) => {
    const backend = await open(t)
    const client = raw(t)
    const writes = 200
    await Promise.all(Array.from({ length: writes }, (_, i) => backend.put(`/heartbeat/${i}`, 'v', { ttlMs: 30_000 })))
    const stored = await client.namespace(backend.prefix).getAll().prefix('/heartbeat/').exec()
    t.equal(stored.kvs.length, writes)
    const leases = new Set(stored.kvs.map((kv) => kv.lease))
    t.ok(leases.size <= 3, `${writes} writes used ${leases.size} leases`)
    for (const lease of leases) {
      const { TTL } = await client.leaseClient.leaseTimeToLive({ ID: lease })
      const latest = Math.max(...stored.kvs.filter((kv) => kv.lease === lease).map((kv) => decode(kv.value, '').expires))
      t.ok(Number(TTL) * 1000 >= latest - Date.now(), `lease ${lease} has ${TTL} s left, its last item ${latest - Date.now()} ms`)
    }
  })

  t.test('a lease revoked behind the backend is replaced', async (t) => {
    const backend = await open(t)
    const client = raw(t)
    // Mid-second, so that the writes below, a few ms later, expire in the same second.
    await backend.put('/first', 'v', { ttlMs: 60_000 + 500 - (Date.now() % 1000) })
    const expires = (await backend.get('/first'))!.expires!
    const [stored] = (await client.namespace(backend.prefix).getAll().prefix('/first').exec()).kvs
    await client.leaseClient.leaseRevoke({ ID: stored.lease })
    t.equal(await backend.get('/first'), undefined, 'revoking the lease removed its item')

    // Expiring in the same second, this write would reuse the revoked lease.
    await backend.put('/second', 'v', { ttlMs: expires - Date.now() })
    const second = await backend.get('/second')
    t.equal(second?.value, 'v', 'stored under a fresh lease')
    t.equal(Math.ceil(second!.expires! / 1000), Math.ceil(expires / 1000), "expiring in the revoked lease's second")
    t.ok(await backend.txn([], [{ op: 'put', key: '/third', value: 'v', ttlMs: expires - Date.now() }]), 'txn too')
  })

  t.test('values are stored as they are, under the prefix', async (t) => {
    const backend = await open(t)
    const client = raw(t)
    await backend.put('/plain', '{"a": "ü"}')
    await backend.put('/expiring', 'x', { ttlMs: 60_000 })
    t.equal(await client.get(`${backend.prefix}/plain`).string(), '{"a": "ü"}')
    const expires = (await backend.get('/expiring'))!.expires!
    t.equal(await client.get(`${backend.prefix}/expiring`).string(), `${String(expires).padStart(15, '0')}\nx`)
    t.same(await client.getAll().prefix(backend.prefix).keys(), [`${backend.prefix}/expiring`, `${backend.prefix}/plain`])
  })

  t.test('prefixes keep stores apart, even when one name starts with the other', async (t) => {
    const base = uniquePrefix('isolation').slice(0, -1)
    const first = await open(t, `${base}/`)
    const second = await open(t, `${base}2/`)
    const unslashed = await open(t, base)
    t.equal(unslashed.prefix, `${base}/`, 'a trailing slash is added')
    await first.put('/a', 'first')
    await second.put('/a', 'second')
    t.same(
      (await first.list('')).map((item) => item.value),
      ['first'],
    )
    t.same(
      (await second.list('')).map((item) => item.value),
      ['second'],
    )
    t.equal(await second.delete('/a'), true)
    t.match(await first.get('/a'), { value: 'first' })
    t.match(await unslashed.get('/a'), { value: 'first' }, 'same store as with the slash')
  })

  t.test('two clients racing on one etcd: exactly one of 60 txns and of 60 creates wins', async (t) => {
    const prefix = uniquePrefix('race')
    const clients = [await open(t, prefix), await open(t, prefix), await open(t, prefix)]
    const revision = await clients[0].put('/token', 'single-use', { ttlMs: 60_000 })
    const txns = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        clients[i % 3].txn(
          [{ key: '/token', revision }],
          [
            { op: 'delete', key: '/token' },
            { op: 'put', key: `/winners/${i}`, value: 'won' },
          ],
        ),
      ),
    )
    t.equal(txns.filter(Boolean).length, 1)
    t.equal((await clients[1].list('/winners/')).length, 1)
    const creates = await Promise.all(Array.from({ length: 60 }, (_, i) => clients[i % 3].create('/lock', `holder ${i}`, { ttlMs: 60_000 })))
    t.equal(creates.filter(Boolean).length, 1)
    t.match(await clients[2].get('/lock'), { value: `holder ${creates.indexOf(true)}` })
  })

  t.test('a txn touching one key twice keeps the last operation, as if applied in order', async (t) => {
    const backend = await open(t)
    t.equal(
      await backend.txn(
        [],
        [
          { op: 'put', key: '/a', value: '1' },
          { op: 'delete', key: '/a' },
        ],
      ),
      true,
    )
    t.equal(await backend.get('/a'), undefined)
    t.equal(
      await backend.txn(
        [],
        [
          { op: 'delete', key: '/a' },
          { op: 'put', key: '/a', value: '2' },
          { op: 'put', key: '/b', value: 'b' },
        ],
      ),
      true,
    )
    t.match(await backend.list('/'), [
      { key: '/a', value: '2' },
      { key: '/b', value: 'b' },
    ])
  })

  t.test('lists longer than a page are whole and in key order', async (t) => {
    const backend = await open(t)
    const keys = Array.from({ length: 2500 }, (_, i) => `/many/${String(i).padStart(5, '0')}`)
    // etcd takes at most 128 operations in one txn by default.
    for (let i = 0; i < keys.length; i += 100) {
      await backend.txn(
        [],
        keys.slice(i, i + 100).map((key) => ({ op: 'put' as const, key, value: key })),
      )
    }
    const listed = await backend.list('/many/')
    t.equal(listed.length, keys.length)
    t.ok(
      listed.every((item, i) => item.key === keys[i] && item.value === keys[i]),
      'every key once, in order',
    )
  })

  t.test('a TTL must be a positive number', async (t) => {
    const backend = await open(t)
    for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await t.rejects(backend.put('/a', 'v', { ttlMs }), RangeError, `put ttlMs ${ttlMs}`)
      await t.rejects(backend.txn([], [{ op: 'put', key: '/a', value: 'v', ttlMs }]), RangeError, `txn ttlMs ${ttlMs}`)
    }
    t.equal(await backend.get('/a'), undefined, 'nothing was written')
  })

  t.test('openBackend opens etcd from the storage config', async (t) => {
    const backend = await openBackend({ type: 'etcd', peers: [etcd.clientUrl.replace('http://', '')], prefix: uniquePrefix() })
    t.teardown(() => backend.close())
    t.ok(backend instanceof EtcdBackend)
    t.ok((await backend.put('/a', 'v')) > 0, 'a bare host:port means plain http')
  })

  t.test('a loopback peer may be reached over plain http', async (t) => {
    const backend = await open(t)
    t.same(storageTransport(backend), { type: 'etcd', tls: false, plaintextPeers: [] })
  })

  t.test('which peers are on loopback', async (t) => {
    for (const peer of [
      'http://127.0.0.1:2379',
      'http://127.8.9.10:2379',
      'http://localhost:2379',
      'http://LOCALHOST:2379',
      'http://[::1]:2379',
      'http://[0:0:0:0:0:0:0:1]:2379',
      'http://[::ffff:127.0.0.1]:2379',
    ]) {
      t.ok(onLoopback(peer), peer)
    }
    for (const peer of [
      'http://192.0.2.2:2379',
      'http://10.0.0.1:2379',
      'http://128.0.0.1:2379',
      'http://[::2]:2379',
      'http://[::ffff:10.0.0.1]:2379',
      'http://127.0.0.1.example.com:2379',
      'http://localhost.example.com:2379',
      'http://etcd:2379',
      'not a url',
    ]) {
      t.notOk(onLoopback(peer), peer)
    }
  })

  t.test('a peer not on loopback over plain http', { skip: nonLoopbackAddress() === undefined && 'no non-loopback IPv4 address here' }, async (t) => {
    const relay = await relayTo(t, etcd.clientUrl)
    const prefix = uniquePrefix('plaintext')
    const client = raw(t)
    const stored = async () => (await client.getAll().prefix(prefix).keys()).length

    const refusal = new RegExp(
      `^etcd peer http://${relay.host.replaceAll('.', '\\.')}:${relay.port} is not on loopback and would be reached without TLS: .*` +
        'Give auth_service\\.storage\\.tls with ca_file .*cert_file and key_file .*set auth_service\\.storage\\.insecure_plaintext: true',
    )
    await t.rejects(EtcdBackend.open({ peers: [relay.address], prefix }), { message: refusal }, 'a bare host:port is refused')
    await t.rejects(openBackend({ type: 'etcd', peers: [`http://${relay.address}`], prefix }), { message: refusal }, 'and so is http://')
    await t.rejects(
      EtcdBackend.open({ peers: [etcd.clientUrl, `http://${relay.address}`], prefix }),
      { message: new RegExp(`^etcd peer http://${relay.host.replaceAll('.', '\\.')}:${relay.port} is not on loopback`) },
      'a loopback peer beside it does not make it safe',
    )
    t.equal(relay.connections(), 0, 'refused before any connection to the peer')
    await t.rejects(EtcdBackend.open({ peers: [relay.address], prefix, insecurePlaintext: false }), { message: refusal }, 'insecurePlaintext: false is the default')
    t.equal(relay.connections(), 0)
    t.equal(await stored(), 0, 'nothing was written')

    const backend = await EtcdBackend.open({ peers: [relay.address], prefix, insecurePlaintext: true })
    t.teardown(() => backend.close())
    t.same(storageTransport(backend), { type: 'etcd', tls: false, plaintextPeers: [`http://${relay.address}`] }, 'said outright, it is allowed and it shows')
    t.ok((await backend.put('/a', 'v')) > 0)
    t.ok(relay.connections() > 0, 'through the peer that is not on loopback')
    t.equal(await stored(), 1, 'the write reached etcd')
  })

  t.test('insecurePlaintext with TLS, or http:// beside https://, is refused', async (t) => {
    await t.rejects(EtcdBackend.open({ peers: ['10.0.0.1:2379'], prefix: '/warren/', tls: {}, insecurePlaintext: true }), {
      message: /^etcd at https:\/\/10\.0\.0\.1:2379 is reached over TLS, which auth_service\.storage\.insecure_plaintext: true contradicts/,
    })
    await t.rejects(EtcdBackend.open({ peers: ['https://10.0.0.1:2379', 'http://10.0.0.2:2379'], prefix: '/warren/' }), {
      message: /^etcd peer http:\/\/10\.0\.0\.2:2379 uses http:\/\/ but another peer uses https:\/\//,
    })
    await t.rejects(EtcdBackend.open({ peers: ['https://10.0.0.1:2379', 'http://127.0.0.1:2379'], prefix: '/warren/', insecurePlaintext: true }), {
      message: /uses http:\/\/ but another peer uses https:\/\//,
    })
  })

  t.test('an unreachable etcd fails at open, naming the address', async (t) => {
    const peer = `http://127.0.0.1:${await freePort()}`
    await t.rejects(EtcdBackend.open({ peers: [peer], prefix: '/warren/' }), {
      message: new RegExp(`^cannot use etcd at ${peer.replace(/[.]/g, '\\.')}: `),
    })
  })

  t.test('after close, calls say the backend is closed', async (t) => {
    const backend = await EtcdBackend.open({ peers: [etcd.clientUrl], prefix: uniquePrefix() })
    await backend.close()
    await t.rejects(backend.get('/a'), { message: /is closed/ })
    await t.rejects(backend.put('/a', 'v', { ttlMs: 1000 }), { message: /is closed/ })
  })

  t.test('TLS with client certificates', async (t) => {
    const dir = tempDir('warren-etcd-tls-')
    const files = writeTlsFiles(dir)
    const secure = await EtcdServer.start({ tls: files })
    t.teardown(() => secure.stop())
    const peer = secure.clientUrl.replace('https://', '')

    const backend = await EtcdBackend.open({ peers: [peer], prefix: '/warren/', tls: { caFile: files.caFile, certFile: files.clientCertFile, keyFile: files.clientKeyFile } })
    t.teardown(() => backend.close())
    t.equal(backend.peers[0], secure.clientUrl, 'a bare host:port means https when TLS is configured')
    const revision = await backend.put('/a', 'v', { ttlMs: 60_000 })
    t.match(await backend.get('/a'), { value: 'v', revision })

    await t.rejects(EtcdBackend.open({ peers: [peer], prefix: '/warren/', tls: { caFile: files.caFile } }), { message: /^cannot use etcd at / }, 'no client certificate, no entry')
    await t.rejects(EtcdBackend.open({ peers: [peer], prefix: '/warren/', tls: { caFile: join(dir, 'missing.pem') } }), {
      message: /cannot read the etcd TLS CA file .*missing\.pem/,
    })
    await t.rejects(EtcdBackend.open({ peers: [peer], prefix: '/warren/', tls: { caFile: files.caFile, certFile: files.clientCertFile } }), {
      message: /both a certificate file and a key file/,
    })
    await t.rejects(EtcdBackend.open({ peers: [`http://${peer}`], prefix: '/warren/', tls: { caFile: files.caFile } }), { message: /uses http:\/\/ but TLS is configured/ })
    t.same(storageTransport(backend), { type: 'etcd', tls: true, plaintextPeers: [] })
  })

  t.test('TLS checks the name of the peer against the server certificate', { skip: nonLoopbackAddress() === undefined && 'no non-loopback IPv4 address here' }, async (t) => {
    const dir = tempDir('warren-etcd-tls-')
    const files = writeTlsFiles(dir)
    const secure = await EtcdServer.start({ tls: files })
    t.teardown(() => secure.stop())
    // The same etcd, its certificate for 127.0.0.1 and localhost only, reached by another address.
    const relay = await relayTo(t, secure.clientUrl)
    const tls = { caFile: files.caFile, certFile: files.clientCertFile, keyFile: files.clientKeyFile }
    const prefix = uniquePrefix('wrong-name')

    await t.rejects(EtcdBackend.open({ peers: [relay.address], prefix, tls }), {
      message: new RegExp(`^cannot use etcd at https://${relay.host.replaceAll('.', '\\.')}:${relay.port}: .*${relay.host.replaceAll('.', '\\.')} is not in the cert's list`),
    })
    t.ok(relay.connections() > 0, 'the peer was dialled, and its certificate refused')
    const backend = await EtcdBackend.open({ peers: [secure.clientUrl], prefix, tls })
    t.teardown(() => backend.close())
    t.same(await backend.list('/'), [], 'by its own name the same etcd is trusted, and nothing was written')
  })

  t.test('encoding helpers', async (t) => {
    t.same(rangeEnd(Buffer.from('/warren/')), Buffer.from('/warren0'))
    t.same(rangeEnd(Buffer.from([0x61, 0xff, 0xff])), Buffer.from([0x62]))
    t.same(rangeEnd(Buffer.from([0xff])), Buffer.from([0]), 'all of the keyspace')
    t.equal(encode('ü', undefined).toString('utf8'), 'ü', 'no TTL, no envelope')
    t.same(decode(encode('a\nb', 1_767_225_600_000), '/k'), { value: 'a\nb', expires: 1_767_225_600_000 })
    t.throws(() => decode(Buffer.from('{"not":"ours"}'), '/k'), { message: /etcd key "\/k" has a lease but no expiry/ })
  })
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files. */
function writeTlsFiles(dir: string) {
  const authority = testCA('etcd test CA', 'warren-test')
  const ca = authority.ca
  const issue = (name: string, usage: 'serverAuth' | 'clientAuth') => {
    const { certPem: cert, keyPem } = loopbackCert(authority, { CN: name, O: 'warren-test' }, [usage])
    const certFile = join(dir, `${name}.pem`)
    const keyFile = join(dir, `${name}-key.pem`)
    writeFileSync(certFile, cert)
    writeFileSync(keyFile, keyPem, { mode: 0o600 })
    return { certFile, keyFile }
  }
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, ca.certPem)
  const server = issue('server', 'serverAuth')
  const client = issue('client', 'clientAuth')
  return { caFile, certFile: server.certFile, keyFile: server.keyFile, clientCertFile: client.certFile, clientKeyFile: client.keyFile }
}
