// Who may open a forwarded port on this node. The proxy judges the user's roles first; the
// node judges them again from the user's OpenSSH certificate, which the user's client sends
// with its request and the proxy passes on, so that a bug in a proxy's checks, or a stream
// forged past every proxy without a user's certificate, reaches no port the roles deny.
// The certificate proves who it was issued to, not who sent it, so the request must also be
// signed by the certificate's key, recently and once (shared/port-request-proof.ts): a proxy
// that saw a certificate, or a request, cannot open the port again with it.

import type { KeyObject } from 'node:crypto'
import { type Access, nodeRefusal, portRefusal } from '../shared/access.ts'
import { accessOfSshCertificate } from '../shared/access-cert.ts'
import type { PortProof, PortProofs } from '../shared/port-request-proof.ts'
import { type ParsedSshCertificate, parseSshCertificate, verifySshCertificate } from '../shared/ssh-cert.ts'

export interface PortAccessRequest {
  /** The OpenSSH certificate line the dial request carried, if any. */
  certificate?: string
  /** The request signed by the certificate's key, if the dial request carried it. */
  proof?: PortProof
  /** Proofs seen on this node: a proof taken is remembered here. */
  proofs: PortProofs
  /** This node: its cluster, and the names a user may give it (its name and host ID). */
  node: { cluster: string; names: string[] }
  /** The declared forwarded port asked for. */
  port: string
  /** The user CAs this node trusts. */
  trustedCaKeys: KeyObject[]
  /** This node's labels as access is judged, as they are now: its own, with those the cluster assigns in place of its own of the same keys. */
  labels: Record<string, string>
  now?: Date
}

/** Allowed, naming the certificate's user; or refused, with the reason (and the user when the certificate was readable). */
export type PortAccessVerdict = { allowed: true; user: string } | { allowed: false; user?: string; reason: string }

export const NO_CERTIFICATE = "no user certificate in the request: warren proxy port and the proxy must be of this node's version or later"

export function judgePortAccess(request: PortAccessRequest): PortAccessVerdict {
  if (request.certificate === undefined) return { allowed: false, reason: NO_CERTIFICATE }
  let cert: ParsedSshCertificate
  try {
    cert = parseSshCertificate(request.certificate)
    verifySshCertificate(cert, { trustedCaKeys: request.trustedCaKeys, type: 'user', now: request.now })
  } catch (error) {
    return { allowed: false, reason: (error as Error).message }
  }
  const user = cert.keyId
  let access: Access
  try {
    // A certificate without access reads as the built-in role access, as at SSH logins.
    access = accessOfSshCertificate(cert)
  } catch (error) {
    return { allowed: false, user, reason: (error as Error).message }
  }
  // Judged last, so that only a request the roles allow spends its proof.
  const denied =
    nodeRefusal(access, request.labels) ??
    portRefusal(access, request.port, request.labels) ??
    request.proofs.refusal(request.proof, request.node.cluster, request.node.names, request.port, cert.publicKey, user)
  return denied === undefined ? { allowed: true, user } : { allowed: false, user, reason: denied }
}
