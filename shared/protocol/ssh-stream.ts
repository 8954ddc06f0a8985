// The plain SSH stream: a user connection to a proxy that carries a node's SSH bytes without
// TLS around them, so that OpenSSH's `ssh` can talk to the proxy's socket itself
// (ProxyUseFdpass) and the proxy only copies bytes that SSH already encrypts and
// authenticates end to end. Before any byte reaches a node, the client proves it holds the
// key of a user certificate by signing a challenge that the proxy made for this one
// connection:
//
//   client → proxy   SSH_STREAM_MAGIC
//   proxy  → client  {"challenge": base64 of 32 random bytes}
//   client → proxy   {"node", "certificate": base64 DER, "signature": base64}
//   proxy  → client  a dial reply ({"ok": true} or {"ok": false, "error"})
//
// then the node's SSH stream, which the proxy starts sending once the client's first SSH
// byte arrives (so the reply is the last thing the client reads before it hands the socket
// on). SECURITY.md gives the argument.

import { type KeyObject, sign, verify, type X509Certificate } from 'node:crypto'
import { object, parseWith, text } from './shape.ts'

/** The client's first line: the proxy's listener tells this protocol from TLS and HTTP by it. */
export const SSH_STREAM_MAGIC = 'WARREN-SSH-STREAM/1\n'

/** Random bytes in a challenge: never repeated, so a signature is good for one connection. */
export const CHALLENGE_BYTES = 32

/** Room for a certificate whose roles carry many labels. */
const CERTIFICATE_MAX = 48 * 1024

const CHALLENGE = object({ challenge: text({ max: 64 }) })

const REQUEST = object({
  /** The node's name or host ID. */
  node: text({ max: 256 }),
  /** The user's X.509 certificate (DER, base64). */
  certificate: text({ max: CERTIFICATE_MAX }),
  /** The signature of signedBytes(challenge, node) by the certificate's key (base64). */
  signature: text({ max: 1024 }),
})

export type SshStreamChallenge = { challenge: string }
export type SshStreamRequest = { node: string; certificate: string; signature: string }

export function parseSshStreamChallenge(value: unknown): SshStreamChallenge {
  const parsed = parseWith('stream challenge', CHALLENGE, value, 'the challenge: ')
  if (Buffer.from(parsed.challenge, 'base64').length !== CHALLENGE_BYTES) throw new Error(`the challenge must be ${CHALLENGE_BYTES} bytes`)
  return parsed
}

export function parseSshStreamRequest(value: unknown): SshStreamRequest {
  return parseWith('stream request', REQUEST, value, 'the request: ')
}

/**
 * What the client signs: a purpose of its own (a user key signs nothing else this way),
 * the challenge and the node, so a signature opens one node on one connection.
 */
function signedBytes(challenge: Buffer, node: string): Buffer {
  return Buffer.concat([Buffer.from('warren ssh stream v1\0'), challenge, Buffer.from(`\0${node}`)])
}

/** Ed25519 and Ed448 sign the message itself; other key types a SHA-256 digest of it. */
function digestFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256'
}

export function signSshStream(key: KeyObject, challenge: Buffer, node: string): string {
  return sign(digestFor(key), signedBytes(challenge, node), key).toString('base64')
}

/** Whether `signature` is the certificate key's signature of this challenge and node. */
export function sshStreamSignatureValid(cert: X509Certificate, challenge: Buffer, node: string, signature: string): boolean {
  try {
    return verify(digestFor(cert.publicKey), signedBytes(challenge, node), cert.publicKey, Buffer.from(signature, 'base64'))
  } catch {
    return false
  }
}
