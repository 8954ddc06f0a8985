// HTTPS JSON calls to Warren's APIs (auth server, proxy web API), with undici. Every TLS
// hop is verified: the server must chain to the cluster's host CA and present a cluster
// server certificate. Host names are not what we trust — the pinned CA is — so a server
// is accepted at any address as long as its certificate names a server role.

import { Agent, request, type Dispatcher } from 'undici'
import { X509Certificate } from 'node:crypto'
import type { PeerCertificate as TlsPeerCertificate } from 'node:tls'
import { ApiError, WarrenError } from './errors.ts'
import { certSubject } from './cert-subject.ts'
import { CLUSTER_SERVER_NAME } from './tunnel-protocol.ts'

const SERVER_ROLES = ['auth', 'proxy']

export interface ClientOptions {
  /** host:port of the server. */
  server: string
  /** Host CA certificates the server must chain to; omit only to fetch the CA itself. */
  caPems?: string[]
  /** Client identity (host or admin certificate) for mutual TLS. */
  certPem?: string
  keyPem?: string
  timeoutMs?: number
}

/** Accepts the server when its (already CA-verified) certificate carries a server role. */
function checkClusterServer(_host: string, cert: TlsPeerCertificate): Error | undefined {
  try {
    const subject = certSubject(new X509Certificate(cert.raw))
    if (subject.roles.some((role) => SERVER_ROLES.includes(role))) return undefined
    return new Error(`the server's certificate (${subject.commonName}) is not an auth or proxy certificate`)
  } catch (error) {
    return error as Error
  }
}

export class ApiClient {
  readonly server: string
  private readonly dispatcher: Dispatcher
  private readonly timeoutMs: number

  constructor(options: ClientOptions) {
    this.server = options.server
    this.timeoutMs = options.timeoutMs ?? 15_000
    const verified = options.caPems !== undefined
    this.dispatcher = new Agent({
      connect: verified
        ? { ca: options.caPems, cert: options.certPem, key: options.keyPem, checkServerIdentity: checkClusterServer, rejectUnauthorized: true, servername: CLUSTER_SERVER_NAME }
        : { rejectUnauthorized: false, servername: CLUSTER_SERVER_NAME },
      keepAliveTimeout: 10_000,
    })
  }

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<T> {
    let response: Dispatcher.ResponseData
    try {
      response = await request(`https://${this.server}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: body === undefined ? extraHeaders : { 'content-type': 'application/json', ...extraHeaders },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      })
    } catch (error) {
      throw new WarrenError(`cannot reach ${this.server}: ${describeNetworkError(error)}`)
    }
    const text = await response.body.text()
    let parsed: unknown
    try {
      parsed = text ? JSON.parse(text) : {}
    } catch {
      throw new ApiError(response.statusCode, `${this.server} answered ${response.statusCode} with a body that is not JSON`)
    }
    if (response.statusCode >= 400) {
      const message = (parsed as { error?: string }).error ?? `HTTP ${response.statusCode}`
      throw new ApiError(response.statusCode, message)
    }
    return parsed as T
  }

  async close(): Promise<void> {
    await this.dispatcher.close()
  }
}

function describeNetworkError(error: unknown): string {
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } }
  const cause = err.cause ?? err
  return [cause.code, cause.message].filter(Boolean).join(': ') || String(error)
}
