// The key that seals the TLS session tickets this proxy hands out, kept in its data
// directory. With it a restarted proxy still accepts the tickets its agents were given
// before the restart, so a fleet returning to it resumes its sessions: no certificates
// sent, signed or verified on either side, about half the CPU of a full handshake. The key
// is as secret as the proxy's private key beside it (mode 0600) and is replaced once it is
// a ticket lifetime old, which ends the tickets it sealed. A key the disk refuses (a full
// disk) is used from memory and saved at a later connection: refusing connections for it
// would cut the proxy off; losing it at a restart costs one full handshake per agent.

import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../shared/files.ts'

const FILE = 'tls-ticket-key.json'

/** How long after a save the disk refused the next is tried: not at every connection of a proxy on a full disk. */
export const SAVE_RETRY_MS = 60_000

/** TLS 1.3's longest ticket lifetime (RFC 8446 section 4.6.1): 7 days. */
export const TICKET_LIFETIME_S = 7 * 24 * 3600

/** What Node's secure context takes: a key name, an HMAC key and an AES key, 16 bytes each. */
const KEY_BYTES = 48

/** The same for every proxy of a cluster and every restart: a ticket's session must match it to resume. */
export function sessionIdContext(clusterName: string): string {
  // At most 32 bytes (SSL_MAX_SID_CTX_LENGTH).
  return createHash('sha256').update(`warren proxy of cluster ${clusterName}`).digest('hex').slice(0, 32)
}

export interface TicketKey {
  key: Buffer
  /** When it was made (ms since the epoch). */
  created: number
}

export class TicketKeys {
  private readonly path: string
  private readonly now: () => number
  private cached?: TicketKey
  /** When the cached key's save was last refused; undefined once it is on disk. */
  private unsavedSince?: number

  constructor(dataDir: string, now: () => number = Date.now) {
    this.path = join(dataDir, FILE)
    this.now = now
  }

  /** The key to seal and open tickets with now: the saved one, or a new one once it is too old. */
  current(): TicketKey {
    const now = this.now()
    this.cached ??= this.load()
    if (!this.cached || now - this.cached.created >= TICKET_LIFETIME_S * 1000 || this.cached.created > now + 60_000) {
      this.cached = { key: randomBytes(KEY_BYTES), created: now }
      this.save(this.cached, now)
    } else if (this.unsavedSince !== undefined && now - this.unsavedSince >= SAVE_RETRY_MS) this.save(this.cached, now)
    return this.cached
  }

  /** Whether the key in use is not the one on disk (its save was refused). */
  get unsaved(): boolean {
    return this.unsavedSince !== undefined
  }

  private save(key: TicketKey, now: number): void {
    try {
      writeFileAtomic(this.path, JSON.stringify({ created: key.created, key: key.key.toString('base64') }) + '\n', 0o600)
      this.unsavedSince = undefined
    } catch {
      this.unsavedSince = now
    }
  }

  private load(): TicketKey | undefined {
    try {
      const saved = JSON.parse(readFileSync(this.path, 'utf8')) as { created?: unknown; key?: unknown }
      const key = typeof saved.key === 'string' ? Buffer.from(saved.key, 'base64') : undefined
      if (key?.length === KEY_BYTES && typeof saved.created === 'number' && Number.isFinite(saved.created)) return { key, created: saved.created }
    } catch {
      // Missing or unreadable: a new key, and the agents make full handshakes once.
    }
    return undefined
  }
}
