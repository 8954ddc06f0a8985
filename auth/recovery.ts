// Recovery: a host whose certificate expired (a device offline for longer than its
// lifetime) cannot renew, since renewals need a valid certificate. It proves instead that
// it still holds the keys it registered at join, with the join's primitives: it signs a
// fresh challenge (join-challenge.ts) with its TLS and SSH keys (shared/join-proof.ts, under
// the recovery purpose) and sends its last certificate. The auth server then certifies the
// registered keys again, with the registered roles, as a renewal would (renew.ts).
//
// Refused: hosts no longer registered (removed, or replaced by a token made for their
// name), keys other than the registered ones, certificates that are still usable (those
// renew), and certificates that expired longer ago than `auth_service.recovery_window`,
// which need a new token. Every refused attempt is charged to the failed-join rate limiter,
// as a guessed token is: the request is anonymous, since the caller holds no valid
// certificate. It comes straight to the auth server, or through a proxy's web API (a
// tunnel cannot open with an expired certificate).

import { X509Certificate } from 'node:crypto'
import { certSubject, issuedByAny, validNow } from '../shared/cert-subject.ts'
import { describeTtl } from '../shared/duration.ts'
import { joinProofMessage, RECOVERY_PURPOSE, verifyProof } from '../shared/join-proof.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import type { RecoverBody } from '../shared/protocol/hosts.ts'
import { readmitCommand } from '../shared/recover.ts'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'
import type { Authority } from './authorities.ts'
import type { Backend } from './backend/backend.ts'
import type { JoinChallenges } from './join-challenge.ts'
import type { NodeDirectory } from './nodes.ts'
import { checkRegisteredHolder, type Renewals } from './renew.ts'

export interface RecoveryContext {
  backend: Backend
  nodes: NodeDirectory
  renewals: Renewals
  challenges: JoinChallenges
  hostCA: () => Authority
  clusterName: string
  /** `auth_service.recovery_window`: how long after its certificates expired a host may recover. */
  recoveryWindowMs: number
  /**
   * Why something other than the registry bars this host now (a lock, a removal record), or
   * undefined. Nothing does unless given.
   */
  refusedHost?: (hostId: string) => Promise<string | undefined>
  clock?: () => number
}

export interface RecoveryRequest {
  /** The host's last certificate: its host ID, roles and TLS key. */
  cert: X509Certificate
  nonce: string
  tlsSignature: string
  sshSignature: string
}

/** A recovery the cluster refuses: not a host it knows, not its keys, a spent or foreign challenge, a lock. */
export class RecoveryRefusal extends Error {}

/** The certificate is still valid: the host renews with it instead. */
export class StillRenewable extends RecoveryRefusal {}

/** The certificates expired longer ago than the recovery window: only a new token re-admits the host. */
export class RecoveryWindowPassed extends RecoveryRefusal {}

const refuse = (message: string) => new RecoveryRefusal(message)

/** The body as a recovery reads it; a certificate that cannot be read is a ProtocolError naming the field. */
export function parseRecoveryRequest(body: RecoverBody): RecoveryRequest {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(body.tls_cert)
  } catch {
    throw new ProtocolError('POST /v1/recover', 'tls_cert', 'field "tls_cert" must be a PEM certificate')
  }
  return { cert, nonce: body.nonce, tlsSignature: body.tls_signature, sshSignature: body.ssh_signature }
}

export class Recoveries {
  private readonly context: RecoveryContext
  private readonly clock: () => number

  constructor(context: RecoveryContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /** Throws RecoveryRefusal (StillRenewable, RecoveryWindowPassed), ChallengeRefusal or RenewalRefusal. */
  async recover(request: RecoveryRequest): Promise<Awaited<ReturnType<Renewals['recover']>>> {
    const { challenges, clusterName, nodes } = this.context
    const { cert } = request
    const spend = challenges.spend(request.nonce)
    const subject = certSubject(cert)
    if (subject.cluster !== clusterName) throw refuse('the certificate belongs to another cluster')
    const hostId = subject.commonName
    const registered = await nodes.get(hostId)
    if (!registered) throw refuse(`host ${hostId} is not registered in this cluster: it was removed or replaced, and joining again needs a new token`)
    const barred = await this.refusedHost(hostId)
    if (barred) throw refuse(barred)
    checkRegisteredHolder(cert, hostId, registered)
    const message = joinProofMessage({
      purpose: RECOVERY_PURPOSE,
      clusterName,
      nonce: request.nonce,
      tlsPublicKey: cert.publicKey,
      sshPublicKey: parseSshPublicKey(registered.sshPublicKey!),
    })
    if (!verifyProof(message, cert.publicKey, request.tlsSignature)) throw refuse('field "tls_signature" is not a signature by the TLS key registered for this host')
    if (!verifyProof(message, parseSshPublicKey(registered.sshPublicKey!), request.sshSignature))
      throw refuse('field "ssh_signature" is not a signature by the SSH key registered for this host')

    const now = this.clock()
    if (validNow(cert, now) && issuedByAny(cert, this.context.hostCA().tlsCertPems)) {
      throw new StillRenewable(`the certificate of host ${hostId} is still valid: it renews with it instead`)
    }
    const expired = registered.certExpires ?? cert.validToDate.getTime()
    if (now > expired + this.context.recoveryWindowMs) {
      const readmit = readmitCommand(registered.nodename, registered.roles)
      throw new RecoveryWindowPassed(
        `the certificates of host ${hostId} ("${registered.nodename}") expired on ${new Date(expired).toISOString()}, longer ago than the recovery window (${describeTtl(this.context.recoveryWindowMs)}): re-admit it with "${readmit}" and join it again with that token`,
      )
    }
    // Spent only once every check has passed; a nonce used twice is refused.
    if (!(await this.context.backend.txn(spend.conditions, spend.operations))) throw refuse('the join challenge was already used: ask for a new one')
    return this.context.renewals.recover(cert, hostId)
  }

  /** The check that locks and removal records plug into: a reason when the host is barred. */
  private async refusedHost(hostId: string): Promise<string | undefined> {
    return this.context.refusedHost?.(hostId)
  }
}
