// The first line of every stream that reaches a service on a node, and its answer. A proxy
// opens the stream (in a tunnel, or a direct node's mutual-TLS connection) with a dial
// request; the node answers with a dial reply, then both ends carry the service's bytes. A
// user's connection to a proxy (ALPN warren-ssh) starts the same way, naming the node too.
// A request the node cannot read is answered `ok: false` with the ProtocolError's message.
// A forwarded port is judged by the node too: the user's OpenSSH certificate travels with
// the request (the client sends it, the proxy checks it names the same user and passes it on),
// with the request signed by the certificate's key.

import { PORT_PROOF } from '../port-request-proof.ts'
import { bool, type In, number, type Out, object, oneOf, optional, parseWith, text, texts } from './shape.ts'

const SERVICES = ['ssh', 'port'] as const
/** Room for a certificate whose roles carry many labels, well inside framing's line limit. */
const CERTIFICATE_MAX = 32 * 1024
/** User generations a node is told of at once: the newest; a `users reset` or `users rm` each, whose locks last 60 h. */
export const REFUSED_GENERATIONS_MAX = 256

const DIAL_REQUEST = object({
  service: oneOf(SERVICES),
  /** For service 'port': the name of a forwarded port in the node's config. */
  name: optional(text({ max: 256 })),
  /** Who is connecting, for the node's logs. */
  client: optional(text({ max: 1024 })),
  /**
   * For service 'ssh': the user the proxy judged (by TLS certificate, a plain SSH stream's
   * signed request, or web session). The node lets only that user's certificate log in on
   * the stream, so a connection taken over on its way gets no login the proxy did not judge.
   */
  user: optional(text({ max: 256 })),
  /** For service 'ssh': that user's certificates valid from before this instant (epoch ms) are refused, as the proxy refuses them (a `users reset`). */
  valid_from: optional(number({ atLeast: 0, expected: 'epoch milliseconds' })),
  /**
   * For service 'ssh', from proxies that know user generations: that user's certificates
   * that carry one of these are refused (a `users reset` or `users rm` ended it), and those
   * that carry another only when valid from before `generation_valid_from` (a lock of an
   * earlier version's); `valid_from` then judges only certificates without a generation.
   */
  refused_generations: optional(texts(REFUSED_GENERATIONS_MAX)),
  generation_valid_from: optional(number({ atLeast: 0, expected: 'epoch milliseconds' })),
  /** For service 'port': the user's OpenSSH certificate line, which the node verifies itself. */
  certificate: optional(text({ max: CERTIFICATE_MAX })),
  /** For service 'port': the request signed by the certificate's key (shared/port-request-proof.ts). */
  proof: optional(PORT_PROOF),
})

const USER_DIAL = object({
  /** The node's name or host ID. */
  node: text({ max: 256 }),
  service: oneOf(SERVICES),
  name: optional(text({ max: 256 })),
  /** For service 'port': the user's OpenSSH certificate line ("ssh-ed25519-cert-v01@openssh.com AAAA..."). */
  certificate: optional(text({ max: CERTIFICATE_MAX })),
  /** For service 'port': the request signed by the certificate's key, which the proxy passes on. */
  proof: optional(PORT_PROOF),
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
