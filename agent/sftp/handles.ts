// The open files and directories of one SFTP session, by the opaque handle strings the
// client holds. Bounded: a client cannot make the server hold every file descriptor.

import type { Dir } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { SftpStatusError, STATUS } from './protocol.ts'

export interface OpenFile {
  kind: 'file'
  /** Absolute. */
  path: string
  file: FileHandle
}

export interface OpenDirectory {
  kind: 'dir'
  path: string
  dir: Dir
}

type Open = OpenFile | OpenDirectory

export class HandleTable {
  /** How many handles may be open at once; OpenSSH's sftp sizes its request pipeline by it. */
  readonly limit: number
  private readonly open = new Map<string, Open>()
  private next = 0

  constructor(limit: number) {
    this.limit = limit
  }

  /** A new handle for `entry`; refused when the session holds `limit` already. */
  add(entry: Open): Buffer {
    if (this.open.size >= this.limit) throw new SftpStatusError(STATUS.FAILURE, `too many open handles (at most ${this.limit})`)
    // A counter, never reused: a stale handle cannot name a file opened later.
    const handle = Buffer.alloc(4)
    handle.writeUInt32BE(this.next++ % 0x100000000)
    this.open.set(handle.toString('hex'), entry)
    return handle
  }

  file(handle: Buffer): OpenFile {
    const entry = this.open.get(handle.toString('hex'))
    if (entry?.kind !== 'file') throw new SftpStatusError(STATUS.FAILURE, 'invalid handle')
    return entry
  }

  directory(handle: Buffer): OpenDirectory {
    const entry = this.open.get(handle.toString('hex'))
    if (entry?.kind !== 'dir') throw new SftpStatusError(STATUS.FAILURE, 'invalid handle')
    return entry
  }

  /** Forgets the handle and gives back what it held, for closing. */
  remove(handle: Buffer): Open {
    const key = handle.toString('hex')
    const entry = this.open.get(key)
    if (!entry) throw new SftpStatusError(STATUS.FAILURE, 'invalid handle')
    this.open.delete(key)
    return entry
  }

  /** Closes everything still open, when the session ends; gives back the files it closed. */
  async closeAll(): Promise<OpenFile[]> {
    const all = [...this.open.values()]
    this.open.clear()
    await Promise.allSettled(all.map((entry) => (entry.kind === 'file' ? entry.file.close() : entry.dir.close())))
    return all.filter((entry) => entry.kind === 'file')
  }
}
