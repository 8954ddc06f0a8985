// `warren proxy ssh --fdpass`: OpenSSH's ProxyUseFdpass. The connection to the proxy is a
// plain SSH stream (shared/protocol/ssh-stream.ts): this process checks the proxy against
// the cluster's host CA and proves the user's key on it, then hands the socket itself to `ssh` and exits, so no process of ours copies the
// session's bytes and the proxy copies them without a TLS layer around SSH's own.
// Node passes a socket to another process only over its IPC channel, which is a Unix
// socket when NODE_CHANNEL_FD names one: OpenSSH gives the ProxyCommand such a socket as
// its standard output, and reads the descriptor that arrives with the first byte.

import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { splitPems } from '../shared/identity-store.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { ClientHandshake, parseSshStreamHello, SSH_STREAM_MAGIC, type SshStreamSealed } from '../shared/protocol/ssh-stream.ts'
import { loadProfile, profilePath } from './profile.ts'

/** The ProxyCommand line for ssh_config and `warren ssh`: the IPC channel on standard output. */
export function fdpassProxyCommand(warren: string, flags: string): string {
  return `env NODE_CHANNEL_FD=1 ${warren} proxy ssh --fdpass ${flags}`
}

/** Fails unless OpenSSH waits for a descriptor on our standard output. */
export function checkFdpassChannel(): void {
  if (!process.send || !process.channel) {
    throw new UsageError('--fdpass hands the connection to OpenSSH: run it as a ProxyCommand with "ProxyUseFdpass yes" and "env NODE_CHANNEL_FD=1" before the command')
  }
}

/** A plain SSH stream to `node` through the proxy at host:port, the proxy checked and the user's key of `dir` proven on it. */
export async function dialSshStream(host: string, port: number, dir: string, node: string): Promise<Socket> {
  const expected = { clusterName: loadProfile(dir).cluster_name, caPems: splitPems(readFileSync(profilePath(dir, 'hostCA'), 'utf8')) }
  const cert = new X509Certificate(readFileSync(profilePath(dir, 'tlsCert')))
  const key = createPrivateKey(readFileSync(profilePath(dir, 'tlsKey')))
  const socket = connect({ host, port, noDelay: true })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', (error) => reject(new WarrenError(`cannot reach the proxy at ${host}:${port}: ${error.message}`)))
  })
  try {
    socket.write(SSH_STREAM_MAGIC)
    const hello = await readFirstMessage(socket, parseSshStreamHello).catch((error: Error) => {
      throw new Error(`it does not offer plain SSH streams: ${error.message}`)
    })
    const handshake = new ClientHandshake()
    writeMessage<SshStreamSealed>(socket, handshake.request(hello, expected, node, cert, key))
    const reply = await readFirstMessage(socket, (value) => handshake.reply(value))
    if (!reply.ok) throw new WarrenError(`cannot reach node "${node}": ${reply.error}`)
    return socket
  } catch (error) {
    socket.destroy()
    if (error instanceof WarrenError) throw error
    throw new WarrenError(`the proxy at ${host}:${port}: ${(error as Error).message}`)
  }
}

/** Sends `socket` to OpenSSH over the IPC channel, and lets go of the channel. */
export function handOver(socket: Socket): Promise<number> {
  // OpenSSH closes its end once it has the descriptor: a reset of the channel then is no failure.
  process.on('error', () => {})
  return new Promise((resolve, reject) => {
    process.send!('warren-ssh-stream', socket, {}, (error) => {
      if (error) return reject(new WarrenError(`cannot hand the connection to OpenSSH: ${error.message}`))
      process.disconnect?.()
      resolve(0)
    })
  })
}
