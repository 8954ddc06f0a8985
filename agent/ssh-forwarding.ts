// Port forwarding (`ssh -L`) on the node: a direct-tcpip channel becomes a TCP connection
// from the node, when the certificate has permit-port-forwarding, the user's roles do not
// refuse it (port_forwarding: false) and the node's port_forwarding policy
// (forward-policy.ts) lets the destination through. `ssh -R` is ssh-remote-forwarding.ts.

import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ServerChannel, TcpipRequestInfo } from 'ssh2'
import type { Logger } from '../shared/log.ts'
import { forward } from '../shared/splice.ts'

/** The logged-in connection a forward is asked on. */
export interface ForwardContext {
  login: string
  /** The certificate has permit-port-forwarding. */
  permitPortForwarding: boolean
  remote: string
  /** Why host:port may not be reached, undefined to allow. */
  refusal: (host: string, port: number) => string | undefined
  /** The connection's sockets: each forward adds its own, and they end with the connection. */
  sockets: Set<Socket>
  log: Logger
  /** A forward opened to host:port (for the audit trail). */
  opened?: (host: string, port: number) => void
}

/** Opens the destination, then accepts the channel and joins the two; rejects it if either step fails. */
export function forwardPort(context: ForwardContext, info: TcpipRequestInfo, accept: () => ServerChannel, reject: () => void): void {
  const { log } = context
  const fields = { login: context.login, destination: `${info.destIP}:${info.destPort}`, remote: context.remote }
  if (!context.permitPortForwarding) {
    log.info('SSH port forwarding refused: the certificate lacks permit-port-forwarding', fields)
    reject()
    return
  }
  const refusal = context.refusal(info.destIP, info.destPort)
  if (refusal !== undefined) {
    log.info(`SSH port forwarding refused: ${refusal}`, fields)
    reject()
    return
  }
  const socket = connect({ host: info.destIP, port: info.destPort })
  context.sockets.add(socket)
  socket.once('close', () => context.sockets.delete(socket))
  socket.once('error', (err) => {
    log.info('SSH port forward failed', { ...fields, error: err })
    reject()
  })
  socket.once('connect', () => {
    log.debug('SSH port forward opened', fields)
    context.opened?.(info.destIP, info.destPort)
    joinSocketToChannel(socket, accept())
  })
}

/** Bytes both ways between a TCP connection and an SSH channel; either closing ends both. */
export function joinSocketToChannel(socket: Socket, channel: Duplex): void {
  forward(socket, channel)
  forward(channel, socket)
  channel.on('error', () => socket.destroy())
  channel.on('close', () => socket.destroy())
  socket.once('close', () => channel.destroy())
}
