// The file operations an SFTP session performs, for the audit trail, read from the session's
// channel itself: the client's requests and the server's answers. The SFTP server runs as the
// login, so what it says of itself (a log on its standard error) another session of the same
// login could write into; the channel only the agent holds. OpenSSH's sftp-server and Warren's
// own are audited alike.
//
// Both servers answer one request at a time, in order: an answer is paired with the oldest
// request not yet answered, and its ID must be that request's (the client chooses IDs, and may
// use one twice); INIT's answer is VERSION. Should the pairing ever fail (an answer of another
// ID, a request of a type not both servers answer, one the node cannot read, too much
// waiting, the session ending before its answers), every operation asked for from then on is
// reported as asked, `outcome: unknown`, rather than left out.
//
// Bounded: only the first bytes of a packet are kept (a WRITE's or DATA's header, not its
// data; paths up to PATH_MAX, as the kernel takes no longer one), so a bulk copy costs a few
// header reads per packet, and a client that sends requests faster than they are answered
// holds at most MAX_WAITING_BYTES of them here.

import { SshReader } from '../../shared/ssh-wire.ts'
import { FXP, MAX_PACKET_LENGTH, OPEN_FLAGS, STATUS } from './protocol.ts'

/** `unknown`: a request that may change files, which the node could not read (its path is `?`). */
export const FILE_OPERATIONS = ['open', 'read', 'write', 'remove', 'rename', 'mkdir', 'rmdir', 'setstat', 'symlink', 'link', 'unknown'] as const
export type FileOperationName = (typeof FILE_OPERATIONS)[number]

/** One file operation of an SFTP session. Paths are absolute on the node, as given (not normalised: `..` after a link is the kernel's to follow). */
export interface FileOperation {
  operation: FileOperationName
  path: string
  /** The new name of a rename; what a symlink or link points at. */
  target?: string
  /** Bytes read or written through one open file, counted when it is closed. */
  bytes?: number
  /** How an open opened its file, as asked: `read`, `write`, `append`, `create`, `truncate`, `exclusive`, comma-separated. */
  flags?: string
  /** `unknown`: asked for, but whether the server did it could not be told. */
  outcome?: 'unknown'
}

/** The longest path the kernel takes (PATH_MAX, with its NUL). */
const PATH_MAX = 4096
/** A handle's longest (the draft's bound; OpenSSH's are 4 bytes, ours 16). */
const HANDLE_MAX = 256
/** What a request's header needs: type, ID, an extension's name, two paths (a rename). */
const REQUEST_HEAD_BYTES = 1 + 4 + (4 + 64) + 2 * (4 + PATH_MAX)
/** A WRITE's: type, ID, handle, offset, data length. */
const WRITE_HEAD_BYTES = 1 + 4 + (4 + HANDLE_MAX) + 8 + 4
/** An answer's: type, ID, a status code or a data length; a HANDLE's, the handle. */
const ANSWER_HEAD_BYTES = 1 + 4 + 4
const HANDLE_ANSWER_HEAD_BYTES = 1 + 4 + 4 + HANDLE_MAX
/**
 * What the requests not yet answered may hold (their paths): the agent's pipe to the server
 * and the server's own buffers hold far less, so only a server that stops answering while its
 * input is read (a hostile one) gets there, and pairing is then given up.
 */
const MAX_WAITING_BYTES = 16 * 1024 * 1024
/** A waiting request's own cost, besides its paths. */
const WAITING_ENTRY_BYTES = 64
/** What each request type asks to change, when its fields cannot be read. */
const CHANGES: Record<number, FileOperationName> = {
  [FXP.OPEN]: 'open',
  [FXP.WRITE]: 'write',
  [FXP.REMOVE]: 'remove',
  [FXP.MKDIR]: 'mkdir',
  [FXP.RMDIR]: 'rmdir',
  [FXP.SETSTAT]: 'setstat',
  [FXP.FSETSTAT]: 'setstat',
  [FXP.RENAME]: 'rename',
  [FXP.SYMLINK]: 'symlink',
  [FXP.EXTENDED]: 'unknown',
}
/** Too long for the kernel: such a request cannot succeed, and is not kept. */
class PathTooLong extends Error {}
/** INIT's place among the requests waiting: its answer is VERSION, which has no ID. */
const INIT_ID = -1
/** Open files whose bytes are counted: OpenSSH's sftp-server keeps at most this many handles, with a descriptor each. */
const MAX_FILES = 1024
/** The request types both servers answer; OpenSSH's answers no other (so none is waited for). */
const ANSWERED = new Set([
  FXP.OPEN,
  FXP.CLOSE,
  FXP.READ,
  FXP.WRITE,
  FXP.LSTAT,
  FXP.FSTAT,
  FXP.SETSTAT,
  FXP.FSETSTAT,
  FXP.OPENDIR,
  FXP.READDIR,
  FXP.REMOVE,
  FXP.MKDIR,
  FXP.RMDIR,
  FXP.REALPATH,
  FXP.STAT,
  FXP.RENAME,
  FXP.READLINK,
  FXP.SYMLINK,
  FXP.EXTENDED,
] as number[])

type Pending =
  | { kind: 'open'; path: string; flags: string }
  | { kind: 'read' | 'write' | 'close' | 'fsetstat'; handle: string; bytes?: number }
  | { kind: 'copy'; handle: string; bytes?: number }
  | { kind: 'done'; op: FileOperation }

interface Waiting {
  id: number
  /** Undefined for a request that reports nothing (a stat, a listing). */
  pending?: Pending
  bytes: number
}

interface OpenFile {
  path: string
  read: number
  written: number
}

export class SftpChannelAudit {
  readonly #home: string
  readonly #report: (op: FileOperation) => void
  #waiting: Waiting[] = []
  readonly #files = new Map<string, OpenFile>()
  readonly #requests: PacketHeads
  readonly #answers: PacketHeads
  #waitingBytes = 0
  #initSeen = false
  /** Answers can no longer be paired with requests: what is asked for is reported as asked. */
  #lost = false
  /** Bytes written, while lost, through handles whose file is not known: reported at the end. */
  readonly #unknownWrites = new Map<string, number>()

  /** `home` is where the server starts, which relative paths are relative to. */
  constructor(home: string, report: (op: FileOperation) => void) {
    this.#home = home
    this.#report = report
    this.#requests = new PacketHeads(
      (type) => (type === FXP.WRITE ? WRITE_HEAD_BYTES : REQUEST_HEAD_BYTES),
      (head) => this.#request(head),
      // A length the node cannot frame by: OpenSSH may act on what follows before it ends the session.
      () => this.#unreadable(FXP.EXTENDED),
    )
    this.#answers = new PacketHeads(
      (type) => (type === FXP.HANDLE ? HANDLE_ANSWER_HEAD_BYTES : ANSWER_HEAD_BYTES),
      (head) => this.#answer(head),
      () => this.#lose(),
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

  /** The session ended: what was asked for and never answered is reported as asked, and what open files moved as a close would. */
  end(): void {
    if (this.#waiting.some((waiting) => waiting.pending)) this.#lose()
    for (const file of this.#files.values()) this.#transferred(file)
    this.#files.clear()
    for (const [handle, bytes] of this.#unknownWrites) this.#report({ operation: 'write', path: `handle:${handle}`, bytes, outcome: 'unknown' })
    this.#unknownWrites.clear()
  }

  #request(head: Buffer): void {
    const type = head[0]
    if (type === FXP.INIT && !this.#initSeen) {
      this.#initSeen = true
      if (!this.#lost) this.#waiting.push({ id: INIT_ID, bytes: WAITING_ENTRY_BYTES })
      return
    }
    // A second INIT, or a type only one server answers (OpenSSH answers none it does not know, Warren's own each).
    if (!ANSWERED.has(type)) {
      this.#lose()
      return
    }
    const body = new SshReader(head.subarray(1), 'SFTP request')
    let id: number | undefined
    let pending: Pending | undefined
    try {
      id = body.readUint32()
      pending = this.#parseRequest(type, body)
    } catch (error) {
      if (!(error instanceof PathTooLong) || id === undefined) {
        // Shorter than its fields: OpenSSH reads on into the next bytes, and may act on them.
        this.#unreadable(type)
        return
      }
    }
    if (this.#lost) {
      if (pending) this.#asked(pending)
      return
    }
    const bytes = WAITING_ENTRY_BYTES + pathBytes(pending)
    this.#waiting.push({ id, pending, bytes })
    this.#waitingBytes += bytes
    if (this.#waitingBytes > MAX_WAITING_BYTES) this.#lose()
  }

  /** A request of `type` the node cannot read: pairing is lost, and what it may have changed is reported as asked. */
  #unreadable(type: number): void {
    this.#lose()
    const operation = CHANGES[type]
    if (operation) this.#report({ operation, path: '?', outcome: 'unknown' })
  }

  #parseRequest(type: number, body: SshReader): Pending | undefined {
    const path = () => this.#path(body)
    const handle = () => this.#handle(body)
    switch (type) {
      case FXP.OPEN:
        return { kind: 'open', path: path(), flags: openFlags(body.readUint32()) }
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
        const target = nameOf(body.readString())
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
      case 'copy-data': {
        // From one open file into another, with no WRITE: the bytes go to the second (0: to the end of the first, a count not known here).
        this.#handle(body)
        body.readUint64()
        const length = Number(body.readUint64())
        const into = this.#handle(body)
        return { kind: 'copy', handle: into, ...(length > 0 && Number.isSafeInteger(length) ? { bytes: length } : {}) }
      }
      default:
        return undefined
    }
  }

  #answer(head: Buffer): void {
    const type = head[0]
    if (this.#lost) return
    let id: number
    try {
      id = type === FXP.VERSION ? INIT_ID : new SshReader(head.subarray(1), 'SFTP answer').readUint32()
    } catch {
      this.#lose()
      return
    }
    const next = this.#waiting.shift()
    if (next?.id !== id) {
      if (next) this.#waiting.unshift(next)
      this.#lose()
      return
    }
    this.#waitingBytes -= next.bytes
    if (!next.pending) return
    try {
      this.#answered(next.pending, type, new SshReader(head.subarray(5), 'SFTP answer'))
    } catch {
      // An answer cut short: the server's bug, and nothing to report.
    }
  }

  #answered(pending: Pending, type: number, body: SshReader): void {
    const ok = type === FXP.STATUS && body.readUint32() === STATUS.OK
    switch (pending.kind) {
      case 'open': {
        if (type !== FXP.HANDLE) return
        this.#report({ operation: 'open', path: pending.path, flags: pending.flags })
        const handle = body.readString()
        if (handle.length <= HANDLE_MAX && this.#files.size < MAX_FILES) this.#files.set(handle.toString('hex'), { path: pending.path, read: 0, written: 0 })
        return
      }
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
      case 'copy': {
        const file = this.#files.get(pending.handle)
        if (file && ok) this.#report({ operation: 'write', path: file.path, ...(pending.bytes === undefined ? {} : { bytes: pending.bytes }) })
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

  /** Pairing is lost: every request waiting, and every one from now on, is reported as asked. */
  #lose(): void {
    this.#lost = true
    for (const { pending } of this.#waiting) if (pending) this.#asked(pending)
    this.#waiting = []
    this.#waitingBytes = 0
  }

  /** An operation asked for, whose outcome is not known. Writes count toward their file, reported when it closes or the session ends. */
  #asked(pending: Pending): void {
    switch (pending.kind) {
      case 'open':
        this.#report({ operation: 'open', path: pending.path, outcome: 'unknown' })
        return
      case 'write':
      case 'copy': {
        const file = this.#files.get(pending.handle)
        if (file) file.written += pending.bytes ?? 0
        else if (this.#unknownWrites.has(pending.handle) || this.#unknownWrites.size < MAX_FILES)
          this.#unknownWrites.set(pending.handle, (this.#unknownWrites.get(pending.handle) ?? 0) + (pending.bytes ?? 0))
        return
      }
      case 'fsetstat':
        this.#report({ operation: 'setstat', path: this.#files.get(pending.handle)?.path ?? `handle:${pending.handle}`, outcome: 'unknown' })
        return
      case 'done':
        this.#report({ ...pending.op, outcome: 'unknown' })
        return
      default:
        return
    }
  }

  #transferred(file: OpenFile): void {
    const outcome = this.#lost ? { outcome: 'unknown' as const } : {}
    if (file.read > 0) this.#report({ operation: 'read', path: file.path, bytes: file.read, ...outcome })
    if (file.written > 0) this.#report({ operation: 'write', path: file.path, bytes: file.written, ...outcome })
  }

  /** A path as the server reads it: relative to where it started; empty is there. Not normalised: the kernel follows `..` after a link, text does not. */
  #path(body: SshReader): string {
    // Judged by its length before it is read: only its first bytes are kept.
    if (body.buffer.length - body.offset >= 4 && body.buffer.readUInt32BE(body.offset) >= PATH_MAX) throw new PathTooLong('a path longer than the kernel takes')
    const raw = body.readString()
    const path = nameOf(raw)
    if (path.startsWith('/')) return path
    return path === '' || path === '.' ? this.#home : `${this.#home.replace(/\/$/, '')}/${path}`
  }

  #handle(body: SshReader): string {
    const handle = body.readString()
    if (handle.length > HANDLE_MAX) throw new Error('a handle longer than any server gives')
    return handle.toString('hex')
  }
}

/** A name as bytes: UTF-8 as it is, a backslash doubled, other bytes written \\xNN, so that two names never read alike. */
function nameOf(raw: Buffer): string {
  const text = raw.toString('utf8')
  if (Buffer.from(text, 'utf8').equals(raw)) return text.replaceAll('\\', '\\\\')
  let out = ''
  for (const byte of raw) out += byte === 0x5c ? '\\\\' : byte < 0x80 ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`
  return out
}

/** What a request's paths hold: what waiting on its answer costs. */
function pathBytes(pending: Pending | undefined): number {
  if (pending?.kind === 'open') return pending.path.length
  if (pending?.kind === 'done') return pending.op.path.length + (pending.op.target?.length ?? 0)
  return 0
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
  readonly #onBroken: () => void
  readonly #length = Buffer.alloc(4)
  #lengthHave = 0
  /** The current packet's length once read; -1 while it is being read. */
  #packetLength = -1
  #head?: Buffer
  #headHave = 0
  #skip = 0
  #broken = false

  constructor(capOf: (type: number) => number, onPacket: (head: Buffer) => void, onBroken: () => void) {
    this.#capOf = capOf
    this.#onPacket = onPacket
    this.#onBroken = onBroken
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
        if (this.#broken) this.#onBroken()
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

/** The words for an open's SSH_FXF_* flags; a bit no draft-03 server knows is named by its value. */
function openFlags(bits: number): string {
  const names: [number, string][] = [
    [OPEN_FLAGS.READ, 'read'],
    [OPEN_FLAGS.WRITE, 'write'],
    [OPEN_FLAGS.APPEND, 'append'],
    [OPEN_FLAGS.CREAT, 'create'],
    [OPEN_FLAGS.TRUNC, 'truncate'],
    [OPEN_FLAGS.EXCL, 'exclusive'],
  ]
  const words = names.filter(([bit]) => (bits & bit) !== 0).map(([, name]) => name)
  const known = names.reduce((all, [bit]) => all | bit, 0)
  const rest = (bits & ~known) >>> 0
  if (rest !== 0) words.push(`0x${rest.toString(16)}`)
  return words.join(',')
}
