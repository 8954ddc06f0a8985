// The node's series and readiness on the diagnostics endpoint (shared/diag-server.ts), read
// from the agent's state at each scrape, without prom-client (shared/metrics-text.ts).
// Loaded only when diag_addr is set: a node without it keeps its footprint (bench:footprint).

import { X509Certificate } from 'node:crypto'
import type { DiagServer } from '../shared/diag-server.ts'
import { gaugeOf, labelledCounterOf, labelledGaugeOf } from '../shared/metrics.ts'
import { Histogram } from '../shared/metrics-text.ts'
import type { Agent } from './agent.ts'
import type { RedialReason } from './tunnel-pool.ts'

const REDIAL_REASONS: RedialReason[] = ['dial_failed', 'tunnel_lost', 'proxy_stopping', 'proxy_left', 'refused']

/** Must be called before agent.start(): the tunnels take the round-trip observer then. */
export function watchNode(diag: DiagServer, agent: Agent): void {
  const registry = diag.registry
  const pool = () => agent.pool
  labelledGaugeOf(registry, { name: 'warren_node_tunnel_up', help: 'Tunnels this node holds, 1 per proxy' }, 'proxy_id', () =>
    Object.fromEntries((pool()?.held ?? []).map((proxyId) => [proxyId, 1])),
  )
  gaugeOf(registry, { name: 'warren_node_tunnels', help: 'Tunnels this node holds' }, () => pool()?.heldCount ?? 0)
  // Until a proxy announces the live set, the node wants the one it dials.
  gaugeOf(registry, { name: 'warren_node_tunnels_wanted', help: 'Tunnels this node wants: one per live proxy (0 in direct mode)' }, () =>
    pool() ? (pool()?.announcedSet?.length ?? 1) : 0,
  )
  labelledCounterOf(registry, { name: 'warren_node_reconnects_total', help: 'Tunnel dials again, by reason' }, 'reason', REDIAL_REASONS, () => agent.counts.redials)
  const rtt = new Histogram(registry, {
    name: 'warren_node_keepalive_rtt_seconds',
    help: 'Round trips to the proxies measured by tunnel keepalives',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  })
  agent.onRtt = (rttMs) => rtt.observe(rttMs / 1000)
  gaugeOf(registry, { name: 'warren_node_ssh_sessions', help: 'SSH sessions open on this node' }, () => agent.counts.sshSessions)
  labelledCounterOf(registry, { name: 'warren_node_tunnel_bytes_total', help: 'Bytes through the tunnels (TLS included), by direction' }, 'direction', ['sent', 'received'], () => {
    const total = { ...agent.counts.closedTunnelBytes }
    for (const tunnel of pool()?.all ?? []) {
      total.sent += tunnel.bytes.sent
      total.received += tunnel.bytes.received
    }
    return total
  })
  let parsed: { pem: string; notAfter: number } | undefined
  gaugeOf(registry, { name: 'warren_node_certificate_expiry_timestamp_seconds', help: "When the node's host certificate expires (unix time)" }, () => {
    const pem = agent.identity?.tlsCertPem
    if (!pem) return undefined
    if (parsed?.pem !== pem) parsed = { pem, notAfter: Math.floor(new X509Certificate(pem).validToDate.getTime() / 1000) }
    return parsed.notAfter
  })
  gaugeOf(registry, { name: 'warren_node_audit_events_queued', help: 'Audit events waiting to be sent to the auth server' }, () => agent.audit?.queue.size ?? 0)
  diag.addReadiness('node', () => nodeNotReady(agent))
}

/** Ready when it can be reached: a tunnel held, or in direct mode its listener up. */
function nodeNotReady(agent: Agent): string | undefined {
  const direct = agent.directMode
  if (direct) return direct.listener.address ? undefined : 'the direct listener is not up'
  const pool = agent.pool
  if (!pool) return 'not started: joining or looking up the tunnel address'
  if (pool.heldCount === 0) return `no tunnel held: dialing ${pool.address}`
  return undefined
}
