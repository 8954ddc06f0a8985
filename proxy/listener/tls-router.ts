// TLS on a multiplexed port: terminates TLS on a routed connection and hands the secure
// socket to the handler for the ALPN protocol the client asked for. Client certificates
// are requested but not enforced here: each handler decides from `socket.authorized`
// (the tunnel requires one; web endpoints may not).
//
// Each connection gets a TLSSocket of its own rather than going through a tls.Server, so
// that the secure context is fetched per connection (certificates and CAs rotate without
// touching live connections) and the ALPN choice can see the negotiated TLS version. The
// price: tls.Server's authorization step (setting `authorized`) and per-connection verify
// mode are not public API on a bare TLSSocket, so we make the same native calls Node's
// tls.Server and TLSSocket.renegotiate make; the tests pin that behaviour.

import { EventEmitter } from 'node:events'
import { type SecureContext, TLSSocket } from 'node:tls'
import { createLogger, type Logger } from '../../shared/log.ts'
import { TUNNEL_ALPN } from '../../shared/protocol/tunnel.ts'
import { defaultGateConfig } from '../../shared/tls-gate/config.ts'
import { TlsGate } from '../../shared/tls-gate/gate.ts'
import { ACME_TLS_ALPN } from '../acme/tls-alpn-certificate.ts'
import { type ChallengeLookup, tlsAlpnHooks } from '../acme/tls-alpn-hooks.ts'
import { type ClientHelloInfo, NO_APPLICATION_PROTOCOL_ALERT, scanClientHello } from './client-hello.ts'
import type { RoutedConnection } from './multiplexer.ts'

export type AlpnHandler = (socket: TLSSocket, conn: RoutedConnection) => void

/** The key in `alpn` for clients that offer no ALPN at all. */
export const NO_ALPN = ''

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = defaultGateConfig.handshakeTimeoutMs

export interface TlsRouterOptions {
  /**
   * The credentials for the next handshake, called once per connection. Keep the context
   * cached and replace it when certificates change: building one parses every PEM.
   * It decides the client CAs too (`ca`), and the TLS versions (Node's default floor,
   * TLS 1.2, is what the router expects; anything older is refused after the handshake).
   */
  secureContext: () => SecureContext
  /**
   * A different context for some TLS server names (the ACME certificate for the proxy's
   * public names); undefined keeps secureContext's.
   */
  contextByName?: (servername: string) => SecureContext | undefined
  /** TLS-ALPN-01: the challenge certificate for a name being validated, if any. */
  challenge?: ChallengeLookup
  /**
   * Why to refuse a client from the ALPN names it offers, before any key exchange (the
   * client gets the alert no_application_protocol); undefined lets the handshake go on.
   * Asked from the ClientHello bytes the multiplexer read when they hold it whole (no TLS
   * socket, no handshake slot), else from the handshake's ALPN callback.
   */
  declines?: (protocols: string[]) => string | undefined
  /** Handlers by ALPN protocol, most preferred first; NO_ALPN ('') for clients without ALPN. */
  alpn: Record<string, AlpnHandler>
  /** Whether to ask the client for a certificate, by negotiated protocol. Default: always. */
  requestCert?: (alpn: string) => boolean
  /** Protocols served only over TLS 1.3. Default: the tunnel's. */
  tls13Only?: readonly string[]
  /**
   * The handshake slots (and their limits per source address) and the handshake deadline:
   * shared/tls-gate/config.ts says what each is for. Share the multiplexer's gate so that
   * the limits hold per process. Default: a gate of its own from the settings below.
   */
  gate?: TlsGate
  /** A client that has not finished the handshake this long after it started is closed. */
  handshakeTimeoutMs?: number
  /** For a gate of the router's own: handshakes at once, the queue and its wait. */
  maxHandshakes?: number
  handshakeQueue?: number
  handshakeQueueWaitMs?: number
  log?: Logger
}

const ACCEPTED_VERSIONS: ReadonlySet<string | null> = new Set(['TLSv1.2', 'TLSv1.3'])

/**
 * Given to every TLSSocket as its `server`, for read sizes. The multiplexer has already read
 * the ClientHello, which reaches the socket through TLSSocket's replay of buffered bytes;
 * the first buffer of the native read ring is then sized to the ClientHello and stays in
 * the ring for the connection's life, so that every other read from the kernel is that
 * small: several reads per TLS record, and a bulk transfer through the proxy made many
 * times the read calls of a plain TLS server (see bench:tunnel). With a 'newSession'
 * listener Node enables the session callbacks, which size that first buffer to the largest
 * ClientHello, 16 KiB. Sessions are not cached (TLS 1.3 resumes from tickets): the listener
 * only lets the handshake go on, and with no 'resumeSession' listener Node resumes nothing
 * from here.
 */
const readSizing = new EventEmitter()
readSizing.on('newSession', (_id: Buffer, _session: Buffer, done: () => void) => done())

export function createTlsRouter(options: TlsRouterOptions): (conn: RoutedConnection) => void {
  const offered = Object.keys(options.alpn).filter((name) => name !== NO_ALPN)
  for (const name of offered) {
    if (Buffer.byteLength(name) > 255) throw new RangeError(`ALPN protocol names are at most 255 bytes: ${name}`)
  }
  const requestCert = options.requestCert ?? (() => true)
  const tls13Only = new Set(options.tls13Only ?? [TUNNEL_ALPN])
  const log = options.log ?? createLogger('proxy:tls')
  const gate =
    options.gate ??
    new TlsGate({
      log,
      maxHandshakes: options.maxHandshakes,
      handshakeQueue: options.handshakeQueue,
      handshakeQueueWaitMs: options.handshakeQueueWaitMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
    })
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? gate.config.handshakeTimeoutMs

  /** Why `options.declines` refuses these ALPN names (logged), or undefined. */
  const declineReason = (protocols: string[], remote: string): string | undefined => {
    const declined = options.declines?.(protocols)
    if (declined !== undefined) log.debug(`TLS handshake declined: ${declined}`, { remote, declined })
    return declined
  }

  /**
   * A dial the router would decline from its ALPN names is turned away from the ClientHello
   * bytes the multiplexer read, with the alert OpenSSL would send: no TLS socket, no
   * handshake slot, no wait in the queue. Agents returning to a restarted proxy land on the
   * others most of the time, so these are most of the connections a proxy gets then.
   * A ClientHello whose names could not be read takes the handshake path, which declines it too.
   */
  const declinedEarly = (conn: RoutedConnection, hello: ClientHelloInfo | undefined): boolean => {
    if (!options.declines) return false
    const protocols = hello?.alpn
    // A validator's ClientHello is the ACME hooks' to answer first, as in the ALPN callback.
    if (protocols === undefined || protocols.includes(ACME_TLS_ALPN)) return false
    if (declineReason(protocols, conn.clientAddress) === undefined) return false
    conn.socket.end(NO_APPLICATION_PROTOCOL_ALERT, () => conn.socket.destroy())
    return true
  }

  /** The multiplexer read the ClientHello whole; a connection routed otherwise is read here. */
  const helloOf = (conn: RoutedConnection): ClientHelloInfo | undefined => {
    if (conn.hello) return conn.hello
    const scan = scanClientHello(conn.head)
    return scan.state === 'complete' ? scan : undefined
  }

  const admit = (conn: RoutedConnection) => {
    const hello = helloOf(conn)
    if (declinedEarly(conn, hello)) return
    gate.slots.request({
      socket: conn.socket,
      group: conn.group,
      resuming: hello?.resuming ?? false,
      start: (release) => handshake(conn, release),
    })
  }

  const handshake = (conn: RoutedConnection, finished: () => void) => {
    const remote = conn.clientAddress
    let secureContext: SecureContext
    try {
      secureContext = options.secureContext()
    } catch (error) {
      log.error('no TLS credentials for a new connection', { remote, error })
      conn.socket.destroy()
      finished()
      return
    }
    // Without ALPN the callback below never runs, so start with the no-ALPN choice.
    const initialRequest = requestCert(NO_ALPN)
    const hooks = options.challenge || options.contextByName ? tlsAlpnHooks(options.challenge ?? (() => undefined), options.contextByName) : undefined
    const socket: TLSSocket = new TLSSocket(conn.socket, {
      isServer: true,
      server: readSizing as never,
      secureContext,
      requestCert: initialRequest,
      rejectUnauthorized: false,
      ...(hooks ? { SNICallback: hooks.SNICallback } : {}),
      ALPNCallback: ({ servername, protocols }) => {
        const answering = hooks?.selectAlpn({ servername, protocols })
        if (answering !== undefined) return answering
        if (declineReason(protocols, remote) !== undefined) return undefined
        const version = socket.getProtocol()
        const chosen = offered.find((name) => protocols.includes(name) && (version === 'TLSv1.3' || !tls13Only.has(name)))
        if (chosen === undefined) {
          // Node answers undefined with the fatal alert no_application_protocol.
          log.debug('TLS handshake refused: no acceptable ALPN protocol', { remote, offered: protocols, version })
          return undefined
        }
        // The certificate request goes out after this callback, so it can still change.
        if (requestCert(chosen) !== initialRequest) nativeHandle(socket)?.setVerifyMode(!initialRequest, false)
        return chosen
      },
    })
    socket.on('error', (error) => log.debug('TLS connection error', { remote, error }))

    let inProgress = true
    const done = () => {
      if (!inProgress) return
      inProgress = false
      clearTimeout(timer)
      finished()
    }
    const timer = setTimeout(() => {
      log.debug(`TLS handshake not finished within ${handshakeTimeoutMs} ms`, { remote })
      socket.destroy()
    }, handshakeTimeoutMs)
    timer.unref()
    socket.once('close', done)
    // The listener is half-open (handlers may answer after a FIN), so a client that gives
    // up mid-handshake would otherwise hold its slot until the deadline.
    const gaveUp = () => {
      if (!inProgress) return
      log.debug('the client left during the TLS handshake', { remote })
      socket.destroy()
    }
    socket.once('end', gaveUp)

    socket.once('secure', () => {
      done()
      socket.off('end', gaveUp)
      // A TLS-ALPN-01 validation is over once the handshake is (RFC 8737 section 3).
      if (hooks?.answering) {
        log.debug('answered an ACME TLS-ALPN-01 validation', { remote })
        socket.end()
        return
      }
      const alpn = socket.alpnProtocol || NO_ALPN
      const version = socket.getProtocol()
      const refuse = (reason: string) => {
        log.debug(`TLS connection refused: ${reason}`, { remote, alpn, version })
        socket.destroy()
      }
      // Defence in depth: a secure context built with a lower floor must not let these in.
      if (!ACCEPTED_VERSIONS.has(version)) return refuse('TLS 1.2 or later required')
      if (tls13Only.has(alpn) && version !== 'TLSv1.3') return refuse(`${alpn} requires TLS 1.3`)
      const handler = Object.hasOwn(options.alpn, alpn) ? options.alpn[alpn] : undefined
      if (!handler) return refuse(alpn === NO_ALPN ? 'the client offered no ALPN protocol' : `no handler for ${alpn}`)
      if (requestCert(alpn)) recordAuthorization(socket)
      try {
        handler(socket, conn)
      } catch (error) {
        log.error(`${alpn || 'no-ALPN'} handler failed`, { remote, error })
        socket.destroy()
      }
    })
  }

  return admit
}

/** The native TLS handle's calls that tls.Server makes and TLSSocket does not expose. */
interface NativeTlsHandle {
  setVerifyMode(requestCert: boolean, rejectUnauthorized: boolean): void
  verifyError(): { code?: string } | null | undefined
}

function nativeHandle(socket: TLSSocket): NativeTlsHandle | null {
  return (socket as unknown as { _handle: NativeTlsHandle | null })._handle ?? null
}

/**
 * What tls.Server does for its sockets after the handshake: `authorized` when the client's
 * certificate chains to a CA of the secure context, else `authorizationError` says why.
 * A TLS 1.3 resumption carries no certificate and verifies "OK"; it is not authorized.
 */
function recordAuthorization(socket: TLSSocket): void {
  const verifyError = nativeHandle(socket)?.verifyError()
  const result = socket as unknown as { authorized: boolean; authorizationError?: string }
  if (verifyError) result.authorizationError = verifyError.code ?? 'CERT_VERIFY_FAILED'
  else if (!socket.getPeerX509Certificate()) result.authorizationError = 'UNABLE_TO_GET_ISSUER_CERT'
  else result.authorized = true
}
