// What the single executable costs a device: the files' sizes (plain and gzip -9), the
// time from `warren start` to a live tunnel on loopback, and the agent's resident memory
// idle with one tunnel and with many SSH sessions open through it. The agent is
// dist/warren-linux-x64 itself, started as its systemd unit starts it: with a config file
// and the unit's environment (one figure without that environment, as started by hand);
// the auth server and the proxy run from source.
//
//   npm run package && node bench/agent-footprint.ts [--sessions=100 --starts=5 --idle=300] [--diag]
//
// --diag starts the agent with diag_addr (--diag-addr) and scrapes its /metrics, as a
// Prometheus would, before each idle figure. The restarted agent then idles for --idle
// seconds with its VmRSS read every 15 s (and /metrics scraped then, with --diag: a common
// Prometheus scrape interval): an agent's memory settles only after its first garbage
// collections, which an idle agent runs minutes after it started, and every scrape brings on.
//
// Baselines in the same run: the executable printing its version (start-up alone), and a
// bare Node 24 process at rest (`node -e` with a timer). The sessions log in as the tests'
// throwaway login (shell /bin/sh), so that root's shell startup files stay out of it.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { copyFileSync, createReadStream, existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { createGzip, constants as zlib } from 'node:zlib'
import { defaultSshLimits } from '../agent/ssh-server.ts'
import { NODE_UNIT } from '../packaging/systemd/units.ts'
import { AuthProcess, freePort, ProxyProcess, ROOT, tempDir, testLogin } from '../test/helpers/cluster.ts'

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '100' },
    starts: { type: 'string', default: '5' },
    idle: { type: 'string', default: '300' },
    diag: { type: 'boolean', default: false },
  },
})
const SESSIONS = Number(values.sessions)
/** Sessions each user opens: as many as the node's default max_connections_per_user allows. */
const SESSIONS_PER_USER = defaultSshLimits.maxConnectionsPerUser
const STARTS = Number(values.starts)
const IDLE_SECONDS = Number(values.idle)
/** How often the long idle reads VmRSS (and with --diag scrapes /metrics): Prometheus's common scrape interval. */
const SCRAPE_INTERVAL_S = 15
const BUILT = join(ROOT, 'dist/warren-linux-x64')
const TUNNEL_OPEN = /tunnel to proxy \S+ open/
if (!existsSync(BUILT)) {
  console.error('dist/warren-linux-x64 is missing: run "npm run package" first')
  process.exit(1)
}

/**
 * The environment systemd gives the agent, as on a device: the service manager's default PATH
 * and the unit's `Environment=` lines, nothing of this shell's. A variable from here would
 * change what is measured (NODE_EXTRA_CA_CERTS, which some machines set, makes Node parse
 * that file's certificates at start-up and hold them: 0.4 MB).
 */
const UNIT_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  ...Object.fromEntries([...NODE_UNIT.matchAll(/^Environment=([^=\s]+)=(\S*)$/gm)].map(([, name, value]) => [name, value])),
}

const MB = 1e6
const mb = (bytes: number) => (bytes / MB).toFixed(1)

// ---- Sizes ---------------------------------------------------------------------------------

for (const arch of ['x64', 'arm64']) {
  const file = join(ROOT, `dist/warren-linux-${arch}`)
  if (!existsSync(file)) continue
  const gnu = await gnuGzipSize(file)
  console.log(
    `size warren-linux-${arch}: ${mb(statSync(file).size)} MB, gzip -9 ${mb(await gzipSize(file))} MB (Node's zlib)${gnu === undefined ? '' : `, ${mb(gnu)} MB (the gzip command)`}`,
  )
}

// ---- Start-up, tunnel, memory --------------------------------------------------------------

const auth = await new AuthProcess().start()
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
const running: ChildProcess[] = []
// Installed as a device would have it: a copy, and the same file under the name warrenctl.
const bin = tempDir('warren-bin-')
const BINARY = join(bin, 'warren')
copyFileSync(BUILT, BINARY)
symlinkSync('warren', join(bin, 'warrenctl'))
const login = testLogin()
try {
  const versionMs: number[] = []
  for (let i = 0; i < STARTS; i++) versionMs.push(await timeToExit(BINARY, ['version']))
  console.log(`baseline: the executable prints its version in ${median(versionMs).toFixed(0)} ms (median of ${STARTS})`)
  console.log(`baseline: a bare Node ${process.version} at rest holds ${mb(await restingNodeRss())} MB resident`)
  console.log(`baseline: Node with the built-in modules an agent loads, one key made, at rest: ${await nodeWithAgentBuiltins()}`)

  const dataDir = tempDir()
  const diagAddr = values.diag ? `127.0.0.1:${await freePort()}` : undefined
  // As its systemd unit runs it: `warren start --config=FILE`, with the keys `warren install` writes.
  const config = join(tempDir('warren-etc-'), 'warren.yaml')
  writeFileSync(
    config,
    [
      'version: v1',
      'nodename: footprint',
      `data_dir: ${dataDir}`,
      `ca_pin: ${pin}`,
      `auth_servers: ["${proxy.web}"]`,
      'labels:',
      '  env: bench',
      ...(diagAddr ? [`diag_addr: ${diagAddr}`] : []),
      '',
    ].join('\n'),
  )
  const args = ['start', `--config=${config}`]
  if (diagAddr) console.log(`diag_addr on: ${diagAddr}, /metrics scraped before each idle figure`)
  /** With --diag, `times` scrapes of /metrics, one after the other (three, as a Prometheus makes every scrape interval). */
  const scrape = async (times = 3) => {
    if (!diagAddr) return
    for (let i = 0; i < times; i++) await (await fetch(`http://${diagAddr}/metrics`)).text()
  }
  const first = await startAgent([...args, `--token=${await auth.token()}`])
  console.log(`first start (join, then tunnel): ${first.ms.toFixed(0)} ms (${first.cpuMs} ms of CPU)`)
  await sleep(5_000)
  await scrape()
  console.log(`agent idle with one tunnel after its first start (joined, then continued as a fresh image): ${describeMemory(first.child.pid!)}`)
  await stop(first.child)
  const restarts: number[] = []
  const restartCpu: number[] = []
  let agent = first
  for (let i = 0; i < STARTS; i++) {
    agent = await startAgent(args)
    restarts.push(agent.ms)
    restartCpu.push(agent.cpuMs)
    if (i < STARTS - 1) await stop(agent.child)
  }
  console.log(
    `restart (identity on disk) to a live tunnel: median ${median(restarts).toFixed(0)} ms (${median(restartCpu)} ms of CPU), runs ${restarts.map((ms) => ms.toFixed(0)).join(', ')}`,
  )

  await sleep(5_000)
  await scrape()
  console.log(`agent idle with one tunnel (restarted, identity on disk): ${describeMemory(agent.child.pid!)}`)
  if (IDLE_SECONDS > 0) {
    const samples: number[] = []
    const startedAt = performance.now()
    for (let at = 0; at <= IDLE_SECONDS; at += SCRAPE_INTERVAL_S) {
      await sleep(Math.max(0, startedAt + at * 1000 - performance.now()))
      await scrape(1)
      samples.push(memory(agent.child.pid!).rss)
    }
    console.log(
      `agent idle for ${IDLE_SECONDS} s more, VmRSS read every ${SCRAPE_INTERVAL_S} s${diagAddr ? ' just after a scrape of /metrics' : ''}: ` +
        `first ${mb(samples[0]!)} MB, highest ${mb(Math.max(...samples))} MB, last ${mb(samples.at(-1)!)} MB (${describeMemory(agent.child.pid!)})`,
    )
  }

  // Users' credentials from the executable itself, so that each ssh's ProxyCommand is the executable too.
  // The sessions are spread over users: one user may hold only so many connections to a node
  // (ssh_service.limits.max_connections_per_user).
  const profiles: string[] = []
  for (let i = 0; i < Math.ceil(SESSIONS / SESSIONS_PER_USER); i++) {
    await auth.ctl(['users', 'add', `bench${i}`, `--logins=${login}`])
    const profile = tempDir('warren-user-')
    await runFile(join(bin, 'warrenctl'), ['auth', 'sign', `--user=bench${i}`, `--out=${profile}`, '--format=openssh', `--proxy=${proxy.web}`, `--data-dir=${auth.dataDir}`])
    profiles.push(profile)
  }
  const openedAt = performance.now()
  const clients = await openSessions(profiles, login, SESSIONS)
  console.log(`${SESSIONS} SSH sessions open through the tunnel in ${((performance.now() - openedAt) / 1000).toFixed(1)} s`)
  await sleep(2_000)
  console.log(`agent with ${SESSIONS} sessions: ${describeMemory(agent.child.pid!)}`)
  for (const client of clients) client.kill('SIGTERM')
  await sleep(5_000)
  console.log(`agent after they closed: ${describeMemory(agent.child.pid!)}`)
  await stop(agent.child)

  // As after a reboot: the executable's pages come from disk again, not from the page cache
  // that copying it filled. How many of them the process maps depends on which of the two.
  if (dropPageCache()) {
    agent = await startAgent(args)
    await sleep(5_000)
    await scrape()
    console.log(`agent idle with one tunnel, started with the page cache dropped (as after a reboot): ${describeMemory(agent.child.pid!)}`)
    await stop(agent.child)
  } else {
    console.log('agent idle after a reboot: not measured, dropping the page cache needs root')
  }
  // Started by hand: with this shell's environment instead of the unit's.
  agent = await startAgent(args, process.env)
  await sleep(5_000)
  await scrape()
  console.log(
    `agent idle with one tunnel, started by hand with this shell's environment (${Object.keys(UNIT_ENV)
      .filter((name) => process.env[name] === undefined)
      .join(', ')} unset): ${describeMemory(agent.child.pid!)}`,
  )
  await stop(agent.child)
} finally {
  for (const child of running) child.kill('SIGKILL')
  await proxy.stop()
  await auth.stop()
}

// ---- Helpers -------------------------------------------------------------------------------

async function gzipSize(file: string): Promise<number> {
  let bytes = 0
  const gzip = createGzip({ level: zlib.Z_BEST_COMPRESSION })
  gzip.on('data', (chunk: Buffer) => (bytes += chunk.length))
  await pipeline(createReadStream(file), gzip)
  return bytes
}

/** What `gzip -9` (GNU gzip, whose deflate differs from Node's zlib) makes of `file`; undefined without it. */
function gnuGzipSize(file: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let bytes = 0
    const gzip = spawn('gzip', ['-9', '-c', file], { stdio: ['ignore', 'pipe', 'ignore'] })
    gzip.stdout!.on('data', (chunk: Buffer) => (bytes += chunk.length))
    gzip.once('error', () => resolve(undefined))
    gzip.once('close', (code) => resolve(code === 0 ? bytes : undefined))
  })
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** VmRSS, and how much of it is the mapped executable (RssFile) against the heap (RssAnon). */
function memory(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kB('VmRSS'), anon: kB('RssAnon'), file: kB('RssFile') }
}

function describeMemory(pid: number): string {
  const { rss, anon, file } = memory(pid)
  // The KiB that /proc reports as well: the budget is close enough for a tenth of a MB to matter.
  return `VmRSS ${mb(rss)} MB, ${Math.round(rss / 1024)} KiB (anonymous ${mb(anon)} MB, file-backed ${mb(file)} MB)`
}

function timeToExit(file: string, args: string[]): Promise<number> {
  const started = performance.now()
  return runFile(file, args).then(() => performance.now() - started)
}

function runFile(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 30_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${file} ${args.join(' ')}: ${stderr}`)) : resolve(stdout)))
  })
}

async function restingNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  await sleep(3_000)
  const { rss } = memory(child.pid!)
  await stop(child)
  return rss
}

/** The floor under the agent: Node itself once it has loaded what an idle, restarted agent uses of it. */
async function nodeWithAgentBuiltins(): Promise<string> {
  const builtins = ['tls', 'crypto', 'net', 'dns', 'stream', 'os', 'v8', 'vm']
  const script = `for (const m of ${JSON.stringify(builtins)}) require(m); require('crypto').generateKeyPairSync('ed25519'); setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' })
  await sleep(3_000)
  const described = describeMemory(child.pid!)
  await stop(child)
  return described
}

/** CPU time (user + system) a process has used so far; /proc counts in ticks of 10 ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Spawns the agent; resolves once it logs its tunnel open, with the time (and CPU time) that took. */
function startAgent(args: string[], env = UNIT_ENV): Promise<{ child: ChildProcess; ms: number; cpuMs: number }> {
  const started = performance.now()
  const child = spawn(BINARY, args, { stdio: ['ignore', 'ignore', 'pipe'], env })
  running.push(child)
  let log = ''
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (chunk) => {
      log += chunk
      if (TUNNEL_OPEN.test(log)) {
        child.stderr!.removeAllListeners('data')
        child.stderr!.resume()
        resolve({ child, ms: performance.now() - started, cpuMs: cpuMs(child.pid!) })
      }
    })
    child.once('exit', (code) => reject(new Error(`the agent exited (${code}) before its tunnel opened:\n${log}`)))
  })
}

/** `count` OpenSSH sessions, SESSIONS_PER_USER for each profile in turn, that each print "up" and then sleep; resolves when all are up. */
async function openSessions(profiles: string[], login: string, count: number): Promise<ChildProcess[]> {
  const clients: ChildProcess[] = []
  const open = (index: number) =>
    new Promise<ChildProcess>((resolve, reject) => {
      const profile = profiles[Math.floor(index / SESSIONS_PER_USER)]!
      const child = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@footprint`, 'echo up; exec sleep 600'], { stdio: ['ignore', 'pipe', 'pipe'] })
      running.push(child)
      let err = ''
      child.stderr!.on('data', (d) => (err += d))
      child.stdout!.once('data', () => resolve(child))
      child.once('exit', (code) => reject(new Error(`an ssh session ended (${code}) before it was up: ${err}`)))
    })
  // A few at a time, as users arrive: each ssh starts its own ProxyCommand process.
  const batch = 10
  for (let i = 0; i < count; i += batch) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, j) => open(i + j)))))
  }
  return clients
}

/** Empties the kernel's page cache (clean pages only; root only); false where not allowed. */
function dropPageCache(): boolean {
  try {
    execFileSync('sync')
    writeFileSync('/proc/sys/vm/drop_caches', '1')
    return true
  } catch {
    return false
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}
