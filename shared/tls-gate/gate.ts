// The TLS gate: what a connection must do before it gets a TLS handshake. It is read until
// its whole ClientHello is in (within helloTimeoutMs of the accept, counted per source
// address while it waits), and only then queues for a handshake slot (handshake-slots.ts).
// A client that connects and sends nothing, or part of a ClientHello, holds no slot and is
// closed at the deadline, so a slowloris cannot keep anyone from their handshake.
//
// The proxy's multiplexer reads the ClientHello itself (it reads a PROXY header and sniffs
// the protocol first) and uses the gate's counts and slots; `guard` puts the whole gate in
// front of a node:tls or node:https server, as the auth server does.
//
// Usage:
//   const gate = new TlsGate({ log })
//   const https = createServer({ ...credentials, handshakeTimeout: gate.config.handshakeTimeoutMs })
//   gate.guard(https)
//   https.listen(3025)

import type { Socket } from 'node:net'
import type { TLSSocket, Server as TlsServer } from 'node:tls'
import { createLogger, type Logger } from '../log.ts'
import { addressGroup } from './address-group.ts'
import { ByteAccumulator } from './byte-accumulator.ts'
import { type ClientHelloInfo, scanClientHello } from './client-hello.ts'
import { type GateConfig, resolveGateConfig } from './config.ts'
import { HandshakeSlots } from './handshake-slots.ts'
import { OpenPerAddress } from './open-per-address.ts'
import { PendingHellos } from './pending-hellos.ts'
import { GateStats, reportStats } from './stats.ts'

export interface TlsGateOptions extends Partial<GateConfig> {
  log?: Logger
  /** The clock for queue waits; tests pass their own. */
  now?: () => number
}

export class TlsGate {
  readonly config: GateConfig
  readonly stats = new GateStats()
  readonly hellos: PendingHellos
  readonly slots: HandshakeSlots
  readonly log: Logger
  readonly #stopReporting: () => void
  /** Connections `guard` is reading, closed by close(). */
  readonly #reading = new Set<Socket>()
  /** Connections open on the guarded server, by address group. */
  readonly #open: OpenPerAddress

  constructor(options: TlsGateOptions = {}) {
    const { log, now, ...config } = options
    this.config = resolveGateConfig(config)
    this.log = log ?? createLogger('tls-gate')
    this.hellos = new PendingHellos(this.config.maxPendingHelloPerAddress, this.config.pendingHelloGraceMs, this.stats, now)
    this.slots = new HandshakeSlots(this.config, this.stats, this.log, now)
    this.#open = new OpenPerAddress(this.config.maxOpenPerAddress)
    this.#stopReporting = reportStats(this.stats, this.log)
  }

  /**
   * Lets connections reach `tls` (a node:tls or node:https server) only with a whole
   * ClientHello and a handshake slot. Give it a handshakeTimeout of config.handshakeTimeoutMs:
   * its verdict on the handshake frees the slot.
   *
   * tls.Server starts TLS from its one 'connection' listener; the gate takes that listener's
   * place and calls it once a connection may have its handshake. (Feeding a server that does
   * not listen itself would lose http.Server's request timeouts, which start on 'listening'.)
   */
  guard(tls: TlsServer): void {
    const handlers = tls.listeners('connection')
    if (handlers.length !== 1) throw new Error(`a TLS server to guard has one 'connection' listener (its own), not ${handlers.length}`)
    const startTls = handlers[0] as (socket: Socket) => void
    tls.removeListener('connection', startTls)
    const releases = new WeakMap<Socket, () => void>()
    // The TLS socket wraps ours as its `_parent` (Node's own field; there is no public one).
    const handshakeOver = (socket: TLSSocket) => {
      const parent = (socket as unknown as { _parent?: Socket })._parent
      if (parent) releases.get(parent)?.()
    }
    tls.on('secureConnection', handshakeOver)
    tls.on('tlsClientError', (_error: Error, socket: TLSSocket) => handshakeOver(socket))
    tls.on('connection', (socket: Socket) => {
      const peer = socket.remoteAddress
      // A reset must not become an uncaught exception, whatever happens to the socket later.
      socket.on('error', (error) => this.log.debug('connection error', { remote: peer, error }))
      if (peer === undefined) {
        socket.destroy()
        return
      }
      const group = addressGroup(peer)
      if (!this.#open.admit(socket, group)) {
        this.stats.openPerAddressClosed++
        socket.destroy()
        return
      }
      this.#reading.add(socket)
      this.#readHello(socket, group, (head, hello) => {
        this.#reading.delete(socket)
        socket.unshift(head)
        this.slots.request({
          socket,
          group,
          resuming: hello.resuming,
          start: (release) => {
            releases.set(socket, release)
            socket.once('close', release)
            startTls.call(tls, socket)
          },
        })
      })
    })
  }

  /** Stops the reports and closes the connections `guard` is still reading. */
  close(): void {
    this.#stopReporting()
    for (const socket of this.#reading) socket.destroy()
  }

  /**
   * Reads `socket` until its ClientHello is whole, then calls `onHello` with every byte read,
   * the socket not flowing and none of our listeners on it; closes it if the hello is late,
   * invalid, or its group has too many waiting.
   */
  #readHello(socket: Socket, group: string, onHello: (head: Buffer, hello: ClientHelloInfo) => void): void {
    const gathered = new ByteAccumulator()
    let head: Buffer = Buffer.alloc(0)
    let settled = false
    const settle = () => {
      settled = true
      hold.release()
      clearTimeout(timer)
      this.#reading.delete(socket)
      socket.off('readable', read)
      socket.off('end', closed)
      socket.off('close', closed)
    }
    const refuse = (reason: string) => {
      if (settled) return
      settle()
      this.log.debug(`connection closed before its TLS handshake: ${reason}`, { remote: socket.remoteAddress })
      socket.destroy()
    }
    const closed = () => refuse('closed by the client')
    const read = () => {
      let chunk: Buffer | null
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        head = gathered.append(chunk)
        const scan = scanClientHello(head, this.config.maxClientHelloBytes)
        if (scan.state === 'incomplete') continue
        if (scan.state === 'invalid') {
          this.stats.invalidHelloClosed++
          refuse(`not a ClientHello: ${scan.reason}`)
          return
        }
        settle()
        onHello(head, scan)
      }
    }
    const hold = this.hellos.hold(group, () => refuse(`${this.config.maxPendingHelloPerAddress} newer connections from ${group} wait for their ClientHello`))
    const timer = afterDeadline(this.config.helloTimeoutMs, () => {
      if (settled) return
      this.stats.lateHelloClosed++
      refuse(`no whole ClientHello within ${this.config.helloTimeoutMs} ms`)
    })
    socket.on('readable', read)
    socket.on('end', closed)
    socket.on('close', closed)
  }
}

/**
 * Calls `late` once `ms` have passed and the event loop has then read what arrived meanwhile:
 * timers run before the loop reads its sockets, so after a stall (a busy CPU, a long
 * collection) a ClientHello that arrived in time may still wait in the kernel. The check
 * phase (setImmediate) comes after that read.
 */
export function afterDeadline(ms: number, late: () => void): NodeJS.Timeout {
  const timer = setTimeout(() => setImmediate(late), ms)
  timer.unref()
  return timer
}
