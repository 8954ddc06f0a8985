// Two auth servers (real `warren start --roles=auth` processes) on one real etcd: they share
// the CAs, tokens and nodes; of two joins racing on one single-use token through different
// servers exactly one wins; and one server killed mid-join does not stop joins through the other.

import { readFileSync } from 'node:fs'
import t from 'tap'
import { EtcdBackend } from '../auth/backend/etcd.ts'
import { tokenId } from '../auth/tokens.ts'
import { ApiClient } from '../shared/api-client.ts'
import { joinCluster } from '../shared/join.ts'
import { AuthProcess, startNode, tempDir, waitForNode } from './helpers/cluster.ts'
import { EtcdServer, etcdUnavailable, uniquePrefix } from './helpers/etcd.ts'

// Five processes, hundreds of joins and agents that must heartbeat: slow on a busy 2-core machine.
t.setTimeout(300_000)

const unavailable = etcdUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
} else {
  const prefix = uniquePrefix('ha')
  let etcd: EtcdServer
  let a: AuthProcess
  let b: AuthProcess
  let pin = ''

  t.before(async () => {
    etcd = await EtcdServer.start()
    // Every race round refuses one join; let those failures through the rate limiter.
    const yaml = [`  storage: { type: etcd, peers: ["${etcd.clientUrl}"], prefix: "${prefix}" }`, '  join_rate_limit: { burst: 1000, per_minute: 1000 }'].join('\n')
    a = new AuthProcess({ authServiceYaml: yaml })
    b = new AuthProcess({ authServiceYaml: yaml })
    // Started together, they race to create the cluster's CAs and must agree on one.
    await Promise.all([a.start(), b.start()])
    pin = await a.pin()
  })
  t.teardown(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    await etcd?.stop()
  })

  /** The store both servers use, read directly. */
  const store = async () => EtcdBackend.open({ peers: [etcd.clientUrl], prefix })

  const joinThrough = (server: string, token: string, nodename: string) => joinCluster({ authServer: server, token, caPins: [pin], nodename, roles: ['node'], warn: () => {} })

  t.test('both servers serve the same CAs, and one admin identity manages both', async (t) => {
    t.equal(await b.pin(), pin, 'same pin from both')
    const caA = await a.api<{ host_ca_certs: string[]; user_ca_certs: string[] }>('GET', '/v1/ca')
    const caB = await b.api<{ host_ca_certs: string[]; user_ca_certs: string[] }>('GET', '/v1/ca')
    t.same(caB, caA, 'same host and user CAs')
    t.equal(caA.host_ca_certs.length, 1, 'one host CA, not one per server')

    const identity = JSON.parse(readFileSync(a.identityPath, 'utf8'))
    const client = new ApiClient({ server: b.address, caPems: identity.host_ca_certs, certPem: identity.cert, keyPem: identity.key })
    t.teardown(() => client.close())
    const status = await client.request<{ cluster_name: string }>('GET', '/v1/status')
    t.equal(status.cluster_name, 'test-cluster', "A's admin certificate is accepted by B")
  })

  t.test('a token made on A works on B, and a node joined through B shows on A', async (t) => {
    const token = await a.token(['nodes', 'add', '--ttl=5m'])
    t.match((await b.ctl(['tokens', 'ls'])).stdout, tokenId(token), 'B lists the token A made')

    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${b.address}`, `--token=${token}`, `--ca-pin=${pin}`, '--nodename=ha-node'])
    t.teardown(() => node.stop())
    // Generous: the agent must start, join and heartbeat, and test machines are often busy.
    const fromA = await waitForNode(a, 'ha-node', 90_000).catch((error: Error) => {
      throw new Error(`${error.message}\nagent output:\n${node.stderr}`)
    })
    t.match(fromA, /^ha-node\s+[0-9a-f-]{36}\s/m, 'A lists the node that joined and heartbeats through B')
    t.match((await b.ctl(['nodes', 'ls'])).stdout, /^ha-node\s/m, 'and so does B')
  })

  t.test('two servers racing on one single-use token: exactly one join wins (100 rounds)', async (t) => {
    const rounds = 100
    const outcomes: string[] = []
    for (let round = 0; round < rounds; round++) {
      const maker = round % 2 === 0 ? a : b
      const { token } = await maker.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000, single_use: true })
      const results = await Promise.allSettled([joinThrough(a.address, token, `racer-${round}-a`), joinThrough(b.address, token, `racer-${round}-b`)])
      const won = results.filter((result) => result.status === 'fulfilled').length
      const refusals = results.flatMap((result) => (result.status === 'rejected' ? [String(result.reason?.message)] : []))
      if (won !== 1 || !refusals.every((message) => /token expired or not found/.test(message))) {
        outcomes.push(`round ${round}: ${won} won; ${refusals.join('; ')}`)
      }
    }
    t.same(outcomes, [], 'every round: one join won, the other was refused as "token expired or not found"')

    const backend = await store()
    t.teardown(() => backend.close())
    const registered = (await backend.list('/nodes/')).map((item) => JSON.parse(item.value).nodename as string).filter((name) => name.startsWith('racer-'))
    t.equal(registered.length, rounds, 'one node registered per round')
    t.equal(new Set(registered.map((name) => name.split('-')[1])).size, rounds, 'none twice in a round')
  })

  t.test('joins through B keep succeeding while A is killed (SIGKILL) in a burst of joins', async (t) => {
    const token = await b.token(['nodes', 'add', '--ttl=10m'])
    const addressA = a.address
    const workers = 4
    const joinedAfterKill = 20
    let killed = false
    let afterKill = 0
    const throughB = { joined: [] as string[], failed: [] as string[] }
    const throughA = { joined: [] as string[], failed: 0 }

    const burstToA = async (worker: number) => {
      // Keep joining through A until it is dead and this worker has seen it fail.
      for (let i = 0; i < 500; i++) {
        try {
          throughA.joined.push((await joinThrough(addressA, token, `burst-a-${worker}-${i}`)).hostId)
        } catch {
          throughA.failed++
          if (killed) return
        }
      }
    }
    const streamToB = async (worker: number) => {
      for (let i = 0; i < 500 && afterKill < joinedAfterKill; i++) {
        try {
          throughB.joined.push((await joinThrough(b.address, token, `steady-b-${worker}-${i}`)).hostId)
          if (killed) afterKill++
        } catch (error) {
          throughB.failed.push(String((error as Error).message))
        }
      }
    }
    const killer = async () => {
      // Mid-burst: A has answered some joins and has more in flight.
      while (throughA.joined.length < 2 * workers && throughA.failed === 0) await new Promise((resolve) => setTimeout(resolve, 5))
      await a.stop('SIGKILL')
      killed = true
    }
    await Promise.all([killer(), ...Array.from({ length: workers }, (_, w) => burstToA(w)), ...Array.from({ length: workers }, (_, w) => streamToB(w))])

    t.ok(throughA.joined.length >= 2 * workers, `${throughA.joined.length} joins through A before it died`)
    t.ok(throughA.failed > 0, `${throughA.failed} joins through A failed once it was killed`)
    t.same(throughB.failed, [], 'no join through B failed')
    t.ok(afterKill >= joinedAfterKill, `${throughB.joined.length} joins through B, ${afterKill} of them after the kill`)

    const backend = await store()
    t.teardown(() => backend.close())
    const registered = new Set((await backend.list('/nodes/')).map((item) => JSON.parse(item.value).hostId as string))
    const missing = [...throughA.joined, ...throughB.joined].filter((hostId) => !registered.has(hostId))
    t.same(missing, [], 'every acknowledged join is registered, through either server')

    // A restarts with nothing of its own: the cluster lives in etcd.
    await a.start()
    t.equal(await a.pin(), pin, 'the restarted server serves the same CA')
    const identity = await joinThrough(a.address, token, 'after-restart')
    t.match(await backend.get(`/nodes/${identity.hostId}`), { value: /"nodename":"after-restart"/ }, 'and joins through it work again')
  })
}
