// The web console on the proxy's web port: its API under /web/api/ (api.ts), its terminal
// WebSocket (terminal.ts, with ws and ssh2 loaded at the first terminal), and its pages and
// assets for every other GET under /web (assets.ts). Every answer under /web carries the
// security headers.

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ApiClient } from '../../shared/api-client.ts'
import type { Logger } from '../../shared/log.ts'
import type { UserCertificate } from '../../shared/revocation-list.ts'
import type { NodeDialer } from '../node-dialer.ts'
import { WEB_API_PREFIX, WebConsoleApi } from './api.ts'
import { serveWebConsoleAsset } from './assets.ts'
import { securityHeaders } from './security-headers.ts'
import type { WebTerminals } from './terminal.ts'

export interface WebConsoleOptions {
  auth: () => ApiClient
  nodes: Pick<NodeDialer, 'dial' | 'labelsOfHosts'>
  clientAddress: (req: IncomingMessage) => string
  /** Why a user, or a terminal's certificate, is refused although its session was valid (a lock, a removal; after `users reset`, certificates from before it), or undefined. */
  refusedUser: (user: string | UserCertificate) => string | undefined
  log: Logger
}

const TERMINAL_PATH = `${WEB_API_PREFIX}terminal`

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0]
}

export class WebConsole {
  private readonly options: WebConsoleOptions
  private readonly api: WebConsoleApi
  private terminals?: Promise<WebTerminals>

  constructor(options: WebConsoleOptions) {
    this.options = options
    // A logout closes the session's terminals here at once (other proxies' within SESSION_RECHECK_MS).
    this.api = new WebConsoleApi({ ...options, loggedOut: (token) => void this.terminals?.then((terminals) => terminals.sessionEnded(token)) })
  }

  /** Answers a request under /web; false when `req` is not one. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = pathOf(req)
    if (path.startsWith(WEB_API_PREFIX)) {
      void this.api.handle(req, res)
      return true
    }
    if (!(path === '/web' || path.startsWith('/web/'))) return false
    if (req.method === 'GET' || req.method === 'HEAD') {
      for (const [name, value] of Object.entries(securityHeaders())) res.setHeader(name, value)
      return serveWebConsoleAsset(req, res)
    }
    const text = JSON.stringify({ error: `method ${req.method} not allowed on ${path}` })
    res.writeHead(405, { ...securityHeaders(), 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
    return true
  }

  /** After a lock or a removal: the terminals of users now refused are closed. */
  dropLocked(): void {
    void this.terminals?.then((terminals) => terminals.dropLocked(this.options.refusedUser))
  }

  /** After the labels of these hosts changed: the terminals the users' roles no longer allow there are closed. */
  dropRelabelled(hostIds: string[]): void {
    void this.terminals?.then((terminals) => terminals.dropRelabelled(hostIds))
  }

  /** The hosts that open terminals were admitted to (none before the first terminal). */
  async admittedHosts(): Promise<string[]> {
    return (await this.terminals)?.admittedHosts() ?? []
  }

  /** An HTTP upgrade: the terminal's WebSocket, or refused. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (pathOf(req) !== TERMINAL_PATH) {
      socket.on('error', () => {})
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n')
      return
    }
    this.terminals ??= import('./terminal.ts').then(({ WebTerminals }) => new WebTerminals({ ...this.options, api: this.api }))
    void this.terminals.then((terminals) => terminals.upgrade(req, socket, head))
  }
}
