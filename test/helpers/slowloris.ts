// A bounded slowloris from loopback: TCP connections that each send the 5-byte header of a
// TLS handshake record announcing 512 bytes (`16 03 01 02 00`), or another opening the
// caller gives (part of a plain SSH stream's first line, say), and then nothing, spread
// over several source addresses (127.0.0.x) and targets. The attacker never closes a
// connection itself: whatever closes was closed by the server, which is what tests assert.

import { connect, type Socket } from 'node:net'

export const SLOWLORIS_HEADER = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])

/** Eight attackers' addresses on loopback: the cluster's own processes and its users use 127.0.0.1. */
export const ATTACKERS = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`)

export interface SlowlorisCounts {
  /** Connections opened so far (connected or not). */
  opened: number
  /** Connected and sent the header. */
  connected: number
  /** Could not connect (refused, or reset before connecting). */
  failed: number
  /** Connected, then closed by the server (FIN or RST). */
  closedByServer: number
  /** Connected and still open. */
  open: number
}

export class Slowloris {
  readonly #targets: { host: string; port: number }[]
  readonly #sources: string[]
  readonly #max: number
  readonly #header: Buffer
  readonly #sockets = new Set<Socket>()
  #timer?: NodeJS.Timeout
  #next = 0
  #settled = new Set<() => void>()
  readonly counts: SlowlorisCounts = { opened: 0, connected: 0, failed: 0, closedByServer: 0, open: 0 }

  /** `targets` as host:port; at most `max` connections in all, whatever the rate; each sends `header` once. */
  constructor(targets: string[], sources: string[], max: number, header: Buffer = SLOWLORIS_HEADER) {
    this.#targets = targets.map((target) => {
      const at = target.lastIndexOf(':')
      return { host: target.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(target.slice(at + 1)) }
    })
    this.#sources = sources
    this.#max = max
    this.#header = header
  }

  /** Opens `count` connections now, round robin over targets and sources. */
  burst(count: number): void {
    for (let i = 0; i < count && this.counts.opened < this.#max; i++) this.#open()
  }

  /** Opens `perSecond` new connections a second (in ticks of 100 ms) until stop(). */
  start(perSecond: number): void {
    let owed = 0
    this.#timer = setInterval(() => {
      owed += perSecond / 10
      const now = Math.floor(owed)
      owed -= now
      this.burst(now)
    }, 100)
  }

  /** Opens no more connections. */
  stop(): void {
    clearInterval(this.#timer)
  }

  /** Resolves once every connection opened so far is closed; false if some are still open after `timeoutMs`. */
  async allClosed(timeoutMs: number): Promise<boolean> {
    if (this.#sockets.size === 0) return true
    return new Promise((resolve) => {
      const done = (result: boolean) => {
        clearTimeout(timer)
        this.#settled.delete(check)
        resolve(result)
      }
      const check = () => this.#sockets.size === 0 && done(true)
      const timer = setTimeout(() => done(false), timeoutMs)
      this.#settled.add(check)
    })
  }

  /** Closes whatever is still open (the test's cleanup, not counted as closed by the server). */
  destroy(): void {
    this.stop()
    for (const socket of this.#sockets) {
      socket.removeAllListeners('close')
      socket.destroy()
    }
    this.#sockets.clear()
  }

  #open(): void {
    const index = this.#next++
    const target = this.#targets[index % this.#targets.length]!
    const localAddress = this.#sources[Math.floor(index / this.#targets.length) % this.#sources.length]!
    const socket = connect({ ...target, localAddress })
    this.counts.opened++
    this.#sockets.add(socket)
    let connected = false
    socket.on('error', () => {})
    socket.once('connect', () => {
      connected = true
      this.counts.connected++
      this.counts.open++
      socket.write(this.#header)
    })
    socket.once('close', () => {
      this.#sockets.delete(socket)
      if (connected) {
        this.counts.open--
        this.counts.closedByServer++
      } else {
        this.counts.failed++
      }
      for (const check of this.#settled) check()
    })
  }
}

/** The last counts a process's TLS gate logged (its JSON log at debug level), or undefined. */
export function gateCounts(stderr: string): Record<string, number> | undefined {
  const lines = stderr.split('\n').filter((line) => line.startsWith('{') && line.includes('"late_hello_closed"'))
  const last = lines.at(-1)
  return last ? (JSON.parse(last) as Record<string, number>) : undefined
}
