// The diagnostics endpoint's HTTP, on node:net: each connection brings one GET or HEAD and
// gets one answer, then is closed (`connection: close`), which is all a Prometheus scrape or
// a load balancer's probe asks. node:http, with its parser and its modules, would cost an
// agent with diag_addr about 2.5 MB resident (bench:footprint), for an endpoint that reads
// nothing of a request but its first line. The head is bounded in size and in time, so a
// client that never finishes holds a connection for HEAD_TIMEOUT_MS at most. A request that
// came in on loopback must name a loopback host: a web page whose name was made to resolve to
// 127.0.0.1 (DNS rebinding) would otherwise read the endpoint from a browser on this machine.

import { createServer, type Server, type Socket } from 'node:net'
import { listenOnTcp } from './listen-without-cluster.ts'

export interface DiagRequest {
  method: string
  /** The request target without its query. */
  path: string
}

export interface DiagAnswer {
  status: number
  type: string
  body: string
}

/** A request line, its headers and the blank line: far more than any scraper or probe sends. */
const MAX_HEAD_BYTES = 16 * 1024

/** How long a client may take to send its request's head: a scraper sends it at once. */
const HEAD_TIMEOUT_MS = 10_000

const REASONS: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  421: 'Misdirected Request',
  405: 'Method Not Allowed',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

const REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r?$/

/** A Host header's value naming this machine's loopback, with or without a port. */
const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?$/i

/** Whether a request that came in on `localAddress` may carry the Host header in `head`. */
function hostAllowed(localAddress: string | undefined, head: string): boolean {
  const onLoopback = localAddress !== undefined && (localAddress.startsWith('127.') || localAddress === '::1' || localAddress.startsWith('::ffff:127.'))
  if (!onLoopback) return true
  const host = /\r?\nhost:[ \t]*([^\r\n]*?)[ \t]*\r?\n/i.exec(head)
  return host === null || LOOPBACK_HOST.test(host[1])
}

export class DiagHttpServer {
  private readonly server: Server
  private readonly connections = new Set<Socket>()

  private readonly headTimeoutMs: number

  constructor(answer: (request: DiagRequest) => Promise<DiagAnswer>, options: { headTimeoutMs?: number } = {}) {
    this.headTimeoutMs = options.headTimeoutMs ?? HEAD_TIMEOUT_MS
    this.server = createServer((socket) => this.serve(socket, answer))
  }

  /** Listens on `host`:`port` (0: a free one); resolves with the port bound. */
  listen(host: string, port: number): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.once('listening', () => {
        this.server.off('error', reject)
        const bound = this.server.address()
        if (bound === null || typeof bound === 'string') return reject(new Error('not bound to a TCP port'))
        resolve({ address: bound.address, port: bound.port })
      })
      listenOnTcp(this.server, host, port)
    })
  }

  close(): Promise<void> {
    for (const socket of this.connections) socket.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private serve(socket: Socket, answer: (request: DiagRequest) => Promise<DiagAnswer>): void {
    this.connections.add(socket)
    socket.on('close', () => this.connections.delete(socket))
    socket.on('error', () => {})
    socket.setTimeout(this.headTimeoutMs, () => socket.destroy())
    let head = ''
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1')
      const end = head.search(/\r?\n\r?\n/)
      if (end < 0 && head.length <= MAX_HEAD_BYTES) return
      socket.off('data', onData)
      socket.setTimeout(0)
      if (end < 0) return respond(socket, 'GET', { status: 431, type: 'application/json', body: JSON.stringify({ error: 'request head too large' }) })
      const line = REQUEST_LINE.exec(head.slice(0, head.indexOf('\n')))
      if (!line) return respond(socket, 'GET', { status: 400, type: 'application/json', body: JSON.stringify({ error: 'not an HTTP/1 request' }) })
      const [, method, target] = line
      if (!hostAllowed(socket.localAddress, head.slice(0, end + 2))) {
        return respond(socket, method, { status: 421, type: 'application/json', body: JSON.stringify({ error: 'a request on loopback must name a loopback host' }) })
      }
      answer({ method, path: target.split('?')[0] }).then(
        (reply) => respond(socket, method, reply),
        (error: Error) => respond(socket, method, { status: 500, type: 'application/json', body: JSON.stringify({ error: error.message }) }),
      )
    }
    socket.on('data', onData)
  }
}

function respond(socket: Socket, method: string, { status, type, body }: DiagAnswer): void {
  if (socket.destroyed) return
  const bytes = Buffer.from(body)
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\ncontent-type: ${type}\r\ncontent-length: ${bytes.length}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n`
  socket.end(method === 'HEAD' ? head : Buffer.concat([Buffer.from(head, 'latin1'), bytes]))
}
