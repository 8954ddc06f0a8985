// The services a proxy may reach on this device, one stream each: the node's SSH server,
// and the local TCP ports that the node's config declares by name. Nothing else is dialled,
// and a port only for a user whose certificate, carried in the request, allows it here
// (port-access.ts).

import type { KeyObject } from 'node:crypto'
import { connect } from 'node:net'
import type { Duplex } from 'node:stream'
import { parseHostPort } from '../shared/address.ts'
import { tuneHeapForStreams } from '../shared/heap-tuning.ts'
import type { Logger } from '../shared/log.ts'
import { startOptimisingCompilers } from '../shared/optimising-compilers.ts'
import type { PortProofs } from '../shared/port-request-proof.ts'
import { type DialReply, type DialRequest, parseDialRequest } from '../shared/protocol/dial.ts'
import { ProtocolError } from '../shared/protocol/errors.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { splice } from '../shared/splice.ts'
import { judgePortAccess } from './port-access.ts'
import type { AuditRecorder, StreamInfo } from './ssh-server.ts'

export interface ServiceTable {
  ssh?: { handleConnection(stream: Duplex, info?: StreamInfo): void }
  ports: { name: string; addr: string }[]
  /** The user CAs this node trusts, as they are now (a rotation changes them). */
  userCAKeys: () => KeyObject[]
  /** This node's labels as access is judged, as they are now (the assigned ones winning; a reload changes its own). */
  labels: () => Record<string, string>
  /** This node's cluster, and the names a user may give it (its name and host ID). */
  node: () => { cluster: string; names: string[] }
  /** Signed port requests seen, so that none opens a second stream. */
  portProofs: PortProofs
  /** Records an audit event (a declared port opened for a user); default: none are recorded. */
  audit?: AuditRecorder
}

export async function serveStream(stream: Duplex, services: ServiceTable, log: Logger): Promise<void> {
  stream.on('error', () => {})
  let request: DialRequest
  try {
    request = await readFirstMessage(stream, parseDialRequest)
  } catch (error) {
    log.warn(
      `a stream from the proxy was not understood: ${(error as Error).message}`,
      error instanceof ProtocolError ? { message_type: error.messageType, field: error.field } : {},
    )
    // A request that arrived but cannot be read is answered; a stream that broke is not.
    if (error instanceof ProtocolError && !stream.destroyed) {
      reply(stream, { ok: false, error: error.message })
      stream.end()
    } else {
      stream.destroy()
    }
    return
  }
  const client = request.client ?? 'unknown'
  if (request.service === 'ssh' && services.ssh) {
    startOptimisingCompilers()
    tuneHeapForStreams()
    reply(stream, { ok: true })
    services.ssh.handleConnection(stream, {
      remoteAddress: client,
      user: request.user,
      validFrom: request.valid_from,
      refusedGenerations: request.refused_generations,
      generationValidFrom: request.generation_valid_from,
    })
    return
  }
  const port = request.service === 'port' ? services.ports.find((p) => p.name === request.name) : undefined
  if (!port) {
    reply(stream, { ok: false, error: `no service "${request.name ?? request.service}" on this node` })
    stream.end()
    return
  }
  const verdict = judgePortAccess({
    certificate: request.certificate,
    proof: request.proof,
    proofs: services.portProofs,
    node: services.node(),
    port: port.name,
    trustedCaKeys: services.userCAKeys(),
    labels: services.labels(),
  })
  if (!verdict.allowed) {
    log.warn(`forwarded port ${port.name} refused to ${client}: ${verdict.reason}`, { user: verdict.user ?? 'unknown', port: port.name, reason: verdict.reason, client })
    reply(stream, { ok: false, error: `access to port "${port.name}" refused by the node: ${verdict.reason}` })
    stream.end()
    return
  }
  startOptimisingCompilers()
  tuneHeapForStreams()
  const { host, port: number } = parseHostPort(port.addr, 0)
  const socket = connect({ host, port: number })
  let connected = false
  socket.once('connect', () => {
    connected = true
    reply(stream, { ok: true })
    socket.setNoDelay(true)
    splice(stream, socket)
    log.debug(`forwarding ${client} to ${port.name} (${port.addr})`, { user: verdict.user })
    // Its own connection, with no SSH session: the user is the one the node judged.
    services.audit?.('port_forward', { session_id: null, user: verdict.user ?? null, login: null, client_addr: client, name: port.name, host, port: number })
  })
  socket.once('error', (error) => {
    if (connected) return
    reply(stream, { ok: false, error: `${port.name} (${port.addr}) refused: ${error.message}` })
    stream.end()
  })
}

function reply(stream: Duplex, answer: DialReply): void {
  writeMessage(stream, answer)
}
