// Two auth servers (real processes) on one real etcd, reached over a link that can be slowed
// and cut: an auth server killed (SIGKILL) in a burst of user creations, of joins with
// single-use tokens, or during an automatic CA rotation leaves every change whole or
// undone; with etcd out of reach, writes are refused and nothing refused appears later.

import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import t from 'tap'
import { EtcdBackend } from '../auth/backend/etcd.ts'
import { hashToken } from '../auth/tokens.ts'
import { ApiError } from '../shared/errors.ts'
import { joinCluster } from '../shared/join.ts'
import { AuthProcess } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

// Every backend round trip takes at least twice this: a kill then lands between two writes.
const LINK_DELAY_MS = 5

/** A TCP relay to etcd that delays every chunk each way (in order), and can be cut and restored on its port. */
class EtcdLink {
  #server: Server | undefined
  #sockets = new Set<Socket>()
  readonly #target: URL
  readonly #delayMs: number
  port = 0

  constructor(target: URL, delayMs: number) {
    this.#target = target
    this.#delayMs = delayMs
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async open(): Promise<void> {
    const relay = (from: Socket, to: Socket) => {
      from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), this.#delayMs))
      from.on('close', () => setTimeout(() => to.destroy(), this.#delayMs))
      from.on('error', () => undefined)
    }
    const server = createServer((client) => {
      const upstream = connect(Number(this.#target.port), this.#target.hostname)
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
      }
      relay(client, upstream)
      relay(upstream, client)
    })
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve))
    this.port = (server.address() as AddressInfo).port
    this.#server = server
  }

  /** etcd is out of reach: connections are cut and new ones refused. */
  async cut(): Promise<void> {
    const server = this.#server
    this.#server = undefined
    for (const socket of this.#sockets) socket.destroy()
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  }
}

const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  const prefix = uniquePrefix('ha-crash')
  let etcd: EtcdServer
  let link: EtcdLink
  let a: AuthProcess
  let b: AuthProcess
  let pin = ''
  let backend: EtcdBackend

  t.before(async () => {
    etcd = await EtcdServer.start()
    link = new EtcdLink(new URL(etcd.clientUrl), LINK_DELAY_MS)
    await link.open()
    const yaml = [`  storage: { type: etcd, peers: ["${link.url}"], prefix: "${prefix}" }`, '  join_rate_limit: { burst: 10000, per_minute: 10000 }'].join('\n')
    a = new AuthProcess({ authServiceYaml: yaml })
    b = new AuthProcess({ authServiceYaml: yaml })
    await Promise.all([a.start(), b.start()])
    pin = await a.pin()
    backend = await EtcdBackend.open({ peers: [etcd.clientUrl], prefix })
  })
  t.teardown(async () => {
    await backend?.close()
    await Promise.all([a?.stop(), b?.stop()])
    await link?.cut()
    await etcd?.stop()
  })

  /** Runs `count` calls at once and SIGKILLs A once `stored` holds (some of them are in the backend); then A starts again. */
  async function killMidway<T>(count: number, stored: () => Promise<boolean>, call: (i: number) => Promise<T>): Promise<(T | undefined)[]> {
    const results: (T | undefined)[] = new Array(count).fill(undefined)
    const calls = Array.from({ length: count }, (_, i) =>
      call(i).then(
        (result) => {
          results[i] = result
        },
        () => undefined,
      ),
    )
    await until('the first writes', stored, { everyMs: 2 })
    await a.stop('SIGKILL')
    await Promise.all(calls)
    await a.start()
    return results
  }
  const storedUnder = async (key: string, start: string, count: number) =>
    (await backend.list(key)).filter((item) => (JSON.parse(item.value).name ?? JSON.parse(item.value).nodename)?.startsWith(start)).length >= count

  t.test('A killed amid user creations: each user exists with its invitation, or not at all (3 rounds)', async (t) => {
    for (let round = 0; round < 3; round++) {
      const answers = await killMidway(
        40,
        () => storedUnder('/users/', `u${round}-`, 3),
        (i) => a.api<{ name: string; signup_token: string }>('POST', '/v1/users', { name: `u${round}-${i}`, logins: ['root'], roles: ['access'], signup_ttl_ms: 600_000 }),
      )
      const invited = new Set((await backend.list('/tokens/')).map((item) => JSON.parse(item.value).user as string | undefined))
      const users = (await backend.list('/users/')).map((item) => JSON.parse(item.value).name as string).filter((name) => name.startsWith(`u${round}-`))
      t.same(
        users.filter((name) => !invited.has(name)),
        [],
        `round ${round}: ${users.length} users stored, none without its invitation`,
      )
      const acknowledged = answers.filter((answer) => answer !== undefined)
      t.same(
        acknowledged.filter((answer) => !users.includes(answer.name)),
        [],
        `round ${round}: every one of ${acknowledged.length} acknowledged users is stored`,
      )
      for (const answer of acknowledged) t.ok(await backend.get(`/tokens/${hashToken(answer.signup_token).toString('hex')}`), `${answer.name}'s invitation is stored`)
    }
  })

  t.test('A killed amid joins with single-use tokens: each token joined its node, or is unspent', async (t) => {
    const tokens = await Promise.all(
      Array.from({ length: 30 }, async () => (await b.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 600_000, single_use: true })).token),
    )
    const address = a.address
    const answers = await killMidway(
      tokens.length,
      () => storedUnder('/nodes/', 'kill-join-', 3),
      (i) => joinCluster({ authServer: address, token: tokens[i], caPins: [pin], nodename: `kill-join-${i}`, roles: ['node'], warn: () => {} }),
    )
    const names = new Set((await backend.list('/nodes/')).map((item) => JSON.parse(item.value).nodename as string))
    const torn: string[] = []
    for (const [i, token] of tokens.entries()) {
      const unspent = (await backend.get(`/tokens/${hashToken(token).toString('hex')}`)) !== undefined
      if (unspent === names.has(`kill-join-${i}`))
        torn.push(`kill-join-${i}: token ${unspent ? 'unspent' : 'spent'}, node ${names.has(`kill-join-${i}`) ? 'registered' : 'absent'}`)
    }
    t.same(torn, [], 'no token spent without its node, nor a node without its token spent')
    const acknowledged = answers.flatMap((answer, i) => (answer ? [`kill-join-${i}`] : []))
    t.same(
      acknowledged.filter((name) => !names.has(name)),
      [],
      'every answered join is registered',
    )
  })

  t.test('an automatic host CA rotation with A killed on its way: both servers end in standby on the new CA', async (t) => {
    type Status = { host_ca: { pins: string[]; rotation: { phase: string } | null } }
    const order = ['init', 'update_clients', 'update_servers', 'standby']
    const phaseOf = async (server: AuthProcess) => ((await server.api<Status>('GET', '/v1/status')).host_ca.rotation?.phase ?? 'standby') as string
    await b.api('POST', '/v1/rotate', { type: 'host', grace_period_ms: 16_000 })
    const seen: Record<string, string[]> = { a: [], b: [] }
    const watch = async (name: 'a' | 'b', server: AuthProcess) => {
      const phase = await phaseOf(server).catch(() => undefined)
      if (phase !== undefined && seen[name].at(-1) !== phase) seen[name].push(phase)
      return phase
    }
    // Killed once the rotation has moved past init, restarted at once.
    await until('the rotation past init', async () => (await watch('b', b)) === 'update_clients', { everyMs: 50 })
    await a.stop('SIGKILL')
    await a.start()
    await until(
      'both servers in standby',
      async () => {
        const [phaseA, phaseB] = await Promise.all([watch('a', a), watch('b', b)])
        return phaseA === 'standby' && phaseB === 'standby'
      },
      { everyMs: 50 },
    )
    for (const name of ['a', 'b'] as const) {
      const positions = seen[name].map((phase) => order.indexOf(phase))
      t.same(
        positions,
        [...positions].sort((x, y) => x - y),
        `${name} saw the phases in order: ${seen[name].join(' → ')}`,
      )
    }
    const [statusA, statusB] = await Promise.all([a.api<Status>('GET', '/v1/status'), b.api<Status>('GET', '/v1/status')])
    t.same(statusA.host_ca.pins, statusB.host_ca.pins, 'both serve the same CA')
    t.equal(statusA.host_ca.pins.length, 1, 'one CA')
    t.not(statusA.host_ca.pins[0], pin, 'the new one')
    pin = statusA.host_ca.pins[0]
  })

  t.test('etcd out of reach: writes are refused, nothing refused appears later, and both servers recover', async (t) => {
    const before = (await a.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 600_000 })).token
    await link.cut()
    const refusals: { server: string; status: number }[] = []
    const refusedTokens: string[] = []
    for (const [name, server] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const value = `outage-token-${name}-0123456789`
      refusedTokens.push(value)
      // One call at a time: a second call made up front could fail before anything awaits it.
      for (const call of [
        () => server.api('POST', '/v1/tokens', { roles: 'node', ttl_ms: 600_000, token: value }),
        () => server.api('POST', '/v1/users', { name: `outage-${name}`, logins: ['root'], roles: ['access'], signup_ttl_ms: 600_000 }),
      ]) {
        const status = await call().then(
          () => 200,
          (error) => (error instanceof ApiError ? error.status : -1),
        )
        refusals.push({ server: name, status })
      }
      await t.rejects(
        joinCluster({ authServer: server.address, token: before, caPins: [pin], nodename: `outage-join-${name}`, roles: ['node'], warn: () => {} }),
        `a join through ${name} fails`,
      )
    }
    t.ok(
      refusals.every((refusal) => refusal.status >= 500),
      `every write answered with a server error: ${JSON.stringify(refusals)}`,
    )

    await link.open()
    for (const server of [a, b]) {
      await until('writes accepted again', () =>
        server.api('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000 }).then(
          () => true,
          () => false,
        ),
      )
    }
    for (const value of refusedTokens) t.equal(await backend.get(`/tokens/${hashToken(value).toString('hex')}`), undefined, 'a refused token was not stored')
    for (const name of ['outage-a', 'outage-b']) t.equal(await backend.get(`/users/${name}`), undefined, `refused user ${name} was not stored`)
    for (const [name, server] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const identity = await joinCluster({ authServer: server.address, token: before, caPins: [pin], nodename: `after-outage-${name}`, roles: ['node'], warn: () => {} })
      t.ok(await backend.get(`/nodes/${identity.hostId}`), `the token made before the outage joins through ${name} after it`)
    }
  })
}
