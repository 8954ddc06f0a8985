// What a restore undoes: everything the cluster did after the backup was made, found by
// comparing the backend it replaces (kept beside it) with the backup, record by record. An
// operator must make again what should stand (a removal, a lock, a reset), and cannot find
// it in `audit ls` afterwards, since the audit log is restored too.

import { DatabaseSync } from 'node:sqlite'

/** Names shown per line; the rest are counted. */
const NAMES_SHOWN = 20

type Items = Map<string, string>

function readItems(path: string): Items {
  const db = new DatabaseSync(path, { readOnly: true })
  try {
    const rows = db.prepare("SELECT key, value FROM items WHERE key NOT LIKE '/presence/%' AND key NOT LIKE '/audit/%'").all() as { key: string; value: string }[]
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

/**
 * Lines saying what the restore of `restored` over `replaced` undoes, each with the command
 * that makes it again; empty when nothing is.
 */
export function undoneByRestore(replaced: string, restored: string): string[] {
  const now = readItems(replaced)
  const then = readItems(restored)
  const lines: string[] = []
  const add = (list: string[], what: string) => {
    if (list.length > 0) lines.push(`${what}: ${names(list.sort())}`)
  }
  const [usersNow, usersThen] = [under(now, '/users/'), under(then, '/users/')]
  const [credentialsNow, credentialsThen] = [under(now, '/credentials/'), under(then, '/credentials/')]
  add(
    [...usersThen.keys()].filter((name) => !usersNow.has(name)),
    'users removed since are back, with their password, TOTP and certificates (warrenctl users rm NAME)',
  )
  add(
    [...usersThen.keys()].filter(
      (name) =>
        usersNow.has(name) &&
        (usersNow.get(name)!.generation !== usersThen.get(name)!.generation || JSON.stringify(credentialsNow.get(name)) !== JSON.stringify(credentialsThen.get(name))),
    ),
    'users reset or signed up since have their earlier password, TOTP and certificates again (warrenctl users reset NAME)',
  )
  add(
    [...usersNow.keys()].filter((name) => !usersThen.has(name)),
    'users added since are gone (warrenctl users add)',
  )
  const [locksNow, locksThen] = [under(now, '/locks/'), under(then, '/locks/')]
  add(
    [...locksNow].filter(([id]) => !locksThen.has(id)).map(([, lock]) => lockTarget(lock)),
    'locks made since are gone (warrenctl lock)',
  )
  const [removedNow, removedThen] = [under(now, '/removed/'), under(then, '/removed/')]
  const removedSince = [...removedNow].filter(([hostId]) => !removedThen.has(hostId))
  add(
    removedSince.map(([, host]) => text(host.nodename)),
    'hosts removed since are back (warrenctl nodes rm NAME)',
  )
  const [nodesNow, nodesThen] = [under(now, '/nodes/'), under(then, '/nodes/')]
  add(
    [...nodesNow].filter(([hostId]) => !nodesThen.has(hostId)).map(([, host]) => text(host.nodename)),
    'hosts that joined since are unknown and must join again (warrenctl nodes add --nodename=NAME)',
  )
  const [tokensNow, tokensThen] = [under(now, '/tokens/'), under(then, '/tokens/')]
  add(
    [...tokensThen].filter(([hash]) => !tokensNow.has(hash)).map(([, token]) => text(token.id)),
    'tokens used up or deleted since are valid again until they expire (warrenctl tokens rm ID)',
  )
  const [rolesNow, rolesThen] = [under(now, '/roles/'), under(then, '/roles/')]
  add(
    [...new Set([...rolesNow.keys(), ...rolesThen.keys()])].filter((name) => JSON.stringify(rolesNow.get(name)) !== JSON.stringify(rolesThen.get(name))),
    'roles changed since are as they were (warrenctl create -f ROLE.yaml)',
  )
  if (['/authorities/host', '/authorities/user'].some((key) => now.get(key) !== then.get(key)))
    lines.push('the CAs are as they were before a rotation made since: devices that followed it do not trust them (restore a copy made after the rotation)')
  return lines
}
