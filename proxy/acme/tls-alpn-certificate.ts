// The certificate that answers an ACME TLS-ALPN-01 challenge (RFC 8737 section 3): self-signed,
// naming only the domain being validated, with the critical acmeIdentifier extension holding
// the SHA-256 of the key authorization.

import { createHash, generateKeyPairSync } from 'node:crypto'
import { octetString } from '../../shared/der.ts'
import { type CertificateExtension, createCertificate } from '../../shared/x509.ts'

/** The ALPN protocol a validation server offers, and the only one that gets this certificate. */
export const ACME_TLS_ALPN = 'acme-tls/1'

/** id-pe-acmeIdentifier (RFC 8737 section 6.1). */
export const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31'

const DAY_MS = 86_400_000

export interface TlsAlpnCertificate {
  keyPem: string
  certPem: string
}

/** The acmeIdentifier extension: extnValue is the DER of `Authorization ::= OCTET STRING (SIZE (32))`. */
function acmeIdentifierExtension(keyAuthorization: string): CertificateExtension {
  const digest = createHash('sha256').update(keyAuthorization).digest()
  return { oid: ACME_IDENTIFIER_OID, critical: true, value: octetString(digest) }
}

export function createTlsAlpnCertificate(domain: string, keyAuthorization: string, now = Date.now()): TlsAlpnCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  // An empty subject: the alternative name (critical, then) is the identity (RFC 5280 4.2.1.6).
  const certPem = createCertificate({
    subject: {},
    issuer: {},
    publicKey,
    signingKey: privateKey,
    // Validators do not need a long window; a day either side absorbs clock skew.
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DAY_MS),
    dnsNames: [domain],
    extensions: [acmeIdentifierExtension(keyAuthorization)],
  })
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, certPem }
}
