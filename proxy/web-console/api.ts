// The web console's API under /web/api/ (web-contract: login, session, logout, invitations,
// and the admin and user routes carried to the auth server). Every check is made here,
// before anything is carried: the Origin of login and invitations, the cookie and CSRF
// token of everything else that changes state, the size and shape of bodies. The auth
// server then judges the session again, and the user's roles, at every request.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ApiClient } from '../../shared/api-client.ts'
import { HttpError, type JsonObject, readBody, SMALL_BODY } from '../../shared/api-router.ts'
import { ApiError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { type ApiRoute, requestLine } from '../../shared/protocol/api.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import type { RecordingFile } from '../../shared/protocol/recordings.ts'
import { parseWith } from '../../shared/protocol/shape.ts'
import { WEB_LOGIN_BODY, WEB_SESSION_HEADER, WEB_SIGNUP_BODY, WEB_SIGNUP_START_BODY, type WebSessionCreated, type WebSessionInfo } from '../../shared/protocol/web-sessions.ts'
import { authFailure } from '../auth-unreachable.ts'
import { CSRF_HEADER, checkCsrf, checkOrigin, clearedCookie, sessionCookie, sessionToken } from './guards.ts'
import { securityHeaders } from './security-headers.ts'

export const WEB_API_PREFIX = '/web/api/'

export interface WebConsoleApiOptions {
  /** The client for the auth server (replaced when this proxy's certificate is renewed). */
  auth: () => ApiClient
  clientAddress: (req: IncomingMessage) => string
  /** The session of `token` was ended by its user: what still runs on it (terminals) ends too. */
  loggedOut?: (token: string) => void
  log: Logger
}

/** The admin and user routes the console uses, carried as /web/api/<rest> → /v1/<rest>. */
const CARRIED = [
  'GET /v1/user/nodes',
  'GET /v1/audit/events',
  'GET /v1/recordings',
  'GET /v1/recordings/:id',
  'GET /v1/tokens',
  'POST /v1/tokens',
  'DELETE /v1/tokens/:token',
  'GET /v1/users',
  'POST /v1/users',
  'POST /v1/users/:name/reset',
  'DELETE /v1/users/:name',
] as const satisfies readonly ApiRoute[]

const CARRIED_PATTERNS = CARRIED.map((route) => {
  const [method, path] = route.split(' ')
  return { route, method, pattern: new RegExp(`^${path.replace(/:[a-z_]+/g, '[^/]+')}$`) }
})

interface Answer {
  status?: number
  body: unknown
  headers?: Record<string, string>
  /** Sent as it is (the recording export), not as JSON. */
  raw?: { text: string; type: string }
}

export class WebConsoleApi {
  private readonly options: WebConsoleApiOptions

  constructor(options: WebConsoleApiOptions) {
    this.options = options
  }

  /** Answers a request under /web/api/; never rejects. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let answer: Answer
    try {
      answer = await this.route(req)
    } catch (error) {
      answer = this.refusal(req, error)
    }
    const headers = { ...securityHeaders(), ...answer.headers }
    const text = answer.raw ? answer.raw.text : JSON.stringify(answer.body)
    if (res.headersSent) return void res.destroy()
    res.writeHead(answer.status ?? 200, { ...headers, 'content-type': answer.raw?.type ?? 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }

  /** The session of the request's cookie, as the auth server judges it now. */
  async session(req: IncomingMessage): Promise<{ token: string; session: WebSessionInfo }> {
    const token = sessionToken(req)
    return { token, session: await this.callAuth('GET /v1/web-sessions/current', undefined, this.sessionHeaders(req, token)) }
  }

  /** The headers that carry a request on for the session of `token`. */
  sessionHeaders(req: IncomingMessage, token: string): Record<string, string> {
    return { [WEB_SESSION_HEADER]: token, 'x-warren-client-addr': this.options.clientAddress(req) }
  }

  /** Calls the auth server; an unreachable one is a 502. */
  async callAuth<T>(route: ApiRoute, body: unknown, headers: Record<string, string>, path?: string): Promise<T> {
    // A carried route brings its path as it came (its parameters filled in); others have none.
    const method = route.slice(0, route.indexOf(' ')) as 'GET' | 'POST' | 'DELETE'
    try {
      return await this.options.auth().request<T>(method, path ?? requestLine(route).path, body, { headers })
    } catch (error) {
      throw authFailure(error, this.options.log)
    }
  }

  private async route(req: IncomingMessage): Promise<Answer> {
    const url = new URL(req.url ?? '/', 'https://proxy')
    const rest = url.pathname.slice(WEB_API_PREFIX.length - 1)
    const clientAddr = { 'x-warren-client-addr': this.options.clientAddress(req) }
    switch (`${req.method} ${rest}`) {
      case 'POST /login': {
        checkOrigin(req)
        const body = parseWith('login', WEB_LOGIN_BODY, await readJson(req))
        return this.loggedIn(await this.callAuth<WebSessionCreated>('POST /v1/web-sessions', body, clientAddr))
      }
      case 'GET /session': {
        // The roles' rules are the proxy's to judge terminals by; the page has what it shows.
        const { access: _, ...session } = (await this.session(req)).session
        return { body: { ...session, expires: new Date(session.expires).toISOString() } }
      }
      case 'POST /logout': {
        const { token } = await this.changing(req)
        await this.callAuth('DELETE /v1/web-sessions/current', undefined, this.sessionHeaders(req, token))
        this.options.loggedOut?.(token)
        return { body: {}, headers: { 'set-cookie': clearedCookie() } }
      }
      case 'POST /invite/start': {
        checkOrigin(req)
        const body = parseWith('invitation', WEB_SIGNUP_START_BODY, await readJson(req))
        const started = await this.callAuth<{ user: string; cluster_name: string; otpauth_uri: string }>('POST /v1/signup', body, clientAddr)
        return { body: { user: started.user, cluster_name: started.cluster_name, otpauth_uri: started.otpauth_uri, qr_svg: await qrSvg(started.otpauth_uri) } }
      }
      case 'POST /invite/complete': {
        checkOrigin(req)
        const body = parseWith('invitation', WEB_SIGNUP_BODY, await readJson(req))
        return this.loggedIn(await this.callAuth<WebSessionCreated>('POST /v1/web-sessions/signup', body, clientAddr))
      }
    }
    return this.carried(req, url, rest)
  }

  /** An admin or user route, carried with the session's identity: the auth server judges the roles. */
  private async carried(req: IncomingMessage, url: URL, rest: string): Promise<Answer> {
    const path = `/v1${rest}`
    const matching = CARRIED_PATTERNS.filter((candidate) => candidate.pattern.test(path))
    if (matching.length === 0) throw new HttpError(404, `no such endpoint: ${url.pathname}`)
    const carried = matching.find((candidate) => candidate.method === req.method)
    if (!carried) throw new HttpError(405, `method ${req.method} not allowed on ${url.pathname}`)
    let token: string
    let body: JsonObject | undefined
    if (carried.method === 'GET') {
      token = sessionToken(req)
    } else {
      token = (await this.changing(req)).token
      if (carried.method === 'POST') body = await readJson(req)
    }
    const answer = await this.callAuth<unknown>(carried.route, body, this.sessionHeaders(req, token), path + url.search)
    if (carried.route === 'GET /v1/recordings/:id') return { body: null, raw: { text: (answer as RecordingFile).cast, type: 'application/x-asciicast' } }
    return { body: answer }
  }

  /** A state-changing request: from the console's own origin, with the session's CSRF token. */
  private async changing(req: IncomingMessage): Promise<{ token: string; session: WebSessionInfo }> {
    checkOrigin(req)
    const found = await this.session(req)
    checkCsrf(req.headers[CSRF_HEADER], found.session.csrf_token)
    return found
  }

  private loggedIn(created: WebSessionCreated): Answer {
    return {
      body: { user: created.user, csrf_token: created.csrf_token, expires: new Date(created.expires).toISOString() },
      headers: { 'set-cookie': sessionCookie(created.token, created.expires) },
    }
  }

  private refusal(req: IncomingMessage, error: unknown): Answer {
    if (error instanceof HttpError) return { status: error.status, body: { error: error.message }, headers: error.headers }
    if (error instanceof ApiError) return { status: error.status, body: { error: error.message } }
    if (error instanceof ProtocolError) return { status: 400, body: { error: error.message } }
    this.options.log.error('web console request failed', { method: req.method, path: loggedPath(req), error: (error as Error).message })
    return { status: 500, body: { error: "internal error: the proxy's log has the details" } }
  }
}

/**
 * The path of a request for the log: a carried route's by its pattern (`/web/api/tokens/:token`),
 * never with the values in it, which may be secrets (a token being revoked). The console's own
 * routes have no parameters.
 */
function loggedPath(req: IncomingMessage): string {
  const pathname = (req.url ?? '/').split('?')[0]
  const path = `/v1${pathname.slice(WEB_API_PREFIX.length - 1)}`
  const carried = CARRIED_PATTERNS.find((candidate) => candidate.method === req.method && candidate.pattern.test(path))
  return carried ? WEB_API_PREFIX + carried.route.slice(carried.route.indexOf(' /v1/') + ' /v1/'.length) : pathname
}

/** The request body as a JSON object, at most SMALL_BODY bytes; a browser's form post (no JSON) is refused. */
async function readJson(req: IncomingMessage): Promise<JsonObject> {
  const type = req.headers['content-type'] ?? ''
  if (!/^application\/json\b/i.test(type)) throw new HttpError(415, 'the request body must be JSON (content-type: application/json)')
  if (Number(req.headers['content-length'] ?? 0) > SMALL_BODY) throw new HttpError(413, `request body larger than ${SMALL_BODY} bytes`)
  return readBody(req, SMALL_BODY)
}

/** The otpauth URI as a QR code, an SVG document. qrcode is loaded on first use: a part of its own in the single executable. */
async function qrSvg(uri: string): Promise<string> {
  const { default: QRCode } = await import('qrcode')
  return QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 })
}
