// The admin API that warrenctl calls with the admin certificate: the cluster's status and
// CA rotations, tokens, users and their certificates, the fleet's nodes, and locks.

import type { CurrentTrustSignature } from '../current-trust.ts'
import type { KnownHostsSignature } from '../signed-known-hosts.ts'
import type { TrustStatement } from '../trust-statement.ts'
import { flag, type In, labels, number, type Out, object, oneOf, optional, text, texts } from './shape.ts'

const HOUR_MS = 3_600_000
/** The longest lock a TTL may ask for; without a TTL a lock lasts until it is removed. */
export const MAX_LOCK_TTL_MS = 10 * 365 * 24 * HOUR_MS
export const MAX_LOCK_MESSAGE_LENGTH = 256
/**
 * The longest a join token made with `tokens add` (or `nodes add`) may live: 30 days, as a
 * sign-up token. A token that joins for longer is a static token of the config.
 */
export const MAX_TOKEN_TTL_MS = 30 * 24 * HOUR_MS

export const ROTATION_PHASES = ['init', 'update_clients', 'update_servers', 'standby', 'rollback'] as const

export interface CAStatus {
  pins: string[]
  last_rotated: number | null
  rotation: { phase: string; mode: string; phase_started: number } | null
  /** Epoch ms when the signing CA's certificate expires (absent from an auth server of an earlier version). */
  expires?: number
  /** Whether it has expired by the auth server's clock: it signs nothing until rotated (absent from an auth server of an earlier version). */
  expired?: boolean
}

/** GET /v1/status. */
export interface ClusterStatus {
  cluster_name: string
  version: string
  host_ca: CAStatus
  user_ca: CAStatus
  /** Join requests that reached this auth server, admitted or not. */
  join_attempts: number
  /** Certificates issued by renewals and recoveries on this auth server. */
  renewals_issued: number
  public_addrs: string[]
  /** The live proxies' web addresses, where nodes join. */
  proxy_addrs: string[]
}

export const ROTATE_BODY = object({
  type: oneOf(['host', 'user']),
  manual: flag(),
  /** With manual: the phase to move to. */
  phase: optional(oneOf(ROTATION_PHASES, (value) => `unknown phase "${String(value)}": use init, update_clients, update_servers, standby or rollback`)),
  /** How long an automatic rotation takes. */
  grace_period_ms: optional(number({ above: 0, expected: 'a positive number of milliseconds' }), 30 * HOUR_MS),
})

export interface RotationStep {
  type: string
  phase: string
}

export const TOKEN_BODY = object({
  /** Comma-separated, as --type and --roles give them. */
  roles: text({ max: 256 }),
  ttl_ms: number({ above: 0, atMost: MAX_TOKEN_TTL_MS, expected: 'a positive number of milliseconds, at most 30 days' }),
  single_use: flag(),
  /** A value chosen by the admin instead of a generated one. */
  token: optional(text({ max: 512 })),
  /** The only node name the token joins. */
  nodename: optional(text({ max: 253 })),
  /** Labels the cluster assigns to each node that joins with it. */
  labels: labels(),
})
export type TokenBody = Out<typeof TOKEN_BODY>

export interface TokenCreated {
  token: string
  id: string
  roles: string[]
  expires: number
  single_use: boolean
  nodename: string | null
  labels: Record<string, string>
}

export interface ListedToken {
  id: string
  roles: string[]
  expires: number | null
  single_use: boolean
  static: boolean
  /** Static tokens only: their value (the others are stored as hashes). */
  value: string | null
  nodename: string | null
  /** Sign-up tokens: the user who signs up with it. */
  user: string | null
  /** Labels the cluster assigns to each node that joins with it. */
  labels: Record<string, string>
}

export interface TokenList {
  tokens: ListedToken[]
}

/** How long a sign-up token lives unless --ttl says otherwise. */
export const DEFAULT_SIGNUP_TTL_MS = HOUR_MS
const SIGNUP_TTL = optional(number({ above: 0, atMost: 30 * 24 * HOUR_MS, expected: 'a positive number of milliseconds, at most 30 days' }), DEFAULT_SIGNUP_TTL_MS)

export const USER_BODY = object({ name: text({ max: 64 }), logins: optional(texts(32), []), roles: optional(texts(32), ['access']), signup_ttl_ms: SIGNUP_TTL })
export const USER_RESET_BODY = object({ signup_ttl_ms: SIGNUP_TTL })

/** A user added or reset, with the single-use sign-up token that sets its password and second factor. */
export interface UserInvited extends UserJson {
  signup_token: string
  signup_token_id: string
  signup_expires: number
}

export interface UserJson {
  name: string
  logins: string[]
  /** The roles that decide which nodes, logins and ports the user's certificates reach. */
  roles: string[]
}

export interface UserList {
  users: UserJson[]
}

export const USER_CERTS_BODY = object({
  ttl_ms: number({ above: 0, expected: 'a positive number' }),
  /** An OpenSSH public key line (ssh-ed25519). */
  ssh_public_key: text({ max: 4096 }),
  /** PEM (SubjectPublicKeyInfo). */
  tls_public_key: text({ max: 4096 }),
})

/** POST /v1/users/:name/certs: what `warrenctl auth sign` writes out. */
export interface UserCerts {
  ssh_cert: string
  tls_cert: string
  valid_before: number
  /** The logins the user's roles allow: the SSH certificate's principals. */
  logins: string[]
  /** The user's roles, resolved into both certificates when they were issued. */
  roles: string[]
  cluster_name: string
  host_ca_certs: string[]
  /** The live proxies' web addresses. */
  proxies: string[]
  known_hosts: string[]
  /** The same lines signed by the host CAs (shared/signed-known-hosts.ts). */
  known_hosts_signatures?: KnownHostsSignature
  /** host_ca_certs signed for clients that got them through a proxy (shared/trust-statement.ts). */
  trust?: TrustStatement
  /** That `trust` is the cluster's current set, signed now (shared/current-trust.ts). */
  trust_current?: CurrentTrustSignature
}

/** A node whose heartbeat is fresh (GET /v1/nodes). */
export interface PresentNode {
  host_id: string
  nodename: string
  addr: string
  tunnel: boolean
  labels: Record<string, string>
  last_seen: number
}

export type NodeStatus = 'online' | 'offline' | 'locked' | 'removed'

/** Any node the cluster knows (GET /v1/nodes?all=true). */
export interface ListedNode {
  host_id: string
  nodename: string
  addr: string
  tunnel: boolean
  /** As the cluster judges the node: its own, with those assigned in place of its own of the same keys. */
  labels: Record<string, string>
  /** Those the cluster assigned (a token's, `warrenctl nodes label`). */
  assigned_labels: Record<string, string>
  status: NodeStatus
  last_seen: number | null
  version: string | null
  cert_expires: number | null
  /** Tunnel nodes: the live proxies that reported its tunnel lately, of how many. */
  proxies: { holding: number; live: number } | null
}

/** GET /v1/nodes: the nodes present, or (all=true) every node known, as of `now`. */
export type NodeList = { nodes: PresentNode[] } | { now: number; nodes: ListedNode[] }

/** POST /v1/nodes/:node/labels: what `warrenctl nodes label` changes. */
export const NODE_LABELS_BODY = object({
  /** Assigned, in place of any held of the same keys. */
  set: labels(),
  /** Keys whose assigned label goes. */
  remove: optional(texts(64), []),
})
export type NodeLabelsBodyIn = In<typeof NODE_LABELS_BODY>

/** The node's assigned labels after the change. */
export interface NodeLabelsChanged {
  host_id: string
  nodename: string
  assigned_labels: Record<string, string>
}

export interface RemovedNode {
  host_id: string
  nodename: string
  roles: string[]
}

export const LOCK_BODY = object({
  user: optional(text({ max: 64 })),
  /** A node's name or host ID. */
  node: optional(text({ max: 253 })),
  ttl_ms: optional(number({ above: 0, atMost: MAX_LOCK_TTL_MS, expected: 'a positive number of milliseconds, at most 10 years' })),
  message: optional(text({ max: MAX_LOCK_MESSAGE_LENGTH })),
})
export type LockBody = Out<typeof LOCK_BODY>
export type LockBodyIn = In<typeof LOCK_BODY>

export type LockJson = {
  id: string
  /** `user:alice`, `node:pi-1 (HOST_ID)`. */
  target: string
  message: string | null
  created: number
  expires: number | null
} & ({ user: string } | { node: string; host_id: string })

export interface LockList {
  locks: LockJson[]
}
