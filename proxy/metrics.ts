// The proxy's series and readiness on the diagnostics endpoint (shared/diag-server.ts), kept
// with prom-client (loaded only with diag_addr) and read from the proxy's state at each
// scrape. No series has a per-node label: a proxy may hold 10,000 tunnels, and
// `warren status` or `warrenctl nodes ls` name them.

import { Counter, Gauge, Registry } from 'prom-client'
import type { DiagServer } from '../shared/diag-server.ts'
import { certificateUsable } from '../shared/renewal-window.ts'
import type { ProxyService } from './proxy.ts'
import type { TunnelCloseReason, TunnelDeclineReason } from './tunnel-server.ts'

const CLOSE_REASONS: TunnelCloseReason[] = ['node_closed', 'connection_lost', 'replaced', 'unregistered', 'untrusted', 'protocol_error', 'proxy_stopping']
const DECLINE_REASONS: TunnelDeclineReason[] = ['certificate', 'unregistered', 'already_held', 'no_hello', 'rate_limited']

export function watchProxy(diag: DiagServer, proxy: ProxyService): void {
  const registry = new Registry()
  diag.registry.add(() => registry.metrics())
  const series = seriesIn(registry)
  const counts = () => proxy.tunnels?.counts
  series.gauge('warren_proxy_tunnels', 'Reverse tunnels this proxy holds (one per node)', () => proxy.tunnels?.size ?? 0)
  series.counter('warren_proxy_tunnel_opens_total', 'Tunnels registered since the start', () => ({ '': counts()?.opened ?? 0 }))
  series.counter('warren_proxy_tunnel_declines_total', 'Tunnels refused before registration, by reason', () => counts()?.declined ?? {}, 'reason', DECLINE_REASONS)
  series.counter('warren_proxy_tunnel_closes_total', 'Registered tunnels that ended, by reason', () => counts()?.closed ?? {}, 'reason', CLOSE_REASONS)
  series.gauge('warren_proxy_handshakes_in_flight', 'TLS handshakes running', () => proxy.handshakeGate?.handshaking ?? 0)
  series.gauge('warren_proxy_handshakes_queued', 'Connections with a whole ClientHello waiting for a handshake slot', () => proxy.handshakeGate?.queued ?? 0)
  series.gauge('warren_proxy_handshake_queue_capacity', 'How many connections may wait for a handshake slot', () => proxy.handshakeQueueCapacity)
  series.counter('warren_proxy_handshake_queue_full_total', 'Connections closed because the handshake queue was full', () => ({
    '': proxy.handshakeGate?.queueFullClosed ?? 0,
  }))
  series.gauge('warren_proxy_user_sessions', 'User connections open through this proxy (SSH sessions, port forwards, copies)', () => proxy.userGateway?.sessions ?? 0)
  series.counter(
    'warren_proxy_relayed_bytes_total',
    'Bytes relayed between users and nodes, by direction',
    () => {
      const bytes = proxy.userGateway?.relayedBytes()
      return { to_node: bytes?.fromUsers, to_user: bytes?.toUsers }
    },
    'direction',
    ['to_node', 'to_user'],
  )
  series.gauge('warren_proxy_live_set_proxies', 'Proxies in the live set this proxy announces to agents', () => proxy.tunnels?.liveSet.length ?? 0)
  diag.addReadiness('proxy', () => proxyNotReady(proxy))
}

/**
 * prom-client series whose values the proxy already keeps (its status endpoint reports the
 * same counts): each is read at the scrape. A counter's total is read too, and the counter
 * moves by what it gained since the last scrape, so it never goes down.
 */
function seriesIn(registry: Registry) {
  const registers = [registry]
  return {
    /** A gauge set at each scrape; one that reads undefined (not known yet) keeps its last value. */
    gauge(name: string, help: string, read: () => number | undefined): void {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const value = read()
          if (value !== undefined) this.set(value)
        },
      })
    },
    /**
     * Totals by label value ('' for a counter without a label). `known` label values are
     * reported at 0 before they first happen, so rate() and alerts see them from the start.
     */
    counter(name: string, help: string, read: () => Record<string, number | undefined>, label?: string, known: readonly string[] = []): void {
      const reported = new Map<string, number>()
      const labels = (value: string) => (label === undefined ? {} : { [label]: value })
      const counter = new Counter({
        name,
        help,
        labelNames: label === undefined ? [] : [label],
        registers,
        collect() {
          for (const [value, total = 0] of Object.entries(read())) {
            const before = reported.get(value) ?? 0
            if (total <= before) continue
            this.inc(labels(value), total - before)
            reported.set(value, total)
          }
        },
      })
      if (label === undefined) counter.inc(0)
      for (const value of known) counter.inc(labels(value), 0)
    },
  }
}

/** What the proxy lacks to serve users and agents: its certificates, then the live set. */
function proxyNotReady(proxy: ProxyService): string | undefined {
  if (!proxy.identity) return 'no certificates yet: joining the cluster'
  if (!certificateUsable(proxy.identity)) return 'its certificate has expired'
  if (!proxy.tunnels) return 'not listening yet'
  if (proxy.tunnels.liveSet.length === 0) return 'no live set from the auth server yet'
  return undefined
}
