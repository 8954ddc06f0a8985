// One proxy process (`warren start --roles=proxy`) holding N concurrent reverse tunnels from
// simulated agents: its resident memory per tunnel and its CPU while the tunnels are idle
// (agent heartbeats every 5 s and yamux keepalives every 15 s, the defaults, still flow).
//
// The agents are real nodes, simulated by a few processes (bench/lib/agent-swarm.ts): each
// joins through the auth server with a multi-use token (its own keys and certificates;
// --join=cluster makes every join with shared/join.ts's joinCluster, slower on the client
// side) and holds one tunnel with agent/tunnel.ts: TLS 1.3 with its host certificate and
// one yamux session. Tunnels are opened in steps (1,000 then 10,000 by default) and
// measured after each step has settled:
//
//   memory per tunnel = (proxy RSS with N tunnels − proxy RSS with none) ÷ N
//   idle CPU          = the proxy's user + system time over --idle seconds ÷ wall time
//
// The auth server runs throughout (--stop-auth stops it once the nodes have joined): the
// proxy reports the nodes of new tunnels to it 200 ms after a burst of them, and every
// tunnel every 10 s (a third of the auth server's presence TTL); the auth server writes a
// node's presence to its backend only when it changes or every 15 s. Its CPU is measured
// alongside the proxy's.
//
//   npm run bench:scale [-- --tunnels=1000,10000 --swarms=2 --idle=10 --settle=5 --stop-auth
//                          --ramp-limit=120 --scrapes=5 --no-metrics --join=bulk|cluster --proxy-env=MALLOC_ARENA_MAX=2 --inspect]
//
// The proxy serves /metrics (diag_addr; --no-metrics: without): after each step the bench
// scrapes it --scrapes times, as a Prometheus would, and reports how long a scrape took and
// the tunnels it reported. The scrapes come after the step's idle window and its memory.
//
// --inspect runs the proxy with the V8 inspector on: after each step it reports the proxy's
// memory after a full GC (V8 heap against native memory) and a CPU profile of the idle window.
//
// Each step may take --ramp-limit seconds to open its tunnels (default 120, to keep the run
// near 3 minutes); a step that runs out is measured with the tunnels it reached, and says so.
//
// Limits here: 20,000 open files per process (the proxy needs one per tunnel) and 2 cores
// for the proxy, the auth server and the swarms together.

import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { DEFAULTS } from '../shared/config.ts'
import { AuthProcess, freePort, ProxyProcess, tempDir } from '../test/helpers/cluster.ts'
import { Helper } from './lib/child.ts'
import { formatSummary, summariseProfiles } from './lib/cpu-profile.ts'
import { InspectorClient } from './lib/inspector-client.ts'
import { cpuShare, rssBytes } from './lib/proc-stats.ts'
import { formatTable } from './lib/table.ts'

const { values } = parseArgs({
  options: {
    tunnels: { type: 'string', default: '1000,10000' },
    swarms: { type: 'string', default: '2' },
    idle: { type: 'string', default: '10' },
    settle: { type: 'string', default: '5' },
    inspect: { type: 'boolean', default: false },
    join: { type: 'string', default: 'bulk' },
    'stop-auth': { type: 'boolean', default: false },
    'proxy-env': { type: 'string', default: '' },
    'ramp-limit': { type: 'string', default: '120' },
    metrics: { type: 'boolean', default: true },
    scrapes: { type: 'string', default: '5' },
  },
  allowNegative: true,
})
const steps = values.tunnels
  .split(',')
  .map(Number)
  .sort((a, b) => a - b)
const swarmCount = Number(values.swarms)
const idleSeconds = Number(values.idle)
const settleSeconds = Number(values.settle)

const MiB = 1024 * 1024
const log = (line: string) => process.stderr.write(line + '\n')
const helpers: Helper[] = []
let auth: AuthProcess | undefined
let proxy: ProxyProcess | undefined
let inspector: InspectorClient | undefined
const profileDir = values.inspect ? tempDir('warren-bench-profile-') : ''
const findings: string[] = []
const cleanup = async () => {
  inspector?.close()
  await Promise.all(helpers.map((h) => h.stop()))
  await proxy?.stop()
  await auth?.stop()
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

interface Row {
  tunnels: number
  /** The step's goal; more than `tunnels` when the ramp limit stopped it. */
  wanted: number
  rss: number
  cpu: number
  authCpu: number
  openSeconds: number
  /** Milliseconds per /metrics scrape, median and slowest; the tunnels it reported. */
  scrape?: { medianMs: number; maxMs: number; tunnelsReported: number }
}
const rows: Row[] = []
const diagAddr = values.metrics ? `127.0.0.1:${await freePort()}` : undefined
const proxyEnv: Record<string, string> = Object.fromEntries(
  values['proxy-env']
    .split(',')
    .filter(Boolean)
    .map((pair) => pair.split('=', 2) as [string, string]),
)
if (values.inspect) proxyEnv.NODE_OPTIONS = `${proxyEnv.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim()
let joinsPerSecond = 0
let swarmRss = 0

/** Tunnels the proxy has registered (it logs one line per agent hello). */
function registered(proxy: ProxyProcess): number {
  return proxy.daemon.stderr.match(/tunnel from \S+ \(.*?\) open/g)?.length ?? 0
}

async function measureIdle(tunnels: number, openSeconds: number, wanted = tunnels): Promise<void> {
  await sleep(settleSeconds * 1000)
  const pids = [proxy!.daemon.child.pid!, ...(auth!.daemon.running ? [auth!.daemon.child.pid!] : [])]
  const [cpu, authCpu = 0] = await cpuShare(pids, idleSeconds)
  const rss = rssBytes(proxy!.daemon.child.pid!)
  const scrape = diagAddr ? await scrapeMetrics(diagAddr) : undefined
  rows.push({ tunnels, wanted, rss, cpu: cpu!, authCpu, openSeconds, scrape })
  log(
    `${tunnels} tunnels: proxy RSS ${(rss / MiB).toFixed(1)} MiB, idle CPU ${(cpu! * 100).toFixed(1)}% of a core${!values['stop-auth'] ? ` (auth ${(authCpu * 100).toFixed(1)}%)` : ''}${scrape ? `, /metrics in ${scrape.medianMs.toFixed(1)} ms (slowest ${scrape.maxMs.toFixed(1)}), warren_proxy_tunnels ${scrape.tunnelsReported}` : ''}`,
  )
  if (inspector) {
    // Profiling costs CPU itself, so it gets a window of its own after the measured one.
    const profileFile = join(profileDir, `idle-${tunnels}.cpuprofile`)
    await inspector.profile(idleSeconds, profileFile)
    const memory = await inspector.memoryAfterGc()
    const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`
    findings.push(
      `${tunnels} tunnels, after a full GC: RSS ${mib(memory.rss)}, V8 heap used ${mib(memory.heapUsed)} of ${mib(memory.heapTotal)}, external ${mib(memory.external)} (array buffers ${mib(memory.arrayBuffers)})`,
    )
    if (tunnels > 0) findings.push(formatSummary(`proxy CPU profile over the idle window with ${tunnels} tunnels`, summariseProfiles([profileFile], 20)))
  }
}

/** --scrapes scrapes of /metrics, each timed from the request to the last byte of the answer. */
async function scrapeMetrics(address: string): Promise<Row['scrape']> {
  const times: number[] = []
  let text = ''
  for (let i = 0; i < Number(values.scrapes); i++) {
    const started = performance.now()
    const response = await fetch(`http://${address}/metrics`)
    text = await response.text()
    times.push(performance.now() - started)
    if (response.status !== 200) throw new Error(`/metrics answered ${response.status}: ${text}`)
  }
  times.sort((a, b) => a - b)
  const tunnelsReported = Number(/^warren_proxy_tunnels (\d+)$/m.exec(text)?.[1] ?? Number.NaN)
  return { medianMs: times[Math.floor(times.length / 2)]!, maxMs: times[times.length - 1]!, tunnelsReported }
}

try {
  // Joins in flight from one address draw on its join rate limit (auth/rate-limit.ts): the
  // swarms' concurrent joins all come from 127.0.0.1, as a fleet behind one NAT would.
  auth = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1000, per_minute: 1000 }' }).start()
  const pin = await auth.pin()
  proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env: proxyEnv, diagAddr }).start()
  if (values.inspect) inspector = await InspectorClient.fromLog(proxy.daemon.stderr)
  const token = await auth.token(['nodes', 'add', '--ttl=1h'])

  const perSwarm = steps.map((n) => Math.ceil(n / swarmCount))
  for (let i = 0; i < swarmCount; i++) {
    helpers.push(
      new Helper(
        join(import.meta.dirname, 'lib', 'agent-swarm.ts'),
        [`--auth=${auth.address}`, `--token=${token}`, `--pin=${pin}`, `--tunnel=${proxy.tunnel}`, `--name=sim${i}`, `--join=${values.join}`],
        { nodeArgs: ['--expose-gc'] },
      ),
    )
  }
  await Promise.all(helpers.map((h) => h.ready))

  let started = performance.now()
  for (const h of helpers) h.send({ join: perSwarm[perSwarm.length - 1] })
  await Promise.all(helpers.map((h) => h.next((m) => typeof m.joined === 'number', 600_000)))
  joinsPerSecond = (perSwarm[perSwarm.length - 1]! * swarmCount) / ((performance.now() - started) / 1000)
  log(`${perSwarm[perSwarm.length - 1]! * swarmCount} nodes joined (${joinsPerSecond.toFixed(0)} joins/s)`)

  if (values['stop-auth']) await auth.stop()
  await measureIdle(0, 0)
  for (const index of steps.keys()) {
    started = performance.now()
    for (const h of helpers) h.send({ open: perSwarm[index] })
    const limit = setTimeout(() => {
      log(`ramp limit of ${values['ramp-limit']} s reached at ${registered(proxy!)} tunnels: opening no more`)
      for (const h of helpers) h.send({ stop: 1 })
    }, Number(values['ramp-limit']) * 1000)
    const answers = await Promise.all(helpers.map((h) => h.next((m) => typeof m.open === 'number', 600_000)))
    clearTimeout(limit)
    const failed = answers.reduce((sum, a) => sum + (a.failed as number), 0)
    if (failed > 0) throw new Error(`${failed} tunnels failed to open`)
    const open = answers.reduce((sum, a) => sum + (a.open as number), 0)
    await proxy.daemon.waitFor(`${open} registered tunnels`, () => registered(proxy!) >= open, 120_000)
    const openSeconds = (performance.now() - started) / 1000
    const want = perSwarm[index]! * swarmCount
    log(`${open} tunnels open in ${openSeconds.toFixed(1)} s${open < want ? ` (of ${want}: ramp limit)` : ''}`)
    await measureIdle(open, openSeconds, want)
    if (open < want) break
  }
  for (const h of helpers) h.send({ stats: 1 })
  for (const h of helpers) swarmRss += (await h.next((m) => typeof m.rss === 'number')).rss as number
} finally {
  await cleanup()
}

const idle = rows[0]!
console.log(
  `\n${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadavg()[0]!.toFixed(1)}; ${swarmCount} agent processes; idle CPU over ${idleSeconds} s after ${settleSeconds} s settling`,
)
const reached = rows[rows.length - 1]!.tunnels
console.log(`joins: ${joinsPerSecond.toFixed(0)}/s; agent side: ${(swarmRss / Math.max(reached, 1) / 1000).toFixed(0)} KB RSS per simulated agent`)
console.log(
  `idle traffic per tunnel: the agent's yamux keepalive ping every ${DEFAULTS.keepaliveIntervalMs / 1000} s and its answer, so with ${reached} tunnels the proxy answers ${(reached / (DEFAULTS.keepaliveIntervalMs / 1000)).toFixed(0)} pings/s; it posts new tunnels' presence within moments and all tunnels' every ${DEFAULTS.heartbeatTtlMs / 3000} s`,
)
console.log(!values['stop-auth'] ? 'the auth server ran throughout' : 'the auth server was stopped after the joins (--stop-auth: presence reports fail at once)')
if (Object.keys(proxyEnv).length) console.log(`proxy environment: ${JSON.stringify(proxyEnv)}`)
console.log(diagAddr ? `metrics on: the proxy serves /metrics (diag_addr), scraped ${values.scrapes} times after each step` : 'metrics off (--no-metrics)')
console.log(
  formatTable(
    [
      'tunnels',
      'opened in s',
      'proxy RSS MiB',
      'KB per tunnel',
      'proxy idle CPU',
      ...(!values['stop-auth'] ? ['auth idle CPU'] : []),
      ...(diagAddr ? ['scrape ms (slowest)'] : []),
    ],
    rows.map((row) => [
      row.tunnels < row.wanted ? `${row.tunnels} of ${row.wanted}` : String(row.tunnels),
      row.tunnels ? row.openSeconds.toFixed(1) : '',
      (row.rss / MiB).toFixed(1),
      row.tunnels ? ((row.rss - idle.rss) / row.tunnels / 1000).toFixed(1) : '',
      `${(row.cpu * 100).toFixed(1)}%`,
      ...(!values['stop-auth'] ? [`${(row.authCpu * 100).toFixed(1)}%`] : []),
      ...(row.scrape ? [`${row.scrape.medianMs.toFixed(1)} (${row.scrape.maxMs.toFixed(1)})`] : []),
    ]),
  ),
)
if (rows.length >= 3) {
  const [a, b] = [rows[rows.length - 2]!, rows[rows.length - 1]!]
  console.log(
    `marginal cost from ${a.tunnels} to ${b.tunnels} tunnels: ${((b.rss - a.rss) / (b.tunnels - a.tunnels) / 1000).toFixed(1)} KB and ${(((b.cpu - a.cpu) / (b.tunnels - a.tunnels)) * 1000 * 100).toFixed(2)}% of a core per 1,000 tunnels`,
  )
}
for (const finding of findings) console.log(finding)
const last = rows[rows.length - 1]!
console.log(`target ≤ 100 KB per tunnel at ${last.tunnels}: ${(last.rss - idle.rss) / last.tunnels / 1000 <= 100 ? 'met' : 'missed'}`)
if (last.scrape) {
  console.log(
    `target a /metrics scrape < 50 ms at ${last.tunnels}: ${last.scrape.maxMs < 50 ? 'met' : 'missed'} (median ${last.scrape.medianMs.toFixed(1)} ms, slowest ${last.scrape.maxMs.toFixed(1)} ms)`,
  )
  if (last.scrape.tunnelsReported !== last.tunnels) console.log(`/metrics reported ${last.scrape.tunnelsReported} tunnels, not ${last.tunnels}`)
}
