// The first line of every stream that reaches a service on a node, and its answer. A proxy
// opens the stream (in a tunnel, or a direct node's mutual-TLS connection) with a dial
// request; the node answers with a dial reply, then both ends carry the service's bytes. A
// user's connection to a proxy (ALPN warren-ssh) starts the same way, naming the node too.
// A request the node cannot read is answered `ok: false` with the ProtocolError's message.

import { bool, type In, type Out, object, oneOf, optional, parseWith, text } from './shape.ts'

const SERVICES = ['ssh', 'port'] as const

const DIAL_REQUEST = object({
  service: oneOf(SERVICES),
  /** For service 'port': the name of a forwarded port in the node's config. */
  name: optional(text({ max: 256 })),
  /** Who is connecting, for the node's logs. */
  client: optional(text({ max: 1024 })),
})

const USER_DIAL = object({
  /** The node's name or host ID. */
  node: text({ max: 256 }),
  service: oneOf(SERVICES),
  name: optional(text({ max: 256 })),
})

const DIAL_REPLY = object({ ok: bool(), error: optional(text({ max: 8192 })) })

export type DialRequest = Out<typeof DIAL_REQUEST>
export type DialRequestIn = In<typeof DIAL_REQUEST>
export type UserDial = Out<typeof USER_DIAL>
export type UserDialIn = In<typeof USER_DIAL>
export type DialReply = { ok: true } | { ok: false; error: string }

export function parseDialRequest(value: unknown): DialRequest {
  return parseWith('dial request', DIAL_REQUEST, value, 'dial request: ')
}

export function parseUserDial(value: unknown): UserDial {
  return parseWith('user dial', USER_DIAL, value, 'the request: ')
}

export function parseDialReply(value: unknown): DialReply {
  const reply = parseWith('dial reply', DIAL_REPLY, value, 'dial reply: ')
  return reply.ok ? { ok: true } : { ok: false, error: reply.error ?? 'no reason given' }
}
