// A tunnelled node's audit events and recording chunks reach the auth server through a
// proxy, which names the node (the host ID its tunnel proved). A proxy is not trusted with
// what the node said: anyone holding a proxy's keys could otherwise write events and
// recordings in any node's name. So the node signs each batch and chunk with its host TLS
// key, and the auth server takes them only as the key registered for that host signed
// them (SECURITY.md, "A stolen proxy"). A signature covers the host ID and the content,
// not the moment: the same batch sent again is stored once anyway (event IDs, offsets).

import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { type Out, object, text } from './protocol/shape.ts'

export const NODE_SIGNATURE = object({
  /** The node's public key (SubjectPublicKeyInfo, DER, base64): the registered key's fingerprint must match. */
  public_key: text({ max: 1024 }),
  signature: text({ max: 512 }),
})
export type NodeSignature = Out<typeof NODE_SIGNATURE>

export type SignedContent =
  | { kind: 'audit events'; events: readonly Record<string, unknown>[] }
  | { kind: 'recording chunk'; chunk: { session_id: string; offset: number; data: string; end?: boolean } }

/** The bytes signed: one fixed order of keys, whoever parsed and passed the content on. */
function signedBytes(hostId: string, content: SignedContent): Buffer {
  const body =
    content.kind === 'audit events'
      ? content.events.map((event) => Object.fromEntries(Object.entries(event).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))
      : [content.chunk.session_id, content.chunk.offset, content.chunk.data, content.chunk.end === true]
  return Buffer.from(`warren node ${content.kind} v1\n${JSON.stringify([hostId, body])}`)
}

/** Signed with the host's TLS private key (a KeyObject, or the PEM the identity holds). */
export function signAsNode(hostId: string, content: SignedContent, key: KeyObject | string): NodeSignature {
  const publicKey = createPublicKey(key).export({ type: 'spki', format: 'der' })
  return { public_key: publicKey.toString('base64'), signature: sign('sha256', signedBytes(hostId, content), key).toString('base64') }
}

/** The SHA-256 of the signing key (hex), as the registry holds the host's TLS key; verified over `content`, or undefined when the signature does not hold. */
export function signingKeyOf(hostId: string, content: SignedContent, signature: NodeSignature): string | undefined {
  try {
    const der = Buffer.from(signature.public_key, 'base64')
    const key = createPublicKey({ key: der, format: 'der', type: 'spki' })
    if (!verify('sha256', signedBytes(hostId, content), key, Buffer.from(signature.signature, 'base64'))) return undefined
    return createHash('sha256').update(der).digest('hex')
  } catch {
    return undefined
  }
}
