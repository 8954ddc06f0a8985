// An interactive session's output as an asciicast v2 file, written while the session runs:
// a header line (version, size, start time), then one `[seconds, "o", text]` line per piece
// of output and `[seconds, "r", "COLSxROWS"]` per window change. Only output: keystrokes may
// hold passwords. The file is `<id>.cast.part` while the session runs and `<id>.cast` once it
// ended, which is when the uploader (recording-uploader.ts) takes it.
//
// Lines are written on the event loop, not through the thread pool, which would wake the
// agent once more for every echo. Output is only noted (its time and bytes) as it passes;
// decoding it, making its line and writing the file wait for the check phase of the loop turn
// that produced it (setImmediate). By then the output has left for the client (the channel's
// writes are corked until the tick ends), so none of the recording's work is on the
// keystroke's round trip, and a turn's lines leave in one write (the interactive round trip
// of `bench:copy`). What the session showed is in the kernel's hands before the agent waits
// for anything else, so a crash of the agent loses none of it.

import { close, closeSync, existsSync, fdatasync, fsync, mkdirSync, open, openSync, readdirSync, rename, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import type { Logger } from '../shared/log.ts'
import type { RecordingSkippedCode } from '../shared/protocol/audit.ts'
import { MAX_RECORDING_BYTES } from '../shared/protocol/recordings.ts'

export interface RecordingStart {
  sessionId: string
  cols: number
  rows: number
  env: { TERM?: string; SHELL?: string }
  clock?: () => number
  /** Told once the file is whole. */
  onEnd?: () => void
  /**
   * Takes room for `bytes` more of the recording from what its user's recordings may hold on
   * the node (node-recordings.ts), false when there is none: the recording stops growing.
   */
  room?: (bytes: number) => boolean
  /**
   * Told once, when the recording stops growing while the session goes on (its size bound, or
   * its user's share), with why (a code and in words) and the bytes it keeps: an audit event,
   * so that a recording cut short is never taken for a short session.
   */
  onStopped?: (why: RecordingSkipped, bytesKept: number) => void
}

/** Why a session is not recorded, or its recording stopped growing: `reason_code` and `reason` of its `recording.skipped` event. */
export interface RecordingSkipped {
  code: RecordingSkippedCode
  reason: string
}

/**
 * Where an interactive session is recorded, with the room its user's recordings have there,
 * or why it is not recorded (an audit event, `recording.skipped`).
 */
export type RecordingPlace = { dir: string; room?: (bytes: number) => boolean } | { skipped: RecordingSkipped }

/** Output or a window change as it passed, before it is made into a line. */
interface PendingEvent {
  at: number
  kind: 'o' | 'r'
  data: Buffer | string
}

export class SessionRecording {
  readonly path: string
  readonly #sessionId: string
  #fd: number | undefined
  readonly #decoder = new StringDecoder('utf8')
  readonly #started: number
  readonly #clock: () => number
  readonly #log: Logger
  readonly #onEnd?: () => void
  readonly #room?: (bytes: number) => boolean
  readonly #onStopped?: (why: RecordingSkipped, bytesKept: number) => void
  #bytes = 0
  #full = false
  #ended = false
  /** Events of this loop turn, made into lines and written together in its check phase. */
  #pending: PendingEvent[] = []

  constructor(dir: string, start: RecordingStart, log: Logger) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.path = join(dir, `${start.sessionId}.cast`)
    this.#clock = start.clock ?? Date.now
    this.#started = this.#clock()
    this.#log = log
    this.#onEnd = start.onEnd
    this.#room = start.room
    this.#onStopped = start.onStopped
    this.#sessionId = start.sessionId
    this.#fd = openSync(`${this.path}.part`, 'w', 0o600)
    const env = Object.fromEntries(Object.entries(start.env).filter(([, value]) => value))
    const header = this.#line({ version: 2, width: start.cols || 80, height: start.rows || 24, timestamp: Math.floor(this.#started / 1000), env })
    if (header) this.#write(header)
  }

  /** `data` is the session's to keep: it is read in the check phase. */
  output(data: Buffer): void {
    this.#note('o', data)
  }

  resize(cols: number, rows: number): void {
    if (cols > 0 && rows > 0) this.#note('r', `${cols}x${rows}`)
  }

  /**
   * The session ended: resolves once the file is whole, on disk and named ready to upload.
   * It is flushed to the disk (fsync) before it is renamed, so a `.cast` file survives a
   * power loss whole; the fsyncs run in the thread pool, never stalling the tunnels on a
   * slow SD card.
   */
  end(): Promise<void> {
    if (this.#ended) return Promise.resolve()
    this.#ended = true
    this.#flush()
    const rest = this.#decoder.end()
    const line = rest ? this.#line(this.#eventOf(this.#clock(), 'o', rest)) : undefined
    if (line) this.#write(line)
    const fd = this.#fd
    this.#fd = undefined
    return (fd === undefined ? Promise.resolve() : syncAndClose(fd))
      .then(() => new Promise<void>((resolve, reject) => rename(`${this.path}.part`, this.path, (error) => (error ? reject(error) : resolve()))))
      .then(() => syncDirectory(dirname(this.path)))
      .catch((error: Error) => this.#log.warn(`session recording not kept whole: ${error.message}`, { path: this.path }))
      .finally(() => this.#onEnd?.())
  }

  #note(kind: 'o' | 'r', data: Buffer | string): void {
    if (this.#ended || this.#full || this.#fd === undefined) return
    if (this.#pending.push({ at: this.#clock(), kind, data }) === 1) setImmediate(this.#flush)
  }

  #eventOf(at: number, kind: 'o' | 'r', data: string): unknown[] {
    const seconds = Math.max(0, at - this.#started) / 1000
    return [Number(seconds.toFixed(6)), kind, data]
  }

  /** `value` as a line, or undefined once the recording is full. */
  #line(value: unknown): string | undefined {
    if (this.#full || this.#fd === undefined) return undefined
    const line = `${JSON.stringify(value)}\n`
    const bytes = Buffer.byteLength(line)
    if (this.#bytes + bytes > MAX_RECORDING_BYTES) return this.#stop({ code: 'size_bound', reason: `the recording reached its bound of ${MAX_RECORDING_BYTES} bytes` })
    if (this.#room && !this.#room(bytes)) return this.#stop({ code: 'user_share', reason: "its user's recordings being written or waiting on this node hold their share" })
    this.#bytes += bytes
    return line
  }

  /** The recording grows no more: logged, and told (an audit event). */
  #stop(why: RecordingSkipped): undefined {
    this.#full = true
    this.#log.warn(`session recording stopped at ${this.#bytes} bytes: ${why.reason}; later output is not recorded`, { path: this.path, reason: why.reason })
    try {
      this.#onStopped?.(why, this.#bytes)
    } catch {
      // The audit queue's failure is its own to log; the session goes on.
    }
    return undefined
  }

  readonly #flush = (): void => {
    const events = this.#pending
    if (events.length === 0) return
    this.#pending = []
    let lines = ''
    for (const { at, kind, data } of events) {
      const text = typeof data === 'string' ? data : this.#decoder.write(data)
      const line = text ? this.#line(this.#eventOf(at, kind, text)) : undefined
      if (line) lines += line
    }
    if (lines) this.#write(lines)
  }

  #write(lines: string): void {
    if (this.#fd === undefined) return
    try {
      // Every byte, or a failure: a lone writeSync may take part of them and say so only in its count.
      writeFileSync(this.#fd, lines)
    } catch (error) {
      // A full or failing disk: the session goes on unrecorded from here.
      this.#log.warn(`session recording not written: ${(error as Error).message}`, { session_id: this.#sessionId })
      this.#close()
    }
  }

  #close(): void {
    if (this.#fd === undefined) return
    closeSync(this.#fd)
    this.#fd = undefined
  }
}

/**
 * Flushes a file's data (`datasync`) or a directory's entries to the disk, then closes it,
 * closed even when the flush fails. node:fs's callbacks, not its promises API, which an idle
 * agent would load for this alone (bench:footprint).
 */
function syncAndClose(fd: number, datasync = true): Promise<void> {
  return new Promise((resolve, reject) =>
    (datasync ? fdatasync : fsync)(fd, (syncError) =>
      close(fd, (closeError) => {
        const error = syncError ?? closeError
        if (error) reject(error)
        else resolve()
      }),
    ),
  )
}

/** Makes a rename in `dir` survive a power loss. */
function syncDirectory(dir: string): Promise<void> {
  return new Promise<number>((resolve, reject) => open(dir, 'r', (error, fd) => (error ? reject(error) : resolve(fd)))).then((fd) => syncAndClose(fd, false))
}

/** Recordings whose session was cut short by the agent stopping: what they hold is all there will be. */
export function finishInterrupted(dir: string): void {
  if (!existsSync(dir)) return
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.cast.part')) renameSync(join(dir, name), join(dir, name.slice(0, -'.part'.length)))
  }
}
