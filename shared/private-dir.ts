// A directory that holds keys (a host's data dir, a user's credentials) is only as private as
// the path to it: whoever may write into it can replace its files, and whoever may write into
// a directory above it can rename it away and put one of their own in its place. So it and
// every directory above it must belong to the running user or root, and only their owner may
// write into them; a directory above may be writable by everyone when it has the sticky bit
// (/tmp), where nobody may rename another's entry. OpenSSH judges authorized_keys much the same way.

import { chmodSync, realpathSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { dirname, resolve } from 'node:path'
import { WarrenError } from './errors.ts'

/** Group and others' write bits. */
const WRITABLE_BY_OTHERS = 0o022
/** In a directory with it, only an entry's owner (or the directory's, or root) may rename or remove it. */
const STICKY = 0o1000

export interface PrivateDirRules {
  /** How messages name the directory: "data dir", "credentials dir". */
  what: string
  /** What someone else who may write into it could do, for messages: "replace its keys". */
  harm: string
  /**
   * When given, a directory of the running user's that others may write into is made 0700 and
   * this is told its old mode; else it is refused, as when its files are about to be trusted.
   */
  madePrivate?: (oldMode: string) => void
}

/**
 * Throws a WarrenError naming the problem and its fix when users other than the running one
 * (and root) could change what `dir` holds. A missing `dir` passes when the directories it
 * would be made in are safe; it is for the caller to make it 0700.
 */
export function checkPrivateDir(dir: string, rules: PrivateDirRules): void {
  const me = process.getuid?.()
  // Without POSIX owners (Windows) there is nothing to judge.
  if (me === undefined) return
  const path = resolve(dir)
  if (statSync(path, { throwIfNoEntry: false })) {
    // A symlink's target is what gets read and written.
    const real = realpathSync(path)
    checkDir(dir, real, me, rules)
    checkAncestors(dir, dirname(real), me, rules)
    return
  }
  let existing = dirname(path)
  while (!statSync(existing, { throwIfNoEntry: false })) existing = dirname(existing)
  checkAncestors(dir, realpathSync(existing), me, rules)
}

function checkDir(dir: string, real: string, me: number, rules: PrivateDirRules): void {
  const { what, harm } = rules
  const stats = statSync(real)
  if (!stats.isDirectory()) throw new WarrenError(`${what} ${dir} exists but is not a directory`)
  const mode = octal(stats.mode)
  const ours = stats.uid === me
  if ((stats.mode & WRITABLE_BY_OTHERS) !== 0) {
    if (ours && rules.madePrivate) {
      chmodSync(real, 0o700)
      rules.madePrivate(mode)
      return
    }
    throw new WarrenError(
      `${what} ${dir} is writable by users other than its owner (mode ${mode}, owner uid ${stats.uid}), who could ${harm}; ` +
        (ours ? `check what it holds, then make it private: chmod 0700 ${dir}` : `make it private to ${accountName(me)}: ${makeOurs(me, dir)}`),
    )
  }
  if (!ours && stats.uid !== 0) {
    throw new WarrenError(
      `${what} ${dir} belongs to uid ${stats.uid}, not to ${trustedOwners(me)}: its owner could ${harm}; ` +
        `make it ${accountName(me)}'s (${makeOurs(me, dir)}) or use a directory of your own`,
    )
  }
}

/** `from` and every directory above it, which `dir` is under. */
function checkAncestors(dir: string, from: string, me: number, rules: PrivateDirRules): void {
  const { what } = rules
  for (let parent = from; ; parent = dirname(parent)) {
    const stats = statSync(parent)
    if (stats.uid !== me && stats.uid !== 0) {
      throw new WarrenError(
        `${what} ${dir} is under ${parent}, which belongs to uid ${stats.uid}, not to ${trustedOwners(me)}: its owner could move the ${what} away and put one of their own in its place; ` +
          `keep the ${what} under directories that belong to ${me === 0 ? 'root' : `${accountName(me)} or root`}`,
      )
    }
    if ((stats.mode & WRITABLE_BY_OTHERS) !== 0 && (stats.mode & STICKY) === 0) {
      throw new WarrenError(
        `${what} ${dir} is under ${parent}, which users other than its owner may write into (mode ${octal(stats.mode)}, no sticky bit): they could move the ${what} away and put one of their own in its place; ` +
          `chmod go-w ${parent} (or chmod +t ${parent}, as /tmp), or keep the ${what} elsewhere`,
      )
    }
    if (dirname(parent) === parent) return
  }
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0')
}

/** The running user's name, or its uid where no account names it (a container's): chown takes either. */
function accountName(me: number): string {
  try {
    return userInfo().username
  } catch {
    return String(me)
  }
}

/** Who may own the directory and those above it, for messages. */
function trustedOwners(me: number): string {
  return me === 0 ? 'root, who runs this' : `${accountName(me)} (uid ${me}), who runs this, nor to root`
}

function makeOurs(me: number, dir: string): string {
  return `${me === 0 ? '' : 'as root, '}chown ${accountName(me)} ${dir} && chmod 0700 ${dir}`
}
