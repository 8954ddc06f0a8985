// HTTPS JSON calls to Warren's APIs (auth server, proxy web API), with Node's own https:
// undici, with the parts of Node it loads, cost an agent more memory than its calls are worth
// (see bench:footprint). Every TLS hop is verified: the server must chain to the cluster's
// host CA and present a cluster server certificate. Host names are not what we trust — the
// pinned CA is — so a server is accepted at any address as long as its certificate names a
// server role.

import { X509Certificate } from 'node:crypto'
import { Agent, request } from 'node:https'
import type { PeerCertificate as TlsPeerCertificate } from 'node:tls'
import { certSubject } from './cert-subject.ts'
import { ApiError, UnreachableError } from './errors.ts'
import { type ApiResponse, type ApiRoute, type RouteInput, requestLine } from './protocol/api.ts'
import { CLUSTER_SERVER_NAME } from './protocol/tunnel.ts'

const SERVER_ROLES = ['auth', 'proxy']

/**
 * The longest answer taken (256 MiB): far above any the API gives (an export of the largest
 * recording, a day of a large fleet's audit events), while a server that sends without end (a
 * man in the middle before the CA is pinned, a stolen proxy's keys) cannot fill the caller's memory.
 */
export const MAX_ANSWER_BYTES = 256 * 1024 * 1024
/** Connections kept to one server at most (the agent's maxSockets); more calls at once queue. */
export const MAX_SOCKETS_PER_SERVER = 64

export interface ClientOptions {
  /** host:port of the server. */
  server: string
  /** Host CA certificates the server must chain to; omit only to fetch the CA itself. */
  caPems?: string[]
  /** Client identity (host or admin certificate) for mutual TLS. */
  certPem?: string
  keyPem?: string
  timeoutMs?: number
  /**
   * The server must be an auth server, not any server of the cluster: for callers that dial
   * the auth server itself (proxies, warrenctl on the auth host), whom a proxy's keys at the
   * auth server's address must not answer.
   */
  authServer?: boolean
  /** Headers each request carries that depend on it (a signature of it): from its method, path with query, and body. */
  headersFor?: (method: string, path: string, body: unknown) => Record<string, string>
  /** The longest answer taken; default MAX_ANSWER_BYTES. */
  maxAnswerBytes?: number
}

/** Accepts the server when its (already CA-verified) certificate carries a server role (`auth` when `authOnly`). */
function checkClusterServer(cert: TlsPeerCertificate, authOnly: boolean): Error | undefined {
  try {
    const subject = certSubject(new X509Certificate(cert.raw))
    const roles = authOnly ? ['auth'] : SERVER_ROLES
    if (subject.roles.some((role) => roles.includes(role))) return undefined
    return new Error(`the server's certificate (${subject.commonName}) is not ${authOnly ? 'an auth server' : 'an auth or proxy'} certificate`)
  } catch (error) {
    return error as Error
  }
}

export interface CallOptions {
  headers?: Record<string, string>
  /** This call's own limit, instead of the client's. */
  timeoutMs?: number
}

export class ApiClient {
  readonly server: string
  private readonly agent: Agent
  private readonly timeoutMs: number
  private readonly headersFor?: ClientOptions['headersFor']
  private readonly maxAnswerBytes: number

  constructor(options: ClientOptions) {
    this.server = options.server
    this.timeoutMs = options.timeoutMs ?? 15_000
    this.headersFor = options.headersFor
    this.maxAnswerBytes = options.maxAnswerBytes ?? MAX_ANSWER_BYTES
    // Every call asks for the cluster's own server name, so a proxy with a public (ACME)
    // certificate answers with its host-CA one.
    const tls =
      options.caPems !== undefined
        ? {
            ca: options.caPems,
            cert: options.certPem,
            key: options.keyPem,
            checkServerIdentity: (_host: string, cert: TlsPeerCertificate) => checkClusterServer(cert, options.authServer === true),
            rejectUnauthorized: true,
            servername: CLUSTER_SERVER_NAME,
          }
        : { rejectUnauthorized: false, servername: CLUSTER_SERVER_NAME }
    // Connections are kept for the next call, and closed after 10 s unused. At most 64 to a
    // server: more calls at once wait their turn, within what the server takes from one
    // address (maxOpenPerAddress, shared/tls-gate/config.ts).
    this.agent = new Agent({ ...tls, keepAlive: true, timeout: 10_000, maxSockets: MAX_SOCKETS_PER_SERVER })
  }

  /**
   * Calls `route` with its path parameters, body and query (shared/protocol/api.ts): the
   * types of what goes and what comes back are the route's.
   */
  call<K extends ApiRoute>(
    route: K,
    // biome-ignore lint/complexity/noBannedTypes: `{} extends T` asks whether every field of T is optional
    ...[input, options]: {} extends RouteInput<K> ? [input?: RouteInput<K>, options?: CallOptions] : [input: RouteInput<K>, options?: CallOptions]
  ): Promise<ApiResponse<K>> {
    const given = (input ?? {}) as { params?: Record<string, string>; body?: unknown; query?: Record<string, boolean | undefined> }
    const { method, path } = requestLine(route, given)
    return this.request<ApiResponse<K>>(method, path, given.body, options)
  }

  /**
   * Sends `body` as it is to `method path`, and trusts the answer to be a T: for what carries
   * requests on (the proxy's web API) and for tests that send what no client would.
   */
  async request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
    const { headers: extraHeaders = {}, timeoutMs = this.timeoutMs } = options
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const own = this.headersFor?.(method, path, body)
    const headers = {
      ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
      ...own,
      ...extraHeaders,
    }
    let response: { statusCode: number; text: string; retryAfter?: string; date?: string; receivedAt: number }
    try {
      response = await new Promise((resolve, reject) => {
        const req = request(`https://${this.server}${path}`, { method, agent: this.agent, headers }, (res) => {
          const chunks: Buffer[] = []
          let received = 0
          res.on('data', (chunk: Buffer) => {
            received += chunk.length
            if (received > this.maxAnswerBytes) req.destroy(new Error(`the answer is longer than ${this.maxAnswerBytes} bytes`))
            else chunks.push(chunk)
          })
          res.on('end', () =>
            resolve({
              statusCode: res.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
              retryAfter: res.headers['retry-after'],
              date: res.headers.date,
              receivedAt: Date.now(),
            }),
          )
          res.on('error', reject)
        })
        // No progress (connecting, waiting for the answer, or within it) for timeoutMs fails the call.
        req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })))
        req.on('error', reject)
        req.end(payload)
      })
    } catch (error) {
      throw new UnreachableError(`cannot reach ${this.server}: ${describeNetworkError(error)}`, networkErrorCode(error))
    }
    const { statusCode, text, retryAfter, date, receivedAt } = response
    let parsed: unknown
    try {
      parsed = text ? JSON.parse(text) : {}
    } catch {
      throw new ApiError(statusCode, `${this.server} answered ${statusCode} with a body that is not JSON`)
    }
    if (statusCode >= 400) {
      const message = (parsed as { error?: string }).error ?? `HTTP ${statusCode}`
      const retryAfterS = retryAfter !== undefined && /^\d{1,6}$/.test(retryAfter) ? Number(retryAfter) : undefined
      const serverDate = date === undefined ? Number.NaN : Date.parse(date)
      throw new ApiError(statusCode, message, retryAfterS, Number.isNaN(serverDate) ? undefined : receivedAt - serverDate)
    }
    return parsed as T
  }

  async close(): Promise<void> {
    this.agent.destroy()
  }
}

function networkErrorCode(error: unknown): string | undefined {
  const err = error as { code?: string; cause?: { code?: string } }
  return (err.cause ?? err).code
}

function describeNetworkError(error: unknown): string {
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } }
  const cause = err.cause ?? err
  return [cause.code, cause.message].filter(Boolean).join(': ') || String(error)
}
