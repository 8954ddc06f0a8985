// What a restore undoes: everything the cluster did after the backup was made, found by
// comparing the backend it replaces (kept beside it) with the backup, record by record. An
// operator must make again what should stand (a removal, a lock, a reset), and cannot find
// it in `audit ls` afterwards, since the audit log is restored too.

import { DatabaseSync } from 'node:sqlite'

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

function names(list: string[]): string {
  const shown = list.slice(0, NAMES_SHOWN).join(', ')
  return list.length > NAMES_SHOWN ? `${shown} and ${list.length - NAMES_SHOWN} more` : shown
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
 * Lines saying what the restore of `restored` over `replaced` undoes, each with the command
 * that makes it again; empty when nothing is. `now` (epoch ms) tells the locks and tokens
 * that have ended by then, which a restore does not bring back in force.
 */
export function undoneByRestore(replaced: string, restored: string, now = Date.now()): string[] {
  const current = readItems(replaced, now)
  const then = readItems(restored, now)
  const lines: string[] = []
  const add = (list: string[], what: string) => {
    if (list.length > 0) lines.push(`${what}: ${names(list.sort())}`)
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
  add(
    [...usersThen.keys()].filter((name) => !usersNow.has(name)),
    'users removed since are back, with their password, TOTP and certificates (warrenctl users rm NAME)',
  )
  add(
    [...usersThen.keys()].filter((name) => usersNow.has(name) && reset(name)),
    'users reset or signed up since have their earlier password, TOTP and certificates again (warrenctl users reset NAME)',
  )
  add(
    [...usersNow.keys()].filter((name) => !usersThen.has(name)),
    'users added since are gone (warrenctl users add)',
  )
  const [locksNow, locksThen] = [under(current, '/locks/'), under(then, '/locks/')]
  add(
    [...locksNow].filter(([id, lock]) => !locksThen.has(id) && !ended(lock, now)).map(([, lock]) => lockTarget(lock)),
    'locks made since are gone (warrenctl lock)',
  )
  add(
    [...locksThen].filter(([id, lock]) => !locksNow.has(id) && !ended(lock, now)).map(([id, lock]) => `${lockTarget(lock)} (${id})`),
    'locks lifted since are back (warrenctl lock rm ID)',
  )
  const [removedNow, removedThen] = [under(current, '/removed/'), under(then, '/removed/')]
  const removedSince = [...removedNow].filter(([hostId]) => !removedThen.has(hostId))
  add(
    removedSince.map(([, host]) => text(host.nodename)),
    'hosts removed since are back (warrenctl nodes rm NAME)',
  )
  const [nodesNow, nodesThen] = [under(current, '/nodes/'), under(then, '/nodes/')]
  add(
    [...nodesNow].filter(([hostId]) => !nodesThen.has(hostId)).map(([, host]) => text(host.nodename)),
    'hosts that joined since are unknown and must join again (warrenctl nodes add --nodename=NAME)',
  )
  // Of the hosts known before and after: those removed or joined since are said above.
  const [assignedNow, assignedThen] = [under(current, '/assigned-labels/'), under(then, '/assigned-labels/')]
  add(
    [...nodesThen]
      .filter(([hostId]) => nodesNow.has(hostId) && !same(assignedNow.get(hostId)?.labels ?? {}, assignedThen.get(hostId)?.labels ?? {}))
      .map(([, host]) => text(host.nodename)),
    'hosts whose assigned labels changed since have their earlier ones again (warrenctl nodes label NAME KEY=VALUE --remove=KEY)',
  )
  const [tokensNow, tokensThen] = [under(current, '/tokens/'), under(then, '/tokens/')]
  add(
    [...tokensThen].filter(([hash, token]) => !tokensNow.has(hash) && !ended(token, now)).map(([, token]) => text(token.id)),
    'tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID)',
  )
  // A sign-up token made since is its user's, added or reset since: said above.
  add(
    [...tokensNow].filter(([hash, token]) => !tokensThen.has(hash) && !ended(token, now) && token.user === undefined).map(([, token]) => text(token.id)),
    'tokens made since are gone (warrenctl tokens add, or warrenctl nodes add for a node)',
  )
  const [rolesNow, rolesThen] = [under(current, '/roles/'), under(then, '/roles/')]
  add(
    [...new Set([...rolesNow.keys(), ...rolesThen.keys()])].filter((name) => !same(rolesNow.get(name), rolesThen.get(name))),
    'roles changed since are as they were (warrenctl create -f ROLE.yaml)',
  )
  if (['/authorities/host', '/authorities/user'].some((key) => current.get(key) !== then.get(key)))
    lines.push('the CAs are as they were before a rotation made since: devices that followed it do not trust them (restore a copy made after the rotation)')
  return lines
}
