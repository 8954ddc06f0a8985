// The API only proxies may call: their heartbeats and the live set, the presence of the
// nodes whose tunnels they hold, renewals on those nodes' behalf, the direct nodes' address
// book, the shared ACME records, and who the cluster refuses (removed hosts, locks).

import type { AssignedLabelsStatement } from '../assigned-labels.ts'
import type { LiveSetSignature } from '../signed-live-set.ts'
import type { TrustStatement } from '../trust-statement.ts'
import { lenient, list, number, type Out, object, optional, parseWith, ruledLabels, text } from './shape.ts'

/** The largest ACME record (an account key or a certificate chain) the auth server keeps. */
export const MAX_ACME_RECORD_BYTES = 32 * 1024
/** The most tunnels one presence report may name. */
export const MAX_PRESENCE_REPORTS = 20_000

export const PROXY_HEARTBEAT_BODY = object({ web_addr: optional(text({ max: 256 })) })

export interface ProxyHeartbeatAnswer {
  /** The live proxy set (proxy IDs, sorted). */
  proxies: string[]
  /** The set signed for nodes: proxies pass it on unchanged (shared/signed-live-set.ts). */
  proxies_signed: LiveSetSignature
  host_ca_certs: string[]
  user_ca_certs: string[]
  user_ca_ssh_keys: string[]
  /** The CAs nodes trust, signed for them: proxies pass it on unchanged (shared/trust-statement.ts). */
  trust: TrustStatement
  host_ca_phase: string
  /** How often the auth server wants every tunnel's presence: a third of its presence TTL. */
  presence_interval_ms: number
}

/** GET /v1/proxies: the live set, and the generations of the list of refused identities and of the assigned labels. */
export interface LiveSet {
  proxies: string[]
  proxies_signed: LiveSetSignature
  revocations: string
  /** Absent from auth servers of earlier versions. */
  assigned_labels?: string
}

/**
 * GET /v1/proxies/assigned-labels: each host's labels the cluster assigned, signed for the
 * host (shared/assigned-labels.ts); proxies judge users by them and hand each to its node.
 */
export interface AssignedLabelsSnapshot {
  generation: string
  hosts: AssignedLabelsStatement[]
  /** `auth_service.assigned_label_keys`: keys a node carries only as assigned. Absent from auth servers of earlier versions. */
  assigned_only_keys?: string[]
}

export const PRESENCE_BODY = object({
  nodes: list(
    object({
      host_id: text({ max: 64 }),
      /** Where the node's tunnel comes from. */
      addr: optional(text({ max: 64 })),
      /** Labels the rules refuse drop this report only, not the whole batch. */
      labels: ruledLabels(),
      /** The agent's version, when it is a plausible one. */
      version: lenient(text({ max: 64 })),
    }),
    MAX_PRESENCE_REPORTS,
  ),
})
export type PresenceReport = Out<typeof PRESENCE_BODY>['nodes'][number]

export interface PresenceAnswer {
  accepted: number
  /** Hosts the auth server no longer knows (removed or replaced): their tunnels are closed. */
  unknown: string[]
}

/** A node that heartbeats to the auth server itself, and where proxies dial it. */
export interface DirectNodeEntry {
  host_id: string
  nodename: string
  /** host:port; an older node reports its IP alone, and is dialled on the default port. */
  addr: string
  /** What the user's roles are judged against; absent from older auth servers. */
  labels?: Record<string, string>
}

export interface DirectNodes {
  nodes: DirectNodeEntry[]
}

export const ACME_GET_BODY = object({ key: text({ max: 300 }) })
export const ACME_PUT_BODY = object({ key: text({ max: 300 }), value: text({ max: MAX_ACME_RECORD_BYTES }) })

export interface AcmeRecord {
  value?: string
}

export const HOST_RENEW_BODY = object({ tls_cert: text({ max: 16_384 }) })

/** A refused host: removed (no end), or locked (until the lock ends, when it has one). */
export interface RevokedHost {
  host_id: string
  nodename: string
  reason: string
  /** Epoch ms from which the refusal no longer holds, by the auth server's clock: for proxies of an earlier version. */
  until?: number
  /** How long the refusal still holds (ms) as the auth server answers: what a proxy counts down. */
  remaining_ms?: number
}

/** A locked user: every certificate of it, or (after `users reset`) those issued before the reset. */
export interface RevokedUser {
  name: string
  reason: string
  until?: number
  remaining_ms?: number
  /**
   * Epoch ms: only the user's certificates whose validity starts before this are refused
   * (those issued before a reset; its new ones are not). Absent: all of them, and the user.
   */
  valid_from_before?: number
  /**
   * With valid_from_before (a `users reset` or `users rm`): the user generation it ended. A
   * certificate that carries a generation is refused when it carries this one, whatever its
   * dates; one without (an earlier version's) is judged by valid_from_before.
   */
  generation?: string
}

/** GET /v1/proxies/revocations: who the cluster refuses although their certificates are valid. */
export interface RevocationSnapshot {
  /** Changes whenever the list changes: proxies fetch the list again only then. */
  generation: string
  hosts: RevokedHost[]
  users: RevokedUser[]
}

const MAX_REVOKED = 1_000_000
const UNTIL = lenient(number({ expected: 'epoch ms' }))
const REMAINING = lenient(number({ atLeast: 0, expected: 'milliseconds' }))
const SNAPSHOT = object({
  generation: text({ max: 64 }),
  hosts: list(lenient(object({ host_id: text({ max: 256 }), nodename: optional(text({ max: 256 }), ''), reason: text(), until: UNTIL, remaining_ms: REMAINING })), MAX_REVOKED),
  // A malformed valid_from_before reads as absent: the user refused altogether, never less.
  // A malformed generation reads as absent: every certificate is then judged by its dates, as before generations.
  users: list(
    lenient(object({ name: text({ max: 256 }), reason: text(), until: UNTIL, remaining_ms: REMAINING, valid_from_before: UNTIL, generation: lenient(text({ max: 64 })) })),
    MAX_REVOKED,
  ),
})

/**
 * An entry's end as received. A malformed remaining_ms reads as absent, and `until` then
 * judges, as with an auth server of an earlier version; one with neither never ends, rather
 * than early.
 */
const withEnd = (entry: { until?: number; remaining_ms?: number }) => ({
  ...(entry.until === undefined ? {} : { until: entry.until }),
  ...(entry.remaining_ms === undefined ? {} : { remaining_ms: entry.remaining_ms }),
})

/**
 * A snapshot as a proxy received it, or undefined when it is none. Entries that are not
 * well formed are dropped, so that a proxy never judges by half an entry.
 */
export function parseSnapshot(value: unknown): RevocationSnapshot | undefined {
  let snapshot
  try {
    snapshot = parseWith('GET /v1/proxies/revocations', SNAPSHOT, value)
  } catch {
    return undefined
  }
  return {
    generation: snapshot.generation,
    hosts: snapshot.hosts.flatMap((host) => (host ? [{ host_id: host.host_id, nodename: host.nodename, reason: host.reason, ...withEnd(host) }] : [])),
    users: snapshot.users.flatMap((user) =>
      user
        ? [
            {
              name: user.name,
              reason: user.reason,
              ...withEnd(user),
              ...(user.valid_from_before === undefined ? {} : { valid_from_before: user.valid_from_before }),
              ...(user.valid_from_before === undefined || user.generation === undefined ? {} : { generation: user.generation }),
            },
          ]
        : [],
    ),
  }
}

/**
 * How long a connection lease lasts unless it is renewed. A proxy renews the leases it holds
 * every third of this, so two renewals in a row may fail (an auth server restarting) before
 * one ends under a live connection, and a dead proxy's leases free their slots within it.
 * 30 s: a user whose proxy died waits at most that long for the slots its connections held,
 * and a proxy holding thousands of connections renews them in one call every 10 s.
 */
export const CONNECTION_LEASE_TTL_MS = 30_000

/** Leases a proxy renews in one call: every connection it holds for users with a limit. */
const MAX_LEASES = 100_000

/*
 * POST /v1/proxies/connection-leases: a lease on one of the user's connections (SSH, forwarded ports) at once
 * through the cluster's proxies (the role option max_connections); refused (409) when the
 * user holds as many as its roles allow already. The request has no body: the proxy sends
 * the user's certificate (USER_CERT_HEADER), and the user and its limit are the
 * certificate's, judged by the auth server, never the proxy's word. The proxy renews the
 * lease while the connection lasts and releases it when the connection ends; a lease not
 * renewed ends by itself (a proxy that died).
 */

export interface ConnectionLease {
  lease_id: string
  /** Epoch ms: renew before then. */
  expires: number
}

/** POST /v1/proxies/connection-leases/renew and /release: the leases this proxy holds (or ends). */
export const CONNECTION_LEASES_BODY = object({
  leases: list(object({ user: text({ max: 64 }), lease_id: text({ max: 64 }) }), MAX_LEASES),
})

export interface ConnectionLeasesRenewed {
  /** The leases renewed; one missing had ended (it expired): its connection counts no more. */
  renewed: string[]
  expires: number
}
