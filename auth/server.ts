// The auth server: owns the backend, the CAs and the tokens, and serves the auth API over
// HTTPS. The join and CA endpoints are public; heartbeats need a host certificate; the
// admin API needs warrenctl's admin certificate from the user CA.

import { createServer, type Server } from 'node:https'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { AcmeRecords, MAX_RECORD_BYTES } from './acme-records.ts'
import { directNodes, serviceAddress } from './direct-nodes.ts'
import type { Backend } from './backend/backend.ts'
import { openBackend } from './backend/index.ts'
import { loadAuthority, loadOrCreateAuthority, type Authority, type RotationPhase } from './authorities.ts'
import { advanceAutomatic, rotate, RotationError, type RotateRequest } from './rotation.ts'
import { Renewals } from './renew.ts'
import { OwnCredentials } from './own-credentials.ts'
import { Recoveries } from './recovery.ts'
import { join, nodenameProblem, parseJoinRequest } from './join.ts'
import { JoinChallenges } from './join-challenge.ts'
import { checkTlsKey, KeyPolicyError } from './key-policy.ts'
import { NodeDirectory } from './nodes.ts'
import { addFleetRoutes } from './fleet-routes.ts'
import { Locks } from './locks.ts'
import { OfflineSweep } from './offline-nodes.ts'
import { Revocations } from './revocations.ts'
import { FailureRateLimiter } from './rate-limit.ts'
import { parseRoles } from './roles.ts'
import { parseStaticToken, TokenRefusal, TokenService } from './tokens.ts'
import { issueUserCertificates, UserDirectory, UserError } from './users.ts'
import { createPublicKey } from 'node:crypto'
import { parseSshPublicKey } from '../shared/ssh-cert.ts'
import { HttpError, labelsField, readJson, Router, stringField, stringListField } from '../shared/json-http.ts'
import { validLabels } from '../shared/labels.ts'
import { Callers, type Peer } from './callers.ts'
import { resolveTokenValue, type WarrenConfig } from '../shared/config.ts'
import { parseHostPort } from '../shared/address.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import { TlsGate } from '../shared/tls-gate/gate.ts'
import type { GateStats } from '../shared/tls-gate/stats.ts'
import { VERSION } from '../shared/version.ts'

export class AuthServer {
  readonly config: WarrenConfig
  readonly log: Logger
  private backend!: Backend
  private server!: Server
  private gate?: TlsGate
  private tokens!: TokenService
  private nodes!: NodeDirectory
  private challenges!: JoinChallenges
  private renewals!: Renewals
  private recoveries!: Recoveries
  private own!: OwnCredentials
  private users!: UserDirectory
  private acmeRecords!: AcmeRecords
  private revocations!: Revocations
  private locks!: Locks
  private offlineSweep?: OfflineSweep
  private hostCA!: Authority
  private userCA!: Authority
  private clusterName = ''
  private readonly limiter: FailureRateLimiter
  private refreshTimer?: NodeJS.Timeout
  private readonly callers: Callers
  /** Join requests that reached this server (accepted or not): lets tests prove a token never left a device. */
  private joinAttempts = 0

  constructor(config: WarrenConfig, log?: Logger) {
    this.config = config
    this.log = log ?? createLogger('auth', { level: config.log.level })
    this.limiter = new FailureRateLimiter(config.auth.joinRateLimit)
    this.callers = new Callers({ clusterName: () => this.clusterName, hostCAPems: () => this.hostCA.tlsCertPems, userCAPems: () => this.userCA.tlsCertPems, refusedHost: (hostId) => this.revocations?.refusedHost(hostId), log: this.log })
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

  get authorities(): { host: Authority; user: Authority } {
    return { host: this.hostCA, user: this.userCA }
  }

  get handshakeGate(): GateStats | undefined {
    return this.gate?.stats
  }

  async start(): Promise<void> {
    const auth = this.config.auth
    // Before anything is created: a bad static token leaves no trace in the data dir.
    const statics = auth.tokens.map((entry, i) => {
      try {
        return parseStaticToken(entry, resolveTokenValue)
      } catch (error) {
        throw new Error(`auth_service.tokens[${i}]: ${(error as Error).message}`)
      }
    })
    this.backend = await openBackend(auth.storage)
    this.clusterName = await this.loadClusterName(auth.clusterName)
    this.hostCA = await loadOrCreateAuthority(this.backend, 'host', this.clusterName)
    this.userCA = await loadOrCreateAuthority(this.backend, 'user', this.clusterName)
    this.tokens = new TokenService(this.backend, statics)
    this.nodes = new NodeDirectory(this.backend, auth.heartbeatTtlMs)
    this.challenges = await JoinChallenges.open(this.backend)
    this.renewals = new Renewals({ hostCA: () => this.hostCA, nodes: this.nodes, clusterName: this.clusterName, hostCertTtlMs: auth.hostCertTtlMs, refused: (hostId) => this.revocations.refusedHost(hostId) })
    this.recoveries = new Recoveries({ backend: this.backend, nodes: this.nodes, renewals: this.renewals, challenges: this.challenges, hostCA: () => this.hostCA, userCA: () => this.userCA, clusterName: this.clusterName, recoveryWindowMs: auth.recoveryWindowMs, limiter: this.limiter, refusedHost: async (hostId) => this.revocations.refusedHost(hostId), log: this.log })
    this.users = new UserDirectory(this.backend)
    // Removals and locks are in force before the first request is served.
    this.revocations = new Revocations({ backend: this.backend, recoveryWindowMs: auth.recoveryWindowMs, onChange: () => this.callers.revocationsChanged(), log: this.log })
    await this.revocations.start()
    this.locks = new Locks({ backend: this.backend, nodes: this.nodes, users: this.users })
    this.offlineSweep = new OfflineSweep({ backend: this.backend, nodeTtlMs: auth.nodeTtlMs, named: (hostId) => this.revocations.names(hostId), log: this.log })
    this.offlineSweep.start()
    this.acmeRecords = new AcmeRecords(this.backend)

    const { host, port } = parseHostPort(auth.listenAddr, 3025)
    // Its certificate names what its configuration names, nothing more.
    const serverNames = [host, ...auth.publicAddrs.map((a) => parseHostPort(a, port).host)]
    this.own = new OwnCredentials({ hostCA: () => this.hostCA, userCA: () => this.userCA, clusterName: this.clusterName, serverNames, hostCertTtlMs: auth.hostCertTtlMs, adminCertTtlMs: auth.adminCertTtlMs, dataDir: this.config.dataDir, address: () => this.address, apply: (options) => this.server.setSecureContext(options), log: this.log })
    // Connections reach TLS only with a whole ClientHello and a handshake slot (shared/tls-gate).
    this.gate = new TlsGate({ log: this.log })
    this.server = createServer({ ...this.own.tlsOptions(), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2', handshakeTimeout: this.gate.config.handshakeTimeoutMs })
    this.gate.guard(this.server)
    const router = this.routes()
    this.server.on('request', (req, res) => {
      router.handle(req, res).catch((error) => this.log.error('request failed', { path: req.url, error: String(error) }))
    })
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => resolve())
    })
    this.own.writeAdminIdentity()
    this.own.start()
    this.log.info(`auth server listening on ${this.address}`, { cluster: this.clusterName, pin: this.hostCA.pins[0] })
    // CAs change with rotations, here or on another auth server sharing the backend.
    this.refreshTimer = setInterval(() => void this.refreshAuthorities(true).catch((error) => this.log.warn(`CA refresh failed: ${(error as Error).message}`)), 2000)
    this.refreshTimer.unref()
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
        if (await advanceAutomatic(this.backend, type)) this.log.info(`${type} CA rotation moved on automatically`)
      }
    }
    const host = (await loadAuthority(this.backend, 'host')).authority
    const user = (await loadAuthority(this.backend, 'user')).authority
    const fingerprint = (ca: Authority) => ca.tlsCertPems.join('') + (ca.rotation?.phase ?? '')
    if (fingerprint(host) === fingerprint(this.hostCA) && fingerprint(user) === fingerprint(this.userCA)) return
    this.hostCA = host
    this.userCA = user
    this.own.reissue()
    this.callers.trustChanged()
    this.log.info('CAs changed', { host_phase: host.rotation?.phase ?? 'standby', user_phase: user.rotation?.phase ?? 'standby', pins: host.pins.join(',') })
  }

  async stop(): Promise<void> {
    clearInterval(this.refreshTimer)
    this.revocations?.stop()
    this.offlineSweep?.stop()
    this.own?.stop()
    if (this.server) {
      this.gate?.close()
      this.server.closeAllConnections()
      await new Promise<void>((resolve) => this.server.close(() => resolve()))
    }
    if (this.backend) await this.backend.close()
  }

  private async loadClusterName(wanted: string): Promise<string> {
    await this.backend.create('/cluster/name', JSON.stringify(wanted))
    const item = await this.backend.get('/cluster/name')
    return JSON.parse(item!.value) as string
  }

  /** Who is calling, from the verified TLS client certificate; null for anonymous callers. */
  private peer(req: IncomingMessage): Peer | null {
    return this.callers.judge(req.socket as TLSSocket).peer
  }

  private requirePeer(req: IncomingMessage, kind: Peer['kind']): Peer {
    const socket = req.socket as TLSSocket
    const judged = this.callers.judge(socket)
    if (judged.peer?.kind === kind) return judged.peer
    const why = socket.authorizationError ?? judged.reason
    const reason = why ? ` (${why})` : ''
    throw new HttpError(kind === 'admin' ? 403 : 401, `this endpoint needs a valid ${kind} certificate of cluster "${this.clusterName}"${reason}`)
  }

  /** The caller's address; behind a proxy (which proves itself by certificate) the one it reports. */
  private remoteAddress(req: IncomingMessage): string {
    const forwarded = req.headers['x-warren-client-addr']
    if (typeof forwarded === 'string' && forwarded.length <= 64 && this.peer(req)?.subject.roles.includes('proxy')) return forwarded
    return (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '')
  }

  private requireProxy(req: IncomingMessage): Peer {
    const peer = this.requirePeer(req, 'host')
    if (!peer.subject.roles.includes('proxy')) throw new HttpError(403, 'this endpoint is for proxies')
    return peer
  }

  private routes(): Router {
    const router = new Router()
    router.add('GET', '/v1/health', async () => ({ ok: true }))
    router.add('GET', '/v1/ca', async () => ({ cluster_name: this.clusterName, host_ca_certs: this.hostCA.tlsCertPems, user_ca_certs: this.userCA.tlsCertPems }))
    // The nonce a joining device signs with its keys (join-challenge.ts).
    router.add('POST', '/v1/join/challenge', async () => this.challenges.issue())
    router.add('POST', '/v1/join', (req) => this.handleJoin(req))
    router.add('POST', '/v1/recover', (req) => this.recoveries.handle(req, this.remoteAddress(req)))
    router.add('POST', '/v1/heartbeat', (req) => this.handleHeartbeat(req))
    router.add('GET', '/v1/status', async (req) => {
      this.requirePeer(req, 'admin')
      const describe = (ca: Authority) => ({ pins: ca.pins, last_rotated: ca.lastRotated ?? null, rotation: ca.rotation ? { phase: ca.rotation.phase, mode: ca.rotation.mode, phase_started: ca.rotation.phaseStarted } : null })
      const proxyAddrs = (await this.nodes.proxies()).map((p) => p.webAddr).filter(Boolean).sort()
      return { cluster_name: this.clusterName, version: VERSION, host_ca: describe(this.hostCA), user_ca: describe(this.userCA), join_attempts: this.joinAttempts, renewals_issued: this.renewals.issuedCount, public_addrs: this.config.auth.publicAddrs, proxy_addrs: proxyAddrs }
    })
    router.add('GET', '/v1/tokens', async (req) => {
      this.requirePeer(req, 'admin')
      const list = await this.tokens.list()
      return { tokens: list.map((t) => ({ id: t.id, roles: t.roles, expires: t.expires ?? null, single_use: t.singleUse, static: t.static, value: t.value ?? null, nodename: t.nodename ?? null })) }
    })
    router.add('POST', '/v1/tokens', async (req) => {
      this.requirePeer(req, 'admin')
      const body = await readJson(req)
      let roles
      try {
        roles = parseRoles(stringField(body, 'roles') as string)
      } catch (error) {
        throw new HttpError(400, (error as Error).message)
      }
      const ttlMs = body.ttl_ms
      if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) throw new HttpError(400, 'field "ttl_ms" must be a positive number')
      const nodename = stringField(body, 'nodename', { optional: true, max: 253 })
      const problem = nodename === undefined ? undefined : nodenameProblem(nodename)
      if (problem) throw new HttpError(400, problem)
      if (nodename !== undefined && !roles.includes('node')) throw new HttpError(400, 'field "nodename" is for tokens that grant the node role')
      try {
        const { value, record } = await this.tokens.add({ roles, ttlMs, singleUse: body.single_use === true, value: stringField(body, 'token', { optional: true, max: 512 }), nodename })
        this.log.info('token created', { id: record.id, roles: roles.join(','), single_use: record.singleUse, ...(record.nodename ? { nodename: record.nodename } : {}) })
        return { token: value, id: record.id, roles, expires: record.expires, single_use: record.singleUse, nodename: record.nodename ?? null }
      } catch (error) {
        throw new HttpError(400, (error as Error).message)
      }
    })
    router.add('DELETE', '/v1/tokens/:token', async (req, params) => {
      this.requirePeer(req, 'admin')
      const token = params.token
      try {
        const record = await this.tokens.remove(token)
        this.log.info('token deleted', { id: record.id })
        return { id: record.id }
      } catch (error) {
        throw new HttpError(404, (error as Error).message)
      }
    })
    router.add('POST', '/v1/proxies/heartbeat', async (req) => {
      const peer = this.requireProxy(req)
      const body = await readJson(req)
      const webAddr = stringField(body, 'web_addr', { optional: true, max: 256 }) ?? ''
      await this.nodes.proxyHeartbeat({ proxyId: peer.subject.commonName, nodename: peer.subject.nodename ?? '', webAddr, lastSeen: Date.now() })
      const proxies = await this.nodes.proxies()
      return { proxies: proxies.map((p) => p.proxyId), host_ca_certs: this.hostCA.tlsCertPems, user_ca_certs: this.userCA.tlsCertPems, user_ca_ssh_keys: this.userCA.sshPublicKeys, host_ca_phase: this.hostCA.rotation?.phase ?? 'standby', presence_interval_ms: Math.floor(this.config.auth.heartbeatTtlMs / 3) }
    })
    // The live set alone, read far more often than heartbeats are written: a proxy that
    // comes back is announced to the others' agents within about a second.
    router.add('GET', '/v1/proxies', async (req) => {
      this.requireProxy(req)
      return { proxies: (await this.nodes.proxies()).map((p) => p.proxyId), revocations: this.revocations.generation }
    })
    // A proxy stopping cleanly: the others stop announcing it, and announce it again (so
    // that agents come back to it soon) once it heartbeats after its restart.
    router.add('DELETE', '/v1/proxies/self', async (req) => {
      const peer = this.requireProxy(req)
      await this.nodes.removeProxy(peer.subject.commonName)
      return {}
    })
    router.add('POST', '/v1/presence', (req) => this.handleTunnelPresence(req))
    // Where the nodes without a tunnel serve proxies, which dial them there.
    router.add('GET', '/v1/proxies/direct-nodes', async (req) => {
      this.requireProxy(req)
      return { nodes: directNodes((await this.nodes.present('node')).filter((p) => !this.revocations.refusedHost(p.hostId))) }
    })
    // The proxies' shared ACME account and certificates (proxy/acme's CertStore).
    router.add('POST', '/v1/proxies/acme/get', async (req) => {
      this.requireProxy(req)
      const value = await this.acmeRecords.get(stringField(await readJson(req), 'key', { max: 300 }) as string)
      return value === undefined ? {} : { value }
    })
    router.add('POST', '/v1/proxies/acme/put', async (req) => {
      this.requireProxy(req)
      const body = await readJson(req)
      await this.acmeRecords.put(stringField(body, 'key', { max: 300 }) as string, stringField(body, 'value', { max: MAX_RECORD_BYTES }) as string)
      return {}
    })
    router.add('POST', '/v1/rotate', async (req) => {
      this.requirePeer(req, 'admin')
      const body = await readJson(req)
      const type = body.type
      if (type !== 'host' && type !== 'user') throw new HttpError(400, 'field "type" must be host or user')
      const gracePeriodMs = typeof body.grace_period_ms === 'number' && body.grace_period_ms > 0 ? body.grace_period_ms : 30 * 3600_000
      const request: RotateRequest = body.manual === true
        ? { type, mode: 'manual', phase: stringField(body, 'phase') as RotationPhase | 'rollback', gracePeriodMs }
        : { type, mode: 'auto', gracePeriodMs }
      if (request.mode === 'manual' && !['init', 'update_clients', 'update_servers', 'standby', 'rollback'].includes(request.phase)) {
        throw new HttpError(400, `unknown phase "${request.phase}": use init, update_clients, update_servers, standby or rollback`)
      }
      try {
        const next = await rotate(this.backend, request)
        await this.refreshAuthorities()
        this.log.info(`${type} CA rotation: ${request.mode === 'manual' ? request.phase : 'automatic, init'}`)
        return { type, phase: next.rotation?.phase ?? 'standby' }
      } catch (error) {
        if (error instanceof RotationError) throw new HttpError(409, error.message)
        throw error
      }
    })
    // A host renews its own certificates with its current (still valid) identity: the TLS
    // handshake proved it holds the key.
    router.add('POST', '/v1/renew', async (req) => {
      this.requirePeer(req, 'host')
      const cert = (req.socket as TLSSocket).getPeerX509Certificate()!
      return this.renew(cert.toString(), false)
    })
    // A proxy renews for a node whose tunnel it holds (the tunnel's handshake proved the key).
    router.add('POST', '/v1/hosts/renew', async (req) => {
      this.requireProxy(req)
      return this.renew(stringField(await readJson(req), 'tls_cert', { max: 16_384 }) as string, true)
    })
    router.add('POST', '/v1/users', async (req) => {
      this.requirePeer(req, 'admin')
      const body = await readJson(req)
      try {
        const user = await this.users.add(stringField(body, 'name', { max: 64 }) as string, stringListField(body, 'logins', 32))
        this.log.info('user added', { user: user.name, logins: user.logins.join(',') })
        return { name: user.name, logins: user.logins }
      } catch (error) {
        if (error instanceof UserError) throw new HttpError(400, error.message)
        throw error
      }
    })
    router.add('GET', '/v1/users', async (req) => {
      this.requirePeer(req, 'admin')
      return { users: (await this.users.list()).map((u) => ({ name: u.name, logins: u.logins })) }
    })
    router.add('POST', '/v1/users/:name/certs', async (req, params) => {
      this.requirePeer(req, 'admin')
      const user = await this.users.get(params.name)
      if (!user) throw new HttpError(404, `no user "${params.name}": add it with "warrenctl users add ${params.name} --logins=..."`)
      const locked = this.revocations.list.refusedUser(user.name)
      if (locked) throw new HttpError(403, locked)
      const body = await readJson(req)
      const ttlMs = body.ttl_ms
      if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) throw new HttpError(400, 'field "ttl_ms" must be a positive number')
      let keys
      try {
        keys = { ssh: parseSshPublicKey(stringField(body, 'ssh_public_key') as string), tls: createPublicKey(stringField(body, 'tls_public_key') as string) }
      } catch {
        throw new HttpError(400, 'fields "ssh_public_key" (ssh-ed25519) and "tls_public_key" (PEM) must be public keys')
      }
      try {
        checkTlsKey(keys.tls)
      } catch (error) {
        if (error instanceof KeyPolicyError) throw new HttpError(400, `field "tls_public_key": ${error.message}`)
        throw error
      }
      const certs = issueUserCertificates(this.userCA, this.clusterName, user, keys, ttlMs)
      const nodes = (await this.nodes.registered()).filter((n) => n.sshPublicKey && n.roles.includes('node'))
      this.log.info('user certificates issued', { user: user.name, valid_before: new Date(certs.validBefore).toISOString() })
      return {
        ssh_cert: certs.sshCert,
        tls_cert: certs.tlsCertPem,
        valid_before: certs.validBefore,
        logins: user.logins,
        cluster_name: this.clusterName,
        host_ca_certs: this.hostCA.tlsCertPems,
        proxies: (await this.nodes.proxies()).map((p) => p.webAddr).filter(Boolean),
        known_hosts: nodes.map((n) => `${n.nodename},${n.hostId},${n.hostId}.${this.clusterName} ${n.sshPublicKey}`),
      }
    })
    addFleetRoutes(router, { requireAdmin: (req) => this.requirePeer(req, 'admin'), requireProxy: (req) => this.requireProxy(req), nodes: this.nodes, locks: this.locks, revocations: this.revocations, heartbeatTtlMs: this.config.auth.heartbeatTtlMs, log: this.log })
    return router
  }

  private async handleJoin(req: IncomingMessage): Promise<unknown> {
    this.joinAttempts++
    const address = this.remoteAddress(req)
    // One try is taken before the body (and its token) is read, and given back below only
    // when the join succeeds: requests in flight from one address share its bucket.
    const wait = this.limiter.reserve(address)
    if (wait > 0) {
      this.log.warn('join refused: too many failed attempts', { from: address })
      throw new HttpError(429, `too many failed join attempts from ${address}; try again in ${Math.ceil(wait / 1000)}s`, { 'retry-after': String(Math.ceil(wait / 1000)) })
    }
    let nodename = '?'
    let roles = '?'
    try {
      const request = parseJoinRequest(await readJson(req))
      nodename = request.nodename
      roles = request.roles.join(',')
      const { replaced, ...response } = await join({ backend: this.backend, tokens: this.tokens, nodes: this.nodes, challenges: this.challenges, hostCA: this.hostCA, userCA: this.userCA, clusterName: this.clusterName, hostCertTtlMs: this.config.auth.hostCertTtlMs }, request)
      this.limiter.refund(address)
      this.log.info('node joined', { nodename, host_id: response.host_id, roles, from: address, ...(replaced ? { replaced } : {}) })
      return response
    } catch (error) {
      if (!(error instanceof TokenRefusal) && !(error instanceof HttpError)) throw error
      const message = `join refused for node "${nodename}" (role ${roles}): ${error.message}`
      this.log.warn(message, { from: address })
      throw new HttpError(error instanceof HttpError ? error.status : 403, message)
    }
  }

  private async renew(certPem: string, nodeOnly: boolean): Promise<unknown> {
    const renewed = await this.renewals.renew(certPem, { nodeOnly })
    if (renewed.issued) this.log.info('host certificates renewed', { host_id: renewed.hostId })
    return { tls_cert: renewed.tlsCertPem, ssh_cert: renewed.sshCert, host_ca_certs: this.hostCA.tlsCertPems, user_ca_ssh_keys: this.userCA.sshPublicKeys }
  }

  /** A proxy reports the nodes whose tunnels it holds and that heartbeated over them. */
  private async handleTunnelPresence(req: IncomingMessage): Promise<unknown> {
    const proxy = this.requireProxy(req)
    const body = await readJson(req, 4 * 1024 * 1024)
    const reports = body.nodes
    if (!Array.isArray(reports) || reports.length > 20_000) throw new HttpError(400, 'field "nodes" must be a list')
    const now = Date.now()
    // All writes start together, so the backend commits them as one group.
    const results = await Promise.all((reports as Record<string, unknown>[]).map(async (report) => {
      if (typeof report !== 'object' || report === null) return false
      const hostId = stringField(report, 'host_id', { max: 64 }) as string
      const registered = await this.nodes.lookup(hostId)
      if (!registered) return hostId
      // A locked node is not present (its proxies close its tunnels as they learn of the lock).
      if (this.revocations.refusedHost(hostId)) return false
      // Labels the rules refuse drop this report only, not the proxy's whole batch.
      const labels = report.labels === undefined ? {} : validLabels(report.labels)
      if (!labels) return false
      const version = typeof report.version === 'string' && report.version.length <= 64 ? { version: report.version } : {}
      const recorded = await this.nodes.heartbeat({
        hostId,
        nodename: registered.nodename,
        roles: registered.roles,
        addr: stringField(report, 'addr', { optional: true, max: 64 }) ?? '',
        tunnel: true,
        labels,
        lastSeen: now,
        ...version,
      }, proxy.subject.commonName)
      return recorded || hostId
    }))
    // Hosts removed (nodes rm) or replaced: the proxy closes their tunnels.
    const unknown = results.filter((result) => typeof result === 'string')
    return { accepted: results.filter((result) => result === true).length, unknown }
  }

  private async handleHeartbeat(req: IncomingMessage): Promise<unknown> {
    const peer = this.requirePeer(req, 'host')
    const body = await readJson(req)
    const hostId = peer.subject.commonName
    const registered = await this.nodes.lookup(hostId)
    if (!registered) throw new HttpError(403, `host ${hostId} is not registered in this cluster`)
    const version = stringField(body, 'version', { optional: true, max: 64 })
    const recorded = await this.nodes.heartbeat({
      hostId,
      nodename: registered.nodename,
      roles: registered.roles,
      addr: serviceAddress(this.remoteAddress(req), stringField(body, 'service_addr', { optional: true, max: 256 })),
      tunnel: false,
      labels: labelsField(body, 'labels'),
      lastSeen: Date.now(),
      ...(version ? { version } : {}),
    })
    if (!recorded) throw new HttpError(403, `host ${hostId} is not registered in this cluster`)
    // What the cluster trusts now: a node without a tunnel follows CA rotations by this.
    return { ok: true, host_ca_certs: this.hostCA.tlsCertPems, user_ca_ssh_keys: this.userCA.sshPublicKeys }
  }
}
