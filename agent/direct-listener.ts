// A node that joined an auth server directly has no tunnel: proxies dial it here instead.
// Mutual TLS: the node presents its host certificate, and only a proxy of this cluster
// (certificate from a host CA trusted now) may open a service. Behind the handshake each
// connection carries what one tunnel stream does (one JSON line naming the service, then
// its bytes), so the services and everything above them are the same in both modes.
// The port may face any network, so the TLS gate of the proxy and the auth server stands in
// front of it: a connection holds nothing but a descriptor until its whole ClientHello is in
// (within 2 s, only so many waiting per source address), and handshakes take their turn.

import type { AddressInfo } from 'node:net'
import { createServer, type Server, type TLSSocket } from 'node:tls'
import { joinHostPort, parseHostPort } from '../shared/address.ts'
import { judgeCertificate } from '../shared/cert-trust.ts'
import { DEFAULTS } from '../shared/config.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import { TlsGate } from '../shared/tls-gate/gate.ts'
import type { GateStats } from '../shared/tls-gate/stats.ts'
import { type ServiceTable, serveStream } from './services.ts'

export interface DirectListenerOptions {
  /** `ssh_service.listen_addr`. */
  listenAddr: string
  identity: NodeIdentity
  services: ServiceTable
  /** TCP keepalive on accepted connections, so a proxy that vanished is noticed. */
  keepAliveIntervalMs: number
  log: Logger
}

export class DirectListener {
  private readonly options: DirectListenerOptions
  private identity: NodeIdentity
  private readonly server: Server
  private readonly gate: TlsGate
  /** Every accepted connection, closed with the listener. */
  /** Open connections, with the host ID of the proxy on the other end. */
  private readonly open = new Map<TLSSocket, string>()
  private refusedProxies = new Set<string>()

  constructor(options: DirectListenerOptions) {
    this.options = options
    this.identity = options.identity
    this.gate = new TlsGate({ log: options.log })
    this.server = createServer({
      ...contextOptions(options.identity),
      requestCert: true,
      // Judged in accept(), where the reason is logged and resumed sessions are checked too.
      rejectUnauthorized: false,
      // The gate's deadline for a handshake, which frees its slot (gate.ts).
      handshakeTimeout: this.gate.config.handshakeTimeoutMs,
      // A proxy passes on a user's half close; the service's answer must still come back.
      allowHalfOpen: true,
    })
    this.server.on('secureConnection', (socket: TLSSocket) => this.accept(socket))
    // Node reports a handshake that ran out of time here, and leaves the socket open.
    this.server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      options.log.debug(`direct connection from ${socket.remoteAddress} closed before its handshake ended: ${error.message}`)
      socket.destroy()
    })
    this.gate.guard(this.server)
  }

  /** What the TLS gate in front of the port counts (for the status). */
  get handshakeGate(): GateStats {
    return this.gate.stats
  }

  /** Listens on `listenAddr`; resolves with the port bound (the one configured, or a free one for port 0). */
  async listen(): Promise<number> {
    const { host, port } = parseHostPort(this.options.listenAddr, DEFAULTS.sshPort)
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        resolve()
      })
    }).catch((error: NodeJS.ErrnoException) => {
      throw new Error(`cannot listen on ssh_service.listen_addr ${this.options.listenAddr}: ${error.code === 'EADDRINUSE' ? 'the address is in use' : error.message}`)
    })
    const bound = (this.server.address() as AddressInfo).port
    this.options.log.info(`serving proxies directly on ${joinHostPort(host, bound)}`)
    return bound
  }

  /** The address listened on, once listening. */
  get address(): string | undefined {
    const bound = this.server.address() as AddressInfo | null
    return bound ? joinHostPort(bound.address, bound.port) : undefined
  }

  /**
   * The proxies the cluster refuses (removed or locked), as the auth server's heartbeat
   * answers tell them: their certificates, still in date, are refused, and their open
   * connections closed.
   */
  setRefusedProxies(hostIds: string[]): void {
    this.refusedProxies = new Set(hostIds)
    for (const [socket, proxyId] of this.open) {
      if (this.refusedProxies.has(proxyId)) {
        this.options.log.info(`direct connection from proxy ${proxyId} closed: the cluster refuses the proxy`, { proxy_id: proxyId, refused: 'removed or locked' })
        socket.destroy()
      }
    }
  }

  /** Renewed certificates or new trusted CAs: new connections get and judge by them; live ones carry on. */
  setIdentity(identity: NodeIdentity): void {
    this.identity = identity
    this.server.setSecureContext(contextOptions(identity))
  }

  private accept(socket: TLSSocket): void {
    const { log } = this.options
    const from = `${socket.remoteAddress}:${socket.remotePort}`
    socket.on('error', () => {})
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined
    // Judged here, not only by OpenSSL: a resumed TLS session skips its certificate checks.
    const verdict = cert ? judgeCertificate(cert, { clusterName: this.identity.clusterName, caPems: this.identity.hostCAPems, role: 'proxy' }) : undefined
    if (!verdict?.trusted) {
      const reason = verdict && !verdict.trusted ? verdict.reason : String(socket.authorizationError ?? 'no client certificate')
      // Scanners of an open port come without a certificate: worth a warning only with one.
      const level = socket.getPeerCertificate()?.raw ? 'warn' : 'debug'
      log[level](`direct connection from ${from} refused: ${reason}`, { from, refused: reason })
      socket.destroy()
      return
    }
    const proxyId = verdict.subject.commonName
    if (this.refusedProxies.has(proxyId)) {
      log.warn(`direct connection from ${from} refused: proxy ${proxyId} is removed or locked`, { from, proxy_id: proxyId, refused: 'removed or locked' })
      socket.destroy()
      return
    }
    this.open.set(socket, proxyId)
    socket.once('close', () => this.open.delete(socket))
    socket.setNoDelay(true)
    socket.setKeepAlive(true, this.options.keepAliveIntervalMs)
    log.debug(`direct connection from proxy ${verdict.subject.nodename ?? verdict.subject.commonName}`, { from, proxy_id: verdict.subject.commonName })
    void serveStream(socket, this.options.services, log)
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.gate.close()
    for (const socket of this.open.keys()) socket.destroy()
    await closed
  }
}

/** What the TLS context holds (setSecureContext replaces all of it, so the version floor is here too). */
function contextOptions(identity: NodeIdentity) {
  return { key: identity.tlsKeyPem, cert: identity.tlsCertPem, ca: identity.hostCAPems, minVersion: 'TLSv1.3' as const }
}
