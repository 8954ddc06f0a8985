// The node's SSH server. It listens on no port: the tunnel hands it one stream per
// connection. Users log in only with an OpenSSH user certificate from a trusted user CA;
// sessions run as the certificate's login, and a pseudo-terminal comes from util-linux
// `script`, so the agent needs no native addon.
//
// Parts, in order: the server and its connections; authentication; sessions (exec, shell,
// pty, env); port forwarding; processes (plain pipes or under `script`, pty resize,
// termination); login accounts from /etc/passwd; the client's signature.

import { spawn, type ChildProcess } from 'node:child_process'
import { constants as osConstants } from 'node:os'
import { verify, type KeyObject } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { basename } from 'node:path'
import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import ssh2 from 'ssh2'
import type { AuthContext, Connection, ParsedKey, PseudoTtyInfo, ServerChannel, Session, TcpipRequestInfo } from 'ssh2'
import { createLogger, type Logger } from '../shared/log.ts'
import { parseSshCertificate, parseSshPublicKey, verifySshCertificate, type ParsedSshCertificate } from '../shared/ssh-cert.ts'
import { openSshPrivateKey } from '../shared/ssh-key-file.ts'
import { SshReader } from '../shared/ssh-wire.ts'

const CERT_ALGO = 'ssh-ed25519-cert-v01@openssh.com'
/** How long a session's processes get after SIGHUP before SIGKILL. */
const KILL_GRACE_MS = 2000
/** How long close() lets a connection say goodbye before destroying its stream. */
const CLOSE_GRACE_MS = 1000
const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const USER_PATH = '/usr/local/bin:/usr/bin:/bin'
/** Environment a client may set (OpenSSH's usual AcceptEnv); anything else could change how the login runs. */
const ACCEPTED_ENV = /^(LANG|LC_[A-Z]+)$/

/** A login the server can run sessions as. */
export interface LoginAccount {
  name: string
  uid: number
  gid: number
  home: string
  shell: string
}

export interface SshServerOptions {
  /** The host's Ed25519 private key, PKCS8 PEM. */
  hostKeyPem: string
  /** Trusted user CA public keys, "ssh-ed25519 AAAA..." lines. */
  userCAKeys: string[]
  log?: Logger
  /** Where a login's shell/exec runs; default: look the login up in /etc/passwd, run as that uid/gid with its home and shell. */
  resolveLogin?: (login: string) => LoginAccount | undefined
  /** Why `ssh -L` may not reach host:port (see forward-policy.ts), undefined to allow; default: refuse every destination. */
  forwardRefusal?: (host: string, port: number) => string | undefined
}

/** What an accepted certificate grants on one connection. */
interface Grant {
  account: LoginAccount
  keyId: string
  permitPty: boolean
  permitPortForwarding: boolean
}

interface Refusal {
  reason: string
  fields: Record<string, unknown>
  /** A bad certificate, as opposed to a client trying what it has. */
  suspicious: boolean
}

interface ConnectionState {
  stream: Duplex
  remote: string
  client?: Connection
  grant?: Grant
  /** The last routine refusal, logged if the connection ends without a login. */
  refusal?: { message: string, fields: Record<string, unknown> }
  processes: Set<SessionProcess>
  sockets: Set<Socket>
  closed: Promise<void>
}

export class NodeSshServer {
  private readonly hostKey: ParsedKey
  private readonly log: Logger
  private readonly resolveLogin: (login: string) => LoginAccount | undefined
  private readonly forwardRefusal: (host: string, port: number) => string | undefined
  private readonly connections = new Set<ConnectionState>()
  private trustedCaKeys: KeyObject[] = []
  private closing = false

  constructor(options: SshServerOptions) {
    // ssh2 reads OpenSSH's private key format, not PKCS8.
    const parsed = ssh2.utils.parseKey(openSshPrivateKey(options.hostKeyPem))
    if (parsed instanceof Error) throw new Error(`SSH host key: ${parsed.message}`)
    this.hostKey = parsed
    this.log = options.log?.child('ssh') ?? createLogger('node:ssh')
    this.resolveLogin = options.resolveLogin ?? lookupPasswd
    this.forwardRefusal = options.forwardRefusal ?? (() => 'port forwarding is off on this node')
    this.setUserCAKeys(options.userCAKeys)
  }

  /** Replaces the trusted user CAs; connections already logged in keep running. */
  setUserCAKeys(keys: string[]): void {
    this.trustedCaKeys = keys.map((line) => parseSshPublicKey(line))
  }

  /** SSH connections currently open, logged in or not. */
  get activeSessions(): number {
    return this.connections.size
  }

  /** Serves one SSH connection over any duplex stream: a tunnel stream or a TCP socket. */
  handleConnection(stream: Duplex, info?: { remoteAddress?: string }): void {
    if (this.closing) {
      stream.destroy()
      return
    }
    const remote = info?.remoteAddress ?? socketAddress(stream)
    let markClosed!: () => void
    const state: ConnectionState = {
      stream, remote, processes: new Set(), sockets: new Set(),
      closed: new Promise((resolve) => { markClosed = resolve }),
    }
    stream.once('close', () => {
      if (!state.grant && state.refusal) this.log.info(`SSH login refused: ${state.refusal.message}`, state.refusal.fields)
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
    const server = new ssh2.Server({ hostKeys: [{ key: this.hostKey }], ident: 'Warren' })
    server.on('connection', (client) => this.serveClient(state, client))
    server.injectSocket(stream as Socket)
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
    for (const proc of state.processes) proc.terminate()
    for (const socket of state.sockets) socket.destroy()
  }

  private serveClient(state: ConnectionState, client: Connection): void {
    state.client = client
    const log = this.log
    client.on('error', (err) => log.debug('SSH connection error', { remote: state.remote, error: err }))
    client.on('authentication', (ctx) => {
      const result = this.authenticate(ctx)
      if ('reason' in result) {
        const fields = { login: ctx.username, ...result.fields, remote: state.remote }
        // A refused certificate is worth a warning now; other refusals are routine until
        // the connection ends without a login (see handleConnection).
        if (result.suspicious) log.warn(`SSH login refused: ${result.reason}`, fields)
        else log.debug(`SSH login refused: ${result.reason}`, fields)
        state.refusal = result.suspicious ? undefined : { message: result.reason, fields }
        return ctx.reject(['publickey'])
      }
      if (ctx.method === 'publickey' && ctx.signature) state.grant = result
      ctx.accept()
    })
    client.on('ready', () => {
      const grant = state.grant!
      log.info('SSH login accepted', { login: grant.account.name, key_id: grant.keyId, remote: state.remote })
    })
    client.on('session', (accept) => this.serveSession(state, accept()))
    client.on('tcpip', (accept, reject, info) => this.forwardPort(state, info, accept, reject))
    client.on('request', (_accept, reject, name) => {
      log.info('SSH request refused: remote forwarding is not supported', { request: name, remote: state.remote })
      reject?.()
    })
  }

  // ---- Authentication -------------------------------------------------------------------

  /** The grant for an acceptable request, or why it is refused. */
  private authenticate(ctx: AuthContext): Grant | Refusal {
    const login = ctx.username
    // OpenSSH probes with "none" and offers a key before its certificate: that is no attack.
    if (ctx.method === 'none') return { reason: 'no user certificate offered', fields: {}, suspicious: false }
    if (ctx.method !== 'publickey') {
      return { reason: 'only certificate logins are accepted', fields: { method: ctx.method }, suspicious: false }
    }
    if (ctx.key.algo !== CERT_ALGO) {
      return { reason: 'a plain public key is not accepted, a user certificate is required', fields: { key_type: ctx.key.algo }, suspicious: false }
    }
    let cert: ParsedSshCertificate
    try {
      cert = parseSshCertificate(ctx.key.data)
      verifySshCertificate(cert, { trustedCaKeys: this.trustedCaKeys, type: 'user', principal: login })
    } catch (err) {
      return { reason: (err as Error).message, fields: {}, suspicious: true }
    }
    const fields = { key_id: cert.keyId, serial: String(cert.serial) }
    const account = this.resolveLogin(login)
    if (!account) return { reason: 'no such login on this node', fields, suspicious: true }
    // Without a signature the client only asks whether the key would do; it signs next.
    if (ctx.signature && !(ctx.blob && verifyClientSignature(ctx.blob, ctx.signature, cert.publicKey))) {
      return { reason: 'bad signature from the certificate key', fields, suspicious: true }
    }
    return {
      account,
      keyId: cert.keyId,
      permitPty: Object.hasOwn(cert.extensions, 'permit-pty'),
      permitPortForwarding: Object.hasOwn(cert.extensions, 'permit-port-forwarding'),
    }
  }

  // ---- Sessions ---------------------------------------------------------------------------

  private serveSession(state: ConnectionState, session: Session): void {
    const grant = state.grant!
    const log = this.log
    const env: Record<string, string> = {}
    let pty: PseudoTtyInfo | undefined
    let proc: SessionProcess | undefined

    session.on('pty', (accept, reject, info) => {
      if (!grant.permitPty) {
        log.info('SSH pty refused: the certificate lacks permit-pty', { login: grant.account.name, remote: state.remote })
        return reject?.()
      }
      pty = info
      accept?.()
    })
    session.on('window-change', (accept, _reject, info) => {
      proc?.resize(info.rows, info.cols)
      accept?.()
    })
    session.on('env', (accept, reject, info) => {
      if (!ACCEPTED_ENV.test(info.key) || info.val.includes('\0')) return reject?.()
      env[info.key] = info.val
      accept?.()
    })
    session.on('auth-agent', (_accept, reject) => {
      log.info('SSH agent forwarding refused', { login: grant.account.name, remote: state.remote })
      reject?.()
    })
    session.on('x11', (_accept, reject) => {
      log.info('SSH X11 forwarding refused', { login: grant.account.name, remote: state.remote })
      reject?.()
    })
    const start = (channel: ServerChannel, command: string | undefined) => {
      log.info(command === undefined ? 'SSH shell started' : 'SSH command started', { login: grant.account.name, pty: pty !== undefined, remote: state.remote })
      const started = runSession(channel, { account: grant.account, command, env, pty })
      proc = started
      state.processes.add(started)
      void started.exited.then(() => state.processes.delete(started))
    }
    session.on('exec', (accept, _reject, info) => start(accept(), info.command))
    session.on('shell', (accept) => start(accept(), undefined))
    // The client closed the channel (or went away): its processes go with it.
    session.on('close', () => proc?.terminate())
  }

  // ---- Port forwarding (ssh -L) -----------------------------------------------------------

  private forwardPort(
    state: ConnectionState,
    info: TcpipRequestInfo,
    accept: () => ServerChannel,
    reject: () => void,
  ): void {
    const grant = state.grant!
    const fields = { login: grant.account.name, destination: `${info.destIP}:${info.destPort}`, remote: state.remote }
    if (!grant.permitPortForwarding) {
      this.log.info('SSH port forwarding refused: the certificate lacks permit-port-forwarding', fields)
      return reject()
    }
    const refusal = this.forwardRefusal(info.destIP, info.destPort)
    if (refusal !== undefined) {
      this.log.info(`SSH port forwarding refused: ${refusal}`, fields)
      return reject()
    }
    const socket = connect({ host: info.destIP, port: info.destPort })
    state.sockets.add(socket)
    socket.once('close', () => state.sockets.delete(socket))
    socket.once('error', (err) => {
      this.log.info('SSH port forward failed', { ...fields, error: err })
      reject()
    })
    socket.once('connect', () => {
      this.log.debug('SSH port forward opened', fields)
      const channel = accept()
      socket.pipe(channel).pipe(socket)
      channel.on('error', () => socket.destroy())
      channel.on('close', () => socket.destroy())
      socket.once('close', () => channel.destroy())
    })
  }
}

function socketAddress(stream: Duplex): string {
  const { remoteAddress, remotePort } = stream as Partial<Socket>
  return remoteAddress === undefined ? 'unknown' : `${remoteAddress}:${remotePort}`
}

// ---- Processes ----------------------------------------------------------------------------

interface SessionRequest {
  account: LoginAccount
  /** undefined for a shell. */
  command: string | undefined
  env: Record<string, string>
  pty: PseudoTtyInfo | undefined
}

/** A session's process: the command or shell itself, or `script` holding its pty. */
class SessionProcess {
  readonly exited: Promise<void>
  private readonly child: ChildProcess
  private readonly resizer?: PtyResizer
  private done = false

  constructor(child: ChildProcess, withPty: boolean) {
    this.child = child
    this.resizer = withPty ? new PtyResizer(child) : undefined
    this.exited = new Promise((resolve) => child.once('close', () => {
      this.done = true
      resolve()
    }))
  }

  resize(rows: number, cols: number): void {
    this.resizer?.resize(rows, cols)
  }

  /**
   * SIGHUP to the process group, as a hangup would send; SIGKILL after a grace period for
   * whatever ignored it. Killing `script` closes the pty, which hangs up the shell inside.
   */
  terminate(): void {
    if (this.done || this.child.pid === undefined) return
    const group = -this.child.pid
    signalGroup(group, 'SIGHUP')
    setTimeout(() => {
      if (!this.done) signalGroup(group, 'SIGKILL')
    }, KILL_GRACE_MS).unref()
  }
}

function signalGroup(group: number, signal: NodeJS.Signals): void {
  try {
    process.kill(group, signal)
  } catch {
    // Already gone.
  }
}

/** Starts the session's process and wires it to the channel until it exits. */
function runSession(channel: ServerChannel, req: SessionRequest): SessionProcess {
  const { account } = req
  const env: Record<string, string> = {
    ...req.env,
    HOME: account.home,
    USER: account.name,
    LOGNAME: account.name,
    SHELL: account.shell,
    PATH: account.uid === 0 ? ROOT_PATH : USER_PATH,
  }
  if (req.pty) env.TERM = req.pty.term || 'dumb'
  const options = {
    ...runAs(account),
    cwd: existsSync(account.home) ? account.home : '/',
    env,
    // Its own process group, so that terminate() reaches everything it started.
    detached: true,
    stdio: 'pipe' as const,
  }
  let child: ChildProcess
  if (req.pty) {
    child = spawn('script', ['-q', '-f', '-e', '-c', ptyCommand(req.command, account.shell, req.pty), '/dev/null'], options)
  } else if (req.command === undefined) {
    // A leading dash makes it a login shell, as sshd starts it.
    child = spawn(account.shell, [], { ...options, argv0: `-${basename(account.shell)}` })
  } else {
    child = spawn(account.shell, ['-c', req.command], options)
  }
  const session = new SessionProcess(child, req.pty !== undefined)
  child.stdin!.on('error', () => {}) // EPIPE once the process has gone
  channel.pipe(child.stdin!)
  child.stdout!.pipe(channel, { end: false })
  child.stderr!.pipe(channel.stderr, { end: false })
  child.once('error', (err) => {
    const hint = req.pty ? ' (a pty needs util-linux script)' : ''
    channel.stderr.write(`warren: cannot start the session: ${err.message}${hint}\r\n`)
  })
  child.once('close', (code, signal) => {
    channel.unpipe(child.stdin!)
    // A process that never started reports a negative errno: exit 127, as a shell would.
    endChannel(channel, code === null || code < 0 ? 127 : code, signal)
  })
  return session
}

/** uid/gid to switch to; none when the agent already runs as the login. */
function runAs(account: LoginAccount): { uid?: number, gid?: number } {
  const uid = process.getuid?.()
  if (uid === account.uid) return uid === 0 ? { uid: 0, gid: account.gid } : {}
  // Only root can switch; spawn then fails with EPERM and the client is told.
  return { uid: account.uid, gid: account.gid }
}

/**
 * The command `script` runs through $SHELL -c: set the pty's size from inside (no process
 * outside the pty can size it before the shell starts), then the command or a login shell.
 */
function ptyCommand(command: string | undefined, shell: string, pty: PseudoTtyInfo): string {
  const size = pty.rows > 0 && pty.cols > 0 ? `stty rows ${pty.rows} cols ${pty.cols} 2>/dev/null\n` : ''
  return size + (command ?? `exec ${shellQuote(shell)} -l`)
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`
}

/** Exit status after the last byte of output, then EOF and close, as OpenSSH's sshd does. */
function endChannel(channel: ServerChannel, code: number, signal: NodeJS.Signals | null): void {
  channel.stderr.end(() => channel.write(Buffer.alloc(0), () => {
    if (signal) {
      try {
        channel.exit(signal, false, '')
      } catch {
        // A signal ssh2 cannot name: report it the way a shell would.
        channel.exit(128 + (osConstants.signals[signal] ?? 0))
      }
    } else {
      channel.exit(code)
    }
    channel.end()
  }))
}

/**
 * Applies window-change requests to a `script` pty. A pty is sized with an ioctl, which
 * Node cannot make, so `stty -F /dev/pts/N` makes it; the kernel then sends SIGWINCH to the
 * foreground job. Requests are applied one at a time, and only the latest pending one.
 */
class PtyResizer {
  private readonly child: ChildProcess
  private pending?: { rows: number, cols: number }
  private running = false

  constructor(child: ChildProcess) {
    this.child = child
  }

  resize(rows: number, cols: number): void {
    if (rows <= 0 || cols <= 0) return
    this.pending = { rows, cols }
    if (!this.running) void this.drain()
  }

  private async drain(): Promise<void> {
    this.running = true
    while (this.pending) {
      const size = this.pending
      this.pending = undefined
      const tty = await this.findTty()
      if (tty) await run('stty', ['-F', tty, 'rows', String(size.rows), 'cols', String(size.cols)])
    }
    this.running = false
  }

  /** `script` may not have opened its pty yet just after spawning: look a few times. */
  private async findTty(): Promise<string | undefined> {
    for (let attempt = 0; attempt < 20 && this.child.exitCode === null && this.child.signalCode === null; attempt++) {
      const tty = this.child.pid === undefined ? undefined : ptyOf(this.child.pid)
      if (tty) return tty
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return undefined
  }
}

/** The pty slave that process `pid` holds, or whose master it holds, from /proc. */
function ptyOf(pid: number): string | undefined {
  let fds: string[]
  try {
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return undefined
  }
  for (const fd of fds) {
    let target: string
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`)
      if (/^\/dev\/pts\/\d+$/.test(target)) return target
      if (target !== '/dev/ptmx') continue
      const index = /^tty-index:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))
      if (index) return `/dev/pts/${index[1]}`
    } catch {
      // The fd closed while we looked.
    }
  }
  return undefined
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'ignore' })
    child.once('error', () => resolve())
    child.once('close', () => resolve())
  })
}

// ---- Login accounts -------------------------------------------------------------------------

/** getpwnam(3) for /etc/passwd only (no NSS): name:password:uid:gid:gecos:home:shell. */
export function lookupPasswd(login: string): LoginAccount | undefined {
  let text: string
  try {
    text = readFileSync('/etc/passwd', 'utf8')
  } catch {
    return undefined
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':')
    if (fields.length !== 7 || fields[0] !== login) continue
    const uid = Number(fields[2])
    const gid = Number(fields[3])
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || fields[2] === '' || fields[3] === '') return undefined
    return { name: login, uid, gid, home: fields[5] || '/', shell: fields[6] || '/bin/sh' }
  }
  return undefined
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
