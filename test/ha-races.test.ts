// Two auth servers (real processes) on one real etcd, raced on the same state: a single-use
// token, invitation or reset spent through both at once is spent once; a token removed while
// joins are in flight admits no join after its removal; a lock made through one server bars
// the user's certificates through the other at once; a removed node's heartbeats, through
// either server, never bring it back.

import { readFileSync } from 'node:fs'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { Etcd3 } from 'etcd3'
import t from 'tap'
import { EtcdBackend } from '../auth/backend/etcd.ts'
import { hashToken, tokenId } from '../auth/tokens.ts'
import { generateUserKeys, publicKeyFields } from '../cli/credentials-files.ts'
import { completeSignup, logIn, startSignup } from '../cli/sealed-login-requests.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { joinCluster } from '../shared/join.ts'
import { AuthProcess } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { codeAt, stepNow } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

const PASSWORD = 'a long enough passphrase'
// etcd as across a network: every chunk each way arrives this much later. The time between a
// server's read and its write is then long enough for another server's write to land in it.
const LINK_DELAY_MS = 5

/** A TCP relay to `target` (host:port) that delays every chunk, each way, in order. */
async function slowLink(target: URL, delayMs: number): Promise<{ url: string; server: Server }> {
  const sockets = new Set<Socket>()
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs))
    from.on('close', () => setTimeout(() => to.destroy(), delayMs))
    from.on('error', () => undefined)
  }
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    }
    relay(client, upstream)
    relay(upstream, client)
  })
  server.on('close', () => {
    for (const socket of sockets) socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}
const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  const prefix = uniquePrefix('ha-races')
  let etcd: EtcdServer
  let a: AuthProcess
  let b: AuthProcess
  let pin = ''
  let caPems: string[] = []
  let backend: EtcdBackend
  let link: Server

  t.before(async () => {
    etcd = await EtcdServer.start()
    const slow = await slowLink(new URL(etcd.clientUrl), LINK_DELAY_MS)
    link = slow.server
    // Every race refuses many joins and sign-ups: let them through the rate limiter.
    const yaml = [`  storage: { type: etcd, peers: ["${slow.url}"], prefix: "${prefix}" }`, '  join_rate_limit: { burst: 10000, per_minute: 10000 }'].join('\n')
    a = new AuthProcess({ authServiceYaml: yaml })
    b = new AuthProcess({ authServiceYaml: yaml })
    await Promise.all([a.start(), b.start()])
    pin = await a.pin()
    caPems = JSON.parse(readFileSync(a.identityPath, 'utf8')).host_ca_certs
    backend = await EtcdBackend.open({ peers: [etcd.clientUrl], prefix })
  })
  t.teardown(async () => {
    await backend?.close()
    await Promise.all([a?.stop(), b?.stop()])
    link?.close()
    await etcd?.stop()
  })

  const cluster = () => ({ name: 'test-cluster', caPems })
  const publicClient = (server: AuthProcess) => new ApiClient({ server: server.address, caPems })
  const joinThrough = (server: AuthProcess, token: string, nodename: string) =>
    joinCluster({ authServer: server.address, token, caPins: [pin], nodename, roles: ['node'], warn: () => {} })
  const registeredNames = async (start: string) => (await backend.list('/nodes/')).map((item) => JSON.parse(item.value).nodename as string).filter((name) => name.startsWith(start))
  /** The HTTP status of a refused call, or 200. */
  const statusOf = async (call: Promise<unknown>) => {
    try {
      await call
      return 200
    } catch (error) {
      if (error instanceof ApiError) return error.status
      throw error
    }
  }

  t.test('one single-use token, twelve joins at once through both servers: exactly one node joins (5 rounds)', async (t) => {
    for (let round = 0; round < 5; round++) {
      const { token } = await (round % 2 ? a : b).api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000, single_use: true })
      const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => joinThrough(i % 2 ? a : b, token, `single-${round}-${i}`)))
      t.equal(results.filter((result) => result.status === 'fulfilled').length, 1, `round ${round}: one join answered`)
      t.equal((await registeredNames(`single-${round}-`)).length, 1, `round ${round}: one node registered`)
      t.equal(await backend.get(`/tokens/${hashToken(token).toString('hex')}`), undefined, `round ${round}: the token is spent`)
    }
  })

  t.test('a token removed while joins with it are in flight: no node registers after the removal', async (t) => {
    const watcher = new Etcd3({ hosts: [etcd.clientUrl] })
    t.teardown(() => watcher.close())
    for (let round = 0; round < 3; round++) {
      const { token } = await a.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000 })
      // The backend's key ("/tokens/...") under the prefix, as etcd holds it.
      const key = `${prefix}/tokens/${hashToken(token).toString('hex')}`
      const created = await watcher.get(key).exec()
      let removed = false
      let joined = 0
      const worker = async (w: number) => {
        for (let i = 0; !removed; i++) {
          await joinThrough(w % 2 ? a : b, token, `rm-${round}-${w}-${i}`).then(
            () => joined++,
            () => undefined,
          )
        }
      }
      const remover = async () => {
        await until('joins before the removal', () => joined >= 48, { everyMs: 5 })
        await b.api('DELETE', `/v1/tokens/${tokenId(token)}`)
        removed = true
      }
      await Promise.all([remover(), ...Array.from({ length: 48 }, (_, w) => worker(w))])
      // The removal's own revision: the first at which etcd's history no longer holds the key.
      const existsAt = async (revision: number) => (await watcher.kv.range({ key: Buffer.from(key), revision: String(revision) })).kvs.length > 0
      let present = Number(created.header.revision)
      let absent = Number((await watcher.kv.range({ key: Buffer.from(key) })).header.revision)
      while (absent - present > 1) {
        const middle = Math.floor((present + absent) / 2)
        if (await existsAt(middle)) present = middle
        else absent = middle
      }
      const deletedAt = absent
      const late = (await backend.list('/nodes/'))
        .filter((item) => item.revision > deletedAt)
        .map((item) => JSON.parse(item.value).nodename as string)
        .filter((name) => name.startsWith(`rm-${round}-`))
      t.same(late, [], `round ${round}: ${joined} joins before the removal, none registered after it`)
    }
  })

  /** Adds a user through `server` and returns the invitation's token. */
  const addUser = async (server: AuthProcess, name: string) => {
    const added = await server.api<{ signup_token: string }>('POST', '/v1/users', { name, logins: ['root'], roles: ['access'], signup_ttl_ms: 600_000 })
    return added.signup_token
  }

  /** Ten sign-ups with one invitation at once, half through each server: how many were answered. */
  const raceSignups = async (token: string) => {
    const started = await startSignup(publicClient(b), cluster(), token)
    const secret = new URL(started.otpauth_uri).searchParams.get('secret')!
    const code = codeAt(secret, stepNow())
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, async (_, i) => {
        const client = publicClient(i % 2 ? a : b)
        try {
          return await completeSignup(client, cluster(), { token, password: PASSWORD, totp_code: code }, generateUserKeys(), 60_000)
        } finally {
          await client.close()
        }
      }),
    )
    return { answered: results.filter((result) => result.status === 'fulfilled').length, secret }
  }

  t.test('one invitation accepted ten times at once through both servers: one sign-up', async (t) => {
    const token = await addUser(a, 'carol')
    t.equal((await raceSignups(token)).answered, 1, 'one sign-up answered')
    t.equal(await backend.get(`/tokens/${hashToken(token).toString('hex')}`), undefined, 'the invitation is spent')
    t.ok(JSON.parse((await backend.get('/credentials/carol'))!.value).password, 'a password is set')

    t.test('and the invitation of a reset, likewise', async (t) => {
      const reset = await b.api<{ signup_token: string }>('POST', '/v1/users/carol/reset', { signup_ttl_ms: 600_000 })
      t.equal((await raceSignups(reset.signup_token)).answered, 1, 'one sign-up answered')
      t.equal(await backend.get(`/tokens/${hashToken(reset.signup_token).toString('hex')}`), undefined, 'the invitation is spent')
    })
  })

  t.test('a user locked through A gets no certificates through B from then on', async (t) => {
    const token = await addUser(a, 'dave')
    const { secret } = await raceSignups(token)
    const keys = publicKeyFields(generateUserKeys())
    t.equal(await statusOf(b.api('POST', '/v1/users/dave/certs', { ...keys, ttl_ms: 60_000 })), 200, 'certificates before the lock')
    for (let round = 0; round < 5; round++) {
      const lock = await a.api<{ id: string }>('POST', '/v1/locks', { user: 'dave', message: 'race' })
      t.equal(await statusOf(b.api('POST', '/v1/users/dave/certs', { ...keys, ttl_ms: 60_000 })), 403, `round ${round}: auth sign through B is refused`)
      const client = publicClient(b)
      const login = logIn(client, cluster(), 'dave', { password: PASSWORD, totp_code: codeAt(secret, stepNow() + 1) }, generateUserKeys(), 60_000)
      t.not(await statusOf(login.finally(() => client.close())), 200, `round ${round}: a login through B is refused`)
      await b.api('DELETE', `/v1/locks/${lock.id}`)
    }
  })

  t.test("a removed node's heartbeats, through both servers at once, never bring it back", async (t) => {
    const { token } = await a.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000 })
    const identity = await joinThrough(a, token, 'heart')
    const hostClient = (server: AuthProcess) => new ApiClient({ server: server.address, caPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
    const clients = [hostClient(a), hostClient(b), hostClient(a), hostClient(b)]
    t.teardown(() => Promise.all(clients.map((client) => client.close())))
    let removed = false
    const refusedBy = new Set<number>()
    let beats = 0
    // Labels change at every beat, so that every one writes the node's presence.
    const beat = async (w: number) => {
      for (let i = 0; !(removed && refusedBy.has(w)); i++) {
        // A removed host's connections are closed, so a refusal may also come as a reset.
        const status = await statusOf(clients[w].call('POST /v1/heartbeat', { body: { labels: { beat: `${w}-${i}` } } })).catch(() => 0)
        if (status === 200) beats++
        else if (removed) refusedBy.add(w)
      }
    }
    const remover = async () => {
      await until('heartbeats before the removal', () => beats >= 20, { everyMs: 5 })
      await b.api('DELETE', `/v1/nodes/${identity.hostId}`)
      removed = true
    }
    await Promise.all([remover(), ...clients.map((_, w) => beat(w))])
    t.equal(await backend.get(`/nodes/${identity.hostId}`), undefined, 'no registration')
    t.equal(await backend.get(`/presence/${identity.hostId}`), undefined, 'no presence')
    t.equal(await backend.get('/nodenames/heart'), undefined, 'the name is free')
    for (const server of [a, b]) t.notMatch((await server.ctl(['nodes', 'ls'])).stdout, /^heart\s/m, 'nodes ls does not list it')
  })
}
