// The role option max_connections on the proxy's side: the most connections a user may
// hold at once through all the cluster's proxies, counted together by the auth server with
// leases (auth/connection-leases.ts). A user whose certificate carries the option gets a
// lease, asked for with that certificate or the user's web session (the auth server takes
// the user and the limit from it, not from the proxy's word), before the stream to the node is opened (after its roles were judged, so a refused
// user takes none); the lease is released when the connection ends, and every lease this
// proxy holds is renewed in one call while its connection lasts. When the auth server
// cannot count, the connection is refused: a limit that cannot be checked is not waived.
// SSH connections, web terminals and forwarded ports all count (a forwarded port holds a
// stream to the node as an SSH connection does); users without the option do not.

import type { Access } from '../shared/access.ts'
import type { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import type { Logger } from '../shared/log.ts'
import { CONNECTION_LEASE_TTL_MS } from '../shared/protocol/proxies.ts'
import { AccessDenied } from './node-dialer.ts'

/** How long the auth server keeps a lease that is not renewed: a proxy that died frees its users' slots within it. */
export const LEASE_TTL_MS = CONNECTION_LEASE_TTL_MS

export interface ConnectionLimitsConfig {
  /**
   * How often every lease this proxy holds is renewed, all in one call. Default LEASE_TTL_MS
   * / 3 (10 s): two renewals in a row may fail (an auth server restarting, a slow backend)
   * before a lease ends under a live connection, and a proxy holding thousands of limited
   * connections makes one call every 10 s, not one per connection.
   */
  renewIntervalMs: number

  /**
   * How long each call to the auth server may take. A new connection waits on its lease, and
   * is refused when no answer came within this; a renewal must be over before the next one
   * is due. Default 5 s: far more than a lease takes on a working auth server, short enough
   * that a user is not left hanging, and half the renewal interval.
   */
  callTimeoutMs: number
}

export const DEFAULT_CONNECTION_LIMITS_CONFIG: ConnectionLimitsConfig = {
  renewIntervalMs: LEASE_TTL_MS / 3,
  callTimeoutMs: 5_000,
}

/** Calls the auth server, as ApiClient.call does (the lease routes only). */
export type LeaseCall = ApiClient['call']

/** Runs `task` every `ms` without holding the process up; returns what stops it. */
export type Every = (ms: number, task: () => void) => () => void

const every: Every = (ms, task) => {
  const timer = setInterval(task, ms)
  timer.unref()
  return () => clearInterval(timer)
}

export interface ConnectionLimitsOptions {
  /** Calls the auth server (the proxy's client, replaced at renewals: looked up at each call). */
  call: LeaseCall
  log: Logger
  config?: Partial<ConnectionLimitsConfig>
  /** The renewal timer (tests run it by hand). */
  every?: Every
}

/** A lease on one of a user's connections. */
export interface Lease {
  readonly user: string
  readonly leaseId: string
  /** Released once, however often this is called; a function of its own (a listener as it is). */
  readonly release: () => void
}

interface HeldLease extends Lease {
  /** Where the release goes, once. */
  released: boolean
}

export class ConnectionLimits {
  private readonly options: ConnectionLimitsOptions
  private readonly config: ConnectionLimitsConfig
  /** The leases this proxy holds and renews, by ID. */
  private readonly held = new Map<string, HeldLease>()
  private stopTimer?: () => void
  private renewing = false
  private stopped = false

  constructor(options: ConnectionLimitsOptions) {
    this.options = options
    this.config = { ...DEFAULT_CONNECTION_LIMITS_CONFIG, ...options.config }
  }

  /** The leases held now (for tests and status). */
  get size(): number {
    return this.held.size
  }

  /**
   * A lease on one of the user's connections when its roles set max_connections, else
   * undefined (no limit). Throws AccessDenied when the user holds as many as they allow, and
   * an Error when the auth server cannot count them now (the connection is refused either way).
   */
  async acquire(target: string, holder: { user: string; access: Pick<Access, 'max_connections'>; vouch: Record<string, string> }): Promise<Lease | undefined> {
    const { user } = holder
    const max = holder.access.max_connections
    if (max === undefined) return undefined
    const cannotCount = (why: string) =>
      new Error(`access to node "${target}" refused: the connections of user "${user}" cannot be counted now (its roles set max_connections): ${why}`)
    if (this.stopped) throw cannotCount('this proxy is stopping')
    let answer
    try {
      answer = await this.options.call('POST /v1/proxies/connection-leases', {}, { timeoutMs: this.config.callTimeoutMs, headers: holder.vouch })
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) {
        const reason = error.message || `user "${user}" holds ${max} connection${max === 1 ? '' : 's'}, the most the roles allow (max_connections)`
        throw new AccessDenied(`access to node "${target}" denied: ${reason}`, reason)
      }
      const why = (error as Error).message
      this.options.log.warn(`a lease on a connection of user ${user} cannot be taken: ${why}`, { user, node: target })
      throw cannotCount(why)
    }
    const lease: HeldLease = {
      user,
      leaseId: answer.lease_id,
      released: false,
      release: () => this.release(lease),
    }
    if (this.stopped) {
      // Stopped while the lease was being taken: the release of all held went out already.
      this.sendRelease([lease])
      throw cannotCount('this proxy is stopping')
    }
    this.held.set(lease.leaseId, lease)
    this.stopTimer ??= (this.options.every ?? every)(this.config.renewIntervalMs, () => void this.renew())
    return lease
  }

  /**
   * Renews every lease held, in one call (one at a time: a slow auth server gets fewer, not a
   * queue). A lease the auth server did not renew had ended there already (not renewed in
   * time while it was out of reach, or its record lost): it is dropped from the held set. Its
   * connection stays open, but no longer counts against the user's limit until it ends;
   * closing a working session for the auth server's outage would be worse than letting the
   * user hold a connection more for a while.
   */
  async renew(): Promise<void> {
    if (this.renewing || this.held.size === 0) return
    this.renewing = true
    const sent = [...this.held.values()]
    try {
      const answer = await this.options.call('POST /v1/proxies/connection-leases/renew', { body: { leases: sent.map(ref) } }, { timeoutMs: this.config.callTimeoutMs })
      const renewed = new Set(answer.renewed)
      for (const lease of sent) {
        if (renewed.has(lease.leaseId) || this.held.get(lease.leaseId) !== lease) continue
        this.held.delete(lease.leaseId)
        this.options.log.warn(`the lease on a connection of user ${lease.user} had ended at the auth server: the connection stays, but counts no more`, {
          user: lease.user,
          lease_id: lease.leaseId,
        })
      }
    } catch (error) {
      // Kept: the next renewal tries again, before the leases end (two may fail).
      this.options.log.warn(`renewing ${sent.length} connection lease(s) failed: ${(error as Error).message}`)
    } finally {
      this.renewing = false
    }
  }

  /** Stops renewing and releases every lease held (best effort: those not released end within LEASE_TTL_MS). */
  async stop(timeoutMs: number = this.config.callTimeoutMs): Promise<void> {
    this.stopped = true
    this.stopTimer?.()
    this.stopTimer = undefined
    const leases = [...this.held.values()]
    this.held.clear()
    for (const lease of leases) lease.released = true
    if (leases.length > 0) await this.releaseNow(leases, timeoutMs)
  }

  private release(lease: HeldLease): void {
    if (lease.released) return
    lease.released = true
    // One dropped as not renewed had ended at the auth server already: nothing to release.
    if (this.held.get(lease.leaseId) !== lease) return
    this.held.delete(lease.leaseId)
    this.sendRelease([lease])
  }

  private sendRelease(leases: Lease[]): void {
    void this.releaseNow(leases)
  }

  private async releaseNow(leases: Lease[], timeoutMs: number = this.config.callTimeoutMs): Promise<void> {
    try {
      await this.options.call('POST /v1/proxies/connection-leases/release', { body: { leases: leases.map(ref) } }, { timeoutMs })
    } catch (error) {
      // The slots free themselves when the leases end, unrenewed.
      this.options.log.warn(`releasing ${leases.length} connection lease(s) failed (they end within ${LEASE_TTL_MS / 1000} s): ${(error as Error).message}`)
    }
  }
}

function ref(lease: Lease): { user: string; lease_id: string } {
  return { user: lease.user, lease_id: lease.leaseId }
}
