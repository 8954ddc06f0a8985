// An interactive session's output as an asciicast v2 file, written while the session runs:
// a header line (version, size, start time), then one `[seconds, "o", text]` line per piece
// of output and `[seconds, "r", "COLSxROWS"]` per window change. Only output: keystrokes may
// hold passwords. The file is `<id>.cast.part` while the session runs and `<id>.cast` once it
// ended, which is when the uploader (recording-uploader.ts) takes it.
//
// Lines are written on the event loop, not through the thread pool, which would wake the
// agent once more for every echo. They wait for the check phase of the loop turn that
// produced them (setImmediate): by then the output has left for the client (the channel's
// writes are corked until the tick ends), so the write to the file is not on the keystroke's
// round trip, and a turn's lines leave in one write (the interactive round trip of
// `bench:copy`). What the session showed is in the kernel's hands before the agent waits for
// anything else, so a crash of the agent loses none of it.

import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import type { Logger } from '../shared/log.ts'
import { MAX_RECORDING_BYTES } from '../shared/protocol/recordings.ts'

export interface RecordingStart {
  sessionId: string
  cols: number
  rows: number
  env: { TERM?: string; SHELL?: string }
  clock?: () => number
  /** Told once the file is whole. */
  onEnd?: () => void
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
  #bytes = 0
  #full = false
  #ended = false
  /** Lines of this loop turn, written together in its check phase. */
  #pending: string[] = []

  constructor(dir: string, start: RecordingStart, log: Logger) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.path = join(dir, `${start.sessionId}.cast`)
    this.#clock = start.clock ?? Date.now
    this.#started = this.#clock()
    this.#log = log
    this.#onEnd = start.onEnd
    this.#sessionId = start.sessionId
    this.#fd = openSync(`${this.path}.part`, 'w', 0o600)
    const env = Object.fromEntries(Object.entries(start.env).filter(([, value]) => value))
    this.#line({ version: 2, width: start.cols || 80, height: start.rows || 24, timestamp: Math.floor(this.#started / 1000), env })
    this.#flush()
  }

  output(data: Buffer): void {
    const text = this.#decoder.write(data)
    if (text) this.#event('o', text)
  }

  resize(cols: number, rows: number): void {
    if (cols > 0 && rows > 0) this.#event('r', `${cols}x${rows}`)
  }

  /** The session ended: the file is whole and ready to upload. */
  end(): void {
    if (this.#ended) return
    this.#ended = true
    const rest = this.#decoder.end()
    if (rest) this.#event('o', rest)
    this.#flush()
    this.#close()
    try {
      renameSync(`${this.path}.part`, this.path)
    } catch (error) {
      this.#log.warn(`session recording not kept: ${(error as Error).message}`, { path: this.path })
    }
    this.#onEnd?.()
  }

  #event(kind: 'o' | 'r', data: string): void {
    if (this.#ended) return
    const seconds = Math.max(0, this.#clock() - this.#started) / 1000
    this.#line([Number(seconds.toFixed(6)), kind, data])
  }

  #line(value: unknown): void {
    if (this.#full || this.#fd === undefined) return
    const line = `${JSON.stringify(value)}\n`
    const bytes = Buffer.byteLength(line)
    if (this.#bytes + bytes > MAX_RECORDING_BYTES) {
      this.#full = true
      this.#log.warn(`session recording reached ${MAX_RECORDING_BYTES} bytes: later output is not recorded`, { path: this.path })
      return
    }
    this.#bytes += bytes
    if (this.#pending.push(line) === 1) setImmediate(this.#flush)
  }

  readonly #flush = (): void => {
    if (this.#pending.length === 0 || this.#fd === undefined) return
    const lines = this.#pending.join('')
    this.#pending = []
    try {
      writeSync(this.#fd, lines)
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

/** Recordings whose session was cut short by the agent stopping: what they hold is all there will be. */
export function finishInterrupted(dir: string): void {
  if (!existsSync(dir)) return
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.cast.part')) renameSync(join(dir, name), join(dir, name.slice(0, -'.part'.length)))
  }
}
