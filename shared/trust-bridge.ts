// A host (a node or a proxy) that was away through a host CA rotation trusts only the CA the
// cluster dropped, so every server of the cluster fails its TLS verification. It asks where
// it joined for the bridges out of the CAs it trusts (auth/rotation.ts keeps them) over TLS
// it does not verify: the answer is public, and the host takes a bridge only as checkTrust
// allows (signed by a host CA it trusts, for its cluster, newer than its set), never by
// where it came from. How a node and a proxy find they missed a rotation, and take a set,
// is theirs (agent/agent.ts, proxy/missed-rotation.ts); the asking is this.

import { X509Certificate } from 'node:crypto'
import type { NodeIdentity } from './identity-store.ts'
import type { Logger } from './log.ts'
import { caPin } from './pin.ts'
import { parseTrustBridges, type TrustBridges } from './protocol/bridges.ts'
import { checkTrust, type HeldTrust, TrustRefused, type TrustStatement } from './trust-statement.ts'
import { monotonicMs } from './yamux/clock.ts'

/** How often at most a host asks for trust bridges. */
export const BRIDGE_MS = 60_000

/**
 * Why a host asks: its server presents a certificate from a CA it does not trust, or
 * refuses its certificate (the host heard a rotation begin, not end; the set the cluster
 * trusts now, signed by a CA it holds, says whether its CA was dropped).
 */
export type MissedRotation = 'untrusted' | 'refused'

/** The bridges out of the host CA `pin`, and the set the cluster trusts now, as `server` answers (unverified: check the signatures). */
export async function fetchTrustBridges(server: string, pin: string): Promise<TrustBridges> {
  const { ApiClient } = await import('./api-client.ts')
  // No CAs: the server is not verified, which is the point; nothing secret is sent.
  const client = new ApiClient({ server, timeoutMs: 15_000 })
  try {
    return parseTrustBridges(await client.call('GET /v1/trust/bridges', { query: { pin } }))
  } finally {
    await client.close()
  }
}

export interface TrustBridgeOptions {
  /** "node" or "proxy", for the log. */
  role: string
  identity: () => NodeIdentity
  /** Takes `trust` (a bridge, or what the cluster trusts now) if checkTrust allows; true when taken. */
  follow: (trust: TrustStatement, server: string, bridge: boolean) => boolean
  /**
   * No bridge leads to the CA `server` presents: logs how an admin re-admits the host.
   * `expiredOn` (a date) when every host CA the host trusts has expired by its clock: the
   * cluster's host CA has to be rotated first, and its bridge out of the expired CA, made
   * when the rotation drops it, is what the host follows then.
   */
  unbridged: (server: string, readmit: string, pins: string[], expiredOn?: string) => void
  /** What is fetched once the host stops is dropped. */
  stopped?: () => boolean
  /** The level a failed request is logged at (warn unless told). */
  failureLevel?: (why: MissedRotation) => 'warn' | 'debug'
  log: Logger
}

/** Asks for the bridges at most every BRIDGE_MS, one request at a time. */
export class TrustBridge {
  private readonly options: TrustBridgeOptions
  private askedAt?: number
  private asking?: Promise<boolean>

  constructor(options: TrustBridgeOptions) {
    this.options = options
  }

  /** Whether a request is in flight. */
  get busy(): boolean {
    return this.asking !== undefined
  }

  /** Whether BRIDGE_MS has passed since the last request. */
  get due(): boolean {
    return this.askedAt === undefined || monotonicMs() - this.askedAt >= BRIDGE_MS
  }

  /**
   * Asks `server` for the bridges out of each CA the host trusts, and takes them, then what
   * the cluster trusts now: its certificate, from a dropped CA, is then recovered. True when
   * a set was taken; the request in flight when there is one, false when not due.
   */
  ask(server: string, why: MissedRotation): Promise<boolean> {
    if (this.asking) return this.asking
    if (!this.due) return Promise.resolve(false)
    this.askedAt = monotonicMs()
    this.asking = this.bridge(server, why)
      .catch((error: Error) => {
        this.options.log[this.options.failureLevel?.(why) ?? 'warn'](`trust bridges from ${server} failed: ${error.message}`, { trust_bridge_error: error.message })
        return false
      })
      .finally(() => (this.asking = undefined))
    return this.asking
  }

  private async bridge(server: string, why: MissedRotation): Promise<boolean> {
    const { role, follow, log } = this.options
    const identity = this.options.identity()
    const pins = identity.hostCAPems.map(caPin)
    if (why === 'untrusted') {
      log.warn(`${server} presents a certificate from a host CA this ${role} does not trust: asking it for a bridge across a host CA rotation`, {
        trusted_host_ca_pins: pins.join(','),
      })
    }
    for (const pin of pins) {
      const answer = await fetchTrustBridges(server, pin)
      if (this.options.stopped?.()) return false
      let bridged = false
      for (const bridge of answer.bridges) if (follow(bridge, server, true)) bridged = true
      // Signed by the CA the bridges lead to (or, refused, one the host trusts already).
      if (follow(answer.trust, server, false) || bridged) return true
      // Every answer carries the current set: one question tells whether it is newer.
      if (why === 'refused') return false
    }
    if (why === 'refused') return false
    // Loaded only when needed: recover.ts brings the HTTPS client.
    const { readmitCommand } = await import('./recover.ts')
    this.options.unbridged(server, readmitCommand(identity.nodename, identity.roles), pins, allExpiredOn(identity.hostCAPems, Date.now()))
    return false
  }
}

/** The day the last of `pems` expired, when all have by `nowMs`; undefined while one is still valid. */
export function allExpiredOn(pems: string[], nowMs: number): string | undefined {
  const ends = pems.map((pem) => new X509Certificate(pem).validToDate.getTime())
  if (ends.length === 0 || ends.some((end) => end > nowMs)) return undefined
  return new Date(Math.max(...ends)).toISOString().slice(0, 10)
}

/**
 * The host CAs the cluster trusts now, when `answer` leads there from `trustedPems` (CAs a
 * person trusted at an earlier login, in a set of version `version`, -1 when unknown): each
 * bridge taken in order as checkTrust takes a set (signed by a host CA held by then, for
 * `clusterName`, newer), then the current set, which must be newer still, and one of those
 * must have signed it. Undefined when no chain of signatures leads there, and when the set
 * reached names a CA trusted before: every set a CA signs names it, so an old set signed by
 * the CA trusted now (a bridge into it, replayed) would lead back to the CA it replaced.
 */
export function hostCAsAcrossBridges(answer: TrustBridges, clusterName: string, trustedPems: string[], version = -1): string[] | undefined {
  let held: HeldTrust = { clusterName, hostCAPems: trustedPems, userCASshKeys: [], version }
  /** Whether `statement` was taken: signed by a CA held, and a set other than, or newer than, the one held. */
  const take = (statement: TrustStatement): boolean => {
    try {
      if (!checkTrust(statement, held)) return false
    } catch (error) {
      if (error instanceof TrustRefused) return false
      throw error
    }
    held = { clusterName, hostCAPems: statement.host_ca_certs, hostCASshKeys: statement.host_ca_ssh_keys, userCASshKeys: statement.user_ca_ssh_keys, version: statement.version }
    return true
  }
  // A bridge out of a CA not held (yet) is skipped: a later one may start from the set held.
  for (const bridge of answer.bridges) take(bridge)
  if (!take(answer.trust)) return undefined
  const before = new Set(trustedPems.map(caPin))
  return held.hostCAPems.some((pem) => before.has(caPin(pem))) ? undefined : held.hostCAPems
}
