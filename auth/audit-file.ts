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
// power cut is taken off the file's end at start, and written again whole.

import { randomBytes } from 'node:crypto'
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, rmSync } from 'node:fs'
import { open } from 'node:fs/promises'
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
const TAIL_BYTES = 2 * BATCH_BYTES
/** A write that failed (a full disk, a folder gone) is tried again after this. */
export const RETRY_MS = 5000
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

  constructor(options: AuditFileOptions) {
    this.#options = options
    this.#clock = options.clock ?? Date.now
    this.#outbox = `${OUTBOX}${outboxId(options.dataDir)}/`
    // A run's random part keeps its keys apart from another run's started at the same time by the clock.
    this.#runPrefix = `${String(this.#clock()).padStart(TIME_DIGITS, '0')}-${randomBytes(4).toString('hex')}`
  }

  /**
   * Opens the file as a start must find it: writable (else the start fails, with the file
   * named), and ending with a whole line.
   */
  open(): void {
    const { file } = this.#options
    let fd: number
    try {
      fd = openSync(file, 'a+', 0o600)
    } catch (error) {
      throw new Error(`auth_service.audit.file: cannot write ${file}: ${(error as Error).message}`)
    }
    try {
      this.#alreadyWritten = lastLineIds(fd)
    } finally {
      closeSync(fd)
    }
  }

  /** The write that files `event`'s line in the outbox, to go in the event's own transaction. */
  outboxPut(event: AuditEvent): Operation {
    const key = `${this.#outbox}${this.#runPrefix}-${String(this.#sequence++).padStart(SEQUENCE_DIGITS, '0')}`
    return { op: 'put', key, value: JSON.stringify(event) }
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
        for (const batch of batches(items)) {
          const unwritten = batch.filter((item) => !this.#alreadyWritten.has(idOf(item.value)))
          if (unwritten.length > 0) await appendSynced(this.#options.file, unwritten.map((item) => `${item.value}\n`).join(''))
          for (const item of unwritten) this.#alreadyWritten.add(idOf(item.value))
          await this.#options.backend.txn(
            [],
            batch.map((item) => ({ op: 'delete', key: item.key })),
          )
        }
      }
      // The outbox is empty: nothing it gets from now on was written before.
      this.#alreadyWritten.clear()
      if (this.#failing) this.#options.log.info('audit file written again: it has caught up', { file: this.#options.file })
      this.#failing = false
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
    if (batch.length === BATCH_LINES || (batch.length > 0 && bytes + item.value.length + 1 > BATCH_BYTES)) {
      yield batch
      batch = []
      bytes = 0
    }
    batch.push(item)
    bytes += item.value.length + 1
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
 * Appends `text` and syncs it: once this resolves, the lines survive a power cut. A write
 * that fails part way is taken off again, so the next one does not join a line cut short.
 */
async function appendSynced(file: string, text: string): Promise<void> {
  const handle = await open(file, 'a', 0o600)
  try {
    const { size } = await handle.stat()
    try {
      // writeFile writes until every byte is taken, or fails.
      await handle.writeFile(text)
      await handle.datasync()
    } catch (error) {
      await handle.truncate(size).catch(() => {})
      throw error
    }
  } finally {
    await handle.close()
  }
}

/**
 * The event IDs of the whole lines at the end of the file open as `fd`; a last line cut
 * short (a power cut in the middle of a write) is taken off, to be written again whole.
 */
function lastLineIds(fd: number): Set<string> {
  const size = fstatSync(fd).size
  const start = Math.max(0, size - TAIL_BYTES)
  const tail = Buffer.alloc(size - start)
  let read = 0
  while (read < tail.length) {
    const n = readSync(fd, tail, read, tail.length - read, start + read)
    if (n === 0) break
    read += n
  }
  const text = tail.subarray(0, read).toString('utf8')
  const end = text.lastIndexOf('\n') + 1
  if (end < text.length) {
    // Made durable by the next append's sync, which writes the file's size too.
    ftruncateSync(fd, start + Buffer.byteLength(text.slice(0, end)))
  }
  // The first line may be cut by where the read started: it is no whole line of ours.
  const lines = text
    .slice(0, end)
    .split('\n')
    .slice(start > 0 ? 1 : 0)
  return new Set(lines.map(idOf).filter((id) => id !== ''))
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
