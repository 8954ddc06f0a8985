// The web port's HTTP connections once their TLS handshake is done. The listener bounds a
// connection until then (proxy/listener/); the HTTP server it is handed to never listens
// itself, so Node's own deadlines for requests (headersTimeout, requestTimeout: checked by
// a timer only a listening server starts) never run. Without the bounds here, one address
// could open connections, send nothing and have each held, with its TLS state, for good.

import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { OpenPerAddress } from '../shared/tls-gate/open-per-address.ts'

export interface HttpConnectionLimits {
  /**
   * How long each request's headers may take to arrive whole, from the handshake or from the
   * previous answer. Node's headersTimeout is 60 s for a port of its own; here the handshake
   * is already done and the API's requests are small, and a deadline (not an idle timer)
   * also ends a client that sends a byte now and then.
   */
  requestHeadersMs: number
  /** A connection silent both ways this long is closed (keep-alive's 5 s applies first between requests). */
  idleMs: number
  /**
   * Open HTTP connections, WebSockets included, from one client address (an IPv6 one per
   * /64), beyond which new ones are closed at once. A browser opens at most 6 to a host; the
   * rest is room for people behind one NAT.
   */
  perAddress: number
}

export const HTTP_CONNECTION_LIMITS: HttpConnectionLimits = { requestHeadersMs: 10_000, idleMs: 60_000, perAddress: 256 }

export class HttpConnections {
  readonly #server: Server
  readonly #limits: HttpConnectionLimits
  readonly #openByAddress: OpenPerAddress
  readonly #deadlines = new WeakMap<Duplex, NodeJS.Timeout>()
  /** Requests being answered on each connection (pipelined ones queue): the next deadline starts when none is. */
  readonly #answering = new WeakMap<Duplex, number>()

  constructor(server: Server, limits: HttpConnectionLimits = HTTP_CONNECTION_LIMITS) {
    this.#server = server
    this.#limits = limits
    this.#openByAddress = new OpenPerAddress(limits.perAddress)
    server.timeout = limits.idleMs
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket
      this.#clearDeadline(socket)
      this.#answering.set(socket, (this.#answering.get(socket) ?? 0) + 1)
      res.once('close', () => {
        const left = (this.#answering.get(socket) ?? 1) - 1
        this.#answering.set(socket, left)
        if (left === 0) this.#awaitRequest(socket)
      })
    })
    server.on('upgrade', (_req: IncomingMessage, socket: Duplex) => {
      this.#clearDeadline(socket)
      // A terminal's WebSocket may be silent for long: its own pings keep it honest.
      ;(socket as TLSSocket).setTimeout?.(0)
    })
  }

  /** Hands `socket` to the server, or closes it when `group` (undefined: a trusted balancer's own) has too many open. */
  admit(socket: TLSSocket, group: string | undefined): void {
    if (group !== undefined && !this.#openByAddress.admit(socket, group)) {
      socket.destroy()
      return
    }
    socket.once('close', () => this.#clearDeadline(socket))
    this.#awaitRequest(socket)
    this.#server.emit('connection', socket)
  }

  #awaitRequest(socket: Duplex): void {
    if (socket.destroyed) return
    this.#clearDeadline(socket)
    const timer = setTimeout(() => socket.destroy(), this.#limits.requestHeadersMs)
    timer.unref()
    this.#deadlines.set(socket, timer)
  }

  #clearDeadline(socket: Duplex): void {
    clearTimeout(this.#deadlines.get(socket))
    this.#deadlines.delete(socket)
  }
}
