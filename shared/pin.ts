// CA pins: an agent joining a cluster checks the CA it is shown against a pin it was given
// out of band, so a man in the middle cannot hand it a CA of its own. The pin hashes the
// CA's public key (not the whole certificate), so it survives the CA certificate's renewal.

import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto'
import { UsageError, WarrenError } from './errors.ts'

const PIN_PREFIX = 'sha256:'

/**
 * The one certificate `pem` holds, re-encoded with nothing beside it. TLS's `ca:` trusts every
 * certificate of a text while a pin checks one: a text with another after it would have the
 * pin of one certificate vouch for two. `what` names the text in the refusal.
 */
export function singleCertificate(pem: string, what = 'the certificate text'): string {
  // Every PEM block counts, whatever its label: OpenSSL's reader skips what it cannot use and reads on.
  const blocks = typeof pem === 'string' ? (pem.match(/-----BEGIN /g)?.length ?? 0) : 0
  const certificates = typeof pem === 'string' ? (pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0) : 0
  if (blocks !== 1 || certificates !== 1) {
    const others = blocks > certificates ? ` and ${blocks - certificates} other PEM block${blocks - certificates === 1 ? '' : 's'}` : ''
    throw new WarrenError(
      `${what} holds ${certificates} certificate${certificates === 1 ? '' : 's'}${others}, where it must hold exactly one certificate: TLS would trust every certificate in it, while a pin checks only one`,
    )
  }
  return new X509Certificate(pem).toString()
}

/** `sha256:<hex>` of the SHA-256 over the certificate's SubjectPublicKeyInfo DER; a text of more than one certificate is refused. */
export function caPin(certPem: string): string {
  return PIN_PREFIX + spkiDigest(certPem).toString('hex')
}

/** Checks the form `sha256:` + 64 hex digits and returns it in lower case. */
export function parsePin(text: string): string {
  const pin = text.trim()
  if (!/^sha256:[0-9a-fA-F]{64}$/.test(pin)) {
    throw new UsageError(`invalid CA pin ${JSON.stringify(text)}: expected sha256: followed by 64 hex digits`)
  }
  return pin.toLowerCase()
}

/** Whether any of the certificates (one per text: a text of several is refused) carries the pinned public key. */
export function pinMatches(certPems: string[], pin: string): boolean {
  const wanted = Buffer.from(parsePin(pin).slice(PIN_PREFIX.length), 'hex')
  let matched = false
  for (const certPem of certPems) {
    // Compare against every certificate, without shortcuts, so timing reveals nothing.
    if (timingSafeEqual(spkiDigest(certPem), wanted)) matched = true
  }
  return matched
}

function spkiDigest(certPem: string): Buffer {
  const spki = new X509Certificate(singleCertificate(certPem)).publicKey.export({ type: 'spki', format: 'der' })
  return createHash('sha256').update(spki).digest()
}
