// The services a proxy may reach on this device, one stream each: the node's SSH server,
// and the local TCP ports that the node's config declares by name. Nothing else is dialled.

import { connect } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from '../shared/log.ts'
import { readFirstMessage, writeMessage } from '../shared/tunnel-protocol.ts'
import { parseHostPort } from '../shared/address.ts'
import { splice } from '../shared/splice.ts'

export interface ServiceTable {
  ssh?: { handleConnection(stream: Duplex, info?: { remoteAddress?: string }): void }
  ports: { name: string; addr: string }[]
}

export async function serveStream(stream: Duplex, services: ServiceTable, log: Logger): Promise<void> {
  stream.on('error', () => {})
  let request: Record<string, unknown>
  try {
    request = await readFirstMessage(stream)
  } catch (error) {
    log.warn(`a stream from the proxy was not understood: ${(error as Error).message}`)
    stream.destroy()
    return
  }
  const client = typeof request.client === 'string' ? request.client : 'unknown'
  if (request.service === 'ssh' && services.ssh) {
    writeMessage(stream, { ok: true })
    services.ssh.handleConnection(stream, { remoteAddress: client })
    return
  }
  const port = request.service === 'port' ? services.ports.find((p) => p.name === request.name) : undefined
  if (!port) {
    writeMessage(stream, { ok: false, error: `no service "${String(request.name ?? request.service)}" on this node` })
    stream.end()
    return
  }
  const { host, port: number } = parseHostPort(port.addr, 0)
  const socket = connect({ host, port: number })
  let connected = false
  socket.once('connect', () => {
    connected = true
    writeMessage(stream, { ok: true })
    socket.setNoDelay(true)
    splice(stream, socket)
    log.debug(`forwarding ${client} to ${port.name} (${port.addr})`)
  })
  socket.once('error', (error) => {
    if (connected) return
    writeMessage(stream, { ok: false, error: `${port.name} (${port.addr}) refused: ${error.message}` })
    stream.end()
  })
}
