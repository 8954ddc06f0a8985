// What users run to reach a service on a node, side by side in one run with OpenSSH's own
// authenticated path and a native TLS chain, all to the same server on the node's side
// (bench/lib/sink-server.ts, a process of its own):
//
//   warren-ssh          client → TCP → stock `ssh -L` → ProxyCommand `warren proxy ssh` → TLS →
//                       proxy → TLS 1.3 + yamux → agent (the node's SSH server, ssh2) → TCP → server;
//                       ssh configured by the ssh_config `warrenctl auth sign --format=openssh` writes
//   warren-ssh-fdpass   client → TCP → stock `ssh -L` → proxy (a plain SSH stream, ProxyUseFdpass:
//                       the ProxyCommand hands ssh its socket and exits) → TLS 1.3 + yamux → agent → …;
//                       ssh configured by the ssh_config of `warrenctl auth sign --format=openssh --fdpass`
//   openssh-auth        client → TCP → `ssh -L` → sshd → TCP → sshd → `ssh -R` → TCP → server
//                       (bench/lib/openssh-tunnel.ts: the user's authenticated, encrypted leg)
//   warren-port         client → `warren proxy port NODE sink` over its standard input and output →
//                       TLS → proxy → TLS 1.3 + yamux → agent → TCP → server (a process per connection)
//   warren-port-listen  client → TCP → `warren proxy port --listen=127.0.0.1:0 NODE sink` → the same
//   stunnel             client → TCP → stunnel → TLS → stunnel → TLS → stunnel → TCP → server
//                       (bench/lib/stunnel.ts: the native limit of the listener's shape)
//
// Per round and path, over one connection: LENGTH bytes to the server and LENGTH bytes from
// it, each timed from the command to the last byte (MB are 10^6 bytes); the CPU seconds per
// GB moved of every process on the path (read from /proc; the benchmark's own client and the
// server are the same on every path and not counted); then 64-byte round trips through the
// server's echo, every path's connection open at once and measured in alternating batches.
// Rounds alternate the order of the paths; medians are reported.
//
//   npm run bench:ssh [-- --mb=1000 --round-trips=10000 --rounds=3 --paths=warren-ssh,openssh-auth]
//
// --gap-ms=N waits N ms after each answer before the next round trip (0, back to back, by
// default, as the targets are set): with a typist's pace (50) each keystroke finds every
// process on the path asleep, as a user's keystrokes do.
//
// Needs root (sshd), Debian's openssh-server and openssh-client, and stunnel4.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { connect } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { Duplex } from 'node:stream'
import { parseArgs } from 'node:util'
import { WARREN_EXEC_ARGV } from '../shared/heap-tuning.ts'
import { freePort, ROOT, tempDir, testLogin } from '../test/helpers/cluster.ts'
import { Helper } from './lib/child.ts'
import { interleavedRoundTrips, type LatencyResult, latencyOf, median, roundTripTimes } from './lib/measure.ts'
import { opensshMissing, startOpensshTunnel } from './lib/openssh-tunnel.ts'
import { cpuSecondsOf, processTree } from './lib/proc-stats.ts'
import { download, ping, startEcho, upload } from './lib/sink.ts'
import { stopProcess, waitForPort } from './lib/sshd.ts'
import { startStunnelChain, stunnelMissing } from './lib/stunnel.ts'
import { formatTable } from './lib/table.ts'
import { NODE_NAME, startWarrenCluster, type WarrenCluster } from './lib/warren-path.ts'

const ALL_PATHS = ['warren-ssh', 'warren-ssh-fdpass', 'openssh-auth', 'warren-port', 'warren-port-listen', 'stunnel']
const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '1000' },
    'round-trips': { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    'gap-ms': { type: 'string', default: '0' },
    paths: { type: 'string', default: ALL_PATHS.join(',') },
  },
})
const megabytes = Number(values.mb)
const roundTripCount = Number(values['round-trips'])
const gapMs = Number(values['gap-ms'])
if (!Number.isInteger(gapMs) || gapMs < 0) throw new Error('--gap-ms: give a whole number of milliseconds, 0 or more')
const rounds = Number(values.rounds)
for (const [flag, value] of [
  ['--mb', megabytes],
  ['--round-trips', roundTripCount],
  ['--rounds', rounds],
] as const) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag}: give a whole number of at least 1`)
}
const paths = values.paths.split(',')
for (const path of paths) if (!ALL_PATHS.includes(path)) throw new Error(`unknown path "${path}": use ${ALL_PATHS.join(', ')}`)
const length = megabytes * 1e6
/** The name of the server in the node's forward_ports. */
const PORT_NAME = 'sink'
const WARREN = join(ROOT, 'cli/warren.ts')

/** Processes on a path, each counted under its label. */
type Processes = Record<string, number[]>

interface Connection {
  socket: Duplex
  /** Read when the measurement starts: sshd forks per connection. */
  processes(): Processes
  close(): Promise<void>
}

interface Path {
  name: string
  open(): Promise<Connection>
}

interface Sample {
  up: number
  down: number
  /** CPU seconds per GB moved (up and down together), by process. */
  cpu: Record<string, number>
  /** The same for each direction. */
  cpuUp: Record<string, number>
  cpuDown: Record<string, number>
  latency: LatencyResult
  /** CPU microseconds per 64-byte round trip, by process: where a round trip's time goes. */
  cpuPerRoundTrip: Record<string, number>
}

const stops: (() => Promise<void>)[] = []
const cleanup = async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {})
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
const notes: string[] = []

/** A child process the run stops at its end. */
function stopAtEnd(child: ChildProcess): ChildProcess {
  stops.push(() => stopProcess(child))
  return child
}

async function tcp(port: number, processes: () => Processes): Promise<Connection> {
  const socket = connect({ host: '127.0.0.1', port })
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  socket.setNoDelay(true)
  return { socket, processes, close: async () => void socket.destroy() }
}

/** The cluster, a user allowed the login, and the credentials with the ssh_config its login writes. */
async function startWarren(serverPort: number): Promise<{ cluster: WarrenCluster; identity: string; fdpassIdentity: string; login: string }> {
  const cluster = await startWarrenCluster({
    nodeYaml: ['ssh_service:', '  listen_addr: 127.0.0.1:0', '  forward_ports:', `    - { name: ${PORT_NAME}, addr: "127.0.0.1:${serverPort}" }`],
  })
  stops.push(cluster.stop)
  const identity = tempDir('warren-bench-user-')
  const fdpassIdentity = tempDir('warren-bench-user-')
  // No session runs: the throwaway account only has to exist on the node.
  const login = testLogin()
  const sign = (dir: string) => ['auth', 'sign', '--user=bench', '--ttl=12h', `--out=${dir}`, '--format=openssh', `--proxy=${cluster.proxy.web}`]
  for (const args of [['users', 'add', 'bench', `--logins=${login}`], sign(identity), [...sign(fdpassIdentity), '--fdpass']]) {
    const result = await cluster.auth.ctl(args)
    if (result.code !== 0) throw new Error(`warrenctl ${args.join(' ')} failed: ${result.stderr}`)
  }
  return { cluster, identity, fdpassIdentity, login }
}

async function startPath(name: string, serverPort: number, warren: () => ReturnType<typeof startWarren>): Promise<Path | string> {
  switch (name) {
    case 'warren-ssh':
    case 'warren-ssh-fdpass': {
      const { cluster, identity, fdpassIdentity, login } = await warren()
      const port = await freePort()
      const ssh = stopAtEnd(
        spawn(
          'ssh',
          [
            '-F',
            join(name === 'warren-ssh-fdpass' ? fdpassIdentity : identity, 'ssh_config'),
            '-v',
            '-N',
            '-o',
            'BatchMode=yes',
            '-o',
            'ExitOnForwardFailure=yes',
            '-L',
            `127.0.0.1:${port}:127.0.0.1:${serverPort}`,
            `${login}@${NODE_NAME}`,
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        ),
      )
      let log = ''
      ssh.stderr!.on('data', (data) => (log += data))
      await waitForPort(port, () => `ssh -L through Warren did not open its port: ${log}`, 30_000)
      notes.push(`${name}: ${/kex: server->client cipher: (\S+ MAC: \S+)/.exec(log)?.[1] ?? 'unknown cipher'}`)
      const sshPid = ssh.pid!
      return {
        name,
        open: () =>
          tcp(port, () => ({
            agent: [cluster.node.child.pid!],
            proxy: [cluster.proxy.daemon.child.pid!],
            ProxyCommand: processTree(sshPid).filter((pid) => pid !== sshPid),
            ssh: [sshPid],
          })),
      }
    }
    case 'openssh-auth': {
      const missing = opensshMissing()
      if (missing) return `${name} skipped: ${missing}`
      const tunnel = await startOpensshTunnel(serverPort, { userLeg: true })
      stops.push(tunnel.stop)
      notes.push(`openssh-auth: ${tunnel.cipher}`)
      return { name, open: () => tcp(tunnel.userLeg!.port, () => ({ sshd: processTree(tunnel.sshdPid), 'ssh -R': [tunnel.sshPid], 'ssh -L': [tunnel.userLeg!.pid] })) }
    }
    case 'warren-port': {
      const { cluster, identity } = await warren()
      return {
        name,
        async open() {
          // Node's options as the single executable starts it (shared/heap-tuning.ts).
          const child = spawn(process.execPath, [...WARREN_EXEC_ARGV, WARREN, 'proxy', 'port', `--identity=${identity}`, NODE_NAME, PORT_NAME], {
            stdio: ['pipe', 'pipe', 'inherit'],
          })
          const socket = Duplex.from({ readable: child.stdout, writable: child.stdin })
          return {
            socket,
            processes: () => ({ agent: [cluster.node.child.pid!], proxy: [cluster.proxy.daemon.child.pid!], 'warren proxy port': [child.pid!] }),
            close: async () => {
              socket.on('error', () => {})
              socket.destroy()
              await stopProcess(child)
            },
          }
        },
      }
    }
    case 'warren-port-listen': {
      const { cluster, identity } = await warren()
      const listener = stopAtEnd(
        spawn(process.execPath, [...WARREN_EXEC_ARGV, WARREN, 'proxy', 'port', '--listen=127.0.0.1:0', `--identity=${identity}`, NODE_NAME, PORT_NAME], {
          stdio: ['ignore', 'pipe', 'inherit'],
        }),
      )
      const port = await new Promise<number>((resolve, reject) => {
        let stdout = ''
        listener.stdout!.on('data', (data) => {
          stdout += data
          const line = /^listening on 127\.0\.0\.1:(\d+)\n/.exec(stdout)
          if (line) resolve(Number(line[1]))
        })
        listener.once('exit', (code) => reject(new Error(`warren proxy port --listen exited (${code}): ${stdout}`)))
      })
      return {
        name,
        open: () => tcp(port, () => ({ agent: [cluster.node.child.pid!], proxy: [cluster.proxy.daemon.child.pid!], listener: [listener.pid!] })),
      }
    }
    default: {
      const missing = stunnelMissing()
      if (missing) return `${name} skipped: ${missing}`
      const chain = await startStunnelChain(serverPort)
      stops.push(chain.stop)
      const version = spawnSync('/usr/bin/stunnel4', ['-version'], { encoding: 'utf8' }).stderr.match(/stunnel \S+/)?.[0]
      notes.push(`stunnel: ${version ?? 'stunnel4'}, TLS 1.3 with each side's default cipher`)
      return { name, open: () => tcp(chain.port, () => ({ 'stunnel node': [chain.pids.node], 'stunnel middle': [chain.pids.middle], 'stunnel user': [chain.pids.user] })) }
    }
  }
}

/** A path's connection after its bulk transfers, echoing, for the round trips. */
interface Opened {
  path: Path
  connection: Connection
  /** CPU seconds so far, by process. */
  cpu(): Record<string, number>
  bulk: Omit<Sample, 'latency' | 'cpuPerRoundTrip'>
}

/** CPU seconds spent from `from` to `to`, by process, times `scale`. */
function spent(from: Record<string, number>, to: Record<string, number>, scale: number): Record<string, number> {
  return Object.fromEntries(Object.keys(from).map((label) => [label, (to[label]! - from[label]!) * scale]))
}

/** Opens `path` and moves `bytes` each way with the CPU they cost; the connection is left open and echoing. */
async function bulk(path: Path, bytes: number): Promise<Opened> {
  const connection = await path.open()
  try {
    const { socket } = connection
    await ping(socket) // the whole path is up (a `warren proxy port` process has started)
    const processes = connection.processes()
    const cpu = () => Object.fromEntries(Object.entries(processes).map(([label, pids]) => [label, cpuSecondsOf(pids)]))
    const before = cpu()
    const up = bytes / 1e6 / (await upload(socket, bytes))
    const between = cpu()
    const down = bytes / 1e6 / (await download(socket, bytes))
    const after = cpu()
    /** CPU seconds per GB moved from `from` to `to`, by process. */
    const perGB = (from: Record<string, number>, to: Record<string, number>, moved: number) => spent(from, to, 1e9 / moved)
    startEcho(socket)
    return { path, connection, cpu, bulk: { up, down, cpu: perGB(before, after, 2 * bytes), cpuUp: perGB(before, between, bytes), cpuDown: perGB(between, after, bytes) } }
  } catch (error) {
    await connection.close()
    throw error
  }
}

/**
 * `count` round trips on every opened path, interleaved (`interleavedRoundTrips`), with the
 * CPU per round trip of each process, counted around each batch. Closes the connections.
 */
async function roundTripSamples(opened: Opened[], count: number): Promise<Sample[]> {
  const cpu = opened.map(() => ({}) as Record<string, number>)
  try {
    const times = await interleavedRoundTrips(opened, count, async (path, n, index) => {
      const before = path.cpu()
      const batch = await roundTripTimes(path.connection.socket, n, 64, gapMs)
      const total = cpu[index]!
      for (const [label, seconds] of Object.entries(spent(before, path.cpu(), 1e6 / count))) total[label] = (total[label] ?? 0) + seconds
      return batch
    })
    return opened.map((path, index) => ({ ...path.bulk, latency: latencyOf(times[index]!), cpuPerRoundTrip: cpu[index]! }))
  } finally {
    for (const { connection } of opened) await connection.close()
  }
}

const results = new Map<string, Sample[]>()
const loadAtStart = loadavg()[0]!

try {
  const server = new Helper(join(import.meta.dirname, 'lib', 'sink-server.ts'))
  stops.push(() => server.stop())
  const serverPort = (await server.ready).port as number
  let warren: ReturnType<typeof startWarren> | undefined
  const started: Path[] = []
  for (const name of paths) {
    const path = await startPath(name, serverPort, () => (warren ??= startWarren(serverPort)))
    if (typeof path === 'string') notes.push(path)
    else started.push(path)
  }

  // One unmeasured pass first: JIT compilation of the Node processes, TCP and TLS warm-up.
  const warm: Opened[] = []
  for (const path of started) {
    process.stderr.write(`warming up ${path.name}\n`)
    warm.push(await bulk(path, Math.min(length, 20e6)))
  }
  await roundTripSamples(warm, 500)
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 0 ? [...started].reverse() : started
    const opened: Opened[] = []
    for (const path of order) opened.push(await bulk(path, length))
    const samples = await roundTripSamples(opened, roundTripCount)
    for (const [index, path] of order.entries()) {
      const sample = samples[index]!
      results.set(path.name, [...(results.get(path.name) ?? []), sample])
      process.stderr.write(
        `  ${path.name.padEnd(18)} up ${sample.up.toFixed(0).padStart(4)} MB/s  down ${sample.down.toFixed(0).padStart(4)} MB/s  p50 ${sample.latency.p50Us.toFixed(0).padStart(5)} µs  p99 ${sample.latency.p99Us.toFixed(0).padStart(5)} µs\n`,
      )
    }
    process.stderr.write(`round ${round}/${rounds} done\n`)
  }
} finally {
  await cleanup()
}

const rows = new Map(
  [...results].map(([name, samples]) => {
    const of = (pick: (sample: Sample) => number) => median(samples.map(pick))
    const labels = Object.keys(samples[0]!.cpu)
    const cpu = Object.fromEntries(labels.map((label) => [label, of((s) => s.cpu[label]!)]))
    const byDirection = labels.map((label) => ({ label, up: of((s) => s.cpuUp[label]!), down: of((s) => s.cpuDown[label]!) }))
    const total = of((s) => Object.values(s.cpu).reduce((sum, seconds) => sum + seconds, 0))
    const perRoundTrip = Object.fromEntries(labels.map((label) => [label, of((s) => s.cpuPerRoundTrip[label]!)]))
    return [name, { name, up: of((s) => s.up), down: of((s) => s.down), p50: of((s) => s.latency.p50Us), p99: of((s) => s.latency.p99Us), cpu, byDirection, total, perRoundTrip }]
  }),
)

console.log(
  `\n${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end; ${megabytes} MB each way, ${roundTripCount} round trips of 64 B${gapMs > 0 ? `, each ${gapMs} ms after the last answer` : ''}, median of ${rounds} rounds, Node ${process.version}\n`,
)
console.log(
  formatTable(
    ['path', 'up MB/s', 'down MB/s', 'p50 µs', 'p99 µs', 'CPU s/GB total', 'CPU s/GB by process'],
    [...rows.values()].map((row) => [
      row.name,
      row.up.toFixed(0),
      row.down.toFixed(0),
      row.p50.toFixed(0),
      row.p99.toFixed(0),
      row.total.toFixed(2),
      Object.entries(row.cpu)
        .map(([label, seconds]) => `${label} ${seconds.toFixed(2)}`)
        .join(', '),
    ]),
  ),
)
console.log('\nup: to the server on the node side; CPU per GB moved, both directions together.\n')
console.log(
  formatTable(
    ['path', 'process', 'CPU s/GB up', 'down'],
    [...rows.values()].flatMap((row) => row.byDirection.map(({ label, up, down }) => [row.name, label, up.toFixed(2), down.toFixed(2)])),
  ),
)
console.log(
  gapMs > 0
    ? `\nCPU per round trip: what each process spends per 64-byte round trip, with what it spends idle in the ${gapMs} ms between them (timers, heartbeats).\n`
    : "\nCPU per round trip: what each process spends on one 64-byte round trip (the p50 column's work).\n",
)
console.log(
  formatTable(
    ['path', 'CPU µs per round trip by process'],
    [...rows.values()].map((row) => [
      row.name,
      Object.entries(row.perRoundTrip)
        .map(([label, micros]) => `${label} ${micros.toFixed(0)}`)
        .join(', '),
    ]),
  ),
)
for (const note of notes) console.log(note)

/** A figure of a sample; a path's row holds the medians of its samples' figures. */
type Figure = (sample: Sample) => number
const figures = {
  up: (s) => s.up,
  down: (s) => s.down,
  p50: (s) => s.latency.p50Us,
  agent: (s) => s.cpu.agent,
  sshd: (s) => s.cpu.sshd,
  total: (s) => Object.values(s.cpu).reduce((sum, seconds) => sum + seconds, 0),
} satisfies Record<string, Figure>

/** A ratio of two paths' figures: of the medians, and its range over the rounds (the same round of each). */
function compare(label: string, path: string, figure: Figure, baseline: string, baselineFigure: Figure, target?: '≥' | '≤'): string[] | undefined {
  const ours = results.get(path)
  const theirs = results.get(baseline)
  if (!ours || !theirs) return undefined
  const value = median(ours.map(figure)) / median(theirs.map(baselineFigure))
  const perRound = ours.map((sample, i) => figure(sample) / baselineFigure(theirs[i]!))
  const met = target === '≥' ? value >= 1 : value <= 1
  return [
    label,
    value.toFixed(2),
    `${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}`,
    target ? `${target} 1.00` : '—',
    target ? (met ? 'PASS' : 'MISS') : '',
  ]
}

const { up, down, p50, agent, sshd, total } = figures
const ratios = [
  compare('warren-ssh ÷ openssh-auth, up', 'warren-ssh', up, 'openssh-auth', up, '≥'),
  compare('warren-ssh ÷ openssh-auth, down', 'warren-ssh', down, 'openssh-auth', down, '≥'),
  compare('warren-ssh ÷ openssh-auth, p50', 'warren-ssh', p50, 'openssh-auth', p50, '≤'),
  compare('node agent ÷ sshd, CPU per GB', 'warren-ssh', agent, 'openssh-auth', sshd, '≤'),
  compare('warren-ssh ÷ openssh-auth, CPU per GB, all processes', 'warren-ssh', total, 'openssh-auth', total),
  compare('warren-ssh-fdpass ÷ openssh-auth, up', 'warren-ssh-fdpass', up, 'openssh-auth', up, '≥'),
  compare('warren-ssh-fdpass ÷ openssh-auth, down', 'warren-ssh-fdpass', down, 'openssh-auth', down, '≥'),
  compare('warren-ssh-fdpass ÷ openssh-auth, p50', 'warren-ssh-fdpass', p50, 'openssh-auth', p50, '≤'),
  compare('node agent ÷ sshd, CPU per GB (fdpass)', 'warren-ssh-fdpass', agent, 'openssh-auth', sshd, '≤'),
  compare('warren-ssh-fdpass ÷ openssh-auth, CPU per GB, all processes', 'warren-ssh-fdpass', total, 'openssh-auth', total),
  compare('warren-port-listen ÷ stunnel, up', 'warren-port-listen', up, 'stunnel', up, '≥'),
  compare('warren-port-listen ÷ stunnel, down', 'warren-port-listen', down, 'stunnel', down, '≥'),
  compare('warren-port-listen ÷ stunnel, p50', 'warren-port-listen', p50, 'stunnel', p50),
  compare('warren-port-listen ÷ stunnel, CPU per GB', 'warren-port-listen', total, 'stunnel', total),
  compare('warren-port ÷ stunnel, up', 'warren-port', up, 'stunnel', up),
  compare('warren-port ÷ stunnel, down', 'warren-port', down, 'stunnel', down),
].filter((row) => row !== undefined)
if (ratios.length > 0) console.log(`\n${formatTable(['ratio', 'of medians', 'by round', 'target', 'verdict'], ratios)}`)
