// Who did what: every audited action records one event here, once it has committed, with
// record(type, fields); the types and their fields are listed in shared/protocol/audit.ts.
// Events go to the backend's audit log (audit-log.ts) and, when auth_service.audit.file is
// set, as one JSON line each to that file for log shippers (audit-file.ts). A failure to
// store one is logged and never fails the action it records: the action has already happened.

import { createHash, randomUUID } from 'node:crypto'
import type { Logger } from '../shared/log.ts'
import type { AuditEvent, AuditEventType, AuditValue, NodeEventType } from '../shared/protocol/audit.ts'
import { parseSshCertificate } from '../shared/ssh-cert.ts'
import { AuditFile } from './audit-file.ts'
import { AuditLog } from './audit-log.ts'
import type { Backend } from './backend/backend.ts'
import type { Peer } from './callers.ts'
import { TooManyAttempts } from './rate-limit.ts'

export type AuditFields = Record<string, AuditValue | undefined>

// Retention is a matter of days: looking once an hour is plenty.
const PURGE_INTERVAL_MS = 3_600_000
/**
 * How far ahead of this server's clock a node's event may be dated: clocks differ a little.
 * Later ones are dated when they arrive (the node's time kept as `node_time`): dated years
 * ahead, one node's events would crowd the newest of a listing and outlast retention.
 */
export const NODE_CLOCK_AHEAD_MS = 5 * 60_000

/**
 * Each node's budget of events stored, a token bucket per host ID: a burst for a queue that
 * waited out an outage (the node sends at most 100 a batch), then a steady rate far above what
 * people's sessions make, yet ~200 times below what one node's stolen keys were seen to send
 * (4,300 a second, 16 GB of backend an hour). Over it, a batch is refused whole, before its
 * signature is checked or anything is stored; the node keeps it and sends it again later.
 */
export const NODE_EVENT_BURST = 1000
export const NODE_EVENTS_PER_SECOND = 20
/**
 * The same budget in stored bytes (an event's fields as JSON, as MAX_STORED_EVENT_BYTES counts
 * them): counted in events alone, a node's keys stored 112 KB an event, 8 GB an hour. An honest
 * event takes 200 bytes to 1.5 KB (a session's fields, a command or a path), so an honest node
 * meets the event budget first: the burst is the event burst at 2 KiB each, the rate 20 events
 * a second at 800 bytes. At most 58 MB an hour a node, 140 times less than before.
 */
export const NODE_BYTES_BURST = 2 * 1024 * 1024
export const NODE_BYTES_PER_SECOND = 16 * 1024
/**
 * The most of a node's fields stored for one event, as JSON: an honest event is its session's
 * fields with a command, or an sftp path and target, of 1,024 characters each; at 3 bytes of
 * UTF-8 a character that is at most about 6.5 KB. Past it the longest fields are cut and the
 * event is stored with `truncated: true` (refusing it would refuse its whole batch, which its
 * node then drops: the events that say who did what with it).
 */
export const MAX_STORED_EVENT_BYTES = 8 * 1024
/**
 * Control characters besides tab and newline, which a node's fields hold as U+FFFD instead:
 * no honest command or file name needs them to be read, each is stored escaped as 6 bytes
 * (\u0001), and they are what would drive the terminal of whoever reads the log. Replaced,
 * not refused: a user who names a file with one would otherwise have their node's batch
 * refused, and dropped, with their own session's events in it.
 */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g
/**
 * Batches a proxy relays in a node's name are charged to that node only once the node's
 * signature proved them: a proxy's stolen keys could otherwise spend any node's budget with
 * forged batches, and the node's real events would wait, then be dropped from its queue. What
 * a proxy relays that fails the check is charged to the proxy instead, so a flood of forgeries
 * costs few signature checks: past this budget, its relayed batches are refused before they
 * are checked. An honest proxy relays nothing signed that fails: it checks a node's signature
 * against the key of the node's tunnel certificate before relaying (proxy/audit-relay.ts), so
 * a node's own forgeries stop there. A node of an earlier version does not sign: its batches
 * are refused without a check, and charged to no one.
 */
export const PROXY_FAILED_RELAY_BURST = 100
export const PROXY_FAILED_RELAYS_PER_SECOND = 5
/** Buckets kept before the full (idle) ones are forgotten; doubles while most are in use, as in rate-limit.ts. */
const NODE_BUCKETS_PRUNE_AT = 10_000

/**
 * A node over its budget: answered 429 with Retry-After (errors.ts, as TooManyAttempts), which
 * the node and the proxy carrying its events treat as "later", never as "drop" (400, 413).
 */
export class NodeEventsOverBudget extends TooManyAttempts {
  constructor(hostId: string, waitMs: number) {
    super(hostId, waitMs)
    this.message = `host ${hostId} sent more audit events than its budget; try again in ${this.retryAfterS}s`
  }
}

export interface NodeEventBudgetOptions {
  burst?: number
  perSecond?: number
  /** A budget of bytes beside the events' (NODE_BYTES_BURST and NODE_BYTES_PER_SECOND for nodes); none unless given. */
  bytesBurst?: number
  bytesPerSecond?: number
  clock?: () => number
}

interface Bucket {
  tokens: number
  bytes: number
  updated: number
  refusing: boolean
}

/** Token buckets by host ID, in memory: each auth server holds every node to the budget by itself. */
export class NodeEventBudget {
  readonly #buckets = new Map<string, Bucket>()
  readonly #burst: number
  readonly #refillPerMs: number
  readonly #bytesBurst: number
  readonly #bytesPerMs: number
  readonly #clock: () => number
  #pruneAt = NODE_BUCKETS_PRUNE_AT
  /** Batches refused since start, for whoever watches. */
  refused = 0

  constructor(options: NodeEventBudgetOptions = {}) {
    this.#burst = options.burst ?? NODE_EVENT_BURST
    this.#refillPerMs = (options.perSecond ?? NODE_EVENTS_PER_SECOND) / 1000
    this.#bytesBurst = options.bytesBurst ?? Number.POSITIVE_INFINITY
    this.#bytesPerMs = (options.bytesPerSecond ?? 1) / 1000
    this.#clock = options.clock ?? Date.now
  }

  /**
   * Takes `count` events of `bytes` in all from `hostId`'s budget, all or none. Returns 0 when
   * taken, else the milliseconds until they would be (nothing taken). A batch is never above
   * the burst: at most a burst is asked, or it could never pass.
   */
  take(hostId: string, count: number, bytes = 0): number {
    const bucket = this.#refill(hostId) ?? this.#full()
    this.#buckets.set(hostId, bucket)
    const wait = this.#wait(bucket, count, bytes)
    if (wait > 0) {
      this.refused++
      return wait
    }
    bucket.tokens -= Math.min(count, this.#burst)
    bucket.bytes -= Math.min(bytes, this.#bytesBurst)
    if (this.#buckets.size > this.#pruneAt) this.#prune()
    return 0
  }

  /** 0 when `count` could be taken from `key`'s budget now, else the milliseconds until it could; takes nothing. */
  waitFor(key: string, count: number): number {
    const wait = this.#wait(this.#refill(key) ?? this.#full(), count, 0)
    if (wait > 0) this.refused++
    return wait
  }

  #full(): Bucket {
    return { tokens: this.#burst, bytes: this.#bytesBurst, updated: this.#clock(), refusing: false }
  }

  /** The milliseconds until `bucket` holds `count` events and `bytes`, each at most its burst. */
  #wait(bucket: Bucket, count: number, bytes: number): number {
    const events = Math.max(0, Math.min(count, this.#burst) - bucket.tokens) / this.#refillPerMs
    const stored = Math.max(0, Math.min(bytes, this.#bytesBurst) - bucket.bytes) / this.#bytesPerMs
    return Math.ceil(Math.max(events, stored))
  }

  /**
   * Whether this is `hostId`'s first refusal since its budget was last full: a flood is
   * logged once, not once a batch (nor once for each batch it squeezes in at the rate).
   */
  firstRefusal(hostId: string): boolean {
    const bucket = this.#buckets.get(hostId)
    if (!bucket || bucket.refusing) return false
    bucket.refusing = true
    return true
  }

  get size(): number {
    return this.#buckets.size
  }

  #refill(hostId: string): Bucket | undefined {
    const bucket = this.#buckets.get(hostId)
    if (!bucket) return undefined
    const now = this.#clock()
    const elapsed = Math.max(0, now - bucket.updated)
    bucket.tokens = Math.min(this.#burst, bucket.tokens + elapsed * this.#refillPerMs)
    bucket.bytes = Math.min(this.#bytesBurst, bucket.bytes + elapsed * this.#bytesPerMs)
    bucket.updated = now
    if (this.#isFull(bucket)) bucket.refusing = false
    return bucket
  }

  #isFull(bucket: Bucket): boolean {
    return bucket.tokens >= this.#burst && bucket.bytes >= this.#bytesBurst
  }

  /** Forgets idle hosts (buckets full again): memory stays bounded by the hosts sending now. */
  #prune(): void {
    for (const hostId of this.#buckets.keys()) {
      const bucket = this.#refill(hostId)
      if (bucket && this.#isFull(bucket)) this.#buckets.delete(hostId)
    }
    this.#pruneAt = Math.max(NODE_BUCKETS_PRUNE_AT, this.#buckets.size * 2)
  }
}

export interface AuditOptions {
  backend: Backend
  clusterName: string
  retentionMs: number
  /** Where every stored event is also appended as a JSON line. */
  file?: string
  /** The auth server's data dir, which says which outbox of lines for `file` is this server's; needed with `file`. */
  dataDir?: string
  /** audit-file.ts's MAX_WAITING_LINES unless a test wants a bound it can reach. */
  maxWaitingFileLines?: number
  log: Logger
  clock?: () => number
  /** Told of each event of the auth server's own as it is recorded (for metrics). */
  onRecord?: (type: AuditEventType, fields: AuditFields) => void
  /** Each node's budget of events and bytes; NODE_EVENT_BURST, NODE_EVENTS_PER_SECOND, NODE_BYTES_BURST and NODE_BYTES_PER_SECOND unless given. */
  nodeBudget?: Omit<NodeEventBudgetOptions, 'clock'>
}

export class Audit {
  readonly log: AuditLog
  readonly nodeBudget: NodeEventBudget
  /** Relayed batches that failed their check, by proxy ID. */
  readonly failedRelays: NodeEventBudget
  readonly #options: AuditOptions
  readonly #clock: () => number
  readonly #file?: AuditFile
  #purgeTimer?: NodeJS.Timeout

  constructor(options: AuditOptions) {
    this.#options = options
    this.#clock = options.clock ?? Date.now
    this.log = new AuditLog({ backend: options.backend, retentionMs: options.retentionMs, clock: this.#clock })
    this.nodeBudget = new NodeEventBudget({ bytesBurst: NODE_BYTES_BURST, bytesPerSecond: NODE_BYTES_PER_SECOND, ...options.nodeBudget, clock: this.#clock })
    this.failedRelays = new NodeEventBudget({ burst: PROXY_FAILED_RELAY_BURST, perSecond: PROXY_FAILED_RELAYS_PER_SECOND, clock: this.#clock })
    if (options.file !== undefined) {
      if (options.dataDir === undefined) throw new Error('an audit file needs the data dir that keeps its outbox ID')
      this.#file = new AuditFile({
        backend: options.backend,
        file: options.file,
        dataDir: options.dataDir,
        log: options.log,
        clock: this.#clock,
        maxWaitingLines: options.maxWaitingFileLines,
      })
    }
  }

  /** Before a proxy's relayed batch is checked: refused (429) while the proxy's forgeries are over their budget. */
  admitRelayedBy(proxyId: string): void {
    const waitMs = this.failedRelays.waitFor(proxyId, 1)
    if (waitMs === 0) return
    if (this.failedRelays.firstRefusal(proxyId))
      this.#options.log.warn("a proxy relays audit events that fail their node's signature: its relayed batches are refused until it slows down", { proxy_id: proxyId })
    throw new NodeEventsOverBudget(`relayed by proxy ${proxyId}`, waitMs)
  }

  /** A batch a proxy relayed failed its check: charged to the proxy, not to the node it named. */
  relayRefused(proxyId: string): void {
    this.failedRelays.take(proxyId, 1)
  }

  /**
   * Charges a batch to the node `hostId`, its events and the bytes they will take stored,
   * before anything else is done with them (signature checks cost too); throws
   * NodeEventsOverBudget, refusing the batch whole, when the node is over its budget. Which
   * host is charged is the caller's to prove: the TLS certificate, or the proxy that carries
   * the node's tunnel. A count alone (tests) charges no bytes.
   */
  admitNodeEvents(hostId: string, batch: number | NodeEventIn[]): void {
    const count = typeof batch === 'number' ? batch : batch.length
    const bytes = typeof batch === 'number' ? 0 : batch.reduce((sum, event) => sum + storedFields(event.fields).bytes, 0)
    // An empty batch costs the check of its signature all the same: it is charged as one event.
    const waitMs = this.nodeBudget.take(hostId, Math.max(1, count), bytes)
    if (waitMs === 0) return
    // A flood must not become one in the log too.
    if (this.nodeBudget.firstRefusal(hostId))
      this.#options.log.warn('a node sends more audit events than its budget: its batches are refused until it slows down', {
        host_id: hostId,
        refused_batches: this.nodeBudget.refused,
      })
    throw new NodeEventsOverBudget(hostId, waitMs)
  }

  /** Records an event of the auth server's own, now. Never throws. */
  async record(type: AuditEventType, fields: AuditFields, id: string = randomUUID()): Promise<void> {
    this.#options.onRecord?.(type, fields)
    const defined = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined))
    await this.#store({ ...defined, id, time: this.#clock(), type, cluster: this.#options.clusterName })
  }

  /**
   * A node's recording refused for good (it drops it): one event per recording (its ID made
   * from the node's and the session's, so that a chunk sent again stores nothing new), and
   * within the node's budget of events, since the node chooses the session IDs it refuses.
   */
  async recordingRefused(hostId: string, sessionId: string, fields: () => Promise<AuditFields>): Promise<void> {
    // Before any lookup: a flood of refusals costs the node's budget, not the backend's reads.
    if (this.nodeBudget.take(hostId, 1) > 0) return
    // With a colon, which no node's event ID has (EVENT_ID): a node cannot take this ID first.
    const id = `recording-refused:${createHash('sha256').update(`${hostId}/${sessionId}`).digest('hex').slice(0, 40)}`
    await this.record('recording.refused', { ...(await fields()), host_id: hostId, session_id: sessionId }, id)
  }

  /** A certificate issued: its principals and lifetime as the SSH certificate itself says. */
  async certIssued(kind: 'user' | 'host', sshCert: string, fields: AuditFields): Promise<void> {
    const cert = parseSshCertificate(sshCert)
    await this.record('cert.issued', { kind, ...fields, principals: cert.principals.join(','), ttl_ms: cert.validBefore.getTime() - this.#clock() })
  }

  /** Stores events a node sent, as the node it is (never what the events say); returns how many were new. */
  async ingest(events: NodeEventIn[], node: { nodename: string; hostId: string }): Promise<number> {
    let stored = 0
    for (const event of events) {
      const now = this.#clock()
      const dated = event.time > now + NODE_CLOCK_AHEAD_MS ? { time: now, node_time: event.time } : { time: event.time }
      const { fields } = storedFields(event.fields)
      const full: AuditEvent = { ...fields, id: event.id, ...dated, type: event.type, cluster: this.#options.clusterName, node: node.nodename, host_id: node.hostId }
      // A node's event that fails to store fails the batch: the node keeps it and sends it again.
      if (await this.#append(full)) stored++
    }
    return stored
  }

  /**
   * Starts purging past retention, and writes the audit file's lines that a run before left
   * unwritten. Throws when the audit file cannot be written.
   */
  async start(): Promise<void> {
    if (this.#file) {
      await this.#file.open()
    } else if (this.#options.dataDir !== undefined) {
      await AuditFile.forget(this.#options.backend, this.#options.dataDir)
    }
    this.#purgeTimer = setInterval(() => void this.purge(), PURGE_INTERVAL_MS)
    this.#purgeTimer.unref()
    void this.purge()
  }

  async stop(): Promise<void> {
    clearInterval(this.#purgeTimer)
    await this.#file?.stop()
  }

  /** Removes the events past retention; failures are logged and retried at the next interval. */
  async purge(): Promise<void> {
    try {
      const removed = await this.log.purge()
      if (removed > 0) this.#options.log.info('audit events past retention removed', { removed })
    } catch (error) {
      this.#options.log.warn(`removing old audit events failed: ${(error as Error).message}`)
    }
  }

  async #store(event: AuditEvent): Promise<void> {
    try {
      await this.#append(event)
    } catch (error) {
      this.#options.log.error(`audit event not stored: ${(error as Error).message}`, { event: JSON.stringify(event) })
    }
  }

  /** Stores `event` with its audit file line (audit-file.ts); false when its ID is stored already. */
  async #append(event: AuditEvent): Promise<boolean> {
    const line = this.#file?.outboxPut(event) ?? []
    const stored = await this.log.append(event, line)
    if (stored && line.length > 0) this.#file?.filed()
    return stored
  }
}

/** A node's event as the auth server receives it. */
export interface NodeEventIn {
  id: string
  time: number
  type: NodeEventType
  fields: Record<string, AuditValue>
}

/**
 * A node's fields as they are stored, and their size as JSON: control characters replaced
 * (CONTROL), and within MAX_STORED_EVENT_BYTES, the longest fields cut to one length.
 */
export function storedFields(fields: Record<string, AuditValue>): { fields: Record<string, AuditValue>; bytes: number } {
  const stored: Record<string, AuditValue> = {}
  for (const [name, value] of Object.entries(fields)) stored[name] = typeof value === 'string' ? value.replace(CONTROL, '\uFFFD') : value
  const bytes = Buffer.byteLength(JSON.stringify(stored))
  if (bytes <= MAX_STORED_EVENT_BYTES) return { fields: stored, bytes }
  // The longest length every string field may keep, by bisection: short fields (who did it) stay whole.
  const cut = (length: number) => {
    const fields: Record<string, AuditValue> = { ...stored, truncated: true }
    for (const [name, value] of Object.entries(stored)) if (typeof value === 'string' && value.length > length) fields[name] = value.slice(0, length)
    return { fields, bytes: Buffer.byteLength(JSON.stringify(fields)) }
  }
  let [fits, over] = [0, Math.max(...Object.values(stored).map((value) => (typeof value === 'string' ? value.length : 0)))]
  while (over - fits > 1) {
    const middle = Math.floor((fits + over) / 2)
    if (cut(middle).bytes <= MAX_STORED_EVENT_BYTES) fits = middle
    else over = middle
  }
  return cut(fits)
}

/** Who made an admin request: the user a proxy vouched for, else the local admin identity. */
export function actorOf(peer: Peer | null): string {
  if (peer?.kind === 'user') return peer.subject.commonName
  return peer?.kind === 'admin' ? 'admin' : 'unknown'
}
