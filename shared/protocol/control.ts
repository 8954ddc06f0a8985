// What agents and proxies say on a tunnel's control stream, one JSON object per line, each
// with a `type`. The agent's hello says it speaks version 1. A message whose type the
// receiver does not know, or whose fields do not parse, is a protocol error: the receiver
// logs it (the message type and the field) and closes the tunnel. Nothing is ignored
// silently, so a message a peer relies on never goes missing without a trace; a later
// version that adds a message must learn first (from the hello or the welcome) that the
// other end speaks it.

import type { Duplex } from 'node:stream'
import { ASSIGNED_LABELS_STATEMENT } from '../assigned-labels.ts'
import { NODE_SIGNATURE } from '../node-signature.ts'
import { LIVE_SET_SIGNATURE } from '../signed-live-set.ts'
import { TRUST_STATEMENT } from '../trust-statement.ts'
import { MAX_EVENTS_PER_BATCH, nodeEvent } from './audit.ts'
import { ProtocolError } from './errors.ts'
import { writeMessage } from './framing.ts'
import { RECORDING_CHUNK_BODY } from './recordings.ts'
import { flag, lenient, list, number, object, oneOf, optional, ruledLabels, type Tagged, type TaggedIn, taggedParser, text, texts } from './shape.ts'
import { MAX_RENEWAL_SPREAD_MS, MAX_RETURN_SPREAD_MS } from './tunnel.ts'

/** Bounds that keep a message to what a sane peer sends; the line limit (framing.ts) bounds the rest. */
const MAX_ID = 256
const MAX_PEM = 16_384
const MAX_TEXT = 8192
const MAX_SERVICES = 1024
const MAX_PROXIES = 4096
const MAX_CAS = 16

/** Agent → proxy. */
export const AGENT_MESSAGES = {
  /** The agent keeps this tunnel: the proxy registers it and may route users through it. */
  hello: object({
    version: optional(number({ atLeast: 1, expected: 'a protocol version' })),
    agent_version: optional(text({ max: MAX_TEXT })),
    labels: ruledLabels(),
    services: optional(texts(MAX_SERVICES)),
    /** The agent takes `labels` messages (agents from before them would close the tunnel). */
    assigned_labels: flag(),
    /** The agent takes `refused` messages (agents from before them would close the tunnel on one). */
    refusals: flag(),
  }),
  /** The node's labels changed (a configuration reload). */
  heartbeat: object({ labels: ruledLabels() }),
  /** New certificates, for the keys this tunnel was opened with (answered with certs or renew_failed). */
  renew: object({}),
  /** The certificate just renewed (through any proxy), for the same key: each proxy keeps trusting the tunnel by it. */
  cert: object({ tls_cert: text({ max: MAX_PEM }) }),
  /** Audit events for the auth server (only to a proxy whose welcome said audit): answered with audit_stored or audit_failed for the batch. */
  audit: object({ batch: text({ max: MAX_ID }), events: list(nodeEvent(), MAX_EVENTS_PER_BATCH), signature: lenient(NODE_SIGNATURE) }),
  /** A chunk of a session recording, to the same proxies as audit events: answered with recording_stored or audit_failed for the batch. */
  recording: object({ batch: text({ max: MAX_ID }), chunk: RECORDING_CHUNK_BODY, signature: lenient(NODE_SIGNATURE) }),
}

/** Proxy → agent. */
export const PROXY_MESSAGES = {
  /** The first message: which proxy this is. */
  /**
   * The first message: which proxy this is. `audit`: it carries audit events to the auth
   * server; `skipped_recordings`: `recording.skipped` among them, which a proxy of an earlier
   * version refuses by closing the tunnel, so the agent sends those events only where it is said.
   */
  welcome: object({ proxy_id: text({ max: MAX_ID }), cluster_name: text({ max: MAX_ID }), audit: flag(), skipped_recordings: flag() }),
  /**
   * The live proxy set; when a proxy joined it, the window over which to spread returns to
   * it (a longer one is ignored). The agent takes the set only as `signed` has it, by the
   * auth server (shared/signed-live-set.ts); one without is for agents from before it.
   */
  proxies: object({
    ids: texts(MAX_PROXIES),
    spread_ms: lenient(number({ atLeast: 0, atMost: MAX_RETURN_SPREAD_MS, expected: 'a spread in ms' })),
    signed: lenient(LIVE_SET_SIGNATURE),
  }),
  /**
   * The CAs to trust; when the first (signing) one did not issue the agent's certificate, it
   * renews, after a random wait of up to `spread_ms` when the proxy asks it to spread the
   * renewals of its nodes (a longer one is ignored). The agent takes them only as `trust`
   * has them, signed by the auth server (shared/trust-statement.ts); the lists are for agents
   * from before it.
   */
  ca: object({
    host_ca_certs: texts(MAX_CAS),
    user_ca_ssh_keys: texts(MAX_CAS),
    trust: optional(TRUST_STATEMENT),
    spread_ms: lenient(number({ atLeast: 0, atMost: MAX_RENEWAL_SPREAD_MS, expected: 'a spread in ms' })),
  }),
  /** The answer to renew. */
  certs: object({
    tls_cert: text({ max: MAX_PEM }),
    ssh_cert: text({ max: MAX_PEM }),
    host_ca_certs: texts(MAX_CAS),
    user_ca_ssh_keys: texts(MAX_CAS),
    trust: optional(TRUST_STATEMENT),
    assigned_labels: lenient(ASSIGNED_LABELS_STATEMENT),
  }),
  /**
   * The labels the cluster assigns to the node, signed for it by the auth server (shared/
   * assigned-labels.ts): sent once the tunnel is up and whenever they change, only to an
   * agent whose hello said it takes them.
   */
  labels: object({ assigned: ASSIGNED_LABELS_STATEMENT }),
  renew_failed: object({ error: text({ max: MAX_TEXT }) }),
  /**
   * The proxy will not keep this tunnel, which it closes next, and why (TunnelRefusal): the
   * agent waits before it dials again, at least `retry_after_ms`. Sent at the hello, only to
   * an agent whose hello said it takes them.
   */
  refused: object({
    reason: text({ max: MAX_ID }),
    retry_after_ms: lenient(number({ atLeast: 0, expected: 'a wait in ms' })),
  }),
  /** The auth server has the batch's events (`stored` of them were new to it). */
  audit_stored: object({ batch: text({ max: MAX_ID }), stored: number({ atLeast: 0, expected: 'a count' }) }),
  /**
   * The batch did not reach the auth server; `refused` when it never will (sending it again is
   * no use); `retry_after_s`, the auth server's Retry-After, when it said how long to wait.
   */
  audit_failed: object({
    batch: text({ max: MAX_ID }),
    error: text({ max: MAX_TEXT }),
    refused: flag(),
    retry_after_s: lenient(number({ atLeast: 0, expected: 'seconds' })),
  }),
  /** The auth server's answer to a recording chunk: how much of the recording it holds. */
  recording_stored: object({
    batch: text({ max: MAX_ID }),
    length: number({ atLeast: 0, expected: 'a byte count' }),
    complete: flag(),
    recording: oneOf(['node', 'off'] as const),
  }),
}

/**
 * Why a proxy refuses a tunnel at its hello: 'unregistered', the auth server does not know
 * the host (it was removed or replaced, or the auth server was restored from a backup older
 * than its join), which only joining again with a new token cures; 'rate_limited', the host
 * registered tunnels too often (proxy/hello-rate.ts). An agent backs off on any reason, one
 * it does not know included.
 */
export type TunnelRefusal = 'unregistered' | 'rate_limited'

export type AgentMessage = Tagged<typeof AGENT_MESSAGES>
export type ProxyMessage = Tagged<typeof PROXY_MESSAGES>
/** What a sender writes (fields with a default may be left out). */
export type AgentMessageIn = TaggedIn<typeof AGENT_MESSAGES>
export type ProxyMessageIn = TaggedIn<typeof PROXY_MESSAGES>
export type ProxyMessageOf<T extends ProxyMessage['type']> = Extract<ProxyMessage, { type: T }>

/** Reads what an agent sent; throws ProtocolError. */
export const parseAgentMessage = taggedParser('control message', AGENT_MESSAGES)
/** Reads what a proxy sent; throws ProtocolError. */
export const parseProxyMessage = taggedParser('control message', PROXY_MESSAGES)

export function sendToProxy(stream: Duplex, message: AgentMessageIn): boolean {
  return writeMessage(stream, message)
}

/**
 * What a proxy holds unsent for one agent's control stream before it gives up on the agent:
 * an agent that stops reading (a modified one, asking for answers it never reads) would
 * otherwise make the proxy hold every answer. Far above what a reading agent lets pile up
 * (the largest message, a CA set, is tens of KiB).
 */
export const MAX_UNREAD_CONTROL_BYTES = 1024 * 1024

/** Writes `message` to an agent; an agent that left more than MAX_UNREAD_CONTROL_BYTES unread has its control stream destroyed instead (its tunnel closes). */
export function sendToAgent(stream: Duplex, message: ProxyMessageIn): boolean {
  if (stream.writableLength > MAX_UNREAD_CONTROL_BYTES) {
    stream.destroy(new ProtocolError('control message', undefined, `the agent left more than ${MAX_UNREAD_CONTROL_BYTES} bytes of its control stream unread`))
    return false
  }
  return writeMessage(stream, message)
}
