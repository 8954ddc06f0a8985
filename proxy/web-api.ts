// The proxy's HTTPS API on the web port: discovery (where the tunnel listens, which proxy
// this is, which cluster), the join and recovery API carried to the auth server, and health.

import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { HttpError, readJson, Router } from '../shared/json-http.ts'

export interface Discovery {
  proxy_id: string
  cluster_name: string
  /** host:port of the tunnel listener as agents should dial it; null: the address they used for the web port. */
  tunnel_addr: string | null
}

export interface WebApiOptions {
  discovery: () => Discovery
  /** The client for the auth server (replaced when this proxy's certificate is renewed). */
  auth: () => ApiClient
  clientAddress: (req: IncomingMessage) => string
}

async function forward(auth: ApiClient, method: 'GET' | 'POST', path: string, body?: unknown, headers?: Record<string, string>): Promise<unknown> {
  try {
    return await auth.request(method, path, body, { headers })
  } catch (error) {
    if (error instanceof ApiError) throw new HttpError(error.status, error.message)
    throw new HttpError(502, `the auth server cannot be reached: ${(error as Error).message}`)
  }
}

export function webApi(options: WebApiOptions): Router {
  const router = new Router()
  router.add('GET', '/v1/health', async () => ({ ok: true }))
  router.add('GET', '/v1/discovery', async () => options.discovery())
  router.add('GET', '/v1/ca', () => forward(options.auth(), 'GET', '/v1/ca'))
  // The token travels inside TLS to this proxy (whose certificate the agent checked against
  // the pinned CA) and on inside TLS to the auth server; the proxy reports who joined. The
  // challenge the joining device signs comes from the auth server the same way.
  router.add('POST', '/v1/join/challenge', () => forward(options.auth(), 'POST', '/v1/join/challenge', {}))
  router.add('POST', '/v1/join', async (req) => forward(options.auth(), 'POST', '/v1/join', await readJson(req), { 'x-warren-client-addr': options.clientAddress(req) }))
  // A node whose certificate expired cannot open a tunnel: it recovers here, with a signed
  // challenge (the auth server charges refused tries to the client's address, as for joins).
  router.add('POST', '/v1/recover', async (req) => forward(options.auth(), 'POST', '/v1/recover', await readJson(req), { 'x-warren-client-addr': options.clientAddress(req) }))
  return router
}

export function socketOf(req: IncomingMessage): TLSSocket {
  return req.socket as TLSSocket
}
