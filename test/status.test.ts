// `warren status` reads what a running `warren start` reports on the socket in its data dir:
// the auth server's cluster and CAs, the proxy's tunnels and live set, a tunnel node's
// tunnels, a direct node's heartbeats. Only the data dir's owner can read it, and it is gone
// once the process stops.

import { existsSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { defaultConfig } from '../shared/config.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { STATUS_SOCKET } from '../shared/status-socket.ts'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, warren } from './helpers/cluster.ts'

async function statusOf(dataDir: string): Promise<WarrenStatus> {
  const result = await warren(['status', `--data-dir=${dataDir}`, '--format=json'])
  if (result.code !== 0) throw new Error(`warren status failed: ${result.stderr}`)
  return JSON.parse(result.stdout) as WarrenStatus
}

t.test('each role reports its state; warren status prints it as JSON or as rows', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())

  const authStatus = JSON.parse((await warren(['status', `--config=${auth.configPath}`, '--format=json'])).stdout) as WarrenStatus
  t.same(authStatus.process.roles, ['auth'], "found through the config file's data_dir")
  t.equal(authStatus.process.pid, auth.daemon.child.pid)
  t.equal(authStatus.auth?.cluster, 'test-cluster')
  t.equal(authStatus.auth?.address, auth.address)
  const { expires, ...hostCA } = authStatus.auth!.host_ca
  t.same(hostCA, { phase: 'standby', mode: null, pins: [pin], last_rotated: null, expired: false })
  t.ok(Date.parse(expires) > Date.now() + 9.9 * 365 * 24 * 3600_000, `the CA's certificate expires in ten years (${expires})`)
  t.equal(statSync(join(auth.dataDir, STATUS_SOCKET)).mode & 0o777, 0o600, "the socket is for the data dir's owner only")

  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=reported', '--labels=site=lab'])
  t.teardown(() => node.stop())
  const proxyId = (await proxy.daemon.status()).proxy!.proxy_id
  await node.waitForStatus('a tunnel', (status) => status.node?.tunnel?.proxies.length === 1)

  const status = await statusOf(nodeDir)
  t.equal(status.process.pid, node.child.pid)
  t.ok(status.process.fresh_image, 'it continued in a fresh image after joining')
  const young = status.process.young_generation_bytes
  t.ok(young > 0 && young <= 2 * 1024 * 1024, `from source too, it runs with the executable's cap on the young generation (${young} bytes; shared/heap-tuning.ts)`)
  const reported = status.node!
  t.equal(reported.mode, 'tunnel')
  t.equal(reported.nodename, 'reported')
  t.equal(reported.cluster, 'test-cluster')
  t.same(reported.labels, { site: 'lab' })
  t.equal(reported.tunnel!.address, proxy.tunnel)
  t.equal(reported.tunnel!.proxies[0].proxy_id, proxyId)
  t.equal(reported.tunnel!.proxies[0].pacing, 'off', 'a tunnel over loopback is not paced')
  t.same(reported.tunnel!.live_set, [proxyId])
  t.equal(reported.certificate.issuer_pin, pin, 'its certificate is from the host CA it pinned')
  t.ok(Date.parse(reported.certificate.not_after) > Date.now() + defaultConfig().auth.hostCertTtlMs * 0.9, 'for the default host certificate lifetime')
  t.equal(reported.optimising_compilers, 'off until the first stream', "an idle agent alone runs without V8's optimisers")
  // perl-base is part of every Debian system, this one included.
  t.equal(reported.ptys, 'agent', 'the agent holds ptys itself')

  const atProxy = await proxy.daemon.waitForStatus('the tunnel at the proxy', (s) => s.proxy!.tunnels.count === 1)
  t.same(
    atProxy.proxy!.tunnels.hosts.map((h) => [h.host_id, h.nodename, h.pacing]),
    [[reported.host_id, 'reported', 'off']],
    "the proxy holds the node's tunnel",
  )
  t.same(atProxy.proxy!.live_set, [proxyId])
  t.same(atProxy.proxy!.listen, { web: proxy.web, tunnel: proxy.tunnel, multiplexed: false })

  const text = await warren(['status', `--data-dir=${nodeDir}`])
  t.equal(text.code, 0)
  t.match(text.stdout, new RegExp(`^Node\\s+${reported.host_id} \\(reported\\), cluster test-cluster$`, 'm'))
  t.match(text.stdout, new RegExp(`^Mode\\s+tunnel: dialling ${proxy.tunnel.replaceAll('.', '\\.')}$`, 'm'))
  t.match(text.stdout, /^Audit events\s+0 waiting for the auth server, 0 dropped$/m)
  t.match(text.stdout, /^Tunnels\s+1 of 1$/m)
  t.match(text.stdout, new RegExp(`^${proxyId}\\s+\\d\\d [A-Z][a-z]{2} \\d\\d \\d\\d:\\d\\d UTC \\(\\S+ ago\\)\\s+new\\s+off$`, 'm'), 'a table row per proxy held')

  // The first stream it serves turns them on.
  const profile = await signUser(auth, proxy.web)
  t.equal((await openssh(profile, [`${testLogin()}@reported`, 'echo served'])).stdout, 'served\n')
  t.equal((await statusOf(nodeDir)).node!.optimising_compilers, 'on', 'after an SSH session')

  await node.stop()
  t.notOk(existsSync(join(nodeDir, STATUS_SOCKET)), 'a stopped process leaves no socket')
  const stopped = await warren(['status', `--data-dir=${nodeDir}`])
  t.equal(stopped.code, 1)
  t.match(stopped.stderr, `cannot read the status socket ${join(nodeDir, STATUS_SOCKET)}`)
})

t.test('a direct node reports where proxies reach it and how its heartbeats fare', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const nodeDir = tempDir()
  const config = join(nodeDir, 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${nodeDir}\nssh_service:\n  listen_addr: 127.0.0.1:0\n`)
  const node = startNode([`--config=${config}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${await auth.pin()}`, '--nodename=direct'])
  t.teardown(() => node.stop())
  const status = await node.waitForStatus('a heartbeat', (s) => (s.node?.direct?.heartbeats.ok ?? 0) >= 1)
  t.equal(status.node!.mode, 'direct')
  t.notOk(status.node!.tunnel)
  t.match(status.node!.direct!.listen_addr, /^127\.0\.0\.1:\d+$/)
  t.equal(status.node!.direct!.heartbeats.failed, 0)
})

t.test('usage', async (t) => {
  const help = await warren(['status', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: warren status /)
  t.match(help.stdout, /--format=text\|json\s+.*\(default: text\)/)
  const format = await warren(['status', '--format=yaml', `--data-dir=${tempDir()}`])
  t.equal(format.code, 2)
  t.match(format.stderr, 'unknown --format "yaml": use text or json')
})
