// The proxy's section of the status document (shared/status.ts), built from its state when
// someone asks: where it listens, the tunnels it holds (one per node), the live set it
// announces, its handshake gate's counts and, with ACME, its web certificate.

import { X509Certificate } from 'node:crypto'
import { caPin } from '../shared/pin.ts'
import { type AcmeStatus, certificateStatus, type ProxyStatus, statusTime } from '../shared/status.ts'
import type { ProxyService } from './proxy.ts'
import type { WebCertificates } from './web-certificates.ts'

/** For a proxy whose start() has resolved. */
export function proxyStatus(proxy: ProxyService): ProxyStatus {
  const { identity, tunnels } = proxy
  const hosts = tunnels.list().map((tunnel) => ({
    host_id: tunnel.hostId,
    nodename: tunnel.nodename,
    remote_addr: tunnel.remoteAddress,
    since: statusTime(tunnel.connectedAt),
    pacing: tunnel.pacing,
  }))
  const acme = proxy.acme
  const unsaved = proxy.keeper.status
  return {
    proxy_id: identity.hostId,
    nodename: identity.nodename,
    cluster: identity.clusterName,
    listen: { ...proxy.addresses, multiplexed: proxy.multiplexed },
    certificate: certificateStatus(identity.tlsCertPem, identity.hostCAPems),
    trusted_host_ca_pins: identity.hostCAPems.map(caPin),
    live_set: tunnels.liveSet,
    tunnels: { count: hosts.length, hosts: hosts.sort((a, b) => a.nodename.localeCompare(b.nodename) || a.host_id.localeCompare(b.host_id)) },
    handshake_gate: proxy.handshakeGate?.toJSON() ?? {},
    ...(unsaved ? { identity_unsaved: unsaved } : {}),
    ...(acme ? { acme: acmeStatus(acme) } : {}),
  }
}

function acmeStatus(acme: WebCertificates): AcmeStatus {
  const served = acme.served
  const leaf = served && new X509Certificate(served.certPem)
  return {
    domains: [...acme.domains],
    certificate: leaf ? { serial: leaf.serialNumber, not_after: statusTime(served.notAfter), fingerprint: leaf.fingerprint256 } : null,
    orders: acme.orders,
    last_error: acme.lastError ?? null,
  }
}
