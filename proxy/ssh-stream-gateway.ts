// The proxy's side of the plain SSH stream (shared/protocol/ssh-stream.ts): a hello signed
// with this proxy's host key, with a challenge made for this connection alone; the sealed
// request opened, its user certificate judged as a TLS user connection's would be, its
// signature of the challenge checked against the certificate's key; only then the user
// gateway's checks (locks, roles) and the stream to the node. The multiplexer routes a
// stream here only once its whole first line is in, as it waits for a TLS ClientHello, so
// a client that stalls before then holds no slot. Each step runs in a handshake slot of
// the listener's gate, as a TLS handshake would (a signature check costs CPU too), under
// one deadline from the slot to the dial.

import type { KeyObject, X509Certificate } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Logger } from '../shared/log.ts'
import type { DialReply, UserDial } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { ProxyHandshake, parseSshStreamSealed, SSH_STREAM_MAGIC, type SshStreamHello } from '../shared/protocol/ssh-stream.ts'
import type { TlsGate } from '../shared/tls-gate/gate.ts'
import type { RoutedConnection } from './listener/multiplexer.ts'
import type { UserGateway } from './user-gateway.ts'

export interface SshStreamGatewayOptions {
  users: Pick<UserGateway, 'judge' | 'serve'>
  /** This proxy's host certificate and key now (renewals replace them). */
  credentials: () => { cert: X509Certificate; key: KeyObject }
  gate: TlsGate
  log: Logger
}

/** A handler for the multiplexer's 'ssh-stream' connections. */
export function sshStreamGateway(options: SshStreamGatewayOptions): (conn: RoutedConnection) => void {
  const { gate, log } = options
  return (conn) => {
    conn.socket.setNoDelay(true)
    // The multiplexer routes a stream once its first line is whole: judged before any slot.
    const line = conn.head.subarray(0, conn.head.indexOf(0x0a) + 1).toString('latin1')
    if (line !== SSH_STREAM_MAGIC) {
      writeMessage<DialReply>(conn.socket, { ok: false, error: 'not a plain SSH stream of this version' })
      // Closed whole once the answer is out, not half-open until the client closes its side.
      conn.socket.destroySoon()
      return
    }
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
        const handshake = new ProxyHandshake()
        const answer = (reply: DialReply) => writeMessage(conn.socket, handshake.reply(reply))
        authenticate(conn, handshake, options).then(
          (verified) => {
            conn.socket.off('close', done)
            done()
            void options.users.serve(conn.socket, verified.cert, verified.user, conn.clientAddress, verified.dial, { answer })
          },
          (error: Error) => {
            conn.socket.off('close', done)
            done()
            log.debug('plain SSH stream refused', { remote: conn.clientAddress, error })
            if (conn.socket.destroyed) return
            answer({ ok: false, error: error.message })
            conn.socket.destroySoon()
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

/** The magic, the hello, and a request whose certificate and signature hold; throws why not. */
async function authenticate(conn: RoutedConnection, handshake: ProxyHandshake, options: SshStreamGatewayOptions): Promise<Verified> {
  const socket = conn.socket
  await readExactly(socket, SSH_STREAM_MAGIC.length) // the line judged before the slot
  const { cert: proxyCert, key: proxyKey } = options.credentials()
  writeMessage<SshStreamHello>(socket, handshake.hello(proxyCert, proxyKey))
  const { request, cert } = handshake.openRequest(await readFirstMessage(socket, parseSshStreamSealed))
  const judged = options.users.judge(cert)
  if ('refused' in judged) {
    options.log.warn(`user connection from ${conn.clientAddress} refused: ${judged.refused}`)
    throw new Error('a valid user certificate of this cluster is required')
  }
  if (!handshake.signedByHolder(request, cert)) {
    options.log.warn(`user connection from ${conn.clientAddress} refused: the challenge is not signed by the certificate's key`, { user: judged.user })
    throw new Error("the challenge is not signed by the certificate's key")
  }
  return { cert, user: judged.user, dial: { node: request.node, service: 'ssh', name: undefined, certificate: undefined, proof: undefined } }
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
