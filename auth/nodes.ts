// The node registry (durable: who joined) and presence (who heartbeated, and when). A node
// shows in `warrenctl nodes ls` while its last heartbeat is younger than the heartbeat TTL;
// its presence item stays after that, so that `nodes ls --all` shows it offline with the
// time it was last seen, until the offline sweep forgets it (offline-nodes.ts).
//
// Presence is kept in memory and written to the backend only when it changes (a new node,
// another address, other labels) or when the stored item is half way to its end: a node
// heartbeating every 5 s, directly or through each of three proxies, costs one write per
// TTL/2 instead of one per report. This auth server answers from memory (a node shows
// while its last heartbeat here is younger than the TTL, with the address it was last
// seen from); other auth servers sharing the backend see the stored items, which are
// rewritten at least every TTL/2 while heartbeats come, so there a node may show up to
// TTL/2 longer. A presence write is conditional on the node's registration (its revision),
// so a node removed meanwhile never gets its presence back.
//
// A node's name is unique among registered nodes: a claim record (/nodenames/<name>, the
// holder's host ID) is created in the same transaction as the registration, on the
// condition that it does not exist, on every backend. Only a token made for that name
// replaces the holder, and then removes the old host's record in the same transaction.
//
// Listings (`warren ls`, `nodes ls`, the known_hosts users get) read the whole registry and
// every stored presence: work in proportion to the fleet, which is kept here between calls
// rather than read again for each. Every write of the registry also rewrites one generation
// record (REGISTRY_GENERATION), as assigned labels do theirs (assigned-labels.ts): a call
// reads that one item (one get) and lists the registry again only when its revision moved,
// so a join, removal, replacement or renewal made on any auth server sharing the backend is
// in the next listing (one of an earlier version, which does not rewrite it, within
// REGISTRY_CACHE_MS). The presence stored by other auth servers is reused for up to
// STORED_PRESENCE_MS, what this server heard itself being in memory anyway; the proxies'
// records for LISTED_PROXIES_MS.

import { monotonicMs } from '../shared/yamux/clock.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'

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
  /** The agent's version (shared/version.ts), as its hello or heartbeat reported it. */
  version?: string
  /** Through a tunnel: each proxy that reported it, with when it last did (epoch ms). */
  via?: Record<string, number>
}

const REGISTRY = '/nodes/'
/** Rewritten with every change of the registry: its revision tells a listing to read it again. */
const REGISTRY_GENERATION = '/nodes-generation'
/** Presence items, one per host: read by the offline sweep too. */
export const PRESENCE = '/presence/'
const PROXIES = '/proxies/'
const NODENAMES = '/nodenames/'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function registryKey(hostId: string): string {
  return REGISTRY + hostId
}

export function registerNodeOperation(record: NodeRecord): Operation {
  return { op: 'put', key: REGISTRY + record.hostId, value: JSON.stringify(record) }
}

/** Goes in every transaction that writes the registry: other auth servers' listings read it again. */
export function registryChangedOperation(): Operation {
  return { op: 'put', key: REGISTRY_GENERATION, value: String(Date.now()) }
}

/** A registration's record, and the generation record that tells listings it changed. */
export function registrationOperations(record: NodeRecord): Operation[] {
  return [registerNodeOperation(record), registryChangedOperation()]
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
export class NodenameTaken extends Error {
  constructor(nodename: string) {
    super(`nodename "${nodename}" is already registered to another node; remove it first with warrenctl nodes rm ${nodename}`)
  }
}

/** A host the registry does not know (removed, or replaced), asking as a registered one. */
export class UnregisteredHost extends Error {
  constructor(hostId: string, detail = '') {
    super(`host ${hostId} is not registered in this cluster${detail}`)
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

/** How long lookup() reuses a registry record, and registered() its list at most (a write that did not change the generation). */
const REGISTRY_CACHE_MS = 30_000

/** How long listings reuse the presence items stored by other auth servers, which are up to TTL/2 old anyway. */
export const STORED_PRESENCE_MS = 1000

/** How long listings reuse the proxies' records (this server's own heartbeats and removals show at once). */
const LISTED_PROXIES_MS = 1000

interface SeenPresence {
  presence: Presence
  /** When the backend last got this node's presence (0: never, or the write failed). */
  written: number
  /** What was written, to tell a change from a refresh. */
  signature: string
  /** The proxies that reported this node's tunnel here, with when they last did. */
  via: Record<string, number>
}

/** A presence as this server knows it, and whether it heard the heartbeat itself. */
interface KnownPresence {
  presence: Presence
  heardHere: boolean
}

export class NodeDirectory {
  private readonly backend: Backend
  private readonly ttlMs: number
  private readonly refreshMs: number
  private readonly registry = new Map<string, { record: NodeRecord; revision: number; fetched: number }>()
  private readonly seen = new Map<string, SeenPresence>()
  /** Hosts a proxy reported that this server had not heard of: whether their stored presence was a fresh direct one, and when that was read. */
  private readonly directStored = new Map<string, { direct: boolean; read: number }>()
  private lastSweep = Date.now()
  /** The registry as last listed, with the revision of the generation record read before it. */
  private registryList?: { generation: number; read: number; records: NodeRecord[] }
  private readingRegistry?: { generation: number; records: Promise<NodeRecord[]> }
  /** The presence items as last listed; undefined once this server changed them. */
  private storedPresence?: { read: number; items: Promise<Presence[]> }
  private listedProxies?: { read: number; records: Promise<ProxyRecord[]> }
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
    this.registry.set(hostId, { record, revision: item.revision, fetched: Date.now() })
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
   * which removes the holder's record and presence in the same transaction, with the
   * operation `removal` gives for it (its removal record: the replaced host's certificates
   * are then refused as a removed host's are, by every proxy, restarted ones too).
   */
  async planRegistration(record: NodeRecord, options: { replaceHolder: boolean; removal?: (holder: NodeRecord, replacedBy: string) => Operation }): Promise<RegistrationPlan> {
    const plan: RegistrationPlan = {
      conditions: [{ key: REGISTRY + record.hostId, absent: true }],
      operations: registrationOperations(record),
    }
    if (!claimsName(record)) return plan
    const key = claimKey(record.nodename)
    const claim = await this.backend.get(key)
    if (claim) {
      if (!options.replaceHolder) throw new NodenameTaken(record.nodename)
      const holder = (JSON.parse(claim.value) as { hostId: string }).hostId
      plan.conditions.push({ key, revision: claim.revision })
      plan.operations.push({ op: 'delete', key: REGISTRY + holder }, { op: 'delete', key: PRESENCE + holder })
      const held = await this.backend.get(REGISTRY + holder)
      if (held && options.removal) {
        plan.conditions.push({ key: held.key, revision: held.revision })
        plan.operations.push(options.removal(JSON.parse(held.value) as NodeRecord, record.hostId))
      }
      plan.replaces = holder
    } else {
      plan.conditions.push({ key, absent: true })
    }
    plan.operations.push({ op: 'put', key, value: JSON.stringify({ hostId: record.hostId }) })
    return plan
  }

  /**
   * Removes a host given its host ID or node name: its record, its name and its presence,
   * in one transaction with the operations `also` adds (its removal record). It can no
   * longer renew or heartbeat; joining again needs a token.
   */
  async remove(nodeOrId: string, also: (record: NodeRecord) => Operation[] = () => []): Promise<NodeRecord> {
    const hostId = await this.resolve(nodeOrId)
    const item = await this.backend.get(REGISTRY + hostId)
    if (!item) throw new NodeLookupError(`no node "${nodeOrId}" is registered (it may have been removed already)`)
    const record = JSON.parse(item.value) as NodeRecord
    const conditions: Condition[] = [{ key: item.key, revision: item.revision }]
    const operations: Operation[] = [{ op: 'delete', key: item.key }, registryChangedOperation(), { op: 'delete', key: PRESENCE + hostId }, ...also(record)]
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
      if (await this.backend.txn([{ key: item.key, revision: item.revision }], registrationOperations(record))) {
        // Its new revision is unknown here: the next lookup reads it.
        this.registry.delete(hostId)
        return true
      }
    }
    throw new Error(`the registry record of host ${hostId} kept changing while its certificate expiry was written`)
  }

  /** Drops what this server remembers of a host that was removed or replaced. */
  forget(hostId: string): void {
    this.registry.delete(hostId)
    this.seen.delete(hostId)
    // Its stored presence went in the same transaction.
    this.storedPresence = undefined
  }

  /** A host ID, the holder of a node name, or the one registered host (a proxy, say) of that name. */
  async resolve(nodeOrId: string): Promise<string> {
    if (UUID.test(nodeOrId) && (await this.backend.get(REGISTRY + nodeOrId))) return nodeOrId
    const holder = await this.holderOf(nodeOrId)
    if (holder) return holder
    const named = (await this.registered()).filter((record) => record.nodename === nodeOrId)
    if (named.length > 1) throw new NodeLookupError(`"${nodeOrId}" names ${named.length} hosts (${named.map((r) => r.hostId).join(', ')}): give the host ID`)
    if (named.length === 0) throw new NodeLookupError(`no node "${nodeOrId}" is registered: give its name or host ID as "warrenctl nodes ls" shows them`)
    return named[0].hostId
  }

  /**
   * Every registered host. The list is read again only when the generation record moved (a
   * write of the registry here or on another auth server), or after REGISTRY_CACHE_MS; until
   * then the same array is answered, which callers must not change.
   */
  async registered(): Promise<NodeRecord[]> {
    // Read before the list: a write in between makes the next call list again, never miss it.
    const generation = (await this.backend.get(REGISTRY_GENERATION))?.revision ?? 0
    const held = this.registryList
    if (held && held.generation === generation && monotonicMs() - held.read < REGISTRY_CACHE_MS) return held.records
    // Calls that find the same generation meanwhile share one read.
    if (this.readingRegistry?.generation === generation) return this.readingRegistry.records
    // On the monotonic clock, as the other copies' ages: a wall clock set back would stretch them.
    const read = monotonicMs()
    const records = this.backend.list(REGISTRY).then((items) => items.map((item) => JSON.parse(item.value) as NodeRecord))
    const reading = { generation, records }
    this.readingRegistry = reading
    try {
      const list = await records
      if (!this.registryList || this.registryList.read <= read) this.registryList = { generation, read, records: list }
      return list
    } finally {
      if (this.readingRegistry === reading) this.readingRegistry = undefined
    }
  }

  async proxyHeartbeat(record: ProxyRecord): Promise<void> {
    await this.backend.put(PROXIES + record.proxyId, JSON.stringify(record), { ttlMs: this.ttlMs })
    this.listedProxies = undefined
  }

  /** A proxy that stops cleanly leaves the live set at once, rather than when its record expires. */
  async removeProxy(proxyId: string): Promise<void> {
    await this.backend.delete(PROXIES + proxyId)
    this.listedProxies = undefined
  }

  async proxies(): Promise<ProxyRecord[]> {
    return (await this.backend.list(PROXIES)).map((item) => JSON.parse(item.value) as ProxyRecord)
  }

  /** The proxies, for listings: read again after LISTED_PROXIES_MS, or once one heartbeated or left here. */
  recentProxies(): Promise<ProxyRecord[]> {
    // The monotonic clock: a wall clock set back would keep the copy for the size of the step.
    const now = monotonicMs()
    if (!this.listedProxies || now - this.listedProxies.read >= LISTED_PROXIES_MS) {
      const records = this.proxies()
      this.listedProxies = { read: now, records }
      records.catch(() => {
        if (this.listedProxies?.records === records) this.listedProxies = undefined
      })
    }
    return this.listedProxies.records
  }

  /**
   * Records a heartbeat (for a tunnel, as reported by proxy `via`); writes to the backend
   * only on a change or when the stored item needs refreshing. False when the host is not
   * registered (any more): nothing is written then.
   */
  async heartbeat(presence: Presence, via?: string): Promise<boolean> {
    const now = Date.now()
    this.sweep(now)
    // What a node says of itself beats what a proxy reports of it: a proxy's keys must not
    // take a direct node out of the proxies' address book, nor relabel it in listings.
    if (via && (await this.heardDirect(presence.hostId, now))) return true
    let entry = this.seen.get(presence.hostId)
    if (!entry) {
      entry = { presence, written: 0, signature: '', via: {} }
      this.seen.set(presence.hostId, entry)
    }
    if (via) entry.via[via] = now
    for (const [proxyId, reported] of Object.entries(entry.via)) if (now - reported > this.ttlMs + this.refreshMs) delete entry.via[proxyId]
    if (presence.lastSeen >= entry.presence.lastSeen) entry.presence = presence
    const holders = Object.keys(entry.via)
      .filter((proxyId) => now - entry.via[proxyId] <= this.ttlMs)
      .sort()
    const signature = JSON.stringify([presence.nodename, presence.roles, presence.addr, presence.tunnel, presence.labels, presence.version ?? '', holders])
    if (entry.signature === signature && now - entry.written < this.refreshMs) return true
    // Claimed before the write, so that concurrent reports of the same node write once.
    entry.signature = signature
    entry.written = now
    this.presenceWrites++
    try {
      if (await this.writePresence({ ...entry.presence, ...(presence.tunnel ? { via: { ...entry.via } } : {}) })) return true
      this.forget(presence.hostId)
      return false
    } catch (error) {
      entry.signature = ''
      entry.written = 0
      throw error
    }
  }

  /**
   * Whether the host heartbeated to an auth server itself within the TTL: here, or at
   * another auth server of the backend, as its stored presence says. The store is read only
   * for a host this server has not heard of, at most once per refresh period: a proxy reports
   * its tunnels every few seconds, and a tunnel's host is one this server heard of through it.
   */
  private async heardDirect(hostId: string, now: number): Promise<boolean> {
    const entry = this.seen.get(hostId)
    if (entry) return !entry.presence.tunnel && now - entry.presence.lastSeen <= this.ttlMs
    const known = this.directStored.get(hostId)
    if (known && now - known.read < this.refreshMs) return known.direct
    const item = await this.backend.get(PRESENCE + hostId)
    const stored = item && (JSON.parse(item.value) as Presence)
    const direct = !!stored && !stored.tunnel && now - stored.lastSeen <= this.ttlMs + this.refreshMs
    this.directStored.set(hostId, { direct, read: now })
    return direct
  }

  /**
   * Stores a presence on the condition that the host's registration is the one read: a
   * removal (or a replacement) between the read and the write makes it write nothing.
   * A tunnel node's proxies that another auth server heard from are kept.
   */
  private async writePresence(presence: Presence): Promise<boolean> {
    const key = PRESENCE + presence.hostId
    for (let attempt = 0; attempt < 2; attempt++) {
      if (attempt > 0 || !this.registry.has(presence.hostId)) await this.get(presence.hostId)
      const registration = this.registry.get(presence.hostId)
      if (!registration) return false
      const stored = presence.via ? await this.backend.get(key) : undefined
      const value = presence.via ? { ...presence, via: mergeVia(presence.via, stored && (JSON.parse(stored.value) as Presence).via, presence.lastSeen - this.ttlMs) } : presence
      if (await this.backend.txn([{ key: registryKey(presence.hostId), revision: registration.revision }], [{ op: 'put', key, value: JSON.stringify(value) }])) return true
    }
    throw new Error(`the registration of host ${presence.hostId} keeps changing: its presence is not written`)
  }

  /** Nodes whose heartbeat is fresh, by name. */
  async present(role?: string): Promise<Presence[]> {
    const now = Date.now()
    // What this server heard counts for the TTL; what another auth server stored, rewritten
    // at least every TTL/2 while heartbeats come, for TTL/2 more.
    return (await this.merged(role)).filter(({ presence, heardHere }) => now - presence.lastSeen <= this.ttlMs + (heardHere ? 0 : this.refreshMs)).map(({ presence }) => presence)
  }

  /** Every node with a presence item, online or not (for `nodes ls --all`), by name. */
  async known(role?: string): Promise<Presence[]> {
    return (await this.merged(role)).map(({ presence }) => presence)
  }

  private async merged(role?: string): Promise<KnownPresence[]> {
    const byHost = new Map<string, KnownPresence>()
    for (const presence of await this.stored()) byHost.set(presence.hostId, { presence, heardHere: false })
    // What this server heard is more recent than what it stored; an item stored by another
    // auth server after our last heartbeat of that node wins.
    for (const [hostId, entry] of this.seen) {
      const stored = byHost.get(hostId)
      if (stored && stored.presence.lastSeen > entry.presence.lastSeen) continue
      const via = entry.presence.tunnel ? { via: mergeVia(entry.via, stored?.presence.via, 0) } : {}
      byHost.set(hostId, { presence: { ...entry.presence, ...via }, heardHere: true })
    }
    return [...byHost.values()]
      .filter(({ presence }) => !role || presence.roles.includes(role))
      .sort((a, b) => a.presence.nodename.localeCompare(b.presence.nodename) || a.presence.hostId.localeCompare(b.presence.hostId))
  }

  /** Every stored presence item, read again after STORED_PRESENCE_MS or once this server removed one; shared, not to be changed. */
  private stored(): Promise<Presence[]> {
    // The monotonic clock: a wall clock set back would keep the copy for the size of the step.
    const now = monotonicMs()
    if (!this.storedPresence || now - this.storedPresence.read >= STORED_PRESENCE_MS) {
      const items = this.backend.list(PRESENCE).then((listed) => listed.map((item) => JSON.parse(item.value) as Presence))
      this.storedPresence = { read: now, items }
      items.catch(() => {
        if (this.storedPresence?.items === items) this.storedPresence = undefined
      })
    }
    return this.storedPresence.items
  }

  /** Forgets the nodes it has not heard from for longer than a stored item is trusted (at most once per refresh period). */
  private sweep(now: number): void {
    if (now - this.lastSweep < this.refreshMs) return
    this.lastSweep = now
    for (const [hostId, entry] of this.seen) if (now - entry.presence.lastSeen > this.ttlMs + this.refreshMs) this.seen.delete(hostId)
    for (const [hostId, known] of this.directStored) if (now - known.read >= this.refreshMs) this.directStored.delete(hostId)
    for (const [hostId, cached] of this.registry) if (now - cached.fetched >= REGISTRY_CACHE_MS) this.registry.delete(hostId)
  }
}

/**
 * The proxies holding a node's tunnel, by when each last reported it: ours, and those that
 * another auth server heard (`theirs`, stored) where newer and not older than `since`.
 */
function mergeVia(ours: Record<string, number>, theirs: Record<string, number> | undefined, since: number): Record<string, number> {
  const merged = { ...ours }
  for (const [proxyId, reported] of Object.entries(theirs ?? {})) {
    if (reported >= since && reported > (merged[proxyId] ?? 0)) merged[proxyId] = reported
  }
  return merged
}
