// Writing secrets to disk: mode 0600, and an atomic replace (write a temporary file, fsync,
// rename, fsync the directory) so that a crash leaves either the old file or the new one.

import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): void {
  const dir = dirname(path)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const temp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(temp, 'wx', mode)
  try {
    try {
      // writeFileSync writes until every byte is taken: a lone writeSync may take part of them
      // (a file size limit, a nearly full disk) and say so only in its count.
      writeFileSync(fd, data)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(temp, path)
  } catch (error) {
    // A full disk refused it: what was written of the temporary file would hold on to the room a retry needs.
    rmSync(temp, { force: true })
    throw error
  }
  fsyncDirectory(dir)
}

/** Makes the entries of `dir` (a file or directory just created or renamed in it) survive a power loss. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
