// Where a user's access (access.ts) travels: the same compact JSON in an OpenSSH certificate
// extension, which the node's SSH server reads, and in an X.509 extension of the TLS
// certificate, which the proxy reads. Both certificates are signed by the user CA, so the
// access is as trustworthy as the certificate; one without it was issued before roles
// existed and reads as the built-in role `access` (legacyAccess).
//
// Both also carry the user's generation (auth/users.ts): a random ID that `users reset` and
// `users rm` replace, so that proxies and nodes refuse the certificates issued before either
// by what they carry, not by their dates (stamped by whichever auth server's clock issued
// them). A certificate without one was issued by an earlier version, and is judged by its
// dates as before.

import type { X509Certificate } from 'node:crypto'
import { type Access, decodeAccess, encodeAccess, legacyAccess } from './access.ts'
import { oid, readElement, utf8String } from './der.ts'
import type { ParsedSshCertificate } from './ssh-cert.ts'
import type { CertificateExtension } from './x509.ts'

/** The OpenSSH certificate extension (a name with a domain, as PROTOCOL.certkeys asks). */
export const ACCESS_SSH_EXTENSION = 'warren-access@warren'

/**
 * The X.509 extension's OID: a private one under the UUID arc 2.25 (ITU-T X.667), which
 * needs no registration and clashes with nobody's.
 */
export const ACCESS_OID = '2.25.94283047316496007564464266383692597065'

/** The user's generation: an OpenSSH certificate extension and an X.509 one (OID as ACCESS_OID's). */
export const GENERATION_SSH_EXTENSION = 'warren-generation@warren'
export const GENERATION_OID = '2.25.26516563878505004651412305215987356976'

/** What a generation looks like (auth/users.ts makes them). */
export const GENERATION_FORM = /^[A-Za-z0-9_-]{1,64}$/

const ACCESS_OID_DER = oid(ACCESS_OID)
const GENERATION_OID_DER = oid(GENERATION_OID)
const EXTENSIONS_TAG = 0xa3 // [3] EXPLICIT in TBSCertificate
const BOOLEAN_TAG = 0x01

/**
 * The SSH certificate's extensions: the usual permit-* set, with agent and port forwarding
 * only as the access allows them (a stock sshd then refuses them too), and the access.
 */
export function sshAccessExtensions(access: Access, generation?: string): Record<string, string> {
  return {
    ...(generation === undefined ? {} : { [GENERATION_SSH_EXTENSION]: generation }),
    'permit-X11-forwarding': '',
    ...(access.agent_forwarding ? { 'permit-agent-forwarding': '' } : {}),
    ...(access.local_forwarding || access.remote_forwarding ? { 'permit-port-forwarding': '' } : {}),
    'permit-pty': '',
    'permit-user-rc': '',
    [ACCESS_SSH_EXTENSION]: encodeAccess(access),
  }
}

/** The TLS certificate's extension (not critical: other TLS stacks may ignore it). */
export function x509AccessExtension(access: Access): CertificateExtension {
  return { oid: ACCESS_OID, critical: false, value: utf8String(encodeAccess(access)) }
}

/** The TLS certificate's generation extension (not critical, as the access). */
export function x509GenerationExtension(generation: string): CertificateExtension {
  return { oid: GENERATION_OID, critical: false, value: utf8String(generation) }
}

/**
 * A generation as read from a certificate. One not of the form reads as none: the
 * certificate is then judged by its dates, as one of an earlier version (never less than that).
 */
function wellFormed(generation: string | undefined): string | undefined {
  return generation !== undefined && GENERATION_FORM.test(generation) ? generation : undefined
}

/** The user generation an accepted SSH user certificate carries, or undefined (issued by an earlier version). */
export function generationOfSshCertificate(cert: Pick<ParsedSshCertificate, 'extensions'>): string | undefined {
  return Object.hasOwn(cert.extensions, GENERATION_SSH_EXTENSION) ? wellFormed(cert.extensions[GENERATION_SSH_EXTENSION]) : undefined
}

/** The user generation an accepted TLS user certificate carries, or undefined (issued by an earlier version). */
export function generationOfX509Certificate(cert: X509Certificate): string | undefined {
  try {
    const value = x509Extension(cert.raw, GENERATION_OID_DER)
    if (value === undefined) return undefined
    const text = readElement(value)
    return text.tag === 0x0c ? wellFormed(text.contents.toString('utf8')) : undefined
  } catch {
    return undefined
  }
}

/** The access an accepted SSH user certificate carries; throws when it is malformed. */
export function accessOfSshCertificate(cert: Pick<ParsedSshCertificate, 'extensions' | 'principals'>): Access {
  if (!Object.hasOwn(cert.extensions, ACCESS_SSH_EXTENSION)) return legacyAccess(cert.principals)
  return decodeAccess(cert.extensions[ACCESS_SSH_EXTENSION])
}

/** The access an accepted TLS user certificate carries; throws when it is malformed. */
export function accessOfX509Certificate(cert: X509Certificate, principals: string[] = []): Access {
  const value = x509Extension(cert.raw, ACCESS_OID_DER)
  if (value === undefined) return legacyAccess(principals)
  const text = readElement(value)
  if (text.tag !== 0x0c) throw new Error("the certificate's access is not a UTF8String")
  return decodeAccess(text.contents.toString('utf8'))
}

/** The extnValue of the extension with that OID (DER), or undefined when the certificate has none. */
function x509Extension(der: Buffer, wanted: Buffer): Buffer | undefined {
  const certificate = readElement(der)
  const tbs = readElement(certificate.contents)
  for (let offset = 0; offset < tbs.contents.length; ) {
    const field = readElement(tbs.contents, offset)
    offset = field.end
    if (field.tag !== EXTENSIONS_TAG) continue
    const list = readElement(field.contents)
    for (let at = 0; at < list.contents.length; ) {
      const extension = readElement(list.contents, at)
      at = extension.end
      const id = readElement(extension.contents)
      if (!extension.contents.subarray(0, id.end).equals(wanted)) continue
      let next = readElement(extension.contents, id.end)
      if (next.tag === BOOLEAN_TAG) next = readElement(extension.contents, next.end)
      return next.contents
    }
  }
  return undefined
}
