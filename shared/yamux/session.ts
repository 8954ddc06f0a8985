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
import { type Config, resolveConfig } from './config.ts'
import { Flag, FrameType, GoAwayCode, MAX_STREAM_ID, YamuxError } from './const.ts'
import { FrameParser, encodeHeader } from './frame.ts'
import { Stream, type StreamHost } from './stream.ts'
import { monotonicMs } from './clock.ts'

export interface SessionOptions extends Partial<Config> {
  /** The client opens odd stream ids and the server even ones; one side of each. */
  client: boolean
}

/**
 * Unsent output beyond which we stop reading the connection until it drains. Data frames
 * already wait for 'drain', so only replies (pings, window updates) can pile up here: a
 * peer that floods pings without reading our answers must not grow our memory.
 */
const READ_PAUSE_OUTPUT_BYTES = 1024 * 1024

interface PendingPing {
  start: number
  resolve: (rttMs: number) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
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
}

/**
 * Events:
 * - `'stream'` (stream: Stream): the peer opened a stream.
 * - `'goaway'`: the peer will accept no more streams (open() now throws); existing ones go on.
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

  /** Stream a Data body is being delivered to (null: the body is discarded). */
  #bodyStream: Stream | null = null
  #bodyFlags = 0

  #localGoAway = false
  #remoteGoAway = false
  #closed = false

  #corked = false
  #writeBlocked = false
  #pausedForOutput = false
  #drainWaiters: (() => void)[] = []
  #writeTimer: NodeJS.Timeout | null = null

  #pings = new Map<number, PendingPing>()
  #nextPingId = 0
  #rttMs = 0
  #keepAliveTimer: NodeJS.Timeout | null = null
  /** The keepalive ping in flight (-1: none) and the receive count when it was sent. */
  #keepAlivePingId = -1
  #keepAliveSentAt = 0
  #keepAliveRecvMark = 0
  /** Chunks received so far: any traffic at all proves the peer alive. */
  #recvCount = 0

  constructor(conn: Duplex, options: SessionOptions) {
    super()
    const { client, ...partial } = options
    this.config = resolveConfig(partial)
    this.client = client
    this.#conn = conn
    this.#nextStreamId = client ? 1 : 2
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
    conn.on('drain', this.#onDrain)
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
    // One ping straight away measures the round trip that window auto-tuning needs.
    this.#sendKeepAlivePing()
    if (this.config.enableKeepAlive) {
      this.#keepAliveTimer = setInterval(() => this.#keepAliveTick(), this.config.keepAliveIntervalMs)
      this.#keepAliveTimer.unref()
    }
  }

  get numStreams(): number {
    return this.#streams.size
  }

  get isClosed(): boolean {
    return this.#closed
  }

  /** Smoothed round-trip time in ms, from pings; 0 until the first answer. */
  get rttMs(): number {
    return this.#rttMs
  }

  get writeBlocked(): boolean {
    return this.#writeBlocked
  }

  stats(): SessionStats {
    let bufferedBytes = 0
    for (const stream of this.#streams.values()) bufferedBytes += stream.recvBuffered + stream.readableLength
    return {
      streams: this.#streams.size,
      bufferedBytes,
      framesReceived: this.#parser.framesParsed,
      rttMs: this.#rttMs,
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
    this.#streams.set(id, stream)
    stream._open()
    return stream
  }

  /** Measures the round trip to the peer in ms. Rejects after connectionWriteTimeoutMs. */
  ping(): Promise<number> {
    if (this.#closed) return Promise.reject(new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN'))
    const id = this.#allocPingId()
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(id)
        reject(new YamuxError('ERR_YAMUX_TIMEOUT', `no answer to ping within ${this.config.connectionWriteTimeoutMs} ms`))
      }, this.config.connectionWriteTimeoutMs)
      this.#pings.set(id, { start: monotonicMs(), resolve, reject, timer })
      this.sendFrame(FrameType.Ping, Flag.SYN, 0, id)
    })
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
    if (this.#closed) return
    const conn = this.#conn
    if (conn.writableEnded || conn.destroyed) return
    if (!this.#corked) {
      this.#corked = true
      conn.cork()
      process.nextTick(this.#uncork)
    }
    let ok = conn.write(encodeHeader(type, flags, streamId, length))
    if (body !== undefined) {
      if (Array.isArray(body)) for (const part of body) ok = conn.write(part)
      else ok = conn.write(body)
    }
    if (!ok && !this.#writeBlocked) {
      this.#writeBlocked = true
      this.#writeTimer = setTimeout(() => {
        this.#shutdown(new YamuxError('ERR_YAMUX_WRITE_TIMEOUT', `no progress for ${this.config.connectionWriteTimeoutMs} ms`), null, true)
      }, this.config.connectionWriteTimeoutMs)
      this.#writeTimer.unref()
    }
  }

  /** @internal */
  whenWritable(fn: () => void): void {
    if (this.#writeBlocked) this.#drainWaiters.push(fn)
    else process.nextTick(fn)
  }

  /** @internal */
  streamClosed(stream: Stream): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id)
  }

  // ---- output ---------------------------------------------------------------------------

  #uncork = (): void => {
    if (!this.#corked) return
    this.#corked = false
    this.#conn.uncork()
  }

  #onDrain = (): void => {
    if (!this.#writeBlocked) return
    this.#writeBlocked = false
    if (this.#writeTimer !== null) {
      clearTimeout(this.#writeTimer)
      this.#writeTimer = null
    }
    if (this.#pausedForOutput) {
      this.#pausedForOutput = false
      this.#conn.resume()
    }
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const fn of waiters) {
      if (this.#writeBlocked) this.#drainWaiters.push(fn)
      else fn()
    }
  }

  // ---- input ----------------------------------------------------------------------------

  #onChunk = (chunk: Buffer): void => {
    if (this.#closed) return
    this.#recvCount++
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
    if (!this.#closed && this.#writeBlocked && this.#conn.writableLength > READ_PAUSE_OUTPUT_BYTES) {
      this.#pausedForOutput = true
      this.#conn.pause()
    }
  }

  #onFrame(type: number, flags: number, streamId: number, length: number): void {
    switch (type) {
      case FrameType.Data:
      case FrameType.WindowUpdate:
        this.#onStreamFrame(type, flags, streamId, length)
        return
      case FrameType.Ping:
        this.#onPing(flags, length)
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
    this.#bodyStream = stream
    this.#bodyFlags = flags
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
    if ((id & 1) === (this.client ? 1 : 0)) {
      throw new YamuxError('ERR_YAMUX_PROTOCOL', `peer opened stream ${id}, an id of our parity`)
    }
    if (this.#streams.has(id)) throw new YamuxError('ERR_YAMUX_DUPLICATE_STREAM', `stream ${id}`)
    // Ids are allocated in order but need not arrive in order: the Go implementation sends
    // each SYN from the goroutine that opened the stream.
    if (id > this.#maxPeerStreamId) this.#maxPeerStreamId = id
    if (this.#localGoAway) {
      this.sendFrame(FrameType.WindowUpdate, Flag.RST, id, 0)
      return null
    }
    const stream = new Stream(this, id, false)
    if (this.listenerCount('stream') > 0) {
      this.#streams.set(id, stream)
      stream._accept()
      this.emit('stream', stream)
      return stream.destroyed ? null : stream
    }
    if (this.#backlog.length >= this.config.acceptBacklog) {
      this.sendFrame(FrameType.WindowUpdate, Flag.RST, id, 0)
      return null
    }
    this.#streams.set(id, stream)
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

  #onPing(flags: number, opaque: number): void {
    if (flags & Flag.SYN) {
      this.sendFrame(FrameType.Ping, Flag.ACK, 0, opaque)
      return
    }
    if (!(flags & Flag.ACK)) return
    const now = monotonicMs()
    if (opaque === this.#keepAlivePingId) {
      this.#keepAlivePingId = -1
      this.#sampleRtt(now - this.#keepAliveSentAt)
      return
    }
    const ping = this.#pings.get(opaque)
    if (ping === undefined) return
    this.#pings.delete(opaque)
    clearTimeout(ping.timer)
    const rtt = now - ping.start
    this.#sampleRtt(rtt)
    ping.resolve(rtt)
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

  // ---- keepalive ------------------------------------------------------------------------

  #allocPingId(): number {
    do this.#nextPingId = (this.#nextPingId + 1) >>> 0
    while (this.#pings.has(this.#nextPingId) || this.#nextPingId === this.#keepAlivePingId)
    return this.#nextPingId
  }

  #sendKeepAlivePing(): void {
    this.#keepAlivePingId = -1
    this.#keepAlivePingId = this.#allocPingId()
    this.#keepAliveSentAt = monotonicMs()
    this.#keepAliveRecvMark = this.#recvCount
    this.sendFrame(FrameType.Ping, Flag.SYN, 0, this.#keepAlivePingId)
  }

  /**
   * A keepalive ping that has gone a whole interval without anything at all arriving from
   * the peer means the peer or the path is dead (a silent drop gives no other sign). Any
   * traffic counts as life, because a busy peer's answer may queue behind its data.
   */
  #keepAliveTick(): void {
    if (this.#closed) return
    if (this.#keepAlivePingId !== -1 && this.#recvCount === this.#keepAliveRecvMark) {
      this.#shutdown(
        new YamuxError('ERR_YAMUX_KEEPALIVE_TIMEOUT', `nothing received for ${this.config.keepAliveIntervalMs} ms`),
        null,
        true,
      )
      return
    }
    if (this.config.keepAliveWhenQuietOnly && this.#streams.size === 0 && this.#recvCount !== this.#keepAliveRecvMark) {
      // The peer's own traffic (its keepalive pings) shows the path is alive.
      this.#keepAlivePingId = -1
      this.#keepAliveRecvMark = this.#recvCount
      return
    }
    this.#sendKeepAlivePing()
  }

  #sampleRtt(sample: number): void {
    this.#rttMs = this.#rttMs === 0 ? sample : this.#rttMs * 0.875 + sample * 0.125
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
    if (this.#keepAliveTimer !== null) clearInterval(this.#keepAliveTimer)
    if (this.#writeTimer !== null) clearTimeout(this.#writeTimer)
    this.#keepAliveTimer = this.#writeTimer = null

    const reason = err ?? new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN')
    for (const ping of this.#pings.values()) {
      clearTimeout(ping.timer)
      ping.reject(reason)
    }
    this.#pings.clear()
    const streams = [...this.#streams.values()]
    this.#streams.clear()
    this.#backlog = []
    this.#drainWaiters = []
    for (const stream of streams) stream._onSessionClosed(reason)

    const conn = this.#conn
    this.#uncork()
    if (hard || conn.destroyed) {
      conn.destroy()
    } else {
      // Let the GoAway and whatever is queued leave, but do not wait on a stuck peer.
      const timer = setTimeout(() => conn.destroy(), this.config.connectionWriteTimeoutMs)
      timer.unref()
      conn.once('close', () => clearTimeout(timer))
      conn.end(() => conn.destroy())
      if (this.#pausedForOutput) conn.resume()
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
