// File copies and interactive latency through Warren against OpenSSH's own path, in one run,
// with the same stock OpenSSH client on both:
//
//   warren   scp → ssh → ProxyCommand `warren proxy ssh` → TLS → proxy → TLS 1.3 + yamux →
//            agent (the node's SSH server, ssh2) → sftp-server
//   openssh  scp → ssh → ProxyJump (`ssh -W` through a first sshd) → sshd → sftp-server
//
// Warren's client is configured by the ssh_config `warrenctl auth sign --format=openssh`
// writes (the one `warren login` writes). Both paths log in as the same throwaway account
// whose shell is /bin/sh (root's startup files here take a second or more, which would weigh
// on every copy), run the same sftp-server, and scp runs in its default SFTP mode (OpenSSH
// 9.0 and later).
//
// Per round and path: a random file copied to the node and back, each copy timed from
// scp's start to its exit (the connection's set-up included, as a user waits for it) and
// its sha256 checked (a copy that arrives wrong fails the run); 64-byte round trips through
// `cat` in an `ssh -tt` session, both paths' sessions open at once and measured in
// alternating batches; the CPU time the node side spent per GB copied (the agent and the
// sessions it ran, or sshd and its connection processes, read from /proc during the copy)
// and that of the hop in between (Warren's proxy, the jump sshd). Rounds alternate the
// paths; medians are reported.
//
//   npm run bench:copy [-- --size=1G --rounds=3 --round-trips=2000 --cipher=aes128-gcm@openssh.com --fdpass --profile]
//
// --fdpass has Warren's ssh talk to the proxy itself over a plain SSH stream (ProxyUseFdpass:
// the ssh_config of `auth sign --fdpass`) instead of through the ProxyCommand's TLS connection.
// --cipher is OpenSSH's -c on both paths (the default is what client and server agree on).
// --profile runs the proxy and the agent with --cpu-prof and prints where their time went.
//
// Needs root (sshd, and the throwaway account) and OpenSSH's sftp-server.

import { execFileSync, spawnSync } from 'node:child_process'
import { chownSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { lookupPasswd } from '../agent/login-accounts.ts'
import { findSftpServer } from '../agent/sftp-server.ts'
import { tempDir, testLogin } from '../test/helpers/cluster.ts'
import { formatSummary, profilesOf, summariseProfiles } from './lib/cpu-profile.ts'
import { interactiveRoundTrips, openInteractive, randomFile, sha256File, timed } from './lib/file-copy.ts'
import { interleavedRoundTrips, type LatencyResult, latencyOf, median } from './lib/measure.ts'
import { TreeCpu } from './lib/proc-stats.ts'
import { type Sshd, sshdMissing, startSshd } from './lib/sshd.ts'
import { formatTable } from './lib/table.ts'
import { NODE_NAME, startWarrenCluster } from './lib/warren-path.ts'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1G' },
    rounds: { type: 'string', default: '3' },
    'round-trips': { type: 'string', default: '2000' },
    profile: { type: 'boolean', default: false },
    cipher: { type: 'string' },
    fdpass: { type: 'boolean', default: false },
  },
})
const bytes = parseSize(values.size)
const rounds = Number(values.rounds)
const roundTripCount = Number(values['round-trips'])
for (const [flag, value] of [
  ['--rounds', rounds],
  ['--round-trips', roundTripCount],
] as const) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag}: give a whole number of at least 1`)
}
/** `ssh node true` this many times a round, for the set-up a copy's time includes. */
const SESSIONS_PER_ROUND = 5
const clientOptions = ['-o', 'BatchMode=yes', ...(values.cipher ? ['-c', values.cipher] : [])]
const profileDir = values.profile ? tempDir('warren-bench-profile-') : undefined

/** A size in bytes: a number with K, M or G (powers of 1024), as `--size=1G` or `--size=64M`. */
function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text)
  if (!match || Number(match[1]) === 0) throw new Error(`--size=${text}: give a number of bytes with K, M or G, as 1G or 64M`)
  return Number(match[1]) * 1024 ** ' KMG'.indexOf((match[2] || ' ').toUpperCase())
}

const missing = sshdMissing() ?? (findSftpServer() ? undefined : "OpenSSH's sftp-server is not installed (apt-get install openssh-sftp-server)")
if (missing) {
  console.error(`bench:copy needs the OpenSSH baseline: ${missing}`)
  process.exit(1)
}

interface CopyPath {
  name: 'warren' | 'openssh'
  /** ssh/scp options and the destination that reaches the node as the login. */
  ssh: string[]
  host: string
  /** The node side: the process whose tree's CPU time is counted (its own and its sessions'). */
  nodePid: number
  /** The hop between client and node. */
  hopPid: number
}

interface Sample {
  /** MB/s, from scp's start to its exit. */
  toNode: number
  fromNode: number
  /** MB/s with the round's session set-up taken from the copy's time: the data transfer alone. */
  toNodeNet: number
  fromNodeNet: number
  /** CPU seconds per GB copied, the mean of both directions. */
  nodeCpu: number
  /** Of which the agent itself, without the sessions it ran (Warren only). */
  nodeOwnCpu: number
  hopCpu: number
  latency: LatencyResult
  /** CPU microseconds per interactive round trip: the node's process tree, and the hop's. */
  nodeRoundTripCpu: number
  hopRoundTripCpu: number
  /** `ssh node true`, seconds: the set-up every copy's time includes. */
  session: number
}

const stops: (() => Promise<void>)[] = []
const cleanup = async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {})
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

// Both paths log in as this account and write to its own directory.
const login = testLogin()
const account = lookupPasswd(login)!
const remoteDir = tempDir('warren-bench-remote-')
chownSync(remoteDir, account.uid, account.gid)

/** The cluster, a user allowed the login, and the ssh_config its login writes. */
async function warrenPath(): Promise<CopyPath> {
  const env: Record<string, string> = profileDir ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } : {}
  const cluster = await startWarrenCluster({ env, nodeYaml: ['ssh_service:', '  listen_addr: 127.0.0.1:0'] })
  stops.push(cluster.stop)
  const profile = tempDir('warren-bench-user-')
  for (const args of [
    ['users', 'add', 'bench', `--logins=${login}`],
    ['auth', 'sign', '--user=bench', '--ttl=12h', `--out=${profile}`, '--format=openssh', `--proxy=${cluster.proxy.web}`, ...(values.fdpass ? ['--fdpass'] : [])],
  ]) {
    const result = await cluster.auth.ctl(args)
    if (result.code !== 0) throw new Error(`warrenctl ${args.join(' ')} failed: ${result.stderr}`)
  }
  return {
    name: 'warren',
    ssh: ['-F', join(profile, 'ssh_config'), ...clientOptions],
    host: `${login}@${NODE_NAME}`,
    nodePid: cluster.node.child.pid!,
    hopPid: cluster.proxy.daemon.child.pid!,
  }
}

/** Two sshds: the node's, reached with ProxyJump through the other's. */
async function opensshPath(sftpServer: string): Promise<CopyPath> {
  // useradd leaves the password locked ("!"), which sshd without PAM takes for a locked
  // account even for key logins; "*" allows no password either.
  execFileSync('usermod', ['-p', '*', login])
  const jump = await startSshd({ forwarding: 'yes' })
  stops.push(jump.stop)
  const target = await startSshd({ forwarding: 'no', sftpServer, userKey: jump.userKey })
  stops.push(target.stop)
  const dir = tempDir('warren-bench-openssh-')
  const knownHost = (sshd: Sshd) => `[127.0.0.1]:${sshd.port} ${sshd.hostKey}`
  writeFileSync(join(dir, 'known_hosts'), [knownHost(jump), knownHost(target), ''].join('\n'))
  writeFileSync(
    join(dir, 'ssh_config'),
    [
      'Host jump',
      '    HostName 127.0.0.1',
      `    Port ${jump.port}`,
      'Host node',
      '    HostName 127.0.0.1',
      `    Port ${target.port}`,
      '    ProxyJump jump',
      'Host *',
      `    User ${login}`,
      `    UserKnownHostsFile ${join(dir, 'known_hosts')}`,
      '    StrictHostKeyChecking yes',
      '    IdentitiesOnly yes',
      `    IdentityFile ${jump.userKey}`,
      '',
    ].join('\n'),
  )
  return { name: 'openssh', ssh: ['-F', join(dir, 'ssh_config'), ...clientOptions], host: `${login}@node`, nodePid: target.pid, hopPid: jump.pid }
}

/** The cipher the client and the node agreed on, from the client's verbose log (after the jump host's, on OpenSSH's path). */
function cipherOf(path: CopyPath): string {
  const log = spawnSync('ssh', ['-v', ...path.ssh, path.host, 'true'], { encoding: 'utf8' }).stderr
  const last = [...log.matchAll(/kex: server->client cipher: (\S+) MAC: (\S+)/g)].at(-1)
  return last ? `${last[1]}, MAC ${last[2]}` : 'unknown cipher'
}

const work = tempDir('warren-bench-copy-')
const source = join(work, 'source.bin')
const results = new Map<string, Sample[]>()
const loadAtStart = loadavg()[0]!
const paths: CopyPath[] = []
const notes: string[] = []

type CopyResult = Awaited<ReturnType<typeof copy>>

/** Copies `from` to `to` with scp on `path` and checks the file that arrived; MB/s and the CPU it cost per GB. */
async function copy(path: CopyPath, from: string, to: string, arrived: string, expected: string) {
  const node = new TreeCpu(path.nodePid)
  const hop = new TreeCpu(path.hopPid)
  const seconds = await timed('scp', ['-q', ...path.ssh, from, to])
  const nodeCpu = node.stop()
  const hopCpu = hop.stop()
  const digest = await sha256File(arrived)
  if (digest !== expected) throw new Error(`${path.name}: scp ${from} ${to} copied wrongly: sha256 ${digest}, the source has ${expected}`)
  const perGB = 1e9 / bytes
  return { seconds, mbPerSecond: bytes / 1e6 / seconds, nodeCpu: nodeCpu.total * perGB, nodeOwnCpu: nodeCpu.root * perGB, hopCpu: hopCpu.total * perGB }
}

/**
 * `count` round trips through an interactive session per path, interleaved
 * (`interleavedRoundTrips`), with the CPU per round trip of the node's tree and the hop's,
 * counted around each batch.
 */
async function interactiveLatency(order: CopyPath[], count: number) {
  const sessions = []
  for (const path of order) sessions.push({ path, session: await openInteractive([...path.ssh, path.host]), node: 0, hop: 0 })
  try {
    const times = await interleavedRoundTrips(sessions, count, async (measured, n) => {
      const node = new TreeCpu(measured.path.nodePid)
      const hop = new TreeCpu(measured.path.hopPid)
      const batch = await measured.session.roundTrips(n)
      measured.node += node.stop().total
      measured.hop += hop.stop().total
      return batch
    })
    return new Map(
      sessions.map(({ path, node, hop }, index) => [path, { latency: latencyOf(times[index]!), nodeRoundTripCpu: (node * 1e6) / count, hopRoundTripCpu: (hop * 1e6) / count }]),
    )
  } finally {
    for (const { session } of sessions) await session.close()
  }
}

try {
  process.stderr.write(`writing ${bytes} random bytes\n`)
  const expected = randomFile(source, bytes)
  const sftpServer = findSftpServer()!
  paths.push(await warrenPath(), await opensshPath(sftpServer))
  for (const path of paths) notes.push(`${path.name}: ${cipherOf(path)}`)
  notes.push(`both: ${sftpServer}, scp in its default (SFTP) mode, ${spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim()}`)
  if (values.fdpass) notes.push('warren: ssh talks to the proxy itself (--fdpass: a plain SSH stream, ProxyUseFdpass)')

  // One unmeasured pass first: JIT compilation of the agent and proxy, the page cache.
  for (const path of paths) {
    process.stderr.write(`warming up ${path.name}\n`)
    const warm = join(work, 'warm.bin')
    randomFile(warm, Math.min(bytes, 32 << 20))
    await timed('scp', ['-q', ...path.ssh, warm, `${path.host}:${join(remoteDir, 'warm.bin')}`])
    await interactiveRoundTrips([...path.ssh, path.host], 200)
    rmSync(join(remoteDir, 'warm.bin'))
  }
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 0 ? [...paths].reverse() : paths
    const copies = new Map<CopyPath, { up: CopyResult; down: CopyResult }>()
    for (const path of order) {
      const remote = join(remoteDir, `${path.name}.bin`)
      const back = join(work, `${path.name}.back`)
      const up = await copy(path, source, `${path.host}:${remote}`, remote, expected)
      const down = await copy(path, `${path.host}:${remote}`, back, back, expected)
      rmSync(remote)
      rmSync(back)
      copies.set(path, { up, down })
    }
    const interactive = await interactiveLatency(order, roundTripCount)
    for (const path of order) {
      const { up, down } = copies.get(path)!
      const { latency, nodeRoundTripCpu, hopRoundTripCpu } = interactive.get(path)!
      const sessions: number[] = []
      for (let i = 0; i < SESSIONS_PER_ROUND; i++) sessions.push(await timed('ssh', [...path.ssh, path.host, 'true']))
      const session = median(sessions)
      const net = (seconds: number) => bytes / 1e6 / (seconds - session)
      const sample: Sample = {
        toNode: up.mbPerSecond,
        fromNode: down.mbPerSecond,
        toNodeNet: net(up.seconds),
        fromNodeNet: net(down.seconds),
        nodeCpu: (up.nodeCpu + down.nodeCpu) / 2,
        nodeOwnCpu: (up.nodeOwnCpu + down.nodeOwnCpu) / 2,
        hopCpu: (up.hopCpu + down.hopCpu) / 2,
        latency,
        nodeRoundTripCpu,
        hopRoundTripCpu,
        session,
      }
      results.set(path.name, [...(results.get(path.name) ?? []), sample])
      process.stderr.write(
        `  ${path.name.padEnd(8)} to node ${up.mbPerSecond.toFixed(0).padStart(4)} MB/s  from node ${down.mbPerSecond.toFixed(0).padStart(4)} MB/s  p50 ${latency.p50Us.toFixed(0).padStart(5)} µs  p99 ${latency.p99Us.toFixed(0).padStart(5)} µs  session ${(sample.session * 1000).toFixed(0)} ms\n`,
      )
    }
    process.stderr.write(`round ${round}/${rounds} done\n`)
  }
} finally {
  await cleanup()
  rmSync(work, { recursive: true, force: true })
  rmSync(remoteDir, { recursive: true, force: true })
}

const rows = [...results].map(([name, samples]) => {
  const of = (pick: (sample: Sample) => number) => median(samples.map(pick))
  return {
    name,
    toNode: of((s) => s.toNode),
    fromNode: of((s) => s.fromNode),
    toNodeNet: of((s) => s.toNodeNet),
    fromNodeNet: of((s) => s.fromNodeNet),
    p50: of((s) => s.latency.p50Us),
    p99: of((s) => s.latency.p99Us),
    nodeCpu: of((s) => s.nodeCpu),
    nodeOwnCpu: of((s) => s.nodeOwnCpu),
    hopCpu: of((s) => s.hopCpu),
    nodeRoundTripCpu: of((s) => s.nodeRoundTripCpu),
    hopRoundTripCpu: of((s) => s.hopRoundTripCpu),
    session: of((s) => s.session),
  }
})
const warren = rows.find((row) => row.name === 'warren')!
const openssh = rows.find((row) => row.name === 'openssh')!
const size = bytes >= 1 << 30 ? `${bytes / 2 ** 30} GiB` : `${bytes / 2 ** 20} MiB`

console.log(
  `\n${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end; ${size} each way, ${roundTripCount} round trips of 64 B, median of ${rounds} rounds\n`,
)
console.log(
  formatTable(
    ['path', 'to node MB/s', 'net', 'from node MB/s', 'net', 'p50 µs', 'p99 µs', 'session ms', 'node CPU s/GB', 'hop CPU s/GB', 'node µs/RT', 'hop µs/RT'],
    rows.map((row) => [
      row.name,
      row.toNode.toFixed(0),
      row.toNodeNet.toFixed(0),
      row.fromNode.toFixed(0),
      row.fromNodeNet.toFixed(0),
      row.p50.toFixed(0),
      row.p99.toFixed(0),
      (row.session * 1000).toFixed(0),
      row.nodeCpu.toFixed(2),
      row.hopCpu.toFixed(2),
      row.nodeRoundTripCpu.toFixed(0),
      row.hopRoundTripCpu.toFixed(0),
    ]),
  ),
)
console.log(
  `\nnet: the round's session set-up (the median of ${SESSIONS_PER_ROUND} \`ssh node true\`) taken from each copy's time.\nnode CPU: warren is the agent and the sessions it ran (the agent alone ${warren.nodeOwnCpu.toFixed(2)} s/GB), openssh is sshd and its connection processes; sftp-server on both. hop: Warren's proxy, the jump sshd. µs/RT: CPU per interactive round trip (the p50's work).`,
)
for (const note of notes) console.log(note)

const ratio = (a: number, b: number) => (a / b).toFixed(2)
const verdict = (met: boolean) => (met ? 'PASS' : 'MISS')
console.log('\nWarren ÷ OpenSSH')
console.log(
  formatTable(
    ['figure', 'ratio', 'target', 'verdict'],
    [
      ['throughput to node', ratio(warren.toNode, openssh.toNode), '≥ 1.00', verdict(warren.toNode >= openssh.toNode)],
      ['throughput from node', ratio(warren.fromNode, openssh.fromNode), '≥ 1.00', verdict(warren.fromNode >= openssh.fromNode)],
      ['to node, session set-up excluded', ratio(warren.toNodeNet, openssh.toNodeNet), '—', ''],
      ['from node, session set-up excluded', ratio(warren.fromNodeNet, openssh.fromNodeNet), '—', ''],
      ['interactive p50', ratio(warren.p50, openssh.p50), '≤ 1.00', verdict(warren.p50 <= openssh.p50)],
      ['interactive p99', ratio(warren.p99, openssh.p99), '—', ''],
      ['session set-up', ratio(warren.session, openssh.session), '—', ''],
      ['node CPU per GB', ratio(warren.nodeCpu, openssh.nodeCpu), '—', ''],
    ],
  ),
)
if (profileDir) {
  const profiled = paths.find((path) => path.name === 'warren')!
  console.log(`\n${formatSummary('proxy (warren start --roles=proxy)', summariseProfiles(profilesOf(profileDir, profiled.hopPid), 25))}`)
  console.log(`\n${formatSummary('agent (warren start --roles=node)', summariseProfiles(profilesOf(profileDir, profiled.nodePid), 25))}`)
}
