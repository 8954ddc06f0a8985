// A tunnelled node's audit events and session recordings, carried to the auth server: the node cannot reach it
// itself, so the proxy holding its tunnel sends each batch on with the host ID the tunnel's
// handshake proved (never one the node names), and answers the node for that batch. The node
// drops its copies only on audit_stored, so a batch lost anywhere here is sent again.

import type { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
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

export async function relayAudit(auth: ApiClient, tunnel: Tunnel, message: AuditMessage): Promise<void> {
  let answer
  try {
    const { stored } = await auth.call('POST /v1/proxies/audit-events', { body: { host_id: tunnel.hostId, events: message.events.map(flatEvent), signature: message.signature } })
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
  try {
    const stored = await auth.call('POST /v1/proxies/recording-chunks', { body: { host_id: tunnel.hostId, ...message.chunk, signature: message.signature } })
    answer = { type: 'recording_stored' as const, batch: message.batch, ...stored }
  } catch (error) {
    const refused = error instanceof ApiError && (REFUSED.has(error.status) || error.status === 403)
    answer = { type: 'audit_failed' as const, batch: message.batch, error: (error as Error).message.slice(0, 4096), refused, ...retryAfterOf(error) }
  }
  if (tunnel.control) sendToAgent(tunnel.control, answer)
}
