// `warren login`'s requests through a proxy: what the person types (the sign-up token, the
// password, the code) sealed for the auth server, so the proxy reads none of it
// (shared/sealed-login.ts), and the keys to certify proven over the same challenge
// (credentials-files.ts). Nothing is sent unless the cluster's sealing key is signed by a
// host CA this client trusts.

import type { KeyObject } from 'node:crypto'
import type { ApiClient } from '../shared/api-client.ts'
import { WarrenError } from '../shared/errors.ts'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { type SealedRequest, type SignupStarted, sealedPurpose } from '../shared/protocol/logins.ts'
import { openAnswer, type Sealed, seal, trustedSealingKey } from '../shared/sealed-login.ts'
import { provenKeyFields, type UserKeys } from './credentials-files.ts'

/** The cluster as this client trusts it: its name and host CAs. */
export interface TrustedCluster {
  name: string
  caPems: string[]
}

/** A fresh challenge, and the cluster's sealing key with it. */
export interface SealingChallenge {
  cluster: string
  nonce: string
  sealingKey: KeyObject
}

export async function sealingChallenge(client: ApiClient, cluster: TrustedCluster): Promise<SealingChallenge> {
  const challenge = await client.call('POST /v1/join/challenge')
  const sealingKey = trustedSealingKey(cluster.name, challenge.sealing_key, cluster.caPems)
  if (!sealingKey) {
    throw new WarrenError(
      `cluster "${cluster.name}" offers no sealing key signed by its CA, so nothing was sent: its auth server is of an earlier version, or the proxy is not what it claims`,
    )
  }
  return { cluster: cluster.name, nonce: challenge.nonce, sealingKey }
}

/** Whose invitation `token` is, and the second factor's secret to enrol, both ways sealed. */
export async function startSignup(client: ApiClient, cluster: TrustedCluster, token: string): Promise<SignupStarted> {
  const { sealingKey } = await sealingChallenge(client, cluster)
  const { sealed, replyKey } = seal(sealingKey, sealedPurpose('POST /v1/signup', cluster.name), { token })
  const answer = await client.call('POST /v1/signup', { body: { sealed } })
  if (!('sealed' in answer)) throw new WarrenError('the sign-up answer came unsealed: it was refused')
  const started = openAnswer(replyKey, answer.sealed) as SignupStarted
  if (typeof started?.user !== 'string' || typeof started.otpauth_uri !== 'string') throw new WarrenError('the sign-up answer is malformed')
  return started
}

/** The token, password and code of a sign-up, sealed for `challenge` and the keys and lifetime of `request`. */
export function sealedSignup(challenge: SealingChallenge, request: SealedRequest, secrets: { token: string; password: string; totp_code: string }): Sealed {
  return seal(challenge.sealingKey, sealedPurpose('POST /v1/signup/complete', challenge.cluster, challenge.nonce, '', request), secrets).sealed
}

/** The password and code of `user`'s login, sealed for `challenge` and the keys and lifetime of `request`. */
export function sealedLogin(challenge: SealingChallenge, user: string, request: SealedRequest, secrets: { password: string; totp_code: string }): Sealed {
  return seal(challenge.sealingKey, sealedPurpose('POST /v1/login', challenge.cluster, challenge.nonce, user, request), secrets).sealed
}

export async function completeSignup(
  client: ApiClient,
  cluster: TrustedCluster,
  secrets: { token: string; password: string; totp_code: string },
  keys: UserKeys,
  ttlMs: number,
): Promise<UserCerts> {
  const challenge = await sealingChallenge(client, cluster)
  const request = { ...provenKeyFields(keys, cluster.name, challenge.nonce), ttl_ms: ttlMs }
  const body = { ...request, sealed: sealedSignup(challenge, request, secrets) }
  return client.call('POST /v1/signup/complete', { body })
}

export async function logIn(
  client: ApiClient,
  cluster: TrustedCluster,
  user: string,
  secrets: { password: string; totp_code: string },
  keys: UserKeys,
  ttlMs: number,
): Promise<UserCerts> {
  const challenge = await sealingChallenge(client, cluster)
  const request = { ...provenKeyFields(keys, cluster.name, challenge.nonce), ttl_ms: ttlMs }
  const body = { user, ...request, sealed: sealedLogin(challenge, user, request, secrets) }
  return client.call('POST /v1/login', { body })
}
