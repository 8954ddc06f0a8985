// A session's output: frames written to the connection corked for the rest of the tick, so
// the frames one tick produces leave in a single writev; backpressure from the connection
// ('drain'), and a deadline for a connection that stops taking bytes.

import type { Duplex } from 'node:stream'
import { YamuxError } from './const.ts'
import { encodeHeader } from './frame.ts'

/**
 * Unsent output at which data frames wait for 'drain'. The connection's own mark (64 KiB)
 * is less than one burst of frames: a TLS socket counts a write as unsent until its
 * callback, a loop turn after the bytes went to the kernel, so stopping there idled the
 * tunnel for a turn every few frames (`bench:ssh`, warren-port-listen and warren-ssh-fdpass).
 */
const WRITE_BACKLOG_BYTES = 1024 * 1024

/**
 * Unsent output beyond which the session stops reading the connection until it drains.
 * Data frames already wait for 'drain' at WRITE_BACKLOG_BYTES, so only replies (pings,
 * window updates) can pile up past it: a peer that floods pings without reading our answers
 * must not grow our memory.
 */
const READ_PAUSE_OUTPUT_BYTES = 2 * WRITE_BACKLOG_BYTES

/**
 * Frames written since the connection last refused a write, beyond which the session stops
 * reading too. Each queued write costs a few hundred bytes besides its own: 2 MiB of 12-byte
 * ping answers is 175,000 writes, some 60 MB, where 4,096 cost about 1 MB. Only replies
 * (pings, window updates) come in such numbers: data frames wait for 'drain' long before.
 */
const READ_PAUSE_OUTPUT_FRAMES = 4096

export class FrameWriter {
  readonly #conn: Duplex
  readonly #timeoutMs: number
  readonly #stuck: (err: YamuxError) => void
  #corked = false
  /** A write was refused (the connection is past its own mark): 'drain' is due. */
  #behind = false
  #blocked = false
  #pausedForOutput = false
  /** Frames written while behind (since the first refused write). */
  #framesBehind = 0
  #drainWaiters: (() => void)[] = []
  #timer: NodeJS.Timeout | null = null

  /** `stuck` is called when a write has made no progress for `timeoutMs`. */
  constructor(conn: Duplex, timeoutMs: number, stuck: (err: YamuxError) => void) {
    this.#conn = conn
    this.#timeoutMs = timeoutMs
    this.#stuck = stuck
    conn.on('drain', this.#onDrain)
  }

  /** The connection holds WRITE_BACKLOG_BYTES unsent: data waits for 'drain'. */
  get blocked(): boolean {
    return this.#blocked
  }

  /** Writes one frame; payload buffers are written as they are, never copied. */
  write(type: number, flags: number, streamId: number, length: number, body?: Buffer | Buffer[]): void {
    const conn = this.#conn
    if (conn.writableEnded || conn.destroyed) return
    if (!this.#corked) {
      this.#corked = true
      conn.cork()
      process.nextTick(this.uncork)
    }
    let ok = conn.write(encodeHeader(type, flags, streamId, length))
    if (body !== undefined) {
      if (Array.isArray(body)) for (const part of body) ok = conn.write(part)
      else ok = conn.write(body)
    }
    if (this.#behind) this.#framesBehind++
    if (!ok && !this.#behind) {
      // The deadline runs from the first refused write, however little is queued.
      this.#behind = true
      this.#timer = setTimeout(() => this.#stuck(new YamuxError('ERR_YAMUX_WRITE_TIMEOUT', `no progress for ${this.#timeoutMs} ms`)), this.#timeoutMs)
      this.#timer.unref()
    }
    if (this.#behind && conn.writableLength >= WRITE_BACKLOG_BYTES) this.#blocked = true
  }

  /** Runs `fn` once the connection takes bytes again (on the next tick when it does now). */
  whenWritable(fn: () => void): void {
    if (this.#blocked) this.#drainWaiters.push(fn)
    else process.nextTick(fn)
  }

  /** After input was handled: stops reading while replies to it cannot leave. */
  pauseReadingIfBacklogged(): void {
    if (!this.#behind || (this.#conn.writableLength <= READ_PAUSE_OUTPUT_BYTES && this.#framesBehind <= READ_PAUSE_OUTPUT_FRAMES)) return
    this.#pausedForOutput = true
    this.#conn.pause()
  }

  uncork = (): void => {
    if (!this.#corked) return
    this.#corked = false
    this.#conn.uncork()
  }

  /** The session is closing: no deadline, no waiters, and reading resumes so the end is seen. */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#drainWaiters = []
    this.uncork()
  }

  /** Whether reading was paused for output (the closing session resumes it). */
  get pausedForOutput(): boolean {
    return this.#pausedForOutput
  }

  #onDrain = (): void => {
    if (!this.#behind) return
    this.#behind = false
    this.#framesBehind = 0
    this.#blocked = false
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    if (this.#pausedForOutput) {
      this.#pausedForOutput = false
      this.#conn.resume()
    }
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const fn of waiters) {
      if (this.#blocked) this.#drainWaiters.push(fn)
      else fn()
    }
  }
}
