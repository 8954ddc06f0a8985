// The audit trail on the wire: every event type with the fields it carries, the batches of
// events nodes send (POST /v1/audit/events) and what `warrenctl audit ls` reads (GET
// /v1/audit/events). The auth server keeps the log (auth/audit.ts); nodes queue their own
// events on disk until the auth server has them (agent/audit-queue.ts).

import { NODE_SIGNATURE } from '../node-signature.ts'
import { FieldError, lenient, list, number, object, oneOf, type Shape, text } from './shape.ts'

/**
 * Every event type and the fields it carries besides id, time, type and cluster. Secrets
 * never appear: a token is named by its ID (as `tokens ls` shows it), a login by its user.
 */
export const AUDIT_EVENT_TYPES = {
  join: 'accepted (true/false), node, host_id, roles, client_addr, reason (refused), repeated (true: the repeat of a join whose answer was lost)',
  'node.removed': 'node, host_id, actor',
  'node.labels': 'node, host_id, assigned (the assigned labels after the change, key=value,…), actor',
  'lock.created': 'lock_id, target, user or node and host_id, message, expires, actor',
  'lock.removed': 'lock_id, target, actor',
  'user.created': 'user, logins, roles, signup_token_id, actor',
  'user.removed': 'user, actor',
  'user.reset': 'user, lock_id (the lock on the certificates from before), signup_token_id, actor',
  'invite.accepted': 'user, client_addr, method (web: in the web console)',
  login: 'success (true/false), user, client_addr, method (web: in the web console), reason (failed)',
  'cert.issued': 'kind (user/host), user or node and host_id, principals, ttl_ms, method (web: a web terminal)',
  'role.created': 'role, replaced (true/false), actor',
  'role.removed': 'role, actor',
  'token.created': 'token_id, roles, single_use, expires, node (a token for one node name), labels (those it assigns, key=value,…), actor',
  'token.removed': 'token_id, actor',
  'rotation.phase': 'ca (host/user), from, to, actor',
  'recording.refused':
    "node, host_id, session_id, user and login (the session's, when its start is stored), reason: a session recording the auth server refused, which the node then drops",
  'recording.skipped':
    "session_id, user, login, node, host_id, client_addr, recording (the recording's name: the session ID, or ID.N for a connection's Nth), reason_code (RECORDING_SKIPPED_CODES: user_share, node_full, size_bound, file_error), reason: an interactive session the node did not record (the user's share of the recordings waiting on the node full, all of it full, or the file not made); with bytes_kept, a recording cut short while its session went on",
  'session.start': 'session_id, user (the certificate key ID), login, node, host_id, client_addr',
  'session.end': 'session_id, user, login, node, host_id, client_addr, duration_ms, exit_status',
  exec: 'session_id, user, login, node, host_id, client_addr, command',
  port_forward:
    'session_id, user, login, node, host_id, client_addr, host, port (where the node connects: ssh -L), direction (remote: ssh -R, where the node listens), name (a declared port reached with warren proxy port: no session or login)',
  sftp: 'session_id, user, login, node, host_id, client_addr, operation, path, target (rename, symlink, link), bytes (read, write), flags (open: read, write, append, create, truncate, exclusive), outcome (unknown: asked for, its answer not told)',
  'events.dropped':
    "node, host_id, dropped (how many of the node's events its full queue dropped), types (type=count,…), sessions, users (the first 20 affected), user and session_id (when one), since, until (the dropped events' times)",
} as const

export type AuditEventType = keyof typeof AUDIT_EVENT_TYPES

/**
 * Why a node did not record a session, or cut its recording short: the `reason_code` of a
 * `recording.skipped` event, for programs, beside its `reason` in words (with the figures).
 * Events of nodes of earlier versions have the `reason` alone.
 */
export const RECORDING_SKIPPED_CODES = {
  user_share: "the user's recordings being written or waiting on the node hold their share of what may wait",
  node_full: 'all that may wait on the node for the auth server waits already',
  size_bound: 'the recording reached its bound (MAX_RECORDING_BYTES): cut short',
  file_error: "the recording's file could not be made",
} as const

export type RecordingSkippedCode = keyof typeof RECORDING_SKIPPED_CODES

/** The events a node reports about its SSH server; the rest only the auth server records. */
export const NODE_EVENT_TYPES = ['session.start', 'session.end', 'exec', 'port_forward', 'sftp', 'recording.skipped', 'events.dropped'] as const satisfies readonly AuditEventType[]
export type NodeEventType = (typeof NODE_EVENT_TYPES)[number]

/** A field's value: what a JSON log line can carry flat. */
export type AuditValue = string | number | boolean | null

export interface AuditEvent {
  /** Unique: made by whoever first wrote the event (a node's ID de-duplicates its retries). */
  id: string
  /** Epoch milliseconds when it happened, on the clock of whoever saw it happen. */
  time: number
  type: AuditEventType
  cluster?: string
  [field: string]: AuditValue | undefined
}

/** An event ID: what a node generates (randomUUID) and the auth server too. */
export const EVENT_ID = /^[A-Za-z0-9_-]{8,64}$/
/** How many events one POST may carry, and what a field may hold. */
export const MAX_EVENTS_PER_BATCH = 100
export const MAX_FIELDS_PER_EVENT = 16
export const MAX_FIELD_LENGTH = 1024
/** One batch at its largest, with room for JSON's escapes. */
export const AUDIT_BATCH_BYTES = 512 * 1024
/** Fields the node may not set: the auth server decides them from the caller's certificate. */
const STAMPED = new Set(['id', 'time', 'type', 'cluster', 'node', 'host_id'])

/** A node's event as a receiver reads it: the header apart from the other fields. */
export interface NodeEvent {
  id: string
  time: number
  type: NodeEventType
  fields: Record<string, AuditValue>
}

/** A node's event as a sender writes it: flat. */
export interface FlatNodeEvent {
  id: string
  time: number
  type: NodeEventType
  [field: string]: AuditValue
}

/** A node's event: its ID, time and type checked, its other fields flat and bounded; node and host ID are the auth server's to stamp. */
export function nodeEvent(): Shape<NodeEvent, FlatNodeEvent> {
  const header = object({
    id: {
      optional: false,
      parse(value, field) {
        if (typeof value !== 'string' || !EVENT_ID.test(value)) throw new FieldError(field, `field "${field}" must be 8 to 64 letters, digits, "-" or "_"`)
        return value
      },
    },
    time: number({ above: 0, expected: 'epoch milliseconds' }),
    type: oneOf(NODE_EVENT_TYPES),
  })
  return {
    optional: false,
    parse(value, field) {
      const { id, time, type } = header.parse(value, field)
      const fields: Record<string, AuditValue> = {}
      const entries = Object.entries(value as Record<string, unknown>).filter(([name]) => !STAMPED.has(name))
      if (entries.length > MAX_FIELDS_PER_EVENT) throw new FieldError(field, `field "${field}" has more than ${MAX_FIELDS_PER_EVENT} fields`)
      for (const [name, item] of entries) {
        const where = `${field}.${name}`
        if (!/^[a-z_]{1,32}$/.test(name)) throw new FieldError(where, `field "${where}": names are lower-case letters and "_"`)
        if (typeof item === 'string' && item.length > MAX_FIELD_LENGTH) throw new FieldError(where, `field "${where}" is too long`)
        if (!(item === null || ['string', 'number', 'boolean'].includes(typeof item))) throw new FieldError(where, `field "${where}" must be a string, number, boolean or null`)
        fields[name] = item as AuditValue
      }
      return { id, time, type, fields }
    },
  }
}

/** A node's event as it goes on the wire again: flat. */
export function flatEvent(event: NodeEvent): FlatNodeEvent {
  return { ...event.fields, id: event.id, time: event.time, type: event.type }
}

/** What one batch of a node's events may hold on a tunnel's control stream, whose lines are at most 64 KiB. */
export const CONTROL_BATCH_BYTES = 48 * 1024

export const AUDIT_EVENTS_BODY = object({
  events: list(nodeEvent(), MAX_EVENTS_PER_BATCH),
  /** The node's signature of the batch, as through a proxy (absent from nodes of earlier versions). */
  signature: lenient(NODE_SIGNATURE),
})
/** A proxy carries a tunnelled node's batch with the host ID its tunnel's certificate proved. */
export const PROXIED_AUDIT_EVENTS_BODY = object({
  host_id: text({ max: 253 }),
  events: list(nodeEvent(), MAX_EVENTS_PER_BATCH),
  /** The node's signature of the batch (shared/node-signature.ts); absent from nodes of earlier versions. */
  signature: lenient(NODE_SIGNATURE),
})

/** POST /v1/audit/events: how many of the batch were new (the others were already stored). */
export interface AuditStored {
  stored: number
}

/** GET /v1/audit/events: oldest first. */
export interface AuditList {
  events: AuditEvent[]
  /** True when more events matched than one answer carries (the newest are kept). */
  truncated: boolean
}

/** The filters of GET /v1/audit/events, as query parameters. */
export interface AuditQuery {
  /** Epoch milliseconds. */
  since?: number
  until?: number
  /** A type or a glob over types: `session.*`. */
  type?: string
  user?: string
  /** A node's name or host ID. */
  node?: string
}
