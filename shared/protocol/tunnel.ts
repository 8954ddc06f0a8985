// How a tunnel and a user's connection are set up: TLS, told apart by ALPN. A tunnel is
// one TLS 1.3 connection (ALPN `warren-tunnel`) carrying one yamux session: the agent opens
// one control stream (control.ts), the proxy opens one stream per user connection to a
// service on the device (dial.ts). Both begin with newline-terminated JSON (framing.ts).

export const TUNNEL_ALPN = 'warren-tunnel'
/** Users' connections to nodes through a proxy (`warren proxy ssh`), on the web port. */
export const USER_ALPN = 'warren-ssh'
/**
 * The TLS server name every cluster client (agents, `warren ssh`, API calls) sends to a
 * proxy, whatever address it dials. A proxy with an ACME certificate for its public name
 * serves that certificate to browsers, and its host-CA certificate to this name, so pinned
 * joins and tunnels keep verifying against the cluster's CA. `.invalid` never resolves
 * (RFC 2606), so no public certificate can carry it.
 */
export const CLUSTER_SERVER_NAME = 'cluster.warren.invalid'

/**
 * A balancer decides which proxy a dial reaches, so an agent that holds tunnels to some
 * proxies lands on them again while it looks for the others. It lists the proxies it holds
 * in its ClientHello, as extra ALPN names after `warren-tunnel` (never chosen; ALPN is in
 * the clear, as the proxy IDs are in any proxy's certificate); a listed proxy refuses the
 * dial before any key exchange, with the alert no_application_protocol. A duplicate then
 * costs a TCP connection and a ClientHello instead of two TLS handshakes.
 */
const HELD_ALPN_PREFIX = 'warren-held:'
const MAX_ALPN_BYTES = 255

/** The ALPN names that list `proxyIds` as held: comma-separated, as few as 255-byte names allow. */
export function heldProxiesAlpn(proxyIds: string[]): string[] {
  const names: string[] = []
  let current = ''
  for (const id of proxyIds) {
    if (id === '' || id.includes(',') || Buffer.byteLength(HELD_ALPN_PREFIX + id) > MAX_ALPN_BYTES) continue
    const next = current === '' ? HELD_ALPN_PREFIX + id : `${current},${id}`
    if (Buffer.byteLength(next) > MAX_ALPN_BYTES) {
      names.push(current)
      current = HELD_ALPN_PREFIX + id
    } else {
      current = next
    }
  }
  if (current !== '') names.push(current)
  return names
}

/** Whether a client's ALPN names list `proxyId` as held. */
export function listsHeldProxy(protocols: readonly string[], proxyId: string): boolean {
  return protocols.some((name) => name.startsWith(HELD_ALPN_PREFIX) && name.slice(HELD_ALPN_PREFIX.length).split(',').includes(proxyId))
}

/**
 * The longest window a proxy asks its agents to spread their returns to a proxy that
 * joined the live set over (`spread_ms`); agents ignore a longer one.
 */
export const MAX_RETURN_SPREAD_MS = 60_000

/**
 * The longest window a proxy asks its agents to spread their renewals over when it tells
 * them of new CAs to trust (`spread_ms` of `ca`: a host CA rotation); agents ignore a longer one.
 */
export const MAX_RENEWAL_SPREAD_MS = 300_000
