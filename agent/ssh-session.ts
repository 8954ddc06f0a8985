// SSH sessions on the node: a command (exec), a shell or the sftp subsystem, with a
// pseudo-terminal when the certificate permits one. The agent holds the pty's master itself
// (agent/pty.ts, with perl for the ioctls Node cannot make), or util-linux `script` does
// where there is no perl; either way without a native addon. Window changes resize it
// through `stty`, at most four times a second. Each session's processes run in a process
// group of their own, ended with the channel or the connection.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, readlinkSync } from 'node:fs'
import type { Socket } from 'node:net'
import { constants as osConstants } from 'node:os'
import { basename } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import type { PseudoTtyInfo, ServerChannel, Session } from 'ssh2'
import type { Logger } from '../shared/log.ts'
import { shellQuote } from '../shared/shell-quote.ts'
import type { LoginAccount } from './login-accounts.ts'
import { type DropTo, dropAndExec, supplementaryGroups } from './login-groups.ts'
import type { LoginRecord } from './login-records.ts'
import { findPerl, slaveOfMaster, spawnOnPty } from './pty.ts'
import type { RecordingStart, SessionRecording } from './session-recording.ts'
import { type FileOperation, SftpChannelAudit } from './sftp/channel-audit.ts'
import { lineSink } from './sftp/line-sink.ts'
import type { AgentSocket } from './ssh-agent-forwarding.ts'
import { warrenCommand } from './warren-command.ts'

/** How long a session's processes get after SIGHUP before SIGKILL. */
const KILL_GRACE_MS = 2000
/**
 * How long what a shell wrote before it exited gets to be read, when a background job still
 * holds its terminal (otherwise the pty's end comes as soon as the output is read).
 */
const PTY_DRAIN_MS = 200
/**
 * A pty's window changes are applied (and recorded) at most once in this long: a client
 * sending thousands a second costs one `stty` each quarter second, and the last size is
 * applied in the end.
 */
export const RESIZE_INTERVAL_MS = 250
/** How long a helper (stty for a window change) may take before it is killed. */
const HELPER_TIMEOUT_MS = 5000
const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const USER_PATH = '/usr/local/bin:/usr/bin:/bin'
/** Environment a client may set (OpenSSH's usual AcceptEnv); anything else could change how the login runs. */
const ACCEPTED_ENV = /^(LANG|LC_[A-Z]+)$/

/** The logged-in connection a session runs on. */
export interface SessionContext {
  account: LoginAccount
  /** The certificate has permit-pty. */
  permitPty: boolean
  remote: string
  /** Records a session on the terminal `tty` (session leader `pid`) as a login (`who`, `last`); undefined: nowhere. */
  recordLogin?: (tty: string, pid: number) => LoginRecord | undefined
  /** The connection's processes: each session adds its own, and they end with the connection. */
  processes: Set<SessionProcess>
  /** The connection has ended (a client that vanishes closes no channel): start nothing more. */
  connectionEnded: () => boolean
  /** The perl that opens ptys (agent/pty.ts), looked up for each session with one; undefined has util-linux `script` hold them. */
  perl: () => string | undefined
  /** OpenSSH's sftp-server, looked up at each request; undefined runs Warren's own. */
  sftpServer: () => string | undefined
  /** Told of each file operation an SFTP session performs. */
  onFileOperation?: (op: FileOperation) => void
  /** Why `ssh -A` is refused (certificate or roles), undefined to allow. */
  agentRefusal: string | undefined
  /** A socket for SSH_AUTH_SOCK whose connections reach the client's agent. */
  listenForAgent: () => Promise<AgentSocket>
  log: Logger
  /** For the audit trail: a command about to run, and each session's exit status. */
  events?: { exec(command: string): void; exit(status: number): void }
  /** A recording for an interactive session (one with a pty), or undefined when sessions are not recorded. */
  record?: (start: Omit<RecordingStart, 'sessionId'>) => SessionRecording | undefined
  /** Variables the server sets for every process of the connection (sessionVariables), over the client's. */
  variables?: Record<string, string>
  /** The administrator's variables for every login (system-environment.ts), read as each process starts; the client's LANG and LC_* win over them. */
  systemEnvironment?: () => Record<string, string>
}

/** Serves one session channel: its pty, env, exec and shell requests, until the client closes it. */
export function serveSession(session: Session, context: SessionContext): void {
  const { account, log, remote } = context
  const env: Record<string, string> = {}
  let pty: PseudoTtyInfo | undefined
  let proc: SessionProcess | undefined
  let agent: AgentSocket | undefined
  let agentAsked = false
  let closed = false
  let recording: SessionRecording | undefined
  /** The agent socket, once asked for, is listening before a command or shell starts. */
  let ready: Promise<void> = Promise.resolve()

  session.on('pty', (accept, reject, info) => {
    if (!context.permitPty) {
      log.info('SSH pty refused: the certificate lacks permit-pty', { login: account.name, remote })
      return reject?.()
    }
    pty = info
    accept?.()
  })
  session.on('window-change', (accept, _reject, info) => {
    // Applied, and recorded, at most a few times a second (PtyResizer).
    proc?.resize(info.rows, info.cols)
    accept?.()
  })
  session.on('env', (accept, reject, info) => {
    if (!ACCEPTED_ENV.test(info.key) || info.val.includes('\0')) return reject?.()
    env[info.key] = info.val
    accept?.()
  })
  session.on('auth-agent', (accept, reject) => {
    const fields = { login: account.name, remote }
    if (context.agentRefusal) {
      log.info(`SSH agent forwarding refused: ${context.agentRefusal}`, fields)
      return reject?.()
    }
    accept?.()
    if (agentAsked) return
    agentAsked = true
    ready = context.listenForAgent().then(
      (socket) => {
        if (closed) return socket.close()
        agent = socket
        env.SSH_AUTH_SOCK = socket.path
        log.debug('SSH agent forwarding on', { ...fields, socket: socket.path })
      },
      (error: Error) => log.warn('SSH agent forwarding failed', { ...fields, error }),
    )
  })
  session.on('x11', (_accept, reject) => {
    log.info('SSH X11 forwarding refused', { login: account.name, remote })
    reject?.()
  })
  const start = (channel: ServerChannel, command: string | undefined, subsystem?: { name: string; stderr: Writable; audit: SftpChannelAudit }) => {
    // Nothing would end a process started for a channel or connection that has gone.
    if (closed || context.connectionEnded()) return
    if (subsystem) log.info('SSH subsystem started', { subsystem: subsystem.name, login: account.name, remote })
    else log.info(command === undefined ? 'SSH shell started' : 'SSH command started', { login: account.name, pty: pty !== undefined, remote })
    if (!subsystem && command !== undefined) context.events?.exec(command)
    // A subsystem speaks a binary protocol: never through a pty, which would mangle it.
    const sessionPty = subsystem ? undefined : pty
    // Interactive sessions only: an exec's command and exit status are audit events already.
    if (sessionPty) recording = context.record?.({ cols: sessionPty.cols, rows: sessionPty.rows, env: { TERM: sessionPty.term || undefined, SHELL: account.shell } })
    const started = runSession(channel, {
      account,
      command,
      env: { ...context.systemEnvironment?.(), ...env, ...context.variables },
      pty: sessionPty,
      stderr: subsystem?.stderr,
      audit: subsystem?.audit,
      onExit: context.events?.exit,
      recording,
      perl: sessionPty && context.perl(),
      recordLogin: context.recordLogin,
    })
    proc = started
    if (!started) return
    context.processes.add(started)
    void started.exited.then(() => context.processes.delete(started))
  }
  /**
   * The session's channel, or undefined when it already runs a command, shell or subsystem:
   * a session runs one (sshd refuses a second too), and ssh2 then gives no channel, so the
   * request is refused here before anything is started for it.
   */
  const open = (accept: () => ServerChannel | undefined, reject: (() => void) | undefined, request: string): ServerChannel | undefined => {
    const channel = accept()
    if (channel) return channel
    log.info('SSH request refused: the session already runs one', { request, login: account.name, remote })
    reject?.()
    return undefined
  }
  /** Starts once the agent socket asked for is listening; a failure ends the channel, never the agent. */
  const startWhenReady = (channel: ServerChannel, command: string | undefined) => {
    ready
      .then(() => start(channel, command))
      .catch((error: Error) => {
        log.error('SSH session could not start', { error, login: account.name, remote })
        channel.destroy()
      })
  }
  session.on('exec', (accept, reject, info) => {
    const channel = open(accept, reject, 'exec')
    if (channel) startWhenReady(channel, info.command)
  })
  session.on('shell', (accept, reject) => {
    const channel = open(accept, reject, 'shell')
    if (channel) startWhenReady(channel, undefined)
  })
  session.on('subsystem', (accept, reject, info) => {
    if (info.name !== 'sftp') {
      log.info('SSH subsystem refused: unknown subsystem', { subsystem: info.name, login: account.name, remote })
      return reject?.()
    }
    // What the server says on its standard error is for the node's log only; its file
    // operations are read from the channel (sftp/channel-audit.ts), which the login cannot write to.
    const program = context.sftpServer()
    const argv = program ? [program, '-e'] : warrenCommand('sftp-server')
    const audit = new SftpChannelAudit(account.home, context.onFileOperation ?? (() => {}))
    const stderr = lineSink((line) => log.debug('SFTP server said', { line, login: account.name, remote }))
    // Run through the login's shell like a command, as sshd runs a subsystem: same user,
    // environment and refusals (a nologin shell refuses it too).
    const channel = open(accept, reject, 'subsystem')
    if (channel) start(channel, argv.map(shellQuote).join(' '), { name: info.name, stderr, audit })
  })
  // The client closed the channel (or went away): its processes and agent socket go with it.
  session.on('close', () => {
    closed = true
    proc?.terminate()
    agent?.close()
  })
}

// ---- Processes ----------------------------------------------------------------------------

interface SessionRequest {
  account: LoginAccount
  /** undefined for a shell. */
  command: string | undefined
  env: Record<string, string>
  pty: PseudoTtyInfo | undefined
  /** Where the process's standard error goes instead of the channel's (a subsystem's log). */
  stderr?: Writable
  /** Reads what crosses the channel both ways (an SFTP session's file operations). */
  audit?: SftpChannelAudit
  /** Told the process's exit status (the session's audit event). */
  onExit?: (status: number) => void
  /** Gets the session's output, and ends with it. */
  recording?: SessionRecording
  /** The perl that opens ptys (agent/pty.ts); undefined has `script` hold them. */
  perl: string | undefined
  /** Records the session as a login on its terminal (a pty the agent holds), until it ends. */
  recordLogin?: (tty: string, pid: number) => LoginRecord | undefined
}

/** A session's process: the command or shell itself, on a pipe or on a pty. */
export class SessionProcess {
  /** The process has exited and its output has reached the channel. */
  readonly exited: Promise<void>
  private readonly child: ChildProcess
  private readonly resizer?: PtyResizer
  private readonly master?: Socket
  private done = false

  constructor(child: ChildProcess, exited: Promise<void>, pty?: { resizer: PtyResizer; master?: Socket }) {
    this.child = child
    this.resizer = pty?.resizer
    this.master = pty?.master
    this.exited = exited.then(() => {
      this.done = true
      // A later change would size the pty's next holder.
      this.resizer?.stop()
    })
  }

  resize(rows: number, cols: number): void {
    this.resizer?.resize(rows, cols)
  }

  /**
   * SIGHUP to the process group, as a hangup would send; SIGKILL after a grace period for
   * whatever ignored it. Closing the pty's master (ours, or `script`'s when it is killed)
   * hangs up the terminal, as a dropped connection does to sshd's sessions.
   */
  terminate(): void {
    if (this.done || this.child.pid === undefined) return
    const group = -this.child.pid
    signalGroup(group, 'SIGHUP')
    this.master?.destroy()
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

/** A started process: where the channel's input goes and its output comes from. */
interface Started {
  child: ChildProcess
  input: Writable
  /** The process's output, piped to the channel; or `onOutput`, for a pty the agent holds. */
  output?: Readable
  onOutput?: (sink: (chunk: Buffer) => boolean) => void
  /** The output has ended: for a pipe, with the process; for a pty, once nothing holds the slave. */
  outputEnded: Promise<void>
  pty?: { resizer: PtyResizer; master?: Socket }
  /** The terminal of a pty the agent holds, e.g. /dev/pts/3. */
  tty?: string
}

/** Starts the session's process and wires it to the channel until it exits. */
function runSession(channel: ServerChannel, req: SessionRequest): SessionProcess | undefined {
  const { account } = req
  const env: Record<string, string> = {
    // A PATH of the administrator's (/etc/environment) wins over this one, as with sshd and pam_env.
    PATH: account.uid === 0 ? ROOT_PATH : USER_PATH,
    ...req.env,
    HOME: account.home,
    USER: account.name,
    LOGNAME: account.name,
    SHELL: account.shell,
  }
  if (req.pty) env.TERM = req.pty.term || 'dumb'
  const options = {
    ...runAs(account, req.pty !== undefined),
    cwd: existsSync(account.home) ? account.home : '/',
    env,
    // Its own process group, so that terminate() reaches everything it started.
    detached: true,
  }
  let started: Started
  try {
    started = req.pty ? startOnPty(req, req.pty, options) : startOnPipes(req, options)
  } catch (err) {
    // No pty to be had (no /dev/ptmx, none left): the client is told, as by sshd.
    channel.stderr.write(`warren: cannot start the session: ${(err as Error).message}\r\n`)
    req.onExit?.(1)
    endChannel(channel, 1, null)
    return undefined
  }
  const { child, input, output, onOutput } = started
  const login = started.tty && child.pid !== undefined ? req.recordLogin?.(started.tty, child.pid) : undefined
  // Ended as the process exits, as sshd records a logout before it lets the terminal go: a new
  // session may be given the same terminal once it is.
  if (login) child.once('exit', () => login.end())
  input.on('error', () => {}) // EPIPE once the process has gone, EIO once the pty has
  // A pty has no half-close: the client's end of input leaves the terminal to the shell, as with sshd.
  channel.pipe(input, { end: !started.pty?.master })
  started.pty?.resizer.holdInputWhileResizing(channel)
  output?.pipe(channel, { end: false })
  if (req.audit) {
    const audit = req.audit
    channel.on('data', (chunk: Buffer) => audit.fromClient(chunk))
    output?.on('data', (chunk: Buffer) => audit.fromServer(chunk))
  }
  if (req.recording) output?.on('data', (data: Buffer) => req.recording!.output(data))
  onOutput?.((chunk) => {
    // The client has gone: the output stays with the pty, as once a pipe has unpiped.
    if (!channel.writable) return false
    const more = channel.write(chunk)
    req.recording?.output(chunk)
    if (!more) channel.once('drain', () => started.pty?.master?.resume())
    return more
  })
  child.stderr?.pipe(req.stderr ?? channel.stderr, { end: false })
  child.once('error', (err) => {
    const hint = req.pty && !req.perl ? ' (a pty needs perl or util-linux script)' : ''
    channel.stderr.write(`warren: cannot start the session: ${err.message}${hint}\r\n`)
  })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })))
  const exited = Promise.all([exit, started.outputEnded]).then(([{ code, signal }]) => {
    channel.unpipe(input)
    req.audit?.end()
    // A process that never started reports a negative errno: exit 127, as a shell would.
    const status = code === null || code < 0 ? 127 : code
    req.onExit?.(signal ? 128 + (osConstants.signals[signal] ?? 0) : status)
    void req.recording?.end()
    endChannel(channel, status, signal)
  })
  return new SessionProcess(child, exited, started.pty)
}

interface SpawnBase {
  uid?: number
  gid?: number
  /** For a login with supplementary groups: started as root through perl, which sets them (agent/login-groups.ts). */
  drop?: DropTo & { perl: string }
  cwd: string
  env: Record<string, string>
  detached: boolean
}

function startOnPipes(req: SessionRequest, options: SpawnBase): Started {
  const { account } = req
  // A leading dash makes it a login shell, as sshd starts it.
  const argv = req.command === undefined ? [`-${basename(account.shell)}`] : [account.shell, '-c', req.command]
  const child = spawnAs(account.shell, argv, options)
  const outputEnded = new Promise<void>((resolve) => child.once('close', () => resolve()))
  return { child, input: child.stdin!, output: child.stdout!, outputEnded }
}

/** Starts `file` with `argv` (argv[0] first) as the login: through perl when it has supplementary groups to set. */
function spawnAs(file: string, argv: string[], options: SpawnBase): ChildProcess {
  const { drop, ...base } = options
  if (!drop) return spawn(file, argv.slice(1), { ...base, argv0: argv[0], stdio: 'pipe' })
  return spawn(drop.perl, dropAndExec(drop, file, argv), { ...base, uid: undefined, gid: undefined, env: { ...base.env, PERL_BADLANG: '0' }, stdio: 'pipe' })
}

function startOnPty(req: SessionRequest, pty: PseudoTtyInfo, options: SpawnBase): Started {
  const { account } = req
  if (!req.perl) {
    // script runs its command with $SHELL -c: /bin/sh, whatever the login's shell (fish, tcsh) would make of it.
    const child = spawnAs('script', ['script', '-q', '-f', '-e', '-c', ptyCommand(req.command, account.shell, pty), '/dev/null'], {
      ...options,
      env: { ...options.env, SHELL: '/bin/sh' },
    })
    const outputEnded = new Promise<void>((resolve) => child.once('close', () => resolve()))
    const resizer = new PtyResizer(() => findTty(child), recorded(req))
    return { child, input: child.stdin!, output: child.stdout!, outputEnded, pty: { resizer } }
  }
  const [args, argv0] = req.command === undefined ? [[], `-${basename(account.shell)}`] : [['-c', req.command], account.shell]
  const { child, master, onOutput, path } = spawnOnPty(account.shell, args, { ...options, perl: req.perl, argv0, rows: pty.rows, cols: pty.cols })
  const outputEnded = new Promise<void>((resolve) => {
    master.once('close', () => resolve())
    // EIO: nothing holds the slave any more, the master's end of file.
    master.on('error', () => master.destroy())
    // Whatever a background job still holds the terminal for is cut off, as sshd does: what
    // the shell wrote before it exited is read first.
    child.once('close', () => setTimeout(() => master.destroy(), PTY_DRAIN_MS).unref())
  })
  return { child, input: master, onOutput, outputEnded, pty: { resizer: new PtyResizer(async () => path, recorded(req)), master }, tty: path }
}

/** What records a window change applied to the session's pty, if the session is recorded. */
function recorded(req: SessionRequest): ((rows: number, cols: number) => void) | undefined {
  const recording = req.recording
  return recording && ((rows, cols) => recording.resize(cols, rows))
}

/**
 * uid/gid to switch to; none when the agent already runs as the login. An agent running as
 * root gives a login its supplementary groups too, and a session with a terminal its audit
 * login UID, through perl when there is one.
 */
function runAs(account: LoginAccount, pty: boolean): Pick<SpawnBase, 'uid' | 'gid' | 'drop'> {
  const uid = process.getuid?.()
  if (uid === account.uid && uid !== 0) return {}
  // Only root can switch; spawn then fails with EPERM and the client is told.
  const ids = { uid: account.uid, gid: account.gid }
  if (uid !== 0) return ids
  const groups = account.groups ?? supplementaryGroups(account.name, account.gid)
  // A session with a terminal starts as root too: its helper gives it the login's audit login UID (pty.ts).
  const perl = groups.length > 0 || pty ? findPerl() : undefined
  return perl ? { ...ids, drop: { ...ids, groups, perl } } : ids
}

/**
 * The sh script `script` runs: name the terminal (script opens it, so only a process on it
 * can), set its size from inside (no process outside the pty can size it before the shell
 * starts), then become the login's shell, running the command or as a login shell.
 */
function ptyCommand(command: string | undefined, shell: string, pty: PseudoTtyInfo): string {
  const size = pty.rows > 0 && pty.cols > 0 ? `stty rows ${pty.rows} cols ${pty.cols} 2>/dev/null\n` : ''
  const run = command === undefined ? `exec ${shellQuote(shell)} -l` : `exec ${shellQuote(shell)} -c ${shellQuote(command)}`
  return `SSH_TTY=$(tty); export SSH_TTY\nSHELL=${shellQuote(shell)}; export SHELL\n${size}${run}`
}

/** Exit status after the last byte of output, then EOF and close, as OpenSSH's sshd does. */
function endChannel(channel: ServerChannel, code: number, signal: NodeJS.Signals | null): void {
  channel.stderr.end(() =>
    channel.write(Buffer.alloc(0), () => {
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
    }),
  )
}

/**
 * Applies window-change requests to a session's pty. A pty is sized with an ioctl, which
 * Node cannot make, so `stty -F /dev/pts/N` makes it; the kernel then sends SIGWINCH to the
 * foreground job. Requests are applied one at a time, only the latest pending one, and at
 * most one each RESIZE_INTERVAL_MS (a size the pty has already is not applied again); each
 * one applied is told to `applied` (the session's recording), so a flood of window changes
 * costs neither a process nor a line each.
 */
export class PtyResizer {
  private readonly findTty: () => Promise<string | undefined>
  private readonly applied?: (rows: number, cols: number) => void
  private pending?: { rows: number; cols: number }
  /** When a change was last tried (the rate), and the size last set (what need not be set again). */
  private lastTriedAt?: number
  private size?: { rows: number; cols: number }
  private running = false
  private stopped = false
  private input?: Readable

  constructor(findTty: () => Promise<string | undefined>, applied?: (rows: number, cols: number) => void) {
    this.findTty = findTty
    this.applied = applied
  }

  /**
   * Holds `input` (the channel's keystrokes) back while a window change waits or is applied.
   * sshd sizes the terminal before it reads on, so a command typed just after a resize sees
   * the new size; here the size is set by a process of its own (stty), which the keystrokes
   * after the change would otherwise overtake.
   */
  holdInputWhileResizing(input: Readable): void {
    this.input = input
  }

  resize(rows: number, cols: number): void {
    if (rows <= 0 || cols <= 0 || this.stopped) return
    this.pending = { rows, cols }
    if (!this.running) void this.drain()
  }

  /** The session's process has ended: nothing more is applied. */
  stop(): void {
    this.stopped = true
    this.pending = undefined
  }

  private async drain(): Promise<void> {
    this.running = true
    this.input?.pause()
    while (this.pending && !this.stopped) {
      const wait = this.lastTriedAt === undefined ? 0 : this.lastTriedAt + RESIZE_INTERVAL_MS - Date.now()
      if (wait > 0) {
        // Changes meanwhile replace the pending one.
        await new Promise((resolve) => setTimeout(resolve, wait))
        continue
      }
      const size = this.pending
      this.pending = undefined
      if (this.size?.rows === size.rows && this.size.cols === size.cols) continue
      this.lastTriedAt = Date.now()
      const tty = await this.findTty()
      // Only a size set counts as set (recorded, and not set again): one whose stty failed, or
      // whose pty was not found yet, is set by the next change of that size.
      if (!tty || this.stopped || !(await run('stty', ['-F', tty, 'rows', String(size.rows), 'cols', String(size.cols)]))) continue
      this.size = size
      this.applied?.(size.rows, size.cols)
    }
    this.running = false
    this.input?.resume()
  }
}

/** The pty of a `script` process, which may not have opened it yet just after spawning: look a few times. */
async function findTty(child: ChildProcess): Promise<string | undefined> {
  for (let attempt = 0; attempt < 20 && child.exitCode === null && child.signalCode === null; attempt++) {
    const tty = child.pid === undefined ? undefined : ptyOf(child.pid)
    if (tty) return tty
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return undefined
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
      const slave = slaveOfMaster(pid, fd)
      if (slave) return slave
    } catch {
      // The fd closed while we looked.
    }
  }
  return undefined
}

/** Runs a helper to its end, true when it succeeded; one that hangs is killed, so the input it holds back moves on. */
function run(command: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'ignore' })
    const timer = setTimeout(() => child.kill('SIGKILL'), HELPER_TIMEOUT_MS)
    const done = (code: number | null) => {
      clearTimeout(timer)
      resolve(code === 0)
    }
    child.once('error', () => done(null))
    child.once('close', done)
  })
}
