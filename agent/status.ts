// The node's section of the status document (shared/status.ts), built from the agent's
// state when someone asks: its identity, the tunnels it holds and the live set its proxies
// announce, or in direct mode where proxies reach it and how its heartbeats fare.

import { optimisingCompilers } from '../shared/optimising-compilers.ts'
import { caPin } from '../shared/pin.ts'
import { certificateStatus, type NodeStatus, statusTime } from '../shared/status.ts'
import type { Agent } from './agent.ts'
import { ptyPerl } from './pty.ts'

export function nodeStatus(agent: Agent): NodeStatus | undefined {
  const identity = agent.identity
  const direct = agent.directMode
  const pool = agent.pool
  // Tunnels held back until the certificate is usable (a wrong clock, an expiry) are reported too: that is when the status matters most.
  const held = agent.heldTunnelAddress
  if (!identity || (!pool && !direct && held === undefined)) return undefined
  const status: NodeStatus = {
    mode: pool || held !== undefined ? 'tunnel' : 'direct',
    host_id: identity.hostId,
    nodename: identity.nodename,
    cluster: identity.clusterName,
    auth_server: identity.authServers[0] ?? '',
    labels: agent.config.labels,
    certificate: certificateStatus(identity.tlsCertPem, identity.hostCAPems),
    trusted_host_ca_pins: identity.hostCAPems.map(caPin),
    trust: { version: identity.trustVersion, refused: agent.counts.refusedTrust },
    optimising_compilers: optimisingCompilers(),
    ptys: ptyPerl() ? 'agent' : 'script',
    clock: agent.clock!,
  }
  const assigned = identity.assignedLabels
  const refusedLabels = agent.assignedLabels.refused
  if (assigned || refusedLabels > 0) status.assigned_labels = { labels: assigned?.labels ?? {}, changed: assigned ? statusTime(assigned.changed) : null, refused: refusedLabels }
  const unsaved = agent.keeper.status
  if (unsaved) status.identity_unsaved = unsaved
  const renewal = agent.renewalState
  if (renewal) status.renewal = { next_try: statusTime(renewal.nextAt), failures: renewal.failures, last_error: renewal.lastError ?? null }
  if (agent.audit) status.events = { queued: agent.audit.queue.size, dropped: agent.audit.queue.dropped }
  if (pool) {
    status.tunnel = {
      address: pool.address,
      discoveries: agent.discoveries,
      proxies: pool.all
        .map((tunnel) => ({ proxy_id: tunnel.proxyId, since: statusTime(tunnel.openedAt), resumed: tunnel.resumed, pacing: tunnel.pacing }))
        .sort((a, b) => a.proxy_id.localeCompare(b.proxy_id)),
      live_set: pool.announcedSet ?? null,
      live_sets_refused: agent.counts.refusedLiveSets,
    }
  } else if (held !== undefined) {
    status.tunnel = { address: held, discoveries: agent.discoveries, proxies: [], live_set: null, live_sets_refused: agent.counts.refusedLiveSets }
  } else if (direct) {
    const { heartbeat } = direct
    status.direct = {
      listen_addr: direct.listener.address ?? '',
      handshake_gate: direct.listener.handshakeGate.toJSON(),
      heartbeats: { ok: heartbeat.ok, failed: heartbeat.failed, last_ok: heartbeat.lastOkAt === undefined ? null : statusTime(heartbeat.lastOkAt) },
    }
  }
  return status
}
