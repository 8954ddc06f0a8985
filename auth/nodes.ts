// The node registry (durable: who joined) and presence (ephemeral: who heartbeated
// recently). Presence items carry a TTL, so a node that stops heartbeating disappears from
// `warrenctl nodes ls` by itself, on every backend.

import type { Backend, Operation } from './backend/backend.ts'

export interface NodeRecord {
  hostId: string
  nodename: string
  roles: string[]
  joinedAt: number
  /** The node's SSH host key ("ssh-ed25519 AAAA..."), for the known_hosts files users get. */
  sshPublicKey?: string
}

/** A proxy's last heartbeat: how agents and other proxies find it. */
export interface ProxyRecord {
  proxyId: string
  nodename: string
  /** host:port where users and agents reach this proxy's web port (empty when unknown). */
  webAddr: string
  lastSeen: number
}

export interface Presence {
  hostId: string
  nodename: string
  roles: string[]
  /** Where the heartbeat came from: an IP for direct heartbeats. */
  addr: string
  /** True when the node is reached through a reverse tunnel rather than dialled. */
  tunnel: boolean
  labels: Record<string, string>
  lastSeen: number
}

const REGISTRY = '/nodes/'
const PRESENCE = '/presence/'
const PROXIES = '/proxies/'

export function registerNodeOperation(record: NodeRecord): Operation {
  return { op: 'put', key: REGISTRY + record.hostId, value: JSON.stringify(record) }
}

export class NodeDirectory {
  private readonly backend: Backend
  private readonly ttlMs: number

  constructor(backend: Backend, ttlMs: number) {
    this.backend = backend
    this.ttlMs = ttlMs
  }

  async get(hostId: string): Promise<NodeRecord | undefined> {
    const item = await this.backend.get(REGISTRY + hostId)
    return item ? (JSON.parse(item.value) as NodeRecord) : undefined
  }

  async registered(): Promise<NodeRecord[]> {
    return (await this.backend.list(REGISTRY)).map((item) => JSON.parse(item.value) as NodeRecord)
  }

  async proxyHeartbeat(record: ProxyRecord): Promise<void> {
    await this.backend.put(PROXIES + record.proxyId, JSON.stringify(record), { ttlMs: this.ttlMs })
  }

  async proxies(): Promise<ProxyRecord[]> {
    return (await this.backend.list(PROXIES)).map((item) => JSON.parse(item.value) as ProxyRecord)
  }

  async heartbeat(presence: Presence): Promise<void> {
    await this.backend.put(PRESENCE + presence.hostId, JSON.stringify(presence), { ttlMs: this.ttlMs })
  }

  /** Nodes whose heartbeat is fresh, by name. */
  async present(role?: string): Promise<Presence[]> {
    const items = await this.backend.list(PRESENCE)
    return items
      .map((item) => JSON.parse(item.value) as Presence)
      .filter((p) => !role || p.roles.includes(role))
      .sort((a, b) => a.nodename.localeCompare(b.nodename) || a.hostId.localeCompare(b.hostId))
  }
}
