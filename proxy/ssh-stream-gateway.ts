// The proxy's side of the plain SSH stream (shared/protocol/ssh-stream.ts): a challenge made
// for this connection alone, the user's certificate judged as a TLS user connection's would
// be, the signature of the challenge checked against the certificate's key, and only then
// the user gateway's checks (locks, roles) and the stream to the node. Each step runs in a
// handshake slot of the listener's gate, as a TLS handshake would (a signature check costs
// CPU too), under one deadline from the first byte to the dial.

import { randomBytes, X509Certificate } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Logger } from '../shared/log.ts'
import type { DialReply, UserDial } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { CHALLENGE_BYTES, parseSshStreamRequest, SSH_STREAM_MAGIC, type SshStreamChallenge, sshStreamSignatureValid } from '../shared/protocol/ssh-stream.ts'
import type { TlsGate } from '../shared/tls-gate/gate.ts'
import type { RoutedConnection } from './listener/multiplexer.ts'
import type { UserGateway } from './user-gateway.ts'

export interface SshStreamGatewayOptions {
  users: Pick<UserGateway, 'judge' | 'serve'>
  gate: TlsGate
  log: Logger
}

/** A handler for the multiplexer's 'ssh-stream' connections. */
export function sshStreamGateway(options: SshStreamGatewayOptions): (conn: RoutedConnection) => void {
  const { gate, log } = options
  return (conn) => {
    conn.socket.setNoDelay(true)
    gate.slots.request({
      socket: conn.socket,
      group: conn.group,
      resuming: false,
      start: (release) => {
        // The same bound as a TLS handshake: a client that stalls gives its slot back.
        const timer = setTimeout(() => conn.socket.destroy(), gate.config.handshakeTimeoutMs)
        const done = () => {
          clearTimeout(timer)
          release()
        }
        conn.socket.once('close', done)
        authenticate(conn, options).then(
          (verified) => {
            conn.socket.off('close', done)
            done()
            if (verified) void options.users.serve(conn.socket, verified.cert, verified.user, conn.clientAddress, verified.dial, true)
          },
          (error: Error) => {
            log.debug('plain SSH stream refused', { remote: conn.clientAddress, error })
            refuse(conn.socket, error.message)
          },
        )
      },
    })
  }
}

interface Verified {
  cert: X509Certificate
  user: string
  dial: UserDial
}

/** The magic, the challenge, and a request whose certificate and signature hold; undefined when refused (answered). */
async function authenticate(conn: RoutedConnection, options: SshStreamGatewayOptions): Promise<Verified | undefined> {
  const socket = conn.socket
  const magic = await readExactly(socket, SSH_STREAM_MAGIC.length)
  if (magic.toString('latin1') !== SSH_STREAM_MAGIC) throw new Error('not a plain SSH stream of this version')
  const challenge = randomBytes(CHALLENGE_BYTES)
  writeMessage<SshStreamChallenge>(socket, { challenge: challenge.toString('base64') })
  const request = await readFirstMessage(socket, parseSshStreamRequest)
  let cert: X509Certificate
  try {
    cert = new X509Certificate(Buffer.from(request.certificate, 'base64'))
  } catch {
    throw new Error('the certificate cannot be read')
  }
  const judged = options.users.judge(cert)
  if ('refused' in judged) {
    options.log.warn(`user connection from ${conn.clientAddress} refused: ${judged.refused}`)
    throw new Error('a valid user certificate of this cluster is required')
  }
  if (!sshStreamSignatureValid(cert, challenge, request.node, request.signature)) {
    options.log.warn(`user connection from ${conn.clientAddress} refused: the challenge is not signed by the certificate's key`, { user: judged.user })
    throw new Error("the challenge is not signed by the certificate's key")
  }
  return { cert, user: judged.user, dial: { node: request.node, service: 'ssh', name: undefined, certificate: undefined } }
}

/** The next `length` bytes of `socket` (leaving later ones unread). */
function readExactly(socket: Socket, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onReadable = () => {
      const bytes = socket.read(length) as Buffer | null
      if (bytes === null) return
      finish()
      resolve(bytes)
    }
    const onEnd = () => {
      finish()
      reject(new Error('the connection ended before its first line'))
    }
    const finish = () => {
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
    }
    socket.on('readable', onReadable)
    socket.on('end', onEnd)
    onReadable()
  })
}

function refuse(socket: Socket, error: string): void {
  if (socket.destroyed) return
  writeMessage<DialReply>(socket, { ok: false, error })
  socket.end()
}
