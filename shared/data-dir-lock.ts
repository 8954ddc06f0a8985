// One process per data dir: two processes sharing one identity would each replace the
// other's tunnels without end. `warren start` holds <data dir>/warren.lock for its
// lifetime. The lock names its holder by PID, the process's start time and the boot it
// runs in, so a lock whose process died (even by SIGKILL), or whose PID now belongs to
// another process, is known to be stale and is taken over. Node has no flock(), so the
// lock is a symbolic link whose target is that name: symlink() creates it in one step (it
// fails if it exists), and it is replaced only by the one process that created the guard
// named after the stale content, so of two processes starting at once exactly one wins. A
// target this short lives in the inode itself (ext4, XFS, tmpfs), so a node restarted on
// a full filesystem still takes its lock and comes back (test/full-disk.test.ts); a lock
// file of a previous version (JSON in a regular file) is read, and replaced when stale.
// The lock lives in the data dir itself, the one place every warren process on the host
// sees (systemd gives a service its own /tmp, and only the data dir is writable under
// ProtectSystem=strict).

import { createHash } from 'node:crypto'
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { WarrenError } from './errors.ts'

export const LOCK_FILE = 'warren.lock'

/** What the lock file holds: enough to tell its process from any other, now or after a reboot. */
export interface LockHolder {
  pid: number
  /** Field 22 of /proc/PID/stat: clock ticks from boot to the process's start; execve keeps it. */
  start_time: string
  /** /proc/sys/kernel/random/boot_id without its dashes: PIDs and start times begin again at every boot. */
  boot_id: string
}

/** The lock's target: `PID.START_TIME.BOOT_ID`, at most 51 characters (under ext4's 60 for a symlink kept in its inode). */
function encode(holder: LockHolder): string {
  return `${holder.pid}.${holder.start_time}.${holder.boot_id}`
}

/** The holder a lock's target (or a previous version's JSON file) names; undefined for anything else. */
export function parseHolder(content: string): LockHolder | undefined {
  const compact = /^(\d+)\.(\d*)\.([0-9a-f]*)$/.exec(content)
  if (compact) return { pid: Number(compact[1]), start_time: compact[2], boot_id: compact[3] }
  try {
    const holder = JSON.parse(content)
    if (Number.isInteger(holder?.pid) && typeof holder.start_time === 'string' && typeof holder.boot_id === 'string')
      return { pid: holder.pid, start_time: holder.start_time, boot_id: holder.boot_id.replaceAll('-', '') }
  } catch {}
  return undefined
}

/** Who holds the lock of `dir` as it stands, or undefined (none, or not a lock any holder wrote). */
export function lockHolder(dir: string): LockHolder | undefined {
  const content = read(join(dir, LOCK_FILE))
  return content === undefined ? undefined : parseHolder(content)
}

/** Rounds of "create, or read and take over" before giving up on a lock that keeps changing. */
const MAX_ATTEMPTS = 10

/**
 * Locks `dir` (created 0700 if missing) for this process until it exits, or throws
 * `data dir DIR is in use by process PID`. A lock that names this very process is kept:
 * a node continues in a fresh image of itself (execve: same PID and start time).
 */
export function lockDataDir(dir: string): void {
  const path = join(dir, LOCK_FILE)
  const me = encode(self())
  let created: string | undefined
  let holder: LockHolder | undefined
  try {
    created = mkdirSync(dir, { recursive: true, mode: 0o700 })
    holder = claim(path, me)
  } catch (error) {
    removeCreated(dir, created)
    throw error instanceof WarrenError ? error : new WarrenError(`cannot lock data dir ${dir}: ${(error as Error).message}`)
  }
  if (holder) {
    removeCreated(dir, created)
    throw new WarrenError(`data dir ${dir} is in use by process ${holder.pid}`)
  }
  removeGuards(dir)
  process.once('exit', () => {
    try {
      if (read(path) === me) unlinkSync(path)
    } catch {}
    removeCreated(dir, created)
  })
}

/** Makes `path` hold `me`, unless a live process holds it: then returns that process. */
function claim(path: string, me: string): LockHolder | undefined {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (create(path, me)) return undefined
    const content = read(path)
    if (content === undefined) continue // released meanwhile
    const holder = parseHolder(content)
    if (holder && isSelf(holder)) return undefined
    if (holder && isRunning(holder)) return holder
    // Stale: whoever creates the guard named after this content replaces it; a racer that
    // holds the guard is about to hold the lock, and is named as its holder.
    const guard = `${path}.${createHash('sha256').update(content).digest('hex').slice(0, 16)}`
    const racer = claim(guard, me)
    if (racer) {
      // The guard's holder takes the lock, unless one before it already did (and let go of the
      // guard): then the lock names that one, who holds it.
      const now = read(path)
      const current = now !== undefined && now !== content ? parseHolder(now) : undefined
      return current && isRunning(current) ? current : racer
    }
    try {
      if (read(path) === content) {
        replace(path, me)
        return undefined
      }
    } finally {
      unlinkQuietly(guard)
    }
  }
  throw new WarrenError(`cannot lock data dir ${dirname(path)}: ${path} keeps changing`)
}

/** Creates `path` pointing at `content` in one step (symlink fails if it exists); false if it exists. */
function create(path: string, content: string): boolean {
  try {
    symlinkSync(content, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}

/** Puts a link to `content` in place of `path` in one step: beside it, named by our PID (no running process shares it), then renamed. */
function replace(path: string, content: string): void {
  const temp = join(dirname(path), `.${LOCK_FILE}.${process.pid}.tmp`)
  unlinkQuietly(temp)
  symlinkSync(content, temp)
  renameSync(temp, path)
}

/** The lock's target; a previous version's lock is a regular file, whose content is read instead. */
function read(path: string): string | undefined {
  try {
    return lstatSync(path).isSymbolicLink() ? readlinkSync(path, 'utf8') : readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

function self(): LockHolder {
  return { pid: process.pid, start_time: processStat(process.pid)?.startTime ?? '', boot_id: bootId() }
}

function isSelf(holder: LockHolder): boolean {
  const me = self()
  return holder.pid === me.pid && holder.start_time === me.start_time && holder.boot_id === me.boot_id
}

/** Whether the process the lock names still runs: same boot, and its PID has not been reused. */
function isRunning(holder: LockHolder): boolean {
  if (holder.boot_id !== bootId()) return false
  const stat = processStat(holder.pid)
  // A zombie has died: it holds nothing but its exit status.
  if (stat) return stat.state !== 'Z' && stat.state !== 'X' && stat.startTime === holder.start_time
  // No /proc entry: either no such process, or /proc hides other users' processes
  // (hidepid, systemd's ProtectProc=invisible). kill(0) still tells which.
  try {
    process.kill(holder.pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function processStat(pid: number): { state: string; startTime: string } | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0], startTime: fields[19] }
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replaceAll('-', '')
  } catch {
    return ''
  }
}

/** Guards left by a process that died while taking a stale lock over; the lock is ours now. */
function removeGuards(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (name.startsWith(`${LOCK_FILE}.`)) unlinkQuietly(join(dir, name))
  }
}

/** Removes the directories that lockDataDir created, if nothing else was written into them. */
function removeCreated(dir: string, created: string | undefined): void {
  if (!created) return
  for (let path = dir; ; path = dirname(path)) {
    try {
      rmdirSync(path)
    } catch {
      return
    }
    if (path === created) return
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch {}
}
