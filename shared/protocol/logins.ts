// The public API people use, straight to the auth server or through any proxy's web port:
// accepting an invitation (a sign-up token, then a password and a second factor) and
// logging in for short-lived certificates (`warren login`).

import { SEALED } from '../sealed-login.ts'
import type { KnownHostsSignature } from '../signed-known-hosts.ts'
import { number, type Out, object, optional, text } from './shape.ts'

/**
 * A sign-up token, to see whose it is and get a second factor's secret to enrol: sealed for
 * the auth server (shared/sealed-login.ts), whose answer is then sealed back, or as it is
 * from the web console's proxy, which is the console's server.
 */
export const SIGNUP_BODY = object({ token: optional(text({ max: 512 })), sealed: optional(SEALED) })
/** What a sealed sign-up start holds. */
export const SIGNUP_SECRETS = object({ token: text({ max: 512 }) })

/** POST /v1/signup: the invited user and the TOTP secret kept pending until the sign-up completes. */
export interface SignupStarted {
  user: string
  cluster_name: string
  /** base32, for an authenticator app (or oathtool -b). */
  totp_secret: string
  otpauth_uri: string
}

/** POST /v1/signup's answer to a sealed request: a SignupStarted, sealed back. */
export interface SealedAnswer {
  sealed: string
}

const KEYS_AND_TTL = {
  ttl_ms: number({ above: 0, expected: 'a positive number of milliseconds' }),
  /** An OpenSSH public key line (ssh-ed25519). */
  ssh_public_key: text({ max: 4096 }),
  /** PEM (SubjectPublicKeyInfo). */
  tls_public_key: text({ max: 4096 }),
  /** A challenge from POST /v1/join/challenge, which both keys signed (shared/join-proof.ts, LOGIN_PURPOSE). */
  nonce: text({ max: 256 }),
  /** Base64 signatures of the proof message by the TLS key and the SSH key. */
  tls_signature: text({ max: 2048 }),
  ssh_signature: text({ max: 2048 }),
}

/**
 * Sets the password and enrols the second factor with its first code; the answer is a
 * login's (UserCerts), for these keys. The token, password and code are sealed
 * (SIGNUP_COMPLETE_SECRETS), for the challenge in `nonce`.
 */
export const SIGNUP_COMPLETE_BODY = object({ sealed: SEALED, ...KEYS_AND_TTL })
export const SIGNUP_COMPLETE_SECRETS = object({ token: text({ max: 512 }), password: text({ max: 1024 }), totp_code: text({ max: 16 }) })

/** A login: the password and code sealed (LOGIN_SECRETS), for the challenge in `nonce` and this user. */
export const LOGIN_BODY = object({ user: text({ max: 64 }), sealed: SEALED, ...KEYS_AND_TTL })
export const LOGIN_SECRETS = object({ password: text({ max: 1024 }), totp_code: text({ max: 16 }) })
/** The keys a login or a sign-up asks to have certified, with their proof. */
export type LoginKeyFields = Omit<Out<typeof LOGIN_BODY>, 'user' | 'sealed' | 'ttl_ms'>

/** What else of a login or a completed sign-up its sealed box is bound to: the keys to certify and the lifetime asked. */
export type SealedRequest = Pick<Out<typeof LOGIN_BODY>, 'ssh_public_key' | 'tls_public_key' | 'ttl_ms'>

/**
 * What a sealed box is for, which binds it: the route, the cluster and, for the last step,
 * the challenge, the user, the keys and the lifetime. A proxy that passes a login on could
 * otherwise swap in keys of its own, proven over the same challenge, and be certified as
 * the person who typed the password.
 */
export function sealedPurpose(route: 'POST /v1/signup' | 'POST /v1/signup/complete' | 'POST /v1/login', cluster: string, nonce = '', user = '', request?: SealedRequest): string {
  const bound = request ? [request.tls_public_key, request.ssh_public_key, request.ttl_ms] : []
  return JSON.stringify([route, cluster, nonce, user, ...bound])
}

/** The one answer to a wrong user name, password or code: which of them was wrong is not told. */
export const LOGIN_REFUSED = 'wrong user name, password or second factor code'

/**
 * GET /v1/known-hosts on a proxy's web port, with the user's certificate: the nodes' host
 * keys as known_hosts lines, for OpenSSH's KnownHostsCommand (`warren known-hosts`), so that
 * nodes that joined after the login are checked too. The proxy asks the auth server with
 * POST /v1/proxies/known-hosts, naming the user its certificate authenticated.
 */
export interface KnownHosts {
  known_hosts: string[]
  /** The same lines signed by the host CAs: the client writes only what a host CA it trusts signed (shared/signed-known-hosts.ts). */
  known_hosts_signatures?: KnownHostsSignature
}

export const KNOWN_HOSTS_BODY = object({ user: text({ max: 64 }) })
