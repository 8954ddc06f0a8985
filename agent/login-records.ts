// An interactive session in the system's login records, as sshd keeps them for a session with
// a terminal: utmp while it runs (`who`, `w`), wtmp at its start and end (`last`), lastlog at
// its start (`lastlog`). The records are glibc's structs, whose layout differs between x86-64
// (which keeps 32-bit times there for its 32-bit programs) and arm64; on any other
// architecture nothing is written. As glibc does, a file that does not exist is not made: a
// system without one (a container, a distribution that moved to wtmpdb) keeps none.
//
// glibc locks utmp with fcntl while it updates it, which Node cannot: a session's slot is the
// one for its terminal, which no other process writes while the session holds the terminal,
// and a new slot is appended with O_APPEND, in one write (a writer that holds glibc's lock
// between finding the end and writing there can still land on the same new slot: one entry
// of a login starting at that instant would be lost). A file whose size is not a whole number
// of records is left alone: written for another layout, or torn.

import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs'
import { isIPv4 } from 'node:net'
import { ipToBytes } from '../shared/ip-bytes.ts'
import type { Logger } from '../shared/log.ts'

export interface LoginRecordFiles {
  utmp: string
  wtmp: string
  lastlog: string
}

/** Where glibc's _PATH_UTMP, _PATH_WTMP and _PATH_LASTLOG are. */
export const SYSTEM_LOGIN_RECORD_FILES: LoginRecordFiles = { utmp: '/var/run/utmp', wtmp: '/var/log/wtmp', lastlog: '/var/log/lastlog' }

/** Offsets in glibc's struct utmp and struct lastlog (bits/utmp.h) on one architecture. */
export interface RecordLayout {
  utmpBytes: number
  /** ut_session, then ut_tv's seconds and microseconds, each `timeBytes` wide. */
  sessionAt: number
  timeBytes: 4 | 8
  addressAt: number
  lastlogBytes: number
}

const LINE_BYTES = 32
const ID_BYTES = 4
const USER_BYTES = 32
const HOST_BYTES = 256
const TYPE_AT = 0
const PID_AT = 4
const LINE_AT = 8
const ID_AT = LINE_AT + LINE_BYTES
const USER_AT = ID_AT + ID_BYTES
const HOST_AT = USER_AT + USER_BYTES

/** ut_type values: the slots pututline reuses are those from INIT_PROCESS to DEAD_PROCESS. */
const INIT_PROCESS = 5
const USER_PROCESS = 7
const DEAD_PROCESS = 8

/** x86-64 keeps ut_session, ut_tv and ll_time 32 bits wide (__WORDSIZE_TIME64_COMPAT32); arm64 does not. */
export const LAYOUTS: Partial<Record<NodeJS.Architecture, RecordLayout>> = {
  x64: { utmpBytes: 384, sessionAt: 336, timeBytes: 4, addressAt: 348, lastlogBytes: 4 + LINE_BYTES + HOST_BYTES },
  arm64: { utmpBytes: 400, sessionAt: 336, timeBytes: 8, addressAt: 360, lastlogBytes: 8 + LINE_BYTES + HOST_BYTES },
}

export interface LoginStart {
  user: string
  uid: number
  /** The session's terminal, e.g. /dev/pts/3. */
  tty: string
  /** The session leader: the login's shell or command. */
  pid: number
  /** The client's address (an IP address), or a name. */
  host: string
}

/** A session's records, to be ended with it. */
export interface LoginRecord {
  end(): void
}

export class LoginRecords {
  readonly #files: LoginRecordFiles
  readonly #layout: RecordLayout | undefined
  readonly #log: Logger
  readonly #clock: () => number
  /** Files given up for good (not a regular file of ours, another layout, no permission): not tried again. */
  readonly #given = new Set<string>()
  /** Failures told already, by file and code: a full disk is told once, and tried again at the next session. */
  readonly #told = new Set<string>()

  constructor(options: { files?: LoginRecordFiles; arch?: NodeJS.Architecture; log: Logger; clock?: () => number }) {
    this.#files = options.files ?? SYSTEM_LOGIN_RECORD_FILES
    this.#layout = LAYOUTS[options.arch ?? process.arch]
    this.#log = options.log
    this.#clock = options.clock ?? Date.now
  }

  /** Records the session's start; undefined when no record is kept here. End it as its process exits, before its terminal is let go. */
  begin(start: LoginStart): LoginRecord | undefined {
    const layout = this.#layout
    if (!layout) return undefined
    const line = start.tty.replace(/^\/dev\//, '')
    const host = printableHost(start.host)
    const login = utmpRecord(layout, { type: USER_PROCESS, ...start, host, line, at: this.#clock() })
    // wtmp first: once `who` shows a change, `last` shows it too.
    this.#append(this.#files.wtmp, layout, login)
    this.#update(this.#files.utmp, layout, login, line)
    this.#lastlog(layout, start.uid, line, host)
    let ended = false
    return {
      end: () => {
        if (ended) return
        ended = true
        const logout = utmpRecord(layout, { type: DEAD_PROCESS, user: '', host: '', pid: start.pid, line, at: this.#clock() })
        this.#append(this.#files.wtmp, layout, logout)
        this.#update(this.#files.utmp, layout, logout, line, start.pid)
      },
    }
  }

  /**
   * As glibc's pututline: the slot of the same ut_id, else a new one at the end. A logout
   * (`ownPid`) takes only the slot its login holds: a terminal let go and taken by a new
   * session before the old one's end is recorded must keep the new session's slot.
   */
  #update(file: string, layout: RecordLayout, record: Buffer, line: string, ownPid?: number): void {
    let found = false
    this.#withFile(file, constants.O_RDWR, (fd, size) => {
      const { utmpBytes } = layout
      if (size > MAX_UTMP_BYTES) throw new GivenUp(`it holds more than ${MAX_UTMP_BYTES / utmpBytes} records`)
      const all = Buffer.alloc(size)
      const read = readSync(fd, all, 0, size, 0)
      const id = lineId(line)
      for (let at = 0; at + utmpBytes <= read; at += utmpBytes) {
        const existing = all.subarray(at, at + utmpBytes)
        const type = existing.readInt16LE(TYPE_AT)
        if (type < INIT_PROCESS || type > DEAD_PROCESS || !existing.subarray(ID_AT, ID_AT + ID_BYTES).equals(id)) continue
        if (ownPid !== undefined && (type !== USER_PROCESS || existing.readInt32LE(PID_AT) !== ownPid)) return
        writeSync(fd, record, 0, record.length, at)
        found = true
        return
      }
    })
    if (!found && ownPid === undefined) this.#append(file, layout, record)
  }

  /** One write at the end: O_APPEND keeps two writers' records whole. */
  #append(file: string, layout: RecordLayout, record: Buffer): void {
    this.#withFile(file, constants.O_WRONLY | constants.O_APPEND, (fd) => void writeSync(fd, record), layout)
  }

  /** lastlog is indexed by uid: the login's entry is overwritten in place (the file is sparse). */
  #lastlog(layout: RecordLayout, uid: number, line: string, host: string): void {
    this.#withFile(this.#files.lastlog, constants.O_WRONLY, (fd) => {
      const entry = Buffer.alloc(layout.lastlogBytes)
      const seconds = Math.floor(this.#clock() / 1000)
      if (layout.timeBytes === 4) entry.writeUInt32LE(seconds, 0)
      else entry.writeBigInt64LE(BigInt(seconds), 0)
      putText(entry, layout.timeBytes, LINE_BYTES, line)
      putText(entry, layout.timeBytes + LINE_BYTES, HOST_BYTES, host)
      writeSync(fd, entry, 0, entry.length, uid * layout.lastlogBytes)
    })
  }

  /**
   * Opens `file` as glibc would not quite: never made (no O_CREAT), never through a symlink
   * nor a FIFO (which would hold the agent until a reader came), and only a regular file owned
   * by root (or by the agent's own user): the agent runs as root, and a directory others may
   * write to must not point its writes elsewhere. `layout`: its size must be a whole number of
   * records. A file that does not exist is asked for again at the next session.
   */
  #withFile(file: string, flags: number, use: (fd: number, size: number) => void, layout?: RecordLayout): void {
    if (this.#given.has(file)) return
    let fd: number
    try {
      fd = openSync(file, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      // None kept here. Not ours to write (a node that runs as one login, a unit's read-only paths): for good.
      if (code === 'ENOENT') this.#log.debug(`login records: there is no ${file}`, { file })
      else this.#giveUp(file, (error as Error).message)
      return
    }
    try {
      const stat = fstatSync(fd)
      if (!stat.isFile()) throw new GivenUp('it is not a regular file')
      if (stat.uid !== 0 && stat.uid !== process.getuid?.()) throw new GivenUp(`it is owned by uid ${stat.uid}, not by root`)
      if (layout && stat.size % layout.utmpBytes !== 0) throw new GivenUp(`its size (${stat.size} bytes) is not a whole number of ${layout.utmpBytes}-byte records`)
      use(fd, stat.size)
    } catch (error) {
      if (error instanceof GivenUp) this.#giveUp(file, error.message)
      else this.#tell(file, error as NodeJS.ErrnoException)
    } finally {
      closeSync(fd)
    }
  }

  #giveUp(file: string, why: string): void {
    this.#given.add(file)
    this.#log.warn(`login records: ${file} is not written: ${why}`, { file, error: why })
  }

  /** A failure that may pass (a full disk): told once, and tried again at the next session. */
  #tell(file: string, error: NodeJS.ErrnoException): void {
    const key = `${file} ${error.code ?? error.message}`
    if (this.#told.has(key)) return
    this.#told.add(key)
    this.#log.warn(`login records: writing ${file} failed: ${error.message}`, { file, error: error.message })
  }
}

/** A file that is not what the records may be written into. */
class GivenUp extends Error {}

/** A larger utmp is not scanned: a few thousand terminals at most are in use at once. */
const MAX_UTMP_BYTES = 1024 * 1024

/**
 * The address as the records keep it: what the proxy said is shown by `who` and `last` at an
 * administrator's terminal, so nothing but the characters of an address or a host name.
 */
function printableHost(host: string): string {
  const mapped = host.toLowerCase().startsWith('::ffff:') && isIPv4(host.slice(7))
  return (mapped ? host.slice(7) : host).replace(/[^\w.:%-]/g, '?')
}

/** sshd's ut_id for a terminal: the last four characters of its line ("pts/3" → "ts/3"). */
function lineId(line: string): Buffer {
  const id = Buffer.alloc(ID_BYTES)
  const bytes = Buffer.from(line)
  bytes.copy(id, 0, Math.max(0, bytes.length - ID_BYTES))
  return id
}

function utmpRecord(layout: RecordLayout, fields: { type: number; user: string; host: string; pid: number; line: string; at: number }): Buffer {
  const record = Buffer.alloc(layout.utmpBytes)
  record.writeInt16LE(fields.type, TYPE_AT)
  record.writeInt32LE(fields.pid, PID_AT)
  putText(record, LINE_AT, LINE_BYTES, fields.line)
  lineId(fields.line).copy(record, ID_AT)
  putText(record, USER_AT, USER_BYTES, fields.user)
  putText(record, HOST_AT, HOST_BYTES, fields.host)
  const seconds = Math.floor(fields.at / 1000)
  const micros = (fields.at % 1000) * 1000
  const { sessionAt, timeBytes } = layout
  // ut_session: the session leader's session ID, its own pid (it called setsid).
  if (timeBytes === 4) {
    record.writeInt32LE(fields.pid, sessionAt)
    record.writeUInt32LE(seconds, sessionAt + 4)
    record.writeInt32LE(micros, sessionAt + 8)
  } else {
    record.writeBigInt64LE(BigInt(fields.pid), sessionAt)
    record.writeBigInt64LE(BigInt(seconds), sessionAt + 8)
    record.writeBigInt64LE(BigInt(micros), sessionAt + 16)
  }
  addressBytes(fields.host).copy(record, layout.addressAt)
  return record
}

/** ut_addr_v6: an IPv4 address (an IPv4-mapped one too) in its first four bytes, an IPv6 one in all sixteen; zeros for a name. */
function addressBytes(host: string): Buffer {
  const mapped = host.toLowerCase().startsWith('::ffff:') && isIPv4(host.slice(7))
  try {
    return ipToBytes(mapped ? host.slice(7) : host)
  } catch {
    return Buffer.alloc(0)
  }
}

/** A NUL-padded text field, cut to its width (the struct's fields need no terminating NUL). */
function putText(target: Buffer, at: number, width: number, text: string): void {
  Buffer.from(text).copy(target, at, 0, width)
}
