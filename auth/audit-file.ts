// auth_service.audit.file: every event this auth server stores, also as one JSON line in a
// file, for log shippers. The line must not be lost when the server dies between the
// event's commit and the line's write, nor when power goes before the line reached the
// disk: the event's transaction also files the line in the backend, in this server's
// outbox, and a line leaves the outbox only once it is in the file and synced. A start
// writes what its last run left there, so the file catches up after a crash or after a
// time it could not be written (a full disk, a missing folder).
//
// Exactly once: a crash after the sync and before the outbox's delete leaves lines written
// that the outbox still holds; the first write of a run skips those already at the file's
// end (a batch is at most BATCH_BYTES, the end read is larger). A line cut short by a
// power cut is taken off the file's end at start, and written again whole. A file that is
// no regular file (a pipe, such as /dev/stdout in a container) cannot be synced or read
// back: lines go to it at least once.
//
// Bounded: while the file cannot be written, at most MAX_WAITING_LINES wait in the backend;
// past that, events are stored without their line (the backend keeps them all, and `audit
// ls` lists them), and the log says how many went without once the file is written again.

import { randomBytes } from 'node:crypto'
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, readFileSync, readSync, rmSync, type Stats } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../shared/files.ts'
import type { Logger } from '../shared/log.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import type { Backend, Item, Operation } from './backend/backend.ts'

const OUTBOX = '/audit/file-outbox/'
/**
 * The most a write takes from the outbox at once: one append and one sync per batch, and
 * one transaction deletes the batch (etcd allows 128 operations in one by default).
 */
const BATCH_LINES = 100
const BATCH_BYTES = 512 * 1024
/** How much of the file's end a start reads for lines already written: more than one batch. */
export const TAIL_BYTES = 2 * BATCH_BYTES
/** A write that failed (a full disk, a folder gone) is tried again after this; until then events only add lines. */
export const RETRY_MS = 5000
/**
 * Lines that may wait in the backend for a file that cannot be written: hours of a busy
 * cluster's events, and at most about 80 MiB of the backend (a node's event is stored within
 * 8 KiB), far below etcd's default 2 GiB quota, which every write of the cluster shares.
 */
export const MAX_WAITING_LINES = 10_000
const TIME_DIGITS = 15
const SEQUENCE_DIGITS = 9
/** Which outbox is this server's: kept in its data dir, so it is the same after a restart. */
const ID_FILE = 'audit-file-outbox-id'

export interface AuditFileOptions {
  backend: Backend
  file: string
  dataDir: string
  log: Logger
  clock?: () => number
  /** MAX_WAITING_LINES unless a test wants a bound it can reach. */
  maxWaitingLines?: number
}

export class AuditFile {
  readonly #options: AuditFileOptions
  readonly #clock: () => number
  readonly #outbox: string
  /** Orders this run's lines in the outbox; the run's start time orders runs. */
  #sequence = 0
  readonly #runPrefix: string
  /**
   * Lines in the file whose outbox items may still be there, by event ID: those at the
   * file's end when it opened, and a batch written whose delete failed.
   */
  #alreadyWritten = new Set<string>()
  #writing?: Promise<void>
  #again = false
  #retryTimer?: NodeJS.Timeout
  #failing = false
  #stopped = false
  /** A regular file: synced, and its end read at start. */
  #regular = true
  /** Lines in the outbox as this server counts them (its own, the only writer). */
  #waiting = 0
  /** Events stored without their line since the file last took lines. */
  #missed = 0

  constructor(options: AuditFileOptions) {
    this.#options = options
    this.#clock = options.clock ?? Date.now
    this.#outbox = `${OUTBOX}${outboxId(options.dataDir)}/`
    // A run's random part keeps its keys apart from another run's started at the same time by the clock.
    this.#runPrefix = `${String(this.#clock()).padStart(TIME_DIGITS, '0')}-${randomBytes(4).toString('hex')}`
  }

  /**
   * Opens the file as a start must find it: writable (else the start fails, with the file
   * named), and ending with a whole line; then writes what a run before left waiting.
   */
  async open(): Promise<void> {
    const { file } = this.#options
    try {
      const handle = await openForAppend(file)
      this.#regular = await handle
        .stat()
        .then((stats) => stats.isFile())
        .finally(() => handle.close())
      if (this.#regular) this.#alreadyWritten = lastLineIds(file)
    } catch (error) {
      throw new Error(`auth_service.audit.file: cannot write ${file}: ${(error as Error).message}`)
    }
    this.#waiting = (await this.#listOutbox()).length
    void this.flush()
  }

  /**
   * The write that files `event`'s line in the outbox, to go in the event's own transaction;
   * none while MAX_WAITING_LINES wait already. `filed` says once that transaction committed.
   */
  outboxPut(event: AuditEvent): Operation[] {
    const bound = this.#options.maxWaitingLines ?? MAX_WAITING_LINES
    if (this.#waiting >= bound) {
      if (this.#missed++ === 0)
        this.#options.log.warn(`audit file: ${bound} lines wait for it already; events are stored without their line until it is written again`, { file: this.#options.file })
      return []
    }
    const key = `${this.#outbox}${this.#runPrefix}-${String(this.#sequence++).padStart(SEQUENCE_DIGITS, '0')}`
    return [{ op: 'put', key, value: JSON.stringify(event) }]
  }

  /** The transaction with `outboxPut`'s write committed: a line waits, and is written soon (not while writes fail: the retry does). */
  filed(): void {
    this.#waiting++
    if (!this.#failing) void this.flush()
  }

  /** Writes what the outbox holds, soon; returns once this write (and any it follows) is done. */
  flush(): Promise<void> {
    if (this.#stopped) return Promise.resolve()
    if (this.#writing) {
      this.#again = true
      return this.#writing
    }
    this.#writing = this.#drain().finally(() => {
      this.#writing = undefined
      if (this.#again) {
        this.#again = false
        void this.flush()
      }
    })
    return this.#writing
  }

  /** Writes what the outbox holds one last time; what cannot be written waits there for the next start. */
  async stop(): Promise<void> {
    while (this.#writing) await this.#writing
    await this.flush()
    this.#stopped = true
    clearTimeout(this.#retryTimer)
  }

  /** With no audit file configured: the outbox of one configured before is dropped, with its ID. */
  static async forget(backend: Backend, dataDir: string): Promise<void> {
    const path = join(dataDir, ID_FILE)
    let id: string
    try {
      id = readFileSync(path, 'utf8').trim()
    } catch {
      return
    }
    const items = await backend.list(`${OUTBOX}${id}/`)
    for (let i = 0; i < items.length; i += BATCH_LINES) {
      await backend.txn(
        [],
        items.slice(i, i + BATCH_LINES).map((item) => ({ op: 'delete', key: item.key })),
      )
    }
    rmSync(path, { force: true })
  }

  async #drain(): Promise<void> {
    try {
      // Listed once per round, taken a batch at a time: a long outage leaves many lines.
      for (let items = await this.#listOutbox(); items.length > 0; items = await this.#listOutbox()) {
        // Counted from the backend at each round: a delete that committed but was not answered would leave the count high for good.
        this.#waiting = items.length
        for (const batch of batches(items)) {
          const unwritten = batch.filter((item) => !this.#alreadyWritten.has(idOf(item.value)))
          if (unwritten.length > 0) await append(this.#options.file, unwritten.map((item) => `${item.value}\n`).join(''), this.#regular)
          for (const item of unwritten) this.#alreadyWritten.add(idOf(item.value))
          await this.#options.backend.txn(
            [],
            batch.map((item) => ({ op: 'delete', key: item.key })),
          )
          this.#waiting = Math.max(0, this.#waiting - batch.length)
        }
      }
      // The outbox is empty: nothing it gets from now on was written before.
      this.#waiting = 0
      this.#alreadyWritten.clear()
      if (this.#failing || this.#missed > 0) this.#options.log.info('audit file written again: it has caught up', { file: this.#options.file, events_without_line: this.#missed })
      this.#failing = false
      this.#missed = 0
    } catch (error) {
      if (!this.#failing) this.#options.log.warn(`audit file not written, trying again every ${RETRY_MS / 1000}s: ${(error as Error).message}`, { file: this.#options.file })
      this.#failing = true
      clearTimeout(this.#retryTimer)
      if (this.#stopped) return
      this.#retryTimer = setTimeout(() => void this.flush(), RETRY_MS)
      this.#retryTimer.unref()
    }
  }

  #listOutbox(): Promise<Item[]> {
    return this.#options.backend.list(this.#outbox)
  }
}

/** `items` cut into batches of at most BATCH_LINES lines and (beyond a first line) BATCH_BYTES. */
function* batches(items: Item[]): Generator<Item[]> {
  let batch: Item[] = []
  let bytes = 0
  for (const item of items) {
    // Bytes as written, not characters: the end a start reads back must hold a whole batch.
    const size = Buffer.byteLength(item.value) + 1
    if (batch.length === BATCH_LINES || (batch.length > 0 && bytes + size > BATCH_BYTES)) {
      yield batch
      batch = []
      bytes = 0
    }
    batch.push(item)
    bytes += size
  }
  if (batch.length > 0) yield batch
}

/** This data dir's outbox ID, made at its first use. */
function outboxId(dataDir: string): string {
  const path = join(dataDir, ID_FILE)
  try {
    const id = readFileSync(path, 'utf8').trim()
    if (/^[0-9a-f]{16}$/.test(id)) return id
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const id = randomBytes(8).toString('hex')
  writeFileAtomic(path, `${id}\n`)
  return id
}

/**
 * Opens the file to append to it (not for reading too: a pipe opened so would be read from).
 * Every event goes into it (people, addresses, commands), so a regular file is written only
 * when it is the running user's, has no other name (a hard link), and is reached by its own
 * path: a link planted in the log folder by another user is not followed into a file of
 * root's. A link of the running user's or root's is followed (/dev/stdout is one) to
 * anything, a regular file by the same rules. A regular file is made 0600.
 */
async function openForAppend(file: string): Promise<FileHandle> {
  let handle: FileHandle
  try {
    handle = await open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOOP') throw error
    checkLink(file)
    handle = await open(file, constants.O_WRONLY | constants.O_APPEND)
  }
  try {
    if (checkOpened(file, await handle.stat())) await handle.chmod(0o600)
  } catch (error) {
    await handle.close()
    throw error
  }
  return handle
}

/** A symbolic link is followed only when it is the running user's or root's (`/dev/stdout`): another's could be pointed at any file. */
function checkLink(file: string): void {
  const link = lstatSync(file)
  if (link.uid !== process.getuid?.() && link.uid !== 0)
    throw new Error(`${file} is a symbolic link of uid ${link.uid}'s, who could point it at any file: name the file itself, or remove the link`)
}

/**
 * Throws when `stats` (of the opened file) is a file that must not take the lines: a regular
 * file, or a pipe or socket another user made (whose owner would read every event);
 * true when it is one whose mode lets others than its owner at it, to be made 0600.
 */
function checkOpened(file: string, stats: Stats): boolean {
  const me = process.getuid?.()
  if (!stats.isFile()) {
    if (me !== undefined && stats.uid !== me && stats.uid !== 0)
      throw new Error(`${file} belongs to uid ${stats.uid}, not to uid ${me} who runs this or to root: its owner could read every event`)
    return false
  }
  if (me !== undefined && stats.uid !== me)
    throw new Error(`${file} belongs to uid ${stats.uid}, not to uid ${me} who runs this: its owner could read every event; remove it, or give it to the user warren runs as`)
  if (stats.nlink > 1) throw new Error(`${file} has ${stats.nlink} names (hard links): the lines would go into a file known by another name too`)
  return (stats.mode & 0o777) !== 0o600
}

/**
 * Appends `text`, and syncs a regular file: once this resolves, the lines survive a power
 * cut. A write to a regular file that fails part way is taken off again, so the next one does
 * not join a line cut short.
 */
async function append(file: string, text: string, regular: boolean): Promise<void> {
  const handle = await openForAppend(file)
  try {
    const { size } = await handle.stat()
    try {
      // writeFile writes until every byte is taken, or fails.
      await handle.writeFile(text)
      if (regular) await handle.datasync()
    } catch (error) {
      if (regular) await handle.truncate(size).catch(() => {})
      throw error
    }
  } finally {
    await handle.close()
  }
}

/**
 * The event IDs of the whole lines at the end of `file`; a last line cut short (a power cut
 * in the middle of a write) is taken off, to be written again whole.
 */
function lastLineIds(file: string): Set<string> {
  // Through a link as openForAppend allows it (one of the running user's or root's, such as /dev/stdout to a file).
  let fd: number
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_NOFOLLOW)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOOP') throw error
    checkLink(file)
    fd = openSync(file, constants.O_RDWR)
  }
  try {
    checkOpened(file, fstatSync(fd))
    const size = fstatSync(fd).size
    const start = Math.max(0, size - TAIL_BYTES)
    const tail = Buffer.alloc(size - start)
    let read = 0
    while (read < tail.length) {
      const n = readSync(fd, tail, read, tail.length - read, start + read)
      if (n === 0) break
      read += n
    }
    // Cut at the last newline's byte: decoding first would count a character cut by where the read started as three bytes.
    const end = tail.subarray(0, read).lastIndexOf(0x0a) + 1
    // Made durable by the next append's sync, which writes the file's size too. No newline in
    // all that read: no line of ours (each is far shorter), so nothing is cut.
    if (start + end < size && (end > 0 || start === 0)) ftruncateSync(fd, start + end)
    // The first line may be cut by where the read started: it is no whole line of ours.
    const lines = tail
      .subarray(0, end)
      .toString('utf8')
      .split('\n')
      .slice(start > 0 ? 1 : 0)
    return new Set(lines.map(idOf).filter((id) => id !== ''))
  } finally {
    closeSync(fd)
  }
}

/** The event ID of a line, '' when it is not an event's. */
function idOf(line: string): string {
  try {
    const id = (JSON.parse(line) as { id?: unknown }).id
    return typeof id === 'string' ? id : ''
  } catch {
    return ''
  }
}
