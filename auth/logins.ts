// People proving who they are: accepting an invitation (a sign-up token names the user; a
// password and a first TOTP code enrol them, spending the token in the same transaction)
// and logging in with password and code. A wrong user name, password or code is one
// refusal, and scrypt runs whichever it was. Five failures in a row lock the user's logins
// for half an hour, with a lock `warrenctl lock ls` shows and `lock rm` lifts; its sessions
// and certificates carry on, since anyone may try its password.

import { LOGIN_REFUSED } from '../shared/protocol/logins.ts'
import type { Backend } from './backend/backend.ts'
import { type CredentialRecord, readCredentials, unchanged, writeCredentials } from './credentials.ts'
import { Locked, type Locks, lockReason, locksLogins } from './locks.ts'
import { checkPassword, hashPassword, verifyPassword } from './passwords.ts'
import { TOKEN_NOT_FOUND, TokenRefusal, type TokenService, type ValidToken } from './tokens.ts'
import { generateTotpSecret, otpauthUri, verifyTotp } from './totp.ts'
import type { UserDirectory, UserRecord } from './users.ts'

/** Failed logins in a row that lock a user, and for how long: OWASP's usual account lockout. */
export const LOCKOUT = { failures: 5, durationMs: 30 * 60_000 }
/** Writes that lost a race with another login of the same user are tried again this often. */
const WRITE_TRIES = 5
/**
 * An attempt counted this long ago and still not judged never will be: its auth server
 * stopped between the count and the verdict. Judging one takes a code check and signing
 * its certificates: well under a second.
 */
const UNJUDGED_ATTEMPT_MS = 60_000
const USER_NAME = /^[a-z_][a-z0-9_.-]{0,31}$/

/** A login refused for a wrong user name, password or code: one message for all three. */
export class LoginRefused extends Error {
  constructor() {
    super(LOGIN_REFUSED)
  }
}

/** A sign-up that cannot complete as asked (a code that does not match, no second factor offered yet). */
export class SignupRefusal extends Error {}

export interface LoginsContext {
  backend: Backend
  tokens: TokenService
  users: UserDirectory
  locks: Locks
  clusterName: () => string
  clock?: () => number
}

export class Logins {
  private readonly context: LoginsContext
  private readonly clock: () => number

  constructor(context: LoginsContext) {
    this.context = context
    this.clock = context.clock ?? Date.now
  }

  /** The invited user, and a fresh TOTP secret offered to this token (the last one offered is the one to confirm). */
  async startSignup(token: string): Promise<{ user: string; secret: string; uri: string }> {
    const { user, valid } = await this.invitation(token)
    const secret = generateTotpSecret()
    for (let tries = 0; tries < WRITE_TRIES; tries++) {
      const stored = await readCredentials(this.context.backend, user.name)
      const record: CredentialRecord = { ...stored.record, pending: { secret, tokenId: valid.record.id } }
      if (await this.context.backend.txn([unchanged(user.name, stored)], [writeCredentials(user.name, record)])) {
        return { user: user.name, secret, uri: otpauthUri({ issuer: this.context.clusterName(), account: user.name, secret }) }
      }
    }
    throw new SignupRefusal('the invitation is being accepted elsewhere at the same time: try again')
  }

  /**
   * Sets the password and enrols the second factor offered to this token; the token is spent
   * in the same transaction. `issue` (the certificates the sign-up answers with) runs before
   * that transaction: a certificate exists only if the sign-up won against a reset or a
   * removal running at the same time, so their lock, taken after, covers it.
   */
  async completeSignup<T = undefined>(token: string, password: string, code: string, issue?: (user: UserRecord) => Promise<T>): Promise<{ user: UserRecord; issued: T }> {
    const { user, valid } = await this.invitation(token)
    checkPassword(password)
    const stored = await readCredentials(this.context.backend, user.name)
    const pending = stored.record.pending
    if (pending?.tokenId !== valid.record.id) throw new SignupRefusal('no second factor was offered to this invitation yet: start the sign-up again')
    const step = verifyTotp(pending.secret, code, this.clock())
    if (step === undefined) throw new SignupRefusal('the code does not match the new second factor: check the authenticator app (and the clock of its device), then try again')
    const record: CredentialRecord = { password: await hashPassword(password), totp: { secret: pending.secret, lastStep: step }, failures: 0 }
    const issued = (await issue?.(user)) as T
    const done = await this.context.backend.txn([...valid.consume.conditions, unchanged(user.name, stored)], [...valid.consume.operations, writeCredentials(user.name, record)])
    if (!done) throw new TokenRefusal(TOKEN_NOT_FOUND)
    return { user, issued }
  }

  /**
   * The user, once its password and a fresh code are right. Throws LoginRefused for a wrong
   * user name, password or code, and Locked when both are right but the user is locked.
   * `issue` (the login's certificates) runs before the write that spends the code: a
   * certificate exists only if the login won against a reset or a removal running at the
   * same time, so their lock, taken after, covers it.
   */
  async login<T = undefined>(name: string, password: string, code: string, issue?: (user: UserRecord) => Promise<T>): Promise<{ user: UserRecord; issued: T }> {
    const user = USER_NAME.test(name) ? await this.context.users.get(name) : undefined
    let stored = user ? await readCredentials(this.context.backend, user.name) : undefined
    // Unknown users are checked against a hash no password matches: the same scrypt either way.
    const passwordRight = await verifyPassword(password, stored?.record.password)
    const lock = user ? await this.lockOf(user.name) : undefined
    if (!user || !stored) throw new LoginRefused()
    if (lock) {
      // Told only to who has the password and a fresh code (not spent): told on the password
      // alone, a guesser could try passwords at the address's rate for as long as the lock lasts.
      const totp = stored.record.totp
      if (passwordRight && totp && verifyTotp(totp.secret, code, this.clock(), totp.lastStep) !== undefined) throw new Locked(lockReason(lock))
      throw new LoginRefused()
    }
    // Counted before its code is compared: logins at once, through one auth server or many,
    // compare no more codes than the lockout allows.
    const counted = await this.countAttempt(user.name)
    stored = await readCredentials(this.context.backend, user.name)
    for (let tries = 0; tries < WRITE_TRIES; tries++) {
      const totp = stored.record.totp
      const step = passwordRight && totp ? verifyTotp(totp.secret, code, this.clock(), totp.lastStep) : undefined
      if (step === undefined || !totp) {
        if (counted >= LOCKOUT.failures) await this.lockOut(user.name)
        throw new LoginRefused()
      }
      const record: CredentialRecord = { ...stored.record, totp: { ...totp, lastStep: step }, failures: 0, attemptAt: undefined, lockedOut: undefined }
      let issued: T
      try {
        issued = (await issue?.(user)) as T
        // The condition makes a code good for one login, however many arrive at once.
        if (await this.context.backend.txn([unchanged(user.name, stored)], [writeCredentials(user.name, record)])) return { user, issued }
      } catch (error) {
        // The password and code were right: what failed after them is no failed login.
        await this.uncount(user.name)
        throw error
      }
      stored = await readCredentials(this.context.backend, user.name)
    }
    await this.uncount(user.name)
    throw new LoginRefused()
  }

  /** Takes back an attempt counted whose password and code were right, but that could not complete. */
  private async uncount(user: string): Promise<void> {
    for (let tries = 0; tries < WRITE_TRIES; tries++) {
      const stored = await readCredentials(this.context.backend, user).catch(() => undefined)
      if (!stored || stored.record.failures === 0 || stored.record.lockedOut) return
      const done = await this.context.backend.txn([unchanged(user, stored)], [writeCredentials(user, { ...stored.record, failures: stored.record.failures - 1 })]).catch(() => true)
      if (done) return
    }
  }

  /**
   * Counts a login attempt before its code is compared; returns which attempt in a row it is.
   * Refused (LoginRefused, uncounted) while the lockout's last attempt is being judged or its
   * lock is in force, and when the count cannot be written: no attempt is judged uncounted.
   */
  private async countAttempt(user: string): Promise<number> {
    for (let tries = 0; tries < WRITE_TRIES; tries++) {
      const stored = await readCredentials(this.context.backend, user)
      const now = this.clock()
      let failures = stored.record.failures
      if (failures >= LOCKOUT.failures) {
        if (!stored.record.lockedOut) {
          // The attempt that counted the last was never judged (its server stopped): it locks as its failure would have.
          if (now - (stored.record.attemptAt ?? 0) >= UNJUDGED_ATTEMPT_MS) await this.lockOut(user)
          throw new LoginRefused()
        }
        if (await this.lockOf(user)) throw new LoginRefused()
        // The lockout's lock ran out or was lifted: the count starts again.
        failures = 0
      }
      const record: CredentialRecord = { ...stored.record, failures: failures + 1, attemptAt: now, lockedOut: undefined }
      if (await this.context.backend.txn([unchanged(user, stored)], [writeCredentials(user, record)])) return failures + 1
    }
    throw new LoginRefused()
  }

  /** The lockout's attempts all failed: the user's logins are locked, and its credentials say so. */
  private async lockOut(user: string): Promise<void> {
    // Its logins only: whoever tried the password must not end the user's sessions.
    await this.context.locks.add({
      user,
      loginsOnly: true,
      ttlMs: LOCKOUT.durationMs,
      message: `${LOCKOUT.failures} failed logins in a row: locked for ${LOCKOUT.durationMs / 60_000} minutes`,
    })
    for (let tries = 0; tries < WRITE_TRIES; tries++) {
      const stored = await readCredentials(this.context.backend, user)
      if (stored.record.failures < LOCKOUT.failures || stored.record.lockedOut) return
      if (await this.context.backend.txn([unchanged(user, stored)], [writeCredentials(user, { ...stored.record, lockedOut: true })])) return
    }
  }

  private async lockOf(user: string) {
    const now = this.clock()
    // A lock on the certificates from before a reset does not bar the logins that follow it.
    return (await this.context.locks.list()).find((lock) => locksLogins(lock, user) && (lock.expires ?? Infinity) > now)
  }

  /** The user a sign-up token invites; a token that is no sign-up token, spent or expired, is refused alike. */
  private async invitation(token: string): Promise<{ user: UserRecord; valid: ValidToken }> {
    const valid = await this.context.tokens.validate(token, ['signup'])
    const user = valid.record.user === undefined ? undefined : await this.context.users.get(valid.record.user)
    if (!user) throw new TokenRefusal(TOKEN_NOT_FOUND)
    return { user, valid }
  }
}
