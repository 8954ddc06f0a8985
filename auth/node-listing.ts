// `warrenctl nodes ls --all`: every node the cluster knows, online or not. A node is listed
// while it has a presence item (until the offline sweep forgets it) or a removal record,
// with its state, when it was last seen, its agent's version, when its certificate expires
// and, for a node behind tunnels, how many of the live proxies hold one.

import { withAssigned } from '../shared/assigned-labels.ts'
import type { ListedNode } from '../shared/protocol/admin.ts'
import type { LockRecord } from './locks.ts'
import type { NodeRecord, Presence } from './nodes.ts'
import type { RemovalRecord } from './revocations.ts'

export interface ListingInput {
  /** The labels the cluster assigned to a host, which win over its own. */
  assigned: (hostId: string) => Record<string, string> | undefined
  /** Keys a node carries only as assigned (`auth_service.assigned_label_keys`). */
  assignedOnly: ReadonlySet<string>
  /** Every presence item (known()), and the host IDs of those online (present()). */
  known: Presence[]
  online: Set<string>
  registered: NodeRecord[]
  removed: RemovalRecord[]
  nodeLocks: Map<string, LockRecord>
  liveProxies: string[]
  /** How recent a proxy's report must be to count: the heartbeat TTL and a half. */
  reportFreshMs: number
  now: number
}

export function listAllNodes(input: ListingInput): ListedNode[] {
  const registered = new Map(input.registered.map((record) => [record.hostId, record]))
  const removed = new Set(input.removed.map((record) => record.hostId))
  const live = new Set(input.liveProxies)
  const listed: ListedNode[] = input.known
    .filter((presence) => !removed.has(presence.hostId))
    .map((presence) => {
      const holding = Object.entries(presence.via ?? {}).filter(([proxyId, reported]) => live.has(proxyId) && input.now - reported <= input.reportFreshMs).length
      const online = input.online.has(presence.hostId)
      const assigned = input.assigned(presence.hostId) ?? {}
      return {
        host_id: presence.hostId,
        nodename: presence.nodename,
        addr: presence.addr,
        tunnel: presence.tunnel,
        labels: withAssigned(presence.labels, assigned, input.assignedOnly),
        assigned_labels: assigned,
        status: input.nodeLocks.has(presence.hostId) ? 'locked' : online ? 'online' : 'offline',
        last_seen: presence.lastSeen,
        version: presence.version ?? null,
        cert_expires: registered.get(presence.hostId)?.certExpires ?? null,
        proxies: presence.tunnel ? { holding: online ? holding : 0, live: live.size } : null,
      }
    })
  for (const record of input.removed) {
    if (!record.roles.includes('node')) continue
    listed.push({
      host_id: record.hostId,
      nodename: record.nodename,
      addr: '',
      tunnel: false,
      labels: {},
      assigned_labels: {},
      status: 'removed',
      last_seen: record.lastSeen ?? null,
      version: null,
      cert_expires: null,
      proxies: null,
    })
  }
  return listed.sort((a, b) => a.nodename.localeCompare(b.nodename) || a.host_id.localeCompare(b.host_id))
}
