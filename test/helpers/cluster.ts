// Real processes for tests that cross roles: an auth server started with `warren start`,
// warrenctl invocations, and node agents, each in its own temporary data dir.

import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const ROOT = resolve(import.meta.dirname, '../..')
const WARREN = join(ROOT, 'cli/warren.ts')
const WARRENCTL = join(ROOT, 'cli/warrenctl.ts')

export function tempDir(prefix = 'warren-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to completion with Node 24 (the one running the tests). */
export function run(script: string, args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [script, ...args], { env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
      resolvePromise({ code, stdout, stderr })
    })
  })
}

export function warren(args: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult> {
  return run(WARREN, args, options)
}

/** warrenctl against the auth server whose data dir (and admin identity) is `dataDir`. */
export function ctl(dataDir: string, args: string[]): Promise<RunResult> {
  return run(WARRENCTL, [...args, `--data-dir=${dataDir}`])
}

export class Daemon {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  readonly exited: Promise<number | null>

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [WARREN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
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

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.running) this.child.kill(signal)
    await this.exited
  }
}

export interface AuthOptions {
  dataDir?: string
  /** Extra YAML for the auth_service section (indented by the caller as YAML lines). */
  authServiceYaml?: string
  clusterName?: string
  port?: number
}

/** An auth server on 127.0.0.1 with a fresh (or given) data dir. */
export class AuthProcess {
  readonly dataDir: string
  readonly configPath: string
  daemon!: Daemon
  address = ''

  constructor(options: AuthOptions = {}) {
    this.dataDir = options.dataDir ?? tempDir()
    this.configPath = join(this.dataDir, 'warren.yaml')
    writeFileSync(this.configPath, [
      'version: v1',
      `data_dir: ${this.dataDir}`,
      'auth_service:',
      '  enabled: true',
      `  listen_addr: 127.0.0.1:${options.port ?? 0}`,
      `  cluster_name: ${options.clusterName ?? 'test-cluster'}`,
      options.authServiceYaml ?? '',
    ].join('\n'))
  }

  get identityPath(): string {
    return join(this.dataDir, 'admin', 'identity.json')
  }

  async start(): Promise<this> {
    rmSync(this.identityPath, { force: true })
    this.daemon = new Daemon(['start', '--roles=auth', `--config=${this.configPath}`])
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
      return await client.call<T>(method, path, body)
    } finally {
      await client.close()
    }
  }

  ctl(args: string[]): Promise<RunResult> {
    return ctl(this.dataDir, args)
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

/** Starts a node agent; resolves once it has joined (its identity is on disk) or exited. */
export function startNode(args: string[], env?: Record<string, string>): Daemon {
  return new Daemon(['start', '--roles=node', ...args], env)
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
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolvePort(port))
    })
  })
}
