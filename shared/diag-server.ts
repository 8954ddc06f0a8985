// The diagnostics endpoint of a `warren start` process (`diag_addr`, off by default): plain
// HTTP (shared/diag-http.ts), meant for loopback or a monitoring network, holding nothing secret.
//   GET /metrics  Prometheus text format: the roles' series, build info, process CPU and memory
//   GET /healthz  200 while the process runs
//   GET /readyz   200 when every role is ready, else 503 and what each role is missing
// One registry per process (shared/metrics-text.ts: the text format without prom-client, so
// an agent with diag_addr stays small; the auth server's and the proxy's prom-client
// registries join it as text); each role adds its series and its readiness check
// from its own folder (auth/metrics.ts, proxy/metrics.ts, agent/metrics.ts). Loaded only
// when diag_addr is set.

import { joinHostPort, splitHostPort } from './address.ts'
import { type DiagAnswer, DiagHttpServer, type DiagRequest } from './diag-http.ts'
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
  private readonly server: DiagHttpServer
  private readonly options: DiagServerOptions

  constructor(options: DiagServerOptions) {
    this.options = options
    const buildInfo = family('warren_build_info', 'gauge', 'Always 1: the version and commit this process runs', [
      { labels: { version: options.version, commit: options.commit }, value: 1 },
    ])
    this.registry.add(() => buildInfo)
    watchProcess(this.registry)
    this.server = new DiagHttpServer((request) => this.answer(request))
  }

  /** Listens; resolves with the address bound (the port filled in when it was 0). */
  async listen(): Promise<string> {
    const { host, port } = splitHostPort(this.options.address)
    const bound = await this.server.listen(host, port ?? 0)
    const address = joinHostPort(bound.address, bound.port)
    this.options.log.info(`diagnostics on http://${address} (/metrics, /healthz, /readyz)`, { diag_addr: address })
    return address
  }

  /** A role that is starting: /readyz asks `check` from now on. */
  addReadiness(role: string, check: ReadinessCheck): void {
    this.checks.set(role, check)
  }

  async close(): Promise<void> {
    await this.server.close()
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

  private async answer({ method, path }: DiagRequest): Promise<DiagAnswer> {
    if (method !== 'GET' && method !== 'HEAD') return json(405, { error: 'only GET' })
    try {
      switch (path) {
        case '/metrics':
          return { status: 200, type: this.registry.contentType, body: await this.registry.metrics() }
        case '/healthz':
          return json(200, { ok: true })
        case '/readyz': {
          const roles = await this.readiness()
          const missing = Object.fromEntries(Object.entries(roles).filter(([, problem]) => problem !== undefined))
          const ready = Object.keys(missing).length === 0 && this.checks.size > 0
          return json(ready ? 200 : 503, ready ? { ready: true } : { ready: false, missing: this.checks.size === 0 ? { process: 'no role has started yet' } : missing })
        }
        default:
          return json(404, { error: `no such endpoint: ${path} (try /metrics, /healthz or /readyz)` })
      }
    } catch (error) {
      this.options.log.warn(`diagnostics request ${path} failed: ${(error as Error).message}`)
      return json(500, { error: (error as Error).message })
    }
  }
}

function json(status: number, body: unknown): DiagAnswer {
  return { status, type: 'application/json', body: JSON.stringify(body) }
}
