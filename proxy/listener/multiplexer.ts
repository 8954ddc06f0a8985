// One TCP port for every protocol the proxy speaks. Each connection is read until its
// protocol is known: first an optional PROXY protocol header (only from a trusted load
// balancer), then the first bytes of the stream itself (TLS, HTTP or SSH), and for TLS on
// until its whole ClientHello is in (shared/tls-gate: a connection holds no handshake slot
// before that, and one source address may have only so many in this state). A plain SSH
// stream's first line is its ClientHello: the proxy signs a hello in a handshake slot once
// that line is whole, and not before. The connection is then handed to the listener for
// that protocol with the bytes read so far put back.
//
// Hand-over: the socket reaches the handler as if fresh. The sniffed bytes are back at the
// front of its read buffer (`socket.unshift`), no listener of ours reads from it, and it is
// not flowing, so a consumer attached later loses nothing: `new tls.TLSSocket(socket)` and
// `http.Server.emit('connection', socket)` both see the whole stream (the tests check both).
// We read with 'readable' rather than 'data' for this: once our 'readable' listener is gone,
// Node lets the stream flow again as soon as a 'data' listener appears, whereas a stream
// paused after 'data' stays paused and an http.Server would wait on it forever.

import { EventEmitter } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { AddressList } from '../../shared/address-list.ts'
import { createLogger, type Logger } from '../../shared/log.ts'
import { addressGroup } from '../../shared/tls-gate/address-group.ts'
import { ByteAccumulator } from '../../shared/tls-gate/byte-accumulator.ts'
import { type ClientHelloInfo, scanClientHello } from '../../shared/tls-gate/client-hello.ts'
import { afterDeadline, TlsGate } from '../../shared/tls-gate/gate.ts'
import type { HelloHold } from '../../shared/tls-gate/pending-hellos.ts'
import { type ProxyHeader, ProxyHeaderParser, proxyHeaderVersion } from './proxy-protocol.ts'
import { type Protocol, sniffProtocol } from './sniff.ts'

export type { Protocol } from './sniff.ts'

export interface MultiplexerOptions {
  /** IPs and CIDRs allowed to send a PROXY header; a header from anyone else is refused. */
  trustedLoadBalancers: string[]
  /** When true, connections from trusted load balancers must carry a header. Default false. */
  requireProxyHeader?: boolean
  /** A connection whose protocol is not known this long after it opened is closed. */
  sniffTimeoutMs?: number
  /**
   * The ClientHello deadline (helloTimeoutMs, from the accept, within sniffTimeoutMs) and
   * the per-address count of connections waiting for theirs. Share one gate between the
   * listeners and the TLS router of a process so that the limits hold per process.
   * Default: a gate of its own.
   */
  gate?: TlsGate
  log?: Logger
}

export const DEFAULT_SNIFF_TIMEOUT_MS = 10_000

/**
 * The longest first line of a plain SSH stream, newline included: room for other versions'
 * names than this one's (SSH_STREAM_MAGIC), so that the handler can tell such a client why not.
 */
const MAX_STREAM_LINE_BYTES = 64

export interface RoutedConnection {
  /** The TCP connection, not flowing, with `head` put back at the front of its buffer. */
  socket: Socket
  protocol: RoutedProtocol
  /** The client: from the PROXY header when it names one, else the TCP peer. */
  clientAddress: string
  clientPort: number
  /** True when clientAddress and clientPort came from a PROXY header. */
  viaProxyHeader: boolean
  /** The PROXY header, when the connection carried one (also a LOCAL one). */
  proxyHeader?: ProxyHeader
  /** The bytes read while sniffing (after any PROXY header); already put back on the socket. */
  head: Buffer
  /**
   * The source that per-address limits count the connection against (clientAddress, an
   * IPv6 one per /64); undefined for a trusted load balancer's own connections.
   */
  group: string | undefined
  /** TLS: what the ClientHello (whole, in `head`) offers. */
  hello?: ClientHelloInfo
}

export type RoutedProtocol = Exclude<Protocol, 'unknown'>

export interface MultiplexerEvents {
  tls: [conn: RoutedConnection]
  http: [conn: RoutedConnection]
  ssh: [conn: RoutedConnection]
  'ssh-stream': [conn: RoutedConnection]
  /** A connection closed before routing; `remoteAddress` is the TCP peer. */
  rejected: [reason: string, remoteAddress: string]
}

export class Multiplexer extends EventEmitter<MultiplexerEvents> {
  readonly trusted: AddressList
  readonly requireProxyHeader: boolean
  readonly sniffTimeoutMs: number
  readonly gate: TlsGate
  readonly log: Logger

  constructor(options: MultiplexerOptions) {
    super()
    this.trusted = new AddressList(options.trustedLoadBalancers, 'trusted address')
    this.requireProxyHeader = options.requireProxyHeader ?? false
    this.sniffTimeoutMs = options.sniffTimeoutMs ?? DEFAULT_SNIFF_TIMEOUT_MS
    if (!(this.sniffTimeoutMs > 0)) throw new RangeError(`sniffTimeoutMs must be positive, got ${options.sniffTimeoutMs}`)
    this.log = options.log ?? createLogger('proxy:listener')
    this.gate = options.gate ?? new TlsGate({ log: this.log })
  }

  /**
   * Routes one accepted connection; attach to a net.Server's 'connection' event. Create
   * that server with `allowHalfOpen: true` (as listen() does) if handlers answer after the
   * client's FIN.
   */
  handle(socket: Socket): void {
    new Sniffer(this, socket)
  }

  /**
   * A server of its own on host:port whose connections go through handle(). Half-open like
   * http.Server's: a client's FIN does not end our side, so an answer still in the making
   * (or a relay's data flowing the other way) is not cut off; handlers close when done.
   * No Nagle delay: interactive SSH and small tunnel frames must go out at once.
   */
  listen(host: string, port: number): Promise<Server> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.handle(socket))
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve(server)
      })
    })
  }
}

/** One connection on its way from accepted to routed (or refused). */
class Sniffer {
  readonly #mux: Multiplexer
  readonly #socket: Socket
  readonly #peer: string
  readonly #fromTrusted: boolean
  readonly #parser = new ProxyHeaderParser()
  readonly #acceptedAt = Date.now()
  #timer: NodeJS.Timeout
  #header: ProxyHeader | undefined
  /** Per-address limits count the connection in this group (undefined: a balancer's own). */
  #group: string | undefined
  /** Its place among the connections waiting for a ClientHello. */
  #hold: HelloHold
  #hello: ClientHelloInfo | undefined
  #awaitingHello = false
  /** Whether any PROXY header has been read or ruled out. */
  #headerDone = false
  /** Bytes after the PROXY header, if any: replayed to the handler. */
  #head: Buffer = Buffer.alloc(0)
  /** Gathers #head (a view of it) until the connection is routed. */
  #gathered = new ByteAccumulator()
  #settled = false

  readonly #onReadable = () => this.#read()
  readonly #onEnd = () => this.#reject('closed by the client before its protocol was known')
  readonly #onClose = () => this.#reject('connection lost before its protocol was known')

  constructor(mux: Multiplexer, socket: Socket) {
    this.#mux = mux
    this.#socket = socket
    this.#peer = socket.remoteAddress ?? ''
    this.#fromTrusted = mux.trusted.has(this.#peer)
    // Stays for the socket's life: a reset must not become an uncaught exception, whatever
    // the handler does or does not listen for.
    socket.on('error', (error) => mux.log.debug('connection error', { remote: this.#peer, error }))
    // The deadline covers the whole sniff, so a client dripping a byte at a time is cut off too.
    this.#timer = afterDeadline(mux.sniffTimeoutMs, () => this.#late(`protocol not known within ${mux.sniffTimeoutMs} ms`))
    // A balancer's connection is counted against its client once the PROXY header names one.
    this.#group = this.#fromTrusted ? undefined : addressGroup(this.#peer)
    this.#hold = this.#holdPlace()
    if (socket.destroyed || this.#peer === '') {
      this.#reject('closed before it could be read')
      return
    }
    socket.on('readable', this.#onReadable)
    socket.on('end', this.#onEnd)
    socket.on('close', this.#onClose)
  }

  #read(): void {
    let chunk: Buffer | null
    // Once routed, the handler owns the socket: stop reading at once.
    while (!this.#settled && (chunk = this.#socket.read() as Buffer | null) !== null) this.#take(chunk)
  }

  #take(chunk: Buffer): void {
    if (!this.#headerDone) {
      if (!this.#readProxyHeader(chunk)) return
    } else {
      this.#head = this.#gathered.append(chunk)
    }
    const again = proxyHeaderVersion(this.#head)
    if (again === undefined) return
    if (again !== 0) {
      this.#reject('a second PROXY protocol header follows the first', 'warn')
      return
    }
    const protocol = sniffProtocol(this.#head)
    if (protocol === undefined) return
    if (protocol === 'unknown') this.#reject('unrecognised protocol')
    else if (this.#mux.listenerCount(protocol) === 0) this.#reject(`no handler for ${protocol} on this port`)
    else if (protocol === 'tls' ? this.#helloRead() : protocol === 'ssh-stream' ? this.#streamLineRead() : true) this.#route(protocol)
  }

  /**
   * Whether a plain SSH stream's whole first line is in (the handler judges its version and
   * answers one it does not speak); closes the connection if the line grows too long.
   */
  #streamLineRead(): boolean {
    if (this.#head.includes(0x0a)) return true
    if (this.#head.length >= MAX_STREAM_LINE_BYTES) {
      this.#mux.gate.stats.invalidHelloClosed++
      this.#reject(`a plain SSH stream's first line is longer than ${MAX_STREAM_LINE_BYTES} bytes`)
      return false
    }
    this.#awaitHello("a plain SSH stream's first line")
    return false
  }

  /** Whether the whole ClientHello is in; closes the connection if it cannot become one. */
  #helloRead(): boolean {
    const gate = this.#mux.gate
    const scan = scanClientHello(this.#head, gate.config.maxClientHelloBytes)
    if (scan.state === 'complete') {
      this.#hello = { alpn: scan.alpn, resuming: scan.resuming }
      return true
    }
    if (scan.state === 'invalid') {
      gate.stats.invalidHelloClosed++
      this.#reject(`not a ClientHello: ${scan.reason}`)
    } else {
      this.#awaitHello('ClientHello')
    }
    return false
  }

  /** Gives the connection until the hello deadline to finish `what` (once armed, it stays). */
  #awaitHello(what: string): void {
    if (this.#awaitingHello) return
    // Counted from the accept, like the sniff's deadline, and never later than that one.
    this.#awaitingHello = true
    const timeoutMs = Math.min(this.#mux.gate.config.helloTimeoutMs, this.#mux.sniffTimeoutMs)
    clearTimeout(this.#timer)
    this.#timer = afterDeadline(Math.max(0, this.#acceptedAt + timeoutMs - Date.now()), () => this.#late(`no whole ${what} within ${timeoutMs} ms`))
  }

  /** Counts the connection as waiting for its protocol and ClientHello, in #group. */
  #holdPlace(): HelloHold {
    const gate = this.#mux.gate
    return gate.hellos.hold(this.#group, () => this.#reject(`${gate.config.maxPendingHelloPerAddress} newer connections from ${this.#group} wait for their ClientHello`))
  }

  #late(reason: string): void {
    if (this.#settled) return
    this.#mux.gate.stats.lateHelloClosed++
    this.#reject(reason)
  }

  /** Feeds the header stage; true once it is over and #head holds the stream's first bytes. */
  #readProxyHeader(chunk: Buffer): boolean {
    if (!this.#fromTrusted) {
      // Never parse a header we would refuse anyway: the signature is enough to refuse it.
      this.#head = this.#gathered.append(chunk)
      const version = proxyHeaderVersion(this.#head)
      if (version === undefined) return false
      if (version !== 0) {
        this.#reject(`PROXY protocol header from untrusted address ${this.#peer} refused`, 'warn')
        return false
      }
      this.#headerDone = true
      return true
    }
    let result: ReturnType<ProxyHeaderParser['push']>
    try {
      result = this.#parser.push(chunk)
    } catch (error) {
      this.#reject(`from load balancer ${this.#peer}: ${(error as Error).message}`, 'warn')
      return false
    }
    if (!result.done) return false
    if (!result.header && this.#mux.requireProxyHeader) {
      this.#reject(`PROXY protocol header missing from load balancer ${this.#peer}`, 'warn')
      return false
    }
    this.#header = result.header
    this.#head = result.rest
    this.#gathered = new ByteAccumulator(result.rest)
    this.#headerDone = true
    if (result.header?.sourceAddress !== undefined) {
      this.#group = addressGroup(result.header.sourceAddress)
      this.#hold.release()
      this.#hold = this.#holdPlace()
    }
    return true
  }

  #route(protocol: RoutedProtocol): void {
    const mux = this.#mux
    this.#settle()
    const socket = this.#socket
    if (this.#head.length > 0) socket.unshift(this.#head)
    const header = this.#header
    const fromHeader = header?.sourceAddress !== undefined && header.sourcePort !== undefined
    const conn: RoutedConnection = {
      socket,
      protocol,
      clientAddress: fromHeader ? header.sourceAddress! : this.#peer,
      clientPort: fromHeader ? header.sourcePort! : (socket.remotePort ?? 0),
      viaProxyHeader: fromHeader,
      head: this.#head,
      group: this.#group,
    }
    if (header) conn.proxyHeader = header
    if (this.#hello) conn.hello = this.#hello
    try {
      mux.emit(protocol, conn)
    } catch (error) {
      // One handler's bug must not take the listener (and every other connection) down.
      mux.log.error(`${protocol} handler failed`, { remote: this.#peer, protocol, error })
      socket.destroy()
    }
  }

  #reject(reason: string, level: 'debug' | 'warn' = 'debug'): void {
    if (this.#settled) return
    this.#settle()
    this.#mux.log[level](reason, { remote: this.#peer })
    this.#socket.destroy()
    this.#mux.emit('rejected', reason, this.#peer)
  }

  #settle(): void {
    this.#settled = true
    this.#hold.release()
    clearTimeout(this.#timer)
    this.#socket.off('readable', this.#onReadable)
    this.#socket.off('end', this.#onEnd)
    this.#socket.off('close', this.#onClose)
  }
}
