// Auth servers sharing an etcd backend must keep their recordings in one folder they all
// mount (NFS, say): a node's upload reaches whichever of them its proxy or load balancer
// picks, and `warrenctl recordings`, `warren play` and the web console read only the folder
// of the server they ask. This checks it. At start each auth server writes a marker,
// `<recording_dir>/.warren-auth-server-<id>` (its ID in auth/auth-servers.ts), before it
// records itself in the backend; at every look at the live auth servers it looks in its own
// folder for the marker of every live peer. What it finds is its status (`auth.recordings`), the
// answer of `GET /v1/recordings`, and the store's: a folder shared with a live peer has other
// writers, whose recordings count in each node's quota (auth/recordings.ts).
//
// A marker is no recording: its name starts with a dot, so it is no session ID (a UUID,
// RECORDING_ID), and ends in neither `.cast` nor `.json`, which are all the store reads.

import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import { type RecordingDirStatus, statusTime } from '../shared/status.ts'
import type { AuthServerRecord, AuthServers, AuthServerWatcher } from './auth-servers.ts'
import type { RecordingDirSharing, RecordingStore } from './recordings.ts'

/** A marker's name: this, then the auth server's ID. */
export const MARKER_PREFIX = '.warren-auth-server-'
/** A marker without a live server this old is the leftover of one that was killed: removed, looked for hourly. */
const STALE_MARKER_MS = 3_600_000

export interface RecordingDirCheckOptions {
  /** This server's record and its peers'. */
  servers: AuthServers
  store: RecordingStore
  log: Logger
}

/** Watches the live auth servers (auth/auth-servers.ts) for their markers in this server's recording_dir. */
export class RecordingDirCheck implements AuthServerWatcher {
  readonly #options: RecordingDirCheckOptions
  #sharing: RecordingDirSharing = { shared_with: [], not_shared_with: [] }
  #lastCheck?: number
  /** The peers whose missing marker was logged: a WARN when one joins them, an INFO when none is left. */
  #warned = new Set<string>()
  #failing = false
  #lastSweep = 0

  constructor(options: RecordingDirCheckOptions) {
    this.#options = options
  }

  get #dir(): string {
    return this.#options.store.dir
  }

  get #marker(): string {
    return join(this.#dir, MARKER_PREFIX + this.#options.servers.id)
  }

  status(): RecordingDirStatus {
    return {
      dir: this.#dir,
      auth_server_id: this.#options.servers.id,
      shared_with: this.#sharing.shared_with,
      not_shared_with: this.#sharing.not_shared_with,
      last_check: this.#lastCheck === undefined ? null : statusTime(this.#lastCheck),
    }
  }

  /**
   * The marker before the record, always: a peer that sees the record finds the marker (its
   * name new to the peer, so no cached "absent" hides it). One removed (the folder cleaned, or
   * mounted afresh) is written again.
   */
  beforeRecord(): void {
    if (!existsSync(this.#marker)) writeFileAtomic(this.#marker, `${JSON.stringify({ id: this.#options.servers.id, recording_dir: this.#dir })}\n`)
  }

  async seen(records: AuthServerRecord[]): Promise<void> {
    const { servers, store, log } = this.#options
    // A server that records no sessions takes no uploads: where it would keep them is no matter.
    const peers = records.filter((peer) => peer.recording_dir !== undefined)
    const shared: AuthServerRecord[] = []
    const notShared: AuthServerRecord[] = []
    for (const peer of peers) {
      if (existsSync(join(this.#dir, MARKER_PREFIX + peer.id))) shared.push(peer)
      // A peer stopping removes its record, then its marker: one whose record is gone by now stopped.
      else if (await servers.isLive(peer.id)) notShared.push(peer)
    }
    this.#sharing = { shared_with: shared.map((peer) => peer.id), not_shared_with: notShared.map((peer) => peer.id) }
    store.sharing = this.#sharing
    this.#lastCheck = Date.now()
    this.#report(notShared)
    if (this.#failing) log.info('the check that recording_dir is shared works again')
    this.#failing = false
    if (this.#lastCheck - this.#lastSweep >= STALE_MARKER_MS) {
      this.#sweep(new Set(records.map((peer) => peer.id)))
      this.#lastSweep = this.#lastCheck
    }
  }

  /** The last findings stay. */
  failed(error: Error): void {
    if (!this.#failing) this.#options.log.warn(`the check that recording_dir is shared with the other auth servers failed: ${error.message}`, { recording_dir: this.#dir })
    this.#failing = true
  }

  /** Logs what changed: a WARN naming every peer not sharing when one more is found, an INFO once none is left. */
  #report(notShared: AuthServerRecord[]): void {
    const { log } = this.#options
    if (notShared.some((peer) => !this.#warned.has(peer.id))) {
      log.warn(
        `auth_service.recording_dir ${this.#dir} is not shared with ${notShared.length} live auth server(s) of this backend: ` +
          'recordings uploaded through them are not listed or played through this one, nor the other way round; ' +
          'auth servers sharing a backend need one shared recording_dir',
        {
          recording_dir: this.#dir,
          not_shared_with: notShared.map((peer) => peer.id),
          not_shared_addresses: notShared.map((peer) => `${peer.address} (${peer.hostname}, recording_dir ${peer.recording_dir})`),
        },
      )
    } else if (notShared.length === 0 && this.#warned.size > 0) {
      log.info(`auth_service.recording_dir ${this.#dir} is shared with every live auth server of this backend`, { recording_dir: this.#dir, not_shared_with: [] })
    }
    this.#warned = new Set(notShared.map((peer) => peer.id))
  }

  /** Removes the markers of auth servers gone for an hour (killed, so they could not remove their own). */
  #sweep(live: Set<string>): void {
    for (const name of readdirSync(this.#dir)) {
      if (!name.startsWith(MARKER_PREFIX)) continue
      const id = name.slice(MARKER_PREFIX.length)
      if (id === this.#options.servers.id || live.has(id)) continue
      const path = join(this.#dir, name)
      const written = statSync(path, { throwIfNoEntry: false })?.mtimeMs
      if (written !== undefined && Date.now() - written >= STALE_MARKER_MS) rmSync(path, { force: true })
    }
  }

  /** After the record: a peer never sees a live record whose marker was removed. */
  afterRemove(): void {
    rmSync(this.#marker, { force: true })
  }
}
