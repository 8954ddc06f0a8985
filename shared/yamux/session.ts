// A yamux session: many streams over one reliable, ordered connection (TCP or TLS).
//
// Everything runs on the event loop: incoming chunks go through the frame parser straight
// to the streams, and outgoing frames are written to the connection corked for the rest of
// the tick, so the frames one tick produces leave in a single writev.
//
// Whatever the peer sends, the session either handles it or closes with a reason; it never
// throws into the event loop. Anything that breaks the protocol is answered with
// GoAway(protocol error) and the connection is closed.

import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import { monotonicMs } from './clock.ts'
import { type Config, resolveConfig } from './config.ts'
import { Flag, FrameType, GoAwayCode, MAX_STREAM_ID, YamuxError } from './const.ts'
import { FrameParser } from './frame.ts'
import { FrameWriter } from './frame-writer.ts'
import { QUEUE_PROBE_MS } from './output-pacer.ts'
import { Pings } from './pings.ts'
import { Stream, type StreamHost } from './stream.ts'

/**
 * A write that waits this long for the peer's window, twice within SLOW_WINDOW_SPAN_MS,
 * tells of a slow link: half a window (128 KiB) or more took that long to cross it, under
 * 1 MB/s, where on a LAN or loopback it takes a millisecond or less. (A peer whose reader
 * stalls now and then looks the same; pacing costs little at that rate.)
 */
const SLOW_WINDOW_WAIT_MS = 200
const SLOW_WINDOW_SPAN_MS = 5000

export interface SessionOptions extends Partial<Config> {
  /** The client opens odd stream ids and the server even ones; one side of each. */
  client: boolean
}

export interface SessionStats {
  /** Open streams (including incoming ones waiting for a 'stream' listener). */
  streams: number
  /** Received bytes held by streams that have not been handed to their readers. */
  bufferedBytes: number
  /** Frame headers received. */
  framesReceived: number
  /** Smoothed round-trip time in ms (0 until measured). */
  rttMs: number
  /**
   * Output pacing (paceOutput()): whether on, the backlog it allows, the drain rate in bytes
   * per second (null before any drain), the queueing delay the last pings showed (ms), and how
   * many round trips measured it.
   */
  pacing: { active: boolean; backlogLimit: number; drainRate: number | null; queueMs: number; roundTrips: number }
}

/**
 * Events:
 * - `'stream'` (stream: Stream): the peer opened a stream.
 * - `'goaway'`: the peer will accept no more streams (open() now throws); existing ones go on.
 * - `'slow'`: streams wait long for the peer's window, as over a slow link (once): pace the
 *   session with paceOutput() once the connection's kernel queue is kept short.
 * - `'error'` (err): the session failed (emitted only when there is a listener).
 * - `'close'` (err?: Error): the session is closed; `err` says why when it failed.
 */
export class Session extends EventEmitter implements StreamHost {
  readonly config: Readonly<Config>
  readonly client: boolean
  readonly #conn: Duplex
  readonly #parser: FrameParser
  readonly #streams = new Map<number, Stream>()
  /** Incoming streams waiting for a 'stream' listener; not yet acknowledged. */
  #backlog: Stream[] = []
  #nextStreamId: number
  /**
   * Highest stream id the peer opened. A frame without SYN for a higher id is for a stream
   * that never existed (a protocol error); for a lower id that we do not know, it is late
   * traffic for a stream already closed here, and is discarded.
   */
  #maxPeerStreamId = 0
  /** Streams the peer opened that are in #streams (bounded by maxIncomingStreams). */
  #incoming = 0
  /** When a write last waited SLOW_WINDOW_WAIT_MS or more for a window (0: never). */
  #longWindowWaitAt = 0
  #slowTold = false
  /** Bytes read from the connection so far: whether the peer sends in bulk (paceOutput()). */
  #bytesReceived = 0
  /** While paced: pings the peer now and then to measure the queue on the path (paceOutput()). */
  #queueProbe: NodeJS.Timeout | null = null
  /**
   * The receive windows of the streams in #streams, added up: no more can be held unread.
   * While it stays within maxSessionReceiveBuffer, data frames need no further check.
   */
  #granted = 0

  /** Stream a Data body is being delivered to (null: the body is discarded). */
  #bodyStream: Stream | null = null
  #bodyFlags = 0

  #localGoAway = false
  #remoteGoAway = false
  #closed = false

  readonly #writer: FrameWriter

  readonly #pings: Pings

  constructor(conn: Duplex, options: SessionOptions) {
    super()
    const { client, ...partial } = options
    this.config = resolveConfig(partial)
    this.client = client
    this.#conn = conn
    this.#nextStreamId = client ? 1 : 2
    this.#writer = new FrameWriter(conn, this.config.connectionWriteTimeoutMs, (err) => this.#shutdown(err, null, true))
    this.#pings = new Pings({
      config: this.config,
      sendPing: (flags, opaque) => this.sendFrame(FrameType.Ping, flags, 0, opaque),
      openStreams: () => this.#streams.size,
      keepAliveFailed: (err) => this.#shutdown(err, null, true),
      // 'rtt' (ms): each round trip a ping measured.
      rttSample: (rttMs) => this.emit('rtt', rttMs),
    })
    this.#parser = new FrameParser({
      onFrame: (type, flags, streamId, length) => this.#onFrame(type, flags, streamId, length),
      onBody: (piece) => this.#bodyStream?._onData(piece),
      onBodyEnd: () => this.#onBodyEnd(),
    })

    // Frames are already batched per tick (cork), so Nagle's algorithm would only add
    // delay: a ping or a small reply waiting for the peer's delayed ACK costs ~40 ms.
    const socket = conn as Duplex & { setNoDelay?: (noDelay: boolean) => unknown }
    if (typeof socket.setNoDelay === 'function') socket.setNoDelay(true)

    conn.on('data', this.#onChunk)
    conn.on('end', () => this.#shutdown(null, null, false))
    conn.on('close', () => this.#shutdown(null, null, true))
    conn.on('error', (err: Error) => this.#shutdown(err, null, true))
    this.on('newListener', (event: string) => {
      if (event === 'stream' && this.#backlog.length > 0) process.nextTick(() => this.#drainBacklog())
    })

    if (conn.destroyed) {
      process.nextTick(() => this.#shutdown(null, null, true))
      return
    }
    this.#pings.start()
  }

  get numStreams(): number {
    return this.#streams.size
  }

  get isClosed(): boolean {
    return this.#closed
  }

  /** Smoothed round-trip time in ms, from pings; 0 until the first answer. */
  get rttMs(): number {
    return this.#pings.rttMs
  }

  get writeBlocked(): boolean {
    return this.#writer.blocked
  }

  /** @internal */
  get dataFrameLimit(): number {
    return this.#writer.dataFrameLimit
  }

  /**
   * Paces output by the rate the connection drains at (./output-pacer.ts), so that one
   * stream's bulk data does not hold the others' frames back for long: call it once the
   * connection's kernel queue is kept short (shared/unsent-limit.ts).
   */
  paceOutput(): void {
    if (this.#queueProbe !== null || this.#closed) return
    this.#writer.pace()
    let writtenAtProbe = this.#writer.dataWritten
    let receivedAtProbe = 0
    let probing = false
    const measured = (rttMs: number) => {
      probing = false
      this.#writer.roundTrip(rttMs, this.#bytesReceived - receivedAtProbe)
    }
    const failed = () => {
      probing = false
    }
    // Only while data leaves and writes are spaced: an idle tunnel has no queue of its own.
    this.#queueProbe = setInterval(() => {
      if (probing || this.#writer.dataWritten === writtenAtProbe || !this.#writer.wantsRoundTrips) return
      writtenAtProbe = this.#writer.dataWritten
      probing = true
      receivedAtProbe = this.#bytesReceived
      this.#pings.probe().then(measured, failed)
    }, QUEUE_PROBE_MS)
    this.#queueProbe.unref()
  }

  stats(): SessionStats {
    let bufferedBytes = 0
    for (const stream of this.#streams.values()) bufferedBytes += stream.recvBuffered + stream.readableLength
    return {
      streams: this.#streams.size,
      bufferedBytes,
      framesReceived: this.#parser.framesParsed,
      rttMs: this.#pings.rttMs,
      pacing: this.#writer.pacing,
    }
  }

  /**
   * Opens a stream. Data may be written at once: the peer learns of the stream from the
   * SYN that precedes it. Throws when the session is closed, the peer sent GoAway, or the
   * stream ids are used up.
   */
  open(): Stream {
    if (this.#closed) throw new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN')
    if (this.#remoteGoAway) throw new YamuxError('ERR_YAMUX_REMOTE_GO_AWAY')
    const id = this.#nextStreamId
    if (id >= MAX_STREAM_ID - 1) throw new YamuxError('ERR_YAMUX_STREAMS_EXHAUSTED')
    this.#nextStreamId += 2
    const stream = new Stream(this, id, true)
    this.#track(stream)
    stream._open()
    return stream
  }

  /** Measures the round trip to the peer in ms. Rejects after connectionWriteTimeoutMs. */
  ping(): Promise<number> {
    if (this.#closed) return Promise.reject(new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN'))
    return this.#pings.ping()
  }

  /** Tells the peer we accept no more streams; streams it opens from now on are reset. */
  goAway(): void {
    if (this.#closed) return
    this.#localGoAway = true
    this.sendFrame(FrameType.GoAway, 0, 0, GoAwayCode.Normal)
  }

  /** Closes every stream and the connection (after telling the peer with GoAway). */
  close(): void {
    this.#shutdown(null, GoAwayCode.Normal, false)
  }

  // ---- StreamHost ----------------------------------------------------------------------

  /** @internal Writes one frame; payload buffers are written as they are, never copied. */
  sendFrame(type: number, flags: number, streamId: number, length: number, body?: Buffer | Buffer[]): void {
    if (!this.#closed) this.#writer.write(type, flags, streamId, length, body)
  }

  /** @internal */
  whenWritable(fn: () => void): void {
    this.#writer.whenWritable(fn)
  }

  /** @internal */
  windowWaited(ms: number): void {
    if (this.#slowTold || ms < SLOW_WINDOW_WAIT_MS) return
    const now = monotonicMs()
    if (this.#longWindowWaitAt === 0 || now - this.#longWindowWaitAt > SLOW_WINDOW_SPAN_MS) {
      this.#longWindowWaitAt = now
      return
    }
    this.#slowTold = true
    this.emit('slow')
  }

  /** @internal */
  streamClosed(stream: Stream): void {
    if (this.#streams.get(stream.id) !== stream) return
    this.#streams.delete(stream.id)
    this.#granted -= stream.recvWindow
    if (this.#isIncoming(stream.id)) this.#incoming--
  }

  /** @internal */
  windowGrown(delta: number): void {
    this.#granted += delta
  }

  /** @internal */
  get windowRoom(): number {
    return Math.max(0, this.config.maxSessionReceiveBuffer - this.#granted)
  }

  #track(stream: Stream): void {
    this.#streams.set(stream.id, stream)
    this.#granted += stream.recvWindow
    if (this.#isIncoming(stream.id)) this.#incoming++
  }

  #isIncoming(id: number): boolean {
    return (id & 1) !== (this.client ? 1 : 0)
  }

  // ---- input ----------------------------------------------------------------------------

  #onChunk = (chunk: Buffer): void => {
    if (this.#closed) return
    this.#bytesReceived += chunk.length
    this.#pings.received()
    try {
      this.#parser.push(chunk)
    } catch (err) {
      if (err instanceof YamuxError && err.isProtocolError) {
        this.#shutdown(err, GoAwayCode.ProtocolError, false)
        return
      }
      // Not the peer's doing: a bug, or an exception from an application listener called
      // while we delivered data. The session cannot continue mid-frame; close it and let
      // the exception surface as Node would for any listener.
      this.#shutdown(new YamuxError('ERR_YAMUX_INTERNAL', String(err)), GoAwayCode.InternalError, false)
      throw err
    }
    if (!this.#closed) this.#writer.pauseReadingIfBacklogged()
  }

  #onFrame(type: number, flags: number, streamId: number, length: number): void {
    switch (type) {
      case FrameType.Data:
      case FrameType.WindowUpdate:
        this.#onStreamFrame(type, flags, streamId, length)
        return
      case FrameType.Ping:
        this.#pings.onPing(flags, length)
        return
      case FrameType.GoAway:
        this.#onGoAway(length)
        return
    }
  }

  #onStreamFrame(type: number, flags: number, id: number, length: number): void {
    if (id === 0) throw new YamuxError('ERR_YAMUX_PROTOCOL', 'stream frame on stream id 0')
    let stream: Stream | null
    if (flags & Flag.SYN) {
      stream = this.#incomingStream(id)
    } else {
      stream = this.#streams.get(id) ?? null
      if (stream === null && !this.#wasOpened(id)) {
        throw new YamuxError('ERR_YAMUX_UNKNOWN_STREAM', `stream ${id}`)
      }
    }

    if (type === FrameType.WindowUpdate) {
      if (stream === null) return // a stream already closed here; late updates are normal
      stream._onWindowUpdate(length)
      stream._onFlags(flags)
      return
    }

    // Data: the body follows through onBody/onBodyEnd.
    if (stream === null || stream.destroyed) {
      // Data still in flight to a stream we reset or closed: discard it, but no peer can
      // have had more window than the largest we ever grant.
      if (length > this.config.maxStreamWindowSize) {
        throw new YamuxError('ERR_YAMUX_RECV_WINDOW_EXCEEDED', `${length} bytes for closed stream ${id}`)
      }
      this.#bodyStream = null
      return
    }
    stream._dataHeader(length)
    if (this.#granted > this.config.maxSessionReceiveBuffer && !this.#makeRoom(stream, length)) {
      this.#bodyStream = null
      return
    }
    this.#bodyStream = stream
    this.#bodyFlags = flags
  }

  /**
   * Resets the streams holding the most unread bytes until `length` more fit within
   * maxSessionReceiveBuffer. False when `stream`, the one receiving them, was reset.
   */
  #makeRoom(stream: Stream, length: number): boolean {
    let held = 0
    for (const s of this.#streams.values()) held += s.held
    while (held + length > this.config.maxSessionReceiveBuffer) {
      let victim: Stream | null = null
      for (const s of this.#streams.values()) if (victim === null || s.held > victim.held) victim = s
      if (victim === null || victim.held === 0) break
      held -= victim.held
      victim._reset(new YamuxError('ERR_YAMUX_RECV_BUFFER_EXCEEDED', `stream ${victim.id}`))
      if (victim === stream) return false
    }
    return true
  }

  #onBodyEnd(): void {
    const stream = this.#bodyStream
    if (stream === null) return
    this.#bodyStream = null
    stream._onFlags(this.#bodyFlags)
  }

  /** Ids of our parity below the next one, and the peer's up to its highest, may have existed. */
  #wasOpened(id: number): boolean {
    const ours = (id & 1) === (this.client ? 1 : 0)
    return ours ? id < this.#nextStreamId : id <= this.#maxPeerStreamId
  }

  #incomingStream(id: number): Stream | null {
    if (!this.#isIncoming(id)) {
      throw new YamuxError('ERR_YAMUX_PROTOCOL', `peer opened stream ${id}, an id of our parity`)
    }
    if (this.#streams.has(id)) throw new YamuxError('ERR_YAMUX_DUPLICATE_STREAM', `stream ${id}`)
    // Ids are allocated in order but need not arrive in order: the Go implementation sends
    // each SYN from the goroutine that opened the stream.
    if (id > this.#maxPeerStreamId) this.#maxPeerStreamId = id
    if (this.#localGoAway || this.#incoming >= this.config.maxIncomingStreams) {
      this.sendFrame(FrameType.WindowUpdate, Flag.RST, id, 0)
      return null
    }
    const stream = new Stream(this, id, false)
    if (this.listenerCount('stream') > 0) {
      this.#track(stream)
      stream._accept()
      this.emit('stream', stream)
      return stream.destroyed ? null : stream
    }
    if (this.#backlog.length >= this.config.acceptBacklog) {
      this.sendFrame(FrameType.WindowUpdate, Flag.RST, id, 0)
      return null
    }
    this.#track(stream)
    this.#backlog.push(stream)
    return stream
  }

  #drainBacklog(): void {
    while (this.#backlog.length > 0 && this.listenerCount('stream') > 0 && !this.#closed) {
      const stream = this.#backlog.shift()!
      if (stream.destroyed) continue
      stream._accept()
      this.emit('stream', stream)
    }
  }

  #onGoAway(code: number): void {
    switch (code) {
      case GoAwayCode.Normal:
        if (!this.#remoteGoAway) {
          this.#remoteGoAway = true
          this.emit('goaway')
        }
        return
      case GoAwayCode.ProtocolError:
        this.#shutdown(new YamuxError('ERR_YAMUX_REMOTE_PROTOCOL_ERROR'), null, false)
        return
      case GoAwayCode.InternalError:
        this.#shutdown(new YamuxError('ERR_YAMUX_REMOTE_INTERNAL_ERROR'), null, false)
        return
      default:
        throw new YamuxError('ERR_YAMUX_PROTOCOL', `unknown GoAway code ${code}`)
    }
  }

  // ---- shutdown -------------------------------------------------------------------------

  /**
   * Ends the session once. `goAway` (a GoAwayCode or null) is sent first when the
   * connection can still take it; `hard` destroys the connection instead of ending it.
   */
  #shutdown(err: Error | null, goAway: number | null, hard: boolean): void {
    if (this.#closed) return
    if (goAway !== null && !hard) this.sendFrame(FrameType.GoAway, 0, 0, goAway)
    this.#closed = true
    this.#parser.stop()
    this.#bodyStream = null

    const reason = err ?? new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN')
    if (this.#queueProbe !== null) clearInterval(this.#queueProbe)
    this.#queueProbe = null
    this.#pings.close(reason)
    const streams = [...this.#streams.values()]
    this.#streams.clear()
    this.#granted = 0
    this.#incoming = 0
    this.#backlog = []
    for (const stream of streams) stream._onSessionClosed(reason)

    const conn = this.#conn
    this.#writer.stop()
    if (hard || conn.destroyed) {
      conn.destroy()
    } else {
      // Let the GoAway and whatever is queued leave, but do not wait on a stuck peer.
      const timer = setTimeout(() => conn.destroy(), this.config.connectionWriteTimeoutMs)
      timer.unref()
      conn.once('close', () => clearTimeout(timer))
      conn.end(() => conn.destroy())
      if (this.#writer.pausedForOutput) conn.resume()
    }

    process.nextTick(() => {
      if (err !== null && this.listenerCount('error') > 0) this.emit('error', err)
      this.emit('close', err ?? undefined)
    })
  }
}

/**
 * Starts a yamux session over `conn` (a connected socket, TLS socket or any Duplex). The
 * session owns the connection from then on: it reads it, turns Nagle off on sockets, and
 * ends it when the session closes.
 */
export function createSession(conn: Duplex, options: SessionOptions): Session {
  return new Session(conn, options)
}
