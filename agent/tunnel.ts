// One reverse tunnel from this device to one proxy: TLS 1.3 with the host certificate,
// ALPN `warren-tunnel`, one yamux session. The agent opens the control stream; the proxy
// welcomes it with its ID and the live proxy set; the agent then says hello (if it keeps
// the tunnel), sends a heartbeat with its labels whenever they change, and serves every
// stream the proxy opens. The yamux keepalive shows both ends the tunnel is alive, so an
// idle tunnel carries nothing else.

import { randomUUID, X509Certificate } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import { connect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls'
import { certSubject } from '../shared/cert-subject.ts'
import type { NodeIdentity } from '../shared/identity-store.ts'
import type { Logger } from '../shared/log.ts'
import { signAsNode } from '../shared/node-signature.ts'
import type { FlatNodeEvent } from '../shared/protocol/audit.ts'
import { type ProxyMessageOf, parseProxyMessage, sendToProxy } from '../shared/protocol/control.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import { readMessages } from '../shared/protocol/framing.ts'
import type { RecordingChunkIn, RecordingStored } from '../shared/protocol/recordings.ts'
import { CLUSTER_SERVER_NAME, heldProxiesAlpn, TUNNEL_ALPN } from '../shared/protocol/tunnel.ts'
import { liveSetSigned } from '../shared/signed-live-set.ts'
import { type Pacing, paceWhenSlow } from '../shared/slow-link-pacing.ts'
import { VERSION } from '../shared/version.ts'
import { createSession, type Session } from '../shared/yamux/index.ts'

export interface TunnelOptions {
  host: string
  port: number
  identity: NodeIdentity
  keepAliveIntervalMs: number
  labels: () => Record<string, string>
  services: string[]
  onStream: (stream: Duplex) => void
  log: Logger
  connectTimeoutMs?: number
  /** Proxies this agent holds tunnels to: they refuse the dial at once (see heldProxiesAlpn). */
  held?: string[]
  /**
   * A TLS session ticket from an earlier tunnel to a proxy this dial is looking for. If the
   * balancer picks that proxy it resumes the session (a cheaper handshake); any other
   * proxy cannot open the ticket and makes a full handshake.
   */
  session?: Buffer
  /** The proxy whose certificate the full handshake behind `session` showed: a resumed session shows none. */
  sessionProxyId?: string
  /** Each round trip a keepalive or ping measured, in ms. */
  onRtt?: (rttMs: number) => void
}

/** What the proxy says during CA rotations and renewals, and the labels the cluster assigns to the node: the pool hands these to the agent. */
export type TrustMessage = ProxyMessageOf<'ca' | 'certs' | 'renew_failed' | 'labels'>

/** A batch of audit events the proxy answers for within this, or it is sent again. */
const AUDIT_ANSWER_MS = 30_000

/** Why the proxy refused this tunnel at its hello (shared/protocol/control.ts TunnelRefusal, or a reason of a later version), and the least wait it asked for. */
export interface TunnelRefused {
  reason: string
  retryAfterMs?: number
}

/** The auth server refused audit events for what they are: sending them again is no use. */
export class AuditRefused extends Error {}

/** A dial that reached a proxy the agent already holds a tunnel to, refused before the handshake. */
export class HeldProxyError extends Error {
  constructor() {
    super('the balancer chose a proxy this agent holds a tunnel to already')
    this.name = 'HeldProxyError'
  }
}

/** The proxy refused a tunnel after resuming its TLS session (the certificate in the session has expired, say): the ticket is no good. */
export class ResumedSessionRefusedError extends Error {
  constructor(cause: Error) {
    super(`the proxy refused the resumed TLS session: ${cause.message}`, { cause })
    this.name = 'ResumedSessionRefusedError'
  }
}

/**
 * Events: 'proxies' (ids: string[], spreadMs?: number) whenever the proxy announces the
 * live set, with the window over which to reach a proxy that joined it; 'live_set_refused'
 * (reason) for a set without a valid signature of the auth server; 'ca',
 * 'certs' and 'renew_failed' (the message) during CA rotations; 'labels' (the message) with
 * the labels the cluster assigns to the node; 'session' (ticket: Buffer)
 * for each TLS session ticket the proxy sends; 'close' once, when the tunnel is gone for
 * any reason.
 */
export class AgentTunnel extends EventEmitter {
  proxyId = ''
  /** The latest live proxy set this proxy announced, as the auth server signed it (it may arrive before anyone listens). */
  announced?: string[]
  /** When the auth server signed `announced` (epoch ms, its clock). */
  announcedAt?: number
  /** The proxy said GoAway: it is stopping cleanly (and leaves the live set). */
  leaving = false
  /** The TLS handshake resumed an earlier session (the ticket offered was this proxy's). */
  resumed = false
  /** The latest TLS session ticket the proxy sent, to resume with after this tunnel ends. */
  ticket?: Buffer
  /** When the proxy welcomed this tunnel (epoch ms). */
  openedAt = 0
  /** The proxy's welcome said it carries audit events to the auth server. */
  carriesAudit = false
  /** The welcome said the proxy takes `recording.skipped` events (one of an earlier version closes the tunnel on them). */
  carriesSkippedRecordings = false
  /** The proxy refused the tunnel at its hello, and why: it closes it next. */
  refusal?: TunnelRefused
  /** Whether its output is paced on a slow uplink (shared/slow-link-pacing.ts). */
  pacing: Pacing = 'off'
  private session?: Session
  private socket?: TLSSocket
  /** The node's identity (its certificates and keys change in place at renewals). */
  private identity?: NodeIdentity
  private control?: Duplex
  private closed = false

  /** Connects and waits for the proxy's welcome; rejects when any step fails. */
  static async open(options: TunnelOptions): Promise<AgentTunnel> {
    const tunnel = new AgentTunnel()
    await tunnel.connect(options)
    return tunnel
  }

  private connect(options: TunnelOptions): Promise<void> {
    const { identity } = options
    this.identity = identity
    const held = heldProxiesAlpn(options.held ?? [])
    return new Promise((resolve, reject) => {
      const socket: TLSSocket = connect({
        host: options.host,
        port: options.port,
        servername: CLUSTER_SERVER_NAME,
        ALPNProtocols: [TUNNEL_ALPN, ...held],
        minVersion: 'TLSv1.3',
        secureContext: secureContextFor(identity),
        // The proxy is trusted because its certificate chains to the cluster's host CA and names the proxy role.
        // (A resumed session was made with such a proxy: only it can open the ticket.)
        checkServerIdentity: (_host, cert) =>
          certSubject(new X509Certificate(cert.raw)).roles.includes('proxy') ? undefined : new Error('the server is not a proxy of this cluster'),
        ...(options.session ? { session: options.session } : {}),
      })
      this.socket = socket
      socket.on('session', (ticket: Buffer) => {
        this.ticket = ticket
        this.emit('session', ticket)
      })
      const fail = (error: Error) => {
        clearTimeout(timer)
        socket.destroy()
        this.shutdown()
        reject(this.resumed ? new ResumedSessionRefusedError(error) : error)
      }
      const timer = setTimeout(() => fail(new Error('timed out connecting the tunnel')), options.connectTimeoutMs ?? 10_000)
      socket.once('error', (error: NodeJS.ErrnoException) => {
        // Only a listed proxy answers a ClientHello with warren-tunnel in it this way.
        fail(held.length > 0 && error.code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' ? new HeldProxyError() : error)
      })
      socket.once('secureConnect', () => {
        if (socket.alpnProtocol !== TUNNEL_ALPN) return fail(new Error(`the proxy did not accept ALPN ${TUNNEL_ALPN}`))
        this.resumed = socket.isSessionReused()
        socket.setNoDelay(true)
        socket.setKeepAlive(true, options.keepAliveIntervalMs)
        const session = createSession(socket, { client: true, keepAliveIntervalMs: options.keepAliveIntervalMs })
        this.session = session
        // Every session of the node shares this connection: on a slow uplink keep the
        // kernel's queue short and ours paced, so that a keystroke's echo does not wait
        // behind a copy (shared/unsent-limit.ts).
        paceWhenSlow(session, socket, (pacing) => (this.pacing = pacing))
        session.on('error', () => {})
        if (options.onRtt) session.on('rtt', options.onRtt)
        session.on('goaway', () => (this.leaving = true))
        session.on('close', (error?: Error) => {
          if (!this.proxyId) fail(error ?? new Error('the proxy closed the tunnel'))
          this.shutdown()
        })
        session.on('stream', (stream: Duplex) => options.onStream(stream))
        const control = session.open()
        this.control = control
        // A message this agent cannot read closes the tunnel (shared/protocol/control.ts).
        control.on('error', (error) => {
          if (!(error instanceof ProtocolError)) return
          options.log.warn(`tunnel to proxy ${this.proxyId || `${options.host}:${options.port}`} closed: ${error.message}`, {
            proxy_id: this.proxyId,
            protocol_error: error.message,
            message_type: error.messageType,
          })
          if (!this.proxyId) fail(error)
        })
        control.on('close', () => session.close())
        // assigned_labels: this agent takes `labels` messages (the agent checks each, shared/assigned-labels.ts);
        // refusals: it takes `refused` messages, and backs off on them (tunnel-pool.ts).
        this.activate = () =>
          sendToProxy(control, {
            type: 'hello',
            version: 1,
            agent_version: VERSION,
            labels: options.labels(),
            services: options.services,
            assigned_labels: true,
            refusals: true,
          })
        readMessages(control, parseProxyMessage, (message) => {
          switch (message.type) {
            case 'welcome': {
              if (this.proxyId) return
              // The pool keys tunnels by this ID: a proxy's word for it would let one proxy's
              // keys pose as another proxy, which the node would then stop dialling.
              const named = this.resumed ? options.sessionProxyId : certifiedProxyId(socket)
              if (message.proxy_id !== named) return fail(new Error(`the proxy's welcome names ${message.proxy_id}, its certificate ${named ?? 'nothing'}`))
              this.proxyId = message.proxy_id
              this.openedAt = Date.now()
              this.carriesAudit = message.audit
              this.carriesSkippedRecordings = message.skipped_recordings
              clearTimeout(timer)
              socket.off('error', fail)
              socket.on('error', () => {})
              resolve()
              return
            }
            case 'proxies':
              // Only as the auth server signed it (shared/signed-live-set.ts): the proxy could otherwise name itself alone.
              if (!liveSetSigned(identity.clusterName, message.ids, message.signed, identity.hostCAPems)) {
                this.emit('live_set_refused', message.signed ? 'no host CA this node trusts signed the set' : 'the set came without the auth server’s signature')
                return
              }
              this.announced = message.ids
              this.announcedAt = message.signed!.signed_at
              this.emit('proxies', this.announced, message.spread_ms)
              return
            case 'refused':
              this.refusal = { reason: message.reason, ...(message.retry_after_ms === undefined ? {} : { retryAfterMs: message.retry_after_ms }) }
              return
            default:
              this.emit(message.type, message)
          }
        })
      })
    })
  }

  /**
   * Says hello: the proxy registers this tunnel (replacing any older one of ours) and may
   * route users through it. Called only for tunnels the pool keeps.
   */
  activate: () => void = () => {}

  /** Tells the proxy this node's new labels (after a configuration reload). */
  sendLabels(labels: Record<string, string>): void {
    if (this.control) sendToProxy(this.control, { type: 'heartbeat', labels })
  }

  /** Tells the proxy the certificate this node renewed, so that it trusts this tunnel by it once the old CA is dropped. */
  sendCertificate(tlsCertPem: string): void {
    if (this.control) sendToProxy(this.control, { type: 'cert', tls_cert: tlsCertPem })
  }

  /** Asks the proxy for certificates from the current signing CA (answered with a 'certs' event). */
  requestRenewal(): void {
    if (this.control) sendToProxy(this.control, { type: 'renew' })
  }

  /**
   * Sends audit events to the auth server through the proxy; resolves once the proxy says
   * the auth server has them. Rejects when it says otherwise (AuditRefused when sending them
   * again is no use), when the tunnel closes first, or without an answer in time.
   */
  deliverAudit(events: FlatNodeEvent[]): Promise<void> {
    const control = this.control
    if (!control || !this.carriesAudit) return Promise.reject(new Error(`proxy ${this.proxyId} does not carry audit events`))
    const batch = randomUUID()
    return new Promise((resolve, reject) => {
      const settle = (error?: Error) => {
        clearTimeout(timer)
        this.off('audit_stored', answered)
        this.off('audit_failed', answered)
        this.off('close', closed)
        if (error) reject(error)
        else resolve()
      }
      const answered = (message: ProxyMessageOf<'audit_stored' | 'audit_failed'>) => {
        if (message.batch !== batch) return
        if (message.type === 'audit_stored') settle()
        else settle(auditFailure(message))
      }
      const closed = () => settle(new Error('the tunnel closed before the answer came'))
      const timer = setTimeout(() => settle(new Error(`no answer from proxy ${this.proxyId} within ${AUDIT_ANSWER_MS / 1000}s`)), AUDIT_ANSWER_MS)
      this.on('audit_stored', answered)
      this.on('audit_failed', answered)
      this.once('close', closed)
      // Signed, so that the proxy passing them on cannot change them or write others in this node's name.
      sendToProxy(control, { type: 'audit', batch, events, signature: signAsNode(this.hostId, { kind: 'audit events', events }, this.identity?.tlsKeyPem ?? '') })
    })
  }

  /** Sends a recording chunk to the auth server through the proxy, as deliverAudit sends events; resolves with what the auth server holds. */
  deliverRecording(chunk: RecordingChunkIn): Promise<RecordingStored> {
    const control = this.control
    if (!control || !this.carriesAudit) return Promise.reject(new Error(`proxy ${this.proxyId} does not carry recordings`))
    const batch = randomUUID()
    return new Promise((resolve, reject) => {
      const settle = (error: Error | undefined, stored?: RecordingStored) => {
        clearTimeout(timer)
        this.off('recording_stored', answered)
        this.off('audit_failed', answered)
        this.off('close', closed)
        if (error) reject(error)
        else resolve(stored!)
      }
      const answered = (message: ProxyMessageOf<'recording_stored' | 'audit_failed'>) => {
        if (message.batch !== batch) return
        if (message.type === 'recording_stored') settle(undefined, { length: message.length, complete: message.complete, recording: message.recording })
        else settle(auditFailure(message))
      }
      const closed = () => settle(new Error('the tunnel closed before the answer came'))
      const timer = setTimeout(() => settle(new Error(`no answer from proxy ${this.proxyId} within ${AUDIT_ANSWER_MS / 1000}s`)), AUDIT_ANSWER_MS)
      this.on('recording_stored', answered)
      this.on('audit_failed', answered)
      this.once('close', closed)
      sendToProxy(control, { type: 'recording', batch, chunk, signature: signAsNode(this.hostId, { kind: 'recording chunk', chunk }, this.identity?.tlsKeyPem ?? '') })
    })
  }

  private get hostId(): string {
    return this.identity?.hostId ?? ''
  }

  /** The round trip to the proxy in ms (a yamux ping). */
  ping(): Promise<number> {
    if (!this.session) return Promise.reject(new Error('not connected'))
    return this.session.ping()
  }

  /** Bytes this tunnel's connection sent and received, TLS included. */
  get bytes(): { sent: number; received: number } {
    return { sent: this.socket?.bytesWritten ?? 0, received: this.socket?.bytesRead ?? 0 }
  }

  /** Closes gracefully: GoAway first so the proxy opens no new streams. */
  close(): void {
    this.session?.goAway()
    this.session?.close()
    this.shutdown()
  }

  private shutdown(): void {
    if (this.closed) return
    this.closed = true
    this.session?.close()
    this.emit('close')
  }
}

/**
 * What a TLS context and a session ticket are made from. A ticket resumes the session it
 * came from, with the certificates and trusted CAs of then, so it is used only while these
 * are unchanged (CA rotations change an identity's certificates in place).
 */
export function credentialsKey(identity: NodeIdentity): string {
  return [identity.tlsCertPem, identity.tlsKeyPem, ...identity.hostCAPems].join('')
}

/**
 * One TLS context per identity and content: building one parses the CA certificates and
 * the key, which costs more than the handshake itself when a pool dials a round of tunnels.
 */
const contexts = new WeakMap<NodeIdentity, { key: string; context: SecureContext }>()
function secureContextFor(identity: NodeIdentity): SecureContext {
  const key = credentialsKey(identity)
  let cached = contexts.get(identity)
  if (cached?.key !== key) {
    cached = { key, context: createSecureContext({ ca: identity.hostCAPems, cert: identity.tlsCertPem, key: identity.tlsKeyPem, minVersion: 'TLSv1.3' }) }
    contexts.set(identity, cached)
  }
  return cached.context
}

/** The host ID (CN) of the proxy certificate a full handshake showed. */
function certifiedProxyId(socket: TLSSocket): string | undefined {
  const cert = socket.getPeerX509Certificate()
  return cert ? certSubject(cert).commonName : undefined
}

/** What an audit_failed answer means to the sender: given up, or to be sent again, not before the auth server's Retry-After. */
function auditFailure(message: ProxyMessageOf<'audit_failed'>): Error {
  if (message.refused) return new AuditRefused(message.error)
  return Object.assign(new Error(message.error), { retryAfterS: message.retry_after_s })
}
