// Invitations: a user is added without a password, with a single-use sign-up token that
// lets that person set one and enrol a second factor (`warren login --invite`). Resetting a
// user voids its password and second factor, refuses the certificates issued before the
// reset, and invites it again; removing a user also ends its sessions at once. Both lock
// (a lock every proxy follows) until the last certificate they refuse has expired. Both end
// the user's generation (users.ts) in the transaction that voids its secrets, and their lock
// names it: the certificates that carry it are refused whatever the clock of the auth
// server that issued them said; the dates judge only those of an earlier version.

import { setTimeout as sleep } from 'node:timers/promises'
import type { Backend } from './backend/backend.ts'
import { deleteCredentials } from './credentials.ts'
import type { LockRecord, Locks } from './locks.ts'
import type { TokenRecord, TokenService } from './tokens.ts'
import { MAX_USER_CERT_TTL_MS, UnknownUser, type UserDirectory, type UserRecord } from './users.ts'

/** Certificates carry whole seconds: a lock's instant is never more than this ahead of the clock that chose it. */
const MAX_INSTANT_WAIT_MS = 1000

export interface InvitesContext {
  backend: Backend
  tokens: TokenService
  users: UserDirectory
  locks: Locks
  /** After a lock is made: so that proxies and this server refuse the user at once. */
  lockMade: () => Promise<void>
  clock?: () => number
}

export interface Invitation {
  token: string
  record: TokenRecord
}

export class Invites {
  private readonly context: InvitesContext
  private readonly clock: () => number

  constructor(context: InvitesContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /** Adds a user who signs up with the token returned; the user and its invitation are stored in one transaction. */
  async addUser(name: string, logins: string[], roles: string[] | undefined, ttlMs: number): Promise<{ user: UserRecord; invitation: Invitation }> {
    const { value, record, condition, operation } = this.context.tokens.prepare({ roles: ['signup'], ttlMs, user: name })
    const user = await this.context.users.add(name, logins, roles, { conditions: [condition], operations: [operation] })
    return { user, invitation: { token: value, record } }
  }

  /**
   * Voids the user's password, second factor and earlier invitations, refuses the
   * certificates issued before now, and invites it again. Those certificates stay valid by
   * their dates (whoever signed up with a leaked invitation holds some): a lock on them alone
   * refuses them everywhere until the last has expired, while the certificates the user gets
   * after the reset work. Certificates carry whole seconds, so the reset's instant is the next
   * whole second, and the invitation is returned only once it has come: whatever is issued
   * with it is from after the reset.
   */
  async reset(name: string, ttlMs: number): Promise<{ user: UserRecord; invitation: Invitation; lock: LockRecord }> {
    const user = await this.context.users.get(name)
    if (!user) throw new UnknownUser(`no user "${name}": "warrenctl users ls" lists the users`)
    const { lock, issuedBefore } = await this.lockAround(name, 'the user was reset', async () => {
      await this.dropInvitations(name)
      return (await this.context.users.replaceGeneration(name, [deleteCredentials(name)])).replaced
    })
    const invitation = await this.invite(name, ttlMs)
    await this.reach(issuedBefore)
    return { user, invitation, lock }
  }

  /**
   * Removes the user, its secrets and its invitations, and ends its sessions everywhere now.
   * Certificates already issued stay valid by their dates: a lock on those issued until now
   * refuses them until the last has expired. Not a lock on the name: a user added later
   * under it would be locked, and lifting that lock would bring the old certificates back.
   */
  async removeUser(name: string): Promise<UserRecord> {
    if (!(await this.context.users.get(name))) throw new UnknownUser(`no user "${name}": "warrenctl users ls" lists the users`)
    let removed: UserRecord | undefined
    const { issuedBefore } = await this.lockAround(name, 'the user was removed', async () => {
      await this.dropInvitations(name)
      removed = await this.context.users.remove(name, [deleteCredentials(name)])
      return removed.generation
    })
    // Whatever a user added again under the name is issued comes after the lock's instant.
    await this.reach(issuedBefore)
    return removed!
  }

  /**
   * Waits until the clock reaches a lock's instant, `issuedBefore` (the next whole second),
   * for at most a second: a longer wait is the clock set back meanwhile, which waiting would
   * not make up for (the lock names the generation ended, which refuses the certificates
   * issued before whatever the clock said), and must not hang the command for as long.
   */
  private async reach(issuedBefore: number): Promise<void> {
    const early = Math.min(issuedBefore - this.clock(), MAX_INSTANT_WAIT_MS)
    if (early > 0) await sleep(early)
  }

  /**
   * Runs `voiding` (which takes the user's secrets away and ends its generation, returning
   * the one it ended) between two locks on `name`'s certificates, the second replacing the
   * first. The first covers whatever was issued before, by dates alone, should the server
   * stop half-way; the second what a login or sign-up racing `voiding` issued meanwhile:
   * those issue before their own write, which either met the deletion and failed, or came
   * before it. It names the generation ended, which every certificate issued before the
   * deletion carries (or none, from an earlier version: judged by dates).
   */
  private async lockAround(name: string, message: string, voiding: () => Promise<string | undefined>): Promise<{ lock: LockRecord; issuedBefore: number }> {
    const first = await this.lockIssuedUntilNow(name, message)
    const generation = await voiding()
    const second = await this.lockIssuedUntilNow(name, message, true, generation)
    await this.context.locks.remove(first.lock.id).catch(() => undefined)
    await this.context.lockMade()
    return second
  }

  /**
   * A lock on `name`'s certificates issued until the next whole second (certificates carry
   * whole seconds), until the last has expired: kept twice the longest lifetime, since a
   * certificate's end is stamped by the clock of the auth server that issued it, which may
   * run ahead of this one's.
   */
  private async lockIssuedUntilNow(name: string, message: string, userRemoved = false, generation?: string): Promise<{ lock: LockRecord; issuedBefore: number }> {
    const now = this.clock()
    const issuedBefore = Math.ceil(now / 1000) * 1000
    const lock = await this.context.locks.add({ user: name, issuedBefore, generation, ttlMs: issuedBefore + 2 * MAX_USER_CERT_TTL_MS - now, message }, { userRemoved })
    await this.context.lockMade()
    return { lock, issuedBefore }
  }

  private async invite(user: string, ttlMs: number): Promise<Invitation> {
    const { value, record } = await this.context.tokens.add({ roles: ['signup'], ttlMs, user })
    return { token: value, record }
  }

  private async dropInvitations(user: string): Promise<void> {
    for (const token of await this.context.tokens.list()) {
      if (token.user === user) await this.context.tokens.remove(token.id).catch(() => undefined)
    }
  }
}
