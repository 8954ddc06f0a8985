// SSH sessions on the node: a command (exec), a shell or the sftp subsystem, with a pseudo-terminal when the
// certificate permits one. The pty comes from util-linux `script`, so the agent needs no
// native addon; window changes resize it through `stty`. Each session's processes run in a
// process group of their own, ended with the channel or the connection.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { basename } from 'node:path'
import type { Writable } from 'node:stream'
import type { PseudoTtyInfo, ServerChannel, Session } from 'ssh2'
import type { Logger } from '../shared/log.ts'
import type { LoginAccount } from './login-accounts.ts'
import type { RecordingStart, SessionRecording } from './session-recording.ts'
import { type FileOperation, fileOperationSink } from './sftp/file-operations.ts'
import type { AgentSocket } from './ssh-agent-forwarding.ts'
import { warrenCommand } from './warren-command.ts'

/** How long a session's processes get after SIGHUP before SIGKILL. */
const KILL_GRACE_MS = 2000
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
  /** The connection's processes: each session adds its own, and they end with the connection. */
  processes: Set<SessionProcess>
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
    proc?.resize(info.rows, info.cols)
    recording?.resize(info.cols, info.rows)
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
  const start = (channel: ServerChannel, command: string | undefined, subsystem?: { name: string; stderr: Writable }) => {
    if (subsystem) log.info('SSH subsystem started', { subsystem: subsystem.name, login: account.name, remote })
    else log.info(command === undefined ? 'SSH shell started' : 'SSH command started', { login: account.name, pty: pty !== undefined, remote })
    if (!subsystem && command !== undefined) context.events?.exec(command)
    // A subsystem speaks a binary protocol: never through a pty, which would mangle it.
    const sessionPty = subsystem ? undefined : pty
    // Interactive sessions only: an exec's command and exit status are audit events already.
    if (sessionPty) recording = context.record?.({ cols: sessionPty.cols, rows: sessionPty.rows, env: { TERM: sessionPty.term || undefined, SHELL: account.shell } })
    const started = runSession(channel, { account, command, env, pty: sessionPty, stderr: subsystem?.stderr, onExit: context.events?.exit, recording })
    proc = started
    context.processes.add(started)
    void started.exited.then(() => context.processes.delete(started))
  }
  session.on('exec', (accept, _reject, info) => {
    const channel = accept()
    void ready.then(() => closed || start(channel, info.command))
  })
  session.on('shell', (accept) => {
    const channel = accept()
    void ready.then(() => closed || start(channel, undefined))
  })
  session.on('subsystem', (accept, reject, info) => {
    if (info.name !== 'sftp') {
      log.info('SSH subsystem refused: unknown subsystem', { subsystem: info.name, login: account.name, remote })
      return reject?.()
    }
    // OpenSSH's sftp-server logs each operation on stderr (-e) at INFO; Warren's own always does.
    const program = context.sftpServer()
    const argv = program ? [program, '-e', '-l', 'INFO'] : warrenCommand('sftp-server')
    const report = context.onFileOperation ?? (() => {})
    const stderr = fileOperationSink(account.home, report, (line) => log.debug('SFTP server said', { line, login: account.name, remote }))
    // Run through the login's shell like a command, as sshd runs a subsystem: same user,
    // environment and refusals (a nologin shell refuses it too).
    start(accept(), argv.map(shellQuote).join(' '), { name: info.name, stderr })
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
  /** Told the process's exit status (the session's audit event). */
  onExit?: (status: number) => void
  /** Gets the session's output, and ends with it. */
  recording?: SessionRecording
}

/** A session's process: the command or shell itself, or `script` holding its pty. */
export class SessionProcess {
  readonly exited: Promise<void>
  private readonly child: ChildProcess
  private readonly resizer?: PtyResizer
  private done = false

  constructor(child: ChildProcess, withPty: boolean) {
    this.child = child
    this.resizer = withPty ? new PtyResizer(child) : undefined
    this.exited = new Promise((resolve) =>
      child.once('close', () => {
        this.done = true
        resolve()
      }),
    )
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
  if (req.recording) child.stdout!.on('data', (data: Buffer) => req.recording!.output(data))
  child.stderr!.pipe(req.stderr ?? channel.stderr, { end: false })
  child.once('error', (err) => {
    const hint = req.pty ? ' (a pty needs util-linux script)' : ''
    channel.stderr.write(`warren: cannot start the session: ${err.message}${hint}\r\n`)
  })
  child.once('close', (code, signal) => {
    channel.unpipe(child.stdin!)
    // A process that never started reports a negative errno: exit 127, as a shell would.
    const status = code === null || code < 0 ? 127 : code
    req.onExit?.(signal ? 128 + (osConstants.signals[signal] ?? 0) : status)
    void req.recording?.end()
    endChannel(channel, status, signal)
  })
  return session
}

/** uid/gid to switch to; none when the agent already runs as the login. */
function runAs(account: LoginAccount): { uid?: number; gid?: number } {
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
 * Applies window-change requests to a `script` pty. A pty is sized with an ioctl, which
 * Node cannot make, so `stty -F /dev/pts/N` makes it; the kernel then sends SIGWINCH to the
 * foreground job. Requests are applied one at a time, and only the latest pending one.
 */
class PtyResizer {
  private readonly child: ChildProcess
  private pending?: { rows: number; cols: number }
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
