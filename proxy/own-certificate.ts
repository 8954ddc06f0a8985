// The proxy's own host certificate, kept valid as every host's is (shared/host-renewal.ts):
// renewed straight from the auth server with the proxy's current identity. New connections
// get the new certificate; live tunnels and user connections keep the one they opened with.

import { ApiClient } from '../shared/api-client.ts'
import { HostRenewal } from '../shared/host-renewal.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'

export interface OwnCertificateOptions {
  identity: () => NodeIdentity
  /** Puts new certificates in place. */
  apply: (renewed: RenewedCertificates, how: 'renewed' | 'recovered') => void
  log: Logger
}

export function ownCertificateRenewal(options: OwnCertificateOptions): HostRenewal {
  return new HostRenewal({ what: "this proxy's certificate", ...options, renew: renewFromAuthServer })
}

async function renewFromAuthServer(identity: NodeIdentity): Promise<RenewedCertificates> {
  // A client of its own: the proxy's main one is replaced when certificates or CAs change.
  const client = new ApiClient({ server: identity.authServers[0], caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem, authServer: true })
  try {
    return await client.call('POST /v1/renew')
  } finally {
    await client.close()
  }
}
