// How a proxy reaches a service on a node: through the node's reverse tunnel when it holds
// one, else by dialling the node directly at the address its heartbeats report (a node
// that joined an auth server directly). The direct leg is mutual TLS: this proxy presents
// its own certificate, and the node must present the host certificate of the very node
// asked for. Either way the stream starts with the same one-line request and reply, so the
// user gateway above sees no difference. A host the cluster removed or locked is never
// dialled, whatever address its last heartbeat left, and its open direct legs are closed.

import { X509Certificate } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { type ConnectionOptions, connect, createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls'
import type { Access } from '../shared/access.ts'
import { joinHostPort } from '../shared/address.ts'
import { certSubject } from '../shared/cert-subject.ts'
import { WarrenError } from '../shared/errors.ts'
import type { Logger } from '../shared/log.ts'
import { type DialRequestIn, parseDialReply } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import type { DirectNodeEntry } from '../shared/protocol/proxies.ts'
import { defaultConfig as yamuxDefaults } from '../shared/yamux/index.ts'
import type { ConnectionLimits, Lease } from './connection-limits.ts'
import { DIRECT_NODES_MISS_REFRESH_MS, type DirectNode, DirectNodeBook } from './direct-nodes.ts'

/**
 * A direct node must accept the TCP connection and finish the TLS handshake within this
 * time: the user waits on it, and a node that vanished (a stale address) shows this way.
 */
export const DIRECT_DIAL_TIMEOUT_MS = 10_000

/**
 * Streams one user may hold open at once to one node through this proxy (SSH connections,
 * forwarded ports, web terminals together): a quarter of what the node's tunnel to this
 * proxy carries (maxIncomingStreams, beyond which the node resets new streams), so that one
 * user's idle forwards cannot fill the tunnel and keep everyone else from the node; room
 * still for a browser through a forward (about six connections per host) and a user's
 * scripts in parallel.
 */
export const MAX_STREAMS_PER_USER_PER_NODE = yamuxDefaults.maxIncomingStreams / 4

/** What this proxy presents and trusts; they change with renewals and CA rotations. */
export interface ProxyCredentials {
  keyPem: string
  certPem: string
  hostCAPems: string[]
}

export interface NodeDialerOptions {
  /** The reverse tunnels this proxy holds (TunnelServer). */
  tunnels: {
    find(target: string): { hostId: string; labels: Record<string, string> } | undefined
    dial(target: string, request: DialRequestIn): Promise<Duplex>
  }
  /**
   * A host's labels as users are judged by them, from those it `reported`: the ones the cluster
   * assigns win over its own (assigned-labels.ts), so a node cannot label itself into a role's reach.
   */
  judgedLabels: (hostId: string, reported: Record<string, string>) => Record<string, string>
  /** The auth server's list of direct nodes (their labels come with the assigned ones in place). */
  directNodes: () => Promise<DirectNodeEntry[]>
  clusterName: string
  credentials: () => ProxyCredentials
  /** Why a host is refused although its certificate is valid (removed, locked), or undefined. */
  refusedHost?: (hostId: string) => string | undefined
  /** TCP keepalive on direct legs, so a node that vanished is noticed. */
  keepAliveIntervalMs: number
  /** Counts the connections (SSH, forwarded ports) of users whose roles set max_connections (connection-limits.ts). */
  connectionLimits?: Pick<ConnectionLimits, 'acquire'>
  log: Logger
}

/**
 * Whose connection a dial is: it counts in the user's share of the node's streams
 * (MAX_STREAMS_PER_USER_PER_NODE) while the stream is open, and a user whose roles set
 * max_connections takes a lease on one of its connections before the stream is opened,
 * released when the stream or `client` (the user's side) closes, whichever is first.
 */
export interface ConnectionHolder {
  user: string
  access: Pick<Access, 'max_connections'>
  /** How the proxy vouches for the user to the auth server, which counts the connection by it: the user's certificate, or web session (connection-limits.ts). */
  vouch: Record<string, string>
  client?: { once(event: 'close', listener: () => void): unknown }
}

/** The user may not reach that node: no stream was opened. */
export class AccessDenied extends Error {
  /** Why, without the node's name (the logs' `reason`). */
  readonly reason: string

  constructor(message: string, reason: string = message) {
    super(message)
    this.reason = reason
  }
}

function refuseIfDenied(target: string, refusal: string | undefined): void {
  if (refusal !== undefined) throw new AccessDenied(`access to node "${target}" denied: ${refusal}`, refusal)
}

export class NodeDialer {
  private readonly options: NodeDialerOptions
  private readonly book: DirectNodeBook
  private cachedContext?: { key: string; context: SecureContext }
  /** Open direct legs, with the host each reaches. */
  private readonly legs = new Map<TLSSocket, string>()
  /** Streams open (or being opened) by host ID, then by user. */
  private readonly userStreams = new Map<string, Map<string, number>>()

  constructor(options: NodeDialerOptions) {
    this.options = options
    this.book = new DirectNodeBook({ fetch: options.directNodes })
  }

  /**
   * Opens a stream to a service on the node; resolves once the node has connected it.
   * `admit` judges the node by its labels (with the cluster's assigned ones in place of its
   * own) before any stream is opened: a reason to refuse it (the user's roles) is thrown as AccessDenied.
   * It is told the node's host ID too, so that the connection can be judged again when those labels change (labelsOf).
   * A stream of a `holder` beyond its share of the node's (MAX_STREAMS_PER_USER_PER_NODE) is
   * thrown as AccessDenied too; then one whose roles set max_connections takes a lease,
   * held while the stream is open, and one beyond that limit is thrown as AccessDenied.
   */
  async dial(target: string, request: DialRequestIn, admit?: (labels: Record<string, string>, hostId: string) => string | undefined, holder?: ConnectionHolder): Promise<Duplex> {
    const tunnel = this.options.tunnels.find(target)
    if (tunnel) {
      // Judged when the user connects, so that a change of the assigned labels applies to live tunnels at once.
      refuseIfDenied(target, admit?.(this.options.judgedLabels(tunnel.hostId, tunnel.labels), tunnel.hostId))
      return this.holding(target, tunnel.hostId, holder, () => this.options.tunnels.dial(target, request))
    }
    const node = await this.findDirect(target)
    if (!node) throw new Error(`node "${target}" is not connected to this proxy, nor online as a direct node`)
    // The book's labels came with the assigned ones of its fetch; those held now are newer.
    refuseIfDenied(target, admit?.(this.options.judgedLabels(node.hostId, node.labels), node.hostId))
    const refusal = this.options.refusedHost?.(node.hostId)
    if (refusal) throw new Error(`node "${target}" is refused: ${refusal}`)
    return this.holding(target, node.hostId, holder, () => this.dialDirect(target, node, request))
  }

  /** A lease on the holder's connection when its roles limit them: SSH connections, web terminals and forwarded ports alike. */
  private async lease(target: string, holder: ConnectionHolder | undefined): Promise<Lease | undefined> {
    if (!holder || holder.access.max_connections === undefined) return undefined
    const limits = this.options.connectionLimits
    if (!limits) return undefined
    return limits.acquire(target, holder)
  }

  /**
   * Takes one of the holder's share of the streams to the host, or throws AccessDenied when
   * it holds them all; returns what gives it back (once, however often called).
   */
  private takeStream(target: string, hostId: string, user: string): () => void {
    let users = this.userStreams.get(hostId)
    const held = users?.get(user) ?? 0
    if (held >= MAX_STREAMS_PER_USER_PER_NODE) {
      const reason = `user "${user}" holds ${held} connections to the node through this proxy, the most one user may (the rest are kept for others)`
      throw new AccessDenied(`access to node "${target}" denied: ${reason}`, reason)
    }
    if (!users) this.userStreams.set(hostId, (users = new Map()))
    users.set(user, held + 1)
    let given = false
    return () => {
      if (given) return
      given = true
      const now = (users.get(user) ?? 1) - 1
      if (now > 0) users.set(user, now)
      else users.delete(user)
      if (users.size === 0 && this.userStreams.get(hostId) === users) this.userStreams.delete(hostId)
    }
  }

  /**
   * Opens the stream as one of the holder's share of the host's, under its lease if its roles
   * set max_connections: both are given back when it cannot be opened, the share when the
   * stream closes, the lease when the stream or the user's side closes.
   */
  private async holding(target: string, hostId: string, holder: ConnectionHolder | undefined, open: () => Promise<Duplex>): Promise<Duplex> {
    if (!holder) return open()
    const share = this.takeStream(target, hostId, holder.user)
    let lease: Lease | undefined
    let stream: Duplex
    try {
      lease = await this.lease(target, holder)
      stream = await open()
    } catch (error) {
      share()
      lease?.release()
      throw error
    }
    const releases = lease ? [share, lease.release] : [share]
    for (const release of releases) {
      if (stream.closed) release()
      stream.once('close', release)
    }
    if (lease) holder.client?.once('close', lease.release)
    return stream
  }

  private async dialDirect(target: string, node: DirectNode, request: DialRequestIn): Promise<Duplex> {
    let socket: TLSSocket
    try {
      socket = await this.connect(node)
    } catch (error) {
      this.book.forget()
      // The user is told no more than that: what answered at the address the node reports
      // (another host's certificate, a refused port) is for the operator, not for whoever
      // could make a device report any address and ask the proxy to dial it.
      this.options.log.warn(`node "${target}" cannot be reached at ${joinHostPort(node.host, node.port)}: ${(error as Error).message}`, { host_id: node.hostId })
      throw new Error(`node "${target}" cannot be reached at the address it reports (the proxy's log says why)`)
    }
    writeMessage(socket, request)
    let reply
    try {
      reply = await readFirstMessage(socket, parseDialReply)
    } catch (error) {
      socket.destroy()
      throw new Error(`node "${target}" did not answer: ${(error as Error).message}`)
    }
    if (!reply.ok) {
      socket.destroy()
      throw new Error(`node "${target}" refused: ${reply.error}`)
    }
    this.options.log.debug(`reached ${target} directly at ${joinHostPort(node.host, node.port)} (${request.service})`, { host_id: node.hostId })
    this.legs.set(socket, node.hostId)
    socket.once('close', () => this.legs.delete(socket))
    return socket
  }

  /** After the removed and locked hosts changed: the direct legs to hosts now refused are closed. */
  dropRefused(): void {
    for (const [socket, hostId] of this.legs) {
      const refusal = this.options.refusedHost?.(hostId)
      if (!refusal) continue
      this.legs.delete(socket)
      this.options.log.warn(`direct connection to ${hostId} closed: ${refusal}`, { host_id: hostId, refused: true })
      socket.destroy()
    }
  }

  /**
   * The labels of the host now, as `dial` judges them (the assigned ones in place of its own),
   * or undefined when it is neither behind a tunnel here nor a direct node the auth server lists.
   */
  async labelsOf(hostId: string): Promise<Record<string, string> | undefined> {
    const tunnel = this.options.tunnels.find(hostId)
    if (tunnel?.hostId === hostId) return this.options.judgedLabels(hostId, tunnel.labels)
    // Asked again (once for a pass over many hosts): the book's labels came with the assigned
    // ones of its fetch, which may be gone now, and a direct node's own change only the auth server hears.
    this.book.forgetOlderThan(DIRECT_NODES_MISS_REFRESH_MS)
    const node = await this.book.find(hostId).catch(() => undefined)
    return node?.hostId === hostId ? this.options.judgedLabels(hostId, node.labels) : undefined
  }

  /** labelsOf for each of `hostIds`, each asked once (a host not found, or a failure, is undefined). */
  async labelsOfHosts(hostIds: Iterable<string>): Promise<Map<string, Record<string, string> | undefined>> {
    const labels = new Map<string, Record<string, string> | undefined>()
    for (const hostId of new Set(hostIds)) labels.set(hostId, await this.labelsOf(hostId).catch(() => undefined))
    return labels
  }

  /** The direct node by that name; the auth server's failures are logged here, not shown to users. */
  private async findDirect(target: string): Promise<DirectNode | undefined> {
    try {
      return await this.book.find(target)
    } catch (error) {
      if (!(error instanceof WarrenError)) throw error
      this.options.log.warn(`the direct nodes' addresses cannot be read: ${error.message}`)
      throw new Error(`node "${target}" is not connected to this proxy, and the direct nodes cannot be looked up now`)
    }
  }

  /** A mutual-TLS connection to `node`, which must prove it is that node of this cluster. */
  private connect(node: DirectNode): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      // A user's half close is passed on to the node, whose answer must still come back
      // (tls.connect takes allowHalfOpen, though its type does not list it).
      const options: ConnectionOptions & { allowHalfOpen: boolean } = {
        host: node.host,
        port: node.port,
        secureContext: this.secureContext(),
        minVersion: 'TLSv1.3',
        allowHalfOpen: true,
        checkServerIdentity: (_host, peer) => this.checkNode(peer, node),
      }
      const socket = connect(options)
      const timer = setTimeout(() => socket.destroy(new Error(`no TLS connection within ${DIRECT_DIAL_TIMEOUT_MS} ms`)), DIRECT_DIAL_TIMEOUT_MS)
      socket.once('secureConnect', () => {
        clearTimeout(timer)
        socket.off('error', onError)
        socket.on('error', () => {})
        socket.setNoDelay(true)
        socket.setKeepAlive(true, this.options.keepAliveIntervalMs)
        resolve(socket)
      })
      const onError = (error: Error) => {
        clearTimeout(timer)
        reject(error)
      }
      socket.once('error', onError)
    })
  }

  /**
   * The node's certificate (already verified against the trusted host CAs) must name the
   * node asked for, and not a host the cluster refuses.
   */
  private checkNode(peer: PeerCertificate, node: DirectNode): Error | undefined {
    const subject = certSubject(new X509Certificate(peer.raw))
    const refusal = this.options.refusedHost?.(subject.commonName)
    if (refusal) return new Error(`the server there presents the certificate of a refused host: ${refusal}`)
    if (subject.commonName === node.hostId && subject.cluster === this.options.clusterName && subject.roles.includes('node')) return undefined
    return new Error(`the server there is not node ${node.hostId} of this cluster (its certificate names ${subject.commonName || 'nobody'})`)
  }

  /** Built once per change of this proxy's certificate or trusted CAs, not per dial. */
  private secureContext(): SecureContext {
    const { keyPem, certPem, hostCAPems } = this.options.credentials()
    const key = [certPem, ...hostCAPems].join('')
    if (this.cachedContext?.key !== key) {
      this.cachedContext = { key, context: createSecureContext({ key: keyPem, cert: certPem, ca: hostCAPems, minVersion: 'TLSv1.3' }) }
    }
    return this.cachedContext.context
  }
}
