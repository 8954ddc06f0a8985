// Remote forwarding (`ssh -R`) on the node: a tcpip-forward request makes the node listen on
// its loopback, and each connection there opens a forwarded-tcpip channel back to the
// client. Allowed when the certificate has permit-port-forwarding, the user's roles grant
// it (port_forwarding: true) and the node's ssh_service.port_forwarding is not off.

import { createServer, type Server, type Socket } from 'node:net'
import type { Connection, TcpipBindInfo } from 'ssh2'
import type { Logger } from '../shared/log.ts'
import { joinSocketToChannel } from './ssh-forwarding.ts'

/** Where the node listens for `ssh -R`, whatever address the client names: like sshd's GatewayPorts no. */
export const REMOTE_FORWARD_HOST = '127.0.0.1'
/** Listeners one connection may hold; each is a port on the node. */
const MAX_LISTENERS = 16
/** Ports below this need root on the node; a login that is not root may not take one through the agent. */
const FIRST_UNPRIVILEGED_PORT = 1024

/** The logged-in connection the requests come on. */
export interface RemoteForwardContext {
  client: Connection
  login: string
  uid: number
  remote: string
  /** Why this connection may not forward remotely (certificate, roles or the node's policy, read at each request), undefined to allow. */
  refusal: () => string | undefined
  /** The connection's sockets: each forwarded connection adds its own, and they end with the connection. */
  sockets: Set<Socket>
  /** Sockets the connection may hold at once: a connection beyond is closed. */
  maxSockets: number
  /** A listener opened for the client: for the audit trail. */
  opened: (host: string, port: number) => void
  log: Logger
}

/** The listeners of one connection, by the address and port the client asked for. */
export class RemoteForwards {
  private readonly context: RemoteForwardContext
  private readonly listeners = new Map<string, Server>()

  constructor(context: RemoteForwardContext) {
    this.context = context
  }

  /** Answers a global request: tcpip-forward or cancel-tcpip-forward; any other is refused. */
  request(name: string, info: TcpipBindInfo | undefined, accept?: (port?: number) => void, reject?: () => void) {
    const { log } = this.context
    const fields = { request: name, login: this.context.login, remote: this.context.remote, ...(info && { bind: `${info.bindAddr}:${info.bindPort}` }) }
    const refuse = (reason: string) => {
      log.info(`SSH remote forwarding refused: ${reason}`, fields)
      reject?.()
    }
    if (name === 'cancel-tcpip-forward' && info) {
      const server = this.listeners.get(key(info))
      if (!server) return refuse('no such forward')
      this.listeners.delete(key(info))
      server.close()
      return accept?.()
    }
    if (name !== 'tcpip-forward' || !info) return refuse('not supported')
    const refusal = this.context.refusal()
    if (refusal) return refuse(refusal)
    if (info.bindPort !== 0 && info.bindPort < FIRST_UNPRIVILEGED_PORT && this.context.uid !== 0) return refuse(`port ${info.bindPort} is privileged and the login is not root`)
    if (this.listeners.has(key(info))) return refuse('already forwarded')
    if (this.listeners.size >= MAX_LISTENERS) return refuse(`at most ${MAX_LISTENERS} remote forwards per connection`)
    const server = createServer((socket) => this.forward(info, server, socket))
    server.once('error', (error) => {
      log.info('SSH remote forward cannot listen', { ...fields, error })
      this.listeners.delete(key(info))
      reject?.()
    })
    this.listeners.set(key(info), server)
    server.listen(info.bindPort, REMOTE_FORWARD_HOST, () => {
      const port = (server.address() as { port: number }).port
      log.info('SSH remote forward listening', { ...fields, listen: `${REMOTE_FORWARD_HOST}:${port}` })
      this.context.opened(REMOTE_FORWARD_HOST, port)
      accept?.(port)
    })
  }

  /** Stops listening, when the connection ends. */
  close(): void {
    for (const server of this.listeners.values()) server.close()
    this.listeners.clear()
  }

  /** A connection to a listener: a forwarded-tcpip channel back to the client, joined to it. */
  private forward(info: TcpipBindInfo, server: Server, socket: Socket): void {
    const { client, sockets } = this.context
    if (sockets.size >= this.context.maxSockets) {
      socket.destroy()
      return
    }
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    const boundPort = (server.address() as { port: number }).port
    // The client finds its forward by the address and port it asked for (the port given when it asked for 0).
    client.forwardOut(info.bindAddr, boundPort, socket.remoteAddress ?? REMOTE_FORWARD_HOST, socket.remotePort ?? 0, (error, channel) => {
      if (error) {
        socket.destroy()
        return
      }
      joinSocketToChannel(socket, channel)
    })
  }
}

function key(info: TcpipBindInfo): string {
  return `${info.bindAddr}:${info.bindPort}`
}
