// The proxy's side of reverse tunnels: every agent holds one TLS connection with one yamux
// session here. The agent's control stream carries its hello and label changes one way and
// the live proxy set the other (shared/protocol/control.ts: a message this proxy cannot read
// closes the tunnel); the proxy opens one stream per user connection.

import type { X509Certificate } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { AssignedLabelsStatement } from '../shared/assigned-labels.ts'
import { certSubject, validNow } from '../shared/cert-subject.ts'
import type { Logger } from '../shared/log.ts'
import { type ProxyMessageOf, parseAgentMessage, sendToAgent, type TunnelRefusal } from '../shared/protocol/control.ts'
import { type DialRequestIn, parseDialReply } from '../shared/protocol/dial.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import { readFirstMessage, readMessages, writeMessage } from '../shared/protocol/framing.ts'
import type { RuledLabels } from '../shared/protocol/shape.ts'
import { MAX_RENEWAL_SPREAD_MS, MAX_RETURN_SPREAD_MS } from '../shared/protocol/tunnel.ts'
import { type LiveSetSignature, liveSetOrder } from '../shared/signed-live-set.ts'
import { type Pacing, paceWhenSlow } from '../shared/slow-link-pacing.ts'
import { createSession, type Session } from '../shared/yamux/index.ts'
import { sameStatement } from './assigned-labels.ts'
import { HelloRate } from './hello-rate.ts'
import { TunnelTrust } from './tunnel-trust.ts'

export interface Tunnel {
  hostId: string
  nodename: string
  session: Session
  /** Where the agent's connection came from (after a PROXY protocol header, the real client). */
  remoteAddress: string
  /**
   * The labels the node reported, as it reported them (its presence reports carry these):
   * users are judged by them with the cluster's assigned ones in place (node-dialer.ts).
   */
  labels: Record<string, string>
  services: string[]
  connectedAt: number
  control?: Duplex
  registered?: () => void
  /** Set while a renewal on this node's behalf is with the auth server: one at a time per tunnel. */
  renewing?: boolean
  /** The agent's version, from its hello. */
  version?: string
  /**
   * The node's certificate as it presented it, for renewals on its behalf (encoded as PEM
   * only then: a fleet reconnecting at once would otherwise pay for it on every tunnel).
   */
  cert: X509Certificate
  /** Whether what this proxy sends down the tunnel is paced (shared/slow-link-pacing.ts). */
  pacing: Pacing
  /** Registered once: its end counts as a close. */
  opened?: boolean
  /** Why this proxy is closing the tunnel, when it is (for the counts). */
  closing?: TunnelCloseReason
  /** Audit batches and recording chunks of this tunnel with the auth server now. */
  relaying?: number
  /** When refused labels of this tunnel were last logged. */
  labelsRefusedLoggedAt?: number
  /** When its label changes last had the user connections judged again, and the timer of the next time, if one is due. */
  labelsJudgedAt?: number
  labelsTimer?: NodeJS.Timeout
  /** Its hello said the agent takes `labels` messages: agents from before them close the tunnel on one. */
  takesAssignedLabels?: boolean
  /** Its hello said the agent takes `refused` messages, and backs off on them. */
  takesRefusals?: boolean
  /** The statement of the node's assigned labels last sent to it. */
  assignedLabelsSent?: AssignedLabelsStatement
}

/** Why a registered tunnel ended: a few fixed reasons, so the metrics stay bounded. */
export type TunnelCloseReason = 'node_closed' | 'connection_lost' | 'replaced' | 'unregistered' | 'untrusted' | 'protocol_error' | 'proxy_stopping'
/** Why a tunnel was refused before it was registered. */
export type TunnelDeclineReason = 'certificate' | 'unregistered' | 'already_held' | 'no_hello' | 'rate_limited'

/** Tunnels opened, declined and closed since the proxy started (proxy/metrics.ts reads them). */
export interface TunnelCounts {
  opened: number
  declined: Partial<Record<TunnelDeclineReason, number>>
  closed: Partial<Record<TunnelCloseReason, number>>
}

/** The trust material agents must follow during CA rotations. */
export type CAAnnouncement = Omit<ProxyMessageOf<'ca'>, 'type' | 'spread_ms'>

const HELLO_TIMEOUT_MS = 15_000
/** A tunnel's label changes have the user connections judged again at most this often (labelsChanged). */
export const LABELS_JUDGED_EVERY_MS = 1000
/**
 * Tunnels of one host not registered yet (no hello): an agent has at most one dial here in
 * flight; more would be a modified agent holding connections (each a TLS session and its
 * buffers) for the hello's whole timeout. Past this the oldest goes.
 */
const MAX_PENDING_PER_HOST = 4
/**
 * Audit batches and recording chunks of one tunnel with the auth server at once: the agent
 * sends one at a time and waits for its answer. At this many the control stream is read no
 * further until one is answered, so a modified agent's flood waits in its own TCP window.
 */
const MAX_RELAYS_PER_TUNNEL = 4
/** How often a tunnel's refused labels are logged, at most, while it sends no good ones: it could send them with every heartbeat. */
const LABELS_REFUSED_LOG_MS = 60_000

/**
 * When a proxy joins the live set (a restart, say), every agent here hears it at once and
 * would dial it within moments: they are asked to spread their returns so that it gets
 * about this many a second, over at least 1 s.
 */
const RETURNS_PER_SECOND = 300
const MIN_SPREAD_MS = 1000

export function returnSpreadMs(agents: number): number {
  return Math.min(MAX_RETURN_SPREAD_MS, Math.max(MIN_SPREAD_MS, Math.round((agents / RETURNS_PER_SECOND) * 1000)))
}

/**
 * When the trusted CAs change (a host CA rotation), every agent here hears it at once and
 * would renew at once: they are asked to spread their renewals so that the auth server gets
 * about this many a second from this proxy's nodes. A small cluster's renew at once.
 */
const RENEWALS_PER_SECOND = 50

export function renewalSpreadMs(agents: number): number {
  return Math.min(MAX_RENEWAL_SPREAD_MS, Math.round((agents / RENEWALS_PER_SECOND) * 1000))
}

/** A node name that more than one connected host carries: routing by it would be a guess. */
export class AmbiguousNodeName extends Error {
  constructor(nodename: string, hostIds: string[]) {
    super(
      `node name "${nodename}" is carried by ${hostIds.length} connected hosts (${hostIds.join(', ')}): connect by host ID, and remove the stale one with "warrenctl nodes rm HOST_ID"`,
    )
  }
}

export interface TunnelServerOptions {
  proxyId: string
  clusterName: string
  hostCAPems: () => string[]
  /** Why a host is refused although its certificate is valid (removed, locked), or undefined. */
  refusedHost?: (hostId: string) => string | undefined
  /** The labels the cluster assigns to a host, signed for it (assigned-labels.ts), handed to its agent when it takes them. */
  assignedLabels?: (hostId: string) => AssignedLabelsStatement | undefined
  keepAliveIntervalMs: number
  log: Logger
  /** Epoch milliseconds for the refused-labels log's window and the hello rate; injected so tests can move time. */
  clock?: () => number
}

export class TunnelServer extends EventEmitter {
  private readonly tunnels = new Map<string, Tunnel>()
  private readonly options: TunnelServerOptions
  private readonly trust: TunnelTrust<Tunnel>
  private proxyIds: string[] = []
  private proxyIdsSigned?: LiveSetSignature
  private ca?: CAAnnouncement
  /** Hosts the auth server no longer knows (removed or replaced): their tunnels are not kept. */
  private readonly unregistered = new Set<string>()
  /** Tunnels that have not said hello yet, by host, oldest first. */
  private readonly pending = new Map<string, Set<Tunnel>>()
  /** Registrations each host may still make (proxy/hello-rate.ts). */
  private readonly hellos: HelloRate
  readonly counts: TunnelCounts = { opened: 0, declined: {}, closed: {} }

  constructor(options: TunnelServerOptions) {
    super()
    this.options = options
    this.hellos = new HelloRate(options.clock)
    this.trust = new TunnelTrust({
      clusterName: options.clusterName,
      hostCAPems: options.hostCAPems,
      refusedHost: options.refusedHost,
      close: (tunnel) => closeTunnel(tunnel, 'untrusted'),
      log: options.log,
    })
  }

  get size(): number {
    return this.tunnels.size
  }

  /** The live proxy set as last announced to the agents. */
  get liveSet(): string[] {
    return this.proxyIds
  }

  list(): Tunnel[] {
    return [...this.tunnels.values()]
  }

  /** The tunnel of this host, if it holds one here. */
  byHostId(hostId: string): Tunnel | undefined {
    return this.tunnels.get(hostId)
  }

  /**
   * A tunnel by host ID, or by node name when exactly one tunnel carries that name. Two
   * hosts with one name (a replaced device still holding its old certificate, say) are
   * never guessed between: that throws AmbiguousNodeName, naming both.
   */
  find(target: string): Tunnel | undefined {
    const byId = this.tunnels.get(target)
    if (byId) return byId
    const named = [...this.tunnels.values()].filter((tunnel) => tunnel.nodename === target)
    if (named.length > 1) throw new AmbiguousNodeName(target, named.map((tunnel) => tunnel.hostId).sort())
    return named[0]
  }

  /**
   * The auth server no longer knows these hosts (`warrenctl nodes rm`, or a device replaced
   * with a token made for its name): their tunnels are closed, and not kept if they return.
   */
  dropUnregistered(hostIds: string[]): void {
    for (const hostId of hostIds) {
      this.unregistered.add(hostId)
      const tunnel = this.tunnels.get(hostId)
      if (!tunnel) continue
      this.options.log.info(`tunnel from ${tunnel.nodename} closed: the host is no longer registered`, { host_id: hostId, refused: true })
      closeTunnel(tunnel, 'unregistered')
    }
  }

  /** Takes an agent's TLS connection (ALPN warren-tunnel); refuses any that is not a node of this cluster. */
  handle(socket: TLSSocket, remoteAddress: string): void {
    const log = this.options.log
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined
    // Judged here, not only by OpenSSL: a resumed TLS session skips its certificate checks.
    const verdict = cert ? this.trust.judge(cert) : undefined
    if (!cert || !verdict?.trusted) {
      const reason = socket.authorizationError ? String(socket.authorizationError) : verdict && !verdict.trusted ? verdict.reason : 'no client certificate'
      // The certificate's CN names the host even when the verdict is against it.
      log.warn(`tunnel from ${remoteAddress} refused: ${reason}`, {
        from: remoteAddress,
        refused: reason,
        ...(cert ? { host_id: certSubject(cert).commonName, resumed: socket.isSessionReused() } : {}),
      })
      this.declined('certificate')
      socket.destroy()
      return
    }
    const subject = verdict.subject
    socket.setNoDelay(true)
    // The agent pings every interval (it must notice a dead path); while the tunnel is
    // idle its pings show this side the path is alive, so the proxy sends none of its own.
    const session = createSession(socket, { client: false, keepAliveIntervalMs: this.options.keepAliveIntervalMs, keepAliveWhenQuietOnly: true })
    session.on('error', () => {})
    const tunnel: Tunnel = {
      hostId: subject.commonName,
      nodename: subject.nodename ?? subject.commonName,
      session,
      remoteAddress,
      labels: {},
      services: [],
      connectedAt: Date.now(),
      cert,
      pacing: 'off',
    }
    // Every session to the node shares this connection: on a slow downlink, pace it.
    paceWhenSlow(session, socket, (pacing) => (tunnel.pacing = pacing))
    this.trust.opened(tunnel, cert)
    session.on('stream', (stream: Duplex) => this.control(tunnel, stream))
    this.holdPending(tunnel)
    // An agent that never says hello (it found it already holds a tunnel here) is let go.
    const helloTimer = setTimeout(() => {
      this.declined('no_hello')
      session.close()
    }, HELLO_TIMEOUT_MS)
    tunnel.registered = () => {
      clearTimeout(helloTimer)
      this.releasePending(tunnel)
    }
    session.on('close', (error?: Error) => {
      clearTimeout(helloTimer)
      this.releasePending(tunnel)
      this.trust.closed(tunnel)
      if (tunnel.opened) {
        const reason = tunnel.closing ?? (error ? 'connection_lost' : 'node_closed')
        this.counts.closed[reason] = (this.counts.closed[reason] ?? 0) + 1
      }
      if (this.tunnels.get(tunnel.hostId) === tunnel) {
        this.tunnels.delete(tunnel.hostId)
        this.emit('disconnect', tunnel)
        log.info(`tunnel from ${tunnel.nodename} closed${error ? `: ${error.message}` : ''}`, {
          host_id: tunnel.hostId,
          tunnel: 'closed',
          ...(error ? { error: error.message } : {}),
        })
      }
    })
  }

  /** Counts a tunnel among its host's not yet registered; the oldest goes past MAX_PENDING_PER_HOST. */
  private holdPending(tunnel: Tunnel): void {
    const held = this.pending.get(tunnel.hostId) ?? new Set<Tunnel>()
    this.pending.set(tunnel.hostId, held)
    held.add(tunnel)
    if (held.size <= MAX_PENDING_PER_HOST) return
    const oldest = held.values().next().value!
    this.releasePending(oldest)
    this.declined('no_hello')
    oldest.session.close()
  }

  private releasePending(tunnel: Tunnel): void {
    const held = this.pending.get(tunnel.hostId)
    if (!held?.delete(tunnel)) return
    if (held.size === 0) this.pending.delete(tunnel.hostId)
  }

  /**
   * Closes the tunnels this proxy no longer trusts, after the trusted host CAs changed: those
   * whose node did not follow a rotation (all its certificates are from a dropped CA).
   */
  dropUntrusted(): void {
    this.trust.recheckAll()
  }

  /** The wall clock was set: the tunnels' expiry timers are armed again by it (tunnel-trust.ts). */
  clockStepped(): void {
    this.trust.clockStepped()
  }

  /** Closes the tunnels of hosts removed or locked since they opened. */
  dropRefused(): void {
    this.trust.dropRefused()
  }

  /**
   * Registers a tunnel once its agent says hello. The agent says hello only after our
   * welcome told it which proxy this is and it found it holds no tunnel here, so a
   * duplicate dial never displaces a working tunnel; and the newer tunnel wins, so stale
   * state from a connection that died unnoticed never blocks a reconnect.
   */
  private register(tunnel: Tunnel): void {
    tunnel.registered?.()
    if (this.unregistered.has(tunnel.hostId)) {
      this.options.log.info(`tunnel from ${tunnel.nodename} refused: the host is no longer registered`, { host_id: tunnel.hostId, refused: 'unregistered' })
      this.declined('unregistered')
      this.refuse(tunnel, 'unregistered')
      return
    }
    const limited = this.hellos.take(tunnel.hostId)
    if (limited) {
      if (limited.log) {
        this.options.log.warn(`tunnel from ${tunnel.nodename} refused: it registers tunnels too often (refusals logged once a minute)`, {
          host_id: tunnel.hostId,
          refused: 'rate_limited',
        })
      }
      this.declined('rate_limited')
      this.refuse(tunnel, 'rate_limited', limited.waitMs)
      return
    }
    if (!tunnel.opened) this.counts.opened++
    tunnel.opened = true
    const previous = this.tunnels.get(tunnel.hostId)
    this.tunnels.set(tunnel.hostId, tunnel)
    if (previous && previous !== tunnel) {
      this.options.log.info(`tunnel from ${tunnel.nodename} replaces its older one`, { host_id: tunnel.hostId })
      closeTunnel(previous, 'replaced')
    }
    this.options.log.info(`tunnel from ${tunnel.nodename} (${tunnel.remoteAddress}) open`, { host_id: tunnel.hostId })
    this.emit('connect', tunnel)
  }

  /**
   * Closes a tunnel refused at its hello, telling an agent that takes refusals why: it backs
   * off, as after a failed dial, instead of dialling again at once (its tunnel had opened).
   */
  private refuse(tunnel: Tunnel, reason: TunnelRefusal, retryAfterMs?: number): void {
    if (tunnel.takesRefusals && tunnel.control) {
      sendToAgent(tunnel.control, { type: 'refused', reason, ...(retryAfterMs === undefined ? {} : { retry_after_ms: retryAfterMs }) })
    }
    tunnel.session.close()
  }

  private control(tunnel: Tunnel, stream: Duplex): void {
    if (tunnel.control) {
      stream.destroy()
      return
    }
    tunnel.control = stream
    stream.on('error', (error) => {
      if (!(error instanceof ProtocolError)) return
      this.options.log.warn(`tunnel from ${tunnel.nodename} closed: ${error.message}`, {
        host_id: tunnel.hostId,
        protocol_error: error.message,
        message_type: error.messageType,
        ...(error.field ? { field: error.field } : {}),
      })
      closeTunnel(tunnel, 'protocol_error')
    })
    // audit: this proxy carries audit events to the auth server (proxy/audit-relay.ts).
    sendToAgent(stream, { type: 'welcome', proxy_id: this.options.proxyId, cluster_name: this.options.clusterName, audit: true, skipped_recordings: true })
    // Not before the first heartbeat has told this proxy the live set: an empty set would
    // tell the agent to close its tunnels to every other proxy.
    if (this.proxyIds.length > 0) sendToAgent(stream, { type: 'proxies', ids: this.proxyIds, signed: this.proxyIdsSigned })
    // Spread too: the nodes that come back to this proxy during a rotation (after its restart) come back together.
    if (this.ca) sendToAgent(stream, { type: 'ca', ...this.ca, spread_ms: renewalSpreadMs(this.tunnels.size) })
    // Until its hello registers it, a tunnel carries nothing on the node's behalf.
    const registered = () => this.tunnels.get(tunnel.hostId) === tunnel
    const relay = (type: 'audit' | 'recording', message: unknown) => {
      if (!registered()) return
      tunnel.relaying = (tunnel.relaying ?? 0) + 1
      if (tunnel.relaying >= MAX_RELAYS_PER_TUNNEL) stream.pause()
      const done = () => {
        tunnel.relaying = (tunnel.relaying ?? 1) - 1
        if (tunnel.relaying < MAX_RELAYS_PER_TUNNEL && !stream.destroyed) stream.resume()
      }
      if (!this.emit(type, tunnel, message, done)) done()
    }
    readMessages(stream, parseAgentMessage, (message) => {
      switch (message.type) {
        case 'renew':
          if (!registered()) return
          // One renewal at a time per tunnel: requests while one is out are dropped (the
          // answer to that one serves them all).
          if (tunnel.renewing) return
          tunnel.renewing = true
          this.emit('renew', tunnel)
          return
        case 'cert':
          if (!registered()) return
          this.trust.renewed(tunnel, message.tls_cert)
          return
        case 'hello':
          if (message.agent_version !== undefined) tunnel.version = message.agent_version.slice(0, 64)
          if (message.assigned_labels) tunnel.takesAssignedLabels = true
          if (message.refusals) tunnel.takesRefusals = true
          if (this.tunnels.get(tunnel.hostId) !== tunnel) this.register(tunnel)
          if (message.services !== undefined) tunnel.services = message.services
          this.acceptLabels(tunnel, message.labels)
          if (registered()) this.sendAssignedLabels(tunnel)
          return
        case 'audit':
        case 'recording':
          relay(message.type, message)
          return
        case 'heartbeat':
          this.acceptLabels(tunnel, message.labels)
      }
    })
  }

  /** Labels that break the rules are ignored (the tunnel keeps its previous ones), never reported. */
  private acceptLabels(tunnel: Tunnel, labels: RuledLabels | undefined): void {
    if (labels === undefined) return
    if ('labels' in labels) {
      const changed = !sameLabels(tunnel.labels, labels.labels)
      tunnel.labels = labels.labels
      // A refusal after good labels is news again.
      tunnel.labelsRefusedLoggedAt = undefined
      // Users connected through it are judged again by the new ones (user-gateway.ts).
      if (changed) this.labelsChanged(tunnel)
      return
    }
    const now = (this.options.clock ?? Date.now)()
    if (tunnel.labelsRefusedLoggedAt !== undefined && now - tunnel.labelsRefusedLoggedAt < LABELS_REFUSED_LOG_MS) return
    tunnel.labelsRefusedLoggedAt = now
    this.options.log.warn(`labels from ${tunnel.nodename} ignored`, { host_id: tunnel.hostId, labels_refused: labels.refused })
  }

  /**
   * Emits 'labels' for `tunnel` at once, or, within LABELS_JUDGED_EVERY_MS of the last time,
   * once at the end of that time with the labels it has then: each emission has every open
   * user connection judged again, and a node changing its labels in a loop must not keep the
   * proxy doing nothing else.
   */
  private labelsChanged(tunnel: Tunnel): void {
    if (tunnel.labelsTimer) return
    const emit = () => {
      tunnel.labelsTimer = undefined
      tunnel.labelsJudgedAt = Date.now()
      if (this.tunnels.get(tunnel.hostId) === tunnel) this.emit('labels', tunnel)
    }
    const wait = (tunnel.labelsJudgedAt ?? Number.NEGATIVE_INFINITY) + LABELS_JUDGED_EVERY_MS - Date.now()
    if (wait <= 0) {
      emit()
      return
    }
    tunnel.labelsTimer = setTimeout(emit, wait)
    tunnel.labelsTimer.unref()
  }

  /** A tunnel refused before it was registered (also by the TLS router: the agent holds one here already). */
  declined(reason: TunnelDeclineReason): void {
    this.counts.declined[reason] = (this.counts.declined[reason] ?? 0) + 1
  }

  /**
   * Tells every agent which proxies are live, so each keeps a tunnel to all of them, with
   * the auth server's signature of the set (agents take no set without one). A set the
   * agents have heard already is not sent again.
   */
  announce(proxyIds: string[], signed?: LiveSetSignature): void {
    const ids = liveSetOrder(proxyIds)
    if (ids.join() === this.proxyIds.join()) {
      const firstSigned = this.proxyIdsSigned === undefined && signed !== undefined
      // The latest signature of the same set is kept for agents that connect later: one made
      // before a host CA rotation would not verify once nodes have dropped the old CA.
      if (signed && (!this.proxyIdsSigned || signed.signed_at > this.proxyIdsSigned.signed_at)) this.proxyIdsSigned = signed
      // Sent again only when it first comes signed (the auth server was upgraded).
      if (!firstSigned) return
    }
    const joined = this.proxyIds.length > 0 && ids.some((id) => !this.proxyIds.includes(id))
    this.proxyIds = ids
    this.proxyIdsSigned = signed
    const spread = joined ? returnSpreadMs(this.tunnels.size) : undefined
    const message = { type: 'proxies' as const, ids, ...(spread === undefined ? {} : { spread_ms: spread }), signed }
    for (const tunnel of this.tunnels.values()) if (tunnel.control) sendToAgent(tunnel.control, message)
    const change = spread === undefined ? '' : `, returns spread over ${spread} ms`
    this.options.log.info(`live proxies: ${ids.length}; told ${this.tunnels.size} node(s)${change}`)
  }

  /**
   * Tells every agent the CAs to trust (and so, during a rotation, to renew from), asking
   * them to spread their renewals by how many they are (renewalSpreadMs).
   */
  announceCA(ca: CAAnnouncement): void {
    if (this.ca && JSON.stringify(this.ca) === JSON.stringify(ca)) return
    this.ca = ca
    const message = { type: 'ca' as const, ...ca, spread_ms: renewalSpreadMs(this.tunnels.size) }
    for (const tunnel of this.tunnels.values()) if (tunnel.control) sendToAgent(tunnel.control, message)
  }

  /** The assigned labels of these hosts changed: those of their agents that take them are told. */
  relayAssignedLabels(hostIds: Iterable<string>): void {
    for (const hostId of hostIds) {
      const tunnel = this.tunnels.get(hostId)
      if (tunnel) this.sendAssignedLabels(tunnel)
    }
  }

  /**
   * Hands the node the statement of its assigned labels, if it has one this agent was not
   * sent yet, and only if its hello said it takes them: an agent from before would close
   * the tunnel on the unknown message. (A host whose statement went was removed: nothing to tell.)
   */
  private sendAssignedLabels(tunnel: Tunnel): void {
    if (!tunnel.takesAssignedLabels || !tunnel.control) return
    const statement = this.options.assignedLabels?.(tunnel.hostId)
    if (!statement || sameStatement(statement, tunnel.assignedLabelsSent)) return
    tunnel.assignedLabelsSent = statement
    sendToAgent(tunnel.control, { type: 'labels', assigned: statement })
  }

  /** Tells one agent the CAs to trust as this proxy knows them now (after a renewal's answer, which may predate them). */
  sendCA(tunnel: Tunnel): void {
    if (this.ca && tunnel.control) sendToAgent(tunnel.control, { type: 'ca', ...this.ca })
  }

  /** Opens a stream to a service on the node; resolves once the node has connected it. */
  async dial(target: string, request: DialRequestIn): Promise<Duplex> {
    const tunnel = this.find(target)
    // Never through a tunnel whose certificate expired a moment ago (before its timer ran).
    if (!tunnel || (!validNow(tunnel.cert) && !this.trust.recheck(tunnel))) throw new Error(`node "${target}" is not connected to this proxy`)
    const stream = tunnel.session.open()
    writeMessage(stream, request)
    let reply
    try {
      reply = await readFirstMessage(stream, parseDialReply)
    } catch (error) {
      stream.destroy()
      throw new Error(`node "${target}" did not answer: ${(error as Error).message}`)
    }
    if (!reply.ok) {
      stream.destroy()
      throw new Error(`node "${target}" refused: ${reply.error}`)
    }
    return stream
  }

  close(): void {
    for (const tunnel of this.tunnels.values()) {
      tunnel.session.goAway()
      closeTunnel(tunnel, 'proxy_stopping')
    }
    this.tunnels.clear()
  }
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && a[key] === b[key])
}

function closeTunnel(tunnel: Tunnel, reason: TunnelCloseReason): void {
  tunnel.closing ??= reason
  tunnel.session.close()
}
