// A session's output: frames written to the connection corked for the rest of the tick, so
// the frames one tick produces leave in a single writev; backpressure from the connection
// ('drain'), and a deadline for a connection that stops taking bytes.

import type { Duplex } from 'node:stream'
import { FrameType, YamuxError } from './const.ts'
import { encodeHeader } from './frame.ts'
import { OutputPacer } from './output-pacer.ts'

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

const FRAME_HEADER_BYTES = 12
const EMPTY = Buffer.alloc(0)

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
  /** Waiters a drain did not serve (another's write filled the backlog): first next time. */
  #unserved: (() => void)[] = []
  /** Measures drains; once pace() is called, also sets the backlog limit and spaces writes. */
  readonly #pacer = new OutputPacer(WRITE_BACKLOG_BYTES)
  /** A paced writer holds data frames back until this fires. */
  #holding: NodeJS.Timeout | null = null
  /** Bytes written so far; with the unsent bytes when output first waited, what a drain took. */
  #written = 0
  /** Data frames' payload bytes written so far. */
  #dataWritten = 0
  #behindSince = 0
  #drainedAtBehind = 0
  /** What the connection had taken at the last deadline check. */
  #takenAtCheck = 0
  /** Waits for a drain so far: which one an empty write's callback ends. */
  #waits = 0
  /** stop() was called: a drain or a hold's end changes nothing any more. */
  #stopped = false

  /** `stuck` is called when a write has made no progress for `timeoutMs`. */
  constructor(conn: Duplex, timeoutMs: number, stuck: (err: YamuxError) => void) {
    this.#conn = conn
    this.#timeoutMs = timeoutMs
    this.#stuck = stuck
    conn.on('drain', this.#onDrain)
  }

  /** The connection holds WRITE_BACKLOG_BYTES unsent (less when paced): data waits for 'drain'. */
  get blocked(): boolean {
    return this.#blocked
  }

  /** What the pacer knows (SessionStats.pacing). */
  get pacing(): { active: boolean; backlogLimit: number; drainRate: number | null; queueMs: number; roundTrips: number } {
    const rate = this.#pacer.rate
    return {
      active: this.#pacer.active,
      backlogLimit: this.#pacer.backlogLimit,
      drainRate: Number.isFinite(rate) ? Math.round(rate * 1000) : null,
      queueMs: this.#pacer.queueMs,
      roundTrips: this.#pacer.roundTrips,
    }
  }

  /**
   * Data bytes written so far: whether output moved since a paced session last measured its
   * queue (not pings or their answers, which two paced ends would otherwise trade for ever).
   */
  get dataWritten(): number {
    return this.#dataWritten
  }

  /** Whether the pacer would use round trips now (OutputPacer.wantsRoundTrips). */
  get wantsRoundTrips(): boolean {
    return this.#pacer.wantsRoundTrips
  }

  /** A ping's round trip while paced, and what the peer sent meanwhile: the queue on the path (OutputPacer.roundTrip). */
  roundTrip(rttMs: number, received: number): void {
    this.#pacer.roundTrip(rttMs, performance.now(), received)
  }

  /** Unsent output at which data frames wait, and the largest data frame worth writing. */
  get dataFrameLimit(): number {
    return this.#pacer.backlogLimit
  }

  /**
   * From now on paces output by the rate the connection drains at (./output-pacer.ts). Only
   * worth it on a connection whose kernel queue is kept short: else the kernel takes
   * megabytes at once and every drain looks fast.
   */
  pace(): void {
    this.#pacer.activate()
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
    let bytes = FRAME_HEADER_BYTES
    if (body !== undefined) {
      if (Array.isArray(body)) {
        for (const part of body) {
          ok = conn.write(part)
          bytes += part.length
        }
      } else {
        ok = conn.write(body)
        bytes += body.length
      }
    }
    this.#written += bytes
    if (type === FrameType.Data) this.#dataWritten += bytes - FRAME_HEADER_BYTES
    if (this.#behind) this.#framesBehind++
    if (!ok && !this.#behind) this.#fallBehind()
    else if (this.#pacer.active && !this.#behind && conn.writableLength >= this.#pacer.backlogLimit) {
      // Our limit is below the connection's own mark, so no 'drain' comes for these bytes:
      // the callback of an empty write queued after them stands in for it (for this wait
      // only: one that fires once a later wait began would end that one early).
      this.#fallBehind()
      const wait = this.#waits
      conn.write(EMPTY, () => wait === this.#waits && this.#onDrain())
    }
    if (this.#behind && conn.writableLength >= this.dataFrameLimit) this.#blocked = true
  }

  /** A write was refused, or a paced writer reached its limit: 'drain' is due. */
  #fallBehind(): void {
    this.#waits++
    this.#behind = true
    this.#behindSince = performance.now()
    this.#drainedAtBehind = this.#written - this.#conn.writableLength
    // The deadline runs from the first refused write, however little is queued.
    this.#takenAtCheck = this.#drainedAtBehind
    this.#timer = setTimeout(this.#checkProgress, this.#timeoutMs)
    this.#timer.unref()
  }

  /**
   * The deadline: stuck if the connection took nothing since the last check. Not "no
   * 'drain' yet": on a slow link whose kernel queue is kept short, streams may keep output
   * waiting for longer than the deadline while every write goes out.
   */
  #checkProgress = (): void => {
    const taken = this.#written - this.#conn.writableLength
    if (taken === this.#takenAtCheck) {
      this.#stuck(new YamuxError('ERR_YAMUX_WRITE_TIMEOUT', `no progress for ${this.#timeoutMs} ms`))
      return
    }
    this.#takenAtCheck = taken
    this.#timer = setTimeout(this.#checkProgress, this.#timeoutMs)
    this.#timer.unref()
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
    this.#stopped = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    if (this.#holding !== null) clearTimeout(this.#holding)
    this.#holding = null
    this.#drainWaiters = []
    this.#unserved = []
    this.uncork()
  }

  /** Whether reading was paused for output (the closing session resumes it). */
  get pausedForOutput(): boolean {
    return this.#pausedForOutput
  }

  #onDrain = (): void => {
    if (!this.#behind || this.#holding !== null || this.#stopped) return
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    if (this.#pacer.active) {
      const now = performance.now()
      const holdMs = this.#pacer.drained(this.#written - this.#drainedAtBehind, now - this.#behindSince, now)
      if (holdMs >= 1) {
        this.#holding = setTimeout(this.#release, holdMs)
        return
      }
    }
    this.#release()
  }

  /** Output may go on: data frames are written again, waiters in turn. */
  #release = (): void => {
    this.#holding = null
    this.#behind = false
    this.#framesBehind = 0
    this.#blocked = false
    if (this.#pausedForOutput) {
      this.#pausedForOutput = false
      this.#conn.resume()
    }
    // Those a drain did not serve go first. Then the latest to wait: the stream whose write
    // filled the backlog began to wait first, and a keystroke's echo that came after it
    // should not wait behind its next write too.
    if (this.#unserved.length === 0 && this.#drainWaiters.length === 0) return
    const waiters = [...this.#unserved, ...this.#drainWaiters.reverse()]
    this.#unserved = []
    this.#drainWaiters = []
    for (let i = 0; i < waiters.length; i++) {
      if (this.#blocked) {
        this.#unserved = waiters.slice(i)
        return
      }
      waiters[i]!()
    }
  }
}
