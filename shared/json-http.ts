// A small JSON-over-HTTPS toolkit shared by the auth API and the proxy's web API: a router
// with path parameters, bounded body reading, and errors that map to status codes.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { checkLabels, LabelError } from './labels.ts'

export class HttpError extends Error {
  readonly status: number
  readonly headers: Record<string, string>
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.headers = headers
  }
}

export type Handler = (req: IncomingMessage, params: Record<string, string>) => Promise<unknown>

interface Route {
  method: string
  pattern: RegExp
  names: string[]
  handler: Handler
}

const MAX_BODY_BYTES = 64 * 1024

export async function readJson(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
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
  return body as Record<string, unknown>
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

export class Router {
  private readonly routes: Route[] = []

  /** Registers `handler` for a path such as `/v1/tokens/:id`. */
  add(method: string, path: string, handler: Handler): this {
    const names: string[] = []
    const source = path.replace(/:([a-z_]+)/g, (_, name: string) => {
      names.push(name)
      return '([^/]+)'
    })
    this.routes.push({ method, pattern: new RegExp(`^${source}$`), names, handler })
    return this
  }

  /** Runs the matching handler and writes its result (or its error) as JSON. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = pathOf(req.url)
      const matching = this.routes.filter((route) => route.pattern.test(path))
      if (matching.length === 0) throw new HttpError(404, `no such endpoint: ${path}`)
      const route = matching.find((r) => r.method === req.method)
      if (!route) throw new HttpError(405, `method ${req.method} not allowed on ${path}`)
      const match = route.pattern.exec(path) as RegExpExecArray
      const params = lazyParams(route.names, match.slice(1))
      const result = await route.handler(req, params)
      sendJson(res, 200, result ?? {})
    } catch (error) {
      if (error instanceof HttpError) sendJson(res, error.status, { error: error.message }, error.headers)
      else sendJson(res, 500, { error: 'internal error' })
      if (!(error instanceof HttpError)) throw error
    }
  }
}

/** The path of a request target; one that is not a URL at all is a 400. */
function pathOf(target: string | undefined): string {
  try {
    return new URL(target ?? '/', 'https://localhost').pathname
  } catch {
    throw new HttpError(400, 'the request target is not a valid URL path')
  }
}

/**
 * Path parameters, each decoded when the handler first reads it: handlers authenticate the
 * caller first, so an anonymous caller learns nothing from how a parameter decodes, and a
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

/** Field readers that turn a malformed request into a 400 naming the field. */
export function stringField(body: Record<string, unknown>, name: string, options: { optional?: boolean; max?: number } = {}): string | undefined {
  const value = body[name]
  if (value === undefined || value === null || value === '') {
    if (options.optional) return undefined
    throw new HttpError(400, `missing field "${name}"`)
  }
  if (typeof value !== 'string') throw new HttpError(400, `field "${name}" must be a string`)
  if (value.length > (options.max ?? 8192)) throw new HttpError(400, `field "${name}" is too long`)
  return value
}

export function stringListField(body: Record<string, unknown>, name: string, max = 64): string[] {
  const value = body[name]
  if (value === undefined) return []
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string') || value.length > max) {
    throw new HttpError(400, `field "${name}" must be a list of at most ${max} strings`)
  }
  return value as string[]
}

/** Node labels under the rules of shared/labels.ts; a missing field is no labels. */
export function labelsField(body: Record<string, unknown>, name: string): Record<string, string> {
  const value = body[name]
  if (value === undefined) return {}
  try {
    return checkLabels(value)
  } catch (error) {
    if (error instanceof LabelError) throw new HttpError(400, `field "${name}": ${error.message}`)
    throw error
  }
}
