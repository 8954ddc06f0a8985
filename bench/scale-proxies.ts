// Many proxies: N proxy processes (`warren start --roles=proxy`) behind HAProxy in TCP mode
// (round robin, PROXY protocol v2 towards the proxies, which trust the balancer's address),
// and thousands of simulated agents that each run the agent's real tunnel pool
// (agent/tunnel-pool.ts, bench/lib/pool-swarm.ts) against the balancer's one address.
//
//   npm run bench:mesh [-- --agents=5000 --proxies=3 --swarms=3 --rate=50 --idle=20
//                         --restart-signal=SIGTERM --limit=300 --balance=roundrobin|leastconn --profile --logs=DIR
//                         --proxy-log=info|debug --swarm-nice=0..19 --balancers=3]
//
// --logs=DIR keeps the proxies' and the auth server's logs there (the restarted proxy's
// first life in proxy-N-first.log); the proxies log at their default level (info) unless
// --proxy-log=debug. The simulated agents run at nice 10 (--swarm-nice; 0 for equal priority):
// on devices of their own, agents' handshakes would not take CPU from the proxies under
// test, and at equal priority here they starve them. --profile runs the proxies and the swarms with --cpu-prof and prints where their time went.
//
// Reports:
//   - quiet start: the time until every agent holds a tunnel to every proxy (agents start
//     --rate per second), and the dials each agent made (mean, p99, max);
//   - the auth server's and the proxies' CPU over --idle seconds once everything is up
//     (presence reports and heartbeats of agents × proxies tunnels);
//   - restart: one proxy is stopped (--restart-signal) and started again with the same
//     identity; the time until every agent holds all tunnels again, counted from the stop
//     and from the moment the proxy listens again, the dials each agent made meanwhile,
//     and the peak rate of new connections the balancer sent the restarted proxy (the
//     balancer's per-server session counter, sampled every second).
//
// Limits here: 20,000 open files per process, not raisable. Every tunnel through HAProxy
// costs it two, so there are several HAProxy processes (--balancers, default one per swarm), each on its
// own address (127.0.0.1, 127.0.0.2, …, same port) and with the same three servers, as a
// fleet whose devices resolve the balancer's name to one of several balancer nodes: each
// balances on its own. Swarm s dials balancer s mod --balancers, which also keeps the
// swarms' source ports apart.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { cpus, loadavg, setPriority } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { AuthProcess, freePort, type ProxyProcess, proxiesBehindBalancer, tempDir } from '../test/helpers/cluster.ts'
import { Helper } from './lib/child.ts'
import { formatSummary, summariseProfiles } from './lib/cpu-profile.ts'
import { cpuSeconds, cpuShare, machineCpu, rssBytes } from './lib/proc-stats.ts'
import { formatTable } from './lib/table.ts'

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '5000' },
    proxies: { type: 'string', default: '3' },
    swarms: { type: 'string', default: '3' },
    rate: { type: 'string', default: '50' },
    idle: { type: 'string', default: '20' },
    'restart-signal': { type: 'string', default: 'SIGTERM' },
    limit: { type: 'string', default: '300' },
    profile: { type: 'boolean', default: false },
    logs: { type: 'string', default: '' },
    balance: { type: 'string', default: 'roundrobin' },
    'proxy-log': { type: 'string', default: 'info' },
    'swarm-nice': { type: 'string', default: '10' },
    balancers: { type: 'string', default: '' },
  },
})
if (!['info', 'debug'].includes(values['proxy-log']!)) throw new Error(`--proxy-log must be info or debug, not ${values['proxy-log']}`)
const swarmNice = Number(values['swarm-nice'])
if (!Number.isInteger(swarmNice) || swarmNice < 0 || swarmNice > 19) throw new Error(`--swarm-nice must be an integer from 0 to 19, not ${values['swarm-nice']}`)
if (!['roundrobin', 'leastconn'].includes(values.balance!)) throw new Error(`--balance must be roundrobin or leastconn, not ${values.balance}`)
const agentCount = Number(values.agents)
const proxyCount = Number(values.proxies)
const swarmCount = Number(values.swarms)
const balancerCount = values.balancers ? Number(values.balancers) : swarmCount
if (!Number.isInteger(balancerCount) || balancerCount < 1) throw new Error(`--balancers must be a positive integer, not ${values.balancers}`)
const rate = Number(values.rate)
const limitMs = Number(values.limit) * 1000

if (spawnSync('haproxy', ['-v']).status !== 0) throw new Error('HAProxy is not installed (apt-get install haproxy)')

const log = (line: string) => process.stderr.write(line + '\n')
const MiB = 1024 * 1024
const dir = tempDir('warren-bench-mesh-')
const profileDir = join(dir, 'profiles')
const profileEnv: Record<string, string> = values.profile ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } : {}
const helpers: Helper[] = []
const balancers: ChildProcess[] = []
const proxies: ProxyProcess[] = []
let auth: AuthProcess | undefined
let firstLife = ''
const cleanup = async () => {
  await Promise.all(helpers.map((h) => h.stop()))
  if (values.logs) {
    mkdirSync(values.logs, { recursive: true })
    proxies.forEach((p, i) => {
      writeFileSync(join(values.logs, `proxy-${i}.log`), p.daemon?.stderr ?? '')
    })
    if (firstLife) writeFileSync(join(values.logs, `proxy-${proxyCount - 1}-first.log`), firstLife)
    if (auth) writeFileSync(join(values.logs, 'auth.log'), auth.daemon.stderr)
  }
  for (const lb of balancers) lb.kill()
  await Promise.all(proxies.map((p) => p.stop()))
  await auth?.stop()
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

/** Sums every swarm's answer to {"stats": 1}. */
async function stats(): Promise<{ agents: number; full: number; held: number; dials: number[]; resumed: number; fullAt: number[]; rss: number }> {
  for (const h of helpers) h.send({ stats: 1 })
  const answers = await Promise.all(helpers.map((h) => h.next((m) => m.stats === 1)))
  return {
    agents: answers.reduce((s, a) => s + (a.agents as number), 0),
    full: answers.reduce((s, a) => s + (a.full as number), 0),
    held: answers.reduce((s, a) => s + (a.held as number), 0),
    dials: answers.flatMap((a) => a.dials as number[]),
    resumed: answers.reduce((s, a) => s + (a.resumed as number), 0),
    fullAt: answers.flatMap((a) => a.fullAt as number[]),
    rss: answers.reduce((s, a) => s + (a.rss as number), 0),
  }
}

async function mark(): Promise<void> {
  for (const h of helpers) h.send({ mark: 1 })
  await Promise.all(helpers.map((h) => h.next((m) => m.marked === 1)))
}

/** Waits until every agent is full; returns ms after the mark when the last one became full (or undefined at the limit). */
async function untilFull(started: number, what: string): Promise<{ ms?: number; last: Awaited<ReturnType<typeof stats>> }> {
  let lastLog = 0
  for (;;) {
    const s = await stats()
    if (s.full === agentCount) return { ms: Math.max(...s.fullAt), last: s }
    const elapsed = performance.now() - started
    if (elapsed - lastLog > 5000) {
      lastLog = elapsed
      log(`${what}: ${(elapsed / 1000).toFixed(0)} s, ${s.full} of ${agentCount} agents hold all ${proxyCount} tunnels (${s.held} tunnels)`)
    }
    if (elapsed > limitMs) return { last: s }
    await sleep(250)
  }
}

/** Total sessions HAProxy sent each server so far, summed over the balancer processes. */
async function sessionsPerServer(sockets: string[]): Promise<Map<string, number>> {
  const totals = new Map<string, number>()
  for (const path of sockets) {
    const csv = await new Promise<string>((resolve, reject) => {
      let data = ''
      const socket = connect(path, () => socket.end('show stat\n'))
      socket.on('data', (chunk) => (data += chunk))
      socket.on('end', () => resolve(data))
      socket.on('error', reject)
    })
    const lines = csv.split('\n')
    const header = lines[0]!.replace(/^# /, '').split(',')
    const [px, sv, stot] = ['pxname', 'svname', 'stot'].map((name) => header.indexOf(name))
    for (const line of lines.slice(1)) {
      const fields = line.split(',')
      if (fields[px!] !== 'proxies' || !fields[sv!]?.startsWith('p')) continue
      totals.set(fields[sv!]!, (totals.get(fields[sv!]!) ?? 0) + Number(fields[stot!]))
    }
  }
  return totals
}

function summary(values: number[]): { mean: number; p50: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0
  return { mean: sorted.reduce((s, v) => s + v, 0) / Math.max(sorted.length, 1), p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? 0 }
}

function histogram(values: number[]): string {
  const counts = new Map<number, number>()
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([v, n]) => `${v}:${n}`)
    .join(' ')
}

const results: string[][] = []
const benchStart = performance.now()
const haproxyEvents: string[] = []
const notes: string[] = []
let quietDials: ReturnType<typeof summary> | undefined
let restartDials: ReturnType<typeof summary> | undefined
let quietMs: number | undefined
let recoveryFromStop: number | undefined
let recoveryFromListen: number | undefined
let peakRate = 0
let idleCpu: { auth: number; proxies: number[]; balancers: number[]; swarms: number[] } | undefined
let proxyRss: number[] = []
const proxyPids: number[] = []

try {
  // Joins in flight from one address draw on its join rate limit (auth/rate-limit.ts): the
  // swarms' concurrent joins all come from 127.0.0.1, as a fleet behind one NAT would.
  auth = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1000, per_minute: 1000 }' }).start()
  const pin = await auth.pin()
  const lbPort = await freePort()
  for (const proxy of await proxiesBehindBalancer(auth, pin, proxyCount, `127.0.0.1:${lbPort}`, profileEnv, values['proxy-log'] === 'debug')) {
    proxies.push(proxy)
    proxyPids.push(proxy.daemon.child.pid!)
  }
  const sockets = Array.from({ length: balancerCount }, (_, i) => join(dir, `lb${i}.sock`))
  for (let i = 0; i < balancerCount; i++) {
    const config = join(dir, `haproxy${i}.cfg`)
    writeFileSync(
      config,
      [
        'global',
        '  maxconn 9500',
        `  stats socket ${sockets[i]} mode 600 level admin`,
        'defaults',
        '  mode tcp',
        '  maxconn 9500',
        '  timeout connect 2s',
        '  timeout client 1h',
        '  timeout server 1h',
        'frontend tunnels',
        `  bind 127.0.0.${i + 1}:${lbPort}`,
        '  default_backend proxies',
        'backend proxies',
        `  balance ${values.balance}`,
        ...proxies.map((proxy, p) => `  server p${p} ${proxy.tunnel} send-proxy-v2 check inter 1s fall 3 rise 2`),
        '',
      ].join('\n'),
    )
    const lb = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    lb.stderr!.on('data', (d) => {
      stderr += d
      for (const line of String(d).split('\n'))
        if (/ is (UP|DOWN)/.test(line))
          haproxyEvents.push(`${((performance.now() - benchStart) / 1000).toFixed(1)} s: balancer ${i}: ${line.replace(/^.*?(Server|Backup)/, '$1').slice(0, 100)}`)
    })
    lb.once('exit', (code) => code && log(`haproxy ${i} exited (${code}): ${stderr}`))
    balancers.push(lb)
  }
  await sleep(1000)
  const token = await auth.token(['nodes', 'add', '--ttl=1h'])
  for (let s = 0; s < swarmCount; s++) {
    helpers.push(
      new Helper(
        join(import.meta.dirname, 'lib', 'pool-swarm.ts'),
        [`--auth=${auth.address}`, `--token=${token}`, `--pin=${pin}`, `--tunnel=127.0.0.${(s % balancerCount) + 1}:${lbPort}`, `--name=mesh${s}`, `--proxies=${proxyCount}`],
        { nodeArgs: ['--expose-gc', ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])] },
      ),
    )
  }
  await Promise.all(helpers.map((h) => h.ready))
  // Agents run on devices of their own: at a lower priority here, the simulated agents' side
  // of the handshakes stops taking the CPU that the proxies under test would have.
  for (const h of helpers) setPriority(h.pid, swarmNice)
  const perSwarm = Array.from({ length: swarmCount }, (_, s) => Math.floor(agentCount / swarmCount) + (s < agentCount % swarmCount ? 1 : 0))
  let started = performance.now()
  helpers.forEach((h, s) => {
    h.send({ join: perSwarm[s] })
  })
  await Promise.all(helpers.map((h) => h.next((m) => typeof m.joined === 'number', 600_000)))
  log(`${agentCount} nodes joined in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  // Every proxy must know the whole live set (it learns it from its heartbeat, every 5 s).
  await sleep(6000)

  // Quiet start.
  await mark()
  started = performance.now()
  helpers.forEach((h, s) => {
    h.send({ start: perSwarm[s], rate: rate / swarmCount })
  })
  const quiet = await untilFull(started, 'quiet start')
  quietMs = quiet.ms
  quietDials = summary(quiet.last.dials)
  log(
    `quiet start: ${quietMs === undefined ? `not complete after ${values.limit} s` : `all full after ${(quietMs / 1000).toFixed(1)} s`}; dials per agent mean ${quietDials.mean.toFixed(2)}, p99 ${quietDials.p99}, max ${quietDials.max}`,
  )
  notes.push(`quiet start, dials per agent (dials:agents): ${histogram(quiet.last.dials)}`)

  // Idle: every tunnel heartbeats; the proxies report presence to the auth server.
  await sleep(5000)
  const pids = [auth.daemon.child.pid!, ...proxies.map((p) => p.daemon.child.pid!), ...balancers.map((b) => b.pid!), ...helpers.map((h) => h.pid)]
  const shares = await cpuShare(pids, Number(values.idle))
  idleCpu = {
    auth: shares[0]!,
    proxies: shares.slice(1, 1 + proxyCount),
    balancers: shares.slice(1 + proxyCount, 1 + proxyCount + balancerCount),
    swarms: shares.slice(1 + proxyCount + balancerCount),
  }
  proxyRss = proxies.map((p) => rssBytes(p.daemon.child.pid!))
  log(`idle: auth ${(idleCpu.auth * 100).toFixed(1)}%, proxies ${idleCpu.proxies.map((c) => (c * 100).toFixed(1) + '%').join(' ')}`)

  // Restart the last proxy.
  const victim = proxies[proxyCount - 1]!
  const before = await sessionsPerServer(sockets)
  await mark()
  started = performance.now()
  notes.push(`restart: proxy stopped at ${((performance.now() - benchStart) / 1000).toFixed(1)} s of the run`)
  // CPU of everything but the restarted proxy over the recovery, to show who had the cores.
  const others = {
    proxies: proxies.slice(0, -1).map((p) => p.daemon.child.pid!),
    balancers: balancers.map((b) => b.pid!),
    swarms: helpers.map((h) => h.pid),
    auth: [auth.daemon.child.pid!],
  }
  const othersBefore = Object.fromEntries(Object.entries(others).map(([group, pids]) => [group, pids.map(cpuSeconds)]))
  await victim.stop(values['restart-signal'] as NodeJS.Signals)
  firstLife = victim.daemon.stderr
  const stoppedMs = performance.now() - started
  let previous = before.get(`p${proxyCount - 1}`) ?? 0
  let sampling = true
  const rates: number[] = []
  const victimCpu: number[] = []
  const machineBusy: number[] = []
  let victimTicks = { pid: 0, seconds: 0 }
  let machineTicks = machineCpu()
  let sampledAt = performance.now()
  const sampler = (async () => {
    while (sampling) {
      await sleep(1000)
      const now = (await sessionsPerServer(sockets)).get(`p${proxyCount - 1}`) ?? 0
      rates.push(now - previous)
      previous = now
      // The restarted proxy's share of a core (0 while it is down) and the whole machine's busy share.
      const pid = victim.daemon?.child.pid ?? 0
      let seconds = 0
      try {
        seconds = pid ? cpuSeconds(pid) : 0
      } catch {
        // exited meanwhile
      }
      // Per second of the sample's own length (asking the balancers takes a moment too).
      const elapsed = (performance.now() - sampledAt) / 1000
      sampledAt = performance.now()
      victimCpu.push((pid && pid === victimTicks.pid ? seconds - victimTicks.seconds : seconds) / elapsed)
      victimTicks = { pid, seconds }
      const machine = machineCpu()
      machineBusy.push((machine.busy - machineTicks.busy) / Math.max(1, machine.total - machineTicks.total))
      machineTicks = machine
    }
  })()
  await victim.start()
  const listeningMs = performance.now() - started
  const recovery = await untilFull(started, 'restart')
  sampling = false
  await sampler
  const recoverySeconds = (performance.now() - started) / 1000
  const shareOf = (group: keyof typeof others) =>
    others[group].map((pid, i) => `${(((cpuSeconds(pid) - othersBefore[group]![i]!) / recoverySeconds) * 100).toFixed(0)}%`).join(' / ')
  notes.push(
    `restart: CPU over the recovery (share of a core): the other proxies ${shareOf('proxies')}, HAProxy ${shareOf('balancers')}, swarms ${shareOf('swarms')}, auth ${shareOf('auth')}`,
  )
  recoveryFromStop = recovery.ms
  recoveryFromListen = recovery.ms === undefined ? undefined : recovery.ms - listeningMs
  restartDials = summary(recovery.last.dials)
  peakRate = Math.max(0, ...rates)
  notes.push(`restart: proxy stopped (${values['restart-signal']}) in ${(stoppedMs / 1000).toFixed(1)} s, listening again ${(listeningMs / 1000).toFixed(1)} s after the stop`)
  notes.push(`restart: new connections per second at the restarted proxy: ${rates.join(' ')}`)
  notes.push(`restart: the restarted proxy's CPU per second (share of a core): ${victimCpu.map((c) => c.toFixed(2)).join(' ')}`)
  notes.push(`restart: the machine's busy share per second (all ${cpus().length} cores): ${machineBusy.map((c) => c.toFixed(2)).join(' ')}`)
  notes.push(`restart, dials per agent (dials:agents): ${histogram(recovery.last.dials)}`)
  notes.push(`restart: ${recovery.last.resumed} of the tunnels opened resumed a TLS session`)
  notes.push(`swarm RSS ${(recovery.last.rss / MiB).toFixed(0)} MiB for ${agentCount} agents`)
} finally {
  await cleanup()
}

const s = (ms?: number) => (ms === undefined ? `not reached in ${values.limit} s` : `${(ms / 1000).toFixed(1)} s`)
const d = (x?: ReturnType<typeof summary>) => (x ? `mean ${x.mean.toFixed(2)}, p50 ${x.p50}, p99 ${x.p99}, max ${x.max}` : '')
console.log(
  `\n${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
)
console.log(
  `${agentCount} agents (${swarmCount} processes at nice ${swarmNice}, started ${rate}/s), ${proxyCount} proxies (logging at ${values['proxy-log']} level) behind ${balancerCount} HAProxy process(es) (TCP, balance ${values.balance}, send-proxy-v2)`,
)
results.push(['quiet start: every agent holds all tunnels', s(quietMs), `after the first agent started; the last started at ${((agentCount - 1) / rate).toFixed(1)} s`])
results.push(['quiet start: dials per agent', d(quietDials), `target ≤ ${3 * proxyCount}`])
if (idleCpu)
  results.push([
    'idle CPU (share of a core)',
    `auth ${(idleCpu.auth * 100).toFixed(1)}%, proxies ${idleCpu.proxies.map((c) => (c * 100).toFixed(1) + '%').join(' / ')}`,
    `HAProxy ${idleCpu.balancers.map((c) => (c * 100).toFixed(1) + '%').join(' / ')}, swarms ${idleCpu.swarms.map((c) => (c * 100).toFixed(1) + '%').join(' / ')}`,
  ])
if (proxyRss.length) results.push(['proxy RSS', proxyRss.map((r) => `${(r / MiB).toFixed(0)} MiB`).join(' / '), `${agentCount} tunnels each`])
results.push(['restart: all tunnels back, from the stop', s(recoveryFromStop), 'target ≤ 30 s'])
results.push(['restart: all tunnels back, from listening', s(recoveryFromListen), ''])
results.push(['restart: dials per agent', d(restartDials), ''])
results.push(['restart: peak new connections/s at that proxy', String(peakRate), 'per 1 s sample at the balancer'])
console.log(formatTable(['figure', 'measured', 'note'], results))
for (const note of notes) console.log(note)
for (const event of haproxyEvents) console.log(`HAProxy, ${event}`)
if (values.profile) {
  const files = readdirSync(profileDir).map((f) => join(profileDir, f))
  const pidsOf = (pids: number[]) => files.filter((f) => pids.some((pid) => f.includes(`.${pid}.`)))
  console.log(formatSummary('proxies (the restarted one before its restart)', summariseProfiles(pidsOf(proxyPids), 25)))
  const restarted = proxies[proxyCount - 1]?.daemon?.child.pid
  if (restarted) console.log(formatSummary('the restarted proxy after its restart', summariseProfiles(pidsOf([restarted]), 25)))
  console.log(formatSummary('agent swarms', summariseProfiles(pidsOf(helpers.map((h) => h.pid)), 25)))
}
