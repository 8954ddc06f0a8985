// The labels the cluster assigns to hosts (shared/assigned-labels.ts): one record per host
// that has any, written with the join that used a token with labels, changed by `warrenctl
// nodes label`, deleted with the host. Every write also changes one generation record, so
// the view is read again only when something changed: each auth server reads that one
// record every REFRESH_MS, and proxies fetch the view when its generation (in GET
// /v1/proxies) differs from theirs, as they do the revocation list.

import { createHash, randomUUID } from 'node:crypto'
import { type AssignedLabelsStatement, signAssignedLabels, withAssigned } from '../shared/assigned-labels.ts'
import type { Logger } from '../shared/log.ts'
import type { TrustSigner } from '../shared/trust-statement.ts'
import type { Authority } from './authorities.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'
import { REFRESH_MS } from './revocations.ts'

const PREFIX = '/assigned-labels/'
const GENERATION = '/assigned-labels-generation'

export interface AssignedRecord {
  hostId: string
  labels: Record<string, string>
  /** When they last changed (epoch ms): nodes keep the newest set they are given. */
  changed: number
}

/** A change of one host's assigned labels, for a transaction of the caller's. */
export interface AssignedChange {
  conditions: Condition[]
  operations: Operation[]
  record: AssignedRecord
}

export interface AssignedLabelsOptions {
  backend: Backend
  clusterName: string
  hostCA: () => Authority
  log: Logger
  clock?: () => number
  /** `auth_service.assigned_label_keys`: keys a node carries only as assigned. */
  assignedOnlyKeys?: readonly string[]
}

export class AssignedLabels {
  private readonly options: AssignedLabelsOptions
  private readonly clock: () => number
  /** Keys a node carries only as assigned: its own values for them are dropped (withAssigned). */
  private onlyAssignedKeys: ReadonlySet<string> = new Set()
  /** The keys' part of the generation ('' when there are none). */
  private keysDigest = ''
  private records = new Map<string, AssignedRecord>()
  private readGeneration = ''
  private timer?: NodeJS.Timeout
  private reading: Promise<void> = Promise.resolve()
  /** Signed statements, by host, for the host CA that signed them. */
  private signed = new Map<string, { authority: Authority; changed: number; statement: AssignedLabelsStatement }>()

  constructor(options: AssignedLabelsOptions) {
    this.options = options
    this.clock = options.clock ?? Date.now
    this.assignedOnly = new Set(options.assignedOnlyKeys ?? [])
  }

  /** Keys a node carries only as assigned: its own values for them are dropped (withAssigned). */
  get assignedOnly(): ReadonlySet<string> {
    return this.onlyAssignedKeys
  }

  /**
   * The config's keys, or the union of the live auth servers' (auth/assigned-label-keys.ts).
   * Their part of the generation is worked out here, once per change, not at each proxy's poll.
   */
  set assignedOnly(keys: ReadonlySet<string>) {
    this.onlyAssignedKeys = new Set(keys)
    this.keysDigest =
      keys.size === 0
        ? ''
        : createHash('sha256')
            .update(JSON.stringify([...keys].sort()))
            .digest('base64url')
            .slice(0, 16)
  }

  async start(): Promise<void> {
    await this.refresh()
    this.timer = setInterval(() => {
      this.refresh().catch((error: Error) => this.options.log.warn(`reading the assigned labels failed: ${error.message}`))
    }, REFRESH_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** Reads the view again if its generation changed (one read at a time). */
  refresh(): Promise<void> {
    const next = this.reading.catch(() => {}).then(() => this.read())
    this.reading = next
    return next
  }

  /**
   * Changes whenever any host's assigned labels do, or the keys only assigned ('' while none
   * were ever assigned and no key is): what proxies follow to fetch them again.
   */
  get generation(): string {
    return this.keysDigest === '' ? this.readGeneration : `${this.readGeneration}/${this.keysDigest}`
  }

  /** The host's assigned labels, or undefined when it has none. */
  forHost(hostId: string): Record<string, string> | undefined {
    return this.records.get(hostId)?.labels
  }

  /**
   * `node` with its labels as the cluster judges them: the assigned ones in place of its own of
   * the same keys, and none of its own of the keys only assigned.
   */
  apply<T extends { labels: Record<string, string> }>(hostId: string, node: T): T {
    const assigned = this.forHost(hostId)
    return assigned || this.assignedOnly.size > 0 ? { ...node, labels: withAssigned(node.labels, assigned, this.assignedOnly) } : node
  }

  /** The host's assigned labels, signed for it; undefined when it has none and never had. */
  statement(hostId: string): AssignedLabelsStatement | undefined {
    const record = this.records.get(hostId)
    if (!record) return undefined
    const authority = this.options.hostCA()
    const held = this.signed.get(hostId)
    if (held && held.authority === authority && held.changed === record.changed) return held.statement
    const signers: TrustSigner[] = authority.keySets.map((set) => ({ certPem: set.tlsCertPem, key: set.tlsKey }))
    const statement = signAssignedLabels({ cluster_name: this.options.clusterName, host_id: hostId, labels: record.labels, changed: record.changed }, signers)
    this.signed.set(hostId, { authority, changed: record.changed, statement })
    return statement
  }

  /** Every host's signed statement, for proxies, which hand each to its node. */
  statements(): AssignedLabelsStatement[] {
    return [...this.records.keys()].flatMap((hostId) => this.statement(hostId) ?? [])
  }

  /**
   * Sets a host's assigned labels to `labels` (none: an empty set, which a node takes in place
   * of what it held). Conditional on the record as read, so two admins' changes never mix.
   */
  async plan(hostId: string, change: (current: Record<string, string>) => Record<string, string>): Promise<AssignedChange> {
    const item = await this.options.backend.get(PREFIX + hostId)
    const stored = item && (JSON.parse(item.value) as AssignedRecord)
    // Never two changes in one millisecond: a node keeps only a newer set than its own.
    const changed = Math.max(this.clock(), stored ? stored.changed + 1 : 0)
    const record: AssignedRecord = { hostId, labels: change(stored?.labels ?? {}), changed }
    return {
      conditions: [item ? { key: item.key, revision: item.revision } : { key: PREFIX + hostId, absent: true }],
      operations: [{ op: 'put', key: PREFIX + hostId, value: JSON.stringify(record) }, this.bump()],
      record,
    }
  }

  /**
   * The first assigned labels of a host that is joining (its record cannot exist yet), and
   * the removal of those of the host it replaces (a token made for that name): one change.
   */
  joinOperations(hostId: string, labels: Record<string, string>, replaced?: string): Operation[] {
    const operations: Operation[] = []
    if (Object.keys(labels).length > 0)
      operations.push({ op: 'put', key: PREFIX + hostId, value: JSON.stringify({ hostId, labels, changed: this.clock() } satisfies AssignedRecord) })
    if (replaced !== undefined) operations.push({ op: 'delete', key: PREFIX + replaced })
    return operations.length > 0 ? [...operations, this.bump()] : []
  }

  /** The host's record goes with the host. */
  removeOperations(hostId: string): Operation[] {
    return [{ op: 'delete', key: PREFIX + hostId }, this.bump()]
  }

  private bump(): Operation {
    return { op: 'put', key: GENERATION, value: randomUUID() }
  }

  private async read(): Promise<void> {
    const generation = (await this.options.backend.get(GENERATION))?.value ?? ''
    if (generation === this.readGeneration) return
    const items = await this.options.backend.list(PREFIX)
    this.records = new Map(items.map((item) => JSON.parse(item.value) as AssignedRecord).map((record) => [record.hostId, record]))
    for (const hostId of this.signed.keys()) if (!this.records.has(hostId)) this.signed.delete(hostId)
    this.readGeneration = generation
  }
}
