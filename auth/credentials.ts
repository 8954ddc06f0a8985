// What a person proves at login, one backend item per user beside the user record: the
// password's scrypt hash, the TOTP secret and the last step a code was accepted for (so a
// code is never accepted twice), the failures since the last success, and, while an
// invitation is being accepted, the TOTP secret offered to that invitation's token.

import type { Backend, Item, Operation } from './backend/backend.ts'
import type { PasswordHash } from './passwords.ts'

const PREFIX = '/credentials/'

export interface CredentialRecord {
  password?: PasswordHash
  totp?: { secret: string; lastStep: number }
  /** Login attempts in a row not followed by a success, each counted before it is judged; five lock the user (logins.ts). */
  failures: number
  /** When the last of them was counted. */
  attemptAt?: number
  /** The five failed: their lock is written (it may have run out or been lifted since). */
  lockedOut?: boolean
  /** The second factor offered by POST /v1/signup, enrolled when the same token completes. */
  pending?: { secret: string; tokenId: string }
}

export interface StoredCredentials {
  record: CredentialRecord
  /** The backend item, absent when the user has none yet: the condition of a write. */
  item?: Item
}

export function credentialsKey(user: string): string {
  return PREFIX + user
}

export async function readCredentials(backend: Backend, user: string): Promise<StoredCredentials> {
  const item = await backend.get(credentialsKey(user))
  return { record: item ? (JSON.parse(item.value) as CredentialRecord) : { failures: 0 }, item }
}

/** The condition that nothing changed `stored` since it was read. */
export function unchanged(user: string, stored: StoredCredentials) {
  return stored.item ? { key: stored.item.key, revision: stored.item.revision } : { key: credentialsKey(user), absent: true as const }
}

export function writeCredentials(user: string, record: CredentialRecord): Operation {
  return { op: 'put', key: credentialsKey(user), value: JSON.stringify(record) }
}

export function deleteCredentials(user: string): Operation {
  return { op: 'delete', key: credentialsKey(user) }
}
