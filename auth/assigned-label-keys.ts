// `auth_service.assigned_label_keys` is each auth server's own config, but auth servers sharing
// an etcd backend answer one cluster's proxies and admins. Were each to judge by its own list, a
// proxy that polls through a load balancer would see the keys change from one poll to the next
// (and judge its open connections again each time), and a key one server's config forgot would
// let a device's own value for it count through that server. So each auth server records its
// list in the backend, under a TTL it refreshes, and every one of them judges by the union of
// the lists of the live auth servers: a key that any of them keeps for assignments is kept by
// all. A difference is logged and shown in the status (`auth.assigned_label_keys`), for an
// operator to make the configs agree. One auth server alone (SQLite) judges by its own list.

import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Logger } from '../shared/log.ts'
import { type AssignedLabelKeysStatus, statusTime } from '../shared/status.ts'
import type { Backend } from './backend/backend.ts'

/** The live auth servers' lists, each an item with a TTL. */
const PREFIX = '/assigned-label-keys/'
const SERVER_ID = /^[0-9a-f]{16}$/
/** How often each server refreshes its item and reads its peers'. */
export const KEYS_CHECK_MS = 5000
/** An auth server killed leaves the union after this (four checks missed). */
const SERVER_TTL_MS = 4 * KEYS_CHECK_MS

/** What an auth server records of itself. */
interface ServerKeys {
  id: string
  address: string
  hostname: string
  keys: string[]
}

export interface ClusterAssignedKeysOptions {
  backend: Backend
  /** This server's `auth_service.assigned_label_keys`. */
  own: readonly string[]
  /** Where this server serves the auth API ('' before it listens). */
  address: () => string
  /** Called with the union whenever it changes (and once at start when it differs from `own`). */
  onChange: (keys: ReadonlySet<string>) => void
  log: Logger
}

export class ClusterAssignedKeys {
  readonly id = randomBytes(8).toString('hex')
  readonly #options: ClusterAssignedKeysOptions
  readonly #own: string[]
  #effective: string[]
  #differing: ServerKeys[] = []
  #lastCheck?: number
  #timer?: NodeJS.Timeout
  #running?: Promise<void>
  #failing = false

  constructor(options: ClusterAssignedKeysOptions) {
    this.#options = options
    this.#own = [...new Set(options.own)].sort()
    this.#effective = this.#own
  }

  /** Records this server and reads the others' lists once before the first request; then every few seconds. */
  async start(): Promise<void> {
    await this.check()
    this.#timer = setInterval(() => void this.check(), KEYS_CHECK_MS)
    this.#timer.unref()
  }

  status(): AssignedLabelKeysStatus {
    return {
      own: this.#own,
      effective: this.#effective,
      differing: this.#differing.map((peer) => ({ auth_server_id: peer.id, address: peer.address, hostname: peer.hostname, keys: peer.keys })),
      last_check: this.#lastCheck === undefined ? null : statusTime(this.#lastCheck),
    }
  }

  /** One look (never two at once); a failure is logged, and the union held stays: it never shrinks because the backend did not answer. */
  check(): Promise<void> {
    this.#running ??= this.#check().finally(() => (this.#running = undefined))
    return this.#running
  }

  async #check(): Promise<void> {
    const { backend, log } = this.#options
    try {
      const record: ServerKeys = { id: this.id, address: this.#options.address(), hostname: hostname(), keys: this.#own }
      await backend.put(PREFIX + this.id, JSON.stringify(record), { ttlMs: SERVER_TTL_MS })
      const peers = (await backend.list(PREFIX)).flatMap((item) => peerOf(item.value)).filter((peer) => peer.id !== this.id)
      const differing = peers.filter((peer) => !sameKeys(peer.keys, this.#own))
      const effective = [...new Set([...this.#own, ...peers.flatMap((peer) => peer.keys)])].sort()
      this.#lastCheck = Date.now()
      this.#report(differing, effective)
      this.#differing = differing
      if (!sameKeys(effective, this.#effective)) {
        this.#effective = effective
        this.#options.onChange(new Set(effective))
      }
      if (this.#failing) log.info('reading the other auth servers’ assigned_label_keys works again')
      this.#failing = false
    } catch (error) {
      if (!this.#failing) log.warn(`reading the other auth servers’ assigned_label_keys failed: ${(error as Error).message}`, { assigned_label_keys: this.#effective })
      this.#failing = true
    }
  }

  /** A WARN when the set of differing peers changes to a non-empty one, an INFO once they all agree again. */
  #report(differing: ServerKeys[], effective: string[]): void {
    const described = (peers: ServerKeys[]) => peers.map((peer) => `${peer.id} ${JSON.stringify(peer.keys)}`).sort()
    const before = described(this.#differing).join('\n')
    const now = described(differing).join('\n')
    if (before === now) return
    const { log } = this.#options
    if (differing.length > 0) {
      log.warn(
        `auth_service.assigned_label_keys ${JSON.stringify(this.#own)} differs from that of ${differing.length} live auth server(s) of this backend: ` +
          `every auth server keeps the keys any of them lists (${JSON.stringify(effective)}); make their configs agree`,
        {
          assigned_label_keys: this.#own,
          assigned_label_keys_effective: effective,
          assigned_label_keys_differing: differing.map((peer) => `${peer.id} ${peer.address} (${peer.hostname}): ${JSON.stringify(peer.keys)}`),
        },
      )
    } else {
      log.info('auth_service.assigned_label_keys is the same on every live auth server of this backend', { assigned_label_keys: this.#own, assigned_label_keys_differing: [] })
    }
  }

  /** Its item goes first, so that the others stop keeping its keys at their next look. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    await this.#running
    await this.#options.backend.delete(PREFIX + this.id).catch(() => false)
  }
}

/** A peer's record; none for an item that is not one. */
function peerOf(value: string): ServerKeys[] {
  try {
    const parsed = JSON.parse(value) as Partial<ServerKeys>
    if (typeof parsed.id !== 'string' || !SERVER_ID.test(parsed.id) || !Array.isArray(parsed.keys) || !parsed.keys.every((key) => typeof key === 'string')) return []
    return [{ id: parsed.id, address: String(parsed.address ?? ''), hostname: String(parsed.hostname ?? ''), keys: [...new Set(parsed.keys)].sort() }]
  } catch {
    return []
  }
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((key, i) => key === b[i])
}
