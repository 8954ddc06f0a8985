// A tunnelled node's audit events and session recordings, carried to the auth server: the node cannot reach it
// itself, so the proxy holding its tunnel sends each batch on with the host ID the tunnel's
// handshake proved (never one the node names), and answers the node for that batch. The node
// drops its copies only on audit_stored, so a batch lost anywhere here is sent again.

import { createHash } from 'node:crypto'
import type { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { type NodeSignature, type SignedContent, signingKeyOf } from '../shared/node-signature.ts'
import { flatEvent } from '../shared/protocol/audit.ts'
import { type AgentMessage, sendToAgent } from '../shared/protocol/control.ts'
import type { Tunnel } from './tunnel-server.ts'

export type AuditMessage = Extract<AgentMessage, { type: 'audit' }>

/** Answers that will be the same however often the batch is sent: the node should give it up. */
const REFUSED = new Set([400, 413])

/** The auth server's Retry-After (a node over its budget), passed on so that the node waits it out. */
function retryAfterOf(error: unknown): { retry_after_s?: number } {
  return error instanceof ApiError && error.retryAfterS !== undefined ? { retry_after_s: error.retryAfterS } : {}
}

/**
 * Whether the node behind `tunnel` signed `content` with its certificate's key; when not, the
 * node is told its batch is refused for good. The auth server charges a relayed batch that
 * fails its check to the proxy that relayed it (so that a proxy's keys cannot spend a node's
 * budget with forgeries): a node's own bad signatures are refused here, so that they cost this
 * proxy nothing there. An unsigned one (a node of an earlier version) goes on: the auth server
 * refuses it without a check, charging no one.
 */
function signedByTunnelNode(tunnel: Tunnel, batch: string, content: SignedContent, signature: NodeSignature | undefined): boolean {
  if (signature === undefined) return true
  const key = createHash('sha256')
    .update(tunnel.cert.publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
  if (signingKeyOf(tunnel.hostId, content, signature) === key) return true
  if (tunnel.control) sendToAgent(tunnel.control, { type: 'audit_failed', batch, error: 'not signed with the key of the certificate this tunnel was opened with', refused: true })
  return false
}

export async function relayAudit(auth: ApiClient, tunnel: Tunnel, message: AuditMessage): Promise<void> {
  let answer
  const events = message.events.map(flatEvent)
  if (!signedByTunnelNode(tunnel, message.batch, { kind: 'audit events', events }, message.signature)) return
  try {
    const { stored } = await auth.call('POST /v1/proxies/audit-events', { body: { host_id: tunnel.hostId, events, signature: message.signature } })
    answer = { type: 'audit_stored' as const, batch: message.batch, stored }
  } catch (error) {
    const refused = error instanceof ApiError && REFUSED.has(error.status)
    answer = { type: 'audit_failed' as const, batch: message.batch, error: (error as Error).message.slice(0, 4096), refused, ...retryAfterOf(error) }
  }
  if (tunnel.control) sendToAgent(tunnel.control, answer)
}

export type RecordingMessage = Extract<AgentMessage, { type: 'recording' }>

/** A chunk of a tunnelled node's session recording, likewise with the host ID the tunnel proved. */
export async function relayRecording(auth: ApiClient, tunnel: Tunnel, message: RecordingMessage): Promise<void> {
  let answer
  if (!signedByTunnelNode(tunnel, message.batch, { kind: 'recording chunk', chunk: message.chunk }, message.signature)) return
  try {
    const stored = await auth.call('POST /v1/proxies/recording-chunks', { body: { host_id: tunnel.hostId, ...message.chunk, signature: message.signature } })
    answer = { type: 'recording_stored' as const, batch: message.batch, ...stored }
  } catch (error) {
    const refused = error instanceof ApiError && (REFUSED.has(error.status) || error.status === 403)
    answer = { type: 'audit_failed' as const, batch: message.batch, error: (error as Error).message.slice(0, 4096), refused, ...retryAfterOf(error) }
  }
  if (tunnel.control) sendToAgent(tunnel.control, answer)
}
