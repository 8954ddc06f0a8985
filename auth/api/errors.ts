// The one place where the auth server's domain errors become HTTP statuses. Each module
// throws what it means (a token refused, a user unknown, a rotation out of step); the
// router asks here how to answer it. An error not named here is no refusal but a failure
// (a backend outage, a bug): the router answers 500 and keeps the detail for the log.

import { HttpError, type Refusal } from '../../shared/api-router.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { PAST_RECOVERY_WINDOW, STILL_RENEWABLE } from '../../shared/recover.ts'
import { AcmeRecordError } from '../acme-records.ts'
import { CAExpired } from '../authorities.ts'
import { ConnectionLimitReached } from '../connection-leases.ts'
import { JoinRefusal } from '../join.ts'
import { ChallengeRefusal } from '../join-challenge.ts'
import { KeyPolicyError } from '../key-policy.ts'
import { LockConflict, Locked, LockNotFound } from '../locks.ts'
import { LoginRefused, SignupRefusal } from '../logins.ts'
import { NodeLookupError, NodenameTaken, UnregisteredHost } from '../nodes.ts'
import { WeakPassword } from '../passwords.ts'
import { TooManyAttempts } from '../rate-limit.ts'
import { RecoveryRefusal, RecoveryWindowPassed, StillRenewable } from '../recovery.ts'
import { RenewalNotDue, RenewalRefusal } from '../renew.ts'
import { RotationError } from '../rotation.ts'
import { TokenError, TokenNotFound, TokenRefusal } from '../tokens.ts'
import { RoleInUse, UnknownRole } from '../user-roles.ts'
import { UnknownUser, UserError } from '../users.ts'
import { WebSessionRefused } from '../web-sessions.ts'

/** Subclasses before the classes they extend. */
const STATUSES: [new (...args: never[]) => Error, number][] = [
  [ProtocolError, 400],
  [KeyPolicyError, 400],
  [AcmeRecordError, 400],
  [TokenNotFound, 404],
  [TokenError, 400],
  [UnknownUser, 404],
  [UnknownRole, 404],
  [RoleInUse, 409],
  [UserError, 400],
  [WeakPassword, 400],
  [LoginRefused, 401],
  [WebSessionRefused, 401],
  [SignupRefusal, 403],
  [TokenRefusal, 403],
  [ChallengeRefusal, 403],
  [JoinRefusal, 403],
  [RenewalRefusal, 403],
  [StillRenewable, STILL_RENEWABLE],
  [RecoveryWindowPassed, PAST_RECOVERY_WINDOW],
  [RecoveryRefusal, 403],
  [UnregisteredHost, 403],
  [Locked, 403],
  [NodeLookupError, 404],
  [LockNotFound, 404],
  [NodenameTaken, 409],
  [RenewalNotDue, 409],
  [RotationError, 409],
  [LockConflict, 409],
  [ConnectionLimitReached, 409],
  // Until the CA is rotated: the answer says how.
  [CAExpired, 503],
]

/** How the auth API answers `error`, or undefined when it is a failure (a 500). */
export function statusOf(error: unknown): Refusal | undefined {
  if (error instanceof HttpError) return { status: error.status, headers: error.headers }
  if (error instanceof TooManyAttempts) return { status: 429, headers: { 'retry-after': String(error.retryAfterS) } }
  const match = STATUSES.find(([type]) => error instanceof type)
  return match ? { status: match[1] } : undefined
}
