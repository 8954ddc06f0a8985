// An interactive session in the system's login records, as sshd keeps them for a session with
// a terminal: utmp while it runs (`who`, `w`), wtmp at its start and end (`last`), lastlog at
// its start (`lastlog`). The records are glibc's structs, whose layout differs between x86-64
// (which keeps 32-bit times there for its 32-bit programs) and arm64; on any other
// architecture nothing is written. As glibc does, a file that does not exist is not made: a
// system without one (a container, a distribution that moved to wtmpdb) keeps none.
//
// glibc locks utmp with fcntl while it updates it, which Node cannot: a session's slot is the
// one for its terminal, which no other process writes while the session holds the terminal,
// and a new slot is appended with O_APPEND, in one write. A file whose size is not a whole
// number of records is left alone, as one written for another layout.

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
  /** Files that failed once (no permission, another layout): not tried again, nor logged again. */
  readonly #given = new Set<string>()

  constructor(options: { files?: LoginRecordFiles; arch?: NodeJS.Architecture; log: Logger; clock?: () => number }) {
    this.#files = options.files ?? SYSTEM_LOGIN_RECORD_FILES
    this.#layout = LAYOUTS[options.arch ?? process.arch]
    this.#log = options.log
    this.#clock = options.clock ?? Date.now
  }

  /** Records the session's start; undefined when no record is kept here. */
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
    return {
      end: () => {
        const logout = utmpRecord(layout, { type: DEAD_PROCESS, user: '', host: '', pid: start.pid, line, at: this.#clock() })
        this.#append(this.#files.wtmp, layout, logout)
        this.#update(this.#files.utmp, layout, logout, line)
      },
    }
  }

  /** As glibc's pututline: the slot of the same ut_id, else a new one at the end. */
  #update(file: string, layout: RecordLayout, record: Buffer, line: string): void {
    let found = false
    this.#withFile(file, constants.O_RDWR, (fd) => {
      const size = wholeRecords(fd, layout)
      const id = lineId(line)
      const existing = Buffer.alloc(layout.utmpBytes)
      for (let at = 0; at < size; at += layout.utmpBytes) {
        if (readSync(fd, existing, 0, layout.utmpBytes, at) !== layout.utmpBytes) break
        const type = existing.readInt16LE(TYPE_AT)
        if (type < INIT_PROCESS || type > DEAD_PROCESS || !existing.subarray(ID_AT, ID_AT + ID_BYTES).equals(id)) continue
        writeSync(fd, record, 0, record.length, at)
        found = true
        return
      }
    })
    if (!found) this.#append(file, layout, record)
  }

  /** One write at the end: O_APPEND keeps two writers' records whole. */
  #append(file: string, layout: RecordLayout, record: Buffer): void {
    this.#withFile(file, constants.O_WRONLY | constants.O_APPEND, (fd) => {
      wholeRecords(fd, layout)
      writeSync(fd, record)
    })
  }

  /** lastlog is indexed by uid: the login's entry is overwritten in place (the file is sparse). */
  #lastlog(layout: RecordLayout, uid: number, line: string, host: string): void {
    this.#withFile(this.#files.lastlog, constants.O_WRONLY, (fd) => {
      const entry = Buffer.alloc(layout.lastlogBytes)
      const seconds = Math.floor(this.#clock() / 1000)
      if (layout.timeBytes === 4) entry.writeInt32LE(seconds, 0)
      else entry.writeBigInt64LE(BigInt(seconds), 0)
      putText(entry, layout.timeBytes, LINE_BYTES, line)
      putText(entry, layout.timeBytes + LINE_BYTES, HOST_BYTES, host)
      writeSync(fd, entry, 0, entry.length, uid * layout.lastlogBytes)
    })
  }

  /** Opens `file` without ever making it (no O_CREAT), and gives it up for good at its first failure. */
  #withFile(file: string, flags: number, use: (fd: number) => void): void {
    if (this.#given.has(file)) return
    let fd: number
    try {
      fd = openSync(file, flags)
    } catch (error) {
      // None kept here (ENOENT), or not ours to write (EACCES: a node that runs as one login).
      this.#given.add(file)
      this.#log.debug(`login records: ${file} is not written`, { file, error: (error as Error).message })
      return
    }
    try {
      use(fd)
    } catch (error) {
      this.#given.add(file)
      this.#log.warn(`login records: ${file} is no longer written: ${(error as Error).message}`, { file, error: (error as Error).message })
    } finally {
      closeSync(fd)
    }
  }
}

/**
 * The address as the records keep it: what the proxy said is shown by `who` and `last` at an
 * administrator's terminal, so nothing but the characters of an address or a host name.
 */
function printableHost(host: string): string {
  return host.replace(/[^\w.:%-]/g, '?')
}

/** The file's size, if it is a whole number of records; else it was written for another layout. */
function wholeRecords(fd: number, layout: RecordLayout): number {
  const { size } = fstatSync(fd)
  if (size % layout.utmpBytes !== 0) throw new Error(`its size (${size} bytes) is not a whole number of ${layout.utmpBytes}-byte records`)
  return size
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
    record.writeInt32LE(seconds, sessionAt + 4)
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
