// A host's side of recovery (auth/recovery.ts). Its certificate expired while it was
// offline, so it can no longer renew; it proves instead that it still holds the keys it
// registered at join: it signs a fresh challenge from the cluster with both, and sends that
// with its last certificate, anonymously, to where it joined (a proxy's web port, since a
// tunnel cannot open with an expired certificate, or the auth server).

import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { ApiClient } from './api-client.ts'
import { ApiError, WarrenError } from './errors.ts'
import type { NodeIdentity } from './identity-store.ts'
import { joinProofMessage, RECOVERY_PURPOSE, signProof } from './join-proof.ts'
import type { RecoverBodyIn, RenewedCertificates } from './protocol/hosts.ts'

/** The status the auth server answers a recovery with when the host's certificates expired longer ago than the recovery window. */
export const PAST_RECOVERY_WINDOW = 410

/** The status the auth server answers a recovery with when the host's certificate is still valid by its clock (it renews with it instead). */
export const STILL_RENEWABLE = 409

/**
 * The auth server refused the recovery because the certificate is still valid by its clock:
 * this host's clock runs ahead of the server's (by `clockAheadMs`, when the answer said its
 * time), and the certificate renews the usual way, with the server judging it by its clock.
 */
export class StillValidByServer extends WarrenError {
  readonly clockAheadMs?: number
  constructor(message: string, clockAheadMs?: number) {
    super(message)
    if (clockAheadMs !== undefined) this.clockAheadMs = clockAheadMs
  }
}

/** The recovery window has passed: only a new token re-admits the host. */
export class PastRecoveryWindow extends WarrenError {
  /** The command that makes that token. */
  readonly readmit: string
  constructor(message: string, readmit: string) {
    super(message)
    this.readmit = readmit
  }
}

/** The warrenctl command that makes the token re-admitting a host of this name and roles. */
export function readmitCommand(nodename: string, roles: string[]): string {
  // A token made for a node's name replaces the host registered with it.
  return roles.includes('node') ? `warrenctl nodes add --nodename=${nodename}` : `warrenctl tokens add --type=${roles.join(',')}`
}

/** The body of POST /v1/recover: the last certificate and both keys' signatures over the challenge. */
export function recoveryBody(identity: NodeIdentity, nonce: string): RecoverBodyIn {
  const tlsKey = createPrivateKey(identity.tlsKeyPem)
  const sshKey = createPrivateKey(identity.sshKeyPem)
  const message = joinProofMessage({
    purpose: RECOVERY_PURPOSE,
    clusterName: identity.clusterName,
    nonce,
    tlsPublicKey: new X509Certificate(identity.tlsCertPem).publicKey,
    sshPublicKey: createPublicKey(sshKey),
  })
  return { tls_cert: identity.tlsCertPem, nonce, tls_signature: signProof(message, tlsKey), ssh_signature: signProof(message, sshKey) }
}

/**
 * Asks where `identity` joined for new certificates; throws PastRecoveryWindow when only a
 * new token helps, StillValidByServer when the certificate needs no recovery by the server's clock.
 */
export async function recoverCertificates(identity: NodeIdentity): Promise<RenewedCertificates> {
  const client = new ApiClient({ server: identity.authServers[0], caPems: identity.hostCAPems })
  try {
    const { nonce } = await client.call('POST /v1/join/challenge')
    return await client.call('POST /v1/recover', { body: recoveryBody(identity, nonce) })
  } catch (error) {
    if (error instanceof ApiError && error.status === PAST_RECOVERY_WINDOW) throw new PastRecoveryWindow(error.message, readmitCommand(identity.nodename, identity.roles))
    if (error instanceof ApiError && error.status === STILL_RENEWABLE) throw new StillValidByServer(error.message, error.clockAheadMs)
    throw error
  } finally {
    await client.close()
  }
}
