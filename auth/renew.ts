// Renewing a host's certificates with its current identity, no token: after a CA rotation
// starts signing with a new key, every node and proxy gets certificates from it for the
// same keys, so nothing on the device changes but the certificates.

import { X509Certificate } from 'node:crypto'
import type { Authority } from './authorities.ts'
import { issueHostIdentity, type HostIdentity } from './issuer.ts'
import type { NodeDirectory } from './nodes.ts'
import { certSubject, issuedByAny } from '../shared/cert-subject.ts'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'

export interface RenewContext {
  hostCA: Authority
  nodes: NodeDirectory
  clusterName: string
}

/** Reads "DNS:a, IP Address:1.2.3.4" into plain names and addresses. */
function subjectAltNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ').map((entry) => entry.replace(/^(DNS|IP Address):/, '')).filter(Boolean)
}

export async function renewHostIdentity(context: RenewContext, certPem: string): Promise<HostIdentity & { hostId: string }> {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
  } catch {
    throw new Error('the certificate to renew cannot be read')
  }
  const now = Date.now()
  if (!issuedByAny(cert, context.hostCA.tlsCertPems)) throw new Error('the certificate to renew is not from this cluster\'s host CA')
  if (Date.parse(cert.validTo) <= now || Date.parse(cert.validFrom) > now + 60_000) throw new Error('the certificate to renew is not valid now')
  const subject = certSubject(cert)
  if (subject.cluster !== context.clusterName) throw new Error('the certificate to renew belongs to another cluster')
  const registered = await context.nodes.get(subject.commonName)
  if (!registered?.sshPublicKey) throw new Error(`host ${subject.commonName} is not registered in this cluster`)
  const identity = issueHostIdentity(context.hostCA, {
    hostId: subject.commonName,
    nodename: registered.nodename,
    clusterName: context.clusterName,
    roles: registered.roles,
    tlsPublicKey: cert.publicKey,
    sshPublicKey: parseSshPublicKey(registered.sshPublicKey),
    addresses: subjectAltNames(cert),
  })
  return { ...identity, hostId: subject.commonName }
}
