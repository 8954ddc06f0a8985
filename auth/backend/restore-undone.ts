// What a restore undoes: everything the cluster did after the backup was made, found by
// comparing the backend it replaces (kept beside it) with the backup, record by record. An
// operator must make again what should stand (a removal, a lock, a reset), and cannot find
// it in `audit ls` afterwards, since the audit log is restored too.

import { DatabaseSync } from 'node:sqlite'
import { shortDuration } from '../../shared/duration.ts'
import { labelKeyProblem, labelValueProblem } from '../../shared/labels.ts'
import { printable } from '../../shared/printable.ts'
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
   * Also null where a value of the record cannot pass through the command's own flags and
   * arguments as it is (a label value with a comma, which `nodes label` reads as two labels):
   * never a command that would do something else.
   */
  command: string | null
  /** Why `command` is null, in words; null when there is a command. */
  command_unavailable: string | null
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

/** Why no command makes an item again: a value that no command line gives to warrenctl as it is. */
class NoCommand extends Error {}

/** A value as a reason quotes it: in JSON's quotes, with whatever a terminal would act on escaped. */
const quoted = (value: string) => printable(JSON.stringify(value))

/**
 * A command line: `words` (the program and command), the flags (those false or undefined
 * left out), then the operands, each word quoted for a shell. A `--` goes before the operands
 * when one starts with a dash, which warrenctl would otherwise read as a flag. Throws
 * NoCommand for an operand that warrenctl refuses as blank, or a word that no argument holds.
 */
function commandLine(words: readonly string[], flags: readonly (string | false | undefined)[], operands: readonly string[] = []): string {
  for (const operand of operands) if (operand.trim() === '') throw new NoCommand(`the argument ${quoted(operand)} is blank, which warrenctl refuses`)
  const all = [...words, ...flags.filter((flag) => typeof flag === 'string'), ...(operands.some((operand) => operand.startsWith('-')) ? ['--'] : []), ...operands]
  const nul = all.find((word) => word.includes('\0'))
  if (nul !== undefined) throw new NoCommand(`${quoted(nul)} holds a NUL character, which no command-line argument can`)
  return all.map(shellQuote).join(' ')
}

/** A one-value flag, `--name=VALUE`: any value passes as it is, except a blank one, which warrenctl refuses. */
function valueFlag(name: string, value: string): string {
  if (value.trim() === '') throw new NoCommand(`--${name} would be blank (${quoted(value)}), which warrenctl refuses`)
  return `--${name}=${value}`
}

/**
 * A list flag, `--name=A,B`, or undefined for an empty list. warrenctl splits its value at
 * commas and trims each item, so an item with a comma, blank, or with spaces at its ends
 * would come out as something else.
 */
function listFlag(name: string, items: readonly string[]): string | undefined {
  for (const item of items) {
    if (item.includes(',')) throw new NoCommand(`${quoted(item)} holds a comma, which --${name} reads as two items`)
    if (item.trim() === '') throw new NoCommand(`--${name} would drop the blank item ${quoted(item)}`)
    if (item !== item.trim()) throw new NoCommand(`--${name} would trim the spaces at the ends of ${quoted(item)}`)
  }
  return items.length > 0 ? `--${name}=${items.join(',')}` : undefined
}

/**
 * `KEY=VALUE`, as `nodes label` and `--labels` read a label: the key and value as the label
 * rules allow them (those the command checks), a value with neither a comma (a second
 * label) nor spaces at its ends (trimmed).
 */
function labelWord(key: string, value: unknown): string {
  if (typeof value !== 'string') throw new NoCommand(`the label ${quoted(key)} has no text for its value`)
  const keyProblem = labelKeyProblem(key)
  if (keyProblem) throw new NoCommand(`the label key ${quoted(key)} ${keyProblem}`)
  const valueProblem = labelValueProblem(value)
  if (valueProblem) throw new NoCommand(`the label ${quoted(key)} ${valueProblem}`)
  if (value.includes(',')) throw new NoCommand(`the value of label ${quoted(key)}, ${quoted(value)}, holds a comma, which warrenctl reads as a second label`)
  if (value !== value.trim()) throw new NoCommand(`the value of label ${quoted(key)}, ${quoted(value)}, has spaces at its ends, which warrenctl trims`)
  return `${key}=${value}`
}

/** What is left of a time to live that ends at `expires` (epoch ms), as a --ttl: whole seconds, rounded up. */
const ttlLeft = (expires: unknown, now: number) => (typeof expires === 'number' ? `--ttl=${shortDuration(Math.ceil((expires - now) / 1000) * 1000)}` : undefined)

/** Why a lock has no command, or undefined when `warrenctl lock` makes it: one an admin made, not one that a user's removal, reset or failed logins made. */
function lockWithout(lock: Record<string, unknown>): string | undefined {
  const target = (lock.target ?? {}) as Record<string, unknown>
  if (typeof target.node === 'string') return undefined
  if (typeof target.user !== 'string') return 'a lock of neither a user nor a node'
  if (target.loginsOnly !== undefined) return 'failed logins made it'
  if (target.issuedBefore !== undefined) return 'the warrenctl users rm or users reset that made it makes it again'
  return undefined
}

/** The command that makes a lock again (lockWithout tells the locks it cannot make). */
function lockCommand(lock: Record<string, unknown>, now: number): string {
  const target = (lock.target ?? {}) as Record<string, unknown>
  const message = typeof lock.message === 'string' && lock.message !== '' ? `--message=${lock.message}` : undefined
  const who = typeof target.node === 'string' ? valueFlag('node', text(target.hostId ?? target.node)) : valueFlag('user', text(target.user))
  return commandLine(['warrenctl', 'lock'], [who, message, ttlLeft(lock.expires, now)])
}

/** The command that makes a token again (with a new value: the one made since is gone for good). */
function tokenCommand(token: Record<string, unknown>, now: number): string {
  const roles = Array.isArray(token.roles) ? token.roles.map(String) : []
  if (roles.length === 0) throw new NoCommand('the token grants no roles, and warrenctl tokens add needs --type')
  const labels = Object.entries((token.labels ?? {}) as Record<string, string>)
  return commandLine(
    ['warrenctl', 'tokens', 'add'],
    [
      listFlag('type', roles),
      ttlLeft(token.expires, now),
      token.singleUse === true && token.nodename === undefined && '--single-use',
      typeof token.nodename === 'string' && valueFlag('nodename', token.nodename),
      labels.length > 0 && `--labels=${labels.map(([key, value]) => labelWord(key, value)).join(',')}`,
    ],
  )
}

/** The keys whose label `after` assigns anew or otherwise than `before`, and those it no longer has; both sorted. */
function labelChanges(before: Record<string, string>, after: Record<string, string>): { set: string[]; removed: string[] } {
  return {
    set: Object.keys(after)
      .filter((key) => !Object.hasOwn(before, key) || before[key] !== after[key])
      .sort(),
    removed: Object.keys(before)
      .filter((key) => !Object.hasOwn(after, key))
      .sort(),
  }
}

/** The command that takes a host's assigned labels from `before` (those of the backup) to `after` (those the restore undoes). */
function labelCommand(hostId: string, before: Record<string, string>, after: Record<string, string>): string {
  const { set: changed, removed } = labelChanges(before, after)
  const set = changed.map((key) => labelWord(key, after[key]))
  for (const key of removed) {
    const problem = labelKeyProblem(key)
    if (problem) throw new NoCommand(`the label key ${quoted(key)} ${problem}`)
  }
  // The node comes first of the arguments, and is the node only if it has no `=`.
  if (hostId.includes('=')) throw new NoCommand(`the host ID ${quoted(hostId)} holds a =, which warrenctl nodes label reads as a label`)
  return commandLine(['warrenctl', 'nodes', 'label'], [removed.length > 0 && `--remove=${removed.join(',')}`], [hostId, ...set])
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
  /** An item, with the command that `make` returns, or none and why (`make` a string, or throwing NoCommand). */
  const add = (kind: UndoneKind, subject: string, make: (() => string) | string, id: string | null = null) => {
    let [cmd, unavailable]: [string | null, string | null] = [null, typeof make === 'string' ? make : null]
    if (typeof make === 'function') {
      try {
        cmd = make()
      } catch (error) {
        if (!(error instanceof NoCommand)) throw error
        unavailable = error.message
      }
    }
    items.push({ kind, subject, id, command: cmd, command_unavailable: unavailable })
  }
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
    if (!usersNow.has(name)) add('user_removed', name, () => commandLine(['warrenctl', 'users', 'rm'], [], [name]))
    else if (reset(name)) add('user_reset', name, () => commandLine(['warrenctl', 'users', 'reset'], [], [name]))
  }
  for (const [name, user] of usersNow) {
    if (usersThen.has(name)) continue
    const list = (value: unknown) => (Array.isArray(value) ? value.map(String) : [])
    const [logins, roles] = [list(user.logins), list(user.roles)]
    add('user_added', name, () => {
      if (logins.length === 0) throw new NoCommand('the user has no logins, and warrenctl users add needs --logins')
      return commandLine(['warrenctl', 'users', 'add'], [listFlag('logins', logins), listFlag('roles', roles)], [name])
    })
  }
  const [locksNow, locksThen] = [under(current, '/locks/'), under(then, '/locks/')]
  for (const [id, lock] of locksNow) if (!locksThen.has(id) && !ended(lock, now)) add('lock_made', lockTarget(lock), lockWithout(lock) ?? (() => lockCommand(lock, now)), id)
  for (const [id, lock] of locksThen) if (!locksNow.has(id) && !ended(lock, now)) add('lock_lifted', lockTarget(lock), () => commandLine(['warrenctl', 'lock', 'rm'], [], [id]), id)
  const [removedNow, removedThen] = [under(current, '/removed/'), under(then, '/removed/')]
  for (const [hostId, host] of removedNow)
    if (!removedThen.has(hostId)) add('host_removed', text(host.nodename), () => commandLine(['warrenctl', 'nodes', 'rm'], [], [hostId]), hostId)
  const [nodesNow, nodesThen] = [under(current, '/nodes/'), under(then, '/nodes/')]
  for (const [hostId, host] of nodesNow) {
    if (!nodesThen.has(hostId)) add('host_joined', text(host.nodename), () => commandLine(['warrenctl', 'nodes', 'add'], [valueFlag('nodename', text(host.nodename))]), hostId)
  }
  // Of the hosts known before and after: those removed or joined since are said above.
  const [assignedNow, assignedThen] = [under(current, '/assigned-labels/'), under(then, '/assigned-labels/')]
  for (const [hostId, host] of nodesThen) {
    if (!nodesNow.has(hostId)) continue
    const [before, after] = [(assignedThen.get(hostId)?.labels ?? {}) as Record<string, string>, (assignedNow.get(hostId)?.labels ?? {}) as Record<string, string>]
    const changes = labelChanges(before, after)
    if (changes.set.length + changes.removed.length > 0) add('host_labels_changed', text(host.nodename), () => labelCommand(hostId, before, after), hostId)
  }
  const [tokensNow, tokensThen] = [under(current, '/tokens/'), under(then, '/tokens/')]
  for (const [hash, token] of tokensThen) {
    if (!tokensNow.has(hash) && !ended(token, now)) add('token_used', text(token.id), () => commandLine(['warrenctl', 'tokens', 'rm'], [], [text(token.id)]))
  }
  // A sign-up token made since is its user's, added or reset since: said above.
  for (const [hash, token] of tokensNow) {
    if (!tokensThen.has(hash) && !ended(token, now) && token.user === undefined) add('token_made', text(token.id), () => tokenCommand(token, now))
  }
  const [rolesNow, rolesThen] = [under(current, '/roles/'), under(then, '/roles/')]
  for (const name of new Set([...rolesNow.keys(), ...rolesThen.keys()])) {
    if (same(rolesNow.get(name), rolesThen.get(name))) continue
    add('role_changed', name, () => {
      if (rolesNow.has(name)) return commandLine(['warrenctl', 'create'], ['-f', 'ROLE.yaml'])
      if (name === '') throw new NoCommand('the role has no name')
      return commandLine(['warrenctl', 'rm'], [], [`role/${name}`])
    })
  }
  for (const ca of ['host', 'user']) if (current.get(`/authorities/${ca}`) !== then.get(`/authorities/${ca}`)) add('ca_rotated', ca, 'restore a copy made after the rotation')
  const order = (item: UndoneItem) => UNDONE_KINDS.indexOf(item.kind)
  return items.sort((a, b) => order(a) - order(b) || (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0))
}

/** How a line names an item: a lifted lock with its ID, for `warrenctl lock rm`. */
const nameOf = (item: UndoneItem) => (item.kind === 'lock_lifted' ? `${item.subject} (${item.id})` : item.subject)

function names(list: string[], separator = ', '): string {
  const shown = list.slice(0, NAMES_SHOWN).join(separator)
  return list.length > NAMES_SHOWN ? `${shown} and ${list.length - NAMES_SHOWN} more` : shown
}

/**
 * The items as lines, one per kind, each with the command that makes them again; the CAs' line
 * names none. A line also says why no command makes an item of it again, where none does.
 */
export function undoneLines(items: readonly UndoneItem[]): string[] {
  const lines: string[] = []
  for (const kind of UNDONE_KINDS) {
    const of = items.filter((item) => item.kind === kind)
    if (of.length === 0) continue
    if (kind === 'ca_rotated') {
      lines.push(KINDS[kind])
      continue
    }
    // Names from the records, escaped: a name must not start a line of its own, nor drive the terminal.
    const name = (item: UndoneItem) => printable(nameOf(item))
    const without = of.filter((item) => item.command === null).map((item) => `no command for ${name(item)}: ${item.command_unavailable ?? 'none makes it'}`)
    lines.push(`${KINDS[kind]}: ${names(of.map(name))}${without.length > 0 ? ` (${names(without, '; ')})` : ''}`)
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
