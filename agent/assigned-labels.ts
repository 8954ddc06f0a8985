// The labels the cluster assigns to this node (shared/assigned-labels.ts), as the node holds
// them and judges by them. They come signed by the auth server with its join, renewals and
// recoveries, a direct node's heartbeats, and from a tunnel's proxy whenever an admin changes
// them; whoever relays them cannot change them. A statement is taken only when it is this
// host's, signed by a host CA the node trusts now, and newer than the one held; it is kept in
// the identity on disk (shared/identity-store.ts), so that a restart judges by it too.
//
// Users' roles are judged (the SSH server, port access) against the node's own labels (its
// config, as reloaded) with the assigned ones in place of its own of the same keys. What the
// node reports (tunnel hello and heartbeats, direct heartbeats) stays its own labels: the
// cluster merges them itself.

import { AssignedLabelsRefused, type AssignedLabelsStatement, withAssigned } from '../shared/assigned-labels.ts'
import { acceptAssignedLabels, assignedLabelsFields, type NodeIdentity, saveIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import { monotonicMs } from '../shared/yamux/clock.ts'

/** Refused statements are logged at most this often (each is counted: agent/status.ts). */
export const REFUSED_LOG_MS = 60_000

export interface NodeAssignedLabelsOptions {
  /** The node's identity, which holds the assigned labels (undefined before it has one). */
  identity: () => NodeIdentity | undefined
  /** The node's own labels, as configured now (a reload changes them). */
  ownLabels: () => Record<string, string>
  /** Where the identity is saved. */
  dataDir: string
  /** Saves the identity (the agent's IdentityKeeper, which keeps it in memory when the disk refuses); saveIdentity otherwise. */
  save?: (identity: NodeIdentity) => void
  log: Logger
  /** Monotonic ms, for the refusals' log (tests pass their own). */
  clock?: () => number
}

export class NodeAssignedLabels {
  /** Statements refused since the node started. */
  refused = 0
  private readonly options: NodeAssignedLabelsOptions
  /** When a refusal was last logged. */
  private refusedLoggedAt?: number

  constructor(options: NodeAssignedLabelsOptions) {
    this.options = options
  }

  /** The labels users' roles are judged against on this node: its own, with the assigned ones in place of its own of the same keys. */
  judged(): Record<string, string> {
    return withAssigned(this.options.ownLabels(), this.options.identity()?.assignedLabels?.labels)
  }

  /**
   * Takes `statement` into the identity (in place: the caller saves it, as it saves the
   * certificates of an answer) when it checks out; true when it did. A refused statement
   * changes nothing and is logged at WARN, at most every REFUSED_LOG_MS; none, or one no newer
   * than the labels held, changes nothing. Never throws: a tunnel carries on whatever its
   * proxy sends.
   */
  take(statement: AssignedLabelsStatement | undefined, from: string): boolean {
    const identity = this.options.identity()
    if (statement === undefined || identity === undefined) return false
    try {
      if (!acceptAssignedLabels(identity, statement)) return false
    } catch (error) {
      const reason = (error as Error).message
      if (error instanceof AssignedLabelsRefused) this.refusedFrom(from, reason)
      else this.options.log.error(`assigned labels from ${from} could not be judged: ${reason}`, { assigned_labels_refused: reason, from })
      return false
    }
    this.options.log.info(`assigned labels updated (from ${from})`, { host_id: identity.hostId, ...assignedLabelsFields(identity) })
    return true
  }

  /** Takes `statement` (take) and saves the identity when it did: a statement that came alone (a proxy's `labels` message, a heartbeat's answer). */
  receive(statement: AssignedLabelsStatement | undefined, from: string): boolean {
    if (!this.take(statement, from)) return false
    try {
      if (this.options.save) this.options.save(this.options.identity()!)
      else saveIdentity(this.options.dataDir, this.options.identity()!)
    } catch (error) {
      // Held all the same; the next save of the identity writes them.
      this.options.log.error(`the assigned labels could not be saved: ${(error as Error).message}`, { data_dir: this.options.dataDir })
    }
    return true
  }

  private refusedFrom(from: string, reason: string): void {
    this.refused++
    const now = (this.options.clock ?? monotonicMs)()
    if (this.refusedLoggedAt !== undefined && now - this.refusedLoggedAt < REFUSED_LOG_MS) return
    this.refusedLoggedAt = now
    this.options.log.warn(`assigned labels from ${from} refused: ${reason}`, { assigned_labels_refused: reason, from, assigned_labels_refused_count: this.refused })
  }
}
