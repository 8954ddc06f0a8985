// The challenges an ACME order has in flight, as the listeners need them: TLS-ALPN-01 by the
// domain a validator names in SNI, HTTP-01 by the token in its URL. Entries live only from
// the moment the challenge is set up until the ACME server has ruled on it.

import { createSecureContext, type SecureContext } from 'node:tls'
import { createTlsAlpnCertificate } from './tls-alpn-certificate.ts'

export class ChallengeResponder {
  private readonly tlsAlpn = new Map<string, SecureContext>()
  private readonly http = new Map<string, string>()

  /** Starts answering TLS-ALPN-01 for `domain`; the returned function stops it. */
  addTlsAlpn(domain: string, keyAuthorization: string): () => void {
    const name = normalize(domain)
    const { keyPem, certPem } = createTlsAlpnCertificate(name, keyAuthorization)
    const context = createSecureContext({ key: keyPem, cert: certPem, minVersion: 'TLSv1.2' })
    this.tlsAlpn.set(name, context)
    return () => {
      if (this.tlsAlpn.get(name) === context) this.tlsAlpn.delete(name)
    }
  }

  /** Starts answering HTTP-01 for `token`; the returned function stops it. */
  addHttp(token: string, keyAuthorization: string): () => void {
    this.http.set(token, keyAuthorization)
    return () => {
      if (this.http.get(token) === keyAuthorization) this.http.delete(token)
    }
  }

  tlsAlpnContext(servername: string): SecureContext | undefined {
    return this.tlsAlpn.get(normalize(servername))
  }

  httpKeyAuthorization(token: string): string | undefined {
    return this.http.get(token)
  }

  get pending(): number {
    return this.tlsAlpn.size + this.http.size
  }

  clear(): void {
    this.tlsAlpn.clear()
    this.http.clear()
  }
}

// DNS names compare without case, and SNI never carries the trailing dot.
function normalize(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, '')
}
