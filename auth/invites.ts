// Invitations: a user is added without a password, with a single-use sign-up token that
// lets that person set one and enrol a second factor (`warren login --invite`). Resetting a
// user voids its password and second factor and invites it again; removing a user also
// ends its sessions at once, with a lock every proxy follows that outlives its last
// certificate.

import type { Backend } from './backend/backend.ts'
import { deleteCredentials } from './credentials.ts'
import type { Locks } from './locks.ts'
import type { TokenRecord, TokenService } from './tokens.ts'
import { MAX_USER_CERT_TTL_MS, UnknownUser, type UserDirectory, type UserRecord } from './users.ts'

export interface InvitesContext {
  backend: Backend
  tokens: TokenService
  users: UserDirectory
  locks: Locks
  /** After a lock is made: so that proxies and this server refuse the user at once. */
  lockMade: () => Promise<void>
}

export interface Invitation {
  token: string
  record: TokenRecord
}

export class Invites {
  private readonly context: InvitesContext

  constructor(context: InvitesContext) {
    this.context = context
  }

  /** Adds a user who signs up with the token returned. */
  async addUser(name: string, logins: string[], roles: string[] | undefined, ttlMs: number): Promise<{ user: UserRecord; invitation: Invitation }> {
    const user = await this.context.users.add(name, logins, roles)
    return { user, invitation: await this.invite(user.name, ttlMs) }
  }

  /** Voids the user's password, second factor and earlier invitations, and invites it again. */
  async reset(name: string, ttlMs: number): Promise<{ user: UserRecord; invitation: Invitation }> {
    const user = await this.context.users.get(name)
    if (!user) throw new UnknownUser(`no user "${name}": "warrenctl users ls" lists the users`)
    await this.dropInvitations(name)
    await this.context.backend.txn([], [deleteCredentials(name)])
    return { user, invitation: await this.invite(name, ttlMs) }
  }

  /** Removes the user, its secrets and its invitations, and ends its sessions everywhere now. */
  async removeUser(name: string): Promise<UserRecord> {
    if (!(await this.context.users.get(name))) throw new UnknownUser(`no user "${name}": "warrenctl users ls" lists the users`)
    // Certificates already issued stay valid until they expire: the lock refuses them until then.
    await this.context.locks.add({ user: name, ttlMs: MAX_USER_CERT_TTL_MS, message: 'the user was removed' })
    await this.context.lockMade()
    await this.dropInvitations(name)
    return this.context.users.remove(name, [deleteCredentials(name)])
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
