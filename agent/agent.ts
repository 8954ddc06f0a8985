// The node agent: join once (or reuse the stored identity), then either keep reverse
// tunnels to every proxy (when it joined through a proxy's web port) or heartbeat directly
// to the auth server and let the proxies dial it (direct mode), and renew its certificates
// before they lapse (renewal.ts). Its SSH server and declared
// local ports are reachable only through streams that a proxy opens: in a tunnel, or over
// a mutual-TLS connection to `ssh_service.listen_addr`. The HTTPS client (join, discovery,
// direct mode) is loaded only when one of those needs it: a node restarted in tunnel mode
// never does.

import { X509Certificate } from 'node:crypto'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { joinHostPort, parseHostPort } from '../shared/address.ts'
import { ClockWatch } from '../shared/clock-watch.ts'
import type { WarrenConfig } from '../shared/config.ts'
import { DEFAULTS } from '../shared/config.ts'
import { obtainIdentity } from '../shared/enroll.ts'
import { ApiError } from '../shared/errors.ts'
import { tuneHeapForForwarding } from '../shared/heap-tuning.ts'
import { IdentityKeeper } from '../shared/identity-keeper.ts'
import { applyTrust, identityDir, identityExists, loadIdentity, type NodeIdentity } from '../shared/identity-store.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import { signAsNode } from '../shared/node-signature.ts'
import { caPin } from '../shared/pin.ts'
import { PortProofs } from '../shared/port-request-proof.ts'
import { AUDIT_BATCH_BYTES, CONTROL_BATCH_BYTES } from '../shared/protocol/audit.ts'
import type { Discovery, RenewedCertificates } from '../shared/protocol/hosts.ts'
import { type RenewalState, timeLeftFields } from '../shared/renewal-schedule.ts'
import { certificateUsable } from '../shared/renewal-window.ts'
import { acceptRenewed } from '../shared/renewed-certificates.ts'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'
import { probeServerCertificate, untrustedIssuerCode, untrustedPeerOfError } from '../shared/tls-verdict.ts'
import type { MissedRotation, TrustBridge } from '../shared/trust-bridge.ts'
import { checkTrust, type TrustStatement } from '../shared/trust-statement.ts'
import { monotonicMs } from '../shared/yamux/clock.ts'
import { NodeAssignedLabels } from './assigned-labels.ts'
import { AuditQueue } from './audit-queue.ts'
import { AuditSender } from './audit-sender.ts'
import { type ClockProblem, type ClockStatus, clockProblemOfError, clockStatus, probeServerClock } from './clock.ts'
import type { DirectListener } from './direct-listener.ts'
import { declaredPortName, forwardRefusal, remoteForwardRefusal } from './forward-policy.ts'
import type { Heartbeat } from './heartbeat.ts'
import { NodeRecordings } from './node-recordings.ts'
import { NodeRenewal } from './renewal.ts'
import { type ServiceTable, serveStream } from './services.ts'
import { sftpServerProgram } from './sftp-server.ts'
import { SshOnDemand } from './ssh-on-demand.ts'
import { type AgentTunnel, AuditRefused, type TrustMessage, type TunnelRefused } from './tunnel.ts'
import { forgetTunnelAddress, rememberedTunnelAddress, rememberTunnelAddress, type TunnelAddress } from './tunnel-address.ts'
import { type RedialReason, TunnelPool } from './tunnel-pool.ts'

/** How often at most the agent asks for the tunnel address again while no tunnel opens. */
const REDISCOVER_MS = 30_000

/** How often at most an unreachable node checks the certificate its server presents against its clock (clock.ts). */
const CLOCK_PROBE_MS = 30_000

/** How long a node starting across a host CA rotation it missed waits between discoveries that fail for it. */
const START_RETRY_MS = 10_000

export interface AgentOptions {
  config: WarrenConfig
  log?: Logger
  heartbeatIntervalMs?: number
  warn?: (message: string) => void
}

export class Agent {
  readonly config: WarrenConfig
  readonly log: Logger
  identity!: NodeIdentity
  pool?: TunnelPool
  ssh?: SshOnDemand
  private heartbeat?: Heartbeat
  private direct?: DirectListener
  private readonly options: AgentOptions
  private services!: ServiceTable
  private renewal?: NodeRenewal
  /** When discovery last ran because no tunnel could be opened (see rediscover). */
  private rediscoveredAt = 0
  private stopped = false
  /** What prepare() found: the server joined through, and the tunnel address unless in direct mode. */
  private prepared?: { server: string; tunnel?: TunnelAddress; source?: string }
  /** How often this process asked a proxy where the tunnels go (agent/status.ts reports it). */
  discoveries = 0
  /** The SSH server's audit events, on disk until the auth server has them. */
  audit?: { queue: AuditQueue; sender: AuditSender }
  /** Interactive sessions' recordings, on disk until the auth server has them. */
  private recordings?: NodeRecordings
  /** Counts since this process started, across tunnel pools (agent/metrics.ts reads them). */
  readonly counts = { redials: {} as Partial<Record<RedialReason, number>>, closedTunnelBytes: { sent: 0, received: 0 }, sshSessions: 0, refusedTrust: 0, refusedLiveSets: 0 }
  /** Set before start() to be told each round trip a tunnel's keepalive measured (agent/metrics.ts). */
  onRtt?: (rttMs: number) => void
  /** Where the tunnels go, and whether they wait for certificates the proxies accept (see holdTunnels). */
  private tunnels?: { server: string; address: TunnelAddress; held: boolean }
  /** Steps of the system clock, and the checks that follow each tick (see watchClock). */
  private clockWatch?: ClockWatch
  /** What the latest TLS handshake with the cluster said about this host's clock, if it failed for time. */
  private clockSeen?: { problem: ClockProblem; evidence: string }
  /** When the clock was last checked against the server's certificate (monotonic ms). */
  private clockProbedAt?: number
  /** The clock problem last logged (null: none). */
  private clockLogged: ClockProblem | null = null
  /** Asks for trust bridges (see bridgeTrust), once one is needed. */
  private bridges?: TrustBridge
  /** When held tunnels last had the server's certificate checked for an unknown CA (see checkServerTrust). */
  private heldTrustProbedAt?: number
  /** The labels the cluster assigns to this node, which win over its own where it judges access (agent/assigned-labels.ts). */
  readonly assignedLabels: NodeAssignedLabels
  /** Saves the identity as it changes, and keeps it in memory when the disk refuses (shared/identity-keeper.ts). */
  readonly keeper: IdentityKeeper

  constructor(options: AgentOptions) {
    this.options = options
    this.config = options.config
    this.log = options.log ?? createLogger('node', { level: options.config.log.level })
    this.keeper = new IdentityKeeper({ dataDir: this.config.dataDir, log: this.log, current: () => this.identity })
    this.assignedLabels = new NodeAssignedLabels({
      identity: () => this.identity,
      ownLabels: () => this.config.labels,
      dataDir: this.config.dataDir,
      log: this.log,
      save: (identity) => this.keeper.save(identity),
    })
  }

  /**
   * The steps that may need the cluster's HTTPS API: the identity (joining when none is
   * stored) and where the tunnels go (discovery when no address is remembered, or direct
   * mode). True when it used the HTTPS client and the node, in tunnel mode, needs it no
   * more; start() calls it if nobody did.
   */
  async prepare(): Promise<boolean> {
    if (this.prepared) return false
    tuneHeapForForwarding('node')
    // Joining, or recovering certificates that expired while the device was away.
    const joined = !identityExists(this.config.dataDir) || !certificateUsable(loadIdentity(this.config.dataDir)!)
    this.identity = await obtainIdentity(this.config, 'node', this.log, this.options.warn, this.keeper)
    const server = this.identity.authServers[0]
    const remembered = rememberedTunnelAddress(this.config.dataDir, server)
    if (remembered) {
      this.prepared = { server, tunnel: remembered, source: 'remembered from the last start' }
      return joined
    }
    const discovery = await this.discoverAcrossRotation(server)
    if (!discovery) {
      this.prepared = { server }
      return false // direct mode heartbeats over HTTPS for as long as it runs
    }
    const tunnel = this.tunnelAddress(server, discovery)
    this.rememberTunnelAddress(server, tunnel)
    this.prepared = { server, tunnel, source: "from the proxy's discovery" }
    return true
  }

  async start(): Promise<void> {
    await this.prepare()
    const { server, tunnel, source } = this.prepared!
    const audit = this.startAudit(server)
    const direct = () => this.heartbeat && { server, caPems: this.identity.hostCAPems, certPem: this.identity.tlsCertPem, keyPem: this.identity.tlsKeyPem }
    this.recordings = new NodeRecordings({ dataDir: this.config.dataDir, direct, tunnel: () => this.pool?.all.find((t) => t.carriesAudit), log: this.log })
    this.ssh = new SshOnDemand({
      audit: (type, fields) => {
        // The SSH server's events say when a session starts and ends: the sessions open now.
        if (type === 'session.start') this.counts.sshSessions++
        else if (type === 'session.end') this.counts.sshSessions--
        audit.record(type, fields)
      },
      hostKeyPem: this.identity.sshKeyPem,
      userCAKeys: this.identity.userCASshKeys,
      log: this.log,
      // Read at each request: a reload changes the policy and the declared ports.
      forwardRefusal: (host, port) => forwardRefusal(this.config.ssh, host, port),
      remoteForwardRefusal: () => remoteForwardRefusal(this.config.ssh),
      // The user's roles are judged against this node's labels (the assigned ones winning) and declared ports as they are now.
      labels: () => this.judgedLabels,
      declaredPortName: (host, port) => declaredPortName(this.config.ssh, host, port),
      sftpServer: () => sftpServerProgram(this.config.ssh.sftpServer),
      limits: () => this.config.ssh.limits,
      recordingDir: (user, name) => this.recordings?.place(user, name),
      recorded: () => this.recordings?.uploader.kick(),
      // As sshd: `who`, `w`, `last` and `lastlog` show sessions with a terminal.
      loginRecords: true,
    })
    this.services = {
      ssh: this.ssh,
      ports: this.config.ssh.forwardPorts,
      userCAKeys: () => this.identity.userCASshKeys.map((line) => parseSshPublicKey(line)),
      labels: () => this.judgedLabels,
      node: () => ({ cluster: this.identity.clusterName, names: [this.identity.nodename, this.identity.hostId] }),
      portProofs: new PortProofs(),
      audit: (type, fields) => audit.record(type, fields),
    }
    this.renewal = new NodeRenewal({
      identity: () => this.identity,
      server,
      tunnel: () => this.pool?.all[0],
      // Held tunnels included: a node in tunnel mode renews through its tunnels, never at the proxy's web port.
      tunnelMode: () => this.tunnels !== undefined,
      unusable: () => this.holdTunnels(),
      apply: (renewed, how) => this.applyRenewal(renewed, how),
      log: this.log,
    })
    if (tunnel === undefined) await this.startDirect(server)
    else if (this.certificateUsable()) this.startTunnels(server, tunnel, source!)
    else this.tunnels = { server, address: tunnel, held: true }
    this.renewal.start()
    this.watchClock(server)
  }

  /**
   * The node's clock against the cluster's certificates (clock.ts), checked every few
   * seconds: a problem is logged when it appears and when it ends, and tunnels held for a
   * certificate that only looked unusable by a wrong clock open once the clock is set.
   */
  private watchClock(server: string): void {
    this.clockWatch = new ClockWatch({
      stepped: (byMs) => {
        this.log.info('the system clock was set', { clock_step_ms: Math.round(byMs) })
        this.clockSeen = undefined
        this.clockProbedAt = undefined
        this.renewal?.clockStepped(byMs)
      },
      tick: () => {
        this.checkClock(server)
        this.checkServerTrust(server)
      },
    })
    this.clockWatch.start()
    this.checkClock(server)
  }

  private checkClock(server: string): void {
    if (this.stopped) return
    const heartbeat = this.heartbeat
    const reachable = (this.pool?.heldCount ?? 0) > 0 || (heartbeat !== undefined && heartbeat.ok > 0 && !heartbeat.failing)
    // The common case costs nothing: reachable, nothing held back, nothing to take back.
    if (reachable && !this.tunnels?.held && this.clockLogged === null) {
      this.clockSeen = undefined
      return
    }
    const usable = this.certificateUsable()
    if (this.tunnels?.held && usable) this.startTunnels(this.tunnels.server, this.tunnels.address, 'now that the certificate is valid by the clock')
    // A handshake that went through shows the clock agrees with the cluster's certificates.
    if (reachable) this.clockSeen = undefined
    // Tunnel dials name a time error themselves; an expired certificate and failing heartbeats do not.
    else if ((!usable || heartbeat?.failing) && this.clockSeen === undefined && (this.clockProbedAt === undefined || monotonicMs() - this.clockProbedAt >= CLOCK_PROBE_MS)) {
      this.clockProbedAt = monotonicMs()
      void probeServerClock(server, this.identity.hostCAPems).then((seen) => {
        if (this.stopped) return
        this.clockSeen = seen
        this.reportClock()
      })
    }
    this.reportClock()
  }

  /** Logs a clock problem once when it appears, and once when it is over. */
  private reportClock(): void {
    const status = this.clock
    if (!status || status.problem === this.clockLogged) return
    this.clockLogged = status.problem
    if (status.problem === null) this.log.info('the system clock agrees with the cluster again', { clock: 'ok', clock_now: status.now })
    else
      this.log.warn(`the system clock is ${status.problem} (${status.now}: ${status.evidence}): TLS with the cluster fails until it is set`, {
        clock: status.problem,
        clock_now: status.now,
        clock_evidence: status.evidence,
      })
  }

  /** What the node can tell about its system clock (agent/status.ts). */
  get clock(): ClockStatus | undefined {
    if (!this.identity) return undefined
    const status = clockStatus(new X509Certificate(this.identity.tlsCertPem), this.clockSeen)
    const ahead = this.renewal?.clockAheadMs ?? 0
    return ahead > 0 ? { ...status, clock_ahead_ms: ahead } : status
  }

  /** Tunnel mode waiting for certificates the proxies accept (see holdTunnels): where the tunnels will go. */
  get heldTunnelAddress(): string | undefined {
    return this.tunnels?.held && !this.pool ? joinHostPort(this.tunnels.address.host, this.tunnels.address.port) : undefined
  }

  /**
   * The labels users' roles are judged against on this node: its own (its config, as reloaded)
   * with those the cluster assigns in place of its own of the same keys. What it reports
   * (tunnel hello and heartbeats, direct heartbeats) stays its own: the cluster merges them.
   */
  get judgedLabels(): Record<string, string> {
    return this.assignedLabels.judged()
  }

  /** Where the renewal of the certificates stands, once it is scheduled. */
  get renewalState(): RenewalState | undefined {
    return this.renewal?.state
  }

  /** The queue of audit events and what ships them: through a tunnel's proxy, or straight to the auth server. */
  private startAudit(server: string): AuditSender {
    const queue = new AuditQueue({ path: join(this.config.dataDir, 'audit-queue.jsonl') })
    const direct = async (events: Parameters<AgentTunnel['deliverAudit']>[0]) => {
      const { ApiClient } = await import('../shared/api-client.ts')
      const { hostCAPems, tlsCertPem, tlsKeyPem } = this.identity
      const client = new ApiClient({ server, caPems: hostCAPems, certPem: tlsCertPem, keyPem: tlsKeyPem })
      try {
        // Signed as through a proxy, so that the auth server learns this host signs: no proxy can then write unsigned events in its name.
        const signature = signAsNode(this.identity.hostId, { kind: 'audit events', events }, tlsKeyPem)
        await client.call('POST /v1/audit/events', { body: { events, signature } })
      } finally {
        await client.close()
      }
    }
    const sender = new AuditSender({
      queue,
      transport: () => {
        if (this.heartbeat) return { send: direct, maxBytes: AUDIT_BATCH_BYTES / 2 }
        // A proxy of this version first: one of an earlier one leaves recording.skipped events waiting.
        const carriers = this.pool?.all.filter((t) => t.carriesAudit) ?? []
        const tunnel = carriers.find((t) => t.carriesSkippedRecordings) ?? carriers[0]
        return (
          tunnel && {
            send: (events) => tunnel.deliverAudit(events),
            maxBytes: CONTROL_BATCH_BYTES,
            // Left waiting for a proxy that takes them: one of an earlier version would close the tunnel.
            takes: (type: string) => type !== 'recording.skipped' || tunnel.carriesSkippedRecordings,
          }
        )
      },
      refused: (error) => error instanceof AuditRefused || (error instanceof ApiError && (error.status === 400 || error.status === 413)),
      log: this.log,
    })
    this.audit = { queue, sender }
    // Events queued before a restart go out as soon as there is a way.
    sender.kick()
    return sender
  }

  /** Whether the certificate is valid and from a trusted CA, by the auth server's clock once a refused recovery showed this clock runs ahead of it. */
  private certificateUsable(): boolean {
    return certificateUsable(this.identity, this.renewal?.now())
  }

  /**
   * The certificate expired (or its CA was dropped): proxies refuse new tunnels with it, so
   * none is dialled until it is recovered, instead of dials refused without end. Tunnels
   * still open (a rollback left the node a certificate from the abandoned CA, and they stay
   * on the one they opened with) carry on meanwhile.
   */
  private holdTunnels(): void {
    if (!this.pool || !this.tunnels || this.pool.heldCount > 0) return
    this.log.warn("this node's certificate is no longer accepted: its tunnels wait until it is recovered")
    this.pool.stop()
    this.pool = undefined
    this.tunnels.held = true
  }

  private get heartbeatIntervalMs(): number {
    return this.options.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs
  }

  /**
   * Direct mode: `server` is an auth server, which hears this node's heartbeats, and the
   * proxies dial this node at the address the heartbeats report.
   */
  private async startDirect(server: string): Promise<void> {
    const { DirectListener } = await import('./direct-listener.ts')
    this.direct = new DirectListener({
      listenAddr: this.config.ssh.listenAddr,
      identity: this.identity,
      services: this.services,
      keepAliveIntervalMs: this.config.keepaliveIntervalMs,
      log: this.log,
    })
    const port = await this.direct.listen()
    const { Heartbeat } = await import('./heartbeat.ts')
    this.heartbeat = new Heartbeat(this.identity, server, {
      intervalMs: this.heartbeatIntervalMs,
      labels: this.config.labels,
      serviceAddr: this.serviceAddr(port),
      log: this.log,
      onAnswer: (answer) => {
        this.direct?.setRefusedProxies(answer.refused_proxies ?? [])
        this.followCAs(answer.trust, server)
        // After the CAs: labels signed by a CA trusted from this answer on are judged by it.
        this.assignedLabels.receive(answer.assigned_labels, server)
      },
    })
    this.heartbeat.start()
  }

  /** `ssh_service.public_addr`, else the listening port on whatever address the auth server sees. */
  private serviceAddr(port: number): string {
    const publicAddr = this.config.ssh.publicAddr
    if (publicAddr === undefined) return `:${port}`
    const { host, port: publicPort } = parseHostPort(publicAddr, DEFAULTS.sshPort)
    return joinHostPort(host, publicPort)
  }

  /** Remembers where tunnels go; a disk that refuses it costs the next start one discovery, nothing more. */
  private rememberTunnelAddress(server: string, tunnel: TunnelAddress): void {
    try {
      rememberTunnelAddress(this.config.dataDir, server, tunnel)
    } catch (error) {
      this.log.warn(`the tunnel address could not be saved in ${this.config.dataDir}: ${(error as Error).message}; the next start asks the proxy for it again`, {
        data_dir: this.config.dataDir,
      })
    }
  }

  /** Where the proxy's discovery answer sends tunnels; a bare ":port" is on the web address's host. */
  private tunnelAddress(server: string, discovery: Discovery): TunnelAddress {
    const web = parseHostPort(server, DEFAULTS.webPort)
    if (discovery.tunnel_addr === null) return web
    if (discovery.tunnel_addr.startsWith(':')) return { host: web.host, port: Number(discovery.tunnel_addr.slice(1)) }
    return parseHostPort(discovery.tunnel_addr, DEFAULTS.tunnelPort)
  }

  private startTunnels(server: string, tunnel: TunnelAddress, source: string): void {
    this.tunnels = { server, address: tunnel, held: false }
    this.log.info(`reverse tunnels through ${tunnel.host}:${tunnel.port} (${source})`)
    this.pool = new TunnelPool({
      host: tunnel.host,
      port: tunnel.port,
      identity: this.identity,
      keepAliveIntervalMs: this.config.keepaliveIntervalMs,
      labels: () => this.config.labels,
      services: ['ssh', ...this.config.ssh.forwardPorts.map((p) => p.name)],
      onStream: (stream: Duplex) => void serveStream(stream, this.services, this.log),
      onControl: (tunnel, message) => this.onControl(tunnel, message),
      onLiveSetRefused: (tunnel, reason) => {
        this.counts.refusedLiveSets++
        this.log.warn(`live proxy set from proxy ${tunnel.proxyId} refused: ${reason}`, { proxy_id: tunnel.proxyId, live_set_refused: reason })
      },
      onFailedRound: (held, error) => {
        const problem = clockProblemOfError(error)
        if (problem) this.clockSeen = { problem, evidence: `a tunnel's TLS handshake with ${tunnel.host}:${tunnel.port} failed: ${error.message}` }
        // No proxy takes this node: either its servers present a CA it does not trust, or
        // they refuse its certificate, whose CA the cluster may have dropped while the node
        // was off (it heard a rotation begin, not end). What the cluster trusts now says which.
        if (held === 0) void this.bridgeTrust(server, untrustedPeerOfError(error) ? 'untrusted' : 'refused')
        if (held === 0) void this.rediscover(server, tunnel)
      },
      onRedial: (reason) => (this.counts.redials[reason] = (this.counts.redials[reason] ?? 0) + 1),
      onRefused: (refused, refusal, retryInMs) => void this.tunnelRefused(refused, refusal, retryInMs),
      onTunnelClosed: (closed) => {
        this.counts.closedTunnelBytes.sent += closed.bytes.sent
        this.counts.closedTunnelBytes.received += closed.bytes.received
      },
      onRtt: (rttMs) => this.onRtt?.(rttMs),
      log: this.log,
    })
    this.pool.start()
  }

  /**
   * A proxy refused a tunnel at its hello (the pool waits before it dials again). A host
   * the cluster does not know (removed, replaced, or the auth server restored from a backup
   * older than this node's join) is told at ERROR what re-admits it: only a new token does,
   * with the identity it holds removed (a node with a usable one never uses a token).
   */
  private async tunnelRefused(tunnel: AgentTunnel, refusal: TunnelRefused, retryInMs: number): Promise<void> {
    const fields = { host_id: this.identity.hostId, proxy_id: tunnel.proxyId, tunnel_refused: refusal.reason, retry_in_ms: retryInMs }
    if (refusal.reason !== 'unregistered') {
      this.log.warn(`proxy ${tunnel.proxyId} refused this node's tunnel (${refusal.reason}); dialling again in ${retryInMs} ms`, fields)
      return
    }
    const { readmitCommand } = await import('../shared/recover.ts')
    const readmit = readmitCommand(this.identity.nodename, this.identity.roles)
    const remove = identityDir(this.config.dataDir)
    this.log.error(
      `proxy ${tunnel.proxyId} refused this node's tunnel: the cluster does not know host ${this.identity.hostId} (removed, replaced, or its auth server restored from a backup older than this node's join); to join it again, make a token with "${readmit}", remove ${remove} and start the node with that token (dialling again in ${retryInMs} ms)`,
      { ...fields, readmit, remove },
    )
  }

  /**
   * No tunnel opens to the address in use (remembered from an earlier start, or the
   * proxies moved it): ask the proxy again, at most every REDISCOVER_MS, and move the
   * pool when the answer differs.
   */
  private async rediscover(server: string, current: TunnelAddress): Promise<void> {
    if (Date.now() - this.rediscoveredAt < REDISCOVER_MS) return
    this.rediscoveredAt = Date.now()
    let discovery: Discovery | undefined
    try {
      discovery = await this.discover(server)
    } catch (error) {
      this.log.debug(`discovery failed: ${(error as Error).message}`)
      return
    }
    if (this.stopped || this.pool === undefined || this.pool.held.length > 0) return
    if (!discovery) {
      this.log.warn(`${server} now answers as an auth server: heartbeating to it directly`)
      this.pool.stop()
      this.pool = undefined
      this.tunnels = undefined
      forgetTunnelAddress(this.config.dataDir)
      await this.startDirect(server).catch((error: Error) => this.log.error(`direct mode cannot start: ${error.message}`))
      return
    }
    const next = this.tunnelAddress(server, discovery)
    if (next.host === current.host && next.port === current.port) return
    this.log.info(`the proxies moved the tunnel address from ${current.host}:${current.port} to ${next.host}:${next.port}`)
    this.rememberTunnelAddress(server, next)
    this.pool.stop()
    this.startTunnels(server, next, "from the proxy's discovery")
  }

  /** CA rotations, renewals' answers and assigned labels, as the proxies relay them over the control stream. */
  private onControl(tunnel: AgentTunnel, message: TrustMessage): void {
    if (message.type === 'ca') this.followCAs(message.trust, `proxy ${tunnel.proxyId}`, false, message.spread_ms)
    else if (message.type === 'labels') this.assignedLabels.receive(message.assigned, `proxy ${tunnel.proxyId}`)
    else this.renewal?.answered(tunnel, message)
  }

  /**
   * Trust what the cluster trusts now, as the auth server signed it (shared/trust-statement.ts:
   * whoever relays it cannot change it), and when the signing CA did not issue our
   * certificate, renew it for the same keys: at once, or after a random wait of up to
   * `spreadMs` when the proxy that told us spreads its nodes' renewals. Nothing is torn
   * down: open tunnels and SSH sessions carry on; new ones use the new certificate.
   */
  private followCAs(trust: TrustStatement | undefined, from: string, bridge = false, spreadMs = 0): boolean {
    try {
      if (!checkTrust(trust, { ...this.identity, version: this.identity.trustVersion })) {
        if (!bridge) this.renewal?.trustChanged(spreadMs)
        return false
      }
      // Read before anything changes: a set the SSH server could not use is refused whole.
      for (const line of trust!.user_ca_ssh_keys) parseSshPublicKey(line)
    } catch (error) {
      // Anything thrown here would escape the control stream's handler and end the agent.
      this.refuseTrust((error as Error).message, from)
      return false
    }
    applyTrust(this.identity, trust!)
    this.identityChanged()
    const fields = { host_cas: trust!.host_ca_certs.length, user_cas: trust!.user_ca_ssh_keys.length, trust_version: trust!.version }
    if (bridge) {
      // The set that follows renews (or recovers) the certificate: not a bridge, whose CA is dropped already.
      this.log.info(`trusted CAs taken from ${from}, across a host CA rotation`, { ...fields, trust_bridged: caPin(trust!.host_ca_certs[0]) })
      return true
    }
    this.log.info('trusted CAs updated', fields)
    this.renewal?.trustChanged(spreadMs)
    return true
  }

  /**
   * Discovery at start. A server presenting a certificate from a CA this node does not trust
   * (the node was off through a host CA rotation) is bridged to (bridgeTrust) and asked again,
   * for as long as it takes, rather than ending the node: nothing else would bring it back.
   */
  private async discoverAcrossRotation(server: string): Promise<Discovery | undefined> {
    for (;;) {
      try {
        return await this.discover(server)
      } catch (error) {
        if (this.stopped || !untrustedPeerOfError(error)) throw error
        if (!(await this.bridgeTrust(server))) await sleep(START_RETRY_MS)
      }
    }
  }

  /**
   * A server presenting a CA this node does not trust is bridged to when nothing else would
   * find it: heartbeats failing (direct mode), or tunnels held for a certificate that expired
   * while the node missed a rotation (no dial fails to say why, and recovery cannot verify the
   * server). An expired certificate alone holds tunnels too, so those probe at most every
   * CLOCK_PROBE_MS.
   */
  private checkServerTrust(server: string): void {
    if (this.stopped || this.bridges?.busy || this.bridges?.due === false) return
    if (!this.heartbeat?.failing) {
      if (!this.tunnels?.held || this.certificateUsable()) return
      if (this.heldTrustProbedAt !== undefined && monotonicMs() - this.heldTrustProbedAt < CLOCK_PROBE_MS) return
      this.heldTrustProbedAt = monotonicMs()
    }
    // Neither says why it fails: the certificate the server presents does.
    void probeServerCertificate(server, this.identity.hostCAPems).then((seen) => {
      if (!this.stopped && untrustedIssuerCode(seen?.code)) void this.bridgeTrust(server)
    })
  }

  /**
   * A server of the cluster presented a certificate from a host CA this node does not trust:
   * the node missed a host CA rotation. It asks where it joined, at most every BRIDGE_MS, for
   * the bridges out of the CAs it trusts (shared/trust-bridge.ts), and takes each only as any set
   * (followCAs: signed by a host CA it trusts, newer than its own), then what the cluster
   * trusts now, after which its certificate, from the dropped CA, is recovered (renewal.ts).
   * True when it took a bridge.
   */
  private async bridgeTrust(server: string, why: MissedRotation = 'untrusted'): Promise<boolean> {
    // Loaded only when needed: a node that follows every rotation never holds this code.
    const { TrustBridge } = await import('../shared/trust-bridge.ts')
    this.bridges ??= new TrustBridge({
      role: 'node',
      identity: () => this.identity,
      follow: (trust, server, bridge) => this.followCAs(trust, bridge ? `a bridge from ${server}` : server, bridge),
      unbridged: (server, readmit, pins, expiredOn) => {
        const fields = { host_id: this.identity.hostId, readmit, trust_unbridged: pins.join(',') }
        if (expiredOn !== undefined) {
          this.log.error(
            `the host CA this node trusts expired on ${expiredOn}, and ${server} presents another: once the cluster's host CA is rotated through to standby ("warrenctl auth rotate --type=host"), this node follows it and recovers its certificate if that expired within the recovery window; else re-admit it with "${readmit}" and start it with that token`,
            { ...fields, trusted_ca_expired: expiredOn },
          )
        } else {
          this.log.error(
            `no trust bridge leads from the host CAs this node trusts to the one ${server} presents (the rotation was longer ago than bridges are kept, or it is not this cluster's server): re-admit this node with "${readmit}" and start it with that token`,
            fields,
          )
        }
      },
      stopped: () => this.stopped,
      // Asked only because no proxy takes the node, the server may well be down too.
      failureLevel: (why) => (why === 'untrusted' ? 'warn' : 'debug'),
      log: this.log,
    })
    return this.bridges.ask(server, why)
  }

  /** A set of CAs that did not come signed as it must: what the node trusts stays as it is. */
  private refuseTrust(reason: string, from: string): void {
    this.counts.refusedTrust++
    this.log.warn(`trusted CAs from ${from} refused: ${reason}`, { trust_refused: reason })
  }

  /** The identity changed (its certificates or the CAs it trusts): on disk, and everything that uses it follows. */
  private identityChanged(): void {
    this.ssh?.setUserCAKeys(this.identity.userCASshKeys)
    // A full disk must not cut the node off: the new certificates serve from memory meanwhile.
    this.keeper.save(this.identity)
    this.heartbeat?.setIdentity(this.identity)
    this.direct?.setIdentity(this.identity)
  }

  /** New certificates for the same keys (in place: the tunnel pool dials with this identity); throws when they are not for them. */
  private applyRenewal(renewed: RenewedCertificates, how: 'renewed' | 'recovered'): void {
    const trustChanged = acceptRenewed(this.identity, renewed, (reason) => this.refuseTrust(reason, 'a renewal answer'))
    // Judged by the CAs trusted now, those that came with the answer included; saved with the certificates.
    this.assignedLabels.take(renewed.assigned_labels, `the ${how === 'renewed' ? 'renewal' : 'recovery'} answer`)
    this.identityChanged()
    // Every proxy must know it: each closes tunnels whose certificates are all from a dropped CA.
    this.pool?.announceCertificate(renewed.tls_cert)
    if (this.tunnels?.held && !this.stopped) this.startTunnels(this.tunnels.server, this.tunnels.address, 'with the recovered certificates')
    this.log.info(`${how} this node's certificates`, { host_id: this.identity.hostId, ...timeLeftFields(new X509Certificate(this.identity.tlsCertPem)) })
    if (trustChanged) this.renewal?.trustChanged()
  }

  /** The proxy's discovery answer, or undefined when `server` is an auth server (direct mode). */
  private async discover(server: string): Promise<Discovery | undefined> {
    this.discoveries++
    const { ApiClient } = await import('../shared/api-client.ts')
    const client = new ApiClient({ server, caPems: this.identity.hostCAPems })
    try {
      return await client.call('GET /v1/discovery')
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return undefined
      throw error
    } finally {
      await client.close()
    }
  }

  /**
   * Applies what may change without a restart: labels (sent with the next heartbeat; those
   * the cluster assigns still win where access is judged), forwarded ports and where ssh -L may go.
   */
  reload(next: WarrenConfig): void {
    this.config.labels = next.labels
    this.config.ssh.forwardPorts = next.ssh.forwardPorts
    this.config.ssh.portForwarding = next.ssh.portForwarding
    this.services.ports = next.ssh.forwardPorts
    this.heartbeat?.setLabels(next.labels)
    this.pool?.relabel()
    this.log.info('labels and forwarded ports reloaded', {
      labels: Object.entries(next.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
      ports: next.ssh.forwardPorts.map((p) => p.name).join(','),
    })
  }

  /** Direct mode: the heartbeats and the listener proxies dial (for agent/status.ts). */
  get directMode(): { heartbeat: Heartbeat; listener: DirectListener } | undefined {
    return this.heartbeat && this.direct && { heartbeat: this.heartbeat, listener: this.direct }
  }

  /** Resolves once the auth server has recorded this node's presence (direct mode). */
  waitForPresence(): Promise<void> {
    return this.heartbeat?.firstBeat ?? Promise.reject(new Error('agent not started'))
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.keeper.stop()
    this.clockWatch?.stop()
    this.renewal?.stop()
    this.pool?.stop()
    await this.heartbeat?.stop()
    await this.direct?.close()
    await this.ssh?.close()
    this.audit?.sender.stop()
    this.audit?.queue.close()
    this.recordings?.stop()
  }
}
