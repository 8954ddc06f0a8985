// The auth server: owns the backend, the CAs and the tokens, and serves the auth API over
// HTTPS. This file is its lifecycle (backend, CAs, listener, timers); the API is a route
// table (auth/api/), where every route states who may call it: anyone (joins, the CA), a
// host of the cluster, a node or a proxy, or warrenctl's admin certificate from the user CA.

import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { parseHostPort } from '../shared/address.ts'
import { Router } from '../shared/api-router.ts'
import { ClockWatch } from '../shared/clock-watch.ts'
import { resolveTokenValue, type WarrenConfig } from '../shared/config.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import type { ApiRoute } from '../shared/protocol/api.ts'
import type { AuditEventType } from '../shared/protocol/audit.ts'
import type { AssignedLabelKeysStatus, RecordingDirStatus } from '../shared/status.ts'
import { TlsGate } from '../shared/tls-gate/gate.ts'
import type { GateStats } from '../shared/tls-gate/stats.ts'
import { AcmeRecords } from './acme-records.ts'
import { admitter, checkSignedBody, editorNow, spendAdminNonce } from './api/access.ts'
import type { AuthContext } from './api/context.ts'
import { statusOf } from './api/errors.ts'
import { HEARTBEAT_LIMIT } from './api/hosts.ts'
import { AUTH_ROUTES } from './api/index.ts'
import { webSessionsOf } from './api/web-sessions.ts'
import { ClusterAssignedKeys } from './assigned-label-keys.ts'
import { AssignedLabels } from './assigned-labels.ts'
import { Audit, type AuditFields } from './audit.ts'
import { AuthServers } from './auth-servers.ts'
import { type Authority, type AuthorityType, loadAuthority, loadOrCreateAuthority } from './authorities.ts'
import type { Backend } from './backend/backend.ts'
import { openBackend, type StorageTransport, storageTransport } from './backend/index.ts'
import { type BackendOperation, timedBackend } from './backend/timed.ts'
import { CAExpiryWarnings } from './ca-expiry.ts'
import { Callers } from './callers.ts'
import { refuseForgottenCluster, rememberCluster } from './cluster-marker.ts'
import { ConnectionLeases } from './connection-leases.ts'
import { JoinChallenges } from './join-challenge.ts'
import { Locks } from './locks.ts'
import { LoginSealing } from './login-sealing.ts'
import { NodeDirectory } from './nodes.ts'
import { OfflineSweep } from './offline-nodes.ts'
import { OwnCredentials } from './own-credentials.ts'
import { FailureRateLimiter } from './rate-limit.ts'
import { RecordingDirCheck } from './recording-dir-check.ts'
import { RecordingStore } from './recordings.ts'
import { Recoveries } from './recovery.ts'
import { Renewals } from './renew.ts'
import { Revocations } from './revocations.ts'
import { advanceAutomatic, rotationOptions } from './rotation.ts'
import { parseStaticToken, TokenService } from './tokens.ts'
import { RoleDirectory } from './user-roles.ts'
import { UserDirectory } from './users.ts'

/** What the auth server tells its observer (auth/metrics.ts) as it works. */
export interface AuthObserver {
  backendOperation: (operation: BackendOperation, seconds: number) => void
  recorded: (type: AuditEventType, fields: AuditFields) => void
  answered: (route: ApiRoute, status: number) => void
}

/** How often recordings past the audit retention are looked for: retention is a matter of days. */
const RECORDINGS_PURGE_INTERVAL_MS = 3_600_000

export class AuthServer {
  readonly config: WarrenConfig
  readonly log: Logger
  private backend!: Backend
  private transport?: StorageTransport
  private server!: Server
  private gate?: TlsGate
  private tokens!: TokenService
  private nodes!: NodeDirectory
  private challenges!: JoinChallenges
  private sealing!: LoginSealing
  private renewals!: Renewals
  private recoveries!: Recoveries
  private own!: OwnCredentials
  private users!: UserDirectory
  private roles!: RoleDirectory
  private acmeRecords!: AcmeRecords
  private revocations!: Revocations
  private assignedLabels!: AssignedLabels
  private locks!: Locks
  private connectionLeases!: ConnectionLeases
  private audit!: Audit
  private offlineSweep?: OfflineSweep
  private hostCA!: Authority
  private readonly caExpiry: CAExpiryWarnings
  private userCA!: Authority
  private clusterName = ''
  private readonly limiter: FailureRateLimiter
  private readonly heartbeats = new FailureRateLimiter(HEARTBEAT_LIMIT)
  private refreshTimer?: NodeJS.Timeout
  /** Steps of the wall clock, which the renewal of its own certificates follows. */
  private clockWatch?: ClockWatch
  private recordings?: RecordingStore
  private recordingsPurgeTimer?: NodeJS.Timeout
  private authServers?: AuthServers
  private recordingDirCheck?: RecordingDirCheck
  private clusterAssignedKeys?: ClusterAssignedKeys
  private readonly callers: Callers
  /** Join requests that reached this server (accepted or not): lets tests prove a token never left a device. */
  private readonly counts = { joinAttempts: 0 }
  /** Set before start() to be told what the server does (auth/metrics.ts). */
  observer?: AuthObserver

  constructor(config: WarrenConfig, log?: Logger) {
    this.config = config
    this.log = log ?? createLogger('auth', { level: config.log.level })
    this.caExpiry = new CAExpiryWarnings(this.log)
    this.limiter = new FailureRateLimiter(config.auth.joinRateLimit)
    this.callers = new Callers({
      clusterName: () => this.clusterName,
      hostCAPems: () => this.hostCA.tlsCertPems,
      userCAPems: () => this.userCA.tlsCertPems,
      adminCAPems: () => this.own?.adminStandInPems() ?? [],
      refusedHost: (hostId) => this.revocations?.refusedHost(hostId),
      refusedUser: (name) => this.revocations?.refusedUser(name),
      log: this.log,
    })
  }

  /** The address clients should dial (a wildcard listen address becomes loopback). */
  get address(): string {
    const info = this.server.address() as AddressInfo
    const host = info.address === '0.0.0.0' || info.address === '::' ? '127.0.0.1' : info.address
    return `${host.includes(':') ? `[${host}]` : host}:${info.port}`
  }

  get hostCAPems(): string[] {
    return this.hostCA.tlsCertPems
  }

  /** When each CA's signing certificate expires (epoch ms), for metrics; undefined before the CAs are loaded at start. */
  get caExpiries(): Record<AuthorityType, number> | undefined {
    if (this.hostCA === undefined || this.userCA === undefined) return undefined
    return { host: this.hostCA.signingExpires, user: this.userCA.signingExpires }
  }

  get pins(): string[] {
    return this.hostCA.pins
  }

  get tokenService(): TokenService {
    return this.tokens
  }

  /** What auth/status.ts reports. */
  get cluster(): string {
    return this.clusterName
  }

  /** How the backend is reached; undefined before start(). */
  get storage(): StorageTransport | undefined {
    return this.transport
  }

  get authorities(): { host: Authority; user: Authority } {
    return { host: this.hostCA, user: this.userCA }
  }

  /** Resolves when the backend answers a read; undefined before start(). */
  async backendAnswers(): Promise<boolean> {
    if (!this.backend) return false
    await this.backend.get('/cluster/name')
    return true
  }

  get handshakeGate(): GateStats | undefined {
    return this.gate?.stats
  }

  /** With etcd: this server's keys kept for assignments and the live auth servers'; undefined with SQLite. */
  get assignedLabelKeys(): AssignedLabelKeysStatus | undefined {
    return this.clusterAssignedKeys?.status()
  }

  /** Whether the other auth servers of an etcd backend share recording_dir; undefined when not checked (SQLite, recording off). */
  get recordingDir(): RecordingDirStatus | undefined {
    return this.recordingDirCheck?.status()
  }

  /** Starts the server; one that fails to start leaves nothing open behind it (listener, timers, backend). */
  async start(): Promise<void> {
    try {
      await this.open()
    } catch (error) {
      await this.stop().catch(() => {})
      throw error
    }
  }

  private async open(): Promise<void> {
    const auth = this.config.auth
    // Before anything is created: a bad static token leaves no trace in the data dir.
    const statics = auth.tokens.map((entry, i) => {
      try {
        return parseStaticToken(entry, resolveTokenValue)
      } catch (error) {
        throw new Error(`auth_service.tokens[${i}]: ${(error as Error).message}`)
      }
    })
    const observer = this.observer
    const backend = await openBackend(auth.storage)
    const transport = storageTransport(backend)
    this.transport = transport
    if (transport.type === 'etcd' && transport.plaintextPeers.length > 0) {
      this.log.warn("etcd is reached without TLS (auth_service.storage.insecure_plaintext): what is stored there, the CAs' private keys among it, crosses the network readable", {
        plaintext_peers: transport.plaintextPeers,
      })
    }
    this.backend = observer ? timedBackend(backend, observer.backendOperation) : backend
    // An empty backend where the data dir shows a cluster is a storage setting gone wrong, not a new cluster.
    await refuseForgottenCluster(this.backend, this.config.dataDir, auth.storage)
    this.clusterName = await this.loadClusterName(auth.clusterName)
    this.hostCA = await loadOrCreateAuthority(this.backend, 'host', this.clusterName)
    this.userCA = await loadOrCreateAuthority(this.backend, 'user', this.clusterName)
    rememberCluster(this.config.dataDir, this.clusterName, this.hostCA.pins[0]!, this.log)
    this.caExpiry.check(this.hostCA)
    this.caExpiry.check(this.userCA)
    this.tokens = new TokenService(this.backend, statics)
    this.nodes = new NodeDirectory(this.backend, auth.heartbeatTtlMs)
    this.challenges = await JoinChallenges.open(this.backend)
    this.sealing = await LoginSealing.open(this.backend)
    this.renewals = new Renewals({
      hostCA: () => this.hostCA,
      nodes: this.nodes,
      clusterName: this.clusterName,
      hostCertTtlMs: auth.hostCertTtlMs,
      refused: (hostId) => this.revocations.refusedHost(hostId),
    })
    this.recoveries = new Recoveries({
      backend: this.backend,
      nodes: this.nodes,
      renewals: this.renewals,
      challenges: this.challenges,
      hostCA: () => this.hostCA,
      clusterName: this.clusterName,
      recoveryWindowMs: auth.recoveryWindowMs,
      refusedHost: async (hostId) => this.revocations.refusedHost(hostId),
    })
    this.users = new UserDirectory(this.backend)
    this.roles = new RoleDirectory(this.backend, this.users)
    // Removals and locks are in force before the first request is served.
    this.revocations = new Revocations({ backend: this.backend, recoveryWindowMs: auth.recoveryWindowMs, onChange: () => this.callers.revocationsChanged(), log: this.log })
    await this.revocations.start()
    this.assignedLabels = new AssignedLabels({
      backend: this.backend,
      clusterName: this.clusterName,
      hostCA: () => this.hostCA,
      log: this.log,
      assignedOnlyKeys: auth.assignedLabelKeys,
    })
    await this.assignedLabels.start()
    this.locks = new Locks({ backend: this.backend, nodes: this.nodes, users: this.users })
    this.connectionLeases = new ConnectionLeases({ backend: this.backend })
    this.offlineSweep = new OfflineSweep({ backend: this.backend, nodeTtlMs: auth.nodeTtlMs, named: (hostId) => this.revocations.names(hostId), log: this.log })
    this.offlineSweep.start()
    this.acmeRecords = new AcmeRecords(this.backend)
    this.audit = new Audit({
      backend: this.backend,
      clusterName: this.clusterName,
      retentionMs: auth.audit.retentionMs,
      file: auth.audit.file,
      dataDir: this.config.dataDir,
      log: this.log,
      onRecord: observer?.recorded,
    })
    await this.audit.start()
    this.recordings = new RecordingStore(this.config.auth.recordingDir ?? join(this.config.dataDir, 'recordings'))
    // A recording outlives no audit event of its session: the same retention, looked at as often.
    const purgeRecordings = () => {
      try {
        const removed = this.recordings!.purge(auth.audit.retentionMs)
        if (removed > 0) this.log.info('recordings past retention removed', { removed })
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn(`removing recordings past retention failed: ${(error as Error).message}`)
      }
    }
    purgeRecordings()
    this.recordingsPurgeTimer = setInterval(purgeRecordings, RECORDINGS_PURGE_INTERVAL_MS)
    this.recordingsPurgeTimer.unref()

    const { host, port } = parseHostPort(auth.listenAddr, 3025)
    // Its certificate names what its configuration names, nothing more.
    const serverNames = [host, ...auth.publicAddrs.map((a) => parseHostPort(a, port).host)]
    this.own = new OwnCredentials({
      hostCA: () => this.hostCA,
      userCA: () => this.userCA,
      clusterName: this.clusterName,
      serverNames,
      hostCertTtlMs: auth.hostCertTtlMs,
      adminCertTtlMs: auth.adminCertTtlMs,
      dataDir: this.config.dataDir,
      address: () => this.address,
      apply: (options) => this.server.setSecureContext(options),
      log: this.log,
    })
    // Connections reach TLS only with a whole ClientHello and a handshake slot (shared/tls-gate).
    this.gate = new TlsGate({ log: this.log })
    this.server = createServer({
      ...this.own.tlsOptions(),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      handshakeTimeout: this.gate.config.handshakeTimeoutMs,
    })
    this.gate.guard(this.server)
    const context = this.apiContext()
    const router = new Router(AUTH_ROUTES, {
      context,
      admit: admitter(
        this.callers,
        () => this.clusterName,
        this.log,
        (key) => spendAdminNonce(this.backend, key),
        (user, generation) => editorNow(context, user, generation),
        (token) => webSessionsOf(context).use(token),
      ),
      checkBody: checkSignedBody,
      statusOf,
      log: this.log,
      answered: observer?.answered,
    })
    if (transport.type === 'etcd') await this.watchOtherAuthServers()
    this.server.on('request', (req, res) => void router.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => resolve())
    })
    this.own.writeAdminIdentity()
    this.own.start()
    // The wall clock set under the server (a VM resumed after a pause, NTP after a boot with
    // a stale clock): its TLS certificate and warrenctl's identity are renewed by it as it reads now.
    this.clockWatch = new ClockWatch({
      stepped: (byMs) => {
        this.log.info('the system clock was set', { clock_step_ms: Math.round(byMs) })
        this.own.clockStepped(byMs)
      },
    })
    this.clockWatch.start()
    this.log.info(`auth server listening on ${this.address}`, { cluster: this.clusterName, pin: this.hostCA.pins[0] })
    // CAs change with rotations, here or on another auth server sharing the backend.
    this.refreshTimer = setInterval(() => void this.refreshAuthorities(true).catch((error) => this.log.warn(`CA refresh failed: ${(error as Error).message}`)), 2000)
    this.refreshTimer.unref()
  }

  /**
   * Auth servers sharing a backend look at each other (auth/auth-servers.ts): they judge by the
   * keys any of them keeps for assignments, and must share recording_dir. The first look is
   * made before the first request is served.
   */
  private async watchOtherAuthServers(): Promise<void> {
    const auth = this.config.auth
    const recording = auth.recording !== 'off'
    this.authServers = new AuthServers({
      backend: this.backend,
      address: () => (this.server?.listening ? this.address : ''),
      recordingDir: recording ? this.recordings!.dir : undefined,
      assignedLabelKeys: auth.assignedLabelKeys,
    })
    this.clusterAssignedKeys = new ClusterAssignedKeys({
      own: auth.assignedLabelKeys,
      onChange: (keys) => {
        this.assignedLabels.assignedOnly = keys
        this.log.info('the keys kept for assignments changed', { assigned_label_keys_effective: [...keys].sort() })
      },
      log: this.log,
    })
    this.authServers.watch(this.clusterAssignedKeys)
    if (recording) {
      this.recordingDirCheck = new RecordingDirCheck({ servers: this.authServers, store: this.recordings!, log: this.log })
      this.authServers.watch(this.recordingDirCheck)
    }
    await this.authServers.start()
  }

  /**
   * Reloads the CAs from the backend; when they changed, new connections get a certificate
   * from the signing CA and trust every active one, and warrenctl's identity is rewritten.
   * Live connections whose certificate's CA is no longer trusted are closed; the others
   * carry on. With `advance`, automatic rotations step on.
   */
  async refreshAuthorities(advance = false): Promise<void> {
    if (advance) {
      for (const type of ['host', 'user'] as const) {
        const from = (type === 'host' ? this.hostCA : this.userCA).rotation?.phase ?? 'standby'
        if (!(await advanceAutomatic(this.backend, type, rotationOptions(this.config.auth)))) continue
        this.log.info(`${type} CA rotation moved on automatically`)
        const to = (await loadAuthority(this.backend, type)).authority.rotation?.phase ?? 'standby'
        await this.audit.record('rotation.phase', { ca: type, from, to, actor: 'automatic' })
      }
    }
    const host = (await loadAuthority(this.backend, 'host')).authority
    const user = (await loadAuthority(this.backend, 'user')).authority
    this.caExpiry.check(host)
    this.caExpiry.check(user)
    // changedAt too: a rotation begun and rolled back between two looks leaves the same certificates at a newer version.
    const fingerprint = (ca: Authority) => ca.tlsCertPems.join('') + (ca.rotation?.phase ?? '') + ca.changedAt
    if (fingerprint(host) === fingerprint(this.hostCA) && fingerprint(user) === fingerprint(this.userCA)) return
    this.hostCA = host
    this.userCA = user
    this.own.reissue()
    this.callers.trustChanged()
    this.log.info('CAs changed', { host_phase: host.rotation?.phase ?? 'standby', user_phase: user.rotation?.phase ?? 'standby', pins: host.pins.join(',') })
  }

  async stop(): Promise<void> {
    clearInterval(this.refreshTimer)
    this.clockWatch?.stop()
    clearInterval(this.recordingsPurgeTimer)
    this.revocations?.stop()
    this.assignedLabels?.stop()
    this.offlineSweep?.stop()
    this.own?.stop()
    await this.authServers?.stop()
    await this.audit?.stop()
    if (this.server) {
      this.gate?.close()
      this.server.closeAllConnections()
      await new Promise<void>((resolve) => this.server.close(() => resolve()))
    }
    if (this.backend) await this.backend.close()
  }

  /** What the API's handlers work with (the CAs read at each call: rotations replace them). */
  private apiContext(): AuthContext {
    return {
      clusterName: this.clusterName,
      hostCA: () => this.hostCA,
      userCA: () => this.userCA,
      backend: this.backend,
      tokens: this.tokens,
      nodes: this.nodes,
      challenges: this.challenges,
      sealing: this.sealing,
      renewals: this.renewals,
      recoveries: this.recoveries,
      users: this.users,
      roles: this.roles,
      acmeRecords: this.acmeRecords,
      revocations: this.revocations,
      assignedLabels: this.assignedLabels,
      locks: this.locks,
      connectionLeases: this.connectionLeases,
      audit: this.audit,
      recordings: this.recordings!,
      limiter: this.limiter,
      heartbeats: this.heartbeats,
      settings: this.config.auth,
      log: this.log,
      refreshAuthorities: () => this.refreshAuthorities(),
      counts: this.counts,
    }
  }

  private async loadClusterName(wanted: string): Promise<string> {
    await this.backend.create('/cluster/name', JSON.stringify(wanted))
    const item = await this.backend.get('/cluster/name')
    const stored = JSON.parse(item!.value) as string
    // Fixed at the first start: a config that names another is told, not silently ignored
    // (unless it is the default, the nodename, which differs on every other auth server).
    if (stored !== wanted && wanted !== this.config.nodename) {
      this.log.warn(`auth_service.cluster_name is ${wanted}, but the backend holds cluster ${stored}, which a cluster keeps for good`, {
        ignored_setting: 'auth_service.cluster_name',
        configured: wanted,
        in_use: stored,
      })
    }
    return stored
  }
}
