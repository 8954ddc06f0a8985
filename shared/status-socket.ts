// The local status endpoint of a `warren start` process: a Unix domain socket in its data
// dir that answers every connection with one JSON document (status.ts), built at that
// moment, and closes it. No TCP port is opened, and only users who may enter the data dir
// (0700, owned by the process's user) can connect. `warren status`, the quick start and the
// tests read it with readStatus().

import { chmodSync, lstatSync, unlinkSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { WarrenError } from './errors.ts'
import { listenOnPath } from './listen-without-cluster.ts'

export const STATUS_SOCKET = 'warren.sock'

/** Linux keeps at most 107 bytes of a socket's path (sun_path, with its NUL). */
const MAX_SOCKET_PATH = 107

const READ_TIMEOUT_MS = 5000

export function statusSocketPath(dataDir: string): string {
  return join(dataDir, STATUS_SOCKET)
}

export class StatusSocket {
  readonly path: string
  private readonly server: Server
  private readonly connections = new Set<Socket>()

  private constructor(path: string, server: Server) {
    this.path = path
    this.server = server
  }

  /**
   * Serves `build()` at `path`. The caller holds the data dir's lock, so a socket file left
   * there is a dead process's and is replaced; anything else by that name is not touched.
   */
  static async listen(path: string, build: () => unknown): Promise<StatusSocket> {
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new WarrenError(`cannot serve the status socket ${path}: a socket's path may have at most ${MAX_SOCKET_PATH} bytes`)
    removeStaleSocket(path)
    const server = createServer()
    const socket = new StatusSocket(path, server)
    server.on('connection', (connection) => socket.answer(connection, build))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new WarrenError(`cannot serve the status socket ${path}: ${error.message}`)))
      server.once('listening', () => resolve())
      listenOnPath(server, path)
    })
    // Created with the umask's mode, inside a data dir that only its owner may enter.
    chmodSync(path, 0o600)
    return socket
  }

  private answer(connection: Socket, build: () => unknown): void {
    this.connections.add(connection)
    connection.on('close', () => this.connections.delete(connection))
    connection.on('error', () => {})
    let document: string
    try {
      document = JSON.stringify(build())
    } catch (error) {
      document = JSON.stringify({ error: (error as Error).message })
    }
    connection.end(document + '\n')
  }

  /** Stops serving and removes the socket file. */
  close(): Promise<void> {
    for (const connection of this.connections) connection.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

function removeStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket()) throw new WarrenError(`cannot serve the status socket ${path}: a file that is not a socket has that name`)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }
  unlinkSync(path)
}

/** Reads the document served at `path`; fails, naming the path, when no process serves it. */
export function readStatus<T = unknown>(path: string, timeoutMs = READ_TIMEOUT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const socket = connect(path)
    let text = ''
    socket.setEncoding('utf8')
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    socket.on('data', (chunk: string) => (text += chunk))
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const why =
        error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
          ? 'no warren process serves it (is "warren start" running with this data dir?)'
          : error.code === 'EACCES'
            ? 'permission denied (run as the user that runs warren start)'
            : error.message
      reject(new WarrenError(`cannot read the status socket ${path}: ${why}`))
    })
    socket.on('end', () => {
      try {
        resolve(JSON.parse(text) as T)
      } catch {
        reject(new WarrenError(`cannot read the status socket ${path}: its answer is not JSON`))
      }
    })
  })
}
