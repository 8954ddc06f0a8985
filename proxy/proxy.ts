// The proxy: joins the cluster like any role, then serves the web port (HTTPS API and user
// connections) and the tunnel port — one listener when their addresses are equal, routed by
// ALPN — heartbeats into the auth server, and tells its agents which proxies are live.
// Users reach a node through its tunnel, or a direct node by a dial (node-dialer.ts).

import { X509Certificate } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage } from 'node:http'
import type { Server } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import { parseHostPort } from '../shared/address.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ClockWatch } from '../shared/clock-watch.ts'
import type { WarrenConfig } from '../shared/config.ts'
import { DEFAULTS } from '../shared/config.ts'
import { obtainIdentity } from '../shared/enroll.ts'
import { WarrenError } from '../shared/errors.ts'
import { tuneHeapForForwarding } from '../shared/heap-tuning.ts'
import type { HostRenewal } from '../shared/host-renewal.ts'
import { IdentityKeeper } from '../shared/identity-keeper.ts'
import { applyCertificates, applyTrust, type NodeIdentity } from '../shared/identity-store.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import { sendToAgent } from '../shared/protocol/control.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { listsHeldProxy, TUNNEL_ALPN, USER_ALPN } from '../shared/protocol/tunnel.ts'
import { RetryLater, timeLeftFields } from '../shared/renewal-schedule.ts'
import { certificateUsable } from '../shared/renewal-window.ts'
import { TlsGate } from '../shared/tls-gate/gate.ts'
import type { GateStats } from '../shared/tls-gate/stats.ts'
import { probeServerCertificate, untrustedIssuerCode } from '../shared/tls-verdict.ts'
import type { TrustStatement } from '../shared/trust-statement.ts'
import { certsMessage, ProxyAssignedLabels } from './assigned-labels.ts'
import { type AuditMessage, type RecordingMessage, relayAudit, relayRecording } from './audit-relay.ts'
import { ConnectionLimits } from './connection-limits.ts'
import { HttpConnections } from './http-connections.ts'
import { Multiplexer, type RoutedConnection } from './listener/multiplexer.ts'
import { createTlsRouter } from './listener/tls-router.ts'
import { LiveSetMembership } from './membership.ts'
import { missedRotationOf, ProxyTrustBridge } from './missed-rotation.ts'
import { NodeDialer } from './node-dialer.ts'
import { ownCertificateRenewal } from './own-certificate.ts'
import { OwnCredentials } from './own-credentials.ts'
import { PresenceReports } from './presence-reports.ts'
import { ProxyRevocations } from './revocations.ts'
import { sshStreamGateway } from './ssh-stream-gateway.ts'
import { TicketKeys } from './ticket-keys.ts'
import { type Tunnel, TunnelServer } from './tunnel-server.ts'
import { UserGateway } from './user-gateway.ts'
import { webApi } from './web-api.ts'
import type { WebCertificates } from './web-certificates.ts'
import { WebConsole } from './web-console/console.ts'

/** How often the proxy reads the live set between its heartbeats. */
const LIVE_SET_POLL_MS = 1000

/** How long a stopping proxy gives the auth server to take it out of the live set. */
const LEAVE_TIMEOUT_MS = 2000

/** A client replaced by a renewal is closed this long after, so that calls on it can finish. */
const RETIRED_CLIENT_MS = 20_000

/** How long a proxy starting across a host CA rotation it missed waits between tries that fail for it. */
const START_RETRY_MS = 10_000

export class ProxyService {
  readonly config: WarrenConfig
  readonly log: Logger
  identity!: NodeIdentity
  tunnels!: TunnelServer
  private users!: UserGateway
  private nodes!: NodeDialer
  private connectionLimits?: ConnectionLimits
  private webConsole?: WebConsole
  private httpConnections?: HttpConnections
  private revocations!: ProxyRevocations
  private assignedLabels!: ProxyAssignedLabels
  private auth!: ApiClient
  private servers: Server[] = []
  private gate?: TlsGate
  private timers: NodeJS.Timeout[] = []
  /** Steps of the wall clock, which its renewal and the tunnels' expiry timers follow. */
  private clockWatch?: ClockWatch
  private hostCAPems: string[] = []
  private userCAPems: string[] = []
  private readonly clientAddresses = new WeakMap<object, string>()
  private credentials!: OwnCredentials
  private webCertificates?: WebCertificates
  private presence!: PresenceReports
  private liveSetInFlight = false
  private membership?: LiveSetMembership
  private ownCertificate?: HostRenewal
  private missedRotation!: ProxyTrustBridge
  private readonly warn?: (message: string) => void
  /** Saves the identity as it changes, and keeps it in memory when the disk refuses (shared/identity-keeper.ts). */
  readonly keeper: IdentityKeeper
  readonly addresses: { web: string; tunnel: string } = { web: '', tunnel: '' }

  constructor(config: WarrenConfig, log?: Logger, warn?: (message: string) => void) {
    this.config = config
    this.log = log ?? createLogger('proxy', { level: config.log.level })
    this.warn = warn
    this.keeper = new IdentityKeeper({ dataDir: config.dataDir, role: 'proxy', log: this.log, current: () => this.identity })
  }

  /** The handshake gate's counts (for proxy/status.ts). */
  get handshakeGate(): GateStats | undefined {
    return this.gate?.stats
  }

  /** How many handshakes may wait for a slot (for proxy/metrics.ts). */
  get handshakeQueueCapacity(): number | undefined {
    return this.gate?.config.handshakeQueue
  }

  /** The user connections and their bytes (for proxy/metrics.ts). */
  get userGateway(): UserGateway | undefined {
    return this.users
  }

  /** The ACME web certificate, when proxy_service.acme is enabled (for proxy/status.ts). */
  get acme(): WebCertificates | undefined {
    return this.webCertificates
  }

  get multiplexed(): boolean {
    return this.config.proxy.tunnelListenAddr === this.config.proxy.webListenAddr
  }

  async start(): Promise<void> {
    tuneHeapForForwarding('proxy')
    this.identity = await obtainIdentity(this.config, 'proxy', this.log, this.warn, this.keeper)
    // Unless the auth server presents a CA this proxy does not trust: it then missed a
    // rotation, and bridging to the cluster's trust comes before recovering (reachAuthServer).
    if (!certificateUsable(this.identity) && !untrustedIssuerCode((await probeServerCertificate(this.identity.authServers[0]!, this.identity.hostCAPems))?.code))
      throw new WarrenError("this proxy's certificate has expired and could not be recovered (the log says why): it cannot reach the auth server")
    this.missedRotation = new ProxyTrustBridge({ identity: () => this.identity, dataDir: this.config.dataDir, take: (trust) => this.takeTrust(trust), log: this.log })
    this.ownCertificate = ownCertificateRenewal({ identity: () => this.identity, apply: (renewed, how) => this.applyRenewal(renewed, how), log: this.log })
    this.credentials = new OwnCredentials({
      identity: () => this.identity,
      hostCAPems: () => this.hostCAPems,
      userCAPems: () => this.userCAPems,
      ticketKeys: new TicketKeys(this.config.dataDir),
    })
    this.hostCAPems = this.identity.hostCAPems
    this.auth = this.authClient()
    if (this.config.proxy.acme.enabled) {
      // Loaded only when used: the ACME client and its HTTP stack would otherwise weigh on
      // every process of the single executable, agents included.
      const { WebCertificates } = await import('./web-certificates.ts')
      this.webCertificates = new WebCertificates({
        acme: this.config.proxy.acme,
        publicAddrs: this.config.proxy.publicAddrs,
        auth: () => this.auth,
        clientCAPems: () => [...this.hostCAPems, ...this.userCAPems],
        log: this.log,
      })
    }

    // Removed and locked hosts and users are refused from the first connection on.
    this.revocations = new ProxyRevocations({ fetch: () => this.auth.call('GET /v1/proxies/revocations'), onChange: () => this.dropRefused(), log: this.log })
    // And users are judged by the labels the cluster assigns from the first connection on too.
    this.assignedLabels = new ProxyAssignedLabels({
      fetch: () => this.auth.call('GET /v1/proxies/assigned-labels'),
      clusterName: this.identity.clusterName,
      // Their agents are told, and the user connections to them that the new labels refuse are closed.
      onChange: (hostIds) => {
        this.tunnels?.relayAssignedLabels(hostIds)
        void this.users?.dropRelabelled(hostIds)
        this.webConsole?.dropRelabelled(hostIds)
      },
      onKeysChange: () => void this.judgeOpenConnectionsAgain({ tunnelled: true }),
      log: this.log,
    })
    await this.reachAuthServer(async () => {
      await this.revocations.refresh()
      await this.assignedLabels.follow((await this.auth.call('GET /v1/proxies')).assigned_labels)
    })
    const refusedHost = (hostId: string) => this.revocations.list.refusedHost(hostId)
    this.tunnels = new TunnelServer({
      proxyId: this.identity.hostId,
      clusterName: this.identity.clusterName,
      hostCAPems: () => this.hostCAPems,
      refusedHost,
      assignedLabels: (hostId) => this.assignedLabels.statement(hostId),
      keepAliveIntervalMs: this.config.keepaliveIntervalMs,
      log: this.log,
    })
    this.presence = new PresenceReports({ tunnels: this.tunnels, auth: () => this.auth, log: this.log })
    // Users' SSH connections counted with those through the other proxies (max_connections).
    this.connectionLimits = new ConnectionLimits({ call: (route, ...rest) => this.auth.call(route, ...rest), log: this.log })
    const nodes = new NodeDialer({
      tunnels: this.tunnels,
      directNodes: async () => (await this.auth.call('GET /v1/proxies/direct-nodes')).nodes,
      clusterName: this.identity.clusterName,
      refusedHost,
      judgedLabels: (hostId, reported) => this.assignedLabels.judged(hostId, reported),
      credentials: () => ({ keyPem: this.identity.tlsKeyPem, certPem: this.identity.tlsCertPem, hostCAPems: this.hostCAPems }),
      keepAliveIntervalMs: this.config.keepaliveIntervalMs,
      connectionLimits: this.connectionLimits,
      log: this.log,
    })
    this.nodes = nodes
    this.users = new UserGateway({
      nodes,
      clusterName: this.identity.clusterName,
      userCAPems: () => this.userCAPems,
      refusedUser: (name) => this.revocations.list.refusedUser(name),
      certificateCut: (name) => this.revocations.list.certificateCut(name),
      log: this.log,
    })
    const web = createHttpServer()
    this.httpConnections = new HttpConnections(web)
    const clientAddress = (req: IncomingMessage) => this.clientAddresses.get(req.socket) ?? req.socket.remoteAddress ?? ''
    const router = webApi({
      discovery: () => ({ proxy_id: this.identity.hostId, cluster_name: this.identity.clusterName, tunnel_addr: this.tunnelAddressForAgents() }),
      auth: () => this.auth,
      clientAddress,
      userOf: (req: IncomingMessage) => this.users.userOf(req.socket as TLSSocket),
      log: this.log,
    })
    const webConsole = new WebConsole({ auth: () => this.auth, nodes, clientAddress, refusedUser: (name) => this.revocations.list.refusedUser(name), log: this.log })
    this.webConsole = webConsole
    web.on('request', (req, res) => webConsole.handle(req, res) || void router.handle(req, res))
    web.on('upgrade', (req, socket, head) => webConsole.upgrade(req, socket, head))

    const certificates = this.webCertificates
    const declines = (protocols: string[]) => {
      if (!listsHeldProxy(protocols, this.identity.hostId)) return undefined
      this.tunnels.declined('already_held')
      return 'the agent holds a tunnel to this proxy already'
    }
    const serveTunnel = (socket: TLSSocket, conn: RoutedConnection) => this.tunnels.handle(socket, conn.clientAddress)
    // One gate for both listeners: its limits per source address hold for the whole proxy.
    const gate = new TlsGate({ log: this.log })
    this.gate = gate
    const everything = createTlsRouter({
      gate,
      log: this.log,
      secureContext: () => this.credentials.secureContext(),
      ...(certificates ? { contextByName: (name: string) => certificates.contextByName(name), challenge: (name: string) => certificates.challenge(name) } : {}),
      declines,
      alpn: {
        [TUNNEL_ALPN]: serveTunnel,
        [USER_ALPN]: (socket: TLSSocket, conn: RoutedConnection) => void this.users.handle(socket, conn.clientAddress),
        'http/1.1': (socket: TLSSocket, conn: RoutedConnection) => this.serveHttp(socket, conn),
        '': (socket: TLSSocket, conn: RoutedConnection) => this.serveHttp(socket, conn),
      },
    })
    // A tunnel port of its own serves tunnels alone: the web API (joins, discovery), users
    // and ACME validations answer on the web port, so the tunnel port exposes nothing else.
    // Anything but warren-tunnel is refused from its ClientHello, before any key exchange.
    const tunnelsOnly = createTlsRouter({
      gate,
      log: this.log,
      secureContext: () => this.credentials.secureContext(),
      declines: (protocols) => (protocols.includes(TUNNEL_ALPN) ? declines(protocols) : 'this port serves only reverse tunnels'),
      alpn: { [TUNNEL_ALPN]: serveTunnel },
    })
    // Users' plain SSH streams (ProxyUseFdpass) on the web port, beside their TLS connections.
    const sshStreams = sshStreamGateway({ users: this.users, credentials: () => this.credentials.streamCredentials(), gate, log: this.log })
    const listen = async (address: string, defaultPort: number, tls: (conn: RoutedConnection) => void, streams?: (conn: RoutedConnection) => void) => {
      const { host, port } = parseHostPort(address, defaultPort)
      // A connection gets no longer to show its ClientHello (or a plain stream's first line) than to show what it speaks at all.
      const mux = new Multiplexer({ trustedLoadBalancers: this.config.proxy.trustedLoadBalancers, gate, sniffTimeoutMs: gate.config.helloTimeoutMs, log: this.log })
      mux.on('tls', tls)
      if (streams) mux.on('ssh-stream', streams)
      mux.on('rejected', (reason: string, remote: string) => this.log.debug(`connection from ${remote} closed: ${reason}`))
      const server = await mux.listen(host, port)
      this.servers.push(server)
      const bound = server.address() as { address: string; port: number }
      return `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`
    }
    this.addresses.web = await listen(this.config.proxy.webListenAddr, DEFAULTS.webPort, everything, sshStreams)
    if (this.multiplexed) {
      this.addresses.tunnel = this.addresses.web
      this.log.debug('Setup Proxy: Reverse tunnel proxy and web proxy listen on the same port, multiplexing is on')
    } else {
      this.addresses.tunnel = await listen(this.config.proxy.tunnelListenAddr, DEFAULTS.tunnelPort, tunnelsOnly)
    }
    await this.heartbeat(true)
    this.membership = new LiveSetMembership(
      () => this.heartbeat(false),
      async () => {
        await this.auth.call('DELETE /v1/proxies/self', {}, { timeoutMs: LEAVE_TIMEOUT_MS })
      },
    )
    await this.webCertificates?.start()
    this.log.info(`proxy listening: web ${this.addresses.web}, tunnel ${this.addresses.tunnel}`, { proxy_id: this.identity.hostId })
    this.timers.push(setInterval(() => void this.membership?.heartbeat(), DEFAULTS.heartbeatIntervalMs))
    this.timers.push(setInterval(() => void this.followLiveSet(), LIVE_SET_POLL_MS))
    this.timers.push(setInterval(() => void this.presence.reportAll(), DEFAULTS.heartbeatIntervalMs))
    // A direct node's own labels reach proxies only through the auth server's list (it heartbeats
    // there): connections to it are judged again at that pace, a tunnelled node's at its word.
    this.timers.push(setInterval(() => void this.judgeOpenConnectionsAgain(), DEFAULTS.heartbeatIntervalMs))
    this.tunnels.on('connect', (tunnel: Tunnel) => this.presence.opened(tunnel))
    this.tunnels.on('renew', (tunnel: Tunnel) => void this.renewFor(tunnel))
    // A node's own labels changed: so may what its users' roles allow.
    this.tunnels.on('labels', (tunnel: Tunnel) => {
      void this.users.dropRelabelled([tunnel.hostId])
      this.webConsole?.dropRelabelled([tunnel.hostId])
    })
    // `done` lets the tunnel's control stream be read on (tunnel-server.ts: relays in flight per tunnel).
    this.tunnels.on('audit', (tunnel: Tunnel, message: AuditMessage, done: () => void) => void relayAudit(this.auth, tunnel, message).then(done, done))
    this.tunnels.on('recording', (tunnel: Tunnel, message: RecordingMessage, done: () => void) => void relayRecording(this.auth, tunnel, message).then(done, done))
    this.ownCertificate.start()
    this.clockWatch = new ClockWatch({ stepped: (byMs) => this.clockStepped(byMs) })
    this.clockWatch.start()
  }

  /**
   * The wall clock was set under the proxy (a VM resumed after a pause, NTP after a boot
   * with a stale clock): its own renewal is timed again by it, which renews or recovers a
   * certificate that the step made due or expired, and so are the tunnels' expiry timers,
   * which close the tunnels whose node certificates expired in the step.
   */
  private clockStepped(byMs: number): void {
    this.log.info('the system clock was set', { clock_step_ms: Math.round(byMs) })
    this.ownCertificate?.clockStepped(byMs)
    this.tunnels?.clockStepped()
  }

  /**
   * The first call to the auth server, until it takes this proxy. One that missed a host CA
   * rotation keeps trying instead of exiting, as nothing else would bring it back: it bridges
   * to what the cluster trusts now (missed-rotation.ts) and recovers its certificate, whose
   * CA was dropped. Any other failure ends the start, as it always did.
   */
  private async reachAuthServer(call: () => Promise<void>): Promise<void> {
    for (;;) {
      try {
        return await call()
      } catch (error) {
        const why = missedRotationOf(error)
        if (why === undefined) throw error
        const took = await this.missedRotation.afterFailure(error)
        if (!certificateUsable(this.identity)) {
          if (await this.recoverAtStart()) continue
        } else if (!took && why === 'refused') {
          // Refused for another reason (a removal, a lock): as before.
          throw error
        }
        if (!took) await sleep(START_RETRY_MS)
      }
    }
  }

  /** Recovers this proxy's certificate before it serves; false when it should be tried again. */
  private async recoverAtStart(): Promise<boolean> {
    try {
      await this.ownCertificate!.renewOrRecoverNow()
      return true
    } catch (error) {
      // Past the recovery window (logged with the command that re-admits it): only an admin helps.
      if (error instanceof RetryLater) throw new WarrenError(error.message)
      this.log.warn(`recovering this proxy's certificate failed: ${(error as Error).message}`, { proxy_id: this.identity.hostId })
      return false
    }
  }

  private serveHttp(socket: TLSSocket, conn: RoutedConnection): void {
    this.clientAddresses.set(socket, conn.clientAddress)
    this.httpConnections!.admit(socket, conn.group)
  }

  /** Where agents dial the tunnel: its public address, or (multiplexed) null for "the web address you used". */
  private tunnelAddressForAgents(): string | null {
    const proxy = this.config.proxy
    if (proxy.tunnelPublicAddrs[0]) return proxy.tunnelPublicAddrs[0]
    if (this.multiplexed) return null
    const { port } = parseHostPort(this.addresses.tunnel, DEFAULTS.tunnelPort)
    return `:${port}`
  }

  /**
   * A node asked (over its control stream) for new certificates for the key its tunnel
   * proved. The tunnel server lets one such request through at a time per tunnel.
   */
  private async renewFor(tunnel: Tunnel): Promise<void> {
    try {
      if (!tunnel.control) return
      const renewed = await this.auth.call('POST /v1/hosts/renew', { body: { tls_cert: tunnel.cert.toString() } })
      // With the node's assigned labels, signed for it, when the answer carries them.
      sendToAgent(tunnel.control, certsMessage(renewed))
      // The answer's CAs may be older than what this proxy heard since: the node follows the later word.
      this.tunnels.sendCA(tunnel)
    } catch (error) {
      if (tunnel.control) sendToAgent(tunnel.control, { type: 'renew_failed', error: (error as Error).message.slice(0, 4096) })
    } finally {
      tunnel.renewing = false
    }
  }

  /**
   * Follows CA rotations: trusts what the auth server trusts, closes the tunnels and user
   * connections whose certificates are from a CA no longer trusted, and once a new CA
   * signs, renews this proxy's own certificate (own-certificate.ts).
   */
  private async followCAs(hostCAPems: string[], userCAPems: string[], trust: TrustStatement): Promise<void> {
    const changed = hostCAPems.join('') !== this.hostCAPems.join('')
    const usersChanged = userCAPems.join('') !== this.userCAPems.join('')
    this.hostCAPems = hostCAPems
    this.userCAPems = userCAPems
    if (usersChanged) this.users?.dropUntrusted()
    // The signed set's version is kept with it: a bridge asked for unverified
    // (missed-rotation.ts) must never bring back a set older than this one.
    const sameSet = trust.host_ca_certs.join('') === hostCAPems.join('')
    const versioned = sameSet && trust.version > this.identity.trustVersion
    // And the host CAs' SSH keys, which this proxy's own SSH certificates are checked by
    // (shared/renewed-certificates.ts): those of the set, or none for other host CAs.
    const sshKeys = sameSet && trust.host_ca_ssh_keys ? trust.host_ca_ssh_keys : changed ? undefined : this.identity.hostCASshKeys
    const sshKeysChanged = (sshKeys ?? []).join('\n') !== (this.identity.hostCASshKeys ?? []).join('\n')
    if (!changed && !versioned && !sshKeysChanged) return
    const { hostCASshKeys: _, ...identity } = this.identity
    this.identity = {
      ...identity,
      hostCAPems,
      ...(sshKeys ? { hostCASshKeys: sshKeys } : {}),
      ...(versioned ? { userCASshKeys: trust.user_ca_ssh_keys, trustVersion: trust.version } : {}),
    }
    this.keeper.save(this.identity)
    if (!changed) return
    this.tunnels?.dropUntrusted()
    this.replaceAuthClient()
    this.ownCertificate?.trustChanged()
  }

  /**
   * The open user connections and terminals to direct nodes (and tunnelled ones, with
   * `tunnelled`) judged again by each node's labels now: those they no longer allow are closed.
   * (A tunnelled node's own change comes through its tunnel and is judged at once: see the
   * 'labels' event.)
   */
  private async judgeOpenConnectionsAgain({ tunnelled = false } = {}): Promise<void> {
    const admitted = new Set([...(this.users?.admittedHosts() ?? []), ...((await this.webConsole?.admittedHosts()) ?? [])])
    const hosts = [...admitted].filter((hostId) => tunnelled || this.tunnels?.find(hostId)?.hostId !== hostId)
    if (hosts.length === 0) return
    await this.users?.dropRelabelled(hosts)
    this.webConsole?.dropRelabelled(hosts)
  }

  /** A set of CAs taken across a rotation this proxy missed (missed-rotation.ts); its certificate is recovered next. */
  private takeTrust(trust: TrustStatement): void {
    this.identity = applyTrust({ ...this.identity }, trust)
    this.hostCAPems = this.identity.hostCAPems
    this.keeper.save(this.identity)
    this.tunnels?.dropUntrusted()
    this.replaceAuthClient()
    this.ownCertificate?.trustChanged()
  }

  /** New certificates for this proxy's key: new connections (to the auth server too) use them. */
  private applyRenewal(renewed: RenewedCertificates, how: 'renewed' | 'recovered'): void {
    // The trusted CAs stay those of the last heartbeat (followCAs), which may be newer than
    // the answer's; a rotation the answer knew of first comes with the next heartbeat.
    // (The answer comes from the auth server itself: the connection requires its host-CA certificate with the auth role.)
    const hostCAPems = this.hostCAPems.length > 0 ? this.hostCAPems : renewed.host_ca_certs
    const userCASshKeys = renewed.user_ca_ssh_keys.length > 0 ? renewed.user_ca_ssh_keys : this.identity.userCASshKeys
    this.identity = applyCertificates({ ...this.identity, hostCAPems, userCASshKeys }, renewed)
    this.keeper.save(this.identity)
    this.replaceAuthClient()
    this.log.info(`${how} this proxy's certificate`, { proxy_id: this.identity.hostId, ...timeLeftFields(new X509Certificate(this.identity.tlsCertPem)) })
  }

  /** A client of the auth server with this proxy's identity: only a server with the auth role answers it. */
  private authClient(): ApiClient {
    return new ApiClient({
      server: this.identity.authServers[0],
      caPems: this.identity.hostCAPems,
      certPem: this.identity.tlsCertPem,
      keyPem: this.identity.tlsKeyPem,
      authServer: true,
    })
  }

  private replaceAuthClient(): void {
    const previous = this.auth
    this.auth = this.authClient()
    setTimeout(() => void previous.close(), RETIRED_CLIENT_MS).unref()
  }

  /** The removed and locked identities changed: what they hold here is closed. */
  private dropRefused(): void {
    this.tunnels?.dropRefused()
    this.nodes?.dropRefused()
    this.users?.dropLocked()
    this.webConsole?.dropLocked()
  }

  private async heartbeat(first: boolean): Promise<void> {
    try {
      const response = await this.auth.call('POST /v1/proxies/heartbeat', { body: { web_addr: this.config.proxy.publicAddrs[0] ?? this.addresses.web } })
      await this.followCAs(response.host_ca_certs, response.user_ca_certs, response.trust)
      this.tunnels?.announceCA({ host_ca_certs: response.host_ca_certs, user_ca_ssh_keys: response.user_ca_ssh_keys, trust: response.trust })
      this.tunnels?.announce(response.proxies, response.proxies_signed)
      if (response.presence_interval_ms >= 1000) this.presence.intervalMs = response.presence_interval_ms
    } catch (error) {
      if (first) throw error
      this.log.warn(`heartbeat to the auth server failed: ${(error as Error).message}`)
      // Refused, or the server unverifiable: a host CA rotation may have passed this proxy by.
      void this.missedRotation.afterFailure(error)
    }
  }

  /**
   * Between heartbeats: a proxy that restarted is back in the live set the moment its first
   * heartbeat lands, and its agents should hear so within about a second, not at this
   * proxy's next heartbeat. A read only; failures are the heartbeat's to report.
   */
  private async followLiveSet(): Promise<void> {
    if (this.liveSetInFlight) return
    this.liveSetInFlight = true
    try {
      const response = await this.auth.call('GET /v1/proxies', {}, { timeoutMs: LIVE_SET_POLL_MS * 2 })
      this.tunnels.announce(response.proxies, response.proxies_signed)
      // A removal or a lock shows as a new generation: everything it refuses closes within the poll.
      await this.revocations.follow(response.revocations)
      // So does a change of assigned labels: users are judged by them at once, and agents told.
      await this.assignedLabels.follow(response.assigned_labels)
    } catch (error) {
      this.log.debug(`reading the live set failed: ${(error as Error).message}`)
    } finally {
      this.liveSetInFlight = false
    }
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer)
    this.clockWatch?.stop()
    this.ownCertificate?.stop()
    this.keeper.stop()
    this.presence?.stop()
    // Leave the live set first: agents then wait for this proxy's return to be announced
    // instead of dialling the balancer for it while it is away. Briefly: an unreachable auth
    // server must not hold up the stop (the record then expires by itself).
    const started = Date.now()
    // And the users' connections through it, which end with it, free their slots at once
    // (best effort, beside the leave: those not released end unrenewed).
    await Promise.all([
      this.membership?.leave(LEAVE_TIMEOUT_MS).catch((error: Error) => this.log.warn(`could not leave the live set: ${error.message}`)),
      this.connectionLimits?.stop(LEAVE_TIMEOUT_MS),
    ])
    const left = Date.now()
    this.webCertificates?.stop()
    const tunnels = this.tunnels?.size ?? 0
    this.tunnels?.close()
    for (const server of this.servers) server.close()
    this.gate?.close()
    await this.auth?.close()
    this.log.info(`stopped: left the live set in ${left - started} ms, closed ${tunnels} tunnel(s) in ${Date.now() - left} ms`)
  }
}
