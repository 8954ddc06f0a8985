// Saves a host's identity when it changes (renewed certificates, a recovery, new CAs, assigned
// labels), and keeps the host running when the disk refuses: a device whose disk is full must
// stay reachable, so the new identity is used from memory and its save is tried again every
// RETRY_MS until it succeeds. Until then the data dir holds the previous identity, which a
// restart falls back to (still valid, or recovered with the same keys): nothing the host needs
// is lost, only the write is late. The status says so (`identity_unsaved`).

import { type NodeIdentity, saveIdentity } from './identity-store.ts'
import type { Logger } from './log.ts'
import { realTimers, type Timers } from './renewal-schedule.ts'

/** How often a save the disk refused is tried again; also how often the failure is logged, at most. */
export const RETRY_MS = 60_000

export interface IdentityKeeperOptions {
  dataDir: string
  role?: string
  log: Logger
  /** The identity as it is now: what a retry saves. */
  current: () => NodeIdentity | undefined
  clock?: () => number
  /** saveIdentity, unless a test gives another. */
  save?: (dataDir: string, identity: NodeIdentity, role?: string) => void
  timers?: Timers
}

export class IdentityKeeper {
  private readonly options: IdentityKeeperOptions
  private unsaved?: { since: number; error: string }
  private loggedAt?: number
  private timer?: unknown
  /** Told once, at the next save that succeeds. */
  private waiting: (() => void)[] = []

  constructor(options: IdentityKeeperOptions) {
    this.options = options
  }

  /** Saves `identity`; false (logged, retried later) when the disk refused it. */
  save(identity: NodeIdentity): boolean {
    const now = (this.options.clock ?? Date.now)()
    try {
      ;(this.options.save ?? saveIdentity)(this.options.dataDir, identity, this.options.role)
    } catch (error) {
      const message = (error as Error).message
      this.unsaved ??= { since: now, error: message }
      this.unsaved.error = message
      if (this.loggedAt === undefined || now - this.loggedAt >= RETRY_MS) {
        this.loggedAt = now
        this.options.log.error(`the identity could not be saved in ${this.options.dataDir}: ${message}; it is used from memory and saved when the disk allows`, {
          data_dir: this.options.dataDir,
          identity_unsaved: (error as NodeJS.ErrnoException).code ?? message,
        })
      }
      this.retryLater()
      return false
    }
    if (this.unsaved) this.options.log.info(`the identity is saved in ${this.options.dataDir} again`, { data_dir: this.options.dataDir, unsaved_ms: now - this.unsaved.since })
    this.unsaved = undefined
    this.loggedAt = undefined
    this.stop()
    const waiting = this.waiting
    this.waiting = []
    for (const saved of waiting) {
      try {
        saved()
      } catch (error) {
        // The save stands: what waited on it failing is its own matter.
        this.options.log.warn(`after saving the identity: ${(error as Error).message}`, { data_dir: this.options.dataDir })
      }
    }
    return true
  }

  /** Calls `saved` once the identity in memory is on disk: now, if it is, or at the save that puts it there. */
  whenSaved(saved: () => void): void {
    if (this.unsaved) this.waiting.push(saved)
    else saved()
  }

  /** Since when, and why, the identity in memory is not the one on disk; undefined when they are the same. */
  get status(): { since: string; error: string } | undefined {
    return this.unsaved && { since: new Date(this.unsaved.since).toISOString(), error: this.unsaved.error }
  }

  stop(): void {
    if (this.timer !== undefined) (this.options.timers ?? realTimers).clear(this.timer)
    this.timer = undefined
  }

  private retryLater(): void {
    if (this.timer !== undefined) return
    this.timer = (this.options.timers ?? realTimers).set(() => {
      this.timer = undefined
      const identity = this.options.current()
      if (identity && this.unsaved) this.save(identity)
    }, RETRY_MS)
  }
}
