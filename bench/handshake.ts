// CPU per tunnel opened, on each side: what a proxy spends on every node that connects (or
// comes back after a restart), and what the node spends, against a bare TLS 1.3 handshake
// with the same kind of certificates measured in the same run.
//
//   npm run bench:handshake [-- --handshakes=1000 --rounds=3 --concurrency=8 --profile]
//
// warren: this process opens tunnels with agent/tunnel.ts, each with an identity of its own
//         that joined the cluster, to a real proxy (`warren start --roles=proxy`): TLS 1.3
//         with the node's host certificate, the ALPN names, one yamux session, the control
//         stream's welcome and hello; the proxy registers the tunnel and reports it to the
//         auth server. The tunnels are closed after each round, outside the measured window.
// resumed: the same tunnels opened again with the TLS session ticket each identity got from
//         the proxy in a warren round: what a fleet returning to a restarted proxy costs.
// tls:    the same number of TLS handshakes between this process and a plain
//         `tls.createServer` in a helper process (bench/lib/tls-server.ts): ECDSA P-256 on
//         both sides, a client certificate required and verified, ALPN; the node's own
//         certificates on the client side.
//
// The node's side is this process's CPU time (process.cpuUsage), the server's its
// /proc/<pid>/stat, both over the window from the first dial until the last is open and
// the server has settled (300 ms). Rounds alternate between the paths; medians are shown.
// --profile runs the proxy with --cpu-prof and profiles this process over the warren rounds,
// then prints where each side's time went.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createSecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls'
import { parseArgs } from 'node:util'
import { AgentTunnel } from '../agent/tunnel.ts'
import { parseHostPort } from '../shared/address.ts'
import { DEFAULTS } from '../shared/config.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { createLogger } from '../shared/log.ts'
import { TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { AuthProcess, ProxyProcess } from '../test/helpers/cluster.ts'
import { selfSignedCertificate } from '../test/helpers/self-signed-cert.ts'
import { BulkJoiner } from './lib/bulk-join.ts'
import { Helper } from './lib/child.ts'
import { formatSummary, profilesOf, summariseProfiles } from './lib/cpu-profile.ts'
import { median } from './lib/measure.ts'
import { cpuSeconds } from './lib/proc-stats.ts'
import { inParallel, simulatedAgent } from './lib/swarm.ts'
import { formatTable } from './lib/table.ts'

const { values } = parseArgs({
  options: {
    handshakes: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '8' },
    profile: { type: 'boolean', default: false },
  },
})
const count = Number(values.handshakes)
const rounds = Number(values.rounds)
const concurrency = Number(values.concurrency)
const log = createLogger('bench', { level: 'error' })

interface Sample {
  nodeMs: number
  serverMs: number
}

/** Runs `open` `count` times and measures both sides' CPU per call; `close` runs after the window. */
async function measure(serverPid: number, open: (i: number) => Promise<{ close(): void }>): Promise<Sample> {
  const opened: { close(): void }[] = []
  const node = process.cpuUsage()
  const server = cpuSeconds(serverPid)
  await inParallel(0, count, concurrency, async (i) => {
    opened.push(await open(i))
  })
  await sleep(300)
  const nodeUsage = process.cpuUsage(node)
  const sample = { nodeMs: (nodeUsage.user + nodeUsage.system) / 1000 / count, serverMs: ((cpuSeconds(serverPid) - server) * 1000) / count }
  for (const connection of opened) connection.close()
  await sleep(1000)
  return sample
}

const dir = mkdtempSync(join(tmpdir(), 'warren-bench-handshake-'))
let auth: AuthProcess | undefined
let proxy: ProxyProcess | undefined
let tlsServer: Helper | undefined
try {
  // The concurrent joins below all come from 127.0.0.1 and draw on its join rate limit (auth/rate-limit.ts).
  auth = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1000, per_minute: 1000 }' }).start()
  const pin = await auth.pin()
  const profileDir = join(dir, 'profiles')
  const env: Record<string, string> = values.profile ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } : {}
  proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env }).start()
  const bulk = new BulkJoiner(auth.address, await auth.token(['nodes', 'add', '--ttl=1h']))
  await bulk.connect(pin)
  const identities: NodeIdentity[] = []
  await inParallel(0, count, 16, async (i) => {
    identities[i] = await bulk.join(`handshake-${i}`)
  })
  await bulk.close()

  const server = selfSignedCertificate()
  writeFileSync(join(dir, 'key.pem'), server.key)
  writeFileSync(join(dir, 'cert.pem'), server.cert)
  writeFileSync(join(dir, 'ca.pem'), identities[0]!.hostCAPems.join('\n'))
  tlsServer = new Helper(join(import.meta.dirname, 'lib', 'tls-server.ts'), [`--dir=${dir}`])
  const { port: tlsPort } = (await tlsServer.ready) as { port: number }
  const contexts = identities.map((identity) => createSecureContext({ key: identity.tlsKeyPem, cert: identity.tlsCertPem, ca: server.cert }))

  const tunnelAddress = parseHostPort(proxy.tunnel, DEFAULTS.tunnelPort)
  const tickets: (Buffer | undefined)[] = []
  const warren = (i: number) =>
    AgentTunnel.open({ ...simulatedAgent(tunnelAddress, identities[i]!, log), held: [] }).then((tunnel) => {
      tunnel.activate()
      if (tunnel.ticket) tickets[i] = tunnel.ticket
      else tunnel.once('session', (ticket: Buffer) => (tickets[i] = ticket))
      return tunnel
    })
  let fullHandshakes = 0
  const resumed = (i: number) =>
    AgentTunnel.open({ ...simulatedAgent(tunnelAddress, identities[i]!, log), held: [], session: tickets[i] }).then((tunnel) => {
      tunnel.activate()
      if (!tunnel.resumed) fullHandshakes++
      return tunnel
    })
  const tls = (i: number) =>
    new Promise<TLSSocket>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: tlsPort, secureContext: contexts[i]!, ALPNProtocols: [TUNNEL_ALPN], checkServerIdentity: () => undefined })
      socket.once('secureConnect', () => resolve(socket))
      socket.once('error', reject)
    })
  const close = (socket: TLSSocket) => ({ close: () => socket.destroy() })

  // One unmeasured round each warms both servers and this process up.
  await measure(proxy.daemon.child.pid!, warren)
  await measure(tlsServer.pid, (i) => tls(i).then(close))
  const paths = ['warren', 'resumed', 'tls'] as const
  const samples: Record<(typeof paths)[number], Sample[]> = { warren: [], resumed: [], tls: [] }
  const inspector = values.profile ? new Session() : undefined
  inspector?.connect()
  await inspector?.post('Profiler.enable')
  for (let round = 0; round < rounds; round++) {
    await inspector?.post('Profiler.start')
    samples.warren.push(await measure(proxy.daemon.child.pid!, warren))
    if (inspector) writeFileSync(join(dir, `node-${round}.cpuprofile`), JSON.stringify((await inspector.post('Profiler.stop')).profile))
    samples.resumed.push(await measure(proxy.daemon.child.pid!, resumed))
    samples.tls.push(await measure(tlsServer.pid, (i) => tls(i).then(close)))
    process.stderr.write(`round ${round + 1} of ${rounds} done\n`)
  }

  const summary = (path: (typeof paths)[number]) => ({ node: median(samples[path].map((s) => s.nodeMs)), server: median(samples[path].map((s) => s.serverMs)) })
  const base = summary('tls')
  const rows = paths.map((path) => {
    const s = summary(path)
    return [path, s.node.toFixed(2), s.server.toFixed(2), (s.node / base.node).toFixed(2), (s.server / base.server).toFixed(2), String(Math.round(1000 / s.server))]
  })
  console.log(
    `\n${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  )
  console.log(`${count} handshakes per round, ${concurrency} at a time, medians of ${rounds} rounds`)
  console.log(formatTable(['path', 'node ms CPU each', 'server ms CPU each', 'node ÷ tls', 'server ÷ tls', 'per second per server core'], rows))
  console.log(`resumed: ${fullHandshakes} of ${count * rounds} dials made a full handshake instead`)
  console.log(
    'per round (node / server ms): ' + paths.map((path) => `${path} ${samples[path].map((s) => `${s.nodeMs.toFixed(2)}/${s.serverMs.toFixed(2)}`).join(', ')}`).join('; '),
  )
  if (inspector) {
    const proxyPid = proxy.daemon.child.pid!
    await proxy.stop()
    console.log(formatSummary('the proxy (whole run)', summariseProfiles(profilesOf(profileDir, proxyPid), 25)))
    console.log(
      formatSummary(
        'the node side (warren rounds)',
        summariseProfiles(
          Array.from({ length: rounds }, (_, r) => join(dir, `node-${r}.cpuprofile`)),
          25,
        ),
      ),
    )
    console.log(`profiles kept in ${dir}`)
  }
} finally {
  await tlsServer?.stop()
  await proxy?.stop()
  await auth?.stop()
  if (!values.profile) rmSync(dir, { recursive: true, force: true })
}
