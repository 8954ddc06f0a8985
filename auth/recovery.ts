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
import type { IncomingMessage } from 'node:http'
import type { Authority } from './authorities.ts'
import type { Backend } from './backend/backend.ts'
import { ChallengeRefusal, type JoinChallenges } from './join-challenge.ts'
import type { NodeDirectory } from './nodes.ts'
import type { FailureRateLimiter } from './rate-limit.ts'
import { checkRegisteredHolder, type Renewals } from './renew.ts'
import { certSubject, issuedByAny, validNow } from '../shared/cert-subject.ts'
import { describeTtl } from '../shared/duration.ts'
import { HttpError, readJson, stringField } from '../shared/json-http.ts'
import { joinProofMessage, RECOVERY_PURPOSE, verifyProof } from '../shared/join-proof.ts'
import type { Logger } from '../shared/log.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { PAST_RECOVERY_WINDOW, readmitCommand } from '../shared/recover.ts'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'

export interface RecoveryContext {
  backend: Backend
  nodes: NodeDirectory
  renewals: Renewals
  challenges: JoinChallenges
  hostCA: () => Authority
  userCA: () => Authority
  clusterName: string
  /** `auth_service.recovery_window`: how long after its certificates expired a host may recover. */
  recoveryWindowMs: number
  /** The failed-join limiter: refused recoveries are charged to it. */
  limiter: FailureRateLimiter
  log: Logger
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

const refuse = (message: string) => new HttpError(403, message)

/** Validates the request body; every problem is a 400 naming the field. */
export function parseRecoveryRequest(body: Record<string, unknown>): RecoveryRequest {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(stringField(body, 'tls_cert', { max: 16_384 }) as string)
  } catch (error) {
    if (error instanceof HttpError) throw error
    throw new HttpError(400, 'field "tls_cert" must be a PEM certificate')
  }
  return {
    cert,
    nonce: stringField(body, 'nonce', { max: 256 }) as string,
    tlsSignature: stringField(body, 'tls_signature', { max: 2048 }) as string,
    sshSignature: stringField(body, 'ssh_signature', { max: 2048 }) as string,
  }
}

export class Recoveries {
  private readonly context: RecoveryContext
  private readonly clock: () => number

  constructor(context: RecoveryContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /** POST /v1/recover from `address` (the client's, as the proxy saw it when one carried the request). */
  async handle(req: IncomingMessage, address: string): Promise<RenewedCertificates> {
    const { limiter, log } = this.context
    // As for joins: a try is taken before the body is read, and given back on success.
    const wait = limiter.reserve(address)
    if (wait > 0) {
      log.warn('recovery refused: too many failed attempts', { from: address })
      throw new HttpError(429, `too many failed join attempts from ${address}; try again in ${Math.ceil(wait / 1000)}s`, { 'retry-after': String(Math.ceil(wait / 1000)) })
    }
    let host = '?'
    try {
      const request = parseRecoveryRequest(await readJson(req))
      host = certSubject(request.cert).commonName
      const recovered = await this.recover(request)
      limiter.refund(address)
      log.info('host certificates recovered', { host_id: host, from: address, issued: recovered.issued })
      return { tls_cert: recovered.tlsCertPem, ssh_cert: recovered.sshCert, host_ca_certs: this.context.hostCA().tlsCertPems, user_ca_ssh_keys: this.context.userCA().sshPublicKeys }
    } catch (error) {
      if (!(error instanceof HttpError)) throw error
      const message = `recovery refused for host ${host}: ${error.message}`
      log.warn(message, { from: address })
      throw new HttpError(error.status, message, error.headers)
    }
  }

  /** Throws HttpError: 403 refused, 409 the certificate is still usable, 410 past the recovery window. */
  async recover(request: RecoveryRequest): Promise<Awaited<ReturnType<Renewals['recover']>>> {
    const { challenges, clusterName, nodes } = this.context
    const { cert } = request
    let spend
    try {
      spend = challenges.spend(request.nonce)
    } catch (error) {
      if (error instanceof ChallengeRefusal) throw refuse(error.message)
      throw error
    }
    const subject = certSubject(cert)
    if (subject.cluster !== clusterName) throw refuse('the certificate belongs to another cluster')
    const hostId = subject.commonName
    const registered = await nodes.get(hostId)
    if (!registered) throw refuse(`host ${hostId} is not registered in this cluster: it was removed or replaced, and joining again needs a new token`)
    const barred = await this.refusedHost(hostId)
    if (barred) throw refuse(barred)
    checkRegisteredHolder(cert, hostId, registered)
    const message = joinProofMessage({ purpose: RECOVERY_PURPOSE, clusterName, nonce: request.nonce, tlsPublicKey: cert.publicKey, sshPublicKey: parseSshPublicKey(registered.sshPublicKey!) })
    if (!verifyProof(message, cert.publicKey, request.tlsSignature)) throw refuse('field "tls_signature" is not a signature by the TLS key registered for this host')
    if (!verifyProof(message, parseSshPublicKey(registered.sshPublicKey!), request.sshSignature)) throw refuse('field "ssh_signature" is not a signature by the SSH key registered for this host')

    const now = this.clock()
    if (validNow(cert, now) && issuedByAny(cert, this.context.hostCA().tlsCertPems)) {
      throw new HttpError(409, `the certificate of host ${hostId} is still valid: it renews with it instead`)
    }
    const expired = registered.certExpires ?? cert.validToDate.getTime()
    if (now > expired + this.context.recoveryWindowMs) {
      const readmit = readmitCommand(registered.nodename, registered.roles)
      throw new HttpError(PAST_RECOVERY_WINDOW, `the certificates of host ${hostId} ("${registered.nodename}") expired on ${new Date(expired).toISOString()}, longer ago than the recovery window (${describeTtl(this.context.recoveryWindowMs)}): re-admit it with "${readmit}" and join it again with that token`)
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
