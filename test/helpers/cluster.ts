// Real processes for tests that cross roles: an auth server started with `warren start`,
// warrenctl invocations, and node agents, each in its own temporary data dir.

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { onExit } from 'signal-exit'
import { loadConfigFile } from '../../shared/config.ts'
import { WARREN_EXEC_ARGV } from '../../shared/heap-tuning.ts'
import type { WarrenStatus } from '../../shared/status.ts'
import { readStatus, statusSocketPath } from '../../shared/status-socket.ts'

export const ROOT = resolve(import.meta.dirname, '../..')
const WARREN = join(ROOT, 'cli/warren.ts')
const WARRENCTL = join(ROOT, 'cli/warrenctl.ts')

const runningDaemons = new Set<ChildProcess>()
/** The throwaway login testLogin() made, if it made one. */
let createdLogin: string | undefined
const tempDirs: string[] = []

/**
 * What a test process leaves behind goes when it exits: daemons first, then the login and
 * the directories. signal-exit runs this also when tap ends the process on a timeout (a
 * signal, which skips teardowns and `process.on('exit')`); a daemon left running would hold
 * its ports and CPU through the rest of the run.
 */
onExit(() => {
  for (const child of runningDaemons) child.kill('SIGKILL')
  if (createdLogin) {
    spawnSync('pkill', ['-KILL', '-u', createdLogin])
    // --force: the processes just killed may not be gone yet, and plain userdel refuses then.
    spawnSync('userdel', ['--force', '--remove', createdLogin])
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

/** A fresh directory, removed when the test process exits. */
export function tempDir(prefix = 'warren-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/**
 * Puts `warren` on PATH for this process and every process it starts: the ssh_config that
 * `warrenctl auth sign` writes runs `warren` from PATH, as it would on a user's machine.
 * This one runs the checkout's warren with the Node running the tests, and with the Node
 * options the single executable embeds (a ProxyCommand is what `bench:ssh` measures).
 */
function putWarrenOnPath(): void {
  const dir = tempDir('warren-bin-')
  chmodSync(dir, 0o755)
  writeFileSync(join(dir, 'warren'), `#!/bin/sh\nexec '${process.execPath}' ${WARREN_EXEC_ARGV.join(' ')} '${WARREN}' "$@"\n`, { mode: 0o755 })
  process.env.PATH = `${dir}:${process.env.PATH ?? ''}`
}
putWarrenOnPath()

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to completion with Node 24 (the one running the tests). */
export function run(script: string, args: string[], options: { env?: Record<string, string>; timeoutMs?: number; netns?: string; input?: string } = {}): Promise<RunResult> {
  const [command, argv] = options.netns ? ['ip', ['netns', 'exec', options.netns, process.execPath, script, ...args]] : [process.execPath, [script, ...args]]
  return new Promise((resolvePromise) => {
    const child = execFile(command, argv, { env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
      resolvePromise({ code, stdout, stderr })
    })
    child.stdin?.end(options.input ?? '')
  })
}

export function warren(args: string[], options?: { env?: Record<string, string>; timeoutMs?: number; input?: string }): Promise<RunResult> {
  return run(WARREN, args, options)
}

/** warrenctl against the auth server whose data dir (and admin identity) is `dataDir`. */
export function ctl(dataDir: string, args: string[], netns?: string): Promise<RunResult> {
  return run(WARRENCTL, [...args, `--data-dir=${dataDir}`], { netns })
}

/** YAML that makes a daemon log JSON (for logEntries), at the end of a config. */
export const JSON_LOGS = 'log: { format: json }\n'

/** The entries of a JSON log (JSON_LOGS) whose fields include all of `fields`. */
export function logEntries(stderr: string, fields: Record<string, unknown> = {}): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] = []
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      entries.push(JSON.parse(line))
    } catch {
      // a line cut off by the end of the output read so far
    }
  }
  return entries.filter((entry) => Object.entries(fields).every(([key, value]) => entry[key] === value))
}

/** The data dir a `warren start` command line runs with: --data-dir, else its config's data_dir. */
function dataDirOf(args: string[]): string | undefined {
  const flag = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
  const dataDir = flag('data-dir')
  if (dataDir !== undefined) return dataDir
  const config = flag('config')
  try {
    return config === undefined ? undefined : loadConfigFile(config).dataDir
  } catch {
    return undefined // a test of a config that does not load
  }
}

export class Daemon {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  readonly exited: Promise<number | null>
  /** Where its status socket is (`warren start` only). */
  readonly dataDir?: string

  /** `launcher`: a command that ends by exec'ing the rest of its arguments (`unshare --mount …`), for the process to run under. */
  constructor(args: string[], env: Record<string, string> = {}, netns?: string, launcher: string[] = []) {
    if (args[0] === 'start') this.dataDir = dataDirOf(args)
    const launched = [...launcher, process.execPath, WARREN, ...args]
    const [command, ...argv] = netns ? ['ip', 'netns', 'exec', netns, ...launched] : launched
    this.child = spawn(command, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    runningDaemons.add(this.child)
    this.child.once('exit', () => runningDaemons.delete(this.child))
    this.child.stdout!.on('data', (d) => (this.stdout += d))
    this.child.stderr!.on('data', (d) => (this.stderr += d))
    this.exited = new Promise((r) => this.child.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))))
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Waits until `predicate` holds, failing early (with the logs) if the process exits. */
  async waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await predicate()) return
      if (!this.running) throw new Error(`process exited (${this.child.exitCode ?? this.child.signalCode}) while waiting for ${what}\n${this.stderr}`)
      await sleep(50)
    }
    throw new Error(`timed out waiting for ${what}\n${this.stderr}`)
  }

  /** What the process reports on its status socket now (`warren status --format=json`). */
  status(): Promise<WarrenStatus> {
    if (this.dataDir === undefined) return Promise.reject(new Error('not a warren start with a known data dir'))
    return readStatus<WarrenStatus>(statusSocketPath(this.dataDir))
  }

  /** Waits until the process's status satisfies `predicate`, and returns that status. */
  async waitForStatus(what: string, predicate: (status: WarrenStatus) => boolean, timeoutMs = 20_000): Promise<WarrenStatus> {
    let last: WarrenStatus | undefined
    await this.waitFor(
      what,
      async () => {
        // Nothing answers while the process starts, or replaces its image after joining.
        last = await this.status().catch(() => undefined)
        return last !== undefined && predicate(last)
      },
      timeoutMs,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nlast status: ${JSON.stringify(last)}`)
    })
    return last!
  }

  /** The entries of a JSON log (WARREN_LOG_FORMAT=json, or `log: { format: json }`). */
  logEntries(): Record<string, unknown>[] {
    return this.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  }

  /**
   * Sends `signal` and waits for the exit. A daemon still running a minute later (a stop that
   * hangs: systemd would kill it at 90 s) is killed, and the stop fails naming it, with its
   * last log lines.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.running) this.child.kill(signal)
    let timer: NodeJS.Timeout | undefined
    const hung = new Promise<'hung'>((resolve) => {
      timer = setTimeout(() => resolve('hung'), STOP_DEADLINE_MS)
    })
    const outcome = await Promise.race([this.exited, hung])
    clearTimeout(timer)
    if (outcome !== 'hung') return
    this.child.kill('SIGKILL')
    await this.exited
    throw new Error(`${this.child.spawnargs.slice(1).join(' ')} did not exit within ${STOP_DEADLINE_MS} ms of ${signal}; its last log lines:\n${this.stderr.slice(-4000)}`)
  }
}

/** How long a daemon may take to exit after a stop signal before the stop fails. */
const STOP_DEADLINE_MS = 60_000

export interface AuthOptions {
  dataDir?: string
  /** Run the auth server (and warrenctl) inside this network namespace. */
  netns?: string
  /** Address to listen on (default 127.0.0.1). */
  host?: string
  /** Extra YAML for the auth_service section (indented by the caller as YAML lines). */
  authServiceYaml?: string
  /** Extra environment of the auth server's process (libfaketime, say). */
  env?: Record<string, string>
  clusterName?: string
  port?: number
  /** diag_addr: serve /metrics, /healthz and /readyz here. */
  diagAddr?: string
}

/** An auth server on 127.0.0.1 with a fresh (or given) data dir. */
export class AuthProcess {
  readonly netns?: string
  readonly dataDir: string
  readonly configPath: string
  readonly env: Record<string, string>
  daemon!: Daemon
  address = ''

  constructor(options: AuthOptions = {}) {
    this.dataDir = options.dataDir ?? tempDir()
    this.netns = options.netns
    this.env = options.env ?? {}
    this.configPath = join(this.dataDir, 'warren.yaml')
    writeFileSync(
      this.configPath,
      [
        'version: v1',
        `data_dir: ${this.dataDir}`,
        ...(options.diagAddr ? [`diag_addr: ${options.diagAddr}`] : []),
        'auth_service:',
        '  enabled: true',
        `  listen_addr: ${options.host ?? '127.0.0.1'}:${options.port ?? 0}`,
        `  cluster_name: ${options.clusterName ?? 'test-cluster'}`,
        options.authServiceYaml ?? '',
      ].join('\n'),
    )
  }

  get identityPath(): string {
    return join(this.dataDir, 'admin', 'identity.json')
  }

  async start(): Promise<this> {
    rmSync(this.identityPath, { force: true })
    this.daemon = new Daemon(['start', '--roles=auth', `--config=${this.configPath}`], this.env, this.netns)
    await this.daemon.waitFor('the auth server', () => existsSync(this.identityPath))
    this.address = JSON.parse(readFileSync(this.identityPath, 'utf8')).auth_server
    return this
  }

  /** Calls the admin API directly with the admin identity. */
  async api<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const { ApiClient } = await import('../../shared/api-client.ts')
    const identity = JSON.parse(readFileSync(this.identityPath, 'utf8'))
    const client = new ApiClient({ server: this.address, caPems: identity.host_ca_certs, certPem: identity.cert, keyPem: identity.key })
    try {
      return await client.request<T>(method, path, body)
    } finally {
      await client.close()
    }
  }

  ctl(args: string[]): Promise<RunResult> {
    return ctl(this.dataDir, args, this.netns)
  }

  /** `warrenctl create -f -` of `yaml` (a role); throws with its error when refused. */
  async create(yaml: string): Promise<void> {
    const created = await run(WARRENCTL, ['create', '-f', '-', `--data-dir=${this.dataDir}`], { netns: this.netns, input: yaml })
    if (created.code !== 0) throw new Error(`warrenctl create: ${created.stderr}`)
  }

  /** The CA pin as `warrenctl status` prints it. */
  async pin(): Promise<string> {
    const status = await this.ctl(['status'])
    const match = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(status.stdout)
    if (!match) throw new Error(`no pin in status output: ${status.stdout}${status.stderr}`)
    return match[1]
  }

  /** Creates a token through warrenctl and returns its value. */
  async token(args: string[] = ['nodes', 'add']): Promise<string> {
    const result = await this.ctl(args)
    const match = /The invite token: (\S+)/.exec(result.stdout)
    if (!match) throw new Error(`no token in output: ${result.stdout}${result.stderr}`)
    return match[1]
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.daemon?.stop(signal)
  }
}

let loopbackNodeConfig: string | undefined

/**
 * Starts a node agent; resolves once it has joined (its identity is on disk) or exited. A
 * node that joins an auth server directly serves proxies on ssh_service.listen_addr
 * (0.0.0.0:3022 by default): without a config of its own it gets a free port on loopback,
 * so that the direct nodes of tests running side by side never compete for one port.
 */
export function startNode(args: string[], env?: Record<string, string>, netns?: string): Daemon {
  if (!args.some((arg) => arg.startsWith('--config='))) {
    loopbackNodeConfig ??= join(tempDir(), 'node.yaml')
    writeFileSync(loopbackNodeConfig, 'ssh_service:\n  listen_addr: 127.0.0.1:0\n')
    args = [`--config=${loopbackNodeConfig}`, ...args]
  }
  return new Daemon(['start', '--roles=node', ...args], env, netns)
}

export async function waitForNode(auth: { ctl(args: string[]): Promise<RunResult> }, nodename: string, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    last = (await auth.ctl(['nodes', 'ls'])).stdout
    if (last.split('\n').some((line) => line.startsWith(nodename + ' '))) return last
    await sleep(200)
  }
  throw new Error(`node ${nodename} did not appear in nodes ls:\n${last}`)
}

/** A TCP port that was free a moment ago, for servers that must keep their port across restarts. */
/**
 * A port free now on 127.0.0.1, for a process started later. Picked below Linux's ephemeral
 * range (32768-60999): a port the kernel hands out there can be taken meanwhile as the source
 * port of any outgoing connection, and the later listen then fails with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  for (let tries = 0; ; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((resolveFree) => {
      const server = createServer()
      server.once('error', () => resolveFree(false))
      server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)))
    })
    if (free) return port
    if (tries === 50) throw new Error('no free port found between 20000 and 32000')
  }
}

export interface ProxyOptions {
  auth: AuthProcess
  token: string
  pin: string
  /** Defaults: web and tunnel on separate free ports of 127.0.0.1. */
  webListenAddr?: string
  tunnelListenAddr?: string
  extraYaml?: string
  dataDir?: string
  nodename?: string
  env?: Record<string, string>
  /** Run inside a network namespace (NAT tests). */
  netns?: string
  /** Log at debug level (the default here: tests read debug lines); false keeps the daemon's default level. */
  debug?: boolean
  /** diag_addr: serve /metrics, /healthz and /readyz here. */
  diagAddr?: string
}

/** A proxy process joined to `auth`; `web` and `tunnel` are its bound addresses. */
export class ProxyProcess {
  readonly dataDir: string
  readonly configPath: string
  daemon!: Daemon
  web = ''
  tunnel = ''
  private readonly options: ProxyOptions

  constructor(options: ProxyOptions) {
    this.options = options
    this.dataDir = options.dataDir ?? tempDir()
    this.configPath = join(this.dataDir, 'warren.yaml')
  }

  async start(): Promise<this> {
    const options = this.options
    // Separate free ports unless told otherwise ("127.0.0.1:0" twice would mean one shared port).
    const web = options.webListenAddr ?? `127.0.0.1:${await freePort()}`
    const tunnel = options.tunnelListenAddr ?? `127.0.0.1:${await freePort()}`
    writeFileSync(
      this.configPath,
      [
        'version: v1',
        `data_dir: ${this.dataDir}`,
        `nodename: ${options.nodename ?? 'proxy'}`,
        `auth_servers: ["${options.auth.address}"]`,
        `auth_token: ${options.token}`,
        `ca_pin: ${options.pin}`,
        ...(options.diagAddr ? [`diag_addr: ${options.diagAddr}`] : []),
        'proxy_service:',
        '  enabled: true',
        `  web_listen_addr: ${web}`,
        `  tunnel_listen_addr: ${tunnel}`,
        options.extraYaml ?? '',
      ].join('\n'),
    )
    const debug = options.debug === false ? [] : ['--debug']
    this.daemon = new Daemon(['start', '--roles=proxy', `--config=${this.configPath}`, ...debug], this.options.env, this.options.netns)
    const { listen } = (await this.daemon.waitForStatus('the proxy to listen', (status) => status.proxy !== undefined)).proxy!
    this.web = listen.web
    this.tunnel = listen.tunnel
    return this
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.daemon?.stop(signal)
  }
}

/** An auth server and one proxy joined to it, both stopped when `t` ends; `pin` is the CA pin. */
export async function authAndProxy(
  t: { teardown(fn: () => unknown): void },
  proxyOptions: Partial<Omit<ProxyOptions, 'auth' | 'token' | 'pin'>> = {},
): Promise<{ auth: AuthProcess; pin: string; proxy: ProxyProcess }> {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ ...proxyOptions, auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  return { auth, pin, proxy }
}

/**
 * `count` proxies whose tunnel ports sit behind a load balancer at `balancer` (host:port):
 * agents are told to dial it, and the proxies believe PROXY headers from 127.0.0.1. Each
 * keeps its tunnel port across restarts, so the balancer's configuration stays right.
 */
export async function proxiesBehindBalancer(
  auth: AuthProcess,
  pin: string,
  count: number,
  balancer: string,
  env?: Record<string, string>,
  debug = true,
  extraYaml = '',
): Promise<ProxyProcess[]> {
  const proxies: ProxyProcess[] = []
  for (let i = 0; i < count; i++) {
    const proxy = new ProxyProcess({
      auth,
      token: await auth.token(['tokens', 'add', '--type=proxy']),
      pin,
      nodename: `proxy-${i}`,
      tunnelListenAddr: `127.0.0.1:${await freePort()}`,
      extraYaml: `  tunnel_public_addr: ["${balancer}"]\n  trusted_load_balancers: ["127.0.0.1"]\n${extraYaml}`,
      env,
      debug,
    })
    proxies.push(await proxy.start())
  }
  return proxies
}

/** `ssh` (OpenSSH) with the config that `warrenctl auth sign --format=openssh` wrote. */
export function openssh(profileDir: string, args: string[], options: { timeoutMs?: number; input?: string; netns?: string } = {}): Promise<RunResult> {
  const sshArgs = ['-F', join(profileDir, 'ssh_config'), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', ...args]
  const [command, argv] = options.netns ? ['ip', ['netns', 'exec', options.netns, 'ssh', ...sshArgs]] : ['ssh', sshArgs]
  return new Promise((resolvePromise) => {
    const child = execFile(command, argv, { timeout: options.timeoutMs ?? 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 255) : 0
      resolvePromise({ code, stdout, stderr })
    })
    child.stdin?.end(options.input ?? '')
  })
}

let throwawayLogin: string | undefined

/**
 * The OS login that test SSH sessions use: a throwaway account with a plain /bin/sh,
 * created once per test process and removed at exit (this machine's root startup files
 * are not under test, and can stall shells that many parallel tests start at once).
 */
export function testLogin(): string {
  if (throwawayLogin) return throwawayLogin
  if (process.getuid?.() !== 0) return (throwawayLogin = userInfo().username)
  createdLogin = createThrowawayLogin()
  return (throwawayLogin = createdLogin)
}

/** A new login named after this process, past any that an earlier process of the same PID left. */
function createThrowawayLogin(): string {
  for (let attempt = 0; ; attempt++) {
    const name = `wt${process.pid}${attempt ? `x${attempt}` : ''}`
    const made = spawnSync('useradd', ['--create-home', '--shell', '/bin/sh', name], { encoding: 'utf8' })
    if (made.status === 0) return name
    // useradd's 9 is "name in use": a killed test process can leave its login behind.
    if (made.status !== 9 || attempt === 20) throw new Error(`useradd ${name} failed: ${made.stderr.trim()}`)
  }
}

/** A user allowed to log in as testLogin() (or `logins`), with OpenSSH credentials in a fresh directory. */
export async function signUser(auth: AuthProcess, proxyWeb: string, name = 'alice', roles?: string, logins = testLogin()): Promise<string> {
  const added = await auth.ctl(['users', 'add', name, `--logins=${logins}`, ...(roles ? [`--roles=${roles}`] : [])])
  // Without roles the user may exist already (a test signing again); with them, it must be new.
  if (roles && added.code !== 0) throw new Error(`users add: ${added.stderr}`)
  const dir = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', `--user=${name}`, '--ttl=1h', `--out=${dir}`, '--format=openssh', `--proxy=${proxyWeb}`])
  if (signed.code !== 0) throw new Error(`auth sign failed: ${signed.stderr}`)
  return dir
}
