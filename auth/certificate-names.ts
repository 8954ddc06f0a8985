// What a certificate may name. A certificate is a claim the whole cluster trusts, so it
// names only what its holder owns: a host its ID and its node name (unique among nodes,
// see nodes.ts), a proxy also the public addresses an admin configured for it (its token
// is an admin's grant). Nothing the request merely asserts: no IP a device reports, no
// `localhost`, and never the cluster's reserved server name, which would let a host pose
// as a cluster server to clients that ask for it.

import { isIP } from 'node:net'
import { reservedName } from '../shared/nodename.ts'

export interface HostNameRequest {
  hostId: string
  nodename: string
  roles: string[]
  /** Host names or IPs from the proxy's `proxy_service.public_addr`; ignored for other roles. */
  publicAddrs?: string[]
}

export interface CertificateNames {
  dnsNames: string[]
  ipAddresses: string[]
  /** SSH host certificate principals. */
  principals: string[]
}

const DNS_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/

function classify(names: string[], allowReserved = false): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames: string[] = []
  const ipAddresses: string[] = []
  for (const name of names) {
    if (isIP(name)) ipAddresses.push(name)
    else if (DNS_NAME.test(name.toLowerCase()) && (allowReserved || !reservedName(name))) dnsNames.push(name.toLowerCase())
  }
  return { dnsNames: [...new Set(dnsNames)], ipAddresses: [...new Set(ipAddresses)] }
}

/** The names of a node's or a proxy's certificates (TLS and SSH). */
export function hostCertificateNames(request: HostNameRequest): CertificateNames {
  const granted = classify(request.roles.includes('proxy') ? (request.publicAddrs ?? []) : [])
  // A node name is the holder's choice: a DNS name at most, never an IP address (only an admin's grant names one).
  const own = classify([request.hostId, request.nodename])
  const tls = { dnsNames: [...new Set([...own.dnsNames, ...granted.dnsNames])], ipAddresses: granted.ipAddresses }
  const principals = [...new Set([request.hostId, ...(reservedName(request.nodename) ? [] : [request.nodename]), ...tls.dnsNames, ...tls.ipAddresses])]
  return { ...tls, principals }
}

/**
 * An auth server's own certificate: the names its configuration gives it (its listen host
 * and `auth_service.public_addr`), wildcard addresses left out. An admin wrote them, so
 * even `localhost` stays when configured.
 */
export function serverCertificateNames(configured: string[]): { dnsNames: string[]; ipAddresses: string[] } {
  return classify(
    configured.filter((name) => name !== '' && name !== '0.0.0.0' && name !== '::'),
    true,
  )
}
