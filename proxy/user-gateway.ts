// Users reach nodes through the proxy: a TLS connection with ALPN `warren-ssh` and a user
// certificate from the user CA, then one JSON line naming the node and service. The proxy
// checks the user before it opens any stream to the node, then splices the bytes.

import type { TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import { certSubject, issuedByAny, validNow } from '../shared/cert-subject.ts'
import type { Logger } from '../shared/log.ts'
import { readFirstMessage, writeMessage, type DialRequest } from '../shared/tunnel-protocol.ts'
import { splice } from '../shared/splice.ts'
import type { TunnelServer } from './tunnel-server.ts'

export interface UserGatewayOptions {
  tunnels: TunnelServer
  clusterName: string
  userCAPems: () => string[]
  log: Logger
}

export async function handleUserConnection(socket: TLSSocket, remoteAddress: string, options: UserGatewayOptions): Promise<void> {
  const { log } = options
  socket.on('error', () => {})
  const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined
  const current = cert !== undefined && validNow(cert)
  const subject = cert && current && issuedByAny(cert, options.userCAPems()) ? certSubject(cert) : undefined
  if (!subject || subject.cluster !== options.clusterName || !subject.roles.includes('user')) {
    const reason = socket.authorizationError ?? (cert && !current ? 'the certificate has expired or is not yet valid' : 'no valid user certificate')
    log.warn(`user connection from ${remoteAddress} refused: ${reason}`)
    writeMessage(socket, { ok: false, error: 'a valid user certificate of this cluster is required' })
    socket.end()
    return
  }
  let node: string
  let request: DialRequest
  try {
    const message = await readFirstMessage(socket)
    if (typeof message.node !== 'string' || (message.service !== 'ssh' && message.service !== 'port')) throw new Error('the request must name "node" and "service"')
    node = message.node
    request = { service: message.service, name: typeof message.name === 'string' ? message.name : undefined, client: `${subject.commonName}@${remoteAddress}` }
  } catch (error) {
    writeMessage(socket, { ok: false, error: (error as Error).message })
    socket.end()
    return
  }
  let stream: Duplex
  try {
    stream = await options.tunnels.dial(node, request)
  } catch (error) {
    log.info(`user ${subject.commonName} cannot reach ${node}: ${(error as Error).message}`)
    writeMessage(socket, { ok: false, error: (error as Error).message })
    socket.end()
    return
  }
  log.info(`user ${subject.commonName} connected to ${node} (${request.service})`, { from: remoteAddress })
  writeMessage(socket, { ok: true })
  splice(socket, stream)
}
