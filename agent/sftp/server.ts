// An SFTP version 3 server over any pair of streams, for devices without OpenSSH's
// sftp-server. It runs as whoever its process runs as: the node starts it as the login
// (`warren sftp-server`, see stdio.ts), so the kernel applies that user's permissions.
// Requests are answered one at a time, in order; the input is read only as fast as they
// are, so memory stays bounded however fast the client sends.
//
// It answers what OpenSSH's sftp and scp send: the requests of draft-ietf-secsh-filexfer-02
// and the extensions named in protocol.ts.

import { once } from 'node:events'
import { constants, type Stats } from 'node:fs'
import * as fs from 'node:fs/promises'
import { join, posix } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { type SshReader, sshString, uint32, uint64 } from '../../shared/ssh-wire.ts'
import { type Attributes, encodeStats, longName, NO_ATTRIBUTES, readAttributes } from './attributes.ts'
import { HandleTable } from './handles.ts'
import { FXP, MAX_DATA_LENGTH, MAX_PACKET_LENGTH, OPEN_FLAGS, packet, readPackets, SftpStatusError, STATUS, statusOfError, statusPacket, versionPacket } from './protocol.ts'

export interface SftpServerOptions {
  /** Open files and directories at once; default 256. */
  maxHandles?: number
}

/** Names READDIR sends at most in one answer, as OpenSSH's sftp-server does. */
const NAMES_PER_READDIR = 100
const OK = new SftpStatusError(STATUS.OK)

/** Serves one SFTP session: INIT first, then requests until the input ends. */
export async function serveSftp(input: Readable, output: Writable, options: SftpServerOptions = {}): Promise<void> {
  const session = new SftpSession(options)
  const send = async (data: Buffer) => {
    if (!output.write(data)) await once(output, 'drain')
  }
  try {
    let started = false
    for await (const { type, body } of readPackets(input)) {
      if (!started) {
        if (type !== FXP.INIT) throw new Error(`SFTP session must begin with INIT, not packet type ${type}`)
        started = true
        await send(versionPacket())
        continue
      }
      const id = body.readUint32()
      let answer: Buffer
      try {
        answer = await session.handle(type, id, body)
      } catch (error) {
        answer = statusPacket(id, statusOfError(error))
      }
      await send(answer)
    }
  } finally {
    await session.end()
  }
}

/** The state of one session, and an answer for each request. */
class SftpSession {
  private readonly handles: HandleTable

  constructor(options: SftpServerOptions) {
    this.handles = new HandleTable(options.maxHandles ?? 256)
  }

  /** The answer to request `id` of `type`; a thrown error becomes a status answer. */
  async handle(type: number, id: number, body: SshReader): Promise<Buffer> {
    switch (type) {
      case FXP.OPEN:
        return this.open(id, readPath(body), body.readUint32(), readAttributes(body))
      case FXP.CLOSE:
        return this.close(id, body.readString())
      case FXP.READ:
        return this.read(id, body.readString(), body.readUint64(), body.readUint32())
      case FXP.WRITE:
        return this.write(id, body.readString(), body.readUint64(), body.readString())
      case FXP.STAT:
        return attrsPacket(id, await fs.stat(readPath(body)))
      case FXP.LSTAT:
        return attrsPacket(id, await fs.lstat(readPath(body)))
      case FXP.FSTAT:
        return attrsPacket(id, await this.handles.file(body.readString()).file.stat())
      case FXP.SETSTAT:
        return this.setstat(id, readPath(body), readAttributes(body))
      case FXP.FSETSTAT:
        return this.fsetstat(id, body.readString(), readAttributes(body))
      case FXP.OPENDIR:
        return this.opendir(id, readPath(body))
      case FXP.READDIR:
        return this.readdir(id, body.readString())
      case FXP.REMOVE:
        return this.done(id, readPath(body), (path) => fs.unlink(path))
      case FXP.MKDIR: {
        const path = readPath(body)
        const { mode } = readAttributes(body)
        return this.done(id, path, (at) => fs.mkdir(at, mode === undefined ? 0o777 : mode & 0o7777))
      }
      case FXP.RMDIR:
        return this.done(id, readPath(body), (path) => fs.rmdir(path))
      case FXP.REALPATH:
        return namePacket(id, await realPath(readPath(body)))
      case FXP.RENAME:
        return this.rename(id, readPath(body), readPath(body), false)
      case FXP.READLINK:
        return namePacket(id, await fs.readlink(readPath(body)))
      case FXP.SYMLINK: {
        // OpenSSH sends the target first and the link second, the reverse of the draft; its
        // clients are the ones that matter, so follow it.
        const target = readPath(body)
        const link = readPath(body)
        await fs.symlink(target, link)
        return statusPacket(id, OK)
      }
      case FXP.EXTENDED:
        return this.extended(id, body.readText(), body)
      default:
        throw new SftpStatusError(STATUS.OP_UNSUPPORTED)
    }
  }

  async end(): Promise<void> {
    await this.handles.closeAll()
  }

  private async open(id: number, path: string, pflags: number, attrs: Attributes): Promise<Buffer> {
    const file = await fs.open(path, openFlags(pflags), attrs.mode === undefined ? 0o666 : attrs.mode & 0o7777)
    const absolute = posix.resolve(path)
    let handle: Buffer
    try {
      handle = this.handles.add({ kind: 'file', path: absolute, file })
    } catch (error) {
      await file.close()
      throw error
    }
    return packet(FXP.HANDLE, uint32(id), sshString(handle))
  }

  private async close(id: number, handle: Buffer): Promise<Buffer> {
    const entry = this.handles.remove(handle)
    if (entry.kind === 'dir') {
      await entry.dir.close()
    } else {
      await entry.file.close()
    }
    return statusPacket(id, OK)
  }

  private async read(id: number, handle: Buffer, offset: bigint, length: number): Promise<Buffer> {
    const entry = this.handles.file(handle)
    const buffer = Buffer.allocUnsafe(Math.min(length, MAX_DATA_LENGTH))
    const { bytesRead } = await entry.file.read(buffer, 0, buffer.length, offset)
    if (bytesRead === 0) throw new SftpStatusError(STATUS.EOF)
    return packet(FXP.DATA, uint32(id), sshString(buffer.subarray(0, bytesRead)))
  }

  private async write(id: number, handle: Buffer, offset: bigint, data: Buffer): Promise<Buffer> {
    const entry = this.handles.file(handle)
    let written = 0
    while (written < data.length) {
      const { bytesWritten } = await entry.file.write(data, written, data.length - written, Number(offset) + written)
      written += bytesWritten
    }
    return statusPacket(id, OK)
  }

  private async setstat(id: number, path: string, attrs: Attributes): Promise<Buffer> {
    // As OpenSSH's sftp-server: size, then permissions, times and owner.
    if (attrs.size !== undefined) await fs.truncate(path, attrs.size)
    if (attrs.mode !== undefined) await fs.chmod(path, attrs.mode & 0o7777)
    if (attrs.atime !== undefined && attrs.mtime !== undefined) await fs.utimes(path, attrs.atime, attrs.mtime)
    if (attrs.uid !== undefined && attrs.gid !== undefined) await fs.chown(path, attrs.uid, attrs.gid)
    return statusPacket(id, OK)
  }

  private async fsetstat(id: number, handle: Buffer, attrs: Attributes): Promise<Buffer> {
    const { file } = this.handles.file(handle)
    if (attrs.size !== undefined) await file.truncate(attrs.size)
    if (attrs.mode !== undefined) await file.chmod(attrs.mode & 0o7777)
    if (attrs.atime !== undefined && attrs.mtime !== undefined) await file.utimes(attrs.atime, attrs.mtime)
    if (attrs.uid !== undefined && attrs.gid !== undefined) await file.chown(attrs.uid, attrs.gid)
    return statusPacket(id, OK)
  }

  private async opendir(id: number, path: string): Promise<Buffer> {
    const dir = await fs.opendir(path)
    let handle: Buffer
    try {
      handle = this.handles.add({ kind: 'dir', path: posix.resolve(path), dir })
    } catch (error) {
      await dir.close()
      throw error
    }
    return packet(FXP.HANDLE, uint32(id), sshString(handle))
  }

  private async readdir(id: number, handle: Buffer): Promise<Buffer> {
    const { dir, path } = this.handles.directory(handle)
    const names: Buffer[] = []
    let count = 0
    while (count < NAMES_PER_READDIR) {
      const entry = await dir.read()
      if (!entry) break
      let stats: Stats
      try {
        stats = await fs.lstat(join(path, entry.name))
      } catch {
        continue // gone since it was listed
      }
      names.push(sshString(entry.name), sshString(longName(entry.name, stats)), encodeStats(stats))
      count++
    }
    if (count === 0) throw new SftpStatusError(STATUS.EOF)
    return packet(FXP.NAME, uint32(id), uint32(count), ...names)
  }

  private async rename(id: number, from: string, to: string, replace: boolean): Promise<Buffer> {
    // SFTP v3's rename must not replace an existing file; posix-rename@openssh.com may.
    if (!replace && (await exists(to))) throw new SftpStatusError(STATUS.FAILURE, 'the new name exists')
    await fs.rename(from, to)
    return statusPacket(id, OK)
  }

  private async extended(id: number, name: string, body: SshReader): Promise<Buffer> {
    switch (name) {
      case 'posix-rename@openssh.com':
        return this.rename(id, readPath(body), readPath(body), true)
      case 'hardlink@openssh.com': {
        const target = readPath(body)
        const link = readPath(body)
        await fs.link(target, link)
        return statusPacket(id, OK)
      }
      case 'fsync@openssh.com':
        await this.handles.file(body.readString()).file.sync()
        return statusPacket(id, OK)
      case 'limits@openssh.com':
        return packet(
          FXP.EXTENDED_REPLY,
          uint32(id),
          uint64(BigInt(MAX_PACKET_LENGTH)),
          uint64(BigInt(MAX_DATA_LENGTH)),
          uint64(BigInt(MAX_DATA_LENGTH)),
          uint64(BigInt(this.handles.limit)),
        )
      default:
        throw new SftpStatusError(STATUS.OP_UNSUPPORTED)
    }
  }

  /** Answers OK after `action` on `path`. */
  private async done(id: number, path: string, action: (path: string) => Promise<unknown>): Promise<Buffer> {
    await action(path)
    return statusPacket(id, OK)
  }
}

/** A path from the client: relative ones are relative to the login's home, the process's working directory. */
function readPath(body: SshReader): string {
  const path = body.readString().toString('utf8')
  if (path.includes('\0')) throw new SftpStatusError(STATUS.BAD_MESSAGE, 'a path with a NUL byte')
  // An empty path is the working directory, as in OpenSSH's sftp-server.
  return path === '' ? '.' : path
}

/** SSH_FXF_* as open(2) flags. */
function openFlags(pflags: number): number {
  const read = (pflags & OPEN_FLAGS.READ) !== 0
  const write = (pflags & OPEN_FLAGS.WRITE) !== 0
  let flags = read && write ? constants.O_RDWR : write ? constants.O_WRONLY : constants.O_RDONLY
  if (pflags & OPEN_FLAGS.APPEND) flags |= constants.O_APPEND
  if (pflags & OPEN_FLAGS.CREAT) flags |= constants.O_CREAT
  if (pflags & OPEN_FLAGS.TRUNC) flags |= constants.O_TRUNC
  if (pflags & OPEN_FLAGS.EXCL) flags |= constants.O_EXCL
  return flags
}

/** The canonical absolute path; a name that does not exist yet is made absolute all the same. */
async function realPath(path: string): Promise<string> {
  try {
    return await fs.realpath(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return posix.resolve(path)
    throw error
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await fs.lstat(path)
    return true
  } catch {
    return false
  }
}

function attrsPacket(id: number, stats: Stats): Buffer {
  return packet(FXP.ATTRS, uint32(id), encodeStats(stats))
}

/** One name, as REALPATH and READLINK answer. */
function namePacket(id: number, name: string): Buffer {
  return packet(FXP.NAME, uint32(id), uint32(1), sshString(name), sshString(name), NO_ATTRIBUTES)
}
