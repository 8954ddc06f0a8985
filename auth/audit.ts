// Who did what: every audited action records one event here, once it has committed, with
// record(type, fields); the types and their fields are listed in shared/protocol/audit.ts.
// Events go to the backend's audit log (audit-log.ts) and, when auth_service.audit.file is
// set, as one JSON line each to that file for log shippers. A failure to write either is
// logged and never fails the action it records: the action has already happened.

import { randomUUID } from 'node:crypto'
import { appendFile } from 'node:fs/promises'
import type { Logger } from '../shared/log.ts'
import type { AuditEvent, AuditEventType, AuditValue, NodeEventType } from '../shared/protocol/audit.ts'
import { parseSshCertificate } from '../shared/ssh-cert.ts'
import { AuditLog } from './audit-log.ts'
import type { Backend } from './backend/backend.ts'
import type { Peer } from './callers.ts'

export type AuditFields = Record<string, AuditValue | undefined>

// Retention is a matter of days: looking once an hour is plenty.
const PURGE_INTERVAL_MS = 3_600_000
/**
 * How far ahead of this server's clock a node's event may be dated: clocks differ a little.
 * Later ones are dated when they arrive (the node's time kept as `node_time`): dated years
 * ahead, one node's events would crowd the newest of a listing and outlast retention.
 */
export const NODE_CLOCK_AHEAD_MS = 5 * 60_000

export interface AuditOptions {
  backend: Backend
  clusterName: string
  retentionMs: number
  /** Where every stored event is also appended as a JSON line. */
  file?: string
  log: Logger
  clock?: () => number
  /** Told of each event of the auth server's own as it is recorded (for metrics). */
  onRecord?: (type: AuditEventType, fields: AuditFields) => void
}

export class Audit {
  readonly log: AuditLog
  readonly #options: AuditOptions
  readonly #clock: () => number
  /** File appends, one after another, so lines never interleave and keep their order. */
  #fileWrites: Promise<void> = Promise.resolve()
  #purgeTimer?: NodeJS.Timeout

  constructor(options: AuditOptions) {
    this.#options = options
    this.#clock = options.clock ?? Date.now
    this.log = new AuditLog({ backend: options.backend, retentionMs: options.retentionMs, clock: this.#clock })
  }

  /** Records an event of the auth server's own, now. Never throws. */
  async record(type: AuditEventType, fields: AuditFields): Promise<void> {
    this.#options.onRecord?.(type, fields)
    const defined = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined))
    await this.#store({ ...defined, id: randomUUID(), time: this.#clock(), type, cluster: this.#options.clusterName })
  }

  /** A certificate issued: its principals and lifetime as the SSH certificate itself says. */
  async certIssued(kind: 'user' | 'host', sshCert: string, fields: AuditFields): Promise<void> {
    const cert = parseSshCertificate(sshCert)
    await this.record('cert.issued', { kind, ...fields, principals: cert.principals.join(','), ttl_ms: cert.validBefore.getTime() - this.#clock() })
  }

  /** Stores events a node sent, as the node it is (never what the events say); returns how many were new. */
  async ingest(events: { id: string; time: number; type: NodeEventType; fields: Record<string, AuditValue> }[], node: { nodename: string; hostId: string }): Promise<number> {
    let stored = 0
    for (const event of events) {
      const now = this.#clock()
      const dated = event.time > now + NODE_CLOCK_AHEAD_MS ? { time: now, node_time: event.time } : { time: event.time }
      const full: AuditEvent = { ...event.fields, id: event.id, ...dated, type: event.type, cluster: this.#options.clusterName, node: node.nodename, host_id: node.hostId }
      // A node's event that fails to store fails the batch: the node keeps it and sends it again.
      if (await this.log.append(full)) {
        stored++
        this.#appendToFile(full)
      }
    }
    return stored
  }

  start(): void {
    this.#purgeTimer = setInterval(() => void this.purge(), PURGE_INTERVAL_MS)
    this.#purgeTimer.unref()
    void this.purge()
  }

  async stop(): Promise<void> {
    clearInterval(this.#purgeTimer)
    await this.#fileWrites
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
      await this.log.append(event)
    } catch (error) {
      this.#options.log.error(`audit event not stored: ${(error as Error).message}`, { event: JSON.stringify(event) })
      return
    }
    this.#appendToFile(event)
  }

  #appendToFile(event: AuditEvent): void {
    const file = this.#options.file
    if (file === undefined) return
    this.#fileWrites = this.#fileWrites.then(() =>
      appendFile(file, `${JSON.stringify(event)}\n`, { mode: 0o600 }).catch((error: Error) => {
        this.#options.log.warn(`audit file ${file} not written: ${error.message}`, { event_id: event.id, type: event.type })
      }),
    )
  }
}

/** Who made an admin request: the user a proxy vouched for, else the local admin identity. */
export function actorOf(peer: Peer | null): string {
  if (peer?.kind === 'user') return peer.subject.commonName
  return peer?.kind === 'admin' ? 'admin' : 'unknown'
}
