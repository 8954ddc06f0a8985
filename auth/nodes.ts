// The node registry (durable: who joined) and presence (ephemeral: who heartbeated
// recently). Presence items carry a TTL, so a node that stops heartbeating disappears from
// `warrenctl nodes ls` by itself, on every backend.
//
// Presence is kept in memory and written to the backend only when it changes (a new node,
// another address, other labels) or when the stored item is half way to its end: a node
// heartbeating every 5 s, directly or through each of three proxies, costs one write per
// TTL/2 instead of one per report. This auth server answers from memory (a node shows
// while its last heartbeat here is younger than the TTL, with the address it was last
// seen from); other auth servers sharing the backend see the stored items, which live
// TTL + TTL/2 after their write, so there a node may show up to TTL/2 longer.
//
// A node's name is unique among registered nodes: a claim record (/nodenames/<name>, the
// holder's host ID) is created in the same transaction as the registration, on the
// condition that it does not exist, on every backend. Only a token made for that name
// replaces the holder, and then removes the old host's record in the same transaction.

import type { Backend, Condition, Operation } from './backend/backend.ts'
import { HttpError } from '../shared/json-http.ts'

export interface NodeRecord {
  hostId: string
  nodename: string
  roles: string[]
  joinedAt: number
  /** The node's SSH host key ("ssh-ed25519 AAAA..."), for the known_hosts files users get. */
  sshPublicKey?: string
  /** SHA-256 of the TLS key's SubjectPublicKeyInfo (hex): renewals certify this key and no other. */
  tlsKeySha256?: string
  /** A proxy's configured public addresses, which its certificates also name. */
  publicAddrs?: string[]
  /** When the host's latest certificates expire (epoch ms): set at join, renewal and recovery. */
  certExpires?: number
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
  /** Through a tunnel, where its connection came from; direct, where proxies dial the node (host:port). */
  addr: string
  /** True when the node is reached through a reverse tunnel rather than dialled. */
  tunnel: boolean
  labels: Record<string, string>
  lastSeen: number
}

const REGISTRY = '/nodes/'
const PRESENCE = '/presence/'
const PROXIES = '/proxies/'
const NODENAMES = '/nodenames/'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function registerNodeOperation(record: NodeRecord): Operation {
  return { op: 'put', key: REGISTRY + record.hostId, value: JSON.stringify(record) }
}

/** Names that differ only in case are one name: "Pi-1" cannot stand beside "pi-1". */
function claimKey(nodename: string): string {
  return NODENAMES + nodename.toLowerCase()
}

/** Only hosts with the node role are reached by name, so only they claim one. */
function claimsName(record: NodeRecord): boolean {
  return record.roles.includes('node')
}

/** A join naming a node name that another host holds (a failed join, safe to show). */
export class NodenameTaken extends HttpError {
  constructor(nodename: string) {
    super(409, `nodename "${nodename}" is already registered to another node; remove it first with warrenctl nodes rm ${nodename}`)
  }
}

/** `nodes rm` naming no registered host, or a name several hosts carry. */
export class NodeLookupError extends Error {}

/** What a join's transaction must hold and write to register a host. */
export interface RegistrationPlan {
  conditions: Condition[]
  operations: Operation[]
  /** The host whose name this registration takes over (a token made for that name). */
  replaces?: string
}

/** How long lookup() reuses a registry record. */
const REGISTRY_CACHE_MS = 30_000

interface SeenPresence {
  presence: Presence
  /** When the backend last got this node's presence (0: never, or the write failed). */
  written: number
  /** What was written, to tell a change from a refresh. */
  signature: string
}

export class NodeDirectory {
  private readonly backend: Backend
  private readonly ttlMs: number
  private readonly refreshMs: number
  private readonly registry = new Map<string, { record: NodeRecord; fetched: number }>()
  private readonly seen = new Map<string, SeenPresence>()
  private lastSweep = Date.now()
  /** Backend writes of presence so far (for tests and benchmarks). */
  presenceWrites = 0

  constructor(backend: Backend, ttlMs: number) {
    this.backend = backend
    this.ttlMs = ttlMs
    this.refreshMs = Math.max(1, Math.floor(ttlMs / 2))
  }

  async get(hostId: string): Promise<NodeRecord | undefined> {
    const item = await this.backend.get(REGISTRY + hostId)
    if (!item) {
      this.registry.delete(hostId)
      return undefined
    }
    const record = JSON.parse(item.value) as NodeRecord
    this.registry.set(hostId, { record, fetched: Date.now() })
    return record
  }

  /** The registry record, reused for REGISTRY_CACHE_MS: for heartbeats, which look their node up on every report. */
  async lookup(hostId: string): Promise<NodeRecord | undefined> {
    const cached = this.registry.get(hostId)
    if (cached && Date.now() - cached.fetched < REGISTRY_CACHE_MS) return cached.record
    return this.get(hostId)
  }

  /** The host that holds `nodename`, if any. */
  async holderOf(nodename: string): Promise<string | undefined> {
    const item = await this.backend.get(claimKey(nodename))
    return item ? (JSON.parse(item.value) as { hostId: string }).hostId : undefined
  }

  /**
   * The registration of a new host, for the join's transaction: its record must not exist
   * yet, and its name must be free, unless `replaceHolder` (a token made for that name),
   * which removes the holder's record and presence in the same transaction.
   */
  async planRegistration(record: NodeRecord, options: { replaceHolder: boolean }): Promise<RegistrationPlan> {
    const plan: RegistrationPlan = {
      conditions: [{ key: REGISTRY + record.hostId, absent: true }],
      operations: [registerNodeOperation(record)],
    }
    if (!claimsName(record)) return plan
    const key = claimKey(record.nodename)
    const claim = await this.backend.get(key)
    if (claim) {
      if (!options.replaceHolder) throw new NodenameTaken(record.nodename)
      const holder = (JSON.parse(claim.value) as { hostId: string }).hostId
      plan.conditions.push({ key, revision: claim.revision })
      plan.operations.push({ op: 'delete', key: REGISTRY + holder }, { op: 'delete', key: PRESENCE + holder })
      plan.replaces = holder
    } else {
      plan.conditions.push({ key, absent: true })
    }
    plan.operations.push({ op: 'put', key, value: JSON.stringify({ hostId: record.hostId }) })
    return plan
  }

  /**
   * Removes a host given its host ID or node name: its record, its name and its presence,
   * in one transaction. It can no longer renew or heartbeat; joining again needs a token.
   */
  async remove(nodeOrId: string): Promise<NodeRecord> {
    const hostId = await this.resolve(nodeOrId)
    const item = await this.backend.get(REGISTRY + hostId)
    if (!item) throw new NodeLookupError(`no node "${nodeOrId}" is registered (it may have been removed already)`)
    const record = JSON.parse(item.value) as NodeRecord
    const conditions: Condition[] = [{ key: item.key, revision: item.revision }]
    const operations: Operation[] = [{ op: 'delete', key: item.key }, { op: 'delete', key: PRESENCE + hostId }]
    const claim = await this.backend.get(claimKey(record.nodename))
    if (claim && (JSON.parse(claim.value) as { hostId: string }).hostId === hostId) {
      conditions.push({ key: claim.key, revision: claim.revision })
      operations.push({ op: 'delete', key: claim.key })
    }
    if (!(await this.backend.txn(conditions, operations))) throw new NodeLookupError(`node "${nodeOrId}" changed while being removed: try again`)
    this.forget(hostId)
    return record
  }

  /**
   * Records the expiry of certificates just issued to a host, unless the host was removed or
   * replaced meanwhile: false then (the write never brings a removed record back). Another
   * write in between (a renewal on another auth server) is read again and written over.
   */
  async recordCertificate(hostId: string, certExpires: number): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const item = await this.backend.get(REGISTRY + hostId)
      if (!item) return false
      const record = { ...(JSON.parse(item.value) as NodeRecord), certExpires }
      if (await this.backend.txn([{ key: item.key, revision: item.revision }], [registerNodeOperation(record)])) {
        this.registry.set(hostId, { record, fetched: Date.now() })
        return true
      }
    }
    throw new Error(`the registry record of host ${hostId} kept changing while its certificate expiry was written`)
  }

  /** Drops what this server remembers of a host that was removed or replaced. */
  forget(hostId: string): void {
    this.registry.delete(hostId)
    this.seen.delete(hostId)
  }

  /** A host ID, the holder of a node name, or the one registered host (a proxy, say) of that name. */
  private async resolve(nodeOrId: string): Promise<string> {
    if (UUID.test(nodeOrId) && (await this.backend.get(REGISTRY + nodeOrId))) return nodeOrId
    const holder = await this.holderOf(nodeOrId)
    if (holder) return holder
    const named = (await this.registered()).filter((record) => record.nodename === nodeOrId)
    if (named.length > 1) throw new NodeLookupError(`"${nodeOrId}" names ${named.length} hosts (${named.map((r) => r.hostId).join(', ')}): give the host ID`)
    if (named.length === 0) throw new NodeLookupError(`no node "${nodeOrId}" is registered: give its name or host ID as "warrenctl nodes ls" shows them`)
    return named[0].hostId
  }

  async registered(): Promise<NodeRecord[]> {
    return (await this.backend.list(REGISTRY)).map((item) => JSON.parse(item.value) as NodeRecord)
  }

  async proxyHeartbeat(record: ProxyRecord): Promise<void> {
    await this.backend.put(PROXIES + record.proxyId, JSON.stringify(record), { ttlMs: this.ttlMs })
  }

  /** A proxy that stops cleanly leaves the live set at once, rather than when its record expires. */
  async removeProxy(proxyId: string): Promise<void> {
    await this.backend.delete(PROXIES + proxyId)
  }

  async proxies(): Promise<ProxyRecord[]> {
    return (await this.backend.list(PROXIES)).map((item) => JSON.parse(item.value) as ProxyRecord)
  }

  /** Records a heartbeat; writes to the backend only on a change or when the stored item needs refreshing. */
  async heartbeat(presence: Presence): Promise<void> {
    const now = Date.now()
    this.sweep(now)
    const signature = JSON.stringify([presence.nodename, presence.roles, presence.addr, presence.tunnel, presence.labels])
    let entry = this.seen.get(presence.hostId)
    if (!entry) {
      entry = { presence, written: 0, signature: '' }
      this.seen.set(presence.hostId, entry)
    }
    if (presence.lastSeen >= entry.presence.lastSeen) entry.presence = presence
    if (entry.signature === signature && now - entry.written < this.refreshMs) return
    // Claimed before the write, so that concurrent reports of the same node write once.
    entry.signature = signature
    entry.written = now
    this.presenceWrites++
    try {
      await this.backend.put(PRESENCE + presence.hostId, JSON.stringify(presence), { ttlMs: this.ttlMs + this.refreshMs })
    } catch (error) {
      entry.signature = ''
      entry.written = 0
      throw error
    }
  }

  /** Nodes whose heartbeat is fresh, by name. */
  async present(role?: string): Promise<Presence[]> {
    const now = Date.now()
    const byHost = new Map<string, Presence>()
    for (const item of await this.backend.list(PRESENCE)) {
      const presence = JSON.parse(item.value) as Presence
      byHost.set(presence.hostId, presence)
    }
    // What this server heard is more recent than what it stored; an item stored by another
    // auth server after our last heartbeat of that node wins.
    for (const [hostId, { presence }] of this.seen) {
      const stored = byHost.get(hostId)
      if (stored && stored.lastSeen > presence.lastSeen) continue
      if (now - presence.lastSeen <= this.ttlMs) byHost.set(hostId, presence)
      else byHost.delete(hostId)
    }
    return [...byHost.values()]
      .filter((p) => !role || p.roles.includes(role))
      .sort((a, b) => a.nodename.localeCompare(b.nodename) || a.hostId.localeCompare(b.hostId))
  }

  /** Forgets nodes whose stored presence has expired too (at most once per refresh period). */
  private sweep(now: number): void {
    if (now - this.lastSweep < this.refreshMs) return
    this.lastSweep = now
    for (const [hostId, entry] of this.seen) if (now - entry.presence.lastSeen > this.ttlMs + this.refreshMs) this.seen.delete(hostId)
    for (const [hostId, cached] of this.registry) if (now - cached.fetched >= REGISTRY_CACHE_MS) this.registry.delete(hostId)
  }
}
