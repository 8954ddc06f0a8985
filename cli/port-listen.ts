// `warren proxy port --listen`: a local TCP listener, as `ssh -L` has, in front of a node's
// forwarded port. Each accepted connection gets its own dial through the proxy (the same
// certificate and checks as the standard input/output mode), and the two sockets are spliced
// directly: no pipe process carries the bytes. A refused or failed connection is told on
// standard error and closed; the listener goes on until SIGTERM or SIGINT.

import { once } from 'node:events'
import { createServer, type Server } from 'node:net'
import type { Duplex } from 'node:stream'
import { joinHostPort, splitHostPort } from '../shared/address.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { tuneHeapForForwarding } from '../shared/heap-tuning.ts'
import { printable } from '../shared/printable.ts'
import { splice } from '../shared/splice.ts'

/** Like `ssh -L`, a listener without a host is on the loopback only. */
export const DEFAULT_LISTEN_HOST = '127.0.0.1'

/** `PORT` or `HOST:PORT` (`[::1]:PORT`); port 0 picks a free port. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const { host, port } = splitHostPort(/^\d+$/.test(text) ? `${DEFAULT_LISTEN_HOST}:${text}` : text)
  if (port === undefined) throw new UsageError(`--listen needs a port: [HOST:]PORT, not ${JSON.stringify(text)}`)
  return { host, port }
}

/**
 * Listens on `address` and joins each accepted connection to a stream from `dial`, until
 * SIGTERM or SIGINT (then status 0). Prints `listening on HOST:PORT` first, which tells the
 * port that port 0 picked.
 */
export async function listenAndDial(address: { host: string; port: number }, dial: () => Promise<Duplex>): Promise<number> {
  tuneHeapForForwarding('client')
  const open = new Set<Duplex>()
  let closing = false
  const track = (socket: Duplex) => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
  }

  // Half-open: a client that has sent all it will send still gets the answer.
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (client) => {
    track(client)
    const from = joinHostPort(client.remoteAddress ?? '?', client.remotePort ?? 0)
    // Until the splice takes over, a reset from the client must not end the process.
    client.on('error', () => {})
    dial().then(
      (stream) => {
        if (closing || client.destroyed) {
          stream.destroy()
          return
        }
        track(stream)
        splice(client, stream)
      },
      (error: Error) => {
        process.stderr.write(`connection from ${from} closed: ${printable(error.message)}\n`)
        client.destroy()
      },
    )
  })
  await bind(server, address)
  const bound = server.address() as { address: string; port: number }
  process.stdout.write(`listening on ${joinHostPort(bound.address, bound.port)}\n`)

  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      resolve()
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
  closing = true
  server.close()
  for (const socket of open) socket.destroy()
  return 0
}

async function bind(server: Server, { host, port }: { host: string; port: number }): Promise<void> {
  server.listen(port, host)
  try {
    await once(server, 'listening')
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException
    const reason = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EADDRNOTAVAIL' ? 'no interface of this host has that address' : message
    throw new WarrenError(`cannot listen on ${joinHostPort(host, port)}: ${reason}`)
  }
}
