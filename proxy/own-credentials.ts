// The proxy's own credentials in the forms its listeners use, each built once per change of
// what it is made from: parsing PEMs for every connection would be wasted work.

import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'
import type { NodeIdentity } from '../shared/identity-store.ts'
import { sessionIdContext, TICKET_LIFETIME_S, type TicketKeys } from './ticket-keys.ts'

export interface OwnCredentialsSource {
  identity: () => NodeIdentity
  /** The CAs trusted now, host CAs and user CAs. */
  hostCAPems: () => string[]
  userCAPems: () => string[]
  ticketKeys: TicketKeys
}

export class OwnCredentials {
  private readonly source: OwnCredentialsSource
  private cachedContext?: { key: string; context: SecureContext }
  private cachedStreamCredentials?: { pem: string; cert: X509Certificate; key: KeyObject }

  constructor(source: OwnCredentialsSource) {
    this.source = source
  }

  /**
   * The TLS context of every listener, for a change of certificates, CAs or ticket key.
   * Tickets are sealed with the key kept on disk, so they outlive a restart (every handler
   * checks the certificate a resumed session carries).
   */
  secureContext(): SecureContext {
    const identity = this.source.identity()
    const ticketKey = this.source.ticketKeys.current()
    const cas = [...this.source.hostCAPems(), ...this.source.userCAPems()]
    const key = [ticketKey.created, identity.tlsCertPem, ...cas].join('')
    if (this.cachedContext?.key !== key) {
      const context = createSecureContext({ key: identity.tlsKeyPem, cert: identity.tlsCertPem, ca: cas, ticketKeys: ticketKey.key, sessionTimeout: TICKET_LIFETIME_S })
      // OpenSSL resumes sessions that requested a client certificate only within the same
      // session ID context, which tls.Server sets for its own contexts; this one outlives restarts.
      ;(context.context as { setSessionIdContext(id: string): void }).setSessionIdContext(sessionIdContext(identity.clusterName))
      this.cachedContext = { key, context }
    }
    return this.cachedContext.context
  }

  /** The host certificate and key that sign plain SSH streams' hellos (ssh-stream-gateway.ts). */
  streamCredentials(): { cert: X509Certificate; key: KeyObject } {
    const identity = this.source.identity()
    if (this.cachedStreamCredentials?.pem !== identity.tlsCertPem) {
      this.cachedStreamCredentials = { pem: identity.tlsCertPem, cert: new X509Certificate(identity.tlsCertPem), key: createPrivateKey(identity.tlsKeyPem) }
    }
    return this.cachedStreamCredentials
  }
}
