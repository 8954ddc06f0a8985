// The web console's sessions. A session is made only after the same password and second
// factor as a login for certificates (or an invitation completed), and lives in the backend
// under the SHA-256 of its token, so every auth server sharing the backend (and so every
// proxy) knows it, and a copy of the backend holds no usable token. Its lifetime is bounded
// by the user's roles as a certificate's is. Every use judges it again: not expired, the
// user still there and not locked, and its roles as they are now (a role whose
// max_session_ttl was shortened ends the sessions older than it).

import { createHash, randomBytes } from 'node:crypto'
import type { Access } from '../shared/access.ts'
import type { WebSessionCreated } from '../shared/protocol/web-sessions.ts'
import type { Backend } from './backend/backend.ts'
import { Locked, type Locks, lockReason } from './locks.ts'
import type { RoleDirectory } from './user-roles.ts'
import { MAX_USER_CERT_TTL_MS, type UserDirectory, type UserRecord } from './users.ts'

const PREFIX = '/web-sessions/'
/** 256 bits from the CSPRNG: the token and the CSRF token alike. */
const TOKEN_BYTES = 32
/** A token as a browser may send it back: base64url of TOKEN_BYTES, with room to spare. */
const TOKEN_FORM = /^[A-Za-z0-9_-]{16,128}$/

/** No valid session: the console shows its login page (401). */
export class WebSessionRefused extends Error {}

interface WebSessionRecord {
  user: string
  csrf: string
  created: number
  expires: number
  /** The user's generation when the session began: a reset (a new one) ends the session at once. */
  generation?: string
}

/** A session as it stands at this use. */
export interface ActiveWebSession {
  user: UserRecord
  access: Access
  csrf: string
  expires: number
}

export interface WebSessionsContext {
  backend: Backend
  users: UserDirectory
  roles: RoleDirectory
  /** Why a user is refused although it exists (a lock), or undefined. */
  refusedUser: (name: string) => string | undefined
  clock?: () => number
}

function keyOf(token: string): string {
  return PREFIX + createHash('sha256').update(token, 'utf8').digest('hex')
}

export class WebSessions {
  private readonly context: WebSessionsContext
  private readonly clock: () => number

  constructor(context: WebSessionsContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /** A new session for `user`, who has just proven who they are. */
  async create(given: UserRecord): Promise<WebSessionCreated> {
    // A user of an earlier version gets its generation now, so that a reset ends this session too.
    const user = await this.context.users.withGeneration(given)
    const { maxSessionTtlMs } = await this.context.roles.accessOf(user)
    const ttlMs = Math.min(maxSessionTtlMs, MAX_USER_CERT_TTL_MS)
    const now = this.clock()
    const token = randomBytes(TOKEN_BYTES).toString('base64url')
    const record: WebSessionRecord = {
      user: user.name,
      csrf: randomBytes(TOKEN_BYTES).toString('base64url'),
      created: now,
      expires: now + ttlMs,
      ...(user.generation ? { generation: user.generation } : {}),
    }
    // The backend forgets it when it expires; the check in use() does not wait for that.
    await this.context.backend.put(keyOf(token), JSON.stringify(record), { ttlMs })
    return { token, user: user.name, csrf_token: record.csrf, expires: record.expires }
  }

  /** The session of `token` as it stands now; throws WebSessionRefused why there is none. */
  async use(token: string): Promise<ActiveWebSession> {
    if (!TOKEN_FORM.test(token)) throw new WebSessionRefused('no valid web session: log in')
    const item = await this.context.backend.get(keyOf(token))
    if (!item) throw new WebSessionRefused('no valid web session (logged out or expired): log in')
    const record = JSON.parse(item.value) as WebSessionRecord
    const now = this.clock()
    const user = await this.context.users.get(record.user)
    if (!user) throw new WebSessionRefused(`user "${record.user}" no longer exists`)
    // Ended by a reset the moment its transaction is in the backend, before any lock reaches this server.
    if (record.generation !== undefined && user.generation !== undefined && record.generation !== user.generation) {
      throw new WebSessionRefused(`user "${record.user}" was reset since this session began: log in again`)
    }
    const locked = this.context.refusedUser(user.name)
    if (locked) throw new WebSessionRefused(locked)
    const { access, maxSessionTtlMs } = await this.context.roles.accessOf(user)
    const expires = Math.min(record.expires, record.created + maxSessionTtlMs)
    if (expires <= now) throw new WebSessionRefused('the web session has expired: log in again')
    return { user, access, csrf: record.csrf, expires }
  }

  /**
   * A lock on the whole user made while `session` was being written ended the user's
   * sessions before this one existed, and was checked for before it: it ends this one too
   * (throwing Locked), or the session would serve again once the lock is lifted.
   */
  async endIfLockedMeanwhile(session: WebSessionCreated, locks: Pick<Locks, 'onWholeUser'>): Promise<void> {
    const lock = await locks.onWholeUser(session.user)
    if (!lock) return
    await this.end(session.token)
    throw new Locked(lockReason(lock))
  }

  /** Logs out: false when there was no such session. */
  async end(token: string): Promise<boolean> {
    if (!TOKEN_FORM.test(token)) return false
    return this.context.backend.delete(keyOf(token))
  }

  /** Ends every session of `user` (removed): how many there were. */
  async endAllOf(user: string): Promise<number> {
    let ended = 0
    for (const item of await this.context.backend.list(PREFIX)) {
      if ((JSON.parse(item.value) as WebSessionRecord).user !== user) continue
      if (await this.context.backend.delete(item.key)) ended++
    }
    return ended
  }
}
