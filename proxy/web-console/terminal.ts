// The web terminal: a WebSocket at /web/api/terminal?node=&login=&cols=&rows=&csrf= that
// carries a shell on a node. Before the upgrade: the Origin must be the console's own, the
// cookie a valid session, and `csrf` the session's CSRF token. Then the node must be one the
// user's roles allow (the auth server's list for the session) and the login one they allow;
// the proxy makes a key for this terminal, gets the session's SSH certificate for it, and
// opens the shell (ssh-shell.ts), an SSH connection that counts against the roles'
// max_connections as any other (connection-limits.ts). Binary frames carry the terminal's
// bytes both ways; the browser sends {"type":"resize"} text frames; the proxy ends with
// {"type":"exit"} (the shell's status, or the signal that killed it) or {"type":"error"}
// (why the proxy closed it, or the connection to the node cut). Each side waits for the
// other to take what it sent (backpressure), and closing either side closes the other. A
// terminal lasts no longer than its web session: it is closed at the session's expiry, at
// once on a logout through this proxy, and within SESSION_RECHECK_MS when the auth server no
// longer knows the session (a logout at another proxy, a role's max_session_ttl shortened).
// Its node is judged by the roles its certificate carries too, when it opens and again
// whenever the node's labels change, and by the roles as they are now within
// SESSION_RECHECK_MS of a change to them: a terminal the roles no longer allow there, or no
// longer as its login, is closed.

import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { type RawData, WebSocket, WebSocketServer } from 'ws'
import { type Access, loginRefusal, nodeRefusal } from '../../shared/access.ts'
import { accessOfSshCertificate, generationOfSshCertificate } from '../../shared/access-cert.ts'
import { ApiError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { ReachableNodes } from '../../shared/protocol/fleet.ts'
import type { KnownHosts } from '../../shared/protocol/logins.ts'
import type { WebSessionInfo, WebSshCert } from '../../shared/protocol/web-sessions.ts'
import type { UserCertificate } from '../../shared/revocation-list.ts'
import { parseSshCertificate, sshPublicKeyLine } from '../../shared/ssh-cert.ts'
import { AccessDenied, type NodeDialer } from '../node-dialer.ts'
import type { WebConsoleApi } from './api.ts'
import { checkCsrf, checkOrigin } from './guards.ts'
import { openShell, type Shell, terminalKey } from './ssh-shell.ts'

/** A frame from the browser: keystrokes and pastes are small; a paste of this size is plenty. */
const MAX_FRAME = 64 * 1024
/** Output waiting for the browser beyond this pauses the shell; below LOW it resumes. */
const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024
const LOGIN = /^[a-z_][a-z0-9_.-]{0,31}$/
const MAX_SIZE = 1000
/** How often the auth server is asked whether each open terminal's session still stands. */
const SESSION_RECHECK_MS = 30_000

export interface WebTerminalOptions {
  api: WebConsoleApi
  nodes: Pick<NodeDialer, 'dial' | 'labelsOfHosts'>
  clientAddress: (req: IncomingMessage) => string
  log: Logger
}

/** An open terminal: its user and session, what ends its shell, and when its certificate's validity starts once it has one. */
interface OpenTerminal {
  user: string
  /** The login its shell runs as. */
  login: string
  /** The session's token, and the headers that present it to the auth server. */
  token: string
  headers: Record<string, string>
  end: () => void
  /** Closes the terminal when the session expires. */
  expiry: NodeJS.Timeout
  validFrom?: number
  /** The user generation its certificate carries (a reset or removal ends it). */
  generation?: string
  /** Once its node was admitted: which host, and the access it was judged by (dropRelabelled). */
  admitted?: { node: string; hostId: string; access: Access }
}

interface TerminalRequest {
  node: string
  login: string
  cols: number
  rows: number
}

export class WebTerminals {
  private readonly options: WebTerminalOptions
  private readonly server = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME, perMessageDeflate: false })
  /** Every open terminal. */
  private readonly open = new Map<WebSocket, OpenTerminal>()
  /** Asks the auth server after the open terminals' sessions while there are any. */
  private recheckTimer?: NodeJS.Timeout

  constructor(options: WebTerminalOptions) {
    this.options = options
  }

  /** Closes the terminals `refused` names a reason for (their user locked or removed, their certificate from before a reset). */
  dropLocked(refused: (user: string | UserCertificate) => string | undefined): void {
    for (const [ws, terminal] of this.open) {
      const { user, validFrom, generation } = terminal
      const reason = refused(validFrom === undefined ? user : { name: user, validFrom, ...(generation === undefined ? {} : { generation }) })
      if (!reason) continue
      this.options.log.warn(`web terminal of user ${user} closed: ${reason}`, { user, locked: true })
      this.close(ws, terminal, reason)
    }
  }

  /** After the labels of these hosts changed: the terminals to them that their roles no longer allow are closed. */
  async dropRelabelled(hostIds: Iterable<string>): Promise<void> {
    const hosts = new Set(hostIds)
    const affected = [...this.open].flatMap(([ws, terminal]) => (terminal.admitted && hosts.has(terminal.admitted.hostId) ? [{ ws, terminal, admitted: terminal.admitted }] : []))
    const labels = await this.options.nodes.labelsOfHosts(affected.map(({ admitted }) => admitted.hostId))
    for (const { ws, terminal, admitted } of affected) {
      const now = labels.get(admitted.hostId)
      const reason = now && nodeRefusal(admitted.access, now)
      if (!reason || !this.open.has(ws)) continue
      this.denied(ws, terminal, admitted.node, reason)
    }
  }

  /** The hosts that open terminals were admitted to. */
  admittedHosts(): string[] {
    return [...new Set([...this.open.values()].flatMap(({ admitted }) => (admitted ? [admitted.hostId] : [])))]
  }

  /** The session of `token` has ended (its user logged out): its terminals are closed. */
  sessionEnded(token: string): void {
    for (const [ws, terminal] of this.open) {
      if (terminal.token === token) this.sessionGone(ws, terminal, 'the web session ended: logged out')
    }
  }

  private sessionGone(ws: WebSocket, terminal: OpenTerminal, reason: string): void {
    this.options.log.info(`web terminal of user ${terminal.user} closed: ${reason}`, { user: terminal.user })
    this.close(ws, terminal, reason)
  }

  /** Tells the browser why, then closes the socket and the shell. */
  private close(ws: WebSocket, terminal: OpenTerminal, reason: string): void {
    if (!this.open.delete(ws)) return
    clearTimeout(terminal.expiry)
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'error', message: reason }))
    ws.close(1008)
    terminal.end()
  }

  /** Asks the auth server whether each open terminal's session still stands; closes those it no longer knows. */
  private async recheck(): Promise<void> {
    if (this.open.size === 0) {
      clearInterval(this.recheckTimer)
      this.recheckTimer = undefined
      return
    }
    await Promise.all(
      [...this.open].map(async ([ws, terminal]) => {
        let now: WebSessionInfo
        try {
          now = await this.options.api.callAuth<WebSessionInfo>('GET /v1/web-sessions/current', undefined, terminal.headers)
        } catch (error) {
          // Only the auth server's word that the session is gone ends it, not an auth server out of reach.
          if (error instanceof ApiError && error.status === 401) this.sessionGone(ws, terminal, error.message)
          return
        }
        if (now.access) await this.judgeAgain(ws, terminal, now.access)
      }),
    )
  }

  /**
   * Judges an open terminal by the roles as they are now: one changed since it opened (a node
   * or login taken out of a role, a role taken from the user) closes it, as a new terminal
   * would be refused. What it keeps is judged by them from here on (dropRelabelled).
   */
  private async judgeAgain(ws: WebSocket, terminal: OpenTerminal, access: Access): Promise<void> {
    const admitted = terminal.admitted
    if (!admitted) return
    const labels = (await this.options.nodes.labelsOfHosts([admitted.hostId])).get(admitted.hostId)
    if (!labels || !this.open.has(ws)) return
    const reason = nodeRefusal(access, labels) ?? loginRefusal(access, terminal.login, labels)
    if (!reason) {
      admitted.access = access
      return
    }
    this.denied(ws, terminal, admitted.node, reason)
  }

  /** Closes a terminal the user's roles no longer allow, saying why. */
  private denied(ws: WebSocket, terminal: OpenTerminal, node: string, reason: string): void {
    this.options.log.warn(`web terminal of user ${terminal.user} to ${node} closed: ${reason}`, { user: terminal.user, node, access_denied: true, reason })
    this.close(ws, terminal, reason)
  }

  /** Judges an upgrade request and, when it passes, opens the terminal. */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {})
    let token: string
    let session: WebSessionInfo
    let request: TerminalRequest
    try {
      const url = new URL(req.url ?? '/', 'https://proxy')
      // A browser always sends Origin with a WebSocket: without it, this is no console page.
      checkOrigin(req, true)
      ;({ token, session } = await this.options.api.session(req))
      checkCsrf(url.searchParams.get('csrf'), session.csrf_token)
      request = terminalRequest(url.searchParams)
    } catch (error) {
      const status = (error as { status?: number }).status ?? 500
      const message = (error as Error).message
      socket.end(`HTTP/1.1 ${status} Refused\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: message })}`)
      return
    }
    this.server.handleUpgrade(req, socket, head, (ws) => void this.run(ws, req, token, session, request))
  }

  private async run(ws: WebSocket, req: IncomingMessage, token: string, session: WebSessionInfo, request: TerminalRequest): Promise<void> {
    const { api, log } = this.options
    const client = `${session.user}@${this.options.clientAddress(req)}`
    let stream: Duplex | undefined
    let shell: Shell | undefined
    // A frame the protocol refuses (over MAX_FRAME, bad UTF-8, unmasked) is an error on the
    // socket, which ws then closes: heard here, it ends this terminal, never the proxy.
    ws.on('error', (error) => {
      log.info('web terminal closed: the browser broke the WebSocket protocol', { client, error: error.message })
    })
    // What the browser types before the shell is open waits in the socket, not lost.
    ws.pause()
    const end = () => {
      shell?.end()
      stream?.destroy()
    }
    const headers = api.sessionHeaders(req, token)
    const terminal: OpenTerminal = {
      user: session.user,
      login: request.login,
      token,
      headers,
      end,
      // A timer holds at most 2^31 - 1 ms (24.8 days), far more than any session lasts.
      expiry: setTimeout(() => this.sessionGone(ws, terminal, 'the web session has expired'), Math.min(Math.max(0, session.expires - Date.now()), 2 ** 31 - 1)).unref(),
    }
    this.open.set(ws, terminal)
    this.recheckTimer ??= setInterval(() => void this.recheck(), SESSION_RECHECK_MS).unref()
    ws.once('close', () => {
      this.open.delete(ws)
      clearTimeout(terminal.expiry)
      end()
    })
    try {
      if (!session.logins.includes(request.login)) throw new Error(`the roles of user "${session.user}" do not allow login "${request.login}"`)
      // The auth server's word on which nodes the roles allow, as `warren ls` has it.
      const { nodes } = await api.callAuth<ReachableNodes>('GET /v1/user/nodes', undefined, headers)
      const node = nodes.find((n) => n.nodename === request.node || n.host_id === request.node)
      if (!node) throw new Error(`node "${request.node}" is not online, or the roles of user "${session.user}" do not allow it`)
      const key = terminalKey()
      const cert = await api.callAuth<WebSshCert>('POST /v1/web-sessions/current/ssh-cert', { ssh_public_key: sshPublicKeyLine(key.publicKey) }, headers)
      const sshCert = parseSshCertificate(cert.ssh_cert)
      terminal.validFrom = sshCert.validAfter.getTime()
      terminal.generation = generationOfSshCertificate(sshCert)
      // The roles' max_connections, which the certificate carries: a terminal is an SSH connection too.
      const access = accessOfSshCertificate(sshCert)
      const { known_hosts } = await api.callAuth<KnownHosts>('POST /v1/proxies/known-hosts', { user: session.user }, {})
      const hostKey = registeredHostKey(known_hosts, node.host_id)
      if (ws.readyState !== WebSocket.OPEN) return
      // Judged by the certificate's roles as a user connection is, and again when the node's labels change.
      const admit = (labels: Record<string, string>, hostId: string) => {
        const refusal = nodeRefusal(access, labels)
        if (refusal === undefined) terminal.admitted = { node: node.nodename, hostId, access }
        return refusal
      }
      stream = await this.options.nodes.dial(node.host_id, { service: 'ssh', client, user: session.user }, admit, { user: session.user, access, vouch: headers, client: ws })
      if (ws.readyState !== WebSocket.OPEN) return void stream.destroy()
      shell = await openShell({ stream, login: request.login, privateKey: key.privateKey, certificate: cert.ssh_cert, hostKey, cols: request.cols, rows: request.rows })
      if (ws.readyState !== WebSocket.OPEN) return shell.end()
      log.info(`user ${session.user} opened a web terminal to ${node.nodename} as ${request.login}`, {
        user: session.user,
        node: node.nodename,
        login: request.login,
        from: client,
      })
      bridge(ws, shell, node.nodename)
    } catch (error) {
      const denied = error instanceof AccessDenied ? { access_denied: true, reason: error.reason } : {}
      log.info(`user ${session.user} cannot open a web terminal to ${request.node}: ${(error as Error).message}`, { user: session.user, node: request.node, ...denied })
      stream?.destroy()
      ws.resume()
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: 'error', message: (error as Error).message }))
        ws.close(1011)
      }
    }
  }
}

/** The terminal's node, login and size from its URL; throws a 400 naming the parameter. */
function terminalRequest(query: URLSearchParams): TerminalRequest {
  const bad = (message: string) => Object.assign(new Error(message), { status: 400 })
  const node = query.get('node') ?? ''
  const login = query.get('login') ?? ''
  if (node === '' || node.length > 253) throw bad('parameter "node" must name a node')
  if (!LOGIN.test(login)) throw bad('parameter "login" must be a login name')
  const size = (name: string, fallback: number) => {
    const value = Number(query.get(name) ?? fallback)
    if (!Number.isInteger(value) || value < 1 || value > MAX_SIZE) throw bad(`parameter "${name}" must be a whole number from 1 to ${MAX_SIZE}`)
    return value
  }
  return { node, login, cols: size('cols', 80), rows: size('rows', 24) }
}

/** The host key blob the cluster registered for the node (known_hosts lines name it by host ID too). */
function registeredHostKey(lines: string[], hostId: string): Buffer {
  for (const line of lines) {
    const [names, , blob] = line.split(' ')
    if (names.split(',').includes(hostId) && blob) return Buffer.from(blob, 'base64')
  }
  throw new Error(`node ${hostId} has no registered SSH host key`)
}

/**
 * Carries bytes both ways until either side closes. The browser is told how the shell ended:
 * its exit status, or the signal that killed it, as the node reports them before it closes
 * the channel. A channel closed without that report is a connection to the node cut (the
 * node or its tunnel gone): an error that says so, not an exit with no status.
 */
function bridge(ws: WebSocket, shell: Shell, node: string): void {
  const { channel } = shell
  let ended: { status: number | null; signal?: string } | undefined
  // ssh2 gives an exit status, or null and the signal's name (SIGKILL).
  channel.on('exit', (code: number | null, signal?: string) => {
    ended = { status: code ?? null, ...(signal ? { signal } : {}) }
  })
  const toBrowser = (data: Buffer) => {
    ws.send(data, { binary: true }, () => {
      if (channel.isPaused() && ws.bufferedAmount < LOW_WATER) channel.resume()
    })
    if (ws.bufferedAmount > HIGH_WATER) channel.pause()
  }
  channel.on('data', toBrowser)
  channel.stderr.on('data', toBrowser)
  channel.on('drain', () => ws.resume())
  channel.once('close', () => {
    if (ws.readyState === WebSocket.OPEN) {
      if (ended) {
        ws.send(JSON.stringify({ type: 'exit', ...ended }))
        ws.close(1000)
      } else {
        ws.send(JSON.stringify({ type: 'error', message: `the connection to node "${node}" was cut before the shell ended` }))
        ws.close(1011)
      }
    }
    shell.end()
  })
  ws.resume()
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    if (isBinary) {
      if (!channel.write(bytes)) ws.pause()
      return
    }
    try {
      const message = JSON.parse(bytes.toString('utf8')) as { type?: unknown; cols?: unknown; rows?: unknown }
      const { cols, rows } = message
      if (message.type === 'resize' && isSize(cols) && isSize(rows)) channel.setWindow(rows, cols, 0, 0)
    } catch {
      // Not JSON: nothing a console sends; ignored.
    }
  })
}

function isSize(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_SIZE
}
