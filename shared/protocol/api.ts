// Warren's HTTPS APIs as one map from `METHOD /path` to what each route answers, with the
// shapes of the request bodies: the API client (shared/api-client.ts), the auth server's
// route table (auth/api/), the proxy's web API and warrenctl all take their types from here.

import type {
  ClusterStatus,
  LockJson,
  LockList,
  NodeLabelsChanged,
  NodeList,
  RemovedNode,
  RotationStep,
  TokenCreated,
  TokenList,
  UserCerts,
  UserInvited,
  UserJson,
  UserList,
} from './admin.ts'
import { LOCK_BODY, NODE_LABELS_BODY, ROTATE_BODY, TOKEN_BODY, USER_BODY, USER_CERTS_BODY, USER_RESET_BODY } from './admin.ts'
import { AUDIT_EVENTS_BODY, type AuditList, type AuditStored, PROXIED_AUDIT_EVENTS_BODY } from './audit.ts'
import type { TrustBridges } from './bridges.ts'
import type { ReachableNodes } from './fleet.ts'
import type { ClusterCA, Discovery, Health, HeartbeatAnswer, JoinChallenge, Joined, RenewedCertificates } from './hosts.ts'
import { HEARTBEAT_BODY, JOIN_BODY, RECOVER_BODY } from './hosts.ts'
import type { KnownHosts, SealedAnswer, SignupStarted } from './logins.ts'
import { KNOWN_HOSTS_BODY, LOGIN_BODY, SIGNUP_BODY, SIGNUP_COMPLETE_BODY } from './logins.ts'
import type {
  AcmeRecord,
  AssignedLabelsSnapshot,
  ConnectionLease,
  ConnectionLeasesRenewed,
  DirectNodes,
  LiveSet,
  PresenceAnswer,
  ProxyHeartbeatAnswer,
  RevocationSnapshot,
} from './proxies.ts'
import { ACME_GET_BODY, ACME_PUT_BODY, CONNECTION_LEASES_BODY, HOST_RENEW_BODY, PRESENCE_BODY, PROXY_HEARTBEAT_BODY } from './proxies.ts'
import { PROXIED_RECORDING_CHUNK_BODY, RECORDING_CHUNK_BODY, type RecordingFile, type RecordingList, type RecordingStored } from './recordings.ts'
import { ROLE_BODY, type RoleList, type RoleSaved } from './roles.ts'
import { type AnyShape, type In, type Out, parseWith } from './shape.ts'
import { WEB_LOGIN_BODY, WEB_SIGNUP_BODY, WEB_SSH_CERT_BODY, type WebSessionCreated, type WebSessionInfo, type WebSshCert } from './web-sessions.ts'

/** An answer with nothing to say. */
export type Empty = Record<string, never>

/** Every route, and what it answers. */
export interface ApiResponses {
  'GET /v1/health': Health
  'GET /v1/ca': ClusterCA
  'GET /v1/discovery': Discovery
  'GET /v1/trust/bridges': TrustBridges
  'POST /v1/join/challenge': JoinChallenge
  'POST /v1/join': Joined
  'POST /v1/recover': RenewedCertificates
  'POST /v1/heartbeat': HeartbeatAnswer
  'POST /v1/renew': RenewedCertificates
  'POST /v1/hosts/renew': RenewedCertificates
  'POST /v1/proxies/heartbeat': ProxyHeartbeatAnswer
  'GET /v1/proxies': LiveSet
  'DELETE /v1/proxies/self': Empty
  'POST /v1/presence': PresenceAnswer
  'GET /v1/proxies/direct-nodes': DirectNodes
  'POST /v1/proxies/acme/get': AcmeRecord
  'POST /v1/proxies/acme/put': Empty
  'GET /v1/proxies/revocations': RevocationSnapshot
  'GET /v1/proxies/assigned-labels': AssignedLabelsSnapshot
  'POST /v1/proxies/connection-leases': ConnectionLease
  'POST /v1/proxies/connection-leases/renew': ConnectionLeasesRenewed
  'POST /v1/proxies/connection-leases/release': Empty
  'GET /v1/status': ClusterStatus
  'GET /v1/tokens': TokenList
  'POST /v1/tokens': TokenCreated
  'DELETE /v1/tokens/:token': { id: string }
  'POST /v1/rotate': RotationStep
  'POST /v1/users': UserInvited
  'GET /v1/users': UserList
  'DELETE /v1/users/:name': UserJson
  'POST /v1/users/:name/reset': UserInvited
  'POST /v1/users/:name/certs': UserCerts
  'POST /v1/roles': RoleSaved
  'GET /v1/roles': RoleList
  'DELETE /v1/roles/:name': { name: string }
  'POST /v1/signup': SignupStarted | SealedAnswer
  'POST /v1/signup/complete': UserCerts
  'POST /v1/login': UserCerts
  'GET /v1/known-hosts': KnownHosts
  'POST /v1/proxies/known-hosts': KnownHosts
  'GET /v1/nodes': NodeList
  'DELETE /v1/nodes/:node': RemovedNode
  'POST /v1/nodes/:node/labels': NodeLabelsChanged
  'POST /v1/locks': LockJson
  'GET /v1/locks': LockList
  'DELETE /v1/locks/:id': LockJson
  'GET /v1/user/nodes': ReachableNodes
  'POST /v1/audit/events': AuditStored
  'POST /v1/proxies/audit-events': AuditStored
  'GET /v1/audit/events': AuditList
  'POST /v1/recordings/chunks': RecordingStored
  'POST /v1/proxies/recording-chunks': RecordingStored
  'GET /v1/recordings': RecordingList
  'GET /v1/recordings/:id': RecordingFile
  'POST /v1/web-sessions': WebSessionCreated
  'POST /v1/web-sessions/signup': WebSessionCreated
  'GET /v1/web-sessions/current': WebSessionInfo
  'DELETE /v1/web-sessions/current': Empty
  'POST /v1/web-sessions/current/ssh-cert': WebSshCert
}

export type ApiRoute = keyof ApiResponses
export type ApiResponse<K extends ApiRoute> = ApiResponses[K]

/**
 * The auth server's admin routes, which a proxy also carries for a logged-in user (the auth
 * server judges the user: the route table's access level still decides).
 */
export const ADMIN_ROUTES = [
  'GET /v1/status',
  'POST /v1/rotate',
  'GET /v1/tokens',
  'POST /v1/tokens',
  'DELETE /v1/tokens/:token',
  'POST /v1/users',
  'GET /v1/users',
  'DELETE /v1/users/:name',
  'POST /v1/users/:name/reset',
  'POST /v1/users/:name/certs',
  'POST /v1/roles',
  'GET /v1/roles',
  'DELETE /v1/roles/:name',
  'GET /v1/nodes',
  'DELETE /v1/nodes/:node',
  'POST /v1/nodes/:node/labels',
  'POST /v1/locks',
  'GET /v1/locks',
  'DELETE /v1/locks/:id',
  'GET /v1/audit/events',
  'GET /v1/recordings',
  'GET /v1/recordings/:id',
] as const satisfies readonly ApiRoute[]
export type AdminRoute = (typeof ADMIN_ROUTES)[number]

/**
 * The routes for any person logged in, which a proxy carries like the admin routes: the
 * auth server answers by the access of the user's certificate (the admin sees everything).
 */
export const USER_ROUTES = ['GET /v1/user/nodes'] as const satisfies readonly ApiRoute[]
export type UserRoute = (typeof USER_ROUTES)[number]

/** Where a proxy vouches for the user it verified on an admin route: the user's TLS certificate, DER in base64. */
export const USER_CERT_HEADER = 'x-warren-user-cert'

/** The routes of a proxy's web port: discovery, and those it carries to the auth server. */
export type ProxyWebRoute =
  | AdminRoute
  | UserRoute
  | 'GET /v1/health'
  | 'GET /v1/discovery'
  | 'GET /v1/ca'
  | 'GET /v1/trust/bridges'
  | 'POST /v1/join/challenge'
  | 'POST /v1/join'
  | 'POST /v1/recover'
  | 'POST /v1/signup'
  | 'POST /v1/signup/complete'
  | 'POST /v1/login'
  | 'GET /v1/known-hosts'
/** The routes of the auth server: all but what only a proxy answers. */
export type AuthRoute = Exclude<ApiRoute, 'GET /v1/discovery' | 'GET /v1/known-hosts'>

/** The request body of each route that reads one. */
export const API_BODIES = {
  'POST /v1/join': JOIN_BODY,
  'POST /v1/recover': RECOVER_BODY,
  'POST /v1/heartbeat': HEARTBEAT_BODY,
  'POST /v1/hosts/renew': HOST_RENEW_BODY,
  'POST /v1/proxies/heartbeat': PROXY_HEARTBEAT_BODY,
  'POST /v1/presence': PRESENCE_BODY,
  'POST /v1/proxies/acme/get': ACME_GET_BODY,
  'POST /v1/proxies/acme/put': ACME_PUT_BODY,
  'POST /v1/proxies/connection-leases/renew': CONNECTION_LEASES_BODY,
  'POST /v1/proxies/connection-leases/release': CONNECTION_LEASES_BODY,
  'POST /v1/rotate': ROTATE_BODY,
  'POST /v1/tokens': TOKEN_BODY,
  'POST /v1/users': USER_BODY,
  'POST /v1/users/:name/reset': USER_RESET_BODY,
  'POST /v1/users/:name/certs': USER_CERTS_BODY,
  'POST /v1/roles': ROLE_BODY,
  'POST /v1/signup': SIGNUP_BODY,
  'POST /v1/signup/complete': SIGNUP_COMPLETE_BODY,
  'POST /v1/login': LOGIN_BODY,
  'POST /v1/proxies/known-hosts': KNOWN_HOSTS_BODY,
  'POST /v1/locks': LOCK_BODY,
  'POST /v1/nodes/:node/labels': NODE_LABELS_BODY,
  'POST /v1/audit/events': AUDIT_EVENTS_BODY,
  'POST /v1/proxies/audit-events': PROXIED_AUDIT_EVENTS_BODY,
  'POST /v1/recordings/chunks': RECORDING_CHUNK_BODY,
  'POST /v1/proxies/recording-chunks': PROXIED_RECORDING_CHUNK_BODY,
  'POST /v1/web-sessions': WEB_LOGIN_BODY,
  'POST /v1/web-sessions/signup': WEB_SIGNUP_BODY,
  'POST /v1/web-sessions/current/ssh-cert': WEB_SSH_CERT_BODY,
} as const satisfies { [K in ApiRoute]?: unknown }

export type BodyRoute = keyof typeof API_BODIES
/** The body as the server reads it (defaults filled in). */
export type BodyOf<K extends ApiRoute> = K extends BodyRoute ? Out<(typeof API_BODIES)[K]> : undefined
/** The body as a client may write it. */
export type BodyIn<K extends ApiRoute> = K extends BodyRoute ? In<(typeof API_BODIES)[K]> : undefined

/** Query parameters a route reads. */
export interface ApiQueries {
  'GET /v1/nodes': { all?: boolean }
  'GET /v1/trust/bridges': { pin: string }
  'GET /v1/user/nodes': { all?: boolean }
  'GET /v1/audit/events': { since?: number; until?: number; type?: string; user?: string; node?: string }
}

type ParamNames<P extends string> = P extends `${string}:${infer Name}/${infer Rest}` ? Name | ParamNames<Rest> : P extends `${string}:${infer Name}` ? Name : never
/** The path parameters of a route (`:token` in `DELETE /v1/tokens/:token`). */
export type ParamsOf<K extends string> = { [N in ParamNames<K>]: string }

/** What a call of route K passes: its path parameters, body and query, each when it has one. */
export type RouteInput<K extends ApiRoute> = ([ParamNames<K>] extends [never] ? unknown : { params: ParamsOf<K> }) &
  (K extends BodyRoute ? { body: BodyIn<K> } : unknown) &
  (K extends keyof ApiQueries ? { query?: ApiQueries[K] } : unknown)

/** The method and path (parameters encoded, query appended) of one call of `route`. */
export function requestLine(
  route: ApiRoute,
  input: { params?: Record<string, string>; query?: Record<string, string | boolean | undefined> } = {},
): { method: 'GET' | 'POST' | 'DELETE'; path: string } {
  const space = route.indexOf(' ')
  const method = route.slice(0, space) as 'GET' | 'POST' | 'DELETE'
  let path = route.slice(space + 1).replace(/:([a-z_]+)/g, (_, name: string) => {
    const value = input.params?.[name]
    if (value === undefined) throw new Error(`${route}: no value for the path parameter "${name}"`)
    return encodeURIComponent(value)
  })
  const query = Object.entries(input.query ?? {}).filter(([, value]) => value !== undefined && value !== false)
  if (query.length > 0) path += '?' + new URLSearchParams(query.map(([name, value]): [string, string] => [name, String(value)])).toString()
  return { method, path }
}

/** Reads the body of `route` with its shape; throws ProtocolError naming the field. */
export function parseBody<K extends BodyRoute>(route: K, value: unknown): BodyOf<K> {
  return parseWith(route, API_BODIES[route] as AnyShape, value) as BodyOf<K>
}
