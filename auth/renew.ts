// Renewing a host's certificates with its current identity, no token: when two thirds of a
// certificate's lifetime has passed, and after a CA rotation starts signing with a new key,
// every node and proxy gets new certificates for the same keys. Recovery (recovery.ts)
// renews here too, for a host that proved its key by a signed challenge instead.
//
// What a renewal may certify comes from the registry, never from the request: the key must
// be the TLS key registered at join (whose possession the caller proved, in its own TLS
// handshake or the tunnel's), the SSH key is the registered one, and the roles are the
// registered roles, which must still match the certificate. The only write is the new
// expiry in the host's registry record, conditional on the record it read, so a renewal
// never brings back a host removed meanwhile.
//
// Renewals cannot be abused to make the server sign in a loop: one is granted only when
// due (shared/renewal-window.ts); the result is remembered per host, so further requests
// presenting an older certificate get the same answer; anything else is refused (not due)
// with the date it will be due. Per host one renewal runs at a time (the others wait for
// it and are then answered from it), so a rotation in the middle of one is seen by the next.

import { X509Certificate } from 'node:crypto'
import { certSubject, issuedByAny, validNow } from '../shared/cert-subject.ts'
import { renewalDueAt, renewalNeeded } from '../shared/renewal-window.ts'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'
import type { Authority } from './authorities.ts'
import { HOST_CERT_TTL_MS, type HostIdentity, issueHostIdentity } from './issuer.ts'
import { KeyPolicyError, publicKeyFingerprint } from './key-policy.ts'
import type { NodeDirectory, NodeRecord } from './nodes.ts'

/** How many hosts' last renewals are kept to answer repeated requests (about 1.5 KB each). */
const REMEMBERED_RENEWALS = 10_000

export interface RenewalContext {
  hostCA: () => Authority
  nodes: NodeDirectory
  clusterName: string
  /** Why a host may not renew although registered (a lock), or undefined. */
  refused?: (hostId: string) => string | undefined
  /** `auth_service.host_cert_ttl`. */
  hostCertTtlMs?: number
  clock?: () => number
}

export interface Renewed extends HostIdentity {
  hostId: string
  /** False when the answer is the host's last renewal, given again. */
  issued: boolean
}

interface LastRenewal {
  identity: HostIdentity
  /** The signing CA that issued it: a later rotation makes it stale. */
  signer: string
  /** Its notBefore and fingerprint: another certificate presented that starts no later is one it replaced. */
  validFrom: number
  fingerprint: string
  /** When it is due for renewal itself: from then on it is no answer to give again. */
  dueAt: number
}

/** Certificates the cluster will not issue for this caller (not its registered key or roles, not a host it knows, a lock). */
export class RenewalRefusal extends Error {}

/** A renewal asked for before the certificate is due: it says when it will be. */
export class RenewalNotDue extends Error {}

const refuse = (message: string) => new RenewalRefusal(message)

function sameRoles(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',')
}

/**
 * Throws RenewalRefusal unless `cert` certifies the TLS key registered for `hostId`, with the roles it
 * was registered with: what a renewal or a recovery may certify.
 */
export function checkRegisteredHolder(cert: X509Certificate, hostId: string, registered: NodeRecord | undefined): asserts registered is NodeRecord {
  if (!registered?.sshPublicKey) throw refuse(`host ${hostId} is not registered in this cluster`)
  if (registered.tlsKeySha256 !== publicKeyFingerprint(cert.publicKey)) throw refuse(`the certificate's key is not the TLS key registered for host ${hostId}`)
  const { roles } = certSubject(cert)
  if (!sameRoles(registered.roles, roles))
    throw refuse(`the certificate's roles (${roles.join(',')}) are not the roles host ${hostId} was registered with (${registered.roles.join(',')})`)
}

export class Renewals {
  /** Certificates issued by renewals and recoveries on this server (for `warrenctl status` and tests). */
  issuedCount = 0
  private readonly context: RenewalContext
  private readonly clock: () => number
  private readonly last = new Map<string, LastRenewal>()
  /** Per host, the end of the renewals queued for it: one runs at a time. */
  private readonly queues = new Map<string, Promise<void>>()

  constructor(context: RenewalContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /**
   * Renews for the holder of `certPem`: the host itself (`/v1/renew`, its TLS handshake
   * proved the key) or a proxy on behalf of a node whose tunnel it holds (`nodeOnly`).
   * Throws RenewalRefusal, or RenewalNotDue.
   */
  async renew(certPem: string, options: { nodeOnly: boolean }): Promise<Renewed> {
    const { clusterName } = this.context
    let cert: X509Certificate
    try {
      cert = new X509Certificate(certPem)
    } catch {
      throw refuse('the certificate to renew cannot be read')
    }
    const now = this.clock()
    if (!issuedByAny(cert, this.context.hostCA().tlsCertPems)) throw refuse("the certificate to renew is not from this cluster's host CA")
    if (!validNow(cert, now)) throw refuse('the certificate to renew is not valid now')
    const subject = certSubject(cert)
    if (subject.cluster !== clusterName) throw refuse('the certificate to renew belongs to another cluster')
    const hostId = subject.commonName
    const registered = await this.context.nodes.get(hostId)
    checkRegisteredHolder(cert, hostId, registered)
    const refusal = this.context.refused?.(hostId)
    if (refusal) throw refuse(refusal)
    if (options.nodeOnly && !registered.roles.includes('node')) throw refuse(`host ${hostId} is not a node: it renews with its own certificate`)
    return this.reissue(cert, hostId, (signer, nowMs) => {
      if (!renewalNeeded(cert, signer, nowMs))
        throw new RenewalNotDue(`the certificate of host ${hostId} is not due for renewal until ${new Date(renewalDueAt(cert)).toISOString()}`)
    })
  }

  /**
   * New certificates for a host that proved its key by other means than a TLS handshake
   * (recovery.ts: its certificate expired). `cert` is its last certificate, which
   * checkRegisteredHolder has accepted; a repeated request is answered like a renewal, and
   * so is any while the certificates last issued here are not yet due: a certificate made up
   * with a later start would otherwise get new ones at every try.
   */
  recover(cert: X509Certificate, hostId: string): Promise<Renewed> {
    return this.reissue(cert, hostId, () => {}, true)
  }

  /**
   * Issues for `hostId` after the renewals queued before, or answers from the last one when
   * `cert` is older than it; `due` throws when this request may not have new certificates.
   */
  private reissue(cert: X509Certificate, hostId: string, due: (signer: string, nowMs: number) => void, answerFromLast = false): Promise<Renewed> {
    return this.exclusive(hostId, async () => {
      const now = this.clock()
      const hostCA = this.context.hostCA()
      const signer = hostCA.tlsCertPems[0]
      const last = this.last.get(hostId)
      const replaced = last !== undefined && cert.fingerprint256 !== last.fingerprint && (answerFromLast || cert.validFromDate.getTime() <= last.validFrom)
      if (last && replaced && last.signer === signer && now < last.dueAt) return { ...last.identity, hostId, issued: false }
      due(signer, now)
      // Read again: a renewal queued before this one, or a removal, may have changed it.
      const registered = await this.context.nodes.get(hostId)
      checkRegisteredHolder(cert, hostId, registered)
      const refusal = this.context.refused?.(hostId)
      if (refusal) throw refuse(refusal)
      let identity: HostIdentity
      try {
        identity = issueHostIdentity(hostCA, {
          hostId,
          nodename: registered.nodename,
          clusterName: this.context.clusterName,
          roles: registered.roles,
          tlsPublicKey: cert.publicKey,
          sshPublicKey: parseSshPublicKey(registered.sshPublicKey!),
          publicAddrs: registered.publicAddrs,
          ttlMs: this.context.hostCertTtlMs ?? HOST_CERT_TTL_MS,
          nowMs: now,
        })
      } catch (error) {
        if (error instanceof KeyPolicyError) throw refuse(error.message)
        throw error
      }
      if (!(await this.context.nodes.recordCertificate(hostId, identity.expires))) throw refuse(`host ${hostId} is not registered in this cluster`)
      this.issuedCount++
      const issued = new X509Certificate(identity.tlsCertPem)
      this.remember(hostId, { identity, signer, validFrom: issued.validFromDate.getTime(), fingerprint: issued.fingerprint256, dueAt: renewalDueAt(issued) })
      return { ...identity, hostId, issued: true }
    })
  }

  /** Runs `work` once the work queued before for `hostId` has ended. */
  private exclusive<T>(hostId: string, work: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(hostId) ?? Promise.resolve()).then(work)
    const ended = run.then(
      () => {},
      () => {},
    )
    this.queues.set(hostId, ended)
    void ended.then(() => {
      if (this.queues.get(hostId) === ended) this.queues.delete(hostId)
    })
    return run
  }

  private remember(hostId: string, renewal: LastRenewal): void {
    this.last.delete(hostId)
    this.last.set(hostId, renewal)
    if (this.last.size > REMEMBERED_RENEWALS) this.last.delete(this.last.keys().next().value!)
  }
}
