// The certificate that answers an ACME TLS-ALPN-01 challenge (RFC 8737 section 3): self-signed,
// naming only the domain being validated, with the critical acmeIdentifier extension holding
// the SHA-256 of the key authorization. auth/x509.ts cannot add that extension, so the few
// DER elements are built here over shared/der.ts.

import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import {
  bitString, boolean, explicit, implicit, integer, octetString, oid, sequence, time,
} from '../../shared/der.ts'

/** The ALPN protocol a validation server offers, and the only one that gets this certificate. */
export const ACME_TLS_ALPN = 'acme-tls/1'

/** id-pe-acmeIdentifier (RFC 8737 section 6.1). */
export const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31'

const VERSION_3 = explicit(0, integer(2))
const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'))
const EMPTY_NAME = sequence()
const SUBJECT_ALT_NAME = oid('2.5.29.17')
const ACME_IDENTIFIER = oid(ACME_IDENTIFIER_OID)
const DAY_MS = 86_400_000

export interface TlsAlpnCertificate {
  keyPem: string
  certPem: string
}

/** The acmeIdentifier extension: extnValue is the DER of `Authorization ::= OCTET STRING (SIZE (32))`. */
export function acmeIdentifierExtension(keyAuthorization: string): Buffer {
  const digest = createHash('sha256').update(keyAuthorization).digest()
  return sequence(ACME_IDENTIFIER, boolean(true), octetString(octetString(digest)))
}

export function createTlsAlpnCertificate(domain: string, keyAuthorization: string, now = Date.now()): TlsAlpnCertificate {
  if (!/^[\x21-\x7e]+$/.test(domain)) throw new Error(`invalid domain for a TLS-ALPN-01 certificate: ${JSON.stringify(domain)}`)
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const serial = randomBytes(16)
  serial[0] &= 0x7f
  // With an empty subject the alternative name is the identity, so it is critical (RFC 5280 4.2.1.6).
  const altName = sequence(SUBJECT_ALT_NAME, boolean(true), octetString(sequence(implicit(2, Buffer.from(domain, 'latin1')))))
  const tbs = sequence(
    VERSION_3,
    integer(serial),
    ECDSA_WITH_SHA256,
    EMPTY_NAME,
    // Validators do not need a long window; a day either side absorbs clock skew.
    sequence(time(new Date(now - DAY_MS)), time(new Date(now + DAY_MS))),
    EMPTY_NAME,
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(altName, acmeIdentifierExtension(keyAuthorization))),
  )
  const signature = sign('sha256', tbs, privateKey)
  const der = sequence(tbs, ECDSA_WITH_SHA256, bitString(signature))
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    certPem: `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`,
  }
}
