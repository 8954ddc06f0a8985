// A session's pings: those a caller asks for (ping()), and the keepalive that notices a
// dead peer or path. Both measure the round trip that window auto-tuning needs.

import { monotonicMs } from './clock.ts'
import { Flag, YamuxError } from './const.ts'

interface PendingPing {
  start: number
  /** Its round trip feeds rttMs and rttSample (not a pacer's probe, which would crowd out the keepalive's). */
  sampled: boolean
  resolve: (rttMs: number) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

export interface PingsHost {
  readonly config: { readonly keepAliveIntervalMs: number; readonly keepAliveWhenQuietOnly: boolean; readonly connectionWriteTimeoutMs: number; readonly enableKeepAlive: boolean }
  /** Writes a Ping frame. */
  sendPing(flags: number, opaque: number): void
  /** Open streams: with keepAliveWhenQuietOnly, an idle session lets the peer's pings prove it alive. */
  openStreams(): number
  /** Ends the session: the keepalive found the peer silent. */
  keepAliveFailed(err: YamuxError): void
  /** Each round trip measured, in ms (for metrics). */
  rttSample?(rttMs: number): void
}

export class Pings {
  readonly #host: PingsHost
  #pending = new Map<number, PendingPing>()
  #nextId = 0
  #rttMs = 0
  #timer: NodeJS.Timeout | null = null
  /** The keepalive ping in flight (-1: none) and the receive count when it was sent. */
  #keepAliveId = -1
  #keepAliveSentAt = 0
  #keepAliveRecvMark = 0
  /** Chunks received so far: any traffic at all proves the peer alive. */
  #recvCount = 0

  constructor(host: PingsHost) {
    this.#host = host
  }

  /** Smoothed round-trip time in ms; 0 until the first answer. */
  get rttMs(): number {
    return this.#rttMs
  }

  /** One ping straight away measures the round trip; then the keepalive, when enabled. */
  start(): void {
    this.#sendKeepAlive()
    if (!this.#host.config.enableKeepAlive) return
    this.#timer = setInterval(() => this.#keepAliveTick(), this.#host.config.keepAliveIntervalMs)
    this.#timer.unref()
  }

  /** Anything arrived from the peer. */
  received(): void {
    this.#recvCount++
  }

  /** Measures the round trip to the peer in ms. Rejects after connectionWriteTimeoutMs. */
  ping(): Promise<number> {
    return this.#ping(true)
  }

  /**
   * A ping whose round trip only its caller sees (a paced session measuring its queue): not
   * in rttMs, which window tuning reads, nor in rttSample, the keepalive's metric; and its
   * wait for an answer keeps no process alive.
   */
  probe(): Promise<number> {
    return this.#ping(false)
  }

  #ping(sampled: boolean): Promise<number> {
    const id = this.#allocId()
    const timeoutMs = this.#host.config.connectionWriteTimeoutMs
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new YamuxError('ERR_YAMUX_TIMEOUT', `no answer to ping within ${timeoutMs} ms`))
      }, timeoutMs)
      if (!sampled) timer.unref()
      this.#pending.set(id, { start: monotonicMs(), sampled, resolve, reject, timer })
      this.#host.sendPing(Flag.SYN, id)
    })
  }

  /** A Ping frame from the peer: answers its SYN, or takes our answer. */
  onPing(flags: number, opaque: number): void {
    if (flags & Flag.SYN) {
      this.#host.sendPing(Flag.ACK, opaque)
      return
    }
    if (!(flags & Flag.ACK)) return
    const now = monotonicMs()
    if (opaque === this.#keepAliveId) {
      this.#keepAliveId = -1
      this.#sampleRtt(now - this.#keepAliveSentAt)
      return
    }
    const ping = this.#pending.get(opaque)
    if (ping === undefined) return
    this.#pending.delete(opaque)
    clearTimeout(ping.timer)
    const rtt = now - ping.start
    if (ping.sampled) this.#sampleRtt(rtt)
    ping.resolve(rtt)
  }

  /** The session ended: no more keepalives, and pings waiting for an answer fail with `reason`. */
  close(reason: Error): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    for (const ping of this.#pending.values()) {
      clearTimeout(ping.timer)
      ping.reject(reason)
    }
    this.#pending.clear()
  }

  #allocId(): number {
    do this.#nextId = (this.#nextId + 1) >>> 0
    while (this.#pending.has(this.#nextId) || this.#nextId === this.#keepAliveId)
    return this.#nextId
  }

  #sendKeepAlive(): void {
    this.#keepAliveId = -1
    this.#keepAliveId = this.#allocId()
    this.#keepAliveSentAt = monotonicMs()
    this.#keepAliveRecvMark = this.#recvCount
    this.#host.sendPing(Flag.SYN, this.#keepAliveId)
  }

  /**
   * A keepalive ping that has gone a whole interval without anything at all arriving from
   * the peer means the peer or the path is dead (a silent drop gives no other sign). Any
   * traffic counts as life, because a busy peer's answer may queue behind its data.
   */
  #keepAliveTick(): void {
    if (this.#keepAliveId !== -1 && this.#recvCount === this.#keepAliveRecvMark) {
      this.#host.keepAliveFailed(new YamuxError('ERR_YAMUX_KEEPALIVE_TIMEOUT', `nothing received for ${this.#host.config.keepAliveIntervalMs} ms`))
      return
    }
    if (this.#host.config.keepAliveWhenQuietOnly && this.#host.openStreams() === 0 && this.#recvCount !== this.#keepAliveRecvMark) {
      // The peer's own traffic (its keepalive pings) shows the path is alive.
      this.#keepAliveId = -1
      this.#keepAliveRecvMark = this.#recvCount
      return
    }
    this.#sendKeepAlive()
  }

  #sampleRtt(sample: number): void {
    this.#host.rttSample?.(sample)
    this.#rttMs = this.#rttMs === 0 ? sample : this.#rttMs * 0.875 + sample * 0.125
  }
}
