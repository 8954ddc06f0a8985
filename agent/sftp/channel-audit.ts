// The file operations an SFTP session performs, for the audit trail, read from the session's
// channel itself: the client's requests and the server's answers, paired by request ID. The
// SFTP server runs as the login, so what it says of itself (a log on its standard error)
// another session of the same login could write into; the channel only the agent holds.
// OpenSSH's sftp-server and Warren's own are audited alike.
//
// Only the first bytes of a packet are kept (a WRITE's or DATA's header, not its data): a
// bulk copy costs a few header reads per packet, nothing per byte.

import { posix } from 'node:path'
import { SshReader } from '../../shared/ssh-wire.ts'
import { FXP, MAX_PACKET_LENGTH, STATUS } from './protocol.ts'

export const FILE_OPERATIONS = ['open', 'read', 'write', 'remove', 'rename', 'mkdir', 'rmdir', 'setstat', 'symlink', 'link'] as const
export type FileOperationName = (typeof FILE_OPERATIONS)[number]

/** One file operation of an SFTP session. Paths are absolute on the node. */
export interface FileOperation {
  operation: FileOperationName
  path: string
  /** The new name of a rename; what a symlink or link points at. */
  target?: string
  /** Bytes read or written through one open file, counted when it is closed. */
  bytes?: number
}

/** What a WRITE's header needs: type, ID, a handle (OpenSSH's are 4 bytes, ours 16, the draft's at most 256), offset, data length. */
const WRITE_HEAD_BYTES = 1 + 4 + 4 + 256 + 8 + 4
/** A DATA answer's: type, ID, data length. */
const DATA_HEAD_BYTES = 1 + 4 + 4
/**
 * Requests the server has not answered yet. The server answers in order and stops reading
 * while its answers wait, so a well-behaved session has a few dozen; past this, the oldest
 * are forgotten (their answers then report nothing).
 */
const MAX_PENDING = 4096

type Pending = { kind: 'open'; path: string } | { kind: 'read' | 'write' | 'close' | 'fsetstat'; handle: string; bytes?: number } | { kind: 'done'; op: FileOperation }

interface OpenFile {
  path: string
  read: number
  written: number
}

export class SftpChannelAudit {
  readonly #home: string
  readonly #report: (op: FileOperation) => void
  readonly #pending = new Map<number, Pending>()
  readonly #files = new Map<string, OpenFile>()
  readonly #requests: PacketHeads
  readonly #answers: PacketHeads

  /** `home` is where the server starts, which relative paths are relative to. */
  constructor(home: string, report: (op: FileOperation) => void) {
    this.#home = home
    this.#report = report
    this.#requests = new PacketHeads(
      (type) => (type === FXP.WRITE ? WRITE_HEAD_BYTES : MAX_PACKET_LENGTH),
      (head) => this.#request(head),
    )
    this.#answers = new PacketHeads(
      (type) => (type === FXP.DATA ? DATA_HEAD_BYTES : MAX_PACKET_LENGTH),
      (head) => this.#answer(head),
    )
  }

  /** Bytes from the client to the server. */
  fromClient(chunk: Buffer): void {
    this.#requests.push(chunk)
  }

  /** Bytes from the server to the client. */
  fromServer(chunk: Buffer): void {
    this.#answers.push(chunk)
  }

  /** The session ended: what files left open moved is reported, as a close would. */
  end(): void {
    for (const file of this.#files.values()) this.#transferred(file)
    this.#files.clear()
    this.#pending.clear()
  }

  #request(head: Buffer): void {
    const type = head[0]
    if (type === FXP.INIT) return
    const body = new SshReader(head.subarray(1), 'SFTP request')
    try {
      const id = body.readUint32()
      const pending = this.#parseRequest(type, body)
      if (!pending) return
      if (this.#pending.size >= MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!)
      this.#pending.set(id, pending)
    } catch {
      // A request the server cannot read either: it answers with an error, which reports nothing.
    }
  }

  #parseRequest(type: number, body: SshReader): Pending | undefined {
    const path = () => this.#path(body)
    const handle = () => body.readString().toString('hex')
    switch (type) {
      case FXP.OPEN:
        return { kind: 'open', path: path() }
      case FXP.READ:
        return { kind: 'read', handle: handle() }
      case FXP.WRITE: {
        const written = handle()
        body.readUint64()
        return { kind: 'write', handle: written, bytes: body.readUint32() }
      }
      case FXP.CLOSE:
        return { kind: 'close', handle: handle() }
      case FXP.REMOVE:
        return { kind: 'done', op: { operation: 'remove', path: path() } }
      case FXP.MKDIR:
        return { kind: 'done', op: { operation: 'mkdir', path: path() } }
      case FXP.RMDIR:
        return { kind: 'done', op: { operation: 'rmdir', path: path() } }
      case FXP.SETSTAT:
        return { kind: 'done', op: { operation: 'setstat', path: path() } }
      case FXP.FSETSTAT:
        return { kind: 'fsetstat', handle: handle() }
      case FXP.RENAME:
        return { kind: 'done', op: { operation: 'rename', path: path(), target: path() } }
      case FXP.SYMLINK: {
        // OpenSSH sends the target first and the link second (agent/sftp/server.ts); the target is kept as given.
        const target = body.readString().toString('utf8')
        return { kind: 'done', op: { operation: 'symlink', path: path(), target } }
      }
      case FXP.EXTENDED:
        return this.#parseExtended(body.readText(), body)
      default:
        return undefined
    }
  }

  #parseExtended(name: string, body: SshReader): Pending | undefined {
    switch (name) {
      case 'posix-rename@openssh.com':
        return { kind: 'done', op: { operation: 'rename', path: this.#path(body), target: this.#path(body) } }
      case 'hardlink@openssh.com': {
        const target = this.#path(body)
        return { kind: 'done', op: { operation: 'link', path: this.#path(body), target } }
      }
      case 'lsetstat@openssh.com':
        return { kind: 'done', op: { operation: 'setstat', path: this.#path(body) } }
      default:
        return undefined
    }
  }

  #answer(head: Buffer): void {
    const body = new SshReader(head.subarray(1), 'SFTP answer')
    let id: number
    try {
      id = body.readUint32()
    } catch {
      return
    }
    const pending = this.#pending.get(id)
    if (!pending) return
    this.#pending.delete(id)
    try {
      this.#answered(pending, head[0], body)
    } catch {
      // An answer cut short: the server's bug, and nothing to report.
    }
  }

  #answered(pending: Pending, type: number, body: SshReader): void {
    const ok = type === FXP.STATUS && body.readUint32() === STATUS.OK
    switch (pending.kind) {
      case 'open':
        if (type !== FXP.HANDLE) return
        this.#files.set(body.readString().toString('hex'), { path: pending.path, read: 0, written: 0 })
        this.#report({ operation: 'open', path: pending.path })
        return
      case 'read': {
        const file = this.#files.get(pending.handle)
        if (file && type === FXP.DATA) file.read += body.readUint32()
        return
      }
      case 'write': {
        const file = this.#files.get(pending.handle)
        if (file && ok) file.written += pending.bytes ?? 0
        return
      }
      case 'close': {
        // Closed whatever the answer: the server lets go of the handle either way.
        const file = this.#files.get(pending.handle)
        if (!file) return
        this.#files.delete(pending.handle)
        this.#transferred(file)
        return
      }
      case 'fsetstat': {
        const file = this.#files.get(pending.handle)
        if (file && ok) this.#report({ operation: 'setstat', path: file.path })
        return
      }
      case 'done':
        if (ok) this.#report(pending.op)
        return
    }
  }

  #transferred(file: OpenFile): void {
    if (file.read > 0) this.#report({ operation: 'read', path: file.path, bytes: file.read })
    if (file.written > 0) this.#report({ operation: 'write', path: file.path, bytes: file.written })
  }

  /** A path as the server reads it: relative to where it started; empty is there. */
  #path(body: SshReader): string {
    return posix.resolve(this.#home, body.readString().toString('utf8') || '.')
  }
}

/**
 * Cuts a byte stream of SFTP packets (a uint32 length, then the type byte and its payload)
 * into packets, handing on the first `capOf(type)` bytes of each (from the type byte on) and
 * skipping the rest. A length out of bounds ends the reading: the server fails the session
 * on it too.
 */
class PacketHeads {
  readonly #capOf: (type: number) => number
  readonly #onPacket: (head: Buffer) => void
  readonly #length = Buffer.alloc(4)
  #lengthHave = 0
  /** The current packet's length once read; -1 while it is being read. */
  #packetLength = -1
  #head?: Buffer
  #headHave = 0
  #skip = 0
  #broken = false

  constructor(capOf: (type: number) => number, onPacket: (head: Buffer) => void) {
    this.#capOf = capOf
    this.#onPacket = onPacket
  }

  push(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length && !this.#broken) {
      if (this.#skip > 0) {
        const skipped = Math.min(this.#skip, chunk.length - at)
        this.#skip -= skipped
        at += skipped
      } else if (this.#packetLength < 0) {
        const taken = Math.min(4 - this.#lengthHave, chunk.length - at)
        chunk.copy(this.#length, this.#lengthHave, at, at + taken)
        this.#lengthHave += taken
        at += taken
        if (this.#lengthHave < 4) return
        this.#lengthHave = 0
        this.#packetLength = this.#length.readUInt32BE(0)
        this.#broken = this.#packetLength === 0 || this.#packetLength > MAX_PACKET_LENGTH
      } else {
        const want = Math.min(this.#packetLength, this.#capOf(this.#head ? this.#head[0] : chunk[at]))
        if (!this.#head && chunk.length - at >= want) {
          // All of it in this chunk: no copy.
          this.#packet(chunk.subarray(at, at + want))
          at += want
          continue
        }
        this.#head ??= Buffer.allocUnsafe(want)
        const taken = Math.min(want - this.#headHave, chunk.length - at)
        chunk.copy(this.#head, this.#headHave, at, at + taken)
        this.#headHave += taken
        at += taken
        if (this.#headHave < want) return
        const head = this.#head
        this.#head = undefined
        this.#headHave = 0
        this.#packet(head)
      }
    }
  }

  #packet(head: Buffer): void {
    this.#skip = this.#packetLength - head.length
    this.#packetLength = -1
    this.#onPacket(head)
  }
}
