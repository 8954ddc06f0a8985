// The proxy's copy of the labels the cluster assigns to hosts (shared/assigned-labels.ts),
// followed as the revocation list is (revocations.ts): the live set the proxy reads every
// second carries their generation, and when it differs from the copy's, the auth server's
// signed statements are fetched again. Users are judged by a node's labels with the
// assigned ones in place of its own (withAssigned), and each statement is handed to its
// node through the tunnel, when the node's agent said it takes them (tunnel-server.ts).

import { ASSIGNED_LABELS_STATEMENT, type AssignedLabelsStatement, withAssigned } from '../shared/assigned-labels.ts'
import { LABEL_LIMITS, labelKeyProblem } from '../shared/labels.ts'
import type { Logger } from '../shared/log.ts'
import type { ProxyMessageIn } from '../shared/protocol/control.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { lenient } from '../shared/protocol/shape.ts'

const STATEMENT = lenient(ASSIGNED_LABELS_STATEMENT)

export interface ParsedAssignedLabels {
  generation: string
  /** Each host's statement, by host ID. */
  hosts: Map<string, AssignedLabelsStatement>
  /** Entries left out: malformed, or for another cluster. */
  dropped: number
  /** Keys a node carries only as assigned (none from an auth server of an earlier version). */
  assignedOnly: Set<string>
}

/**
 * The answer to GET /v1/proxies/assigned-labels, or undefined when it is no such answer.
 * Each entry is taken whole or not at all: a malformed one (or another cluster's) is left
 * out, never read in part. Of two entries for one host, the newer (`changed`) counts. The
 * keys only assigned are taken whole or the answer is none: fewer would judge by labels a
 * node gave itself.
 */
export function parseAssignedLabels(value: unknown, clusterName: string): ParsedAssignedLabels | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const { generation, hosts, assigned_only_keys: keys = [] } = value as { generation?: unknown; hosts?: unknown; assigned_only_keys?: unknown }
  if (typeof generation !== 'string' || !Array.isArray(hosts)) return undefined
  if (!Array.isArray(keys) || keys.length > LABEL_LIMITS.maxLabels || !keys.every((key) => typeof key === 'string' && labelKeyProblem(key) === undefined)) return undefined
  const parsed = new Map<string, AssignedLabelsStatement>()
  let dropped = 0
  hosts.forEach((entry, i) => {
    const statement = STATEMENT.parse(entry, `hosts[${i}]`)
    if (!statement || statement.cluster_name !== clusterName) {
      dropped++
      return
    }
    const held = parsed.get(statement.host_id)
    if (!held || statement.changed > held.changed) parsed.set(statement.host_id, statement)
  })
  return { generation, hosts: parsed, dropped, assignedOnly: new Set(keys as string[]) }
}

/** Whether two statements are the same (a set signed again, after a host CA rotation, is not). */
export function sameStatement(a: AssignedLabelsStatement | undefined, b: AssignedLabelsStatement | undefined): boolean {
  if (a === b) return true
  if (!a || !b) return false
  return JSON.stringify(a) === JSON.stringify(b)
}

/**
 * The `certs` message answering a node's renewal, from the auth server's answer: its assigned
 * labels pass along when the statement is whole (the node checks its signatures itself), and
 * the message carries none otherwise. Agents from before them ignore the field.
 */
export function certsMessage(renewed: RenewedCertificates): Extract<ProxyMessageIn, { type: 'certs' }> {
  const { assigned_labels, ...certificates } = renewed
  const assigned = STATEMENT.parse(assigned_labels, 'assigned_labels')
  return { type: 'certs', ...certificates, ...(assigned ? { assigned_labels: assigned } : {}) }
}

export interface ProxyAssignedLabelsOptions {
  /** GET /v1/proxies/assigned-labels. */
  fetch: () => Promise<unknown>
  clusterName: string
  /** The statements of these hosts changed (or went): their agents are told. */
  onChange: (hostIds: string[]) => void
  /** The keys only assigned changed: every node's labels may judge users otherwise now. */
  onKeysChange?: () => void
  log: Logger
}

export class ProxyAssignedLabels {
  private readonly options: ProxyAssignedLabelsOptions
  private held = new Map<string, AssignedLabelsStatement>()
  private assignedOnly: ReadonlySet<string> = new Set()
  /** '' is the auth server's generation while no labels were ever assigned: nothing to fetch. */
  private heldGeneration = ''
  private inFlight?: Promise<void>

  constructor(options: ProxyAssignedLabelsOptions) {
    this.options = options
  }

  get generation(): string {
    return this.heldGeneration
  }

  get size(): number {
    return this.held.size
  }

  /** The host's signed statement, or undefined when the cluster assigns it no labels. */
  statement(hostId: string): AssignedLabelsStatement | undefined {
    return this.held.get(hostId)
  }

  /**
   * The host's labels as users are judged by them: `reported` (its own) with the assigned
   * ones in place of its own of the same keys, and none of its own of the keys only assigned.
   */
  judged(hostId: string, reported: Record<string, string>): Record<string, string> {
    return withAssigned(reported, this.held.get(hostId)?.labels, this.assignedOnly)
  }

  /**
   * Follows the generation in the live set (GET /v1/proxies): fetches the statements when it
   * differs from the one held. An auth server of an earlier version sends none: it assigns none.
   */
  async follow(generation: unknown): Promise<void> {
    if (generation === undefined) {
      this.replace('', new Map(), new Set())
      return
    }
    if (typeof generation !== 'string' || generation === this.heldGeneration) return
    await this.refresh()
  }

  /** Fetches the statements now (one fetch at a time). */
  async refresh(): Promise<void> {
    this.inFlight ??= this.fetch().finally(() => (this.inFlight = undefined))
    await this.inFlight
  }

  private async fetch(): Promise<void> {
    const snapshot = parseAssignedLabels(await this.options.fetch(), this.options.clusterName)
    if (!snapshot) throw new Error('the auth server sent no assigned labels')
    if (snapshot.dropped > 0) this.options.log.warn(`${snapshot.dropped} malformed host(s) left out of the assigned labels`, { dropped: snapshot.dropped })
    const changed = this.replace(snapshot.generation, snapshot.hosts, snapshot.assignedOnly)
    this.options.log.debug('assigned labels updated', { hosts: snapshot.hosts.size, changed: changed.length })
  }

  /** Takes `hosts` and `assignedOnly` in place of those held; the hosts whose statement changed are told. */
  private replace(generation: string, hosts: Map<string, AssignedLabelsStatement>, assignedOnly: ReadonlySet<string>): string[] {
    const changed = [...new Set([...this.held.keys(), ...hosts.keys()])].filter((hostId) => !sameStatement(this.held.get(hostId), hosts.get(hostId)))
    const keysChanged = assignedOnly.size !== this.assignedOnly.size || [...assignedOnly].some((key) => !this.assignedOnly.has(key))
    this.held = hosts
    this.assignedOnly = assignedOnly
    this.heldGeneration = generation
    if (changed.length > 0) this.options.onChange(changed)
    if (keysChanged) this.options.onKeysChange?.()
    return changed
  }
}
