// Availability under a slowloris. One auth server and one proxy (`warren start`), 100 nodes
// holding tunnels to the proxy, and a real node (`warren start --roles=node`) that a user
// reaches with `warren ssh` once a second. Two phases of the same length, in the same run:
//
//   quiet:  the 100 nodes restart; the user connects every second; the proxy's health
//           endpoint is probed every 250 ms;
//   attack: the same, while connections from several loopback addresses (127.0.0.2, …) send
//           the first 5 bytes of a TLS record (16 03 01 02 00) and then nothing, at the
//           proxy's web and tunnel ports and at the auth server: --burst at once, then
//           --rate new ones a second for the phase's --seconds.
//
// The 100 nodes are simulated in one process (bench/lib/pool-swarm.ts): each joined the
// cluster with its own keys and runs the agent's real tunnel pool (agent/tunnel-pool.ts). A
// restart stops every pool (its tunnels close) and starts a new one at once, as a restarted
// agent process: no session ticket kept, so a full handshake. 100 `warren start` processes
// restarting together would mostly measure 100 Node processes starting on two cores.
//
// Reports, per phase: each node's time from its restart until it holds its tunnel again
// (p50, p99, max), the user's `warren ssh` success rate, the health probes' latency (p50,
// p99, failures), and under attack what the servers counted (their JSON debug log) and
// whether they closed every idle connection. Target: every node back within 2× its quiet
// time; ≥ 99 % of user connections succeed.
//
//   npm run bench:attack [-- --nodes=100 --burst=600 --rate=40 --seconds=45 --restart-after=5 --sources=8 --logs=DIR]
//
// --logs=DIR keeps the proxy's, the auth server's and the user's node's logs there.

import { mkdirSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { AuthProcess, type Daemon, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from '../test/helpers/cluster.ts'
import { gateCounts, Slowloris } from '../test/helpers/slowloris.ts'
import { Helper } from './lib/child.ts'
import { cpuSeconds, machineCpu } from './lib/proc-stats.ts'
import { formatTable } from './lib/table.ts'

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '100' },
    burst: { type: 'string', default: '600' },
    rate: { type: 'string', default: '40' },
    seconds: { type: 'string', default: '45' },
    'restart-after': { type: 'string', default: '5' },
    sources: { type: 'string', default: '8' },
    logs: { type: 'string', default: '' },
  },
})
const nodeCount = Number(values.nodes)
const burst = Number(values.burst)
const rate = Number(values.rate)
const phaseMs = Number(values.seconds) * 1000
const restartAfterMs = Number(values['restart-after']) * 1000
const sources = Array.from({ length: Number(values.sources) }, (_, i) => `127.0.0.${i + 2}`)
const JSON_DEBUG_LOG = 'log:\n  level: debug\n  format: json\n'
const SSH_TIMEOUT_MS = 30_000

/** One `warren ssh` run: how long it took, and why it failed if it did. */
interface SshResult {
  ms: number
  failure?: string
}

const log = (line: string) => process.stderr.write(line + '\n')

interface PhaseResult {
  /** ms from the restart until each node held its tunnel again; -1 for a node that did not in time. */
  backMs: number[]
  ssh: { attempts: number; succeeded: number; failures: string[]; ms: number[] }
  probes: { latenciesMs: number[]; failed: number }
  attack?: { counts: Slowloris['counts']; allClosed: boolean; proxy?: Record<string, number>; auth?: Record<string, number> }
  load: string
  /** Share of a core over the phase: the proxy, the auth server, this process (the attacker); and the whole machine's busy share. */
  cpu: { proxy: number; auth: number; attacker: number; machine: number }
}

function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN
}

/** GET /v1/health on a fresh connection: its latency in ms, or undefined if it failed. */
function probe(web: string): Promise<number | undefined> {
  const at = web.lastIndexOf(':')
  const started = performance.now()
  return new Promise((resolve) => {
    const req = httpsRequest({ host: web.slice(0, at), port: Number(web.slice(at + 1)), path: '/v1/health', rejectUnauthorized: false, agent: false, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - started : undefined))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(undefined))
    req.end()
  })
}

/** Runs `task` every `everyMs` (without waiting for the previous one) until stopped; resolves with every result. */
function every<T>(everyMs: number, task: () => Promise<T>): { stop: () => Promise<T[]> } {
  const runs: Promise<T>[] = []
  const timer = setInterval(() => runs.push(task()), everyMs)
  runs.push(task())
  return {
    stop: async () => {
      clearInterval(timer)
      return Promise.all(runs)
    },
  }
}

const helpers: Helper[] = []
const daemons: Daemon[] = []
let auth: AuthProcess | undefined
let proxy: ProxyProcess | undefined
const cleanup = async () => {
  if (values.logs) {
    mkdirSync(values.logs, { recursive: true })
    if (proxy) writeFileSync(join(values.logs, 'proxy.log'), proxy.daemon.stderr)
    if (auth) writeFileSync(join(values.logs, 'auth.log'), auth.daemon.stderr)
    daemons.forEach((d, i) => {
      writeFileSync(join(values.logs, `node-${i}.log`), d.stderr)
    })
  }
  await Promise.all(helpers.map((h) => h.stop()))
  await Promise.all(daemons.map((d) => d.stop()))
  await proxy?.stop()
  await auth?.stop()
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

const results: Record<string, PhaseResult> = {}
try {
  // The swarm's concurrent joins all come from 127.0.0.1 and draw on its join rate limit (auth/rate-limit.ts).
  auth = await new AuthProcess({ authServiceYaml: `  join_rate_limit: { burst: 1000, per_minute: 1000 }\n${JSON_DEBUG_LOG}` }).start()
  const pin = await auth.pin()
  proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_DEBUG_LOG }).start()
  const web = proxy.web

  // The user's node: a real agent process, not restarted.
  const target = startNode([`--data-dir=${tempDir()}`, `--auth-server=${web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=bench-target'])
  daemons.push(target)
  await waitForNode(auth, 'bench-target')
  const profile = await signUser(auth, web)
  const ssh = async (): Promise<SshResult> => {
    const started = performance.now()
    const result = await warren(['ssh', `--identity=${profile}`, `${testLogin()}@bench-target`, 'echo', 'reached'], { timeoutMs: SSH_TIMEOUT_MS })
    const ms = performance.now() - started
    if (result.code === 0 && result.stdout === 'reached\n') return { ms }
    const why = ms >= SSH_TIMEOUT_MS ? `no answer within ${SSH_TIMEOUT_MS / 1000} s` : `exit ${result.code}: ${result.stderr.trim().split('\n').at(-1)}`
    return { ms, failure: why }
  }

  // The restarting nodes.
  const swarm = new Helper(
    join(import.meta.dirname, 'lib', 'pool-swarm.ts'),
    [`--auth=${auth.address}`, `--token=${await auth.token(['nodes', 'add', '--ttl=1h'])}`, `--pin=${pin}`, `--tunnel=${proxy.tunnel}`, '--name=attack', '--proxies=1'],
    { nodeArgs: ['--expose-gc'] },
  )
  helpers.push(swarm)
  await swarm.ready
  swarm.send({ join: nodeCount })
  await swarm.next((m) => typeof m.joined === 'number', 300_000)
  swarm.send({ start: nodeCount, rate: 50 })
  await swarm.next((m) => typeof m.started === 'number')
  const stats = async () => {
    swarm.send({ stats: 1 })
    return (await swarm.next((m) => m.stats === 1)) as { full: number; fullAt: number[] }
  }
  for (let s = await stats(); s.fullAt.some((ms) => ms < 0); s = await stats()) await sleep(250)
  log(`${nodeCount} nodes hold their tunnels`)

  for (const phase of ['quiet', 'attack'] as const) {
    await sleep(3000)
    const started = performance.now()
    const cpuBefore = { proxy: cpuSeconds(proxy.daemon.child.pid!), auth: cpuSeconds(auth.daemon.child.pid!), attacker: cpuSeconds(process.pid), machine: machineCpu() }
    const attack = phase === 'attack' ? new Slowloris([web, proxy.tunnel, auth.address], sources, burst + rate * (phaseMs / 1000) + 100) : undefined
    if (attack) {
      attack.burst(burst)
      attack.start(rate)
    }
    const users = every(1000, ssh)
    const probes = every(250, () => probe(web))
    await sleep(restartAfterMs)
    swarm.send({ restart: 1 })
    await swarm.next((m) => typeof m.restarted === 'number')
    // Each node's time back is sampled every 50 ms in the swarm: wait for all of them.
    let last = await stats()
    while (last.fullAt.some((ms) => ms < 0) && performance.now() - started < phaseMs + 60_000) {
      await sleep(250)
      last = await stats()
    }
    await sleep(Math.max(0, started + phaseMs - performance.now()))
    attack?.stop()
    const [runs, latencies] = await Promise.all([users.stop(), probes.stop()])
    const phaseSeconds = (performance.now() - started) / 1000
    const machine = machineCpu()
    const failures = runs.map((run) => run.failure)
    const result: PhaseResult = {
      backMs: last.fullAt,
      ssh: {
        attempts: runs.length,
        succeeded: failures.filter((f) => f === undefined).length,
        failures: failures.filter((f): f is string => f !== undefined),
        ms: runs.map((run) => run.ms),
      },
      probes: { latenciesMs: latencies.filter((l): l is number => l !== undefined), failed: latencies.filter((l) => l === undefined).length },
      load: loadavg()
        .map((l) => l.toFixed(1))
        .join(' '),
      cpu: {
        proxy: (cpuSeconds(proxy.daemon.child.pid!) - cpuBefore.proxy) / phaseSeconds,
        auth: (cpuSeconds(auth.daemon.child.pid!) - cpuBefore.auth) / phaseSeconds,
        attacker: (cpuSeconds(process.pid) - cpuBefore.attacker) / phaseSeconds,
        machine: (machine.busy - cpuBefore.machine.busy) / Math.max(1, machine.total - cpuBefore.machine.total),
      },
    }
    if (attack) {
      const allClosed = await attack.allClosed(15_000)
      await sleep(1500) // the servers log their counts at most once a second
      result.attack = { counts: { ...attack.counts }, allClosed, proxy: gateCounts(proxy.daemon.stderr), auth: gateCounts(auth.daemon.stderr) }
      attack.destroy()
    }
    results[phase] = result
    log(
      `${phase}: ${result.backMs.filter((ms) => ms >= 0).length} of ${nodeCount} nodes back, max ${Math.max(...result.backMs)} ms; ssh ${result.ssh.succeeded}/${result.ssh.attempts}; probes p99 ${percentile(result.probes.latenciesMs, 0.99).toFixed(0)} ms, ${result.probes.failed} failed`,
    )
  }
} finally {
  await cleanup()
}

const quiet = results.quiet!
const attacked = results.attack!
const seconds = (ms: number) => (ms < 0 ? 'not back' : `${(ms / 1000).toFixed(2)} s`)
const cpuText = (r: PhaseResult) => [r.cpu.proxy, r.cpu.auth, r.cpu.attacker].map((c) => `${(c * 100).toFixed(0)} %`).join(', ')
const back = (r: PhaseResult, q: number) => seconds(r.backMs.includes(-1) ? -1 : percentile(r.backMs, q))
const rows = [
  ['nodes back to a tunnel after their restart, p50', back(quiet, 0.5), back(attacked, 0.5), ''],
  ['… p99', back(quiet, 0.99), back(attacked, 0.99), ''],
  [
    '… max (the last node)',
    back(quiet, 1),
    back(attacked, 1),
    `≤ 2× quiet: ${attacked.backMs.includes(-1) ? 'missed' : Math.max(...attacked.backMs) <= 2 * Math.max(...quiet.backMs) ? 'met' : 'missed'}`,
  ],
  [
    'user warren ssh succeeded',
    `${quiet.ssh.succeeded}/${quiet.ssh.attempts}`,
    `${attacked.ssh.succeeded}/${attacked.ssh.attempts}`,
    `≥ 99 %: ${attacked.ssh.succeeded >= 0.99 * attacked.ssh.attempts ? 'met' : 'missed'}`,
  ],
  ['user warren ssh, start to end, p50', seconds(percentile(quiet.ssh.ms, 0.5)), seconds(percentile(attacked.ssh.ms, 0.5)), ''],
  ['… max', seconds(Math.max(...quiet.ssh.ms)), seconds(Math.max(...attacked.ssh.ms)), ''],
  ['health probes p50', `${percentile(quiet.probes.latenciesMs, 0.5).toFixed(0)} ms`, `${percentile(attacked.probes.latenciesMs, 0.5).toFixed(0)} ms`, ''],
  ['health probes p99', `${percentile(quiet.probes.latenciesMs, 0.99).toFixed(0)} ms`, `${percentile(attacked.probes.latenciesMs, 0.99).toFixed(0)} ms`, ''],
  [
    'health probes failed',
    `${quiet.probes.failed}/${quiet.probes.failed + quiet.probes.latenciesMs.length}`,
    `${attacked.probes.failed}/${attacked.probes.failed + attacked.probes.latenciesMs.length}`,
    '',
  ],
  ['CPU: proxy, auth server, this process (share of a core)', cpuText(quiet), cpuText(attacked), 'this process runs the attack'],
  ['CPU: the whole machine busy (all cores)', `${(quiet.cpu.machine * 100).toFixed(0)} %`, `${(attacked.cpu.machine * 100).toFixed(0)} %`, ''],
  ['load average at the end of the phase (1, 5, 15 min)', quiet.load, attacked.load, ''],
]
console.log(`\n${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${cpus().length} cores (${cpus()[0]?.model.trim()})`)
console.log(
  `${nodeCount} nodes restarted ${restartAfterMs / 1000} s into each ${phaseMs / 1000} s phase; attack: ${burst} connections at once, then ${rate}/s, from ${sources.length} addresses (${sources[0]}–${sources.at(-1)}) at the proxy's web and tunnel ports and the auth server`,
)
console.log(formatTable(['figure', 'quiet', 'under attack', 'target'], rows))
const a = attacked.attack!
console.log(
  `attack: ${a.counts.connected} connections made (${a.counts.failed} failed to connect); ${a.counts.closedByServer} closed by the servers; ${a.allClosed ? 'none' : a.counts.open} left open 15 s after the attack stopped`,
)
const fields = [
  'late_hello_closed',
  'hello_per_address_closed',
  'invalid_hello_closed',
  'handshake_per_address_refused',
  'handshake_queue_full_closed',
  'handshake_queue_wait_closed',
]
for (const [name, counts] of [
  ['proxy', a.proxy],
  ['auth server', a.auth],
] as const) {
  console.log(`${name} counted: ${counts ? fields.map((f) => `${f}=${counts[f]}`).join(' ') : 'nothing logged'}`)
}
for (const [phase, r] of Object.entries(results)) if (r.ssh.failures.length) console.log(`${phase}: ssh failures: ${[...new Set(r.ssh.failures)].join('; ')}`)
