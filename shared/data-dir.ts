// The data dir holds a host's private keys, certificates and (on an auth server) the CAs'
// backend. Anyone who may write into it can replace what is there, so a data dir that
// users other than its owner may write into is refused, or made private when it is ours.

import { chmodSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { WarrenError } from './errors.ts'
import type { Logger } from './log.ts'

/** Group and others' write bits. */
const WRITABLE_BY_OTHERS = 0o022

/**
 * Checks a data dir that exists already (a missing one is created 0700 at the first write):
 * writable by others and ours → its mode becomes 0700, with a warning; writable by others
 * and someone else's → refused, naming the path, the mode and the owner.
 */
export function secureDataDir(dir: string, log: Logger): void {
  const stats = statSync(dir, { throwIfNoEntry: false })
  if (!stats) return
  if (!stats.isDirectory()) throw new WarrenError(`data dir ${dir} exists but is not a directory`)
  const mode = stats.mode & 0o7777
  if ((mode & WRITABLE_BY_OTHERS) === 0) return
  const octal = mode.toString(8).padStart(4, '0')
  if (stats.uid === process.getuid?.()) {
    chmodSync(dir, 0o700)
    log.warn(`data dir ${dir} was writable by other users (mode ${octal}); its mode is now 0700`, { path: dir, mode: octal, new_mode: '0700' })
    return
  }
  throw new WarrenError(
    `data dir ${dir} is writable by users other than its owner (mode ${octal}, owner uid ${stats.uid}), who could replace its keys; ` +
      `make it private to the user running warren: chown ${userInfo().username} ${dir} && chmod 0700 ${dir}`,
  )
}
