// The proxy's series and readiness on the diagnostics endpoint (shared/diag-server.ts), read
// from its state at each scrape. No series has a per-node label: a proxy may hold 10,000
// tunnels, and `warren status` or `warrenctl nodes ls` name them.

import type { DiagServer } from '../shared/diag-server.ts'
import { counterOf, gaugeOf, labelledCounterOf } from '../shared/metrics.ts'
import { certificateUsable } from '../shared/renewal-window.ts'
import type { ProxyService } from './proxy.ts'
import type { TunnelCloseReason, TunnelDeclineReason } from './tunnel-server.ts'

const CLOSE_REASONS: TunnelCloseReason[] = ['node_closed', 'connection_lost', 'replaced', 'unregistered', 'untrusted', 'protocol_error', 'proxy_stopping']
const DECLINE_REASONS: TunnelDeclineReason[] = ['certificate', 'unregistered', 'already_held', 'no_hello']

export function watchProxy(diag: DiagServer, proxy: ProxyService): void {
  const registry = diag.registry
  const counts = () => proxy.tunnels?.counts
  gaugeOf(registry, { name: 'warren_proxy_tunnels', help: 'Reverse tunnels this proxy holds (one per node)' }, () => proxy.tunnels?.size ?? 0)
  counterOf(registry, { name: 'warren_proxy_tunnel_opens_total', help: 'Tunnels registered since the start' }, () => counts()?.opened ?? 0)
  labelledCounterOf(
    registry,
    { name: 'warren_proxy_tunnel_declines_total', help: 'Tunnels refused before registration, by reason' },
    'reason',
    DECLINE_REASONS,
    () => counts()?.declined ?? {},
  )
  labelledCounterOf(registry, { name: 'warren_proxy_tunnel_closes_total', help: 'Registered tunnels that ended, by reason' }, 'reason', CLOSE_REASONS, () => counts()?.closed ?? {})
  gaugeOf(registry, { name: 'warren_proxy_handshakes_in_flight', help: 'TLS handshakes running' }, () => proxy.handshakeGate?.handshaking ?? 0)
  gaugeOf(registry, { name: 'warren_proxy_handshakes_queued', help: 'Connections with a whole ClientHello waiting for a handshake slot' }, () => proxy.handshakeGate?.queued ?? 0)
  gaugeOf(registry, { name: 'warren_proxy_handshake_queue_capacity', help: 'How many connections may wait for a handshake slot' }, () => proxy.handshakeQueueCapacity)
  counterOf(
    registry,
    { name: 'warren_proxy_handshake_queue_full_total', help: 'Connections closed because the handshake queue was full' },
    () => proxy.handshakeGate?.queueFullClosed ?? 0,
  )
  gaugeOf(
    registry,
    { name: 'warren_proxy_user_sessions', help: 'User connections open through this proxy (SSH sessions, port forwards, copies)' },
    () => proxy.userGateway?.sessions ?? 0,
  )
  labelledCounterOf(
    registry,
    { name: 'warren_proxy_relayed_bytes_total', help: 'Bytes relayed between users and nodes, by direction' },
    'direction',
    ['to_node', 'to_user'],
    () => {
      const bytes = proxy.userGateway?.relayedBytes()
      return { to_node: bytes?.fromUsers, to_user: bytes?.toUsers }
    },
  )
  gaugeOf(registry, { name: 'warren_proxy_live_set_proxies', help: 'Proxies in the live set this proxy announces to agents' }, () => proxy.tunnels?.liveSet.length ?? 0)
  diag.addReadiness('proxy', () => proxyNotReady(proxy))
}

/** What the proxy lacks to serve users and agents: its certificates, then the live set. */
function proxyNotReady(proxy: ProxyService): string | undefined {
  if (!proxy.identity) return 'no certificates yet: joining the cluster'
  if (!certificateUsable(proxy.identity)) return 'its certificate has expired'
  if (!proxy.tunnels) return 'not listening yet'
  if (proxy.tunnels.liveSet.length === 0) return 'no live set from the auth server yet'
  return undefined
}
