// Agent forwarding (`ssh -A`) on the node: the session gets a Unix socket, in a directory
// only the login may enter, and SSH_AUTH_SOCK naming it; each connection to it opens an
// auth-agent@openssh.com channel back to the client, whose agent answers. The socket and its
// directory go when the session ends.

import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Channel, Connection } from 'ssh2'
import type { LoginAccount } from './login-accounts.ts'

/** ssh2's own window and packet sizes for channels the server opens (lib/Channel.js). */
const CHANNEL_WINDOW = 2 * 1024 * 1024
const CHANNEL_PACKET_SIZE = 32 * 1024

/** A session's agent socket, listening. */
export interface AgentSocket {
  /** For SSH_AUTH_SOCK. */
  path: string
  /** Stops listening and removes the socket and its directory. */
  close(): void
}

/** Listens on a fresh socket owned by the login; its connections reach the client's agent. */
export async function listenForAgent(client: Connection, account: LoginAccount, sockets: Set<Socket>): Promise<AgentSocket> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-agent-'))
  const path = join(dir, 'agent.sock')
  let server: Server | undefined
  const close = () => {
    server?.close()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    chmodSync(dir, 0o700)
    server = createServer((socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
      socket.on('error', () => socket.destroy())
      openAgentChannel(client, (error, channel) => {
        if (error || !channel) {
          socket.destroy()
          return
        }
        socket.pipe(channel).pipe(socket)
        channel.on('error', () => socket.destroy())
        channel.on('close', () => socket.destroy())
        socket.once('close', () => channel.destroy())
      })
    })
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject)
      server!.listen(path, resolve)
    })
    // The login's alone: the directory keeps every other user out, as sshd's does.
    chownSync(path, account.uid, account.gid)
    chownSync(dir, account.uid, account.gid)
    return { path, close }
  } catch (error) {
    close()
    throw error
  }
}

/**
 * Opens an auth-agent@openssh.com channel to the client. ssh2's server has no method for it
 * (its client side has), so this does what its forwardOut does for forwarded-tcpip: reserve
 * a channel number, then send the open; ssh2 answers the confirmation with a Channel.
 */
function openAgentChannel(client: Connection, done: (error: Error | undefined, channel?: Channel) => void) {
  const internals = client as unknown as {
    _chanMgr: { add(callback: unknown): number }
    _protocol: { openssh_authAgent(channel: number, window: number, packetSize: number): void }
  }
  const callback = (error: Error | undefined, channel?: Channel) => done(error, channel)
  callback.type = 'auth-agent@openssh.com'
  const local = internals._chanMgr.add(callback)
  if (local === -1) return done(new Error('no free channels'))
  internals._protocol.openssh_authAgent(local, CHANNEL_WINDOW, CHANNEL_PACKET_SIZE)
}
