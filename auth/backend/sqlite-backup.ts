// A copy of the embedded backend, and the backend put back from one. The file holds the
// cluster: both CAs with their private keys, the nodes, users, roles, tokens (hashed), locks
// and removals. Losing it means every device joins again, so an operator keeps copies.
//
// The copy is SQLite's `VACUUM INTO`: one read transaction, so it is whole although the auth
// server keeps writing (WAL mode lets a reader in beside the writer). Putting one back needs
// the auth server stopped: `restore` takes the data dir's lock for its run, so no auth server
// can start meanwhile. The backend it replaces is kept beside it, with its write-ahead log,
// so nothing of it is lost, and the new file takes its place in one rename: at no moment is
// there no backend, which an auth server would take for a new cluster and make new CAs for.

import { chownSync, closeSync, constants, copyFileSync, existsSync, fsyncSync, linkSync, openSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { WarrenError } from '../../shared/errors.ts'
import { authorityKey } from '../authorities.ts'

/** SQLite's write-ahead log and its index, beside the database file. */
const LOG_FILES = ['-wal', '-shm'] as const

/** What a backup holds, as read back from it. */
export interface BackupSummary {
  clusterName: string
  /** Rows of the items table: every record of the cluster. */
  items: number
}

/** Writes a copy of the backend at `source` to `target`, a file that must not exist (made 0600). */
export function backUpSqlite(source: string, target: string): BackupSummary {
  if (!existsSync(source)) throw new WarrenError(`there is no backend at ${source}: give the auth server's --config (its storage path) or --data-dir`)
  // Made first, empty and 0600, so the keys inside are never readable by others; VACUUM INTO fills an empty file.
  try {
    closeSync(openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new WarrenError(code === 'EEXIST' ? `${target} exists: give a new file` : `cannot create ${target}: ${(error as Error).message}`)
  }
  try {
    // Reading a WAL database makes its -wal and -shm files when the auth server is stopped;
    // run as root, SQLite gives them the database's owner, so an auth server that runs as a
    // user of its own can still open them (sqlite-backup.test.ts).
    const db = new DatabaseSync(source, { readOnly: true, timeout: 5000 })
    try {
      db.prepare('VACUUM INTO ?').run(target)
    } finally {
      db.close()
    }
    syncFile(target)
    return readBackup(target)
  } catch (error) {
    rmSync(target, { force: true })
    if (error instanceof WarrenError) throw error
    throw new WarrenError(`cannot back up ${source}: ${(error as Error).message}`)
  }
}

/** The cluster a backup holds; throws a WarrenError naming what is wrong when it is no backend of ours. */
export function readBackup(path: string): BackupSummary {
  let db: DatabaseSync
  try {
    db = new DatabaseSync(path, { readOnly: true })
  } catch (error) {
    throw new WarrenError(`${path} cannot be read: ${(error as Error).message}`)
  }
  try {
    // A file that is no SQLite database, or one without our table, fails here: the catch below names it.
    const value = (key: string) => (db.prepare('SELECT value FROM items WHERE key = ?').get(key) as { value: string } | undefined)?.value
    const name = value('/cluster/name')
    if (name === undefined) throw new WarrenError(`${path} is not a backup of a Warren backend (no cluster name)`)
    for (const type of ['host', 'user'] as const) {
      if (value(authorityKey(type)) === undefined) throw new WarrenError(`${path} holds no ${type} CA: it is no backup of a cluster`)
    }
    const { count } = db.prepare('SELECT COUNT(*) AS count FROM items').get() as { count: number }
    return { clusterName: JSON.parse(name) as string, items: count }
  } catch (error) {
    if (error instanceof WarrenError) throw error
    throw new WarrenError(`${path} is not a backup of a Warren backend: ${(error as Error).message}`)
  } finally {
    db.close()
  }
}

export interface Restored extends BackupSummary {
  /** Where the backend it replaced was kept, if there was one. */
  keptAs?: string
}

/**
 * Puts the backup at `backup` in place of the backend at `target`. The caller holds the data
 * dir's lock. Refused when the backend there is another cluster's. The new file gets the
 * owner of the directory it goes into: the auth server may run as a user of its own.
 */
export function restoreSqlite(backup: string, target: string, now: Date = new Date()): Restored {
  const summary = readBackup(backup)
  if (existsSync(target)) {
    let current: string | undefined
    try {
      current = readBackup(target).clusterName
    } catch {
      // A backend that cannot be read (the reason to restore) is kept aside like any other.
    }
    if (current !== undefined && current !== summary.clusterName)
      throw new WarrenError(`the backup is of cluster "${summary.clusterName}", and the backend at ${target} holds cluster "${current}": nothing was changed`)
  }
  const dir = dirname(target)
  const incoming = join(dir, `.${basename(target)}.restoring`)
  rmSync(incoming, { force: true })
  copyFileSync(backup, incoming, constants.COPYFILE_EXCL)
  try {
    const owner = statSync(dir)
    chownSync(incoming, owner.uid, owner.gid)
    syncFile(incoming)
  } catch (error) {
    rmSync(incoming, { force: true })
    throw new WarrenError(`cannot restore into ${dir}: ${(error as Error).message}`)
  }
  let keptAs: string | undefined
  if (existsSync(target)) {
    keptAs = `${target}.before-restore-${now.toISOString().replaceAll(':', '')}`
    // The old file stays where it is until the new one replaces it in one rename; its log goes with its copy.
    linkSync(target, keptAs)
    for (const suffix of LOG_FILES) {
      if (existsSync(target + suffix)) renameSync(target + suffix, keptAs + suffix)
    }
  }
  renameSync(incoming, target)
  syncFile(dir)
  return { ...summary, ...(keptAs ? { keptAs } : {}) }
}

function syncFile(path: string): void {
  const fd = openSync(path, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
