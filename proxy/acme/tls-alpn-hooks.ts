// How a server-side TLSSocket answers TLS-ALPN-01: the challenge certificate goes only to a
// ClientHello that offers ALPN `acme-tls/1` for a domain with a pending challenge, and such a
// connection carries nothing after the handshake (RFC 8737 section 3).
//
// Node gives no single callback that sees both the SNI name and the offered protocols before
// the certificate is chosen. It runs ALPNCallback and SNICallback in the order OpenSSL
// handles the ClientHello: in TLS 1.3 ALPN comes first (it decides early data), so the ALPN
// choice can pick the certificate that SNICallback then installs; in TLS 1.2 the certificate
// is chosen first, so a TLS 1.2 validator is refused `acme-tls/1` rather than answered with
// the wrong certificate. The validators in use (Let's Encrypt's, Pebble) speak TLS 1.3.

import type { SecureContext } from 'node:tls'
import { ACME_TLS_ALPN } from './tls-alpn-certificate.ts'

export type ChallengeLookup = (servername: string) => SecureContext | undefined

type SniCallback = (servername: string, callback: (error: Error | null, context?: SecureContext) => void) => void

export interface TlsAlpnHooks {
  /**
   * For TLSSocket's `SNICallback`: installs the challenge certificate once ALPN chose it,
   * else the context `byName` gives for the SNI name, else keeps the socket's own.
   */
  SNICallback: SniCallback
  /**
   * Call first from the socket's ALPNCallback: `acme-tls/1` when this handshake answers a
   * challenge; undefined to let the usual protocol choice go on.
   */
  selectAlpn(info: { servername: string; protocols: string[] }): string | undefined
  /** Whether this connection answered a challenge: close it once the handshake is done. */
  readonly answering: boolean
}

/**
 * One per connection: the hooks keep what this handshake has decided so far. `byName`
 * optionally picks the ordinary context by SNI name (the ACME certificate for its domains,
 * the cluster's own for other names); the SNI name is known in both TLS versions.
 */
export function tlsAlpnHooks(lookup: ChallengeLookup, byName?: (servername: string) => SecureContext | undefined): TlsAlpnHooks {
  let certificateChosen = false
  let challenge: SecureContext | undefined
  return {
    SNICallback(servername, callback) {
      certificateChosen = true
      let context = challenge
      try {
        context ??= byName?.(servername)
      } catch (error) {
        return callback(error as Error)
      }
      // Undefined keeps the socket's own context.
      callback(null, context)
    },
    selectAlpn({ servername, protocols }) {
      if (certificateChosen || !servername || !protocols.includes(ACME_TLS_ALPN)) return undefined
      challenge = lookup(servername)
      return challenge ? ACME_TLS_ALPN : undefined
    },
    get answering() {
      return challenge !== undefined
    },
  }
}
