// What a restore undoes: everything the cluster did after the backup was made, found by
// comparing the backend it replaces (kept beside it) with the backup, record by record. An
// operator must make again what should stand (a removal, a lock, a reset), and cannot find
// it in `audit ls` afterwards, since the audit log is restored too.

import { DatabaseSync } from 'node:sqlite'
import { shortDuration } from '../../shared/duration.ts'
import { shellQuote } from '../../shared/shell-quote.ts'

/** Names shown per line; the rest are counted. */
const NAMES_SHOWN = 20

type Items = Map<string, string>

/** The records of the backend at `path` that are live at `now` (those with a time to live, tokens and locks among them, end then). */
function readItems(path: string, now: number): Items {
  const db = new DatabaseSync(path, { readOnly: true })
  try {
    const live = "key NOT LIKE '/presence/%' AND key NOT LIKE '/audit/%' AND (expires IS NULL OR expires > ?)"
    const rows = db.prepare(`SELECT key, value FROM items WHERE ${live}`).all(now) as { key: string; value: string }[]
    return new Map(rows.map(({ key, value }) => [key, value]))
  } finally {
    db.close()
  }
}

/** The records under `prefix`, by the rest of their key, their values parsed. */
function under(items: Items, prefix: string): Map<string, Record<string, unknown>> {
  const found = new Map<string, Record<string, unknown>>()
  for (const [key, value] of items) {
    if (!key.startsWith(prefix)) continue
    try {
      found.set(key.slice(prefix.length), JSON.parse(value) as Record<string, unknown>)
    } catch {
      found.set(key.slice(prefix.length), {})
    }
  }
  return found
}

const text = (value: unknown) => (typeof value === 'string' ? value : '?')

function lockTarget(lock: Record<string, unknown>): string {
  const target = (lock.target ?? {}) as Record<string, unknown>
  if (typeof target.user === 'string') return `user ${target.user}`
  if (typeof target.node === 'string') return `node ${target.node}`
  if (typeof target.role === 'string') return `role ${target.role}`
  return text(lock.id)
}

/** Whether a record with an `expires` (epoch ms) has ended by `now`: such a record undoes nothing. */
const ended = (record: Record<string, unknown>, now: number) => typeof record.expires === 'number' && record.expires <= now

/**
 * What a restore undoes, one record per item, as `warrenctl restore --format=json` prints them.
 * The field names and kinds are a stable interface (README, "Backups").
 */
export interface UndoneItem {
  kind: UndoneKind
  /** The user, the lock's target (`user alice`, `node pi-1`), the host's name, the token's ID, the role, or the CA (`host`, `user`). */
  subject: string
  /** The lock's ID, or the host's ID; null for the others. */
  id: string | null
  /**
   * The command that makes it again, ready for a shell; null where none does: a lock that a
   * `users rm` or `users reset` made (that command makes it), one that failed logins made, and
   * a CA rotation (restore a copy made after it). A role's is `warrenctl create -f ROLE.yaml`
   * with the role as it should be (unless it was removed since: `warrenctl rm role/NAME`).
   */
  command: string | null
}

/** Each kind of item, in the order they are said, with the sentence that says them. */
const KINDS = {
  user_removed: 'users removed since are back, with their password, TOTP and certificates (warrenctl users rm NAME)',
  user_reset: 'users reset or signed up since have their earlier password, TOTP and certificates again (warrenctl users reset NAME)',
  user_added: 'users added since are gone (warrenctl users add)',
  lock_made: 'locks made since are gone (warrenctl lock)',
  lock_lifted: 'locks lifted since are back (warrenctl lock rm ID)',
  host_removed: 'hosts removed since are back (warrenctl nodes rm NAME)',
  host_joined: 'hosts that joined since are unknown and must join again (warrenctl nodes add --nodename=NAME)',
  host_labels_changed: 'hosts whose assigned labels changed since have their earlier ones again (warrenctl nodes label NAME KEY=VALUE --remove=KEY)',
  token_used: 'tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID)',
  token_made: 'tokens made since are gone (warrenctl tokens add, or warrenctl nodes add for a node)',
  role_changed: 'roles changed since are as they were (warrenctl create -f ROLE.yaml)',
  ca_rotated: 'the CAs are as they were before a rotation made since: devices that followed it do not trust them (restore a copy made after the rotation)',
} as const

export type UndoneKind = keyof typeof KINDS

/** The kinds, in the order they are said. */
export const UNDONE_KINDS = Object.keys(KINDS) as UndoneKind[]

/** A command line of shell words, each quoted where it must be. */
const command = (...words: (string | false | undefined)[]) =>
  words
    .filter((word) => typeof word === 'string')
    .map(shellQuote)
    .join(' ')

/** What is left of a time to live that ends at `expires` (epoch ms), as a --ttl: whole seconds, rounded up. */
const ttlLeft = (expires: unknown, now: number) => (typeof expires === 'number' ? `--ttl=${shortDuration(Math.ceil((expires - now) / 1000) * 1000)}` : undefined)

/** The command that makes a lock again: one an admin made (`warrenctl lock`), not one that a user's removal, reset or failed logins made. */
function lockCommand(lock: Record<string, unknown>, now: number): string | null {
  const target = (lock.target ?? {}) as Record<string, unknown>
  const message = typeof lock.message === 'string' && lock.message !== '' ? `--message=${lock.message}` : undefined
  if (typeof target.node === 'string') return command('warrenctl', 'lock', `--node=${text(target.hostId ?? target.node)}`, message, ttlLeft(lock.expires, now))
  if (typeof target.user !== 'string' || target.issuedBefore !== undefined || target.loginsOnly !== undefined) return null
  return command('warrenctl', 'lock', `--user=${target.user}`, message, ttlLeft(lock.expires, now))
}

/** The command that makes a token again (with a new value: the one made since is gone for good). */
function tokenCommand(token: Record<string, unknown>, now: number): string {
  const roles = Array.isArray(token.roles) ? token.roles.map(String) : []
  const labels = Object.entries((token.labels ?? {}) as Record<string, string>)
  return command(
    'warrenctl',
    'tokens',
    'add',
    `--type=${roles.join(',')}`,
    ttlLeft(token.expires, now),
    token.singleUse === true && token.nodename === undefined && '--single-use',
    typeof token.nodename === 'string' && `--nodename=${token.nodename}`,
    labels.length > 0 && `--labels=${labels.map(([key, value]) => `${key}=${value}`).join(',')}`,
  )
}

/** The command that takes a host's assigned labels from `before` (those of the backup) to `after` (those the restore undoes). */
function labelCommand(hostId: string, before: Record<string, string>, after: Record<string, string>): string {
  const set = Object.keys(after)
    .filter((key) => before[key] !== after[key])
    .sort()
    .map((key) => `${key}=${after[key]}`)
  const removed = Object.keys(before)
    .filter((key) => !(key in after))
    .sort()
  return command('warrenctl', 'nodes', 'label', hostId, ...set, removed.length > 0 && `--remove=${removed.join(',')}`)
}

/**
 * What the restore of `restored` over `replaced` undoes, one record each, by kind in the order
 * KINDS says them and by subject; empty when nothing is. `now` (epoch ms) tells the locks and
 * tokens that have ended by then, which a restore does not bring back in force, and what is
 * left of the time to live of those made since.
 */
export function undoneItems(replaced: string, restored: string, now = Date.now()): UndoneItem[] {
  const current = readItems(replaced, now)
  const then = readItems(restored, now)
  const items: UndoneItem[] = []
  const add = (kind: UndoneKind, subject: string, cmd: string | null, id: string | null = null) => items.push({ kind, subject, id, command: cmd })
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
  const [usersNow, usersThen] = [under(current, '/users/'), under(then, '/users/')]
  const [credentialsNow, credentialsThen] = [under(current, '/credentials/'), under(then, '/credentials/')]
  // A reset shows in the credentials, and in the generation when both records have one: a
  // user from before generations gets one at its next certificate, which resets nothing.
  const reset = (name: string) => {
    const [before, after] = [usersThen.get(name)!.generation, usersNow.get(name)!.generation]
    return (before !== undefined && after !== undefined && before !== after) || !same(credentialsNow.get(name), credentialsThen.get(name))
  }
  for (const name of usersThen.keys()) {
    if (!usersNow.has(name)) add('user_removed', name, command('warrenctl', 'users', 'rm', name))
    else if (reset(name)) add('user_reset', name, command('warrenctl', 'users', 'reset', name))
  }
  for (const [name, user] of usersNow) {
    if (usersThen.has(name)) continue
    const list = (value: unknown) => (Array.isArray(value) ? value.map(String) : [])
    const [logins, roles] = [list(user.logins), list(user.roles)]
    add('user_added', name, command('warrenctl', 'users', 'add', name, logins.length > 0 && `--logins=${logins.join(',')}`, roles.length > 0 && `--roles=${roles.join(',')}`))
  }
  const [locksNow, locksThen] = [under(current, '/locks/'), under(then, '/locks/')]
  for (const [id, lock] of locksNow) if (!locksThen.has(id) && !ended(lock, now)) add('lock_made', lockTarget(lock), lockCommand(lock, now), id)
  for (const [id, lock] of locksThen) if (!locksNow.has(id) && !ended(lock, now)) add('lock_lifted', lockTarget(lock), command('warrenctl', 'lock', 'rm', id), id)
  const [removedNow, removedThen] = [under(current, '/removed/'), under(then, '/removed/')]
  for (const [hostId, host] of removedNow) if (!removedThen.has(hostId)) add('host_removed', text(host.nodename), command('warrenctl', 'nodes', 'rm', hostId), hostId)
  const [nodesNow, nodesThen] = [under(current, '/nodes/'), under(then, '/nodes/')]
  for (const [hostId, host] of nodesNow) {
    if (!nodesThen.has(hostId)) add('host_joined', text(host.nodename), command('warrenctl', 'nodes', 'add', `--nodename=${text(host.nodename)}`), hostId)
  }
  // Of the hosts known before and after: those removed or joined since are said above.
  const [assignedNow, assignedThen] = [under(current, '/assigned-labels/'), under(then, '/assigned-labels/')]
  for (const [hostId, host] of nodesThen) {
    if (!nodesNow.has(hostId)) continue
    const [before, after] = [(assignedThen.get(hostId)?.labels ?? {}) as Record<string, string>, (assignedNow.get(hostId)?.labels ?? {}) as Record<string, string>]
    if (!same(after, before)) add('host_labels_changed', text(host.nodename), labelCommand(hostId, before, after), hostId)
  }
  const [tokensNow, tokensThen] = [under(current, '/tokens/'), under(then, '/tokens/')]
  for (const [hash, token] of tokensThen) {
    if (!tokensNow.has(hash) && !ended(token, now)) add('token_used', text(token.id), command('warrenctl', 'tokens', 'rm', text(token.id)))
  }
  // A sign-up token made since is its user's, added or reset since: said above.
  for (const [hash, token] of tokensNow) {
    if (!tokensThen.has(hash) && !ended(token, now) && token.user === undefined) add('token_made', text(token.id), tokenCommand(token, now))
  }
  const [rolesNow, rolesThen] = [under(current, '/roles/'), under(then, '/roles/')]
  for (const name of new Set([...rolesNow.keys(), ...rolesThen.keys()])) {
    if (same(rolesNow.get(name), rolesThen.get(name))) continue
    add('role_changed', name, rolesNow.has(name) ? command('warrenctl', 'create', '-f', 'ROLE.yaml') : command('warrenctl', 'rm', `role/${name}`))
  }
  for (const ca of ['host', 'user']) if (current.get(`/authorities/${ca}`) !== then.get(`/authorities/${ca}`)) add('ca_rotated', ca, null)
  const order = (item: UndoneItem) => UNDONE_KINDS.indexOf(item.kind)
  return items.sort((a, b) => order(a) - order(b) || (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0))
}

/** How a line names an item: a lifted lock with its ID, for `warrenctl lock rm`. */
const nameOf = (item: UndoneItem) => (item.kind === 'lock_lifted' ? `${item.subject} (${item.id})` : item.subject)

function names(list: string[]): string {
  const shown = list.slice(0, NAMES_SHOWN).join(', ')
  return list.length > NAMES_SHOWN ? `${shown} and ${list.length - NAMES_SHOWN} more` : shown
}

/** The items as lines, one per kind, each with the command that makes them again; the CAs' line names none. */
export function undoneLines(items: readonly UndoneItem[]): string[] {
  const lines: string[] = []
  for (const kind of UNDONE_KINDS) {
    const of = items.filter((item) => item.kind === kind)
    if (of.length === 0) continue
    lines.push(kind === 'ca_rotated' ? KINDS[kind] : `${KINDS[kind]}: ${names(of.map(nameOf))}`)
  }
  return lines
}

/**
 * Lines saying what the restore of `restored` over `replaced` undoes, each with the command
 * that makes it again; empty when nothing is (undoneItems, as undoneLines says them).
 */
export function undoneByRestore(replaced: string, restored: string, now = Date.now()): string[] {
  return undoneLines(undoneItems(replaced, restored, now))
}
