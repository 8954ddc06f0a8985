// The proxy's HTTPS API on the web port, a route table on the same router as the auth
// server's (shared/api-router.ts): health, discovery (where the tunnel listens, which proxy
// this is, which cluster), and the join, recovery, sign-up and login API carried to the auth
// server. Every route is public: a joining or recovering device has no valid certificate
// yet, nor has a person logging in. The admin API is carried too, for a person logged in
// with a user certificate, which this proxy checks and hands on: the auth server decides.
// So are the user routes (the nodes a person may reach), the same way.

import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { ADMIN_PROOF_HEADER } from '../shared/admin-request-proof.ts'
import type { ApiClient } from '../shared/api-client.ts'
import { type Call, HttpError, NO_BODY, Router, type RouteTable, SMALL_BODY } from '../shared/api-router.ts'
import { ApiError } from '../shared/errors.ts'
import type { Logger } from '../shared/log.ts'
import { ADMIN_ROUTES, type AdminRoute, type ApiResponse, type ProxyWebRoute, USER_CERT_HEADER, USER_ROUTES, type UserRoute } from '../shared/protocol/api.ts'
import type { Discovery } from '../shared/protocol/hosts.ts'
import { authFailure } from './auth-unreachable.ts'

export interface WebApiOptions {
  discovery: () => Discovery
  /** The client for the auth server (replaced when this proxy's certificate is renewed). */
  auth: () => ApiClient
  clientAddress: (req: IncomingMessage) => string
  /** The user the request's client certificate authenticates; throws why none. */
  userOf: (req: IncomingMessage) => string
  log: Logger
}

type WebRoutes = RouteTable<ProxyWebRoute, WebApiOptions, null>

/** Hands a request on to the auth server (its body as it came), and the answer back. */
async function forward<K extends ProxyWebRoute>(
  call: Call<K, unknown>,
  options: WebApiOptions,
  carry: { body?: boolean; headers?: Record<string, string> } = {},
): Promise<ApiResponse<K>> {
  const space = call.route.indexOf(' ')
  const body = carry.body ? await call.json() : undefined
  try {
    return await options.auth().request<ApiResponse<K>>(call.route.slice(0, space) as 'GET' | 'POST', call.route.slice(space + 1), body, { headers: carry.headers })
  } catch (error) {
    throw authFailure(error, options.log)
  }
}

/** The client's address, which the auth server charges refused joins and recoveries to. */
const fromClient = (call: Call<ProxyWebRoute, unknown>, options: WebApiOptions) => ({ body: true, headers: { 'x-warren-client-addr': options.clientAddress(call.req) } })

/** The user a request's certificate authenticates, checked here first (CA, cluster, dates, locks); a 401 when none. */
function userOf(call: Call<ProxyWebRoute, unknown>, options: WebApiOptions): string {
  try {
    return options.userOf(call.req)
  } catch (error) {
    throw new HttpError(401, `a valid user certificate of this cluster is required (${(error as Error).message})`)
  }
}

/**
 * An admin or user request of a logged-in person, carried as it came (path, query, body)
 * with this proxy's own identity, vouching for the user by its certificate and passing on
 * the user's signature of the request: the auth server judges the user, its roles and its
 * signature, and logs what it does.
 */
async function forwardAdmin(call: Call<AdminRoute | UserRoute, unknown>, options: WebApiOptions): Promise<ApiResponse<AdminRoute | UserRoute>> {
  userOf(call, options)
  const cert = (call.req.socket as TLSSocket).getPeerX509Certificate()
  if (!cert) throw new HttpError(401, 'a valid user certificate of this cluster is required')
  const method = call.route.slice(0, call.route.indexOf(' ')) as 'GET' | 'POST' | 'DELETE'
  const body = method === 'POST' ? await call.json() : undefined
  const headers: Record<string, string> = { [USER_CERT_HEADER]: cert.raw.toString('base64'), 'x-warren-client-addr': options.clientAddress(call.req) }
  // The person's own signature of the request, which the auth server requires of admin requests.
  const proof = call.req.headers[ADMIN_PROOF_HEADER]
  if (typeof proof === 'string') headers[ADMIN_PROOF_HEADER] = proof
  try {
    return await options.auth().request<ApiResponse<AdminRoute | UserRoute>>(method, call.req.url ?? '/', body, { headers })
  } catch (error) {
    throw authFailure(error, options.log)
  }
}

const ADMIN_WEB_ROUTES = Object.fromEntries(
  [...ADMIN_ROUTES, ...USER_ROUTES].map((route) => [route, { access: 'public', bodyLimit: route.startsWith('POST ') ? SMALL_BODY : NO_BODY, handle: forwardAdmin }]),
) as unknown as Pick<WebRoutes, AdminRoute | UserRoute>

const WEB_ROUTES: WebRoutes = {
  ...ADMIN_WEB_ROUTES,
  'GET /v1/health': { access: 'public', bodyLimit: NO_BODY, handle: async () => ({ ok: true }) },
  'GET /v1/discovery': { access: 'public', bodyLimit: NO_BODY, handle: async (_call, options) => options.discovery() },
  'GET /v1/ca': { access: 'public', bodyLimit: NO_BODY, handle: (call, options) => forward(call, options) },
  // For a node that missed a host CA rotation and cannot verify this proxy: what it gets is
  // signed by the auth server's host CAs, and it believes the signatures, not this relay.
  'GET /v1/trust/bridges': {
    access: 'public',
    bodyLimit: NO_BODY,
    async handle(call, options) {
      try {
        return await options.auth().call('GET /v1/trust/bridges', { query: { pin: call.query.get('pin') ?? '' } })
      } catch (error) {
        throw authFailure(error, options.log)
      }
    },
  },
  // The token travels inside TLS to this proxy (whose certificate the agent checked against
  // the pinned CA) and on inside TLS to the auth server; the proxy reports who joined. The
  // challenge the joining device signs comes from the auth server the same way.
  'POST /v1/join/challenge': { access: 'public', bodyLimit: NO_BODY, handle: (call, options) => forward(call, options) },
  'POST /v1/join': { access: 'public', bodyLimit: SMALL_BODY, handle: (call, options) => forward(call, options, fromClient(call, options)) },
  // A node whose certificate expired cannot open a tunnel: it recovers here, with a signed
  // challenge (the auth server charges refused tries to the client's address, as for joins).
  'POST /v1/recover': { access: 'public', bodyLimit: SMALL_BODY, handle: (call, options) => forward(call, options, fromClient(call, options)) },
  // People know only the proxy: they accept invitations and log in here (the auth server
  // charges failed tries to the client's address, and locks a user after five).
  'POST /v1/signup': { access: 'public', bodyLimit: SMALL_BODY, handle: (call, options) => forward(call, options, fromClient(call, options)) },
  'POST /v1/signup/complete': { access: 'public', bodyLimit: SMALL_BODY, handle: (call, options) => forward(call, options, fromClient(call, options)) },
  'POST /v1/login': { access: 'public', bodyLimit: SMALL_BODY, handle: (call, options) => forward(call, options, fromClient(call, options)) },
  // Public to the router, but only a user of this cluster gets an answer: OpenSSH's
  // KnownHostsCommand (`warren known-hosts`) asks here with the user's certificate.
  'GET /v1/known-hosts': {
    access: 'public',
    bodyLimit: NO_BODY,
    async handle(call, options) {
      const user = userOf(call, options)
      try {
        return await options.auth().call('POST /v1/proxies/known-hosts', { body: { user } })
      } catch (error) {
        throw authFailure(error, options.log)
      }
    },
  },
}

/** The auth server's refusal passes on as it is. */
function statusOf(error: unknown): { status: number } | undefined {
  return error instanceof ApiError ? { status: error.status } : undefined
}

export function webApi(options: WebApiOptions): Router<ProxyWebRoute, WebApiOptions, null> {
  return new Router(WEB_ROUTES, { context: options, admit: () => null, statusOf, log: options.log })
}
