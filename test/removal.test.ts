// `warrenctl nodes rm` against real processes: two proxies behind HAProxy hold a node's
// tunnels, and the removal closes both; the node's certificate is refused on the tunnel
// port and on the auth API, also through TLS sessions resumed from before the removal; it
// cannot renew, and restarted with its old identity it does not get back in; its host key
// leaves known_hosts; the backend holds exactly the records a removal leaves, also when a
// proxy's presence report of the node arrives after it. A direct node is removed the same
// way: its open connection through a proxy is closed and the proxy no longer dials it.

import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { AgentTunnel, ResumedSessionRefusedError } from '../agent/tunnel.ts'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import { publicKeyFingerprint } from '../auth/key-policy.ts'
import { ApiClient } from '../shared/api-client.ts'
import { loadIdentity, type NodeIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { balancerAddress, haproxyUnavailable, startBalancer } from './helpers/balancer.ts'
import {
  AuthProcess,
  type Daemon,
  JSON_LOGS,
  logEntries,
  type ProxyProcess,
  proxiesBehindBalancer,
  ROOT,
  signUser,
  startNode,
  tempDir,
  waitForNode,
  warren,
} from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const skip = haproxyUnavailable()
t.setTimeout(300_000)
const log = createLogger('test', { level: 'error' })

const auth = new AuthProcess()
let proxies: ProxyProcess[] = []
let pin = ''
let profile = ''
const daemons: Daemon[] = []
const servers: Server[] = []

t.before(async () => {
  if (skip) return
  await auth.start()
  pin = await auth.pin()
  const balancer = await balancerAddress()
  proxies = await proxiesBehindBalancer(auth, pin, 2, balancer, undefined, true, JSON_LOGS)
  const lb = startBalancer(balancer, proxies)
  t.teardown(() => lb.kill())
  profile = await signUser(auth, proxies[0].web)
})
t.teardown(async () => {
  for (const daemon of daemons) await daemon.stop()
  for (const server of servers) server.close()
  for (const proxy of proxies) await proxy.stop()
  await auth.stop()
})

/** A TCP service that says `text`, or (echo) sends back what it gets. */
async function service(text?: string): Promise<number> {
  const server = createServer((socket) => {
    socket.on('error', () => {}) // a removal cuts transfers mid-way: their resets are expected
    if (text === undefined) socket.pipe(socket)
    else socket.end(text)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  return (server.address() as { port: number }).port
}

/** A node with a `webui` port answering `who` (and an `echo` port), joined through the first proxy or (direct) the auth server. */
async function node(nodename: string, who: string, options: { direct?: boolean } = {}): Promise<{ daemon: Daemon; dataDir: string; config: string }> {
  const dataDir = tempDir()
  const config = join(dataDir, 'warren.yaml')
  writeFileSync(
    config,
    [
      'version: v1',
      `data_dir: ${dataDir}`,
      'ssh_service:',
      '  listen_addr: 127.0.0.1:0',
      `  forward_ports: [{ name: webui, addr: "127.0.0.1:${await service(who)}" }, { name: echo, addr: "127.0.0.1:${await service()}" }]`,
      '',
    ].join('\n'),
  )
  const server = options.direct ? auth.address : proxies[0].web
  const daemon = startNode([`--config=${config}`, `--auth-server=${server}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${nodename}`])
  daemons.push(daemon)
  return { daemon, dataDir, config }
}

/** What a user reaches at `target`'s webui port through `proxy`. */
async function webui(target: string, proxy: ProxyProcess): Promise<string> {
  const result = await warren(['proxy', 'port', `--identity=${profile}`, `--proxy=${proxy.web}`, target, 'webui'])
  return result.code === 0 ? result.stdout : `failed: ${result.stderr.trim()}`
}

function heldCount(stderr: string): number {
  const all = [...stderr.matchAll(/\b(\d+) held\b/g)]
  return all.length ? Number(all[all.length - 1][1]) : 0
}

function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':')
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) }
}

/** A tunnel to `proxy` opened with `identity` (resuming `session` when given), and its latest session ticket. */
async function tunnelTo(proxy: ProxyProcess, identity: NodeIdentity, session?: Buffer): Promise<{ tunnel: AgentTunnel; ticket: Buffer }> {
  const tunnel = await AgentTunnel.open({
    ...hostPort(proxy.tunnel),
    identity,
    session,
    keepAliveIntervalMs: 15_000,
    labels: () => ({}),
    services: [],
    onStream: (s) => s.destroy(),
    log,
    connectTimeoutMs: 5000,
  })
  const ticket = tunnel.ticket ?? ((await once(tunnel, 'session'))[0] as Buffer)
  return { tunnel, ticket }
}

interface Answer {
  status: number
  body: Record<string, unknown>
  resumed: boolean
  ticket?: Buffer
}

/** POST /v1/renew on the auth API over a TLS connection with `identity`'s certificate (resuming `session` when given). */
function renewOverTls(identity: NodeIdentity, session?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      ...hostPort(auth.address),
      ca: identity.hostCAPems,
      cert: identity.tlsCertPem,
      key: identity.tlsKeyPem,
      session,
      checkServerIdentity: () => undefined,
    })
    let ticket: Buffer | undefined
    let response = ''
    let resumed = false
    socket.on('session', (s: Buffer) => (ticket = s))
    socket.on('error', reject)
    socket.once('secureConnect', () => {
      resumed = socket.isSessionReused()
      socket.write(`POST /v1/renew HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`)
    })
    socket.on('data', (chunk) => (response += chunk))
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)
      const text = response.slice(response.indexOf('\r\n\r\n') + 4)
      resolve({ status, body: text ? JSON.parse(text) : {}, resumed, ticket })
    })
  })
}

/** The backend's items under `prefix`, read from the auth server's SQLite file while it runs. */
async function stored(prefix: string): Promise<{ key: string; value: Record<string, unknown> }[]> {
  const backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
  try {
    return (await backend.list(prefix)).map((item) => ({ key: item.key, value: JSON.parse(item.value) }))
  } finally {
    await backend.close()
  }
}

t.test('nodes rm: every proxy closes the tunnels, the certificate is refused everywhere, resumed sessions too', { skip }, async (t) => {
  const pi = await node('pi-rm', 'pi-rm here')
  await pi.daemon.waitFor('a tunnel to each proxy', () => heldCount(pi.daemon.stderr) === 2, 30_000)
  await waitForNode(auth, 'pi-rm')
  const identity = loadIdentity(pi.dataDir)!
  for (const proxy of proxies) t.equal(await webui('pi-rm', proxy), 'pi-rm here', `reached through ${proxy.web}`)

  // Sessions to resume after the removal, made while the node is a member in good standing.
  const before = await tunnelTo(proxies[0], identity)
  before.tunnel.close()
  const apiBefore = await renewOverTls(identity)
  t.equal(apiBefore.status, 409, 'the auth API knows the node (its certificate is not due for renewal)')
  t.ok(apiBefore.ticket, 'and gives a session ticket')

  const removed = await auth.ctl(['nodes', 'rm', 'pi-rm'])
  t.equal(removed.code, 0, removed.stderr)

  for (const [i, proxy] of proxies.entries()) {
    await until(`proxy ${i} to close the tunnel`, () => logEntries(proxy.daemon.stderr, { host_id: identity.hostId, refused: true }).length > 0, { timeoutMs: 10_000 })
    t.match(await webui('pi-rm', proxy), /failed: .*not connected to this proxy/, `proxy ${i} no longer routes to it`)
  }
  await pi.daemon.waitFor('the agent to hold no tunnel', () => heldCount(pi.daemon.stderr) === 0, 10_000)

  const refusedBefore = logEntries(proxies[0].daemon.stderr, { host_id: identity.hostId, resumed: true }).length
  const resumed = await tunnelTo(proxies[0], identity, before.ticket).then(
    () => undefined,
    (error: Error) => error,
  )
  t.type(resumed, ResumedSessionRefusedError, 'a tunnel resuming a session from before the removal is refused')
  await until('the proxy to log the refusal', () => logEntries(proxies[0].daemon.stderr, { host_id: identity.hostId, resumed: true }).length > refusedBefore, { timeoutMs: 5000 })
  const [refusal] = logEntries(proxies[0].daemon.stderr, { host_id: identity.hostId, resumed: true }).slice(-1)
  t.match(refusal.msg, 'is not registered in this cluster: node "pi-rm" was removed', "by the proxy's check of the resumed certificate")

  const apiAfter = await renewOverTls(identity, apiBefore.ticket)
  t.ok(apiAfter.resumed, 'the auth API resumed the session')
  t.equal(apiAfter.status, 401)
  t.match(
    apiAfter.body.error,
    `this endpoint needs a valid host certificate of cluster "test-cluster" (host ${identity.hostId} is not registered in this cluster: node "pi-rm" was removed`,
  )

  const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => client.close())
  await t.rejects(client.request('POST', '/v1/renew', {}), { status: 401, message: /is not registered in this cluster/ }, 'no renewal')
  await t.rejects(client.request('POST', '/v1/heartbeat', {}), { status: 401, message: /is not registered in this cluster/ }, 'no heartbeat')

  // Restarted with the identity it has, it does not get back in.
  await pi.daemon.stop()
  const again = startNode([`--config=${pi.config}`])
  daemons.push(again)
  for (const [i, proxy] of proxies.entries()) {
    const count = logEntries(proxy.daemon.stderr, { host_id: identity.hostId }).length
    await until(`proxy ${i} to refuse the restarted node`, () => logEntries(proxy.daemon.stderr, { host_id: identity.hostId }).length > count, { timeoutMs: 30_000 })
  }
  t.notMatch((await auth.ctl(['nodes', 'ls'])).stdout, 'pi-rm', 'it is not listed')
  t.equal(heldCount(again.stderr), 0, 'and holds no tunnel')
  await again.stop()

  // Its host key leaves the known_hosts users get; the name is free for a new device, with a new token.
  const signed = tempDir('warren-user-')
  t.equal((await auth.ctl(['auth', 'sign', '--user=alice', `--out=${signed}`, '--format=openssh'])).code, 0)
  t.notMatch(readFileSync(join(signed, 'known_hosts'), 'utf8'), identity.hostId, 'known_hosts no longer names it')
  const successor = await node('pi-rm', 'the new pi-rm')
  await until('the new device', async () => (await webui('pi-rm', proxies[0])) === 'the new pi-rm', { timeoutMs: 60_000, everyMs: 500 })
  t.not(loadIdentity(successor.dataDir)!.hostId, identity.hostId, 'a new host, under a new host ID')
})

t.test('a node removed while its tunnel is up leaves exactly the records a removal leaves', { skip }, async (t) => {
  const pi = await node('pi-busy', 'busy')
  await pi.daemon.waitFor('a tunnel to each proxy', () => heldCount(pi.daemon.stderr) === 2, 30_000)
  await waitForNode(auth, 'pi-busy')
  const identity = loadIdentity(pi.dataDir)!
  const hostId = identity.hostId
  // A transfer is under way through the tunnel while the node is removed.
  const transfer = spawn(process.execPath, [join(ROOT, 'cli/warren.ts'), 'proxy', 'port', `--identity=${profile}`, `--proxy=${proxies[1].web}`, 'pi-busy', 'echo'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  transfer.stdin!.on('error', () => {})
  let echoed = 0
  transfer.stdout!.on('data', (chunk: Buffer) => (echoed += chunk.length))
  const feed = setInterval(() => transfer.stdin!.write(Buffer.alloc(64 * 1024, 'x')), 5)
  const ended = once(transfer, 'exit')
  await until('bytes to flow', () => echoed > 1024 * 1024, { timeoutMs: 30_000 })

  t.equal((await auth.ctl(['nodes', 'rm', hostId])).code, 0)
  await ended
  clearInterval(feed)
  t.pass('the transfer through the tunnel was cut')

  // A proxy's presence report of the node that arrives after the removal (one in flight).
  const proxyIdentity = loadIdentity(proxies[1].dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: proxyIdentity.hostCAPems, certPem: proxyIdentity.tlsCertPem, keyPem: proxyIdentity.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const report = await asProxy.request<{ accepted: number; unknown: string[] }>('POST', '/v1/presence', { nodes: [{ host_id: hostId, addr: '127.0.0.1', labels: {} }] })
  t.same(report, { accepted: 0, unknown: [hostId] }, 'the late report is answered with the host as unknown')

  t.notOk(
    (await stored('/nodes/')).some((item) => item.key.endsWith(hostId)),
    'no registration',
  )
  t.notOk(
    (await stored('/nodenames/')).some((item) => item.value.hostId === hostId),
    'no name claim',
  )
  t.notOk(
    (await stored('/presence/')).some((item) => item.key.endsWith(hostId)),
    'no presence, not even from the late report',
  )
  const removals = (await stored('/removed/')).filter((item) => item.key.endsWith(hostId))
  t.equal(removals.length, 1, 'one removal record')
  const record = removals[0].value
  const certExpires = new X509Certificate(identity.tlsCertPem).validToDate.getTime()
  t.match(record, { hostId, nodename: 'pi-busy', roles: ['node'], tlsKeySha256: publicKeyFingerprint(new X509Certificate(identity.tlsCertPem).publicKey) })
  t.equal(record.keepUntil, certExpires + 365 * 24 * 3600_000, 'kept until the certificate would have expired plus the recovery window')
  const listed = (await auth.ctl(['nodes', 'ls', '--all'])).stdout.split('\n').find((line) => line.includes(hostId))
  t.match(listed, /\sremoved\s/, 'nodes ls --all shows it removed')
})

t.test('a removed direct node: its open connection through a proxy closes, and no proxy dials it again', { skip }, async (t) => {
  const direct = await node('pi-direct', 'direct here', { direct: true })
  await waitForNode(auth, 'pi-direct')
  const identity = loadIdentity(direct.dataDir)!
  t.equal(await webui('pi-direct', proxies[0]), 'direct here')
  const open = spawn(process.execPath, [join(ROOT, 'cli/warren.ts'), 'proxy', 'port', `--identity=${profile}`, `--proxy=${proxies[0].web}`, 'pi-direct', 'echo'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const ended = once(open, 'exit')
  open.stdin!.on('error', () => {})
  open.stdin!.write('ping')
  await once(open.stdout!, 'data')

  t.equal((await auth.ctl(['nodes', 'rm', 'pi-direct'])).code, 0)
  await ended
  t.ok(logEntries(proxies[0].daemon.stderr, { host_id: identity.hostId, refused: true }).length > 0, 'the proxy closed its direct connection to the node')
  for (const proxy of proxies) t.match(await webui('pi-direct', proxy), /^failed: /, `${proxy.web} does not reach it`)
  t.match(await webui(identity.hostId, proxies[1]), /^failed: /, 'not by host ID either')
})
