// Renewing a host's certificates with its current identity, no token: after a CA rotation
// starts signing with a new key, and in the last third of a certificate's lifetime, every
// node and proxy gets new certificates for the same keys.
//
// What a renewal may certify comes from the registry, never from the request: the key must
// be the TLS key registered at join (whose possession the caller proved, in its own TLS
// handshake or the tunnel's), the SSH key is the registered one, and the roles are the
// registered roles, which must still match the certificate. A renewal writes nothing.
//
// Renewals cannot be abused to make the server sign in a loop: one is granted only when
// due (shared/renewal-window.ts); the result is remembered per host, so further requests
// presenting an older certificate get the same answer; anything else is refused (409)
// with the date it will be due. Issuing is synchronous once the registry has been read,
// so per host at most one issuance runs at a time and the rest are answered from it.

import { X509Certificate } from 'node:crypto'
import type { Authority } from './authorities.ts'
import { issueHostIdentity, type HostIdentity } from './issuer.ts'
import { KeyPolicyError, publicKeyFingerprint } from './key-policy.ts'
import type { NodeDirectory } from './nodes.ts'
import { certSubject, issuedByAny, validNow } from '../shared/cert-subject.ts'
import { HttpError } from '../shared/json-http.ts'
import { renewalDueAt, renewalNeeded } from '../shared/renewal-window.ts'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'

/** How many hosts' last renewals are kept to answer repeated requests (about 1.5 KB each). */
const REMEMBERED_RENEWALS = 10_000

export interface RenewalContext {
  hostCA: () => Authority
  nodes: NodeDirectory
  clusterName: string
  /** Why a host may not renew although registered (a lock), or undefined. */
  refused?: (hostId: string) => string | undefined
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
}

const refuse = (message: string) => new HttpError(403, message)

function sameRoles(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',')
}

export class Renewals {
  /** Certificates issued by renewals on this server (for `warrenctl status` and tests). */
  issuedCount = 0
  private readonly context: RenewalContext
  private readonly clock: () => number
  private readonly last = new Map<string, LastRenewal>()

  constructor(context: RenewalContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /**
   * Renews for the holder of `certPem`: the host itself (`/v1/renew`, its TLS handshake
   * proved the key) or a proxy on behalf of a node whose tunnel it holds (`nodeOnly`).
   * Throws HttpError: 403 refused, 409 not due yet.
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
    if (!issuedByAny(cert, this.context.hostCA().tlsCertPems)) throw refuse('the certificate to renew is not from this cluster\'s host CA')
    if (!validNow(cert, now)) throw refuse('the certificate to renew is not valid now')
    const subject = certSubject(cert)
    if (subject.cluster !== clusterName) throw refuse('the certificate to renew belongs to another cluster')
    const hostId = subject.commonName
    const registered = await this.context.nodes.get(hostId)
    if (!registered?.sshPublicKey) throw refuse(`host ${hostId} is not registered in this cluster`)
    const refusal = this.context.refused?.(hostId)
    if (refusal) throw refuse(refusal)
    if (registered.tlsKeySha256 !== publicKeyFingerprint(cert.publicKey)) throw refuse(`the certificate's key is not the TLS key registered for host ${hostId}`)
    if (!sameRoles(registered.roles, subject.roles)) throw refuse(`the certificate's roles (${subject.roles.join(',')}) are not the roles host ${hostId} was registered with (${registered.roles.join(',')})`)
    if (options.nodeOnly && !registered.roles.includes('node')) throw refuse(`host ${hostId} is not a node: it renews with its own certificate`)

    // From here on nothing awaits: per host, one issuance at a time.
    const hostCA = this.context.hostCA()
    const signer = hostCA.tlsCertPems[0]
    const last = this.last.get(hostId)
    const replaced = last !== undefined && cert.fingerprint256 !== last.fingerprint && cert.validFromDate.getTime() <= last.validFrom
    if (last && replaced && last.signer === signer) return { ...last.identity, hostId, issued: false }
    if (!renewalNeeded(cert, signer, now)) {
      throw new HttpError(409, `the certificate of host ${hostId} is not due for renewal until ${new Date(renewalDueAt(cert)).toISOString()}`)
    }
    let identity: HostIdentity
    try {
      identity = issueHostIdentity(hostCA, {
        hostId,
        nodename: registered.nodename,
        clusterName,
        roles: registered.roles,
        tlsPublicKey: cert.publicKey,
        sshPublicKey: parseSshPublicKey(registered.sshPublicKey),
        publicAddrs: registered.publicAddrs,
        nowMs: now,
      })
    } catch (error) {
      if (error instanceof KeyPolicyError) throw refuse(error.message)
      throw error
    }
    this.issuedCount++
    const issued = new X509Certificate(identity.tlsCertPem)
    this.remember(hostId, { identity, signer, validFrom: issued.validFromDate.getTime(), fingerprint: issued.fingerprint256 })
    return { ...identity, hostId, issued: true }
  }

  private remember(hostId: string, renewal: LastRenewal): void {
    this.last.delete(hostId)
    this.last.set(hostId, renewal)
    if (this.last.size > REMEMBERED_RENEWALS) this.last.delete(this.last.keys().next().value!)
  }
}
