// The node's SSH server. It listens on no port: the tunnel hands it one stream per
// connection. Users log in only with an OpenSSH user certificate from a trusted user CA;
// sessions (ssh-session.ts) run as the certificate's login, and forwards (ssh-forwarding.ts)
// open what the certificate and the node's policy allow. The user's roles, carried in the
// certificate, are judged here too, against this node's labels (its own, with those the
// cluster assigns to it in place of its own of the same keys): a stream that got past a
// proxy by any means still meets them.
//
// Parts, in order: the server and its connections; authentication; the client's signature.

import { type KeyObject, randomUUID, verify } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { AuthContext, Connection, ParsedKey, TcpipBindInfo } from 'ssh2'
import ssh2 from 'ssh2'
import { type Access, allPortsOn, loginRefusal, nodeRefusal, portRefusal } from '../shared/access.ts'
import { accessOfSshCertificate, generationOfSshCertificate } from '../shared/access-cert.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import type { AuditValue, NodeEventType } from '../shared/protocol/audit.ts'
import { type ParsedSshCertificate, parseSshCertificate, parseSshPublicKey, verifySshCertificate } from '../shared/ssh-cert.ts'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'
import { SshReader } from '../shared/ssh-wire.ts'
import { corkEachTick } from './cork-each-tick.ts'
import { accountExpired, findLogin, type LoginAccount } from './login-accounts.ts'
import { type LoginRecordFiles, LoginRecords } from './login-records.ts'
import { nologinFile } from './nologin.ts'
import { ptyPerl } from './pty.ts'
import { type RecordingPlace, type RecordingSkipped, type RecordingStart, SessionRecording } from './session-recording.ts'
import type { FileOperation } from './sftp/channel-audit.ts'
import { findSftpServer } from './sftp-server.ts'
import { type AgentSocket, listenForAgent } from './ssh-agent-forwarding.ts'
import { serverCiphers } from './ssh-ciphers.ts'
import { forwardPort } from './ssh-forwarding.ts'
import { RemoteForwards } from './ssh-remote-forwarding.ts'
import { type SessionProcess, serveSession } from './ssh-session.ts'
import { SYSTEM_ENVIRONMENT_FILES, systemEnvironment } from './system-environment.ts'

const CERT_ALGO = 'ssh-ed25519-cert-v01@openssh.com'

/** What the proxy says of a stream it hands the node's SSH server (agent/services.ts). */
export interface StreamInfo {
  /** Who is connecting, for the logs. */
  remoteAddress?: string
  /** The user the proxy judged: only that user's certificate logs in on the stream. */
  user?: string
  /** That user's certificates valid from before this instant (epoch ms) are refused, as the proxy refuses them: those without a user generation, when `refusedGenerations` is given. */
  validFrom?: number
  /** That user's certificates that carry one of these user generations are refused (a `users reset` or `users rm` ended them); absent from a proxy of an earlier version. */
  refusedGenerations?: string[]
  /** With `refusedGenerations`: those that carry another are refused when valid from before this (a lock made by an earlier version). */
  generationValidFrom?: number
}

/** Logins in progress of one user (or address) that another's never closes (roomToLogIn): a person's usual parallel logins, `ssh` and an `scp` beside it. */
const KEPT_LOGINS_PER_SHARE = 2

/** How long close() lets a connection say goodbye before destroying its stream. */
const CLOSE_GRACE_MS = 1000

/**
 * What one user may hold on this node, so that a user (or a proxy, before any login) cannot
 * spend a small device's processes, sockets and memory without end.
 */
export interface SshLimits {
  /**
   * Connections not yet logged in, at once. Each costs a key exchange and ssh2's state
   * before anyone is known. Default 32, a fraction of OpenSSH's MaxStartups (10:30:100):
   * every login here is a certificate, over at once. They are shared fairly between users
   * (the user the proxy judged for the stream, else the source address): while all are
   * taken, a newcomer holding fewer than the one holding most closes that one's oldest, and
   * one holding as many is refused, so that no user can keep another out by holding them.
   */
  maxUnauthenticated: number
  /**
   * How long a connection may take to log in before it is closed. Default 30 s: OpenSSH's
   * LoginGraceTime of 120 s leaves time to type a password, and no login here needs one.
   */
  loginGraceMs: number
  /**
   * Logged-in connections one user (the certificate's key ID) may hold at once; a login
   * beyond is refused. Default 16, as for Teleport's `max_connections` role option (which
   * has none by default): room for scripts in parallel, but no thousands of them.
   */
  maxConnectionsPerUser: number
  /**
   * Session channels (shell, exec, sftp), each a process, open at once on one connection;
   * more are refused. Default 10, OpenSSH's MaxSessions. The user's roles may allow fewer
   * (max_sessions, carried in the certificate's access).
   */
  maxSessionsPerConnection: number
  /**
   * Forwarded connections (`ssh -L` channels, connections to `ssh -R` listeners, agent
   * connections) open at once on one connection, each a socket of this process; more are
   * refused. Default 64: a browser through a forward opens about six per host.
   */
  maxForwardsPerConnection: number
}

export const defaultSshLimits: Readonly<SshLimits> = Object.freeze({
  maxUnauthenticated: 32,
  loginGraceMs: 30_000,
  maxConnectionsPerUser: 16,
  maxSessionsPerConnection: 10,
  maxForwardsPerConnection: 64,
})

export interface SshServerOptions {
  /** The host's Ed25519 private key, PKCS8 PEM. */
  hostKeyPem: string
  /** Trusted user CA public keys, "ssh-ed25519 AAAA..." lines. */
  userCAKeys: string[]
  log?: Logger
  /** Where a login's shell/exec runs; default: look the login up in /etc/passwd, then NSS (findLogin), run as that uid/gid with its home and shell. */
  resolveLogin?: (login: string) => LoginAccount | undefined | Promise<LoginAccount | undefined>
  /** Files of the administrator's variables for every login (system-environment.ts); default: /etc/environment, /etc/default/locale. */
  environmentFiles?: readonly string[]
  /** Why `ssh -L` may not reach host:port (see forward-policy.ts), undefined to allow; default: refuse every destination. */
  forwardRefusal?: (host: string, port: number) => string | undefined
  /** Why `ssh -R` may not listen on this node, undefined to allow; default: refuse. */
  remoteForwardRefusal?: () => string | undefined
  /** This node's labels as access is judged (the assigned ones winning), read at each login (a reload or new assigned labels change them); default: none. */
  labels?: () => Record<string, string>
  /** The name of the declared forwarded port at host:port, if it is one (the user's roles name ports). */
  declaredPortName?: (host: string, port: number) => string | undefined
  /** OpenSSH's sftp-server for the `sftp` subsystem, undefined to run Warren's own; default: the usual paths, else Warren's own. */
  sftpServer?: () => string | undefined
  /** The perl that opens session ptys, undefined to have util-linux `script` hold them; default: the system's, if any. */
  perl?: () => string | undefined
  /**
   * Told of each file operation an SFTP session performs (open, read and write with their
   * bytes when a file is closed, remove, rename, mkdir, rmdir, setstat, symlink, link), with
   * who performed it; default: nobody. For an audit trail.
   */
  onFileOperation?: (op: FileOperation, session: { login: string; keyId: string; remote: string }) => void
  /** Records an audit event (sessions, commands, forwards); default: none are recorded. */
  audit?: AuditRecorder
  /** Where the user's interactive session `name` is recorded (session-recording.ts), or why not (audited); undefined: not recorded (the default). */
  recordingDir?: (user: string, name: string) => RecordingPlace | undefined
  /** Told when a recording is whole (its session ended). */
  recorded?: () => void
  /** Bounds on what connections and users may hold, read at each use (a reload changes them); default: defaultSshLimits. */
  limits?: () => Partial<SshLimits>
  /** Sessions with a pty in the system's login records (login-records.ts), or in these files; default: none. */
  loginRecords?: true | LoginRecordFiles
}

export type AuditRecorder = (type: NodeEventType, fields: Record<string, AuditValue | undefined>) => void

/** What an accepted certificate grants on one connection. */
interface Grant {
  account: LoginAccount
  keyId: string
  permitPty: boolean
  permitPortForwarding: boolean
  permitAgentForwarding: boolean
  access: Access
}

interface Refusal {
  reason: string
  fields: Record<string, unknown>
  /** A bad certificate, as opposed to a client trying what it has. */
  suspicious: boolean
  /** The client tried what it has (no key, a password, a plain key), not a certificate. */
  probe?: true
}

/** Whose a connection not yet logged in is, for the share of them each may hold. */
interface LoginShare {
  key: string
  /** For the logs: `user`, or `source` (an address). */
  fields: { user: string } | { source: string }
}

interface PendingLogin {
  stream: Duplex
  remote: string
  share: LoginShare
  /** It no longer counts as logging in. */
  leave: () => void
}

interface ConnectionState {
  stream: Duplex
  remote: string
  /** The client's address without its port (sourceAddress). */
  source: string
  /** Whom the proxy judged for this stream, when it says: no other certificate logs in on it. */
  judged: StreamInfo
  client?: Connection
  grant?: Grant
  /** The accounts looked up for its logins: OpenSSH asks whether a key would do, then signs, and one lookup serves both. */
  accounts?: Map<string, Promise<LoginAccount | undefined>>
  /** The last routine refusal, logged if the connection ends without a login. */
  refusal?: { message: string; fields: Record<string, unknown>; probe: boolean }
  processes: Set<SessionProcess>
  /** Session channels open on the connection. */
  sessions: number
  sockets: Set<Socket>
  /**
   * The sessions' `ssh -A` sockets. A session closes its own when the client closes the
   * channel; a client that vanishes (its connection cut, its ProxyCommand killed before it
   * passed on the close) closes no channel, so the connection's end closes them too.
   */
  agentSockets: Set<AgentSocket>
  /** The connection has ended and released what it held: anything made later goes at once. */
  released: boolean
  /** The connection logged in, or ended: it no longer counts as one logging in. */
  loggedIn: () => void
  /** The connection's `ssh -R` listeners, once logged in. */
  remoteForwards?: RemoteForwards
  closed: Promise<void>
  /** The audit trail's view of a logged-in connection: its ID, when it began, the last exit status. */
  audit?: { sessionId: string; started: number; exitStatus?: number; recordings?: number }
}

export class NodeSshServer {
  private readonly hostKey: ParsedKey
  private readonly log: Logger
  private readonly resolveLogin: (login: string) => LoginAccount | undefined | Promise<LoginAccount | undefined>
  private readonly environmentFiles: readonly string[]
  private readonly forwardRefusal: (host: string, port: number) => string | undefined
  private readonly remoteForwardRefusal: () => string | undefined
  private readonly labels: () => Record<string, string>
  private readonly declaredPortName: (host: string, port: number) => string | undefined
  private readonly sftpServer: () => string | undefined
  private readonly perl: () => string | undefined
  private readonly onFileOperation?: SshServerOptions['onFileOperation']
  private readonly audit: AuditRecorder
  private readonly recordingDir: (user: string, name: string) => RecordingPlace | undefined
  private readonly recorded?: () => void
  private readonly connections = new Set<ConnectionState>()
  private readonly limitsGiven: () => Partial<SshLimits>
  private readonly loginRecords?: LoginRecords
  /** Connections open that have not logged in (yet). */
  private unauthenticated = 0
  /** Those connections by whose they are (LoginShare.key), oldest first. */
  private readonly loggingIn = new Map<string, Set<PendingLogin>>()
  private trustedCaKeys: KeyObject[] = []
  private closing = false

  constructor(options: SshServerOptions) {
    // ssh2 reads OpenSSH's private key format, not PKCS8.
    const parsed = ssh2.utils.parseKey(openSshPrivateKey(options.hostKeyPem))
    if (parsed instanceof Error) throw new Error(`SSH host key: ${parsed.message}`)
    this.hostKey = parsed
    this.log = options.log?.child('ssh') ?? createLogger('node:ssh')
    this.resolveLogin = options.resolveLogin ?? ((login) => findLogin(login, { onLookupError: (error) => this.log.warn('looking a login up failed', { login, error }) }))
    this.environmentFiles = options.environmentFiles ?? SYSTEM_ENVIRONMENT_FILES
    this.forwardRefusal = options.forwardRefusal ?? (() => 'port forwarding is off on this node')
    this.remoteForwardRefusal = options.remoteForwardRefusal ?? (() => 'port forwarding is off on this node')
    this.labels = options.labels ?? (() => ({}))
    this.declaredPortName = options.declaredPortName ?? (() => undefined)
    this.sftpServer = options.sftpServer ?? (() => findSftpServer())
    this.perl = options.perl ?? ptyPerl
    this.onFileOperation = options.onFileOperation
    this.audit = options.audit ?? (() => {})
    this.recordingDir = options.recordingDir ?? (() => undefined)
    this.recorded = options.recorded
    this.limitsGiven = options.limits ?? (() => ({}))
    if (options.loginRecords) this.loginRecords = new LoginRecords({ files: options.loginRecords === true ? undefined : options.loginRecords, log: this.log })
    this.setUserCAKeys(options.userCAKeys)
  }

  /** The limits as configured now. */
  private get limits(): Readonly<SshLimits> {
    return { ...defaultSshLimits, ...this.limitsGiven() }
  }

  /** Replaces the trusted user CAs; connections already logged in keep running. */
  setUserCAKeys(keys: string[]): void {
    this.trustedCaKeys = keys.map((line) => parseSshPublicKey(line))
  }

  /** SSH connections currently open, logged in or not. */
  get activeSessions(): number {
    return this.connections.size
  }

  /**
   * Serves one SSH connection over any duplex stream: a tunnel stream or a TCP socket.
   * `info.user` is the user the proxy judged before it opened the stream: only a certificate
   * of that user (its key ID), valid from `info.validFrom` or later, logs in on it, so a
   * connection taken over on its way (a plain SSH stream, after the proxy's reply) is of no
   * use to anyone the proxy would refuse, a locked user included.
   */
  handleConnection(stream: Duplex, info?: StreamInfo): void {
    if (this.closing) {
      stream.destroy()
      return
    }
    const remote = info?.remoteAddress ?? socketAddress(stream)
    const share = loginShare(info, stream)
    if (!this.roomToLogIn(share, remote)) {
      stream.destroy()
      return
    }
    this.unauthenticated++
    const pending: PendingLogin = { stream, remote, share, leave: () => loggedIn() }
    let sharers = this.loggingIn.get(share.key)
    if (!sharers) this.loggingIn.set(share.key, (sharers = new Set()))
    sharers.add(pending)
    let loggingIn = true
    const loggedIn = () => {
      if (!loggingIn) return
      loggingIn = false
      this.unauthenticated--
      sharers.delete(pending)
      if (sharers.size === 0 && this.loggingIn.get(share.key) === sharers) this.loggingIn.delete(share.key)
      clearTimeout(grace)
    }
    const grace = setTimeout(() => {
      this.log.info('SSH connection closed: not logged in in time', { remote, grace_ms: this.limits.loginGraceMs })
      stream.destroy()
    }, this.limits.loginGraceMs)
    grace.unref()
    let markClosed!: () => void
    const state: ConnectionState = {
      stream,
      remote,
      source: sourceAddress(info, stream),
      judged: info ?? {},
      loggedIn,
      processes: new Set(),
      sessions: 0,
      sockets: new Set(),
      agentSockets: new Set(),
      released: false,
      closed: new Promise((resolve) => {
        markClosed = resolve
      }),
    }
    stream.once('close', () => {
      loggedIn()
      if (!state.grant && state.refusal) this.log.info(`SSH login refused: ${state.refusal.message}`, state.refusal.fields)
      if (state.audit) this.audit('session.end', { ...auditFields(state), duration_ms: Date.now() - state.audit.started, exit_status: state.audit.exitStatus ?? null })
      this.log.debug('SSH connection closed', { remote })
      this.connections.delete(state)
      this.release(state)
      markClosed()
    })
    // The client is gone once it ends its side; a stream that allows half-open (as a tunnel
    // stream may) would otherwise never close.
    stream.once('end', () => stream.end())
    this.connections.add(state)
    this.log.debug('SSH connection opened', { remote })
    // One ssh2 Server per connection ties its events to this stream; the parsed key is shared.
    const cipher = serverCiphers()
    // No compression (`ssh -C` then gets none): ssh2 frees its zlib state when the transport
    // ends, and a session's output written after that would throw outside any handler.
    const server = new ssh2.Server({ hostKeys: [{ key: this.hostKey }], ident: 'Warren', algorithms: { compress: ['none'], ...(cipher ? { cipher } : {}) } })
    server.on('connection', (client) => this.serveClient(state, client))
    corkEachTick(stream)
    server.injectSocket(stream as Socket)
  }

  /**
   * Whether a connection of `share` may start logging in: while there is room, yes; when
   * every slot is taken, only by closing the oldest connection of the user (or address)
   * holding the most, and only for one holding none, or fewer than that one less one (so two
   * users holding about as many do not take turns closing each other's). A user's first
   * KEPT_LOGINS_PER_SHARE are never closed so: many accounts, each holding one, would
   * otherwise close every login of a user who holds one or two.
   */
  private roomToLogIn(share: LoginShare, remote: string): boolean {
    if (this.unauthenticated < this.limits.maxUnauthenticated) return true
    const held = this.loggingIn.get(share.key)?.size ?? 0
    let most: Set<PendingLogin> | undefined
    for (const sharers of this.loggingIn.values()) if (!most || sharers.size > most.size) most = sharers
    const [oldest] = most ?? []
    if (!oldest || most!.size <= KEPT_LOGINS_PER_SHARE || !(held === 0 || held + 1 < most!.size)) {
      this.log.warn('SSH connection refused: too many connections not logged in', { remote, ...share.fields, unauthenticated: this.unauthenticated, held })
      return false
    }
    this.log.info('SSH connection closed: not logged in, and another user needs its slot', {
      remote: oldest.remote,
      ...oldest.share.fields,
      held: most!.size,
      for_remote: remote,
    })
    oldest.leave()
    oldest.stream.destroy()
    return true
  }

  /** Ends every connection and the processes it started. */
  async close(): Promise<void> {
    this.closing = true
    const all = [...this.connections]
    for (const state of all) {
      this.release(state)
      if (state.client) state.client.end()
      else state.stream.end()
      setTimeout(() => state.stream.destroy(), CLOSE_GRACE_MS).unref()
    }
    await Promise.all(all.map((state) => state.closed))
  }

  private release(state: ConnectionState): void {
    state.released = true
    for (const proc of state.processes) proc.terminate()
    for (const agent of state.agentSockets) agent.close()
    state.agentSockets.clear()
    for (const socket of state.sockets) socket.destroy()
    state.remoteForwards?.close()
  }

  /** A session's agent socket, held by the connection until the session or the connection ends. */
  private async listenForAgent(state: ConnectionState, client: Connection, account: LoginAccount): Promise<AgentSocket> {
    const agent = await listenForAgent(client, account, state.sockets, this.limits.maxForwardsPerConnection)
    if (state.released) {
      agent.close()
      return agent
    }
    state.agentSockets.add(agent)
    return {
      path: agent.path,
      close: () => {
        state.agentSockets.delete(agent)
        agent.close()
      },
    }
  }

  private serveClient(state: ConnectionState, client: Connection): void {
    state.client = client
    const log = this.log
    client.on('error', (err) => log.debug('SSH connection error', { remote: state.remote, error: err }))
    client.on('authentication', (ctx) => void this.answerAuthentication(state, ctx))
    client.on('ready', () => {
      state.loggedIn()
      const grant = state.grant!
      log.info('SSH login accepted', { login: grant.account.name, key_id: grant.keyId, remote: state.remote })
      state.remoteForwards = new RemoteForwards({
        client,
        login: grant.account.name,
        uid: grant.account.uid,
        remote: state.remote,
        refusal: () => this.remoteForwardingRefusal(grant),
        sockets: state.sockets,
        maxSockets: this.limits.maxForwardsPerConnection,
        opened: (host, port) => this.audit('port_forward', { ...auditFields(state), direction: 'remote', host, port }),
        log,
      })
      state.audit = { sessionId: randomUUID(), started: Date.now() }
      this.audit('session.start', auditFields(state))
    })
    client.on('session', (accept, reject) => {
      const { account, permitPty, keyId, permitAgentForwarding, access } = state.grant!
      // The user's roles (max_sessions) first: when both limits are reached, theirs is the reason.
      if (access.max_sessions !== undefined && state.sessions >= access.max_sessions) {
        const reason = `the user's roles allow ${access.max_sessions} session${access.max_sessions === 1 ? '' : 's'} at once on one connection (max_sessions)`
        log.info(`SSH session refused: ${reason}`, {
          login: account.name,
          key_id: keyId,
          reason,
          max_sessions: access.max_sessions,
          sessions: state.sessions,
          remote: state.remote,
        })
        return refuseChannel(client, reject, reason)
      }
      if (state.sessions >= this.limits.maxSessionsPerConnection) {
        const reason = 'the connection holds as many sessions as this node allows'
        log.info(`SSH session refused: ${reason}`, { login: account.name, key_id: keyId, reason, sessions: state.sessions, remote: state.remote })
        return refuseChannel(client, reject, reason)
      }
      state.sessions++
      const session = accept()
      session.once('close', () => state.sessions--)
      const events = { exec: (command: string) => this.audit('exec', { ...auditFields(state), command }), exit: (status: number) => (state.audit!.exitStatus = status) }
      const report = this.onFileOperation
      serveSession(session, {
        account,
        permitPty,
        remote: state.remote,
        recordLogin: this.loginRecords && ((tty, pid) => this.loginRecords?.begin({ user: account.name, uid: account.uid, tty, pid, host: state.source })),
        processes: state.processes,
        connectionEnded: () => state.released,
        sftpServer: this.sftpServer,
        perl: this.perl,
        onFileOperation: (op) => {
          this.audit('sftp', { ...auditFields(state), ...fileOperationFields(op) })
          report?.(op, { login: account.name, keyId, remote: state.remote })
        },
        agentRefusal: !permitAgentForwarding
          ? 'the certificate lacks permit-agent-forwarding'
          : access.agent_forwarding
            ? undefined
            : "the user's roles do not allow agent forwarding (forward_agent)",
        listenForAgent: () => this.listenForAgent(state, client, account),
        log,
        events,
        record: (start) => this.record(state, start),
        variables: sessionVariables(state),
        systemEnvironment: () => systemEnvironment(this.environmentFiles),
      })
    })
    client.on('tcpip', (accept, reject, info) => {
      const { account, permitPortForwarding, access } = state.grant!
      if (state.sockets.size >= this.limits.maxForwardsPerConnection) {
        log.info('SSH port forwarding refused: the connection holds as many forwards as this node allows', {
          login: account.name,
          forwards: state.sockets.size,
          remote: state.remote,
        })
        return reject()
      }
      const refusal = (host: string, port: number) =>
        (access.local_forwarding ? undefined : "the user's roles do not allow port forwarding (port_forwarding: false)") ??
        this.forwardRefusal(host, port) ??
        this.forwardAccessRefusal(access, host, port)
      const opened = (host: string, port: number) => this.audit('port_forward', { ...auditFields(state), host, port })
      forwardPort({ login: account.name, permitPortForwarding, remote: state.remote, refusal, sockets: state.sockets, log, opened }, info, accept, reject)
    })
    client.on('request', (accept, reject, name, info) => {
      state.remoteForwards?.request(name, info as TcpipBindInfo | undefined, accept as ((port?: number) => void) | undefined, reject)
    })
  }

  // ---- Authentication -------------------------------------------------------------------

  /** Answers one authentication request: ssh2 holds the next until this one is answered. */
  private async answerAuthentication(state: ConnectionState, ctx: AuthContext): Promise<void> {
    const log = this.log
    const result = await this.authenticate(ctx, state)
    // The connection may have ended while the login was looked up: nothing is granted to it.
    if (state.released || this.closing) return
    if ('reason' in result) {
      const fields = { login: ctx.username, ...result.fields, remote: state.remote }
      // A refused certificate is worth a warning now; other refusals are routine until
      // the connection ends without a login (see handleConnection).
      if (result.suspicious) log.warn(`SSH login refused: ${result.reason}`, fields)
      else log.debug(`SSH login refused: ${result.reason}`, fields)
      // What the connection ends with: a certificate's refusal, not the plain key OpenSSH tries after it.
      if (result.suspicious) state.refusal = undefined
      else if (!result.probe || !state.refusal || state.refusal.probe) state.refusal = { message: result.reason, fields, probe: result.probe === true }
      return ctx.reject(['publickey'])
    }
    if (ctx.method === 'publickey' && ctx.signature) {
      const held = [...this.connections].filter((other) => other !== state && other.grant?.keyId === result.keyId).length
      if (held >= this.limits.maxConnectionsPerUser) {
        log.info('SSH login refused: the user holds as many connections as this node allows', {
          login: ctx.username,
          key_id: result.keyId,
          connections: held,
          remote: state.remote,
        })
        return ctx.reject(['publickey'])
      }
      state.grant = result
    }
    ctx.accept()
  }

  /** The grant for an acceptable request on a stream whose user the proxy `judged` (if it said), or why it is refused. */
  private async authenticate(ctx: AuthContext, state: ConnectionState): Promise<Grant | Refusal> {
    const { judged } = state
    const login = ctx.username
    // OpenSSH probes with "none" and offers a key before its certificate: that is no attack.
    if (ctx.method === 'none') return { reason: 'no user certificate offered', fields: {}, suspicious: false, probe: true }
    if (ctx.method !== 'publickey') {
      return { reason: 'only certificate logins are accepted', fields: { method: ctx.method }, suspicious: false, probe: true }
    }
    if (ctx.key.algo !== CERT_ALGO) {
      return { reason: 'a plain public key is not accepted, a user certificate is required', fields: { key_type: ctx.key.algo }, suspicious: false, probe: true }
    }
    let cert: ParsedSshCertificate
    try {
      cert = parseSshCertificate(ctx.key.data)
      verifySshCertificate(cert, { trustedCaKeys: this.trustedCaKeys, type: 'user', principal: login })
    } catch (err) {
      return { reason: (err as Error).message, fields: {}, suspicious: true }
    }
    const fields = { key_id: cert.keyId, serial: String(cert.serial) }
    if (judged.user !== undefined && cert.keyId !== judged.user) {
      return {
        reason: `the certificate is of user "${cert.keyId}", and the proxy opened this connection for "${judged.user}"`,
        fields: { ...fields, stream_user: judged.user },
        suspicious: true,
      }
    }
    if (lockedCertificate(cert, judged)) {
      return {
        reason: "the certificate was issued before the user's certificates were locked (users reset)",
        fields: { ...fields, stream_user: judged.user, locked: true },
        suspicious: true,
      }
    }
    let access: Access
    try {
      access = accessOfSshCertificate(cert)
    } catch (err) {
      return { reason: (err as Error).message, fields, suspicious: true }
    }
    // The principal check above stands for certificates without access; this one for all.
    const labels = this.labels()
    const denied = nodeRefusal(access, labels) ?? loginRefusal(access, login, labels)
    if (denied) return { reason: denied, fields: { ...fields, access_denied: true }, suspicious: true }
    state.accounts ??= new Map()
    let lookup = state.accounts.get(login)
    if (!lookup) state.accounts.set(login, (lookup = Promise.resolve(this.resolveLogin(login))))
    const account = await lookup
    if (!account) return { reason: 'no such login on this node', fields, suspicious: true }
    if (accountExpired(account, Date.now())) {
      const day = new Date(account.expiresOnDay! * 86_400_000).toISOString().slice(0, 10)
      return { reason: `the login's account expired on ${day} (its shadow entry)`, fields: { ...fields, account_expired: day }, suspicious: true }
    }
    const nologin = nologinFile(account.uid)
    if (nologin) return { reason: `only root may log in while ${nologin} exists`, fields: { ...fields, nologin }, suspicious: false }
    // Without a signature the client only asks whether the key would do; it signs next.
    if (ctx.signature && !(ctx.blob && verifyClientSignature(ctx.blob, ctx.signature, cert.publicKey))) {
      return { reason: 'bad signature from the certificate key', fields, suspicious: true }
    }
    return {
      account,
      keyId: cert.keyId,
      permitPty: Object.hasOwn(cert.extensions, 'permit-pty'),
      permitPortForwarding: Object.hasOwn(cert.extensions, 'permit-port-forwarding'),
      permitAgentForwarding: Object.hasOwn(cert.extensions, 'permit-agent-forwarding'),
      access,
    }
  }

  /** Why `ssh -R` is refused to this grant: the certificate, the user's roles, then the node's policy. */
  /**
   * A recording of one interactive session of the connection, named by the connection's
   * session ID (as its audit events); a second pty on the same connection gets `ID.2`.
   */
  private record(state: ConnectionState, start: Omit<RecordingStart, 'sessionId'>): SessionRecording | undefined {
    if (!state.audit || !state.grant) return undefined
    const count = (state.audit.recordings ?? 0) + 1
    state.audit.recordings = count
    const sessionId = count === 1 ? state.audit.sessionId : `${state.audit.sessionId}.${count}`
    const place = this.recordingDir(state.grant.keyId, sessionId)
    if (!place) return undefined
    const skipped = (why: RecordingSkipped, more: { bytes_kept?: number } = {}) =>
      this.audit('recording.skipped', { ...auditFields(state), recording: sessionId, reason_code: why.code, reason: why.reason, ...more })
    if ('skipped' in place) return void skipped(place.skipped)
    try {
      // A recording cut short says so too, with what it keeps: never taken for a short session.
      const onStopped = (why: RecordingSkipped, bytesKept: number) => skipped(why, { bytes_kept: bytesKept })
      return new SessionRecording(place.dir, { ...start, sessionId, room: place.room, onEnd: this.recorded, onStopped }, this.log)
    } catch (error) {
      this.log.warn(`session not recorded: ${(error as Error).message}`, { session_id: sessionId })
      skipped({ code: 'file_error', reason: `the recording's file could not be made: ${(error as Error).message}` })
      return undefined
    }
  }

  private remoteForwardingRefusal(grant: Grant): string | undefined {
    if (!grant.permitPortForwarding) return 'the certificate lacks permit-port-forwarding'
    if (!grant.access.remote_forwarding) return "the user's roles do not allow remote forwarding (port_forwarding: true)"
    return this.remoteForwardRefusal()
  }

  /**
   * `ssh -L` to a declared port needs the user's roles to allow its name; elsewhere, every
   * port (`'*'`) and none denied: a declared port is known by its address as written, and
   * another spelling of it (localhost, 127.1, the node's LAN address) is "elsewhere".
   */
  private forwardAccessRefusal(access: Access, host: string, port: number): string | undefined {
    const name = this.declaredPortName(host, port)
    if (name !== undefined) return portRefusal(access, name, this.labels())
    if (allPortsOn(access, this.labels())) return undefined
    return access.deny_ports.length > 0
      ? "the user's roles deny some of the node's ports, so they allow only its named forward_ports"
      : "the user's roles allow only the node's named forward_ports"
  }
}

/** What every audit event of a logged-in connection says: which session, whose, as which login, from where. */
/**
 * Whether a lock on some of the user's certificates, as the proxy passed it on, refuses this
 * one: by the user generation it carries when the proxy names the refused ones (its dates
 * were stamped by whichever auth server issued it), else by the start of its validity.
 */
function lockedCertificate(cert: ParsedSshCertificate, judged: StreamInfo): boolean {
  const generation = generationOfSshCertificate(cert)
  const validAfter = cert.validAfter.getTime()
  if (generation !== undefined && judged.refusedGenerations !== undefined) {
    return judged.refusedGenerations.includes(generation) || (judged.generationValidFrom !== undefined && validAfter < judged.generationValidFrom)
  }
  return judged.validFrom !== undefined && validAfter < judged.validFrom
}

/**
 * What sshd tells a session about its connection, and who is behind it: SSH_CLIENT and
 * SSH_CONNECTION carry the user's address as the proxy saw it (or the socket's, reached
 * directly), with 0 for the ports the node does not see; WARREN_USER is the cluster user
 * (the certificate's key ID, where the login is only the OS account) and WARREN_SESSION_ID
 * the ID of the connection's audit events.
 */
function sessionVariables(state: ConnectionState): Record<string, string> {
  const client = clientAddress(state.remote)
  return {
    SSH_CLIENT: `${client.address} ${client.port} 0`,
    SSH_CONNECTION: `${client.address} ${client.port} 0.0.0.0 0`,
    WARREN_USER: state.grant?.keyId ?? '',
    WARREN_SESSION_ID: state.audit?.sessionId ?? '',
  }
}

/** The client of `remote`: "user@address" told by a proxy (port unknown), or a socket's "address:port". */
function clientAddress(remote: string): { address: string; port: number } {
  const at = remote.lastIndexOf('@')
  if (at >= 0) return { address: remote.slice(at + 1), port: 0 }
  const colon = remote.lastIndexOf(':')
  const port = Number(remote.slice(colon + 1))
  return colon > 0 && Number.isInteger(port) ? { address: remote.slice(0, colon), port } : { address: remote, port: 0 }
}

function auditFields(state: ConnectionState): Record<string, AuditValue> {
  // Through a proxy the remote is "user@address" (the user the proxy verified): the address alone here.
  const clientAddr = state.remote.slice(state.remote.lastIndexOf('@') + 1)
  return { session_id: state.audit?.sessionId ?? null, user: state.grant?.keyId ?? null, login: state.grant?.account.name ?? null, client_addr: clientAddr }
}

/** An SFTP file operation as audit fields: every one it carries (a target, bytes, an open's flags, an unknown outcome only when set). */
function fileOperationFields(op: FileOperation): Record<string, AuditValue> {
  const fields: Record<string, AuditValue> = {}
  for (const [name, value] of Object.entries(op)) if (value !== undefined) fields[name] = value
  return fields
}

/** SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254, 5.1), as OpenSSH's sshd refuses a channel its configuration forbids. */
const OPEN_ADMINISTRATIVELY_PROHIBITED = 1

interface ChannelOpenFailer {
  channelOpenFail?: (recipient: number, reason: number, description?: string) => void
}

/**
 * Refuses a channel the client asked to open, as administratively prohibited with why: OpenSSH
 * prints `channel N: open failed: administratively prohibited: WHY`. ssh2's own reject() takes
 * neither reason nor description (it says "connect failed", with no words); it writes the
 * refusal at once, so its protocol's channelOpenFail is wrapped for that one call. Should
 * ssh2's insides differ, the refusal stands, without the words.
 */
function refuseChannel(client: Connection, reject: () => void, description: string): void {
  const protocol = (client as unknown as { _protocol?: ChannelOpenFailer })._protocol
  const fail = protocol?.channelOpenFail
  if (!protocol || typeof fail !== 'function' || Object.hasOwn(protocol, 'channelOpenFail')) {
    reject()
    return
  }
  protocol.channelOpenFail = (recipient) => fail.call(protocol, recipient, OPEN_ADMINISTRATIVELY_PROHIBITED, description)
  try {
    reject()
  } finally {
    delete protocol.channelOpenFail
  }
}

/**
 * The user the proxy judged for the stream; without one (an earlier proxy, a socket of
 * the node's own), the address it comes from, as the proxy tells it ("user@address") or
 * the socket's.
 */
function loginShare(info: StreamInfo | undefined, stream: Duplex): LoginShare {
  if (info?.user !== undefined) return { key: `user ${info.user}`, fields: { user: info.user } }
  const source = sourceAddress(info, stream)
  return { key: `source ${source}`, fields: { source } }
}

/** The address a connection comes from, as the proxy tells it ("user@address") or the socket's. */
function sourceAddress(info: StreamInfo | undefined, stream: Duplex): string {
  const told = info?.remoteAddress
  return told !== undefined ? told.slice(told.lastIndexOf('@') + 1) : ((stream as Partial<Socket>).remoteAddress ?? 'unknown')
}

function socketAddress(stream: Duplex): string {
  const { remoteAddress, remotePort } = stream as Partial<Socket>
  return remoteAddress === undefined ? 'unknown' : `${remoteAddress}:${remotePort}`
}

// ---- Signatures --------------------------------------------------------------------

/** The client's signature over the session's userauth data, made with the certificate's key. */
function verifyClientSignature(blob: Buffer, signature: Buffer, key: KeyObject): boolean {
  // ssh2 passes the SSH signature encoding (string "ssh-ed25519", string sig) for certificates.
  let raw = signature
  if (signature.length !== 64) {
    try {
      const reader = new SshReader(signature, 'SSH signature')
      if (reader.readText() !== 'ssh-ed25519') return false
      raw = reader.readString()
      reader.expectEnd()
    } catch {
      return false
    }
  }
  if (raw.length !== 64) return false
  return verify(null, blob, key, raw)
}
