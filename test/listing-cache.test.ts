// What a user's listings cost the auth server, with real processes: `warren ls` (GET
// /v1/user/nodes) and the signed known_hosts a proxy fetches before every `warren proxy ssh`
// (GET /v1/known-hosts) read the registry and the presence items once per change, not once
// per call, so that one user asking in a loop does not make the auth server's work grow with
// the fleet at every request. What changes on this auth server is in the very next answer:
// a join, a lock, assigned labels, a removal.

import t from 'tap'
import { proxyApiClient } from '../cli/profile.ts'
import { ApiClient } from '../shared/api-client.ts'
import { generateJoinKeys, requestJoin } from '../shared/join.ts'
import type { KnownHosts } from '../shared/protocol/logins.ts'
import { AuthProcess, freePort, ProxyProcess, signUser, startNode, tempDir, waitForNode } from './helpers/cluster.ts'

t.setTimeout(180_000)

interface Listed {
  nodes: { nodename: string; status?: string; labels: Record<string, string> }[]
}

const diag = `127.0.0.1:${await freePort()}`
const auth = await new AuthProcess({ diagAddr: diag }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, debug: false }).start()
t.teardown(() => proxy.stop())
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=real-1'])
t.teardown(() => node.stop())
await waitForNode(auth, 'real-1')

// Registered hosts that never come online: the registry is larger than what is present.
const ca = await new ApiClient({ server: auth.address }).call('GET /v1/ca')
const joiner = new ApiClient({ server: auth.address, caPems: ca.host_ca_certs })
t.teardown(() => joiner.close())
const joinToken = await auth.token(['nodes', 'add', '--ttl=1h'])
const joinOffline = (nodename: string) =>
  requestJoin(joiner, { name: ca.cluster_name, caPems: ca.host_ca_certs }, { token: joinToken, nodename, roles: ['node'] } as never, generateJoinKeys())
for (let i = 0; i < 20; i++) await joinOffline(`offline-${i}`)

const user = proxyApiClient(await signUser(auth, proxy.web, 'alice', 'access'), proxy.web)
t.teardown(() => user.close())
const ls = (all = false) => user.request<Listed>('GET', `/v1/user/nodes${all ? '?all=true' : ''}`)
const knownHosts = () => user.request<KnownHosts>('GET', '/v1/known-hosts')
const hostNames = async () => (await knownHosts()).known_hosts.map((line) => line.split(',')[0])

/** How many backend list operations the auth server has made so far (its metrics). */
async function backendLists(): Promise<number> {
  const text = await (await fetch(`http://${diag}/metrics`)).text()
  const match = /^warren_auth_backend_operation_duration_seconds_count\{operation="list"\} (\d+)/m.exec(text)
  if (!match) throw new Error(`no count of backend lists in the metrics:\n${text}`)
  return Number(match[1])
}

t.test('repeated listings and known_hosts cost a constant number of backend lists, not one per call', async (t) => {
  const CALLS = 100
  await ls(true)
  await knownHosts()
  // What the auth server lists on its own meanwhile (revocations, proxies' polls), over as long.
  const quietStart = performance.now()
  const quietBefore = await backendLists()
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const background = (await backendLists()) - quietBefore
  const quietMs = performance.now() - quietStart

  const started = performance.now()
  const before = await backendLists()
  for (let i = 0; i < CALLS; i++) {
    await ls(i % 2 === 0)
    await knownHosts()
  }
  const lists = (await backendLists()) - before
  const elapsed = performance.now() - started
  // Without the caches each call lists the registry, and ls the presence items twice and the proxies: 500 and more.
  const allowance = Math.ceil((background * elapsed) / quietMs) + 3 * Math.ceil(elapsed / 1000) + 5
  t.ok(
    lists <= allowance,
    `${CALLS} listings and ${CALLS} known_hosts made ${lists} backend lists in ${Math.round(elapsed)} ms (at most ${allowance}: ${background} in ${Math.round(quietMs)} ms quiet)`,
  )
  t.ok(lists < CALLS, `fewer backend lists (${lists}) than calls (${CALLS})`)
})

t.test('the same signed known_hosts is answered while nothing changed', async (t) => {
  const first = await knownHosts()
  const second = await knownHosts()
  t.same(second, first, 'the same lines and the same signature')
  t.equal(first.known_hosts.length, 21, 'every registered node')
})

t.test('a change made on this auth server is in the next answer', async (t) => {
  t.ok((await hostNames()).includes('real-1'), 'real-1 in known_hosts')
  t.notOk((await hostNames()).includes('late-1'), 'late-1 not yet')
  await joinOffline('late-1')
  t.ok((await hostNames()).includes('late-1'), 'a host that just joined is in the next known_hosts')

  const labelled = await auth.ctl(['nodes', 'label', 'real-1', 'team=blue'])
  t.equal(labelled.code, 0, labelled.stderr)
  t.equal((await ls()).nodes.find((n) => n.nodename === 'real-1')?.labels.team, 'blue', 'assigned labels are in the next ls')

  const locked = await auth.ctl(['lock', '--node=real-1'])
  t.equal(locked.code, 0, locked.stderr)
  t.equal((await ls(true)).nodes.find((n) => n.nodename === 'real-1')?.status, 'locked', 'a lock is in the next ls --all')

  const removed = await auth.ctl(['nodes', 'rm', 'real-1'])
  t.equal(removed.code, 0, removed.stderr)
  t.notOk(
    (await ls()).nodes.some((n) => n.nodename === 'real-1'),
    'a removed node is gone from the next ls',
  )
  t.notOk(
    (await ls(true)).nodes.some((n) => n.nodename === 'real-1'),
    'and from the next ls --all',
  )
  t.notOk((await hostNames()).includes('real-1'), 'and from the next known_hosts')

  const late = await auth.ctl(['nodes', 'rm', 'late-1'])
  t.equal(late.code, 0, late.stderr)
  t.notOk((await hostNames()).includes('late-1'), 'an offline host removed is gone from the next known_hosts')
})
