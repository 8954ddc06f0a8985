// One yamux stream, presented as a Node Duplex.
//
// Receiving: payload arrives as views into the connection's chunks. It is pushed into the
// Readable while push() returns true and kept in our own queue otherwise; the peer is
// given new window only for bytes that left that queue (were taken by the consumer). A
// paused reader therefore stops its sender after one window, and what one stream holds
// (our queue plus the Readable's buffer) never exceeds its window.
//
// Sending: a write is cut into Data frames no larger than the peer's window allows. When
// the window is empty the write's callback waits, so the Writable buffers further writes
// and write() returns false; a WindowUpdate from the peer resumes it. Nothing polls.

import { Duplex } from 'node:stream'
import { monotonicMs } from './clock.ts'
import type { Config } from './config.ts'
import { Flag, FrameType, INITIAL_STREAM_WINDOW, MAX_DATA_FRAME, MAX_WINDOW, YamuxError } from './const.ts'

/** What a stream needs from its session. */
export interface StreamHost {
  readonly config: Readonly<Config>
  /** Smoothed round-trip time in ms, 0 while unknown. */
  readonly rttMs: number
  /** True while the connection's write buffer is full; data frames wait for 'drain'. */
  readonly writeBlocked: boolean
  /** The largest data frame to write now (the connection's paced backlog). */
  readonly dataFrameLimit: number
  sendFrame(type: number, flags: number, streamId: number, length: number, body?: Buffer | Buffer[]): void
  /** Calls `fn` once the connection takes writes again. */
  whenWritable(fn: () => void): void
  /** The stream is finished on the wire; the session forgets its id. */
  streamClosed(stream: Stream): void
  /** The stream's receive window grew by `delta` (the session bounds what all may hold). */
  windowGrown(delta: number): void
  /** How much the streams' windows may still grow together, within maxSessionReceiveBuffer. */
  readonly windowRoom: number
  /** The stream had data to send and waited `ms` for the peer to open its window. */
  windowWaited(ms: number): void
}

export class Stream extends Duplex {
  readonly id: number
  readonly #host: StreamHost

  // Receive side.
  /** Received bytes not yet pushed into the Readable; consumed from #queueHead. */
  #queue: (Buffer | undefined)[] = []
  #queueHead = 0
  #queued = 0
  /** The Readable asked for data and has not yet refused any (push() returned false). */
  #wantRead = false
  /** Our current receive window (auto-tuned between the initial and the maximum size). */
  #recvWindow: number
  /** Bytes the peer may still send before it must wait for a window update. */
  #recvAvail = INITIAL_STREAM_WINDOW
  /** Announced bytes of the Data frame being received that have not arrived yet. */
  #bodyPending = 0
  /** Auto-tuning: when the current measuring epoch began and what was consumed in it. */
  #epochStart = monotonicMs()
  #consumedInEpoch = 0
  #remoteFin = false
  #eofPushed = false
  #updateScheduled = false

  // Send side.
  #sendWindow = INITIAL_STREAM_WINDOW
  /** Since when a write has waited for the peer's window (0: it is not waiting). */
  #windowWaitSince = 0
  #pending: Buffer[] | null = null
  #pendingIndex = 0
  #pendingOffset = 0
  #pendingLeft = 0
  #pendingCallback: ((err?: Error | null) => void) | null = null
  #waitingDrain = false
  #localFin = false

  // Lifecycle.
  /** SYN sent (we opened) or ACK sent (we accepted): window updates may flow. */
  #announced = false
  /** Established: the peer acknowledged our SYN (or opened the stream itself). */
  #acked = false
  /** RST sent or received, or the session ended: nothing more goes on the wire. */
  #silenced = false

  /** @internal Streams are made by a Session (open() and the 'stream' event). */
  constructor(host: StreamHost, id: number, outbound: boolean) {
    super({ allowHalfOpen: true, emitClose: true, autoDestroy: true })
    this.#host = host
    this.id = id
    this.#recvWindow = host.config.initialStreamWindow
    if (!outbound) this.#acked = true
  }

  /** The receive window this stream currently grants (grows with auto-tuning). */
  get recvWindow(): number {
    return this.#recvWindow
  }

  /** Bytes received and queued by this stream, not yet pushed into the Readable's buffer. */
  get recvBuffered(): number {
    return this.#queued
  }

  /** Received bytes not yet read by the consumer: our queue and the Readable's buffer. */
  get held(): number {
    return this.#queued + this.readableLength
  }

  /** Bytes we may still send before the peer must open its window. */
  get sendWindow(): number {
    return this.#sendWindow
  }

  // ---- called by the session -------------------------------------------------------------

  /** @internal Sends the SYN of a stream we open (with any window above the initial one). */
  _open(): void {
    this.#announce(Flag.SYN)
  }

  /** @internal Sends the ACK of a stream the peer opened, as it is handed to the application. */
  _accept(): void {
    this.#announce(Flag.ACK)
  }

  #announce(flag: number): void {
    this.#announced = true
    // A stream that waited in the accept backlog may already hold data: grant only room.
    const delta = Math.max(0, this.#unclaimedWindow())
    this.#recvAvail += delta
    this.#epochStart = monotonicMs()
    this.#host.sendFrame(FrameType.WindowUpdate, flag, this.id, delta)
  }

  /** @internal A Data frame header for this stream: account for it against our window. */
  _dataHeader(length: number): void {
    if (this.#remoteFin && length > 0) {
      throw new YamuxError('ERR_YAMUX_PROTOCOL', `data after FIN on stream ${this.id}`)
    }
    if (length > this.#recvAvail) {
      throw new YamuxError('ERR_YAMUX_RECV_WINDOW_EXCEEDED', `stream ${this.id}: ${length} bytes sent with ${this.#recvAvail} left in the window`)
    }
    this.#recvAvail -= length
    this.#bodyPending = length
  }

  /** @internal A piece of Data payload (a view into the connection's chunk). */
  _onData(piece: Buffer): void {
    this.#bodyPending -= piece.length
    if (this.destroyed) return
    if (this.#queued === 0 && this.#wantRead) {
      this.#consumedInEpoch += piece.length
      this.#wantRead = this.push(piece)
      this.#maybeUpdateWindow()
    } else {
      this.#queue.push(piece)
      this.#queued += piece.length
    }
  }

  /** @internal A window update from the peer. */
  _onWindowUpdate(delta: number): void {
    if (delta === 0) return
    const grown = this.#sendWindow + delta
    if (grown > MAX_WINDOW) {
      throw new YamuxError('ERR_YAMUX_SEND_WINDOW_OVERFLOW', `stream ${this.id}`)
    }
    this.#sendWindow = grown
    if (this.#windowWaitSince !== 0) {
      this.#host.windowWaited(monotonicMs() - this.#windowWaitSince)
      this.#windowWaitSince = 0
    }
    if (this.#pending !== null && !this.#waitingDrain) this.#flush()
  }

  /** @internal ACK/FIN/RST carried by a frame for this stream (after its payload, if any). */
  _onFlags(flags: number): void {
    if (this.destroyed) return
    if (flags & Flag.ACK) this.#acked = true
    if (flags & Flag.RST) {
      this.#silenced = true
      this.#host.streamClosed(this)
      this.#fail(new YamuxError(this.#acked ? 'ECONNRESET' : 'ECONNREFUSED', `stream ${this.id}`))
      return
    }
    if (flags & Flag.FIN) {
      if (this.#remoteFin) throw new YamuxError('ERR_YAMUX_UNEXPECTED_FLAG', `second FIN on stream ${this.id}`)
      this.#remoteFin = true
      if (this.#queued === 0) this.#pushEof()
      if (this.#localFin) this.#host.streamClosed(this)
    }
  }

  /** @internal Aborts the stream with RST (the session needs the memory it holds). */
  _reset(err: Error): void {
    if (!this.destroyed) this.#fail(err)
  }

  /** @internal The session is gone: end the stream without touching the wire. */
  _onSessionClosed(err: Error): void {
    this.#silenced = true
    if (!this.destroyed) this.#fail(err)
  }

  // ---- Readable --------------------------------------------------------------------------

  override _read(): void {
    this.#wantRead = true
    const queue = this.#queue
    while (this.#queueHead < queue.length) {
      const piece = queue[this.#queueHead]!
      queue[this.#queueHead++] = undefined
      this.#queued -= piece.length
      this.#consumedInEpoch += piece.length
      if (!this.push(piece)) {
        this.#wantRead = false
        break
      }
    }
    if (this.#queueHead === queue.length) {
      queue.length = 0
      this.#queueHead = 0
      if (this.#remoteFin) this.#pushEof()
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > queue.length) {
      // Drop the consumed prefix now and then so a long-lived queue does not keep growing.
      this.#queue = queue.slice(this.#queueHead)
      this.#queueHead = 0
    }
    // _read runs inside Readable.read() before it takes its bytes from the buffer; judge
    // what the consumer holds once that read has returned.
    if (!this.#updateScheduled) {
      this.#updateScheduled = true
      process.nextTick(this.#deferredUpdate)
    }
  }

  #deferredUpdate = (): void => {
    this.#updateScheduled = false
    this.#maybeUpdateWindow()
  }

  #pushEof(): void {
    if (this.#eofPushed) return
    this.#eofPushed = true
    this.push(null)
  }

  /**
   * Re-opens the peer's window for the bytes that were consumed, once they add up to half
   * the window (as hashicorp/yamux does): fewer, larger updates. Also where the window is
   * auto-tuned, quic-go style: if the consumed part of the window went by in less than
   * about two round trips, the window (not the reader) is what limits the stream, so it
   * doubles, up to maxStreamWindowSize.
   */
  #maybeUpdateWindow(): void {
    if (!this.#announced || this.#remoteFin || this.#silenced) return
    const window = this.#recvWindow
    let delta = this.#unclaimedWindow()
    if (delta < window / 2) return
    const now = monotonicMs()
    const rtt = this.#host.rttMs
    const max = this.#host.config.maxStreamWindowSize
    if (rtt > 0 && window < max && now - this.#epochStart < 4 * (this.#consumedInEpoch / window) * rtt) {
      // Within the session's budget: a window granted is memory the peer may fill, and windows
      // kept within it mean streams whose readers stall never reach the resets past it.
      const grown = Math.max(window, Math.min(window * 2, max, window + this.#host.windowRoom))
      delta += grown - window
      this.#recvWindow = grown
      if (grown > window) this.#host.windowGrown(grown - window)
    }
    this.#epochStart = now
    this.#consumedInEpoch = 0
    this.#recvAvail += delta
    this.#host.sendFrame(FrameType.WindowUpdate, 0, this.id, delta)
  }

  /**
   * Window the peer does not hold yet: the window less what the peer may still send and
   * what we hold unconsumed. Bytes in the Readable's own buffer are not consumed yet either:
   * counting them keeps everything a stream holds within one window. This cannot stall: the
   * last _read before the Readable stops asking leaves less than its highWaterMark (64 KiB,
   * at most half of any window) in that buffer, so a peer that is out of window always gets
   * at least half a window back.
   */
  #unclaimedWindow(): number {
    return this.#recvWindow - this.#recvAvail - this.#bodyPending - this.#queued - this.readableLength
  }

  // ---- Writable --------------------------------------------------------------------------

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#startSend([chunk], chunk.length, callback)
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (err?: Error | null) => void): void {
    const bufs = new Array<Buffer>(chunks.length)
    let total = 0
    for (let i = 0; i < chunks.length; i++) {
      const buf = chunks[i]!.chunk
      bufs[i] = buf
      total += buf.length
    }
    this.#startSend(bufs, total, callback)
  }

  #startSend(bufs: Buffer[], total: number, callback: (err?: Error | null) => void): void {
    if (this.#silenced) {
      callback(new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN', `stream ${this.id} is closed`))
      return
    }
    this.#pending = bufs
    this.#pendingIndex = 0
    this.#pendingOffset = 0
    this.#pendingLeft = total
    this.#pendingCallback = callback
    this.#flush()
  }

  /** Sends as much of the pending write as the window and the connection allow. */
  #flush = (): void => {
    this.#waitingDrain = false
    while (this.#pending !== null) {
      if (this.#silenced || this.destroyed) return
      if (this.#pendingLeft === 0) {
        const callback = this.#pendingCallback!
        this.#pending = null
        this.#pendingCallback = null
        callback()
        return
      }
      if (this.#sendWindow === 0) {
        if (this.#windowWaitSince === 0) this.#windowWaitSince = monotonicMs()
        return // _onWindowUpdate resumes
      }
      if (this.#host.writeBlocked) {
        this.#waitingDrain = true
        this.#host.whenWritable(this.#flush)
        return
      }
      const n = Math.min(this.#sendWindow, MAX_DATA_FRAME, this.#host.dataFrameLimit, this.#pendingLeft)
      this.#host.sendFrame(FrameType.Data, 0, this.id, n, this.#take(n))
      this.#sendWindow -= n
      this.#pendingLeft -= n
    }
  }

  /** The next `n` pending bytes as views of the written buffers (never copied). */
  #take(n: number): Buffer | Buffer[] {
    const bufs = this.#pending!
    let buf = bufs[this.#pendingIndex]!
    let off = this.#pendingOffset
    if (buf.length - off >= n) {
      const piece = off === 0 && n === buf.length ? buf : buf.subarray(off, off + n)
      off += n
      if (off === buf.length) {
        this.#pendingIndex++
        off = 0
      }
      this.#pendingOffset = off
      return piece
    }
    const parts: Buffer[] = []
    while (n > 0) {
      buf = bufs[this.#pendingIndex]!
      const take = Math.min(n, buf.length - off)
      if (take > 0) parts.push(off === 0 && take === buf.length ? buf : buf.subarray(off, off + take))
      n -= take
      off += take
      if (off === buf.length) {
        this.#pendingIndex++
        off = 0
      }
    }
    this.#pendingOffset = off
    return parts
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.#silenced) {
      callback(new YamuxError('ERR_YAMUX_SESSION_SHUTDOWN', `stream ${this.id} is closed`))
      return
    }
    this.#localFin = true
    this.#host.sendFrame(FrameType.WindowUpdate, Flag.FIN, this.id, 0)
    if (this.#remoteFin) this.#host.streamClosed(this)
    callback()
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // A stream that both sides closed needs nothing more; anything else is aborted.
    if (!this.#silenced && !(this.#localFin && this.#remoteFin)) {
      this.#host.sendFrame(FrameType.WindowUpdate, Flag.RST, this.id, 0)
    }
    this.#silenced = true
    this.#host.streamClosed(this)
    this.#queue = []
    this.#queueHead = 0
    this.#queued = 0
    this.#pending = null
    this.#pendingCallback = null
    callback(err)
  }

  /**
   * Ends the stream with `err`. The error is emitted only when someone listens for it: a
   * reset stream that nobody watches must not take the process down.
   */
  #fail(err: Error): void {
    this.destroy(this.listenerCount('error') > 0 ? err : undefined)
  }
}
