// Auth servers sharing an etcd backend must keep their recordings in one folder they all
// mount (NFS, say): a node's upload reaches whichever of them its proxy or load balancer
// picks, and `warrenctl recordings`, `warren play` and the web console read only the folder
// of the server they ask. This checks it. At start each auth server writes a marker,
// `<recording_dir>/.warren-auth-server-<id>` (a random ID of its own), and then records the
// ID in the backend with a TTL it refreshes; every few seconds it looks in its own folder
// for the marker of every live peer. What it finds is its status (`auth.recordings`), the
// answer of `GET /v1/recordings`, and the store's: a folder shared with a live peer has other
// writers, whose recordings count in each node's quota (auth/recordings.ts).
//
// A marker is no recording: its name starts with a dot, so it is no session ID (a UUID,
// RECORDING_ID), and ends in neither `.cast` nor `.json`, which are all the store reads.

import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import { type RecordingDirStatus, statusTime } from '../shared/status.ts'
import type { Backend } from './backend/backend.ts'
import type { RecordingDirSharing, RecordingStore } from './recordings.ts'

/** A marker's name: this, then the auth server's ID. */
export const MARKER_PREFIX = '.warren-auth-server-'
/** The live auth servers, each an item with a TTL. */
const AUTH_SERVERS = '/auth-servers/'
const SERVER_ID = /^[0-9a-f]{16}$/
/** How often each server refreshes its item and looks for its peers' markers. */
const CHECK_INTERVAL_MS = 5000
/** An auth server killed leaves the live set after this (four checks missed). */
const SERVER_TTL_MS = 4 * CHECK_INTERVAL_MS
/** A marker without a live server this old is the leftover of one that was killed: removed, looked for hourly. */
const STALE_MARKER_MS = 3_600_000

/** What an auth server records of itself, for its peers' warnings. */
interface ServerRecord {
  id: string
  address: string
  hostname: string
  recording_dir: string
}

export interface RecordingDirCheckOptions {
  backend: Backend
  store: RecordingStore
  /** Where this server serves the auth API. */
  address: () => string
  log: Logger
}

export class RecordingDirCheck {
  readonly id = randomBytes(8).toString('hex')
  readonly #options: RecordingDirCheckOptions
  #timer?: NodeJS.Timeout
  #sharing: RecordingDirSharing = { shared_with: [], not_shared_with: [] }
  #lastCheck?: number
  /** The peers whose missing marker was logged: a WARN when one joins them, an INFO when none is left. */
  #warned = new Set<string>()
  #failing = false
  #lastSweep = 0
  #running?: Promise<void>

  constructor(options: RecordingDirCheckOptions) {
    this.#options = options
  }

  get #dir(): string {
    return this.#options.store.dir
  }

  get #marker(): string {
    return join(this.#dir, MARKER_PREFIX + this.id)
  }

  /** Writes the marker, records this server, looks once; then again every few seconds. */
  async start(): Promise<void> {
    await this.check()
    this.#timer = setInterval(() => void this.check(), CHECK_INTERVAL_MS)
    this.#timer.unref()
  }

  status(): RecordingDirStatus {
    return {
      dir: this.#dir,
      auth_server_id: this.id,
      shared_with: this.#sharing.shared_with,
      not_shared_with: this.#sharing.not_shared_with,
      last_check: this.#lastCheck === undefined ? null : statusTime(this.#lastCheck),
    }
  }

  /** One look (never two at once); a failure is logged, and the last findings stay. */
  check(): Promise<void> {
    this.#running ??= this.#check().finally(() => (this.#running = undefined))
    return this.#running
  }

  async #check(): Promise<void> {
    const { backend, store, log } = this.#options
    try {
      // The marker before the record, always: a peer that sees the record finds the marker
      // (its name new to the peer, so no cached "absent" hides it). One removed (the folder
      // cleaned, or mounted afresh) is written again.
      if (!existsSync(this.#marker)) writeFileAtomic(this.#marker, `${JSON.stringify(this.#record())}\n`)
      await backend.put(AUTH_SERVERS + this.id, JSON.stringify(this.#record()), { ttlMs: SERVER_TTL_MS })
      const peers = (await backend.list(AUTH_SERVERS)).map((item) => JSON.parse(item.value) as ServerRecord).filter((peer) => SERVER_ID.test(peer.id) && peer.id !== this.id)
      const shared: ServerRecord[] = []
      const notShared: ServerRecord[] = []
      for (const peer of peers) {
        if (existsSync(join(this.#dir, MARKER_PREFIX + peer.id))) shared.push(peer)
        // A peer stopping removes its record, then its marker: one whose record is gone by now stopped.
        else if (await backend.get(AUTH_SERVERS + peer.id)) notShared.push(peer)
      }
      this.#sharing = { shared_with: shared.map((peer) => peer.id), not_shared_with: notShared.map((peer) => peer.id) }
      store.sharing = this.#sharing
      this.#lastCheck = Date.now()
      this.#report(notShared)
      if (this.#failing) log.info('the check that recording_dir is shared works again')
      this.#failing = false
      if (this.#lastCheck - this.#lastSweep >= STALE_MARKER_MS) {
        this.#sweep(new Set(peers.map((peer) => peer.id)))
        this.#lastSweep = this.#lastCheck
      }
    } catch (error) {
      if (!this.#failing) log.warn(`the check that recording_dir is shared with the other auth servers failed: ${(error as Error).message}`, { recording_dir: this.#dir })
      this.#failing = true
    }
  }

  /** Logs what changed: a WARN naming every peer not sharing when one more is found, an INFO once none is left. */
  #report(notShared: ServerRecord[]): void {
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
      if (id === this.id || live.has(id)) continue
      const path = join(this.#dir, name)
      const written = statSync(path, { throwIfNoEntry: false })?.mtimeMs
      if (written !== undefined && Date.now() - written >= STALE_MARKER_MS) rmSync(path, { force: true })
    }
  }

  #record(): ServerRecord {
    return { id: this.id, address: this.#options.address(), hostname: hostname(), recording_dir: this.#dir }
  }

  /** The record first, then the marker: a peer never sees a live record whose marker was removed. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#running
    await this.#options.backend.delete(AUTH_SERVERS + this.id).catch(() => false)
    rmSync(this.#marker, { force: true })
  }
}
