// The API a host (node or proxy) uses for itself: the cluster's CA, joining with a token,
// recovering expired certificates, renewing them, a direct node's heartbeats, and a
// proxy's discovery answer (where its tunnels listen). Request bodies are shapes (their
// parsers and types in one declaration); answers are types.

import type { AssignedLabelsStatement } from '../assigned-labels.ts'
import { SEALED, type SealingKeyStatement } from '../sealed-login.ts'
import type { TrustStatement } from '../trust-statement.ts'
import { type In, labels, type Out, object, optional, refused, text, texts } from './shape.ts'

const PEM = { max: 16_384 }
const SIGNATURE = { max: 2048 }
const NONCE = { max: 256 }

export interface Health {
  ok: true
}

/** GET /v1/ca: what a joining device checks against its pin. */
export interface ClusterCA {
  cluster_name: string
  host_ca_certs: string[]
  user_ca_certs: string[]
}

/** POST /v1/join/challenge: the nonce a joining (or recovering) device signs with its keys. */
export interface JoinChallenge {
  nonce: string
  /** Epoch ms after which the nonce is refused. */
  expires: number
  /** The cluster's key for sealing logins (shared/sealed-login.ts), signed by its host CAs. */
  sealing_key?: SealingKeyStatement
}

export const JOIN_BODY = object({
  host_id: refused('the auth server assigns host IDs; a host that has one renews with its certificate instead of joining'),
  addresses: refused("certificates name only the host ID and the node name (a proxy's public addresses come from proxy_service.public_addr)"),
  /** The token as typed, from clients of earlier versions; `sealed` (JOIN_SECRETS) otherwise. */
  token: optional(text({ max: 512 })),
  /** The token sealed for the auth server (shared/sealed-login.ts), bound by joinSealPurpose: a proxy passing the join reads none of it. */
  sealed: optional(SEALED),
  nodename: text({ max: 253 }),
  roles: optional(texts(8), []),
  /** PEM (SubjectPublicKeyInfo). */
  tls_public_key: text({ max: 4096 }),
  /** An OpenSSH public key line. */
  ssh_public_key: text({ max: 4096 }),
  /** A proxy's configured public addresses (hosts), named in its certificates. */
  public_addrs: optional(texts(16), []),
  labels: labels(),
  nonce: text(NONCE),
  /** Each key's signature over the challenge (shared/join-proof.ts). */
  tls_signature: text(SIGNATURE),
  ssh_signature: text(SIGNATURE),
})
export type JoinBody = Out<typeof JOIN_BODY>
export type JoinBodyIn = In<typeof JOIN_BODY>
/** What a join's sealed box holds. */
export const JOIN_SECRETS = object({ token: text({ max: 512 }) })

/**
 * What a join's sealed token is bound to: the challenge, and everything the join asks for,
 * so a proxy that passes it on cannot spend the token on another name, role or key.
 */
export function joinSealPurpose(cluster: string, body: Pick<JoinBodyIn, 'nonce' | 'nodename' | 'roles' | 'public_addrs' | 'tls_public_key' | 'ssh_public_key'>): string {
  return JSON.stringify(['POST /v1/join', cluster, body.nonce, body.nodename, body.roles ?? [], body.public_addrs ?? [], body.tls_public_key, body.ssh_public_key])
}

/** New certificates for a host's keys, as renewals and recoveries answer. */
export interface RenewedCertificates {
  tls_cert: string
  ssh_cert: string
  host_ca_certs: string[]
  user_ca_ssh_keys: string[]
  /** The same CAs signed for nodes, which take them only so (shared/trust-statement.ts). */
  trust?: TrustStatement
  /** The labels the cluster assigns to the host, signed for it (shared/assigned-labels.ts); absent when it has none. */
  assigned_labels?: AssignedLabelsStatement
}

/** POST /v1/join: the identity the auth server gives a new host, and the CAs it trusts. */
export interface Joined extends RenewedCertificates {
  host_id: string
  cluster_name: string
}

export const RECOVER_BODY = object({
  /** The host's last certificate: its host ID, roles and TLS key. */
  tls_cert: text(PEM),
  nonce: text(NONCE),
  tls_signature: text(SIGNATURE),
  ssh_signature: text(SIGNATURE),
})
export type RecoverBody = Out<typeof RECOVER_BODY>
export type RecoverBodyIn = In<typeof RECOVER_BODY>

export const HEARTBEAT_BODY = object({
  labels: labels(),
  /** Where proxies reach the node: `host:port`, or `:port` on the address the heartbeat comes from. */
  service_addr: optional(text({ max: 256 })),
  version: optional(text({ max: 64 })),
})

/** POST /v1/heartbeat: what the cluster trusts now (a direct node follows CA rotations by it). */
export interface HeartbeatAnswer {
  ok: true
  host_ca_certs: string[]
  user_ca_ssh_keys: string[]
  trust?: TrustStatement
  /** Host IDs of proxies removed or locked: a direct node refuses their certificates, still in date. */
  refused_proxies?: string[]
  /** The labels the cluster assigns to the node, signed for it; absent when it has none. */
  assigned_labels?: AssignedLabelsStatement
}

/** GET /v1/discovery on a proxy's web port. */
export interface Discovery {
  proxy_id: string
  cluster_name: string
  /** host:port of the tunnel listener as agents should dial it; null: the address they used for the web port. */
  tunnel_addr: string | null
}
