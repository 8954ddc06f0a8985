// Agent forwarding (`ssh -A`) on the node: the session gets a Unix socket, in a directory
// only the login may enter, and SSH_AUTH_SOCK naming it; each connection to it opens an
// auth-agent@openssh.com channel back to the client, whose agent answers. The socket is made
// by the login itself (`warren agent-socket`, agent-socket.ts) and handed to the node; it and
// its directory go, removed as the login, when the session ends.

import { type ChildProcess, spawn } from 'node:child_process'
import type { Server, Socket } from 'node:net'
import { dirname } from 'node:path'
import type { Channel, Connection } from 'ssh2'
import type { AgentSocketMessage } from './agent-socket.ts'
import type { LoginAccount } from './login-accounts.ts'
import { joinSocketToChannel } from './ssh-forwarding.ts'
import { warrenCommand } from './warren-command.ts'

/** ssh2's own window and packet sizes for channels the server opens (lib/Channel.js). */
const CHANNEL_WINDOW = 2 * 1024 * 1024
const CHANNEL_PACKET_SIZE = 32 * 1024

/** A session's agent socket, listening. */
export interface AgentSocket {
  /** For SSH_AUTH_SOCK. */
  path: string
  /** Stops listening and removes the socket and its directory; once, however often called. */
  close(): void
}

/** Listens on a fresh socket of the login's; its connections reach the client's agent, up to `maxSockets` of the connection's at once. */
export async function listenForAgent(client: Connection, account: LoginAccount, sockets: Set<Socket>, maxSockets = Number.POSITIVE_INFINITY): Promise<AgentSocket> {
  const { server, path } = await socketOfLogin(account)
  server.on('connection', (socket: Socket) => {
    if (sockets.size >= maxSockets) {
      socket.destroy()
      return
    }
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    openAgentChannel(client, (error, channel) => {
      if (error || !channel) {
        socket.destroy()
        return
      }
      joinSocketToChannel(socket, channel)
    })
  })
  let closed = false
  return {
    path,
    close: () => {
      // The session's end and its connection's end may both close it.
      if (closed) return
      closed = true
      server.close()
      asLogin(account, ['rm', '-rf', '--', dirname(path)], ['ignore', 'ignore', 'ignore'])
    },
  }
}

/** `warren agent-socket` as the login: the listening socket it makes, and its path. */
function socketOfLogin(account: LoginAccount): Promise<{ server: Server; path: string }> {
  const child = asLogin(account, warrenCommand('agent-socket'), ['ignore', 'ignore', 'pipe', 'ipc'])
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    child.once('message', (message: AgentSocketMessage, server: Server) => {
      // The socket is the node's now: the helper has nothing left to do, and its IPC
      // channel would keep the node from exiting.
      child.disconnect()
      child.kill('SIGKILL')
      resolve({ server, path: message.path })
    })
    child.once('error', reject)
    child.once('exit', () => reject(new Error(`warren agent-socket made no socket: ${stderr.trim().slice(0, 200) || 'no reason given'}`)))
  })
}

/** `argv` run as the login, with nothing of the agent's environment. */
function asLogin(account: LoginAccount, argv: string[], stdio: ('ignore' | 'pipe' | 'ipc')[]): ChildProcess {
  const switchTo = process.getuid?.() === account.uid ? {} : { uid: account.uid, gid: account.gid }
  const child = spawn(argv[0], argv.slice(1), { ...switchTo, cwd: '/', env: { PATH: '/usr/bin:/bin', HOME: account.home }, stdio })
  child.on('error', () => {})
  return child
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
