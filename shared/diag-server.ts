// The diagnostics endpoint of a `warren start` process (`diag_addr`, off by default): plain
// HTTP, meant for loopback or a monitoring network, holding nothing secret.
//   GET /metrics  Prometheus text format: the roles' series, build info, process CPU and memory
//   GET /healthz  200 while the process runs
//   GET /readyz   200 when every role is ready, else 503 and what each role is missing
// One registry per process (shared/metrics-text.ts: the text format without prom-client, so
// an agent with diag_addr stays small); each role adds its series and its readiness check
// from its own folder (auth/metrics.ts, proxy/metrics.ts, agent/metrics.ts). Loaded only
// when diag_addr is set.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { joinHostPort, splitHostPort } from './address.ts'
import type { Logger } from './log.ts'
import { family, MetricsRegistry } from './metrics-text.ts'
import { watchProcess } from './process-metrics.ts'

/** What a role still lacks to serve (undefined: ready). Checks that await get this long. */
export type ReadinessCheck = () => Promise<string | undefined> | string | undefined

/** A readiness check that does not answer within this long counts as not ready (a stuck backend, say). */
const CHECK_TIMEOUT_MS = 2000

export interface DiagServerOptions {
  /** HOST:PORT to listen on; port 0 picks a free one. */
  address: string
  version: string
  commit: string
  log: Logger
}

export class DiagServer {
  readonly registry = new MetricsRegistry()
  private readonly checks = new Map<string, ReadinessCheck>()
  private readonly server: Server
  private readonly options: DiagServerOptions

  constructor(options: DiagServerOptions) {
    this.options = options
    const buildInfo = family('warren_build_info', 'gauge', 'Always 1: the version and commit this process runs', [
      { labels: { version: options.version, commit: options.commit }, value: 1 },
    ])
    this.registry.add(() => buildInfo)
    watchProcess(this.registry)
    this.server = createServer((req, res) => void this.answer(req, res))
  }

  /** Listens; resolves with the address bound (the port filled in when it was 0). */
  async listen(): Promise<string> {
    const { host, port } = splitHostPort(this.options.address)
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port ?? 0, host, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    const bound = this.server.address() as AddressInfo
    const address = joinHostPort(bound.address, bound.port)
    this.options.log.info(`diagnostics on http://${address} (/metrics, /healthz, /readyz)`, { diag_addr: address })
    return address
  }

  /** A role that is starting: /readyz asks `check` from now on. */
  addReadiness(role: string, check: ReadinessCheck): void {
    this.checks.set(role, check)
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  /** Each role's answer: undefined when ready, else what it lacks. */
  async readiness(): Promise<Record<string, string | undefined>> {
    const entries = await Promise.all(
      [...this.checks].map(async ([role, check]) => {
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve(`no answer within ${CHECK_TIMEOUT_MS} ms`), CHECK_TIMEOUT_MS)
        })
        try {
          return [role, await Promise.race([Promise.resolve().then(check), timeout])] as const
        } catch (error) {
          return [role, (error as Error).message] as const
        } finally {
          clearTimeout(timer)
        }
      }),
    )
    return Object.fromEntries(entries)
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'application/json', JSON.stringify({ error: 'only GET' }))
    try {
      switch (path) {
        case '/metrics':
          return send(res, 200, this.registry.contentType, await this.registry.metrics())
        case '/healthz':
          return send(res, 200, 'application/json', JSON.stringify({ ok: true }))
        case '/readyz': {
          const roles = await this.readiness()
          const missing = Object.fromEntries(Object.entries(roles).filter(([, problem]) => problem !== undefined))
          const ready = Object.keys(missing).length === 0 && this.checks.size > 0
          const body = ready ? { ready: true } : { ready: false, missing: this.checks.size === 0 ? { process: 'no role has started yet' } : missing }
          return send(res, ready ? 200 : 503, 'application/json', JSON.stringify(body))
        }
        default:
          return send(res, 404, 'application/json', JSON.stringify({ error: `no such endpoint: ${path} (try /metrics, /healthz or /readyz)` }))
      }
    } catch (error) {
      this.options.log.warn(`diagnostics request ${path} failed: ${(error as Error).message}`)
      send(res, 500, 'application/json', JSON.stringify({ error: (error as Error).message }))
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}
