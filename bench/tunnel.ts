// Tunnel throughput and latency, every path measured side by side in the same run against
// the same echo server (a process of its own), over one connection each:
//
//   direct        client → TCP → echo
//   openssh       client → TCP → sshd → SSH channel → ssh -R → TCP → echo
//   openssh-auth  the same reached the way a user elsewhere reaches it: client → TCP → ssh -L
//                 (an authenticated, encrypted SSH connection to sshd) → sshd → TCP → sshd →
//                 SSH channel → ssh -R → TCP → echo; Warren's user leg is likewise TLS with a
//                 user certificate, so this is the like-for-like comparison
//   warren        client → TLS → proxy → TLS 1.3 + yamux → agent → TCP → echo (real `warren start` processes)
//   relay-tls     client → TCP → relay → TLS 1.3 → relay → TCP → echo (a TLS connection per client, no mux)
//   relay-yamux   the same relays over one TLS connection with shared/yamux streams
//   relay-h2      the same relays over one TLS connection with node:http2 streams
//
// Bulk echo: 64 KiB writes while reading the echo; MB (10^6 bytes) each way per second, and
// the CPU time every process on the path spent per GB (client, entry hop, exit hop, echo
// server), which says where the time goes and depends less on what else the machine runs.
// Latency: one 64-byte message at a time, its round trip's p50 and p99.
// Rounds are interleaved (every path once per round) and the medians reported.
//
//   npm run bench:tunnel [-- --mb=200 --round-trips=5000 --rounds=5 --paths=warren,openssh --profile]
//
// --profile runs the proxy and the agent with --cpu-prof and prints where their time went.

import { connect, type Socket } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { parseArgs } from 'node:util'
import { tempDir } from '../test/helpers/cluster.ts'
import { Helper } from './lib/child.ts'
import { formatSummary, profilesOf, summariseProfiles } from './lib/cpu-profile.ts'
import { bulkEcho, type LatencyResult, median, roundTrips } from './lib/measure.ts'
import { opensshMissing, startOpensshTunnel } from './lib/openssh-tunnel.ts'
import { cpuSecondsOf, processTree } from './lib/proc-stats.ts'
import { formatTable } from './lib/table.ts'
import { startWarrenPath } from './lib/warren-path.ts'

const ALL_PATHS = ['direct', 'openssh', 'openssh-auth', 'warren', 'relay-tls', 'relay-yamux', 'relay-h2']
const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '200' },
    'round-trips': { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '5' },
    paths: { type: 'string', default: ALL_PATHS.join(',') },
    profile: { type: 'boolean', default: false },
  },
})
const totalBytes = Number(values.mb) * 1e6
const roundTripCount = Number(values['round-trips'])
const rounds = Number(values.rounds)
const paths = values.paths.split(',')
for (const path of paths) if (!ALL_PATHS.includes(path)) throw new Error(`unknown path "${path}": use ${ALL_PATHS.join(', ')}`)

interface Path {
  open(): Promise<Duplex>
  /**
   * The processes of the hop the client reaches and of the hop that reaches the echo server,
   * and any process on the user's side besides this one (OpenSSH's `ssh -L`).
   */
  hops(): { client?: number[]; entry: number[]; exit: number[] }
}

interface BulkSample {
  mbPerSecond: number
  /** CPU seconds per GB each way. */
  cpu: { client: number; entry: number; exit: number; echo: number }
}

const LIB = join(import.meta.dirname, 'lib')
const helpers: Helper[] = []
const stops: (() => Promise<void>)[] = []
const cleanup = async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {})
  await Promise.all(helpers.map((h) => h.stop()))
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
const helper = (script: string, args: string[] = []) => {
  const started = new Helper(join(LIB, script), args)
  helpers.push(started)
  return started
}

function tcp(port: number): () => Promise<Socket> {
  return async () => {
    const socket = connect({ host: '127.0.0.1', port })
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    socket.setNoDelay(true)
    return socket
  }
}

async function relayChain(mode: string, echoPort: number): Promise<Path> {
  let entry: Helper
  let exit: Helper
  if (mode === 'tls') {
    exit = helper('relay.ts', ['--role=exit', '--mode=tls', `--echo-port=${echoPort}`])
    entry = helper('relay.ts', ['--role=entry', '--mode=tls', `--exit-port=${(await exit.ready).port}`])
  } else {
    entry = helper('relay.ts', ['--role=entry', `--mode=${mode}`])
    exit = helper('relay.ts', ['--role=exit', `--mode=${mode}`, `--echo-port=${echoPort}`, `--entry-port=${(await entry.ready).tunnelPort}`])
    await exit.ready
  }
  return { open: tcp((await entry.ready).port as number), hops: () => ({ entry: [entry.pid], exit: [exit.pid] }) }
}

async function startPath(name: string, echoPort: number): Promise<Path | string> {
  switch (name) {
    case 'direct':
      return { open: tcp(echoPort), hops: () => ({ entry: [], exit: [] }) }
    case 'openssh':
    case 'openssh-auth': {
      const missing = opensshMissing()
      if (missing) return `${name} skipped: ${missing}`
      const userLeg = name === 'openssh-auth'
      const tunnel = await startOpensshTunnel(echoPort, { userLeg })
      stops.push(tunnel.stop)
      notes.push(`${name}: ${tunnel.cipher}, default options`)
      const user = tunnel.userLeg
      return { open: tcp(user?.port ?? tunnel.port), hops: () => ({ client: user ? [user.pid] : [], entry: processTree(tunnel.sshdPid), exit: [tunnel.sshPid] }) }
    }
    case 'warren': {
      profileDir = values.profile ? tempDir('warren-bench-profile-') : undefined
      const warren = await startWarrenPath(echoPort, profileDir ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } : {})
      stops.push(warren.stop)
      profiled = { proxy: warren.proxy.daemon.child.pid!, node: warren.node.child.pid! }
      return { open: () => warren.connect(), hops: () => ({ entry: [profiled!.proxy], exit: [profiled!.node] }) }
    }
    default:
      return relayChain(name.slice('relay-'.length), echoPort)
  }
}

/** One bulk echo with the CPU time of every process on the path. */
async function measureBulk(path: Path, echoPid: number): Promise<BulkSample> {
  const socket = await path.open()
  const hops = path.hops()
  const cpuOf = () => ({
    client: process.cpuUsage(),
    userSide: cpuSecondsOf(hops.client ?? []),
    entry: cpuSecondsOf(hops.entry),
    exit: cpuSecondsOf(hops.exit),
    echo: cpuSecondsOf([echoPid]),
  })
  const before = cpuOf()
  const bulk = await bulkEcho(socket, totalBytes)
  const after = cpuOf()
  socket.destroy()
  const perGB = 1e9 / totalBytes
  const clientSeconds = (after.client.user + after.client.system - before.client.user - before.client.system) / 1e6 + after.userSide - before.userSide
  return {
    mbPerSecond: bulk.mbPerSecond,
    cpu: { client: clientSeconds * perGB, entry: (after.entry - before.entry) * perGB, exit: (after.exit - before.exit) * perGB, echo: (after.echo - before.echo) * perGB },
  }
}

const results = new Map<string, { bulk: BulkSample[]; latency: LatencyResult[] }>()
const notes: string[] = []
let profileDir: string | undefined
let profiled: { proxy: number; node: number } | undefined

try {
  const echo = helper('echo-server.ts')
  const echoPort = (await echo.ready).port as number
  const started = new Map<string, Path>()
  for (const name of paths) {
    const path = await startPath(name, echoPort)
    if (typeof path === 'string') notes.push(path)
    else started.set(name, path)
  }

  // One unmeasured pass first: JIT compilation and TCP/TLS warm-up.
  for (const [name, path] of started) {
    process.stderr.write(`warming up ${name}\n`)
    const socket = await path.open()
    await bulkEcho(socket, Math.min(totalBytes, 20e6))
    await roundTrips(socket, 500)
    socket.destroy()
  }
  for (let round = 1; round <= rounds; round++) {
    for (const [name, path] of started) {
      const entry = results.get(name) ?? { bulk: [], latency: [] }
      results.set(name, entry)
      const bulk = await measureBulk(path, echo.pid)
      entry.bulk.push(bulk)
      const socket = await path.open()
      const latency = await roundTrips(socket, roundTripCount)
      entry.latency.push(latency)
      socket.destroy()
      process.stderr.write(
        `  ${name.padEnd(12)} ${bulk.mbPerSecond.toFixed(0).padStart(5)} MB/s  p50 ${latency.p50Us.toFixed(0).padStart(4)} µs  p99 ${latency.p99Us.toFixed(0).padStart(5)} µs\n`,
      )
    }
    process.stderr.write(`round ${round}/${rounds} done\n`)
  }
} finally {
  await cleanup()
}

const rows = [...results].map(([path, r]) => {
  const cpu = (part: keyof BulkSample['cpu']) => median(r.bulk.map((b) => b.cpu[part]))
  const hops = { client: cpu('client'), entry: cpu('entry'), exit: cpu('exit'), echo: cpu('echo') }
  return {
    path,
    mbPerSecond: median(r.bulk.map((b) => b.mbPerSecond)),
    p50: median(r.latency.map((l) => l.p50Us)),
    p99: median(r.latency.map((l) => l.p99Us)),
    cpu: { ...hops, total: median(r.bulk.map((b) => b.cpu.client + b.cpu.entry + b.cpu.exit + b.cpu.echo)) },
  }
})
const openssh = rows.find((r) => r.path === 'openssh')

const table = (header: string[], body: string[][]) => console.log(formatTable(header, body))

console.log(
  `\n${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadavg()[0]!.toFixed(1)}; ${values.mb} MB each way, ${roundTripCount} round trips of 64 B, median of ${rounds} rounds\n`,
)
table(
  ['path', 'bulk MB/s', 'p50 µs', 'p99 µs', '÷ openssh MB/s', '÷ openssh p50'],
  rows.map((row) => [
    row.path,
    row.mbPerSecond.toFixed(0),
    row.p50.toFixed(0),
    row.p99.toFixed(0),
    openssh ? (row.mbPerSecond / openssh.mbPerSecond).toFixed(2) : '',
    openssh ? (row.p50 / openssh.p50).toFixed(2) : '',
  ]),
)
console.log('\nCPU seconds per GB echoed (each way), by process on the path')
table(
  ['path', 'client', 'entry hop', 'exit hop', 'echo', 'total', '÷ openssh'],
  rows.map((row) => [
    row.path,
    ...[row.cpu.client, row.cpu.entry, row.cpu.exit, row.cpu.echo, row.cpu.total].map((s) => s.toFixed(2)),
    openssh ? (row.cpu.total / openssh.cpu.total).toFixed(2) : '',
  ]),
)
for (const note of notes) console.log(note)
const warren = rows.find((r) => r.path === 'warren')
if (warren && openssh) {
  const throughput = warren.mbPerSecond / openssh.mbPerSecond
  const latency = warren.p50 / openssh.p50
  console.log(
    `Warren ÷ OpenSSH: throughput ${throughput.toFixed(2)} (target ≥ 1.00, ${throughput >= 1 ? 'met' : 'missed'}), p50 latency ${latency.toFixed(2)} (target ≤ 1.00, ${latency <= 1 ? 'met' : 'missed'}), CPU per byte ${(warren.cpu.total / openssh.cpu.total).toFixed(2)}`,
  )
}
const opensshAuth = rows.find((r) => r.path === 'openssh-auth')
if (warren && opensshAuth) {
  console.log(
    `Warren ÷ OpenSSH with the user's own SSH leg (like for like): throughput ${(warren.mbPerSecond / opensshAuth.mbPerSecond).toFixed(2)}, p50 latency ${(warren.p50 / opensshAuth.p50).toFixed(2)}, CPU per byte ${(warren.cpu.total / opensshAuth.cpu.total).toFixed(2)}`,
  )
}
if (profileDir && profiled) {
  console.log('\n' + formatSummary('proxy (warren start --roles=proxy)', summariseProfiles(profilesOf(profileDir, profiled.proxy), 25)))
  console.log('\n' + formatSummary('agent (warren start --roles=node)', summariseProfiles(profilesOf(profileDir, profiled.node), 25)))
}
