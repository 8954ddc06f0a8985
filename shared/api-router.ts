// The router behind Warren's HTTPS APIs (the auth server's, and a proxy's web port). A
// table of routes is the whole API: each route states who may call it, the largest body it
// reads and its handler, and a route without an access level is a type error here and is
// refused when the router is built. The router judges the caller before any handler runs,
// reads a body only within the route's limit and with the route's shape
// (shared/protocol/api.ts), and answers every error: its own (404, 405, 413, 400 for a
// malformed request), a refusal as the server's `statusOf` maps it, and anything else as
// a 500 whose detail goes to the log only, under a request ID the answer carries too.

import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from './log.ts'
import { API_BODIES, type ApiResponse, type ApiRoute, type BodyOf, type BodyRoute, type ParamsOf, parseBody } from './protocol/api.ts'
import { ProtocolError } from './protocol/errors.ts'

/**
 * Who may call a route: anyone; a host of the cluster (its host certificate), a node or a
 * proxy among them; the cluster's admin (warrenctl's certificate from the user CA); any
 * person logged in, whom a proxy vouches for (and the admin), for what their roles allow;
 * or a proxy for such a person only ('vouched': what the proxy does on the person's behalf,
 * such as counting their connections, which the admin identity has no part in and which
 * the proxy does not carry for users).
 */
export const ACCESS_LEVELS = ['public', 'host', 'node', 'proxy', 'admin', 'user', 'vouched'] as const
export type Access = (typeof ACCESS_LEVELS)[number]

/** The body limit of a route that reads no body. */
export const NO_BODY = 0
/** The body limit of most routes. */
export const SMALL_BODY = 64 * 1024

/** A refusal with its status, for what the router itself refuses and for `admit`. */
export class HttpError extends Error {
  readonly status: number
  readonly headers: Record<string, string>
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.headers = headers
  }
}

/** A JSON object as it came, unparsed: for a route that hands a body on. */
export type JsonObject = { readonly [key: string]: unknown }

/** One request to route K, by a caller `P`. */
export interface Call<K extends ApiRoute, P> {
  readonly route: K
  readonly req: IncomingMessage
  /** Who is calling, as `admit` judged it (null only on public routes). */
  readonly peer: P
  /** Path parameters, each decoded when first read (a malformed escape is a 400). */
  readonly params: ParamsOf<K>
  readonly query: URLSearchParams
  /** The body, read with the route's shape. */
  body(): Promise<BodyOf<K>>
  /** The body as a JSON object, unparsed. */
  json(): Promise<JsonObject>
}

/** A route of `K`: its access level, body limit and handler (whose caller is known unless public). */
export type Route<K extends ApiRoute, Context, Peer> = {
  [A in Access]: {
    access: A
    /** The largest request body the handler reads, in bytes (NO_BODY: it reads none). */
    bodyLimit: number
    handle(call: Call<K, A extends 'public' ? Peer | null : Peer>, context: Context): Promise<ApiResponse<K>>
  }
}[Access]

/** Every route of an API: one entry per route of `K`, none missing. */
export type RouteTable<K extends ApiRoute, Context, Peer> = { [R in K]: Route<R, Context, Peer> }

export interface Refusal {
  status: number
  headers?: Record<string, string>
}

export interface RouterOptions<Context, Peer> {
  context: Context
  /** The caller of `req` on `route`, of `access`, or null (public routes only); throws (or rejects with) HttpError 401 or 403. */
  admit: (access: Access, req: IncomingMessage, route: ApiRoute) => Peer | null | Promise<Peer | null>
  /** The answer to an error a handler threw, or undefined when it is no refusal but a failure (a 500). */
  statusOf: (error: unknown) => Refusal | undefined
  log: Logger
  /** Told of every request that matched a route, once answered (for metrics). */
  answered?: (route: ApiRoute, status: number) => void
  /** Judges a request's body as read, before the handler sees it; throws (HttpError) to refuse it. */
  checkBody?: (req: IncomingMessage, body: JsonObject) => void
}

interface Compiled {
  key: ApiRoute
  method: string
  pattern: RegExp
  names: string[]
  route: Route<ApiRoute, unknown, unknown>
}

export class Router<K extends ApiRoute, Context, Peer> {
  private readonly routes: Compiled[]
  private readonly options: RouterOptions<Context, Peer>

  constructor(table: RouteTable<K, Context, Peer>, options: RouterOptions<Context, Peer>) {
    this.options = options
    this.routes = Object.entries(table).map(([key, route]) => compile(key as ApiRoute, route as Route<ApiRoute, unknown, unknown>))
  }

  /** Answers `req`; never rejects (a failure is a 500, logged). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let key: ApiRoute | undefined
    try {
      const { route, call } = this.match(req)
      key = route.key
      const peer = await this.options.admit(route.route.access, req, route.key)
      const limit = route.route.bodyLimit
      const declared = Number(req.headers['content-length'] ?? 0)
      if (limit > NO_BODY && declared > limit) throw new HttpError(413, `request body larger than ${limit} bytes`)
      const handled = await route.route.handle({ ...call, peer } as never, this.options.context)
      sendJson(res, 200, handled ?? {})
    } catch (error) {
      this.answer(req, res, error, key)
    }
    if (key !== undefined) this.options.answered?.(key, res.statusCode)
  }

  private match(req: IncomingMessage): { route: Compiled; call: Omit<Call<ApiRoute, unknown>, 'peer'> } {
    const url = parseTarget(req.url)
    const matching = this.routes.filter((route) => route.pattern.test(url.pathname))
    if (matching.length === 0) throw new HttpError(404, `no such endpoint: ${url.pathname}`)
    const route = matching.find((candidate) => candidate.method === req.method)
    if (!route) throw new HttpError(405, `method ${req.method} not allowed on ${url.pathname}`)
    const values = (route.pattern.exec(url.pathname) as RegExpExecArray).slice(1)
    let json: Promise<JsonObject> | undefined
    const readJson = () =>
      (json ??= readBody(req, route.route.bodyLimit).then((body) => {
        this.options.checkBody?.(req, body)
        return body
      }))
    return {
      route,
      call: {
        route: route.key,
        req,
        params: lazyParams(route.names, values) as ParamsOf<ApiRoute>,
        query: url.searchParams,
        json: readJson,
        body: async () => {
          const value = await readJson()
          return (route.key in API_BODIES ? parseBody(route.key as BodyRoute, value) : undefined) as never
        },
      },
    }
  }

  private answer(req: IncomingMessage, res: ServerResponse, error: unknown, key: ApiRoute | undefined): void {
    const refusal = error instanceof HttpError ? error : error instanceof ProtocolError ? { status: 400 } : this.options.statusOf(error)
    if (refusal) {
      sendJson(res, refusal.status, { error: (error as Error).message }, refusal.headers)
      return
    }
    const requestId = randomBytes(8).toString('hex')
    // The route's pattern (`/v1/tokens/:token`), never the path as it came: a path parameter
    // may be a secret (`warrenctl tokens rm VALUE`), and the query string may hold one too.
    this.options.log.error('request failed', { request_id: requestId, method: req.method, path: routePath(key), error: describe(error) })
    sendJson(res, 500, { error: `internal error (request ID ${requestId}): the server's log has the details`, request_id: requestId })
  }
}

function compile(key: ApiRoute, route: Route<ApiRoute, unknown, unknown>): Compiled {
  if (!route || !(ACCESS_LEVELS as readonly string[]).includes(route.access)) throw new Error(`route ${key} states no access level (one of ${ACCESS_LEVELS.join(', ')})`)
  if (!Number.isInteger(route.bodyLimit) || route.bodyLimit < 0) throw new Error(`route ${key} states no body limit`)
  if (key in API_BODIES && route.bodyLimit === NO_BODY) throw new Error(`route ${key} reads a body but its limit is NO_BODY`)
  if (typeof route.handle !== 'function') throw new Error(`route ${key} has no handler`)
  const space = key.indexOf(' ')
  const names: string[] = []
  const source = key.slice(space + 1).replace(/:([a-z_]+)/g, (_, name: string) => {
    names.push(name)
    return '([^/]+)'
  })
  return { key, method: key.slice(0, space), pattern: new RegExp(`^${source}$`), names, route }
}

/** The path of a route as the table writes it, its parameters by name; `(no route)` before one matched. */
function routePath(key: ApiRoute | undefined): string {
  return key === undefined ? '(no route)' : key.slice(key.indexOf(' ') + 1)
}

/** The JSON text of answers a handler gives again and again (frozenAnswer). */
const serialized = new WeakMap<object, string>()

/**
 * `body`, serialized once here and answered as those bytes each time a handler returns it
 * again: for a large answer kept between calls. It is frozen, as the text it stands for.
 */
export function frozenAnswer<T extends object>(body: T): T {
  serialized.set(body, JSON.stringify(body))
  return Object.freeze(body)
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy()
  const text = (typeof body === 'object' && body !== null && serialized.get(body)) || JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

/** The request body as a JSON object (empty: {}), at most `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<JsonObject> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`)
    chunks.push(chunk)
  }
  if (size === 0) return {}
  let body: unknown
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'request body is not valid JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object')
  return body as JsonObject
}

/** The request target as a URL; one that is not a URL at all is a 400. */
function parseTarget(target: string | undefined): URL {
  try {
    return new URL(target ?? '/', 'https://localhost')
  } catch {
    throw new HttpError(400, 'the request target is not a valid URL path')
  }
}

/**
 * Path parameters, each decoded when the handler first reads it: the caller is judged
 * first, so an anonymous caller learns nothing from how a parameter decodes, and a
 * malformed escape (`%E0%A4%A`) is the caller's 400, not a server error.
 */
function lazyParams(names: string[], raw: string[]): Record<string, string> {
  const params: Record<string, string> = {}
  names.forEach((name, i) => {
    Object.defineProperty(params, name, {
      enumerable: true,
      get: () => {
        try {
          return decodeURIComponent(raw[i])
        } catch {
          throw new HttpError(400, `the path parameter "${name}" is not valid percent-encoding`)
        }
      },
    })
  })
  return params
}
